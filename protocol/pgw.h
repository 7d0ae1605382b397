/*
 * pgw: the PostgreSQL v3 wire-protocol codec used by every other pgshim module.
 *
 * This module is pure: no sockets, no libuv, no logging, no clock, no randomness, no globals
 * (randomness such as SCRAM nonces and salts is supplied by the caller). It frames, decodes and
 * encodes messages; it never decides what to do with them.
 *
 * Contracts kept throughout:
 *  - Framing follows picohttpparser's contract: a call says "complete" (how many bytes the
 *    message occupies), "need more" (how many bytes are still missing), or "error". The caller
 *    says which phase (startup or normal) and which direction it is framing; pgw never guesses.
 *  - Decoders never allocate. Decoded strings and byte ranges are views into the caller's input
 *    buffer and live exactly as long as that buffer. Every decoder reads through a bounded cursor
 *    and ends with an all-bytes-consumed check: trailing garbage is an error.
 *  - Builders append complete messages to a pgw_buf_t. They reserve the length word, back-patch
 *    it at pgw_msg_end(), and keep a sticky failure flag, so a sequence of appends is checked once
 *    with pgw_buf_failed() at the end.
 *  - Fallible functions return 0 (or a positive count) on success and a negative PGW_E* code on
 *    failure; pgw_strerror() names the code.
 */
#ifndef PGSHIM_PROTOCOL_PGW_H
#define PGSHIM_PROTOCOL_PGW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGW_MUST_USE __attribute__((warn_unused_result))

/* ---------------------------------------------------------------------------------------------
 * Error codes
 * ------------------------------------------------------------------------------------------- */
#define PGW_ERRNO_MAP(XX)                                                        \
    XX(NEEDMORE, -1, "need more bytes")                                          \
    XX(MALFORMED, -2, "malformed message")                                       \
    XX(TOOLONG, -3, "message longer than allowed for its type")                  \
    XX(BADTYPE, -4, "message type not legal in this direction or phase")         \
    XX(NOMEM, -5, "out of memory")                                               \
    XX(TOOMANY, -6, "too many fields or parameters")                             \
    XX(AUTH, -7, "authentication failed")                                        \
    XX(UNSUPPORTED, -8, "unsupported protocol feature")                          \
    XX(CRYPTO, -9, "cryptographic primitive failed")

typedef enum pgw_err {
#define PGW__ERR_ENUM(name, val, text) PGW_E##name = (val),
    PGW_ERRNO_MAP(PGW__ERR_ENUM)
#undef PGW__ERR_ENUM
} pgw_err_t;

/* Static text for a PGW_E* code (or "success" for 0, "unknown error" otherwise). */
const char *pgw_strerror(int err);

/* ---------------------------------------------------------------------------------------------
 * Message types: one X-macro table of (enum suffix, type byte, name, direction, maximum length).
 * Direction: PGW_F = sent by the frontend (client), PGW_B = sent by the backend (server),
 * PGW_FB = either. The maximum is the largest total length word (which counts itself) pgshim
 * accepts for a message of that type when it must buffer it whole; streaming pass-through may
 * forward larger CopyData/DataRow messages without buffering (see pgw_frame_peek()).
 * Byte values repeat across directions ('D' is Describe from a client, DataRow from a server),
 * so lookups always take the direction.
 * ------------------------------------------------------------------------------------------- */
#define PGW_LIMIT_SMALL 10000u             /* like PostgreSQL's PQ_SMALL_MESSAGE_LIMIT */
#define PGW_LIMIT_AUTH 65535u              /* PG_MAX_AUTH_TOKEN_LENGTH */
#define PGW_LIMIT_LARGE 0x3fffffffu        /* MaxAllocSize - 1, PQ_LARGE_MESSAGE_LIMIT */

typedef enum pgw_dir { PGW_F = 1, PGW_B = 2, PGW_FB = 3 } pgw_dir_t;

