#include "ledger.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bex.pb-c.h"
#include "crypto.h"

#define META_GENESIS "genesis_hash"
#define META_TIME "block_time"
#define SCAN_PAGE 256

/* A read snapshot and the executor's view of it. */
struct ledger_read {
    struct store_read *r;
    struct exec_store view;
};

/* Growable arrays reused from block to block, bounded by the executor's limits. */
struct vec {
    void *p;
    size_t cap;
};

struct ledger {
    struct store *store;
    struct exec *exec;
    struct ledger_read exec_read; /* the snapshot the executor reads during a block */
    struct exec_store exec_view;  /* forwards to exec_read */
    char chain_id[GENESIS_CHAIN_ID_MAX + 1];
    uint64_t height;
    uint64_t time_ms;
    uint8_t root[LEDGER_HASH_BYTES];
    uint8_t hash[LEDGER_HASH_BYTES];
    struct ledger_applied applied;
    struct vec receipts, writes, history, seen, seen_slots, deferred;
    size_t seen_mask; /* seen_slots holds seen_mask + 1 slots */
    /* The block being written: between ledger_apply_begin() and its end or abort. */
    bool pending;
    struct store_block block; /* what the store writes; points into the fields below and the executor */
    struct store_meta block_meta[2];
    uint8_t block_time[8];
    uint8_t *block_record;
    Bex__BlockProposal *block_proposal; /* kept decoded until the end, for what the executor kept of it */
    const struct exec_output *block_out;
    size_t block_skipped, block_deferred;
};

static int vec_reserve(struct vec *v, size_t n, size_t elem)
{
    void *p;

    if (n <= v->cap)
        return 0;
    p = realloc(v->p, n * elem);
    if (p == NULL)
        return -BEX_ENOMEM;
    v->p = p;
    v->cap = n;
    return 0;
}

/* ------------------------------------------------------ the store view */

static int view_get(void *user, const char *key, size_t key_len, const uint8_t **val, size_t *val_len)
{
    struct ledger_read *lr = user;

    return store_get_state(lr->r, val, val_len, (const uint8_t *)key, key_len);
}

/* Pages through store_scan_state() so that an iteration has no size limit of its own. */
static int view_iter(void *user, const char *prefix, size_t prefix_len, const char *after, size_t after_len,
                     exec_iter_fn fn, void *fn_user)
{
    struct ledger_read *lr = user;
    struct store_kv kv[SCAN_PAGE];
    uint8_t cursor[STORE_KEY_BYTES_MAX];
    size_t n, cursor_len = after_len;
    bool more = true;
    int rc;

    if (after_len > sizeof cursor)
        return -BEX_ELIMIT;
    if (after_len > 0)
        memcpy(cursor, after, after_len);
    while (more) {
        rc = store_scan_state(lr->r, kv, SCAN_PAGE, &n, &more, (const uint8_t *)prefix, prefix_len, cursor,
                              cursor_len);
        if (rc != 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            rc = fn(fn_user, (const char *)kv[i].key, kv[i].key_len, kv[i].val, kv[i].val_len);
            if (rc < 0)
                return rc;
            if (rc > 0)
                return 0;
        }
        if (n == 0)
            break;
        BEX_ASSERT(kv[n - 1].key_len <= sizeof cursor);
        memcpy(cursor, kv[n - 1].key, kv[n - 1].key_len);
        cursor_len = kv[n - 1].key_len;
    }
    return 0;
}

static void view_bind(struct ledger_read *lr)
{
    lr->view.user = lr;
    lr->view.get = view_get;
    lr->view.iter = view_iter;
}

int ledger_read_begin(struct ledger *l, struct ledger_read **out)
{
    struct ledger_read *lr;
    int rc;

    *out = NULL;
    lr = calloc(1, sizeof *lr);
    if (lr == NULL)
        return -BEX_ENOMEM;
    if ((rc = store_read_begin(l->store, &lr->r)) != 0) {
        free(lr);
        return rc;
    }
    view_bind(lr);
    *out = lr;
    return 0;
}

const struct exec_store *ledger_read_store(struct ledger_read *r)
{
    return &r->view;
}

struct store_read *ledger_read_raw(struct ledger_read *r)
{
    return r->r;
}

void ledger_read_end(struct ledger_read *r)
{
    if (r == NULL)
        return;
    store_read_end(r->r);
    free(r);
}

