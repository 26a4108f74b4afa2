/*
 * cli_tx.c: writes from bexctl: reading the officers' keystores, finding
 * the sender and its nonce, signing, submitting, waiting for the commit and
 * reporting the receipt.
 */
#include "cli_internal.h"

#include "contract.h"
#include "keystore.h"
#include "txbuild.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ keystores */

static int read_passphrase(char *buf, size_t size, const struct cli_ctx *ctx, const char *cmd, const char *path)
{
    char err[CLI_ERR_BYTES], prompt[CLI_ERR_BYTES];
    int rc;

    if (ctx->passphrase_file != NULL) {
        rc = keystore_passphrase_file(buf, size, ctx->passphrase_file, err, sizeof(err));
    } else {
        snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", path);
        rc = keystore_passphrase(buf, size, prompt, false, err, sizeof(err));
    }
    if (rc != 0) {
        cli_error(cmd, "%s", err);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* Reads one keystore; the passphrase is wiped before returning. */
static int read_key(struct crypto_seckey *sk, struct crypto_pubkey *pk, const struct cli_ctx *ctx, const char *cmd,
                    const char *path)
{
    char pass[KEYSTORE_PASSPHRASE_MAX + 1];
    char err[CLI_ERR_BYTES];
    int rc = read_passphrase(pass, sizeof(pass), ctx, cmd, path);

    if (rc == CLI_EXIT_OK && keystore_read(sk, pk, path, pass, err, sizeof(err)) != 0) {
        cli_error(cmd, "%s", err);
        rc = CLI_EXIT_FAIL;
    }
    crypto_wipe(pass, sizeof(pass));
    return rc;
}

int cli_enc_key(const struct cli_ctx *ctx, const char *cmd, struct crypto_seckey *sk, struct crypto_pubkey *pk)
{
    if (ctx->enc_key == NULL) {
        cli_error(cmd, "this needs the agency's encryption key: give --enc-key FILE");
        return CLI_EXIT_USAGE;
    }
    return read_key(sk, pk, ctx, cmd, ctx->enc_key);
}

/* ------------------------------------------------------------- identity */

static bool key_in(const ProtobufCBinaryData *keys, size_t n, const struct crypto_pubkey *pk)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i].len == CRYPTO_PUB_BYTES && memcmp(keys[i].data, pk->b, CRYPTO_PUB_BYTES) == 0)
            return true;
    return false;
}

/*
 * Finds the agency that has pk as an officer or node key (signing) or as its
 * encryption key, walking agency.list page by page.
 */
static int find_agency(const struct cli_ctx *ctx, const char *cmd, char out[CLI_ID_BYTES_MAX + 1],
                       const struct crypto_pubkey *pk, bool enc, const char *path)
{
    Bex__AgencyListArgs args = BEX__AGENCY_LIST_ARGS__INIT;
    Bex__AgencyList *list = NULL;
    uint8_t cursor[512];
    int rc;

    args.limit = CLI_PAGE_LIMIT;
    for (size_t page = 0; page < CLI_LIST_ROWS_MAX / CLI_PAGE_LIMIT; page++) {
        if ((rc = cli_query_msg(ctx, cmd, NULL, (ProtobufCMessage **)&list, NULL, "agency", "list", &args.base)) !=
            CLI_EXIT_OK)
            return rc;
        for (size_t i = 0; i < list->n_agencies; i++) {
            const Bex__Agency *a = list->agencies[i];
            bool hit = enc ? key_in(&a->enc_key, 1, pk)
                           : key_in(a->officer_keys, a->n_officer_keys, pk) || key_in(&a->node_key, 1, pk);
            if (hit && strlen(a->id) <= CLI_ID_BYTES_MAX) {
                strcpy(out, a->id);
                contract_result_free((ProtobufCMessage *)list);
                return CLI_EXIT_OK;
            }
        }
        if (list->next_cursor.len == 0 || list->next_cursor.len > sizeof(cursor))
            break;
        memcpy(cursor, list->next_cursor.data, list->next_cursor.len);
        args.cursor.data = cursor;
        args.cursor.len = list->next_cursor.len;
        contract_result_free((ProtobufCMessage *)list);
        list = NULL;
    }
    contract_result_free((ProtobufCMessage *)list);
    cli_error(cmd, "no agency has the key of %s; give --agency ID", path);
    return CLI_EXIT_FAIL;
}