#define PGW_MSG_MAP(XX)                                                                   \
    /* frontend */                                                                        \
    XX(BIND, 'B', "Bind", PGW_F, PGW_LIMIT_LARGE)                                         \
    XX(CLOSE, 'C', "Close", PGW_F, PGW_LIMIT_SMALL)                                       \
    XX(COPY_FAIL, 'f', "CopyFail", PGW_F, PGW_LIMIT_SMALL)                                \
    XX(DESCRIBE, 'D', "Describe", PGW_F, PGW_LIMIT_SMALL)                                 \
    XX(EXECUTE, 'E', "Execute", PGW_F, PGW_LIMIT_SMALL)                                   \
    XX(FLUSH, 'H', "Flush", PGW_F, PGW_LIMIT_SMALL)                                       \
    XX(FUNCTION_CALL, 'F', "FunctionCall", PGW_F, PGW_LIMIT_LARGE)                        \
    XX(PARSE, 'P', "Parse", PGW_F, PGW_LIMIT_LARGE)                                       \
    XX(PASSWORD, 'p', "PasswordMessage", PGW_F, PGW_LIMIT_AUTH)                           \
    XX(QUERY, 'Q', "Query", PGW_F, PGW_LIMIT_LARGE)                                       \
    XX(SYNC, 'S', "Sync", PGW_F, PGW_LIMIT_SMALL)                                         \
    XX(TERMINATE, 'X', "Terminate", PGW_F, PGW_LIMIT_SMALL)                               \
    /* both directions */                                                                 \
    XX(COPY_DATA, 'd', "CopyData", PGW_FB, PGW_LIMIT_LARGE)                               \
    XX(COPY_DONE, 'c', "CopyDone", PGW_FB, PGW_LIMIT_SMALL)                               \
    /* backend */                                                                         \
    XX(AUTHENTICATION, 'R', "Authentication", PGW_B, PGW_LIMIT_AUTH)                      \
    XX(BACKEND_KEY_DATA, 'K', "BackendKeyData", PGW_B, PGW_LIMIT_SMALL)                   \
    XX(BIND_COMPLETE, '2', "BindComplete", PGW_B, PGW_LIMIT_SMALL)                        \
    XX(CLOSE_COMPLETE, '3', "CloseComplete", PGW_B, PGW_LIMIT_SMALL)                      \
    XX(COMMAND_COMPLETE, 'C', "CommandComplete", PGW_B, PGW_LIMIT_SMALL)                  \
    XX(COPY_IN_RESPONSE, 'G', "CopyInResponse", PGW_B, PGW_LIMIT_SMALL)                   \
    XX(COPY_OUT_RESPONSE, 'H', "CopyOutResponse", PGW_B, PGW_LIMIT_SMALL)                 \
    XX(COPY_BOTH_RESPONSE, 'W', "CopyBothResponse", PGW_B, PGW_LIMIT_SMALL)               \
    XX(DATA_ROW, 'D', "DataRow", PGW_B, PGW_LIMIT_LARGE)                                  \
    XX(EMPTY_QUERY_RESPONSE, 'I', "EmptyQueryResponse", PGW_B, PGW_LIMIT_SMALL)           \
    XX(ERROR_RESPONSE, 'E', "ErrorResponse", PGW_B, PGW_LIMIT_LARGE)                      \
    XX(FUNCTION_CALL_RESPONSE, 'V', "FunctionCallResponse", PGW_B, PGW_LIMIT_LARGE)       \
    XX(NEGOTIATE_PROTOCOL_VERSION, 'v', "NegotiateProtocolVersion", PGW_B, PGW_LIMIT_SMALL) \
    XX(NO_DATA, 'n', "NoData", PGW_B, PGW_LIMIT_SMALL)                                    \
    XX(NOTICE_RESPONSE, 'N', "NoticeResponse", PGW_B, PGW_LIMIT_LARGE)                    \
    XX(NOTIFICATION_RESPONSE, 'A', "NotificationResponse", PGW_B, PGW_LIMIT_LARGE)        \
    XX(PARAMETER_DESCRIPTION, 't', "ParameterDescription", PGW_B, PGW_LIMIT_LARGE)        \
    XX(PARAMETER_STATUS, 'S', "ParameterStatus", PGW_B, PGW_LIMIT_SMALL)                  \
    XX(PARSE_COMPLETE, '1', "ParseComplete", PGW_B, PGW_LIMIT_SMALL)                      \
    XX(PORTAL_SUSPENDED, 's', "PortalSuspended", PGW_B, PGW_LIMIT_SMALL)                  \
    XX(READY_FOR_QUERY, 'Z', "ReadyForQuery", PGW_B, PGW_LIMIT_SMALL)                     \
    XX(ROW_DESCRIPTION, 'T', "RowDescription", PGW_B, PGW_LIMIT_LARGE)

