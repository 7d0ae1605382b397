/*
 * cachemode.c: cache mode of the interception engine and write invalidation (issue 7), on top of
 * the loop-agnostic Redis cache library (cache/).
 *
 * - [redis] configuration lines are parsed here (config.c hands them over); the first running
 *   configuration creates the process's one cache client as soon as the libuv loop exists, and a
 *   10 ms timer drives its timeouts and reconnects. Changing [redis] needs a restart.
 * - A cache-mode call (intercept.c) gets its key from the recognised call: tenant (the client's
 *   database), function, variant (shape, column name, result type: the stored RowDescription
 *   depends on them), canonical arguments, the hash of rw_native_settings (eligible sessions
 *   match them), the UTC date for date-dependent functions and the generations of the tables the
 *   function reads (rw_fn_reads). A hit is served from the stored messages; a miss is answered
 *   natively and stored with px_flags_ttl. Every failure means "answer natively", counted in
 *   cache_errors.
 * - Keys carry the generation of every table the function reads and, for the tables the NOTIFY
 *   row triggers report by scope, either the scoped generation of the call's argument
 *   ("jobneed@bu=12") or the table's any-scope generation ("jobneed@*"): call_tables().
 * - Writes: every Query/Parse that reaches the interception hook is checked for writes to legacy
 *   tables (rw_writes_classify) and the tables are remembered per client, with WR_OTHER when a
 *   write was not a plain row write; at the next ReadyForQuery with status 'I' (the write
 *   committed, or was rolled back: invalidating then is merely wasteful) the ReadyForQuery is
 *   held until either the tenant's listener synced (row writes only, triggers usable: their
 *   notifications did the scoped invalidation, px_notify_sync) or their table generations were
 *   bumped (everything else, and every sync that fails). The set is kept while replies are
 *   still outstanding, so a pipelined later write is invalidated at its own ReadyForQuery too.
 *   While a bump is in flight the cache library refuses lookups of that tenant, so this pgshim
 *   never serves a stale result.
 * - Writes that bypass pgshim are seen through NOTIFY (cachenotify.c): a tenant whose LISTEN
 *   connection is not trusted (down, or its bump after connecting not answered yet) is answered
 *   natively, and nothing is stored for it.
 */
#include "px_cache.h"
#include "px_intercept.h"
#include "px_log.h"
#include "rw_writes.h"

#include <hiredis/adapters/libuv.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CACHE_TICK_MS 10

static cache_client_t *g_cache;
static px_redis_conf_t *g_conf;      /* copy of the first running [redis] (owned) */
static bool g_conf_set;
static bool g_create_failed;
static cache_flights_t *g_flights;  /* single-flight of concurrent misses in this process */
static uv_timer_t g_tick;
static bool g_tick_on;

/* ---------------------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------------------- */

static px_redis_conf_t *conf_new(void)
{
    px_redis_conf_t *rc = calloc(1, sizeof(*rc));
    if (rc != NULL) {
        cache_config_defaults(&rc->cfg);
        rc->notify = true;
    }
    return rc;
}

void px_redis_conf_free(px_redis_conf_t *conf)
{
    if (conf == NULL)
        return;
    free(conf->host);
    free(conf->unix_path);
    free(conf->password);
    free(conf->key_prefix);
    free(conf->notify_channel);
    free(conf);
}

static bool parse_bool(const char *v, bool *out)
{
    if (strcasecmp(v, "1") == 0 || strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 ||
        strcasecmp(v, "on") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(v, "0") == 0 || strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ||
        strcasecmp(v, "off") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < lo || n > hi)
        return false;
    *out = n;
    return true;
}

static int set_str(char **field, const char **cfgfield, const char *value)
{
    char *copy = strdup(value);
    if (copy == NULL)
        return -1;
    free(*field);
    *field = copy;
    *cfgfield = copy;
    return 0;
}

