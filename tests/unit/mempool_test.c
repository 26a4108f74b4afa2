/*
 * mempool_test.c: the pending-transaction pool. Committed nonces live in a
 * small state table behind the nonce callback; tx ids are SHA-256 of a
 * (sender, nonce, variant) text so different txs never share an id by
 * accident; tx bytes carry a pattern so a lookup can be checked for content.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bex.h"
#include "mempool.h"

#define NSENDERS 8
#define TX_BYTES_MAX 4096

static const char *names[NSENDERS] = {
    "city.traffic", "health.dept", "tax.office", "police.central",
    "school.board", "water.utility", "city.registry", "port.authority",
};
static uint64_t state_last[NSENDERS];
static int nonce_fail;
static char reason[MEMPOOL_REASON_BYTES];

static int sender_index(const char *name)
{
    for (int i = 0; i < NSENDERS; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    return -1;
}

static int test_last_nonce(uint64_t *last, const char *sender, void *user)
{
    (void)user;
    if (nonce_fail != 0)
        return nonce_fail;
    int i = sender_index(sender);
    *last = i >= 0 ? state_last[i] : 0;
    return 0;
}

static void make_id(uint8_t id[MEMPOOL_ID_BYTES], int s, uint64_t nonce, int variant)
{
    char text[96];
    int n = snprintf(text, sizeof text, "%s/%llu/%d", names[s], (unsigned long long)nonce, variant);
    SHA256((const uint8_t *)text, (size_t)n, id);
}

static void make_bytes(uint8_t *out, size_t len, int s, uint64_t nonce)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(s * 31 + nonce * 7 + i);
}

static int add_at(struct mempool *mp, int s, uint64_t nonce, size_t len, int variant, uint64_t now_ms)
{
    uint8_t id[MEMPOOL_ID_BYTES];
    static uint8_t bytes[TX_BYTES_MAX];
    assert_true(len <= TX_BYTES_MAX);
    make_id(id, s, nonce, variant);
    make_bytes(bytes, len, s, nonce);
    return mempool_add(mp, reason, sizeof reason, id, names[s], nonce, bytes, len, now_ms);
}

static int add(struct mempool *mp, int s, uint64_t nonce, size_t len)
{
    return add_at(mp, s, nonce, len, 0, 0);
}

static const struct mempool_tx *get(const struct mempool *mp, int s, uint64_t nonce, int variant)
{
    uint8_t id[MEMPOOL_ID_BYTES];
    make_id(id, s, nonce, variant);
    return mempool_get(mp, id);
}

static struct mempool_config config(void)
{
    struct mempool_config cfg = {
        .count_max = 100,
        .bytes_max = 100000,
        .sender_count_max = 50,
        .sender_bytes_max = 50000,
        .senders_max = 16,
        .hash_seed = 0x5eed,
        .last_nonce = test_last_nonce,
    };
    return cfg;
}

static struct mempool *pool(const struct mempool_config *cfg)
{
    struct mempool *mp = NULL;
    assert_int_equal(mempool_new(&mp, cfg), 0);
    assert_non_null(mp);
    return mp;
}

static void check(const struct mempool *mp)
{
    char why[256] = "";
    int rc = mempool_check(mp, why, sizeof why);
    if (rc != 0)
        fail_msg("mempool_check: %s", why);
}

/* Asserts that out[0..n) are exactly the (sender, nonce) pairs listed. */
static void expect_batch(const struct mempool_tx **out, size_t n, const int (*want)[2], size_t want_n)
{
    assert_int_equal(n, want_n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(out[i]->sender, names[want[i][0]]);
        assert_int_equal(out[i]->nonce, (uint64_t)want[i][1]);
    }
}

static int reset(void **state)
{
    (void)state;
    memset(state_last, 0, sizeof state_last);
    nonce_fail = 0;
    reason[0] = '\0';
    return 0;
}

/* ---- tests ---- */

static void mempool_add_get_dup(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;
    uint8_t bytes[300];

    state_last[0] = 4;
    assert_int_equal(add_at(mp, 0, 5, 300, 0, 1000), 0);
    const struct mempool_tx *t = get(mp, 0, 5, 0);
    assert_non_null(t);
    assert_string_equal(t->sender, "city.traffic");
    assert_int_equal(t->nonce, 5);
    assert_int_equal(t->len, 300);
    assert_int_equal(t->added_ms, 1000);
    assert_int_equal(t->proposed_height, 0);
    make_bytes(bytes, sizeof bytes, 0, 5);
    assert_memory_equal(t->bytes, bytes, sizeof bytes);
    assert_null(get(mp, 0, 5, 1));
    assert_int_equal(mempool_count(mp), 1);
    assert_int_equal(mempool_bytes(mp), 300);

    /* The same id again is a duplicate and changes nothing. */
    assert_int_equal(add_at(mp, 0, 5, 300, 0, 2000), -BEX_EEXIST);
    assert_string_equal(reason, "tx already pending");
    assert_int_equal(mempool_count(mp), 1);
    assert_int_equal(get(mp, 0, 5, 0)->added_ms, 1000);

    mempool_get_stats(mp, &st);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.rejected_exist, 1);
    check(mp);

    /* Malformed arguments are refused, not asserted. */
    uint8_t id[MEMPOOL_ID_BYTES] = {0};
    assert_int_equal(mempool_add(mp, reason, sizeof reason, id, "", 1, bytes, 1, 0), -BEX_EINVAL);
    assert_int_equal(mempool_add(mp, NULL, 0, id, "x", 1, bytes, 0, 0), -BEX_EINVAL);
    mempool_free(mp);
}

