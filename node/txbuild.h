/*
 * txbuild.h: building and signing transactions, for bexctl, the owner's
 * release service and tests. The signed bytes are the encoded TxBody exactly
 * as carried in Tx.body; the tx id is their SHA-256.
 */
#ifndef BEX_TXBUILD_H
#define BEX_TXBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "bex.h"
#include "crypto.h"

#define TXBUILD_SIGNERS_MAX 16

struct txbuild {
    const char *chain_id;
    const char *sender;
    uint64_t nonce;
    const char *contract;
    const char *method;
    const uint8_t *args; /* encoded argument message */
    size_t args_len;
    uint64_t timestamp_ms;
};

/*
 * Encodes t as a TxBody, signs SHA-256 of it with every key (1..16), and
 * returns the encoded Tx in *out (malloc'd; the caller frees it) and its id.
 * Errors: -BEX_EINVAL (no or too many keys, NULL field), -BEX_ENOMEM,
 * -BEX_ECRYPTO (signing failed).
 */
BEX_MUST_USE int txbuild_sign(uint8_t **out, size_t *out_len, uint8_t id[CRYPTO_HASH_BYTES], const struct txbuild *t,
                              const struct crypto_seckey *keys, size_t keys_n);

#endif
