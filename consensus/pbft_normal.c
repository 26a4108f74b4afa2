/*
 * pbft_normal.c: the normal case (Castro-Liskov 4.2), garbage collection by
 * checkpoints (4.3), state transfer triggers, retransmission.
 */
#include "internal.h"

#include <string.h>

static const struct pbft_vote *own_checkpoint_at(const struct pbft *p, uint64_t seq);

static struct pbft__slot *vote_slots(struct pbft__entry *e, uint32_t type)
{
    BEX_ASSERT(type == PBFT_MSG_PREPARE || type == PBFT_MSG_COMMIT);
    BEX_ASSERT(e->seq != 0);
    return type == PBFT_MSG_PREPARE ? e->prepares : e->commits;
}

static uint32_t count_matching(const struct pbft *p, const struct pbft__slot *slots,
                               const uint8_t digest[PBFT_DIGEST_BYTES])
{
    uint32_t n = 0;

    BEX_ASSERT(p->cfg.n <= PBFT_REPLICAS_MAX);
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        if (slots[r].present && memcmp(slots[r].digest, digest, PBFT_DIGEST_BYTES) == 0)
            n++;
    }
    BEX_ASSERT(n <= p->cfg.n);
    return n;
}

/* The largest number of replicas agreeing on one digest among slots. */
static uint32_t count_best(const struct pbft *p, const struct pbft__slot *slots)
{
    uint32_t best = 0;

    BEX_ASSERT(p->cfg.n >= PBFT_REPLICAS_MIN);
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        if (slots[r].present) {
            uint32_t n = count_matching(p, slots, slots[r].digest);
            if (n > best)
                best = n;
        }
    }
    BEX_ASSERT(best <= p->cfg.n);
    return best;
}

/* Our vote of type for e; a NULL sig leaves it to be signed. */
static struct pbft_vote own_vote(const struct pbft *p, const struct pbft__entry *e,
                                 uint32_t type, const uint8_t digest[PBFT_DIGEST_BYTES],
                                 const uint8_t sig[PBFT_SIG_BYTES])
{
    struct pbft_vote v;

    BEX_ASSERT(e->seq != 0);
    BEX_ASSERT(type >= PBFT_MSG_PRE_PREPARE);
    BEX_ASSERT(type <= PBFT_MSG_COMMIT);
    memset(&v, 0, sizeof(v));
    v.type = type;
    v.view = e->view;
    v.seq = e->seq;
    memcpy(v.digest, digest, PBFT_DIGEST_BYTES);
    v.replica = p->cfg.self;
    if (sig != NULL)
        memcpy(v.sig, sig, PBFT_SIG_BYTES);
    return v;
}

/*
 * Sends (to one replica, or broadcasts when to == PBFT_REPLICAS_MAX) every
 * vote we signed for e in its view.
 */
static void send_own_votes(struct pbft *p, struct pbft__entry *e, uint32_t to,
                           struct pbft_actions *out)
{
    enum pbft_action_type type = to == PBFT_REPLICAS_MAX ? PBFT_ACT_BROADCAST : PBFT_ACT_SEND;
    uint32_t self = p->cfg.self;
    struct pbft_vote v;

    BEX_ASSERT(to == PBFT_REPLICAS_MAX || to < p->cfg.n);
    BEX_ASSERT(e->view == p->view);
    if (pbft__primary_of(p, e->view) == self && e->has_pre_prepare && pbft__room(out)) {
        v = own_vote(p, e, PBFT_MSG_PRE_PREPARE, e->digest, e->pre_prepare_sig);
        pbft__push_vote(p, out, type, to, &v);
        p->stats.retransmits++;
    }
    if (e->prepares[self].present && pbft__room(out)) {
        v = own_vote(p, e, PBFT_MSG_PREPARE, e->prepares[self].digest, e->prepares[self].sig);
        pbft__push_vote(p, out, type, to, &v);
        p->stats.retransmits++;
    }
    if (e->commits[self].present && pbft__room(out)) {
        v = own_vote(p, e, PBFT_MSG_COMMIT, e->commits[self].digest, e->commits[self].sig);
        pbft__push_vote(p, out, type, to, &v);
        p->stats.retransmits++;
    }
}

