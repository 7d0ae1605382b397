/*
 * Key canonicalisation: the base is injective over (tenant, function, variant, typed args,
 * settings, date); generation keys and full keys have the documented shape.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_test_util.h"

static const char *const one_table[] = {"bt"};

static char *base_of(const char *tenant, const char *fn, const cache_arg_t *args, int nargs,
                     uint64_t settings, const char *date)
{
    cache_key_spec_t spec = {0};
    spec.tenant = tenant;
    spec.function = fn;
    spec.args = args;
    spec.nargs = nargs;
    spec.settings_hash = settings;
    spec.date = date;
    spec.tables = one_table;
    spec.ntables = 1;
    cache_key_t k;
    cr_assert_eq(cache_key_build(&k, "pgshim", &spec), 0);
    char *b = strdup(k.base);
    cache_key_clear(&k);
    return b;
}

Test(key, layout)
{
    cache_arg_t args[2] = {{"6", 1, false, 1}, {"array", 5, false, 3}};
    char *b = base_of("tenant1", "fn_menupbt", args, 2, 0xabcULL, NULL);
    cr_assert_str_eq(b, "pgshim:v3:tenant1:fn_menupbt::2,1#1'6,3#5'array:0000000000000abc");
    free(b);
    b = base_of("t", "fun_getjobneed", args, 1, 1, "2026-11-23");
    cr_assert_str_eq(b, "pgshim:v3:t:fun_getjobneed::1,1#1'6:0000000000000001:d2026-11-23");
    free(b);
}

Test(key, args_cannot_collide)
{
    cache_arg_t one[1] = {{"a,b", 3, false, 3}};
    cache_arg_t two[2] = {{"a", 1, false, 3}, {"b", 1, false, 3}};
    char *b1 = base_of("t", "f", one, 1, 0, NULL);
    char *b2 = base_of("t", "f", two, 2, 0, NULL);
    cr_assert_str_neq(b1, b2);
    free(b1);
    free(b2);

    /* An argument that looks like the encoding of two arguments. */
    cache_arg_t tricky[1] = {{"a,3#1'b", 7, false, 3}};
    cache_arg_t split[2] = {{"a", 1, false, 3}, {"b", 1, false, 3}};
    b1 = base_of("t", "f", tricky, 1, 0, NULL);
    b2 = base_of("t", "f", split, 2, 0, NULL);
    cr_assert_str_neq(b1, b2);
    free(b1);
    free(b2);
}

Test(key, null_empty_and_type_differ)
{
    cache_arg_t null_arg[1] = {{NULL, 0, true, 3}};
    cache_arg_t empty[1] = {{"", 0, false, 3}};
    cache_arg_t tilde[1] = {{"~", 1, false, 3}};
    cache_arg_t as_int[1] = {{"1", 1, false, 1}};
    cache_arg_t as_text[1] = {{"1", 1, false, 3}};
    char *b[5] = {
        base_of("t", "f", null_arg, 1, 0, NULL), base_of("t", "f", empty, 1, 0, NULL),
        base_of("t", "f", tilde, 1, 0, NULL),    base_of("t", "f", as_int, 1, 0, NULL),
        base_of("t", "f", as_text, 1, 0, NULL),
    };
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            cr_assert_str_neq(b[i], b[j], "%d vs %d", i, j);
    for (int i = 0; i < 5; i++)
        free(b[i]);
}

Test(key, embedded_nul_in_argument)
{
    cache_arg_t a[1] = {{"a\0b", 3, false, 3}};
    cache_arg_t c[1] = {{"a", 1, false, 3}};
    cache_key_spec_t spec = {0};
    spec.tenant = "t";
    spec.function = "f";
    spec.args = a;
    spec.nargs = 1;
    spec.tables = one_table;
    spec.ntables = 1;
    cache_key_t k1, k2;
    cr_assert_eq(cache_key_build(&k1, "p", &spec), 0);
    spec.args = c;
    cr_assert_eq(cache_key_build(&k2, "p", &spec), 0);
    cr_assert(k1.base_len != k2.base_len || memcmp(k1.base, k2.base, k1.base_len) != 0);
    cr_assert_eq(k1.base_len, strlen("p:v3:t:f::1,3#3'") + 3 + strlen(":0000000000000000"));
    cache_key_clear(&k1);
    cache_key_clear(&k2);
}

