/*
 * Builder tests: every builder's output is framed and decoded back (build -> frame -> decode),
 * several outputs are compared byte for byte with messages real PostgreSQL/libpq sent (see
 * captured_pg15.h), and the buffer mechanics are checked: growth, fixed buffers that overflow
 * at every size short of the message, sticky failure, begin/end misuse, steal and reset.
 */
#include "test_util.h"

#include <stdlib.h>

#include "captured_pg15.h"

/* Builds with a growable buffer, checks it is exactly one message, returns the frame. The
   bytes stay in *b (caller frees). */
static pgw_frame_t one(pgw_buf_t *b, pgw_phase_t phase, pgw_dir_t from)
{
    cr_assert_not(pgw_buf_failed(b));
    cr_assert_not(b->in_msg);
    pgw_frame_t f = tu_frame(phase, from, b->data, b->len);
    cr_assert_eq(pgw_validate(&f, from), 0, "%s does not validate", pgw_msg_name(f.type));
    return f;
}

/* Finds the n-th message of a given type byte in a captured normal-phase stream. */
static const uint8_t *find_msg(const uint8_t *s, size_t len, uint8_t tag, int nth, size_t *mlen)
{
    size_t off = 0;
    if (s == cap_scram_fe || s == cap_md5_fe || s == cap_session_fe)
        off = tu_get32(s);                      /* skip the startup packet */
    while (off + 5 <= len) {
        size_t l = tu_get32(s + off + 1) + 1;
        if (s[off] == tag && nth-- == 0) {
            *mlen = l;
            return s + off;
        }
        off += l;
    }
    cr_assert_fail("no message '%c' in capture", tag);
    return NULL;
}

static void assert_same(const pgw_buf_t *b, const uint8_t *want, size_t wlen, const char *what)
{
    cr_assert_eq(b->len, wlen, "%s: built %zu bytes, PostgreSQL sent %zu", what, b->len, wlen);
    cr_assert(memcmp(b->data, want, wlen) == 0, "%s: bytes differ from the capture", what);
}

