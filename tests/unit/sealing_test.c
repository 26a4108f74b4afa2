#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "bex.h"
#include "crypto.h"
#include "sealing.h"

static const char resource[] = "city.traffic/plates";
static const uint8_t record_key[32] = {0x00, 0x11, 0x22, 0x00, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                       0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x00, 0x03, 0x04, 0x05, 0x06,
                                       0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};

static int setup(void **state)
{
    (void)state;
    return crypto_init();
}

static int teardown(void **state)
{
    (void)state;
    crypto_close();
    return 0;
}

/* A deterministic key pair per label, so failures replay. */
static void test_key(struct crypto_seckey *sk, struct crypto_pubkey *pk, const char *label)
{
    crypto_sha256(sk->b, label, strlen(label));
    assert_int_equal(crypto_pubkey_of(pk, sk), 0);
}

static void assert_hex(const uint8_t *b, size_t len, const char *want)
{
    char got[256];
    assert_int_equal(crypto_hex_encode(got, sizeof(got), b, len), 0);
    assert_string_equal(got, want);
}

static struct sealing_ref ref_of(const char *field)
{
    struct sealing_ref r = {.resource = resource, .key = record_key, .key_len = sizeof(record_key), .field = field};
    return r;
}

/* ---- index keys ---- */

static void sealing_index_key_known_answer(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    uint8_t k1[32], k2[32], other[32], h[32];

    test_key(&sk, &pk, "owner");
    assert_int_equal(sealing_index_key(k1, &sk, resource), 0);
    assert_int_equal(sealing_index_key(k2, &sk, resource), 0);
    assert_memory_equal(k1, k2, 32);
    /* Pinned once, computed independently (Python hmac): HKDF-SHA256(ikm = sk,
     * salt = "bex-index-v1", info = resource). */
    assert_hex(k1, 32, "936c11d0f055948b1eda6059c2c575d05cf8176849c9cc47120017fcedc5b0eb");
    assert_int_equal(sealing_index_key(other, &sk, "city.traffic/other"), 0);
    assert_memory_not_equal(k1, other, 32);

    sealing_key_hash(h, k1, "AB-123-CD", 9);
    /* Pinned once: HMAC-SHA256(index key, "AB-123-CD"). */
    assert_hex(h, 32, "2872c6be445ea6f50efaddc3301eaaf17cddd24881f6d1de4a7715537a637721");
    sealing_key_hash(other, k1, "AB-123-CE", 9);
    assert_memory_not_equal(h, other, 32);
}

static void sealing_index_share_round_trip(void **state)
{
    (void)state;
    struct crypto_seckey owner_sk, cons_sk, eve_sk;
    struct crypto_pubkey owner_pk, cons_pk, eve_pk;
    uint8_t wrapped[SEALING_WRAPPED_BYTES], got[32], want[32], h1[32], h2[32];

    test_key(&owner_sk, &owner_pk, "owner");
    test_key(&cons_sk, &cons_pk, "consumer");
    test_key(&eve_sk, &eve_pk, "eve");
    assert_int_equal(sealing_index_share(wrapped, &owner_sk, &cons_pk, resource, "city.police"), 0);
    assert_int_equal(sealing_index_unwrap(got, &cons_sk, resource, "city.police", wrapped, sizeof(wrapped)), 0);
    assert_int_equal(sealing_index_key(want, &owner_sk, resource), 0);
    assert_memory_equal(got, want, 32);

    /* Both sides name the same record with the same hash. */
    sealing_key_hash(h1, want, "AB-123-CD", 9);
    sealing_key_hash(h2, got, "AB-123-CD", 9);
    assert_memory_equal(h1, h2, 32);

    /* Another key, another consumer name, another resource or a short blob fail. */
    assert_int_equal(sealing_index_unwrap(got, &eve_sk, resource, "city.police", wrapped, sizeof(wrapped)),
                     -BEX_ECRYPTO);
    assert_int_equal(sealing_index_unwrap(got, &cons_sk, resource, "city.tax", wrapped, sizeof(wrapped)),
                     -BEX_ECRYPTO);
    assert_int_equal(sealing_index_unwrap(got, &cons_sk, "city.traffic/other", "city.police", wrapped,
                                          sizeof(wrapped)),
                     -BEX_ECRYPTO);
    assert_int_equal(sealing_index_unwrap(got, &cons_sk, resource, "city.police", wrapped, sizeof(wrapped) - 1),
                     -BEX_EDECODE);
    assert_int_equal(sealing_index_share(wrapped, &owner_sk, &cons_pk, resource, ""), -BEX_EINVAL);
}

/* ---- field values ---- */

