/*
 * Key derivation for the result cache: hashing helpers, the canonical key base of a call, the
 * generation keys of the tables it reads, and the full key once generations are known.
 *
 * Invariant: the mapping from a call's identity (tenant, function, variant, typed arguments,
 * settings hash, date) to its base is injective. Free-form fields are percent-encoded so they
 * cannot contain the ':' separator; arguments are length-prefixed so their bytes are taken
 * verbatim and no two argument lists render the same.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_int.h"

uint64_t cache_sum64(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);   /* host order: values are checked where they are made */
        h ^= w;
        h = (h << 31 | h >> 33) * 0x9e3779b97f4a7c15ull;
    }
    uint64_t w = 0;
    memcpy(&w, b + i, n - i);
    h ^= w ^ (uint64_t)n;
    h = (h << 31 | h >> 33) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

uint64_t cache_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Hashes a length word before the bytes so ("ab","c") and ("a","bc") differ. */
static uint64_t fnv_field(uint64_t h, const char *s)
{
    uint8_t tag;
    if (s == NULL) {
        tag = 0;
        return cache_fnv1a(h, &tag, 1);
    }
    size_t n = strlen(s);
    uint8_t len[9];
    len[0] = 1;
    for (int i = 0; i < 8; i++)
        len[1 + i] = (uint8_t)(n >> (56 - 8 * i));
    h = cache_fnv1a(h, len, sizeof len);
    return cache_fnv1a(h, s, n);
}

uint64_t cache_settings_hash(const char *const *names, const char *const *values, size_t n)
{
    uint64_t h = CACHE_FNV_INIT;
    for (size_t i = 0; i < n; i++) {
        h = fnv_field(h, names[i]);
        h = fnv_field(h, values[i]);
    }
    return h;
}

/* ---------------------------------------------------------------------------------------------
 * A tiny string builder with a sticky failure flag, like pgw_buf but NUL-terminated text.
 * ------------------------------------------------------------------------------------------- */
void cache__sb_init(cache_sb_t *sb)
{
    sb->s = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->failed = false;
}

static void sb_reserve(cache_sb_t *sb, size_t more)
{
    if (sb->failed)
        return;
    if (sb->len + more + 1 <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + more + 1)
        cap *= 2;
    char *n = realloc(sb->s, cap);
    if (n == NULL) {
        sb->failed = true;
        return;
    }
    sb->s = n;
    sb->cap = cap;
}

void cache__sb_put(cache_sb_t *sb, const void *p, size_t n)
{
    sb_reserve(sb, n);
    if (sb->failed)
        return;
    memcpy(sb->s + sb->len, p, n);
    sb->len += n;
    sb->s[sb->len] = '\0';
}

void cache__sb_puts(cache_sb_t *sb, const char *s)
{
    cache__sb_put(sb, s, strlen(s));
}

/* Percent-encodes everything that could be confused with structure or is not plain printable
   ASCII. '%' itself is encoded, which makes the encoding injective. */
void cache__sb_put_escaped(cache_sb_t *sb, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if (ch <= 0x20 || ch >= 0x7f || ch == ':' || ch == '%' || ch == '{' || ch == '}') {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            cache__sb_put(sb, e, 3);
        } else {
            cache__sb_put(sb, p, 1);
        }
    }
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *cache_gen_key(const char *prefix, const char *tenant, const char *table)
{
    cache_sb_t sb;
    cache__sb_init(&sb);
    cache__sb_puts(&sb, prefix);
    cache__sb_puts(&sb, ":gen:");
    cache__sb_put_escaped(&sb, tenant);
    cache__sb_puts(&sb, ":");
    cache__sb_put_escaped(&sb, table);
    if (sb.failed || sb.s == NULL) {
        free(sb.s);
        return NULL;
    }
    return sb.s;
}

void cache_key_clear(cache_key_t *k)
{
    free(k->base);
    free(k->tenant);
    free(k->function);
    free(k->full);
    for (int i = 0; i < CACHE_MAX_TABLES; i++)
        free(k->gen_keys[i]);
    memset(k, 0, sizeof *k);
}

