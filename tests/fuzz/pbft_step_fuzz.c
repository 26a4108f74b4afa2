/*
 * pbft_step_fuzz.c: one PBFT replica of four (consensus/pbft.h) driven by a
 * program read from the input, with the three other replicas played by the
 * fuzzer.
 *
 * The test crypto is checkable: the signature of replica r over a digest is
 * SHA-256(r || digest) followed by that hash with every byte xored, and
 * verify recomputes it. The fuzzer knows every key, so each message it
 * builds says how to sign it (correctly as the claimed replica, as another
 * replica, or with a corrupt signature) and the handlers behind the
 * signature checks are reached. Fields are read relative to the engine's
 * state (its view, low watermark, committed seq) so most messages land
 * inside the window; a few bytes always allow raw values.
 *
 * Input: three header bytes (the engine's replica index, checkpoint
 * interval K, window L, timeouts, start height, and two modes: built messages
 * travel through node/pbft_wire.h, and the engine's own messages must
 * survive the wire), then operations. Operations before the first other
 * one restore persisted messages (pbft_restore); then the engine starts and
 * the operations are: a vote, a VIEW-CHANGE, a NEW-VIEW (its O set computed
 * here from its VIEW-CHANGEs, or read raw), raw Envelope bytes through
 * wire_decode, a tick, a proposal, an execution, a state transfer, the
 * pending flag, and three macros: a whole normal-case round for one seq
 * (PRE-PREPARE, PREPAREs, COMMITs from the others), CHECKPOINTs from the
 * others, and VIEW-CHANGEs from the others.
 *
 * After every call pbft__check() runs (cfg.checks) and the actions are
 * checked here:
 * - COMMITs come strictly in seq order without gaps after what was started,
 *   executed or transferred, and each certificate verifies;
 * - every own vote, VIEW-CHANGE and NEW-VIEW is validly signed, and every
 *   one sent was persisted (in this call or before) with the same content;
 *   two persisted votes of one type for one (view, seq) never differ in
 *   digest, nor two VIEW-CHANGEs or NEW-VIEWs for one view;
 * - persisted prepared certificates, STABLE proofs, own VIEW-CHANGEs and
 *   NEW-VIEWs are valid certificates, and an own NEW-VIEW carries exactly
 *   the O set computed here from its VIEW-CHANGEs;
 * - own CHECKPOINTs carry the state root the harness reported for the seq;
 * - views and stable checkpoints only grow, FETCH asks for more than was
 *   delivered, and the queries agree with what the actions said;
 * - return codes are the documented ones, and pbft_propose, pbft_executed
 *   and pbft_transferred succeed or fail exactly as their contracts say.
 */
#include "crypto.h"
#include "fuzz_util.h"
#include "pbft.h"
#include "pbft_wire.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 4096

#define N 4
#define Q 3            /* pbft_quorum(4) */
#define PALETTE 8      /* digests the input names by index; 0 is the null request */
#define MARKS_MAX 4096 /* slots of the map of what the engine signed */
#define ROOTS 64       /* state roots remembered, by seq */
#define PREPARED_MAX 32 /* the engine's persisted prepared certificates, by seq */
#define WIRE_BYTES_MAX 2048

_Static_assert(PREPARED_MAX >= 32, "the largest window of this target fits");

enum op {
    OP_RESTORE,
    OP_VOTE,
    OP_VIEW_CHANGE,
    OP_NEW_VIEW,
    OP_WIRE,
    OP_TICK,
    OP_PROPOSE,
    OP_EXECUTE,
    OP_TRANSFER,
    OP_PENDING,
    OP_ROUND,
    OP_CHECKPOINTS,
    OP_VIEW_CHANGES,
    OP_COUNT
};

/* Signature modes of a built message. */
enum sig_mode { SIG_GOOD, SIG_GOOD2, SIG_OTHER, SIG_CORRUPT };

/* One thing the engine signed and persisted: a vote, or a VIEW-CHANGE or NEW-VIEW digest. */
struct mark {
    bool used;
    uint32_t type;
    uint64_t view;
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
};

struct root {
    bool used;
    uint64_t seq;
    uint8_t digest[PBFT_DIGEST_BYTES];
};

struct world {
    struct pbft *p;
    struct pbft_config cfg;
    uint32_t self;
    bool started;
    bool wire_in;  /* built messages travel through wire_encode/wire_decode */
    bool wire_out; /* the engine's messages must survive the wire */
    uint64_t start_executed;
    uint8_t start_root[PBFT_DIGEST_BYTES];
    uint64_t now_ms;
    uint64_t delivered; /* the last COMMIT, start or transfer */
    uint64_t executed;
    uint64_t view_seen;
    uint64_t stable_seen;
    struct pbft_checkpoint_proof stable; /* the last STABLE proof */
    bool has_fetch;
    uint64_t fetch_seq;
    uint8_t fetch_digest[PBFT_DIGEST_BYTES];
    size_t marks_used;
    struct mark marks[MARKS_MAX];
    struct root roots[ROOTS];
    bool prepared_used[PREPARED_MAX];
    struct pbft_prepared prepared[PREPARED_MAX];
};

struct in {
    const uint8_t *p;
    size_t n;
};

static struct world w;
static struct pbft_actions out;
static struct pbft_view_change vc_buf[N];
static struct pbft_new_view nv_buf;
static struct wire_scratch scratch, scratch_out;

/* ---------------------------------------------------------------- input */

static uint8_t in_u8(struct in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t in_u64(struct in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in_u8(in);
    return v;
}

static void in_bytes(struct in *in, uint8_t *outp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        outp[i] = in_u8(in);
}

/* ---------------------------------------------------------------- test crypto */

static void test_sign(uint32_t replica, const uint8_t digest[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES])
{
    uint8_t buf[4 + PBFT_DIGEST_BYTES];

    buf[0] = (uint8_t)(replica >> 24);
    buf[1] = (uint8_t)(replica >> 16);
    buf[2] = (uint8_t)(replica >> 8);
    buf[3] = (uint8_t)replica;
    memcpy(buf + 4, digest, PBFT_DIGEST_BYTES);
    crypto_sha256(sig, buf, sizeof(buf));
    for (size_t i = 0; i < PBFT_SIG_BYTES / 2; i++)
        sig[PBFT_SIG_BYTES / 2 + i] = sig[i] ^ 0xa5;
}

static bool test_sig_ok(uint32_t replica, const uint8_t digest[PBFT_DIGEST_BYTES], const uint8_t sig[PBFT_SIG_BYTES])
{
    uint8_t want[PBFT_SIG_BYTES];

    test_sign(replica, digest, want);
    return memcmp(want, sig, PBFT_SIG_BYTES) == 0;
}

static void engine_sign(void *ctx, const uint8_t digest[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES])
{
    const uint32_t *self = ctx;
    test_sign(*self, digest, sig);
}

static bool engine_verify(void *ctx, uint32_t replica, const uint8_t digest[PBFT_DIGEST_BYTES],
                          const uint8_t sig[PBFT_SIG_BYTES])
{
    (void)ctx;
    /* The engine checks membership before it checks a signature. */
    if (replica >= N)
        fuzz_fail("the engine asked to verify a signature of non-member %u", replica);
    return test_sig_ok(replica, digest, sig);
}

static void engine_hash(void *ctx, const uint8_t *bytes, size_t len, uint8_t outp[PBFT_DIGEST_BYTES])
{
    (void)ctx;
    crypto_sha256(outp, bytes, len);
}

/* Signs digest for the claimed replica as mode says. */
static void sign_mode(uint8_t mode, uint32_t claimed, const uint8_t digest[PBFT_DIGEST_BYTES],
                      uint8_t sig[PBFT_SIG_BYTES])
{
    switch ((enum sig_mode)(mode & 3)) {
    case SIG_GOOD:
    case SIG_GOOD2:
        test_sign(claimed, digest, sig);
        return;
    case SIG_OTHER:
        test_sign((claimed + 1) % N, digest, sig);
        return;
    case SIG_CORRUPT:
        test_sign(claimed, digest, sig);
        sig[mode % PBFT_SIG_BYTES] ^= 0x01;
        return;
    }
}

static bool vote_sig_ok(const struct pbft_vote *v)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    pbft_vote_digest(&w.cfg, v, h);
    return test_sig_ok(v->replica, h, v->sig);
}

