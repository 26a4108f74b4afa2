/*
 * crypto.c: secp256k1 through libsecp256k1, everything else through OpenSSL.
 */

/*
 * SHA-256 uses OpenSSL's low-level SHA256_* functions, deprecated in 3.0 in
 * favour of EVP. The EVP interface allocates a context per hash and can fail
 * at every step; the low-level functions keep the context a fixed-size value
 * owned by the caller, cannot fail, run the same SHA-NI/AVX2 code and cost
 * half as much for the short messages a chain hashes most (124 ns against
 * 237 ns for 64 bytes on the build machine). They are present in every
 * OpenSSL 3 release, so the deprecation warnings are silenced here only.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "crypto.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <secp256k1.h>
#include <secp256k1_ecdh.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(struct crypto_sha256_ctx), "crypto_sha256_ctx too small");
_Static_assert(_Alignof(SHA256_CTX) <= _Alignof(struct crypto_sha256_ctx), "crypto_sha256_ctx misaligned");

static const char ecies_info[] = "bex-ecies-v1";

/*
 * The signing context. Signing, key derivation and ECDH use it; parsing and
 * verification use secp256k1_context_static, which needs no set-up, so that
 * config files can be checked before crypto_init().
 */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static secp256k1_context *ctx;
static int ctx_refs;

static secp256k1_context *signing_ctx(void)
{
    BEX_ASSERT(ctx != NULL);
    return ctx;
}

int crypto_init(void)
{
    uint8_t seed[32];
    int rc = 0;

    pthread_mutex_lock(&ctx_lock);
    if (ctx_refs > 0) {
        ctx_refs++;
        goto done;
    }
    secp256k1_selftest();
    ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (ctx == NULL) {
        rc = -BEX_ENOMEM;
        goto done;
    }
    /* Randomization blinds the scalar multiplications of signing and key
     * derivation, so timing and power traces do not follow the secret key. */
    if (RAND_priv_bytes(seed, sizeof(seed)) != 1 || !secp256k1_context_randomize(ctx, seed)) {
        secp256k1_context_destroy(ctx);
        ctx = NULL;
        rc = -BEX_ECRYPTO;
        goto done;
    }
    ctx_refs = 1;
done:
    OPENSSL_cleanse(seed, sizeof(seed));
    pthread_mutex_unlock(&ctx_lock);
    return rc;
}

void crypto_close(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (ctx_refs > 0 && --ctx_refs == 0) {
        secp256k1_context_destroy(ctx);
        ctx = NULL;
    }
    pthread_mutex_unlock(&ctx_lock);
}

int crypto_random(uint8_t *out, size_t len)
{
    /* RAND_bytes counts in int; draw large requests in pieces. */
    while (len > 0) {
        size_t n = len > INT_MAX ? INT_MAX : len;
        if (RAND_bytes(out, (int)n) != 1)
            return -BEX_ECRYPTO;
        out += n;
        len -= n;
    }
    return 0;
}

void crypto_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}

