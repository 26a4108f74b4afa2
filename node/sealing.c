/*
 * sealing.c: record cryptography (see sealing.h for the formats).
 */
#include "sealing.h"

#include "contract.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* The formats must fit what the record, access and verify contracts accept. */
_Static_assert(SEALING_CT_BYTES_MAX == CONTRACT_CIPHERTEXT_BYTES_MAX, "ciphertext bound of the record contract");
_Static_assert(SEALING_CT_OVERHEAD == CONTRACT_CIPHERTEXT_BYTES_MIN, "an empty value is the smallest ciphertext");
_Static_assert(SEALING_WRAPPED_BYTES >= CONTRACT_WRAPPED_KEY_BYTES_MIN &&
                   SEALING_WRAPPED_BYTES <= CONTRACT_WRAPPED_KEY_BYTES_MAX,
               "wrapped keys fit the contracts' bounds");
_Static_assert(SEALING_CLAIM_VALUE_BYTES_MAX + SEALING_CLAIM_OVERHEAD == CONTRACT_CLAIM_BYTES_MAX,
               "claim bound of the verify contract");
_Static_assert(CRYPTO_HASH_BYTES == CONTRACT_RECORD_KEY_BYTES, "key hashes are the contract's record keys");

static const char index_salt[] = "bex-index-v1";
static const char label_field_key[] = "bex-field-key-v1";
static const char label_claim[] = "bex-claim-v1";
static const char label_index_share[] = "bex-index-share-v1";

/* The longest associated data: a label, four names and a record key, with separators. */
#define AAD_BYTES_MAX (32 + 4 * SEALING_NAME_BYTES_MAX + SEALING_RECORD_KEY_BYTES_MAX + 8)

struct aad {
    uint8_t b[AAD_BYTES_MAX];
    size_t len;
};

static bool name_ok(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, SEALING_NAME_BYTES_MAX + 1);
    return n > 0 && n <= SEALING_NAME_BYTES_MAX;
}

/* Appends a NUL separator (unless a is empty) and then len bytes. */
static void aad_put(struct aad *a, const void *p, size_t len)
{
    BEX_ASSERT(a->len + 1 + len <= sizeof(a->b));
    if (a->len > 0)
        a->b[a->len++] = 0;
    memcpy(a->b + a->len, p, len);
    a->len += len;
}

static int aad_name(struct aad *a, const char *s)
{
    if (!name_ok(s))
        return -BEX_EINVAL;
    aad_put(a, s, strlen(s));
    return 0;
}

/*
 * Builds [label ||] resource || key || field [|| consumer], each joined by
 * a NUL. label and consumer may be NULL to leave them out.
 */
static int aad_ref(struct aad *a, const char *label, const struct sealing_ref *ref, const char *consumer)
{
    int rc;
    a->len = 0;
    if (label != NULL)
        aad_put(a, label, strlen(label));
    if ((rc = aad_name(a, ref->resource)) != 0)
        return rc;
    if (ref->key == NULL || ref->key_len == 0 || ref->key_len > SEALING_RECORD_KEY_BYTES_MAX)
        return -BEX_EINVAL;
    aad_put(a, ref->key, ref->key_len);
    if ((rc = aad_name(a, ref->field)) != 0)
        return rc;
    if (consumer != NULL && (rc = aad_name(a, consumer)) != 0)
        return rc;
    BEX_ASSERT(a->len > ref->key_len);
    return 0;
}

static int aad_share(struct aad *a, const char *resource, const char *consumer)
{
    int rc;
    a->len = 0;
    aad_put(a, label_index_share, strlen(label_index_share));
    if ((rc = aad_name(a, resource)) != 0 || (rc = aad_name(a, consumer)) != 0)
        return rc;
    return 0;
}

/* ---- index keys ---- */

int sealing_index_key(uint8_t out[SEALING_KEY_BYTES], const struct crypto_seckey *owner_enc_sk, const char *resource)
{
    if (!name_ok(resource))
        return -BEX_EINVAL;
    return crypto_hkdf_sha256(out, SEALING_KEY_BYTES, owner_enc_sk->b, sizeof(owner_enc_sk->b),
                              (const uint8_t *)index_salt, sizeof(index_salt) - 1, (const uint8_t *)resource,
                              strlen(resource));
}

void sealing_key_hash(uint8_t out[CRYPTO_HASH_BYTES], const uint8_t index_key[SEALING_KEY_BYTES],
                      const void *record_key, size_t len)
{
    crypto_hmac_sha256(out, index_key, SEALING_KEY_BYTES, record_key, len);
}