static void vote_sign(struct pbft_vote *v, uint8_t mode)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    pbft_vote_digest(&w.cfg, v, h);
    sign_mode(mode, v->replica, h, v->sig);
}

static bool cert_vote_ok(uint32_t type, uint64_t view, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES],
                         const struct pbft_cert_vote *cv)
{
    struct pbft_vote v = {.type = type, .view = view, .seq = seq, .replica = cv->replica};

    memcpy(v.digest, digest, PBFT_DIGEST_BYTES);
    memcpy(v.sig, cv->sig, PBFT_SIG_BYTES);
    return vote_sig_ok(&v);
}

/* ---------------------------------------------------------------- field readers */

static void palette(uint8_t d[PBFT_DIGEST_BYTES], unsigned i)
{
    memset(d, 0, PBFT_DIGEST_BYTES);
    if (i == 0)
        return;
    d[0] = (uint8_t)i;
    d[PBFT_DIGEST_BYTES - 1] = (uint8_t)(0xd0 | i);
}

static void read_digest(struct in *in, uint8_t d[PBFT_DIGEST_BYTES])
{
    uint8_t b = in_u8(in);

    if (b < 248)
        palette(d, b % PALETTE);
    else
        in_bytes(in, d, PBFT_DIGEST_BYTES);
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static uint64_t read_view(struct in *in)
{
    uint64_t cur = pbft_view(w.p);
    uint8_t b = in_u8(in);

    if (b < 128)
        return cur + (b & 3);
    if (b < 192)
        return sat_sub(cur, b & 3);
    if (b < 255)
        return cur + (b & 63);
    return in_u64(in);
}

static uint64_t read_seq(struct in *in)
{
    uint64_t h = pbft_stable_seq(w.p);
    uint8_t b = in_u8(in);

    if (b < 200)
        return h + 1 + b % 40;
    if (b < 240)
        return sat_sub(h, b & 15);
    if (b < 255)
        return w.delivered + 1 + (b & 7);
    return in_u64(in);
}

static uint32_t read_replica(struct in *in)
{
    uint8_t b = in_u8(in);

    if (b < 252)
        return b & 3;
    if (b < 255)
        return N + (b & 3);
    return UINT32_MAX;
}

/* ---------------------------------------------------------------- message builders */

static void make_vote(struct pbft_vote *v, uint32_t type, uint64_t view, uint64_t seq,
                      const uint8_t digest[PBFT_DIGEST_BYTES], uint32_t replica)
{
    memset(v, 0, sizeof(*v));
    v->type = type;
    v->view = view;
    v->seq = seq;
    memcpy(v->digest, digest, PBFT_DIGEST_BYTES);
    v->replica = replica;
    vote_sign(v, SIG_GOOD);
}

static void build_vote(struct in *in, struct pbft_vote *v, uint32_t type)
{
    memset(v, 0, sizeof(*v));
    v->type = type;
    if (type == PBFT_MSG_CHECKPOINT)
        v->view = in_u8(in) < 224 ? 0 : read_view(in);
    else
        v->view = read_view(in);
    v->seq = read_seq(in);
    if (type == PBFT_MSG_CHECKPOINT && in_u8(in) < 192)
        v->seq = (v->seq / w.cfg.checkpoint_interval) * w.cfg.checkpoint_interval;
    read_digest(in, v->digest);
    v->replica = read_replica(in);
    vote_sign(v, in_u8(in));
}

/* q CHECKPOINT signatures of every replica but `skip`, in replica order. */
static void fill_proof(struct pbft_checkpoint_proof *pr, uint32_t skip)
{
    pr->count = 0;
    for (uint32_t r = 0; r < N && pr->count < Q; r++) {
        struct pbft_vote v;
        if (r == skip % N)
            continue;
        make_vote(&v, PBFT_MSG_CHECKPOINT, 0, pr->seq, pr->digest, r);
        pr->votes[pr->count].replica = r;
        memcpy(pr->votes[pr->count].sig, v.sig, PBFT_SIG_BYTES);
        pr->count++;
    }
}

static void build_proof(struct in *in, struct pbft_checkpoint_proof *pr)
{
    uint64_t k = w.cfg.checkpoint_interval;
    uint8_t b = in_u8(in);

    memset(pr, 0, sizeof(*pr));
    switch (b >> 6) {
    case 0: /* the genesis checkpoint */
        return;
    case 1:
        *pr = w.stable;
        return;
    case 2:
        pr->seq = (pbft_stable_seq(w.p) / k + (b & 15)) * k;
        read_digest(in, pr->digest);
        fill_proof(pr, in_u8(in));
        return;
    default:
        pr->seq = read_seq(in);
        read_digest(in, pr->digest);
        /* One more than the engine's limit: the count must be checked before use. */
        pr->count = in_u8(in) % (PBFT_QUORUM_MAX + 2);
        for (uint32_t i = 0; i < pr->count && i < PBFT_QUORUM_MAX; i++) {
            struct pbft_vote v;
            make_vote(&v, PBFT_MSG_CHECKPOINT, 0, pr->seq, pr->digest, read_replica(in));
            vote_sign(&v, in_u8(in));
            pr->votes[i].replica = v.replica;
            memcpy(pr->votes[i].sig, v.sig, PBFT_SIG_BYTES);
        }
        return;
    }
}

/* A prepared certificate for (view, seq): the primary's PRE-PREPARE and q-1 PREPAREs. */
static void build_prepared(struct in *in, struct pbft_prepared *c, uint64_t view, uint64_t seq)
{
    uint32_t primary = (uint32_t)(view % N);
    uint8_t b = in_u8(in);
    struct pbft_vote v;

    memset(c, 0, sizeof(*c));
    c->view = view;
    c->seq = seq;
    read_digest(in, c->digest);
    make_vote(&v, PBFT_MSG_PRE_PREPARE, view, seq, c->digest, primary);
    if (b & 0x40)
        v.sig[b % PBFT_SIG_BYTES] ^= 0x80;
    memcpy(c->pre_prepare_sig, v.sig, PBFT_SIG_BYTES);
    if (b < 128) {
        uint32_t skip = (primary + 1 + (b & 3) % (N - 1)) % N;
        for (uint32_t r = 0; r < N && c->prepare_count < Q - 1; r++) {
            if (r == primary || r == skip)
                continue;
            make_vote(&v, PBFT_MSG_PREPARE, view, seq, c->digest, r);
            c->prepares[c->prepare_count].replica = r;
            memcpy(c->prepares[c->prepare_count].sig, v.sig, PBFT_SIG_BYTES);
            c->prepare_count++;
        }
        return;
    }
    /* One more than the engine's limit, as in build_proof(). */
    c->prepare_count = in_u8(in) % (PBFT_QUORUM_MAX + 1);
    for (uint32_t i = 0; i < c->prepare_count && i < PBFT_QUORUM_MAX - 1; i++) {
        make_vote(&v, PBFT_MSG_PREPARE, view, seq, c->digest, read_replica(in));
        vote_sign(&v, in_u8(in));
        c->prepares[i].replica = v.replica;
        memcpy(c->prepares[i].sig, v.sig, PBFT_SIG_BYTES);
    }
}

static bool proof_in_bounds(const struct pbft_checkpoint_proof *pr)
{
    return pr->count <= PBFT_QUORUM_MAX;
}

static bool vc_in_bounds(const struct pbft_view_change *vc)
{
    if (!proof_in_bounds(&vc->stable) || vc->prepared_count > PBFT_WINDOW_MAX)
        return false;
    for (uint32_t i = 0; i < vc->prepared_count; i++) {
        if (vc->prepared[i].prepare_count > PBFT_QUORUM_MAX - 1)
            return false;
    }
    return true;
}

static bool nv_in_bounds(const struct pbft_new_view *nv)
{
    if (nv->view_change_count > PBFT_QUORUM_MAX || nv->pre_prepare_count > PBFT_WINDOW_MAX)
        return false;
    for (uint32_t i = 0; i < nv->view_change_count; i++) {
        if (!vc_in_bounds(&nv->view_changes[i]))
            return false;
    }
    return true;
}

static void vc_sign(struct pbft_view_change *vc, uint8_t mode)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    /* Out-of-bounds counts cannot be hashed; such a message is refused unsigned. */
    if (!vc_in_bounds(vc))
        return;
    pbft_view_change_digest(&w.cfg, vc, h);
    sign_mode(mode, vc->replica, h, vc->sig);
}

