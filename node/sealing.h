/*
 * sealing.h: the record cryptography of bex, for the publishing owner, the
 * owner's node (release, verify answers, index key sharing) and consumers.
 * Everything is built on crypto.h.
 *
 * Index key. Each owner has, per resource, a 32-byte index key derived from
 * its encryption secret key:
 *     index_key = HKDF-SHA256(ikm = enc secret key, salt = "bex-index-v1",
 *                             info = resource id)
 * The record key of a CONDITIONAL or NONE resource (a person, a vehicle)
 * never reaches the chain; the chain holds
 *     key hash = HMAC-SHA256(index_key, record key text)
 * and the owner shares the index key, ECIES-wrapped, with each consumer
 * whose grant is active, so that the consumer can name records it already
 * knows without the chain learning which.
 *
 * Field values. Each value is sealed under its own random 32-byte data key:
 *     ciphertext = nonce(12) || AES-256-GCM(value) || tag(16)
 * with associated data resource || 0x00 || record key || 0x00 || field,
 * where "record key" is the key as on chain (the key hash, or the key itself
 * for UNCONDITIONAL resources). The data key is ECIES-wrapped to the owner's
 * encryption key (wrapped key, SEALING_WRAPPED_BYTES), so only the owner's
 * node can release it: on an access it unwraps the key and wraps it again
 * for the consumer (sealing_rewrap). Both wraps use the associated data
 *     "bex-field-key-v1" || 0x00 || resource || 0x00 || record key || 0x00 || field
 * so a wrapped key cannot be moved to another record or field unnoticed.
 *
 * Claims. A consumer's claim about a field (verify mode) is ECIES-sealed to
 * the owner's encryption key with associated data
 *     "bex-claim-v1" || 0x00 || resource || 0x00 || record key || 0x00 || field
 *     || 0x00 || consumer
 * so that it cannot be replayed by another consumer or for another field.
 *
 * Index key shares use "bex-index-share-v1" || 0x00 || resource || 0x00 ||
 * consumer.
 *
 * Every name in associated data is a C string and so contains no NUL; the
 * record key (any bytes) always sits between a fixed number of NUL-free
 * names on each side, so each layout is unambiguous.
 *
 * Functions that seal or open need crypto_init() (crypto.h). Every temporary
 * holding a clear key or value is wiped before return, on every path. Names
 * are checked: resource, field and consumer are non-empty and at most
 * SEALING_NAME_BYTES_MAX bytes, a record key has 1 to
 * SEALING_RECORD_KEY_BYTES_MAX bytes; otherwise -BEX_EINVAL.
 */
#ifndef BEX_SEALING_H
#define BEX_SEALING_H

#include "bex.h"
#include "crypto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEALING_KEY_BYTES 32 /* data keys and index keys */
#define SEALING_WRAPPED_BYTES (SEALING_KEY_BYTES + CRYPTO_ECIES_OVERHEAD)
#define SEALING_CT_OVERHEAD (CRYPTO_AEAD_NONCE_BYTES + CRYPTO_AEAD_TAG_BYTES)
/* The record contract accepts ciphertexts of at most 64 KiB. */
#define SEALING_CT_BYTES_MAX (64 * 1024)
#define SEALING_VALUE_BYTES_MAX (SEALING_CT_BYTES_MAX - SEALING_CT_OVERHEAD)
/* The verify contract accepts sealed claims of at most 1024 + overhead bytes. */
#define SEALING_CLAIM_VALUE_BYTES_MAX 1024
#define SEALING_CLAIM_OVERHEAD CRYPTO_ECIES_OVERHEAD
#define SEALING_NAME_BYTES_MAX 256
#define SEALING_RECORD_KEY_BYTES_MAX 64

_Static_assert(SEALING_WRAPPED_BYTES == 93, "a wrapped key is eph_pub || nonce || key || tag");
_Static_assert(SEALING_CT_OVERHEAD == 28, "a sealed value is nonce || ciphertext || tag");

