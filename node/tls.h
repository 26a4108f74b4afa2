/*
 * tls.h: the TLS 1.3 layer of the node-to-node links.
 *
 * Node keys are Ed25519 (TLS 1.3 does not sign with secp256k1). A node key is
 * stored as an encrypted PKCS#8 PEM file (PBES2: PBKDF2-HMAC-SHA256 and
 * AES-256-CBC) with mode 0600. The genesis lists the raw 32-byte public key of
 * every node; that key, not any certificate authority, is what a peer is
 * checked against.
 *
 * A struct tls_ctx holds the node key and a self-signed certificate made for
 * it in memory at start. The certificate is only a carrier for the key: its
 * names, dates and signature are never trusted. TLS 1.3 proves that the peer
 * holds the private key of the certificate it presents (CertificateVerify),
 * and the caller's verify function decides whether that key is acceptable.
 *
 * A struct tls_conn is one TLS session over memory buffers, with no socket:
 * the caller feeds it ciphertext from the network, takes the ciphertext it
 * produces and sends it, and reads and writes plaintext. Both sides present
 * a certificate (the server requires one) and only TLS 1.3 is spoken.
 *
 * Everything here is single-threaded per object; OpenSSL's per-thread error
 * queue is cleared around each call.
 */
#ifndef BEX_TLS_H
#define BEX_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bex.h"

#define TLS_PUBKEY_BYTES 32

/* PBKDF2-HMAC-SHA256 iterations of a stored key (OWASP 2023 guidance). */
#define TLS_KEY_KDF_ITER 600000

/*
 * TLS 1.3 record sizes: one record carries at most TLS_RECORD_PLAIN_MAX
 * plaintext bytes and adds TLS_RECORD_OVERHEAD (5 header, 1 content type,
 * 16 AEAD tag) with the cipher suites a tls_ctx allows. So a write of n bytes
 * becomes at most n + TLS_RECORD_OVERHEAD * (n / TLS_RECORD_PLAIN_MAX + 1)
 * bytes of ciphertext.
 */
#define TLS_RECORD_PLAIN_MAX 16384
#define TLS_RECORD_OVERHEAD 22

/* The longest error text a tls_conn keeps, including the terminating NUL. */
#define TLS_ERROR_BYTES 160

struct tls_key;
struct tls_ctx;
struct tls_conn;

/*
 * Decides whether a peer whose certificate carries the Ed25519 public key
 * `pubkey` may complete the handshake: returns 0 to accept it, a negative
 * BEX_E* code to refuse it (the handshake then fails with -BEX_EPERM).
 * Called once per handshake, from inside tls_conn_handshake().
 */
typedef int (*tls_verify_fn)(const uint8_t pubkey[TLS_PUBKEY_BYTES], void *ud);

/* ---------------------------------------------------------------- keys */

/*
 * Makes a new random Ed25519 key in memory. Free it with tls_key_free().
 * Returns 0, -BEX_ENOMEM or -BEX_ECRYPTO.
 */
BEX_MUST_USE int tls_key_new(struct tls_key **out);

/*
 * Writes `key` to `path` as an encrypted PKCS#8 PEM file with mode 0600.
 * The passphrase must not be empty. An existing file is never overwritten.
 * Returns 0, -BEX_EINVAL (empty passphrase), -BEX_EEXIST (path exists),
 * -BEX_EIO, -BEX_ENOSPC, -BEX_ENOMEM or -BEX_ECRYPTO. On failure no file is
 * left behind.
 */
BEX_MUST_USE int tls_key_save(const struct tls_key *key, const char *path,
                              const char *passphrase);

/*
 * Generates a new Ed25519 key and writes it to `path` as tls_key_save() does.
 * Returns what tls_key_new() and tls_key_save() return.
 */
BEX_MUST_USE int tls_keygen(const char *path, const char *passphrase);

/*
 * Reads an encrypted PKCS#8 PEM Ed25519 key from `path`. Unencrypted keys
 * and other key types are refused. Returns 0, -BEX_ENOTFOUND (no such
 * file), -BEX_EIO, -BEX_EDECODE (not an encrypted PKCS#8 PEM file),
 * -BEX_EPASSPHRASE (wrong passphrase), -BEX_EINVAL (not an Ed25519 key) or
 * -BEX_ENOMEM.
 */
