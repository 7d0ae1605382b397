/*
 * A bounded reader over one fuzz input, shared by the targets in tests/fuzz. Every read is
 * defined on any input: past the end it yields zeros and empty slices, so a target never needs
 * its own length checks and the same bytes always drive the same path (reproducible crashes).
 */
#ifndef PGSHIM_TESTS_FUZZ_INPUT_H
#define PGSHIM_TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct fz_in {
    const uint8_t *p;
    size_t left;
} fz_in_t;

static inline uint8_t fz_u8(fz_in_t *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in_t *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)(hi << 8 | fz_u8(in));
}

/* Up to n bytes (fewer at the end of the input); returns how many. */
static inline size_t fz_bytes(fz_in_t *in, size_t n, const uint8_t **out)
{
    if (n > in->left)
        n = in->left;
    *out = in->p;
    in->p += n;
    in->left -= n;
    return n;
}

/* Everything up to the next separator byte (consumed, not included) or the end. */
static inline size_t fz_until(fz_in_t *in, uint8_t sep, const uint8_t **out)
{
    const uint8_t *e = in->left ? memchr(in->p, sep, in->left) : NULL;
    size_t n = e ? (size_t)(e - in->p) : in->left;
    fz_bytes(in, n, out);
    if (e)
        fz_u8(in);
    return n;
}

/* Checks that a failure the harness found is reported even in builds with NDEBUG: a target
   that finds a broken invariant aborts, which both libFuzzer and the replay driver report. */
#define FZ_CHECK(cond)                                                                          \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fz_fail(__FILE__, __LINE__, #cond);                                                 \
        }                                                                                       \
    } while (0)

void fz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
