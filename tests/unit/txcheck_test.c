/*
 * txcheck_test.c: admission checks of a transaction. Hashing is OpenSSL's
 * SHA256 and signatures are real libsecp256k1 ECDSA, plugged in through the
 * function table; the verify function counts its calls so the tests can see
 * what the cache saves. Agencies and nonces come from small static tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include <secp256k1.h>
#include <string.h>

#include "bex.h"
#include "bex.pb-c.h"
#include "txcheck.h"

#define CHAIN "bex-test"
#define NKEYS 6
#define BODY_MAX 8192
#define TX_MAX (BODY_MAX + 32 * (TXCHECK_PUB_BYTES + TXCHECK_SIG_BYTES + 8))

static secp256k1_context *ctx;
static uint8_t seckey[NKEYS][32];
static uint8_t pubkey[NKEYS][TXCHECK_PUB_BYTES];
static unsigned verify_calls;
static int keys_fail; /* when not 0, the keys callback returns it */

/* Keys 0 and 1 are officers of city.traffic, key 2 its node key; 3 and 4 are health.dept's; 5 nobody's. */
static struct agency {
    const char *id;
    int keys[3];
    size_t nkeys;
    uint64_t last;
} agencies[] = {
    {"city.traffic", {0, 1, 2}, 3, 7},
    {"health.dept", {3, 4}, 2, 0},
};

static struct agency *agency_find(const char *id)
{
    for (size_t i = 0; i < BEX_ARRAY_LEN(agencies); i++) {
        if (strcmp(agencies[i].id, id) == 0)
            return &agencies[i];
    }
    return NULL;
}

static void test_sha256(uint8_t out[TXCHECK_HASH_BYTES], const void *data, size_t len)
{
    SHA256(data, len, out);
}

static int test_verify(const uint8_t pub[TXCHECK_PUB_BYTES], const uint8_t digest[TXCHECK_HASH_BYTES],
                       const uint8_t sig[TXCHECK_SIG_BYTES])
{
    secp256k1_pubkey pk;
    secp256k1_ecdsa_signature s;
    verify_calls++;
    if (!secp256k1_ec_pubkey_parse(ctx, &pk, pub, TXCHECK_PUB_BYTES))
        return -BEX_ESIG;
    if (!secp256k1_ecdsa_signature_parse_compact(ctx, &s, sig))
        return -BEX_ESIG;
    return secp256k1_ecdsa_verify(ctx, &s, digest, &pk) ? 0 : -BEX_ESIG;
}

static int test_keys(struct txcheck_keys *keys, const char *sender, void *user)
{
    (void)user;
    if (keys_fail != 0)
        return keys_fail;
    struct agency *a = agency_find(sender);
    if (a == NULL)
        return -BEX_EUNKNOWN;
    keys->count = a->nkeys;
    for (size_t i = 0; i < a->nkeys; i++)
        memcpy(keys->key[i], pubkey[a->keys[i]], TXCHECK_PUB_BYTES);
    return 0;
}

static int test_last_nonce(uint64_t *last, const char *sender, void *user)
{
    (void)user;
    struct agency *a = agency_find(sender);
    *last = a != NULL ? a->last : 0;
    return 0;
}

static struct txcheck_config config(void)
{
    struct txcheck_config cfg = {
        .chain_id = CHAIN,
        .tx_bytes_max = 4096,
        .args_bytes_max = 1024,
        .nonce_ahead_max = 1000,
        .cache_entries = 64,
        .hash_seed = 0x1234,
        .crypto = {test_sha256, test_verify},
        .keys = test_keys,
        .last_nonce = test_last_nonce,
    };
    return cfg;
}

static struct txcheck *checker(const struct txcheck_config *cfg)
{
    struct txcheck *tc = NULL;
    assert_int_equal(txcheck_new(&tc, cfg), 0);
    assert_non_null(tc);
    return tc;
}

