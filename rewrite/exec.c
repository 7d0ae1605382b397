/*
 * exec.c: the native-execution state machine of rw.h (rw_exec_*), the RowDescription of a call
 * (rw_describe_call) and the session settings of the native connections.
 *
 * An exec owns a deep copy of the call. It asks its driver for at most a few queries (text
 * results) and then either holds the complete answer (describe + body buffers, RW_EXEC_DONE) or a
 * fallback reason. The per-function logic lives in rewrite/functions/; this file only sequences
 * it: an optional first query for per-database facts (rw_dbinfo_t: the geography type OID and
 * the locale; skipped when the driver hands in its cached copy), then the function's own step
 * function. Every query has a stable statement name (rw_exec_stmt_name) so a driver can prepare
 * it once per connection; the BU functions can instead answer from a driver-owned in-memory tree
 * (rw_exec_set_butree, rewrite/functions/butree.c).
 *
 * Invariants: the output buffers are only meaningful after RW_EXEC_DONE; after a fallback they are
 * reset and must not be sent. Any unexpected PGresult (NULL, error status, wrong column count)
 * becomes RW_REASON_NATIVE_QUERY, never an error sent to the client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functions/functions.h"
#include "rw_int.h"

/* client_min_messages decides whether fn_get_bulist's NOTICE reaches the client at all (and
   'warning' or higher would drop the fn_men*bt NOTICE before their error): a client must be at
   'notice' (or a more verbose level) for the native answer to match. It is not reported with
   ParameterStatus, so the proxy has to track it from SET statements. */
const char *const rw_native_settings[][2] = {
    {"TimeZone", "UTC"},
    {"DateStyle", "ISO, MDY"},
    {"IntervalStyle", "postgres"},
    {"extra_float_digits", "1"},
    {"client_encoding", "UTF8"},
    {"standard_conforming_strings", "on"},
    {"search_path", "\"$user\", public"},
    {"client_min_messages", "notice"},
    {NULL, NULL},
};

/* One row: geography OID (the base type when geography is a domain, as RowDescription reports
   it), its typlen, the locale provider and the default collation and ctype. to_jsonb(d) keeps
   the query valid on versions without datlocprovider (they only have libc locales). */
const char rw_dbinfo_sql[] =
    "select coalesce((select case when t.typtype = 'd' then t.typbasetype else t.oid end"
    " from pg_catalog.pg_type t where t.oid = pg_catalog.to_regtype('geography')), 0)::oid::text,"
    " coalesce((select t.typlen from pg_catalog.pg_type t"
    " where t.oid = pg_catalog.to_regtype('geography')), -1)::text,"
    " coalesce(pg_catalog.to_jsonb(d) ->> 'datlocprovider', 'c'), d.datcollate::text,"
    " d.datctype::text"
    " from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()";

static bool is_c_locale(const char *s)
{
    return strcmp(s, "C") == 0 || strcmp(s, "POSIX") == 0;
}

static bool is_c_utf8_locale(const char *s)
{
    return strcmp(s, "C.UTF-8") == 0 || strcmp(s, "C.utf8") == 0;
}

int rw_dbinfo_parse(const PGresult *res, rw_dbinfo_t *out)
{
    if (!rw__res_ok(res, 5) || PQntuples(res) != 1)
        return -1;
    int64_t oid, len;
    if (!rw__parse_i64(PQgetvalue(res, 0, 0), &oid) || !rw__parse_i64(PQgetvalue(res, 0, 1), &len))
        return -1;
    const char *prov = PQgetvalue(res, 0, 2);
    const char *coll = PQgetvalue(res, 0, 3);
    const char *ctype = PQgetvalue(res, 0, 4);
    bool libc = strcmp(prov, "c") == 0;
    memset(out, 0, sizeof *out);
    out->valid = true;
    out->geography_oid = (uint32_t)oid;
    out->geography_len = (int16_t)len;
    /* glibc's C.UTF-8 collates by code point, which for UTF-8 is byte order. */
    out->collate_c = libc && (is_c_locale(coll) || is_c_utf8_locale(coll));
    out->ctype_c = libc && is_c_locale(ctype);
    return 0;
}

