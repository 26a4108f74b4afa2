/*
 * sim_byz.c: Byzantine replicas. A Byzantine replica runs an honest engine
 * (so it keeps up with the protocol and knows what to lie about) and lies on
 * the way out: it equivocates, stays silent or proposes to only some replicas
 * when primary, votes for conflicting digests, replays old messages, corrupts
 * and forges signatures, floods VIEW-CHANGEs, sends NEW-VIEWs with a wrong O
 * set, and offers forged blocks during state transfer. It only ever signs
 * with its own key.
 */
#include "sim_cluster.h"

#include <stdlib.h>
#include <string.h>

static void resign_vote(struct sim *s, const struct node *b, struct pbft_vote *v)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    v->replica = b->id;
    pbft_vote_digest(&b->cfg, v, h);
    sim_sign_as(&s->keys, b->id, h, v->sig);
}

static void other_digest(const uint8_t in[PBFT_DIGEST_BYTES], uint32_t salt,
                         uint8_t out[PBFT_DIGEST_BYTES])
{
    uint8_t buf[PBFT_DIGEST_BYTES + 4];

    memcpy(buf, in, PBFT_DIGEST_BYTES);
    memcpy(buf + PBFT_DIGEST_BYTES, &salt, 4);
    sim_hash(buf, sizeof(buf), out);
}

static void corrupt(struct sim *s, uint8_t sig[PBFT_SIG_BYTES])
{
    sig[sim_rng_below(&s->rng, PBFT_SIG_BYTES)] ^= (uint8_t)(1u + sim_rng_below(&s->rng, 255));
}

/* A NEW-VIEW whose O set or proofs are wrong, signed by the primary itself. */
static struct blob *bad_new_view(struct sim *s, const struct node *b, const struct blob *orig)
{
    struct blob *x = sim__blob_new(PBFT_MSG_NEW_VIEW, orig->data);
    struct pbft_new_view *nv = x->data;
    uint8_t h[PBFT_DIGEST_BYTES];

    switch (sim_rng_below(&s->rng, 5)) {
    case 0: /* a re-issued digest replaced: the request most likely committed somewhere */
        if (nv->pre_prepare_count > 0) {
            uint32_t at = (uint32_t)sim_rng_below(&s->rng, nv->pre_prepare_count);
            for (uint32_t i = 0; i < nv->pre_prepare_count; i++) {
                static const uint8_t zero[PBFT_DIGEST_BYTES];
                if (memcmp(nv->pre_prepares[i].digest, zero, PBFT_DIGEST_BYTES) != 0)
                    at = i;
            }
            other_digest(nv->pre_prepares[at].digest, 7, nv->pre_prepares[at].digest);
            resign_vote(s, b, &nv->pre_prepares[at]);
            break;
        }
        /* fall through */
    case 1: /* an extra request beyond max-s */
        if (nv->pre_prepare_count < b->cfg.window) {
            struct pbft_vote *pp = &nv->pre_prepares[nv->pre_prepare_count];
            uint64_t seq = nv->pre_prepare_count > 0
                               ? nv->pre_prepares[nv->pre_prepare_count - 1].seq + 1
                               : nv->view_changes[0].stable.seq + 1;
            memset(pp, 0, sizeof(*pp));
            pp->type = PBFT_MSG_PRE_PREPARE;
            pp->view = nv->view;
            pp->seq = seq;
            other_digest(nv->sig, 9, pp->digest);
            resign_vote(s, b, pp);
            nv->pre_prepare_count++;
            break;
        }
        /* fall through */
    case 2: /* a missing request or null request */
        if (nv->pre_prepare_count > 0) {
            nv->pre_prepare_count--;
            break;
        }
        /* fall through */
    case 3: /* fewer than q VIEW-CHANGEs */
        nv->view_change_count--;
        break;
    default: /* a prepared certificate altered inside someone's VIEW-CHANGE */
        if (nv->view_changes[0].prepared_count > 0)
            corrupt(s, nv->view_changes[0].prepared[0].pre_prepare_sig);
        else
            nv->view_changes[0].stable.seq += b->cfg.checkpoint_interval;
        break;
    }
    pbft_new_view_digest(&b->cfg, nv, h);
    sim_sign_as(&s->keys, b->id, h, nv->sig);
    return x;
}