/*
 * A replica resent a vote we already hold. It resends only what it has not
 * seen committed, and we stopped resending once we committed, so answer
 * with our own votes, at most once per retransmit period.
 */
static void answer_resend(struct pbft *p, struct pbft__entry *e, uint32_t from,
                          struct pbft_actions *out)
{
    BEX_ASSERT(from < p->cfg.n);
    BEX_ASSERT(from != p->cfg.self);
    if (p->replaying)
        return;
    if (!e->committed && e->seq > p->delivered)
        return;
    if (p->now_ms < e->reply_ms[from])
        return;
    e->reply_ms[from] = p->now_ms + p->cfg.retransmit_ms;
    send_own_votes(p, e, from, out);
}

/*
 * A replica sent something below our low watermark: it is behind. Our
 * CHECKPOINT for h, with those of others, lets it prove h and fetch.
 */
static void answer_behind(struct pbft *p, uint32_t from, struct pbft_actions *out)
{
    const struct pbft_vote *own = own_checkpoint_at(p, p->stable.seq);

    BEX_ASSERT(from < p->cfg.n);
    BEX_ASSERT(from != p->cfg.self);
    if (own == NULL || p->replaying || !pbft__room(out))
        return;
    if (p->now_ms < p->checkpoint_reply_ms[from])
        return;
    p->checkpoint_reply_ms[from] = p->now_ms + p->cfg.retransmit_ms;
    pbft__push_vote(p, out, PBFT_ACT_SEND, from, own);
    p->stats.retransmits++;
}

static bool conflicts_with_commit(const struct pbft__entry *e,
                                  const uint8_t digest[PBFT_DIGEST_BYTES])
{
    BEX_ASSERT(e->seq != 0);
    if (!e->committed)
        return false;
    return memcmp(e->committed_digest, digest, PBFT_DIGEST_BYTES) != 0;
}

void pbft__send_prepare(struct pbft *p, struct pbft__entry *e, struct pbft_actions *out)
{
    uint32_t self = p->cfg.self;
    struct pbft_vote v;

    BEX_ASSERT(e->has_pre_prepare);
    BEX_ASSERT(e->view == p->view);
    if (pbft__primary_of(p, e->view) == self)
        return;
    if (e->prepares[self].present) {
        /* Signed before a restart; the caller checked it is the same digest. */
        BEX_ASSERT(memcmp(e->prepares[self].digest, e->digest, PBFT_DIGEST_BYTES) == 0);
        return;
    }
    if (conflicts_with_commit(e, e->digest)) {
        p->stats.dropped_conflict++;
        return;
    }
    v = own_vote(p, e, PBFT_MSG_PREPARE, e->digest, NULL);
    pbft__sign_vote(p, &v);
    e->prepares[self].present = true;
    memcpy(e->prepares[self].digest, v.digest, PBFT_DIGEST_BYTES);
    memcpy(e->prepares[self].sig, v.sig, PBFT_SIG_BYTES);
    pbft__push_vote(p, out, PBFT_ACT_PERSIST, 0, &v);
    pbft__push_vote(p, out, PBFT_ACT_BROADCAST, 0, &v);
}

