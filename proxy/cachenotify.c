/*
 * cachenotify.c: cache invalidation for writes that bypass pgshim (issue 7, guarantee 2).
 *
 * etc/pgshim-notify.sql installs statement-level triggers on the legacy tables that run
 * pg_notify('<channel>', '<table>'). PostgreSQL delivers a notification when the writing
 * transaction commits (once per channel and payload per transaction), to every session that
 * LISTENs. pgshim keeps one LISTEN connection per tenant (the database name the clients use) that
 * has a function in cache mode, opened like the native connections: non-blocking libpq on the
 * libuv loop (PQconnectStartParams, one uv_poll on its socket), the server, database, user and
 * password of a pool of that tenant. Each notification bumps the generation of its table, so
 * the next lookup of any result that read the table misses; that happens within a loop
 * iteration of the commit.
 *
 * Trust: a tenant's results are served and stored only while it is trusted (px_notify_trusted).
 * A tenant becomes trusted when its LISTEN has been acknowledged and the bump of every legacy
 * table sent after that has been answered (successfully, or failed: a failed bump puts the tenant
 * in the cache library's bypass until a retry lands, which is just as safe). It stops being
 * trusted the moment its connection fails, because notifications sent while nobody listens are
 * lost. The connection is reopened at once, then with backoff (100 ms doubling to 5 s), and the
 * cycle repeats.
 *
 * Invariants: nothing here blocks the loop or reaches a client (a failure only makes the tenant
 * answer natively); a connection is freed only in its poll handle's close callback, and the poll
 * is closed before PQfinish closes the socket, as libuv requires; a bump callback only trusts
 * the connection epoch it was sent for; tenant records live until px_notify_shutdown.
 */
#include "px_cache.h"
#include "px_native.h"
#include "px_intercept.h"
#include "px_log.h"
#include "rw_writes.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT_TICK_MS 100
#define NT_BACKOFF_MIN_MS 100
#define NT_BACKOFF_MAX_MS 5000
#define NT_STEP_TIMEOUT_MS 5000   /* the login, and the LISTEN's answer */

typedef enum nt_state { NT_CONNECTING, NT_LISTENING, NT_UP, NT_CLOSING } nt_state_t;

typedef struct nt_tenant nt_tenant_t;

/* One LISTEN connection attempt. */
typedef struct nt_conn {
    nt_tenant_t *t;              /* NULL once closing */
    PGconn *pg;
    uv_poll_t poll;
    bool poll_init;
    int poll_events;             /* 0 = not started */
    nt_state_t state;
    uint64_t deadline;           /* loop ms; 0 = none (listening) */
} nt_conn_t;

struct nt_tenant {
    nt_tenant_t *next;
    char *tenant;
    nt_conn_t *conn;             /* NULL while down */
    bool trusted;
    bool trust_wanted;           /* up, but the bump of every table could not be sent yet */
    uint64_t epoch;              /* bumped at every connection loss */
    uint64_t retry_at;           /* loop ms of the next connection attempt */
    uint32_t backoff_ms;
    uint64_t received;           /* notifications */
    uint64_t connects;           /* LISTENs acknowledged */
    uint32_t fails;              /* connection attempts failed since the last LISTEN */
};

/* A bump of every table after a (re)connect: trusts the tenant only for the epoch it was sent
   in. */
typedef struct nt_trust {
    nt_tenant_t *t;
    uint64_t epoch;
} nt_trust_t;

static nt_tenant_t *g_tenants;
static uv_timer_t g_nt_tick;
static bool g_nt_on;

static bool notify_enabled(void)
{
    const px_redis_conf_t *rc = px_cache_conf();
    return g_nt_on && rc != NULL && rc->notify;
}

static const char *notify_channel(void)
{
    const px_redis_conf_t *rc = px_cache_conf();
    return rc != NULL && rc->notify_channel != NULL ? rc->notify_channel
                                                    : PX_NOTIFY_CHANNEL_DEFAULT;
}

static uint64_t now_ms(void)
{
    return uv_now(px_loop);
}

/* ---------------------------------------------------------------------------------------------
 * Tenants
 * ------------------------------------------------------------------------------------------- */

