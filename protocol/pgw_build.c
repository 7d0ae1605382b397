/*
 * Output buffers and message builders.
 *
 * Invariants: a pgw_buf_t is either growable (heap memory it owns, grown with realloc) or fixed
 * (caller memory, never reallocated or freed). Any append that does not fit, any allocation
 * failure, a message longer than an int32 length word can say, or a begin/end pair out of order
 * sets the sticky `failed` flag; later appends become no-ops, so a run of builder calls is
 * checked once with pgw_buf_failed(). pgw_msg_begin() reserves the length word and
 * pgw_msg_end() back-patches it, as PostgreSQL's pq_beginmessage/pq_endmessage do; msg_start
 * holds the offset of that length word.
 */
#include "pgw_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void pgw_buf_init(pgw_buf_t *b)
{
    memset(b, 0, sizeof *b);
}

void pgw_buf_init_fixed(pgw_buf_t *b, uint8_t *mem, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->data = mem;
    b->cap = cap;
    b->fixed = true;
}

void pgw_buf_free(pgw_buf_t *b)
{
    if (!b->fixed)
        free(b->data);
    memset(b, 0, sizeof *b);
}

void pgw_buf_reset(pgw_buf_t *b)
{
    b->len = 0;
    b->msg_start = 0;
    b->failed = false;
    b->in_msg = false;
}

uint8_t *pgw_buf_steal(pgw_buf_t *b, size_t *len)
{
    uint8_t *p = NULL;
    *len = 0;
    if (b->failed) {
        pgw_buf_reset(b);
        return NULL;
    }
    if (b->fixed) {
        /* Caller memory cannot change hands; hand out a copy instead. */
        if (b->len > 0 && (p = malloc(b->len)) != NULL) {
            memcpy(p, b->data, b->len);
            *len = b->len;
        }
        pgw_buf_reset(b);
        return p;
    }
    p = b->data;
    *len = b->len;
    memset(b, 0, sizeof *b);
    return p;
}

bool pgw_buf_failed(const pgw_buf_t *b)
{
    return b->failed;
}

/* Makes room for n more bytes; false (and failed set) when that is impossible. */
static bool reserve(pgw_buf_t *b, size_t n)
{
    if (b->failed)
        return false;
    if (n <= b->cap - b->len)
        return true;
    if (b->fixed || n > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void pgw_buf_append(pgw_buf_t *b, const void *p, size_t n)
{
    if (!reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

void pgw_put_bytes(pgw_buf_t *b, const void *p, size_t n)
{
    pgw_buf_append(b, p, n);
}

void pgw_put_u8(pgw_buf_t *b, uint8_t v)
{
    pgw_buf_append(b, &v, 1);
}

void pgw_put_i16(pgw_buf_t *b, int16_t v)
{
    uint16_t u = (uint16_t)v;
    uint8_t be[2] = {(uint8_t)(u >> 8), (uint8_t)u};
    pgw_buf_append(b, be, 2);
}

void pgw_put_i32(pgw_buf_t *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t be[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    pgw_buf_append(b, be, 4);
}

void pgw_put_cstr(pgw_buf_t *b, const char *s)
{
    pgw_buf_append(b, s, strlen(s) + 1);
}

void pgw_put_str(pgw_buf_t *b, pgw_str_t s)
{
    if (s.len)
        pgw_buf_append(b, s.ptr, s.len);
    pgw_put_u8(b, 0);
}

void pgw_msg_begin(pgw_buf_t *b, uint8_t tag)
{
    if (b->in_msg) {            /* a begin without end would leave a length word unpatched */
        b->failed = true;
        return;
    }
    if (tag)
        pgw_put_u8(b, tag);
    b->msg_start = b->len;
    pgw_put_i32(b, 0);
    b->in_msg = true;
}

void pgw_msg_end(pgw_buf_t *b)
{
    if (!b->in_msg) {
        b->failed = true;
        return;
    }
    b->in_msg = false;
    if (b->failed)
        return;
    size_t n = b->len - b->msg_start;
    if (n > INT32_MAX) {
        b->failed = true;
        return;
    }
    uint8_t *p = b->data + b->msg_start;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}

/* ---------------------------------------------------------------------------------------------
 * Backend-to-client messages
 * ------------------------------------------------------------------------------------------- */
static void empty_msg(pgw_buf_t *b, pgw_msg_t type)
{
    pgw_msg_begin(b, pgw_msg_byte(type));
    pgw_msg_end(b);
}

void pgw_build_auth(pgw_buf_t *b, uint32_t code, const void *data, size_t len)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_AUTHENTICATION));
    pgw_put_i32(b, (int32_t)code);
    if (len)
        pgw_put_bytes(b, data, len);
    pgw_msg_end(b);
}

void pgw_build_auth_ok(pgw_buf_t *b)
{
    pgw_build_auth(b, PGW_AUTH_OK, NULL, 0);
}

void pgw_build_auth_md5(pgw_buf_t *b, const uint8_t salt[4])
{
    pgw_build_auth(b, PGW_AUTH_MD5, salt, 4);
}

void pgw_build_auth_sasl(pgw_buf_t *b, const char *const *mechanisms, size_t n)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_AUTHENTICATION));
    pgw_put_i32(b, PGW_AUTH_SASL);
    for (size_t i = 0; i < n; i++)
        pgw_put_cstr(b, mechanisms[i]);
    pgw_put_u8(b, 0);
    pgw_msg_end(b);
}

