/*
 * Value encoding: round trip, and every kind of damage (a flipped byte anywhere, truncation,
 * trailing bytes, another tenant/function/settings/key, malformed or incomplete payloads) is
 * rejected.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_test_util.h"

typedef struct fixture {
    cache_key_t k;
    pgw_buf_t desc, body;
    uint8_t *v;
    size_t vlen;
} fixture_t;

static void fx_init(fixture_t *fx, int nrows)
{
    memset(fx, 0, sizeof *fx);
    cr_assert_eq(tu_key(&fx->k, "pgshim", "tenant_a", "100"), 0);
    pgw_buf_init(&fx->desc);
    pgw_buf_init(&fx->body);
    tu_describe(&fx->desc, "id");
    tu_body(&fx->body, nrows);
    cr_assert_not(pgw_buf_failed(&fx->desc));
    cr_assert_not(pgw_buf_failed(&fx->body));
    cr_assert_eq(cache_value_encode(&fx->k, fx->desc.data, fx->desc.len, fx->body.data,
                                    fx->body.len, &fx->v, &fx->vlen), 0);
}

static void fx_fini(fixture_t *fx)
{
    free(fx->v);
    pgw_buf_free(&fx->desc);
    pgw_buf_free(&fx->body);
    cache_key_clear(&fx->k);
}

Test(value, round_trip)
{
    fixture_t fx;
    fx_init(&fx, 3);
    cr_assert_eq(fx.vlen, CACHE_VALUE_HEADER + strlen("tenant_a") + strlen("fun_getjobneed") +
                              fx.desc.len + fx.body.len);
    cr_assert_eq(memcmp(fx.v, "PGSC", 4), 0);
    cr_assert_eq(fx.v[4], CACHE_VALUE_VERSION);
    cache_result_t r;
    cr_assert_eq(cache_value_decode(&fx.k, fx.v, fx.vlen, &r), 0);
    cr_assert_eq(r.describe_len, fx.desc.len);
    cr_assert_eq(memcmp(r.describe, fx.desc.data, fx.desc.len), 0);
    cr_assert_eq(r.body_len, fx.body.len);
    cr_assert_eq(memcmp(r.body, fx.body.data, fx.body.len), 0);
    cr_assert_eq(r.nrows, 3);
    cr_assert_not(r.failed);
    fx_fini(&fx);
}

Test(value, zero_rows_and_error_bodies)
{
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "p", "t", "1"), 0);
    pgw_buf_t d, b;
    pgw_buf_init(&d);
    pgw_buf_init(&b);
    tu_describe(&d, "x");
    pgw_build_command_complete(&b, "SELECT 0");
    uint8_t *v;
    size_t n;
    cache_result_t r;
    cr_assert_eq(cache_value_encode(&k, d.data, d.len, b.data, b.len, &v, &n), 0);
    cr_assert_eq(cache_value_decode(&k, v, n, &r), 0);
    cr_assert_eq(r.nrows, 0);
    free(v);

    /* A call that fails in PostgreSQL too: notice then error, without a RowDescription. */
    pgw_buf_reset(&b);
    pgw_build_notice(&b, "NOTICE", "00000", "valid calls are ...", NULL, NULL);
    pgw_build_error(&b, "ERROR", "2F005", "control reached end of function without RETURN",
                    NULL, NULL);
    cr_assert_eq(cache_value_encode(&k, NULL, 0, b.data, b.len, &v, &n), 0);
    cr_assert_eq(cache_value_decode(&k, v, n, &r), 0);
    cr_assert(r.failed);
    cr_assert_null(r.describe);
    cr_assert_eq(r.describe_len, 0);
    free(v);
    pgw_buf_free(&d);
    pgw_buf_free(&b);
    cache_key_clear(&k);
}

