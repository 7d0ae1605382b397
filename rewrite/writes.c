/*
 * Write detection for cache invalidation (see rw_writes.h for the contract).
 *
 * Two stages. The word scan looks at identifier-like words only (case-insensitively, no
 * knowledge of comments or literals: a word in a comment can cause a needless parse, never a
 * missed write). A statement goes on to libpg_query only if it names a legacy table and a
 * data-changing keyword, or uses DO / CALL / EXECUTE / SCHEMA. The parse tree (protobuf form) is then
 * walked generically through protobuf-c's reflection, with an explicit stack so deeply nested
 * expressions cannot exhaust the C stack; only the target relation of write nodes counts, so a
 * legacy table that is merely read (INSERT INTO other SELECT FROM bt, UPDATE ... FROM bt,
 * SELECT ... FOR UPDATE) is not reported.
 */
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query.pb-c.h>

#include "rw_writes.h"

static const char *const table_names[RW_TABLE__COUNT] = {
#define RW__TABLE_NAME(name, text) text,
    RW_TABLE_MAP(RW__TABLE_NAME)
#undef RW__TABLE_NAME
};

const char *rw_table_name(rw_table_t t)
{
    if ((int)t < 0 || t >= RW_TABLE__COUNT)
        return "?";
    return table_names[t];
}

int rw_table_lookup(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < RW_TABLE__COUNT; i++)
        if (strcmp(name, table_names[i]) == 0)
            return i;
    return -1;
}

int rw_tableset_names(rw_tableset_t set, const char **names, int max)
{
    int n = 0;
    for (int i = 0; i < RW_TABLE__COUNT && n < max; i++)
        if (set & (1u << i))
            names[n++] = table_names[i];
    return n;
}

#define T(x) (1u << RW_TABLE_##x)

rw_tableset_t rw_fn_reads(rw_fn_t fn)
{
    /* From the behaviour spec, section 3: the tables each function's result depends on. */
    switch (fn) {
    case RW_FN_MENUPBT:
    case RW_FN_MENDOWNBT:
    case RW_FN_MENALLBT:
    case RW_FN_GET_BULIST:
        return T(BT);
    case RW_FN_GETBULIST_BASEDON_IDNF:
        return T(BT) | T(TYPEASSIST);
    case RW_FN_GETASSETVSQUESTIONSET:
        return T(QUESTIONSET);
    case RW_FN_GETASSETDETAILS:
        return T(ASSET) | T(QUESTIONSET) | T(BT);
    case RW_FN_GETJOBNEED:
    case RW_FN_GETEXTTOURJOBNEED:
    case RW_FN_GET_SCHEDULE_FOR_ADHOC:
        return T(JOBNEED) | T(PGBELONGING);
    case RW_FN_WEB_CAPS_FOR_CLIENT:
        return T(CAPABILITY);
    default:
        return 0;
    }
}

bool rw_fn_depends_on_date(rw_fn_t fn)
{
    /* fn_get_schedule_for_adhoc compares against its argument, not now(): not dated. */
    return fn == RW_FN_GETJOBNEED || fn == RW_FN_GETEXTTOURJOBNEED;
}

int rw_fn_scopes(rw_fn_t fn, rw_scope_t *out, int max)
{
    /* Behaviour spec 3.6-3.10: each filter below is an equality of the table's column with the
       argument, so rows of other scopes never reach the result. fn_getassetdetails passes
       a.bu_id (= _siteid) to fn_getassetvsquestionset, hence questionset bu = _siteid too;
       fun_getexttourjobneed ignores _buid but filters client_id. */
    static const struct {
        rw_fn_t fn;
        rw_scope_t s;
    } map[] = {
        {RW_FN_GETJOBNEED, {RW_TABLE_JOBNEED, "bu", 1}},
        {RW_FN_GETJOBNEED, {RW_TABLE_PGBELONGING, "people", 0}},
        {RW_FN_GETEXTTOURJOBNEED, {RW_TABLE_JOBNEED, "client", 2}},
        {RW_FN_GETEXTTOURJOBNEED, {RW_TABLE_PGBELONGING, "people", 0}},
        {RW_FN_GET_SCHEDULE_FOR_ADHOC, {RW_TABLE_JOBNEED, "bu", 1}},
        {RW_FN_GET_SCHEDULE_FOR_ADHOC, {RW_TABLE_PGBELONGING, "people", 2}},
        {RW_FN_GETASSETDETAILS, {RW_TABLE_ASSET, "bu", 1}},
        {RW_FN_GETASSETDETAILS, {RW_TABLE_QUESTIONSET, "bu", 1}},
        {RW_FN_GETASSETVSQUESTIONSET, {RW_TABLE_QUESTIONSET, "bu", 0}},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0] && n < max; i++)
        if (map[i].fn == fn)
            out[n++] = map[i].s;
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Word scan
 * ------------------------------------------------------------------------------------------- */

enum { KW_NONE = 0, KW_WRITE = 1, KW_OPAQUE = 2 };