int px_redis_config_line(px_redis_conf_t **conf, const char *name, const char *value, char *why,
                         size_t whylen)
{
    if (*conf == NULL && (*conf = conf_new()) == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    px_redis_conf_t *rc = *conf;
    long n;
    int r = 0;
    if (strcasecmp(name, "enabled") == 0) {
        if (!parse_bool(value, &rc->cfg.enabled))
            goto bad;
    } else if (strcasecmp(name, "host") == 0) {
        r = set_str(&rc->host, &rc->cfg.host, value);
    } else if (strcasecmp(name, "port") == 0) {
        if (!parse_long(value, 1, 65535, &n))
            goto bad;
        rc->cfg.port = (int)n;
    } else if (strcasecmp(name, "unix_socket") == 0) {
        r = set_str(&rc->unix_path, &rc->cfg.unix_path, value);
    } else if (strcasecmp(name, "password") == 0) {
        r = set_str(&rc->password, &rc->cfg.password, value);
    } else if (strcasecmp(name, "db") == 0) {
        if (!parse_long(value, 0, 1000000, &n))
            goto bad;
        rc->cfg.db = (int)n;
    } else if (strcasecmp(name, "key_prefix") == 0) {
        if (value[0] == '\0')
            goto bad;
        r = set_str(&rc->key_prefix, &rc->cfg.key_prefix, value);
    } else if (strcasecmp(name, "timeout_ms") == 0) {
        if (!parse_long(value, 1, 60000, &n))
            goto bad;
        rc->cfg.timeout_ms = (uint32_t)n;
    } else if (strcasecmp(name, "connect_timeout_ms") == 0) {
        if (!parse_long(value, 1, 60000, &n))
            goto bad;
        rc->cfg.connect_timeout_ms = (uint32_t)n;
    } else if (strcasecmp(name, "pool_size") == 0) {
        if (!parse_long(value, 1, 64, &n))
            goto bad;
        rc->cfg.pool_size = (uint32_t)n;
    } else if (strcasecmp(name, "notify") == 0) {
        if (!parse_bool(value, &rc->notify))
            goto bad;
    } else if (strcasecmp(name, "notify_channel") == 0) {
        /* A channel is an identifier (at most NAMEDATALEN-1 bytes); anything else could not
           match what the triggers send. */
        size_t len = strlen(value);
        if (len == 0 || len > 63)
            goto bad;
        char *copy = strdup(value);
        if (copy == NULL) {
            r = -1;
        } else {
            free(rc->notify_channel);
            rc->notify_channel = copy;
        }
    } else {
        snprintf(why, whylen, "unknown option \"%s\" in section [redis]", name);
        return -1;
    }
    if (r != 0) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
bad:
    snprintf(why, whylen, "invalid value \"%s\" for %s in section [redis]", value, name);
    return -1;
}

/* Deep copy, so the running cache keeps its settings across reloads. */
static px_redis_conf_t *conf_copy(const px_redis_conf_t *src)
{
    px_redis_conf_t *rc = conf_new();
    if (rc == NULL)
        return NULL;
    if (src == NULL)
        return rc;
    rc->cfg = src->cfg;
    int r = 0;
    if (src->host != NULL)
        r |= set_str(&rc->host, &rc->cfg.host, src->host);
    if (src->unix_path != NULL)
        r |= set_str(&rc->unix_path, &rc->cfg.unix_path, src->unix_path);
    if (src->password != NULL)
        r |= set_str(&rc->password, &rc->cfg.password, src->password);
    if (src->key_prefix != NULL)
        r |= set_str(&rc->key_prefix, &rc->cfg.key_prefix, src->key_prefix);
    rc->notify = src->notify;
    if (src->notify_channel != NULL && (rc->notify_channel = strdup(src->notify_channel)) == NULL)
        r = -1;
    if (r != 0) {
        px_redis_conf_free(rc);
        return NULL;
    }
    return rc;
}

void px_cache_config_applied(const px_redis_conf_t *conf)
{
    if (g_conf_set) {
        bool was = g_conf != NULL && g_conf->cfg.enabled;
        bool now = conf != NULL && conf->cfg.enabled;
        if (was != now || (now && (conf->cfg.port != g_conf->cfg.port ||
                                   conf->notify != g_conf->notify)))
            px_log_warn("config reload: [redis] changed; the new settings need a restart");
        return;
    }
    g_conf_set = true;
    g_conf = conf_copy(conf);
    if (g_conf == NULL)
        px_log_error("[redis]: out of memory; the cache stays off");
}

/* ---------------------------------------------------------------------------------------------
 * The client
 * ------------------------------------------------------------------------------------------- */

static int attach_uv(redisAsyncContext *ac, void *loop_arg)
{
    return redisLibuvAttach(ac, (uv_loop_t *)loop_arg) == REDIS_OK ? 0 : -1;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
    if (g_cache != NULL)
        cache_client_tick(g_cache, cache_now_ms());
    px_notify_sync_tick();
}

/* The cache client, created on first use once the loop exists; NULL when the cache is off. */
static cache_client_t *cache_get(void)
{
    if (g_cache != NULL)
        return g_cache;
    if (g_create_failed || g_conf == NULL || !g_conf->cfg.enabled || px_loop == NULL)
        return NULL;
    int rc = cache_client_new(&g_conf->cfg, attach_uv, px_loop, &g_cache);
    if (rc != 0) {
        g_create_failed = true;
        g_cache = NULL;
        px_log_error("redis cache: cannot create the client: %s", cache_strerror(rc));
        return NULL;
    }
    g_flights = cache_flights_new();
    if (uv_timer_init(px_loop, &g_tick) == 0) {
        g_tick_on = true;
        uv_timer_start(&g_tick, tick_cb, CACHE_TICK_MS, CACHE_TICK_MS);
        uv_unref((uv_handle_t *)&g_tick);
    }
    px_notify_start();
    px_log_info("redis cache: using %s%s%d (prefix %s)",
                g_conf->cfg.unix_path && g_conf->cfg.unix_path[0] ? g_conf->cfg.unix_path
                                                                  : g_conf->cfg.host,
                g_conf->cfg.unix_path && g_conf->cfg.unix_path[0] ? "" : ":",
                g_conf->cfg.unix_path && g_conf->cfg.unix_path[0] ? 0 : g_conf->cfg.port,
                g_conf->cfg.key_prefix);
    return g_cache;
}

void px_cache_start(void)
{
    (void)cache_get();
}

cache_client_t *px_cache_client(void)
{
    return cache_get();
}

const px_redis_conf_t *px_cache_conf(void)
{
    return g_conf;
}

void px_cache_shutdown(void)
{
    if (g_tick_on) {
        uv_timer_stop(&g_tick);
        uv_close((uv_handle_t *)&g_tick, NULL);
        g_tick_on = false;
    }
    if (g_cache != NULL) {
        cache_client_free(g_cache);
        g_cache = NULL;
    }
    px_notify_shutdown();  /* after the client: its callbacks may still reach the records */
    if (g_flights != NULL) {
        cache_flights_free(g_flights);
        g_flights = NULL;
    }
    px_redis_conf_free(g_conf);
    g_conf = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Cache-mode calls
 * ------------------------------------------------------------------------------------------- */

struct px_cache_call {
    char *tenant;
    rw_fn_t fn;
    cache_key_t key;
    cache_req_t *req;            /* pending lookup */
    cache_flight_t *flight;      /* this call computes the key for concurrent misses */
    cache_waiter_t *waiter;      /* this call waits for another call's computation */
    px_cache_lookup_cb cb;
    void *arg;
};

static uint64_t settings_hash(void)
{
    static bool done;
    static uint64_t h;
    if (!done) {
        const char *names[32], *values[32];
        size_t n = 0;
        for (; rw_native_settings[n][0] != NULL && n < 32; n++) {
            names[n] = rw_native_settings[n][0];
            values[n] = rw_native_settings[n][1];
        }
        h = cache_settings_hash(names, values, n);
        done = true;
    }
    return h;
}

/* Another call of the same key finished (CACHE_OK: its answer) or gave up (answer natively). */
static void flight_cb(void *arg, int status, const cache_result_t *res)
{
    px_cache_call_t *cc = arg;
    cc->waiter = NULL;
    if (status == CACHE_OK && res != NULL)
        cc->cb(cc->arg, CACHE_HIT, res);
    else
        cc->cb(cc->arg, CACHE_EABANDONED, NULL);
}

static void lookup_cb(void *arg, int status, cache_key_t *k, const cache_result_t *res)
{
    px_cache_call_t *cc = arg;
    cc->req = NULL;
    px_icpt_stats_t *st = px_stats_get(cc->tenant, cc->fn);
    if (status == CACHE_HIT)
        st->cache_hits++;
    else if (status == CACHE_MISS)
        st->cache_misses++;
    else
        st->cache_errors++;
    px_log_debug("%s/%s: cache lookup: %s", cc->tenant, rw_fn_name(cc->fn), cache_strerror(status));
    if (status == CACHE_MISS && g_flights != NULL && k->full != NULL) {
        int fr = cache_flight_begin(g_flights, k->full, k->full_len, flight_cb, cc, &cc->flight,
                                    &cc->waiter);
        if (fr == CACHE_FLIGHT_WAIT) {
            px_log_debug("%s/%s: waiting for a concurrent computation of the same key",
                         cc->tenant, rw_fn_name(cc->fn));
            return;  /* flight_cb answers */
        }
        if (fr != CACHE_FLIGHT_LEAD)
            cc->flight = NULL;
    }
    cc->cb(cc->arg, status, status == CACHE_HIT ? res : NULL);
}

/* The canonical decimal form of an integer argument (what the triggers send: bigint::text), or
   false when the argument is NULL or not a plain integer. The call's argument texts are already
   PostgreSQL's input form, so anything else here is unusual; it only costs the scope. */
static bool scope_value(const rw_call_t *call, int arg, char *out, size_t outlen)
{
    if (arg < 0 || arg >= call->nargs)
        return false;
    const rw_arg_t *a = &call->args[arg];
    if (a->is_null || a->text == NULL || a->text[0] == '\0')
        return false;
    const char *p = a->text;
    if (*p == '-' || *p == '+')
        p++;
    if (*p == '\0')
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    errno = 0;
    long long v = strtoll(a->text, NULL, 10);
    if (errno != 0)
        return false;
    snprintf(out, outlen, "%lld", v);
    return true;
}

/* The generations a call's key carries: every table it reads (a table-level bump reaches all
   its results) and, for each table the triggers report by scope, either the scoped generation
   of the call's argument ("jobneed@bu=12") or, when the function has no scope on that table or
   the argument gives none, the table's any-scope generation ("jobneed@*", bumped by every
   scoped write). A scoped write bumps "<table>@*" and the scopes of its rows, never the table
   generation, so every result that could include one of its rows misses and no other does. */
static int call_tables(const rw_call_t *call, const char **tables,
                       char scoped[][PX_SCOPE_NAME_MAX])
{
    rw_tableset_t reads = rw_fn_reads(call->fn);
    int n = rw_tableset_names(reads, tables, CACHE_MAX_TABLES);
    rw_scope_t sc[CACHE_MAX_TABLES];
    int nsc = rw_fn_scopes(call->fn, sc, CACHE_MAX_TABLES);
    int ns = 0;
    for (int t = 0; t < RW_TABLE__COUNT; t++) {
        if (!(reads & RW_TABLES_SCOPED & (1u << t)))
            continue;
        bool any = false;
        for (int i = 0; i < nsc && n < CACHE_MAX_TABLES; i++) {
            char v[32];
            if ((int)sc[i].table != t || !scope_value(call, sc[i].arg, v, sizeof v))
                continue;
            snprintf(scoped[ns], PX_SCOPE_NAME_MAX, "%s@%s=%s", rw_table_name((rw_table_t)t),
                     sc[i].scope, v);
            tables[n++] = scoped[ns++];
            any = true;
        }
        if (!any) {
            if (n == CACHE_MAX_TABLES)
                return -1;  /* a key without this generation would miss scoped writes */
            snprintf(scoped[ns], PX_SCOPE_NAME_MAX, "%s@*", rw_table_name((rw_table_t)t));
            tables[n++] = scoped[ns++];
        }
    }
    return n;
}

px_cache_call_t *px_cache_call_start(const char *tenant, const rw_call_t *call,
                                     px_cache_lookup_cb cb, void *arg, int *status)
{
    cache_client_t *cl = cache_get();
    if (cl == NULL) {
        *status = CACHE_EDISABLED;
        return NULL;
    }
    px_icpt_stats_t *st = px_stats_get(tenant, call->fn);
    /* Refused while a bump of the tenant failed or is on the wire, and while its LISTEN
       connection is not (yet, or again) up: writes that bypass pgshim could go unseen then. */
    if (cache_tenant_bypassed(cl, tenant) || !px_notify_trusted(tenant)) {
        st->cache_errors++;
        *status = CACHE_EBYPASS;
        return NULL;
    }
    px_cache_call_t *cc = calloc(1, sizeof(*cc));
    if (cc == NULL || (cc->tenant = strdup(tenant)) == NULL) {
        free(cc);
        *status = CACHE_ENOMEM;
        return NULL;
    }
    cc->fn = call->fn;
    cc->cb = cb;
    cc->arg = arg;
    char variant[RW_NAMEDATALEN + 48];
    snprintf(variant, sizeof(variant), "%d/%u/%s", (int)call->shape, (unsigned)call->result_oid,
             call->colname);
    cache_arg_t args[CACHE_MAX_ARGS];
    int nargs = call->nargs < CACHE_MAX_ARGS ? call->nargs : CACHE_MAX_ARGS;
    for (int i = 0; i < nargs; i++) {
        const rw_arg_t *a = &call->args[i];
        args[i].is_null = a->is_null || a->text == NULL;
        args[i].val = args[i].is_null ? "" : a->text;
        args[i].len = args[i].is_null ? 0 : strlen(a->text);
        args[i].type = (int)a->type;
    }
    char date[16];
    const char *datep = NULL;
    if (rw_fn_depends_on_date(call->fn)) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof(date), "%Y-%m-%d", &tm);
        datep = date;
    }
    const char *tables[CACHE_MAX_TABLES];
    char scoped[CACHE_MAX_TABLES][PX_SCOPE_NAME_MAX];
    int ntables = call_tables(call, tables, scoped);
    cache_key_spec_t spec = {
        .tenant = tenant,
        .function = rw_fn_name(call->fn),
        .variant = variant,
        .args = args,
        .nargs = nargs,
        .settings_hash = settings_hash(),
        .date = datep,
        .tables = tables,
        .ntables = ntables,
    };
    int rc = call->nargs > CACHE_MAX_ARGS || ntables < 0
                 ? CACHE_EINVAL
                 : cache_key_build(&cc->key, cache_client_prefix(cl), &spec);
    if (rc == 0)
        rc = cache_lookup(cl, &cc->key, lookup_cb, cc, &cc->req);
    if (rc != 0) {
        if (rc != CACHE_EDISABLED)
            st->cache_errors++;
        *status = rc;
        px_cache_call_free(cc);
        return NULL;
    }
    *status = 0;
    return cc;
}