void pgw_build_param_status(pgw_buf_t *b, const char *name, const char *value)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_PARAMETER_STATUS));
    pgw_put_cstr(b, name);
    pgw_put_cstr(b, value);
    pgw_msg_end(b);
}

void pgw_build_backend_key(pgw_buf_t *b, uint32_t pid, uint32_t key)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_BACKEND_KEY_DATA));
    pgw_put_i32(b, (int32_t)pid);
    pgw_put_i32(b, (int32_t)key);
    pgw_msg_end(b);
}

void pgw_build_ready(pgw_buf_t *b, uint8_t status)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_READY_FOR_QUERY));
    pgw_put_u8(b, status);
    pgw_msg_end(b);
}

static void error_like(pgw_buf_t *b, pgw_msg_t type, const char *severity, const char *sqlstate,
                       const char *message, const char *detail, const char *hint)
{
    pgw_msg_begin(b, pgw_msg_byte(type));
    pgw_put_u8(b, 'S');
    pgw_put_cstr(b, severity);
    pgw_put_u8(b, 'V');
    pgw_put_cstr(b, severity);
    pgw_put_u8(b, 'C');
    pgw_put_cstr(b, sqlstate);
    pgw_put_u8(b, 'M');
    pgw_put_cstr(b, message);
    if (detail) {
        pgw_put_u8(b, 'D');
        pgw_put_cstr(b, detail);
    }
    if (hint) {
        pgw_put_u8(b, 'H');
        pgw_put_cstr(b, hint);
    }
    pgw_put_u8(b, 0);
    pgw_msg_end(b);
}

void pgw_build_error(pgw_buf_t *b, const char *severity, const char *sqlstate,
                     const char *message, const char *detail, const char *hint)
{
    error_like(b, PGW_MSG_ERROR_RESPONSE, severity, sqlstate, message, detail, hint);
}

void pgw_build_notice(pgw_buf_t *b, const char *severity, const char *sqlstate,
                      const char *message, const char *detail, const char *hint)
{
    error_like(b, PGW_MSG_NOTICE_RESPONSE, severity, sqlstate, message, detail, hint);
}

void pgw_build_command_complete(pgw_buf_t *b, const char *tag)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_COMMAND_COMPLETE));
    pgw_put_cstr(b, tag);
    pgw_msg_end(b);
}