static int group_setup(void **state)
{
    (void)state;
    ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    for (int i = 0; i < NKEYS; i++) {
        secp256k1_pubkey pk;
        size_t len = TXCHECK_PUB_BYTES;
        memset(seckey[i], 0x11 * (i + 1), 32);
        if (!secp256k1_ec_pubkey_create(ctx, &pk, seckey[i]))
            return -1;
        secp256k1_ec_pubkey_serialize(ctx, pubkey[i], &len, &pk, SECP256K1_EC_COMPRESSED);
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    secp256k1_context_destroy(ctx);
    return 0;
}

/* Each test starts from the same state tables and counters. */
static int reset(void **state)
{
    (void)state;
    verify_calls = 0;
    keys_fail = 0;
    agencies[0].keys[0] = 0;
    agencies[0].nkeys = 3;
    agencies[0].last = 7;
    agencies[1].last = 0;
    return 0;
}

/* ---- building transactions ---- */

struct draft {
    uint8_t body[BODY_MAX];
    size_t body_len;
    uint8_t pub[TXCHECK_SIGS_MAX + 2][TXCHECK_PUB_BYTES];
    uint8_t sig[TXCHECK_SIGS_MAX + 2][TXCHECK_SIG_BYTES];
    size_t pub_len[TXCHECK_SIGS_MAX + 2];
    size_t nsigs;
};

static void draft_body(struct draft *d, const char *chain, const char *sender, uint64_t nonce, size_t args_len)
{
    static uint8_t args[BODY_MAX];
    Bex__TxBody body = BEX__TX_BODY__INIT;
    memset(args, 0xa5, sizeof args);
    memset(d, 0, sizeof *d);
    body.chain_id = (char *)chain;
    body.sender = (char *)sender;
    body.nonce = nonce;
    body.contract = "catalog";
    body.method = "register";
    body.args.data = args;
    body.args.len = args_len;
    body.timestamp_ms = 1700000000000ULL;
    assert_true(bex__tx_body__get_packed_size(&body) <= BODY_MAX);
    d->body_len = bex__tx_body__pack(&body, d->body);
}

/* Appends a signature by key k over SHA-256 of the body as it is now. */
static void draft_sign(struct draft *d, int k)
{
    uint8_t digest[32];
    secp256k1_ecdsa_signature s;
    assert_true(d->nsigs < BEX_ARRAY_LEN(d->sig));
    SHA256(d->body, d->body_len, digest);
    assert_true(secp256k1_ecdsa_sign(ctx, &s, digest, seckey[k], NULL, NULL));
    secp256k1_ecdsa_signature_serialize_compact(ctx, d->sig[d->nsigs], &s);
    memcpy(d->pub[d->nsigs], pubkey[k], TXCHECK_PUB_BYTES);
    d->pub_len[d->nsigs] = TXCHECK_PUB_BYTES;
    d->nsigs++;
}

static size_t draft_pack(const struct draft *d, uint8_t *out, size_t out_max)
{
    Bex__Signature sigs[TXCHECK_SIGS_MAX + 2];
    Bex__Signature *psigs[TXCHECK_SIGS_MAX + 2];
    Bex__Tx tx = BEX__TX__INIT;
    for (size_t i = 0; i < d->nsigs; i++) {
        bex__signature__init(&sigs[i]);
        sigs[i].pubkey.data = (uint8_t *)d->pub[i];
        sigs[i].pubkey.len = d->pub_len[i];
        sigs[i].sig.data = (uint8_t *)d->sig[i];
        sigs[i].sig.len = TXCHECK_SIG_BYTES;
        psigs[i] = &sigs[i];
    }
    tx.body.data = (uint8_t *)d->body;
    tx.body.len = d->body_len;
    tx.n_sigs = d->nsigs;
    tx.sigs = psigs;
    assert_true(bex__tx__get_packed_size(&tx) <= out_max);
    return bex__tx__pack(&tx, out);
}

/* A city.traffic tx with the given nonce signed by both officers. */
static size_t good_tx(uint8_t *out, size_t out_max, uint64_t nonce)
{
    struct draft d;
    draft_body(&d, CHAIN, "city.traffic", nonce, 16);
    draft_sign(&d, 0);
    draft_sign(&d, 1);
    return draft_pack(&d, out, out_max);
}

/* ---- tests ---- */

static void txcheck_accepts_valid_tx(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct txcheck_stats st;
    struct draft d;
    static uint8_t tx[TX_MAX];
    uint8_t id[32];

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 1);
    draft_sign(&d, 2);
    size_t len = draft_pack(&d, tx, sizeof tx);
    SHA256(d.body, d.body_len, id);

    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_true(res.has_id);
    assert_memory_equal(res.id, id, 32);
    assert_string_equal(res.sender, "city.traffic");
    assert_int_equal(res.nonce, 8);
    assert_int_equal(res.last_nonce, 7);
    assert_int_equal(res.signer_count, 2);
    assert_memory_equal(res.signers[0], pubkey[1], TXCHECK_PUB_BYTES);
    assert_memory_equal(res.signers[1], pubkey[2], TXCHECK_PUB_BYTES);
    assert_false(res.cached);
    assert_int_equal(verify_calls, 2);
    txcheck_get_stats(tc, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.verifies, 2);
    txcheck_free(tc);
}

