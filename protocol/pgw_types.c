/*
 * Error texts and the message-type table. Everything here is generated from the two X-macro
 * maps in pgw.h (PGW_ERRNO_MAP, PGW_MSG_MAP), so adding a message type or an error code is a
 * one-line change in the header and the names, directions and limits cannot drift apart.
 * The startup-phase types have no type byte and are described by hand below the table.
 */
#include "pgw_int.h"

const char *pgw_strerror(int err)
{
    if (err == 0)
        return "success";
    switch (err) {
#define PGW__ERR_TEXT(name, val, text) case (val): return (text);
        PGW_ERRNO_MAP(PGW__ERR_TEXT)
#undef PGW__ERR_TEXT
    default:
        return "unknown error";
    }
}

typedef struct pgw_msg_info {
    uint8_t byte;
    uint8_t dir;
    uint32_t max;
    const char *name;
} pgw_msg_info_t;

/* Indexed by pgw_msg_t. Startup-phase types are frontend-only and share the startup limit. */
static const pgw_msg_info_t msg_info[PGW_MSG__COUNT] = {
    [PGW_MSG_UNKNOWN] = {0, 0, 0, "Unknown"},
    [PGW_MSG_STARTUP] = {0, PGW_F, PGW_STARTUP_LIMIT, "StartupMessage"},
    [PGW_MSG_SSL_REQUEST] = {0, PGW_F, 8, "SSLRequest"},
    [PGW_MSG_GSSENC_REQUEST] = {0, PGW_F, 8, "GSSENCRequest"},
    [PGW_MSG_CANCEL_REQUEST] = {0, PGW_F, 16, "CancelRequest"},
#define PGW__MSG_INFO(name, byte, text, dir, max) [PGW_MSG_##name] = {(byte), (dir), (max), (text)},
    PGW_MSG_MAP(PGW__MSG_INFO)
#undef PGW__MSG_INFO
};

pgw_msg_t pgw_msg_lookup(pgw_dir_t dir, uint8_t byte)
{
    /* Only a single direction makes sense: the same byte means different messages in the two
       directions, so PGW_FB would be ambiguous. A linear scan over ~36 entries is cheaper
       than it looks and keeps the table the single source of truth. */
    if ((dir != PGW_F && dir != PGW_B) || byte == 0)
        return PGW_MSG_UNKNOWN;
    for (int t = PGW_MSG_CANCEL_REQUEST + 1; t < PGW_MSG__COUNT; t++) {
        if (msg_info[t].byte == byte && (msg_info[t].dir & dir))
            return (pgw_msg_t)t;
    }
    return PGW_MSG_UNKNOWN;
}

const char *pgw_msg_name(pgw_msg_t type)
{
    if ((int)type < 0 || type >= PGW_MSG__COUNT)
        return "Unknown";
    return msg_info[type].name;
}

uint8_t pgw_msg_byte(pgw_msg_t type)
{
    if ((int)type < 0 || type >= PGW_MSG__COUNT)
        return 0;
    return msg_info[type].byte;
}

uint32_t pgw_msg_max_len(pgw_msg_t type)
{
    if ((int)type < 0 || type >= PGW_MSG__COUNT)
        return 0;
    return msg_info[type].max;
}

pgw_dir_t pgw__msg_dir(pgw_msg_t type)
{
    if ((int)type < 0 || type >= PGW_MSG__COUNT)
        return 0;
    return (pgw_dir_t)msg_info[type].dir;
}