static void mempool_same_sender_nonce_conflicts(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;

    state_last[1] = 2;
    assert_int_equal(add_at(mp, 1, 3, 100, 0, 0), 0);
    assert_int_equal(add_at(mp, 1, 3, 100, 1, 0), -BEX_ENONCE);
    assert_string_equal(reason, "nonce 3 already pending");
    assert_int_equal(add_at(mp, 1, 2, 100, 1, 0), -BEX_ENONCE);
    assert_string_equal(reason, "nonce 2 already used (last 2)");
    /* The sender is unknown to the pool: the callback answers for it. */
    state_last[2] = 9;
    assert_int_equal(add(mp, 2, 9, 100), -BEX_ENONCE);
    assert_string_equal(reason, "nonce 9 already used (last 9)");
    assert_int_equal(mempool_count(mp), 1);
    assert_null(get(mp, 1, 3, 1));
    mempool_get_stats(mp, &st);
    assert_int_equal(st.rejected_nonce, 3);
    check(mp);
    mempool_free(mp);
}

static void mempool_full_by_count(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    cfg.count_max = 4;
    cfg.sender_count_max = 4;
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;

    for (uint64_t n = 1; n <= 4; n++) {
        assert_false(mempool_full(mp, 10));
        assert_int_equal(add(mp, n % 2, n, 10), 0);
    }
    assert_true(mempool_full(mp, 1));
    /* A later nonce of a sender whose next is 1: refused (its next would make room, see below). */
    assert_false(mempool_may_admit(mp, names[0], 10, 10));
    /* A sender with nothing pending is left to mempool_add(), which knows its last nonce. */
    assert_true(mempool_may_admit(mp, names[2], 2, 10));
    assert_int_equal(add(mp, 2, 2, 10), -BEX_EFULL);
    assert_string_equal(reason, "pool full: 4 txs pending");
    /* Nothing was evicted to make room. */
    assert_int_equal(mempool_count(mp), 4);
    for (uint64_t n = 1; n <= 4; n++)
        assert_non_null(get(mp, n % 2, n, 0));
    mempool_get_stats(mp, &st);
    assert_int_equal(st.rejected_full_count, 1);
    check(mp);
    mempool_free(mp);
}

static void mempool_full_by_bytes(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    cfg.bytes_max = 1000;
    cfg.sender_bytes_max = 1000;
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;

    assert_int_equal(add(mp, 0, 1, 600), 0);
    assert_true(mempool_full(mp, 401));
    assert_false(mempool_full(mp, 400));
    assert_int_equal(add(mp, 1, 2, 401), -BEX_EFULL);
    assert_string_equal(reason, "pool full: 600 of 1000 bytes pending");
    assert_int_equal(add(mp, 1, 1, 400), 0);
    assert_int_equal(mempool_bytes(mp), 1000);
    assert_true(mempool_full(mp, 1));
    assert_int_equal(add(mp, 2, 2, 1), -BEX_EFULL);
    mempool_get_stats(mp, &st);
    assert_int_equal(st.rejected_full_bytes, 2);
    check(mp);
    mempool_free(mp);
}

/*
 * A full pool still admits a sender's next tx (nonce last + 1): without it
 * none of the sender's later txs could ever be proposed. Room is made by
 * dropping the highest nonces, of the sender with the most pending (txs in
 * a proposal are kept), or of the same sender when it is at its own cap.
 */
static void mempool_next_tx_makes_room(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    cfg.count_max = 6;
    cfg.sender_count_max = 4;
    struct mempool *mp = pool(&cfg);
    const struct mempool_tx *heads[8], *out[8];
    struct mempool_stats st;

    /* Sender 0 holds nonces 2..5 (its 1 was lost: a gap), sender 1 holds 1..2. */
    assert_false(mempool_crowded(mp, 10));
    for (uint64_t n = 2; n <= 5; n++)
        assert_int_equal(add_at(mp, 0, n, 10, 0, 100), 0);
    /* Not full, but sender 0 is at its share: its later nonces are refused before any check. */
    assert_false(mempool_full(mp, 10));
    assert_true(mempool_crowded(mp, 10));
    assert_false(mempool_may_admit(mp, names[0], 6, 10));
    assert_true(mempool_may_admit(mp, names[1], 3, 10));
    assert_int_equal(add_at(mp, 0, 6, 10, 0, 100), -BEX_EFULL);
    assert_int_equal(add_at(mp, 1, 1, 10, 0, 100), 0);
    assert_int_equal(add_at(mp, 1, 2, 10, 0, 100), 0);
    assert_true(mempool_full(mp, 10));
    assert_int_equal(mempool_select(mp, out, 8, SIZE_MAX, 0), 2); /* only sender 1's; 0 waits for nonce 1 */

    /* Sender 0's next fills the gap: its own nonce 5 goes (at its cap of 4, and the largest sender). */
    assert_true(mempool_may_admit(mp, names[0], 1, 10));
    assert_false(mempool_may_admit(mp, names[0], 6, 10));
    assert_int_equal(add_at(mp, 0, 1, 10, 0, 200), 0);
    assert_non_null(get(mp, 0, 1, 0));
    assert_null(get(mp, 0, 5, 0));
    assert_int_equal(mempool_count(mp), 6);
    assert_int_equal(mempool_select(mp, out, 8, SIZE_MAX, 0), 6);
    check(mp);

    /* A new sender's first tx: the largest sender (0, with 4) loses its highest nonce, 4. */
    assert_int_equal(add_at(mp, 2, 1, 10, 0, 300), 0);
    assert_null(get(mp, 0, 4, 0));
    assert_non_null(get(mp, 0, 3, 0));
    assert_int_equal(mempool_count(mp), 6);

    /* Txs in a proposal are never dropped: with everything marked, the next tx is refused. */
    assert_int_equal(mempool_select(mp, out, 8, SIZE_MAX, 7), 6);
    assert_int_equal(add_at(mp, 3, 1, 10, 0, 400), -BEX_EFULL);
    mempool_get_stats(mp, &st);
    assert_int_equal(st.evicted_room, 2);

    /* The stuck heads: each sender's next tx, in no proposal, pending long enough. */
    mempool_unmark(mp, 1);
    assert_int_equal(mempool_stuck_heads(mp, heads, 8, 1, 1000, 900), 1); /* sender 1's nonce 1, added at 100 */
    assert_string_equal(heads[0]->sender, names[1]);
    assert_int_equal(heads[0]->nonce, 1);
    assert_int_equal(mempool_stuck_heads(mp, heads, 8, 1, 1000, 750), 2); /* and sender 0's, at 200 */
    assert_int_equal(mempool_stuck_heads(mp, heads, 8, 1, 1000, 0), 3);
    assert_int_equal(mempool_stuck_heads(mp, heads, 1, 1, 1000, 0), 1);
    /* With their runs: sender 0 holds 1..3, sender 1 holds 1..2, sender 2 holds 1. */
    assert_int_equal(mempool_stuck_heads(mp, heads, 8, 8, 1000, 750), 5);
    assert_int_equal(mempool_stuck_heads(mp, heads, 8, 2, 1000, 0), 5);
    assert_int_equal(mempool_stuck_heads(mp, heads, 4, 8, 1000, 0), 4);
    assert_int_equal(mempool_select(mp, out, 1, SIZE_MAX, 9), 1);
    assert_int_equal(mempool_stuck_heads(mp, heads, 8, 1, 1000, 0), 2);
    check(mp);
    mempool_free(mp);
}

