/*
 * px_native: pgshim's own non-blocking libpq connections that the native implementations of
 * rewrite/ (rw_exec_*) read the tables through, driven on the libuv loop.
 *
 * Connections are grouped per native database: (host, port, server database, server user) of a
 * pool's [databases] entry. Each group keeps at most px_native_max_conns connections, opened on
 * demand with the session settings of rw_native_settings and application_name=pgshim-native, a
 * FIFO of jobs waiting for a free connection, and the per-database facts rw_dbinfo_t learnt by
 * the first exec (handed to every later exec, so the facts cost one round trip per group).
 *
 * A job is one rw_exec_t run to completion: every RW_EXEC_QUERY step becomes one query on the
 * job's connection (prepared once per connection under rw_exec_stmt_name, else an unnamed
 * PQsendQueryParams). Invariants: a job's callback fires exactly once unless the job was
 * abandoned (then never); a step slower than px_native_step_timeout_ms, a broken connection or a
 * failed login turns into RW_EXEC_FALLBACK with RW_REASON_NATIVE_QUERY and the connection is
 * closed (the next job opens a new one); no error from a native connection ever reaches a client.
 *
 * Optional in-memory data per native database (native_butree_ttl > 0), "memos": the BU tree
 * (bt, typeassist), the capability query's whole answer (capability) and the group memberships
 * (pgbelonging) of the job functions. ARCHITECTURE.md "Native data access": a memo is never used
 * after a write to one of its tables that pgshim saw may have committed (px_native_note_writes),
 * and is at most native_butree_ttl old otherwise (px_native_tables_changed drops it earlier when
 * a write that bypassed pgshim is notified).
 */
#ifndef PGSHIM_PROXY_PX_NATIVE_H
#define PGSHIM_PROXY_PX_NATIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "px_proxy.h"
#include "rw.h"
#include "rw_writes.h"

typedef struct px_native_job px_native_job_t;

/* Fires once when the exec reached RW_EXEC_DONE or RW_EXEC_FALLBACK (reason: rw_exec_reason, or
   RW_REASON_NATIVE_QUERY when the connection failed or timed out, in *reason). `ex` is borrowed:
   the job frees it right after the callback returns. */
typedef void (*px_native_done_cb)(void *arg, rw_exec_t *ex, rw_exec_status_t st,
                                  rw_reason_t reason);

/* Tunables (defaults in native.c); read when a connection or step starts. */
extern int px_native_max_conns;            /* connections per native database (4) */
extern uint64_t px_native_step_timeout_ms; /* one query (or the login) at most this long (5000) */

/*
 * Starts running `ex` (ownership passes to pgshim in every case) for a client of `pool`.
 * Returns:
 *   1 when the exec finished without a query (DONE or FALLBACK): *st and *reason are set, the
 *     callback does not fire, and the caller owns `ex` again (must rw_exec_free it);
 *   0 when a job was started: *job is set, the callback fires later (never from inside this call);
 *   -1 when natives are unavailable for this pool (no password known, login failing, out of
 *     memory): *reason is set and `ex` was freed.
 */
int px_native_run(px_pool_t *pool, rw_fn_t fn, rw_exec_t *ex, px_native_done_cb cb, void *arg,
                  px_native_job_t **job, rw_exec_status_t *st, rw_reason_t *reason);

/* In-memory data per native database (see the top of this file), used while younger than this
   many ms and rebuilt in the background from half that age; 0 (the default) disables it. */
extern uint64_t px_native_butree_ttl_ms;
/* Tables whose writes intercept.c reports through px_native_note_writes. A memo is only held
   when every table it depends on is in this set, so that no write pgshim sees can leave it stale.
   intercept.c reports writes of every legacy table (note_native_writes: Query, Parse, and Binds
   of named statements that write) and sets this to RW_TABLES_ALL when a configuration applies;
   the default before that is the BU tree's tables. */
extern rw_tableset_t px_native_reported_tables;
/* Client c of pool sent a statement that may write `tables`: the database's memos depending on
   them are dropped now, and not used or rebuilt until c's transaction is over (then they are
   dropped once more, since that is when the write may have committed). */
void px_native_note_writes(px_pool_t *pool, px_client_t *c, rw_tableset_t tables);
/* The same for a write to bt or typeassist. */
void px_native_note_write(px_pool_t *pool, px_client_t *c);
/* c is going away: it is no longer a writer (its transaction ends with it). */
void px_native_client_gone(px_client_t *c);
/* Tables (rw_tableset_t bits) of server database dbname (NULL: every database) changed outside
   pgshim's sight, e.g. reported by a NOTIFY listener: memos depending on them are dropped now
   and a build that was already running is discarded. */
void px_native_tables_changed(const char *dbname, uint32_t tables);

/* The caller no longer wants the result (client gone): the callback will not fire; the job still
   finishes on its connection (so the connection stays usable) and is freed then. */
void px_native_abandon(px_native_job_t *job);

/* Closes every native connection (shutdown). Jobs still running are abandoned silently. */
void px_native_shutdown(void);

/* Number of native connections open or opening, for logs and tests. */
int px_native_nconns(void);

/* ---------------------------------------------------------------------------------------------
 * Client-path hooks (intercept.c), called by client.c.
 * ------------------------------------------------------------------------------------------- */

/* Returned by px_intercept_client_data: the message goes down the normal path. */
#define PX_ICPT_CONTINUE ((ssize_t)-2)

/*
 * At a message boundary of a logged-in client (c->msg_left == 0, data = unconsumed input):
 * returns PX_ICPT_CONTINUE (normal path), 0 (wait: the message is incomplete or a native call
 * for it is running; reading is paused meanwhile), or the number of bytes consumed (the message
 * was answered by pgshim).
 */
ssize_t px_intercept_client_data(px_client_t *c, const uint8_t *data, size_t len);
/* True when forwarding must stop before a message of this type so that the hook sees it at the
   front of the input. */
bool px_intercept_stop_before(const px_client_t *c, pgw_msg_t type);
/* client.c starts forwarding the message at the front of the client's input. */
void px_intercept_note_forward(px_client_t *c);
/* True while the client's input must not be read (a native call for it is running). */
bool px_intercept_blocks_reading(const px_client_t *c);
/* The client is going away: forget its state and abandon its running call. */
void px_intercept_client_gone(px_client_t *c);

/* The configuration `cfg` became the running one (start, reload): applies native_pool_size and
   native_query_timeout, and re-reads caps_query_file into rw_set_caps_query (a file that cannot
   be read or parsed is logged and the previous text kept). */
void px_intercept_config_applied(const px_config_t *cfg);

/* Shadow mode (intercept.c): runs the native version of a passed-through call and compares it
   with PostgreSQL's reply captured from the client's server. */
void px_intercept__shadow_start(px_client_t *c, const rw_call_t *call, rw_fn_t fn,
                                const pgw_frame_t *query);
/* Bytes the client's server sends to the client (called by server.c before forwarding them). */
void px_intercept_server_data(px_client_t *c, const uint8_t *data, size_t len);

#endif
