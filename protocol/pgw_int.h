/*
 * Internal helpers shared by the pgw source files; not part of the public API and never
 * included outside protocol/. Like the rest of pgw these helpers are pure: they work on caller
 * memory only and keep no state between calls.
 */
#ifndef PGSHIM_PROTOCOL_PGW_INT_H
#define PGSHIM_PROTOCOL_PGW_INT_H

#include "pgw.h"

/* Big-endian loads; callers have already checked the bounds. */
static inline uint32_t pgw__load32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t pgw__load16(const uint8_t *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

/* Direction in which the X-macro table says a message type may be sent (0 for unknown). */
pgw_dir_t pgw__msg_dir(pgw_msg_t type);

/* Standard base64 with padding (RFC 4648 section 4), as SCRAM uses it. pgw__b64_encode writes
   a NUL-terminated string and returns its length, or -1 if out (cap bytes) is too small.
   pgw__b64_decode is strict (no whitespace, canonical padding) and returns the number of bytes
   written, or -1 on bad input or an output of more than cap bytes. */
int pgw__b64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
int pgw__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif /* PGSHIM_PROTOCOL_PGW_INT_H */
