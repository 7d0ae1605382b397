/*
 * admin: the admin console, the virtual database "pgshim" on the normal listeners.
 *
 * A client that asks for database "pgshim" authenticates against auth_file like everyone else,
 * never gets a pool, and is then checked against admin_users (everything) and stats_users (SHOW
 * only); anyone else is refused with 28000. It speaks the simple-query protocol: each Query is
 * one command (case-insensitive, optional trailing semicolon) answered with RowDescription,
 * DataRows and CommandComplete, or an ErrorResponse, and always ReadyForQuery. The PgBouncer
 * commands keep PgBouncer 1.18's column names, order and types so existing tooling parses them.
 *
 * Invariants: every reply is built completely in one pgw_buf_t and queued at a message
 * boundary; a malformed command costs an ErrorResponse, never the connection; the extended
 * protocol is refused with an error per batch and ReadyForQuery at its Sync. Admin clients sit
 * on g_admin_clients in state PX_CL_ADMIN.
 */
#include "px_admin.h"
#include "px_dbstats.h"
#include "px_log.h"
#include "px_proxy.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef PGSHIM_VERSION
#define PGSHIM_VERSION "0.1.0"
#endif

#define OID_INT4 23u
#define OID_INT8 20u
#define OID_TEXT 25u
#define OID_NUMERIC 1700u

int px_admin_extra_verbose;

static px_list_t g_admin_clients;
static bool g_admin_init;

/* Databases paused by PAUSE (all when g_pause_all). */
static char **g_paused;
static size_t g_npaused;
static bool g_pause_all;

/* Set when an extended-protocol batch was refused: everything up to its Sync is dropped. */
static px_client_t *g_ext_refused[64];

px_list_t *px_admin_client_list(void)
{
    if (!g_admin_init) {
        px_list_init(&g_admin_clients);
        g_admin_init = true;
    }
    return &g_admin_clients;
}

bool px_admin_is_console(const char *dbname)
{
    return dbname != NULL && strcmp(dbname, PX_ADMIN_DBNAME) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Access
 * ------------------------------------------------------------------------------------------- */

/* True when `user` appears in a comma/space separated list (exact, like PostgreSQL roles). */
static bool in_user_list(const char *list, const char *user)
{
    if (list == NULL || user == NULL)
        return false;
    size_t ul = strlen(user);
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        if ((size_t)(p - s) == ul && ul > 0 && memcmp(s, user, ul) == 0)
            return true;
    }
    return false;
}

bool px_admin_allowed(const char *user, bool *read_only)
{
    if (px_cfg == NULL)
        return false;
    if (in_user_list(px_cfg->admin_users, user)) {
        *read_only = false;
        return true;
    }
    if (in_user_list(px_cfg->stats_users, user)) {
        *read_only = true;
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Result building
 * ------------------------------------------------------------------------------------------- */

typedef struct col {
    const char *name;
    uint32_t oid;
} col_t;

typedef struct res {
    pgw_buf_t *b;
    int ncols;
    int rows;
} res_t;

static void res_begin(res_t *r, pgw_buf_t *b, const col_t *cols, int n)
{
    r->b = b;
    r->ncols = n;
    r->rows = 0;
    pgw_field_desc_t fd[40];
    for (int i = 0; i < n && i < 40; i++) {
        fd[i] = (pgw_field_desc_t){0};
        fd[i].name.ptr = cols[i].name;
        fd[i].name.len = strlen(cols[i].name);
        fd[i].type_oid = cols[i].oid;
        fd[i].type_len = cols[i].oid == OID_INT4 ? 4 : cols[i].oid == OID_INT8 ? 8 : -1;
        fd[i].type_mod = -1;
    }
    pgw_build_row_description(b, fd, (uint16_t)n);
}

static void row_begin(res_t *r)
{
    pgw_data_row_begin(r->b, (uint16_t)r->ncols);
    r->rows++;
}
static void put_text(res_t *r, const char *s)
{
    if (s == NULL)
        pgw_data_row_put_null(r->b);
    else
        pgw_data_row_put(r->b, s, (int32_t)strlen(s));
}
static void put_int(res_t *r, long long v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%lld", v);
    put_text(r, tmp);
}
static void put_u64(res_t *r, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    put_text(r, tmp);
}
static void row_end(res_t *r) { pgw_data_row_end(r->b); }

static void res_end(res_t *r, const char *tag) { pgw_build_command_complete(r->b, tag); }

static void fmt_time_ms(uint64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        buf[0] = '\0';
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* Wall-clock time of a uv_now() stamp (state_since), for display. */
static uint64_t loop_to_wall(uint64_t stamp)
{
    uint64_t now = uv_now(px_loop);
    uint64_t age = now > stamp ? now - stamp : 0;
    return wall_ms() - age;
}

/* ---------------------------------------------------------------------------------------------
 * PgBouncer-compatible SHOW commands
 * ------------------------------------------------------------------------------------------- */

static px_pool_t *pool_of(px_list_t *it) { return px_container_of(it, px_pool_t, node); }

static int oldest_wait_us(px_pool_t *p, uint64_t *us)
{
    uint64_t now = uv_now(px_loop), oldest = 0;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &p->waiting_clients)
    {
        px_client_t *c = px_container_of(it, px_client_t, node);
        uint64_t age = now - c->state_since;
        if (age > oldest)
            oldest = age;
    }
    *us = oldest * 1000u;
    return (int)(oldest / 1000u);
}

static void show_pools(pgw_buf_t *b)
{
    static const col_t cols[] = {
        {"database", OID_TEXT}, {"user", OID_TEXT}, {"cl_active", OID_INT4},
        {"cl_waiting", OID_INT4}, {"cl_active_cancel_req", OID_INT4},
        {"cl_waiting_cancel_req", OID_INT4}, {"sv_active", OID_INT4},
        {"sv_active_cancel", OID_INT4}, {"sv_being_canceled", OID_INT4}, {"sv_idle", OID_INT4},
        {"sv_used", OID_INT4}, {"sv_tested", OID_INT4}, {"sv_login", OID_INT4},
        {"maxwait", OID_INT4}, {"maxwait_us", OID_INT4}, {"pool_mode", OID_TEXT},
    };
    res_t r;
    res_begin(&r, b, cols, (int)(sizeof(cols) / sizeof(cols[0])));
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = pool_of(it);
        uint64_t wus;
        int ws = oldest_wait_us(p, &wus);
        row_begin(&r);
        put_text(&r, p->dbname);
        put_text(&r, p->user);
        put_int(&r, (long long)px_list_count(&p->active_clients));
        put_int(&r, (long long)(px_list_count(&p->waiting_clients) +
                                px_list_count(&p->wait_login)));
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, (long long)px_list_count(&p->active_servers));
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, (long long)px_list_count(&p->idle_servers));
        put_int(&r, (long long)px_list_count(&p->used_servers));
        put_int(&r, 0);
        put_int(&r, (long long)px_list_count(&p->login_servers));
        put_int(&r, ws);
        put_int(&r, (long long)(wus % 1000000u));
        put_text(&r, px_pool_mode_name(px_pool_mode(p)));
        row_end(&r);
    }
    /* The console itself, as PgBouncer lists its own admin database. */
    row_begin(&r);
    put_text(&r, PX_ADMIN_DBNAME);
    put_text(&r, PX_ADMIN_DBNAME);
    put_int(&r, (long long)px_list_count(px_admin_client_list()));
    for (int i = 0; i < 12; i++)
        put_int(&r, 0);
    put_text(&r, "statement");
    row_end(&r);
    res_end(&r, "SHOW");
}

