/*
 * Replays the byte streams captured from PostgreSQL 15 (captured_pg15.h): every stream must
 * frame into whole messages with the phase a real proxy would use, every message must validate,
 * every proper prefix of every message must ask for exactly the missing bytes, and the messages
 * of interest must decode to what PostgreSQL meant.
 */
#include "test_util.h"

#include "captured_pg15.h"

typedef struct walk {
    pgw_frame_t msgs[128];
    size_t offs[128];
    int n;
} walk_t;

/* Frames a whole stream. Frontend streams start in the startup phase and stay there after an
   SSLRequest/GSSENCRequest, as a proxy would; backend streams are always in the normal phase. */
static void walk_stream(const uint8_t *s, size_t len, pgw_dir_t from, walk_t *w)
{
    pgw_phase_t phase = from == PGW_F ? PGW_PHASE_STARTUP : PGW_PHASE_NORMAL;
    size_t off = 0;
    w->n = 0;
    while (off < len) {
        cr_assert_lt(w->n, 128);
        pgw_frame_t f;
        size_t need;
        int rc = pgw_frame_next(phase, from, s + off, len - off, &f, &need);
        cr_assert_gt(rc, 0, "message %d at %zu: %s", w->n, off, pgw_strerror(rc));
        int v = pgw_validate(&f, from);
        cr_assert_eq(v, 0, "%s at %zu: %s", pgw_msg_name(f.type), off, pgw_strerror(v));
        /* Every proper prefix asks for more, exactly. */
        size_t hdr = phase == PGW_PHASE_STARTUP ? 4 : 5;
        for (size_t k = 0; k < (size_t)rc; k++) {
            pgw_frame_t g;
            size_t nd = 0;
            cr_assert_eq(pgw_frame_next(phase, from, s + off, k, &g, &nd), PGW_ENEEDMORE);
            cr_assert_eq(nd, k < hdr ? hdr - k : (size_t)rc - k);
        }
        if (phase == PGW_PHASE_NORMAL) {
            pgw_frame_t p;
            cr_assert_eq(pgw_frame_peek(from, s + off, len - off, &p), 5);
            cr_assert_eq(p.total_len, f.total_len);
            cr_assert_eq(p.type, f.type);
        }
        if (f.type == PGW_MSG_STARTUP || f.type == PGW_MSG_CANCEL_REQUEST)
            phase = PGW_PHASE_NORMAL;
        w->offs[w->n] = off;
        w->msgs[w->n++] = f;
        off += (size_t)rc;
    }
    cr_assert_eq(off, len);
}

static const char *types_of(const walk_t *w, char *buf)
{
    int i;
    for (i = 0; i < w->n; i++)
        buf[i] = w->msgs[i].tag ? (char)w->msgs[i].tag : '0';
    buf[i] = 0;
    return buf;
}