Test(value, every_flipped_byte_is_rejected)
{
    fixture_t fx;
    fx_init(&fx, 2);
    cache_result_t r;
    for (size_t i = 0; i < fx.vlen; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            fx.v[i] ^= (uint8_t)(1u << bit);
            cr_assert_eq(cache_value_decode(&fx.k, fx.v, fx.vlen, &r), CACHE_EDECODE,
                         "flip at byte %zu bit %d accepted", i, bit);
            fx.v[i] ^= (uint8_t)(1u << bit);
        }
    }
    cr_assert_eq(cache_value_decode(&fx.k, fx.v, fx.vlen, &r), 0);
    fx_fini(&fx);
}

Test(value, truncated_and_extended)
{
    fixture_t fx;
    fx_init(&fx, 2);
    cache_result_t r;
    for (size_t n = 0; n < fx.vlen; n++)
        cr_assert_eq(cache_value_decode(&fx.k, fx.v, n, &r), CACHE_EDECODE, "len %zu", n);
    uint8_t *big = malloc(fx.vlen + 1);
    memcpy(big, fx.v, fx.vlen);
    big[fx.vlen] = 0;
    cr_assert_eq(cache_value_decode(&fx.k, big, fx.vlen + 1, &r), CACHE_EDECODE);
    free(big);
    cr_assert_eq(cache_value_decode(&fx.k, NULL, 0, &r), CACHE_EDECODE);
    fx_fini(&fx);
}

Test(value, other_tenant_function_settings_or_key)
{
    fixture_t fx;
    fx_init(&fx, 1);
    cache_result_t r;
    cache_key_t other;

    cr_assert_eq(tu_key(&other, "pgshim", "tenant_b", "100"), 0);
    cr_assert_eq(cache_value_decode(&other, fx.v, fx.vlen, &r), CACHE_EDECODE);
    cache_key_clear(&other);

    cr_assert_eq(tu_key(&other, "pgshim", "tenant_a", "101"), 0); /* other args: key hash */
    cr_assert_eq(cache_value_decode(&other, fx.v, fx.vlen, &r), CACHE_EDECODE);
    cache_key_clear(&other);

    cr_assert_eq(tu_key(&other, "pgshim", "tenant_a", "100"), 0);
    other.settings_hash ^= 1;
    cr_assert_eq(cache_value_decode(&other, fx.v, fx.vlen, &r), CACHE_EDECODE);
    other.settings_hash ^= 1;
    free(other.function);
    other.function = strdup("fun_getexttourjobneed");
    cr_assert_eq(cache_value_decode(&other, fx.v, fx.vlen, &r), CACHE_EDECODE);
    cache_key_clear(&other);

    /* A tenant that is a prefix of the stored one. */
    cr_assert_eq(tu_key(&other, "pgshim", "tenant_", "100"), 0);
    cr_assert_eq(cache_value_decode(&other, fx.v, fx.vlen, &r), CACHE_EDECODE);
    cache_key_clear(&other);
    fx_fini(&fx);
}

Test(value, garbage)
{
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "p", "t", "1"), 0);
    cache_result_t r;
    const char *g = "hello, this is not a cached value at all, but it is long enough";
    cr_assert_eq(cache_value_decode(&k, (const uint8_t *)g, strlen(g), &r), CACHE_EDECODE);
    uint8_t zeros[128] = {0};
    cr_assert_eq(cache_value_decode(&k, zeros, sizeof zeros, &r), CACHE_EDECODE);
    cache_key_clear(&k);
}

