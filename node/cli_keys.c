/*
 * cli_keys.c: record keys as the chain knows them. The key text of a
 * CONDITIONAL or NONE resource (a plate, a person's id) never leaves the
 * agency: the chain holds its keyed hash under the owner's index key, which
 * the owner derives and a consumer receives wrapped (sealing.h).
 */
#include "cli_internal.h"

#include "contract.h"
#include "sealing.h"

#include <string.h>

/* Unwraps the index key the owner of r shared with consumer. */
static int shared_index_key(const struct cli_ctx *ctx, const char *cmd, uint8_t key[SEALING_KEY_BYTES],
                            const Bex__Resource *r, const char *consumer, const struct crypto_seckey *enc_sk)
{
    Bex__RecordIndexKeyArgs args = BEX__RECORD_INDEX_KEY_ARGS__INIT;
    Bex__IndexKeyShare *share = NULL;
    struct cli_rpc_err e;
    int rc;

    args.resource = r->id;
    args.consumer = (char *)consumer;
    rc = cli_query_msg(ctx, cmd, &e, (ProtobufCMessage **)&share, NULL, "record", "index_key", &args.base);
    if (rc == CLI_EXIT_NOTFOUND) {
        cli_error(cmd, "%s has not shared the index key of %s with %s yet; it does once a grant is active",
                  r->owner, r->id, consumer);
        return rc;
    }
    if (rc != CLI_EXIT_OK)
        return e.exit != CLI_EXIT_OK ? cli_rpc_report(cmd, &e) : rc;
    rc = sealing_index_unwrap(key, enc_sk, r->id, consumer, share->wrapped_index_key.data,
                              share->wrapped_index_key.len);
    contract_result_free(&share->base);
    if (rc != 0) {
        cli_error(cmd, "cannot open the index key %s shared with %s: is --enc-key the encryption key of %s?",
                  r->owner, consumer, consumer);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_record_key(const struct cli_ctx *ctx, const char *cmd, uint8_t *out, size_t *out_len,
                   const Bex__Resource *r, const char *sender, const struct crypto_seckey *enc_sk, const char *text)
{
    uint8_t index_key[SEALING_KEY_BYTES];
    size_t len = strlen(text);
    int rc;

    if (len == 0) {
        cli_error(cmd, "a record key cannot be empty");
        return CLI_EXIT_USAGE;
    }
    if (r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL) {
        if (len > CLI_RECORD_KEY_BYTES_MAX) {
            cli_error(cmd, "a record key has at most %d bytes", CLI_RECORD_KEY_BYTES_MAX);
            return CLI_EXIT_USAGE;
        }
        memcpy(out, text, len);
        *out_len = len;
        return CLI_EXIT_OK;
    }
    if (enc_sk == NULL) {
        cli_error(cmd, "keys of %s are hashed under the owner's index key: give --enc-key FILE", r->id);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(sender, r->owner) == 0) {
        rc = sealing_index_key(index_key, enc_sk, r->id) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        if (rc != CLI_EXIT_OK)
            cli_error(cmd, "cannot derive the index key of %s", r->id);
    } else {
        rc = shared_index_key(ctx, cmd, index_key, r, sender, enc_sk);
    }
    if (rc == CLI_EXIT_OK) {
        _Static_assert(CRYPTO_HASH_BYTES <= CLI_RECORD_KEY_BYTES_MAX, "a key hash fits a record key");
        sealing_key_hash(out, index_key, text, len);
        *out_len = CRYPTO_HASH_BYTES;
    }
    crypto_wipe(index_key, sizeof(index_key));
    return rc;
}

void cli_record_key_text(char *out, size_t size, const uint8_t *key, size_t len)
{
    bool printable = len > 0;
    for (size_t i = 0; i < len; i++)
        if (key[i] < 0x20 || key[i] > 0x7e)
            printable = false;
    if (printable && len < size) {
        memcpy(out, key, len);
        out[len] = '\0';
        return;
    }
    if (size < 2 * len + 1)
        len = (size - 1) / 2;
    BEX_ASSERT(crypto_hex_encode(out, size, key, len) == 0);
}