static void mempool_sender_caps(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    cfg.sender_count_max = 3;
    cfg.sender_bytes_max = 1000;
    cfg.senders_max = 2;
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;

    for (uint64_t n = 1; n <= 3; n++)
        assert_int_equal(add(mp, 0, n, 10), 0);
    assert_int_equal(add(mp, 0, 4, 10), -BEX_EFULL);
    assert_string_equal(reason, "sender city.traffic has 3 txs pending, the most allowed");
    /* Another sender is not held back by the first one's cap. */
    assert_int_equal(add(mp, 1, 1, 900), 0);
    assert_int_equal(add(mp, 1, 2, 101), -BEX_EFULL);
    assert_string_equal(reason, "sender health.dept would exceed 1000 pending bytes");
    assert_int_equal(add(mp, 1, 2, 100), 0);
    /* A third distinct sender is over senders_max. */
    assert_int_equal(add(mp, 2, 1, 10), -BEX_EFULL);
    assert_string_equal(reason, "txs of 2 senders pending, the most allowed");
    mempool_get_stats(mp, &st);
    assert_int_equal(st.rejected_full_sender, 2);
    assert_int_equal(st.rejected_full_senders, 1);
    assert_int_equal(mempool_count(mp), 5);
    check(mp);
    mempool_free(mp);
}

static void mempool_select_follows_nonce_order(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    const struct mempool_tx *out[16];

    state_last[0] = 10;
    assert_int_equal(add(mp, 0, 13, 10), 0);
    assert_int_equal(add(mp, 0, 11, 10), 0);
    assert_int_equal(add(mp, 0, 12, 10), 0);
    check(mp);
    static const int want[][2] = {{0, 11}, {0, 12}, {0, 13}};
    expect_batch(out, mempool_select(mp, out, 16, 100000, 0), want, 3);
    /* Nothing is removed by a selection. */
    assert_int_equal(mempool_count(mp), 3);
    mempool_free(mp);
}

static void mempool_select_stops_at_gaps(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    const struct mempool_tx *out[16];

    /* city.traffic: 1 2 _ 4; health.dept: _ 2 3 (nothing can go). */
    assert_int_equal(add(mp, 0, 1, 10), 0);
    assert_int_equal(add(mp, 0, 2, 10), 0);
    assert_int_equal(add(mp, 0, 4, 10), 0);
    assert_int_equal(add(mp, 1, 2, 10), 0);
    assert_int_equal(add(mp, 1, 3, 10), 0);
    static const int want[][2] = {{0, 1}, {0, 2}};
    expect_batch(out, mempool_select(mp, out, 16, 100000, 0), want, 2);

    /* Filling the gaps makes the whole runs eligible. */
    assert_int_equal(add(mp, 1, 1, 10), 0);
    assert_int_equal(add(mp, 0, 3, 10), 0);
    assert_int_equal(mempool_select(mp, out, 16, 100000, 0), 7);
    check(mp);
    mempool_free(mp);
}