static nt_tenant_t *tenant_find(const char *tenant)
{
    for (nt_tenant_t *t = g_tenants; t != NULL; t = t->next)
        if (strcmp(t->tenant, tenant) == 0)
            return t;
    return NULL;
}

static nt_tenant_t *tenant_add(const char *tenant)
{
    nt_tenant_t *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->tenant = strdup(tenant)) == NULL) {
        free(t);
        return NULL;
    }
    t->backoff_ms = NT_BACKOFF_MIN_MS;
    t->next = g_tenants;
    g_tenants = t;
    return t;
}

static bool tenant_uses_cache(const char *tenant)
{
    for (int fn = 0; fn < RW_FN__COUNT; fn++)
        if (px_flags_mode(tenant, (rw_fn_t)fn) == PX_MODE_CACHE)
            return true;
    return false;
}

/* Password for a pool's server login, as the native connections choose it: [databases]
   password=, else the auth file's plaintext, else a cleartext a client proved at login. */
static const char *pool_password(const px_pool_t *pool)
{
    if (pool->password != NULL && strncmp(pool->password, "md5", 3) != 0)
        return pool->password;
    px_user_t *u = px_userlist_find(pool->server_user);
    if (u != NULL && u->kind == PX_SECRET_PLAIN)
        return u->secret;
    if (u != NULL && u->proven_password != NULL)
        return u->proven_password;
    return NULL;
}

/* A pool of the tenant to take the login from: one with a known password if any (trust and peer
   logins need none). NULL when no client of the tenant has logged in yet. */
static px_pool_t *tenant_pool(const char *tenant)
{
    px_pool_t *any = NULL;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = px_container_of(it, px_pool_t, node);
        if (strcmp(p->dbname, tenant) != 0)
            continue;
        if (pool_password(p) != NULL)
            return p;
        if (any == NULL)
            any = p;
    }
    return any;
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void conn_launch(nt_tenant_t *t);

static void conn_closed_cb(uv_handle_t *h)
{
    nt_conn_t *nc = h->data;
    PQfinish(nc->pg);
    free(nc);
}

/* The tenant is down from here on: untrusted at once, reconnected after the backoff. */
static void conn_close(nt_conn_t *nc, const char *why)
{
    if (nc->state == NT_CLOSING)
        return;
    nt_tenant_t *t = nc->t;
    const char *pgerr = nc->pg != NULL ? PQerrorMessage(nc->pg) : "";
    /* A login that keeps failing is retried every 5 s: warn on the first failure and about once
       a minute after that, not at every attempt. */
    bool loud = t->fails == 0 || t->fails % 12 == 0;
    bool was_up = nc->state == NT_UP;
    if (!was_up)
        t->fails++;
    px_log(loud ? PX_LOG_WARNING : PX_LOG_DEBUG,
           "notify %s: LISTEN connection closed: %s%s%.*s; the tenant answers natively until "
           "it is back", t->tenant, why, pgerr[0] ? ": " : "", (int)strcspn(pgerr, "\n"), pgerr);
    nc->state = NT_CLOSING;
    nc->t = NULL;
    t->conn = NULL;
    t->trusted = false;
    t->trust_wanted = false;
    t->epoch++;
    t->retry_at = now_ms() + t->backoff_ms;
    t->backoff_ms = t->backoff_ms * 2 > NT_BACKOFF_MAX_MS ? NT_BACKOFF_MAX_MS : t->backoff_ms * 2;
    if (nc->poll_init) {
        uv_close((uv_handle_t *)&nc->poll, conn_closed_cb);
    } else {
        PQfinish(nc->pg);
        free(nc);
    }
    /* A connection that was up (terminated backend, server restart) is tried again at once:
       the tenant answers natively until it is back, so every millisecond counts. A failed
       attempt is not up, so this never loops; later attempts follow the backoff. */
    if (was_up && g_nt_on)
        conn_launch(t);
}

static void conn_set_poll(nt_conn_t *nc, int events)
{
    if (nc->poll_events == events)
        return;
    if (uv_poll_start(&nc->poll, events, conn_poll_cb) != 0) {
        conn_close(nc, "uv_poll_start failed");
        return;
    }
    nc->poll_events = events;
}

