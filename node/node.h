/*
 * node.h: bexd, one agency's node: the PBFT engine, the ledger (store +
 * contracts), the mempool, the p2p links and the RPC joined on one libuv
 * loop. Everything here runs on the loop thread but the persister's writer
 * (persist.h), which commits the votes and blocks the loop queues.
 *
 * Flow of a transaction: RPC tx.submit -> txcheck (signatures verified once,
 * cached by tx id) -> mempool -> gossip to every peer. The primary cuts a
 * proposal (by count, bytes or batch delay), sends it to every peer ahead of
 * its PRE-PREPARE, and the engine orders its digest. A backup feeds a
 * PRE-PREPARE to the engine only once it holds a valid proposal with that
 * digest (every tx's signatures checked), so an honest replica never
 * prepares what it cannot execute. Committed digests are executed in height
 * order by the ledger, one block at a time; the persister writes each block
 * with its certificate in one LMDB transaction, together with the votes
 * queued meanwhile (group commit), and a consensus message leaves only once
 * the votes of its engine call are durable. Once a block is durable the
 * mempool drops what committed, tx.wait callers are answered and the owner
 * release service answers ACCESS, VERIFY and grant activations that concern
 * this node's agency.
 *
 * A node that is behind (the engine asks for state transfer, or a peer's
 * HELLO shows a higher height) fetches blocks with their certificates from
 * peers, verifies every certificate against the genesis node keys and
 * applies them; then it rejoins consensus.
 */
#ifndef BEX_NODE_H
#define BEX_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bex.h"
#include "config.h"
#include "crypto.h"
#include "ledger.h"
#include "mempool.h"
#include "metrics.h"
#include "p2p.h"
#include "pbft.h"
#include "persist.h"
#include "pbft_wire.h"
#include "rpc.h"
#include "txcheck.h"

#define NODE_TICK_MS 10
#define NODE_PROPOSALS_MAX (2 * PBFT_WINDOW_MAX + 16) /* cached proposals */
#define NODE_HELD_MAX (2 * PBFT_WINDOW_MAX)          /* PRE-PREPAREs waiting for their proposal */
#define NODE_COMMITS_MAX (2 * PBFT_WINDOW_MAX)       /* committed, not yet applied */
#define NODE_WAITERS_MAX 4096                        /* tx.wait calls */
#define NODE_WAITER_BUCKETS (2 * NODE_WAITERS_MAX)   /* tx.wait calls by tx id; a power of two */
#define NODE_FETCH_BLOCKS_MAX 64                     /* blocks per BlockResponse */
#define NODE_SENDS_HELD_MAX 8192                     /* consensus sends waiting for their votes to be durable */

struct node_proposal {
    bool used;
    bool valid; /* every tx checked; may be prepared */
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint64_t height;
    uint8_t *bytes;
    size_t len;
};

struct node_commit {
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t *cert; /* encoded CommitCert */
    size_t cert_len;
    uint64_t requested_ms; /* when the proposal was last asked for */
};

/* A consensus message encoded, held until the persist batch it follows is durable. */
struct node_send {
    uint64_t after; /* persist batch number */
    uint32_t to;    /* a replica, or P2P_PEER_NONE for everyone */
    uint8_t *bytes;
    size_t len;
    bool own_pp;                          /* this replica's PRE-PREPARE: its proposal goes first */
    uint8_t pp_digest[PBFT_DIGEST_BYTES]; /* then, the proposal's digest */
};

struct node_waiter {
    bool used;
    uint8_t id[CRYPTO_HASH_BYTES];
    uint64_t deadline_ms;
    struct rpc_call *call;
    uint16_t next; /* the next waiter of the same bucket, plus one; 0 ends the chain */
};

struct node_metrics {
    struct metrics_family *height, *view, *view_changes, *committed_txs, *mempool_txs, *mempool_bytes, *peers,
        *bytes_in, *bytes_out, *rejected, *commit_latency, *blocks;
    /* Misbehaviour seen from peers: refused proposals, engine drops, dropped links (by reason). */
    struct metrics_family *proposals_refused, *pbft_dropped, *p2p_disconnects;
    /* The persister: commits (one fdatasync each), batches they carried, sends waiting for them. */
    struct metrics_family *store_commits, *store_batches, *sends_held;
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    struct genesis gen;
    char cfg_path[CONFIG_PATH_MAX];
    uint32_t self;
    const struct genesis_agency *agency;
    struct crypto_seckey node_sk;
    struct crypto_pubkey node_pk;
    bool has_enc;
    struct crypto_seckey enc_sk;
    struct tls_key *tls;
    uint8_t chain_tag[CRYPTO_HASH_BYTES];

