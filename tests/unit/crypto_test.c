#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <secp256k1.h>

#include "bex.h"
#include "crypto.h"

/* Decodes a hex literal of a test vector; the vectors are ours, so assert. */
static size_t unhex(uint8_t *out, size_t size, const char *hex)
{
    size_t n;
    assert_int_equal(crypto_hex_decode(out, size, &n, hex), 0);
    return n;
}

static void assert_hex(const uint8_t *b, size_t len, const char *want)
{
    char got[1024];
    assert_int_equal(crypto_hex_encode(got, sizeof(got), b, len), 0);
    assert_string_equal(got, want);
}

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

/* Deterministic key for a seed, so a failing case can be replayed. */
static void seed_key(struct crypto_seckey *sk, struct crypto_pubkey *pk, uint32_t seed)
{
    uint8_t s[4] = {(uint8_t)(seed >> 24), (uint8_t)(seed >> 16), (uint8_t)(seed >> 8), (uint8_t)seed};
    crypto_sha256(sk->b, s, sizeof(s));
    assert_int_equal(crypto_pubkey_of(pk, sk), 0);
}

/* ---- SHA-256: FIPS 180-2 appendix B ---- */

static void crypto_sha256_known_answers(void **state)
{
    (void)state;
    uint8_t d[32];

    crypto_sha256(d, "abc", 3);
    assert_hex(d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256(d, "", 0);
    assert_hex(d, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_int_equal(strlen(m448) * 8, 448);
    crypto_sha256(d, m448, strlen(m448));
    assert_hex(d, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void crypto_sha256_million_a_incremental(void **state)
{
    (void)state;
    struct crypto_sha256_ctx c;
    char chunk[1000];
    uint8_t d[32];

    memset(chunk, 'a', sizeof(chunk));
    crypto_sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        crypto_sha256_update(&c, chunk, sizeof(chunk));
    crypto_sha256_final(&c, d);
    assert_hex(d, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* Uneven pieces across block boundaries give the one-shot digest. */
    uint8_t one[32];
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    crypto_sha256(one, m, strlen(m));
    crypto_sha256_init(&c);
    crypto_sha256_update(&c, m, 1);
    crypto_sha256_update(&c, m + 1, 0);
    crypto_sha256_update(&c, m + 1, 54);
    crypto_sha256_update(&c, m + 55, strlen(m) - 55);
    crypto_sha256_final(&c, d);
    assert_memory_equal(d, one, 32);
}

/* ---- HMAC-SHA256: RFC 4231 ---- */

static void crypto_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t key[131];
    uint8_t d[32];

    memset(key, 0x0b, 20);
    crypto_hmac_sha256(d, key, 20, "Hi There", 8);
    assert_hex(d, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    const char *data2 = "what do ya want for nothing?";
    crypto_hmac_sha256(d, (const uint8_t *)"Jefe", 4, data2, strlen(data2));
    assert_hex(d, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Case 6: a key longer than the block is hashed first. */
    memset(key, 0xaa, sizeof(key));
    const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    crypto_hmac_sha256(d, key, sizeof(key), data6, strlen(data6));
    assert_hex(d, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- HKDF-SHA256: RFC 5869 ---- */

static void crypto_hkdf_rfc5869(void **state)
{
    (void)state;
    uint8_t ikm[22], salt[13], info[10], okm[42];

    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (uint8_t)(0xf0 + i);
    assert_int_equal(crypto_hkdf_sha256(okm, sizeof(okm), ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info)),
                     0);
    assert_hex(okm, 42,
               "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");

    /* Case 3: empty salt and info. */
    assert_int_equal(crypto_hkdf_sha256(okm, sizeof(okm), ikm, sizeof(ikm), NULL, 0, NULL, 0), 0);
    assert_hex(okm, 42,
               "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");

    assert_int_equal(crypto_hkdf_sha256(okm, 0, ikm, sizeof(ikm), NULL, 0, NULL, 0), -BEX_EINVAL);
    uint8_t big[CRYPTO_HKDF_BYTES_MAX + 1];
    assert_int_equal(crypto_hkdf_sha256(big, sizeof(big), ikm, sizeof(ikm), NULL, 0, NULL, 0), -BEX_EINVAL);
    assert_int_equal(crypto_hkdf_sha256(big, CRYPTO_HKDF_BYTES_MAX, ikm, sizeof(ikm), NULL, 0, NULL, 0), 0);
}

/* ---- AES-256-GCM: McGrew and Viega, test case 16 ---- */

static const char *gcm_key = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
static const char *gcm_iv = "cafebabefacedbaddecaf888";
static const char *gcm_aad = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
static const char *gcm_pt = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
static const char *gcm_ct_tag = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                                "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
                                "76fc6ece0f4e1768cddf8853bb2d551b";

static void crypto_aead_known_answer(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], aad[20], pt[60], want[76], out[76], back[60];

    assert_int_equal(unhex(key, sizeof(key), gcm_key), 32);
    assert_int_equal(unhex(iv, sizeof(iv), gcm_iv), 12);
    assert_int_equal(unhex(aad, sizeof(aad), gcm_aad), 20);
    assert_int_equal(unhex(pt, sizeof(pt), gcm_pt), 60);
    assert_int_equal(unhex(want, sizeof(want), gcm_ct_tag), 76);

    assert_int_equal(crypto_aead_seal(out, key, iv, aad, sizeof(aad), pt, sizeof(pt)), 0);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(crypto_aead_open(back, key, iv, aad, sizeof(aad), out, sizeof(out)), 0);
    assert_memory_equal(back, pt, sizeof(pt));

    /* In place, both ways. */
    memcpy(out, pt, sizeof(pt));
    assert_int_equal(crypto_aead_seal(out, key, iv, aad, sizeof(aad), out, sizeof(pt)), 0);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), out, sizeof(out)), 0);
    assert_memory_equal(out, pt, sizeof(pt));
}

static void crypto_aead_rejects_tampering(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], aad[20], ct[76], bad[76], out[60];

    unhex(key, sizeof(key), gcm_key);
    unhex(iv, sizeof(iv), gcm_iv);
    unhex(aad, sizeof(aad), gcm_aad);
    unhex(ct, sizeof(ct), gcm_ct_tag);

    for (size_t i = 0; i < sizeof(ct); i++) {
        memcpy(bad, ct, sizeof(ct));
        bad[i] ^= 0x01;
        memset(out, 0x55, sizeof(out));
        assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), bad, sizeof(bad)), -BEX_ECRYPTO);
        /* Unauthenticated plaintext is wiped, not handed out. */
        for (size_t j = 0; j < sizeof(out); j++)
            assert_int_equal(out[j], 0);
    }
    aad[0] ^= 1;
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), ct, sizeof(ct)), -BEX_ECRYPTO);
    aad[0] ^= 1;
    iv[11] ^= 1;
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), ct, sizeof(ct)), -BEX_ECRYPTO);
    iv[11] ^= 1;
    key[31] ^= 1;
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), ct, sizeof(ct)), -BEX_ECRYPTO);
    key[31] ^= 1;
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), ct, 15), -BEX_EDECODE);
    assert_int_equal(crypto_aead_open(out, key, iv, NULL, 0, ct, sizeof(ct)), -BEX_ECRYPTO);

    /* An empty message still carries an authenticated tag. */
    uint8_t tag[16];
    assert_int_equal(crypto_aead_seal(tag, key, iv, aad, sizeof(aad), NULL, 0), 0);
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), tag, sizeof(tag)), 0);
    tag[0] ^= 1;
    assert_int_equal(crypto_aead_open(out, key, iv, aad, sizeof(aad), tag, sizeof(tag)), -BEX_ECRYPTO);
}

