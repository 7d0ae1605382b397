/*
 * Unit tests of rewrite/exec.c and the native implementations on the paths that need no
 * database: RowDescriptions (names, OIDs, typlen, typmod, table OID/attnum 0, text format), the
 * answers PostgreSQL gives without reading data (fn_get_bulist's NOTICE with an unknown phrase,
 * its 22004 and 42804 errors, fn_men*bt's NOTICE + 2F005 for an unknown mode, NULL arguments),
 * the query/feed sequencing with a synthetic PGresult, and the in-memory BU tree, capability
 * answer and group memberships.
 * Expected messages were checked against PostgreSQL 15 with the fixture's functions by
 * tests/differential/rw_diff.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "functions/functions.h"

/* Builds a call; args are canonical texts, NULL for SQL NULL. */
static rw_call_t mkcall(rw_fn_t fn, rw_shape_t shape, const char *colname, uint32_t result_oid,
                        int nargs, const char *const *args)
{
    rw_call_t c;
    memset(&c, 0, sizeof c);
    c.fn = fn;
    c.shape = shape;
    strncpy(c.colname, colname, sizeof c.colname - 1);
    c.result_oid = result_oid;
    c.nargs = nargs;
    for (int i = 0; i < nargs; i++) {
        c.args[i].is_null = args[i] == NULL;
        c.args[i].text = (char *)args[i];   /* rw_exec_new copies */
    }
    return c;
}

#define BULIST_WHERE "PL/pgSQL function fn_get_bulist(bigint,boolean,boolean,text,anyelement) line 9 at RAISE"
static const rw_dbinfo_t db_c = {.valid = true, .geography_oid = 17082, .geography_len = -1,
                                 .collate_c = true, .ctype_c = true,
                                 .bulist_notice_learnt = true, .bulist_notice_sev = "NOTICE",
                                 .bulist_notice_where = BULIST_WHERE,
                                 .bulist_notice_file = "pl_exec.c", .bulist_notice_line = "3907",
                                 .bulist_notice_routine = "exec_stmt_raise"};

/* Iterates the messages of a buffer. */
typedef struct msgs {
    const pgw_buf_t *b;
    size_t off;
} msgs_t;

static int next_msg(msgs_t *m, pgw_frame_t *f)
{
    if (m->off >= m->b->len)
        return 0;
    size_t need;
    int n = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, m->b->data + m->off, m->b->len - m->off, f, &need);
    cr_assert(n > 0, "unframeable output");
    m->off += (size_t)n;
    return 1;
}

static void expect_notice_or_error(msgs_t *m, pgw_msg_t type, const char *sev, const char *state,
                                   const char *msg)
{
    pgw_frame_t f;
    cr_assert(next_msg(m, &f));
    cr_assert_eq(f.type, type);
    pgw_error_fields_t e;
    cr_assert_eq(pgw_decode_error(&f, &e), 0);
    cr_assert(e.severity_nl.ptr && strncmp(e.severity_nl.ptr, sev, e.severity_nl.len) == 0);
    cr_assert(e.sqlstate.len == 5 && memcmp(e.sqlstate.ptr, state, 5) == 0);
    cr_assert_eq(e.message.len, strlen(msg), "message '%.*s'", (int)e.message.len, e.message.ptr);
    cr_assert(memcmp(e.message.ptr, msg, e.message.len) == 0);
}

static void expect_tag(msgs_t *m, const char *tag)
{
    pgw_frame_t f;
    cr_assert(next_msg(m, &f));
    cr_assert_eq(f.type, PGW_MSG_COMMAND_COMPLETE);
    pgw_command_complete_t cc;
    cr_assert_eq(pgw_decode_command_complete(&f, &cc), 0);
    cr_assert(cc.tag.len == strlen(tag) && memcmp(cc.tag.ptr, tag, cc.tag.len) == 0);
}

