/*
 * cli_test: bexctl without bexd.
 *
 * The first half tests the pieces: option parsing, durations and times,
 * lists, the records file format, tables and fields, and that usage errors
 * exit with 2 before any network traffic.
 *
 * The second half runs the commands against a fake node: the real RPC
 * server (rpc.h) on a loop thread, serving the methods of RPC.md from the
 * real executor over a memstore. Every submitted tx runs at once in its own
 * block. The fake node also plays each owner's automatic services with
 * sealing.h exactly as a real owner node would: it shares the index key
 * when a grant becomes active, releases field keys on an access request
 * (unless told to hold them for an officer), and answers verifications.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bex.h"
#include "cli.h"
#include "cli_internal.h"
#include "contract.h"
#include "crypto.h"
#include "keystore.h"
#include "rpc.h"
#include "sealing.h"
#include "txbuild.h"

#define CHAIN "bex-cli-test"
#define PASS "test passphrase"
#define TXS_MAX 2048

/* ------------------------------------------------------------ the keys */

enum { TRAFFIC, POLICE, TAX, AGENCIES };

struct agency_keys {
    const char *id;
    const char *role;
    size_t officers;
    uint32_t threshold;
    struct crypto_seckey officer_sk[3];
    struct crypto_pubkey officer_pk[3];
    struct crypto_seckey node_sk, enc_sk;
    struct crypto_pubkey node_pk, enc_pk;
    char officer_file[3][128];
    char enc_file[128];
};

static struct agency_keys AG[AGENCIES] = {
    {.id = "city.traffic", .role = "traffic", .officers = 3, .threshold = 2},
    {.id = "city.police", .role = "police", .officers = 1, .threshold = 1},
    {.id = "city.tax", .role = "finance", .officers = 1, .threshold = 1},
};
static char DIR_[64];

static void derive(struct crypto_seckey *sk, struct crypto_pubkey *pk, const char *id, const char *what)
{
    char label[128];
    snprintf(label, sizeof(label), "%s/%s", id, what);
    crypto_sha256(sk->b, label, strlen(label));
    assert_int_equal(crypto_pubkey_of(pk, sk), 0);
}

static void write_key(char *path, size_t size, const struct crypto_seckey *sk, const char *name)
{
    char err[256];
    snprintf(path, size, "%s/%s.key", DIR_, name);
    assert_int_equal(keystore_write(path, sk, PASS, KEYSTORE_SCRYPT_LOG2N_MIN, 0, err, sizeof(err)), 0);
}

static int group_setup(void **state)
{
    (void)state;
    if (crypto_init() != 0)
        return -1;
    strcpy(DIR_, "/tmp/bex-cli-test-XXXXXX");
    if (mkdtemp(DIR_) == NULL)
        return -1;
    setenv(KEYSTORE_PASSPHRASE_ENV, PASS, 1);
    unsetenv(CLI_NODE_ENV);
    unsetenv(CLI_AGENCY_ENV);
    for (int a = 0; a < AGENCIES; a++) {
        struct agency_keys *k = &AG[a];
        char name[64];
        for (size_t i = 0; i < k->officers; i++) {
            snprintf(name, sizeof(name), "officer%zu", i);
            derive(&k->officer_sk[i], &k->officer_pk[i], k->id, name);
            snprintf(name, sizeof(name), "%s-officer%zu", k->id, i);
            write_key(k->officer_file[i], sizeof(k->officer_file[i]), &k->officer_sk[i], name);
        }
        derive(&k->node_sk, &k->node_pk, k->id, "node");
        derive(&k->enc_sk, &k->enc_pk, k->id, "enc");
        snprintf(name, sizeof(name), "%s-enc", k->id);
        write_key(k->enc_file, sizeof(k->enc_file), &k->enc_sk, name);
    }
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", DIR_);
    if (system(cmd) != 0)
        return -1;
    crypto_close();
    return 0;
}

/* ------------------------------------------------------------ fake node */

struct fake {
    uv_loop_t loop;
    uv_async_t stop;
    struct rpc rpc;
    pthread_t thread;
    char url[64];
    struct memstore *ms;
    struct exec_store st;
    struct exec *e;
    uint64_t height;
    uint64_t time_ms;
    uint8_t root[CONTRACT_HASH_BYTES];
    json_t *txs;    /* id hex -> tx.get answer */
    json_t *blocks; /* block.get answers, index height - 1 */
    bool hold;      /* the owner service leaves accesses open */
    int steal;      /* refuse this many tx.submit calls with ENONCE */
    size_t batches; /* tx.submit_batch calls */
};

static struct fake F;

static int agency_index(const char *id)
{
    for (int a = 0; a < AGENCIES; a++)
        if (strcmp(AG[a].id, id) == 0)
            return a;
    return -1;
}

static uint64_t fake_nonce(struct fake *f, const char *agency)
{
    char key[128];
    const uint8_t *v;
    size_t len;
    uint64_t n = 0;
    snprintf(key, sizeof(key), "nonce/%s", agency);
    if (f->st.get(f->st.user, key, strlen(key), &v, &len) != 0 || len != 8)
        return 0;
    for (size_t i = 0; i < 8; i++)
        n = n << 8 | v[i];
    return n;
}

/* Runs a query on the fake node's state; NULL when it fails. */
static ProtobufCMessage *fake_query(struct fake *f, const char *contract, const char *query,
                                    const ProtobufCMessage *args)
{
    ProtobufCMessage *out = NULL;
    uint8_t buf[4096];
    size_t len = protobuf_c_message_get_packed_size(args);
    assert_true(len <= sizeof(buf));
    protobuf_c_message_pack(args, buf);
    if (contract_query(&out, NULL, 0, &f->st, contract, query, buf, len) != 0)
        return NULL;
    return out;
}

static json_t *hex_json(const uint8_t *b, size_t len)
{
    char *hex = malloc(2 * len + 1);
    assert_non_null(hex);
    assert_int_equal(crypto_hex_encode(hex, 2 * len + 1, b, len), 0);
    json_t *j = json_string(hex);
    free(hex);
    return j;
}

