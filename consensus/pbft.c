/*
 * pbft.c: lifecycle, the entry points of pbft.h, the action list and the log.
 *
 * Bound of one call's actions (PBFT_ACTIONS_MAX = 6L + 64). The largest call
 * installs a NEW-VIEW: one informational action, a STABLE and a FETCH for
 * min-s, a PERSIST and a BROADCAST of a PREPARE per O-set entry (2L), then the
 * replayed future-view votes can prepare each entry once (PERSIST of the
 * certificate, PERSIST and BROADCAST of the COMMIT: 3L) and commit each entry
 * once (L), plus the VIEW-CHANGE and NEW-VIEW that may precede it in the same
 * call: 6L + 10 in all. Optional sends (resends, answers to resends) are only
 * added while PBFT_ROOM_RESERVE slots stay free, and never while votes are
 * replayed, so they cannot crowd out a mandatory action.
 */
#include "internal.h"

#include <string.h>

#define PBFT_ROOM_RESERVE 16

/* ---------------------------------------------------------------- config */

uint32_t pbft_faults(uint32_t n)
{
    BEX_ASSERT(n >= 1);
    return (n - 1) / 3;
}

uint32_t pbft_quorum(uint32_t n)
{
    uint32_t f = pbft_faults(n);
    uint32_t q = (n + f + 2) / 2;

    /* Any two quorums share f+1 replicas; n-f honest replicas form one. */
    BEX_ASSERT(2 * q >= n + f + 1);
    BEX_ASSERT(q <= n - f);
    return q;
}

void pbft_config_default(struct pbft_config *cfg, uint32_t n, uint32_t self)
{
    BEX_ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof(*cfg));
    cfg->n = n;
    cfg->self = self;
    cfg->checkpoint_interval = PBFT_CHECKPOINT_INTERVAL_DEFAULT;
    cfg->window = PBFT_WINDOW_DEFAULT;
    cfg->view_timeout_ms = PBFT_VIEW_TIMEOUT_MS_DEFAULT;
    cfg->retransmit_ms = PBFT_RETRANSMIT_MS_DEFAULT;
    BEX_ASSERT(cfg->window % cfg->checkpoint_interval == 0);
}

int pbft_config_check(const struct pbft_config *cfg)
{
    if (cfg == NULL)
        return -BEX_EINVAL;
    if (cfg->n < PBFT_REPLICAS_MIN || cfg->n > PBFT_REPLICAS_MAX)
        return -BEX_EINVAL;
    if (cfg->self >= cfg->n)
        return -BEX_EINVAL;
    if (cfg->checkpoint_interval == 0 || cfg->window == 0)
        return -BEX_EINVAL;
    if (cfg->window > PBFT_WINDOW_MAX)
        return -BEX_EINVAL;
    /* Stable checkpoints are multiples of K; the window must end on one. */
    if (cfg->window % cfg->checkpoint_interval != 0)
        return -BEX_EINVAL;
    if (cfg->view_timeout_ms == 0 || cfg->retransmit_ms == 0)
        return -BEX_EINVAL;
    if (cfg->view_timeout_ms > (UINT64_MAX >> (PBFT_BACKOFF_SHIFT_MAX + 2)))
        return -BEX_EINVAL;
    if (cfg->retransmit_ms > UINT64_MAX / 4)
        return -BEX_EINVAL;
    if (cfg->crypto.sign == NULL || cfg->crypto.verify == NULL || cfg->crypto.hash == NULL)
        return -BEX_EINVAL;
    BEX_ASSERT(cfg->window >= cfg->checkpoint_interval);
    BEX_ASSERT(pbft_quorum(cfg->n) <= PBFT_QUORUM_MAX);
    return 0;
}

/* ---------------------------------------------------------------- helpers */

uint32_t pbft__primary_of(const struct pbft *p, uint64_t view)
{
    BEX_ASSERT(p->cfg.n >= PBFT_REPLICAS_MIN);
    return (uint32_t)(view % p->cfg.n);
}

