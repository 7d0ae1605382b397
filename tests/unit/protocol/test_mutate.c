/*
 * Robustness tests: every captured message with each byte replaced by several values, and
 * pseudo-random byte strings, are framed and decoded; decoded lists are walked to the end with
 * their iterators. Nothing may crash or read out of bounds (this suite earns its keep under
 * -DPGSHIM_SANITIZE=ON), results must be success or a PGW_E* code, and iterators must stop
 * inside the message. The generator is a fixed LCG so runs are reproducible.
 */
#include "test_util.h"

#include <stdlib.h>

#include "captured_pg15.h"

static bool known_code(int rc)
{
    return rc == 0 || (rc <= PGW_ENEEDMORE && rc >= PGW_ECRYPTO);
}

/* Decodes a frame by type and walks every list it exposes. */
static void exercise(const pgw_frame_t *f, pgw_dir_t from)
{
    const uint8_t *end = f->body + f->body_len;
    int rc = pgw_validate(f, from);
    cr_assert(known_code(rc), "validate gave %d", rc);
    size_t off = 0;
    const uint8_t *v;
    int32_t len;
    switch (f->type) {
    case PGW_MSG_BIND: {
        pgw_bind_t b;
        if (pgw_decode_bind(f, &b) != 0)
            break;
        int n = 0;
        while (pgw_bind_next_param(&b, &off, &v, &len)) {
            cr_assert(len < 0 || (v >= f->body && v + len <= end));
            n++;
        }
        cr_assert_eq(n, b.nparams);
        for (uint16_t i = 0; i < b.nparams + 2; i++)
            (void)pgw_bind_param_format(&b, i), (void)pgw_bind_result_format(&b, i);
        break;
    }
    case PGW_MSG_DATA_ROW: {
        pgw_data_row_t d;
        if (pgw_decode_data_row(f, &d) != 0)
            break;
        int n = 0;
        while (pgw_data_row_next(&d, &off, &v, &len)) {
            cr_assert(len < 0 || (v >= f->body && v + len <= end));
            n++;
        }
        cr_assert_eq(n, d.ncols);
        break;
    }
    case PGW_MSG_ROW_DESCRIPTION: {
        pgw_row_description_t rd;
        pgw_field_desc_t fd;
        if (pgw_decode_row_description(f, &rd) != 0)
            break;
        int n = 0;
        while (pgw_row_description_next(&rd, &off, &fd)) {
            cr_assert((const uint8_t *)fd.name.ptr + fd.name.len < end);
            n++;
        }
        cr_assert_eq(n, rd.nfields);
        break;
    }
    case PGW_MSG_ERROR_RESPONSE:
    case PGW_MSG_NOTICE_RESPONSE: {
        pgw_error_fields_t e;
        uint8_t code;
        pgw_str_t s;
        if (pgw_decode_error(f, &e) != 0)
            break;
        while (pgw_error_next_field(&e, &off, &code, &s))
            cr_assert((const uint8_t *)s.ptr + s.len < end);
        break;
    }
    case PGW_MSG_AUTHENTICATION: {
        pgw_auth_t a;
        if (pgw_decode_auth(f, &a) == 0)
            (void)pgw_auth_has_mechanism(&a, "SCRAM-SHA-256");
        break;
    }
    case PGW_MSG_PARSE: {
        pgw_parse_t p;
        if (pgw_decode_parse(f, &p) == 0)
            for (uint16_t i = 0; i < p.nparams; i++)
                (void)pgw_parse_param_oid(&p, i);
        break;
    }
    case PGW_MSG_PASSWORD: {
        pgw_sasl_initial_t si;
        pgw_str_t pw;
        rc = pgw_decode_sasl_initial(f, &si);
        cr_assert(known_code(rc));
        rc = pgw_decode_password(f, &pw);
        cr_assert(known_code(rc));
        break;
    }
    case PGW_MSG_STARTUP: {
        pgw_startup_t s;
        if (pgw_decode_startup(f, &s) == 0)
            (void)pgw_startup_get(&s, "user");
        break;
    }
    default:
        break;
    }
}

static void try_bytes(pgw_phase_t phase, pgw_dir_t from, const uint8_t *m, size_t n)
{
    pgw_frame_t f;
    size_t need = 0;
    int rc = pgw_frame_next(phase, from, m, n, &f, &need);
    cr_assert(known_code(rc) || (rc > 0 && (size_t)rc <= n), "frame gave %d", rc);
    if (rc == PGW_ENEEDMORE)
        cr_assert_gt(need, 0);
    if (rc > 0) {
        cr_assert_eq(f.total_len, (uint32_t)rc);
        cr_assert(f.body >= m && f.body + f.body_len == m + rc);
        exercise(&f, from);
    }
    if (phase == PGW_PHASE_NORMAL) {
        rc = pgw_frame_peek(from, m, n, &f);
        cr_assert(rc == 5 || known_code(rc));
    }
}

