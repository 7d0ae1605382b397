/*
 * The bounded read cursor and every message decoder.
 *
 * Invariants: decoders never allocate and never write outside *out; every string or byte range
 * they return is a view into the frame's body and lives as long as the caller's buffer. Each
 * decoder checks the frame's type, reads only through a pgw_reader_t (whose failure flag is
 * sticky, so bounds are checked once at the end), validates every variable-length list in full
 * so that the iterators below cannot fail, and finishes with pgw_reader_finish(): a message with
 * bytes left over is malformed, never silently accepted.
 */
#include "pgw_int.h"

#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------------------- */
void pgw_reader_init(pgw_reader_t *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->end = p ? p + len : p;
    r->failed = false;
}

size_t pgw_reader_left(const pgw_reader_t *r)
{
    return r->failed ? 0 : (size_t)(r->end - r->p);
}

const uint8_t *pgw_read_bytes(pgw_reader_t *r, size_t n)
{
    if (r->failed || (size_t)(r->end - r->p) < n) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

uint8_t pgw_read_u8(pgw_reader_t *r)
{
    const uint8_t *p = pgw_read_bytes(r, 1);
    return p ? p[0] : 0;
}

int16_t pgw_read_i16(pgw_reader_t *r)
{
    const uint8_t *p = pgw_read_bytes(r, 2);
    return p ? (int16_t)pgw__load16(p) : 0;
}

int32_t pgw_read_i32(pgw_reader_t *r)
{
    const uint8_t *p = pgw_read_bytes(r, 4);
    return p ? (int32_t)pgw__load32(p) : 0;
}

pgw_str_t pgw_read_cstr(pgw_reader_t *r)
{
    pgw_str_t s = {NULL, 0};
    if (r->failed || r->p == r->end) {
        r->failed = true;
        return s;
    }
    const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (!nul) {
        r->failed = true;
        return s;
    }
    s.ptr = (const char *)r->p;
    s.len = (uint32_t)(nul - r->p);
    r->p = nul + 1;
    return s;
}

int pgw_reader_finish(const pgw_reader_t *r)
{
    return (r->failed || r->p != r->end) ? PGW_EMALFORMED : 0;
}

/* Reader over a frame's body after checking the frame is of the expected type. */
static int open_frame(const pgw_frame_t *f, pgw_msg_t type, pgw_reader_t *r)
{
    if (!f || f->type != type)
        return PGW_EBADTYPE;
    pgw_reader_init(r, f->body, f->body_len);
    return 0;
}

/* Skips a list of n (int32 length, bytes) values where -1 means NULL, as in Bind and DataRow. */
static void skip_values(pgw_reader_t *r, uint32_t n)
{
    for (uint32_t i = 0; i < n && !r->failed; i++) {
        int32_t vlen = pgw_read_i32(r);
        if (vlen < -1)
            r->failed = true;
        else if (vlen > 0)
            (void)pgw_read_bytes(r, (size_t)vlen);
    }
}

/* Shared iterator over a validated (int32 length, bytes) list. */
static int next_value(const uint8_t *list, size_t list_len, size_t *off, const uint8_t **value,
                      int32_t *len)
{
    if (*off + 4 > list_len)
        return 0;
    int32_t vlen = (int32_t)pgw__load32(list + *off);
    *off += 4;
    if (vlen < 0) {
        *value = NULL;
        *len = -1;
        return 1;
    }
    if ((size_t)vlen > list_len - *off) {   /* only reachable with an unvalidated list */
        *off = list_len;
        return 0;
    }
    *value = list + *off;
    *len = vlen;
    *off += (size_t)vlen;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Startup phase
 * ------------------------------------------------------------------------------------------- */
int pgw_decode_startup(const pgw_frame_t *f, pgw_startup_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_STARTUP, &r);
    if (rc < 0)
        return rc;
    out->version = (uint32_t)pgw_read_i32(&r);
    out->nparams = 0;
    if (r.failed)
        return PGW_EMALFORMED;
    if ((out->version >> 16) != 3)
        return PGW_EUNSUPPORTED;
    /* name, value pairs up to an empty name, which is the terminating NUL. */
    for (;;) {
        pgw_str_t name = pgw_read_cstr(&r);
        if (r.failed)
            return PGW_EMALFORMED;
        if (name.len == 0)
            break;
        pgw_str_t value = pgw_read_cstr(&r);
        if (r.failed)
            return PGW_EMALFORMED;
        if (out->nparams == PGW_MAX_STARTUP_PARAMS)
            return PGW_ETOOMANY;
        out->names[out->nparams] = name;
        out->values[out->nparams] = value;
        out->nparams++;
    }
    return pgw_reader_finish(&r);
}

pgw_str_t pgw_startup_get(const pgw_startup_t *s, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < s->nparams; i++) {
        if (s->names[i].len == n && memcmp(s->names[i].ptr, name, n) == 0)
            return s->values[i];
    }
    return (pgw_str_t){NULL, 0};
}