/*
 * A VIEW-CHANGE of replica for new_view. Mode byte below 64: an honest one
 * (the last stable proof seen, and the engine's own prepared certificates
 * above it, which the others hold too); otherwise read field by field.
 */
static void build_view_change(struct in *in, struct pbft_view_change *vc, uint32_t replica, uint64_t new_view)
{
    uint64_t window = w.cfg.window;
    uint8_t b = in_u8(in);

    memset(vc, 0, sizeof(*vc));
    vc->new_view = new_view;
    vc->replica = replica;
    if (b < 64) {
        vc->stable = w.stable;
        for (uint64_t i = 1; i <= window; i++) {
            uint64_t seq = w.stable.seq + i;
            const struct pbft_prepared *c = &w.prepared[seq % PREPARED_MAX];
            if (w.prepared_used[seq % PREPARED_MAX] && c->seq == seq && c->view < new_view)
                vc->prepared[vc->prepared_count++] = *c;
        }
        vc_sign(vc, SIG_GOOD);
        return;
    }
    build_proof(in, &vc->stable);
    uint32_t count = in_u8(in) % (uint32_t)(window + 2);
    uint64_t last = vc->stable.seq;
    for (uint32_t i = 0; i < count && i < PBFT_WINDOW_MAX; i++) {
        uint8_t s = in_u8(in);
        uint64_t view = sat_sub(new_view, 1 + ((s >> 2) & 3));
        last += 1 + (s & 3);
        build_prepared(in, &vc->prepared[i], view, last);
        vc->prepared_count++;
    }
    vc_sign(vc, in_u8(in));
}

/*
 * The O set of a NEW-VIEW, computed from its VIEW-CHANGEs by the rule
 * Castro-Liskov 4.4 gives (and pbft_view.c documents for ties): min-s the
 * highest stable checkpoint, max-s the highest prepared seq, and for every
 * seq between them the digest of the prepared certificate of the highest
 * view, the smaller digest between two of one view, or the null request.
 * Returns false when max-s - min-s exceeds cap.
 */
static bool model_o(const struct pbft_view_change *vcs, uint32_t count, uint64_t cap, uint64_t *min_s,
                    uint64_t *max_s, uint8_t digests[][PBFT_DIGEST_BYTES])
{
    *min_s = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (vcs[i].stable.seq > *min_s)
            *min_s = vcs[i].stable.seq;
    }
    *max_s = *min_s;
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t k = 0; k < vcs[i].prepared_count; k++) {
            if (vcs[i].prepared[k].seq > *max_s)
                *max_s = vcs[i].prepared[k].seq;
        }
    }
    if (*max_s - *min_s > cap)
        return false;
    for (uint64_t at = 0; at < *max_s - *min_s; at++) {
        uint64_t seq = *min_s + 1 + at;
        const struct pbft_prepared *best = NULL;
        for (uint32_t i = 0; i < count; i++) {
            for (uint32_t k = 0; k < vcs[i].prepared_count; k++) {
                const struct pbft_prepared *c = &vcs[i].prepared[k];
                if (c->seq != seq)
                    continue;
                if (best == NULL || c->view > best->view ||
                    (c->view == best->view && memcmp(c->digest, best->digest, PBFT_DIGEST_BYTES) < 0))
                    best = c;
            }
        }
        if (best != NULL)
            memcpy(digests[at], best->digest, PBFT_DIGEST_BYTES);
        else
            memset(digests[at], 0, PBFT_DIGEST_BYTES);
    }
    return true;
}

static void build_new_view(struct in *in, struct pbft_new_view *nv)
{
    static uint8_t digests[PBFT_WINDOW_MAX][PBFT_DIGEST_BYTES];
    uint8_t b = in_u8(in);
    uint64_t min_s, max_s;

    memset(nv->sig, 0, sizeof(nv->sig));
    nv->view = read_view(in);
    nv->replica = b & 0x80 ? read_replica(in) : (uint32_t)(nv->view % N);
    nv->view_change_count = b & 0x40 ? in_u8(in) % (PBFT_QUORUM_MAX + 2) : Q;
    uint32_t skip = in_u8(in) % N;
    for (uint32_t i = 0; i < nv->view_change_count && i < PBFT_QUORUM_MAX; i++) {
        uint32_t r = b & 0x40 ? read_replica(in) : (skip + 1 + i) % N;
        uint64_t view = b & 0x10 ? read_view(in) : nv->view;
        build_view_change(in, &nv->view_changes[i], r, view);
    }
    nv->pre_prepare_count = 0;
    if (!(b & 0x20) && nv->view_change_count <= PBFT_QUORUM_MAX &&
        model_o(nv->view_changes, nv->view_change_count, PBFT_WINDOW_MAX, &min_s, &max_s, digests)) {
        for (uint64_t at = 0; at < max_s - min_s; at++)
            make_vote(&nv->pre_prepares[nv->pre_prepare_count++], PBFT_MSG_PRE_PREPARE, nv->view, min_s + 1 + at,
                      digests[at], nv->replica);
    } else {
        uint32_t count = in_u8(in) % (w.cfg.window + 3);
        for (uint32_t i = 0; i < count; i++)
            build_vote(in, &nv->pre_prepares[nv->pre_prepare_count++], PBFT_MSG_PRE_PREPARE);
    }
    if (nv_in_bounds(nv)) {
        uint8_t h[PBFT_DIGEST_BYTES];
        pbft_new_view_digest(&w.cfg, nv, h);
        sign_mode(in_u8(in), nv->replica, h, nv->sig);
    }
}

/* ---------------------------------------------------------------- comparisons */

static bool same_vote(const struct pbft_vote *a, const struct pbft_vote *b)
{
    return a->type == b->type && a->view == b->view && a->seq == b->seq && a->replica == b->replica &&
           memcmp(a->digest, b->digest, PBFT_DIGEST_BYTES) == 0 && memcmp(a->sig, b->sig, PBFT_SIG_BYTES) == 0;
}

static bool same_cert_votes(const struct pbft_cert_vote *a, const struct pbft_cert_vote *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (a[i].replica != b[i].replica || memcmp(a[i].sig, b[i].sig, PBFT_SIG_BYTES) != 0)
            return false;
    }
    return true;
}

static bool same_proof(const struct pbft_checkpoint_proof *a, const struct pbft_checkpoint_proof *b)
{
    return a->seq == b->seq && a->count == b->count && memcmp(a->digest, b->digest, PBFT_DIGEST_BYTES) == 0 &&
           same_cert_votes(a->votes, b->votes, a->count);
}

static bool same_prepared(const struct pbft_prepared *a, const struct pbft_prepared *b)
{
    return a->view == b->view && a->seq == b->seq && a->prepare_count == b->prepare_count &&
           memcmp(a->digest, b->digest, PBFT_DIGEST_BYTES) == 0 &&
           memcmp(a->pre_prepare_sig, b->pre_prepare_sig, PBFT_SIG_BYTES) == 0 &&
           same_cert_votes(a->prepares, b->prepares, a->prepare_count);
}

static bool same_vc(const struct pbft_view_change *a, const struct pbft_view_change *b)
{
    if (a->new_view != b->new_view || a->replica != b->replica || a->prepared_count != b->prepared_count ||
        !same_proof(&a->stable, &b->stable) || memcmp(a->sig, b->sig, PBFT_SIG_BYTES) != 0)
        return false;
    for (uint32_t i = 0; i < a->prepared_count; i++) {
        if (!same_prepared(&a->prepared[i], &b->prepared[i]))
            return false;
    }
    return true;
}

static bool same_nv(const struct pbft_new_view *a, const struct pbft_new_view *b)
{
    if (a->view != b->view || a->replica != b->replica || a->view_change_count != b->view_change_count ||
        a->pre_prepare_count != b->pre_prepare_count || memcmp(a->sig, b->sig, PBFT_SIG_BYTES) != 0)
        return false;
    for (uint32_t i = 0; i < a->view_change_count; i++) {
        if (!same_vc(&a->view_changes[i], &b->view_changes[i]))
            return false;
    }
    for (uint32_t i = 0; i < a->pre_prepare_count; i++) {
        if (!same_vote(&a->pre_prepares[i], &b->pre_prepares[i]))
            return false;
    }
    return true;
}

