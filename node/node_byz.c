#include "node_byz.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bex.pb-c.h"
#include "crypto.h"
#include "log.h"

#define RING_MAX 1024                     /* frames kept for replay */
#define RING_FRAME_BYTES_MAX (16u << 10)  /* larger frames are not kept: memory stays under 16 MiB */
#define RING_REPLAY_MIN 16                /* frames captured before the replay starts */
#define REPLAY_PER_TICK 3
#define VC_EVERY_MS 20
#define BAD_EVERY_MS 250
#define REPORT_EVERY_MS 1000
#define GARBAGE_BYTES 200
#define CLOCK_OFFSET_MAX_MS (10ll * 366 * 24 * 3600 * 1000) /* ten years either way */

enum byz_kind { BYZ_EQUIVOCATE, BYZ_CONFLICT_VOTES, BYZ_VC_FLOOD, BYZ_REPLAY, BYZ_BAD_FRAMES, BYZ_COUNT };

static const char *const kind_names[BYZ_COUNT] = {
    [BYZ_EQUIVOCATE] = "equivocate", [BYZ_CONFLICT_VOTES] = "conflict_votes", [BYZ_VC_FLOOD] = "vc_flood",
    [BYZ_REPLAY] = "replay",         [BYZ_BAD_FRAMES] = "bad_frames",
};

struct ring_frame {
    uint8_t *bytes;
    size_t len;
};

/* One faulty node per process: the state lives here rather than in struct node, which bexd shares. */
static struct {
    bool on[BYZ_COUNT];
    int64_t clock_offset_ms;
    uint64_t rng;
    uint64_t sent[BYZ_COUNT]; /* misbehaving messages sent, for the periodic report */
    uint64_t vc_view;         /* the last view flooded */
    uint64_t next_vc_ms, next_bad_ms, next_report_ms;
    uint32_t bad_step;
    struct pbft_view_change *vc;
    struct ring_frame ring[RING_MAX];
    uint32_t ring_n, ring_next;
} byz;

/* ---------------------------------------------------------------- helpers */

/* xorshift64*: test traffic needs variety, not secrecy. */
static uint64_t rnd(void)
{
    byz.rng ^= byz.rng >> 12;
    byz.rng ^= byz.rng << 25;
    byz.rng ^= byz.rng >> 27;
    return byz.rng * 0x2545f4914f6cdd1dull;
}

static void rnd_bytes(uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(rnd() >> 32);
}

/* Whether peer k is addressed by a send to `to` (a peer, or P2P_PEER_NONE for all). */
static bool addressed(const struct node *n, uint32_t to, uint32_t k)
{
    return k != n->self && (to == P2P_PEER_NONE || to == k) && p2p_peer_up(&n->p2p, k);
}

/* Sends one encoded frame; a peer that is gone is simply skipped. */
static void send_frame(struct node *n, uint32_t peer, const uint8_t *bytes, size_t len)
{
    int rc = p2p_send(&n->p2p, peer, bytes, len);

    if (rc != 0 && rc != -BEX_ECLOSED)
        LOG_D("byz: send to %u: %s", peer, bex_strerror(rc));
}

static void send_pbft(struct node *n, uint32_t peer, const struct pbft_msg *m)
{
    uint8_t *buf;
    size_t len;

    if (wire_encode(&buf, &len, m) != 0)
        return;
    send_frame(n, peer, buf, len);
    free(buf);
}

/* Re-signs vote v (its digest changed) with this node's key, as the engine would. */
static void sign_vote(struct node *n, struct pbft_vote *v)
{
    uint8_t d[PBFT_DIGEST_BYTES];

    pbft_vote_digest(&n->pcfg, v, d);
    n->pcfg.crypto.sign(n->pcfg.crypto.ctx, d, v->sig);
}

static void send_proposal(struct node *n, uint32_t peer, Bex__BlockProposal *bp)
{
    Bex__Envelope env = BEX__ENVELOPE__INIT;
    uint8_t *buf;
    size_t len;

    env.kind_case = BEX__ENVELOPE__KIND_PROPOSAL;
    env.proposal = bp;
    len = bex__envelope__get_packed_size(&env);
    if ((buf = malloc(len)) == NULL)
        return;
    bex__envelope__pack(&env, buf);
    send_frame(n, peer, buf, len);
    free(buf);
}

