/*
 * Tests of the generated tables: error texts, message-type lookup per direction, names, type
 * bytes and limits, and the bounded reader that every decoder relies on.
 */
#include "test_util.h"

Test(types, strerror_names_every_code)
{
#define CHECK_ERR(name, val, text) cr_assert_str_eq(pgw_strerror(PGW_E##name), text);
    PGW_ERRNO_MAP(CHECK_ERR)
#undef CHECK_ERR
    cr_assert_str_eq(pgw_strerror(0), "success");
    cr_assert_str_eq(pgw_strerror(-1000), "unknown error");
    cr_assert_str_eq(pgw_strerror(7), "unknown error");
}

Test(types, every_table_entry_round_trips)
{
#define CHECK_MSG(name, byte, text, dir, max)                                                \
    do {                                                                                     \
        if ((dir) & PGW_F)                                                                   \
            cr_assert_eq(pgw_msg_lookup(PGW_F, (byte)), PGW_MSG_##name, "%s from F", text);  \
        if ((dir) & PGW_B)                                                                   \
            cr_assert_eq(pgw_msg_lookup(PGW_B, (byte)), PGW_MSG_##name, "%s from B", text);  \
        cr_assert_eq(pgw_msg_byte(PGW_MSG_##name), (byte));                                  \
        cr_assert_str_eq(pgw_msg_name(PGW_MSG_##name), text);                                \
        cr_assert_eq(pgw_msg_max_len(PGW_MSG_##name), (max));                                \
    } while (0);
    PGW_MSG_MAP(CHECK_MSG)
#undef CHECK_MSG
}

Test(types, same_byte_differs_by_direction)
{
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'D'), PGW_MSG_DESCRIBE);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'D'), PGW_MSG_DATA_ROW);
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'C'), PGW_MSG_CLOSE);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'C'), PGW_MSG_COMMAND_COMPLETE);
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'E'), PGW_MSG_EXECUTE);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'E'), PGW_MSG_ERROR_RESPONSE);
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'H'), PGW_MSG_FLUSH);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'H'), PGW_MSG_COPY_OUT_RESPONSE);
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'S'), PGW_MSG_SYNC);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'S'), PGW_MSG_PARAMETER_STATUS);
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'd'), PGW_MSG_COPY_DATA);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'd'), PGW_MSG_COPY_DATA);
    cr_assert_eq(pgw_msg_lookup(PGW_F, 'c'), PGW_MSG_COPY_DONE);
    cr_assert_eq(pgw_msg_lookup(PGW_B, 'c'), PGW_MSG_COPY_DONE);
    /* Ambiguous or bogus directions never match. */
    cr_assert_eq(pgw_msg_lookup(PGW_FB, 'd'), PGW_MSG_UNKNOWN);
    cr_assert_eq(pgw_msg_lookup((pgw_dir_t)0, 'Q'), PGW_MSG_UNKNOWN);
}

Test(types, legal_byte_sets_per_direction)
{
    const char *f_legal = "BCfDEHFPpQSXdc";
    const char *b_legal = "RK23CGHWDIEVvnNAtS1sZTdc";
    int nf = 0, nb = 0;
    for (int c = 0; c < 256; c++) {
        pgw_msg_t tf = pgw_msg_lookup(PGW_F, (uint8_t)c);
        pgw_msg_t tb = pgw_msg_lookup(PGW_B, (uint8_t)c);
        bool want_f = c != 0 && strchr(f_legal, c) != NULL;
        bool want_b = c != 0 && strchr(b_legal, c) != NULL;
        cr_assert_eq(tf != PGW_MSG_UNKNOWN, want_f, "byte 0x%02x from frontend", c);
        cr_assert_eq(tb != PGW_MSG_UNKNOWN, want_b, "byte 0x%02x from backend", c);
        nf += tf != PGW_MSG_UNKNOWN;
        nb += tb != PGW_MSG_UNKNOWN;
    }
    cr_assert_eq(nf, 14);
    cr_assert_eq(nb, 24);
}

