/*
 * Fuzz target: recognition of legacy calls (rewrite/recognize.c) on arbitrary SQL text, the way
 * a client can send it, in both protocols.
 *
 * Input: byte 0 picks the path. Simple protocol: the rest is the Query text. Extended protocol:
 * the Parse text runs to the first 0xFF byte, then come the declared parameter types (one byte
 * each, mapped to the OIDs a driver sends), then the Bind: per parameter a format byte and a
 * length byte (0xFF = NULL) followed by the value bytes.
 *
 * Invariants checked beyond "no crash, no leak, no sanitizer report":
 *   - the pre-filter never rejects a statement the recogniser accepts (rw.h promises this);
 *   - an accepted call has 0..RW_MAX_ARGS arguments, NUL-terminated texts for non-NULL ones, and
 *     a RowDescription that frames and validates when it can be described without the database;
 *   - starting a native execution of it either asks for a query, falls back, or answers with
 *     messages that frame and validate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "rw.h"

/* The OIDs drivers declare for parameters: unspecified, int8, int4, bool, text, varchar,
   timestamptz, int8[], jsonb, unknown, numeric. */
static const uint32_t g_oids[] = {0, 20, 23, 16, 25, 1043, 1184, 1016, 3802, 705, 1700};

static void check_messages(const pgw_buf_t *b)
{
    size_t off = 0;
    while (off < b->len) {
        pgw_frame_t f;
        size_t need = 0;
        int n = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, b->data + off, b->len - off, &f, &need);
        FZ_CHECK(n > 0);
        FZ_CHECK(pgw_validate(&f, PGW_B) == 0);
        off += (size_t)n;
    }
}

static void check_call(const rw_call_t *c)
{
    FZ_CHECK(c->nargs >= 0 && c->nargs <= RW_MAX_ARGS);
    FZ_CHECK(memchr(c->colname, '\0', sizeof c->colname) != NULL);
    for (int i = 0; i < c->nargs; i++)
        if (!c->args[i].is_null && c->args[i].param == 0)
            FZ_CHECK(c->args[i].text != NULL && strlen(c->args[i].text) < 1u << 20);
    pgw_buf_t d;
    pgw_buf_init(&d);
    if (rw_describe_call(c, &d) >= 0 && !pgw_buf_failed(&d))
        check_messages(&d);
    pgw_buf_free(&d);
    /* Native execution's first step needs no database: it asks for a query or answers from the
       arguments alone (NULLs, unknown phrases, the errors PostgreSQL would raise). */
    rw_exec_t *ex = rw_exec_new(c);
    if (ex == NULL)
        return;
    rw_dbinfo_t db = {.valid = true, .geography_oid = 17082, .geography_len = -1,
                      .collate_c = true, .ctype_c = true,
                      .bulist_notice_learnt = true, .bulist_notice_sev = "NOTICE",
                      .bulist_notice_where = "PL/pgSQL function fn_get_bulist(bigint,boolean,boolean,text,anyelement) line 9 at RAISE",
                      .bulist_notice_file = "pl_exec.c", .bulist_notice_line = "3907",
                      .bulist_notice_routine = "exec_stmt_raise"};
    rw_exec_set_dbinfo(ex, &db);
    rw_exec_status_t st = rw_exec_start(ex);
    if (st == RW_EXEC_DONE) {
        check_messages(rw_exec_describe(ex));
        check_messages(rw_exec_body(ex));
    } else if (st == RW_EXEC_QUERY) {
        FZ_CHECK(rw_exec_sql(ex) != NULL);
        FZ_CHECK(rw_exec_nparams(ex) >= 0 && rw_exec_nparams(ex) <= 8);
    } else {
        FZ_CHECK(st == RW_EXEC_FALLBACK);
    }
    rw_exec_free(ex);
}

