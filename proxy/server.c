/*
 * Server connections: connect (TCP or Unix socket), log in with whatever PostgreSQL asks
 * (SCRAM-SHA-256, md5, cleartext, trust), then relay the server's messages to the linked client
 * while watching ReadyForQuery and ParameterStatus.
 *
 * Invariants: px_server_set_state() is the only writer of s->state and s->node; s->pending
 * counts ReadyForQuery messages still owed for what the client sent, so a server is released
 * only at a true end of work; replies to pgshim's own queries (SET, reset) never reach a client.
 */
#include "px_cache.h"
#include "px_dbstats.h"
#include "px_proxy.h"
#include "px_log.h"
#include "px_native.h"
#include "px_prepared.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ssize_t server_on_data(px_io_t *io, const uint8_t *data, size_t len);
static void server_on_error(px_io_t *io, int err);
static void server_on_drain(px_io_t *io);
static void server_on_closed(px_io_t *io);

static const px_io_ops_t server_ops = {
    .on_data = server_on_data,
    .on_error = server_on_error,
    .on_drain = server_on_drain,
    .on_closed = server_on_closed,
};

typedef struct login_params {
    char **names, **values;
    size_t n, cap;
} login_params_t;

/* Per-server login scratch that is not needed afterwards. */
typedef struct px_server_login {
    login_params_t params;
    struct sockaddr_storage addr;
} px_server_login_t;

/* Address of the pool's server, kept on the pool's first resolution for CancelRequests. */
/* A CancelRequest on its own connection to the server. cancel_wait_timeout bounds its life: a
   server that does not take it in time (unreachable, overloaded) has the attempt dropped. Freed
   when both handles are closed. */
typedef struct cancel_conn {
    px_stream_handle_t h;
    uv_timer_t timer;
    int open_handles;
    bool closing;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uint8_t packet[16];
    size_t packet_len;
} cancel_conn_t;

/* ---------------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------------- */

static px_list_t *server_list(px_server_t *s, px_server_state_t st)
{
    switch (st) {
    case PX_SV_LOGIN: return &s->pool->login_servers;
    case PX_SV_IDLE: return &s->pool->idle_servers;
    case PX_SV_ACTIVE: return &s->pool->active_servers;
    case PX_SV_USED: return &s->pool->used_servers;
    case PX_SV_CLOSING: return &g_closing_servers;
    }
    return &g_closing_servers;
}

void px_server_set_state(px_server_t *s, px_server_state_t st)
{
    if (s->state == PX_SV_CLOSING)
        return;
    if (st == PX_SV_CLOSING)
        s->pool->nservers--;
    px_list_del(&s->node);
    s->state = st;
    s->state_since = uv_now(px_loop);
    px_list_append(server_list(s, st), &s->node);
    px_server_update_reading(s);
}

void px_server_update_reading(px_server_t *s)
{
    bool on = s->state != PX_SV_CLOSING && s->io.open;
    if (on && s->state == PX_SV_ACTIVE && s->client != NULL && !s->setting_vars)
        on = px_io_queued(&s->client->io) <= px_io_high_water;
    px_io_set_reading(&s->io, on);
}

bool px_server_is_clean(const px_server_t *s)
{
    return s->state != PX_SV_CLOSING && s->last_status == (uint8_t)'I' && s->pending == 0 &&
           !s->unsynced && !s->copy_in && !s->setting_vars && s->msg_left == 0 &&
           px_ps_server_quiet(s) && (s->client == NULL || s->client->msg_left == 0);
}

/* ---------------------------------------------------------------------------------------------
 * Closing
 * ------------------------------------------------------------------------------------------- */

static void free_login_params(login_params_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->names[i]);
        free(p->values[i]);
    }
    free(p->names);
    free(p->values);
    memset(p, 0, sizeof(*p));
}

static px_server_login_t *login_of(px_server_t *s);

