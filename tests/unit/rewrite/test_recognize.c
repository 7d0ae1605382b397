/*
 * Unit tests of rewrite/ recognition: the registry, the pre-filter, rw_recognize_query on
 * every caller SQL line of the spec as psycopg2 and psycopg 3 render them (spec 1.7) plus
 * variations (case, comments, whitespace, semicolons, E'' strings, CAST, typed NULLs,
 * defaults), the statements that must pass through with their reasons, extended-protocol
 * templates with the Parse/Bind shapes psycopg 3.1 really sends (captured with libpq tracing
 * against PostgreSQL 15), and the capability query matched by fingerprint.
 *
 * Expected argument lists are written as "T=value|T=value", T one of i (int8), b (bool),
 * t (text), z (timestamptz), a (bigint[]), j (jsonb); value "~" means NULL.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rw.h"
#include "rw_int.h"

static const char *type_letter(rw_type_t t)
{
    switch (t) {
    case RW_T_INT8: return "i";
    case RW_T_BOOL: return "b";
    case RW_T_TEXT: return "t";
    case RW_T_TIMESTAMPTZ: return "z";
    case RW_T_INT8_ARRAY: return "a";
    case RW_T_JSONB: return "j";
    default: return "?";
    }
}

/* Renders a call's arguments in the spec format above. */
static void render_args(const rw_call_t *c, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < c->nargs; i++) {
        o += (size_t)snprintf(out + o, cap - o, "%s%s=%s", i ? "|" : "", type_letter(c->args[i].type),
                              c->args[i].is_null ? "~" : c->args[i].text);
        if (o >= cap)
            break;
    }
}

static void expect_call(const char *sql, rw_fn_t fn, rw_shape_t shape, const char *col,
                        uint32_t result_oid, const char *args)
{
    rw_call_t call;
    rw_reason_t reason = RW_REASON__COUNT;
    int rc = rw_recognize_query(sql, &call, &reason);
    cr_assert_eq(rc, 1, "not recognised (%s): %s", rw_reason_name(reason), sql);
    cr_assert_eq(reason, RW_REASON_NONE);
    cr_expect_eq(call.fn, fn, "fn %s for %s", rw_fn_name(call.fn), sql);
    cr_expect_eq(call.shape, shape, "shape %d for %s", call.shape, sql);
    cr_expect_str_eq(call.colname, col, "colname '%s' for %s", call.colname, sql);
    cr_expect_eq(call.result_oid, result_oid, "result oid %u for %s", call.result_oid, sql);
    char got[512];
    render_args(&call, got, sizeof got);
    cr_expect_str_eq(got, args, "args '%s' for %s", got, sql);
    for (int i = 0; i < call.nargs; i++)
        cr_expect_eq(call.args[i].param, 0);
    rw_call_clear(&call);
}

static void expect_reject(const char *sql, rw_reason_t want)
{
    rw_call_t call;
    rw_reason_t reason = RW_REASON_NONE;
    int rc = rw_recognize_query(sql, &call, &reason);
    cr_expect_eq(rc, 0, "recognised but should not be: %s", sql);
    cr_expect_eq(reason, want, "reason '%s', want '%s': %s", rw_reason_name(reason),
                 rw_reason_name(want), sql);
    if (rc == 1)
        rw_call_clear(&call);
}

#define FN(x) RW_FN_##x
#define FROM RW_SHAPE_FROM
#define TARGET RW_SHAPE_TARGET

/* ---------------------------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------------------------- */

Test(registry, names_families_reasons)
{
    cr_expect_eq(rw_fn_lookup("fun_getjobneed"), RW_FN_GETJOBNEED);
    cr_expect_eq(rw_fn_lookup("fn_getbulist_basedon_idnf"), RW_FN_GETBULIST_BASEDON_IDNF);
    cr_expect_eq(rw_fn_lookup("FUN_GETJOBNEED"), -1);
    cr_expect_eq(rw_fn_lookup("get_schedule_for_adhoc"), -1);
    cr_expect_eq(rw_family_lookup("jobs"), RW_FAM_JOBS);
    cr_expect_eq(rw_family_lookup("nope"), -1);
    cr_expect_eq(rw_fn_family(RW_FN_MENALLBT), RW_FAM_BU);
    cr_expect_eq(rw_fn_family(RW_FN_GETASSETDETAILS), RW_FAM_ASSETS);
    cr_expect_eq(rw_fn_family(RW_FN_WEB_CAPS_FOR_CLIENT), RW_FAM_CAPABILITIES);
    cr_expect_str_eq(rw_family_name(RW_FAM_CAPABILITIES), "capabilities");
    for (int r = 0; r < RW_REASON__COUNT; r++)
        cr_expect_neq(strcmp(rw_reason_name((rw_reason_t)r), "?"), 0);
    cr_expect_str_eq(rw_reason_name(RW_REASON_SHAPE), "unsupported call shape");
}

Test(registry, signatures)
{
    cr_expect_eq(rw_fn_nparams(RW_FN_GET_BULIST), 5);
    const rw_param_info_t *p = rw_fn_param(RW_FN_GET_BULIST, 4);
    cr_assert_not_null(p);
    cr_expect_str_eq(p->name, "anyelement");
    cr_expect_eq(p->type, RW_T_ANYELEMENT);
    cr_expect(p->has_default && p->default_null);
    cr_expect_eq(p->default_type, RW_T_JSONB);
    p = rw_fn_param(RW_FN_MENUPBT, 1);
    cr_expect_str_eq(p->default_text, "jsonb");
    cr_expect_eq(p->default_type, RW_T_TEXT);
    p = rw_fn_param(RW_FN_GETASSETDETAILS, 0);
    cr_expect_str_eq(p->name, "_mdtz");
    cr_expect_eq(p->type, RW_T_TIMESTAMPTZ);
    cr_expect(!p->has_default);
    cr_expect_null(rw_fn_param(RW_FN_GETASSETDETAILS, 2));
    cr_expect_eq(rw_fn_nparams(RW_FN_GET_SCHEDULE_FOR_ADHOC), 5);
    cr_expect_eq(rw_fn_nparams(RW_FN_WEB_CAPS_FOR_CLIENT), 0);
    cr_expect_eq(rw_type_oid(RW_T_INT8_ARRAY), 1016u);
    cr_expect_eq(rw_type_oid(RW_T_JSONB), 3802u);
    cr_expect_eq(rw_type_oid(RW_T_TIMESTAMPTZ), 1184u);
}

/* ---------------------------------------------------------------------------------------------
 * Pre-filter
 * ------------------------------------------------------------------------------------------- */

static bool pf(const char *s)
{
    return rw_prefilter(s, strlen(s));
}

