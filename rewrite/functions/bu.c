/*
 * bu.c: native business-unit functions (spec 3.1-3.5): fn_menupbt, fn_mendownbt, fn_menallbt,
 * the dispatcher fn_get_bulist and fn_getbulist_basedon_idnf.
 *
 * Data access: one round trip per call. A recursive query returns the up-walk and/or the
 * down-walk from the start row with each node's depth (both walks in one statement for
 * fn_menallbt); ordering, de-duplication and the text/array/jsonb renderings are done in C
 * (compose.c). Walk depth is capped in SQL: a walk that reaches the cap is a parent cycle on which
 * the legacy function would never terminate, so such a call falls back instead of answering.
 *
 * Output contract: one text column (fn_get_bulist: text, bigint[] or jsonb by its 5th argument),
 * exactly one row for the scalar functions; fn_get_bulist raises its "Phrase :: ..." NOTICE
 * before its row, as PL/pgSQL does during execution (after the RowDescription).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functions.h"

/* Depth cap of the SQL walks (kept equal to butree.c's): a walk reaching it is a parent cycle. */
#define BU_MAX_DEPTH 1000
#define BU_STR2(x) #x
#define BU_STR(x) BU_STR2(x)

/* $1 start id, $2 walk up, $3 walk down. Columns: dir, depth, id, parent_id, bucode, buname. */
static const char sql_walk[] =
    "with recursive up(id, parent_id, bucode, buname, d) as ("
    " select b.id, b.parent_id, b.bucode, b.buname, 0 from bt b"
    "  where b.id = $1::bigint and $2::boolean"
    " union all"
    " select b.id, b.parent_id, b.bucode, b.buname, up.d + 1 from up join bt b on b.id = up.parent_id"
    "  where b.id <> 1 and b.id <> -1 and up.d < " BU_STR(BU_MAX_DEPTH) "),"
    " dn(id, parent_id, bucode, buname, d) as ("
    " select b.id, b.parent_id, b.bucode, b.buname, 0 from bt b"
    "  where b.id = $1::bigint and $3::boolean"
    " union all"
    " select b.id, b.parent_id, b.bucode, b.buname, dn.d + 1 from dn join bt b on b.parent_id = dn.id"
    "  where dn.d < " BU_STR(BU_MAX_DEPTH) ")"
    " select 'u', d, id, parent_id, bucode, buname from up"
    " union all"
    " select 'd', d, id, parent_id, bucode, buname from dn";

/* $1 start id (anchor must have parent_id = -1). Columns: depth, id, tacode. */
static const char sql_idnf[] =
    "with recursive t(id, identifier_id, d) as ("
    " select b.id, b.identifier_id, 0 from bt b where b.id = $1::bigint and b.parent_id = -1"
    " union all"
    " select b.id, b.identifier_id, t.d + 1 from t join bt b on b.parent_id = t.id"
    "  where t.d < " BU_STR(BU_MAX_DEPTH) ")"
    " select t.d, t.id, ta.tacode from t left join typeassist ta on ta.id = t.identifier_id";

typedef enum bu_src { SRC_WALK, SRC_SELF, SRC_IDNF } bu_src_t;

/* Requests the rows of one of the queries above, or, when the exec has an in-memory tree,
   produces the same rows from it and continues at once with them. */
static rw_exec_status_t bu_query(rw_exec_t *ex, bu_src_t src, const char *sql, int nparams,
                                 const char *const *params)
{
    if (!ex->butree)
        return rw__exec_query(ex, sql, nparams, params);
    int64_t id;
    if (!rw__parse_i64(params[0], &id))
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    PGresult *res;
    if (src == SRC_WALK)
        res = rw__butree_walk(ex->butree, id, strcmp(params[1], "true") == 0,
                              strcmp(params[2], "true") == 0);
    else if (src == SRC_SELF)
        res = rw__butree_self(ex->butree, id);
    else
        res = rw__butree_idnf(ex->butree, id);
    if (!res)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    ex->status = RW_EXEC_QUERY;   /* as if the query had been run and fed */
    ex->step++;
    rw_exec_status_t st = ex->step_fn(ex, res);
    PQclear(res);
    return st;
}

typedef enum bu_mode { MODE_TEXT, MODE_ARRAY, MODE_JSONB, MODE_OTHER } bu_mode_t;
typedef enum bu_walk { WALK_UP, WALK_DOWN, WALK_ALL, WALK_SELF } bu_walk_t;

