#include "pbft_wire.h"

#include <stdlib.h>
#include <string.h>

/*
 * Persisted-only messages reuse the Envelope: a PREPARED certificate travels
 * as a view_change whose new_view is PREPARED_TAG and whose single prepared
 * entry is the certificate; a STABLE proof as a view_change whose new_view is
 * STABLE_TAG. Neither tag is a view a peer could reach, and peers never
 * receive these (the node persists them only); wire_from_envelope() refuses
 * them from the network.
 */
#define PREPARED_TAG UINT64_MAX
#define STABLE_TAG (UINT64_MAX - 1)


/* ------------------------------------------------------------- encoding */

struct enc {
    Bex__PbftVote votes[PBFT_WINDOW_MAX];
    Bex__PbftVote *vote_ptrs[PBFT_WINDOW_MAX];
    Bex__PbftViewChange vcs[PBFT_QUORUM_MAX];
    Bex__PbftViewChange *vc_ptrs[PBFT_QUORUM_MAX];
    Bex__PbftPrepared prepared[PBFT_QUORUM_MAX][PBFT_WINDOW_MAX];
    Bex__PbftPrepared *prepared_ptrs[PBFT_QUORUM_MAX][PBFT_WINDOW_MAX];
    Bex__CertVote cv[PBFT_QUORUM_MAX][PBFT_WINDOW_MAX + 1][PBFT_QUORUM_MAX];
    Bex__CertVote *cv_ptrs[PBFT_QUORUM_MAX][PBFT_WINDOW_MAX + 1][PBFT_QUORUM_MAX];
};

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    return (ProtobufCBinaryData){n, (uint8_t *)p};
}

static void vote_to(Bex__PbftVote *o, const struct pbft_vote *v)
{
    bex__pbft_vote__init(o);
    o->type = v->type;
    o->view = v->view;
    o->seq = v->seq;
    o->digest = bin(v->digest, PBFT_DIGEST_BYTES);
    o->replica = v->replica;
    o->sig = bin(v->sig, PBFT_SIG_BYTES);
}

static void cert_votes_to(Bex__CertVote *cv, Bex__CertVote **ptrs, const struct pbft_cert_vote *in, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        bex__cert_vote__init(&cv[i]);
        cv[i].replica = in[i].replica;
        cv[i].sig = bin(in[i].sig, PBFT_SIG_BYTES);
        ptrs[i] = &cv[i];
    }
}

static void prepared_to(Bex__PbftPrepared *o, Bex__CertVote *cv, Bex__CertVote **cvp, const struct pbft_prepared *p)
{
    bex__pbft_prepared__init(o);
    o->view = p->view;
    o->seq = p->seq;
    o->digest = bin(p->digest, PBFT_DIGEST_BYTES);
    o->pre_prepare_sig = bin(p->pre_prepare_sig, PBFT_SIG_BYTES);
    cert_votes_to(cv, cvp, p->prepares, p->prepare_count);
    o->n_prepares = p->prepare_count;
    o->prepares = cvp;
}

/* Fills o from vc using the slot k of the encoder's arrays. */
static void view_change_to(Bex__PbftViewChange *o, struct enc *e, size_t k, const struct pbft_view_change *vc)
{
    BEX_ASSERT(k < PBFT_QUORUM_MAX);
    BEX_ASSERT(vc->prepared_count <= PBFT_WINDOW_MAX);
    bex__pbft_view_change__init(o);
    o->new_view = vc->new_view;
    o->stable_seq = vc->stable.seq;
    o->stable_digest = bin(vc->stable.digest, PBFT_DIGEST_BYTES);
    cert_votes_to(e->cv[k][0], e->cv_ptrs[k][0], vc->stable.votes, vc->stable.count);
    o->n_checkpoint_proof = vc->stable.count;
    o->checkpoint_proof = e->cv_ptrs[k][0];
    for (uint32_t i = 0; i < vc->prepared_count; i++) {
        prepared_to(&e->prepared[k][i], e->cv[k][i + 1], e->cv_ptrs[k][i + 1], &vc->prepared[i]);
        e->prepared_ptrs[k][i] = &e->prepared[k][i];
    }
    o->n_prepared = vc->prepared_count;
    o->prepared = e->prepared_ptrs[k];
    o->replica = vc->replica;
    o->sig = bin(vc->sig, PBFT_SIG_BYTES);
}