BEX_MUST_USE int tls_key_load(struct tls_key **out, const char *path, const char *passphrase);

/* Frees a key and wipes its secret. Accepts NULL. */
void tls_key_free(struct tls_key *key);

/* Writes the raw 32-byte Ed25519 public key of `key` to `out`. */
void tls_pubkey_raw(const struct tls_key *key, uint8_t out[TLS_PUBKEY_BYTES]);

/* ---------------------------------------------------------------- contexts */

/*
 * Makes a TLS 1.3 context for `key` with a fresh self-signed certificate.
 * The context keeps its own reference to the key: `key` may be freed
 * afterwards. Returns 0, -BEX_ENOMEM or -BEX_ECRYPTO.
 */
BEX_MUST_USE int tls_ctx_new(struct tls_ctx **out, const struct tls_key *key);

/* Frees a context. Accepts NULL. Every tls_conn made from it must be freed first. */
void tls_ctx_free(struct tls_ctx *ctx);

/* ---------------------------------------------------------------- sessions */

/*
 * Starts a session: the client side if `server` is false. `verify` (with
 * `ud`) judges the peer's key during the handshake; a peer without a
 * certificate is always refused. Returns 0 or -BEX_ENOMEM.
 */
BEX_MUST_USE int tls_conn_new(struct tls_conn **out, struct tls_ctx *ctx, bool server,
                              tls_verify_fn verify, void *ud);

/* Frees a session. Accepts NULL. */
void tls_conn_free(struct tls_conn *c);

/*
 * Hands `len` bytes received from the network to the session. The bytes are
 * copied; call tls_conn_handshake() or tls_conn_read() next to consume them.
 * Returns 0 or -BEX_ENOMEM.
 */
BEX_MUST_USE int tls_conn_feed(struct tls_conn *c, const uint8_t *in, size_t len);

/*
 * Advances the handshake with what has been fed so far and sets *done once
 * it has completed (the peer's key was accepted). Output for the peer may be
 * waiting afterwards (tls_conn_out_pending()). Returns 0, -BEX_EPERM if the
 * verify function refused the peer's key, or -BEX_ECRYPTO for any other
 * failure (garbage, a protocol older than TLS 1.3, a missing certificate,
 * an alert from the peer); tls_conn_error() then says why.
 */
BEX_MUST_USE int tls_conn_handshake(struct tls_conn *c, bool *done);

/*
 * Reads decrypted bytes into `out` (at most `out_len`) and sets *n to their
 * number; *n is 0 when more input is needed. Only valid once the handshake
 * has completed. Returns 0, -BEX_ECLOSED when the peer closed the session
 * cleanly (close_notify), or -BEX_ECRYPTO for a corrupt record or an alert.
 */
BEX_MUST_USE int tls_conn_read(struct tls_conn *c, uint8_t *out, size_t out_len, size_t *n);

/*
 * Encrypts `len` bytes for the peer; the ciphertext waits for
 * tls_conn_take(). Only valid once the handshake has completed. Returns 0,
 * -BEX_ESTATE before the handshake completed, -BEX_ENOMEM or -BEX_ECRYPTO.
 */
BEX_MUST_USE int tls_conn_write(struct tls_conn *c, const uint8_t *in, size_t len);

/* Returns the number of ciphertext bytes waiting to be sent to the peer. */
size_t tls_conn_out_pending(const struct tls_conn *c);

/*
 * Moves up to `out_len` waiting ciphertext bytes into `out` and returns how
 * many it moved. Memory the session held for a burst of output is released
 * once all of it has been taken.
 */
size_t tls_conn_take(struct tls_conn *c, uint8_t *out, size_t out_len);

/*
 * Writes the peer's raw Ed25519 public key to `out`. Returns 0, or
 * -BEX_ESTATE before the handshake accepted a key.
 */
BEX_MUST_USE int tls_conn_peer_key(const struct tls_conn *c, uint8_t out[TLS_PUBKEY_BYTES]);

/* Returns the text of the last failure of this session ("" if none). */
const char *tls_conn_error(const struct tls_conn *c);

#endif
