/*
 * Buffered stream I/O for client and server connections (see px_io.h for the contract).
 *
 * Invariants: io->writing is true exactly while a uv_write on wbuf is in flight; obuf is never
 * handed to libuv; an io is on the flush list iff it has queued bytes and is not closed; owners
 * are freed only from on_closed (the uv_close callback).
 */
#include "px_io.h"
#include "px_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_SIZE (64 * 1024)
#define READ_CHUNK (16 * 1024)
#define FLUSH_ON_CLOSE_MAX (256 * 1024)

size_t px_io_high_water = 256 * 1024;

static uint8_t g_scratch[SCRATCH_SIZE];
static bool g_scratch_busy;
static px_list_t g_dirty;
static uv_check_t g_check;
static uv_prepare_t g_prepare;

static void start_write(px_io_t *io);

static void flush_hook_cb(uv_handle_t *h) { (void)h; px_io_flush_all(); }
static void check_cb(uv_check_t *h) { flush_hook_cb((uv_handle_t *)h); }
static void prepare_cb(uv_prepare_t *h) { flush_hook_cb((uv_handle_t *)h); }

void px_io_global_init(uv_loop_t *loop)
{
    px_list_init(&g_dirty);
    uv_check_init(loop, &g_check);
    uv_check_start(&g_check, check_cb);
    uv_unref((uv_handle_t *)&g_check);
    uv_prepare_init(loop, &g_prepare);
    uv_prepare_start(&g_prepare, prepare_cb);
    uv_unref((uv_handle_t *)&g_prepare);
}

void px_io_init(px_io_t *io, const px_io_ops_t *ops, void *owner, bool is_tcp)
{
    memset(io, 0, sizeof(*io));
    io->ops = ops;
    io->owner = owner;
    io->is_tcp = is_tcp;
    px_list_init(&io->dirty);
    io->h.handle.data = io;
}

size_t px_io_queued(const px_io_t *io) { return io->olen + (io->writing ? io->wlen : 0); }

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

static bool grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return true;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return false;
    *buf = p;
    *cap = n;
    return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    px_io_t *io = h->data;
    (void)suggested;
    if (io->rlen == 0 && !g_scratch_busy) {
        g_scratch_busy = true;
        *buf = uv_buf_init((char *)g_scratch, SCRATCH_SIZE);
        return;
    }
    if (!grow(&io->rbuf, &io->rcap, io->rlen + READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0);  /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)io->rbuf + io->rlen, io->rcap - io->rlen);
}

/* Keeps the unconsumed tail of the scratch buffer in the connection's own buffer. */
static void stash(px_io_t *io, const uint8_t *data, size_t len)
{
    if (len == 0)
        return;
    if (!grow(&io->rbuf, &io->rcap, io->rlen + len)) {
        io->ops->on_error(io, UV_ENOBUFS);
        return;
    }
    memcpy(io->rbuf + io->rlen, data, len);
    io->rlen += len;
}

/* Feeds data to the owner until it stops consuming; returns bytes consumed, or -1 if the
 * owner closed the connection. */
