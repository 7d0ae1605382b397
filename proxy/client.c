/*
 * Client connections: accept, startup phase (SSLRequest/GSSENCRequest refused, CancelRequest
 * forwarded, StartupMessage checked), welcome, and forwarding the client's messages to its
 * server.
 *
 * Invariants: px_client_set_state() is the only writer of c->state and of c->node; message
 * boundaries are tracked with pgw_frame_peek() so that only headers are inspected, and bytes are
 * forwarded as they arrive (msg_left counts the rest of a message being streamed). A client's
 * bytes are consumed only when they can go somewhere: while it waits for a server they stay in
 * its input buffer and reading is paused. With named prepared statements tracked (c->ps_on,
 * prepared.c) Parse/Bind/Describe/Close/Query go through px_ps_client_msg, which may rewrite,
 * answer or complete them; every other message is forwarded unchanged and queued on the server's
 * reply FIFO.
 */
#include "px_proxy.h"
#include "px_admin.h"
#include "px_dbstats.h"
#include "px_log.h"
#include "px_native.h"
#include "px_prepared.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Answer to SSLRequest/GSSENCRequest: a single byte, not a message. */
#define PX_REFUSE_ENCRYPTION ((uint8_t)'N')
#define CANCEL_HASH_SIZE 4096

static px_client_t *g_cancel_hash[CANCEL_HASH_SIZE];

static ssize_t client_on_data(px_io_t *io, const uint8_t *data, size_t len);
static void client_on_error(px_io_t *io, int err);
static void client_on_drain(px_io_t *io);
static void client_on_closed(px_io_t *io);

static const px_io_ops_t client_ops = {
    .on_data = client_on_data,
    .on_error = client_on_error,
    .on_drain = client_on_drain,
    .on_closed = client_on_closed,
};

/* ---------------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------------- */

static px_list_t *client_list(px_client_t *c, px_client_state_t st)
{
    switch (st) {
    case PX_CL_LOGIN: return &g_login_clients;
    case PX_CL_WAIT_LOGIN: return &c->pool->wait_login;
    case PX_CL_ACTIVE: return &c->pool->active_clients;
    case PX_CL_WAITING: return &c->pool->waiting_clients;
    case PX_CL_CLOSING: return &g_closing_clients;
    case PX_CL_ADMIN: return px_admin_client_list();
    }
    return &g_closing_clients;
}

void px_client_set_state(px_client_t *c, px_client_state_t st)
{
    if (c->state == PX_CL_WAITING && st != PX_CL_WAITING && c->pool != NULL)
        c->pool->stats->total.wait_time += (uv_now(px_loop) - c->state_since) * 1000u;
    px_list_del(&c->node);
    c->state = st;
    c->state_since = uv_now(px_loop);
    px_list_append(client_list(c, st), &c->node);
    px_client_update_reading(c);
}

void px_client_update_reading(px_client_t *c)
{
    bool on;
    switch (c->state) {
    case PX_CL_LOGIN:
        on = true;
        break;
    case PX_CL_ADMIN:
        on = px_io_queued(&c->io) <= px_io_high_water;
        break;
    case PX_CL_ACTIVE:
        if (c->server == NULL)
            on = c->io.rlen < PGW_LIMIT_SMALL;  /* idle: notice disconnects, buffer a header */
        else
            on = !c->server->setting_vars && c->server->state == PX_SV_ACTIVE &&
                 px_io_queued(&c->server->io) <= px_io_high_water;
        break;
    default:
        on = false;
        break;
    }
    if (on && px_intercept_blocks_reading(c))
        on = false;  /* a native answer for its front message is being computed */
    px_io_set_reading(&c->io, on);
}

/* ---------------------------------------------------------------------------------------------
 * Cancel keys
 * ------------------------------------------------------------------------------------------- */

static void cancel_hash_add(px_client_t *c)
{
    for (;;) {
        uint32_t kv[2];
        if (RAND_bytes((unsigned char *)kv, sizeof(kv)) != 1)
            kv[0] = (uint32_t)c->id * 2654435761u, kv[1] = (uint32_t)rand();
        kv[0] &= 0x7fffffff;  /* keep the pid positive like a real backend pid */
        if (kv[0] == 0 || px_client_find_cancel(kv[0], kv[1]) != NULL)
            continue;
        c->cancel_pid = kv[0];
        c->cancel_key = kv[1];
        break;
    }
    px_client_t **head = &g_cancel_hash[c->cancel_pid % CANCEL_HASH_SIZE];
    c->hash_next = *head;
    *head = c;
    c->hashed = true;
}

