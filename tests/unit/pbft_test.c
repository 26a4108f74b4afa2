/*
 * pbft_test.c: the PBFT engine, one claim of Castro and Liskov at a time.
 *
 * Each test drives real engines through pbft_step/pbft_tick and checks the
 * actions they return. A small harness keeps n engines, signs messages for
 * any replica (so a test can play a Byzantine one), and pumps the messages
 * the engines send to each other, optionally dropping some.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "pbft.h"

#define SEQ_MAX 256
#define STORE_VOTES 1024
#define STORE_PREPARED 256

/* ---------------------------------------------------------------- crypto */

struct tc;

struct signer {
    const struct tc *t;
    uint32_t self;
};

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return z ^ (z >> 33);
}

static void th(const uint8_t *b, size_t len, uint8_t out[PBFT_DIGEST_BYTES])
{
    uint64_t h[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < len; i++)
        h[i & 3] = mix(h[i & 3] ^ b[i] ^ ((uint64_t)i << 8));
    for (int k = 0; k < 4; k++) {
        uint64_t v = mix(h[k] + 31 * h[(k + 1) & 3] + len);
        memcpy(out + 8 * k, &v, 8);
    }
}

struct tc {
    uint32_t n;
    uint32_t f;
    uint32_t q;
    uint64_t secret[PBFT_REPLICAS_MAX];
    struct signer sg[PBFT_REPLICAS_MAX];
    struct pbft_config cfg[PBFT_REPLICAS_MAX];
    struct pbft *p[PBFT_REPLICAS_MAX];
    bool down[PBFT_REPLICAS_MAX];
    bool auto_exec;
    uint64_t now;

    /* What each replica committed, executed and persisted. */
    uint64_t executed[PBFT_REPLICAS_MAX];
    uint8_t root[PBFT_REPLICAS_MAX][PBFT_DIGEST_BYTES];
    uint8_t root_at[PBFT_REPLICAS_MAX][SEQ_MAX][PBFT_DIGEST_BYTES];
    bool committed[PBFT_REPLICAS_MAX][SEQ_MAX];
    uint8_t committed_digest[PBFT_REPLICAS_MAX][SEQ_MAX][PBFT_DIGEST_BYTES];
    struct pbft_commit_cert cert[PBFT_REPLICAS_MAX][SEQ_MAX];
    uint32_t nvotes[PBFT_REPLICAS_MAX];
    struct pbft_vote votes[PBFT_REPLICAS_MAX][STORE_VOTES];
    uint32_t nprepared[PBFT_REPLICAS_MAX];
    struct pbft_prepared prepared[PBFT_REPLICAS_MAX][STORE_PREPARED];
    struct pbft_view_change *vc[PBFT_REPLICAS_MAX];
    struct pbft_new_view *nv[PBFT_REPLICAS_MAX];
    bool has_proof[PBFT_REPLICAS_MAX];
    struct pbft_checkpoint_proof proof[PBFT_REPLICAS_MAX];
    bool fetched[PBFT_REPLICAS_MAX];
    struct pbft_action fetch[PBFT_REPLICAS_MAX];
    uint32_t new_views[PBFT_REPLICAS_MAX];

    /* Messages in flight, delivered in order by pump(). */
    struct qmsg *queue;
    size_t qlen;
    size_t qhead;
    size_t qcap;
    bool (*drop)(const struct tc *t, uint32_t from, uint32_t to, const struct pbft_msg *m);

    struct pbft_actions out;
};

struct qmsg {
    uint32_t from;
    uint32_t to;
    struct pbft_msg m;
    struct pbft_view_change *vc;
    struct pbft_new_view *nv;
};

static void sign_as(const struct tc *t, uint32_t r, const uint8_t d[PBFT_DIGEST_BYTES],
                    uint8_t sig[PBFT_SIG_BYTES])
{
    uint8_t buf[8 + PBFT_DIGEST_BYTES + 1];
    memcpy(buf, &t->secret[r], 8);
    memcpy(buf + 8, d, PBFT_DIGEST_BYTES);
    buf[sizeof(buf) - 1] = 1;
    th(buf, sizeof(buf), sig);
    buf[sizeof(buf) - 1] = 2;
    th(buf, sizeof(buf), sig + PBFT_DIGEST_BYTES);
}

static void cb_sign(void *ctx, const uint8_t d[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES])
{
    const struct signer *s = ctx;
    sign_as(s->t, s->self, d, sig);
}

static bool cb_verify(void *ctx, uint32_t r, const uint8_t d[PBFT_DIGEST_BYTES],
                      const uint8_t sig[PBFT_SIG_BYTES])
{
    const struct signer *s = ctx;
    uint8_t want[PBFT_SIG_BYTES];
    if (r >= s->t->n)
        return false;
    sign_as(s->t, r, d, want);
    return memcmp(want, sig, PBFT_SIG_BYTES) == 0;
}

static void cb_hash(void *ctx, const uint8_t *b, size_t len, uint8_t out[PBFT_DIGEST_BYTES])
{
    (void)ctx;
    th(b, len, out);
}

/* ---------------------------------------------------------------- harness */

static const uint8_t zero[PBFT_DIGEST_BYTES];

static void dg(uint8_t d[PBFT_DIGEST_BYTES], uint32_t x)
{
    memset(d, 0, PBFT_DIGEST_BYTES);
    d[0] = (uint8_t)x;
    d[1] = (uint8_t)(x >> 8);
    d[31] = 0xaa;
}

static void collect(struct tc *t, uint32_t i);

static void enqueue(struct tc *t, uint32_t from, uint32_t to, const struct pbft_msg *m)
{
    struct qmsg *x;

    if (t->qlen == t->qcap) {
        t->qcap = t->qcap ? 2 * t->qcap : 256;
        t->queue = realloc(t->queue, t->qcap * sizeof(*t->queue));
        assert_non_null(t->queue);
    }
    x = &t->queue[t->qlen++];
    memset(x, 0, sizeof(*x));
    x->from = from;
    x->to = to;
    x->m = *m;
    if (m->type == PBFT_MSG_VIEW_CHANGE) {
        x->vc = malloc(sizeof(*x->vc));
        assert_non_null(x->vc);
        *x->vc = *m->view_change;
        x->m.view_change = x->vc;
    } else if (m->type == PBFT_MSG_NEW_VIEW) {
        x->nv = malloc(sizeof(*x->nv));
        assert_non_null(x->nv);
        *x->nv = *m->new_view;
        x->m.new_view = x->nv;
    }
}

static void execute(struct tc *t, uint32_t i, uint64_t seq)
{
    uint8_t buf[2 * PBFT_DIGEST_BYTES];

    assert_int_equal(seq, t->executed[i] + 1);
    memcpy(buf, t->root[i], PBFT_DIGEST_BYTES);
    memcpy(buf + PBFT_DIGEST_BYTES, t->committed_digest[i][seq], PBFT_DIGEST_BYTES);
    th(buf, sizeof(buf), t->root[i]);
    memcpy(t->root_at[i][seq], t->root[i], PBFT_DIGEST_BYTES);
    t->executed[i] = seq;
    assert_int_equal(pbft_executed(t->p[i], seq, t->root[i], &t->out), 0);
    collect(t, i);
}

/* Performs the actions in t->out of replica i, as a node would. */
static void collect(struct tc *t, uint32_t i)
{
    uint64_t commits[PBFT_WINDOW_MAX];
    uint32_t ncommits = 0;

    for (uint32_t k = 0; k < t->out.count; k++) {
        const struct pbft_action *a = &t->out.items[k];
        switch (a->type) {
        case PBFT_ACT_PERSIST:
            if (a->msg.type == PBFT_MSG_PREPARED) {
                assert_true(t->nprepared[i] < STORE_PREPARED);
                t->prepared[i][t->nprepared[i]++] = *a->msg.prepared;
            } else if (a->msg.type == PBFT_MSG_VIEW_CHANGE) {
                if (t->vc[i] == NULL)
                    t->vc[i] = malloc(sizeof(*t->vc[i]));
                *t->vc[i] = *a->msg.view_change;
            } else if (a->msg.type == PBFT_MSG_NEW_VIEW) {
                if (t->nv[i] == NULL)
                    t->nv[i] = malloc(sizeof(*t->nv[i]));
                *t->nv[i] = *a->msg.new_view;
            } else {
                assert_true(t->nvotes[i] < STORE_VOTES);
                t->votes[i][t->nvotes[i]++] = a->msg.vote;
            }
            break;
        case PBFT_ACT_SEND:
            if (!t->down[i])
                enqueue(t, i, a->to, &a->msg);
            break;
        case PBFT_ACT_BROADCAST:
            for (uint32_t to = 0; to < t->n && !t->down[i]; to++) {
                if (to != i)
                    enqueue(t, i, to, &a->msg);
            }
            break;
        case PBFT_ACT_COMMIT:
            assert_true(a->seq < SEQ_MAX);
            assert_false(t->committed[i][a->seq]);
            t->committed[i][a->seq] = true;
            memcpy(t->committed_digest[i][a->seq], a->digest, PBFT_DIGEST_BYTES);
            t->cert[i][a->seq] = *a->cert;
            if (t->auto_exec)
                commits[ncommits++] = a->seq;
            break;
        case PBFT_ACT_FETCH:
            t->fetched[i] = true;
            t->fetch[i] = *a;
            break;
        case PBFT_ACT_STABLE:
            t->has_proof[i] = true;
            t->proof[i] = *a->proof;
            break;
        case PBFT_ACT_NEW_VIEW:
            t->new_views[i]++;
            break;
        case PBFT_ACT_VIEW_CHANGE:
            break;
        }
    }
    for (uint32_t k = 0; k < ncommits; k++)
        execute(t, i, commits[k]);
}