void px_server_close(px_server_t *s, const char *reason)
{
    if (s->state == PX_SV_CLOSING)
        return;
    px_log_debug("S-%llu: %s/%s closing because: %s", (unsigned long long)s->id, s->pool->dbname,
                 s->pool->user, reason);
    s->close_reason = reason;
    px_client_t *c = s->client;
    if (c != NULL) {
        c->server = NULL;
        s->client = NULL;
        c->msg_left = 0;
        px_client_fatal(c, "08006", "server conn crashed?");
    }
    bool was_login = s->state == PX_SV_LOGIN;
    px_server_set_state(s, PX_SV_CLOSING);
    /* A server that dies after login leaves room in the pool: clients queued behind it get a
     * fresh connection. A failed login does not retry here (that would spin while PostgreSQL is
     * down); px_pool_server_failed() decides what waiting clients hear instead. */
    if (!was_login)
        px_pool_dispatch(s->pool);
    if (s->gai_pending) {
        /* The getaddrinfo callback frees us once it runs. */
        uv_cancel((uv_req_t *)&s->gai_req);
        return;
    }
    px_io_close(&s->io, false);
}

static void server_on_closed(px_io_t *io)
{
    px_server_t *s = io->owner;
    px_list_del(&s->node);
    px_io_release(&s->io);
    px_vars_free(&s->vars);
    px_ps_server_free(s);
    px_server_login_t *l = login_of(s);
    if (l != NULL) {
        free_login_params(&l->params);
        free(l);
    }
    if (s->scram != NULL) {
        OPENSSL_cleanse(s->scram, sizeof(*s->scram));
        free(s->scram);
    }
    free(s->login_error);
    free(s->login_error_code);
    free(s);
}

/* Login failed or the connection broke during login. 08006 marks a connection-level failure
 * (refused, reset, unresolvable): PostgreSQL may simply be restarting, so waiting clients keep
 * waiting while the pool retries. Anything else (an ErrorResponse, a protocol or auth problem)
 * is told to the clients waiting for the pool's first login. */
static void server_login_failed(px_server_t *s, const char *sqlstate, const char *msg)
{
    px_pool_t *pool = s->pool;
    px_log_warn("S-%llu: %s/%s login failed: %s", (unsigned long long)s->id, pool->dbname,
                pool->user, msg);
    px_server_close(s, "login failed");
    px_pool_server_failed(pool, strcmp(sqlstate, "08006") != 0, sqlstate, msg);
}

static void server_on_error(px_io_t *io, int err)
{
    px_server_t *s = io->owner;
    if (s->state == PX_SV_LOGIN) {
        char msg[256];
        snprintf(msg, sizeof(msg), "server closed the connection during login: %s",
                 uv_strerror(err));
        server_login_failed(s, "08006", msg);
        return;
    }
    px_server_close(s, err == UV_EOF ? "server closed the connection" : "server socket error");
}

static void server_on_drain(px_io_t *io)
{
    px_server_t *s = io->owner;
    if (s->client != NULL)
        px_client_update_reading(s->client);
}

/* ---------------------------------------------------------------------------------------------
 * Connect
 * ------------------------------------------------------------------------------------------- */

/* The login scratch hangs off the connect request's data pointer while logging in. */
static px_server_login_t *login_of(px_server_t *s) { return s->connect_req.data; }

static void send_startup(px_server_t *s)
{
    px_pool_t *pool = s->pool;
    const char *names[8], *values[8];
    size_t n = 0;
    names[n] = "user", values[n++] = pool->server_user;
    names[n] = "database", values[n++] = pool->server_db;
    for (int i = 0; i < 4; i++)
        if (pool->startup_extra[i][1] != NULL)
            names[n] = pool->startup_extra[i][0], values[n++] = pool->startup_extra[i][1];
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_startup(&b, names, values, n);
    if (pgw_buf_failed(&b) || px_io_write(&s->io, b.data, b.len) < 0) {
        pgw_buf_free(&b);
        server_login_failed(s, "53200", "out of memory");
        return;
    }
    pgw_buf_free(&b);
    px_server_update_reading(s);
}

static void connect_cb(uv_connect_t *req, int status)
{
    px_server_t *s = px_container_of(req, px_server_t, connect_req);
    if (s->state == PX_SV_CLOSING)
        return;
    if (status < 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "pgshim cannot connect to server: %s", uv_strerror(status));
        server_login_failed(s, "08006", msg);
        return;
    }
    if (s->io.is_tcp)
        px_tcp_set_options(&s->io.h.tcp);
    send_startup(s);
}