bool crypto_memeq(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

/* ---- keys ---- */

int crypto_seckey_check(const struct crypto_seckey *sk)
{
    return secp256k1_ec_seckey_verify(secp256k1_context_static, sk->b) ? 0 : -BEX_EINVAL;
}

static void serialize_pub(struct crypto_pubkey *pk, const secp256k1_pubkey *p)
{
    size_t len = sizeof(pk->b);
    int ok = secp256k1_ec_pubkey_serialize(secp256k1_context_static, pk->b, &len, p, SECP256K1_EC_COMPRESSED);
    BEX_ASSERT(ok);
    BEX_ASSERT(len == CRYPTO_PUB_BYTES);
}

static int parse_pub(secp256k1_pubkey *p, const struct crypto_pubkey *pk)
{
    /* With 33 bytes libsecp256k1 accepts only the 0x02/0x03 compressed form. */
    if (!secp256k1_ec_pubkey_parse(secp256k1_context_static, p, pk->b, sizeof(pk->b)))
        return -BEX_EINVAL;
    return 0;
}

int crypto_pubkey_of(struct crypto_pubkey *pk, const struct crypto_seckey *sk)
{
    secp256k1_pubkey p;

    if (!secp256k1_ec_pubkey_create(signing_ctx(), &p, sk->b))
        return -BEX_EINVAL;
    serialize_pub(pk, &p);
    return 0;
}

int crypto_keygen(struct crypto_seckey *sk, struct crypto_pubkey *pk)
{
    int rc;

    /* A uniform 32-byte string is a valid key unless it is zero or at least
     * the group order, which happens with probability below 2^-127; the loop
     * bound only turns a broken generator into an error. */
    for (int tries = 0; tries < 64; tries++) {
        if ((rc = crypto_random(sk->b, sizeof(sk->b))) != 0)
            goto fail;
        if (crypto_pubkey_of(pk, sk) == 0)
            return 0;
    }
    rc = -BEX_ECRYPTO;
fail:
    OPENSSL_cleanse(sk, sizeof(*sk));
    return rc;
}

int crypto_pubkey_check(const struct crypto_pubkey *pk)
{
    secp256k1_pubkey p;
    return parse_pub(&p, pk);
}

int crypto_pubkey_from_hex(struct crypto_pubkey *pk, const char *hex)
{
    size_t n;

    if (strlen(hex) != CRYPTO_PUB_HEX)
        return -BEX_EDECODE;
    if (crypto_hex_decode(pk->b, sizeof(pk->b), &n, hex) != 0)
        return -BEX_EDECODE;
    BEX_ASSERT(n == CRYPTO_PUB_BYTES);
    return crypto_pubkey_check(pk);
}

void crypto_pubkey_to_hex(char out[CRYPTO_PUB_HEX + 1], const struct crypto_pubkey *pk)
{
    int rc = crypto_hex_encode(out, CRYPTO_PUB_HEX + 1, pk->b, sizeof(pk->b));
    BEX_ASSERT(rc == 0);
}

void crypto_key_id(char out[CRYPTO_ID_HEX + 1], const struct crypto_pubkey *pk)
{
    uint8_t d[CRYPTO_HASH_BYTES];

    crypto_sha256(d, pk->b, sizeof(pk->b));
    int rc = crypto_hex_encode(out, CRYPTO_ID_HEX + 1, d, CRYPTO_ID_HEX / 2);
    BEX_ASSERT(rc == 0);
}

/* ---- hashing ---- */

void crypto_sha256_init(struct crypto_sha256_ctx *c)
{
    int ok = SHA256_Init((SHA256_CTX *)c->opaque);
    BEX_ASSERT(ok == 1);
}

void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t len)
{
    int ok = SHA256_Update((SHA256_CTX *)c->opaque, data, len);
    BEX_ASSERT(ok == 1);
}

void crypto_sha256_final(struct crypto_sha256_ctx *c, uint8_t out[CRYPTO_HASH_BYTES])
{
    int ok = SHA256_Final(out, (SHA256_CTX *)c->opaque);
    BEX_ASSERT(ok == 1);
    /* The state may hash a secret (HKDF input, a record key). */
    OPENSSL_cleanse(c, sizeof(*c));
}

void crypto_sha256(uint8_t out[CRYPTO_HASH_BYTES], const void *data, size_t len)
{
    struct crypto_sha256_ctx c;

    crypto_sha256_init(&c);
    crypto_sha256_update(&c, data, len);
    crypto_sha256_final(&c, out);
}

void crypto_hmac_sha256(uint8_t out[CRYPTO_HASH_BYTES], const uint8_t *key, size_t key_len, const void *data,
                        size_t len)
{
    /* RFC 2104 over the SHA-256 above: no allocation, so no failure path.
     * A key longer than the block is hashed first. */
    uint8_t k[SHA256_CBLOCK] = {0};
    uint8_t pad[SHA256_CBLOCK];
    uint8_t inner[CRYPTO_HASH_BYTES];
    struct crypto_sha256_ctx c;

    if (key_len > sizeof(k))
        crypto_sha256(k, key, key_len);
    else if (key_len > 0)
        memcpy(k, key, key_len);

    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = k[i] ^ 0x36;
    crypto_sha256_init(&c);
    crypto_sha256_update(&c, pad, sizeof(pad));
    crypto_sha256_update(&c, data, len);
    crypto_sha256_final(&c, inner);

    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = k[i] ^ 0x5c;
    crypto_sha256_init(&c);
    crypto_sha256_update(&c, pad, sizeof(pad));
    crypto_sha256_update(&c, inner, sizeof(inner));
    crypto_sha256_final(&c, out);

    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
}