static void sealing_field_round_trip(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    const char *values[] = {"", "x", "Jane Q. Public", "a value with \0 inside"};
    size_t lens[] = {0, 1, 14, 21};

    test_key(&sk, &pk, "owner");
    for (size_t i = 0; i < BEX_ARRAY_LEN(values); i++) {
        struct sealing_ref r = ref_of("name");
        uint8_t ct[64], wrapped[SEALING_WRAPPED_BYTES], out[64];
        size_t n = 99;
        assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &r, (const uint8_t *)values[i], lens[i]), 0);
        assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &r, wrapped, sizeof(wrapped), ct,
                                            lens[i] + SEALING_CT_OVERHEAD),
                         0);
        assert_int_equal(n, lens[i]);
        assert_memory_equal(out, values[i], lens[i]);
    }
}

static void sealing_field_rejects_wrong_key_and_binding(void **state)
{
    (void)state;
    struct crypto_seckey sk, eve_sk;
    struct crypto_pubkey pk, eve_pk;
    struct sealing_ref name = ref_of("name"), addr = ref_of("address");
    uint8_t ct[64], wrapped[SEALING_WRAPPED_BYTES], ct2[64], wrapped2[SEALING_WRAPPED_BYTES], out[64];
    uint8_t other_key[32];
    size_t n;
    const size_t ct_len = 5 + SEALING_CT_OVERHEAD;

    test_key(&sk, &pk, "owner");
    test_key(&eve_sk, &eve_pk, "eve");
    assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &name, (const uint8_t *)"alice", 5), 0);
    assert_int_equal(sealing_field_seal(ct2, wrapped2, &pk, &addr, (const uint8_t *)"mains", 5), 0);

    /* The wrong secret key. */
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &eve_sk, &name, wrapped, sizeof(wrapped), ct, ct_len),
                     -BEX_ECRYPTO);
    /* The right key but another field, record or resource. */
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &addr, wrapped, sizeof(wrapped), ct, ct_len),
                     -BEX_ECRYPTO);
    memcpy(other_key, record_key, 32);
    other_key[31] ^= 1;
    struct sealing_ref moved = {.resource = resource, .key = other_key, .key_len = 32, .field = "name"};
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &moved, wrapped, sizeof(wrapped), ct, ct_len),
                     -BEX_ECRYPTO);
    struct sealing_ref elsewhere = {.resource = "city.tax/plates", .key = record_key, .key_len = 32, .field = "name"};
    assert_int_equal(
        sealing_field_open(out, sizeof(out), &n, &sk, &elsewhere, wrapped, sizeof(wrapped), ct, ct_len),
        -BEX_ECRYPTO);
    /* A field's ciphertext with another field's key, and the swapped pair relabelled. */
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &name, wrapped2, sizeof(wrapped2), ct, ct_len),
                     -BEX_ECRYPTO);
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &name, wrapped, sizeof(wrapped), ct2, ct_len),
                     -BEX_ECRYPTO);
    /* Any flipped byte of the ciphertext or the wrapped key. */
    for (size_t i = 0; i < ct_len; i++) {
        ct[i] ^= 0x40;
        assert_int_equal(
            sealing_field_open(out, sizeof(out), &n, &sk, &name, wrapped, sizeof(wrapped), ct, ct_len),
            -BEX_ECRYPTO);
        ct[i] ^= 0x40;
    }
    for (size_t i = 0; i < sizeof(wrapped); i++) {
        wrapped[i] ^= 0x01;
        int rc = sealing_field_open(out, sizeof(out), &n, &sk, &name, wrapped, sizeof(wrapped), ct, ct_len);
        /* A flipped ephemeral key may not even be a point. */
        assert_true(rc == -BEX_ECRYPTO || rc == -BEX_EINVAL);
        wrapped[i] ^= 0x01;
    }
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &name, wrapped, sizeof(wrapped), ct, ct_len), 0);
    assert_memory_equal(out, "alice", 5);
}

static void sealing_field_limits(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    struct sealing_ref r = ref_of("name");
    uint8_t ct[64], wrapped[SEALING_WRAPPED_BYTES], out[64];
    size_t n;

    test_key(&sk, &pk, "owner");
    assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &r, out, SEALING_VALUE_BYTES_MAX + 1), -BEX_ELIMIT);
    struct sealing_ref bad = r;
    bad.field = "";
    assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &bad, (const uint8_t *)"v", 1), -BEX_EINVAL);
    bad = r;
    bad.key_len = 0;
    assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &bad, (const uint8_t *)"v", 1), -BEX_EINVAL);
    bad.key_len = SEALING_RECORD_KEY_BYTES_MAX + 1;
    assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &bad, (const uint8_t *)"v", 1), -BEX_EINVAL);

    assert_int_equal(sealing_field_seal(ct, wrapped, &pk, &r, (const uint8_t *)"hello", 5), 0);
    /* Too small an output buffer, a truncated ciphertext, a short wrapped key. */
    assert_int_equal(sealing_field_open(out, 4, &n, &sk, &r, wrapped, sizeof(wrapped), ct, 5 + SEALING_CT_OVERHEAD),
                     -BEX_ELIMIT);
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &r, wrapped, sizeof(wrapped), ct,
                                        SEALING_CT_OVERHEAD - 1),
                     -BEX_EDECODE);
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &r, wrapped, sizeof(wrapped) - 1, ct,
                                        5 + SEALING_CT_OVERHEAD),
                     -BEX_EDECODE);
}