void px_cache_call_store(px_cache_call_t *cc, const uint8_t *describe, size_t dlen,
                         const uint8_t *body, size_t blen)
{
    if (cc == NULL || g_cache == NULL || !cc->key.have_gens)
        return;
    px_icpt_stats_t *st = px_stats_get(cc->tenant, cc->fn);
    uint32_t ttl = px_flags_ttl(cc->tenant, cc->fn);
    if (ttl == 0)
        return;
    if (cc->flight != NULL) {
        cache_flight_finish(g_flights, cc->flight, describe, dlen, body, blen);
        cc->flight = NULL;
    }
    /* The LISTEN connection dropped since the lookup: a write may have gone unseen. (Storing
       would be harmless, since the reconnect bumps every table and the store is guarded by the
       looked-up generations, but it would be wasted.) */
    if (!px_notify_trusted(cc->tenant))
        return;
    int rc = cache_store(g_cache, &cc->key, ttl, describe, dlen, body, blen, NULL, NULL);
    if (rc == 0)
        st->cache_stores++;
    else if (rc != CACHE_EBYPASS)
        st->cache_errors++;
}

void px_cache_call_free(px_cache_call_t *cc)
{
    if (cc == NULL)
        return;
    if (cc->req != NULL && g_cache != NULL)
        cache_cancel(g_cache, cc->req);
    if (cc->flight != NULL && g_flights != NULL)
        cache_flight_abandon(g_flights, cc->flight);  /* waiters answer natively */
    if (cc->waiter != NULL && g_flights != NULL)
        cache_flight_cancel(g_flights, cc->waiter);
    cache_key_clear(&cc->key);
    free(cc->tenant);
    free(cc);
}

