/*
 * cachenotify.c: cache invalidation for writes that bypass pgshim (issue 7, guarantee 2).
 *
 * etc/pgshim-notify.sql installs statement-level triggers on the legacy tables that run
 * pg_notify('<channel>', <payload>). PostgreSQL delivers a notification when the writing
 * transaction commits (once per channel and payload per transaction), to every session that
 * LISTENs. pgshim keeps one LISTEN connection per tenant (the database name the clients use) that
 * has a function in cache mode, opened like the native connections: non-blocking libpq on the
 * libuv loop (PQconnectStartParams, one uv_poll on its socket), the server, database, user and
 * password of a pool of that tenant. Each notification bumps the generations its payload names,
 * so the next lookup of any result that depends on them misses; that happens within a loop
 * iteration of the commit.
 *
 * Payloads (etc/pgshim-notify.sql version 2): "<table>" bumps the table's generation;
 * "<table> <scope>=<v>,<v>... ..." (the row triggers of jobneed, asset, questionset and
 * pgbelonging) bumps "<table>@*" and "<table>@<scope>=<v>" for each value, which invalidates
 * exactly the results keyed on those scopes or on no scope of that table (cachemode.c builds the
 * keys); anything else bumps every legacy table. "sync <n>" payloads change nothing.
 *
 * Syncs (px_notify_sync): a commit through pgshim whose writes all fired the row triggers waits
 * for a token instead of bumping whole tables. The listener sends SELECT pg_notify(channel,
 * 'sync <n>') on its own connection; notifications arrive in commit order, so when the token
 * comes back every notification of a transaction that committed before the statement was sent
 * has arrived, and its bumps were sent (in arrival order, before the token is recorded). The
 * waiters are released once each of those bumps has been answered by Redis. Bumps sent for
 * notifications are numbered and completed in any order; bumps_complete() is the highest number
 * up to which all have completed. At most one sync is on the wire; waiters that arrive meanwhile
 * are covered by the next one. A waiter's callback fires exactly once: seen after its sync
 * completed with the triggers found usable, not seen when they are not, when the connection is
 * lost, on timeout_ms, or at shutdown.
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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT_TICK_MS 100
#define NT_BACKOFF_MIN_MS 100
#define NT_BACKOFF_MAX_MS 5000
#define NT_STEP_TIMEOUT_MS 5000   /* the login, and the LISTEN's answer */

typedef enum nt_state { NT_CONNECTING, NT_LISTENING, NT_UP, NT_CLOSING } nt_state_t;

/* The statement on the LISTEN connection whose results are still to come. */
typedef enum nt_query { NT_Q_NONE, NT_Q_LISTEN, NT_Q_SYNC } nt_query_t;

#define NT_SCOPED_RECHECK_MS 5000  /* triggers found unscoped: how long until a sync asks again */
#define NT_MAX_NAMES 256           /* scoped generations collected from one read */

typedef struct nt_tenant nt_tenant_t;

/* One LISTEN connection attempt. */
typedef struct nt_conn {
    nt_tenant_t *t;              /* NULL once closing */
    PGconn *pg;
    uv_poll_t poll;
    bool poll_init;
    int poll_events;             /* 0 = not started */
    nt_state_t state;
    nt_query_t query;
    uint64_t deadline;           /* loop ms; 0 = none (listening) */
} nt_conn_t;

/* A commit through pgshim waiting for its sync (px_notify_sync). */
struct px_notify_sync {
    px_notify_sync_t *next;
    px_notify_sync_cb cb;
    void *arg;
    uint64_t deadline;           /* loop ms */
};

/* A bump sent for notifications; syncs wait for every bump issued before their token. */
typedef struct nt_bump {
    struct nt_bump *next;
    nt_tenant_t *t;
    uint64_t seq;
    bool done;
} nt_bump_t;

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
    /* Syncs for commits through pgshim (see px_notify_sync). */
    px_notify_sync_t *queued;    /* waiting for a sync not sent yet */
    px_notify_sync_t *covered;   /* covered by the sync on the wire */
    bool sync_busy;              /* a sync statement is on the connection */
    bool sync_got_token, sync_got_result, sync_ok;
    uint64_t sync_token;         /* the token of the sync on the wire */
    uint64_t sync_need;          /* bump sequence the token's arrival requires */
    int scoped;                  /* triggers as the last sync saw them: -1 unknown, 0 no, 1 yes */
    uint64_t scoped_at;
    uint64_t syncs, sync_commits, sync_fallbacks;
    uint64_t fallback_logged_at; /* loop ms of the last fallback summary (rate-limited) */
    /* Bumps for notifications, in issue order; completed ones leave from the head. */
    nt_bump_t *bumps, **bumps_tail;
    uint64_t bump_seq;           /* last issued */
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
    t->scoped = -1;
    t->bumps_tail = &t->bumps;
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
 * Bumps for notifications, and syncs for commits through pgshim
 * ------------------------------------------------------------------------------------------- */