static void connect_tcp(px_server_t *s, const struct sockaddr *sa)
{
    memcpy(&login_of(s)->addr, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (uv_tcp_init(px_loop, &s->io.h.tcp) < 0) {
        server_login_failed(s, "08006", "pgshim cannot create a socket");
        return;
    }
    s->io.open = true;
    int rc = uv_tcp_connect(&s->connect_req, &s->io.h.tcp, sa, connect_cb);
    if (rc < 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "pgshim cannot connect to server: %s", uv_strerror(rc));
        server_login_failed(s, "08006", msg);
    }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    px_server_t *s = px_container_of(req, px_server_t, gai_req);
    s->gai_pending = false;
    if (s->state == PX_SV_CLOSING) {
        uv_freeaddrinfo(res);
        px_io_close(&s->io, false);
        return;
    }
    if (status < 0 || res == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "could not resolve host \"%s\": %s", s->pool->host,
                 uv_strerror(status));
        uv_freeaddrinfo(res);
        server_login_failed(s, "08006", msg);
        return;
    }
    connect_tcp(s, res->ai_addr);
    uv_freeaddrinfo(res);
}

/* Unix socket path for a host that is a directory (or unset: unix_socket_dir). */
static void socket_path(const px_pool_t *pool, char *buf, size_t len)
{
    const char *dir = pool->host != NULL ? pool->host : px_cfg->unix_socket_dir;
    snprintf(buf, len, "%s/.s.PGSQL.%d", dir, pool->port);
}

