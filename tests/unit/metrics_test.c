#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bex.h"
#include "metrics.h"

static const char *const reasons[] = {"ESIG", "ENONCE", "EFULL"};

static int setup(void **state)
{
    struct metrics *m = NULL;
    if (metrics_new(&m) != 0)
        return -1;
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    metrics_free(*state);
    return 0;
}

static char *render(struct metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* True when `line` appears in `text` as a whole line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        bool starts = p == text || p[-1] == '\n';
        if (starts && p[n] == '\n')
            return true;
    }
    return false;
}

static void metrics_counter_renders(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    struct metrics_desc d = {.type = METRICS_COUNTER, .name = "bex_blocks_total",
                             .help = "Blocks committed."};
    assert_int_equal(metrics_register(m, &f, &d), 0);
    metrics_counter_inc(f, 0);
    metrics_counter_add(f, 0, 41);
    assert_int_equal(metrics_counter_value(f, 0), 42);
    char *t = render(m);
    assert_string_equal(t, "# HELP bex_blocks_total Blocks committed.\n"
                           "# TYPE bex_blocks_total counter\n"
                           "bex_blocks_total 42\n");
    free(t);
}

static void metrics_labelled_counter_renders_every_value(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    struct metrics_desc d = {.type = METRICS_COUNTER, .name = "bex_rejected_total",
                             .help = "Transactions rejected.", .label = "reason",
                             .values = reasons, .values_len = 3};
    assert_int_equal(metrics_register(m, &f, &d), 0);
    int i = metrics_label_find(f, "ENONCE");
    assert_int_equal(i, 1);
    assert_int_equal(metrics_label_find(f, "EPERM"), -BEX_ENOTFOUND);
    metrics_counter_add(f, (size_t)i, 7);
    metrics_counter_inc(f, 0);
    char *t = render(m);
    assert_true(has_line(t, "# TYPE bex_rejected_total counter"));
    assert_true(has_line(t, "bex_rejected_total{reason=\"ESIG\"} 1"));
    assert_true(has_line(t, "bex_rejected_total{reason=\"ENONCE\"} 7"));
    assert_true(has_line(t, "bex_rejected_total{reason=\"EFULL\"} 0"));
    free(t);
}

static void metrics_histogram_renders_cumulative_buckets(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    struct metrics_desc d = {.type = METRICS_HISTOGRAM, .name = "bex_commit_latency_seconds",
                             .help = "Submit to commit.", .buckets = metrics_latency_buckets,
                             .buckets_len = METRICS_LATENCY_BUCKETS_LEN};
    assert_int_equal(metrics_register(m, &f, &d), 0);
    metrics_histogram_observe(f, 0, 0.005); /* on a bound: le is inclusive */
    metrics_histogram_observe(f, 0, 0.2);
    metrics_histogram_observe(f, 0, 0.25);
    metrics_histogram_observe(f, 0, 30);
    assert_int_equal(metrics_histogram_count(f, 0), 4);
    char *t = render(m);
    assert_true(has_line(t, "# TYPE bex_commit_latency_seconds histogram"));
    assert_true(has_line(t, "bex_commit_latency_seconds_bucket{le=\"0.005\"} 1"));
    assert_true(has_line(t, "bex_commit_latency_seconds_bucket{le=\"0.1\"} 1"));
    assert_true(has_line(t, "bex_commit_latency_seconds_bucket{le=\"0.25\"} 3"));
    assert_true(has_line(t, "bex_commit_latency_seconds_bucket{le=\"10\"} 3"));
    assert_true(has_line(t, "bex_commit_latency_seconds_bucket{le=\"+Inf\"} 4"));
    assert_true(has_line(t, "bex_commit_latency_seconds_sum 30.455"));
    assert_true(has_line(t, "bex_commit_latency_seconds_count 4"));
    free(t);
}

static void metrics_labelled_histogram_puts_le_last(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    static const double b[] = {1, 2};
    static const char *const kinds[] = {"read", "write"};
    struct metrics_desc d = {.type = METRICS_HISTOGRAM, .name = "bex_op_seconds", .help = "h",
                             .label = "kind", .values = kinds, .values_len = 2, .buckets = b,
                             .buckets_len = 2};
    assert_int_equal(metrics_register(m, &f, &d), 0);
    metrics_histogram_observe(f, 1, 1.5);
    char *t = render(m);
    assert_true(has_line(t, "bex_op_seconds_bucket{kind=\"write\",le=\"1\"} 0"));
    assert_true(has_line(t, "bex_op_seconds_bucket{kind=\"write\",le=\"2\"} 1"));
    assert_true(has_line(t, "bex_op_seconds_bucket{kind=\"read\",le=\"+Inf\"} 0"));
    assert_true(has_line(t, "bex_op_seconds_sum{kind=\"write\"} 1.5"));
    assert_true(has_line(t, "bex_op_seconds_count{kind=\"write\"} 1"));
    free(t);
}

