/*
 * rw_diff: differential test of pgshim's native implementations against the legacy functions.
 *
 * For every function of spec 3.1-3.10 and the capability query (3.11) it draws argument tuples
 * from the loaded data plus edge cases (NULLs, missing ids, the -1 and 1 sentinels, every flag and
 * phrase combination including mixed case and unknown ones, mdtz in the past and future, people in
 * no group, legacy rows under -1), then for each tuple, inside one transaction (so now() and
 * current_date are the same for both sides):
 *   - runs the legacy SQL the callers send with PQexec and records its field descriptions, rows
 *     (text bytes), command tag, NOTICEs (severity, SQLSTATE, message) and error fields;
 *   - runs the native implementation through rw_exec (its queries on the same connection) and
 *     decodes the messages it built with pgw's decoders;
 *   - compares everything the client sees: column count, names, type OIDs, typmods, typlens,
 *     table OID / attnum, format, each value byte for byte (NULL vs empty), command tag, notices,
 *     error severity / SQLSTATE / message / detail.
 * Rows are compared in order except where the spec says the legacy order is undefined (job
 * functions, fn_getassetdetails): those are compared after sorting both sides by id.
 * Each legacy SQL text also goes through rw_recognize_query (with the capability query registered
 * by rw_set_caps_query): when it is recognized, the extracted call must equal the hand-built one
 * (column "recog" counts those) and the native side runs the recognized call, so the whole
 * rewrite module is tested end to end; a call the recognizer rejects runs the hand-built call.
 * A native fallback (RW_EXEC_FALLBACK) is counted, not a difference: the call would pass through.
 * It also times legacy vs native per function (median, milliseconds, same connection, outside
 * the comparison transaction, over calls whose answer has data) as a first indication; the native
 * time includes its queries (prepared once per connection, as a driver would) and composition.
 *
 * Usage: rw_diff [--conn CONNINFO] [--per-fn N] [--caps-file FILE] [--timing N] [--seed S]
 *                [--memos]    (answer from the optional in-memory data: the BU tree, the
 *                              capability answer and the group memberships; --butree is the
 *                              old name of the same switch)
 *   CONNINFO defaults to the libpq environment (PGHOST, PGPORT, PGDATABASE, ...).
 *   Exit status 0 only when there are zero differences.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "functions/functions.h"
#include "pgw.h"
#include "rw.h"

/* ---------------------------------------------------------------------------------------------
 * Small utilities
 * ------------------------------------------------------------------------------------------- */
__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static char *xstrdup(const char *s)
{
    char *r = strdup(s ? s : "");
    if (!r)
        die("out of memory");
    return r;
}

__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *r = NULL;
    if (vasprintf(&r, fmt, ap) < 0)
        die("out of memory");
    va_end(ap);
    return r;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static size_t rnd_n(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static PGconn *conn;

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        die("%s: %s", sql, PQerrorMessage(conn));
    PQclear(r);
}

/* Column 0 of a query as a string list. */
typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist_t;

static void sl_push(strlist_t *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            die("out of memory");
    }
    l->v[l->n++] = s ? xstrdup(s) : NULL;
}

