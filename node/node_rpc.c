/*
 * node_rpc.c: the JSON-RPC methods of bexd (see README.md, "RPC reference").
 * Reads come from LMDB read snapshots, so they never wait for consensus.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bex.pb-c.h"
#include "contract.h"
#include "log.h"
#include "node.h"

#define BATCH_MAX 1000
#define WAIT_DEFAULT_MS 10000
#define WAIT_MAX_MS 60000
#define HISTORY_MAX 500
#define SUBMIT_SLOTS 65536 /* submit times kept for the commit latency histogram */

/* Submit times by tx id (approximate: a collision overwrites), for the latency histogram. */
static struct {
    uint64_t tag;
    uint64_t ms;
} submits[SUBMIT_SLOTS];

static uint64_t id_tag(const uint8_t id[32])
{
    uint64_t t = 0;

    for (int i = 0; i < 8; i++)
        t = (t << 8) | id[i];
    return t | 1;
}

static json_t *hex_json(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    json_t *j;

    if (s == NULL)
        return NULL;
    if (crypto_hex_encode(s, 2 * n + 1, b, n) != 0) {
        free(s);
        return NULL;
    }
    j = json_string(s);
    free(s);
    return j;
}

static bool params_ok(struct rpc_call *call, const json_t *params, const char *const *names, size_t n)
{
    return rpc_params_only(call, params, names, n) == 0;
}

/* ---------------------------------------------------------------- status and peers */

static void m_status(struct rpc_call *call, const json_t *params, void *ud)
{
    struct node *n = ud;
    json_t *r;

    if (!params_ok(call, params, NULL, 0))
        return;
    r = json_pack("{s:s, s:I, s:s, s:o, s:I, s:I, s:I, s:b, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:s}",
                  "chain_id", n->gen.chain_id, "node_index", (json_int_t)n->self, "agency", n->agency->id, "node_key",
                  hex_json(n->node_pk.b, CRYPTO_PUB_BYTES), "height", (json_int_t)ledger_height(n->ledger), "view",
                  (json_int_t)pbft_view(n->pbft), "primary", (json_int_t)pbft_primary(n->pbft), "view_active",
                  pbft_view_active(n->pbft), "last_block_time_ms", (json_int_t)ledger_time_ms(n->ledger), "state_root",
                  hex_json(ledger_root(n->ledger), 32), "block_hash", hex_json(ledger_hash(n->ledger), 32),
                  "peers_connected", (json_int_t)p2p_peer_count(&n->p2p), "peers_total",
                  (json_int_t)(n->gen.nodes_n - 1), "mempool_txs", (json_int_t)mempool_count(n->mempool),
                  "mempool_bytes", (json_int_t)mempool_bytes(n->mempool), "catching_up", n->catching_up,
                  "view_changes", (json_int_t)n->view_changes, "committed_txs", (json_int_t)n->committed_txs,
                  "version", "bex/0.1");
    rpc_reply(call, r);
}

static void m_peers(struct rpc_call *call, const json_t *params, void *ud)
{
    struct node *n = ud;
    struct p2p_stats st;
    json_t *arr = json_array();

    if (!params_ok(call, params, NULL, 0)) {
        json_decref(arr);
        return;
    }
    p2p_stats(&n->p2p, &st);
    for (uint32_t i = 0; i < n->gen.nodes_n; i++) {
        char addr[CONFIG_ADDRESS_MAX + 8] = "";

        if (i == n->self)
            continue;
        if (config_format_address(addr, sizeof addr, &n->gen.nodes[i].address) != 0)
            addr[0] = '\0';
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:b, s:I, s:I, s:I}", "index", (json_int_t)i, "agency",
                                             n->gen.nodes[i].agency, "address", addr, "connected", st.peer[i].up,
                                             "height", (json_int_t)n->peer_height[i], "bytes_in",
                                             (json_int_t)st.peer[i].bytes_in, "bytes_out",
                                             (json_int_t)st.peer[i].bytes_out));
    }
    rpc_reply(call, json_pack("{s:o}", "peers", arr));
}

