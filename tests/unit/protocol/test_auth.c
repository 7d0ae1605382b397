/*
 * Authentication tests: base64, MD5 against values computed by PostgreSQL 15, SCRAM-SHA-256
 * against the RFC 7677 test vector, against a secret PostgreSQL stored in pg_authid, and
 * against a complete captured libpq <-> PostgreSQL exchange (both of pgw's sides must reproduce
 * every captured SCRAM message byte for byte), plus the server side's rejections.
 */
#define _GNU_SOURCE   /* memmem */
#include "test_util.h"

#include <openssl/evp.h>
#include <stdio.h>

#include "captured_pg15.h"
#include "pgw_int.h"

/* RFC 7677 section 3. */
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_NONCE "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL                                                                    \
    "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* pg_authid.rolpassword of role pgw_scram, password 'pgw-scram-pass' (see captured_pg15.h). */
#define PG_SCRAM_SECRET                                                                     \
    "SCRAM-SHA-256$4096:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:" \
    "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM="

static const uint8_t nonce_a[PGW_SCRAM_NONCE_RAW] = {1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                      10, 11, 12, 13, 14, 15, 16, 17, 18};
static const uint8_t nonce_b[PGW_SCRAM_NONCE_RAW] = {0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa,
                                                      0xf9, 0xf8, 0xf7, 0xf6, 0xf5, 0xf4,
                                                      0xf3, 0xf2, 0xf1, 0xf0, 0xef, 0xee};

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

Test(auth, base64_rfc4648_vectors)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        uint8_t dec[16];
        cr_assert_eq(pgw__b64_encode(u8(plain[i]), strlen(plain[i]), out, sizeof out),
                     (int)strlen(enc[i]));
        cr_assert_str_eq(out, enc[i]);
        cr_assert_eq(pgw__b64_decode(enc[i], strlen(enc[i]), dec, sizeof dec),
                     (int)strlen(plain[i]));
        cr_assert(memcmp(dec, plain[i], strlen(plain[i])) == 0);
    }
    uint8_t dec[16];
    char small[4];
    cr_assert_eq(pgw__b64_encode(u8("foo"), 3, small, sizeof small), -1, "no room for NUL");
    cr_assert_eq(pgw__b64_decode("Zm9", 3, dec, sizeof dec), -1, "not a multiple of 4");
    cr_assert_eq(pgw__b64_decode("Zm9v", 4, dec, 2), -1, "output too small");
    cr_assert_eq(pgw__b64_decode("Zm*v", 4, dec, sizeof dec), -1, "bad character");
    cr_assert_eq(pgw__b64_decode("Zh==", 4, dec, sizeof dec), -1, "non-canonical padding bits");
    cr_assert_eq(pgw__b64_decode("Z===", 4, dec, sizeof dec), -1);
    cr_assert_eq(pgw__b64_decode("Zg==Zg==", 8, dec, sizeof dec), -1, "padding in the middle");
}

Test(auth, md5_matches_postgresql)
{
    char out[36];
    /* pg_authid.rolpassword of md5user with password 'pgw-md5-pass'. */
    cr_assert_eq(pgw_md5_secret("md5user", "pgw-md5-pass", out), 0);
    cr_assert_str_eq(out, "md5008da12d5b247b17da5496b0e3bb8971");
    /* libpq's answer to AuthenticationMD5Password with this salt in the captured login. */
    const uint8_t salt[4] = {0xfc, 0xcd, 0x65, 0x80};
    cr_assert_eq(pgw_md5_response("md5user", "pgw-md5-pass", salt, out), 0);
    cr_assert_str_eq(out, "md542beccf2af01c63e2e4bc95e00655953");
    /* The stored secret works in place of the password. */
    cr_assert_eq(pgw_md5_response("md5user", "md5008da12d5b247b17da5496b0e3bb8971", salt, out), 0);
    cr_assert_str_eq(out, "md542beccf2af01c63e2e4bc95e00655953");
    /* Something that only looks like a secret is a password. */
    cr_assert_eq(pgw_md5_response("md5user", "md5008DA12d5b247b17da5496b0e3bb8971", salt, out), 0);
    cr_assert_str_neq(out, "md542beccf2af01c63e2e4bc95e00655953");
    cr_assert_eq(pgw_md5_response("md5user", "md5008da12d5b247b17da5496b0e3bb897", salt, out), 0);
    cr_assert_str_neq(out, "md542beccf2af01c63e2e4bc95e00655953");
    /* The captured PasswordMessage carries exactly this response. */
    cr_assert(memmem(cap_md5_fe, sizeof cap_md5_fe, "md542beccf2af01c63e2e4bc95e00655953", 35));
}