static void trust_cb(void *arg, int status)
{
    nt_trust_t *tr = arg;
    nt_tenant_t *t = tr->t;
    bool current = t->epoch == tr->epoch && t->conn != NULL && t->conn->state == NT_UP;
    free(tr);
    if (!current)
        return;  /* the connection dropped meanwhile; the next one bumps again */
    t->trusted = true;
    if (status == CACHE_OK)
        px_log_info("notify %s: listening; every table invalidated, cache in use", t->tenant);
    else
        px_log_warn("notify %s: listening, but invalidating every table failed (%s); the "
                    "tenant bypasses the cache until a retry lands", t->tenant,
                    cache_strerror(status));
}

/* Notifications may have been missed before the LISTEN: every table of the tenant is bumped,
   and the tenant is trusted once that bump was answered. */
static void trust_start(nt_tenant_t *t)
{
    cache_client_t *cl = px_cache_client();
    t->trust_wanted = true;
    if (cl == NULL)
        return;
    const char *names[RW_TABLE__COUNT];
    int n = rw_tableset_names(RW_TABLES_ALL, names, RW_TABLE__COUNT);
    nt_trust_t *tr = malloc(sizeof(*tr));
    if (tr == NULL)
        return;  /* retried by the tick */
    tr->t = t;
    tr->epoch = t->epoch;
    int rc = cache_bump(cl, t->tenant, names, n, trust_cb, tr);
    if (rc == 0) {
        t->trust_wanted = false;
        return;
    }
    free(tr);
    if (cache_tenant_bypassed(cl, t->tenant)) {
        /* Refused at once (Redis down): the library owes the bump, keeps the tenant off the
           cache until a retry of it lands, and so already guards it. */
        t->trust_wanted = false;
        t->trusted = true;
        px_log_warn("notify %s: listening; invalidating every table is pending (%s)", t->tenant,
                    cache_strerror(rc));
    }
}

/* Bumps the tables named by the notifications that arrived in one read. */
static void conn_notifications(nt_conn_t *nc)
{
    nt_tenant_t *t = nc->t;
    rw_tableset_t set = 0;
    int n = 0;
    PGnotify *nf;
    while ((nf = PQnotifies(nc->pg)) != NULL) {
        int tab = rw_table_lookup(nf->extra != NULL ? nf->extra : "");
        set |= tab >= 0 ? (rw_tableset_t)1u << tab : RW_TABLES_ALL;
        px_log_debug("notify %s: \"%s\" from backend %d", t->tenant,
                      nf->extra != NULL ? nf->extra : "", nf->be_pid);
        PQfreemem(nf);
        n++;
    }
    if (n == 0)
        return;
    t->received += (uint64_t)n;
    /* In-memory copies of the native path (native_butree_ttl) read the same tables. The LISTEN
       connection is on the tenant's server database, which is the tenant's name unless
       [databases] renames it; a renamed one keeps its copies until their TTL. */
    px_native_tables_changed(t->tenant, set);
    cache_client_t *cl = px_cache_client();
    if (cl == NULL || set == 0)
        return;
    const char *names[RW_TABLE__COUNT];
    int k = rw_tableset_names(set, names, RW_TABLE__COUNT);
    /* On failure the library puts the tenant in bypass and retries the bump itself. */
    int rc = cache_bump(cl, t->tenant, names, k, NULL, NULL);
    px_log_debug("notify %s: %d notification(s) (%llu in all): bumping %d table(s): %s",
                 t->tenant, n, (unsigned long long)t->received, k,
                 rc == 0 ? "sent" : cache_strerror(rc));
}

