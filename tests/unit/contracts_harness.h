/*
 * contracts_harness.h: a chain of four agencies over a memstore, for the
 * contract tests. Included (static functions) by each contracts_*_test.c.
 *
 * Keys are real secp256k1 keys derived from names (h_seckey); the runtime
 * never verifies signatures (the node does), so the signature bytes are
 * zeros. Agencies:
 *   0 city.traffic  roles traffic      officers 3, threshold 2
 *   1 city.police   roles police       officers 2, threshold 1
 *   2 state.health  roles health       officers 2, threshold 2
 *   3 city.tax      roles finance      officers 1, threshold 1
 */
#ifndef CONTRACTS_HARNESS_H
#define CONTRACTS_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>
#include <secp256k1.h>

#include "bex.h"
#include "bex.pb-c.h"
#include "contract.h"

#define H_FN static BEX_UNUSED
#define H_AGENCIES 4
#define H_PENDING_MAX 256
#define H_CHAIN "bex-test"
#define H_T0 1700000000000ull /* genesis block time */
#define H_DAY (24ull * 3600 * 1000)

#define SIG_O1 1u
#define SIG_O2 2u
#define SIG_O3 4u
#define SIG_NODE 8u

enum { TRAFFIC, POLICE, HEALTH, TAX };

struct h_agency {
    const char *id;
    const char *role;
    uint8_t officers[3][CONTRACT_PUBKEY_BYTES];
    size_t officer_count;
    uint32_t threshold;
    uint8_t node[CONTRACT_PUBKEY_BYTES];
    uint8_t enc[CONTRACT_PUBKEY_BYTES];
    uint64_t nonce;
};

struct h_receipt {
    int code;
    char message[CONTRACT_MESSAGE_BYTES_MAX];
    uint8_t result[4096];
    size_t result_len;
    uint8_t tx_id[CONTRACT_HASH_BYTES];
};

struct harness {
    struct memstore *ms;
    struct exec_store st;
    struct exec *e;
    uint64_t height;
    uint64_t time_ms;
    uint8_t root[CONTRACT_HASH_BYTES];
    struct h_agency ag[H_AGENCIES];
    uint8_t *pending[H_PENDING_MAX];
    size_t pending_len[H_PENDING_MAX];
    size_t pending_count;
    struct h_receipt rc[H_PENDING_MAX];
    size_t rc_count;
    size_t deferred; /* txs of the last block deferred (nonce ahead) */
    size_t last_writes;
    bool decoded; /* h_block hands txs over decoded (exec_tx_decoded), as the ledger does */
};

/* The deterministic secret key of a harness key (name, i). */
H_FN void h_seckey(uint8_t out[32], const char *name, int i)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s#%d", name, i);
    SHA256((const uint8_t *)buf, strlen(buf), out);
}

H_FN secp256k1_context *h_secp(void)
{
    static secp256k1_context *ctx;
    if (!ctx)
        ctx = secp256k1_context_create(SECP256K1_CONTEXT_SIGN);
    assert_non_null(ctx);
    return ctx;
}

/* A real compressed secp256k1 public key for (name, i). */
H_FN void h_key(uint8_t out[CONTRACT_PUBKEY_BYTES], const char *name, int i)
{
    uint8_t sk[32];
    secp256k1_pubkey pk;
    size_t n = CONTRACT_PUBKEY_BYTES;
    h_seckey(sk, name, i);
    assert_int_equal(secp256k1_ec_pubkey_create(h_secp(), &pk, sk), 1);
    assert_int_equal(secp256k1_ec_pubkey_serialize(h_secp(), out, &n, &pk, SECP256K1_EC_COMPRESSED), 1);
}

H_FN void h_agency_msg(Bex__Agency *m, const struct h_agency *a, ProtobufCBinaryData *keys, char **roles)
{
    bex__agency__init(m);
    m->id = (char *)a->id;
    m->name = (char *)a->id;
    roles[0] = (char *)a->role;
    m->n_roles = 1;
    m->roles = roles;
    for (size_t i = 0; i < a->officer_count; i++) {
        keys[i].data = (uint8_t *)a->officers[i];
        keys[i].len = CONTRACT_PUBKEY_BYTES;
    }
    m->n_officer_keys = a->officer_count;
    m->officer_keys = keys;
    m->threshold = a->threshold;
    m->node_key.data = (uint8_t *)a->node;
    m->node_key.len = CONTRACT_PUBKEY_BYTES;
    m->enc_key.data = (uint8_t *)a->enc;
    m->enc_key.len = CONTRACT_PUBKEY_BYTES;
}