static struct tc *tc_new(uint32_t n, uint32_t k, uint32_t window, uint64_t timeout_ms,
                         uint64_t retransmit_ms)
{
    struct tc *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    t->n = n;
    t->f = pbft_faults(n);
    t->q = pbft_quorum(n);
    t->auto_exec = true;
    for (uint32_t i = 0; i < n; i++) {
        t->secret[i] = 0x9e3779b97f4a7c15ull * (i + 1);
        t->sg[i].t = t;
        t->sg[i].self = i;
        pbft_config_default(&t->cfg[i], n, i);
        t->cfg[i].checkpoint_interval = k;
        t->cfg[i].window = window;
        t->cfg[i].view_timeout_ms = timeout_ms;
        t->cfg[i].retransmit_ms = retransmit_ms;
        t->cfg[i].checks = true;
        t->cfg[i].crypto.sign = cb_sign;
        t->cfg[i].crypto.verify = cb_verify;
        t->cfg[i].crypto.hash = cb_hash;
        t->cfg[i].crypto.ctx = &t->sg[i];
        t->p[i] = malloc(pbft_size());
        assert_non_null(t->p[i]);
        assert_int_equal(pbft_init(t->p[i], &t->cfg[i]), 0);
        assert_int_equal(pbft_start(t->p[i], 0, 0, zero, &t->out), 0);
        collect(t, i);
    }
    return t;
}

static void tc_free(struct tc *t)
{
    for (size_t k = t->qhead; k < t->qlen; k++) {
        free(t->queue[k].vc);
        free(t->queue[k].nv);
    }
    free(t->queue);
    for (uint32_t i = 0; i < t->n; i++) {
        pbft_close(t->p[i]);
        free(t->p[i]);
        free(t->vc[i]);
        free(t->nv[i]);
    }
    free(t);
}

/* Delivers everything in flight, and what that causes, in FIFO order. */
static void pump(struct tc *t)
{
    size_t steps = 0;

    while (t->qhead < t->qlen) {
        struct qmsg x = t->queue[t->qhead++];
        assert_true(++steps < 1000000);
        if (!t->down[x.from] && !t->down[x.to] &&
            (t->drop == NULL || !t->drop(t, x.from, x.to, &x.m))) {
            /* Refusals are the engine's business here; the tests check them directly. */
            int rc = pbft_step(t->p[x.to], &x.m, &t->out);
            assert_true(rc <= 0);
            collect(t, x.to);
        }
        free(x.vc);
        free(x.nv);
    }
    t->qhead = 0;
    t->qlen = 0;
}

/* Drops everything in flight. */
static void flush(struct tc *t)
{
    for (size_t k = t->qhead; k < t->qlen; k++) {
        free(t->queue[k].vc);
        free(t->queue[k].nv);
    }
    t->qhead = 0;
    t->qlen = 0;
}

static void tick_all(struct tc *t, uint64_t now)
{
    t->now = now;
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->down[i])
            continue;
        assert_int_equal(pbft_tick(t->p[i], now, &t->out), 0);
        collect(t, i);
    }
}

static void propose(struct tc *t, uint32_t i, uint32_t x)
{
    uint8_t d[PBFT_DIGEST_BYTES];
    dg(d, x);
    assert_int_equal(pbft_propose(t->p[i], d, &t->out), 0);
    collect(t, i);
}

static struct pbft_vote mkvote(const struct tc *t, uint32_t type, uint64_t view, uint64_t seq,
                               const uint8_t digest[PBFT_DIGEST_BYTES], uint32_t replica)
{
    struct pbft_vote v;
    uint8_t h[PBFT_DIGEST_BYTES];

    memset(&v, 0, sizeof(v));
    v.type = type;
    v.view = view;
    v.seq = seq;
    memcpy(v.digest, digest, PBFT_DIGEST_BYTES);
    v.replica = replica;
    pbft_vote_digest(&t->cfg[0], &v, h);
    sign_as(t, replica < t->n ? replica : 0, h, v.sig);
    return v;
}

static struct pbft_msg vmsg(const struct pbft_vote *v)
{
    struct pbft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = (enum pbft_msg_type)v->type;
    m.vote = *v;
    return m;
}

/* Steps a vote into replica i and leaves the actions in t->out. */
static int step_vote(struct tc *t, uint32_t i, const struct pbft_vote *v)
{
    struct pbft_msg m = vmsg(v);
    return pbft_step(t->p[i], &m, &t->out);
}

static int step_vc(struct tc *t, uint32_t i, const struct pbft_view_change *vc)
{
    struct pbft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = PBFT_MSG_VIEW_CHANGE;
    m.view_change = vc;
    return pbft_step(t->p[i], &m, &t->out);
}

static int step_nv(struct tc *t, uint32_t i, const struct pbft_new_view *nv)
{
    struct pbft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = PBFT_MSG_NEW_VIEW;
    m.new_view = nv;
    return pbft_step(t->p[i], &m, &t->out);
}

/* The index of the nth action of type (and message type mt, or any if 0), or -1. */
static int find(const struct pbft_actions *o, enum pbft_action_type type, uint32_t mt, int nth)
{
    for (uint32_t k = 0; k < o->count; k++) {
        if (o->items[k].type != type || (mt != 0 && o->items[k].msg.type != mt))
            continue;
        if (nth-- == 0)
            return (int)k;
    }
    return -1;
}

static uint32_t count(const struct pbft_actions *o, enum pbft_action_type type, uint32_t mt)
{
    uint32_t c = 0;
    while (find(o, type, mt, (int)c) >= 0)
        c++;
    return c;
}

/* A prepared certificate signed by the primary of view and q-1 backups. */
static struct pbft_prepared mkcert(const struct tc *t, uint64_t view, uint64_t seq,
                                   const uint8_t digest[PBFT_DIGEST_BYTES])
{
    uint32_t primary = (uint32_t)(view % t->n);
    struct pbft_prepared c;
    struct pbft_vote v;

    memset(&c, 0, sizeof(c));
    c.view = view;
    c.seq = seq;
    memcpy(c.digest, digest, PBFT_DIGEST_BYTES);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, view, seq, digest, primary);
    memcpy(c.pre_prepare_sig, v.sig, PBFT_SIG_BYTES);
    for (uint32_t r = 0; r < t->n && c.prepare_count < t->q - 1; r++) {
        if (r == primary)
            continue;
        v = mkvote(t, PBFT_MSG_PREPARE, view, seq, digest, r);
        c.prepares[c.prepare_count].replica = r;
        memcpy(c.prepares[c.prepare_count].sig, v.sig, PBFT_SIG_BYTES);
        c.prepare_count++;
    }
    return c;
}

static void sign_vc(const struct tc *t, struct pbft_view_change *vc)
{
    uint8_t h[PBFT_DIGEST_BYTES];
    pbft_view_change_digest(&t->cfg[0], vc, h);
    sign_as(t, vc->replica, h, vc->sig);
}

static void sign_nv(const struct tc *t, struct pbft_new_view *nv)
{
    uint8_t h[PBFT_DIGEST_BYTES];
    pbft_new_view_digest(&t->cfg[0], nv, h);
    sign_as(t, nv->replica, h, nv->sig);
}

/* A VIEW-CHANGE from the genesis checkpoint carrying the given certificates. */
static struct pbft_view_change *mkvc(const struct tc *t, uint32_t replica, uint64_t view,
                                     const struct pbft_prepared *certs, uint32_t ncerts)
{
    struct pbft_view_change *vc = calloc(1, sizeof(*vc));

    assert_non_null(vc);
    vc->new_view = view;
    vc->replica = replica;
    for (uint32_t i = 0; i < ncerts; i++)
        vc->prepared[vc->prepared_count++] = certs[i];
    sign_vc(t, vc);
    return vc;
}

/* A NEW-VIEW of the VIEW-CHANGEs with the O set given as one digest per seq after min-s. */
static struct pbft_new_view *mknv(const struct tc *t, uint64_t view,
                                  struct pbft_view_change *const *vcs, uint32_t nvcs,
                                  uint64_t min_s, const uint8_t (*digests)[PBFT_DIGEST_BYTES],
                                  uint32_t ndigests)
{
    struct pbft_new_view *nv = calloc(1, sizeof(*nv));
    uint32_t primary = (uint32_t)(view % t->n);

    assert_non_null(nv);
    nv->view = view;
    nv->replica = primary;
    for (uint32_t i = 0; i < nvcs; i++)
        nv->view_changes[nv->view_change_count++] = *vcs[i];
    for (uint32_t i = 0; i < ndigests; i++)
        nv->pre_prepares[nv->pre_prepare_count++] =
            mkvote(t, PBFT_MSG_PRE_PREPARE, view, min_s + 1 + i, digests[i], primary);
    sign_nv(t, nv);
    return nv;
}

/* ---------------------------------------------------------------- config */

static void pbft_config_is_validated(void **state)
{
    struct pbft_config c;
    struct pbft_config bad;
    struct tc *t = tc_new(4, 4, 8, 100, 50);

    (void)state;
    c = t->cfg[0];
    assert_int_equal(pbft_config_check(&c), 0);
    bad = c, bad.n = 3;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.n = PBFT_REPLICAS_MAX + 1;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.self = 4;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.checkpoint_interval = 0;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.window = 12, bad.checkpoint_interval = 8;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.window = PBFT_WINDOW_MAX + 1, bad.checkpoint_interval = 1;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.view_timeout_ms = 0;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.retransmit_ms = 0;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    bad = c, bad.crypto.verify = NULL;
    assert_int_equal(pbft_config_check(&bad), -BEX_EINVAL);
    assert_int_equal(pbft_init(t->p[0], &bad), -BEX_EINVAL);
    pbft_config_default(&bad, 7, 3);
    assert_int_equal(bad.checkpoint_interval, PBFT_CHECKPOINT_INTERVAL_DEFAULT);
    assert_int_equal(bad.window % bad.checkpoint_interval, 0);
    tc_free(t);
}