Test(build, backend_messages_round_trip)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_frame_t f;
    pgw_auth_t a;

    pgw_build_auth_ok(&b);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_OK);

    const uint8_t salt[4] = {0xfc, 0xcd, 0x65, 0x80};
    pgw_buf_reset(&b);
    pgw_build_auth_md5(&b, salt);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert(memcmp(a.md5_salt, salt, 4) == 0);
    size_t ml;
    const uint8_t *cm = find_msg(cap_md5_be, sizeof cap_md5_be, 'R', 0, &ml);
    assert_same(&b, cm, ml, "AuthenticationMD5Password");

    const char *mechs[] = {"SCRAM-SHA-256"};
    pgw_buf_reset(&b);
    pgw_build_auth_sasl(&b, mechs, 1);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256"));
    cm = find_msg(cap_scram_be, sizeof cap_scram_be, 'R', 0, &ml);
    assert_same(&b, cm, ml, "AuthenticationSASL");

    pgw_buf_reset(&b);
    pgw_build_auth(&b, PGW_AUTH_SASL_CONTINUE, "r=abc", 5);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_SASL_CONTINUE);
    cr_assert_eq(a.data_len, 5);

    pgw_buf_reset(&b);
    pgw_build_param_status(&b, "client_encoding", "UTF8");
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    pgw_param_status_t ps;
    cr_assert_eq(pgw_decode_param_status(&f, &ps), 0);
    TU_ASSERT_STR(ps.name, "client_encoding");
    TU_ASSERT_STR(ps.value, "UTF8");
    cm = find_msg(cap_scram_be, sizeof cap_scram_be, 'S', 1, &ml);
    assert_same(&b, cm, ml, "ParameterStatus");

    pgw_buf_reset(&b);
    pgw_build_backend_key(&b, 0x00002956u, 0x91379c8eu);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    pgw_cancel_t k;
    cr_assert_eq(pgw_decode_backend_key(&f, &k), 0);
    cr_assert_eq(k.pid, 0x2956);
    cr_assert_eq(k.key, 0x91379c8eu);
    cm = find_msg(cap_scram_be, sizeof cap_scram_be, 'K', 0, &ml);
    assert_same(&b, cm, ml, "BackendKeyData");

    pgw_buf_reset(&b);
    pgw_build_ready(&b, 'I');
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    uint8_t st;
    cr_assert_eq(pgw_decode_ready(&f, &st), 0);
    cr_assert_eq(st, 'I');
    cm = find_msg(cap_scram_be, sizeof cap_scram_be, 'Z', 0, &ml);
    assert_same(&b, cm, ml, "ReadyForQuery");

    pgw_buf_reset(&b);
    pgw_build_error(&b, "ERROR", "22012", "division by zero", "some detail", "a hint");
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    pgw_error_fields_t e;
    cr_assert_eq(f.type, PGW_MSG_ERROR_RESPONSE);
    cr_assert_eq(pgw_decode_error(&f, &e), 0);
    TU_ASSERT_STR(e.severity, "ERROR");
    TU_ASSERT_STR(e.severity_nl, "ERROR");
    TU_ASSERT_STR(e.sqlstate, "22012");
    TU_ASSERT_STR(e.message, "division by zero");
    TU_ASSERT_STR(e.detail, "some detail");
    TU_ASSERT_STR(e.hint, "a hint");

    pgw_buf_reset(&b);
    pgw_build_notice(&b, "NOTICE", "00000", "hello", NULL, NULL);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cr_assert_eq(f.type, PGW_MSG_NOTICE_RESPONSE);
    cr_assert_eq(pgw_decode_error(&f, &e), 0);
    TU_ASSERT_STR(e.message, "hello");
    cr_assert_null(e.detail.ptr);
    cr_assert_null(e.hint.ptr);

    pgw_buf_reset(&b);
    pgw_build_command_complete(&b, "SELECT 1");
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    pgw_command_complete_t cc;
    cr_assert_eq(pgw_decode_command_complete(&f, &cc), 0);
    TU_ASSERT_STR(cc.tag, "SELECT 1");
    cm = find_msg(cap_scram_be, sizeof cap_scram_be, 'C', 0, &ml);
    assert_same(&b, cm, ml, "CommandComplete");

    static const struct {
        void (*fn)(pgw_buf_t *);
        pgw_msg_t type;
    } empties[] = {
        {pgw_build_empty_query, PGW_MSG_EMPTY_QUERY_RESPONSE},
        {pgw_build_parse_complete, PGW_MSG_PARSE_COMPLETE},
        {pgw_build_bind_complete, PGW_MSG_BIND_COMPLETE},
        {pgw_build_close_complete, PGW_MSG_CLOSE_COMPLETE},
        {pgw_build_no_data, PGW_MSG_NO_DATA},
    };
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        pgw_buf_reset(&b);
        empties[i].fn(&b);
        f = one(&b, PGW_PHASE_NORMAL, PGW_B);
        cr_assert_eq(f.type, empties[i].type);
        cr_assert_eq(b.len, 5);
        cr_assert_eq(pgw_decode_empty(&f), 0);
        cm = find_msg(cap_session_be, sizeof cap_session_be, pgw_msg_byte(f.type), 0, &ml);
        assert_same(&b, cm, ml, pgw_msg_name(f.type));
    }
    pgw_buf_free(&b);
}