static bool same_msg(const struct pbft_msg *a, const struct pbft_msg *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
    case PBFT_MSG_CHECKPOINT:
        return same_vote(&a->vote, &b->vote);
    case PBFT_MSG_VIEW_CHANGE:
        return same_vc(a->view_change, b->view_change);
    case PBFT_MSG_NEW_VIEW:
        return same_nv(a->new_view, b->new_view);
    case PBFT_MSG_PREPARED:
        return same_prepared(a->prepared, b->prepared);
    case PBFT_MSG_STABLE:
        return same_proof(a->proof, b->proof);
    }
    return false;
}

/*
 * True when m can travel through the wire: its counts fit and every view it
 * names is at most PBFT_VIEW_MAX (pbft_views_ok()), which also keeps clear of the two views
 * pbft_wire.c reserves as tags of the persisted-only messages.
 */
static bool msg_in_bounds(const struct pbft_msg *m)
{
    switch (m->type) {
    case PBFT_MSG_VIEW_CHANGE:
        return m->view_change != NULL && vc_in_bounds(m->view_change) && pbft_views_ok(m);
    case PBFT_MSG_NEW_VIEW:
        return m->new_view != NULL && nv_in_bounds(m->new_view) && pbft_views_ok(m);
    case PBFT_MSG_PREPARED:
        return m->prepared != NULL && m->prepared->prepare_count <= PBFT_QUORUM_MAX - 1 && pbft_views_ok(m);
    case PBFT_MSG_STABLE:
        return m->proof != NULL && proof_in_bounds(m->proof);
    default:
        return m->vote.type == (uint32_t)m->type && m->type >= PBFT_MSG_PRE_PREPARE &&
               m->type <= PBFT_MSG_CHECKPOINT && pbft_views_ok(m);
    }
}

/*
 * Encodes m with wire_encode() and decodes it into s: the decoded message
 * must equal m field by field. Persisted-only types decode only as persisted.
 */
static void wire_roundtrip(const struct pbft_msg *m, struct pbft_msg *decoded, struct wire_scratch *s)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = wire_encode(&bytes, &len, m);

    if (rc != 0)
        fuzz_fail("wire_encode of a message of type %d: %s", m->type, bex_errname(rc));
    if ((rc = wire_decode(decoded, s, bytes, len)) != 0)
        fuzz_fail("wire_decode of wire_encode output (type %d, %zu bytes): %s", m->type, len, bex_errname(rc));
    free(bytes);
    if (!same_msg(m, decoded))
        fuzz_fail("a message of type %d changed on its way through the wire", m->type);
}

/* ---------------------------------------------------------------- what the engine signed */

static struct mark *mark_slot(uint32_t type, uint64_t view, uint64_t seq)
{
    uint64_t h = (view * 0x9e3779b97f4a7c15ull) ^ (seq * 0xc2b2ae3d27d4eb4full) ^ type;
    size_t at = (size_t)(h % MARKS_MAX);

    for (size_t i = 0; i < MARKS_MAX; i++) {
        struct mark *m = &w.marks[(at + i) % MARKS_MAX];
        if (!m->used || (m->type == type && m->view == view && m->seq == seq))
            return m;
    }
    return NULL;
}

/* The digest persisted for (type, view, seq), or NULL. */
static const uint8_t *mark_get(uint32_t type, uint64_t view, uint64_t seq)
{
    const struct mark *m = mark_slot(type, view, seq);
    return m != NULL && m->used ? m->digest : NULL;
}

/* True when persisting digest for (type, view, seq) contradicts what was persisted. */
static bool mark_conflicts(uint32_t type, uint64_t view, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES])
{
    const uint8_t *had = mark_get(type, view, seq);
    return had != NULL && memcmp(had, digest, PBFT_DIGEST_BYTES) != 0;
}

static void mark_put(uint32_t type, uint64_t view, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES])
{
    struct mark *m = mark_slot(type, view, seq);

    /* The map is sized far above what 4 KiB of input can persist. */
    FUZZ_CHECK(m != NULL && w.marks_used < MARKS_MAX / 2);
    if (m->used) {
        if (memcmp(m->digest, digest, PBFT_DIGEST_BYTES) != 0)
            fuzz_fail("equivocation: the engine persisted two different messages of type %u for view %llu seq %llu",
                      type, (unsigned long long)view, (unsigned long long)seq);
        return;
    }
    m->used = true;
    m->type = type;
    m->view = view;
    m->seq = seq;
    memcpy(m->digest, digest, PBFT_DIGEST_BYTES);
    w.marks_used++;
}

static void root_put(uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES])
{
    struct root *r = &w.roots[seq % ROOTS];

    r->used = true;
    r->seq = seq;
    memcpy(r->digest, digest, PBFT_DIGEST_BYTES);
}

static const uint8_t *root_get(uint64_t seq)
{
    const struct root *r = &w.roots[seq % ROOTS];
    return r->used && r->seq == seq ? r->digest : NULL;
}

/* ---------------------------------------------------------------- certificate checks */

static bool prepared_valid(const struct pbft_prepared *c)
{
    uint32_t primary = (uint32_t)(c->view % N);
    uint32_t seen = 0;
    struct pbft_vote pp = {.type = PBFT_MSG_PRE_PREPARE, .view = c->view, .seq = c->seq, .replica = primary};

    if (c->seq == 0 || c->prepare_count < Q - 1 || c->prepare_count > PBFT_QUORUM_MAX - 1)
        return false;
    memcpy(pp.digest, c->digest, PBFT_DIGEST_BYTES);
    memcpy(pp.sig, c->pre_prepare_sig, PBFT_SIG_BYTES);
    if (!vote_sig_ok(&pp))
        return false;
    for (uint32_t i = 0; i < c->prepare_count; i++) {
        uint32_t r = c->prepares[i].replica;
        if (r >= N || r == primary || (seen & (1u << r)))
            return false;
        seen |= 1u << r;
        if (!cert_vote_ok(PBFT_MSG_PREPARE, c->view, c->seq, c->digest, &c->prepares[i]))
            return false;
    }
    return true;
}

/* An own VIEW-CHANGE as any replica must find it. */
static void check_own_view_change(const struct pbft_view_change *vc)
{
    uint8_t h[PBFT_DIGEST_BYTES];
    uint64_t last;

    FUZZ_CHECK(vc->replica == w.self);
    FUZZ_CHECK(vc->new_view > 0);
    FUZZ_CHECK(vc_in_bounds(vc));
    FUZZ_CHECK(vc->prepared_count <= w.cfg.window);
    pbft_view_change_digest(&w.cfg, vc, h);
    if (!test_sig_ok(w.self, h, vc->sig))
        fuzz_fail("own VIEW-CHANGE for view %llu is not validly signed", (unsigned long long)vc->new_view);
    if (pbft_verify_checkpoint_proof(&w.cfg, &vc->stable) != 0)
        fuzz_fail("own VIEW-CHANGE carries an invalid checkpoint proof for seq %llu",
                  (unsigned long long)vc->stable.seq);
    last = vc->stable.seq;
    for (uint32_t i = 0; i < vc->prepared_count; i++) {
        const struct pbft_prepared *c = &vc->prepared[i];
        FUZZ_CHECK(c->seq > last);
        FUZZ_CHECK(c->seq <= vc->stable.seq + w.cfg.window);
        FUZZ_CHECK(c->view < vc->new_view);
        if (!prepared_valid(c))
            fuzz_fail("own VIEW-CHANGE carries an invalid prepared certificate for seq %llu",
                      (unsigned long long)c->seq);
        last = c->seq;
    }
}