static void expect_row1(msgs_t *m, const char *val)
{
    pgw_frame_t f;
    cr_assert(next_msg(m, &f));
    cr_assert_eq(f.type, PGW_MSG_DATA_ROW);
    pgw_data_row_t dr;
    cr_assert_eq(pgw_decode_data_row(&f, &dr), 0);
    cr_assert_eq(dr.ncols, 1);
    size_t off = 0;
    const uint8_t *v;
    int32_t len;
    cr_assert_eq(pgw_data_row_next(&dr, &off, &v, &len), 1);
    if (!val) {
        cr_assert_eq(len, -1);
    } else {
        cr_assert_eq(len, (int32_t)strlen(val));
        cr_assert(memcmp(v, val, (size_t)len) == 0);
    }
}

static void expect_desc1(const pgw_buf_t *b, const char *name, uint32_t oid)
{
    msgs_t m = {b, 0};
    pgw_frame_t f;
    cr_assert(next_msg(&m, &f));
    cr_assert_eq(f.type, PGW_MSG_ROW_DESCRIPTION);
    pgw_row_description_t rd;
    cr_assert_eq(pgw_decode_row_description(&f, &rd), 0);
    cr_assert_eq(rd.nfields, 1);
    size_t off = 0;
    pgw_field_desc_t fd;
    cr_assert_eq(pgw_row_description_next(&rd, &off, &fd), 1);
    cr_assert(fd.name.len == strlen(name) && memcmp(fd.name.ptr, name, fd.name.len) == 0);
    cr_assert_eq(fd.type_oid, oid);
    cr_assert_eq(fd.type_len, -1);
    cr_assert_eq(fd.type_mod, -1);
    cr_assert_eq(fd.table_oid, 0u);
    cr_assert_eq(fd.attnum, 0);
    cr_assert_eq(fd.format, 0);
    cr_assert(!next_msg(&m, &f));
}

static rw_exec_t *run_noquery(const rw_call_t *c)
{
    rw_exec_t *ex = rw_exec_new(c);
    cr_assert_not_null(ex);
    rw_exec_set_dbinfo(ex, &db_c);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE);
    return ex;
}

Test(native_exec, get_bulist_unknown_phrase_notice_zero_rows)
{
    const char *a[] = {"2", "true", "true", "BoGuS", NULL};
    rw_call_t c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_TARGET, "buids", RW_OID_INT8_ARRAY, 5, a);
    rw_exec_t *ex = run_noquery(&c);
    expect_desc1(rw_exec_describe(ex), "buids", RW_OID_INT8_ARRAY);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_notice_or_error(&m, PGW_MSG_NOTICE_RESPONSE, "NOTICE", "00000", "Phrase :: bogus");
    expect_tag(&m, "SELECT 0");
    cr_assert(!rw_exec_failed(ex));
    rw_exec_free(ex);
}

Test(native_exec, get_bulist_null_phrase_and_errors)
{
    const char *a[] = {"2", "true", "true", NULL, NULL};
    rw_call_t c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_FROM, "fn_get_bulist", RW_OID_JSONB, 5, a);
    rw_exec_t *ex = run_noquery(&c);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_notice_or_error(&m, PGW_MSG_NOTICE_RESPONSE, "NOTICE", "00000", "Phrase :: <NULL>");
    expect_tag(&m, "SELECT 0");
    rw_exec_free(ex);

    const char *b[] = {NULL, "true", "false", "Array", NULL};
    c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_TARGET, "id", RW_OID_INT8_ARRAY, 5, b);
    ex = run_noquery(&c);
    m = (msgs_t){rw_exec_body(ex), 0};
    expect_notice_or_error(&m, PGW_MSG_NOTICE_RESPONSE, "NOTICE", "00000", "Phrase :: array");
    expect_notice_or_error(&m, PGW_MSG_ERROR_RESPONSE, "ERROR", "22004",
                           "query string argument of EXECUTE is null");
    cr_assert(rw_exec_failed(ex));
    rw_exec_free(ex);

    const char *d[] = {"6", "false", "true", "text", NULL};
    c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_TARGET, "id", RW_OID_JSONB, 5, d);
    ex = run_noquery(&c);
    m = (msgs_t){rw_exec_body(ex), 0};
    expect_notice_or_error(&m, PGW_MSG_NOTICE_RESPONSE, "NOTICE", "00000", "Phrase :: text");
    expect_notice_or_error(&m, PGW_MSG_ERROR_RESPONSE, "ERROR", "42804",
                           "structure of query does not match function result type");
    rw_exec_free(ex);
}