static bu_mode_t parse_mode(const char *s)
{
    if (!s)
        return MODE_OTHER;
    if (strcmp(s, "text") == 0)
        return MODE_TEXT;
    if (strcmp(s, "array") == 0)
        return MODE_ARRAY;
    if (strcmp(s, "jsonb") == 0)
        return MODE_JSONB;
    return MODE_OTHER;
}

/* The NOTICE fn_men*bt raise for an unknown mode, indexed by bu_walk_t. The spec does not record
   the production wording; this is the wording of the fixture's functions (tests/fixture/
   functions.sql). A deployment whose functions word it differently must set it to NULL here,
   which makes unknown modes fall back (RW_REASON_UNSUPPORTED) instead of answering. */
static const char *const men_notice[3] = {
    "Valid calls: fn_menupbt(<buid>, 'text'::text) | fn_menupbt(<buid>, 'array'::text) | "
    "fn_menupbt(<buid>, 'jsonb'::text)",
    "Valid calls: fn_mendownbt(<buid>, 'text'::text) | fn_mendownbt(<buid>, 'array'::text) | "
    "fn_mendownbt(<buid>, 'jsonb'::text)",
    "Valid calls: fn_menallbt(<buid>, 'text'::text) | fn_menallbt(<buid>, 'array'::text) | "
    "fn_menallbt(<buid>, 'jsonb'::text)",
};

/* Parsed walk result. */
typedef struct bu_walk_res {
    rw_bu_node_t *up;
    size_t nup;
    rw_bu_node_t *dn;
    size_t ndn;
    bool capped;
} bu_walk_res_t;

static void walk_res_free(bu_walk_res_t *w)
{
    free(w->up);
    free(w->dn);
}

/* Returns 0, or -1 on an unexpected value / allocation failure. Views point into res. */
static int parse_walk(const PGresult *res, bu_walk_res_t *w)
{
    memset(w, 0, sizeof *w);
    int n = PQntuples(res);
    w->up = calloc((size_t)n + 1, sizeof *w->up);
    w->dn = calloc((size_t)n + 1, sizeof *w->dn);
    if (!w->up || !w->dn)
        return -1;
    for (int r = 0; r < n; r++) {
        rw_bu_node_t nd;
        memset(&nd, 0, sizeof nd);
        int64_t d;
        if (PQgetisnull(res, r, 0) || PQgetisnull(res, r, 1) || PQgetisnull(res, r, 2) ||
            !rw__parse_i64(PQgetvalue(res, r, 1), &d) || !rw__parse_i64(PQgetvalue(res, r, 2), &nd.id))
            return -1;
        nd.depth = (int)d;
        if (d >= BU_MAX_DEPTH)
            w->capped = true;
        nd.parent_null = PQgetisnull(res, r, 3);
        if (!nd.parent_null && !rw__parse_i64(PQgetvalue(res, r, 3), &nd.parent_id))
            return -1;
        if (!PQgetisnull(res, r, 4)) {
            nd.bucode = PQgetvalue(res, r, 4);
            nd.bucode_len = (size_t)PQgetlength(res, r, 4);
        }
        if (!PQgetisnull(res, r, 5)) {
            nd.buname = PQgetvalue(res, r, 5);
            nd.buname_len = (size_t)PQgetlength(res, r, 5);
        }
        if (PQgetvalue(res, r, 0)[0] == 'u')
            w->up[w->nup++] = nd;
        else
            w->dn[w->ndn++] = nd;
    }
    return 0;
}