/* ------------------------------------------------------ committing */

static void chain_hash(uint8_t out[LEDGER_HASH_BYTES], const uint8_t prev[LEDGER_HASH_BYTES], uint64_t height,
                       const uint8_t digest[LEDGER_HASH_BYTES], const uint8_t root[LEDGER_HASH_BYTES])
{
    struct crypto_sha256_ctx c;
    uint8_t h[8];

    bex_be64_put(h, height);
    crypto_sha256_init(&c);
    crypto_sha256_update(&c, prev, LEDGER_HASH_BYTES);
    crypto_sha256_update(&c, h, sizeof h);
    crypto_sha256_update(&c, digest, LEDGER_HASH_BYTES);
    crypto_sha256_update(&c, root, LEDGER_HASH_BYTES);
    crypto_sha256_final(&c, out);
}

/*
 * Translates the executor's output into l->block, with the block record and
 * meta (block time, and the extra meta given). l->block points into the
 * ledger's arrays, the executor's output, record, cert and extra, which must
 * stay as they are until it is committed.
 */
static int build_block(struct ledger *l, const struct exec_output *o, const uint8_t *record, size_t record_len,
                       const uint8_t *cert, size_t cert_len, const uint8_t hash[LEDGER_HASH_BYTES],
                       const struct store_meta *extra, size_t extra_len)
{
    struct store_block *b = &l->block;
    struct store_meta *meta = l->block_meta;
    struct store_receipt *rc_arr;
    struct store_write *w_arr;
    struct store_history *h_arr;
    uint8_t *tbuf = l->block_time;
    int rc;

    BEX_ASSERT(extra_len <= 1);
    if ((rc = vec_reserve(&l->receipts, o->receipt_count, sizeof *rc_arr)) != 0 ||
        (rc = vec_reserve(&l->writes, o->write_count, sizeof *w_arr)) != 0 ||
        (rc = vec_reserve(&l->history, o->history_count, sizeof *h_arr)) != 0)
        return rc;
    rc_arr = l->receipts.p;
    w_arr = l->writes.p;
    h_arr = l->history.p;
    for (size_t i = 0; i < o->receipt_count; i++) {
        memcpy(rc_arr[i].tx_id, o->receipts[i].tx_id, STORE_TXID_BYTES);
        rc_arr[i].bytes = o->receipts[i].encoded;
        rc_arr[i].len = o->receipts[i].encoded_len;
    }
    for (size_t i = 0; i < o->write_count; i++) {
        w_arr[i] = (struct store_write){(const uint8_t *)o->writes[i].key, o->writes[i].key_len, o->writes[i].val,
                                        o->writes[i].val_len, o->writes[i].del};
    }
    for (size_t i = 0; i < o->history_count; i++) {
        h_arr[i].key = (const uint8_t *)o->history[i].key;
        h_arr[i].key_len = o->history[i].key_len;
        h_arr[i].index = o->history[i].tx_index;
        memcpy(h_arr[i].tx_id, o->history[i].tx_id, STORE_TXID_BYTES);
    }
    bex_be64_put(tbuf, o->time_ms);
    meta[0] = (struct store_meta){(const uint8_t *)META_TIME, strlen(META_TIME), tbuf, sizeof l->block_time};
    if (extra_len == 1)
        meta[1] = extra[0];
    memset(b, 0, sizeof *b);
    b->height = o->height;
    b->record = record;
    b->record_len = record_len;
    b->cert = cert;
    b->cert_len = cert_len;
    memcpy(b->hash, hash, LEDGER_HASH_BYTES);
    memcpy(b->state_root, o->state_root, LEDGER_HASH_BYTES);
    b->receipts = rc_arr;
    b->receipts_len = o->receipt_count;
    b->writes = w_arr;
    b->writes_len = o->write_count;
    b->history = h_arr;
    b->history_len = o->history_count;
    b->meta = meta;
    b->meta_len = 1 + extra_len;
    return 0;
}

/* Builds the block and commits it in a transaction of its own. */
static int commit_output(struct ledger *l, const struct exec_output *o, const uint8_t *record, size_t record_len,
                         const uint8_t *cert, size_t cert_len, const uint8_t hash[LEDGER_HASH_BYTES],
                         const struct store_meta *extra, size_t extra_len)
{
    int rc = build_block(l, o, record, record_len, cert, cert_len, hash, extra, extra_len);

    return rc != 0 ? rc : store_commit_block(l->store, &l->block);
}