void rw_exec_set_dbinfo(rw_exec_t *ex, const rw_dbinfo_t *info)
{
    if (info && info->valid)
        ex->db = *info;
}

void rw_exec_set_butree(rw_exec_t *ex, const rw_butree_t *t)
{
    ex->butree = t;
}

void rw_exec_set_capsmemo(rw_exec_t *ex, const rw_capsmemo_t *m)
{
    ex->capsmemo = m;
}

void rw_exec_set_groups(rw_exec_t *ex, const rw_groups_t *g)
{
    ex->groups = g;
}

bool rw_exec_get_dbinfo(const rw_exec_t *ex, rw_dbinfo_t *out)
{
    if (!ex->db.valid)
        return false;
    *out = ex->db;
    return true;
}

/* Per function: implementation and whether it needs rw_dbinfo_t before its first step. */
static const struct {
    rw_fun_step_fn step;
    bool needs_db;
} fn_table[RW_FN__COUNT] = {
    [RW_FN_MENUPBT] = {rw_fun_menupbt, false},
    [RW_FN_MENDOWNBT] = {rw_fun_mendownbt, false},
    [RW_FN_MENALLBT] = {rw_fun_menallbt, false},
    [RW_FN_GET_BULIST] = {rw_fun_get_bulist, true},
    [RW_FN_GETBULIST_BASEDON_IDNF] = {rw_fun_getbulist_basedon_idnf, false},
    [RW_FN_GETASSETVSQUESTIONSET] = {rw_fun_getassetvsquestionset, true},
    [RW_FN_GETASSETDETAILS] = {rw_fun_getassetdetails, true},
    [RW_FN_GETJOBNEED] = {rw_fun_getjobneed, true},
    [RW_FN_GETEXTTOURJOBNEED] = {rw_fun_getexttourjobneed, true},
    [RW_FN_GET_SCHEDULE_FOR_ADHOC] = {rw_fun_get_schedule_for_adhoc, false},
    [RW_FN_WEB_CAPS_FOR_CLIENT] = {rw_fun_web_caps_for_client, true},
};

rw_exec_t *rw_exec_new(const rw_call_t *call)
{
    if (!call || (int)call->fn < 0 || call->fn >= RW_FN__COUNT || call->nargs < 0 ||
        call->nargs > RW_MAX_ARGS)
        return NULL;
    rw_exec_t *ex = calloc(1, sizeof *ex);
    if (!ex)
        return NULL;
    ex->call = *call;
    for (int i = 0; i < RW_MAX_ARGS; i++)
        ex->call.args[i].text = NULL;
    for (int i = 0; i < call->nargs; i++) {
        if (!call->args[i].is_null && call->args[i].text) {
            ex->call.args[i].text = strdup(call->args[i].text);
            if (!ex->call.args[i].text) {
                rw_exec_free(ex);
                return NULL;
            }
        } else {
            ex->call.args[i].is_null = true;
        }
    }
    ex->call.colname[RW_NAMEDATALEN - 1] = '\0';
    ex->step_fn = fn_table[call->fn].step;
    ex->reason = RW_REASON_NONE;
    pgw_buf_init(&ex->describe);
    pgw_buf_init(&ex->body);
    return ex;
}

void rw_exec_free(rw_exec_t *ex)
{
    if (!ex)
        return;
    for (int i = 0; i < RW_MAX_ARGS; i++)
        free(ex->call.args[i].text);
    free(ex->owned_param);
    pgw_buf_free(&ex->describe);
    pgw_buf_free(&ex->body);
    free(ex);
}

rw_exec_status_t rw__exec_query(rw_exec_t *ex, const char *sql, int nparams,
                                const char *const *params)
{
    if (nparams > RW_EXEC_MAX_PARAMS)
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    ex->sql = sql;
    ex->unnamed = false;
    /* FNV-1a 64: a stable, collision-unlikely name over a handful of fixed texts. */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    snprintf(ex->stmt_name, sizeof ex->stmt_name, "rw_%016llx", (unsigned long long)h);
    ex->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        ex->params[i] = params[i];
    ex->status = RW_EXEC_QUERY;
    return ex->status;
}

