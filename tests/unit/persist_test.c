/*
 * persist_test.c: the vote persister (node/persist.h). Batches become durable
 * in the order they were submitted and all or nothing, operations apply in
 * order, queued batches share one commit, a failed commit stops the writer
 * until persist_retry(), a full queue holds the owner back, and
 * persist_free() drops what is still queued.
 *
 * The wake callback can hold the writer thread inside one wake-up (after a
 * commit or failure, outside the persister's lock): the tests use it to make
 * batches queue up behind a known commit, which makes group commit and a
 * full queue deterministic. Waits poll nothing: they sleep on the wake
 * callback's condition variable up to a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bex.h"
#include "persist.h"
#include "store.h"
#include "store_util.h"

#define WAIT_MS 5000    /* the longest a wait for the writer may take */
#define QUIET_MS 50     /* how long a stopped writer must stay silent */
#define BIG_MAP_BYTES ((size_t)64 << 20)

/* ------------------------------------------------------------- fixture */

/* The wake callback's side: counts wake-ups and can hold the writer in one. */
struct waker {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    uint64_t wakes;
    bool hold; /* the next wake-up holds the writer until release_writer() */
    bool held; /* the writer is being held */
};

struct fx {
    char dir[STORE_UTIL_PATH_BYTES];
    struct store *s;
    struct persist *p;
    struct waker w;
};

static void on_wake(void *ud)
{
    struct waker *w = ud;

    pthread_mutex_lock(&w->mu);
    w->wakes++;
    if (w->hold) {
        w->hold = false;
        w->held = true;
        pthread_cond_broadcast(&w->cv);
        while (w->held)
            pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;

    assert_int_equal(pthread_condattr_init(&a), 0);
    assert_int_equal(pthread_condattr_setclock(&a, CLOCK_MONOTONIC), 0);
    assert_int_equal(pthread_cond_init(cv, &a), 0);
    pthread_condattr_destroy(&a);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    if (f == NULL || store_util_tmpdir(f->dir, sizeof f->dir) != 0)
        return -1;
    pthread_mutex_init(&f->w.mu, NULL);
    cond_init_monotonic(&f->w.cv);
    *state = f;
    return 0;
}

static void release_writer(struct fx *f)
{
    pthread_mutex_lock(&f->w.mu);
    f->w.hold = false;
    f->w.held = false;
    pthread_cond_broadcast(&f->w.cv);
    pthread_mutex_unlock(&f->w.mu);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    /* A failed test may have left the writer held: persist_free() joins it. */
    release_writer(f);
    persist_free(f->p);
    store_close(f->s);
    store_util_rmtree(f->dir);
    pthread_cond_destroy(&f->w.cv);
    pthread_mutex_destroy(&f->w.mu);
    free(f);
    return 0;
}

/* Opens the store (a map of map_bytes, 0 for the default) and starts the persister on it. */
static void fx_start(struct fx *f, size_t map_bytes)
{
    struct store_options opt = {.map_bytes = map_bytes, .no_sync = true};
    char err[256];
    int rc;

    rc = store_open(&f->s, f->dir, &opt, err, sizeof err);
    if (rc != 0)
        fail_msg("store_open: %s (%s)", bex_errname(rc), err);
    assert_int_equal(persist_new(&f->p, f->s, on_wake, &f->w), 0);
    assert_non_null(f->p);
}

static struct timespec deadline_in(long ms)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/*
 * Waits until batch n is durable or the writer reports a failure, at most
 * WAIT_MS; returns the durable number and sets *failed. The writer calls the
 * wake callback after it updated the persister, and the callback takes
 * w.mu, which is held here from the check to the wait: no wake-up is lost.
 */
static uint64_t wait_durable(struct fx *f, uint64_t n, int *failed)
{
    struct timespec end = deadline_in(WAIT_MS);
    uint64_t d;

    pthread_mutex_lock(&f->w.mu);
    for (;;) {
        d = persist_durable(f->p, failed);
        if (d >= n || *failed != 0)
            break;
        if (pthread_cond_timedwait(&f->w.cv, &f->w.mu, &end) == ETIMEDOUT) {
            d = persist_durable(f->p, failed);
            break;
        }
    }
    pthread_mutex_unlock(&f->w.mu);
    return d;
}

/* Waits until the wake callback ran n times in all, at most ms; returns whether it did. */
static bool wait_wakes(struct fx *f, uint64_t n, long ms)
{
    struct timespec end = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&f->w.mu);
    while (f->w.wakes < n && pthread_cond_timedwait(&f->w.cv, &f->w.mu, &end) != ETIMEDOUT)
        ;
    ok = f->w.wakes >= n;
    pthread_mutex_unlock(&f->w.mu);
    return ok;
}

static uint64_t wakes(struct fx *f)
{
    uint64_t n;

    pthread_mutex_lock(&f->w.mu);
    n = f->w.wakes;
    pthread_mutex_unlock(&f->w.mu);
    return n;
}

