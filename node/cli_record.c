/*
 * cli_record.c: bexctl record: the owner publishes records, one from the
 * command line or many from a JSON-lines file, every field value sealed
 * here (sealing.h) so the chain holds no plaintext; anyone lists them; the
 * owner reads its own back.
 */
#include "cli_internal.h"

#include "contract.h"
#include "sealing.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_record = {
    .name = "record",
    .summary = "publish, list and show records of a resource",
    .usage =
        "usage: bexctl --key FILE [--enc-key FILE] record publish RESOURCE --key K\n"
        "                                 --field NAME=VALUE... [--version N]\n"
        "       bexctl --key FILE [--enc-key FILE] record publish RESOURCE --file RECORDS.jsonl\n"
        "       bexctl record list RESOURCE\n"
        "       bexctl --enc-key FILE record show RESOURCE KEY\n"
        "\n"
        "publish: the owner publishes a record under key K (a plate, a person's id)\n"
        "with one --field per value. Each value is sealed here under its own key\n"
        "(AES-256-GCM), and that key is wrapped to the owner's encryption key, so\n"
        "only the owner's node can release it to a consumer with an active grant.\n"
        "For CONDITIONAL and NONE resources the key itself is replaced by its keyed\n"
        "hash under the owner's index key, derived from --enc-key (the agency's\n"
        "encryption keystore). --version defaults to one above the published one.\n"
        "With --file, every line of RECORDS.jsonl is one record:\n"
        "  {\"key\": \"AB-123-CD\", \"fields\": {\"owner\": \"J. Doe\", \"colour\": \"red\"}}\n"
        "(optionally with \"version\": N). The whole file is checked first; records\n"
        "then go in batches of 200 transactions with consecutive nonces, each batch\n"
        "waited for before the next. Prints how many were published and which\n"
        "failed.\n"
        "list: the records of RESOURCE: key (or its hash), version, height, time and\n"
        "field names.\n"
        "show: the owner reads one of its records back, opening every field with\n"
        "--enc-key.\n",
    .run = run,
};

/* --------------------------------------------------------- line parsing */

void cli_record_line_close(struct cli_record_line *l)
{
    json_decref(l->doc);
    memset(l, 0, sizeof(*l));
}

static int line_err(struct cli_record_line *l, char *err, size_t err_len, int rc, const char *fmt, ...)
    BEX_PRINTF(5, 6);

/* Says why a line is refused, releases what was parsed and returns rc. */
static int line_err(struct cli_record_line *l, char *err, size_t err_len, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    cli_record_line_close(l);
    return rc;
}

int cli_record_line_parse(struct cli_record_line *l, const char *line, size_t len, char *err, size_t err_len)
{
    json_error_t jerr;
    const char *name;
    json_t *v;

    memset(l, 0, sizeof(*l));
    if (len > CLI_LINE_BYTES_MAX)
        return line_err(l, err, err_len, -BEX_ELIMIT, "the line is longer than 1 MiB");
    l->doc = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (l->doc == NULL)
        return line_err(l, err, err_len, -BEX_EINVAL, "not JSON: %s", jerr.text);
    if (!json_is_object(l->doc))
        return line_err(l, err, err_len, -BEX_EINVAL, "a record is a JSON object");
    json_object_foreach(l->doc, name, v)
    {
        if (strcmp(name, "key") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0)
                return line_err(l, err, err_len, -BEX_EINVAL, "\"key\" is a non-empty string");
            if (strlen(json_string_value(v)) != json_string_length(v))
                return line_err(l, err, err_len, -BEX_EINVAL, "\"key\" holds a NUL character");
            l->key = json_string_value(v);
        } else if (strcmp(name, "version") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1)
                return line_err(l, err, err_len, -BEX_EINVAL, "\"version\" is a positive integer");
            l->version = (uint64_t)json_integer_value(v);
        } else if (strcmp(name, "fields") != 0) {
            return line_err(l, err, err_len, -BEX_EINVAL, "unknown member \"%.64s\"", name);
        }
    }
    json_t *fields = json_object_get(l->doc, "fields");
    if (l->key == NULL)
        return line_err(l, err, err_len, -BEX_EINVAL, "a record needs a \"key\"");
    if (!json_is_object(fields) || json_object_size(fields) == 0)
        return line_err(l, err, err_len, -BEX_EINVAL, "a record needs a non-empty \"fields\" object");
    if (json_object_size(fields) > CLI_FIELDS_MAX)
        return line_err(l, err, err_len, -BEX_ELIMIT, "a record has at most %d fields", CLI_FIELDS_MAX);
    json_object_foreach(fields, name, v)
    {
        size_t i = l->n;
        l->names[i] = name;
        if (json_is_string(v)) {
            l->values[i] = json_string_value(v);
            l->value_lens[i] = json_string_length(v);
        } else if (json_is_integer(v)) {
            snprintf(l->numbers[i], sizeof(l->numbers[i]), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            l->values[i] = l->numbers[i];
            l->value_lens[i] = strlen(l->numbers[i]);
        } else {
            return line_err(l, err, err_len, -BEX_EINVAL, "field \"%.64s\" is not a string or an integer", name);
        }
        l->n++;
    }
    return 0;
}