/* ---- secp256k1 ---- */

static void crypto_pubkey_known_points(void **state)
{
    (void)state;
    struct crypto_seckey sk = {{0}};
    struct crypto_pubkey pk;
    char hex[CRYPTO_PUB_HEX + 1];

    /* Secret key 1 gives the generator G, 2 gives 2G (SEC 2, 2.4.1). */
    sk.b[31] = 1;
    assert_int_equal(crypto_pubkey_of(&pk, &sk), 0);
    crypto_pubkey_to_hex(hex, &pk);
    assert_string_equal(hex, "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");
    sk.b[31] = 2;
    assert_int_equal(crypto_pubkey_of(&pk, &sk), 0);
    crypto_pubkey_to_hex(hex, &pk);
    assert_string_equal(hex, "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5");

    /* Zero and the group order n are not secret keys. */
    memset(&sk, 0, sizeof(sk));
    assert_int_equal(crypto_seckey_check(&sk), -BEX_EINVAL);
    assert_int_equal(crypto_pubkey_of(&pk, &sk), -BEX_EINVAL);
    unhex(sk.b, sizeof(sk.b), "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
    assert_int_equal(crypto_seckey_check(&sk), -BEX_EINVAL);
    assert_int_equal(crypto_pubkey_of(&pk, &sk), -BEX_EINVAL);
    sk.b[31] = 0x40;
    assert_int_equal(crypto_seckey_check(&sk), 0);
}

static void crypto_pubkey_parsing(void **state)
{
    (void)state;
    struct crypto_pubkey pk;
    const char *g = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    assert_int_equal(crypto_pubkey_from_hex(&pk, g), 0);
    assert_int_equal(crypto_pubkey_check(&pk), 0);
    /* Upper case is the same key. */
    assert_int_equal(crypto_pubkey_from_hex(&pk, "0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798"),
                     0);
    /* Wrong length, non-hex, bad prefixes, x not on the curve. */
    assert_int_equal(crypto_pubkey_from_hex(&pk, "0279be"), -BEX_EDECODE);
    assert_int_equal(crypto_pubkey_from_hex(&pk, "zz79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
                     -BEX_EDECODE);
    assert_int_equal(crypto_pubkey_from_hex(&pk, "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
                     -BEX_EINVAL);
    assert_int_equal(crypto_pubkey_from_hex(&pk, "0679be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
                     -BEX_EINVAL);
    assert_int_equal(crypto_pubkey_from_hex(&pk, "020000000000000000000000000000000000000000000000000000000000000000"),
                     -BEX_EINVAL);
    /* x = 5 is not the x coordinate of any point (5^3 + 7 is not a square mod p). */
    assert_int_equal(crypto_pubkey_from_hex(&pk, "020000000000000000000000000000000000000000000000000000000000000005"),
                     -BEX_EINVAL);
    memset(&pk, 0, sizeof(pk));
    assert_int_equal(crypto_pubkey_check(&pk), -BEX_EINVAL);
}

static void crypto_key_id_is_digest_prefix(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    uint8_t d[32];
    char id[CRYPTO_ID_HEX + 1], want[CRYPTO_ID_HEX + 1];

    seed_key(&sk, &pk, 7);
    crypto_key_id(id, &pk);
    crypto_sha256(d, pk.b, sizeof(pk.b));
    assert_int_equal(crypto_hex_encode(want, sizeof(want), d, 20), 0);
    assert_string_equal(id, want);
    assert_int_equal(strlen(id), CRYPTO_ID_HEX);
}

static void crypto_sign_verify_round_trips(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk, other;
    struct crypto_sig sig, sig2;
    uint8_t digest[32];

    for (uint32_t seed = 1; seed <= 64; seed++) {
        seed_key(&sk, &pk, seed);
        crypto_sha256(digest, &seed, sizeof(seed));
        assert_int_equal(crypto_sign(&sig, &sk, digest), 0);
        assert_int_equal(crypto_verify(&pk, digest, &sig), 0);
        /* RFC 6979: the same key and digest give the same signature. */
        assert_int_equal(crypto_sign(&sig2, &sk, digest), 0);
        assert_memory_equal(sig.b, sig2.b, sizeof(sig.b));
        /* The S half is low: its top bit is clear. */
        assert_true((sig.b[32] & 0x80) == 0);

        seed_key(&sk, &other, seed + 1000);
        assert_int_equal(crypto_verify(&other, digest, &sig), -BEX_ESIG);
    }
    /* Fresh random keys too. */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(crypto_keygen(&sk, &pk), 0);
        assert_int_equal(crypto_random(digest, sizeof(digest)), 0);
        assert_int_equal(crypto_sign(&sig, &sk, digest), 0);
        assert_int_equal(crypto_verify(&pk, digest, &sig), 0);
    }
}

static void crypto_verify_rejects_tampering(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk, bad_pk;
    struct crypto_sig sig, bad_sig;
    uint8_t digest[32], bad_digest[32];

    seed_key(&sk, &pk, 42);
    crypto_sha256(digest, "bex", 3);
    assert_int_equal(crypto_sign(&sig, &sk, digest), 0);

    for (size_t i = 0; i < sizeof(digest); i++) {
        memcpy(bad_digest, digest, sizeof(digest));
        bad_digest[i] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(crypto_verify(&pk, bad_digest, &sig), -BEX_ESIG);
    }
    for (size_t i = 0; i < sizeof(sig.b); i++) {
        bad_sig = sig;
        bad_sig.b[i] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(crypto_verify(&pk, digest, &bad_sig), -BEX_ESIG);
    }
    for (size_t i = 0; i < sizeof(pk.b); i++) {
        bad_pk = pk;
        bad_pk.b[i] ^= 0x01;
        assert_int_equal(crypto_verify(&bad_pk, digest, &sig), -BEX_ESIG);
    }
    /* All-zero and all-ones signatures are malformed. */
    memset(&bad_sig, 0, sizeof(bad_sig));
    assert_int_equal(crypto_verify(&pk, digest, &bad_sig), -BEX_ESIG);
    memset(&bad_sig, 0xff, sizeof(bad_sig));
    assert_int_equal(crypto_verify(&pk, digest, &bad_sig), -BEX_ESIG);
}

static void crypto_verify_rejects_high_s(void **state)
{
    (void)state;
    static const char *order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    struct crypto_sig sig, high;
    uint8_t n[32], digest[32];

    unhex(n, sizeof(n), order);
    seed_key(&sk, &pk, 3);
    crypto_sha256(digest, "high s", 6);
    assert_int_equal(crypto_sign(&sig, &sk, digest), 0);

    /* (r, n - s) is the same signature mathematically, with a high S. */
    high = sig;
    int borrow = 0;
    for (int i = 31; i >= 0; i--) {
        int v = n[i] - sig.b[32 + i] - borrow;
        borrow = v < 0;
        high.b[32 + i] = (uint8_t)(v + (borrow ? 256 : 0));
    }
    assert_int_equal(borrow, 0);
    assert_true((high.b[32] & 0x80) != 0);
    assert_int_equal(crypto_verify(&pk, digest, &high), -BEX_ESIG);

    /* libsecp256k1 agrees it is the same signature once normalized, so the
     * rejection is about the form, not the value. */
    secp256k1_ecdsa_signature s;
    struct crypto_sig back;
    assert_true(secp256k1_ecdsa_signature_parse_compact(secp256k1_context_static, &s, high.b));
    assert_true(secp256k1_ecdsa_signature_normalize(secp256k1_context_static, &s, &s));
    assert_true(secp256k1_ecdsa_signature_serialize_compact(secp256k1_context_static, back.b, &s));
    assert_memory_equal(back.b, sig.b, sizeof(sig.b));
}

struct sign_job {
    uint32_t seed;
    int failures;
};

static void *sign_thread(void *arg)
{
    struct sign_job *job = arg;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    struct crypto_sig sig;
    uint8_t digest[32];

    for (uint32_t i = 0; i < 200; i++) {
        uint32_t s = job->seed * 1000 + i;
        uint8_t b[4] = {(uint8_t)(s >> 24), (uint8_t)(s >> 16), (uint8_t)(s >> 8), (uint8_t)s};
        crypto_sha256(sk.b, b, sizeof(b));
        crypto_sha256(digest, sk.b, sizeof(sk.b));
        if (crypto_pubkey_of(&pk, &sk) != 0 || crypto_sign(&sig, &sk, digest) != 0 ||
            crypto_verify(&pk, digest, &sig) != 0)
            job->failures++;
    }
    return NULL;
}

static void crypto_sign_from_threads(void **state)
{
    (void)state;
    pthread_t t[2];
    struct sign_job jobs[2] = {{1, 0}, {2, 0}};

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sign_thread, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
}

/*
 * crypto_verify keeps parsed keys in a small per-thread cache. More keys
 * than it holds, verified twice over (so entries are evicted and parsed
 * again), must give exactly the answers of a fresh parse: each signature
 * verifies under its own key and under no other, and a key one bit away
 * from a cached one is not taken for it.
 */
#define CACHE_TEST_KEYS 300

static void crypto_verify_cached_keys_stay_exact(void **state)
{
    (void)state;
    static struct crypto_pubkey pk[CACHE_TEST_KEYS];
    static struct crypto_sig sig[CACHE_TEST_KEYS];
    static uint8_t digest[CACHE_TEST_KEYS][32];
    struct crypto_seckey sk;

    for (uint32_t i = 0; i < CACHE_TEST_KEYS; i++) {
        seed_key(&sk, &pk[i], 5000 + i);
        crypto_sha256(digest[i], &i, sizeof(i));
        assert_int_equal(crypto_sign(&sig[i], &sk, digest[i]), 0);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < CACHE_TEST_KEYS; i++) {
            uint32_t j = (i + 1) % CACHE_TEST_KEYS;
            assert_int_equal(crypto_verify(&pk[i], digest[i], &sig[i]), 0);
            assert_int_equal(crypto_verify(&pk[j], digest[i], &sig[i]), -BEX_ESIG);
            assert_int_equal(crypto_verify(&pk[i], digest[i], &sig[i]), 0);
        }
    }
    /* The same x with the other parity, and a flipped last byte: other points or none. */
    for (uint32_t i = 0; i < 16; i++) {
        struct crypto_pubkey near = pk[i];
        assert_int_equal(crypto_verify(&pk[i], digest[i], &sig[i]), 0);
        near.b[0] ^= 0x01;
        assert_int_equal(crypto_verify(&near, digest[i], &sig[i]), -BEX_ESIG);
        near = pk[i];
        near.b[CRYPTO_PUB_BYTES - 1] ^= 0x01;
        assert_int_equal(crypto_verify(&near, digest[i], &sig[i]), -BEX_ESIG);
        assert_int_equal(crypto_verify(&pk[i], digest[i], &sig[i]), 0);
    }
}

struct verify_job {
    const struct crypto_pubkey *pk;
    const struct crypto_sig *sig;
    const uint8_t (*digest)[32];
    int failures;
};

static void *verify_thread(void *arg)
{
    struct verify_job *job = arg;

    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < 64; i++) {
            if (crypto_verify(&job->pk[i], job->digest[i], &job->sig[i]) != 0)
                job->failures++;
            if (crypto_verify(&job->pk[(i + 1) % 64], job->digest[i], &job->sig[i]) != -BEX_ESIG)
                job->failures++;
        }
    }
    return NULL;
}

