/*
 * Decoder tests with hand-built byte vectors. A table runs every message type in both
 * directions through its decoder three ways: as built (must decode), with one garbage byte
 * appended inside the length word (the all-bytes-consumed check must reject it), and with the
 * last byte dropped (a truncated body must be rejected), plus pgw_validate on the same vectors.
 * The tests after the table check decoded field values and each decoder's semantic rejections.
 */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>

/* Builds a message from a type byte (0 = startup phase) and a body into out; returns length. */
static size_t mk(uint8_t tag, const uint8_t *body, size_t blen, uint8_t *out)
{
    size_t off = 0;
    if (tag)
        out[off++] = tag;
    tu_put32(out + off, (uint32_t)(blen + 4));
    if (blen)
        memcpy(out + off + 4, body, blen);
    return off + 4 + blen;
}

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

/* Decoder wrappers with one signature, so a table can name them. */
#define WRAP(fn, T)                                                                          \
    static int w_##fn(const pgw_frame_t *f)                                                  \
    {                                                                                        \
        T o;                                                                                 \
        memset(&o, 0x5a, sizeof o);                                                          \
        return pgw_decode_##fn(f, &o);                                                       \
    }
WRAP(startup, pgw_startup_t)
WRAP(cancel, pgw_cancel_t)
WRAP(query, pgw_query_t)
WRAP(parse, pgw_parse_t)
WRAP(bind, pgw_bind_t)
WRAP(describe, pgw_target_t)
WRAP(close, pgw_target_t)
WRAP(execute, pgw_execute_t)
WRAP(copy_fail, pgw_copy_fail_t)
WRAP(password, pgw_str_t)
WRAP(sasl_initial, pgw_sasl_initial_t)
WRAP(auth, pgw_auth_t)
WRAP(param_status, pgw_param_status_t)
WRAP(backend_key, pgw_cancel_t)
WRAP(ready, uint8_t)
WRAP(command_complete, pgw_command_complete_t)
WRAP(error, pgw_error_fields_t)
WRAP(row_description, pgw_row_description_t)
WRAP(data_row, pgw_data_row_t)
WRAP(notification, pgw_notification_t)
WRAP(param_description, pgw_param_description_t)
WRAP(copy_response, pgw_copy_response_t)
WRAP(negotiate, pgw_negotiate_t)
static int w_empty(const pgw_frame_t *f) { return pgw_decode_empty(f); }
static int w_ssl(const pgw_frame_t *f) { return pgw_decode_ssl_request(f); }
static int w_sasl_response(const pgw_frame_t *f)
{
    const uint8_t *d;
    uint32_t n;
    return pgw_decode_sasl_response(f, &d, &n);
}
static int w_none(const pgw_frame_t *f) { (void)f; return 0; }   /* validate only */

/* What must happen to a vector with a garbage byte appended / its last byte dropped. */
enum { REJECT = 0, ACCEPT = 1, FRAMING = 2, SKIP = 3 };

typedef struct vec {
    const char *name;
    uint8_t tag;              /* 0: startup phase */
    pgw_dir_t from;
    pgw_msg_t type;
    const uint8_t *body;
    size_t blen;
    int (*decode)(const pgw_frame_t *);
    int garbage;              /* REJECT: decoder says PGW_EMALFORMED; FRAMING: framing does */
    int truncated;
} vec_t;

