/*
 * sim_cluster.h: the state of one simulated cluster, shared by sim_run.c
 * (events, network, nodes, checks) and sim_byz.c (Byzantine behaviour).
 */
#ifndef BEX_SIM_CLUSTER_H
#define BEX_SIM_CLUSTER_H

#include "sim.h"

/* A VIEW-CHANGE or NEW-VIEW in flight, shared by every copy of one send. */
struct blob {
    uint32_t refs;
    enum pbft_msg_type type;
    void *data;
};

struct msg {
    uint32_t from; /* network sender, not necessarily the signer */
    enum pbft_msg_type type;
    struct pbft_vote vote;
    struct blob *blob;
};

enum ev_kind {
    EV_DELIVER = 1,
    EV_TICK,
    EV_TRANSFER,
    EV_CRASH,
    EV_RESTART,
    EV_PARTITION,
    EV_UNPARTITION,
    EV_HEAL,
    EV_EXECUTE,
};

struct event {
    uint64_t at;
    uint64_t order;
    enum ev_kind kind;
    uint32_t node;
    struct msg msg;
};

/* What a node keeps on disk: own signed messages, the stable proof, blocks. */
struct store {
    struct pbft_vote *votes;
    size_t nvotes;
    size_t cap_votes;
    struct pbft_prepared *prepared;
    size_t nprepared;
    size_t cap_prepared;
    bool has_vc;
    struct pbft_view_change *vc;
    bool has_nv;
    struct pbft_new_view *nv;
    bool has_proof;
    struct pbft_checkpoint_proof proof;
};

struct block {
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t root[PBFT_DIGEST_BYTES];
    struct pbft_commit_cert cert;
};

struct node {
    uint32_t id;
    bool byz;
    uint32_t byz_mask;
    bool up;
    int crash_after; /* crash after this many actions of the next call; -1: no */
    struct pbft *p;
    struct sim_signer signer;
    struct pbft_config cfg;
    struct store st;
    /*
     * blocks[1..delivered] were committed; those up to executed are executed
     * and durable, the rest are lost in a crash.
     */
    struct block *blocks;
    size_t cap_blocks;
    uint64_t delivered;
    uint64_t executed;
    uint8_t root[PBFT_DIGEST_BYTES];
    bool exec_scheduled;
    bool transfer_pending;
    uint64_t transfer_target;
    uint8_t transfer_root[PBFT_DIGEST_BYTES];
    uint64_t next_propose_ms;
    uint64_t highest_view;
    /* Byzantine: votes seen, replayed later. */
    struct pbft_vote seen[64];
    uint32_t seen_count;
    struct blob *seen_blob; /* the last VIEW-CHANGE or NEW-VIEW seen */
};

struct gblock {
    bool set;
    bool root_set;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t root[PBFT_DIGEST_BYTES];
};

struct sim {
    struct sim_options opt;
    struct sim_result *res;
    struct sim_rng rng;
    uint32_t n;
    uint32_t f;
    uint32_t q;
    struct sim_keys keys;
    struct node nodes[PBFT_REPLICAS_MAX];

    struct event *heap;
    size_t heap_len;
    size_t heap_cap;
    uint64_t order;
    uint64_t now;
    uint64_t events;

    /* Network. */
    uint32_t drop_pm;
    uint32_t dup_pm;
    uint32_t late_pm; /* messages held back 100-600 ms */
    uint64_t delay_min;
    uint64_t delay_max;
    bool partitioned;
    uint32_t side_mask;

    /* Engine configuration of this seed. */
    uint32_t k;
    uint32_t window;
    uint64_t timeout_ms;
    uint64_t retransmit_ms;
    uint64_t tick_ms;
    uint64_t propose_every_ms;
    uint64_t exec_delay_max; /* 0: nodes execute a commit at once */

    /* Agreement: the first digest an honest replica committed per seq. */
    struct gblock *global;
    size_t global_cap;

    uint64_t heal_at;
    bool healed;
    uint64_t live_target;
    uint64_t live_deadline;
    bool done;

    struct pbft_actions *out;
    uint64_t digest_counter;
};

/* sim_run.c */
void sim__trace(struct sim *s, const char *fmt, ...) BEX_PRINTF(2, 3);
void sim__violation(struct sim *s, const char *fmt, ...) BEX_PRINTF(2, 3);
void sim__enqueue(struct sim *s, uint32_t from, uint32_t to, const struct msg *m);
struct blob *sim__blob_new(enum pbft_msg_type type, const void *data);
void sim__blob_put(struct blob *b);

/* sim_byz.c */
void sim__byz_send(struct sim *s, struct node *b, uint32_t to, const struct msg *m);
void sim__byz_tick(struct sim *s, struct node *b);
void sim__byz_seen(struct node *b, const struct msg *m);
void sim__byz_transfer(struct sim *s, struct node *victim);

#endif
