/*
 * Client authentication against the auth file: trust, any, plain (cleartext), md5 and
 * SCRAM-SHA-256, following PgBouncer's rules for which exchange a stored secret allows (a SCRAM
 * secret with auth_type md5 means a SCRAM exchange; an md5 secret cannot do SCRAM).
 *
 * Invariants: every failure ends in FATAL 28P01 'password authentication failed for user "x"'
 * (or 08P01 for protocol violations) and a closed connection; nothing secret is logged; nonces
 * and salts come from RAND_bytes; comparisons of secrets are constant-time.
 */
#include "px_proxy.h"
#include "px_admin.h"
#include "px_log.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define SCRAM_ITERATIONS 4096

static void auth_failed(px_client_t *c)
{
    px_client_fatal(c, "28P01", "password authentication failed for user \"%s\"", c->user);
}

static void auth_ok(px_client_t *c)
{
    c->auth_step = PX_AUTH_STEP_DONE;
    free(c->scram);
    c->scram = NULL;
    if (c->pool == NULL) {
        px_admin_login(c);  /* database "pgshim": the admin console */
        return;
    }
    px_pool_client_login(c);
}

static bool secure_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}

static void send_buf(px_client_t *c, pgw_buf_t *b)
{
    if (pgw_buf_failed(b) || px_io_write(&c->io, b->data, b->len) < 0)
        px_client_fatal(c, "53200", "out of memory");
}

/* A plaintext secret gets a SCRAM secret derived once (random salt), so that repeated logins do
 * not pay the key derivation each time. */
static bool ensure_scram_secret(px_user_t *u)
{
    if (u->scram_ready)
        return true;
    if (u->kind != PX_SECRET_PLAIN)
        return false;
    uint8_t salt[PGW_SCRAM_SALT_RAW];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return false;
    if (pgw_scram_make_secret(u->secret, salt, sizeof(salt), SCRAM_ITERATIONS, &u->scram) != 0)
        return false;
    u->scram_ready = true;
    return true;
}

static void start_scram(px_client_t *c)
{
    if (!ensure_scram_secret(c->auth_user)) {
        auth_failed(c);
        return;
    }
    static const char *const mechs[] = {"SCRAM-SHA-256"};
    c->scram = calloc(1, sizeof(*c->scram));
    if (c->scram == NULL) {
        px_client_fatal(c, "53200", "out of memory");
        return;
    }
    uint8_t mem[256];
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, mem, sizeof(mem));
    pgw_build_auth_sasl(&b, mechs, 1);
    c->auth_step = PX_AUTH_STEP_SCRAM_FIRST;
    send_buf(c, &b);
}

static void start_md5(px_client_t *c)
{
    if (RAND_bytes(c->md5_salt, sizeof(c->md5_salt)) != 1) {
        px_client_fatal(c, "58000", "random generator failed");
        return;
    }
    uint8_t mem[64];
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, mem, sizeof(mem));
    pgw_build_auth_md5(&b, c->md5_salt);
    c->auth_step = PX_AUTH_STEP_MD5;
    send_buf(c, &b);
}

static void start_cleartext(px_client_t *c)
{
    uint8_t mem[64];
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, mem, sizeof(mem));
    pgw_build_auth(&b, PGW_AUTH_CLEARTEXT, NULL, 0);
    c->auth_step = PX_AUTH_STEP_CLEARTEXT;
    send_buf(c, &b);
}

void px_auth_start(px_client_t *c)
{
    int type = px_cfg->auth_type;
    if (type == PX_AUTH_ANY || (type == PX_AUTH_TRUST && px_cfg->auth_file[0] == '\0')) {
        auth_ok(c);
        return;
    }
    c->auth_user = px_userlist_find(c->user);
    if (c->auth_user == NULL) {
        /* Same answer as a wrong password so user names cannot be probed. */
        auth_failed(c);
        return;
    }
    switch (type) {
    case PX_AUTH_TRUST:
        auth_ok(c);
        return;
    case PX_AUTH_PLAIN:
        start_cleartext(c);
        return;
    case PX_AUTH_MD5:
        if (c->auth_user->kind == PX_SECRET_SCRAM)
            start_scram(c);
        else
            start_md5(c);
        return;
    case PX_AUTH_SCRAM:
        if (c->auth_user->kind == PX_SECRET_MD5)
            auth_failed(c);
        else
            start_scram(c);
        return;
    default:
        auth_failed(c);
        return;
    }
}

