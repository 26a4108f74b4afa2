/*
 * metrics.h: the node's Prometheus metrics. A registry holds a bounded number
 * of metric families (counters, gauges, histograms), each with at most one
 * label whose values come from a fixed set given at registration, and renders
 * them in the Prometheus text exposition format (version 0.0.4) for
 * `GET /metrics`.
 *
 * Threads: a registry is not locked. Register, update and render from one
 * thread only, the node's loop thread; a worker that wants to count something
 * hands the update to the loop.
 */
#ifndef BEX_METRICS_H
#define BEX_METRICS_H

#include "bex.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits. A registration that would pass one is refused with BEX_ELIMIT. */
#define METRICS_FAMILIES_MAX 128
#define METRICS_SERIES_MAX 1024       /* a histogram counts buckets + 3 per label value */
#define METRICS_LABEL_VALUES_MAX 64   /* per family */
#define METRICS_BUCKETS_MAX 24        /* finite upper bounds; +Inf is implicit */
#define METRICS_NAME_BYTES_MAX 96     /* metric and label names */
#define METRICS_HELP_BYTES_MAX 256
#define METRICS_VALUE_BYTES_MAX 64    /* one label value */

_Static_assert(METRICS_SERIES_MAX >= METRICS_LABEL_VALUES_MAX * 3, "a histogram must fit");
_Static_assert(METRICS_BUCKETS_MAX >= 11, "the latency buckets must fit");

/* Every metric name starts with this prefix. */
#define METRICS_PREFIX "bex_"

/* Bucket bounds for latencies in seconds, 5 ms .. 10 s (commit, RPC). */
#define METRICS_LATENCY_BUCKETS_LEN 11
extern const double metrics_latency_buckets[METRICS_LATENCY_BUCKETS_LEN];

enum metrics_type {
    METRICS_COUNTER = 1, /* monotonically increasing integer */
    METRICS_GAUGE = 2,   /* value that goes up and down */
    METRICS_HISTOGRAM = 3,
};

/* A registry (opaque). */
struct metrics;

/* One metric family (opaque), owned by its registry, valid until metrics_free(). */
struct metrics_family;

/*
 * What to register. `name` must start with "bex_" and match
 * [a-zA-Z_:][a-zA-Z0-9_:]*; `help` is one line of text. For a labelled family
 * `label` names the label ([a-zA-Z_][a-zA-Z0-9_]*, not "le" and not starting
 * with "__") and `values` lists its `values_len` distinct values, each
 * 1..METRICS_VALUE_BYTES_MAX-1 bytes; every value is rendered, zero or not.
 * `label` NULL means one unlabelled series and `values_len` 0. A histogram
 * gives `buckets_len` finite upper bounds in strictly increasing order.
 * The registry copies every string and array: none need outlive the call.
 */
struct metrics_desc {
    enum metrics_type type;
    const char *name;
    const char *help;
    const char *label;
    const char *const *values;
    size_t values_len;
    const double *buckets;
    size_t buckets_len;
};

/*
 * Lifecycle. metrics_new() returns 0 and an empty registry in *out, or
 * BEX_ENOMEM. metrics_free() releases the registry and all its families and
 * accepts NULL.
 */
BEX_MUST_USE int metrics_new(struct metrics **out);
void metrics_free(struct metrics *m);

/*
 * Registers a family and returns it in *out. Errors: BEX_EINVAL (a name, label,
 * value or bucket list breaks the rules above), BEX_EEXIST (the name is already
 * registered), BEX_ELIMIT (too many families, series, values or buckets),
 * BEX_ENOMEM.
 */
BEX_MUST_USE int metrics_register(struct metrics *m, struct metrics_family **out,
                                  const struct metrics_desc *desc);

/*
 * Updates. `label` is the index of the label value in the registered set (0
 * for an unlabelled family); an index out of range or a call for the wrong
 * type is a programming error and asserts. Every update accepts a NULL family
 * and then does nothing, so a module whose registry is optional need not test.
 * Counters wrap around at 2^64 (they never get there).
 */
void metrics_counter_inc(struct metrics_family *f, size_t label);
void metrics_counter_add(struct metrics_family *f, size_t label, uint64_t n);
void metrics_gauge_set(struct metrics_family *f, size_t label, double v);
void metrics_gauge_add(struct metrics_family *f, size_t label, double delta);
void metrics_histogram_observe(struct metrics_family *f, size_t label, double v);

/*
 * Returns the index of `value` in the family's label values, or -BEX_ENOTFOUND
 * (also for an unlabelled family). A node maps a runtime string such as an
 * error name to an index once, then updates by index.
 */
BEX_MUST_USE int metrics_label_find(const struct metrics_family *f, const char *value);

/* Queries, for the node's status and for tests. */
uint64_t metrics_counter_value(const struct metrics_family *f, size_t label);
double metrics_gauge_value(const struct metrics_family *f, size_t label);
uint64_t metrics_histogram_count(const struct metrics_family *f, size_t label);

/*
 * Renders every family in registration order as Prometheus text: a # HELP and
 * a # TYPE line per family, then one line per series (histograms: cumulative
 * _bucket{le="..."} lines ending with le="+Inf", then _sum and _count). On
 * success *out is a NUL-terminated string of *out_len bytes that the caller
 * releases with free(). Errors: BEX_ENOMEM.
 */
BEX_MUST_USE int metrics_render(const struct metrics *m, char **out, size_t *out_len);

#endif