int cache_key_build(cache_key_t *k, const char *prefix, const cache_key_spec_t *spec)
{
    memset(k, 0, sizeof *k);
    if (prefix == NULL || *prefix == '\0' || spec == NULL || spec->tenant == NULL ||
        spec->function == NULL || *spec->function == '\0' || spec->nargs < 0 ||
        spec->nargs > CACHE_MAX_ARGS || (spec->nargs > 0 && spec->args == NULL) ||
        spec->ntables < 1 || spec->ntables > CACHE_MAX_TABLES || spec->tables == NULL)
        return CACHE_EINVAL;
    for (int i = 0; i < spec->ntables; i++)
        if (spec->tables[i] == NULL || *spec->tables[i] == '\0')
            return CACHE_EINVAL;
    for (int i = 0; i < spec->nargs; i++)
        if (!spec->args[i].is_null && spec->args[i].val == NULL && spec->args[i].len > 0)
            return CACHE_EINVAL;

    cache_sb_t sb;
    char num[64];
    cache__sb_init(&sb);
    cache__sb_puts(&sb, prefix);
    cache__sb_puts(&sb, ":v3:");  /* with the value format (CACHE_VALUE_VERSION) */
    cache__sb_put_escaped(&sb, spec->tenant);
    cache__sb_puts(&sb, ":");
    cache__sb_put_escaped(&sb, spec->function);
    cache__sb_puts(&sb, ":");
    cache__sb_put_escaped(&sb, spec->variant ? spec->variant : "");
    snprintf(num, sizeof num, ":%d", spec->nargs);
    cache__sb_puts(&sb, num);
    for (int i = 0; i < spec->nargs; i++) {
        const cache_arg_t *a = &spec->args[i];
        if (a->is_null) {
            cache__sb_puts(&sb, ",~");
            continue;
        }
        snprintf(num, sizeof num, ",%d#%zu'", a->type, a->len);
        cache__sb_puts(&sb, num);
        if (a->len)
            cache__sb_put(&sb, a->val, a->len);
    }
    snprintf(num, sizeof num, ":%016" PRIx64, spec->settings_hash);
    cache__sb_puts(&sb, num);
    if (spec->date != NULL) {
        cache__sb_puts(&sb, ":d");
        cache__sb_put_escaped(&sb, spec->date);
    }
    if (sb.failed)
        goto nomem;
    k->base = sb.s;
    k->base_len = sb.len;
    k->base_hash = cache_fnv1a(CACHE_FNV_INIT, k->base, k->base_len);
    k->settings_hash = spec->settings_hash;
    k->tenant = xstrdup(spec->tenant);
    k->function = xstrdup(spec->function);
    if (k->tenant == NULL || k->function == NULL)
        goto nomem_k;
    k->ntables = spec->ntables;
    for (int i = 0; i < spec->ntables; i++) {
        k->gen_keys[i] = cache_gen_key(prefix, spec->tenant, spec->tables[i]);
        if (k->gen_keys[i] == NULL)
            goto nomem_k;
    }
    return 0;

nomem:
    free(sb.s);
nomem_k:
    cache_key_clear(k);
    return CACHE_ENOMEM;
}

static bool is_decimal(const char *s, size_t n)
{
    if (n == 0 || n >= CACHE_GEN_MAX)
        return false;
    size_t i = (s[0] == '-') ? 1 : 0;
    if (i == n)
        return false;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int cache__key_set_gens_n(cache_key_t *k, const char *const *gens, const size_t *lens)
{
    if (k->base == NULL)
        return CACHE_EINVAL;
    for (int i = 0; i < k->ntables; i++)
        if (gens[i] == NULL || !is_decimal(gens[i], lens[i]))
            return CACHE_EINVAL;
    cache_sb_t sb;
    cache__sb_init(&sb);
    cache__sb_put(&sb, k->base, k->base_len);
    for (int i = 0; i < k->ntables; i++) {
        cache__sb_puts(&sb, ":");
        cache__sb_put(&sb, gens[i], lens[i]);
    }
    if (sb.failed) {
        free(sb.s);
        return CACHE_ENOMEM;
    }
    for (int i = 0; i < k->ntables; i++) {
        memcpy(k->gens[i], gens[i], lens[i]);
        k->gens[i][lens[i]] = '\0';
    }
    free(k->full);
    k->full = sb.s;
    k->full_len = sb.len;
    k->have_gens = true;
    return 0;
}

int cache_key_set_gens(cache_key_t *k, const char *const *gens)
{
    size_t lens[CACHE_MAX_TABLES];
    for (int i = 0; i < k->ntables; i++)
        lens[i] = gens[i] ? strlen(gens[i]) : 0;
    return cache__key_set_gens_n(k, gens, lens);
}