/* Checks a cleartext password against whatever form of secret is stored. */
static bool check_cleartext(px_client_t *c, const char *pw)
{
    px_user_t *u = c->auth_user;
    if (u->kind == PX_SECRET_PLAIN)
        return secure_equal(pw, u->secret);
    if (u->kind == PX_SECRET_MD5) {
        char md5[36];
        if (pgw_md5_secret(c->user, pw, md5) != 0)
            return false;
        return secure_equal(md5, u->secret);
    }
    pgw_scram_secret_t derived;
    if (pgw_scram_make_secret(pw, u->scram.salt, u->scram.salt_len, u->scram.iterations,
                              &derived) != 0)
        return false;
    bool ok = CRYPTO_memcmp(derived.stored_key, u->scram.stored_key, PGW_SCRAM_KEY_LEN) == 0 &&
              CRYPTO_memcmp(derived.server_key, u->scram.server_key, PGW_SCRAM_KEY_LEN) == 0;
    OPENSSL_cleanse(&derived, sizeof(derived));
    if (ok && u->proven_password == NULL)
        u->proven_password = strdup(pw);
    return ok;
}

static void handle_cleartext(px_client_t *c, const pgw_frame_t *f)
{
    pgw_str_t pw;
    if (pgw_decode_password(f, &pw) != 0) {
        px_client_fatal(c, "08P01", "invalid password packet");
        return;
    }
    if (check_cleartext(c, pw.ptr))
        auth_ok(c);
    else
        auth_failed(c);
}

static void handle_md5(px_client_t *c, const pgw_frame_t *f)
{
    pgw_str_t pw;
    if (pgw_decode_password(f, &pw) != 0) {
        px_client_fatal(c, "08P01", "invalid password packet");
        return;
    }
    char expected[36];
    if (pgw_md5_response(c->user, c->auth_user->secret, c->md5_salt, expected) != 0) {
        auth_failed(c);
        return;
    }
    if (secure_equal(pw.ptr, expected))
        auth_ok(c);
    else
        auth_failed(c);
}

static void handle_scram_first(px_client_t *c, const pgw_frame_t *f)
{
    pgw_sasl_initial_t init;
    if (pgw_decode_sasl_initial(f, &init) != 0 || init.data == NULL) {
        px_client_fatal(c, "08P01", "invalid SASL initial response");
        return;
    }
    if (strcmp(init.mechanism.ptr, "SCRAM-SHA-256") != 0) {
        px_client_fatal(c, "28000", "client selected an invalid SASL authentication mechanism");
        return;
    }
    uint8_t nonce[PGW_SCRAM_NONCE_RAW];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        px_client_fatal(c, "58000", "random generator failed");
        return;
    }
    int rc = pgw_scram_server_first(c->scram, &c->auth_user->scram, init.data,
                                    (size_t)init.data_len, nonce);
    if (rc != 0) {
        px_client_fatal(c, "08P01", "malformed SCRAM message");
        return;
    }
    uint8_t mem[768];
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, mem, sizeof(mem));
    pgw_build_auth(&b, PGW_AUTH_SASL_CONTINUE, c->scram->server_first, strlen(c->scram->server_first));
    c->auth_step = PX_AUTH_STEP_SCRAM_FINAL;
    send_buf(c, &b);
}

static void handle_scram_final(px_client_t *c, const pgw_frame_t *f)
{
    const uint8_t *data;
    uint32_t len;
    if (pgw_decode_sasl_response(f, &data, &len) != 0) {
        px_client_fatal(c, "08P01", "invalid SASL response");
        return;
    }
    int rc = pgw_scram_server_final(c->scram, data, len);
    if (rc == PGW_EAUTH) {
        auth_failed(c);
        return;
    }
    if (rc != 0) {
        px_client_fatal(c, "08P01", "malformed SCRAM message");
        return;
    }
    /* Keep the recovered keys: pgshim can then log in to PostgreSQL as this user with SCRAM
     * even when only the SCRAM secret is known (the same trick PgBouncer uses). */
    px_user_t *u = c->auth_user;
    memcpy(u->client_key, c->scram->client_key, PGW_SCRAM_KEY_LEN);
    memcpy(u->server_key, u->scram.server_key, PGW_SCRAM_KEY_LEN);
    u->have_keys = true;
    uint8_t mem[512];
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, mem, sizeof(mem));
    pgw_build_auth(&b, PGW_AUTH_SASL_FINAL, c->scram->server_final, strlen(c->scram->server_final));
    send_buf(c, &b);
    if (c->state != PX_CL_CLOSING)
        auth_ok(c);
}

void px_auth_message(px_client_t *c, const pgw_frame_t *f)
{
    switch (c->auth_step) {
    case PX_AUTH_STEP_CLEARTEXT: handle_cleartext(c, f); break;
    case PX_AUTH_STEP_MD5: handle_md5(c, f); break;
    case PX_AUTH_STEP_SCRAM_FIRST: handle_scram_first(c, f); break;
    case PX_AUTH_STEP_SCRAM_FINAL: handle_scram_final(c, f); break;
    default:
        px_client_fatal(c, "08P01", "unexpected password message");
        break;
    }
}