static void pbft_quorums_intersect_in_f_plus_1(void **state)
{
    (void)state;
    assert_int_equal(pbft_quorum(4), 3);
    assert_int_equal(pbft_quorum(5), 4);
    assert_int_equal(pbft_quorum(6), 4);
    assert_int_equal(pbft_quorum(7), 5);
    assert_int_equal(pbft_quorum(10), 7);
    assert_int_equal(pbft_quorum(16), 11);
    for (uint32_t n = PBFT_REPLICAS_MIN; n <= PBFT_REPLICAS_MAX; n++) {
        uint32_t f = pbft_faults(n);
        uint32_t q = pbft_quorum(n);
        assert_true(2 * q >= n + f + 1); /* two quorums share an honest replica */
        assert_true(q <= n - f);         /* the honest replicas alone form one */
        assert_true(q <= PBFT_QUORUM_MAX);
    }
}

/* ---------------------------------------------------------------- normal case */

static void pbft_pre_prepare_broadcasts_prepare(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote pp;
    int persist, bcast;

    (void)state;
    dg(d, 1);
    pp = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &pp), 0);
    persist = find(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_PREPARE, 0);
    bcast = find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE, 0);
    assert_true(persist >= 0);
    assert_true(bcast > persist); /* durable before it leaves */
    assert_int_equal(t->out.items[bcast].msg.vote.seq, 1);
    assert_int_equal(t->out.items[bcast].msg.vote.view, 0);
    assert_int_equal(t->out.items[bcast].msg.vote.replica, 1);
    assert_memory_equal(t->out.items[bcast].msg.vote.digest, d, PBFT_DIGEST_BYTES);
    assert_memory_equal(&t->out.items[bcast].msg.vote, &t->out.items[persist].msg.vote,
                        sizeof(struct pbft_vote));
    assert_int_equal(count(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_COMMIT), 0);
    tc_free(t);
}

static void pbft_prepared_broadcasts_commit(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    const struct pbft_prepared *c;
    int cert, persist, bcast;

    (void)state;
    dg(d, 1);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    /* Our own PREPARE is one of the q-1 = 2 needed. */
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 2);
    assert_int_equal(step_vote(t, 1, &v), 0);
    cert = find(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_PREPARED, 0);
    persist = find(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_COMMIT, 0);
    bcast = find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_COMMIT, 0);
    assert_true(cert >= 0);
    assert_true(persist > cert);
    assert_true(bcast > persist);
    c = t->out.items[cert].msg.prepared;
    assert_int_equal(c->view, 0);
    assert_int_equal(c->seq, 1);
    assert_int_equal(c->prepare_count, 2);
    assert_int_equal(c->prepares[0].replica, 1);
    assert_int_equal(c->prepares[1].replica, 2);
    assert_memory_equal(t->out.items[bcast].msg.vote.digest, d, PBFT_DIGEST_BYTES);
    tc_free(t);
}

static void pbft_commit_quorum_commits_with_certificate(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    int k;

    (void)state;
    dg(d, 1);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 2);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_COMMIT, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    assert_int_equal(count(&t->out, PBFT_ACT_COMMIT, 0), 0); /* two of three */
    v = mkvote(t, PBFT_MSG_COMMIT, 0, 1, d, 3);
    assert_int_equal(step_vote(t, 1, &v), 0);
    k = find(&t->out, PBFT_ACT_COMMIT, 0, 0);
    assert_true(k >= 0);
    assert_int_equal(t->out.items[k].seq, 1);
    assert_memory_equal(t->out.items[k].digest, d, PBFT_DIGEST_BYTES);
    assert_int_equal(t->out.items[k].cert->count, 3);
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[2], 1, d, t->out.items[k].cert), 0);
    assert_int_equal(pbft_committed_seq(t->p[1]), 1);
    tc_free(t);
}

static void pbft_commits_wait_for_gaps(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d1[PBFT_DIGEST_BYTES], d2[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    (void)state;
    dg(d1, 1);
    dg(d2, 2);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 2, d2, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    for (uint32_t r = 2; r <= 3; r++) {
        v = mkvote(t, PBFT_MSG_PREPARE, 0, 2, d2, r);
        assert_int_equal(step_vote(t, 1, &v), 0);
    }
    for (uint32_t r = 2; r <= 3; r++) {
        v = mkvote(t, PBFT_MSG_COMMIT, 0, 2, d2, r);
        assert_int_equal(step_vote(t, 1, &v), 0);
        assert_int_equal(count(&t->out, PBFT_ACT_COMMIT, 0), 0);
    }
    assert_int_equal(pbft_committed_seq(t->p[1]), 0);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d1, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d1, 2);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_COMMIT, 0, 1, d1, 2);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_COMMIT, 0, 1, d1, 3);
    assert_int_equal(step_vote(t, 1, &v), 0);
    /* One call hands out both, in order. */
    assert_int_equal(count(&t->out, PBFT_ACT_COMMIT, 0), 2);
    assert_int_equal(t->out.items[find(&t->out, PBFT_ACT_COMMIT, 0, 0)].seq, 1);
    assert_int_equal(t->out.items[find(&t->out, PBFT_ACT_COMMIT, 0, 1)].seq, 2);
    assert_int_equal(pbft_committed_seq(t->p[1]), 2);
    tc_free(t);
}

static void pbft_cluster_commits_in_order(void **state)
{
    struct tc *t = tc_new(4, 2, 4, 100, 50);

    (void)state;
    for (uint32_t x = 1; x <= 3; x++)
        propose(t, 0, x);
    pump(t);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(t->executed[i], 3);
        for (uint32_t s = 1; s <= 3; s++) {
            uint8_t d[PBFT_DIGEST_BYTES];
            dg(d, s);
            assert_true(t->committed[i][s]);
            assert_memory_equal(t->committed_digest[i][s], d, PBFT_DIGEST_BYTES);
        }
    }
    tc_free(t);
}

/* ---------------------------------------------------------------- refusals */

static void pbft_bad_signature_is_dropped_and_counted(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    (void)state;
    dg(d, 1);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    v.sig[5] ^= 0x40;
    assert_int_equal(step_vote(t, 1, &v), -BEX_ESIG);
    assert_int_equal(t->out.count, 0);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 2);
    memcpy(v.digest, zero, PBFT_DIGEST_BYTES); /* signed for another digest */
    assert_int_equal(step_vote(t, 1, &v), -BEX_ESIG);
    assert_int_equal(pbft_stats(t->p[1])->dropped_bad_sig, 2);
    assert_int_equal(pbft_log_count(t->p[1]), 0);
    tc_free(t);
}

static void pbft_non_member_is_dropped(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    (void)state;
    dg(d, 1);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 0);
    v.replica = 4;
    assert_int_equal(step_vote(t, 1, &v), -BEX_EPERM);
    v = mkvote(t, PBFT_MSG_CHECKPOINT, 0, 4, d, 0);
    v.replica = 99;
    assert_int_equal(step_vote(t, 1, &v), -BEX_EPERM);
    /* A replay of our own vote is no one else's vote. */
    v = mkvote(t, PBFT_MSG_COMMIT, 0, 1, d, 1);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EPERM);
    assert_int_equal(pbft_stats(t->p[1])->dropped_non_member, 3);
    assert_int_equal(t->out.count, 0);
    tc_free(t);
}

static void pbft_wrong_primary_is_dropped(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    (void)state;
    dg(d, 1);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 2);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EPERM);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EPERM);
    assert_int_equal(pbft_stats(t->p[1])->dropped_wrong_primary, 2);
    assert_int_equal(count(&t->out, PBFT_ACT_BROADCAST, 0), 0);
    tc_free(t);
}

static void pbft_conflicting_pre_prepare_is_dropped(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES], e[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    (void)state;
    dg(d, 1);
    dg(e, 2);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, e, 0);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EEXIST);
    assert_int_equal(t->out.count, 0);
    assert_int_equal(pbft_stats(t->p[1])->dropped_conflict, 1);
    /* The same pre-prepare again is a duplicate, not a second PREPARE. */
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    assert_int_equal(count(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_PREPARE), 0);
    assert_int_equal(pbft_stats(t->p[1])->duplicates, 1);
    /* A backup's second PREPARE for another digest is refused too. */
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 2);
    assert_int_equal(step_vote(t, 1, &v), 0);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, e, 2);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EEXIST);
    tc_free(t);
}

static void pbft_null_request_only_from_new_view(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    struct pbft_vote v;

    (void)state;
    assert_int_equal(pbft_propose(t->p[0], zero, &t->out), -BEX_EINVAL);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, zero, 0);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EINVAL);
    assert_int_equal(pbft_stats(t->p[1])->dropped_malformed, 1);
    tc_free(t);
}

/* Views above PBFT_VIEW_MAX are refused, so no quorum of liars can make a view overflow. */
static void pbft_view_above_max_is_refused(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    struct pbft_vote v;
    uint8_t d[PBFT_DIGEST_BYTES];

    (void)state;
    memset(d, 7, sizeof d);
    v = mkvote(t, PBFT_MSG_PREPARE, PBFT_VIEW_MAX + 1, 1, d, 2);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EINVAL);
    assert_int_equal(pbft_stats(t->p[1])->dropped_malformed, 1);
    assert_int_equal(pbft_view(t->p[1]), 0);
    tc_free(t);
}

