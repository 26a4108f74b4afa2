/*
 * mempool_fuzz.c: sequences of operations on a small pool, checked against
 * a model.
 *
 * The first input byte picks one of a few pool configurations; every
 * following record of four bytes (op, a, b, c) is one operation: add,
 * select, commit, evict by age, advance the clock, unmark, make the nonce
 * callback fail for a sender, or move a sender's committed nonce. A commit
 * reads its done list from further bytes.
 *
 * After every operation mempool_check() must pass, and the pool must agree
 * with a model kept here: which txs are pending with which sender, nonce,
 * bytes, arrival time and mark, the totals, the statistics counters and
 * the oldest age. The model
 * predicts an add's outcome from the documented refusals (any applicable
 * refusal code is accepted, none means it must succeed), and a selection
 * is checked for the documented shape: per sender a run of consecutive
 * unmarked nonces that starts where the committed and marked ones end,
 * within the count and byte budget, and stopping early only when the next
 * candidate of every sender does not fit the bytes left.
 */
#include "fuzz_util.h"
#include "mempool.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 1024

#define SENDERS 5    /* sender names; index SENDERS stands for an invalid (empty) sender */
#define IDS 32       /* distinct tx ids the operations use */
#define DONE_MAX 4   /* txs in one committed block */
#define OUT_MAX 64   /* at least the largest count_max below */
#define ID_TAG 0xa5  /* second byte of a pool tx id */
#define FOREIGN_TAG 0x5a /* second byte of an id never added to the pool */

enum op {
    OP_ADD,
    OP_SELECT,
    OP_COMMIT,
    OP_EVICT,
    OP_TICK,
    OP_UNMARK,
    OP_FAIL,
    OP_STATE,
    OP_COUNT
};

static const char *const names[SENDERS + 1] = {"city.traffic", "health.dept", "state.registry", "a", "b-2", ""};

static const struct mempool_config configs[] = {
    {.count_max = 12, .bytes_max = 1200, .sender_count_max = 5, .sender_bytes_max = 600, .senders_max = 3},
    {.count_max = 1, .bytes_max = 64, .sender_count_max = 1, .sender_bytes_max = 64, .senders_max = 1},
    {.count_max = 32, .bytes_max = 4096, .sender_count_max = 32, .sender_bytes_max = 4096, .senders_max = 5},
    {.count_max = 4, .bytes_max = 4096, .sender_count_max = 4, .sender_bytes_max = 4096, .senders_max = 4},
};

_Static_assert(OUT_MAX >= 32, "a selection fits out");

struct model_tx {
    bool used;
    unsigned sender;
    uint64_t nonce;
    size_t len;
    uint64_t added_ms;
    uint64_t height;
};

/* The pool as it should be, and the committed state the nonce callback reads. */
struct world {
    const struct mempool_config *cfg;
    struct model_tx tx[IDS]; /* indexed by the first id byte */
    size_t count;
    size_t bytes;
    uint64_t cached_last[SENDERS]; /* the pool's copy of a present sender's last nonce */
    uint64_t last_added_ms;
    uint64_t last[SENDERS]; /* committed state */
    bool fail[SENDERS];     /* the nonce callback fails for this sender */
    uint64_t now_ms;
    uint64_t next_height;
    struct mempool_stats stats; /* the counters the pool should report */
};