/* prepared(m, v, n, i): the pre-prepare and q-1 matching PREPAREs of backups. */
static void become_prepared(struct pbft *p, struct pbft__entry *e, struct pbft_actions *out)
{
    uint32_t self = p->cfg.self;
    uint32_t primary = pbft__primary_of(p, e->view);
    struct pbft_prepared *c = &e->prepared;
    struct pbft_action *a;
    struct pbft_vote v;

    BEX_ASSERT(e->has_pre_prepare);
    BEX_ASSERT(!e->prepared_in_view);
    memset(c, 0, sizeof(*c));
    c->view = e->view;
    c->seq = e->seq;
    memcpy(c->digest, e->digest, PBFT_DIGEST_BYTES);
    memcpy(c->pre_prepare_sig, e->pre_prepare_sig, PBFT_SIG_BYTES);
    for (uint32_t r = 0; r < p->cfg.n && c->prepare_count < p->q - 1; r++) {
        const struct pbft__slot *s = &e->prepares[r];
        if (r == primary || !s->present || memcmp(s->digest, e->digest, PBFT_DIGEST_BYTES) != 0)
            continue;
        c->prepares[c->prepare_count].replica = r;
        memcpy(c->prepares[c->prepare_count].sig, s->sig, PBFT_SIG_BYTES);
        c->prepare_count++;
    }
    BEX_ASSERT(c->prepare_count == p->q - 1);
    e->has_prepared = true;
    e->prepared_in_view = true;
    /* The certificate is durable before our COMMIT leaves: a VIEW-CHANGE after a restart needs it. */
    a = pbft__push(p, out, PBFT_ACT_PERSIST);
    a->msg.type = PBFT_MSG_PREPARED;
    a->msg.prepared = c;
    if (e->commits[self].present) {
        if (memcmp(e->commits[self].digest, e->digest, PBFT_DIGEST_BYTES) != 0) {
            p->stats.dropped_conflict++;
            return;
        }
        v = own_vote(p, e, PBFT_MSG_COMMIT, e->digest, e->commits[self].sig);
        pbft__push_vote(p, out, PBFT_ACT_BROADCAST, 0, &v);
        return;
    }
    if (conflicts_with_commit(e, e->digest)) {
        p->stats.dropped_conflict++;
        return;
    }
    v = own_vote(p, e, PBFT_MSG_COMMIT, e->digest, NULL);
    pbft__sign_vote(p, &v);
    e->commits[self].present = true;
    memcpy(e->commits[self].digest, v.digest, PBFT_DIGEST_BYTES);
    memcpy(e->commits[self].sig, v.sig, PBFT_SIG_BYTES);
    pbft__push_vote(p, out, PBFT_ACT_PERSIST, 0, &v);
    pbft__push_vote(p, out, PBFT_ACT_BROADCAST, 0, &v);
}

/*
 * q matching COMMITs of one view prove the commit on their own (they are the
 * certificate a fetching replica verifies), so they commit the entry even
 * when this replica missed the pre-prepare.
 */
static void try_commit(struct pbft *p, struct pbft__entry *e)
{
    struct pbft_commit_cert *cert = &e->cert;

    BEX_ASSERT(e->view == p->view);
    if (e->committed)
        return;
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        const uint8_t *d = e->commits[r].digest;
        if (!e->commits[r].present || count_matching(p, e->commits, d) < p->q)
            continue;
        memset(cert, 0, sizeof(*cert));
        cert->view = e->view;
        for (uint32_t k = 0; k < p->cfg.n && cert->count < p->q; k++) {
            const struct pbft__slot *s = &e->commits[k];
            if (!s->present || memcmp(s->digest, d, PBFT_DIGEST_BYTES) != 0)
                continue;
            cert->votes[cert->count].replica = k;
            memcpy(cert->votes[cert->count].sig, s->sig, PBFT_SIG_BYTES);
            cert->count++;
        }
        BEX_ASSERT(cert->count == p->q);
        memcpy(e->committed_digest, d, PBFT_DIGEST_BYTES);
        e->committed = true;
        return;
    }
}

void pbft__evaluate(struct pbft *p, struct pbft__entry *e, struct pbft_actions *out)
{
    BEX_ASSERT(e->seq > p->stable.seq);
    BEX_ASSERT(e->view == p->view);
    if (e->has_pre_prepare && !e->prepared_in_view &&
        count_matching(p, e->prepares, e->digest) >= p->q - 1)
        become_prepared(p, e, out);
    try_commit(p, e);
    pbft__deliver(p, out);
}

/* Keeps a vote of a view not installed yet; the sender's share is bounded. */
static int buffer_vote(struct pbft *p, const struct pbft_vote *v, bool verified)
{
    uint32_t r = v->replica;

    BEX_ASSERT(r < p->cfg.n);
    BEX_ASSERT(v->view >= p->view);
    BEX_ASSERT(v->view > p->view || !p->active);
    if (!verified && pbft__check_vote_sig(p, v) != 0) {
        p->stats.dropped_bad_sig++;
        return -BEX_ESIG;
    }
    for (uint32_t i = 0; i < p->buffer_count[r]; i++) {
        if (memcmp(&p->buffer[r][i], v, sizeof(*v)) == 0) {
            p->stats.duplicates++;
            return 0;
        }
    }
    if (p->buffer_count[r] == PBFT_BUFFER_PER_REPLICA) {
        p->stats.dropped_future_full++;
        return -BEX_EFULL;
    }
    p->buffer[r][p->buffer_count[r]++] = *v;
    p->stats.buffered++;
    return 0;
}