static void txcheck_rejects_oversize(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct txcheck_stats st;
    struct draft d;
    static uint8_t tx[TX_MAX];

    /* Over tx_bytes_max as a whole. */
    draft_body(&d, CHAIN, "city.traffic", 8, 5000);
    draft_sign(&d, 0);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_true(len > cfg.tx_bytes_max);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ELIMIT);
    assert_non_null(strstr(res.reason, "limit 4096"));
    assert_false(res.has_id);

    /* Under tx_bytes_max, but args over args_bytes_max. */
    draft_body(&d, CHAIN, "city.traffic", 8, 1025);
    draft_sign(&d, 0);
    len = draft_pack(&d, tx, sizeof tx);
    assert_true(len <= cfg.tx_bytes_max);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ELIMIT);
    assert_non_null(strstr(res.reason, "args"));

    /* At the args limit it passes. */
    draft_body(&d, CHAIN, "city.traffic", 8, 1024);
    draft_sign(&d, 0);
    len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);

    assert_int_equal(verify_calls, 1);
    txcheck_get_stats(tc, &st);
    assert_int_equal(st.rejected[BEX_ELIMIT], 2);
    txcheck_free(tc);
}

static void txcheck_rejects_garbage(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    uint8_t junk[64];

    memset(junk, 0xff, sizeof junk);
    assert_int_equal(txcheck_tx(tc, &res, junk, sizeof junk), -BEX_EDECODE);
    assert_string_equal(res.reason, "not a bex.Tx");
    assert_int_equal(txcheck_tx(tc, &res, junk, 0), -BEX_EDECODE);
    assert_int_equal(txcheck_tx(tc, &res, NULL, 0), -BEX_EDECODE);

    /* A well-formed Tx whose body is not a TxBody: field 1 with a bad wire type 7. */
    Bex__Tx tx = BEX__TX__INIT;
    uint8_t body[] = {0x0f, 0x01, 0x02};
    uint8_t buf[64];
    tx.body.data = body;
    tx.body.len = sizeof body;
    size_t len = bex__tx__pack(&tx, buf);
    assert_int_equal(txcheck_tx(tc, &res, buf, len), -BEX_EDECODE);
    assert_string_equal(res.reason, "body is not a bex.TxBody");
    assert_true(res.has_id);

    /* A Tx with a signature but no body. */
    Bex__Signature sig = BEX__SIGNATURE__INIT;
    Bex__Signature *psig = &sig;
    sig.pubkey.data = pubkey[0];
    sig.pubkey.len = TXCHECK_PUB_BYTES;
    tx.n_sigs = 1;
    tx.sigs = &psig;
    tx.body.len = 0;
    len = bex__tx__pack(&tx, buf);
    assert_int_equal(txcheck_tx(tc, &res, buf, len), -BEX_EDECODE);
    assert_string_equal(res.reason, "empty body");
    assert_int_equal(verify_calls, 0);
    txcheck_free(tc);
}

static void txcheck_rejects_truncated(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];
    size_t len = good_tx(tx, sizeof tx, 8);

    /* Cut inside the last signature, inside the body, and just after the first tag. */
    assert_int_equal(txcheck_tx(tc, &res, tx, len - 10), -BEX_EDECODE);
    assert_int_equal(txcheck_tx(tc, &res, tx, 20), -BEX_EDECODE);
    assert_int_equal(txcheck_tx(tc, &res, tx, 1), -BEX_EDECODE);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    txcheck_free(tc);
}

