#include "txbuild.h"

#include <stdlib.h>
#include <string.h>

#include "bex.pb-c.h"

int txbuild_sign(uint8_t **out, size_t *out_len, uint8_t id[CRYPTO_HASH_BYTES], const struct txbuild *t,
                 const struct crypto_seckey *keys, size_t keys_n)
{
    Bex__TxBody body = BEX__TX_BODY__INIT;
    Bex__Tx tx = BEX__TX__INIT;
    Bex__Signature sigs[TXBUILD_SIGNERS_MAX], *sigp[TXBUILD_SIGNERS_MAX];
    struct crypto_pubkey pubs[TXBUILD_SIGNERS_MAX];
    struct crypto_sig sigv[TXBUILD_SIGNERS_MAX];
    uint8_t *body_bytes = NULL;
    size_t body_len;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (keys_n == 0 || keys_n > TXBUILD_SIGNERS_MAX || t->chain_id == NULL || t->sender == NULL ||
        t->contract == NULL || t->method == NULL || (t->args == NULL && t->args_len > 0))
        return -BEX_EINVAL;
    body.chain_id = (char *)t->chain_id;
    body.sender = (char *)t->sender;
    body.nonce = t->nonce;
    body.contract = (char *)t->contract;
    body.method = (char *)t->method;
    body.args.data = (uint8_t *)t->args;
    body.args.len = t->args_len;
    body.timestamp_ms = t->timestamp_ms;
    body_len = bex__tx_body__get_packed_size(&body);
    body_bytes = malloc(body_len ? body_len : 1);
    if (body_bytes == NULL)
        return -BEX_ENOMEM;
    BEX_ASSERT(bex__tx_body__pack(&body, body_bytes) == body_len);
    crypto_sha256(id, body_bytes, body_len);
    for (size_t i = 0; i < keys_n; i++) {
        if ((rc = crypto_pubkey_of(&pubs[i], &keys[i])) != 0 || (rc = crypto_sign(&sigv[i], &keys[i], id)) != 0) {
            rc = -BEX_ECRYPTO;
            goto fail;
        }
        bex__signature__init(&sigs[i]);
        sigs[i].pubkey.data = pubs[i].b;
        sigs[i].pubkey.len = CRYPTO_PUB_BYTES;
        sigs[i].sig.data = sigv[i].b;
        sigs[i].sig.len = CRYPTO_SIG_BYTES;
        sigp[i] = &sigs[i];
    }
    tx.body.data = body_bytes;
    tx.body.len = body_len;
    tx.n_sigs = keys_n;
    tx.sigs = sigp;
    *out_len = bex__tx__get_packed_size(&tx);
    *out = malloc(*out_len);
    if (*out == NULL) {
        rc = -BEX_ENOMEM;
        goto fail;
    }
    BEX_ASSERT(bex__tx__pack(&tx, *out) == *out_len);
    rc = 0;
fail:
    free(body_bytes);
    return rc;
}
