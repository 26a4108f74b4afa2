/*
 * pbft.h: Practical Byzantine Fault Tolerance (Castro and Liskov, OSDI'99,
 * TOCS'02) as a pure state machine.
 *
 * The engine owns no socket, clock, disk, thread or heap. The caller feeds it
 * inputs (pbft_step for a message from a peer, pbft_tick for the passage of
 * time, pbft_propose, pbft_executed, pbft_transferred, pbft_set_pending) and
 * performs the actions each call leaves in a caller-owned, bounded
 * struct pbft_actions: send a message to one replica or to all, persist an own
 * signed message, execute a committed request, fetch state from peers, persist
 * a stable checkpoint proof. The same inputs in the same order always give the
 * same actions, so a whole cluster can run in one process from one seed
 * (tests/sim).
 *
 * Replicas are numbered 0..n-1; the primary of view v is v mod n. The engine
 * tolerates f = (n-1)/3 Byzantine replicas. Its quorum is
 * q = ceil((n+f+1)/2), which is 2f+1 when n = 3f+1; for other n it is the
 * smallest size at which any two quorums share f+1 replicas (one of them
 * honest) while n-f honest replicas can still form one.
 *
 * Ordering contract of every call: the caller performs the actions in list
 * order, and every PBFT_ACT_PERSIST of a call must be durable before any
 * PBFT_ACT_SEND or PBFT_ACT_BROADCAST of the same call leaves the process.
 * A replica restarted from what it persisted (pbft_restore) never signs two
 * different digests for one (view, seq) and never returns to a lower view.
 *
 * Memory contract: pointers inside actions (messages, certificates, proofs)
 * point into the engine and stay valid until the next call on the same
 * engine. Messages given to pbft_step and pbft_restore are only read during
 * the call.
 *
 * What the node does around the engine:
 * - feeds a PRE-PREPARE to pbft_step only once it holds the proposal with
 *   that digest and judged it valid (the engine orders digests, it never
 *   sees requests);
 * - executes PBFT_ACT_COMMIT in order, fetching the proposal of a committed
 *   digest it never received, and reports each with pbft_executed();
 * - keeps what PBFT_ACT_PERSIST and PBFT_ACT_STABLE hand it, and at boot
 *   gives it back with pbft_restore() before pbft_start();
 * - on PBFT_ACT_FETCH fetches blocks with commit certificates, verifies each
 *   (pbft_verify_commit_cert), executes them and calls pbft_transferred();
 * - calls pbft_tick() every few milliseconds (well below retransmit_ms).
 *
 * Null requests: a NEW-VIEW fills every seq in (min-s, max-s] that has no
 * prepared certificate with the all-zero digest; it commits like any other
 * request and the node executes it as an empty block.
 */
#ifndef BEX_PBFT_H
#define BEX_PBFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bex.h"

/* ---------------------------------------------------------------- limits */

#define PBFT_REPLICAS_MIN 4
#define PBFT_REPLICAS_MAX 16
#define PBFT_FAULTS_MAX ((PBFT_REPLICAS_MAX - 1) / 3)
/* The largest quorum of any n <= PBFT_REPLICAS_MAX (n = 16, f = 5). */
#define PBFT_QUORUM_MAX 11
/* The largest watermark window L (sequence numbers in flight). */
#define PBFT_WINDOW_MAX 128
#define PBFT_DIGEST_BYTES 32
#define PBFT_SIG_BYTES 64
/* Votes of a future view kept per sender until that view is installed. */
#define PBFT_BUFFER_PER_REPLICA 8
/*
 * The highest view a message may name: pbft_step() and pbft_restore() refuse
 * anything above it (a view change a millisecond would take 292 million
 * years to get there), so no number of liars can push a replica's view to
 * overflow, and the node may use the views above it as tags.
 */
#define PBFT_VIEW_MAX (UINT64_MAX >> 1)
/* The largest exponent of the view-change back-off: timeout * 2^5. */
#define PBFT_BACKOFF_SHIFT_MAX 5
/*
 * The request timeout adapts to the load: it is at least this many times the
 * longest recent wait for a commit (see pbft__timeout()), and never more than
 * the largest back-off, view_timeout_ms * 2^PBFT_BACKOFF_SHIFT_MAX. A primary
 * that commits just before each timeout can thus slow the replicas down, but
 * no further than that bound (the price of not deposing a loaded primary).
 */
