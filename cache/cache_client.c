/*
 * The Redis client: a pool of hiredis async connections on the owner's event loop, request
 * deadlines, reconnection with backoff, the lookup/store/bump scripts, and tenant bypass after
 * failed bumps.
 *
 * Connection ("slot") life cycle: DOWN --(tick, backoff elapsed)--> CONNECTING (connect, then
 * AUTH/SELECT/SCRIPT LOAD pipelined) --(last handshake reply)--> READY --(error, timeout, lost
 * connection)--> DOWN. Only READY slots take requests, so nothing waits in a queue for a Redis
 * that is not there.
 *
 * Request ownership: a cache_req_t is handed to hiredis as privdata and freed only in its
 * hiredis reply callback, which hiredis calls exactly once (with the reply, or with NULL when
 * the context is freed). The user's outcome is delivered at most once, guarded by req->done;
 * a request whose slot was dropped is already answered (timeout/disconnect) when hiredis hands
 * it back with NULL.
 *
 * hiredis 0.14 facts this relies on: commands may be written before the connection completes
 * (they are buffered); a failed connect calls the connect callback with REDIS_ERR and then frees
 * the context itself; a lost connection calls every pending reply callback with NULL, then the
 * disconnect callback, then frees the context; redisAsyncFree from inside a reply callback is
 * deferred until the callback returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cache.h"
#include "cache_int.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define MAX_POOL 64

enum { SCRIPT_LOOKUP, SCRIPT_STORE, SCRIPT_BUMP, SCRIPT__COUNT };
static const char *const script_text[SCRIPT__COUNT] = {CACHE_LUA_LOOKUP, CACHE_LUA_STORE,
                                                       CACHE_LUA_BUMP};

typedef enum slot_state { SLOT_DOWN, SLOT_CONNECTING, SLOT_READY } slot_state_t;

typedef struct cache_slot {
    cache_client_t *client;
    redisAsyncContext *ac;        /* non-NULL in CONNECTING and READY */
    slot_state_t state;
    uint64_t deadline;            /* CONNECTING: connect + handshake must finish by then */
    uint64_t next_attempt;        /* DOWN: reconnect not before */
    uint32_t backoff_ms;
    cache_req_t *head, *tail;     /* requests written on ac, oldest first */
    int handshake_left;
} cache_slot_t;

enum req_kind { REQ_HANDSHAKE, REQ_LOOKUP, REQ_STORE, REQ_BUMP };

struct cache_req {
    cache_req_t *prev, *next;     /* on slot's list while slot != NULL */
    cache_client_t *c;
    cache_slot_t *slot;
    enum req_kind kind;
    int script;                   /* handshake: script loaded, or -1 for AUTH/SELECT */
    uint64_t deadline;
    bool done;                    /* outcome delivered or cancelled */
    bool evaled;                  /* the NOSCRIPT fallback was used */
    int argc;
    const char **argv;            /* argv[0], argv[1] may point at static/client memory */
    size_t *argvlen;
    char *block;                  /* owns argv, argvlen and copies of the other arguments */
    cache_key_t *key;             /* lookup */
    cache_lookup_cb lookup_cb;
    cache_done_cb done_cb;
    void *arg;
    char *tenant;                 /* bump */
    char **tables;
    int ntables;
    bool is_retry;
    uint64_t fail_seq;
};

typedef struct bypass {
    char *tenant;
    char **tables;                /* tables whose bump failed and is still owed */
    int ntables;
    uint64_t fail_seq;            /* seq of the latest failure for this tenant */
    bool retry_inflight;
    uint64_t next_retry;
    uint32_t backoff_ms;
} bypass_t;

/* A tenant with generation bumps sent but not yet answered. Its lookups are refused meanwhile:
   a lookup on another pooled connection could overtake the INCR and serve a result the
   committed write made stale to a statement that came after the commit. */
typedef struct inflight {
    char *tenant;
    int n;
} inflight_t;

struct cache_client {
    bool enabled;
    char *host;
    int port;
    char *unix_path;
    char *password;
    int db;
    char *prefix;
    char *channel;
    uint32_t timeout_ms;
    uint32_t connect_timeout_ms;
    cache_attach_fn attach;
    void *loop_arg;
    char sha[SCRIPT__COUNT][41];  /* from SCRIPT LOAD; identical on every server */
    int nslots;
    cache_slot_t *slots;
    int rr;
    cache_counters_t counters;
    bypass_t *bypass;
    int nbypass;
    int bypass_cap;
    bool bypass_all;              /* could not record a failed bump (out of memory) */
    inflight_t *inflight;         /* tenants with bumps on the wire */
    int ninflight;
    int inflight_cap;
    uint64_t fail_seq;
};

