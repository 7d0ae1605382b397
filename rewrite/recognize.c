/*
 * Recognition of legacy calls: the byte-level pre-filter, the libpg_query walk that accepts
 * exactly one call in a shape the legacy callers send, argument extraction and resolution
 * against the registered signature, extended-protocol templates (Parse) and their binding
 * (Bind), and the capability query matched by fingerprint.
 *
 * Invariants:
 *  - Accepting is the only risky answer. Whenever PostgreSQL could answer differently from
 *    what the extracted call says (an argument PostgreSQL would reject or convert in a way not
 *    modelled here, a literal whose meaning depends on a session setting, a type that changes
 *    the result type), the statement is not recognised and passes through unchanged.
 *  - Argument texts are in PostgreSQL's canonical input form of the resolved type: integers
 *    as plain decimal, booleans as "true"/"false", text verbatim, timestamptz as given by the
 *    client (or, for a binary Bind value, a canonical UTC text).
 *  - Calls are read from libpg_query's JSON parse tree (pg_query_parse, read by
 *    recognize_json.c), not its protobuf: on libpg_query 15-4.0 the JSON costs about 5 us per
 *    legacy call against about 80 us for pg_query_parse_protobuf plus the protobuf-c unpack.
 *    The JSON writer prints integer constants that are not positive as {}; those are read back
 *    from the statement text (nonpositive_int_at). Every node is checked against a whitelist
 *    of the keys it may carry, so a field this code does not know about refuses the statement.
 *  - The capability query is compared as a protobuf tree with locations zeroed (exact for
 *    every constant); that slower path only runs on texts whose fingerprint already matched.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <pg_query.h>
#include <pg_query.pb-c.h>

#include "rw_int.h"

/* Maximum length of an identifier PostgreSQL keeps without truncating it (NAMEDATALEN - 1).
   A longer alias makes PostgreSQL emit a NOTICE, which the native path would not. */
#define RW_MAX_IDENT 63

/* ---------------------------------------------------------------------------------------------
 * Pre-filter
 *
 * Every registered function name starts with "fn_" or "fun_", so the scan jumps from one '_'
 * to the next with memchr (vectorised in glibc) and only looks around underscores. The
 * capability query's token is checked at the same underscore hits when it contains one,
 * otherwise by a separate case-insensitive search.
 * ------------------------------------------------------------------------------------------- */

static inline unsigned char lower_ascii(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Case-insensitive comparison of n bytes of s against a lower-case pattern. */
static inline bool ci_eq(const char *s, const char *lower_pat, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower_ascii((unsigned char)s[i]) != (unsigned char)lower_pat[i])
            return false;
    return true;
}

/* Tails after "fn_" and after "fun_" of the registered names. */
static const char *const fn_tails[] = {
    "menupbt", "mendownbt", "menallbt", "get_bulist", "getbulist_basedon_idnf",
    "getassetvsquestionset", "getassetdetails", "get_schedule_for_adhoc",
};
static const char *const fun_tails[] = {"getjobneed", "getexttourjobneed"};

static bool tail_matches(const char *p, const char *end, const char *const *tails, size_t n)
{
    size_t left = (size_t)(end - p);
    for (size_t i = 0; i < n; i++) {
        size_t tl = strlen(tails[i]);
        if (tl <= left && ci_eq(p, tails[i], tl))
            return true;
    }
    return false;
}

/* Capability query registration (set at start and reload, read on the loop thread). */
static struct {
    bool set;
    uint64_t fingerprint;
    uint8_t *tree;       /* canonical_tree() of the registered text */
    size_t tree_len;
    char token[64];      /* lower-case distinctive identifier, "" if none */
    size_t token_len;
    ssize_t token_us;    /* offset of the first '_' in token, -1 if it has none */
    uint8_t skip[256];   /* Horspool shifts by lower-cased byte, for a token without '_' */
    /* The last text that matched, byte for byte: an application sends the same text every
       time, and this spares the three parses a match costs (~1 ms for the fixture's text). */
    char *hit_text;
    size_t hit_len;
} caps;

/* True when sql is byte for byte the last text that matched the capability query. */
static bool caps_hit_again(const char *sql, size_t len)
{
    return caps.hit_text != NULL && len == caps.hit_len && memcmp(sql, caps.hit_text, len) == 0;
}

/* Case-insensitive Boyer-Moore-Horspool search for the capability token: on typical SQL it
   inspects about one byte in token_len, so the extra pass costs little. */
static bool caps_token_search(const char *s, size_t len)
{
    size_t m = caps.token_len;
    if (m == 0 || m > len)
        return false;
    const unsigned char *t = (const unsigned char *)caps.token;
    for (size_t i = 0; i + m <= len;) {
        unsigned char last = lower_ascii((unsigned char)s[i + m - 1]);
        if (last == t[m - 1]) {
            size_t k = 0;
            while (k + 1 < m && lower_ascii((unsigned char)s[i + k]) == t[k])
                k++;
            if (k + 1 == m)
                return true;
        }
        i += caps.skip[last];
    }
    return false;
}

static void caps_build_skip(void)
{
    size_t m = caps.token_len;
    for (int c = 0; c < 256; c++)
        caps.skip[c] = (uint8_t)(m > 0 ? m : 1);
    for (size_t k = 0; k + 1 < m; k++)
        caps.skip[(unsigned char)caps.token[k]] = (uint8_t)(m - 1 - k);
    /* Upper-case bytes are folded before the lookup, so only lower-case entries matter. */
}

static bool ci_search(const char *s, size_t len, const char *pat, size_t plen)
{
    if (plen == 0 || plen > len)
        return plen == 0;
    unsigned char first = (unsigned char)pat[0];
    for (size_t i = 0; i + plen <= len; i++)
        if (lower_ascii((unsigned char)s[i]) == first && ci_eq(s + i + 1, pat + 1, plen - 1))
            return true;
    return false;
}

/* Checks the underscore at p for a registered name (or the capability token) around it. */
static inline bool underscore_hit(const char *sql, const char *p, const char *end, bool want_caps)
{
    size_t before = (size_t)(p - sql);
    if (before >= 2 && lower_ascii((unsigned char)p[-1]) == 'n') {
        unsigned char c2 = lower_ascii((unsigned char)p[-2]);
        if (c2 == 'f' && tail_matches(p + 1, end, fn_tails, sizeof fn_tails / sizeof *fn_tails))
            return true;
        if (c2 == 'u' && before >= 3 && lower_ascii((unsigned char)p[-3]) == 'f' &&
            tail_matches(p + 1, end, fun_tails, sizeof fun_tails / sizeof *fun_tails))
            return true;
    }
    if (want_caps && before >= (size_t)caps.token_us &&
        (size_t)(end - (p - caps.token_us)) >= caps.token_len &&
        ci_eq(p - caps.token_us, caps.token, caps.token_len))
        return true;
    return false;
}

/* Finds underscores eight bytes at a time (SWAR: a byte equal to '_' becomes a zero byte after
   the XOR, and the classic has-zero-byte test flags it), so the cost per call is about one
   step per word plus a few compares per underscore, with no function call per hit. */
static bool prefilter_names(const char *sql, size_t len)
{
    const char *p = sql, *end = sql + len;
    bool want_caps = caps.set && caps.token_us >= 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    const uint64_t us = ones * (uint64_t)'_';
    while ((size_t)(end - p) >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t x = w ^ us;
        uint64_t z = (x - ones) & ~x & highs;
        while (z != 0) {
            /* Bytes are in memory order on little-endian machines; the lowest flagged byte is
               exact (the borrow can only produce false flags above a true zero byte, and every
               flagged candidate is re-checked). */
            int bit = __builtin_ctzll(z);
            const char *q = p + bit / 8;
            if (*q == '_' && underscore_hit(sql, q, end, want_caps))
                return true;
            z &= z - 1;
        }
        p += 8;
    }
#endif
    for (; p < end; p++)
        if (*p == '_' && underscore_hit(sql, p, end, want_caps))
            return true;
    return false;
}