void sim__byz_send(struct sim *s, struct node *b, uint32_t to, const struct msg *m)
{
    uint32_t mask = b->byz_mask;
    struct msg x = *m;
    bool own = m->type <= PBFT_MSG_CHECKPOINT && m->vote.replica == b->id;

    BEX_ASSERT(b->byz);
    BEX_ASSERT(to != b->id);
    if ((mask & SIM_F_SILENT) && pbft_primary(b->p) == b->id)
        return;
    if (own && m->type == PBFT_MSG_PRE_PREPARE) {
        if ((mask & SIM_F_PARTIAL) && (to + m->vote.seq) % s->n > s->f)
            return;
        if ((mask & SIM_F_EQUIVOCATE) && (to + m->vote.seq) % 2 == 1) {
            other_digest(m->vote.digest, 1, x.vote.digest);
            resign_vote(s, b, &x.vote);
        }
    }
    if (own && (m->type == PBFT_MSG_PREPARE || m->type == PBFT_MSG_COMMIT) &&
        (mask & SIM_F_CONFLICT) && sim_rng_chance(&s->rng, 500)) {
        other_digest(m->vote.digest, 2 + to, x.vote.digest);
        resign_vote(s, b, &x.vote);
    }
    if (m->type == PBFT_MSG_NEW_VIEW && (mask & SIM_F_BADNV))
        x.blob = bad_new_view(s, b, m->blob);
    else if (x.blob != NULL)
        x.blob->refs++;
    if ((mask & SIM_F_FORGE) && sim_rng_chance(&s->rng, 150)) {
        if (x.blob == NULL) {
            corrupt(s, x.vote.sig);
        } else {
            struct blob *y = sim__blob_new(x.blob->type, x.blob->data);
            if (y->type == PBFT_MSG_VIEW_CHANGE)
                corrupt(s, ((struct pbft_view_change *)y->data)->sig);
            else
                corrupt(s, ((struct pbft_new_view *)y->data)->sig);
            sim__blob_put(x.blob);
            x.blob = y;
        }
    }
    sim__enqueue(s, b->id, to, &x);
    sim__blob_put(x.blob);
    /* A vote claiming to come from someone else, with a signature that cannot be right. */
    if ((mask & SIM_F_FORGE) && m->type <= PBFT_MSG_CHECKPOINT && sim_rng_chance(&s->rng, 100)) {
        struct msg f = *m;
        f.vote.replica = (uint32_t)sim_rng_below(&s->rng, s->n);
        corrupt(s, f.vote.sig);
        sim__enqueue(s, b->id, to, &f);
    }
}

void sim__byz_seen(struct node *b, const struct msg *m)
{
    BEX_ASSERT(b->byz);
    if (m->blob != NULL) {
        sim__blob_put(b->seen_blob);
        b->seen_blob = m->blob;
        m->blob->refs++;
        return;
    }
    b->seen[b->seen_count % BEX_ARRAY_LEN(b->seen)] = m->vote;
    b->seen_count++;
}

static void flood_view_change(struct sim *s, struct node *b)
{
    struct pbft_view_change *vc = calloc(1, sizeof(*vc));
    uint8_t h[PBFT_DIGEST_BYTES];
    struct msg m;

    if (vc == NULL)
        abort();
    vc->new_view = pbft_view(b->p) + sim_rng_range(&s->rng, 1, 30);
    vc->replica = b->id;
    if (sim_rng_chance(&s->rng, 300)) {
        /* A prepared certificate nobody signed. */
        struct pbft_prepared *c = &vc->prepared[vc->prepared_count++];
        c->view = vc->new_view - 1;
        c->seq = 1;
        other_digest(vc->stable.digest, (uint32_t)vc->new_view, c->digest);
        c->prepare_count = s->q - 1;
        for (uint32_t i = 0; i < c->prepare_count; i++) {
            c->prepares[i].replica = (uint32_t)((c->view + 1 + i) % s->n);
            corrupt(s, c->prepares[i].sig);
        }
    }
    pbft_view_change_digest(&b->cfg, vc, h);
    sim_sign_as(&s->keys, b->id, h, vc->sig);
    memset(&m, 0, sizeof(m));
    m.type = PBFT_MSG_VIEW_CHANGE;
    m.blob = sim__blob_new(PBFT_MSG_VIEW_CHANGE, vc);
    free(vc);
    for (uint32_t to = 0; to < s->n; to++) {
        if (to != b->id)
            sim__enqueue(s, b->id, to, &m);
    }
    sim__blob_put(m.blob);
}