Test(native_exec, get_bulist_self_branch_without_query)
{
    /* NULL flag: the id itself, unchecked, as text or a one-element array. */
    const char *a[] = {"-1", NULL, "true", "ARRAY", NULL};
    rw_call_t c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_TARGET, "id", RW_OID_INT8_ARRAY, 5, a);
    rw_exec_t *ex = run_noquery(&c);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_notice_or_error(&m, PGW_MSG_NOTICE_RESPONSE, "NOTICE", "00000", "Phrase :: array");
    expect_row1(&m, "{-1}");
    expect_tag(&m, "SELECT 1");
    rw_exec_free(ex);
}

Test(native_exec, men_unknown_mode_notice_then_error)
{
    const char *a[] = {"5", "bogus"};
    rw_call_t c = mkcall(RW_FN_MENDOWNBT, RW_SHAPE_TARGET, "fn_mendownbt", RW_OID_TEXT, 2, a);
    rw_exec_t *ex = rw_exec_new(&c);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE);
    expect_desc1(rw_exec_describe(ex), "fn_mendownbt", RW_OID_TEXT);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_notice_or_error(&m, PGW_MSG_NOTICE_RESPONSE, "NOTICE", "00000",
                           "Valid calls: fn_mendownbt(<buid>, 'text'::text) | fn_mendownbt(<buid>, "
                           "'array'::text) | fn_mendownbt(<buid>, 'jsonb'::text)");
    expect_notice_or_error(&m, PGW_MSG_ERROR_RESPONSE, "ERROR", "2F005",
                           "control reached end of function without RETURN");
    cr_assert(rw_exec_failed(ex));
    rw_exec_free(ex);
}

Test(native_exec, men_null_id_empty_walk)
{
    static const char *modes[] = {"text", "array", "jsonb"};
    static const char *vals[] = {"", "{}", NULL};
    for (int i = 0; i < 3; i++) {
        const char *a[] = {NULL, modes[i]};
        rw_call_t c = mkcall(RW_FN_MENALLBT, RW_SHAPE_FROM, "fn_menallbt", RW_OID_TEXT, 2, a);
        rw_exec_t *ex = rw_exec_new(&c);
        cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE);
        msgs_t m = {rw_exec_body(ex), 0};
        expect_row1(&m, vals[i]);
        expect_tag(&m, "SELECT 1");
        rw_exec_free(ex);
    }
}

Test(native_exec, idnf_null_flag_returns_null)
{
    const char *a[] = {"10", NULL, "true"};
    rw_call_t c = mkcall(RW_FN_GETBULIST_BASEDON_IDNF, RW_SHAPE_TARGET, "fn_getbulist_basedon_idnf",
                         RW_OID_TEXT, 3, a);
    rw_exec_t *ex = rw_exec_new(&c);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_row1(&m, NULL);
    expect_tag(&m, "SELECT 1");
    rw_exec_free(ex);
}

Test(native_exec, describe_table_functions_need_dbinfo)
{
    const char *a[] = {"1", "2", "3"};
    rw_call_t c = mkcall(RW_FN_GETJOBNEED, RW_SHAPE_FROM, "", 0, 3, a);
    pgw_buf_t b;
    pgw_buf_init(&b);
    cr_assert_lt(rw_describe_call(&c, &b), 0);   /* geography OID unknown */
    pgw_buf_reset(&b);
    cr_assert_eq(rw_describe_call_db(&c, &db_c, &b), 0);
    msgs_t m = {&b, 0};
    pgw_frame_t f;
    cr_assert(next_msg(&m, &f));
    pgw_row_description_t rd;
    cr_assert_eq(pgw_decode_row_description(&f, &rd), 0);
    cr_assert_eq(rd.nfields, 38);
    size_t off = 0;
    pgw_field_desc_t fd;
    for (int i = 0; i < 38; i++) {
        cr_assert_eq(pgw_row_description_next(&rd, &off, &fd), 1);
        if (i == 8) {   /* gpslocation */
            cr_assert_eq(fd.type_oid, 17082u);
            cr_assert_eq(fd.type_len, -1);
        }
        if (i == 30) {  /* seqno smallint */
            cr_assert(fd.name.len == 5 && memcmp(fd.name.ptr, "seqno", 5) == 0);
            cr_assert_eq(fd.type_oid, RW_OID_INT2);
            cr_assert_eq(fd.type_len, 2);
        }
        cr_assert_eq(fd.type_mod, -1);
    }
    /* A RETURNS TABLE function in the select list is not answered. */
    c.shape = RW_SHAPE_TARGET;
    pgw_buf_reset(&b);
    cr_assert_lt(rw_describe_call_db(&c, &db_c, &b), 0);
    pgw_buf_free(&b);
}

