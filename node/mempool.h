/*
 * mempool.h: the admitted transactions a node holds until they commit.
 *
 * A tx enters with mempool_add() after txcheck_tx() accepted it; the pool
 * copies its encoded bytes. It is found by tx id (a bounded hash table) and
 * kept per sender in nonce order. The primary cuts proposals with
 * mempool_select(), which takes per sender the run of consecutive nonces
 * starting at the committed last nonce + 1, round-robin across senders. A tx
 * leaves when its block commits (mempool_commit()), when its nonce is used by
 * another committed tx of its sender, or when it is older than the node's
 * time to live (mempool_evict_older_than()).
 *
 * Everything is bounded: total count and bytes, count and bytes per sender,
 * and the number of distinct senders with pending txs. A full pool refuses
 * new txs with -BEX_EFULL; it never evicts pending txs to make room.
 *
 * Times are caller-supplied milliseconds of any monotonic clock. A struct
 * mempool is not thread-safe.
 */
#ifndef BEX_MEMPOOL_H
#define BEX_MEMPOOL_H

#include "bex.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMPOOL_ID_BYTES 32
#define MEMPOOL_SENDER_BYTES_MAX 64
/* Hard ceilings on the configuration. */
#define MEMPOOL_COUNT_LIMIT ((size_t)1 << 22)
#define MEMPOOL_SENDERS_LIMIT ((size_t)1 << 20)
/* Room for a reason text and its terminating NUL. */
#define MEMPOOL_REASON_BYTES 160

_Static_assert(MEMPOOL_COUNT_LIMIT < UINT32_MAX, "slot indexes fit a uint32_t");
_Static_assert(MEMPOOL_REASON_BYTES > 2 * MEMPOOL_SENDER_BYTES_MAX, "a reason can quote a sender");

/*
 * Sets *last to the last nonce of sender consumed in committed state (0 when
 * the sender never sent a tx). Returns 0 or a negative code.
 */
typedef int (*mempool_nonce_fn)(uint64_t *last, const char *sender, void *user);

struct mempool_config {
    size_t count_max;         /* txs in the pool, 1..MEMPOOL_COUNT_LIMIT */
    size_t bytes_max;         /* sum of encoded tx sizes, >= 1 */
    size_t sender_count_max;  /* txs of one sender, 1..count_max */
    size_t sender_bytes_max;  /* bytes of one sender, 1..bytes_max */
    size_t senders_max;       /* distinct senders with pending txs, 1..MEMPOOL_SENDERS_LIMIT */
    uint64_t hash_seed;       /* random per process, so buckets cannot be targeted */
    mempool_nonce_fn last_nonce;
    void *user;               /* passed to last_nonce; must outlive the pool */
};

/*
 * A pooled tx as the pool shows it. Borrowed: valid until the next call that
 * removes txs (mempool_commit, mempool_evict_older_than, mempool_free).
 */
struct mempool_tx {
    uint8_t id[MEMPOOL_ID_BYTES];
    const char *sender;
    uint64_t nonce;
    const uint8_t *bytes; /* the encoded Tx */
    size_t len;
    uint64_t added_ms;
    uint64_t proposed_height; /* 0, or the height whose proposal carries it */
};

/* One tx of a committed block, as the executor decoded it. */
struct mempool_done {
    uint8_t id[MEMPOOL_ID_BYTES];
    const char *sender; /* NULL when the tx did not decode */
};

/* Counters since mempool_new(). */
struct mempool_stats {
    uint64_t added;
    uint64_t rejected_invalid;      /* -BEX_EINVAL: malformed arguments */
    uint64_t rejected_exist;        /* duplicate tx id (gossip duplicates) */
    uint64_t rejected_nonce;        /* nonce used or already pending */
    uint64_t rejected_full_count;   /* pool at count_max */
    uint64_t rejected_full_bytes;   /* pool at bytes_max */
    uint64_t rejected_full_sender;  /* sender at its count or bytes cap */
    uint64_t rejected_full_senders; /* senders_max distinct senders pending */
    uint64_t rejected_state;        /* the nonce callback failed */
    uint64_t rejected_nomem;
    uint64_t committed;             /* removed because their block committed */
    uint64_t evicted_stale;         /* nonce used by another committed tx */
    uint64_t evicted_ttl;
    uint64_t selected;              /* txs returned by mempool_select */
    uint64_t evicted_room;          /* highest nonces dropped to admit a sender's next tx (mempool_add) */
};

struct mempool;

/* ---- lifecycle ---- */

/*
 * Creates an empty pool; all memory but the tx bytes is allocated here.
 * Returns 0, -BEX_EINVAL for a configuration outside the limits above, or
 * -BEX_ENOMEM.
 */
BEX_MUST_USE int mempool_new(struct mempool **out, const struct mempool_config *cfg);

/* Frees the pool and every tx in it; NULL is accepted. */
void mempool_free(struct mempool *mp);

/* ---- operations ---- */

/*
 * Adds a tx that txcheck_tx() accepted: its id, sender and nonce, and its
 * encoded bytes tx[0..tx_len), which are copied. now_ms is its arrival time;
 * an earlier time than the last arrival is taken as that arrival, so ages
 * never run backwards. On failure a short text is written to reason (which
 * may be NULL) and nothing changes. Returns 0, or
 *   -BEX_EEXIST  the id is already pending (a duplicate: do not re-gossip);
 *   -BEX_ENONCE  nonce <= the sender's committed last, or another tx of the
 *                sender with this nonce is pending;
 *   -BEX_EFULL   the pool, the sender or the sender table is at capacity;
 *   -BEX_EINVAL  empty tx or a sender that is empty or too long;
 *   -BEX_ENOMEM, or a code from the nonce callback.
 */