H_FN void h_apply(struct harness *h, const struct exec_output *out)
{
    assert_int_equal(memstore_apply(h->ms, out), 0);
    memcpy(h->root, out->state_root, CONTRACT_HASH_BYTES);
    h->height = out->height;
    h->last_writes = out->write_count;
}

H_FN void h_init_budget(struct harness *h, uint32_t budget)
{
    static const struct {
        const char *id, *role;
        size_t officers;
        uint32_t threshold;
    } spec[H_AGENCIES] = {
        {"city.traffic", "traffic", 3, 2},
        {"city.police", "police", 2, 1},
        {"state.health", "health", 2, 2},
        {"city.tax", "finance", 1, 1},
    };
    memset(h, 0, sizeof(*h));
    assert_int_equal(memstore_new(&h->ms, 1u << 20, 256u << 20), 0);
    memstore_store(h->ms, &h->st);
    struct exec_config cfg = {.chain_id = H_CHAIN, .tx_budget = budget};
    assert_int_equal(exec_new(&h->e, &cfg, &h->st), 0);
    Bex__Agency msgs[H_AGENCIES];
    const Bex__Agency *ptrs[H_AGENCIES];
    ProtobufCBinaryData keys[H_AGENCIES][3];
    char *roles[H_AGENCIES][1];
    for (int i = 0; i < H_AGENCIES; i++) {
        struct h_agency *a = &h->ag[i];
        a->id = spec[i].id;
        a->role = spec[i].role;
        a->officer_count = spec[i].officers;
        a->threshold = spec[i].threshold;
        for (size_t k = 0; k < a->officer_count; k++)
            h_key(a->officers[k], a->id, (int)k);
        h_key(a->node, a->id, 100);
        h_key(a->enc, a->id, 200);
        h_agency_msg(&msgs[i], a, keys[i], roles[i]);
        ptrs[i] = &msgs[i];
    }
    const struct exec_output *out;
    h->time_ms = H_T0;
    assert_int_equal(exec_genesis(h->e, &out, ptrs, H_AGENCIES, h->time_ms), 0);
    h_apply(h, out);
}

H_FN void h_init(struct harness *h)
{
    h_init_budget(h, 0);
}

H_FN void h_close(struct harness *h)
{
    for (size_t i = 0; i < h->pending_count; i++)
        free(h->pending[i]);
    exec_free(h->e);
    memstore_free(h->ms);
}

/* Encodes a tx with raw argument bytes and explicit nonce (0: the agency's next) and queues it. */
H_FN void h_queue_raw(struct harness *h, int agency, unsigned sigs, const char *contract, const char *method,
                      const uint8_t *args, size_t args_len, uint64_t nonce)
{
    struct h_agency *a = &h->ag[agency];
    static uint8_t zero_sig[64];
    Bex__TxBody body = BEX__TX_BODY__INIT;
    body.chain_id = H_CHAIN;
    body.sender = (char *)a->id;
    body.nonce = nonce ? nonce : ++a->nonce;
    body.contract = (char *)contract;
    body.method = (char *)method;
    body.args.data = (uint8_t *)args;
    body.args.len = args_len;
    body.timestamp_ms = h->time_ms;
    size_t blen = bex__tx_body__get_packed_size(&body);
    uint8_t *bbuf = malloc(blen + 1);
    assert_non_null(bbuf);
    bex__tx_body__pack(&body, bbuf);

    Bex__Signature sig[4];
    Bex__Signature *sigp[4];
    size_t n = 0;
    for (int k = 0; k < 4; k++) {
        /* Officers an agency does not have simply do not sign. */
        if (!(sigs & (1u << k)) || (k < 3 && (size_t)k >= a->officer_count))
            continue;
        const uint8_t *pk = k == 3 ? a->node : a->officers[k];
        bex__signature__init(&sig[n]);
        sig[n].pubkey.data = (uint8_t *)pk;
        sig[n].pubkey.len = CONTRACT_PUBKEY_BYTES;
        sig[n].sig.data = zero_sig;
        sig[n].sig.len = sizeof(zero_sig);
        sigp[n] = &sig[n];
        n++;
    }
    Bex__Tx tx = BEX__TX__INIT;
    tx.body.data = bbuf;
    tx.body.len = blen;
    tx.n_sigs = n;
    tx.sigs = sigp;
    size_t tlen = bex__tx__get_packed_size(&tx);
    uint8_t *tbuf = malloc(tlen + 1);
    assert_non_null(tbuf);
    bex__tx__pack(&tx, tbuf);
    free(bbuf);
    assert_true(h->pending_count < H_PENDING_MAX);
    h->pending[h->pending_count] = tbuf;
    h->pending_len[h->pending_count] = tlen;
    h->pending_count++;
}