static void m_nonce(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"agency"};
    struct node *n = ud;
    const char *agency;
    uint64_t next, last;
    int rc;

    if (!params_ok(call, params, names, 1) || rpc_param_string(call, &agency, params, "agency", RPC_REQUIRED) != 0)
        return;
    if (config_genesis_find_agency(&n->gen, agency) < 0) {
        rpc_reply_error(call, RPC_NOT_FOUND, "no such agency", json_pack("{s:s}", "agency", agency));
        return;
    }
    if ((rc = node_next_nonce(n, &next, &last, agency)) != 0) {
        rpc_reply_bex(call, RPC_INTERNAL_ERROR, rc, "cannot read the nonce");
        return;
    }
    rpc_reply(call, json_pack("{s:s, s:I, s:I}", "agency", agency, "last_committed", (json_int_t)last, "next",
                              (json_int_t)next));
}

/* ---------------------------------------------------------------- submit */

static void count_reject(struct node *n, int rc)
{
    int label = metrics_label_find(n->m.rejected, bex_errname(rc));

    if (label < 0)
        label = metrics_label_find(n->m.rejected, "OTHER");
    if (label >= 0)
        metrics_counter_inc(n->m.rejected, (size_t)label);
}

/*
 * Submits one hex-encoded tx; on failure fills *err with a JSON-RPC error
 * object {code, reason, message}, plus param (the name of the parameter the
 * hex came in) when the hex does not decode.
 */
static int submit_hex(struct node *n, uint8_t id[32], json_t **err, const char *hex, const char *param)
{
    size_t cap = strlen(hex) / 2 + 1, len;
    uint8_t *tx = malloc(cap);
    char reason[160] = "";
    int rc;

    *err = NULL;
    if (tx == NULL)
        return -BEX_ENOMEM;
    if (crypto_hex_decode(tx, cap, &len, hex) != 0) {
        free(tx);
        *err = json_pack("{s:i, s:s, s:s, s:s}", "code", RPC_INVALID_PARAMS, "reason", "EDECODE", "message",
                         "not hex", "param", param);
        return -BEX_EDECODE;
    }
    memset(id, 0, 32);
    rc = node_submit(n, id, reason, sizeof reason, tx, len);
    free(tx);
    if (rc != 0) {
        count_reject(n, rc);
        *err = json_pack("{s:i, s:s, s:s}", "code", RPC_TX_REJECTED, "reason", bex_errname(rc), "message",
                         reason[0] ? reason : bex_strerror(rc));
        return rc;
    }
    {
        uint64_t tag = id_tag(id);

        submits[tag % SUBMIT_SLOTS].tag = tag;
        submits[tag % SUBMIT_SLOTS].ms = uv_now(n->loop);
    }
    return 0;
}

static void m_submit(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"tx"};
    struct node *n = ud;
    const char *hex;
    uint8_t id[32];
    json_t *err;

    if (!params_ok(call, params, names, 1) || rpc_param_string(call, &hex, params, "tx", RPC_REQUIRED) != 0)
        return;
    if (submit_hex(n, id, &err, hex, "tx") != 0) {
        json_t *code = json_object_get(err, "code");
        int c = code ? (int)json_integer_value(code) : RPC_TX_REJECTED;
        const char *msg = json_string_value(json_object_get(err, "message"));
        char text[200];

        /* Bytes that are not hex are invalid params, named like every other invalid param. */
        if (c == RPC_INVALID_PARAMS) {
            snprintf(text, sizeof text, "invalid params: 'tx' is %s", msg ? msg : "malformed");
            rpc_reply_error(call, c, text,
                            json_pack("{s:O, s:O}", "param", json_object_get(err, "param"), "reason",
                                      json_object_get(err, "reason")));
        } else {
            snprintf(text, sizeof text, "transaction rejected: %s", msg ? msg : "");
            rpc_reply_error(call, c, text, json_pack("{s:O}", "reason", json_object_get(err, "reason")));
        }
        json_decref(err);
        return;
    }
    rpc_reply(call, json_pack("{s:o}", "id", hex_json(id, 32)));
}

