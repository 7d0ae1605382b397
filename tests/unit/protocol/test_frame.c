/*
 * Framing tests: need-more at every prefix, exact need counts, length words below the minimum
 * and above each type's maximum, illegal type bytes per direction and phase, the startup-phase
 * codes (cancel, SSL, GSSENC) with their fixed lengths, and the header-only peek.
 */
#include "test_util.h"

static const uint8_t query_msg[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
static const uint8_t startup_msg[] = {0, 0, 0, 23, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0,
                                      'b', 'o', 'b', 0, 'x', 0, 'y', 0, 0, 0};

/* Every proper prefix of a message asks for more, with the exact number of bytes missing once
   the header is visible and the bytes missing from the header before that. */
static void check_prefixes(pgw_phase_t phase, pgw_dir_t from, const uint8_t *m, size_t n)
{
    size_t hdr = phase == PGW_PHASE_STARTUP ? 4 : 5;
    for (size_t k = 0; k < n; k++) {
        pgw_frame_t f;
        size_t need = 12345;
        int rc = pgw_frame_next(phase, from, m, k, &f, &need);
        cr_assert_eq(rc, PGW_ENEEDMORE, "prefix %zu of %zu: %s", k, n, pgw_strerror(rc));
        cr_assert_eq(need, k < hdr ? hdr - k : n - k, "prefix %zu of %zu: need %zu", k, n, need);
        /* need may be NULL */
        cr_assert_eq(pgw_frame_next(phase, from, m, k, &f, NULL), PGW_ENEEDMORE);
    }
    pgw_frame_t f = tu_frame(phase, from, m, n);
    cr_assert_eq(f.total_len, n);
}

Test(frame, normal_need_more_at_every_prefix)
{
    check_prefixes(PGW_PHASE_NORMAL, PGW_F, query_msg, sizeof query_msg);
}

Test(frame, startup_need_more_at_every_prefix)
{
    check_prefixes(PGW_PHASE_STARTUP, PGW_F, startup_msg, sizeof startup_msg);
}

Test(frame, complete_message_fields)
{
    uint8_t two[sizeof query_msg * 2];
    memcpy(two, query_msg, sizeof query_msg);
    memcpy(two + sizeof query_msg, query_msg, sizeof query_msg);
    pgw_frame_t f;
    size_t need = 99;
    /* Only the first message is framed even when more bytes follow. */
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, two, sizeof two, &f, &need),
                 (int)sizeof query_msg);
    cr_assert_eq(f.type, PGW_MSG_QUERY);
    cr_assert_eq(f.tag, 'Q');
    cr_assert_eq(f.total_len, sizeof query_msg);
    cr_assert_eq(f.body, two + 5);
    cr_assert_eq(f.body_len, 9);

    f = tu_frame(PGW_PHASE_STARTUP, PGW_F, startup_msg, sizeof startup_msg);
    cr_assert_eq(f.type, PGW_MSG_STARTUP);
    cr_assert_eq(f.tag, 0);
    cr_assert_eq(f.body, startup_msg + 4, "startup body starts at the version");
    cr_assert_eq(f.body_len, sizeof startup_msg - 4);
}

Test(frame, length_below_minimum)
{
    for (uint32_t l = 0; l < 4; l++) {
        uint8_t m[9] = {'S', 0, 0, 0, 0};
        tu_put32(m + 1, l);
        pgw_frame_t f;
        size_t need;
        cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, m, sizeof m, &f, &need),
                     PGW_EMALFORMED, "length %u", l);
        cr_assert_eq(pgw_frame_peek(PGW_F, m, 5, &f), PGW_EMALFORMED);
    }
    for (uint32_t l = 0; l < 8; l++) {
        uint8_t m[8] = {0};
        tu_put32(m, l);
        pgw_frame_t f;
        size_t need;
        /* Detected from the length word alone. */
        cr_assert_eq(pgw_frame_next(PGW_PHASE_STARTUP, PGW_F, m, 4, &f, &need), PGW_EMALFORMED,
                     "startup length %u", l);
    }
}

