/*
 * functions.h: internals shared by rewrite/exec.c and the native implementations under
 * rewrite/functions/ (one file per family: bu.c, assets.c, jobs.c, capabilities.c; butree.c holds
 * the optional in-memory BU tree), plus the pure composition helpers of compose.c (string
 * building, JSON string escaping as PostgreSQL's jsonb output does it, C-collation text sort, id
 * lists, BFS ordering) that the unit tests exercise with byte vectors.
 *
 * Invariants:
 *  - An implementation never writes to the output buffers unless it is about to return
 *    RW_EXEC_DONE; every other outcome is a fallback and the buffers are discarded.
 *  - Text values that come from the native connection in text format are copied byte for byte
 *    into DataRows: the native session settings (rw_native_settings) make them identical to what
 *    the client would have received from the legacy function.
 *  - Everything that depends on the database's collation or ctype (text sorting, lower()) is only
 *    answered natively when the database uses the C/POSIX (libc) locale, where PostgreSQL's order
 *    is memcmp order and lower() folds ASCII only; otherwise it falls back.
 */
#ifndef PGSHIM_REWRITE_FUNCTIONS_H
#define PGSHIM_REWRITE_FUNCTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rw.h"

/* Type OIDs and lengths PostgreSQL reports for the result columns. */
#define RW_OID_BOOL 16u
#define RW_OID_INT8 20u
#define RW_OID_INT2 21u
#define RW_OID_INT4 23u
#define RW_OID_TEXT 25u
#define RW_OID_VARCHAR 1043u
#define RW_OID_TIMESTAMPTZ 1184u
#define RW_OID_NUMERIC 1700u
#define RW_OID_UUID 2950u
#define RW_OID_JSONB 3802u
#define RW_OID_INT8_ARRAY 1016u
/* Placeholder in column tables for "the geography type of this database" (see rw_dbinfo_t). */
#define RW_OID_GEOGRAPHY_PLACEHOLDER 0xFFFFFFFFu


/* ---------------------------------------------------------------------------------------------
 * Growable string (NUL-terminated when not failed). Sticky failure flag like pgw_buf_t.
 * ------------------------------------------------------------------------------------------- */
typedef struct rw_sb {
    char *p;
    size_t len;
    size_t cap;
    bool failed;
} rw_sb_t;

void rw__sb_init(rw_sb_t *sb);
void rw__sb_free(rw_sb_t *sb);
void rw__sb_reset(rw_sb_t *sb);
void rw__sb_putn(rw_sb_t *sb, const char *s, size_t n);
void rw__sb_puts(rw_sb_t *sb, const char *s);
void rw__sb_putc(rw_sb_t *sb, char c);
void rw__sb_put_i64(rw_sb_t *sb, int64_t v);
/* JSON string literal (with the quotes) escaped exactly as PostgreSQL's escape_json: \" \\ \b \f
   \n \r \t, other bytes below 0x20 as \u00xx (lower-case hex), everything else verbatim. */