static unsigned sender_index(const char *name)
{
    for (unsigned i = 0; i < SENDERS; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    fuzz_fail("the pool asked about an unknown sender \"%s\"", name);
}

static int nonce_of(uint64_t *last, const char *sender, void *user)
{
    const struct world *w = user;
    unsigned s = sender_index(sender);

    if (w->fail[s])
        return -BEX_EIO;
    *last = w->last[s];
    return 0;
}

static void make_id(uint8_t id[MEMPOOL_ID_BYTES], unsigned k, uint8_t tag)
{
    memset(id, 0, MEMPOOL_ID_BYTES);
    id[0] = (uint8_t)k;
    id[1] = tag;
}

static uint8_t pattern(unsigned k, size_t i)
{
    return (uint8_t)(k * 31 + i);
}

static size_t sender_count(const struct world *w, unsigned s)
{
    size_t n = 0;
    for (unsigned k = 0; k < IDS; k++)
        n += w->tx[k].used && w->tx[k].sender == s;
    return n;
}

static size_t sender_bytes(const struct world *w, unsigned s)
{
    size_t n = 0;
    for (unsigned k = 0; k < IDS; k++)
        n += w->tx[k].used && w->tx[k].sender == s ? w->tx[k].len : 0;
    return n;
}

static size_t senders_present(const struct world *w)
{
    size_t n = 0;
    for (unsigned s = 0; s < SENDERS; s++)
        n += sender_count(w, s) > 0;
    return n;
}

/* The pending tx of sender s with this nonce, or -1. */
static int find_nonce(const struct world *w, unsigned s, uint64_t nonce)
{
    for (unsigned k = 0; k < IDS; k++) {
        if (w->tx[k].used && w->tx[k].sender == s && w->tx[k].nonce == nonce)
            return (int)k;
    }
    return -1;
}

static void model_remove(struct world *w, unsigned k)
{
    FUZZ_CHECK(w->tx[k].used);
    w->count--;
    w->bytes -= w->tx[k].len;
    memset(&w->tx[k], 0, sizeof(w->tx[k]));
}

/* The pending tx of sender s with the highest nonce, or -1. */
static int model_tail(const struct world *w, unsigned s)
{
    int t = -1;

    for (unsigned k = 0; k < IDS; k++) {
        if (w->tx[k].used && w->tx[k].sender == s && (t < 0 || w->tx[k].nonce > w->tx[t].nonce))
            t = (int)k;
    }
    return t;
}

/* What make_room() in mempool.c drops to admit the next tx of s: highest nonces, never marked ones. */
static void model_make_room(struct world *w, unsigned s, size_t len)
{
    const struct mempool_config *cfg = w->cfg;

    for (;;) {
        int t = model_tail(w, s);

        if (t < 0 || w->tx[t].height != 0 ||
            (sender_count(w, s) < cfg->sender_count_max && len <= cfg->sender_bytes_max - sender_bytes(w, s)))
            break;
        model_remove(w, (unsigned)t);
        w->stats.evicted_room++;
    }
    while (w->count >= cfg->count_max || len > cfg->bytes_max - w->bytes) {
        int best = -1;
        size_t best_count = 0;

        for (unsigned k = 0; k < SENDERS; k++) {
            int t = model_tail(w, k);
            size_t n;

            if (t < 0 || w->tx[t].height != 0)
                continue;
            n = sender_count(w, k);
            if (best < 0 || n > best_count || (n == best_count && strcmp(names[k], names[best]) < 0)) {
                best = (int)k;
                best_count = n;
            }
        }
        if (best < 0)
            break;
        model_remove(w, (unsigned)model_tail(w, (unsigned)best));
        w->stats.evicted_room++;
    }
}

static void op_add(struct world *w, struct mempool *mp, uint8_t a, uint8_t b, uint8_t c)
{
    unsigned s = a % (SENDERS + 1);
    unsigned k = b % IDS;
    unsigned delta = b / IDS;
    size_t len = c & 0x80 ? (size_t)(c & 0x7f) * 8 : (size_t)c;
    uint64_t at = (a & 0x80) != 0 && w->now_ms >= 50 ? w->now_ms - 50 : w->now_ms;
    uint8_t id[MEMPOOL_ID_BYTES], data[127 * 8];
    char reason[MEMPOOL_REASON_BYTES];
    bool valid = s < SENDERS;
    bool present = valid && sender_count(w, s) > 0;
    uint64_t base = !valid ? 0 : present ? w->cached_last[s] : w->last[s];
    uint64_t nonce = base + delta;

    make_id(id, k, ID_TAG);
    for (size_t i = 0; i < len; i++)
        data[i] = pattern(k, i);

    /* Every refusal that applies; the pool may report any one of them. */
    bool einval = len == 0 || !valid;
    bool eexist = w->tx[k].used;
    bool eio = valid && !present && w->fail[s];
    bool enonce = valid && !eio && (nonce <= base || (present && find_nonce(w, s, nonce) >= 0));
    /* The sender's next tx makes room first (mempool_add(): after every check above). */
    if (valid && !einval && !eexist && !eio && !enonce && nonce == base + 1)
        model_make_room(w, s, len);
    bool efull = w->count >= w->cfg->count_max || len > w->cfg->bytes_max - w->bytes;
    if (valid) {
        efull = efull || (sender_count(w, s) > 0 && sender_count(w, s) >= w->cfg->sender_count_max) ||
                len > w->cfg->sender_bytes_max - sender_bytes(w, s) ||
                (sender_count(w, s) == 0 && senders_present(w) >= w->cfg->senders_max);
    }

    int rc = mempool_add(mp, reason, sizeof(reason), id, names[s], nonce, data, len, at);
    if (rc == 0) {
        if (einval || eexist || eio || enonce || efull)
            fuzz_fail("add id %u sender %u nonce %llu len %zu: accepted, expected a refusal (%d%d%d%d%d)", k, s,
                      (unsigned long long)nonce, len, einval, eexist, eio, enonce, efull);
        if (!present)
            w->cached_last[s] = w->last[s];
        if (at > w->last_added_ms)
            w->last_added_ms = at;
        w->tx[k] = (struct model_tx){true, s, nonce, len, w->last_added_ms, 0};
        w->count++;
        w->bytes += len;
        w->stats.added++;
        return;
    }
    bool allowed = (rc == -BEX_EINVAL && einval) || (rc == -BEX_EEXIST && eexist) || (rc == -BEX_EIO && eio) ||
                   (rc == -BEX_ENONCE && enonce) || (rc == -BEX_EFULL && efull);
    if (!allowed)
        fuzz_fail("add id %u sender %u nonce %llu len %zu: %s (%s), expected (%d%d%d%d%d)", k, s,
                  (unsigned long long)nonce, len, bex_errname(rc), reason, einval, eexist, eio, enonce, efull);
    FUZZ_CHECK(reason[0] != '\0');
    w->stats.rejected_invalid += rc == -BEX_EINVAL;
    w->stats.rejected_exist += rc == -BEX_EEXIST;
    w->stats.rejected_nonce += rc == -BEX_ENONCE;
    w->stats.rejected_state += rc == -BEX_EIO;
    w->stats.rejected_full_count += rc == -BEX_EFULL; /* the four kinds of full, summed */
}

/*
 * The txs of sender s a selection may take, in order: past the committed
 * nonces and the marked ones, the run of consecutive unmarked nonces.
 */
static size_t candidate_run(const struct world *w, unsigned s, unsigned run[IDS])
{
    uint64_t expect = w->cached_last[s] + 1;
    size_t n = 0;
    int k;

    while ((k = find_nonce(w, s, expect)) >= 0 && w->tx[k].height != 0)
        expect++;
    while ((k = find_nonce(w, s, expect)) >= 0 && w->tx[k].height == 0) {
        run[n++] = (unsigned)k;
        expect++;
    }
    return n;
}

static void op_select(struct world *w, struct mempool *mp, uint8_t a, uint8_t b, uint8_t c)
{
    const struct mempool_tx *out[OUT_MAX];
    unsigned runs[SENDERS][IDS];
    size_t run_len[SENDERS], taken[SENDERS] = {0};
    size_t count_max = a % 40;
    size_t bytes_max = (size_t)b * 16;
    uint64_t mark = c & 1 ? w->next_height++ : 0;
    size_t bytes = 0;

    FUZZ_CHECK(count_max <= OUT_MAX);
    for (unsigned s = 0; s < SENDERS; s++)
        run_len[s] = sender_count(w, s) > 0 ? candidate_run(w, s, runs[s]) : 0;
    size_t n = mempool_select(mp, out, count_max, bytes_max, mark);
    FUZZ_CHECK(n <= count_max);
    for (size_t i = 0; i < n; i++) {
        unsigned k = out[i]->id[0];
        FUZZ_CHECK(k < IDS && out[i]->id[1] == ID_TAG && w->tx[k].used);
        unsigned s = w->tx[k].sender;
        FUZZ_CHECK(strcmp(out[i]->sender, names[s]) == 0);
        if (taken[s] >= run_len[s] || runs[s][taken[s]] != k)
            fuzz_fail("select returned id %u (sender %u nonce %llu) out of its sender's run", k, s,
                      (unsigned long long)w->tx[k].nonce);
        taken[s]++;
        bytes += out[i]->len;
        FUZZ_CHECK(out[i]->proposed_height == mark);
    }
    FUZZ_CHECK(bytes <= bytes_max);
    if (n < count_max) {
        for (unsigned s = 0; s < SENDERS; s++) {
            if (taken[s] < run_len[s] && w->tx[runs[s][taken[s]]].len <= bytes_max - bytes)
                fuzz_fail("select stopped at %zu of %zu txs while sender %u's next tx (%zu bytes) fits", n,
                          count_max, s, w->tx[runs[s][taken[s]]].len);
        }
    }
    for (size_t i = 0; i < n && mark != 0; i++)
        w->tx[out[i]->id[0]].height = mark;
    w->stats.selected += n;
}

/* Reads a done list from the input at *at and commits it. */
static void op_commit(struct world *w, struct mempool *mp, uint8_t a, const uint8_t *data, size_t size, size_t *at)
{
    struct mempool_done done[DONE_MAX];
    unsigned used[IDS];
    size_t nused = 0, ndone = 0;
    bool named[SENDERS] = {false};
    int expect = 0;

    for (unsigned k = 0; k < IDS; k++) {
        if (w->tx[k].used)
            used[nused++] = k;
    }
    while (ndone < (size_t)(a % (DONE_MAX + 1)) && *at < size) {
        uint8_t e = data[(*at)++];
        struct mempool_done *d = &done[ndone];
        if (e < 0xc0 && nused > 0) {
            /* A pooled tx committed: its nonce is consumed. */
            unsigned k = used[e % nused];
            unsigned s = w->tx[k].sender;
            make_id(d->id, k, ID_TAG);
            d->sender = names[s];
            named[s] = true;
            if (w->tx[k].nonce > w->last[s])
                w->last[s] = w->tx[k].nonce;
        } else if (e < 0xf0) {
            /* A tx this pool never saw, from another node's gossip. */
            unsigned s = e % SENDERS;
            make_id(d->id, (unsigned)ndone, FOREIGN_TAG);
            d->sender = names[s];
            named[s] = true;
            w->last[s]++;
        } else {
            /* A tx that did not decode: no sender. */
            make_id(d->id, (unsigned)ndone, FOREIGN_TAG);
            d->sender = NULL;
        }
        ndone++;
    }

    for (size_t i = 0; i < ndone; i++) {
        if (done[i].id[1] == ID_TAG && w->tx[done[i].id[0]].used) {
            model_remove(w, done[i].id[0]);
            w->stats.committed++;
        }
    }
    for (unsigned s = 0; s < SENDERS; s++) {
        if (!named[s] || sender_count(w, s) == 0)
            continue;
        if (w->fail[s]) {
            expect = -BEX_EIO;
            continue;
        }
        w->cached_last[s] = w->last[s];
        for (unsigned k = 0; k < IDS; k++) {
            if (w->tx[k].used && w->tx[k].sender == s && w->tx[k].nonce <= w->last[s]) {
                model_remove(w, k);
                w->stats.evicted_stale++;
            }
        }
    }
    int rc = mempool_commit(mp, done, ndone);
    if (rc != expect)
        fuzz_fail("commit of %zu txs returned %d, expected %d", ndone, rc, expect);
}

static uint64_t age(const struct world *w, unsigned k)
{
    return w->now_ms > w->tx[k].added_ms ? w->now_ms - w->tx[k].added_ms : 0;
}

static void op_evict(struct world *w, struct mempool *mp, uint8_t a, uint8_t b)
{
    uint64_t age_ms = (uint64_t)a * 4;
    size_t expect = 0;

    w->now_ms += b;
    for (unsigned k = 0; k < IDS; k++) {
        if (w->tx[k].used && age(w, k) > age_ms) {
            model_remove(w, k);
            expect++;
        }
    }
    size_t n = mempool_evict_older_than(mp, w->now_ms, age_ms);
    w->stats.evicted_ttl += expect;
    if (n != expect)
        fuzz_fail("evict older than %llu ms removed %zu txs, expected %zu", (unsigned long long)age_ms, n, expect);
}

/* Everything the pool shows must be what the model holds. */
static void compare(const struct world *w, const struct mempool *mp)
{
    char reason[MEMPOOL_REASON_BYTES];
    uint64_t oldest = 0;

    if (mempool_check(mp, reason, sizeof(reason)) != 0)
        fuzz_fail("mempool_check: %s", reason);
    FUZZ_CHECK(mempool_count(mp) == w->count);
    FUZZ_CHECK(mempool_bytes(mp) == w->bytes);
    for (unsigned k = 0; k < IDS; k++) {
        const struct model_tx *m = &w->tx[k];
        uint8_t id[MEMPOOL_ID_BYTES];
        make_id(id, k, ID_TAG);
        const struct mempool_tx *t = mempool_get(mp, id);
        if (!m->used) {
            if (t != NULL)
                fuzz_fail("id %u is pending but should not be", k);
            continue;
        }
        if (t == NULL)
            fuzz_fail("id %u is missing from the pool", k);
        FUZZ_CHECK(memcmp(t->id, id, sizeof(id)) == 0);
        FUZZ_CHECK(strcmp(t->sender, names[m->sender]) == 0);
        FUZZ_CHECK(t->nonce == m->nonce && t->len == m->len);
        FUZZ_CHECK(t->added_ms == m->added_ms && t->proposed_height == m->height);
        for (size_t i = 0; i < m->len; i++)
            FUZZ_CHECK(t->bytes[i] == pattern(k, i));
        if (age(w, k) > oldest)
            oldest = age(w, k);
    }
    FUZZ_CHECK(mempool_oldest_age_ms(mp, w->now_ms) == oldest);

    struct mempool_stats st;
    const struct mempool_stats *want = &w->stats;
    mempool_get_stats(mp, &st);
    FUZZ_CHECK(st.added == want->added && st.selected == want->selected);
    FUZZ_CHECK(st.committed == want->committed && st.evicted_stale == want->evicted_stale);
    FUZZ_CHECK(st.evicted_ttl == want->evicted_ttl && st.evicted_room == want->evicted_room);
    FUZZ_CHECK(st.rejected_invalid == want->rejected_invalid && st.rejected_exist == want->rejected_exist);
    FUZZ_CHECK(st.rejected_nonce == want->rejected_nonce && st.rejected_state == want->rejected_state);
    FUZZ_CHECK(st.rejected_full_count + st.rejected_full_bytes + st.rejected_full_sender +
                   st.rejected_full_senders == want->rejected_full_count);
    FUZZ_CHECK(st.rejected_nomem == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct mempool_config cfg;
    struct mempool *mp = NULL;
    size_t at = 1;

    if (size < 1 || size > FUZZ_MAX_LEN)
        return 0;
    memset(&w, 0, sizeof(w));
    w.cfg = &configs[data[0] % BEX_ARRAY_LEN(configs)];
    w.next_height = 1;
    w.last[1] = 5;
    cfg = *w.cfg;
    cfg.hash_seed = 0x3c6ef372fe94f82bULL;
    cfg.last_nonce = nonce_of;
    cfg.user = &w;
    FUZZ_CHECK(cfg.count_max <= OUT_MAX);
    if (mempool_new(&mp, &cfg) != 0)
        fuzz_fail("mempool_new refused a valid configuration");

    while (size - at >= 4) {
        uint8_t op = data[at], a = data[at + 1], b = data[at + 2], c = data[at + 3];
        at += 4;
        switch (op % OP_COUNT) {
        case OP_ADD:
            op_add(&w, mp, a, b, c);
            break;
        case OP_SELECT:
            op_select(&w, mp, a, b, c);
            break;
        case OP_COMMIT:
            op_commit(&w, mp, a, data, size, &at);
            break;
        case OP_EVICT:
            op_evict(&w, mp, a, b);
            break;
        case OP_TICK:
            w.now_ms += (uint64_t)a * 16 + b;
            break;
        case OP_UNMARK: {
            uint64_t from = a % (w.next_height + 1);
            mempool_unmark(mp, from);
            for (unsigned k = 0; k < IDS; k++) {
                if (w.tx[k].used && w.tx[k].height >= from)
                    w.tx[k].height = 0;
            }
            break;
        }
        case OP_FAIL:
            w.fail[a % SENDERS] = !w.fail[a % SENDERS];
            break;
        case OP_STATE:
            w.last[a % SENDERS] += b % 4;
            break;
        }
        compare(&w, mp);
    }
    mempool_free(mp);
    return 0;
}