static void cancel_hash_del(px_client_t *c)
{
    if (!c->hashed)
        return;
    for (px_client_t **p = &g_cancel_hash[c->cancel_pid % CANCEL_HASH_SIZE]; *p; p = &(*p)->hash_next) {
        if (*p == c) {
            *p = c->hash_next;
            break;
        }
    }
    c->hashed = false;
}

px_client_t *px_client_find_cancel(uint32_t pid, uint32_t key)
{
    for (px_client_t *c = g_cancel_hash[pid % CANCEL_HASH_SIZE]; c; c = c->hash_next)
        if (c->cancel_pid == pid && c->cancel_key == key)
            return c;
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Accept and close
 * ------------------------------------------------------------------------------------------- */

void px_tcp_set_options(uv_tcp_t *tcp)
{
    if (px_cfg->tcp_nodelay)
        uv_tcp_nodelay(tcp, 1);
    if (!px_cfg->tcp_keepalive)
        return;
    uv_tcp_keepalive(tcp, 1, px_cfg->tcp_keepidle > 0 ? (unsigned)px_cfg->tcp_keepidle : 7200);
    /* libuv only sets the idle time; interval and count go straight to the socket. */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)tcp, &fd) != 0)
        return;
    if (px_cfg->tcp_keepintvl > 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &px_cfg->tcp_keepintvl, sizeof(int));
    if (px_cfg->tcp_keepcnt > 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &px_cfg->tcp_keepcnt, sizeof(int));
}

void px_client_accept(uv_stream_t *listener, bool is_tcp)
{
    px_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        px_log_error("out of memory accepting a client");
        return;
    }
    px_io_init(&c->io, &client_ops, c, is_tcp);
    px_list_init(&c->node);
    c->id = px_next_id();
    int rc = is_tcp ? uv_tcp_init(px_loop, &c->io.h.tcp) : uv_pipe_init(px_loop, &c->io.h.pipe, 0);
    if (rc < 0) {
        free(c);
        return;
    }
    c->io.open = true;
    px_nclients++;
    c->state = PX_CL_LOGIN;
    c->state_since = c->last_active = uv_now(px_loop);
    px_list_append(&g_login_clients, &c->node);
    if (uv_accept(listener, &c->io.h.stream) < 0) {
        px_client_close(c, "accept failed");
        return;
    }
    if (is_tcp)
        px_tcp_set_options(&c->io.h.tcp);
    px_io_peer_name(&c->io, c->addr, sizeof(c->addr));
    if (px_nclients > px_cfg->max_client_conn) {
        px_client_fatal(c, "53300", "no more connections allowed (max_client_conn)");
        return;
    }
    if (px_shutting_down) {
        px_client_fatal(c, "57P01", "pgshim is shutting down");
        return;
    }
    px_client_update_reading(c);
}

static void log_disconnect(px_client_t *c)
{
    if (c->cancel_only || !px_cfg->log_disconnections || !c->startup_done)
        return;
    px_log_info("C-%llu: %s/%s@%s closing because: %s", (unsigned long long)c->id,
                c->dbname ? c->dbname : "?", c->user ? c->user : "?", c->addr,
                c->close_reason ? c->close_reason : "client close request");
}

static void client_close_common(px_client_t *c, bool flush)
{
    if (c->state == PX_CL_CLOSING)
        return;
    log_disconnect(c);
    cancel_hash_del(c);
    px_intercept_client_gone(c);
    if (c->server != NULL || c->state == PX_CL_WAITING || c->state == PX_CL_WAIT_LOGIN ||
        c->state == PX_CL_ACTIVE)
        px_pool_client_gone(c);
    px_client_set_state(c, PX_CL_CLOSING);
    px_io_close(&c->io, flush);
}

void px_client_close(px_client_t *c, const char *reason)
{
    if (c->close_reason == NULL)
        c->close_reason = reason;
    client_close_common(c, true);
}