static void sl_free(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static PGresult *query(const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("%s: %s", sql, PQerrorMessage(conn));
    return r;
}

static strlist_t col0(const char *sql)
{
    strlist_t l = {0};
    PGresult *r = query(sql);
    for (int i = 0; i < PQntuples(r); i++)
        sl_push(&l, PQgetisnull(r, i, 0) ? NULL : PQgetvalue(r, i, 0));
    PQclear(r);
    return l;
}

/* ---------------------------------------------------------------------------------------------
 * Test cases: an rw_call_t plus the SQL text the legacy caller sends
 * ------------------------------------------------------------------------------------------- */
typedef struct tcase {
    rw_call_t call;
    char sql[2048];
    size_t sqllen;
    int nargs_sql;
    bool rich;       /* set by run_case: identical answer with data (timed) */
} tcase_t;

static void tc_begin(tcase_t *t, rw_fn_t fn, rw_shape_t shape, const char *alias)
{
    memset(t, 0, sizeof *t);
    t->call.fn = fn;
    t->call.shape = shape;
    const char *name = rw_fn_name(fn);
    snprintf(t->call.colname, sizeof t->call.colname, "%s", alias ? alias : name);
    if (shape == RW_SHAPE_FROM)
        t->sqllen = (size_t)snprintf(t->sql, sizeof t->sql, "select * from %s(", name);
    else
        t->sqllen = (size_t)snprintf(t->sql, sizeof t->sql, "select %s(", name);
}

static void tc_sql(tcase_t *t, const char *s)
{
    size_t n = strlen(s);
    if (t->sqllen + n + 1 >= sizeof t->sql)
        die("sql too long");
    memcpy(t->sql + t->sqllen, s, n + 1);
    t->sqllen += n;
}

/* Adds one argument: text is the canonical value (NULL = SQL NULL); lit is how the legacy SQL
   spells it. */
static void tc_arg(tcase_t *t, rw_type_t type, const char *text, const char *lit)
{
    if (t->call.nargs)
        tc_sql(t, ", ");
    tc_sql(t, lit);
    rw_arg_t *a = &t->call.args[t->call.nargs++];
    a->type = type;
    a->is_null = text == NULL;
    a->text = text ? xstrdup(text) : NULL;
}

static void tc_int(tcase_t *t, const char *v)
{
    if (!v) {
        tc_arg(t, RW_T_INT8, NULL, "NULL");
        return;
    }
    /* psycopg renders negative ints with a leading space. */
    char lit[64];
    snprintf(lit, sizeof lit, "%s%s", v[0] == '-' ? " " : "", v);
    tc_arg(t, RW_T_INT8, v, lit);
}

static void tc_int_quoted(tcase_t *t, const char *v)
{
    char lit[64];
    snprintf(lit, sizeof lit, "'%s'", v);
    tc_arg(t, RW_T_INT8, v, lit);
}

/* tri: 0 false, 1 true, 2 NULL */
static void tc_bool(tcase_t *t, int tri)
{
    tc_arg(t, RW_T_BOOL, tri == 2 ? NULL : tri ? "true" : "false",
           tri == 2 ? "NULL" : tri ? "true" : "false");
}

static void tc_text(tcase_t *t, const char *v, const char *cast)
{
    if (!v) {
        char lit[64];
        snprintf(lit, sizeof lit, "NULL%s", cast ? cast : "");
        tc_arg(t, RW_T_TEXT, NULL, lit);
        return;
    }
    char lit[512];
    size_t k = 0;
    lit[k++] = '\'';
    for (const char *p = v; *p && k < sizeof lit - 16; p++) {
        if (*p == '\'')
            lit[k++] = '\'';
        lit[k++] = *p;
    }
    lit[k++] = '\'';
    lit[k] = '\0';
    if (cast)
        snprintf(lit + k, sizeof lit - k, "%s", cast);
    tc_arg(t, RW_T_TEXT, v, lit);
}

static void tc_ts(tcase_t *t, const char *v)
{
    if (!v) {
        tc_arg(t, RW_T_TIMESTAMPTZ, NULL, "NULL");
        return;
    }
    char lit[128];
    snprintf(lit, sizeof lit, "'%s'::timestamptz", v);
    tc_arg(t, RW_T_TIMESTAMPTZ, v, lit);
}

static void tc_end(tcase_t *t, const char *alias)
{
    tc_sql(t, ")");
    if (t->call.shape == RW_SHAPE_TARGET && alias) {
        tc_sql(t, " as ");
        tc_sql(t, alias);
    }
}

static void tc_free(tcase_t *t)
{
    for (int i = 0; i < t->call.nargs; i++)
        free(t->call.args[i].text);
}

/* ---------------------------------------------------------------------------------------------
 * Captured answers
 * ------------------------------------------------------------------------------------------- */
typedef struct note {
    char sev[16], state[8];
    char *msg;
    char *all;   /* every field as "Cvalue\n" in PostgreSQL's order (context, source location) */
} note_t;

typedef struct answer {
    int nfields;
    char *fname[40];
    uint32_t ftype[40], ftable[40];
    int32_t fmod[40];
    int16_t flen[40], fattnum[40], fformat[40];
    int nrows;
    char ***val;     /* [row][col] NUL-terminated copies, NULL = SQL NULL */
    int **len;
    char *tag;
    note_t notes[8];
    int nnotes;
    bool error;
    char esev[16], estate[8];
    char *emsg, *edetail;
} answer_t;

static void ans_free(answer_t *a)
{
    for (int i = 0; i < a->nfields; i++)
        free(a->fname[i]);
    for (int r = 0; r < a->nrows; r++) {
        for (int c = 0; c < a->nfields; c++)
            free(a->val[r][c]);
        free(a->val[r]);
        free(a->len[r]);
    }
    free(a->val);
    free(a->len);
    free(a->tag);
    for (int i = 0; i < a->nnotes; i++)
    {
        free(a->notes[i].msg);
        free(a->notes[i].all);
    }
    free(a->emsg);
    free(a->edetail);
    memset(a, 0, sizeof *a);
}

static answer_t *cur_notes;
static rw_exec_t *probing;   /* the exec whose fn_get_bulist probe is running */

/* The order in which PostgreSQL writes the fields of an ErrorResponse/NoticeResponse. */
static const char field_order[] = "SVCMDHPpqWstcdnFLR";

/* vals[c]: value of field c or NULL. */
static char *fields_str(const char *const vals[128])
{
    size_t cap = 64;
    for (const char *o = field_order; *o; o++)
        if (vals[(int)*o])
            cap += strlen(vals[(int)*o]) + 2;
    char *out = malloc(cap), *w = out;
    if (!out)
        die("out of memory");
    for (const char *o = field_order; *o; o++)
        if (vals[(int)*o])
            w += sprintf(w, "%c%s\n", *o, vals[(int)*o]);
    *w = '\0';
    return out;
}

static void notice_rx(void *arg, const PGresult *res)
{
    (void)arg;
    if (probing) {
        rw_notice_t n = rw_notice_from_result(res);
        rw_exec_notice(probing, &n);
        return;
    }
    if (!cur_notes || cur_notes->nnotes >= 8)
        return;
    note_t *n = &cur_notes->notes[cur_notes->nnotes++];
    const char *s = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *c = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(n->sev, sizeof n->sev, "%s", s ? s : "");
    snprintf(n->state, sizeof n->state, "%s", c ? c : "");
    n->msg = xstrdup(m);
    const char *vals[128] = {0};
    for (const char *o = field_order; *o; o++)
        vals[(int)*o] = PQresultErrorField(res, *o);
    n->all = fields_str(vals);
}

static char *copy_bytes(const void *p, int len)
{
    char *r = malloc((size_t)len + 1);
    if (!r)
        die("out of memory");
    memcpy(r, p, (size_t)len);
    r[len] = '\0';
    return r;
}

static void ans_from_pg(answer_t *a, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK) {
        a->error = true;
        const char *s = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
        const char *c = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
        snprintf(a->esev, sizeof a->esev, "%s", s ? s : "");
        snprintf(a->estate, sizeof a->estate, "%s", c ? c : "");
        a->emsg = xstrdup(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
        a->edetail = d ? xstrdup(d) : NULL;
        return;
    }
    a->nfields = PQnfields(r);
    if (a->nfields > 40)
        die("too many fields");
    for (int i = 0; i < a->nfields; i++) {
        a->fname[i] = xstrdup(PQfname(r, i));
        a->ftype[i] = PQftype(r, i);
        a->ftable[i] = PQftable(r, i);
        a->fmod[i] = PQfmod(r, i);
        a->flen[i] = (int16_t)PQfsize(r, i);
        a->fattnum[i] = (int16_t)PQftablecol(r, i);
        a->fformat[i] = (int16_t)PQfformat(r, i);
    }
    a->nrows = PQntuples(r);
    a->val = calloc((size_t)a->nrows + 1, sizeof *a->val);
    a->len = calloc((size_t)a->nrows + 1, sizeof *a->len);
    for (int row = 0; row < a->nrows; row++) {
        a->val[row] = calloc((size_t)a->nfields + 1, sizeof **a->val);
        a->len[row] = calloc((size_t)a->nfields + 1, sizeof **a->len);
        for (int c = 0; c < a->nfields; c++) {
            if (PQgetisnull(r, row, c)) {
                a->val[row][c] = NULL;
                a->len[row][c] = -1;
            } else {
                a->val[row][c] = copy_bytes(PQgetvalue(r, row, c), PQgetlength(r, row, c));
                a->len[row][c] = PQgetlength(r, row, c);
            }
        }
    }
    a->tag = xstrdup(PQcmdStatus(r));
}

/* Decodes the messages rw built. Returns NULL or a description of a protocol-level problem. */
static const char *ans_from_native(answer_t *a, const pgw_buf_t *desc, const pgw_buf_t *body)
{
    const pgw_buf_t *bufs[2] = {desc, body};
    int cap = 0;
    for (int b = 0; b < 2; b++) {
        size_t off = 0;
        while (off < bufs[b]->len) {
            pgw_frame_t f;
            size_t need = 0;
            int n = pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, bufs[b]->data + off, bufs[b]->len - off,
                                   &f, &need);
            if (n <= 0)
                return "unframeable native output";
            off += (size_t)n;
            switch (f.type) {
            case PGW_MSG_ROW_DESCRIPTION: {
                if (b != 0)
                    return "RowDescription in body";
                pgw_row_description_t rd;
                if (pgw_decode_row_description(&f, &rd) < 0)
                    return "bad RowDescription";
                size_t fo = 0;
                pgw_field_desc_t fd;
                a->nfields = 0;
                while (a->nfields < 40 && pgw_row_description_next(&rd, &fo, &fd) == 1) {
                    int i = a->nfields++;
                    a->fname[i] = copy_bytes(fd.name.ptr, (int)fd.name.len);
                    a->ftype[i] = fd.type_oid;
                    a->ftable[i] = fd.table_oid;
                    a->fmod[i] = fd.type_mod;
                    a->flen[i] = fd.type_len;
                    a->fattnum[i] = fd.attnum;
                    a->fformat[i] = fd.format;
                }
                if (a->nfields != rd.nfields)
                    return "RowDescription field count";
                break;
            }
            case PGW_MSG_DATA_ROW: {
                pgw_data_row_t dr;
                if (pgw_decode_data_row(&f, &dr) < 0)
                    return "bad DataRow";
                if (dr.ncols != a->nfields)
                    return "DataRow column count differs from RowDescription";
                if (a->nrows == cap) {
                    cap = cap ? cap * 2 : 16;
                    a->val = realloc(a->val, (size_t)cap * sizeof *a->val);
                    a->len = realloc(a->len, (size_t)cap * sizeof *a->len);
                }
                int row = a->nrows++;
                a->val[row] = calloc((size_t)a->nfields + 1, sizeof **a->val);
                a->len[row] = calloc((size_t)a->nfields + 1, sizeof **a->len);
                size_t co = 0;
                const uint8_t *v;
                int32_t l;
                for (int c = 0; c < a->nfields; c++) {
                    if (pgw_data_row_next(&dr, &co, &v, &l) != 1)
                        return "short DataRow";
                    a->len[row][c] = l;
                    a->val[row][c] = l < 0 ? NULL : copy_bytes(v, l);
                }
                break;
            }
            case PGW_MSG_COMMAND_COMPLETE: {
                pgw_command_complete_t cc;
                if (pgw_decode_command_complete(&f, &cc) < 0)
                    return "bad CommandComplete";
                a->tag = copy_bytes(cc.tag.ptr, (int)cc.tag.len);
                break;
            }
            case PGW_MSG_NOTICE_RESPONSE:
            case PGW_MSG_ERROR_RESPONSE: {
                pgw_error_fields_t e;
                if (pgw_decode_error(&f, &e) < 0)
                    return "bad Error/Notice";
                if (a->error)
                    return "message after ErrorResponse";
                if (f.type == PGW_MSG_NOTICE_RESPONSE) {
                    if (a->nrows || a->tag)
                        return "NOTICE after rows";
                    if (a->nnotes >= 8)
                        return "too many notices";
                    note_t *nt = &a->notes[a->nnotes++];
                    snprintf(nt->sev, sizeof nt->sev, "%.*s", (int)e.severity_nl.len,
                             e.severity_nl.ptr ? e.severity_nl.ptr : "");
                    snprintf(nt->state, sizeof nt->state, "%.*s", (int)e.sqlstate.len,
                             e.sqlstate.ptr ? e.sqlstate.ptr : "");
                    nt->msg = copy_bytes(e.message.ptr ? e.message.ptr : "", (int)e.message.len);
                    char *owned[128] = {0};
                    size_t foff = 0;
                    uint8_t code;
                    pgw_str_t v;
                    while (pgw_error_next_field(&e, &foff, &code, &v) == 1)
                        if (code < 128 && !owned[code])
                            owned[code] = copy_bytes(v.ptr, (int)v.len);
                    nt->all = fields_str((const char *const *)owned);
                    for (int k = 0; k < 128; k++)
                        free(owned[k]);
                } else {
                    a->error = true;
                    snprintf(a->esev, sizeof a->esev, "%.*s", (int)e.severity_nl.len,
                             e.severity_nl.ptr ? e.severity_nl.ptr : "");
                    snprintf(a->estate, sizeof a->estate, "%.*s", (int)e.sqlstate.len,
                             e.sqlstate.ptr ? e.sqlstate.ptr : "");
                    a->emsg = copy_bytes(e.message.ptr ? e.message.ptr : "", (int)e.message.len);
                    a->edetail = e.detail.ptr ? copy_bytes(e.detail.ptr, (int)e.detail.len) : NULL;
                }
                break;
            }
            default:
                return "unexpected message type";
            }
        }
    }
    if (!a->error && !a->tag)
        return "no CommandComplete";
    if (!a->error && a->nfields == 0)
        return "no RowDescription";
    return NULL;
}