BEX_MUST_USE int mempool_add(struct mempool *mp, char *reason, size_t reason_len, const uint8_t id[MEMPOOL_ID_BYTES],
                             const char *sender, uint64_t nonce, const uint8_t *tx, size_t tx_len, uint64_t now_ms);

/*
 * Cuts a batch for a block proposal into out (room for count_max entries)
 * and returns how many it wrote, at most count_max and at most bytes_max
 * bytes of encoded txs (the caller leaves room for the proposal's own
 * framing). Per sender the batch holds consecutive nonces from the committed
 * last + 1, stopping at the first gap or at the first tx that does not fit;
 * senders take turns one tx at a time, in the order they first arrived, and
 * the next call starts with the sender after the last one served, so no
 * sender starves. Nothing is removed.
 *
 * Pipelining: when mark_height is not 0, the txs returned are marked as
 * carried by the proposal at that height; later calls count marked txs as
 * present for the nonce sequence but do not return them again. 0 marks
 * nothing, so the call has no effect on later selections but the turn order.
 */
size_t mempool_select(struct mempool *mp, const struct mempool_tx **out, size_t count_max, size_t bytes_max,
                      uint64_t mark_height);

/*
 * Clears the marks of every tx marked at height >= from_height, so those txs
 * can be proposed again (after a view change dropped those proposals).
 */
void mempool_unmark(struct mempool *mp, uint64_t from_height);

/*
 * Marks the pending tx id (if any) as carried by a proposal at height, as
 * mempool_select() does for its own batches: a backup marks the txs of the
 * proposals it accepts, so that, should it become primary, it does not
 * propose again what a block in flight already carries. A lower mark wins.
 */
void mempool_mark(struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES], uint64_t height);

/*
 * Clears the marks at heights <= height. Called after block `height` is
 * applied: its txs are gone from the pool, so a tx still marked at or below
 * it was in a proposal that did not commit (replaced by a view change) and
 * may be proposed again.
 */
void mempool_unmark_below(struct mempool *mp, uint64_t height);

/*
 * Whether some sender's next tx (nonce = committed last + 1) is pending:
 * there is work a primary could propose. A tx behind a nonce gap is not.
 */
bool mempool_ready(const struct mempool *mp);

/*
 * Applies a committed block, called after its state is committed (and for
 * every block applied through state transfer): removes its txs, then asks
 * the nonce callback for the last nonce of each sender named in done and
 * evicts that sender's txs with a nonce now used. Returns 0 or the first
 * code from the nonce callback (the other senders are still processed).
 */
BEX_MUST_USE int mempool_commit(struct mempool *mp, const struct mempool_done *done, size_t count);

/*
 * Evicts every tx whose age at now_ms is more than age_ms. Returns how many
 * were evicted.
 */
size_t mempool_evict_older_than(struct mempool *mp, uint64_t now_ms, uint64_t age_ms);

/* ---- queries ---- */

size_t mempool_count(const struct mempool *mp);

/*
 * Whether the pool would refuse any tx of tx_len bytes for its size alone
 * (count_max txs, or not tx_len bytes left).
 */
bool mempool_full(const struct mempool *mp, size_t tx_len);

/*
 * Whether some sender's tx of tx_len bytes could be refused for size: the
 * pool is full, or holds as many txs or bytes as one sender may. When not,
 * mempool_may_admit() is true for every tx (cheap: no decoding needed).
 */
bool mempool_crowded(const struct mempool *mp, size_t tx_len);

/*
 * Whether mempool_add() may keep a tx of sender with this nonce and size:
 * false when the pool, or the sender's share of it, is full and the tx is
 * not the sender's next (committed last + 1), which makes room (see
 * mempool_add()). A sender with nothing pending is left to mempool_add().
 * A node asks before it spends a signature verification on a tx.
 */
bool mempool_may_admit(const struct mempool *mp, const char *sender, uint64_t nonce, size_t tx_len);

/*
 * Fills out with up to max pending txs: of every sender whose next tx
 * (nonce committed last + 1) is in no proposal and pending for at least
 * age_ms, that tx and up to run - 1 that follow it without a gap and in
 * no proposal. These hold every later tx of their sender back; a node
 * relays them again, in case the primary lost them (a full pool or send
 * queue, a view change to a primary that never got them). Returns how
 * many; the pointers are borrowed as struct mempool_tx says.
 */
size_t mempool_stuck_heads(const struct mempool *mp, const struct mempool_tx **out, size_t max, size_t run,
                           uint64_t now_ms, uint64_t age_ms);

/* The highest nonce of sender's pending txs, or 0 when none is pending. */
uint64_t mempool_sender_top(const struct mempool *mp, const char *sender);
size_t mempool_bytes(const struct mempool *mp);

/* The pending tx with this id, or NULL. Borrowed as struct mempool_tx says. */
const struct mempool_tx *mempool_get(const struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES]);

/* Age at now_ms of the oldest pending tx; 0 when the pool is empty. */
uint64_t mempool_oldest_age_ms(const struct mempool *mp, uint64_t now_ms);

void mempool_get_stats(const struct mempool *mp, struct mempool_stats *out);

/*
 * Checks every invariant of the pool (accounting, both indexes, nonce order,
 * arrival order, caps) in time linear in its size; for tests and debugging.
 * Returns 0, or -BEX_ECORRUPT with the first violation written to reason.
 */
BEX_MUST_USE int mempool_check(const struct mempool *mp, char *reason, size_t reason_len);

#endif
