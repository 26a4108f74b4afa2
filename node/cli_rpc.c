/*
 * cli_rpc.c: bexctl's calls to its node: JSON-RPC with failures mapped to
 * exit codes, and contract queries decoded into their protobuf messages.
 */
#include "cli_internal.h"

#include "contract.h"
#include "httpc.h"

#include <stdlib.h>
#include <string.h>

int cli_oom(const char *cmd)
{
    cli_error(cmd, "out of memory");
    return CLI_EXIT_FAIL;
}

int cli_rpc_try(const struct cli_ctx *ctx, json_t **result, struct cli_rpc_err *e, const char *method,
                json_t *params, uint32_t timeout_ms)
{
    json_t *error = NULL;
    char err[CLI_ERR_BYTES];
    int rc;

    memset(e, 0, sizeof(*e));
    *result = NULL;
    rc = httpc_jsonrpc(result, &error, err, sizeof(err), ctx->node, method, params, timeout_ms);
    if (rc != 0) {
        if (rc == -BEX_EINVAL)
            e->exit = CLI_EXIT_USAGE;
        else if (rc == -BEX_EIO || rc == -BEX_ETIMEOUT || rc == -BEX_EFULL || rc == -BEX_ECLOSED)
            e->exit = CLI_EXIT_UNREACHABLE;
        else
            e->exit = CLI_EXIT_FAIL;
        snprintf(e->message, sizeof(e->message), "node %.200s: %.200s", ctx->node, err[0] ? err : bex_strerror(rc));
        return e->exit;
    }
    if (error == NULL)
        return CLI_EXIT_OK;

    const char *message = json_string_value(json_object_get(error, "message"));
    const char *reason = json_string_value(json_object_get(json_object_get(error, "data"), "reason"));
    e->code = (long)json_integer_value(json_object_get(error, "code"));
    switch (e->code) {
    case -32004:
        e->exit = CLI_EXIT_NOTFOUND;
        break;
    case -32001:
        e->exit = CLI_EXIT_REJECTED;
        break;
    case -32010:
        e->exit = CLI_EXIT_UNREACHABLE;
        break;
    default:
        e->exit = CLI_EXIT_FAIL;
        break;
    }
    if (reason != NULL)
        snprintf(e->reason, sizeof(e->reason), "%s", reason);
    /* bexd's own rejections already begin with "transaction rejected". */
    bool says_rejected = message != NULL && strncmp(message, "transaction rejected", 20) == 0;
    snprintf(e->message, sizeof(e->message), "%s%.300s%s%.31s%s",
             e->code == -32001 && !says_rejected ? "tx rejected: " : "",
             message != NULL ? message : "error without a message", reason != NULL ? " (" : "",
             reason != NULL ? reason : "", reason != NULL ? ")" : "");
    json_decref(error);
    return e->exit;
}

int cli_rpc_report(const char *cmd, const struct cli_rpc_err *e)
{
    cli_error(cmd, "%s", e->message);
    return e->exit;
}

int cli_rpc(const struct cli_ctx *ctx, const char *cmd, json_t **result, const char *method, json_t *params,
            uint32_t timeout_ms)
{
    struct cli_rpc_err e;
    int rc = cli_rpc_try(ctx, result, &e, method, params, timeout_ms);
    return rc == CLI_EXIT_OK ? rc : cli_rpc_report(cmd, &e);
}

json_t *cli_msg_json(const ProtobufCMessage *m)
{
    char *text = NULL;
    json_t *j;
    if (contract_json_render(&text, m) != 0)
        return NULL;
    j = json_loads(text, 0, NULL);
    free(text);
    return j;
}