bool rw_prefilter(const char *sql, size_t len)
{
    if (sql == NULL)
        return false;
    if (prefilter_names(sql, len))
        return true;
    return caps.set && caps.token_us < 0 && caps_token_search(sql, len);
}

/* ---------------------------------------------------------------------------------------------
 * Input functions: what PostgreSQL 15's int2in/int4in/int8in and boolin accept.
 * ------------------------------------------------------------------------------------------- */

static inline bool pg_isspace(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* pg_strtoint16/32/64: optional surrounding whitespace, optional sign, at least one decimal
   digit, nothing else; out of range is an error. PostgreSQL 15 accepts neither underscores nor
   hexadecimal. Accumulates negatively so that the minimum value parses. */
static bool parse_pg_int(const char *s, size_t len, int bits, int64_t *out)
{
    const char *p = s, *end = s + len;
    int64_t min = bits == 16 ? INT16_MIN : bits == 32 ? INT32_MIN : INT64_MIN;
    int64_t max = bits == 16 ? INT16_MAX : bits == 32 ? INT32_MAX : INT64_MAX;
    while (p < end && pg_isspace((unsigned char)*p))
        p++;
    bool neg = false;
    if (p < end && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    if (p == end || !isdigit((unsigned char)*p))
        return false;
    int64_t acc = 0;
    while (p < end && isdigit((unsigned char)*p)) {
        int d = *p - '0';
        if (acc < (min + d) / 10)
            return false;
        acc = acc * 10 - d;
        p++;
    }
    while (p < end && pg_isspace((unsigned char)*p))
        p++;
    if (p != end)
        return false;
    if (!neg) {
        if (acc < -max)
            return false;
        acc = -acc;
    }
    *out = acc;
    return true;
}

/* boolin: trims whitespace, then parse_bool_with_len (case-insensitive prefixes of true,
   false, yes, no; at least two letters of on/off; exactly 1 or 0). */
static bool parse_pg_bool(const char *s, size_t len, bool *out)
{
    while (len > 0 && pg_isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && pg_isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0)
        return false;
    switch (lower_ascii((unsigned char)s[0])) {
    case 't':
        if (len <= 4 && ci_eq(s, "true", len)) { *out = true; return true; }
        break;
    case 'f':
        if (len <= 5 && ci_eq(s, "false", len)) { *out = false; return true; }
        break;
    case 'y':
        if (len <= 3 && ci_eq(s, "yes", len)) { *out = true; return true; }
        break;
    case 'n':
        if (len <= 2 && ci_eq(s, "no", len)) { *out = false; return true; }
        break;
    case 'o':
        if (len == 2 && ci_eq(s, "on", 2)) { *out = true; return true; }
        if (len >= 2 && len <= 3 && ci_eq(s, "off", len)) { *out = false; return true; }
        break;
    case '1':
        if (len == 1) { *out = true; return true; }
        break;
    case '0':
        if (len == 1) { *out = false; return true; }
        break;
    }
    return false;
}

/* A timestamptz literal is kept as the client wrote it (the native SQL casts it), except the
   special inputs whose value depends on when or in which transaction they are read. */
static bool timestamptz_text_ok(const char *s, size_t len)
{
    static const char *const relative[] = {"now", "today", "tomorrow", "yesterday"};
    if (memchr(s, '\0', len) != NULL)
        return false;
    for (size_t i = 0; i < sizeof relative / sizeof *relative; i++)
        if (ci_search(s, len, relative[i], strlen(relative[i])))
            return false;
    return true;
}

static char *int_text(int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    return rw__strndup(buf, (size_t)n);
}

/* ---------------------------------------------------------------------------------------------
 * Argument values
 * ------------------------------------------------------------------------------------------- */

/* A value extracted from one argument expression, before resolution against the signature.
   oid 0 = an untyped literal or NULL ("unknown" in PostgreSQL), whose text is the raw literal. */
typedef struct rw__val {
    uint32_t oid;
    bool is_null;
    int param;              /* $n, 0 for a constant */
    char *text;             /* owned; NULL for NULLs and params */
} rw__val_t;

typedef struct rw__ctx {
    const char *sql;
    size_t sql_len;
    bool extended;              /* $n allowed (Parse) */
    const uint32_t *declared;   /* Parse's declared OIDs (0 = unspecified) */
    uint16_t ndeclared;
    uint32_t *param_oid;        /* resolved type of each $n (index n-1), sized nslots */
    uint8_t *param_refs;        /* references to each $n */
    int nslots;
    rw_reason_t reason;
} rw__ctx_t;

/* Sets the reason (first one wins) and returns 0: the "not recognised" result. */
static int reject(rw__ctx_t *ctx, rw_reason_t r)
{
    if (ctx->reason == RW_REASON_NONE)
        ctx->reason = r;
    return 0;
}

#define RW__NOMEM (-1)

#define NKEYS(a) (sizeof(a) / sizeof *(a))

/* The sval of a {"String": {"sval": ...}} node, as written in the JSON (no escapes expected in
   the names compared against it). */
static const rw__jv_t *string_node(const rw__jv_t *n)
{
    const rw__jv_t *s = rw__json_node(n, "String");
    return s != NULL ? rw__json_get(s, "sval") : NULL;
}

/* Maps a TypeName to one of the OIDs rw handles; 0 for anything else (typmods, SETOF, %TYPE,
   schemas other than pg_catalog, arrays other than bigint[]). */
static uint32_t type_name_oid(const rw__jv_t *tn)
{
    static const char *const tn_keys[] = {"names", "typemod", "arrayBounds", "location"};
    if (tn == NULL || !rw__json_keys_within(tn, tn_keys, NKEYS(tn_keys)))
        return 0;
    int64_t typemod = -1;
    const rw__jv_t *tm = rw__json_get(tn, "typemod");
    if (tm != NULL && (!rw__json_int(tm, &typemod) || typemod != -1))
        return 0;
    const rw__jv_t *names = rw__json_get(tn, "names");
    if (names == NULL || names->kind != RW_J_ARR || names->n == 0 || names->n > 2)
        return 0;
    const rw__jv_t *last = names->child;
    if (names->n == 2) {
        if (!rw__json_str_eq(string_node(names->child), "pg_catalog"))
            return 0;
        last = names->child->next;
    }
    const rw__jv_t *name = string_node(last);
    static const struct { const char *name; uint32_t oid; } types[] = {
        {"int8", RW_OID_INT8}, {"int4", RW_OID_INT4}, {"int2", RW_OID_INT2},
        {"text", RW_OID_TEXT}, {"varchar", RW_OID_VARCHAR}, {"bool", RW_OID_BOOL},
        {"timestamptz", RW_OID_TIMESTAMPTZ}, {"jsonb", RW_OID_JSONB},
    };
    uint32_t oid = 0;
    for (size_t i = 0; i < NKEYS(types); i++)
        if (rw__json_str_eq(name, types[i].name))
            oid = types[i].oid;
    const rw__jv_t *bounds = rw__json_get(tn, "arrayBounds");
    if (bounds == NULL)
        return oid;
    /* bigint[] (one dimension) is the only array type the callers use. */
    return (bounds->kind == RW_J_ARR && bounds->n == 1 && oid == RW_OID_INT8) ? RW_OID_INT8_ARRAY : 0;
}

static bool is_int_oid(uint32_t oid)
{
    return oid == RW_OID_INT8 || oid == RW_OID_INT4 || oid == RW_OID_INT2;
}

static int int_bits(uint32_t oid)
{
    return oid == RW_OID_INT2 ? 16 : oid == RW_OID_INT4 ? 32 : 64;
}

/* Records a reference to $n with the type it resolves to (0 = not yet known). */
static int note_param(rw__ctx_t *ctx, int n, uint32_t cast_oid, rw__val_t *v)
{
    if (!ctx->extended)
        return reject(ctx, RW_REASON_ARGS);      /* PostgreSQL: "there is no parameter $n" */
    if (n < 1 || n > ctx->nslots)
        return reject(ctx, RW_REASON_PARAM_TYPE);
    if (ctx->param_refs[n - 1]++ != 0)
        return reject(ctx, RW_REASON_ARGS);      /* one $n in two places: not modelled */
    uint32_t declared = ctx->param_oid[n - 1];
    if (cast_oid != 0) {
        if (declared != 0 && declared != cast_oid)
            return reject(ctx, RW_REASON_PARAM_TYPE);
        ctx->param_oid[n - 1] = cast_oid;
    }
    v->oid = ctx->param_oid[n - 1];
    v->param = n;
    return 1;
}

/* Applies an explicit cast to a constant or parameter: the value PostgreSQL computes at parse
   time for `literal::type`. */
static int cast_value(rw__ctx_t *ctx, uint32_t to, rw__val_t *v)
{
    if (v->is_null) {
        v->oid = to;
        return 1;
    }
    const char *t = v->text;
    size_t tl = strlen(t);
    int64_t iv;
    bool bv;
    char *nt = NULL;
    if (v->oid == 0) {                              /* 'literal'::type: the type's input */
        switch (to) {
        case RW_OID_INT8: case RW_OID_INT4: case RW_OID_INT2:
            if (!parse_pg_int(t, tl, int_bits(to), &iv))
                return reject(ctx, RW_REASON_ARGS);
            nt = int_text(iv);
            break;
        case RW_OID_BOOL:
            if (!parse_pg_bool(t, tl, &bv))
                return reject(ctx, RW_REASON_ARGS);
            nt = rw__strndup(bv ? "true" : "false", bv ? 4 : 5);
            break;
        case RW_OID_TEXT: case RW_OID_VARCHAR:
            v->oid = to;
            return 1;
        case RW_OID_TIMESTAMPTZ:
            if (!timestamptz_text_ok(t, tl))
                return reject(ctx, RW_REASON_ARGS);
            v->oid = to;
            return 1;
        default:                                    /* non-NULL bigint[] or jsonb value */
            return reject(ctx, RW_REASON_ARGS);
        }
    } else if (is_int_oid(v->oid)) {                 /* 5::int, 5::text */
        if (!parse_pg_int(t, tl, 64, &iv))
            return reject(ctx, RW_REASON_ARGS);
        if (is_int_oid(to)) {
            int64_t lo = to == RW_OID_INT2 ? INT16_MIN : to == RW_OID_INT4 ? INT32_MIN : INT64_MIN;
            int64_t hi = to == RW_OID_INT2 ? INT16_MAX : to == RW_OID_INT4 ? INT32_MAX : INT64_MAX;
            if (iv < lo || iv > hi)
                return reject(ctx, RW_REASON_ARGS);
            v->oid = to;
            return 1;
        }
        if (to != RW_OID_TEXT && to != RW_OID_VARCHAR)
            return reject(ctx, RW_REASON_ARGS);
        v->oid = to;
        return 1;
    } else if (v->oid == RW_OID_BOOL) {               /* true::bool, true::text */
        if (to == RW_OID_BOOL)
            return 1;
        if (to != RW_OID_TEXT && to != RW_OID_VARCHAR)
            return reject(ctx, RW_REASON_ARGS);
        v->oid = to;
        return 1;
    } else {
        return reject(ctx, RW_REASON_ARGS);
    }
    if (nt == NULL)
        return RW__NOMEM;
    free(v->text);
    v->text = nt;
    v->oid = to;
    return 1;
}

static int node_location(const rw__jv_t *obj)
{
    int64_t loc;
    return rw__json_int(rw__json_get(obj, "location"), &loc) && loc >= 0 && loc <= INT32_MAX
               ? (int)loc : -1;
}

/* Reads a string constant. Plain '...' literals containing a backslash (and U&'' literals)
   mean different things under standard_conforming_strings on and off; libpg_query assumes on,
   so they are not recognised. E'' and dollar-quoted strings do not depend on the setting. */
static int string_const(rw__ctx_t *ctx, const rw__jv_t *c, const rw__jv_t *sval, rw__val_t *v)
{
    const rw__jv_t *str = rw__json_get(sval, "sval");
    bool nomem = false;
    char *s = str != NULL ? rw__json_str_dup(str, &nomem) : rw__strndup("", 0);
    if (s == NULL)
        return (nomem || str == NULL) ? RW__NOMEM : reject(ctx, RW_REASON_ARGS);
    int loc = node_location(c);
    bool bad = false;
    if (loc >= 0 && (size_t)loc < ctx->sql_len) {
        char q = ctx->sql[loc];
        if ((q == 'U' || q == 'u') && (size_t)loc + 1 < ctx->sql_len && ctx->sql[loc + 1] == '&')
            bad = true;
        if (q == '\'' && strchr(s, '\\') != NULL)
            bad = true;
    } else if (strchr(s, '\\') != NULL) {
        bad = true;
    }
    if (bad) {
        free(s);
        return reject(ctx, RW_REASON_ARGS);
    }
    v->oid = 0;
    v->text = s;
    return 1;
}

/* libpg_query 15-4.0 writes an Integer whose value is not positive as {} in its JSON. Such a
   constant is read back from the statement text at its location: PostgreSQL's grammar folds a
   minus sign into the constant and gives it the sign's location, so the text is "-digits" or
   "0"; anything else (a space after the sign, parentheses) is refused. */
static bool nonpositive_int_at(const rw__ctx_t *ctx, int loc, int64_t *out)
{
    if (loc < 0 || (size_t)loc >= ctx->sql_len)
        return false;
    const char *p = ctx->sql + loc, *end = ctx->sql + ctx->sql_len;
    const char *start = p;
    if (*p == '-')
        p++;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p == digits || (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                   *p == '_' || *p == '.')))
        return false;
    int64_t iv;
    if (!parse_pg_int(start, (size_t)(p - start), 32, &iv) || iv > 0)
        return false;
    *out = iv;
    return true;
}

