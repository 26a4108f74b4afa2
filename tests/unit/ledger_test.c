/*
 * ledger_test.c: the ledger (store and executor joined) on real LMDB stores
 * in private temporary directories.
 *
 * The genesis is built in code: four agencies, each with two officer keys
 * (threshold 1) and an encryption key, four nodes, every key a fresh
 * secp256k1 key from crypto_keygen(). Blocks carry real transactions built
 * and signed with txbuild_sign() (mostly catalog.register by an officer of
 * the owner), wrapped in an encoded BlockProposal whose SHA-256 is the
 * digest, as consensus hands them to the ledger.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bex.h"
#include "bex.pb-c.h"
#include "config.h"
#include "contract.h"
#include "crypto.h"
#include "ledger.h"
#include "store.h"
#include "store_util.h"
#include "txbuild.h"

#define CHAIN "bex-ledger-test"
#define T0 1700000000000ull /* genesis time */
#define AGENCIES 4
#define OFFICERS 2
#define TXS_MAX 512
#define MAP_BYTES ((size_t)64 << 20)

enum { TRAFFIC, POLICE, HEALTH, TAX };

static const char *const agency_ids[AGENCIES] = {"city.traffic", "city.police", "state.health", "city.tax"};
static const char *const agency_roles[AGENCIES] = {"traffic", "police", "health", "finance"};

struct fixture {
    char dir[STORE_UTIL_PATH_BYTES];
    char path_a[STORE_UTIL_PATH_BYTES + 8];
    char path_b[STORE_UTIL_PATH_BYTES + 8];
    char err[512];
    struct genesis g;
    struct crypto_seckey officers[AGENCIES][OFFICERS];
    uint64_t nonce[AGENCIES]; /* the last nonce handed out per agency */
    struct store_options opt;
};

/* One encoded, signed transaction and its id. */
struct tx {
    uint8_t *b;
    size_t len;
    uint8_t id[CRYPTO_HASH_BYTES];
};

/* One block as consensus delivers it: proposal, digest and certificate. */
struct block {
    uint64_t height;
    uint8_t *proposal; /* NULL for a null request */
    size_t proposal_len;
    uint8_t digest[LEDGER_HASH_BYTES];
    uint8_t *cert;
    size_t cert_len;
};

/* ------------------------------------------------------------ fixture */

static void fresh_key(struct crypto_seckey *sk, struct crypto_pubkey *pk)
{
    assert_int_equal(crypto_keygen(sk, pk), 0);
}

