/*
 * store_crash_test: a child process commits blocks in a loop and the parent
 * kills it with SIGKILL at seeded random moments, then reopens the store and
 * checks that it holds exactly a prefix 1..H of the blocks the child meant to
 * write, with state, history, receipts, meta and votes all agreeing with H.
 * The next child goes on from H + 1.
 *
 * The kill moments come from the seed; the moment the child is at when the
 * signal lands also depends on scheduling, so a replay repeats the schedule,
 * not necessarily the exact crash. The seed is printed at the start and in
 * every failure. Environment: STORE_CRASH_SEED=n replays a seed,
 * STORE_CRASH_KILLS=n sets the number of kill points without sync.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bex.h"
#include "store.h"
#include "store_util.h"

#define KILLS_NO_SYNC 240
#define KILLS_SYNC 40
#define DELAY_NO_SYNC_US 6000
#define DELAY_SYNC_US 40000
#define CHILD_SECONDS_MAX 20
#define RECEIPTS 3
#define LIVE_KEYS 5   /* h/<x> lives for blocks x+1..x+5, then is deleted */
#define MOD_KEYS 16   /* mod/<x % 16> holds the last x with that residue */
#define PRUNE_EVERY 10
#define PRUNE_KEEP 20
#define MAP_BYTES ((size_t)64 << 20)

static uint64_t seed;
static const char *prog = "build/tests/unit/store_crash_test";

/* Where the child is, in memory shared with the parent, to count kill sites. */
enum { AT_OPEN, AT_VOTE, AT_COMMIT, AT_IDLE, AT_COUNT };

struct shared {
    int at;
};

static struct shared *shared;

/* ------------------------------------------------------------- the model */

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Deterministic bytes of length n for (h, tag). */
static void fill(uint8_t *out, size_t n, uint64_t h, uint8_t tag)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(h * 131 + i * 7 + tag);
}

static void txid(uint8_t out[STORE_TXID_BYTES], uint64_t h, uint32_t i)
{
    fill(out, STORE_TXID_BYTES, h, (uint8_t)(i + 1));
    be64(out, h);
    out[8] = (uint8_t)i;
}

static size_t record_len(uint64_t h) { return 16 + h % 300; }
static size_t cert_len(uint64_t h) { return 8 + h % 50; }
static size_t receipt_len(uint64_t h, uint32_t i) { return 10 + (h * 7 + i) % 200; }
static size_t live_len(uint64_t h) { return 20 + (h * 13) % 400; }

static void live_key(char *out, size_t size, uint64_t h)
{
    snprintf(out, size, "h/%012" PRIu64, h);
}

static void mod_key(char *out, size_t size, uint64_t h)
{
    snprintf(out, size, "mod/%02" PRIu64, h % MOD_KEYS);
}

static void vote_key(uint8_t out[9], uint64_t h)
{
    out[0] = 'v';
    be64(out + 1, h);
}

/* Everything block h writes; points into itself, so fill it in place. */
struct model_block {
    struct store_block b;
    uint8_t record[320], cert[64], rbytes[RECEIPTS][220], live[420], counter[8];
    char live_key[24], dead_key[24], mod_key[16];
    struct store_receipt receipts[RECEIPTS];
    struct store_write writes[4];
    struct store_history history[3];
    struct store_meta meta[1];
};