/* Threads verifying against the same keys at once, each with its own cache. */
static void crypto_verify_from_threads(void **state)
{
    (void)state;
    static struct crypto_pubkey pk[64];
    static struct crypto_sig sig[64];
    static uint8_t digest[64][32];
    struct crypto_seckey sk;
    pthread_t t[3];
    struct verify_job jobs[3];

    for (uint32_t i = 0; i < 64; i++) {
        seed_key(&sk, &pk[i], 9000 + i);
        crypto_sha256(digest[i], &i, sizeof(i));
        assert_int_equal(crypto_sign(&sig[i], &sk, digest[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        jobs[i] = (struct verify_job){pk, sig, (const uint8_t(*)[32])digest, 0};
        assert_int_equal(pthread_create(&t[i], NULL, verify_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
}

/* ---- ECIES ---- */

static void crypto_ecies_round_trip(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    const char *msg = "field key for vehicle.owner";
    const uint8_t aad[] = "release:42";
    size_t len = strlen(msg);
    uint8_t ct[128], ct2[128], pt[128];

    assert_int_equal(crypto_keygen(&sk, &pk), 0);
    assert_int_equal(crypto_ecies_seal(ct, &pk, aad, sizeof(aad), (const uint8_t *)msg, len), 0);
    assert_int_equal(crypto_ecies_open(pt, &sk, aad, sizeof(aad), ct, len + CRYPTO_ECIES_OVERHEAD), 0);
    assert_memory_equal(pt, msg, len);
    /* The ephemeral key leads the ciphertext and is a valid point. */
    struct crypto_pubkey eph;
    memcpy(eph.b, ct, sizeof(eph.b));
    assert_int_equal(crypto_pubkey_check(&eph), 0);

    /* Two seals of one message differ (fresh ephemeral key and nonce). */
    assert_int_equal(crypto_ecies_seal(ct2, &pk, aad, sizeof(aad), (const uint8_t *)msg, len), 0);
    assert_memory_not_equal(ct, ct2, len + CRYPTO_ECIES_OVERHEAD);

    /* Empty plaintext, no aad. */
    assert_int_equal(crypto_ecies_seal(ct, &pk, NULL, 0, NULL, 0), 0);
    assert_int_equal(crypto_ecies_open(pt, &sk, NULL, 0, ct, CRYPTO_ECIES_OVERHEAD), 0);
    assert_int_equal(crypto_ecies_open(pt, &sk, NULL, 0, ct, CRYPTO_ECIES_OVERHEAD - 1), -BEX_EDECODE);

    /* An invalid recipient key is refused before anything is sealed. */
    struct crypto_pubkey bad = {{0}};
    assert_int_equal(crypto_ecies_seal(ct, &bad, NULL, 0, (const uint8_t *)msg, len), -BEX_EINVAL);
}

static void crypto_ecies_rejects_every_byte_flip(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    const uint8_t msg[32] = "0123456789abcdef0123456789abcdef";
    const uint8_t aad[] = "aad";
    uint8_t ct[sizeof(msg) + CRYPTO_ECIES_OVERHEAD], bad[sizeof(ct)], pt[sizeof(msg)];

    seed_key(&sk, &pk, 99);
    assert_int_equal(crypto_ecies_seal(ct, &pk, aad, sizeof(aad), msg, sizeof(msg)), 0);
    for (size_t i = 0; i < sizeof(ct); i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            memcpy(bad, ct, sizeof(ct));
            bad[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(crypto_ecies_open(pt, &sk, aad, sizeof(aad), bad, sizeof(bad)), -BEX_ECRYPTO);
        }
    }
    const uint8_t other_aad[] = "aae";
    assert_int_equal(crypto_ecies_open(pt, &sk, other_aad, sizeof(other_aad), ct, sizeof(ct)), -BEX_ECRYPTO);
    assert_int_equal(crypto_ecies_open(pt, &sk, aad, sizeof(aad), ct, sizeof(ct)), 0);
    assert_memory_equal(pt, msg, sizeof(msg));
}

static void crypto_ecies_rejects_wrong_recipient(void **state)
{
    (void)state;
    struct crypto_seckey sk, other_sk;
    struct crypto_pubkey pk, other_pk;
    const uint8_t msg[] = "only for the owner";
    uint8_t ct[sizeof(msg) + CRYPTO_ECIES_OVERHEAD], pt[sizeof(msg)];

    seed_key(&sk, &pk, 5);
    seed_key(&other_sk, &other_pk, 6);
    assert_int_equal(crypto_ecies_seal(ct, &pk, NULL, 0, msg, sizeof(msg)), 0);
    memset(pt, 0x55, sizeof(pt));
    assert_int_equal(crypto_ecies_open(pt, &other_sk, NULL, 0, ct, sizeof(ct)), -BEX_ECRYPTO);
    for (size_t i = 0; i < sizeof(pt); i++)
        assert_int_equal(pt[i], 0);
    assert_int_equal(crypto_ecies_open(pt, &sk, NULL, 0, ct, sizeof(ct)), 0);
    assert_memory_equal(pt, msg, sizeof(msg));
}

/* ---- hex and helpers ---- */

static void crypto_hex_edges(void **state)
{
    (void)state;
    uint8_t b[4];
    size_t n = 99;
    char s[9];

    assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, "00fFa5"), 0);
    assert_int_equal(n, 3);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(b[2], 0xa5);
    assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, ""), 0);
    assert_int_equal(n, 0);
    assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, "abc"), -BEX_EDECODE);
    assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, "0g"), -BEX_EDECODE);
    assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, " 00"), -BEX_EDECODE);
    assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, "0011223344"), -BEX_ELIMIT);

    const uint8_t v[4] = {0xde, 0xad, 0x00, 0x0f};
    assert_int_equal(crypto_hex_encode(s, sizeof(s), v, 4), 0);
    assert_string_equal(s, "dead000f");
    assert_int_equal(crypto_hex_encode(s, 8, v, 4), -BEX_ELIMIT);
    assert_int_equal(crypto_hex_encode(s, 0, v, 0), -BEX_ELIMIT);
    assert_int_equal(crypto_hex_encode(s, 1, v, 0), 0);
    assert_string_equal(s, "");
}

