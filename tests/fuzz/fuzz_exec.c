/*
 * Fuzz target: the native implementations (rewrite/exec.c, rewrite/functions/) fed arbitrary
 * query results, and the in-memory BU tree, capability answer and group memberships built from
 * arbitrary rows. A native connection normally returns well-formed rows of the fixture's
 * schema; this target checks that anything else (wrong column counts, NULLs where the schema has
 * none, non-numbers, cycles in parent ids, huge values, failed or empty results) ends in a
 * fallback or a well-formed answer, never a crash, a hang or a malformed message.
 *
 * Input: a call index, database facts, which memos to build (each from a result read from the
 * input), then one result per query the execution asks for. A result is: a kind byte (NULL
 * result, error result, command result, rows), a column count, a row count, then the values:
 * a length byte (0xFF = NULL, 0xFE = a value from a small dictionary of boundary cases) and
 * that many bytes.
 *
 * Invariants: every RW_EXEC_DONE answer frames, validates and passes cache_payload_check (what
 * cache mode requires before it stores an answer); an execution asks for at most a few queries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cache.h"
#include "fuzz_input.h"
#include "rw.h"

static const char *const g_sql[] = {
    "select fn_get_bulist(5, false, true, 'array'::text, null::bigint[]) as id;",
    "select fn_get_bulist(5, false, true, 'jsonb'::text, null::jsonb) as id;",
    "select fn_get_bulist(5, false, true, 'text'::text, null::jsonb) as id;",
    "select * from fn_get_bulist(2, true, true, 'Text', null::text)",
    "select fn_get_bulist(2, true, true, 'bogus', null::text)",
    "SELECT fn_getbulist_basedon_idnf(10, true, true)",
    "SELECT fn_getbulist_basedon_idnf(10, false, true)",
    "SELECT fn_getassetvsquestionset(3, '17', 'name')",
    "SELECT fn_getassetvsquestionset(3, '17', '')",
    "select * from fn_getassetdetails('2024-01-02 10:30:00+05:30'::timestamptz, 3)",
    "select * from fun_getjobneed(100, 3, 2)",
    "select * from fun_getexttourjobneed(100, 3, 2)",
    "select * from fn_get_schedule_for_adhoc('2024-01-02 10:30:00+00:00'::timestamptz, 3, 100, 5, 7)",
    "select * from fn_menupbt(6, 'text'::text)",
    "select fn_menupbt(6, 'array'::text)",
    "select fn_menupbt(6, 'jsonb'::text)",
    "select fn_menallbt(5, 'array'::text)",
    "select fn_menallbt(5, 'text'::text)",
    "select fn_mendownbt(2, 'jsonb'::text) as tree",
    "select fn_mendownbt(2, 'text'::text)",
    "select fn_mendownbt(2, 'bogus'::text)",
    NULL, /* the capability query, when its text registers */
};
#define NCALLS (sizeof g_sql / sizeof g_sql[0])

static rw_call_t g_calls[NCALLS];
static bool g_have[NCALLS];

static const char *const g_dict[] = {
    "", "0", "1", "-1", "2", "3", "5", "10", "t", "f", "NULL", "{}", "{1,2}", "{\"a\": 1}",
    "9223372036854775807", "-9223372036854775808", "99999999999999999999", "1.5", " 1",
    "2024-01-02 10:30:00+00", "infinity", "d", "u", "CLIENT", "SITE", "WEB", "NONE", "\xff\xfe",
    "a~b", "a b", "\"", "\\",
};

static void load_calls(void)
{
    char caps[64 * 1024] = "";
#ifdef FUZZ_CAPS_FILE
    FILE *f = fopen(FUZZ_CAPS_FILE, "rb");
    if (f != NULL) {
        size_t n = fread(caps, 1, sizeof caps - 1, f);
        caps[n] = '\0';
        fclose(f);
        if (rw_set_caps_query(caps) != 0)
            caps[0] = '\0';
    }
#endif
    for (size_t i = 0; i < NCALLS; i++) {
        const char *sql = g_sql[i] ? g_sql[i] : caps;
        rw_reason_t reason;
        if (sql[0] != '\0' && rw_recognize_query(sql, &g_calls[i], &reason) == 1)
            g_have[i] = true;
        else if (g_sql[i] != NULL)
            fz_fail(__FILE__, __LINE__, "a seed call is no longer recognised");
    }
}

/* A result read from the input; NULL stands for "the query failed to run". */
static PGresult *read_result(fz_in_t *in)
{
    uint8_t kind = fz_u8(in) % 8;
    if (kind == 0)
        return NULL;
    if (kind == 1)
        return PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    if (kind == 2)
        return PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    if (r == NULL)
        return NULL;
    int ncols = fz_u8(in) % 41;
    int nrows = fz_u8(in) % 25;
    PGresAttDesc att[40];
    memset(att, 0, sizeof att);
    for (int c = 0; c < ncols; c++) {
        att[c].name = (char *)"c";
        att[c].typid = 25;
        att[c].typlen = -1;
        att[c].atttypmod = -1;
    }
    if (!PQsetResultAttrs(r, ncols, att)) {
        PQclear(r);
        return NULL;
    }
    char val[256];
    for (int row = 0; row < nrows; row++)
        for (int c = 0; c < ncols; c++) {
            uint8_t l = fz_u8(in);
            if (l == 0xFF) {
                PQsetvalue(r, row, c, NULL, -1);
                continue;
            }
            if (l == 0xFE) {
                const char *d = g_dict[fz_u8(in) % (sizeof g_dict / sizeof g_dict[0])];
                PQsetvalue(r, row, c, (char *)d, (int)strlen(d));
                continue;
            }
            const uint8_t *v;
            size_t n = fz_bytes(in, l, &v);
            /* A text-format value never holds a NUL byte. */
            for (size_t k = 0; k < n; k++)
                val[k] = v[k] ? (char)v[k] : '0';
            PQsetvalue(r, row, c, val, (int)n);
        }
    return r;
}