/* The tx.get answer of receipt r of tx bytes. */
static json_t *receipt_json(const struct exec_output *out, const struct exec_receipt *r, const uint8_t *tx,
                            size_t tx_len)
{
    Bex__Tx *t = bex__tx__unpack(NULL, tx_len, tx);
    assert_non_null(t);
    Bex__TxBody *b = bex__tx_body__unpack(NULL, t->body.len, t->body.data);
    assert_non_null(b);
    Bex__Receipt *rc = bex__receipt__unpack(NULL, r->encoded_len, r->encoded);
    assert_non_null(rc);
    const ProtobufCMessageDescriptor *ad, *rd;
    json_t *args = json_null();
    if (contract_describe(&ad, &rd, b->contract, "method", b->method) == 0) {
        ProtobufCMessage *m = protobuf_c_message_unpack(ad, NULL, b->args.len, b->args.data);
        if (m != NULL) {
            json_decref(args);
            args = cli_msg_json(m);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    json_t *events = json_array();
    for (size_t i = 0; i < out->event_count; i++)
        if (out->events[i].tx_index == r->index)
            json_array_append_new(events, json_pack("{s:s, s:s}", "contract", out->events[i].contract, "kind",
                                                    out->events[i].kind));
    json_t *j = json_pack("{s:o, s:s, s:I, s:I, s:i, s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:o}", "id",
                          hex_json(r->tx_id, 32), "status", "committed", "height", (json_int_t)out->height,
                          "index", (json_int_t)r->index, "code", r->code, "code_name",
                          r->code ? bex_errname(r->code) : "OK", "message", rc->message, "sender", b->sender,
                          "nonce", (json_int_t)b->nonce, "contract", b->contract, "method", b->method, "args",
                          args, "events", events, "result", hex_json(rc->result.data, rc->result.len));
    assert_non_null(j);
    bex__receipt__free_unpacked(rc, NULL);
    bex__tx_body__free_unpacked(b, NULL);
    bex__tx__free_unpacked(t, NULL);
    return j;
}

/* Signs a service tx of the owner `a` with its node key. */
static void service_tx(struct fake *f, uint8_t **txs, size_t *lens, size_t *n, uint64_t *nonces, int a,
                       const char *contract, const char *method, const ProtobufCMessage *args)
{
    uint8_t packed[64 * 1024], id[32];
    size_t len = protobuf_c_message_get_packed_size(args);
    assert_true(len <= sizeof(packed) && *n < 64);
    protobuf_c_message_pack(args, packed);
    if (nonces[a] == 0)
        nonces[a] = fake_nonce(f, AG[a].id) + 1;
    struct txbuild t = {.chain_id = CHAIN,
                        .sender = AG[a].id,
                        .nonce = nonces[a]++,
                        .contract = contract,
                        .method = method,
                        .args = packed,
                        .args_len = len,
                        .timestamp_ms = f->time_ms};
    assert_int_equal(txbuild_sign(&txs[*n], &lens[*n], id, &t, &AG[a].node_sk, 1), 0);
    (*n)++;
}

static const Bex__RecordField *rec_field(const Bex__Record *rec, const char *name)
{
    for (size_t i = 0; i < rec->n_fields; i++)
        if (strcmp(rec->fields[i]->name, name) == 0)
            return rec->fields[i];
    return NULL;
}

/* The owner releases the granted, non-sensitive fields of an access. */
static void service_access(struct fake *f, uint8_t **txs, size_t *lens, size_t *n, uint64_t *nonces,
                           const Bex__AccessResult *ar)
{
    Bex__IdArgs ida = BEX__ID_ARGS__INIT;
    ida.id = ar->access_id;
    Bex__Access *x = (Bex__Access *)fake_query(f, "access", "get", &ida.base);
    assert_non_null(x);
    int o = agency_index(x->owner), c = agency_index(x->consumer);
    assert_true(o >= 0 && c >= 0);
    /* A held request waits for an officer (bexctl access deny). */
    if (f->hold) {
        contract_result_free(&x->base);
        return;
    }
    ida.id = x->grant_id;
    Bex__Grant *g = (Bex__Grant *)fake_query(f, "grant", "get", &ida.base);
    Bex__NameArgs na = BEX__NAME_ARGS__INIT;
    na.id = x->resource;
    Bex__Resource *r = (Bex__Resource *)fake_query(f, "catalog", "get", &na.base);
    Bex__RecordGetArgs rg = BEX__RECORD_GET_ARGS__INIT;
    rg.resource = x->resource;
    rg.key = x->record_key;
    Bex__Record *rec = (Bex__Record *)fake_query(f, "record", "get", &rg.base);
    assert_true(g != NULL && r != NULL && rec != NULL);

    Bex__FieldKey keys[CLI_FIELDS_MAX], *keyp[CLI_FIELDS_MAX];
    uint8_t wrapped[CLI_FIELDS_MAX][SEALING_WRAPPED_BYTES];
    size_t nk = 0;
    for (size_t i = 0; i < g->n_fields; i++) {
        const Bex__RecordField *rf = rec_field(rec, g->fields[i]);
        bool sensitive = false;
        for (size_t k = 0; k < r->n_fields; k++)
            if (strcmp(r->fields[k]->name, g->fields[i]) == 0)
                sensitive = r->fields[k]->sensitive;
        if (rf == NULL || rf->value_case != BEX__RECORD_FIELD__VALUE_SEALED || sensitive)
            continue;
        struct sealing_ref ref = {
            .resource = x->resource, .key = x->record_key.data, .key_len = x->record_key.len, .field = rf->name};
        assert_int_equal(sealing_rewrap(wrapped[nk], &AG[o].enc_sk, &AG[c].enc_pk, &ref, rf->sealed->wrapped_key.data,
                                        rf->sealed->wrapped_key.len),
                         0);
        bex__field_key__init(&keys[nk]);
        keys[nk].field = rf->name;
        keys[nk].wrapped_key.data = wrapped[nk];
        keys[nk].wrapped_key.len = SEALING_WRAPPED_BYTES;
        keyp[nk] = &keys[nk];
        nk++;
    }
    Bex__AccessReleaseArgs rel = BEX__ACCESS_RELEASE_ARGS__INIT;
    rel.access_id = x->id;
    rel.keys = keyp;
    rel.n_keys = nk;
    service_tx(f, txs, lens, n, nonces, o, "access", "release", &rel.base);
    contract_result_free(&rec->base);
    contract_result_free(&r->base);
    contract_result_free(&g->base);
    contract_result_free(&x->base);
}

/* The owner opens a claim, compares it with the record and answers. */
static void service_verify(struct fake *f, uint8_t **txs, size_t *lens, size_t *n, uint64_t *nonces,
                           const Bex__VerifyResult *vr)
{
    Bex__IdArgs ida = BEX__ID_ARGS__INIT;
    ida.id = vr->verify_id;
    Bex__Verification *v = (Bex__Verification *)fake_query(f, "verify", "get", &ida.base);
    assert_non_null(v);
    Bex__RecordGetArgs rg = BEX__RECORD_GET_ARGS__INIT;
    rg.resource = v->resource;
    rg.key = v->record_key;
    Bex__Record *rec = (Bex__Record *)fake_query(f, "record", "get", &rg.base);
    assert_non_null(rec);
    int o = agency_index(v->owner);
    const Bex__RecordField *rf = rec_field(rec, v->field);
    bool match = false;
    if (rf != NULL && rf->value_case == BEX__RECORD_FIELD__VALUE_SEALED) {
        struct sealing_ref ref = {
            .resource = v->resource, .key = v->record_key.data, .key_len = v->record_key.len, .field = v->field};
        if (sealing_claim_check(&match, &AG[o].enc_sk, &ref, v->consumer, v->claim.data, v->claim.len,
                                rf->sealed->wrapped_key.data, rf->sealed->wrapped_key.len,
                                rf->sealed->ciphertext.data, rf->sealed->ciphertext.len) != 0)
            match = false;
    }
    Bex__VerifyAnswerArgs ans = BEX__VERIFY_ANSWER_ARGS__INIT;
    ans.verify_id = v->id;
    ans.match = match;
    service_tx(f, txs, lens, n, nonces, o, "verify", "answer", &ans.base);
    contract_result_free(&rec->base);
    contract_result_free(&v->base);
}

/* The owner shares its index key with the consumer of a grant that became active. */
static void service_grant(struct fake *f, uint8_t **txs, size_t *lens, size_t *n, uint64_t *nonces,
                          const Bex__Grant *g)
{
    uint8_t wrapped[SEALING_WRAPPED_BYTES];
    int o = agency_index(g->owner), c = agency_index(g->consumer);
    assert_true(o >= 0 && c >= 0);
    assert_int_equal(sealing_index_share(wrapped, &AG[o].enc_sk, &AG[c].enc_pk, g->resource, g->consumer), 0);
    Bex__RecordShareIndexArgs s = BEX__RECORD_SHARE_INDEX_ARGS__INIT;
    s.grant_id = g->id;
    s.wrapped_index_key.data = wrapped;
    s.wrapped_index_key.len = sizeof(wrapped);
    service_tx(f, txs, lens, n, nonces, o, "record", "share_index", &s.base);
}

/* Executes txs as one block, stores the receipts, then the services' txs in the next blocks. */
static void fake_run(struct fake *f, uint8_t **txs, size_t *lens, size_t n)
{
    for (int round = 0; n > 0 && round < 4; round++) {
        const struct exec_output *out;
        uint64_t now = cli_now_ms();
        f->time_ms = now > f->time_ms ? now : f->time_ms + 1;
        assert_int_equal(exec_block_begin(f->e, f->height + 1, f->time_ms, f->root), 0);
        for (size_t i = 0; i < n; i++) {
            int code;
            assert_int_equal(exec_tx(f->e, &code, txs[i], lens[i]), 0);
        }
        assert_int_equal(exec_block_end(f->e, &out), 0);
        assert_int_equal(memstore_apply(f->ms, out), 0);
        json_t *ids = json_array();
        for (size_t i = 0; i < out->receipt_count; i++) {
            json_t *j = receipt_json(out, &out->receipts[i], txs[i], lens[i]);
            json_array_append(ids, json_object_get(j, "id"));
            json_object_set_new(f->txs, json_string_value(json_object_get(j, "id")), j);
        }
        json_array_append_new(f->blocks,
                              json_pack("{s:I, s:o, s:o, s:o, s:I, s:i, s:i, s:b, s:o, s:{s:i, s:I, s:s, s:[]}}",
                                        "height", (json_int_t)out->height, "hash", hex_json(out->state_root, 32),
                                        "prev_hash", hex_json(f->root, 32), "state_root",
                                        hex_json(out->state_root, 32), "time_ms", (json_int_t)out->time_ms, "view",
                                        0, "proposer", 0, "null", 0, "txs", ids, "cert", "view", 0, "seq",
                                        (json_int_t)out->height, "digest", "", "votes"));
        f->height = out->height;
        memcpy(f->root, out->state_root, 32);
        for (size_t i = 0; i < n; i++)
            free(txs[i]);

        /* The owners' services answer what this block asked of them. */
        uint8_t *next[64];
        size_t next_lens[64], m = 0;
        uint64_t nonces[AGENCIES] = {0};
        for (size_t i = 0; i < out->event_count; i++) {
            const struct exec_event *ev = &out->events[i];
            if (strcmp(ev->contract, "grant") == 0 &&
                (strcmp(ev->kind, "approved") == 0 || strcmp(ev->kind, "activated") == 0)) {
                Bex__Grant *g = bex__grant__unpack(NULL, ev->data_len, ev->data);
                service_grant(f, next, next_lens, &m, nonces, g);
                bex__grant__free_unpacked(g, NULL);
            } else if (strcmp(ev->contract, "access") == 0 && strcmp(ev->kind, "requested") == 0) {
                Bex__AccessResult *ar = bex__access_result__unpack(NULL, ev->data_len, ev->data);
                service_access(f, next, next_lens, &m, nonces, ar);
                bex__access_result__free_unpacked(ar, NULL);
            } else if (strcmp(ev->contract, "verify") == 0 && strcmp(ev->kind, "requested") == 0) {
                Bex__VerifyResult *vr = bex__verify_result__unpack(NULL, ev->data_len, ev->data);
                service_verify(f, next, next_lens, &m, nonces, vr);
                bex__verify_result__free_unpacked(vr, NULL);
            }
        }
        memcpy(txs, next, m * sizeof(*txs));
        memcpy(lens, next_lens, m * sizeof(*lens));
        n = m;
    }
    assert_int_equal(n, 0);
}

/* Checks a tx as a node does before its mempool: decoding, chain, signatures, nonce. */
static int fake_check(uint8_t *tx, size_t len, uint64_t *next, char *why, size_t why_len)
{
    Bex__Tx *t = bex__tx__unpack(NULL, len, tx);
    Bex__TxBody *b = t != NULL ? bex__tx_body__unpack(NULL, t->body.len, t->body.data) : NULL;
    uint8_t digest[32];
    int rc = 0, a;

    if (b == NULL) {
        snprintf(why, why_len, "not a tx");
        rc = BEX_EDECODE;
    } else if (strcmp(b->chain_id, CHAIN) != 0) {
        snprintf(why, why_len, "chain %s", b->chain_id);
        rc = BEX_ECHAIN;
    } else if ((a = agency_index(b->sender)) < 0) {
        snprintf(why, why_len, "unknown sender %s", b->sender);
        rc = BEX_EUNKNOWN;
    } else {
        crypto_sha256(digest, t->body.data, t->body.len);
        for (size_t i = 0; i < t->n_sigs && rc == 0; i++) {
            struct crypto_pubkey pk;
            struct crypto_sig sig;
            if (t->sigs[i]->pubkey.len != 33 || t->sigs[i]->sig.len != 64) {
                rc = BEX_ESIG;
                break;
            }
            memcpy(pk.b, t->sigs[i]->pubkey.data, 33);
            memcpy(sig.b, t->sigs[i]->sig.data, 64);
            if (crypto_verify(&pk, digest, &sig) != 0)
                rc = BEX_ESIG;
        }
        if (rc == BEX_ESIG)
            snprintf(why, why_len, "a signature does not verify");
        if (rc == 0 && b->nonce != next[a]) {
            snprintf(why, why_len, "nonce %llu, expected %llu", (unsigned long long)b->nonce,
                     (unsigned long long)next[a]);
            rc = BEX_ENONCE;
        }
        if (rc == 0)
            next[a]++;
    }
    if (b != NULL)
        bex__tx_body__free_unpacked(b, NULL);
    if (t != NULL)
        bex__tx__free_unpacked(t, NULL);
    return rc;
}

static void next_nonces(struct fake *f, uint64_t *next)
{
    for (int a = 0; a < AGENCIES; a++)
        next[a] = fake_nonce(f, AG[a].id) + 1;
}

static bool tx_bytes(const char *hex, uint8_t **tx, size_t *len)
{
    size_t size = hex != NULL ? strlen(hex) / 2 + 1 : 0;
    *tx = size ? malloc(size) : NULL;
    if (*tx == NULL || crypto_hex_decode(*tx, size, len, hex) != 0) {
        free(*tx);
        return false;
    }
    return true;
}

static void m_status(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    (void)params;
    rpc_reply(call, json_pack("{s:s, s:i, s:s, s:I, s:i, s:i, s:b, s:I, s:i, s:i}", "chain_id", CHAIN,
                              "node_index", 0, "agency", AG[TRAFFIC].id, "height", (json_int_t)f->height, "view", 0,
                              "primary", 0, "view_active", 1, "last_block_time_ms", (json_int_t)f->time_ms,
                              "peers_connected", 0, "peers_total", 0));
}

static void m_peers(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)params, (void)ud;
    rpc_reply(call, json_pack("{s:[{s:i, s:s, s:s, s:b, s:i, s:i}]}", "peers", "index", 1, "agency", "city.police",
                              "address", "127.0.0.1:26602", "connected", 1, "bytes_in", 1234, "bytes_out", 99));
}

static void m_nonce(struct rpc_call *call, const json_t *params, void *ud)
{
    const char *agency;
    if (rpc_param_string(call, &agency, params, "agency", RPC_REQUIRED) != 0)
        return;
    uint64_t last = fake_nonce(ud, agency);
    rpc_reply(call, json_pack("{s:s, s:I, s:I}", "agency", agency, "last_committed", (json_int_t)last, "next",
                              (json_int_t)last + 1));
}

static void m_submit(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    const char *hex;
    uint8_t *txs[64];
    size_t lens[64];
    uint64_t next[AGENCIES];
    char why[128];
    if (rpc_param_string(call, &hex, params, "tx", RPC_REQUIRED) != 0)
        return;
    if (!tx_bytes(hex, &txs[0], &lens[0])) {
        rpc_reply_error(call, RPC_INVALID_PARAMS, "tx is not hex", NULL);
        return;
    }
    next_nonces(f, next);
    int rc = fake_check(txs[0], lens[0], next, why, sizeof(why));
    /* Another client of the same agency got there first. */
    if (rc == 0 && f->steal > 0) {
        f->steal--;
        rc = BEX_ENONCE;
        snprintf(why, sizeof(why), "nonce taken");
    }
    if (rc != 0) {
        free(txs[0]);
        rpc_reply_bex(call, RPC_TX_REJECTED, rc, why);
        return;
    }
    uint8_t id[32];
    Bex__Tx *t = bex__tx__unpack(NULL, lens[0], txs[0]);
    crypto_sha256(id, t->body.data, t->body.len);
    bex__tx__free_unpacked(t, NULL);
    fake_run(f, txs, lens, 1);
    rpc_reply(call, json_pack("{s:o}", "id", hex_json(id, 32)));
}

static void m_submit_batch(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    const json_t *arr;
    static uint8_t *txs[1000];
    static size_t lens[1000];
    uint64_t next[AGENCIES];
    size_t n = 0, i;
    json_t *v, *results = json_array();
    if (rpc_param_array(call, &arr, params, "txs", 1000, RPC_REQUIRED) != 0) {
        json_decref(results);
        return;
    }
    f->batches++;
    next_nonces(f, next);
    json_array_foreach(arr, i, v)
    {
        char why[128];
        uint8_t *tx;
        size_t len;
        if (!tx_bytes(json_string_value(v), &tx, &len)) {
            json_array_append_new(results, json_pack("{s:{s:i, s:s, s:s}}", "error", "code", RPC_TX_REJECTED,
                                                     "reason", "EDECODE", "message", "not hex"));
            continue;
        }
        int rc = fake_check(tx, len, next, why, sizeof(why));
        /* The second tx of a batch loses its nonce; the later ones then miss theirs. */
        if (rc == 0 && i == 1 && f->steal > 0) {
            f->steal--;
            rc = BEX_ENONCE;
            snprintf(why, sizeof(why), "nonce taken");
        }
        if (rc != 0) {
            free(tx);
            json_array_append_new(results, json_pack("{s:{s:i, s:s, s:s}}", "error", "code", RPC_TX_REJECTED,
                                                     "reason", bex_errname(rc), "message", why));
            continue;
        }
        uint8_t id[32];
        Bex__Tx *t = bex__tx__unpack(NULL, len, tx);
        crypto_sha256(id, t->body.data, t->body.len);
        bex__tx__free_unpacked(t, NULL);
        json_array_append_new(results, json_pack("{s:o}", "id", hex_json(id, 32)));
        txs[n] = tx;
        lens[n++] = len;
    }
    fake_run(f, txs, lens, n);
    rpc_reply(call, json_pack("{s:o}", "results", results));
}

static void m_tx_get(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    const char *id;
    if (rpc_param_string(call, &id, params, "id", RPC_REQUIRED) != 0)
        return;
    json_t *j = json_object_get(f->txs, id);
    if (j == NULL) {
        rpc_reply_bex(call, RPC_NOT_FOUND, BEX_ENOTFOUND, "no such tx");
        return;
    }
    rpc_reply(call, json_deep_copy(j));
}

static void m_block(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    uint64_t h;
    if (rpc_param_uint64(call, &h, params, "height", RPC_REQUIRED) != 0)
        return;
    json_t *b = h >= 1 ? json_array_get(f->blocks, h - 1) : NULL;
    if (b == NULL) {
        rpc_reply_bex(call, RPC_NOT_FOUND, BEX_ENOTFOUND, "no such block");
        return;
    }
    rpc_reply(call, json_deep_copy(b));
}

static void m_query(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    const char *contract, *query;
    char err[256], *out = NULL, *args = NULL;
    if (rpc_param_string(call, &contract, params, "contract", RPC_REQUIRED) != 0 ||
        rpc_param_string(call, &query, params, "query", RPC_REQUIRED) != 0)
        return;
    json_t *a = json_object_get(params, "args");
    if (a != NULL)
        args = json_dumps(a, JSON_COMPACT);
    int rc = contract_query_json(&out, err, sizeof(err), &f->st, contract, query, args);
    free(args);
    if (rc != 0) {
        rpc_reply_bex(call, rc == -BEX_ENOTFOUND ? RPC_NOT_FOUND : RPC_INVALID_PARAMS, -rc, err);
        return;
    }
    rpc_reply(call, json_loads(out, 0, NULL));
    free(out);
}

struct grep {
    const uint8_t *needle;
    size_t len;
    bool found;
};

static int grep_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct grep *g = user;
    g->found = g->found || memmem(key, key_len, g->needle, g->len) != NULL ||
               memmem(val, val_len, g->needle, g->len) != NULL;
    return 0;
}

