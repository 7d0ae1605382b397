/*
 * jobs.c: native job functions (spec 3.8 fun_getjobneed, 3.9 fun_getexttourjobneed,
 * 3.10 fn_get_schedule_for_adhoc).
 *
 * fn_get_schedule_for_adhoc is one statement (the person's groups are a subquery). The two
 * person-based functions first learn the person's group set G (a prepared query, or the driver's
 * in-memory group memberships: then the call is one round trip) and pass it as an array
 * parameter, as the legacy function does, so the planner can combine the person indexes (see
 * jobs_step). Rows come back ordered by id, the order spec section 10 proposes for the undefined
 * legacy order, and go to DataRows verbatim.
 *
 * Time dependence: now() and current_date are those of the native connection's statement (its
 * TimeZone is UTC, rw_native_settings), which is what the client's own statement would have seen
 * for a call outside a transaction block, up to the moment the statement starts.
 *
 * The time window is written exactly as the spec defines it; the (bu_id, client_id) equality
 * and the FK/composite indexes of spec section 7 drive the plan. A sargable plandatetime range is
 * not added: (A) is plandatetime in [today - ctzoffset, today + 2 days - ctzoffset), and without a
 * bound on ctzoffset (an unconstrained integer, no index covers it) any such range would drop
 * rows. fun_getjobneed splits the person test into two arms (sql_jobneed), so only rows of the
 * site that match the person are read from the heap.
 */
#include <stdlib.h>
#include <string.h>

#include "functions.h"

#define COL(n, o, l) {n, o, l, -1}

const rw_col_t rw__cols_jobneed[] = {
    COL("id", RW_OID_INT8, 8),
    COL("jobdesc", RW_OID_VARCHAR, -1),
    COL("plandatetime", RW_OID_TIMESTAMPTZ, 8),
    COL("expirydatetime", RW_OID_TIMESTAMPTZ, 8),
    COL("gracetime", RW_OID_INT4, 4),
    COL("receivedonserver", RW_OID_TIMESTAMPTZ, 8),
    COL("starttime", RW_OID_TIMESTAMPTZ, 8),
    COL("endtime", RW_OID_TIMESTAMPTZ, 8),
    COL("gpslocation", RW_OID_GEOGRAPHY_PLACEHOLDER, -1),
    COL("remarks", RW_OID_TEXT, -1),
    COL("cdtz", RW_OID_TIMESTAMPTZ, 8),
    COL("mdtz", RW_OID_TIMESTAMPTZ, 8),
    COL("pgroup_id", RW_OID_INT8, 8),
    COL("asset_id", RW_OID_INT8, 8),
    COL("cuser_id", RW_OID_INT8, 8),
    COL("frequency", RW_OID_VARCHAR, -1),
    COL("job_id", RW_OID_INT8, 8),
    COL("jobstatus", RW_OID_VARCHAR, -1),
    COL("jobtype", RW_OID_VARCHAR, -1),
    COL("muser_id", RW_OID_INT8, 8),
    COL("performedby_id", RW_OID_INT8, 8),
    COL("priority", RW_OID_VARCHAR, -1),
    COL("qset_id", RW_OID_INT8, 8),
    COL("scantype", RW_OID_VARCHAR, -1),
    COL("people_id", RW_OID_INT8, 8),
    COL("attachmentcount", RW_OID_INT4, 4),
    COL("identifier", RW_OID_VARCHAR, -1),
    COL("parent_id", RW_OID_INT8, 8),
    COL("bu_id", RW_OID_INT8, 8),
    COL("client_id", RW_OID_INT8, 8),
    COL("seqno", RW_OID_INT2, 2),
    COL("ticketcategory_id", RW_OID_INT8, 8),
    COL("ctzoffset", RW_OID_INT4, 4),
    COL("multifactor", RW_OID_NUMERIC, -1),
    COL("uuid", RW_OID_UUID, 16),
    COL("istimebound", RW_OID_TEXT, -1),
    COL("ticket_id", RW_OID_INT8, 8),
    COL("remarkstype_id", RW_OID_INT8, 8),
};
const size_t rw__ncols_jobneed = sizeof rw__cols_jobneed / sizeof rw__cols_jobneed[0];