static int pack(uint8_t **out, size_t *out_len, const Bex__Envelope *env)
{
    size_t n = bex__envelope__get_packed_size(env);

    *out = malloc(n ? n : 1);
    if (*out == NULL)
        return -BEX_ENOMEM;
    *out_len = bex__envelope__pack(env, *out);
    BEX_ASSERT(*out_len == n);
    return 0;
}

int wire_encode(uint8_t **out, size_t *out_len, const struct pbft_msg *msg)
{
    Bex__Envelope env = BEX__ENVELOPE__INIT;
    Bex__PbftVote vote;
    Bex__PbftNewView nv;
    struct pbft_view_change tmp;
    struct enc *e = NULL;
    int rc;

    *out = NULL;
    *out_len = 0;
    /* The encoder's arrays are large (about 1 MB): only the big messages use them, one call long. */
    if (msg->type >= PBFT_MSG_VIEW_CHANGE && (e = malloc(sizeof *e)) == NULL)
        return -BEX_ENOMEM;
    switch (msg->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
    case PBFT_MSG_CHECKPOINT:
        vote_to(&vote, &msg->vote);
        env.kind_case = BEX__ENVELOPE__KIND_VOTE;
        env.vote = &vote;
        break;
    case PBFT_MSG_VIEW_CHANGE:
        view_change_to(&e->vcs[0], e, 0, msg->view_change);
        env.kind_case = BEX__ENVELOPE__KIND_VIEW_CHANGE;
        env.view_change = &e->vcs[0];
        break;
    case PBFT_MSG_PREPARED:
    case PBFT_MSG_STABLE:
        memset(&tmp, 0, sizeof tmp);
        if (msg->type == PBFT_MSG_PREPARED) {
            tmp.new_view = PREPARED_TAG;
            tmp.prepared_count = 1;
            tmp.prepared[0] = *msg->prepared;
        } else {
            tmp.new_view = STABLE_TAG;
            tmp.stable = *msg->proof;
        }
        view_change_to(&e->vcs[0], e, 0, &tmp);
        env.kind_case = BEX__ENVELOPE__KIND_VIEW_CHANGE;
        env.view_change = &e->vcs[0];
        break;
    case PBFT_MSG_NEW_VIEW: {
        const struct pbft_new_view *in = msg->new_view;

        BEX_ASSERT(in->view_change_count <= PBFT_QUORUM_MAX);
        BEX_ASSERT(in->pre_prepare_count <= PBFT_WINDOW_MAX);
        bex__pbft_new_view__init(&nv);
        nv.view = in->view;
        for (uint32_t i = 0; i < in->view_change_count; i++) {
            view_change_to(&e->vcs[i], e, i, &in->view_changes[i]);
            e->vc_ptrs[i] = &e->vcs[i];
        }
        nv.n_view_changes = in->view_change_count;
        nv.view_changes = e->vc_ptrs;
        for (uint32_t i = 0; i < in->pre_prepare_count; i++) {
            vote_to(&e->votes[i], &in->pre_prepares[i]);
            e->vote_ptrs[i] = &e->votes[i];
        }
        nv.n_pre_prepares = in->pre_prepare_count;
        nv.pre_prepares = e->vote_ptrs;
        nv.replica = in->replica;
        nv.sig = bin(in->sig, PBFT_SIG_BYTES);
        env.kind_case = BEX__ENVELOPE__KIND_NEW_VIEW;
        env.new_view = &nv;
        break;
    }
    default:
        rc = -BEX_EINVAL;
        goto done;
    }
    rc = pack(out, out_len, &env);
done:
    free(e);
    return rc;
}

/* ------------------------------------------------------------- decoding */

static int copy_fixed(uint8_t *out, size_t n, ProtobufCBinaryData b)
{
    if (b.len != n)
        return -BEX_EDECODE;
    memcpy(out, b.data, n);
    return 0;
}