static void check_own_new_view(const struct pbft_new_view *nv)
{
    static uint8_t digests[PBFT_WINDOW_MAX][PBFT_DIGEST_BYTES];
    uint8_t h[PBFT_DIGEST_BYTES];
    uint64_t min_s, max_s;
    uint32_t seen = 0;

    FUZZ_CHECK(nv->replica == w.self);
    FUZZ_CHECK(nv->view % N == w.self);
    FUZZ_CHECK(nv_in_bounds(nv));
    FUZZ_CHECK(nv->view_change_count >= Q);
    pbft_new_view_digest(&w.cfg, nv, h);
    if (!test_sig_ok(w.self, h, nv->sig))
        fuzz_fail("own NEW-VIEW for view %llu is not validly signed", (unsigned long long)nv->view);
    for (uint32_t i = 0; i < nv->view_change_count; i++) {
        const struct pbft_view_change *vc = &nv->view_changes[i];
        FUZZ_CHECK(vc->new_view == nv->view);
        FUZZ_CHECK(vc->replica < N && !(seen & (1u << vc->replica)));
        seen |= 1u << vc->replica;
        pbft_view_change_digest(&w.cfg, vc, h);
        if (!test_sig_ok(vc->replica, h, vc->sig))
            fuzz_fail("own NEW-VIEW carries a VIEW-CHANGE of %u that is not validly signed", vc->replica);
    }
    if (!model_o(nv->view_changes, nv->view_change_count, w.cfg.window, &min_s, &max_s, digests))
        fuzz_fail("own NEW-VIEW spans more than the window");
    if (nv->pre_prepare_count != max_s - min_s)
        fuzz_fail("own NEW-VIEW carries %u PRE-PREPAREs, its O set has %llu", nv->pre_prepare_count,
                  (unsigned long long)(max_s - min_s));
    for (uint32_t i = 0; i < nv->pre_prepare_count; i++) {
        const struct pbft_vote *pp = &nv->pre_prepares[i];
        FUZZ_CHECK(pp->type == PBFT_MSG_PRE_PREPARE && pp->view == nv->view && pp->replica == w.self);
        FUZZ_CHECK(pp->seq == min_s + 1 + i);
        if (memcmp(pp->digest, digests[i], PBFT_DIGEST_BYTES) != 0)
            fuzz_fail("own NEW-VIEW re-proposes another digest at seq %llu than its O set",
                      (unsigned long long)pp->seq);
        FUZZ_CHECK(vote_sig_ok(pp));
    }
}

static void check_own_vote(const struct pbft_vote *v)
{
    FUZZ_CHECK(v->replica == w.self);
    FUZZ_CHECK(v->type >= PBFT_MSG_PRE_PREPARE && v->type <= PBFT_MSG_CHECKPOINT);
    if (!vote_sig_ok(v))
        fuzz_fail("own vote of type %u for seq %llu is not validly signed", v->type, (unsigned long long)v->seq);
    if (v->type == PBFT_MSG_PRE_PREPARE)
        FUZZ_CHECK(v->view % N == w.self);
    if (v->type == PBFT_MSG_PREPARE)
        FUZZ_CHECK(v->view % N != w.self);
}

static void vc_digest(const struct pbft_view_change *vc, uint8_t h[PBFT_DIGEST_BYTES])
{
    pbft_view_change_digest(&w.cfg, vc, h);
}

static void nv_digest(const struct pbft_new_view *nv, uint8_t h[PBFT_DIGEST_BYTES])
{
    pbft_new_view_digest(&w.cfg, nv, h);
}

/* Remembers a persisted prepared certificate, so honest VIEW-CHANGEs of the others can carry it. */
static void prepared_put(const struct pbft_prepared *c)
{
    size_t at = c->seq % PREPARED_MAX;

    if (w.prepared_used[at] && w.prepared[at].seq == c->seq && w.prepared[at].view > c->view)
        return;
    w.prepared[at] = *c;
    w.prepared_used[at] = true;
}

/* A PERSIST action, or a message restored as persisted. */
static void record_persist(const struct pbft_msg *m)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    switch (m->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        check_own_vote(&m->vote);
        mark_put(m->vote.type, m->vote.view, m->vote.seq, m->vote.digest);
        return;
    case PBFT_MSG_VIEW_CHANGE:
        check_own_view_change(m->view_change);
        vc_digest(m->view_change, h);
        mark_put(PBFT_MSG_VIEW_CHANGE, m->view_change->new_view, 0, h);
        return;
    case PBFT_MSG_NEW_VIEW:
        check_own_new_view(m->new_view);
        nv_digest(m->new_view, h);
        mark_put(PBFT_MSG_NEW_VIEW, m->new_view->view, 0, h);
        for (uint32_t i = 0; i < m->new_view->pre_prepare_count; i++) {
            const struct pbft_vote *pp = &m->new_view->pre_prepares[i];
            mark_put(PBFT_MSG_PRE_PREPARE, pp->view, pp->seq, pp->digest);
        }
        return;
    case PBFT_MSG_PREPARED: {
        const struct pbft_prepared *c = m->prepared;
        if (!prepared_valid(c))
            fuzz_fail("the engine persisted an invalid prepared certificate for seq %llu",
                      (unsigned long long)c->seq);
        /* Its own PREPARE (or PRE-PREPARE) of that view agrees with what it prepared. */
        if (mark_conflicts(PBFT_MSG_PREPARE, c->view, c->seq, c->digest) ||
            mark_conflicts(PBFT_MSG_PRE_PREPARE, c->view, c->seq, c->digest))
            fuzz_fail("prepared another digest at view %llu seq %llu than it voted for",
                      (unsigned long long)c->view, (unsigned long long)c->seq);
        mark_put(PBFT_MSG_PREPARED, c->view, c->seq, c->digest);
        prepared_put(c);
        return;
    }
    case PBFT_MSG_CHECKPOINT:
    case PBFT_MSG_STABLE:
        break;
    }
    fuzz_fail("PERSIST of a message of type %d", m->type);
}

/* A SEND or BROADCAST action: well formed, and persisted before it leaves. */
static void check_sent(const struct pbft_msg *m)
{
    uint8_t h[PBFT_DIGEST_BYTES];
    const uint8_t *had;

    switch (m->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        FUZZ_CHECK(m->vote.type == (uint32_t)m->type);
        check_own_vote(&m->vote);
        had = mark_get(m->vote.type, m->vote.view, m->vote.seq);
        if (had == NULL || memcmp(had, m->vote.digest, PBFT_DIGEST_BYTES) != 0)
            fuzz_fail("sent a vote of type %u for view %llu seq %llu that was not persisted", m->vote.type,
                      (unsigned long long)m->vote.view, (unsigned long long)m->vote.seq);
        return;
    case PBFT_MSG_CHECKPOINT: {
        const uint8_t *root = root_get(m->vote.seq);
        check_own_vote(&m->vote);
        FUZZ_CHECK(m->vote.view == 0 && m->vote.seq > 0 && m->vote.seq % w.cfg.checkpoint_interval == 0);
        if (root != NULL && memcmp(root, m->vote.digest, PBFT_DIGEST_BYTES) != 0)
            fuzz_fail("own CHECKPOINT for seq %llu carries another root than the one executed",
                      (unsigned long long)m->vote.seq);
        return;
    }
    case PBFT_MSG_VIEW_CHANGE:
        check_own_view_change(m->view_change);
        vc_digest(m->view_change, h);
        had = mark_get(PBFT_MSG_VIEW_CHANGE, m->view_change->new_view, 0);
        if (had == NULL || memcmp(had, h, PBFT_DIGEST_BYTES) != 0)
            fuzz_fail("sent a VIEW-CHANGE for view %llu that was not persisted",
                      (unsigned long long)m->view_change->new_view);
        return;
    case PBFT_MSG_NEW_VIEW:
        check_own_new_view(m->new_view);
        nv_digest(m->new_view, h);
        had = mark_get(PBFT_MSG_NEW_VIEW, m->new_view->view, 0);
        if (had == NULL || memcmp(had, h, PBFT_DIGEST_BYTES) != 0)
            fuzz_fail("sent a NEW-VIEW for view %llu that was not persisted", (unsigned long long)m->new_view->view);
        return;
    case PBFT_MSG_PREPARED:
    case PBFT_MSG_STABLE:
        break;
    }
    fuzz_fail("sent a message of type %d", m->type);
}

