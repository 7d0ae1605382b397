/*
 * capabilities.c: native capability hierarchy query (spec 3.11, get_web_caps_for_client).
 *
 * One round trip reads the capability table's tree columns (a few hundred rows); C builds the
 * tree from root id 1 (only when that row's cfor is 'WEB'), computes depth, path (capscodes
 * joined by "->") and xpath (parent xpath + ">" + id + depth), and sorts rows by xpath in
 * C-collation (memcmp) order, which equals ORDER BY xpath in a C-collation database. A node
 * reached twice means a parent cycle through the root: the legacy recursive query would never
 * end, so the call falls back.
 *
 * Optional memo (rw_capsmemo_*): the query has no arguments, so a driver may keep the composed
 * rows of one database in memory (built from the same query, invalidated when capability is
 * written) and every call then answers with a RowDescription and a copy of those bytes.
 *
 * RowDescription: the columns the query's select list produces. Unlike a function result these
 * come from a query: both branches of the recursive UNION carry the table's varchar columns
 * unchanged, so PostgreSQL keeps their typmods (varchar(1000) -> 1004, varchar(50) -> 54,
 * varchar(10) -> 14); table OID and attnum are 0 because the columns come from a CTE. Verified
 * against tests/fixture/caps_query.sql by the differential test; a configured text that casts or
 * renames columns differently would need its own table here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functions.h"

const rw_col_t rw__cols_caps[] = {
    {"id", RW_OID_INT8, 8, -1},
    {"capsname", RW_OID_VARCHAR, -1, 1000 + 4},
    {"capscode", RW_OID_VARCHAR, -1, 50 + 4},
    {"parent_id", RW_OID_INT8, 8, -1},
    {"cfor", RW_OID_VARCHAR, -1, 10 + 4},
    {"depth", RW_OID_INT4, 4, -1},
    {"path", RW_OID_TEXT, -1, -1},
    {"xpath", RW_OID_TEXT, -1, -1},
};
const size_t rw__ncols_caps = sizeof rw__cols_caps / sizeof rw__cols_caps[0];

typedef struct cap_node {
    int64_t id;
    int64_t parent_id;
    bool parent_null;
    int row;             /* row in the PGresult */
    int depth;           /* 0 = not (yet) in the result */
    char *path;
    char *xpath;
    int first_child;     /* index into the children array, -1 none */
    int next_sibling;
} cap_node_t;

static int cmp_node_id(const void *a, const void *b)
{
    const cap_node_t *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int find_node(const cap_node_t *v, int n, int64_t id)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (v[mid].id == id)
            return mid;
        if (v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int cmp_xpath(const void *a, const void *b)
{
    const cap_node_t *x = *(const cap_node_t *const *)a, *y = *(const cap_node_t *const *)b;
    return strcmp(x->xpath, y->xpath);
}

static char *cat3(const char *a, const char *b, const char *c, const char *d)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c), ld = d ? strlen(d) : 0;
    char *r = malloc(la + lb + lc + ld + 1);
    if (!r)
        return NULL;
    memcpy(r, a, la);
    memcpy(r + la, b, lb);
    memcpy(r + la + lb, c, lc);
    if (d)
        memcpy(r + la + lb + lc, d, ld);
    r[la + lb + lc + ld] = '\0';
    return r;
}

/* Composes the capability rows of res (a result of rw_capsmemo_sql) into DataRows and the
   CommandComplete on body. Returns RW_REASON_NONE, or why the call cannot be answered natively
   (then body holds garbage and must be discarded). */
