/*
 * rw_writes: which of the tables the legacy functions read does a statement write?
 *
 * The cache invalidates by table generation, so the proxy must know, for every statement that
 * commits through it, which legacy tables it may have changed. This file answers that from SQL
 * text: a cheap word scan rejects statements that cannot write a legacy table (plain SELECTs,
 * writes to other tables) without parsing; the rest are parsed with libpg_query and every
 * data-changing or table-altering node is inspected, wherever it sits (top level, in a CTE, under
 * EXPLAIN ANALYZE, in any statement of a multi-statement Query).
 *
 * Invariant: errors are on the side of invalidating too much. A statement whose effect cannot be
 * seen in its text (DO, CALL, EXECUTE of a prepared statement) reports every table; a statement
 * libpg_query cannot parse reports every legacy table whose name appears in it. Writes made by
 * triggers, rules, cascades or functions called from a SELECT are not visible here (the optional
 * NOTIFY triggers in etc/ cover those).
 *
 * Also here: the tables each intercepted function reads (from the behaviour spec), which are the
 * generations its cache key depends on.
 */
#ifndef PGSHIM_REWRITE_RW_WRITES_H
#define PGSHIM_REWRITE_RW_WRITES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rw.h"

/* The tables the legacy functions read: (enum suffix, table name). */
#define RW_TABLE_MAP(XX)          \
    XX(BT, "bt")                  \
    XX(TYPEASSIST, "typeassist")  \
    XX(ASSET, "asset")            \
    XX(QUESTIONSET, "questionset") \
    XX(JOBNEED, "jobneed")        \
    XX(PGBELONGING, "pgbelonging") \
    XX(PGROUP, "pgroup")          \
    XX(CAPABILITY, "capability")  \
    XX(PEOPLE, "people")

typedef enum rw_table {
#define RW__TABLE_ENUM(name, text) RW_TABLE_##name,
    RW_TABLE_MAP(RW__TABLE_ENUM)
#undef RW__TABLE_ENUM
    RW_TABLE__COUNT
} rw_table_t;

/* A set of tables: bit (1u << rw_table_t). */
typedef uint32_t rw_tableset_t;
#define RW_TABLES_ALL ((rw_tableset_t)((1u << RW_TABLE__COUNT) - 1u))

/* Table name ("bt"); "?" for an out-of-range value. */
const char *rw_table_name(rw_table_t t);
/* Table by exact (lower-case) name; -1 when it is not a legacy table. */
int rw_table_lookup(const char *name);
/* Names of the set's members in enum order into names[0..max); returns how many were written. */
int rw_tableset_names(rw_tableset_t set, const char **names, int max);

/* Tables function fn reads (what its result depends on); 0 for an unknown fn. */
rw_tableset_t rw_fn_reads(rw_fn_t fn);
/* True for functions whose result depends on the current date (cache keys add the date). */
bool rw_fn_depends_on_date(rw_fn_t fn);

/*
 * Scopes: finer invalidation than a table (issue 7). The NOTIFY triggers of etc/pgshim-notify.sql
 * report, for the tables in RW_TABLES_SCOPED, the distinct values of their scope columns among
 * the rows a statement changed (old and new values): jobneed bu=bu_id client=client_id, asset
 * bu=bu_id, questionset bu=bu_id, pgbelonging people=people_id. A function's result depends only
 * on the rows whose scope column equals one of its arguments (behaviour spec 3.6-3.10), so a
 * write to other scopes cannot change it. Rows whose scope column is NULL are in no scoped result
 * (every filter is an equality with the argument).
 */
#define RW_TABLES_SCOPED                                                                     \
    ((rw_tableset_t)((1u << RW_TABLE_JOBNEED) | (1u << RW_TABLE_ASSET) |                     \
                     (1u << RW_TABLE_QUESTIONSET) | (1u << RW_TABLE_PGBELONGING)))

typedef struct rw_scope {
    rw_table_t table;
    const char *scope;   /* "bu", "client", "people": the name the triggers send */
    int arg;             /* 0-based argument of the call holding the value */
} rw_scope_t;

/* The scopes fn's result is confined to, into out[0..max); returns how many. 0 for functions
   with none (the BU functions, the capability query). */
int rw_fn_scopes(rw_fn_t fn, rw_scope_t *out, int max);

/* The cheap pre-filter alone: false when sql (len bytes) certainly writes no legacy table.
   True means "parse to find out". */
bool rw_writes_prefilter(const char *sql, size_t len);

/*
 * Legacy tables written by sql (NUL-terminated; a simple Query's whole text, which may hold
 * several statements, or one Parse's text). Returns 1 and sets *out to a non-empty set when some
 * are written (possibly RW_TABLES_ALL, see the invariant above), 0 with *out = 0 when none are,
 * and -1 when memory ran out (then *out = RW_TABLES_ALL, so the caller can still invalidate
 * safely).
 */
int rw_writes_tables(const char *sql, rw_tableset_t *out) __attribute__((warn_unused_result));

/*
 * As rw_writes_tables, and *other tells whether any write to a legacy table is of a kind the
 * NOTIFY triggers do not report: *other is false only when every such write is INSERT, UPDATE,
 * DELETE, MERGE, COPY FROM or TRUNCATE of an unqualified or public-qualified table (they fire
 * the statement triggers wherever they sit). DDL, DO/CALL/EXECUTE, text that does not parse and
 * out of memory set it.
 */
int rw_writes_classify(const char *sql, rw_tableset_t *out, bool *other)
    __attribute__((warn_unused_result));

#endif /* PGSHIM_REWRITE_RW_WRITES_H */
