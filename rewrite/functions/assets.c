/*
 * assets.c: native asset functions (spec 3.6 fn_getassetvsquestionset, 3.7 fn_getassetdetails).
 *
 * fn_getassetdetails is one round trip: the site's matching assets joined to their service
 * provider (bt) and to the per-asset aggregate of every top-level question set of the site whose
 * assetincludes lists the asset id as text; rows come back ordered by asset id (the order spec
 * section 10 proposes) and go to DataRows verbatim. qsetids and qsetname are aggregated in SQL
 * exactly as fn_getassetvsquestionset composes them (distinct values in the default collation,
 * joined by ' ' or '~'). The legacy function calls fn_getassetvsquestionset twice per asset row
 * from PL/pgSQL; the aggregate does the same matching in one set-based plan.
 *
 * fn_getassetvsquestionset sorts in C, which needs the database's default collation to be C
 * (rw_dbinfo_t.collate_c); otherwise its calls fall back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functions.h"

#define COL(n, o, l) {n, o, l, -1}

const rw_col_t rw__cols_assetdetails[] = {
    COL("id", RW_OID_INT8, 8),
    COL("uuid", RW_OID_UUID, 16),
    COL("assetcode", RW_OID_VARCHAR, -1),
    COL("assetname", RW_OID_VARCHAR, -1),
    COL("enable", RW_OID_BOOL, 1),
    COL("iscritical", RW_OID_BOOL, 1),
    COL("gpslocation", RW_OID_GEOGRAPHY_PLACEHOLDER, -1),
    COL("parent_id", RW_OID_INT8, 8),
    COL("runningstatus", RW_OID_VARCHAR, -1),
    COL("identifier", RW_OID_VARCHAR, -1),
    COL("type_id", RW_OID_INT8, 8),
    COL("category_id", RW_OID_INT8, 8),
    COL("subcategory_id", RW_OID_INT8, 8),
    COL("brand_id", RW_OID_INT8, 8),
    COL("ctzoffset", RW_OID_INT4, 4),
    COL("capacity", RW_OID_NUMERIC, -1),
    COL("unit_id", RW_OID_INT8, 8),
    COL("bu_id", RW_OID_INT8, 8),
    COL("client_id", RW_OID_INT8, 8),
    COL("cuser_id", RW_OID_INT8, 8),
    COL("muser_id", RW_OID_INT8, 8),
    COL("cdtz", RW_OID_TIMESTAMPTZ, 8),
    COL("mdtz", RW_OID_TIMESTAMPTZ, 8),
    COL("location_id", RW_OID_INT8, 8),
    COL("servprov_id", RW_OID_INT8, 8),
    COL("servprovname", RW_OID_VARCHAR, -1),
    COL("qsetids", RW_OID_TEXT, -1),
    COL("qsetname", RW_OID_TEXT, -1),
};
const size_t rw__ncols_assetdetails = sizeof rw__cols_assetdetails / sizeof rw__cols_assetdetails[0];

/* $1 site id, $2 asset id text. Columns: id text, qsetname. */
static const char sql_vsq[] =
    "select q.id::text, q.qsetname from questionset q"
    " where q.parent_id = 1 and q.bu_id = $1::bigint and $2::text = any(q.assetincludes)";

/* $1 mdtz, $2 site id. Columns: the 28 result columns, one row per asset, ordered by id.
   The site's top-level question sets are unnested once and aggregated per asset id text first
   (a few hundred narrow rows), then hash-joined to the site's assets: aggregating after the join
   would sort the wide asset rows (geography and all) once per matching question set. Text
   equality is exactly the legacy `_assetcode = ANY (assetincludes::text[])` test (the default
   collation is deterministic); evaluating ANY per (asset, question set) pair would cost an array
   coercion each time. qsetids/qsetname are aggregated exactly as fn_getassetvsquestionset builds
   them: distinct values, ordered in the database's default collation (the same the legacy sorts
   with), joined by ' ' or '~', '' when none. The aggregate is grouped by the id text, so it has
   at most one row per asset, and s joins on bt's primary key: one row per asset without an outer
   GROUP BY. q.bu_id = $2 equals the legacy's q.bu_id = a.bu_id because a.bu_id = $2. */