/* A synthetic result standing in for the native connection. */
static PGresult *mkres(int ncols, const char *const *names, int nrows, const char *const *vals)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att[8];
    memset(att, 0, sizeof att);
    for (int i = 0; i < ncols; i++) {
        att[i].name = (char *)names[i];
        att[i].typid = RW_OID_TEXT;
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    cr_assert(PQsetResultAttrs(r, ncols, att));
    for (int row = 0; row < nrows; row++)
        for (int c = 0; c < ncols; c++) {
            const char *v = vals[row * ncols + c];
            cr_assert(PQsetvalue(r, row, c, (char *)(v ? v : ""), v ? (int)strlen(v) : -1));
        }
    return r;
}

Test(native_exec, down_walk_query_then_bfs_array)
{
    const char *a[] = {"2", "array"};
    rw_call_t c = mkcall(RW_FN_MENDOWNBT, RW_SHAPE_TARGET, "fn_mendownbt", RW_OID_TEXT, 2, a);
    rw_exec_t *ex = rw_exec_new(&c);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_QUERY);
    cr_assert_eq(rw_exec_nparams(ex), 3);
    cr_assert_str_eq(rw_exec_params(ex)[0], "2");
    cr_assert_not_null(rw_exec_stmt_name(ex));
    static const char *names[] = {"dir", "d", "id", "parent_id", "bucode", "buname"};
    static const char *rows[] = {
        "d", "0", "2", "1", "SPS", "Client A",  "d", "2", "12", "5", "S12", "x",
        "d", "1", "9", "2", "Z", "y",           "d", "1", "3", "2", "S3", "z",
        "d", "2", "7", "9", "S7", "w",          "d", "2", "6", "5", "S6", "v",
        "d", "1", "5", "2", "C5", "u",          "d", "1", "4", "2", "S4", "t",
    };
    PGresult *r = mkres(6, names, 8, rows);
    cr_assert_eq(rw_exec_feed(ex, r), RW_EXEC_DONE);
    PQclear(r);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_row1(&m, "{2,3,4,5,9,6,7,12}");
    expect_tag(&m, "SELECT 1");
    rw_exec_free(ex);

    /* A failed query falls back, never answers. */
    ex = rw_exec_new(&c);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_QUERY);
    cr_assert_eq(rw_exec_feed(ex, NULL), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_NATIVE_QUERY);
    rw_exec_free(ex);
}

