/*
 * butree.c: optional in-memory copy of one database's business-unit tree (bt ids, parents, codes,
 * names and identifier tacodes), from which the BU functions answer without any query.
 *
 * The walks here reproduce the SQL walks of bu.c exactly, including their depth cap, and return
 * their answer as a PGresult with the same columns and text values the SQL would have returned
 * (built with libpq's PQmakeEmptyPGresult/PQsetvalue), so bu.c composes results through one code
 * path whichever source the rows came from.
 *
 * Invariants: a tree is immutable once built and may be shared by any number of execs of its
 * database. Staleness is the driver's responsibility (ARCHITECTURE.md "Native data access"): it
 * must drop the tree when a write to bt or typeassist commits (through pgshim, or notified by the
 * invalidation triggers) and may only use it within the tenant's declared staleness otherwise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "functions.h"

#define BU_MAX_DEPTH 1000   /* same cap as the SQL walks in bu.c */

const char rw_butree_sql[] =
    "select b.id, b.parent_id, b.bucode, b.buname, ta.tacode"
    " from bt b left join typeassist ta on ta.id = b.identifier_id";

typedef struct bt_node {
    int64_t id;
    int64_t parent_id;
    bool parent_null;
    char *bucode, *buname, *tacode;   /* NULL for SQL NULL */
    int first_child, next_sibling;    /* indexes, -1 none */
} bt_node_t;

struct rw_butree {
    bt_node_t *v;
    int n;
};