/* test.grep {text}: whether any state key or value contains the text. */
static void m_grep(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    const char *text;
    if (rpc_param_string(call, &text, params, "text", RPC_REQUIRED) != 0)
        return;
    struct grep g = {.needle = (const uint8_t *)text, .len = strlen(text)};
    assert_int_equal(f->st.iter(f->st.user, "", 0, NULL, 0, grep_cb, &g), 0);
    rpc_reply(call, json_pack("{s:b}", "found", g.found));
}

/* test.hold {on}: whether the owner service leaves accesses open. */
static void m_hold(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    bool on = false;
    if (rpc_param_bool(call, &on, params, "on", RPC_REQUIRED) != 0)
        return;
    f->hold = on;
    rpc_reply(call, json_pack("{s:b}", "hold", on));
}

/* test.steal {n}: the next n tx.submit calls are refused with ENONCE. */
static void m_steal(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    uint64_t n = 0;
    if (rpc_param_uint64(call, &n, params, "n", RPC_REQUIRED) != 0)
        return;
    f->steal = (int)n;
    rpc_reply(call, json_pack("{s:I}", "steal", (json_int_t)n));
}

/* test.batches {}: how many tx.submit_batch calls arrived. */
static void m_batches(struct rpc_call *call, const json_t *params, void *ud)
{
    struct fake *f = ud;
    (void)params;
    rpc_reply(call, json_pack("{s:I}", "batches", (json_int_t)f->batches));
}