int sealing_index_wrap(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_pubkey *consumer_enc_pub,
                       const char *resource, const char *consumer, const uint8_t index_key[SEALING_KEY_BYTES])
{
    struct aad a;
    int rc = aad_share(&a, resource, consumer);
    if (rc != 0)
        return rc;
    return crypto_ecies_seal(out, consumer_enc_pub, a.b, a.len, index_key, SEALING_KEY_BYTES);
}

int sealing_index_share(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_seckey *owner_enc_sk,
                        const struct crypto_pubkey *consumer_enc_pub, const char *resource, const char *consumer)
{
    uint8_t key[SEALING_KEY_BYTES];
    int rc = sealing_index_key(key, owner_enc_sk, resource);
    if (rc == 0)
        rc = sealing_index_wrap(out, consumer_enc_pub, resource, consumer, key);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int sealing_index_unwrap(uint8_t index_key[SEALING_KEY_BYTES], const struct crypto_seckey *consumer_enc_sk,
                         const char *resource, const char *consumer, const uint8_t *wrapped, size_t wrapped_len)
{
    struct aad a;
    int rc = aad_share(&a, resource, consumer);
    if (rc == 0 && wrapped_len != SEALING_WRAPPED_BYTES)
        rc = -BEX_EDECODE;
    if (rc == 0)
        rc = crypto_ecies_open(index_key, consumer_enc_sk, a.b, a.len, wrapped, wrapped_len);
    if (rc != 0)
        OPENSSL_cleanse(index_key, SEALING_KEY_BYTES);
    return rc;
}

/* ---- field values ---- */

int sealing_key_wrap(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_pubkey *to,
                     const struct sealing_ref *ref, const uint8_t key[SEALING_KEY_BYTES])
{
    struct aad a;
    int rc = aad_ref(&a, label_field_key, ref, NULL);
    if (rc != 0)
        return rc;
    return crypto_ecies_seal(out, to, a.b, a.len, key, SEALING_KEY_BYTES);
}

int sealing_key_unwrap(uint8_t key[SEALING_KEY_BYTES], const struct crypto_seckey *sk, const struct sealing_ref *ref,
                       const uint8_t *wrapped, size_t wrapped_len)
{
    struct aad a;
    int rc = aad_ref(&a, label_field_key, ref, NULL);
    if (rc == 0 && wrapped_len != SEALING_WRAPPED_BYTES)
        rc = -BEX_EDECODE;
    if (rc == 0)
        rc = crypto_ecies_open(key, sk, a.b, a.len, wrapped, wrapped_len);
    if (rc != 0)
        OPENSSL_cleanse(key, SEALING_KEY_BYTES);
    return rc;
}

int sealing_field_seal(uint8_t *ct, uint8_t wrapped[SEALING_WRAPPED_BYTES], const struct crypto_pubkey *owner_enc_pub,
                       const struct sealing_ref *ref, const uint8_t *value, size_t value_len)
{
    uint8_t key[SEALING_KEY_BYTES];
    struct aad a;
    int rc;

    if (value_len > SEALING_VALUE_BYTES_MAX)
        return -BEX_ELIMIT;
    if (value == NULL && value_len > 0)
        return -BEX_EINVAL;
    if ((rc = aad_ref(&a, NULL, ref, NULL)) != 0)
        return rc;
    /* A fresh key per value, so the random nonce never meets a second message. */
    if ((rc = crypto_random(key, sizeof(key))) != 0 || (rc = crypto_random(ct, CRYPTO_AEAD_NONCE_BYTES)) != 0)
        goto done;
    if ((rc = crypto_aead_seal(ct + CRYPTO_AEAD_NONCE_BYTES, key, ct, a.b, a.len, value, value_len)) != 0)
        goto done;
    rc = sealing_key_wrap(wrapped, owner_enc_pub, ref, key);
done:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int sealing_rewrap(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_seckey *owner_enc_sk,
                   const struct crypto_pubkey *consumer_enc_pub, const struct sealing_ref *ref,
                   const uint8_t *wrapped, size_t wrapped_len)
{
    uint8_t key[SEALING_KEY_BYTES];
    int rc = sealing_key_unwrap(key, owner_enc_sk, ref, wrapped, wrapped_len);
    if (rc == 0)
        rc = sealing_key_wrap(out, consumer_enc_pub, ref, key);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int sealing_value_open(uint8_t *value, size_t value_size, size_t *value_len, const uint8_t key[SEALING_KEY_BYTES],
                       const struct sealing_ref *ref, const uint8_t *ct, size_t ct_len)
{
    struct aad a;
    int rc = aad_ref(&a, NULL, ref, NULL);
    if (rc != 0)
        return rc;
    if (ct_len < SEALING_CT_OVERHEAD || ct_len > SEALING_CT_BYTES_MAX)
        return -BEX_EDECODE;
    size_t n = ct_len - SEALING_CT_OVERHEAD;
    if (n > value_size)
        return -BEX_ELIMIT;
    rc = crypto_aead_open(value, key, ct, a.b, a.len, ct + CRYPTO_AEAD_NONCE_BYTES, ct_len - CRYPTO_AEAD_NONCE_BYTES);
    if (rc != 0)
        return rc;
    *value_len = n;
    return 0;
}

int sealing_field_open(uint8_t *value, size_t value_size, size_t *value_len, const struct crypto_seckey *sk,
                       const struct sealing_ref *ref, const uint8_t *wrapped, size_t wrapped_len, const uint8_t *ct,
                       size_t ct_len)
{
    uint8_t key[SEALING_KEY_BYTES];
    int rc = sealing_key_unwrap(key, sk, ref, wrapped, wrapped_len);
    if (rc == 0)
        rc = sealing_value_open(value, value_size, value_len, key, ref, ct, ct_len);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* ---- claims ---- */

int sealing_claim_seal(uint8_t *out, const struct crypto_pubkey *owner_enc_pub, const struct sealing_ref *ref,
                       const char *consumer, const uint8_t *value, size_t value_len)
{
    struct aad a;
    int rc;
    if (value_len > SEALING_CLAIM_VALUE_BYTES_MAX)
        return -BEX_ELIMIT;
    /* The verify contract wants a claim with content. */
    if (value == NULL || value_len == 0)
        return -BEX_EINVAL;
    if ((rc = aad_ref(&a, label_claim, ref, consumer)) != 0)
        return rc;
    return crypto_ecies_seal(out, owner_enc_pub, a.b, a.len, value, value_len);
}

int sealing_claim_open(uint8_t *value, size_t value_size, size_t *value_len, const struct crypto_seckey *owner_enc_sk,
                       const struct sealing_ref *ref, const char *consumer, const uint8_t *claim, size_t claim_len)
{
    struct aad a;
    int rc = aad_ref(&a, label_claim, ref, consumer);
    if (rc != 0)
        return rc;
    if (claim_len <= SEALING_CLAIM_OVERHEAD || claim_len > SEALING_CLAIM_OVERHEAD + SEALING_CLAIM_VALUE_BYTES_MAX)
        return -BEX_EDECODE;
    size_t n = claim_len - SEALING_CLAIM_OVERHEAD;
    if (n > value_size)
        return -BEX_ELIMIT;
    if ((rc = crypto_ecies_open(value, owner_enc_sk, a.b, a.len, claim, claim_len)) != 0)
        return rc;
    *value_len = n;
    return 0;
}

int sealing_claim_check(bool *match, const struct crypto_seckey *owner_enc_sk, const struct sealing_ref *ref,
                        const char *consumer, const uint8_t *claim, size_t claim_len, const uint8_t *wrapped,
                        size_t wrapped_len, const uint8_t *ct, size_t ct_len)
{
    uint8_t claimed[SEALING_CLAIM_VALUE_BYTES_MAX];
    size_t claimed_len = 0, actual_len = 0;
    uint8_t *actual = NULL;
    size_t actual_size = ct_len > SEALING_CT_OVERHEAD ? ct_len - SEALING_CT_OVERHEAD : 1;
    int rc;

    *match = false;
    if ((rc = sealing_claim_open(claimed, sizeof(claimed), &claimed_len, owner_enc_sk, ref, consumer, claim,
                                 claim_len)) != 0)
        goto done;
    if (ct_len > SEALING_CT_BYTES_MAX) {
        rc = -BEX_EDECODE;
        goto done;
    }
    if ((actual = malloc(actual_size)) == NULL) {
        rc = -BEX_ENOMEM;
        goto done;
    }
    if ((rc = sealing_field_open(actual, actual_size, &actual_len, owner_enc_sk, ref, wrapped, wrapped_len, ct,
                                 ct_len)) != 0)
        goto done;
    /* Only the lengths may leak through timing, never where the values differ. */
    *match = claimed_len == actual_len && crypto_memeq(claimed, actual, claimed_len);
done:
    OPENSSL_cleanse(claimed, sizeof(claimed));
    if (actual != NULL) {
        OPENSSL_cleanse(actual, actual_size);
        free(actual);
    }
    return rc;
}