    struct ledger *ledger;
    struct txcheck *txcheck;
    struct mempool *mempool;
    struct pbft *pbft;
    struct pbft_config pcfg;
    struct pbft_actions *acts;
    struct wire_scratch *scratch;
    struct persist *persist;  /* the votes' writer thread */
    uv_async_t durable;       /* its wake-up: a batch is durable or failed */
    bool durable_open;
    struct node_send *sends;  /* NODE_SENDS_HELD_MAX, a ring */
    uint32_t sends_head, sends_n;
    uint64_t sends_dropped;
    struct p2p p2p;
    bool p2p_open;
    struct rpc rpc;
    bool rpc_open;
    struct metrics *metrics;
    struct node_metrics m;

    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    bool handles_open, stopping;
    int exit_code;

    struct node_proposal props[NODE_PROPOSALS_MAX];
    struct pbft_vote held[NODE_HELD_MAX];
    uint32_t held_n;
    struct node_commit commits[NODE_COMMITS_MAX];
    uint32_t commits_head, commits_n;

    uint64_t peer_height[P2P_PEERS_MAX];
    uint64_t peer_view[P2P_PEERS_MAX]; /* from their HELLOs */
    uint64_t last_tick_ms;
    uint64_t fetch_target;
    uint64_t behind_since_ms; /* since when a peer reports a higher height, 0 if none */
    uint64_t fetch_sent_ms;
    uint32_t fetch_rr;
    bool catching_up;

    struct node_waiter waiters[NODE_WAITERS_MAX];
    uint16_t waiter_buckets[NODE_WAITER_BUCKETS]; /* first waiter of each bucket, plus one; 0 if none */
    uint32_t waiters_n;
    uint64_t waiters_due_ms; /* no waiter's deadline comes before this */

    uint64_t committed_txs;
    uint64_t view_changes;
    bool store_failed;
    char store_err[256];
    bool block_pending;     /* a block's writes wait for the persister (start_block()) */
    uint64_t block_after;   /* their persist batch */
    bool remark;            /* a view changed: re-mark in-flight txs before proposing */
    uint64_t last_hello_ms; /* last HELLO broadcast (heights for catch-up) */
    uint64_t sweeps;        /* HELLO rounds, every fifth sweeps the release service */
};

/* Starts a node from its config file; err says what is wrong on failure. */
BEX_MUST_USE int node_open(struct node *n, uv_loop_t *loop, const char *config_path, char *err, size_t err_size);

/* Runs the loop until SIGINT/SIGTERM or a fatal error; returns the exit code. */
int node_run(struct node *n);

/* Frees everything; accepts a zeroed or half-opened node. */
void node_close(struct node *n);

/* Milliseconds of the wall clock (block times) and of the loop (timers). */
uint64_t node_now_ms(const struct node *n);

/*
 * Admits one encoded tx from the RPC: txcheck, mempool, gossip. On failure
 * reason says why (for the RPC's "tx rejected" error).
 */
BEX_MUST_USE int node_submit(struct node *n, uint8_t id[CRYPTO_HASH_BYTES], char *reason, size_t reason_size,
                             const uint8_t *tx, size_t len);

/* The next nonce for agency: 1 + max(committed last, highest pending here). */
BEX_MUST_USE int node_next_nonce(struct node *n, uint64_t *next, uint64_t *last, const char *agency);

/* Registers a tx.wait call; answered by node_rpc_committed() or on timeout. */
BEX_MUST_USE int node_wait(struct node *n, struct rpc_call *call, const uint8_t id[CRYPTO_HASH_BYTES],
                           uint64_t timeout_ms);

/* node_rpc.c: registers the JSON-RPC methods and the health callback. */
BEX_MUST_USE int node_rpc_register(struct node *n);

/* node_rpc.c: answers the tx.wait calls of a committed block's receipts. */
void node_rpc_committed(struct node *n, const struct ledger_applied *a);

/* node_rpc.c: answers expired tx.wait calls with a timeout. */
void node_rpc_expire(struct node *n, uint64_t now_ms);

/* node_release.c: the owner's automatic answers to a committed block. */
void node_release_block(struct node *n, const struct ledger_applied *a);

/* node_release.c: answers what is still open for this agency (called every few seconds). */
void node_release_sweep(struct node *n);

#endif