static void m_submit_batch(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"txs"};
    struct node *n = ud;
    const json_t *txs;
    json_t *results;
    size_t i;

    if (!params_ok(call, params, names, 1) || rpc_param_array(call, &txs, params, "txs", BATCH_MAX, RPC_REQUIRED) != 0)
        return;
    results = json_array();
    for (i = 0; i < json_array_size(txs); i++) {
        const char *hex = json_string_value(json_array_get(txs, i));
        uint8_t id[32];
        json_t *err;

        if (hex == NULL) {
            json_array_append_new(results, json_pack("{s:{s:i, s:s, s:s, s:s}}", "error", "code", RPC_INVALID_PARAMS,
                                                     "reason", "EINVAL", "message", "not a string", "param", "txs"));
            continue;
        }
        if (submit_hex(n, id, &err, hex, "txs") != 0)
            json_array_append_new(results, json_pack("{s:o}", "error", err));
        else
            json_array_append_new(results, json_pack("{s:o}", "id", hex_json(id, 32)));
    }
    rpc_reply(call, json_pack("{s:o}", "results", results));
}

/* ---------------------------------------------------------------- tx.get / tx.wait */

/* Adds sender, nonce, contract, method and the decoded args of an encoded Tx to obj. */
static void describe_tx(json_t *obj, const uint8_t *tx, size_t len)
{
    Bex__Tx *t = bex__tx__unpack(NULL, len, tx);
    Bex__TxBody *b = t ? bex__tx_body__unpack(NULL, t->body.len, t->body.data) : NULL;
    const ProtobufCMessageDescriptor *ad, *rd;

    if (b != NULL) {
        json_object_set_new(obj, "sender", json_string(b->sender));
        json_object_set_new(obj, "nonce", json_integer((json_int_t)b->nonce));
        json_object_set_new(obj, "contract", json_string(b->contract));
        json_object_set_new(obj, "method", json_string(b->method));
        json_object_set_new(obj, "timestamp_ms", json_integer((json_int_t)b->timestamp_ms));
        if (contract_describe(&ad, &rd, b->contract, "method", b->method) == 0) {
            ProtobufCMessage *m = protobuf_c_message_unpack(ad, NULL, b->args.len, b->args.data);
            char *js = NULL;

            if (m != NULL && contract_json_render(&js, m) == 0)
                json_object_set_new(obj, "args", json_loads(js, 0, NULL));
            free(js);
            if (m != NULL)
                protobuf_c_message_free_unpacked(m, NULL);
        }
        json_t *signers = json_array();

        for (size_t i = 0; i < t->n_sigs; i++)
            json_array_append_new(signers, hex_json(t->sigs[i]->pubkey.data, t->sigs[i]->pubkey.len));
        json_object_set_new(obj, "signers", signers);
    }
    if (b != NULL)
        bex__tx_body__free_unpacked(b, NULL);
    if (t != NULL)
        bex__tx__free_unpacked(t, NULL);
}

/* Finds the encoded tx with this id in the block at height; *tx borrowed from *prop. */
static bool find_in_block(struct store_read *r, Bex__BlockProposal **prop, const uint8_t **tx, size_t *len,
                          uint64_t height, const uint8_t id[32])
{
    const uint8_t *rec;
    size_t rlen;
    Bex__BlockRecord *br;

    *prop = NULL;
    if (store_get_block(r, &rec, &rlen, height) != 0)
        return false;
    br = bex__block_record__unpack(NULL, rlen, rec);
    if (br == NULL)
        return false;
    *prop = bex__block_proposal__unpack(NULL, br->proposal.len, br->proposal.data);
    bex__block_record__free_unpacked(br, NULL);
    if (*prop == NULL)
        return false;
    for (size_t i = 0; i < (*prop)->n_txs; i++) {
        Bex__Tx *t = bex__tx__unpack(NULL, (*prop)->txs[i].len, (*prop)->txs[i].data);
        uint8_t h[32];
        bool match = false;

        if (t != NULL) {
            crypto_sha256(h, t->body.data, t->body.len);
            match = memcmp(h, id, 32) == 0;
            bex__tx__free_unpacked(t, NULL);
        }
        if (match) {
            *tx = (*prop)->txs[i].data;
            *len = (*prop)->txs[i].len;
            return true;
        }
    }
    return false;
}