static const col_t conn_cols[] = {
    {"type", OID_TEXT}, {"user", OID_TEXT}, {"database", OID_TEXT}, {"state", OID_TEXT},
    {"addr", OID_TEXT}, {"port", OID_INT4}, {"local_addr", OID_TEXT}, {"local_port", OID_INT4},
    {"connect_time", OID_TEXT}, {"request_time", OID_TEXT}, {"wait", OID_INT4},
    {"wait_us", OID_INT4}, {"close_needed", OID_INT4}, {"ptr", OID_TEXT}, {"link", OID_TEXT},
    {"remote_pid", OID_INT4}, {"tls", OID_TEXT}, {"application_name", OID_TEXT},
};
#define NCONN_COLS ((int)(sizeof(conn_cols) / sizeof(conn_cols[0])))

/* Splits "ip:port" (px_io_peer_name) into address and port; "unix" has port 0. */
static void split_addr(const char *addr, char *host, size_t hl, int *port)
{
    const char *colon = strrchr(addr, ':');
    *port = 0;
    if (colon == NULL || strcmp(addr, "unix") == 0) {
        snprintf(host, hl, "%s", addr);
        return;
    }
    size_t n = (size_t)(colon - addr);
    if (n >= hl)
        n = hl - 1;
    memcpy(host, addr, n);
    host[n] = '\0';
    *port = atoi(colon + 1);
}

static void local_name(px_io_t *io, char *host, size_t hl, int *port)
{
    host[0] = '\0';
    *port = 0;
    if (!io->is_tcp || !io->open) {
        snprintf(host, hl, "unix");
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&io->h.tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, host, hl);
        *port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, host, hl);
        *port = ntohs(a->sin6_port);
    }
}

static const char *client_state_name(const px_client_t *c)
{
    switch (c->state) {
    case PX_CL_LOGIN: return "login";
    case PX_CL_WAIT_LOGIN: return "waiting";
    case PX_CL_WAITING: return "waiting";
    case PX_CL_ACTIVE: return c->server != NULL ? "active" : "idle";
    case PX_CL_ADMIN: return "active";
    case PX_CL_CLOSING: return "closing";
    }
    return "?";
}

static void client_row(res_t *r, px_client_t *c)
{
    char host[80], lhost[80], ptr[32], link[32], ts[64];
    int port, lport;
    split_addr(c->addr, host, sizeof(host), &port);
    local_name(&c->io, lhost, sizeof(lhost), &lport);
    uint64_t now = uv_now(px_loop);
    uint64_t wait = c->state == PX_CL_WAITING && now > c->state_since ? now - c->state_since : 0;
    row_begin(r);
    put_text(r, "C");
    put_text(r, c->user);
    put_text(r, c->dbname);
    put_text(r, client_state_name(c));
    put_text(r, host);
    put_int(r, port);
    put_text(r, lhost);
    put_int(r, lport);
    /* pgshim keeps no connect time; the last state change is the closest thing it has. */
    fmt_time_ms(loop_to_wall(c->state_since), ts, sizeof(ts));
    put_text(r, ts);
    put_text(r, ts);
    put_int(r, (long long)(wait / 1000u));
    put_int(r, (long long)((wait % 1000u) * 1000u));
    put_int(r, 0);
    snprintf(ptr, sizeof(ptr), "%p", (void *)c);
    put_text(r, ptr);
    if (c->server != NULL)
        snprintf(link, sizeof(link), "%p", (void *)c->server);
    else
        link[0] = '\0';
    put_text(r, link);
    put_int(r, 0);
    put_text(r, "");
    put_text(r, c->vars.v[PX_VAR_APPLICATION_NAME] ? c->vars.v[PX_VAR_APPLICATION_NAME]
                 : c->startup_vars.v[PX_VAR_APPLICATION_NAME] ? c->startup_vars.v[PX_VAR_APPLICATION_NAME]
                                                             : "");
    row_end(r);
}

static void client_list_rows(res_t *r, px_list_t *head)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, head) client_row(r, px_container_of(it, px_client_t, node));
}

static void show_clients(pgw_buf_t *b)
{
    res_t r;
    res_begin(&r, b, conn_cols, NCONN_COLS);
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = pool_of(it);
        client_list_rows(&r, &p->active_clients);
        client_list_rows(&r, &p->waiting_clients);
        client_list_rows(&r, &p->wait_login);
    }
    client_list_rows(&r, px_admin_client_list());
    res_end(&r, "SHOW");
}