/* Encodes a BlockRecord into a malloc'd buffer. */
static int encode_record(uint8_t **out, size_t *out_len, uint64_t height, const uint8_t *proposal,
                         size_t proposal_len, const uint8_t prev[LEDGER_HASH_BYTES],
                         const uint8_t hash[LEDGER_HASH_BYTES], const uint8_t root[LEDGER_HASH_BYTES])
{
    Bex__BlockRecord r = BEX__BLOCK_RECORD__INIT;
    size_t n;

    r.height = height;
    r.proposal.data = (uint8_t *)proposal;
    r.proposal.len = proposal_len;
    r.prev_hash.data = (uint8_t *)prev;
    r.prev_hash.len = LEDGER_HASH_BYTES;
    r.hash.data = (uint8_t *)hash;
    r.hash.len = LEDGER_HASH_BYTES;
    r.state_root.data = (uint8_t *)root;
    r.state_root.len = LEDGER_HASH_BYTES;
    n = bex__block_record__get_packed_size(&r);
    *out = malloc(n);
    if (*out == NULL)
        return -BEX_ENOMEM;
    *out_len = bex__block_record__pack(&r, *out);
    BEX_ASSERT(*out_len == n);
    return 0;
}

/* Keeps the executor's snapshot fresh: it must see the state of the last commit. */
static int exec_read_renew(struct ledger *l)
{
    store_read_end(l->exec_read.r);
    l->exec_read.r = NULL;
    return store_read_begin(l->store, &l->exec_read.r);
}

int ledger_resize(struct ledger *l, size_t map_bytes)
{
    int rc, rrc;

    /* LMDB remaps only while no snapshot is open: close the executor's around it. */
    store_read_end(l->exec_read.r);
    l->exec_read.r = NULL;
    rc = store_resize(l->store, map_bytes);
    rrc = store_read_begin(l->store, &l->exec_read.r);
    return rc != 0 ? rc : rrc;
}

/* ------------------------------------------------------ genesis and open */

static void agencies_free(Bex__Agency *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].roles);
        free(a[i].officer_keys);
    }
    free(a);
}

static int agencies_from_genesis(Bex__Agency **out, const struct genesis *g)
{
    Bex__Agency *a = calloc(g->agencies_n ? g->agencies_n : 1, sizeof *a);

    *out = a;
    if (a == NULL)
        return -BEX_ENOMEM;
    for (uint32_t i = 0; i < g->agencies_n; i++) {
        const struct genesis_agency *ga = &g->agencies[i];

        bex__agency__init(&a[i]);
        a[i].id = (char *)ga->id;
        a[i].name = (char *)ga->name;
        a[i].roles = calloc(ga->roles_n ? ga->roles_n : 1, sizeof *a[i].roles);
        a[i].officer_keys = calloc(ga->officers_n ? ga->officers_n : 1, sizeof *a[i].officer_keys);
        if (a[i].roles == NULL || a[i].officer_keys == NULL)
            return -BEX_ENOMEM;
        a[i].n_roles = ga->roles_n;
        for (uint32_t k = 0; k < ga->roles_n; k++)
            a[i].roles[k] = (char *)ga->roles[k];
        a[i].n_officer_keys = ga->officers_n;
        for (uint32_t k = 0; k < ga->officers_n; k++) {
            a[i].officer_keys[k].data = (uint8_t *)ga->officers[k].b;
            a[i].officer_keys[k].len = CRYPTO_PUB_BYTES;
        }
        a[i].threshold = ga->threshold;
        a[i].enc_key.data = (uint8_t *)ga->enc_key.b;
        a[i].enc_key.len = CRYPTO_PUB_BYTES;
        if (ga->node_index >= 0) {
            a[i].node_key.data = (uint8_t *)g->nodes[ga->node_index].node_key.b;
            a[i].node_key.len = CRYPTO_PUB_BYTES;
        }
    }
    return 0;
}