/* ---------------------------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------------------------- */

#define WR_HASH_SIZE 256
/* Marks a write set holding a write the NOTIFY triggers do not report (DDL, DO, unparsed...):
   it must be invalidated by table. Outside the table bits, so rw_tableset_names ignores it. */
#define WR_OTHER ((rw_tableset_t)1u << 31)

typedef struct px_wr_client {
    struct px_wr_client *next;
    px_client_t *c;
    rw_tableset_t tables;        /* legacy tables written since the last bump */
    rw_tableset_t bumping;       /* tables of the bump in flight */
    bool holding;                /* a bump is in flight; the ReadyForQuery waits for it */
    bool released;               /* the bump ended: let the held ReadyForQuery through */
    bool clear_after;            /* no reply was outstanding: forget `bumping` on release */
    bool gone;                   /* the client went away while holding: free on release */
    char *tenant;                /* the client's database while a sync is awaited (the client
                                    may be gone when it ends) */
    struct {
        char *name;
        rw_tableset_t tables;
    } *stmts;                    /* prepared statements that write legacy tables */
    size_t nstmts, capstmts;
} px_wr_client_t;

static void wr_free(px_wr_client_t *w)
{
    free(w->tenant);
    for (size_t i = 0; i < w->nstmts; i++)
        free(w->stmts[i].name);
    free(w->stmts);
    free(w);
}