static const char *server_state_name(const px_server_t *s)
{
    switch (s->state) {
    case PX_SV_LOGIN: return "login";
    case PX_SV_IDLE: return "idle";
    case PX_SV_ACTIVE: return "active";
    case PX_SV_USED: return "used";
    case PX_SV_CLOSING: return "closing";
    }
    return "?";
}

static void server_rows(res_t *r, px_pool_t *p, px_list_t *head)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, head)
    {
        px_server_t *s = px_container_of(it, px_server_t, node);
        char lhost[80], ptr[32], link[32], ts[64];
        int lport;
        local_name(&s->io, lhost, sizeof(lhost), &lport);
        row_begin(r);
        put_text(r, "S");
        put_text(r, p->server_user ? p->server_user : p->user);
        put_text(r, p->dbname);
        put_text(r, server_state_name(s));
        put_text(r, p->host ? p->host : "unix");
        put_int(r, p->port);
        put_text(r, lhost);
        put_int(r, lport);
        fmt_time_ms(loop_to_wall(s->state_since), ts, sizeof(ts));
        put_text(r, ts);
        put_text(r, ts);
        put_int(r, 0);
        put_int(r, 0);
        put_int(r, s->conf_gen != p->conf_gen ? 1 : 0);
        snprintf(ptr, sizeof(ptr), "%p", (void *)s);
        put_text(r, ptr);
        if (s->client != NULL)
            snprintf(link, sizeof(link), "%p", (void *)s->client);
        else
            link[0] = '\0';
        put_text(r, link);
        put_int(r, (long long)s->backend_pid);
        put_text(r, "");
        put_text(r, s->vars.v[PX_VAR_APPLICATION_NAME] ? s->vars.v[PX_VAR_APPLICATION_NAME] : "");
        row_end(r);
    }
}

static void show_servers(pgw_buf_t *b)
{
    res_t r;
    res_begin(&r, b, conn_cols, NCONN_COLS);
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = pool_of(it);
        server_rows(&r, p, &p->active_servers);
        server_rows(&r, p, &p->idle_servers);
        server_rows(&r, p, &p->used_servers);
        server_rows(&r, p, &p->login_servers);
    }
    res_end(&r, "SHOW");
}

static bool db_paused(const char *db)
{
    if (g_pause_all)
        return true;
    for (size_t i = 0; i < g_npaused; i++)
        if (strcmp(g_paused[i], db) == 0)
            return true;
    return false;
}

bool px_admin_db_paused(const char *dbname) { return dbname != NULL && db_paused(dbname); }

static int db_server_count(const char *name)
{
    int n = 0;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = pool_of(it);
        if (strcmp(p->dbname, name) == 0)
            n += p->nservers;
    }
    return n;
}

static void show_databases(pgw_buf_t *b)
{
    static const col_t cols[] = {
        {"name", OID_TEXT}, {"host", OID_TEXT}, {"port", OID_INT4}, {"database", OID_TEXT},
        {"force_user", OID_TEXT}, {"pool_size", OID_INT4}, {"min_pool_size", OID_INT4},
        {"reserve_pool", OID_INT4}, {"pool_mode", OID_TEXT}, {"max_connections", OID_INT4},
        {"current_connections", OID_INT4}, {"paused", OID_INT4}, {"disabled", OID_INT4},
    };
    res_t r;
    res_begin(&r, b, cols, (int)(sizeof(cols) / sizeof(cols[0])));
    for (const px_db_conf_t *d = px_cfg->databases; d != NULL; d = d->next) {
        row_begin(&r);
        put_text(&r, d->name);
        put_text(&r, d->host);
        put_int(&r, d->port > 0 ? d->port : 5432);
        put_text(&r, d->dbname ? d->dbname : d->name);
        put_text(&r, d->user);
        put_int(&r, d->pool_size >= 0 ? d->pool_size : px_cfg->default_pool_size);
        put_int(&r, d->min_pool_size >= 0 ? d->min_pool_size : px_cfg->min_pool_size);
        put_int(&r, d->reserve_pool >= 0 ? d->reserve_pool : px_cfg->reserve_pool_size);
        put_text(&r, d->pool_mode != PX_POOL_INHERIT ? px_pool_mode_name(d->pool_mode) : NULL);
        put_int(&r, d->max_db_connections >= 0 ? d->max_db_connections : px_cfg->max_db_connections);
        put_int(&r, db_server_count(d->name));
        put_int(&r, db_paused(d->name) ? 1 : 0);
        put_int(&r, 0);
        row_end(&r);
    }
    row_begin(&r);
    put_text(&r, PX_ADMIN_DBNAME);
    put_text(&r, NULL);
    put_int(&r, px_cfg->listen_port);
    put_text(&r, PX_ADMIN_DBNAME);
    put_text(&r, PX_ADMIN_DBNAME);
    put_int(&r, 2);
    put_int(&r, 0);
    put_int(&r, 0);
    put_text(&r, "statement");
    put_int(&r, 0);
    put_int(&r, 0);
    put_int(&r, 0);
    put_int(&r, 0);
    row_end(&r);
    res_end(&r, "SHOW");
}

/* PgBouncer's SHOW STATS: one row per database pgshim has counted traffic for (a pool was
   created for it), totals and the averages of the last complete stats_period. */