Test(prefilter, names)
{
    cr_expect(pf("select * from fun_getjobneed(1,2,3)"));
    cr_expect(pf("SELECT FN_MENUPBT(6)"));
    cr_expect(pf("select Fn_Get_Schedule_For_Adhoc"));
    cr_expect(pf("fn_getbulist_basedon_idnf"));
    cr_expect(pf("x fun_GetExtTourJobNeed"));
    cr_expect(pf("select 'fn_menallbt'"));           /* false positives are allowed */
    cr_expect(!pf("select * from auth_user where id = 1"));
    cr_expect(!pf("select fn_menu(1)"));
    cr_expect(!pf("fn_"));
    cr_expect(!pf("fun_getjob"));
    cr_expect(!pf(""));
    cr_expect(!rw_prefilter("fn_menupbt", 9));       /* respects the length */
}

Test(prefilter, cost)
{
    /* 200 bytes of Django-style SQL with many underscores and no registered name. */
    const char *q =
        "SELECT \"auth_user\".\"id\", \"auth_user\".\"password\", \"auth_user\".\"last_login\", "
        "\"auth_user\".\"is_superuser\", \"auth_user\".\"username\" FROM \"auth_user\" WHERE "
        "\"auth_user\".\"first_name\" = 'fun' LIMIT 21";
    size_t len = strlen(q);
    cr_assert(!rw_prefilter(q, len));
    const int iters = 2000000;
    struct timespec a, b;
    int hits = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < iters; i++)
        hits += rw_prefilter(q, len);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / iters;
    cr_expect_eq(hits, 0);
    const char *plain = "select aid, bid, abalance, filler from pgbench_accounts where aid = 4711";
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < iters; i++)
        hits += rw_prefilter(plain, strlen(plain));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns2 = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / iters;
    fprintf(stderr, "rw_prefilter: %.1f ns per call on a %zu-byte non-matching query "
            "(%.1f ns on the %zu-byte pgbench -S query)\n", ns, len, ns2, strlen(plain));

    /* Full recognition of a matching call (parse, walk, resolve), for scale. */
    const char *call_sql = "select * from fn_getassetdetails('2024-01-02 10:30:00+05:30'::timestamptz, 3)";
    const int citers = 20000;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < citers; i++) {
        rw_call_t c;
        rw_reason_t r;
        if (rw_recognize_query(call_sql, &c, &r) == 1)
            rw_call_clear(&c);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double us = ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / citers;
    fprintf(stderr, "rw_recognize_query: %.2f us per recognised call\n", us);
}

/* ---------------------------------------------------------------------------------------------
 * Caller SQL of the spec, as psycopg2 and psycopg 3 (client-side binding) render it
 * ------------------------------------------------------------------------------------------- */

Test(callers, bu_get_all_bu_of_client)
{
    expect_call("select fn_get_bulist(5, false, true, 'array'::text, null::bigint[]) as id;",
                FN(GET_BULIST), TARGET, "id", 1016, "i=5|b=false|b=true|t=array|a=~");
    expect_call("select fn_get_bulist(5, false, true, 'jsonb'::text, null::jsonb) as id;",
                FN(GET_BULIST), TARGET, "id", 3802, "i=5|b=false|b=true|t=jsonb|j=~");
    expect_call("select fn_get_bulist(5, false, true, 'text'::text, null::jsonb) as id;",
                FN(GET_BULIST), TARGET, "id", 3802, "i=5|b=false|b=true|t=text|j=~");
}

Test(callers, bu_get_whole_tree)
{
    expect_call("select fn_get_bulist(2, true, true, 'array'::text, null::bigint[]) as id;",
                FN(GET_BULIST), TARGET, "id", 1016, "i=2|b=true|b=true|t=array|a=~");
}

Test(callers, bu_load_parent_choices)
{
    /* psycopg2 and psycopg 3 ClientCursor: a GET string is quoted, -1 has a leading space. */
    expect_call("select fn_get_bulist('5', true, true, 'array'::text, null::bigint[]) as buids",
                FN(GET_BULIST), TARGET, "buids", 1016, "i=5|b=true|b=true|t=array|a=~");
    expect_call("select fn_get_bulist( -1, true, true, 'array'::text, null::bigint[]) as buids",
                FN(GET_BULIST), TARGET, "buids", 1016, "i=-1|b=true|b=true|t=array|a=~");
    expect_call("select fn_get_bulist(12, true, true, 'array'::text, null::bigint[]) as buids",
                FN(GET_BULIST), TARGET, "buids", 1016, "i=12|b=true|b=true|t=array|a=~");
}

Test(callers, bu_siteslist_call)
{
    expect_call("select fn_get_bulist(2, true, true, 'Text', null::text)", FN(GET_BULIST),
                TARGET, "fn_get_bulist", 25, "i=2|b=true|b=true|t=Text|t=~");
    expect_call("select * from fn_get_bulist(2, true, true, 'Text', null::text)", FN(GET_BULIST),
                FROM, "fn_get_bulist", 25, "i=2|b=true|b=true|t=Text|t=~");
}

