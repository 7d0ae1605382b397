/*
 * rw: recognising calls to the legacy PL/pgSQL functions and answering them natively.
 *
 * The module has three parts, all free of sockets, libuv and proxy/ headers:
 *  1. the registry: the fixed set of intercepted functions, their families, argument types,
 *     defaults and result shapes (one X-macro table);
 *  2. recognition: a cheap byte-level pre-filter over SQL text, then libpg_query to confirm that
 *     a statement is exactly one call in an accepted shape and to extract typed arguments
 *     (constants from a simple Query, or $n slots of a Parse later filled from a Bind);
 *  3. native execution: each call becomes a small state machine that asks its driver to run one
 *     or more SQL statements (text format results) on a connection to the tenant database whose
 *     session settings are rw_native_settings, is fed each PGresult, and finally appends the
 *     messages PostgreSQL would have sent to a pgw_buf_t. The driver (proxy/ on its libuv loop,
 *     or a blocking test harness) owns the connections; rw never does I/O.
 *
 * Invariants: a recognised call is answered natively only if rw_exec reaches RW_EXEC_DONE; any
 * other outcome means "pass the original statement through" and carries a reason. rw never
 * produces an error PostgreSQL would not have produced for the same call.
 */
#ifndef PGSHIM_REWRITE_RW_H
#define PGSHIM_REWRITE_RW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgw.h"

#define RW_MUST_USE __attribute__((warn_unused_result))

/* ---------------------------------------------------------------------------------------------
 * Registry: (enum suffix, SQL name, family). The capability query is not a function; it is
 * recognised by libpg_query fingerprint of a configured SQL text.
 * ------------------------------------------------------------------------------------------- */
#define RW_FAMILY_MAP(XX) \
    XX(BU, "bu")          \
    XX(ASSETS, "assets")  \
    XX(JOBS, "jobs")      \
    XX(CAPABILITIES, "capabilities")

typedef enum rw_family {
#define RW__FAM_ENUM(name, text) RW_FAM_##name,
    RW_FAMILY_MAP(RW__FAM_ENUM)
#undef RW__FAM_ENUM
    RW_FAM__COUNT
} rw_family_t;

#define RW_FUNCTION_MAP(XX)                                           \
    XX(MENUPBT, "fn_menupbt", BU)                                     \
    XX(MENDOWNBT, "fn_mendownbt", BU)                                 \
    XX(MENALLBT, "fn_menallbt", BU)                                   \
    XX(GET_BULIST, "fn_get_bulist", BU)                               \
    XX(GETBULIST_BASEDON_IDNF, "fn_getbulist_basedon_idnf", BU)       \
    XX(GETASSETVSQUESTIONSET, "fn_getassetvsquestionset", ASSETS)     \
    XX(GETASSETDETAILS, "fn_getassetdetails", ASSETS)                 \
    XX(GETJOBNEED, "fun_getjobneed", JOBS)                            \
    XX(GETEXTTOURJOBNEED, "fun_getexttourjobneed", JOBS)              \
    XX(GET_SCHEDULE_FOR_ADHOC, "fn_get_schedule_for_adhoc", JOBS)     \
    XX(WEB_CAPS_FOR_CLIENT, "get_web_caps_for_client", CAPABILITIES)

typedef enum rw_fn {
#define RW__FN_ENUM(name, sql, fam) RW_FN_##name,
    RW_FUNCTION_MAP(RW__FN_ENUM)
#undef RW__FN_ENUM
    RW_FN__COUNT
} rw_fn_t;

const char *rw_fn_name(rw_fn_t fn);
rw_family_t rw_fn_family(rw_fn_t fn);
const char *rw_family_name(rw_family_t fam);
/* Lookups by exact lower-case name; return -1 when unknown. */
int rw_fn_lookup(const char *name);
int rw_family_lookup(const char *name);

/* ---------------------------------------------------------------------------------------------
 * Recognised calls
 * ------------------------------------------------------------------------------------------- */
