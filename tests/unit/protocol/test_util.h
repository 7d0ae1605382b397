/*
 * Helpers shared by the protocol unit tests: framing a vector that must be exactly one whole
 * message, and editing vectors (appending a garbage byte or dropping the last byte while keeping
 * the length word consistent) so every decoder can be fed truncated and over-long bodies.
 */
#ifndef PGW_TEST_UTIL_H
#define PGW_TEST_UTIL_H

#include <criterion/criterion.h>
#include <string.h>

#include "pgw.h"

/* Offset of the length word: 0 in the startup phase, 1 after the type byte otherwise. */
static inline size_t tu_len_off(pgw_phase_t phase)
{
    return phase == PGW_PHASE_STARTUP ? 0 : 1;
}

/* Frames buf[0..len) and asserts that it is exactly one complete message. */
static inline pgw_frame_t tu_frame(pgw_phase_t phase, pgw_dir_t from, const uint8_t *buf,
                                   size_t len)
{
    pgw_frame_t f;
    size_t need = 0;
    memset(&f, 0, sizeof f);
    int rc = pgw_frame_next(phase, from, buf, len, &f, &need);
    cr_assert_eq(rc, (int)len, "framing returned %d (%s), expected %zu", rc, pgw_strerror(rc),
                 len);
    return f;
}

static inline void tu_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t tu_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Copies msg into out with one extra byte appended to the body and the length word fixed up.
   Returns the new length. out must hold len + 1 bytes. */
static inline size_t tu_add_garbage(pgw_phase_t phase, const uint8_t *msg, size_t len,
                                    uint8_t *out, uint8_t garbage)
{
    size_t off = tu_len_off(phase);
    memcpy(out, msg, len);
    out[len] = garbage;
    tu_put32(out + off, tu_get32(msg + off) + 1);
    return len + 1;
}

/* Copies msg without its last byte, length word fixed up. Returns the new length. */
static inline size_t tu_drop_last(pgw_phase_t phase, const uint8_t *msg, size_t len, uint8_t *out)
{
    size_t off = tu_len_off(phase);
    memcpy(out, msg, len - 1);
    tu_put32(out + off, tu_get32(msg + off) - 1);
    return len - 1;
}

/* Compares a view with a C string. */
static inline bool tu_str_eq(pgw_str_t s, const char *c)
{
    return s.ptr && s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0 && s.ptr[s.len] == '\0';
}

#define TU_ASSERT_STR(view, cstr)                                                            \
    cr_assert(tu_str_eq((view), (cstr)), "expected \"%s\", got \"%.*s\"", (cstr),            \
              (int)(view).len, (view).ptr ? (view).ptr : "(null)")

#endif