static void model_make(struct model_block *m, uint64_t h)
{
    size_t nw = 0;

    memset(m, 0, sizeof *m);
    m->b.height = h;
    fill(m->record, record_len(h), h, 'B');
    fill(m->cert, cert_len(h), h, 'C');
    m->b.record = m->record;
    m->b.record_len = record_len(h);
    m->b.cert = m->cert;
    m->b.cert_len = cert_len(h);
    fill(m->b.hash, STORE_HASH_BYTES, h, 'H');
    fill(m->b.state_root, STORE_HASH_BYTES, h, 'R');
    for (uint32_t i = 0; i < RECEIPTS; i++) {
        txid(m->receipts[i].tx_id, h, i);
        fill(m->rbytes[i], receipt_len(h, i), h, (uint8_t)('r' + i));
        m->receipts[i].bytes = m->rbytes[i];
        m->receipts[i].len = receipt_len(h, i);
    }
    be64(m->counter, h);
    live_key(m->live_key, sizeof m->live_key, h);
    mod_key(m->mod_key, sizeof m->mod_key, h);
    fill(m->live, live_len(h), h, 'L');
    m->writes[nw++] = (struct store_write){(const uint8_t *)"counter", 7, m->counter, 8, false};
    m->writes[nw++] = (struct store_write){(const uint8_t *)m->live_key, strlen(m->live_key), m->live,
                                           live_len(h), false};
    m->writes[nw++] = (struct store_write){(const uint8_t *)m->mod_key, strlen(m->mod_key), m->counter,
                                           8, false};
    if (h > LIVE_KEYS) {
        live_key(m->dead_key, sizeof m->dead_key, h - LIVE_KEYS);
        m->writes[nw++] = (struct store_write){(const uint8_t *)m->dead_key, strlen(m->dead_key), NULL,
                                               0, true};
    }
    m->history[0] = (struct store_history){(const uint8_t *)"counter", 7, 0, {0}};
    m->history[1] = (struct store_history){(const uint8_t *)m->live_key, strlen(m->live_key), 1, {0}};
    m->history[2] = (struct store_history){(const uint8_t *)m->mod_key, strlen(m->mod_key), 2, {0}};
    for (uint32_t i = 0; i < 3; i++)
        txid(m->history[i].tx_id, h, i);
    m->meta[0] = (struct store_meta){(const uint8_t *)"tick", 4, m->counter, 8};
    m->b.receipts = m->receipts;
    m->b.receipts_len = RECEIPTS;
    m->b.writes = m->writes;
    m->b.writes_len = nw;
    m->b.history = m->history;
    m->b.history_len = 3;
    m->b.meta = m->meta;
    m->b.meta_len = 1;
}

/* ------------------------------------------------------------- the child */

static void at(int where)
{
    __atomic_store_n(&shared->at, where, __ATOMIC_SEQ_CST);
}

/*
 * Persists the vote for h before committing h, as the node does, and prunes
 * old votes now and then. Returns only on an error: the parent kills it.
 */
static int child_main(const char *dir, bool sync)
{
    struct store_options o = {.map_bytes = MAP_BYTES, .no_sync = !sync};
    struct model_block *m = malloc(sizeof *m);
    struct store *s = NULL;
    struct store_read *r;
    uint64_t h;
    time_t start = time(NULL);
    uint8_t vk[9], from[1] = {'v'};
    char vv[32];

    at(AT_OPEN);
    if (m == NULL || store_open(&s, dir, &o, NULL, 0) != 0)
        return 10;
    if (store_read_begin(s, &r) != 0 || store_get_height(r, &h) != 0)
        return 11;
    store_read_end(r);
    for (h++; time(NULL) - start < CHILD_SECONDS_MAX; h++) {
        at(AT_VOTE);
        vote_key(vk, h);
        snprintf(vv, sizeof vv, "vote %" PRIu64, h);
        if (store_pbft_put(s, vk, sizeof vk, (const uint8_t *)vv, strlen(vv)) != 0)
            return 12;
        if (h % PRUNE_EVERY == 0 && h > PRUNE_KEEP) {
            vote_key(vk, h - PRUNE_KEEP);
            if (store_pbft_prune(s, NULL, from, 1, vk, sizeof vk) != 0)
                return 13;
        }
        model_make(m, h);
        at(AT_COMMIT);
        if (store_commit_block(s, &m->b) != 0)
            return 14;
        at(AT_IDLE);
    }
    return 15;
}

/* ------------------------------------------------------------- the check */

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            snprintf(why, why_size, __VA_ARGS__);                                                 \
            return -1;                                                                            \
        }                                                                                         \
    } while (0)

static bool same(const uint8_t *p, size_t n, const uint8_t *want, size_t want_n)
{
    return n == want_n && memcmp(p, want, n) == 0;
}