/* Encodes a tx with explicit nonce (0: the agency's next) and queues it. */
H_FN void h_queue_nonce(struct harness *h, int agency, unsigned sigs, const char *contract, const char *method,
                        const ProtobufCMessage *args, uint64_t nonce)
{
    static uint8_t argbuf[1u << 20];
    size_t n = 0;
    if (args) {
        n = protobuf_c_message_get_packed_size(args);
        assert_true(n <= sizeof(argbuf));
        protobuf_c_message_pack(args, argbuf);
    }
    h_queue_raw(h, agency, sigs, contract, method, argbuf, n, nonce);
}

H_FN void h_queue(struct harness *h, int agency, unsigned sigs, const char *contract, const char *method,
                    const ProtobufCMessage *args)
{
    h_queue_nonce(h, agency, sigs, contract, method, args, 0);
}

/* Runs the queued txs as the next block; receipts land in h->rc. */
H_FN const struct exec_output *h_block(struct harness *h)
{
    assert_int_equal(exec_block_begin(h->e, h->height + 1, h->time_ms, h->root), 0);
    h->rc_count = 0;
    h->deferred = 0;
    for (size_t i = 0; i < h->pending_count; i++) {
        int code = -2;
        Bex__Tx *tx = NULL;
        if (h->decoded && h->pending_len[i] <= CONTRACT_TX_BYTES_MAX)
            tx = bex__tx__unpack(NULL, h->pending_len[i], h->pending[i]);
        if (tx) {
            uint8_t id[CONTRACT_HASH_BYTES];
            SHA256(tx->body.data, tx->body.len, id);
            assert_int_equal(exec_tx_decoded(h->e, &code, tx, id), 0);
            bex__tx__free_unpacked(tx, NULL);
        } else {
            assert_int_equal(exec_tx(h->e, &code, h->pending[i], h->pending_len[i]), 0);
        }
        assert_true(code >= 0 || code == EXEC_DEFERRED);
        if (code == EXEC_DEFERRED)
            h->deferred++;
        free(h->pending[i]);
        h->pending[i] = NULL;
    }
    size_t txs = h->pending_count;
    h->pending_count = 0;
    const struct exec_output *out;
    assert_int_equal(exec_block_end(h->e, &out), 0);
    assert_int_equal(out->receipt_count, txs - h->deferred);
    for (size_t i = 0; i < out->receipt_count; i++) {
        Bex__Receipt *r = bex__receipt__unpack(NULL, out->receipts[i].encoded_len, out->receipts[i].encoded);
        assert_non_null(r);
        struct h_receipt *hr = &h->rc[h->rc_count++];
        hr->code = r->code;
        assert_int_equal(r->code, out->receipts[i].code);
        assert_int_equal(r->index, i);
        snprintf(hr->message, sizeof(hr->message), "%s", r->message);
        assert_true(r->result.len <= sizeof(hr->result));
        if (r->result.len > 0)
            memcpy(hr->result, r->result.data, r->result.len);
        hr->result_len = r->result.len;
        memcpy(hr->tx_id, out->receipts[i].tx_id, CONTRACT_HASH_BYTES);
        bex__receipt__free_unpacked(r, NULL);
    }
    h_apply(h, out);
    return out;
}

/* One tx in its own block; returns the receipt code. */
H_FN int h_call(struct harness *h, int agency, unsigned sigs, const char *contract, const char *method,
                  const ProtobufCMessage *args)
{
    h_queue(h, agency, sigs, contract, method, args);
    h_block(h);
    return h->rc[0].code;
}