static const vec_t vecs[] = {
    /* startup phase */
    {"StartupMessage", 0, PGW_F, PGW_MSG_STARTUP,
     B(0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'b', 'o', 'b', 0, 'd', 'a', 't', 'a', 'b', 'a', 's', 'e',
       0, 'd', 'b', 0, 0), w_startup, REJECT, REJECT},
    {"CancelRequest", 0, PGW_F, PGW_MSG_CANCEL_REQUEST,
     B(0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39, 0, 1, 0x09, 0x32), w_cancel, FRAMING, FRAMING},
    {"SSLRequest", 0, PGW_F, PGW_MSG_SSL_REQUEST, B(0x04, 0xd2, 0x16, 0x2f), w_ssl, FRAMING,
     FRAMING},
    {"GSSENCRequest", 0, PGW_F, PGW_MSG_GSSENC_REQUEST, B(0x04, 0xd2, 0x16, 0x30), w_ssl, FRAMING,
     FRAMING},
    /* frontend */
    {"Query", 'Q', PGW_F, PGW_MSG_QUERY, B('S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0), w_query,
     REJECT, REJECT},
    {"Parse", 'P', PGW_F, PGW_MSG_PARSE,
     B('s', '1', 0, 's', 'e', 'l', 'e', 'c', 't', ' ', '$', '1', 0, 0, 1, 0, 0, 0, 23), w_parse,
     REJECT, REJECT},
    {"Bind", 'B', PGW_F, PGW_MSG_BIND,
     B('p', 0, 's', 0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff, 0, 1, 0,
       0), w_bind, REJECT, REJECT},
    {"Describe", 'D', PGW_F, PGW_MSG_DESCRIBE, B('S', 's', '1', 0), w_describe, REJECT, REJECT},
    {"Close", 'C', PGW_F, PGW_MSG_CLOSE, B('P', 'p', 0), w_close, REJECT, REJECT},
    {"Execute", 'E', PGW_F, PGW_MSG_EXECUTE, B('p', 0, 0, 0, 0, 10), w_execute, REJECT, REJECT},
    {"Sync", 'S', PGW_F, PGW_MSG_SYNC, NULL, 0, w_empty, REJECT, SKIP},
    {"Flush", 'H', PGW_F, PGW_MSG_FLUSH, NULL, 0, w_empty, REJECT, SKIP},
    {"Terminate", 'X', PGW_F, PGW_MSG_TERMINATE, NULL, 0, w_empty, REJECT, SKIP},
    {"CopyDone(F)", 'c', PGW_F, PGW_MSG_COPY_DONE, NULL, 0, w_empty, REJECT, SKIP},
    {"CopyData(F)", 'd', PGW_F, PGW_MSG_COPY_DATA, B('1', '\t', 'x', '\n'), w_none, ACCEPT,
     ACCEPT},
    {"CopyFail", 'f', PGW_F, PGW_MSG_COPY_FAIL, B('o', 'o', 'p', 's', 0), w_copy_fail, REJECT,
     REJECT},
    {"PasswordMessage", 'p', PGW_F, PGW_MSG_PASSWORD, B('p', 'w', 0), w_password, REJECT, REJECT},
    {"SASLInitialResponse", 'p', PGW_F, PGW_MSG_PASSWORD,
     B('S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6', 0, 0, 0, 0, 3, 'a', 'b',
       'c'), w_sasl_initial, REJECT, REJECT},
    {"SASLResponse", 'p', PGW_F, PGW_MSG_PASSWORD, B('c', '=', 'x'), w_sasl_response, ACCEPT,
     ACCEPT},
    {"FunctionCall", 'F', PGW_F, PGW_MSG_FUNCTION_CALL,
     B(0, 0, 0, 0xb1, 0, 1, 0, 1, 0, 2, 0, 0, 0, 4, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 1),
     w_none, REJECT, REJECT},
    /* backend */
    {"AuthenticationOk", 'R', PGW_B, PGW_MSG_AUTHENTICATION, B(0, 0, 0, 0), w_auth, REJECT,
     REJECT},
    {"AuthenticationCleartextPassword", 'R', PGW_B, PGW_MSG_AUTHENTICATION, B(0, 0, 0, 3), w_auth,
     REJECT, REJECT},
    {"AuthenticationMD5Password", 'R', PGW_B, PGW_MSG_AUTHENTICATION,
     B(0, 0, 0, 5, 1, 2, 3, 4), w_auth, REJECT, REJECT},
    {"AuthenticationSASL", 'R', PGW_B, PGW_MSG_AUTHENTICATION,
     B(0, 0, 0, 10, 'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6', 0, 0), w_auth,
     REJECT, REJECT},
    {"AuthenticationSASLContinue", 'R', PGW_B, PGW_MSG_AUTHENTICATION,
     B(0, 0, 0, 11, 'r', '=', 'x'), w_auth, ACCEPT, ACCEPT},
    {"AuthenticationSASLFinal", 'R', PGW_B, PGW_MSG_AUTHENTICATION,
     B(0, 0, 0, 12, 'v', '=', 'x'), w_auth, ACCEPT, ACCEPT},
    {"BackendKeyData", 'K', PGW_B, PGW_MSG_BACKEND_KEY_DATA, B(0, 0, 0x30, 0x39, 0, 1, 0x09, 0x32),
     w_backend_key, REJECT, REJECT},
    {"ParameterStatus", 'S', PGW_B, PGW_MSG_PARAMETER_STATUS, B('a', 0, 'b', 0), w_param_status,
     REJECT, REJECT},
    {"ReadyForQuery", 'Z', PGW_B, PGW_MSG_READY_FOR_QUERY, B('I'), w_ready, REJECT, REJECT},
    {"CommandComplete", 'C', PGW_B, PGW_MSG_COMMAND_COMPLETE, B('S', 'E', 'L', 'E', 'C', 'T', ' ',
     '1', 0), w_command_complete, REJECT, REJECT},
    {"ErrorResponse", 'E', PGW_B, PGW_MSG_ERROR_RESPONSE,
     B('S', 'E', 'R', 'R', 'O', 'R', 0, 'V', 'E', 'R', 'R', 'O', 'R', 0, 'C', '2', '2', '0', '1',
       '2', 0, 'M', 'd', 'i', 'v', 0, 0), w_error, REJECT, REJECT},
    {"NoticeResponse", 'N', PGW_B, PGW_MSG_NOTICE_RESPONSE,
     B('S', 'N', 'O', 'T', 'I', 'C', 'E', 0, 'M', 'h', 'i', 0, 0), w_error, REJECT, REJECT},
    {"RowDescription", 'T', PGW_B, PGW_MSG_ROW_DESCRIPTION,
     B(0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0),
     w_row_description, REJECT, REJECT},
    {"DataRow", 'D', PGW_B, PGW_MSG_DATA_ROW,
     B(0, 2, 0, 0, 0, 1, '1', 0xff, 0xff, 0xff, 0xff), w_data_row, REJECT, REJECT},
    {"NotificationResponse", 'A', PGW_B, PGW_MSG_NOTIFICATION_RESPONSE,
     B(0, 0, 0, 7, 'c', 'h', 0, 'p', 'l', 0), w_notification, REJECT, REJECT},
    {"ParameterDescription", 't', PGW_B, PGW_MSG_PARAMETER_DESCRIPTION,
     B(0, 2, 0, 0, 0, 23, 0, 0, 0, 25), w_param_description, REJECT, REJECT},
    {"CopyInResponse", 'G', PGW_B, PGW_MSG_COPY_IN_RESPONSE, B(0, 0, 2, 0, 0, 0, 0),
     w_copy_response, REJECT, REJECT},
    {"CopyOutResponse", 'H', PGW_B, PGW_MSG_COPY_OUT_RESPONSE, B(1, 0, 1, 0, 1),
     w_copy_response, REJECT, REJECT},
    {"CopyBothResponse", 'W', PGW_B, PGW_MSG_COPY_BOTH_RESPONSE, B(0, 0, 0), w_copy_response,
     REJECT, REJECT},
    {"NegotiateProtocolVersion", 'v', PGW_B, PGW_MSG_NEGOTIATE_PROTOCOL_VERSION,
     B(0, 0, 0, 0, 0, 0, 0, 1, '_', 'p', 'q', '_', '.', 'x', 0), w_negotiate, REJECT, REJECT},
    {"FunctionCallResponse", 'V', PGW_B, PGW_MSG_FUNCTION_CALL_RESPONSE,
     B(0, 0, 0, 2, '4', '2'), w_none, REJECT, REJECT},
    {"ParseComplete", '1', PGW_B, PGW_MSG_PARSE_COMPLETE, NULL, 0, w_empty, REJECT, SKIP},
    {"BindComplete", '2', PGW_B, PGW_MSG_BIND_COMPLETE, NULL, 0, w_empty, REJECT, SKIP},
    {"CloseComplete", '3', PGW_B, PGW_MSG_CLOSE_COMPLETE, NULL, 0, w_empty, REJECT, SKIP},
    {"NoData", 'n', PGW_B, PGW_MSG_NO_DATA, NULL, 0, w_empty, REJECT, SKIP},
    {"EmptyQueryResponse", 'I', PGW_B, PGW_MSG_EMPTY_QUERY_RESPONSE, NULL, 0, w_empty, REJECT,
     SKIP},
    {"PortalSuspended", 's', PGW_B, PGW_MSG_PORTAL_SUSPENDED, NULL, 0, w_empty, REJECT, SKIP},
    {"CopyDone(B)", 'c', PGW_B, PGW_MSG_COPY_DONE, NULL, 0, w_empty, REJECT, SKIP},
    {"CopyData(B)", 'd', PGW_B, PGW_MSG_COPY_DATA, B('x'), w_none, ACCEPT, ACCEPT},
};

static void check_variant(const vec_t *v, const uint8_t *m, size_t n, int expect, const char *what)
{
    pgw_phase_t phase = v->tag ? PGW_PHASE_NORMAL : PGW_PHASE_STARTUP;
    pgw_frame_t f;
    size_t need;
    int rc = pgw_frame_next(phase, v->from, m, n, &f, &need);
    if (expect == FRAMING) {
        cr_assert_eq(rc, PGW_EMALFORMED, "%s %s: framing gave %d", v->name, what, rc);
        return;
    }
    cr_assert_eq(rc, (int)n, "%s %s: framing gave %d", v->name, what, rc);
    int val = pgw_validate(&f, v->from);
    int d = v->decode == w_none ? val : v->decode(&f);
    if (expect == ACCEPT) {
        cr_assert_eq(d, 0, "%s %s: decoder gave %s", v->name, what, pgw_strerror(d));
        cr_assert_eq(val, 0, "%s %s: validate gave %s", v->name, what, pgw_strerror(val));
    } else {
        cr_assert_eq(d, PGW_EMALFORMED, "%s %s: decoder gave %s", v->name, what, pgw_strerror(d));
        if (v->decode != w_sasl_initial && v->decode != w_password)   /* 'p' is not validated */
            cr_assert_eq(val, PGW_EMALFORMED, "%s %s: validate gave %s", v->name, what,
                         pgw_strerror(val));
    }
}

Test(decode, table_good_garbage_truncated)
{
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        const vec_t *v = &vecs[i];
        uint8_t m[128], g[129], t[128];
        size_t n = mk(v->tag, v->body, v->blen, m);
        check_variant(v, m, n, ACCEPT, "as built");
        pgw_phase_t phase = v->tag ? PGW_PHASE_NORMAL : PGW_PHASE_STARTUP;
        pgw_frame_t f = tu_frame(phase, v->from, m, n);
        cr_assert_eq(f.type, v->type, "%s: type %s", v->name, pgw_msg_name(f.type));
        size_t gn = tu_add_garbage(phase, m, n, g, 'x');
        check_variant(v, g, gn, v->garbage, "with a garbage byte");
        gn = tu_add_garbage(phase, m, n, g, 0);
        check_variant(v, g, gn, v->garbage, "with a NUL garbage byte");
        if (v->truncated != SKIP) {
            size_t tn = tu_drop_last(phase, m, n, t);
            check_variant(v, t, tn, v->truncated, "truncated");
        }
    }
}