int cli_json_msg(ProtobufCMessage **out, const char *cmd, const ProtobufCMessageDescriptor *desc, const json_t *j)
{
    char err[CLI_ERR_BYTES];
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc;

    *out = NULL;
    if (text == NULL) {
        cli_error(cmd, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = contract_json_parse(out, err, sizeof(err), desc, text, strlen(text));
    free(text);
    if (rc != 0) {
        cli_error(cmd, "the node's answer is not a %s: %s", desc->name, rc == -BEX_EDECODE ? err : bex_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_query_msg(const struct cli_ctx *ctx, const char *cmd, struct cli_rpc_err *e, ProtobufCMessage **msg,
                  json_t **json, const char *contract, const char *query, const ProtobufCMessage *args)
{
    const ProtobufCMessageDescriptor *args_desc, *result_desc;
    struct cli_rpc_err own;
    json_t *params = NULL, *args_json = NULL, *result = NULL;
    int rc;

    if (msg != NULL)
        *msg = NULL;
    if (json != NULL)
        *json = NULL;
    BEX_ASSERT(contract_describe(&args_desc, &result_desc, contract, "query", query) == 0);
    BEX_ASSERT(args == NULL || args->descriptor == args_desc);
    if (args != NULL && (args_json = cli_msg_json(args)) == NULL) {
        cli_error(cmd, "out of memory");
        return CLI_EXIT_FAIL;
    }
    params = json_pack("{s:s, s:s}", "contract", contract, "query", query);
    if (params == NULL || (args_json != NULL && json_object_set_new(params, "args", args_json) != 0)) {
        if (params == NULL)
            json_decref(args_json);
        json_decref(params);
        cli_error(cmd, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = cli_rpc_try(ctx, &result, e != NULL ? e : &own, "state.query", params, CLI_RPC_TIMEOUT_MS);
    json_decref(params);
    if (rc != CLI_EXIT_OK)
        return e != NULL ? rc : cli_rpc_report(cmd, &own);
    if (msg != NULL && (rc = cli_json_msg(msg, cmd, result_desc, result)) != CLI_EXIT_OK) {
        json_decref(result);
        return rc;
    }
    if (json != NULL)
        *json = result;
    else
        json_decref(result);
    return CLI_EXIT_OK;
}

int cli_get_agency(const struct cli_ctx *ctx, const char *cmd, Bex__Agency **out, const char *id)
{
    Bex__NameArgs a = BEX__NAME_ARGS__INIT;
    a.id = (char *)id;
    return cli_query_msg(ctx, cmd, NULL, (ProtobufCMessage **)out, NULL, "agency", "get", &a.base);
}

int cli_get_resource(const struct cli_ctx *ctx, const char *cmd, Bex__Resource **out, const char *id)
{
    Bex__NameArgs a = BEX__NAME_ARGS__INIT;
    a.id = (char *)id;
    return cli_query_msg(ctx, cmd, NULL, (ProtobufCMessage **)out, NULL, "catalog", "get", &a.base);
}

int cli_query_json(const struct cli_ctx *ctx, const char *cmd, json_t **result, const char *contract,
                   const char *query, json_t *args)
{
    json_t *params = json_pack("{s:s, s:s}", "contract", contract, "query", query);
    int rc;

    *result = NULL;
    if (params == NULL || (args != NULL && json_object_set(params, "args", args) != 0)) {
        json_decref(params);
        cli_error(cmd, "out of memory");
        return CLI_EXIT_FAIL;
    }
    rc = cli_rpc(ctx, cmd, result, "state.query", params, CLI_RPC_TIMEOUT_MS);
    json_decref(params);
    return rc;
}

int cli_query_all(const struct cli_ctx *ctx, const char *cmd, json_t **items, bool *more, const char *contract,
                  const char *query, json_t *args, const char *items_key, size_t max)
{
    json_t *page = NULL;
    int rc = CLI_EXIT_OK;

    *more = false;
    if ((*items = json_array()) == NULL || json_object_set_new(args, "limit", json_integer(max < CLI_PAGE_LIMIT ? (json_int_t)max + 1 : CLI_PAGE_LIMIT)) != 0 ||
        json_object_set_new(args, "cursor", json_string("")) != 0) {
        cli_error(cmd, "out of memory");
        rc = CLI_EXIT_FAIL;
        goto fail;
    }
    for (size_t pages = 0;; pages++) {
        /* Filtered pages may be empty, so the rows alone do not bound the walk. */
        if (pages == CLI_PAGES_MAX) {
            *more = true;
            break;
        }
        if ((rc = cli_query_json(ctx, cmd, &page, contract, query, args)) != CLI_EXIT_OK)
            goto fail;
        json_t *arr = json_object_get(page, items_key);
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        size_t i;
        json_t *v;
        if (!json_is_array(arr)) {
            cli_error(cmd, "the node's %s.%s answer has no '%s'", contract, query, items_key);
            rc = CLI_EXIT_FAIL;
            goto fail;
        }
        json_array_foreach(arr, i, v)
        {
            if (json_array_size(*items) == max) {
                *more = true;
                break;
            }
            if (json_array_append(*items, v) != 0) {
                cli_error(cmd, "out of memory");
                rc = CLI_EXIT_FAIL;
                goto fail;
            }
        }
        if (*more || next == NULL || next[0] == '\0')
            break;
        /* A cursor that does not move would loop for ever. */
        const char *prev = json_string_value(json_object_get(args, "cursor"));
        if (prev != NULL && strcmp(prev, next) == 0) {
            cli_error(cmd, "the node returned the same cursor twice");
            rc = CLI_EXIT_FAIL;
            goto fail;
        }
        if (json_object_set_new(args, "cursor", json_string(next)) != 0) {
            cli_error(cmd, "out of memory");
            rc = CLI_EXIT_FAIL;
            goto fail;
        }
        json_decref(page);
        page = NULL;
    }
    json_decref(page);
    return CLI_EXIT_OK;
fail:
    json_decref(page);
    json_decref(*items);
    *items = NULL;
    return rc;
}