Test(build, descriptions_and_rows)
{
    pgw_buf_t b;
    pgw_buf_init(&b);

    const uint32_t oids[] = {25};
    pgw_build_param_description(&b, oids, 1);
    pgw_frame_t f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    pgw_param_description_t pd;
    cr_assert_eq(pgw_decode_param_description(&f, &pd), 0);
    cr_assert_eq(pd.nparams, 1);
    size_t ml;
    const uint8_t *cm = find_msg(cap_session_be, sizeof cap_session_be, 't', 0, &ml);
    assert_same(&b, cm, ml, "ParameterDescription");

    /* RowDescription of "SELECT 1 AS one, NULL::text AS n, 'x'::text AS s" as PG sent it. */
    const pgw_field_desc_t fields[] = {
        {{"one", 3}, 0, 0, 23, 4, -1, 0},
        {{"n", 1}, 0, 0, 25, -1, -1, 0},
        {{"s", 1}, 0, 0, 25, -1, -1, 0},
    };
    pgw_buf_reset(&b);
    pgw_build_row_description(&b, fields, 3);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cm = find_msg(cap_session_be, sizeof cap_session_be, 'T', 0, &ml);
    assert_same(&b, cm, ml, "RowDescription");
    pgw_row_description_t rd;
    cr_assert_eq(pgw_decode_row_description(&f, &rd), 0);
    size_t off = 0;
    pgw_field_desc_t d;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 1);
        cr_assert_eq(d.name.len, fields[i].name.len);
        cr_assert(memcmp(d.name.ptr, fields[i].name.ptr, d.name.len) == 0);
        cr_assert_eq(d.type_oid, fields[i].type_oid);
        cr_assert_eq(d.type_len, fields[i].type_len);
        cr_assert_eq(d.type_mod, fields[i].type_mod);
    }
    cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 0);

    /* The matching DataRow: '1', NULL, 'x'. */
    const uint8_t *vals[] = {(const uint8_t *)"1", NULL, (const uint8_t *)"x"};
    const int32_t lens[] = {1, 99, 1};
    pgw_buf_reset(&b);
    pgw_build_data_row(&b, 3, vals, lens);
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cm = find_msg(cap_session_be, sizeof cap_session_be, 'D', 0, &ml);
    assert_same(&b, cm, ml, "DataRow");

    /* The incremental builder produces the same bytes. */
    pgw_buf_t b2;
    pgw_buf_init(&b2);
    pgw_data_row_begin(&b2, 3);
    pgw_data_row_put(&b2, "1", 1);
    pgw_data_row_put_null(&b2);
    pgw_data_row_put(&b2, "x", 1);
    pgw_data_row_end(&b2);
    cr_assert_not(pgw_buf_failed(&b2));
    assert_same(&b2, b.data, b.len, "incremental DataRow");
    pgw_buf_reset(&b2);
    pgw_data_row_begin(&b2, 2);
    pgw_data_row_put(&b2, NULL, 5);
    pgw_data_row_put(&b2, "", 0);
    pgw_data_row_end(&b2);
    f = one(&b2, PGW_PHASE_NORMAL, PGW_B);
    pgw_data_row_t dr;
    cr_assert_eq(pgw_decode_data_row(&f, &dr), 0);
    off = 0;
    const uint8_t *v;
    int32_t len;
    cr_assert_eq(pgw_data_row_next(&dr, &off, &v, &len), 1);
    cr_assert_eq(len, -1);
    cr_assert_eq(pgw_data_row_next(&dr, &off, &v, &len), 1);
    cr_assert_eq(len, 0);
    pgw_buf_free(&b2);

    pgw_buf_reset(&b);
    pgw_build_notification(&b, 0x2ae8, "pgw_chan", "payload");
    f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    cm = find_msg(cap_session_be, sizeof cap_session_be, 'A', 0, &ml);
    assert_same(&b, cm, ml, "NotificationResponse");
    pgw_notification_t n;
    cr_assert_eq(pgw_decode_notification(&f, &n), 0);
    TU_ASSERT_STR(n.payload, "payload");
    pgw_buf_free(&b);
}

