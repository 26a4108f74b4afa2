/*
 * crypto.h: the cryptography of bex, in one place for bexd and bexctl.
 *
 * secp256k1 (libsecp256k1) for keys, ECDSA signatures and ECDH; OpenSSL 3 for
 * randomness, SHA-256, HMAC, HKDF and AES-256-GCM. Keys, signatures and
 * digests are fixed-size value types the caller owns.
 *
 * Call crypto_init() once before any other function that needs the signing
 * context (key generation, signing, ECIES) and crypto_close() at exit. Between
 * the two, every function is safe to call from any thread. Functions that only
 * parse, hash or verify work without crypto_init().
 *
 * Secret inputs are never copied to places the caller does not see, and every
 * temporary holding secret material is wiped before returning, on every path.
 */
#ifndef BEX_CRYPTO_H
#define BEX_CRYPTO_H

#include "bex.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SEC_BYTES 32
#define CRYPTO_PUB_BYTES 33  /* compressed secp256k1 */
#define CRYPTO_SIG_BYTES 64  /* compact ECDSA, low-S */
#define CRYPTO_HASH_BYTES 32
#define CRYPTO_ID_HEX 40     /* node/agency key id: hex of first 20 bytes of SHA-256(pub) */
#define CRYPTO_PUB_HEX (2 * CRYPTO_PUB_BYTES)
#define CRYPTO_AEAD_KEY_BYTES 32
#define CRYPTO_AEAD_NONCE_BYTES 12
#define CRYPTO_AEAD_TAG_BYTES 16
#define CRYPTO_ECIES_OVERHEAD (33 + 12 + 16)
/* Largest plaintext or ciphertext the AEAD functions accept (OpenSSL counts in int). */
#define CRYPTO_AEAD_BYTES_MAX ((size_t)1 << 30)
/* RFC 5869: HKDF-SHA256 output is at most 255 blocks of 32 bytes. */
#define CRYPTO_HKDF_BYTES_MAX (255 * CRYPTO_HASH_BYTES)

_Static_assert(CRYPTO_ECIES_OVERHEAD == CRYPTO_PUB_BYTES + CRYPTO_AEAD_NONCE_BYTES + CRYPTO_AEAD_TAG_BYTES,
               "ECIES layout is eph_pub || nonce || ciphertext || tag");
_Static_assert(CRYPTO_ID_HEX % 2 == 0 && CRYPTO_ID_HEX / 2 <= CRYPTO_HASH_BYTES, "key id is a digest prefix");

struct crypto_seckey {
    uint8_t b[CRYPTO_SEC_BYTES];
};

struct crypto_pubkey {
    uint8_t b[CRYPTO_PUB_BYTES];
};

struct crypto_sig {
    uint8_t b[CRYPTO_SIG_BYTES];
};

/*
 * An incremental SHA-256. The storage is opaque; the caller owns it (stack or
 * struct member) and nothing is allocated, so no step can fail.
 */
struct crypto_sha256_ctx {
    uint64_t opaque[16];
};

/* ---- lifecycle ---- */

/*
 * Creates the process-wide secp256k1 signing context and randomizes it
 * (blinding against side channels), after a library self test. Calls nest:
 * each successful crypto_init() needs one crypto_close().
 * Returns 0, -BEX_ENOMEM, or -BEX_ECRYPTO when no randomness is available.
 */
BEX_MUST_USE int crypto_init(void);

/* Releases the context when the last crypto_init() is matched. No other
 * crypto call may run concurrently with the final crypto_close(). */
void crypto_close(void);

/* ---- randomness and small helpers ---- */

/* Fills out with len bytes from the OpenSSL CSPRNG. Returns 0 or -BEX_ECRYPTO. */
BEX_MUST_USE int crypto_random(uint8_t *out, size_t len);

/* Wipes len bytes at p in a way the compiler does not remove. */
void crypto_wipe(void *p, size_t len);

/* Compares in time independent of the contents. True when equal. */
bool crypto_memeq(const void *a, const void *b, size_t len);

/* ---- keys ---- */

/* Draws a fresh secret key and its public key. Needs crypto_init().
 * Returns 0 or -BEX_ECRYPTO. */
BEX_MUST_USE int crypto_keygen(struct crypto_seckey *sk, struct crypto_pubkey *pk);

/* Derives the compressed public key of sk. Needs crypto_init().
 * Returns 0 or -BEX_EINVAL when sk is zero or not below the group order. */
BEX_MUST_USE int crypto_pubkey_of(struct crypto_pubkey *pk, const struct crypto_seckey *sk);

/* Returns 0 when sk is a valid secret key, -BEX_EINVAL otherwise. */
BEX_MUST_USE int crypto_seckey_check(const struct crypto_seckey *sk);

/* Returns 0 when pk parses as a compressed point on the curve, -BEX_EINVAL otherwise. */
BEX_MUST_USE int crypto_pubkey_check(const struct crypto_pubkey *pk);

/*
 * Parses exactly CRYPTO_PUB_HEX hex digits into a valid public key.
 * Returns 0, -BEX_EDECODE when hex is not 66 hex digits, -BEX_EINVAL when
 * the bytes are not a point on the curve.
 */
BEX_MUST_USE int crypto_pubkey_from_hex(struct crypto_pubkey *pk, const char *hex);

/* Writes the 66 lowercase hex digits of pk and a terminating NUL. */
void crypto_pubkey_to_hex(char out[CRYPTO_PUB_HEX + 1], const struct crypto_pubkey *pk);

