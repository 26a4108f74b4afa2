/*
 * txbuild_test.c: building and signing transactions. Every output is
 * decoded again with protobuf-c and every signature checked with
 * crypto_verify() against fresh keys from crypto_keygen().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "bex.h"
#include "bex.pb-c.h"
#include "crypto.h"
#include "txbuild.h"

#define KEYS (TXBUILD_SIGNERS_MAX + 1)

static struct crypto_seckey sk[KEYS];
static struct crypto_pubkey pk[KEYS];
static const uint8_t args_bytes[] = {0x0a, 0x03, 'a', 'b', 'c', 0x10, 0x2a};

static int group_setup(void **state)
{
    (void)state;
    if (crypto_init() != 0)
        return -1;
    for (int i = 0; i < KEYS; i++)
        if (crypto_keygen(&sk[i], &pk[i]) != 0)
            return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    crypto_wipe(sk, sizeof sk);
    crypto_close();
    return 0;
}

static struct txbuild sample(void)
{
    struct txbuild t = {
        .chain_id = "bex-test",
        .sender = "city.traffic",
        .nonce = 42,
        .contract = "catalog",
        .method = "register",
        .args = args_bytes,
        .args_len = sizeof args_bytes,
        .timestamp_ms = 1700000000123ull,
    };
    return t;
}

/* Checks that tx is a Tx over t signed by keys[0..n) in order, with the given id. */
static void check_tx(const uint8_t *tx, size_t tx_len, const uint8_t id[CRYPTO_HASH_BYTES], const struct txbuild *t,
                     const struct crypto_pubkey *keys, size_t n)
{
    Bex__Tx *m = bex__tx__unpack(NULL, tx_len, tx);
    Bex__TxBody *b;
    uint8_t want[CRYPTO_HASH_BYTES];

    assert_non_null(m);
    crypto_sha256(want, m->body.data, m->body.len);
    assert_memory_equal(id, want, CRYPTO_HASH_BYTES);
    b = bex__tx_body__unpack(NULL, m->body.len, m->body.data);
    assert_non_null(b);
    assert_string_equal(b->chain_id, t->chain_id);
    assert_string_equal(b->sender, t->sender);
    assert_int_equal(b->nonce, t->nonce);
    assert_string_equal(b->contract, t->contract);
    assert_string_equal(b->method, t->method);
    assert_int_equal(b->args.len, t->args_len);
    if (t->args_len > 0)
        assert_memory_equal(b->args.data, t->args, t->args_len);
    assert_int_equal(b->timestamp_ms, t->timestamp_ms);
    assert_int_equal(m->n_sigs, n);
    for (size_t i = 0; i < n; i++) {
        struct crypto_pubkey p;
        struct crypto_sig s;

        assert_int_equal(m->sigs[i]->pubkey.len, CRYPTO_PUB_BYTES);
        assert_int_equal(m->sigs[i]->sig.len, CRYPTO_SIG_BYTES);
        assert_memory_equal(m->sigs[i]->pubkey.data, keys[i].b, CRYPTO_PUB_BYTES);
        memcpy(p.b, m->sigs[i]->pubkey.data, CRYPTO_PUB_BYTES);
        memcpy(s.b, m->sigs[i]->sig.data, CRYPTO_SIG_BYTES);
        assert_int_equal(crypto_verify(&p, id, &s), 0);
        /* The signature is over this id, by this key only. */
        assert_int_equal(crypto_verify(&pk[KEYS - 1], id, &s), -BEX_ESIG);
        want[0] ^= 1;
        assert_int_equal(crypto_verify(&p, want, &s), -BEX_ESIG);
        want[0] ^= 1;
    }
    bex__tx_body__free_unpacked(b, NULL);
    bex__tx__free_unpacked(m, NULL);
}

static void txbuild_one_signer_round_trips(void **state)
{
    (void)state;
    struct txbuild t = sample();
    uint8_t *tx = NULL, id[CRYPTO_HASH_BYTES];
    size_t len = 0;

    assert_int_equal(txbuild_sign(&tx, &len, id, &t, &sk[0], 1), 0);
    assert_non_null(tx);
    assert_true(len > 0);
    check_tx(tx, len, id, &t, &pk[0], 1);
    free(tx);
}

static void txbuild_several_signers_in_order(void **state)
{
    (void)state;
    struct txbuild t = sample();
    struct crypto_seckey keys[3] = {sk[2], sk[0], sk[1]};
    struct crypto_pubkey pubs[3] = {pk[2], pk[0], pk[1]};
    uint8_t *tx = NULL, id[CRYPTO_HASH_BYTES];
    size_t len = 0;

    assert_int_equal(txbuild_sign(&tx, &len, id, &t, keys, 3), 0);
    check_tx(tx, len, id, &t, pubs, 3);
    free(tx);

    /* The most signers allowed. */
    assert_int_equal(txbuild_sign(&tx, &len, id, &t, sk, TXBUILD_SIGNERS_MAX), 0);
    check_tx(tx, len, id, &t, pk, TXBUILD_SIGNERS_MAX);
    free(tx);
    crypto_wipe(keys, sizeof keys);
}