/* Renders the value a fn_men*bt call returns. *is_null is set for the jsonb empty walk. */
static int render_walk(bu_walk_t walk, bu_mode_t mode, bu_walk_res_t *w, rw_sb_t *sb,
                       bool *is_null)
{
    rw_bu_node_t *nodes;
    size_t n;
    *is_null = false;
    if (walk == WALK_UP) {
        nodes = w->up;
        n = w->nup;
    } else if (walk == WALK_DOWN) {
        nodes = w->dn;
        n = w->ndn;
    } else {
        /* Union of both walks, duplicates removed (the start node is in both). */
        nodes = w->up;
        memcpy(nodes + w->nup, w->dn, w->ndn * sizeof *nodes);
        n = w->nup + w->ndn;
        n = rw__bu_sort_unique_id(nodes, n);
    }
    if (mode == MODE_JSONB) {
        if (n == 0) {
            *is_null = true;
            return 0;
        }
        rw__bu_jsonb(sb, nodes, n);
        return 0;
    }
    int64_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids)
        return -1;
    if (walk == WALK_DOWN && mode == MODE_ARRAY)
        rw__bu_sort_bfs(nodes, n);      /* level order, siblings by id (spec section 10) */
    else if (walk == WALK_UP && mode == MODE_ARRAY)
        rw__bu_sort_bfs(nodes, n);      /* start, parent, grandparent: one node per depth */
    for (size_t i = 0; i < n; i++)
        ids[i] = nodes[i].id;
    if (mode == MODE_TEXT || walk == WALK_ALL)
        rw__i64_sort(ids, n);
    rw__sb_id_list(sb, ids, n, mode == MODE_ARRAY);
    free(ids);
    return 0;
}

/* Appends one DataRow with one value (NULL when is_null). */
static void put_single_row(pgw_buf_t *out, const rw_sb_t *sb, bool is_null)
{
    pgw_data_row_begin(out, 1);
    if (is_null)
        pgw_data_row_put_null(out);
    else
        pgw_data_row_put(out, sb->p ? sb->p : "", (int32_t)sb->len);
    pgw_data_row_end(out);
}

static rw_exec_status_t describe_scalar(rw_exec_t *ex)
{
    if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    return RW_EXEC_DONE;
}

/* fn_get_bulist's RAISE NOTICE 'Phrase :: %' as PostgreSQL sends it: S, V, C, M, then the
   context and source-location fields learnt from this database (rw_exec_notice), in the order
   PostgreSQL writes them. */
static void put_bulist_notice(rw_exec_t *ex, const rw_sb_t *msg)
{
    const rw_dbinfo_t *d = &ex->db;
    pgw_buf_t *b = &ex->body;
    const struct {
        char code;
        const char *v;
    } f[] = {
        {'S', d->bulist_notice_sev},   {'V', "NOTICE"},
        {'C', "00000"},                {'M', msg->failed ? "" : msg->p},
        {'W', d->bulist_notice_where}, {'F', d->bulist_notice_file},
        {'L', d->bulist_notice_line},  {'R', d->bulist_notice_routine},
    };
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_NOTICE_RESPONSE));
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].code != 'M' && f[i].v[0] == '\0')
            continue;   /* a field the server did not send */
        pgw_put_u8(b, (uint8_t)f[i].code);
        pgw_put_cstr(b, f[i].v);
    }
    pgw_put_u8(b, 0);
    pgw_msg_end(b);
    if (msg->failed)
        b->failed = true;
}

/* Common body of fn_menupbt / fn_mendownbt / fn_menallbt. */
static rw_exec_status_t men_step(rw_exec_t *ex, const PGresult *res, bu_walk_t walk)
{
    const char *mode_text = rw__arg_text(ex, 1);
    bu_mode_t mode = parse_mode(mode_text);
    if (ex->call.nargs != 2)
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    if (res == NULL) {
        if (mode == MODE_OTHER) {
            const char *notice = men_notice[walk];
            if (!notice)
                return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
            if (describe_scalar(ex) != RW_EXEC_DONE)
                return ex->status;
            pgw_build_notice(&ex->body, "NOTICE", "00000", notice, NULL, NULL);
            pgw_build_error(&ex->body, "ERROR", "2F005",
                            "control reached end of function without RETURN", NULL, NULL);
            ex->failed = true;
            return rw__exec_done(ex);
        }
        int64_t id;
        if (rw__arg_null(ex, 0)) {
            /* id = NULL matches nothing: the empty walk. */
            bu_walk_res_t w;
            memset(&w, 0, sizeof w);
            rw_sb_t sb;
            rw__sb_init(&sb);
            bool is_null;
            rw_bu_node_t none[1];
            w.up = none;
            w.dn = none;
            if (render_walk(walk, mode, &w, &sb, &is_null) < 0 || sb.failed) {
                rw__sb_free(&sb);
                return rw__exec_fallback(ex, RW_REASON_NOMEM);
            }
            if (describe_scalar(ex) != RW_EXEC_DONE) {
                rw__sb_free(&sb);
                return ex->status;
            }
            put_single_row(&ex->body, &sb, is_null);
            rw__command_complete(&ex->body, 1);
            rw__sb_free(&sb);
            return rw__exec_done(ex);
        }
        if (!rw__arg_i64(ex, 0, &id))
            return rw__exec_fallback(ex, RW_REASON_ARGS);
        const char *params[3] = {rw__arg_text(ex, 0), walk != WALK_DOWN ? "true" : "false",
                                 walk != WALK_UP ? "true" : "false"};
        return bu_query(ex, SRC_WALK, sql_walk, 3, params);
    }
    if (!rw__res_ok(res, 6))
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    bu_walk_res_t w;
    if (parse_walk(res, &w) < 0) {
        walk_res_free(&w);
        return rw__exec_fallback(ex, RW_REASON_NATIVE_VALUE);
    }
    if (w.capped) {
        walk_res_free(&w);
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    }
    rw_sb_t sb;
    rw__sb_init(&sb);
    bool is_null;
    int rc = render_walk(walk, mode, &w, &sb, &is_null);
    walk_res_free(&w);
    if (rc < 0 || sb.failed) {
        rw__sb_free(&sb);
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    }
    if (describe_scalar(ex) != RW_EXEC_DONE) {
        rw__sb_free(&sb);
        return ex->status;
    }
    put_single_row(&ex->body, &sb, is_null);
    rw__command_complete(&ex->body, 1);
    rw__sb_free(&sb);
    return rw__exec_done(ex);
}