uint64_t pbft__high(const struct pbft *p)
{
    BEX_ASSERT(p->cfg.window <= PBFT_WINDOW_MAX);
    return p->stable.seq + p->cfg.window;
}

bool pbft__digest_is_zero(const uint8_t d[PBFT_DIGEST_BYTES])
{
    uint8_t acc = 0;
    for (size_t i = 0; i < PBFT_DIGEST_BYTES; i++)
        acc |= d[i];
    return acc == 0;
}

/*
 * The base timeout, doubled per view change without a commit (Castro-Liskov
 * 4.5.2), but never below PBFT_TIMEOUT_WAIT_FACTOR times the recent longest
 * wait for a commit: a primary that commits, only slowly because every
 * replica is loaded, is not suspected, while a silent one still is after
 * at most the largest back-off.
 */
uint64_t pbft__timeout(const struct pbft *p)
{
    uint32_t shift = p->backoff < PBFT_BACKOFF_SHIFT_MAX ? p->backoff : PBFT_BACKOFF_SHIFT_MAX;
    uint64_t cap = p->cfg.view_timeout_ms << PBFT_BACKOFF_SHIFT_MAX;
    uint64_t t = p->cfg.view_timeout_ms << shift;
    uint64_t adapted = p->wait_ms < cap / PBFT_TIMEOUT_WAIT_FACTOR ? p->wait_ms * PBFT_TIMEOUT_WAIT_FACTOR : cap;

    BEX_ASSERT(shift <= PBFT_BACKOFF_SHIFT_MAX);
    BEX_ASSERT(p->cfg.view_timeout_ms > 0);
    t = t > adapted ? t : adapted;
    BEX_ASSERT(t <= cap);
    return t;
}

/*
 * Remembers how long the running timer waited for this commit: the longest
 * wait at once, shorter ones pulling the figure down by 1/32 of the
 * difference each, so the timeout follows the load up fast and down slowly
 * (commits come in bursts after a slow one: a quick decay would forget it).
 */
static void note_wait(struct pbft *p)
{
    uint64_t w;

    if (!p->timer_on || !p->active || p->now_ms <= p->timer_since_ms)
        return;
    w = p->now_ms - p->timer_since_ms;
    if (w >= p->wait_ms)
        p->wait_ms = w;
    else
        p->wait_ms -= (p->wait_ms - w) / 32;
    BEX_ASSERT(p->wait_ms >= w);
}

struct pbft__entry *pbft__entry_find(struct pbft *p, uint64_t seq)
{
    struct pbft__entry *e;

    if (seq <= p->stable.seq || seq > pbft__high(p))
        return NULL;
    e = &p->log[seq % PBFT_WINDOW_MAX];
    return e->seq == seq ? e : NULL;
}

void pbft__entry_reset_view(struct pbft__entry *e, uint64_t view)
{
    BEX_ASSERT(e->seq != 0);
    BEX_ASSERT(view >= e->view);
    e->view = view;
    e->has_pre_prepare = false;
    memset(e->digest, 0, sizeof(e->digest));
    memset(e->pre_prepare_sig, 0, sizeof(e->pre_prepare_sig));
    memset(e->prepares, 0, sizeof(e->prepares));
    memset(e->commits, 0, sizeof(e->commits));
    e->prepared_in_view = false;
    memset(e->reply_ms, 0, sizeof(e->reply_ms));
}

struct pbft__entry *pbft__entry_get(struct pbft *p, uint64_t seq, uint64_t view)
{
    struct pbft__entry *e = pbft__entry_find(p, seq);

    if (e == NULL) {
        BEX_ASSERT(seq > p->stable.seq);
        BEX_ASSERT(seq <= pbft__high(p));
        e = &p->log[seq % PBFT_WINDOW_MAX];
        /* Slots below h are freed when h moves, and L <= PBFT_WINDOW_MAX. */
        BEX_ASSERT(e->seq == 0);
        memset(e, 0, sizeof(*e));
        e->seq = seq;
        e->view = view;
        e->first_ms = p->now_ms;
        return e;
    }
    if (e->view < view) {
        pbft__entry_reset_view(e, view);
        e->first_ms = p->now_ms;
    }
    return e;
}