static rw_reason_t caps_compose(const PGresult *res, pgw_buf_t *body)
{
    if (!rw__res_ok(res, 5))
        return RW_REASON_NATIVE_QUERY;
    int n = PQntuples(res);
    rw_reason_t why = RW_REASON_NOMEM;
    cap_node_t *v = calloc((size_t)n + 1, sizeof *v);
    cap_node_t **out = calloc((size_t)n + 1, sizeof *out);
    int *queue = calloc((size_t)n + 1, sizeof *queue);
    int nout = 0;
    if (!v || !out || !queue)
        goto fail;
    for (int r = 0; r < n; r++) {
        v[r].row = r;
        v[r].first_child = v[r].next_sibling = -1;
        v[r].parent_null = PQgetisnull(res, r, 3);
        if (PQgetisnull(res, r, 0) || PQgetisnull(res, r, 2) ||
            !rw__parse_i64(PQgetvalue(res, r, 0), &v[r].id) ||
            (!v[r].parent_null && !rw__parse_i64(PQgetvalue(res, r, 3), &v[r].parent_id))) {
            why = RW_REASON_NATIVE_VALUE;
            goto fail;
        }
    }
    qsort(v, (size_t)n, sizeof *v, cmp_node_id);
    /* Children lists (order irrelevant: the result is sorted by xpath afterwards). */
    for (int i = n - 1; i >= 0; i--) {
        if (v[i].parent_null)
            continue;
        int p = find_node(v, n, v[i].parent_id);
        if (p < 0)
            continue;
        v[i].next_sibling = v[p].first_child;
        v[p].first_child = i;
    }
    int root = find_node(v, n, 1);
    if (root >= 0 && strcmp(PQgetvalue(res, v[root].row, 4), "WEB") == 0 &&
        !PQgetisnull(res, v[root].row, 4)) {
        int qh = 0, qt = 0;
        v[root].depth = 1;
        v[root].path = strdup(PQgetvalue(res, v[root].row, 2));
        v[root].xpath = strdup(PQgetvalue(res, v[root].row, 0));
        if (!v[root].path || !v[root].xpath)
            goto fail;
        queue[qt++] = root;
        while (qh < qt) {
            int p = queue[qh++];
            out[nout++] = &v[p];
            for (int c = v[p].first_child; c >= 0; c = v[c].next_sibling) {
                if (v[c].depth) {
                    /* Reached twice: a cycle through the root; legacy never terminates. */
                    why = RW_REASON_UNSUPPORTED;
                    goto fail;
                }
                if (qt >= n) {
                    why = RW_REASON_UNSUPPORTED;
                    goto fail;
                }
                v[c].depth = v[p].depth + 1;
                char dbuf[16];
                snprintf(dbuf, sizeof dbuf, "%d", v[c].depth);
                v[c].path = cat3(v[p].path, "->", PQgetvalue(res, v[c].row, 2), NULL);
                v[c].xpath = cat3(v[p].xpath, ">", PQgetvalue(res, v[c].row, 0), dbuf);
                if (!v[c].path || !v[c].xpath)
                    goto fail;
                queue[qt++] = c;
            }
        }
    }
    qsort(out, (size_t)nout, sizeof *out, cmp_xpath);
    for (int i = 0; i < nout; i++) {
        const cap_node_t *c = out[i];
        pgw_data_row_begin(body, 8);
        for (int col = 0; col < 5; col++) {
            if (PQgetisnull(res, c->row, col))
                pgw_data_row_put_null(body);
            else
                pgw_data_row_put(body, PQgetvalue(res, c->row, col),
                                 PQgetlength(res, c->row, col));
        }
        char dbuf[16];
        int dl = snprintf(dbuf, sizeof dbuf, "%d", c->depth);
        pgw_data_row_put(body, dbuf, dl);
        pgw_data_row_put(body, c->path, (int32_t)strlen(c->path));
        pgw_data_row_put(body, c->xpath, (int32_t)strlen(c->xpath));
        pgw_data_row_end(body);
    }
    rw__command_complete(body, (uint64_t)nout);
    for (int i = 0; i < n; i++) {
        free(v[i].path);
        free(v[i].xpath);
    }
    free(v);
    free(out);
    free(queue);
    return pgw_buf_failed(body) ? RW_REASON_NOMEM : RW_REASON_NONE;
fail:
    if (v)
        for (int i = 0; i < n; i++) {
            free(v[i].path);
            free(v[i].xpath);
        }
    free(v);
    free(out);
    free(queue);
    return why;
}

/* The whole answer of the capability query for one database: the query has no arguments, so
   the composed DataRows and CommandComplete (or the reason it cannot be answered) are the same
   for every call until the capability table changes. */
struct rw_capsmemo {
    rw_reason_t reason;     /* RW_REASON_NONE: body holds the answer */
    uint8_t *body;
    size_t len;
};

const char rw_capsmemo_sql[] = "select c.id, c.capsname, c.capscode, c.parent_id, c.cfor from capability c";

rw_capsmemo_t *rw_capsmemo_build(const PGresult *res)
{
    if (!rw__res_ok(res, 5))
        return NULL;
    rw_capsmemo_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pgw_buf_t b;
    pgw_buf_init(&b);
    m->reason = caps_compose(res, &b);
    if (m->reason == RW_REASON_NOMEM) {
        pgw_buf_free(&b);
        free(m);
        return NULL;
    }
    if (m->reason == RW_REASON_NONE) {
        m->body = pgw_buf_steal(&b, &m->len);
        if (!m->body) {
            free(m);
            return NULL;
        }
    }
    pgw_buf_free(&b);
    return m;
}

void rw_capsmemo_free(rw_capsmemo_t *m)
{
    if (!m)
        return;
    free(m->body);
    free(m);
}

size_t rw_capsmemo_size(const rw_capsmemo_t *m)
{
    return m ? sizeof *m + m->len : 0;
}

rw_exec_status_t rw_fun_web_caps_for_client(rw_exec_t *ex, const PGresult *res)
{
    if (!ex->db.collate_c)
        return rw__exec_fallback(ex, RW_REASON_UNSUPPORTED);
    if (res == NULL && ex->capsmemo) {
        const rw_capsmemo_t *m = ex->capsmemo;
        if (m->reason != RW_REASON_NONE)
            return rw__exec_fallback(ex, m->reason);
        if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
            return rw__exec_fallback(ex, RW_REASON_NOMEM);
        pgw_buf_append(&ex->body, m->body, m->len);
        return rw__exec_done(ex);
    }
    if (res == NULL)
        return rw__exec_query(ex, rw_capsmemo_sql, 0, NULL);
    rw_reason_t why = caps_compose(res, &ex->body);
    if (why != RW_REASON_NONE)
        return rw__exec_fallback(ex, why);
    if (rw__describe_fn(&ex->call, &ex->db, &ex->describe) < 0)
        return rw__exec_fallback(ex, RW_REASON_NOMEM);
    return rw__exec_done(ex);
}