int pgw_decode_cancel(const pgw_frame_t *f, pgw_cancel_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_CANCEL_REQUEST, &r);
    if (rc < 0)
        return rc;
    if ((uint32_t)pgw_read_i32(&r) != PGW_CODE_CANCEL)
        return PGW_EMALFORMED;
    out->pid = (uint32_t)pgw_read_i32(&r);
    out->key = (uint32_t)pgw_read_i32(&r);
    return pgw_reader_finish(&r);
}

/* SSLRequest and GSSENCRequest: nothing but the code. */
int pgw_decode_ssl_request(const pgw_frame_t *f)
{
    if (!f || (f->type != PGW_MSG_SSL_REQUEST && f->type != PGW_MSG_GSSENC_REQUEST))
        return PGW_EBADTYPE;
    pgw_reader_t r;
    pgw_reader_init(&r, f->body, f->body_len);
    uint32_t code = (uint32_t)pgw_read_i32(&r);
    if (code != (f->type == PGW_MSG_SSL_REQUEST ? PGW_CODE_SSL : PGW_CODE_GSSENC))
        return PGW_EMALFORMED;
    return pgw_reader_finish(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Frontend, normal phase
 * ------------------------------------------------------------------------------------------- */
int pgw_decode_query(const pgw_frame_t *f, pgw_query_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_QUERY, &r);
    if (rc < 0)
        return rc;
    out->sql = pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_parse(const pgw_frame_t *f, pgw_parse_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_PARSE, &r);
    if (rc < 0)
        return rc;
    out->name = pgw_read_cstr(&r);
    out->sql = pgw_read_cstr(&r);
    out->nparams = (uint16_t)pgw_read_i16(&r);
    out->param_oids = pgw_read_bytes(&r, (size_t)out->nparams * 4);
    return pgw_reader_finish(&r);
}

uint32_t pgw_parse_param_oid(const pgw_parse_t *p, uint16_t i)
{
    return i < p->nparams ? pgw__load32(p->param_oids + (size_t)i * 4) : 0;
}

int pgw_decode_bind(const pgw_frame_t *f, pgw_bind_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_BIND, &r);
    if (rc < 0)
        return rc;
    out->portal = pgw_read_cstr(&r);
    out->stmt = pgw_read_cstr(&r);
    out->nformats = (uint16_t)pgw_read_i16(&r);
    out->formats = pgw_read_bytes(&r, (size_t)out->nformats * 2);
    out->nparams = (uint16_t)pgw_read_i16(&r);
    out->params = r.p;
    skip_values(&r, out->nparams);
    out->params_len = r.failed ? 0 : (size_t)(r.p - out->params);
    out->nresult_formats = (uint16_t)pgw_read_i16(&r);
    out->result_formats = pgw_read_bytes(&r, (size_t)out->nresult_formats * 2);
    rc = pgw_reader_finish(&r);
    if (rc < 0)
        return rc;
    /* PostgreSQL rejects a format count that is neither 0, 1 nor the parameter count. */
    if (out->nformats > 1 && out->nformats != out->nparams)
        return PGW_EMALFORMED;
    return 0;
}

static int16_t format_at(const uint8_t *formats, uint16_t n, uint16_t i)
{
    if (n == 0)
        return 0;
    if (n == 1)
        return (int16_t)pgw__load16(formats);
    return i < n ? (int16_t)pgw__load16(formats + (size_t)i * 2) : 0;
}

int16_t pgw_bind_param_format(const pgw_bind_t *b, uint16_t i)
{
    return format_at(b->formats, b->nformats, i);
}

int16_t pgw_bind_result_format(const pgw_bind_t *b, uint16_t i)
{
    return format_at(b->result_formats, b->nresult_formats, i);
}

int pgw_bind_next_param(const pgw_bind_t *b, size_t *off, const uint8_t **value, int32_t *len)
{
    return next_value(b->params, b->params_len, off, value, len);
}

