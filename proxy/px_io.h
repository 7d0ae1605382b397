/*
 * px_io: one libuv stream (TCP or Unix socket) with an input buffer and a coalescing output
 * queue, shared by client and server connections.
 *
 * Reading: bytes arrive either in a loop-wide scratch buffer (when nothing is pending) or at the
 * end of the connection's own input buffer; ops->on_data is called with all unprocessed bytes
 * and returns how many it consumed. Unconsumed bytes are kept in the connection's own buffer,
 * so idle connections hold no input memory.
 * Writing: px_io_write() copies bytes into the output queue; queues are flushed once per loop
 * iteration (uv_check and uv_prepare), so many small messages become one write, and every buffer
 * handed to uv_write lives until its callback. At most one uv_write is in flight per stream.
 * Closing: px_io_close() stops reading, optionally lets queued bytes drain, then uv_close();
 * ops->on_closed runs from the close callback and is the only place the owner may be freed.
 */
#ifndef PGSHIM_PROXY_PX_IO_H
#define PGSHIM_PROXY_PX_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "px_list.h"

typedef struct px_io px_io_t;

typedef struct px_io_ops {
    /* Processes data[0..len); returns bytes consumed (0 = wait for more or for a state change),
     * or -1 when the connection was closed meanwhile (the bytes are dropped). */
    ssize_t (*on_data)(px_io_t *io, const uint8_t *data, size_t len);
    /* The peer closed (err = UV_EOF) or a read/write failed. The owner must close the io. */
    void (*on_error)(px_io_t *io, int err);
    /* The output queue fell below the low-water mark after being above it. May be NULL. */
    void (*on_drain)(px_io_t *io);
    /* From the uv_close callback: the owner frees itself here. */
    void (*on_closed)(px_io_t *io);
} px_io_ops_t;

/* One libuv handle that is a TCP socket or a Unix-domain pipe, seen as either type. */
typedef union px_stream_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} px_stream_handle_t;

struct px_io {
    px_stream_handle_t h;
    const px_io_ops_t *ops;
    void *owner;
    bool is_tcp;
    bool open;           /* handle initialised (uv_close needed) */
    bool reading;        /* uv_read_start in effect */
    bool want_read;      /* what the owner asked for */
    bool closing;        /* px_io_close called */
    bool close_when_flushed;
    bool in_data_cb;     /* re-entrancy guard for px_io_process */
    bool above_high;     /* output queue passed the high-water mark */
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *obuf;       /* queued, not yet handed to uv_write */
    size_t olen, ocap;
    uint8_t *wbuf;       /* owned by the uv_write in flight */
    size_t wlen, wcap;
    bool writing;
    uv_write_t wreq;
    px_list_t dirty;     /* on the loop's flush list while olen > 0 */
};

/* Sets up the loop-wide flush hooks. Call once after the loop exists. */
void px_io_global_init(uv_loop_t *loop);
/* Initialises bookkeeping; the caller then initialises io->h (uv_tcp_init/uv_pipe_init) and
 * sets io->open. */
void px_io_init(px_io_t *io, const px_io_ops_t *ops, void *owner, bool is_tcp);
/* Asks for reading to be on or off; idempotent. */
void px_io_set_reading(px_io_t *io, bool on);
/* Queues bytes (copied). Returns 0 or -ENOMEM. */
int px_io_write(px_io_t *io, const void *data, size_t len);
/* Bytes queued and in flight. */
size_t px_io_queued(const px_io_t *io);
/* Runs on_data over the buffered input (used when a state change lets an owner consume bytes
 * it left pending). */
void px_io_process(px_io_t *io);
/* Starts closing. With flush, queued output is written first (bounded: a large backlog is
 * dropped). Safe to call more than once. */
void px_io_close(px_io_t *io, bool flush);
/* Frees the buffers; call from on_closed. */
void px_io_release(px_io_t *io);
/* Writes everything queued on every stream now (also done automatically each loop pass). */
void px_io_flush_all(void);
/* "ip:port" or "unix" of the peer into buf. */
void px_io_peer_name(px_io_t *io, char *buf, size_t len);

extern size_t px_io_high_water; /* pause the producer above this many queued bytes */

#endif