/* The tx.get answer for id, or NULL when the node knows nothing of it. */
static json_t *tx_json(struct node *n, const uint8_t id[32])
{
    struct store_read *r;
    const uint8_t *rb;
    size_t rlen;
    json_t *obj = NULL;

    if (store_read_begin(ledger_store(n->ledger), &r) != 0)
        return NULL;
    if (store_get_receipt(r, &rb, &rlen, id) == 0) {
        Bex__Receipt *rc = bex__receipt__unpack(NULL, rlen, rb);

        if (rc != NULL) {
            Bex__BlockProposal *prop = NULL;
            const uint8_t *tx;
            size_t tlen;
            json_t *events = json_array();

            obj = json_pack("{s:o, s:s, s:I, s:I, s:i, s:s, s:s}", "id", hex_json(id, 32), "status", "committed",
                            "height", (json_int_t)rc->height, "index", (json_int_t)rc->index, "code", rc->code,
                            "code_name", rc->code ? bex_errname(rc->code) : "OK", "message",
                            rc->message ? rc->message : "");
            for (size_t i = 0; i < rc->n_events; i++)
                json_array_append_new(events, json_pack("{s:s, s:s}", "contract", rc->events[i]->contract, "kind",
                                                        rc->events[i]->kind));
            json_object_set_new(obj, "events", events);
            json_object_set_new(obj, "result", hex_json(rc->result.data, rc->result.len));
            if (find_in_block(r, &prop, &tx, &tlen, rc->height, id))
                describe_tx(obj, tx, tlen);
            if (prop != NULL)
                bex__block_proposal__free_unpacked(prop, NULL);
            bex__receipt__free_unpacked(rc, NULL);
        }
    } else {
        const struct mempool_tx *p = mempool_get(n->mempool, id);

        if (p != NULL) {
            obj = json_pack("{s:o, s:s}", "id", hex_json(id, 32), "status", "pending");
            describe_tx(obj, p->bytes, p->len);
        }
    }
    store_read_end(r);
    return obj;
}

static int param_id(struct rpc_call *call, uint8_t id[32], const json_t *params)
{
    size_t len;

    return rpc_param_hex(call, id, &len, 32, 32, params, "id", RPC_REQUIRED);
}

static void m_tx_get(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"id"};
    struct node *n = ud;
    uint8_t id[32];
    json_t *obj;

    if (!params_ok(call, params, names, 1) || param_id(call, id, params) != 0)
        return;
    obj = tx_json(n, id);
    if (obj == NULL) {
        rpc_reply_error(call, RPC_NOT_FOUND, "no such transaction", NULL);
        return;
    }
    rpc_reply(call, obj);
}

_Static_assert(NODE_WAITERS_MAX < UINT16_MAX, "waiter links are uint16_t");
_Static_assert((NODE_WAITER_BUCKETS & (NODE_WAITER_BUCKETS - 1)) == 0, "buckets: a power of two");

/* Tx ids are SHA-256 digests: their first bytes spread evenly over the buckets. */
static uint16_t *waiter_bucket(struct node *n, const uint8_t id[CRYPTO_HASH_BYTES])
{
    return &n->waiter_buckets[id_tag(id) >> 1 & (NODE_WAITER_BUCKETS - 1)];
}

/* Unlinks waiter w from its bucket and frees its slot. */
static void waiter_remove(struct node *n, uint32_t w)
{
    uint16_t *link = waiter_bucket(n, n->waiters[w].id);

    BEX_ASSERT(n->waiters[w].used);
    BEX_ASSERT(n->waiters_n > 0);
    while (*link != w + 1) {
        BEX_ASSERT(*link != 0);
        link = &n->waiters[*link - 1].next;
    }
    *link = n->waiters[w].next;
    memset(&n->waiters[w], 0, sizeof n->waiters[w]);
    n->waiters_n--;
}

