/*
 * rw internals shared by the files of the rewrite module (registry, recognition, native
 * functions). Nothing outside rewrite/ and its unit tests includes this header.
 *
 * Invariants: the registry tables are static and immutable; a template's call never owns
 * argument texts for $n slots (text NULL, param > 0) and owns every constant's text.
 */
#ifndef PGSHIM_REWRITE_RW_INT_H
#define PGSHIM_REWRITE_RW_INT_H

#include "rw.h"

/* PostgreSQL type OIDs rw deals with. */
#define RW_OID_UNSPECIFIED 0u
#define RW_OID_BOOL 16u
#define RW_OID_INT8 20u
#define RW_OID_INT2 21u
#define RW_OID_INT4 23u
#define RW_OID_TEXT 25u
#define RW_OID_VARCHAR 1043u
#define RW_OID_TIMESTAMPTZ 1184u
#define RW_OID_INT8_ARRAY 1016u
#define RW_OID_JSONB 3802u

/* Full signature of a registered function. */
typedef struct rw__fn_sig {
    int nparams;
    rw_param_info_t params[RW_MAX_ARGS];
    uint32_t result_oid;      /* fixed scalar result type; 0 for TABLE results or polymorphic */
    bool polymorphic_result;  /* result type follows the anyelement argument */
} rw__fn_sig_t;

const rw__fn_sig_t *rw__fn_sig(rw_fn_t fn);

/* A prepared statement that is an accepted call (see rw_template_from_parse). */
struct rw_template {
    rw_call_t call;           /* constants owned; $n args have param = n, text NULL */
    uint16_t nparams;         /* parameters the statement has (max of declared and referenced) */
    uint32_t *param_oids;     /* nparams resolved OIDs (what ParameterDescription reports) */
};

/* JSON reader for libpg_query's parse trees (recognize_json.c). */
typedef enum rw__jkind {
    RW_J_NULL, RW_J_FALSE, RW_J_TRUE, RW_J_NUM, RW_J_STR, RW_J_ARR, RW_J_OBJ
} rw__jkind_t;

typedef struct rw__jv {
    rw__jkind_t kind;
    const char *key;            /* raw member name when the value sits in an object */
    uint32_t keylen;
    const char *s;              /* RW_J_STR: contents without quotes, escapes unresolved;
                                   RW_J_NUM: the number's text */
    uint32_t slen;
    struct rw__jv *child;       /* first member or element */
    struct rw__jv *next;        /* next sibling */
    uint32_t n;                 /* members or elements */
} rw__jv_t;

typedef struct rw__jdoc {
    rw__jv_t *nodes;
    size_t used, cap;
} rw__jdoc_t;

/* Parses text[0..len) into doc (free with rw__json_free even on failure). Returns the root, or
   NULL when malformed, nested too deeply, or out of memory (*nomem set). Views into text. */
const rw__jv_t *rw__json_parse(rw__jdoc_t *doc, const char *text, size_t len, bool *nomem);
void rw__json_free(rw__jdoc_t *doc);
/* Member of an object by exact key, or NULL. */
const rw__jv_t *rw__json_get(const rw__jv_t *obj, const char *key);
/* True when obj is an object whose every key is among keys[0..n). */
bool rw__json_keys_within(const rw__jv_t *obj, const char *const *keys, size_t n);
/* True when v is a string equal to s as written (no escapes in s). */
bool rw__json_str_eq(const rw__jv_t *v, const char *s);
/* Unescaped heap copy of a string value; NULL when v is not a string, holds an escape
   rejected here (\u0000, lone surrogates), or on allocation failure (*nomem set). */
char *rw__json_str_dup(const rw__jv_t *v, bool *nomem);
/* For a parse-tree node {"Type": {...}} of the given type, the inner object; else NULL. */
const rw__jv_t *rw__json_node(const rw__jv_t *v, const char *type);
bool rw__json_is_empty_obj(const rw__jv_t *v);
/* Integer value of a number without fraction or exponent. */
bool rw__json_int(const rw__jv_t *v, int64_t *out);

/* Duplicates text of length len into a fresh NUL-terminated heap string; NULL on failure. */
char *rw__strndup(const char *s, size_t len);

#endif /* PGSHIM_REWRITE_RW_INT_H */