int pbft__on_vote(struct pbft *p, const struct pbft_vote *v, bool verified,
                  struct pbft_actions *out)
{
    uint32_t primary = pbft__primary_of(p, p->view);
    struct pbft__entry *e;
    struct pbft__slot *s;

    BEX_ASSERT(v->type >= PBFT_MSG_PRE_PREPARE);
    BEX_ASSERT(v->type <= PBFT_MSG_COMMIT);
    if (v->replica >= p->cfg.n || v->replica == p->cfg.self) {
        p->stats.dropped_non_member++;
        return -BEX_EPERM;
    }
    if (v->seq == 0) {
        p->stats.dropped_malformed++;
        return -BEX_EINVAL;
    }
    if (v->view < p->view) {
        p->stats.dropped_old_view++;
        return -BEX_ESTATE;
    }
    if (v->view > p->view || !p->active)
        return buffer_vote(p, v, verified);
    if (v->type == PBFT_MSG_PRE_PREPARE && v->replica != primary) {
        p->stats.dropped_wrong_primary++;
        return -BEX_EPERM;
    }
    if (v->type == PBFT_MSG_PREPARE && v->replica == primary) {
        p->stats.dropped_wrong_primary++;
        return -BEX_EPERM;
    }
    if (v->type == PBFT_MSG_PRE_PREPARE && pbft__digest_is_zero(v->digest)) {
        p->stats.dropped_malformed++;
        return -BEX_EINVAL;
    }
    /* Castro-Liskov 4.2: accept only h < seq <= H. */
    if (v->seq <= p->stable.seq || v->seq > pbft__high(p)) {
        p->stats.dropped_window++;
        if (v->seq <= p->stable.seq && (verified || pbft__check_vote_sig(p, v) == 0))
            answer_behind(p, v->replica, out);
        return -BEX_ELIMIT;
    }
    if (!verified && pbft__check_vote_sig(p, v) != 0) {
        p->stats.dropped_bad_sig++;
        return -BEX_ESIG;
    }
    e = pbft__entry_get(p, v->seq, p->view);
    BEX_ASSERT(e->view == p->view);
    if (v->type == PBFT_MSG_PRE_PREPARE) {
        if (e->has_pre_prepare) {
            if (memcmp(e->digest, v->digest, PBFT_DIGEST_BYTES) != 0) {
                p->stats.dropped_conflict++;
                return -BEX_EEXIST;
            }
            p->stats.duplicates++;
            answer_resend(p, e, v->replica, out);
            return 0;
        }
        /* Never prepare a second digest for one (view, seq), even across a restart. */
        if (e->prepares[p->cfg.self].present &&
            memcmp(e->prepares[p->cfg.self].digest, v->digest, PBFT_DIGEST_BYTES) != 0) {
            p->stats.dropped_conflict++;
            return -BEX_EEXIST;
        }
        if (conflicts_with_commit(e, v->digest)) {
            p->stats.dropped_conflict++;
            return -BEX_EEXIST;
        }
        e->has_pre_prepare = true;
        memcpy(e->digest, v->digest, PBFT_DIGEST_BYTES);
        memcpy(e->pre_prepare_sig, v->sig, PBFT_SIG_BYTES);
        pbft__send_prepare(p, e, out);
    } else {
        s = &vote_slots(e, v->type)[v->replica];
        if (s->present) {
            if (memcmp(s->digest, v->digest, PBFT_DIGEST_BYTES) != 0) {
                p->stats.dropped_conflict++;
                return -BEX_EEXIST;
            }
            p->stats.duplicates++;
            answer_resend(p, e, v->replica, out);
            return 0;
        }
        s->present = true;
        memcpy(s->digest, v->digest, PBFT_DIGEST_BYTES);
        memcpy(s->sig, v->sig, PBFT_SIG_BYTES);
    }
    pbft__evaluate(p, e, out);
    return 0;
}

/* ---------------------------------------------------------------- checkpoints */