static void wait_cancel(struct rpc_call *call, void *ud)
{
    struct node *n = ud;

    for (uint32_t i = 0; i < NODE_WAITERS_MAX; i++) {
        if (n->waiters[i].used && n->waiters[i].call == call)
            waiter_remove(n, i);
    }
}

int node_wait(struct node *n, struct rpc_call *call, const uint8_t id[CRYPTO_HASH_BYTES], uint64_t timeout_ms)
{
    for (uint32_t i = 0; i < NODE_WAITERS_MAX; i++) {
        struct node_waiter *w = &n->waiters[i];
        uint16_t *head;

        if (!w->used) {
            if (rpc_defer(call, wait_cancel, n) != 0)
                return -BEX_EFULL; /* rpc_defer answered the call */
            w->used = true;
            memcpy(w->id, id, 32);
            w->deadline_ms = uv_now(n->loop) + timeout_ms;
            w->call = call;
            head = waiter_bucket(n, id);
            w->next = *head;
            *head = (uint16_t)(i + 1);
            if (n->waiters_n++ == 0 || w->deadline_ms < n->waiters_due_ms)
                n->waiters_due_ms = w->deadline_ms;
            return 0;
        }
    }
    rpc_reply_error(call, RPC_UNAVAILABLE, "too many tx.wait calls in progress", NULL);
    return -BEX_EFULL;
}

static void m_tx_wait(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"id", "timeout_ms"};
    struct node *n = ud;
    uint64_t timeout = WAIT_DEFAULT_MS;
    uint8_t id[32];
    json_t *obj;

    if (!params_ok(call, params, names, 2) || param_id(call, id, params) != 0 ||
        rpc_param_uint64(call, &timeout, params, "timeout_ms", RPC_OPTIONAL) != 0)
        return;
    if (timeout > WAIT_MAX_MS) {
        rpc_reply_error(call, RPC_INVALID_PARAMS, "invalid params: 'timeout_ms' is at most 60000",
                        json_pack("{s:s}", "param", "timeout_ms"));
        return;
    }
    obj = tx_json(n, id);
    if (obj == NULL) {
        rpc_reply_error(call, RPC_NOT_FOUND, "no such transaction (neither pending nor committed)", NULL);
        return;
    }
    if (strcmp(json_string_value(json_object_get(obj, "status")), "committed") == 0) {
        rpc_reply(call, obj);
        return;
    }
    json_decref(obj);
    if (node_wait(n, call, id, timeout) != 0)
        LOG_D("rpc: tx.wait refused: too many waiting calls");
}

void node_rpc_committed(struct node *n, const struct ledger_applied *a)
{
    uint64_t now = uv_now(n->loop);

    for (size_t i = 0; i < a->out->receipt_count; i++) {
        const uint8_t *id = a->out->receipts[i].tx_id;
        uint64_t tag = id_tag(id);

        if (submits[tag % SUBMIT_SLOTS].tag == tag) {
            metrics_histogram_observe(n->m.commit_latency, 0,
                                      (double)(now - submits[tag % SUBMIT_SLOTS].ms) / 1000.0);
            submits[tag % SUBMIT_SLOTS].tag = 0;
        }
    }
    /* Each receipt looks in its own bucket: O(receipts), whatever the number of waiters. */
    for (size_t i = 0; i < a->out->receipt_count && n->waiters_n > 0; i++) {
        const uint8_t *id = a->out->receipts[i].tx_id;
        uint16_t link = *waiter_bucket(n, id);

        while (link != 0) {
            uint32_t w = link - 1u;
            struct node_waiter *wt = &n->waiters[w];
            struct rpc_call *call = wt->call;
            json_t *obj;

            link = wt->next;
            if (memcmp(wt->id, id, 32) != 0)
                continue;
            obj = tx_json(n, id);
            waiter_remove(n, w);
            if (obj != NULL)
                rpc_reply(call, obj);
            else
                rpc_reply_error(call, RPC_INTERNAL_ERROR, "committed but unreadable", NULL);
        }
    }
}