static int write_genesis(struct ledger *l, const struct genesis *g, const uint8_t ghash[LEDGER_HASH_BYTES],
                         char *err, size_t err_size)
{
    static const uint8_t zero[LEDGER_HASH_BYTES];
    const struct exec_output *o;
    Bex__Agency *agencies = NULL;
    const Bex__Agency **ptrs = NULL;
    uint8_t *record = NULL, hash[LEDGER_HASH_BYTES];
    size_t record_len = 0;
    struct crypto_sha256_ctx c;
    struct store_meta gm = {(const uint8_t *)META_GENESIS, strlen(META_GENESIS), ghash, LEDGER_HASH_BYTES};
    int rc;

    if ((rc = agencies_from_genesis(&agencies, g)) != 0)
        goto fail;
    ptrs = calloc(g->agencies_n ? g->agencies_n : 1, sizeof *ptrs);
    if (ptrs == NULL) {
        rc = -BEX_ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < g->agencies_n; i++)
        ptrs[i] = &agencies[i];
    if ((rc = exec_genesis(l->exec, &o, (const Bex__Agency *const *)ptrs, g->agencies_n, g->genesis_time_ms)) != 0) {
        snprintf(err, err_size, "ledger: genesis: %s", bex_strerror(rc));
        goto fail;
    }
    crypto_sha256_init(&c);
    crypto_sha256_update(&c, "bex-genesis", 11);
    crypto_sha256_update(&c, ghash, LEDGER_HASH_BYTES);
    crypto_sha256_update(&c, o->state_root, LEDGER_HASH_BYTES);
    crypto_sha256_final(&c, hash);
    if ((rc = encode_record(&record, &record_len, 0, NULL, 0, zero, hash, o->state_root)) != 0)
        goto fail;
    if ((rc = commit_output(l, o, record, record_len, NULL, 0, hash, &gm, 1)) != 0) {
        store_error(l->store, err, err_size);
        goto fail;
    }
    l->height = 0;
    l->time_ms = o->time_ms;
    memcpy(l->root, o->state_root, LEDGER_HASH_BYTES);
    memcpy(l->hash, hash, LEDGER_HASH_BYTES);
    rc = 0;
fail:
    free(record);
    free(ptrs);
    agencies_free(agencies, g->agencies_n);
    return rc;
}

/* Loads height, root, hash and block time of the last block, and checks the genesis hash. */
static int load_head(struct ledger *l, const uint8_t ghash[LEDGER_HASH_BYTES], char *err, size_t err_size)
{
    struct store_read *r = l->exec_read.r;
    const uint8_t *v;
    size_t n;
    int rc;

    if ((rc = store_get_meta(r, &v, &n, (const uint8_t *)META_GENESIS, strlen(META_GENESIS))) != 0 ||
        n != LEDGER_HASH_BYTES) {
        snprintf(err, err_size, "ledger: the store has no genesis hash: %s", rc ? bex_strerror(rc) : "bad size");
        return rc ? rc : -BEX_ECORRUPT;
    }
    if (memcmp(v, ghash, LEDGER_HASH_BYTES) != 0) {
        snprintf(err, err_size, "ledger: the store was made from another genesis file");
        return -BEX_ESTATE;
    }
    if ((rc = store_get_meta(r, &v, &n, (const uint8_t *)META_TIME, strlen(META_TIME))) != 0 || n != 8) {
        snprintf(err, err_size, "ledger: the store has no block time");
        return rc ? rc : -BEX_ECORRUPT;
    }
    l->time_ms = bex_be64_get(v);
    if ((rc = store_get_height(r, &l->height)) != 0 || (rc = store_get_root(r, l->root)) != 0 ||
        (rc = store_get_hash(r, l->hash)) != 0) {
        snprintf(err, err_size, "ledger: cannot read the head: %s", bex_strerror(rc));
        return rc;
    }
    return 0;
}

