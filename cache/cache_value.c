/*
 * Encoding and decoding of stored results.
 *
 * A value is a fixed 44-byte header, then the tenant, the function name, the describe part
 * (RowDescription or nothing) and the body (notices, rows, CommandComplete or ErrorResponse).
 * Header, big-endian:
 *    0  "PGSC"            4  version u8          5  flags u8 (0)
 *    6  tenant len u16    8  function len u16    10 reserved u16 (0)
 *   12  settings hash u64 20  key-base hash u64
 *   28  describe len u32  32  body len u32       36 checksum u64
 * The checksum is cache_sum64 over the header before the checksum field, then over the rest.
 *
 * Invariant: cache_value_decode accepts exactly what cache_value_encode produces for the same
 * key; every length is checked against the real size before it is used, and the payload is
 * walked with pgw's framing and validators, so a value that decodes can be sent to a client
 * as is.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_int.h"
#include "pgw.h"

#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_FLAGS 5
#define OFF_TENANT_LEN 6
#define OFF_FUNCTION_LEN 8
#define OFF_RESERVED 10
#define OFF_SETTINGS 12
#define OFF_BASE_HASH 20
#define OFF_DESCRIBE_LEN 28
#define OFF_BODY_LEN 32
#define OFF_CHECKSUM 36

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t value_checksum(const uint8_t *v, size_t len)
{
    uint64_t h = cache_sum64(CACHE_FNV_INIT, v, OFF_CHECKSUM);   /* 36 bytes: not a multiple */
    return cache_sum64(h, v + CACHE_VALUE_HEADER, len - CACHE_VALUE_HEADER);
}

/* Frames one complete backend message at the start of p[0..len) and validates its contents.
   Returns the frame length or 0 when the bytes are not exactly one valid message prefix. */
static size_t frame_one(const uint8_t *p, size_t len, pgw_frame_t *f)
{
    size_t need = 0;
    int r = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, p, len, f, &need);
    if (r <= 0)
        return 0;
    if (pgw_validate(f, PGW_B) != 0)
        return 0;
    return (size_t)r;
}

int cache_payload_check(const uint8_t *describe, size_t describe_len, const uint8_t *body,
                        size_t body_len, cache_result_t *out)
{
    pgw_frame_t f;
    bool have_desc = false;
    uint16_t ncols = 0;

    if ((describe == NULL && describe_len > 0) || body == NULL || body_len == 0)
        return CACHE_EDECODE;
    if (describe_len > 0) {
        /* The describe part is exactly one RowDescription. */
        size_t n = frame_one(describe, describe_len, &f);
        if (n == 0 || n != describe_len || f.type != PGW_MSG_ROW_DESCRIPTION)
            return CACHE_EDECODE;
        pgw_row_description_t rd;
        if (pgw_decode_row_description(&f, &rd) != 0)
            return CACHE_EDECODE;
        have_desc = true;
        ncols = rd.nfields;
    }

    /* The body is notices and rows, closed by exactly one CommandComplete or ErrorResponse
       that is the last message. */
    size_t off = 0;
    uint32_t nrows = 0;
    bool closed = false, failed = false;
    while (off < body_len) {
        if (closed)
            return CACHE_EDECODE;
        size_t n = frame_one(body + off, body_len - off, &f);
        if (n == 0)
            return CACHE_EDECODE;
        switch (f.type) {
        case PGW_MSG_NOTICE_RESPONSE:
            break;
        case PGW_MSG_DATA_ROW: {
            pgw_data_row_t dr;
            if (!have_desc || pgw_decode_data_row(&f, &dr) != 0 || dr.ncols != ncols)
                return CACHE_EDECODE;
            nrows++;
            break;
        }
        case PGW_MSG_COMMAND_COMPLETE:
            closed = true;
            break;
        case PGW_MSG_ERROR_RESPONSE:
            closed = true;
            failed = true;
            break;
        default:
            return CACHE_EDECODE;
        }
        off += n;
    }
    if (!closed)
        return CACHE_EDECODE;
    if (out != NULL) {
        out->describe = describe_len ? describe : NULL;
        out->describe_len = describe_len;
        out->body = body;
        out->body_len = body_len;
        out->failed = failed;
        out->nrows = nrows;
    }
    return 0;
}