/* A_Const: untyped NULL, integer (int4, or int8 when it only fits 64 bits, as PostgreSQL's
   make_const does), boolean, string. Decimal and exponent numerics are numeric in PostgreSQL
   and match none of the signatures. */
static int const_value(rw__ctx_t *ctx, const rw__jv_t *c, rw__val_t *v)
{
    static const char *const keys[] = {"ival", "fval", "boolval", "sval", "isnull", "location"};
    if (!rw__json_keys_within(c, keys, NKEYS(keys)))
        return reject(ctx, RW_REASON_ARGS);
    const rw__jv_t *x;
    int64_t iv;
    if ((x = rw__json_get(c, "isnull")) != NULL) {
        if (x->kind != RW_J_TRUE || c->n != (rw__json_get(c, "location") ? 2u : 1u))
            return reject(ctx, RW_REASON_ARGS);
        v->oid = 0;
        v->is_null = true;
        return 1;
    }
    if ((x = rw__json_get(c, "ival")) != NULL) {
        const rw__jv_t *n = rw__json_get(x, "ival");
        if (n != NULL) {
            if (!rw__json_int(n, &iv) || iv < INT32_MIN || iv > INT32_MAX)
                return reject(ctx, RW_REASON_ARGS);
        } else if (!nonpositive_int_at(ctx, node_location(c), &iv)) {
            return reject(ctx, RW_REASON_ARGS);
        }
        v->oid = RW_OID_INT4;
        v->text = int_text(iv);
        return v->text != NULL ? 1 : RW__NOMEM;
    }
    if ((x = rw__json_get(c, "fval")) != NULL) {
        const rw__jv_t *f = rw__json_get(x, "fval");
        if (f == NULL || f->kind != RW_J_STR || f->slen == 0)
            return reject(ctx, RW_REASON_ARGS);
        for (uint32_t k = (f->s[0] == '-') ? 1 : 0; k < f->slen; k++)
            if (f->s[k] < '0' || f->s[k] > '9')
                return reject(ctx, RW_REASON_ARGS);
        if (!parse_pg_int(f->s, f->slen, 64, &iv))
            return reject(ctx, RW_REASON_ARGS);
        v->oid = RW_OID_INT8;
        v->text = int_text(iv);
        return v->text != NULL ? 1 : RW__NOMEM;
    }
    if ((x = rw__json_get(c, "boolval")) != NULL) {
        const rw__jv_t *b = rw__json_get(x, "boolval");
        bool bv = b != NULL && b->kind == RW_J_TRUE;
        v->oid = RW_OID_BOOL;
        v->text = rw__strndup(bv ? "true" : "false", bv ? 4 : 5);
        return v->text != NULL ? 1 : RW__NOMEM;
    }
    if ((x = rw__json_get(c, "sval")) != NULL)
        return string_const(ctx, c, x, v);
    return reject(ctx, RW_REASON_ARGS);
}