Test(native_exec, butree_answers_without_query)
{
    /* Spec worked fixture (bt): -1, 1, 2 under 1, 3 4 5 9 under 2, 6 12 under 5, 7 under 9,
       10 under -1 (CLIENT), 11 (SITE) and 13 (CUSTOMER) under 10, 8 (SITE) under 13. */
    static const char *names[] = {"id", "parent_id", "bucode", "buname", "tacode"};
    static const char *rows[] = {
        "-1", NULL, "NONE", "NONE", NULL,   "1", NULL, "NONE", "NONE", NULL,
        "2", "1", "SPS", "Client A", "CLIENT", "3", "2", "S3", "s3", "SITE",
        "4", "2", "S4", "s4", "SITE",      "5", "2", "C5", "c5", "CUSTOMER",
        "6", "5", "S6", "s6", "SITE",      "12", "5", "S12", "s12", "SITE",
        "9", "2", "Z9", "z9", "ZONE",      "7", "9", "S7", "s7", "SITE",
        "10", "-1", "L10", "l10", "CLIENT", "11", "10", "S11", "s11", "SITE",
        "13", "10", "C13", "c13", "CUSTOMER", "8", "13", "S8", "s8", "SITE",
    };
    PGresult *r = mkres(5, names, 14, rows);
    rw_butree_t *t = rw_butree_build(r);
    PQclear(r);
    cr_assert_not_null(t);
    struct { rw_fn_t fn; const char *id, *mode, *want; } cases[] = {
        {RW_FN_MENUPBT, "6", "array", "{6,5,2}"},
        {RW_FN_MENUPBT, "8", "array", "{8,13,10}"},
        {RW_FN_MENUPBT, "6", "text", "2 5 6"},
        {RW_FN_MENDOWNBT, "2", "text", "2 3 4 5 6 7 9 12"},
        {RW_FN_MENALLBT, "5", "array", "{2,5,6,12}"},
        {RW_FN_MENUPBT, "999", "jsonb", NULL},
        {RW_FN_MENUPBT, "6", "jsonb",
         "{\"2\": {\"bucode\": \"SPS\", \"buname\": \"Client A\", \"parent_id\": 1}, "
         "\"5\": {\"bucode\": \"C5\", \"buname\": \"c5\", \"parent_id\": 2}, "
         "\"6\": {\"bucode\": \"S6\", \"buname\": \"s6\", \"parent_id\": 5}}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *a[] = {cases[i].id, cases[i].mode};
        rw_call_t c = mkcall(cases[i].fn, RW_SHAPE_TARGET, "x", RW_OID_TEXT, 2, a);
        rw_exec_t *ex = rw_exec_new(&c);
        rw_exec_set_butree(ex, t);
        cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE, "case %zu", i);
        msgs_t m = {rw_exec_body(ex), 0};
        expect_row1(&m, cases[i].want);
        rw_exec_free(ex);
    }
    struct { const char *id, *cus, *si, *want; } idnf[] = {
        {"2", "true", "true", ""}, {"10", "true", "true", "11 13 8"}, {"10", "true", "false", "13"},
        {"10", "false", "true", "11 8"}, {"10", "false", "false", "10"}, {NULL, "true", "true", ""},
    };
    for (size_t i = 0; i < sizeof idnf / sizeof idnf[0]; i++) {
        const char *a[] = {idnf[i].id, idnf[i].cus, idnf[i].si};
        rw_call_t c = mkcall(RW_FN_GETBULIST_BASEDON_IDNF, RW_SHAPE_TARGET, "x", RW_OID_TEXT, 3, a);
        rw_exec_t *ex = rw_exec_new(&c);
        rw_exec_set_butree(ex, t);
        cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE, "idnf case %zu", i);
        msgs_t m = {rw_exec_body(ex), 0};
        expect_row1(&m, idnf[i].want);
        rw_exec_free(ex);
    }
    rw_butree_free(t);
}

/* Capability rows: root 1 (WEB) with children 3 and 2, 4 under 2; 9 is not under the root. */
static const char *caps_names[] = {"id", "capsname", "capscode", "parent_id", "cfor"};
static const char *caps_rows[] = {
    "1", "Root", "NONE", NULL, "WEB",  "3", "C3", "THREE", "1", "WEB",
    "2", "C2", "TWO", "1", "WEB",     "4", "C4", "FOUR", "2", "WEB",
    "9", "C9", "NINE", "7", "WEB",
};

