/*
 * txcheck.h: admission checks of a transaction, done once per tx per node.
 *
 * txcheck_tx() takes an encoded bex.Tx as it arrives from the RPC, from a
 * peer's gossip or inside a block proposal, and decides whether it may enter
 * the pipeline: size, decoding with bounded fields, chain id, a known sender,
 * signatures by distinct keys registered to that sender which verify over
 * SHA-256(body), and a nonce above the sender's committed last nonce but not
 * absurdly far ahead. On success it returns the tx id and the verified signer
 * keys; the contract runtime receives those and never verifies again.
 *
 * Signature verification is by far the most expensive step, so its outcome
 * is remembered in a bounded cache keyed by tx id together with a digest of
 * the exact encoded tx: a gossip duplicate, or a proposal carrying a tx this
 * node already admitted, is not verified twice. The cache holds one encoding
 * per id (the latest verified) and replaces entries by CLOCK. Size it above
 * the mempool's count so every pooled tx stays cached. txcheck_tx() checks
 * everything that depends on state (registered keys, nonce) on every call,
 * because state moves between two calls for the same tx; txcheck_tx_signed()
 * trusts a cache hit for the registered keys too, which holds while the keys
 * are fixed by the genesis (they are: see tc_keys in node.c).
 *
 * Hashing and verification come in through a table of function pointers
 * (struct txcheck_crypto), and state through two callbacks, so this module
 * depends on neither the crypto module nor the store. A struct txcheck is not
 * thread-safe: use one per thread or serialize calls.
 */
#ifndef BEX_TXCHECK_H
#define BEX_TXCHECK_H

#include "bex.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TXCHECK_HASH_BYTES 32
#define TXCHECK_PUB_BYTES 33 /* compressed secp256k1 public key */
#define TXCHECK_SIG_BYTES 64 /* compact ECDSA signature */

/* At most this many signatures in one tx (an officer threshold fits well below). */
#define TXCHECK_SIGS_MAX 16
/* At most this many keys registered to one agency (officers plus node key). */
#define TXCHECK_KEYS_MAX 32
/* Longest chain id, sender (agency id), contract and method name, in bytes. */
#define TXCHECK_CHAIN_ID_BYTES_MAX 64
#define TXCHECK_SENDER_BYTES_MAX 64
#define TXCHECK_NAME_BYTES_MAX 32
/* Hard ceilings on the configuration, so a typo cannot disable a limit. */
#define TXCHECK_TX_BYTES_LIMIT ((size_t)16 << 20)
#define TXCHECK_CACHE_ENTRIES_LIMIT ((size_t)1 << 22)
/* Room for a reason text and its terminating NUL. */
#define TXCHECK_REASON_BYTES 160

_Static_assert(TXCHECK_SIGS_MAX <= TXCHECK_KEYS_MAX, "distinct signers must fit the key list");
_Static_assert(TXCHECK_REASON_BYTES > 2 * TXCHECK_SENDER_BYTES_MAX, "a reason can quote a sender");

/*
 * Hashing and signature verification, supplied by the node (the crypto
 * module) or by tests. Both must be pure functions of their inputs.
 * sha256 writes SHA-256(data[0..len)) to out.
 * verify returns 0 when sig is a valid compact signature of digest under the
 * compressed key pub, and a negative code (-BEX_ESIG) otherwise, including
 * when pub is not a point on the curve.
 */
struct txcheck_crypto {
    void (*sha256)(uint8_t out[TXCHECK_HASH_BYTES], const void *data, size_t len);
    int (*verify)(const uint8_t pub[TXCHECK_PUB_BYTES], const uint8_t digest[TXCHECK_HASH_BYTES],
                  const uint8_t sig[TXCHECK_SIG_BYTES]);
};

/* The public keys registered to one agency: officer keys and its node key. */
struct txcheck_keys {
    size_t count;
    uint8_t key[TXCHECK_KEYS_MAX][TXCHECK_PUB_BYTES];
};

/*
 * Fills keys with the keys registered to sender in committed state. Returns
 * 0, -BEX_EUNKNOWN when no agency has that id, or another negative code when
 * state cannot be read (the code is passed on to the caller of txcheck_tx).
 */
typedef int (*txcheck_keys_fn)(struct txcheck_keys *keys, const char *sender, void *user);

/*
 * Sets *last to the last nonce of sender consumed in committed state (0 when
 * the sender never sent a tx). Returns 0 or a negative code.
 */