static void txcheck_rejects_wrong_chain(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct txcheck_stats st;
    struct draft d;
    static uint8_t tx[TX_MAX];

    draft_body(&d, "bex-other", "city.traffic", 8, 16);
    draft_sign(&d, 0);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ECHAIN);
    assert_non_null(strstr(res.reason, "chain"));
    assert_int_equal(verify_calls, 0);
    txcheck_get_stats(tc, &st);
    assert_int_equal(st.rejected[BEX_ECHAIN], 1);
    assert_int_equal(st.accepted, 0);
    txcheck_free(tc);
}

static void txcheck_rejects_unknown_sender(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];

    draft_body(&d, CHAIN, "city.nobody", 1, 16);
    draft_sign(&d, 5);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_EUNKNOWN);
    assert_string_equal(res.reason, "unknown sender city.nobody");
    assert_int_equal(verify_calls, 0);
    txcheck_free(tc);
}

static void txcheck_rejects_key_of_other_agency(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];

    /* A valid signature, but by health.dept's key on a city.traffic tx. */
    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 0);
    draft_sign(&d, 3);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ESIG);
    assert_string_equal(res.reason, "sigs[1]: key is not registered to city.traffic");
    assert_int_equal(verify_calls, 0);
    assert_int_equal(res.signer_count, 0);
    txcheck_free(tc);
}

static void txcheck_rejects_tampered_body(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];
    uint8_t id[32];

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 0);
    draft_sign(&d, 1);
    /* The args are the 16 bytes before the timestamp field (tag + 6-byte varint). */
    d.body[d.body_len - 8] ^= 0x01;
    SHA256(d.body, d.body_len, id);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ESIG);
    assert_string_equal(res.reason, "sigs[0] does not verify");
    assert_true(res.has_id);
    assert_memory_equal(res.id, id, 32);
    assert_int_equal(verify_calls, 1);

    /* A bad signature is not cached: the same tx is verified again. */
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ESIG);
    assert_int_equal(verify_calls, 2);
    assert_int_equal(txcheck_cache_count(tc), 0);
    txcheck_free(tc);
}

static void txcheck_rejects_duplicate_signer(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 0);
    draft_sign(&d, 1);
    draft_sign(&d, 0);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ESIG);
    assert_string_equal(res.reason, "sigs[2]: same key as sigs[0]");
    assert_int_equal(verify_calls, 0);
    txcheck_free(tc);
}

static void txcheck_rejects_too_many_sigs(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    for (int i = 0; i < TXCHECK_SIGS_MAX + 1; i++)
        draft_sign(&d, i % 3);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ELIMIT);
    assert_string_equal(res.reason, "17 signatures, limit 16");

    /* Thousands of empty signatures are refused before anything is decoded. */
    static uint8_t flood[4000];
    for (size_t i = 0; i < sizeof flood; i += 2) {
        flood[i] = 0x12;
        flood[i + 1] = 0x00;
    }
    assert_int_equal(txcheck_tx(tc, &res, flood, sizeof flood), -BEX_ELIMIT);
    assert_string_equal(res.reason, "2000 signatures, limit 16");

    /* No signature at all is refused too. */
    d.nsigs = 0;
    len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ESIG);
    assert_string_equal(res.reason, "no signatures");
    assert_int_equal(verify_calls, 0);
    txcheck_free(tc);
}

static void txcheck_rejects_malformed_signature(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 0);
    d.pub_len[0] = 32;
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_EDECODE);
    assert_string_equal(res.reason, "sigs[0]: pubkey is 32 bytes, expected 33");
    txcheck_free(tc);
}

static void txcheck_rejects_replayed_nonce(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];

    size_t len = good_tx(tx, sizeof tx, 5);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ENONCE);
    assert_string_equal(res.reason, "nonce 5 already used (last 7)");
    len = good_tx(tx, sizeof tx, 7);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ENONCE);
    assert_string_equal(res.reason, "nonce 7 already used (last 7)");
    len = good_tx(tx, sizeof tx, 8);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    /* Once 8 commits, the same tx is a replay. */
    agencies[0].last = 8;
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ENONCE);
    assert_int_equal(verify_calls, 2);
    txcheck_free(tc);
}

static void txcheck_rejects_nonce_far_ahead(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];

    size_t len = good_tx(tx, sizeof tx, 1008);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ENONCE);
    assert_string_equal(res.reason, "nonce 1008 too far ahead (last 7, at most 1000 ahead)");
    len = good_tx(tx, sizeof tx, 1007);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    len = good_tx(tx, sizeof tx, UINT64_MAX);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_ENONCE);
    txcheck_free(tc);
}