Test(decode, every_decoder_rejects_other_types)
{
    /* A Sync frame handed to every typed decoder is PGW_EBADTYPE (and vice versa). */
    uint8_t m[5];
    size_t n = mk('S', NULL, 0, m);
    pgw_frame_t sync = tu_frame(PGW_PHASE_NORMAL, PGW_F, m, n);
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        if (vecs[i].decode == w_empty || vecs[i].decode == w_none)
            continue;
        cr_assert_eq(vecs[i].decode(&sync), PGW_EBADTYPE, "%s", vecs[i].name);
    }
    uint8_t q[32];
    n = mk('Q', (const uint8_t *)"x", 2, q);
    pgw_frame_t query = tu_frame(PGW_PHASE_NORMAL, PGW_F, q, n);
    cr_assert_eq(pgw_decode_empty(&query), PGW_EBADTYPE);
    cr_assert_eq(pgw_validate(&query, PGW_B), PGW_EBADTYPE, "Query is not a backend message");
    cr_assert_eq(pgw_validate(&query, PGW_FB), PGW_EBADTYPE);
    cr_assert_eq(pgw_validate(&query, PGW_F), 0);
}

static pgw_frame_t frame_body(uint8_t *store, uint8_t tag, pgw_dir_t from, const uint8_t *body,
                              size_t blen)
{
    size_t n = mk(tag, body, blen, store);
    return tu_frame(tag ? PGW_PHASE_NORMAL : PGW_PHASE_STARTUP, from, store, n);
}