Test(native_exec, capsmemo_answers_like_the_query)
{
    rw_call_t c = mkcall(RW_FN_WEB_CAPS_FOR_CLIENT, RW_SHAPE_QUERY, "", 0, 0, NULL);
    PGresult *r = mkres(5, caps_names, 5, caps_rows);
    /* Through the query. */
    rw_exec_t *q = rw_exec_new(&c);
    rw_exec_set_dbinfo(q, &db_c);
    cr_assert_eq(rw_exec_start(q), RW_EXEC_QUERY);
    cr_assert_str_eq(rw_exec_sql(q), rw_capsmemo_sql);
    cr_assert_eq(rw_exec_feed(q, r), RW_EXEC_DONE);
    /* From the memo: no query, the same bytes. */
    rw_capsmemo_t *memo = rw_capsmemo_build(r);
    PQclear(r);
    cr_assert_not_null(memo);
    rw_exec_t *ex = rw_exec_new(&c);
    rw_exec_set_dbinfo(ex, &db_c);
    rw_exec_set_capsmemo(ex, memo);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_DONE);
    cr_assert_eq(rw_exec_body(ex)->len, rw_exec_body(q)->len);
    cr_assert(memcmp(rw_exec_body(ex)->data, rw_exec_body(q)->data, rw_exec_body(q)->len) == 0);
    cr_assert_eq(rw_exec_describe(ex)->len, rw_exec_describe(q)->len);
    cr_assert(memcmp(rw_exec_describe(ex)->data, rw_exec_describe(q)->data,
                     rw_exec_describe(q)->len) == 0);
    /* Four rows by xpath: 1, 1>22, 1>22>43, 1>32. */
    msgs_t m = {rw_exec_body(ex), 0};
    pgw_frame_t f;
    for (int i = 0; i < 4; i++) {
        cr_assert(next_msg(&m, &f));
        cr_assert_eq(f.type, PGW_MSG_DATA_ROW);
    }
    expect_tag(&m, "SELECT 4");
    rw_exec_free(ex);
    rw_exec_free(q);
    /* A database whose collation is not C still falls back, memo or not. */
    rw_dbinfo_t db_other = db_c;
    db_other.collate_c = false;
    ex = rw_exec_new(&c);
    rw_exec_set_dbinfo(ex, &db_other);
    rw_exec_set_capsmemo(ex, memo);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_FALLBACK);
    rw_exec_free(ex);
    rw_capsmemo_free(memo);
}

Test(native_exec, capsmemo_keeps_the_fallback_of_a_cycle)
{
    /* 1 -> 2 -> 1: the legacy recursive query would never end; the memo must not answer. */
    static const char *rows[] = {
        "1", "Root", "NONE", "2", "WEB",  "2", "C2", "TWO", "1", "WEB",
    };
    PGresult *r = mkres(5, caps_names, 2, rows);
    rw_capsmemo_t *memo = rw_capsmemo_build(r);
    PQclear(r);
    cr_assert_not_null(memo);
    rw_call_t c = mkcall(RW_FN_WEB_CAPS_FOR_CLIENT, RW_SHAPE_QUERY, "", 0, 0, NULL);
    rw_exec_t *ex = rw_exec_new(&c);
    rw_exec_set_dbinfo(ex, &db_c);
    rw_exec_set_capsmemo(ex, memo);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_UNSUPPORTED);
    rw_exec_free(ex);
    rw_capsmemo_free(memo);
}