static void show_stats(pgw_buf_t *b)
{
    static const col_t cols[] = {
        {"database", OID_TEXT}, {"total_xact_count", OID_NUMERIC},
        {"total_query_count", OID_NUMERIC}, {"total_received", OID_NUMERIC},
        {"total_sent", OID_NUMERIC}, {"total_xact_time", OID_NUMERIC},
        {"total_query_time", OID_NUMERIC}, {"total_wait_time", OID_NUMERIC},
        {"avg_xact_count", OID_NUMERIC}, {"avg_query_count", OID_NUMERIC},
        {"avg_recv", OID_NUMERIC}, {"avg_sent", OID_NUMERIC}, {"avg_xact_time", OID_NUMERIC},
        {"avg_query_time", OID_NUMERIC}, {"avg_wait_time", OID_NUMERIC},
    };
    res_t r;
    res_begin(&r, b, cols, (int)(sizeof(cols) / sizeof(cols[0])));
    for (const px_dbstats_t *d = px_dbstats_first(); d != NULL; d = d->next) {
        const px_dbstats_vals_t *t = &d->total, *a = &d->avg;
        row_begin(&r);
        put_text(&r, d->dbname);
        put_u64(&r, t->xact_count);
        put_u64(&r, t->query_count);
        put_u64(&r, t->received);
        put_u64(&r, t->sent);
        put_u64(&r, t->xact_time);
        put_u64(&r, t->query_time);
        put_u64(&r, t->wait_time);
        put_u64(&r, a->xact_count);
        put_u64(&r, a->query_count);
        put_u64(&r, a->received);
        put_u64(&r, a->sent);
        put_u64(&r, a->xact_time);
        put_u64(&r, a->query_time);
        put_u64(&r, a->wait_time);
        row_end(&r);
    }
    res_end(&r, "SHOW");
}

/* SHOW STATS_TOTALS (averages == false) and SHOW STATS_AVERAGES: the two halves of SHOW STATS
   with PgBouncer's shorter column names. */
static void show_stats_part(pgw_buf_t *b, bool averages)
{
    static const col_t cols[] = {
        {"database", OID_TEXT}, {"xact_count", OID_NUMERIC}, {"query_count", OID_NUMERIC},
        {"bytes_received", OID_NUMERIC}, {"bytes_sent", OID_NUMERIC},
        {"xact_time", OID_NUMERIC}, {"query_time", OID_NUMERIC}, {"wait_time", OID_NUMERIC},
    };
    res_t r;
    res_begin(&r, b, cols, (int)(sizeof(cols) / sizeof(cols[0])));
    for (const px_dbstats_t *d = px_dbstats_first(); d != NULL; d = d->next) {
        const px_dbstats_vals_t *v = averages ? &d->avg : &d->total;
        row_begin(&r);
        put_text(&r, d->dbname);
        put_u64(&r, v->xact_count);
        put_u64(&r, v->query_count);
        put_u64(&r, v->received);
        put_u64(&r, v->sent);
        put_u64(&r, v->xact_time);
        put_u64(&r, v->query_time);
        put_u64(&r, v->wait_time);
        row_end(&r);
    }
    res_end(&r, "SHOW");
}

static void config_row_cb(const char *name, const char *value, const char *def, bool reloadable,
                          void *arg)
{
    res_t *r = arg;
    row_begin(r);
    put_text(r, name);
    put_text(r, value);
    put_text(r, def);
    put_text(r, reloadable ? "yes" : "no");
    row_end(r);
}

static void show_config(pgw_buf_t *b)
{
    static const col_t cols[] = {
        {"key", OID_TEXT}, {"value", OID_TEXT}, {"default", OID_TEXT}, {"changeable", OID_TEXT},
    };
    res_t r;
    res_begin(&r, b, cols, 4);
    px_config_foreach_option(px_cfg, config_row_cb, &r);
    res_end(&r, "SHOW");
}

static void show_version(pgw_buf_t *b)
{
    static const col_t cols[] = {{"version", OID_TEXT}};
    res_t r;
    res_begin(&r, b, cols, 1);
    row_begin(&r);
    put_text(&r, "pgshim " PGSHIM_VERSION);
    row_end(&r);
    res_end(&r, "SHOW");
}

/* ---------------------------------------------------------------------------------------------
 * pgshim's own SHOW commands
 * ------------------------------------------------------------------------------------------- */

typedef struct tenant_list {
    const char **names;
    size_t n, cap;
    bool failed;
} tenant_list_t;

static void collect_tenant_cb(const char *tenant, void *arg)
{
    tenant_list_t *l = arg;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], tenant) == 0)
            return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        const char **nn = realloc(l->names, nc * sizeof(*nn));
        if (nn == NULL) {
            l->failed = true;
            return;
        }
        l->names = nn;
        l->cap = nc;
    }
    l->names[l->n++] = tenant;
}

/* Every tenant pgshim knows: configured or seen in stats (flags.c), then databases with
   pools. Names are borrowed from flags/stats/pools and valid until the loop runs again. */
static void collect_tenants(tenant_list_t *l)
{
    px_flags_foreach_tenant(collect_tenant_cb, l);
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools) collect_tenant_cb(pool_of(it)->dbname, l);
}