void rw__sb_put_json_string(rw_sb_t *sb, const char *s, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Pure helpers
 * ------------------------------------------------------------------------------------------- */
/* Parses a canonical int8 text ("-12"); false on syntax error or overflow. */
bool rw__parse_i64(const char *s, int64_t *out);
/* Parses PostgreSQL boolean input ("true", "t", "yes", "on", "1", ... case-insensitive, as
   boolin accepts); false when not a boolean. */
bool rw__parse_bool(const char *s, bool *out);
/* ASCII lower-casing into a new heap string (PostgreSQL's lower() under the C ctype). */
char *rw__ascii_lower(const char *s);
bool rw__is_ascii(const char *s);

/* Sorts strings in C-collation order (memcmp, shorter prefix first) and removes duplicates;
   returns the new count. Strings are borrowed. */
size_t rw__strv_sort_unique(const char **v, size_t n);
/* Joins v[0..n) with sep. */
void rw__sb_join(rw_sb_t *sb, const char *const *v, size_t n, const char *sep);

/* int64 helpers for id lists. */
void rw__i64_sort(int64_t *v, size_t n);
size_t rw__i64_unique_sorted(int64_t *v, size_t n);
/* "2 5 6" (sep " ", no braces) or "{6,5,2}" (array form). */
void rw__sb_id_list(rw_sb_t *sb, const int64_t *v, size_t n, bool array_form);

/* A business-unit node as the walks return it. bucode/buname are borrowed views. */
typedef struct rw_bu_node {
    int64_t id;
    int64_t parent_id;
    bool parent_null;
    int depth;              /* 0 = start node */
    const char *bucode;
    size_t bucode_len;
    const char *buname;
    size_t buname_len;
} rw_bu_node_t;

/* Orders nodes breadth-first: depth ascending, then id ascending (spec section 10). */
void rw__bu_sort_bfs(rw_bu_node_t *v, size_t n);
/* Sorts nodes by id and drops later duplicates of an id; returns the new count. */
size_t rw__bu_sort_unique_id(rw_bu_node_t *v, size_t n);
/* Text of the jsonb object {"<id>": {"bucode": .., "buname": .., "parent_id": ..}, ...} in
   jsonb canonical key order (shorter keys first, then bytewise). Input must have distinct ids;
   it is reordered. */
void rw__bu_jsonb(rw_sb_t *sb, rw_bu_node_t *v, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Execution state (owned by exec.c; implementations fill the output through the helpers below).
 * ------------------------------------------------------------------------------------------- */
typedef rw_exec_status_t (*rw_fun_step_fn)(rw_exec_t *ex, const PGresult *res);

#define RW_EXEC_MAX_PARAMS 8

struct rw_exec {
    rw_call_t call;                  /* deep copy, argument texts owned */
    rw_exec_status_t status;
    rw_reason_t reason;
    rw_dbinfo_t db;
    bool asked_db;                   /* the current query is rw_dbinfo_sql */
    bool asked_probe;                /* the current query is rw_bulist_probe_sql */
    bool probe_noticed;              /* the probe's NOTICE arrived */
    bool failed;                     /* body ends in an ErrorResponse */
    rw_fun_step_fn step_fn;
    int step;                        /* implementation-defined progress counter */
    const char *sql;                 /* static SQL text of the current query */
    char stmt_name[24];              /* rw_exec_stmt_name() of sql */
    bool unnamed;                    /* run sql as an unnamed statement */
    int nparams;
    const char *params[RW_EXEC_MAX_PARAMS];
    char parambuf[RW_EXEC_MAX_PARAMS][32];
    char *owned_param;               /* a longer parameter text kept across steps (freed) */
    const rw_butree_t *butree;       /* borrowed; NULL = read bt with queries */
    const rw_capsmemo_t *capsmemo;   /* borrowed; NULL = run the capability query */
    const rw_groups_t *groups;       /* borrowed; NULL = query the person's groups */
    pgw_buf_t describe;
    pgw_buf_t body;
};

/* Column of a RowDescription. */
typedef struct rw_col {
    const char *name;
    uint32_t oid;                    /* RW_OID_GEOGRAPHY_PLACEHOLDER for geography */
    int16_t len;
    int32_t typmod;                  /* -1 for function results */
} rw_col_t;

/* Requests a query: sql is static; params are the call's argument texts (NULL = SQL NULL) or
   strings copied into the exec. Returns RW_EXEC_QUERY. */
rw_exec_status_t rw__exec_query(rw_exec_t *ex, const char *sql, int nparams,
                                const char *const *params);
/* Same, for a query that must not be prepared (rw_exec_stmt_name() returns NULL). */
rw_exec_status_t rw__exec_query_unnamed(rw_exec_t *ex, const char *sql, int nparams,
                                        const char *const *params);
rw_exec_status_t rw__exec_fallback(rw_exec_t *ex, rw_reason_t reason);
/* Finishes a successful answer: checks both buffers, sets DONE (or falls back on NOMEM). */
rw_exec_status_t rw__exec_done(rw_exec_t *ex);
/* Builds a RowDescription (table OID 0, attnum 0, text format; typmod from the table). */
void rw__describe_cols(rw_exec_t *ex, pgw_buf_t *out, const rw_col_t *cols, size_t n);
/* Appends "SELECT n". */
void rw__command_complete(pgw_buf_t *out, uint64_t rows);
/* Appends every row of res as DataRows (text bytes verbatim) and returns the row count. */
int rw__copy_rows(pgw_buf_t *out, const PGresult *res, int first_col, int ncols);
/* Argument access: NULL-ness and int8/bool/text values. Return false for an unusable value. */
bool rw__arg_null(const rw_exec_t *ex, int i);
bool rw__arg_i64(const rw_exec_t *ex, int i, int64_t *out);
bool rw__arg_bool(const rw_exec_t *ex, int i, bool *out);
const char *rw__arg_text(const rw_exec_t *ex, int i);
/* True if res is a successful tuples result with ncols columns. */
bool rw__res_ok(const PGresult *res, int ncols);

/* Tree walks returning the rows bu.c's SQL would return (caller PQclears; NULL on failure):
   walk: dir, d, id, parent_id, bucode, buname; self: the same for one row; idnf: d, id, tacode. */
PGresult *rw__butree_walk(const rw_butree_t *t, int64_t start, bool up, bool down);
PGresult *rw__butree_self(const rw_butree_t *t, int64_t id);
PGresult *rw__butree_idnf(const rw_butree_t *t, int64_t start);

/* Result column tables and descriptions per function (used by rw_describe_call too). */
int rw__describe_fn(const rw_call_t *call, const rw_dbinfo_t *db, pgw_buf_t *out);

/* ---------------------------------------------------------------------------------------------
 * Native implementations: called first with res == NULL, then with each fed result.
 * ------------------------------------------------------------------------------------------- */
rw_exec_status_t rw_fun_menupbt(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_mendownbt(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_menallbt(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_get_bulist(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_getbulist_basedon_idnf(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_getassetvsquestionset(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_getassetdetails(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_getjobneed(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_getexttourjobneed(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_get_schedule_for_adhoc(rw_exec_t *ex, const PGresult *res);
rw_exec_status_t rw_fun_web_caps_for_client(rw_exec_t *ex, const PGresult *res);

/* Column tables (in the implementation files). */
extern const rw_col_t rw__cols_assetdetails[];
extern const size_t rw__ncols_assetdetails;
extern const rw_col_t rw__cols_jobneed[];
extern const size_t rw__ncols_jobneed;        /* 38; fun_getexttourjobneed uses the first 35 */
extern const rw_col_t rw__cols_adhoc[];
extern const size_t rw__ncols_adhoc;
extern const rw_col_t rw__cols_caps[];
extern const size_t rw__ncols_caps;

#endif /* PGSHIM_REWRITE_FUNCTIONS_H */