void px_client_fatal(px_client_t *c, const char *sqlstate, const char *fmt, ...)
{
    if (c->state == PX_CL_CLOSING)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (sqlstate != NULL) {
        uint8_t mem[1024];
        pgw_buf_t b;
        pgw_buf_init_fixed(&b, mem, sizeof(mem));
        pgw_build_error(&b, "FATAL", sqlstate, msg, NULL, NULL);
        if (!pgw_buf_failed(&b))
            (void)px_io_write(&c->io, b.data, b.len);
    }
    if (px_cfg->log_pooler_errors && c->startup_done)
        px_log_warn("C-%llu: %s/%s@%s pooler error: %s", (unsigned long long)c->id,
                    c->dbname ? c->dbname : "?", c->user ? c->user : "?", c->addr, msg);
    /* The reason outlives this call: keep a static description for the log line. */
    c->close_reason = sqlstate != NULL ? "pooler error sent" : "closed";
    client_close_common(c, true);
}

static void client_on_error(px_io_t *io, int err)
{
    px_client_t *c = io->owner;
    px_client_close(c, err == UV_EOF ? "client unexpected eof" : "client socket error");
}

static void client_on_drain(px_io_t *io)
{
    px_client_t *c = io->owner;
    if (c->server != NULL)
        px_server_update_reading(c->server);
}

static void client_on_closed(px_io_t *io)
{
    px_client_t *c = io->owner;
    px_list_del(&c->node);
    px_io_release(&c->io);
    px_vars_free(&c->vars);
    px_vars_free(&c->startup_vars);
    px_ps_client_free(c);
    free(c->scram);
    free(c->user);
    free(c->dbname);
    free(c);
    px_nclients--;
}

/* ---------------------------------------------------------------------------------------------
 * Startup phase
 * ------------------------------------------------------------------------------------------- */

static void handle_cancel(px_client_t *c, const pgw_frame_t *f)
{
    pgw_cancel_t req;
    c->cancel_only = true;
    if (pgw_decode_cancel(f, &req) != 0) {
        px_client_close(c, "bad cancel request");
        return;
    }
    px_client_t *target = px_client_find_cancel(req.pid, req.key);
    if (target != NULL && target->server != NULL && target->server->state == PX_SV_ACTIVE) {
        px_log_debug("C-%llu: forwarding cancel for C-%llu to S-%llu", (unsigned long long)c->id,
                     (unsigned long long)target->id, (unsigned long long)target->server->id);
        px_server_send_cancel(target->server);
    }
    /* PostgreSQL answers a CancelRequest by closing the connection, whatever happened. */
    px_client_close(c, "cancel request");
}

/* Checks and records the startup parameters. Returns false after closing the client. */
static bool take_startup_params(px_client_t *c, const pgw_startup_t *st)
{
    for (uint32_t i = 0; i < st->nparams; i++) {
        const char *name = st->names[i].ptr;
        if (strcmp(name, "user") == 0 || strcmp(name, "database") == 0)
            continue;
        int var = px_var_lookup(name, st->names[i].len);
        if (var >= 0) {
            px_vars_set(&c->startup_vars, (px_var_t)var, st->values[i].ptr, st->values[i].len);
            continue;
        }
        if (px_config_ignored_param(px_cfg, name))
            continue;
        px_client_fatal(c, "08P01", "unsupported startup parameter: %s", name);
        return false;
    }
    return true;
}

static void add_host_to_app_name(px_client_t *c)
{
    const char *app = c->startup_vars.v[PX_VAR_APPLICATION_NAME];
    char buf[512];
    snprintf(buf, sizeof(buf), "%s - %s", app ? app : "", c->addr);
    px_vars_set(&c->startup_vars, PX_VAR_APPLICATION_NAME, buf, strlen(buf));
}

static void handle_startup(px_client_t *c, const pgw_frame_t *f)
{
    pgw_startup_t st;
    int rc = pgw_decode_startup(f, &st);
    if (rc == PGW_EUNSUPPORTED) {
        px_client_fatal(c, "0A000", "unsupported frontend protocol");
        return;
    }
    if (rc != 0) {
        px_client_fatal(c, "08P01", "invalid startup packet: %s", pgw_strerror(rc));
        return;
    }
    pgw_str_t user = pgw_startup_get(&st, "user");
    pgw_str_t db = pgw_startup_get(&st, "database");
    if (user.ptr == NULL || user.len == 0) {
        px_client_fatal(c, "08P01", "no username supplied");
        return;
    }
    c->user = strndup(user.ptr, user.len);
    c->dbname = db.ptr != NULL && db.len > 0 ? strndup(db.ptr, db.len) : strndup(user.ptr, user.len);
    if (c->user == NULL || c->dbname == NULL) {
        px_client_fatal(c, "53200", "out of memory");
        return;
    }
    c->startup_done = true;
    if (px_cfg->log_connections)
        px_log_info("C-%llu: %s/%s@%s login attempt", (unsigned long long)c->id, c->dbname,
                    c->user, c->addr);
    if (!take_startup_params(c, &st))
        return;
    if (px_cfg->application_name_add_host)
        add_host_to_app_name(c);
    if (px_admin_is_console(c->dbname)) {
        px_auth_start(c);  /* no pool: px_admin_login runs after authentication */
        return;
    }
    const char *err = NULL;
    c->pool = px_pool_get(c->dbname, c->user, &err);
    if (c->pool == NULL) {
        px_client_fatal(c, "08P01", "%s", err ? err : "no such database");
        return;
    }
    px_auth_start(c);
}