/* Row order for comparison: identity, or by numeric id (column 0) where the legacy order is
   undefined. */
static const answer_t *sort_ans;
static int cmp_row_id(const void *x, const void *y)
{
    int i = *(const int *)x, j = *(const int *)y;
    const char *a = sort_ans->val[i][0], *b = sort_ans->val[j][0];
    long long va = a ? atoll(a) : 0, vb = b ? atoll(b) : 0;
    return (va > vb) - (va < vb);
}

static int *row_order(const answer_t *a, bool by_id)
{
    int *o = malloc(((size_t)a->nrows + 1) * sizeof *o);
    for (int i = 0; i < a->nrows; i++)
        o[i] = i;
    if (by_id && a->nrows > 1) {
        sort_ans = a;
        qsort(o, (size_t)a->nrows, sizeof *o, cmp_row_id);
    }
    return o;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Returns NULL when identical, else a description of the first difference (static buffer). */
static const char *compare(const answer_t *L, const answer_t *N, bool by_id)
{
    static char why[512];
    if (L->nnotes != N->nnotes) {
        snprintf(why, sizeof why, "notices: legacy %d native %d%s%s", L->nnotes, N->nnotes,
                 L->nnotes ? " first legacy: " : "", L->nnotes ? L->notes[0].msg : "");
        return why;
    }
    for (int i = 0; i < L->nnotes; i++)
        if (strcmp(L->notes[i].sev, N->notes[i].sev) || strcmp(L->notes[i].state, N->notes[i].state) ||
            strcmp(L->notes[i].msg, N->notes[i].msg)) {
            snprintf(why, sizeof why, "notice %d: legacy %s %s '%s' native %s %s '%s'", i,
                     L->notes[i].sev, L->notes[i].state, L->notes[i].msg, N->notes[i].sev,
                     N->notes[i].state, N->notes[i].msg);
            return why;
        }
    /* Answers pgshim sends (not errors: those pass through) carry the notices whole. */
    for (int i = 0; i < L->nnotes && !N->error; i++)
        if (!str_eq(L->notes[i].all, N->notes[i].all)) {
            snprintf(why, sizeof why, "notice %d fields: legacy [%s] native [%s]", i,
                     L->notes[i].all ? L->notes[i].all : "", N->notes[i].all ? N->notes[i].all : "");
            return why;
        }
    if (L->error != N->error) {
        snprintf(why, sizeof why, "error: legacy %s (%s) native %s (%s)", L->error ? L->estate : "none",
                 L->error ? L->emsg : "", N->error ? N->estate : "none", N->error ? N->emsg : "");
        return why;
    }
    if (L->error) {
        if (strcmp(L->estate, N->estate) || strcmp(L->esev, N->esev) || !str_eq(L->emsg, N->emsg) ||
            !str_eq(L->edetail, N->edetail)) {
            snprintf(why, sizeof why, "error fields: legacy %s %s '%s' [%s] native %s %s '%s' [%s]",
                     L->esev, L->estate, L->emsg, L->edetail ? L->edetail : "-", N->esev, N->estate,
                     N->emsg, N->edetail ? N->edetail : "-");
            return why;
        }
        return NULL;
    }
    if (L->nfields != N->nfields) {
        snprintf(why, sizeof why, "field count legacy %d native %d", L->nfields, N->nfields);
        return why;
    }
    for (int i = 0; i < L->nfields; i++) {
        if (strcmp(L->fname[i], N->fname[i]) || L->ftype[i] != N->ftype[i] ||
            L->fmod[i] != N->fmod[i] || L->flen[i] != N->flen[i] || L->ftable[i] != N->ftable[i] ||
            L->fattnum[i] != N->fattnum[i] || L->fformat[i] != N->fformat[i]) {
            snprintf(why, sizeof why,
                     "field %d: legacy %s oid %u mod %d len %d tbl %u att %d; native %s oid %u mod %d "
                     "len %d tbl %u att %d",
                     i, L->fname[i], L->ftype[i], L->fmod[i], L->flen[i], L->ftable[i], L->fattnum[i],
                     N->fname[i], N->ftype[i], N->fmod[i], N->flen[i], N->ftable[i], N->fattnum[i]);
            return why;
        }
    }
    if (L->nrows != N->nrows) {
        snprintf(why, sizeof why, "rows legacy %d native %d", L->nrows, N->nrows);
        return why;
    }
    if (!str_eq(L->tag, N->tag)) {
        snprintf(why, sizeof why, "tag legacy %s native %s", L->tag, N->tag);
        return why;
    }
    int *lo = row_order(L, by_id), *no = row_order(N, by_id);
    const char *res = NULL;
    for (int r = 0; r < L->nrows && !res; r++)
        for (int c = 0; c < L->nfields; c++) {
            int lr = lo[r], nr = no[r];
            if (L->len[lr][c] != N->len[nr][c] ||
                (L->len[lr][c] > 0 && memcmp(L->val[lr][c], N->val[nr][c], (size_t)L->len[lr][c]))) {
                snprintf(why, sizeof why, "row %d col %s: legacy [%.150s] native [%.150s]", r,
                         L->fname[c], L->val[lr][c] ? L->val[lr][c] : "NULL",
                         N->val[nr][c] ? N->val[nr][c] : "NULL");
                res = why;
                break;
            }
        }
    free(lo);
    free(no);
    return res;
}

/* ---------------------------------------------------------------------------------------------
 * Running one case
 * ------------------------------------------------------------------------------------------- */
static rw_dbinfo_t dbinfo;
static rw_butree_t *butree;   /* --memos: BU functions answer from an in-memory tree */
static rw_capsmemo_t *capsmemo;  /* --memos: the capability query answers from memory */
static rw_groups_t *groups;   /* --memos: job functions take G from memory */

typedef struct fnstat {
    int calls, same, diff, fallbacks;
    int rich;        /* identical answers with data: >= 1 row and not just '', {} or NULL */
    int recognized;  /* rw_recognize_query accepted the SQL and gave the hand-built call */
    int errors;      /* identical answers that are errors (legacy errors too) */
    int reasons[RW_REASON__COUNT];
    char *diffs[5];
    double *tl, *tn;
    int nt, ntn;
} fnstat_t;
static fnstat_t stats[RW_FN__COUNT];

static char *prepared[64];
static int nprepared;

/* Runs the native side on conn. Returns the final status; *ex_out keeps the exec. */
static rw_exec_status_t run_native(const rw_call_t *call, rw_exec_t **ex_out)
{
    rw_exec_t *ex = rw_exec_new(call);
    if (!ex)
        die("rw_exec_new failed");
    rw_exec_set_dbinfo(ex, &dbinfo);
    if (butree && rw_fn_family(call->fn) == RW_FAM_BU)
        rw_exec_set_butree(ex, butree);
    if (capsmemo && call->fn == RW_FN_WEB_CAPS_FOR_CLIENT)
        rw_exec_set_capsmemo(ex, capsmemo);
    if (groups && (call->fn == RW_FN_GETJOBNEED || call->fn == RW_FN_GETEXTTOURJOBNEED))
        rw_exec_set_groups(ex, groups);
    rw_exec_status_t st = rw_exec_start(ex);
    int guard = 0;
    while (st == RW_EXEC_QUERY && guard++ < 10) {
        probing = strcmp(rw_exec_sql(ex), rw_bulist_probe_sql) == 0 ? ex : NULL;
        /* Prepared once per connection by name, as the proxy's driver does. */
        const char *name = rw_exec_stmt_name(ex);
        if (!name) {
            PGresult *r = PQexecParams(conn, rw_exec_sql(ex), rw_exec_nparams(ex), NULL,
                                       rw_exec_params(ex), NULL, NULL, 0);
            st = rw_exec_feed(ex, r);
            PQclear(r);
            continue;
        }
        bool known = false;
        for (int i = 0; i < nprepared && !known; i++)
            known = strcmp(prepared[i], name) == 0;
        if (!known) {
            PGresult *p = PQprepare(conn, name, rw_exec_sql(ex), rw_exec_nparams(ex), NULL);
            if (PQresultStatus(p) != PGRES_COMMAND_OK)
                die("prepare %s: %s", rw_exec_sql(ex), PQerrorMessage(conn));
            PQclear(p);
            if (nprepared < 64)
                prepared[nprepared++] = xstrdup(name);
        }
        PGresult *r = PQexecPrepared(conn, name, rw_exec_nparams(ex), rw_exec_params(ex), NULL,
                                     NULL, 0);
        st = rw_exec_feed(ex, r);
        PQclear(r);
    }
    probing = NULL;
    /* Keep what the exec learnt (the NOTICE fields), as the proxy's driver does per database. */
    rw_dbinfo_t learnt;
    if (st == RW_EXEC_DONE && rw_exec_get_dbinfo(ex, &learnt) && learnt.bulist_notice_learnt &&
        !dbinfo.bulist_notice_learnt)
        dbinfo = learnt;
    *ex_out = ex;
    return st;
}

static bool order_undefined(rw_fn_t fn)
{
    return fn == RW_FN_GETJOBNEED || fn == RW_FN_GETEXTTOURJOBNEED || fn == RW_FN_GETASSETDETAILS;
}

static void run_case(tcase_t *t)
{
    fnstat_t *s = &stats[t->call.fn];
    s->calls++;
    answer_t L = {0}, N = {0};
    exec_ok("BEGIN");
    exec_ok("SAVEPOINT legacy");
    cur_notes = &L;
    PGresult *r = PQexec(conn, t->sql);
    cur_notes = NULL;
    ans_from_pg(&L, r);
    PQclear(r);
    if (L.error)
        exec_ok("ROLLBACK TO SAVEPOINT legacy");
    /* End to end through the recognizer: the call it extracts from the legacy SQL text must be
       the hand-built one (the shared rw_call_t contract), and is what the native side runs. */
    const char *why = NULL;
    rw_call_t rc;
    memset(&rc, 0, sizeof rc);
    rw_reason_t rwhy = RW_REASON_NONE;
    int recog = rw_recognize_query(t->sql, &rc, &rwhy);
    const rw_call_t *use = &t->call;
    static char cwhy[256];
    if (recog == 1) {
        const rw_call_t *h = &t->call;
        if (rc.fn != h->fn || rc.shape != h->shape || strcmp(rc.colname, h->colname) ||
            rc.nargs != h->nargs || (rc.result_oid != h->result_oid && h->result_oid)) {
            snprintf(cwhy, sizeof cwhy, "recognized call differs: fn %d/%d shape %d/%d col %s/%s "
                     "nargs %d/%d oid %u/%u", rc.fn, h->fn, rc.shape, h->shape, rc.colname,
                     h->colname, rc.nargs, h->nargs, rc.result_oid, h->result_oid);
            why = cwhy;
        }
        for (int i = 0; !why && i < rc.nargs; i++)
            if (rc.args[i].is_null != h->args[i].is_null ||
                (!rc.args[i].is_null && strcmp(rc.args[i].text, h->args[i].text))) {
                snprintf(cwhy, sizeof cwhy, "recognized arg %d differs: [%s] vs [%s]", i,
                         rc.args[i].is_null ? "NULL" : rc.args[i].text,
                         h->args[i].is_null ? "NULL" : h->args[i].text);
                why = cwhy;
            }
        if (!why) {
            s->recognized++;
            use = &rc;
        }
    }
    answer_t junk = {0};
    cur_notes = &junk;   /* notices raised by native queries would be a bug: record them */
    rw_exec_t *ex;
    rw_exec_status_t st = run_native(use, &ex);
    if (recog == 1)
        rw_call_clear(&rc);
    cur_notes = NULL;
    exec_ok("COMMIT");
    if (junk.nnotes)
        why = "native queries raised a NOTICE";
    if (st == RW_EXEC_FALLBACK) {
        s->fallbacks++;
        s->reasons[rw_exec_reason(ex)]++;
    } else if (st != RW_EXEC_DONE) {
        if (!why)
            why = "native did not finish";
    } else {
        const char *perr = ans_from_native(&N, rw_exec_describe(ex), rw_exec_body(ex));
        if (!why)
            why = perr;
        if (!why && N.error != rw_exec_failed(ex))
            why = "rw_exec_failed disagrees with the body";
        if (!why)
            why = compare(&L, &N, order_undefined(t->call.fn));
    }
    if (why) {
        s->diff++;
        for (int i = 0; i < 5; i++)
            if (!s->diffs[i]) {
                s->diffs[i] = xasprintf("%s\n        -> %s", t->sql, why);
                break;
            }
    } else if (st == RW_EXEC_DONE) {
        {
            s->same++;
            if (L.error)
                s->errors++;
            else if (L.nrows > 1 ||
                     (L.nrows == 1 && (L.nfields > 1 ||
                                       (L.len[0][0] > 0 && strcmp(L.val[0][0], "{}") != 0)))) {
                s->rich++;
                t->rich = true;
            }
        }
    }
    rw_exec_free(ex);
    ans_free(&L);
    ans_free(&N);
    ans_free(&junk);
}

/* Timing outside a transaction, as a client would call. */
static void time_case(tcase_t *t)
{
    fnstat_t *s = &stats[t->call.fn];
    s->tl = realloc(s->tl, (size_t)(s->nt + 1) * sizeof *s->tl);
    s->tn = realloc(s->tn, (size_t)(s->nt + 1) * sizeof *s->tn);
    double t0 = now_ms();
    PGresult *r = PQexec(conn, t->sql);
    double t1 = now_ms();
    PQclear(r);
    rw_exec_t *ex;
    double t2 = now_ms();
    rw_exec_status_t st = run_native(&t->call, &ex);
    double t3 = now_ms();
    rw_exec_free(ex);
    if (st != RW_EXEC_DONE)
        return;
    s->tl[s->nt] = t1 - t0;
    s->tn[s->nt] = t3 - t2;
    s->nt++;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------------------------------------------------------------------------------------
 * Case generation
 * ------------------------------------------------------------------------------------------- */
typedef struct caselist {
    tcase_t *v;
    size_t n, cap;
} caselist_t;
static caselist_t cases;

static tcase_t *new_case(void)
{
    if (cases.n == cases.cap) {
        cases.cap = cases.cap ? cases.cap * 2 : 1024;
        cases.v = realloc(cases.v, cases.cap * sizeof *cases.v);
        if (!cases.v)
            die("out of memory");
    }
    return &cases.v[cases.n++];
}

static const char *pick(const strlist_t *l)
{
    return l->n ? l->v[rnd_n(l->n)] : NULL;
}

static strlist_t bu_ids, legacy_ids, people_ids, client_ids, site_ids;

static const char *bu_id_edge(void)
{
    static const char *edge[] = {"1", "-1", "999999", NULL, "0"};
    size_t k = rnd_n(10);
    if (k < 2)
        return edge[rnd_n(5)];
    if (k < 4 && legacy_ids.n)
        return pick(&legacy_ids);
    return pick(&bu_ids);
}

static void gen_men(rw_fn_t fn, int n)
{
    static const char *modes[] = {"text", "array", "jsonb", "bogus", "TEXT", NULL, "Array", ""};
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        rw_shape_t shape = rnd_n(3) == 0 ? RW_SHAPE_FROM : RW_SHAPE_TARGET;
        const char *alias = shape == RW_SHAPE_TARGET && rnd_n(2) ? "buids" : NULL;
        tc_begin(t, fn, shape, alias);
        const char *id = bu_id_edge();
        if (id && rnd_n(8) == 0 && id[0] != '-')
            tc_int_quoted(t, id);
        else
            tc_int(t, id);
        const char *mode = i < 8 ? modes[i] : (rnd_n(5) ? modes[rnd_n(3)] : modes[3 + rnd_n(5)]);
        tc_text(t, mode, "::text");
        t->call.result_oid = RW_OID_TEXT;
        tc_end(t, alias);
    }
}

static void gen_get_bulist(int n)
{
    static const char *phrases[] = {"text", "array", "jsonb", "ARRAY", "Text", "JsonB", "bogus", NULL};
    static const char *rtypes[] = {"::bigint[]", "::text", "::jsonb"};
    static const uint32_t roids[] = {RW_OID_INT8_ARRAY, RW_OID_TEXT, RW_OID_JSONB};
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        rw_shape_t shape = rnd_n(4) == 0 ? RW_SHAPE_FROM : RW_SHAPE_TARGET;
        const char *alias = shape == RW_SHAPE_TARGET ? (rnd_n(2) ? "id" : "buids") : NULL;
        tc_begin(t, RW_FN_GET_BULIST, shape, alias);
        tc_int(t, bu_id_edge());
        tc_bool(t, (int)rnd_n(3));
        tc_bool(t, (int)rnd_n(3));
        const char *ph = phrases[i < 8 ? (size_t)i : rnd_n(8)];
        tc_text(t, ph, "::text");
        /* Mostly the matching result type, sometimes a mismatch. */
        int rt;
        if (ph && rnd_n(6)) {
            char low[16];
            snprintf(low, sizeof low, "%s", ph);
            for (char *p = low; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            rt = strcmp(low, "array") == 0 ? 0 : strcmp(low, "text") == 0 ? 1 : 2;
        } else {
            rt = (int)rnd_n(3);
        }
        char lit[32];
        snprintf(lit, sizeof lit, "null%s", rtypes[rt]);
        tc_arg(t, rt == 0 ? RW_T_INT8_ARRAY : rt == 1 ? RW_T_TEXT : RW_T_JSONB, NULL, lit);
        t->call.result_oid = roids[rt];
        tc_end(t, alias);
    }
}

static void gen_idnf(int n)
{
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        tc_begin(t, RW_FN_GETBULIST_BASEDON_IDNF, RW_SHAPE_TARGET, NULL);
        const char *id = rnd_n(2) && legacy_ids.n ? pick(&legacy_ids) : bu_id_edge();
        tc_int(t, id);
        tc_bool(t, i < 9 ? i % 3 : (rnd_n(8) ? (int)rnd_n(2) : 2));
        tc_bool(t, i < 9 ? i / 3 : (rnd_n(8) ? (int)rnd_n(2) : 2));
        t->call.result_oid = RW_OID_TEXT;
        tc_end(t, NULL);
    }
}