static bool is_integer(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

int cli_record_check(const Bex__Resource *r, const char *const *names, const char *const *values, size_t n,
                     char *err, size_t err_len)
{
    if (n == 0 || n > CLI_FIELDS_MAX) {
        snprintf(err, err_len, "a record has 1 to %d fields", CLI_FIELDS_MAX);
        return -BEX_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const Bex__FieldDef *def = NULL;
        for (size_t k = 0; k < r->n_fields; k++)
            if (strcmp(r->fields[k]->name, names[i]) == 0)
                def = r->fields[k];
        if (def == NULL) {
            snprintf(err, err_len, "%s has no field \"%.64s\"", r->id, names[i]);
            return -BEX_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0) {
                snprintf(err, err_len, "field \"%.64s\" is given twice", names[i]);
                return -BEX_EINVAL;
            }
        if (strlen(values[i]) > SEALING_VALUE_BYTES_MAX) {
            snprintf(err, err_len, "field \"%.64s\" is longer than %d bytes", names[i], SEALING_VALUE_BYTES_MAX);
            return -BEX_EINVAL;
        }
        if (def->type == BEX__FIELD_TYPE__FIELD_INT && !is_integer(values[i])) {
            snprintf(err, err_len, "field \"%.64s\" is an integer, not \"%.64s\"", names[i], values[i]);
            return -BEX_EINVAL;
        }
        if (def->type == BEX__FIELD_TYPE__FIELD_ENUM) {
            bool ok = false;
            for (size_t k = 0; k < def->n_enum_values; k++)
                ok = ok || strcmp(def->enum_values[k], values[i]) == 0;
            if (!ok) {
                snprintf(err, err_len, "\"%.64s\" is not a value of field \"%.64s\"", values[i], names[i]);
                return -BEX_EINVAL;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ publishing */

/* What every record of one publish run shares. */
struct publisher {
    const struct cli_ctx *ctx;
    struct cli_signer s;
    Bex__Resource *r;
    struct crypto_pubkey owner_enc;
    struct crypto_seckey enc_sk;
    bool have_enc;
};

/* One record's publish arguments and the buffers they point to. */
struct record_msg {
    Bex__RecordPublishArgs args;
    Bex__RecordField fields[CLI_FIELDS_MAX];
    Bex__RecordField *fieldp[CLI_FIELDS_MAX];
    Bex__Sealed sealed[CLI_FIELDS_MAX];
    uint8_t wrapped[CLI_FIELDS_MAX][SEALING_WRAPPED_BYTES];
    uint8_t *ct[CLI_FIELDS_MAX];
    uint8_t key[CLI_RECORD_KEY_BYTES_MAX];
};

static void record_msg_free(struct record_msg *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < CLI_FIELDS_MAX; i++)
        free(m->ct[i]);
    free(m);
}

static int publisher_open(struct publisher *p, const struct cli_ctx *ctx, const char *resource)
{
    Bex__Agency *owner = NULL;
    int rc;

    memset(p, 0, sizeof(*p));
    p->ctx = ctx;
    if ((rc = cli_signer_open(&p->s, ctx, cli_record.name)) != CLI_EXIT_OK ||
        (rc = cli_get_resource(ctx, cli_record.name, &p->r, resource)) != CLI_EXIT_OK)
        return rc;
    if (strcmp(p->r->owner, p->s.agency) != 0) {
        cli_error(cli_record.name, "%s belongs to %s: only its owner publishes records", p->r->id, p->r->owner);
        return CLI_EXIT_FAIL;
    }
    if ((rc = cli_get_agency(ctx, cli_record.name, &owner, p->r->owner)) != CLI_EXIT_OK)
        return rc;
    if (owner->enc_key.len != CRYPTO_PUB_BYTES) {
        contract_result_free(&owner->base);
        cli_error(cli_record.name, "%s has no encryption key on chain", p->r->owner);
        return CLI_EXIT_FAIL;
    }
    memcpy(p->owner_enc.b, owner->enc_key.data, CRYPTO_PUB_BYTES);
    contract_result_free(&owner->base);
    if (p->r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL && ctx->enc_key == NULL)
        return CLI_EXIT_OK;
    struct crypto_pubkey pk;
    if ((rc = cli_enc_key(ctx, cli_record.name, &p->enc_sk, &pk)) != CLI_EXIT_OK)
        return rc;
    p->have_enc = true;
    /* A record sealed under a key the chain does not list could never be released. */
    if (memcmp(pk.b, p->owner_enc.b, CRYPTO_PUB_BYTES) != 0) {
        cli_error(cli_record.name, "%s is not the encryption key %s has on chain", ctx->enc_key, p->r->owner);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static void publisher_close(struct publisher *p)
{
    crypto_wipe(&p->enc_sk, sizeof(p->enc_sk));
    contract_result_free((ProtobufCMessage *)p->r);
    p->r = NULL;
    cli_signer_close(&p->s);
}

/* The version to publish: the given one, else one above the published one. */
static int next_version(struct publisher *p, uint64_t *version, const uint8_t *key, size_t key_len)
{
    Bex__RecordGetArgs args = BEX__RECORD_GET_ARGS__INIT;
    Bex__Record *rec = NULL;
    struct cli_rpc_err e;
    int rc;

    args.resource = p->r->id;
    args.key.data = (uint8_t *)key;
    args.key.len = key_len;
    rc = cli_query_msg(p->ctx, cli_record.name, &e, (ProtobufCMessage **)&rec, NULL, "record", "get", &args.base);
    if (rc == CLI_EXIT_NOTFOUND) {
        *version = 1;
        return CLI_EXIT_OK;
    }
    if (rc != CLI_EXIT_OK)
        return e.exit != CLI_EXIT_OK ? cli_rpc_report(cli_record.name, &e) : rc;
    *version = rec->version + 1;
    contract_result_free(&rec->base);
    return CLI_EXIT_OK;
}

/* Builds one record's arguments: its key as on chain, version, sealed fields. */
static int record_build(struct publisher *p, struct record_msg **out, const char *key_text, uint64_t version,
                        const char *const *names, const char *const *values, const size_t *lens, size_t n)
{
    struct record_msg *m = calloc(1, sizeof(*m));
    size_t key_len;
    int rc;

    *out = NULL;
    if (m == NULL)
        return cli_oom(cli_record.name);
    if ((rc = cli_record_key(p->ctx, cli_record.name, m->key, &key_len, p->r, p->s.agency,
                             p->have_enc ? &p->enc_sk : NULL, key_text)) != CLI_EXIT_OK)
        goto fail;
    if (version == 0 && (rc = next_version(p, &version, m->key, key_len)) != CLI_EXIT_OK)
        goto fail;
    bex__record_publish_args__init(&m->args);
    m->args.resource = p->r->id;
    m->args.key.data = m->key;
    m->args.key.len = key_len;
    m->args.version = version;
    m->args.fields = m->fieldp;
    m->args.n_fields = n;
    for (size_t i = 0; i < n; i++) {
        struct sealing_ref ref = {.resource = p->r->id, .key = m->key, .key_len = key_len, .field = names[i]};
        if ((m->ct[i] = malloc(lens[i] + SEALING_CT_OVERHEAD)) == NULL) {
            rc = cli_oom(cli_record.name);
            goto fail;
        }
        if (sealing_field_seal(m->ct[i], m->wrapped[i], &p->owner_enc, &ref, (const uint8_t *)values[i], lens[i]) !=
            0) {
            cli_error(cli_record.name, "cannot seal field %s", names[i]);
            rc = CLI_EXIT_FAIL;
            goto fail;
        }
        bex__sealed__init(&m->sealed[i]);
        m->sealed[i].ciphertext.data = m->ct[i];
        m->sealed[i].ciphertext.len = lens[i] + SEALING_CT_OVERHEAD;
        m->sealed[i].wrapped_key.data = m->wrapped[i];
        m->sealed[i].wrapped_key.len = SEALING_WRAPPED_BYTES;
        bex__record_field__init(&m->fields[i]);
        m->fields[i].name = (char *)names[i];
        m->fields[i].value_case = BEX__RECORD_FIELD__VALUE_SEALED;
        m->fields[i].sealed = &m->sealed[i];
        m->fieldp[i] = &m->fields[i];
    }
    *out = m;
    return CLI_EXIT_OK;
fail:
    record_msg_free(m);
    return rc;
}

static int publish_one(struct cli_ctx *ctx, const char *resource, const char *key, const char *version_arg,
                       const char *const *specs, size_t nspecs)
{
    const char *names[CLI_FIELDS_MAX], *values[CLI_FIELDS_MAX];
    char names_buf[CLI_FIELDS_MAX][CLI_ID_BYTES_MAX + 1];
    size_t lens[CLI_FIELDS_MAX];
    struct publisher p;
    struct record_msg *m = NULL;
    json_t *receipt = NULL;
    char err[CLI_ERR_BYTES], id[2 * CRYPTO_HASH_BYTES + 1] = "";
    uint64_t version = 0;
    int rc;

    if (version_arg != NULL && cli_parse_u64(&version, version_arg, 1, UINT64_MAX) != 0)
        return cli_usage_error(&cli_record, "--version is a positive number");
    if (nspecs == 0)
        return cli_usage_error(&cli_record, "give the values as --field NAME=VALUE");
    for (size_t i = 0; i < nspecs; i++) {
        const char *eq = strchr(specs[i], '=');
        size_t n = eq != NULL ? (size_t)(eq - specs[i]) : 0;
        if (n == 0 || n > CLI_ID_BYTES_MAX)
            return cli_usage_error(&cli_record, "--field takes NAME=VALUE, not '%.64s'", specs[i]);
        memcpy(names_buf[i], specs[i], n);
        names_buf[i][n] = '\0';
        names[i] = names_buf[i];
        values[i] = eq + 1;
        lens[i] = strlen(values[i]);
    }
    if ((rc = publisher_open(&p, ctx, resource)) != CLI_EXIT_OK)
        goto done;
    if (cli_record_check(p.r, names, values, nspecs, err, sizeof(err)) != 0) {
        rc = cli_usage_error(&cli_record, "%s", err);
        goto done;
    }
    if ((rc = record_build(&p, &m, key, version, names, values, lens, nspecs)) != CLI_EXIT_OK)
        goto done;
    rc = cli_tx_send(ctx, cli_record.name, &p.s, &receipt, id, "record", "publish", &m->args.base);
    rc = cli_tx_print(ctx, cli_record.name, rc, receipt, id);
done:
    json_decref(receipt);
    record_msg_free(m);
    publisher_close(&p);
    return rc;
}

/* -------------------------------------------------------- records files */

/*
 * Reads the next line of f into buf (CLI_LINE_BYTES_MAX + 2 bytes) without
 * its newline. Returns 1 with *len set, 0 at the end, -BEX_ELIMIT for a
 * line that is too long, -BEX_EIO.
 */
static int read_line(FILE *f, char *buf, size_t *len)
{
    if (fgets(buf, CLI_LINE_BYTES_MAX + 2, f) == NULL)
        return ferror(f) ? -BEX_EIO : 0;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n > CLI_LINE_BYTES_MAX)
        return -BEX_ELIMIT;
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *len = n;
    return 1;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return false;
    return true;
}

/* One submitted transaction of a batch: which line it came from. */
struct batch_tx {
    size_t line;
    char id[2 * CRYPTO_HASH_BYTES + 1];
};

struct batch {
    struct publisher *p;
    const char *path;
    uint64_t nonce;
    json_t *txs; /* hex of each tx of the current batch */
    struct batch_tx items[CLI_BATCH_TXS];
    size_t n;
    size_t published, failed, submitted;
    json_t *report; /* with --json: the failed records */
};

static int batch_note(struct batch *b, size_t line, const char *id, const char *code, const char *message)
{
    cli_error(cli_record.name, "%s:%zu: %s%s%s", b->path, line, code, message[0] ? ": " : "", message);
    b->failed++;
    if (b->report == NULL)
        return CLI_EXIT_OK;
    json_t *e = json_pack("{s:I, s:s, s:s, s:s}", "line", (json_int_t)line, "tx", id, "code", code, "message",
                          message);
    if (e == NULL || json_array_append_new(b->report, e) != 0)
        return cli_oom(cli_record.name);
    return CLI_EXIT_OK;
}

/* Submits the collected batch and, unless --no-wait, waits for each of its txs. */
static int batch_flush(struct batch *b)
{
    const struct cli_ctx *ctx = b->p->ctx;
    json_t *params = NULL, *res = NULL, *results;
    size_t accepted = 0;
    int rc;

    if (b->n == 0)
        return CLI_EXIT_OK;
    if ((params = json_pack("{s:O}", "txs", b->txs)) == NULL)
        return cli_oom(cli_record.name);
    rc = cli_rpc(ctx, cli_record.name, &res, "tx.submit_batch", params, CLI_RPC_TIMEOUT_MS + CLI_RPC_SLACK_MS);
    json_decref(params);
    if (rc != CLI_EXIT_OK)
        return rc;
    results = json_object_get(res, "results");
    if (json_array_size(results) != b->n) {
        json_decref(res);
        cli_error(cli_record.name, "the node answered %zu of %zu transactions", json_array_size(results), b->n);
        return CLI_EXIT_FAIL;
    }
    /* Nonces are consecutive: a refused tx strands every later one. */
    for (; accepted < b->n; accepted++) {
        json_t *err = json_object_get(json_array_get(results, accepted), "error");
        if (err == NULL)
            continue;
        const char *reason = json_string_value(json_object_get(err, "reason"));
        const char *message = json_string_value(json_object_get(err, "message"));
        if (batch_note(b, b->items[accepted].line, b->items[accepted].id, reason != NULL ? reason : "rejected",
                       message != NULL ? message : "") != CLI_EXIT_OK) {
            json_decref(res);
            return CLI_EXIT_FAIL;
        }
        cli_error(cli_record.name, "stopping: the %zu records after line %zu are not published; publish them again",
                  b->n - accepted - 1, b->items[accepted].line);
        rc = CLI_EXIT_REJECTED;
        break;
    }
    json_decref(res);
    b->submitted += accepted;
    for (size_t i = 0; i < accepted && !ctx->no_wait; i++) {
        json_t *receipt = NULL;
        int wrc = cli_tx_wait(ctx, cli_record.name, &receipt, b->items[i].id);
        if (wrc != CLI_EXIT_OK)
            return wrc;
        if (json_integer_value(json_object_get(receipt, "code")) == 0) {
            b->published++;
        } else {
            const char *name = json_string_value(json_object_get(receipt, "code_name"));
            const char *message = json_string_value(json_object_get(receipt, "message"));
            wrc = batch_note(b, b->items[i].line, b->items[i].id, name != NULL ? name : "failed",
                             message != NULL ? message : "");
        }
        json_decref(receipt);
        if (wrc != CLI_EXIT_OK)
            return wrc;
    }
    json_array_clear(b->txs);
    b->n = 0;
    return rc;
}

static int batch_add(struct batch *b, const struct cli_record_line *l, size_t line)
{
    struct record_msg *m = NULL;
    uint8_t *tx = NULL, id[CRYPTO_HASH_BYTES];
    size_t tx_len;
    char *hex = NULL;
    int rc;

    if ((rc = record_build(b->p, &m, l->key, l->version, l->names, l->values, l->value_lens, l->n)) != CLI_EXIT_OK)
        return rc;
    rc = cli_tx_build(&b->p->s, cli_record.name, &tx, &tx_len, id, "record", "publish", &m->args.base, b->nonce);
    record_msg_free(m);
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((hex = malloc(2 * tx_len + 1)) == NULL || crypto_hex_encode(hex, 2 * tx_len + 1, tx, tx_len) != 0 ||
        json_array_append_new(b->txs, json_string(hex)) != 0) {
        free(hex);
        free(tx);
        return cli_oom(cli_record.name);
    }
    free(hex);
    free(tx);
    b->items[b->n].line = line;
    BEX_ASSERT(crypto_hex_encode(b->items[b->n].id, sizeof(b->items[b->n].id), id, sizeof(id)) == 0);
    b->n++;
    b->nonce++;
    return b->n == CLI_BATCH_TXS ? batch_flush(b) : CLI_EXIT_OK;
}

/*
 * Walks the records file: with b NULL only checks every line against r,
 * else publishes each line through b. *records counts the records.
 */
static int walk_file(const char *path, const Bex__Resource *r, struct batch *b, size_t *records)
{
    struct cli_record_line l;
    char err[CLI_ERR_BYTES];
    char *buf = malloc(CLI_LINE_BYTES_MAX + 2);
    FILE *f = fopen(path, "r");
    size_t line = 0, len;
    int rc = CLI_EXIT_OK, got;

    *records = 0;
    if (buf == NULL || f == NULL) {
        if (f == NULL)
            cli_error(cli_record.name, "%s: %s", path, strerror(errno));
        else
            cli_oom(cli_record.name);
        free(buf);
        if (f != NULL)
            fclose(f);
        return CLI_EXIT_FAIL;
    }
    while ((got = read_line(f, buf, &len)) == 1) {
        line++;
        if (blank(buf))
            continue;
        if (cli_record_line_parse(&l, buf, len, err, sizeof(err)) != 0 ||
            cli_record_check(r, l.names, l.values, l.n, err, sizeof(err)) != 0) {
            cli_record_line_close(&l);
            cli_error(cli_record.name, "%s:%zu: %s", path, line, err);
            rc = CLI_EXIT_FAIL;
            break;
        }
        (*records)++;
        if (b != NULL)
            rc = batch_add(b, &l, line);
        cli_record_line_close(&l);
        if (rc != CLI_EXIT_OK)
            break;
    }
    if (got < 0) {
        cli_error(cli_record.name, "%s:%zu: %s", path, line + 1,
                  got == -BEX_ELIMIT ? "the line is longer than 1 MiB" : "read error");
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK && *records == 0) {
        cli_error(cli_record.name, "%s holds no records", path);
        rc = CLI_EXIT_FAIL;
    }
    fclose(f);
    free(buf);
    return rc;
}

static int publish_file(struct cli_ctx *ctx, const char *resource, const char *path)
{
    struct publisher p;
    struct batch b = {0};
    size_t records, again;
    int rc;

    if ((rc = publisher_open(&p, ctx, resource)) != CLI_EXIT_OK)
        goto done;
    /* Check everything before the first transaction leaves. */
    if ((rc = walk_file(path, p.r, NULL, &records)) != CLI_EXIT_OK)
        goto done;
    b.p = &p;
    b.path = path;
    if ((b.txs = json_array()) == NULL || (ctx->json && (b.report = json_array()) == NULL)) {
        rc = cli_oom(cli_record.name);
        goto done;
    }
    if ((rc = cli_next_nonce(ctx, cli_record.name, &b.nonce, p.s.agency)) != CLI_EXIT_OK)
        goto done;
    rc = walk_file(path, p.r, &b, &again);
    if (rc == CLI_EXIT_OK)
        rc = batch_flush(&b);
    if (rc == CLI_EXIT_OK && b.failed > 0)
        rc = CLI_EXIT_REJECTED;
    if (ctx->json) {
        json_t *doc = json_pack("{s:s, s:I, s:I, s:I, s:I, s:O}", "resource", p.r->id, "records",
                                (json_int_t)records, "submitted", (json_int_t)b.submitted, "published",
                                (json_int_t)b.published, "failed", (json_int_t)b.failed, "failures", b.report);
        if (doc == NULL || cli_print_json(ctx->out, doc) != 0)
            rc = CLI_EXIT_FAIL;
        json_decref(doc);
    } else if (ctx->no_wait) {
        fprintf(ctx->out, "submitted %zu of %zu records to %s\n", b.submitted, records, p.r->id);
    } else {
        fprintf(ctx->out, "published %zu of %zu records to %s (%zu failed)\n", b.published, records, p.r->id,
                b.failed);
    }
done:
    json_decref(b.txs);
    json_decref(b.report);
    publisher_close(&p);
    return rc;
}

static int publish(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--key", CLI_OPT_VALUE},
                                          {"--field", CLI_OPT_VALUE | CLI_OPT_MULTI},
                                          {"--version", CLI_OPT_VALUE},
                                          {"--file", CLI_OPT_VALUE}};
    struct cli_args a;
    int rc = cli_args_parse(&a, ctx, &cli_record, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_record, "record publish takes one resource id");
    if (a.val[3] != NULL) {
        if (a.val[0] != NULL || a.nmulti > 0 || a.val[2] != NULL)
            return cli_usage_error(&cli_record, "--file replaces --key, --field and --version");
        return publish_file(ctx, a.pos[0], a.val[3]);
    }
    if (a.val[0] == NULL)
        return cli_usage_error(&cli_record, "give the record's --key K (or --file RECORDS.jsonl)");
    return publish_one(ctx, a.pos[0], a.val[0], a.val[2], a.multi, a.nmulti);
}

/* ----------------------------------------------------------- list, show */

static int list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const heads[] = {"KEY", "VERSION", "HEIGHT", "PUBLISHED", "FIELDS"};
    struct cli_args a;
    struct cli_table t;
    json_t *items = NULL, *args, *rec;
    bool more;
    size_t i;
    int rc = cli_args_parse(&a, ctx, &cli_record, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_record, "record list takes one resource id");
    if ((args = json_pack("{s:s}", "resource", a.pos[0])) == NULL)
        return cli_oom(cli_record.name);
    rc = cli_query_all(ctx, cli_record.name, &items, &more, "record", "list", args, "records", CLI_LIST_ROWS_MAX);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(items, i, rec)
    {
        uint8_t key[CLI_RECORD_KEY_BYTES_MAX];
        char key_text[2 * CLI_RECORD_KEY_BYTES_MAX + 1] = "?", version[24], height[24], when[32], names[512] = "";
        size_t key_len, k, used = 0;
        json_t *f;
        const char *hex = json_string_value(json_object_get(rec, "key"));
        if (hex != NULL && crypto_hex_decode(key, sizeof(key), &key_len, hex) == 0)
            cli_record_key_text(key_text, sizeof(key_text), key, key_len);
        json_array_foreach(json_object_get(rec, "fields"), k, f)
        {
            if (used < sizeof(names))
                used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", k ? "," : "",
                                         json_string_value(json_object_get(f, "name")));
        }
        cli_format_time(when, (uint64_t)json_integer_value(json_object_get(rec, "published_ms")));
        const char *cells[] = {key_text, cli_json_text(version, sizeof(version), rec, "version"),
                               cli_json_text(height, sizeof(height), rec, "published_height"), when, names};
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    rc = cli_list_print(ctx, cli_record.name, &t, items, "records", more);
    json_decref(items);
    return rc;
}

/* Opens every sealed field of rec with the owner's key into obj (name: value). */
static int open_fields(json_t *obj, const Bex__Record *rec, const struct crypto_seckey *sk)
{
    for (size_t i = 0; i < rec->n_fields; i++) {
        const Bex__RecordField *f = rec->fields[i];
        json_t *v = NULL;
        if (f->value_case == BEX__RECORD_FIELD__VALUE_PLAINTEXT) {
            v = json_string(f->plaintext);
        } else if (f->value_case == BEX__RECORD_FIELD__VALUE_SEALED) {
            struct sealing_ref ref = {
                .resource = rec->resource, .key = rec->key.data, .key_len = rec->key.len, .field = f->name};
            size_t size = f->sealed->ciphertext.len + 1, n;
            uint8_t *value = malloc(size);
            if (value == NULL)
                return -BEX_ENOMEM;
            if (sealing_field_open(value, size, &n, sk, &ref, f->sealed->wrapped_key.data, f->sealed->wrapped_key.len,
                                   f->sealed->ciphertext.data, f->sealed->ciphertext.len) == 0)
                v = json_stringn((const char *)value, n);
            crypto_wipe(value, size);
            free(value);
            if (v == NULL)
                v = json_string("(cannot be opened)");
        }
        if (v == NULL || json_object_set_new(obj, f->name, v) != 0)
            return -BEX_ENOMEM;
    }
    return 0;
}

static int show(struct cli_ctx *ctx, int argc, char **argv)
{
    Bex__RecordGetArgs args = BEX__RECORD_GET_ARGS__INIT;
    Bex__Resource *r = NULL;
    Bex__Record *rec = NULL;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    struct cli_args a;
    uint8_t key[CLI_RECORD_KEY_BYTES_MAX];
    char who[CLI_ID_BYTES_MAX + 1], when[32];
    json_t *doc = NULL, *fields = NULL;
    size_t key_len;
    bool crypto_up = false;
    int rc = cli_args_parse(&a, ctx, &cli_record, NULL, 0, argc, argv, 2);

    memset(&sk, 0, sizeof(sk));
    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 2)
        return cli_usage_error(&cli_record, "record show takes RESOURCE KEY");
    if (crypto_init() != 0) {
        cli_error(cli_record.name, "cannot set up the cryptography");
        return CLI_EXIT_FAIL;
    }
    crypto_up = true;
    if ((rc = cli_get_resource(ctx, cli_record.name, &r, a.pos[0])) != CLI_EXIT_OK ||
        (rc = cli_whoami(ctx, cli_record.name, who)) != CLI_EXIT_OK)
        goto done;
    if (strcmp(who, r->owner) != 0) {
        cli_error(cli_record.name, "only the owner %s reads its records here; consumers use 'bexctl access'",
                  r->owner);
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    if ((rc = cli_enc_key(ctx, cli_record.name, &sk, &pk)) != CLI_EXIT_OK ||
        (rc = cli_record_key(ctx, cli_record.name, key, &key_len, r, who, &sk, a.pos[1])) != CLI_EXIT_OK)
        goto done;
    args.resource = r->id;
    args.key.data = key;
    args.key.len = key_len;
    if ((rc = cli_query_msg(ctx, cli_record.name, NULL, (ProtobufCMessage **)&rec, NULL, "record", "get",
                            &args.base)) != CLI_EXIT_OK)
        goto done;
    cli_format_time(when, rec->published_ms);
    if ((fields = json_object()) == NULL || open_fields(fields, rec, &sk) != 0 ||
        (doc = json_pack("{s:s, s:s, s:I, s:I, s:s, s:O}", "resource", rec->resource, "key", a.pos[1], "version",
                         (json_int_t)rec->version, "published_height", (json_int_t)rec->published_height,
                         "published", when, "fields", fields)) == NULL) {
        rc = cli_oom(cli_record.name);
        goto done;
    }
    if (ctx->json) {
        rc = cli_print_json(ctx->out, doc) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    } else {
        json_object_del(doc, "fields");
        rc = cli_print_fields(ctx->out, doc) == 0 && fputc('\n', ctx->out) != EOF &&
                     cli_print_fields(ctx->out, fields) == 0
                 ? CLI_EXIT_OK
                 : CLI_EXIT_FAIL;
    }
    if (rc != CLI_EXIT_OK)
        cli_error(cli_record.name, "cannot write the output");
done:
    json_decref(doc);
    json_decref(fields);
    contract_result_free((ProtobufCMessage *)rec);
    contract_result_free((ProtobufCMessage *)r);
    crypto_wipe(&sk, sizeof(sk));
    if (crypto_up)
        crypto_close();
    return rc;
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error(&cli_record, "expected publish, list or show");
    if (cli_is_help(argv[1])) {
        fputs(cli_record.usage, ctx->out);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "publish") == 0)
        return publish(ctx, argc, argv);
    if (strcmp(argv[1], "list") == 0)
        return list(ctx, argc, argv);
    if (strcmp(argv[1], "show") == 0)
        return show(ctx, argc, argv);
    return cli_usage_error(&cli_record, "unknown subcommand '%s'", argv[1]);
}