typedef enum pgw_msg {
    PGW_MSG_UNKNOWN = 0,
    /* Startup-phase messages carry no type byte; they are told apart by the code in the
     * first 4 bytes after the length word. */
    PGW_MSG_STARTUP,        /* StartupMessage, protocol 3.x */
    PGW_MSG_SSL_REQUEST,    /* code 80877103 */
    PGW_MSG_GSSENC_REQUEST, /* code 80877104 */
    PGW_MSG_CANCEL_REQUEST, /* code 80877102 */
#define PGW__MSG_ENUM(name, byte, text, dir, max) PGW_MSG_##name,
    PGW_MSG_MAP(PGW__MSG_ENUM)
#undef PGW__MSG_ENUM
    PGW_MSG__COUNT
} pgw_msg_t;

#define PGW_STARTUP_LIMIT 10000u           /* like PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PGW_PROTO_3_0 196608u              /* 3 << 16 */
#define PGW_CODE_CANCEL 80877102u
#define PGW_CODE_SSL 80877103u
#define PGW_CODE_GSSENC 80877104u

/* Message type for a type byte in the given direction (PGW_F or PGW_B), or PGW_MSG_UNKNOWN. */
pgw_msg_t pgw_msg_lookup(pgw_dir_t dir, uint8_t byte);
/* Human-readable name for logs ("Query", "StartupMessage"); never NULL. */
const char *pgw_msg_name(pgw_msg_t type);
/* Type byte of a normal-phase message type, 0 for startup-phase types and PGW_MSG_UNKNOWN. */
uint8_t pgw_msg_byte(pgw_msg_t type);
/* Maximum total length (length word included) accepted when buffering a message of this type. */
uint32_t pgw_msg_max_len(pgw_msg_t type);

/* ---------------------------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------------------------- */
typedef enum pgw_phase { PGW_PHASE_STARTUP = 1, PGW_PHASE_NORMAL = 2 } pgw_phase_t;

typedef struct pgw_frame {
    pgw_msg_t type;
    uint8_t tag;         /* type byte; 0 in the startup phase */
    uint32_t total_len;  /* bytes the whole message occupies in the stream (tag + length + body) */
    const uint8_t *body; /* view: payload after the length word (after the code for startup
                            types other than PGW_MSG_STARTUP it still starts at the code) */
    uint32_t body_len;
} pgw_frame_t;

/*
 * Frames one whole message at the start of buf[0..len).
 * Returns the message's total length (> 0) and fills *out when it is complete;
 * PGW_ENEEDMORE when incomplete, with *need set to the number of further bytes required
 * (exact once the header is known, else the bytes missing from the header);
 * PGW_EBADTYPE for a type byte illegal in direction `from` (PGW_F = client sent it, PGW_B = server);
 * PGW_EMALFORMED for a length word below its minimum; PGW_ETOOLONG above the type's maximum.
 * In the startup phase `from` must be PGW_F.
 */
int pgw_frame_next(pgw_phase_t phase, pgw_dir_t from, const uint8_t *buf, size_t len,
                   pgw_frame_t *out, size_t *need) PGW_MUST_USE;

/*
 * Header-only peek for streaming pass-through: needs only the 5 header bytes (normal phase).
 * Fills type, tag and total_len of *out (body is NULL, body_len is total_len - 5) without
 * applying the per-type maximum. Returns 5 on success, PGW_ENEEDMORE, PGW_EBADTYPE or
 * PGW_EMALFORMED.
 */
int pgw_frame_peek(pgw_dir_t from, const uint8_t *buf, size_t len, pgw_frame_t *out) PGW_MUST_USE;

/* ---------------------------------------------------------------------------------------------
 * Bounded read cursor, used by every decoder and available to other modules for message bodies.
 * A read past the end sets the sticky `failed` flag and returns 0/NULL.
 * ------------------------------------------------------------------------------------------- */
typedef struct pgw_reader {
    const uint8_t *p;
    const uint8_t *end;
    bool failed;
} pgw_reader_t;

typedef struct pgw_str {   /* a view; not NUL-terminated unless said so */
    const char *ptr;
    uint32_t len;
} pgw_str_t;

void pgw_reader_init(pgw_reader_t *r, const uint8_t *p, size_t len);
uint8_t pgw_read_u8(pgw_reader_t *r);
int16_t pgw_read_i16(pgw_reader_t *r);
int32_t pgw_read_i32(pgw_reader_t *r);
/* NUL-terminated string; the view excludes the NUL but ptr[len] == '\0' is guaranteed. */
pgw_str_t pgw_read_cstr(pgw_reader_t *r);
const uint8_t *pgw_read_bytes(pgw_reader_t *r, size_t n);
size_t pgw_reader_left(const pgw_reader_t *r);
/* 0 if no read failed and every byte was consumed, else PGW_EMALFORMED. */
int pgw_reader_finish(const pgw_reader_t *r) PGW_MUST_USE;

