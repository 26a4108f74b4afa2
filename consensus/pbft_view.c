/*
 * pbft_view.c: view changes (Castro-Liskov OSDI'99 4.4, TOCS'02 4.5.2).
 *
 * A replica whose timer expires, or that sees f+1 VIEW-CHANGEs for higher
 * views, sends a VIEW-CHANGE carrying its stable checkpoint proof and its P
 * set. The primary of the new view collects q of them and sends a NEW-VIEW
 * whose O set every backup recomputes from the same VIEW-CHANGEs before it
 * accepts the view. Timers: the first expiry uses the base timeout; each
 * further view change without a commit in between doubles it (up to
 * 2^PBFT_BACKOFF_SHIFT_MAX); under load the timeout stretches to a multiple
 * of the recent wait for a commit, within the same maximum (pbft__timeout());
 * a replica changing views only runs the timer once q VIEW-CHANGEs for its
 * target view are in, so a lone replica cannot race through views the
 * others never join.
 */
#include "internal.h"

#include <string.h>

/* The O set a NEW-VIEW must carry, computed from its VIEW-CHANGEs. */
struct o_set {
    uint64_t min_s;
    uint32_t min_index; /* the VIEW-CHANGE whose checkpoint proves min-s */
    uint64_t max_s;
    uint8_t digests[PBFT_WINDOW_MAX][PBFT_DIGEST_BYTES];
};

/* VIEW-CHANGEs for exactly view, or for view and later ones. */
static uint32_t count_view_changes(const struct pbft *p, uint64_t view, bool or_later)
{
    uint32_t n = 0;

    BEX_ASSERT(p->cfg.n <= PBFT_REPLICAS_MAX);
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        if (!p->vc_present[r])
            continue;
        n += p->vcs[r].new_view == view || (or_later && p->vcs[r].new_view > view);
    }
    BEX_ASSERT(n <= p->cfg.n);
    return n;
}

/*
 * TOCS'02 4.5.2: a replica changing views runs its timer only once q
 * replicas want to leave the old view. A VIEW-CHANGE for a later view
 * counts too: its sender gave up on every view below it, and a slot keeps
 * only a replica's latest VIEW-CHANGE.
 */
static void maybe_start_timer(struct pbft *p)
{
    BEX_ASSERT(!p->active);
    if (p->timer_on || count_view_changes(p, p->view, true) < p->q)
        return;
    p->timer_on = true;
    p->timer_since_ms = p->now_ms;
    p->timer_deadline_ms = p->now_ms + pbft__timeout(p);
    BEX_ASSERT(p->timer_deadline_ms >= p->now_ms);
}

/*
 * min-s is the latest stable checkpoint in the VIEW-CHANGEs, max-s the
 * highest prepared seq; every seq between gets the digest of its prepared
 * certificate of the highest view, or the null request. Two certificates of
 * one view with different digests need f+1 faulty replicas; the smaller
 * digest wins so that every replica computes the same set regardless.
 */
static int compute_o(const struct pbft *p, const struct pbft_view_change *vcs, uint32_t count,
                     struct o_set *o)
{
    bool has[PBFT_WINDOW_MAX];
    uint64_t best_view[PBFT_WINDOW_MAX];

    BEX_ASSERT(count >= 1);
    BEX_ASSERT(count <= PBFT_QUORUM_MAX);
    memset(o, 0, sizeof(*o));
    for (uint32_t i = 0; i < count; i++) {
        if (i == 0 || vcs[i].stable.seq > o->min_s) {
            o->min_s = vcs[i].stable.seq;
            o->min_index = i;
        }
    }
    o->max_s = o->min_s;
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t k = 0; k < vcs[i].prepared_count; k++) {
            if (vcs[i].prepared[k].seq > o->max_s)
                o->max_s = vcs[i].prepared[k].seq;
        }
    }
    if (o->max_s - o->min_s > p->cfg.window)
        return -BEX_EINVAL;
    memset(has, 0, sizeof(has));
    memset(best_view, 0, sizeof(best_view));
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t k = 0; k < vcs[i].prepared_count; k++) {
            const struct pbft_prepared *c = &vcs[i].prepared[k];
            uint64_t at;
            if (c->seq <= o->min_s)
                continue;
            at = c->seq - o->min_s - 1;
            BEX_ASSERT(at < p->cfg.window);
            if (has[at] && c->view < best_view[at])
                continue;
            if (has[at] && c->view == best_view[at] &&
                memcmp(c->digest, o->digests[at], PBFT_DIGEST_BYTES) >= 0)
                continue;
            has[at] = true;
            best_view[at] = c->view;
            memcpy(o->digests[at], c->digest, PBFT_DIGEST_BYTES);
        }
    }
    return 0;
}