static void pbft_only_the_primary_proposes(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    uint64_t seq = 0;

    (void)state;
    dg(d, 1);
    assert_int_equal(pbft_propose(t->p[1], d, &t->out), -BEX_ESTATE);
    assert_int_equal(pbft_next_seq(t->p[1], &seq), -BEX_ESTATE);
    assert_int_equal(pbft_next_seq(t->p[0], &seq), 0);
    assert_int_equal(seq, 1);
    tc_free(t);
}

static void pbft_watermarks_bound_the_log(void **state)
{
    struct tc *t = tc_new(4, 2, 4, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    uint64_t seq;
    uint64_t before;

    (void)state;
    propose(t, 0, 1);
    propose(t, 0, 2);
    pump(t);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(pbft_stable_seq(t->p[i]), 2); /* h = 2, H = 6 */
    dg(d, 9);
    before = pbft_stats(t->p[1])->dropped_window;
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 2, d, 0);
    assert_int_equal(step_vote(t, 1, &v), -BEX_ELIMIT); /* seq = h */
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 7, d, 0);
    assert_int_equal(step_vote(t, 1, &v), -BEX_ELIMIT); /* seq = H + 1 */
    assert_int_equal(pbft_stats(t->p[1])->dropped_window, before + 2);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 6, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0); /* seq = H */
    assert_true(find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE, 0) >= 0);
    /* The primary fills the window, then it is full. */
    flush(t);
    for (uint32_t x = 3; x <= 6; x++)
        propose(t, 0, x);
    assert_int_equal(pbft_next_seq(t->p[0], &seq), -BEX_EFULL);
    assert_int_equal(pbft_propose(t->p[0], d, &t->out), -BEX_EFULL);
    tc_free(t);
}

static void pbft_old_view_is_dropped_future_view_buffered(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_view_change *vcs[3];
    struct pbft_new_view *nv;
    struct pbft_vote v;

    (void)state;
    dg(d, 7);
    /* A PREPARE of view 1 reaches replica 2 before view 1 exists: kept. */
    v = mkvote(t, PBFT_MSG_PREPARE, 1, 1, d, 3);
    assert_int_equal(step_vote(t, 2, &v), 0);
    assert_int_equal(pbft_stats(t->p[2])->buffered, 1);
    assert_int_equal(pbft_log_count(t->p[2]), 0);
    for (uint32_t r = 0; r < 3; r++)
        vcs[r] = mkvc(t, r == 2 ? 3 : r, 1, NULL, 0);
    nv = mknv(t, 1, vcs, 3, 0, NULL, 0);
    assert_int_equal(step_nv(t, 2, nv), 0);
    assert_int_equal(pbft_view(t->p[2]), 1);
    assert_true(pbft_view_active(t->p[2]));
    /* The new primary's pre-prepare plus the kept PREPARE prepare the request. */
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 1, 1, d, 1);
    assert_int_equal(step_vote(t, 2, &v), 0);
    assert_true(find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_COMMIT, 0) >= 0);
    /* View 0 is over for replica 2. */
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 2, d, 0);
    assert_int_equal(step_vote(t, 2, &v), -BEX_ESTATE);
    assert_int_equal(pbft_stats(t->p[2])->dropped_old_view, 1);
    for (uint32_t r = 0; r < 3; r++)
        free(vcs[r]);
    free(nv);
    tc_free(t);
}

/* ---------------------------------------------------------------- checkpoints */

static void pbft_checkpoint_stabilises_and_frees_the_log(void **state)
{
    struct tc *t = tc_new(4, 2, 4, 100, 50);

    (void)state;
    propose(t, 0, 1);
    pump(t);
    assert_int_equal(pbft_log_count(t->p[1]), 1);
    assert_int_equal(pbft_stable_seq(t->p[1]), 0);
    propose(t, 0, 2);
    pump(t);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(pbft_stable_seq(t->p[i]), 2);
        assert_int_equal(pbft_log_count(t->p[i]), 0);
        assert_true(t->has_proof[i]);
        assert_int_equal(t->proof[i].seq, 2);
        assert_int_equal(t->proof[i].count, 3);
        assert_memory_equal(t->proof[i].digest, t->root_at[i][2], PBFT_DIGEST_BYTES);
        assert_int_equal(pbft_verify_checkpoint_proof(&t->cfg[i], &t->proof[i]), 0);
    }
    /* However long it runs, the log never holds more than the window. */
    for (uint32_t x = 3; x <= 200; x++) {
        propose(t, 0, x);
        pump(t);
        assert_true(pbft_log_count(t->p[2]) <= 4);
    }
    assert_int_equal(t->executed[3], 200);
    assert_int_equal(pbft_stable_seq(t->p[3]), 200);
    tc_free(t);
}

static void pbft_checkpoint_proof_verifier(void **state)
{
    struct tc *t = tc_new(4, 2, 4, 100, 50);
    struct pbft_checkpoint_proof pr;

    (void)state;
    propose(t, 0, 1);
    propose(t, 0, 2);
    pump(t);
    pr = t->proof[0];
    assert_int_equal(pbft_verify_checkpoint_proof(&t->cfg[1], &pr), 0);
    pr.count = 2;
    assert_int_equal(pbft_verify_checkpoint_proof(&t->cfg[1], &pr), -BEX_ELIMIT);
    pr = t->proof[0];
    pr.digest[0] ^= 1;
    assert_int_equal(pbft_verify_checkpoint_proof(&t->cfg[1], &pr), -BEX_ESIG);
    pr = t->proof[0];
    pr.seq = 3;
    assert_int_equal(pbft_verify_checkpoint_proof(&t->cfg[1], &pr), -BEX_EINVAL);
    pr = t->proof[0];
    pr.votes[2].replica = pr.votes[0].replica;
    assert_int_equal(pbft_verify_checkpoint_proof(&t->cfg[1], &pr), -BEX_EINVAL);
    tc_free(t);
}

/* ---------------------------------------------------------------- view change */

static void pbft_view_change_on_timeout_backs_off_and_resets(void **state)
{
    struct tc *t = tc_new(7, 2, 4, 100, 100000);
    const uint32_t alive[] = {0, 3, 4, 5, 6};

    (void)state;
    /* Primaries of views 1 and 2 are silent; five of seven form a quorum. */
    t->down[1] = true;
    t->down[2] = true;
    for (uint32_t i = 0; i < 7; i++)
        pbft_set_pending(t->p[i], true);
    tick_all(t, 0); /* the request timer starts: 100 ms */
    tick_all(t, 99);
    pump(t);
    assert_int_equal(pbft_view(t->p[3]), 0);
    tick_all(t, 100);
    pump(t);
    for (size_t k = 0; k < BEX_ARRAY_LEN(alive); k++) {
        assert_int_equal(pbft_view(t->p[alive[k]]), 1);
        assert_false(pbft_view_active(t->p[alive[k]]));
    }
    /* Second timeout doubles: 200 ms after the quorum of VIEW-CHANGEs. */
    tick_all(t, 299);
    pump(t);
    assert_int_equal(pbft_view(t->p[3]), 1);
    tick_all(t, 300);
    pump(t);
    assert_int_equal(pbft_view(t->p[3]), 2);
    /* Third: 400 ms. */
    tick_all(t, 699);
    pump(t);
    assert_int_equal(pbft_view(t->p[4]), 2);
    tick_all(t, 700);
    pump(t);
    for (size_t k = 0; k < BEX_ARRAY_LEN(alive); k++) {
        assert_int_equal(pbft_view(t->p[alive[k]]), 3);
        assert_true(pbft_view_active(t->p[alive[k]])); /* replica 3 sent NEW-VIEW */
    }
    /* Still backed off in view 3 until something commits: 800 ms. */
    tick_all(t, 710);
    tick_all(t, 1000);
    pump(t);
    assert_int_equal(pbft_view(t->p[0]), 3);
    propose(t, 3, 1);
    pump(t);
    assert_int_equal(t->executed[0], 1);
    tick_all(t, 1000); /* the tick that sees the commit restarts the timer */
    /*
     * The commit ended the back-off (800 ms), and the timeout now follows the
     * wait for that commit, about 300 ms since view 3 began: 4 x 290-300.
     */
    tick_all(t, 1000 + 1159);
    pump(t);
    assert_int_equal(pbft_view(t->p[0]), 3);
    tick_all(t, 1000 + 1200);
    pump(t);
    assert_int_equal(pbft_view(t->p[0]), 4);
    assert_int_equal(pbft_stats(t->p[0])->view_changes, 4);
    tc_free(t);
}

/*
 * A primary that commits, only slowly, is not deposed: the timeout stretches
 * to PBFT_TIMEOUT_WAIT_FACTOR times the recent wait for a commit, decays
 * slowly after quicker commits, and never exceeds the largest back-off.
 */