static void on_stop(uv_async_t *a)
{
    rpc_close(&F.rpc);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&F.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int fake_setup(void **state)
{
    static const struct {
        const char *name;
        rpc_handler_fn fn;
    } methods[] = {{"status", m_status},        {"peers", m_peers},         {"account.nonce", m_nonce},
                   {"tx.submit", m_submit},     {"tx.submit_batch", m_submit_batch},
                   {"tx.get", m_tx_get},        {"tx.wait", m_tx_get},      {"block.get", m_block},
                   {"state.query", m_query},    {"test.grep", m_grep},      {"test.hold", m_hold},
                   {"test.batches", m_batches}, {"test.steal", m_steal}};
    struct rpc_config cfg;
    const struct exec_output *out;
    Bex__Agency msgs[AGENCIES];
    const Bex__Agency *ptrs[AGENCIES];
    ProtobufCBinaryData keys[AGENCIES][3];
    char *roles[AGENCIES][1];
    (void)state;

    memset(&F, 0, sizeof(F));
    F.txs = json_object();
    F.blocks = json_array();
    struct exec_config ecfg = {.chain_id = CHAIN};
    if (memstore_new(&F.ms, 1u << 20, 256u << 20) != 0)
        return -1;
    memstore_store(F.ms, &F.st);
    if (exec_new(&F.e, &ecfg, &F.st) != 0)
        return -1;
    for (int a = 0; a < AGENCIES; a++) {
        bex__agency__init(&msgs[a]);
        msgs[a].id = (char *)AG[a].id;
        msgs[a].name = (char *)AG[a].id;
        roles[a][0] = (char *)AG[a].role;
        msgs[a].roles = roles[a];
        msgs[a].n_roles = 1;
        for (size_t i = 0; i < AG[a].officers; i++) {
            keys[a][i].data = AG[a].officer_pk[i].b;
            keys[a][i].len = CRYPTO_PUB_BYTES;
        }
        msgs[a].officer_keys = keys[a];
        msgs[a].n_officer_keys = AG[a].officers;
        msgs[a].threshold = AG[a].threshold;
        msgs[a].node_key.data = AG[a].node_pk.b;
        msgs[a].node_key.len = CRYPTO_PUB_BYTES;
        msgs[a].enc_key.data = AG[a].enc_pk.b;
        msgs[a].enc_key.len = CRYPTO_PUB_BYTES;
        ptrs[a] = &msgs[a];
    }
    F.time_ms = cli_now_ms() - 1000;
    if (exec_genesis(F.e, &out, ptrs, AGENCIES, F.time_ms) != 0 || memstore_apply(F.ms, out) != 0)
        return -1;
    memcpy(F.root, out->state_root, 32);

    rpc_config_default(&cfg);
    cfg.port = 0;
    cfg.body_bytes_max = 16u << 20;
    cfg.response_bytes_max = 64u << 20;
    if (uv_loop_init(&F.loop) != 0 || rpc_init(&F.rpc, &F.loop, &cfg) != 0)
        return -1;
    for (size_t i = 0; i < BEX_ARRAY_LEN(methods); i++)
        if (rpc_register(&F.rpc, methods[i].name, methods[i].fn, &F) != 0)
            return -1;
    if (uv_async_init(&F.loop, &F.stop, on_stop) != 0 || pthread_create(&F.thread, NULL, loop_main, NULL) != 0)
        return -1;
    snprintf(F.url, sizeof(F.url), "http://127.0.0.1:%u/", rpc_port(&F.rpc));
    return 0;
}

static int fake_teardown(void **state)
{
    (void)state;
    uv_async_send(&F.stop);
    pthread_join(F.thread, NULL);
    int rc = rpc_closed(&F.rpc) && uv_loop_close(&F.loop) == 0 ? 0 : -1;
    exec_free(F.e);
    memstore_free(F.ms);
    json_decref(F.txs);
    json_decref(F.blocks);
    return rc;
}

/* ---------------------------------------------------------- running bexctl */

static const struct cli_command *const COMMANDS[] = {
    &cli_status, &cli_peers,  &cli_tx,     &cli_block, &cli_agency, &cli_catalog, &cli_grant,
    &cli_record, &cli_access, &cli_verify, &cli_audit, &cli_query,  &cli_keygen,
};

static char OUT[1 << 20];

/* Runs bexctl with argv (NULL-terminated, without "bexctl") and captures
 * its output in OUT. Returns the exit code. */
static int bexctl_argv(const char *const *args)
{
    char *argv[64], *buf = NULL;
    size_t len = 0, argc = 0;
    struct cli_ctx ctx;
    int first, rc;

    argv[argc++] = "bexctl";
    for (; *args != NULL; args++) {
        assert_true(argc < BEX_ARRAY_LEN(argv) - 1);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    OUT[0] = '\0';
    if ((rc = cli_globals_parse(&ctx, &first, (int)argc, argv)) != CLI_EXIT_OK)
        return rc;
    assert_true((size_t)first < argc);
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    ctx.out = mem;
    rc = -1;
    for (size_t i = 0; i < BEX_ARRAY_LEN(COMMANDS); i++)
        if (strcmp(COMMANDS[i]->name, argv[first]) == 0)
            rc = COMMANDS[i]->run(&ctx, (int)argc - first, argv + first);
    fclose(mem);
    assert_true(len < sizeof(OUT));
    memcpy(OUT, buf, len + 1);
    free(buf);
    return rc;
}

#define BEXCTL(...) bexctl_argv((const char *const[]){__VA_ARGS__, NULL})
/* bexctl against the fake node. */
#define NODE(...) BEXCTL("--node", F.url, __VA_ARGS__)

static void assert_out_has(const char *text)
{
    if (strstr(OUT, text) == NULL)
        fail_msg("output lacks \"%s\":\n%s", text, OUT);
}

static void assert_out_lacks(const char *text)
{
    if (strstr(OUT, text) != NULL)
        fail_msg("output has \"%s\":\n%s", text, OUT);
}

static json_t *out_json(void)
{
    json_error_t err;
    json_t *j = json_loads(OUT, 0, &err);
    if (j == NULL)
        fail_msg("output is not JSON (%s):\n%s", err.text, OUT);
    return j;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[8][128];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 128, "%s/%s", DIR_, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* Whether the fake node's state holds text anywhere. */
static bool state_has(const char *text)
{
    struct cli_ctx ctx = {.node = F.url};
    json_t *res = NULL, *params = json_pack("{s:s}", "text", text);
    struct cli_rpc_err e;
    assert_int_equal(cli_rpc_try(&ctx, &res, &e, "test.grep", params, 5000), CLI_EXIT_OK);
    bool found = json_is_true(json_object_get(res, "found"));
    json_decref(res);
    json_decref(params);
    return found;
}

static void set_hold(bool on)
{
    struct cli_ctx ctx = {.node = F.url};
    json_t *res = NULL, *params = json_pack("{s:b}", "on", on);
    struct cli_rpc_err e;
    assert_int_equal(cli_rpc_try(&ctx, &res, &e, "test.hold", params, 5000), CLI_EXIT_OK);
    json_decref(res);
    json_decref(params);
}

static void steal(int n)
{
    struct cli_ctx ctx = {.node = F.url};
    json_t *res = NULL, *params = json_pack("{s:i}", "n", n);
    struct cli_rpc_err e;
    assert_int_equal(cli_rpc_try(&ctx, &res, &e, "test.steal", params, 5000), CLI_EXIT_OK);
    json_decref(res);
    json_decref(params);
}

static long batches(void)
{
    struct cli_ctx ctx = {.node = F.url};
    json_t *res = NULL;
    struct cli_rpc_err e;
    assert_int_equal(cli_rpc_try(&ctx, &res, &e, "test.batches", NULL, 5000), CLI_EXIT_OK);
    long n = (long)json_integer_value(json_object_get(res, "batches"));
    json_decref(res);
    return n;
}

/* ================================================================ pieces */

static void cli_globals_parse_reads_options_and_env(void **state)
{
    (void)state;
    struct cli_ctx ctx;
    int first;
    char *argv[] = {"bexctl", "--node", "http://n:1", "--key", "a", "--key=b", "--enc-key", "e", "--agency=x.y",
                    "--json", "--no-wait", "--timeout", "7", "grant", "--key", "K", NULL};
    assert_int_equal(cli_globals_parse(&ctx, &first, 16, argv), CLI_EXIT_OK);
    assert_int_equal(first, 13);
    assert_string_equal(ctx.node, "http://n:1");
    assert_int_equal(ctx.key_count, 2);
    assert_string_equal(ctx.keys[1], "b");
    assert_string_equal(ctx.enc_key, "e");
    assert_string_equal(ctx.agency, "x.y");
    assert_true(ctx.json && ctx.no_wait);
    assert_int_equal(ctx.timeout_ms, 7000);

    setenv(CLI_NODE_ENV, "http://env:2", 1);
    setenv(CLI_AGENCY_ENV, "env.agency", 1);
    char *plain[] = {"bexctl", "status", NULL};
    assert_int_equal(cli_globals_parse(&ctx, &first, 2, plain), CLI_EXIT_OK);
    assert_string_equal(ctx.node, "http://env:2");
    assert_string_equal(ctx.agency, "env.agency");
    assert_int_equal(ctx.timeout_ms, CLI_TIMEOUT_MS_DEFAULT);
    unsetenv(CLI_NODE_ENV);
    unsetenv(CLI_AGENCY_ENV);
    assert_int_equal(cli_globals_parse(&ctx, &first, 2, plain), CLI_EXIT_OK);
    assert_string_equal(ctx.node, CLI_NODE_DEFAULT);
    assert_null(ctx.agency);

    char *bad[][3] = {{"bexctl", "--bogus", "status"},
                      {"bexctl", "--timeout", "0"},
                      {"bexctl", "--timeout", "3601"},
                      {"bexctl", "--timeout", "-1"},
                      {"bexctl", "--node", ""}};
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad); i++)
        assert_int_equal(cli_globals_parse(&ctx, &first, 3, bad[i]), CLI_EXIT_USAGE);
    char *missing[] = {"bexctl", "--key", NULL};
    assert_int_equal(cli_globals_parse(&ctx, &first, 2, missing), CLI_EXIT_USAGE);
    /* The seventeenth key is one too many. */
    char *many[40] = {"bexctl"};
    for (int i = 0; i < 17; i++) {
        many[1 + 2 * i] = "--key";
        many[2 + 2 * i] = "k";
    }
    assert_int_equal(cli_globals_parse(&ctx, &first, 35, many), CLI_EXIT_USAGE);
    assert_int_equal(cli_globals_parse(&ctx, &first, 33, many), CLI_EXIT_OK);
    assert_int_equal(ctx.key_count, 16);
}

static void cli_args_parse_options_and_positionals(void **state)
{
    (void)state;
    static const struct cli_opt opts[] = {
        {"--reason", CLI_OPT_VALUE}, {"--field", CLI_OPT_VALUE | CLI_OPT_MULTI}, {"--overdue", 0}};
    struct cli_ctx ctx = {.out = stdout};
    struct cli_args a;
    char *argv[] = {"grant", "x", "--field", "a=1", "p1", "--reason=why", "--field=b=2", "--overdue", "--json",
                    "--",    "--field", NULL};
    assert_int_equal(cli_args_parse(&a, &ctx, &cli_grant, opts, 3, 11, argv, 2), CLI_EXIT_OK);
    assert_int_equal(a.npos, 2);
    assert_string_equal(a.pos[0], "p1");
    assert_string_equal(a.pos[1], "--field");
    assert_string_equal(a.val[0], "why");
    assert_int_equal(a.nmulti, 2);
    assert_string_equal(a.multi[0], "a=1");
    assert_string_equal(a.multi[1], "b=2");
    assert_string_equal(a.val[2], "");
    assert_true(ctx.json);
    assert_false(a.help);

    /* --no-wait and --timeout may follow the command, like --json. */
    struct cli_ctx late = {.out = stdout, .timeout_ms = CLI_TIMEOUT_MS_DEFAULT};
    char *trailing[] = {"grant", "x", "p1", "--timeout", "9", "--no-wait"};
    assert_int_equal(cli_args_parse(&a, &late, &cli_grant, opts, 3, 6, trailing, 2), CLI_EXIT_OK);
    assert_int_equal(late.timeout_ms, 9000);
    assert_true(late.no_wait);
    assert_int_equal(a.npos, 1);
    char *globals[] = {"grant", "x", "--node", "http://n:9", "--enc-key=e.key", "--passphrase-file", "p"};
    assert_int_equal(cli_args_parse(&a, &late, &cli_grant, opts, 3, 7, globals, 2), CLI_EXIT_OK);
    assert_string_equal(late.node, "http://n:9");
    assert_string_equal(late.enc_key, "e.key");
    assert_string_equal(late.passphrase_file, "p");
    assert_int_equal(a.npos, 0);
    char *empty_node[] = {"grant", "x", "--node="};
    assert_int_equal(cli_args_parse(&a, &late, &cli_grant, opts, 3, 3, empty_node, 2), CLI_EXIT_USAGE);
    char *bad_timeout[] = {"grant", "x", "--timeout=0"};
    assert_int_equal(cli_args_parse(&a, &late, &cli_grant, opts, 3, 3, bad_timeout, 2), CLI_EXIT_USAGE);

    char *unknown[] = {"grant", "x", "--nope"};
    assert_int_equal(cli_args_parse(&a, &ctx, &cli_grant, opts, 3, 3, unknown, 2), CLI_EXIT_USAGE);
    char *missing[] = {"grant", "x", "--reason"};
    assert_int_equal(cli_args_parse(&a, &ctx, &cli_grant, opts, 3, 3, missing, 2), CLI_EXIT_USAGE);
    char *prefix[] = {"grant", "x", "--reasons=1"};
    assert_int_equal(cli_args_parse(&a, &ctx, &cli_grant, opts, 3, 3, prefix, 2), CLI_EXIT_USAGE);
    char *toomany[] = {"grant", "x", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    assert_int_equal(cli_args_parse(&a, &ctx, &cli_grant, opts, 3, 11, toomany, 2), CLI_EXIT_USAGE);

    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    ctx.out = mem;
    char *help[] = {"grant", "x", "--help"};
    assert_int_equal(cli_args_parse(&a, &ctx, &cli_grant, opts, 3, 3, help, 2), CLI_EXIT_OK);
    assert_true(a.help);
    fclose(mem);
    assert_non_null(strstr(buf, "usage: bexctl"));
    free(buf);
}

static void cli_parse_numbers_durations_and_times(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(cli_parse_u64(&v, "42", 1, 100), 0);
    assert_int_equal(v, 42);
    const char *bad[] = {"", "-1", "+1", " 1", "1x", "0", "101", "99999999999999999999"};
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad); i++)
        assert_int_equal(cli_parse_u64(&v, bad[i], 1, 100), -BEX_EINVAL);

    assert_int_equal(cli_parse_duration(&v, "90", CLI_DAY_MS), 0);
    assert_int_equal(v, 90 * CLI_DAY_MS);
    assert_int_equal(cli_parse_duration(&v, "12h", CLI_DAY_MS), 0);
    assert_int_equal(v, 12ull * 3600 * 1000);
    assert_int_equal(cli_parse_duration(&v, "90m", CLI_DAY_MS), 0);
    assert_int_equal(v, 90ull * 60 * 1000);
    assert_int_equal(cli_parse_duration(&v, "30s", CLI_DAY_MS), 0);
    assert_int_equal(v, 30000);
    const char *bad_d[] = {"", "d", "0", "0d", "5w", "-3d", "3 d", "4000d", "1.5d"};
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad_d); i++)
        assert_int_equal(cli_parse_duration(&v, bad_d[i], CLI_DAY_MS), -BEX_EINVAL);

    const uint64_t now = 1714550400000ull; /* 2024-05-01T08:00:00Z */
    assert_int_equal(cli_parse_time(&v, "2024-05-01", now), 0);
    assert_int_equal(v, 1714521600000ull);
    assert_int_equal(cli_parse_time(&v, "2024-05-01T08:00:00Z", now), 0);
    assert_int_equal(v, now);
    assert_int_equal(cli_parse_time(&v, "24h", now), 0);
    assert_int_equal(v, now - 24ull * 3600 * 1000);
    const char *bad_t[] = {"2024-02-30", "2024-13-01", "2024-5-1", "2024-05-01T08:00:00", "24", "1969-12-31",
                           "2024-05-01T24:00:00Z", "yesterday", "100000d"};
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad_t); i++)
        assert_int_equal(cli_parse_time(&v, bad_t[i], now), -BEX_EINVAL);
    char t[32];
    cli_format_time(t, now);
    assert_string_equal(t, "2024-05-01 08:00:00Z");
    cli_format_time(t, 0);
    assert_string_equal(t, "-");
}