/*
 * Submits an empty batch that the writer commits alone and then is held
 * in the wake-up that follows, so that every batch submitted until
 * release_writer() waits in the queue. Returns the batch's number.
 */
static uint64_t hold_writer(struct fx *f)
{
    struct timespec end = deadline_in(WAIT_MS);
    uint64_t seq = 0;
    bool held;

    pthread_mutex_lock(&f->w.mu);
    f->w.hold = true;
    pthread_mutex_unlock(&f->w.mu);
    assert_int_equal(persist_submit(f->p, &seq, persist_batch_new()), 0);
    pthread_mutex_lock(&f->w.mu);
    while (!f->w.held && pthread_cond_timedwait(&f->w.cv, &f->w.mu, &end) != ETIMEDOUT)
        ;
    held = f->w.held;
    pthread_mutex_unlock(&f->w.mu);
    if (!held)
        fail_msg("the writer did not commit batch %" PRIu64 " in time", seq);
    return seq;
}

/* ------------------------------------------------------------- batches and the store */

/* The deterministic content of a value. */
static void val_fill(uint8_t *v, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        v[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
}

/* Adds a put of key = val_fill(val_len, seed) to b. */
static void batch_put(struct persist_batch *b, const char *key, size_t val_len, uint32_t seed)
{
    uint8_t *v = malloc(val_len ? val_len : 1);

    assert_non_null(v);
    val_fill(v, val_len, seed);
    assert_int_equal(persist_batch_put(b, (const uint8_t *)key, strlen(key), v, val_len), 0);
    free(v);
}

static void batch_prune(struct persist_batch *b, const char *from, const char *to)
{
    assert_int_equal(persist_batch_prune(b, (const uint8_t *)from, from ? strlen(from) : 0,
                                         (const uint8_t *)to, strlen(to)),
                     0);
}

static void digest_fill(uint8_t d[STORE_HASH_BYTES], uint64_t seq)
{
    for (int i = 0; i < STORE_HASH_BYTES; i++)
        d[i] = (uint8_t)(seq * 29u + (uint64_t)i);
}

static void batch_checkpoint(struct persist_batch *b, uint64_t seq)
{
    uint8_t d[STORE_HASH_BYTES];

    digest_fill(d, seq);
    assert_int_equal(persist_batch_checkpoint(b, seq, d), 0);
}

static uint64_t submit(struct fx *f, struct persist_batch *b)
{
    uint64_t seq = 0;

    assert_int_equal(persist_submit(f->p, &seq, b), 0);
    assert_int_equal(seq, persist_submitted(f->p));
    return seq;
}

/* A copy of the store's votes, in key order. */
struct dump_kv {
    char key[STORE_PBFT_KEY_BYTES_MAX + 1];
    uint8_t *val;
    size_t val_len;
};

struct dump {
    struct dump_kv *kv;
    size_t n, cap;
};

static int dump_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct dump *d = arg;
    struct dump_kv *e;

    if (key_len > STORE_PBFT_KEY_BYTES_MAX)
        return -1;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        struct dump_kv *kv = realloc(d->kv, cap * sizeof *kv);

        if (kv == NULL)
            return -1;
        d->kv = kv;
        d->cap = cap;
    }
    e = &d->kv[d->n];
    memcpy(e->key, key, key_len);
    e->key[key_len] = '\0';
    if ((e->val = malloc(val_len ? val_len : 1)) == NULL)
        return -1;
    memcpy(e->val, val, val_len);
    e->val_len = val_len;
    d->n++;
    return 0;
}

static void dump_free(struct dump *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->kv[i].val);
    free(d->kv);
    *d = (struct dump){0};
}

static void dump_store(struct fx *f, struct dump *d)
{
    *d = (struct dump){0};
    assert_int_equal(store_pbft_iter(f->s, dump_one, d), 0);
}

static const struct dump_kv *dump_find(const struct dump *d, const char *key)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->kv[i].key, key) == 0)
            return &d->kv[i];
    return NULL;
}

/* Whether key is stored with the value val_fill(val_len, seed). */
static bool dump_has(const struct dump *d, const char *key, size_t val_len, uint32_t seed)
{
    const struct dump_kv *e = dump_find(d, key);
    uint8_t *v;
    bool ok;

    if (e == NULL || e->val_len != val_len)
        return false;
    v = malloc(val_len ? val_len : 1);
    assert_non_null(v);
    val_fill(v, val_len, seed);
    ok = memcmp(v, e->val, val_len) == 0;
    free(v);
    return ok;
}

static void assert_checkpoint(struct fx *f, uint64_t want)
{
    struct store_read *r;
    uint8_t d[STORE_HASH_BYTES], want_d[STORE_HASH_BYTES];
    uint64_t seq = 0;

    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_checkpoint(r, &seq, d), 0);
    store_read_end(r);
    digest_fill(want_d, want);
    assert_int_equal(seq, want);
    assert_memory_equal(d, want_d, STORE_HASH_BYTES);
}

/* ------------------------------------------------------------- durability in order */

#define ORDER_BATCHES 32
#define ORDER_PUTS 3
#define ORDER_VAL_BYTES 200

