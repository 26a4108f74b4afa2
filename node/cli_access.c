/*
 * cli_access.c: bexctl access and verify: a consumer reads the granted
 * fields of one record, or asks whether a value it holds is right. Both
 * submit a request, wait for the owner's node to answer on chain and then
 * open (access) or print (verify) the answer.
 */
#include "cli_internal.h"

#include "contract.h"
#include "sealing.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int access_run(struct cli_ctx *ctx, int argc, char **argv);
static int verify_run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_access = {
    .name = "access",
    .summary = "read the granted fields of one record; list, show, deny accesses",
    .usage = "usage: bexctl --key FILE --enc-key FILE access RESOURCE KEY --purpose TEXT\n"
             "       bexctl [--enc-key FILE] access show ID\n"
             "       bexctl access list [--owner A | --consumer A] [--status open|released|denied]\n"
             "       bexctl --key FILE access deny ID --reason TEXT\n"
             "\n"
             "access RESOURCE KEY: asks for the record KEY of RESOURCE under your active\n"
             "READ grant, stating the purpose (logged on chain), waits for the owner's\n"
             "node to release the field keys (at most --timeout seconds), opens them with\n"
             "--enc-key and prints exactly the released fields. For CONDITIONAL and NONE\n"
             "resources KEY is hashed under the index key the owner shared with you when\n"
             "your grant became active. Exit code 3 when the request is refused or\n"
             "denied. With --no-wait it returns once the request is on chain and prints\n"
             "its id, for 'access show' later.\n"
             "show: one access request; once released, and with the consumer's\n"
             "--enc-key, the released fields.\n"
             "list: access requests to an owner or of a consumer, optionally by status.\n"
             "deny: the owner's officer refuses an open request, with a reason.\n",
    .run = access_run,
};

const struct cli_command cli_verify = {
    .name = "verify",
    .summary = "check a value against one field of a record (yes/no)",
    .usage = "usage: bexctl --key FILE [--enc-key FILE] verify RESOURCE KEY FIELD VALUE\n"
             "                                              [--purpose TEXT]\n"
             "       bexctl verify show ID\n"
             "\n"
             "Asks the owner of RESOURCE whether FIELD of record KEY equals VALUE, under\n"
             "your active VERIFY or READ grant covering FIELD. VALUE is sealed to the\n"
             "owner's encryption key: it is never on chain in clear, and the answer is\n"
             "only yes or no. Waits for the owner's node (at most --timeout seconds) and\n"
             "prints \"yes\" or \"no\". --enc-key is needed for CONDITIONAL and NONE\n"
             "resources, whose keys are hashed under the shared index key. VALUE \"-\"\n"
             "reads the value from the first line of standard input. With --no-wait it\n"
             "returns once the request is on chain and prints its id.\n"
             "show: the answer to verification ID: yes, no, or open.\n",
    .run = verify_run,
};

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Polls contract.get for request id until its status is no longer
 * open_status or ctx->timeout_ms passes; *out receives the last answer
 * decoded as desc.
 */
static int await_answer(const struct cli_ctx *ctx, const char *cmd, ProtobufCMessage **out, const char *contract,
                        uint64_t id, const char *open_status, const char *owner)
{
    const ProtobufCMessageDescriptor *args_desc, *result_desc;
    uint64_t start = cli_mono_ms();
    json_t *args = json_pack("{s:I}", "id", (json_int_t)id), *res = NULL;
    int rc;

    *out = NULL;
    BEX_ASSERT(contract_describe(&args_desc, &result_desc, contract, "query", "get") == 0);
    if (args == NULL)
        return cli_oom(cmd);
    for (;;) {
        if ((rc = cli_query_json(ctx, cmd, &res, contract, "get", args)) != CLI_EXIT_OK)
            break;
        const char *status = json_string_value(json_object_get(res, "status"));
        if (status != NULL && strcmp(status, open_status) != 0) {
            rc = cli_json_msg(out, cmd, result_desc, res);
            break;
        }
        json_decref(res);
        res = NULL;
        if (cli_mono_ms() - start >= ctx->timeout_ms) {
            cli_error(cmd, "%s has not answered %s request %llu within %u s; it is still open", owner, contract,
                      (unsigned long long)id, ctx->timeout_ms / 1000);
            rc = CLI_EXIT_FAIL;
            break;
        }
        sleep_ms(CLI_POLL_MS);
    }
    json_decref(res);
    json_decref(args);
    return rc;
}

