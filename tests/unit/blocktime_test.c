/*
 * blocktime_test.c: the time a primary stamps on a proposal and the skew
 * check a backup applies before it prepares one (node/blocktime.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "blocktime.h"

#define NOW 1764000000000ull
#define SKEW 10000u

/* The primary stamps its wall clock, but never a time below the last block's. */
static void blocktime_propose_is_monotonic(void **state)
{
    (void)state;
    assert_int_equal(blocktime_propose(NOW, NOW - 5), NOW);
    assert_int_equal(blocktime_propose(NOW, NOW), NOW);
    /* A primary whose clock is an hour slow repeats the last block's time. */
    assert_int_equal(blocktime_propose(NOW - 3600000, NOW), NOW);
}

/* A proposal up to the skew limit either way is accepted, and says how far off it is. */
static void blocktime_check_accepts_within_skew(void **state)
{
    uint64_t ahead = 99, behind = 99;

    (void)state;
    assert_int_equal(blocktime_check(&ahead, &behind, NOW, NOW, SKEW, true), 0);
    assert_int_equal(ahead, 0);
    assert_int_equal(behind, 0);
    assert_int_equal(blocktime_check(&ahead, &behind, NOW + SKEW, NOW, SKEW, true), 0);
    assert_int_equal(ahead, SKEW);
    assert_int_equal(behind, 0);
    assert_int_equal(blocktime_check(&ahead, &behind, NOW - SKEW, NOW, SKEW, true), 0);
    assert_int_equal(ahead, 0);
    assert_int_equal(behind, SKEW);
}

/* One millisecond too far ahead is refused, fresh or not, and a time near the top does not wrap. */
static void blocktime_check_refuses_fast_clock(void **state)
{
    uint64_t ahead = 0, behind = 0;

    (void)state;
    assert_int_equal(blocktime_check(&ahead, &behind, NOW + SKEW + 1, NOW, SKEW, true), -BEX_ELIMIT);
    assert_int_equal(ahead, SKEW + 1);
    assert_int_equal(blocktime_check(&ahead, &behind, NOW + 3600000, NOW, SKEW, false), -BEX_ELIMIT);
    assert_int_equal(ahead, 3600000);
    assert_int_equal(blocktime_check(&ahead, &behind, UINT64_MAX, NOW, UINT32_MAX, true), -BEX_ELIMIT);
    assert_int_equal(ahead, UINT64_MAX - NOW);
    assert_int_equal(behind, 0);
}

/*
 * A fresh proposal too far behind is refused; a re-issued one (of an older
 * view) is not, however old, so that a long view change can finish.
 */
static void blocktime_check_behind_only_when_fresh(void **state)
{
    uint64_t ahead = 0, behind = 0;

    (void)state;
    assert_int_equal(blocktime_check(&ahead, &behind, NOW - SKEW - 1, NOW, SKEW, true), -BEX_ELIMIT);
    assert_int_equal(behind, SKEW + 1);
    assert_int_equal(blocktime_check(&ahead, &behind, NOW - 3600000, NOW, SKEW, false), 0);
    assert_int_equal(behind, 3600000);
    assert_int_equal(blocktime_check(&ahead, &behind, 0, NOW, SKEW, false), 0);
    assert_int_equal(blocktime_check(&ahead, &behind, 0, NOW, SKEW, true), -BEX_ELIMIT);
    assert_int_equal(behind, NOW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocktime_propose_is_monotonic),
        cmocka_unit_test(blocktime_check_accepts_within_skew),
        cmocka_unit_test(blocktime_check_refuses_fast_clock),
        cmocka_unit_test(blocktime_check_behind_only_when_fresh),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