/* Payload rules, checked on encode (and therefore on decode). */
Test(value, payload_rules)
{
    pgw_buf_t d, b;
    pgw_buf_init(&d);
    pgw_buf_init(&b);
    tu_describe(&d, "x");

    /* No CommandComplete. */
    pgw_data_row_begin(&b, 1);
    pgw_data_row_put(&b, "a", 1);
    pgw_data_row_end(&b);
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, b.len, NULL), CACHE_EDECODE);

    /* Complete: ok. */
    pgw_build_command_complete(&b, "SELECT 1");
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, b.len, NULL), 0);
    /* Rows need the RowDescription. */
    cr_assert_eq(cache_payload_check(NULL, 0, b.data, b.len, NULL), CACHE_EDECODE);
    /* Truncated last message. */
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, b.len - 1, NULL), CACHE_EDECODE);
    /* Anything after the closing message. */
    size_t closed = b.len;
    pgw_build_command_complete(&b, "SELECT 1");
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, b.len, NULL), CACHE_EDECODE);
    b.len = closed;
    pgw_build_ready(&b, 'I');
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, b.len, NULL), CACHE_EDECODE);

    /* Column count must match the RowDescription. */
    pgw_buf_reset(&b);
    pgw_data_row_begin(&b, 2);
    pgw_data_row_put(&b, "a", 1);
    pgw_data_row_put_null(&b);
    pgw_data_row_end(&b);
    pgw_build_command_complete(&b, "SELECT 1");
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, b.len, NULL), CACHE_EDECODE);

    /* Describe must be exactly one RowDescription. */
    pgw_buf_reset(&b);
    pgw_build_command_complete(&b, "SELECT 0");
    cr_assert_eq(cache_payload_check(b.data, b.len, b.data, b.len, NULL), CACHE_EDECODE);
    cr_assert_eq(cache_payload_check(d.data, d.len - 1, b.data, b.len, NULL), CACHE_EDECODE);
    /* A ReadyForQuery-only or empty body is not a result. */
    cr_assert_eq(cache_payload_check(d.data, d.len, b.data, 0, NULL), CACHE_EDECODE);

    /* Encode refuses what the checker refuses. */
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "p", "t", "1"), 0);
    uint8_t *v = NULL;
    size_t n = 0;
    cr_assert_eq(cache_value_encode(&k, d.data, d.len, b.data, b.len - 1, &v, &n), CACHE_EINVAL);
    cr_assert_null(v);
    cache_key_clear(&k);
    pgw_buf_free(&d);
    pgw_buf_free(&b);
}

/* A hand-written byte vector, so the format is pinned independently of the encoder. */
Test(value, byte_vector)
{
    cache_key_spec_t spec = {0};
    static const char *const tabs[] = {"bt"};
    spec.tenant = "t";
    spec.function = "f";
    spec.tables = tabs;
    spec.ntables = 1;
    spec.settings_hash = 0x0102030405060708ULL;
    cache_key_t k;
    cr_assert_eq(cache_key_build(&k, "p", &spec), 0);
    /* CommandComplete "SELECT 0" = 'C' len 13 "SELECT 0\0". */
    static const uint8_t cc[] = {'C', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '0', 0};
    uint8_t v[CACHE_VALUE_HEADER + 2 + sizeof cc];
    memset(v, 0, sizeof v);
    memcpy(v, "PGSC", 4);
    v[4] = CACHE_VALUE_VERSION;
    v[7] = 1; /* tenant len */
    v[9] = 1; /* function len */
    for (int i = 0; i < 8; i++) {
        v[12 + i] = (uint8_t)(spec.settings_hash >> (56 - 8 * i));
        v[20 + i] = (uint8_t)(k.base_hash >> (56 - 8 * i));
    }
    v[35] = sizeof cc; /* body len */
    v[44] = 't';
    v[45] = 'f';
    memcpy(v + 46, cc, sizeof cc);
    uint64_t h = cache_sum64(CACHE_FNV_INIT, v, 36);
    h = cache_sum64(h, v + 44, sizeof v - 44);
    for (int i = 0; i < 8; i++)
        v[36 + i] = (uint8_t)(h >> (56 - 8 * i));
    cache_result_t r;
    cr_assert_eq(cache_value_decode(&k, v, sizeof v, &r), 0);
    cr_assert_eq(r.body_len, sizeof cc);

    uint8_t *enc;
    size_t n;
    cr_assert_eq(cache_value_encode(&k, NULL, 0, cc, sizeof cc, &enc, &n), 0);
    cr_assert_eq(n, sizeof v);
    cr_assert_eq(memcmp(enc, v, n), 0);
    free(enc);
    cache_key_clear(&k);
}
