/*
 * Authentication computations: PostgreSQL's MD5 scheme and SCRAM-SHA-256 (RFC 5802, RFC 7677)
 * in the shape PostgreSQL uses it: no channel binding (gs2 header "n,," or "y,,"), no
 * authorization identity, user name ignored inside SCRAM (clients send "n=").
 *
 * Invariants: no randomness here (nonces and salts come from the caller as raw bytes and are
 * base64-encoded into printable nonces), no allocation, every produced string is bounded by the
 * fixed arrays of the state structs and NUL-terminated; secrets are compared in constant time;
 * temporary key material on the stack is wiped with OPENSSL_cleanse before returning.
 * Hashing goes through OpenSSL's EVP one-shot digest, HMAC() and PKCS5_PBKDF2_HMAC.
 */
#include "pgw_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * base64
 * ------------------------------------------------------------------------------------------- */
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int pgw__b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t need = (len + 2) / 3 * 4;
    if (need + 1 > cap || need > INT32_MAX)
        return -1;
    char *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    *o = '\0';
    return (int)need;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int pgw__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 != 0 || len / 4 * 3 > (size_t)INT32_MAX)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int pad = 0;
        if (last && in[i + 3] == '=')
            pad = in[i + 2] == '=' ? 2 : 1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++) {
            v[k] = b64_value(in[i + (size_t)k]);
            if (v[k] < 0)
                return -1;
        }
        for (int k = 4 - pad; k < 4; k++)
            v[k] = 0;
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) |
                     (uint32_t)v[3];
        /* Canonical form only: bits hidden under the padding must be zero. */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
            return -1;
        size_t chunk = 3 - (size_t)pad;
        if (n + chunk > cap)
            return -1;
        out[n++] = (uint8_t)(w >> 16);
        if (chunk > 1)
            out[n++] = (uint8_t)(w >> 8);
        if (chunk > 2)
            out[n++] = (uint8_t)w;
    }
    return (int)n;
}

/* ---------------------------------------------------------------------------------------------
 * Hash primitives
 * ------------------------------------------------------------------------------------------- */
static int sha256(const void *data, size_t len, uint8_t out[PGW_SCRAM_KEY_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) || n != PGW_SCRAM_KEY_LEN)
        return PGW_ECRYPTO;
    return 0;
}

static int hmac256(const uint8_t key[PGW_SCRAM_KEY_LEN], const void *data, size_t len,
                   uint8_t out[PGW_SCRAM_KEY_LEN])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, PGW_SCRAM_KEY_LEN, data, len, out, &n) ||
        n != PGW_SCRAM_KEY_LEN)
        return PGW_ECRYPTO;
    return 0;
}

static void hex32(const uint8_t in[16], char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[32] = '\0';
}