bool pbft__room(const struct pbft_actions *out)
{
    BEX_ASSERT(out->count <= PBFT_ACTIONS_MAX);
    return out->count + PBFT_ROOM_RESERVE <= PBFT_ACTIONS_MAX;
}

struct pbft_action *pbft__push(struct pbft *p, struct pbft_actions *out,
                               enum pbft_action_type type)
{
    struct pbft_action *a;

    (void)p;
    BEX_ASSERT(out->count < PBFT_ACTIONS_MAX);
    BEX_ASSERT(type >= PBFT_ACT_SEND);
    BEX_ASSERT(type <= PBFT_ACT_NEW_VIEW);
    a = &out->items[out->count++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    return a;
}

void pbft__push_vote(struct pbft *p, struct pbft_actions *out, enum pbft_action_type type,
                     uint32_t to, const struct pbft_vote *v)
{
    struct pbft_action *a;

    BEX_ASSERT(v->replica == p->cfg.self);
    BEX_ASSERT(type == PBFT_ACT_SEND || type == PBFT_ACT_BROADCAST || type == PBFT_ACT_PERSIST);
    a = pbft__push(p, out, type);
    a->to = to;
    a->msg.type = (enum pbft_msg_type)v->type;
    a->msg.vote = *v;
}

void pbft__sign_vote(struct pbft *p, struct pbft_vote *v)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    BEX_ASSERT(v->replica == p->cfg.self);
    BEX_ASSERT(v->type >= PBFT_MSG_PRE_PREPARE);
    BEX_ASSERT(v->type <= PBFT_MSG_CHECKPOINT);
    pbft_vote_digest(&p->cfg, v, h);
    p->cfg.crypto.sign(p->cfg.crypto.ctx, h, v->sig);
}

static void progress(struct pbft *p)
{
    /* Castro-Liskov 4.5.2: the back-off ends once requests execute again. */
    p->backoff = 0;
    p->gap_seen = false;
    p->progressed = true;
    if (p->timer_on) {
        p->timer_since_ms = p->now_ms;
        p->timer_deadline_ms = p->now_ms + pbft__timeout(p);
    }
    BEX_ASSERT(p->backoff == 0);
}

void pbft__deliver(struct pbft *p, struct pbft_actions *out)
{
    for (;;) {
        uint64_t seq = p->delivered + 1;
        struct pbft__entry *e = pbft__entry_find(p, seq);
        struct pbft_action *a;

        if (e == NULL || !e->committed)
            break;
        BEX_ASSERT(e->cert.count == p->q);
        a = pbft__push(p, out, PBFT_ACT_COMMIT);
        a->seq = seq;
        memcpy(a->digest, e->committed_digest, PBFT_DIGEST_BYTES);
        a->cert = &e->cert;
        p->delivered = seq;
        p->stats.commits++;
        note_wait(p);
        progress(p);
    }
    BEX_ASSERT(p->executed <= p->delivered);
}

void pbft__fetch(struct pbft *p, struct pbft_actions *out, uint64_t seq,
                 const uint8_t digest[PBFT_DIGEST_BYTES], uint32_t vouchers)
{
    struct pbft_action *a;

    BEX_ASSERT(seq > p->delivered);
    BEX_ASSERT((vouchers >> p->cfg.n) == 0);
    a = pbft__push(p, out, PBFT_ACT_FETCH);
    a->seq = seq;
    memcpy(a->digest, digest, PBFT_DIGEST_BYTES);
    a->vouchers = vouchers;
    p->fetch_at_ms = p->now_ms + p->cfg.retransmit_ms;
    p->stats.fetches++;
}

static void begin(struct pbft_actions *out)
{
    BEX_ASSERT(out != NULL);
    out->count = 0;
}