static void conn_read(nt_conn_t *nc)
{
    if (PQconsumeInput(nc->pg) == 0) {
        conn_close(nc, "connection lost");
        return;
    }
    while (nc->state != NT_CLOSING && !PQisBusy(nc->pg)) {
        PGresult *r = PQgetResult(nc->pg);
        if (r == NULL)
            break;
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        if (st != PGRES_COMMAND_OK) {
            conn_close(nc, "LISTEN failed");
            return;
        }
        if (nc->state == NT_LISTENING) {
            nt_tenant_t *t = nc->t;
            nc->state = NT_UP;
            nc->deadline = 0;
            t->backoff_ms = NT_BACKOFF_MIN_MS;
            t->fails = 0;
            t->connects++;
            px_log_debug("notify %s: LISTEN \"%s\" acknowledged", t->tenant, notify_channel());
            trust_start(t);
        }
    }
    if (nc->state == NT_CLOSING)
        return;
    if (PQstatus(nc->pg) == CONNECTION_BAD) {
        conn_close(nc, "connection lost");
        return;
    }
    conn_notifications(nc);
}

/* Logged in: LISTEN "<channel>" (quoted as an identifier, so any name the ini allows works). */
static void conn_send_listen(nt_conn_t *nc)
{
    const char *ch = notify_channel();
    char sql[16 + 2 * 64];
    size_t len = (size_t)snprintf(sql, sizeof(sql), "LISTEN \"");
    for (const char *p = ch; *p && len < sizeof(sql) - 3; p++) {
        if (*p == '"')
            sql[len++] = '"';
        sql[len++] = *p;
    }
    sql[len++] = '"';
    sql[len] = '\0';
    if (PQsetnonblocking(nc->pg, 1) != 0 || PQsendQuery(nc->pg, sql) == 0) {
        conn_close(nc, "cannot send LISTEN");
        return;
    }
    nc->state = NT_LISTENING;
    nc->deadline = now_ms() + NT_STEP_TIMEOUT_MS;
    int fl = PQflush(nc->pg);
    if (fl < 0)
        conn_close(nc, "cannot send LISTEN");
    else
        conn_set_poll(nc, fl > 0 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void conn_connect_step(nt_conn_t *nc)
{
    switch (PQconnectPoll(nc->pg)) {
    case PGRES_POLLING_READING:
        conn_set_poll(nc, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        conn_set_poll(nc, UV_WRITABLE);
        return;
    case PGRES_POLLING_OK:
        conn_send_listen(nc);
        return;
    default:
        conn_close(nc, "login failed");
        return;
    }
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    nt_conn_t *nc = h->data;
    if (nc->state == NT_CLOSING)
        return;
    if (status < 0) {
        conn_close(nc, "socket error");
        return;
    }
    if (nc->state == NT_CONNECTING) {
        conn_connect_step(nc);
        return;
    }
    if (events & UV_WRITABLE) {
        int fl = PQflush(nc->pg);
        if (fl < 0) {
            conn_close(nc, "flushing LISTEN failed");
            return;
        }
        if (fl == 0)
            conn_set_poll(nc, UV_READABLE);
    }
    if (nc->state != NT_CLOSING && (events & UV_READABLE))
        conn_read(nc);
}

static void notice_cb(void *arg, const char *message)
{
    (void)arg;
    (void)message;  /* a terminated backend's FATAL arrives as a notice: the close logs it */
}

static void conn_launch(nt_tenant_t *t)
{
    px_pool_t *pool = tenant_pool(t->tenant);
    if (pool == NULL) {
        t->retry_at = now_ms() + NT_TICK_MS;  /* no login known yet: look again next tick */
        return;
    }
    const char *host = pool->host != NULL ? pool->host : px_cfg->unix_socket_dir;
    char port[16], timeout[16];
    snprintf(port, sizeof(port), "%d", pool->port);
    snprintf(timeout, sizeof(timeout), "%d", (NT_STEP_TIMEOUT_MS + 999) / 1000);
    const char *pw = pool_password(pool);
    /* keepalives: an idle LISTEN connection would otherwise never notice a silently dead peer */
    const char *keys[] = {"host", "port", "dbname", "user", "password", "application_name",
                          "sslmode", "gssencmode", "connect_timeout", "keepalives",
                          "keepalives_idle", "keepalives_interval", "keepalives_count", NULL};
    const char *vals[] = {host, port, pool->server_db, pool->server_user, pw, "pgshim-notify",
                          "disable", "disable", timeout, "1", "10", "5", "3", NULL};
    nt_conn_t *nc = calloc(1, sizeof(*nc));
    if (nc == NULL) {
        t->retry_at = now_ms() + t->backoff_ms;
        return;
    }
    nc->t = t;
    nc->state = NT_CONNECTING;
    nc->deadline = now_ms() + NT_STEP_TIMEOUT_MS;
    nc->poll.data = nc;
    t->conn = nc;
    nc->pg = PQconnectStartParams(keys, vals, 0);
    int fd = nc->pg != NULL ? PQsocket(nc->pg) : -1;
    if (nc->pg == NULL || PQstatus(nc->pg) == CONNECTION_BAD || fd < 0) {
        conn_close(nc, nc->pg == NULL ? "out of memory" : "cannot start a connection");
        return;
    }
    if (uv_poll_init(px_loop, &nc->poll, fd) != 0) {
        conn_close(nc, "uv_poll_init failed");
        return;
    }
    nc->poll_init = true;
    uv_unref((uv_handle_t *)&nc->poll);  /* a LISTEN connection never keeps pgshim running */
    PQsetNoticeProcessor(nc->pg, notice_cb, NULL);
    px_log_debug("notify %s: connecting to %s:%s/%s as %s", t->tenant, host ? host : "",
                 port, pool->server_db, pool->server_user);
    conn_set_poll(nc, UV_WRITABLE);  /* PQconnectStart's first wait is for the connect */
}

/* ---------------------------------------------------------------------------------------------
 * Timer: discovery, timeouts, reconnects
 * ------------------------------------------------------------------------------------------- */

static void nt_tick_cb(uv_timer_t *h)
{
    (void)h;
    if (!notify_enabled())
        return;
    /* Tenants in cache mode whose clients are logged in get their LISTEN before their first
       call when possible, so those calls need not answer natively. */
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = px_container_of(it, px_pool_t, node);
        if (tenant_find(p->dbname) == NULL && tenant_uses_cache(p->dbname))
            (void)tenant_add(p->dbname);
    }
    uint64_t now = now_ms();
    for (nt_tenant_t *t = g_tenants; t != NULL; t = t->next) {
        nt_conn_t *nc = t->conn;
        if (nc != NULL && nc->deadline != 0 && now >= nc->deadline)
            conn_close(nc, nc->state == NT_CONNECTING ? "login timed out" : "LISTEN timed out");
        else if (nc != NULL && nc->state == NT_UP && t->trust_wanted)
            trust_start(t);
        else if (nc == NULL && now >= t->retry_at)
            conn_launch(t);
    }
}

void px_notify_start(void)
{
    const px_redis_conf_t *rc = px_cache_conf();
    if (g_nt_on || rc == NULL || !rc->notify || px_loop == NULL)
        return;
    if (uv_timer_init(px_loop, &g_nt_tick) != 0)
        return;
    g_nt_on = true;
    uv_timer_start(&g_nt_tick, nt_tick_cb, NT_TICK_MS, NT_TICK_MS);
    uv_unref((uv_handle_t *)&g_nt_tick);
    px_log_info("notify: invalidation by NOTIFY on channel \"%s\"", notify_channel());
}

bool px_notify_trusted(const char *tenant)
{
    const px_redis_conf_t *rc = px_cache_conf();
    if (rc == NULL || !rc->notify)
        return true;
    if (!g_nt_on)
        return false;  /* the timer could not start: nothing would ever listen */
    nt_tenant_t *t = tenant_find(tenant);
    if (t == NULL) {
        t = tenant_add(tenant);
        if (t != NULL)
            conn_launch(t);
        return false;
    }
    return t->trusted;
}

void px_notify_shutdown(void)
{
    if (g_nt_on) {
        uv_timer_stop(&g_nt_tick);
        uv_close((uv_handle_t *)&g_nt_tick, NULL);
        g_nt_on = false;
    }
    while (g_tenants != NULL) {
        nt_tenant_t *t = g_tenants;
        g_tenants = t->next;
        if (t->conn != NULL)
            conn_close(t->conn, "shutting down");
        free(t->tenant);
        free(t);
    }
}