static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void conn_launch(nt_tenant_t *t);
static void conn_close(nt_conn_t *nc, const char *why);
static void conn_set_poll(nt_conn_t *nc, int events);
static void sync_send(nt_tenant_t *t);

/* Every bump with a sequence number up to this one has completed. */
static uint64_t bumps_complete(const nt_tenant_t *t)
{
    return t->bumps != NULL ? t->bumps->seq - 1 : t->bump_seq;
}

/* Fires a detached list of waiters. Their callbacks may register new waiters. */
static void waiters_fire(px_notify_sync_t *list, bool seen)
{
    while (list != NULL) {
        px_notify_sync_t *s = list;
        list = s->next;
        px_notify_sync_cb cb = s->cb;
        void *arg = s->arg;
        free(s);
        cb(arg, seen);
    }
}

/* The sync on the wire is over when its token arrived, its statement's result came back and
   every bump issued for the notifications delivered before the token has completed. */
static void sync_check(nt_tenant_t *t)
{
    if (!t->sync_busy || !t->sync_got_token || !t->sync_got_result ||
        bumps_complete(t) < t->sync_need)
        return;
    t->sync_busy = false;
    bool ok = t->sync_ok;
    t->scoped = ok ? 1 : 0;
    t->scoped_at = now_ms();
    px_notify_sync_t *list = t->covered;
    t->covered = NULL;
    if (!ok && list != NULL)
        px_log_debug("notify %s: the scoped triggers are not installed (or not enabled, or on "
                     "another channel): commits through pgshim invalidate by table", t->tenant);
    waiters_fire(list, ok);
    sync_send(t);
}

static void bump_cb(void *arg, int status)
{
    nt_bump_t *b = arg;
    nt_tenant_t *t = b->t;
    (void)status;  /* a failed bump put the tenant in bypass: as safe as a landed one */
    b->done = true;
    while (t->bumps != NULL && t->bumps->done) {
        nt_bump_t *h = t->bumps;
        t->bumps = h->next;
        free(h);
    }
    if (t->bumps == NULL)
        t->bumps_tail = &t->bumps;
    sync_check(t);
}

/* One bump of up to CACHE_MAX_BUMP_TABLES generations, tracked for syncs. */
static void bump_send(nt_tenant_t *t, const char *const *names, int n)
{
    cache_client_t *cl = px_cache_client();
    if (cl == NULL || n == 0)
        return;
    nt_bump_t *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        /* Untracked: a sync could overtake it, so no sync may succeed until the connection
           is reopened (which bumps every table). */
        if (cache_bump(cl, t->tenant, names, n, NULL, NULL) != 0)
            px_log_warn("notify %s: bump failed; the tenant bypasses the cache", t->tenant);
        if (t->conn != NULL)
            conn_close(t->conn, "out of memory");
        return;
    }
    b->t = t;
    b->seq = ++t->bump_seq;
    *t->bumps_tail = b;
    t->bumps_tail = &b->next;
    /* On failure the library puts the tenant in bypass and retries the bump itself. */
    int rc = cache_bump(cl, t->tenant, names, n, bump_cb, b);
    if (rc != 0)
        bump_cb(b, rc);
}

/* Generations named by the notifications of one read, deduplicated. */
typedef struct nt_names {
    rw_tableset_t tables;                        /* table-level bumps */
    int n;
    char name[NT_MAX_NAMES][PX_SCOPE_NAME_MAX];  /* "<table>@*", "<table>@<scope>=<value>" */
} nt_names_t;