static px_wr_client_t *g_wr_hash[WR_HASH_SIZE];

static size_t wr_slot(const px_client_t *c)
{
    uintptr_t p = (uintptr_t)c;
    return (size_t)((p >> 4) ^ (p >> 12)) % WR_HASH_SIZE;
}

static px_wr_client_t *wr_find(const px_client_t *c)
{
    for (px_wr_client_t *w = g_wr_hash[wr_slot(c)]; w; w = w->next)
        if (w->c == c)
            return w;
    return NULL;
}

static px_wr_client_t *wr_get(px_client_t *c)
{
    px_wr_client_t *w = wr_find(c);
    if (w != NULL)
        return w;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->c = c;
    size_t slot = wr_slot(c);
    w->next = g_wr_hash[slot];
    g_wr_hash[slot] = w;
    return w;
}

/* The client's next transaction end must bump `set`. Without memory for that, bump now (before
   the write: best effort) so at least older results stop being served. */
static void wr_add(px_client_t *c, rw_tableset_t set)
{
    if (set == 0)
        return;
    px_wr_client_t *w = wr_get(c);
    if (w != NULL) {
        w->tables |= set;
        return;
    }
    const char *names[RW_TABLE__COUNT];
    int n = rw_tableset_names(set, names, RW_TABLE__COUNT);
    if (cache_bump(g_cache, c->dbname, names, n, NULL, NULL) != 0)
        px_log_warn("redis cache: bump failed");
}

