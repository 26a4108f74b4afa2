/*
 * metrics.c: a small Prometheus registry. Every series is allocated when its
 * family is registered, so an update is an array store and never fails, and
 * the rendered text has a size known to be bounded by the registry limits.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_latency_buckets[METRICS_LATENCY_BUCKETS_LEN] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/* One series of a histogram: per-bucket (not cumulative) counts, +Inf last. */
struct hist {
    uint64_t counts[METRICS_BUCKETS_MAX + 1];
    uint64_t count;
    double sum;
};

struct metrics_family {
    enum metrics_type type;
    char name[METRICS_NAME_BYTES_MAX];
    char help[METRICS_HELP_BYTES_MAX];
    char label[METRICS_NAME_BYTES_MAX]; /* empty: unlabelled */
    char (*values)[METRICS_VALUE_BYTES_MAX];
    size_t series; /* number of label values, 1 when unlabelled */
    double buckets[METRICS_BUCKETS_MAX];
    size_t buckets_len;
    uint64_t *counters; /* METRICS_COUNTER: series entries */
    double *gauges;     /* METRICS_GAUGE */
    struct hist *hists; /* METRICS_HISTOGRAM */
};

struct metrics {
    struct metrics_family *families[METRICS_FAMILIES_MAX];
    size_t families_len;
    size_t series_used; /* against METRICS_SERIES_MAX */
};

int metrics_new(struct metrics **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -BEX_ENOMEM;
}

static void family_free(struct metrics_family *f)
{
    if (!f)
        return;
    free(f->values);
    free(f->counters);
    free(f->gauges);
    free(f->hists);
    free(f);
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->families_len; i++)
        family_free(m->families[i]);
    free(m);
}