/* Every rule of a NEW-VIEW, recomputing O from its VIEW-CHANGEs. */
static int validate_new_view(const struct pbft *p, const struct pbft_new_view *nv,
                             struct o_set *o)
{
    uint32_t max_vcs = p->cfg.n < PBFT_QUORUM_MAX ? p->cfg.n : PBFT_QUORUM_MAX;
    uint8_t h[PBFT_DIGEST_BYTES];
    uint32_t seen = 0;
    int rc;

    BEX_ASSERT(nv->replica < p->cfg.n);
    BEX_ASSERT(nv->replica == pbft__primary_of(p, nv->view));
    if (nv->view_change_count < p->q || nv->view_change_count > max_vcs)
        return -BEX_ELIMIT;
    if (nv->pre_prepare_count > p->cfg.window)
        return -BEX_ELIMIT;
    for (uint32_t i = 0; i < nv->view_change_count; i++) {
        const struct pbft_view_change *vc = &nv->view_changes[i];
        if (vc->replica >= p->cfg.n || (seen & (1u << vc->replica)))
            return -BEX_EINVAL;
        if (vc->new_view != nv->view)
            return -BEX_EINVAL;
        if (vc->stable.count > PBFT_QUORUM_MAX || vc->prepared_count > p->cfg.window)
            return -BEX_ELIMIT;
        /* The NEW-VIEW digest hashes every certificate: their counts are checked first. */
        for (uint32_t k = 0; k < vc->prepared_count; k++) {
            if (vc->prepared[k].prepare_count > PBFT_QUORUM_MAX - 1)
                return -BEX_ELIMIT;
        }
        seen |= 1u << vc->replica;
    }
    for (uint32_t i = 0; i < nv->pre_prepare_count; i++) {
        if (nv->pre_prepares[i].type != PBFT_MSG_PRE_PREPARE)
            return -BEX_EINVAL;
    }
    pbft_new_view_digest(&p->cfg, nv, h);
    if (!p->cfg.crypto.verify(p->cfg.crypto.ctx, nv->replica, h, nv->sig))
        return -BEX_ESIG;
    for (uint32_t i = 0; i < nv->view_change_count; i++) {
        const struct pbft_view_change *vc = &nv->view_changes[i];
        /* A copy of a VIEW-CHANGE we validated already needs no second check. */
        if (p->vc_present[vc->replica] && memcmp(&p->vcs[vc->replica], vc, sizeof(*vc)) == 0)
            continue;
        if ((rc = pbft__check_view_change(p, vc)) != 0)
            return rc;
    }
    if ((rc = compute_o(p, nv->view_changes, nv->view_change_count, o)) != 0)
        return rc;
    if (nv->pre_prepare_count != o->max_s - o->min_s)
        return -BEX_EINVAL;
    for (uint32_t i = 0; i < nv->pre_prepare_count; i++) {
        const struct pbft_vote *pp = &nv->pre_prepares[i];
        if (pp->view != nv->view)
            return -BEX_EINVAL;
        if (pp->seq != o->min_s + 1 + i || pp->replica != nv->replica)
            return -BEX_EINVAL;
        if (memcmp(pp->digest, o->digests[i], PBFT_DIGEST_BYTES) != 0)
            return -BEX_EINVAL;
        if (pbft__check_vote_sig(p, pp) != 0)
            return -BEX_ESIG;
    }
    return 0;
}

/* Replays the votes kept for the view just installed; keeps later ones. */
static void replay_buffer(struct pbft *p, struct pbft_actions *out)
{
    struct pbft_vote votes[PBFT_BUFFER_PER_REPLICA];

    BEX_ASSERT(p->active);
    BEX_ASSERT(!p->replaying);
    p->replaying = true;
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        uint32_t count = p->buffer_count[r];
        memcpy(votes, p->buffer[r], count * sizeof(votes[0]));
        p->buffer_count[r] = 0;
        for (uint32_t i = 0; i < count; i++) {
            if (votes[i].view < p->view)
                continue;
            (void)pbft__on_vote(p, &votes[i], true, out);
        }
    }
    p->replaying = false;
}

static void drop_buffered_below(struct pbft *p, uint64_t view)
{
    BEX_ASSERT(view == p->view);
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        uint32_t kept = 0;
        for (uint32_t i = 0; i < p->buffer_count[r]; i++) {
            if (p->buffer[r][i].view >= view)
                p->buffer[r][kept++] = p->buffer[r][i];
        }
        BEX_ASSERT(kept <= p->buffer_count[r]);
        p->buffer_count[r] = kept;
    }
}