void sim__byz_tick(struct sim *s, struct node *b)
{
    BEX_ASSERT(b->byz);
    if ((b->byz_mask & SIM_F_REPLAY) && b->seen_count > 0 && sim_rng_chance(&s->rng, 300)) {
        struct msg m;
        uint32_t to;
        uint64_t have = b->seen_count < BEX_ARRAY_LEN(b->seen) ? b->seen_count
                                                                : BEX_ARRAY_LEN(b->seen);
        memset(&m, 0, sizeof(m));
        m.vote = b->seen[sim_rng_below(&s->rng, have)];
        m.type = (enum pbft_msg_type)m.vote.type;
        do {
            to = (uint32_t)sim_rng_below(&s->rng, s->n);
        } while (to == b->id);
        sim__enqueue(s, b->id, to, &m);
    }
    if ((b->byz_mask & SIM_F_REPLAY) && b->seen_blob != NULL && sim_rng_chance(&s->rng, 50)) {
        struct msg m;
        memset(&m, 0, sizeof(m));
        m.type = b->seen_blob->type;
        m.blob = b->seen_blob;
        sim__enqueue(s, b->id, (b->id + 1 + (uint32_t)sim_rng_below(&s->rng, s->n - 1)) % s->n, &m);
    }
    if ((b->byz_mask & SIM_F_FLOOD) && sim_rng_chance(&s->rng, 200))
        flood_view_change(s, b);
}

/*
 * A Byzantine peer answers a fetch first, with a block whose certificate is
 * forged, short or for another digest; the verifier must refuse each one.
 */
void sim__byz_transfer(struct sim *s, struct node *victim)
{
    struct pbft_commit_cert cert;
    uint8_t digest[PBFT_DIGEST_BYTES];
    const struct node *liar = NULL;
    const struct node *honest = NULL;
    uint64_t seq = victim->executed + 1;
    int rc;

    for (uint32_t i = 0; i < s->n; i++) {
        const struct node *c = &s->nodes[i];
        if (c->byz && (c->byz_mask & SIM_F_FORGE))
            liar = c;
        if (!c->byz && c != victim && c->executed >= seq)
            honest = c;
    }
    if (liar == NULL || !sim_rng_chance(&s->rng, 500))
        return;
    memset(&cert, 0, sizeof(cert));
    other_digest(victim->root, (uint32_t)seq, digest);
    switch (sim_rng_below(&s->rng, 3)) {
    case 0: /* q signatures, none of them real */
        cert.count = s->q;
        for (uint32_t i = 0; i < cert.count; i++) {
            cert.votes[i].replica = i;
            corrupt(s, cert.votes[i].sig);
        }
        break;
    case 1: /* the liar's real COMMIT, repeated q times */
        {
            struct pbft_vote v = {.type = PBFT_MSG_COMMIT, .view = 0, .seq = seq};
            memcpy(v.digest, digest, PBFT_DIGEST_BYTES);
            resign_vote(s, liar, &v);
            cert.count = s->q;
            for (uint32_t i = 0; i < cert.count; i++) {
                cert.votes[i].replica = liar->id;
                memcpy(cert.votes[i].sig, v.sig, PBFT_SIG_BYTES);
            }
        }
        break;
    default: /* a real certificate, one vote short, or for another digest */
        if (honest == NULL)
            return;
        cert = honest->blocks[seq].cert;
        if (sim_rng_chance(&s->rng, 500)) {
            memcpy(digest, honest->blocks[seq].digest, PBFT_DIGEST_BYTES);
            cert.count = s->q - 1;
        } else {
            other_digest(honest->blocks[seq].digest, 3, digest);
        }
        break;
    }
    rc = pbft_verify_commit_cert(&victim->cfg, seq, digest, &cert);
    if (rc == 0)
        sim__violation(s, "replica %u accepted a forged commit certificate for seq %llu",
                       victim->id, (unsigned long long)seq);
    else
        sim__trace(s, "r%u refused a forged block from r%u: %s", victim->id, liar->id,
                   bex_errname(rc));
}