static void check_actions(void)
{
    FUZZ_CHECK(out.count <= PBFT_ACTIONS_MAX);
    /* Persists of a call are durable before its sends leave: record them first. */
    for (uint32_t i = 0; i < out.count; i++) {
        if (out.items[i].type == PBFT_ACT_PERSIST)
            record_persist(&out.items[i].msg);
    }
    for (uint32_t i = 0; i < out.count; i++) {
        const struct pbft_action *a = &out.items[i];
        switch (a->type) {
        case PBFT_ACT_SEND:
            FUZZ_CHECK(a->to < N && a->to != w.self);
            /* fall through */
        case PBFT_ACT_BROADCAST:
            check_sent(&a->msg);
            break;
        case PBFT_ACT_PERSIST:
            break;
        case PBFT_ACT_COMMIT:
            if (a->seq != w.delivered + 1)
                fuzz_fail("COMMIT of seq %llu after %llu", (unsigned long long)a->seq,
                          (unsigned long long)w.delivered);
            FUZZ_CHECK(a->cert != NULL && a->cert->count == Q);
            if (pbft_verify_commit_cert(&w.cfg, a->seq, a->digest, a->cert) != 0)
                fuzz_fail("the commit certificate of seq %llu does not verify", (unsigned long long)a->seq);
            w.delivered = a->seq;
            break;
        case PBFT_ACT_FETCH:
            FUZZ_CHECK(a->seq > w.delivered);
            FUZZ_CHECK((a->vouchers >> N) == 0);
            w.has_fetch = true;
            w.fetch_seq = a->seq;
            memcpy(w.fetch_digest, a->digest, PBFT_DIGEST_BYTES);
            break;
        case PBFT_ACT_STABLE:
            FUZZ_CHECK(a->proof != NULL && a->proof->seq == a->seq);
            FUZZ_CHECK(memcmp(a->proof->digest, a->digest, PBFT_DIGEST_BYTES) == 0);
            if (a->seq <= w.stable_seen)
                fuzz_fail("stable checkpoint %llu after %llu", (unsigned long long)a->seq,
                          (unsigned long long)w.stable_seen);
            if (pbft_verify_checkpoint_proof(&w.cfg, a->proof) != 0)
                fuzz_fail("the stable proof of seq %llu does not verify", (unsigned long long)a->seq);
            w.stable_seen = a->seq;
            w.stable = *a->proof;
            break;
        case PBFT_ACT_VIEW_CHANGE:
            if (a->view <= w.view_seen)
                fuzz_fail("view change to %llu in view %llu", (unsigned long long)a->view,
                          (unsigned long long)w.view_seen);
            w.view_seen = a->view;
            break;
        case PBFT_ACT_NEW_VIEW:
            if (a->view < w.view_seen)
                fuzz_fail("installed view %llu after view %llu", (unsigned long long)a->view,
                          (unsigned long long)w.view_seen);
            w.view_seen = a->view;
            break;
        default:
            fuzz_fail("action of unknown type %d", a->type);
        }
        if (w.wire_out && a->type >= PBFT_ACT_SEND && a->type <= PBFT_ACT_PERSIST && msg_in_bounds(&a->msg)) {
            struct pbft_msg decoded;
            wire_roundtrip(&a->msg, &decoded, &scratch_out);
        }
    }
    FUZZ_CHECK(pbft_committed_seq(w.p) == w.delivered);
    FUZZ_CHECK(pbft_executed_seq(w.p) == w.executed);
    FUZZ_CHECK(pbft_stable_seq(w.p) == w.stable_seen);
    FUZZ_CHECK(pbft_view(w.p) >= w.view_seen);
    FUZZ_CHECK(pbft_log_count(w.p) <= w.cfg.window);
    FUZZ_CHECK(pbft_primary(w.p) == pbft_view(w.p) % N);
}

/* ---------------------------------------------------------------- driving */

static void start(void)
{
    int rc;

    w.started = true;
    rc = pbft_start(w.p, 0, w.start_executed, w.start_root, &out);
    if (rc != 0)
        fuzz_fail("pbft_start: %s", bex_errname(rc));
    w.delivered = w.start_executed;
    w.executed = w.start_executed;
    w.view_seen = pbft_view(w.p);
    if (pbft_stable_seq(w.p) != w.stable.seq)
        fuzz_fail("restored low watermark %llu, the restored messages prove %llu",
                  (unsigned long long)pbft_stable_seq(w.p), (unsigned long long)w.stable.seq);
    w.stable_seen = w.stable.seq;
    root_put(w.start_executed, w.start_root);
    check_actions();
}

static void step(const struct pbft_msg *m)
{
    struct pbft_msg decoded;
    int rc;

    if (w.wire_in && msg_in_bounds(m)) {
        wire_roundtrip(m, &decoded, &scratch);
        m = &decoded;
    }
    rc = pbft_step(w.p, m, &out);
    switch (-rc) {
    case 0:
    case BEX_EINVAL:
    case BEX_EPERM:
    case BEX_ESIG:
    case BEX_ESTATE:
    case BEX_ELIMIT:
    case BEX_EEXIST:
    case BEX_EFULL:
        break;
    default:
        fuzz_fail("pbft_step returned %s", bex_errname(rc));
    }
    check_actions();
}

static void step_vote(const struct pbft_vote *v)
{
    struct pbft_msg m;

    memset(&m, 0, sizeof(m));
    m.type = (enum pbft_msg_type)v->type;
    m.vote = *v;
    step(&m);
}

/* True when restoring m would make the harness's record of what was persisted contradict itself. */
static bool restore_conflicts(const struct pbft_msg *m)
{
    uint8_t h[PBFT_DIGEST_BYTES];

    switch (m->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
        if (mark_conflicts(PBFT_MSG_PREPARED, m->vote.view, m->vote.seq, m->vote.digest))
            return true;
        /* fall through */
    case PBFT_MSG_COMMIT:
        return mark_conflicts(m->vote.type, m->vote.view, m->vote.seq, m->vote.digest);
    case PBFT_MSG_PREPARED: {
        const struct pbft_prepared *c = m->prepared;
        return mark_conflicts(PBFT_MSG_PREPARED, c->view, c->seq, c->digest) ||
               mark_conflicts(PBFT_MSG_PREPARE, c->view, c->seq, c->digest) ||
               mark_conflicts(PBFT_MSG_PRE_PREPARE, c->view, c->seq, c->digest);
    }
    case PBFT_MSG_VIEW_CHANGE:
        if (!vc_in_bounds(m->view_change))
            return false;
        vc_digest(m->view_change, h);
        return mark_conflicts(PBFT_MSG_VIEW_CHANGE, m->view_change->new_view, 0, h);
    case PBFT_MSG_NEW_VIEW:
        if (!nv_in_bounds(m->new_view))
            return false;
        nv_digest(m->new_view, h);
        if (mark_conflicts(PBFT_MSG_NEW_VIEW, m->new_view->view, 0, h))
            return true;
        for (uint32_t i = 0; i < m->new_view->pre_prepare_count; i++) {
            const struct pbft_vote *pp = &m->new_view->pre_prepares[i];
            if (mark_conflicts(PBFT_MSG_PRE_PREPARE, pp->view, pp->seq, pp->digest) ||
                mark_conflicts(PBFT_MSG_PREPARED, pp->view, pp->seq, pp->digest))
                return true;
        }
        return false;
    default:
        return false;
    }
}

/* Follows the engine's low watermark through what pbft_restore() accepted. */
static void restore_stable(const struct pbft_checkpoint_proof *proof)
{
    if (proof->seq > w.stable.seq)
        w.stable = *proof;
}

/*
 * Restores m as a message the replica persisted before a restart and
 * returns whether the engine took it. What a real node persisted never
 * contradicts itself, so a message that would is not given to the engine;
 * and a node that prepared a request persisted its own vote for it first
 * (a PREPARE, or the PRE-PREPARE of a primary), so a certificate comes with
 * that vote. The one exception, a certificate restored `alone`, is a backup
 * that withheld its PREPARE (its own commit disagreed): nothing then ties
 * the engine's later votes in that view to the certificate's digest, so the
 * certificate is not recorded as a vote. After pbft_start() restoring is
 * refused.
 */
static bool restore(const struct pbft_msg *m, bool alone)
{
    int rc;

    if (!w.started && !alone && restore_conflicts(m))
        return false;
    if (!w.started && m->type == PBFT_MSG_PREPARED && !alone) {
        const struct pbft_prepared *c = m->prepared;
        struct pbft_msg own;
        memset(&own, 0, sizeof(own));
        own.type = c->view % N == w.self ? PBFT_MSG_PRE_PREPARE : PBFT_MSG_PREPARE;
        make_vote(&own.vote, own.type, c->view, c->seq, c->digest, w.self);
        if (!restore(&own, false))
            return false;
    }
    rc = pbft_restore(w.p, m);
    if (w.started) {
        if (rc != -BEX_ESTATE)
            fuzz_fail("pbft_restore after pbft_start returned %s", bex_errname(rc));
        return false;
    }
    switch (-rc) {
    case 0:
        break;
    case BEX_EINVAL:
    case BEX_ESTATE:
    case BEX_ESIG:
    case BEX_ELIMIT:
        return false;
    default:
        fuzz_fail("pbft_restore returned %s", bex_errname(rc));
    }
    switch (m->type) {
    case PBFT_MSG_PREPARED:
        if (alone) {
            FUZZ_CHECK(prepared_valid(m->prepared));
            prepared_put(m->prepared);
            break;
        }
        /* fall through */
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        record_persist(m);
        break;
    case PBFT_MSG_VIEW_CHANGE:
        record_persist(m);
        restore_stable(&m->view_change->stable);
        break;
    case PBFT_MSG_NEW_VIEW: {
        const struct pbft_new_view *nv = m->new_view;
        uint32_t best = 0;
        record_persist(m);
        /* The engine adopts the first of the highest checkpoints its VIEW-CHANGEs prove. */
        for (uint32_t i = 1; i < nv->view_change_count; i++) {
            if (nv->view_changes[i].stable.seq > nv->view_changes[best].stable.seq)
                best = i;
        }
        restore_stable(&nv->view_changes[best].stable);
        break;
    }
    case PBFT_MSG_STABLE:
        restore_stable(m->proof);
        break;
    case PBFT_MSG_CHECKPOINT:
        fuzz_fail("pbft_restore accepted a CHECKPOINT");
    }
    return true;
}