static void mempool_select_respects_limits(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    const struct mempool_tx *out[16];

    /* city.traffic 1:100 2:100, health.dept 1:500 2:10, tax.office 1:10. */
    assert_int_equal(add(mp, 0, 1, 100), 0);
    assert_int_equal(add(mp, 0, 2, 100), 0);
    assert_int_equal(add(mp, 1, 1, 500), 0);
    assert_int_equal(add(mp, 1, 2, 10), 0);
    assert_int_equal(add(mp, 2, 1, 10), 0);

    /* health.dept 1 does not fit 250 bytes, so 2 cannot go either; the others continue. */
    static const int by_bytes[][2] = {{0, 1}, {2, 1}, {0, 2}};
    expect_batch(out, mempool_select(mp, out, 16, 250, 0), by_bytes, 3);

    /* By count; city.traffic was served last, so health.dept leads this time. */
    static const int by_count[][2] = {{1, 1}, {2, 1}};
    expect_batch(out, mempool_select(mp, out, 2, 100000, 0), by_count, 2);
    assert_int_equal(mempool_select(mp, out, 0, 100000, 0), 0);
    assert_int_equal(mempool_select(mp, out, 16, 0, 0), 0);
    assert_int_equal(mempool_select(mp, out, 16, 9, 0), 0);
    mempool_free(mp);
}

static void mempool_select_is_fair(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    const struct mempool_tx *out[16];

    for (uint64_t n = 1; n <= 5; n++) {
        for (int s = 0; s < 3; s++)
            assert_int_equal(add(mp, s, n, 10), 0);
    }
    /* One tx per sender per round, in the order the senders arrived. */
    static const int first[][2] = {{0, 1}, {1, 1}, {2, 1}, {0, 2}, {1, 2}, {2, 2}};
    expect_batch(out, mempool_select(mp, out, 6, 100000, 0), first, 6);
    /* The next batch starts after the last sender served... */
    static const int second[][2] = {{0, 1}, {1, 1}};
    expect_batch(out, mempool_select(mp, out, 2, 100000, 0), second, 2);
    /* ...so a small batch does not always favour the first sender. */
    static const int third[][2] = {{2, 1}, {0, 1}, {1, 1}};
    expect_batch(out, mempool_select(mp, out, 3, 100000, 0), third, 3);

    /* A sender with a short run leaves the rotation; the others fill the batch. */
    assert_int_equal(add(mp, 3, 1, 10), 0);
    static const int fourth[][2] = {{2, 1}, {3, 1}, {0, 1}, {1, 1}, {2, 2}, {0, 2}, {1, 2}, {2, 3}};
    expect_batch(out, mempool_select(mp, out, 8, 100000, 0), fourth, 8);
    mempool_free(mp);
}

static void mempool_select_marks_for_pipelining(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    const struct mempool_tx *out[16];

    for (uint64_t n = 1; n <= 4; n++)
        assert_int_equal(add(mp, 0, n, 10), 0);
    static const int h5[][2] = {{0, 1}, {0, 2}};
    expect_batch(out, mempool_select(mp, out, 2, 100000, 5), h5, 2);
    assert_int_equal(get(mp, 0, 1, 0)->proposed_height, 5);
    /* Height 6 continues after the txs in flight at height 5. */
    static const int h6[][2] = {{0, 3}};
    expect_batch(out, mempool_select(mp, out, 1, 100000, 6), h6, 1);
    static const int h7[][2] = {{0, 4}};
    expect_batch(out, mempool_select(mp, out, 16, 100000, 7), h7, 1);
    assert_int_equal(mempool_select(mp, out, 16, 100000, 8), 0);

    /* A view change dropped heights 6 and up: 3 and 4 may be proposed again. */
    mempool_unmark(mp, 6);
    assert_int_equal(get(mp, 0, 3, 0)->proposed_height, 0);
    assert_int_equal(get(mp, 0, 2, 0)->proposed_height, 5);
    static const int h6again[][2] = {{0, 3}, {0, 4}};
    expect_batch(out, mempool_select(mp, out, 16, 100000, 6), h6again, 2);
    mempool_unmark(mp, 1);
    assert_int_equal(mempool_select(mp, out, 16, 100000, 0), 4);
    check(mp);
    mempool_free(mp);
}

static void mempool_commit_removes_and_evicts_stale(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;
    const struct mempool_tx *out[16];
    struct mempool_done done[4];

    for (uint64_t n = 1; n <= 3; n++)
        assert_int_equal(add(mp, 0, n, 10), 0);
    assert_int_equal(add(mp, 1, 1, 10), 0);
    assert_int_equal(add(mp, 1, 2, 10), 0);
    assert_int_equal(add(mp, 2, 5, 10), 0);

    /* The block: city.traffic 1 and 2 (ours), health.dept 1 from another node. */
    make_id(done[0].id, 0, 1, 0);
    done[0].sender = names[0];
    make_id(done[1].id, 0, 2, 0);
    done[1].sender = names[0];
    make_id(done[2].id, 1, 1, 9);
    done[2].sender = names[1];
    memset(done[3].id, 0xee, MEMPOOL_ID_BYTES);
    done[3].sender = NULL;
    state_last[0] = 2;
    state_last[1] = 1;
    assert_int_equal(mempool_commit(mp, done, 4), 0);

    assert_null(get(mp, 0, 1, 0));
    assert_null(get(mp, 0, 2, 0));
    assert_null(get(mp, 1, 1, 0));
    assert_non_null(get(mp, 0, 3, 0));
    assert_non_null(get(mp, 1, 2, 0));
    assert_non_null(get(mp, 2, 5, 0));
    assert_int_equal(mempool_count(mp), 3);
    assert_int_equal(mempool_bytes(mp), 30);
    mempool_get_stats(mp, &st);
    assert_int_equal(st.committed, 2);
    assert_int_equal(st.evicted_stale, 1);
    check(mp);

    /* The next batch starts at the new last + 1 of each sender. */
    static const int want[][2] = {{0, 3}, {1, 2}};
    expect_batch(out, mempool_select(mp, out, 16, 100000, 0), want, 2);

    /* A used-up sender disappears and comes back at the end of the turn order. */
    make_id(done[0].id, 0, 3, 0);
    state_last[0] = 3;
    assert_int_equal(mempool_commit(mp, done, 1), 0);
    assert_int_equal(add(mp, 0, 4, 10), 0);
    check(mp);

    /* A failing state read is reported, and the block's txs still leave. */
    make_id(done[0].id, 1, 2, 0);
    done[0].sender = names[1];
    nonce_fail = -BEX_EIO;
    assert_int_equal(add(mp, 3, 1, 10), -BEX_EIO);
    assert_int_equal(mempool_commit(mp, done, 1), 0);
    assert_null(get(mp, 1, 2, 0));
    make_id(done[0].id, 0, 4, 7);
    done[0].sender = names[0];
    assert_int_equal(mempool_commit(mp, done, 1), -BEX_EIO);
    nonce_fail = 0;
    assert_non_null(get(mp, 0, 4, 0));
    mempool_get_stats(mp, &st);
    assert_int_equal(st.rejected_state, 1);
    check(mp);
    mempool_free(mp);
}

