#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void log_limit_caps_each_window(void **state)
{
    struct log_limit l = {0};
    uint64_t dropped = 99;
    int passed = 0;

    (void)state;
    for (uint64_t t = 0; t < 100; t++) {
        if (log_limit_pass(&l, &dropped, 5000 + t)) {
            assert_int_equal(dropped, 0);
            passed++;
        }
    }
    assert_int_equal(passed, LOG_LIMIT_LINES);
    /* Still inside the window: dropped. */
    assert_false(log_limit_pass(&l, &dropped, 5000 + LOG_LIMIT_WINDOW_MS - 1));
    /* A new window: the first line carries the count of the dropped ones. */
    assert_true(log_limit_pass(&l, &dropped, 5000 + LOG_LIMIT_WINDOW_MS));
    assert_int_equal(dropped, 100 - LOG_LIMIT_LINES + 1);
    assert_true(log_limit_pass(&l, &dropped, 5000 + LOG_LIMIT_WINDOW_MS + 1));
    assert_int_equal(dropped, 0);
}

static void log_limit_burst_overrides_default(void **state)
{
    struct log_limit l = {.burst = 20};
    uint64_t dropped;
    int passed = 0;

    (void)state;
    for (uint64_t t = 0; t < 100; t++)
        passed += log_limit_pass(&l, &dropped, 100 + t);
    assert_int_equal(passed, 20);
}

static void log_limit_starts_at_time_zero(void **state)
{
    struct log_limit l = {0};
    uint64_t dropped = 7;

    (void)state;
    assert_true(log_limit_pass(&l, &dropped, 0));
    assert_int_equal(dropped, 0);
}

/* Runs fn with stderr sent to a temporary file; returns the lines written and copies the text. */
static int capture_stderr(void (*fn)(void), char *text, size_t text_size)
{
    FILE *tmp = tmpfile();
    int saved = dup(2), lines = 0;
    size_t len;

    assert_non_null(tmp);
    assert_true(saved >= 0);
    fflush(stderr);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    fn();
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    rewind(tmp);
    len = fread(text, 1, text_size - 1, tmp);
    text[len] = '\0';
    fclose(tmp);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    return lines;
}

static void flood(void)
{
    for (int i = 0; i < 200; i++)
        LOG_W_LIMITED("flood: message %d", i);
}

static void flood_debug(void)
{
    for (int i = 0; i < 200; i++) {
        static struct log_limit lim;

        log_write_limited(&lim, LOG_DEBUG, "debug %d", i);
    }
}

static void log_limited_warning_writes_a_few_lines(void **state)
{
    char text[8192];

    (void)state;
    log_init(LOG_INFO, 3);
    assert_int_equal(capture_stderr(flood, text, sizeof text), LOG_LIMIT_LINES);
    assert_non_null(strstr(text, "WARN  n3 "));
    assert_non_null(strstr(text, "flood: message 0"));
    assert_null(strstr(text, "flood: message 5\n"));
    /* Below the level: nothing, and nothing counted. */
    assert_int_equal(capture_stderr(flood_debug, text, sizeof text), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_limit_caps_each_window),
        cmocka_unit_test(log_limit_burst_overrides_default),
        cmocka_unit_test(log_limit_starts_at_time_zero),
        cmocka_unit_test(log_limited_warning_writes_a_few_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