static void cli_split_lists(void **state)
{
    (void)state;
    const char *items[4];
    char buf[32];
    size_t n;
    assert_int_equal(cli_split(items, 4, &n, buf, sizeof(buf), "owner,colour,year"), 0);
    assert_int_equal(n, 3);
    assert_string_equal(items[0], "owner");
    assert_string_equal(items[2], "year");
    assert_int_equal(cli_split(items, 4, &n, buf, sizeof(buf), "one"), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cli_split(items, 4, &n, buf, sizeof(buf), "a,,b"), -BEX_EINVAL);
    assert_int_equal(cli_split(items, 4, &n, buf, sizeof(buf), ""), -BEX_EINVAL);
    assert_int_equal(cli_split(items, 4, &n, buf, sizeof(buf), "a,"), -BEX_EINVAL);
    assert_int_equal(cli_split(items, 4, &n, buf, sizeof(buf), "a,b,c,d,e"), -BEX_ELIMIT);
    assert_int_equal(cli_split(items, 4, &n, buf, 4, "abcd"), -BEX_ELIMIT);
}

static void cli_record_line_parse_accepts_and_refuses(void **state)
{
    (void)state;
    struct cli_record_line l;
    char err[256];
    const char *ok = "{\"key\": \"AB-123\", \"fields\": {\"owner\": \"J. Doe\", \"year\": 2019}, \"version\": 3}";
    assert_int_equal(cli_record_line_parse(&l, ok, strlen(ok), err, sizeof(err)), 0);
    assert_string_equal(l.key, "AB-123");
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "owner");
    assert_string_equal(l.values[0], "J. Doe");
    assert_string_equal(l.names[1], "year");
    assert_string_equal(l.values[1], "2019");
    assert_int_equal(l.value_lens[1], 4);
    assert_int_equal(l.version, 3);
    cli_record_line_close(&l);

    static const struct {
        const char *line, *why;
    } bad[] = {
        {"not json", "not JSON"},
        {"[1]", "JSON object"},
        {"{\"fields\": {\"a\": \"1\"}}", "needs a \"key\""},
        {"{\"key\": \"\", \"fields\": {\"a\": \"1\"}}", "non-empty string"},
        {"{\"key\": 7, \"fields\": {\"a\": \"1\"}}", "non-empty string"},
        {"{\"key\": \"k\"}", "non-empty \"fields\""},
        {"{\"key\": \"k\", \"fields\": {}}", "non-empty \"fields\""},
        {"{\"key\": \"k\", \"fields\": {\"a\": 1.5}}", "not a string or an integer"},
        {"{\"key\": \"k\", \"fields\": {\"a\": null}}", "not a string or an integer"},
        {"{\"key\": \"k\", \"fields\": {\"a\": \"1\"}, \"version\": 0}", "positive integer"},
        {"{\"key\": \"k\", \"fields\": {\"a\": \"1\"}, \"extra\": 1}", "unknown member \"extra\""},
        {"{\"key\": \"k\", \"key\": \"j\", \"fields\": {\"a\": \"1\"}}", "not JSON"},
        {"{\"key\": \"a\\u0000b\", \"fields\": {\"a\": \"1\"}}", "NUL"},
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_not_equal(cli_record_line_parse(&l, bad[i].line, strlen(bad[i].line), err, sizeof(err)), 0);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("line %zu: error \"%s\" does not say \"%s\"", i, err, bad[i].why);
        assert_null(l.doc);
    }
    /* 65 fields are one too many. */
    char many[4096];
    size_t used = (size_t)snprintf(many, sizeof(many), "{\"key\": \"k\", \"fields\": {");
    for (int i = 0; i < 65; i++)
        used += (size_t)snprintf(many + used, sizeof(many) - used, "%s\"f%d\": \"v\"", i ? "," : "", i);
    snprintf(many + used, sizeof(many) - used, "}}");
    assert_int_equal(cli_record_line_parse(&l, many, strlen(many), err, sizeof(err)), -BEX_ELIMIT);
}

static void cli_record_check_against_resource(void **state)
{
    (void)state;
    Bex__FieldDef f[3] = {BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT};
    Bex__FieldDef *fp[3] = {&f[0], &f[1], &f[2]};
    char *colours[] = {"red", "blue"};
    f[0].name = "owner";
    f[0].type = BEX__FIELD_TYPE__FIELD_STRING;
    f[1].name = "colour";
    f[1].type = BEX__FIELD_TYPE__FIELD_ENUM;
    f[1].enum_values = colours;
    f[1].n_enum_values = 2;
    f[2].name = "year";
    f[2].type = BEX__FIELD_TYPE__FIELD_INT;
    Bex__Resource r = BEX__RESOURCE__INIT;
    r.id = "city.traffic/vehicles";
    r.fields = fp;
    r.n_fields = 3;
    char err[256];

    const char *names[] = {"owner", "colour", "year"};
    const char *good[] = {"J. Doe", "blue", "-2019"};
    assert_int_equal(cli_record_check(&r, names, good, 3, err, sizeof(err)), 0);
    const char *bad_enum[] = {"J. Doe", "green", "2019"};
    assert_int_equal(cli_record_check(&r, names, bad_enum, 3, err, sizeof(err)), -BEX_EINVAL);
    assert_non_null(strstr(err, "green"));
    const char *bad_int[] = {"J. Doe", "red", "20x9"};
    assert_int_equal(cli_record_check(&r, names, bad_int, 3, err, sizeof(err)), -BEX_EINVAL);
    assert_non_null(strstr(err, "integer"));
    const char *unknown[] = {"owner", "wheels"};
    assert_int_equal(cli_record_check(&r, unknown, good, 2, err, sizeof(err)), -BEX_EINVAL);
    assert_non_null(strstr(err, "no field \"wheels\""));
    const char *twice[] = {"owner", "owner"};
    assert_int_equal(cli_record_check(&r, twice, good, 2, err, sizeof(err)), -BEX_EINVAL);
    assert_int_equal(cli_record_check(&r, names, good, 0, err, sizeof(err)), -BEX_EINVAL);
}

static char *print_table(const struct cli_table *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_int_equal(cli_table_print(t, mem), 0);
    fclose(mem);
    return buf;
}

static void cli_table_aligns_and_cleans(void **state)
{
    (void)state;
    static const char *const heads[] = {"ID", "NAME", "NOTE"};
    struct cli_table t;
    cli_table_init(&t, 3, heads);
    char *s = print_table(&t);
    assert_string_equal(s, "(none)\n");
    free(s);
    const char *r1[] = {"1", "Zürich", "a"};
    const char *r2[] = {"1234", NULL, "evil\x1b[2Jtext\n"};
    assert_int_equal(cli_table_add(&t, r1), 0);
    assert_int_equal(cli_table_add(&t, r2), 0);
    s = print_table(&t);
    /* Columns align on characters, not bytes; the last column is not padded;
     * NULL is "-" and control characters cannot reach the terminal. */
    assert_string_equal(s, "ID    NAME    NOTE\n"
                           "1     Zürich  a\n"
                           "1234  -       evil?[2Jtext?\n");
    free(s);
    cli_table_close(&t);
    assert_int_equal(cli_text_width("Zürich"), 6);
    assert_int_equal(cli_text_width(""), 0);

    /* A long cell is cut at a character boundary with "...". */
    char *big = malloc(CLI_CELL_BYTES_MAX + 100);
    memset(big, 'x', CLI_CELL_BYTES_MAX + 99);
    big[CLI_CELL_BYTES_MAX - 4] = (char)0xc3;
    big[CLI_CELL_BYTES_MAX - 3] = (char)0xbc;
    big[CLI_CELL_BYTES_MAX + 99] = '\0';
    const char *r3[] = {big, "b", "c"};
    cli_table_init(&t, 3, heads);
    assert_int_equal(cli_table_add(&t, r3), 0);
    assert_int_equal(strlen(t.cells[0]), CLI_CELL_BYTES_MAX - 4 + 3);
    assert_string_equal(t.cells[0] + CLI_CELL_BYTES_MAX - 4, "...");
    cli_table_close(&t);
    free(big);
}

