/*
 * cli_audit.c: bexctl audit: the chain's record of who requested, decided,
 * published, accessed and verified what, and when, newest first.
 */
#include "cli_internal.h"

#include "contract.h"

#include <string.h>

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_audit = {
    .name = "audit",
    .summary = "show the audit trail of a resource, record or agency",
    .usage = "usage: bexctl audit [--resource R [--key K | --key-hex HEX]] [--agency A]\n"
             "                    [--since T] [--until T] [--limit N]\n"
             "\n"
             "Lists audit entries, newest first: time, height, the acting agency, the\n"
             "action (contract.method), resource, record key, grant, result and detail.\n"
             "Every transaction leaves one, failed ones included.\n"
             "  --resource R    entries about resource R\n"
             "  --key K         ... and about its record K (hashed like 'record publish'\n"
             "                  does: CONDITIONAL and NONE resources need the global\n"
             "                  --enc-key of the owner, or of a consumer it shared with)\n"
             "  --key-hex HEX   ... or about the record whose on-chain key is HEX\n"
             "  --agency A      entries of agency A (the actor)\n"
             "  --since T, --until T  a date (2024-05-01), a UTC time\n"
             "                  (2024-05-01T08:00:00Z) or an age (90m, 24h, 7d)\n"
             "  --limit N       at most N entries (default 50, at most 10000)\n",
    .run = run,
};