static void pbft_timeout_follows_slow_commits(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 100000);

    (void)state;
    for (uint32_t i = 0; i < 4; i++)
        pbft_set_pending(t->p[i], true);
    tick_all(t, 0); /* the request timer starts: 100 ms */
    tick_all(t, 90);
    propose(t, 0, 1);
    pump(t);
    assert_int_equal(t->executed[1], 1);
    tick_all(t, 90);
    /* 80 ms after the first commit: the wait decays by 1/32 of 90 - 80, to 90 ms (integer division). */
    tick_all(t, 170);
    propose(t, 0, 2);
    pump(t);
    assert_int_equal(t->executed[1], 2);
    tick_all(t, 170);
    /* The base timeout would have fired at 270; now 170 + 4 x 90 = 530. */
    tick_all(t, 300);
    pump(t);
    tick_all(t, 529);
    pump(t);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(pbft_view(t->p[i]), 0);
        assert_true(pbft_view_active(t->p[i]));
    }
    /* Slower and slower commits: 4 x 359 = 1436 ms, then 4 x 1435, capped at 100 x 2^5 = 3200 ms. */
    propose(t, 0, 3);
    pump(t);
    assert_int_equal(t->executed[1], 3);
    tick_all(t, 529);
    tick_all(t, 529 + 1435);
    pump(t);
    assert_int_equal(pbft_view(t->p[1]), 0);
    propose(t, 0, 4);
    pump(t);
    assert_int_equal(t->executed[1], 4);
    tick_all(t, 1964);
    tick_all(t, 1964 + 3199);
    pump(t);
    assert_int_equal(pbft_view(t->p[1]), 0);
    tick_all(t, 1964 + 3200);
    pump(t);
    assert_int_equal(pbft_view(t->p[1]), 1);
    assert_int_equal(pbft_stats(t->p[1])->view_changes, 1);
    tc_free(t);
}

static void pbft_silent_primary_is_deposed(void **state)
{
    struct tc *t = tc_new(4, 2, 4, 100, 100000);

    (void)state;
    t->down[0] = true;
    for (uint32_t i = 1; i < 4; i++)
        pbft_set_pending(t->p[i], true);
    tick_all(t, 0);
    tick_all(t, 100);
    /* Persisted before sent. */
    assert_non_null(t->vc[1]);
    assert_int_equal(t->vc[1]->new_view, 1);
    pump(t);
    for (uint32_t i = 1; i < 4; i++) {
        assert_int_equal(pbft_view(t->p[i]), 1);
        assert_true(pbft_view_active(t->p[i]));
        assert_int_equal(t->new_views[i], 1);
    }
    assert_non_null(t->nv[1]);
    propose(t, 1, 5);
    pump(t);
    for (uint32_t i = 1; i < 4; i++)
        assert_int_equal(t->executed[i], 1);
    tc_free(t);
}

/* Drops every PREPARE for seq 2 and every COMMIT, so 1 and 3 only prepare. */
static bool drop_scenario(const struct tc *t, uint32_t from, uint32_t to, const struct pbft_msg *m)
{
    (void)t, (void)from, (void)to;
    if (m->type == PBFT_MSG_COMMIT)
        return true;
    return m->type == PBFT_MSG_PREPARE && m->vote.seq == 2;
}

/* Replica 0 prepared 1 and 3 but not 2, then went silent; views change to 1. */
static struct tc *prepared_gap_scenario(void)
{
    struct tc *t = tc_new(4, 4, 8, 100, 100000);

    t->drop = drop_scenario;
    propose(t, 0, 1);
    propose(t, 0, 2);
    propose(t, 0, 3);
    pump(t);
    t->drop = NULL;
    t->down[0] = true;
    for (uint32_t i = 1; i < 4; i++)
        pbft_set_pending(t->p[i], true);
    tick_all(t, 0);
    tick_all(t, 100);
    return t;
}

static void pbft_new_view_fills_gaps_with_null_requests(void **state)
{
    struct tc *t = prepared_gap_scenario();
    uint8_t d1[PBFT_DIGEST_BYTES], d3[PBFT_DIGEST_BYTES];
    const struct pbft_new_view *nv;

    (void)state;
    dg(d1, 1);
    dg(d3, 3);
    for (uint32_t i = 1; i < 4; i++) {
        assert_non_null(t->vc[i]);
        assert_int_equal(t->vc[i]->prepared_count, 2);
    }
    pump(t);
    nv = t->nv[1];
    assert_non_null(nv);
    assert_int_equal(nv->view, 1);
    assert_int_equal(nv->view_change_count, 3);
    assert_int_equal(nv->pre_prepare_count, 3);
    assert_memory_equal(nv->pre_prepares[0].digest, d1, PBFT_DIGEST_BYTES);
    assert_memory_equal(nv->pre_prepares[1].digest, zero, PBFT_DIGEST_BYTES);
    assert_memory_equal(nv->pre_prepares[2].digest, d3, PBFT_DIGEST_BYTES);
    /* The re-issued requests commit in the new view, the null one too. */
    for (uint32_t i = 1; i < 4; i++) {
        assert_int_equal(t->executed[i], 3);
        assert_memory_equal(t->committed_digest[i][1], d1, PBFT_DIGEST_BYTES);
        assert_memory_equal(t->committed_digest[i][2], zero, PBFT_DIGEST_BYTES);
        assert_memory_equal(t->committed_digest[i][3], d3, PBFT_DIGEST_BYTES);
        assert_int_equal(t->cert[i][2].view, 1);
    }
    tc_free(t);
}

/* Captures replica 1's NEW-VIEW on its way out and delivers nothing. */
static struct pbft_new_view *captured;

static bool capture_nv(const struct tc *t, uint32_t from, uint32_t to, const struct pbft_msg *m)
{
    (void)t, (void)to;
    if (m->type == PBFT_MSG_NEW_VIEW && from == 1 && captured == NULL) {
        captured = malloc(sizeof(*captured));
        *captured = *m->new_view;
    }
    return m->type == PBFT_MSG_NEW_VIEW;
}

static struct pbft_new_view *copy_nv(const struct pbft_new_view *nv)
{
    struct pbft_new_view *x = malloc(sizeof(*x));
    assert_non_null(x);
    *x = *nv;
    return x;
}

static void pbft_new_view_validation_rules(void **state)
{
    struct tc *t = prepared_gap_scenario();
    struct pbft_new_view *nv;
    uint8_t d[PBFT_DIGEST_BYTES];

    (void)state;
    captured = NULL;
    t->drop = capture_nv;
    pump(t);
    t->drop = NULL;
    assert_non_null(captured);
    assert_int_equal(pbft_view(t->p[2]), 1);
    assert_false(pbft_view_active(t->p[2]));

    /* A wrong O set: the null request at seq 2 replaced by a real digest. */
    nv = copy_nv(captured);
    dg(d, 42);
    nv->pre_prepares[1] = mkvote(t, PBFT_MSG_PRE_PREPARE, 1, 2, d, 1);
    sign_nv(t, nv);
    assert_int_equal(step_nv(t, 2, nv), -BEX_EINVAL);
    free(nv);

    /* A missing null request: seq 2 left out, seq 3 moved up. */
    nv = copy_nv(captured);
    nv->pre_prepares[1] = nv->pre_prepares[2];
    nv->pre_prepare_count = 2;
    sign_nv(t, nv);
    assert_int_equal(step_nv(t, 2, nv), -BEX_EINVAL);
    nv->pre_prepares[1] = mkvote(t, PBFT_MSG_PRE_PREPARE, 1, 2, zero, 1);
    sign_nv(t, nv);
    assert_int_equal(step_nv(t, 2, nv), -BEX_EINVAL); /* seq 3 missing now */
    free(nv);

    /* A VIEW-CHANGE whose prepared certificate has a forged PREPARE. */
    nv = copy_nv(captured);
    nv->view_changes[1].prepared[0].prepares[0].sig[9] ^= 1;
    sign_vc(t, &nv->view_changes[1]);
    sign_nv(t, nv);
    assert_int_equal(step_nv(t, 2, nv), -BEX_ESIG);
    assert_int_equal(step_vc(t, 0, &nv->view_changes[1]), -BEX_ESIG);
    assert_int_equal(pbft_stats(t->p[0])->dropped_bad_view_change, 1);
    free(nv);

    /* Fewer than 2f+1 VIEW-CHANGEs. */
    nv = copy_nv(captured);
    nv->view_change_count = 2;
    sign_nv(t, nv);
    assert_int_equal(step_nv(t, 2, nv), -BEX_ELIMIT);
    free(nv);

    /* Not signed by the new primary. */
    nv = copy_nv(captured);
    nv->sig[0] ^= 1;
    assert_int_equal(step_nv(t, 2, nv), -BEX_ESIG);
    nv->replica = 3;
    sign_nv(t, nv);
    assert_int_equal(step_nv(t, 2, nv), -BEX_EPERM);
    free(nv);

    /* Garbage where a PRE-PREPARE should be is refused, not trusted. */
    nv = copy_nv(captured);
    nv->pre_prepares[0].type = 0x1234;
    assert_int_equal(step_nv(t, 2, nv), -BEX_EINVAL);
    free(nv);
    nv = copy_nv(captured);
    nv->view_changes[0].prepared_count = PBFT_WINDOW_MAX + 7;
    assert_int_equal(step_nv(t, 2, nv), -BEX_ELIMIT);
    free(nv);

    assert_int_equal(pbft_stats(t->p[2])->dropped_bad_new_view, 8);
    assert_int_equal(pbft_stats(t->p[2])->dropped_wrong_primary, 1);
    assert_false(pbft_view_active(t->p[2]));

    /* The real one installs the view and prepares every re-issued request. */
    assert_int_equal(step_nv(t, 2, captured), 0);
    assert_true(pbft_view_active(t->p[2]));
    assert_int_equal(count(&t->out, PBFT_ACT_NEW_VIEW, 0), 1);
    assert_int_equal(count(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE), 3);
    assert_int_equal(count(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_PREPARE), 3);
    for (int k = 0; k < 3; k++) {
        const struct pbft_vote *v = &t->out.items[find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE, k)].msg.vote;
        assert_int_equal(v->view, 1);
        assert_int_equal(v->seq, (uint64_t)k + 1);
        assert_memory_equal(v->digest, captured->pre_prepares[k].digest, PBFT_DIGEST_BYTES);
    }
    free(captured);
    captured = NULL;
    tc_free(t);
}