H_FN const char *h_msg(const struct harness *h)
{
    return h->rc[0].message;
}

/* Runs a query with args; *out receives the result (free with contract_result_free). */
H_FN int h_query(struct harness *h, ProtobufCMessage **out, const char *contract, const char *query,
                   const ProtobufCMessage *args)
{
    uint8_t buf[4096];
    size_t n = args ? protobuf_c_message_get_packed_size(args) : 0;
    assert_true(n <= sizeof(buf));
    if (args)
        protobuf_c_message_pack(args, buf);
    char err[160];
    *out = NULL;
    int rc = contract_query(out, err, sizeof(err), &h->st, contract, query, buf, n);
    return rc < 0 ? -rc : rc;
}

H_FN void h_advance(struct harness *h, uint64_t ms)
{
    h->time_ms += ms;
}

/* ----------------------------------------------------------- fixtures */

/* Registers a resource of owner with fields "plate", "owner_name" (sensitive), "amount". */
H_FN int h_register(struct harness *h, int owner, const char *id, Bex__ShareType share, const char *role_read,
                      const char *role_verify)
{
    Bex__FieldDef f[3];
    Bex__FieldDef *fp[3];
    static const char *names[3] = {"plate", "owner_name", "amount"};
    for (int i = 0; i < 3; i++) {
        bex__field_def__init(&f[i]);
        f[i].name = (char *)names[i];
        f[i].type = i == 2 ? BEX__FIELD_TYPE__FIELD_DECIMAL : BEX__FIELD_TYPE__FIELD_STRING;
        f[i].sensitive = i == 1;
        fp[i] = &f[i];
    }
    Bex__RolePolicy p[2];
    Bex__RolePolicy *pp[2];
    size_t np = 0;
    if (role_read) {
        bex__role_policy__init(&p[np]);
        p[np].role = (char *)role_read;
        p[np].read = 1;
        p[np].verify = 1;
        pp[np] = &p[np];
        np++;
    }
    if (role_verify) {
        bex__role_policy__init(&p[np]);
        p[np].role = (char *)role_verify;
        p[np].verify = 1;
        pp[np] = &p[np];
        np++;
    }
    Bex__Resource r = BEX__RESOURCE__INIT;
    r.id = (char *)id;
    r.title = "Traffic violations";
    r.n_fields = 3;
    r.fields = fp;
    r.share_type = share;
    r.share_conditions = share == BEX__SHARE_TYPE__SHARE_CONDITIONAL ? "for enforcement only" : "";
    r.legal_basis = share == BEX__SHARE_TYPE__SHARE_NONE ? "Privacy Act s.12" : "";
    r.update_cycle = "daily";
    r.n_roles = np;
    r.roles = pp;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = &r;
    return h_call(h, owner, SIG_O1, "catalog", "register", &a.base);
}

/* Requests a grant; *id receives its id from the receipt result on success. */
H_FN int h_request(struct harness *h, uint64_t *id, int consumer, const char *resource, Bex__AccessMode mode,
                     const char *const *fields, size_t n_fields, uint64_t expiry_ms)
{
    Bex__GrantRequestArgs a = BEX__GRANT_REQUEST_ARGS__INIT;
    a.resource = (char *)resource;
    a.fields = (char **)fields;
    a.n_fields = n_fields;
    a.mode = mode;
    a.purpose = "case 2024-17";
    a.expiry_ms = expiry_ms;
    int code = h_call(h, consumer, SIG_O1, "grant", "request", &a.base);
    if (code == 0 && id) {
        Bex__GrantResult *r = bex__grant_result__unpack(NULL, h->rc[0].result_len, h->rc[0].result);
        assert_non_null(r);
        *id = r->grant_id;
        bex__grant_result__free_unpacked(r, NULL);
    }
    return code;
}

H_FN int h_act(struct harness *h, int agency, unsigned sigs, const char *method, uint64_t grant_id)
{
    Bex__GrantActArgs a = BEX__GRANT_ACT_ARGS__INIT;
    a.grant_id = grant_id;
    a.reason = "reviewed";
    return h_call(h, agency, sigs, "grant", method, &a.base);
}

/* A fake sealed blob of n bytes (the contracts only check sizes). */
H_FN void h_blob(ProtobufCBinaryData *b, uint8_t *buf, size_t n, uint8_t fill)
{
    memset(buf, fill, n);
    b->data = buf;
    b->len = n;
}

