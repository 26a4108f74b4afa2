#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "bex.h"

static void common_every_code_has_text(void **state)
{
    (void)state;
    for (int c = 0; c < BEX_E_COUNT; c++) {
        assert_non_null(bex_strerror(c));
        assert_non_null(bex_errname(c));
        assert_string_equal(bex_strerror(c), bex_strerror(-c));
        assert_string_not_equal(bex_errname(c), "EUNKNOWNCODE");
    }
}

static void common_unknown_code_is_named(void **state)
{
    (void)state;
    assert_string_equal(bex_errname(BEX_E_COUNT), "EUNKNOWNCODE");
    assert_string_equal(bex_strerror(-1000), "unknown error");
}

static void common_codes_are_stable(void **state)
{
    (void)state;
    /* Receipt codes are protocol: these numbers must never change. */
    assert_int_equal(BEX_EPERM, 9);
    assert_int_equal(BEX_EREFUSED, 18);
    assert_int_equal(BEX_ETHRESHOLD, 19);
    assert_string_equal(bex_errname(-BEX_EMAPFULL), "EMAPFULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(common_every_code_has_text),
        cmocka_unit_test(common_unknown_code_is_named),
        cmocka_unit_test(common_codes_are_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