Test(frame, negative_length_word)
{
    uint8_t m[5] = {'d', 0x80, 0, 0, 0};
    pgw_frame_t f;
    size_t need;
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, m, 5, &f, &need), PGW_EMALFORMED);
    cr_assert_eq(pgw_frame_peek(PGW_B, m, 5, &f), PGW_EMALFORMED);
    uint8_t big[5] = {'d', 0x7f, 0xff, 0xff, 0xfe};
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, big, 5, &f, &need), PGW_ETOOLONG);
    cr_assert_eq(pgw_frame_peek(PGW_B, big, 5, &f), 5, "peek ignores the per-type maximum");
    cr_assert_eq(f.total_len, 0x7fffffffu);
}

/* For every type in the table, in each direction that may send it: the maximum is accepted
   (need-more for the body) and one more byte is PGW_ETOOLONG, decided from the header alone. */
static void check_limits(pgw_dir_t from, uint8_t byte, uint32_t max, const char *name)
{
    uint8_t h[5] = {byte};
    pgw_frame_t f;
    size_t need = 0;
    tu_put32(h + 1, max);
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, from, h, 5, &f, &need), PGW_ENEEDMORE, "%s",
                 name);
    cr_assert_eq(need, (size_t)max + 1 - 5, "%s", name);
    tu_put32(h + 1, max + 1);
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, from, h, 5, &f, &need), PGW_ETOOLONG, "%s",
                 name);
    cr_assert_eq(pgw_frame_peek(from, h, 5, &f), 5, "%s", name);
    cr_assert_eq(f.total_len, max + 2);
    cr_assert_eq(f.body_len, max - 3);
    cr_assert_null(f.body);
}

Test(frame, per_type_maximum)
{
#define CHECK_LIMIT(name, byte, text, dir, max)                                              \
    if ((dir) & PGW_F)                                                                       \
        check_limits(PGW_F, (byte), (max), text);                                            \
    if ((dir) & PGW_B)                                                                       \
        check_limits(PGW_B, (byte), (max), text);
    PGW_MSG_MAP(CHECK_LIMIT)
#undef CHECK_LIMIT
    uint8_t s[4];
    pgw_frame_t f;
    size_t need;
    tu_put32(s, PGW_STARTUP_LIMIT);
    cr_assert_eq(pgw_frame_next(PGW_PHASE_STARTUP, PGW_F, s, 4, &f, &need), PGW_ENEEDMORE);
    cr_assert_eq(need, PGW_STARTUP_LIMIT - 4);
    tu_put32(s, PGW_STARTUP_LIMIT + 1);
    cr_assert_eq(pgw_frame_next(PGW_PHASE_STARTUP, PGW_F, s, 4, &f, &need), PGW_ETOOLONG);
}

Test(frame, illegal_type_bytes_per_direction)
{
    for (int c = 0; c < 256; c++) {
        for (int d = PGW_F; d <= PGW_B; d++) {
            uint8_t m[5] = {(uint8_t)c, 0, 0, 0, 4};
            pgw_frame_t f;
            size_t need;
            bool legal = pgw_msg_lookup((pgw_dir_t)d, (uint8_t)c) != PGW_MSG_UNKNOWN;
            /* The type byte alone is enough to reject. */
            int rc1 = pgw_frame_next(PGW_PHASE_NORMAL, (pgw_dir_t)d, m, 1, &f, &need);
            int rc5 = pgw_frame_next(PGW_PHASE_NORMAL, (pgw_dir_t)d, m, 5, &f, &need);
            int rp = pgw_frame_peek((pgw_dir_t)d, m, 1, &f);
            if (legal) {
                cr_assert_eq(rc1, PGW_ENEEDMORE);
                cr_assert_eq(rc5, 5);
                cr_assert_eq(rp, PGW_ENEEDMORE);
            } else {
                cr_assert_eq(rc1, PGW_EBADTYPE, "0x%02x dir %d", c, d);
                cr_assert_eq(rc5, PGW_EBADTYPE, "0x%02x dir %d", c, d);
                cr_assert_eq(rp, PGW_EBADTYPE, "0x%02x dir %d", c, d);
            }
        }
    }
    /* Examples worth naming: a server never sends Query, a client never sends ReadyForQuery. */
    uint8_t z[] = {'Z', 0, 0, 0, 5, 'I'};
    pgw_frame_t f;
    size_t need;
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, z, sizeof z, &f, &need), PGW_EBADTYPE);
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, query_msg, sizeof query_msg, &f, &need),
                 PGW_EBADTYPE);
}