static int set_agency(char out[CLI_ID_BYTES_MAX + 1], const char *cmd, const char *id)
{
    if (strlen(id) > CLI_ID_BYTES_MAX) {
        cli_error(cmd, "agency id '%.32s...' is too long", id);
        return CLI_EXIT_USAGE;
    }
    strcpy(out, id);
    return CLI_EXIT_OK;
}

int cli_whoami(const struct cli_ctx *ctx, const char *cmd, char out[CLI_ID_BYTES_MAX + 1])
{
    struct crypto_pubkey pk;
    char err[CLI_ERR_BYTES];
    const char *path = ctx->key_count > 0 ? ctx->keys[0] : ctx->enc_key;

    if (ctx->agency != NULL)
        return set_agency(out, cmd, ctx->agency);
    if (path == NULL) {
        cli_error(cmd, "which agency? give --agency ID (or set BEX_AGENCY), or --key FILE");
        return CLI_EXIT_USAGE;
    }
    if (keystore_read_public(&pk, path, err, sizeof(err)) != 0) {
        cli_error(cmd, "%s", err);
        return CLI_EXIT_FAIL;
    }
    return find_agency(ctx, cmd, out, &pk, ctx->key_count == 0, path);
}

/* -------------------------------------------------------------- signers */

int cli_signer_open(struct cli_signer *s, const struct cli_ctx *ctx, const char *cmd)
{
    json_t *status = NULL;
    int rc;

    memset(s, 0, sizeof(*s));
    if (ctx->key_count == 0) {
        cli_error(cmd, "this signs a transaction: give --key FILE (once per officer)");
        return CLI_EXIT_USAGE;
    }
    if (crypto_init() != 0) {
        cli_error(cmd, "cannot set up the cryptography");
        return CLI_EXIT_FAIL;
    }
    s->crypto_up = true;
    /* Ask the node first: a wrong URL should not cost a passphrase. */
    if ((rc = cli_rpc(ctx, cmd, &status, "status", NULL, CLI_RPC_TIMEOUT_MS)) != CLI_EXIT_OK)
        return rc;
    const char *chain = json_string_value(json_object_get(status, "chain_id"));
    if (chain == NULL || strlen(chain) > CLI_ID_BYTES_MAX) {
        json_decref(status);
        cli_error(cmd, "the node's status has no chain id");
        return CLI_EXIT_FAIL;
    }
    strcpy(s->chain_id, chain);
    json_decref(status);

    for (size_t i = 0; i < ctx->key_count; i++) {
        if ((rc = read_key(&s->keys[i], &s->pubs[i], ctx, cmd, ctx->keys[i])) != CLI_EXIT_OK)
            return rc;
        s->count++;
        for (size_t j = 0; j < i; j++)
            if (memcmp(s->pubs[j].b, s->pubs[i].b, CRYPTO_PUB_BYTES) == 0) {
                cli_error(cmd, "%s and %s hold the same key", ctx->keys[j], ctx->keys[i]);
                return CLI_EXIT_USAGE;
            }
    }
    if (ctx->agency != NULL)
        return set_agency(s->agency, cmd, ctx->agency);
    return find_agency(ctx, cmd, s->agency, &s->pubs[0], false, ctx->keys[0]);
}

void cli_signer_close(struct cli_signer *s)
{
    crypto_wipe(s->keys, sizeof(s->keys));
    if (s->crypto_up)
        crypto_close();
    s->crypto_up = false;
    s->count = 0;
}