/* Scans the waiters only when the earliest deadline has come, and learns the next one. */
void node_rpc_expire(struct node *n, uint64_t now_ms)
{
    uint64_t due = UINT64_MAX;

    if (n->waiters_n == 0 || now_ms < n->waiters_due_ms)
        return;
    for (uint32_t w = 0; w < NODE_WAITERS_MAX; w++) {
        struct node_waiter *wt = &n->waiters[w];

        if (!wt->used)
            continue;
        if (now_ms >= wt->deadline_ms) {
            struct rpc_call *call = wt->call;

            waiter_remove(n, w);
            rpc_reply_error(call, RPC_TIMEOUT, "the transaction did not commit before the timeout", NULL);
        } else if (wt->deadline_ms < due) {
            due = wt->deadline_ms;
        }
    }
    n->waiters_due_ms = due;
}

/* ---------------------------------------------------------------- blocks, state, history */

/*
 * The receipt index of tx id when its receipt is in block height, else null:
 * a tx committed by an earlier block (skipped) or deferred (nonce ahead).
 */
static json_t *receipt_index_at(struct store_read *r, const uint8_t id[32], uint64_t height)
{
    const uint8_t *v;
    size_t len;
    Bex__Receipt *rc;
    json_t *out = json_null();

    if (store_get_receipt(r, &v, &len, id) != 0 || (rc = bex__receipt__unpack(NULL, len, v)) == NULL)
        return out;
    if (rc->height == height)
        out = json_integer((json_int_t)rc->index);
    bex__receipt__free_unpacked(rc, NULL);
    return out;
}

static void m_block_get(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"height"};
    struct node *n = ud;
    struct store_read *r;
    const uint8_t *rec, *cb;
    size_t rlen, clen;
    uint64_t height;
    Bex__BlockRecord *br = NULL;
    Bex__BlockProposal *bp = NULL;
    Bex__CommitCert *cc = NULL;
    json_t *obj, *txs = json_array(), *executed = json_array(), *cert = json_null();

    if (!params_ok(call, params, names, 1) || rpc_param_uint64(call, &height, params, "height", RPC_REQUIRED) != 0) {
        json_decref(txs);
        json_decref(executed);
        return;
    }
    if (store_read_begin(ledger_store(n->ledger), &r) != 0) {
        json_decref(txs);
        json_decref(executed);
        rpc_reply_error(call, RPC_UNAVAILABLE, "store unreadable", NULL);
        return;
    }
    if (store_get_block(r, &rec, &rlen, height) != 0 || (br = bex__block_record__unpack(NULL, rlen, rec)) == NULL) {
        store_read_end(r);
        json_decref(txs);
        json_decref(executed);
        rpc_reply_error(call, RPC_NOT_FOUND, "no block at that height", json_pack("{s:I}", "height", (json_int_t)height));
        return;
    }
    if (br->proposal.len > 0)
        bp = bex__block_proposal__unpack(NULL, br->proposal.len, br->proposal.data);
    for (size_t i = 0; bp != NULL && i < bp->n_txs; i++) {
        Bex__Tx *t = bex__tx__unpack(NULL, bp->txs[i].len, bp->txs[i].data);
        uint8_t id[32];

        if (t == NULL)
            continue;
        crypto_sha256(id, t->body.data, t->body.len);
        json_array_append_new(txs, hex_json(id, 32));
        json_array_append_new(executed, receipt_index_at(r, id, height));
        bex__tx__free_unpacked(t, NULL);
    }
    if (store_get_cert(r, &cb, &clen, height) == 0 && clen > 0 && (cc = bex__commit_cert__unpack(NULL, clen, cb))) {
        json_t *votes = json_array();

        for (size_t i = 0; i < cc->n_votes; i++)
            json_array_append_new(votes, json_pack("{s:I, s:o}", "replica", (json_int_t)cc->votes[i]->replica, "sig",
                                                   hex_json(cc->votes[i]->sig.data, cc->votes[i]->sig.len)));
        json_decref(cert);
        cert = json_pack("{s:I, s:I, s:o, s:o}", "view", (json_int_t)cc->view, "seq", (json_int_t)cc->seq, "digest",
                         hex_json(cc->digest.data, cc->digest.len), "votes", votes);
        bex__commit_cert__free_unpacked(cc, NULL);
    }
    obj = json_pack("{s:o, s:I, s:o, s:o, s:o, s:I, s:I, s:I, s:b, s:o, s:o}", "executed", executed, "height", (json_int_t)br->height, "hash",
                    hex_json(br->hash.data, br->hash.len), "prev_hash", hex_json(br->prev_hash.data, br->prev_hash.len),
                    "state_root", hex_json(br->state_root.data, br->state_root.len), "time_ms",
                    (json_int_t)(bp ? bp->time_ms : 0), "view", (json_int_t)(bp ? bp->view : 0), "proposer",
                    (json_int_t)(bp ? bp->proposer : 0), "null", height > 0 && bp == NULL, "txs", txs, "cert", cert);
    if (bp != NULL)
        bex__block_proposal__free_unpacked(bp, NULL);
    bex__block_record__free_unpacked(br, NULL);
    store_read_end(r);
    rpc_reply(call, obj);
}

