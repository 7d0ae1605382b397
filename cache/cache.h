/*
 * cache: pgshim's Redis result cache for legacy-function calls.
 *
 * What it does: derives keys for a call (tenant, function, canonical arguments, a hash of the
 * output-relevant session settings, optionally the session-local date, and the invalidation
 * generations of the tables the function reads), encodes the result messages into a checked
 * value, and talks to Redis through hiredis's async API: one round trip per lookup (a Lua
 * script reads the generations and the value together), a store that only lands when the
 * generations it saw are still current, and generation bumps after writes. It also holds the
 * in-process single-flight table so concurrent misses of one key compute once.
 *
 * Event loop: cache/ never includes uv.h. Its owner supplies an attach callback that hooks each
 * new redisAsyncContext to the owner's loop (proxy/: redisLibuvAttach), and calls
 * cache_client_tick() from a timer every 10-50 ms: the tick fails requests past timeout_ms,
 * drops a connection that timed out, and reconnects dropped connections with exponential
 * backoff (100 ms doubling to 5 s).
 *
 * Invariants:
 *  - Every asynchronous operation either returns a negative code at once (and never calls its
 *    callback) or returns 0 and calls its callback exactly once, no later than timeout_ms plus
 *    one tick interval after it was issued (unless cancelled with cache_cancel()).
 *  - Nothing is queued for a Redis that is not connected: a call made while no pooled
 *    connection is ready returns CACHE_EDOWN at once.
 *  - A value is served only when it decodes completely: magic, version, tenant, function,
 *    settings hash, key hash, checksum and the framing of every stored backend message all
 *    check; anything else is a miss (counted in decode_errors). A client can never receive
 *    another tenant's result, because the tenant is both in the key and checked in the value.
 *  - A store lands only if the table generations are still the ones the lookup saw, so a result
 *    computed while a write committed is never stored as current.
 *  - A failed generation bump puts the tenant in bypass (lookups and stores refused with
 *    CACHE_EBYPASS) until a background retry of the failed bumps succeeds. While a bump of a
 *    tenant is on the wire its lookups are refused the same way, because a lookup sent on
 *    another pooled connection could overtake the INCR.
 *
 * Read-your-writes across pgshims (issue 7, guarantee 1): after a write commits, the owner
 * should call cache_bump() and hold the commit's ReadyForQuery until the bump's callback fires
 * (at most timeout_ms plus a tick): then any statement the application sends afterwards, through
 * any pgshim sharing the Redis, sees the new generation.
 *
 * Threading: a client and a flight table belong to one thread (one loop). Callbacks run from
 * inside hiredis callbacks, cache_client_tick() or cache_client_free(); they may issue new
 * cache operations but must not free the client.
 *
 * Redis requirements: standalone Redis >= 2.6 (EVAL); not Redis Cluster (the lookup script reads
 * a key it does not declare). Generation keys carry no TTL; use a maxmemory policy that never
 * evicts keys without a TTL (noeviction or volatile-*), because losing a generation key would
 * make older values reachable again.
 */
#ifndef PGSHIM_CACHE_CACHE_H
#define PGSHIM_CACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>

#define CACHE_MUST_USE __attribute__((warn_unused_result))

/* ---------------------------------------------------------------------------------------------
 * Status codes. Non-negative codes are outcomes, negative codes are failures.
 * ------------------------------------------------------------------------------------------- */
#define CACHE_STATUS_MAP(XX)                                                      \
    XX(OK, 0, "ok")                                                               \
    XX(HIT, 1, "hit")                                                             \
    XX(MISS, 2, "miss")                                                           \
    XX(SKIPPED, 3, "store skipped: a generation changed since the lookup")        \
    XX(EDOWN, -1, "redis not connected")                                          \
    XX(ETIMEOUT, -2, "redis timed out")                                           \
    XX(EDISCONNECTED, -3, "redis connection lost")                                \
    XX(EREDIS, -4, "redis error or unexpected reply")                             \
    XX(EBYPASS, -5, "tenant bypasses the cache after a failed invalidation")      \
    XX(EDISABLED, -6, "cache disabled")                                           \
    XX(ENOMEM, -7, "out of memory")                                               \
    XX(EINVAL, -8, "invalid argument")                                            \
    XX(EDECODE, -9, "stored value failed to decode")                              \
    XX(ECLOSED, -10, "cache client closed")                                       \
    XX(EABANDONED, -11, "computation abandoned")

