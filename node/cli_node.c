/*
 * cli_node.c: bexctl status, peers, tx, block and query: the node itself,
 * its ledger and raw contract queries.
 */
#include "cli_internal.h"

#include "contract.h"

#include <stdlib.h>
#include <string.h>

static int status_run(struct cli_ctx *ctx, int argc, char **argv);
static int peers_run(struct cli_ctx *ctx, int argc, char **argv);
static int tx_run(struct cli_ctx *ctx, int argc, char **argv);
static int block_run(struct cli_ctx *ctx, int argc, char **argv);
static int query_run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_status = {
    .name = "status",
    .summary = "show the node: chain, height, view, peers, mempool",
    .usage = "usage: bexctl [--node URL] status [--json]\n"
             "\n"
             "Shows the node's chain id, agency, height and view, whether the view is\n"
             "active, the time and hash of the last block, the state root, connected\n"
             "peers, the mempool and whether the node is catching up.\n",
    .run = status_run,
};

const struct cli_command cli_peers = {
    .name = "peers",
    .summary = "list the node's peers and their links",
    .usage = "usage: bexctl [--node URL] peers [--json]\n"
             "\n"
             "Lists every other node of the network: index, agency, address, whether\n"
             "it is connected, and the bytes received from and sent to it.\n",
    .run = peers_run,
};

const struct cli_command cli_tx = {
    .name = "tx",
    .summary = "show a transaction and its receipt",
    .usage = "usage: bexctl tx ID [--json]\n"
             "\n"
             "Shows transaction ID (64 hex digits): pending or committed, its height\n"
             "and index, the receipt code and message, sender, nonce, contract, method,\n"
             "arguments and events. Exit code 5 when the node knows no such tx.\n",
    .run = tx_run,
};

const struct cli_command cli_block = {
    .name = "block",
    .summary = "show a block and its commit certificate",
    .usage = "usage: bexctl block HEIGHT [--json]\n"
             "\n"
             "Shows the block at HEIGHT: hash, previous hash, state root, time, view,\n"
             "proposer, its transaction ids and its commit certificate (the replicas\n"
             "whose COMMIT signatures prove it final). Exit code 5 above the tip.\n",
    .run = block_run,
};

const struct cli_command cli_query = {
    .name = "query",
    .summary = "run a contract query and print its JSON",
    .usage = "usage: bexctl query CONTRACT QUERY [ARGS-JSON]\n"
             "\n"
             "Runs a read-only contract query (state.query) and prints its result as\n"
             "JSON. ARGS-JSON is the query's argument message as JSON (bytes in hex,\n"
             "enums by name), checked here before it is sent. Examples:\n"
             "  bexctl query agency list\n"
             "  bexctl query grant list '{\"consumer\": \"city.police\", \"status\": \"GRANT_ACTIVE\"}'\n"
             "  bexctl query catalog get '{\"id\": \"city.traffic/plates\"}'\n",
    .run = query_run,
};