static int decode_target(const pgw_frame_t *f, pgw_msg_t type, pgw_target_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, type, &r);
    if (rc < 0)
        return rc;
    out->kind = pgw_read_u8(&r);
    out->name = pgw_read_cstr(&r);
    rc = pgw_reader_finish(&r);
    if (rc < 0)
        return rc;
    return (out->kind == 'S' || out->kind == 'P') ? 0 : PGW_EMALFORMED;
}

int pgw_decode_describe(const pgw_frame_t *f, pgw_target_t *out)
{
    return decode_target(f, PGW_MSG_DESCRIBE, out);
}

int pgw_decode_close(const pgw_frame_t *f, pgw_target_t *out)
{
    return decode_target(f, PGW_MSG_CLOSE, out);
}

int pgw_decode_execute(const pgw_frame_t *f, pgw_execute_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_EXECUTE, &r);
    if (rc < 0)
        return rc;
    out->portal = pgw_read_cstr(&r);
    out->max_rows = (uint32_t)pgw_read_i32(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_empty(const pgw_frame_t *f)
{
    if (!f)
        return PGW_EBADTYPE;
    switch (f->type) {
    case PGW_MSG_SYNC:
    case PGW_MSG_FLUSH:
    case PGW_MSG_TERMINATE:
    case PGW_MSG_COPY_DONE:
    case PGW_MSG_PARSE_COMPLETE:
    case PGW_MSG_BIND_COMPLETE:
    case PGW_MSG_CLOSE_COMPLETE:
    case PGW_MSG_NO_DATA:
    case PGW_MSG_EMPTY_QUERY_RESPONSE:
    case PGW_MSG_PORTAL_SUSPENDED:
        return f->body_len == 0 ? 0 : PGW_EMALFORMED;
    default:
        return PGW_EBADTYPE;
    }
}

int pgw_decode_copy_fail(const pgw_frame_t *f, pgw_copy_fail_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_COPY_FAIL, &r);
    if (rc < 0)
        return rc;
    out->message = pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_password(const pgw_frame_t *f, pgw_str_t *password)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_PASSWORD, &r);
    if (rc < 0)
        return rc;
    *password = pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_sasl_initial(const pgw_frame_t *f, pgw_sasl_initial_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_PASSWORD, &r);
    if (rc < 0)
        return rc;
    out->mechanism = pgw_read_cstr(&r);
    out->data_len = pgw_read_i32(&r);
    out->data = NULL;
    if (out->data_len < -1)
        return PGW_EMALFORMED;
    if (out->data_len >= 0)
        out->data = pgw_read_bytes(&r, (size_t)out->data_len);
    return pgw_reader_finish(&r);
}

int pgw_decode_sasl_response(const pgw_frame_t *f, const uint8_t **data, uint32_t *len)
{
    if (!f || f->type != PGW_MSG_PASSWORD)
        return PGW_EBADTYPE;
    *data = f->body;
    *len = f->body_len;
    return 0;
}