static int cmp_id(const void *a, const void *b)
{
    const bt_node_t *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int find(const rw_butree_t *t, int64_t id)
{
    int lo = 0, hi = t->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (t->v[mid].id == id)
            return mid;
        if (t->v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

void rw_butree_free(rw_butree_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++) {
        free(t->v[i].bucode);
        free(t->v[i].buname);
        free(t->v[i].tacode);
    }
    free(t->v);
    free(t);
}

static char *dup_val(const PGresult *res, int r, int c, bool *fail)
{
    if (PQgetisnull(res, r, c))
        return NULL;
    char *s = strdup(PQgetvalue(res, r, c));
    if (!s)
        *fail = true;
    return s;
}

rw_butree_t *rw_butree_build(const PGresult *res)
{
    if (!rw__res_ok(res, 5))
        return NULL;
    rw_butree_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    int n = PQntuples(res);
    t->v = calloc((size_t)n + 1, sizeof *t->v);
    if (!t->v) {
        free(t);
        return NULL;
    }
    bool fail = false;
    for (int r = 0; r < n && !fail; r++) {
        bt_node_t *nd = &t->v[t->n++];
        nd->first_child = nd->next_sibling = -1;
        nd->parent_null = PQgetisnull(res, r, 1);
        if (PQgetisnull(res, r, 0) || !rw__parse_i64(PQgetvalue(res, r, 0), &nd->id) ||
            (!nd->parent_null && !rw__parse_i64(PQgetvalue(res, r, 1), &nd->parent_id)))
            fail = true;
        nd->bucode = dup_val(res, r, 2, &fail);
        nd->buname = dup_val(res, r, 3, &fail);
        nd->tacode = dup_val(res, r, 4, &fail);
    }
    if (fail) {
        rw_butree_free(t);
        return NULL;
    }
    qsort(t->v, (size_t)t->n, sizeof *t->v, cmp_id);
    for (int i = 1; i < t->n; i++)
        if (t->v[i].id == t->v[i - 1].id) {   /* not a primary key: refuse */
            rw_butree_free(t);
            return NULL;
        }
    /* Children in descending index order pushed to the front: lists end up ascending by id. */
    for (int i = t->n - 1; i >= 0; i--) {
        if (t->v[i].parent_null)
            continue;
        int p = find(t, t->v[i].parent_id);
        if (p < 0)
            continue;
        t->v[i].next_sibling = t->v[p].first_child;
        t->v[p].first_child = i;
    }
    return t;
}

size_t rw_butree_size(const rw_butree_t *t)
{
    return t ? (size_t)t->n : 0;
}

/* Result builder over libpq's in-memory PGresult. */
static PGresult *make_result(const char *const *names, int ncols)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    if (!res)
        return NULL;
    PGresAttDesc att[6];
    memset(att, 0, sizeof att);
    for (int i = 0; i < ncols; i++) {
        att[i].name = (char *)names[i];
        att[i].typid = RW_OID_TEXT;
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    if (!PQsetResultAttrs(res, ncols, att)) {
        PQclear(res);
        return NULL;
    }
    return res;
}

static bool set_str(PGresult *res, int row, int col, const char *s)
{
    return PQsetvalue(res, row, col, (char *)(s ? s : ""), s ? (int)strlen(s) : -1) != 0;
}

static bool set_i64(PGresult *res, int row, int col, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%" PRId64, v);
    return PQsetvalue(res, row, col, buf, n) != 0;
}

/* One walk row: dir, d, id, parent_id, bucode, buname (bu.c's sql_walk columns). */
static bool put_walk_row(PGresult *res, int *row, char dir, int depth, const bt_node_t *nd)
{
    char d[2] = {dir, '\0'};
    int r = (*row)++;
    return set_str(res, r, 0, d) && set_i64(res, r, 1, depth) && set_i64(res, r, 2, nd->id) &&
           (nd->parent_null ? set_str(res, r, 3, NULL) : set_i64(res, r, 3, nd->parent_id)) &&
           set_str(res, r, 4, nd->bucode) && set_str(res, r, 5, nd->buname);
}

/* Breadth-first down-walk from index s, calling visit(node, depth) in level order; stops at the
   depth cap like the recursive SQL (rows at depth BU_MAX_DEPTH are still produced) and after a
   bounded number of rows (a parent cycle below the start). */
typedef bool (*visit_fn)(void *ctx, const bt_node_t *nd, int depth);

static bool walk_down(const rw_butree_t *t, int s, visit_fn visit, void *ctx)
{
    size_t cap = (size_t)t->n + 1, head = 0, tail = 0;
    int *q = malloc(cap * sizeof *q);
    int *qd = malloc(cap * sizeof *qd);
    bool ok = q && qd;
    if (ok) {
        q[tail] = s;
        qd[tail++] = 0;
    }
    size_t produced = 0;
    while (ok && head < tail) {
        int i = q[head], d = qd[head++];
        if (!visit(ctx, &t->v[i], d)) {
            ok = false;
            break;
        }
        if (++produced > (size_t)t->n * 2 + 2)
            break;   /* cycle: the caller sees a depth-capped walk via the sentinel below */
        if (d >= BU_MAX_DEPTH)
            continue;
        for (int c = t->v[i].first_child; c >= 0; c = t->v[c].next_sibling) {
            if (tail == cap) {
                cap *= 2;
                int *nq = realloc(q, cap * sizeof *q);
                if (nq)
                    q = nq;
                int *nqd = realloc(qd, cap * sizeof *qd);
                if (nqd)
                    qd = nqd;
                if (!nq || !nqd) {
                    ok = false;
                    break;
                }
            }
            q[tail] = c;
            qd[tail++] = d + 1;
        }
    }
    /* A walk that did not drain its queue was cut short by a cycle: report it as capped. */
    if (ok && head < tail)
        ok = visit(ctx, &t->v[q[head]], BU_MAX_DEPTH);
    free(q);
    free(qd);
    return ok;
}

typedef struct walk_ctx {
    PGresult *res;
    int row;
} walk_ctx_t;

static bool visit_walk(void *ctx, const bt_node_t *nd, int depth)
{
    walk_ctx_t *w = ctx;
    return put_walk_row(w->res, &w->row, 'd', depth, nd);
}

PGresult *rw__butree_walk(const rw_butree_t *t, int64_t start, bool up, bool down)
{
    static const char *const names[6] = {"dir", "d", "id", "parent_id", "bucode", "buname"};
    PGresult *res = make_result(names, 6);
    if (!res)
        return NULL;
    int s = find(t, start);
    int row = 0;
    bool ok = true;
    if (s >= 0 && up) {
        ok = put_walk_row(res, &row, 'u', 0, &t->v[s]);
        int cur = s;
        for (int d = 1; ok && d <= BU_MAX_DEPTH; d++) {
            const bt_node_t *c = &t->v[cur];
            if (c->parent_null)
                break;
            int p = find(t, c->parent_id);
            if (p < 0 || t->v[p].id == 1 || t->v[p].id == -1)
                break;
            ok = put_walk_row(res, &row, 'u', d, &t->v[p]);
            cur = p;
        }
    }
    if (ok && s >= 0 && down) {
        walk_ctx_t w = {res, row};
        ok = walk_down(t, s, visit_walk, &w);
        row = w.row;
    }
    if (!ok) {
        PQclear(res);
        return NULL;
    }
    return res;
}

PGresult *rw__butree_self(const rw_butree_t *t, int64_t id)
{
    static const char *const names[6] = {"dir", "d", "id", "parent_id", "bucode", "buname"};
    PGresult *res = make_result(names, 6);
    if (!res)
        return NULL;
    int s = find(t, id);
    int row = 0;
    if (s >= 0 && !put_walk_row(res, &row, 'd', 0, &t->v[s])) {
        PQclear(res);
        return NULL;
    }
    return res;
}

typedef struct idnf_ctx {
    PGresult *res;
    int row;
} idnf_ctx_t;

static bool visit_idnf(void *ctx, const bt_node_t *nd, int depth)
{
    idnf_ctx_t *w = ctx;
    int r = w->row++;
    return set_i64(w->res, r, 0, depth) && set_i64(w->res, r, 1, nd->id) &&
           set_str(w->res, r, 2, nd->tacode);
}

PGresult *rw__butree_idnf(const rw_butree_t *t, int64_t start)
{
    static const char *const names[3] = {"d", "id", "tacode"};
    PGresult *res = make_result(names, 3);
    if (!res)
        return NULL;
    int s = find(t, start);
    /* Anchor: the row itself must hang directly under the legacy root -1. */
    if (s >= 0 && !t->v[s].parent_null && t->v[s].parent_id == -1) {
        idnf_ctx_t w = {res, 0};
        if (!walk_down(t, s, visit_idnf, &w)) {
            PQclear(res);
            return NULL;
        }
    }
    return res;
}