/* Prints a result: JSON, or the fields of an object. */
static int print_result(const struct cli_ctx *ctx, const char *cmd, const json_t *j)
{
    int rc = ctx->json ? cli_print_json(ctx->out, j) : cli_print_fields(ctx->out, j);
    if (rc != 0) {
        cli_error(cmd, "cannot write the output: %s", bex_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static int no_args(struct cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv, bool *help)
{
    struct cli_args a;
    int rc = cli_args_parse(&a, ctx, cmd, NULL, 0, argc, argv, 1);
    *help = a.help;
    if (rc == CLI_EXIT_OK && !a.help && a.npos > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", a.pos[0]);
    return rc;
}

static int status_run(struct cli_ctx *ctx, int argc, char **argv)
{
    json_t *res = NULL;
    bool help;
    int rc = no_args(ctx, &cli_status, argc, argv, &help);

    if (rc != CLI_EXIT_OK || help)
        return rc;
    if ((rc = cli_rpc(ctx, cli_status.name, &res, "status", NULL, CLI_RPC_TIMEOUT_MS)) != CLI_EXIT_OK)
        return rc;
    if (!ctx->json) {
        char t[32];
        cli_format_time(t, (uint64_t)json_integer_value(json_object_get(res, "last_block_time_ms")));
        json_object_set_new(res, "last_block_time", json_string(t));
    }
    rc = print_result(ctx, cli_status.name, res);
    json_decref(res);
    return rc;
}

static int peers_run(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const heads[] = {"INDEX", "AGENCY", "ADDRESS", "CONNECTED", "BYTES IN", "BYTES OUT"};
    static const char *const keys[] = {"index", "agency", "address", "connected", "bytes_in", "bytes_out"};
    json_t *res = NULL, *p;
    struct cli_table t;
    bool help;
    size_t i;
    int rc = no_args(ctx, &cli_peers, argc, argv, &help);

    if (rc != CLI_EXIT_OK || help)
        return rc;
    if ((rc = cli_rpc(ctx, cli_peers.name, &res, "peers", NULL, CLI_RPC_TIMEOUT_MS)) != CLI_EXIT_OK)
        return rc;
    if (ctx->json) {
        rc = print_result(ctx, cli_peers.name, res);
        json_decref(res);
        return rc;
    }
    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(json_object_get(res, "peers"), i, p)
    {
        char buf[BEX_ARRAY_LEN(keys)][32];
        const char *cells[BEX_ARRAY_LEN(keys)];
        for (size_t k = 0; k < BEX_ARRAY_LEN(keys); k++)
            cells[k] = cli_json_text(buf[k], sizeof(buf[k]), p, keys[k]);
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    if (cli_table_print(&t, ctx->out) != 0) {
        cli_error(cli_peers.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    cli_table_close(&t);
    json_decref(res);
    return rc;
}

static bool is_id_hex(const char *s)
{
    size_t n = strlen(s);
    if (n != 2 * CRYPTO_HASH_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

static int tx_run(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_args a;
    json_t *res = NULL, *params;
    char id[2 * CRYPTO_HASH_BYTES + 1];
    int rc = cli_args_parse(&a, ctx, &cli_tx, NULL, 0, argc, argv, 1);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_tx, "expected one tx id");
    if (!is_id_hex(a.pos[0]))
        return cli_usage_error(&cli_tx, "a tx id is 64 hex digits, not '%.80s'", a.pos[0]);
    for (size_t i = 0; i <= 2 * CRYPTO_HASH_BYTES; i++)
        id[i] = (char)(a.pos[0][i] >= 'A' && a.pos[0][i] <= 'F' ? a.pos[0][i] - 'A' + 'a' : a.pos[0][i]);
    if ((params = json_pack("{s:s}", "id", id)) == NULL) {
        cli_error(cli_tx.name, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = cli_rpc(ctx, cli_tx.name, &res, "tx.get", params, CLI_RPC_TIMEOUT_MS);
    json_decref(params);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = print_result(ctx, cli_tx.name, res);
    json_decref(res);
    return rc;
}

/* The human view of a block: times readable, the certificate summarised. */
static int print_block(const struct cli_ctx *ctx, json_t *b)
{
    json_t *cert = json_object_get(b, "cert");
    json_t *txs = json_object_get(b, "txs");
    json_t *view = json_object();
    char t[32], buf[96];
    size_t i;
    json_t *v;
    const char *key;
    int rc;

    if (view == NULL)
        return -BEX_ENOMEM;
    json_object_foreach(b, key, v)
    {
        if (strcmp(key, "cert") == 0 || strcmp(key, "txs") == 0 || strcmp(key, "executed") == 0)
            continue;
        json_object_set(view, key, v);
        if (strcmp(key, "time_ms") == 0) {
            cli_format_time(t, (uint64_t)json_integer_value(v));
            json_object_set_new(view, "time", json_string(t));
        }
    }
    snprintf(buf, sizeof(buf), "view %" JSON_INTEGER_FORMAT ", %zu votes",
             json_integer_value(json_object_get(cert, "view")), json_array_size(json_object_get(cert, "votes")));
    json_object_set_new(view, "cert", json_string(buf));
    json_object_set_new(view, "tx_count", json_integer((json_int_t)json_array_size(txs)));
    rc = cli_print_fields(ctx->out, view);
    json_decref(view);
    json_array_foreach(txs, i, v)
    {
        json_t *at = json_array_get(json_object_get(b, "executed"), i);

        if (!json_is_string(v))
            continue;
        /* A tx with no receipt here was committed by an earlier block, or deferred (nonce early). */
        if (json_is_integer(at))
            fprintf(ctx->out, "  %s  receipt %" JSON_INTEGER_FORMAT "\n", json_string_value(v), json_integer_value(at));
        else
            fprintf(ctx->out, "  %s  not executed here\n", json_string_value(v));
    }
    return rc == 0 && fflush(ctx->out) == 0 ? 0 : -BEX_EIO;
}

static int block_run(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_args a;
    json_t *res = NULL, *params;
    uint64_t height;
    int rc = cli_args_parse(&a, ctx, &cli_block, NULL, 0, argc, argv, 1);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_block, "expected one height");
    if (cli_parse_u64(&height, a.pos[0], 0, (1ull << 53) - 1) != 0)
        return cli_usage_error(&cli_block, "a height is a whole number, not '%.80s'", a.pos[0]);
    if ((params = json_pack("{s:I}", "height", (json_int_t)height)) == NULL) {
        cli_error(cli_block.name, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = cli_rpc(ctx, cli_block.name, &res, "block.get", params, CLI_RPC_TIMEOUT_MS);
    json_decref(params);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (ctx->json) {
        rc = print_result(ctx, cli_block.name, res);
    } else if (print_block(ctx, res) != 0) {
        cli_error(cli_block.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(res);
    return rc;
}

static int query_run(struct cli_ctx *ctx, int argc, char **argv)
{
    const ProtobufCMessageDescriptor *args_desc, *result_desc;
    ProtobufCMessage *check = NULL;
    struct cli_args a;
    json_t *params = NULL, *args = NULL, *res = NULL;
    json_error_t jerr;
    char err[CLI_ERR_BYTES];
    int rc = cli_args_parse(&a, ctx, &cli_query, NULL, 0, argc, argv, 1);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos < 2 || a.npos > 3)
        return cli_usage_error(&cli_query, "expected CONTRACT QUERY [ARGS-JSON]");
    if (contract_describe(&args_desc, &result_desc, a.pos[0], "query", a.pos[1]) != 0)
        return cli_usage_error(&cli_query, "no query '%.64s' in contract '%.64s'", a.pos[1], a.pos[0]);
    if (a.npos == 3) {
        if ((args = json_loads(a.pos[2], 0, &jerr)) == NULL || !json_is_object(args)) {
            json_decref(args);
            return cli_usage_error(&cli_query, "ARGS-JSON is not a JSON object: %s",
                                   args == NULL ? jerr.text : "another JSON value");
        }
        rc = contract_json_parse(&check, err, sizeof(err), args_desc, a.pos[2], strlen(a.pos[2]));
        contract_result_free(check);
        if (rc != 0) {
            json_decref(args);
            return cli_usage_error(&cli_query, "ARGS-JSON is not a %s: %s", args_desc->name,
                                   rc == -BEX_EDECODE ? err : bex_strerror(rc));
        }
    }
    params = json_pack("{s:s, s:s}", "contract", a.pos[0], "query", a.pos[1]);
    if (params == NULL || (args != NULL && json_object_set_new(params, "args", args) != 0)) {
        if (params == NULL)
            json_decref(args);
        json_decref(params);
        cli_error(cli_query.name, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = cli_rpc(ctx, cli_query.name, &res, "state.query", params, CLI_RPC_TIMEOUT_MS);
    json_decref(params);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (cli_print_json(ctx->out, res) != 0) {
        cli_error(cli_query.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(res);
    return rc;
}