/*
 * Enters view with O set pps (Castro-Liskov 4.4): moves the low watermark up
 * to min-s, keeps commits and prepared certificates, drops the votes of the
 * old view, and prepares every request the new primary re-issued.
 */
static void install(struct pbft *p, uint64_t view, const struct pbft_checkpoint_proof *min_proof,
                    uint64_t max_s, const struct pbft_vote *pps, uint32_t pp_count,
                    struct pbft_actions *out)
{
    struct pbft_action *a;

    BEX_ASSERT(view >= p->view);
    BEX_ASSERT(max_s >= min_proof->seq);
    p->view = view;
    p->active = true;
    p->nv_present = false;
    p->timer_on = false;
    p->stats.new_views++;
    if (min_proof->seq > p->stable.seq)
        pbft__adopt_proof(p, min_proof, out);
    for (size_t i = 0; i < PBFT_WINDOW_MAX; i++) {
        struct pbft__entry *e = &p->log[i];
        if (e->seq == 0)
            continue;
        if (!e->committed && !e->has_prepared) {
            memset(e, 0, sizeof(*e));
            continue;
        }
        pbft__entry_reset_view(e, view);
        e->first_ms = p->now_ms;
    }
    for (uint32_t i = 0; i < pp_count; i++) {
        const struct pbft_vote *pp = &pps[i];
        struct pbft__entry *e;
        if (pp->seq <= p->stable.seq)
            continue;
        BEX_ASSERT(pp->seq <= pbft__high(p));
        e = pbft__entry_get(p, pp->seq, view);
        e->has_pre_prepare = true;
        memcpy(e->digest, pp->digest, PBFT_DIGEST_BYTES);
        memcpy(e->pre_prepare_sig, pp->sig, PBFT_SIG_BYTES);
        pbft__send_prepare(p, e, out);
    }
    p->next_seq = (max_s > p->stable.seq ? max_s : p->stable.seq) + 1;
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        if (p->vc_present[r] && p->vcs[r].new_view <= view)
            p->vc_present[r] = false;
    }
    a = pbft__push(p, out, PBFT_ACT_NEW_VIEW);
    a->view = view;
    replay_buffer(p, out);
    pbft__deliver(p, out);
}

/* The new primary sends NEW-VIEW once q VIEW-CHANGEs, its own among them, are in. */
static void try_new_view(struct pbft *p, struct pbft_actions *out)
{
    uint32_t self = p->cfg.self;
    struct pbft_new_view *nv = &p->nv;
    struct pbft_action *a;
    uint8_t h[PBFT_DIGEST_BYTES];
    struct o_set o;
    int rc;

    if (p->active || pbft__primary_of(p, p->view) != self)
        return;
    BEX_ASSERT(p->vc_present[self]);
    BEX_ASSERT(p->vcs[self].new_view == p->view);
    if (count_view_changes(p, p->view, false) < p->q)
        return;
    memset(nv, 0, sizeof(*nv));
    nv->view = p->view;
    nv->view_changes[nv->view_change_count++] = p->vcs[self];
    for (uint32_t r = 0; r < p->cfg.n && nv->view_change_count < p->q; r++) {
        if (r != self && p->vc_present[r] && p->vcs[r].new_view == p->view)
            nv->view_changes[nv->view_change_count++] = p->vcs[r];
    }
    BEX_ASSERT(nv->view_change_count == p->q);
    rc = compute_o(p, nv->view_changes, nv->view_change_count, &o);
    /* Valid VIEW-CHANGEs keep their certificates within L of their own checkpoint. */
    BEX_ASSERT(rc == 0);
    for (uint64_t seq = o.min_s + 1; seq <= o.max_s; seq++) {
        struct pbft_vote *pp = &nv->pre_prepares[nv->pre_prepare_count++];
        pp->type = PBFT_MSG_PRE_PREPARE;
        pp->view = p->view;
        pp->seq = seq;
        memcpy(pp->digest, o.digests[seq - o.min_s - 1], PBFT_DIGEST_BYTES);
        pp->replica = self;
        pbft__sign_vote(p, pp);
    }
    nv->replica = self;
    pbft_new_view_digest(&p->cfg, nv, h);
    p->cfg.crypto.sign(p->cfg.crypto.ctx, h, nv->sig);
    a = pbft__push(p, out, PBFT_ACT_PERSIST);
    a->msg.type = PBFT_MSG_NEW_VIEW;
    a->msg.new_view = nv;
    a = pbft__push(p, out, PBFT_ACT_BROADCAST);
    a->msg.type = PBFT_MSG_NEW_VIEW;
    a->msg.new_view = nv;
    install(p, nv->view, &nv->view_changes[o.min_index].stable, o.max_s, nv->pre_prepares,
            nv->pre_prepare_count, out);
    p->nv_present = true;
}