static void m_state_query(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"contract", "query", "args"};
    struct node *n = ud;
    const char *contract, *query;
    const json_t *args;
    struct ledger_read *lr;
    char *args_text = NULL, *out = NULL, err[200] = "";
    int rc;

    if (!params_ok(call, params, names, 3) || rpc_param_string(call, &contract, params, "contract", RPC_REQUIRED) != 0 ||
        rpc_param_string(call, &query, params, "query", RPC_REQUIRED) != 0)
        return;
    args = json_object_get(params, "args");
    if (args != NULL && !json_is_object(args) && !json_is_null(args)) {
        rpc_reply_error(call, RPC_INVALID_PARAMS, "invalid params: 'args' must be an object",
                        json_pack("{s:s}", "param", "args"));
        return;
    }
    if (args != NULL && json_is_object(args))
        args_text = json_dumps(args, JSON_COMPACT);
    if ((rc = ledger_read_begin(n->ledger, &lr)) != 0) {
        free(args_text);
        rpc_reply_error(call, RPC_UNAVAILABLE, "store unreadable", NULL);
        return;
    }
    rc = contract_query_json(&out, err, sizeof err, ledger_read_store(lr), contract, query, args_text);
    ledger_read_end(lr);
    free(args_text);
    if (rc != 0) {
        int code = rc == -BEX_ENOTFOUND ? RPC_NOT_FOUND : rc == -BEX_EUNKNOWN ? RPC_METHOD_NOT_FOUND
                                                                                : RPC_INVALID_PARAMS;
        char msg[260];

        snprintf(msg, sizeof msg, "%s.%s: %s", contract, query, err[0] ? err : bex_strerror(rc));
        rpc_reply_error(call, code, msg, json_pack("{s:s}", "reason", bex_errname(rc)));
        return;
    }
    rpc_reply(call, json_loads(out, 0, NULL));
    free(out);
}

static void list_cb(void *user, const char *contract, const char *kind, const char *name)
{
    json_t *obj = user;
    const ProtobufCMessageDescriptor *ad = NULL, *rd = NULL;

    if (contract_describe(&ad, &rd, contract, kind, name) != 0)
        ad = rd = NULL;
    json_array_append_new(json_object_get(obj, strcmp(kind, "method") == 0 ? "methods" : "queries"),
                          json_pack("{s:s, s:s, s:s, s:s}", "contract", contract, "name", name, "args",
                                    ad ? ad->name : "", "result", rd ? rd->name : ""));
}

static void m_contract_list(struct rpc_call *call, const json_t *params, void *ud)
{
    json_t *obj;

    (void)ud;
    if (!params_ok(call, params, NULL, 0))
        return;
    obj = json_pack("{s:[], s:[]}", "methods", "queries");
    contract_list(list_cb, obj);
    rpc_reply(call, obj);
}