static void pbft_new_view_takes_the_highest_view_certificate(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 100000);
    uint8_t da[PBFT_DIGEST_BYTES], db[PBFT_DIGEST_BYTES];
    uint8_t o[1][PBFT_DIGEST_BYTES];
    struct pbft_view_change *vcs[3];
    struct pbft_prepared ca, cb;
    struct pbft_new_view *nv;

    (void)state;
    dg(da, 0xa);
    dg(db, 0xb);
    ca = mkcert(t, 1, 1, da);
    cb = mkcert(t, 2, 1, db);
    vcs[0] = mkvc(t, 0, 3, &ca, 1);
    vcs[1] = mkvc(t, 1, 3, &cb, 1);
    vcs[2] = mkvc(t, 2, 3, NULL, 0);
    /* The older certificate's digest: refused. */
    memcpy(o[0], da, PBFT_DIGEST_BYTES);
    nv = mknv(t, 3, vcs, 3, 0, o, 1);
    assert_int_equal(step_nv(t, 2, nv), -BEX_EINVAL);
    free(nv);
    memcpy(o[0], db, PBFT_DIGEST_BYTES);
    nv = mknv(t, 3, vcs, 3, 0, o, 1);
    assert_int_equal(step_nv(t, 2, nv), 0);
    assert_int_equal(pbft_view(t->p[2]), 3);
    assert_true(find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE, 0) >= 0);
    assert_memory_equal(t->out.items[find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE, 0)]
                            .msg.vote.digest,
                        db, PBFT_DIGEST_BYTES);
    free(nv);
    for (int i = 0; i < 3; i++)
        free(vcs[i]);
    tc_free(t);
}

static void pbft_view_change_joins_f_plus_1_higher(void **state)
{
    struct tc *t = tc_new(7, 4, 8, 100, 100000);
    struct pbft_view_change *a = mkvc(t, 1, 9, NULL, 0);
    struct pbft_view_change *b = mkvc(t, 3, 5, NULL, 0);
    struct pbft_view_change *c = mkvc(t, 4, 6, NULL, 0);
    int k;

    (void)state;
    /* f = 2: two VIEW-CHANGEs could both be Byzantine. */
    assert_int_equal(step_vc(t, 2, a), 0);
    assert_int_equal(step_vc(t, 2, b), 0);
    assert_int_equal(pbft_view(t->p[2]), 0);
    assert_true(pbft_view_active(t->p[2]));
    /* Three: at least one honest replica is at view 5 or later. */
    assert_int_equal(step_vc(t, 2, c), 0);
    assert_int_equal(pbft_view(t->p[2]), 5);
    assert_false(pbft_view_active(t->p[2]));
    k = find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_VIEW_CHANGE, 0);
    assert_true(k >= 0);
    assert_int_equal(t->out.items[k].msg.view_change->new_view, 5);
    assert_true(find(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_VIEW_CHANGE, 0) < k);
    free(a);
    free(b);
    free(c);
    tc_free(t);
}

/*
 * A replica paused for seconds (SIGSTOP) reads, before its next tick, the
 * VIEW-CHANGEs its peers sent meanwhile and joins their view change. The
 * timer that a quorum of them starts must run from the end of the pause:
 * from the stale time of the last tick it would already have expired, and
 * the replica would leave at its next tick the view the others install.
 */
static void pbft_pause_restarts_timers(void **state)
{
    struct tc *t = tc_new(7, 2, 4, 100, 100000);
    struct pbft_view_change *vc[5];
    const uint32_t from[5] = {0, 1, 3, 4, 5};

    (void)state;
    for (size_t k = 0; k < 5; k++)
        vc[k] = mkvc(t, from[k], 1, NULL, 0);
    /* Without pbft_pause(): the timer starts at 0 and expires at the first tick. */
    assert_int_equal(pbft_tick(t->p[2], 0, &t->out), 0);
    for (size_t k = 0; k < 5; k++)
        assert_int_equal(step_vc(t, 2, vc[k]), 0);
    assert_int_equal(pbft_view(t->p[2]), 1);
    assert_int_equal(pbft_tick(t->p[2], 5000, &t->out), 0);
    assert_int_equal(pbft_view(t->p[2]), 2);

    /* With it: the timer runs from 5000, and the replica waits for the NEW-VIEW. */
    assert_int_equal(pbft_tick(t->p[6], 0, &t->out), 0);
    assert_int_equal(pbft_pause(t->p[6], 5000), 0);
    for (size_t k = 0; k < 5; k++)
        assert_int_equal(step_vc(t, 6, vc[k]), 0);
    assert_int_equal(pbft_view(t->p[6]), 1);
    assert_int_equal(pbft_tick(t->p[6], 5001, &t->out), 0);
    assert_int_equal(pbft_tick(t->p[6], 5099, &t->out), 0);
    assert_int_equal(pbft_view(t->p[6]), 1);
    /* The timer still works: with no NEW-VIEW it expires in turn (back-off doubled it to 200 ms). */
    assert_int_equal(pbft_tick(t->p[6], 5200, &t->out), 0);
    assert_int_equal(pbft_view(t->p[6]), 2);

    /* A running request timer restarts too; the clock never goes back. */
    pbft_set_pending(t->p[3], true);
    assert_int_equal(pbft_tick(t->p[3], 0, &t->out), 0);
    assert_int_equal(pbft_pause(t->p[3], 3000), 0);
    assert_int_equal(pbft_tick(t->p[3], 3099, &t->out), 0);
    assert_int_equal(pbft_view(t->p[3]), 0);
    assert_int_equal(pbft_tick(t->p[3], 3100, &t->out), 0);
    assert_int_equal(pbft_view(t->p[3]), 1);
    assert_int_equal(pbft_pause(t->p[3], 2999), -BEX_EINVAL);
    assert_int_equal(pbft_pause(NULL, 1), -BEX_EINVAL);
    for (size_t k = 0; k < 5; k++)
        free(vc[k]);
    tc_free(t);
}

/* ---------------------------------------------------------------- catching up */

static void pbft_state_transfer_when_behind(void **state)
{
    struct tc *t = tc_new(4, 2, 4, 100, 50);
    uint8_t bad[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    int k;

    (void)state;
    t->down[3] = true;
    for (uint32_t x = 1; x <= 10; x++) {
        propose(t, 0, x);
        pump(t);
    }
    assert_int_equal(pbft_stable_seq(t->p[0]), 10);
    assert_int_equal(t->executed[3], 0);
    t->down[3] = false;
    /* Checkpoints far above its window show replica 3 it is behind. */
    for (uint32_t r = 0; r < 2; r++) {
        v = mkvote(t, PBFT_MSG_CHECKPOINT, 0, 10, t->root_at[0][10], r);
        assert_int_equal(step_vote(t, 3, &v), 0);
        assert_int_equal(count(&t->out, PBFT_ACT_FETCH, 0), 0);
    }
    v = mkvote(t, PBFT_MSG_CHECKPOINT, 0, 10, t->root_at[0][10], 2);
    assert_int_equal(step_vote(t, 3, &v), 0);
    k = find(&t->out, PBFT_ACT_FETCH, 0, 0);
    assert_true(k >= 0);
    assert_int_equal(t->out.items[k].seq, 10);
    assert_memory_equal(t->out.items[k].digest, t->root_at[0][10], PBFT_DIGEST_BYTES);
    assert_int_equal(t->out.items[k].vouchers, 0x7);
    assert_true(find(&t->out, PBFT_ACT_STABLE, 0, 0) >= 0);
    assert_int_equal(pbft_stable_seq(t->p[3]), 10);
    /* The node executes the fetched blocks; a root that contradicts the proof is refused. */
    memcpy(bad, t->root_at[0][10], PBFT_DIGEST_BYTES);
    bad[0] ^= 1;
    assert_int_equal(pbft_transferred(t->p[3], 10, bad, &t->out), -BEX_ECORRUPT);
    for (uint64_t s = 1; s <= 10; s++) {
        assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], s, t->committed_digest[0][s],
                                                 &t->cert[0][s]),
                         0);
        memcpy(t->committed_digest[3][s], t->committed_digest[0][s], PBFT_DIGEST_BYTES);
    }
    memcpy(t->root[3], t->root_at[0][10], PBFT_DIGEST_BYTES);
    t->executed[3] = 10;
    assert_int_equal(pbft_transferred(t->p[3], 10, t->root[3], &t->out), 0);
    collect(t, 3);
    assert_int_equal(pbft_executed_seq(t->p[3]), 10);
    /* It takes part again from there. */
    propose(t, 0, 11);
    pump(t);
    assert_true(t->committed[3][11]);
    assert_int_equal(t->executed[3], 11);
    tc_free(t);
}