static bool is_word_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '$' || ch >= 0x80;
}

static int keyword_class(const char *w)
{
    static const char *const writes[] = {"insert", "update", "delete", "truncate", "copy",
                                         "merge",  "alter",  "drop",   "create"};
    /* Words that force a parse even without a legacy table name: statements whose effect on
       the legacy tables is not visible from their names (DROP SCHEMA drops them all). */
    static const char *const opaque[] = {"do", "call", "execute", "schema"};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
        if (strcmp(w, writes[i]) == 0)
            return KW_WRITE;
    for (size_t i = 0; i < sizeof opaque / sizeof opaque[0]; i++)
        if (strcmp(w, opaque[i]) == 0)
            return KW_OPAQUE;
    return KW_NONE;
}

/* Scans words: ORs keyword classes into *kw and returns the legacy tables named. */
static rw_tableset_t scan_words(const char *sql, size_t len, int *kw)
{
    rw_tableset_t named = 0;
    size_t i = 0;
    *kw = KW_NONE;
    while (i < len) {
        if (!is_word_char((unsigned char)sql[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && is_word_char((unsigned char)sql[i]))
            i++;
        size_t n = i - start;
        /* Every keyword and table name of interest is short and ASCII. */
        if (n > 16)
            continue;
        char w[17];
        for (size_t j = 0; j < n; j++) {
            char ch = sql[start + j];
            w[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        w[n] = '\0';
        int t = rw_table_lookup(w);
        if (t >= 0)
            named |= 1u << t;
        else
            *kw |= keyword_class(w);
    }
    return named;
}

bool rw_writes_prefilter(const char *sql, size_t len)
{
    int kw;
    rw_tableset_t named = scan_words(sql, len, &kw);
    return (named != 0 && (kw & KW_WRITE)) || (kw & KW_OPAQUE);
}

/* ---------------------------------------------------------------------------------------------
 * Parse-tree walk
 * ------------------------------------------------------------------------------------------- */

typedef struct walk {
    const ProtobufCMessage **stack;
    size_t n, cap;
    bool oom;
    bool other;          /* a write that the NOTIFY triggers do not report (see rw_writes.h) */
    rw_tableset_t out;
} walk_t;

static void push(walk_t *w, const ProtobufCMessage *m)
{
    if (m == NULL || w->oom)
        return;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        const ProtobufCMessage **s = realloc(w->stack, cap * sizeof *s);
        if (s == NULL) {
            w->oom = true;
            return;
        }
        w->stack = s;
        w->cap = cap;
    }
    w->stack[w->n++] = m;
}

static void add_name(walk_t *w, const char *relname)
{
    int t = rw_table_lookup(relname);
    if (t >= 0)
        w->out |= 1u << t;
}

/* Any schema counts: another schema's "bt" could be the one a session's search_path resolves,
   and a needless invalidation is cheap. */
static void add_rangevar(walk_t *w, const PgQuery__RangeVar *rv)
{
    if (rv != NULL && rv->relname != NULL)
        add_name(w, rv->relname);
}

/* Target of a row-changing statement. The triggers are installed on the tables the installing
   session's search_path resolves (normally public): a write to another schema's table of a
   legacy name fires none of them, so it counts as an uncovered write. */
static void add_dml_target(walk_t *w, const PgQuery__RangeVar *rv)
{
    if (rv == NULL || rv->relname == NULL || rw_table_lookup(rv->relname) < 0)
        return;
    add_name(w, rv->relname);
    if (rv->schemaname != NULL && rv->schemaname[0] != '\0' &&
        strcmp(rv->schemaname, "public") != 0)
        w->other = true;
}

/* A name list from DROP (String nodes: [catalog.][schema.]name): the last one is the table. */
static void add_name_list(walk_t *w, const PgQuery__Node *n)
{
    if (n == NULL || n->node_case != PG_QUERY__NODE__NODE_LIST || n->list == NULL ||
        n->list->n_items == 0)
        return;
    const PgQuery__Node *last = n->list->items[n->list->n_items - 1];
    if (last && last->node_case == PG_QUERY__NODE__NODE_STRING && last->string)
        add_name(w, last->string->sval);
}

static void inspect(walk_t *w, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__insert_stmt__descriptor) {
        add_dml_target(w, ((const PgQuery__InsertStmt *)m)->relation);
    } else if (d == &pg_query__update_stmt__descriptor) {
        add_dml_target(w, ((const PgQuery__UpdateStmt *)m)->relation);
    } else if (d == &pg_query__delete_stmt__descriptor) {
        add_dml_target(w, ((const PgQuery__DeleteStmt *)m)->relation);
    } else if (d == &pg_query__merge_stmt__descriptor) {
        add_dml_target(w, ((const PgQuery__MergeStmt *)m)->relation);
    } else if (d == &pg_query__copy_stmt__descriptor) {
        const PgQuery__CopyStmt *c = (const PgQuery__CopyStmt *)m;
        if (c->is_from)
            add_dml_target(w, c->relation);
    } else if (d == &pg_query__truncate_stmt__descriptor) {
        const PgQuery__TruncateStmt *t = (const PgQuery__TruncateStmt *)m;
        for (size_t i = 0; i < t->n_relations; i++) {
            const PgQuery__Node *n = t->relations[i];
            if (n && n->node_case == PG_QUERY__NODE__NODE_RANGE_VAR)
                add_dml_target(w, n->range_var);
        }
    } else if (d == &pg_query__drop_stmt__descriptor) {
        w->other = true;
        const PgQuery__DropStmt *ds = (const PgQuery__DropStmt *)m;
        if (ds->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_SCHEMA) {
            w->out = RW_TABLES_ALL;
        } else if (ds->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_TABLE ||
                   ds->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE) {
            for (size_t i = 0; i < ds->n_objects; i++)
                add_name_list(w, ds->objects[i]);
        }
    } else if (d == &pg_query__alter_table_stmt__descriptor) {
        w->other = true;
        add_rangevar(w, ((const PgQuery__AlterTableStmt *)m)->relation);
    } else if (d == &pg_query__rename_stmt__descriptor) {
        w->other = true;
        const PgQuery__RenameStmt *r = (const PgQuery__RenameStmt *)m;
        add_rangevar(w, r->relation);
        /* Renaming another table to a legacy name replaces what the functions read. */
        if (r->rename_type == PG_QUERY__OBJECT_TYPE__OBJECT_TABLE && r->newname)
            add_name(w, r->newname);
    } else if (d == &pg_query__alter_object_schema_stmt__descriptor) {
        w->other = true;
        add_rangevar(w, ((const PgQuery__AlterObjectSchemaStmt *)m)->relation);
    } else if (d == &pg_query__create_stmt__descriptor) {
        w->other = true;
        add_rangevar(w, ((const PgQuery__CreateStmt *)m)->relation);
    } else if (d == &pg_query__do_stmt__descriptor || d == &pg_query__call_stmt__descriptor ||
               d == &pg_query__execute_stmt__descriptor) {
        w->out = RW_TABLES_ALL;
        w->other = true;
    }
}

/* Pushes every sub-message of m: singular message fields (only the active member of a oneof,
   such as Node's) and every element of repeated message fields. */
static void push_children(walk_t *w, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count = *(const size_t *)(const void *)(base + f->quantifier_offset);
            const ProtobufCMessage *const *items =
                *(const ProtobufCMessage *const *const *)(const void *)(base + f->offset);
            for (size_t j = 0; j < count && items; j++)
                push(w, items[j]);
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(const void *)(base + f->quantifier_offset) != f->id)
            continue;
        push(w, *(const ProtobufCMessage *const *)(const void *)(base + f->offset));
    }
}