rw_exec_status_t rw_fun_menupbt(rw_exec_t *ex, const PGresult *res)
{
    return men_step(ex, res, WALK_UP);
}

rw_exec_status_t rw_fun_mendownbt(rw_exec_t *ex, const PGresult *res)
{
    return men_step(ex, res, WALK_DOWN);
}

rw_exec_status_t rw_fun_menallbt(rw_exec_t *ex, const PGresult *res)
{
    return men_step(ex, res, WALK_ALL);
}

/* ---------------------------------------------------------------------------------------------
 * fn_get_bulist(p_buid, p_up, p_dn, phrase, anyelement)
 * ------------------------------------------------------------------------------------------- */
static uint32_t mode_oid(bu_mode_t m)
{
    switch (m) {
    case MODE_TEXT: return RW_OID_TEXT;
    case MODE_ARRAY: return RW_OID_INT8_ARRAY;
    case MODE_JSONB: return RW_OID_JSONB;
    default: return 0;
    }
}

static const char *oid_type_name(uint32_t oid)
{
    switch (oid) {
    case RW_OID_TEXT: return "text";
    case RW_OID_INT8_ARRAY: return "bigint[]";
    case RW_OID_JSONB: return "jsonb";
    default: return NULL;
    }
}

/* Which walk (p_up, p_dn) select; any NULL flag or (false,false) is the single-node fallback. */
static bu_walk_t bulist_walk(const rw_exec_t *ex)
{
    bool up, dn;
    bool up_ok = rw__arg_bool(ex, 1, &up);
    bool dn_ok = rw__arg_bool(ex, 2, &dn);
    if (up_ok && dn_ok) {
        if (up && !dn)
            return WALK_UP;
        if (up && dn)
            return WALK_ALL;
        if (!up && dn)
            return WALK_DOWN;
    }
    return WALK_SELF;
}

/* $1 id: the single-node jsonb fallback reads the row itself. */
static const char sql_self[] =
    "select 'd', 0, b.id, b.parent_id, b.bucode, b.buname from bt b where b.id = $1::bigint";