static void start_view_change(struct pbft *p, uint64_t view, struct pbft_actions *out)
{
    uint32_t self = p->cfg.self;
    struct pbft_view_change *vc = &p->vcs[self];
    struct pbft_action *a;
    uint8_t h[PBFT_DIGEST_BYTES];

    BEX_ASSERT(view > p->view);
    BEX_ASSERT(p->started);
    p->view = view;
    p->active = false;
    p->nv_present = false;
    p->timer_on = false;
    if (p->backoff < 32)
        p->backoff++;
    p->stats.view_changes++;
    /* Castro-Liskov 4.4: the checkpoint proof and the P set of the log. */
    memset(vc, 0, sizeof(*vc));
    vc->new_view = view;
    vc->stable = p->stable;
    for (uint64_t seq = p->stable.seq + 1; seq <= pbft__high(p); seq++) {
        const struct pbft__entry *e = pbft__entry_find(p, seq);
        if (e != NULL && e->has_prepared) {
            BEX_ASSERT(e->prepared.seq == seq);
            vc->prepared[vc->prepared_count++] = e->prepared;
        }
    }
    vc->replica = self;
    pbft_view_change_digest(&p->cfg, vc, h);
    p->cfg.crypto.sign(p->cfg.crypto.ctx, h, vc->sig);
    p->vc_present[self] = true;
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        if (p->vc_present[r] && p->vcs[r].new_view < view)
            p->vc_present[r] = false;
    }
    drop_buffered_below(p, view);
    a = pbft__push(p, out, PBFT_ACT_PERSIST);
    a->msg.type = PBFT_MSG_VIEW_CHANGE;
    a->msg.view_change = vc;
    a = pbft__push(p, out, PBFT_ACT_BROADCAST);
    a->msg.type = PBFT_MSG_VIEW_CHANGE;
    a->msg.view_change = vc;
    a = pbft__push(p, out, PBFT_ACT_VIEW_CHANGE);
    a->view = view;
    p->retransmit_at_ms = p->now_ms + p->cfg.retransmit_ms;
    maybe_start_timer(p);
    try_new_view(p, out);
}

/*
 * TOCS'02 4.5.2: f+1 VIEW-CHANGEs for views above ours prove that an honest
 * replica moved on; join the smallest view such a set vouches for, which is
 * the (f+1)-th highest.
 */
static bool join_higher_view(struct pbft *p, struct pbft_actions *out)
{
    uint64_t views[PBFT_REPLICAS_MAX];
    uint32_t k = 0;

    for (uint32_t r = 0; r < p->cfg.n; r++) {
        if (r == p->cfg.self || !p->vc_present[r] || p->vcs[r].new_view <= p->view)
            continue;
        uint64_t v = p->vcs[r].new_view;
        uint32_t at = k++;
        while (at > 0 && views[at - 1] < v) {
            views[at] = views[at - 1];
            at--;
        }
        views[at] = v;
    }
    BEX_ASSERT(k <= p->cfg.n);
    if (k < p->f + 1)
        return false;
    BEX_ASSERT(views[p->f] > p->view);
    start_view_change(p, views[p->f], out);
    return true;
}

int pbft__on_view_change(struct pbft *p, const struct pbft_view_change *vc,
                         struct pbft_actions *out)
{
    uint32_t r;
    int rc;