static rw_tableset_t statement_writes(const char *sql, size_t len, bool whole)
{
    if (!rw_writes_prefilter(sql, len))
        return 0;
    if (!whole)
        return RW_TABLES_ALL | WR_OTHER;
    rw_tableset_t set;
    bool other;
    if (rw_writes_classify(sql, &set, &other) == 0)
        return 0;
    return set | (other ? WR_OTHER : 0);
}

void px_cache_note_statement(px_client_t *c, const char *sql, size_t len, bool whole)
{
    if (cache_get() == NULL)
        return;
    wr_add(c, statement_writes(sql, len, whole));
}

void px_cache_note_parse(px_client_t *c, const char *name, size_t namelen, const char *sql,
                         size_t len, bool whole)
{
    if (cache_get() == NULL)
        return;
    rw_tableset_t set = statement_writes(sql, len, whole);
    wr_add(c, set);
    px_wr_client_t *w = set != 0 ? wr_get(c) : wr_find(c);
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->nstmts; i++) {
        if (strlen(w->stmts[i].name) == namelen && memcmp(w->stmts[i].name, name, namelen) == 0) {
            if (set != 0) {
                w->stmts[i].tables = set;
            } else {
                free(w->stmts[i].name);
                w->stmts[i] = w->stmts[--w->nstmts];
            }
            return;
        }
    }
    if (set == 0)
        return;
    if (w->nstmts == w->capstmts) {
        size_t nc = w->capstmts ? w->capstmts * 2 : 4;
        void *np = realloc(w->stmts, nc * sizeof(*w->stmts));
        if (np == NULL)
            return;  /* later Binds of it are not seen: its Parse bumped already (see header) */
        w->stmts = np;
        w->capstmts = nc;
    }
    char *copy = strndup(name, namelen);
    if (copy == NULL)
        return;
    w->stmts[w->nstmts].name = copy;
    w->stmts[w->nstmts].tables = set;
    w->nstmts++;
}