Test(types, startup_types_and_out_of_range)
{
    cr_assert_str_eq(pgw_msg_name(PGW_MSG_STARTUP), "StartupMessage");
    cr_assert_str_eq(pgw_msg_name(PGW_MSG_SSL_REQUEST), "SSLRequest");
    cr_assert_str_eq(pgw_msg_name(PGW_MSG_GSSENC_REQUEST), "GSSENCRequest");
    cr_assert_str_eq(pgw_msg_name(PGW_MSG_CANCEL_REQUEST), "CancelRequest");
    cr_assert_eq(pgw_msg_byte(PGW_MSG_STARTUP), 0);
    cr_assert_eq(pgw_msg_byte(PGW_MSG_UNKNOWN), 0);
    cr_assert_eq(pgw_msg_max_len(PGW_MSG_STARTUP), PGW_STARTUP_LIMIT);
    cr_assert_eq(pgw_msg_max_len(PGW_MSG_CANCEL_REQUEST), 16);
    cr_assert_eq(pgw_msg_max_len(PGW_MSG_SSL_REQUEST), 8);
    cr_assert_str_eq(pgw_msg_name(PGW_MSG__COUNT), "Unknown");
    cr_assert_str_eq(pgw_msg_name((pgw_msg_t)-3), "Unknown");
    cr_assert_eq(pgw_msg_byte(PGW_MSG__COUNT), 0);
    cr_assert_eq(pgw_msg_max_len(PGW_MSG__COUNT), 0);
}

Test(reader, reads_big_endian_and_tracks_the_end)
{
    const uint8_t b[] = {0x01, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x01, 'h', 'i', 0, 'x'};
    pgw_reader_t r;
    pgw_reader_init(&r, b, sizeof b);
    cr_assert_eq(pgw_read_u8(&r), 1);
    cr_assert_eq(pgw_read_i16(&r), -2);
    cr_assert_eq(pgw_read_i32(&r), (int32_t)0x80000001u);
    pgw_str_t s = pgw_read_cstr(&r);
    TU_ASSERT_STR(s, "hi");
    cr_assert_eq(pgw_reader_left(&r), 1);
    cr_assert_eq(pgw_reader_finish(&r), PGW_EMALFORMED, "a byte is left");
    const uint8_t *x = pgw_read_bytes(&r, 1);
    cr_assert(x && *x == 'x');
    cr_assert_eq(pgw_reader_finish(&r), 0);
}

Test(reader, failure_is_sticky)
{
    const uint8_t b[] = {0, 1, 2};
    pgw_reader_t r;
    pgw_reader_init(&r, b, sizeof b);
    cr_assert_eq(pgw_read_i32(&r), 0);
    cr_assert(r.failed);
    /* Bytes that would fit are not handed out after a failure. */
    cr_assert_eq(pgw_read_u8(&r), 0);
    cr_assert_null(pgw_read_bytes(&r, 0));
    cr_assert_eq(pgw_reader_left(&r), 0);
    cr_assert_eq(pgw_reader_finish(&r), PGW_EMALFORMED);
}

Test(reader, cstr_needs_its_nul)
{
    const uint8_t b[] = {'a', 'b'};
    pgw_reader_t r;
    pgw_reader_init(&r, b, sizeof b);
    pgw_str_t s = pgw_read_cstr(&r);
    cr_assert_null(s.ptr);
    cr_assert(r.failed);
    pgw_reader_init(&r, NULL, 0);
    s = pgw_read_cstr(&r);
    cr_assert_null(s.ptr);
    cr_assert_eq(pgw_reader_finish(&r), PGW_EMALFORMED);
    pgw_reader_init(&r, NULL, 0);
    cr_assert_eq(pgw_reader_finish(&r), 0, "an empty reader with no reads is fine");
}