static void gen_vsq(int n)
{
    PGresult *r = query("select q.bu_id::text, a from questionset q, unnest(q.assetincludes) a"
                        " where q.parent_id = 1 order by q.id, a limit 2000");
    static const char *types[] = {"", "name", "NAME", "Name", NULL, "x", "names"};
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        tc_begin(t, RW_FN_GETASSETVSQUESTIONSET, RW_SHAPE_TARGET, NULL);
        int k = PQntuples(r) ? (int)rnd_n((size_t)PQntuples(r)) : -1;
        size_t e = rnd_n(12);
        const char *site = k >= 0 ? PQgetvalue(r, k, 0) : "1";
        const char *asset = k >= 0 ? PQgetvalue(r, k, 1) : "1";
        if (e == 0)
            site = NULL;
        else if (e == 1)
            asset = NULL;
        else if (e == 2)
            asset = "05";
        else if (e == 3)
            site = pick(&site_ids);
        tc_int(t, site);
        tc_text(t, asset, NULL);
        tc_text(t, types[i < 7 ? (size_t)i : rnd_n(7)], NULL);
        t->call.result_oid = RW_OID_TEXT;
        tc_end(t, NULL);
    }
    PQclear(r);
}

static void gen_details(int n)
{
    /* mdtz values around the assets' own, in both driver spellings, plus past/future/NULL. */
    PGresult *r = query(
        "select a.bu_id::text, to_char(a.mdtz at time zone 'UTC' + o * interval '1 minute',"
        " 'YYYY-MM-DD HH24:MI:SS') || '+00:00', to_char(a.mdtz at time zone 'UTC' + interval '330 minutes',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+05:30'"
        " from asset a, (values (-1), (0), (1), (-600)) v(o) where a.bu_id is not null"
        " order by a.id, o limit 4000");
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        tc_begin(t, RW_FN_GETASSETDETAILS, RW_SHAPE_FROM, NULL);
        int k = PQntuples(r) ? (int)rnd_n((size_t)PQntuples(r)) : -1;
        size_t e = rnd_n(14);
        const char *ts = k >= 0 ? PQgetvalue(r, k, 1 + (int)rnd_n(2)) : "2024-01-01 00:00:00+00";
        const char *site = k >= 0 ? PQgetvalue(r, k, 0) : "1";
        if (e == 0)
            ts = NULL;
        else if (e == 1)
            site = NULL;
        else if (e == 2)
            ts = "1970-01-01 00:00:00+00";
        else if (e == 3)
            ts = "2099-01-01 00:00:00+00";
        else if (e == 4)
            site = "999999";
        tc_ts(t, ts);
        if (site && rnd_n(6) == 0)
            tc_int_quoted(t, site);
        else
            tc_int(t, site);
        tc_end(t, NULL);
    }
    PQclear(r);
}