static void mempool_ttl_eviction(void **state)
{
    (void)state;
    struct mempool_config cfg = config();
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;

    assert_int_equal(mempool_oldest_age_ms(mp, 500), 0);
    assert_int_equal(add_at(mp, 0, 1, 10, 0, 1000), 0);
    assert_int_equal(add_at(mp, 1, 1, 10, 0, 1010), 0);
    assert_int_equal(add_at(mp, 0, 2, 10, 0, 1020), 0);
    assert_int_equal(mempool_oldest_age_ms(mp, 1025), 25);

    /* Age strictly above 10 ms at 1025: the first two go. */
    assert_int_equal(mempool_evict_older_than(mp, 1025, 10), 2);
    assert_null(get(mp, 0, 1, 0));
    assert_null(get(mp, 1, 1, 0));
    assert_non_null(get(mp, 0, 2, 0));
    assert_int_equal(mempool_oldest_age_ms(mp, 1025), 5);
    assert_int_equal(mempool_evict_older_than(mp, 1025, 5), 0);

    /* A clock that steps back does not make ages run backwards. */
    assert_int_equal(add_at(mp, 2, 1, 10, 0, 900), 0);
    assert_int_equal(get(mp, 2, 1, 0)->added_ms, 1020);
    assert_int_equal(mempool_oldest_age_ms(mp, 1000), 0);
    assert_int_equal(mempool_evict_older_than(mp, 2000, 0), 2);
    assert_int_equal(mempool_count(mp), 0);
    mempool_get_stats(mp, &st);
    assert_int_equal(st.evicted_ttl, 4);
    check(mp);
    mempool_free(mp);
}

static void mempool_new_rejects_bad_config(void **state)
{
    (void)state;
    struct mempool *mp = (struct mempool *)&mp;
    struct mempool_config cfg = config();
    cfg.count_max = 0;
    assert_int_equal(mempool_new(&mp, &cfg), -BEX_EINVAL);
    assert_null(mp);
    cfg = config();
    cfg.sender_count_max = cfg.count_max + 1;
    assert_int_equal(mempool_new(&mp, &cfg), -BEX_EINVAL);
    cfg = config();
    cfg.sender_bytes_max = cfg.bytes_max + 1;
    assert_int_equal(mempool_new(&mp, &cfg), -BEX_EINVAL);
    cfg = config();
    cfg.last_nonce = NULL;
    assert_int_equal(mempool_new(&mp, &cfg), -BEX_EINVAL);
    cfg = config();
    cfg.count_max = MEMPOOL_COUNT_LIMIT + 1;
    assert_int_equal(mempool_new(&mp, &cfg), -BEX_EINVAL);
    mempool_free(NULL);
}

/* ---- randomized operations against a model ---- */

struct model_tx {
    uint8_t id[MEMPOOL_ID_BYTES];
    int s;
    uint64_t nonce;
    size_t len;
    uint64_t added_ms;
    uint64_t mark;
};

struct model {
    struct model_tx tx[512];
    size_t n;
};

static uint64_t rng_state;

/* xorshift64*: a small generator whose seed reproduces the whole run. */
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

static struct model_tx *model_find_id(struct model *m, const uint8_t id[MEMPOOL_ID_BYTES])
{
    for (size_t i = 0; i < m->n; i++) {
        if (memcmp(m->tx[i].id, id, MEMPOOL_ID_BYTES) == 0)
            return &m->tx[i];
    }
    return NULL;
}

static struct model_tx *model_find_nonce(struct model *m, int s, uint64_t nonce)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->tx[i].s == s && m->tx[i].nonce == nonce)
            return &m->tx[i];
    }
    return NULL;
}

static void model_remove(struct model *m, size_t i)
{
    /* Keeps arrival order, which the TTL step relies on. */
    memmove(&m->tx[i], &m->tx[i + 1], (m->n - i - 1) * sizeof m->tx[0]);
    m->n--;
}

static void model_sender(const struct model *m, int s, size_t *count, size_t *bytes)
{
    *count = 0;
    *bytes = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->tx[i].s == s) {
            (*count)++;
            *bytes += m->tx[i].len;
        }
    }
}

/* The index of the highest nonce of sender s in the model, or -1. */
static long model_tail(const struct model *m, int s)
{
    long t = -1;

    for (size_t i = 0; i < m->n; i++) {
        if (m->tx[i].s == s && (t < 0 || m->tx[i].nonce > m->tx[t].nonce))
            t = (long)i;
    }
    return t;
}