static void names_add(nt_names_t *acc, int table, const char *name)
{
    for (int i = 0; i < acc->n; i++)
        if (strcmp(acc->name[i], name) == 0)
            return;
    if (acc->n == NT_MAX_NAMES) {
        acc->tables |= (rw_tableset_t)1u << table;  /* too many scopes: the whole table */
        return;
    }
    snprintf(acc->name[acc->n++], PX_SCOPE_NAME_MAX, "%s", name);
}

/* "<table>" (table-level), "<table> <scope>=<v>[,<v>...] ..." (scoped, from the row triggers),
   anything else: every table. A scoped payload that does not parse bumps its table. */
static void payload_add(nt_names_t *acc, const char *payload)
{
    char tab[32];
    size_t tl = strcspn(payload, " ");
    if (tl == 0 || tl >= sizeof tab) {
        acc->tables |= RW_TABLES_ALL;
        return;
    }
    memcpy(tab, payload, tl);
    tab[tl] = '\0';
    int t = rw_table_lookup(tab);
    if (t < 0) {
        acc->tables |= RW_TABLES_ALL;
        return;
    }
    const char *p = payload + tl;
    if (*p == '\0' || !(RW_TABLES_SCOPED & (1u << t))) {
        acc->tables |= (rw_tableset_t)1u << t;
        return;
    }
    char name[PX_SCOPE_NAME_MAX];
    snprintf(name, sizeof name, "%s@*", tab);
    names_add(acc, t, name);
    while (*p == ' ') {
        p++;
        char scope[17];
        size_t sl = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
        if (sl == 0 || sl >= sizeof scope || p[sl] != '=')
            goto bad;
        memcpy(scope, p, sl);
        scope[sl] = '\0';
        p += sl + 1;
        for (;;) {
            const char *v = p;
            if (*p == '-')
                p++;
            size_t dl = strspn(p, "0123456789");
            if (dl == 0 || dl > 19)
                goto bad;
            p += dl;
            errno = 0;
            long long val = strtoll(v, NULL, 10);
            if (errno != 0)
                goto bad;
            snprintf(name, sizeof name, "%s@%s=%lld", tab, scope, val);
            names_add(acc, t, name);
            if (*p != ',')
                break;
            p++;
        }
    }
    if (*p == '\0')
        return;
bad:
    acc->tables |= (rw_tableset_t)1u << t;
}

/* Sends the collected bumps, CACHE_MAX_BUMP_TABLES generations at a time, and forgets them. */
static void names_flush(nt_tenant_t *t, nt_names_t *acc)
{
    const char *names[CACHE_MAX_BUMP_TABLES];
    int k = 0;
    if (acc->tables != 0)
        bump_send(t, names, rw_tableset_names(acc->tables, names, CACHE_MAX_BUMP_TABLES));
    for (int i = 0; i < acc->n; i++) {
        /* A table bumped table-level needs none of its scopes. */
        int tab = -1;
        char tn[32];
        size_t tl = strcspn(acc->name[i], "@");
        if (tl < sizeof tn) {
            memcpy(tn, acc->name[i], tl);
            tn[tl] = '\0';
            tab = rw_table_lookup(tn);
        }
        if (tab >= 0 && (acc->tables & (1u << tab)))
            continue;
        names[k++] = acc->name[i];
        if (k == CACHE_MAX_BUMP_TABLES) {
            bump_send(t, names, k);
            k = 0;
        }
    }
    bump_send(t, names, k);
    acc->tables = 0;
    acc->n = 0;
}

/* Fails every waiter of the tenant: its connection is gone, so no token can come back. */
static void syncs_fail(nt_tenant_t *t)
{
    px_notify_sync_t *a = t->covered, *b = t->queued;
    t->covered = NULL;
    t->queued = NULL;
    t->sync_busy = false;
    waiters_fire(a, false);
    waiters_fire(b, false);
}

/* Sends "SELECT pg_notify(<channel>, 'sync <n>'), <triggers usable>" for the queued waiters when
   no sync is on the wire. The notification is delivered after the statement's implicit commit,
   which follows the waiters' commits, and PostgreSQL delivers notifications in commit order: by
   the time the token arrives, every notification of the waiters' transactions has. The second
   column says whether the scoped triggers are installed (pgshim_notify_version() exists), all
   enabled ALWAYS (so session_replication_role cannot silence them) and sending on our channel;
   if not, the waiters fall back to bumping their tables. */