static void pbft_gap_below_a_commit_is_fetched(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d2[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    int k;

    (void)state;
    dg(d2, 2);
    /* q COMMITs prove seq 2 on their own; seq 1 never reached replica 1. */
    for (uint32_t r = 0; r < 4; r++) {
        if (r == 1)
            continue;
        v = mkvote(t, PBFT_MSG_COMMIT, 0, 2, d2, r);
        assert_int_equal(step_vote(t, 1, &v), 0);
        assert_int_equal(count(&t->out, PBFT_ACT_COMMIT, 0), 0);
    }
    assert_int_equal(pbft_tick(t->p[1], 10, &t->out), 0);
    assert_int_equal(count(&t->out, PBFT_ACT_FETCH, 0), 0);
    assert_int_equal(pbft_tick(t->p[1], 60, &t->out), 0);
    k = find(&t->out, PBFT_ACT_FETCH, 0, 0);
    assert_true(k >= 0);
    assert_int_equal(t->out.items[k].seq, 1);
    assert_int_equal(t->out.items[k].vouchers, 0xd);
    /* After the transfer the held commit follows at once. */
    assert_int_equal(pbft_transferred(t->p[1], 1, t->root[2], &t->out), 0);
    k = find(&t->out, PBFT_ACT_COMMIT, 0, 0);
    assert_true(k >= 0);
    assert_int_equal(t->out.items[k].seq, 2);
    assert_memory_equal(t->out.items[k].digest, d2, PBFT_DIGEST_BYTES);
    tc_free(t);
}

static void pbft_resend_is_answered_once_per_period(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    struct pbft_vote v;
    int k;

    (void)state;
    propose(t, 0, 1);
    pump(t);
    assert_true(t->committed[1][1]);
    /* Replica 2 resends its COMMIT: it is missing ours. */
    v = mkvote(t, PBFT_MSG_COMMIT, 0, 1, t->committed_digest[1][1], 2);
    assert_int_equal(step_vote(t, 1, &v), 0);
    k = find(&t->out, PBFT_ACT_SEND, PBFT_MSG_COMMIT, 0);
    assert_true(k >= 0);
    assert_int_equal(t->out.items[k].to, 2);
    assert_int_equal(t->out.items[k].msg.vote.replica, 1);
    assert_true(find(&t->out, PBFT_ACT_SEND, PBFT_MSG_PREPARE, 0) >= 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    assert_int_equal(count(&t->out, PBFT_ACT_SEND, 0), 0);
    assert_int_equal(pbft_tick(t->p[1], 50, &t->out), 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    assert_true(count(&t->out, PBFT_ACT_SEND, 0) > 0);
    tc_free(t);
}

/* ---------------------------------------------------------------- restart */

static void restart(struct tc *t, uint32_t i)
{
    struct pbft_msg m;

    assert_int_equal(pbft_init(t->p[i], &t->cfg[i]), 0);
    memset(&m, 0, sizeof(m));
    if (t->has_proof[i]) {
        m.type = PBFT_MSG_STABLE;
        m.proof = &t->proof[i];
        assert_int_equal(pbft_restore(t->p[i], &m), 0);
    }
    if (t->vc[i] != NULL) {
        memset(&m, 0, sizeof(m));
        m.type = PBFT_MSG_VIEW_CHANGE;
        m.view_change = t->vc[i];
        assert_int_equal(pbft_restore(t->p[i], &m), 0);
    }
    if (t->nv[i] != NULL) {
        memset(&m, 0, sizeof(m));
        m.type = PBFT_MSG_NEW_VIEW;
        m.new_view = t->nv[i];
        assert_int_equal(pbft_restore(t->p[i], &m), 0);
    }
    for (uint32_t k = 0; k < t->nvotes[i]; k++) {
        if (t->votes[i][k].seq <= pbft_stable_seq(t->p[i]))
            continue;
        m = vmsg(&t->votes[i][k]);
        assert_int_equal(pbft_restore(t->p[i], &m), 0);
    }
    for (uint32_t k = 0; k < t->nprepared[i]; k++) {
        if (t->prepared[i][k].seq <= pbft_stable_seq(t->p[i]))
            continue;
        memset(&m, 0, sizeof(m));
        m.type = PBFT_MSG_PREPARED;
        m.prepared = &t->prepared[i][k];
        assert_int_equal(pbft_restore(t->p[i], &m), 0);
    }
    assert_int_equal(pbft_start(t->p[i], t->now, t->executed[i], t->root[i], &t->out), 0);
    collect(t, i);
}

static void pbft_restart_never_equivocates(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES], e[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    uint64_t seq;

    (void)state;
    dg(d, 1);
    dg(e, 2);
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    collect(t, 1);
    flush(t);
    assert_int_equal(t->nvotes[1], 1);
    restart(t, 1);
    /* An equivocating primary now offers another digest for (0, 1). */
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, e, 0);
    assert_int_equal(step_vote(t, 1, &v), -BEX_EEXIST);
    assert_int_equal(count(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_PREPARE), 0);
    assert_int_equal(count(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_PREPARE), 0);
    /* The original is fine and needs no second signature. */
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 1, &v), 0);
    assert_int_equal(count(&t->out, PBFT_ACT_PERSIST, PBFT_MSG_PREPARE), 0);
    /* A restarted primary continues after the seqs it assigned. */
    propose(t, 0, 5);
    propose(t, 0, 6);
    flush(t);
    restart(t, 0);
    assert_int_equal(pbft_next_seq(t->p[0], &seq), 0);
    assert_int_equal(seq, 3);
    tc_free(t);
}

static void pbft_restart_keeps_its_view(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 100000);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    (void)state;
    dg(d, 1);
    t->down[0] = true;
    pbft_set_pending(t->p[2], true);
    tick_all(t, 0);
    tick_all(t, 100);
    flush(t);
    assert_int_equal(pbft_view(t->p[2]), 1);
    restart(t, 2);
    assert_int_equal(pbft_view(t->p[2]), 1);
    assert_false(pbft_view_active(t->p[2]));
    v = mkvote(t, PBFT_MSG_PRE_PREPARE, 0, 1, d, 0);
    assert_int_equal(step_vote(t, 2, &v), -BEX_ESTATE);
    /* It keeps asking for view 1 with the VIEW-CHANGE it signed before. */
    assert_int_equal(pbft_tick(t->p[2], 100, &t->out), 0);
    assert_true(find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_VIEW_CHANGE, 0) >= 0);
    assert_int_equal(t->out.items[find(&t->out, PBFT_ACT_BROADCAST, PBFT_MSG_VIEW_CHANGE, 0)]
                         .msg.view_change->new_view,
                     1);
    assert_int_equal(count(&t->out, PBFT_ACT_PERSIST, 0), 0);
    tc_free(t);
}

static void pbft_restore_checks_its_input(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    uint8_t d[PBFT_DIGEST_BYTES];
    struct pbft_vote v;
    struct pbft_msg m;
    struct pbft_checkpoint_proof genesis;

    (void)state;
    dg(d, 1);
    assert_int_equal(pbft_init(t->p[1], &t->cfg[1]), 0);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 2); /* not ours */
    m = vmsg(&v);
    assert_int_equal(pbft_restore(t->p[1], &m), -BEX_EINVAL);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 1);
    v.sig[0] ^= 1;
    m = vmsg(&v);
    assert_int_equal(pbft_restore(t->p[1], &m), -BEX_ESIG);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 99, d, 1);
    m = vmsg(&v);
    assert_int_equal(pbft_restore(t->p[1], &m), -BEX_ELIMIT);
    /* The stable proof must come first. */
    memset(&genesis, 0, sizeof(genesis));
    memset(&m, 0, sizeof(m));
    m.type = PBFT_MSG_STABLE;
    m.proof = &genesis;
    assert_int_equal(pbft_restore(t->p[1], &m), -BEX_ESTATE);
    assert_int_equal(pbft_start(t->p[1], 0, 0, zero, &t->out), 0);
    v = mkvote(t, PBFT_MSG_PREPARE, 0, 1, d, 1);
    m = vmsg(&v);
    assert_int_equal(pbft_restore(t->p[1], &m), -BEX_ESTATE);
    assert_int_equal(pbft_start(t->p[1], 0, 0, zero, &t->out), -BEX_ESTATE);
    tc_free(t);
}


static void pbft_quorum_of_five_needs_four(void **state)
{
    struct tc *t = tc_new(5, 2, 4, 100, 100000);

    (void)state;
    /* n = 5, f = 1: q = 4 so that two quorums share f+1 = 2 replicas. */
    assert_int_equal(t->q, 4);
    t->down[3] = true;
    t->down[4] = true;
    propose(t, 0, 1);
    pump(t);
    assert_false(t->committed[0][1]);
    assert_false(t->committed[1][1]);
    t->down[3] = false;
    flush(t);
    propose(t, 0, 2);
    pump(t);
    /* Seq 1 never reached replica 3: it commits seq 2 but holds it. */
    assert_int_equal(pbft_committed_seq(t->p[3]), 0);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(pbft_committed_seq(t->p[i]), 0);
    tc_free(t);
    t = tc_new(5, 2, 4, 100, 100000);
    t->down[4] = true;
    propose(t, 0, 1);
    pump(t);
    for (uint32_t i = 0; i < 4; i++) {
        assert_true(t->committed[i][1]);
        assert_int_equal(t->cert[i][1].count, 4);
    }
    tc_free(t);
}

static void pbft_view_change_flood_is_bounded(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 100000);

    (void)state;
    /* One Byzantine replica asks for ever higher views: f = 1 is not enough. */
    for (uint64_t v = 1; v <= 500; v++) {
        struct pbft_view_change *vc = mkvc(t, 3, v, NULL, 0);
        assert_int_equal(step_vc(t, 1, vc), 0);
        assert_int_equal(count(&t->out, PBFT_ACT_BROADCAST, 0), 0);
        free(vc);
    }
    assert_int_equal(pbft_view(t->p[1]), 0);
    assert_true(pbft_view_active(t->p[1]));
    /* Older ones from the same replica are stale now. */
    {
        struct pbft_view_change *vc = mkvc(t, 3, 7, NULL, 0);
        assert_int_equal(step_vc(t, 1, vc), -BEX_ESTATE);
        free(vc);
    }
    tc_free(t);
}