/* Publishes a record with sealed plate/owner_name/amount under a 32-byte key. */
H_FN int h_publish(struct harness *h, int owner, const char *resource, const uint8_t key[32], uint64_t version)
{
    static uint8_t ct[3][64], wk[3][93];
    Bex__Sealed s[3];
    Bex__RecordField f[3];
    Bex__RecordField *fp[3];
    static const char *names[3] = {"plate", "owner_name", "amount"};
    for (int i = 0; i < 3; i++) {
        bex__sealed__init(&s[i]);
        h_blob(&s[i].ciphertext, ct[i], sizeof(ct[i]), (uint8_t)(0x10 + i));
        h_blob(&s[i].wrapped_key, wk[i], sizeof(wk[i]), (uint8_t)(0x20 + i));
        bex__record_field__init(&f[i]);
        f[i].name = (char *)names[i];
        f[i].value_case = BEX__RECORD_FIELD__VALUE_SEALED;
        f[i].sealed = &s[i];
        fp[i] = &f[i];
    }
    Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;
    a.resource = (char *)resource;
    a.key.data = (uint8_t *)key;
    a.key.len = 32;
    a.version = version;
    a.n_fields = 3;
    a.fields = fp;
    return h_call(h, owner, SIG_O1, "record", "publish", &a.base);
}

H_FN uint64_t h_result_id(const struct harness *h, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, h->rc[0].result_len, h->rc[0].result);
    assert_non_null(m);
    /* Every id-carrying result has its id as field 1. */
    uint64_t id = *(const uint64_t *)((const char *)m + d->fields[0].offset);
    protobuf_c_message_free_unpacked(m, NULL);
    return id;
}

H_FN int h_access(struct harness *h, uint64_t *id, int consumer, const char *resource, const uint8_t key[32])
{
    Bex__AccessRequestArgs a = BEX__ACCESS_REQUEST_ARGS__INIT;
    a.resource = (char *)resource;
    a.record_key.data = (uint8_t *)key;
    a.record_key.len = 32;
    a.purpose = "traffic stop";
    int code = h_call(h, consumer, SIG_O1, "access", "request", &a.base);
    if (code == 0 && id)
        *id = h_result_id(h, &bex__access_result__descriptor);
    return code;
}

H_FN int h_release(struct harness *h, int owner, unsigned sigs, uint64_t access_id, const char *const *fields,
                     size_t n)
{
    static uint8_t wk[8][93];
    Bex__FieldKey k[8];
    Bex__FieldKey *kp[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        bex__field_key__init(&k[i]);
        k[i].field = (char *)fields[i];
        h_blob(&k[i].wrapped_key, wk[i], sizeof(wk[i]), 0x33);
        kp[i] = &k[i];
    }
    Bex__AccessReleaseArgs a = BEX__ACCESS_RELEASE_ARGS__INIT;
    a.access_id = access_id;
    a.n_keys = n;
    a.keys = kp;
    return h_call(h, owner, sigs, "access", "release", &a.base);
}

/* Counts audit entries for a tx id with the given code. */
H_FN size_t h_audit_count(struct harness *h, const uint8_t tx_id[32], int code)
{
    Bex__AuditQueryArgs q = BEX__AUDIT_QUERY_ARGS__INIT;
    q.limit = CONTRACT_PAGE_MAX;
    size_t found = 0;
    uint8_t cursor[CONTRACT_KEY_BYTES_MAX];
    for (;;) {
        ProtobufCMessage *m;
        assert_int_equal(h_query(h, &m, "audit", "query", &q.base), 0);
        Bex__AuditList *l = (Bex__AuditList *)m;
        for (size_t i = 0; i < l->n_entries; i++)
            if (l->entries[i]->tx_id.len == 32 && memcmp(l->entries[i]->tx_id.data, tx_id, 32) == 0 &&
                l->entries[i]->code == code)
                found++;
        bool more = l->next_cursor.len > 0;
        if (more) {
            memcpy(cursor, l->next_cursor.data, l->next_cursor.len);
            q.cursor.data = cursor;
            q.cursor.len = l->next_cursor.len;
        }
        contract_result_free(m);
        if (!more)
            return found;
    }
}

#endif
