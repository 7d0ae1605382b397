/*
 * Fuzz target: cache/ on what Redis hands back. A value read from Redis is untrusted (another
 * process may have written the key, Redis may be shared, memory may be corrupt): pgshim sends
 * it to a client only after cache_value_decode accepted it for the key it asked for.
 *
 * Input: byte 0 picks the path. Raw: the rest is a stored value, decoded against a fixed key
 * (nearly always rejected at the checksum; kept so the header checks are exercised). Framed: the
 * rest is split at the first 0xFF into a RowDescription part and a body part, checked with
 * cache_payload_check, and, when accepted, encoded and decoded again.
 *
 * Invariants: an accepted value's views lie inside it and round-trip exactly; decode accepts
 * what encode produced for the same key and rejects it for another tenant.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "fuzz_input.h"

static int make_key(cache_key_t *k, const char *tenant)
{
    static const char *const tables[] = {"jobneed", "pgbelonging"};
    cache_arg_t args[1] = {{.val = "100", .len = 3, .is_null = false, .type = 1}};
    cache_key_spec_t spec = {.tenant = tenant, .function = "fun_getjobneed", .variant = "from",
                             .args = args, .nargs = 1, .settings_hash = 42, .date = "2026-12-04",
                             .tables = tables, .ntables = 2};
    memset(k, 0, sizeof *k);
    if (cache_key_build(k, "fz", &spec) != 0)
        return -1;
    const char *gens[] = {"1", "2"};
    return cache_key_set_gens(k, gens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cache_key_t k, other;
    static int inited;
    if (!inited) {
        if (make_key(&k, "tenant_a") != 0 || make_key(&other, "tenant_b") != 0)
            fz_fail(__FILE__, __LINE__, "key");
        inited = 1;
    }
    fz_in_t in = {data, size};
    cache_result_t r;
    if (!(fz_u8(&in) & 1)) {
        if (cache_value_decode(&k, in.p, in.left, &r) == 0) {
            FZ_CHECK(r.body >= in.p && r.body + r.body_len <= in.p + in.left);
            FZ_CHECK(cache_value_decode(&other, in.p, in.left, &r) != 0);
        }
        return 0;
    }
    const uint8_t *desc, *body;
    size_t dl = fz_until(&in, 0xFF, &desc);
    size_t bl = fz_bytes(&in, in.left, &body);
    if (cache_payload_check(dl ? desc : NULL, dl, body, bl, &r) != 0)
        return 0;
    uint8_t *v = NULL;
    size_t vlen = 0;
    if (cache_value_encode(&k, dl ? desc : NULL, dl, body, bl, &v, &vlen) != 0)
        return 0;
    FZ_CHECK(cache_value_decode(&k, v, vlen, &r) == 0);
    FZ_CHECK(r.describe_len == dl && r.body_len == bl);
    FZ_CHECK(dl == 0 || memcmp(r.describe, desc, dl) == 0);
    FZ_CHECK(memcmp(r.body, body, bl) == 0);
    FZ_CHECK(cache_value_decode(&other, v, vlen, &r) != 0);
    free(v);
    return 0;
}