static void mutate_stream(const uint8_t *s, size_t len, pgw_dir_t from)
{
    static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 'S', ','};
    pgw_phase_t phase = from == PGW_F ? PGW_PHASE_STARTUP : PGW_PHASE_NORMAL;
    size_t off = 0;
    while (off < len) {
        pgw_frame_t f;
        size_t need;
        int rc = pgw_frame_next(phase, from, s + off, len - off, &f, &need);
        cr_assert_gt(rc, 0);
        /* An exact-size heap copy so ASan sees any read past the message. */
        for (size_t i = 0; i < (size_t)rc; i++) {
            for (size_t k = 0; k < sizeof values; k++) {
                uint8_t *m = malloc((size_t)rc);
                memcpy(m, s + off, (size_t)rc);
                m[i] = values[k];
                try_bytes(phase, from, m, (size_t)rc);
                free(m);
            }
        }
        if (f.type == PGW_MSG_STARTUP || f.type == PGW_MSG_CANCEL_REQUEST)
            phase = PGW_PHASE_NORMAL;
        off += (size_t)rc;
    }
}

Test(mutate, every_byte_of_every_captured_message)
{
    mutate_stream(cap_scram_fe, sizeof cap_scram_fe, PGW_F);
    mutate_stream(cap_scram_be, sizeof cap_scram_be, PGW_B);
    mutate_stream(cap_md5_fe, sizeof cap_md5_fe, PGW_F);
    mutate_stream(cap_session_fe, sizeof cap_session_fe, PGW_F);
    mutate_stream(cap_session_be, sizeof cap_session_be, PGW_B);
    mutate_stream(cap_negotiate_fe, sizeof cap_negotiate_fe, PGW_F);
    mutate_stream(cap_negotiate_be, sizeof cap_negotiate_be, PGW_B);
    mutate_stream(cap_fatal_be, sizeof cap_fatal_be, PGW_B);
}

Test(mutate, random_bytes)
{
    uint32_t x = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 16) % 40;
        uint8_t *m = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            m[i] = (uint8_t)(x >> 24);
        }
        /* Make a plausible header half the time so bodies get decoded. */
        if (n >= 5 && (iter & 1)) {
            m[1] = m[2] = m[3] = 0;
            m[4] = (uint8_t)(n - 1);
            static const char tags[] = "BCfDEHFPpQSXdcRK23CGHWDIEVvnNAtS1sZT";
            m[0] = (uint8_t)tags[(x >> 8) % (sizeof tags - 1)];
        }
        try_bytes(PGW_PHASE_NORMAL, PGW_F, m, n);
        try_bytes(PGW_PHASE_NORMAL, PGW_B, m, n);
        try_bytes(PGW_PHASE_STARTUP, PGW_F, m, n);
        free(m);
    }
}

Test(mutate, scram_messages)
{
    /* Byte mutations of a valid client-final and client-first never crash the server side. */
    pgw_scram_secret_t sec;
    const uint8_t salt[4] = "salt";
    const uint8_t nonce[PGW_SCRAM_NONCE_RAW] = "abcdefghijklmnopq";
    cr_assert_eq(pgw_scram_make_secret("pw", salt, 4, 2, &sec), 0);
    pgw_scram_client_t c;
    pgw_scram_server_t s, saved;
    cr_assert_eq(pgw_scram_client_init(&c, "pw", nonce), 0);
    cr_assert_eq(pgw_scram_server_first(&s, &sec, (const uint8_t *)c.client_first,
                                        strlen(c.client_first), nonce), 0);
    saved = s;
    cr_assert_eq(pgw_scram_client_continue(&c, (const uint8_t *)s.server_first,
                                           strlen(s.server_first)), 0);
    size_t n = strlen(c.client_final);
    for (size_t i = 0; i < n; i++) {
        uint8_t *m = malloc(n);
        memcpy(m, c.client_final, n);
        m[i] ^= 0x21;
        s = saved;
        int rc = pgw_scram_server_final(&s, m, n);
        cr_assert(rc == PGW_EMALFORMED || rc == PGW_EAUTH, "byte %zu: %d", i, rc);
        free(m);
        /* Truncations too. */
        s = saved;
        rc = pgw_scram_server_final(&s, (const uint8_t *)c.client_final, i);
        cr_assert(rc == PGW_EMALFORMED || rc == PGW_EAUTH, "prefix %zu: %d", i, rc);
    }
    n = strlen(c.client_first);
    for (size_t i = 0; i < n; i++) {
        uint8_t *m = malloc(n);
        memcpy(m, c.client_first, n);
        m[i] = ',';
        int rc = pgw_scram_server_first(&s, &sec, m, n, nonce);
        cr_assert(known_code(rc), "byte %zu: %d", i, rc);
        free(m);
        rc = pgw_scram_server_first(&s, &sec, (const uint8_t *)c.client_first, i, nonce);
        cr_assert(i < 9 ? rc == PGW_EMALFORMED : rc == 0, "prefix %zu: %d", i, rc);
    }
}