/* Handles one startup-phase message; returns bytes consumed (0 = need more). */
static ssize_t client_startup_data(px_client_t *c, const uint8_t *data, size_t len)
{
    pgw_frame_t f;
    size_t need = 0;
    int rc = pgw_frame_next(PGW_PHASE_STARTUP, PGW_F, data, len, &f, &need);
    if (rc == PGW_ENEEDMORE)
        return 0;
    if (rc < 0) {
        px_client_fatal(c, "08P01", "invalid startup packet: %s", pgw_strerror(rc));
        return -1;
    }
    switch (f.type) {
    case PGW_MSG_SSL_REQUEST:
    case PGW_MSG_GSSENC_REQUEST: {
        uint8_t no = PX_REFUSE_ENCRYPTION;
        (void)px_io_write(&c->io, &no, 1);
        break;
    }
    case PGW_MSG_CANCEL_REQUEST:
        handle_cancel(c, &f);
        break;
    case PGW_MSG_STARTUP:
        handle_startup(c, &f);
        break;
    default:
        px_client_fatal(c, "08P01", "invalid startup packet");
        break;
    }
    return c->state == PX_CL_CLOSING ? -1 : rc;
}

/* Authentication-phase messages: whole frames only. */
static ssize_t client_auth_data(px_client_t *c, const uint8_t *data, size_t len)
{
    pgw_frame_t f;
    size_t need = 0;
    int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &f, &need);
    if (rc == PGW_ENEEDMORE)
        return 0;
    if (rc < 0) {
        px_client_fatal(c, "08P01", "invalid message during authentication: %s", pgw_strerror(rc));
        return -1;
    }
    if (f.type == PGW_MSG_TERMINATE) {
        px_client_close(c, "client close request");
        return -1;
    }
    if (f.type != PGW_MSG_PASSWORD) {
        px_client_fatal(c, "08P01", "expected a password message, got %s", pgw_msg_name(f.type));
        return -1;
    }
    px_auth_message(c, &f);
    return c->state == PX_CL_CLOSING ? -1 : rc;
}

/* ---------------------------------------------------------------------------------------------
 * Welcome
 * ------------------------------------------------------------------------------------------- */

void px_client_welcome(px_client_t *c)
{
    px_pool_t *pool = c->pool;
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_auth_ok(&b);
    /* Fill unset variables from the pool's welcome set first so that every client has a
     * complete picture to compare with any server it is given later. */
    for (size_t i = 0; i < pool->nwelcome; i++) {
        const char *name = pool->welcome_names[i], *value = pool->welcome_values[i];
        int var = px_var_lookup(name, strlen(name));
        if (var >= 0 && c->startup_vars.v[var] != NULL)
            value = c->startup_vars.v[var];
        if (var >= 0)
            px_vars_set(&c->vars, (px_var_t)var, value, strlen(value));
        pgw_build_param_status(&b, name, value);
    }
    for (int v = 0; v < PX_VAR__COUNT; v++) {
        if (c->vars.v[v] == NULL && c->startup_vars.v[v] != NULL) {
            const char *value = c->startup_vars.v[v];
            px_vars_set(&c->vars, (px_var_t)v, value, strlen(value));
            pgw_build_param_status(&b, px_var_name((px_var_t)v), value);
        }
    }
    cancel_hash_add(c);
    pgw_build_backend_key(&b, c->cancel_pid, c->cancel_key);
    pgw_build_ready(&b, (uint8_t)'I');
    if (pgw_buf_failed(&b) || px_io_write(&c->io, b.data, b.len) < 0) {
        pgw_buf_free(&b);
        px_client_fatal(c, "53200", "out of memory");
        return;
    }
    pgw_buf_free(&b);
    /* Decided once: a reload that changes the option or the pool mode applies to new clients,
     * so a client's statement names never change meaning under it. */
    c->ps_on = px_ps_enabled_for(c);
    if (px_cfg->log_connections)
        px_log_info("C-%llu: %s/%s@%s login successful", (unsigned long long)c->id, c->dbname,
                    c->user, c->addr);
    px_client_set_state(c, PX_CL_ACTIVE);
    px_io_process(&c->io);
}