Test(auth, scram_rfc7677_server_side)
{
    pgw_scram_secret_t sec;
    uint8_t salt[16];
    cr_assert_eq(pgw__b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, sizeof salt), 16);
    cr_assert_eq(pgw_scram_make_secret("pencil", salt, 16, 4096, &sec), 0);

    pgw_scram_server_t st;
    cr_assert_eq(pgw_scram_server_first(&st, &sec, u8(RFC_CLIENT_FIRST), strlen(RFC_CLIENT_FIRST),
                                        nonce_a), 0);
    cr_assert_str_eq(st.client_first_bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
    cr_assert_str_eq(st.server_first,
                     "r=rOprNGfwEbeRWgbNEkqOAQIDBAUGBwgJCgsMDQ4PEBES,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
                     "i=4096");
    /* The RFC's server nonce is not base64 of raw bytes; put it in place to replay the RFC. */
    strcpy(st.nonce, RFC_NONCE);
    strcpy(st.server_first, RFC_SERVER_FIRST);
    cr_assert_eq(pgw_scram_server_final(&st, u8(RFC_CLIENT_FINAL), strlen(RFC_CLIENT_FINAL)), 0);
    cr_assert_str_eq(st.server_final, RFC_SERVER_FINAL);
    uint8_t h[32];
    unsigned int hl;
    cr_assert(EVP_Digest(st.client_key, 32, h, &hl, EVP_sha256(), NULL));
    cr_assert(memcmp(h, sec.stored_key, 32) == 0, "recovered ClientKey hashes to StoredKey");
}