static ssize_t feed(px_io_t *io, const uint8_t *data, size_t len)
{
    size_t done = 0;
    io->in_data_cb = true;
    while (done < len && !io->closing) {
        ssize_t n = io->ops->on_data(io, data + done, len - done);
        if (n < 0) {
            io->in_data_cb = false;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    io->in_data_cb = false;
    return io->closing ? -1 : (ssize_t)done;
}

/* Drops consumed bytes from the front of rbuf and returns memory once the buffer is empty. */
static void rbuf_consume(px_io_t *io, size_t n)
{
    if (n >= io->rlen) {
        io->rlen = 0;
        if (io->rcap > 4 * READ_CHUNK) {
            free(io->rbuf);
            io->rbuf = NULL;
            io->rcap = 0;
        }
        return;
    }
    memmove(io->rbuf, io->rbuf + n, io->rlen - n);
    io->rlen -= n;
}

void px_io_process(px_io_t *io)
{
    if (io->in_data_cb || io->closing || io->rlen == 0)
        return;
    ssize_t n = feed(io, io->rbuf, io->rlen);
    if (n > 0 && !io->closing)
        rbuf_consume(io, (size_t)n);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    px_io_t *io = s->data;
    bool scratch = buf->base == (char *)g_scratch;
    if (scratch)
        g_scratch_busy = false;
    if (nread == 0 || io->closing)
        return;
    if (nread < 0) {
        io->ops->on_error(io, (int)nread);
        return;
    }
    if (scratch) {
        ssize_t n = feed(io, g_scratch, (size_t)nread);
        if (n >= 0 && !io->closing)
            stash(io, g_scratch + n, (size_t)nread - (size_t)n);
        return;
    }
    io->rlen += (size_t)nread;
    px_io_process(io);
}

void px_io_set_reading(px_io_t *io, bool on)
{
    io->want_read = on;
    if (!io->open || io->closing || on == io->reading)
        return;
    if (on) {
        int rc = uv_read_start(&io->h.stream, alloc_cb, read_cb);
        if (rc == 0)
            io->reading = true;
        else
            px_log_debug("uv_read_start: %s", uv_strerror(rc));
    } else {
        uv_read_stop(&io->h.stream);
        io->reading = false;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

int px_io_write(px_io_t *io, const void *data, size_t len)
{
    if (io->closing && !io->close_when_flushed)
        return 0;
    if (!grow(&io->obuf, &io->ocap, io->olen + len))
        return -ENOMEM;
    memcpy(io->obuf + io->olen, data, len);
    io->olen += len;
    if (px_list_empty(&io->dirty))
        px_list_append(&g_dirty, &io->dirty);
    if (px_io_queued(io) > px_io_high_water)
        io->above_high = true;
    return 0;
}

static void maybe_finish_close(px_io_t *io);

/* Tells the owner the queue drained, so a producer paused for backpressure reads again. This
 * must run on every path that empties the queue, including a uv_try_write that took it all. */
static void check_drain(px_io_t *io)
{
    if (io->closing || !io->above_high || px_io_queued(io) >= px_io_high_water / 2)
        return;
    io->above_high = false;
    if (io->ops->on_drain != NULL)
        io->ops->on_drain(io);
}

static void write_cb(uv_write_t *req, int status)
{
    px_io_t *io = req->data;
    io->writing = false;
    io->wlen = 0;
    if (status < 0) {
        if (io->closing) {
            io->olen = 0;
            maybe_finish_close(io);
        } else {
            io->ops->on_error(io, status);
        }
        return;
    }
    if (io->olen > 0)
        start_write(io);
    if (io->closing) {
        maybe_finish_close(io);
        return;
    }
    check_drain(io);
}

/* Writes what the socket takes now, then hands the rest to uv_write from wbuf. */
static void start_write(px_io_t *io)
{
    if (io->writing || io->olen == 0 || !io->open)
        return;
    px_list_del(&io->dirty);
    int n = uv_try_write(&io->h.stream, &(uv_buf_t){.base = (char *)io->obuf, .len = io->olen}, 1);
    if (n == (int)io->olen) {
        io->olen = 0;
        if (io->ocap > 4 * READ_CHUNK) {
            free(io->obuf);
            io->obuf = NULL;
            io->ocap = 0;
        }
        check_drain(io);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        io->olen = 0;
        if (!io->closing)
            io->ops->on_error(io, n);
        return;
    }
    size_t off = n > 0 ? (size_t)n : 0;
    /* Swap buffers so the in-flight bytes never move while libuv holds them. */
    uint8_t *tmp = io->wbuf;
    size_t tcap = io->wcap;
    io->wbuf = io->obuf;
    io->wcap = io->ocap;
    io->wlen = io->olen;
    io->obuf = tmp;
    io->ocap = tcap;
    io->olen = 0;
    uv_buf_t b = uv_buf_init((char *)io->wbuf + off, (unsigned)(io->wlen - off));
    io->wreq.data = io;
    int rc = uv_write(&io->wreq, &io->h.stream, &b, 1, write_cb);
    if (rc < 0) {
        io->wlen = 0;
        if (!io->closing)
            io->ops->on_error(io, rc);
        return;
    }
    io->writing = true;
}

void px_io_flush_all(void)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_dirty)
    {
        px_io_t *io = px_container_of(it, px_io_t, dirty);
        px_list_del(&io->dirty);
        start_write(io);
        if (io->closing)
            maybe_finish_close(io);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Closing
 * ------------------------------------------------------------------------------------------- */

static void close_cb(uv_handle_t *h)
{
    px_io_t *io = h->data;
    io->open = false;
    io->ops->on_closed(io);
}

static void maybe_finish_close(px_io_t *io)
{
    if (!io->open || uv_is_closing(&io->h.handle))
        return;
    if (io->close_when_flushed && (io->writing || io->olen > 0))
        return;
    px_list_del(&io->dirty);
    uv_close(&io->h.handle, close_cb);
}

void px_io_close(px_io_t *io, bool flush)
{
    if (io->closing) {
        if (!flush)
            io->close_when_flushed = false;
        maybe_finish_close(io);
        return;
    }
    io->closing = true;
    if (io->reading) {
        uv_read_stop(&io->h.stream);
        io->reading = false;
    }
    if (!io->open) {
        /* Never initialised as a handle: nothing for libuv to close. */
        px_list_del(&io->dirty);
        io->ops->on_closed(io);
        return;
    }
    io->close_when_flushed = flush && px_io_queued(io) <= FLUSH_ON_CLOSE_MAX;
    if (io->close_when_flushed && io->olen > 0 && !io->writing)
        start_write(io);
    maybe_finish_close(io);
}

void px_io_release(px_io_t *io)
{
    px_list_del(&io->dirty);
    free(io->rbuf);
    free(io->obuf);
    free(io->wbuf);
    io->rbuf = io->obuf = io->wbuf = NULL;
    io->rlen = io->olen = io->wlen = 0;
}

void px_io_peer_name(px_io_t *io, char *buf, size_t len)
{
    if (!io->is_tcp) {
        snprintf(buf, len, "unix");
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&io->h.tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(buf, len, "%s:%d", host, port);
}