/* ---------------------------------------------------------------------------------------------
 * Normal phase
 * ------------------------------------------------------------------------------------------- */

static ssize_t client_forward_data(px_client_t *c, const uint8_t *data, size_t len);

/* Client is logged in but has no server: look at the next header to decide. */
static ssize_t client_idle_data(px_client_t *c, const uint8_t *data, size_t len)
{
    pgw_frame_t f;
    int rc = pgw_frame_peek(PGW_F, data, len, &f);
    if (rc == PGW_ENEEDMORE)
        return 0;
    if (rc < 0) {
        px_client_fatal(c, "08P01", "invalid client message: %s", pgw_strerror(rc));
        return -1;
    }
    if (f.type == PGW_MSG_TERMINATE) {
        if (len < f.total_len)
            return 0;
        px_client_close(c, "client close request");
        return -1;
    }
    if (c->ps_on && f.type == PGW_MSG_QUERY) {
        /* DEALLOCATE of a tracked name needs no server. */
        ssize_t r = px_ps_client_idle_query(c, &f, data, len);
        if (r == PX_PS_NEEDMORE)
            return 0;
        if (r == PX_PS_CLOSED)
            return -1;
        if (r > 0) {
            px_intercept_note_forward(c);
            return r;
        }
    }
    px_pool_request(c);
    /* The pool may have linked a server at once; forward now rather than wait for more input. */
    if (c->state == PX_CL_ACTIVE && c->server != NULL)
        return client_forward_data(c, data, len);
    return 0;
}

/* Counts what the server will answer with ReadyForQuery, and whether an extended-protocol batch
 * is open, so the pool knows when the server is really done. */
static void note_forwarded_message(px_server_t *s, pgw_msg_t type)
{
    if (s->pending == 0)
        s->work_since = uv_now(px_loop);
    if (s->pending == 0 && !s->unsynced) {
        /* The first message of a query (SHOW STATS); a transaction starts with its first. */
        s->query_since_us = px_dbstats_now_us();
        if (s->xact_since_us == 0)
            s->xact_since_us = s->query_since_us;
    }
    switch (type) {
    case PGW_MSG_QUERY:
    case PGW_MSG_FUNCTION_CALL:
        s->pending++;
        s->syncs_since_exec = 0;
        break;
    case PGW_MSG_SYNC:
        /* PostgreSQL ignores Sync during COPY FROM STDIN (libpq sends one right after the
         * Execute of a COPY); only the Sync after CopyDone/CopyFail earns a ReadyForQuery. */
        if (!s->copy_in) {
            s->pending++;
            s->syncs_since_exec++;
            s->unsynced = false;
        }
        break;
    case PGW_MSG_EXECUTE:
        s->syncs_since_exec = 0;
        s->unsynced = true;
        break;
    case PGW_MSG_COPY_DONE:
    case PGW_MSG_COPY_FAIL:
        s->copy_in = false;
        break;
    case PGW_MSG_PARSE:
    case PGW_MSG_BIND:
    case PGW_MSG_DESCRIBE:
    case PGW_MSG_CLOSE:
    case PGW_MSG_FLUSH:
        s->unsynced = true;
        break;
    default:
        break;
    }
}

void px_client__note_forwarded(px_server_t *s, pgw_msg_t type) { note_forwarded_message(s, type); }

/* Writes the client's bytes [0, n) of a run to its server. */
static bool write_run(px_client_t *c, px_server_t *s, const uint8_t *data, size_t n)
{
    if (n > 0 && px_io_write(&s->io, data, n) < 0) {
        px_client_fatal(c, "53200", "out of memory");
        return false;
    }
    return true;
}

/* Messages whose names the prepared-statement layer may rewrite or answer. */
static bool ps_looks_at(pgw_msg_t type)
{
    return type == PGW_MSG_PARSE || type == PGW_MSG_BIND || type == PGW_MSG_DESCRIBE ||
           type == PGW_MSG_CLOSE || type == PGW_MSG_QUERY;
}