static void end(const struct pbft *p, const struct pbft_actions *out)
{
#ifdef BEX_CHECKS
    pbft__check(p, out);
#else
    if (p->cfg.checks)
        pbft__check(p, out);
#endif
}

/* ---------------------------------------------------------------- lifecycle */

size_t pbft_size(void)
{
    return sizeof(struct pbft);
}

int pbft_init(struct pbft *p, const struct pbft_config *cfg)
{
    int rc;

    if (p == NULL)
        return -BEX_EINVAL;
    if ((rc = pbft_config_check(cfg)) != 0)
        return rc;
    memset(p, 0, sizeof(*p));
    p->cfg = *cfg;
    p->f = pbft_faults(cfg->n);
    p->q = pbft_quorum(cfg->n);
    p->view = 0;
    p->active = true;
    p->next_seq = 1;
    BEX_ASSERT(p->q >= 2 * p->f + 1);
    BEX_ASSERT(p->stable.seq == 0);
    return 0;
}

void pbft_close(struct pbft *p)
{
    if (p == NULL)
        return;
    memset(p, 0, sizeof(*p));
}

/* The highest view a restored message proves; votes prove it was installed. */
static void restore_view(struct pbft *p, uint64_t view, bool installed)
{
    BEX_ASSERT(!p->started);
    if (view > p->view) {
        p->view = view;
        p->active = installed;
    } else if (view == p->view && installed) {
        p->active = true;
    }
    /* Our NEW-VIEW only matters while its view is the current one. */
    if (p->nv_present && p->nv.view != p->view)
        p->nv_present = false;
    BEX_ASSERT(p->view >= view);
}

void pbft__prune_log(struct pbft *p)
{
    for (size_t i = 0; i < PBFT_WINDOW_MAX; i++) {
        struct pbft__entry *e = &p->log[i];
        if (e->seq != 0 && (e->seq <= p->stable.seq || e->seq > pbft__high(p)))
            memset(e, 0, sizeof(*e));
    }
}

static int restore_stable(struct pbft *p, const struct pbft_checkpoint_proof *proof)
{
    int rc;

    BEX_ASSERT(!p->started);
    if (proof == NULL)
        return -BEX_EINVAL;
    if (p->restore_phase > 1)
        return -BEX_ESTATE;
    if ((rc = pbft__check_proof(&p->cfg, p->q, proof)) != 0)
        return rc;
    p->restore_phase = 1;
    if (proof->seq <= p->stable.seq)
        return 0;
    p->stable = *proof;
    if (p->next_seq <= p->stable.seq)
        p->next_seq = p->stable.seq + 1;
    BEX_ASSERT(p->stable.seq % p->cfg.checkpoint_interval == 0);
    return 0;
}

static int restore_view_change(struct pbft *p, const struct pbft_view_change *vc)
{
    int rc;

    BEX_ASSERT(!p->started);
    if (vc == NULL || vc->replica != p->cfg.self)
        return -BEX_EINVAL;
    if (p->restore_phase > 2)
        return -BEX_ESTATE;
    if ((rc = pbft__check_view_change(p, vc)) != 0)
        return rc;
    p->restore_phase = 2;
    if (vc->stable.seq > p->stable.seq) {
        p->stable = vc->stable;
        pbft__prune_log(p);
    }
    if (vc->new_view < p->view)
        return 0;
    if (p->vc_present[p->cfg.self] && p->vcs[p->cfg.self].new_view >= vc->new_view)
        return 0;
    p->vcs[p->cfg.self] = *vc;
    p->vc_present[p->cfg.self] = true;
    restore_view(p, vc->new_view, false);
    BEX_ASSERT(p->view >= vc->new_view);
    return 0;
}