Test(decode, startup_fields)
{
    uint8_t m[64];
    pgw_frame_t f = frame_body(m, 0, PGW_F, vecs[0].body, vecs[0].blen);
    pgw_startup_t s;
    cr_assert_eq(pgw_decode_startup(&f, &s), 0);
    cr_assert_eq(s.version, PGW_PROTO_3_0);
    cr_assert_eq(s.nparams, 2);
    TU_ASSERT_STR(s.names[0], "user");
    TU_ASSERT_STR(s.values[0], "bob");
    TU_ASSERT_STR(pgw_startup_get(&s, "database"), "db");
    cr_assert_null(pgw_startup_get(&s, "data").ptr);
    cr_assert_null(pgw_startup_get(&s, "options").ptr);
}

Test(decode, startup_versions_and_terminator)
{
    uint8_t m[64];
    pgw_startup_t s;
    /* 3.2 is accepted (minor versions are the caller's business). */
    pgw_frame_t f = frame_body(m, 0, PGW_F, B(0, 3, 0, 2, 0));
    cr_assert_eq(pgw_decode_startup(&f, &s), 0);
    cr_assert_eq(s.version, (3u << 16) | 2);
    cr_assert_eq(s.nparams, 0);
    f = frame_body(m, 0, PGW_F, B(0, 2, 0, 0, 0));
    cr_assert_eq(pgw_decode_startup(&f, &s), PGW_EUNSUPPORTED);
    /* Missing final terminator. */
    f = frame_body(m, 0, PGW_F, B(0, 3, 0, 0, 'u', 0, 'b', 0));
    cr_assert_eq(pgw_decode_startup(&f, &s), PGW_EMALFORMED);
    /* Name without value. */
    f = frame_body(m, 0, PGW_F, B(0, 3, 0, 0, 'u', 0));
    cr_assert_eq(pgw_decode_startup(&f, &s), PGW_EMALFORMED);
    /* Empty value is fine. */
    f = frame_body(m, 0, PGW_F, B(0, 3, 0, 0, 'u', 0, 0, 0));
    cr_assert_eq(pgw_decode_startup(&f, &s), 0);
    TU_ASSERT_STR(s.values[0], "");
}

/* A startup packet with n parameters named p0..p(n-1). */
static size_t startup_with(size_t n, uint8_t *body)
{
    size_t off = 0;
    body[off++] = 0, body[off++] = 3, body[off++] = 0, body[off++] = 0;
    for (size_t i = 0; i < n; i++) {
        off += (size_t)sprintf((char *)body + off, "p%zu", i) + 1;
        off += (size_t)sprintf((char *)body + off, "v") + 1;
    }
    body[off++] = 0;
    return off;
}

Test(decode, startup_too_many_params)
{
    uint8_t body[2048], m[2100];
    pgw_startup_t s;
    size_t n = startup_with(PGW_MAX_STARTUP_PARAMS, body);
    pgw_frame_t f = frame_body(m, 0, PGW_F, body, n);
    cr_assert_eq(pgw_decode_startup(&f, &s), 0);
    cr_assert_eq(s.nparams, PGW_MAX_STARTUP_PARAMS);
    TU_ASSERT_STR(pgw_startup_get(&s, "p63"), "v");
    n = startup_with(PGW_MAX_STARTUP_PARAMS + 1, body);
    f = frame_body(m, 0, PGW_F, body, n);
    cr_assert_eq(pgw_decode_startup(&f, &s), PGW_ETOOMANY);
    cr_assert_eq(pgw_validate(&f, PGW_F), PGW_ETOOMANY);
}