void pgw_build_empty_query(pgw_buf_t *b) { empty_msg(b, PGW_MSG_EMPTY_QUERY_RESPONSE); }
void pgw_build_parse_complete(pgw_buf_t *b) { empty_msg(b, PGW_MSG_PARSE_COMPLETE); }
void pgw_build_bind_complete(pgw_buf_t *b) { empty_msg(b, PGW_MSG_BIND_COMPLETE); }
void pgw_build_close_complete(pgw_buf_t *b) { empty_msg(b, PGW_MSG_CLOSE_COMPLETE); }
void pgw_build_no_data(pgw_buf_t *b) { empty_msg(b, PGW_MSG_NO_DATA); }

void pgw_build_param_description(pgw_buf_t *b, const uint32_t *oids, uint16_t n)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_PARAMETER_DESCRIPTION));
    pgw_put_i16(b, (int16_t)n);
    for (uint16_t i = 0; i < n; i++)
        pgw_put_i32(b, (int32_t)oids[i]);
    pgw_msg_end(b);
}

void pgw_build_row_description(pgw_buf_t *b, const pgw_field_desc_t *fields, uint16_t n)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_ROW_DESCRIPTION));
    pgw_put_i16(b, (int16_t)n);
    for (uint16_t i = 0; i < n; i++) {
        const pgw_field_desc_t *d = &fields[i];
        pgw_put_str(b, d->name);
        pgw_put_i32(b, (int32_t)d->table_oid);
        pgw_put_i16(b, d->attnum);
        pgw_put_i32(b, (int32_t)d->type_oid);
        pgw_put_i16(b, d->type_len);
        pgw_put_i32(b, d->type_mod);
        pgw_put_i16(b, d->format);
    }
    pgw_msg_end(b);
}

void pgw_build_data_row(pgw_buf_t *b, uint16_t n, const uint8_t *const *values,
                        const int32_t *lens)
{
    pgw_data_row_begin(b, n);
    for (uint16_t i = 0; i < n; i++)
        pgw_data_row_put(b, values[i], values[i] ? lens[i] : -1);
    pgw_data_row_end(b);
}

void pgw_data_row_begin(pgw_buf_t *b, uint16_t ncols)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_DATA_ROW));
    pgw_put_i16(b, (int16_t)ncols);
}

void pgw_data_row_put(pgw_buf_t *b, const void *value, int32_t len)
{
    if (!value || len < 0) {
        pgw_put_i32(b, -1);
        return;
    }
    pgw_put_i32(b, len);
    pgw_put_bytes(b, value, (size_t)len);
}

void pgw_data_row_put_null(pgw_buf_t *b)
{
    pgw_put_i32(b, -1);
}

void pgw_data_row_end(pgw_buf_t *b)
{
    pgw_msg_end(b);
}

void pgw_build_notification(pgw_buf_t *b, uint32_t pid, const char *channel, const char *payload)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_NOTIFICATION_RESPONSE));
    pgw_put_i32(b, (int32_t)pid);
    pgw_put_cstr(b, channel);
    pgw_put_cstr(b, payload);
    pgw_msg_end(b);
}

/* ---------------------------------------------------------------------------------------------
 * Frontend-to-server messages
 * ------------------------------------------------------------------------------------------- */
void pgw_build_startup(pgw_buf_t *b, const char *const *names, const char *const *values, size_t n)
{
    pgw_msg_begin(b, 0);
    pgw_put_i32(b, (int32_t)PGW_PROTO_3_0);
    for (size_t i = 0; i < n; i++) {
        pgw_put_cstr(b, names[i]);
        pgw_put_cstr(b, values[i]);
    }
    pgw_put_u8(b, 0);
    pgw_msg_end(b);
}

void pgw_build_cancel_request(pgw_buf_t *b, uint32_t pid, uint32_t key)
{
    pgw_msg_begin(b, 0);
    pgw_put_i32(b, (int32_t)PGW_CODE_CANCEL);
    pgw_put_i32(b, (int32_t)pid);
    pgw_put_i32(b, (int32_t)key);
    pgw_msg_end(b);
}