/* Linked to a server: stream messages through, stopping at a Terminate. Bytes go out in runs;
 * with prepared-statement tracking on, a run ends before each message that layer handles. */
static ssize_t client_forward_data(px_client_t *c, const uint8_t *data, size_t len)
{
    px_server_t *s = c->server;
    if (s->setting_vars || s->state != PX_SV_ACTIVE)
        return 0;
    size_t off = 0, run = 0;
    while (off < len) {
        if (c->msg_left == 0) {
            pgw_frame_t f;
            int rc = pgw_frame_peek(PGW_F, data + off, len - off, &f);
            if (rc == PGW_ENEEDMORE)
                break;
            if (rc < 0) {
                px_client_fatal(c, "08P01", "invalid client message: %s", pgw_strerror(rc));
                return -1;
            }
            /* The per-type maximum (PostgreSQL's own limits) too: a header PostgreSQL would
             * reject must not reach the server, where it would cost the connection. */
            if ((int64_t)f.total_len > (int64_t)px_cfg->max_packet_size ||
                f.total_len - 1 > pgw_msg_max_len(f.type)) {
                px_client_fatal(c, "08P01", "message too long");
                return -1;
            }
            if (f.type == PGW_MSG_TERMINATE) {
                if (len - off < f.total_len)
                    break;
                /* Forward what came before, then leave: the server stays with the pool. */
                if (!write_run(c, s, data + run, off - run))
                    return -1;
                px_client_close(c, "client close request");
                return -1;
            }
            /* The interception hook must see each possible legacy call at the front. */
            if (off > 0 && px_intercept_stop_before(c, f.type))
                break;
            if (c->ps_on && ps_looks_at(f.type)) {
                if (!write_run(c, s, data + run, off - run))
                    return -1;
                run = off;
                uint32_t rest = 0;
                ssize_t r = px_ps_client_msg(c, &f, data + off, len - off, &rest);
                if (r == PX_PS_CLOSED)
                    return -1;
                if (r == PX_PS_NEEDMORE)
                    break;  /* the hook sees the message again, whole, before it goes */
                px_intercept_note_forward(c);
                if (r > 0) {
                    off += (size_t)r;
                    run = off;
                    c->msg_left = rest;
                    continue;
                }
            }
            px_intercept_note_forward(c);
            note_forwarded_message(s, f.type);
            if (c->ps_on)
                px_ps_note_forward(s, f.type, !s->copy_in);
            if (s->state == PX_SV_CLOSING)
                return -1;
            c->msg_left = f.total_len;
        }
        size_t n = len - off < c->msg_left ? len - off : c->msg_left;
        c->msg_left -= (uint32_t)n;
        off += n;
    }
    if (!write_run(c, s, data + run, off - run))
        return -1;
    /* Everything consumed and pgshim answered the last of it itself (a DEALLOCATE, say): no
     * ReadyForQuery will come from the server to release it, so release it here. */
    if (c->ps_on && off == len && c->server == s && c->msg_left == 0 && px_server_is_clean(s)) {
        px_pool_release_idle(s);
        return (ssize_t)off;
    }
    if (px_io_queued(&s->io) > px_io_high_water)
        px_client_update_reading(c);
    return (ssize_t)off;
}

static ssize_t client_on_data(px_io_t *io, const uint8_t *data, size_t len)
{
    px_client_t *c = io->owner;
    c->last_active = uv_now(px_loop);
    switch (c->state) {
    case PX_CL_LOGIN:
        if (!c->startup_done)
            return client_startup_data(c, data, len);
        return client_auth_data(c, data, len);
    case PX_CL_ACTIVE: {
        ssize_t r = px_intercept_client_data(c, data, len);
        if (r == PX_ICPT_CONTINUE)
            r = c->server == NULL ? client_idle_data(c, data, len) : client_forward_data(c, data, len);
        if (r > 0 && c->state != PX_CL_CLOSING)
            c->pool->stats->total.received += (uint64_t)r;
        return r;
    }
    case PX_CL_WAIT_LOGIN:
    case PX_CL_WAITING:
        return 0;
    case PX_CL_ADMIN:
        return px_admin_data(c, data, len);
    case PX_CL_CLOSING:
        return -1;
    }
    return 0;
}

void px_client_resume(px_client_t *c)
{
    px_client_update_reading(c);
    px_io_process(&c->io);
}
