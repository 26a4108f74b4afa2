/*
 * pbft_cert.c: the canonical bytes the engine signs and the checks of every
 * signed message and certificate. A certificate is only as good as the bytes
 * under its signatures, so everything a VIEW-CHANGE or NEW-VIEW claims is
 * covered by its signature, directly or through a hash.
 */
#include "internal.h"

#include <string.h>

static const uint8_t domain[8] = {'b', 'e', 'x', 'p', 'b', 'f', 't', '1'};

/* Tag of a prepared certificate inside a VIEW-CHANGE digest. */
#define TAG_PREPARED 0x10

/* The VIEW-CHANGE header, its proof votes, one hash per certificate. */
#define VC_BYTES_MAX                                                                   \
    (sizeof(domain) + 1 + 8 + 8 + PBFT_DIGEST_BYTES + 4 +                              \
     PBFT_QUORUM_MAX * (4 + PBFT_SIG_BYTES) + 4 + PBFT_WINDOW_MAX * PBFT_DIGEST_BYTES + 4)
/* The NEW-VIEW header, one digest and signature per VIEW-CHANGE, one digest per PRE-PREPARE. */
#define NV_BYTES_MAX                                                                   \
    (sizeof(domain) + 1 + 8 + 4 + PBFT_QUORUM_MAX * (PBFT_DIGEST_BYTES + PBFT_SIG_BYTES) + \
     4 + PBFT_WINDOW_MAX * PBFT_DIGEST_BYTES + 4)
#define PREPARED_BYTES_MAX                                                             \
    (sizeof(domain) + 1 + 8 + 8 + PBFT_DIGEST_BYTES + PBFT_SIG_BYTES + 4 +             \
     (PBFT_QUORUM_MAX - 1) * (4 + PBFT_SIG_BYTES))

/* A bounded writer of canonical bytes; overrunning it is a bug. */
struct enc {
    uint8_t *buf;
    size_t len;
    size_t cap;
};

static void put(struct enc *e, const void *bytes, size_t len)
{
    BEX_ASSERT(e->len <= e->cap);
    BEX_ASSERT(len <= e->cap - e->len);
    memcpy(e->buf + e->len, bytes, len);
    e->len += len;
}

static void put_u8(struct enc *e, uint8_t v)
{
    put(e, &v, 1);
}

static void put_u32(struct enc *e, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(e, b, sizeof(b));
}

static void put_u64(struct enc *e, uint64_t v)
{
    put_u32(e, (uint32_t)(v >> 32));
    put_u32(e, (uint32_t)v);
}

static void put_cert_votes(struct enc *e, const struct pbft_cert_vote *votes, uint32_t count)
{
    put_u32(e, count);
    for (uint32_t i = 0; i < count; i++) {
        put_u32(e, votes[i].replica);
        put(e, votes[i].sig, PBFT_SIG_BYTES);
    }
}

void pbft_vote_digest(const struct pbft_config *cfg, const struct pbft_vote *v,
                      uint8_t out[PBFT_DIGEST_BYTES])
{
    uint8_t buf[sizeof(domain) + 1 + 8 + 8 + PBFT_DIGEST_BYTES + 4];
    struct enc e = {buf, 0, sizeof(buf)};

    BEX_ASSERT(cfg->crypto.hash != NULL);
    BEX_ASSERT(v->type <= 0xff);
    put(&e, domain, sizeof(domain));
    put_u8(&e, (uint8_t)v->type);
    put_u64(&e, v->view);
    put_u64(&e, v->seq);
    put(&e, v->digest, PBFT_DIGEST_BYTES);
    put_u32(&e, v->replica);
    BEX_ASSERT(e.len == sizeof(buf));
    cfg->crypto.hash(cfg->crypto.ctx, buf, e.len, out);
}

static void prepared_hash(const struct pbft_config *cfg, const struct pbft_prepared *c,
                         uint8_t out[PBFT_DIGEST_BYTES])
{
    uint8_t buf[PREPARED_BYTES_MAX];
    struct enc e = {buf, 0, sizeof(buf)};

    BEX_ASSERT(c->prepare_count <= PBFT_QUORUM_MAX - 1);
    put(&e, domain, sizeof(domain));
    put_u8(&e, TAG_PREPARED);
    put_u64(&e, c->view);
    put_u64(&e, c->seq);
    put(&e, c->digest, PBFT_DIGEST_BYTES);
    put(&e, c->pre_prepare_sig, PBFT_SIG_BYTES);
    put_cert_votes(&e, c->prepares, c->prepare_count);
    BEX_ASSERT(e.len <= sizeof(buf));
    cfg->crypto.hash(cfg->crypto.ctx, buf, e.len, out);
}