static void order_key(char *key, size_t size, uint64_t batch, int i)
{
    snprintf(key, size, "b%03" PRIu64 ".%d", batch, i);
}

/*
 * Checks that the store holds whole batches 1..k for some k >= durable and
 * nothing else; returns k.
 */
static uint64_t assert_durable_prefix(struct fx *f, uint64_t durable)
{
    struct dump d;
    uint64_t k = 0;
    char key[32];

    dump_store(f, &d);
    for (uint64_t b = 1; b <= ORDER_BATCHES; b++) {
        int present = 0;

        for (int i = 0; i < ORDER_PUTS; i++) {
            order_key(key, sizeof key, b, i);
            present += dump_has(&d, key, ORDER_VAL_BYTES, (uint32_t)(b * 10 + (uint64_t)i));
        }
        if (present != 0 && present != ORDER_PUTS)
            fail_msg("batch %" PRIu64 " is partly stored (%d of %d puts)", b, present, ORDER_PUTS);
        if (present == ORDER_PUTS && k + 1 != b)
            fail_msg("batch %" PRIu64 " is stored but batch %" PRIu64 " is not", b, k + 1);
        if (present == ORDER_PUTS)
            k = b;
    }
    assert_int_equal(d.n, k * ORDER_PUTS);
    assert_true(k >= durable);
    dump_free(&d);
    return k;
}

static void persist_batches_durable_in_order(void **state)
{
    struct fx *f = *state;
    uint64_t last = 0, commits = 0, batches = 0;
    int failed = 0;
    char key[32];

    fx_start(f, 0);
    assert_int_equal(persist_submitted(f->p), 0);
    assert_int_equal(persist_durable(f->p, &failed), 0);
    assert_int_equal(failed, 0);
    for (uint64_t b = 1; b <= ORDER_BATCHES; b++) {
        struct persist_batch *pb = persist_batch_new();

        assert_non_null(pb);
        for (int i = 0; i < ORDER_PUTS; i++) {
            order_key(key, sizeof key, b, i);
            batch_put(pb, key, ORDER_VAL_BYTES, (uint32_t)(b * 10 + (uint64_t)i));
        }
        assert_int_equal(persist_batch_ops(pb), ORDER_PUTS);
        assert_int_equal(submit(f, pb), b);
    }
    /* Every step the durable number takes is backed by whole batches, in order. */
    while (last < ORDER_BATCHES) {
        uint64_t d = wait_durable(f, last + 1, &failed);

        assert_int_equal(failed, 0);
        if (d <= last)
            fail_msg("durable stuck at %" PRIu64 " of %d", d, ORDER_BATCHES);
        assert_true(d <= ORDER_BATCHES);
        assert_durable_prefix(f, d);
        last = d;
    }
    assert_int_equal(assert_durable_prefix(f, ORDER_BATCHES), ORDER_BATCHES);
    assert_int_equal(persist_submitted(f->p), ORDER_BATCHES);
    assert_int_equal(persist_durable(f->p, &failed), ORDER_BATCHES);
    persist_counts(f->p, &commits, &batches);
    assert_int_equal(batches, ORDER_BATCHES);
    assert_in_range(commits, 1, ORDER_BATCHES);
}

/* ------------------------------------------------------------- operations in order */

/*
 * Four batches whose result depends on the order of their operations, within
 * a batch and across batches. With grouped, the writer is held while they
 * queue, so that all four go in one commit; otherwise each is durable before
 * the next is submitted.
 */
static void ops_in_order(struct fx *f, bool grouped)
{
    struct persist_batch *b;
    uint64_t first = 0, commits = 0, batches = 0;
    int failed = 0;
    struct dump d;

    fx_start(f, 0);
    if (grouped)
        first = hold_writer(f);

    b = persist_batch_new();
    batch_put(b, "v1a", 10, 1);
    batch_put(b, "v1b", 10, 2);
    batch_put(b, "w0", 10, 3);
    batch_checkpoint(b, 5);
    assert_int_equal(submit(f, b), first + 1);
    if (!grouped)
        assert_int_equal(wait_durable(f, first + 1, &failed), first + 1);

    /* The prune ends before "v1b": from <= key < to. */
    b = persist_batch_new();
    batch_prune(b, "v1", "v1b");
    batch_put(b, "v2a", 10, 4);
    batch_put(b, "w1", 10, 5);
    batch_prune(b, "w", "x");
    batch_put(b, "w2", 10, 6);
    batch_put(b, "z", 10, 7);
    assert_int_equal(persist_batch_ops(b), 6);
    assert_int_equal(submit(f, b), first + 2);
    if (!grouped)
        assert_int_equal(wait_durable(f, first + 2, &failed), first + 2);

    /* The last checkpoint wins, even a lower one; a later put of a key replaces its value. */
    b = persist_batch_new();
    batch_checkpoint(b, 12);
    batch_checkpoint(b, 7);
    batch_put(b, "z", 20, 8);
    assert_int_equal(submit(f, b), first + 3);
    if (!grouped)
        assert_int_equal(wait_durable(f, first + 3, &failed), first + 3);

    /* An empty from prunes from the first key. */
    b = persist_batch_new();
    batch_prune(b, NULL, "v2");
    assert_int_equal(submit(f, b), first + 4);

    if (grouped)
        release_writer(f);
    assert_int_equal(wait_durable(f, first + 4, &failed), first + 4);
    assert_int_equal(failed, 0);

    dump_store(f, &d);
    assert_int_equal(d.n, 3);
    assert_true(dump_has(&d, "v2a", 10, 4));
    assert_true(dump_has(&d, "w2", 10, 6));
    assert_true(dump_has(&d, "z", 20, 8));
    assert_null(dump_find(&d, "v1a"));
    assert_null(dump_find(&d, "v1b"));
    assert_null(dump_find(&d, "w0"));
    assert_null(dump_find(&d, "w1"));
    dump_free(&d);
    assert_checkpoint(f, 7);

    persist_counts(f->p, &commits, &batches);
    assert_int_equal(batches, first + 4);
    assert_int_equal(commits, grouped ? 2 : 4);
}