void px_server_launch(px_pool_t *pool)
{
    px_server_t *s = calloc(1, sizeof(*s));
    px_server_login_t *l = calloc(1, sizeof(*l));
    if (s == NULL || l == NULL) {
        free(s);
        free(l);
        px_log_error("out of memory launching a server connection");
        return;
    }
    bool unix_sock = pool->host == NULL || pool->host[0] == '/';
    px_io_init(&s->io, &server_ops, s, !unix_sock);
    px_list_init(&s->node);
    s->id = px_next_id();
    s->pool = pool;
    s->conf_gen = pool->conf_gen;
    s->connect_req.data = l;
    s->state = PX_SV_LOGIN;
    s->state_since = s->created_at = uv_now(px_loop);
    px_list_append(&pool->login_servers, &s->node);
    pool->nservers++;
    px_log_debug("S-%llu: %s/%s new connection to %s:%d", (unsigned long long)s->id, pool->dbname,
                 pool->user, pool->host ? pool->host : px_cfg->unix_socket_dir, pool->port);
    if (unix_sock) {
        char path[512];
        socket_path(pool, path, sizeof(path));
        if (uv_pipe_init(px_loop, &s->io.h.pipe, 0) < 0) {
            server_login_failed(s, "08006", "pgshim cannot create a socket");
            return;
        }
        s->io.open = true;
        uv_pipe_connect(&s->connect_req, &s->io.h.pipe, path, connect_cb);
        return;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", pool->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->gai_pending = true;
    int rc = uv_getaddrinfo(px_loop, &s->gai_req, gai_cb, pool->host, port, &hints);
    if (rc < 0) {
        s->gai_pending = false;
        server_login_failed(s, "08006", "could not resolve server host");
    }
}

/* ---------------------------------------------------------------------------------------------
 * Login
 * ------------------------------------------------------------------------------------------- */

/* Password to log in with: [databases] password=, else the auth file's plaintext or md5. */
static const char *login_password(px_server_t *s)
{
    if (s->pool->password != NULL)
        return s->pool->password;
    px_user_t *u = px_userlist_find(s->pool->server_user);
    if (u != NULL && u->kind != PX_SECRET_SCRAM)
        return u->secret;
    if (u != NULL && u->proven_password != NULL)
        return u->proven_password;
    return NULL;
}

static bool send_built(px_server_t *s, pgw_buf_t *b)
{
    bool ok = !pgw_buf_failed(b) && px_io_write(&s->io, b->data, b->len) == 0;
    pgw_buf_free(b);
    if (!ok)
        server_login_failed(s, "53200", "out of memory");
    return ok;
}

static void login_sasl_start(px_server_t *s, const pgw_auth_t *a)
{
    if (!pgw_auth_has_mechanism(a, "SCRAM-SHA-256")) {
        server_login_failed(s, "08P01", "server offers no supported SASL mechanism");
        return;
    }
    s->scram = calloc(1, sizeof(*s->scram));
    uint8_t nonce[PGW_SCRAM_NONCE_RAW];
    if (s->scram == NULL || RAND_bytes(nonce, sizeof(nonce)) != 1) {
        server_login_failed(s, "53200", "out of memory");
        return;
    }
    const char *pw = login_password(s);
    px_user_t *u = px_userlist_find(s->pool->server_user);
    int rc;
    if (pw != NULL && strncmp(pw, "md5", 3) != 0)
        rc = pgw_scram_client_init(s->scram, pw, nonce);
    else if (u != NULL && u->have_keys)
        rc = pgw_scram_client_init_keys(s->scram, u->client_key, u->server_key, nonce);
    else {
        server_login_failed(s, "28P01", "no password known to log in to the server with SCRAM");
        return;
    }
    if (rc != 0) {
        server_login_failed(s, "08P01", "SCRAM initialisation failed");
        return;
    }
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_sasl_initial(&b, "SCRAM-SHA-256", s->scram->client_first, strlen(s->scram->client_first));
    (void)send_built(s, &b);
}

static void login_auth(px_server_t *s, const pgw_frame_t *f)
{
    pgw_auth_t a;
    if (pgw_decode_auth(f, &a) != 0) {
        server_login_failed(s, "08P01", "invalid authentication request from server");
        return;
    }
    pgw_buf_t b;
    pgw_buf_init(&b);
    const char *pw = login_password(s);
    switch (a.code) {
    case PGW_AUTH_OK:
        pgw_buf_free(&b);
        return;
    case PGW_AUTH_CLEARTEXT:
        if (pw == NULL || strncmp(pw, "md5", 3) == 0)
            break;
        pgw_build_password(&b, pw);
        (void)send_built(s, &b);
        return;
    case PGW_AUTH_MD5: {
        char resp[36];
        if (pw == NULL || pgw_md5_response(s->pool->server_user, pw, a.md5_salt, resp) != 0)
            break;
        pgw_build_password(&b, resp);
        (void)send_built(s, &b);
        return;
    }
    case PGW_AUTH_SASL:
        pgw_buf_free(&b);
        login_sasl_start(s, &a);
        return;
    case PGW_AUTH_SASL_CONTINUE:
        if (s->scram == NULL || pgw_scram_client_continue(s->scram, a.data, a.data_len) != 0) {
            pgw_buf_free(&b);
            server_login_failed(s, "08P01", "SCRAM exchange with the server failed");
            return;
        }
        pgw_build_sasl_response(&b, s->scram->client_final, strlen(s->scram->client_final));
        (void)send_built(s, &b);
        return;
    case PGW_AUTH_SASL_FINAL:
        pgw_buf_free(&b);
        if (s->scram == NULL || pgw_scram_client_finish(s->scram, a.data, a.data_len) != 0)
            server_login_failed(s, "08P01", "server's SCRAM signature is invalid");
        return;
    default:
        pgw_buf_free(&b);
        server_login_failed(s, "08P01", "server asked for an unsupported authentication method");
        return;
    }
    pgw_buf_free(&b);
    server_login_failed(s, "28P01", "no password known to log in to the server");
}

static void login_param(px_server_t *s, const pgw_frame_t *f)
{
    pgw_param_status_t ps;
    if (pgw_decode_param_status(f, &ps) != 0)
        return;
    int var = px_var_lookup(ps.name.ptr, ps.name.len);
    if (var >= 0)
        px_vars_set(&s->vars, (px_var_t)var, ps.value.ptr, ps.value.len);
    login_params_t *p = &login_of(s)->params;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        char **nn = realloc(p->names, nc * sizeof(char *));
        if (nn != NULL)
            p->names = nn;
        char **nv = realloc(p->values, nc * sizeof(char *));
        if (nv != NULL)
            p->values = nv;
        if (nn == NULL || nv == NULL)
            return;
        p->cap = nc;
    }
    p->names[p->n] = strndup(ps.name.ptr, ps.name.len);
    p->values[p->n] = strndup(ps.value.ptr, ps.value.len);
    if (p->names[p->n] == NULL || p->values[p->n] == NULL) {
        free(p->names[p->n]);
        free(p->values[p->n]);
        return;
    }
    p->n++;
}