typedef enum rw_type {
    RW_T_UNKNOWN = 0,    /* untyped literal or NULL, resolved by the function's signature */
    RW_T_INT8,
    RW_T_BOOL,
    RW_T_TEXT,
    RW_T_TIMESTAMPTZ,
    RW_T_INT8_ARRAY,     /* only as fn_get_bulist's type-fixing 5th argument (a NULL) */
    RW_T_JSONB,
    RW_T_ANYELEMENT,     /* only in signatures (rw_fn_param): a polymorphic parameter; a
                            resolved rw_arg_t never carries it */
} rw_type_t;

/* PostgreSQL type OID of a concrete rw_type_t (20, 16, 25, 1184, 1016, 3802); 0 otherwise. */
uint32_t rw_type_oid(rw_type_t t);

/* Signature of a registered function as in the spec: parameter names, types and defaults.
   Static data, valid for the life of the process. */
typedef struct rw_param_info {
    const char *name;          /* SQL parameter name, e.g. "p_buid", "anyelement" */
    rw_type_t type;            /* declared type (RW_T_ANYELEMENT for polymorphic ones) */
    bool has_default;
    bool default_null;         /* default is a NULL (fn_get_bulist's NULL::jsonb) */
    rw_type_t default_type;    /* type of the default expression (e.g. RW_T_TEXT for
                                  'jsonb'::text, RW_T_JSONB for NULL::jsonb) */
    const char *default_text;  /* canonical text of a non-NULL default, e.g. "1", "true" */
} rw_param_info_t;
int rw_fn_nparams(rw_fn_t fn);
/* i in [0, rw_fn_nparams(fn)); NULL when out of range. */
const rw_param_info_t *rw_fn_param(rw_fn_t fn, int i);

#define RW_MAX_ARGS 8
#define RW_NAMEDATALEN 64

typedef struct rw_arg {
    rw_type_t type;      /* after resolution against the signature */
    bool is_null;
    int param;           /* 1-based $n it came from (extended protocol), 0 for a constant */
    /* Value in PostgreSQL's canonical text input form (NUL-terminated, owned by the call), e.g.
       "-1", "true", "array", "2024-01-02 10:30:00+05:30". NULL when is_null. */
    char *text;
} rw_arg_t;

typedef enum rw_shape {
    RW_SHAPE_FROM = 1,   /* select * from f(args) */
    RW_SHAPE_TARGET,     /* select f(args) [as alias] */
    RW_SHAPE_QUERY,      /* the capability query, recognised by its text (no arguments) */
} rw_shape_t;

typedef struct rw_call {
    rw_fn_t fn;
    rw_shape_t shape;
    char colname[RW_NAMEDATALEN];   /* result column name for RW_SHAPE_TARGET (alias or fn name)
                                       and for scalar functions under RW_SHAPE_FROM */
    uint32_t result_oid;            /* result type of a scalar or SETOF-scalar function: the
                                       resolved type of a polymorphic one (fn_men*bt 25,
                                       fn_get_bulist 1016/25/3802), 25 for the text functions,
                                       0 for TABLE functions and the capability query */
    int nargs;                      /* after filling defaults */
    rw_arg_t args[RW_MAX_ARGS];
} rw_call_t;

/* Frees argument texts; the struct can be reused afterwards. */
void rw_call_clear(rw_call_t *call);

/* Cheap pre-filter: false when the SQL cannot contain a registered call (no registered name
   appears, case-insensitively, and no distinctive token of the configured capability query).
   Pass-through traffic pays only this. A false positive only costs a parse; a false negative
   is impossible for any statement rw_recognize_query/rw_template_from_parse would accept. */
bool rw_prefilter(const char *sql, size_t len);