const rw_col_t rw__cols_adhoc[] = {
    COL("bu_id", RW_OID_INT8, 8),
    COL("jobneedid", RW_OID_INT8, 8),
    COL("jobdesc", RW_OID_VARCHAR, -1),
    COL("plandatetime", RW_OID_TIMESTAMPTZ, 8),
    COL("expirydatetime", RW_OID_TIMESTAMPTZ, 8),
    COL("asset_id", RW_OID_INT8, 8),
    COL("qset_id", RW_OID_INT8, 8),
    COL("people_id", RW_OID_INT8, 8),
    COL("pgroup_id", RW_OID_INT8, 8),
    COL("identifier", RW_OID_VARCHAR, -1),
    COL("jobstatus", RW_OID_VARCHAR, -1),
    COL("jobtype", RW_OID_VARCHAR, -1),
};
const size_t rw__ncols_adhoc = sizeof rw__cols_adhoc / sizeof rw__cols_adhoc[0];

#define JOB_COLS                                                                                  \
    "jn.id, jn.jobdesc, jn.plandatetime, jn.expirydatetime, jn.gracetime, jn.receivedonserver,"   \
    " jn.starttime, jn.endtime, jn.gpslocation, jn.remarks, jn.cdtz, jn.mdtz, jn.pgroup_id,"      \
    " jn.asset_id, jn.cuser_id, jn.frequency, jn.job_id, jn.jobstatus, jn.jobtype, jn.muser_id,"  \
    " jn.performedby_id, jn.priority, jn.qset_id, jn.scantype, jn.people_id, jn.attachmentcount," \
    " jn.identifier, jn.parent_id, jn.bu_id, jn.client_id, jn.seqno, jn.ticketcategory_id,"       \
    " jn.ctzoffset, jn.multifactor, jn.uuid"

/* The person's group set G (spec 3.8 step 1) as the text of a bigint[]: '{}' when empty. */
static const char sql_groups[] =
    "select coalesce(array_agg(pb.pgroup_id), '{}'::bigint[])::text from pgbelonging pb"
    " where pb.people_id = $1::bigint and pb.pgroup_id <> -1";

/* Person test and time window shared by both job functions; $1 is the person, G the parameter
   holding the group set as a bigint[] (an empty array where the legacy has NULL: both leave the OR
   without a TRUE branch, so the row sets are equal). */
#define JOB_WHO_WHEN(G)                                                                           \
    " and (jn.people_id = $1::bigint or jn.cuser_id = $1::bigint or jn.muser_id = $1::bigint"     \
    "  or jn.pgroup_id = any(" G "::bigint[]))"                                                    \
    " and (((jn.plandatetime + jn.ctzoffset * interval '1 minute')::date"                         \
    "   between current_date and current_date + 1)"                                              \
    "  or (jn.plandatetime <= now() and now() <= jn.expirydatetime))"

/* fun_getjobneed, one arm of the person test: the ids of the site's rows that pass the filters
   and WHO (part of the person test). */
#define JOBNEED_ARM(WHO)                                                                          \
    "select x.id from jobneed x where x.bu_id = $2::bigint and x.client_id = $3::bigint"          \
    " and x.identifier not in ('TICKET', 'EXTERNALTOUR') and " WHO                                \
    " and (((x.plandatetime + x.ctzoffset * interval '1 minute')::date"                           \
    "   between current_date and current_date + 1)"                                              \
    "  or (x.plandatetime <= now() and now() <= x.expirydatetime))"

/* $1 people, $2 bu, $3 client, $4 groups. The person test is an OR over four columns; written as
   one filter, the planner (whose site estimate is ten times too low because bu_id and client_id
   are correlated) reads every row of the site, thousands of heap pages, as the legacy function
   does. Split into two arms, each arm combines indexes before touching the heap: the person's
   own columns as a BitmapOr of the (bu_id, client_id, people_id), cuser and muser indexes, and
   the group column as the site index ANDed with the pgroup index; together about a third of the
   pages. The outer query then fetches the few qualifying rows by primary key. The union of the
   arms is exactly the rows the OR selects (a NULL comparison is not true in either form), and
   `in` removes rows both arms found. A person who created or modified most of the site's rows
   (a system user) makes the first arm a scan of the site, once, as the one-filter form. */
static const char sql_jobneed[] =
    "select " JOB_COLS ", jn.other_info ->> 'istimebound', jn.ticket_id, jn.remarkstype_id"
    " from jobneed jn where jn.id in ("
    JOBNEED_ARM("(x.people_id = $1::bigint or x.cuser_id = $1::bigint or x.muser_id = $1::bigint)")
    " union all "
    JOBNEED_ARM("x.pgroup_id = any($4::bigint[])")
    ") order by jn.id";

/* $1 people, $2 client, $3 groups (the legacy function ignores its site argument). */
static const char sql_exttour[] =
    "select " JOB_COLS
    " from jobneed jn"
    " where jn.client_id = $2::bigint and jn.identifier = 'EXTERNALTOUR'" JOB_WHO_WHEN("$3")
    " order by jn.id";