void pbft_view_change_digest(const struct pbft_config *cfg, const struct pbft_view_change *vc,
                             uint8_t out[PBFT_DIGEST_BYTES])
{
    uint8_t buf[VC_BYTES_MAX];
    struct enc e = {buf, 0, sizeof(buf)};
    uint8_t h[PBFT_DIGEST_BYTES];

    BEX_ASSERT(vc->stable.count <= PBFT_QUORUM_MAX);
    BEX_ASSERT(vc->prepared_count <= PBFT_WINDOW_MAX);
    put(&e, domain, sizeof(domain));
    put_u8(&e, PBFT_MSG_VIEW_CHANGE);
    put_u64(&e, vc->new_view);
    put_u64(&e, vc->stable.seq);
    put(&e, vc->stable.digest, PBFT_DIGEST_BYTES);
    put_cert_votes(&e, vc->stable.votes, vc->stable.count);
    put_u32(&e, vc->prepared_count);
    for (uint32_t i = 0; i < vc->prepared_count; i++) {
        prepared_hash(cfg, &vc->prepared[i], h);
        put(&e, h, sizeof(h));
    }
    put_u32(&e, vc->replica);
    cfg->crypto.hash(cfg->crypto.ctx, buf, e.len, out);
}

void pbft_new_view_digest(const struct pbft_config *cfg, const struct pbft_new_view *nv,
                          uint8_t out[PBFT_DIGEST_BYTES])
{
    uint8_t buf[NV_BYTES_MAX];
    struct enc e = {buf, 0, sizeof(buf)};
    uint8_t h[PBFT_DIGEST_BYTES];

    BEX_ASSERT(nv->view_change_count <= PBFT_QUORUM_MAX);
    BEX_ASSERT(nv->pre_prepare_count <= PBFT_WINDOW_MAX);
    put(&e, domain, sizeof(domain));
    put_u8(&e, PBFT_MSG_NEW_VIEW);
    put_u64(&e, nv->view);
    put_u32(&e, nv->view_change_count);
    for (uint32_t i = 0; i < nv->view_change_count; i++) {
        pbft_view_change_digest(cfg, &nv->view_changes[i], h);
        put(&e, h, sizeof(h));
        put(&e, nv->view_changes[i].sig, PBFT_SIG_BYTES);
    }
    put_u32(&e, nv->pre_prepare_count);
    for (uint32_t i = 0; i < nv->pre_prepare_count; i++) {
        pbft_vote_digest(cfg, &nv->pre_prepares[i], h);
        put(&e, h, sizeof(h));
    }
    put_u32(&e, nv->replica);
    cfg->crypto.hash(cfg->crypto.ctx, buf, e.len, out);
}

static bool vote_sig_ok(const struct pbft_config *cfg, uint32_t type, uint64_t view,
                        uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES],
                        uint32_t replica, const uint8_t sig[PBFT_SIG_BYTES])
{
    struct pbft_vote v = {.type = type, .view = view, .seq = seq, .replica = replica};
    uint8_t h[PBFT_DIGEST_BYTES];

    memcpy(v.digest, digest, PBFT_DIGEST_BYTES);
    pbft_vote_digest(cfg, &v, h);
    return cfg->crypto.verify(cfg->crypto.ctx, replica, h, sig);
}

int pbft__check_vote_sig(const struct pbft *p, const struct pbft_vote *v)
{
    BEX_ASSERT(v->replica < p->cfg.n);
    BEX_ASSERT(v->type >= PBFT_MSG_PRE_PREPARE);
    if (!vote_sig_ok(&p->cfg, v->type, v->view, v->seq, v->digest, v->replica, v->sig))
        return -BEX_ESIG;
    return 0;
}

/*
 * Checks count signatures of distinct members over (type, view, seq,
 * digest). except is a replica that may not appear (the primary among
 * PREPAREs), or PBFT_REPLICAS_MAX for none.
 */
static int check_votes(const struct pbft_config *cfg, uint32_t type, uint64_t view,
                       uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES],
                       const struct pbft_cert_vote *votes, uint32_t count, uint32_t except)
{
    uint32_t seen = 0;

    BEX_ASSERT(cfg->n <= PBFT_REPLICAS_MAX);
    BEX_ASSERT(count <= PBFT_QUORUM_MAX);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t r = votes[i].replica;
        if (r >= cfg->n)
            return -BEX_EINVAL;
        if (r == except)
            return -BEX_EINVAL;
        if (seen & (1u << r))
            return -BEX_EINVAL;
        seen |= 1u << r;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (!vote_sig_ok(cfg, type, view, seq, digest, votes[i].replica, votes[i].sig))
            return -BEX_ESIG;
    }
    return 0;
}