/*
 * The formats are protocol between bexctl and every owner's node: build a
 * ciphertext and a wrapped key by hand from the documented layouts and check
 * that sealing opens them.
 */
static void sealing_formats_are_as_documented(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    uint8_t key[32], ct[12 + 3 + 16], wrapped[SEALING_WRAPPED_BYTES], out[8], got_key[32];
    static const uint8_t rk[3] = {'k', 0, 'y'};
    static const uint8_t value_aad[] = "r/x\0k\0y\0f";
    static const uint8_t wrap_aad[] = "bex-field-key-v1\0r/x\0k\0y\0f";
    struct sealing_ref r = {.resource = "r/x", .key = rk, .key_len = sizeof(rk), .field = "f"};
    size_t n;

    test_key(&sk, &pk, "owner");
    memset(key, 7, sizeof(key));
    memset(ct, 9, 12);
    assert_int_equal(crypto_aead_seal(ct + 12, key, ct, value_aad, sizeof(value_aad) - 1, (const uint8_t *)"abc", 3),
                     0);
    assert_int_equal(sealing_value_open(out, sizeof(out), &n, key, &r, ct, sizeof(ct)), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "abc", 3);

    assert_int_equal(crypto_ecies_seal(wrapped, &pk, wrap_aad, sizeof(wrap_aad) - 1, key, 32), 0);
    assert_int_equal(sealing_key_unwrap(got_key, &sk, &r, wrapped, sizeof(wrapped)), 0);
    assert_memory_equal(got_key, key, 32);
    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &sk, &r, wrapped, sizeof(wrapped), ct, sizeof(ct)), 0);

    static const uint8_t share_aad[] = "bex-index-share-v1\0r/x\0city.police";
    assert_int_equal(crypto_ecies_seal(wrapped, &pk, share_aad, sizeof(share_aad) - 1, key, 32), 0);
    assert_int_equal(sealing_index_unwrap(got_key, &sk, "r/x", "city.police", wrapped, sizeof(wrapped)), 0);
    assert_memory_equal(got_key, key, 32);

    uint8_t claim[2 + SEALING_CLAIM_OVERHEAD];
    static const uint8_t claim_aad[] = "bex-claim-v1\0r/x\0k\0y\0f\0city.police";
    assert_int_equal(crypto_ecies_seal(claim, &pk, claim_aad, sizeof(claim_aad) - 1, (const uint8_t *)"ab", 2), 0);
    assert_int_equal(sealing_claim_open(out, sizeof(out), &n, &sk, &r, "city.police", claim, sizeof(claim)), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "ab", 2);
}

/* ---- release ---- */

static void sealing_rewrap_only_consumer_opens(void **state)
{
    (void)state;
    struct crypto_seckey owner_sk, cons_sk, eve_sk;
    struct crypto_pubkey owner_pk, cons_pk, eve_pk;
    struct sealing_ref r = ref_of("colour");
    uint8_t ct[6 + SEALING_CT_OVERHEAD], wrapped[SEALING_WRAPPED_BYTES], released[SEALING_WRAPPED_BYTES];
    uint8_t out[16];
    size_t n;

    test_key(&owner_sk, &owner_pk, "owner");
    test_key(&cons_sk, &cons_pk, "consumer");
    test_key(&eve_sk, &eve_pk, "eve");
    assert_int_equal(sealing_field_seal(ct, wrapped, &owner_pk, &r, (const uint8_t *)"silver", 6), 0);
    assert_int_equal(sealing_rewrap(released, &owner_sk, &cons_pk, &r, wrapped, sizeof(wrapped)), 0);
    assert_memory_not_equal(released, wrapped, sizeof(wrapped));

    assert_int_equal(sealing_field_open(out, sizeof(out), &n, &cons_sk, &r, released, sizeof(released), ct, sizeof(ct)),
                     0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "silver", 6);
    /* Neither the owner's key nor a third party's opens the released blob. */
    assert_int_equal(
        sealing_field_open(out, sizeof(out), &n, &owner_sk, &r, released, sizeof(released), ct, sizeof(ct)),
        -BEX_ECRYPTO);
    assert_int_equal(
        sealing_field_open(out, sizeof(out), &n, &eve_sk, &r, released, sizeof(released), ct, sizeof(ct)),
        -BEX_ECRYPTO);
    /* The consumer cannot use the owner's blob, and only the owner can rewrap. */
    assert_int_equal(
        sealing_field_open(out, sizeof(out), &n, &cons_sk, &r, wrapped, sizeof(wrapped), ct, sizeof(ct)),
        -BEX_ECRYPTO);
    assert_int_equal(sealing_rewrap(released, &eve_sk, &eve_pk, &r, wrapped, sizeof(wrapped)), -BEX_ECRYPTO);
    /* A rewrap for another field does not open this field. */
    struct sealing_ref other = ref_of("model");
    assert_int_equal(sealing_rewrap(released, &owner_sk, &cons_pk, &other, wrapped, sizeof(wrapped)), -BEX_ECRYPTO);
}