void px_cache_note_bind(px_client_t *c, const char *name, size_t namelen)
{
    px_wr_client_t *w = wr_find(c);
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->nstmts; i++)
        if (strlen(w->stmts[i].name) == namelen && memcmp(w->stmts[i].name, name, namelen) == 0)
            w->tables |= w->stmts[i].tables;
}

static void bump_done(void *arg, int status)
{
    px_wr_client_t *w = arg;
    if (status != CACHE_OK)
        px_log_warn("redis cache: generation bump failed (%s); the tenant bypasses the cache "
                    "until a retry succeeds", cache_strerror(status));
    if (w->gone) {
        wr_free(w);
        return;
    }
    w->holding = false;
    w->released = true;
    px_client_t *c = w->c;
    if (c->server != NULL && c->server->client == c) {
        px_server_update_reading(c->server);
        px_io_process(&c->server->io);  /* forwards the held ReadyForQuery */
    }
}

/* The listener's sync for a held commit came back: seen, its notifications have been applied
   and the ReadyForQuery can go; not seen, the tables are bumped first (also when the client
   left meanwhile: the write committed all the same). */
static void sync_done(void *arg, bool seen)
{
    px_wr_client_t *w = arg;
    if (seen || g_cache == NULL) {
        bump_done(w, CACHE_OK);
        return;
    }
    const char *names[RW_TABLE__COUNT];
    int n = rw_tableset_names(w->bumping, names, RW_TABLE__COUNT);
    int rc = n > 0 ? cache_bump(g_cache, w->tenant, names, n, bump_done, w) : CACHE_EINVAL;
    if (rc != 0)
        bump_done(w, rc);  /* refused at once: the tenant is in bypass, nothing stale is served */
}

bool px_cache_hold_ready(px_client_t *c, uint8_t st, int pending_after)
{
    if (c == NULL || g_cache == NULL)
        return false;
    px_wr_client_t *w = wr_find(c);
    if (w == NULL)
        return false;
    if (w->holding)
        return true;
    if (w->released) {
        w->released = false;
        if (w->clear_after)
            w->tables &= ~w->bumping;
        w->bumping = 0;
        return false;
    }
    if (st != (uint8_t)'I' || (w->tables & RW_TABLES_ALL) == 0)
        return false;
    /* The transaction is over: its writes committed (or rolled back: a wasted invalidation).
       Row writes fired the scoped triggers, whose notifications invalidate exactly the scopes
       they touched: wait until the tenant's listener has applied them (sync_done). Anything
       else, or no usable listener, bumps the tables. */
    if (!(w->tables & WR_OTHER) &&
        (w->tenant != NULL || (w->tenant = strdup(c->dbname)) != NULL)) {
        w->bumping = w->tables;
        w->clear_after = pending_after == 0;
        w->holding = true;
        if (px_notify_sync(c->dbname, sync_done, w) != NULL) {
            px_log_debug("C-%llu: row writes ended; waiting for the listener's sync",
                         (unsigned long long)c->id);
            return true;
        }
        w->holding = false;
    }
    const char *names[RW_TABLE__COUNT];
    int n = rw_tableset_names(w->tables, names, RW_TABLE__COUNT);
    int rc = cache_bump(g_cache, c->dbname, names, n, bump_done, w);
    px_log_debug("C-%llu: write to %d legacy table(s) ended; bumping generations",
                 (unsigned long long)c->id, n);
    if (rc != 0) {
        /* Refused at once: the tenant is in bypass now and the bump is retried in the
           background, so nothing stale can be served here; no need to wait. */
        if (pending_after == 0)
            w->tables = 0;
        return false;
    }
    w->bumping = w->tables;
    w->clear_after = pending_after == 0;
    w->holding = true;
    return true;
}

void px_cache_client_gone(px_client_t *c)
{
    px_wr_client_t **p = &g_wr_hash[wr_slot(c)];
    for (; *p; p = &(*p)->next) {
        if ((*p)->c == c) {
            px_wr_client_t *w = *p;
            *p = w->next;
            if (w->holding)
                w->gone = true;  /* bump_done frees it */
            else
                wr_free(w);
            return;
        }
    }
}