rw_exec_status_t rw_fun_get_bulist(rw_exec_t *ex, const PGresult *res)
{
    if (ex->call.nargs != 5)
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    /* Flags must be NULL or valid booleans (the recognizer resolved them). */
    bool tmp;
    if ((!rw__arg_null(ex, 1) && !rw__arg_bool(ex, 1, &tmp)) ||
        (!rw__arg_null(ex, 2) && !rw__arg_bool(ex, 2, &tmp)))
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    uint32_t result_oid = ex->call.result_oid ? ex->call.result_oid : RW_OID_JSONB;
    if (!oid_type_name(result_oid))
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    const char *phrase_in = rw__arg_text(ex, 3);
    if (phrase_in && !ex->db.ctype_c && !rw__is_ascii(phrase_in))
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);   /* lower() beyond ASCII */
    /* RAISE NOTICE prints a NULL as <NULL>. */
    char *phrase = phrase_in ? rw__ascii_lower(phrase_in) : NULL;
    if (phrase_in && !phrase)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    bu_mode_t mode = parse_mode(phrase);
    bu_walk_t walk = bulist_walk(ex);
    rw_exec_status_t st;

    if (res == NULL) {
        if (mode != MODE_OTHER && !rw__arg_null(ex, 0)) {
            int64_t id;
            if (!rw__arg_i64(ex, 0, &id)) {
                free(phrase);
                return rw__exec_fallback(ex, RW_REASON_ARGS);
            }
            if (mode_oid(mode) == result_oid && !(walk == WALK_SELF && mode != MODE_JSONB)) {
                free(phrase);
                if (walk == WALK_SELF) {
                    const char *params[1] = {rw__arg_text(ex, 0)};
                    return bu_query(ex, SRC_SELF, sql_self, 1, params);
                }
                const char *params[3] = {rw__arg_text(ex, 0), walk != WALK_DOWN ? "true" : "false",
                                         walk != WALK_UP ? "true" : "false"};
                return bu_query(ex, SRC_WALK, sql_walk, 3, params);
            }
        }
        /* Answered without data: unknown phrase, NULL id, type mismatch, text/array self. */
        if (describe_scalar(ex) != RW_EXEC_DONE) {
            free(phrase);
            return ex->status;
        }
        rw_sb_t msg;
        rw__sb_init(&msg);
        rw__sb_puts(&msg, "Phrase :: ");
        rw__sb_puts(&msg, phrase ? phrase : "<NULL>");
        put_bulist_notice(ex, &msg);
        if (mode == MODE_OTHER) {
            rw__command_complete(&ex->body, 0);
        } else if (rw__arg_null(ex, 0)) {
            pgw_build_error(&ex->body, "ERROR", "22004", "query string argument of EXECUTE is null",
                            NULL, NULL);
            ex->failed = true;
        } else if (mode_oid(mode) != result_oid) {
            rw__sb_reset(&msg);
            rw__sb_puts(&msg, "Returned type ");
            rw__sb_puts(&msg, oid_type_name(mode_oid(mode)));
            rw__sb_puts(&msg, " does not match expected type ");
            rw__sb_puts(&msg, oid_type_name(result_oid));
            rw__sb_puts(&msg, " in column 1.");
            pgw_build_error(&ex->body, "ERROR", "42804",
                            "structure of query does not match function result type",
                            msg.failed ? NULL : msg.p, NULL);
            ex->failed = true;
        } else {
            /* Single-node fallback in text or array form: the id itself, unchecked. */
            rw_sb_t val;
            rw__sb_init(&val);
            int64_t id = 0;
            (void)rw__arg_i64(ex, 0, &id);
            rw__sb_id_list(&val, &id, 1, mode == MODE_ARRAY);
            put_single_row(&ex->body, &val, false);
            rw__command_complete(&ex->body, 1);
            if (val.failed)
                ex->body.failed = true;
            rw__sb_free(&val);
        }
        if (msg.failed)
            ex->body.failed = true;
        rw__sb_free(&msg);
        free(phrase);
        return rw__exec_done(ex);
    }

    if (!rw__res_ok(res, 6)) {
        free(phrase);
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    }
    bu_walk_res_t w;
    if (parse_walk(res, &w) < 0) {
        walk_res_free(&w);
        free(phrase);
        return rw__exec_fallback(ex, RW_REASON_NATIVE_VALUE);
    }
    if (w.capped) {
        walk_res_free(&w);
        free(phrase);
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    }
    rw_sb_t val;
    rw__sb_init(&val);
    bool is_null;
    int rc = render_walk(walk == WALK_SELF ? WALK_DOWN : walk, mode, &w, &val, &is_null);
    walk_res_free(&w);
    if (rc < 0 || val.failed) {
        rw__sb_free(&val);
        free(phrase);
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    }
    if (describe_scalar(ex) != RW_EXEC_DONE) {
        rw__sb_free(&val);
        free(phrase);
        return ex->status;
    }
    rw_sb_t msg;
    rw__sb_init(&msg);
    rw__sb_puts(&msg, "Phrase :: ");
    rw__sb_puts(&msg, phrase);
    put_bulist_notice(ex, &msg);
    put_single_row(&ex->body, &val, is_null);
    rw__command_complete(&ex->body, 1);
    if (msg.failed)
        ex->body.failed = true;
    rw__sb_free(&msg);
    rw__sb_free(&val);
    free(phrase);
    st = rw__exec_done(ex);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * fn_getbulist_basedon_idnf(p_buid, p_cus, p_si)
 * ------------------------------------------------------------------------------------------- */