/* FunctionCall ('F') has no public decoder; pgw_validate checks its structure here. */
static int validate_function_call(const pgw_frame_t *f)
{
    pgw_reader_t r;
    pgw_reader_init(&r, f->body, f->body_len);
    (void)pgw_read_i32(&r);                              /* function oid */
    uint16_t nformats = (uint16_t)pgw_read_i16(&r);
    (void)pgw_read_bytes(&r, (size_t)nformats * 2);
    uint16_t nargs = (uint16_t)pgw_read_i16(&r);
    skip_values(&r, nargs);
    (void)pgw_read_i16(&r);                              /* result format */
    return pgw_reader_finish(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Backend
 * ------------------------------------------------------------------------------------------- */
/* Validates a SASL mechanism list: NUL-terminated names, then an empty one. */
static bool mech_list_ok(const uint8_t *p, size_t len)
{
    size_t i = 0;
    if (len == 0)
        return false;
    for (;;) {
        const uint8_t *nul = memchr(p + i, 0, len - i);
        if (!nul)
            return false;
        size_t n = (size_t)(nul - (p + i));
        i += n + 1;
        if (n == 0)
            return i == len;
        if (i == len)
            return false;
    }
}

int pgw_decode_auth(const pgw_frame_t *f, pgw_auth_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_AUTHENTICATION, &r);
    if (rc < 0)
        return rc;
    out->code = (uint32_t)pgw_read_i32(&r);
    out->data = NULL;
    out->data_len = 0;
    memset(out->md5_salt, 0, sizeof out->md5_salt);
    if (r.failed)
        return PGW_EMALFORMED;
    switch (out->code) {
    case PGW_AUTH_OK:
    case PGW_AUTH_CLEARTEXT:
    case PGW_AUTH_GSS:
    case PGW_AUTH_SSPI:
        break;
    case PGW_AUTH_MD5: {
        const uint8_t *salt = pgw_read_bytes(&r, 4);
        if (salt)
            memcpy(out->md5_salt, salt, 4);
        break;
    }
    case PGW_AUTH_SASL:
        out->data_len = (uint32_t)pgw_reader_left(&r);
        out->data = pgw_read_bytes(&r, out->data_len);
        if (!mech_list_ok(out->data, out->data_len))
            return PGW_EMALFORMED;
        break;
    case PGW_AUTH_GSS_CONTINUE:
    case PGW_AUTH_SASL_CONTINUE:
    case PGW_AUTH_SASL_FINAL:
        out->data_len = (uint32_t)pgw_reader_left(&r);
        out->data = pgw_read_bytes(&r, out->data_len);
        break;
    default:
        return PGW_EUNSUPPORTED;
    }
    return pgw_reader_finish(&r);
}

bool pgw_auth_has_mechanism(const pgw_auth_t *a, const char *mech)
{
    if (a->code != PGW_AUTH_SASL || !a->data)
        return false;
    size_t want = strlen(mech);
    const uint8_t *p = a->data, *end = a->data + a->data_len;
    while (p < end) {
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        if (!nul || nul == p)
            break;
        if ((size_t)(nul - p) == want && memcmp(p, mech, want) == 0)
            return true;
        p = nul + 1;
    }
    return false;
}

int pgw_decode_param_status(const pgw_frame_t *f, pgw_param_status_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_PARAMETER_STATUS, &r);
    if (rc < 0)
        return rc;
    out->name = pgw_read_cstr(&r);
    out->value = pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_backend_key(const pgw_frame_t *f, pgw_cancel_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_BACKEND_KEY_DATA, &r);
    if (rc < 0)
        return rc;
    out->pid = (uint32_t)pgw_read_i32(&r);
    out->key = (uint32_t)pgw_read_i32(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_ready(const pgw_frame_t *f, uint8_t *status)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_READY_FOR_QUERY, &r);
    if (rc < 0)
        return rc;
    *status = pgw_read_u8(&r);
    rc = pgw_reader_finish(&r);
    if (rc < 0)
        return rc;
    return (*status == 'I' || *status == 'T' || *status == 'E') ? 0 : PGW_EMALFORMED;
}

int pgw_decode_command_complete(const pgw_frame_t *f, pgw_command_complete_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_COMMAND_COMPLETE, &r);
    if (rc < 0)
        return rc;
    out->tag = pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_error(const pgw_frame_t *f, pgw_error_fields_t *out)
{
    if (!f || (f->type != PGW_MSG_ERROR_RESPONSE && f->type != PGW_MSG_NOTICE_RESPONSE))
        return PGW_EBADTYPE;
    memset(out, 0, sizeof *out);
    pgw_reader_t r;
    pgw_reader_init(&r, f->body, f->body_len);
    for (;;) {
        uint8_t code = pgw_read_u8(&r);
        if (r.failed || code == 0)
            break;
        pgw_str_t v = pgw_read_cstr(&r);
        switch (code) {
        case 'S': out->severity = v; break;
        case 'V': out->severity_nl = v; break;
        case 'C': out->sqlstate = v; break;
        case 'M': out->message = v; break;
        case 'D': out->detail = v; break;
        case 'H': out->hint = v; break;
        default: break;                 /* other fields are reachable via the iterator */
        }
    }
    out->fields = f->body;
    out->fields_len = f->body_len;
    return pgw_reader_finish(&r);
}

int pgw_error_next_field(const pgw_error_fields_t *e, size_t *off, uint8_t *code, pgw_str_t *value)
{
    if (*off >= e->fields_len || e->fields[*off] == 0)
        return 0;
    pgw_reader_t r;
    pgw_reader_init(&r, e->fields + *off, e->fields_len - *off);
    *code = pgw_read_u8(&r);
    *value = pgw_read_cstr(&r);
    if (r.failed) {
        *off = e->fields_len;
        return 0;
    }
    *off = (size_t)(r.p - e->fields);
    return 1;
}