static void persist_ops_apply_in_order_across_commits(void **state)
{
    ops_in_order(*state, false);
}

static void persist_ops_apply_in_order_within_group_commit(void **state)
{
    ops_in_order(*state, true);
}

/* ------------------------------------------------------------- group commit */

#define LOAD_BATCHES 200

static void persist_group_commit_under_load(void **state)
{
    struct fx *f = *state;
    uint64_t commits = 0, batches = 0;
    int failed = 0;
    char key[32];
    struct dump d;

    fx_start(f, 0);
    for (uint64_t i = 1; i <= LOAD_BATCHES; i++) {
        struct persist_batch *b = persist_batch_new();

        snprintf(key, sizeof key, "load%03" PRIu64, i);
        batch_put(b, key, 64, (uint32_t)i);
        assert_int_equal(submit(f, b), i);
    }
    assert_int_equal(wait_durable(f, LOAD_BATCHES, &failed), LOAD_BATCHES);
    assert_int_equal(failed, 0);
    persist_counts(f->p, &commits, &batches);
    assert_int_equal(batches, LOAD_BATCHES);
    /* How many commits the batches took depends on the scheduling of the two threads. */
    assert_in_range(commits, 1, LOAD_BATCHES);
    print_message("# %d batches submitted back to back took %" PRIu64 " commits\n", LOAD_BATCHES, commits);
    dump_store(f, &d);
    assert_int_equal(d.n, LOAD_BATCHES);
    for (uint64_t i = 1; i <= LOAD_BATCHES; i++) {
        snprintf(key, sizeof key, "load%03" PRIu64, i);
        assert_true(dump_has(&d, key, 64, (uint32_t)i));
    }
    dump_free(&d);
}

/* Every batch queued while the writer was busy goes in its next commit, in one transaction. */
static void persist_group_commit_takes_all_queued(void **state)
{
    struct fx *f = *state;
    uint64_t commits = 0, batches = 0;
    int failed = 0;
    char key[32];
    struct dump d;

    fx_start(f, 0);
    assert_int_equal(hold_writer(f), 1);
    persist_counts(f->p, &commits, &batches);
    assert_int_equal(commits, 1);
    assert_int_equal(batches, 1);
    for (uint64_t i = 2; i <= LOAD_BATCHES; i++) {
        struct persist_batch *b = persist_batch_new();

        snprintf(key, sizeof key, "g%03" PRIu64, i);
        batch_put(b, key, 32, (uint32_t)i);
        assert_int_equal(submit(f, b), i);
    }
    /* Nothing of them is durable while the writer is held. */
    assert_int_equal(persist_durable(f->p, &failed), 1);
    dump_store(f, &d);
    assert_int_equal(d.n, 0);
    dump_free(&d);

    release_writer(f);
    assert_int_equal(wait_durable(f, LOAD_BATCHES, &failed), LOAD_BATCHES);
    assert_int_equal(failed, 0);
    persist_counts(f->p, &commits, &batches);
    assert_int_equal(commits, 2);
    assert_int_equal(batches, LOAD_BATCHES);
    dump_store(f, &d);
    assert_int_equal(d.n, LOAD_BATCHES - 1);
    dump_free(&d);
}

/* ------------------------------------------------------------- failure and retry */

#define FAIL_VAL_BYTES (4u << 10)
#define FAIL_BATCHES_MAX 64
#define FAIL_AFTER 3 /* batches submitted after the failed one */

static void fail_key(char *key, size_t size, uint64_t seq)
{
    snprintf(key, size, "f%03" PRIu64, seq);
}

static struct persist_batch *fail_batch(uint64_t seq)
{
    struct persist_batch *b = persist_batch_new();
    char key[32];

    assert_non_null(b);
    fail_key(key, sizeof key, seq);
    batch_put(b, key, FAIL_VAL_BYTES, (uint32_t)seq);
    return b;
}