Test(build, frontend_messages_round_trip)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    size_t ml;
    const uint8_t *cm;

    const char *names[] = {"user", "database"};
    const char *values[] = {"trustuser", "postgres"};
    pgw_build_startup(&b, names, values, 2);
    pgw_frame_t f = one(&b, PGW_PHASE_STARTUP, PGW_F);
    assert_same(&b, cap_session_fe, tu_get32(cap_session_fe), "StartupMessage");
    pgw_startup_t s;
    cr_assert_eq(pgw_decode_startup(&f, &s), 0);
    TU_ASSERT_STR(pgw_startup_get(&s, "database"), "postgres");

    pgw_buf_reset(&b);
    pgw_build_cancel_request(&b, 12345, 67890);
    f = one(&b, PGW_PHASE_STARTUP, PGW_F);
    assert_same(&b, cap_cancel_fe, sizeof cap_cancel_fe, "CancelRequest");
    pgw_cancel_t c;
    cr_assert_eq(pgw_decode_cancel(&f, &c), 0);
    cr_assert_eq(c.key, 67890);

    pgw_buf_reset(&b);
    pgw_build_ssl_request(&b);
    f = one(&b, PGW_PHASE_STARTUP, PGW_F);
    cr_assert_eq(f.type, PGW_MSG_SSL_REQUEST);
    assert_same(&b, cap_ssl_fe, sizeof cap_ssl_fe, "SSLRequest");

    pgw_buf_reset(&b);
    pgw_build_password(&b, "md542beccf2af01c63e2e4bc95e00655953");
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_md5_fe, sizeof cap_md5_fe, 'p', 0, &ml);
    assert_same(&b, cm, ml, "PasswordMessage");
    pgw_str_t pw;
    cr_assert_eq(pgw_decode_password(&f, &pw), 0);

    const char *cf = "n,,n=,r=nxNA+CVH5uXox+Q3NpnpxkoB";
    pgw_buf_reset(&b);
    pgw_build_sasl_initial(&b, "SCRAM-SHA-256", cf, strlen(cf));
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_scram_fe, sizeof cap_scram_fe, 'p', 0, &ml);
    assert_same(&b, cm, ml, "SASLInitialResponse");
    pgw_sasl_initial_t si;
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), 0);
    cr_assert_eq(si.data_len, (int32_t)strlen(cf));
    pgw_buf_reset(&b);
    pgw_build_sasl_initial(&b, "X", NULL, 0);
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), 0);
    cr_assert_eq(si.data_len, -1);

    pgw_buf_reset(&b);
    cm = find_msg(cap_scram_fe, sizeof cap_scram_fe, 'p', 1, &ml);
    pgw_build_sasl_response(&b, cm + 5, ml - 5);
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    assert_same(&b, cm, ml, "SASLResponse");

    pgw_buf_reset(&b);
    pgw_build_query(&b, "SELECT 1 AS one");
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_scram_fe, sizeof cap_scram_fe, 'Q', 0, &ml);
    assert_same(&b, cm, ml, "Query");

    const uint32_t oids[] = {25};
    pgw_buf_reset(&b);
    pgw_build_parse(&b, "st1", "SELECT g, $1::text FROM generate_series(1,3) g", oids, 1);
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_session_fe, sizeof cap_session_fe, 'P', 0, &ml);
    assert_same(&b, cm, ml, "Parse");
    pgw_parse_t p;
    cr_assert_eq(pgw_decode_parse(&f, &p), 0);
    cr_assert_eq(pgw_parse_param_oid(&p, 0), 25);

    const char *params[] = {"abc", NULL, ""};
    pgw_buf_reset(&b);
    pgw_build_bind_text(&b, "po1", "st1", params, 3, 1);
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    pgw_bind_t bd;
    cr_assert_eq(pgw_decode_bind(&f, &bd), 0);
    TU_ASSERT_STR(bd.portal, "po1");
    TU_ASSERT_STR(bd.stmt, "st1");
    cr_assert_eq(bd.nparams, 3);
    cr_assert_eq(pgw_bind_param_format(&bd, 2), 0);
    cr_assert_eq(pgw_bind_result_format(&bd, 7), 1);
    size_t off = 0;
    const uint8_t *v;
    int32_t len;
    cr_assert_eq(pgw_bind_next_param(&bd, &off, &v, &len), 1);
    cr_assert_eq(len, 3);
    cr_assert_eq(pgw_bind_next_param(&bd, &off, &v, &len), 1);
    cr_assert_eq(len, -1);
    cr_assert_eq(pgw_bind_next_param(&bd, &off, &v, &len), 1);
    cr_assert_eq(len, 0);
    cr_assert_eq(pgw_bind_next_param(&bd, &off, &v, &len), 0);

    pgw_buf_reset(&b);
    pgw_build_describe(&b, 'S', "st1");
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_session_fe, sizeof cap_session_fe, 'D', 0, &ml);
    assert_same(&b, cm, ml, "Describe");

    pgw_buf_reset(&b);
    pgw_build_execute(&b, "po1", 1);
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_session_fe, sizeof cap_session_fe, 'E', 0, &ml);
    assert_same(&b, cm, ml, "Execute");
    pgw_execute_t ex;
    cr_assert_eq(pgw_decode_execute(&f, &ex), 0);
    cr_assert_eq(ex.max_rows, 1);

    pgw_buf_reset(&b);
    pgw_build_close(&b, 'P', "po1");
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    cm = find_msg(cap_session_fe, sizeof cap_session_fe, 'C', 0, &ml);
    assert_same(&b, cm, ml, "Close");

    static const struct {
        void (*fn)(pgw_buf_t *);
        uint8_t tag;
    } empties[] = {{pgw_build_sync, 'S'}, {pgw_build_flush, 'H'}, {pgw_build_terminate, 'X'}};
    for (size_t i = 0; i < 3; i++) {
        pgw_buf_reset(&b);
        empties[i].fn(&b);
        f = one(&b, PGW_PHASE_NORMAL, PGW_F);
        cr_assert_eq(f.tag, empties[i].tag);
        cr_assert_eq(pgw_decode_empty(&f), 0);
        cm = find_msg(cap_session_fe, sizeof cap_session_fe, empties[i].tag, 0, &ml);
        assert_same(&b, cm, ml, pgw_msg_name(f.type));
    }
    pgw_buf_free(&b);
}

/* One builder call per message type, for the buffer-mechanics tests. */
static void build_sample(pgw_buf_t *b)
{
    pgw_build_error(b, "FATAL", "28P01", "password authentication failed for user \"x\"", NULL,
                    NULL);
}