Test(frame, bad_phase_or_direction)
{
    pgw_frame_t f;
    size_t need;
    cr_assert_eq(pgw_frame_next(PGW_PHASE_STARTUP, PGW_B, startup_msg, sizeof startup_msg, &f,
                                &need), PGW_EBADTYPE, "a server never sends startup packets");
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_FB, query_msg, sizeof query_msg, &f, &need),
                 PGW_EBADTYPE);
    cr_assert_eq(pgw_frame_next((pgw_phase_t)0, PGW_F, query_msg, sizeof query_msg, &f, &need),
                 PGW_EBADTYPE);
    cr_assert_eq(pgw_frame_peek(PGW_FB, query_msg, sizeof query_msg, &f), PGW_EBADTYPE);
    cr_assert_eq(pgw_frame_peek(PGW_F, query_msg, 0, &f), PGW_ENEEDMORE);
    cr_assert_eq(pgw_frame_peek(PGW_F, query_msg, 4, &f), PGW_ENEEDMORE);
    /* A startup packet framed in the normal phase is rejected by its first byte (0). */
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, startup_msg, sizeof startup_msg, &f,
                                &need), PGW_EBADTYPE);
}

Test(frame, startup_codes)
{
    static const struct {
        uint32_t code;
        pgw_msg_t type;
        uint32_t len;
    } cases[] = {
        {PGW_CODE_SSL, PGW_MSG_SSL_REQUEST, 8},
        {PGW_CODE_GSSENC, PGW_MSG_GSSENC_REQUEST, 8},
        {PGW_CODE_CANCEL, PGW_MSG_CANCEL_REQUEST, 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t m[24] = {0};
        tu_put32(m + 4, cases[i].code);
        /* Exact length: recognised. */
        tu_put32(m, cases[i].len);
        pgw_frame_t f = tu_frame(PGW_PHASE_STARTUP, PGW_F, m, cases[i].len);
        cr_assert_eq(f.type, cases[i].type);
        cr_assert_eq(f.body, m + 4, "body starts at the code");
        cr_assert_eq(f.body_len, cases[i].len - 4);
        check_prefixes(PGW_PHASE_STARTUP, PGW_F, m, cases[i].len);
        /* Any other length is malformed as soon as the code is visible. */
        for (uint32_t l = 9; l <= 24; l++) {
            if (l == cases[i].len)
                continue;
            tu_put32(m, l);
            size_t need;
            cr_assert_eq(pgw_frame_next(PGW_PHASE_STARTUP, PGW_F, m, 8, &f, &need),
                         PGW_EMALFORMED, "code %u length %u", cases[i].code, l);
        }
    }
    /* An unknown code frames as a StartupMessage; its decoder rejects the version. */
    uint8_t u[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x31};
    pgw_frame_t f = tu_frame(PGW_PHASE_STARTUP, PGW_F, u, sizeof u);
    cr_assert_eq(f.type, PGW_MSG_STARTUP);
    pgw_startup_t st;
    cr_assert_eq(pgw_decode_startup(&f, &st), PGW_EUNSUPPORTED);
}

Test(frame, peek_header_only)
{
    uint8_t h[5] = {'D', 0x40, 0x00, 0x00, 0x00};   /* 1 GiB DataRow: over the limit */
    pgw_frame_t f;
    size_t need;
    cr_assert_eq(pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, h, 5, &f, &need), PGW_ETOOLONG);
    cr_assert_eq(pgw_frame_peek(PGW_B, h, 5, &f), 5);
    cr_assert_eq(f.type, PGW_MSG_DATA_ROW);
    cr_assert_eq(f.tag, 'D');
    cr_assert_eq(f.total_len, 0x40000001u);
    cr_assert_eq(f.body_len, 0x40000000u - 4);
    cr_assert_eq(pgw_frame_peek(PGW_F, h, 5, &f), 5);
    cr_assert_eq(f.type, PGW_MSG_DESCRIBE);
}