/* Fills args' record_key from --key (hashed as the chain holds it) or --key-hex. */
static int record_key_arg(const struct cli_ctx *ctx, json_t *args, const char *resource, const char *text,
                          const char *hex)
{
    Bex__Resource *r = NULL;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    uint8_t key[CLI_RECORD_KEY_BYTES_MAX];
    char who[CLI_ID_BYTES_MAX + 1], key_hex[2 * CLI_RECORD_KEY_BYTES_MAX + 1];
    size_t len;
    int rc;

    if (hex != NULL) {
        if (crypto_hex_decode(key, sizeof(key), &len, hex) != 0 || len == 0) {
            cli_error(cli_audit.name, "--key-hex takes 1 to 64 bytes in hex");
            return CLI_EXIT_USAGE;
        }
    } else {
        if (crypto_init() != 0) {
            cli_error(cli_audit.name, "cannot set up the cryptography");
            return CLI_EXIT_FAIL;
        }
        memset(&sk, 0, sizeof(sk));
        rc = cli_get_resource(ctx, cli_audit.name, &r, resource);
        /* Keys of UNCONDITIONAL resources are on chain as they are: no identity needed. */
        if (rc == CLI_EXIT_OK && r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL) {
            rc = cli_record_key(ctx, cli_audit.name, key, &len, r, "", NULL, text);
        } else if (rc == CLI_EXIT_OK && (rc = cli_enc_key(ctx, cli_audit.name, &sk, &pk)) == CLI_EXIT_OK &&
                   (rc = cli_whoami(ctx, cli_audit.name, who)) == CLI_EXIT_OK) {
            rc = cli_record_key(ctx, cli_audit.name, key, &len, r, who, &sk, text);
        }
        crypto_wipe(&sk, sizeof(sk));
        contract_result_free((ProtobufCMessage *)r);
        crypto_close();
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    BEX_ASSERT(crypto_hex_encode(key_hex, sizeof(key_hex), key, len) == 0);
    if (json_object_set_new(args, "record_key", json_string(key_hex)) != 0)
        return cli_oom(cli_audit.name);
    return CLI_EXIT_OK;
}

static int print_entries(const struct cli_ctx *ctx, json_t *items, bool more)
{
    static const char *const heads[] = {"TIME",  "HEIGHT", "ACTOR",  "ACTION", "RESOURCE",
                                        "KEY",   "GRANT",  "RESULT", "DETAIL"};
    struct cli_table t;
    size_t i;
    json_t *e;

    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(items, i, e)
    {
        char when[32], height[24], grant[24], key[20] = "";
        const char *hex = json_string_value(json_object_get(e, "record_key"));
        json_int_t code = json_integer_value(json_object_get(e, "code"));
        json_int_t grant_id = json_integer_value(json_object_get(e, "grant_id"));
        /* A key hash in full is too wide for a table; its prefix identifies it. */
        if (hex != NULL && hex[0] != '\0')
            snprintf(key, sizeof(key), "%.16s%s", hex, strlen(hex) > 16 ? ".." : "");
        cli_format_time(when, (uint64_t)json_integer_value(json_object_get(e, "time_ms")));
        snprintf(grant, sizeof(grant), "%" JSON_INTEGER_FORMAT, grant_id);
        const char *cells[] = {when,
                               cli_json_text(height, sizeof(height), e, "height"),
                               json_string_value(json_object_get(e, "actor")),
                               json_string_value(json_object_get(e, "action")),
                               json_string_value(json_object_get(e, "resource")),
                               key[0] ? key : NULL,
                               grant_id != 0 ? grant : NULL,
                               code == 0 ? "OK" : bex_errname((int)code),
                               json_string_value(json_object_get(e, "detail"))};
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    return cli_list_print(ctx, cli_audit.name, &t, items, "entries", more);
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--resource", CLI_OPT_VALUE}, {"--key", CLI_OPT_VALUE},
                                          {"--key-hex", CLI_OPT_VALUE},  {"--agency", CLI_OPT_VALUE},
                                          {"--since", CLI_OPT_VALUE},    {"--until", CLI_OPT_VALUE},
                                          {"--limit", CLI_OPT_VALUE}};
    struct cli_args a;
    json_t *args = NULL, *items = NULL;
    uint64_t since = 0, until = 0, limit = 50, now = cli_now_ms();
    bool more;
    int rc = cli_args_parse(&a, ctx, &cli_audit, opts, BEX_ARRAY_LEN(opts), argc, argv, 1);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 0)
        return cli_usage_error(&cli_audit, "unexpected argument '%s'", a.pos[0]);
    if ((a.val[1] != NULL || a.val[2] != NULL) && a.val[0] == NULL)
        return cli_usage_error(&cli_audit, "a record key needs --resource");
    if (a.val[1] != NULL && a.val[2] != NULL)
        return cli_usage_error(&cli_audit, "give --key or --key-hex, not both");
    if (a.val[4] != NULL && cli_parse_time(&since, a.val[4], now) != 0)
        return cli_usage_error(&cli_audit, "--since takes a date, a UTC time or an age, not '%.40s'", a.val[4]);
    if (a.val[5] != NULL && cli_parse_time(&until, a.val[5], now) != 0)
        return cli_usage_error(&cli_audit, "--until takes a date, a UTC time or an age, not '%.40s'", a.val[5]);
    if (a.val[6] != NULL && cli_parse_u64(&limit, a.val[6], 1, CLI_LIST_ROWS_MAX) != 0)
        return cli_usage_error(&cli_audit, "--limit is a number from 1 to %u", CLI_LIST_ROWS_MAX);
    if ((args = json_object()) == NULL)
        return cli_oom(cli_audit.name);
    if ((a.val[0] != NULL && json_object_set_new(args, "resource", json_string(a.val[0])) != 0) ||
        (a.val[3] != NULL && json_object_set_new(args, "agency", json_string(a.val[3])) != 0) ||
        json_object_set_new(args, "since_ms", json_integer((json_int_t)since)) != 0 ||
        json_object_set_new(args, "until_ms", json_integer((json_int_t)until)) != 0) {
        json_decref(args);
        return cli_oom(cli_audit.name);
    }
    if ((a.val[1] != NULL || a.val[2] != NULL) &&
        (rc = record_key_arg(ctx, args, a.val[0], a.val[1], a.val[2])) != CLI_EXIT_OK) {
        json_decref(args);
        return rc;
    }
    rc = cli_query_all(ctx, cli_audit.name, &items, &more, "audit", "query", args, "entries", (size_t)limit);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = print_entries(ctx, items, more);
    json_decref(items);
    return rc;
}