Test(native_exec, groups_memo_skips_the_group_query)
{
    static const char *names[] = {"people_id", "pgroup_id"};
    static const char *rows[] = {"7", "30", "5", "12", "7", "10", "8", "11", "7", "20"};
    PGresult *r = mkres(2, names, 5, rows);
    rw_groups_t *g = rw_groups_build(r);
    PQclear(r);
    cr_assert_not_null(g);
    struct { rw_fn_t fn; const char *person, *want; int groups_param; } cases[] = {
        {RW_FN_GETJOBNEED, "7", "{10,20,30}", 3},
        {RW_FN_GETJOBNEED, "6", "{}", 3},
        {RW_FN_GETEXTTOURJOBNEED, "5", "{12}", 2},
        {RW_FN_GETEXTTOURJOBNEED, "9", "{}", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *a[] = {cases[i].person, "3", "2"};
        rw_call_t c = mkcall(cases[i].fn, RW_SHAPE_FROM, "x", 0, 3, a);
        rw_exec_t *ex = rw_exec_new(&c);
        rw_exec_set_dbinfo(ex, &db_c);
        rw_exec_set_groups(ex, g);
        cr_assert_eq(rw_exec_start(ex), RW_EXEC_QUERY, "case %zu", i);
        /* The first query is already the main one: G is its last parameter. */
        cr_assert_eq(rw_exec_nparams(ex), cases[i].groups_param + 1, "case %zu", i);
        cr_assert_str_eq(rw_exec_params(ex)[cases[i].groups_param], cases[i].want, "case %zu", i);
        cr_assert_str_eq(rw_exec_params(ex)[0], cases[i].person);
        /* Its (empty) result completes the call. */
        int ncols = cases[i].fn == RW_FN_GETJOBNEED ? 38 : 35;
        const char *cn[38];
        for (int k = 0; k < ncols; k++)
            cn[k] = "c";
        PGresult *e = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
        PGresAttDesc att[38];
        memset(att, 0, sizeof att);
        for (int k = 0; k < ncols; k++) {
            att[k].name = (char *)cn[k];
            att[k].typid = RW_OID_TEXT;
            att[k].typlen = -1;
            att[k].atttypmod = -1;
        }
        cr_assert(PQsetResultAttrs(e, ncols, att));
        cr_assert_eq(rw_exec_feed(ex, e), RW_EXEC_DONE, "case %zu", i);
        PQclear(e);
        msgs_t m = {rw_exec_body(ex), 0};
        expect_tag(&m, "SELECT 0");
        rw_exec_free(ex);
    }
    rw_groups_free(g);
}

/* The NOTICE is PostgreSQL's byte for byte: S V C M, then the learnt W F L R. */
static void expect_bulist_notice_bytes(msgs_t *m, const char *sev, const char *msg, const char *where,
                                       const char *file, const char *line, const char *routine)
{
    pgw_buf_t want;
    pgw_buf_init(&want);
    pgw_msg_begin(&want, 'N');
    const char codes[] = "SVCMWFLR";
    const char *vals[] = {sev, "NOTICE", "00000", msg, where, file, line, routine};
    for (int i = 0; i < 8; i++) {
        if (i >= 4 && vals[i][0] == '\0')
            continue;
        pgw_put_u8(&want, (uint8_t)codes[i]);
        pgw_put_cstr(&want, vals[i]);
    }
    pgw_put_u8(&want, 0);
    pgw_msg_end(&want);
    cr_assert(m->off + want.len <= m->b->len);
    cr_assert(memcmp(m->b->data + m->off, want.data, want.len) == 0, "NOTICE bytes differ");
    m->off += want.len;
    pgw_buf_free(&want);
}

Test(native_exec, get_bulist_notice_carries_learnt_fields)
{
    const char *a[] = {"2", "true", "true", "BoGuS", NULL};
    rw_call_t c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_TARGET, "buids", RW_OID_INT8_ARRAY, 5, a);
    rw_exec_t *ex = run_noquery(&c);
    msgs_t m = {rw_exec_body(ex), 0};
    expect_bulist_notice_bytes(&m, "NOTICE", "Phrase :: bogus", BULIST_WHERE, "pl_exec.c", "3907",
                               "exec_stmt_raise");
    expect_tag(&m, "SELECT 0");
    cr_assert(!next_msg(&m, &(pgw_frame_t){0}));
    rw_exec_free(ex);
}

static rw_exec_t *start_probe(const char *phrase)
{
    const char *a[] = {"2", "true", "true", phrase, NULL};
    rw_call_t c = mkcall(RW_FN_GET_BULIST, RW_SHAPE_TARGET, "x", RW_OID_INT8_ARRAY, 5, a);
    rw_exec_t *ex = rw_exec_new(&c);
    rw_dbinfo_t db = db_c;
    db.bulist_notice_learnt = false;
    rw_exec_set_dbinfo(ex, &db);
    cr_assert_eq(rw_exec_start(ex), RW_EXEC_QUERY);
    cr_assert_str_eq(rw_exec_sql(ex), rw_bulist_probe_sql);
    cr_assert_null(rw_exec_stmt_name(ex));   /* unnamed: runs once per database */
    return ex;
}