/* Why a statement was not recognised or not answered natively; counted per reason. */
#define RW_REASON_MAP(XX)                                                   \
    XX(NONE, "none")                                                        \
    XX(NO_NAME, "no registered name")                                       \
    XX(PARSE_ERROR, "parse error")                                          \
    XX(NOT_ONE_STATEMENT, "not exactly one statement")                      \
    XX(SHAPE, "unsupported call shape")                                     \
    XX(ARGS, "unsupported arguments")                                       \
    XX(PARAM_TYPE, "unsupported parameter type or format")                  \
    XX(RESULT_FORMAT, "binary result format requested")                     \
    XX(TRANSACTION, "inside a transaction block")                           \
    XX(SETTINGS, "session settings differ from the native path")            \
    XX(BATCH, "extended-protocol batch cannot be answered in order")        \
    XX(MODE_OFF, "interception off")                                        \
    XX(NATIVE_QUERY, "native query failed")                                 \
    XX(NATIVE_VALUE, "unexpected value in native data")                     \
    XX(NOMEM, "out of memory")                                              \
    XX(UNSUPPORTED, "case not implemented natively")                      \
    XX(LEGACY_ERROR, "the legacy function raises an error")                \
    XX(NO_NOTICE_TEMPLATE, "fn_get_bulist NOTICE not learnt from the server")

typedef enum rw_reason {
#define RW__REASON_ENUM(name, text) RW_REASON_##name,
    RW_REASON_MAP(RW__REASON_ENUM)
#undef RW__REASON_ENUM
    RW_REASON__COUNT
} rw_reason_t;
const char *rw_reason_name(rw_reason_t r);

/* Simple protocol: recognises one Query's SQL (NUL-terminated). Returns 1 and fills *call
   (caller clears it) when it is exactly one accepted call with constant arguments; 0 and sets
   *reason otherwise; negative on allocation failure. */
int rw_recognize_query(const char *sql, rw_call_t *call, rw_reason_t *reason) RW_MUST_USE;

/* Extended protocol: a Parse whose SQL is an accepted call with constants and $n slots becomes
   a template (heap-allocated, owned by the caller, freed with rw_template_free); NULL with
   *reason when not accepted. param_oids are the Parse's declared types (0 = unspecified). */
typedef struct rw_template rw_template_t;
rw_template_t *rw_template_from_parse(const char *sql, const uint32_t *param_oids,
                                      uint16_t nparams, rw_reason_t *reason);
void rw_template_free(rw_template_t *t);
/* The call as far as the Parse fixes it: fn, shape, colname, result_oid, nargs and every
   constant or default argument; arguments from $n have param = n and text NULL (their type is
   already resolved). Borrowed; valid until rw_template_free. */
const rw_call_t *rw_template_call(const rw_template_t *t);
/* Number of parameters the statement has and the type OID each resolves to (what PostgreSQL's
   ParameterDescription would report). */
uint16_t rw_template_nparams(const rw_template_t *t);
uint32_t rw_template_param_oid(const rw_template_t *t, uint16_t i);
/* Fills *call from the template and a decoded Bind (text and binary parameter formats for the
   types in rw_type_t). Returns 1 on success, 0 with *reason when the values cannot be handled
   natively (then the caller passes through), negative on allocation failure. */
int rw_template_bind(const rw_template_t *t, const pgw_bind_t *bind, rw_call_t *call,
                     rw_reason_t *reason) RW_MUST_USE;

/* Capability query: registers the exact SQL text the application sends (its libpg_query
   fingerprint is compared, then the parse trees without token locations, because the
   fingerprint ignores constant values and target-list aliases). sql NULL clears it. Returns 0,
   or negative when the text does not parse, is not exactly one statement, or on allocation
   failure (the previous registration is kept). Not thread-safe: call at start and reload. */
int rw_set_caps_query(const char *sql) RW_MUST_USE;

/* ---------------------------------------------------------------------------------------------
 * Native execution
 * ------------------------------------------------------------------------------------------- */

/* RowDescription PostgreSQL sends for this call (column names, type OIDs and modifiers, table
   OID 0, attnum 0, text format), computed from the call alone without running it. 0 or
   negative on allocation failure. For a template (Describe of a prepared statement), the same
   from the template's shape and constant arguments. */
int rw_describe_call(const rw_call_t *call, pgw_buf_t *out) RW_MUST_USE;
int rw_template_describe(const rw_template_t *t, pgw_buf_t *out) RW_MUST_USE;

/* Session settings the native connections use and a client session must match (eligibility
   rule 3 of ARCHITECTURE.md): name/value pairs, NULL-terminated. */
extern const char *const rw_native_settings[][2];