int ledger_open(struct ledger **out, const char *dir, const struct store_options *opt, const struct genesis *g,
                char *err, size_t err_size)
{
    struct exec_config ec = {0};
    struct ledger *l;
    uint8_t ghash[LEDGER_HASH_BYTES];
    const uint8_t *v;
    size_t n;
    int rc;

    *out = NULL;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return -BEX_ENOMEM;
    snprintf(l->chain_id, sizeof l->chain_id, "%s", g->chain_id);
    if ((rc = config_genesis_hash(ghash, g)) != 0) {
        snprintf(err, err_size, "ledger: cannot hash the genesis: %s", bex_strerror(rc));
        goto fail;
    }
    if ((rc = store_open(&l->store, dir, opt, err, err_size)) != 0)
        goto fail;
    view_bind(&l->exec_read);
    l->exec_view = l->exec_read.view;
    ec.chain_id = l->chain_id;
    if ((rc = exec_new(&l->exec, &ec, &l->exec_view)) != 0) {
        snprintf(err, err_size, "ledger: executor: %s", bex_strerror(rc));
        goto fail;
    }
    if ((rc = store_read_begin(l->store, &l->exec_read.r)) != 0) {
        snprintf(err, err_size, "ledger: cannot read the store: %s", bex_strerror(rc));
        goto fail;
    }
    rc = store_get_meta(l->exec_read.r, &v, &n, (const uint8_t *)META_GENESIS, strlen(META_GENESIS));
    if (rc == -BEX_ENOTFOUND) {
        rc = write_genesis(l, g, ghash, err, err_size);
        if (rc == 0)
            rc = exec_read_renew(l);
    } else if (rc == 0) {
        rc = load_head(l, ghash, err, err_size);
    }
    if (rc != 0)
        goto fail;
    *out = l;
    return 0;
fail:
    ledger_close(l);
    return rc;
}

void ledger_close(struct ledger *l)
{
    if (l == NULL)
        return;
    ledger_apply_abort(l);
    store_read_end(l->exec_read.r);
    exec_free(l->exec);
    store_close(l->store);
    free(l->receipts.p);
    free(l->writes.p);
    free(l->history.p);
    free(l->seen.p);
    free(l->seen_slots.p);
    free(l->deferred.p);
    free(l);
}

/* ------------------------------------------------------ applying blocks */

/*
 * The ids executed so far in a block: l->seen in order, and an open
 * addressing table over them (l->seen_slots: index + 1, 0 when empty) at
 * most half full. A linear scan made a block of n txs cost n^2 / 2 id
 * comparisons. Ids are SHA-256 outputs; a sender who grinds ids into one
 * slot only brings the probes back to that linear scan.
 */
static int seen_reset(struct ledger *l, size_t n_txs)
{
    size_t slots = 16;
    int rc;

    while (slots < 2 * n_txs)
        slots *= 2;
    if ((rc = vec_reserve(&l->seen_slots, slots, sizeof(uint32_t))) != 0)
        return rc;
    memset(l->seen_slots.p, 0, slots * sizeof(uint32_t));
    l->seen_mask = slots - 1;
    return 0;
}

static size_t seen_slot_of(const struct ledger *l, const uint8_t id[32])
{
    uint64_t h;

    memcpy(&h, id, sizeof h);
    return (size_t)h & l->seen_mask;
}

static bool seen_has(const struct ledger *l, const uint8_t id[32])
{
    const uint8_t (*seen)[32] = l->seen.p;
    const uint32_t *slots = l->seen_slots.p;

    for (size_t s = seen_slot_of(l, id);; s = (s + 1) & l->seen_mask) {
        if (slots[s] == 0)
            return false;
        if (memcmp(seen[slots[s] - 1], id, 32) == 0)
            return true;
    }
}

static void seen_add(struct ledger *l, const uint8_t id[32], size_t seen_n)
{
    uint32_t *slots = l->seen_slots.p;
    size_t s = seen_slot_of(l, id);

    BEX_ASSERT(2 * (seen_n + 1) <= l->seen_mask + 1);
    memcpy((uint8_t(*)[32])l->seen.p + seen_n, id, 32);
    while (slots[s] != 0)
        s = (s + 1) & l->seen_mask;
    slots[s] = (uint32_t)(seen_n + 1);
    BEX_ASSERT(seen_has(l, id));
}

/* Whether tx id was committed before or earlier in this block. */
static int already_committed(struct ledger *l, bool *dup, const uint8_t id[32])
{
    const uint8_t *v;
    size_t n;
    int rc;

    *dup = seen_has(l, id);
    if (*dup)
        return 0;
    rc = store_get_receipt(l->exec_read.r, &v, &n, id);
    if (rc == 0)
        *dup = true;
    return rc == -BEX_ENOTFOUND ? 0 : rc;
}