/* What make_room() in mempool.c drops to admit the next tx of s. */
static void model_make_room(struct model *m, const struct mempool_config *cfg, int s, size_t len)
{
    size_t count, bytes;

    for (;;) {
        long t = model_tail(m, s);

        model_sender(m, s, &count, &bytes);
        if (t < 0 || m->tx[t].mark != 0 || (count < cfg->sender_count_max && len <= cfg->sender_bytes_max - bytes))
            break;
        model_remove(m, (size_t)t);
    }
    for (;;) {
        int best = -1;
        size_t best_count = 0;

        count = 0;
        bytes = 0;
        for (size_t i = 0; i < m->n; i++) {
            count++;
            bytes += m->tx[i].len;
        }
        if (count < cfg->count_max && len <= cfg->bytes_max - bytes)
            break;
        for (int k = 0; k < NSENDERS; k++) {
            long t = model_tail(m, k);
            size_t c, b;

            if (t < 0 || m->tx[t].mark != 0)
                continue;
            model_sender(m, k, &c, &b);
            if (best < 0 || c > best_count || (c == best_count && strcmp(names[k], names[best]) < 0)) {
                best = k;
                best_count = c;
            }
        }
        if (best < 0)
            break;
        model_remove(m, (size_t)model_tail(m, best));
    }
}

/*
 * The code mempool_add must return, following the order its header
 * documents; a sender's next tx first makes room as make_room() does.
 */
static int model_expect_add(struct model *m, const struct mempool_config *cfg, const uint8_t *id, int s,
                            uint64_t nonce, size_t len)
{
    size_t count = 0, bytes = 0, senders = 0, s_count, s_bytes;
    for (size_t i = 0; i < m->n; i++) {
        if (memcmp(m->tx[i].id, id, MEMPOOL_ID_BYTES) == 0)
            return -BEX_EEXIST;
        count++;
        bytes += m->tx[i].len;
    }
    for (int k = 0; k < NSENDERS; k++) {
        model_sender(m, k, &s_count, &s_bytes);
        senders += s_count > 0;
    }
    if (nonce <= state_last[s])
        return -BEX_ENONCE;
    if (model_find_nonce(m, s, nonce) != NULL)
        return -BEX_ENONCE;
    if (nonce == state_last[s] + 1) {
        model_make_room(m, cfg, s, len);
        count = 0;
        bytes = 0;
        senders = 0;
        for (size_t i = 0; i < m->n; i++) {
            count++;
            bytes += m->tx[i].len;
        }
        for (int k = 0; k < NSENDERS; k++) {
            model_sender(m, k, &s_count, &s_bytes);
            senders += s_count > 0;
        }
    }
    model_sender(m, s, &s_count, &s_bytes);
    if (s_count >= cfg->sender_count_max || len > cfg->sender_bytes_max - s_bytes)
        return -BEX_EFULL;
    if (s_count == 0 && senders >= cfg->senders_max)
        return -BEX_EFULL;
    if (count >= cfg->count_max || len > cfg->bytes_max - bytes)
        return -BEX_EFULL;
    return 0;
}

static void step_add(struct mempool *mp, struct model *m, const struct mempool_config *cfg, uint64_t now)
{
    uint8_t id[MEMPOOL_ID_BYTES];
    static uint8_t bytes[TX_BYTES_MAX];
    int s = (int)rnd_below(NSENDERS);
    uint64_t nonce = state_last[s] + rnd_below(12);
    int variant = (int)rnd_below(2);
    size_t len = 1 + rnd_below(300);

    /* Now and then resend a pending tx exactly, as gossip does. */
    if (m->n > 0 && rnd_below(8) == 0) {
        struct model_tx *t = &m->tx[rnd_below(m->n)];
        s = t->s;
        nonce = t->nonce;
        len = t->len;
        memcpy(id, t->id, MEMPOOL_ID_BYTES);
    } else {
        make_id(id, s, nonce, variant);
    }
    make_bytes(bytes, len, s, nonce);
    int want = model_expect_add(m, cfg, id, s, nonce, len);
    int rc = mempool_add(mp, reason, sizeof reason, id, names[s], nonce, bytes, len, now);
    assert_int_equal(rc, want);
    if (rc == 0) {
        assert_true(m->n < BEX_ARRAY_LEN(m->tx));
        struct model_tx *t = &m->tx[m->n++];
        memcpy(t->id, id, MEMPOOL_ID_BYTES);
        t->s = s;
        t->nonce = nonce;
        t->len = len;
        t->added_ms = now;
        t->mark = 0;
    } else {
        assert_true(reason[0] != '\0');
    }
}

/* The first tx of s a new proposal could carry, as the model sees it. */
static struct model_tx *model_candidate(struct model *m, int s)
{
    for (uint64_t n = state_last[s] + 1;; n++) {
        struct model_tx *t = model_find_nonce(m, s, n);
        if (t == NULL || t->mark == 0)
            return t;
    }
}