/* The first server of a pool provides the parameter set every client sees at login. */
static void login_complete(px_server_t *s)
{
    px_pool_t *pool = s->pool;
    px_server_login_t *l = login_of(s);
    if (!pool->welcome_ready) {
        pool->welcome_names = l->params.names;
        pool->welcome_values = l->params.values;
        pool->nwelcome = l->params.n;
        pool->welcome_ready = true;
        memset(&l->params, 0, sizeof(l->params));
    }
    free_login_params(&l->params);
    if (s->scram != NULL) {
        OPENSSL_cleanse(s->scram, sizeof(*s->scram));
        free(s->scram);
        s->scram = NULL;
    }
    px_log_debug("S-%llu: %s/%s login complete (backend pid %u)", (unsigned long long)s->id,
                 pool->dbname, pool->user, s->backend_pid);
    px_pool_server_ready(s);
}

static void login_error(px_server_t *s, const pgw_frame_t *f)
{
    pgw_error_fields_t e;
    char msg[512] = "server login failed";
    char code[8] = "08P01";
    if (pgw_decode_error(f, &e) == 0) {
        if (e.message.ptr != NULL)
            snprintf(msg, sizeof(msg), "%.*s", (int)e.message.len, e.message.ptr);
        if (e.sqlstate.ptr != NULL)
            snprintf(code, sizeof(code), "%.*s", (int)e.sqlstate.len, e.sqlstate.ptr);
    }
    server_login_failed(s, code, msg);
}

static ssize_t server_login_data(px_server_t *s, const uint8_t *data, size_t len)
{
    pgw_frame_t f;
    size_t need;
    int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, data, len, &f, &need);
    if (rc == PGW_ENEEDMORE)
        return 0;
    if (rc < 0) {
        server_login_failed(s, "08P01", "protocol violation by the server during login");
        return -1;
    }
    switch (f.type) {
    case PGW_MSG_AUTHENTICATION: login_auth(s, &f); break;
    case PGW_MSG_PARAMETER_STATUS: login_param(s, &f); break;
    case PGW_MSG_ERROR_RESPONSE: login_error(s, &f); break;
    case PGW_MSG_BACKEND_KEY_DATA: {
        pgw_cancel_t k;
        if (pgw_decode_backend_key(&f, &k) == 0) {
            s->backend_pid = k.pid;
            s->backend_key = k.key;
        }
        break;
    }
    case PGW_MSG_READY_FOR_QUERY: {
        uint8_t st;
        if (pgw_decode_ready(&f, &st) != 0) {
            server_login_failed(s, "08P01", "invalid ReadyForQuery from server");
            return -1;
        }
        s->last_status = st;
        login_complete(s);
        break;
    }
    case PGW_MSG_NOTICE_RESPONSE:
    case PGW_MSG_NEGOTIATE_PROTOCOL_VERSION:
        break;
    default:
        server_login_failed(s, "08P01", "unexpected message from server during login");
        return -1;
    }
    return s->state == PX_SV_CLOSING ? -1 : rc;
}

/* ---------------------------------------------------------------------------------------------
 * After login
 * ------------------------------------------------------------------------------------------- */

