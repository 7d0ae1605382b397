/*
 * Unit tests of the pure composition helpers of the native implementations
 * (rewrite/functions/compose.c): JSON string escaping and the canonical jsonb text of BU objects,
 * C-collation sorting with de-duplication, id lists in text and array form, BFS ordering,
 * boolean/int8 input parsing and ASCII lower-casing. Expected bytes were produced by PostgreSQL 15
 * (jsonb_build_object(...)::text, string_agg(... ORDER BY ...) in a C-collation database).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "functions/functions.h"

static char *json_str(const char *s, size_t n)
{
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__sb_put_json_string(&sb, s, n);
    cr_assert(!sb.failed);
    return sb.p;
}

Test(native_compose, json_escape_like_postgres)
{
    /* select jsonb_build_object('a', E'x"y\\z\n\t\b\f\r\u0001\u001f\u007f é')::text */
    const char in[] = "x\"y\\z\n\t\b\f\r\x01\x1f\x7f \xc3\xa9";
    char *out = json_str(in, sizeof in - 1);
    cr_assert_str_eq(out, "\"x\\\"y\\\\z\\n\\t\\b\\f\\r\\u0001\\u001f\x7f \xc3\xa9\"");
    free(out);
    out = json_str("", 0);
    cr_assert_str_eq(out, "\"\"");
    free(out);
    out = json_str("plain/slash", 11);   /* '/' is not escaped by PostgreSQL */
    cr_assert_str_eq(out, "\"plain/slash\"");
    free(out);
}

Test(native_compose, bu_jsonb_canonical_key_order)
{
    rw_bu_node_t v[4] = {
        {.id = 12, .parent_id = 5, .bucode = "S12", .bucode_len = 3, .buname = "Site 12", .buname_len = 7},
        {.id = 2, .parent_id = 1, .bucode = "SPS", .bucode_len = 3, .buname = "Client A", .buname_len = 8},
        {.id = 5, .parent_id = 2, .bucode = "C\"5", .bucode_len = 3, .buname = "Cust", .buname_len = 4},
        {.id = -1, .parent_null = true, .bucode = "NONE", .bucode_len = 4, .buname = "NONE", .buname_len = 4},
    };
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__bu_jsonb(&sb, v, 4);
    cr_assert(!sb.failed);
    /* Keys by length then bytes: "2" "5" "-1" "12". */
    cr_assert_str_eq(sb.p,
                     "{\"2\": {\"bucode\": \"SPS\", \"buname\": \"Client A\", \"parent_id\": 1}, "
                     "\"5\": {\"bucode\": \"C\\\"5\", \"buname\": \"Cust\", \"parent_id\": 2}, "
                     "\"-1\": {\"bucode\": \"NONE\", \"buname\": \"NONE\", \"parent_id\": null}, "
                     "\"12\": {\"bucode\": \"S12\", \"buname\": \"Site 12\", \"parent_id\": 5}}");
    rw__sb_free(&sb);
}

Test(native_compose, text_sort_is_c_collation_and_unique)
{
    /* Ids sort as text: 10 11 2 9 (spec 3.6); names by bytes: upper case before lower case. */
    const char *ids[] = {"9", "10", "2", "11", "10"};
    size_t n = rw__strv_sort_unique(ids, 5);
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__sb_join(&sb, ids, n, " ");
    cr_assert_str_eq(sb.p, "10 11 2 9");
    const char *names[] = {"pump check", "alpha", "Daily", "alpha", "\xc3\xa9t\xc3\xa9", "Z"};
    n = rw__strv_sort_unique(names, 6);
    rw__sb_reset(&sb);
    rw__sb_join(&sb, names, n, "~");
    cr_assert_str_eq(sb.p, "Daily~Z~alpha~pump check~\xc3\xa9t\xc3\xa9");
    /* Prefix sorts first, as memcmp with the shorter length wins. */
    const char *pre[] = {"ab", "a", "abc"};
    n = rw__strv_sort_unique(pre, 3);
    rw__sb_reset(&sb);
    rw__sb_join(&sb, pre, n, ",");
    cr_assert_str_eq(sb.p, "a,ab,abc");
    rw__sb_free(&sb);
}