typedef enum rw_exec_status {
    RW_EXEC_QUERY = 1,   /* run rw_exec_sql() with rw_exec_params() and feed the result */
    RW_EXEC_DONE,        /* result messages are in the output buffer */
    RW_EXEC_FALLBACK,    /* pass the original call through; rw_exec_reason() says why */
} rw_exec_status_t;

typedef struct rw_exec rw_exec_t;

/* Starts native execution of a call (the call is copied). Returns NULL on allocation failure. */
rw_exec_t *rw_exec_new(const rw_call_t *call);
void rw_exec_free(rw_exec_t *ex);
/* First step: what to do. */
rw_exec_status_t rw_exec_start(rw_exec_t *ex);
/* SQL text and text-format parameters of the query requested by RW_EXEC_QUERY; valid until
   the next rw_exec_feed. */
const char *rw_exec_sql(const rw_exec_t *ex);
int rw_exec_nparams(const rw_exec_t *ex);
const char *const *rw_exec_params(const rw_exec_t *ex);
/* Feeds the result of the requested query (res is borrowed; NULL means the query failed to
   run). Returns the next step. */
rw_exec_status_t rw_exec_feed(rw_exec_t *ex, const PGresult *res);
rw_reason_t rw_exec_reason(const rw_exec_t *ex);

/* After RW_EXEC_DONE: the messages PostgreSQL would send for the call, split so the proxy can
   serve both protocols. `describe` holds the RowDescription (simple Query, Describe of a
   statement or portal); `body` holds NoticeResponses, DataRows and the CommandComplete, or the
   NoticeResponses and the ErrorResponse for a call that fails in PostgreSQL too. ReadyForQuery
   is never included. Views valid until rw_exec_free. */
const pgw_buf_t *rw_exec_describe(const rw_exec_t *ex);
const pgw_buf_t *rw_exec_body(const rw_exec_t *ex);
/* True when the body ends in an ErrorResponse. Such an answer is what PostgreSQL would send
   except for the error's context and source-location fields, which the native side cannot know:
   the proxy passes these calls through to PostgreSQL (RW_REASON_LEGACY_ERROR) and uses the
   native answer only to compare in shadow mode. */
bool rw_exec_failed(const rw_exec_t *ex);

/* ---------------------------------------------------------------------------------------------
 * Per-database facts the native path needs. The geography type is PostGIS's (an OID
 * assigned when the extension was created, so it differs per database) or a domain standing in
 * for it (then PostgreSQL reports the domain's base type in RowDescription). The locale decides
 * whether text sorting and lower() can be done in C.
 * ------------------------------------------------------------------------------------------- */
typedef struct rw_dbinfo {
    bool valid;
    uint32_t geography_oid;   /* 0 when no type named geography is visible */
    int16_t geography_len;
    bool collate_c;           /* default collation sorts like memcmp (C, POSIX, C.UTF-8, libc) */
    bool ctype_c;             /* lower() on the default collation folds ASCII letters only */
    /* The fields PostgreSQL adds to fn_get_bulist's RAISE NOTICE besides its message: localized
       severity (S), context (W) and source location (F, L, R). They depend on the function's
       definition in this database and on the server's build, so they are learnt from the server
       (rw_exec_notice during the probe rw_bulist_probe_sql) and never written down here. An
       empty field is one the server did not send. */
    bool bulist_notice_learnt;   /* the probe ran and sent the NOTICE fn_get_bulist raises */
    char bulist_notice_sev[32];
    char bulist_notice_where[256];
    char bulist_notice_file[64];
    char bulist_notice_line[16];
    char bulist_notice_routine[64];
} rw_dbinfo_t;

/* One NoticeResponse a native query raised, as the driver's libpq notice receiver sees it
   (PQresultErrorField; NULL for a field the server did not send). */
typedef struct rw_notice {
    const char *severity, *severity_nl, *sqlstate, *message;
    const char *where, *file, *line, *routine;
} rw_notice_t;
/* The fields of a notice a libpq notice receiver got (views into res). */
rw_notice_t rw_notice_from_result(const PGresult *res);
/* The driver hands every notice raised while an exec's query runs to that exec (before feeding
   the query's result). Only the fn_get_bulist probe expects one; others are ignored. */