static int restore_vote(struct pbft *p, const struct pbft_vote *v)
{
    struct pbft__entry *e;
    int rc;

    BEX_ASSERT(!p->started);
    if (v->replica != p->cfg.self || v->seq == 0)
        return -BEX_EINVAL;
    if (v->type == PBFT_MSG_PRE_PREPARE && pbft__primary_of(p, v->view) != p->cfg.self)
        return -BEX_EINVAL;
    if (v->type == PBFT_MSG_PREPARE && pbft__primary_of(p, v->view) == p->cfg.self)
        return -BEX_EINVAL;
    if ((rc = pbft__check_vote_sig(p, v)) != 0)
        return rc;
    p->restore_phase = 3;
    if (v->seq <= p->stable.seq || v->seq > pbft__high(p))
        return -BEX_ELIMIT;
    restore_view(p, v->view, true);
    e = pbft__entry_find(p, v->seq);
    if (e != NULL && e->view > v->view)
        return 0;
    e = pbft__entry_get(p, v->seq, v->view);
    BEX_ASSERT(e->view == v->view);
    if (v->type == PBFT_MSG_PRE_PREPARE) {
        e->has_pre_prepare = true;
        memcpy(e->digest, v->digest, PBFT_DIGEST_BYTES);
        memcpy(e->pre_prepare_sig, v->sig, PBFT_SIG_BYTES);
        if (p->next_seq <= v->seq)
            p->next_seq = v->seq + 1;
    } else {
        struct pbft__slot *s = v->type == PBFT_MSG_PREPARE ? &e->prepares[p->cfg.self]
                                                           : &e->commits[p->cfg.self];
        s->present = true;
        memcpy(s->digest, v->digest, PBFT_DIGEST_BYTES);
        memcpy(s->sig, v->sig, PBFT_SIG_BYTES);
    }
    return 0;
}

static int restore_prepared(struct pbft *p, const struct pbft_prepared *c)
{
    struct pbft__entry *e;
    int rc;

    BEX_ASSERT(!p->started);
    if (c == NULL)
        return -BEX_EINVAL;
    if ((rc = pbft__check_prepared(&p->cfg, p->q, c)) != 0)
        return rc;
    p->restore_phase = 3;
    if (c->seq <= p->stable.seq || c->seq > pbft__high(p))
        return -BEX_ELIMIT;
    /* Like an own vote, an own certificate proves its view was installed. */
    restore_view(p, c->view, true);
    /* A certificate of a later view than the votes restored so far outdates them. */
    e = pbft__entry_get(p, c->seq, c->view);
    if (!e->has_prepared || e->prepared.view < c->view) {
        e->prepared = *c;
        e->has_prepared = true;
    }
    BEX_ASSERT(e->prepared.seq == e->seq);
    return 0;
}

static bool vc_views_ok(const struct pbft_view_change *vc)
{
    if (vc->new_view > PBFT_VIEW_MAX)
        return false;
    for (uint32_t i = 0; i < vc->prepared_count && i < PBFT_WINDOW_MAX; i++) {
        if (vc->prepared[i].view > PBFT_VIEW_MAX)
            return false;
    }
    return true;
}

bool pbft_views_ok(const struct pbft_msg *msg)
{
    switch (msg->type) {
    case PBFT_MSG_VIEW_CHANGE:
        return msg->view_change == NULL || vc_views_ok(msg->view_change);
    case PBFT_MSG_NEW_VIEW:
        if (msg->new_view == NULL)
            return true;
        if (msg->new_view->view > PBFT_VIEW_MAX)
            return false;
        for (uint32_t i = 0; i < msg->new_view->view_change_count && i < PBFT_QUORUM_MAX; i++) {
            if (!vc_views_ok(&msg->new_view->view_changes[i]))
                return false;
        }
        for (uint32_t i = 0; i < msg->new_view->pre_prepare_count && i < PBFT_WINDOW_MAX; i++) {
            if (msg->new_view->pre_prepares[i].view > PBFT_VIEW_MAX)
                return false;
        }
        return true;
    case PBFT_MSG_PREPARED:
        return msg->prepared == NULL || msg->prepared->view <= PBFT_VIEW_MAX;
    case PBFT_MSG_STABLE:
        return true;
    default:
        return msg->vote.view <= PBFT_VIEW_MAX;
    }
}