/* "md5" + hex(md5(a || b)) into out[36]. */
static int md5_hex2(const void *a, size_t alen, const void *b, size_t blen, char out[36])
{
    uint8_t d[16];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
             EVP_DigestUpdate(ctx, b, blen) && EVP_DigestFinal_ex(ctx, d, &n) && n == 16;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return PGW_ECRYPTO;
    memcpy(out, "md5", 3);
    hex32(d, out + 3);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * MD5
 * ------------------------------------------------------------------------------------------- */
int pgw_md5_secret(const char *user, const char *password, char out[36])
{
    return md5_hex2(password, strlen(password), user, strlen(user), out);
}

static bool is_md5_secret(const char *s)
{
    if (strlen(s) != 35 || memcmp(s, "md5", 3) != 0)
        return false;
    for (int i = 3; i < 35; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

int pgw_md5_response(const char *user, const char *password, const uint8_t salt[4], char out[36])
{
    char inner[36];
    if (is_md5_secret(password)) {
        memcpy(inner, password, 36);
    } else {
        int rc = pgw_md5_secret(user, password, inner);
        if (rc < 0)
            return rc;
    }
    /* The outer hash covers the 32 hex digits only, not the "md5" prefix. */
    int rc = md5_hex2(inner + 3, 32, salt, 4, out);
    OPENSSL_cleanse(inner, sizeof inner);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * SCRAM secrets
 * ------------------------------------------------------------------------------------------- */
/* StoredKey and ServerKey from the SaltedPassword; ClientKey too when client_key is non-NULL. */
static int keys_from_salted(const uint8_t salted[PGW_SCRAM_KEY_LEN], uint8_t *client_key,
                            uint8_t stored_key[PGW_SCRAM_KEY_LEN],
                            uint8_t server_key[PGW_SCRAM_KEY_LEN])
{
    uint8_t ck[PGW_SCRAM_KEY_LEN];
    int rc = hmac256(salted, "Client Key", 10, ck);
    if (rc == 0)
        rc = sha256(ck, sizeof ck, stored_key);
    if (rc == 0)
        rc = hmac256(salted, "Server Key", 10, server_key);
    if (rc == 0 && client_key)
        memcpy(client_key, ck, sizeof ck);
    OPENSSL_cleanse(ck, sizeof ck);
    return rc;
}

static int salted_password(const char *password, const uint8_t *salt, size_t salt_len,
                           uint32_t iterations, uint8_t out[PGW_SCRAM_KEY_LEN])
{
    if (iterations == 0 || iterations > INT32_MAX || salt_len > INT32_MAX)
        return PGW_EMALFORMED;
    size_t plen = strlen(password);
    if (plen > INT32_MAX)
        return PGW_ETOOLONG;
    if (!PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, (int)iterations,
                           EVP_sha256(), PGW_SCRAM_KEY_LEN, out))
        return PGW_ECRYPTO;
    return 0;
}

int pgw_scram_make_secret(const char *password, const uint8_t *salt, size_t salt_len,
                          uint32_t iterations, pgw_scram_secret_t *out)
{
    if (salt_len == 0 || salt_len > sizeof out->salt)
        return PGW_EMALFORMED;
    uint8_t salted[PGW_SCRAM_KEY_LEN];
    int rc = salted_password(password, salt, salt_len, iterations, salted);
    if (rc == 0)
        rc = keys_from_salted(salted, NULL, out->stored_key, out->server_key);
    OPENSSL_cleanse(salted, sizeof salted);
    if (rc < 0)
        return rc;
    out->iterations = iterations;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    return 0;
}

/* Parses a decimal uint32 in s[0..len) without sign or leading junk; false on overflow. */
static bool parse_u32(const char *s, size_t len, uint32_t *out)
{
    if (len == 0 || len > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

int pgw_scram_parse_secret(const char *text, pgw_scram_secret_t *out)
{
    static const char prefix[] = "SCRAM-SHA-256$";
    size_t plen = sizeof prefix - 1;
    if (strncmp(text, prefix, plen) != 0)
        return PGW_EMALFORMED;
    const char *iter = text + plen;
    const char *colon1 = strchr(iter, ':');
    const char *dollar = colon1 ? strchr(colon1 + 1, '$') : NULL;
    const char *colon2 = dollar ? strchr(dollar + 1, ':') : NULL;
    if (!colon2)
        return PGW_EMALFORMED;
    const char *salt = colon1 + 1, *stored = dollar + 1, *server = colon2 + 1;

    pgw_scram_secret_t s;
    memset(&s, 0, sizeof s);
    int n;
    if (!parse_u32(iter, (size_t)(colon1 - iter), &s.iterations) || s.iterations == 0)
        return PGW_EMALFORMED;
    n = pgw__b64_decode(salt, (size_t)(dollar - salt), s.salt, sizeof s.salt);
    if (n <= 0)
        return PGW_EMALFORMED;
    s.salt_len = (size_t)n;
    if (pgw__b64_decode(stored, (size_t)(colon2 - stored), s.stored_key,
                        PGW_SCRAM_KEY_LEN) != PGW_SCRAM_KEY_LEN ||
        pgw__b64_decode(server, strlen(server), s.server_key, PGW_SCRAM_KEY_LEN) !=
            PGW_SCRAM_KEY_LEN)
        return PGW_EMALFORMED;
    *out = s;
    OPENSSL_cleanse(&s, sizeof s);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * SCRAM message helpers
 * ------------------------------------------------------------------------------------------- */
/* Attribute cursor over a comma-separated "k=value,k=value" message. */
typedef struct attr_cursor {
    const char *p;
    const char *end;
} attr_cursor_t;

/* Reads the next attribute; it must be `want` (or any letter when want is 0). The value is a
   view up to the next comma or the end. False on syntax errors or a different attribute. */
static bool next_attr(attr_cursor_t *c, char want, char *got, const char **val, size_t *len)
{
    if (c->end - c->p < 2 || c->p[1] != '=')
        return false;
    char k = c->p[0];
    if (!((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z')) || (want && k != want))
        return false;
    const char *v = c->p + 2;
    const char *comma = memchr(v, ',', (size_t)(c->end - v));
    const char *vend = comma ? comma : c->end;
    if (got)
        *got = k;
    *val = v;
    *len = (size_t)(vend - v);
    c->p = comma ? comma + 1 : c->end;
    return true;
}

/* A SCRAM nonce: printable ASCII except ',' (RFC 5802 section 7), non-empty. */
static bool nonce_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return false;
    }
    return true;
}

/* Copies s[0..len) plus NUL into dst[cap]; false if it does not fit or contains a NUL. */
static bool copy_str(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap || memchr(s, 0, len))
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof, then
   HMAC(key, AuthMessage) into out. */
static int auth_message_hmac(const uint8_t key[PGW_SCRAM_KEY_LEN], const char *client_first_bare,
                             const char *server_first, const char *final_no_proof,
                             size_t final_len, uint8_t out[PGW_SCRAM_KEY_LEN])
{
    char msg[1600];
    int n = snprintf(msg, sizeof msg, "%s,%s,%.*s", client_first_bare, server_first,
                     (int)final_len, final_no_proof);
    if (n < 0 || (size_t)n >= sizeof msg)
        return PGW_ETOOLONG;
    return hmac256(key, msg, (size_t)n, out);
}

/* ---------------------------------------------------------------------------------------------
 * SCRAM server side
 * ------------------------------------------------------------------------------------------- */
int pgw_scram_server_first(pgw_scram_server_t *st, const pgw_scram_secret_t *secret,
                           const uint8_t *client_first, size_t len,
                           const uint8_t server_nonce_raw[PGW_SCRAM_NONCE_RAW])
{
    memset(st, 0, sizeof *st);
    const char *msg = (const char *)client_first;
    if (!msg || len < 3 || memchr(msg, 0, len))
        return PGW_EMALFORMED;

    /* gs2-header: cbind-flag "," [authzid] ",". 'p' asks for channel binding, which pgshim
       does not offer (it never advertises SCRAM-SHA-256-PLUS); 'y' means the client could bind
       but believes the server cannot, which is true, so it is accepted like 'n'. */
    if (msg[0] == 'p')
        return PGW_EUNSUPPORTED;
    if ((msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
        return PGW_EMALFORMED;
    if (msg[2] == 'a')
        return PGW_EUNSUPPORTED;                 /* authorization identity, as PostgreSQL */
    if (msg[2] != ',')
        return PGW_EMALFORMED;
    st->gs2_flag = msg[0];

    const char *bare = msg + 3;
    size_t bare_len = len - 3;
    attr_cursor_t c = {bare, msg + len};
    const char *v;
    size_t vlen;
    if (!next_attr(&c, 'n', NULL, &v, &vlen))   /* user name: ignored, as PostgreSQL does */
        return c.p < c.end && c.p[0] == 'm' ? PGW_EUNSUPPORTED : PGW_EMALFORMED;
    if (!next_attr(&c, 'r', NULL, &v, &vlen) || !nonce_ok(v, vlen))
        return PGW_EMALFORMED;
    /* Any further attributes are extensions, which we ignore. */

    char server_nonce[32];
    if (pgw__b64_encode(server_nonce_raw, PGW_SCRAM_NONCE_RAW, server_nonce,
                        sizeof server_nonce) < 0)
        return PGW_ETOOLONG;
    size_t snlen = strlen(server_nonce);
    if (vlen + snlen >= sizeof st->nonce || !copy_str(st->client_first_bare,
                                                      sizeof st->client_first_bare, bare, bare_len))
        return PGW_ETOOLONG;
    memcpy(st->nonce, v, vlen);
    memcpy(st->nonce + vlen, server_nonce, snlen + 1);

    char salt_b64[96];
    if (pgw__b64_encode(secret->salt, secret->salt_len, salt_b64, sizeof salt_b64) < 0)
        return PGW_EMALFORMED;
    int n = snprintf(st->server_first, sizeof st->server_first, "r=%s,s=%s,i=%u", st->nonce,
                     salt_b64, (unsigned)secret->iterations);
    if (n < 0 || (size_t)n >= sizeof st->server_first)
        return PGW_ETOOLONG;
    st->secret = *secret;
    st->step = 1;
    return 0;
}

int pgw_scram_server_final(pgw_scram_server_t *st, const uint8_t *client_final, size_t len)
{
    if (st->step != 1)
        return PGW_EMALFORMED;
    st->step = -1;                                   /* any failure ends the exchange */
    const char *msg = (const char *)client_final;
    if (!msg || memchr(msg, 0, len))
        return PGW_EMALFORMED;

    attr_cursor_t c = {msg, msg + len};
    const char *v;
    size_t vlen;
    char got;
    /* c= must carry back exactly the gs2 header the client sent: "n,," or "y,,". */
    const char *want_cb = st->gs2_flag == 'y' ? "eSws" : "biws";
    if (!next_attr(&c, 'c', NULL, &v, &vlen) || vlen != 4 || memcmp(v, want_cb, 4) != 0)
        return PGW_EMALFORMED;
    if (!next_attr(&c, 'r', NULL, &v, &vlen))
        return PGW_EMALFORMED;
    if (vlen != strlen(st->nonce) || memcmp(v, st->nonce, vlen) != 0)
        return PGW_EMALFORMED;
    /* Extensions may follow; the proof is the last attribute. */
    const char *proof_attr;
    do {
        proof_attr = c.p;
        if (!next_attr(&c, 0, &got, &v, &vlen))
            return PGW_EMALFORMED;
    } while (got != 'p');
    if (c.p != c.end || msg[len - 1] == ',')
        return PGW_EMALFORMED;                       /* garbage after the proof */
    uint8_t proof[PGW_SCRAM_KEY_LEN];
    if (pgw__b64_decode(v, vlen, proof, sizeof proof) != PGW_SCRAM_KEY_LEN)
        return PGW_EMALFORMED;
    size_t without_proof_len = (size_t)(proof_attr - msg) - 1;   /* drop the comma */

    uint8_t client_sig[PGW_SCRAM_KEY_LEN], client_key[PGW_SCRAM_KEY_LEN];
    uint8_t check[PGW_SCRAM_KEY_LEN], server_sig[PGW_SCRAM_KEY_LEN];
    int rc = auth_message_hmac(st->secret.stored_key, st->client_first_bare, st->server_first,
                               msg, without_proof_len, client_sig);
    if (rc < 0)
        goto out;
    /* ClientProof = ClientKey XOR ClientSignature, so XOR recovers ClientKey, whose hash must
       be the StoredKey: this proves the client knew the password (or ClientKey). */
    for (int i = 0; i < PGW_SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    rc = sha256(client_key, sizeof client_key, check);
    if (rc < 0)
        goto out;
    if (CRYPTO_memcmp(check, st->secret.stored_key, PGW_SCRAM_KEY_LEN) != 0) {
        rc = PGW_EAUTH;
        goto out;
    }
    rc = auth_message_hmac(st->secret.server_key, st->client_first_bare, st->server_first, msg,
                           without_proof_len, server_sig);
    if (rc < 0)
        goto out;
    memcpy(st->server_final, "v=", 2);
    if (pgw__b64_encode(server_sig, sizeof server_sig, st->server_final + 2,
                        sizeof st->server_final - 2) < 0) {
        rc = PGW_ETOOLONG;
        goto out;
    }
    memcpy(st->client_key, client_key, sizeof client_key);
    st->step = 2;
    rc = 0;
out:
    OPENSSL_cleanse(client_key, sizeof client_key);
    OPENSSL_cleanse(client_sig, sizeof client_sig);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * SCRAM client side
 * ------------------------------------------------------------------------------------------- */
static int client_start(pgw_scram_client_t *st, const uint8_t nonce_raw[PGW_SCRAM_NONCE_RAW])
{
    if (pgw__b64_encode(nonce_raw, PGW_SCRAM_NONCE_RAW, st->client_nonce,
                        sizeof st->client_nonce) < 0)
        return PGW_ETOOLONG;
    /* PostgreSQL takes the user from the startup packet and ignores n=, so send it empty. */
    snprintf(st->client_first_bare, sizeof st->client_first_bare, "n=,r=%s", st->client_nonce);
    snprintf(st->client_first, sizeof st->client_first, "n,,n=,r=%s", st->client_nonce);
    st->step = 1;
    return 0;
}

int pgw_scram_client_init(pgw_scram_client_t *st, const char *password,
                          const uint8_t nonce_raw[PGW_SCRAM_NONCE_RAW])
{
    memset(st, 0, sizeof *st);
    if (strlen(password) >= sizeof st->password)
        return PGW_ETOOLONG;
    strcpy(st->password, password);
    return client_start(st, nonce_raw);
}

int pgw_scram_client_init_keys(pgw_scram_client_t *st, const uint8_t client_key[32],
                               const uint8_t server_key[32],
                               const uint8_t nonce_raw[PGW_SCRAM_NONCE_RAW])
{
    memset(st, 0, sizeof *st);
    st->have_keys = true;
    memcpy(st->client_key, client_key, PGW_SCRAM_KEY_LEN);
    memcpy(st->server_key, server_key, PGW_SCRAM_KEY_LEN);
    return client_start(st, nonce_raw);
}

int pgw_scram_client_continue(pgw_scram_client_t *st, const uint8_t *server_first, size_t len)
{
    if (st->step != 1)
        return PGW_EMALFORMED;
    st->step = -1;
    const char *msg = (const char *)server_first;
    if (!msg || memchr(msg, 0, len))
        return PGW_EMALFORMED;
    char sf[512];
    if (!copy_str(sf, sizeof sf, msg, len))
        return PGW_ETOOLONG;

    attr_cursor_t c = {msg, msg + len};
    const char *nonce, *salt_b64, *iter;
    size_t nonce_len, salt_len, iter_len;
    if (!next_attr(&c, 'r', NULL, &nonce, &nonce_len) ||
        !next_attr(&c, 's', NULL, &salt_b64, &salt_len) ||
        !next_attr(&c, 'i', NULL, &iter, &iter_len))
        return PGW_EMALFORMED;
    /* The combined nonce must start with ours and add a non-empty server part. */
    size_t cn = strlen(st->client_nonce);
    if (!nonce_ok(nonce, nonce_len) || nonce_len <= cn || memcmp(nonce, st->client_nonce, cn))
        return PGW_EMALFORMED;
    uint8_t salt[64];
    int salt_n = pgw__b64_decode(salt_b64, salt_len, salt, sizeof salt);
    uint32_t iterations;
    if (salt_n <= 0 || !parse_u32(iter, iter_len, &iterations) || iterations == 0)
        return PGW_EMALFORMED;

    int rc = 0;
    uint8_t salted[PGW_SCRAM_KEY_LEN], stored[PGW_SCRAM_KEY_LEN];
    uint8_t client_sig[PGW_SCRAM_KEY_LEN], proof[PGW_SCRAM_KEY_LEN];
    if (!st->have_keys) {
        rc = salted_password(st->password, salt, (size_t)salt_n, iterations, salted);
        if (rc == 0)
            rc = keys_from_salted(salted, st->client_key, stored, st->server_key);
    } else {
        rc = sha256(st->client_key, PGW_SCRAM_KEY_LEN, stored);
    }
    if (rc < 0)
        goto out;

    char without_proof[256];
    int n = snprintf(without_proof, sizeof without_proof, "c=biws,r=%.*s", (int)nonce_len, nonce);
    if (n < 0 || (size_t)n >= sizeof without_proof) {
        rc = PGW_ETOOLONG;
        goto out;
    }
    rc = auth_message_hmac(stored, st->client_first_bare, sf, without_proof, (size_t)n,
                           client_sig);
    if (rc == 0)
        rc = auth_message_hmac(st->server_key, st->client_first_bare, sf, without_proof,
                               (size_t)n, st->expected_server_sig);
    if (rc < 0)
        goto out;
    for (int i = 0; i < PGW_SCRAM_KEY_LEN; i++)
        proof[i] = st->client_key[i] ^ client_sig[i];
    char proof_b64[48];
    (void)pgw__b64_encode(proof, sizeof proof, proof_b64, sizeof proof_b64);
    n = snprintf(st->client_final, sizeof st->client_final, "%s,p=%s", without_proof, proof_b64);
    if (n < 0 || (size_t)n >= sizeof st->client_final) {
        rc = PGW_ETOOLONG;
        goto out;
    }
    st->step = 2;
out:
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_sig, sizeof client_sig);
    return rc;
}

int pgw_scram_client_finish(pgw_scram_client_t *st, const uint8_t *server_final, size_t len)
{
    if (st->step != 2)
        return PGW_EMALFORMED;
    st->step = -1;
    const char *msg = (const char *)server_final;
    if (!msg || len < 2)
        return PGW_EMALFORMED;
    if (msg[0] == 'e' && msg[1] == '=')
        return PGW_EAUTH;                         /* server-error attribute */
    attr_cursor_t c = {msg, msg + len};
    const char *v;
    size_t vlen;
    uint8_t sig[PGW_SCRAM_KEY_LEN];
    if (!next_attr(&c, 'v', NULL, &v, &vlen) || c.p != c.end ||
        pgw__b64_decode(v, vlen, sig, sizeof sig) != PGW_SCRAM_KEY_LEN)
        return PGW_EMALFORMED;
    if (CRYPTO_memcmp(sig, st->expected_server_sig, PGW_SCRAM_KEY_LEN) != 0)
        return PGW_EAUTH;
    st->step = 3;
    return 0;
}