rw_exec_status_t rw__exec_query_unnamed(rw_exec_t *ex, const char *sql, int nparams,
                                        const char *const *params)
{
    rw_exec_status_t st = rw__exec_query(ex, sql, nparams, params);
    ex->unnamed = st == RW_EXEC_QUERY;
    return st;
}

rw_exec_status_t rw__exec_fallback(rw_exec_t *ex, rw_reason_t reason)
{
    pgw_buf_reset(&ex->describe);
    pgw_buf_reset(&ex->body);
    ex->failed = false;
    ex->reason = reason;
    ex->sql = NULL;
    ex->nparams = 0;
    ex->status = RW_EXEC_FALLBACK;
    return ex->status;
}

rw_exec_status_t rw__exec_done(rw_exec_t *ex)
{
    if (pgw_buf_failed(&ex->describe) || pgw_buf_failed(&ex->body))
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    ex->sql = NULL;
    ex->nparams = 0;
    ex->status = RW_EXEC_DONE;
    return ex->status;
}

/* The phrase is NULL, so the function raises its NOTICE ("Phrase :: <NULL>") and returns no row
   without reading a table. Unqualified, as the callers write it (the native path runs with the
   default search_path); unnamed, since it runs once per database. */
const char rw_bulist_probe_sql[] =
    "select 1 from fn_get_bulist(NULL::bigint, false, false, NULL::text, NULL::jsonb)";

/* After the database facts: fn_get_bulist first learns its NOTICE fields (once per database;
   the driver keeps them with the facts). */
static rw_exec_status_t first_step(rw_exec_t *ex)
{
    if (ex->call.fn == RW_FN_GET_BULIST && !ex->db.bulist_notice_learnt) {
        ex->asked_probe = true;
        ex->probe_noticed = false;
        return rw__exec_query_unnamed(ex, rw_bulist_probe_sql, 0, NULL);
    }
    return ex->step_fn(ex, NULL);
}

rw_exec_status_t rw_exec_start(rw_exec_t *ex)
{
    if (!ex->step_fn)
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    if (fn_table[ex->call.fn].needs_db && !ex->db.valid) {
        ex->asked_db = true;
        return rw__exec_query(ex, rw_dbinfo_sql, 0, NULL);
    }
    return first_step(ex);
}

/* Copies src into dst[cap]; false when it does not fit (the template is then not used). */
static bool copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return false;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
    return true;
}

rw_notice_t rw_notice_from_result(const PGresult *res)
{
    return (rw_notice_t){
        .severity = PQresultErrorField(res, PG_DIAG_SEVERITY),
        .severity_nl = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED),
        .sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE),
        .message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
        .where = PQresultErrorField(res, PG_DIAG_CONTEXT),
        .file = PQresultErrorField(res, PG_DIAG_SOURCE_FILE),
        .line = PQresultErrorField(res, PG_DIAG_SOURCE_LINE),
        .routine = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION),
    };
}

void rw_exec_notice(rw_exec_t *ex, const rw_notice_t *n)
{
    if (!ex || !n || !ex->asked_probe || ex->status != RW_EXEC_QUERY || ex->probe_noticed)
        return;
    /* Exactly the NOTICE the function raises for a NULL phrase; anything else (a deployment
       whose function words it differently, or raises more) leaves the template unlearnt. */
    if (!n->severity_nl || strcmp(n->severity_nl, "NOTICE") != 0 || !n->sqlstate ||
        strcmp(n->sqlstate, "00000") != 0 || !n->message ||
        strcmp(n->message, "Phrase :: <NULL>") != 0 || !n->severity || !n->severity[0])
        return;
    rw_dbinfo_t *d = &ex->db;
    if (!copy_field(d->bulist_notice_sev, sizeof d->bulist_notice_sev, n->severity) ||
        !copy_field(d->bulist_notice_where, sizeof d->bulist_notice_where, n->where) ||
        !copy_field(d->bulist_notice_file, sizeof d->bulist_notice_file, n->file) ||
        !copy_field(d->bulist_notice_line, sizeof d->bulist_notice_line, n->line) ||
        !copy_field(d->bulist_notice_routine, sizeof d->bulist_notice_routine, n->routine))
        return;
    ex->probe_noticed = true;
}