#define PBFT_TIMEOUT_WAIT_FACTOR 4
/* Bound of the action list filled by one call (see pbft.c for the sum). */
#define PBFT_ACTIONS_MAX (6 * PBFT_WINDOW_MAX + 64)

_Static_assert(PBFT_QUORUM_MAX == (PBFT_REPLICAS_MAX + PBFT_FAULTS_MAX + 2) / 2,
               "PBFT_QUORUM_MAX is the quorum of the largest cluster");
_Static_assert(PBFT_REPLICAS_MAX <= 32, "voucher sets are 32-bit masks");
_Static_assert(PBFT_WINDOW_MAX >= 1, "a window holds at least one request");

/* Defaults of pbft_config_default(). */
#define PBFT_CHECKPOINT_INTERVAL_DEFAULT 64
#define PBFT_WINDOW_DEFAULT 128
#define PBFT_VIEW_TIMEOUT_MS_DEFAULT 2000
#define PBFT_RETRANSMIT_MS_DEFAULT 500

/* ---------------------------------------------------------------- messages */

enum pbft_msg_type {
    PBFT_MSG_PRE_PREPARE = 1,
    PBFT_MSG_PREPARE = 2,
    PBFT_MSG_COMMIT = 3,
    PBFT_MSG_CHECKPOINT = 4,
    PBFT_MSG_VIEW_CHANGE = 5,
    PBFT_MSG_NEW_VIEW = 6,
    /* Persisted and restored only, never sent: an own prepared certificate. */
    PBFT_MSG_PREPARED = 7,
    /* Restored only: the stable checkpoint proof of a PBFT_ACT_STABLE. */
    PBFT_MSG_STABLE = 8,
};

/*
 * PRE-PREPARE, PREPARE, COMMIT and CHECKPOINT share one shape. A CHECKPOINT
 * has view 0 and carries the state root after executing seq as its digest.
 * An all-zero digest in a PRE-PREPARE, PREPARE or COMMIT is the null request
 * a NEW-VIEW uses to fill a gap; only a NEW-VIEW may propose it.
 */
struct pbft_vote {
    uint32_t type;
    uint64_t view;
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint32_t replica;
    uint8_t sig[PBFT_SIG_BYTES];
};

/* One replica's signature inside a certificate. */
struct pbft_cert_vote {
    uint32_t replica;
    uint8_t sig[PBFT_SIG_BYTES];
};

/*
 * A commit certificate: at least q COMMIT signatures of distinct replicas
 * for (view, seq, digest). The engine gives exactly q, in replica order.
 */
struct pbft_commit_cert {
    uint64_t view;
    uint32_t count;
    struct pbft_cert_vote votes[PBFT_QUORUM_MAX];
};

/*
 * A checkpoint proof: at least q CHECKPOINT signatures of distinct replicas
 * for (seq, digest = state root). Sequence 0 is the genesis checkpoint: zero
 * digest and no signatures.
 */
struct pbft_checkpoint_proof {
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint32_t count;
    struct pbft_cert_vote votes[PBFT_QUORUM_MAX];
};

/*
 * A prepared certificate: the primary's PRE-PREPARE signature and q-1
 * PREPARE signatures of distinct backups for (view, seq, digest).
 */
struct pbft_prepared {
    uint64_t view;
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t pre_prepare_sig[PBFT_SIG_BYTES];
    uint32_t prepare_count;
    struct pbft_cert_vote prepares[PBFT_QUORUM_MAX - 1];
};

/*
 * VIEW-CHANGE (Castro-Liskov 4.4): the sender's stable checkpoint with its
 * proof and the P set, the prepared certificate of the highest view for every
 * seq above the checkpoint, in increasing seq order.
 */