Test(key, tenant_escaping_is_injective)
{
    /* Tenant "a:f" with function "g" must not equal tenant "a" with function "f:g" (which the
       registry never produces, but the escaping must not rely on that). */
    char *b1 = base_of("a:f", "g", NULL, 0, 0, NULL);
    char *b2 = base_of("a", "f:g", NULL, 0, 0, NULL);
    cr_assert_str_neq(b1, b2);
    cr_assert_str_eq(b1, "pgshim:v3:a%3Af:g::0:0000000000000000");
    free(b1);
    free(b2);
    b1 = base_of("a%3Af", "g", NULL, 0, 0, NULL);
    cr_assert_str_eq(b1, "pgshim:v3:a%253Af:g::0:0000000000000000");
    free(b1);
    b1 = base_of("db with space{x}", "g", NULL, 0, 0, NULL);
    cr_assert_str_eq(b1, "pgshim:v3:db%20with%20space%7Bx%7D:g::0:0000000000000000");
    free(b1);
    b1 = base_of("t\xc3\xa9", "g", NULL, 0, 0, NULL);
    cr_assert_str_eq(b1, "pgshim:v3:t%C3%A9:g::0:0000000000000000");
    free(b1);
}

Test(key, settings_and_date_matter)
{
    char *b1 = base_of("t", "f", NULL, 0, 1, NULL);
    char *b2 = base_of("t", "f", NULL, 0, 2, NULL);
    char *b3 = base_of("t", "f", NULL, 0, 1, "2026-11-23");
    char *b4 = base_of("t", "f", NULL, 0, 1, "2026-11-24");
    cr_assert_str_neq(b1, b2);
    cr_assert_str_neq(b1, b3);
    cr_assert_str_neq(b3, b4);
    free(b1);
    free(b2);
    free(b3);
    free(b4);
}

Test(key, settings_hash)
{
    const char *n[] = {"TimeZone", "DateStyle"};
    const char *v1[] = {"UTC", "ISO, MDY"};
    const char *v2[] = {"Asia/Kolkata", "ISO, MDY"};
    const char *v3[] = {"UTCISO", ", MDY"};
    const char *vnull[] = {NULL, "ISO, MDY"};
    const char *vempty[] = {"", "ISO, MDY"};
    uint64_t h1 = cache_settings_hash(n, v1, 2);
    cr_assert_eq(h1, cache_settings_hash(n, v1, 2));
    cr_assert_neq(h1, cache_settings_hash(n, v2, 2));
    cr_assert_neq(h1, cache_settings_hash(n, v3, 2));
    cr_assert_neq(cache_settings_hash(n, vnull, 2), cache_settings_hash(n, vempty, 2));
    /* FNV-1a 64 reference value: "a" -> af63dc4c8601ec8c. */
    cr_assert_eq(cache_fnv1a(CACHE_FNV_INIT, "a", 1), 0xaf63dc4c8601ec8cULL);
}

Test(key, gen_keys_and_full)
{
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "pgshim", "tenant:1", "100"), 0);
    cr_assert_eq(k.ntables, 2);
    cr_assert_str_eq(k.gen_keys[0], "pgshim:gen:tenant%3A1:jobneed");
    cr_assert_str_eq(k.gen_keys[1], "pgshim:gen:tenant%3A1:pgbelonging");
    cr_assert_not(k.have_gens);
    cr_assert_null(k.full);
    const char *bad[] = {"1x", "2"};
    cr_assert_eq(cache_key_set_gens(&k, bad), CACHE_EINVAL);
    cr_assert_not(k.have_gens);
    const char *gens[] = {"0", "17"};
    cr_assert_eq(cache_key_set_gens(&k, gens), 0);
    cr_assert(k.have_gens);
    cr_assert_eq(k.full_len, k.base_len + strlen(":0:17"));
    cr_assert_str_eq(k.full + k.base_len, ":0:17");
    char *g = cache_gen_key("p", "t", "bt");
    cr_assert_str_eq(g, "p:gen:t:bt");
    free(g);
    cache_key_clear(&k);
    cache_key_clear(&k); /* clearing twice is harmless */
}

Test(key, invalid_specs)
{
    cache_key_t k;
    cache_key_spec_t spec = {0};
    spec.tenant = "t";
    spec.function = "f";
    spec.tables = one_table;
    spec.ntables = 1;
    cr_assert_eq(cache_key_build(&k, "", &spec), CACHE_EINVAL);
    spec.ntables = 0;
    cr_assert_eq(cache_key_build(&k, "p", &spec), CACHE_EINVAL);
    spec.ntables = CACHE_MAX_TABLES + 1;
    cr_assert_eq(cache_key_build(&k, "p", &spec), CACHE_EINVAL);
    spec.ntables = 1;
    spec.nargs = CACHE_MAX_ARGS + 1;
    cr_assert_eq(cache_key_build(&k, "p", &spec), CACHE_EINVAL);
    spec.nargs = 0;
    spec.tenant = NULL;
    cr_assert_eq(cache_key_build(&k, "p", &spec), CACHE_EINVAL);
    cr_assert_null(k.base);
}
