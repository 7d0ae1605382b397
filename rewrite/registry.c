/*
 * The registry of intercepted legacy functions: names, families, signatures (parameter names,
 * types and defaults exactly as in spec sections 3.1-3.10) and the names of pass-through
 * reasons. Everything here is static, immutable data generated from the X-macro tables in
 * rw.h, so lookups are safe from any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "rw_int.h"

static const char *const fn_names[RW_FN__COUNT] = {
#define RW__FN_NAME(name, sql, fam) [RW_FN_##name] = sql,
    RW_FUNCTION_MAP(RW__FN_NAME)
#undef RW__FN_NAME
};

static const rw_family_t fn_families[RW_FN__COUNT] = {
#define RW__FN_FAM(name, sql, fam) [RW_FN_##name] = RW_FAM_##fam,
    RW_FUNCTION_MAP(RW__FN_FAM)
#undef RW__FN_FAM
};

static const char *const family_names[RW_FAM__COUNT] = {
#define RW__FAM_NAME(name, text) [RW_FAM_##name] = text,
    RW_FAMILY_MAP(RW__FAM_NAME)
#undef RW__FAM_NAME
};

static const char *const reason_names[RW_REASON__COUNT] = {
#define RW__REASON_NAME(name, text) [RW_REASON_##name] = text,
    RW_REASON_MAP(RW__REASON_NAME)
#undef RW__REASON_NAME
};

/* Parameter shorthands: required, or with a constant default of the declared type. */
#define P_REQ(n, t) {.name = n, .type = t}
#define P_DEF(n, t, dt, txt) {.name = n, .type = t, .has_default = true, .default_type = dt, \
                              .default_text = txt}
#define P_DEFNULL(n, t, dt) {.name = n, .type = t, .has_default = true, .default_null = true, \
                             .default_type = dt}

/* fn_menupbt, fn_mendownbt and fn_menallbt share one signature: (p_buid bigint DEFAULT 1,
   anyelement anyelement DEFAULT 'jsonb'::text) RETURNS anyelement. */
#define MEN_SIG {                                                           \
        .nparams = 2,                                                       \
        .params = {P_DEF("p_buid", RW_T_INT8, RW_T_INT8, "1"),              \
                   P_DEF("anyelement", RW_T_ANYELEMENT, RW_T_TEXT, "jsonb")},\
        .polymorphic_result = true}

static const rw__fn_sig_t fn_sigs[RW_FN__COUNT] = {
    [RW_FN_MENUPBT] = MEN_SIG,
    [RW_FN_MENDOWNBT] = MEN_SIG,
    [RW_FN_MENALLBT] = MEN_SIG,
    [RW_FN_GET_BULIST] = {
        .nparams = 5,
        .params = {P_DEF("p_buid", RW_T_INT8, RW_T_INT8, "1"),
                   P_DEF("p_up", RW_T_BOOL, RW_T_BOOL, "true"),
                   P_DEF("p_dn", RW_T_BOOL, RW_T_BOOL, "true"),
                   P_DEF("phrase", RW_T_TEXT, RW_T_TEXT, "jsonb"),
                   P_DEFNULL("anyelement", RW_T_ANYELEMENT, RW_T_JSONB)},
        .polymorphic_result = true},
    [RW_FN_GETBULIST_BASEDON_IDNF] = {
        .nparams = 3,
        .params = {P_REQ("p_buid", RW_T_INT8),
                   P_DEF("p_cus", RW_T_BOOL, RW_T_BOOL, "true"),
                   P_DEF("p_si", RW_T_BOOL, RW_T_BOOL, "true")},
        .result_oid = RW_OID_TEXT},
    [RW_FN_GETASSETVSQUESTIONSET] = {
        .nparams = 3,
        .params = {P_REQ("_siteid", RW_T_INT8), P_REQ("_assetcode", RW_T_TEXT),
                   P_REQ("_type", RW_T_TEXT)},
        .result_oid = RW_OID_TEXT},
    [RW_FN_GETASSETDETAILS] = {
        .nparams = 2,
        .params = {P_REQ("_mdtz", RW_T_TIMESTAMPTZ), P_REQ("_siteid", RW_T_INT8)}},
    [RW_FN_GETJOBNEED] = {
        .nparams = 3,
        .params = {P_REQ("_peopleid", RW_T_INT8), P_REQ("_buid", RW_T_INT8),
                   P_REQ("_clientid", RW_T_INT8)}},
    [RW_FN_GETEXTTOURJOBNEED] = {
        .nparams = 3,
        .params = {P_REQ("_peopleid", RW_T_INT8), P_REQ("_buid", RW_T_INT8),
                   P_REQ("_clientid", RW_T_INT8)}},
    [RW_FN_GET_SCHEDULE_FOR_ADHOC] = {
        .nparams = 5,
        .params = {P_REQ("_plandatetime", RW_T_TIMESTAMPTZ), P_REQ("_buid", RW_T_INT8),
                   P_REQ("_peopleid", RW_T_INT8), P_REQ("_assetid", RW_T_INT8),
                   P_REQ("_questionsetid", RW_T_INT8)}},
    /* The capability query is a raw SQL text without parameters. */
    [RW_FN_WEB_CAPS_FOR_CLIENT] = {.nparams = 0},
};