const char *cache_strerror(int status)
{
    switch (status) {
#define CACHE__STATUS_TEXT(name, val, text) \
    case (val):                             \
        return (text);
        CACHE_STATUS_MAP(CACHE__STATUS_TEXT)
#undef CACHE__STATUS_TEXT
    }
    return "unknown cache status";
}

void cache_config_defaults(cache_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->enabled = false;
    cfg->host = "127.0.0.1";
    cfg->port = 6379;
    cfg->unix_path = NULL;
    cfg->password = NULL;
    cfg->db = 0;
    cfg->key_prefix = "pgshim";
    cfg->timeout_ms = 50;
    cfg->connect_timeout_ms = 1000;
    cfg->pool_size = 2;
    cfg->publish_channel = NULL;
}

uint64_t cache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *dup_or_null(const char *s)
{
    if (s == NULL || *s == '\0')
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------------------- */

/* Allocates a request whose argument vector is argv[0] = cmd, argv[1] = arg1 (both borrowed from
   static or client memory) followed by copies of the n extra arguments. */
static cache_req_t *req_new(cache_client_t *c, enum req_kind kind, const char *cmd,
                            const char *arg1, int n, const char *const *extra,
                            const size_t *extra_len)
{
    cache_req_t *req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    int argc = (arg1 ? 2 : 1) + n;
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += extra_len[i];
    size_t hdr = (size_t)argc * (sizeof(char *) + sizeof(size_t));
    req->block = malloc(hdr + bytes + 1);
    if (req->block == NULL) {
        free(req);
        return NULL;
    }
    req->argv = (const char **)(void *)req->block;
    req->argvlen = (size_t *)(void *)(req->block + (size_t)argc * sizeof(char *));
    char *data = req->block + hdr;
    int a = 0;
    req->argv[a] = cmd;
    req->argvlen[a++] = strlen(cmd);
    if (arg1) {
        req->argv[a] = arg1;
        req->argvlen[a++] = strlen(arg1);
    }
    for (int i = 0; i < n; i++) {
        if (extra_len[i])
            memcpy(data, extra[i], extra_len[i]);
        req->argv[a] = data;
        req->argvlen[a++] = extra_len[i];
        data += extra_len[i];
    }
    req->argc = argc;
    req->c = c;
    req->kind = kind;
    req->script = -1;
    return req;
}

static void req_free(cache_req_t *req)
{
    if (req->tables) {
        for (int i = 0; i < req->ntables; i++)
            free(req->tables[i]);
        free(req->tables);
    }
    free(req->tenant);
    free(req->block);
    free(req);
}

static void req_unlink(cache_req_t *req)
{
    cache_slot_t *s = req->slot;
    if (s == NULL)
        return;
    if (req->prev)
        req->prev->next = req->next;
    else
        s->head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        s->tail = req->prev;
    req->prev = req->next = NULL;
    req->slot = NULL;
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Writes req on the slot's context and links it. On failure the caller still owns req. */
static int req_send(cache_slot_t *s, cache_req_t *req)
{
    if (s->ac == NULL ||
        redisAsyncCommandArgv(s->ac, reply_cb, req, req->argc, req->argv, req->argvlen) != REDIS_OK)
        return CACHE_EDOWN;
    req->slot = s;
    req->next = NULL;
    req->prev = s->tail;
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
    return 0;
}

static void bypass_failed(cache_client_t *c, const char *tenant, char *const *tables, int n);
static void bump_outcome(cache_req_t *req, bool ok);

/* Delivers a failure to the request's owner (once). */
static void req_fail(cache_req_t *req, int status)
{
    if (req->done)
        return;
    req->done = true;
    cache_client_t *c = req->c;
    if (req->kind == REQ_HANDSHAKE)
        return;
    if (status == CACHE_ETIMEOUT)
        c->counters.timeouts++;
    else
        c->counters.errors++;
    switch (req->kind) {
    case REQ_LOOKUP:
        if (req->lookup_cb)
            req->lookup_cb(req->arg, status, req->key, NULL);
        break;
    case REQ_STORE:
        if (req->done_cb)
            req->done_cb(req->arg, status);
        break;
    case REQ_BUMP:
        bump_outcome(req, false);
        if (req->done_cb)
            req->done_cb(req->arg, status);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Slots
 * ------------------------------------------------------------------------------------------- */

static void schedule_retry(cache_slot_t *s, uint64_t now)
{
    s->next_attempt = now + s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

/* Takes the slot out of service and answers every request on it: ETIMEOUT for those past their
   deadline, `status` for the rest. With free_ctx the context is freed here (hiredis then hands
   each request back with NULL, which frees it); without, hiredis is already tearing the context
   down and will do the same. */
static void slot_drop(cache_slot_t *s, int status, bool free_ctx)
{
    redisAsyncContext *ac = s->ac;
    uint64_t now = cache_now_ms();
    if (s->state == SLOT_CONNECTING || s->state == SLOT_READY)
        s->client->counters.errors += (status != CACHE_ECLOSED && s->state == SLOT_CONNECTING);
    s->ac = NULL;
    s->state = SLOT_DOWN;
    s->handshake_left = 0;
    schedule_retry(s, now);
    /* Detach every request before any owner callback runs, so callbacks that issue new
       requests cannot touch this list. */
    cache_req_t *req = s->head;
    s->head = s->tail = NULL;
    while (req != NULL) {
        cache_req_t *next = req->next;
        req->prev = req->next = NULL;
        req->slot = NULL;
        req_fail(req, (status != CACHE_ECLOSED && req->deadline <= now) ? CACHE_ETIMEOUT : status);
        req = next;
    }
    if (free_ctx && ac != NULL)
        redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    cache_slot_t *s = ac->data;
    if (s == NULL || s->ac != ac)
        return;
    if (status != REDIS_OK)
        slot_drop(s, CACHE_EDISCONNECTED, false); /* hiredis frees the context next */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    cache_slot_t *s = ac->data;
    if (s == NULL || s->ac != ac)
        return;
    slot_drop(s, CACHE_EDISCONNECTED, false);
}

static int handshake_send(cache_slot_t *s, cache_req_t *req)
{
    req->deadline = s->deadline;
    int rc = req_send(s, req);
    if (rc != 0) {
        req_free(req);
        return rc;
    }
    s->handshake_left++;
    return 0;
}

static void slot_connect(cache_slot_t *s, uint64_t now)
{
    cache_client_t *c = s->client;
    redisAsyncContext *ac = c->unix_path ? redisAsyncConnectUnix(c->unix_path)
                                         : redisAsyncConnect(c->host, c->port);
    if (ac == NULL || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        c->counters.errors++;
        schedule_retry(s, now);
        return;
    }
    ac->data = s;
    if (c->attach(ac, c->loop_arg) != 0) {
        redisAsyncFree(ac);
        c->counters.errors++;
        schedule_retry(s, now);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->state = SLOT_CONNECTING;
    s->deadline = now + c->connect_timeout_ms;
    s->handshake_left = 0;

    /* hiredis buffers these until the socket connects; they go out as one pipeline. */
    cache_req_t *req;
    if (c->password) {
        size_t len = strlen(c->password);
        const char *pw = c->password;
        req = req_new(c, REQ_HANDSHAKE, "AUTH", NULL, 1, &pw, &len);
        if (req == NULL || handshake_send(s, req) != 0)
            goto fail;
    }
    if (c->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *p = db;
        size_t len = strlen(db);
        req = req_new(c, REQ_HANDSHAKE, "SELECT", NULL, 1, &p, &len);
        if (req == NULL || handshake_send(s, req) != 0)
            goto fail;
    }
    for (int i = 0; i < SCRIPT__COUNT; i++) {
        const char *args[2] = {"LOAD", script_text[i]};
        size_t lens[2] = {4, strlen(script_text[i])};
        req = req_new(c, REQ_HANDSHAKE, "SCRIPT", NULL, 2, args, lens);
        if (req == NULL)
            goto fail;
        req->script = i;
        if (handshake_send(s, req) != 0)
            goto fail;
    }
    return;

fail:
    slot_drop(s, CACHE_EDISCONNECTED, true);
}

static void handshake_reply(cache_req_t *req, redisAsyncContext *ac, redisReply *r)
{
    cache_slot_t *s = req->slot;
    req_unlink(req);
    if (s == NULL || s->ac != ac || s->state != SLOT_CONNECTING)
        return;
    bool ok;
    if (req->script >= 0) {
        ok = r->type == REDIS_REPLY_STRING && r->len == 40;
        if (ok) {
            memcpy(s->client->sha[req->script], r->str, 40);
            s->client->sha[req->script][40] = '\0';
        }
    } else {
        ok = r->type == REDIS_REPLY_STATUS;
    }
    if (!ok) {
        slot_drop(s, CACHE_EREDIS, true);
        return;
    }
    if (--s->handshake_left == 0) {
        s->state = SLOT_READY;
        s->backoff_ms = BACKOFF_MIN_MS;
    }
}

static cache_slot_t *slot_pick(cache_client_t *c)
{
    for (int i = 0; i < c->nslots; i++) {
        int idx = (c->rr + i) % c->nslots;
        cache_slot_t *s = &c->slots[idx];
        if (s->state == SLOT_READY && s->ac != NULL) {
            c->rr = (idx + 1) % c->nslots;
            return s;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------------------- */

static void lookup_reply(cache_req_t *req, redisReply *r)
{
    cache_client_t *c = req->c;
    cache_key_t *k = req->key;
    req->done = true;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)k->ntables + 1)
        goto bad;
    const char *gens[CACHE_MAX_TABLES];
    size_t lens[CACHE_MAX_TABLES];
    for (int i = 0; i < k->ntables; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            goto bad;
        gens[i] = e->str;
        lens[i] = e->len;
    }
    int rc = cache__key_set_gens_n(k, gens, lens);
    if (rc == CACHE_ENOMEM) {
        c->counters.errors++;
        req->lookup_cb(req->arg, CACHE_ENOMEM, k, NULL);
        return;
    }
    if (rc != 0)
        goto bad;
    redisReply *v = r->element[k->ntables];
    if (v->type == REDIS_REPLY_NIL) {
        c->counters.misses++;
        req->lookup_cb(req->arg, CACHE_MISS, k, NULL);
        return;
    }
    if (v->type != REDIS_REPLY_STRING)
        goto bad;
    cache_result_t res;
    if (cache_value_decode(k, (const uint8_t *)v->str, v->len, &res) != 0) {
        c->counters.decode_errors++;
        c->counters.misses++;
        req->lookup_cb(req->arg, CACHE_MISS, k, NULL);
        return;
    }
    c->counters.hits++;
    req->lookup_cb(req->arg, CACHE_HIT, k, &res);
    return;

bad:
    c->counters.errors++;
    req->lookup_cb(req->arg, CACHE_EREDIS, k, NULL);
}

static void store_reply(cache_req_t *req, redisReply *r)
{
    cache_client_t *c = req->c;
    int status;
    req->done = true;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        c->counters.stores++;
        status = CACHE_OK;
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        c->counters.store_skipped++;
        status = CACHE_SKIPPED;
    } else {
        c->counters.errors++;
        status = CACHE_EREDIS;
    }
    if (req->done_cb)
        req->done_cb(req->arg, status);
}

static void bump_reply(cache_req_t *req, redisReply *r)
{
    cache_client_t *c = req->c;
    req->done = true;
    bool ok = r->type == REDIS_REPLY_INTEGER && r->integer == req->ntables;
    if (ok)
        c->counters.invalidations += (uint64_t)req->ntables;
    else
        c->counters.errors++;
    bump_outcome(req, ok);
    if (req->done_cb)
        req->done_cb(req->arg, ok ? CACHE_OK : CACHE_EREDIS);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    cache_req_t *req = privdata;
    redisReply *reply = r;
    cache_slot_t *s = req->slot;

    if (reply == NULL) {
        /* The context is going away. If the slot still thinks it is live, hiredis found the
           connection broken: take the slot down now so the remaining requests are answered
           before their owners can issue new ones on it. */
        if (s != NULL && s->ac == ac) {
            req_unlink(req);
            slot_drop(s, CACHE_EDISCONNECTED, false);
        }
        req_unlink(req);
        req_fail(req, CACHE_EDISCONNECTED);
        req_free(req);
        return;
    }
    if (req->kind == REQ_HANDSHAKE) {
        handshake_reply(req, ac, reply);
        req_free(req);
        return;
    }
    /* The server lost its script cache (SCRIPT FLUSH, failover): resend the same request with
       the script text, once. The request keeps its place and deadline. */
    if (reply->type == REDIS_REPLY_ERROR && !req->evaled && !req->done && s != NULL &&
        s->ac == ac && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        req->evaled = true;
        req->argv[0] = "EVAL";
        req->argvlen[0] = 4;
        req->argv[1] = script_text[req->script];
        req->argvlen[1] = strlen(script_text[req->script]);
        if (redisAsyncCommandArgv(ac, reply_cb, req, req->argc, req->argv, req->argvlen) ==
            REDIS_OK)
            return;
    }
    req_unlink(req);
    if (!req->done) {
        switch (req->kind) {
        case REQ_LOOKUP:
            lookup_reply(req, reply);
            break;
        case REQ_STORE:
            store_reply(req, reply);
            break;
        case REQ_BUMP:
            bump_reply(req, reply);
            break;
        default:
            break;
        }
    }
    req_free(req);
}

/* ---------------------------------------------------------------------------------------------
 * Bypass bookkeeping
 * ------------------------------------------------------------------------------------------- */

static bypass_t *bypass_find(const cache_client_t *c, const char *tenant)
{
    for (int i = 0; i < c->nbypass; i++)
        if (strcmp(c->bypass[i].tenant, tenant) == 0)
            return &c->bypass[i];
    return NULL;
}

static void bypass_remove(cache_client_t *c, bypass_t *b)
{
    for (int i = 0; i < b->ntables; i++)
        free(b->tables[i]);
    free(b->tables);
    free(b->tenant);
    *b = c->bypass[--c->nbypass];
}

/* Records that bumps of these tables failed: the tenant is bypassed until a retry that covers
   every owed table and was sent after the latest failure succeeds. */
static void bypass_failed(cache_client_t *c, const char *tenant, char *const *tables, int n)
{
    bypass_t *b = bypass_find(c, tenant);
    if (b == NULL) {
        if (c->nbypass == c->bypass_cap) {
            int cap = c->bypass_cap ? c->bypass_cap * 2 : 4;
            bypass_t *nb = realloc(c->bypass, (size_t)cap * sizeof *nb);
            if (nb == NULL)
                goto oom;
            c->bypass = nb;
            c->bypass_cap = cap;
        }
        b = &c->bypass[c->nbypass];
        memset(b, 0, sizeof *b);
        b->tenant = dup_or_null(tenant);
        if (b->tenant == NULL && *tenant != '\0')
            goto oom;
        if (b->tenant == NULL) {
            b->tenant = calloc(1, 1);
            if (b->tenant == NULL)
                goto oom;
        }
        b->backoff_ms = BACKOFF_MIN_MS;
        b->next_retry = cache_now_ms();
        c->nbypass++;
    }
    for (int i = 0; i < n; i++) {
        bool have = false;
        for (int j = 0; j < b->ntables && !have; j++)
            have = strcmp(b->tables[j], tables[i]) == 0;
        if (have)
            continue;
        char **nt = realloc(b->tables, (size_t)(b->ntables + 1) * sizeof *nt);
        if (nt == NULL)
            goto oom;
        b->tables = nt;
        b->tables[b->ntables] = dup_or_null(tables[i]);
        if (b->tables[b->ntables] == NULL)
            goto oom;
        b->ntables++;
    }
    b->fail_seq = ++c->fail_seq;
    return;

oom:
    /* Without a record we cannot know when it is safe again: bypass everything for good. */
    c->bypass_all = true;
}

static inflight_t *inflight_find(const cache_client_t *c, const char *tenant)
{
    for (int i = 0; i < c->ninflight; i++)
        if (strcmp(c->inflight[i].tenant, tenant) == 0)
            return &c->inflight[i];
    return NULL;
}

static int inflight_inc(cache_client_t *c, const char *tenant)
{
    inflight_t *f = inflight_find(c, tenant);
    if (f == NULL) {
        if (c->ninflight == c->inflight_cap) {
            int cap = c->inflight_cap ? c->inflight_cap * 2 : 4;
            inflight_t *n = realloc(c->inflight, (size_t)cap * sizeof *n);
            if (n == NULL)
                return CACHE_ENOMEM;
            c->inflight = n;
            c->inflight_cap = cap;
        }
        size_t len = strlen(tenant) + 1;
        char *t = malloc(len);
        if (t == NULL)
            return CACHE_ENOMEM;
        memcpy(t, tenant, len);
        f = &c->inflight[c->ninflight++];
        f->tenant = t;
        f->n = 0;
    }
    f->n++;
    return 0;
}

static void inflight_dec(cache_client_t *c, const char *tenant)
{
    inflight_t *f = inflight_find(c, tenant);
    if (f == NULL || --f->n > 0)
        return;
    free(f->tenant);
    *f = c->inflight[--c->ninflight];
}

static void bump_outcome(cache_req_t *req, bool ok)
{
    cache_client_t *c = req->c;
    inflight_dec(c, req->tenant);
    bypass_t *b = bypass_find(c, req->tenant);
    if (req->is_retry && b != NULL) {
        b->retry_inflight = false;
        if (ok && b->fail_seq == req->fail_seq) {
            bypass_remove(c, b);
            return;
        }
        if (!ok) {
            b->next_retry = cache_now_ms() + b->backoff_ms;
            b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
        }
        /* A newer failure arrived while this retry was in flight: retry again at once. */
        if (ok)
            b->next_retry = 0;
        return;
    }
    if (!ok)
        bypass_failed(c, req->tenant, req->tables, req->ntables);
}

bool cache_tenant_bypassed(const cache_client_t *c, const char *tenant)
{
    return c->bypass_all || bypass_find(c, tenant) != NULL || inflight_find(c, tenant) != NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Public operations
 * ------------------------------------------------------------------------------------------- */

int cache_client_new(const cache_config_t *cfg, cache_attach_fn attach, void *loop_arg,
                     cache_client_t **out)
{
    *out = NULL;
    if (cfg == NULL)
        return CACHE_EINVAL;
    cache_client_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return CACHE_ENOMEM;
    c->enabled = cfg->enabled;
    if (!c->enabled) {
        *out = c;
        return 0;
    }
    if (attach == NULL || cfg->pool_size == 0 || cfg->pool_size > MAX_POOL ||
        cfg->timeout_ms == 0 || cfg->key_prefix == NULL || *cfg->key_prefix == '\0' ||
        ((cfg->unix_path == NULL || *cfg->unix_path == '\0') &&
         (cfg->host == NULL || *cfg->host == '\0' || cfg->port <= 0 || cfg->port > 65535))) {
        free(c);
        return CACHE_EINVAL;
    }
    c->host = dup_or_null(cfg->host);
    c->port = cfg->port;
    c->unix_path = dup_or_null(cfg->unix_path);
    c->password = dup_or_null(cfg->password);
    c->db = cfg->db;
    c->prefix = dup_or_null(cfg->key_prefix);
    c->channel = dup_or_null(cfg->publish_channel);
    c->timeout_ms = cfg->timeout_ms;
    c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1000;
    c->attach = attach;
    c->loop_arg = loop_arg;
    c->nslots = (int)cfg->pool_size;
    c->slots = calloc((size_t)c->nslots, sizeof *c->slots);
    if (c->prefix == NULL || c->slots == NULL || (cfg->host && *cfg->host && !c->host) ||
        (cfg->unix_path && *cfg->unix_path && !c->unix_path) ||
        (cfg->password && *cfg->password && !c->password) ||
        (cfg->publish_channel && *cfg->publish_channel && !c->channel)) {
        cache_client_free(c);
        return CACHE_ENOMEM;
    }
    uint64_t now = cache_now_ms();
    for (int i = 0; i < c->nslots; i++) {
        c->slots[i].client = c;
        c->slots[i].backoff_ms = BACKOFF_MIN_MS;
        slot_connect(&c->slots[i], now);
    }
    *out = c;
    return 0;
}

void cache_client_free(cache_client_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; c->slots && i < c->nslots; i++)
        if (c->slots[i].ac != NULL)
            slot_drop(&c->slots[i], CACHE_ECLOSED, true);
    while (c->nbypass > 0)
        bypass_remove(c, &c->bypass[0]);
    free(c->bypass);
    while (c->ninflight > 0)
        inflight_dec(c, c->inflight[0].tenant);
    free(c->inflight);
    free(c->slots);
    free(c->host);
    free(c->unix_path);
    free(c->password);
    free(c->prefix);
    free(c->channel);
    free(c);
}

static void bypass_retry(cache_client_t *c, bypass_t *b);

void cache_client_tick(cache_client_t *c, uint64_t now_ms)
{
    if (c == NULL || !c->enabled)
        return;
    for (int i = 0; i < c->nslots; i++) {
        cache_slot_t *s = &c->slots[i];
        switch (s->state) {
        case SLOT_READY:
            /* Requests on one connection complete in order, so the oldest decides. A timed-out
               connection is dropped: whatever it was stuck on would delay every later reply. */
            if (s->head != NULL && s->head->deadline <= now_ms)
                slot_drop(s, CACHE_EDISCONNECTED, true);
            break;
        case SLOT_CONNECTING:
            if (s->deadline <= now_ms)
                slot_drop(s, CACHE_ETIMEOUT, true);
            break;
        case SLOT_DOWN:
            if (s->next_attempt <= now_ms)
                slot_connect(s, now_ms);
            break;
        }
    }
    /* Owed bumps go out as soon as a connection is ready (not counted as refusals before). */
    for (int i = 0; i < c->nbypass && cache_client_ready(c) > 0; i++) {
        bypass_t *b = &c->bypass[i];
        if (!b->retry_inflight && b->next_retry <= now_ms)
            bypass_retry(c, b);
    }
}

bool cache_client_enabled(const cache_client_t *c)
{
    return c != NULL && c->enabled;
}

const char *cache_client_prefix(const cache_client_t *c)
{
    return (c && c->prefix) ? c->prefix : "pgshim";
}

int cache_client_ready(const cache_client_t *c)
{
    int n = 0;
    for (int i = 0; c->enabled && i < c->nslots; i++)
        n += c->slots[i].state == SLOT_READY;
    return n;
}

cache_counters_t cache_client_counters(const cache_client_t *c)
{
    return c->counters;
}

/* Common admission for lookups and stores. */
static int admit(cache_client_t *c, const char *tenant, cache_slot_t **s)
{
    if (!c->enabled)
        return CACHE_EDISABLED;
    if (cache_tenant_bypassed(c, tenant)) {
        c->counters.bypassed++;
        return CACHE_EBYPASS;
    }
    *s = slot_pick(c);
    if (*s == NULL) {
        c->counters.down++;
        return CACHE_EDOWN;
    }
    return 0;
}

static int submit(cache_slot_t *s, cache_req_t *req)
{
    req->deadline = cache_now_ms() + s->client->timeout_ms;
    int rc = req_send(s, req);
    if (rc != 0) {
        s->client->counters.down++;
        req_free(req);
    }
    return rc;
}

int cache_lookup(cache_client_t *c, cache_key_t *k, cache_lookup_cb cb, void *arg,
                 cache_req_t **out)
{
    if (out)
        *out = NULL;
    if (k == NULL || k->base == NULL || cb == NULL)
        return CACHE_EINVAL;
    cache_slot_t *s;
    int rc = admit(c, k->tenant, &s);
    if (rc != 0)
        return rc;
    const char *extra[CACHE_MAX_TABLES + 2];
    size_t lens[CACHE_MAX_TABLES + 2];
    char nkeys[16];
    snprintf(nkeys, sizeof nkeys, "%d", k->ntables);
    int n = 0;
    extra[n] = nkeys;
    lens[n++] = strlen(nkeys);
    for (int i = 0; i < k->ntables; i++) {
        extra[n] = k->gen_keys[i];
        lens[n++] = strlen(k->gen_keys[i]);
    }
    extra[n] = k->base;
    lens[n++] = k->base_len;
    cache_req_t *req = req_new(c, REQ_LOOKUP, "EVALSHA", c->sha[SCRIPT_LOOKUP], n, extra, lens);
    if (req == NULL)
        return CACHE_ENOMEM;
    req->script = SCRIPT_LOOKUP;
    req->key = k;
    req->lookup_cb = cb;
    req->arg = arg;
    rc = submit(s, req);
    if (rc == 0 && out)
        *out = req;
    return rc;
}

int cache_store(cache_client_t *c, const cache_key_t *k, uint32_t ttl_s, const uint8_t *describe,
                size_t describe_len, const uint8_t *body, size_t body_len, cache_done_cb cb,
                void *arg)
{
    if (k == NULL || k->base == NULL || !k->have_gens || ttl_s == 0)
        return c->enabled ? CACHE_EINVAL : CACHE_EDISABLED;
    cache_slot_t *s;
    int rc = admit(c, k->tenant, &s);
    if (rc != 0)
        return rc;
    uint8_t *value;
    size_t value_len;
    rc = cache_value_encode(k, describe, describe_len, body, body_len, &value, &value_len);
    if (rc != 0)
        return rc;
    const char *extra[2 * CACHE_MAX_TABLES + 4];
    size_t lens[2 * CACHE_MAX_TABLES + 4];
    char nkeys[16], ttl[16];
    snprintf(nkeys, sizeof nkeys, "%d", k->ntables);
    snprintf(ttl, sizeof ttl, "%u", ttl_s);
    int n = 0;
    extra[n] = nkeys;
    lens[n++] = strlen(nkeys);
    for (int i = 0; i < k->ntables; i++) {
        extra[n] = k->gen_keys[i];
        lens[n++] = strlen(k->gen_keys[i]);
    }
    extra[n] = k->base;
    lens[n++] = k->base_len;
    extra[n] = ttl;
    lens[n++] = strlen(ttl);
    extra[n] = (const char *)value;
    lens[n++] = value_len;
    for (int i = 0; i < k->ntables; i++) {
        extra[n] = k->gens[i];
        lens[n++] = strlen(k->gens[i]);
    }
    cache_req_t *req = req_new(c, REQ_STORE, "EVALSHA", c->sha[SCRIPT_STORE], n, extra, lens);
    free(value);
    if (req == NULL)
        return CACHE_ENOMEM;
    req->script = SCRIPT_STORE;
    req->done_cb = cb;
    req->arg = arg;
    return submit(s, req);
}

/* Builds and sends a bump of (tenant, tables). On an immediate failure returns the code and
   leaves the bypass bookkeeping to the caller. */
static int bump_send(cache_client_t *c, const char *tenant, const char *const *tables, int n,
                     cache_done_cb cb, void *arg, cache_req_t **out)
{
    cache_slot_t *s = slot_pick(c);
    if (s == NULL) {
        c->counters.down++;
        return CACHE_EDOWN;
    }
    const char *extra[CACHE_MAX_BUMP_TABLES + 3];
    size_t lens[CACHE_MAX_BUMP_TABLES + 3];
    char *gen[CACHE_MAX_BUMP_TABLES] = {0};
    char nkeys[16];
    cache_sb_t msg;
    int rc = CACHE_ENOMEM;
    cache__sb_init(&msg);
    cache__sb_put_escaped(&msg, tenant);
    for (int i = 0; i < n; i++) {
        cache__sb_puts(&msg, " ");
        cache__sb_put_escaped(&msg, tables[i]);
    }
    if (msg.failed)
        goto out;
    snprintf(nkeys, sizeof nkeys, "%d", n);
    int a = 0;
    extra[a] = nkeys;
    lens[a++] = strlen(nkeys);
    for (int i = 0; i < n; i++) {
        gen[i] = cache_gen_key(c->prefix, tenant, tables[i]);
        if (gen[i] == NULL)
            goto out;
        extra[a] = gen[i];
        lens[a++] = strlen(gen[i]);
    }
    extra[a] = c->channel ? c->channel : "";
    lens[a] = strlen(extra[a]);
    a++;
    extra[a] = msg.s ? msg.s : "";
    lens[a] = msg.len;
    a++;
    cache_req_t *req = req_new(c, REQ_BUMP, "EVALSHA", c->sha[SCRIPT_BUMP], a, extra, lens);
    if (req == NULL)
        goto out;
    req->script = SCRIPT_BUMP;
    req->done_cb = cb;
    req->arg = arg;
    req->tenant = dup_or_null(tenant);
    if (req->tenant == NULL)
        req->tenant = calloc(1, 1);
    req->tables = calloc((size_t)n, sizeof *req->tables);
    req->ntables = n;
    bool oom = req->tenant == NULL || req->tables == NULL;
    for (int i = 0; !oom && i < n; i++)
        oom = (req->tables[i] = dup_or_null(tables[i])) == NULL;
    if (oom) {
        if (req->tables == NULL)
            req->ntables = 0;
        req_free(req);
        goto out;
    }
    /* Count the bump before it can complete; undo if it never went out. */
    rc = inflight_inc(c, tenant);
    if (rc != 0) {
        req_free(req);
        goto out;
    }
    rc = submit(s, req);
    if (rc != 0)
        inflight_dec(c, tenant);
    if (rc == 0 && out)
        *out = req;
out:
    for (int i = 0; i < n; i++)
        free(gen[i]);
    free(msg.s);
    return rc;
}

int cache_bump(cache_client_t *c, const char *tenant, const char *const *tables, int ntables,
               cache_done_cb cb, void *arg)
{
    if (!c->enabled)
        return CACHE_EDISABLED;
    if (tenant == NULL || tables == NULL || ntables < 1 || ntables > CACHE_MAX_BUMP_TABLES)
        return CACHE_EINVAL;
    for (int i = 0; i < ntables; i++)
        if (tables[i] == NULL || *tables[i] == '\0')
            return CACHE_EINVAL;
    int rc = bump_send(c, tenant, tables, ntables, cb, arg, NULL);
    if (rc != 0) {
        c->counters.errors++;
        bypass_failed(c, tenant, (char *const *)tables, ntables);
    }
    return rc;
}

static void bypass_retry(cache_client_t *c, bypass_t *b)
{
    if (b->ntables == 0 || b->ntables > CACHE_MAX_BUMP_TABLES) {
        /* More owed tables than one script call takes never happens with the legacy set; if it
           did, keeping the bypass is the safe answer. */
        return;
    }
    cache_req_t *req = NULL;
    uint64_t seq = b->fail_seq;
    int rc = bump_send(c, b->tenant, (const char *const *)b->tables, b->ntables, NULL, NULL, &req);
    if (rc != 0) {
        b->next_retry = cache_now_ms() + b->backoff_ms;
        return;
    }
    req->is_retry = true;
    req->fail_seq = seq;
    b->retry_inflight = true;
}

void cache_cancel(cache_client_t *c, cache_req_t *req)
{
    (void)c;
    if (req == NULL)
        return;
    req->done = true;
    req->key = NULL;
}