/* ---------------------------------------------------------------- equivocate */

/*
 * The honest proposal and PRE-PREPARE go to the even-numbered peers; the
 * odd-numbered ones get a second block for the same seq (one millisecond
 * later, so another digest) with a PRE-PREPARE for it. The variant is a
 * function of the proposal, so retransmissions stay consistent per peer.
 */
static bool equivocate(struct node *n, uint32_t to, const struct pbft_msg *m, const struct node_proposal *prop)
{
    Bex__BlockProposal *bp = bex__block_proposal__unpack(NULL, prop->len, prop->bytes);
    struct pbft_msg other = *m;
    uint8_t *bytes = NULL;
    size_t len;

    if (bp == NULL)
        return false;
    for (uint32_t k = 0; k < n->gen.nodes_n; k++) {
        if (addressed(n, to, k) && k % 2 == 0) {
            send_proposal(n, k, bp);
            send_pbft(n, k, m);
        }
    }
    bp->time_ms++;
    len = bex__block_proposal__get_packed_size(bp);
    if ((bytes = malloc(len)) == NULL)
        goto done;
    bex__block_proposal__pack(bp, bytes);
    crypto_sha256(other.vote.digest, bytes, len);
    sign_vote(n, &other.vote);
    for (uint32_t k = 0; k < n->gen.nodes_n; k++) {
        if (addressed(n, to, k) && k % 2 == 1) {
            send_proposal(n, k, bp);
            send_pbft(n, k, &other);
            byz.sent[BYZ_EQUIVOCATE]++;
        }
    }
    LOG_I("byz: equivocating in view %" PRIu64 " at seq %" PRIu64 ": digest %02x%02x.. to even peers, %02x%02x.. to odd",
          m->vote.view, m->vote.seq, m->vote.digest[0], m->vote.digest[1], other.vote.digest[0], other.vote.digest[1]);
done:
    free(bytes);
    bex__block_proposal__free_unpacked(bp, NULL);
    return true;
}

/* ---------------------------------------------------------------- conflicting votes */

/*
 * Every PREPARE and COMMIT is doubled by one for a random digest: half the
 * peers (by seq and index) get both, the others only the false one.
 */
static bool conflict_votes(struct node *n, uint32_t to, const struct pbft_msg *m)
{
    struct pbft_msg bad = *m;

    rnd_bytes(bad.vote.digest, PBFT_DIGEST_BYTES);
    sign_vote(n, &bad.vote);
    for (uint32_t k = 0; k < n->gen.nodes_n; k++) {
        if (!addressed(n, to, k))
            continue;
        if ((k + m->vote.seq) % 2 == 0)
            send_pbft(n, k, m);
        send_pbft(n, k, &bad);
        byz.sent[BYZ_CONFLICT_VOTES]++;
    }
    return true;
}

bool node_byz_send_msg(struct node *n, uint32_t to, const struct pbft_msg *m, const struct node_proposal *prop)
{
    if (byz.on[BYZ_EQUIVOCATE] && m->type == PBFT_MSG_PRE_PREPARE && m->vote.replica == n->self && prop != NULL)
        return equivocate(n, to, m, prop);
    if (byz.on[BYZ_CONFLICT_VOTES] && (m->type == PBFT_MSG_PREPARE || m->type == PBFT_MSG_COMMIT) &&
        m->vote.replica == n->self)
        return conflict_votes(n, to, m);
    return false;
}

/* ---------------------------------------------------------------- view-change flood */

/* A correctly signed VIEW-CHANGE from the genesis checkpoint for the next view up. */
static void vc_flood(struct node *n)
{
    struct pbft_msg m = {.type = PBFT_MSG_VIEW_CHANGE};
    uint8_t d[PBFT_DIGEST_BYTES];

    if (byz.vc_view < pbft_view(n->pbft))
        byz.vc_view = pbft_view(n->pbft);
    memset(byz.vc, 0, sizeof *byz.vc);
    byz.vc->new_view = ++byz.vc_view;
    byz.vc->replica = n->self;
    pbft_view_change_digest(&n->pcfg, byz.vc, d);
    n->pcfg.crypto.sign(n->pcfg.crypto.ctx, d, byz.vc->sig);
    m.view_change = byz.vc;
    for (uint32_t k = 0; k < n->gen.nodes_n; k++) {
        if (addressed(n, P2P_PEER_NONE, k))
            send_pbft(n, k, &m);
    }
    byz.sent[BYZ_VC_FLOOD]++;
}