static void mode_summary(const char *tenant, char *buf, size_t len)
{
    int count[PX_MODE__COUNT] = {0};
    for (int f = 0; f < RW_FN__COUNT; f++)
        count[px_flags_mode(tenant, (rw_fn_t)f)]++;
    size_t off = 0;
    buf[0] = '\0';
    for (int m = 0; m < PX_MODE__COUNT; m++) {
        if (count[m] == 0)
            continue;
        int n = snprintf(buf + off, len - off, "%s%s=%d", off ? " " : "", px_mode_name((px_mode_t)m),
                         count[m]);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
}

static void show_tenants(pgw_buf_t *b)
{
    static const col_t cols[] = {
        {"tenant", OID_TEXT}, {"pools", OID_INT4}, {"clients", OID_INT4},
        {"servers", OID_INT4}, {"configured", OID_TEXT}, {"modes", OID_TEXT},
    };
    res_t r;
    res_begin(&r, b, cols, 6);
    char sum[256];
    /* The defaults first, as tenant "*": what every unconfigured database gets. */
    mode_summary("*", sum, sizeof(sum));
    row_begin(&r);
    put_text(&r, "*");
    put_int(&r, 0);
    put_int(&r, 0);
    put_int(&r, 0);
    put_text(&r, "defaults");
    put_text(&r, sum);
    row_end(&r);
    tenant_list_t l = {0};
    collect_tenants(&l);
    for (size_t i = 0; i < l.n; i++) {
        int pools = 0, clients = 0, servers = 0;
        px_list_t *it, *tmp;
        px_list_foreach_safe(it, tmp, &g_pools)
        {
            px_pool_t *p = pool_of(it);
            if (strcmp(p->dbname, l.names[i]) != 0)
                continue;
            pools++;
            clients += (int)(px_list_count(&p->active_clients) +
                             px_list_count(&p->waiting_clients) + px_list_count(&p->wait_login));
            servers += p->nservers;
        }
        mode_summary(l.names[i], sum, sizeof(sum));
        row_begin(&r);
        put_text(&r, l.names[i]);
        put_int(&r, pools);
        put_int(&r, clients);
        put_int(&r, servers);
        put_text(&r, px_flags_has_tenant(l.names[i]) ? "yes" : "no");
        put_text(&r, sum);
        row_end(&r);
    }
    free(l.names);
    res_end(&r, "SHOW");
}

static void intercept_rows(res_t *r, const char *tenant)
{
    static const px_icpt_stats_t zero;
    for (int f = 0; f < RW_FN__COUNT; f++) {
        const px_icpt_stats_t *st = strcmp(tenant, "*") == 0 ? NULL
                                                             : px_stats_find(tenant, (rw_fn_t)f);
        if (st == NULL)
            st = &zero;
        uint64_t at;
        const char *how;
        char ts[64];
        px_flags_changed(tenant, (rw_fn_t)f, &at, &how);
        fmt_time_ms(at, ts, sizeof(ts));
        row_begin(r);
        put_text(r, tenant);
        put_text(r, rw_fn_name((rw_fn_t)f));
        put_text(r, rw_family_name(rw_fn_family((rw_fn_t)f)));
        put_text(r, px_mode_name(px_flags_mode(tenant, (rw_fn_t)f)));
        put_int(r, px_flags_ttl(tenant, (rw_fn_t)f));
        put_u64(r, st->calls);
        put_u64(r, st->native);
        put_u64(r, st->cache_hits);
        put_u64(r, st->cache_misses);
        put_u64(r, st->cache_stores);
        put_u64(r, st->cache_errors);
        put_u64(r, st->passed);
        put_u64(r, st->fallbacks);
        put_u64(r, st->shadow_compared);
        put_u64(r, st->shadow_mismatches);
        put_u64(r, st->shadow_skipped);
        put_u64(r, px_stats_percentile(st, 50));
        put_u64(r, px_stats_percentile(st, 99));
        put_text(r, ts);
        put_text(r, how);
        /* Why calls were passed to PostgreSQL: "reason=count; ..." over the non-zero ones. */
        char reasons[1024];
        size_t n = 0;
        reasons[0] = '\0';
        for (int k = 1; k < RW_REASON__COUNT; k++) {
            if (st->by_reason[k] == 0)
                continue;
            int w = snprintf(reasons + n, sizeof(reasons) - n, "%s%s=%llu", n ? "; " : "",
                             rw_reason_name((rw_reason_t)k), (unsigned long long)st->by_reason[k]);
            if (w < 0 || (size_t)w >= sizeof(reasons) - n)
                break;
            n += (size_t)w;
        }
        put_text(r, reasons);
        row_end(r);
    }
}

static void show_intercepts(pgw_buf_t *b, const char *only)
{
    static const col_t cols[] = {
        {"tenant", OID_TEXT}, {"function", OID_TEXT}, {"family", OID_TEXT},
        {"mode", OID_TEXT}, {"ttl", OID_INT4}, {"calls", OID_INT8}, {"native", OID_INT8},
        {"cache_hits", OID_INT8}, {"cache_misses", OID_INT8}, {"cache_stores", OID_INT8},
        {"cache_errors", OID_INT8}, {"passed", OID_INT8},
        {"fallbacks", OID_INT8}, {"shadow_compared", OID_INT8},
        {"shadow_mismatches", OID_INT8}, {"shadow_skipped", OID_INT8}, {"p50_us", OID_INT8},
        {"p99_us", OID_INT8}, {"mode_changed_at", OID_TEXT}, {"mode_changed_how", OID_TEXT},
        {"passed_reasons", OID_TEXT},
    };
    res_t r;
    res_begin(&r, b, cols, (int)(sizeof(cols) / sizeof(cols[0])));
    if (only != NULL) {
        intercept_rows(&r, only);
    } else {
        intercept_rows(&r, "*");
        tenant_list_t l = {0};
        collect_tenants(&l);
        for (size_t i = 0; i < l.n; i++)
            intercept_rows(&r, l.names[i]);
        free(l.names);
    }
    res_end(&r, "SHOW");
}

static void show_candidates(pgw_buf_t *b)
{
    static const col_t cols[] = {
        {"tenant", OID_TEXT}, {"function", OID_TEXT}, {"mode", OID_TEXT},
        {"calls", OID_INT8}, {"eligible_calls", OID_INT8}, {"eligible", OID_TEXT},
        {"last_reason", OID_TEXT},
    };
    res_t r;
    res_begin(&r, b, cols, 7);
    tenant_list_t l = {0};
    collect_tenants(&l);
    for (size_t i = 0; i < l.n; i++) {
        for (int f = 0; f < RW_FN__COUNT; f++) {
            const px_candidate_t *cd = px_stats_find_candidate(l.names[i], (rw_fn_t)f);
            if (cd == NULL || cd->seen == 0)
                continue;
            row_begin(&r);
            put_text(&r, l.names[i]);
            put_text(&r, rw_fn_name((rw_fn_t)f));
            put_text(&r, px_mode_name(px_flags_mode(l.names[i], (rw_fn_t)f)));
            put_u64(&r, cd->seen);
            put_u64(&r, cd->eligible);
            put_text(&r, cd->eligible == cd->seen ? "yes" : cd->eligible == 0 ? "no" : "partly");
            put_text(&r, cd->eligible == cd->seen ? "" : rw_reason_name(cd->last_reason));
            row_end(&r);
        }
    }
    free(l.names);
    res_end(&r, "SHOW");
}

/* ---------------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------------- */

#define MAX_TOKENS 8

typedef struct cmd {
    char *tok[MAX_TOKENS];
    int n;
} cmd_t;

/* Splits the command into whitespace-separated words; a word in double quotes keeps its case
   and may contain spaces ("" is a quote). Returns 0, or -1 with a message. Modifies buf. */
static int tokenize(char *buf, cmd_t *cmd, const char **why)
{
    cmd->n = 0;
    /* One trailing semicolon (and whitespace around it) is allowed, like psql sends. */
    size_t len = strlen(buf);
    while (len > 0 && isspace((unsigned char)buf[len - 1]))
        len--;
    if (len > 0 && buf[len - 1] == ';')
        len--;
    buf[len] = '\0';
    char *p = buf;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            return 0;
        if (cmd->n == MAX_TOKENS) {
            *why = "too many words";
            return -1;
        }
        if (*p == '"') {
            char *out = ++p, *start = p;
            for (;;) {
                if (*p == '\0') {
                    *why = "unterminated quoted identifier";
                    return -1;
                }
                if (*p == '"') {
                    if (p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *out++ = *p++;
            }
            if (*p != '\0' && !isspace((unsigned char)*p)) {
                *why = "unexpected character after quoted identifier";
                return -1;
            }
            char *after = p;
            *out = '\0';
            cmd->tok[cmd->n++] = start;
            p = *after ? after + 1 : after;
            continue;
        }
        cmd->tok[cmd->n++] = p;
        while (*p && !isspace((unsigned char)*p)) {
            if (*p == ';') {
                *why = "only one command per query";
                return -1;
            }
            p++;
        }
        if (*p)
            *p++ = '\0';
    }
}

static bool word_is(const cmd_t *c, int i, const char *w)
{
    return i < c->n && strcasecmp(c->tok[i], w) == 0;
}

static void send_error(pgw_buf_t *b, const char *sqlstate, const char *msg, const char *hint)
{
    pgw_build_error(b, "ERROR", sqlstate, msg, NULL, hint);
}

#define HELP_HINT                                                                              \
    "commands: SHOW {POOLS|CLIENTS|SERVERS|DATABASES|STATS|STATS_TOTALS|STATS_AVERAGES|"        \
    "CONFIG|VERSION|TENANTS|INTERCEPTS [tenant]|INTERCEPT CANDIDATES}, "                       \
    "SET INTERCEPT tenant {function|family|ALL} {off|native|cache|shadow}, SAVE, RELOAD, "     \
    "PAUSE [db], RESUME [db], SHUTDOWN"

/* 42601 with a message; the list of commands is added as a hint only where the operator
   probably does not know the command set (an unknown command or SHOW subject). */
static void syntax_error_hint(pgw_buf_t *b, bool hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void syntax_error_hint(pgw_buf_t *b, bool hint, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    send_error(b, "42601", msg, hint ? HELP_HINT : NULL);
}
#define syntax_error(b, ...) syntax_error_hint((b), false, __VA_ARGS__)

static void do_show(px_client_t *c, const cmd_t *cmd, pgw_buf_t *b)
{
    (void)c;
    if (cmd->n < 2) {
        syntax_error_hint(b, true, "SHOW needs a subject");
        return;
    }
    const char *what = cmd->tok[1];
    if (cmd->n == 2) {
        if (strcasecmp(what, "POOLS") == 0)
            show_pools(b);
        else if (strcasecmp(what, "CLIENTS") == 0)
            show_clients(b);
        else if (strcasecmp(what, "SERVERS") == 0)
            show_servers(b);
        else if (strcasecmp(what, "DATABASES") == 0)
            show_databases(b);
        else if (strcasecmp(what, "STATS") == 0)
            show_stats(b);
        else if (strcasecmp(what, "STATS_TOTALS") == 0)
            show_stats_part(b, false);
        else if (strcasecmp(what, "STATS_AVERAGES") == 0)
            show_stats_part(b, true);
        else if (strcasecmp(what, "CONFIG") == 0)
            show_config(b);
        else if (strcasecmp(what, "VERSION") == 0)
            show_version(b);
        else if (strcasecmp(what, "TENANTS") == 0)
            show_tenants(b);
        else if (strcasecmp(what, "INTERCEPTS") == 0)
            show_intercepts(b, NULL);
        else
            syntax_error_hint(b, true, "unknown SHOW subject \"%s\"", what);
        return;
    }
    if (cmd->n == 3 && strcasecmp(what, "INTERCEPTS") == 0) {
        show_intercepts(b, cmd->tok[2]);
        return;
    }
    if (cmd->n == 3 && strcasecmp(what, "INTERCEPT") == 0 && word_is(cmd, 2, "CANDIDATES")) {
        show_candidates(b);
        return;
    }
    syntax_error_hint(b, true, "unknown SHOW command");
}

static void do_set_intercept(px_client_t *c, const cmd_t *cmd, pgw_buf_t *b)
{
    if (cmd->n != 5) {
        syntax_error(b, "usage: SET INTERCEPT tenant {function|family|ALL} "
                        "{off|native|cache|shadow}");
        return;
    }
    char mode[32];
    snprintf(mode, sizeof(mode), "%s", cmd->tok[4]);
    for (char *p = mode; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    int m = px_mode_lookup(mode);
    if (m < 0) {
        syntax_error(b, "unknown mode \"%s\": expected off, native, cache or shadow", cmd->tok[4]);
        return;
    }
    const char *err = NULL;
    if (px_flags_set(cmd->tok[2], cmd->tok[3], (px_mode_t)m, &err) != 0) {
        syntax_error(b, "SET INTERCEPT %s %s: %s", cmd->tok[2], cmd->tok[3], err);
        return;
    }
    px_log_info("admin %s@%s: SET INTERCEPT %s %s %s", c->user, c->addr, cmd->tok[2], cmd->tok[3],
                px_mode_name((px_mode_t)m));
    pgw_build_command_complete(b, "SET");
}

static void do_save(px_client_t *c, pgw_buf_t *b)
{
    char err[512];
    size_t n = px_flags_unsaved();
    if (px_flags_save(px_cfg->path, err, sizeof(err)) != 0) {
        send_error(b, "58030", err, NULL);
        return;
    }
    px_log_info("admin %s@%s: SAVE wrote %zu change(s) to %s", c->user, c->addr, n, px_cfg->path);
    pgw_build_command_complete(b, "SAVE");
}

static void do_reload(px_client_t *c, pgw_buf_t *b)
{
    char err[1024];
    px_log_info("admin %s@%s: RELOAD", c->user, c->addr);
    if (px_admin_reload(err, sizeof(err)) != 0) {
        send_error(b, "F0000", err, "the previous configuration stays in effect");
        return;
    }
    pgw_build_command_complete(b, "RELOAD");
}

static void pool_dispatch_db(const char *db)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = pool_of(it);
        if (db == NULL || strcmp(p->dbname, db) == 0)
            px_pool_dispatch(p);
    }
}

/* A database PAUSE can name: an explicit [databases] entry or one with pools. The "*"
   fallback would make every name valid, which hides typos. */
static bool db_known(const char *db)
{
    for (const px_db_conf_t *d = px_cfg->databases; d != NULL; d = d->next)
        if (strcmp(d->name, db) == 0)
            return true;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools) if (strcmp(pool_of(it)->dbname, db) == 0) return true;
    return false;
}

static void do_pause(px_client_t *c, const cmd_t *cmd, pgw_buf_t *b, bool pause)
{
    const char *verb = pause ? "PAUSE" : "RESUME";
    if (cmd->n > 2) {
        syntax_error(b, "usage: %s [database]", verb);
        return;
    }
    const char *db = cmd->n == 2 ? cmd->tok[1] : NULL;
    if (db != NULL && !db_known(db)) {
        send_error(b, "3D000", "no such database", NULL);
        return;
    }
    if (pause) {
        if (db == NULL) {
            g_pause_all = true;
        } else if (!db_paused(db)) {
            char **n = realloc(g_paused, (g_npaused + 1) * sizeof(*n));
            char *d = strdup(db);
            if (n == NULL || d == NULL) {
                free(d);
                if (n != NULL)
                    g_paused = n;
                send_error(b, "53200", "out of memory", NULL);
                return;
            }
            g_paused = n;
            g_paused[g_npaused++] = d;
        }
    } else {
        if (db == NULL) {
            g_pause_all = false;
            for (size_t i = 0; i < g_npaused; i++)
                free(g_paused[i]);
            g_npaused = 0;
        } else {
            for (size_t i = 0; i < g_npaused; i++)
                if (strcmp(g_paused[i], db) == 0) {
                    free(g_paused[i]);
                    g_paused[i] = g_paused[--g_npaused];
                    break;
                }
        }
        pool_dispatch_db(db);
    }
    px_log_info("admin %s@%s: %s %s", c->user, c->addr, verb, db ? db : "(all)");
    pgw_build_command_complete(b, verb);
}

static void do_shutdown(px_client_t *c, pgw_buf_t *b)
{
    px_log_info("admin %s@%s: SHUTDOWN", c->user, c->addr);
    pgw_build_command_complete(b, "SHUTDOWN");
    /* PgBouncer's SHUTDOWN exits at once; SIGINT is pgshim's immediate exit, delivered through
       the loop's signal handler after this reply is queued. */
    (void)uv_kill((int)getpid(), SIGINT);
}

static void run_query(px_client_t *c, const char *sql, size_t len, pgw_buf_t *b)
{
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        send_error(b, "53200", "out of memory", NULL);
        return;
    }
    memcpy(buf, sql, len);
    buf[len] = '\0';
    cmd_t cmd;
    const char *why = NULL;
    if (tokenize(buf, &cmd, &why) != 0) {
        syntax_error(b, "syntax error: %s", why);
        free(buf);
        return;
    }
    if (cmd.n == 0) {
        pgw_build_empty_query(b);
        free(buf);
        return;
    }
    bool read_only = true;
    if (!px_admin_allowed(c->user, &read_only)) {
        /* Removed from admin_users/stats_users by a reload since login. */
        send_error(b, "42501", "admin access needed", NULL);
        free(buf);
        return;
    }
    const char *verb = cmd.tok[0];
    bool is_show = strcasecmp(verb, "SHOW") == 0;
    static const char *const known[] = {"SET", "SAVE", "RELOAD", "PAUSE", "RESUME", "SHUTDOWN"};
    bool is_known = is_show;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        is_known = is_known || strcasecmp(verb, known[i]) == 0;
    if (!is_known) {
        syntax_error_hint(b, true, "invalid command \"%s\"", verb);
    } else if (!is_show && read_only) {
        send_error(b, "42501", "admin access needed: stats_users may only run SHOW", NULL);
    } else if (is_show) {
        do_show(c, &cmd, b);
    } else if (strcasecmp(verb, "SET") == 0) {
        if (word_is(&cmd, 1, "INTERCEPT"))
            do_set_intercept(c, &cmd, b);
        else
            syntax_error(b, "only SET INTERCEPT is supported");
    } else if (cmd.n != 1 && (strcasecmp(verb, "SAVE") == 0 || strcasecmp(verb, "RELOAD") == 0 ||
                              strcasecmp(verb, "SHUTDOWN") == 0)) {
        syntax_error(b, "%s takes no arguments", verb);
    } else if (strcasecmp(verb, "SAVE") == 0) {
        do_save(c, b);
    } else if (strcasecmp(verb, "RELOAD") == 0) {
        do_reload(c, b);
    } else if (strcasecmp(verb, "PAUSE") == 0) {
        do_pause(c, &cmd, b, true);
    } else if (strcasecmp(verb, "RESUME") == 0) {
        do_pause(c, &cmd, b, false);
    } else {
        do_shutdown(c, b);
    }
    free(buf);
}