int crypto_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                       size_t salt_len, const uint8_t *info, size_t info_len)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[5];
    OSSL_PARAM *p = params;
    /* OpenSSL takes the parameters as non-const pointers it only reads; an
     * empty buffer still needs a valid address. */
    static const uint8_t empty[1];
    int rc = -BEX_ECRYPTO;

    if (out_len == 0 || out_len > CRYPTO_HKDF_BYTES_MAX)
        return -BEX_EINVAL;

    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(ikm_len ? ikm : empty), ikm_len);
    if (salt_len > 0)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(info_len ? info : empty), info_len);
    *p = OSSL_PARAM_construct_end();

    if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL)
        goto fail;
    if ((kctx = EVP_KDF_CTX_new(kdf)) == NULL)
        goto fail;
    if (EVP_KDF_derive(kctx, out, out_len, params) != 1)
        goto fail;
    rc = 0;
fail:
    if (rc != 0)
        OPENSSL_cleanse(out, out_len);
    /* EVP_KDF_CTX_free wipes the key material it copied. */
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* ---- signatures ---- */

int crypto_sign(struct crypto_sig *sig, const struct crypto_seckey *sk, const uint8_t digest[CRYPTO_HASH_BYTES])
{
    secp256k1_ecdsa_signature s;

    /* libsecp256k1 always produces the low-S form. */
    if (!secp256k1_ecdsa_sign(signing_ctx(), &s, digest, sk->b, NULL, NULL))
        return -BEX_EINVAL;
    int ok = secp256k1_ecdsa_signature_serialize_compact(secp256k1_context_static, sig->b, &s);
    BEX_ASSERT(ok);
    return 0;
}

/*
 * Parsed public keys for crypto_verify. Parsing a compressed key
 * decompresses the point (a field square root), about a tenth of a
 * verification, and a node verifies against the same few dozen registered
 * keys (officers, node keys) over and over. Each thread keeps its own small
 * cache, so there is no lock and nothing shared to race on: 2-way set
 * associative, the most recently used way first, indexed by key bytes. Only
 * keys that parsed are cached, and a hit needs all 33 bytes equal, so a
 * cached key behaves exactly like a freshly parsed one. A flood of distinct
 * keys only evicts entries: the cost per verification is never above a parse.
 */
#define PUB_CACHE_SETS 64
#define PUB_CACHE_WAYS 2

struct pub_cache_entry {
    bool used;
    uint8_t key[CRYPTO_PUB_BYTES];
    secp256k1_pubkey parsed;
};

static _Thread_local struct pub_cache_entry pub_cache[PUB_CACHE_SETS][PUB_CACHE_WAYS];

static int parse_pub_cached(secp256k1_pubkey *p, const struct crypto_pubkey *pk)
{
    /* Bytes 1.. are the x coordinate: uniform for real keys. */
    struct pub_cache_entry *set = pub_cache[(pk->b[1] ^ pk->b[2] ^ pk->b[0]) % PUB_CACHE_SETS];
    struct pub_cache_entry hit;
    int rc;

    for (int w = 0; w < PUB_CACHE_WAYS; w++) {
        if (set[w].used && memcmp(set[w].key, pk->b, CRYPTO_PUB_BYTES) == 0) {
            hit = set[w];
            memmove(&set[1], &set[0], (size_t)w * sizeof(set[0]));
            set[0] = hit;
            *p = hit.parsed;
            return 0;
        }
    }
    if ((rc = parse_pub(p, pk)) != 0)
        return rc;
    memmove(&set[1], &set[0], (PUB_CACHE_WAYS - 1) * sizeof(set[0]));
    set[0].used = true;
    memcpy(set[0].key, pk->b, CRYPTO_PUB_BYTES);
    set[0].parsed = *p;
    return 0;
}

int crypto_verify(const struct crypto_pubkey *pk, const uint8_t digest[CRYPTO_HASH_BYTES],
                  const struct crypto_sig *sig)
{
    secp256k1_pubkey p;
    secp256k1_ecdsa_signature s;

    if (parse_pub_cached(&p, pk) != 0)
        return -BEX_ESIG;
    if (!secp256k1_ecdsa_signature_parse_compact(secp256k1_context_static, &s, sig->b))
        return -BEX_ESIG;
    /* secp256k1_ecdsa_verify refuses a high S, so each (key, digest) has
     * one accepted signature and a tx id over signed bytes is not malleable. */
    if (!secp256k1_ecdsa_verify(secp256k1_context_static, &s, digest, &p))
        return -BEX_ESIG;
    return 0;
}