Test(auth, scram_rfc7677_client_side)
{
    pgw_scram_client_t c;
    cr_assert_eq(pgw_scram_client_init(&c, "pencil", nonce_a), 0);
    cr_assert_str_eq(c.client_first, "n,,n=,r=AQIDBAUGBwgJCgsMDQ4PEBES");
    cr_assert_str_eq(c.client_first_bare, "n=,r=AQIDBAUGBwgJCgsMDQ4PEBES");
    /* Replay the RFC: its client nonce and user name. */
    strcpy(c.client_nonce, "rOprNGfwEbeRWgbNEkqO");
    strcpy(c.client_first_bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
    cr_assert_eq(pgw_scram_client_continue(&c, u8(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST)), 0);
    cr_assert_str_eq(c.client_final, RFC_CLIENT_FINAL);
    cr_assert_eq(pgw_scram_client_finish(&c, u8(RFC_SERVER_FINAL), strlen(RFC_SERVER_FINAL)), 0);
}

Test(auth, scram_client_rejects_bad_server)
{
    pgw_scram_client_t c;
    cr_assert_eq(pgw_scram_client_init(&c, "pencil", nonce_a), 0);
    strcpy(c.client_nonce, "rOprNGfwEbeRWgbNEkqO");
    strcpy(c.client_first_bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
    pgw_scram_client_t saved = c;
    cr_assert_eq(pgw_scram_client_continue(&c, u8(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST)), 0);
    const char *wrong = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    cr_assert_eq(pgw_scram_client_finish(&c, u8(wrong), strlen(wrong)), PGW_EAUTH);
    cr_assert_eq(pgw_scram_client_finish(&c, u8(RFC_SERVER_FINAL), strlen(RFC_SERVER_FINAL)),
                 PGW_EMALFORMED, "the state machine does not restart");
    c = saved;
    cr_assert_eq(pgw_scram_client_continue(&c, u8(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST)), 0);
    cr_assert_eq(pgw_scram_client_finish(&c, u8("e=invalid-proof"), 15), PGW_EAUTH);
    /* Server nonce that does not extend ours, missing salt, zero iterations, bad base64. */
    const char *bad[] = {
        "r=XOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOabc,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = saved;
        cr_assert_eq(pgw_scram_client_continue(&c, u8(bad[i]), strlen(bad[i])), PGW_EMALFORMED,
                     "%s", bad[i]);
    }
    char long_pw[300];
    memset(long_pw, 'a', sizeof long_pw - 1);
    long_pw[sizeof long_pw - 1] = 0;
    cr_assert_eq(pgw_scram_client_init(&c, long_pw, nonce_a), PGW_ETOOLONG);
}

/* Runs pgw's client against pgw's server; returns the server's final result. */
static int exchange(pgw_scram_client_t *c, pgw_scram_server_t *s, const pgw_scram_secret_t *sec)
{
    int rc = pgw_scram_server_first(s, sec, u8(c->client_first), strlen(c->client_first), nonce_b);
    cr_assert_eq(rc, 0, "%s", pgw_strerror(rc));
    rc = pgw_scram_client_continue(c, u8(s->server_first), strlen(s->server_first));
    cr_assert_eq(rc, 0, "%s", pgw_strerror(rc));
    rc = pgw_scram_server_final(s, u8(c->client_final), strlen(c->client_final));
    if (rc == 0)
        cr_assert_eq(pgw_scram_client_finish(c, u8(s->server_final), strlen(s->server_final)), 0);
    return rc;
}

Test(auth, scram_pgw_client_against_pgw_server)
{
    pgw_scram_secret_t sec;
    const uint8_t salt[PGW_SCRAM_SALT_RAW] = "0123456789abcde";
    cr_assert_eq(pgw_scram_make_secret("s3cret", salt, sizeof salt, 1000, &sec), 0);
    pgw_scram_client_t c;
    pgw_scram_server_t s;
    cr_assert_eq(pgw_scram_client_init(&c, "s3cret", nonce_a), 0);
    cr_assert_eq(exchange(&c, &s, &sec), 0);

    /* The ClientKey the server recovered, plus the ServerKey, log in without the password
       (how pgshim passes a client's SCRAM login through to PostgreSQL). */
    pgw_scram_client_t k;
    pgw_scram_server_t s2;
    cr_assert_eq(pgw_scram_client_init_keys(&k, s.client_key, sec.server_key, nonce_b), 0);
    cr_assert_eq(exchange(&k, &s2, &sec), 0);

    cr_assert_eq(pgw_scram_client_init(&c, "wrong", nonce_a), 0);
    cr_assert_eq(exchange(&c, &s, &sec), PGW_EAUTH);
    cr_assert_eq(s.step, -1);
    cr_assert_eq(pgw_scram_server_final(&s, u8(c.client_final), strlen(c.client_final)),
                 PGW_EMALFORMED, "no second attempt on the same state");
}

/* A server state after a valid client-first from pgw's client, plus that client. */
static void server_ready(pgw_scram_server_t *s, pgw_scram_client_t *c, pgw_scram_secret_t *sec)
{
    const uint8_t salt[4] = "salt";
    cr_assert_eq(pgw_scram_make_secret("pw", salt, 4, 16, sec), 0);
    cr_assert_eq(pgw_scram_client_init(c, "pw", nonce_a), 0);
    cr_assert_eq(pgw_scram_server_first(s, sec, u8(c->client_first), strlen(c->client_first),
                                        nonce_b), 0);
    cr_assert_eq(pgw_scram_client_continue(c, u8(s->server_first), strlen(s->server_first)), 0);
}

Test(auth, scram_server_rejects_bad_client_final)
{
    pgw_scram_secret_t sec;
    pgw_scram_server_t s, saved;
    pgw_scram_client_t c;
    server_ready(&s, &c, &sec);
    saved = s;
    char msg[600];
    const char *proof = strstr(c.client_final, ",p=");
    cr_assert_not_null(proof);

    /* Nonce differs in its last character. */
    strcpy(msg, c.client_final);
    char *r = strstr(msg, ",p=") - 1;
    *r = *r == 'A' ? 'B' : 'A';
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    /* Nonce is only the client's part. */
    s = saved;
    snprintf(msg, sizeof msg, "c=biws,r=%s%s", c.client_nonce, proof);
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    /* Channel-binding data that does not echo "n,,". */
    s = saved;
    snprintf(msg, sizeof msg, "c=eSws,r=%s%s", s.nonce, proof);
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    /* Garbage after the proof, and a trailing comma. */
    s = saved;
    snprintf(msg, sizeof msg, "%s,x=1", c.client_final);
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    s = saved;
    snprintf(msg, sizeof msg, "%s,", c.client_final);
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    /* Missing proof, short proof. */
    s = saved;
    snprintf(msg, sizeof msg, "c=biws,r=%s", s.nonce);
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    s = saved;
    snprintf(msg, sizeof msg, "c=biws,r=%s,p=AAAA", s.nonce);
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EMALFORMED);
    /* Proof with one bit flipped: well-formed but wrong. */
    s = saved;
    strcpy(msg, c.client_final);
    char *p = strstr(msg, ",p=") + 3;
    p[0] = p[0] == 'A' ? 'B' : 'A';
    cr_assert_eq(pgw_scram_server_final(&s, u8(msg), strlen(msg)), PGW_EAUTH);
    /* The untouched message still verifies on a fresh copy of the state. */
    s = saved;
    cr_assert_eq(pgw_scram_server_final(&s, u8(c.client_final), strlen(c.client_final)), 0);
    /* Before server_first, final is refused. */
    pgw_scram_server_t fresh;
    memset(&fresh, 0, sizeof fresh);
    cr_assert_eq(pgw_scram_server_final(&fresh, u8(c.client_final), strlen(c.client_final)),
                 PGW_EMALFORMED);
}

Test(auth, scram_server_rejects_bad_client_first)
{
    pgw_scram_secret_t sec;
    const uint8_t salt[4] = "salt";
    cr_assert_eq(pgw_scram_make_secret("pw", salt, 4, 16, &sec), 0);
    pgw_scram_server_t s;
    static const struct {
        const char *msg;
        int rc;
    } cases[] = {
        {"p=tls-server-end-point,,n=,r=abc", PGW_EUNSUPPORTED},   /* channel binding */
        {"n,a=admin,n=,r=abc", PGW_EUNSUPPORTED},                 /* authzid */
        {"n,,m=ext,n=,r=abc", PGW_EUNSUPPORTED},                  /* mandatory extension */
        {"x,,n=,r=abc", PGW_EMALFORMED},
        {"n,,r=abc", PGW_EMALFORMED},
        {"n,,n=", PGW_EMALFORMED},
        {"n,,n=,r=", PGW_EMALFORMED},
        {"n,,n=,r=a b", PGW_EMALFORMED},
        {"n,", PGW_EMALFORMED},
        {"", PGW_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(pgw_scram_server_first(&s, &sec, u8(cases[i].msg), strlen(cases[i].msg),
                                            nonce_b), cases[i].rc, "%s", cases[i].msg);
    /* "y,," (client could bind, thinks we cannot) is accepted and must be echoed as eSws. */
    const char *y = "y,,n=,r=abc";
    cr_assert_eq(pgw_scram_server_first(&s, &sec, u8(y), strlen(y), nonce_b), 0);
    cr_assert_str_eq(s.nonce, "abc//79/Pv6+fj39vX08/Lx8O/u");
    /* Extensions after r= are ignored. */
    const char *ext = "n,,n=someone,r=abc,x=1";
    cr_assert_eq(pgw_scram_server_first(&s, &sec, u8(ext), strlen(ext), nonce_b), 0);
    /* A NUL inside the message. */
    cr_assert_eq(pgw_scram_server_first(&s, &sec, u8("n,,n=,r=a\0b"), 11, nonce_b),
                 PGW_EMALFORMED);
}

Test(auth, scram_secret_from_postgresql)
{
    pgw_scram_secret_t pg, mine;
    cr_assert_eq(pgw_scram_parse_secret(PG_SCRAM_SECRET, &pg), 0);
    cr_assert_eq(pg.iterations, 4096);
    cr_assert_eq(pg.salt_len, 16);
    cr_assert_eq(pgw_scram_make_secret("pgw-scram-pass", pg.salt, pg.salt_len, pg.iterations,
                                       &mine), 0);
    cr_assert(memcmp(mine.stored_key, pg.stored_key, 32) == 0, "StoredKey as PostgreSQL's");
    cr_assert(memcmp(mine.server_key, pg.server_key, 32) == 0, "ServerKey as PostgreSQL's");
    cr_assert_eq(pgw_scram_make_secret("pgw-scram-pasS", pg.salt, pg.salt_len, pg.iterations,
                                       &mine), 0);
    cr_assert(memcmp(mine.stored_key, pg.stored_key, 32) != 0);

    static const char *bad[] = {
        "SCRAM-SHA-1$4096:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:"
        "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
        "SCRAM-SHA-256$0:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:"
        "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
        "SCRAM-SHA-256$x:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:"
        "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
        "SCRAM-SHA-256$4096:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=",
        "SCRAM-SHA-256$4096:7v/m3i1QnH3ckNZgvBHSdg=$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:"
        "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
        "SCRAM-SHA-256$4096:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfX:"
        "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
        "SCRAM-SHA-256$4096:$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:"
        "ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
        "md5008da12d5b247b17da5496b0e3bb8971",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(pgw_scram_parse_secret(bad[i], &pg), PGW_EMALFORMED, "%s", bad[i]);
    cr_assert_eq(pgw_scram_make_secret("x", (const uint8_t *)"s", 1, 0, &mine), PGW_EMALFORMED);
    cr_assert_eq(pgw_scram_make_secret("x", (const uint8_t *)"s", 0, 1, &mine), PGW_EMALFORMED);
}

/* Extracts the SCRAM payloads of the captured login (see captured_pg15.h). */
typedef struct scram_capture {
    const uint8_t *client_first, *server_first, *client_final, *server_final;
    size_t client_first_len, server_first_len, client_final_len, server_final_len;
} scram_capture_t;

static scram_capture_t scram_capture(void)
{
    scram_capture_t cap;
    memset(&cap, 0, sizeof cap);
    size_t off = tu_get32(cap_scram_fe);                 /* after the StartupMessage */
    pgw_frame_t f = tu_frame(PGW_PHASE_NORMAL, PGW_F, cap_scram_fe + off,
                             tu_get32(cap_scram_fe + off + 1) + 1);
    pgw_sasl_initial_t si;
    cr_assert_eq(pgw_decode_sasl_initial(&f, &si), 0);
    TU_ASSERT_STR(si.mechanism, "SCRAM-SHA-256");
    cap.client_first = si.data;
    cap.client_first_len = (size_t)si.data_len;
    off += f.total_len;
    f = tu_frame(PGW_PHASE_NORMAL, PGW_F, cap_scram_fe + off, tu_get32(cap_scram_fe + off + 1) + 1);
    uint32_t n;
    cr_assert_eq(pgw_decode_sasl_response(&f, &cap.client_final, &n), 0);
    cap.client_final_len = n;

    off = 0;
    for (int i = 0; i < 3; i++) {
        f = tu_frame(PGW_PHASE_NORMAL, PGW_B, cap_scram_be + off,
                     tu_get32(cap_scram_be + off + 1) + 1);
        pgw_auth_t a;
        cr_assert_eq(pgw_decode_auth(&f, &a), 0);
        if (a.code == PGW_AUTH_SASL_CONTINUE) {
            cap.server_first = a.data;
            cap.server_first_len = a.data_len;
        } else if (a.code == PGW_AUTH_SASL_FINAL) {
            cap.server_final = a.data;
            cap.server_final_len = a.data_len;
        }
        off += f.total_len;
    }
    cr_assert(cap.server_first && cap.server_final);
    return cap;
}

Test(auth, scram_replays_captured_libpq_login_as_client)
{
    scram_capture_t cap = scram_capture();
    /* libpq's nonce is base64 of 18 random bytes, the same shape pgw uses. */
    cr_assert(cap.client_first_len > 8 && memcmp(cap.client_first, "n,,n=,r=", 8) == 0);
    uint8_t raw[PGW_SCRAM_NONCE_RAW + 2];
    cr_assert_eq(pgw__b64_decode((const char *)cap.client_first + 8, cap.client_first_len - 8, raw,
                                 sizeof raw), PGW_SCRAM_NONCE_RAW);
    pgw_scram_client_t c;
    cr_assert_eq(pgw_scram_client_init(&c, "pgw-scram-pass", raw), 0);
    cr_assert_eq(strlen(c.client_first), cap.client_first_len);
    cr_assert(memcmp(c.client_first, cap.client_first, cap.client_first_len) == 0);
    cr_assert_eq(pgw_scram_client_continue(&c, cap.server_first, cap.server_first_len), 0);
    cr_assert_eq(strlen(c.client_final), cap.client_final_len);
    cr_assert(memcmp(c.client_final, cap.client_final, cap.client_final_len) == 0,
              "client-final differs from libpq's");
    cr_assert_eq(pgw_scram_client_finish(&c, cap.server_final, cap.server_final_len), 0);
}

Test(auth, scram_replays_captured_login_as_server)
{
    scram_capture_t cap = scram_capture();
    pgw_scram_secret_t sec;
    cr_assert_eq(pgw_scram_parse_secret(PG_SCRAM_SECRET, &sec), 0);
    /* Server nonce = combined nonce minus the client's 24 characters. */
    uint8_t raw[PGW_SCRAM_NONCE_RAW + 2];
    const char *sf = (const char *)cap.server_first;
    const char *comma = memchr(sf, ',', cap.server_first_len);
    cr_assert_not_null(comma);
    cr_assert_eq(pgw__b64_decode(sf + 2 + 24, (size_t)(comma - sf) - 2 - 24, raw, sizeof raw),
                 PGW_SCRAM_NONCE_RAW);
    pgw_scram_server_t s;
    cr_assert_eq(pgw_scram_server_first(&s, &sec, cap.client_first, cap.client_first_len, raw), 0);
    cr_assert_eq(strlen(s.server_first), cap.server_first_len);
    cr_assert(memcmp(s.server_first, cap.server_first, cap.server_first_len) == 0,
              "server-first differs from PostgreSQL's");
    cr_assert_eq(pgw_scram_server_final(&s, cap.client_final, cap.client_final_len), 0);
    cr_assert_eq(strlen(s.server_final), cap.server_final_len);
    cr_assert(memcmp(s.server_final, cap.server_final, cap.server_final_len) == 0,
              "server-final differs from PostgreSQL's");
}