void pgw_build_ssl_request(pgw_buf_t *b)
{
    pgw_msg_begin(b, 0);
    pgw_put_i32(b, (int32_t)PGW_CODE_SSL);
    pgw_msg_end(b);
}

void pgw_build_password(pgw_buf_t *b, const char *password)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_PASSWORD));
    pgw_put_cstr(b, password);
    pgw_msg_end(b);
}

void pgw_build_sasl_initial(pgw_buf_t *b, const char *mechanism, const void *data, size_t len)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_PASSWORD));
    pgw_put_cstr(b, mechanism);
    if (!data) {
        pgw_put_i32(b, -1);
    } else if (len > INT32_MAX) {
        b->failed = true;
    } else {
        pgw_put_i32(b, (int32_t)len);
        pgw_put_bytes(b, data, len);
    }
    pgw_msg_end(b);
}

void pgw_build_sasl_response(pgw_buf_t *b, const void *data, size_t len)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_PASSWORD));
    if (len)
        pgw_put_bytes(b, data, len);
    pgw_msg_end(b);
}

void pgw_build_query(pgw_buf_t *b, const char *sql)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_QUERY));
    pgw_put_cstr(b, sql);
    pgw_msg_end(b);
}

void pgw_build_parse(pgw_buf_t *b, const char *name, const char *sql, const uint32_t *oids,
                     uint16_t n)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_PARSE));
    pgw_put_cstr(b, name);
    pgw_put_cstr(b, sql);
    pgw_put_i16(b, (int16_t)n);
    for (uint16_t i = 0; i < n; i++)
        pgw_put_i32(b, (int32_t)oids[i]);
    pgw_msg_end(b);
}

void pgw_build_bind_text(pgw_buf_t *b, const char *portal, const char *stmt,
                         const char *const *values, uint16_t n, int16_t result_format)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_BIND));
    pgw_put_cstr(b, portal);
    pgw_put_cstr(b, stmt);
    pgw_put_i16(b, 0);                      /* no parameter format codes: all text */
    pgw_put_i16(b, (int16_t)n);
    for (uint16_t i = 0; i < n; i++) {
        if (!values[i]) {
            pgw_put_i32(b, -1);
            continue;
        }
        size_t len = strlen(values[i]);
        if (len > INT32_MAX) {
            b->failed = true;
            break;
        }
        pgw_put_i32(b, (int32_t)len);
        pgw_put_bytes(b, values[i], len);
    }
    pgw_put_i16(b, 1);                      /* one result format for all columns */
    pgw_put_i16(b, result_format);
    pgw_msg_end(b);
}

static void target_msg(pgw_buf_t *b, pgw_msg_t type, uint8_t kind, const char *name)
{
    pgw_msg_begin(b, pgw_msg_byte(type));
    pgw_put_u8(b, kind);
    pgw_put_cstr(b, name);
    pgw_msg_end(b);
}

void pgw_build_describe(pgw_buf_t *b, uint8_t kind, const char *name)
{
    target_msg(b, PGW_MSG_DESCRIBE, kind, name);
}

void pgw_build_close(pgw_buf_t *b, uint8_t kind, const char *name)
{
    target_msg(b, PGW_MSG_CLOSE, kind, name);
}

void pgw_build_execute(pgw_buf_t *b, const char *portal, uint32_t max_rows)
{
    pgw_msg_begin(b, pgw_msg_byte(PGW_MSG_EXECUTE));
    pgw_put_cstr(b, portal);
    pgw_put_i32(b, (int32_t)max_rows);
    pgw_msg_end(b);
}

void pgw_build_sync(pgw_buf_t *b) { empty_msg(b, PGW_MSG_SYNC); }
void pgw_build_flush(pgw_buf_t *b) { empty_msg(b, PGW_MSG_FLUSH); }
void pgw_build_terminate(pgw_buf_t *b) { empty_msg(b, PGW_MSG_TERMINATE); }
