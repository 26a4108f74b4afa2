/*
 * internal.h: the state of the PBFT engine and what its files share.
 * Nothing here is part of the public contract of pbft.h.
 */
#ifndef BEX_PBFT_INTERNAL_H
#define BEX_PBFT_INTERNAL_H

#include "pbft.h"

/* One replica's PREPARE or COMMIT for the entry's current view. */
struct pbft__slot {
    bool present;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t sig[PBFT_SIG_BYTES];
};

/*
 * The log entry of one seq in (h, h+L]. The vote state (pre-prepare,
 * prepares, commits) belongs to entry.view and is cleared when a new view is
 * installed; the prepared certificate of the highest view and the commit
 * survive view changes, since the VIEW-CHANGE P set and the ordered delivery
 * need them.
 */
struct pbft__entry {
    uint64_t seq; /* 0: the slot is free */
    uint64_t view;
    bool has_pre_prepare;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t pre_prepare_sig[PBFT_SIG_BYTES];
    struct pbft__slot prepares[PBFT_REPLICAS_MAX];
    struct pbft__slot commits[PBFT_REPLICAS_MAX];
    bool prepared_in_view; /* prepared in entry.view; our COMMIT is out */
    bool has_prepared;
    struct pbft_prepared prepared; /* of the highest view we prepared in */
    bool committed;
    uint8_t committed_digest[PBFT_DIGEST_BYTES];
    struct pbft_commit_cert cert;
    uint64_t first_ms;                    /* when the entry got its view */
    uint64_t reply_ms[PBFT_REPLICAS_MAX]; /* earliest next answer to each replica */
};

/* The latest CHECKPOINT of one replica. */
struct pbft__checkpoint {
    bool present;
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t sig[PBFT_SIG_BYTES];
};

struct pbft {
    struct pbft_config cfg;
    uint32_t f;
    uint32_t q;
    bool started;
    bool replaying; /* buffered votes are being replayed: no optional sends */
    /* Restore order: 1 stable proof, 2 VIEW-CHANGE/NEW-VIEW, 3 the rest. */
    int restore_phase;
    uint64_t now_ms;

    uint64_t view;
    bool active;       /* view installed; false during a view change to view */
    uint64_t next_seq; /* the seq the primary proposes next */

    /* Low watermark h = stable.seq; the log holds (h, h+L]. */
    struct pbft_checkpoint_proof stable;
    uint64_t delivered; /* last PBFT_ACT_COMMIT or transferred seq */
    uint64_t executed;  /* last seq the node executed, <= delivered */
    uint8_t exec_root[PBFT_DIGEST_BYTES];
    struct pbft__entry log[PBFT_WINDOW_MAX]; /* seq s lives at s % PBFT_WINDOW_MAX */

    /* Checkpoints: the latest of each replica, our own ones in [h, h+L]. */
    struct pbft__checkpoint checkpoints[PBFT_REPLICAS_MAX];
    struct pbft_vote own_checkpoints[PBFT_WINDOW_MAX + 1];
    bool has_pending_proof; /* a proof above h we have not adopted yet */
    struct pbft_checkpoint_proof pending_proof;
    uint64_t pending_since_ms;

    /* View change: the latest valid VIEW-CHANGE of each replica, ours too. */
    bool vc_present[PBFT_REPLICAS_MAX];
    struct pbft_view_change vcs[PBFT_REPLICAS_MAX];
    bool nv_present; /* our NEW-VIEW, while we are primary of that view */
    struct pbft_new_view nv;

    /* Votes of future views, per sender, replayed when the view installs. */
    uint32_t buffer_count[PBFT_REPLICAS_MAX];
    struct pbft_vote buffer[PBFT_REPLICAS_MAX][PBFT_BUFFER_PER_REPLICA];