static void sync_send(nt_tenant_t *t)
{
    nt_conn_t *nc = t->conn;
    if (t->sync_busy || t->queued == NULL || nc == NULL || nc->state != NT_UP ||
        nc->query != NT_Q_NONE)
        return;
    const char *ch = notify_channel();
    char lit[2 * 64 + 3];
    size_t l = 0;
    lit[l++] = '\'';
    for (const char *p = ch; *p && l < sizeof(lit) - 3; p++) {
        if (*p == '\'')
            lit[l++] = '\'';
        lit[l++] = *p;
    }
    lit[l++] = '\'';
    lit[l] = '\0';
    char sql[1024];
    uint64_t token = t->sync_token + 1;
    snprintf(sql, sizeof sql,
             "SELECT pg_catalog.pg_notify(%s, 'sync %llu'), "
             "pg_catalog.to_regprocedure('pgshim_notify_version()') IS NOT NULL "
             "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname LIKE "
             "'pgshim\\_notify%%' AND (tgenabled <> 'A' OR pg_catalog.position(tgargs, "
             "pg_catalog.convert_to(%s, 'UTF8') || pg_catalog.decode('00', 'hex')) <> 1))",
             lit, (unsigned long long)token, lit);
    if (PQsendQuery(nc->pg, sql) == 0) {
        conn_close(nc, "cannot send a sync");
        return;
    }
    t->sync_token = token;
    t->sync_busy = true;
    t->sync_got_token = t->sync_got_result = t->sync_ok = false;
    t->syncs++;
    nc->query = NT_Q_SYNC;
    /* Everyone queued committed before this statement was sent. */
    t->covered = t->queued;
    t->queued = NULL;
    int fl = PQflush(nc->pg);
    if (fl < 0)
        conn_close(nc, "cannot send a sync");
    else if (fl > 0)
        conn_set_poll(nc, UV_READABLE | UV_WRITABLE);
}

px_notify_sync_t *px_notify_sync(const char *tenant, px_notify_sync_cb cb, void *arg)
{
    const px_redis_conf_t *rc = px_cache_conf();
    if (rc == NULL || !rc->notify || !g_nt_on)
        return NULL;
    nt_tenant_t *t = tenant_find(tenant);
    if (t == NULL || !t->trusted || t->conn == NULL || t->conn->state != NT_UP)
        return NULL;
    uint64_t now = now_ms();
    if (t->scoped == 0 && now - t->scoped_at < NT_SCOPED_RECHECK_MS)
        return NULL;
    px_notify_sync_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cb = cb;
    s->arg = arg;
    s->deadline = now + rc->cfg.timeout_ms;
    t->sync_commits++;
    /* Appended, so waiters are answered in the order their commits were seen. */
    px_notify_sync_t **pp = &t->queued;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = s;
    sync_send(t);
    return s;
}

/* Removes and fires the waiters of *list whose deadline passed. */
static void waiters_expire(px_notify_sync_t **list, uint64_t now, uint64_t *count)
{
    px_notify_sync_t *expired = NULL, **tail = &expired;
    for (px_notify_sync_t **pp = list; *pp != NULL;) {
        px_notify_sync_t *s = *pp;
        if (now >= s->deadline) {
            *pp = s->next;
            s->next = NULL;
            *tail = s;
            tail = &s->next;
            (*count)++;
        } else {
            pp = &s->next;
        }
    }
    waiters_fire(expired, false);
}