static void txcheck_rejects_bad_names(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];
    static const struct {
        const char *sender, *contract, *method;
        int rc;
    } cases[] = {
        {"city.traffic", "Catalog", "register", -BEX_EDECODE},
        {"city.traffic", "catalog", "register1", -BEX_EDECODE},
        {"city.traffic", "", "register", -BEX_EDECODE},
        {"city.traffic", "catalog", "abcdefghijklmnopqrstuvwxyzabcdefg", -BEX_ELIMIT},
        {"city traffic", "catalog", "register", -BEX_EDECODE},
        {"", "catalog", "register", -BEX_EDECODE},
        {"city.traffic", "grant", "approve_request", 0},
    };

    for (size_t i = 0; i < BEX_ARRAY_LEN(cases); i++) {
        Bex__TxBody body = BEX__TX_BODY__INIT;
        struct draft d;
        memset(&d, 0, sizeof d);
        body.chain_id = CHAIN;
        body.sender = (char *)cases[i].sender;
        body.nonce = 8;
        body.contract = (char *)cases[i].contract;
        body.method = (char *)cases[i].method;
        d.body_len = bex__tx_body__pack(&body, d.body);
        draft_sign(&d, 0);
        size_t len = draft_pack(&d, tx, sizeof tx);
        assert_int_equal(txcheck_tx(tc, &res, tx, len), cases[i].rc);
    }
    txcheck_free(tc);
}

static void txcheck_rejects_noncanonical_body(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct draft d;
    static uint8_t tx[TX_MAX];
    /* A second sender field (last one wins when decoding), and an unknown field 15. */
    static const uint8_t again[] = {0x12, 0x0c, 'c', 'i', 't', 'y', '.', 't', 'r', 'a', 'f', 'f', 'i', 'c'};
    static const uint8_t unknown[] = {0x78, 0x01};

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    memcpy(d.body + d.body_len, again, sizeof again);
    d.body_len += sizeof again;
    draft_sign(&d, 0);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_EDECODE);
    assert_string_equal(res.reason, "body is not canonically encoded");

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    memcpy(d.body + d.body_len, unknown, sizeof unknown);
    d.body_len += sizeof unknown;
    draft_sign(&d, 0);
    len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_EDECODE);
    assert_string_equal(res.reason, "body has unknown fields");
    assert_int_equal(verify_calls, 0);
    txcheck_free(tc);
}

static void txcheck_cache_hit_avoids_verification(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct txcheck_stats st;
    struct draft d;
    static uint8_t tx[TX_MAX];

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 0);
    draft_sign(&d, 1);
    size_t len = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_false(res.cached);
    assert_int_equal(verify_calls, 2);

    /* The gossip duplicate: no verification, same answer. */
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_true(res.cached);
    assert_int_equal(verify_calls, 2);
    assert_int_equal(res.signer_count, 2);
    assert_memory_equal(res.signers[1], pubkey[1], TXCHECK_PUB_BYTES);
    txcheck_get_stats(tc, &st);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.cache_misses, 1);
    assert_int_equal(st.accepted, 2);

    /* The same body with another signature list is a different claim: verified. */
    d.nsigs = 1;
    size_t len1 = draft_pack(&d, tx, sizeof tx);
    assert_int_equal(txcheck_tx(tc, &res, tx, len1), 0);
    assert_false(res.cached);
    assert_int_equal(verify_calls, 3);

    /* One entry per id: the latest verified list replaced the first. */
    assert_int_equal(txcheck_tx(tc, &res, tx, len1), 0);
    assert_true(res.cached);
    assert_int_equal(verify_calls, 3);

    /* A hit never skips the state checks: a removed key or a used nonce still fail. */
    agencies[0].keys[0] = 2;
    assert_int_equal(txcheck_tx(tc, &res, tx, len1), -BEX_ESIG);
    agencies[0].keys[0] = 0;
    agencies[0].last = 8;
    assert_int_equal(txcheck_tx(tc, &res, tx, len1), -BEX_ENONCE);
    /* The entry survived those rejections and hits again once state allows. */
    agencies[0].last = 7;
    assert_int_equal(txcheck_tx(tc, &res, tx, len1), 0);
    assert_true(res.cached);
    assert_int_equal(verify_calls, 3);
    txcheck_free(tc);
}