static void txbuild_id_is_hash_of_body(void **state)
{
    (void)state;
    struct txbuild t = sample();
    Bex__TxBody b = BEX__TX_BODY__INIT;
    uint8_t *tx = NULL, id[CRYPTO_HASH_BYTES], id2[CRYPTO_HASH_BYTES], want[CRYPTO_HASH_BYTES];
    uint8_t body[256];
    size_t len = 0, len2 = 0, n;
    uint8_t *tx2 = NULL;

    /* The body as this test encodes it independently. */
    b.chain_id = (char *)t.chain_id;
    b.sender = (char *)t.sender;
    b.nonce = t.nonce;
    b.contract = (char *)t.contract;
    b.method = (char *)t.method;
    b.args.data = (uint8_t *)t.args;
    b.args.len = t.args_len;
    b.timestamp_ms = t.timestamp_ms;
    n = bex__tx_body__get_packed_size(&b);
    assert_true(n <= sizeof body);
    assert_int_equal(bex__tx_body__pack(&b, body), n);
    crypto_sha256(want, body, n);

    assert_int_equal(txbuild_sign(&tx, &len, id, &t, &sk[0], 1), 0);
    assert_memory_equal(id, want, CRYPTO_HASH_BYTES);
    /* Other signers, same body: same id, other bytes. */
    assert_int_equal(txbuild_sign(&tx2, &len2, id2, &t, &sk[1], 1), 0);
    assert_memory_equal(id2, id, CRYPTO_HASH_BYTES);
    assert_true(len2 != len || memcmp(tx, tx2, len) != 0);
    free(tx2);
    /* Signing is deterministic (RFC 6979): the same input gives the same bytes. */
    assert_int_equal(txbuild_sign(&tx2, &len2, id2, &t, &sk[0], 1), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(tx2, tx, len);
    free(tx2);
    /* Any field of the body changes the id. */
    t.nonce++;
    assert_int_equal(txbuild_sign(&tx2, &len2, id2, &t, &sk[0], 1), 0);
    assert_memory_not_equal(id2, id, CRYPTO_HASH_BYTES);
    free(tx2);
    free(tx);
}

static void txbuild_empty_fields_accepted(void **state)
{
    (void)state;
    struct txbuild t = {.chain_id = "", .sender = "", .contract = "", .method = ""};
    uint8_t *tx = NULL, id[CRYPTO_HASH_BYTES], want[CRYPTO_HASH_BYTES];
    size_t len = 0;

    /* Every field at its default encodes as an empty body; args may be NULL when empty. */
    assert_int_equal(txbuild_sign(&tx, &len, id, &t, &sk[3], 1), 0);
    crypto_sha256(want, "", 0);
    assert_memory_equal(id, want, CRYPTO_HASH_BYTES);
    check_tx(tx, len, id, &t, &pk[3], 1);
    free(tx);
}

static void txbuild_bad_inputs_refused(void **state)
{
    (void)state;
    struct txbuild t = sample(), bad;
    uint8_t *tx = (uint8_t *)&t, id[CRYPTO_HASH_BYTES];
    size_t len = 7;
    struct crypto_seckey zero = {{0}};

    assert_int_equal(txbuild_sign(&tx, &len, id, &t, sk, 0), -BEX_EINVAL);
    assert_null(tx);
    assert_int_equal(len, 0);
    assert_int_equal(txbuild_sign(&tx, &len, id, &t, sk, TXBUILD_SIGNERS_MAX + 1), -BEX_EINVAL);
    assert_null(tx);

    bad = t;
    bad.chain_id = NULL;
    assert_int_equal(txbuild_sign(&tx, &len, id, &bad, sk, 1), -BEX_EINVAL);
    bad = t;
    bad.sender = NULL;
    assert_int_equal(txbuild_sign(&tx, &len, id, &bad, sk, 1), -BEX_EINVAL);
    bad = t;
    bad.contract = NULL;
    assert_int_equal(txbuild_sign(&tx, &len, id, &bad, sk, 1), -BEX_EINVAL);
    bad = t;
    bad.method = NULL;
    assert_int_equal(txbuild_sign(&tx, &len, id, &bad, sk, 1), -BEX_EINVAL);
    bad = t;
    bad.args = NULL;
    assert_int_equal(txbuild_sign(&tx, &len, id, &bad, sk, 1), -BEX_EINVAL);
    assert_null(tx);
    assert_int_equal(len, 0);

    /* A key that is no secret key fails the signing, also behind a good one. */
    struct crypto_seckey keys[2] = {sk[0], zero};
    len = 7;
    assert_int_equal(txbuild_sign(&tx, &len, id, &t, &zero, 1), -BEX_ECRYPTO);
    assert_null(tx);
    assert_int_equal(len, 0);
    assert_int_equal(txbuild_sign(&tx, &len, id, &t, keys, 2), -BEX_ECRYPTO);
    assert_null(tx);
    crypto_wipe(keys, sizeof keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(txbuild_one_signer_round_trips),
        cmocka_unit_test(txbuild_several_signers_in_order),
        cmocka_unit_test(txbuild_id_is_hash_of_body),
        cmocka_unit_test(txbuild_empty_fields_accepted),
        cmocka_unit_test(txbuild_bad_inputs_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