static void gen_jobs(rw_fn_t fn, int n)
{
    PGresult *r = query(
        "(select jn.people_id::text p, jn.bu_id::text b, jn.client_id::text c from jobneed jn"
        "  where jn.plandatetime > now() - interval '3 days' order by jn.id limit 600)"
        " union all (select jn.cuser_id::text, jn.bu_id::text, jn.client_id::text from jobneed jn"
        "  order by jn.id desc limit 200)"
        " union all (select pb.people_id::text, jn.bu_id::text, jn.client_id::text from jobneed jn"
        "  join pgbelonging pb on pb.pgroup_id = jn.pgroup_id where jn.pgroup_id <> 1"
        "  order by jn.id limit 400)"
        " union all (select jn.muser_id::text, jn.bu_id::text, jn.client_id::text from jobneed jn"
        "  where jn.identifier = 'EXTERNALTOUR' order by jn.id limit 200)");
    strlist_t nogroup = col0("select p.id::text from people p where not exists"
                             " (select 1 from pgbelonging pb where pb.people_id = p.id) order by p.id limit 50");
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        tc_begin(t, fn, RW_SHAPE_FROM, NULL);
        int k = PQntuples(r) ? (int)rnd_n((size_t)PQntuples(r)) : -1;
        const char *p = k >= 0 ? PQgetvalue(r, k, 0) : "1";
        const char *b = k >= 0 ? PQgetvalue(r, k, 1) : "1";
        const char *c = k >= 0 ? PQgetvalue(r, k, 2) : "1";
        if (k >= 0 && PQgetisnull(r, k, 0))
            p = NULL;
        size_t e = rnd_n(16);
        if (e == 0)
            p = NULL;
        else if (e == 1)
            b = NULL;
        else if (e == 2)
            c = NULL;
        else if (e == 3)
            p = nogroup.n ? pick(&nogroup) : "999999";
        else if (e == 4)
            p = "1";
        else if (e == 5)
            b = pick(&site_ids);
        else if (e == 6)
            p = pick(&people_ids);
        if (p && rnd_n(10) == 0)
            tc_int_quoted(t, p);
        else
            tc_int(t, p);
        tc_int(t, b);
        tc_int(t, c);
        tc_end(t, NULL);
    }
    PQclear(r);
    sl_free(&nogroup);
}