/* ---- AES-256-GCM ---- */

static int aead(int enc, uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_BYTES],
                const uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES], const uint8_t *aad, size_t aad_len, const uint8_t *in,
                size_t in_len, uint8_t tag[CRYPTO_AEAD_TAG_BYTES])
{
    EVP_CIPHER_CTX *c = NULL;
    int n;
    int rc = -BEX_ECRYPTO;

    if (in_len > CRYPTO_AEAD_BYTES_MAX || aad_len > CRYPTO_AEAD_BYTES_MAX)
        return -BEX_ELIMIT;
    if ((c = EVP_CIPHER_CTX_new()) == NULL)
        goto fail;
    /* The default GCM IV length is 12 bytes, the only one bex uses. */
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) != 1)
        goto fail;
    if (aad_len > 0 && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        goto fail;
    if (in_len > 0) {
        if (EVP_CipherUpdate(c, out, &n, in, (int)in_len) != 1)
            goto fail;
        BEX_ASSERT((size_t)n == in_len);
    }
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPTO_AEAD_TAG_BYTES, tag) != 1)
        goto fail;
    /* For decryption this is where the tag is compared. */
    if (EVP_CipherFinal_ex(c, out + in_len, &n) != 1)
        goto fail;
    BEX_ASSERT(n == 0);
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPTO_AEAD_TAG_BYTES, tag) != 1)
        goto fail;
    rc = 0;
fail:
    /* EVP_CIPHER_CTX_free wipes the expanded key schedule. */
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int crypto_aead_seal(uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_BYTES],
                     const uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES], const uint8_t *aad, size_t aad_len,
                     const uint8_t *pt, size_t pt_len)
{
    uint8_t tag[CRYPTO_AEAD_TAG_BYTES];
    int rc = aead(1, out, key, nonce, aad, aad_len, pt, pt_len, tag);

    /* On failure out holds at most ciphertext, which is no secret, and
     * wiping it would destroy the plaintext of an in-place call. */
    if (rc == 0)
        memcpy(out + pt_len, tag, sizeof(tag));
    return rc;
}

int crypto_aead_open(uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_BYTES],
                     const uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES], const uint8_t *aad, size_t aad_len,
                     const uint8_t *ct, size_t ct_len)
{
    uint8_t tag[CRYPTO_AEAD_TAG_BYTES];
    size_t pt_len;
    int rc;

    if (ct_len < CRYPTO_AEAD_TAG_BYTES)
        return -BEX_EDECODE;
    pt_len = ct_len - CRYPTO_AEAD_TAG_BYTES;
    if (pt_len > CRYPTO_AEAD_BYTES_MAX)
        return -BEX_ELIMIT;
    /* Copy the tag first: out may be ct itself. */
    memcpy(tag, ct + pt_len, sizeof(tag));
    rc = aead(0, out, key, nonce, aad, aad_len, ct, pt_len, tag);
    /* GCM decrypts before it checks; unauthenticated plaintext never leaves. */
    if (rc != 0)
        OPENSSL_cleanse(out, pt_len);
    return rc;
}

/* ---- ECIES ---- */

/* The ECDH output is the bare x coordinate (SEC 1, 3.3.1); HKDF does the
 * hashing, with the ephemeral key as salt. */
static int ecdh_x_only(unsigned char *output, const unsigned char *x32, const unsigned char *y32, void *data)
{
    (void)y32;
    (void)data;
    memcpy(output, x32, 32);
    return 1;
}

static int ecies_key(uint8_t key[CRYPTO_AEAD_KEY_BYTES], const secp256k1_pubkey *point, const uint8_t *scalar,
                     const uint8_t eph_pub[CRYPTO_PUB_BYTES])
{
    uint8_t shared[32];
    int rc;

    if (!secp256k1_ecdh(signing_ctx(), shared, point, scalar, ecdh_x_only, NULL)) {
        rc = -BEX_ECRYPTO;
        goto fail;
    }
    rc = crypto_hkdf_sha256(key, CRYPTO_AEAD_KEY_BYTES, shared, sizeof(shared), eph_pub, CRYPTO_PUB_BYTES,
                            (const uint8_t *)ecies_info, sizeof(ecies_info) - 1);
fail:
    OPENSSL_cleanse(shared, sizeof(shared));
    return rc;
}