/* Checks that sk is the encryption key `agency` has on chain. */
static int check_enc_key(const struct cli_ctx *ctx, const char *cmd, const char *agency,
                         const struct crypto_pubkey *pk, struct crypto_pubkey *onchain)
{
    Bex__Agency *a = NULL;
    int rc = cli_get_agency(ctx, cmd, &a, agency);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a->enc_key.len != CRYPTO_PUB_BYTES) {
        rc = CLI_EXIT_FAIL;
        cli_error(cmd, "%s has no encryption key on chain", agency);
    } else {
        memcpy(onchain->b, a->enc_key.data, CRYPTO_PUB_BYTES);
        if (pk != NULL && memcmp(pk->b, onchain->b, CRYPTO_PUB_BYTES) != 0) {
            rc = CLI_EXIT_FAIL;
            cli_error(cmd, "%s is not the encryption key %s has on chain", ctx->enc_key, agency);
        }
    }
    contract_result_free(&a->base);
    return rc;
}

static const Bex__RecordField *record_field(const Bex__Record *rec, const char *name)
{
    for (size_t i = 0; i < rec->n_fields; i++)
        if (strcmp(rec->fields[i]->name, name) == 0)
            return rec->fields[i];
    return NULL;
}

/* Opens each released field key and its value into fields (name: value). */
static int open_release(const char *cmd, json_t *fields, const Bex__Access *x, const Bex__Record *rec,
                        const struct crypto_seckey *sk)
{
    for (size_t i = 0; i < x->n_keys; i++) {
        const Bex__FieldKey *k = x->keys[i];
        const Bex__RecordField *f = record_field(rec, k->field);
        if (f == NULL || f->value_case != BEX__RECORD_FIELD__VALUE_SEALED) {
            cli_error(cmd, "the record has no sealed field %s", k->field);
            return CLI_EXIT_FAIL;
        }
        struct sealing_ref ref = {
            .resource = x->resource, .key = x->record_key.data, .key_len = x->record_key.len, .field = k->field};
        size_t size = f->sealed->ciphertext.len + 1, n;
        uint8_t *value = malloc(size);
        json_t *v = NULL;
        if (value == NULL)
            return cli_oom(cmd);
        int rc = sealing_field_open(value, size, &n, sk, &ref, k->wrapped_key.data, k->wrapped_key.len,
                                    f->sealed->ciphertext.data, f->sealed->ciphertext.len);
        if (rc == 0)
            v = json_stringn((const char *)value, n);
        crypto_wipe(value, size);
        free(value);
        if (rc != 0) {
            cli_error(cmd, "cannot open field %s: was the record republished since the release? ask again", k->field);
            return CLI_EXIT_FAIL;
        }
        if (v == NULL)
            v = json_string("(not UTF-8 text)");
        if (v == NULL || json_object_set_new(fields, k->field, v) != 0)
            return cli_oom(cmd);
    }
    return CLI_EXIT_OK;
}

/*
 * Adds the granted fields that the record holds in clear (an UNCONDITIONAL
 * resource may publish them so): the owner releases no key for them, so
 * they are read from the record itself, the grant saying which.
 */
static int add_clear_fields(const struct cli_ctx *ctx, const char *cmd, json_t *fields, const Bex__Access *x,
                            const Bex__Record *rec)
{
    Bex__IdArgs args = BEX__ID_ARGS__INIT;
    Bex__Grant *g = NULL;
    int rc;

    args.id = x->grant_id;
    if ((rc = cli_query_msg(ctx, cmd, NULL, (ProtobufCMessage **)&g, NULL, "grant", "get", &args.base)) !=
        CLI_EXIT_OK)
        return rc;
    for (size_t i = 0; i < g->n_fields && rc == CLI_EXIT_OK; i++) {
        const Bex__RecordField *f = record_field(rec, g->fields[i]);
        if (f == NULL || f->value_case != BEX__RECORD_FIELD__VALUE_PLAINTEXT)
            continue;
        json_t *v = json_string(f->plaintext);
        if (v == NULL)
            v = json_string("(not UTF-8 text)");
        if (v == NULL || json_object_set_new(fields, f->name, v) != 0)
            rc = cli_oom(cmd);
    }
    contract_result_free(&g->base);
    return rc;
}