/* Which field of which record a value, key or claim belongs to. */
struct sealing_ref {
    const char *resource;  /* "<owner>/<name>" */
    const uint8_t *key;    /* the record key as on chain */
    size_t key_len;
    const char *field;
};

/* ---- index keys ---- */

/*
 * Derives the owner's index key of resource from its encryption secret key.
 * Deterministic: the same inputs always give the same key.
 * Returns 0, -BEX_EINVAL (bad name) or -BEX_ECRYPTO.
 */
BEX_MUST_USE int sealing_index_key(uint8_t out[SEALING_KEY_BYTES], const struct crypto_seckey *owner_enc_sk,
                                   const char *resource);

/* out = HMAC-SHA256(index_key, record_key): the record key as on chain. */
void sealing_key_hash(uint8_t out[CRYPTO_HASH_BYTES], const uint8_t index_key[SEALING_KEY_BYTES],
                      const void *record_key, size_t len);

/*
 * Wraps an index key for the consumer agency `consumer` under its
 * encryption public key (record.share_index). Needs crypto_init().
 * Returns 0, -BEX_EINVAL (bad name or key) or -BEX_ECRYPTO.
 */
BEX_MUST_USE int sealing_index_wrap(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_pubkey *consumer_enc_pub,
                                    const char *resource, const char *consumer,
                                    const uint8_t index_key[SEALING_KEY_BYTES]);

/*
 * The owner's side of sharing in one call: derives the index key of
 * resource and wraps it for consumer, wiping the clear key. Errors as
 * sealing_index_key() and sealing_index_wrap().
 */
BEX_MUST_USE int sealing_index_share(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_seckey *owner_enc_sk,
                                     const struct crypto_pubkey *consumer_enc_pub, const char *resource,
                                     const char *consumer);

/*
 * The consumer's side: unwraps an index key shared with it.
 * Returns 0, -BEX_EINVAL, -BEX_EDECODE (wrapped_len is not
 * SEALING_WRAPPED_BYTES) or -BEX_ECRYPTO (not wrapped for this key, resource
 * and consumer, or altered); on failure index_key is wiped.
 */
BEX_MUST_USE int sealing_index_unwrap(uint8_t index_key[SEALING_KEY_BYTES], const struct crypto_seckey *consumer_enc_sk,
                                      const char *resource, const char *consumer, const uint8_t *wrapped,
                                      size_t wrapped_len);

/* ---- field values ---- */

/*
 * Seals one field value for publishing: draws a data key and a nonce,
 * writes the ciphertext (value_len + SEALING_CT_OVERHEAD bytes) to ct and
 * the data key wrapped to the owner's encryption key to wrapped.
 * Returns 0, -BEX_EINVAL (bad name, or owner_enc_pub not a point),
 * -BEX_ELIMIT (value_len above SEALING_VALUE_BYTES_MAX) or -BEX_ECRYPTO.
 */
BEX_MUST_USE int sealing_field_seal(uint8_t *ct, uint8_t wrapped[SEALING_WRAPPED_BYTES],
                                    const struct crypto_pubkey *owner_enc_pub, const struct sealing_ref *ref,
                                    const uint8_t *value, size_t value_len);

/*
 * Wraps a data key to `to` (the owner when publishing, a consumer on
 * release) for the field named by ref. Returns 0, -BEX_EINVAL or -BEX_ECRYPTO.
 */
BEX_MUST_USE int sealing_key_wrap(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_pubkey *to,
                                  const struct sealing_ref *ref, const uint8_t key[SEALING_KEY_BYTES]);

/*
 * Unwraps a data key wrapped for sk for the field named by ref.
 * Returns 0, -BEX_EINVAL, -BEX_EDECODE (wrapped_len is not
 * SEALING_WRAPPED_BYTES) or -BEX_ECRYPTO; on failure key is wiped.
 */
BEX_MUST_USE int sealing_key_unwrap(uint8_t key[SEALING_KEY_BYTES], const struct crypto_seckey *sk,
                                    const struct sealing_ref *ref, const uint8_t *wrapped, size_t wrapped_len);