static void persist_failure_stops_writer_until_retry(void **state)
{
    struct fx *f = *state;
    uint64_t bad = 0, last, n, commits = 0, batches = 0;
    int failed = 0;
    char key[32];
    struct dump d;

    fx_start(f, STORE_MAP_BYTES_MIN);
    /* One batch at a time, so that the failed one is known. */
    for (uint64_t seq = 1; seq <= FAIL_BATCHES_MAX && bad == 0; seq++) {
        uint64_t dur;

        assert_int_equal(submit(f, fail_batch(seq)), seq);
        dur = wait_durable(f, seq, &failed);
        if (failed != 0) {
            assert_int_equal(failed, -BEX_EMAPFULL);
            assert_int_equal(dur, seq - 1);
            bad = seq;
        } else {
            assert_int_equal(dur, seq);
        }
    }
    if (bad < 2)
        fail_msg("batches of %u bytes in a map of %zu bytes: failed at batch %" PRIu64
                 " (want one in 2..%d)",
                 FAIL_VAL_BYTES, STORE_MAP_BYTES_MIN, bad, FAIL_BATCHES_MAX);
    print_message("# the minimum map took %" PRIu64 " batches of %u bytes\n", bad - 1, FAIL_VAL_BYTES);

    /* Later batches queue behind the failed one, and the stopped writer does nothing. */
    n = wakes(f);
    for (uint64_t seq = bad + 1; seq <= bad + FAIL_AFTER; seq++)
        assert_int_equal(submit(f, fail_batch(seq)), seq);
    last = bad + FAIL_AFTER;
    assert_false(wait_wakes(f, n + 1, QUIET_MS));
    assert_int_equal(persist_durable(f->p, &failed), bad - 1);
    assert_int_equal(failed, -BEX_EMAPFULL);
    assert_int_equal(persist_submitted(f->p), last);

    /* A retry before the map was grown fails the same way: the map-full state is sticky. */
    persist_retry(f->p);
    assert_true(wait_wakes(f, n + 1, WAIT_MS));
    assert_int_equal(wait_durable(f, last, &failed), bad - 1);
    assert_int_equal(failed, -BEX_EMAPFULL);

    dump_store(f, &d);
    assert_int_equal(d.n, bad - 1);
    for (uint64_t seq = bad; seq <= last; seq++) {
        fail_key(key, sizeof key, seq);
        assert_null(dump_find(&d, key));
    }
    dump_free(&d);

    assert_int_equal(store_resize(f->s, BIG_MAP_BYTES), 0);
    persist_retry(f->p);
    assert_int_equal(wait_durable(f, last, &failed), last);
    assert_int_equal(failed, 0);
    dump_store(f, &d);
    assert_int_equal(d.n, last);
    for (uint64_t seq = 1; seq <= last; seq++) {
        fail_key(key, sizeof key, seq);
        assert_true(dump_has(&d, key, FAIL_VAL_BYTES, (uint32_t)seq));
    }
    dump_free(&d);
    persist_counts(f->p, &commits, &batches);
    assert_int_equal(batches, last);
    /* bad - 1 single commits, then one for the failed batch and those behind it. */
    assert_int_equal(commits, bad);
}

/* ------------------------------------------------------------- a full queue */

/*
 * A thread in the owner's role that submits n batches, the first optionally
 * with a value too large for the minimum map, the others empty; the last
 * submission is expected to block on a full queue.
 */
struct filler {
    struct fx *f;
    uint64_t n;
    size_t first_val_bytes;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    /* Under mu. */
    pid_t tid;
    bool in_last;     /* inside the last persist_submit() */
    bool done;
    int errors;       /* submissions before the last that failed */
    int last_rc;
    uint64_t last_seq;
};

static void *filler_main(void *arg)
{
    struct filler *fl = arg;
    struct persist_batch *b;
    uint64_t seq = 0;
    int rc;

    for (uint64_t i = 1; i < fl->n; i++) {
        b = persist_batch_new();
        if (i == 1 && fl->first_val_bytes > 0) {
            uint8_t *v = calloc(1, fl->first_val_bytes);

            if (v == NULL || persist_batch_put(b, (const uint8_t *)"big", 3, v, fl->first_val_bytes) != 0)
                fl->errors++;
            free(v);
        }
        if (persist_submit(fl->f->p, &seq, b) != 0)
            fl->errors++;
    }
    b = persist_batch_new();
    pthread_mutex_lock(&fl->mu);
    fl->tid = (pid_t)syscall(SYS_gettid);
    fl->in_last = true;
    pthread_cond_broadcast(&fl->cv);
    pthread_mutex_unlock(&fl->mu);
    seq = 0;
    rc = persist_submit(fl->f->p, &seq, b);
    pthread_mutex_lock(&fl->mu);
    fl->last_rc = rc;
    fl->last_seq = seq;
    fl->done = true;
    pthread_cond_broadcast(&fl->cv);
    pthread_mutex_unlock(&fl->mu);
    return NULL;
}