struct pbft_view_change {
    uint64_t new_view;
    struct pbft_checkpoint_proof stable;
    uint32_t prepared_count;
    struct pbft_prepared prepared[PBFT_WINDOW_MAX];
    uint32_t replica;
    uint8_t sig[PBFT_SIG_BYTES];
};

/*
 * NEW-VIEW: q or more VIEW-CHANGEs for view and the O set, one signed
 * PRE-PREPARE for every seq in (min-s, max-s] in increasing order, where
 * min-s is the highest stable checkpoint and max-s the highest prepared seq
 * in the VIEW-CHANGEs. Each carries the digest of the prepared certificate
 * of the highest view for its seq, or the null digest.
 */
struct pbft_new_view {
    uint64_t view;
    uint32_t view_change_count;
    struct pbft_view_change view_changes[PBFT_QUORUM_MAX];
    uint32_t pre_prepare_count;
    struct pbft_vote pre_prepares[PBFT_WINDOW_MAX];
    uint32_t replica;
    uint8_t sig[PBFT_SIG_BYTES];
};

/*
 * One input or output message. Votes travel by value, the large messages by
 * pointer; only the member named by type is meaningful.
 */
struct pbft_msg {
    enum pbft_msg_type type;
    struct pbft_vote vote;
    const struct pbft_view_change *view_change;
    const struct pbft_new_view *new_view;
    const struct pbft_prepared *prepared;
    const struct pbft_checkpoint_proof *proof;
};

/* ---------------------------------------------------------------- actions */

enum pbft_action_type {
    /* Send msg to replica `to`. */
    PBFT_ACT_SEND = 1,
    /* Send msg to every other replica. */
    PBFT_ACT_BROADCAST = 2,
    /*
     * Make msg durable (an own PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE,
     * NEW-VIEW or prepared certificate) before any send of this call. Keep
     * them until a PBFT_ACT_STABLE covers their seq; of VIEW-CHANGEs and
     * NEW-VIEWs the latest of each suffices.
     */
    PBFT_ACT_PERSIST = 3,
    /*
     * Execute the request digest (all zero: the null request) at seq, then
     * report pbft_executed(). Commits come in seq order without gaps or
     * repeats, starting after what pbft_start() or pbft_transferred() gave.
     * cert proves the commit to anyone holding the replica keys. The node
     * may have to fetch the request behind a digest it has not seen.
     */
    PBFT_ACT_COMMIT = 4,
    /*
     * The replica is behind: once the commits already handed out are
     * executed, fetch the requests after them up to seq with their commit
     * certificates (verify each with pbft_verify_commit_cert), execute them
     * and report pbft_transferred(). digest is the state root expected at
     * seq when known (else all zero); vouchers has bit i set for each replica
     * that vouched for seq. Repeated every retransmit_ms while the replica
     * stays behind; a partial transfer is fine, one at a time is enough.
     */
    PBFT_ACT_FETCH = 5,
    /*
     * A checkpoint became stable: persist proof (restored with
     * PBFT_MSG_STABLE) before pruning what PBFT_ACT_PERSIST stored for
     * sequence numbers <= seq.
     */
    PBFT_ACT_STABLE = 6,
    /* Informational: this replica started a view change to view. */
    PBFT_ACT_VIEW_CHANGE = 7,
    /* Informational: this replica installed view. */
    PBFT_ACT_NEW_VIEW = 8,
};

/*
 * One action. SEND uses to and msg; BROADCAST and PERSIST use msg; COMMIT uses
 * seq, digest and cert; FETCH seq, digest and vouchers; STABLE seq, digest
 * (the state root) and proof; VIEW_CHANGE and NEW_VIEW use view.
 */
struct pbft_action {
    enum pbft_action_type type;
    uint32_t to;
    struct pbft_msg msg;
    uint64_t seq;
    uint64_t view;
    uint8_t digest[PBFT_DIGEST_BYTES];
    const struct pbft_commit_cert *cert;
    const struct pbft_checkpoint_proof *proof;
    uint32_t vouchers;
};

/* Caller-owned. Every call clears it first, then appends. */
struct pbft_actions {
    uint32_t count;
    struct pbft_action items[PBFT_ACTIONS_MAX];
};