/* ---------------------------------------------------------------------------------------------
 * Connection
 * ------------------------------------------------------------------------------------------- */

static bool ext_refused(px_client_t *c, bool set, bool clear)
{
    size_t n = sizeof(g_ext_refused) / sizeof(g_ext_refused[0]);
    for (size_t i = 0; i < n; i++)
        if (g_ext_refused[i] == c) {
            if (clear)
                g_ext_refused[i] = NULL;
            return true;
        }
    if (set)
        for (size_t i = 0; i < n; i++)
            if (g_ext_refused[i] == NULL) {
                g_ext_refused[i] = c;
                break;
            }
    return false;
}

static void queue(px_client_t *c, pgw_buf_t *b)
{
    if (pgw_buf_failed(b) || px_io_write(&c->io, b->data, b->len) < 0) {
        pgw_buf_free(b);
        px_client_fatal(c, "53200", "out of memory");
        return;
    }
    pgw_buf_free(b);
}

void px_admin_login(px_client_t *c)
{
    bool ro;
    if (!px_admin_allowed(c->user, &ro)) {
        px_client_fatal(c, "28000", "not allowed: user \"%s\" is in neither admin_users nor "
                                    "stats_users",
                        c->user);
        return;
    }
    /* A freed client's address may be reused: start with no refused batch. */
    (void)ext_refused(c, false, true);
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_auth_ok(&b);
    pgw_build_param_status(&b, "server_version", "15.0 (pgshim " PGSHIM_VERSION ")");
    pgw_build_param_status(&b, "server_encoding", "UTF8");
    pgw_build_param_status(&b, "client_encoding", "UTF8");
    pgw_build_param_status(&b, "DateStyle", "ISO, MDY");
    pgw_build_param_status(&b, "integer_datetimes", "on");
    pgw_build_param_status(&b, "standard_conforming_strings", "on");
    pgw_build_param_status(&b, "TimeZone", "UTC");
    const char *app = c->startup_vars.v[PX_VAR_APPLICATION_NAME];
    pgw_build_param_status(&b, "application_name", app ? app : "");
    /* A cancel key that matches nothing: cancelling an admin command is a no-op. */
    uint32_t kv[2] = {0, 0};
    if (RAND_bytes((unsigned char *)kv, sizeof(kv)) != 1)
        kv[0] = (uint32_t)c->id;
    pgw_build_backend_key(&b, kv[0] & 0x7fffffff, kv[1]);
    pgw_build_ready(&b, (uint8_t)'I');
    queue(c, &b);
    if (c->state == PX_CL_CLOSING)
        return;
    px_log_info("C-%llu: %s/%s@%s admin console login (%s)", (unsigned long long)c->id, c->dbname,
                c->user, c->addr, ro ? "stats" : "admin");
    px_client_set_state(c, PX_CL_ADMIN);
    px_io_process(&c->io);
}