/* ---------------------------------------------------------------- replay */

void node_byz_frame_in(struct node *n, uint32_t peer, const uint8_t *bytes, size_t len)
{
    struct ring_frame *f;
    uint8_t *copy;

    (void)n;
    (void)peer;
    if (!byz.on[BYZ_REPLAY] || len == 0 || len > RING_FRAME_BYTES_MAX)
        return;
    if ((copy = malloc(len)) == NULL)
        return;
    memcpy(copy, bytes, len);
    f = &byz.ring[byz.ring_next];
    free(f->bytes);
    f->bytes = copy;
    f->len = len;
    byz.ring_next = (byz.ring_next + 1) % RING_MAX;
    if (byz.ring_n < RING_MAX)
        byz.ring_n++;
}

static void replay(struct node *n)
{
    if (byz.ring_n < RING_REPLAY_MIN)
        return;
    for (int i = 0; i < REPLAY_PER_TICK; i++) {
        const struct ring_frame *f = &byz.ring[rnd() % byz.ring_n];
        uint32_t k = (uint32_t)(rnd() % n->gen.nodes_n);

        if (addressed(n, P2P_PEER_NONE, k)) {
            send_frame(n, k, f->bytes, f->len);
            byz.sent[BYZ_REPLAY]++;
        }
    }
}

/* ---------------------------------------------------------------- bad frames */

/* The next peer whose link is up, round robin, or P2P_PEER_NONE. */
static uint32_t next_peer(struct node *n)
{
    for (uint32_t i = 0; i < n->gen.nodes_n; i++) {
        uint32_t k = (byz.bad_step + i) % n->gen.nodes_n;

        if (addressed(n, P2P_PEER_NONE, k))
            return k;
    }
    return P2P_PEER_NONE;
}

static void bad_frame(struct node *n)
{
    uint8_t buf[GARBAGE_BYTES];
    uint32_t peer = next_peer(n);
    int rc = 0;

    if (peer == P2P_PEER_NONE)
        return;
    rnd_bytes(buf, sizeof buf);
    switch (byz.bad_step++ % 4) {
    case 0:
        /* A header announcing a frame above the limit (bit 31 clear: an application frame). */
        bex_be32_put(buf, (n->cfg.limits.frame_bytes_max + 1 + (uint32_t)(rnd() % 4096)) & 0x7fffffffu);
        rc = p2p_send_raw(&n->p2p, peer, buf, 64);
        break;
    case 1:
        /* Random bytes where a frame header belongs. */
        rc = p2p_send_raw(&n->p2p, peer, buf, sizeof buf);
        break;
    case 2: {
        /* A valid frame carrying an Envelope cut in the middle of its HELLO. */
        Bex__Envelope env = BEX__ENVELOPE__INIT;
        Bex__Hello h = BEX__HELLO__INIT;
        size_t len;

        h.chain_id = n->gen.chain_id;
        h.replica = n->self;
        h.height = ledger_height(n->ledger);
        h.version = (char *)"bex/0.1";
        env.kind_case = BEX__ENVELOPE__KIND_HELLO;
        env.hello = &h;
        len = bex__envelope__get_packed_size(&env);
        if (len > sizeof buf)
            return;
        bex__envelope__pack(&env, buf);
        rc = p2p_send(&n->p2p, peer, buf, len / 2);
        break;
    }
    default:
        /* A valid frame of random bytes. */
        rc = p2p_send(&n->p2p, peer, buf, sizeof buf);
        break;
    }
    if (rc == 0)
        byz.sent[BYZ_BAD_FRAMES]++;
}

/* ---------------------------------------------------------------- lifecycle */