typedef enum cache_status {
#define CACHE__STATUS_ENUM(name, val, text) CACHE_##name = (val),
    CACHE_STATUS_MAP(CACHE__STATUS_ENUM)
#undef CACHE__STATUS_ENUM
} cache_status_t;

/* Static text for a CACHE_* code; never NULL. */
const char *cache_strerror(int status);

/* ---------------------------------------------------------------------------------------------
 * Configuration ([redis] section)
 * ------------------------------------------------------------------------------------------- */
typedef struct cache_config {
    bool enabled;                 /* default false */
    const char *host;             /* default "127.0.0.1" */
    int port;                     /* default 6379 */
    const char *unix_path;        /* non-empty: connect to this Unix socket instead of host:port */
    const char *password;         /* non-empty: AUTH on every connection */
    int db;                       /* SELECT when non-zero; default 0 */
    const char *key_prefix;       /* default "pgshim"; must not be empty */
    uint32_t timeout_ms;          /* per-request budget, default 50 */
    uint32_t connect_timeout_ms;  /* connect + handshake budget, default 1000 */
    uint32_t pool_size;           /* async connections used round robin, default 2, max 64 */
    const char *publish_channel;  /* non-empty: PUBLISH "tenant table..." on every bump */
} cache_config_t;

/* Fills the defaults listed above (strings point to static storage). */
void cache_config_defaults(cache_config_t *cfg);

/* ---------------------------------------------------------------------------------------------
 * Hashing helpers (64-bit FNV-1a; not cryptographic: detects corruption, not forgery).
 * ------------------------------------------------------------------------------------------- */
#define CACHE_FNV_INIT 0xcbf29ce484222325ull
uint64_t cache_fnv1a(uint64_t h, const void *p, size_t n);
/* Checksum of stored values: 8 bytes per step (FNV-1a's byte loop costs tens of microseconds
   on a 50 KB result, on every hit). Same purpose: corruption, not forgery. Start with
   CACHE_FNV_INIT; chained calls hash the concatenation only when every call but the last
   passes a multiple of 8 bytes. */
uint64_t cache_sum64(uint64_t h, const void *p, size_t n);

/* Hash of the output-relevant session settings (name/value pairs, in the caller's fixed order;
   a NULL value hashes differently from ""). Pass the result as cache_key_spec_t.settings_hash. */