static const struct pbft_vote *own_checkpoint_at(const struct pbft *p, uint64_t seq)
{
    const struct pbft_vote *v;

    BEX_ASSERT(p->cfg.checkpoint_interval > 0);
    if (seq == 0 || seq % p->cfg.checkpoint_interval != 0)
        return NULL;
    v = &p->own_checkpoints[(seq / p->cfg.checkpoint_interval) % (PBFT_WINDOW_MAX + 1)];
    if (v->type != PBFT_MSG_CHECKPOINT || v->seq != seq)
        return NULL;
    BEX_ASSERT(v->replica == p->cfg.self);
    return v;
}

/* A proof of (seq, digest) once q replicas' latest checkpoints agree on it. */
static void check_quorum(struct pbft *p, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES],
                         struct pbft_actions *out)
{
    struct pbft_checkpoint_proof proof;
    uint32_t n = 0;

    BEX_ASSERT(seq % p->cfg.checkpoint_interval == 0);
    if (seq <= p->stable.seq)
        return;
    for (uint32_t r = 0; r < p->cfg.n; r++) {
        const struct pbft__checkpoint *c = &p->checkpoints[r];
        n += c->present && c->seq == seq && memcmp(c->digest, digest, PBFT_DIGEST_BYTES) == 0;
    }
    if (n < p->q)
        return;
    memset(&proof, 0, sizeof(proof));
    proof.seq = seq;
    memcpy(proof.digest, digest, PBFT_DIGEST_BYTES);
    for (uint32_t r = 0; r < p->cfg.n && proof.count < p->q; r++) {
        const struct pbft__checkpoint *c = &p->checkpoints[r];
        if (!c->present || c->seq != seq || memcmp(c->digest, digest, PBFT_DIGEST_BYTES) != 0)
            continue;
        proof.votes[proof.count].replica = r;
        memcpy(proof.votes[proof.count].sig, c->sig, PBFT_SIG_BYTES);
        proof.count++;
    }
    BEX_ASSERT(proof.count == p->q);
    pbft__offer_proof(p, &proof, out);
}

void pbft__own_checkpoint(struct pbft *p, uint64_t seq, const uint8_t root[PBFT_DIGEST_BYTES],
                          struct pbft_actions *out)
{
    struct pbft__checkpoint *own = &p->checkpoints[p->cfg.self];
    struct pbft_vote *v;

    BEX_ASSERT(seq > 0);
    BEX_ASSERT(seq % p->cfg.checkpoint_interval == 0);
    v = &p->own_checkpoints[(seq / p->cfg.checkpoint_interval) % (PBFT_WINDOW_MAX + 1)];
    memset(v, 0, sizeof(*v));
    v->type = PBFT_MSG_CHECKPOINT;
    v->seq = seq;
    memcpy(v->digest, root, PBFT_DIGEST_BYTES);
    v->replica = p->cfg.self;
    pbft__sign_vote(p, v);
    if (!own->present || own->seq <= seq) {
        own->present = true;
        own->seq = seq;
        memcpy(own->digest, root, PBFT_DIGEST_BYTES);
        memcpy(own->sig, v->sig, PBFT_SIG_BYTES);
    }
    pbft__push_vote(p, out, PBFT_ACT_BROADCAST, 0, v);
    check_quorum(p, seq, root, out);
}