ssize_t px_admin_data(px_client_t *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->state == PX_CL_ADMIN) {
        pgw_frame_t f;
        size_t need = 0;
        int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data + off, len - off, &f, &need);
        if (rc == PGW_ENEEDMORE)
            break;
        if (rc < 0) {
            px_client_fatal(c, "08P01", "invalid client message: %s", pgw_strerror(rc));
            return -1;
        }
        off += (size_t)rc;
        pgw_buf_t b;
        pgw_buf_init(&b);
        switch (f.type) {
        case PGW_MSG_TERMINATE:
            pgw_buf_free(&b);
            ext_refused(c, false, true);
            px_client_close(c, "client close request");
            return -1;
        case PGW_MSG_QUERY: {
            pgw_query_t q;
            if (pgw_decode_query(&f, &q) != 0) {
                pgw_buf_free(&b);
                px_client_fatal(c, "08P01", "invalid Query message");
                return -1;
            }
            run_query(c, q.sql.ptr, q.sql.len, &b);
            pgw_build_ready(&b, (uint8_t)'I');
            break;
        }
        case PGW_MSG_SYNC:
            /* End of a refused extended-protocol batch (or a stray Sync). */
            ext_refused(c, false, true);
            pgw_build_ready(&b, (uint8_t)'I');
            break;
        case PGW_MSG_PARSE:
        case PGW_MSG_BIND:
        case PGW_MSG_DESCRIBE:
        case PGW_MSG_EXECUTE:
        case PGW_MSG_CLOSE:
        case PGW_MSG_FLUSH:
            if (!ext_refused(c, true, false))
                send_error(&b, "0A000",
                           "the admin console supports only the simple query protocol",
                           "use psql, or a driver in simple-query mode");
            break;
        default:
            send_error(&b, "08P01", "unexpected message for the admin console", NULL);
            pgw_build_ready(&b, (uint8_t)'I');
            break;
        }
        if (b.len > 0 || pgw_buf_failed(&b))
            queue(c, &b);
        else
            pgw_buf_free(&b);
        if (c->state == PX_CL_CLOSING)
            return -1;
    }
    return (ssize_t)off;
}

void px_admin_close_all(void)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, px_admin_client_list())
        px_client_fatal(px_container_of(it, px_client_t, node), "57P01", "pgshim is shutting down");
}

/* ---------------------------------------------------------------------------------------------
 * Reload
 * ------------------------------------------------------------------------------------------- */

int px_admin_reload(char *err, size_t errlen)
{
    px_log_info("reloading %s", px_cfg->path);
    px_config_t *next = px_config_load(px_cfg->path, err, errlen);
    if (next == NULL) {
        px_log_error("reload failed, keeping the old configuration: %s", err);
        return -1;
    }
    next->verbose += px_admin_extra_verbose;
    px_config_reload_apply(next);
    px_io_high_water = (size_t)px_cfg->sbuf_high_water;
    if (px_userlist_load(px_cfg->auth_file) < 0)
        px_log_error("reload: auth_file not reloaded");
    px_pool_reload_all();
    return 0;
}