/* $1 plandatetime, $2 bu, $3 people, $4 asset, $5 question set. */
static const char sql_adhoc[] =
    "select jn.bu_id, jn.id, jn.jobdesc, jn.plandatetime, jn.expirydatetime, jn.asset_id,"
    " jn.qset_id, jn.people_id, jn.pgroup_id, jn.identifier, jn.jobstatus, jn.jobtype"
    " from jobneed jn"
    " where jn.jobstatus <> 'COMPLETED' and jn.asset_id = $4::bigint and jn.bu_id = $2::bigint"
    " and jn.qset_id = $5::bigint"
    " and jn.plandatetime - jn.gracetime * interval '1 minute' <= $1::timestamptz"
    " and $1::timestamptz <= jn.expirydatetime"
    " and (jn.people_id = $3::bigint or jn.pgroup_id in (select pb.pgroup_id from pgbelonging pb"
    "  where pb.people_id = $3::bigint and pb.pgroup_id <> -1))"
    " order by jn.plandatetime, jn.id limit 1";

/* Runs a table function: describe, rows verbatim, CommandComplete. Any NULL argument among
   `required` means no row can match (every test is an equality or comparison with it). */
static rw_exec_status_t table_step(rw_exec_t *ex, const PGresult *res, const char *sql,
                                   int nargs, const int *argmap, int nparams, int ncols)
{
    if (ex->call.nargs != nargs || ex->call.shape != RW_SHAPE_FROM)
        return rw__exec_fallback(ex, RW_REASON_SHAPE);
    if (res == NULL) {
        bool any_null = false;
        const char *params[RW_EXEC_MAX_PARAMS];
        for (int i = 0; i < nparams; i++) {
            int a = argmap[i];
            if (rw__arg_null(ex, a)) {
                any_null = true;
                break;
            }
            params[i] = rw__arg_text(ex, a);
        }
        if (!any_null)
            return rw__exec_query(ex, sql, nparams, params);
        if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
            return rw__exec_fallback(ex, RW_REASON_NOMEM);
        rw__command_complete(&ex->body, 0);
        return rw__exec_done(ex);
    }
    if (!rw__res_ok(res, ncols))
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    int n = rw__copy_rows(&ex->body, res, 0, ncols);
    rw__command_complete(&ex->body, (uint64_t)n);
    return rw__exec_done(ex);
}

/* ---------------------------------------------------------------------------------------------
 * Group memberships in memory (rw_groups_*): every (person, group) pair of pgbelonging that
 * sql_groups would aggregate, sorted by person then group, so G is a binary search away.
 * ------------------------------------------------------------------------------------------- */
typedef struct grp_pair {
    int64_t people_id, pgroup_id;
} grp_pair_t;

struct rw_groups {
    grp_pair_t *v;
    size_t n;
};

/* The rows sql_groups reads: NULL people or groups never match its equality and <> tests. */
const char rw_groups_sql[] =
    "select pb.people_id, pb.pgroup_id from pgbelonging pb"
    " where pb.people_id is not null and pb.pgroup_id <> -1";

static int cmp_pair(const void *a, const void *b)
{
    const grp_pair_t *x = a, *y = b;
    if (x->people_id != y->people_id)
        return x->people_id < y->people_id ? -1 : 1;
    return (x->pgroup_id > y->pgroup_id) - (x->pgroup_id < y->pgroup_id);
}

rw_groups_t *rw_groups_build(const PGresult *res)
{
    if (!rw__res_ok(res, 2))
        return NULL;
    int n = PQntuples(res);
    rw_groups_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->v = malloc(((size_t)n + 1) * sizeof *g->v);
    if (!g->v) {
        free(g);
        return NULL;
    }
    for (int r = 0; r < n; r++) {
        if (PQgetisnull(res, r, 0) || PQgetisnull(res, r, 1) ||
            !rw__parse_i64(PQgetvalue(res, r, 0), &g->v[r].people_id) ||
            !rw__parse_i64(PQgetvalue(res, r, 1), &g->v[r].pgroup_id)) {
            rw_groups_free(g);
            return NULL;
        }
    }
    g->n = (size_t)n;
    qsort(g->v, g->n, sizeof *g->v, cmp_pair);
    return g;
}

void rw_groups_free(rw_groups_t *g)
{
    if (!g)
        return;
    free(g->v);
    free(g);
}

size_t rw_groups_size(const rw_groups_t *g)
{
    return g ? sizeof *g + g->n * sizeof *g->v : 0;
}

/* G of person p as sql_groups renders it ('{}' when empty; the order of the elements does not
   matter to `= any(G)`). Returns a heap string or NULL when memory ran out. */