static void load_caps_query(void)
{
#ifdef FUZZ_CAPS_FILE
    FILE *f = fopen(FUZZ_CAPS_FILE, "rb");
    if (f == NULL)
        return;
    static char text[64 * 1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    if (rw_set_caps_query(text) != 0)
        fz_fail(__FILE__, __LINE__, "the fixture's capability query does not register");
#endif
}

static void simple(fz_in_t *in)
{
    char *sql = malloc(in->left + 1);
    if (sql == NULL)
        return;
    memcpy(sql, in->p, in->left);
    sql[in->left] = '\0';
    size_t len = strlen(sql);   /* a Query's text ends at its first NUL */
    rw_call_t call;
    rw_reason_t reason = RW_REASON__COUNT;
    int rc = rw_recognize_query(sql, &call, &reason);
    if (rc == 1) {
        FZ_CHECK(rw_prefilter(sql, len));
        check_call(&call);
        rw_call_clear(&call);
    } else if (rc == 0) {
        FZ_CHECK(reason < RW_REASON__COUNT && reason != RW_REASON_NONE);
    }
    free(sql);
}

/* Builds a Bind message for the template from the input and decodes it as the proxy would. */
static void bind_and_check(const rw_template_t *t, fz_in_t *in)
{
    uint16_t np = rw_template_nparams(t);
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_msg_begin(&b, pgw_msg_byte(PGW_MSG_BIND));
    pgw_put_bytes(&b, "", 1);       /* portal */
    pgw_put_bytes(&b, "", 1);       /* statement */
    pgw_put_i16(&b, (int16_t)np);
    for (uint16_t i = 0; i < np; i++)
        pgw_put_i16(&b, (int16_t)(fz_u8(in) & 1));
    pgw_put_i16(&b, (int16_t)np);
    for (uint16_t i = 0; i < np; i++) {
        uint8_t l = fz_u8(in);
        if (l == 0xFF) {
            pgw_put_i32(&b, -1);
            continue;
        }
        const uint8_t *v;
        size_t n = fz_bytes(in, l, &v);
        pgw_put_i32(&b, (int32_t)n);
        pgw_put_bytes(&b, v, n);
    }
    pgw_put_i16(&b, (int16_t)(fz_u8(in) & 1));
    pgw_put_i16(&b, 0);
    pgw_msg_end(&b);
    if (pgw_buf_failed(&b)) {
        pgw_buf_free(&b);
        return;
    }
    pgw_frame_t f;
    size_t need = 0;
    pgw_bind_t bind;
    if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, b.data, b.len, &f, &need) > 0 &&
        pgw_decode_bind(&f, &bind) == 0) {
        rw_call_t call;
        rw_reason_t reason = RW_REASON__COUNT;
        int rc = rw_template_bind(t, &bind, &call, &reason);
        if (rc == 1) {
            check_call(&call);
            rw_call_clear(&call);
        } else if (rc == 0) {
            FZ_CHECK(reason < RW_REASON__COUNT && reason != RW_REASON_NONE);
        }
    }
    pgw_buf_free(&b);
}

static void extended(fz_in_t *in)
{
    const uint8_t *s;
    size_t n = fz_until(in, 0xFF, &s);
    char *sql = malloc(n + 1);
    if (sql == NULL)
        return;
    memcpy(sql, s, n);
    sql[n] = '\0';
    uint16_t np = fz_u8(in) % 10;
    uint32_t oids[10];
    for (uint16_t i = 0; i < np; i++)
        oids[i] = g_oids[fz_u8(in) % (sizeof g_oids / sizeof g_oids[0])];
    rw_reason_t reason = RW_REASON__COUNT;
    rw_template_t *t = rw_template_from_parse(sql, oids, np, &reason);
    if (t != NULL) {
        FZ_CHECK(rw_prefilter(sql, strlen(sql)));
        const rw_call_t *c = rw_template_call(t);
        FZ_CHECK(c->nargs >= 0 && c->nargs <= RW_MAX_ARGS);
        for (uint16_t i = 0; i < rw_template_nparams(t); i++)
            (void)rw_template_param_oid(t, i);
        pgw_buf_t d;
        pgw_buf_init(&d);
        if (rw_template_describe(t, &d) >= 0 && !pgw_buf_failed(&d))
            check_messages(&d);
        pgw_buf_free(&d);
        bind_and_check(t, in);
        rw_template_free(t);
    }
    free(sql);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        load_caps_query();
        inited = 1;
    }
    fz_in_t in = {data, size};
    if (fz_u8(&in) & 1)
        extended(&in);
    else
        simple(&in);
    return 0;
}