/*
 * Runs every tx of the proposal through the executor, skipping committed
 * ids; the ids of deferred txs (nonce ahead) go to l->deferred. Each tx is
 * decoded once: for its id here, and the executor takes the decoded tx.
 */
static int run_txs(struct ledger *l, size_t *skipped, size_t *deferred, const Bex__BlockProposal *p)
{
    Bex__Tx *tx = NULL;
    size_t seen_n = 0;
    int rc = 0;

    *skipped = 0;
    *deferred = 0;
    if ((rc = vec_reserve(&l->seen, p->n_txs, 32)) != 0 || (rc = vec_reserve(&l->deferred, p->n_txs, 32)) != 0 ||
        (rc = seen_reset(l, p->n_txs)) != 0)
        return rc;
    for (size_t i = 0; i < p->n_txs; i++) {
        bool oversized = p->txs[i].len > CONTRACT_TX_BYTES_MAX;
        uint8_t id[32];
        bool dup;
        int code;

        tx = bex__tx__unpack(NULL, p->txs[i].len, p->txs[i].data);
        if (tx == NULL) {
            /* Never prepared by an honest replica; skip it like every other node does. */
            (*skipped)++;
            continue;
        }
        /*
         * The id the executor files the receipt under: a tx over its size
         * limit is refused undecoded and named by the hash of all its bytes.
         */
        if (oversized)
            crypto_sha256(id, p->txs[i].data, p->txs[i].len);
        else
            crypto_sha256(id, tx->body.data, tx->body.len);
        if ((rc = already_committed(l, &dup, id)) != 0)
            goto fail;
        if (dup) {
            (*skipped)++;
        } else {
            if (oversized)
                rc = exec_tx(l->exec, &code, p->txs[i].data, p->txs[i].len);
            else
                rc = exec_tx_decoded(l->exec, &code, tx, id);
            if (rc != 0)
                goto fail;
            if (code == EXEC_DEFERRED)
                memcpy((uint8_t(*)[32])l->deferred.p + (*deferred)++, id, 32);
            else
                seen_add(l, id, seen_n++);
        }
        bex__tx__free_unpacked(tx, NULL);
        tx = NULL;
    }
fail:
    if (tx != NULL)
        bex__tx__free_unpacked(tx, NULL);
    return rc;
}

int ledger_apply_begin(struct ledger *l, const struct store_block **blk, uint64_t height,
                       const uint8_t digest[LEDGER_HASH_BYTES], const uint8_t *proposal, size_t proposal_len,
                       const uint8_t *cert, size_t cert_len)
{
    static const uint8_t zero[LEDGER_HASH_BYTES];
    Bex__BlockProposal *p = NULL;
    const struct exec_output *o;
    uint8_t *record = NULL, hash[LEDGER_HASH_BYTES], check[LEDGER_HASH_BYTES];
    size_t record_len = 0, skipped = 0, deferred = 0;
    uint64_t time_ms = l->time_ms;
    int rc;

    *blk = NULL;
    if (l->pending || height != l->height + 1)
        return -BEX_ESTATE;
    if (proposal_len > 0) {
        crypto_sha256(check, proposal, proposal_len);
        if (memcmp(check, digest, LEDGER_HASH_BYTES) != 0)
            return -BEX_EINVAL;
        p = bex__block_proposal__unpack(NULL, proposal_len, proposal);
        if (p == NULL)
            return -BEX_EDECODE;
        if (p->height != height || strcmp(p->chain_id, l->chain_id) != 0) {
            rc = -BEX_EDECODE;
            goto fail;
        }
        if (p->time_ms > time_ms)
            time_ms = p->time_ms;
    } else if (memcmp(digest, zero, LEDGER_HASH_BYTES) != 0) {
        return -BEX_EINVAL;
    }
    if ((rc = exec_block_begin(l->exec, height, time_ms, l->root)) != 0)
        goto fail;
    if (p != NULL && (rc = run_txs(l, &skipped, &deferred, p)) != 0)
        goto fail_exec;
    if ((rc = exec_block_end(l->exec, &o)) != 0)
        goto fail_exec;
    chain_hash(hash, l->hash, height, digest, o->state_root);
    if ((rc = encode_record(&record, &record_len, height, proposal, proposal_len, l->hash, hash, o->state_root)) != 0)
        goto fail;
    if ((rc = build_block(l, o, record, record_len, cert, cert_len, hash, NULL, 0)) != 0)
        goto fail;
    l->pending = true;
    l->block_record = record;
    l->block_proposal = p;
    l->block_out = o;
    l->block_skipped = skipped;
    l->block_deferred = deferred;
    *blk = &l->block;
    return 0;
fail_exec:
    exec_block_abort(l->exec);
fail:
    free(record);
    if (p != NULL)
        bex__block_proposal__free_unpacked(p, NULL);
    return rc;
}