/*
 * A proposal's tx this node checked before passes on its bytes alone; any
 * other bytes for the same id (a field appended, the body given twice) get
 * the whole check and their own verification.
 */
static void txcheck_signed_hit_needs_the_same_bytes(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct txcheck_stats st;
    struct draft d;
    static uint8_t tx[TX_MAX], other[TX_MAX + 2 * BODY_MAX];
    uint8_t id[TXCHECK_HASH_BYTES];
    size_t len, olen;
    int rc;

    draft_body(&d, CHAIN, "city.traffic", 8, 16);
    draft_sign(&d, 0);
    draft_sign(&d, 1);
    len = draft_pack(&d, tx, sizeof tx);

    /* Never seen: decoded and verified; a nonce the sender already used does not matter here. */
    agencies[0].last = 20;
    assert_int_equal(txcheck_tx_signed(tc, &res, tx, len), 0);
    assert_false(res.cached);
    assert_string_equal(res.sender, "city.traffic");
    assert_int_equal(res.nonce, 8);
    assert_int_equal(verify_calls, 2);
    memcpy(id, res.id, sizeof id);

    /* The same bytes: a hit that reports the id only. */
    assert_int_equal(txcheck_tx_signed(tc, &res, tx, len), 0);
    assert_true(res.cached);
    assert_true(res.has_id);
    assert_memory_equal(res.id, id, sizeof id);
    assert_string_equal(res.sender, "");
    assert_int_equal(verify_calls, 2);
    txcheck_get_stats(tc, &st);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.accepted, 2);

    /* An unknown field appended to the Tx: other bytes, checked and verified again. */
    memcpy(other, tx, len);
    other[len] = 0x18; /* field 3, varint */
    other[len + 1] = 0x01;
    olen = len + 2;
    rc = txcheck_tx_signed(tc, &res, other, olen);
    assert_false(res.cached);
    assert_true(rc != 0 || verify_calls == 4);

    /* The body given twice (the decoder keeps the last): never taken from the cache. */
    verify_calls = 0;
    memcpy(other, tx, len);
    olen = len;
    other[olen++] = 0x0a; /* field 1, length-delimited */
    assert_true(d.body_len < 128);
    other[olen++] = (uint8_t)d.body_len;
    memcpy(other + olen, d.body, d.body_len);
    olen += d.body_len;
    rc = txcheck_tx_signed(tc, &res, other, olen);
    assert_false(res.cached);
    assert_true(rc != 0 || verify_calls == 2);

    /* Cut short, the bytes are refused as before. */
    assert_int_equal(txcheck_tx_signed(tc, &res, tx, len - 3), -BEX_EDECODE);
    txcheck_free(tc);
}

static void txcheck_cache_is_bounded(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    cfg.cache_entries = 4;
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    struct txcheck_stats st;
    static uint8_t tx[TX_MAX];

    for (uint64_t n = 8; n < 18; n++) {
        size_t len = good_tx(tx, sizeof tx, n);
        assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
        assert_true(txcheck_cache_count(tc) <= 4);
    }
    txcheck_get_stats(tc, &st);
    assert_int_equal(txcheck_cache_count(tc), 4);
    assert_int_equal(st.cache_evictions, 6);
    assert_int_equal(verify_calls, 20);

    /* The latest tx is still cached; the first was evicted and is verified again. */
    size_t len = good_tx(tx, sizeof tx, 17);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_true(res.cached);
    len = good_tx(tx, sizeof tx, 8);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_false(res.cached);
    assert_int_equal(verify_calls, 22);
    txcheck_free(tc);
}

static void txcheck_cache_gives_hits_a_second_chance(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    cfg.cache_entries = 4;
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];
    size_t len;

    /* Nonces 8..11 fill the cache; 12 sweeps every reference bit and replaces 8. */
    for (uint64_t n = 8; n <= 12; n++) {
        len = good_tx(tx, sizeof tx, n);
        assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    }
    /* A hit on 9 protects it: the next insertion passes over 9 and replaces 10. */
    len = good_tx(tx, sizeof tx, 9);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_true(res.cached);
    len = good_tx(tx, sizeof tx, 13);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    len = good_tx(tx, sizeof tx, 9);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_true(res.cached);
    len = good_tx(tx, sizeof tx, 10);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_false(res.cached);
    assert_int_equal(verify_calls, 2 * 7);
    txcheck_free(tc);
}

