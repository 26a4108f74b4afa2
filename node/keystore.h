/*
 * keystore.h: secp256k1 secret keys at rest, encrypted under a passphrase.
 *
 * A keystore is a small JSON file that never holds the secret key in clear:
 *
 *   { "version": 1, "kind": "secp256k1",
 *     "public_key": "<33-byte hex>", "key_id": "<40 hex>",
 *     "kdf": "scrypt", "scrypt_log2_n": 15, "scrypt_r": 8, "scrypt_p": 1,
 *     "salt": "<32-byte hex>", "cipher": "aes-256-gcm",
 *     "nonce": "<12-byte hex>", "ciphertext": "<48-byte hex>" }
 *
 * The passphrase and salt give a 32-byte key through scrypt; the secret key
 * is sealed with AES-256-GCM under it, with the public key as associated data,
 * so neither the ciphertext nor the public key can be swapped unnoticed.
 *
 * Every function reports detail in err (err_size bytes, NUL-terminated,
 * naming the file); err may be NULL when err_size is 0. Reading and writing
 * a secret key needs crypto_init().
 */
#ifndef BEX_KEYSTORE_H
#define BEX_KEYSTORE_H

#include "bex.h"
#include "crypto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYSTORE_VERSION 1
/* scrypt cost N = 2^log2_n, r = 8, p = 1: 32 MiB and about 0.1 s by default. */
#define KEYSTORE_SCRYPT_LOG2N_DEFAULT 15
/* Tests and throw-away testnets may write cheaper files, but not trivial ones. */
#define KEYSTORE_SCRYPT_LOG2N_MIN 10
#define KEYSTORE_SCRYPT_LOG2N_MAX 20
#define KEYSTORE_SCRYPT_R 8
#define KEYSTORE_SCRYPT_P 1
/* A file read may name other r and p, but never make scrypt use more memory
 * than this (128 * r * (N + p + 2) bytes). */
#define KEYSTORE_SCRYPT_MEM_MAX ((uint64_t)1280 << 20)
#define KEYSTORE_SALT_BYTES 32
/* A keystore is about 500 bytes; anything much larger is not one. */
#define KEYSTORE_FILE_BYTES_MAX 4096
/* Longest passphrase accepted, excluding the terminating NUL. */
#define KEYSTORE_PASSPHRASE_MAX 1023
/* The environment variable that supplies a passphrase non-interactively. */
#define KEYSTORE_PASSPHRASE_ENV "BEX_PASSPHRASE"

_Static_assert(KEYSTORE_SCRYPT_LOG2N_MIN <= KEYSTORE_SCRYPT_LOG2N_DEFAULT &&
                   KEYSTORE_SCRYPT_LOG2N_DEFAULT <= KEYSTORE_SCRYPT_LOG2N_MAX,
               "default scrypt cost within bounds");
_Static_assert(((uint64_t)128 * KEYSTORE_SCRYPT_R * ((1u << KEYSTORE_SCRYPT_LOG2N_MAX) + KEYSTORE_SCRYPT_P + 2)) <=
                   KEYSTORE_SCRYPT_MEM_MAX,
               "the costliest file we write must be readable");

/* keystore_write() flags. */
enum keystore_flags {
    KEYSTORE_REPLACE = 1 << 0, /* replace an existing file instead of failing */
};

/*
 * Encrypts sk under passphrase and writes the keystore to path with mode
 * 0600, atomically: a temporary file in the same directory is written,
 * synced and then renamed (or, without KEYSTORE_REPLACE, linked, so an
 * existing file is never overwritten even by a concurrent writer).
 * scrypt_log2_n is within [KEYSTORE_SCRYPT_LOG2N_MIN, KEYSTORE_SCRYPT_LOG2N_MAX].
 * Returns 0, -BEX_EINVAL (bad key, empty passphrase, cost out of range),
 * -BEX_EEXIST (path exists and no KEYSTORE_REPLACE), -BEX_ECRYPTO, -BEX_ENOMEM
 * or -BEX_EIO.
 */
BEX_MUST_USE int keystore_write(const char *path, const struct crypto_seckey *sk, const char *passphrase,
                                int scrypt_log2_n, unsigned flags, char *err, size_t err_size);

/*
 * Reads and decrypts the keystore at path. On success sk and pk hold the key
 * pair; on failure sk is wiped.
 * Returns 0, -BEX_EPASSPHRASE when the passphrase is wrong (or the sealed
 * bytes were altered, which cannot be told apart), -BEX_EDECODE when the file
 * is not a well-formed keystore, -BEX_EIO when it cannot be read, -BEX_ENOMEM
 * or -BEX_ECRYPTO.
 */
BEX_MUST_USE int keystore_read(struct crypto_seckey *sk, struct crypto_pubkey *pk, const char *path,
                               const char *passphrase, char *err, size_t err_size);

/*
 * Reads only the public key of the keystore at path, without a passphrase.
 * The public key is authenticated only when the file is decrypted.
 * Returns 0, -BEX_EDECODE, -BEX_EIO or -BEX_ENOMEM.
 */
BEX_MUST_USE int keystore_read_public(struct crypto_pubkey *pk, const char *path, char *err, size_t err_size);

/*
 * Gets a passphrase into buf (size bytes, NUL-terminated): from the
 * BEX_PASSPHRASE environment variable when it is set, otherwise from the
 * controlling terminal with echo off, showing prompt. With confirm the
 * terminal is asked twice and both answers must match.
 * Returns 0, -BEX_EINVAL (empty, or the two answers differ), -BEX_ELIMIT (it
 * does not fit in buf), or -BEX_EIO (no terminal and no BEX_PASSPHRASE).
 * On failure buf is wiped.
 */
BEX_MUST_USE int keystore_passphrase(char *buf, size_t size, const char *prompt, bool confirm, char *err,
                                     size_t err_size);

/*
 * Reads a passphrase from the file at path into buf: the whole file, minus
 * one trailing newline ("\n" or "\r\n").
 * Returns 0, -BEX_EINVAL (empty or containing a NUL byte), -BEX_ELIMIT, or
 * -BEX_EIO. On failure buf is wiped.
 */
BEX_MUST_USE int keystore_passphrase_file(char *buf, size_t size, const char *path, char *err, size_t err_size);

#endif