Test(decode, cancel_and_ssl)
{
    uint8_t m[32];
    pgw_frame_t f = frame_body(m, 0, PGW_F, vecs[1].body, vecs[1].blen);
    pgw_cancel_t c;
    cr_assert_eq(pgw_decode_cancel(&f, &c), 0);
    cr_assert_eq(c.pid, 12345);
    cr_assert_eq(c.key, 67890);
    f = frame_body(m, 0, PGW_F, vecs[2].body, vecs[2].blen);
    cr_assert_eq(f.type, PGW_MSG_SSL_REQUEST);
    cr_assert_eq(pgw_decode_ssl_request(&f), 0);
    cr_assert_eq(pgw_decode_cancel(&f, &c), PGW_EBADTYPE);
    pgw_startup_t s;
    cr_assert_eq(pgw_decode_startup(&f, &s), PGW_EBADTYPE);
    f = frame_body(m, 0, PGW_F, vecs[3].body, vecs[3].blen);
    cr_assert_eq(f.type, PGW_MSG_GSSENC_REQUEST);
    cr_assert_eq(pgw_decode_ssl_request(&f), 0);
}

Test(decode, parse_and_bind_fields)
{
    uint8_t m[64];
    pgw_frame_t f = frame_body(m, 'P', PGW_F, vecs[5].body, vecs[5].blen);
    pgw_parse_t p;
    cr_assert_eq(pgw_decode_parse(&f, &p), 0);
    TU_ASSERT_STR(p.name, "s1");
    TU_ASSERT_STR(p.sql, "select $1");
    cr_assert_eq(p.nparams, 1);
    cr_assert_eq(pgw_parse_param_oid(&p, 0), 23);
    cr_assert_eq(pgw_parse_param_oid(&p, 1), 0);

    f = frame_body(m, 'B', PGW_F, vecs[6].body, vecs[6].blen);
    pgw_bind_t b;
    cr_assert_eq(pgw_decode_bind(&f, &b), 0);
    TU_ASSERT_STR(b.portal, "p");
    TU_ASSERT_STR(b.stmt, "s");
    cr_assert_eq(b.nformats, 1);
    cr_assert_eq(b.nparams, 2);
    cr_assert_eq(pgw_bind_param_format(&b, 0), 1);
    cr_assert_eq(pgw_bind_param_format(&b, 1), 1, "one format applies to all");
    cr_assert_eq(b.nresult_formats, 1);
    cr_assert_eq(pgw_bind_result_format(&b, 5), 0);
    size_t off = 0;
    const uint8_t *val;
    int32_t len;
    cr_assert_eq(pgw_bind_next_param(&b, &off, &val, &len), 1);
    cr_assert_eq(len, 2);
    cr_assert(memcmp(val, "ab", 2) == 0);
    cr_assert_eq(pgw_bind_next_param(&b, &off, &val, &len), 1);
    cr_assert_eq(len, -1);
    cr_assert_null(val);
    cr_assert_eq(pgw_bind_next_param(&b, &off, &val, &len), 0);

    /* Per-parameter formats and no formats. */
    f = frame_body(m, 'B', PGW_F,
                   B(0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0));
    cr_assert_eq(pgw_decode_bind(&f, &b), 0);
    cr_assert_eq(pgw_bind_param_format(&b, 0), 0);
    cr_assert_eq(pgw_bind_param_format(&b, 1), 1);
    cr_assert_eq(pgw_bind_result_format(&b, 0), 1);
    cr_assert_eq(pgw_bind_result_format(&b, 1), 0);
    off = 0;
    cr_assert_eq(pgw_bind_next_param(&b, &off, &val, &len), 1);
    cr_assert_eq(len, 0, "empty, not NULL");
    cr_assert_not_null(val);
    f = frame_body(m, 'B', PGW_F, B(0, 0, 0, 0, 0, 0, 0, 0));
    cr_assert_eq(pgw_decode_bind(&f, &b), 0);
    cr_assert_eq(pgw_bind_param_format(&b, 3), 0);
    off = 0;
    cr_assert_eq(pgw_bind_next_param(&b, &off, &val, &len), 0);
}

Test(decode, bind_rejections)
{
    uint8_t m[64];
    pgw_bind_t b;
    /* Two formats for one parameter. */
    pgw_frame_t f = frame_body(m, 'B', PGW_F,
                               B(0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0));
    cr_assert_eq(pgw_decode_bind(&f, &b), PGW_EMALFORMED);
    /* Parameter length -2. */
    f = frame_body(m, 'B', PGW_F, B(0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0));
    cr_assert_eq(pgw_decode_bind(&f, &b), PGW_EMALFORMED);
    /* Parameter length beyond the message. */
    f = frame_body(m, 'B', PGW_F, B(0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 'a', 0, 0));
    cr_assert_eq(pgw_decode_bind(&f, &b), PGW_EMALFORMED);
    /* Parameter count larger than the list. */
    f = frame_body(m, 'B', PGW_F, B(0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0));
    cr_assert_eq(pgw_decode_bind(&f, &b), PGW_EMALFORMED);
    pgw_parse_t p;
    /* Parse declaring 2 oids with only one present. */
    f = frame_body(m, 'P', PGW_F, B(0, 'x', 0, 0, 2, 0, 0, 0, 23));
    cr_assert_eq(pgw_decode_parse(&f, &p), PGW_EMALFORMED);
}