static void gen_adhoc(int n)
{
    PGresult *r = query(
        "select to_char((jn.plandatetime + o * interval '1 minute') at time zone 'UTC',"
        " 'YYYY-MM-DD HH24:MI:SS') || '+00:00', jn.bu_id::text, jn.people_id::text,"
        " jn.asset_id::text, jn.qset_id::text, pb.people_id::text"
        " from jobneed jn left join pgbelonging pb on pb.pgroup_id = jn.pgroup_id and jn.pgroup_id <> 1,"
        " (values (0), (-1), (1), (-10), (-30), (30), (60)) v(o)"
        " where jn.plandatetime is not null order by jn.id, o limit 5000");
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        tc_begin(t, RW_FN_GET_SCHEDULE_FOR_ADHOC, RW_SHAPE_FROM, NULL);
        int k = PQntuples(r) ? (int)rnd_n((size_t)PQntuples(r)) : -1;
        const char *v[6];
        for (int j = 0; j < 6; j++)
            v[j] = k >= 0 && !PQgetisnull(r, k, j) ? PQgetvalue(r, k, j) : NULL;
        const char *people = v[5] && rnd_n(2) ? v[5] : v[2];
        size_t e = rnd_n(12);
        if (e == 0)
            v[0] = NULL;
        else if (e == 1)
            people = NULL;
        else if (e == 2)
            v[3] = "999999";
        tc_ts(t, v[0]);
        tc_int(t, v[1]);
        tc_int(t, people);
        tc_int(t, v[3]);
        tc_int(t, v[4]);
        tc_end(t, NULL);
    }
    PQclear(r);
}