static int check_blocks(struct store_read *r, uint64_t top, char *why, size_t why_size)
{
    static struct store_block_item items[STORE_SCAN_MAX];
    uint8_t want[320];
    uint64_t next = 1;
    size_t n;
    bool more = true;

    while (more) {
        CHECK(store_scan_blocks(r, items, STORE_SCAN_MAX, &n, &more, next, UINT64_MAX) == 0,
              "scan blocks from %" PRIu64, next);
        for (size_t i = 0; i < n; i++, next++) {
            CHECK(items[i].height == next, "block %" PRIu64 " where %" PRIu64 " was due",
                  items[i].height, next);
            fill(want, record_len(next), next, 'B');
            CHECK(same(items[i].record, items[i].record_len, want, record_len(next)),
                  "record of block %" PRIu64, next);
            fill(want, cert_len(next), next, 'C');
            CHECK(same(items[i].cert, items[i].cert_len, want, cert_len(next)),
                  "cert of block %" PRIu64, next);
        }
    }
    CHECK(next == top + 1, "blocks end at %" PRIu64 ", meta height is %" PRIu64, next - 1, top);
    return 0;
}

static int check_state(struct store_read *r, uint64_t top, char *why, size_t why_size)
{
    struct store_kv kv[LIVE_KEYS + 1];
    uint8_t want[420];
    const uint8_t *p;
    char key[24];
    size_t n;
    bool more;
    int rc;

    rc = store_get_state(r, &p, &n, (const uint8_t *)"counter", 7);
    CHECK(top == 0 ? rc == -BEX_ENOTFOUND : rc == 0 && n == 8 && get_be64(p) == top,
          "counter at height %" PRIu64, top);
    CHECK(store_scan_state(r, kv, LIVE_KEYS + 1, &n, &more, (const uint8_t *)"h/", 2, NULL, 0) == 0,
          "scan h/");
    CHECK(n == (top < LIVE_KEYS ? top : LIVE_KEYS) && !more, "%zu live keys at height %" PRIu64, n, top);
    for (size_t i = 0; i < n; i++) {
        uint64_t x = top - n + 1 + i;
        live_key(key, sizeof key, x);
        fill(want, live_len(x), x, 'L');
        CHECK(same(kv[i].key, kv[i].key_len, (const uint8_t *)key, strlen(key)) &&
                  same(kv[i].val, kv[i].val_len, want, live_len(x)),
              "live key %zu of height %" PRIu64, i, top);
    }
    for (uint64_t k = 0; k < MOD_KEYS; k++) {
        /* The largest x <= top with x % MOD_KEYS == k, if any (x >= 1). */
        uint64_t x = top >= k ? top - (top - k) % MOD_KEYS : 0;
        mod_key(key, sizeof key, k);
        rc = store_get_state(r, &p, &n, (const uint8_t *)key, strlen(key));
        if (x == 0)
            CHECK(rc == -BEX_ENOTFOUND, "%s present at height %" PRIu64, key, top);
        else
            CHECK(rc == 0 && n == 8 && get_be64(p) == x, "%s at height %" PRIu64, key, top);
    }
    return 0;
}

static int check_receipts_history(struct store_read *r, uint64_t top, char *why, size_t why_size)
{
    static struct store_history_item items[STORE_SCAN_MAX];
    struct store_history_pos pos;
    uint8_t id[STORE_TXID_BYTES], want[220];
    const uint8_t *p;
    uint64_t next = top;
    size_t n;
    bool more = true;

    for (uint64_t x = 1; x <= top + 1; x++) {
        for (uint32_t i = 0; i < RECEIPTS; i++) {
            int rc;
            txid(id, x, i);
            rc = store_get_receipt(r, &p, &n, id);
            if (x > top) {
                CHECK(rc == -BEX_ENOTFOUND, "receipt %" PRIu64 ".%u above height", x, i);
                continue;
            }
            fill(want, receipt_len(x, i), x, (uint8_t)('r' + i));
            CHECK(rc == 0 && same(p, n, want, receipt_len(x, i)), "receipt %" PRIu64 ".%u", x, i);
        }
    }
    /* The whole history of "counter", newest first, page by page. */
    for (bool first = true; more; first = false) {
        CHECK(store_scan_history(r, items, STORE_SCAN_MAX, &n, &more, (const uint8_t *)"counter", 7,
                                 first ? NULL : &pos) == 0,
              "scan history");
        for (size_t i = 0; i < n; i++, next--) {
            txid(id, next, 0);
            CHECK(items[i].height == next && items[i].index == 0 &&
                      memcmp(items[i].tx_id, id, STORE_TXID_BYTES) == 0,
                  "history entry %" PRIu64 " of counter", next);
        }
        if (n > 0)
            pos = (struct store_history_pos){items[n - 1].height, items[n - 1].index};
    }
    CHECK(next == 0, "counter history stops at %" PRIu64, next + 1);
    return 0;
}