Test(decode, frontend_small_messages)
{
    uint8_t m[64];
    pgw_target_t t;
    pgw_frame_t f = frame_body(m, 'D', PGW_F, vecs[7].body, vecs[7].blen);
    cr_assert_eq(pgw_decode_describe(&f, &t), 0);
    cr_assert_eq(t.kind, 'S');
    TU_ASSERT_STR(t.name, "s1");
    cr_assert_eq(pgw_decode_close(&f, &t), PGW_EBADTYPE, "a Describe is not a Close");
    f = frame_body(m, 'C', PGW_F, vecs[8].body, vecs[8].blen);
    cr_assert_eq(pgw_decode_close(&f, &t), 0);
    cr_assert_eq(t.kind, 'P');
    TU_ASSERT_STR(t.name, "p");
    f = frame_body(m, 'D', PGW_F, B('X', 0));
    cr_assert_eq(pgw_decode_describe(&f, &t), PGW_EMALFORMED, "kind must be S or P");
    f = frame_body(m, 'C', PGW_F, B('x', 0));
    cr_assert_eq(pgw_decode_close(&f, &t), PGW_EMALFORMED);

    pgw_execute_t e;
    f = frame_body(m, 'E', PGW_F, vecs[9].body, vecs[9].blen);
    cr_assert_eq(pgw_decode_execute(&f, &e), 0);
    TU_ASSERT_STR(e.portal, "p");
    cr_assert_eq(e.max_rows, 10);

    pgw_query_t q;
    f = frame_body(m, 'Q', PGW_F, vecs[4].body, vecs[4].blen);
    cr_assert_eq(pgw_decode_query(&f, &q), 0);
    TU_ASSERT_STR(q.sql, "SELECT 1");
    /* A NUL inside the query text leaves bytes after the string: rejected. */
    f = frame_body(m, 'Q', PGW_F, B('a', 0, 'b', 0));
    cr_assert_eq(pgw_decode_query(&f, &q), PGW_EMALFORMED);
    f = frame_body(m, 'Q', PGW_F, NULL, 0);
    cr_assert_eq(pgw_decode_query(&f, &q), PGW_EMALFORMED, "empty body has no string");

    pgw_copy_fail_t cf;
    f = frame_body(m, 'f', PGW_F, vecs[15].body, vecs[15].blen);
    cr_assert_eq(pgw_decode_copy_fail(&f, &cf), 0);
    TU_ASSERT_STR(cf.message, "oops");
}