static int vote_from(struct pbft_vote *v, const Bex__PbftVote *o)
{
    if (o == NULL)
        return -BEX_EDECODE;
    memset(v, 0, sizeof *v);
    v->type = o->type;
    v->view = o->view;
    v->seq = o->seq;
    v->replica = o->replica;
    if (copy_fixed(v->digest, PBFT_DIGEST_BYTES, o->digest) != 0 || copy_fixed(v->sig, PBFT_SIG_BYTES, o->sig) != 0)
        return -BEX_EDECODE;
    return 0;
}

static int cert_votes_from(struct pbft_cert_vote *out, uint32_t *count, size_t cap, Bex__CertVote *const *in,
                           size_t n)
{
    if (n > cap)
        return -BEX_EDECODE;
    for (size_t i = 0; i < n; i++) {
        out[i].replica = in[i]->replica;
        if (copy_fixed(out[i].sig, PBFT_SIG_BYTES, in[i]->sig) != 0)
            return -BEX_EDECODE;
    }
    *count = (uint32_t)n;
    return 0;
}

static int prepared_from(struct pbft_prepared *p, const Bex__PbftPrepared *o)
{
    memset(p, 0, sizeof *p);
    p->view = o->view;
    p->seq = o->seq;
    if (copy_fixed(p->digest, PBFT_DIGEST_BYTES, o->digest) != 0 ||
        copy_fixed(p->pre_prepare_sig, PBFT_SIG_BYTES, o->pre_prepare_sig) != 0)
        return -BEX_EDECODE;
    return cert_votes_from(p->prepares, &p->prepare_count, PBFT_QUORUM_MAX - 1, o->prepares, o->n_prepares);
}

static int view_change_from(struct pbft_view_change *vc, const Bex__PbftViewChange *o)
{
    int rc;

    if (o == NULL || o->n_prepared > PBFT_WINDOW_MAX)
        return -BEX_EDECODE;
    vc->new_view = o->new_view;
    vc->stable.seq = o->stable_seq;
    if (copy_fixed(vc->stable.digest, PBFT_DIGEST_BYTES, o->stable_digest) != 0)
        return -BEX_EDECODE;
    if ((rc = cert_votes_from(vc->stable.votes, &vc->stable.count, PBFT_QUORUM_MAX, o->checkpoint_proof,
                              o->n_checkpoint_proof)) != 0)
        return rc;
    for (size_t i = 0; i < o->n_prepared; i++) {
        if ((rc = prepared_from(&vc->prepared[i], o->prepared[i])) != 0)
            return rc;
    }
    vc->prepared_count = (uint32_t)o->n_prepared;
    vc->replica = o->replica;
    return copy_fixed(vc->sig, PBFT_SIG_BYTES, o->sig);
}

static int from_envelope(struct pbft_msg *msg, struct wire_scratch *s, const Bex__Envelope *env, bool persisted)
{
    int rc;

    memset(msg, 0, sizeof *msg);
    switch (env->kind_case) {
    case BEX__ENVELOPE__KIND_VOTE:
        if ((rc = vote_from(&msg->vote, env->vote)) != 0)
            return rc;
        if (msg->vote.type < PBFT_MSG_PRE_PREPARE || msg->vote.type > PBFT_MSG_CHECKPOINT)
            return -BEX_EDECODE;
        msg->type = (enum pbft_msg_type)msg->vote.type;
        return 0;
    case BEX__ENVELOPE__KIND_VIEW_CHANGE:
        memset(&s->vc, 0, sizeof s->vc);
        if ((rc = view_change_from(&s->vc, env->view_change)) != 0)
            return rc;
        if (s->vc.new_view == PREPARED_TAG || s->vc.new_view == STABLE_TAG) {
            if (!persisted)
                return -BEX_EDECODE;
            if (s->vc.new_view == STABLE_TAG) {
                s->proof = s->vc.stable;
                msg->type = PBFT_MSG_STABLE;
                msg->proof = &s->proof;
                return 0;
            }
            if (s->vc.prepared_count != 1)
                return -BEX_EDECODE;
            s->prepared = s->vc.prepared[0];
            msg->type = PBFT_MSG_PREPARED;
            msg->prepared = &s->prepared;
            return 0;
        }
        msg->type = PBFT_MSG_VIEW_CHANGE;
        msg->view_change = &s->vc;
        return 0;
    case BEX__ENVELOPE__KIND_NEW_VIEW: {
        const Bex__PbftNewView *o = env->new_view;

        if (o == NULL || o->n_view_changes > PBFT_QUORUM_MAX || o->n_pre_prepares > PBFT_WINDOW_MAX)
            return -BEX_EDECODE;
        memset(&s->nv, 0, sizeof s->nv);
        s->nv.view = o->view;
        for (size_t i = 0; i < o->n_view_changes; i++) {
            if ((rc = view_change_from(&s->nv.view_changes[i], o->view_changes[i])) != 0)
                return rc;
        }
        s->nv.view_change_count = (uint32_t)o->n_view_changes;
        for (size_t i = 0; i < o->n_pre_prepares; i++) {
            if ((rc = vote_from(&s->nv.pre_prepares[i], o->pre_prepares[i])) != 0)
                return rc;
        }
        s->nv.pre_prepare_count = (uint32_t)o->n_pre_prepares;
        s->nv.replica = o->replica;
        if (copy_fixed(s->nv.sig, PBFT_SIG_BYTES, o->sig) != 0)
            return -BEX_EDECODE;
        msg->type = PBFT_MSG_NEW_VIEW;
        msg->new_view = &s->nv;
        return 0;
    }
    default:
        return -BEX_EINVAL;
    }
}