static const char sql_details[] =
    "select a.id, a.uuid, a.assetcode, a.assetname, a.enable, a.iscritical, a.gpslocation,"
    " a.parent_id, a.runningstatus, a.identifier, a.type_id, a.category_id, a.subcategory_id,"
    " a.brand_id, a.ctzoffset, a.capacity, a.unit_id, a.bu_id, a.client_id, a.cuser_id,"
    " a.muser_id, a.cdtz, a.mdtz, a.location_id, a.servprov_id, s.buname,"
    " coalesce(q.ids, ''), coalesce(q.names, '')"
    " from asset a"
    " left join bt s on s.id = a.servprov_id"
    " left join (select x.aid::text as aid,"
    "  string_agg(distinct q.id::text, ' ' order by q.id::text) as ids,"
    "  string_agg(distinct q.qsetname::text, '~' order by q.qsetname::text) as names"
    "  from questionset q cross join lateral unnest(q.assetincludes) x(aid)"
    "  where q.parent_id = 1 and q.bu_id = $2::bigint group by 1) q on q.aid = a.id::text"
    " where a.mdtz >= $1::timestamptz and a.bu_id = $2::bigint and a.identifier <> 'NEA'"
    " and a.enable = true"
    " order by a.id";

/* Composes the fn_getassetvsquestionset value from n collected strings (modified in place). */
static void compose_vsq(rw_sb_t *sb, const char **v, size_t n, bool names)
{
    n = rw__strv_sort_unique(v, n);
    rw__sb_putn(sb, "", 0);
    rw__sb_join(sb, v, n, names ? "~" : " ");
}

rw_exec_status_t rw_fun_getassetvsquestionset(rw_exec_t *ex, const PGresult *res)
{
    if (ex->call.nargs != 3)
        return rw__exec_fallback(ex, RW_REASON_ARGS);
    if (!ex->db.collate_c)
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    const char *type = rw__arg_text(ex, 2);
    if (type && !ex->db.ctype_c && !rw__is_ascii(type))
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    bool names = false;
    if (type) {
        char *lt = rw__ascii_lower(type);
        if (!lt)
            return rw__exec_fallback(ex, RW_REASON_NOMEM);
        names = strcmp(lt, "name") == 0;
        free(lt);
    }
    if (res == NULL) {
        int64_t site;
        if (!rw__arg_null(ex, 0) && !rw__arg_null(ex, 1)) {
            if (!rw__arg_i64(ex, 0, &site))
                return rw__exec_fallback(ex, RW_REASON_ARGS);
            const char *params[2] = {rw__arg_text(ex, 0), rw__arg_text(ex, 1)};
            return rw__exec_query(ex, sql_vsq, 2, params);
        }
        /* NULL site or asset: nothing matches, the empty string. */
        if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
            return rw__exec_fallback(ex, RW_REASON_NOMEM);
        pgw_data_row_begin(&ex->body, 1);
        pgw_data_row_put(&ex->body, "", 0);
        pgw_data_row_end(&ex->body);
        rw__command_complete(&ex->body, 1);
        return rw__exec_done(ex);
    }
    if (!rw__res_ok(res, 2))
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    int n = PQntuples(res);
    const char **v = malloc(((size_t)n + 1) * sizeof *v);
    if (!v)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    for (int r = 0; r < n; r++) {
        int c = names ? 1 : 0;
        if (PQgetisnull(res, r, c)) {
            free(v);
            return rw__exec_fallback(ex, RW_REASON_NATIVE_VALUE);
        }
        v[r] = PQgetvalue(res, r, c);
    }
    rw_sb_t sb;
    rw__sb_init(&sb);
    compose_vsq(&sb, v, (size_t)n, names);
    free(v);
    if (sb.failed || rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0) {
        rw__sb_free(&sb);
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    }
    pgw_data_row_begin(&ex->body, 1);
    pgw_data_row_put(&ex->body, sb.p, (int32_t)sb.len);
    pgw_data_row_end(&ex->body);
    rw__command_complete(&ex->body, 1);
    rw__sb_free(&sb);
    return rw__exec_done(ex);
}

rw_exec_status_t rw_fun_getassetdetails(rw_exec_t *ex, const PGresult *res)
{
    if (ex->call.nargs != 2 || ex->call.shape != RW_SHAPE_FROM)
        return rw__exec_fallback(ex, RW_REASON_SHAPE);
    if (!ex->db.geography_oid)
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    if (res == NULL) {
        int64_t site;
        if (!rw__arg_null(ex, 0) && !rw__arg_null(ex, 1)) {
            if (!rw__arg_i64(ex, 1, &site))
                return rw__exec_fallback(ex, RW_REASON_ARGS);
            const char *params[2] = {rw__arg_text(ex, 0), rw__arg_text(ex, 1)};
            return rw__exec_query(ex, sql_details, 2, params);
        }
        /* NULL mdtz or site: no row can match. */
        if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
            return rw__exec_fallback(ex, RW_REASON_NOMEM);
        rw__command_complete(&ex->body, 0);
        return rw__exec_done(ex);
    }
    if (!rw__res_ok(res, 28))
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    int n = rw__copy_rows(&ex->body, res, 0, 28);
    rw__command_complete(&ex->body, (uint64_t)n);
    return rw__exec_done(ex);
}