uint64_t cache_settings_hash(const char *const *names, const char *const *values, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Keys
 *
 * Layout (all text, so `redis-cli --scan` is readable):
 *   <prefix>:v3:<tenant>:<function>:<variant>:<args>:<settings hash hex>[:d<date>]    the base
 *   <base>:<gen 1>:...:<gen n>                                                        the value key
 *   <prefix>:gen:<tenant>:<table>                                                     a generation
 * tenant, function, variant, table and date are percent-encoded (':' '%' '{' '}' space and
 * bytes outside 0x21-0x7e), so no field can spill into the next. <args> is the argument count,
 * then per argument ",~" for NULL or ",<type>#<length>'<bytes>", so ('a,b') and ('a','b')
 * cannot collide and the argument bytes need no escaping.
 * ------------------------------------------------------------------------------------------- */
#define CACHE_MAX_TABLES 8
#define CACHE_MAX_BUMP_TABLES 32  /* one cache_bump (a write may touch every legacy table) */
#define CACHE_MAX_ARGS 16
#define CACHE_GEN_MAX 24          /* decimal generation incl. NUL */

typedef struct cache_arg {
    const char *val;              /* canonical text of the value; ignored when is_null */
    size_t len;
    bool is_null;
    int type;                     /* caller's type tag (e.g. rw_type_t); part of the key */
} cache_arg_t;

typedef struct cache_key_spec {
    const char *tenant;           /* database name as the client sent it; required */
    const char *function;         /* registered function name; required */
    const char *variant;          /* anything else that changes the result messages (call shape,
                                     column alias, resolved result type); NULL = "" */
    const cache_arg_t *args;
    int nargs;                    /* <= CACHE_MAX_ARGS */
    uint64_t settings_hash;       /* cache_settings_hash() of the session */
    const char *date;             /* time-dependent functions: current date in the session time
                                     zone ("2026-11-23"); NULL for the others */
    const char *const *tables;    /* tables the function reads, in a fixed order per function */
    int ntables;                  /* 1..CACHE_MAX_TABLES */
} cache_key_spec_t;

/* A derived key. Owned by the caller; all strings are heap copies freed by cache_key_clear().
   A zero-initialised cache_key_t is valid to clear. */
typedef struct cache_key {
    char *base;                   /* NUL-terminated base (see layout) */
    size_t base_len;
    char *tenant;                 /* copies for the value header check */
    char *function;
    uint64_t settings_hash;
    uint64_t base_hash;           /* cache_fnv1a of base; stored in and checked against values */
    int ntables;
    char *gen_keys[CACHE_MAX_TABLES];
    /* Filled by a lookup that reached Redis (hit or miss); a store needs them. */
    bool have_gens;
    char gens[CACHE_MAX_TABLES][CACHE_GEN_MAX];
    char *full;                   /* base + ":" + gens, NUL-terminated; NULL until have_gens.
                                     This is the single-flight key. */
    size_t full_len;
} cache_key_t;

/* Builds *k (which must be zeroed or cleared) from spec. Returns 0, CACHE_EINVAL for a missing
   field or a count out of range, CACHE_ENOMEM. On failure *k is left cleared. */
int cache_key_build(cache_key_t *k, const char *prefix, const cache_key_spec_t *spec) CACHE_MUST_USE;
/* Records generations (as a lookup does) and builds k->full; gens[i] are decimal strings.
   Returns 0, CACHE_EINVAL (not decimal / too long) or CACHE_ENOMEM. */
int cache_key_set_gens(cache_key_t *k, const char *const *gens) CACHE_MUST_USE;
void cache_key_clear(cache_key_t *k);
/* Generation key of (tenant, table) into a malloc'd string the caller frees; NULL on ENOMEM. */
char *cache_gen_key(const char *prefix, const char *tenant, const char *table);

/* ---------------------------------------------------------------------------------------------
 * Values: "PGSC" header + payload. The payload is the result messages: an optional
 * RowDescription ("describe"), then NoticeResponses and DataRows ending in CommandComplete, or
 * NoticeResponses ending in an ErrorResponse ("body"). ReadyForQuery is never stored.
 * ------------------------------------------------------------------------------------------- */
#define CACHE_VALUE_VERSION 3  /* 2: cache_sum64 checksum; 3: fn_get_bulist NOTICE with its context fields, no stored errors */
#define CACHE_VALUE_HEADER 44

typedef struct cache_result {
    const uint8_t *describe;      /* RowDescription message, or NULL/0 when none was stored */
    size_t describe_len;
    const uint8_t *body;          /* the remaining messages */
    size_t body_len;
    bool failed;                  /* body ends in ErrorResponse */
    uint32_t nrows;               /* DataRows in body */
} cache_result_t;

/* Checks that describe+body are storable result messages (see above; every message frames
   and validates, DataRows match the RowDescription's column count). Fills *out with views of
   the inputs when out is non-NULL. Returns 0 or CACHE_EDECODE. */
int cache_payload_check(const uint8_t *describe, size_t describe_len, const uint8_t *body,
                        size_t body_len, cache_result_t *out) CACHE_MUST_USE;

/* Encodes a value for key k into a malloc'd buffer (*out, *out_len; caller frees). Returns 0,
   CACHE_EINVAL when the payload fails cache_payload_check, CACHE_ENOMEM. */
int cache_value_encode(const cache_key_t *k, const uint8_t *describe, size_t describe_len,
                       const uint8_t *body, size_t body_len, uint8_t **out,
                       size_t *out_len) CACHE_MUST_USE;
/* Decodes and validates a stored value against key k. *out holds views into v. Returns 0 or
   CACHE_EDECODE. */
int cache_value_decode(const cache_key_t *k, const uint8_t *v, size_t len,
                       cache_result_t *out) CACHE_MUST_USE;

/* ---------------------------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------------------------- */
typedef struct cache_client cache_client_t;
typedef struct cache_req cache_req_t;

/* Hooks a freshly created context to the owner's event loop. Returns 0 (REDIS_OK) on success;
   anything else makes the connection attempt fail (and back off). */
typedef int (*cache_attach_fn)(redisAsyncContext *ac, void *loop_arg);

typedef struct cache_counters {
    uint64_t hits;
    uint64_t misses;              /* includes decode errors */
    uint64_t stores;
    uint64_t store_skipped;       /* generation changed between lookup and store */
    uint64_t invalidations;       /* generation keys bumped */
    uint64_t errors;              /* Redis error replies, unexpected replies, lost requests,
                                     failed connection attempts, failed bumps */
    uint64_t down;                /* calls refused at once because no connection was ready */
    uint64_t timeouts;
    uint64_t decode_errors;
    uint64_t bypassed;            /* lookups/stores refused because the tenant is in bypass */
} cache_counters_t;

/* Milliseconds on CLOCK_MONOTONIC: the clock deadlines are kept on. Pass it (or uv_now(), which
   reads the same clock) to cache_client_tick(). */
uint64_t cache_now_ms(void);

/* Creates a client and starts connecting its pool (cfg strings are copied). attach is called
   once per connection attempt. A disabled config gives a client whose calls all return
   CACHE_EDISABLED. Returns 0, CACHE_EINVAL or CACHE_ENOMEM. */
int cache_client_new(const cache_config_t *cfg, cache_attach_fn attach, void *loop_arg,
                     cache_client_t **out) CACHE_MUST_USE;
/* Fails every pending request (callbacks fire with CACHE_ECLOSED or CACHE_EDISCONNECTED), frees
   every connection and the client. The owner's loop must run afterwards so the adapter can
   close its handles. Must not be called from a cache callback. */
void cache_client_free(cache_client_t *c);
/* Timer hook: times out requests, drops timed-out connections, reconnects with backoff,
   retries failed generation bumps. now_ms from cache_now_ms(). */
void cache_client_tick(cache_client_t *c, uint64_t now_ms);

bool cache_client_enabled(const cache_client_t *c);
const char *cache_client_prefix(const cache_client_t *c);
/* Number of pooled connections ready for commands right now. */
int cache_client_ready(const cache_client_t *c);
/* A copy of the counters. */
cache_counters_t cache_client_counters(const cache_client_t *c);
/* True while a failed bump keeps this tenant off the cache, or a bump of it is in flight. */
bool cache_tenant_bypassed(const cache_client_t *c, const char *tenant);

/* Lookup: fires with CACHE_HIT (res holds views valid only during the callback), CACHE_MISS
   (res NULL; also after a value that failed to decode), or a negative code (res NULL). On HIT
   and MISS the key's generations are recorded (k->have_gens, k->full) for a later store and for
   single-flight. */
typedef void (*cache_lookup_cb)(void *arg, int status, cache_key_t *k, const cache_result_t *res);
/* Generic completion: stores (CACHE_OK or CACHE_SKIPPED) and bumps (CACHE_OK). */
typedef void (*cache_done_cb)(void *arg, int status);

/* Looks k up. k must stay valid until the callback fires (or cache_cancel). Returns 0 (callback
   will fire), or at once without a callback: CACHE_EDISABLED, CACHE_EBYPASS, CACHE_EDOWN,
   CACHE_ENOMEM. *req (optional) receives a handle for cache_cancel, valid until the callback. */
int cache_lookup(cache_client_t *c, cache_key_t *k, cache_lookup_cb cb, void *arg,
                 cache_req_t **req) CACHE_MUST_USE;

/* Stores the result messages for k (which must carry generations from a lookup) with a TTL in
   seconds. The value is encoded and copied; k and the payload may be freed on return. cb may be
   NULL. Returns 0 (cb fires, if given), or at once: CACHE_EDISABLED, CACHE_EBYPASS, CACHE_EDOWN,
   CACHE_EINVAL (no generations, ttl 0, malformed payload), CACHE_ENOMEM. */
int cache_store(cache_client_t *c, const cache_key_t *k, uint32_t ttl_s, const uint8_t *describe,
                size_t describe_len, const uint8_t *body, size_t body_len, cache_done_cb cb,
                void *arg) CACHE_MUST_USE;

/* Bumps the generation of each (tenant, table) (INCR, in one script, plus PUBLISH when
   configured). Call after a write to those tables committed. On any failure, including an
   immediate CACHE_EDOWN return, the tenant enters bypass and the client retries the bump in the
   background until it succeeds. ntables is 1..CACHE_MAX_BUMP_TABLES (more than a key reads: one
   bump may cover every table of a tenant). cb may be NULL. Returns 0 (cb fires, if given), or at
   once: CACHE_EDISABLED, CACHE_EDOWN, CACHE_EINVAL, CACHE_ENOMEM. */
int cache_bump(cache_client_t *c, const char *tenant, const char *const *tables, int ntables,
               cache_done_cb cb, void *arg) CACHE_MUST_USE;

/* Cancels a pending request: its callback will not fire. The request itself completes (and is
   freed) in the background. For a lookup, the key is no longer touched. */
void cache_cancel(cache_client_t *c, cache_req_t *req);

/* ---------------------------------------------------------------------------------------------
 * Single-flight: concurrent misses of one key in one process compute once.
 *
 * After a miss, call cache_flight_begin with k->full. CACHE_FLIGHT_LEAD: you compute, then call
 * cache_flight_finish (with the result messages) or cache_flight_abandon (native failed; pass
 * through); exactly one of them, always. CACHE_FLIGHT_WAIT: your callback fires once, when the
 * leader finishes (CACHE_OK with the result: views valid during the callback only) or abandons
 * (CACHE_EABANDONED: compute or pass through yourself), unless you cancel the wait first.
 * ------------------------------------------------------------------------------------------- */
typedef struct cache_flights cache_flights_t;
typedef struct cache_flight cache_flight_t;
typedef struct cache_waiter cache_waiter_t;

typedef void (*cache_flight_cb)(void *arg, int status, const cache_result_t *res);

#define CACHE_FLIGHT_LEAD 1
#define CACHE_FLIGHT_WAIT 2

cache_flights_t *cache_flights_new(void);
/* Every flight must be finished or abandoned first; remaining waiters get CACHE_EABANDONED. */
void cache_flights_free(cache_flights_t *t);
/* Returns CACHE_FLIGHT_LEAD with *flight set, CACHE_FLIGHT_WAIT with *waiter set (cb/arg
   registered), or CACHE_ENOMEM. key is copied. */
int cache_flight_begin(cache_flights_t *t, const void *key, size_t key_len, cache_flight_cb cb,
                       void *arg, cache_flight_t **flight, cache_waiter_t **waiter) CACHE_MUST_USE;
/* Leader done: waiters get CACHE_OK and the messages (which must pass cache_payload_check,
   otherwise waiters get CACHE_EABANDONED). The flight is freed; the key is free for a new flight. */
void cache_flight_finish(cache_flights_t *t, cache_flight_t *f, const uint8_t *describe,
                         size_t describe_len, const uint8_t *body, size_t body_len);
void cache_flight_abandon(cache_flights_t *t, cache_flight_t *f);
/* Withdraws a waiter (its client went away); its callback will not fire. */
void cache_flight_cancel(cache_flights_t *t, cache_waiter_t *w);
/* Flights in progress and waiters registered (for stats and tests). */
size_t cache_flights_active(const cache_flights_t *t);
size_t cache_flights_waiting(const cache_flights_t *t);

#endif /* PGSHIM_CACHE_CACHE_H */