int cli_next_nonce(const struct cli_ctx *ctx, const char *cmd, uint64_t *nonce, const char *agency)
{
    json_t *params = json_pack("{s:s}", "agency", agency), *res = NULL;
    int rc;

    if (params == NULL) {
        cli_error(cmd, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = cli_rpc(ctx, cmd, &res, "account.nonce", params, CLI_RPC_TIMEOUT_MS);
    json_decref(params);
    if (rc != CLI_EXIT_OK)
        return rc;
    json_t *next = json_object_get(res, "next");
    if (!json_is_integer(next) || json_integer_value(next) < 1) {
        json_decref(res);
        cli_error(cmd, "the node's account.nonce has no usable 'next'");
        return CLI_EXIT_FAIL;
    }
    *nonce = (uint64_t)json_integer_value(next);
    json_decref(res);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------- transactions */

int cli_tx_build(const struct cli_signer *s, const char *cmd, uint8_t **tx, size_t *tx_len,
                 uint8_t id[CRYPTO_HASH_BYTES], const char *contract, const char *method,
                 const ProtobufCMessage *args, uint64_t nonce)
{
    const ProtobufCMessageDescriptor *args_desc, *result_desc;
    struct txbuild t = {0};
    uint8_t *packed;
    size_t len;
    int rc;

    BEX_ASSERT(contract_describe(&args_desc, &result_desc, contract, "method", method) == 0);
    BEX_ASSERT(args->descriptor == args_desc);
    len = protobuf_c_message_get_packed_size(args);
    if (len > CONTRACT_TX_BYTES_MAX) {
        cli_error(cmd, "the transaction would have %zu bytes; at most %u", len, CONTRACT_TX_BYTES_MAX);
        return CLI_EXIT_FAIL;
    }
    if ((packed = malloc(len ? len : 1)) == NULL) {
        cli_error(cmd, "out of memory");
        return CLI_EXIT_FAIL;
    }
    BEX_ASSERT(protobuf_c_message_pack(args, packed) == len);
    t.chain_id = s->chain_id;
    t.sender = s->agency;
    t.nonce = nonce;
    t.contract = contract;
    t.method = method;
    t.args = packed;
    t.args_len = len;
    t.timestamp_ms = cli_now_ms();
    rc = txbuild_sign(tx, tx_len, id, &t, s->keys, s->count);
    free(packed);
    if (rc != 0) {
        cli_error(cmd, "cannot sign the transaction: %s", bex_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_tx_wait(const struct cli_ctx *ctx, const char *cmd, json_t **receipt, const char *id_hex)
{
    uint64_t start = cli_mono_ms();
    struct cli_rpc_err e;
    int rc;

    *receipt = NULL;
    for (;;) {
        uint64_t spent = cli_mono_ms() - start;
        if (spent >= ctx->timeout_ms) {
            cli_error(cmd, "tx %s is not committed after %u s; it may still be: see 'bexctl tx %s'", id_hex,
                      ctx->timeout_ms / 1000, id_hex);
            return CLI_EXIT_FAIL;
        }
        uint64_t wait = ctx->timeout_ms - spent;
        if (wait > CLI_WAIT_CALL_MS_MAX)
            wait = CLI_WAIT_CALL_MS_MAX;
        json_t *params = json_pack("{s:s, s:I}", "id", id_hex, "timeout_ms", (json_int_t)wait);
        if (params == NULL) {
            cli_error(cmd, "out of memory");
            return CLI_EXIT_FAIL;
        }
        rc = cli_rpc_try(ctx, receipt, &e, "tx.wait", params, (uint32_t)wait + CLI_RPC_SLACK_MS);
        json_decref(params);
        if (rc == CLI_EXIT_OK)
            return rc;
        if (e.code != -32008)
            return cli_rpc_report(cmd, &e);
    }
}

/* Checks a receipt: CLI_EXIT_OK for code 0, else prints the failure
 * ("tx ID failed at height H: ECODE: message") and returns CLI_EXIT_REJECTED. */
static int tx_outcome(const char *cmd, const json_t *receipt)
{
    char h[24];
    json_int_t code = json_integer_value(json_object_get(receipt, "code"));
    if (code == 0)
        return CLI_EXIT_OK;
    const char *name = json_string_value(json_object_get(receipt, "code_name"));
    const char *message = json_string_value(json_object_get(receipt, "message"));
    cli_error(cmd, "tx %s failed at height %s: %s: %s", json_string_value(json_object_get(receipt, "id")),
              cli_json_text(h, sizeof(h), receipt, "height"), name != NULL ? name : bex_errname((int)code),
              message != NULL && message[0] ? message : bex_strerror((int)code));
    return CLI_EXIT_REJECTED;
}

int cli_tx_result(ProtobufCMessage **out, const char *cmd, const json_t *receipt)
{
    const ProtobufCMessageDescriptor *args_desc, *result_desc;
    const char *contract = json_string_value(json_object_get(receipt, "contract"));
    const char *method = json_string_value(json_object_get(receipt, "method"));
    const char *hex = json_string_value(json_object_get(receipt, "result"));
    uint8_t *bytes = NULL;
    size_t len = 0;

    *out = NULL;
    if (contract == NULL || method == NULL || hex == NULL ||
        contract_describe(&args_desc, &result_desc, contract, "method", method) != 0) {
        cli_error(cmd, "the receipt names no known method or has no result");
        return CLI_EXIT_FAIL;
    }
    size_t size = strlen(hex) / 2 + 1;
    if ((bytes = malloc(size)) == NULL || crypto_hex_decode(bytes, size, &len, hex) != 0 ||
        (*out = protobuf_c_message_unpack(result_desc, NULL, len, bytes)) == NULL) {
        free(bytes);
        cli_error(cmd, "the receipt's result is not a %s", result_desc->name);
        return CLI_EXIT_FAIL;
    }
    free(bytes);
    return CLI_EXIT_OK;
}

/*
 * Signs contract.method with the sender's next nonce and submits it. On
 * CLI_EXIT_OK id_hex names the accepted tx. *stale is set when the node
 * refused the nonce: another client of the same agency took it meanwhile.
 */
static int submit_once(const struct cli_ctx *ctx, const char *cmd, const struct cli_signer *s,
                       char id_hex[2 * CRYPTO_HASH_BYTES + 1], bool *stale, const char *contract, const char *method,
                       const ProtobufCMessage *args)
{
    uint8_t id[CRYPTO_HASH_BYTES];
    uint8_t *tx = NULL;
    char *hex = NULL;
    json_t *params = NULL, *res = NULL;
    struct cli_rpc_err e;
    size_t tx_len;
    uint64_t nonce;
    int rc;

    *stale = false;
    if ((rc = cli_next_nonce(ctx, cmd, &nonce, s->agency)) != CLI_EXIT_OK ||
        (rc = cli_tx_build(s, cmd, &tx, &tx_len, id, contract, method, args, nonce)) != CLI_EXIT_OK)
        return rc;
    BEX_ASSERT(crypto_hex_encode(id_hex, 2 * CRYPTO_HASH_BYTES + 1, id, sizeof(id)) == 0);
    if ((hex = malloc(2 * tx_len + 1)) == NULL || crypto_hex_encode(hex, 2 * tx_len + 1, tx, tx_len) != 0 ||
        (params = json_pack("{s:s}", "tx", hex)) == NULL) {
        rc = cli_oom(cmd);
        goto done;
    }
    rc = cli_rpc_try(ctx, &res, &e, "tx.submit", params, CLI_RPC_TIMEOUT_MS);
    if (rc != CLI_EXIT_OK) {
        *stale = e.code == -32001 && strcmp(e.reason, "ENONCE") == 0;
        if (!*stale)
            cli_rpc_report(cmd, &e);
    }
done:
    json_decref(res);
    json_decref(params);
    free(hex);
    free(tx);
    return rc;
}

int cli_tx_send(const struct cli_ctx *ctx, const char *cmd, const struct cli_signer *s, json_t **receipt,
                char id_hex[2 * CRYPTO_HASH_BYTES + 1], const char *contract, const char *method,
                const ProtobufCMessage *args)
{
    bool stale = true;
    int rc = CLI_EXIT_REJECTED;

    *receipt = NULL;
    /* A nonce lost to a concurrent client of the same agency is worth a fresh one. */
    for (int attempt = 0; stale && attempt < CLI_NONCE_ATTEMPTS; attempt++)
        rc = submit_once(ctx, cmd, s, id_hex, &stale, contract, method, args);
    if (stale)
        cli_error(cmd, "tx rejected: the nonce of %s was taken %d times in a row (ENONCE)", s->agency,
                  CLI_NONCE_ATTEMPTS);
    if (rc != CLI_EXIT_OK || ctx->no_wait)
        return rc;
    if ((rc = cli_tx_wait(ctx, cmd, receipt, id_hex)) == CLI_EXIT_OK)
        rc = tx_outcome(cmd, *receipt);
    return rc;
}

/* Adds the decoded result of a committed receipt under "outcome". */
static json_t *decoded_outcome(const char *cmd, const json_t *receipt)
{
    ProtobufCMessage *m = NULL;
    json_t *j = NULL;
    if (cli_tx_result(&m, cmd, receipt) == CLI_EXIT_OK)
        j = cli_msg_json(m);
    contract_result_free(m);
    return j;
}

/* Prints the scalar members of a result: a summary, not the whole message. */
static int print_summary(FILE *f, const json_t *outcome)
{
    json_t *brief = json_object();
    const char *key;
    json_t *v;
    int rc;

    if (brief == NULL)
        return -BEX_ENOMEM;
    json_object_foreach((json_t *)outcome, key, v)
    {
        if (!json_is_object(v) && !json_is_array(v))
            json_object_set(brief, key, v);
    }
    rc = cli_print_fields(f, brief);
    json_decref(brief);
    return rc;
}

int cli_tx_print(const struct cli_ctx *ctx, const char *cmd, int rc, json_t *receipt, const char *id)
{
    json_t *outcome = NULL;
    char h[24];
    int out_rc = 0;

    if (rc == CLI_EXIT_OK && ctx->no_wait) {
        if (ctx->json) {
            json_t *j = json_pack("{s:s, s:s}", "id", id, "status", "submitted");
            out_rc = j != NULL ? cli_print_json(ctx->out, j) : -BEX_ENOMEM;
            json_decref(j);
        } else {
            out_rc = fprintf(ctx->out, "submitted tx %s\n", id) < 0 ? -BEX_EIO : 0;
        }
    } else if (receipt != NULL) {
        if (rc == CLI_EXIT_OK)
            outcome = decoded_outcome(cmd, receipt);
        if (ctx->json) {
            if (outcome != NULL)
                json_object_set(receipt, "outcome", outcome);
            out_rc = cli_print_json(ctx->out, receipt);
        } else if (rc == CLI_EXIT_OK) {
            fprintf(ctx->out, "tx %s committed at height %s\n", id, cli_json_text(h, sizeof(h), receipt, "height"));
            if (outcome != NULL)
                out_rc = print_summary(ctx->out, outcome);
        }
    }
    json_decref(outcome);
    if (out_rc != 0) {
        cli_error(cmd, "cannot write the output: %s", bex_strerror(out_rc));
        return rc == CLI_EXIT_OK ? CLI_EXIT_FAIL : rc;
    }
    return rc;
}

int cli_tx_run(const struct cli_ctx *ctx, const char *cmd, const char *contract, const char *method,
               const ProtobufCMessage *args)
{
    struct cli_signer s;
    json_t *receipt = NULL;
    char id[2 * CRYPTO_HASH_BYTES + 1] = "";
    int rc;

    rc = cli_signer_open(&s, ctx, cmd);
    if (rc == CLI_EXIT_OK)
        rc = cli_tx_send(ctx, cmd, &s, &receipt, id, contract, method, args);
    cli_signer_close(&s);
    rc = cli_tx_print(ctx, cmd, rc, receipt, id);
    json_decref(receipt);
    return rc;
}