/* ---------------------------------------------------------------- config */

/*
 * Signing and hashing come from the caller so the node can plug in
 * secp256k1 and SHA-256 and the simulator honest or Byzantine signers.
 * sign must not fail; verify returns true for a valid signature of replica
 * over digest. The engine signs hash(canonical bytes) of every message (see
 * pbft_vote_digest); a hash that mixes in the chain id keeps votes of one
 * chain from counting on another.
 */
typedef void (*pbft_sign_fn)(void *ctx, const uint8_t digest[PBFT_DIGEST_BYTES],
                             uint8_t sig[PBFT_SIG_BYTES]);
typedef bool (*pbft_verify_fn)(void *ctx, uint32_t replica,
                               const uint8_t digest[PBFT_DIGEST_BYTES],
                               const uint8_t sig[PBFT_SIG_BYTES]);
typedef void (*pbft_hash_fn)(void *ctx, const uint8_t *bytes, size_t len,
                             uint8_t out[PBFT_DIGEST_BYTES]);

struct pbft_crypto {
    pbft_sign_fn sign;
    pbft_verify_fn verify;
    pbft_hash_fn hash;
    void *ctx;
};

struct pbft_config {
    uint32_t n;                   /* replicas, PBFT_REPLICAS_MIN..MAX */
    uint32_t self;                /* this replica, < n */
    uint32_t checkpoint_interval; /* K: a checkpoint every K seqs, >= 1 */
    uint32_t window;              /* L: watermark window, a multiple of K, <= PBFT_WINDOW_MAX */
    uint64_t view_timeout_ms;     /* base request timeout before a view change */
    uint64_t retransmit_ms;       /* resend period; also how long a replica waits before fetching */
    bool checks;                  /* run pbft__check() after every call (always with BEX_CHECKS) */
    struct pbft_crypto crypto;
};

/* Fills cfg with the defaults for replica self of n; crypto is left empty. */
void pbft_config_default(struct pbft_config *cfg, uint32_t n, uint32_t self);

/* Returns 0 or -BEX_EINVAL naming no field: n, self, K, L, timeouts, crypto. */
BEX_MUST_USE int pbft_config_check(const struct pbft_config *cfg);

/* f = (n-1)/3 and q = ceil((n+f+1)/2) for n replicas. */
uint32_t pbft_faults(uint32_t n);
uint32_t pbft_quorum(uint32_t n);

/* ---------------------------------------------------------------- stats */

/* Counters of everything the engine refused or noticed; never reset. */
struct pbft_stats {
    uint64_t dropped_malformed;     /* unknown type, counts out of range, null request, ... */
    uint64_t dropped_non_member;    /* replica index >= n, or claims to be this replica */
    uint64_t dropped_bad_sig;
    uint64_t dropped_wrong_primary; /* PRE-PREPARE or NEW-VIEW not from the primary, PREPARE from it */
    uint64_t dropped_old_view;
    uint64_t dropped_future_full;   /* future-view buffer of the sender full */
    uint64_t dropped_window;        /* seq outside the watermarks */
    uint64_t dropped_conflict;      /* second digest for one (view, seq) or checkpoint */
    uint64_t dropped_bad_view_change;
    uint64_t dropped_bad_new_view;
    uint64_t duplicates;
    uint64_t buffered;              /* future-view votes kept */
    uint64_t view_changes;          /* view changes started */
    uint64_t new_views;             /* views installed */
    uint64_t commits;               /* PBFT_ACT_COMMIT emitted */
    uint64_t checkpoints_stable;
    uint64_t fetches;
    uint64_t retransmits;
    uint64_t state_divergence;      /* a stable checkpoint disagrees with our own state root */
};

/* ---------------------------------------------------------------- lifecycle */

struct pbft;

/*
 * Bytes the caller must provide for one engine, aligned for any object type
 * (heap memory is). The size is fixed: every array is bounded by the limits
 * above (about 3.5 MB).
 */
size_t pbft_size(void);

