/*
 * Fuzz target: protocol/ on bytes from an untrusted peer. A client controls everything pgshim
 * frames in the startup and normal phases and everything it feeds to the SCRAM server; a broken
 * or hostile server controls what pgshim frames from it and what the SCRAM client consumes.
 *
 * Input: byte 0 picks the phase and direction (and whether the rest is a stream of messages or
 * SCRAM exchanges); the rest is what the peer sent.
 *
 * Invariants beyond memory safety: framing consumes at most the bytes it was given and asks for
 * more only with a positive count; decoded views lie inside the message; list iterators yield
 * exactly the count the header announced; SCRAM never accepts a proof for a password it was not
 * given.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "pgw.h"

static void inside(const pgw_frame_t *f, const void *p, size_t n)
{
    const uint8_t *b = p;
    FZ_CHECK(b >= f->body && b + n <= f->body + f->body_len);
}

/* Every decoder returns success or one of the codec's error codes, nothing else. */
static void known(int rc)
{
    FZ_CHECK(rc == 0 || (rc <= PGW_ENEEDMORE && rc >= PGW_ECRYPTO));
}

static void decode_all(const pgw_frame_t *f, pgw_dir_t from)
{
    known(pgw_validate(f, from));
    size_t off = 0;
    const uint8_t *v;
    int32_t len;
    switch (f->type) {
    case PGW_MSG_STARTUP: {
        pgw_startup_t s;
        if (pgw_decode_startup(f, &s) == 0) {
            pgw_str_t u = pgw_startup_get(&s, "user");
            if (u.ptr)
                inside(f, u.ptr, u.len);
        }
        break;
    }
    case PGW_MSG_CANCEL_REQUEST: {
        pgw_cancel_t c;
        known(pgw_decode_cancel(f, &c));
        break;
    }
    case PGW_MSG_SSL_REQUEST:
    case PGW_MSG_GSSENC_REQUEST:
        known(pgw_decode_ssl_request(f));
        break;
    case PGW_MSG_QUERY: {
        pgw_query_t q;
        known(pgw_decode_query(f, &q));
        break;
    }
    case PGW_MSG_PARSE: {
        pgw_parse_t p;
        if (pgw_decode_parse(f, &p) == 0)
            for (uint16_t i = 0; i <= p.nparams; i++)
                (void)pgw_parse_param_oid(&p, i);
        break;
    }
    case PGW_MSG_BIND: {
        pgw_bind_t b;
        if (pgw_decode_bind(f, &b) != 0)
            break;
        unsigned n = 0;
        while (pgw_bind_next_param(&b, &off, &v, &len)) {
            if (len >= 0)
                inside(f, v, (size_t)len);
            n++;
        }
        FZ_CHECK(n == b.nparams);
        for (uint16_t i = 0; i < b.nparams + 2; i++)
            (void)pgw_bind_param_format(&b, i), (void)pgw_bind_result_format(&b, i);
        break;
    }
    case PGW_MSG_DESCRIBE:
    case PGW_MSG_CLOSE: {
        pgw_target_t t;
        known(f->type == PGW_MSG_DESCRIBE ? pgw_decode_describe(f, &t) : pgw_decode_close(f, &t));
        break;
    }
    case PGW_MSG_EXECUTE: {
        pgw_execute_t e;
        known(pgw_decode_execute(f, &e));
        break;
    }
    case PGW_MSG_COPY_FAIL: {
        pgw_copy_fail_t c;
        known(pgw_decode_copy_fail(f, &c));
        break;
    }
    case PGW_MSG_PASSWORD: {
        pgw_str_t pw;
        pgw_sasl_initial_t si;
        const uint8_t *d;
        uint32_t dl;
        known(pgw_decode_password(f, &pw));
        known(pgw_decode_sasl_initial(f, &si));
        if (pgw_decode_sasl_response(f, &d, &dl) == 0)
            inside(f, d, dl);
        break;
    }
    case PGW_MSG_SYNC:
    case PGW_MSG_FLUSH:
    case PGW_MSG_TERMINATE:
    case PGW_MSG_COPY_DONE:
    case PGW_MSG_NO_DATA:
    case PGW_MSG_PARSE_COMPLETE:
    case PGW_MSG_BIND_COMPLETE:
    case PGW_MSG_CLOSE_COMPLETE:
    case PGW_MSG_EMPTY_QUERY_RESPONSE:
    case PGW_MSG_PORTAL_SUSPENDED:
        known(pgw_decode_empty(f));
        break;
    case PGW_MSG_AUTHENTICATION: {
        pgw_auth_t a;
        if (pgw_decode_auth(f, &a) == 0)
            (void)pgw_auth_has_mechanism(&a, "SCRAM-SHA-256");
        break;
    }
    case PGW_MSG_PARAMETER_STATUS: {
        pgw_param_status_t p;
        known(pgw_decode_param_status(f, &p));
        break;
    }
    case PGW_MSG_BACKEND_KEY_DATA: {
        pgw_cancel_t c;
        known(pgw_decode_backend_key(f, &c));
        break;
    }
    case PGW_MSG_READY_FOR_QUERY: {
        uint8_t st;
        known(pgw_decode_ready(f, &st));
        break;
    }
    case PGW_MSG_COMMAND_COMPLETE: {
        pgw_command_complete_t c;
        known(pgw_decode_command_complete(f, &c));
        break;
    }
    case PGW_MSG_ERROR_RESPONSE:
    case PGW_MSG_NOTICE_RESPONSE: {
        pgw_error_fields_t e;
        uint8_t code;
        pgw_str_t s;
        if (pgw_decode_error(f, &e) != 0)
            break;
        while (pgw_error_next_field(&e, &off, &code, &s))
            inside(f, s.ptr, s.len);
        break;
    }
    case PGW_MSG_ROW_DESCRIPTION: {
        pgw_row_description_t rd;
        pgw_field_desc_t fd;
        if (pgw_decode_row_description(f, &rd) != 0)
            break;
        unsigned n = 0;
        while (pgw_row_description_next(&rd, &off, &fd)) {
            inside(f, fd.name.ptr, fd.name.len);
            n++;
        }
        FZ_CHECK(n == rd.nfields);
        break;
    }
    case PGW_MSG_DATA_ROW: {
        pgw_data_row_t d;
        if (pgw_decode_data_row(f, &d) != 0)
            break;
        unsigned n = 0;
        while (pgw_data_row_next(&d, &off, &v, &len)) {
            if (len >= 0)
                inside(f, v, (size_t)len);
            n++;
        }
        FZ_CHECK(n == d.ncols);
        break;
    }
    case PGW_MSG_NOTIFICATION_RESPONSE: {
        pgw_notification_t n;
        known(pgw_decode_notification(f, &n));
        break;
    }
    case PGW_MSG_PARAMETER_DESCRIPTION: {
        pgw_param_description_t p;
        known(pgw_decode_param_description(f, &p));
        break;
    }
    case PGW_MSG_COPY_IN_RESPONSE:
    case PGW_MSG_COPY_OUT_RESPONSE:
    case PGW_MSG_COPY_BOTH_RESPONSE: {
        pgw_copy_response_t c;
        known(pgw_decode_copy_response(f, &c));
        break;
    }
    case PGW_MSG_NEGOTIATE_PROTOCOL_VERSION: {
        pgw_negotiate_t n;
        known(pgw_decode_negotiate(f, &n));
        break;
    }
    default:
        break;
    }
}