static void report(void)
{
    char line[256];
    size_t k = 0;

    line[0] = '\0';
    for (int i = 0; i < BYZ_COUNT; i++) {
        if (byz.on[i] && k < sizeof line)
            k += (size_t)snprintf(line + k, sizeof line - k, " %s=%" PRIu64, kind_names[i], byz.sent[i]);
    }
    if (k > 0)
        LOG_I("byz: sent so far:%s", line);
}

void node_byz_tick(struct node *n, uint64_t now_ms)
{
    if (byz.on[BYZ_VC_FLOOD] && byz.vc != NULL && now_ms >= byz.next_vc_ms) {
        byz.next_vc_ms = now_ms + VC_EVERY_MS;
        vc_flood(n);
    }
    if (byz.on[BYZ_REPLAY])
        replay(n);
    if (byz.on[BYZ_BAD_FRAMES] && now_ms >= byz.next_bad_ms) {
        byz.next_bad_ms = now_ms + BAD_EVERY_MS;
        bad_frame(n);
    }
    if (now_ms >= byz.next_report_ms) {
        if (byz.next_report_ms != 0)
            report();
        byz.next_report_ms = now_ms + REPORT_EVERY_MS;
    }
}

int64_t node_byz_clock_offset_ms(void)
{
    return byz.clock_offset_ms;
}

static int parse_kinds(const char *list, char *err, size_t err_size)
{
    char copy[256], *save = NULL;

    if (strlen(list) >= sizeof copy) {
        snprintf(err, err_size, "BEX_BYZ: longer than %zu bytes", sizeof copy - 1);
        return -BEX_EINVAL;
    }
    snprintf(copy, sizeof copy, "%s", list);
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        int i = 0;

        while (i < BYZ_COUNT && strcmp(t, kind_names[i]) != 0)
            i++;
        if (i == BYZ_COUNT) {
            snprintf(err, err_size,
                     "BEX_BYZ: unknown misbehaviour \"%.32s\" (known: equivocate, conflict_votes, vc_flood, replay, "
                     "bad_frames)",
                     t);
            return -BEX_EINVAL;
        }
        byz.on[i] = true;
    }
    return 0;
}

static int parse_offset(const char *text, char *err, size_t err_size)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v > CLOCK_OFFSET_MAX_MS || v < -CLOCK_OFFSET_MAX_MS) {
        snprintf(err, err_size, "BEX_CLOCK_OFFSET_MS: \"%.32s\" is not a number of milliseconds within ten years",
                 text);
        return -BEX_EINVAL;
    }
    byz.clock_offset_ms = v;
    return 0;
}

int node_byz_open(struct node *n, char *err, size_t err_size)
{
    const char *kinds = getenv("BEX_BYZ"), *offset = getenv("BEX_CLOCK_OFFSET_MS");
    char on[128] = "";
    size_t k = 0;
    int rc;

    memset(&byz, 0, sizeof byz);
    if (kinds != NULL && (rc = parse_kinds(kinds, err, err_size)) != 0)
        return rc;
    if (offset != NULL && offset[0] != '\0' && (rc = parse_offset(offset, err, err_size)) != 0)
        return rc;
    if (crypto_random((uint8_t *)&byz.rng, sizeof byz.rng) != 0 || byz.rng == 0)
        byz.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)n->self;
    if (byz.on[BYZ_VC_FLOOD] && (byz.vc = calloc(1, sizeof *byz.vc)) == NULL) {
        snprintf(err, err_size, "byz: out of memory");
        return -BEX_ENOMEM;
    }
    for (int i = 0; i < BYZ_COUNT; i++) {
        if (byz.on[i] && k < sizeof on)
            k += (size_t)snprintf(on + k, sizeof on - k, "%s%s", k ? "," : "", kind_names[i]);
    }
    LOG_W("byz: this is bexd-byz, a deliberately faulty node for tests: misbehaviours %s, clock offset %+" PRId64
          " ms",
          k ? on : "none", byz.clock_offset_ms);
    return 0;
}

void node_byz_close(void)
{
    for (uint32_t i = 0; i < RING_MAX; i++)
        free(byz.ring[i].bytes);
    free(byz.vc);
    memset(&byz, 0, sizeof byz);
}
