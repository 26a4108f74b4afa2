/*
 * pbft_check.c: the whole-state check. It runs after every call when the
 * configuration asks for it (the simulator always does) and in BEX_CHECKS
 * builds, and states in code what the rest of the engine relies on.
 */
#include "internal.h"

#include <string.h>

static void check_entry(const struct pbft *p, size_t slot, const struct pbft__entry *e)
{
    uint32_t primary = pbft__primary_of(p, e->view);
    uint32_t self = p->cfg.self;

    BEX_ASSERT(e->seq % PBFT_WINDOW_MAX == slot);
    BEX_ASSERT(e->seq > p->stable.seq);
    BEX_ASSERT(e->seq <= pbft__high(p));
    BEX_ASSERT(e->view <= p->view);
    if (p->started && p->active)
        BEX_ASSERT(e->view == p->view);
    /* A primary never prepares; PREPAREs from it are dropped. */
    BEX_ASSERT(!e->prepares[primary].present);
    if (e->has_pre_prepare && e->prepares[self].present)
        BEX_ASSERT(memcmp(e->digest, e->prepares[self].digest, PBFT_DIGEST_BYTES) == 0);
    if (e->prepared_in_view) {
        BEX_ASSERT(e->has_pre_prepare);
        BEX_ASSERT(e->has_prepared);
        BEX_ASSERT(e->prepared.view == e->view);
        BEX_ASSERT(memcmp(e->prepared.digest, e->digest, PBFT_DIGEST_BYTES) == 0);
    }
    if (e->has_prepared) {
        BEX_ASSERT(e->prepared.seq == e->seq);
        BEX_ASSERT(e->prepared.view <= e->view);
        BEX_ASSERT(e->prepared.prepare_count >= p->q - 1);
        BEX_ASSERT(e->prepared.prepare_count <= PBFT_QUORUM_MAX - 1);
    }
    if (e->committed) {
        uint32_t seen = 0;
        BEX_ASSERT(e->cert.count == p->q);
        BEX_ASSERT(e->cert.view <= p->view);
        for (uint32_t i = 0; i < e->cert.count; i++) {
            uint32_t r = e->cert.votes[i].replica;
            BEX_ASSERT(r < p->cfg.n);
            BEX_ASSERT((seen & (1u << r)) == 0);
            seen |= 1u << r;
        }
    }
}

static void check_actions(const struct pbft *p, const struct pbft_actions *out)
{
    uint64_t last_commit = 0;

    BEX_ASSERT(out->count <= PBFT_ACTIONS_MAX);
    for (uint32_t i = 0; i < out->count; i++) {
        const struct pbft_action *a = &out->items[i];
        bool vote = a->msg.type >= PBFT_MSG_PRE_PREPARE && a->msg.type <= PBFT_MSG_CHECKPOINT;
        switch (a->type) {
        case PBFT_ACT_SEND:
            BEX_ASSERT(a->to < p->cfg.n);
            BEX_ASSERT(a->to != p->cfg.self);
            /* fall through */
        case PBFT_ACT_BROADCAST:
        case PBFT_ACT_PERSIST:
            if (vote)
                BEX_ASSERT(a->msg.vote.replica == p->cfg.self);
            if (a->msg.type == PBFT_MSG_VIEW_CHANGE)
                BEX_ASSERT(a->msg.view_change->replica == p->cfg.self);
            if (a->msg.type == PBFT_MSG_NEW_VIEW)
                BEX_ASSERT(a->msg.new_view->replica == p->cfg.self);
            break;
        case PBFT_ACT_COMMIT:
            /* Commits leave in seq order without gaps. */
            BEX_ASSERT(last_commit == 0 || a->seq == last_commit + 1);
            BEX_ASSERT(a->seq <= p->delivered);
            BEX_ASSERT(a->cert != NULL);
            last_commit = a->seq;
            break;
        case PBFT_ACT_FETCH:
        case PBFT_ACT_STABLE:
        case PBFT_ACT_VIEW_CHANGE:
        case PBFT_ACT_NEW_VIEW:
            break;
        }
    }
}

void pbft__check(const struct pbft *p, const struct pbft_actions *out)
{
    BEX_ASSERT(p->cfg.n >= PBFT_REPLICAS_MIN);
    BEX_ASSERT(p->cfg.n <= PBFT_REPLICAS_MAX);
    BEX_ASSERT(p->q == pbft_quorum(p->cfg.n));
    BEX_ASSERT(p->stable.seq % p->cfg.checkpoint_interval == 0);
    if (p->stable.seq > 0) {
        BEX_ASSERT(p->stable.count >= p->q);
        BEX_ASSERT(p->stable.count <= PBFT_QUORUM_MAX);
    }
    BEX_ASSERT(p->executed <= p->delivered);
    BEX_ASSERT(p->next_seq > p->stable.seq);
    BEX_ASSERT(p->backoff <= 32);
    BEX_ASSERT(pbft__timeout(p) <= p->cfg.view_timeout_ms << PBFT_BACKOFF_SHIFT_MAX);
    BEX_ASSERT(!p->replaying);
    if (p->active) {
        BEX_ASSERT(!p->nv_present || p->nv.view == p->view);
    } else {
        BEX_ASSERT(p->vc_present[p->cfg.self]);
        BEX_ASSERT(p->vcs[p->cfg.self].new_view == p->view);
        BEX_ASSERT(!p->nv_present);
    }
    for (size_t i = 0; i < PBFT_WINDOW_MAX; i++) {
        if (p->log[i].seq != 0)
            check_entry(p, i, &p->log[i]);
    }
    if (p->started && p->delivered >= p->stable.seq) {
        const struct pbft__entry *next = &p->log[(p->delivered + 1) % PBFT_WINDOW_MAX];
        /* Delivery never stops in front of a committed entry. */
        BEX_ASSERT(next->seq != p->delivered + 1 || !next->committed);
    }
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        const struct pbft__checkpoint *c = &p->checkpoints[r];
        BEX_ASSERT(!c->present || c->seq % p->cfg.checkpoint_interval == 0);
        BEX_ASSERT(!p->vc_present[r] || p->vcs[r].replica == r);
        BEX_ASSERT(p->buffer_count[r] <= PBFT_BUFFER_PER_REPLICA);
        for (uint32_t i = 0; i < p->buffer_count[r]; i++) {
            BEX_ASSERT(p->buffer[r][i].replica == r);
            BEX_ASSERT(p->buffer[r][i].view >= p->view);
        }
    }
    if (p->has_pending_proof) {
        BEX_ASSERT(p->pending_proof.seq > p->stable.seq);
        BEX_ASSERT(p->pending_proof.count >= p->q);
    }
    if (out != NULL)
        check_actions(p, out);
}
