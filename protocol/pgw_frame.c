/*
 * Framing: find where one message ends in a byte stream, picohttpparser style. A call never
 * consumes or copies anything; it reports "complete, N bytes", "need more, M bytes" or an
 * error, and on success hands back views into the caller's buffer.
 *
 * Invariants: the phase and direction come from the caller (a startup packet and a normal
 * message cannot be told apart from bytes alone); a length word is checked against its minimum
 * and the type's maximum as soon as it is visible, so a hostile peer cannot make the caller
 * buffer more than the limit; every returned total length fits in an int.
 */
#include "pgw_int.h"

#include <limits.h>

static int need_more(size_t *need, size_t n)
{
    if (need)
        *need = n;
    return PGW_ENEEDMORE;
}

/* Startup phase: int32 length (counts itself), int32 code, payload. No type byte. */
static int frame_startup(const uint8_t *buf, size_t len, pgw_frame_t *out, size_t *need)
{
    if (len < 4)
        return need_more(need, 4 - len);
    uint32_t mlen = pgw__load32(buf);
    if (mlen < 8)
        return PGW_EMALFORMED;
    if (mlen > PGW_STARTUP_LIMIT)
        return PGW_ETOOLONG;

    /* Once the code is visible, the fixed-size requests must have their exact length; checking
       before the whole packet is in stops a peer from parking a bogus CancelRequest. */
    pgw_msg_t type = PGW_MSG_UNKNOWN;
    if (len >= 8) {
        uint32_t code = pgw__load32(buf + 4);
        switch (code) {
        case PGW_CODE_CANCEL: type = PGW_MSG_CANCEL_REQUEST; break;
        case PGW_CODE_SSL: type = PGW_MSG_SSL_REQUEST; break;
        case PGW_CODE_GSSENC: type = PGW_MSG_GSSENC_REQUEST; break;
        /* Any other code, including unknown protocol versions, is a StartupMessage; the
           decoder rejects versions it does not speak with PGW_EUNSUPPORTED. */
        default: type = PGW_MSG_STARTUP; break;
        }
        if (type != PGW_MSG_STARTUP && mlen != pgw_msg_max_len(type))
            return PGW_EMALFORMED;
    }
    if (len < mlen)
        return need_more(need, mlen - len);

    out->type = type;
    out->tag = 0;
    out->total_len = mlen;
    out->body = buf + 4;
    out->body_len = mlen - 4;
    return (int)mlen;
}

/* Shared header check of the normal phase: type byte legal for `from`, sane length word. */
static int frame_header(pgw_dir_t from, const uint8_t *buf, size_t len, pgw_msg_t *type,
                        uint32_t *mlen)
{
    *type = pgw_msg_lookup(from, buf[0]);
    if (*type == PGW_MSG_UNKNOWN)
        return PGW_EBADTYPE;
    if (len < 5)
        return PGW_ENEEDMORE;
    *mlen = pgw__load32(buf + 1);
    /* PostgreSQL reads the length as a signed int32; anything at or above INT32_MAX would also
       overflow total_len and the int we return. */
    if (*mlen < 4 || *mlen >= (uint32_t)INT32_MAX)
        return PGW_EMALFORMED;
    return 0;
}

int pgw_frame_next(pgw_phase_t phase, pgw_dir_t from, const uint8_t *buf, size_t len,
                   pgw_frame_t *out, size_t *need)
{
    if (phase == PGW_PHASE_STARTUP) {
        if (from != PGW_F)
            return PGW_EBADTYPE;
        return frame_startup(buf, len, out, need);
    }
    if (phase != PGW_PHASE_NORMAL || (from != PGW_F && from != PGW_B))
        return PGW_EBADTYPE;
    if (len == 0)
        return need_more(need, 5);

    pgw_msg_t type;
    uint32_t mlen = 0;
    int rc = frame_header(from, buf, len, &type, &mlen);
    if (rc == PGW_ENEEDMORE)
        return need_more(need, 5 - len);
    if (rc < 0)
        return rc;
    if (mlen > pgw_msg_max_len(type))
        return PGW_ETOOLONG;
    size_t total = (size_t)mlen + 1;
    if (len < total)
        return need_more(need, total - len);

    out->type = type;
    out->tag = buf[0];
    out->total_len = (uint32_t)total;
    out->body = buf + 5;
    out->body_len = mlen - 4;
    return (int)total;
}

int pgw_frame_peek(pgw_dir_t from, const uint8_t *buf, size_t len, pgw_frame_t *out)
{
    if (from != PGW_F && from != PGW_B)
        return PGW_EBADTYPE;
    if (len == 0)
        return PGW_ENEEDMORE;
    pgw_msg_t type;
    uint32_t mlen = 0;
    int rc = frame_header(from, buf, len, &type, &mlen);
    if (rc < 0)
        return rc;
    out->type = type;
    out->tag = buf[0];
    out->total_len = mlen + 1;
    out->body = NULL;
    out->body_len = mlen - 4;
    return 5;
}