typedef struct idnf_node {
    int64_t id;
    int depth;
} idnf_node_t;

static int cmp_idnf(const void *a, const void *b)
{
    const idnf_node_t *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

rw_exec_status_t rw_fun_getbulist_basedon_idnf(rw_exec_t *ex, const PGresult *res)
{
    if (ex->call.nargs != 3)
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    bool cus, si;
    bool flags_ok = rw__arg_bool(ex, 1, &cus) && rw__arg_bool(ex, 2, &si);
    if (res == NULL) {
        if (!flags_ok) {
            if ((!rw__arg_null(ex, 1) && !rw__arg_bool(ex, 1, &cus)) ||
                (!rw__arg_null(ex, 2) && !rw__arg_bool(ex, 2, &si)))
                return rw__exec_fallback(ex, RW_REASON_ARGS);
            /* A NULL flag: no branch runs and the function returns NULL. */
            if (describe_scalar(ex) != RW_EXEC_DONE)
                return ex->status;
            pgw_data_row_begin(&ex->body, 1);
            pgw_data_row_put_null(&ex->body);
            pgw_data_row_end(&ex->body);
            rw__command_complete(&ex->body, 1);
            return rw__exec_done(ex);
        }
        int64_t id = -1;
        if (!rw__arg_null(ex, 0) && !rw__arg_i64(ex, 0, &id))
            return rw__exec_fallback(ex, RW_REASON_ARGS);
        snprintf(ex->parambuf[0], sizeof ex->parambuf[0], "%lld", (long long)id);
        const char *params[1] = {ex->parambuf[0]};
        return bu_query(ex, SRC_IDNF, sql_idnf, 1, params);
    }
    if (!rw__res_ok(res, 3))
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    int n = PQntuples(res);
    idnf_node_t *nodes = malloc(((size_t)n + 1) * sizeof *nodes);
    if (!nodes)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    size_t k = 0;
    for (int r = 0; r < n; r++) {
        int64_t d, id;
        if (!rw__parse_i64(PQgetvalue(res, r, 0), &d) || !rw__parse_i64(PQgetvalue(res, r, 1), &id)) {
            free(nodes);
            return rw__exec_fallback(ex, RW_REASON_NATIVE_VALUE);
        }
        if (d >= BU_MAX_DEPTH) {
            free(nodes);
            return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
        }
        if (PQgetisnull(res, r, 2))
            continue;
        const char *ta = PQgetvalue(res, r, 2);
        bool keep;
        if (cus && !si)
            keep = strcmp(ta, "CUSTOMER") == 0;
        else if (!cus && si)
            keep = strcmp(ta, "SITE") == 0;
        else if (cus && si)
            keep = strcmp(ta, "CUSTOMER") == 0 || strcmp(ta, "SITE") == 0;
        else
            keep = strcmp(ta, "CLIENT") == 0;
        if (keep) {
            nodes[k].id = id;
            nodes[k].depth = (int)d;
            k++;
        }
    }
    /* Traversal order is undefined in the legacy function; breadth-first with siblings by id. */
    if (k > 1)
        qsort(nodes, k, sizeof *nodes, cmp_idnf);
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__sb_putn(&sb, "", 0);
    for (size_t i = 0; i < k; i++) {
        if (i)
            rw__sb_putc(&sb, ' ');
        rw__sb_put_i64(&sb, nodes[i].id);
    }
    free(nodes);
    if (sb.failed) {
        rw__sb_free(&sb);
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    }
    if (describe_scalar(ex) != RW_EXEC_DONE) {
        rw__sb_free(&sb);
        return ex->status;
    }
    put_single_row(&ex->body, &sb, false);
    rw__command_complete(&ex->body, 1);
    rw__sb_free(&sb);
    return rw__exec_done(ex);
}