typedef int (*txcheck_nonce_fn)(uint64_t *last, const char *sender, void *user);

struct txcheck_config {
    const char *chain_id;      /* copied; 1..TXCHECK_CHAIN_ID_BYTES_MAX bytes */
    size_t tx_bytes_max;       /* largest encoded Tx, 1..TXCHECK_TX_BYTES_LIMIT */
    size_t args_bytes_max;     /* largest TxBody.args, at most tx_bytes_max */
    uint64_t nonce_ahead_max;  /* a nonce may be at most last + this; >= 1 */
    size_t cache_entries;      /* verified-signature cache; 0 disables it */
    uint64_t hash_seed;        /* random per process, so cache buckets cannot be targeted */
    struct txcheck_crypto crypto;
    txcheck_keys_fn keys;
    txcheck_nonce_fn last_nonce;
    void *user;                /* passed to keys and last_nonce */
};

/* What txcheck_tx found out about one tx. */
struct txcheck_result {
    bool has_id;                       /* id is set (the body was extracted) */
    uint8_t id[TXCHECK_HASH_BYTES];    /* SHA-256 of the body bytes */
    char sender[TXCHECK_SENDER_BYTES_MAX + 1];
    uint64_t nonce;
    uint64_t last_nonce;               /* sender's committed last nonce when checked */
    size_t signer_count;               /* on success: number of verified signers */
    uint8_t signers[TXCHECK_SIGS_MAX][TXCHECK_PUB_BYTES]; /* in the order of Tx.sigs */
    bool cached;                       /* verification was skipped: a cache hit */
    char reason[TXCHECK_REASON_BYTES]; /* on failure: short text for the RPC */
};

/* Counters since txcheck_new(). rejected[] is indexed by positive BEX_E code. */
struct txcheck_stats {
    uint64_t accepted;
    uint64_t rejected[BEX_E_COUNT];
    uint64_t verifies;     /* calls to crypto.verify */
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint64_t cache_evictions;
};

struct txcheck;

/* ---- lifecycle ---- */

/*
 * Creates a checker. cfg is copied; cfg->user must outlive the checker.
 * Returns 0, -BEX_EINVAL for a configuration outside the limits above or a
 * missing function, or -BEX_ENOMEM.
 */
BEX_MUST_USE int txcheck_new(struct txcheck **out, const struct txcheck_config *cfg);

/* Frees a checker; NULL is accepted. */
void txcheck_free(struct txcheck *tc);

/* ---- operations ---- */

/*
 * Checks the encoded Tx tx[0..tx_len). res is always written: on failure
 * res->reason says why, and res->id is set when has_id is true.
 * Returns 0 when the tx is admissible, or
 *   -BEX_ELIMIT   tx too large, too many signatures, a field too long;
 *   -BEX_EDECODE  not a Tx, body not a canonically encoded TxBody, a field
 *                 outside its character set, a pubkey or sig of wrong size;
 *   -BEX_ECHAIN   chain id is not ours;
 *   -BEX_EUNKNOWN sender is not a registered agency;
 *   -BEX_ESIG     no signature, a key not registered to the sender, the same
 *                 key twice, or a signature that does not verify;
 *   -BEX_ENONCE   nonce already used, or more than nonce_ahead_max ahead;
 *   -BEX_ENOMEM, or a code returned by a state callback.
 * The checks do not consult any mempool: a tx already pending passes again.
 */
BEX_MUST_USE int txcheck_tx(struct txcheck *tc, struct txcheck_result *res, const uint8_t *tx, size_t tx_len);

/*
 * Like txcheck_tx() but without the nonce check: for the transactions of a
 * block proposal. With several blocks in flight, or after a view change, a
 * proposal may carry a tx whose nonce a block ahead of it already used; the
 * executor refuses that tx deterministically (an ENONCE receipt), so it must
 * not make the whole proposal invalid. Signatures are verified all the same.
 * Bytes that passed a check before (the cache holds their id and digest) pass
 * without being decoded again: then res has only has_id, id and cached set,
 * not the sender, nonce or signers.
 */
BEX_MUST_USE int txcheck_tx_signed(struct txcheck *tc, struct txcheck_result *res, const uint8_t *tx, size_t tx_len);

/* ---- queries ---- */

void txcheck_get_stats(const struct txcheck *tc, struct txcheck_stats *out);

/* Number of entries currently in the verified-signature cache. */
size_t txcheck_cache_count(const struct txcheck *tc);

#endif