/* ---------------------------------------------------------------------------------------------
 * Decoders. Each takes a complete frame (from pgw_frame_next) and fills a struct of views.
 * Variable-length lists are not copied: the struct keeps a view of the encoded list plus a
 * count, and an iterator walks it (the decoder has already validated the whole list, so the
 * iterator cannot fail on a decoded message).
 * ------------------------------------------------------------------------------------------- */
#define PGW_MAX_STARTUP_PARAMS 64

typedef struct pgw_startup {
    uint32_t version;                     /* PGW_PROTO_3_0 for 3.0; minor versions accepted */
    uint32_t nparams;
    pgw_str_t names[PGW_MAX_STARTUP_PARAMS];
    pgw_str_t values[PGW_MAX_STARTUP_PARAMS];
} pgw_startup_t;
/* StartupMessage; PGW_ETOOMANY above PGW_MAX_STARTUP_PARAMS, PGW_EUNSUPPORTED for major != 3. */
int pgw_decode_startup(const pgw_frame_t *f, pgw_startup_t *out) PGW_MUST_USE;
/* Value of a startup parameter by exact name, or a view with ptr NULL. */
pgw_str_t pgw_startup_get(const pgw_startup_t *s, const char *name);

typedef struct pgw_cancel {
    uint32_t pid;
    uint32_t key;
} pgw_cancel_t;
int pgw_decode_cancel(const pgw_frame_t *f, pgw_cancel_t *out) PGW_MUST_USE;
/* SSLRequest or GSSENCRequest frame: checks the code and that nothing follows it. */
int pgw_decode_ssl_request(const pgw_frame_t *f) PGW_MUST_USE;

/* Frontend normal phase */
typedef struct pgw_query { pgw_str_t sql; } pgw_query_t;
int pgw_decode_query(const pgw_frame_t *f, pgw_query_t *out) PGW_MUST_USE;

typedef struct pgw_parse {
    pgw_str_t name;           /* "" = unnamed statement */
    pgw_str_t sql;
    uint16_t nparams;
    const uint8_t *param_oids; /* nparams big-endian uint32 */
} pgw_parse_t;
int pgw_decode_parse(const pgw_frame_t *f, pgw_parse_t *out) PGW_MUST_USE;
uint32_t pgw_parse_param_oid(const pgw_parse_t *p, uint16_t i);

typedef struct pgw_bind {
    pgw_str_t portal;
    pgw_str_t stmt;
    uint16_t nformats;          /* 0 = all text, 1 = one for all, else one per parameter */
    const uint8_t *formats;     /* nformats big-endian int16 */
    uint16_t nparams;
    const uint8_t *params;      /* encoded (int32 len, bytes) list; walk with pgw_bind_next_param */
    size_t params_len;
    uint16_t nresult_formats;
    const uint8_t *result_formats;
} pgw_bind_t;
int pgw_decode_bind(const pgw_frame_t *f, pgw_bind_t *out) PGW_MUST_USE;
/* Format code (0 text, 1 binary) that applies to parameter i. */
int16_t pgw_bind_param_format(const pgw_bind_t *b, uint16_t i);
/* Format code that applies to result column i. */
int16_t pgw_bind_result_format(const pgw_bind_t *b, uint16_t i);
/* Iterates parameters: *off starts at 0. Returns 1 and sets value/len (len -1 = NULL, value
   NULL) while parameters remain, 0 at the end. */
int pgw_bind_next_param(const pgw_bind_t *b, size_t *off, const uint8_t **value, int32_t *len);

typedef struct pgw_target {     /* Describe and Close */
    uint8_t kind;               /* 'S' statement or 'P' portal */
    pgw_str_t name;
} pgw_target_t;
int pgw_decode_describe(const pgw_frame_t *f, pgw_target_t *out) PGW_MUST_USE;
int pgw_decode_close(const pgw_frame_t *f, pgw_target_t *out) PGW_MUST_USE;

typedef struct pgw_execute {
    pgw_str_t portal;
    uint32_t max_rows;          /* 0 = no limit */
} pgw_execute_t;
int pgw_decode_execute(const pgw_frame_t *f, pgw_execute_t *out) PGW_MUST_USE;

/* Sync, Flush, Terminate, CopyDone: body must be empty. */
int pgw_decode_empty(const pgw_frame_t *f) PGW_MUST_USE;
typedef struct pgw_copy_fail { pgw_str_t message; } pgw_copy_fail_t;
int pgw_decode_copy_fail(const pgw_frame_t *f, pgw_copy_fail_t *out) PGW_MUST_USE;