static void stream(fz_in_t *in, pgw_phase_t phase, pgw_dir_t from)
{
    const uint8_t *p = in->p;
    size_t left = in->left;
    while (left > 0) {
        pgw_frame_t f;
        size_t need = 0;
        int rc = pgw_frame_next(phase, from, p, left, &f, &need);
        if (rc == PGW_ENEEDMORE) {
            FZ_CHECK(need > 0);
            /* Once the header is there, pgw_frame_peek sees the same message and need is exact. */
            if (phase == PGW_PHASE_NORMAL && left >= 5) {
                pgw_frame_t pf;
                int pr = pgw_frame_peek(from, p, left, &pf);
                FZ_CHECK(pr == 5 && pf.total_len == left + need);
            }
            return;
        }
        if (rc < 0)
            return;
        FZ_CHECK((size_t)rc <= left && rc >= (phase == PGW_PHASE_STARTUP ? 8 : 5));
        FZ_CHECK(f.total_len == (uint32_t)rc);
        decode_all(&f, from);
        p += rc;
        left -= (size_t)rc;
        /* The client's startup phase ends with its StartupMessage. */
        if (phase == PGW_PHASE_STARTUP && f.type == PGW_MSG_STARTUP)
            phase = PGW_PHASE_NORMAL;
    }
}

/* SCRAM with pgshim as the server: the client's first and final messages come from the input. */
static void scram_server(fz_in_t *in)
{
    static pgw_scram_secret_t secret;
    static int have;
    if (!have) {
        const uint8_t salt[PGW_SCRAM_SALT_RAW] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        if (pgw_scram_make_secret("secret", salt, sizeof salt, 64, &secret) != 0)
            fz_fail(__FILE__, __LINE__, "secret");
        have = 1;
    }
    const uint8_t *first, *final;
    size_t fl = fz_until(in, 0xFF, &first);
    size_t nl = fz_until(in, 0xFF, &final);
    const uint8_t nonce[PGW_SCRAM_NONCE_RAW] = {0};
    pgw_scram_server_t st;
    if (pgw_scram_server_first(&st, &secret, first, fl, nonce) != 0)
        return;
    FZ_CHECK(memchr(st.server_first, '\0', sizeof st.server_first) != NULL);
    int rc = pgw_scram_server_final(&st, final, nl);
    /* A random proof cannot be right: only a client that knows the password gets 0 here. The
       fuzzer cannot compute HMACs, so success would mean the proof is not checked. */
    FZ_CHECK(rc != 0);
}

/* SCRAM with pgshim as the client: the server's first and final messages come from the input. */
static void scram_client(fz_in_t *in)
{
    const uint8_t nonce[PGW_SCRAM_NONCE_RAW] = {0};
    pgw_scram_client_t st;
    if (pgw_scram_client_init(&st, "secret", nonce) != 0)
        return;
    const uint8_t *first, *final;
    size_t fl = fz_until(in, 0xFF, &first);
    size_t nl = fz_until(in, 0xFF, &final);
    if (pgw_scram_client_continue(&st, first, fl) != 0)
        return;
    FZ_CHECK(pgw_scram_client_finish(&st, final, nl) != 0);
}

static void secret_text(fz_in_t *in)
{
    char text[512];
    const uint8_t *s;
    size_t n = fz_bytes(in, sizeof text - 1, &s);
    memcpy(text, s, n);
    text[n] = '\0';
    pgw_scram_secret_t sec;
    if (pgw_scram_parse_secret(text, &sec) == 0)
        FZ_CHECK(sec.salt_len <= sizeof sec.salt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    switch (fz_u8(&in) % 6) {
    case 0: stream(&in, PGW_PHASE_STARTUP, PGW_F); break;
    case 1: stream(&in, PGW_PHASE_NORMAL, PGW_F); break;
    case 2: stream(&in, PGW_PHASE_NORMAL, PGW_B); break;
    case 3: scram_server(&in); break;
    case 4: scram_client(&in); break;
    default: secret_text(&in); break;
    }
    return 0;
}