static char *groups_text(const rw_groups_t *g, int64_t p)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->v[mid].people_id < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__sb_putc(&sb, '{');
    for (size_t i = lo; i < g->n && g->v[i].people_id == p; i++) {
        if (i > lo)
            rw__sb_putc(&sb, ',');
        rw__sb_put_i64(&sb, g->v[i].pgroup_id);
    }
    rw__sb_putc(&sb, '}');
    if (sb.failed) {
        rw__sb_free(&sb);
        return NULL;
    }
    return sb.p;   /* NUL-terminated by rw_sb_t */
}

/* The main query, once G (the text of a bigint[]) is in ex->owned_param. */
static rw_exec_status_t jobs_main(rw_exec_t *ex, const char *sql, bool need_bu)
{
    if (need_bu) {
        /* fun_getjobneed: a custom plan sees the person, G and the site and picks the indexes of
           each arm by their selectivity; a generic plan cannot know it. */
        const char *params[4] = {rw__arg_text(ex, 0), rw__arg_text(ex, 1), rw__arg_text(ex, 2),
                                 ex->owned_param};
        return rw__exec_query_unnamed(ex, sql, 4, params);
    }
    /* fun_getexttourjobneed: the identifier index is always selective, and the prepared
       (generic) plan saves a planning pass that costs more than it gains here. */
    const char *params[3] = {rw__arg_text(ex, 0), rw__arg_text(ex, 2), ex->owned_param};
    return rw__exec_query(ex, sql, 3, params);
}

/* Two steps: G first (a prepared statement, or the in-memory memberships), then the main query
   with G as an array parameter run with a custom plan. Knowing G's values lets the planner
   combine the people, cuser, muser and pgroup indexes (BitmapOr) under the site or identifier
   index instead of filtering every row of the site or client; the legacy function gets the same
   plan shape because it also passes G as an array value. */
static rw_exec_status_t jobs_step(rw_exec_t *ex, const PGresult *res, const char *sql, bool need_bu,
                                  int ncols)
{
    if (ex->call.nargs != 3 || ex->call.shape != RW_SHAPE_FROM)
        return rw__exec_fallback(ex, RW_REASON_SHAPE);
    if (!ex->db.geography_oid)
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    if (res == NULL) {
        /* Every test compares with the person, the client (and the site): a NULL matches none.
           fun_getexttourjobneed ignores its site argument, so a NULL site still returns rows. */
        if (rw__arg_null(ex, 0) || rw__arg_null(ex, 2) || (need_bu && rw__arg_null(ex, 1))) {
            if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
                return rw__exec_fallback(ex, RW_REASON_NOMEM);
            rw__command_complete(&ex->body, 0);
            return rw__exec_done(ex);
        }
        int64_t p;
        if (ex->groups && rw__arg_i64(ex, 0, &p)) {
            free(ex->owned_param);
            ex->owned_param = groups_text(ex->groups, p);
            if (!ex->owned_param)
                return rw__exec_fallback(ex, RW_REASON_NOMEM);
            ex->step = 1;   /* the main query's result arrives as step 2, as without the memo */
            return jobs_main(ex, sql, need_bu);
        }
        const char *params[1] = {rw__arg_text(ex, 0)};
        return rw__exec_query(ex, sql_groups, 1, params);
    }
    if (ex->step == 1) {
        if (!rw__res_ok(res, 1) || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
            return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
        free(ex->owned_param);
        ex->owned_param = strdup(PQgetvalue(res, 0, 0));
        if (!ex->owned_param)
            return rw__exec_fallback(ex, RW_REASON_NOMEM);
        return jobs_main(ex, sql, need_bu);
    }
    if (!rw__res_ok(res, ncols))
        return rw__exec_fallback(ex, RW_REASON_NATIVE_QUERY);
    if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    int n = rw__copy_rows(&ex->body, res, 0, ncols);
    rw__command_complete(&ex->body, (uint64_t)n);
    return rw__exec_done(ex);
}

rw_exec_status_t rw_fun_getjobneed(rw_exec_t *ex, const PGresult *res)
{
    return jobs_step(ex, res, sql_jobneed, true, 38);
}

rw_exec_status_t rw_fun_getexttourjobneed(rw_exec_t *ex, const PGresult *res)
{
    return jobs_step(ex, res, sql_exttour, false, 35);
}

rw_exec_status_t rw_fun_get_schedule_for_adhoc(rw_exec_t *ex, const PGresult *res)
{
    static const int argmap[] = {0, 1, 2, 3, 4};
    return table_step(ex, res, sql_adhoc, 5, argmap, 5, 12);
}