/* PasswordMessage family ('p'): its meaning depends on the auth exchange in progress, so the
   caller picks the decoder. */
int pgw_decode_password(const pgw_frame_t *f, pgw_str_t *password) PGW_MUST_USE;
typedef struct pgw_sasl_initial {
    pgw_str_t mechanism;
    const uint8_t *data;        /* NULL when length -1 */
    int32_t data_len;
} pgw_sasl_initial_t;
int pgw_decode_sasl_initial(const pgw_frame_t *f, pgw_sasl_initial_t *out) PGW_MUST_USE;
/* SASLResponse: the whole body is the data. */
int pgw_decode_sasl_response(const pgw_frame_t *f, const uint8_t **data, uint32_t *len) PGW_MUST_USE;

/* Backend */
typedef enum pgw_auth_code {
    PGW_AUTH_OK = 0,
    PGW_AUTH_CLEARTEXT = 3,
    PGW_AUTH_MD5 = 5,
    PGW_AUTH_GSS = 7,
    PGW_AUTH_GSS_CONTINUE = 8,
    PGW_AUTH_SSPI = 9,
    PGW_AUTH_SASL = 10,
    PGW_AUTH_SASL_CONTINUE = 11,
    PGW_AUTH_SASL_FINAL = 12,
} pgw_auth_code_t;
typedef struct pgw_auth {
    uint32_t code;
    uint8_t md5_salt[4];        /* PGW_AUTH_MD5 */
    const uint8_t *data;        /* SASL mechanism list (NUL-separated, double NUL end),
                                   SASL continue/final data */
    uint32_t data_len;
} pgw_auth_t;
int pgw_decode_auth(const pgw_frame_t *f, pgw_auth_t *out) PGW_MUST_USE;
/* True if the AuthenticationSASL mechanism list contains `mech` exactly. */
bool pgw_auth_has_mechanism(const pgw_auth_t *a, const char *mech);

typedef struct pgw_param_status { pgw_str_t name, value; } pgw_param_status_t;
int pgw_decode_param_status(const pgw_frame_t *f, pgw_param_status_t *out) PGW_MUST_USE;
int pgw_decode_backend_key(const pgw_frame_t *f, pgw_cancel_t *out) PGW_MUST_USE;
/* ReadyForQuery: *status is 'I', 'T' or 'E' (anything else is PGW_EMALFORMED). */
int pgw_decode_ready(const pgw_frame_t *f, uint8_t *status) PGW_MUST_USE;
typedef struct pgw_command_complete { pgw_str_t tag; } pgw_command_complete_t;
int pgw_decode_command_complete(const pgw_frame_t *f, pgw_command_complete_t *out) PGW_MUST_USE;

/* ErrorResponse / NoticeResponse: well-known fields pulled out, all views (ptr NULL if absent). */
typedef struct pgw_error_fields {
    pgw_str_t severity;         /* 'S' (localized) */
    pgw_str_t severity_nl;      /* 'V' (never localized) */
    pgw_str_t sqlstate;         /* 'C' */
    pgw_str_t message;          /* 'M' */
    pgw_str_t detail;           /* 'D' */
    pgw_str_t hint;             /* 'H' */
    const uint8_t *fields;      /* the whole encoded field list, for iteration */
    size_t fields_len;
} pgw_error_fields_t;
int pgw_decode_error(const pgw_frame_t *f, pgw_error_fields_t *out) PGW_MUST_USE;
/* Iterates all fields: returns 1 with code/value set while fields remain, 0 at the end. */
int pgw_error_next_field(const pgw_error_fields_t *e, size_t *off, uint8_t *code, pgw_str_t *value);

typedef struct pgw_field_desc {
    pgw_str_t name;
    uint32_t table_oid;
    int16_t attnum;
    uint32_t type_oid;
    int16_t type_len;
    int32_t type_mod;
    int16_t format;
} pgw_field_desc_t;
typedef struct pgw_row_description {
    uint16_t nfields;
    const uint8_t *fields;      /* encoded list, walk with pgw_row_description_next */
    size_t fields_len;
} pgw_row_description_t;
int pgw_decode_row_description(const pgw_frame_t *f, pgw_row_description_t *out) PGW_MUST_USE;
int pgw_row_description_next(const pgw_row_description_t *rd, size_t *off, pgw_field_desc_t *out);