rw_exec_status_t rw_exec_feed(rw_exec_t *ex, const PGresult *res)
{
    if (ex->status != RW_EXEC_QUERY)
        return ex->status;
    if (ex->asked_db) {
        ex->asked_db = false;
        if (rw_dbinfo_parse(res, &ex->db) < 0)
            return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
        return first_step(ex);
    }
    if (ex->asked_probe) {
        ex->asked_probe = false;
        if (!rw__res_ok(res, 1) || PQntuples(res) != 0)
            return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
        if (!ex->probe_noticed)
            return rw__exec_fallback(ex, RW_REASON_NO_NOTICE_TEMPLATE);
        ex->db.bulist_notice_learnt = true;
        return ex->step_fn(ex, NULL);
    }
    if (!res)
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    ex->step++;
    return ex->step_fn(ex, res);
}

const char *rw_exec_sql(const rw_exec_t *ex)
{
    return ex->sql;
}

const char *rw_exec_stmt_name(const rw_exec_t *ex)
{
    return ex->sql && !ex->unnamed ? ex->stmt_name : NULL;
}

int rw_exec_nparams(const rw_exec_t *ex)
{
    return ex->nparams;
}

const char *const *rw_exec_params(const rw_exec_t *ex)
{
    return ex->params;
}

rw_reason_t rw_exec_reason(const rw_exec_t *ex)
{
    return ex->reason;
}

const pgw_buf_t *rw_exec_describe(const rw_exec_t *ex)
{
    return &ex->describe;
}

const pgw_buf_t *rw_exec_body(const rw_exec_t *ex)
{
    return &ex->body;
}

bool rw_exec_failed(const rw_exec_t *ex)
{
    return ex->status == RW_EXEC_DONE && ex->failed;
}

/* ---------------------------------------------------------------------------------------------
 * Helpers for the implementations
 * ------------------------------------------------------------------------------------------- */
static void describe_cols(pgw_buf_t *out, const rw_col_t *cols, size_t n, const rw_dbinfo_t *db)
{
    pgw_field_desc_t f[40];
    if (n > sizeof f / sizeof f[0]) {
        out->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].name.ptr = cols[i].name;
        f[i].name.len = (uint32_t)strlen(cols[i].name);
        f[i].table_oid = 0;
        f[i].attnum = 0;
        if (cols[i].oid == RW_OID_GEOGRAPHY_PLACEHOLDER) {
            f[i].type_oid = db ? db->geography_oid : 0;
            f[i].type_len = db ? db->geography_len : -1;
        } else {
            f[i].type_oid = cols[i].oid;
            f[i].type_len = cols[i].len;
        }
        f[i].type_mod = cols[i].typmod;
        f[i].format = 0;
    }
    pgw_build_row_description(out, f, (uint16_t)n);
}

void rw__describe_cols(rw_exec_t *ex, pgw_buf_t *out, const rw_col_t *cols, size_t n)
{
    describe_cols(out, cols, n, &ex->db);
}

void rw__command_complete(pgw_buf_t *out, uint64_t rows)
{
    char tag[32];
    snprintf(tag, sizeof tag, "SELECT %llu", (unsigned long long)rows);
    pgw_build_command_complete(out, tag);
}

int rw__copy_rows(pgw_buf_t *out, const PGresult *res, int first_col, int ncols)
{
    int n = PQntuples(res);
    for (int r = 0; r < n; r++) {
        pgw_data_row_begin(out, (uint16_t)ncols);
        for (int c = first_col; c < first_col + ncols; c++) {
            if (PQgetisnull(res, r, c))
                pgw_data_row_put_null(out);
            else
                pgw_data_row_put(out, PQgetvalue(res, r, c), PQgetlength(res, r, c));
        }
        pgw_data_row_end(out);
    }
    return n;
}