Test(native_exec, get_bulist_probe_learns_notice_fields)
{
    rw_exec_t *ex = start_probe("zz");
    /* Another notice first (ignored), then the function's own, localized, without a routine. */
    rw_notice_t other = {.severity = "NOTICE", .severity_nl = "NOTICE", .sqlstate = "00000",
                         .message = "something else", .where = "w"};
    rw_exec_notice(ex, &other);
    rw_notice_t n = {.severity = "HINWEIS", .severity_nl = "NOTICE", .sqlstate = "00000",
                     .message = "Phrase :: <NULL>", .where = "PL/pgSQL function f line 3 at RAISE",
                     .file = "pl_exec.c", .line = "42", .routine = NULL};
    rw_exec_notice(ex, &n);
    static const char *names[] = {"?column?"};
    PGresult *r = mkres(1, names, 0, NULL);
    cr_assert_eq(rw_exec_feed(ex, r), RW_EXEC_DONE);
    PQclear(r);
    rw_dbinfo_t got;
    cr_assert(rw_exec_get_dbinfo(ex, &got));
    cr_assert(got.bulist_notice_learnt);
    cr_assert_str_eq(got.bulist_notice_sev, "HINWEIS");
    cr_assert_str_eq(got.bulist_notice_routine, "");
    msgs_t m = {rw_exec_body(ex), 0};
    expect_bulist_notice_bytes(&m, "HINWEIS", "Phrase :: zz", "PL/pgSQL function f line 3 at RAISE",
                               "pl_exec.c", "42", "");
    expect_tag(&m, "SELECT 0");
    rw_exec_free(ex);
}

Test(native_exec, get_bulist_probe_failures_fall_back)
{
    static const char *names[] = {"?column?"};
    /* No NOTICE (a function that raises none, or client_min_messages above notice). */
    rw_exec_t *ex = start_probe("array");
    PGresult *r = mkres(1, names, 0, NULL);
    cr_assert_eq(rw_exec_feed(ex, r), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_NO_NOTICE_TEMPLATE);
    rw_exec_free(ex);
    /* A NOTICE worded differently is not the function's. */
    ex = start_probe("array");
    rw_notice_t n = {.severity = "NOTICE", .severity_nl = "NOTICE", .sqlstate = "00000",
                     .message = "Phrase: <NULL>"};
    rw_exec_notice(ex, &n);
    cr_assert_eq(rw_exec_feed(ex, r), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_NO_NOTICE_TEMPLATE);
    rw_exec_free(ex);
    /* A field too long to keep. */
    ex = start_probe("array");
    char longw[400];
    memset(longw, 'w', sizeof longw - 1);
    longw[sizeof longw - 1] = '\0';
    rw_notice_t l = {.severity = "NOTICE", .severity_nl = "NOTICE", .sqlstate = "00000",
                     .message = "Phrase :: <NULL>", .where = longw};
    rw_exec_notice(ex, &l);
    cr_assert_eq(rw_exec_feed(ex, r), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_NO_NOTICE_TEMPLATE);
    rw_exec_free(ex);
    PQclear(r);
    /* The probe itself failed (no such function here): not learnt, retried next time. */
    ex = start_probe("array");
    cr_assert_eq(rw_exec_feed(ex, NULL), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_NATIVE_QUERY);
    rw_dbinfo_t got;
    cr_assert(rw_exec_get_dbinfo(ex, &got));
    cr_assert(!got.bulist_notice_learnt);
    rw_exec_free(ex);
    /* Rows from the probe: not the function we know. */
    ex = start_probe("array");
    static const char *one[] = {"1"};
    r = mkres(1, names, 1, one);
    rw_exec_notice(ex, &(rw_notice_t){.severity = "NOTICE", .severity_nl = "NOTICE",
                                      .sqlstate = "00000", .message = "Phrase :: <NULL>"});
    cr_assert_eq(rw_exec_feed(ex, r), RW_EXEC_FALLBACK);
    cr_assert_eq(rw_exec_reason(ex), RW_REASON_NATIVE_QUERY);
    PQclear(r);
    rw_exec_free(ex);
}