static void track_param(px_server_t *s, const pgw_frame_t *f, bool to_client)
{
    pgw_param_status_t ps;
    if (pgw_decode_param_status(f, &ps) != 0)
        return;
    int var = px_var_lookup(ps.name.ptr, ps.name.len);
    if (var < 0)
        return;
    px_vars_set(&s->vars, (px_var_t)var, ps.value.ptr, ps.value.len);
    if (to_client && s->client != NULL)
        px_vars_set(&s->client->vars, (px_var_t)var, ps.value.ptr, ps.value.len);
}

void px_server_internal_query(px_server_t *s, const char *sql)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_query(&b, sql);
    if (pgw_buf_failed(&b) || px_io_write(&s->io, b.data, b.len) < 0) {
        pgw_buf_free(&b);
        px_server_close(s, "out of memory");
        return;
    }
    pgw_buf_free(&b);
    s->internal_error = false;
    px_ps_server_internal_query(s, sql);
}

/* End of pgshim's SET: settings the server did not report as changed were equivalent spellings,
 * so the client adopts the server's canonical value and no SET repeats next time. */
static void vars_synced(px_server_t *s)
{
    px_client_t *c = s->client;
    s->setting_vars = false;
    for (int v = 0; v < PX_VAR__COUNT; v++) {
        if (s->set_vars[v] && !s->internal_error && s->vars.v[v] != NULL)
            px_vars_set(&c->vars, (px_var_t)v, s->vars.v[v], strlen(s->vars.v[v]));
        s->set_vars[v] = false;
    }
    if (s->internal_error)
        px_log_warn("S-%llu: setting client parameters failed; continuing", (unsigned long long)s->id);
    px_server_update_reading(s);
    px_client_resume(c);
}

/* Replies to pgshim's own queries (SET before a client, reset after one, and any stray
 * messages on an idle server) are consumed whole here and never reach a client. */
static ssize_t server_internal_data(px_server_t *s, const uint8_t *data, size_t len)
{
    pgw_frame_t f;
    size_t need;
    int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, data, len, &f, &need);
    if (rc == PGW_ENEEDMORE)
        return 0;
    if (rc < 0) {
        px_server_close(s, "protocol violation by the server");
        return -1;
    }
    switch (f.type) {
    case PGW_MSG_PARAMETER_STATUS:
        track_param(s, &f, s->setting_vars);
        break;
    case PGW_MSG_ERROR_RESPONSE:
        s->internal_error = true;
        if (s->state == PX_SV_IDLE) {
            px_server_close(s, "server sent an error while idle");
            return -1;
        }
        break;
    case PGW_MSG_READY_FOR_QUERY: {
        uint8_t st;
        if (pgw_decode_ready(&f, &st) != 0) {
            px_server_close(s, "invalid ReadyForQuery from server");
            return -1;
        }
        s->last_status = st;
        if (s->state == PX_SV_ACTIVE && s->setting_vars) {
            vars_synced(s);
        } else if (s->state == PX_SV_USED) {
            if (st != (uint8_t)'I' || s->internal_error) {
                px_server_close(s, s->checking ? "server_check_query failed" : "reset query failed");
                return -1;
            }
            px_pool_server_ready(s);
        }
        break;
    }
    default:
        if (s->state == PX_SV_IDLE && f.type != PGW_MSG_NOTICE_RESPONSE &&
            f.type != PGW_MSG_NOTIFICATION_RESPONSE) {
            px_server_close(s, "unexpected message from idle server");
            return -1;
        }
        break;
    }
    return s->state == PX_SV_CLOSING ? -1 : rc;
}

/* COPY FROM STDIN started: Syncs the client sent after the Execute that began it are ignored
 * by PostgreSQL, so they will not be answered with ReadyForQuery. */
static void note_copy_in(px_server_t *s)
{
    s->copy_in = true;
    s->pending -= s->syncs_since_exec < s->pending ? s->syncs_since_exec : s->pending;
    s->syncs_since_exec = 0;
}

/* Writes the server's bytes of a run to the client (and to a shadow comparison). */
static bool relay_run(px_client_t *c, const uint8_t *data, size_t n)
{
    if (n == 0)
        return true;
    px_intercept_server_data(c, data, n);  /* shadow mode copies PostgreSQL's reply */
    if (px_io_write(&c->io, data, n) < 0) {
        px_client_fatal(c, "53200", "out of memory");
        return false;
    }
    c->pool->stats->total.sent += n;
    return true;
}