/* ---- claims ---- */

static void sealing_claim_check_answers(void **state)
{
    (void)state;
    struct crypto_seckey owner_sk, eve_sk;
    struct crypto_pubkey owner_pk, eve_pk;
    struct sealing_ref r = ref_of("licence");
    uint8_t ct[7 + SEALING_CT_OVERHEAD], wrapped[SEALING_WRAPPED_BYTES];
    uint8_t claim[16 + SEALING_CLAIM_OVERHEAD];
    bool match = true;

    test_key(&owner_sk, &owner_pk, "owner");
    test_key(&eve_sk, &eve_pk, "eve");
    assert_int_equal(sealing_field_seal(ct, wrapped, &owner_pk, &r, (const uint8_t *)"class-B", 7), 0);

    assert_int_equal(sealing_claim_seal(claim, &owner_pk, &r, "city.police", (const uint8_t *)"class-B", 7), 0);
    assert_int_equal(sealing_claim_check(&match, &owner_sk, &r, "city.police", claim, 7 + SEALING_CLAIM_OVERHEAD,
                                         wrapped, sizeof(wrapped), ct, sizeof(ct)),
                     0);
    assert_true(match);

    const char *wrong[] = {"class-C", "class-", "class-BB", "CLASS-B"};
    for (size_t i = 0; i < BEX_ARRAY_LEN(wrong); i++) {
        size_t len = strlen(wrong[i]);
        assert_int_equal(sealing_claim_seal(claim, &owner_pk, &r, "city.police", (const uint8_t *)wrong[i], len), 0);
        match = true;
        assert_int_equal(sealing_claim_check(&match, &owner_sk, &r, "city.police", claim,
                                             len + SEALING_CLAIM_OVERHEAD, wrapped, sizeof(wrapped), ct, sizeof(ct)),
                         0);
        assert_false(match);
    }

    /* A claim replayed by another consumer, for another field or to the wrong owner does not open. */
    assert_int_equal(sealing_claim_seal(claim, &owner_pk, &r, "city.police", (const uint8_t *)"class-B", 7), 0);
    assert_int_equal(sealing_claim_check(&match, &owner_sk, &r, "city.tax", claim, 7 + SEALING_CLAIM_OVERHEAD,
                                         wrapped, sizeof(wrapped), ct, sizeof(ct)),
                     -BEX_ECRYPTO);
    struct sealing_ref other = ref_of("name");
    assert_int_equal(sealing_claim_check(&match, &owner_sk, &other, "city.police", claim,
                                         7 + SEALING_CLAIM_OVERHEAD, wrapped, sizeof(wrapped), ct, sizeof(ct)),
                     -BEX_ECRYPTO);
    assert_int_equal(sealing_claim_check(&match, &eve_sk, &r, "city.police", claim, 7 + SEALING_CLAIM_OVERHEAD,
                                         wrapped, sizeof(wrapped), ct, sizeof(ct)),
                     -BEX_ECRYPTO);
    assert_false(match);

    /* Claim bounds: empty, too long, truncated. */
    uint8_t big[SEALING_CLAIM_VALUE_BYTES_MAX + 1] = {0};
    assert_int_equal(sealing_claim_seal(claim, &owner_pk, &r, "city.police", big, 0), -BEX_EINVAL);
    assert_int_equal(sealing_claim_seal(claim, &owner_pk, &r, "city.police", big, sizeof(big)), -BEX_ELIMIT);
    assert_int_equal(sealing_claim_check(&match, &owner_sk, &r, "city.police", claim, SEALING_CLAIM_OVERHEAD,
                                         wrapped, sizeof(wrapped), ct, sizeof(ct)),
                     -BEX_EDECODE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sealing_index_key_known_answer),
        cmocka_unit_test(sealing_index_share_round_trip),
        cmocka_unit_test(sealing_field_round_trip),
        cmocka_unit_test(sealing_field_rejects_wrong_key_and_binding),
        cmocka_unit_test(sealing_field_limits),
        cmocka_unit_test(sealing_formats_are_as_documented),
        cmocka_unit_test(sealing_rewrap_only_consumer_opens),
        cmocka_unit_test(sealing_claim_check_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
