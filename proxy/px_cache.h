/*
 * px_cache: pgshim's use of the Redis result cache (cache/) on the libuv loop: the [redis]
 * configuration, the one cache client of the process (created lazily once the loop runs, ticked
 * by a 10 ms timer), cache-mode calls (key from the recognised call, lookup, store after a native
 * answer) and the write tracking that bumps table generations when a write commits.
 *
 * Invariants: no cache failure ever reaches a client (every negative result means "answer
 * natively"); a client's recorded write set is invalidated at every ReadyForQuery 'I' that
 * follows it (a rollback over-invalidates, which is safe), before that ReadyForQuery is
 * forwarded: by its tables' generations, or, for row writes with the scoped NOTIFY triggers
 * usable, by waiting until the listener applied the commit's notifications; the set is kept
 * until no reply is outstanding, so a later pipelined write is never forgotten.
 */
#ifndef PGSHIM_PROXY_PX_CACHE_H
#define PGSHIM_PROXY_PX_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "px_proxy.h"
#include "rw.h"

/* [redis] section as loaded; owned by its px_config_t (px_redis_conf_free). */
typedef struct px_redis_conf {
    cache_config_t cfg;      /* strings point into the fields below or static defaults */
    char *host, *unix_path, *password, *key_prefix;
    bool notify;             /* LISTEN for the etc/pgshim-notify.sql triggers (default on) */
    char *notify_channel;    /* NULL: PX_NOTIFY_CHANNEL_DEFAULT */
} px_redis_conf_t;

#define PX_NOTIFY_CHANNEL_DEFAULT "pgshim_invalidate"
/* "<table>@<scope>=<decimal>" incl. NUL: a scoped generation's name. */
#define PX_SCOPE_NAME_MAX 64


/* One `name = value` line of [redis] into *conf (allocated on first use). Returns 0, or -1 with
   a message in why. */
int px_redis_config_line(px_redis_conf_t **conf, const char *name, const char *value, char *why,
                         size_t whylen);
void px_redis_conf_free(px_redis_conf_t *conf);
/* The configuration became the running one: the first [redis] seen is used (changes need a
   restart, logged). */
void px_cache_config_applied(const px_redis_conf_t *conf);

/* The loop exists: creates the cache client (when [redis] enabled) so it connects now. */
void px_cache_start(void);
/* The process's cache client (created on first use once the loop runs), NULL when the cache is
   off. Borrowed. */
cache_client_t *px_cache_client(void);
/* The running [redis] configuration, NULL when none. Borrowed, process lifetime. */
const px_redis_conf_t *px_cache_conf(void);

/* ------------------------------------------------------------------ cache-mode calls */

typedef struct px_cache_call px_cache_call_t;

/* Called once with CACHE_HIT (res valid during the callback only), CACHE_MISS (res NULL) or a
   negative code (res NULL): answer natively. */
typedef void (*px_cache_lookup_cb)(void *arg, int status, const cache_result_t *res);

/* Builds the key of `call` for tenant and starts its lookup. Returns a handle (cb fires later,
   exactly once unless px_cache_call_free cancels it), or NULL with *status < 0 (cache disabled,
   tenant bypassed, Redis down, no memory): answer natively at once, cb never fires. */
px_cache_call_t *px_cache_call_start(const char *tenant, const rw_call_t *call,
                                     px_cache_lookup_cb cb, void *arg, int *status);
/* Stores the native answer under the looked-up key with the tenant/function TTL (skipped by the
   cache if a generation moved meanwhile). Counts the store in stats. */
void px_cache_call_store(px_cache_call_t *cc, const uint8_t *describe, size_t dlen,
                         const uint8_t *body, size_t blen);
/* Frees the handle; a lookup still pending is cancelled (its callback will not fire). NULL ok. */
void px_cache_call_free(px_cache_call_t *cc);

/* ------------------------------------------------------------------ writes */

/* A Query or Parse (sql, len bytes, NUL-terminated when complete; `whole` false when only a
   prefix is known) is about to go to the server: remember the legacy tables it may write. */
void px_cache_note_statement(px_client_t *c, const char *sql, size_t len, bool whole);
/* A Parse (statement `name`, "" = unnamed) of sql (whole, or only a prefix) goes to the server: its write tables are
   remembered for the statement too, so every later Bind of it counts as a write. */
void px_cache_note_parse(px_client_t *c, const char *name, size_t namelen, const char *sql,
                         size_t len, bool whole);
/* A Bind of statement `name` goes to the server. */
void px_cache_note_bind(px_client_t *c, const char *name, size_t namelen);
/* The client's server sent ReadyForQuery with status st (pending_after replies still expected
   after it). Returns true when it must not be forwarded yet: the client's writes ended and their
   generation bump is in flight; the server's buffered input is processed again when the bump
   ends (at most timeout_ms plus a tick later), and the same ReadyForQuery then goes through.
   Must be asked before the ReadyForQuery changes any state. */
bool px_cache_hold_ready(px_client_t *c, uint8_t st, int pending_after);
/* The client is going away. */
void px_cache_client_gone(px_client_t *c);
/* Process exit. */
void px_cache_shutdown(void);

/* ------------------------------------------------------------------ NOTIFY invalidation
 * (cachenotify.c): writes that bypass pgshim. Per tenant with a function in cache mode, one
 * LISTEN connection on `[redis] notify_channel` (credentials of a pool of that database, like the
 * native connections); each notification bumps the generations named in its payload: a table,
 * or a table's scopes (any other payload: every legacy table of the tenant). A tenant is trusted
 * only while its LISTEN is up and the bump of every table that followed the (re)connect has been
 * answered, since notifications sent while nobody listened are lost. With notify off every
 * tenant is trusted. */

/* Called once the cache client exists: starts the 100 ms timer that opens, watches and
   reconnects LISTEN connections (at once after losing one that was up, then with backoff
   100 ms doubling to 5 s). */
void px_notify_start(void);
/* True when tenant's results may be served and stored. False starts its LISTEN connection if
   none exists yet (the caller answers natively meanwhile). Never blocks. */
bool px_notify_trusted(const char *tenant);
/* Commits through pgshim (issue 7, guarantee 1 without table-level bumps). When the tenant's
   LISTEN is up and trusted and the scoped triggers were not found missing by a recent sync,
   queues a waiter and returns its handle: cb fires exactly once, with seen = true after a
   "sync <n>" token sent on the LISTEN connection after this call came back and every bump of
   the notifications delivered before it completed (so every notification of a transaction that
   committed before the call has been applied in Redis), or with seen = false (the triggers are
   not the scoped ones, the connection dropped, timeout_ms passed, shutdown): then the caller
   must invalidate by table. One sync covers every waiter queued while the previous one was on
   the wire. Returns NULL (cb never fires) when no sync can help. */
typedef struct px_notify_sync px_notify_sync_t;
typedef void (*px_notify_sync_cb)(void *arg, bool seen);
px_notify_sync_t *px_notify_sync(const char *tenant, px_notify_sync_cb cb, void *arg);
/* Fails waiters past their deadline; called from the cache's 10 ms timer. */
void px_notify_sync_tick(void);
/* Closes every LISTEN connection and frees the records; after cache_client_free (whose
   callbacks may still reach this module). */
void px_notify_shutdown(void);

#endif