static void cli_print_fields_formats(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s, s:i, s:b, s:n, s:[s,s], s:[{s:i}], s:[], s:s}", "id", "city.traffic", "threshold",
                          2, "active", 1, "none", "roles", "traffic", "police", "objs", "a", 1, "empty", "blank", "");
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_int_equal(cli_print_fields(mem, o), 0);
    fclose(mem);
    assert_string_equal(buf, "id:        city.traffic\n"
                             "threshold: 2\n"
                             "active:    true\n"
                             "none:      -\n"
                             "roles:     traffic, police\n"
                             "objs:      [{\"a\":1}]\n"
                             "empty:     -\n"
                             "blank:     -\n");
    free(buf);
    json_decref(o);
    assert_string_equal(cli_enum_short("GRANT_ACTIVE"), "ACTIVE");
    assert_string_equal(cli_enum_short("SHARE_NONE"), "NONE");
    assert_string_equal(cli_enum_short("OTHER"), "OTHER");
}

/* Usage errors exit 2 before any traffic: the node here does not exist. */
static void cli_usage_errors_exit_2(void **state)
{
    (void)state;
    static const char *const cases[][12] = {
        {"status", "extra"},
        {"tx"},
        {"tx", "1234"},
        {"block", "abc"},
        {"block", "1", "2"},
        {"agency"},
        {"agency", "frob"},
        {"agency", "show"},
        {"catalog", "withdraw", "city.traffic/x"},
        {"catalog", "list", "--share", "sometimes"},
        {"catalog", "register"},
        {"grant", "request", "r/x", "--purpose", "p", "--expires", "3"},
        {"grant", "request", "r/x", "--fields", "a,,b", "--purpose", "p", "--expires", "3"},
        {"grant", "request", "r/x", "--fields", "a", "--expires", "3"},
        {"grant", "request", "r/x", "--fields", "a", "--purpose", "p", "--expires", "0"},
        {"grant", "request", "r/x", "--fields", "a", "--purpose", "p", "--expires", "3", "--mode", "write"},
        {"grant", "approve", "zero"},
        {"grant", "reject", "3"},
        {"grant", "revoke", "3", "--reason", ""},
        {"grant", "list", "--resource", "r/x", "--consumer", "a.b"},
        {"grant", "list", "--status", "sleeping"},
        {"record", "publish", "r/x", "--field", "a=1"},
        {"record", "publish", "r/x", "--key", "k"},
        {"record", "publish", "r/x", "--key", "k", "--field", "novalue"},
        {"record", "publish", "r/x", "--file", "f", "--key", "k"},
        {"record", "list"},
        {"access", "r/x", "k"},
        {"access", "r/x", "k", "--purpose", "p"},
        {"verify", "r/x", "k", "field"},
        {"verify", "show", "x"},
        {"access", "show"},
        {"access", "deny", "3"},
        {"access", "list", "--status", "gone"},
        {"access", "list", "--owner", "a.b", "--consumer", "c.d"},
        {"audit", "--key", "k"},
        {"audit", "--resource", "r/x", "--key", "k", "--key-hex", "00"},
        {"audit", "--since", "yesterday"},
        {"audit", "--limit", "0"},
        {"query", "nosuch", "list"},
        {"query", "grant", "list", "{\"bogus\": 1}"},
        {"query", "grant", "list", "[1]"},
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(cases); i++) {
        const char *argv[16] = {"--node", "http://127.0.0.1:1"};
        size_t n = 2;
        for (size_t k = 0; k < 12 && cases[i][k] != NULL; k++)
            argv[n++] = cases[i][k];
        argv[n] = NULL;
        int rc = bexctl_argv(argv);
        if (rc != CLI_EXIT_USAGE)
            fail_msg("case %zu (%s %s): exit %d, want 2", i, cases[i][0], cases[i][1] ? cases[i][1] : "", rc);
    }
    /* Help is not an error. */
    assert_int_equal(BEXCTL("grant", "--help"), CLI_EXIT_OK);
    assert_out_has("usage: bexctl --key FILE grant request");
    assert_int_equal(BEXCTL("record", "publish", "--help"), CLI_EXIT_OK);
    assert_out_has("RECORDS.jsonl");
}

static void cli_unreachable_node_exits_4(void **state)
{
    (void)state;
    assert_int_equal(BEXCTL("--node", "http://127.0.0.1:1", "status"), CLI_EXIT_UNREACHABLE);
    assert_int_equal(BEXCTL("--node", "http://127.0.0.1:1", "catalog", "list"), CLI_EXIT_UNREACHABLE);
    assert_int_equal(BEXCTL("--node", "ftp://x", "status"), CLI_EXIT_USAGE);
    assert_int_equal(BEXCTL("--node", "http://127.0.0.1:1", "--key", AG[TRAFFIC].officer_file[0], "grant",
                            "approve", "1"),
                     CLI_EXIT_UNREACHABLE);
}

/* ============================================================ with a node */

static const char VEHICLES[] =
    "{\"id\": \"city.traffic/vehicles\", \"title\": \"Registered vehicles\",\n"
    " \"share_type\": \"SHARE_CONDITIONAL\", \"share_conditions\": \"law enforcement\",\n"
    " \"update_cycle\": \"daily\",\n"
    " \"fields\": [{\"name\": \"owner\", \"type\": \"FIELD_STRING\"},\n"
    "            {\"name\": \"colour\", \"type\": \"FIELD_ENUM\", \"enum_values\": [\"red\", \"blue\", \"silver\"]},\n"
    "            {\"name\": \"year\", \"type\": \"FIELD_INT\"},\n"
    "            {\"name\": \"insured\", \"type\": \"FIELD_STRING\", \"sensitive\": true}],\n"
    " \"roles\": [{\"role\": \"police\", \"read\": true, \"verify\": true}]}\n";

static const char STATIONS[] = "{\"id\": \"city.traffic/stations\", \"title\": \"Charging stations\",\n"
                               " \"share_type\": \"SHARE_UNCONDITIONAL\",\n"
                               " \"fields\": [{\"name\": \"address\", \"type\": \"FIELD_STRING\"},\n"
                               "            {\"name\": \"kw\", \"type\": \"FIELD_INT\"}]}\n";

#define T0 AG[TRAFFIC].officer_file[0]
#define T1 AG[TRAFFIC].officer_file[1]
#define T2 AG[TRAFFIC].officer_file[2]
#define TE AG[TRAFFIC].enc_file
#define P0 AG[POLICE].officer_file[0]
#define PE AG[POLICE].enc_file
#define X0 AG[TAX].officer_file[0]
#define XE AG[TAX].enc_file

static void cli_status_agency_and_peers(void **state)
{
    (void)state;
    assert_int_equal(NODE("status"), CLI_EXIT_OK);
    assert_out_has("chain_id:");
    assert_out_has(CHAIN);
    assert_int_equal(NODE("agency", "list"), CLI_EXIT_OK);
    assert_out_has("ID            NAME          ROLES    OFFICERS\n");
    assert_out_has("city.traffic  city.traffic  traffic  2 of 3\n");
    assert_int_equal(NODE("agency", "show", "city.police", "--json"), CLI_EXIT_OK);
    json_t *j = out_json();
    char enc[CRYPTO_PUB_HEX + 1];
    crypto_pubkey_to_hex(enc, &AG[POLICE].enc_pk);
    assert_string_equal(json_string_value(json_object_get(j, "enc_key")), enc);
    json_decref(j);
    assert_int_equal(NODE("agency", "show", "city.nobody"), CLI_EXIT_NOTFOUND);
    assert_int_equal(NODE("peers"), CLI_EXIT_OK);
    assert_out_has("127.0.0.1:26602");
    assert_int_equal(NODE("query", "agency", "list", "{\"limit\": 1}"), CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_array_size(json_object_get(j, "agencies")), 1);
    json_decref(j);
}

static void cli_catalog_register_list_show(void **state)
{
    (void)state;
    const char *file = write_file("vehicles.json", VEHICLES);
    assert_int_equal(NODE("--key", T0, "catalog", "register", file), CLI_EXIT_OK);
    assert_out_has("committed at height 1\n");
    assert_out_has("id:");
    /* Again: the chain refuses, exit 3, and the receipt names the reason. */
    assert_int_equal(NODE("--key", T0, "catalog", "register", file), CLI_EXIT_REJECTED);
    assert_int_equal(NODE("--key", T0, "--json", "catalog", "register", file), CLI_EXIT_REJECTED);
    json_t *j = out_json();
    assert_string_equal(json_string_value(json_object_get(j, "code_name")), "EEXIST");
    json_decref(j);
    /* Another agency may not register under city.traffic. */
    assert_int_equal(NODE("--key", P0, "catalog", "register", file), CLI_EXIT_REJECTED);
    assert_int_equal(NODE("--key", T0, "catalog", "register", write_file("s.json", STATIONS)), CLI_EXIT_OK);

    assert_int_equal(NODE("catalog", "list"), CLI_EXIT_OK);
    assert_out_has("city.traffic/vehicles  Registered vehicles  CONDITIONAL    owner,colour,year,insured*  1");
    assert_out_has("city.traffic/stations");
    assert_int_equal(NODE("catalog", "list", "--share", "unconditional", "--json"), CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_array_size(json_object_get(j, "resources")), 1);
    assert_false(json_is_true(json_object_get(j, "more")));
    json_decref(j);
    assert_int_equal(NODE("catalog", "show", "city.traffic/vehicles"), CLI_EXIT_OK);
    assert_out_has("FIELD    TYPE    SENSITIVE          VALUES\n");
    assert_out_has("colour   ENUM    no                 red,blue,silver\n");
    assert_out_has("insured  STRING  yes (verify only)  -\n");
    assert_out_has("police  yes   yes\n");
    assert_int_equal(NODE("catalog", "show", "city.traffic/none"), CLI_EXIT_NOTFOUND);
    assert_int_equal(NODE("--key", T0, "catalog", "register", write_file("bad.json", "{\"id\": 1}")),
                     CLI_EXIT_USAGE);

    assert_int_equal(NODE("--key", T0, "catalog", "withdraw", "city.traffic/stations", "--reason", "moved"),
                     CLI_EXIT_OK);
    assert_int_equal(NODE("catalog", "show", "city.traffic/stations", "--json"), CLI_EXIT_OK);
    j = out_json();
    assert_string_equal(json_string_value(json_object_get(j, "status")), "RESOURCE_WITHDRAWN");
    json_decref(j);
}

/* Registers the vehicles resource, publishes one record, and gives the police
 * an active READ grant on owner,colour and a VERIFY grant on insured. */