/* Prometheus: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names without ':'. */
static bool name_valid(const char *s, bool colon_ok)
{
    size_t n = strlen(s);
    if (n == 0 || n >= METRICS_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon_ok && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool help_valid(const char *s)
{
    return s && strlen(s) < METRICS_HELP_BYTES_MAX && !strchr(s, '\n');
}

static int desc_check(const struct metrics_desc *d, size_t *series_cost)
{
    if (d->type != METRICS_COUNTER && d->type != METRICS_GAUGE && d->type != METRICS_HISTOGRAM)
        return -BEX_EINVAL;
    if (!d->name || strncmp(d->name, METRICS_PREFIX, strlen(METRICS_PREFIX)) != 0 ||
        !name_valid(d->name, true) || !help_valid(d->help))
        return -BEX_EINVAL;
    size_t values = 1;
    if (d->label) {
        if (!name_valid(d->label, false) || strcmp(d->label, "le") == 0 ||
            strncmp(d->label, "__", 2) == 0 || !d->values || d->values_len == 0)
            return -BEX_EINVAL;
        if (d->values_len > METRICS_LABEL_VALUES_MAX)
            return -BEX_ELIMIT;
        for (size_t i = 0; i < d->values_len; i++) {
            size_t n = d->values[i] ? strlen(d->values[i]) : 0;
            if (n == 0 || n >= METRICS_VALUE_BYTES_MAX)
                return -BEX_EINVAL;
            for (size_t j = 0; j < i; j++)
                if (strcmp(d->values[i], d->values[j]) == 0)
                    return -BEX_EINVAL;
        }
        values = d->values_len;
    } else if (d->values_len != 0) {
        return -BEX_EINVAL;
    }
    size_t per_value = 1;
    if (d->type == METRICS_HISTOGRAM) {
        if (!d->buckets || d->buckets_len == 0)
            return -BEX_EINVAL;
        if (d->buckets_len > METRICS_BUCKETS_MAX)
            return -BEX_ELIMIT;
        for (size_t i = 0; i < d->buckets_len; i++) {
            if (!isfinite(d->buckets[i]))
                return -BEX_EINVAL;
            if (i > 0 && !(d->buckets[i] > d->buckets[i - 1]))
                return -BEX_EINVAL;
        }
        per_value = d->buckets_len + 3; /* buckets, +Inf, _sum, _count */
    } else if (d->buckets_len != 0) {
        return -BEX_EINVAL;
    }
    *series_cost = values * per_value;
    return 0;
}

int metrics_register(struct metrics *m, struct metrics_family **out, const struct metrics_desc *d)
{
    struct metrics_family *f = NULL;
    size_t cost = 0;
    int rc;

    *out = NULL;
    if ((rc = desc_check(d, &cost)) != 0)
        goto fail;
    for (size_t i = 0; i < m->families_len; i++) {
        if (strcmp(m->families[i]->name, d->name) == 0) {
            rc = -BEX_EEXIST;
            goto fail;
        }
    }
    if (m->families_len == METRICS_FAMILIES_MAX || cost > METRICS_SERIES_MAX - m->series_used) {
        rc = -BEX_ELIMIT;
        goto fail;
    }
    rc = -BEX_ENOMEM;
    if (!(f = calloc(1, sizeof(*f))))
        goto fail;
    f->type = d->type;
    snprintf(f->name, sizeof(f->name), "%s", d->name);
    snprintf(f->help, sizeof(f->help), "%s", d->help);
    f->series = 1;
    if (d->label) {
        snprintf(f->label, sizeof(f->label), "%s", d->label);
        f->series = d->values_len;
        if (!(f->values = calloc(d->values_len, sizeof(*f->values))))
            goto fail;
        for (size_t i = 0; i < d->values_len; i++)
            snprintf(f->values[i], sizeof(f->values[i]), "%s", d->values[i]);
    }
    if (d->type == METRICS_COUNTER && !(f->counters = calloc(f->series, sizeof(*f->counters))))
        goto fail;
    if (d->type == METRICS_GAUGE && !(f->gauges = calloc(f->series, sizeof(*f->gauges))))
        goto fail;
    if (d->type == METRICS_HISTOGRAM) {
        if (!(f->hists = calloc(f->series, sizeof(*f->hists))))
            goto fail;
        memcpy(f->buckets, d->buckets, d->buckets_len * sizeof(d->buckets[0]));
        f->buckets_len = d->buckets_len;
    }
    m->families[m->families_len++] = f;
    m->series_used += cost;
    *out = f;
    return 0;
fail:
    family_free(f);
    return rc;
}

static void check_update(const struct metrics_family *f, enum metrics_type type, size_t label)
{
    BEX_ASSERT(f->type == type);
    BEX_ASSERT(label < f->series);
}

void metrics_counter_inc(struct metrics_family *f, size_t label)
{
    metrics_counter_add(f, label, 1);
}

void metrics_counter_add(struct metrics_family *f, size_t label, uint64_t n)
{
    if (!f)
        return;
    check_update(f, METRICS_COUNTER, label);
    f->counters[label] += n;
}

void metrics_gauge_set(struct metrics_family *f, size_t label, double v)
{
    if (!f)
        return;
    check_update(f, METRICS_GAUGE, label);
    f->gauges[label] = v;
}

void metrics_gauge_add(struct metrics_family *f, size_t label, double delta)
{
    if (!f)
        return;
    check_update(f, METRICS_GAUGE, label);
    f->gauges[label] += delta;
}

void metrics_histogram_observe(struct metrics_family *f, size_t label, double v)
{
    if (!f)
        return;
    check_update(f, METRICS_HISTOGRAM, label);
    struct hist *h = &f->hists[label];
    /* A NaN lands in +Inf (no bound compares true) and poisons _sum, as in
     * the reference clients. */
    size_t b = 0;
    while (b < f->buckets_len && !(v <= f->buckets[b]))
        b++;
    h->counts[b]++;
    h->count++;
    h->sum += v;
}

int metrics_label_find(const struct metrics_family *f, const char *value)
{
    if (!f->values || !value)
        return -BEX_ENOTFOUND;
    for (size_t i = 0; i < f->series; i++)
        if (strcmp(f->values[i], value) == 0)
            return (int)i;
    return -BEX_ENOTFOUND;
}

uint64_t metrics_counter_value(const struct metrics_family *f, size_t label)
{
    check_update(f, METRICS_COUNTER, label);
    return f->counters[label];
}

double metrics_gauge_value(const struct metrics_family *f, size_t label)
{
    check_update(f, METRICS_GAUGE, label);
    return f->gauges[label];
}

uint64_t metrics_histogram_count(const struct metrics_family *f, size_t label)
{
    check_update(f, METRICS_HISTOGRAM, label);
    return f->hists[label].count;
}

/* Rendering. The output grows in a heap buffer; its size is bounded by the
 * registry limits (about 300 bytes per series at most). */
struct out {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void out_printf(struct out *o, const char *fmt, ...) BEX_PRINTF(2, 3);

static void out_printf(struct out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        BEX_ASSERT(n >= 0);
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->buf, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->buf = p;
        o->cap = cap;
    }
}

/* Shortest of %.15g..%.17g that reads back as the same double, so bounds such
 * as 0.005 print as written and sums keep full precision. */
static void fmt_double(char *s, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(s, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(s, n, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, n, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            return;
    }
}

/* Label values are ours, but escape them as the format requires anyway. */
static void out_label_value(struct out *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            out_printf(o, "\\%c", *v);
        else if (*v == '\n')
            out_printf(o, "\\n");
        else
            out_printf(o, "%c", *v);
    }
}

/* Writes `name{label="value",le="bound"}` or the unlabelled form. */
static void out_series(struct out *o, const struct metrics_family *f, const char *suffix,
                       size_t i, const char *le)
{
    out_printf(o, "%s%s", f->name, suffix);
    if (!f->label[0] && !le)
        return;
    out_printf(o, "{");
    if (f->label[0]) {
        out_printf(o, "%s=\"", f->label);
        out_label_value(o, f->values[i]);
        out_printf(o, "\"%s", le ? "," : "");
    }
    if (le)
        out_printf(o, "le=\"%s\"", le);
    out_printf(o, "}");
}

static void out_family(struct out *o, const struct metrics_family *f)
{
    static const char *const types[] = {
        [METRICS_COUNTER] = "counter", [METRICS_GAUGE] = "gauge",
        [METRICS_HISTOGRAM] = "histogram",
    };
    char num[40];

    out_printf(o, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            out_printf(o, "\\\\");
        else
            out_printf(o, "%c", *p);
    }
    out_printf(o, "\n# TYPE %s %s\n", f->name, types[f->type]);
    for (size_t i = 0; i < f->series; i++) {
        if (f->type == METRICS_COUNTER) {
            out_series(o, f, "", i, NULL);
            out_printf(o, " %" PRIu64 "\n", f->counters[i]);
        } else if (f->type == METRICS_GAUGE) {
            out_series(o, f, "", i, NULL);
            fmt_double(num, sizeof(num), f->gauges[i]);
            out_printf(o, " %s\n", num);
        } else {
            const struct hist *h = &f->hists[i];
            uint64_t cum = 0;
            for (size_t b = 0; b <= f->buckets_len; b++) {
                cum += h->counts[b];
                if (b < f->buckets_len)
                    fmt_double(num, sizeof(num), f->buckets[b]);
                out_series(o, f, "_bucket", i, b < f->buckets_len ? num : "+Inf");
                out_printf(o, " %" PRIu64 "\n", cum);
            }
            BEX_ASSERT(cum == h->count);
            out_series(o, f, "_sum", i, NULL);
            fmt_double(num, sizeof(num), h->sum);
            out_printf(o, " %s\n", num);
            out_series(o, f, "_count", i, NULL);
            out_printf(o, " %" PRIu64 "\n", h->count);
        }
    }
}

int metrics_render(const struct metrics *m, char **out, size_t *out_len)
{
    struct out o = {.cap = 4096};

    *out = NULL;
    *out_len = 0;
    if (!(o.buf = malloc(o.cap)))
        return -BEX_ENOMEM;
    o.buf[0] = '\0';
    for (size_t i = 0; i < m->families_len; i++)
        out_family(&o, m->families[i]);
    if (o.failed) {
        free(o.buf);
        return -BEX_ENOMEM;
    }
    *out = o.buf;
    *out_len = o.len;
    return 0;
}