int crypto_ecies_seal(uint8_t *out, const struct crypto_pubkey *to, const uint8_t *aad, size_t aad_len,
                      const uint8_t *pt, size_t pt_len)
{
    struct crypto_seckey eph_sk;
    struct crypto_pubkey eph_pk;
    secp256k1_pubkey point;
    uint8_t key[CRYPTO_AEAD_KEY_BYTES];
    uint8_t *nonce = out + CRYPTO_PUB_BYTES;
    int rc;

    if (pt_len > CRYPTO_AEAD_BYTES_MAX)
        return -BEX_ELIMIT;
    if ((rc = parse_pub(&point, to)) != 0)
        goto fail;
    if ((rc = crypto_keygen(&eph_sk, &eph_pk)) != 0)
        goto fail;
    if ((rc = ecies_key(key, &point, eph_sk.b, eph_pk.b)) != 0)
        goto fail;
    /* Each message has its own key, so a fixed nonce would be safe; a random
     * one costs nothing and keeps the layout self-describing. */
    if ((rc = crypto_random(nonce, CRYPTO_AEAD_NONCE_BYTES)) != 0)
        goto fail;
    memcpy(out, eph_pk.b, CRYPTO_PUB_BYTES);
    rc = crypto_aead_seal(out + CRYPTO_PUB_BYTES + CRYPTO_AEAD_NONCE_BYTES, key, nonce, aad, aad_len, pt, pt_len);
fail:
    OPENSSL_cleanse(&eph_sk, sizeof(eph_sk));
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int crypto_ecies_open(uint8_t *out, const struct crypto_seckey *sk, const uint8_t *aad, size_t aad_len,
                      const uint8_t *ct, size_t ct_len)
{
    struct crypto_pubkey eph_pk;
    secp256k1_pubkey point;
    uint8_t key[CRYPTO_AEAD_KEY_BYTES];
    uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES];
    size_t body_len;
    int rc;

    if (ct_len < CRYPTO_ECIES_OVERHEAD)
        return -BEX_EDECODE;
    body_len = ct_len - CRYPTO_PUB_BYTES - CRYPTO_AEAD_NONCE_BYTES;
    if (body_len - CRYPTO_AEAD_TAG_BYTES > CRYPTO_AEAD_BYTES_MAX)
        return -BEX_ELIMIT;
    /* Copy the header first: out may overlap ct. */
    memcpy(eph_pk.b, ct, CRYPTO_PUB_BYTES);
    memcpy(nonce, ct + CRYPTO_PUB_BYTES, CRYPTO_AEAD_NONCE_BYTES);
    /* An ephemeral key that is not a point can only come from tampering. */
    if (parse_pub(&point, &eph_pk) != 0) {
        rc = -BEX_ECRYPTO;
        goto fail;
    }
    if ((rc = ecies_key(key, &point, sk->b, eph_pk.b)) != 0)
        goto fail;
    rc = crypto_aead_open(out, key, nonce, aad, aad_len, ct + CRYPTO_PUB_BYTES + CRYPTO_AEAD_NONCE_BYTES, body_len);
fail:
    if (rc != 0)
        OPENSSL_cleanse(out, body_len - CRYPTO_AEAD_TAG_BYTES);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* ---- hex ---- */

int crypto_hex_encode(char *out, size_t out_size, const uint8_t *b, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    if (out_size == 0 || len > (out_size - 1) / 2)
        return -BEX_ELIMIT;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 0xf];
    }
    out[2 * len] = '\0';
    return 0;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int crypto_hex_decode(uint8_t *out, size_t out_size, size_t *out_len, const char *hex)
{
    size_t n = strlen(hex);

    *out_len = 0;
    if (n % 2 != 0)
        return -BEX_EDECODE;
    if (n / 2 > out_size)
        return -BEX_ELIMIT;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(hex[2 * i]);
        int lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -BEX_EDECODE;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *out_len = n / 2;
    return 0;
}