/* One RowDescription field; shared by the decoder (validation) and the iterator. */
static void read_field_desc(pgw_reader_t *r, pgw_field_desc_t *d)
{
    d->name = pgw_read_cstr(r);
    d->table_oid = (uint32_t)pgw_read_i32(r);
    d->attnum = pgw_read_i16(r);
    d->type_oid = (uint32_t)pgw_read_i32(r);
    d->type_len = pgw_read_i16(r);
    d->type_mod = pgw_read_i32(r);
    d->format = pgw_read_i16(r);
}

int pgw_decode_row_description(const pgw_frame_t *f, pgw_row_description_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_ROW_DESCRIPTION, &r);
    if (rc < 0)
        return rc;
    out->nfields = (uint16_t)pgw_read_i16(&r);
    out->fields = r.p;
    pgw_field_desc_t d;
    for (uint16_t i = 0; i < out->nfields && !r.failed; i++)
        read_field_desc(&r, &d);
    out->fields_len = r.failed ? 0 : (size_t)(r.p - out->fields);
    return pgw_reader_finish(&r);
}

int pgw_row_description_next(const pgw_row_description_t *rd, size_t *off, pgw_field_desc_t *out)
{
    if (*off >= rd->fields_len)
        return 0;
    pgw_reader_t r;
    pgw_reader_init(&r, rd->fields + *off, rd->fields_len - *off);
    read_field_desc(&r, out);
    if (r.failed) {
        *off = rd->fields_len;
        return 0;
    }
    *off = (size_t)(r.p - rd->fields);
    return 1;
}

int pgw_decode_data_row(const pgw_frame_t *f, pgw_data_row_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_DATA_ROW, &r);
    if (rc < 0)
        return rc;
    out->ncols = (uint16_t)pgw_read_i16(&r);
    out->cols = r.p;
    skip_values(&r, out->ncols);
    out->cols_len = r.failed ? 0 : (size_t)(r.p - out->cols);
    return pgw_reader_finish(&r);
}

int pgw_data_row_next(const pgw_data_row_t *dr, size_t *off, const uint8_t **value, int32_t *len)
{
    return next_value(dr->cols, dr->cols_len, off, value, len);
}

int pgw_decode_notification(const pgw_frame_t *f, pgw_notification_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_NOTIFICATION_RESPONSE, &r);
    if (rc < 0)
        return rc;
    out->pid = (uint32_t)pgw_read_i32(&r);
    out->channel = pgw_read_cstr(&r);
    out->payload = pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_decode_param_description(const pgw_frame_t *f, pgw_param_description_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_PARAMETER_DESCRIPTION, &r);
    if (rc < 0)
        return rc;
    out->nparams = (uint16_t)pgw_read_i16(&r);
    out->oids = pgw_read_bytes(&r, (size_t)out->nparams * 4);
    return pgw_reader_finish(&r);
}

int pgw_decode_copy_response(const pgw_frame_t *f, pgw_copy_response_t *out)
{
    if (!f || (f->type != PGW_MSG_COPY_IN_RESPONSE && f->type != PGW_MSG_COPY_OUT_RESPONSE &&
               f->type != PGW_MSG_COPY_BOTH_RESPONSE))
        return PGW_EBADTYPE;
    pgw_reader_t r;
    pgw_reader_init(&r, f->body, f->body_len);
    out->format = pgw_read_u8(&r);
    out->ncols = (uint16_t)pgw_read_i16(&r);
    out->col_formats = pgw_read_bytes(&r, (size_t)out->ncols * 2);
    int rc = pgw_reader_finish(&r);
    if (rc < 0)
        return rc;
    return out->format <= 1 ? 0 : PGW_EMALFORMED;
}

int pgw_decode_negotiate(const pgw_frame_t *f, pgw_negotiate_t *out)
{
    pgw_reader_t r;
    int rc = open_frame(f, PGW_MSG_NEGOTIATE_PROTOCOL_VERSION, &r);
    if (rc < 0)
        return rc;
    /* PostgreSQL sends its full newest version (3 << 16 | minor); keep only the minor. */
    out->newest_minor = (uint32_t)pgw_read_i32(&r) & 0xffffu;
    out->nunrecognized = (uint32_t)pgw_read_i32(&r);
    out->options = r.p;
    for (uint32_t i = 0; i < out->nunrecognized && !r.failed; i++)
        (void)pgw_read_cstr(&r);
    out->options_len = r.failed ? 0 : (size_t)(r.p - out->options);
    return pgw_reader_finish(&r);
}