Test(decode, password_family)
{
    uint8_t m[64];
    pgw_str_t pw;
    pgw_frame_t f = frame_body(m, 'p', PGW_F, vecs[16].body, vecs[16].blen);
    cr_assert_eq(pgw_decode_password(&f, &pw), 0);
    TU_ASSERT_STR(pw, "pw");

    pgw_sasl_initial_t si;
    f = frame_body(m, 'p', PGW_F, vecs[17].body, vecs[17].blen);
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), 0);
    TU_ASSERT_STR(si.mechanism, "SCRAM-SHA-256");
    cr_assert_eq(si.data_len, 3);
    cr_assert(memcmp(si.data, "abc", 3) == 0);
    f = frame_body(m, 'p', PGW_F, B('M', 0, 0xff, 0xff, 0xff, 0xff));
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), 0);
    cr_assert_eq(si.data_len, -1);
    cr_assert_null(si.data);
    f = frame_body(m, 'p', PGW_F, B('M', 0, 0xff, 0xff, 0xff, 0xfe));
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), PGW_EMALFORMED);
    f = frame_body(m, 'p', PGW_F, B('M', 0, 0, 0, 0, 4, 'a'));
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), PGW_EMALFORMED);

    const uint8_t *d;
    uint32_t n;
    f = frame_body(m, 'p', PGW_F, vecs[18].body, vecs[18].blen);
    cr_assert_eq(pgw_decode_sasl_response(&f, &d, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert(memcmp(d, "c=x", 3) == 0);
}

Test(decode, auth_fields)
{
    uint8_t m[64];
    pgw_auth_t a;
    pgw_frame_t f = frame_body(m, 'R', PGW_B, vecs[22].body, vecs[22].blen);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_MD5);
    cr_assert(memcmp(a.md5_salt, "\1\2\3\4", 4) == 0);

    f = frame_body(m, 'R', PGW_B, vecs[23].body, vecs[23].blen);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_SASL);
    cr_assert(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256"));
    cr_assert_not(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256-PLUS"));
    cr_assert_not(pgw_auth_has_mechanism(&a, "SCRAM"));

    f = frame_body(m, 'R', PGW_B,
                   B(0, 0, 0, 10, 'A', 0, 'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2',
                     '5', '6', '-', 'P', 'L', 'U', 'S', 0, 0));
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256-PLUS"));
    cr_assert(pgw_auth_has_mechanism(&a, "A"));
    cr_assert_not(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256"));

    /* Empty mechanism list, list without the final empty name, NUL-less list. */
    f = frame_body(m, 'R', PGW_B, B(0, 0, 0, 10, 0));
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_not(pgw_auth_has_mechanism(&a, "SCRAM-SHA-256"));
    f = frame_body(m, 'R', PGW_B, B(0, 0, 0, 10));
    cr_assert_eq(pgw_decode_auth(&f, &a), PGW_EMALFORMED);
    f = frame_body(m, 'R', PGW_B, B(0, 0, 0, 10, 'A'));
    cr_assert_eq(pgw_decode_auth(&f, &a), PGW_EMALFORMED);

    f = frame_body(m, 'R', PGW_B, vecs[24].body, vecs[24].blen);
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_SASL_CONTINUE);
    cr_assert_eq(a.data_len, 3);
    cr_assert(memcmp(a.data, "r=x", 3) == 0);
    cr_assert_not(pgw_auth_has_mechanism(&a, "r=x"));

    f = frame_body(m, 'R', PGW_B, B(0, 0, 0, 99));
    cr_assert_eq(pgw_decode_auth(&f, &a), PGW_EUNSUPPORTED);
    f = frame_body(m, 'R', PGW_B, B(0, 0, 0, 7));
    cr_assert_eq(pgw_decode_auth(&f, &a), 0);
    cr_assert_eq(a.code, PGW_AUTH_GSS);
}

Test(decode, backend_small_messages)
{
    uint8_t m[64];
    pgw_cancel_t k;
    pgw_frame_t f = frame_body(m, 'K', PGW_B, vecs[26].body, vecs[26].blen);
    cr_assert_eq(pgw_decode_backend_key(&f, &k), 0);
    cr_assert_eq(k.pid, 12345);
    cr_assert_eq(k.key, 67890);

    pgw_param_status_t ps;
    f = frame_body(m, 'S', PGW_B, vecs[27].body, vecs[27].blen);
    cr_assert_eq(pgw_decode_param_status(&f, &ps), 0);
    TU_ASSERT_STR(ps.name, "a");
    TU_ASSERT_STR(ps.value, "b");

    uint8_t st = 0;
    const char *ok = "ITE";
    for (int i = 0; i < 3; i++) {
        uint8_t body[1] = {(uint8_t)ok[i]};
        f = frame_body(m, 'Z', PGW_B, body, 1);
        cr_assert_eq(pgw_decode_ready(&f, &st), 0);
        cr_assert_eq(st, ok[i]);
    }
    f = frame_body(m, 'Z', PGW_B, B('Q'));
    cr_assert_eq(pgw_decode_ready(&f, &st), PGW_EMALFORMED);
    f = frame_body(m, 'Z', PGW_B, NULL, 0);
    cr_assert_eq(pgw_decode_ready(&f, &st), PGW_EMALFORMED);

    pgw_command_complete_t cc;
    f = frame_body(m, 'C', PGW_B, vecs[29].body, vecs[29].blen);
    cr_assert_eq(pgw_decode_command_complete(&f, &cc), 0);
    TU_ASSERT_STR(cc.tag, "SELECT 1");

    pgw_notification_t n;
    f = frame_body(m, 'A', PGW_B, vecs[34].body, vecs[34].blen);
    cr_assert_eq(pgw_decode_notification(&f, &n), 0);
    cr_assert_eq(n.pid, 7);
    TU_ASSERT_STR(n.channel, "ch");
    TU_ASSERT_STR(n.payload, "pl");

    pgw_param_description_t pd;
    f = frame_body(m, 't', PGW_B, vecs[35].body, vecs[35].blen);
    cr_assert_eq(pgw_decode_param_description(&f, &pd), 0);
    cr_assert_eq(pd.nparams, 2);
    cr_assert_eq(tu_get32(pd.oids + 4), 25);

    pgw_copy_response_t cr;
    f = frame_body(m, 'H', PGW_B, vecs[37].body, vecs[37].blen);
    cr_assert_eq(pgw_decode_copy_response(&f, &cr), 0);
    cr_assert_eq(cr.format, 1);
    cr_assert_eq(cr.ncols, 1);
    cr_assert_eq(cr.col_formats[1], 1);
    f = frame_body(m, 'G', PGW_B, B(2, 0, 0));
    cr_assert_eq(pgw_decode_copy_response(&f, &cr), PGW_EMALFORMED, "format 2");

    pgw_negotiate_t ng;
    f = frame_body(m, 'v', PGW_B, vecs[39].body, vecs[39].blen);
    cr_assert_eq(pgw_decode_negotiate(&f, &ng), 0);
    cr_assert_eq(ng.newest_minor, 0);
    cr_assert_eq(ng.nunrecognized, 1);
    cr_assert_eq(ng.options_len, 7);
    cr_assert_str_eq((const char *)ng.options, "_pq_.x");
    f = frame_body(m, 'v', PGW_B, B(0, 0, 0, 0, 0, 0, 0, 2, 'a', 0));
    cr_assert_eq(pgw_decode_negotiate(&f, &ng), PGW_EMALFORMED);
}

Test(decode, error_fields_and_iteration)
{
    uint8_t m[128];
    pgw_error_fields_t e;
    pgw_frame_t f = frame_body(m, 'E', PGW_B, vecs[30].body, vecs[30].blen);
    cr_assert_eq(pgw_decode_error(&f, &e), 0);
    TU_ASSERT_STR(e.severity, "ERROR");
    TU_ASSERT_STR(e.severity_nl, "ERROR");
    TU_ASSERT_STR(e.sqlstate, "22012");
    TU_ASSERT_STR(e.message, "div");
    cr_assert_null(e.detail.ptr);
    cr_assert_null(e.hint.ptr);
    size_t off = 0;
    uint8_t code;
    pgw_str_t v;
    const char *codes = "SVCM";
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pgw_error_next_field(&e, &off, &code, &v), 1);
        cr_assert_eq(code, codes[i]);
    }
    TU_ASSERT_STR(v, "div");
    cr_assert_eq(pgw_error_next_field(&e, &off, &code, &v), 0);
    cr_assert_eq(pgw_error_next_field(&e, &off, &code, &v), 0, "stays at the end");

    /* Only the terminator: valid, no fields. */
    f = frame_body(m, 'N', PGW_B, B(0));
    cr_assert_eq(pgw_decode_error(&f, &e), 0);
    off = 0;
    cr_assert_eq(pgw_error_next_field(&e, &off, &code, &v), 0);
    /* Empty body: no terminator. */
    f = frame_body(m, 'E', PGW_B, NULL, 0);
    cr_assert_eq(pgw_decode_error(&f, &e), PGW_EMALFORMED);
    /* Field value without NUL. */
    f = frame_body(m, 'E', PGW_B, B('M', 'x'));
    cr_assert_eq(pgw_decode_error(&f, &e), PGW_EMALFORMED);
}