static void txcheck_without_cache_always_verifies(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    cfg.cache_entries = 0;
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];

    size_t len = good_tx(tx, sizeof tx, 8);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    assert_false(res.cached);
    assert_int_equal(verify_calls, 4);
    assert_int_equal(txcheck_cache_count(tc), 0);
    txcheck_free(tc);
}

static void txcheck_passes_state_errors(void **state)
{
    (void)state;
    struct txcheck_config cfg = config();
    struct txcheck *tc = checker(&cfg);
    struct txcheck_result res;
    static uint8_t tx[TX_MAX];

    size_t len = good_tx(tx, sizeof tx, 8);
    keys_fail = -BEX_EIO;
    assert_int_equal(txcheck_tx(tc, &res, tx, len), -BEX_EIO);
    assert_non_null(strstr(res.reason, "city.traffic"));
    keys_fail = 0;
    assert_int_equal(txcheck_tx(tc, &res, tx, len), 0);
    txcheck_free(tc);
}

static void txcheck_new_rejects_bad_config(void **state)
{
    (void)state;
    struct txcheck *tc = (struct txcheck *)&tc;
    struct txcheck_config cfg = config();
    cfg.chain_id = "";
    assert_int_equal(txcheck_new(&tc, &cfg), -BEX_EINVAL);
    assert_null(tc);
    cfg = config();
    cfg.crypto.verify = NULL;
    assert_int_equal(txcheck_new(&tc, &cfg), -BEX_EINVAL);
    cfg = config();
    cfg.args_bytes_max = cfg.tx_bytes_max + 1;
    assert_int_equal(txcheck_new(&tc, &cfg), -BEX_EINVAL);
    cfg = config();
    cfg.tx_bytes_max = TXCHECK_TX_BYTES_LIMIT + 1;
    assert_int_equal(txcheck_new(&tc, &cfg), -BEX_EINVAL);
    cfg = config();
    cfg.nonce_ahead_max = 0;
    assert_int_equal(txcheck_new(&tc, &cfg), -BEX_EINVAL);
    cfg = config();
    assert_int_equal(txcheck_new(&tc, &cfg), 0);
    txcheck_free(tc);
    txcheck_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(txcheck_accepts_valid_tx, reset),
        cmocka_unit_test_setup(txcheck_rejects_oversize, reset),
        cmocka_unit_test_setup(txcheck_rejects_garbage, reset),
        cmocka_unit_test_setup(txcheck_rejects_truncated, reset),
        cmocka_unit_test_setup(txcheck_rejects_wrong_chain, reset),
        cmocka_unit_test_setup(txcheck_rejects_unknown_sender, reset),
        cmocka_unit_test_setup(txcheck_rejects_key_of_other_agency, reset),
        cmocka_unit_test_setup(txcheck_rejects_tampered_body, reset),
        cmocka_unit_test_setup(txcheck_rejects_duplicate_signer, reset),
        cmocka_unit_test_setup(txcheck_rejects_too_many_sigs, reset),
        cmocka_unit_test_setup(txcheck_rejects_malformed_signature, reset),
        cmocka_unit_test_setup(txcheck_rejects_replayed_nonce, reset),
        cmocka_unit_test_setup(txcheck_rejects_nonce_far_ahead, reset),
        cmocka_unit_test_setup(txcheck_rejects_bad_names, reset),
        cmocka_unit_test_setup(txcheck_rejects_noncanonical_body, reset),
        cmocka_unit_test_setup(txcheck_cache_hit_avoids_verification, reset),
        cmocka_unit_test_setup(txcheck_signed_hit_needs_the_same_bytes, reset),
        cmocka_unit_test_setup(txcheck_cache_is_bounded, reset),
        cmocka_unit_test_setup(txcheck_cache_gives_hits_a_second_chance, reset),
        cmocka_unit_test_setup(txcheck_without_cache_always_verifies, reset),
        cmocka_unit_test_setup(txcheck_passes_state_errors, reset),
        cmocka_unit_test_setup(txcheck_new_rejects_bad_config, reset),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