static int param_number(const rw__jv_t *pr)
{
    static const char *const keys[] = {"number", "location"};
    int64_t n;
    if (!rw__json_keys_within(pr, keys, NKEYS(keys)) ||
        !rw__json_int(rw__json_get(pr, "number"), &n) || n < 1 || n > INT32_MAX)
        return -1;
    return (int)n;
}

/* One argument expression: a constant, $n, or one cast of either. */
static int arg_value(rw__ctx_t *ctx, const rw__jv_t *n, rw__val_t *v)
{
    const rw__jv_t *x;
    if ((x = rw__json_node(n, "A_Const")) != NULL)
        return const_value(ctx, x, v);
    if ((x = rw__json_node(n, "ParamRef")) != NULL)
        return note_param(ctx, param_number(x), 0, v);
    if ((x = rw__json_node(n, "TypeCast")) != NULL) {
        static const char *const keys[] = {"arg", "typeName", "location"};
        if (!rw__json_keys_within(x, keys, NKEYS(keys)))
            return reject(ctx, RW_REASON_ARGS);
        uint32_t to = type_name_oid(rw__json_get(x, "typeName"));
        const rw__jv_t *arg = rw__json_get(x, "arg");
        if (to == 0 || arg == NULL)
            return reject(ctx, RW_REASON_ARGS);
        const rw__jv_t *inner;
        if ((inner = rw__json_node(arg, "ParamRef")) != NULL)
            return note_param(ctx, param_number(inner), to, v);
        if ((inner = rw__json_node(arg, "A_Const")) == NULL)
            return reject(ctx, RW_REASON_ARGS);
        int rc = const_value(ctx, inner, v);
        if (rc <= 0)
            return rc;
        return cast_value(ctx, to, v);
    }
    return reject(ctx, RW_REASON_ARGS);   /* NamedArgExpr, expressions, subqueries, ... */
}

/* Types a parameter may be declared (or cast) as for a parameter of signature type `want`. */
static bool param_oid_fits(rw_type_t want, uint32_t oid)
{
    switch (want) {
    case RW_T_INT8: return is_int_oid(oid);
    case RW_T_TEXT: return oid == RW_OID_TEXT || oid == RW_OID_VARCHAR;
    case RW_T_BOOL: return oid == RW_OID_BOOL;
    case RW_T_TIMESTAMPTZ: return oid == RW_OID_TIMESTAMPTZ;
    default: return false;
    }
}

/* Resolves an extracted value against parameter `i` of fn the way PostgreSQL's function
   resolution and coercion do for these cases, and stores it as call->args[i] (taking over
   v->text). Sets call->result_oid for the polymorphic parameter. */
static int resolve_arg(rw__ctx_t *ctx, rw_call_t *call, int i, rw__val_t *v)
{
    const rw_param_info_t *pi = rw_fn_param(call->fn, i);
    rw_arg_t *a = &call->args[i];
    a->is_null = v->is_null;
    a->param = v->param;

    if (pi->type == RW_T_ANYELEMENT) {
        /* The polymorphic argument fixes the result type. An unknown literal or NULL, or an
           unspecified parameter, makes PostgreSQL fail with "could not determine polymorphic
           type" (verified on 15.20, also for fn_menupbt(6, 'text')). */
        uint32_t oid = v->oid;
        if (oid == 0)
            return reject(ctx, v->param ? RW_REASON_PARAM_TYPE : RW_REASON_ARGS);
        if (call->fn == RW_FN_GET_BULIST) {
            if (oid == RW_OID_INT8_ARRAY)
                a->type = RW_T_INT8_ARRAY;
            else if (oid == RW_OID_JSONB)
                a->type = RW_T_JSONB;
            else if (oid == RW_OID_TEXT)
                a->type = RW_T_TEXT;
            else
                return reject(ctx, v->param ? RW_REASON_PARAM_TYPE : RW_REASON_ARGS);
            /* The value is ignored; only NULL is accepted for the non-text types so that no
               array or jsonb literal needs validating (a constant one was already refused). */
        } else {
            if (oid != RW_OID_TEXT)
                return reject(ctx, v->param ? RW_REASON_PARAM_TYPE : RW_REASON_ARGS);
            a->type = RW_T_TEXT;
        }
        call->result_oid = oid;
        a->text = v->text;
        v->text = NULL;
        return 1;
    }

    a->type = pi->type;
    if (v->param) {
        if (v->oid == 0) {
            /* Unspecified: PostgreSQL infers the parameter's type from the function. */
            v->oid = rw_type_oid(pi->type);
            ctx->param_oid[v->param - 1] = v->oid;
        } else if (!param_oid_fits(pi->type, v->oid)) {
            return reject(ctx, RW_REASON_PARAM_TYPE);
        }
        return 1;
    }
    if (v->is_null) {
        /* An untyped NULL takes the parameter's type; a typed one must fit it. */
        if (v->oid != 0 && !param_oid_fits(pi->type, v->oid))
            return reject(ctx, RW_REASON_ARGS);
        return 1;
    }
    if (v->oid == 0) {
        /* Unknown literal: coerced with the parameter type's input function (cast_value
           leaves v untouched when it refuses). */
        int rc = cast_value(ctx, rw_type_oid(pi->type), v);
        if (rc <= 0)
            return rc;
    } else if (!param_oid_fits(pi->type, v->oid)) {
        return reject(ctx, RW_REASON_ARGS);      /* e.g. an integer for a text parameter */
    }
    a->text = v->text;
    v->text = NULL;
    return 1;
}