/*
 * Initialises p (pbft_size() bytes) for cfg, in view 0 with nothing
 * executed. Returns 0 or -BEX_EINVAL. Then restore what was persisted
 * (pbft_restore), then pbft_start(), then step and tick.
 */
BEX_MUST_USE int pbft_init(struct pbft *p, const struct pbft_config *cfg);

/* Wipes p. Accepts a zeroed or failed-init engine. */
void pbft_close(struct pbft *p);

/*
 * Feeds back one message the replica persisted before a restart: an own
 * PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE, NEW-VIEW, PBFT_MSG_PREPARED
 * certificate, or a PBFT_MSG_STABLE proof. Order: the stable proof first,
 * then VIEW-CHANGEs and NEW-VIEWs, then the rest in any order. Only between
 * pbft_init() and pbft_start(). Every message is checked like peer input.
 * Returns 0, -BEX_ESTATE (after pbft_start, or out of order),
 * -BEX_EINVAL (not ours or malformed), -BEX_ESIG, or -BEX_ELIMIT (outside the
 * window of the restored checkpoint; ignored).
 */
BEX_MUST_USE int pbft_restore(struct pbft *p, const struct pbft_msg *msg);

/*
 * Starts the engine at now_ms with the node's durable state: requests up to
 * executed_seq are executed and state_root is the root after them. Returns 0,
 * -BEX_ESTATE (started twice) or -BEX_EINVAL.
 */
BEX_MUST_USE int pbft_start(struct pbft *p, uint64_t now_ms, uint64_t executed_seq,
                            const uint8_t state_root[PBFT_DIGEST_BYTES],
                            struct pbft_actions *out);

/* ---------------------------------------------------------------- operations */

/*
 * Whether every view msg names is at most PBFT_VIEW_MAX (its counts are
 * checked elsewhere: only the first entries up to the limits are looked at).
 * pbft_step() and pbft_restore() refuse a message for which it is false.
 */
bool pbft_views_ok(const struct pbft_msg *msg);

/*
 * Handles one message from a peer. Returns 0 when it was used, buffered or
 * was a harmless duplicate; otherwise the message was dropped and counted:
 * -BEX_EINVAL (malformed), -BEX_EPERM (non-member or wrong primary),
 * -BEX_ESIG, -BEX_ESTATE (old view), -BEX_ELIMIT (outside the watermarks),
 * -BEX_EEXIST (conflicts with an accepted message), -BEX_EFULL (future-view
 * buffer full). out holds the actions either way.
 */
BEX_MUST_USE int pbft_step(struct pbft *p, const struct pbft_msg *msg,
                           struct pbft_actions *out);

/*
 * Advances the engine's clock to now_ms (never backwards): view-change
 * timers, retransmissions and fetches. Steps use the time of the last tick.
 */
BEX_MUST_USE int pbft_tick(struct pbft *p, uint64_t now_ms, struct pbft_actions *out);

/*
 * Tells the engine that this replica did not run from its last tick until
 * now_ms (the process was stopped, or the machine starved its loop): the
 * clock moves to now_ms and a running view-change timer restarts there, as
 * time in which the replica saw nothing is no evidence against the
 * primary. Without it, a step taken before the next tick (the node reads
 * what its peers sent while it was paused before it ticks) would start a
 * timer at the stale time, already expired, and the replica would leave the
 * view the others just installed. No action results.
 * -BEX_EINVAL (NULL, or now_ms before the last tick), -BEX_ESTATE (not started).
 */
BEX_MUST_USE int pbft_pause(struct pbft *p, uint64_t now_ms);

/*
 * The primary proposes digest (not all zero) at the seq pbft_next_seq()
 * reported. Returns 0, -BEX_ESTATE (not the primary of an installed view),
 * -BEX_EFULL (watermark window full) or -BEX_EINVAL.
 */
BEX_MUST_USE int pbft_propose(struct pbft *p, const uint8_t digest[PBFT_DIGEST_BYTES],
                              struct pbft_actions *out);

/*
 * The seq the next pbft_propose() uses, so the node can build a proposal of
 * that height. Returns 0, -BEX_ESTATE or -BEX_EFULL like pbft_propose().
 */