int pbft__on_checkpoint(struct pbft *p, const struct pbft_vote *v, struct pbft_actions *out)
{
    struct pbft__checkpoint *c;

    BEX_ASSERT(v->type == PBFT_MSG_CHECKPOINT);
    if (v->replica >= p->cfg.n || v->replica == p->cfg.self) {
        p->stats.dropped_non_member++;
        return -BEX_EPERM;
    }
    if (v->view != 0 || v->seq == 0 || v->seq % p->cfg.checkpoint_interval != 0) {
        p->stats.dropped_malformed++;
        return -BEX_EINVAL;
    }
    if (pbft__check_vote_sig(p, v) != 0) {
        p->stats.dropped_bad_sig++;
        return -BEX_ESIG;
    }
    if (v->seq <= p->stable.seq) {
        p->stats.dropped_window++;
        if (v->seq < p->stable.seq)
            answer_behind(p, v->replica, out);
        return -BEX_ELIMIT;
    }
    c = &p->checkpoints[v->replica];
    if (c->present && c->seq >= v->seq) {
        if (c->seq == v->seq && memcmp(c->digest, v->digest, PBFT_DIGEST_BYTES) != 0) {
            p->stats.dropped_conflict++;
            return -BEX_EEXIST;
        }
        p->stats.duplicates++;
        return 0;
    }
    /* Only the latest per replica is kept: memory stays bounded however far ahead it claims to be. */
    BEX_ASSERT(v->seq > p->stable.seq);
    c->present = true;
    c->seq = v->seq;
    memcpy(c->digest, v->digest, PBFT_DIGEST_BYTES);
    memcpy(c->sig, v->sig, PBFT_SIG_BYTES);
    check_quorum(p, v->seq, v->digest, out);
    return 0;
}

static uint32_t proof_vouchers(const struct pbft_checkpoint_proof *proof)
{
    uint32_t mask = 0;

    BEX_ASSERT(proof->count <= PBFT_QUORUM_MAX);
    for (uint32_t i = 0; i < proof->count; i++) {
        BEX_ASSERT(proof->votes[i].replica < PBFT_REPLICAS_MAX);
        mask |= 1u << proof->votes[i].replica;
    }
    return mask;
}

void pbft__adopt_proof(struct pbft *p, const struct pbft_checkpoint_proof *proof,
                       struct pbft_actions *out)
{
    const struct pbft_vote *own = own_checkpoint_at(p, proof->seq);
    struct pbft_action *a;

    BEX_ASSERT(proof->seq > p->stable.seq);
    BEX_ASSERT(proof->seq % p->cfg.checkpoint_interval == 0);
    /* Nothing handed out in this call may point into the entries freed below. */
    for (uint32_t i = 0; i < out->count; i++) {
        const struct pbft_action *x = &out->items[i];
        BEX_ASSERT(x->type != PBFT_ACT_COMMIT || x->seq > proof->seq);
        BEX_ASSERT(x->type != PBFT_ACT_PERSIST || x->msg.type != PBFT_MSG_PREPARED ||
                   x->msg.prepared->seq > proof->seq);
    }
    if (own != NULL && memcmp(own->digest, proof->digest, PBFT_DIGEST_BYTES) != 0)
        p->stats.state_divergence++;
    /* Copy first: proof may point at pending_proof, which is cleared below. */
    p->stable = *proof;
    if (p->has_pending_proof && p->pending_proof.seq <= p->stable.seq)
        p->has_pending_proof = false;
    pbft__prune_log(p);
    if (p->next_seq <= p->stable.seq)
        p->next_seq = p->stable.seq + 1;
    a = pbft__push(p, out, PBFT_ACT_STABLE);
    a->seq = p->stable.seq;
    memcpy(a->digest, p->stable.digest, PBFT_DIGEST_BYTES);
    a->proof = &p->stable;
    p->stats.checkpoints_stable++;
    if (p->delivered < p->stable.seq)
        pbft__fetch(p, out, p->stable.seq, p->stable.digest, proof_vouchers(&p->stable));
    BEX_ASSERT(pbft__entry_find(p, p->stable.seq) == NULL);
}

void pbft__offer_proof(struct pbft *p, const struct pbft_checkpoint_proof *proof,
                       struct pbft_actions *out)
{
    BEX_ASSERT(proof->seq % p->cfg.checkpoint_interval == 0);
    BEX_ASSERT(proof->seq == 0 || proof->count >= p->q);
    if (proof->seq <= p->stable.seq)
        return;
    /*
     * Castro-Liskov 4.3: with the state in hand the checkpoint is stable at
     * once. A proof beyond H means the window can never get there by itself.
     * Otherwise wait a little: our own commits may be on their way.
     */
    if (proof->seq <= p->executed || proof->seq > pbft__high(p)) {
        pbft__adopt_proof(p, proof, out);
        return;
    }
    if (p->has_pending_proof && p->pending_proof.seq >= proof->seq)
        return;
    p->pending_proof = *proof;
    p->has_pending_proof = true;
    p->pending_since_ms = p->now_ms;
}