static char *caps_sql;

static void gen_caps(int n)
{
    for (int i = 0; i < n; i++) {
        tcase_t *t = new_case();
        memset(t, 0, sizeof *t);
        t->call.fn = RW_FN_WEB_CAPS_FOR_CLIENT;
        t->call.shape = RW_SHAPE_QUERY;
        snprintf(t->sql, sizeof t->sql, "%s", caps_sql);
    }
}

static const char default_caps_sql[] =
    "WITH RECURSIVE cap(id, capsname, capscode, parent_id, cfor, depth, path, xpath) AS ("
    " SELECT id, capsname, capscode, parent_id, cfor, 1 AS depth, capscode::text AS path,"
    " id::text AS xpath FROM capability WHERE id = 1 AND cfor = 'WEB'"
    " UNION ALL"
    " SELECT ch.id, ch.capsname, ch.capscode, ch.parent_id, ch.cfor, cap.depth + 1,"
    " cap.path || '->' || ch.capscode, cap.xpath || '>' || ch.id || cap.depth + 1"
    " FROM capability ch, cap WHERE ch.parent_id = cap.id)"
    " SELECT * FROM cap ORDER BY xpath";

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n)
        die("cannot read %s", path);
    s[n] = '\0';
    fclose(f);
    return s;
}