static void filler_join(struct filler *fl)
{
    pthread_join(fl->thread, NULL);
    pthread_cond_destroy(&fl->cv);
    pthread_mutex_destroy(&fl->mu);
}

/* The scheduler state of a thread of this process ('S': sleeping), or 0. */
static char task_state(pid_t tid)
{
    char path[64], buf[512], *rp;
    size_t n;
    FILE *fp;

    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    if ((fp = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* "tid (comm) S ...": the name may hold spaces and parentheses. */
    if ((rp = strrchr(buf, ')')) == NULL || rp[1] != ' ')
        return 0;
    return rp[2];
}

/*
 * Starts the filler and returns once its last submission is asleep: the
 * writer is held and nothing but the persister's condition variable can put
 * it to sleep there.
 */
static void filler_start_and_block(struct filler *fl)
{
    struct timespec end = deadline_in(WAIT_MS);
    pid_t tid;

    pthread_mutex_init(&fl->mu, NULL);
    cond_init_monotonic(&fl->cv);
    assert_int_equal(pthread_create(&fl->thread, NULL, filler_main, fl), 0);
    pthread_mutex_lock(&fl->mu);
    while (!fl->in_last && pthread_cond_timedwait(&fl->cv, &fl->mu, &end) != ETIMEDOUT)
        ;
    tid = fl->tid;
    pthread_mutex_unlock(&fl->mu);
    if (tid == 0) {
        /* An earlier submission blocked: let it through before failing. */
        release_writer(fl->f);
        filler_join(fl);
        fail_msg("the filler blocked before its last submission");
    }
    for (int i = 0; i < WAIT_MS && task_state(tid) != 'S'; i++) {
        struct timespec ms = {0, 1000000L};

        nanosleep(&ms, NULL);
    }
}

/* Waits at most ms for the filler's last submission to return; returns whether it did. */
static bool filler_wait(struct filler *fl, long ms)
{
    struct timespec end = deadline_in(ms);
    bool done;

    pthread_mutex_lock(&fl->mu);
    while (!fl->done && pthread_cond_timedwait(&fl->cv, &fl->mu, &end) != ETIMEDOUT)
        ;
    done = fl->done;
    pthread_mutex_unlock(&fl->mu);
    return done;
}

/* With PERSIST_BATCHES_MAX batches waiting, persist_submit() blocks until the writer made room. */
static void persist_submit_waits_for_room(void **state)
{
    struct fx *f = *state;
    struct filler fl = {.f = f, .n = PERSIST_BATCHES_MAX + 1};
    int failed = 0;
    bool done;

    fx_start(f, 0);
    assert_int_equal(hold_writer(f), 1);
    filler_start_and_block(&fl);
    done = filler_wait(&fl, 0);
    release_writer(f);
    assert_true(filler_wait(&fl, WAIT_MS));
    filler_join(&fl);
    assert_false(done);
    assert_int_equal(fl.errors, 0);
    assert_int_equal(fl.last_rc, 0);
    assert_int_equal(fl.last_seq, PERSIST_BATCHES_MAX + 2);
    assert_int_equal(wait_durable(f, PERSIST_BATCHES_MAX + 2, &failed), PERSIST_BATCHES_MAX + 2);
    assert_int_equal(failed, 0);
    assert_int_equal(persist_submitted(f->p), PERSIST_BATCHES_MAX + 2);
}

/*
 * An owner blocked in persist_submit() on a full queue must be woken by the
 * writer's failure and get its code (persist.h); it is the only thread that
 * may call persist_retry() or persist_free(), so otherwise it would wait
 * forever (in the node: the loop thread hangs and on_durable() never grows
 * the map). This test found that writer() did not broadcast on failure.
 *
 * Here the writer is held while the queue fills behind a batch too large for
 * the map; the last submission blocks; the writer is released and fails.
 * The submission must then return -BEX_EMAPFULL. Should it hang, the test
 * grows the map and retries, which frees room and lets the submission
 * through, and then fails.
 */
static void persist_submit_on_full_queue_returns_failure(void **state)
{
    struct fx *f = *state;
    struct filler fl = {.f = f, .n = PERSIST_BATCHES_MAX + 1, .first_val_bytes = 256u << 10};
    uint64_t queued = 1 + PERSIST_BATCHES_MAX; /* the held batch, then a full queue */
    int failed = 0;
    bool woken;

    fx_start(f, STORE_MAP_BYTES_MIN);
    assert_int_equal(hold_writer(f), 1);
    filler_start_and_block(&fl);
    assert_false(filler_wait(&fl, 0));
    release_writer(f);
    assert_int_equal(wait_durable(f, queued, &failed), 1);
    assert_int_equal(failed, -BEX_EMAPFULL);
    woken = filler_wait(&fl, 1000);

    assert_int_equal(store_resize(f->s, BIG_MAP_BYTES), 0);
    persist_retry(f->p);
    if (!filler_wait(&fl, WAIT_MS))
        fail_msg("persist_submit() is still blocked after the retry");
    filler_join(&fl);
    assert_int_equal(fl.errors, 0);
    if (!woken)
        fail_msg("persist_submit() on a full queue was not woken by the writer's failure "
                 "(it returned %s only after the retry); see node/persist.c writer()",
                 bex_errname(fl.last_rc));
    assert_int_equal(fl.last_rc, -BEX_EMAPFULL);
    assert_int_equal(wait_durable(f, queued, &failed), queued);
    assert_int_equal(failed, 0);
    assert_int_equal(persist_submitted(f->p), queued);
}

/* ------------------------------------------------------------- limits and arguments */

static void persist_batch_limits(void **state)
{
    struct persist_batch *b = persist_batch_new();
    const size_t op = 1 + 4 + 1 + 4; /* an operation's bytes besides its value */
    const size_t val_max = STORE_PBFT_VALUE_BYTES_MAX;
    uint8_t *v = malloc(PERSIST_BATCH_BYTES_MAX + 1);
    size_t used = 0;
    uint32_t ops = 0;
    struct fx *f = *state;
    int failed = 0;
    struct dump d;

    assert_non_null(b);
    assert_non_null(v);
    val_fill(v, PERSIST_BATCH_BYTES_MAX + 1, 9);
    assert_int_equal(persist_batch_ops(b), 0);
    assert_int_equal(persist_batch_ops(NULL), 0);

    /* One value larger than a batch. */
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"x", 1, v, PERSIST_BATCH_BYTES_MAX + 1),
                     -BEX_ELIMIT);
    assert_int_equal(persist_batch_ops(b), 0);

    /* Full-size votes until the next would pass the limit, then fill it to the byte. */
    while (used + op + val_max <= PERSIST_BATCH_BYTES_MAX) {
        char key[2] = {(char)('a' + ops), 0};

        assert_int_equal(persist_batch_put(b, (const uint8_t *)key, 1, v, val_max), 0);
        used += op + val_max;
        assert_int_equal(persist_batch_ops(b), ++ops);
    }
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"y", 1, v, val_max), -BEX_ELIMIT);
    assert_int_equal(persist_batch_ops(b), ops);
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"z", 1, v, PERSIST_BATCH_BYTES_MAX - used - op),
                     0);
    assert_int_equal(persist_batch_ops(b), ++ops);
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"q", 1, NULL, 0), -BEX_ELIMIT);
    assert_int_equal(persist_batch_prune(b, NULL, 0, (const uint8_t *)"q", 1), -BEX_ELIMIT);
    assert_int_equal(persist_batch_checkpoint(b, 1, v), -BEX_ELIMIT);
    assert_int_equal(persist_batch_ops(b), ops);

    /* The full batch is still whole: it commits, every vote with its value. */
    fx_start(f, 0);
    assert_int_equal(submit(f, b), 1);
    assert_int_equal(wait_durable(f, 1, &failed), 1);
    assert_int_equal(failed, 0);
    dump_store(f, &d);
    assert_int_equal(d.n, ops);
    for (uint32_t i = 0; i + 1 < ops; i++) {
        char key[2] = {(char)('a' + i), 0};
        const struct dump_kv *e = dump_find(&d, key);

        assert_non_null(e);
        assert_int_equal(e->val_len, val_max);
        assert_memory_equal(e->val, v, val_max);
    }
    assert_non_null(dump_find(&d, "z"));
    assert_int_equal(dump_find(&d, "z")->val_len, PERSIST_BATCH_BYTES_MAX - used - op);
    dump_free(&d);
    free(v);
}

