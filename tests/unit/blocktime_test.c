#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "blocktime.h"

#define NOW 1764000000000ull

/* The primary stamps its wall clock, but never a time below the last block's. */
static void blocktime_propose_is_monotonic(void **state)
{
    (void)state;
    assert_int_equal(blocktime_propose(NOW, NOW - 5), NOW);
    assert_int_equal(blocktime_propose(NOW, NOW), NOW);
    /* A primary whose clock is an hour slow repeats the last block's time. */
    assert_int_equal(blocktime_propose(NOW - 3600000, NOW), NOW);
}

/* A proposal up to the skew limit ahead (or any time behind) is accepted. */
static void blocktime_check_accepts_within_skew(void **state)
{
    uint64_t ahead = 99;

    (void)state;
    assert_int_equal(blocktime_check(&ahead, NOW, NOW, 10000), 0);
    assert_int_equal(ahead, 0);
    assert_int_equal(blocktime_check(&ahead, NOW + 10000, NOW, 10000), 0);
    assert_int_equal(ahead, 10000);
    assert_int_equal(blocktime_check(&ahead, NOW - 3600000, NOW, 10000), 0);
    assert_int_equal(ahead, 0);
    assert_int_equal(blocktime_check(&ahead, 0, NOW, 1000), 0);
}

/* One millisecond past the limit is refused, and so is a time near the top of the range (no wrap). */
static void blocktime_check_refuses_fast_clock(void **state)
{
    uint64_t ahead = 0;

    (void)state;
    assert_int_equal(blocktime_check(&ahead, NOW + 10001, NOW, 10000), -BEX_ELIMIT);
    assert_int_equal(ahead, 10001);
    assert_int_equal(blocktime_check(&ahead, NOW + 3600000, NOW, 10000), -BEX_ELIMIT);
    assert_int_equal(ahead, 3600000);
    assert_int_equal(blocktime_check(&ahead, UINT64_MAX, NOW, UINT32_MAX), -BEX_ELIMIT);
    assert_int_equal(ahead, UINT64_MAX - NOW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocktime_propose_is_monotonic),
        cmocka_unit_test(blocktime_check_accepts_within_skew),
        cmocka_unit_test(blocktime_check_refuses_fast_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
