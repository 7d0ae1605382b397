/*
 * Internal declarations shared by the cache/ sources: the text builder used for keys, the Lua
 * scripts, and helpers the client uses from the key code. Not part of the public API.
 */
#ifndef PGSHIM_CACHE_CACHE_INT_H
#define PGSHIM_CACHE_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "cache.h"

typedef struct cache_sb {
    char *s;          /* NUL-terminated once anything was put */
    size_t len;
    size_t cap;
    bool failed;      /* sticky allocation failure */
} cache_sb_t;

void cache__sb_init(cache_sb_t *sb);
void cache__sb_put(cache_sb_t *sb, const void *p, size_t n);
void cache__sb_puts(cache_sb_t *sb, const char *s);
void cache__sb_put_escaped(cache_sb_t *sb, const char *s);

/* Records generations given as (pointer, length) pairs, as they come in a Redis reply. */
int cache__key_set_gens_n(cache_key_t *k, const char *const *gens, const size_t *lens);

/*
 * Lookup: KEYS = generation keys in the function's table order, ARGV[1] = key base.
 * Returns {gen_1, ..., gen_n, value-or-nil}; a missing generation key counts as "0".
 */
#define CACHE_LUA_LOOKUP                                        \
    "local key = ARGV[1]\n"                                     \
    "local out = {}\n"                                          \
    "for i = 1, #KEYS do\n"                                     \
    "  local g = redis.call('GET', KEYS[i]) or '0'\n"           \
    "  out[i] = g\n"                                            \
    "  key = key .. ':' .. g\n"                                 \
    "end\n"                                                     \
    "out[#KEYS + 1] = redis.call('GET', key)\n"                 \
    "return out\n"

/*
 * Store: KEYS = generation keys, ARGV[1] = key base, ARGV[2] = TTL seconds, ARGV[3] = value,
 * ARGV[4..] = the generations the lookup saw. Sets the value only when every generation is
 * unchanged: returns 1 when stored, 0 when skipped.
 */
#define CACHE_LUA_STORE                                         \
    "local key = ARGV[1]\n"                                     \
    "for i = 1, #KEYS do\n"                                     \
    "  local g = redis.call('GET', KEYS[i]) or '0'\n"           \
    "  if g ~= ARGV[3 + i] then return 0 end\n"                 \
    "  key = key .. ':' .. g\n"                                 \
    "end\n"                                                     \
    "redis.call('SET', key, ARGV[3], 'EX', ARGV[2])\n"          \
    "return 1\n"

/*
 * Bump: KEYS = generation keys, ARGV[1] = channel ("" = none), ARGV[2] = message. INCRs every
 * key (atomically, in one round trip) and returns how many.
 */
#define CACHE_LUA_BUMP                                          \
    "for i = 1, #KEYS do redis.call('INCR', KEYS[i]) end\n"     \
    "if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end\n" \
    "return #KEYS\n"

#endif /* PGSHIM_CACHE_CACHE_INT_H */