static void scenario(void)
{
    assert_int_equal(NODE("--key", T0, "catalog", "register", write_file("v.json", VEHICLES)), CLI_EXIT_OK);
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "publish", "city.traffic/vehicles", "--key",
                          "AB-123-CD", "--field", "owner=Jane Q. Public", "--field", "colour=silver", "--field",
                          "year=2019", "--field", "insured=policy-7781"),
                     CLI_EXIT_OK);
    assert_out_has("version:  1");
    assert_int_equal(NODE("--key", P0, "grant", "request", "city.traffic/vehicles", "--fields", "owner,colour",
                          "--purpose", "case 2024-117", "--expires", "30"),
                     CLI_EXIT_OK);
    assert_out_has("grant_id: 1");
    assert_out_has("GRANT_PENDING");
    assert_int_equal(NODE("--key", P0, "grant", "request", "city.traffic/vehicles", "--fields", "insured", "--mode",
                          "verify", "--purpose", "roadside check", "--expires", "12h"),
                     CLI_EXIT_OK);
    assert_out_has("grant_id: 2");
    assert_int_equal(NODE("--key", T0, "--key", T2, "grant", "approve", "1"), CLI_EXIT_OK);
    assert_int_equal(NODE("--key", T1, "--key", T2, "grant", "approve", "2"), CLI_EXIT_OK);
}

static void cli_grant_threshold_and_lists(void **state)
{
    (void)state;
    assert_int_equal(NODE("--key", T0, "catalog", "register", write_file("v.json", VEHICLES)), CLI_EXIT_OK);
    assert_int_equal(NODE("--key", P0, "--json", "grant", "request", "city.traffic/vehicles", "--fields",
                          "owner,colour", "--purpose", "case 1", "--expires", "30"),
                     CLI_EXIT_OK);
    json_t *j = out_json();
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "outcome"), "grant_id")), 1);
    json_decref(j);
    /* A sensitive field is for verify mode only. */
    assert_int_equal(NODE("--key", P0, "grant", "request", "city.traffic/vehicles", "--fields", "insured",
                          "--purpose", "p", "--expires", "30"),
                     CLI_EXIT_REJECTED);
    /* One officer of a 2-of-3 agency is not enough; the consumer cannot approve. */
    assert_int_equal(NODE("--key", T0, "grant", "approve", "1"), CLI_EXIT_REJECTED);
    assert_int_equal(NODE("--key", P0, "grant", "approve", "1"), CLI_EXIT_REJECTED);
    /* The same key twice is caught before signing. */
    assert_int_equal(NODE("--key", T0, "--key", T0, "grant", "approve", "1"), CLI_EXIT_USAGE);
    assert_int_equal(NODE("grant", "list", "--status", "pending"), CLI_EXIT_OK);
    assert_out_has("1   city.traffic/vehicles  city.police  READ  PENDING");
    assert_int_equal(NODE("--key", T0, "--key", T1, "grant", "approve", "1"), CLI_EXIT_OK);
    assert_out_has("GRANT_ACTIVE");
    assert_int_equal(NODE("grant", "list", "--consumer", "city.police", "--status", "active", "--json"),
                     CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_array_size(json_object_get(j, "grants")), 1);
    json_decref(j);
    assert_int_equal(NODE("grant", "list", "--status", "pending"), CLI_EXIT_OK);
    assert_out_has("(none)");
    assert_int_equal(NODE("grant", "show", "1"), CLI_EXIT_OK);
    assert_out_has("purpose:");
    assert_out_has("case 1");
    assert_int_equal(NODE("grant", "show", "9"), CLI_EXIT_NOTFOUND);
    /* The owner's service shared the index key with the consumer. */
    assert_int_equal(NODE("query", "record", "index_key", "{\"resource\": \"city.traffic/vehicles\", "
                                                          "\"consumer\": \"city.police\"}"),
                     CLI_EXIT_OK);
    assert_out_has("\"grant_id\": 1");
    /* A rejection needs a reason and the threshold too. */
    assert_int_equal(NODE("--key", X0, "grant", "request", "city.traffic/vehicles", "--fields", "owner",
                          "--purpose", "tax audit", "--expires", "30"),
                     CLI_EXIT_REJECTED); /* the tax role may not ask */
    assert_int_equal(NODE("--key", T0, "--key", T1, "grant", "revoke", "1", "--reason", "case closed"),
                     CLI_EXIT_OK);
    assert_out_has("GRANT_REVOKED");
}

static void cli_publish_access_and_verify(void **state)
{
    (void)state;
    scenario();
    /* The chain never holds the plaintext of a CONDITIONAL record, nor its key. */
    assert_false(state_has("Jane Q. Public"));
    assert_false(state_has("AB-123-CD"));
    assert_false(state_has("policy-7781"));

    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "access", "city.traffic/vehicles", "AB-123-CD",
                          "--purpose", "case 2024-117"),
                     CLI_EXIT_OK);
    assert_out_has("released by city.traffic under grant 1 (record version 1)\n");
    assert_out_has("owner:  Jane Q. Public\n");
    assert_out_has("colour: silver\n");
    /* Exactly the granted fields: not year, never the sensitive one. */
    assert_out_lacks("2019");
    assert_out_lacks("policy");
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "--json", "access", "city.traffic/vehicles", "AB-123-CD",
                          "--purpose", "case 2024-117"),
                     CLI_EXIT_OK);
    json_t *j = out_json();
    assert_int_equal(json_object_size(json_object_get(j, "fields")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "access_id")), 2);
    json_decref(j);
    /* A released access shows its fields to the consumer's key, its state to anyone. */
    assert_int_equal(NODE("--enc-key", PE, "access", "show", "1"), CLI_EXIT_OK);
    assert_out_has("owner:  Jane Q. Public\n");
    assert_int_equal(NODE("access", "show", "1"), CLI_EXIT_OK);
    assert_out_has("ACCESS_RELEASED");
    assert_out_lacks("Jane");
    /* An unknown record, and a consumer's wrong encryption key. */
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "access", "city.traffic/vehicles", "ZZ-999", "--purpose",
                          "p"),
                     CLI_EXIT_REJECTED);
    assert_int_equal(NODE("--key", P0, "--enc-key", XE, "access", "city.traffic/vehicles", "AB-123-CD",
                          "--purpose", "p"),
                     CLI_EXIT_FAIL);
    /* Tax has no grant and no index key. */
    assert_int_equal(NODE("--key", X0, "--enc-key", XE, "access", "city.traffic/vehicles", "AB-123-CD",
                          "--purpose", "p"),
                     CLI_EXIT_NOTFOUND);

    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "verify", "city.traffic/vehicles", "AB-123-CD", "insured",
                          "policy-7781", "--purpose", "roadside check"),
                     CLI_EXIT_OK);
    assert_string_equal(OUT, "yes\n");
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "verify", "city.traffic/vehicles", "AB-123-CD", "insured",
                          "policy-7782"),
                     CLI_EXIT_OK);
    assert_string_equal(OUT, "no\n");
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "--json", "verify", "city.traffic/vehicles", "AB-123-CD",
                          "colour", "silver"),
                     CLI_EXIT_OK);
    j = out_json();
    assert_true(json_is_true(json_object_get(j, "match")));
    json_decref(j);
    assert_false(state_has("policy-7782"));

    /* The owner reads its own record back. */
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "show", "city.traffic/vehicles", "AB-123-CD"),
                     CLI_EXIT_OK);
    assert_out_has("insured: policy-7781\n");
    assert_out_has("year:    2019\n");
    /* A second version; list shows hashes, not the key. */
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "publish", "city.traffic/vehicles", "--key",
                          "AB-123-CD", "--field", "owner=John Roe", "--field", "colour=red"),
                     CLI_EXIT_OK);
    assert_out_has("version:  2");
    assert_int_equal(NODE("record", "list", "city.traffic/vehicles"), CLI_EXIT_OK);
    assert_out_has("KEY");
    assert_out_has("  2        ");
    assert_out_lacks("AB-123-CD");
    /* The owner's encryption key must be the one on chain. */
    assert_int_equal(NODE("--key", T0, "--enc-key", PE, "record", "publish", "city.traffic/vehicles", "--key",
                          "K2", "--field", "owner=x"),
                     CLI_EXIT_FAIL);

    /* Verification answers can be collected later too (against version 2 now). */
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "--no-wait", "verify", "city.traffic/vehicles", "AB-123-CD",
                          "colour", "red"),
                     CLI_EXIT_OK);
    assert_string_equal(OUT, "verify request 4 is on chain; 'bexctl verify show 4' shows the answer\n");
    assert_int_equal(NODE("verify", "show", "4"), CLI_EXIT_OK);
    assert_string_equal(OUT, "yes\n");

    /* An access the owner's node holds: waiting times out (exit 1) and it stays open. */
    set_hold(true);
    assert_int_equal(NODE("--timeout", "1", "--key", P0, "--enc-key", PE, "access", "city.traffic/vehicles",
                          "AB-123-CD", "--purpose", "p"),
                     CLI_EXIT_FAIL);
    /* With --no-wait the request goes on chain and its id comes back at once. */
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "--no-wait", "access", "city.traffic/vehicles",
                          "AB-123-CD", "--purpose", "p"),
                     CLI_EXIT_OK);
    assert_string_equal(OUT, "access request 4 is on chain; 'bexctl access show 4' shows the answer\n");
    set_hold(false);
    assert_int_equal(NODE("access", "list", "--owner", "city.traffic", "--status", "open"), CLI_EXIT_OK);
    assert_out_has("3   city.traffic/vehicles  city.police  city.traffic  OPEN");
    assert_out_has("\n4   city.traffic/vehicles");
    assert_int_equal(NODE("--key", P0, "access", "deny", "4", "--reason", "not yours"), CLI_EXIT_REJECTED);
    assert_int_equal(NODE("--key", T1, "access", "deny", "4", "--reason", "under review"), CLI_EXIT_OK);
    assert_int_equal(NODE("--enc-key", PE, "access", "show", "4"), CLI_EXIT_OK);
    assert_out_has("ACCESS_DENIED");
    assert_out_has("under review");
    assert_int_equal(NODE("access", "list", "--consumer", "city.police", "--status", "denied", "--json"),
                     CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_array_size(json_object_get(j, "accesses")), 1);
    json_decref(j);
    /* Keys released for version 1 do not open version 2. */
    assert_int_equal(NODE("--enc-key", PE, "access", "show", "1"), CLI_EXIT_FAIL);

    /* Revoked: the next access is refused on chain, exit 3. */
    assert_int_equal(NODE("--key", T0, "--key", T1, "grant", "revoke", "1", "--reason", "case closed"),
                     CLI_EXIT_OK);
    assert_int_equal(NODE("--key", P0, "--enc-key", PE, "access", "city.traffic/vehicles", "AB-123-CD",
                          "--purpose", "p"),
                     CLI_EXIT_REJECTED);

    /* Everything is on the audit trail; the key filter hashes like publish. */
    assert_int_equal(NODE("audit", "--resource", "city.traffic/vehicles", "--limit", "100"), CLI_EXIT_OK);
    assert_out_has("access.request");
    assert_out_has("access.release");
    assert_out_has("access.deny");
    assert_out_has("verify.answer");
    assert_out_has("grant.revoke");
    assert_out_has("EREFUSED");
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "--json", "audit", "--resource", "city.traffic/vehicles",
                          "--key", "AB-123-CD"),
                     CLI_EXIT_OK);
    j = out_json();
    size_t i, by_key = json_array_size(json_object_get(j, "entries"));
    json_t *e;
    assert_true(by_key >= 6);
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        assert_string_equal(json_string_value(json_object_get(e, "resource")), "city.traffic/vehicles");
    }
    json_decref(j);
    assert_int_equal(NODE("audit", "--agency", "city.police", "--limit", "2", "--json"), CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 2);
    assert_true(json_is_true(json_object_get(j, "more")));
    json_decref(j);
}