typedef struct pgw_data_row {
    uint16_t ncols;
    const uint8_t *cols;        /* encoded (int32 len, bytes) list */
    size_t cols_len;
} pgw_data_row_t;
int pgw_decode_data_row(const pgw_frame_t *f, pgw_data_row_t *out) PGW_MUST_USE;
/* Same contract as pgw_bind_next_param: len -1 = NULL. */
int pgw_data_row_next(const pgw_data_row_t *dr, size_t *off, const uint8_t **value, int32_t *len);

typedef struct pgw_notification {
    uint32_t pid;
    pgw_str_t channel;
    pgw_str_t payload;
} pgw_notification_t;
int pgw_decode_notification(const pgw_frame_t *f, pgw_notification_t *out) PGW_MUST_USE;

typedef struct pgw_param_description {
    uint16_t nparams;
    const uint8_t *oids;        /* nparams big-endian uint32 */
} pgw_param_description_t;
int pgw_decode_param_description(const pgw_frame_t *f, pgw_param_description_t *out) PGW_MUST_USE;

typedef struct pgw_copy_response {   /* CopyIn/CopyOut/CopyBoth */
    uint8_t format;
    uint16_t ncols;
    const uint8_t *col_formats;
} pgw_copy_response_t;
int pgw_decode_copy_response(const pgw_frame_t *f, pgw_copy_response_t *out) PGW_MUST_USE;

typedef struct pgw_negotiate {
    uint32_t newest_minor;      /* minor part only: PostgreSQL sends (3 << 16 | minor) */
    uint32_t nunrecognized;
    const uint8_t *options;     /* encoded cstr list */
    size_t options_len;
} pgw_negotiate_t;
int pgw_decode_negotiate(const pgw_frame_t *f, pgw_negotiate_t *out) PGW_MUST_USE;

/* Generic structural validation of any complete frame by its type (used for garbage detection
   on pass-through paths): runs the matching decoder and discards the result. */
int pgw_validate(const pgw_frame_t *f, pgw_dir_t from) PGW_MUST_USE;

/* ---------------------------------------------------------------------------------------------
 * Builders
 * ------------------------------------------------------------------------------------------- */
typedef struct pgw_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t msg_start;           /* offset of the length word of the message being built */
    bool fixed;                 /* memory supplied by the caller: never reallocated or freed */
    bool failed;                /* sticky: an append did not fit / allocation failed */
    bool in_msg;
} pgw_buf_t;

/* Growable buffer; starts empty, grows with realloc. Free with pgw_buf_free(). */
void pgw_buf_init(pgw_buf_t *b);
/* Fixed buffer over caller memory; overflow sets failed. */
void pgw_buf_init_fixed(pgw_buf_t *b, uint8_t *mem, size_t cap);
void pgw_buf_free(pgw_buf_t *b);
/* Empties the buffer and clears the failure flag, keeping its memory. */
void pgw_buf_reset(pgw_buf_t *b);
/* Transfers ownership of the bytes to the caller (must free()); the buffer becomes empty.
   A fixed buffer hands out a heap copy instead (its memory stays the caller's); a failed or
   empty buffer returns NULL with *len 0 (a failed one is reset). */
uint8_t *pgw_buf_steal(pgw_buf_t *b, size_t *len);
bool pgw_buf_failed(const pgw_buf_t *b);

/* Raw message construction: begin writes the tag (none when tag is 0, for startup-phase
   messages) and reserves the length word; end back-patches it. */
void pgw_msg_begin(pgw_buf_t *b, uint8_t tag);
void pgw_msg_end(pgw_buf_t *b);
void pgw_put_u8(pgw_buf_t *b, uint8_t v);
void pgw_put_i16(pgw_buf_t *b, int16_t v);
void pgw_put_i32(pgw_buf_t *b, int32_t v);
void pgw_put_bytes(pgw_buf_t *b, const void *p, size_t n);
void pgw_put_cstr(pgw_buf_t *b, const char *s);           /* with its NUL */
void pgw_put_str(pgw_buf_t *b, pgw_str_t s);              /* view + NUL */
/* Appends already-encoded bytes (whole messages) verbatim. */
void pgw_buf_append(pgw_buf_t *b, const void *p, size_t n);