Test(native_compose, id_lists)
{
    int64_t v[] = {6, 5, 2};
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__sb_id_list(&sb, v, 3, true);
    cr_assert_str_eq(sb.p, "{6,5,2}");
    rw__i64_sort(v, 3);
    rw__sb_reset(&sb);
    rw__sb_id_list(&sb, v, 3, false);
    cr_assert_str_eq(sb.p, "2 5 6");
    rw__sb_reset(&sb);
    rw__sb_id_list(&sb, v, 0, true);
    cr_assert_str_eq(sb.p, "{}");
    rw__sb_reset(&sb);
    rw__sb_id_list(&sb, v, 0, false);
    cr_assert_str_eq(sb.p, "");
    int64_t w[] = {-1, 13, 8, -1, 10, 11, 13};
    rw__i64_sort(w, 7);
    size_t n = rw__i64_unique_sorted(w, 7);
    rw__sb_reset(&sb);
    rw__sb_id_list(&sb, w, n, true);
    cr_assert_str_eq(sb.p, "{-1,8,10,11,13}");
    int64_t big[] = {INT64_MIN, INT64_MAX};
    rw__sb_reset(&sb);
    rw__sb_id_list(&sb, big, 2, false);
    cr_assert_str_eq(sb.p, "-9223372036854775808 9223372036854775807");
    rw__sb_free(&sb);
}

Test(native_compose, bfs_order_level_then_id)
{
    /* Spec worked fixture, down-walk from 2: {2,3,4,5,9,6,12,7}. */
    rw_bu_node_t v[] = {
        {.id = 7, .depth = 2}, {.id = 12, .depth = 2}, {.id = 2, .depth = 0}, {.id = 9, .depth = 1},
        {.id = 3, .depth = 1}, {.id = 6, .depth = 2}, {.id = 5, .depth = 1}, {.id = 4, .depth = 1},
    };
    rw__bu_sort_bfs(v, 8);
    int64_t ids[8];
    for (int i = 0; i < 8; i++)
        ids[i] = v[i].id;
    rw_sb_t sb;
    rw__sb_init(&sb);
    rw__sb_id_list(&sb, ids, 8, true);
    cr_assert_str_eq(sb.p, "{2,3,4,5,9,6,7,12}");
    rw__sb_free(&sb);
    /* Union of walks: start node appears twice, kept once. */
    rw_bu_node_t u[] = {{.id = 5}, {.id = 2, .depth = 1}, {.id = 5}, {.id = 6, .depth = 1},
                        {.id = 12, .depth = 1}};
    cr_assert_eq(rw__bu_sort_unique_id(u, 5), 4);
    cr_assert_eq(u[0].id, 2);
    cr_assert_eq(u[3].id, 12);
}

Test(native_compose, input_parsing)
{
    bool b;
    cr_assert(rw__parse_bool("true", &b) && b);
    cr_assert(rw__parse_bool("  F ", &b) && !b);
    cr_assert(rw__parse_bool("on", &b) && b);
    cr_assert(!rw__parse_bool("o", &b));
    cr_assert(rw__parse_bool("1", &b) && b);
    cr_assert(!rw__parse_bool("2", &b));
    cr_assert(!rw__parse_bool("", &b));
    int64_t v;
    cr_assert(rw__parse_i64("-1", &v) && v == -1);
    cr_assert(rw__parse_i64(" 42 ", &v) && v == 42);
    cr_assert(!rw__parse_i64("9223372036854775808", &v));
    cr_assert(!rw__parse_i64("12a", &v));
    char *l = rw__ascii_lower("ArRaY \xc3\x89");
    cr_assert_str_eq(l, "array \xc3\x89");   /* C ctype: only ASCII letters fold */
    free(l);
    cr_assert(rw__is_ascii("Text"));
    cr_assert(!rw__is_ascii("T\xc3\xa9xt"));
}
