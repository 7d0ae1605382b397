/*
 * compose.c: pure composition helpers of the native implementations: a growable string, JSON
 * string escaping byte-identical to PostgreSQL's jsonb output, C-collation sorting and
 * de-duplication of text, id lists in the text and array forms the BU functions print, BFS
 * ordering of tree nodes and the canonical jsonb text of a business-unit object.
 *
 * Nothing here does I/O or touches libpq results; every function is deterministic and covered by
 * tests/unit/rewrite/test_native_compose.c. Allocation failures set the string's sticky flag; the
 * callers check it once before answering.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "functions.h"

void rw__sb_init(rw_sb_t *sb)
{
    sb->p = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->failed = false;
}

void rw__sb_free(rw_sb_t *sb)
{
    free(sb->p);
    rw__sb_init(sb);
}

void rw__sb_reset(rw_sb_t *sb)
{
    sb->len = 0;
    sb->failed = false;
    if (sb->p)
        sb->p[0] = '\0';
}

/* Ensures room for n more bytes plus the terminating NUL. */
static bool sb_reserve(rw_sb_t *sb, size_t n)
{
    if (sb->failed)
        return false;
    if (sb->len + n + 1 <= sb->cap)
        return true;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            sb->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(sb->p, cap);
    if (!p) {
        sb->failed = true;
        return false;
    }
    sb->p = p;
    sb->cap = cap;
    return true;
}

void rw__sb_putn(rw_sb_t *sb, const char *s, size_t n)
{
    if (!sb_reserve(sb, n))
        return;
    if (n)
        memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

void rw__sb_puts(rw_sb_t *sb, const char *s)
{
    rw__sb_putn(sb, s, strlen(s));
}

void rw__sb_putc(rw_sb_t *sb, char c)
{
    rw__sb_putn(sb, &c, 1);
}

void rw__sb_put_i64(rw_sb_t *sb, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    rw__sb_putn(sb, tmp, (size_t)n);
}

void rw__sb_put_json_string(rw_sb_t *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    rw__sb_putc(sb, '"');
    size_t run = 0;   /* bytes copied verbatim are flushed in runs */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[7];
        switch (c) {
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        default:
            if (c < 0x20) {
                ubuf[0] = '\\';
                ubuf[1] = 'u';
                ubuf[2] = '0';
                ubuf[3] = '0';
                ubuf[4] = hex[c >> 4];
                ubuf[5] = hex[c & 15];
                ubuf[6] = '\0';
                esc = ubuf;
            }
            break;
        }
        if (esc) {
            rw__sb_putn(sb, s + i - run, run);
            run = 0;
            rw__sb_puts(sb, esc);
        } else {
            run++;
        }
    }
    rw__sb_putn(sb, s + n - run, run);
    rw__sb_putc(sb, '"');
}

bool rw__parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    /* int8in accepts surrounding whitespace; canonical texts have none, but be as lenient. */
    while (isspace((unsigned char)*s))
        s++;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return false;
    *out = (int64_t)v;
    return true;
}

bool rw__parse_bool(const char *s, bool *out)
{
    /* boolin: trims whitespace, then accepts unique prefixes of true/false/yes/no, on/off
       (at least two letters for "on"/"of"), and 1/0, case-insensitively. */
    if (!s)
        return false;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0)
        return false;
    static const struct { const char *w; size_t min; bool v; } words[] = {
        {"true", 1, true}, {"false", 1, false}, {"yes", 1, true}, {"no", 1, false},
        {"on", 2, true}, {"off", 2, false},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (n >= words[i].min && n <= strlen(words[i].w) && strncasecmp(s, words[i].w, n) == 0) {
            *out = words[i].v;
            return true;
        }
    }
    if (n == 1 && (s[0] == '1' || s[0] == '0')) {
        *out = s[0] == '1';
        return true;
    }
    return false;
}

char *rw__ascii_lower(const char *s)
{
    size_t n = strlen(s);
    char *r = malloc(n + 1);
    if (!r)
        return NULL;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        r[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
    }
    return r;
}

bool rw__is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

static int cmp_cstr(const void *a, const void *b)
{
    /* strcmp compares as unsigned char, which is memcmp order with shorter prefixes first:
       PostgreSQL's C-collation order for strings without NUL bytes. */
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t rw__strv_sort_unique(const char **v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_cstr);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i], v[k - 1]) != 0)
            v[k++] = v[i];
    return k;
}

void rw__sb_join(rw_sb_t *sb, const char *const *v, size_t n, const char *sep)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            rw__sb_puts(sb, sep);
        rw__sb_puts(sb, v[i]);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void rw__i64_sort(int64_t *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_i64);
}

size_t rw__i64_unique_sorted(int64_t *v, size_t n)
{
    if (n < 2)
        return n;
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

void rw__sb_id_list(rw_sb_t *sb, const int64_t *v, size_t n, bool array_form)
{
    if (array_form)
        rw__sb_putc(sb, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            rw__sb_putc(sb, array_form ? ',' : ' ');
        rw__sb_put_i64(sb, v[i]);
    }
    if (array_form)
        rw__sb_putc(sb, '}');
    else if (n == 0)
        rw__sb_putn(sb, "", 0);   /* makes sb->p a valid empty string */
}

static int cmp_bfs(const void *a, const void *b)
{
    const rw_bu_node_t *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void rw__bu_sort_bfs(rw_bu_node_t *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_bfs);
}

static int cmp_node_id(const void *a, const void *b)
{
    const rw_bu_node_t *x = a, *y = b;
    if (x->id != y->id)
        return (x->id > y->id) - (x->id < y->id);
    /* Stable tie-break on depth so "first occurrence" is well defined. */
    return (x->depth > y->depth) - (x->depth < y->depth);
}

size_t rw__bu_sort_unique_id(rw_bu_node_t *v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_node_id);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i].id != v[k - 1].id)
            v[k++] = v[i];
    return k;
}

/* jsonb orders object keys by length first, then bytewise (lengthCompareJsonbString). Keys here
   are decimal ids. */
static int cmp_jsonb_key(const void *a, const void *b)
{
    const rw_bu_node_t *x = a, *y = b;
    char kx[24], ky[24];
    int lx = snprintf(kx, sizeof kx, "%" PRId64, x->id);
    int ly = snprintf(ky, sizeof ky, "%" PRId64, y->id);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return memcmp(kx, ky, (size_t)lx);
}

void rw__bu_jsonb(rw_sb_t *sb, rw_bu_node_t *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_jsonb_key);
    rw__sb_putc(sb, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            rw__sb_puts(sb, ", ");
        rw__sb_putc(sb, '"');
        rw__sb_put_i64(sb, v[i].id);
        /* Inner keys bucode (6), buname (6), parent_id (9): canonical order is exactly this. */
        rw__sb_puts(sb, "\": {\"bucode\": ");
        if (v[i].bucode)
            rw__sb_put_json_string(sb, v[i].bucode, v[i].bucode_len);
        else
            rw__sb_puts(sb, "null");
        rw__sb_puts(sb, ", \"buname\": ");
        if (v[i].buname)
            rw__sb_put_json_string(sb, v[i].buname, v[i].buname_len);
        else
            rw__sb_puts(sb, "null");
        rw__sb_puts(sb, ", \"parent_id\": ");
        if (v[i].parent_null)
            rw__sb_puts(sb, "null");
        else
            rw__sb_put_i64(sb, v[i].parent_id);
        rw__sb_putc(sb, '}');
    }
    rw__sb_putc(sb, '}');
}