/* Drops every COMMIT: requests prepare everywhere and commit nowhere. */
static bool drop_commits(const struct tc *t, uint32_t from, uint32_t to, const struct pbft_msg *m)
{
    (void)t, (void)from, (void)to;
    return m->type == PBFT_MSG_COMMIT;
}

static void pbft_full_window_view_change_fits_the_action_bound(void **state)
{
    struct tc *t = tc_new(4, 64, PBFT_WINDOW_MAX, 100, 100000);
    uint32_t most = 0;

    (void)state;
    t->drop = drop_commits;
    for (uint32_t x = 1; x <= PBFT_WINDOW_MAX; x++)
        propose(t, 0, x);
    pump(t);
    t->drop = NULL;
    assert_int_equal(pbft_log_count(t->p[1]), PBFT_WINDOW_MAX);
    t->down[0] = true;
    for (uint32_t i = 1; i < 4; i++)
        pbft_set_pending(t->p[i], true);
    tick_all(t, 0);
    tick_all(t, 100);
    assert_int_equal(t->vc[2]->prepared_count, PBFT_WINDOW_MAX);
    /* Deliver by hand to see the largest action lists. */
    while (t->qhead < t->qlen) {
        struct qmsg x = t->queue[t->qhead++];
        if (!t->down[x.to] && !t->down[x.from]) {
            int rc = pbft_step(t->p[x.to], &x.m, &t->out);
            assert_true(rc <= 0);
            if (t->out.count > most)
                most = t->out.count;
            collect(t, x.to);
        }
        free(x.vc);
        free(x.nv);
    }
    assert_true(most <= PBFT_ACTIONS_MAX);
    assert_true(most >= 2 * PBFT_WINDOW_MAX);
    for (uint32_t i = 1; i < 4; i++) {
        assert_int_equal(pbft_view(t->p[i]), 1);
        assert_int_equal(t->executed[i], PBFT_WINDOW_MAX);
        assert_int_equal(pbft_stable_seq(t->p[i]), PBFT_WINDOW_MAX);
    }
    tc_free(t);
}


static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A few plausible values and plenty of implausible ones. */
static uint64_t rnd_field(uint64_t *x)
{
    switch (rnd(x) % 4) {
    case 0:
        return rnd(x) % 4;
    case 1:
        return rnd(x) % 40;
    case 2:
        return UINT64_MAX - rnd(x) % 3;
    default:
        return rnd(x);
    }
}

static void pbft_garbage_input_is_refused_never_trusted(void **state)
{
    struct tc *t = tc_new(4, 2, 8, 100, 50);
    struct pbft_view_change *vc = calloc(1, sizeof(*vc));
    struct pbft_new_view *nv = calloc(1, sizeof(*nv));
    uint64_t x = 0x2545f4914f6cdd1dull;

    (void)state;
    assert_non_null(vc);
    assert_non_null(nv);
    propose(t, 0, 1);
    pump(t);
    for (int i = 0; i < 20000; i++) {
        struct pbft_msg m;
        int rc;
        memset(&m, 0, sizeof(m));
        m.type = (enum pbft_msg_type)(rnd(&x) % 10);
        m.vote.type = rnd(&x) % 3 == 0 ? (uint32_t)rnd(&x) : (uint32_t)m.type;
        m.vote.view = rnd_field(&x);
        m.vote.seq = rnd_field(&x);
        m.vote.replica = (uint32_t)rnd_field(&x);
        m.vote.digest[0] = (uint8_t)rnd(&x);
        m.vote.sig[0] = (uint8_t)rnd(&x);
        if (m.type == PBFT_MSG_VIEW_CHANGE) {
            vc->new_view = rnd_field(&x);
            vc->replica = (uint32_t)rnd_field(&x);
            vc->stable.seq = rnd_field(&x);
            vc->stable.count = (uint32_t)rnd_field(&x);
            vc->prepared_count = (uint32_t)rnd_field(&x);
            vc->prepared[0].seq = rnd_field(&x);
            vc->prepared[0].view = rnd_field(&x);
            vc->prepared[0].prepare_count = (uint32_t)rnd_field(&x);
            m.view_change = rnd(&x) % 8 ? vc : NULL;
        } else if (m.type == PBFT_MSG_NEW_VIEW) {
            nv->view = rnd_field(&x);
            nv->replica = (uint32_t)rnd_field(&x);
            nv->view_change_count = (uint32_t)rnd_field(&x);
            nv->pre_prepare_count = (uint32_t)rnd_field(&x);
            nv->pre_prepares[0].type = (uint32_t)rnd_field(&x);
            for (uint32_t k = 0; k < 4; k++) {
                nv->view_changes[k] = *vc;
                nv->view_changes[k].replica = rnd(&x) % 4 ? k : (uint32_t)rnd_field(&x);
                if (rnd(&x) % 2)
                    nv->view_changes[k].new_view = nv->view;
                if (rnd(&x) % 2)
                    nv->view_changes[k].prepared_count = (uint32_t)(rnd(&x) % 3);
                if (rnd(&x) % 2)
                    nv->view_changes[k].stable.count = (uint32_t)(rnd(&x) % 4);
            }
            m.new_view = rnd(&x) % 8 ? nv : NULL;
        }
        rc = pbft_step(t->p[1 + (uint32_t)(rnd(&x) % 3)], &m, &t->out);
        assert_true(rc <= 0);
        flush(t);
    }
    /* Nothing of it was believed: the cluster still agrees and moves on. */
    assert_int_equal(pbft_view(t->p[1]), 0);
    propose(t, 0, 2);
    pump(t);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(t->executed[i], 2);
    free(vc);
    free(nv);
    tc_free(t);
}

/* ---------------------------------------------------------------- certificates */

static void pbft_commit_certificate_verifier(void **state)
{
    struct tc *t = tc_new(4, 4, 8, 100, 50);
    struct pbft_commit_cert c;
    uint8_t d[PBFT_DIGEST_BYTES], e[PBFT_DIGEST_BYTES];

    (void)state;
    propose(t, 0, 1);
    pump(t);
    dg(d, 1);
    dg(e, 2);
    c = t->cert[2][1];
    assert_int_equal(c.count, 3);
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), 0);
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, e, &c), -BEX_ESIG);
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 2, d, &c), -BEX_ESIG);
    c.view = 1;
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), -BEX_ESIG);
    c = t->cert[2][1];
    c.count = 2;
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), -BEX_ELIMIT);
    c = t->cert[2][1];
    c.votes[1].sig[7] ^= 1;
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), -BEX_ESIG);
    c = t->cert[2][1];
    c.votes[2] = c.votes[0];
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), -BEX_EINVAL);
    c = t->cert[2][1];
    c.votes[2].replica = 4;
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), -BEX_EINVAL);
    c = t->cert[2][1];
    c.count = PBFT_QUORUM_MAX + 1;
    assert_int_equal(pbft_verify_commit_cert(&t->cfg[3], 1, d, &c), -BEX_ELIMIT);
    tc_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pbft_config_is_validated),
        cmocka_unit_test(pbft_quorums_intersect_in_f_plus_1),
        cmocka_unit_test(pbft_pre_prepare_broadcasts_prepare),
        cmocka_unit_test(pbft_prepared_broadcasts_commit),
        cmocka_unit_test(pbft_commit_quorum_commits_with_certificate),
        cmocka_unit_test(pbft_commits_wait_for_gaps),
        cmocka_unit_test(pbft_cluster_commits_in_order),
        cmocka_unit_test(pbft_bad_signature_is_dropped_and_counted),
        cmocka_unit_test(pbft_non_member_is_dropped),
        cmocka_unit_test(pbft_wrong_primary_is_dropped),
        cmocka_unit_test(pbft_conflicting_pre_prepare_is_dropped),
        cmocka_unit_test(pbft_null_request_only_from_new_view),
        cmocka_unit_test(pbft_view_above_max_is_refused),
        cmocka_unit_test(pbft_only_the_primary_proposes),
        cmocka_unit_test(pbft_watermarks_bound_the_log),
        cmocka_unit_test(pbft_old_view_is_dropped_future_view_buffered),
        cmocka_unit_test(pbft_checkpoint_stabilises_and_frees_the_log),
        cmocka_unit_test(pbft_checkpoint_proof_verifier),
        cmocka_unit_test(pbft_view_change_on_timeout_backs_off_and_resets),
        cmocka_unit_test(pbft_timeout_follows_slow_commits),
        cmocka_unit_test(pbft_silent_primary_is_deposed),
        cmocka_unit_test(pbft_new_view_fills_gaps_with_null_requests),
        cmocka_unit_test(pbft_new_view_validation_rules),
        cmocka_unit_test(pbft_new_view_takes_the_highest_view_certificate),
        cmocka_unit_test(pbft_view_change_joins_f_plus_1_higher),
        cmocka_unit_test(pbft_pause_restarts_timers),
        cmocka_unit_test(pbft_state_transfer_when_behind),
        cmocka_unit_test(pbft_gap_below_a_commit_is_fetched),
        cmocka_unit_test(pbft_resend_is_answered_once_per_period),
        cmocka_unit_test(pbft_restart_never_equivocates),
        cmocka_unit_test(pbft_restart_keeps_its_view),
        cmocka_unit_test(pbft_restore_checks_its_input),
        cmocka_unit_test(pbft_commit_certificate_verifier),
        cmocka_unit_test(pbft_quorum_of_five_needs_four),
        cmocka_unit_test(pbft_view_change_flood_is_bounded),
        cmocka_unit_test(pbft_full_window_view_change_fits_the_action_bound),
        cmocka_unit_test(pbft_garbage_input_is_refused_never_trusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