/*
 * Decodes, then refuses views above the engine's PBFT_VIEW_MAX: far below
 * the tags above, so that no number of liars can reach them.
 */
static int decode_checked(struct pbft_msg *msg, struct wire_scratch *s, const Bex__Envelope *env, bool persisted)
{
    int rc = from_envelope(msg, s, env, persisted);

    if (rc == 0 && !pbft_views_ok(msg))
        rc = -BEX_EDECODE;
    return rc;
}

int wire_from_envelope(struct pbft_msg *msg, struct wire_scratch *s, const Bex__Envelope *env)
{
    return decode_checked(msg, s, env, false);
}

int wire_decode(struct pbft_msg *msg, struct wire_scratch *s, const uint8_t *bytes, size_t len)
{
    Bex__Envelope *env = bex__envelope__unpack(NULL, len, bytes);
    int rc;

    if (env == NULL)
        return -BEX_EDECODE;
    rc = decode_checked(msg, s, env, true);
    bex__envelope__free_unpacked(env, NULL);
    return rc;
}

/* ------------------------------------------------------------- certificates */

int wire_cert_encode(uint8_t **out, size_t *out_len, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES],
                     const struct pbft_commit_cert *cert)
{
    Bex__CommitCert c = BEX__COMMIT_CERT__INIT;
    Bex__CertVote cv[PBFT_QUORUM_MAX], *cvp[PBFT_QUORUM_MAX];
    size_t n;

    BEX_ASSERT(cert->count <= PBFT_QUORUM_MAX);
    c.view = cert->view;
    c.seq = seq;
    c.digest = bin(digest, PBFT_DIGEST_BYTES);
    cert_votes_to(cv, cvp, cert->votes, cert->count);
    c.n_votes = cert->count;
    c.votes = cvp;
    n = bex__commit_cert__get_packed_size(&c);
    *out = malloc(n ? n : 1);
    if (*out == NULL)
        return -BEX_ENOMEM;
    *out_len = bex__commit_cert__pack(&c, *out);
    BEX_ASSERT(*out_len == n);
    return 0;
}

int wire_cert_from_proto(struct pbft_commit_cert *cert, uint64_t *seq, uint8_t digest[PBFT_DIGEST_BYTES],
                         const Bex__CommitCert *c)
{
    if (c == NULL)
        return -BEX_EDECODE;
    memset(cert, 0, sizeof *cert);
    cert->view = c->view;
    *seq = c->seq;
    if (copy_fixed(digest, PBFT_DIGEST_BYTES, c->digest) != 0)
        return -BEX_EDECODE;
    return cert_votes_from(cert->votes, &cert->count, PBFT_QUORUM_MAX, c->votes, c->n_votes);
}