static void crypto_memeq_and_random(void **state)
{
    (void)state;
    uint8_t a[32], b[32];

    assert_int_equal(crypto_random(a, sizeof(a)), 0);
    assert_int_equal(crypto_random(b, sizeof(b)), 0);
    assert_false(crypto_memeq(a, b, sizeof(a)));
    memcpy(b, a, sizeof(a));
    assert_true(crypto_memeq(a, b, sizeof(a)));
    b[31] ^= 0x80;
    assert_false(crypto_memeq(a, b, sizeof(a)));
    crypto_wipe(a, sizeof(a));
    for (size_t i = 0; i < sizeof(a); i++)
        assert_int_equal(a[i], 0);
}

static void crypto_init_nests(void **state)
{
    (void)state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;

    /* The group setup holds one reference; another init/close pair must
     * leave the context usable. */
    assert_int_equal(crypto_init(), 0);
    crypto_close();
    assert_int_equal(crypto_keygen(&sk, &pk), 0);
    assert_int_equal(crypto_pubkey_check(&pk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crypto_sha256_known_answers),
        cmocka_unit_test(crypto_sha256_million_a_incremental),
        cmocka_unit_test(crypto_hmac_rfc4231),
        cmocka_unit_test(crypto_hkdf_rfc5869),
        cmocka_unit_test(crypto_aead_known_answer),
        cmocka_unit_test(crypto_aead_rejects_tampering),
        cmocka_unit_test(crypto_pubkey_known_points),
        cmocka_unit_test(crypto_pubkey_parsing),
        cmocka_unit_test(crypto_key_id_is_digest_prefix),
        cmocka_unit_test(crypto_sign_verify_round_trips),
        cmocka_unit_test(crypto_verify_rejects_tampering),
        cmocka_unit_test(crypto_verify_rejects_high_s),
        cmocka_unit_test(crypto_sign_from_threads),
        cmocka_unit_test(crypto_verify_cached_keys_stay_exact),
        cmocka_unit_test(crypto_verify_from_threads),
        cmocka_unit_test(crypto_ecies_round_trip),
        cmocka_unit_test(crypto_ecies_rejects_every_byte_flip),
        cmocka_unit_test(crypto_ecies_rejects_wrong_recipient),
        cmocka_unit_test(crypto_hex_edges),
        cmocka_unit_test(crypto_memeq_and_random),
        cmocka_unit_test(crypto_init_nests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