static void build_genesis(struct fixture *fx)
{
    struct genesis *g = &fx->g;
    struct crypto_seckey sk;

    config_genesis_defaults(g);
    snprintf(g->chain_id, sizeof g->chain_id, "%s", CHAIN);
    g->genesis_time_ms = T0;
    g->agencies_n = AGENCIES;
    g->nodes_n = AGENCIES;
    for (int i = 0; i < AGENCIES; i++) {
        struct genesis_agency *a = &g->agencies[i];
        struct genesis_node *n = &g->nodes[i];

        snprintf(a->id, sizeof a->id, "%s", agency_ids[i]);
        snprintf(a->name, sizeof a->name, "Agency %s", agency_ids[i]);
        a->roles_n = 1;
        snprintf(a->roles[0], sizeof a->roles[0], "%s", agency_roles[i]);
        a->officers_n = OFFICERS;
        for (int k = 0; k < OFFICERS; k++)
            fresh_key(&fx->officers[i][k], &a->officers[k]);
        a->threshold = 1;
        fresh_key(&sk, &a->enc_key);
        snprintf(n->agency, sizeof n->agency, "%s", agency_ids[i]);
        fresh_key(&sk, &n->node_key);
        assert_int_equal(crypto_random(n->tls_key, sizeof n->tls_key), 0);
        snprintf(n->address.host, sizeof n->address.host, "127.0.0.1");
        n->address.port = (uint16_t)(26601 + i);
    }
    crypto_wipe(&sk, sizeof sk);
    assert_int_equal(config_check_genesis(g, "genesis", fx->err, sizeof fx->err), 0);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    if (fx == NULL || crypto_init() != 0)
        return -1;
    if (store_util_tmpdir(fx->dir, sizeof fx->dir) != 0)
        return -1;
    snprintf(fx->path_a, sizeof fx->path_a, "%s/a", fx->dir);
    snprintf(fx->path_b, sizeof fx->path_b, "%s/b", fx->dir);
    fx->opt.map_bytes = MAP_BYTES;
    fx->opt.no_sync = true;
    build_genesis(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = store_util_rmtree(fx->dir);

    crypto_wipe(fx->officers, sizeof fx->officers);
    free(fx);
    crypto_close();
    return rc;
}

static struct ledger *open_at(struct fixture *fx, const char *path)
{
    struct ledger *l = NULL;

    fx->err[0] = '\0';
    if (ledger_open(&l, path, &fx->opt, &fx->g, fx->err, sizeof fx->err) != 0)
        fail_msg("ledger_open %s: %s", path, fx->err);
    assert_non_null(l);
    return l;
}

/* ------------------------------------------------------------ transactions */

static void tx_free(struct tx *t)
{
    free(t->b);
    t->b = NULL;
}

/* Signs a tx of agency with one of its officer keys; args are encoded from m (NULL: empty). */
static void tx_make(struct fixture *fx, struct tx *t, int agency, int officer, uint64_t nonce, const char *contract,
                    const char *method, const ProtobufCMessage *m)
{
    uint8_t *args = NULL;
    size_t args_len = 0;

    if (m != NULL) {
        args_len = protobuf_c_message_get_packed_size(m);
        args = malloc(args_len ? args_len : 1);
        assert_non_null(args);
        assert_int_equal(protobuf_c_message_pack(m, args), args_len);
    }
    struct txbuild tb = {
        .chain_id = CHAIN,
        .sender = agency_ids[agency],
        .nonce = nonce,
        .contract = contract,
        .method = method,
        .args = args,
        .args_len = args_len,
        .timestamp_ms = T0 + nonce,
    };
    assert_int_equal(txbuild_sign(&t->b, &t->len, t->id, &tb, &fx->officers[agency][officer], 1), 0);
    free(args);
}

/*
 * catalog.register of resource id by agency, with nonce (0: the agency's
 * next nonce), signed by its first officer.
 */
static void tx_register_nonce(struct fixture *fx, struct tx *t, int agency, const char *id, uint64_t nonce)
{
    Bex__FieldDef f = BEX__FIELD_DEF__INIT;
    Bex__FieldDef *fp = &f;
    Bex__Resource r = BEX__RESOURCE__INIT;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;

    f.name = "plate";
    f.type = BEX__FIELD_TYPE__FIELD_STRING;
    r.id = (char *)id;
    r.title = "Registered vehicles";
    r.n_fields = 1;
    r.fields = &fp;
    r.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    r.update_cycle = "daily";
    a.resource = &r;
    tx_make(fx, t, agency, 0, nonce ? nonce : ++fx->nonce[agency], "catalog", "register", &a.base);
}

static void tx_register(struct fixture *fx, struct tx *t, int agency, const char *id)
{
    tx_register_nonce(fx, t, agency, id, 0);
}

/* ------------------------------------------------------------ blocks */

static void block_free(struct block *b)
{
    free(b->proposal);
    free(b->cert);
    memset(b, 0, sizeof *b);
}

/* A commit certificate for the block: three votes with made-up signatures. */
static void block_cert(struct block *b)
{
    Bex__CommitCert c = BEX__COMMIT_CERT__INIT;
    Bex__CertVote v[3], *vp[3];
    uint8_t sig[3][CRYPTO_SIG_BYTES];

    c.view = 0;
    c.seq = b->height;
    c.digest.data = b->digest;
    c.digest.len = LEDGER_HASH_BYTES;
    for (int i = 0; i < 3; i++) {
        bex__cert_vote__init(&v[i]);
        memset(sig[i], 0x40 + i, sizeof sig[i]);
        v[i].replica = (uint32_t)i;
        v[i].sig.data = sig[i];
        v[i].sig.len = sizeof sig[i];
        vp[i] = &v[i];
    }
    c.n_votes = 3;
    c.votes = vp;
    b->cert_len = bex__commit_cert__get_packed_size(&c);
    b->cert = malloc(b->cert_len);
    assert_non_null(b->cert);
    assert_int_equal(bex__commit_cert__pack(&c, b->cert), b->cert_len);
}

/* Encodes a proposal of chain at height with the given txs (raw bytes). */
static void block_make_raw(struct block *b, const char *chain, uint64_t height, uint64_t time_ms,
                           const ProtobufCBinaryData *txs, size_t n)
{
    Bex__BlockProposal p = BEX__BLOCK_PROPOSAL__INIT;

    memset(b, 0, sizeof *b);
    b->height = height;
    p.chain_id = (char *)chain;
    p.height = height;
    p.view = 0;
    p.time_ms = time_ms;
    p.proposer = (uint32_t)(height % AGENCIES);
    p.n_txs = n;
    p.txs = (ProtobufCBinaryData *)txs;
    b->proposal_len = bex__block_proposal__get_packed_size(&p);
    b->proposal = malloc(b->proposal_len ? b->proposal_len : 1);
    assert_non_null(b->proposal);
    assert_int_equal(bex__block_proposal__pack(&p, b->proposal), b->proposal_len);
    crypto_sha256(b->digest, b->proposal, b->proposal_len);
    block_cert(b);
}

static void block_make(struct block *b, uint64_t height, uint64_t time_ms, const struct tx *txs, size_t n)
{
    ProtobufCBinaryData raw[TXS_MAX];

    assert_true(n <= TXS_MAX);
    for (size_t i = 0; i < n; i++) {
        raw[i].data = txs[i].b;
        raw[i].len = txs[i].len;
    }
    block_make_raw(b, CHAIN, height, time_ms, raw, n);
}

/* A null request: no proposal, an all-zero digest. */
static void block_null(struct block *b, uint64_t height)
{
    memset(b, 0, sizeof *b);
    b->height = height;
    block_cert(b);
}

static int block_apply(struct ledger *l, const struct ledger_applied **res, const struct block *b)
{
    return ledger_apply(l, res, b->height, b->digest, b->proposal, b->proposal_len, b->cert, b->cert_len);
}

static const struct ledger_applied *apply_ok(struct ledger *l, const struct block *b)
{
    const struct ledger_applied *res = NULL;

    assert_int_equal(block_apply(l, &res, b), 0);
    assert_non_null(res);
    assert_int_equal(res->height, b->height);
    assert_int_equal(ledger_height(l), b->height);
    return res;
}

/* Builds block height of txs, applies it and frees it. */
static const struct ledger_applied *apply_txs(struct ledger *l, uint64_t height, uint64_t time_ms,
                                              const struct tx *txs, size_t n)
{
    struct block b;
    const struct ledger_applied *res;

    block_make(&b, height, time_ms, txs, n);
    res = apply_ok(l, &b);
    block_free(&b);
    return res;
}

/* The receipt code of receipt i of res, checked against its encoded form. */
static int receipt_code(const struct ledger_applied *res, size_t i)
{
    Bex__Receipt *r;
    int code;

    assert_true(i < res->out->receipt_count);
    r = bex__receipt__unpack(NULL, res->out->receipts[i].encoded_len, res->out->receipts[i].encoded);
    assert_non_null(r);
    code = r->code;
    assert_int_equal(code, res->out->receipts[i].code);
    assert_int_equal(r->height, res->height);
    assert_int_equal(r->index, i);
    bex__receipt__free_unpacked(r, NULL);
    return code;
}

/* ------------------------------------------------------------ reads */

/* The updated_ms of resource id through a read snapshot, or 0 when it does not exist. */
static uint64_t resource_updated_ms(struct ledger *l, const char *id)
{
    struct ledger_read *r = NULL;
    Bex__NameArgs q = BEX__NAME_ARGS__INIT;
    ProtobufCMessage *m = NULL;
    uint8_t args[256];
    char err[160];
    uint64_t t;
    size_t n;
    int rc;

    q.id = (char *)id;
    n = bex__name_args__get_packed_size(&q);
    assert_true(n <= sizeof args);
    assert_int_equal(bex__name_args__pack(&q, args), n);
    assert_int_equal(ledger_read_begin(l, &r), 0);
    rc = contract_query(&m, err, sizeof err, ledger_read_store(r), "catalog", "get", args, n);
    ledger_read_end(r);
    if (rc == -BEX_ENOTFOUND)
        return 0;
    assert_int_equal(rc, 0);
    t = ((Bex__Resource *)m)->updated_ms;
    assert_string_equal(((Bex__Resource *)m)->id, id);
    assert_true(t != 0);
    contract_result_free(m);
    return t;
}

static uint64_t last_nonce(struct ledger *l, int agency)
{
    uint64_t n = UINT64_MAX;

    assert_int_equal(ledger_last_nonce(l, &n, agency_ids[agency]), 0);
    return n;
}

/* Whether the store holds a receipt for id. */
static bool has_receipt(struct ledger *l, const uint8_t id[CRYPTO_HASH_BYTES])
{
    struct ledger_read *r = NULL;
    const uint8_t *v;
    size_t n;
    int rc;

    assert_int_equal(ledger_read_begin(l, &r), 0);
    rc = store_get_receipt(ledger_read_raw(r), &v, &n, id);
    ledger_read_end(r);
    assert_true(rc == 0 || rc == -BEX_ENOTFOUND);
    return rc == 0;
}

/* The stored BlockRecord of height (the caller frees it). */
static Bex__BlockRecord *stored_record(struct ledger *l, uint64_t height)
{
    struct ledger_read *r = NULL;
    Bex__BlockRecord *rec;
    const uint8_t *v;
    size_t n;

    assert_int_equal(ledger_read_begin(l, &r), 0);
    assert_int_equal(store_get_block(ledger_read_raw(r), &v, &n, height), 0);
    rec = bex__block_record__unpack(NULL, n, v);
    ledger_read_end(r);
    assert_non_null(rec);
    return rec;
}

/* hash_h = SHA-256(hash_{h-1} || u64be(h) || digest || root_h), computed here independently. */
static void expected_hash(uint8_t out[LEDGER_HASH_BYTES], const uint8_t prev[LEDGER_HASH_BYTES], uint64_t height,
                          const uint8_t digest[LEDGER_HASH_BYTES], const uint8_t root[LEDGER_HASH_BYTES])
{
    uint8_t buf[3 * LEDGER_HASH_BYTES + 8];

    memcpy(buf, prev, LEDGER_HASH_BYTES);
    for (int i = 0; i < 8; i++)
        buf[LEDGER_HASH_BYTES + i] = (uint8_t)(height >> (56 - 8 * i));
    memcpy(buf + LEDGER_HASH_BYTES + 8, digest, LEDGER_HASH_BYTES);
    memcpy(buf + 2 * LEDGER_HASH_BYTES + 8, root, LEDGER_HASH_BYTES);
    crypto_sha256(out, buf, sizeof buf);
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* ------------------------------------------------------------ genesis and open */

static void ledger_open_writes_genesis(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    uint8_t ghash[CRYPTO_HASH_BYTES], want[LEDGER_HASH_BYTES], buf[11 + 2 * LEDGER_HASH_BYTES];
    struct ledger_read *r = NULL;
    char *json = NULL, err[160];
    json_t *doc, *list;
    json_error_t jerr;
    uint64_t h = 99;
    uint8_t root[STORE_HASH_BYTES];

    assert_int_equal(ledger_height(l), 0);
    assert_int_equal(ledger_time_ms(l), T0);
    assert_false(all_zero(ledger_root(l), LEDGER_HASH_BYTES));
    /* hash_0 = SHA-256("bex-genesis" || genesis_hash || root_0) */
    assert_int_equal(config_genesis_hash(ghash, &fx->g), 0);
    memcpy(buf, "bex-genesis", 11);
    memcpy(buf + 11, ghash, sizeof ghash);
    memcpy(buf + 11 + sizeof ghash, ledger_root(l), LEDGER_HASH_BYTES);
    crypto_sha256(want, buf, sizeof buf);
    assert_memory_equal(ledger_hash(l), want, LEDGER_HASH_BYTES);

    /* The store agrees on the head. */
    assert_int_equal(ledger_read_begin(l, &r), 0);
    assert_int_equal(store_get_height(ledger_read_raw(r), &h), 0);
    assert_int_equal(h, 0);
    assert_int_equal(store_get_root(ledger_read_raw(r), root), 0);
    assert_memory_equal(root, ledger_root(l), LEDGER_HASH_BYTES);
    assert_int_equal(store_get_hash(ledger_read_raw(r), root), 0);
    assert_memory_equal(root, ledger_hash(l), LEDGER_HASH_BYTES);

    /* Every agency of the genesis is registered, with its keys. */
    assert_int_equal(contract_query_json(&json, err, sizeof err, ledger_read_store(r), "agency", "list", NULL), 0);
    ledger_read_end(r);
    doc = json_loads(json, 0, &jerr);
    assert_non_null(doc);
    list = json_object_get(doc, "agencies");
    assert_true(json_is_array(list));
    assert_int_equal(json_array_size(list), AGENCIES);
    for (int i = 0; i < AGENCIES; i++) {
        json_t *a = NULL;
        size_t k;
        json_t *v;
        char hex[CRYPTO_PUB_HEX + 1];

        json_array_foreach(list, k, v)
        {
            if (strcmp(json_string_value(json_object_get(v, "id")), agency_ids[i]) == 0)
                a = v;
        }
        assert_non_null(a);
        assert_int_equal(json_integer_value(json_object_get(a, "threshold")), 1);
        assert_int_equal(json_array_size(json_object_get(a, "officer_keys")), OFFICERS);
        crypto_pubkey_to_hex(hex, &fx->g.agencies[i].officers[1]);
        assert_string_equal(json_string_value(json_array_get(json_object_get(a, "officer_keys"), 1)), hex);
        crypto_pubkey_to_hex(hex, &fx->g.nodes[i].node_key);
        assert_string_equal(json_string_value(json_object_get(a, "node_key")), hex);
        assert_string_equal(json_string_value(json_array_get(json_object_get(a, "roles"), 0)), agency_roles[i]);
    }
    json_decref(doc);
    free(json);

    /* The genesis record: height 0, no proposal, a zero previous hash. */
    Bex__BlockRecord *rec = stored_record(l, 0);
    assert_int_equal(rec->height, 0);
    assert_int_equal(rec->proposal.len, 0);
    assert_int_equal(rec->prev_hash.len, LEDGER_HASH_BYTES);
    assert_true(all_zero(rec->prev_hash.data, LEDGER_HASH_BYTES));
    assert_memory_equal(rec->hash.data, ledger_hash(l), LEDGER_HASH_BYTES);
    assert_memory_equal(rec->state_root.data, ledger_root(l), LEDGER_HASH_BYTES);
    bex__block_record__free_unpacked(rec, NULL);
    assert_int_equal(last_nonce(l, TRAFFIC), 0);
    ledger_close(l);
}

static void ledger_reopen_keeps_head(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a), *again;
    uint8_t root[LEDGER_HASH_BYTES], hash[LEDGER_HASH_BYTES];
    struct tx t[2];

    /* Reopening right after genesis keeps it and does not write it again. */
    memcpy(root, ledger_root(l), LEDGER_HASH_BYTES);
    memcpy(hash, ledger_hash(l), LEDGER_HASH_BYTES);
    ledger_close(l);
    l = open_at(fx, fx->path_a);
    assert_int_equal(ledger_height(l), 0);
    assert_memory_equal(ledger_root(l), root, LEDGER_HASH_BYTES);
    assert_memory_equal(ledger_hash(l), hash, LEDGER_HASH_BYTES);

    tx_register(fx, &t[0], TRAFFIC, "city.traffic/vehicles");
    apply_txs(l, 1, T0 + 5000, &t[0], 1);
    memcpy(root, ledger_root(l), LEDGER_HASH_BYTES);
    memcpy(hash, ledger_hash(l), LEDGER_HASH_BYTES);

    /* One process per data directory. */
    again = NULL;
    assert_int_equal(ledger_open(&again, fx->path_a, &fx->opt, &fx->g, fx->err, sizeof fx->err), -BEX_ESTATE);
    assert_null(again);
    ledger_close(l);

    l = open_at(fx, fx->path_a);
    assert_int_equal(ledger_height(l), 1);
    assert_int_equal(ledger_time_ms(l), T0 + 5000);
    assert_memory_equal(ledger_root(l), root, LEDGER_HASH_BYTES);
    assert_memory_equal(ledger_hash(l), hash, LEDGER_HASH_BYTES);
    assert_int_equal(last_nonce(l, TRAFFIC), 1);
    assert_int_equal(resource_updated_ms(l, "city.traffic/vehicles"), T0 + 5000);

    /* The chain goes on after the reopen, and the block time still cannot run back. */
    tx_register(fx, &t[1], TRAFFIC, "city.traffic/permits");
    const struct ledger_applied *res = apply_txs(l, 2, T0 + 1000, &t[1], 1);
    assert_int_equal(res->time_ms, T0 + 5000);
    assert_int_equal(receipt_code(res, 0), 0);
    assert_int_equal(last_nonce(l, TRAFFIC), 2);
    /* A tx committed before the reopen is still known as committed. */
    res = apply_txs(l, 3, T0 + 6000, &t[0], 1);
    assert_int_equal(res->skipped, 1);
    assert_int_equal(res->out->receipt_count, 0);
    ledger_close(l);
    tx_free(&t[0]);
    tx_free(&t[1]);
}

static void ledger_reopen_other_genesis_refused(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    struct genesis other = fx->g;
    uint8_t hash[LEDGER_HASH_BYTES];

    memcpy(hash, ledger_hash(l), LEDGER_HASH_BYTES);
    ledger_close(l);

    other.genesis_time_ms = T0 + 1;
    assert_int_equal(config_check_genesis(&other, "other", fx->err, sizeof fx->err), 0);
    l = NULL;
    fx->err[0] = '\0';
    assert_int_equal(ledger_open(&l, fx->path_a, &fx->opt, &other, fx->err, sizeof fx->err), -BEX_ESTATE);
    assert_null(l);
    assert_non_null(strstr(fx->err, "genesis"));

    snprintf(other.chain_id, sizeof other.chain_id, "bex-other");
    other.genesis_time_ms = T0;
    assert_int_equal(config_check_genesis(&other, "other", fx->err, sizeof fx->err), 0);
    assert_int_equal(ledger_open(&l, fx->path_a, &fx->opt, &other, fx->err, sizeof fx->err), -BEX_ESTATE);
    assert_null(l);

    /* The refusal changed nothing: the right genesis still opens the same chain. */
    l = open_at(fx, fx->path_a);
    assert_int_equal(ledger_height(l), 0);
    assert_memory_equal(ledger_hash(l), hash, LEDGER_HASH_BYTES);
    ledger_close(l);
}

/* ------------------------------------------------------------ applying blocks */

static void ledger_apply_signed_txs(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    struct ledger_read *before = NULL;
    uint8_t root0[LEDGER_HASH_BYTES];
    const struct ledger_applied *res;
    struct tx t[3];

    memcpy(root0, ledger_root(l), LEDGER_HASH_BYTES);
    tx_register(fx, &t[0], TRAFFIC, "city.traffic/vehicles");
    tx_register(fx, &t[1], POLICE, "city.police/incidents");
    tx_register(fx, &t[2], TRAFFIC, "city.traffic/permits");
    assert_int_equal(ledger_read_begin(l, &before), 0);

    res = apply_txs(l, 1, T0 + 1000, t, 3);
    assert_int_equal(res->time_ms, T0 + 1000);
    assert_int_equal(res->skipped, 0);
    assert_int_equal(res->out->receipt_count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(receipt_code(res, i), 0);
        assert_memory_equal(res->out->receipts[i].tx_id, t[i].id, CRYPTO_HASH_BYTES);
        assert_true(has_receipt(l, t[i].id));
    }
    assert_memory_equal(res->state_root, ledger_root(l), LEDGER_HASH_BYTES);
    assert_memory_equal(res->hash, ledger_hash(l), LEDGER_HASH_BYTES);
    assert_memory_not_equal(ledger_root(l), root0, LEDGER_HASH_BYTES);
    assert_int_equal(ledger_time_ms(l), T0 + 1000);

    /* New snapshots see the block; one begun before it does not. */
    assert_int_equal(resource_updated_ms(l, "city.traffic/vehicles"), T0 + 1000);
    assert_int_equal(resource_updated_ms(l, "city.police/incidents"), T0 + 1000);
    assert_int_equal(resource_updated_ms(l, "city.traffic/permits"), T0 + 1000);
    assert_int_equal(resource_updated_ms(l, "city.tax/anything"), 0);
    {
        const uint8_t *v;
        size_t n;
        assert_int_equal(store_get_state(ledger_read_raw(before), &v, &n, (const uint8_t *)"nonce/city.traffic", 18),
                         -BEX_ENOTFOUND);
        ledger_read_end(before);
    }
    assert_int_equal(last_nonce(l, TRAFFIC), 2);
    assert_int_equal(last_nonce(l, POLICE), 1);
    assert_int_equal(last_nonce(l, TAX), 0);

    /* The next block continues the nonces. */
    tx_free(&t[0]);
    tx_register(fx, &t[0], TRAFFIC, "city.traffic/fines");
    res = apply_txs(l, 2, T0 + 2000, &t[0], 1);
    assert_int_equal(receipt_code(res, 0), 0);
    assert_int_equal(last_nonce(l, TRAFFIC), 3);
    ledger_close(l);
    for (int i = 0; i < 3; i++)
        tx_free(&t[i]);
}

static void ledger_apply_height_gap_refused(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res = NULL;
    uint8_t hash[LEDGER_HASH_BYTES];
    struct block b;
    struct tx t;

    tx_register(fx, &t, TRAFFIC, "city.traffic/vehicles");
    memcpy(hash, ledger_hash(l), LEDGER_HASH_BYTES);
    block_make(&b, 2, T0 + 1000, &t, 1);
    assert_int_equal(block_apply(l, &res, &b), -BEX_ESTATE);
    assert_null(res);
    block_free(&b);
    block_make(&b, 0, T0 + 1000, &t, 1);
    assert_int_equal(block_apply(l, &res, &b), -BEX_ESTATE);
    block_free(&b);
    assert_int_equal(ledger_height(l), 0);
    assert_memory_equal(ledger_hash(l), hash, LEDGER_HASH_BYTES);
    assert_int_equal(last_nonce(l, TRAFFIC), 0);

    block_make(&b, 1, T0 + 1000, &t, 1);
    apply_ok(l, &b);
    /* A block applied twice is a gap backwards. */
    assert_int_equal(block_apply(l, &res, &b), -BEX_ESTATE);
    assert_int_equal(ledger_height(l), 1);
    block_free(&b);
    ledger_close(l);
    tx_free(&t);
}

static void ledger_apply_digest_mismatch_refused(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res = NULL;
    uint8_t hash[LEDGER_HASH_BYTES], bad[LEDGER_HASH_BYTES];
    struct block b;
    struct tx t;

    tx_register(fx, &t, TRAFFIC, "city.traffic/vehicles");
    memcpy(hash, ledger_hash(l), LEDGER_HASH_BYTES);
    block_make(&b, 1, T0 + 1000, &t, 1);
    memcpy(bad, b.digest, sizeof bad);
    bad[31] ^= 1;
    assert_int_equal(ledger_apply(l, &res, 1, bad, b.proposal, b.proposal_len, b.cert, b.cert_len), -BEX_EINVAL);
    assert_null(res);
    /* A null request must carry the zero digest. */
    assert_int_equal(ledger_apply(l, &res, 1, b.digest, NULL, 0, b.cert, b.cert_len), -BEX_EINVAL);
    /* A proposal cut short no longer matches its digest. */
    assert_int_equal(ledger_apply(l, &res, 1, b.digest, b.proposal, b.proposal_len - 1, b.cert, b.cert_len),
                     -BEX_EINVAL);
    assert_int_equal(ledger_height(l), 0);
    assert_memory_equal(ledger_hash(l), hash, LEDGER_HASH_BYTES);
    assert_false(has_receipt(l, t.id));

    /* Nothing was left behind: the right digest applies. */
    res = apply_ok(l, &b);
    assert_int_equal(receipt_code(res, 0), 0);
    block_free(&b);
    ledger_close(l);
    tx_free(&t);
}

static void ledger_apply_foreign_proposal_refused(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res = NULL;
    ProtobufCBinaryData raw;
    struct block b;
    struct tx t;
    uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    uint8_t digest[LEDGER_HASH_BYTES];

    tx_register(fx, &t, TRAFFIC, "city.traffic/vehicles");
    raw.data = t.b;
    raw.len = t.len;

    /* Another chain. */
    block_make_raw(&b, "bex-other", 1, T0 + 1000, &raw, 1);
    assert_int_equal(block_apply(l, &res, &b), -BEX_EDECODE);
    assert_null(res);
    block_free(&b);
    /* A proposal of height 2 delivered as height 1. */
    block_make_raw(&b, CHAIN, 2, T0 + 1000, &raw, 1);
    assert_int_equal(ledger_apply(l, &res, 1, b.digest, b.proposal, b.proposal_len, b.cert, b.cert_len),
                     -BEX_EDECODE);
    block_free(&b);
    /* Bytes that are no proposal at all, under their true digest. */
    crypto_sha256(digest, garbage, sizeof garbage);
    assert_int_equal(ledger_apply(l, &res, 1, digest, garbage, sizeof garbage, NULL, 0), -BEX_EDECODE);

    assert_int_equal(ledger_height(l), 0);
    assert_int_equal(last_nonce(l, TRAFFIC), 0);
    assert_false(has_receipt(l, t.id));
    block_make_raw(&b, CHAIN, 1, T0 + 1000, &raw, 1);
    res = apply_ok(l, &b);
    assert_int_equal(receipt_code(res, 0), 0);
    block_free(&b);
    ledger_close(l);
    tx_free(&t);
}

static void ledger_null_request_empty_block(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    uint8_t prev[LEDGER_HASH_BYTES], root1[LEDGER_HASH_BYTES], want[LEDGER_HASH_BYTES];
    struct block b;
    struct tx t;

    tx_register(fx, &t, TRAFFIC, "city.traffic/vehicles");
    apply_txs(l, 1, T0 + 7000, &t, 1);
    memcpy(prev, ledger_hash(l), LEDGER_HASH_BYTES);
    memcpy(root1, ledger_root(l), LEDGER_HASH_BYTES);

    block_null(&b, 2);
    res = apply_ok(l, &b);
    assert_int_equal(res->time_ms, T0 + 7000);
    assert_int_equal(ledger_time_ms(l), T0 + 7000);
    assert_int_equal(res->out->receipt_count, 0);
    assert_int_equal(res->skipped, 0);
    /* Only the chain head moves, so the root is new but derived from the same state. */
    assert_memory_not_equal(ledger_root(l), root1, LEDGER_HASH_BYTES);
    expected_hash(want, prev, 2, b.digest, res->state_root);
    assert_memory_equal(res->hash, want, LEDGER_HASH_BYTES);
    assert_int_equal(last_nonce(l, TRAFFIC), 1);

    Bex__BlockRecord *rec = stored_record(l, 2);
    assert_int_equal(rec->height, 2);
    assert_int_equal(rec->proposal.len, 0);
    assert_memory_equal(rec->prev_hash.data, prev, LEDGER_HASH_BYTES);
    bex__block_record__free_unpacked(rec, NULL);

    /* A null request right after genesis runs at the genesis time. */
    block_free(&b);
    ledger_close(l);
    tx_free(&t);
    l = open_at(fx, fx->path_b);
    block_null(&b, 1);
    res = apply_ok(l, &b);
    assert_int_equal(res->time_ms, T0);
    block_free(&b);
    ledger_close(l);
}

static void ledger_block_time_clamped(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    struct tx t[3];

    /* A proposal older than the genesis runs at the genesis time. */
    tx_register(fx, &t[0], TRAFFIC, "city.traffic/a");
    res = apply_txs(l, 1, T0 - 60000, &t[0], 1);
    assert_int_equal(res->time_ms, T0);
    assert_int_equal(receipt_code(res, 0), 0);
    assert_int_equal(resource_updated_ms(l, "city.traffic/a"), T0);

    tx_register(fx, &t[1], TRAFFIC, "city.traffic/b");
    res = apply_txs(l, 2, T0 + 9000, &t[1], 1);
    assert_int_equal(res->time_ms, T0 + 9000);

    /* The primary's clock runs backwards: the block keeps the previous time and executes. */
    tx_register(fx, &t[2], TRAFFIC, "city.traffic/c");
    res = apply_txs(l, 3, T0 + 3000, &t[2], 1);
    assert_int_equal(res->time_ms, T0 + 9000);
    assert_int_equal(ledger_time_ms(l), T0 + 9000);
    assert_int_equal(receipt_code(res, 0), 0);
    assert_int_equal(resource_updated_ms(l, "city.traffic/c"), T0 + 9000);
    assert_int_equal(last_nonce(l, TRAFFIC), 3);
    ledger_close(l);
    for (int i = 0; i < 3; i++)
        tx_free(&t[i]);
}

static void ledger_duplicate_tx_skipped(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    struct tx t[4], twice[3], resigned;

    tx_register(fx, &t[0], TRAFFIC, "city.traffic/a");
    res = apply_txs(l, 1, T0 + 1000, &t[0], 1);
    assert_int_equal(res->skipped, 0);
    assert_int_equal(receipt_code(res, 0), 0);

    /* Committed in block 1, proposed again in block 2 next to a new tx. */
    tx_register(fx, &t[1], POLICE, "city.police/a");
    twice[0] = t[0];
    twice[1] = t[1];
    res = apply_txs(l, 2, T0 + 2000, twice, 2);
    assert_int_equal(res->skipped, 1);
    assert_int_equal(res->out->receipt_count, 1);
    assert_memory_equal(res->out->receipts[0].tx_id, t[1].id, CRYPTO_HASH_BYTES);
    assert_int_equal(receipt_code(res, 0), 0);

    /* Twice within one block: the first runs, the second is skipped. */
    tx_register(fx, &t[2], TAX, "city.tax/a");
    twice[0] = t[2];
    twice[1] = t[2];
    res = apply_txs(l, 3, T0 + 3000, twice, 2);
    assert_int_equal(res->skipped, 1);
    assert_int_equal(res->out->receipt_count, 1);
    assert_int_equal(receipt_code(res, 0), 0);

    /*
     * The id is the hash of the body, so the same body signed by the other
     * officer is the same tx, even in between two different ones.
     */
    tx_register(fx, &t[3], HEALTH, "state.health/a");
    {
        Bex__Tx *dec = bex__tx__unpack(NULL, t[3].len, t[3].b);
        Bex__TxBody *body;
        assert_non_null(dec);
        body = bex__tx_body__unpack(NULL, dec->body.len, dec->body.data);
        assert_non_null(body);
        struct txbuild tb = {body->chain_id, body->sender,        body->nonce,    body->contract,
                             body->method,   body->args.data,     body->args.len, body->timestamp_ms};
        assert_int_equal(txbuild_sign(&resigned.b, &resigned.len, resigned.id, &tb, &fx->officers[HEALTH][1], 1), 0);
        bex__tx_body__free_unpacked(body, NULL);
        bex__tx__free_unpacked(dec, NULL);
    }
    assert_memory_equal(resigned.id, t[3].id, CRYPTO_HASH_BYTES);
    assert_true(resigned.len != t[3].len || memcmp(resigned.b, t[3].b, t[3].len) != 0);
    twice[0] = t[3];
    twice[1] = t[1];
    twice[2] = resigned;
    res = apply_txs(l, 4, T0 + 4000, twice, 3);
    assert_int_equal(res->skipped, 2);
    assert_int_equal(res->out->receipt_count, 1);
    assert_memory_equal(res->out->receipts[0].tx_id, t[3].id, CRYPTO_HASH_BYTES);

    assert_int_equal(last_nonce(l, TRAFFIC), 1);
    assert_int_equal(last_nonce(l, POLICE), 1);
    assert_int_equal(last_nonce(l, TAX), 1);
    assert_int_equal(last_nonce(l, HEALTH), 1);
    ledger_close(l);
    for (int i = 0; i < 4; i++)
        tx_free(&t[i]);
    tx_free(&resigned);
}

/*
 * Many txs in one block, each proposed twice (the copies in reverse order
 * after the originals, and some right after their original): each runs
 * once, in order, and every copy is skipped, whether it repeats a tx of
 * this block or of an earlier one.
 */
#define MANY_TXS 150

static void ledger_many_duplicates_in_one_block(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    static struct tx t[MANY_TXS];
    static struct tx prop[3 * MANY_TXS];
    size_t n = 0;

    for (int i = 0; i < MANY_TXS; i++) {
        char id[64];

        snprintf(id, sizeof id, "city.traffic/r%d", i);
        tx_register(fx, &t[i], TRAFFIC, id);
        prop[n++] = t[i];
        if (i % 10 == 0)
            prop[n++] = t[i];
    }
    for (int i = MANY_TXS - 1; i >= 0; i--)
        prop[n++] = t[i];
    res = apply_txs(l, 1, T0 + 1000, prop, n);
    assert_int_equal(res->out->receipt_count, MANY_TXS);
    assert_int_equal(res->skipped, n - MANY_TXS);
    for (int i = 0; i < MANY_TXS; i++) {
        assert_memory_equal(res->out->receipts[i].tx_id, t[i].id, CRYPTO_HASH_BYTES);
        assert_int_equal(receipt_code(res, (size_t)i), 0);
    }
    assert_int_equal(last_nonce(l, TRAFFIC), MANY_TXS);

    /* The next block repeats a few: all were committed before. */
    res = apply_txs(l, 2, T0 + 2000, &t[MANY_TXS / 2], 3);
    assert_int_equal(res->out->receipt_count, 0);
    assert_int_equal(res->skipped, 3);
    ledger_close(l);
    for (int i = 0; i < MANY_TXS; i++)
        tx_free(&t[i]);
}

static void ledger_undecodable_tx_skipped(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    uint8_t junk[] = {0x0a, 0xff, 0x01};
    ProtobufCBinaryData raw[2];
    struct block b;
    struct tx t;

    tx_register(fx, &t, TRAFFIC, "city.traffic/a");
    raw[0].data = junk;
    raw[0].len = sizeof junk;
    raw[1].data = t.b;
    raw[1].len = t.len;
    block_make_raw(&b, CHAIN, 1, T0 + 1000, raw, 2);
    res = apply_ok(l, &b);
    assert_int_equal(res->skipped, 1);
    assert_int_equal(res->out->receipt_count, 1);
    assert_memory_equal(res->out->receipts[0].tx_id, t.id, CRYPTO_HASH_BYTES);
    assert_int_equal(receipt_code(res, 0), 0);
    block_free(&b);
    ledger_close(l);
    tx_free(&t);
}

/*
 * The executor refuses a tx over CONTRACT_TX_BYTES_MAX without decoding it
 * and names its receipt by the hash of all its bytes. Proposed again in a
 * later block (its nonce was never consumed, so admission passes it again),
 * it must be skipped like any committed tx, not make the block fail on a
 * duplicate receipt.
 */
static void ledger_oversized_tx_skipped_when_repeated(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    size_t args_len = CONTRACT_TX_BYTES_MAX;
    uint8_t *args = calloc(1, args_len), id[CRYPTO_HASH_BYTES];
    struct tx big, twice[2];

    assert_non_null(args);
    struct txbuild tb = {CHAIN, agency_ids[TRAFFIC], 1, "catalog", "register", args, args_len, T0};
    assert_int_equal(txbuild_sign(&big.b, &big.len, big.id, &tb, &fx->officers[TRAFFIC][0], 1), 0);
    assert_true(big.len > CONTRACT_TX_BYTES_MAX);
    crypto_sha256(id, big.b, big.len);

    res = apply_txs(l, 1, T0 + 1000, &big, 1);
    assert_int_equal(res->out->receipt_count, 1);
    assert_int_equal(receipt_code(res, 0), BEX_ELIMIT);
    assert_int_equal(last_nonce(l, TRAFFIC), 0);

    res = apply_txs(l, 2, T0 + 2000, &big, 1);
    assert_int_equal(res->skipped, 1);
    assert_int_equal(res->out->receipt_count, 0);

    twice[0] = big;
    twice[1] = big;
    res = apply_txs(l, 3, T0 + 3000, twice, 2);
    assert_int_equal(res->skipped, 2);
    assert_int_equal(ledger_height(l), 3);
    ledger_close(l);
    tx_free(&big);
    free(args);
}

static void ledger_failing_tx_consumes_nonce(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    struct tx t[4];

    /* city.police may not register a resource under city.traffic's prefix. */
    tx_register(fx, &t[0], POLICE, "city.traffic/vehicles");
    res = apply_txs(l, 1, T0 + 1000, &t[0], 1);
    assert_int_equal(res->out->receipt_count, 1);
    assert_int_equal(receipt_code(res, 0), BEX_EPERM);
    assert_true(has_receipt(l, t[0].id));
    assert_int_equal(resource_updated_ms(l, "city.traffic/vehicles"), 0);
    assert_int_equal(last_nonce(l, POLICE), 1);

    /* The consumed nonce cannot be used again; the next one works. */
    tx_register_nonce(fx, &t[1], POLICE, "city.police/incidents", 1);
    tx_register(fx, &t[2], POLICE, "city.police/incidents");
    assert_int_equal(fx->nonce[POLICE], 2);
    /* Unknown contract: a failure too, and it consumes nonce 3. */
    tx_make(fx, &t[3], POLICE, 1, ++fx->nonce[POLICE], "nosuch", "register", NULL);
    res = apply_txs(l, 2, T0 + 2000, &t[1], 3);
    assert_int_equal(res->out->receipt_count, 3);
    assert_int_equal(receipt_code(res, 0), BEX_ENONCE);
    assert_int_equal(receipt_code(res, 1), 0);
    assert_int_equal(receipt_code(res, 2), BEX_EUNKNOWN);
    assert_int_equal(last_nonce(l, POLICE), 3);
    assert_int_equal(resource_updated_ms(l, "city.police/incidents"), T0 + 2000);
    ledger_close(l);
    for (int i = 0; i < 4; i++)
        tx_free(&t[i]);
}

/*
 * A view change can drop the block with a sender's lower nonces and keep a
 * later one: the later txs are deferred (no receipt, listed in the result),
 * and run when they come again after their predecessors.
 */
static void ledger_nonce_ahead_deferred(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    const struct ledger_applied *res;
    struct tx t[3];

    tx_register(fx, &t[0], POLICE, "city.police/a");
    tx_register(fx, &t[1], POLICE, "city.police/b");
    tx_register(fx, &t[2], POLICE, "city.police/c");
    res = apply_txs(l, 1, T0 + 1000, &t[1], 2);
    assert_int_equal(res->out->receipt_count, 0);
    assert_int_equal(res->deferred_count, 2);
    assert_memory_equal(res->deferred[0], t[1].id, 32);
    assert_memory_equal(res->deferred[1], t[2].id, 32);
    assert_false(has_receipt(l, t[1].id));
    assert_int_equal(last_nonce(l, POLICE), 0);

    /* Proposed again behind their predecessor, they run and are not skipped. */
    res = apply_txs(l, 2, T0 + 2000, t, 3);
    assert_int_equal(res->deferred_count, 0);
    assert_int_equal(res->skipped, 0);
    assert_int_equal(res->out->receipt_count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(receipt_code(res, i), 0);
    assert_int_equal(last_nonce(l, POLICE), 3);
    ledger_close(l);
    for (int i = 0; i < 3; i++)
        tx_free(&t[i]);
}

/* ------------------------------------------------------------ the chain */

static void ledger_hash_chain_recomputed(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    uint8_t prev[LEDGER_HASH_BYTES], want[LEDGER_HASH_BYTES], stored[STORE_HASH_BYTES];
    char id[64];
    struct tx t[2];

    memcpy(prev, ledger_hash(l), LEDGER_HASH_BYTES);
    for (uint64_t h = 1; h <= 6; h++) {
        struct block b;
        struct ledger_read *r = NULL;
        const struct ledger_applied *res;

        if (h == 4) {
            block_null(&b, h);
        } else {
            snprintf(id, sizeof id, "city.traffic/r%llu", (unsigned long long)h);
            tx_register(fx, &t[0], TRAFFIC, id);
            snprintf(id, sizeof id, "city.tax/r%llu", (unsigned long long)h);
            tx_register(fx, &t[1], TAX, id);
            block_make(&b, h, T0 + 1000 * h, t, 2);
            tx_free(&t[0]);
            tx_free(&t[1]);
        }
        res = apply_ok(l, &b);
        expected_hash(want, prev, h, b.digest, res->state_root);
        assert_memory_equal(res->hash, want, LEDGER_HASH_BYTES);
        assert_memory_equal(ledger_hash(l), want, LEDGER_HASH_BYTES);
        assert_int_equal(ledger_read_begin(l, &r), 0);
        assert_int_equal(store_get_hash(ledger_read_raw(r), stored), 0);
        ledger_read_end(r);
        assert_memory_equal(stored, want, LEDGER_HASH_BYTES);
        /* The height is part of the hash: the same inputs at another height hash differently. */
        expected_hash(want, prev, h + 1, b.digest, res->state_root);
        assert_memory_not_equal(res->hash, want, LEDGER_HASH_BYTES);
        memcpy(prev, res->hash, LEDGER_HASH_BYTES);
        block_free(&b);
    }
    ledger_close(l);
}

static void ledger_replicas_agree(void **state)
{
    struct fixture *fx = *state;
    struct ledger *a = open_at(fx, fx->path_a), *b = open_at(fx, fx->path_b);
    struct tx t[3];
    /* Block h carries t[first[h]] .. t[first[h] + count[h] - 1]; block 3 is a null request. */
    static const size_t first[5] = {0, 0, 2, 0, 0}, count[5] = {0, 2, 1, 0, 1};

    assert_memory_equal(ledger_root(a), ledger_root(b), LEDGER_HASH_BYTES);
    assert_memory_equal(ledger_hash(a), ledger_hash(b), LEDGER_HASH_BYTES);
    tx_register(fx, &t[0], TRAFFIC, "city.traffic/a");
    tx_register(fx, &t[1], POLICE, "city.traffic/b"); /* fails: not police's */
    tx_register(fx, &t[2], TRAFFIC, "city.traffic/c");
    for (uint64_t h = 1; h <= 4; h++) {
        uint8_t root[LEDGER_HASH_BYTES], hash[LEDGER_HASH_BYTES];
        const struct ledger_applied *ra, *rb;
        struct block blk;

        if (h == 3)
            block_null(&blk, h);
        else
            block_make(&blk, h, T0 + 500 * h, &t[first[h]], count[h]);
        ra = apply_ok(a, &blk);
        memcpy(root, ra->state_root, LEDGER_HASH_BYTES);
        memcpy(hash, ra->hash, LEDGER_HASH_BYTES);
        rb = apply_ok(b, &blk);
        assert_memory_equal(rb->state_root, root, LEDGER_HASH_BYTES);
        assert_memory_equal(rb->hash, hash, LEDGER_HASH_BYTES);
        assert_int_equal(rb->time_ms, ra->time_ms);
        assert_int_equal(rb->skipped, h == 4 ? 1 : 0);
        block_free(&blk);
    }
    assert_memory_equal(ledger_root(a), ledger_root(b), LEDGER_HASH_BYTES);
    assert_memory_equal(ledger_hash(a), ledger_hash(b), LEDGER_HASH_BYTES);
    assert_int_equal(resource_updated_ms(b, "city.traffic/c"), T0 + 1000);
    ledger_close(b);

    /* A replica fed the txs of block 1 in the other order ends elsewhere: the comparison can fail. */
    {
        struct tx swapped[2] = {t[1], t[0]};
        char path_c[STORE_UTIL_PATH_BYTES + 8];
        struct ledger *c;
        struct block blk;
        Bex__BlockRecord *rec;

        snprintf(path_c, sizeof path_c, "%s/c", fx->dir);
        c = open_at(fx, path_c);
        block_make(&blk, 1, T0 + 500, swapped, 2);
        apply_ok(c, &blk);
        block_free(&blk);
        assert_int_equal(last_nonce(c, TRAFFIC), 1);
        assert_int_equal(last_nonce(c, POLICE), 1);
        rec = stored_record(a, 1);
        assert_memory_not_equal(ledger_hash(c), rec->hash.data, LEDGER_HASH_BYTES);
        assert_memory_not_equal(ledger_root(c), rec->state_root.data, LEDGER_HASH_BYTES);
        bex__block_record__free_unpacked(rec, NULL);
        ledger_close(c);
    }
    ledger_close(a);
    for (int i = 0; i < 3; i++)
        tx_free(&t[i]);
}

static void ledger_block_record_stored(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a);
    uint8_t prev[LEDGER_HASH_BYTES];
    struct block blk[2];
    struct tx t;

    tx_register(fx, &t, TRAFFIC, "city.traffic/a");
    memcpy(prev, ledger_hash(l), LEDGER_HASH_BYTES);
    block_make(&blk[0], 1, T0 + 1000, &t, 1);
    block_null(&blk[1], 2);
    apply_ok(l, &blk[0]);
    apply_ok(l, &blk[1]);

    for (int i = 0; i < 2; i++) {
        struct ledger_read *r = NULL;
        Bex__BlockRecord *rec = stored_record(l, blk[i].height);
        const uint8_t *cert;
        size_t cert_len;

        assert_int_equal(rec->height, blk[i].height);
        assert_int_equal(rec->proposal.len, blk[i].proposal_len);
        if (blk[i].proposal_len > 0)
            assert_memory_equal(rec->proposal.data, blk[i].proposal, blk[i].proposal_len);
        assert_int_equal(rec->prev_hash.len, LEDGER_HASH_BYTES);
        assert_memory_equal(rec->prev_hash.data, prev, LEDGER_HASH_BYTES);
        assert_int_equal(rec->hash.len, LEDGER_HASH_BYTES);
        assert_int_equal(rec->state_root.len, LEDGER_HASH_BYTES);
        {
            uint8_t want[LEDGER_HASH_BYTES];
            expected_hash(want, prev, blk[i].height, blk[i].digest, rec->state_root.data);
            assert_memory_equal(rec->hash.data, want, LEDGER_HASH_BYTES);
        }
        memcpy(prev, rec->hash.data, LEDGER_HASH_BYTES);
        bex__block_record__free_unpacked(rec, NULL);

        /* The certificate is stored exactly as given. */
        assert_int_equal(ledger_read_begin(l, &r), 0);
        assert_int_equal(store_get_cert(ledger_read_raw(r), &cert, &cert_len, blk[i].height), 0);
        assert_int_equal(cert_len, blk[i].cert_len);
        assert_memory_equal(cert, blk[i].cert, cert_len);
        ledger_read_end(r);
    }
    assert_memory_equal(prev, ledger_hash(l), LEDGER_HASH_BYTES);
    ledger_close(l);
    block_free(&blk[0]);
    block_free(&blk[1]);
    tx_free(&t);
}

/*
 * A block that does not fit the map fails with the store's code and leaves
 * nothing behind; after a reopen with a larger map the same block applies
 * and the chain equals that of a replica that never failed.
 */
static void ledger_store_failure_applies_nothing(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l, *ref;
    const struct ledger_applied *res = NULL;
    uint8_t hash[LEDGER_HASH_BYTES], root[LEDGER_HASH_BYTES];
    uint8_t *args = calloc(1, 256 << 10);
    struct block blk;
    struct tx t;

    assert_non_null(args);
    fx->opt.map_bytes = (size_t)256 << 10;
    l = open_at(fx, fx->path_a);
    fx->opt.map_bytes = MAP_BYTES;
    ref = open_at(fx, fx->path_b);
    struct txbuild tb = {CHAIN, agency_ids[TRAFFIC], 1, "catalog", "register", args, 256 << 10, T0};
    assert_int_equal(txbuild_sign(&t.b, &t.len, t.id, &tb, &fx->officers[TRAFFIC][0], 1), 0);
    block_make(&blk, 1, T0 + 1000, &t, 1);
    memcpy(hash, ledger_hash(l), LEDGER_HASH_BYTES);
    memcpy(root, ledger_root(l), LEDGER_HASH_BYTES);

    assert_int_equal(block_apply(l, &res, &blk), -BEX_EMAPFULL);
    assert_null(res);
    assert_int_equal(ledger_height(l), 0);
    assert_int_equal(ledger_time_ms(l), T0);
    assert_memory_equal(ledger_hash(l), hash, LEDGER_HASH_BYTES);
    assert_memory_equal(ledger_root(l), root, LEDGER_HASH_BYTES);
    assert_false(has_receipt(l, t.id));
    ledger_close(l);

    l = open_at(fx, fx->path_a);
    assert_int_equal(ledger_height(l), 0);
    res = apply_ok(l, &blk);
    memcpy(hash, res->hash, LEDGER_HASH_BYTES);
    res = apply_ok(ref, &blk);
    assert_memory_equal(res->hash, hash, LEDGER_HASH_BYTES);
    assert_true(has_receipt(l, t.id));
    ledger_close(l);
    ledger_close(ref);
    block_free(&blk);
    tx_free(&t);
    free(args);
}

/*
 * The two-step apply (the node's path): between begin and end the ledger
 * reports and reads the previous head, a second begin is refused, and a
 * dropped block leaves nothing behind; the block committed through a store
 * batch, then ended, matches what ledger_apply() makes of it on a replica.
 */
static void ledger_apply_two_steps(void **state)
{
    struct fixture *fx = *state;
    struct ledger *l = open_at(fx, fx->path_a), *ref = open_at(fx, fx->path_b);
    const struct ledger_applied *res = NULL, *want;
    const struct store_block *blk = NULL, *other = NULL;
    uint8_t hash0[LEDGER_HASH_BYTES], hash1[LEDGER_HASH_BYTES], root1[LEDGER_HASH_BYTES];
    struct store_batch *sb;
    struct block b;
    struct tx t[2];

    tx_register(fx, &t[0], TRAFFIC, "city.traffic/a");
    tx_register(fx, &t[1], POLICE, "city.police/b");
    block_make(&b, 1, T0 + 1000, t, 2);
    want = apply_ok(ref, &b);
    memcpy(hash1, want->hash, LEDGER_HASH_BYTES);
    memcpy(root1, want->state_root, LEDGER_HASH_BYTES);
    memcpy(hash0, ledger_hash(l), LEDGER_HASH_BYTES);

    /* Begun, then dropped: nothing changes, and the block can be begun again. */
    assert_int_equal(ledger_apply_begin(l, &blk, 1, b.digest, b.proposal, b.proposal_len, b.cert, b.cert_len), 0);
    assert_non_null(blk);
    assert_int_equal(blk->height, 1);
    assert_int_equal(blk->receipts_len, 2);
    assert_memory_equal(blk->hash, hash1, LEDGER_HASH_BYTES);
    assert_int_equal(ledger_apply_begin(l, &other, 1, b.digest, b.proposal, b.proposal_len, b.cert, b.cert_len),
                     -BEX_ESTATE);
    assert_null(other);
    assert_int_equal(ledger_height(l), 0);
    ledger_apply_abort(l);
    ledger_apply_abort(l);
    assert_int_equal(ledger_height(l), 0);
    assert_memory_equal(ledger_hash(l), hash0, LEDGER_HASH_BYTES);
    assert_false(has_receipt(l, t[0].id));

    /* Begun, committed in a batch: the ledger still reads the old head until the end. */
    assert_int_equal(ledger_apply_begin(l, &blk, 1, b.digest, b.proposal, b.proposal_len, b.cert, b.cert_len), 0);
    assert_int_equal(store_batch_begin(ledger_store(l), &sb), 0);
    assert_int_equal(store_batch_block(sb, blk), 0);
    assert_int_equal(store_batch_commit(sb), 0);
    assert_int_equal(ledger_height(l), 0);
    assert_int_equal(last_nonce(l, TRAFFIC), 0);
    assert_int_equal(ledger_apply_end(l, &res), 0);
    assert_non_null(res);
    assert_int_equal(res->height, 1);
    assert_int_equal(res->out->receipt_count, 2);
    assert_memory_equal(res->hash, hash1, LEDGER_HASH_BYTES);
    assert_memory_equal(res->state_root, root1, LEDGER_HASH_BYTES);
    assert_int_equal(ledger_height(l), 1);
    assert_memory_equal(ledger_hash(l), hash1, LEDGER_HASH_BYTES);
    assert_int_equal(last_nonce(l, TRAFFIC), 1);
    assert_true(has_receipt(l, t[1].id));
    block_free(&b);

    /* The same block again through a batch is refused by the store (height), and dropped. */
    block_make(&b, 2, T0 + 2000, NULL, 0);
    assert_int_equal(ledger_apply_begin(l, &blk, 2, b.digest, b.proposal, b.proposal_len, b.cert, b.cert_len), 0);
    assert_int_equal(store_commit_block(ledger_store(l), blk), 0);
    assert_int_equal(store_batch_begin(ledger_store(l), &sb), 0);
    assert_int_equal(store_batch_block(sb, blk), -BEX_ESTATE);
    assert_int_equal(store_batch_commit(sb), -BEX_ESTATE);
    assert_int_equal(ledger_apply_end(l, &res), 0);
    assert_int_equal(ledger_height(l), 2);
    block_free(&b);

    /* A ledger closed with a block begun frees it (ASan). */
    block_make(&b, 3, T0 + 3000, NULL, 0);
    assert_int_equal(ledger_apply_begin(l, &blk, 3, b.digest, b.proposal, b.proposal_len, b.cert, b.cert_len), 0);
    ledger_close(l);
    ledger_close(ref);
    block_free(&b);
    tx_free(&t[0]);
    tx_free(&t[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ledger_open_writes_genesis, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_reopen_keeps_head, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_reopen_other_genesis_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_apply_signed_txs, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_apply_height_gap_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_apply_digest_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_apply_foreign_proposal_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_null_request_empty_block, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_block_time_clamped, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_duplicate_tx_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_many_duplicates_in_one_block, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_undecodable_tx_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_oversized_tx_skipped_when_repeated, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_failing_tx_consumes_nonce, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_nonce_ahead_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_hash_chain_recomputed, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_replicas_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_block_record_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_store_failure_applies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(ledger_apply_two_steps, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