static int check_meta(struct store_read *r, uint64_t top, char *why, size_t why_size)
{
    uint8_t want[STORE_HASH_BYTES], got[STORE_HASH_BYTES];
    struct store_stats st;
    const uint8_t *p;
    size_t n;
    uint64_t live = top < LIVE_KEYS ? top : LIVE_KEYS, mods = top < MOD_KEYS ? top : MOD_KEYS;

    if (top == 0) {
        CHECK(store_get_root(r, got) == -BEX_ENOTFOUND, "root in an empty store");
    } else {
        fill(want, sizeof want, top, 'R');
        CHECK(store_get_root(r, got) == 0 && memcmp(got, want, sizeof want) == 0, "meta root");
        fill(want, sizeof want, top, 'H');
        CHECK(store_get_hash(r, got) == 0 && memcmp(got, want, sizeof want) == 0, "meta hash");
        CHECK(store_get_meta(r, &p, &n, (const uint8_t *)"tick", 4) == 0 && n == 8 &&
                  get_be64(p) == top,
              "meta tick");
    }
    /* Counts prove nothing beyond what the checks above visited is stored. */
    CHECK(store_get_stats(r, &st) == 0, "stats");
    CHECK(st.blocks == top && st.certs == top, "%" PRIu64 " blocks, %" PRIu64 " certs", st.blocks,
          st.certs);
    CHECK(st.receipts == RECEIPTS * top, "%" PRIu64 " receipts", st.receipts);
    CHECK(st.history == 3 * top, "%" PRIu64 " history entries", st.history);
    CHECK(st.state == (top > 0) + live + mods, "%" PRIu64 " state entries", st.state);
    return 0;
}

struct votes {
    uint64_t lo, hi, n;
    bool gap;
};

static int collect_vote(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct votes *v = arg;
    char want[32];
    uint64_t x;

    if (key_len != 9 || key[0] != 'v')
        return 1;
    x = get_be64(key + 1);
    snprintf(want, sizeof want, "vote %" PRIu64, x);
    if (val_len != strlen(want) || memcmp(val, want, val_len) != 0)
        return 2;
    if (v->n == 0)
        v->lo = x;
    else if (x != v->hi + 1)
        v->gap = true;
    v->hi = x;
    v->n++;
    return 0;
}

/* The vote of h is durable before block h is: votes form a run ending at top or top + 1. */
static int check_votes(struct store *s, uint64_t top, char *why, size_t why_size)
{
    struct votes v = {0};
    uint64_t keep = top > PRUNE_KEEP ? top - PRUNE_KEEP + 1 : 1;

    CHECK(store_pbft_iter(s, collect_vote, &v) == 0, "a malformed vote");
    if (top == 0 && v.n == 0)
        return 0;
    CHECK(v.n > 0 && !v.gap, "votes are not one run");
    CHECK(v.hi == top || v.hi == top + 1, "last vote %" PRIu64 " at height %" PRIu64, v.hi, top);
    CHECK(v.lo <= keep, "votes start at %" PRIu64 " at height %" PRIu64, v.lo, top);
    return 0;
}

/* Opens the store the child left and checks it; sets *top to its height. */
static int check_store(const char *dir, uint64_t *top, char *why, size_t why_size)
{
    struct store_options o = {.map_bytes = MAP_BYTES, .no_sync = true};
    struct store *s = NULL;
    struct store_read *r = NULL;
    char err[256];
    int rc;

    if ((rc = store_open(&s, dir, &o, err, sizeof err)) != 0) {
        snprintf(why, why_size, "reopen: %.200s", err);
        return -1;
    }
    rc = -1;
    if (store_read_begin(s, &r) != 0 || store_get_height(r, top) != 0) {
        snprintf(why, why_size, "read height");
        goto done;
    }
    if (check_blocks(r, *top, why, why_size) != 0 || check_state(r, *top, why, why_size) != 0 ||
        check_receipts_history(r, *top, why, why_size) != 0 ||
        check_meta(r, *top, why, why_size) != 0)
        goto done;
    store_read_end(r);
    r = NULL;
    rc = check_votes(s, *top, why, why_size);
done:
    store_read_end(r);
    store_close(s);
    return rc;
}

