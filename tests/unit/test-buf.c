/* SPDX-License-Identifier: MIT */
/* Unit tests for protocol/buf.c: bounds, and failed calls leave the buffer unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"

static void test_integers_roundtrip(void **state)
{
        struct buf b;
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;

        buf_init(&b, 64);
        assert_int_equal(buf_put_u8(&b, 0xab), 0);
        assert_int_equal(buf_put_u16(&b, 0x1234), 0);
        assert_int_equal(buf_put_u32(&b, 0xdeadbeef), 0);
        assert_int_equal(buf_put_u64(&b, 0x0102030405060708ULL), 0);
        assert_int_equal(b.len, 15);
        /* Big-endian on the wire. */
        assert_int_equal(b.data[1], 0x12);
        assert_int_equal(b.data[3], 0xde);
        assert_int_equal(buf_get_u8(&b, &u8), 0);
        assert_int_equal(buf_get_u16(&b, &u16), 0);
        assert_int_equal(buf_get_u32(&b, &u32), 0);
        assert_int_equal(buf_get_u64(&b, &u64), 0);
        assert_int_equal(u8, 0xab);
        assert_int_equal(u16, 0x1234);
        assert_int_equal(u32, 0xdeadbeef);
        assert_true(u64 == 0x0102030405060708ULL);
        assert_int_equal(buf_end(&b), 0);
        buf_deinit(&b);
}

static void test_short_reads_leave_buffer_unchanged(void **state)
{
        static const uint8_t data[] = { 0, 0, 0, 9, 'a', 'b' };  /* claims 9, has 2 */
        struct buf b;
        const uint8_t *p = (const uint8_t *) "x";
        size_t len = 99;
        uint64_t u64 = 7;

        buf_view(&b, data, sizeof(data));
        assert_int_equal(buf_get_bytes(&b, &p, &len), DKIMSIGN_E_INCOMPLETE);
        assert_null(p);
        assert_int_equal(len, 0);
        assert_int_equal(b.off, 0);
        assert_int_equal(buf_get_u64(&b, &u64), DKIMSIGN_E_INCOMPLETE);
        assert_true(u64 == 0);
        assert_int_equal(b.off, 0);
        assert_int_equal(buf_end(&b), DKIMSIGN_E_TRAILING);
}

static void test_string_rules(void **state)
{
        static const uint8_t nul[] = { 0, 0, 0, 3, 'a', 0, 'b' };
        static const uint8_t ok[] = { 0, 0, 0, 3, 'a', 'b', 'c' };
        struct buf b;
        const char *s;
        size_t len;

        buf_view(&b, nul, sizeof(nul));
        assert_int_equal(buf_get_string(&b, 10, &s, &len), DKIMSIGN_E_FORMAT);
        assert_int_equal(b.off, 0);
        buf_view(&b, ok, sizeof(ok));
        assert_int_equal(buf_get_string(&b, 2, &s, &len), DKIMSIGN_E_TOO_LARGE);
        assert_int_equal(b.off, 0);
        assert_int_equal(buf_get_string(&b, 3, &s, &len), 0);
        assert_int_equal(len, 3);
        assert_memory_equal(s, "abc", 3);
}

static void test_max_is_hard(void **state)
{
        struct buf b;

        buf_init(&b, 8);
        assert_int_equal(buf_put(&b, "12345678", 8), 0);
        assert_int_equal(buf_put_u8(&b, 1), DKIMSIGN_E_NOSPACE);
        assert_int_equal(b.len, 8);
        buf_reset(&b);
        /* A length prefix that would not fit with its data fails whole. */
        assert_int_equal(buf_put_bytes(&b, "12345", 5), DKIMSIGN_E_NOSPACE);
        assert_int_equal(b.len, 0);
        buf_deinit(&b);
}

static void test_child_view_is_bounded(void **state)
{
        static const uint8_t data[] = { 0, 0, 0, 2, 0x12, 0x34, 0x56 };
        struct buf b, child;
        uint16_t v;
        uint8_t u8;

        buf_view(&b, data, sizeof(data));
        assert_int_equal(buf_get_child(&b, &child), 0);
        assert_int_equal(buf_get_u16(&child, &v), 0);
        assert_int_equal(v, 0x1234);
        assert_int_equal(buf_get_u8(&child, &u8), DKIMSIGN_E_INCOMPLETE);
        assert_int_equal(buf_get_u8(&b, &u8), 0);
        assert_int_equal(u8, 0x56);
}

static void test_consume_compact_and_poke(void **state)
{
        struct buf b;
        uint8_t u8;

        buf_init(&b, 16);
        assert_int_equal(buf_put(&b, "abcdef", 6), 0);
        assert_int_equal(buf_consume(&b, 2), 0);
        assert_int_equal(buf_consume(&b, 5), DKIMSIGN_E_INCOMPLETE);
        buf_compact(&b);
        assert_int_equal(b.off, 0);
        assert_int_equal(b.len, 4);
        assert_int_equal(buf_get_u8(&b, &u8), 0);
        assert_int_equal(u8, 'c');
        assert_int_equal(buf_poke_u32(&b, 0, 0x41424344), 0);
        assert_int_equal(buf_poke_u32(&b, 1, 0), DKIMSIGN_E_INTERNAL);
        assert_memory_equal(b.data, "ABCD", 4);
        buf_deinit_wipe(&b);
        assert_null(b.data);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_integers_roundtrip),
                cmocka_unit_test(test_short_reads_leave_buffer_unchanged),
                cmocka_unit_test(test_string_rules),
                cmocka_unit_test(test_max_is_hard),
                cmocka_unit_test(test_child_view_is_bounded),
                cmocka_unit_test(test_consume_compact_and_poke),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