static void cli_unconditional_records_keep_their_keys(void **state)
{
    (void)state;
    assert_int_equal(NODE("--key", T0, "catalog", "register", write_file("s.json", STATIONS)), CLI_EXIT_OK);
    /* No --enc-key needed: the key stays as it is, the values are still sealed. */
    assert_int_equal(NODE("--key", T0, "record", "publish", "city.traffic/stations", "--key", "station-12",
                          "--field", "address=1 Main Street", "--field", "kw=150"),
                     CLI_EXIT_OK);
    assert_int_equal(NODE("record", "list", "city.traffic/stations"), CLI_EXIT_OK);
    assert_out_has("station-12");
    assert_false(state_has("1 Main Street"));
    assert_int_equal(NODE("--key", X0, "grant", "request", "city.traffic/stations", "--fields", "address,kw",
                          "--purpose", "planning", "--expires", "7"),
                     CLI_EXIT_OK);
    assert_out_has("GRANT_ACTIVE");
    assert_int_equal(NODE("--key", X0, "--enc-key", XE, "access", "city.traffic/stations", "station-12",
                          "--purpose", "planning"),
                     CLI_EXIT_OK);
    assert_out_has("address: 1 Main Street\n");
    assert_out_has("kw:      150\n");
    assert_int_equal(NODE("audit", "--resource", "city.traffic/stations", "--key", "station-12", "--json"),
                     CLI_EXIT_OK);
    json_t *j = out_json();
    assert_true(json_array_size(json_object_get(j, "entries")) >= 3);
    json_decref(j);
}

static void cli_publish_file_in_batches(void **state)
{
    (void)state;
    assert_int_equal(NODE("--key", T0, "catalog", "register", write_file("v.json", VEHICLES)), CLI_EXIT_OK);
    /* 450 records: three batches of 200, 200 and 50. */
    char *text = malloc(450 * 128);
    size_t used = 0;
    for (int i = 0; i < 450; i++)
        used += (size_t)sprintf(text + used, "{\"key\": \"PL-%04d\", \"fields\": {\"owner\": \"Owner %d\", "
                                              "\"colour\": \"%s\", \"year\": %d}}\n%s",
                                i, i, i % 2 ? "red" : "blue", 1990 + i % 30, i == 10 ? "\n" : "");
    const char *file = write_file("records.jsonl", text);
    free(text);
    long before = batches();
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "publish", "city.traffic/vehicles", "--file",
                          file),
                     CLI_EXIT_OK);
    assert_string_equal(OUT, "published 450 of 450 records to city.traffic/vehicles (0 failed)\n");
    assert_int_equal(batches() - before, 3);
    assert_false(state_has("Owner 17"));
    assert_int_equal(NODE("record", "list", "city.traffic/vehicles", "--json"), CLI_EXIT_OK);
    json_t *j = out_json();
    assert_int_equal(json_array_size(json_object_get(j, "records")), 450);
    json_decref(j);

    /* Republishing bumps every version; the JSON summary counts them. */
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "--json", "record", "publish", "city.traffic/vehicles",
                          "--file", file),
                     CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_integer_value(json_object_get(j, "published")), 450);
    assert_int_equal(json_integer_value(json_object_get(j, "failed")), 0);
    json_decref(j);
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "show", "city.traffic/vehicles", "PL-0449"),
                     CLI_EXIT_OK);
    assert_out_has("version:          2\n");
    assert_out_has("owner:  Owner 449\n");

    /* A bad line anywhere stops the run before any transaction. */
    before = batches();
    const char *bad = write_file("bad.jsonl", "{\"key\": \"A\", \"fields\": {\"owner\": \"x\"}}\n"
                                              "{\"key\": \"B\", \"fields\": {\"colour\": \"green\"}}\n");
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "publish", "city.traffic/vehicles", "--file", bad),
                     CLI_EXIT_FAIL);
    assert_int_equal(batches(), before);
    /* A record whose version is not above the published one fails on chain: exit 3. */
    const char *old = write_file("old.jsonl", "{\"key\": \"PL-0001\", \"fields\": {\"owner\": \"x\"}, \"version\": 1}\n"
                                              "{\"key\": \"PL-0002\", \"fields\": {\"owner\": \"y\"}}\n");
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "record", "publish", "city.traffic/vehicles", "--file", old),
                     CLI_EXIT_REJECTED);
    assert_string_equal(OUT, "published 1 of 2 records to city.traffic/vehicles (1 failed)\n");

    /* A tx the node refuses inside a batch stops the run: the later nonces cannot commit. */
    const char *five = write_file("five.jsonl", "{\"key\": \"N-1\", \"fields\": {\"owner\": \"a\"}}\n"
                                                "{\"key\": \"N-2\", \"fields\": {\"owner\": \"b\"}}\n"
                                                "{\"key\": \"N-3\", \"fields\": {\"owner\": \"c\"}}\n"
                                                "{\"key\": \"N-4\", \"fields\": {\"owner\": \"d\"}}\n");
    steal(1);
    assert_int_equal(NODE("--key", T0, "--enc-key", TE, "--json", "record", "publish", "city.traffic/vehicles",
                          "--file", five),
                     CLI_EXIT_REJECTED);
    j = out_json();
    assert_int_equal(json_integer_value(json_object_get(j, "submitted")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "published")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "failed")), 1);
    json_t *first = json_array_get(json_object_get(j, "failures"), 0);
    assert_int_equal(json_integer_value(json_object_get(first, "line")), 2);
    assert_string_equal(json_string_value(json_object_get(first, "code")), "ENONCE");
    json_decref(j);
}

static void cli_tx_block_and_no_wait(void **state)
{
    (void)state;
    assert_int_equal(NODE("--key", T0, "--json", "catalog", "register", write_file("v.json", VEHICLES)), CLI_EXIT_OK);
    json_t *j = out_json();
    char id[65];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
    assert_string_equal(json_string_value(json_object_get(j, "code_name")), "OK");
    json_decref(j);
    assert_int_equal(NODE("tx", id), CLI_EXIT_OK);
    assert_out_has("method:");
    assert_out_has("register");
    assert_out_has("sender:    city.traffic");
    assert_int_equal(NODE("tx", "00000000000000000000000000000000000000000000000000000000000000aa"),
                     CLI_EXIT_NOTFOUND);
    assert_int_equal(NODE("block", "1"), CLI_EXIT_OK);
    assert_out_has("tx_count:");
    assert_out_has(id);
    assert_int_equal(NODE("block", "1", "--json"), CLI_EXIT_OK);
    j = out_json();
    assert_int_equal(json_integer_value(json_object_get(j, "height")), 1);
    json_decref(j);
    assert_int_equal(NODE("block", "99"), CLI_EXIT_NOTFOUND);

    assert_int_equal(NODE("--key", P0, "--no-wait", "grant", "request", "city.traffic/vehicles", "--fields",
                          "owner", "--purpose", "p", "--expires", "1"),
                     CLI_EXIT_OK);
    assert_true(strncmp(OUT, "submitted tx ", 13) == 0);
    assert_int_equal(strlen(OUT), 13 + 64 + 1);
    /* A key that is not one of the named sender's: the chain refuses it. */
    assert_int_equal(NODE("--key", P0, "--agency", "city.tax", "grant", "escalate", "1"), CLI_EXIT_REJECTED);
}

static void cli_nonce_retry_and_passphrases(void **state)
{
    (void)state;
    const char *file = write_file("v.json", VEHICLES);
    /* Two nonces lost to concurrent clients: the third attempt commits. */
    steal(2);
    assert_int_equal(NODE("--key", T0, "catalog", "register", file), CLI_EXIT_OK);
    assert_out_has("committed at height 1\n");
    steal(CLI_NONCE_ATTEMPTS);
    assert_int_equal(NODE("--key", T0, "catalog", "update", file), CLI_EXIT_REJECTED);
    steal(0);

    /* A passphrase file instead of the environment; a wrong one fails cleanly. */
    unsetenv(KEYSTORE_PASSPHRASE_ENV);
    const char *good = write_file("pass", PASS "\n");
    const char *bad = write_file("bad-pass", "not it\n");
    assert_int_equal(NODE("--key", T0, "--passphrase-file", good, "catalog", "update", file), CLI_EXIT_OK);
    assert_out_has("version:          2\n");
    assert_int_equal(NODE("--key", T0, "--passphrase-file", bad, "catalog", "update", file), CLI_EXIT_FAIL);
    setenv(KEYSTORE_PASSPHRASE_ENV, PASS, 1);
    /* The agency is found from the key; a key of no agency is an error. */
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char stray[128], err[256];
    derive(&sk, &pk, "nobody", "officer");
    snprintf(stray, sizeof(stray), "%s/stray.key", DIR_);
    assert_int_equal(keystore_write(stray, &sk, PASS, KEYSTORE_SCRYPT_LOG2N_MIN, KEYSTORE_REPLACE, err, sizeof(err)),
                     0);
    assert_int_equal(NODE("--key", stray, "catalog", "update", file), CLI_EXIT_FAIL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_globals_parse_reads_options_and_env),
        cmocka_unit_test(cli_args_parse_options_and_positionals),
        cmocka_unit_test(cli_parse_numbers_durations_and_times),
        cmocka_unit_test(cli_split_lists),
        cmocka_unit_test(cli_record_line_parse_accepts_and_refuses),
        cmocka_unit_test(cli_record_check_against_resource),
        cmocka_unit_test(cli_table_aligns_and_cleans),
        cmocka_unit_test(cli_print_fields_formats),
        cmocka_unit_test(cli_usage_errors_exit_2),
        cmocka_unit_test(cli_unreachable_node_exits_4),
        cmocka_unit_test_setup_teardown(cli_status_agency_and_peers, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_catalog_register_list_show, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_grant_threshold_and_lists, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_publish_access_and_verify, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_unconditional_records_keep_their_keys, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_publish_file_in_batches, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_tx_block_and_no_wait, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(cli_nonce_retry_and_passphrases, fake_setup, fake_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