/* ---------------------------------------------------------------- timers */

bool pbft__waiting(const struct pbft *p)
{
    BEX_ASSERT(p->started);
    BEX_ASSERT(p->active);
    if (p->pending)
        return true;
    for (size_t i = 0; i < PBFT_WINDOW_MAX; i++) {
        const struct pbft__entry *e = &p->log[i];
        if (e->seq == 0 || e->seq <= p->delivered)
            continue;
        if (e->committed || e->has_pre_prepare)
            return true;
        /* f+1 votes: at least one honest replica saw a pre-prepare for it. */
        if (count_best(p, e->prepares) > p->f || count_best(p, e->commits) > p->f)
            return true;
    }
    return false;
}

void pbft__retransmit(struct pbft *p, struct pbft_actions *out)
{
    const struct pbft__checkpoint *own = &p->checkpoints[p->cfg.self];

    BEX_ASSERT(p->started);
    if (!p->active) {
        BEX_ASSERT(p->vc_present[p->cfg.self]);
        if (pbft__room(out)) {
            struct pbft_action *a = pbft__push(p, out, PBFT_ACT_BROADCAST);
            a->msg.type = PBFT_MSG_VIEW_CHANGE;
            a->msg.view_change = &p->vcs[p->cfg.self];
            p->stats.retransmits++;
        }
    } else {
        for (uint64_t seq = p->stable.seq + 1; seq <= pbft__high(p); seq++) {
            struct pbft__entry *e = pbft__entry_find(p, seq);
            if (e == NULL || e->committed || seq <= p->delivered)
                continue;
            if (p->now_ms < e->first_ms + p->cfg.retransmit_ms)
                continue;
            send_own_votes(p, e, PBFT_REPLICAS_MAX, out);
        }
    }
    if (own->present && own->seq > p->stable.seq && pbft__room(out)) {
        const struct pbft_vote *v = own_checkpoint_at(p, own->seq);
        if (v != NULL) {
            pbft__push_vote(p, out, PBFT_ACT_BROADCAST, 0, v);
            p->stats.retransmits++;
        }
    }
}

/* The lowest committed entry above a hole at delivered+1, or NULL. */
static struct pbft__entry *first_beyond_gap(struct pbft *p)
{
    BEX_ASSERT(p->delivered >= p->stable.seq);
    for (uint64_t seq = p->delivered + 2; seq <= pbft__high(p); seq++) {
        struct pbft__entry *e = pbft__entry_find(p, seq);
        if (e != NULL && e->committed)
            return e;
    }
    return NULL;
}

void pbft__check_behind(struct pbft *p, struct pbft_actions *out)
{
    static const uint8_t zero[PBFT_DIGEST_BYTES];
    struct pbft__entry *e;

    BEX_ASSERT(p->started);
    BEX_ASSERT(p->executed <= p->delivered);
    if (p->has_pending_proof) {
        uint64_t c = p->pending_proof.seq;
        if (c <= p->stable.seq)
            p->has_pending_proof = false;
        else if (c <= p->executed)
            pbft__adopt_proof(p, &p->pending_proof, out);
        else if (c > p->delivered && p->now_ms >= p->pending_since_ms + p->cfg.retransmit_ms)
            pbft__adopt_proof(p, &p->pending_proof, out);
    }
    if (p->delivered < p->stable.seq) {
        if (p->now_ms >= p->fetch_at_ms)
            pbft__fetch(p, out, p->stable.seq, p->stable.digest, proof_vouchers(&p->stable));
        return;
    }
    /* A hole below committed entries: the votes for it are lost to us; fetch it. */
    e = first_beyond_gap(p);
    if (e == NULL) {
        p->gap_seen = false;
        return;
    }
    if (!p->gap_seen) {
        p->gap_seen = true;
        p->gap_since_ms = p->now_ms;
        return;
    }
    if (p->now_ms >= p->gap_since_ms + p->cfg.retransmit_ms && p->now_ms >= p->fetch_at_ms) {
        uint32_t vouchers = 0;
        for (uint32_t i = 0; i < e->cert.count; i++)
            vouchers |= 1u << e->cert.votes[i].replica;
        pbft__fetch(p, out, e->seq - 1, zero, vouchers);
    }
}