/* Complete messages. */
/* Backend-to-client */
void pgw_build_auth(pgw_buf_t *b, uint32_t code, const void *data, size_t len);
void pgw_build_auth_ok(pgw_buf_t *b);
void pgw_build_auth_md5(pgw_buf_t *b, const uint8_t salt[4]);
void pgw_build_auth_sasl(pgw_buf_t *b, const char *const *mechanisms, size_t n);
void pgw_build_param_status(pgw_buf_t *b, const char *name, const char *value);
void pgw_build_backend_key(pgw_buf_t *b, uint32_t pid, uint32_t key);
void pgw_build_ready(pgw_buf_t *b, uint8_t status);
/* ErrorResponse with fields S, V (= severity), C, M, plus D/H when non-NULL. */
void pgw_build_error(pgw_buf_t *b, const char *severity, const char *sqlstate,
                     const char *message, const char *detail, const char *hint);
void pgw_build_notice(pgw_buf_t *b, const char *severity, const char *sqlstate,
                      const char *message, const char *detail, const char *hint);
void pgw_build_command_complete(pgw_buf_t *b, const char *tag);
void pgw_build_empty_query(pgw_buf_t *b);
void pgw_build_parse_complete(pgw_buf_t *b);
void pgw_build_bind_complete(pgw_buf_t *b);
void pgw_build_close_complete(pgw_buf_t *b);
void pgw_build_no_data(pgw_buf_t *b);
void pgw_build_param_description(pgw_buf_t *b, const uint32_t *oids, uint16_t n);
void pgw_build_row_description(pgw_buf_t *b, const pgw_field_desc_t *fields, uint16_t n);
/* DataRow: values[i] NULL means SQL NULL; lens[i] gives each value's length. */
void pgw_build_data_row(pgw_buf_t *b, uint16_t n, const uint8_t *const *values,
                        const int32_t *lens);
/* Incremental DataRow: begin with the column count, then one put per column, then end. */
void pgw_data_row_begin(pgw_buf_t *b, uint16_t ncols);
void pgw_data_row_put(pgw_buf_t *b, const void *value, int32_t len);  /* len -1 = NULL */
void pgw_data_row_put_null(pgw_buf_t *b);
void pgw_data_row_end(pgw_buf_t *b);
void pgw_build_notification(pgw_buf_t *b, uint32_t pid, const char *channel, const char *payload);

/* Frontend-to-server (pgshim acting as a client) */
/* StartupMessage for protocol 3.0 from parallel name/value arrays. */
void pgw_build_startup(pgw_buf_t *b, const char *const *names, const char *const *values, size_t n);
void pgw_build_cancel_request(pgw_buf_t *b, uint32_t pid, uint32_t key);
void pgw_build_ssl_request(pgw_buf_t *b);
void pgw_build_password(pgw_buf_t *b, const char *password);
void pgw_build_sasl_initial(pgw_buf_t *b, const char *mechanism, const void *data, size_t len);
void pgw_build_sasl_response(pgw_buf_t *b, const void *data, size_t len);
void pgw_build_query(pgw_buf_t *b, const char *sql);
void pgw_build_parse(pgw_buf_t *b, const char *name, const char *sql, const uint32_t *oids,
                     uint16_t n);
/* Bind with all-text parameters (values[i] NULL = SQL NULL, NUL-terminated) and one result
   format code for all columns. */
void pgw_build_bind_text(pgw_buf_t *b, const char *portal, const char *stmt,
                         const char *const *values, uint16_t n, int16_t result_format);
void pgw_build_describe(pgw_buf_t *b, uint8_t kind, const char *name);
void pgw_build_execute(pgw_buf_t *b, const char *portal, uint32_t max_rows);
void pgw_build_close(pgw_buf_t *b, uint8_t kind, const char *name);
void pgw_build_sync(pgw_buf_t *b);
void pgw_build_flush(pgw_buf_t *b);
void pgw_build_terminate(pgw_buf_t *b);

/* ---------------------------------------------------------------------------------------------
 * Authentication computations (RFC 5802 / RFC 7677 SCRAM-SHA-256 as PostgreSQL uses it, with
 * channel binding not supported: gs2 header "n,,"; and PostgreSQL's MD5 scheme).
 * ------------------------------------------------------------------------------------------- */
#define PGW_SCRAM_KEY_LEN 32
#define PGW_SCRAM_NONCE_RAW 18      /* random bytes the caller supplies for a nonce */
#define PGW_SCRAM_SALT_RAW 16

/* "md5" + hex(md5(hex(md5(password || user)) || salt)): what a client sends for AUTH_MD5.
   out must hold 36 bytes (35 chars + NUL). `password` may already be an "md5<32 hex>" secret
   (as stored in pg_authid or a PgBouncer userlist), in which case the inner hash is skipped. */
int pgw_md5_response(const char *user, const char *password, const uint8_t salt[4],
                     char out[36]) PGW_MUST_USE;