/*
 * The owner's node on an access: unwraps the data key the owner published
 * (wrapped for owner_enc_sk) and wraps it for the consumer, wiping the
 * clear key. Errors as sealing_key_unwrap() and sealing_key_wrap().
 */
BEX_MUST_USE int sealing_rewrap(uint8_t out[SEALING_WRAPPED_BYTES], const struct crypto_seckey *owner_enc_sk,
                                const struct crypto_pubkey *consumer_enc_pub, const struct sealing_ref *ref,
                                const uint8_t *wrapped, size_t wrapped_len);

/*
 * Opens a sealed value with its clear data key into value (value_size
 * bytes) and sets *value_len (ct_len - SEALING_CT_OVERHEAD).
 * Returns 0, -BEX_EINVAL, -BEX_EDECODE (ct shorter than the overhead or
 * longer than SEALING_CT_BYTES_MAX), -BEX_ELIMIT (value_size too small) or
 * -BEX_ECRYPTO (wrong key, field or record, or altered); on failure value is
 * wiped.
 */
BEX_MUST_USE int sealing_value_open(uint8_t *value, size_t value_size, size_t *value_len,
                                    const uint8_t key[SEALING_KEY_BYTES], const struct sealing_ref *ref,
                                    const uint8_t *ct, size_t ct_len);

/*
 * Unwraps the data key with sk (the owner's key and the wrapped key of the
 * record, or a consumer's key and the wrapped key of a release) and opens
 * the value, wiping the clear key. Errors as sealing_key_unwrap() and
 * sealing_value_open().
 */
BEX_MUST_USE int sealing_field_open(uint8_t *value, size_t value_size, size_t *value_len,
                                    const struct crypto_seckey *sk, const struct sealing_ref *ref,
                                    const uint8_t *wrapped, size_t wrapped_len, const uint8_t *ct, size_t ct_len);

/* ---- claims (verify mode) ---- */

/*
 * Seals a consumer's claimed value to the owner's encryption key: out holds
 * value_len + SEALING_CLAIM_OVERHEAD bytes.
 * Returns 0, -BEX_EINVAL, -BEX_ELIMIT (above SEALING_CLAIM_VALUE_BYTES_MAX)
 * or -BEX_ECRYPTO.
 */
BEX_MUST_USE int sealing_claim_seal(uint8_t *out, const struct crypto_pubkey *owner_enc_pub,
                                    const struct sealing_ref *ref, const char *consumer, const uint8_t *value,
                                    size_t value_len);

/*
 * Opens a claim with the owner's encryption secret key into value
 * (value_size bytes) and sets *value_len.
 * Returns 0, -BEX_EINVAL, -BEX_EDECODE (shorter than the overhead or longer
 * than a claim may be), -BEX_ELIMIT (value_size too small) or -BEX_ECRYPTO;
 * on failure value is wiped.
 */
BEX_MUST_USE int sealing_claim_open(uint8_t *value, size_t value_size, size_t *value_len,
                                    const struct crypto_seckey *owner_enc_sk, const struct sealing_ref *ref,
                                    const char *consumer, const uint8_t *claim, size_t claim_len);

/*
 * The owner's node answering a verification: opens the claim and the
 * published field (its Sealed wrapped key and ciphertext) and sets *match
 * when they are byte for byte equal, compared in constant time for equal
 * lengths. Clear values are wiped.
 * Returns 0, or the errors of sealing_claim_open() and sealing_field_open()
 * (the caller decides how to answer a claim that does not open), or
 * -BEX_ENOMEM.
 */
BEX_MUST_USE int sealing_claim_check(bool *match, const struct crypto_seckey *owner_enc_sk,
                                     const struct sealing_ref *ref, const char *consumer, const uint8_t *claim,
                                     size_t claim_len, const uint8_t *wrapped, size_t wrapped_len,
                                     const uint8_t *ct, size_t ct_len);

#endif