int cache_value_encode(const cache_key_t *k, const uint8_t *describe, size_t describe_len,
                       const uint8_t *body, size_t body_len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (k == NULL || k->tenant == NULL || k->function == NULL)
        return CACHE_EINVAL;
    size_t tl = strlen(k->tenant), fl = strlen(k->function);
    if (tl > UINT16_MAX || fl > UINT16_MAX || describe_len > UINT32_MAX || body_len > UINT32_MAX)
        return CACHE_EINVAL;
    if (cache_payload_check(describe, describe_len, body, body_len, NULL) != 0)
        return CACHE_EINVAL;

    size_t len = CACHE_VALUE_HEADER + tl + fl + describe_len + body_len;
    uint8_t *v = malloc(len);
    if (v == NULL)
        return CACHE_ENOMEM;
    memcpy(v + OFF_MAGIC, "PGSC", 4);
    v[OFF_VERSION] = CACHE_VALUE_VERSION;
    v[OFF_FLAGS] = 0;
    put_u16(v + OFF_TENANT_LEN, (uint16_t)tl);
    put_u16(v + OFF_FUNCTION_LEN, (uint16_t)fl);
    put_u16(v + OFF_RESERVED, 0);
    put_u64(v + OFF_SETTINGS, k->settings_hash);
    put_u64(v + OFF_BASE_HASH, k->base_hash);
    put_u32(v + OFF_DESCRIBE_LEN, (uint32_t)describe_len);
    put_u32(v + OFF_BODY_LEN, (uint32_t)body_len);
    uint8_t *p = v + CACHE_VALUE_HEADER;
    memcpy(p, k->tenant, tl);
    p += tl;
    memcpy(p, k->function, fl);
    p += fl;
    if (describe_len)
        memcpy(p, describe, describe_len);
    p += describe_len;
    memcpy(p, body, body_len);
    put_u64(v + OFF_CHECKSUM, value_checksum(v, len));
    *out = v;
    *out_len = len;
    return 0;
}

int cache_value_decode(const cache_key_t *k, const uint8_t *v, size_t len, cache_result_t *out)
{
    if (k == NULL || k->tenant == NULL || k->function == NULL || v == NULL ||
        len < CACHE_VALUE_HEADER)
        return CACHE_EDECODE;
    if (memcmp(v + OFF_MAGIC, "PGSC", 4) != 0 || v[OFF_VERSION] != CACHE_VALUE_VERSION ||
        v[OFF_FLAGS] != 0 || get_u16(v + OFF_RESERVED) != 0)
        return CACHE_EDECODE;
    size_t tl = get_u16(v + OFF_TENANT_LEN), fl = get_u16(v + OFF_FUNCTION_LEN);
    size_t dl = get_u32(v + OFF_DESCRIBE_LEN), bl = get_u32(v + OFF_BODY_LEN);
    /* Sizes are at most 2*64K + 2*4G, so the sum cannot overflow a 64-bit size_t. */
    if (CACHE_VALUE_HEADER + tl + fl + dl + bl != len)
        return CACHE_EDECODE;
    if (get_u64(v + OFF_CHECKSUM) != value_checksum(v, len))
        return CACHE_EDECODE;
    const uint8_t *p = v + CACHE_VALUE_HEADER;
    if (tl != strlen(k->tenant) || memcmp(p, k->tenant, tl) != 0)
        return CACHE_EDECODE;
    p += tl;
    if (fl != strlen(k->function) || memcmp(p, k->function, fl) != 0)
        return CACHE_EDECODE;
    p += fl;
    if (get_u64(v + OFF_SETTINGS) != k->settings_hash || get_u64(v + OFF_BASE_HASH) != k->base_hash)
        return CACHE_EDECODE;
    return cache_payload_check(dl ? p : NULL, dl, p + dl, bl, out);
}