/* "md5" + hex(md5(password || user)), the stored form. out holds 36 bytes. */
int pgw_md5_secret(const char *user, const char *password, char out[36]) PGW_MUST_USE;

/* A parsed SCRAM secret "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>". */
typedef struct pgw_scram_secret {
    uint32_t iterations;
    uint8_t salt[64];
    size_t salt_len;
    uint8_t stored_key[PGW_SCRAM_KEY_LEN];
    uint8_t server_key[PGW_SCRAM_KEY_LEN];
} pgw_scram_secret_t;
int pgw_scram_parse_secret(const char *text, pgw_scram_secret_t *out) PGW_MUST_USE;
/* Derives a secret from a plaintext password (SASLprep is applied only to ASCII passwords as
   PostgreSQL does when normalisation fails: passwords are used as given). */
int pgw_scram_make_secret(const char *password, const uint8_t *salt, size_t salt_len,
                          uint32_t iterations, pgw_scram_secret_t *out) PGW_MUST_USE;

/* Server side: pgshim verifying a client. All strings produced are NUL-terminated and owned by
   the state (fixed-size arrays), valid until the state is reused. */
typedef struct pgw_scram_server {
    pgw_scram_secret_t secret;
    char client_first_bare[512];
    char server_first[512];
    char server_final[256];
    char nonce[128];            /* combined client+server nonce */
    uint8_t client_key[PGW_SCRAM_KEY_LEN]; /* recovered ClientKey after a successful proof */
    int step;
    char gs2_flag;              /* 'n' or 'y' from the client-first gs2 header; the c= of the
                                   client-final must echo it (added by the protocol engineer) */
} pgw_scram_server_t;
/* Consumes the client-first-message (SASLInitialResponse data), produces the server-first
   message to send as AuthenticationSASLContinue. PGW_EUNSUPPORTED when the client asks for
   channel binding (gs2 flag 'p'), an authorization identity or a mandatory extension;
   PGW_EMALFORMED on bad syntax; PGW_ETOOLONG when the messages do not fit the state. */
int pgw_scram_server_first(pgw_scram_server_t *st, const pgw_scram_secret_t *secret,
                           const uint8_t *client_first, size_t len,
                           const uint8_t server_nonce_raw[PGW_SCRAM_NONCE_RAW]) PGW_MUST_USE;
/* Consumes the client-final-message, verifies the proof (PGW_EAUTH on mismatch, PGW_EMALFORMED
   on bad syntax or a nonce mismatch), and on success produces server_final for
   AuthenticationSASLFinal and fills client_key. */
int pgw_scram_server_final(pgw_scram_server_t *st, const uint8_t *client_final,
                           size_t len) PGW_MUST_USE;

/* Client side: pgshim logging in to PostgreSQL. Either with a plaintext password, or with a
   ClientKey/ServerKey pair recovered from the client's own SCRAM exchange (works when the
   server's secret has the same salt and iterations). */
typedef struct pgw_scram_client {
    char password[256];
    bool have_keys;
    uint8_t client_key[PGW_SCRAM_KEY_LEN];
    uint8_t server_key[PGW_SCRAM_KEY_LEN];
    char client_nonce[64];
    char client_first_bare[512];
    char client_first[512];     /* gs2 header + bare: the SASLInitialResponse data */
    char client_final[512];     /* the SASLResponse data */
    uint8_t expected_server_sig[PGW_SCRAM_KEY_LEN];
    int step;
} pgw_scram_client_t;
int pgw_scram_client_init(pgw_scram_client_t *st, const char *password,
                          const uint8_t nonce_raw[PGW_SCRAM_NONCE_RAW]) PGW_MUST_USE;
int pgw_scram_client_init_keys(pgw_scram_client_t *st, const uint8_t client_key[32],
                               const uint8_t server_key[32],
                               const uint8_t nonce_raw[PGW_SCRAM_NONCE_RAW]) PGW_MUST_USE;
/* Consumes the server-first message (AuthenticationSASLContinue data), produces client_final.
   PGW_EMALFORMED when the combined nonce does not extend ours or salt/iterations are bad. */
int pgw_scram_client_continue(pgw_scram_client_t *st, const uint8_t *server_first,
                              size_t len) PGW_MUST_USE;
/* Verifies the server-final message (AuthenticationSASLFinal data); PGW_EAUTH on mismatch. */
int pgw_scram_client_finish(pgw_scram_client_t *st, const uint8_t *server_final,
                            size_t len) PGW_MUST_USE;

#endif /* PGSHIM_PROTOCOL_PGW_H */