/* Fills parameters the caller omitted with the signature's defaults. */
static int fill_defaults(rw__ctx_t *ctx, rw_call_t *call)
{
    int np = rw_fn_nparams(call->fn);
    for (int i = call->nargs; i < np; i++) {
        const rw_param_info_t *pi = rw_fn_param(call->fn, i);
        if (!pi->has_default)
            return reject(ctx, RW_REASON_ARGS);     /* PostgreSQL: function does not exist */
        rw_arg_t *a = &call->args[i];
        a->type = pi->default_type;
        a->param = 0;
        a->is_null = pi->default_null;
        a->text = NULL;
        call->nargs = i + 1;
        if (!pi->default_null) {
            a->text = rw__strndup(pi->default_text, strlen(pi->default_text));
            if (a->text == NULL)
                return RW__NOMEM;
        }
        if (pi->type == RW_T_ANYELEMENT)
            call->result_oid = rw_type_oid(pi->default_type);
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Statement shape
 * ------------------------------------------------------------------------------------------- */

/* The registered function a FuncCall names: `f` or `public.f`, no aggregate, window or
   VARIADIC decoration. Quoted names arrive case-preserved, so "FN_MENUPBT" does not match, as
   in PostgreSQL. */
static int call_fn(const rw__jv_t *fc)
{
    static const char *const keys[] = {"funcname", "args", "funcformat", "location"};
    if (!rw__json_keys_within(fc, keys, NKEYS(keys)))
        return -1;
    const rw__jv_t *ff = rw__json_get(fc, "funcformat");
    if (ff != NULL && !rw__json_str_eq(ff, "COERCE_EXPLICIT_CALL"))
        return -1;
    const rw__jv_t *names = rw__json_get(fc, "funcname");
    if (names == NULL || names->kind != RW_J_ARR || names->n == 0 || names->n > 2)
        return -1;
    const rw__jv_t *last = names->child;
    if (names->n == 2) {
        if (!rw__json_str_eq(string_node(names->child), "public"))
            return -1;
        last = names->child->next;
    }
    const rw__jv_t *name = string_node(last);
    for (int i = 0; i < RW_FN__COUNT; i++)
        if (rw__json_str_eq(name, rw_fn_name((rw_fn_t)i)))
            return i;
    return -1;
}

/* The one statement's SelectStmt when it has nothing but a target list, an optional FROM
   list and the default LIMIT/set-operation markers; NULL otherwise. */
static const rw__jv_t *plain_select(const rw__jv_t *stmt)
{
    static const char *const keys[] = {"targetList", "fromClause", "limitOption", "op"};
    const rw__jv_t *s = rw__json_node(stmt, "SelectStmt");
    if (s == NULL || !rw__json_keys_within(s, keys, NKEYS(keys)))
        return NULL;
    const rw__jv_t *x = rw__json_get(s, "limitOption");
    if (x != NULL && !rw__json_str_eq(x, "LIMIT_OPTION_DEFAULT"))
        return NULL;
    x = rw__json_get(s, "op");
    if (x != NULL && !rw__json_str_eq(x, "SETOP_NONE"))
        return NULL;
    x = rw__json_get(s, "targetList");
    if (x == NULL || x->kind != RW_J_ARR || x->n != 1)
        return NULL;
    return s;
}

/* The FuncCall of `select * from f(...)` (from set) or of `select f(...)`; NULL otherwise. */
static const rw__jv_t *range_function_call(const rw__jv_t *from)
{
    static const char *const keys[] = {"functions"};
    if (from == NULL || from->kind != RW_J_ARR || from->n != 1)
        return NULL;
    const rw__jv_t *rf = rw__json_node(from->child, "RangeFunction");
    if (rf == NULL || !rw__json_keys_within(rf, keys, NKEYS(keys)))
        return NULL;
    const rw__jv_t *fns = rw__json_get(rf, "functions");
    if (fns == NULL || fns->kind != RW_J_ARR || fns->n != 1)
        return NULL;
    const rw__jv_t *l = rw__json_node(fns->child, "List");
    const rw__jv_t *items = l != NULL ? rw__json_get(l, "items") : NULL;
    if (items == NULL || items->kind != RW_J_ARR || items->n < 1 || items->n > 2 ||
        (items->n == 2 && !rw__json_is_empty_obj(items->child->next)))
        return NULL;
    return rw__json_node(items->child, "FuncCall");
}

/* Finds the FuncCall of an accepted shape and fills shape and colname. */
static const rw__jv_t *match_shape(rw__ctx_t *ctx, const rw__jv_t *stmt, rw_call_t *call)
{
    static const char *const rt_keys[] = {"name", "val", "location"};
    const rw__jv_t *s = plain_select(stmt);
    const rw__jv_t *rt = s != NULL ? rw__json_node(rw__json_get(s, "targetList")->child, "ResTarget")
                                   : NULL;
    const rw__jv_t *val = rt != NULL ? rw__json_get(rt, "val") : NULL;
    if (val == NULL || !rw__json_keys_within(rt, rt_keys, NKEYS(rt_keys))) {
        reject(ctx, RW_REASON_SHAPE);
        return NULL;
    }
    const rw__jv_t *name = rw__json_get(rt, "name");
    const rw__jv_t *from = rw__json_get(s, "fromClause");
    const rw__jv_t *fc = NULL;
    if (from == NULL) {
        /* select f(args) [[as] alias] */
        fc = rw__json_node(val, "FuncCall");
        if (fc == NULL) {
            reject(ctx, RW_REASON_SHAPE);
            return NULL;
        }
        call->shape = RW_SHAPE_TARGET;
        if (name != NULL) {
            bool nomem = false;
            char *alias = rw__json_str_dup(name, &nomem);
            if (alias == NULL || alias[0] == '\0' || strlen(alias) >= RW_MAX_IDENT) {
                /* PostgreSQL would truncate a longer alias with a NOTICE. */
                free(alias);
                reject(ctx, nomem ? RW_REASON_NOMEM : RW_REASON_SHAPE);
                return NULL;
            }
            snprintf(call->colname, sizeof call->colname, "%s", alias);
            free(alias);
        }
    } else {
        /* select * from f(args): exactly `*`, one plain RangeFunction, no alias. */
        const rw__jv_t *cr = rw__json_node(val, "ColumnRef");
        const rw__jv_t *fields = cr != NULL ? rw__json_get(cr, "fields") : NULL;
        if (name != NULL || fields == NULL || fields->kind != RW_J_ARR || fields->n != 1 ||
            rw__json_node(fields->child, "A_Star") == NULL ||
            (fc = range_function_call(from)) == NULL) {
            reject(ctx, RW_REASON_SHAPE);
            return NULL;
        }
        call->shape = RW_SHAPE_FROM;
    }
    int fn = call_fn(fc);
    if (fn < 0 || fn == RW_FN_WEB_CAPS_FOR_CLIENT) {
        reject(ctx, RW_REASON_SHAPE);
        return NULL;
    }
    call->fn = (rw_fn_t)fn;
    /* PostgreSQL names the column after the function (without schema) in both shapes, unless
       an alias is given; for TABLE functions the column names come from the signature. */
    if (call->colname[0] == '\0')
        snprintf(call->colname, sizeof call->colname, "%s", rw_fn_name(call->fn));
    return fc;
}

static int match_call(rw__ctx_t *ctx, const rw__jv_t *stmt, rw_call_t *call)
{
    const rw__jv_t *fc = match_shape(ctx, stmt, call);
    if (fc == NULL)
        return 0;
    const rw__fn_sig_t *sig = rw__fn_sig(call->fn);
    call->result_oid = sig->result_oid;
    const rw__jv_t *args = rw__json_get(fc, "args");
    if (args != NULL && args->kind != RW_J_ARR)
        return reject(ctx, RW_REASON_ARGS);
    if (args != NULL && (int)args->n > sig->nparams)
        return reject(ctx, RW_REASON_ARGS);
    int i = 0;
    for (const rw__jv_t *a = args != NULL ? args->child : NULL; a != NULL; a = a->next, i++) {
        rw__val_t v = {0};
        int rc = arg_value(ctx, a, &v);
        if (rc > 0) {
            call->nargs = i + 1;
            call->args[i].text = NULL;
            rc = resolve_arg(ctx, call, i, &v);
        }
        free(v.text);
        if (rc <= 0)
            return rc;
    }
    return fill_defaults(ctx, call);
}

/* Parses sql with libpg_query into doc and returns the one statement's node, or NULL with the
   reason set (parse error, not exactly one statement) or *nomem. */
static const rw__jv_t *parse_one(rw__ctx_t *ctx, const char *sql, rw__jdoc_t *doc,
                                 PgQueryParseResult *pr, bool *nomem)
{
    *nomem = false;
    *pr = pg_query_parse(sql);
    if (pr->error != NULL || pr->parse_tree == NULL) {
        reject(ctx, RW_REASON_PARSE_ERROR);
        return NULL;
    }
    const rw__jv_t *root = rw__json_parse(doc, pr->parse_tree, strlen(pr->parse_tree), nomem);
    if (root == NULL) {
        if (!*nomem)
            reject(ctx, RW_REASON_SHAPE);    /* nested beyond the reader's depth limit */
        return NULL;
    }
    const rw__jv_t *stmts = rw__json_get(root, "stmts");
    if (stmts == NULL || stmts->kind != RW_J_ARR || stmts->n != 1) {
        reject(ctx, RW_REASON_NOT_ONE_STATEMENT);
        return NULL;
    }
    const rw__jv_t *stmt = rw__json_get(stmts->child, "stmt");
    if (stmt == NULL) {
        reject(ctx, RW_REASON_SHAPE);
        return NULL;
    }
    return stmt;
}

/* ---------------------------------------------------------------------------------------------
 * Capability query
 * ------------------------------------------------------------------------------------------- */

/* Zeroes every field that only records where a token was ("location", "stmt_location",
   "stmt_len"), walking the unpacked protobuf tree generically through its descriptors. */
static void zero_locations(ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                continue;
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage **arr = *(ProtobufCMessage ***)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (arr[k] != NULL)
                    zero_locations(arr[k]);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            ProtobufCMessage *sub = *(ProtobufCMessage **)(base + f->offset);
            if (sub != NULL)
                zero_locations(sub);
        } else if (f->type == PROTOBUF_C_TYPE_INT32 &&
                   (strcmp(f->name, "location") == 0 || strcmp(f->name, "stmt_location") == 0 ||
                    strcmp(f->name, "stmt_len") == 0)) {
            *(int32_t *)(base + f->offset) = 0;
        }
    }
}