/* SHOW STATS: a ReadyForQuery reached the client; it ends a query, and with status idle a
   transaction (px_dbstats.h). */
static void count_ready(px_server_t *s, uint8_t st)
{
    px_dbstats_t *ds = s->pool->stats;
    uint64_t now = px_dbstats_now_us();
    ds->total.query_count++;
    if (s->query_since_us != 0)
        ds->total.query_time += now - s->query_since_us;
    s->query_since_us = s->pending > 0 ? now : 0;
    if (st == (uint8_t)'I') {
        ds->total.xact_count++;
        if (s->xact_since_us != 0)
            ds->total.xact_time += now - s->xact_since_us;
        s->xact_since_us = 0;
    }
}

/* Linked to a client: messages stream through; ReadyForQuery and ParameterStatus are read whole
 * (they are small) to track the transaction status and the session settings. With prepared-
 * statement tracking (c->ps_on) every message is matched against the server's reply FIFO: a run
 * of bytes is cut where a reply to pgshim's own message is skipped or where an answer pgshim
 * made up is written in its place in the stream. */
static ssize_t server_forward_data(px_server_t *s, const uint8_t *data, size_t len)
{
    px_client_t *c = s->client;
    bool ps = c->ps_on;
    size_t off = 0, run = 0;
    bool ended = false, fake_ready = false;
    while (off < len && !ended) {
        if (s->msg_left == 0) {
            pgw_frame_t f;
            if (ps && px_ps_fake_due(s)) {
                if (!relay_run(c, data + run, off - run))
                    return (ssize_t)off;
                run = off;
                fake_ready |= px_ps_emit_fakes(s);
                if (s->client != c)
                    return (ssize_t)off;
            }
            int rc = pgw_frame_peek(PGW_B, data + off, len - off, &f);
            if (rc == PGW_ENEEDMORE)
                break;
            if (rc < 0) {
                px_server_close(s, "protocol violation by the server");
                return -1;
            }
            if (f.type == PGW_MSG_READY_FOR_QUERY || f.type == PGW_MSG_PARAMETER_STATUS) {
                size_t need;
                rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, data + off, len - off, &f, &need);
                if (rc == PGW_ENEEDMORE)
                    break;
                uint8_t st = 0;
                if (rc < 0 || (f.type == PGW_MSG_READY_FOR_QUERY && pgw_decode_ready(&f, &st) != 0)) {
                    px_server_close(s, "protocol violation by the server");
                    return -1;
                }
                if (f.type == PGW_MSG_PARAMETER_STATUS) {
                    track_param(s, &f, true);
                } else if (px_cache_hold_ready(c, st, s->pending > 1 ? (int)s->pending - 1 : 0)) {
                    break;  /* a write committed: held until its cache invalidation lands */
                } else {
                    s->last_status = st;
                    s->ready_since = uv_now(px_loop);
                    if (s->pending > 0)
                        s->pending--;
                    ended = s->pending == 0;
                    count_ready(s, st);
                }
            }
            if (ps) {
                /* An error may be replaced (written by px_ps_server_msg), a reply may be
                 * skipped: either way what came before goes out first. */
                if (f.type == PGW_MSG_ERROR_RESPONSE || px_ps_swallows_next(s)) {
                    if (!relay_run(c, data + run, off - run))
                        return (ssize_t)off;
                    run = off;
                }
                int act = px_ps_server_msg(s, f.type);
                if (act < 0) {
                    px_server_close(s, "prepared statement replies out of step");
                    return -1;
                }
                if (s->client != c)
                    return (ssize_t)off;
                s->ps_swallowing = act == PX_PS_SWALLOW;
            }
            if (f.type == PGW_MSG_COPY_IN_RESPONSE)
                note_copy_in(s);
            s->msg_left = f.total_len;
        }
        size_t n = len - off < s->msg_left ? len - off : s->msg_left;
        s->msg_left -= (uint32_t)n;
        off += n;
        if (ps && s->ps_swallowing)
            run = off;  /* a reply to pgshim's own message: not the client's */
    }
    if (!relay_run(c, data + run, off - run))
        return (ssize_t)off;
    if (ps && s->msg_left == 0) {
        fake_ready |= px_ps_emit_fakes(s);
        if (s->client != c)
            return (ssize_t)off;
    }
    if (ended || fake_ready)
        px_pool_maybe_release(s);
    else if (px_io_queued(&c->io) > px_io_high_water)
        px_server_update_reading(s);
    return (ssize_t)off;
}

