#include "node.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bex.pb-c.h"
#include "blocktime.h"
#include "keystore.h"
#include "log.h"
#include "tls.h"
#ifdef BEX_BYZANTINE
#include "node_byz.h"
#endif

#define HELLO_EVERY_MS 1000
#define FETCH_RETRY_MS 500
#define PROPOSAL_RETRY_MS 300
#define MEMPOOL_TTL_MS (10u * 60 * 1000)
#define RELAY_STUCK_MS 5000  /* a sender's next tx waiting this long in no proposal is relayed again */
#define RELAY_STUCK_RUN 256  /* with up to this many of the sender's txs after it */
#define RELAY_STUCK_MAX 1024 /* txs relayed so per HELLO round */
/*
 * The store's pages mapped by reads are given back (store_trim) once the
 * process's file-backed resident memory passes STORE_TRIM_ABOVE, looked at
 * every STORE_TRIM_MS: the resident set is then the node's own memory and at
 * most that much of the store, not a growing share of the chain.
 */
#define STORE_TRIM_MS 10
#define STORE_TRIM_ABOVE ((size_t)64 << 20)
#define NODE_VERSION "bex/0.1"

/* Labels of bex_proposals_refused_total. */
enum { REFUSED_CLOCK, REFUSED_INVALID };

static const uint8_t zero_digest[PBFT_DIGEST_BYTES];

static void do_actions(struct node *n);
static void apply_commits(struct node *n);
static void finish_block(struct node *n);