int pbft_restore(struct pbft *p, const struct pbft_msg *msg)
{
    if (p == NULL || msg == NULL)
        return -BEX_EINVAL;
    if (p->started)
        return -BEX_ESTATE;
    if (!pbft_views_ok(msg))
        return -BEX_EINVAL;
    BEX_ASSERT(p->restore_phase >= 0);
    BEX_ASSERT(p->restore_phase <= 3);
    switch (msg->type) {
    case PBFT_MSG_STABLE:
        return restore_stable(p, msg->proof);
    case PBFT_MSG_VIEW_CHANGE:
        return restore_view_change(p, msg->view_change);
    case PBFT_MSG_NEW_VIEW:
        if (msg->new_view == NULL)
            return -BEX_EINVAL;
        if (p->restore_phase > 2)
            return -BEX_ESTATE;
        return pbft__restore_new_view(p, msg->new_view);
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        if (msg->vote.type != (uint32_t)msg->type)
            return -BEX_EINVAL;
        return restore_vote(p, &msg->vote);
    case PBFT_MSG_PREPARED:
        return restore_prepared(p, msg->prepared);
    case PBFT_MSG_CHECKPOINT:
        break;
    }
    return -BEX_EINVAL;
}

int pbft_start(struct pbft *p, uint64_t now_ms, uint64_t executed_seq,
               const uint8_t state_root[PBFT_DIGEST_BYTES], struct pbft_actions *out)
{
    if (p == NULL || state_root == NULL)
        return -BEX_EINVAL;
    begin(out);
    if (p->started)
        return -BEX_ESTATE;
    p->started = true;
    p->now_ms = now_ms;
    p->executed = executed_seq;
    p->delivered = executed_seq;
    memcpy(p->exec_root, state_root, PBFT_DIGEST_BYTES);
    /* Votes of views below the restored one count for nothing now. */
    for (size_t i = 0; i < PBFT_WINDOW_MAX; i++) {
        struct pbft__entry *e = &p->log[i];
        if (e->seq != 0 && e->view < p->view)
            pbft__entry_reset_view(e, p->view);
    }
    if (p->next_seq <= p->stable.seq)
        p->next_seq = p->stable.seq + 1;
    if (!p->active) {
        BEX_ASSERT(p->vc_present[p->cfg.self]);
        BEX_ASSERT(p->vcs[p->cfg.self].new_view == p->view);
    }
    p->retransmit_at_ms = now_ms;
    if (executed_seq > 0 && executed_seq % p->cfg.checkpoint_interval == 0 &&
        executed_seq >= p->stable.seq && executed_seq <= pbft__high(p))
        pbft__own_checkpoint(p, executed_seq, state_root, out);
    if (p->delivered < p->stable.seq)
        pbft__fetch(p, out, p->stable.seq, p->stable.digest, 0);
    end(p, out);
    return 0;
}

/* ---------------------------------------------------------------- operations */

int pbft_step(struct pbft *p, const struct pbft_msg *msg, struct pbft_actions *out)
{
    int rc;

    begin(out);
    if (p == NULL || msg == NULL)
        return -BEX_EINVAL;
    if (!p->started)
        return -BEX_ESTATE;
    if (!pbft_views_ok(msg)) {
        p->stats.dropped_malformed++;
        return -BEX_EINVAL;
    }
    switch (msg->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        if (msg->vote.type != (uint32_t)msg->type) {
            p->stats.dropped_malformed++;
            rc = -BEX_EINVAL;
            break;
        }
        rc = pbft__on_vote(p, &msg->vote, false, out);
        break;
    case PBFT_MSG_CHECKPOINT:
        if (msg->vote.type != PBFT_MSG_CHECKPOINT) {
            p->stats.dropped_malformed++;
            rc = -BEX_EINVAL;
            break;
        }
        rc = pbft__on_checkpoint(p, &msg->vote, out);
        break;
    case PBFT_MSG_VIEW_CHANGE:
        rc = pbft__on_view_change(p, msg->view_change, out);
        break;
    case PBFT_MSG_NEW_VIEW:
        rc = pbft__on_new_view(p, msg->new_view, out);
        break;
    default:
        p->stats.dropped_malformed++;
        rc = -BEX_EINVAL;
        break;
    }
    BEX_ASSERT(rc <= 0);
    BEX_ASSERT(out->count <= PBFT_ACTIONS_MAX);
    end(p, out);
    return rc;
}