static int print_release(const struct cli_ctx *ctx, const char *cmd, const Bex__Access *x, const char *key,
                         json_t *fields)
{
    int rc;
    if (ctx->json) {
        json_t *doc = json_pack("{s:I, s:I, s:s, s:s, s:s, s:I, s:O}", "access_id", (json_int_t)x->id, "grant_id",
                                (json_int_t)x->grant_id, "resource", x->resource, "key", key, "owner", x->owner,
                                "record_version", (json_int_t)x->record_version, "fields", fields);
        rc = doc != NULL ? cli_print_json(ctx->out, doc) : -BEX_ENOMEM;
        json_decref(doc);
    } else {
        fprintf(ctx->out, "access %llu released by %s under grant %llu (record version %llu)\n",
                (unsigned long long)x->id, x->owner, (unsigned long long)x->grant_id,
                (unsigned long long)x->record_version);
        rc = json_object_size(fields) > 0 ? cli_print_fields(ctx->out, fields) : 0;
    }
    if (rc != 0) {
        cli_error(cmd, "cannot write the output");
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/*
 * Submits a request tx, waits for its commit even with --no-wait (the id
 * of the request is in the receipt), and sets *id from the AccessResult or
 * VerifyResult.
 */
static int submit_request(const struct cli_ctx *ctx, const char *cmd, const struct cli_signer *s, uint64_t *id,
                          const char *contract, const ProtobufCMessage *args)
{
    struct cli_ctx waiting = *ctx;
    ProtobufCMessage *res = NULL;
    json_t *receipt = NULL;
    char tx[2 * CRYPTO_HASH_BYTES + 1] = "";
    int rc;

    waiting.no_wait = false;
    rc = cli_tx_send(&waiting, cmd, s, &receipt, tx, contract, "request", args);
    if (rc != CLI_EXIT_OK) {
        rc = cli_tx_print(&waiting, cmd, rc, receipt, tx);
        json_decref(receipt);
        return rc;
    }
    rc = cli_tx_result(&res, cmd, receipt);
    json_decref(receipt);
    if (rc != CLI_EXIT_OK)
        return rc;
    *id = strcmp(contract, "access") == 0 ? ((Bex__AccessResult *)res)->access_id
                                          : ((Bex__VerifyResult *)res)->verify_id;
    contract_result_free(res);
    return CLI_EXIT_OK;
}

/* After --no-wait: the request is on chain; says how to see the answer. */
static int print_requested(const struct cli_ctx *ctx, const char *cmd, uint64_t id, const char *status)
{
    int rc;
    if (ctx->json) {
        json_t *doc = json_pack("{s:I, s:s}", strcmp(cmd, "access") == 0 ? "access_id" : "verify_id",
                                (json_int_t)id, "status", status);
        rc = doc != NULL ? cli_print_json(ctx->out, doc) : -BEX_ENOMEM;
        json_decref(doc);
    } else {
        rc = fprintf(ctx->out, "%s request %llu is on chain; 'bexctl %s show %llu' shows the answer\n", cmd,
                     (unsigned long long)id, cmd, (unsigned long long)id) > 0
                 ? 0
                 : -BEX_EIO;
    }
    if (rc != 0) {
        cli_error(cmd, "cannot write the output");
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* Reads the record of a released access, opens its keys with sk and prints the fields. */
static int deliver(const struct cli_ctx *ctx, const char *cmd, const Bex__Access *x, const char *key_text,
                   const struct crypto_seckey *sk)
{
    Bex__RecordGetArgs get = BEX__RECORD_GET_ARGS__INIT;
    Bex__Record *rec = NULL;
    json_t *fields = NULL;
    int rc;

    get.resource = x->resource;
    get.key = x->record_key;
    if ((rc = cli_query_msg(ctx, cmd, NULL, (ProtobufCMessage **)&rec, NULL, "record", "get", &get.base)) !=
        CLI_EXIT_OK)
        return rc;
    if ((fields = json_object()) == NULL)
        rc = cli_oom(cmd);
    else if ((rc = open_release(cmd, fields, x, rec, sk)) == CLI_EXIT_OK &&
             (rc = add_clear_fields(ctx, cmd, fields, x, rec)) == CLI_EXIT_OK)
        rc = print_release(ctx, cmd, x, key_text, fields);
    json_decref(fields);
    contract_result_free(&rec->base);
    return rc;
}

static int access_request(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--purpose", CLI_OPT_VALUE}};
    Bex__AccessRequestArgs args = BEX__ACCESS_REQUEST_ARGS__INIT;
    Bex__Resource *r = NULL;
    Bex__Access *x = NULL;
    struct cli_signer s;
    struct crypto_seckey sk;
    struct crypto_pubkey pk, onchain;
    struct cli_args a;
    uint8_t key[CLI_RECORD_KEY_BYTES_MAX];
    size_t key_len;
    uint64_t id = 0;
    int rc = cli_args_parse(&a, ctx, &cli_access, opts, BEX_ARRAY_LEN(opts), argc, argv, 1);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 2)
        return cli_usage_error(&cli_access, "expected RESOURCE KEY");
    if (a.val[0] == NULL || a.val[0][0] == '\0')
        return cli_usage_error(&cli_access, "an access states its --purpose");
    if (ctx->enc_key == NULL)
        return cli_usage_error(&cli_access, "released fields are opened with --enc-key FILE");
    memset(&sk, 0, sizeof(sk));
    if ((rc = cli_signer_open(&s, ctx, cli_access.name)) != CLI_EXIT_OK ||
        (rc = cli_get_resource(ctx, cli_access.name, &r, a.pos[0])) != CLI_EXIT_OK ||
        (rc = cli_enc_key(ctx, cli_access.name, &sk, &pk)) != CLI_EXIT_OK ||
        (rc = check_enc_key(ctx, cli_access.name, s.agency, &pk, &onchain)) != CLI_EXIT_OK ||
        (rc = cli_record_key(ctx, cli_access.name, key, &key_len, r, s.agency, &sk, a.pos[1])) != CLI_EXIT_OK)
        goto done;
    args.resource = r->id;
    args.record_key.data = key;
    args.record_key.len = key_len;
    args.purpose = (char *)a.val[0];
    if ((rc = submit_request(ctx, cli_access.name, &s, &id, "access", &args.base)) != CLI_EXIT_OK)
        goto done;
    if (ctx->no_wait) {
        rc = print_requested(ctx, cli_access.name, id, "ACCESS_OPEN");
        goto done;
    }
    if ((rc = await_answer(ctx, cli_access.name, (ProtobufCMessage **)&x, "access", id, "ACCESS_OPEN", r->owner)) !=
        CLI_EXIT_OK)
        goto done;
    if (x->status != BEX__ACCESS_STATUS__ACCESS_RELEASED) {
        cli_error(cli_access.name, "access %llu denied by %s: %s", (unsigned long long)x->id, x->owner,
                  x->reason[0] ? x->reason : "no reason given");
        rc = CLI_EXIT_REJECTED;
        goto done;
    }
    rc = deliver(ctx, cli_access.name, x, a.pos[1], &sk);
done:
    contract_result_free((ProtobufCMessage *)x);
    contract_result_free((ProtobufCMessage *)r);
    crypto_wipe(&sk, sizeof(sk));
    cli_signer_close(&s);
    return rc;
}

static int verify_request(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--purpose", CLI_OPT_VALUE}};
    Bex__VerifyRequestArgs args = BEX__VERIFY_REQUEST_ARGS__INIT;
    Bex__Resource *r = NULL;
    Bex__Verification *v = NULL;
    struct cli_signer s;
    struct crypto_seckey sk;
    struct crypto_pubkey pk, owner_enc;
    struct cli_args a;
    uint8_t key[CLI_RECORD_KEY_BYTES_MAX];
    uint8_t *claim = NULL;
    char stdin_value[SEALING_CLAIM_VALUE_BYTES_MAX + 2];
    const char *value;
    size_t key_len, value_len;
    uint64_t id = 0;
    bool have_enc = false;
    int rc = cli_args_parse(&a, ctx, &cli_verify, opts, BEX_ARRAY_LEN(opts), argc, argv, 1);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 4)
        return cli_usage_error(&cli_verify, "expected RESOURCE KEY FIELD VALUE");
    value = a.pos[3];
    /* "-" keeps the value out of the process list and the shell history. */
    if (strcmp(value, "-") == 0) {
        if (fgets(stdin_value, sizeof(stdin_value), stdin) == NULL)
            stdin_value[0] = '\0';
        stdin_value[strcspn(stdin_value, "\r\n")] = '\0';
        value = stdin_value;
    }
    value_len = strlen(value);
    if (value_len == 0 || value_len > SEALING_CLAIM_VALUE_BYTES_MAX) {
        crypto_wipe(stdin_value, sizeof(stdin_value));
        return cli_usage_error(&cli_verify, "VALUE has 1 to %d bytes", SEALING_CLAIM_VALUE_BYTES_MAX);
    }
    memset(&sk, 0, sizeof(sk));
    if ((rc = cli_signer_open(&s, ctx, cli_verify.name)) != CLI_EXIT_OK ||
        (rc = cli_get_resource(ctx, cli_verify.name, &r, a.pos[0])) != CLI_EXIT_OK ||
        (rc = check_enc_key(ctx, cli_verify.name, r->owner, NULL, &owner_enc)) != CLI_EXIT_OK)
        goto done;
    if (ctx->enc_key != NULL) {
        if ((rc = cli_enc_key(ctx, cli_verify.name, &sk, &pk)) != CLI_EXIT_OK)
            goto done;
        have_enc = true;
    }
    if ((rc = cli_record_key(ctx, cli_verify.name, key, &key_len, r, s.agency, have_enc ? &sk : NULL, a.pos[1])) !=
        CLI_EXIT_OK)
        goto done;
    struct sealing_ref ref = {.resource = r->id, .key = key, .key_len = key_len, .field = a.pos[2]};
    if ((claim = malloc(value_len + SEALING_CLAIM_OVERHEAD)) == NULL) {
        rc = cli_oom(cli_verify.name);
        goto done;
    }
    if (sealing_claim_seal(claim, &owner_enc, &ref, s.agency, (const uint8_t *)value, value_len) != 0) {
        cli_error(cli_verify.name, "cannot seal the claim (is '%.64s' a field name?)", a.pos[2]);
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    args.resource = r->id;
    args.record_key.data = key;
    args.record_key.len = key_len;
    args.field = (char *)a.pos[2];
    args.claim.data = claim;
    args.claim.len = value_len + SEALING_CLAIM_OVERHEAD;
    args.purpose = (char *)(a.val[0] != NULL ? a.val[0] : "");
    if ((rc = submit_request(ctx, cli_verify.name, &s, &id, "verify", &args.base)) != CLI_EXIT_OK)
        goto done;
    if (ctx->no_wait) {
        rc = print_requested(ctx, cli_verify.name, id, "VERIFY_OPEN");
        goto done;
    }
    if ((rc = await_answer(ctx, cli_verify.name, (ProtobufCMessage **)&v, "verify", id, "VERIFY_OPEN", r->owner)) !=
        CLI_EXIT_OK)
        goto done;
    if (ctx->json) {
        json_t *doc = json_pack("{s:I, s:I, s:s, s:s, s:s, s:b}", "verify_id", (json_int_t)v->id, "grant_id",
                                (json_int_t)v->grant_id, "resource", v->resource, "key", a.pos[1], "field", v->field,
                                "match", v->match);
        rc = doc != NULL && cli_print_json(ctx->out, doc) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        json_decref(doc);
    } else {
        rc = fprintf(ctx->out, "%s\n", v->match ? "yes" : "no") > 0 && fflush(ctx->out) == 0 ? CLI_EXIT_OK
                                                                                             : CLI_EXIT_FAIL;
    }
    if (rc != CLI_EXIT_OK)
        cli_error(cli_verify.name, "cannot write the output");
done:
    crypto_wipe(stdin_value, sizeof(stdin_value));
    free(claim);
    contract_result_free((ProtobufCMessage *)v);
    contract_result_free((ProtobufCMessage *)r);
    crypto_wipe(&sk, sizeof(sk));
    cli_signer_close(&s);
    return rc;
}

/* ------------------------------------------------------ show, list, deny */

static int parse_id(uint64_t *id, const struct cli_command *cmd, const struct cli_args *a, const char *what)
{
    if (a->npos != 1 || cli_parse_u64(id, a->pos[0], 1, (1ull << 53) - 1) != 0)
        return cli_usage_error(cmd, "%s takes one request id", what);
    return CLI_EXIT_OK;
}

/* The human view of an access or verification: times as dates. */
static int print_request(const struct cli_ctx *ctx, json_t *j)
{
    static const char *const times[] = {"requested_ms", "closed_ms", "answered_ms"};
    if (ctx->json)
        return cli_print_json(ctx->out, j);
    json_object_del(j, "keys");
    json_object_del(j, "claim");
    for (size_t i = 0; i < BEX_ARRAY_LEN(times); i++) {
        json_t *v = json_object_get(j, times[i]);
        char when[32];
        if (!json_is_integer(v))
            continue;
        cli_format_time(when, (uint64_t)json_integer_value(v));
        json_object_set_new(j, times[i], json_string(when));
    }
    return cli_print_fields(ctx->out, j);
}

static int access_show(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *cmd = cli_access.name;
    Bex__IdArgs args = BEX__ID_ARGS__INIT;
    Bex__Access *x = NULL;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    struct cli_args a;
    json_t *j = NULL;
    char key_hex[2 * CLI_RECORD_KEY_BYTES_MAX + 1];
    int rc = cli_args_parse(&a, ctx, &cli_access, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help || (rc = parse_id(&args.id, &cli_access, &a, "access show")) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_query_msg(ctx, cmd, NULL, (ProtobufCMessage **)&x, &j, "access", "get", &args.base)) !=
        CLI_EXIT_OK)
        return rc;
    if (x->status == BEX__ACCESS_STATUS__ACCESS_RELEASED && ctx->enc_key != NULL &&
        x->record_key.len <= CLI_RECORD_KEY_BYTES_MAX) {
        if (crypto_init() != 0) {
            rc = CLI_EXIT_FAIL;
            cli_error(cmd, "cannot set up the cryptography");
        } else {
            memset(&sk, 0, sizeof(sk));
            cli_record_key_text(key_hex, sizeof(key_hex), x->record_key.data, x->record_key.len);
            if ((rc = cli_enc_key(ctx, cmd, &sk, &pk)) == CLI_EXIT_OK)
                rc = deliver(ctx, cmd, x, key_hex, &sk);
            crypto_wipe(&sk, sizeof(sk));
            crypto_close();
        }
    } else if (print_request(ctx, j) != 0) {
        cli_error(cmd, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(j);
    contract_result_free(&x->base);
    return rc;
}

static int access_list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {
        {"--owner", CLI_OPT_VALUE}, {"--consumer", CLI_OPT_VALUE}, {"--status", CLI_OPT_VALUE}};
    static const char *const statuses[] = {"open", "released", "denied"};
    static const char *const heads[] = {"ID", "RESOURCE", "CONSUMER", "OWNER", "STATUS", "REQUESTED", "PURPOSE"};
    struct cli_args a;
    struct cli_table t;
    json_t *args, *items = NULL, *x;
    bool more;
    size_t i;
    int status = 0;
    int rc = cli_args_parse(&a, ctx, &cli_access, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 0)
        return cli_usage_error(&cli_access, "access list takes no arguments");
    if (a.val[0] != NULL && a.val[1] != NULL)
        return cli_usage_error(&cli_access, "filter by --owner or --consumer, not both");
    for (i = 0; a.val[2] != NULL && i < BEX_ARRAY_LEN(statuses); i++)
        if (strcmp(a.val[2], statuses[i]) == 0)
            status = (int)i + 1;
    if (a.val[2] != NULL && status == 0)
        return cli_usage_error(&cli_access, "--status is open, released or denied");
    if ((args = json_pack("{s:i}", "status", status)) == NULL ||
        (a.val[0] != NULL && json_object_set_new(args, "owner", json_string(a.val[0])) != 0) ||
        (a.val[1] != NULL && json_object_set_new(args, "consumer", json_string(a.val[1])) != 0)) {
        json_decref(args);
        return cli_oom(cli_access.name);
    }
    rc = cli_query_all(ctx, cli_access.name, &items, &more, "access", "list", args, "accesses", CLI_LIST_ROWS_MAX);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(items, i, x)
    {
        char id[24], when[32];
        const char *st = json_string_value(json_object_get(x, "status"));
        cli_format_time(when, (uint64_t)json_integer_value(json_object_get(x, "requested_ms")));
        const char *cells[] = {cli_json_text(id, sizeof(id), x, "id"),
                               json_string_value(json_object_get(x, "resource")),
                               json_string_value(json_object_get(x, "consumer")),
                               json_string_value(json_object_get(x, "owner")),
                               st != NULL ? cli_enum_short(st) : NULL,
                               when,
                               json_string_value(json_object_get(x, "purpose"))};
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    rc = cli_list_print(ctx, cli_access.name, &t, items, "accesses", more);
    json_decref(items);
    return rc;
}

static int access_deny(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--reason", CLI_OPT_VALUE}};
    Bex__AccessDenyArgs args = BEX__ACCESS_DENY_ARGS__INIT;
    struct cli_args a;
    int rc = cli_args_parse(&a, ctx, &cli_access, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help || (rc = parse_id(&args.access_id, &cli_access, &a, "access deny")) != CLI_EXIT_OK)
        return rc;
    if (a.val[0] == NULL || a.val[0][0] == '\0')
        return cli_usage_error(&cli_access, "a denial needs --reason TEXT");
    args.reason = (char *)a.val[0];
    return cli_tx_run(ctx, cli_access.name, "access", "deny", &args.base);
}

static int verify_show(struct cli_ctx *ctx, int argc, char **argv)
{
    Bex__IdArgs args = BEX__ID_ARGS__INIT;
    Bex__Verification *v = NULL;
    struct cli_args a;
    json_t *j = NULL;
    int rc = cli_args_parse(&a, ctx, &cli_verify, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help || (rc = parse_id(&args.id, &cli_verify, &a, "verify show")) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_query_msg(ctx, cli_verify.name, NULL, (ProtobufCMessage **)&v, &j, "verify", "get",
                            &args.base)) != CLI_EXIT_OK)
        return rc;
    bool answered = v->status == BEX__VERIFY_STATUS__VERIFY_ANSWERED;
    if ((ctx->json ? print_request(ctx, j)
                   : fprintf(ctx->out, "%s\n", !answered ? "open" : v->match ? "yes" : "no") > 0 ? 0 : -BEX_EIO) !=
        0) {
        cli_error(cli_verify.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(j);
    contract_result_free(&v->base);
    return rc;
}

static int access_run(struct cli_ctx *ctx, int argc, char **argv)
{
    /* Resource ids always hold a '/', so these words cannot be one. */
    if (argc >= 2 && strcmp(argv[1], "show") == 0)
        return access_show(ctx, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return access_list(ctx, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "deny") == 0)
        return access_deny(ctx, argc, argv);
    return access_request(ctx, argc, argv);
}

static int verify_run(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "show") == 0)
        return verify_show(ctx, argc, argv);
    return verify_request(ctx, argc, argv);
}