#undef CHECK

/* ------------------------------------------------------------- the driver */

struct run {
    const char *name;
    int kills;
    bool sync;
    unsigned delay_us_max;
};

static void run_kills(const struct run *run, uint64_t run_seed)
{
    char root[STORE_UTIL_PATH_BYTES], dir[STORE_UTIL_PATH_BYTES + 8], why[256];
    unsigned sites[AT_COUNT] = {0};
    uint64_t rng = run_seed | 1, top = 0, prev = 0;
    double t0 = store_util_now_us();
    int advanced = 0;

    assert_int_equal(store_util_tmpdir(root, sizeof root), 0);
    snprintf(dir, sizeof dir, "%s/db", root);
    for (int k = 0; k < run->kills; k++) {
        unsigned delay = (unsigned)(rng_next(&rng) % run->delay_us_max);
        int status;
        pid_t pid;

        shared->at = AT_OPEN;
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(child_main(dir, run->sync));
        }
        usleep(delay);
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        sites[__atomic_load_n(&shared->at, __ATOMIC_SEQ_CST)]++;
        /* On failure the store stays in place for a look. */
        if (!WIFSIGNALED(status))
            fail_msg("store_crash %s: child stopped by itself (status %d) at kill point %d; "
                     "store kept in %s; replay: STORE_CRASH_SEED=%" PRIu64 " %s",
                     run->name, WEXITSTATUS(status), k, dir, seed, prog);
        if (check_store(dir, &top, why, sizeof why) != 0)
            fail_msg("store_crash %s: kill point %d (delay %u us, previous height %" PRIu64 "): %s; "
                     "store kept in %s; replay: STORE_CRASH_SEED=%" PRIu64 " %s",
                     run->name, k, delay, prev, why, dir, seed, prog);
        if (top < prev)
            fail_msg("store_crash %s: height went back from %" PRIu64 " to %" PRIu64
                     " at kill point %d; store kept in %s; replay: STORE_CRASH_SEED=%" PRIu64 " %s",
                     run->name, prev, top, k, dir, seed, prog);
        advanced += top > prev;
        prev = top;
    }
    print_message("# store_crash %s: %d kill points (%d advanced the height) in %.2f s, "
                  "final height %" PRIu64 "; killed at open %u, vote %u, commit %u, between %u\n",
                  run->name, run->kills, advanced, (store_util_now_us() - t0) / 1e6, top,
                  sites[AT_OPEN], sites[AT_VOTE], sites[AT_COMMIT], sites[AT_IDLE]);
    assert_true(top > 0);
    store_util_rmtree(root);
}

static int kills_no_sync(void)
{
    const char *e = getenv("STORE_CRASH_KILLS");
    int n = e != NULL ? atoi(e) : 0;
    return n > 0 ? n : KILLS_NO_SYNC;
}

static void store_crash_keeps_consistent_prefix(void **state)
{
    struct run run = {"no-sync", kills_no_sync(), false, DELAY_NO_SYNC_US};

    (void)state;
    run_kills(&run, seed);
}

static void store_crash_keeps_consistent_prefix_with_sync(void **state)
{
    struct run run = {"sync", KILLS_SYNC, true, DELAY_SYNC_US};

    (void)state;
    run_kills(&run, seed ^ 0x9e3779b97f4a7c15ull);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(store_crash_keeps_consistent_prefix),
        cmocka_unit_test(store_crash_keeps_consistent_prefix_with_sync),
    };
    const char *e = getenv("STORE_CRASH_SEED");

    if (argc > 0)
        prog = argv[0];
    seed = e != NULL ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        perror("store_crash: mmap");
        return 1;
    }
    print_message("# store_crash seed %" PRIu64 " (replay: STORE_CRASH_SEED=%" PRIu64 " %s)\n", seed,
                  seed, prog);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