int pbft_pause(struct pbft *p, uint64_t now_ms)
{
    if (p == NULL || now_ms < p->now_ms)
        return -BEX_EINVAL;
    if (!p->started)
        return -BEX_ESTATE;
    p->now_ms = now_ms;
    if (p->timer_on) {
        p->timer_since_ms = now_ms;
        p->timer_deadline_ms = now_ms + pbft__timeout(p);
    }
    BEX_ASSERT(!p->timer_on || p->timer_deadline_ms > now_ms);
    BEX_ASSERT(p->now_ms == now_ms);
    return 0;
}

int pbft_tick(struct pbft *p, uint64_t now_ms, struct pbft_actions *out)
{
    begin(out);
    if (p == NULL)
        return -BEX_EINVAL;
    if (!p->started)
        return -BEX_ESTATE;
    if (now_ms < p->now_ms)
        return -BEX_EINVAL;
    p->now_ms = now_ms;
    /*
     * Steps run at the time of the last tick: when the node was busy between
     * two ticks, a commit it has just processed restarted the timer at a
     * time long past. Restart it again now, so that only time in which no
     * progress was seen counts against the primary.
     */
    if (p->progressed && p->timer_on) {
        p->timer_since_ms = now_ms;
        p->timer_deadline_ms = now_ms + pbft__timeout(p);
    }
    p->progressed = false;
    /*
     * Catching up first: adopting a checkpoint may free log entries, which
     * must not happen after this call handed out pointers into them.
     */
    pbft__check_behind(p, out);
    pbft__view_tick(p, out);
    if (now_ms >= p->retransmit_at_ms) {
        pbft__retransmit(p, out);
        p->retransmit_at_ms = now_ms + p->cfg.retransmit_ms;
    }
    BEX_ASSERT(p->now_ms == now_ms);
    BEX_ASSERT(p->retransmit_at_ms > now_ms);
    end(p, out);
    return 0;
}

int pbft_next_seq(const struct pbft *p, uint64_t *seq)
{
    if (p == NULL || seq == NULL)
        return -BEX_EINVAL;
    if (!p->started || !p->active)
        return -BEX_ESTATE;
    if (pbft__primary_of(p, p->view) != p->cfg.self)
        return -BEX_ESTATE;
    BEX_ASSERT(p->next_seq > p->stable.seq);
    if (p->next_seq > pbft__high(p))
        return -BEX_EFULL;
    *seq = p->next_seq;
    BEX_ASSERT(*seq <= pbft__high(p));
    return 0;
}

int pbft_propose(struct pbft *p, const uint8_t digest[PBFT_DIGEST_BYTES],
                 struct pbft_actions *out)
{
    struct pbft_vote v;
    struct pbft__entry *e;
    uint64_t seq;
    int rc;

    begin(out);
    if (p == NULL || digest == NULL)
        return -BEX_EINVAL;
    if ((rc = pbft_next_seq(p, &seq)) != 0)
        return rc;
    /* Castro-Liskov 4.2: only a view change may propose the null request. */
    if (pbft__digest_is_zero(digest))
        return -BEX_EINVAL;
    e = pbft__entry_get(p, seq, p->view);
    BEX_ASSERT(e->view == p->view);
    BEX_ASSERT(!e->has_pre_prepare);
    memset(&v, 0, sizeof(v));
    v.type = PBFT_MSG_PRE_PREPARE;
    v.view = p->view;
    v.seq = seq;
    memcpy(v.digest, digest, PBFT_DIGEST_BYTES);
    v.replica = p->cfg.self;
    pbft__sign_vote(p, &v);
    e->has_pre_prepare = true;
    memcpy(e->digest, digest, PBFT_DIGEST_BYTES);
    memcpy(e->pre_prepare_sig, v.sig, PBFT_SIG_BYTES);
    e->first_ms = p->now_ms;
    pbft__push_vote(p, out, PBFT_ACT_PERSIST, 0, &v);
    pbft__push_vote(p, out, PBFT_ACT_BROADCAST, 0, &v);
    p->next_seq = seq + 1;
    pbft__evaluate(p, e, out);
    end(p, out);
    return 0;
}