/* The parse tree packed as protobuf with locations zeroed: equal bytes mean the same statement
   up to whitespace, comments, keyword case and unquoted identifier case, while every constant
   (negative ones included, which libpg_query's JSON output loses), alias and identifier
   counts. Returns a heap buffer and its length, or NULL (parse error, more or fewer than one
   statement, allocation failure). */
static uint8_t *canonical_tree(const char *sql, size_t *len)
{
    PgQueryProtobufParseResult pr = pg_query_parse_protobuf(sql);
    uint8_t *out = NULL;
    PgQuery__ParseResult *res = NULL;
    if (pr.error != NULL)
        goto done;
    res = pg_query__parse_result__unpack(NULL, pr.parse_tree.len,
                                         (const uint8_t *)pr.parse_tree.data);
    if (res == NULL || res->n_stmts != 1)
        goto done;
    zero_locations(&res->base);
    *len = protobuf_c_message_get_packed_size(&res->base);
    out = malloc(*len > 0 ? *len : 1);
    if (out != NULL)
        protobuf_c_message_pack(&res->base, out);
done:
    if (res != NULL)
        pg_query__parse_result__free_unpacked(res, NULL);
    pg_query_free_protobuf_parse_result(pr);
    return out;
}

/* The longest plain identifier of the text (IDENT tokens of the scanner, lower-cased), used as
   the pre-filter token: any text with the same parse tree contains it, case aside, unless it
   spells the identifier with Unicode escapes, which then merely passes through. */
static void choose_token(const char *sql, char *token, size_t cap, size_t *len)
{
    *len = 0;
    token[0] = '\0';
    PgQueryScanResult sr = pg_query_scan(sql);
    if (sr.error != NULL) {
        pg_query_free_scan_result(sr);
        return;
    }
    PgQuery__ScanResult *res = pg_query__scan_result__unpack(NULL, sr.pbuf.len,
                                                             (const uint8_t *)sr.pbuf.data);
    if (res != NULL) {
        size_t best = 0, best_start = 0;
        bool best_us = false;
        for (size_t i = 0; i < res->n_tokens; i++) {
            const PgQuery__ScanToken *t = res->tokens[i];
            if (t->token != PG_QUERY__TOKEN__IDENT || t->start < 0 || t->end <= t->start)
                continue;
            size_t l = (size_t)(t->end - t->start);
            const char *s = sql + t->start;
            if (s[0] == '"' || ((s[0] == 'U' || s[0] == 'u') && l > 1 && s[1] == '&') || l >= cap)
                continue;   /* quoted or possibly U&"..." identifiers: raw bytes differ */
            bool us = memchr(s, '_', l) != NULL;
            /* The longest identifier is the least likely to occur in other statements; on a
               tie prefer one with an underscore (checked within the underscore scan). */
            if (l > best || (l == best && us && !best_us)) {
                best = l;
                best_start = (size_t)t->start;
                best_us = us;
            }
        }
        for (size_t i = 0; i < best; i++)
            token[i] = (char)lower_ascii((unsigned char)sql[best_start + i]);
        token[best] = '\0';
        *len = best;
        pg_query__scan_result__free_unpacked(res, NULL);
    }
    pg_query_free_scan_result(sr);
}

int rw_set_caps_query(const char *sql)
{
    free(caps.hit_text);
    caps.hit_text = NULL;
    caps.hit_len = 0;
    if (sql == NULL) {
        free(caps.tree);
        memset(&caps, 0, sizeof caps);
        return 0;
    }
    size_t tree_len = 0;
    uint8_t *tree = canonical_tree(sql, &tree_len);
    if (tree == NULL)
        return -1;
    PgQueryFingerprintResult fr = pg_query_fingerprint(sql);
    if (fr.error != NULL) {
        pg_query_free_fingerprint_result(fr);
        free(tree);
        return -1;
    }
    uint64_t fp = fr.fingerprint;
    pg_query_free_fingerprint_result(fr);
    free(caps.tree);
    caps.tree = tree;
    caps.tree_len = tree_len;
    caps.fingerprint = fp;
    choose_token(sql, caps.token, sizeof caps.token, &caps.token_len);
    const char *us = memchr(caps.token, '_', caps.token_len);
    caps.token_us = us != NULL ? (ssize_t)(us - caps.token) : -1;
    caps_build_skip();
    caps.set = true;
    return 0;
}