static void op_restore(struct in *in)
{
    static struct pbft_prepared prepared;
    static struct pbft_checkpoint_proof proof;
    struct pbft_msg m;
    uint8_t kind = in_u8(in);

    memset(&m, 0, sizeof(m));
    switch (kind % 6) {
    case 0:
        m.type = (enum pbft_msg_type)(PBFT_MSG_PRE_PREPARE + (kind >> 3) % 3);
        build_vote(in, &m.vote, m.type);
        if (kind & 0x80) {
            m.vote.replica = w.self;
            vote_sign(&m.vote, in_u8(in));
        }
        break;
    case 1: {
        uint32_t r = kind & 0x80 ? read_replica(in) : w.self;
        m.type = PBFT_MSG_VIEW_CHANGE;
        build_view_change(in, &vc_buf[0], r, read_view(in));
        m.view_change = &vc_buf[0];
        break;
    }
    case 2:
        m.type = PBFT_MSG_NEW_VIEW;
        build_new_view(in, &nv_buf);
        m.new_view = &nv_buf;
        break;
    case 3: {
        uint64_t view = read_view(in);
        m.type = PBFT_MSG_PREPARED;
        build_prepared(in, &prepared, view, read_seq(in));
        m.prepared = &prepared;
        break;
    }
    case 4:
        m.type = PBFT_MSG_STABLE;
        build_proof(in, &proof);
        m.proof = &proof;
        break;
    default:
        m.type = PBFT_MSG_CHECKPOINT;
        build_vote(in, &m.vote, PBFT_MSG_CHECKPOINT);
        break;
    }
    (void)restore(&m, m.type == PBFT_MSG_PREPARED && (kind & 0x80));
}

static void op_vote(struct in *in)
{
    struct pbft_msg m;
    uint8_t t = in_u8(in);

    memset(&m, 0, sizeof(m));
    build_vote(in, &m.vote, PBFT_MSG_PRE_PREPARE + t % 4);
    m.type = (enum pbft_msg_type)m.vote.type;
    /* Rarely, a message whose type disagrees with its vote, or no type at all. */
    if ((t & 0xc0) == 0xc0)
        m.type = (enum pbft_msg_type)((t >> 2) % 10);
    step(&m);
}

static void op_view_change(struct in *in)
{
    struct pbft_msg m;
    uint8_t b = in_u8(in);
    uint32_t r = read_replica(in);

    memset(&m, 0, sizeof(m));
    m.type = PBFT_MSG_VIEW_CHANGE;
    build_view_change(in, &vc_buf[0], r, read_view(in));
    m.view_change = b == 255 ? NULL : &vc_buf[0];
    step(&m);
}

static void op_new_view(struct in *in)
{
    struct pbft_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PBFT_MSG_NEW_VIEW;
    build_new_view(in, &nv_buf);
    m.new_view = &nv_buf;
    step(&m);
}

/* Resigns the outer signature of a decoded message as its claimed sender. */
static void resign(struct pbft_msg *m)
{
    switch (m->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
    case PBFT_MSG_CHECKPOINT:
        vote_sign(&m->vote, SIG_GOOD);
        return;
    case PBFT_MSG_VIEW_CHANGE:
        vc_sign(&scratch.vc, SIG_GOOD);
        return;
    case PBFT_MSG_NEW_VIEW:
        if (nv_in_bounds(&scratch.nv)) {
            uint8_t h[PBFT_DIGEST_BYTES];
            nv_digest(&scratch.nv, h);
            test_sign(scratch.nv.replica, h, scratch.nv.sig);
        }
        return;
    default:
        return;
    }
}

/* Raw Envelope bytes as a peer (or the disk, before the start) would hand them over. */
static void op_wire(struct in *in)
{
    static uint8_t bytes[WIRE_BYTES_MAX];
    struct pbft_msg m;
    uint8_t flags = in_u8(in);
    size_t len = (size_t)in_u8(in) << 8;
    int rc;

    len |= in_u8(in);
    if (len > in->n)
        len = in->n;
    if (len > sizeof(bytes))
        len = sizeof(bytes);
    in_bytes(in, bytes, len);
    rc = wire_decode(&m, &scratch, bytes, len);
    if (rc == -BEX_EDECODE || rc == -BEX_EINVAL)
        return;
    if (rc != 0)
        fuzz_fail("wire_decode returned %s", bex_errname(rc));
    /* The decoder enforces the engine's limits on every count. */
    FUZZ_CHECK(m.type < PBFT_MSG_VIEW_CHANGE || m.type > PBFT_MSG_NEW_VIEW ||
               (m.type == PBFT_MSG_VIEW_CHANGE ? vc_in_bounds(m.view_change) : nv_in_bounds(m.new_view)));
    if (flags & 1)
        resign(&m);
    if (!w.started) {
        (void)restore(&m, false);
        return;
    }
    rc = pbft_step(w.p, &m, &out);
    if ((m.type == PBFT_MSG_PREPARED || m.type == PBFT_MSG_STABLE) && rc != -BEX_EINVAL)
        fuzz_fail("pbft_step took a persisted-only message of type %d: %s", m.type, bex_errname(rc));
    switch (-rc) {
    case 0:
    case BEX_EINVAL:
    case BEX_EPERM:
    case BEX_ESIG:
    case BEX_ESTATE:
    case BEX_ELIMIT:
    case BEX_EEXIST:
    case BEX_EFULL:
        break;
    default:
        fuzz_fail("pbft_step returned %s", bex_errname(rc));
    }
    check_actions();
}

static void op_tick(struct in *in)
{
    uint8_t b = in_u8(in);
    int rc;

    if (b == 255 && w.now_ms > 0) {
        rc = pbft_tick(w.p, w.now_ms - 1, &out);
        if (rc != -BEX_EINVAL)
            fuzz_fail("pbft_tick backwards returned %s", bex_errname(rc));
        FUZZ_CHECK(out.count == 0);
        return;
    }
    w.now_ms += b < 128 ? (uint64_t)b * 5 : (uint64_t)(b - 127) * 200;
    rc = pbft_tick(w.p, w.now_ms, &out);
    if (rc != 0)
        fuzz_fail("pbft_tick returned %s", bex_errname(rc));
    check_actions();
}

static void op_propose(struct in *in)
{
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint64_t seq = 0;
    int want, rc;

    read_digest(in, digest);
    want = pbft_next_seq(w.p, &seq);
    if (want == 0) {
        uint8_t acc = 0;
        for (size_t i = 0; i < PBFT_DIGEST_BYTES; i++)
            acc |= digest[i];
        want = acc == 0 ? -BEX_EINVAL : 0;
    }
    rc = pbft_propose(w.p, digest, &out);
    if (rc != want)
        fuzz_fail("pbft_propose returned %s, its contract says %s", bex_errname(rc), bex_errname(want));
    if (rc == 0) {
        FUZZ_CHECK(out.count >= 2 && out.items[0].type == PBFT_ACT_PERSIST);
        FUZZ_CHECK(out.items[0].msg.type == PBFT_MSG_PRE_PREPARE && out.items[0].msg.vote.seq == seq);
        FUZZ_CHECK(memcmp(out.items[0].msg.vote.digest, digest, PBFT_DIGEST_BYTES) == 0);
    }
    check_actions();
}