static void step_select(struct mempool *mp, struct model *m, uint64_t *height)
{
    const struct mempool_tx *out[64];
    size_t count_max = 1 + rnd_below(BEX_ARRAY_LEN(out));
    size_t bytes_max = rnd_below(4) == 0 ? SIZE_MAX : rnd_below(3000);
    uint64_t mark = rnd_below(2) == 0 ? 0 : ++*height;
    struct model_tx *next[NSENDERS];
    size_t total = 0;

    for (int s = 0; s < NSENDERS; s++)
        next[s] = model_candidate(m, s);
    size_t n = mempool_select(mp, out, count_max, bytes_max, mark);
    assert_true(n <= count_max);
    for (size_t i = 0; i < n; i++) {
        struct model_tx *t = model_find_id(m, out[i]->id);
        assert_non_null(t);
        /* Per sender: exactly the next nonce of its run, never a marked tx. */
        assert_ptr_equal(t, next[t->s]);
        assert_int_equal(t->mark, 0);
        total += t->len;
        t->mark = mark;
        struct model_tx *after = model_find_nonce(m, t->s, t->nonce + 1);
        next[t->s] = after != NULL && after->mark == 0 ? after : NULL;
    }
    assert_true(total <= bytes_max);
    /* A short batch left out only what could not follow or did not fit. */
    if (n < count_max) {
        for (int s = 0; s < NSENDERS; s++)
            assert_true(next[s] == NULL || next[s]->len > bytes_max - total);
    }
}

static void step_commit(struct mempool *mp, struct model *m)
{
    struct mempool_done done[64];
    size_t nd = 0;

    for (int s = 0; s < NSENDERS; s++) {
        if (rnd_below(3) != 0)
            continue;
        uint64_t n = state_last[s];
        size_t take = rnd_below(4);
        for (size_t k = 0; k < take; k++) {
            struct model_tx *t = model_find_nonce(m, s, n + 1);
            if (t == NULL)
                break;
            memcpy(done[nd].id, t->id, MEMPOOL_ID_BYTES);
            done[nd++].sender = names[s];
            n++;
        }
        /* Sometimes another node's tx uses the next nonce. */
        if (rnd_below(4) == 0) {
            make_id(done[nd].id, s, n + 1, 99);
            done[nd++].sender = names[s];
            n++;
        }
        state_last[s] = n;
    }
    if (rnd_below(4) == 0) {
        memset(done[nd].id, 0x5a, MEMPOOL_ID_BYTES);
        done[nd++].sender = NULL;
    }
    assert_true(nd <= BEX_ARRAY_LEN(done));
    assert_int_equal(mempool_commit(mp, done, nd), 0);
    for (size_t i = m->n; i-- > 0;) {
        bool committed = false;
        for (size_t k = 0; k < nd; k++)
            committed = committed || memcmp(done[k].id, m->tx[i].id, MEMPOOL_ID_BYTES) == 0;
        if (committed || m->tx[i].nonce <= state_last[m->tx[i].s])
            model_remove(m, i);
    }
}

static void step_evict(struct mempool *mp, struct model *m, uint64_t now)
{
    uint64_t age = 50 + rnd_below(400);
    size_t want = 0;
    for (size_t i = m->n; i-- > 0;) {
        if (now - m->tx[i].added_ms > age) {
            model_remove(m, i);
            want++;
        }
    }
    assert_int_equal(mempool_evict_older_than(mp, now, age), want);
}

static void step_unmark(struct mempool *mp, struct model *m, uint64_t height)
{
    uint64_t from = 1 + rnd_below(height + 1);
    mempool_unmark(mp, from);
    for (size_t i = 0; i < m->n; i++) {
        if (m->tx[i].mark >= from)
            m->tx[i].mark = 0;
    }
}

static void compare(const struct mempool *mp, struct model *m)
{
    size_t bytes = 0;
    check(mp);
    for (size_t i = 0; i < m->n; i++) {
        const struct model_tx *t = &m->tx[i];
        const struct mempool_tx *p = mempool_get(mp, t->id);
        assert_non_null(p);
        assert_string_equal(p->sender, names[t->s]);
        assert_int_equal(p->nonce, t->nonce);
        assert_int_equal(p->len, t->len);
        assert_int_equal(p->added_ms, t->added_ms);
        assert_int_equal(p->proposed_height, t->mark);
        assert_int_equal(p->bytes[t->len - 1], (uint8_t)(t->s * 31 + t->nonce * 7 + t->len - 1));
        bytes += t->len;
    }
    assert_int_equal(mempool_count(mp), m->n);
    assert_int_equal(mempool_bytes(mp), bytes);
}

static void mempool_random_operations_keep_invariants(void **state)
{
    (void)state;
    const char *env = getenv("MEMPOOL_SEED");
    const uint64_t seed = env != NULL ? strtoull(env, NULL, 10) : 20240917;
    struct mempool_config cfg = config();
    cfg.count_max = 40;
    cfg.bytes_max = 5000;
    cfg.sender_count_max = 8;
    cfg.sender_bytes_max = 1500;
    cfg.senders_max = 6;
    struct mempool *mp = pool(&cfg);
    static struct model m;
    struct mempool_stats st;
    uint64_t now = 0;
    uint64_t height = 0;

    memset(&m, 0, sizeof m);
    rng_state = seed;
    /* A failure replays with MEMPOOL_SEED=<seed> build/tests/unit/mempool_test. */
    print_message("mempool random: seed %llu\n", (unsigned long long)seed);
    for (int op = 0; op < 6000; op++) {
        now += rnd_below(4);
        uint64_t r = rnd_below(100);
        if (r < 65)
            step_add(mp, &m, &cfg, now);
        else if (r < 80)
            step_select(mp, &m, &height);
        else if (r < 90)
            step_commit(mp, &m);
        else if (r < 95)
            step_evict(mp, &m, now);
        else
            step_unmark(mp, &m, height);
        compare(mp, &m);
    }
    /* The run must have reached the interesting states, or it proves little. */
    mempool_get_stats(mp, &st);
    assert_true(st.added > 1000);
    assert_true(st.rejected_exist > 0 && st.rejected_nonce > 0);
    assert_true(st.rejected_full_count + st.rejected_full_bytes > 0);
    assert_true(st.rejected_full_sender > 0 && st.rejected_full_senders > 0);
    assert_true(st.committed > 0 && st.evicted_stale > 0 && st.evicted_ttl > 0);
    print_message("mempool random: %llu added, %llu committed, %llu stale, %llu expired, %llu full\n",
                  (unsigned long long)st.added, (unsigned long long)st.committed,
                  (unsigned long long)st.evicted_stale, (unsigned long long)st.evicted_ttl,
                  (unsigned long long)(st.rejected_full_count + st.rejected_full_bytes + st.rejected_full_sender +
                                       st.rejected_full_senders));
    mempool_free(mp);
}