static void persist_checks_arguments(void **state)
{
    struct fx *f = *state;
    struct persist *p = NULL;
    struct persist_batch *b = persist_batch_new();
    uint8_t digest[STORE_HASH_BYTES] = {0};
    uint64_t seq = 77;
    int failed = 0;

    assert_non_null(b);
    assert_int_equal(persist_batch_put(b, NULL, 0, (const uint8_t *)"v", 1), -BEX_EINVAL);
    assert_int_equal(persist_batch_put(b, NULL, 1, (const uint8_t *)"v", 1), -BEX_EINVAL);
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"k", 0, (const uint8_t *)"v", 1), -BEX_EINVAL);
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"k", 1, NULL, 1), -BEX_EINVAL);
    assert_int_equal(persist_batch_put(NULL, (const uint8_t *)"k", 1, NULL, 0), -BEX_EINVAL);
    assert_int_equal(persist_batch_prune(b, (const uint8_t *)"a", 1, NULL, 0), -BEX_EINVAL);
    assert_int_equal(persist_batch_prune(b, (const uint8_t *)"a", 1, (const uint8_t *)"b", 0), -BEX_EINVAL);
    assert_int_equal(persist_batch_prune(b, NULL, 1, (const uint8_t *)"b", 1), -BEX_EINVAL);
    assert_int_equal(persist_batch_prune(NULL, NULL, 0, (const uint8_t *)"b", 1), -BEX_EINVAL);
    assert_int_equal(persist_batch_checkpoint(b, 1, NULL), -BEX_EINVAL);
    assert_int_equal(persist_batch_checkpoint(NULL, 1, digest), -BEX_EINVAL);
    assert_int_equal(persist_batch_ops(b), 0);

    /* A put with an empty value, a prune from the first key and a checkpoint are fine. */
    assert_int_equal(persist_batch_put(b, (const uint8_t *)"k", 1, NULL, 0), 0);
    assert_int_equal(persist_batch_prune(b, NULL, 0, (const uint8_t *)"a", 1), 0);
    assert_int_equal(persist_batch_checkpoint(b, 1, digest), 0);
    assert_int_equal(persist_batch_ops(b), 3);

    /* persist_submit() takes the batch over also when it refuses it (LeakSanitizer checks). */
    assert_int_equal(persist_submit(NULL, &seq, b), -BEX_EINVAL);
    assert_int_equal(seq, 77);
    assert_int_equal(persist_new(&p, NULL, on_wake, &f->w), -BEX_EINVAL);
    assert_null(p);
    fx_start(f, 0);
    assert_int_equal(persist_new(NULL, f->s, on_wake, &f->w), -BEX_EINVAL);
    assert_int_equal(persist_new(&p, f->s, NULL, &f->w), -BEX_EINVAL);
    assert_null(p);
    assert_int_equal(persist_submit(f->p, NULL, persist_batch_new()), -BEX_EINVAL);
    assert_int_equal(persist_submit(f->p, &seq, NULL), -BEX_EINVAL);
    assert_int_equal(seq, 77);

    /* Refused submissions take no number. */
    assert_int_equal(persist_submitted(f->p), 0);
    assert_int_equal(persist_submitted(NULL), 0);
    assert_int_equal(submit(f, persist_batch_new()), 1);
    assert_int_equal(wait_durable(f, 1, &failed), 1);
    assert_int_equal(failed, 0);

    persist_batch_free(NULL);
    persist_free(NULL);
    persist_batch_free(persist_batch_new());
}