Test(captured, scram_login)
{
    walk_t w;
    char t[130];
    walk_stream(cap_scram_fe, sizeof cap_scram_fe, PGW_F, &w);
    cr_assert_str_eq(types_of(&w, t), "0ppQX");
    pgw_startup_t st;
    cr_assert_eq(pgw_decode_startup(&w.msgs[0], &st), 0);
    cr_assert_eq(st.version, PGW_PROTO_3_0);
    TU_ASSERT_STR(pgw_startup_get(&st, "user"), "pgw_scram");
    TU_ASSERT_STR(pgw_startup_get(&st, "database"), "postgres");
    TU_ASSERT_STR(pgw_startup_get(&st, "application_name"), "pgw");

    walk_stream(cap_scram_be, sizeof cap_scram_be, PGW_B, &w);
    cr_assert_str_eq(types_of(&w, t), "RRRRSSSSSSSSSSSSSKZTDCZ");
    pgw_auth_t a;
    cr_assert_eq(pgw_decode_auth(&w.msgs[0], &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_SASL);
    cr_assert(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256"));
    cr_assert_eq(pgw_decode_auth(&w.msgs[3], &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_OK);
    pgw_param_status_t ps;
    cr_assert_eq(pgw_decode_param_status(&w.msgs[13], &ps), 0);
    TU_ASSERT_STR(ps.name, "server_version");
    pgw_cancel_t k;
    cr_assert_eq(pgw_decode_backend_key(&w.msgs[17], &k), 0);
    cr_assert_eq(k.pid, 0x2956);
    uint8_t status;
    cr_assert_eq(pgw_decode_ready(&w.msgs[18], &status), 0);
    cr_assert_eq(status, 'I');
}

Test(captured, md5_login)
{
    walk_t w;
    char t[130];
    walk_stream(cap_md5_fe, sizeof cap_md5_fe, PGW_F, &w);
    cr_assert_str_eq(types_of(&w, t), "0pQX");
    pgw_str_t pw;
    cr_assert_eq(pgw_decode_password(&w.msgs[1], &pw), 0);
    TU_ASSERT_STR(pw, "md542beccf2af01c63e2e4bc95e00655953");
    walk_stream(cap_md5_be, sizeof cap_md5_be, PGW_B, &w);
    pgw_auth_t a;
    cr_assert_eq(pgw_decode_auth(&w.msgs[0], &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_MD5);
    cr_assert(memcmp(a.md5_salt, "\xfc\xcd\x65\x80", 4) == 0);
}

Test(captured, startup_requests)
{
    walk_t w;
    walk_stream(cap_ssl_fe, sizeof cap_ssl_fe, PGW_F, &w);
    cr_assert_eq(w.n, 1);
    cr_assert_eq(w.msgs[0].type, PGW_MSG_SSL_REQUEST);
    walk_stream(cap_gssenc_fe, sizeof cap_gssenc_fe, PGW_F, &w);
    cr_assert_eq(w.msgs[0].type, PGW_MSG_GSSENC_REQUEST);
    walk_stream(cap_cancel_fe, sizeof cap_cancel_fe, PGW_F, &w);
    cr_assert_eq(w.msgs[0].type, PGW_MSG_CANCEL_REQUEST);
    pgw_cancel_t c;
    cr_assert_eq(pgw_decode_cancel(&w.msgs[0], &c), 0);
    cr_assert_eq(c.pid, 12345);
    cr_assert_eq(c.key, 67890);
}

Test(captured, session_frontend)
{
    walk_t w;
    char t[130];
    walk_stream(cap_session_fe, sizeof cap_session_fe, PGW_F, &w);
    cr_assert_str_eq(types_of(&w, t), "0QQQQQQQQddcQQfQPDBDECCSPBDEHSFQX");
    pgw_query_t q;
    cr_assert_eq(pgw_decode_query(&w.msgs[2], &q), 0);
    TU_ASSERT_STR(q.sql, "");
    pgw_bind_t b;
    cr_assert_eq(pgw_decode_bind(&w.msgs[18], &b), 0);
    TU_ASSERT_STR(b.portal, "po1");
    size_t off = 0;
    const uint8_t *v;
    int32_t len;
    cr_assert_eq(pgw_bind_next_param(&b, &off, &v, &len), 1);
    cr_assert_eq(len, 3);
    cr_assert(memcmp(v, "abc", 3) == 0);
    pgw_copy_fail_t cf;
    cr_assert_eq(pgw_decode_copy_fail(&w.msgs[14], &cf), 0);
    TU_ASSERT_STR(cf.message, "client gave up");
}

Test(captured, session_backend)
{
    walk_t w;
    char t[130];
    walk_stream(cap_session_be, sizeof cap_session_be, PGW_B, &w);
    cr_assert_str_eq(types_of(&w, t),
                     "RSSSSSSSSSSSSSKZTDCZIZEZNCZCCAZCZCZGCZHddcCZGEZCZ1tT2TDs33Z12nCSZVZTDCZ");
    pgw_error_fields_t e;
    cr_assert_eq(pgw_decode_error(&w.msgs[22], &e), 0);
    TU_ASSERT_STR(e.severity, "ERROR");
    TU_ASSERT_STR(e.sqlstate, "22012");
    TU_ASSERT_STR(e.message, "division by zero");
    size_t off = 0;
    uint8_t code;
    pgw_str_t v;
    int nfields = 0;
    bool saw_routine = false;
    while (pgw_error_next_field(&e, &off, &code, &v)) {
        nfields++;
        saw_routine |= code == 'R';
    }
    cr_assert(saw_routine && nfields >= 6);
    cr_assert_eq(pgw_decode_error(&w.msgs[24], &e), 0);
    TU_ASSERT_STR(e.severity, "NOTICE");
    TU_ASSERT_STR(e.message, "hello 42");

    pgw_notification_t n;
    cr_assert_eq(pgw_decode_notification(&w.msgs[29], &n), 0);
    TU_ASSERT_STR(n.channel, "pgw_chan");
    TU_ASSERT_STR(n.payload, "payload");
    pgw_cancel_t k;
    cr_assert_eq(pgw_decode_backend_key(&w.msgs[14], &k), 0);
    cr_assert_eq(n.pid, k.pid, "the notifying backend is this one");

    pgw_copy_response_t cr;
    cr_assert_eq(pgw_decode_copy_response(&w.msgs[35], &cr), 0);
    cr_assert_eq(w.msgs[35].type, PGW_MSG_COPY_IN_RESPONSE);
    cr_assert_eq(cr.format, 0);
    cr_assert_eq(cr.ncols, 2);
    cr_assert_eq(pgw_decode_copy_response(&w.msgs[38], &cr), 0);
    cr_assert_eq(w.msgs[38].type, PGW_MSG_COPY_OUT_RESPONSE);
    cr_assert_eq(pgw_decode_error(&w.msgs[45], &e), 0);
    TU_ASSERT_STR(e.sqlstate, "57014");
    uint8_t status;
    cr_assert_eq(pgw_decode_ready(&w.msgs[46], &status), 0);
    cr_assert_eq(status, 'E');

    pgw_param_description_t pd;
    cr_assert_eq(pgw_decode_param_description(&w.msgs[50], &pd), 0);
    cr_assert_eq(pd.nparams, 1);
    cr_assert_eq(tu_get32(pd.oids), 25);
    pgw_row_description_t rd;
    cr_assert_eq(pgw_decode_row_description(&w.msgs[51], &rd), 0);
    cr_assert_eq(rd.nfields, 2);
    pgw_field_desc_t d;
    off = 0;
    cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 1);
    TU_ASSERT_STR(d.name, "g");
    cr_assert_eq(d.type_oid, 23);
    cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 1);
    TU_ASSERT_STR(d.name, "text");
    cr_assert_eq(d.type_oid, 25);
    pgw_data_row_t dr;
    cr_assert_eq(pgw_decode_data_row(&w.msgs[54], &dr), 0);
    cr_assert_eq(dr.ncols, 2);
    cr_assert_eq(w.msgs[55].type, PGW_MSG_PORTAL_SUSPENDED);
    cr_assert_eq(w.msgs[61].type, PGW_MSG_NO_DATA);
    pgw_param_status_t ps;
    cr_assert_eq(pgw_decode_param_status(&w.msgs[63], &ps), 0);
    TU_ASSERT_STR(ps.value, "pgw2");
    cr_assert_eq(w.msgs[65].type, PGW_MSG_FUNCTION_CALL_RESPONSE);
    cr_assert(memcmp(w.msgs[65].body, "\0\0\0\4\0\0\0\x2a", 8) == 0, "int4pl(2, 40) = 42");
}

Test(captured, negotiate_and_fatal)
{
    walk_t w;
    walk_stream(cap_negotiate_fe, sizeof cap_negotiate_fe, PGW_F, &w);
    pgw_startup_t st;
    cr_assert_eq(pgw_decode_startup(&w.msgs[0], &st), 0);
    cr_assert_eq(st.version, (3u << 16) | 5);
    TU_ASSERT_STR(pgw_startup_get(&st, "_pq_.pgw_opt"), "1");
    walk_stream(cap_negotiate_be, sizeof cap_negotiate_be, PGW_B, &w);
    pgw_negotiate_t ng;
    cr_assert_eq(pgw_decode_negotiate(&w.msgs[0], &ng), 0);
    cr_assert_eq(ng.newest_minor, 0);
    cr_assert_eq(ng.nunrecognized, 1);
    cr_assert_str_eq((const char *)ng.options, "_pq_.pgw_opt");

    walk_stream(cap_fatal_fe, sizeof cap_fatal_fe, PGW_F, &w);
    walk_stream(cap_fatal_be, sizeof cap_fatal_be, PGW_B, &w);
    pgw_error_fields_t e;
    cr_assert_eq(pgw_decode_error(&w.msgs[1], &e), 0);
    TU_ASSERT_STR(e.severity_nl, "FATAL");
    TU_ASSERT_STR(e.sqlstate, "3D000");
}

Test(captured, garbage_and_truncation_of_every_captured_message)
{
    /* Each captured message with one extra byte or one byte fewer inside its length word must
       not validate, except where the body is free-form (CopyData, 'p', SASL data). */
    static const struct {
        const uint8_t *s;
        size_t len;
        pgw_dir_t from;
    } streams[] = {
        {cap_scram_be, sizeof cap_scram_be, PGW_B},
        {cap_md5_be, sizeof cap_md5_be, PGW_B},
        {cap_session_fe, sizeof cap_session_fe, PGW_F},
        {cap_session_be, sizeof cap_session_be, PGW_B},
        {cap_negotiate_be, sizeof cap_negotiate_be, PGW_B},
    };
    int checked = 0;
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        walk_t w;
        walk_stream(streams[i].s, streams[i].len, streams[i].from, &w);
        for (int j = 0; j < w.n; j++) {
            pgw_frame_t *f = &w.msgs[j];
            if (f->type == PGW_MSG_STARTUP || f->type == PGW_MSG_COPY_DATA ||
                f->type == PGW_MSG_PASSWORD)
                continue;
            pgw_auth_t a;
            if (f->type == PGW_MSG_AUTHENTICATION && pgw_decode_auth(f, &a) == 0 &&
                (a.code == PGW_AUTH_SASL_CONTINUE || a.code == PGW_AUTH_SASL_FINAL))
                continue;
            const uint8_t *m = streams[i].s + w.offs[j];
            uint8_t g[2048], tr[2048];
            size_t gn = tu_add_garbage(PGW_PHASE_NORMAL, m, f->total_len, g, 0);
            pgw_frame_t gf = tu_frame(PGW_PHASE_NORMAL, streams[i].from, g, gn);
            cr_assert_eq(pgw_validate(&gf, streams[i].from), PGW_EMALFORMED, "%s + garbage",
                         pgw_msg_name(f->type));
            if (f->body_len > 0) {
                size_t tn = tu_drop_last(PGW_PHASE_NORMAL, m, f->total_len, tr);
                pgw_frame_t tf = tu_frame(PGW_PHASE_NORMAL, streams[i].from, tr, tn);
                cr_assert_eq(pgw_validate(&tf, streams[i].from), PGW_EMALFORMED,
                             "%s truncated", pgw_msg_name(f->type));
            }
            checked++;
        }
    }
    cr_assert_gt(checked, 100);
}