Test(build, fixed_buffer_overflow_at_every_size)
{
    pgw_buf_t g;
    pgw_buf_init(&g);
    build_sample(&g);
    cr_assert_not(pgw_buf_failed(&g));
    for (size_t cap = 0; cap <= g.len; cap++) {
        uint8_t *mem = malloc(cap ? cap : 1);
        pgw_buf_t b;
        pgw_buf_init_fixed(&b, mem, cap);
        build_sample(&b);
        if (cap < g.len) {
            cr_assert(pgw_buf_failed(&b), "capacity %zu of %zu", cap, g.len);
            cr_assert_leq(b.len, cap);
            /* Failure is sticky: later appends are dropped, even ones that would fit. */
            size_t before = b.len;
            pgw_build_sync(&b);
            cr_assert(pgw_buf_failed(&b));
            cr_assert_eq(b.len, before);
        } else {
            cr_assert_not(pgw_buf_failed(&b));
            assert_same(&b, g.data, g.len, "fixed buffer");
        }
        /* Reset clears the failure and keeps the caller's memory. */
        pgw_buf_reset(&b);
        cr_assert_not(pgw_buf_failed(&b));
        cr_assert_eq(b.data, mem);
        pgw_buf_free(&b);       /* must not free caller memory */
        free(mem);
    }
    pgw_buf_free(&g);
}

Test(build, growable_buffer_holds_many_messages)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    for (int i = 0; i < 1000; i++) {
        pgw_data_row_begin(&b, 1);
        pgw_data_row_put(&b, "0123456789", 10);
        pgw_data_row_end(&b);
    }
    cr_assert_not(pgw_buf_failed(&b));
    cr_assert_eq(b.len, 1000u * 21);
    size_t off = 0;
    int count = 0;
    while (off < b.len) {
        pgw_frame_t f;
        size_t need;
        int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, b.data + off, b.len - off, &f, &need);
        cr_assert_eq(rc, 21);
        cr_assert_eq(pgw_validate(&f, PGW_B), 0);
        off += (size_t)rc;
        count++;
    }
    cr_assert_eq(count, 1000);
    size_t len;
    uint8_t *p = pgw_buf_steal(&b, &len);
    cr_assert_eq(len, 21000);
    cr_assert_not_null(p);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    free(p);
    /* The buffer is usable again after steal. */
    pgw_build_sync(&b);
    cr_assert_eq(b.len, 5);
    pgw_buf_free(&b);
}

Test(build, raw_message_api_and_misuse)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    /* A message nobody has a builder for, built by hand. */
    pgw_msg_begin(&b, 'W');
    pgw_put_u8(&b, 0);
    pgw_put_i16(&b, 1);
    pgw_put_i16(&b, 0);
    pgw_msg_end(&b);
    pgw_frame_t f = one(&b, PGW_PHASE_NORMAL, PGW_B);
    pgw_copy_response_t cr;
    cr_assert_eq(pgw_decode_copy_response(&f, &cr), 0);
    cr_assert_eq(f.type, PGW_MSG_COPY_BOTH_RESPONSE);
    cr_assert_eq(cr.ncols, 1);

    pgw_buf_reset(&b);
    pgw_msg_begin(&b, 'Q');
    pgw_put_str(&b, (pgw_str_t){"SELECT 1xyz", 8});
    pgw_msg_end(&b);
    f = one(&b, PGW_PHASE_NORMAL, PGW_F);
    pgw_query_t q;
    cr_assert_eq(pgw_decode_query(&f, &q), 0);
    TU_ASSERT_STR(q.sql, "SELECT 1");

    /* Appending whole pre-encoded messages. */
    pgw_buf_reset(&b);
    pgw_buf_append(&b, cap_session_be, sizeof cap_session_be);
    cr_assert_eq(b.len, sizeof cap_session_be);

    /* end without begin, and begin twice, set the failure flag. */
    pgw_buf_reset(&b);
    pgw_msg_end(&b);
    cr_assert(pgw_buf_failed(&b));
    pgw_buf_reset(&b);
    pgw_msg_begin(&b, 'Q');
    pgw_msg_begin(&b, 'Q');
    cr_assert(pgw_buf_failed(&b));
    pgw_msg_end(&b);
    cr_assert(pgw_buf_failed(&b));
    size_t len = 7;
    cr_assert_null(pgw_buf_steal(&b, &len), "a failed buffer hands out nothing");
    cr_assert_eq(len, 0);
    cr_assert_not(pgw_buf_failed(&b));
    pgw_buf_free(&b);

    /* Steal from a fixed buffer returns a heap copy. */
    uint8_t mem[16];
    pgw_buf_init_fixed(&b, mem, sizeof mem);
    pgw_build_sync(&b);
    uint8_t *p = pgw_buf_steal(&b, &len);
    cr_assert_eq(len, 5);
    cr_assert(p && p != mem && memcmp(p, "S\0\0\0\4", 5) == 0);
    free(p);
    cr_assert_eq(b.len, 0);
    pgw_buf_free(&b);
}