    if (vc == NULL) {
        p->stats.dropped_malformed++;
        return -BEX_EINVAL;
    }
    r = vc->replica;
    if (r >= p->cfg.n || r == p->cfg.self) {
        p->stats.dropped_non_member++;
        return -BEX_EPERM;
    }
    if (vc->new_view < p->view || (vc->new_view == p->view && p->active)) {
        if (vc->new_view != p->view) {
            p->stats.dropped_old_view++;
            return -BEX_ESTATE;
        }
        /* It missed our NEW-VIEW: send it again, once per retransmit period. */
        if (p->nv_present && p->now_ms >= p->nv_reply_ms[r] && pbft__room(out)) {
            struct pbft_action *a = pbft__push(p, out, PBFT_ACT_SEND);
            a->to = r;
            a->msg.type = PBFT_MSG_NEW_VIEW;
            a->msg.new_view = &p->nv;
            p->nv_reply_ms[r] = p->now_ms + p->cfg.retransmit_ms;
            p->stats.retransmits++;
        }
        p->stats.duplicates++;
        return 0;
    }
    if (p->vc_present[r] && p->vcs[r].new_view >= vc->new_view) {
        if (p->vcs[r].new_view > vc->new_view) {
            p->stats.dropped_old_view++;
            return -BEX_ESTATE;
        }
        p->stats.duplicates++;
        return 0;
    }
    if ((rc = pbft__check_view_change(p, vc)) != 0) {
        p->stats.dropped_bad_view_change++;
        return rc;
    }
    p->vcs[r] = *vc;
    p->vc_present[r] = true;
    /* A valid VIEW-CHANGE carries a valid checkpoint proof: it can show we are behind. */
    if (p->vcs[r].stable.seq > p->stable.seq)
        pbft__offer_proof(p, &p->vcs[r].stable, out);
    if (join_higher_view(p, out))
        return 0;
    if (!p->active && vc->new_view >= p->view) {
        maybe_start_timer(p);
        try_new_view(p, out);
    }
    return 0;
}

int pbft__on_new_view(struct pbft *p, const struct pbft_new_view *nv, struct pbft_actions *out)
{
    struct o_set o;
    int rc;

    if (nv == NULL) {
        p->stats.dropped_malformed++;
        return -BEX_EINVAL;
    }
    if (nv->replica >= p->cfg.n || nv->replica == p->cfg.self) {
        p->stats.dropped_non_member++;
        return -BEX_EPERM;
    }
    if (nv->view < p->view) {
        p->stats.dropped_old_view++;
        return -BEX_ESTATE;
    }
    if (nv->view == p->view && p->active) {
        p->stats.duplicates++;
        return 0;
    }
    if (nv->replica != pbft__primary_of(p, nv->view)) {
        p->stats.dropped_wrong_primary++;
        return -BEX_EPERM;
    }
    if ((rc = validate_new_view(p, nv, &o)) != 0) {
        p->stats.dropped_bad_new_view++;
        return rc;
    }
    install(p, nv->view, &nv->view_changes[o.min_index].stable, o.max_s, nv->pre_prepares,
            nv->pre_prepare_count, out);
    BEX_ASSERT(p->active);
    BEX_ASSERT(p->view == nv->view);
    return 0;
}

int pbft__restore_new_view(struct pbft *p, const struct pbft_new_view *nv)
{
    const struct pbft_checkpoint_proof *min_proof;
    struct o_set o;
    int rc;

    BEX_ASSERT(!p->started);
    if (nv->replica != p->cfg.self || pbft__primary_of(p, nv->view) != p->cfg.self)
        return -BEX_EINVAL;
    if ((rc = validate_new_view(p, nv, &o)) != 0)
        return rc;
    p->restore_phase = 2;
    min_proof = &nv->view_changes[o.min_index].stable;
    if (min_proof->seq > p->stable.seq) {
        p->stable = *min_proof;
        pbft__prune_log(p);
    }
    if (nv->view < p->view)
        return 0;
    p->view = nv->view;
    p->active = true;
    p->nv = *nv;
    p->nv_present = true;
    for (uint32_t i = 0; i < nv->pre_prepare_count; i++) {
        const struct pbft_vote *pp = &nv->pre_prepares[i];
        struct pbft__entry *e;
        if (pp->seq <= p->stable.seq || pp->seq > pbft__high(p))
            continue;
        e = pbft__entry_get(p, pp->seq, nv->view);
        e->has_pre_prepare = true;
        memcpy(e->digest, pp->digest, PBFT_DIGEST_BYTES);
        memcpy(e->pre_prepare_sig, pp->sig, PBFT_SIG_BYTES);
    }
    if (p->next_seq <= o.max_s)
        p->next_seq = o.max_s + 1;
    if (p->next_seq <= p->stable.seq)
        p->next_seq = p->stable.seq + 1;
    BEX_ASSERT(p->view == nv->view);
    return 0;
}

void pbft__view_tick(struct pbft *p, struct pbft_actions *out)
{
    BEX_ASSERT(p->started);
    BEX_ASSERT(p->backoff <= 32);
    if (p->active) {
        if (!pbft__waiting(p)) {
            p->timer_on = false;
            return;
        }
        if (!p->timer_on) {
            p->timer_on = true;
            p->timer_since_ms = p->now_ms;
            p->timer_deadline_ms = p->now_ms + pbft__timeout(p);
            return;
        }
    } else if (!p->timer_on) {
        maybe_start_timer(p);
        return;
    }
    if (p->now_ms >= p->timer_deadline_ms)
        start_view_change(p, p->view + 1, out);
}
