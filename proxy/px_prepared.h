/*
 * px_prepared: protocol-level named prepared statements in transaction pooling mode (issue 3),
 * the way PgBouncer 1.21+ does it with max_prepared_statements.
 *
 * A client that logged in to a transaction-mode pool while max_prepared_statements > 0 has its
 * named statements tracked ("ps on"). Three structures:
 *  - a process-wide registry of statements keyed by (query text, parameter type OIDs), each
 *    with a server-side name "PGSHIM_<id>" that is never reused within the process;
 *  - per client: client statement name -> registry entry;
 *  - per server connection: the registry entries prepared on it, bounded by
 *    max_prepared_statements (least recently used first out, never one used since the last Sync).
 * Client Parse/Bind/Describe/Close/DEALLOCATE are rewritten, answered or completed by injected
 * messages, so a client's statement follows it to whatever server the pool gives it.
 *
 * Response ordering: for a ps-on client every message forwarded to the server, and every message
 * pgshim injects, puts one request on the server's FIFO saying what PostgreSQL answers it with.
 * Answers pgshim makes up ("fakes": ParseComplete, CloseComplete, DEALLOCATE's CommandComplete +
 * ReadyForQuery) wait in the FIFO and are sent when everything before them was answered; replies
 * to injected messages are swallowed. An ErrorResponse in the extended protocol ends the head
 * request and drops every request up to the next Sync, as PostgreSQL skips those messages; the
 * client-side effect of a dropped Parse or Close is undone.
 *
 * Invariants:
 *  - A registry entry lives while a client map, a server set or a FIFO request refers to it.
 *  - A server's set never claims a statement the server does not have: anything that may have
 *    dropped statements behind pgshim's back (DISCARD, DEALLOCATE in SQL) clears the set and
 *    marks the server "dirty", after which every Parse pgshim sends there is preceded by a
 *    Close of the same name (Close of a missing statement is not an error).
 *  - Fakes are written to the client only at a server message boundary (s->msg_left == 0).
 *  - A server whose FIFO is not empty is not clean (px_server_is_clean) and is never released.
 */
#ifndef PGSHIM_PROXY_PX_PREPARED_H
#define PGSHIM_PROXY_PX_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pgw.h"

typedef struct px_client px_client_t;
typedef struct px_server px_server_t;
typedef struct px_ps_client px_ps_client_t;
typedef struct px_ps_server px_ps_server_t;

/* Default of max_prepared_statements (PgBouncer >= 1.22 uses the same). */
#define PX_PS_DEFAULT_MAX 200
/* Queries up to this size are read whole to spot DEALLOCATE / DISCARD. */
#define PX_PS_QUERY_LOOK 4096u

/* Whether a client logging in now gets tracking (transaction mode and the option > 0). */
bool px_ps_enabled_for(const px_client_t *c);

/* ------------------------------------------------------------------ client side */

/* Return values of px_ps_client_msg besides a byte count. */
#define PX_PS_PASS 0          /* not handled: forward the message unchanged (normal path) */
#define PX_PS_NEEDMORE (-2)   /* wait for more bytes of this message */
#define PX_PS_CLOSED (-1)     /* the client or server was closed */

/*
 * Handles the message that starts at data (f from pgw_frame_peek; len bytes available) for a
 * ps-on client linked to server c->server, when its type is Parse, Bind, Describe, Close or Query.
 * The caller has already written every earlier byte to the server. Returns the bytes consumed
 * (the whole message, or for a Bind the prefix that was rewritten, with *stream_left set to the
 * rest of the message to stream through unchanged), PX_PS_PASS, PX_PS_NEEDMORE or PX_PS_CLOSED.
 * Does the pending/unsynced accounting of what it writes itself.
 */
ssize_t px_ps_client_msg(px_client_t *c, const pgw_frame_t *f, const uint8_t *data, size_t len,
                         uint32_t *stream_left);

/*
 * A client without a server sent a Query: answers a DEALLOCATE of tracked names without taking
 * a server (ReadyForQuery 'I'). Returns bytes consumed, PX_PS_PASS or PX_PS_NEEDMORE.
 */
ssize_t px_ps_client_idle_query(px_client_t *c, const pgw_frame_t *f, const uint8_t *data,
                                size_t len);

/* The message of type `type` was forwarded unchanged to the client's server: queue what it is
   answered with. `counted_sync` says whether a Sync earns a ReadyForQuery (not during COPY IN). */
void px_ps_note_forward(px_server_t *s, pgw_msg_t type, bool counted_sync);

/* Drops the client's map (client closing). */
void px_ps_client_free(px_client_t *c);

/* ------------------------------------------------------------------ server side */

/* What to do with a server message. */
#define PX_PS_FORWARD 0
#define PX_PS_SWALLOW 1

/*
 * Classifies the server message of type `type` starting now (after any held ReadyForQuery was
 * let go). May write a replacement ErrorResponse to the client (the caller has written every
 * earlier byte). Returns PX_PS_FORWARD, PX_PS_SWALLOW, or -1 when the replies no longer match
 * the FIFO (the caller closes the server).
 */
int px_ps_server_msg(px_server_t *s, pgw_msg_t type);

/* True when the head of the FIFO is an answer pgshim makes up (px_ps_emit_fakes is due). */
bool px_ps_fake_due(const px_server_t *s);
/* True when the next non-async reply from the server answers one of pgshim's own messages. */
bool px_ps_swallows_next(const px_server_t *s);

/* At a server message boundary: writes the fakes at the head of the FIFO to the client. Returns
   true when one of them was a ReadyForQuery (the server may be releasable). */
bool px_ps_emit_fakes(px_server_t *s);

/* True when nothing is owed on the server's FIFO. */
bool px_ps_server_quiet(const px_server_t *s);

/* pgshim sends its own query (SET, reset, check) on the server: a DISCARD in it clears the set. */
void px_ps_server_internal_query(px_server_t *s, const char *sql);

/* The server connection is going away: its set and FIFO die with it. */
void px_ps_server_free(px_server_t *s);

#endif