int pbft_executed(struct pbft *p, uint64_t seq, const uint8_t state_root[PBFT_DIGEST_BYTES],
                  struct pbft_actions *out)
{
    begin(out);
    if (p == NULL || state_root == NULL)
        return -BEX_EINVAL;
    if (!p->started)
        return -BEX_ESTATE;
    if (seq != p->executed + 1)
        return -BEX_EINVAL;
    if (seq > p->delivered)
        return -BEX_ESTATE;
    p->executed = seq;
    memcpy(p->exec_root, state_root, PBFT_DIGEST_BYTES);
    if (seq % p->cfg.checkpoint_interval == 0)
        pbft__own_checkpoint(p, seq, state_root, out);
    if (p->has_pending_proof && p->pending_proof.seq <= p->executed)
        pbft__offer_proof(p, &p->pending_proof, out);
    BEX_ASSERT(p->executed <= p->delivered);
    end(p, out);
    return 0;
}

int pbft_transferred(struct pbft *p, uint64_t seq, const uint8_t state_root[PBFT_DIGEST_BYTES],
                     struct pbft_actions *out)
{
    begin(out);
    if (p == NULL || state_root == NULL)
        return -BEX_EINVAL;
    if (!p->started || p->executed != p->delivered)
        return -BEX_ESTATE;
    if (seq <= p->delivered)
        return -BEX_EINVAL;
    if (seq == p->stable.seq && memcmp(state_root, p->stable.digest, PBFT_DIGEST_BYTES) != 0)
        return -BEX_ECORRUPT;
    if (p->has_pending_proof && seq == p->pending_proof.seq &&
        memcmp(state_root, p->pending_proof.digest, PBFT_DIGEST_BYTES) != 0)
        return -BEX_ECORRUPT;
    p->delivered = seq;
    p->executed = seq;
    memcpy(p->exec_root, state_root, PBFT_DIGEST_BYTES);
    progress(p);
    if (seq % p->cfg.checkpoint_interval == 0 && seq <= pbft__high(p))
        pbft__own_checkpoint(p, seq, state_root, out);
    if (p->has_pending_proof && p->pending_proof.seq <= p->executed)
        pbft__offer_proof(p, &p->pending_proof, out);
    pbft__deliver(p, out);
    BEX_ASSERT(p->executed == seq);
    BEX_ASSERT(p->delivered >= seq);
    end(p, out);
    return 0;
}

void pbft_set_pending(struct pbft *p, bool pending)
{
    BEX_ASSERT(p != NULL);
    p->pending = pending;
}

/* ---------------------------------------------------------------- queries */

uint64_t pbft_view(const struct pbft *p)
{
    return p->view;
}

bool pbft_view_active(const struct pbft *p)
{
    return p->active;
}

uint32_t pbft_primary(const struct pbft *p)
{
    return pbft__primary_of(p, p->view);
}

uint64_t pbft_stable_seq(const struct pbft *p)
{
    return p->stable.seq;
}

uint64_t pbft_committed_seq(const struct pbft *p)
{
    return p->delivered;
}

uint64_t pbft_executed_seq(const struct pbft *p)
{
    return p->executed;
}

uint32_t pbft_log_count(const struct pbft *p)
{
    uint32_t n = 0;
    for (size_t i = 0; i < PBFT_WINDOW_MAX; i++)
        n += p->log[i].seq != 0;
    return n;
}

const struct pbft_stats *pbft_stats(const struct pbft *p)
{
    return &p->stats;
}