/* Writes the key id of pk: hex of the first 20 bytes of SHA-256(pk), NUL-terminated. */
void crypto_key_id(char out[CRYPTO_ID_HEX + 1], const struct crypto_pubkey *pk);

/* ---- hashing ---- */

/* out = SHA-256(data). */
void crypto_sha256(uint8_t out[CRYPTO_HASH_BYTES], const void *data, size_t len);

void crypto_sha256_init(struct crypto_sha256_ctx *c);
void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t len);
/* Writes the digest and wipes the context; init it again to reuse it. */
void crypto_sha256_final(struct crypto_sha256_ctx *c, uint8_t out[CRYPTO_HASH_BYTES]);

/* out = HMAC-SHA256(key, data) (RFC 2104). key may be NULL when key_len is 0. */
void crypto_hmac_sha256(uint8_t out[CRYPTO_HASH_BYTES], const uint8_t *key, size_t key_len, const void *data,
                        size_t len);

/*
 * HKDF-SHA256 (RFC 5869): extract with salt (an empty salt means 32 zero
 * bytes), then expand with info into out_len bytes.
 * Returns 0, -BEX_EINVAL when out_len is 0 or above CRYPTO_HKDF_BYTES_MAX,
 * or -BEX_ECRYPTO.
 */
BEX_MUST_USE int crypto_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
                                    const uint8_t *salt, size_t salt_len, const uint8_t *info, size_t info_len);

/* ---- signatures ---- */

/*
 * Signs a 32-byte digest with RFC 6979 deterministic nonces. The signature
 * is in compact form with low S (BIP 62), the only form crypto_verify()
 * accepts. Needs crypto_init(). Returns 0 or -BEX_EINVAL for an invalid sk.
 */
BEX_MUST_USE int crypto_sign(struct crypto_sig *sig, const struct crypto_seckey *sk,
                             const uint8_t digest[CRYPTO_HASH_BYTES]);

/*
 * Verifies sig over digest under pk. Returns 0 when valid, -BEX_ESIG when the
 * signature does not verify, is malformed, has a high S, or pk is not a
 * valid point.
 */
BEX_MUST_USE int crypto_verify(const struct crypto_pubkey *pk, const uint8_t digest[CRYPTO_HASH_BYTES],
                               const struct crypto_sig *sig);

/* ---- authenticated encryption ---- */

/*
 * AES-256-GCM. seal writes ciphertext || tag (pt_len + 16 bytes) to out;
 * open reads ct = ciphertext || tag and writes ct_len - 16 bytes to out.
 * out may be the same buffer as pt or ct (in place), but must not otherwise
 * overlap it. A nonce must never repeat under one key. aad may be NULL when
 * aad_len is 0.
 * seal returns 0, -BEX_ELIMIT above CRYPTO_AEAD_BYTES_MAX, or -BEX_ECRYPTO.
 * open returns 0, -BEX_EDECODE when ct is shorter than a tag, -BEX_ELIMIT,
 * or -BEX_ECRYPTO when the tag does not match (wrong key, nonce, aad or
 * tampered bytes); on failure out is wiped.
 */
BEX_MUST_USE int crypto_aead_seal(uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_BYTES],
                                  const uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES], const uint8_t *aad, size_t aad_len,
                                  const uint8_t *pt, size_t pt_len);
BEX_MUST_USE int crypto_aead_open(uint8_t *out, const uint8_t key[CRYPTO_AEAD_KEY_BYTES],
                                  const uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES], const uint8_t *aad, size_t aad_len,
                                  const uint8_t *ct, size_t ct_len);

/*
 * ECIES to a secp256k1 public key: an ephemeral key pair, ECDH with the
 * recipient (the shared secret is the 32-byte x coordinate of the shared
 * point), HKDF-SHA256 with salt = ephemeral public key and info
 * "bex-ecies-v1" into an AES-256-GCM key, and a random nonce.
 * Layout: eph_pub(33) || nonce(12) || ciphertext || tag(16).
 *
 * seal: out holds pt_len + CRYPTO_ECIES_OVERHEAD bytes. Needs crypto_init().
 * Returns 0, -BEX_EINVAL when `to` is not a valid point, -BEX_ELIMIT, or
 * -BEX_ECRYPTO.
 * open: out holds ct_len - CRYPTO_ECIES_OVERHEAD bytes. Needs crypto_init().
 * Returns 0, -BEX_EDECODE when ct is shorter than the overhead, -BEX_ELIMIT,
 * or -BEX_ECRYPTO when the message was not sealed to sk with this aad or was
 * altered; on failure out is wiped.
 */
BEX_MUST_USE int crypto_ecies_seal(uint8_t *out, const struct crypto_pubkey *to, const uint8_t *aad,
                                   size_t aad_len, const uint8_t *pt, size_t pt_len);
BEX_MUST_USE int crypto_ecies_open(uint8_t *out, const struct crypto_seckey *sk, const uint8_t *aad,
                                   size_t aad_len, const uint8_t *ct, size_t ct_len);

/* ---- hex ---- */

/*
 * Writes 2 * len lowercase hex digits and a NUL to out.
 * Returns 0 or -BEX_ELIMIT when out_size < 2 * len + 1.
 */
BEX_MUST_USE int crypto_hex_encode(char *out, size_t out_size, const uint8_t *b, size_t len);

/*
 * Decodes a NUL-terminated string of hex digits (either case) into out and
 * sets *out_len. Returns 0, -BEX_EDECODE for an odd length or a non-hex
 * character, -BEX_ELIMIT when the bytes do not fit in out_size.
 */
BEX_MUST_USE int crypto_hex_decode(uint8_t *out, size_t out_size, size_t *out_len, const char *hex);

#endif