/* Frees what the pending block held. */
static void pending_clear(struct ledger *l)
{
    free(l->block_record);
    if (l->block_proposal != NULL)
        bex__block_proposal__free_unpacked(l->block_proposal, NULL);
    l->block_record = NULL;
    l->block_proposal = NULL;
    l->block_out = NULL;
    l->pending = false;
}

int ledger_apply_end(struct ledger *l, const struct ledger_applied **res)
{
    const struct exec_output *o = l->block_out;
    int rc;

    *res = NULL;
    BEX_ASSERT(l->pending);
    BEX_ASSERT(o != NULL && o->height == l->height + 1);
    rc = exec_read_renew(l);
    l->height = o->height;
    l->time_ms = o->time_ms;
    memcpy(l->root, o->state_root, LEDGER_HASH_BYTES);
    memcpy(l->hash, l->block.hash, LEDGER_HASH_BYTES);
    l->applied = (struct ledger_applied){.height = o->height, .time_ms = o->time_ms, .out = o,
                                         .skipped = l->block_skipped, .deferred = l->deferred.p,
                                         .deferred_count = l->block_deferred};
    memcpy(l->applied.hash, l->block.hash, LEDGER_HASH_BYTES);
    memcpy(l->applied.state_root, o->state_root, LEDGER_HASH_BYTES);
    pending_clear(l);
    if (rc != 0)
        return rc;
    *res = &l->applied;
    return 0;
}

void ledger_apply_abort(struct ledger *l)
{
    if (l != NULL && l->pending)
        pending_clear(l);
}

int ledger_apply(struct ledger *l, const struct ledger_applied **res, uint64_t height,
                 const uint8_t digest[LEDGER_HASH_BYTES], const uint8_t *proposal, size_t proposal_len,
                 const uint8_t *cert, size_t cert_len)
{
    const struct store_block *blk;
    int rc;

    *res = NULL;
    if ((rc = ledger_apply_begin(l, &blk, height, digest, proposal, proposal_len, cert, cert_len)) != 0)
        return rc;
    if ((rc = store_commit_block(l->store, blk)) != 0) {
        ledger_apply_abort(l);
        return rc;
    }
    return ledger_apply_end(l, res);
}

uint64_t ledger_height(const struct ledger *l)
{
    return l->height;
}

uint64_t ledger_time_ms(const struct ledger *l)
{
    return l->time_ms;
}

const uint8_t *ledger_root(const struct ledger *l)
{
    return l->root;
}

const uint8_t *ledger_hash(const struct ledger *l)
{
    return l->hash;
}

struct store *ledger_store(struct ledger *l)
{
    return l->store;
}

/*
 * Called for every tx a node admits, so it reads through the executor's
 * snapshot, which every commit renews (same thread), instead of opening a
 * read transaction per call; only when that snapshot is missing (a renewal
 * failed) does it open one of its own.
 */
int ledger_last_nonce(struct ledger *l, uint64_t *nonce, const char *agency)
{
    struct store_read *r = l->exec_read.r, *own = NULL;
    char key[8 + GENESIS_AGENCY_ID_MAX + 1];
    const uint8_t *v;
    size_t n;
    int rc, klen;

    *nonce = 0;
    klen = snprintf(key, sizeof key, "nonce/%s", agency);
    if (klen < 0 || (size_t)klen >= sizeof key)
        return -BEX_EINVAL;
    if (r == NULL) {
        if ((rc = store_read_begin(l->store, &own)) != 0)
            return rc;
        r = own;
    }
    rc = store_get_state(r, &v, &n, (const uint8_t *)key, (size_t)klen);
    if (rc == 0 && n != 8)
        rc = -BEX_ECORRUPT;
    if (rc == 0)
        *nonce = bex_be64_get(v);
    store_read_end(own);
    return rc == -BEX_ENOTFOUND ? 0 : rc;
}