int pbft__check_proof(const struct pbft_config *cfg, uint32_t q,
                      const struct pbft_checkpoint_proof *proof)
{
    BEX_ASSERT(q >= 3);
    BEX_ASSERT(cfg->checkpoint_interval >= 1);
    if (proof->seq % cfg->checkpoint_interval != 0)
        return -BEX_EINVAL;
    if (proof->seq == 0) {
        if (proof->count != 0)
            return -BEX_EINVAL;
        return pbft__digest_is_zero(proof->digest) ? 0 : -BEX_EINVAL;
    }
    if (proof->count < q)
        return -BEX_ELIMIT;
    if (proof->count > PBFT_QUORUM_MAX)
        return -BEX_ELIMIT;
    return check_votes(cfg, PBFT_MSG_CHECKPOINT, 0, proof->seq, proof->digest, proof->votes,
                       proof->count, PBFT_REPLICAS_MAX);
}

int pbft__check_prepared(const struct pbft_config *cfg, uint32_t q, const struct pbft_prepared *c)
{
    uint32_t primary = (uint32_t)(c->view % cfg->n);

    BEX_ASSERT(q >= 3);
    BEX_ASSERT(primary < cfg->n);
    if (c->seq == 0)
        return -BEX_EINVAL;
    if (c->prepare_count < q - 1)
        return -BEX_ELIMIT;
    if (c->prepare_count > PBFT_QUORUM_MAX - 1)
        return -BEX_ELIMIT;
    if (!vote_sig_ok(cfg, PBFT_MSG_PRE_PREPARE, c->view, c->seq, c->digest, primary,
                     c->pre_prepare_sig))
        return -BEX_ESIG;
    return check_votes(cfg, PBFT_MSG_PREPARE, c->view, c->seq, c->digest, c->prepares,
                       c->prepare_count, primary);
}

int pbft__check_view_change(const struct pbft *p, const struct pbft_view_change *vc)
{
    uint8_t h[PBFT_DIGEST_BYTES];
    uint64_t low = vc->stable.seq;
    uint64_t last = low;
    int rc;

    BEX_ASSERT(vc->replica < p->cfg.n);
    BEX_ASSERT(p->cfg.window <= PBFT_WINDOW_MAX);
    /* Cheap structure first, then the one signature, then the certificates. */
    if (vc->new_view == 0)
        return -BEX_EINVAL;
    if (vc->stable.count > PBFT_QUORUM_MAX)
        return -BEX_ELIMIT;
    if (vc->prepared_count > p->cfg.window)
        return -BEX_ELIMIT;
    if (low > UINT64_MAX - p->cfg.window)
        return -BEX_EINVAL;
    for (uint32_t i = 0; i < vc->prepared_count; i++) {
        const struct pbft_prepared *c = &vc->prepared[i];
        if (c->seq <= last)
            return -BEX_EINVAL;
        if (c->seq > low + p->cfg.window)
            return -BEX_EINVAL;
        if (c->view >= vc->new_view)
            return -BEX_EINVAL;
        if (c->prepare_count > PBFT_QUORUM_MAX - 1)
            return -BEX_ELIMIT;
        last = c->seq;
    }
    pbft_view_change_digest(&p->cfg, vc, h);
    if (!p->cfg.crypto.verify(p->cfg.crypto.ctx, vc->replica, h, vc->sig))
        return -BEX_ESIG;
    if ((rc = pbft__check_proof(&p->cfg, p->q, &vc->stable)) != 0)
        return rc;
    for (uint32_t i = 0; i < vc->prepared_count; i++) {
        if ((rc = pbft__check_prepared(&p->cfg, p->q, &vc->prepared[i])) != 0)
            return rc;
    }
    return 0;
}

int pbft_verify_commit_cert(const struct pbft_config *cfg, uint64_t seq,
                            const uint8_t digest[PBFT_DIGEST_BYTES],
                            const struct pbft_commit_cert *cert)
{
    uint32_t q = pbft_quorum(cfg->n);

    BEX_ASSERT(cfg->n >= PBFT_REPLICAS_MIN);
    BEX_ASSERT(cfg->n <= PBFT_REPLICAS_MAX);
    if (cert->count < q)
        return -BEX_ELIMIT;
    if (cert->count > PBFT_QUORUM_MAX)
        return -BEX_ELIMIT;
    if (seq == 0)
        return -BEX_EINVAL;
    return check_votes(cfg, PBFT_MSG_COMMIT, cert->view, seq, digest, cert->votes, cert->count,
                       PBFT_REPLICAS_MAX);
}

int pbft_verify_checkpoint_proof(const struct pbft_config *cfg,
                                 const struct pbft_checkpoint_proof *proof)
{
    BEX_ASSERT(cfg->n >= PBFT_REPLICAS_MIN);
    BEX_ASSERT(cfg->n <= PBFT_REPLICAS_MAX);
    return pbft__check_proof(cfg, pbft_quorum(cfg->n), proof);
}