static void metrics_gauge_goes_both_ways(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    struct metrics_desc d = {.type = METRICS_GAUGE, .name = "bex_peers", .help = "Peers."};
    assert_int_equal(metrics_register(m, &f, &d), 0);
    metrics_gauge_set(f, 0, 3);
    metrics_gauge_add(f, 0, -1);
    metrics_gauge_add(f, 0, 0.5);
    assert_true(metrics_gauge_value(f, 0) == 2.5);
    char *t = render(m);
    assert_true(has_line(t, "# TYPE bex_peers gauge"));
    assert_true(has_line(t, "bex_peers 2.5"));
    free(t);
    metrics_gauge_set(f, 0, -INFINITY);
    t = render(m);
    assert_true(has_line(t, "bex_peers -Inf"));
    free(t);
}

static void metrics_help_is_escaped(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    static const char *const odd[] = {"a\"b\\c"};
    struct metrics_desc d = {.type = METRICS_COUNTER, .name = "bex_odd_total",
                             .help = "back\\slash", .label = "v", .values = odd, .values_len = 1};
    assert_int_equal(metrics_register(m, &f, &d), 0);
    char *t = render(m);
    assert_true(has_line(t, "# HELP bex_odd_total back\\\\slash"));
    assert_true(has_line(t, "bex_odd_total{v=\"a\\\"b\\\\c\"} 0"));
    free(t);
}

static void metrics_bad_registrations_are_refused(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    static const double down[] = {2, 1};
    static const double nan_b[] = {NAN};
    static const char *const dup[] = {"x", "x"};
    static const char *const empty[] = {""};
    struct metrics_desc d = {.type = METRICS_COUNTER, .name = "blocks_total", .help = "h"};
    assert_int_equal(metrics_register(m, &f, &d), -BEX_EINVAL); /* no bex_ prefix */
    assert_null(f);
    d.name = "bex_bad-name";
    assert_int_equal(metrics_register(m, &f, &d), -BEX_EINVAL);
    d.name = "bex_ok_total";
    d.help = "two\nlines";
    assert_int_equal(metrics_register(m, &f, &d), -BEX_EINVAL);
    d.help = "h";
    d.label = "le";
    d.values = dup;
    d.values_len = 1;
    assert_int_equal(metrics_register(m, &f, &d), -BEX_EINVAL); /* reserved label */
    d.label = "v";
    d.values_len = 2;
    assert_int_equal(metrics_register(m, &f, &d), -BEX_EINVAL); /* duplicate value */
    d.values = empty;
    d.values_len = 1;
    assert_int_equal(metrics_register(m, &f, &d), -BEX_EINVAL); /* empty value */
    struct metrics_desc h = {.type = METRICS_HISTOGRAM, .name = "bex_h", .help = "h",
                             .buckets = down, .buckets_len = 2};
    assert_int_equal(metrics_register(m, &f, &h), -BEX_EINVAL); /* not increasing */
    h.buckets = nan_b;
    h.buckets_len = 1;
    assert_int_equal(metrics_register(m, &f, &h), -BEX_EINVAL);
    h.buckets_len = 0;
    assert_int_equal(metrics_register(m, &f, &h), -BEX_EINVAL); /* no buckets */
    struct metrics_desc ok = {.type = METRICS_COUNTER, .name = "bex_ok_total", .help = "h"};
    assert_int_equal(metrics_register(m, &f, &ok), 0);
    assert_int_equal(metrics_register(m, &f, &ok), -BEX_EEXIST);
}

static void metrics_series_are_bounded(void **state)
{
    struct metrics *m = *state;
    struct metrics_family *f = NULL;
    static char names[METRICS_LABEL_VALUES_MAX][8];
    const char *values[METRICS_LABEL_VALUES_MAX + 1];
    for (size_t i = 0; i < METRICS_LABEL_VALUES_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "v%zu", i);
        values[i] = names[i];
    }
    values[METRICS_LABEL_VALUES_MAX] = "extra";
    struct metrics_desc d = {.type = METRICS_COUNTER, .help = "h", .label = "v",
                             .values = values, .values_len = METRICS_LABEL_VALUES_MAX + 1};
    d.name = "bex_too_many_values_total";
    assert_int_equal(metrics_register(m, &f, &d), -BEX_ELIMIT);
    d.values_len = METRICS_LABEL_VALUES_MAX;
    size_t registered = 0;
    int rc = 0;
    char name[64];
    for (size_t i = 0; rc == 0; i++) {
        snprintf(name, sizeof(name), "bex_series_%zu_total", i);
        d.name = name;
        rc = metrics_register(m, &f, &d);
        if (rc == 0)
            registered++;
    }
    assert_int_equal(rc, -BEX_ELIMIT);
    assert_int_equal(registered, METRICS_SERIES_MAX / METRICS_LABEL_VALUES_MAX);
    /* The refused registration left the registry usable and renderable. */
    char *t = render(m);
    assert_true(has_line(t, "bex_series_0_total{v=\"v63\"} 0"));
    assert_null(strstr(t, "bex_series_16_total"));
    free(t);
}

static void metrics_null_family_updates_are_ignored(void **state)
{
    (void)state;
    metrics_counter_inc(NULL, 0);
    metrics_gauge_set(NULL, 3, 1.0);
    metrics_histogram_observe(NULL, 0, 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(metrics_counter_renders, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_labelled_counter_renders_every_value, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(metrics_histogram_renders_cumulative_buckets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(metrics_labelled_histogram_puts_le_last, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_gauge_goes_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_help_is_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_bad_registrations_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_series_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_null_family_updates_are_ignored, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