Test(decode, row_description_and_data_row)
{
    uint8_t m[128];
    pgw_row_description_t rd;
    pgw_frame_t f = frame_body(m, 'T', PGW_B,
                               B(0, 2, 'a', 0, 0, 0, 0x40, 0, 0, 3, 0, 0, 0, 23, 0, 4, 0xff, 0xff,
                                 0xff, 0xff, 0, 0, 'b', 'b', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x04,
                                 0x13, 0xff, 0xff, 0, 0, 0, 14, 0, 1));
    cr_assert_eq(pgw_decode_row_description(&f, &rd), 0);
    cr_assert_eq(rd.nfields, 2);
    size_t off = 0;
    pgw_field_desc_t d;
    cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 1);
    TU_ASSERT_STR(d.name, "a");
    cr_assert_eq(d.table_oid, 0x4000);
    cr_assert_eq(d.attnum, 3);
    cr_assert_eq(d.type_oid, 23);
    cr_assert_eq(d.type_len, 4);
    cr_assert_eq(d.type_mod, -1);
    cr_assert_eq(d.format, 0);
    cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 1);
    TU_ASSERT_STR(d.name, "bb");
    cr_assert_eq(d.type_oid, 1043);
    cr_assert_eq(d.type_len, -1);
    cr_assert_eq(d.type_mod, 14);
    cr_assert_eq(d.format, 1);
    cr_assert_eq(pgw_row_description_next(&rd, &off, &d), 0);
    /* Count says 3 fields, list holds 2. */
    m[6] = 3;
    cr_assert_eq(pgw_decode_row_description(&f, &rd), PGW_EMALFORMED);

    pgw_data_row_t dr;
    f = frame_body(m, 'D', PGW_B, vecs[33].body, vecs[33].blen);
    cr_assert_eq(pgw_decode_data_row(&f, &dr), 0);
    cr_assert_eq(dr.ncols, 2);
    off = 0;
    const uint8_t *val;
    int32_t len;
    cr_assert_eq(pgw_data_row_next(&dr, &off, &val, &len), 1);
    cr_assert_eq(len, 1);
    cr_assert_eq(val[0], '1');
    cr_assert_eq(pgw_data_row_next(&dr, &off, &val, &len), 1);
    cr_assert_eq(len, -1);
    cr_assert_null(val);
    cr_assert_eq(pgw_data_row_next(&dr, &off, &val, &len), 0);
    f = frame_body(m, 'D', PGW_B, B(0, 1, 0xff, 0xff, 0xff, 0xfe));
    cr_assert_eq(pgw_decode_data_row(&f, &dr), PGW_EMALFORMED, "length -2");
    f = frame_body(m, 'D', PGW_B, B(0, 0));
    cr_assert_eq(pgw_decode_data_row(&f, &dr), 0, "zero columns");
    off = 0;
    cr_assert_eq(pgw_data_row_next(&dr, &off, &val, &len), 0);
}

Test(decode, empty_bodies)
{
    uint8_t m[16];
    pgw_frame_t f = frame_body(m, 'S', PGW_F, NULL, 0);
    cr_assert_eq(pgw_decode_empty(&f), 0);
    f = frame_body(m, 'S', PGW_F, B(0));
    cr_assert_eq(pgw_decode_empty(&f), PGW_EMALFORMED);
    f = frame_body(m, 'S', PGW_B, B('a', 0, 'b', 0));
    cr_assert_eq(pgw_decode_empty(&f), PGW_EBADTYPE, "ParameterStatus is not empty-bodied");
}