static ssize_t server_on_data(px_io_t *io, const uint8_t *data, size_t len)
{
    px_server_t *s = io->owner;
    switch (s->state) {
    case PX_SV_LOGIN:
        return server_login_data(s, data, len);
    case PX_SV_ACTIVE:
        if (s->setting_vars || s->client == NULL)
            return server_internal_data(s, data, len);
        return server_forward_data(s, data, len);
    case PX_SV_IDLE:
    case PX_SV_USED:
        return server_internal_data(s, data, len);
    case PX_SV_CLOSING:
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Cancel
 * ------------------------------------------------------------------------------------------- */

static void cancel_closed_cb(uv_handle_t *h)
{
    cancel_conn_t *cc = h->data;
    if (--cc->open_handles == 0)
        free(cc);
}

static void cancel_finish(cancel_conn_t *cc)
{
    if (cc->closing)
        return;
    cc->closing = true;
    uv_close((uv_handle_t *)&cc->timer, cancel_closed_cb);
    uv_close(&cc->h.handle, cancel_closed_cb);
}

static void cancel_timeout_cb(uv_timer_t *t)
{
    cancel_conn_t *cc = t->data;
    px_log_warn("cancel request: not delivered within cancel_wait_timeout, dropped");
    cancel_finish(cc);
}

static void cancel_written_cb(uv_write_t *req, int status)
{
    cancel_conn_t *cc = req->data;
    (void)status;
    cancel_finish(cc);
}

static void cancel_connect_cb(uv_connect_t *req, int status)
{
    cancel_conn_t *cc = req->data;
    if (cc->closing)
        return;  /* timed out; the close cancels the request */
    if (status < 0) {
        px_log_warn("cancel request: cannot connect to server: %s", uv_strerror(status));
        cancel_finish(cc);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)cc->packet, (unsigned)cc->packet_len);
    cc->write_req.data = cc;
    if (uv_write(&cc->write_req, &cc->h.stream, &b, 1, cancel_written_cb) < 0)
        cancel_finish(cc);
}

void px_server_send_cancel(px_server_t *s)
{
    cancel_conn_t *cc = calloc(1, sizeof(*cc));
    if (cc == NULL)
        return;
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, cc->packet, sizeof(cc->packet));
    pgw_build_cancel_request(&b, s->backend_pid, s->backend_key);
    cc->packet_len = b.len;
    cc->h.handle.data = cc;
    cc->connect_req.data = cc;
    px_server_login_t *l = login_of(s);
    if (pgw_buf_failed(&b) || l == NULL) {
        free(cc);
        return;
    }
    uv_timer_init(px_loop, &cc->timer);
    cc->timer.data = cc;
    uv_unref((uv_handle_t *)&cc->timer);  /* never what keeps the loop (and shutdown) alive */
    cc->open_handles = 2;
    if (px_cfg->cancel_wait_timeout > 0)
        uv_timer_start(&cc->timer, cancel_timeout_cb,
                       (uint64_t)(px_cfg->cancel_wait_timeout * 1000.0), 0);
    if (!s->io.is_tcp) {
        char path[512];
        socket_path(s->pool, path, sizeof(path));
        uv_pipe_init(px_loop, &cc->h.pipe, 0);
        uv_pipe_connect(&cc->connect_req, &cc->h.pipe, path, cancel_connect_cb);
        return;
    }
    uv_tcp_init(px_loop, &cc->h.tcp);
    if (uv_tcp_connect(&cc->connect_req, &cc->h.tcp, (struct sockaddr *)&l->addr,
                       cancel_connect_cb) < 0)
        cancel_finish(cc);
}