Test(callers, idnf_and_qset)
{
    expect_call("SELECT fn_getbulist_basedon_idnf(1, true, true)", FN(GETBULIST_BASEDON_IDNF),
                TARGET, "fn_getbulist_basedon_idnf", 25, "i=1|b=true|b=true");
    expect_call("SELECT fn_getbulist_basedon_idnf(10, false, NULL)", FN(GETBULIST_BASEDON_IDNF),
                TARGET, "fn_getbulist_basedon_idnf", 25, "i=10|b=false|b=~");
    expect_call("SELECT fn_getassetvsquestionset(1, '1', '')", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=1|t=1|t=");
    expect_call("SELECT fn_getassetvsquestionset(3, '17', 'name')", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=3|t=17|t=name");
}

Test(callers, assetdetails)
{
    /* psycopg 3 then psycopg2 rendering of an aware datetime. */
    expect_call("select * from fn_getassetdetails('2024-01-02 10:30:00+05:30'::timestamptz, 3)",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0,
                "z=2024-01-02 10:30:00+05:30|i=3");
    expect_call("select * from fn_getassetdetails('2024-01-02T10:30:00+05:30'::timestamptz, 3)",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0,
                "z=2024-01-02T10:30:00+05:30|i=3");
    expect_call("select * from fn_getassetdetails('2024-01-02 10:30:00.123456+00:00'::timestamptz, '3')",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0,
                "z=2024-01-02 10:30:00.123456+00:00|i=3");
    /* Captured from psycopg 3.1 ClientCursor (Django 4.2's default): note the two spaces. */
    expect_call("select * from fn_getassetdetails('2024-01-02 10:30:00+05:30'::timestamptz,  -3)",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0,
                "z=2024-01-02 10:30:00+05:30|i=-3");
    expect_call("SELECT * FROM fn_getassetdetails('2024-01-02 10:30:00', 3)",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0, "z=2024-01-02 10:30:00|i=3");
}

Test(callers, jobs)
{
    expect_call("select * from fun_getjobneed(100, 3, 2)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=100|i=3|i=2");
    expect_call("SELECT * FROM fun_getjobneed(100, 3, 2)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=100|i=3|i=2");
    expect_call("select * from fun_getexttourjobneed(100, 3, 2)", FN(GETEXTTOURJOBNEED), FROM,
                "fun_getexttourjobneed", 0, "i=100|i=3|i=2");
    expect_call("select * from fun_getjobneed('100', '3', '2')", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=100|i=3|i=2");
    expect_call("select * from fn_get_schedule_for_adhoc('2024-01-02 10:30:00+00:00'::timestamptz, 3, 100, 5, 7)",
                FN(GET_SCHEDULE_FOR_ADHOC), FROM, "fn_get_schedule_for_adhoc", 0,
                "z=2024-01-02 10:30:00+00:00|i=3|i=100|i=5|i=7");
}

Test(callers, men_functions)
{
    expect_call("select * from fn_menupbt(6, 'text'::text)", FN(MENUPBT), FROM, "fn_menupbt", 25,
                "i=6|t=text");
    expect_call("select fn_menallbt(5, 'array'::text)", FN(MENALLBT), TARGET, "fn_menallbt", 25,
                "i=5|t=array");
    expect_call("select fn_mendownbt(2, 'jsonb'::text) as tree", FN(MENDOWNBT), TARGET, "tree", 25,
                "i=2|t=jsonb");
}

/* ---------------------------------------------------------------------------------------------
 * Variations
 * ------------------------------------------------------------------------------------------- */

Test(variants, defaults)
{
    expect_call("select fn_mendownbt(2)", FN(MENDOWNBT), TARGET, "fn_mendownbt", 25, "i=2|t=jsonb");
    expect_call("select fn_menupbt()", FN(MENUPBT), TARGET, "fn_menupbt", 25, "i=1|t=jsonb");
    expect_call("select fn_get_bulist()", FN(GET_BULIST), TARGET, "fn_get_bulist", 3802,
                "i=1|b=true|b=true|t=jsonb|j=~");
    expect_call("select * from fn_get_bulist(6)", FN(GET_BULIST), FROM, "fn_get_bulist", 3802,
                "i=6|b=true|b=true|t=jsonb|j=~");
    expect_call("select fn_get_bulist(6, false, false, 'ARRAY')", FN(GET_BULIST), TARGET,
                "fn_get_bulist", 3802, "i=6|b=false|b=false|t=ARRAY|j=~");
    expect_call("select fn_getbulist_basedon_idnf(10)", FN(GETBULIST_BASEDON_IDNF), TARGET,
                "fn_getbulist_basedon_idnf", 25, "i=10|b=true|b=true");
    expect_call("select fn_getbulist_basedon_idnf(10, false)", FN(GETBULIST_BASEDON_IDNF), TARGET,
                "fn_getbulist_basedon_idnf", 25, "i=10|b=false|b=true");
}

Test(variants, case_comments_whitespace)
{
    expect_call("SeLeCt * FrOm FUN_GETJOBNEED(1,2,3)", FN(GETJOBNEED), FROM, "fun_getjobneed", 0,
                "i=1|i=2|i=3");
    expect_call("/* head fun_getexttourjobneed */ select /* x */ * from -- c\n"
                "fun_getjobneed( 1 , 2 , 3 ) -- tail",
                FN(GETJOBNEED), FROM, "fun_getjobneed", 0, "i=1|i=2|i=3");
    expect_call("\n\t select\t*\nfrom\n\tfun_getjobneed(\n1,\n2,\n3\n)\n", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=1|i=2|i=3");
    expect_call("select * from fun_getjobneed(1, 2, 3) ;  \n", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=1|i=2|i=3");
    expect_call("select * from fun_getjobneed(1, 2, 3);;", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=1|i=2|i=3");
    expect_call("SELECT FN_MENUPBT(6, 'text'::TEXT) AS BUIDS", FN(MENUPBT), TARGET, "buids", 25,
                "i=6|t=text");
}

Test(variants, schema_and_alias)
{
    expect_call("select public.fn_menupbt(6, 'text'::text)", FN(MENUPBT), TARGET, "fn_menupbt", 25,
                "i=6|t=text");
    expect_call("select * from public.fun_getjobneed(1,2,3)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=1|i=2|i=3");
    expect_call("select PUBLIC.fn_getbulist_basedon_idnf(2) idnf", FN(GETBULIST_BASEDON_IDNF),
                TARGET, "idnf", 25, "i=2|b=true|b=true");
    expect_call("select fn_menupbt(6,'text'::text) as \"Mixed Case\"", FN(MENUPBT), TARGET,
                "Mixed Case", 25, "i=6|t=text");
    expect_call("select \"fn_menupbt\"(6,'text'::text)", FN(MENUPBT), TARGET, "fn_menupbt", 25,
                "i=6|t=text");
}

Test(variants, strings)
{
    expect_call("SELECT fn_getassetvsquestionset(1, E'1', E'na\\x6de')", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=1|t=1|t=name");
    expect_call("SELECT fn_getassetvsquestionset(1, E'it\\'s', 'a''b')", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=1|t=it's|t=a'b");
    expect_call("SELECT fn_getassetvsquestionset(1, E'a\\\\b', $$name$$)", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=1|t=a\\b|t=name");
    expect_call("select fn_menupbt(6, text 'array')", FN(MENUPBT), TARGET, "fn_menupbt", 25,
                "i=6|t=array");
    expect_call("SELECT fn_getassetvsquestionset(1, '5'::varchar, 'name'::text)",
                FN(GETASSETVSQUESTIONSET), TARGET, "fn_getassetvsquestionset", 25, "i=1|t=5|t=name");
    expect_call("SELECT fn_getassetvsquestionset(1, 5::text, '')", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=1|t=5|t=");
    expect_call("SELECT fn_getassetvsquestionset(1, 'caf\xc3\xa9', '')", FN(GETASSETVSQUESTIONSET),
                TARGET, "fn_getassetvsquestionset", 25, "i=1|t=caf\xc3\xa9|t=");
}

Test(variants, casts)
{
    expect_call("select * from fn_getassetdetails(CAST('2024-01-02 10:30:00+00' AS timestamp with time zone), CAST('3' AS bigint))",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0, "z=2024-01-02 10:30:00+00|i=3");
    expect_call("select fn_menupbt(6, CAST('array' AS text))", FN(MENUPBT), TARGET, "fn_menupbt",
                25, "i=6|t=array");
    expect_call("select * from fun_getjobneed(1::int, '2'::integer, 3::int8)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=1|i=2|i=3");
    expect_call("select * from fun_getjobneed(1::bigint, '-2'::int4, 3::smallint)", FN(GETJOBNEED),
                FROM, "fun_getjobneed", 0, "i=1|i=-2|i=3");
    expect_call("select * from fn_getassetdetails('2024-01-02 10:30:00+05:30'::timestamp with time zone, 3::int8)",
                FN(GETASSETDETAILS), FROM, "fn_getassetdetails", 0, "z=2024-01-02 10:30:00+05:30|i=3");
    expect_call("select fn_getbulist_basedon_idnf(2, 'yes'::boolean, 'f'::bool)",
                FN(GETBULIST_BASEDON_IDNF), TARGET, "fn_getbulist_basedon_idnf", 25,
                "i=2|b=true|b=false");
}

Test(variants, integers)
{
    expect_call("select * from fun_getjobneed( -1, -2,  -3)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=-1|i=-2|i=-3");
    expect_call("select * from fun_getjobneed(' 100 ', '+3', '007')", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=100|i=3|i=7");
    expect_call("select * from fun_getjobneed(1099511627776, -2147483648, '-9223372036854775808')",
                FN(GETJOBNEED), FROM, "fun_getjobneed", 0,
                "i=1099511627776|i=-2147483648|i=-9223372036854775808");
    expect_call("select * from fun_getjobneed(9223372036854775807, 0, -0)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=9223372036854775807|i=0|i=0");
}

Test(variants, nulls_and_bools)
{
    expect_call("select * from fun_getjobneed(null::bigint, NULL, 3)", FN(GETJOBNEED), FROM,
                "fun_getjobneed", 0, "i=~|i=~|i=3");
    expect_call("select fn_getbulist_basedon_idnf(NULL, NULL::boolean, true)",
                FN(GETBULIST_BASEDON_IDNF), TARGET, "fn_getbulist_basedon_idnf", 25, "i=~|b=~|b=true");
    expect_call("select fn_getbulist_basedon_idnf(' 2 ', ' TRUE ', 'of')",
                FN(GETBULIST_BASEDON_IDNF), TARGET, "fn_getbulist_basedon_idnf", 25,
                "i=2|b=true|b=false");
    expect_call("select fn_getbulist_basedon_idnf(2, 'on', '0')", FN(GETBULIST_BASEDON_IDNF),
                TARGET, "fn_getbulist_basedon_idnf", 25, "i=2|b=true|b=false");
    expect_call("select fn_getassetvsquestionset(null, null::text, NULL::varchar)",
                FN(GETASSETVSQUESTIONSET), TARGET, "fn_getassetvsquestionset", 25, "i=~|t=~|t=~");
    expect_call("select * from fn_getassetdetails(null::timestamptz, 3)", FN(GETASSETDETAILS),
                FROM, "fn_getassetdetails", 0, "z=~|i=3");
}

/* ---------------------------------------------------------------------------------------------
 * Passed through, with the reason
 * ------------------------------------------------------------------------------------------- */

Test(reject, mentions_only)
{
    expect_reject("select 'fun_getjobneed(1,2,3)'", RW_REASON_SHAPE);
    expect_reject("select 1 /* fun_getjobneed(1,2,3) */", RW_REASON_SHAPE);
    expect_reject("select fun_getjobneed from t", RW_REASON_SHAPE);
    expect_reject("select * from fun_getjobneed", RW_REASON_SHAPE);
    expect_reject("select 1", RW_REASON_NO_NAME);
    expect_reject("", RW_REASON_NO_NAME);
    expect_reject("update fn_menupbt set x = 1", RW_REASON_SHAPE);
}

Test(reject, other_shapes)
{
    expect_reject("select fun_getjobneed(1,2,3) from t", RW_REASON_SHAPE);
    expect_reject("select * from fun_getjobneed(1,2,3) where id > 5", RW_REASON_SHAPE);
    expect_reject("select * from fun_getjobneed(1,2,3), t", RW_REASON_SHAPE);
    expect_reject("select fn_menupbt(6), 1", RW_REASON_SHAPE);
    expect_reject("select * from fn_menupbt(6,'text'::text) as x", RW_REASON_SHAPE);
    expect_reject("select * from fn_menupbt(6,'text'::text) x(y)", RW_REASON_SHAPE);
    expect_reject("select (fn_getassetdetails('2024-01-01'::timestamptz, 1)).id", RW_REASON_SHAPE);
    expect_reject("select * from (select fn_menupbt(6)) s", RW_REASON_SHAPE);
    expect_reject("select id from fun_getjobneed(1,2,3)", RW_REASON_SHAPE);
    expect_reject("select count(*) from fun_getjobneed(1,2,3)", RW_REASON_SHAPE);
    expect_reject("select other.fun_getjobneed(1,2,3)", RW_REASON_SHAPE);
    expect_reject("select \"FUN_GETJOBNEED\"(1,2,3)", RW_REASON_SHAPE);
    expect_reject("select fn_menupbt(6)::text", RW_REASON_SHAPE);
    expect_reject("select distinct fn_menupbt(6)", RW_REASON_SHAPE);
    expect_reject("select fn_menupbt(6) union select fn_menupbt(7)", RW_REASON_SHAPE);
    expect_reject("with x as (select 1) select fn_menupbt(6)", RW_REASON_SHAPE);
    expect_reject("explain select * from fun_getjobneed(1,2,3)", RW_REASON_SHAPE);
    expect_reject("select * from fn_get_bulist(1) with ordinality", RW_REASON_SHAPE);
    expect_reject("select * from rows from (fn_get_bulist(1))", RW_REASON_SHAPE);
    expect_reject("select * from fun_getjobneed(1,2,3) limit 1", RW_REASON_SHAPE);
    expect_reject("select * from fun_getjobneed(1,2,3) order by 1", RW_REASON_SHAPE);
    expect_reject("select fn_menupbt(variadic array[1])", RW_REASON_SHAPE);
    expect_reject("select fn_menupbt(6) as a_very_long_alias_name_that_postgres_would_truncate_with_a_notice",
                  RW_REASON_SHAPE);
    expect_reject("select fn_menupbt(6) into t", RW_REASON_SHAPE);
}

Test(reject, statements)
{
    expect_reject("select * from fun_getjobneed(1,2,3); select 1", RW_REASON_NOT_ONE_STATEMENT);
    expect_reject("select * from fun_getjobneed(1,2,3); select * from fun_getjobneed(1,2,3)",
                  RW_REASON_NOT_ONE_STATEMENT);
    expect_reject("select * from fun_getjobneed(1,2", RW_REASON_PARSE_ERROR);
}

Test(reject, arguments)
{
    expect_reject("select fn_menupbt(p_buid => 6)", RW_REASON_ARGS);
    expect_reject("select * from fn_menupbt(6, 'text')", RW_REASON_ARGS);     /* PG: unknown polymorphic */
    expect_reject("select fn_menupbt(6, null)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(6, 'x'::varchar)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(6, 5)", RW_REASON_ARGS);
    expect_reject("select fn_get_bulist(2, true, true, 'array', null)", RW_REASON_ARGS);
    expect_reject("select fn_get_bulist(2, true, true, 'text', null::varchar)", RW_REASON_ARGS);
    expect_reject("select fn_get_bulist(2, true, true, 'jsonb', '{}'::jsonb)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt('9223372036854775808', 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt('0x10', 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt('', 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt('1_000', 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(9223372036854775808, 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(1.5, 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(1e3, 'text'::text)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(6 + 0)", RW_REASON_ARGS);
    /* Folded to -6 by the grammar, but libpg_query's JSON loses non-positive integers and the
       text at the constant's location is not plain "-6": refused. */
    expect_reject("select fn_menupbt(-(6))", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(- 6)", RW_REASON_ARGS);
    expect_call("select fn_menupbt(-0, E'text'::text)", FN(MENUPBT), TARGET, "fn_menupbt", 25,
                "i=0|t=text");
    expect_call("select fn_menupbt(0, 'text'::text)", FN(MENUPBT), TARGET, "fn_menupbt", 25,
                "i=0|t=text");
    expect_reject("select fn_menupbt(+6)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt(3000000000::int)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt('5'::text::bigint)", RW_REASON_ARGS);
    expect_reject("select fn_menupbt('5'::text)", RW_REASON_ARGS);
    expect_reject("select fn_getassetvsquestionset(1, 5, '')", RW_REASON_ARGS);
    expect_reject("select fn_getassetvsquestionset(1, 'a\\b', '')", RW_REASON_ARGS);
    expect_reject("select fn_getassetvsquestionset(1, U&'d\\0061t', '')", RW_REASON_ARGS);
    expect_reject("select fn_getassetvsquestionset(1, 'x'::char(3), '')", RW_REASON_ARGS);
    expect_reject("select fn_getassetvsquestionset(1, 'x'::varchar(3), '')", RW_REASON_ARGS);
    expect_reject("select fn_getassetvsquestionset(1, 'x' collate \"C\", '')", RW_REASON_ARGS);
    expect_reject("select * from fun_getjobneed(1,2,3,4)", RW_REASON_ARGS);
    expect_reject("select * from fun_getjobneed(1,2)", RW_REASON_ARGS);
    expect_reject("select * from fun_getjobneed($1,2,3)", RW_REASON_ARGS);
    expect_reject("select * from fun_getjobneed(1,2,(select 3))", RW_REASON_ARGS);
    expect_reject("select fn_getbulist_basedon_idnf(2, 'o', true)", RW_REASON_ARGS);
    expect_reject("select fn_getbulist_basedon_idnf(2, 1, 1)", RW_REASON_ARGS);
    expect_reject("select fn_getbulist_basedon_idnf(2, 'true'::text, true)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails('now'::timestamptz, 3)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails('Today', 3)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails('2024-01-02'::timestamp, 3)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails('2024-01-02'::date, 3)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails('2024-01-02'::text, 3)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails(now(), 3)", RW_REASON_ARGS);
    expect_reject("select * from fn_getassetdetails('2024-01-02'::public.timestamptz, 3)",
                  RW_REASON_ARGS);
}

/* ---------------------------------------------------------------------------------------------
 * Extended protocol: templates and binds
 * ------------------------------------------------------------------------------------------- */

/* Builds the views of a pgw_bind_t over caller storage. fmts: nformats codes; vals: n values
   as (len, bytes) with len -1 for NULL. */
typedef struct tbind {
    uint8_t formats[32];
    uint8_t params[512];
    uint8_t rformats[8];
    pgw_bind_t b;
} tbind_t;

static void tb_init(tbind_t *tb, int nformats, const int16_t *fmts, int nres, int16_t rfmt)
{
    memset(tb, 0, sizeof *tb);
    for (int i = 0; i < nformats; i++) {
        tb->formats[2 * i] = (uint8_t)((uint16_t)fmts[i] >> 8);
        tb->formats[2 * i + 1] = (uint8_t)fmts[i];
    }
    tb->b.nformats = (uint16_t)nformats;
    tb->b.formats = tb->formats;
    tb->b.params = tb->params;
    for (int i = 0; i < nres; i++) {
        tb->rformats[2 * i] = 0;
        tb->rformats[2 * i + 1] = (uint8_t)rfmt;
    }
    tb->b.nresult_formats = (uint16_t)nres;
    tb->b.result_formats = tb->rformats;
}

static void tb_add(tbind_t *tb, int32_t len, const void *bytes)
{
    uint8_t *p = tb->params + tb->b.params_len;
    uint32_t u = (uint32_t)len;
    p[0] = (uint8_t)(u >> 24); p[1] = (uint8_t)(u >> 16); p[2] = (uint8_t)(u >> 8); p[3] = (uint8_t)u;
    tb->b.params_len += 4;
    if (len > 0) {
        memcpy(p + 4, bytes, (size_t)len);
        tb->b.params_len += (size_t)len;
    }
    tb->b.nparams++;
}

static void tb_text(tbind_t *tb, const char *s)
{
    tb_add(tb, s ? (int32_t)strlen(s) : -1, s);
}

static void tb_be(tbind_t *tb, int64_t v, int n)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)((uint64_t)v >> (8 * (n - 1 - i)));
    tb_add(tb, n, b);
}

static rw_template_t *tpl(const char *sql, int n, const uint32_t *oids)
{
    rw_reason_t reason = RW_REASON__COUNT;
    rw_template_t *t = rw_template_from_parse(sql, oids, (uint16_t)n, &reason);
    cr_assert_not_null(t, "template refused (%s): %s", rw_reason_name(reason), sql);
    cr_expect_eq(reason, RW_REASON_NONE);
    return t;
}

static void tpl_reject(const char *sql, int n, const uint32_t *oids, rw_reason_t want)
{
    rw_reason_t reason = RW_REASON_NONE;
    rw_template_t *t = rw_template_from_parse(sql, oids, (uint16_t)n, &reason);
    cr_expect_null(t, "template accepted but should not be: %s", sql);
    cr_expect_eq(reason, want, "reason '%s', want '%s': %s", rw_reason_name(reason),
                 rw_reason_name(want), sql);
    rw_template_free(t);
}

static void expect_bind(const rw_template_t *t, const tbind_t *tb, const char *args)
{
    rw_call_t call;
    rw_reason_t reason = RW_REASON__COUNT;
    int rc = rw_template_bind(t, &tb->b, &call, &reason);
    cr_assert_eq(rc, 1, "bind refused: %s", rw_reason_name(reason));
    char got[512];
    render_args(&call, got, sizeof got);
    cr_expect_str_eq(got, args, "args '%s' want '%s'", got, args);
    rw_call_clear(&call);
}

static void expect_bind_reject(const rw_template_t *t, const tbind_t *tb, rw_reason_t want)
{
    rw_call_t call;
    rw_reason_t reason = RW_REASON_NONE;
    int rc = rw_template_bind(t, &tb->b, &call, &reason);
    cr_expect_eq(rc, 0);
    cr_expect_eq(reason, want, "reason '%s' want '%s'", rw_reason_name(reason), rw_reason_name(want));
    if (rc == 1)
        rw_call_clear(&call);
}

/* 2024-01-02 10:30:00+05:30 = 2024-01-02 05:00:00 UTC, as psycopg 3 sends it in binary. */
static const int64_t TS_20240102_0500 = 757486800LL * 1000000LL;

Test(extended, psycopg3_assetdetails_binary)
{
    /* Captured: Parse "select * from fn_getassetdetails($1, $2)" OIDs 1184 21, Bind formats
       1 1, values 8 bytes and int2 3, result format text. */
    const uint32_t oids[] = {1184, 21};
    rw_template_t *t = tpl("select * from fn_getassetdetails($1, $2)", 2, oids);
    cr_expect_eq(rw_template_nparams(t), 2);
    cr_expect_eq(rw_template_param_oid(t, 0), 1184u);
    cr_expect_eq(rw_template_param_oid(t, 1), 21u);
    const rw_call_t *c = rw_template_call(t);
    cr_expect_eq(c->fn, RW_FN_GETASSETDETAILS);
    cr_expect_eq(c->shape, RW_SHAPE_FROM);
    cr_expect_eq(c->args[0].param, 1);
    cr_expect_eq(c->args[1].param, 2);
    tbind_t tb;
    const int16_t f11[] = {1, 1};
    tb_init(&tb, 2, f11, 1, 0);
    tb_be(&tb, TS_20240102_0500, 8);
    tb_be(&tb, 3, 2);
    expect_bind(t, &tb, "z=2024-01-02 05:00:00+00|i=3");
    /* The same statement again with other values (a named statement reused). */
    tb_init(&tb, 2, f11, 1, 0);
    tb_be(&tb, TS_20240102_0500 + 123450, 8);
    tb_be(&tb, -1, 2);
    expect_bind(t, &tb, "z=2024-01-02 05:00:00.12345+00|i=-1");
    tb_init(&tb, 2, f11, 1, 0);
    tb_be(&tb, -1, 8);                  /* one microsecond before 2000 */
    tb_add(&tb, -1, NULL);
    expect_bind(t, &tb, "z=1999-12-31 23:59:59.999999+00|i=~");
    tb_init(&tb, 2, f11, 0, 0);
    tb_be(&tb, INT64_MAX, 8);
    tb_be(&tb, 7, 2);
    expect_bind(t, &tb, "z=infinity|i=7");
    static const struct { int64_t us; const char *text; } ts[] = {
        {762566399500000LL, "2024-02-29 23:59:59.5+00"},
        {-63082281600000000LL, "0001-01-01 00:00:00+00"},
        {252455615999999999LL, "9999-12-31 23:59:59.999999+00"},
        {-946684800000000LL, "1970-01-01 00:00:00+00"},
        {INT64_MIN, "-infinity"},
    };
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) {
        char want[96];
        snprintf(want, sizeof want, "z=%s|i=1", ts[k].text);
        tb_init(&tb, 2, f11, 0, 0);
        tb_be(&tb, ts[k].us, 8);
        tb_be(&tb, 1, 2);
        expect_bind(t, &tb, want);
    }
    /* Year 10000 and BC dates are not rendered here: passed through. */
    tb_init(&tb, 2, f11, 0, 0);
    tb_be(&tb, 252455616000000000LL, 8);
    tb_be(&tb, 1, 2);
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    tb_init(&tb, 2, f11, 0, 0);
    tb_be(&tb, -63082281600000001LL, 8);
    tb_be(&tb, 1, 2);
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    rw_template_free(t);
}

Test(extended, psycopg3_text_and_unspecified)
{
    /* str parameters are sent with OID 0 in text format; PostgreSQL infers the types. */
    const uint32_t oids[] = {0, 21};
    rw_template_t *t = tpl("select * from fn_getassetdetails($1, $2)", 2, oids);
    cr_expect_eq(rw_template_param_oid(t, 0), 1184u);
    tbind_t tb;
    const int16_t f01[] = {0, 1};
    tb_init(&tb, 2, f01, 1, 0);
    tb_text(&tb, "2024-01-02 10:30:00");
    tb_be(&tb, 3, 2);
    expect_bind(t, &tb, "z=2024-01-02 10:30:00|i=3");
    rw_template_free(t);

    const uint32_t zeros[] = {0, 0};
    t = tpl("select * from fn_getassetdetails($1, $2)", 2, zeros);
    cr_expect_eq(rw_template_param_oid(t, 0), 1184u);
    cr_expect_eq(rw_template_param_oid(t, 1), 20u);
    tb_init(&tb, 0, NULL, 0, 0);
    tb_text(&tb, "2024-01-02T10:30:00+05:30");
    tb_text(&tb, " 42 ");
    expect_bind(t, &tb, "z=2024-01-02T10:30:00+05:30|i=42");
    tb_init(&tb, 0, NULL, 0, 0);
    tb_text(&tb, "now");
    tb_text(&tb, "42");
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    tb_init(&tb, 0, NULL, 0, 0);
    tb_text(&tb, "2024-01-02");
    tb_text(&tb, "4x2");
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    rw_template_free(t);

    /* No declared types at all (nparams 0 in the Parse). */
    t = tpl("select * from fn_getassetdetails($1, $2)", 0, NULL);
    cr_expect_eq(rw_template_nparams(t), 2);
    cr_expect_eq(rw_template_param_oid(t, 1), 20u);
    rw_template_free(t);
}

Test(extended, psycopg3_qset_jobs_idnf)
{
    const uint32_t q[] = {21, 0, 0};
    rw_template_t *t = tpl("SELECT fn_getassetvsquestionset($1, $2, $3)", 3, q);
    cr_expect_eq(rw_template_param_oid(t, 0), 21u);
    cr_expect_eq(rw_template_param_oid(t, 1), 25u);
    cr_expect_eq(rw_template_param_oid(t, 2), 25u);
    cr_expect_str_eq(rw_template_call(t)->colname, "fn_getassetvsquestionset");
    cr_expect_eq(rw_template_call(t)->result_oid, 25u);
    tbind_t tb;
    const int16_t f100[] = {1, 0, 0};
    tb_init(&tb, 3, f100, 1, 0);
    tb_be(&tb, 1, 2);
    tb_text(&tb, "1");
    tb_text(&tb, "");
    expect_bind(t, &tb, "i=1|t=1|t=");
    rw_template_free(t);

    const uint32_t j[] = {21, 21, 20};
    t = tpl("select * from fun_getjobneed($1, $2, $3)", 3, j);
    const int16_t f1[] = {1};
    tb_init(&tb, 1, f1, 1, 0);
    tb_be(&tb, 100, 2);
    tb_be(&tb, -1, 2);
    tb_be(&tb, 1LL << 40, 8);
    expect_bind(t, &tb, "i=100|i=-1|i=1099511627776");
    tb_init(&tb, 1, f1, 1, 0);
    tb_be(&tb, 100, 4);                 /* wrong width for int2 */
    tb_be(&tb, -1, 2);
    tb_be(&tb, 1, 8);
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    rw_template_free(t);

    const uint32_t i[] = {21, 16, 0};
    t = tpl("SELECT fn_getbulist_basedon_idnf($1, $2, $3)", 3, i);
    cr_expect_eq(rw_template_param_oid(t, 2), 16u);
    const int16_t f110[] = {1, 1, 0};
    tb_init(&tb, 3, f110, 1, 0);
    tb_be(&tb, 1, 2);
    tb_add(&tb, 1, "\x01");
    tb_add(&tb, -1, NULL);
    expect_bind(t, &tb, "i=1|b=true|b=~");
    tb_init(&tb, 3, f110, 1, 0);
    tb_be(&tb, 1, 2);
    tb_add(&tb, 1, "\x00");
    tb_text(&tb, "yes");
    expect_bind(t, &tb, "i=1|b=false|b=true");
    rw_template_free(t);
}

Test(extended, psycopg3_bulist_mixed_constants)
{
    const char *sql = "select fn_get_bulist($1, true, true, 'array'::text, null::bigint[]) as buids";
    const uint32_t z[] = {0};
    rw_template_t *t = tpl(sql, 1, z);
    cr_expect_eq(rw_template_param_oid(t, 0), 20u);
    const rw_call_t *c = rw_template_call(t);
    cr_expect_str_eq(c->colname, "buids");
    cr_expect_eq(c->result_oid, 1016u);
    cr_expect_eq(c->nargs, 5);
    cr_expect_str_eq(c->args[3].text, "array");
    tbind_t tb;
    tb_init(&tb, 0, NULL, 1, 0);
    tb_text(&tb, "5");
    expect_bind(t, &tb, "i=5|b=true|b=true|t=array|a=~");
    rw_template_free(t);

    const uint32_t i4[] = {23};
    t = tpl(sql, 1, i4);
    cr_expect_eq(rw_template_param_oid(t, 0), 23u);
    const int16_t f1[] = {1};
    tb_init(&tb, 1, f1, 1, 0);
    tb_be(&tb, 70000, 4);
    expect_bind(t, &tb, "i=70000|b=true|b=true|t=array|a=~");
    tb_init(&tb, 0, NULL, 1, 0);
    tb_text(&tb, "3000000000");        /* int4in overflows: PostgreSQL errors */
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    tb_init(&tb, 0, NULL, 1, 1);        /* binary result requested */
    tb_text(&tb, "5");
    expect_bind_reject(t, &tb, RW_REASON_RESULT_FORMAT);
    tb_init(&tb, 0, NULL, 1, 0);        /* wrong parameter count */
    tb_text(&tb, "5");
    tb_text(&tb, "6");
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    rw_template_free(t);
}

Test(extended, polymorphic_and_casts)
{
    const uint32_t z2[] = {21, 0};
    tpl_reject("select * from fn_menupbt($1, $2)", 2, z2, RW_REASON_PARAM_TYPE);
    const uint32_t t2[] = {0, 25};
    rw_template_t *t = tpl("select * from fn_menupbt($1, $2)", 2, t2);
    cr_expect_eq(rw_template_param_oid(t, 0), 20u);
    cr_expect_eq(rw_template_call(t)->result_oid, 25u);
    rw_template_free(t);
    const uint32_t zz[] = {0, 0};
    t = tpl("select fn_menupbt($1::bigint, $2::text)", 2, zz);
    cr_expect_eq(rw_template_param_oid(t, 0), 20u);
    cr_expect_eq(rw_template_param_oid(t, 1), 25u);
    tbind_t tb;
    tb_init(&tb, 0, NULL, 0, 0);
    tb_text(&tb, "6");
    tb_text(&tb, "array");
    expect_bind(t, &tb, "i=6|t=array");
    rw_template_free(t);

    const uint32_t b5[] = {20, 16, 16, 25, 1016};
    t = tpl("select fn_get_bulist($1, $2, $3, $4, $5)", 5, b5);
    cr_expect_eq(rw_template_call(t)->result_oid, 1016u);
    const int16_t f1[] = {1};
    tb_init(&tb, 1, f1, 0, 0);
    tb_be(&tb, 2, 8);
    tb_add(&tb, 1, "\x01");
    tb_add(&tb, 1, "\x00");
    tb_add(&tb, 5, "array");
    tb_add(&tb, -1, NULL);
    expect_bind(t, &tb, "i=2|b=true|b=false|t=array|a=~");
    tb_init(&tb, 1, f1, 0, 0);
    tb_be(&tb, 2, 8);
    tb_add(&tb, 1, "\x01");
    tb_add(&tb, 1, "\x00");
    tb_add(&tb, 5, "array");
    tb_add(&tb, 4, "\0\0\0\0");          /* non-NULL array value: not handled */
    expect_bind_reject(t, &tb, RW_REASON_PARAM_TYPE);
    rw_template_free(t);
    const uint32_t b5u[] = {20, 16, 16, 25, 0};
    tpl_reject("select fn_get_bulist($1, $2, $3, $4, $5)", 5, b5u, RW_REASON_PARAM_TYPE);
}

Test(extended, refused_parses)
{
    const uint32_t txt[] = {25, 0, 0};
    tpl_reject("select * from fun_getjobneed($1, $2, $3)", 3, txt, RW_REASON_PARAM_TYPE);
    const uint32_t ts[] = {1114, 20};
    tpl_reject("select * from fn_getassetdetails($1, $2)", 2, ts, RW_REASON_PARAM_TYPE);
    const uint32_t extra[] = {20, 20, 20, 20};
    tpl_reject("select * from fun_getjobneed($1, $2, $3)", 4, extra, RW_REASON_PARAM_TYPE);
    tpl_reject("select * from fun_getjobneed($1, $1, $3)", 0, NULL, RW_REASON_ARGS);
    tpl_reject("select * from fun_getjobneed($1, $3, $4)", 0, NULL, RW_REASON_PARAM_TYPE);
    const uint32_t i8[] = {23};
    tpl_reject("select * from fun_getjobneed($1::bigint, 2, 3)", 1, i8, RW_REASON_PARAM_TYPE);
    tpl_reject("select * from fun_getjobneed($1, 2, 3) where true", 0, NULL, RW_REASON_SHAPE);
    tpl_reject("select 1", 0, NULL, RW_REASON_NO_NAME);
    /* Constants only, no parameters: a template with nparams 0. */
    rw_template_t *t = tpl("select * from fun_getjobneed(1, 2, 3)", 0, NULL);
    cr_expect_eq(rw_template_nparams(t), 0);
    tbind_t tb;
    tb_init(&tb, 0, NULL, 0, 0);
    expect_bind(t, &tb, "i=1|i=2|i=3");
    rw_template_free(t);
}

/* ---------------------------------------------------------------------------------------------
 * Capability query
 * ------------------------------------------------------------------------------------------- */

static const char *CAPS_SQL =
    "WITH RECURSIVE cap(id, capsname, capscode, parent_id, cfor, depth, path, xpath) AS (\n"
    "  SELECT id, capsname, capscode, parent_id, cfor, 1::int AS depth,\n"
    "         capscode::text AS path, id::text AS xpath\n"
    "  FROM capability WHERE id = 1 AND cfor = 'WEB'\n"
    "  UNION ALL\n"
    "  SELECT ch.id, ch.capsname, ch.capscode, ch.parent_id, ch.cfor, cap.depth + 1,\n"
    "         cap.path || '->' || ch.capscode, cap.xpath || '>' || ch.id || cap.depth + 1\n"
    "  FROM cap INNER JOIN capability ch ON cap.id = ch.parent_id\n"
    ")\n"
    "SELECT * FROM cap ORDER BY xpath";

static void expect_caps(const char *sql)
{
    rw_call_t call;
    rw_reason_t reason = RW_REASON__COUNT;
    int rc = rw_recognize_query(sql, &call, &reason);
    cr_expect_eq(rc, 1, "caps query not recognised (%s): %s", rw_reason_name(reason), sql);
    if (rc == 1) {
        cr_expect_eq(call.fn, RW_FN_WEB_CAPS_FOR_CLIENT);
        cr_expect_eq(call.shape, RW_SHAPE_QUERY);
        cr_expect_eq(call.nargs, 0);
        rw_call_clear(&call);
    }
}

Test(caps, fingerprint_match)
{
    cr_assert_eq(rw_set_caps_query(CAPS_SQL), 0);
    expect_caps(CAPS_SQL);
    /* Whitespace, keyword case, comments and a trailing semicolon do not matter. */
    expect_caps("with   recursive CAP(id,capsname,capscode,parent_id,cfor,depth,path,xpath) as "
                "(select id,capsname,capscode,parent_id,cfor,1::int as depth,capscode::text as path,"
                "id::text as xpath from CAPABILITY where id=1 and cfor='WEB' union all "
                "/* children */ select ch.id,ch.capsname,ch.capscode,ch.parent_id,ch.cfor,"
                "cap.depth+1,cap.path||'->'||ch.capscode,cap.xpath||'>'||ch.id||cap.depth+1 "
                "from cap inner join capability ch on cap.id=ch.parent_id) "
                "select * from cap order by xpath;  -- done\n");
    /* A different constant or alias gives the same fingerprint but another answer. */
    char *other = strdup(CAPS_SQL);
    char *w = strstr(other, "'WEB'");
    memcpy(w, "'MOB'", 5);
    expect_reject(other, RW_REASON_SHAPE);
    strcpy(other, CAPS_SQL);
    w = strstr(other, "AS xpath");
    memcpy(w, "AS ypath", 8);
    expect_reject(other, RW_REASON_SHAPE);
    free(other);
    expect_reject("select * from capability", RW_REASON_SHAPE);
    expect_reject("select 1", RW_REASON_NO_NAME);
    /* Two statements never match. */
    char two[2048];
    snprintf(two, sizeof two, "%s; select 1", CAPS_SQL);
    expect_reject(two, RW_REASON_NOT_ONE_STATEMENT);
    /* Extended protocol: a Parse of the same text without parameters. */
    rw_reason_t reason;
    rw_template_t *t = rw_template_from_parse(CAPS_SQL, NULL, 0, &reason);
    cr_assert_not_null(t, "%s", rw_reason_name(reason));
    cr_expect_eq(rw_template_call(t)->fn, RW_FN_WEB_CAPS_FOR_CLIENT);
    rw_template_free(t);
    /* The pre-filter now also passes the capability query's token. */
    cr_expect(pf(CAPS_SQL));
    cr_expect(pf("SELECT * FROM CAPABILITY"));
    /* Negative constants count (libpg_query's JSON would print -1 and -2 alike). */
    cr_assert_eq(rw_set_caps_query("select id, capscode from capability where parent_id = -1 order by id"), 0);
    expect_caps("SELECT id,capscode FROM capability WHERE parent_id=-1 ORDER BY id;");
    expect_reject("select id, capscode from capability where parent_id = -2 order by id",
                  RW_REASON_SHAPE);
    expect_reject("select id, capscode from capability where parent_id = 1 order by id",
                  RW_REASON_SHAPE);
    /* Clearing. */
    cr_assert_eq(rw_set_caps_query(NULL), 0);
    expect_reject(CAPS_SQL, RW_REASON_NO_NAME);
    cr_expect_lt(rw_set_caps_query("select from where"), 0);
    cr_expect_lt(rw_set_caps_query("select 1; select 2"), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Robustness: every prefix and many one-byte mutations of accepted statements must neither
 * crash nor leak (run under ASan), and whatever is accepted must carry consistent arguments.
 * ------------------------------------------------------------------------------------------- */

Test(robust, prefixes_and_mutations)
{
    static const char *const seeds[] = {
        "select fn_get_bulist( -1, true, true, 'array'::text, null::bigint[]) as buids;",
        "select * from fn_getassetdetails('2024-01-02 10:30:00+05:30'::timestamptz, 3)",
        "SELECT fn_getassetvsquestionset(1, E'a\\x41', $$n$$)",
        "select * from fun_getjobneed(CAST('1' AS bigint), 0, -2147483648)",
    };
    static const char subst[] = {'-', '$', '\'', '(', ')', 'x', '0', ' ', ';', ':', '\\', '"'};
    char buf[256];
    int accepted = 0, total = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        size_t n = strlen(seeds[s]);
        for (size_t cut = 0; cut <= n; cut++) {
            memcpy(buf, seeds[s], cut);
            buf[cut] = '\0';
            for (size_t k = 0; k <= sizeof subst; k++) {
                if (k > 0) {
                    if (cut == 0)
                        break;
                    memcpy(buf, seeds[s], n + 1);
                    buf[cut - 1] = subst[k - 1];
                }
                rw_call_t c;
                rw_reason_t r;
                int rc = rw_recognize_query(buf, &c, &r);
                cr_assert(rc == 0 || rc == 1);
                total++;
                if (rc == 1) {
                    accepted++;
                    cr_assert_eq(r, RW_REASON_NONE);
                    cr_assert_eq(c.nargs, rw_fn_nparams(c.fn));
                    for (int i = 0; i < c.nargs; i++)
                        cr_assert(c.args[i].is_null == (c.args[i].text == NULL));
                    rw_call_clear(&c);
                } else {
                    cr_assert_neq(r, RW_REASON_NONE);
                    cr_assert_eq(c.nargs, 0);
                }
                rw_template_t *t = rw_template_from_parse(buf, NULL, 0, &r);
                rw_template_free(t);
            }
        }
    }
    fprintf(stderr, "robust: %d variants, %d accepted\n", total, accepted);
}