int main(int argc, char **argv)
{
    const char *conninfo = "";
    int per_fn = 500, timing = 60;
    const char *caps_file = NULL;
    bool use_butree = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--conn") && i + 1 < argc)
            conninfo = argv[++i];
        else if (!strcmp(argv[i], "--per-fn") && i + 1 < argc)
            per_fn = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timing") && i + 1 < argc)
            timing = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--caps-file") && i + 1 < argc)
            caps_file = argv[++i];
        else if (!strcmp(argv[i], "--butree") || !strcmp(argv[i], "--memos"))
            use_butree = true;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            rng_state = strtoull(argv[++i], NULL, 10) | 1;
        else
            die("usage: rw_diff [--conn CONNINFO] [--per-fn N] [--timing N] [--caps-file FILE] [--seed S]"
                " [--memos]");
    }
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        die("connect: %s", PQerrorMessage(conn));
    PQsetNoticeReceiver(conn, notice_rx, NULL);
    /* The native path's session settings; the legacy side runs under the same ones, as a
       client eligible for native answers does. */
    for (int i = 0; rw_native_settings[i][0]; i++) {
        char *sql = xasprintf("select pg_catalog.set_config('%s', '%s', false)", rw_native_settings[i][0],
                              rw_native_settings[i][1]);
        exec_ok(sql);
        free(sql);
    }
    exec_ok("set client_min_messages = notice");
    PGresult *r = PQexec(conn, rw_dbinfo_sql);
    if (rw_dbinfo_parse(r, &dbinfo) < 0)
        die("dbinfo: %s", PQerrorMessage(conn));
    PQclear(r);
    printf("database: geography oid %u, collate_c %d, ctype_c %d\n", dbinfo.geography_oid,
           dbinfo.collate_c, dbinfo.ctype_c);
    caps_sql = caps_file ? read_file(caps_file) : xstrdup(default_caps_sql);
    if (rw_set_caps_query(caps_sql) < 0)
        die("rw_set_caps_query rejected the capability query text");
    if (use_butree) {
        /* Built once, as a driver caches it per database (the data does not change here). */
        r = PQexec(conn, rw_butree_sql);
        butree = rw_butree_build(r);
        PQclear(r);
        if (!butree)
            die("cannot build the BU tree");
        printf("BU functions answer from an in-memory tree of %zu bytes\n", rw_butree_size(butree));
        r = PQexec(conn, rw_capsmemo_sql);
        capsmemo = rw_capsmemo_build(r);
        PQclear(r);
        r = PQexec(conn, rw_groups_sql);
        groups = rw_groups_build(r);
        PQclear(r);
        if (!capsmemo || !groups)
            die("cannot build the capability answer or the group memberships");
        printf("capability query and job groups answer from memory (%zu + %zu bytes)\n",
               rw_capsmemo_size(capsmemo), rw_groups_size(groups));
    }

    bu_ids = col0("select id::text from bt order by id");
    legacy_ids = col0("select id::text from bt where parent_id = -1 or id = -1 order by id");
    people_ids = col0("select id::text from people order by id");
    client_ids = col0("select distinct client_id::text from jobneed where client_id is not null");
    site_ids = col0("select distinct bu_id::text from asset where bu_id is not null order by 1");

    gen_men(RW_FN_MENUPBT, per_fn);
    gen_men(RW_FN_MENDOWNBT, per_fn);
    gen_men(RW_FN_MENALLBT, per_fn);
    gen_get_bulist(per_fn);
    gen_idnf(per_fn);
    gen_vsq(per_fn);
    gen_details(per_fn);
    gen_jobs(RW_FN_GETJOBNEED, per_fn);
    gen_jobs(RW_FN_GETEXTTOURJOBNEED, per_fn);
    gen_adhoc(per_fn);
    gen_caps(20);

    for (size_t i = 0; i < cases.n; i++)
        run_case(&cases.v[i]);
    /* Timing: the first `timing` cases of each function whose answer has data (a row with a
       non-empty value), legacy and native back to back. */
    int done[RW_FN__COUNT] = {0};
    for (size_t i = 0; i < cases.n; i++) {
        tcase_t *t = &cases.v[i];
        if (t->rich && done[t->call.fn]++ < timing)
            time_case(t);
    }

    int total_diff = 0;
    printf("\n%-28s %6s %6s %9s %6s %6s %9s %9s  %10s %10s %7s\n", "function", "calls", "recog",
           "identical", "w/data", "errors", "different", "fallbacks", "legacy ms", "native ms",
           "ratio");
    for (int f = 0; f < RW_FN__COUNT; f++) {
        fnstat_t *s = &stats[f];
        double ml = median(s->tl, s->nt), mn = median(s->tn, s->nt);
        printf("%-28s %6d %6d %9d %6d %6d %9d %9d  %10.3f %10.3f %6.1fx\n", rw_fn_name((rw_fn_t)f),
               s->calls, s->recognized, s->same, s->rich, s->errors, s->diff, s->fallbacks, ml, mn,
               mn > 0 ? ml / mn : 0.0);
        for (int k = 0; k < RW_REASON__COUNT; k++)
            if (s->reasons[k])
                printf("      fallback %-40s %d\n", rw_reason_name((rw_reason_t)k), s->reasons[k]);
        for (int k = 0; k < 5 && s->diffs[k]; k++)
            printf("      DIFF %s\n", s->diffs[k]);
        total_diff += s->diff;
    }
    printf("\ntotal differences: %d\n", total_diff);
    for (size_t i = 0; i < cases.n; i++)
        tc_free(&cases.v[i]);
    free(cases.v);
    for (int f = 0; f < RW_FN__COUNT; f++) {
        for (int k = 0; k < 5; k++)
            free(stats[f].diffs[k]);
        free(stats[f].tl);
        free(stats[f].tn);
    }
    for (int i = 0; i < nprepared; i++)
        free(prepared[i]);
    sl_free(&bu_ids);
    sl_free(&legacy_ids);
    sl_free(&people_ids);
    sl_free(&client_ids);
    sl_free(&site_ids);
    free(caps_sql);
    rw_butree_free(butree);
    rw_capsmemo_free(capsmemo);
    rw_groups_free(groups);
    PQfinish(conn);
    return total_diff ? 1 : 0;
}