bool rw__arg_null(const rw_exec_t *ex, int i)
{
    return i >= ex->call.nargs || ex->call.args[i].is_null || !ex->call.args[i].text;
}

bool rw__arg_i64(const rw_exec_t *ex, int i, int64_t *out)
{
    return !rw__arg_null(ex, i) && rw__parse_i64(ex->call.args[i].text, out);
}

bool rw__arg_bool(const rw_exec_t *ex, int i, bool *out)
{
    return !rw__arg_null(ex, i) && rw__parse_bool(ex->call.args[i].text, out);
}

const char *rw__arg_text(const rw_exec_t *ex, int i)
{
    return rw__arg_null(ex, i) ? NULL : ex->call.args[i].text;
}

bool rw__res_ok(const PGresult *res, int ncols)
{
    return res && PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) == ncols;
}

/* ---------------------------------------------------------------------------------------------
 * RowDescription of a call
 * ------------------------------------------------------------------------------------------- */
static const rw_col_t *scalar_col(const rw_call_t *call, rw_col_t *tmp)
{
    tmp->name = call->colname;
    tmp->oid = RW_OID_TEXT;
    tmp->len = -1;
    tmp->typmod = -1;
    if (call->fn == RW_FN_GET_BULIST)
        tmp->oid = call->result_oid ? call->result_oid : RW_OID_JSONB;
    return tmp;
}

int rw__describe_fn(const rw_call_t *call, const rw_dbinfo_t *db, pgw_buf_t *out)
{
    rw_col_t tmp;
    const rw_col_t *cols = NULL;
    size_t n = 0;
    bool table_fn = true;
    switch (call->fn) {
    case RW_FN_GETASSETDETAILS:
        cols = rw__cols_assetdetails;
        n = rw__ncols_assetdetails;
        break;
    case RW_FN_GETJOBNEED:
        cols = rw__cols_jobneed;
        n = rw__ncols_jobneed;
        break;
    case RW_FN_GETEXTTOURJOBNEED:
        cols = rw__cols_jobneed;
        n = 35;
        break;
    case RW_FN_GET_SCHEDULE_FOR_ADHOC:
        cols = rw__cols_adhoc;
        n = rw__ncols_adhoc;
        break;
    case RW_FN_WEB_CAPS_FOR_CLIENT:
        cols = rw__cols_caps;
        n = rw__ncols_caps;
        break;
    default:
        table_fn = false;
        cols = scalar_col(call, &tmp);
        n = 1;
        break;
    }
    /* A RETURNS TABLE function in the select list yields one composite column: not handled. */
    if (table_fn && call->fn != RW_FN_WEB_CAPS_FOR_CLIENT && call->shape != RW_SHAPE_FROM)
        return -2;
    for (size_t i = 0; i < n; i++)
        if (cols[i].oid == RW_OID_GEOGRAPHY_PLACEHOLDER && (!db || !db->valid || !db->geography_oid))
            return -3;
    describe_cols(out, cols, n, db);
    return pgw_buf_failed(out) ? -1 : 0;
}

int rw_describe_call(const rw_call_t *call, pgw_buf_t *out)
{
    /* Without per-database facts the geography OID is unknown: functions returning geography
       fail here (-3) and need rw_describe_call_db with the driver's cached rw_dbinfo_t. */
    return rw__describe_fn(call, NULL, out);
}

int rw_describe_call_db(const rw_call_t *call, const rw_dbinfo_t *db, pgw_buf_t *out)
{
    return rw__describe_fn(call, db, out);
}

/* A template's call carries the shape, column name and resolved result type; its $n arguments
   have no values, which the RowDescription never depends on. */
int rw_template_describe(const rw_template_t *t, pgw_buf_t *out)
{
    return rw__describe_fn(&t->call, NULL, out);
}

int rw_template_describe_db(const rw_template_t *t, const rw_dbinfo_t *db, pgw_buf_t *out)
{
    return rw__describe_fn(&t->call, db, out);
}
