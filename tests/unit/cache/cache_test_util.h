/*
 * Helpers shared by the cache tests: result messages built with pgw's builders (what a native
 * implementation would hand to the cache) and a ready-made key.
 */
#ifndef PGSHIM_TESTS_CACHE_TEST_UTIL_H
#define PGSHIM_TESTS_CACHE_TEST_UTIL_H

#include <string.h>

#include "cache.h"
#include "pgw.h"

/* RowDescription with one text column named `name`. */
static inline void tu_describe(pgw_buf_t *b, const char *name)
{
    pgw_field_desc_t f = {0};
    f.name.ptr = name;
    f.name.len = (uint32_t)strlen(name);
    f.type_oid = 25;
    f.type_len = -1;
    f.type_mod = -1;
    f.format = 0;
    pgw_build_row_description(b, &f, 1);
}

/* Body: a notice, `nrows` one-column rows "v0".."vN", CommandComplete "SELECT n". */
static inline void tu_body(pgw_buf_t *b, int nrows)
{
    char tag[32], v[16];
    pgw_build_notice(b, "NOTICE", "00000", "Phrase :: array", NULL, NULL);
    for (int i = 0; i < nrows; i++) {
        snprintf(v, sizeof v, "v%d", i);
        pgw_data_row_begin(b, 1);
        pgw_data_row_put(b, v, (int32_t)strlen(v));
        pgw_data_row_end(b);
    }
    snprintf(tag, sizeof tag, "SELECT %d", nrows);
    pgw_build_command_complete(b, tag);
}

static const char *const tu_tables[] = {"jobneed", "pgbelonging"};

/* Key for fun_getjobneed(args...) of `tenant`. */
static inline int tu_key(cache_key_t *k, const char *prefix, const char *tenant, const char *a1)
{
    cache_arg_t args[3] = {
        {a1, strlen(a1), false, 1},
        {"3", 1, false, 1},
        {"2", 1, false, 1},
    };
    cache_key_spec_t spec = {0};
    spec.tenant = tenant;
    spec.function = "fun_getjobneed";
    spec.variant = "F";
    spec.args = args;
    spec.nargs = 3;
    spec.settings_hash = 42;
    spec.date = "2026-11-23";
    spec.tables = tu_tables;
    spec.ntables = 2;
    return cache_key_build(k, prefix, &spec);
}

#endif