/* FunctionCallResponse ('V'): one (int32 length, bytes) value. */
static int validate_function_call_response(const pgw_frame_t *f)
{
    pgw_reader_t r;
    pgw_reader_init(&r, f->body, f->body_len);
    skip_values(&r, 1);
    return pgw_reader_finish(&r);
}

/* A single-cstr body, for message types whose decoders fill a struct we do not need here. */
static int validate_cstr_body(const pgw_frame_t *f)
{
    pgw_reader_t r;
    pgw_reader_init(&r, f->body, f->body_len);
    (void)pgw_read_cstr(&r);
    return pgw_reader_finish(&r);
}

int pgw_validate(const pgw_frame_t *f, pgw_dir_t from)
{
    if (!f || !(pgw__msg_dir(f->type) & from) || (from != PGW_F && from != PGW_B))
        return PGW_EBADTYPE;
    union {
        pgw_startup_t startup;
        pgw_cancel_t cancel;
        pgw_parse_t parse;
        pgw_bind_t bind;
        pgw_target_t target;
        pgw_execute_t execute;
        pgw_auth_t auth;
        pgw_param_status_t ps;
        pgw_error_fields_t err;
        pgw_row_description_t rd;
        pgw_data_row_t dr;
        pgw_notification_t notif;
        pgw_param_description_t pd;
        pgw_copy_response_t copy;
        pgw_negotiate_t neg;
        uint8_t status;
    } u;
    switch (f->type) {
    case PGW_MSG_STARTUP: return pgw_decode_startup(f, &u.startup);
    case PGW_MSG_CANCEL_REQUEST: return pgw_decode_cancel(f, &u.cancel);
    case PGW_MSG_SSL_REQUEST:
    case PGW_MSG_GSSENC_REQUEST: return pgw_decode_ssl_request(f);
    case PGW_MSG_QUERY:
    case PGW_MSG_COPY_FAIL:
    case PGW_MSG_COMMAND_COMPLETE: return validate_cstr_body(f);
    case PGW_MSG_PARSE: return pgw_decode_parse(f, &u.parse);
    case PGW_MSG_BIND: return pgw_decode_bind(f, &u.bind);
    case PGW_MSG_DESCRIBE: return pgw_decode_describe(f, &u.target);
    case PGW_MSG_CLOSE: return pgw_decode_close(f, &u.target);
    case PGW_MSG_EXECUTE: return pgw_decode_execute(f, &u.execute);
    case PGW_MSG_FUNCTION_CALL: return validate_function_call(f);
    /* PasswordMessage, SASLInitialResponse and SASLResponse share 'p' and only the auth
       exchange in progress tells them apart; SASLResponse accepts any bytes. */
    case PGW_MSG_PASSWORD: return 0;
    case PGW_MSG_COPY_DATA: return 0;
    case PGW_MSG_AUTHENTICATION: return pgw_decode_auth(f, &u.auth);
    case PGW_MSG_BACKEND_KEY_DATA: return pgw_decode_backend_key(f, &u.cancel);
    case PGW_MSG_PARAMETER_STATUS: return pgw_decode_param_status(f, &u.ps);
    case PGW_MSG_READY_FOR_QUERY: return pgw_decode_ready(f, &u.status);
    case PGW_MSG_ERROR_RESPONSE:
    case PGW_MSG_NOTICE_RESPONSE: return pgw_decode_error(f, &u.err);
    case PGW_MSG_ROW_DESCRIPTION: return pgw_decode_row_description(f, &u.rd);
    case PGW_MSG_DATA_ROW: return pgw_decode_data_row(f, &u.dr);
    case PGW_MSG_NOTIFICATION_RESPONSE: return pgw_decode_notification(f, &u.notif);
    case PGW_MSG_PARAMETER_DESCRIPTION: return pgw_decode_param_description(f, &u.pd);
    case PGW_MSG_COPY_IN_RESPONSE:
    case PGW_MSG_COPY_OUT_RESPONSE:
    case PGW_MSG_COPY_BOTH_RESPONSE: return pgw_decode_copy_response(f, &u.copy);
    case PGW_MSG_NEGOTIATE_PROTOCOL_VERSION: return pgw_decode_negotiate(f, &u.neg);
    case PGW_MSG_FUNCTION_CALL_RESPONSE: return validate_function_call_response(f);
    default: return pgw_decode_empty(f);
    }
}