/* ---- measurement ---- */

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The measurement keeps its own state table (user) for senders named agency.N. */
static int bench_nonce(uint64_t *last, const char *sender, void *user)
{
    const uint64_t *table = user;
    *last = table[atoi(sender + strlen("agency."))];
    return 0;
}

/*
 * Not a timed assertion: logs the cost per tx of adding 10,000 txs (100
 * senders x 100 nonces, 200 bytes), then cutting batches of 500 and
 * committing them until the pool is empty.
 */
static void mempool_measure_10k(void **state)
{
    (void)state;
    enum { SENDERS = 100, PER = 100, TOTAL = SENDERS * PER, BATCH = 500 };
    static char bench_names[SENDERS][24];
    static uint8_t ids[SENDERS][PER][MEMPOOL_ID_BYTES];
    static const struct mempool_tx *out[BATCH];
    static struct mempool_done done[BATCH];
    static uint64_t last[SENDERS];
    uint8_t bytes[200];
    struct mempool_config cfg = config();
    cfg.count_max = TOTAL;
    cfg.bytes_max = TOTAL * sizeof bytes;
    cfg.sender_count_max = PER;
    cfg.sender_bytes_max = PER * sizeof bytes;
    cfg.senders_max = SENDERS;
    cfg.last_nonce = bench_nonce;
    cfg.user = last;
    struct mempool *mp = pool(&cfg);
    struct mempool_stats st;
    memset(last, 0, sizeof last);
    memset(bytes, 0x42, sizeof bytes);
    for (int s = 0; s < SENDERS; s++) {
        snprintf(bench_names[s], sizeof bench_names[s], "agency.%d", s);
        for (int n = 0; n < PER; n++) {
            char text[48];
            int len = snprintf(text, sizeof text, "%d/%d", s, n);
            SHA256((const uint8_t *)text, (size_t)len, ids[s][n]);
        }
    }

    double t0 = seconds();
    for (int n = 0; n < PER; n++) {
        for (int s = 0; s < SENDERS; s++)
            assert_int_equal(mempool_add(mp, NULL, 0, ids[s][n], bench_names[s], (uint64_t)n + 1, bytes,
                                         sizeof bytes, (uint64_t)n),
                             0);
    }
    double t1 = seconds();
    double t_select = 0;
    uint64_t height = 0;
    while (mempool_count(mp) > 0) {
        double a = seconds();
        size_t k = mempool_select(mp, out, BATCH, (size_t)1 << 20, ++height);
        t_select += seconds() - a;
        assert_true(k > 0);
        for (size_t i = 0; i < k; i++) {
            int s = atoi(out[i]->sender + strlen("agency."));
            memcpy(done[i].id, out[i]->id, MEMPOOL_ID_BYTES);
            done[i].sender = bench_names[s];
            last[s] = out[i]->nonce;
        }
        assert_int_equal(mempool_commit(mp, done, k), 0);
    }
    double t2 = seconds();
    mempool_get_stats(mp, &st);
    assert_int_equal(st.committed, TOTAL);
    assert_int_equal(st.evicted_stale, 0);
    assert_int_equal(height, TOTAL / BATCH);
    print_message("mempool 10k: add %.0f ns/tx, select %.0f ns/tx, commit %.0f ns/tx, total %.0f ns/tx\n",
                  (t1 - t0) * 1e9 / TOTAL, t_select * 1e9 / TOTAL, (t2 - t1 - t_select) * 1e9 / TOTAL,
                  (t2 - t0) * 1e9 / TOTAL);
    check(mp);
    mempool_free(mp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(mempool_add_get_dup, reset),
        cmocka_unit_test_setup(mempool_same_sender_nonce_conflicts, reset),
        cmocka_unit_test_setup(mempool_full_by_count, reset),
        cmocka_unit_test_setup(mempool_full_by_bytes, reset),
        cmocka_unit_test_setup(mempool_next_tx_makes_room, reset),
        cmocka_unit_test_setup(mempool_sender_caps, reset),
        cmocka_unit_test_setup(mempool_select_follows_nonce_order, reset),
        cmocka_unit_test_setup(mempool_select_stops_at_gaps, reset),
        cmocka_unit_test_setup(mempool_select_respects_limits, reset),
        cmocka_unit_test_setup(mempool_select_is_fair, reset),
        cmocka_unit_test_setup(mempool_select_marks_for_pipelining, reset),
        cmocka_unit_test_setup(mempool_commit_removes_and_evicts_stale, reset),
        cmocka_unit_test_setup(mempool_ttl_eviction, reset),
        cmocka_unit_test_setup(mempool_new_rejects_bad_config, reset),
        cmocka_unit_test_setup(mempool_random_operations_keep_invariants, reset),
        cmocka_unit_test_setup(mempool_measure_10k, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