static void op_execute(struct in *in)
{
    uint8_t b = in_u8(in);
    uint64_t seq = b < 224 ? w.executed + 1 : w.executed + (b & 7);
    uint8_t root[PBFT_DIGEST_BYTES];
    int want, rc;

    read_digest(in, root);
    want = seq != w.executed + 1 ? -BEX_EINVAL : seq > w.delivered ? -BEX_ESTATE : 0;
    rc = pbft_executed(w.p, seq, root, &out);
    if (rc != want)
        fuzz_fail("pbft_executed(%llu) returned %s, its contract says %s", (unsigned long long)seq, bex_errname(rc),
                  bex_errname(want));
    if (rc == 0) {
        w.executed = seq;
        root_put(seq, root);
    }
    check_actions();
}

static void op_transfer(struct in *in)
{
    uint8_t b = in_u8(in);
    uint8_t root[PBFT_DIGEST_BYTES];
    uint64_t seq;
    int rc;

    if (b < 128 && w.has_fetch && w.fetch_seq > w.delivered)
        seq = w.fetch_seq;
    else if (b < 192)
        seq = w.delivered + 1 + (b & 15);
    else
        seq = sat_sub(w.delivered + (b & 63), 8);
    if ((b & 1) && w.has_fetch && seq == w.fetch_seq)
        memcpy(root, w.fetch_digest, PBFT_DIGEST_BYTES);
    else
        read_digest(in, root);
    rc = pbft_transferred(w.p, seq, root, &out);
    if (w.executed != w.delivered) {
        if (rc != -BEX_ESTATE)
            fuzz_fail("pbft_transferred with commits unexecuted returned %s", bex_errname(rc));
    } else if (seq <= w.delivered) {
        if (rc != -BEX_EINVAL)
            fuzz_fail("pbft_transferred(%llu) not ahead of %llu returned %s", (unsigned long long)seq,
                      (unsigned long long)w.delivered, bex_errname(rc));
    } else if (seq == w.stable_seen && memcmp(root, w.stable.digest, PBFT_DIGEST_BYTES) != 0) {
        if (rc != -BEX_ECORRUPT)
            fuzz_fail("pbft_transferred against the stable proof returned %s", bex_errname(rc));
    } else if (rc != 0 && rc != -BEX_ECORRUPT) {
        fuzz_fail("pbft_transferred(%llu) returned %s", (unsigned long long)seq, bex_errname(rc));
    }
    if (rc == 0) {
        w.delivered = seq;
        w.executed = seq;
        root_put(seq, root);
    }
    if (rc != 0)
        FUZZ_CHECK(out.count == 0);
    check_actions();
}

/* A whole normal-case round for one seq from the other replicas, in the current view. */
static void op_round(struct in *in)
{
    uint8_t flags = in_u8(in);
    uint64_t seq = read_seq(in);
    uint64_t view = pbft_view(w.p);
    uint32_t primary = (uint32_t)(view % N);
    uint32_t silent = flags & 0x40 ? (flags >> 4) & 3 : N;
    uint8_t digest[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    read_digest(in, digest);
    if (!(flags & 1) && primary != w.self && primary != silent) {
        make_vote(&v, PBFT_MSG_PRE_PREPARE, view, seq, digest, primary);
        step_vote(&v);
    }
    for (uint32_t r = 0; r < N && !(flags & 2); r++) {
        if (r == w.self || r == primary || r == silent)
            continue;
        make_vote(&v, PBFT_MSG_PREPARE, view, seq, digest, r);
        step_vote(&v);
    }
    for (uint32_t r = 0; r < N && !(flags & 4); r++) {
        if (r == w.self || r == silent)
            continue;
        make_vote(&v, PBFT_MSG_COMMIT, view, seq, digest, r);
        step_vote(&v);
    }
}

/* CHECKPOINTs from the others for a multiple of K, with the executed root or another. */
static void op_checkpoints(struct in *in)
{
    uint8_t flags = in_u8(in);
    uint64_t k = w.cfg.checkpoint_interval;
    uint64_t seq = (pbft_stable_seq(w.p) / k + 1 + (flags & 7)) * k;
    uint32_t silent = flags & 0x40 ? (flags >> 4) & 3 : N;
    const uint8_t *root = root_get(seq);
    uint8_t digest[PBFT_DIGEST_BYTES];
    struct pbft_vote v;

    if ((flags & 0x80) && root != NULL)
        memcpy(digest, root, PBFT_DIGEST_BYTES);
    else
        read_digest(in, digest);
    for (uint32_t r = 0; r < N; r++) {
        if (r == w.self || r == silent)
            continue;
        make_vote(&v, PBFT_MSG_CHECKPOINT, 0, seq, digest, r);
        step_vote(&v);
    }
}

/* VIEW-CHANGEs from the others for a view ahead of the current one. */
static void op_view_changes(struct in *in)
{
    uint8_t flags = in_u8(in);
    uint64_t view = pbft_view(w.p) + 1 + (flags & 3);
    uint32_t silent = flags & 0x40 ? (flags >> 4) & 3 : N;
    struct pbft_msg m;

    for (uint32_t r = 0; r < N; r++) {
        if (r == w.self || r == silent)
            continue;
        build_view_change(in, &vc_buf[r], r, view);
        memset(&m, 0, sizeof(m));
        m.type = PBFT_MSG_VIEW_CHANGE;
        m.view_change = &vc_buf[r];
        step(&m);
    }
}

static void setup(struct in *in)
{
    static const uint32_t intervals[4] = {1, 2, 4, 8};
    uint8_t b0 = in_u8(in), b1 = in_u8(in), b2 = in_u8(in);
    int rc;

    static struct pbft *engine;

    if (engine == NULL && (engine = malloc(pbft_size())) == NULL)
        fuzz_fail("out of memory for the engine");
    memset(&w, 0, sizeof(w));
    w.p = engine;
    w.self = b0 & 3;
    pbft_config_default(&w.cfg, N, w.self);
    w.cfg.checkpoint_interval = intervals[(b0 >> 2) & 3];
    w.cfg.window = w.cfg.checkpoint_interval * (1 + ((b0 >> 4) & 3));
    w.cfg.view_timeout_ms = 50 * (1 + (uint64_t)(b1 & 15));
    w.cfg.retransmit_ms = 20 * (1 + (uint64_t)(b1 >> 4));
    w.cfg.checks = true;
    w.cfg.crypto.sign = engine_sign;
    w.cfg.crypto.verify = engine_verify;
    w.cfg.crypto.hash = engine_hash;
    w.cfg.crypto.ctx = &w.self;
    w.wire_in = (b0 & 0x40) != 0;
    w.wire_out = (b0 & 0x80) != 0;
    w.start_executed = b2 & 0x80 ? b2 & 0x3f : 0;
    palette(w.start_root, (b2 >> 6) & 1 ? 1 : 0);
    if ((rc = pbft_init(w.p, &w.cfg)) != 0)
        fuzz_fail("pbft_init: %s", bex_errname(rc));
    FUZZ_CHECK(pbft_quorum(N) == Q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};

    if (size > FUZZ_MAX_LEN)
        return 0;
    setup(&in);
    while (in.n > 0) {
        enum op op = (enum op)(in_u8(&in) % OP_COUNT);
        if (!w.started && op != OP_RESTORE && op != OP_WIRE)
            start();
        switch (op) {
        case OP_RESTORE:
            op_restore(&in);
            break;
        case OP_VOTE:
            op_vote(&in);
            break;
        case OP_VIEW_CHANGE:
            op_view_change(&in);
            break;
        case OP_NEW_VIEW:
            op_new_view(&in);
            break;
        case OP_WIRE:
            op_wire(&in);
            break;
        case OP_TICK:
            op_tick(&in);
            break;
        case OP_PROPOSE:
            op_propose(&in);
            break;
        case OP_EXECUTE:
            op_execute(&in);
            break;
        case OP_TRANSFER:
            op_transfer(&in);
            break;
        case OP_PENDING:
            pbft_set_pending(w.p, (in_u8(&in) & 1) != 0);
            break;
        case OP_ROUND:
            op_round(&in);
            break;
        case OP_CHECKPOINTS:
            op_checkpoints(&in);
            break;
        case OP_VIEW_CHANGES:
            op_view_changes(&in);
            break;
        case OP_COUNT:
            break;
        }
    }
    if (!w.started)
        start();
    /* The next input's pbft_init() resets the engine: no pbft_close(), which would wipe 3.5 MB again. */
    return 0;
}