void px_notify_sync_tick(void)
{
    if (!g_nt_on)
        return;
    uint64_t now = now_ms();
    for (nt_tenant_t *t = g_tenants; t != NULL; t = t->next) {
        uint64_t before = t->sync_fallbacks;
        waiters_expire(&t->covered, now, &t->sync_fallbacks);
        waiters_expire(&t->queued, now, &t->sync_fallbacks);
        if (t->sync_fallbacks == before)
            continue;
        /* A slow PostgreSQL or Redis makes commits fall back: say so, at most every 10 s. */
        bool loud = t->fallback_logged_at == 0 || now - t->fallback_logged_at >= 10000;
        if (loud)
            t->fallback_logged_at = now;
        px_log(loud ? PX_LOG_INFO : PX_LOG_DEBUG,
               "notify %s: %llu commit(s) through pgshim saw no sync within timeout_ms; "
               "invalidating their tables instead (%llu of %llu since start, %llu syncs)",
               t->tenant, (unsigned long long)(t->sync_fallbacks - before),
               (unsigned long long)t->sync_fallbacks, (unsigned long long)t->sync_commits,
               (unsigned long long)t->syncs);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

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
    syncs_fail(t);
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

/* Bumps the generations named by the notifications that arrived in one read, in order: a sync
   token of ours is answered only after the bumps of every notification before it were sent. */
static void conn_notifications(nt_conn_t *nc)
{
    nt_tenant_t *t = nc->t;
    static nt_names_t acc;  /* one loop thread; too big for the stack */
    acc.tables = 0;
    acc.n = 0;
    int n = 0;
    rw_tableset_t touched = 0;  /* every table named, table-level or scoped (native memos) */
    int own_pid = PQbackendPID(nc->pg);
    PGnotify *nf;
    while ((nf = PQnotifies(nc->pg)) != NULL) {
        const char *payload = nf->extra != NULL ? nf->extra : "";
        px_log_debug("notify %s: \"%.200s\" from backend %d", t->tenant, payload, nf->be_pid);
        if (strncmp(payload, "sync ", 5) == 0) {
            /* Another pgshim's token, or ours: no table changed. */
            if (nf->be_pid == own_pid && t->sync_busy &&
                strtoull(payload + 5, NULL, 10) == t->sync_token) {
                names_flush(t, &acc);
                t->sync_got_token = true;
                t->sync_need = t->bump_seq;
            }
        } else {
            /* Sent by the install and uninstall scripts: ask at the next sync again. */
            if (strncmp(payload, "pgshim-notify", 13) == 0)
                t->scoped = -1;
            payload_add(&acc, payload);
            char word[64];
            size_t wl = strcspn(payload, " ");
            int tab = -1;
            if (wl < sizeof(word)) {
                memcpy(word, payload, wl);
                word[wl] = '\0';
                tab = rw_table_lookup(word);
            }
            touched |= tab >= 0 ? (rw_tableset_t)1u << tab : RW_TABLES_ALL;
            n++;
        }
        PQfreemem(nf);
    }
    t->received += (uint64_t)n;
    /* In-memory copies of the native path (native_butree_ttl) read the same tables. The LISTEN
       connection is on the tenant's server database, which is the tenant's name unless
       [databases] renames it; a renamed one keeps its copies until their TTL. */
    if (touched != 0)
        px_native_tables_changed(t->tenant, touched);
    if (acc.tables != 0 || acc.n != 0)
        px_log_debug("notify %s: %d notification(s) (%llu in all): bumping %d table(s) and %d "
                     "scoped generation(s)", t->tenant, n, (unsigned long long)t->received,
                     __builtin_popcount(acc.tables), acc.n);
    names_flush(t, &acc);
    sync_check(t);
}

static void conn_read(nt_conn_t *nc)
{
    if (PQconsumeInput(nc->pg) == 0) {
        conn_close(nc, "connection lost");
        return;
    }
    /* Notifications first: a sync's token must be seen before its statement's end is. */
    conn_notifications(nc);
    while (nc->state != NT_CLOSING && nc->query != NT_Q_NONE && !PQisBusy(nc->pg)) {
        PGresult *r = PQgetResult(nc->pg);
        if (r == NULL) {
            nt_query_t q = nc->query;
            nc->query = NT_Q_NONE;
            if (q == NT_Q_SYNC) {
                nt_tenant_t *t = nc->t;
                t->sync_got_result = true;
                conn_notifications(nc);
                sync_check(t);
                if (nc->state == NT_CLOSING)
                    return;
                sync_send(t);
            }
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (nc->query == NT_Q_SYNC) {
            nt_tenant_t *t = nc->t;
            if (st == PGRES_TUPLES_OK) {
                t->sync_ok = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
            } else if (!t->sync_got_token) {
                /* An error (notification queue full, no access to pg_trigger...) rolled the
                   statement back: no token will come, and the waiters fall back. */
                t->sync_ok = false;
                t->sync_got_token = true;
                t->sync_need = t->bump_seq;
            }
            PQclear(r);
            continue;
        }
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
    nc->query = NT_Q_LISTEN;
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
        syncs_fail(t);
        while (t->bumps != NULL) {  /* only if the cache client is still alive (it is not) */
            nt_bump_t *b = t->bumps;
            t->bumps = b->next;
            free(b);
        }
        free(t->tenant);
        free(t);
    }
}