static void check_answer(const rw_exec_t *ex)
{
    const pgw_buf_t *d = rw_exec_describe(ex), *b = rw_exec_body(ex);
    FZ_CHECK(!pgw_buf_failed(d) && !pgw_buf_failed(b));
    cache_result_t r;
    FZ_CHECK(cache_payload_check(d->data, d->len, b->data, b->len, &r) == 0);
    FZ_CHECK(r.failed == rw_exec_failed(ex));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        load_calls();
        inited = 1;
    }
    fz_in_t in = {data, size};
    size_t ci = fz_u8(&in) % NCALLS;
    if (!g_have[ci])
        return 0;
    uint8_t facts = fz_u8(&in);
    rw_dbinfo_t db = {.valid = true,
                      .geography_oid = (facts & 1) ? 0 : 17082,
                      .geography_len = -1,
                      .collate_c = !(facts & 2),
                      .ctype_c = !(facts & 4)};
    if (!(facts & 16)) {   /* else fn_get_bulist first runs its probe */
        rw_dbinfo_t t = {.bulist_notice_learnt = true, .bulist_notice_sev = "NOTICE",
                         .bulist_notice_where = "PL/pgSQL function fn_get_bulist(bigint,boolean,boolean,text,anyelement) line 9 at RAISE",
                         .bulist_notice_file = "pl_exec.c", .bulist_notice_line = "3907",
                         .bulist_notice_routine = "exec_stmt_raise"};
        memcpy(db.bulist_notice_sev, t.bulist_notice_sev, sizeof db.bulist_notice_sev);
        memcpy(db.bulist_notice_where, t.bulist_notice_where, sizeof db.bulist_notice_where);
        memcpy(db.bulist_notice_file, t.bulist_notice_file, sizeof db.bulist_notice_file);
        memcpy(db.bulist_notice_line, t.bulist_notice_line, sizeof db.bulist_notice_line);
        memcpy(db.bulist_notice_routine, t.bulist_notice_routine, sizeof db.bulist_notice_routine);
        db.bulist_notice_learnt = true;
    }
    bool give_db = !(facts & 8);
    uint8_t memos = fz_u8(&in);
    rw_butree_t *tree = NULL;
    rw_capsmemo_t *caps = NULL;
    rw_groups_t *groups = NULL;
    if (memos & 1) {
        PGresult *r = read_result(&in);
        tree = r ? rw_butree_build(r) : NULL;
        PQclear(r);
    }
    if (memos & 2) {
        PGresult *r = read_result(&in);
        caps = r ? rw_capsmemo_build(r) : NULL;
        PQclear(r);
    }
    if (memos & 4) {
        PGresult *r = read_result(&in);
        groups = r ? rw_groups_build(r) : NULL;
        PQclear(r);
    }
    rw_exec_t *ex = rw_exec_new(&g_calls[ci]);
    if (ex != NULL) {
        if (give_db)
            rw_exec_set_dbinfo(ex, &db);
        if (tree)
            rw_exec_set_butree(ex, tree);
        if (caps)
            rw_exec_set_capsmemo(ex, caps);
        if (groups)
            rw_exec_set_groups(ex, groups);
        rw_exec_status_t st = rw_exec_start(ex);
        int steps = 0;
        while (st == RW_EXEC_QUERY) {
            FZ_CHECK(++steps <= 8);
            FZ_CHECK(rw_exec_sql(ex) != NULL);
            if ((facts & 32) && strcmp(rw_exec_sql(ex), rw_bulist_probe_sql) == 0) {
                rw_notice_t n = {.severity = "NOTICE", .severity_nl = "NOTICE",
                                 .sqlstate = "00000", .message = "Phrase :: <NULL>",
                                 .where = (facts & 64) ? NULL : "PL/pgSQL function fn_get_bulist",
                                 .file = "pl_exec.c", .line = "1", .routine = "r"};
                rw_exec_notice(ex, &n);
            }
            PGresult *r = read_result(&in);
            st = rw_exec_feed(ex, r);
            PQclear(r);
        }
        if (st == RW_EXEC_DONE)
            check_answer(ex);
        else
            FZ_CHECK(st == RW_EXEC_FALLBACK && rw_exec_reason(ex) != RW_REASON_NONE);
        rw_exec_free(ex);
    }
    rw_butree_free(tree);
    rw_capsmemo_free(caps);
    rw_groups_free(groups);
    return 0;
}