static int walk_tree(const PgQuery__ParseResult *tree, rw_tableset_t *out, bool *other)
{
    walk_t w = {0};
    push(&w, &tree->base);
    /* Stop early only once nothing can change any more: a DML statement touching every table
       may still be followed by DDL, which decides how the write is invalidated. */
    while (w.n > 0 && !w.oom && !(w.out == RW_TABLES_ALL && w.other)) {
        const ProtobufCMessage *m = w.stack[--w.n];
        inspect(&w, m);
        push_children(&w, m);
    }
    free(w.stack);
    if (w.oom) {
        *out = RW_TABLES_ALL;
        *other = true;
        return -1;
    }
    *out = w.out;
    /* DDL that names no legacy table (CREATE INDEX, another table's ALTER) does not matter. */
    *other = w.out != 0 && w.other;
    return w.out != 0;
}

int rw_writes_tables(const char *sql, rw_tableset_t *out)
{
    bool other;
    return rw_writes_classify(sql, out, &other);
}

int rw_writes_classify(const char *sql, rw_tableset_t *out, bool *other)
{
    *out = 0;
    *other = false;
    if (sql == NULL)
        return 0;
    size_t len = strlen(sql);
    int kw;
    rw_tableset_t named = scan_words(sql, len, &kw);
    if (!((named != 0 && (kw & KW_WRITE)) || (kw & KW_OPAQUE)))
        return 0;

    PgQueryProtobufParseResult pr = pg_query_parse_protobuf(sql);
    int rc;
    if (pr.error != NULL) {
        /* PostgreSQL would reject the text too, unless the server is newer than the parser
           here; assume the worst about the tables it names. */
        *out = (kw & KW_OPAQUE) ? RW_TABLES_ALL : named;
        *other = *out != 0;
        rc = *out != 0;
    } else {
        PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
            NULL, pr.parse_tree.len, (const uint8_t *)pr.parse_tree.data);
        if (tree == NULL) {
            *out = RW_TABLES_ALL;
            *other = true;
            rc = -1;
        } else {
            rc = walk_tree(tree, out, other);
            pg_query__parse_result__free_unpacked(tree, NULL);
        }
    }
    pg_query_free_protobuf_parse_result(pr);
    return rc;
}