/* 1 when sql (already known to be one statement) is the registered capability query. */
static int caps_match(const char *sql)
{
    size_t sql_len = strlen(sql);
    if (caps_hit_again(sql, sql_len))
        return 1;
    PgQueryFingerprintResult fr = pg_query_fingerprint(sql);
    bool same = fr.error == NULL && fr.fingerprint == caps.fingerprint;
    pg_query_free_fingerprint_result(fr);
    if (!same)
        return 0;
    size_t len = 0;
    uint8_t *tree = canonical_tree(sql, &len);
    if (tree == NULL)
        return 0;       /* it parsed with a matching fingerprint, so only memory can fail */
    same = len == caps.tree_len && memcmp(tree, caps.tree, len) == 0;
    free(tree);
    if (same) {
        char *copy = malloc(sql_len + 1);
        if (copy != NULL) {   /* without memory the next call just parses again */
            memcpy(copy, sql, sql_len + 1);
            free(caps.hit_text);
            caps.hit_text = copy;
            caps.hit_len = sql_len;
        }
    }
    return same ? 1 : 0;
}

static void caps_call(rw_call_t *call)
{
    call->fn = RW_FN_WEB_CAPS_FOR_CLIENT;
    call->shape = RW_SHAPE_QUERY;
    call->nargs = 0;
    call->result_oid = 0;
    call->colname[0] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Simple protocol and Parse
 * ------------------------------------------------------------------------------------------- */

/* Parses sql and recognises it into *call. Returns 1, 0 (ctx->reason set) or RW__NOMEM. */
static int recognize(rw__ctx_t *ctx, const char *sql, rw_call_t *call)
{
    memset(call, 0, sizeof *call);
    ctx->sql = sql;
    ctx->sql_len = sql != NULL ? strlen(sql) : 0;
    if (!rw_prefilter(sql, ctx->sql_len))
        return reject(ctx, RW_REASON_NO_NAME);
    if (caps.set && caps_hit_again(sql, ctx->sql_len)) {
        caps_call(call);   /* the very text that matched before: no parse needed */
        return 1;
    }

    rw__jdoc_t doc = {0};
    PgQueryParseResult pr;
    bool nomem;
    int rc = RW__NOMEM;
    const rw__jv_t *stmt = parse_one(ctx, sql, &doc, &pr, &nomem);
    if (stmt != NULL)
        rc = match_call(ctx, stmt, call);
    else if (!nomem)
        rc = 0;
    /* The capability query is tried on any one-statement text that passed the pre-filter
       and is not a call (the pre-filter may have stopped at a registered name first). */
    if (rc == 0 && stmt != NULL && caps.set) {
        int m = caps_match(sql);
        if (m != 0) {
            rw_call_clear(call);
            caps_call(call);
            ctx->reason = RW_REASON_NONE;
            rc = m;
        }
    }
    rw__json_free(&doc);
    pg_query_free_parse_result(pr);
    if (rc <= 0) {
        rw_call_clear(call);
        if (rc < 0)
            ctx->reason = RW_REASON_NOMEM;
    }
    return rc;
}

int rw_recognize_query(const char *sql, rw_call_t *call, rw_reason_t *reason)
{
    rw__ctx_t ctx = {0};
    int rc = recognize(&ctx, sql, call);
    *reason = rc == 1 ? RW_REASON_NONE : ctx.reason;
    return rc;
}

/* Highest $n among the call's arguments (bare or under one cast), for sizing the parameter
   slots before the walk. Only the places an accepted shape can hold parameters are visited;
   a statement with parameters elsewhere is refused by the walk anyway. */
static int max_param_ref(const rw__jv_t *stmt)
{
    const rw__jv_t *s = plain_select(stmt);
    if (s == NULL)
        return 0;
    const rw__jv_t *from = rw__json_get(s, "fromClause");
    const rw__jv_t *fc = NULL;
    if (from != NULL) {
        fc = range_function_call(from);
    } else {
        const rw__jv_t *rt = rw__json_node(rw__json_get(s, "targetList")->child, "ResTarget");
        fc = rw__json_node(rw__json_get(rt, "val"), "FuncCall");
    }
    const rw__jv_t *args = fc != NULL ? rw__json_get(fc, "args") : NULL;
    if (args == NULL || args->kind != RW_J_ARR)
        return 0;
    int max = 0;
    for (const rw__jv_t *a = args->child; a != NULL; a = a->next) {
        const rw__jv_t *tc = rw__json_node(a, "TypeCast");
        const rw__jv_t *pr = rw__json_node(tc != NULL ? rw__json_get(tc, "arg") : a, "ParamRef");
        int n = pr != NULL ? param_number(pr) : 0;
        if (n > max)
            max = n;
    }
    return max;
}

rw_template_t *rw_template_from_parse(const char *sql, const uint32_t *param_oids,
                                      uint16_t nparams, rw_reason_t *reason)
{
    rw__ctx_t ctx = {0};
    rw_template_t *t = NULL;
    rw__jdoc_t doc = {0};
    PgQueryParseResult pr = {0};
    bool parsed = false, nomem = false;
    int rc = 0;

    ctx.sql = sql;
    ctx.sql_len = sql != NULL ? strlen(sql) : 0;
    ctx.extended = true;
    ctx.declared = param_oids;
    ctx.ndeclared = nparams;
    if (!rw_prefilter(sql, ctx.sql_len)) {
        reject(&ctx, RW_REASON_NO_NAME);
        goto fail;
    }
    parsed = true;
    const rw__jv_t *stmt = parse_one(&ctx, sql, &doc, &pr, &nomem);
    if (stmt == NULL) {
        rc = nomem ? RW__NOMEM : 0;
        goto fail;
    }
    int maxref = max_param_ref(stmt);
    int nslots = maxref > nparams ? maxref : nparams;
    if (nslots > UINT16_MAX) {
        reject(&ctx, RW_REASON_PARAM_TYPE);
        goto fail;
    }
    t = calloc(1, sizeof *t);
    ctx.nslots = nslots;
    ctx.param_oid = calloc((size_t)nslots + 1, sizeof *ctx.param_oid);
    ctx.param_refs = calloc((size_t)nslots + 1, 1);
    if (t == NULL || ctx.param_oid == NULL || ctx.param_refs == NULL) {
        rc = RW__NOMEM;
        goto fail;
    }
    for (int i = 0; i < nparams; i++)
        ctx.param_oid[i] = param_oids != NULL ? param_oids[i] : 0;

    rc = match_call(&ctx, stmt, &t->call);
    if (rc == 0 && caps.set && nslots == 0) {
        int m = caps_match(sql);
        if (m != 0) {
            rw_call_clear(&t->call);
            caps_call(&t->call);
            ctx.reason = RW_REASON_NONE;
            rc = m;
        }
    }
    if (rc <= 0)
        goto fail;
    /* Every parameter must be used by the call: an unused one would still be validated by
       PostgreSQL at Bind, and an unused unspecified one fails at Parse. */
    for (int i = 0; i < nslots; i++) {
        if (ctx.param_refs[i] == 0 || ctx.param_oid[i] == 0) {
            reject(&ctx, RW_REASON_PARAM_TYPE);
            rc = 0;
            goto fail;
        }
    }
    t->nparams = (uint16_t)nslots;
    t->param_oids = ctx.param_oid;
    ctx.param_oid = NULL;
    free(ctx.param_refs);
    rw__json_free(&doc);
    pg_query_free_parse_result(pr);
    *reason = RW_REASON_NONE;
    return t;

fail:
    rw__json_free(&doc);
    if (parsed)
        pg_query_free_parse_result(pr);
    free(ctx.param_oid);
    free(ctx.param_refs);
    if (t != NULL) {
        rw_call_clear(&t->call);
        free(t);
    }
    *reason = rc < 0 ? RW_REASON_NOMEM : ctx.reason;
    return NULL;
}

void rw_template_free(rw_template_t *t)
{
    if (t == NULL)
        return;
    rw_call_clear(&t->call);
    free(t->param_oids);
    free(t);
}

uint16_t rw_template_nparams(const rw_template_t *t)
{
    return t->nparams;
}

uint32_t rw_template_param_oid(const rw_template_t *t, uint16_t i)
{
    return i < t->nparams ? t->param_oids[i] : 0;
}

const rw_call_t *rw_template_call(const rw_template_t *t)
{
    return &t->call;
}

/* ---------------------------------------------------------------------------------------------
 * Bind
 * ------------------------------------------------------------------------------------------- */

static uint64_t be_u64(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Binary timestamptz (microseconds since 2000-01-01 00:00:00 UTC) as canonical UTC text
   accepted by timestamptz input whatever the session's DateStyle and TimeZone. NULL when out
   of the years 1-9999 handled here, or on allocation failure (*nomem set). */
static char *timestamptz_text(int64_t us, bool *nomem)
{
    char buf[64];
    int n;
    if (us == INT64_MAX) {
        n = snprintf(buf, sizeof buf, "infinity");
    } else if (us == INT64_MIN) {
        n = snprintf(buf, sizeof buf, "-infinity");
    } else {
        const int64_t day_us = 86400LL * 1000000LL;
        int64_t days = us / day_us, rem = us % day_us;
        if (rem < 0) {
            rem += day_us;
            days--;
        }
        int64_t y;
        int mo, d;
        civil_from_days(days + 10957, &y, &mo, &d);     /* 10957 days from 1970 to 2000 */
        if (y < 1 || y > 9999)
            return NULL;
        int64_t secs = rem / 1000000, frac = rem % 1000000;
        n = snprintf(buf, sizeof buf, "%04lld-%02d-%02d %02d:%02d:%02d", (long long)y, mo, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
        if (frac != 0) {
            n += snprintf(buf + n, sizeof buf - (size_t)n, ".%06lld", (long long)frac);
            while (buf[n - 1] == '0')
                n--;
        }
        n += snprintf(buf + n, sizeof buf - (size_t)n, "+00");
    }
    char *s = rw__strndup(buf, (size_t)n);
    if (s == NULL)
        *nomem = true;
    return s;
}

/* Decodes one Bind value of declared/resolved type oid into canonical text for an argument
   of type `type`. Returns 1, 0 (reason set) or RW__NOMEM. */
static int bind_value(uint32_t oid, rw_type_t type, int16_t format, const uint8_t *val,
                      int32_t len, rw_arg_t *a, rw_reason_t *reason)
{
    a->text = NULL;
    a->is_null = len < 0;
    if (len < 0)
        return 1;
    if (type == RW_T_INT8_ARRAY || type == RW_T_JSONB) {
        *reason = RW_REASON_PARAM_TYPE;   /* fn_get_bulist's type-fixing argument: NULL only */
        return 0;
    }
    if (format != 0 && format != 1) {
        *reason = RW_REASON_PARAM_TYPE;
        return 0;
    }
    const char *s = (const char *)val;
    size_t n = (size_t)len;
    bool nomem = false;
    if (is_int_oid(oid)) {
        int64_t iv;
        if (format == 0) {
            if (memchr(s, '\0', n) != NULL || !parse_pg_int(s, n, int_bits(oid), &iv))
                goto bad;
        } else {
            int want = oid == RW_OID_INT2 ? 2 : oid == RW_OID_INT4 ? 4 : 8;
            if (len != want)
                goto bad;
            uint64_t u = be_u64(val, want);
            iv = want == 2 ? (int16_t)u : want == 4 ? (int32_t)u : (int64_t)u;
        }
        a->text = int_text(iv);
    } else if (oid == RW_OID_BOOL) {
        bool b;
        if (format == 0) {
            if (memchr(s, '\0', n) != NULL || !parse_pg_bool(s, n, &b))
                goto bad;
        } else {
            if (len != 1)
                goto bad;
            b = val[0] != 0;
        }
        a->text = rw__strndup(b ? "true" : "false", b ? 4 : 5);
    } else if (oid == RW_OID_TEXT || oid == RW_OID_VARCHAR) {
        if (memchr(s, '\0', n) != NULL)
            goto bad;
        a->text = rw__strndup(s, n);
    } else if (oid == RW_OID_TIMESTAMPTZ) {
        if (format == 0) {
            if (!timestamptz_text_ok(s, n))
                goto bad;
            a->text = rw__strndup(s, n);
        } else {
            if (len != 8)
                goto bad;
            a->text = timestamptz_text((int64_t)be_u64(val, 8), &nomem);
            if (a->text == NULL && !nomem)
                goto bad;
        }
    } else {
        goto bad;
    }
    return a->text != NULL ? 1 : RW__NOMEM;
bad:
    *reason = RW_REASON_PARAM_TYPE;
    return 0;
}

int rw_template_bind(const rw_template_t *t, const pgw_bind_t *bind, rw_call_t *call,
                     rw_reason_t *reason)
{
    *reason = RW_REASON_NONE;
    memset(call, 0, sizeof *call);
    if (bind->nparams != t->nparams ||
        (bind->nformats > 1 && bind->nformats != bind->nparams)) {
        *reason = RW_REASON_PARAM_TYPE;
        return 0;
    }
    for (uint16_t i = 0; i < bind->nresult_formats; i++) {
        if (be_u64(bind->result_formats + 2 * (size_t)i, 2) != 0) {
            *reason = RW_REASON_RESULT_FORMAT;
            return 0;
        }
    }
    /* Locate each parameter value in the encoded list (int32 length, bytes). */
    const uint8_t *vals[RW_MAX_ARGS + 1] = {0};
    int32_t lens[RW_MAX_ARGS + 1] = {0};
    if (t->nparams > RW_MAX_ARGS) {
        *reason = RW_REASON_PARAM_TYPE;
        return 0;
    }
    size_t off = 0;
    for (uint16_t i = 0; i < t->nparams; i++) {
        if (off > bind->params_len || bind->params_len - off < 4) {
            *reason = RW_REASON_PARAM_TYPE;
            return 0;
        }
        int32_t l = (int32_t)(uint32_t)be_u64(bind->params + off, 4);
        off += 4;
        if (l >= 0 && (size_t)l > bind->params_len - off) {
            *reason = RW_REASON_PARAM_TYPE;
            return 0;
        }
        lens[i] = l;
        vals[i] = l >= 0 ? bind->params + off : NULL;
        if (l > 0)
            off += (size_t)l;
    }

    *call = t->call;
    for (int i = 0; i < call->nargs; i++)
        call->args[i].text = NULL;
    int rc = 1;
    for (int i = 0; i < t->call.nargs; i++) {
        const rw_arg_t *ta = &t->call.args[i];
        rw_arg_t *a = &call->args[i];
        if (ta->param == 0) {
            if (ta->text != NULL && (a->text = rw__strndup(ta->text, strlen(ta->text))) == NULL) {
                rc = RW__NOMEM;
                break;
            }
            continue;
        }
        int p = ta->param - 1;
        int16_t fmt = bind->nformats == 0 ? 0
                      : (int16_t)be_u64(bind->formats + 2 * (size_t)(bind->nformats == 1 ? 0 : p), 2);
        rc = bind_value(t->param_oids[p], ta->type, fmt, vals[p], lens[p], a, reason);
        if (rc <= 0)
            break;
    }
    if (rc <= 0) {
        rw_call_clear(call);
        if (rc < 0)
            *reason = RW_REASON_NOMEM;
    }
    return rc;
}