    /* Timers. */
    bool pending;
    uint32_t backoff;
    bool timer_on;
    uint64_t timer_deadline_ms;
    uint64_t timer_since_ms; /* when the running timer last started */
    uint64_t wait_ms;        /* recent longest wait for a commit, decaying */
    bool progressed;         /* progress since the last tick: restart the timer at it */
    uint64_t retransmit_at_ms;
    uint64_t fetch_at_ms;
    bool gap_seen;
    uint64_t gap_since_ms;
    uint64_t nv_reply_ms[PBFT_REPLICAS_MAX];
    uint64_t checkpoint_reply_ms[PBFT_REPLICAS_MAX];

    struct pbft_stats stats;
};

/* pbft.c: actions, log and shared helpers. */
uint32_t pbft__primary_of(const struct pbft *p, uint64_t view);
uint64_t pbft__high(const struct pbft *p);
struct pbft__entry *pbft__entry_find(struct pbft *p, uint64_t seq);
struct pbft__entry *pbft__entry_get(struct pbft *p, uint64_t seq, uint64_t view);
void pbft__entry_reset_view(struct pbft__entry *e, uint64_t view);
void pbft__prune_log(struct pbft *p);
bool pbft__digest_is_zero(const uint8_t d[PBFT_DIGEST_BYTES]);
struct pbft_action *pbft__push(struct pbft *p, struct pbft_actions *out,
                               enum pbft_action_type type);
bool pbft__room(const struct pbft_actions *out);
void pbft__push_vote(struct pbft *p, struct pbft_actions *out, enum pbft_action_type type,
                     uint32_t to, const struct pbft_vote *v);
void pbft__sign_vote(struct pbft *p, struct pbft_vote *v);
void pbft__deliver(struct pbft *p, struct pbft_actions *out);
uint64_t pbft__timeout(const struct pbft *p);
void pbft__fetch(struct pbft *p, struct pbft_actions *out, uint64_t seq,
                 const uint8_t digest[PBFT_DIGEST_BYTES], uint32_t vouchers);

/* pbft_cert.c: canonical digests and certificate checks. */
int pbft__check_vote_sig(const struct pbft *p, const struct pbft_vote *v);
int pbft__check_proof(const struct pbft_config *cfg, uint32_t q,
                      const struct pbft_checkpoint_proof *proof);
int pbft__check_prepared(const struct pbft_config *cfg, uint32_t q,
                         const struct pbft_prepared *c);
int pbft__check_view_change(const struct pbft *p, const struct pbft_view_change *vc);

/* pbft_normal.c: the normal case and checkpoints (Castro-Liskov 4.2, 4.3). */
int pbft__on_vote(struct pbft *p, const struct pbft_vote *v, bool verified,
                  struct pbft_actions *out);
int pbft__on_checkpoint(struct pbft *p, const struct pbft_vote *v, struct pbft_actions *out);
void pbft__own_checkpoint(struct pbft *p, uint64_t seq, const uint8_t root[PBFT_DIGEST_BYTES],
                          struct pbft_actions *out);
void pbft__offer_proof(struct pbft *p, const struct pbft_checkpoint_proof *proof,
                       struct pbft_actions *out);
void pbft__adopt_proof(struct pbft *p, const struct pbft_checkpoint_proof *proof,
                       struct pbft_actions *out);
void pbft__send_prepare(struct pbft *p, struct pbft__entry *e, struct pbft_actions *out);
void pbft__evaluate(struct pbft *p, struct pbft__entry *e, struct pbft_actions *out);
bool pbft__waiting(const struct pbft *p);
void pbft__retransmit(struct pbft *p, struct pbft_actions *out);
void pbft__check_behind(struct pbft *p, struct pbft_actions *out);

/* pbft_view.c: view changes (Castro-Liskov 4.4, 4.5.2). */
int pbft__on_view_change(struct pbft *p, const struct pbft_view_change *vc,
                         struct pbft_actions *out);
int pbft__on_new_view(struct pbft *p, const struct pbft_new_view *nv, struct pbft_actions *out);
int pbft__restore_new_view(struct pbft *p, const struct pbft_new_view *nv);
void pbft__view_tick(struct pbft *p, struct pbft_actions *out);

/* pbft_check.c: the whole-state invariant check. */
void pbft__check(const struct pbft *p, const struct pbft_actions *out);

#endif