uint64_t node_now_ms(const struct node *n)
{
    struct timespec ts;

    (void)n;
    clock_gettime(CLOCK_REALTIME, &ts);
#ifdef BEX_BYZANTINE
    return (uint64_t)((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + node_byz_clock_offset_ms());
#else
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

/* Monotonic milliseconds for the engine's timers. */
static uint64_t mono_ms(const struct node *n)
{
    return uv_now(n->loop);
}

static void hex32(char out[65], const uint8_t b[32])
{
    BEX_ASSERT(crypto_hex_encode(out, 65, b, 32) == 0);
}

static void log_context(struct node *n)
{
    log_set_context(pbft_view(n->pbft), ledger_height(n->ledger));
}

/* ---------------------------------------------------------------- crypto adapters */

/* PBFT signs SHA-256(chain tag || canonical bytes): votes of one chain never count on another. */
static void pbft_hash(void *ctx, const uint8_t *bytes, size_t len, uint8_t out[PBFT_DIGEST_BYTES])
{
    struct node *n = ctx;
    struct crypto_sha256_ctx c;

    crypto_sha256_init(&c);
    crypto_sha256_update(&c, n->chain_tag, sizeof n->chain_tag);
    crypto_sha256_update(&c, bytes, len);
    crypto_sha256_final(&c, out);
}

static void pbft_sign(void *ctx, const uint8_t digest[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES])
{
    struct node *n = ctx;
    struct crypto_sig s;

    BEX_ASSERT(crypto_sign(&s, &n->node_sk, digest) == 0);
    memcpy(sig, s.b, PBFT_SIG_BYTES);
}

static bool pbft_verify(void *ctx, uint32_t replica, const uint8_t digest[PBFT_DIGEST_BYTES],
                        const uint8_t sig[PBFT_SIG_BYTES])
{
    struct node *n = ctx;
    struct crypto_sig s;

    if (replica >= n->gen.nodes_n)
        return false;
    memcpy(s.b, sig, PBFT_SIG_BYTES);
    return crypto_verify(&n->gen.nodes[replica].node_key, digest, &s) == 0;
}

static void tc_sha256(uint8_t out[TXCHECK_HASH_BYTES], const void *data, size_t len)
{
    crypto_sha256(out, data, len);
}

static int tc_verify(const uint8_t pub[TXCHECK_PUB_BYTES], const uint8_t digest[TXCHECK_HASH_BYTES],
                     const uint8_t sig[TXCHECK_SIG_BYTES])
{
    struct crypto_pubkey pk;
    struct crypto_sig s;

    memcpy(pk.b, pub, sizeof pk.b);
    memcpy(s.b, sig, sizeof s.b);
    return crypto_verify(&pk, digest, &s);
}

/*
 * The agency registry is fixed by the genesis until governance exists, so keys
 * come from it. txcheck_tx_signed() relies on that: it takes a cache hit for a
 * proposal's tx without asking for the keys again.
 */
static int tc_keys(struct txcheck_keys *keys, const char *sender, void *user)
{
    struct node *n = user;
    int i = config_genesis_find_agency(&n->gen, sender);
    const struct genesis_agency *a;

    if (i < 0)
        return -BEX_EUNKNOWN;
    a = &n->gen.agencies[i];
    keys->count = 0;
    for (uint32_t k = 0; k < a->officers_n && keys->count < TXCHECK_KEYS_MAX; k++)
        memcpy(keys->key[keys->count++], a->officers[k].b, TXCHECK_PUB_BYTES);
    if (a->node_index >= 0 && keys->count < TXCHECK_KEYS_MAX)
        memcpy(keys->key[keys->count++], n->gen.nodes[a->node_index].node_key.b, TXCHECK_PUB_BYTES);
    return 0;
}

static int last_nonce(uint64_t *last, const char *sender, void *user)
{
    struct node *n = user;

    return ledger_last_nonce(n->ledger, last, sender);
}

/* ---------------------------------------------------------------- sending */

static int pack_envelope(uint8_t **out, size_t *len, const Bex__Envelope *env)
{
    size_t sz = bex__envelope__get_packed_size(env);

    *out = malloc(sz ? sz : 1);
    if (*out == NULL)
        return -BEX_ENOMEM;
    *len = bex__envelope__pack(env, *out);
    return 0;
}

/* Sends env to one peer (peer < n) or to all (peer == P2P_PEER_NONE). Failures are the peer's problem. */
static void send_env(struct node *n, uint32_t peer, const Bex__Envelope *env)
{
    uint8_t *buf;
    size_t len;
    int rc;

    if (pack_envelope(&buf, &len, env) != 0) {
        LOG_E("node: out of memory encoding a message");
        return;
    }
    if (peer == P2P_PEER_NONE)
        rc = p2p_broadcast(&n->p2p, buf, len);
    else
        rc = p2p_send(&n->p2p, peer, buf, len);
    if (rc != 0 && rc != -BEX_ECLOSED)
        LOG_D("node: send to %d: %s", peer == P2P_PEER_NONE ? -1 : (int)peer, bex_strerror(rc));
    free(buf);
}

/*
 * Sends an Envelope holding one length-delimited field (a Tx or a
 * BlockProposal) whose encoding is at hand: the frame is the field's tag, its
 * length as a varint and the bytes, exactly what packing the message again
 * would produce, without decoding or encoding it.
 */
static void send_field(struct node *n, uint32_t peer, uint32_t field, const uint8_t *bytes, size_t len)
{
    uint8_t *buf = malloc(len + 11);
    size_t k = 0;
    int rc;

    BEX_ASSERT(field > 0 && field < 16);
    if (buf == NULL) {
        LOG_E("node: out of memory encoding a message");
        return;
    }
    buf[k++] = (uint8_t)(field << 3 | 2);
    for (size_t v = len; k == 1 || v > 0; v >>= 7)
        buf[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    memcpy(buf + k, bytes, len);
    if (peer == P2P_PEER_NONE)
        rc = p2p_broadcast(&n->p2p, buf, k + len);
    else
        rc = p2p_send(&n->p2p, peer, buf, k + len);
    if (rc != 0 && rc != -BEX_ECLOSED)
        LOG_D("node: send to %d: %s", peer == P2P_PEER_NONE ? -1 : (int)peer, bex_strerror(rc));
    free(buf);
}

/*
 * When frame is an Envelope of exactly one length-delimited field (what
 * every packer emits for a Tx or a BlockProposal), sets *field and the
 * field's bytes and returns true; the caller then skips decoding the
 * Envelope and re-encoding its content. Anything else returns false.
 */
static bool frame_field(uint32_t *field, const uint8_t **payload, size_t *payload_len, const uint8_t *frame,
                        size_t len)
{
    uint64_t v = 0;
    size_t k = 1;

    if (len < 2 || (frame[0] & 0x87) != 2 || frame[0] >> 3 == 0)
        return false;
    for (unsigned shift = 0;; shift += 7) {
        if (k >= len || shift > 56)
            return false;
        v |= (uint64_t)(frame[k] & 0x7f) << shift;
        if ((frame[k++] & 0x80) == 0)
            break;
    }
    if (v != len - k)
        return false;
    *field = frame[0] >> 3;
    *payload = frame + k;
    *payload_len = len - k;
    return true;
}

static void send_hello(struct node *n, uint32_t peer)
{
    Bex__Envelope env = BEX__ENVELOPE__INIT;
    Bex__Hello h = BEX__HELLO__INIT;

    h.chain_id = n->gen.chain_id;
    h.replica = n->self;
    h.height = ledger_height(n->ledger);
    h.view = pbft_view(n->pbft);
    h.version = (char *)NODE_VERSION;
    env.kind_case = BEX__ENVELOPE__KIND_HELLO;
    env.hello = &h;
    send_env(n, peer, &env);
}

/* ---------------------------------------------------------------- proposals */

static struct node_proposal *prop_find(struct node *n, const uint8_t digest[PBFT_DIGEST_BYTES])
{
    for (size_t i = 0; i < NODE_PROPOSALS_MAX; i++) {
        if (n->props[i].used && memcmp(n->props[i].digest, digest, PBFT_DIGEST_BYTES) == 0)
            return &n->props[i];
    }
    return NULL;
}

static void prop_drop(struct node_proposal *p)
{
    free(p->bytes);
    memset(p, 0, sizeof *p);
}

/* Frees proposals at or below the executed height; they are in the store now. */
static void prop_gc(struct node *n)
{
    uint64_t h = ledger_height(n->ledger);

    for (size_t i = 0; i < NODE_PROPOSALS_MAX; i++) {
        if (n->props[i].used && n->props[i].height <= h)
            prop_drop(&n->props[i]);
    }
}

/* Takes ownership of bytes. Returns the slot, or NULL when the cache is full (bytes freed). */
static struct node_proposal *prop_add(struct node *n, const uint8_t digest[PBFT_DIGEST_BYTES], uint64_t height,
                                      uint8_t *bytes, size_t len, bool valid)
{
    struct node_proposal *p = prop_find(n, digest);

    if (p != NULL) {
        free(bytes);
        p->valid = p->valid || valid;
        return p;
    }
    prop_gc(n);
    for (size_t i = 0; i < NODE_PROPOSALS_MAX; i++) {
        if (!n->props[i].used) {
            p = &n->props[i];
            p->used = true;
            p->valid = valid;
            memcpy(p->digest, digest, PBFT_DIGEST_BYTES);
            p->height = height;
            p->bytes = bytes;
            p->len = len;
            return p;
        }
    }
    free(bytes);
    LOG_W_LIMITED("node: proposal cache full; dropped a proposal at height %" PRIu64, height);
    return NULL;
}

/*
 * Checks a proposal from a peer before this replica may prepare it: it
 * decodes, is of this chain, its height is within reach, its time is not
 * too far from this node's clock (blocktime.h), it respects the block
 * limits, and every tx carries valid signatures of its sender's keys.
 * *label says which bex_proposals_refused_total series a refusal counts in.
 */
static int prop_validate(struct node *n, uint64_t *height, int *label, const uint8_t *bytes, size_t len, char *why,
                         size_t why_n)
{
    Bex__BlockProposal *p;
    uint64_t h = ledger_height(n->ledger), ahead, behind;
    int rc = 0;

    *label = REFUSED_INVALID;
    if (len > n->gen.consensus.block_bytes_max + 4096u) {
        snprintf(why, why_n, "%zu bytes", len);
        return -BEX_ELIMIT;
    }
    p = bex__block_proposal__unpack(NULL, len, bytes);
    if (p == NULL) {
        snprintf(why, why_n, "does not decode");
        return -BEX_EDECODE;
    }
    *height = p->height;
    if (strcmp(p->chain_id, n->gen.chain_id) != 0 || p->null) {
        snprintf(why, why_n, "wrong chain or a null proposal");
        rc = -BEX_EINVAL;
    } else if (p->height <= h || p->height > h + 2u * n->pcfg.window) {
        snprintf(why, why_n, "height %" PRIu64 " out of reach (executed %" PRIu64 ")", p->height, h);
        rc = -BEX_ELIMIT;
    } else if (p->n_txs > n->gen.consensus.block_txs_max) {
        snprintf(why, why_n, "%zu txs", p->n_txs);
        rc = -BEX_ELIMIT;
    } else if (blocktime_check(&ahead, &behind, p->time_ms, node_now_ms(n), n->cfg.limits.clock_skew_max_ms,
                               p->view == pbft_view(n->pbft)) != 0) {
        snprintf(why, why_n, "its time is %" PRIu64 " ms %s this node's clock (limit %u ms)", ahead ? ahead : behind,
                 ahead ? "ahead of" : "behind", n->cfg.limits.clock_skew_max_ms);
        *label = REFUSED_CLOCK;
        rc = -BEX_ELIMIT;
    }
    for (size_t i = 0; rc == 0 && i < p->n_txs; i++) {
        struct txcheck_result res;

        rc = txcheck_tx_signed(n->txcheck, &res, p->txs[i].data, p->txs[i].len);
        if (rc != 0)
            snprintf(why, why_n, "tx %zu: %.100s", i, res.reason);
    }
    bex__block_proposal__free_unpacked(p, NULL);
    return rc;
}

/* Feeds the held PRE-PREPAREs whose proposal is now valid. */
static void release_held(struct node *n)
{
    uint32_t k = 0;

    for (uint32_t i = 0; i < n->held_n; i++) {
        struct node_proposal *p = prop_find(n, n->held[i].digest);

        if (p != NULL && p->valid) {
            struct pbft_msg m = {.type = PBFT_MSG_PRE_PREPARE, .vote = n->held[i]};

            if (pbft_step(n->pbft, &m, n->acts) != 0)
                LOG_D("consensus: dropped a held PRE-PREPARE");
            do_actions(n);
        } else if (n->held[i].seq > ledger_height(n->ledger)) {
            n->held[k++] = n->held[i];
        }
    }
    n->held_n = k;
}

static void on_proposal(struct node *n, uint32_t peer, const uint8_t *bytes, size_t len)
{
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint8_t *copy;
    uint64_t height = 0;
    char why[160] = "";
    int rc, label;

    crypto_sha256(digest, bytes, len);
    if (prop_find(n, digest) != NULL)
        return;
    rc = prop_validate(n, &height, &label, bytes, len, why, sizeof why);
    if (rc != 0) {
        /* Counted always, logged rate-limited: a faulty peer must not flood the log. */
        metrics_counter_inc(n->m.proposals_refused, (size_t)label);
        LOG_W_LIMITED("node: refused a proposal from %u: %s", peer, why);
        return;
    }
    copy = malloc(len ? len : 1);
    if (copy == NULL)
        return;
    memcpy(copy, bytes, len);
    if (prop_add(n, digest, height, copy, len, true) != NULL) {
        release_held(n);
        apply_commits(n);
    }
}

/*
 * After a view change, before this replica proposes at seq: the txs of the
 * proposals still in flight below seq (re-issued by the NEW-VIEW, or
 * prepared and waiting for execution) must not be proposed a second time,
 * so they are marked with their heights; proposals at or above seq are dead
 * (the new view proposes afresh there) and their txs stay free.
 */
static void remark_in_flight(struct node *n, uint64_t seq)
{
    uint64_t h = ledger_height(n->ledger);

    for (size_t i = 0; i < NODE_PROPOSALS_MAX; i++) {
        struct node_proposal *pr = &n->props[i];
        Bex__BlockProposal *bp;

        if (!pr->used || pr->height <= h || pr->height >= seq)
            continue;
        bp = bex__block_proposal__unpack(NULL, pr->len, pr->bytes);
        for (size_t k = 0; bp != NULL && k < bp->n_txs; k++) {
            Bex__Tx *tx = bex__tx__unpack(NULL, bp->txs[k].len, bp->txs[k].data);
            uint8_t id[CRYPTO_HASH_BYTES];

            if (tx == NULL)
                continue;
            crypto_sha256(id, tx->body.data, tx->body.len);
            mempool_mark(n->mempool, id, pr->height);
            bex__tx__free_unpacked(tx, NULL);
        }
        if (bp != NULL)
            bex__block_proposal__free_unpacked(bp, NULL);
    }
    n->remark = false;
}

/* The primary cuts one block when txs wait and the batch is full or old enough. */
static void maybe_propose(struct node *n, uint64_t now_ms)
{
    const struct genesis_consensus *c = &n->gen.consensus;
    const struct mempool_tx **txs = NULL;
    Bex__BlockProposal bp = BEX__BLOCK_PROPOSAL__INIT;
    ProtobufCBinaryData *bins = NULL;
    uint8_t digest[PBFT_DIGEST_BYTES], *bytes = NULL;
    uint64_t seq;
    size_t count, len;
    int rc;

    if (n->catching_up || n->store_failed || pbft_primary(n->pbft) != n->self || !pbft_view_active(n->pbft))
        return;
    if (mempool_count(n->mempool) == 0)
        return;
    if (mempool_count(n->mempool) < c->block_txs_max && mempool_oldest_age_ms(n->mempool, now_ms) < c->batch_delay_ms)
        return;
    if (pbft_next_seq(n->pbft, &seq) != 0)
        return;
    if (n->remark)
        remark_in_flight(n, seq);
    txs = malloc(c->block_txs_max * sizeof *txs);
    bins = malloc(c->block_txs_max * sizeof *bins);
    if (txs == NULL || bins == NULL)
        goto done;
    count = mempool_select(n->mempool, txs, c->block_txs_max, c->block_bytes_max - 4096u, seq);
    if (count == 0)
        goto done;
    for (size_t i = 0; i < count; i++)
        bins[i] = (ProtobufCBinaryData){txs[i]->len, (uint8_t *)txs[i]->bytes};
    bp.chain_id = n->gen.chain_id;
    bp.height = seq;
    bp.view = pbft_view(n->pbft);
    bp.time_ms = blocktime_propose(now_ms, ledger_time_ms(n->ledger));
    bp.proposer = n->self;
    bp.n_txs = count;
    bp.txs = bins;
    len = bex__block_proposal__get_packed_size(&bp);
    bytes = malloc(len);
    if (bytes == NULL)
        goto unmark;
    bex__block_proposal__pack(&bp, bytes);
    crypto_sha256(digest, bytes, len);
    send_field(n, P2P_PEER_NONE, BEX__ENVELOPE__KIND_PROPOSAL, bytes, len);
    if (prop_add(n, digest, seq, bytes, len, true) == NULL) {
        bytes = NULL;
        goto unmark;
    }
    bytes = NULL;
    if ((rc = pbft_propose(n->pbft, digest, n->acts)) != 0) {
        LOG_W_LIMITED("node: propose h=%" PRIu64 ": %s", seq, bex_strerror(rc));
        goto unmark;
    }
    LOG_D("node: proposed h=%" PRIu64 " with %zu txs", seq, count);
    do_actions(n);
    goto done;
unmark:
    mempool_unmark(n->mempool, seq);
done:
    free(bytes);
    free(txs);
    free(bins);
}

/* ---------------------------------------------------------------- persistence of votes */

/*
 * Keys of the persisted votes sort in the order pbft_restore() needs: the
 * stable proof ('a'), VIEW-CHANGEs ('b') and NEW-VIEWs ('c') by view, then
 * everything else ('d') by type, seq and view.
 */
static size_t vote_key(uint8_t key[32], const struct pbft_msg *m)
{
    size_t k = 0;
    uint64_t a = 0, b = 0;

    switch (m->type) {
    case PBFT_MSG_STABLE:
        key[k++] = 'a';
        return k;
    case PBFT_MSG_VIEW_CHANGE:
        key[k++] = 'b';
        a = m->view_change->new_view;
        break;
    case PBFT_MSG_NEW_VIEW:
        key[k++] = 'c';
        a = m->new_view->view;
        break;
    case PBFT_MSG_PREPARED:
        key[k++] = 'd';
        key[k++] = (uint8_t)m->type;
        a = m->prepared->seq;
        b = m->prepared->view;
        break;
    default:
        key[k++] = 'd';
        key[k++] = (uint8_t)m->type;
        a = m->vote.seq;
        b = m->vote.view;
        break;
    }
    for (int i = 7; i >= 0; i--)
        key[k++] = (uint8_t)(a >> (8 * i));
    for (int i = 7; i >= 0; i--)
        key[k++] = (uint8_t)(b >> (8 * i));
    return k;
}

static void fatal_store(struct node *n, int rc, const char *what)
{
    char msg[200];

    /* The store's message names a full disk ("disk full (...)") when that is the cause. */
    store_error(ledger_store(n->ledger), msg, sizeof msg);
    snprintf(n->store_err, sizeof n->store_err, "%.48s: %.32s (%.160s)", what, bex_strerror(rc), msg);
    if (!n->store_failed)
        LOG_E("node: store refuses writes: %s; serving reads only until space is freed and the node restarted",
              n->store_err);
    n->store_failed = true;
}

/*
 * Doubles the LMDB map, up to config_map_size_max_mb(), when the store uses
 * three quarters of it, or at once when full is set (a write just failed
 * with -BEX_EMAPFULL). Returns 0 when the map is large enough or was grown,
 * -BEX_EMAPFULL when it is at its maximum, or a store error. Called only
 * between blocks, when no read snapshot of the loop is open.
 */
static int grow_map(struct node *n, bool full)
{
    struct store *st = ledger_store(n->ledger);
    uint64_t max = (uint64_t)config_map_size_max_mb(&n->cfg) << 20, want;
    struct store_stats stats;
    struct store_read *r;
    int rc;

    if ((rc = store_read_begin(st, &r)) != 0)
        return rc;
    rc = store_get_stats(r, &stats);
    store_read_end(r);
    if (rc != 0)
        return rc;
    if (!full && stats.used_bytes < stats.map_bytes / 4 * 3)
        return 0;
    if (stats.map_bytes >= max)
        return full ? -BEX_EMAPFULL : 0;
    want = stats.map_bytes * 2 < max ? stats.map_bytes * 2 : max;
    if ((rc = ledger_resize(n->ledger, (size_t)want)) != 0) {
        LOG_W("store: cannot grow the map from %" PRIu64 " to %" PRIu64 " MiB: %s", stats.map_bytes >> 20,
              want >> 20, bex_strerror(rc));
        return rc;
    }
    LOG_I("store: map grown from %" PRIu64 " to %" PRIu64 " MiB (%" PRIu64 " MiB used, at most %" PRIu64 ")",
          stats.map_bytes >> 20, want >> 20, stats.used_bytes >> 20, max >> 20);
    return 0;
}

/* Adds one own vote to the batch; only the latest VIEW-CHANGE is kept. */
static int persist_vote(struct persist_batch *b, const struct pbft_msg *m)
{
    uint8_t key[32], *val;
    size_t klen = vote_key(key, m), vlen;
    int rc;

    if ((rc = wire_encode(&val, &vlen, m)) != 0)
        return rc;
    rc = persist_batch_put(b, key, klen, val, vlen);
    free(val);
    if (rc == 0 && m->type == PBFT_MSG_VIEW_CHANGE && m->view_change->new_view > 0)
        rc = persist_batch_prune(b, (const uint8_t *)"b", 1, key, klen);
    return rc;
}

/* Adds a stable checkpoint to the batch and drops the votes of seqs <= seq. */
static int persist_stable(struct persist_batch *b, const struct pbft_action *a)
{
    struct pbft_msg m = {.type = PBFT_MSG_STABLE, .proof = a->proof};
    int rc = persist_vote(b, &m);

    for (uint8_t t = PBFT_MSG_PRE_PREPARE; rc == 0 && t <= PBFT_MSG_PREPARED; t++) {
        uint8_t from[2] = {'d', t}, to[10] = {'d', t};

        for (int i = 7; i >= 0; i--)
            to[2 + (7 - i)] = (uint8_t)((a->seq + 1) >> (8 * i));
        rc = persist_batch_prune(b, from, 2, to, 10);
    }
    if (rc == 0)
        rc = persist_batch_checkpoint(b, a->seq, a->digest);
    return rc;
}

/*
 * Queues every PERSIST and STABLE action of the last engine call as one
 * batch for the writer thread (persist.h), which commits all batches queued
 * meanwhile in one transaction and one fdatasync. The sends of the call are
 * held until the batch is durable (send_or_hold()). Returns 0 when there
 * was nothing to persist or the batch is queued.
 */
static int persist_actions(struct node *n, const struct pbft_actions *acts)
{
    struct persist_batch *b = NULL;
    uint64_t seq;
    int rc = 0;

    for (uint32_t i = 0; rc == 0 && i < acts->count; i++) {
        const struct pbft_action *a = &acts->items[i];

        if (a->type != PBFT_ACT_PERSIST && a->type != PBFT_ACT_STABLE)
            continue;
        if (b == NULL && (b = persist_batch_new()) == NULL)
            rc = -BEX_ENOMEM;
        else
            rc = a->type == PBFT_ACT_PERSIST ? persist_vote(b, &a->msg) : persist_stable(b, a);
    }
    if (rc != 0) {
        persist_batch_free(b);
        return rc;
    }
    return b == NULL ? 0 : persist_submit(n->persist, &seq, b);
}

struct restore_ctx {
    struct node *n;
    int restored, refused;
};

static int restore_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct restore_ctx *rc = arg;
    struct pbft_msg m;

    (void)key;
    (void)key_len;
    if (wire_decode(&m, rc->n->scratch, val, val_len) != 0 || pbft_restore(rc->n->pbft, &m) != 0)
        rc->refused++;
    else
        rc->restored++;
    return 0;
}

/* ---------------------------------------------------------------- engine actions */

/*
 * Sends an encoded consensus message to one replica or, with
 * P2P_PEER_NONE, to all. own_pp is the digest of this replica's
 * PRE-PREPARE, or NULL: a proposal travels ahead of its PRE-PREPARE
 * (retransmits and NEW-VIEW re-issues too).
 */
static void send_wire(struct node *n, uint32_t to, const uint8_t *own_pp, const uint8_t *buf, size_t len)
{
    int rc;

    if (own_pp != NULL) {
        struct node_proposal *p = prop_find(n, own_pp);

        if (p != NULL)
            send_field(n, to, BEX__ENVELOPE__KIND_PROPOSAL, p->bytes, p->len);
    }
    if (to == P2P_PEER_NONE)
        rc = p2p_broadcast(&n->p2p, buf, len);
    else
        rc = p2p_send(&n->p2p, to, buf, len);
    (void)rc;
}

/* The digest of m when it is this replica's PRE-PREPARE, else NULL. */
static const uint8_t *own_pre_prepare(const struct node *n, const struct pbft_msg *m)
{
    return m->type == PBFT_MSG_PRE_PREPARE && m->vote.replica == n->self ? m->vote.digest : NULL;
}

static void send_msg(struct node *n, uint32_t to, const struct pbft_msg *m)
{
    uint8_t *buf;
    size_t len;
    int rc;

#ifdef BEX_BYZANTINE
    if (node_byz_send_msg(n, to, m, m->type == PBFT_MSG_PRE_PREPARE ? prop_find(n, m->vote.digest) : NULL))
        return;
#endif
    if ((rc = wire_encode(&buf, &len, m)) != 0) {
        LOG_E("node: encoding a consensus message: %s", bex_strerror(rc));
        return;
    }
    send_wire(n, to, own_pre_prepare(n, m), buf, len);
    free(buf);
}

/*
 * Sends at once when every persist batch is durable and nothing is held;
 * otherwise holds the message behind the last batch submitted, so that it
 * leaves after its own votes are durable and after every message held
 * before it. A full hold queue drops the message: a lost message, which
 * PBFT tolerates, never an unrecorded vote.
 */
static void send_or_hold(struct node *n, uint32_t to, const struct pbft_msg *m)
{
    uint64_t after = persist_submitted(n->persist);
    struct node_send *h;
    int rc;

    if (n->sends_n == 0 && persist_durable(n->persist, NULL) >= after) {
        send_msg(n, to, m);
        return;
    }
    if (n->sends_n == NODE_SENDS_HELD_MAX) {
        n->sends_dropped++;
        LOG_W_LIMITED("node: %u consensus messages wait for the disk; dropping one (%" PRIu64 " so far)",
                      n->sends_n, n->sends_dropped);
        return;
    }
    h = &n->sends[(n->sends_head + n->sends_n) % NODE_SENDS_HELD_MAX];
    if ((rc = wire_encode(&h->bytes, &h->len, m)) != 0) {
        LOG_E("node: encoding a consensus message: %s", bex_strerror(rc));
        return;
    }
    h->after = after;
    h->to = to;
    h->own_pp = own_pre_prepare(n, m) != NULL;
    if (h->own_pp)
        memcpy(h->pp_digest, m->vote.digest, PBFT_DIGEST_BYTES);
    n->sends_n++;
}

static void drop_held(struct node *n)
{
    while (n->sends_n > 0) {
        free(n->sends[n->sends_head].bytes);
        n->sends_head = (n->sends_head + 1) % NODE_SENDS_HELD_MAX;
        n->sends_n--;
    }
}

/*
 * The writer thread's wake-up: sends what became durable, in order. A
 * failed batch is written again after the map was grown; any other
 * failure stops the store, and the held messages are dropped (silence is
 * safe, an unrecorded vote is not).
 */
static void on_durable(uv_async_t *a)
{
    struct node *n = a->data;
    int failed;
    uint64_t durable = persist_durable(n->persist, &failed);

    while (n->sends_n > 0 && n->sends[n->sends_head].after <= durable) {
        struct node_send *h = &n->sends[n->sends_head];
#ifdef BEX_BYZANTINE
        struct pbft_msg m;

        /* The byzantine hooks see messages, not bytes: decoded again, in the test build only. */
        if (wire_decode(&m, n->scratch, h->bytes, h->len) == 0)
            send_msg(n, h->to, &m);
#else
        send_wire(n, h->to, h->own_pp ? h->pp_digest : NULL, h->bytes, h->len);
#endif
        free(h->bytes);
        n->sends_head = (n->sends_head + 1) % NODE_SENDS_HELD_MAX;
        n->sends_n--;
    }
    if (n->block_pending && durable >= n->block_after)
        finish_block(n);
    if (failed == 0 || n->store_failed)
        return;
    if (failed == -BEX_EMAPFULL && grow_map(n, true) == 0) {
        persist_retry(n->persist);
        return;
    }
    fatal_store(n, failed, n->block_pending ? "writing a block" : "persisting a vote");
    drop_held(n);
    if (n->block_pending) {
        ledger_apply_abort(n->ledger);
        n->block_pending = false;
    }
}

static void wake_durable(void *ud)
{
    uv_async_send(ud);
}

static void queue_commit(struct node *n, const struct pbft_action *a)
{
    struct node_commit *c;
    uint32_t slot;

    if (n->commits_n == NODE_COMMITS_MAX) {
        /* Cannot happen: the engine never commits more than its window ahead of execution. */
        LOG_E("node: commit queue full at seq %" PRIu64, a->seq);
        BEX_ASSERT(n->commits_n < NODE_COMMITS_MAX);
    }
    slot = (n->commits_head + n->commits_n) % NODE_COMMITS_MAX;
    c = &n->commits[slot];
    memset(c, 0, sizeof *c);
    c->seq = a->seq;
    memcpy(c->digest, a->digest, PBFT_DIGEST_BYTES);
    if (wire_cert_encode(&c->cert, &c->cert_len, a->seq, a->digest, a->cert) != 0) {
        LOG_E("node: out of memory encoding a certificate");
        return;
    }
    n->commits_n++;
}

/*
 * Performs the actions of the last engine call: first every persist is
 * queued for the writer thread, then the rest in order, the sends held
 * until the persists are durable (the engine's ordering contract). When
 * the votes cannot be queued, or the store has failed, this replica sends
 * nothing of the call: silence is safe, an unrecorded vote is not.
 */
static void do_actions(struct node *n)
{
    struct pbft_actions *acts = n->acts;
    bool commits = false, silent = n->store_failed;
    int rc;

    if (!silent && (rc = persist_actions(n, acts)) != 0) {
        fatal_store(n, rc, "queueing a vote");
        drop_held(n);
        silent = true;
    }
    for (uint32_t i = 0; i < acts->count; i++) {
        const struct pbft_action *a = &acts->items[i];

        switch (a->type) {
        case PBFT_ACT_SEND:
            if (!silent)
                send_or_hold(n, a->to, &a->msg);
            break;
        case PBFT_ACT_BROADCAST:
            if (!silent)
                send_or_hold(n, P2P_PEER_NONE, &a->msg);
            break;
        case PBFT_ACT_COMMIT:
            queue_commit(n, a);
            commits = true;
            break;
        case PBFT_ACT_FETCH:
            if (a->seq > n->fetch_target)
                n->fetch_target = a->seq;
            break;
        case PBFT_ACT_VIEW_CHANGE:
            n->view_changes++;
            metrics_counter_inc(n->m.view_changes, 0);
            LOG_I("consensus: view change to view %" PRIu64, a->view);
            break;
        case PBFT_ACT_NEW_VIEW:
            /*
             * Proposals of the old view above what executed may never commit:
             * offer their txs again, except those the new view re-issued below
             * the next seq (see remark_in_flight()).
             */
            mempool_unmark(n->mempool, ledger_height(n->ledger) + 1 + (n->block_pending ? 1 : 0));
            n->remark = true;
            LOG_I("consensus: view %" PRIu64 " installed, primary %u", a->view, pbft_primary(n->pbft));
            log_context(n);
            break;
        case PBFT_ACT_PERSIST:
        case PBFT_ACT_STABLE:
            break;
        }
    }
    acts->count = 0;
    if (commits)
        apply_commits(n);
}

/* ---------------------------------------------------------------- applying blocks */

/* Fills the senders done[] lacks from the block's txs, matched by tx id. */
static void senders_from_block(struct mempool_done *done, char (*senders)[MEMPOOL_SENDER_BYTES_MAX + 1], size_t count,
                               const uint8_t *proposal, size_t len)
{
    Bex__BlockProposal *p = bex__block_proposal__unpack(NULL, len, proposal);
    size_t next = 0;

    for (size_t i = 0; p != NULL && i < p->n_txs; i++) {
        Bex__Tx *tx = bex__tx__unpack(NULL, p->txs[i].len, p->txs[i].data);
        Bex__TxBody *body;
        uint8_t id[CRYPTO_HASH_BYTES];

        if (tx == NULL)
            continue;
        crypto_sha256(id, tx->body.data, tx->body.len);
        /* Receipts are in block order: resume the search where the last match was. */
        for (size_t k = 0; k < count; k++) {
            size_t j = (next + k) % count;

            if (done[j].sender != NULL || memcmp(done[j].id, id, CRYPTO_HASH_BYTES) != 0)
                continue;
            body = bex__tx_body__unpack(NULL, tx->body.len, tx->body.data);
            if (body != NULL) {
                snprintf(senders[j], sizeof senders[j], "%s", body->sender);
                done[j].sender = senders[j];
                bex__tx_body__free_unpacked(body, NULL);
            }
            next = j + 1;
            break;
        }
        bex__tx__free_unpacked(tx, NULL);
    }
    if (p != NULL)
        bex__block_proposal__free_unpacked(p, NULL);
}

/*
 * Drops the block's txs from the pool, but for those the executor deferred
 * (their nonce came too early): they stay pending, to be proposed again.
 * Usually the pool holds every tx of the block and knows its sender, so the
 * block's txs are decoded here only when some receipt names a tx the pool
 * does not hold (its sender's nonce must be refreshed all the same).
 */
static void mempool_after_block(struct node *n, const struct ledger_applied *a, const uint8_t *proposal, size_t len)
{
    const struct exec_output *out = a->out;
    struct mempool_done *done;
    char (*senders)[MEMPOOL_SENDER_BYTES_MAX + 1];
    size_t count = out->receipt_count;
    bool unknown = false;

    if (len == 0 || count == 0)
        return;
    done = calloc(count, sizeof *done);
    senders = calloc(count, sizeof *senders);
    if (done == NULL || senders == NULL)
        goto done;
    for (size_t i = 0; i < count; i++) {
        const struct mempool_tx *t = mempool_get(n->mempool, out->receipts[i].tx_id);

        memcpy(done[i].id, out->receipts[i].tx_id, MEMPOOL_ID_BYTES);
        if (t != NULL) {
            /* Copied: mempool_commit() frees the pool's entry before it reads the sender. */
            snprintf(senders[i], sizeof senders[i], "%s", t->sender);
            done[i].sender = senders[i];
        } else {
            unknown = true;
        }
    }
    if (unknown)
        senders_from_block(done, senders, count, proposal, len);
    if (mempool_commit(n->mempool, done, count) != 0)
        LOG_W("mempool: cannot refresh nonces after a block");
done:
    free(done);
    free(senders);
}

/* Everything that follows a block landing in the store, whichever way it came. */
static void after_apply(struct node *n, const struct ledger_applied *a, const uint8_t *proposal, size_t len)
{
    n->committed_txs += a->out->receipt_count;
    metrics_counter_add(n->m.committed_txs, 0, a->out->receipt_count);
    metrics_counter_inc(n->m.blocks, 0);
    metrics_gauge_set(n->m.height, 0, (double)a->height);
    mempool_after_block(n, a, proposal, len);
    if (a->deferred_count > 0)
        LOG_I("ledger: block %" PRIu64 " deferred %zu txs whose nonce came early", a->height, a->deferred_count);
    mempool_unmark_below(n->mempool, a->height);
    node_rpc_committed(n, a);
    node_release_block(n, a);
    log_context(n);
    if (a->out->receipt_count > 0)
        LOG_D("ledger: block %" PRIu64 " with %zu txs", a->height, a->out->receipt_count);
}

static int apply_one(struct node *n, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES], const uint8_t *bytes,
                     size_t len, const uint8_t *cert, size_t cert_len)
{
    const struct ledger_applied *a;
    int rc = ledger_apply(n->ledger, &a, seq, digest, bytes, len, cert, cert_len);

    if (rc == -BEX_EMAPFULL && grow_map(n, true) == 0)
        rc = ledger_apply(n->ledger, &a, seq, digest, bytes, len, cert, cert_len);
    if (rc != 0) {
        if (rc == -BEX_EMAPFULL || rc == -BEX_ENOSPC || rc == -BEX_EIO || rc == -BEX_ECORRUPT)
            fatal_store(n, rc, "applying a block");
        else
            LOG_E("ledger: apply h=%" PRIu64 ": %s", seq, bex_strerror(rc));
        return rc;
    }
    after_apply(n, a, bytes, len);
    /* Grown ahead of need, so that a block rarely meets a full map. */
    if ((rc = grow_map(n, false)) != 0 && rc != -BEX_EMAPFULL)
        LOG_W("store: map: %s", bex_strerror(rc));
    return 0;
}

static void request_block(struct node *n, uint64_t from, uint32_t preferred)
{
    Bex__Envelope env = BEX__ENVELOPE__INIT;
    Bex__BlockRequest req = BEX__BLOCK_REQUEST__INIT;
    uint32_t peer = P2P_PEER_NONE;

    req.from_height = from;
    req.max_blocks = NODE_FETCH_BLOCKS_MAX;
    env.kind_case = BEX__ENVELOPE__KIND_BLOCK_REQUEST;
    env.block_request = &req;
    if (preferred < n->gen.nodes_n && p2p_peer_up(&n->p2p, preferred)) {
        peer = preferred;
    } else {
        /* Round-robin over the peers that are up and ahead of us. */
        for (uint32_t k = 0; k < n->gen.nodes_n; k++) {
            uint32_t i = (n->fetch_rr + k) % n->gen.nodes_n;

            if (i != n->self && p2p_peer_up(&n->p2p, i) && n->peer_height[i] >= from) {
                peer = i;
                break;
            }
        }
        n->fetch_rr++;
    }
    if (peer == P2P_PEER_NONE)
        return;
    send_env(n, peer, &env);
}

/*
 * Executes the next committed block and queues its writes for the
 * persister, to be committed with the votes queued meanwhile in one
 * transaction; finish_block() goes on once that is durable. Until then the
 * ledger reports the previous head and no other block is applied.
 */
static int start_block(struct node *n, const struct node_commit *c, const struct node_proposal *p)
{
    const struct store_block *blk;
    struct persist_batch *b;
    int rc = ledger_apply_begin(n->ledger, &blk, c->seq, c->digest, p ? p->bytes : NULL, p ? p->len : 0, c->cert,
                                c->cert_len);

    if (rc != 0) {
        LOG_E("ledger: apply h=%" PRIu64 ": %s", c->seq, bex_strerror(rc));
        return rc;
    }
    if ((b = persist_batch_new()) == NULL) {
        rc = -BEX_ENOMEM;
    } else if ((rc = persist_batch_block(b, blk)) != 0) {
        persist_batch_free(b);
    } else {
        rc = persist_submit(n->persist, &n->block_after, b);
    }
    if (rc != 0) {
        ledger_apply_abort(n->ledger);
        fatal_store(n, rc, "queueing a block");
        drop_held(n);
        return rc;
    }
    n->block_pending = true;
    return 0;
}

/* The pending block is durable: the ledger moves to it, and everything that follows a block happens. */
static void finish_block(struct node *n)
{
    struct node_commit *c = &n->commits[n->commits_head];
    struct node_proposal *p = NULL;
    const struct ledger_applied *a;
    int rc;

    BEX_ASSERT(n->block_pending && n->commits_n > 0);
    n->block_pending = false;
    if (memcmp(c->digest, zero_digest, PBFT_DIGEST_BYTES) != 0)
        p = prop_find(n, c->digest);
    if ((rc = ledger_apply_end(n->ledger, &a)) != 0) {
        fatal_store(n, rc, "reading after a block");
        return;
    }
    BEX_ASSERT(a->height == c->seq);
    after_apply(n, a, p ? p->bytes : NULL, p ? p->len : 0);
    /* Grown ahead of need, so that a block rarely meets a full map. */
    if ((rc = grow_map(n, false)) != 0 && rc != -BEX_EMAPFULL)
        LOG_W("store: map: %s", bex_strerror(rc));
    free(c->cert);
    n->commits_head = (n->commits_head + 1) % NODE_COMMITS_MAX;
    n->commits_n--;
    if (p != NULL)
        prop_drop(p);
    if ((rc = pbft_executed(n->pbft, ledger_height(n->ledger), ledger_root(n->ledger), n->acts)) != 0)
        LOG_W("consensus: executed %" PRIu64 ": %s", ledger_height(n->ledger), bex_strerror(rc));
    do_actions(n);
    apply_commits(n);
}

/*
 * Starts the next queued commit in height order when its proposal is at
 * hand and no block is being written (one block at a time: the next one
 * executes on the state the last one left).
 */
static void apply_commits(struct node *n)
{
    while (n->commits_n > 0 && !n->store_failed && !n->block_pending) {
        struct node_commit *c = &n->commits[n->commits_head];
        struct node_proposal *p = NULL;
        uint64_t h = ledger_height(n->ledger);

        if (c->seq <= h) {
            /* Already applied through state transfer. */
            free(c->cert);
            n->commits_head = (n->commits_head + 1) % NODE_COMMITS_MAX;
            n->commits_n--;
            continue;
        }
        if (c->seq != h + 1)
            break;
        if (memcmp(c->digest, zero_digest, PBFT_DIGEST_BYTES) != 0) {
            p = prop_find(n, c->digest);
            if (p == NULL) {
                uint64_t now = mono_ms(n);

                if (now - c->requested_ms >= PROPOSAL_RETRY_MS) {
                    c->requested_ms = now;
                    request_block(n, c->seq, P2P_PEER_NONE);
                }
                break;
            }
        }
        if (start_block(n, c, p) != 0)
            break;
    }
}

/* ---------------------------------------------------------------- state transfer */

static void serve_blocks(struct node *n, uint32_t peer, const Bex__BlockRequest *req)
{
    struct store_read *r;
    struct store_block_item items[NODE_FETCH_BLOCKS_MAX];
    Bex__BlockRecord *recs[NODE_FETCH_BLOCKS_MAX];
    Bex__BlockResponse resp = BEX__BLOCK_RESPONSE__INIT;
    Bex__Envelope env = BEX__ENVELOPE__INIT;
    size_t got = 0, k = 0, bytes = 0;
    uint32_t max = req->max_blocks;
    bool more;

    if (req->from_height == 0)
        return;
    if (max == 0 || max > NODE_FETCH_BLOCKS_MAX)
        max = NODE_FETCH_BLOCKS_MAX;
    if (store_read_begin(ledger_store(n->ledger), &r) != 0)
        return;
    if (store_scan_blocks(r, items, max, &got, &more, req->from_height, req->from_height + max - 1) != 0)
        got = 0;
    for (size_t i = 0; i < got; i++) {
        Bex__BlockRecord *rec = bex__block_record__unpack(NULL, items[i].record_len, items[i].record);

        if (rec == NULL)
            break;
        if (rec->cert == NULL)
            rec->cert = bex__commit_cert__unpack(NULL, items[i].cert_len, items[i].cert);
        bytes += items[i].record_len + items[i].cert_len;
        recs[k++] = rec;
        /* Stay well inside one frame. */
        if (bytes > n->cfg.limits.frame_bytes_max / 2)
            break;
    }
    resp.n_blocks = k;
    resp.blocks = recs;
    resp.tip = ledger_height(n->ledger);
    env.kind_case = BEX__ENVELOPE__KIND_BLOCK_RESPONSE;
    env.block_response = &resp;
    send_env(n, peer, &env);
    for (size_t i = 0; i < k; i++)
        bex__block_record__free_unpacked(recs[i], NULL);
    store_read_end(r);
}

/*
 * Applies fetched blocks after verifying each commit certificate against the
 * genesis node keys: a peer can withhold blocks but not forge one.
 */
static void on_blocks(struct node *n, uint32_t peer, const Bex__BlockResponse *resp)
{
    bool transferred = false;

    if (resp->tip > n->peer_height[peer])
        n->peer_height[peer] = resp->tip;
    /* A block is being written: fetched blocks are applied after it (the fetch is retried). */
    if (n->block_pending)
        return;
    for (size_t i = 0; i < resp->n_blocks && !n->store_failed; i++) {
        const Bex__BlockRecord *b = resp->blocks[i];
        struct pbft_commit_cert cert;
        uint8_t digest[PBFT_DIGEST_BYTES], cdigest[PBFT_DIGEST_BYTES], *cert_bytes = NULL;
        uint64_t seq, h = ledger_height(n->ledger);
        size_t cert_len = 0;
        int rc;

        if (b == NULL || b->height != h + 1)
            continue;
        if (b->proposal.len > 0)
            crypto_sha256(digest, b->proposal.data, b->proposal.len);
        else
            memset(digest, 0, sizeof digest);
        if (wire_cert_from_proto(&cert, &seq, cdigest, b->cert) != 0 || seq != b->height ||
            memcmp(cdigest, digest, PBFT_DIGEST_BYTES) != 0 ||
            (rc = pbft_verify_commit_cert(&n->pcfg, seq, digest, &cert)) != 0) {
            LOG_W_LIMITED("sync: peer %u sent block %" PRIu64 " without a valid commit certificate", peer, b->height);
            return;
        }
        if (wire_cert_encode(&cert_bytes, &cert_len, seq, digest, &cert) != 0)
            return;
        rc = apply_one(n, seq, digest, b->proposal.data, b->proposal.len, cert_bytes, cert_len);
        free(cert_bytes);
        if (rc != 0)
            return;
        if (seq <= pbft_committed_seq(n->pbft)) {
            if (pbft_executed(n->pbft, seq, ledger_root(n->ledger), n->acts) == 0)
                do_actions(n);
        } else {
            transferred = true;
        }
    }
    if (transferred) {
        int rc = pbft_transferred(n->pbft, ledger_height(n->ledger), ledger_root(n->ledger), n->acts);

        if (rc != 0)
            LOG_D("consensus: transferred %" PRIu64 ": %s", ledger_height(n->ledger), bex_strerror(rc));
        do_actions(n);
    }
    prop_gc(n);
    apply_commits(n);
    if (ledger_height(n->ledger) < n->fetch_target || ledger_height(n->ledger) < resp->tip) {
        n->fetch_sent_ms = mono_ms(n);
        request_block(n, ledger_height(n->ledger) + 1, peer);
    }
}

static void update_catchup(struct node *n)
{
    uint64_t best = 0, h = ledger_height(n->ledger);

    for (uint32_t i = 0; i < n->gen.nodes_n; i++) {
        if (i != n->self && p2p_peer_up(&n->p2p, i) && n->peer_height[i] > best)
            best = n->peer_height[i];
    }
    /*
     * Far behind: fetch now. One block behind is normal in flight, but if it
     * lasts (this replica sits in a view change the others did not join, or
     * missed a commit), fetch that block too.
     */
    if (best <= h) {
        n->behind_since_ms = 0;
    } else if (n->behind_since_ms == 0) {
        n->behind_since_ms = mono_ms(n);
    } else if (mono_ms(n) - n->behind_since_ms >= 2 * FETCH_RETRY_MS && best > n->fetch_target) {
        n->fetch_target = best;
    }
    if (best > n->fetch_target && best > h + 1)
        n->fetch_target = best;
    n->catching_up = n->fetch_target > h + 1;
}

/* ---------------------------------------------------------------- network input */

static void on_vote(struct node *n, uint32_t peer, const struct pbft_msg *m)
{
    if (m->type == PBFT_MSG_PRE_PREPARE) {
        struct node_proposal *p = prop_find(n, m->vote.digest);

        if (p == NULL || !p->valid) {
            /* Held until its proposal arrives and checks out. */
            if (n->held_n < NODE_HELD_MAX)
                n->held[n->held_n++] = m->vote;
            if (p == NULL) {
                Bex__Envelope env = BEX__ENVELOPE__INIT;

                env.kind_case = BEX__ENVELOPE__KIND_PROPOSAL_REQUEST;
                env.proposal_request = (ProtobufCBinaryData){PBFT_DIGEST_BYTES, (uint8_t *)m->vote.digest};
                send_env(n, peer, &env);
            }
            return;
        }
    }
    if (pbft_step(n->pbft, m, n->acts) != 0)
        LOG_D("consensus: dropped a message from %u", peer);
    do_actions(n);
}

/*
 * Whether the pool may keep this tx (mempool_may_admit()), judged from the
 * sender and nonce of its body before its signatures are checked: under
 * overload, a tx the pool would refuse costs no verification. Bytes that do
 * not decode are left to txcheck, which says what is wrong with them.
 */
static bool pool_may_admit(struct node *n, const uint8_t *tx, size_t len)
{
    Bex__TxBody *body = NULL;
    Bex__Tx *t;
    bool ok = true;

    if (!mempool_crowded(n->mempool, len))
        return true;
    if ((t = bex__tx__unpack(NULL, len, tx)) == NULL)
        return true;
    if ((body = bex__tx_body__unpack(NULL, t->body.len, t->body.data)) != NULL) {
        ok = mempool_may_admit(n->mempool, body->sender, body->nonce, len);
        bex__tx_body__free_unpacked(body, NULL);
    }
    bex__tx__free_unpacked(t, NULL);
    return ok;
}

static void on_tx(struct node *n, const uint8_t *bytes, size_t len)
{
    struct txcheck_result res;
    char reason[128];

    if (!pool_may_admit(n, bytes, len)) {
        LOG_D("mempool: gossiped tx not added: pool full");
        return;
    }
    if (txcheck_tx(n->txcheck, &res, bytes, len) != 0)
        return;
    if (mempool_add(n->mempool, reason, sizeof reason, res.id, res.sender, res.nonce, bytes, len, mono_ms(n)) != 0)
        LOG_D("mempool: gossiped tx not added: %s", reason);
}

static void on_frame(uint32_t peer, const uint8_t *bytes, size_t len, void *ud)
{
    struct node *n = ud;
    Bex__Envelope *env;
    struct pbft_msg m;
    const uint8_t *payload;
    size_t payload_len;
    uint32_t field;

    if (n->stopping || peer >= n->gen.nodes_n)
        return;
#ifdef BEX_BYZANTINE
    node_byz_frame_in(n, peer, bytes, len);
#endif
    /* Txs and proposals are used as the bytes they arrived in: no decode and re-encode here. */
    if (frame_field(&field, &payload, &payload_len, bytes, len)) {
        if (field == BEX__ENVELOPE__KIND_TX) {
            on_tx(n, payload, payload_len);
            return;
        }
        if (field == BEX__ENVELOPE__KIND_PROPOSAL) {
            on_proposal(n, peer, payload, payload_len);
            return;
        }
    }
    env = bex__envelope__unpack(NULL, len, bytes);
    if (env == NULL) {
        /* An authenticated peer that sends bytes no honest node encodes is faulty: drop its link. */
        p2p_disconnect(&n->p2p, peer, "sent a frame that is not an Envelope");
        return;
    }
    switch (env->kind_case) {
    case BEX__ENVELOPE__KIND_HELLO:
        if (strcmp(env->hello->chain_id, n->gen.chain_id) != 0) {
            LOG_W_LIMITED("p2p: peer %u is on chain %.64s", peer, env->hello->chain_id);
            break;
        }
        n->peer_height[peer] = env->hello->height;
        n->peer_view[peer] = env->hello->view;
        update_catchup(n);
        break;
    case BEX__ENVELOPE__KIND_TX: {
        /* An Envelope frame_field() did not take apart: encode the Tx again. */
        size_t tl = bex__tx__get_packed_size(env->tx);
        uint8_t *tb = malloc(tl ? tl : 1);

        if (tb != NULL) {
            bex__tx__pack(env->tx, tb);
            on_tx(n, tb, tl);
            free(tb);
        }
        break;
    }
    case BEX__ENVELOPE__KIND_VOTE:
    case BEX__ENVELOPE__KIND_VIEW_CHANGE:
    case BEX__ENVELOPE__KIND_NEW_VIEW:
        if (wire_from_envelope(&m, n->scratch, env) == 0)
            on_vote(n, peer, &m);
        else
            LOG_D("p2p: peer %u sent a malformed consensus message", peer);
        break;
    case BEX__ENVELOPE__KIND_PROPOSAL: {
        size_t pl = bex__block_proposal__get_packed_size(env->proposal);
        uint8_t *pb = malloc(pl ? pl : 1);

        if (pb != NULL) {
            bex__block_proposal__pack(env->proposal, pb);
            on_proposal(n, peer, pb, pl);
            free(pb);
        }
        break;
    }
    case BEX__ENVELOPE__KIND_PROPOSAL_REQUEST:
        if (env->proposal_request.len == PBFT_DIGEST_BYTES) {
            struct node_proposal *p = prop_find(n, env->proposal_request.data);

            if (p != NULL)
                send_field(n, peer, BEX__ENVELOPE__KIND_PROPOSAL, p->bytes, p->len);
        }
        break;
    case BEX__ENVELOPE__KIND_BLOCK_REQUEST:
        serve_blocks(n, peer, env->block_request);
        break;
    case BEX__ENVELOPE__KIND_BLOCK_RESPONSE:
        on_blocks(n, peer, env->block_response);
        break;
    default:
        LOG_D("p2p: peer %u sent an empty envelope", peer);
        break;
    }
    bex__envelope__free_unpacked(env, NULL);
}

static void on_peer(uint32_t peer, bool up, void *ud)
{
    struct node *n = ud;

    LOG_I("p2p: peer %u (%s) %s", peer, n->gen.nodes[peer].agency, up ? "up" : "down");
    metrics_gauge_set(n->m.peers, 0, (double)p2p_peer_count(&n->p2p));
    if (up)
        send_hello(n, peer);
}

static void on_p2p_log(int level, const char *msg, void *ud)
{
    static struct log_limit warn_limit = {.burst = 100};

    (void)ud;
    /*
     * A peer failing handshakes or sending garbage would otherwise write a
     * line per connection; each line is a distinct event, so the burst is
     * large enough to show a probe in full.
     */
    if (level == P2P_LOG_WARN)
        log_write_limited(&warn_limit, LOG_WARN, "p2p: %s", msg);
    else
        log_write(LOG_INFO, "p2p: %s", msg);
}

/* ---------------------------------------------------------------- submit */

/* Whether tx id already has a receipt in the committed state. */
static bool has_receipt(struct node *n, const uint8_t id[CRYPTO_HASH_BYTES])
{
    struct store_read *r;
    const uint8_t *v;
    size_t len;
    bool found;

    if (store_read_begin(ledger_store(n->ledger), &r) != 0)
        return false;
    found = store_get_receipt(r, &v, &len, id) == 0;
    store_read_end(r);
    return found;
}

int node_submit(struct node *n, uint8_t id[CRYPTO_HASH_BYTES], char *reason, size_t reason_size, const uint8_t *tx,
                size_t len)
{
    struct txcheck_result res;
    int rc;

    if (n->store_failed) {
        snprintf(reason, reason_size, "the node's store refuses writes");
        return -BEX_ESTATE;
    }
    if (!pool_may_admit(n, tx, len)) {
        snprintf(reason, reason_size, "pool full: %zu txs, %zu bytes pending", mempool_count(n->mempool),
                 mempool_bytes(n->mempool));
        return -BEX_EFULL;
    }
    rc = txcheck_tx(n->txcheck, &res, tx, len);
    if (res.has_id)
        memcpy(id, res.id, CRYPTO_HASH_BYTES);
    if (rc != 0) {
        snprintf(reason, reason_size, "%s", res.reason);
        return rc;
    }
    rc = mempool_add(n->mempool, reason, reason_size, res.id, res.sender, res.nonce, tx, len, mono_ms(n));
    if (rc == -BEX_EEXIST) {
        /*
         * Already pending: idempotent, and relayed again. A client resubmits
         * a tx that does not commit, and the peers may have lost it (a
         * restarted primary starts with an empty pool).
         */
        send_field(n, P2P_PEER_NONE, BEX__ENVELOPE__KIND_TX, tx, len);
        return 0;
    }
    if (rc == -BEX_ENONCE && has_receipt(n, res.id))
        return 0; /* already committed: idempotent, tx.get has its receipt */
    if (rc != 0)
        return rc;
    send_field(n, P2P_PEER_NONE, BEX__ENVELOPE__KIND_TX, tx, len);
    metrics_gauge_set(n->m.mempool_txs, 0, (double)mempool_count(n->mempool));
    return 0;
}

int node_next_nonce(struct node *n, uint64_t *next, uint64_t *last, const char *agency)
{
    uint64_t top;
    int rc = ledger_last_nonce(n->ledger, last, agency);

    if (rc != 0)
        return rc;
    top = mempool_sender_top(n->mempool, agency);
    *next = (top > *last ? top : *last) + 1;
    return 0;
}

/* ---------------------------------------------------------------- tick */

/* Adds to counter f (label i) what total gained since the counter last caught up with it. */
static void counter_catch_up(struct metrics_family *f, size_t i, uint64_t total)
{
    uint64_t have = metrics_counter_value(f, i);

    if (total > have)
        metrics_counter_add(f, i, total - have);
}

/*
 * Copies the engine's drop counters and the links dropped by reason (over
 * every peer and the not-yet-identified inbound links) into /metrics: how
 * an operator, and the byzantine tests, see what faulty peers sent. The
 * persister's counts too: how well the disk keeps up.
 */
static void refresh_fault_metrics(struct node *n)
{
    const struct pbft_stats *ps = pbft_stats(n->pbft);
    const uint64_t drops[] = {ps->dropped_malformed,     ps->dropped_non_member,  ps->dropped_bad_sig,
                              ps->dropped_wrong_primary, ps->dropped_old_view,    ps->dropped_future_full,
                              ps->dropped_window,        ps->dropped_conflict,    ps->dropped_bad_view_change,
                              ps->dropped_bad_new_view,  ps->duplicates};
    struct p2p_stats st;
    uint64_t commits, batches;

    for (size_t i = 0; i < BEX_ARRAY_LEN(drops); i++)
        counter_catch_up(n->m.pbft_dropped, i, drops[i]);
    persist_counts(n->persist, &commits, &batches);
    counter_catch_up(n->m.store_commits, 0, commits);
    counter_catch_up(n->m.store_batches, 0, batches);
    metrics_gauge_set(n->m.sends_held, 0, (double)n->sends_n);
    p2p_stats(&n->p2p, &st);
    for (size_t r = 0; r < P2P_REASON_COUNT; r++) {
        uint64_t total = st.unknown.disconnects[r];

        for (uint32_t i = 0; i < P2P_PEERS_MAX; i++)
            total += st.peer[i].disconnects[r];
        counter_catch_up(n->m.p2p_disconnects, r, total);
    }
}

/*
 * Whether f+1 peers (one of them honest) are in a view above ours: a replica
 * restarted, or left out of a view change, then lets its request timer run,
 * so that it asks for the view change and the others answer with their
 * NEW-VIEW, instead of waiting in a view nobody uses any more.
 */
static bool behind_in_view(const struct node *n)
{
    uint32_t above = 0;

    for (uint32_t i = 0; i < n->gen.nodes_n; i++) {
        if (i != n->self && p2p_peer_up(&n->p2p, i) && n->peer_view[i] > pbft_view(n->pbft))
            above++;
    }
    return above >= n->gen.f + 1;
}

static void set_traffic_metrics(struct node *n)
{
    uint64_t in, out;

    p2p_traffic(&n->p2p, &in, &out);
    metrics_gauge_set(n->m.bytes_in, 0, (double)in);
    metrics_gauge_set(n->m.bytes_out, 0, (double)out);
}

/*
 * Relays again every sender's next tx that has waited RELAY_STUCK_MS in no
 * proposal, with the run of txs after it: they hold back all the sender's
 * later txs, and the primary may have lost them (a full pool or send queue
 * refused the gossip, a new primary never got it, a restarted node starts
 * empty). Bounded per round; peers that hold them already drop them as
 * duplicates without checking their signatures again.
 */
static void relay_stuck(struct node *n, uint64_t now_ms)
{
    const struct mempool_tx *heads[RELAY_STUCK_MAX];
    size_t count = mempool_stuck_heads(n->mempool, heads, RELAY_STUCK_MAX, RELAY_STUCK_RUN, now_ms, RELAY_STUCK_MS);

    for (size_t i = 0; i < count; i++)
        send_field(n, P2P_PEER_NONE, BEX__ENVELOPE__KIND_TX, heads[i]->bytes, heads[i]->len);
}

static void on_tick(uv_timer_t *t)
{
    struct node *n = t->data;
    uint64_t now = mono_ms(n), wall = node_now_ms(n);
    int rc;

    if (n->stopping)
        return;
    pbft_set_pending(n->pbft, mempool_ready(n->mempool) || behind_in_view(n));
    /*
     * After a pause (SIGSTOP, a starved machine) the timer fires before the
     * sockets are read: let the loop read what the peers sent first, or the
     * request timer would start a view change the others never join. The
     * engine learns of the pause, so that what it reads meanwhile starts no
     * timer at the stale time of its last tick (pbft_pause()).
     */
    if (now - n->last_tick_ms <= 5 * NODE_TICK_MS) {
        if ((rc = pbft_tick(n->pbft, now, n->acts)) == 0)
            do_actions(n);
    } else if ((rc = pbft_pause(n->pbft, now)) != 0) {
        LOG_W("consensus: pause of %" PRIu64 " ms: %s", now - n->last_tick_ms, bex_strerror(rc));
    }
    n->last_tick_ms = now;
    maybe_propose(n, wall);
    apply_commits(n);
    update_catchup(n);
    if (n->fetch_target > ledger_height(n->ledger) && now - n->fetch_sent_ms >= FETCH_RETRY_MS) {
        n->fetch_sent_ms = now;
        request_block(n, ledger_height(n->ledger) + 1, P2P_PEER_NONE);
    }
    if (now - n->last_hello_ms >= HELLO_EVERY_MS) {
        n->last_hello_ms = now;
        send_hello(n, P2P_PEER_NONE);
        (void)mempool_evict_older_than(n->mempool, now, MEMPOOL_TTL_MS);
        relay_stuck(n, now);
        prop_gc(n);
        refresh_fault_metrics(n);
        if (++n->sweeps % 5 == 0)
            node_release_sweep(n);
    }
#ifdef BEX_BYZANTINE
    node_byz_tick(n, now);
#endif
    node_rpc_expire(n, now);
    metrics_gauge_set(n->m.view, 0, (double)pbft_view(n->pbft));
    metrics_gauge_set(n->m.mempool_txs, 0, (double)mempool_count(n->mempool));
    metrics_gauge_set(n->m.mempool_bytes, 0, (double)mempool_bytes(n->mempool));
    set_traffic_metrics(n);
}

/* ---------------------------------------------------------------- lifecycle */

static int load_secret(struct crypto_seckey *sk, struct crypto_pubkey *pk, const char *path, const char *pass,
                       const char *what, char *err, size_t err_size)
{
    char kerr[256];
    int rc = keystore_read(sk, pk, path, pass, kerr, sizeof kerr);

    if (rc != 0)
        snprintf(err, err_size, "%s: %s", what, kerr);
    return rc;
}

static int open_keys(struct node *n, char *err, size_t err_size)
{
    char pass[1024], perr[256];
    struct crypto_pubkey pk;
    int rc;

    if (n->cfg.passphrase_file[0] != '\0')
        rc = keystore_passphrase_file(pass, sizeof pass, n->cfg.passphrase_file, perr, sizeof perr);
    else
        rc = keystore_passphrase(pass, sizeof pass, "passphrase for the node keys: ", false, perr, sizeof perr);
    if (rc != 0) {
        snprintf(err, err_size, "passphrase: %s", perr);
        return rc;
    }
    if ((rc = load_secret(&n->node_sk, &n->node_pk, n->cfg.node_key, pass, "node_key", err, err_size)) != 0)
        goto done;
    if (memcmp(n->node_pk.b, n->gen.nodes[n->self].node_key.b, CRYPTO_PUB_BYTES) != 0) {
        snprintf(err, err_size, "node_key: %s is not the key genesis lists for node %u", n->cfg.node_key, n->self);
        rc = -BEX_EINVAL;
        goto done;
    }
    if (n->cfg.enc_key[0] != '\0') {
        if ((rc = load_secret(&n->enc_sk, &pk, n->cfg.enc_key, pass, "enc_key", err, err_size)) != 0)
            goto done;
        if (memcmp(pk.b, n->agency->enc_key.b, CRYPTO_PUB_BYTES) != 0) {
            snprintf(err, err_size, "enc_key: %s is not the encryption key of %s", n->cfg.enc_key, n->agency->id);
            rc = -BEX_EINVAL;
            goto done;
        }
        n->has_enc = true;
    }
    if ((rc = tls_key_load(&n->tls, n->cfg.tls_key, pass)) != 0) {
        snprintf(err, err_size, "tls_key: cannot load %s: %s", n->cfg.tls_key, bex_strerror(rc));
        goto done;
    }
    {
        uint8_t raw[TLS_PUBKEY_BYTES];

        tls_pubkey_raw(n->tls, raw);
        if (memcmp(raw, n->gen.nodes[n->self].tls_key, TLS_PUBKEY_BYTES) != 0) {
            snprintf(err, err_size, "tls_key: %s is not the TLS key genesis lists for node %u", n->cfg.tls_key,
                     n->self);
            rc = -BEX_EINVAL;
        }
    }
done:
    crypto_wipe(pass, sizeof pass);
    return rc;
}

static int open_metrics(struct node *n)
{
    static const double sizes[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static const char *reasons[] = {"ELIMIT", "EDECODE", "ECHAIN", "EUNKNOWN", "ESIG", "ENONCE", "EFULL", "OTHER"};
    static const char *refusals[] = {[REFUSED_CLOCK] = "clock", [REFUSED_INVALID] = "invalid"};
    /* In the order of refresh_fault_metrics(). */
    static const char *drops[] = {"malformed", "non_member", "bad_sig",         "wrong_primary",
                                  "old_view",  "future_full", "window",         "conflict",
                                  "bad_view_change", "bad_new_view", "duplicate"};
    const char *links[P2P_REASON_COUNT];
    struct {
        struct metrics_family **f;
        struct metrics_desc d;
    } fams[] = {
        {&n->m.height, {METRICS_GAUGE, "bex_height", "Height of the last executed block.", NULL, NULL, 0, NULL, 0}},
        {&n->m.view, {METRICS_GAUGE, "bex_view", "Current PBFT view.", NULL, NULL, 0, NULL, 0}},
        {&n->m.view_changes,
         {METRICS_COUNTER, "bex_view_changes_total", "View changes started.", NULL, NULL, 0, NULL, 0}},
        {&n->m.committed_txs,
         {METRICS_COUNTER, "bex_committed_txs_total", "Transactions committed.", NULL, NULL, 0, NULL, 0}},
        {&n->m.blocks, {METRICS_COUNTER, "bex_blocks_total", "Blocks applied.", NULL, NULL, 0, NULL, 0}},
        {&n->m.mempool_txs, {METRICS_GAUGE, "bex_mempool_txs", "Transactions in the mempool.", NULL, NULL, 0, NULL, 0}},
        {&n->m.mempool_bytes, {METRICS_GAUGE, "bex_mempool_bytes", "Bytes in the mempool.", NULL, NULL, 0, NULL, 0}},
        {&n->m.peers, {METRICS_GAUGE, "bex_peers_connected", "Peers connected.", NULL, NULL, 0, NULL, 0}},
        {&n->m.bytes_in, {METRICS_GAUGE, "bex_p2p_bytes_in", "Bytes received from peers.", NULL, NULL, 0, NULL, 0}},
        {&n->m.bytes_out, {METRICS_GAUGE, "bex_p2p_bytes_out", "Bytes sent to peers.", NULL, NULL, 0, NULL, 0}},
        {&n->m.rejected,
         {METRICS_COUNTER, "bex_rejected_txs_total", "Transactions rejected, by reason.", "reason", reasons,
          BEX_ARRAY_LEN(reasons), NULL, 0}},
        {&n->m.commit_latency,
         {METRICS_HISTOGRAM, "bex_commit_latency_seconds", "Submit to commit at this node.", NULL, NULL, 0, sizes,
          BEX_ARRAY_LEN(sizes)}},
        {&n->m.proposals_refused,
         {METRICS_COUNTER, "bex_proposals_refused_total",
          "Block proposals refused, by reason (clock: time too far from this node's clock).", "reason", refusals,
          BEX_ARRAY_LEN(refusals), NULL, 0}},
        {&n->m.pbft_dropped,
         {METRICS_COUNTER, "bex_pbft_dropped_total", "Consensus messages the engine refused, by reason.", "reason",
          drops, BEX_ARRAY_LEN(drops), NULL, 0}},
        {&n->m.p2p_disconnects,
         {METRICS_COUNTER, "bex_p2p_disconnects_total", "Peer links dropped, by reason.", "reason", links,
          BEX_ARRAY_LEN(links), NULL, 0}},
        {&n->m.store_commits,
         {METRICS_COUNTER, "bex_store_commits_total",
          "Write transactions of the persister, each one fdatasync for the batches it carried.", NULL, NULL, 0,
          NULL, 0}},
        {&n->m.store_batches,
         {METRICS_COUNTER, "bex_store_batches_total", "Batches of votes or blocks made durable by the persister.",
          NULL, NULL, 0, NULL, 0}},
        {&n->m.sends_held,
         {METRICS_GAUGE, "bex_consensus_sends_held", "Consensus messages waiting for their votes to be durable.",
          NULL, NULL, 0, NULL, 0}},
    };
    int rc;

    for (int r = 0; r < P2P_REASON_COUNT; r++)
        links[r] = p2p_reason_name(r);
    if ((rc = metrics_new(&n->metrics)) != 0)
        return rc;
    for (size_t i = 0; i < BEX_ARRAY_LEN(fams); i++) {
        if ((rc = metrics_register(n->metrics, fams[i].f, &fams[i].d)) != 0)
            return rc;
    }
    return 0;
}

static int open_engine(struct node *n, char *err, size_t err_size)
{
    struct restore_ctx rctx = {n, 0, 0};
    int rc;

    pbft_config_default(&n->pcfg, n->gen.nodes_n, n->self);
    n->pcfg.checkpoint_interval = n->gen.consensus.checkpoint_interval;
    n->pcfg.window = n->gen.consensus.window;
    n->pcfg.view_timeout_ms = n->gen.consensus.view_timeout_ms;
    n->pcfg.crypto = (struct pbft_crypto){pbft_sign, pbft_verify, pbft_hash, n};
    if ((rc = pbft_config_check(&n->pcfg)) != 0) {
        snprintf(err, err_size, "genesis consensus parameters: window %u must be a multiple of checkpoint_interval "
                                "%u and at most %u",
                 n->pcfg.window, n->pcfg.checkpoint_interval, PBFT_WINDOW_MAX);
        return rc;
    }
    n->pbft = calloc(1, pbft_size());
    n->acts = calloc(1, sizeof *n->acts);
    n->scratch = calloc(1, sizeof *n->scratch);
    if (n->pbft == NULL || n->acts == NULL || n->scratch == NULL)
        return -BEX_ENOMEM;
    if ((rc = pbft_init(n->pbft, &n->pcfg)) != 0)
        return rc;
    if ((n->sends = calloc(NODE_SENDS_HELD_MAX, sizeof *n->sends)) == NULL)
        return -BEX_ENOMEM;
    if ((rc = uv_async_init(n->loop, &n->durable, on_durable)) != 0) {
        snprintf(err, err_size, "libuv: %s", uv_strerror(rc));
        return -BEX_EIO;
    }
    n->durable.data = n;
    n->durable_open = true;
    if ((rc = persist_new(&n->persist, ledger_store(n->ledger), wake_durable, &n->durable)) != 0) {
        snprintf(err, err_size, "starting the vote writer: %s", bex_strerror(rc));
        return rc;
    }
    if ((rc = store_pbft_iter(ledger_store(n->ledger), restore_one, &rctx)) != 0) {
        snprintf(err, err_size, "reading persisted votes: %s", bex_strerror(rc));
        return rc;
    }
    if (rctx.restored + rctx.refused > 0)
        LOG_I("consensus: restored %d persisted messages (%d refused)", rctx.restored, rctx.refused);
    return pbft_start(n->pbft, mono_ms(n), ledger_height(n->ledger), ledger_root(n->ledger), n->acts);
}

static int open_p2p(struct node *n, char *err, size_t err_size)
{
    struct p2p_config pc;
    char listen[CONFIG_ADDRESS_MAX + 8], addrs[P2P_PEERS_MAX][CONFIG_ADDRESS_MAX + 8];
    int rc;

    p2p_config_defaults(&pc);
    if (config_format_address(listen, sizeof listen, &n->cfg.listen) != 0)
        return -BEX_EINVAL;
    pc.self = n->self;
    pc.listen = listen;
    pc.key = n->tls;
    for (uint32_t i = 0; i < n->gen.nodes_n; i++) {
        if (config_format_address(addrs[i], sizeof addrs[i], &n->gen.nodes[i].address) != 0)
            return -BEX_EINVAL;
        pc.peers[i].index = i;
        pc.peers[i].addr = addrs[i];
        memcpy(pc.peers[i].pubkey, n->gen.nodes[i].tls_key, TLS_PUBKEY_BYTES);
    }
    pc.peers_len = n->gen.nodes_n;
    pc.frame_bytes_max = n->cfg.limits.frame_bytes_max;
    pc.send_queue_bytes_max = n->cfg.limits.peer_queue_bytes_max;
    pc.reconnect_min_ms = 100;
    pc.reconnect_max_ms = 5000;
    pc.on_frame = on_frame;
    pc.on_peer = on_peer;
    pc.on_log = on_p2p_log;
    pc.ud = n;
    rc = p2p_init(&n->p2p, n->loop, &pc);
    n->p2p_open = true;
    if (rc != 0)
        snprintf(err, err_size, "p2p: %s", n->p2p.err);
    return rc;
}

static int open_rpc(struct node *n, char *err, size_t err_size)
{
    struct rpc_config rc_cfg;
    int rc;

    rpc_config_default(&rc_cfg);
    rc_cfg.host = n->cfg.rpc.host;
    rc_cfg.port = n->cfg.rpc.port;
    rc_cfg.body_bytes_max = n->cfg.limits.rpc_body_bytes_max;
    rc_cfg.connections_max = n->cfg.limits.rpc_conns_max;
    rc_cfg.metrics = n->metrics;
    rc = rpc_init(&n->rpc, n->loop, &rc_cfg);
    n->rpc_open = true;
    if (rc != 0) {
        snprintf(err, err_size, "rpc: %s", rpc_errmsg(&n->rpc));
        return rc;
    }
    if ((rc = node_rpc_register(n)) != 0)
        snprintf(err, err_size, "rpc: registering methods: %s", bex_strerror(rc));
    return rc;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct node *n = s->data;

    LOG_I("node: signal %d, stopping", signum);
    n->stopping = true;
    uv_stop(n->loop);
}

int node_open(struct node *n, uv_loop_t *loop, const char *config_path, char *err, size_t err_size)
{
    struct store_options so = {0};
    struct txcheck_config tc = {0};
    struct mempool_config mc = {0};
    char cerr[512];
    int rc, ai;

    memset(n, 0, sizeof *n);
    n->loop = loop;
    snprintf(n->cfg_path, sizeof n->cfg_path, "%s", config_path);
    if ((rc = config_load_node(&n->cfg, config_path, cerr, sizeof cerr)) != 0 ||
        (rc = config_load_genesis(&n->gen, n->cfg.genesis, cerr, sizeof cerr)) != 0 ||
        (rc = config_check_node_genesis(&n->cfg, &n->gen, config_path, cerr, sizeof cerr)) != 0) {
        snprintf(err, err_size, "%s", cerr);
        return rc;
    }
    n->self = n->cfg.node_index;
    ai = config_genesis_find_agency(&n->gen, n->gen.nodes[n->self].agency);
    BEX_ASSERT(ai >= 0);
    n->agency = &n->gen.agencies[ai];
    log_init((enum log_level)n->cfg.log_level, (int)n->self);
    crypto_sha256(n->chain_tag, n->gen.chain_id, strlen(n->gen.chain_id));
    if ((rc = crypto_init()) != 0) {
        snprintf(err, err_size, "crypto: %s", bex_strerror(rc));
        return rc;
    }
    if ((rc = open_keys(n, err, err_size)) != 0)
        return rc;
    so.map_bytes = (size_t)n->cfg.map_size_mb << 20;
    so.trim_ms = STORE_TRIM_MS;
    so.trim_above_bytes = STORE_TRIM_ABOVE;
    if ((rc = ledger_open(&n->ledger, n->cfg.data_dir, &so, &n->gen, err, err_size)) != 0)
        return rc;
    tc.chain_id = n->gen.chain_id;
    tc.tx_bytes_max = n->cfg.limits.tx_bytes_max;
    tc.args_bytes_max = n->cfg.limits.tx_bytes_max;
    tc.nonce_ahead_max = 100000;
    tc.cache_entries = (size_t)n->cfg.limits.mempool_txs * 2;
    if ((rc = crypto_random((uint8_t *)&tc.hash_seed, sizeof tc.hash_seed)) != 0) {
        snprintf(err, err_size, "crypto: no randomness");
        return rc;
    }
    tc.crypto = (struct txcheck_crypto){tc_sha256, tc_verify};
    tc.keys = tc_keys;
    tc.last_nonce = last_nonce;
    tc.user = n;
    if ((rc = txcheck_new(&n->txcheck, &tc)) != 0) {
        snprintf(err, err_size, "txcheck: %s", bex_strerror(rc));
        return rc;
    }
    mc.count_max = n->cfg.limits.mempool_txs;
    mc.bytes_max = n->cfg.limits.mempool_bytes;
    /*
     * Each agency gets an equal share of the pool. Every node then holds
     * every agency's pending txs: a pool full of some agencies' txs would
     * drop the others' gossip, and the primary could not propose past the gap.
     */
    mc.sender_count_max = mc.count_max / (n->gen.agencies_n > 0 ? n->gen.agencies_n : 1);
    if (mc.sender_count_max == 0)
        mc.sender_count_max = 1;
    mc.sender_bytes_max = mc.bytes_max / (n->gen.agencies_n > 0 ? n->gen.agencies_n : 1);
    if (mc.sender_bytes_max < n->cfg.limits.tx_bytes_max)
        mc.sender_bytes_max = n->cfg.limits.tx_bytes_max;
    mc.senders_max = 1024;
    mc.hash_seed = tc.hash_seed ^ 0x9e3779b97f4a7c15ull;
    mc.last_nonce = last_nonce;
    mc.user = n;
    if ((rc = mempool_new(&n->mempool, &mc)) != 0) {
        snprintf(err, err_size, "mempool: %s", bex_strerror(rc));
        return rc;
    }
    if ((rc = open_metrics(n)) != 0) {
        snprintf(err, err_size, "metrics: %s", bex_strerror(rc));
        return rc;
    }
    if ((rc = open_engine(n, err, err_size)) != 0) {
        if (err[0] == '\0')
            snprintf(err, err_size, "consensus: %s", bex_strerror(rc));
        return rc;
    }
    if ((rc = open_p2p(n, err, err_size)) != 0 || (rc = open_rpc(n, err, err_size)) != 0)
        return rc;
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_signal_init(loop, &n->sigint);
    uv_signal_init(loop, &n->sigterm);
    n->sigint.data = n->sigterm.data = n;
    n->handles_open = true;
    uv_timer_start(&n->tick, on_tick, NODE_TICK_MS, NODE_TICK_MS);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
#ifdef BEX_BYZANTINE
    if ((rc = node_byz_open(n, err, err_size)) != 0)
        return rc;
#endif
    do_actions(n);
    log_context(n);
    {
        char root[65];

        hex32(root, ledger_root(n->ledger));
        LOG_I("node: %s node %u up on chain %s at height %" PRIu64 " (state root %.16s), p2p port %u, rpc %s:%u",
              n->agency->id, n->self, n->gen.chain_id, ledger_height(n->ledger), root, p2p_port(&n->p2p),
              n->cfg.rpc.host, rpc_port(&n->rpc));
    }
    return 0;
}

int node_run(struct node *n)
{
    uv_run(n->loop, UV_RUN_DEFAULT);
    return n->exit_code;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

void node_close(struct node *n)
{
    /* The writer first: it may wake the loop until it has stopped. Its unfinished batches were never sent. */
    persist_free(n->persist);
    n->persist = NULL;
    if (n->durable_open) {
        uv_close((uv_handle_t *)&n->durable, close_cb);
        n->durable_open = false;
    }
    if (n->handles_open) {
        uv_close((uv_handle_t *)&n->tick, close_cb);
        uv_close((uv_handle_t *)&n->sigint, close_cb);
        uv_close((uv_handle_t *)&n->sigterm, close_cb);
        n->handles_open = false;
    }
    if (n->rpc_open) {
        rpc_close(&n->rpc);
        while (!rpc_closed(&n->rpc))
            uv_run(n->loop, UV_RUN_ONCE);
    }
    if (n->p2p_open) {
        p2p_close(&n->p2p, NULL);
        n->p2p_open = false;
    }
    uv_run(n->loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < n->commits_n; i++)
        free(n->commits[(n->commits_head + i) % NODE_COMMITS_MAX].cert);
    for (size_t i = 0; i < NODE_PROPOSALS_MAX; i++)
        free(n->props[i].bytes);
    if (n->pbft != NULL)
        pbft_close(n->pbft);
    free(n->pbft);
    free(n->acts);
    free(n->scratch);
    if (n->sends != NULL)
        drop_held(n);
    free(n->sends);
    mempool_free(n->mempool);
    txcheck_free(n->txcheck);
    ledger_close(n->ledger);
    metrics_free(n->metrics);
    tls_key_free(n->tls);
#ifdef BEX_BYZANTINE
    node_byz_close();
#endif
    crypto_wipe(&n->node_sk, sizeof n->node_sk);
    crypto_wipe(&n->enc_sk, sizeof n->enc_sk);
    config_genesis_close(&n->gen);
    config_node_close(&n->cfg);
}