static void m_history(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *names[] = {"key", "before_height", "before_index", "limit"};
    struct node *n = ud;
    const char *key;
    uint64_t bh = 0, bi = 0, limit = 50;
    struct store_history_item items[HISTORY_MAX];
    struct store_history_pos pos;
    struct store_read *r;
    size_t got = 0;
    bool more = false;
    json_t *arr;
    int rc;

    if (!params_ok(call, params, names, 4) || rpc_param_string(call, &key, params, "key", RPC_REQUIRED) != 0 ||
        rpc_param_uint64(call, &bh, params, "before_height", RPC_OPTIONAL) != 0 ||
        rpc_param_uint64(call, &bi, params, "before_index", RPC_OPTIONAL) != 0 ||
        rpc_param_uint64(call, &limit, params, "limit", RPC_OPTIONAL) != 0)
        return;
    if (limit == 0 || limit > HISTORY_MAX) {
        rpc_reply_error(call, RPC_INVALID_PARAMS, "invalid params: 'limit' must be 1..500",
                        json_pack("{s:s}", "param", "limit"));
        return;
    }
    if (strlen(key) == 0 || strlen(key) > STORE_KEY_BYTES_MAX) {
        rpc_reply_error(call, RPC_INVALID_PARAMS, "invalid params: 'key' must be 1..448 bytes",
                        json_pack("{s:s}", "param", "key"));
        return;
    }
    if (store_read_begin(ledger_store(n->ledger), &r) != 0) {
        rpc_reply_error(call, RPC_UNAVAILABLE, "store unreadable", NULL);
        return;
    }
    pos.height = bh;
    pos.index = (uint32_t)bi;
    rc = store_scan_history(r, items, limit, &got, &more, (const uint8_t *)key, strlen(key), bh ? &pos : NULL);
    arr = json_array();
    for (size_t i = 0; rc == 0 && i < got; i++)
        json_array_append_new(arr, json_pack("{s:I, s:I, s:o}", "height", (json_int_t)items[i].height, "index",
                                             (json_int_t)items[i].index, "tx_id", hex_json(items[i].tx_id, 32)));
    store_read_end(r);
    if (rc != 0) {
        json_decref(arr);
        rpc_reply_bex(call, RPC_INTERNAL_ERROR, rc, "history unreadable");
        return;
    }
    rpc_reply(call, json_pack("{s:o, s:b}", "entries", arr, "more", more));
}

/* ---------------------------------------------------------------- health */

static bool health(struct rpc_health *out, void *ud)
{
    struct node *n = ud;
    uint32_t up = p2p_peer_count(&n->p2p) + 1, q = pbft_quorum(n->gen.nodes_n);

    out->has_chain = true;
    out->height = ledger_height(n->ledger);
    out->view = pbft_view(n->pbft);
    if (n->store_failed) {
        snprintf(out->reason, sizeof out->reason, "store refuses writes: %.230s", n->store_err);
        return false;
    }
    if (n->catching_up) {
        snprintf(out->reason, sizeof out->reason, "catching up: height %" PRIu64 " of %" PRIu64, out->height,
                 n->fetch_target);
        return false;
    }
    if (up < q) {
        snprintf(out->reason, sizeof out->reason, "connected to %u of %u nodes; consensus needs %u", up,
                 n->gen.nodes_n, q);
        return false;
    }
    snprintf(out->reason, sizeof out->reason, "height %" PRIu64 ", view %" PRIu64, out->height, out->view);
    return true;
}

int node_rpc_register(struct node *n)
{
    static const struct {
        const char *name;
        rpc_handler_fn fn;
    } methods[] = {
        {"status", m_status},
        {"peers", m_peers},
        {"account.nonce", m_nonce},
        {"tx.submit", m_submit},
        {"tx.submit_batch", m_submit_batch},
        {"tx.get", m_tx_get},
        {"tx.wait", m_tx_wait},
        {"block.get", m_block_get},
        {"state.query", m_state_query},
        {"contract.list", m_contract_list},
        {"history", m_history},
    };
    int rc;

    for (size_t i = 0; i < BEX_ARRAY_LEN(methods); i++) {
        if ((rc = rpc_register(&n->rpc, methods[i].name, methods[i].fn, n)) != 0)
            return rc;
    }
    rpc_set_health(&n->rpc, health, n);
    return 0;
}