const char *rw_fn_name(rw_fn_t fn)
{
    return (unsigned)fn < RW_FN__COUNT ? fn_names[fn] : "?";
}

rw_family_t rw_fn_family(rw_fn_t fn)
{
    return (unsigned)fn < RW_FN__COUNT ? fn_families[fn] : RW_FAM__COUNT;
}

const char *rw_family_name(rw_family_t fam)
{
    return (unsigned)fam < RW_FAM__COUNT ? family_names[fam] : "?";
}

int rw_fn_lookup(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < RW_FN__COUNT; i++)
        if (strcmp(fn_names[i], name) == 0)
            return i;
    return -1;
}

int rw_family_lookup(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < RW_FAM__COUNT; i++)
        if (strcmp(family_names[i], name) == 0)
            return i;
    return -1;
}

const char *rw_reason_name(rw_reason_t r)
{
    return (unsigned)r < RW_REASON__COUNT ? reason_names[r] : "?";
}

const rw__fn_sig_t *rw__fn_sig(rw_fn_t fn)
{
    return (unsigned)fn < RW_FN__COUNT ? &fn_sigs[fn] : NULL;
}

int rw_fn_nparams(rw_fn_t fn)
{
    return (unsigned)fn < RW_FN__COUNT ? fn_sigs[fn].nparams : 0;
}

const rw_param_info_t *rw_fn_param(rw_fn_t fn, int i)
{
    if ((unsigned)fn >= RW_FN__COUNT || i < 0 || i >= fn_sigs[fn].nparams)
        return NULL;
    return &fn_sigs[fn].params[i];
}

uint32_t rw_type_oid(rw_type_t t)
{
    switch (t) {
    case RW_T_INT8: return RW_OID_INT8;
    case RW_T_BOOL: return RW_OID_BOOL;
    case RW_T_TEXT: return RW_OID_TEXT;
    case RW_T_TIMESTAMPTZ: return RW_OID_TIMESTAMPTZ;
    case RW_T_INT8_ARRAY: return RW_OID_INT8_ARRAY;
    case RW_T_JSONB: return RW_OID_JSONB;
    case RW_T_UNKNOWN:
    case RW_T_ANYELEMENT:
        break;
    }
    return 0;
}

char *rw__strndup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void rw_call_clear(rw_call_t *call)
{
    if (call == NULL)
        return;
    for (int i = 0; i < call->nargs && i < RW_MAX_ARGS; i++) {
        free(call->args[i].text);
        call->args[i].text = NULL;
    }
    call->nargs = 0;
}