BEX_MUST_USE int pbft_next_seq(const struct pbft *p, uint64_t *seq);

/*
 * The node executed the committed request at seq (the executed seq + 1, at
 * most the last committed) and state_root is the root after it. Every K-th
 * seq this broadcasts a CHECKPOINT. Returns 0, -BEX_EINVAL or -BEX_ESTATE.
 */
BEX_MUST_USE int pbft_executed(struct pbft *p, uint64_t seq,
                               const uint8_t state_root[PBFT_DIGEST_BYTES],
                               struct pbft_actions *out);

/*
 * The node finished a state transfer: everything up to seq is executed (from
 * verified commit certificates) and state_root is the root after it. Only
 * when all commits given so far are executed. Returns 0, -BEX_EINVAL (seq not
 * ahead), -BEX_ESTATE, or -BEX_ECORRUPT when state_root contradicts a
 * checkpoint proof at seq (the node's execution disagrees with q replicas).
 */
BEX_MUST_USE int pbft_transferred(struct pbft *p, uint64_t seq,
                                  const uint8_t state_root[PBFT_DIGEST_BYTES],
                                  struct pbft_actions *out);

/*
 * The node has requests waiting (true) or not. While true and nothing
 * commits for the view timeout, the replica starts a view change: otherwise a
 * silent primary would never be deposed.
 */
void pbft_set_pending(struct pbft *p, bool pending);

/* ---------------------------------------------------------------- queries */

uint64_t pbft_view(const struct pbft *p);
bool pbft_view_active(const struct pbft *p);   /* false during a view change */
uint32_t pbft_primary(const struct pbft *p);   /* primary of pbft_view() */
uint64_t pbft_stable_seq(const struct pbft *p); /* low watermark h */
uint64_t pbft_committed_seq(const struct pbft *p); /* last PBFT_ACT_COMMIT seq */
uint64_t pbft_executed_seq(const struct pbft *p);
uint32_t pbft_log_count(const struct pbft *p); /* live log entries */
const struct pbft_stats *pbft_stats(const struct pbft *p);

/* ---------------------------------------------------------------- certificates */

/*
 * The digest a replica signs for v (v->type one of the four vote types): hash
 * of the canonical bytes
 * "bexpbft1" | type (1) | view (8) | seq (8) | digest (32) | replica (4),
 * integers big-endian.
 */
void pbft_vote_digest(const struct pbft_config *cfg, const struct pbft_vote *v,
                      uint8_t out[PBFT_DIGEST_BYTES]);

/*
 * The digest signed in a VIEW-CHANGE: its whole content (new view, stable
 * proof, each prepared certificate with all its signatures, replica).
 */
void pbft_view_change_digest(const struct pbft_config *cfg, const struct pbft_view_change *vc,
                             uint8_t out[PBFT_DIGEST_BYTES]);

/*
 * The digest signed in a NEW-VIEW: view, replica, the digest and signature
 * of each VIEW-CHANGE and every PRE-PREPARE of the O set.
 */
void pbft_new_view_digest(const struct pbft_config *cfg, const struct pbft_new_view *nv,
                          uint8_t out[PBFT_DIGEST_BYTES]);

/*
 * Checks that cert proves (seq, digest) committed: at least q distinct
 * members whose COMMIT signatures over (cert->view, seq, digest) verify with
 * cfg->crypto. Returns 0, -BEX_ELIMIT (fewer than q or too many votes),
 * -BEX_EINVAL (non-member or repeated replica) or -BEX_ESIG.
 */
BEX_MUST_USE int pbft_verify_commit_cert(const struct pbft_config *cfg, uint64_t seq,
                                         const uint8_t digest[PBFT_DIGEST_BYTES],
                                         const struct pbft_commit_cert *cert);

/*
 * Checks a checkpoint proof the same way (CHECKPOINT votes, view 0).
 * Returns 0, -BEX_ELIMIT, -BEX_EINVAL or -BEX_ESIG.
 */
BEX_MUST_USE int pbft_verify_checkpoint_proof(const struct pbft_config *cfg,
                                              const struct pbft_checkpoint_proof *proof);

#endif