/* ------------------------------------------------------------- shutdown */

/* Batches left behind a failure that was never retried are freed (LeakSanitizer checks). */
static void persist_free_drops_queued_batches(void **state)
{
    struct fx *f = *state;
    struct persist_batch *b;
    uint64_t n;
    int failed = 0;
    struct dump d;

    fx_start(f, STORE_MAP_BYTES_MIN);
    b = persist_batch_new();
    batch_put(b, "small", 100, 1);
    assert_int_equal(submit(f, b), 1);
    assert_int_equal(wait_durable(f, 1, &failed), 1);
    b = persist_batch_new();
    batch_put(b, "huge", STORE_PBFT_VALUE_BYTES_MAX, 2);
    assert_int_equal(submit(f, b), 2);
    assert_int_equal(wait_durable(f, 2, &failed), 1);
    assert_int_equal(failed, -BEX_EMAPFULL);
    n = wakes(f);
    for (uint64_t i = 3; i <= 10; i++) {
        b = persist_batch_new();
        batch_put(b, "after", 1000, (uint32_t)i);
        batch_checkpoint(b, i);
        assert_int_equal(submit(f, b), i);
    }
    persist_free(f->p);
    f->p = NULL;
    /* The writer stopped without another attempt, and nothing queued reached the store. */
    assert_int_equal(wakes(f), n);
    dump_store(f, &d);
    assert_int_equal(d.n, 1);
    assert_true(dump_has(&d, "small", 100, 1));
    dump_free(&d);
}

/*
 * Freeing the persister while batches are queued and the writer is busy
 * joins the writer after its current commit: what reached the store is whole
 * batches 1..k for some k at least the durable number seen last.
 */
static void persist_free_while_writing(void **state)
{
    struct fx *f = *state;
    uint64_t durable;
    int failed = 0;
    char key[32];

    fx_start(f, 0);
    for (uint64_t b = 1; b <= ORDER_BATCHES; b++) {
        struct persist_batch *pb = persist_batch_new();

        for (int i = 0; i < ORDER_PUTS; i++) {
            order_key(key, sizeof key, b, i);
            batch_put(pb, key, ORDER_VAL_BYTES, (uint32_t)(b * 10 + (uint64_t)i));
        }
        assert_int_equal(submit(f, pb), b);
    }
    durable = persist_durable(f->p, &failed);
    assert_int_equal(failed, 0);
    persist_free(f->p);
    f->p = NULL;
    print_message("# freed with %" PRIu64 " of %d batches durable, %" PRIu64 " stored\n", durable,
                  ORDER_BATCHES, assert_durable_prefix(f, durable));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(persist_batches_durable_in_order),
        T(persist_ops_apply_in_order_across_commits),
        T(persist_ops_apply_in_order_within_group_commit),
        T(persist_group_commit_under_load),
        T(persist_group_commit_takes_all_queued),
        T(persist_failure_stops_writer_until_retry),
        T(persist_submit_waits_for_room),
        T(persist_submit_on_full_queue_returns_failure),
        T(persist_batch_limits),
        T(persist_checks_arguments),
        T(persist_free_drops_queued_batches),
        T(persist_free_while_writing),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