void rw_exec_notice(rw_exec_t *ex, const rw_notice_t *n);
/* Calls fn_get_bulist with a NULL phrase (no data read, zero rows) to learn its NOTICE fields.
   fn_get_bulist runs it once per database before its first native answer, after rw_dbinfo_sql. */
extern const char rw_bulist_probe_sql[];

/* SQL that fetches the facts (no parameters, one row); parse its result with rw_dbinfo_parse. */
extern const char rw_dbinfo_sql[];
/* Returns 0 and fills *out from a result of rw_dbinfo_sql, negative when it is not usable. */
int rw_dbinfo_parse(const PGresult *res, rw_dbinfo_t *out);
/* Driver cache: hand the facts of this database to an exec before rw_exec_start (skips one round
   trip), and read them back after an exec learnt them (valid once it asked for them). */
void rw_exec_set_dbinfo(rw_exec_t *ex, const rw_dbinfo_t *info);
bool rw_exec_get_dbinfo(const rw_exec_t *ex, rw_dbinfo_t *out);
/* Optional in-memory business-unit tree of one database (rewrite/functions/butree.c). Built by
   the driver from the result of rw_butree_sql (NULL on failure), shared read-only by the execs of
   that database, dropped by the driver when a write to bt or typeassist commits. With a tree set,
   the BU functions run no query of their own (fn_get_bulist still needs rw_dbinfo_t). The tree
   must stay alive until every exec it was given to is freed. */
typedef struct rw_butree rw_butree_t;
extern const char rw_butree_sql[];
rw_butree_t *rw_butree_build(const PGresult *res);
void rw_butree_free(rw_butree_t *t);
size_t rw_butree_size(const rw_butree_t *t);
void rw_exec_set_butree(rw_exec_t *ex, const rw_butree_t *t);
/* Two more optional in-memory copies of small, hot data, built, shared and kept alive the same
   way as the BU tree (the driver invalidates them when the named table is written):
   - the capability query's whole answer (capability; functions/capabilities.c): with it set the
     query runs no statement;
   - the group memberships (pgbelonging; functions/jobs.c): with it set the job functions skip
     their first round trip (the person's group set). */
typedef struct rw_capsmemo rw_capsmemo_t;
extern const char rw_capsmemo_sql[];
rw_capsmemo_t *rw_capsmemo_build(const PGresult *res);
void rw_capsmemo_free(rw_capsmemo_t *m);
size_t rw_capsmemo_size(const rw_capsmemo_t *m);
void rw_exec_set_capsmemo(rw_exec_t *ex, const rw_capsmemo_t *m);
typedef struct rw_groups rw_groups_t;
extern const char rw_groups_sql[];
rw_groups_t *rw_groups_build(const PGresult *res);
void rw_groups_free(rw_groups_t *g);
size_t rw_groups_size(const rw_groups_t *g);
void rw_exec_set_groups(rw_exec_t *ex, const rw_groups_t *g);

/* rw_describe_call / rw_template_describe with the database's facts, so that functions returning
   geography can be described (the variants without them return -3 for those). */
int rw_describe_call_db(const rw_call_t *call, const rw_dbinfo_t *db, pgw_buf_t *out);
int rw_template_describe_db(const rw_template_t *t, const rw_dbinfo_t *db, pgw_buf_t *out);
/* Stable statement name of the query requested by RW_EXEC_QUERY ("rw_" + 16 hex digits of a hash
   of the SQL text; the same text always gives the same name). The set of texts is small and fixed,
   so a driver can PQprepare/PQsendPrepare each once per connection and then run it with
   PQexecPrepared/PQsendQueryPrepared, saving parse and plan time on every call. NULL when the
   query should run as an unnamed statement (PQsendQueryParams) because a cached generic plan
   would be much worse than a per-call custom plan (the job queries: their best index depends on
   the argument values). Valid until the next rw_exec_feed. */
const char *rw_exec_stmt_name(const rw_exec_t *ex);

#endif /* PGSHIM_REWRITE_RW_H */
