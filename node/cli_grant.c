/*
 * cli_grant.c: bexctl grant: consumers ask for fields of a resource, owners'
 * officers decide, and either side follows the grants' states.
 */
#include "cli_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_grant = {
    .name = "grant",
    .summary = "request, approve, reject, revoke, escalate, list and show grants",
    .usage =
        "usage: bexctl --key FILE grant request RESOURCE --fields A,B --purpose TEXT\n"
        "                                [--mode read|verify] --expires DAYS\n"
        "       bexctl --key FILE... grant approve ID [--reason TEXT]\n"
        "       bexctl --key FILE... grant reject ID --reason TEXT\n"
        "       bexctl --key FILE... grant revoke ID --reason TEXT\n"
        "       bexctl --key FILE grant escalate ID [--reason TEXT]\n"
        "       bexctl grant list [--resource R | --consumer A | --owner A] [--status S] [--overdue]\n"
        "       bexctl grant show ID\n"
        "\n"
        "request: the consumer asks for FIELDS of RESOURCE for a stated purpose,\n"
        "in read mode (values are released) or verify mode (only yes/no answers\n"
        "about a claimed value; the only mode for sensitive fields), until DAYS\n"
        "from now (or a duration like 12h). UNCONDITIONAL resources grant at once;\n"
        "CONDITIONAL ones wait for the owner's officers, who have 7 days to decide;\n"
        "NONE resources are never shared. Prints the grant id.\n"
        "approve, reject: the owner decides a PENDING grant; the owner's threshold\n"
        "of officers must sign: give one --key per officer.\n"
        "revoke: the owner ends an ACTIVE grant; later accesses are refused.\n"
        "escalate: the consumer flags a request left undecided past its deadline.\n"
        "list: grants on a resource, of a consumer or of an owner; --status is\n"
        "pending, active, rejected, revoked or expired; --overdue keeps requests\n"
        "past their review deadline.\n",
    .run = run,
};

static int request(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--fields", CLI_OPT_VALUE},
                                          {"--purpose", CLI_OPT_VALUE},
                                          {"--mode", CLI_OPT_VALUE},
                                          {"--expires", CLI_OPT_VALUE}};
    Bex__GrantRequestArgs args = BEX__GRANT_REQUEST_ARGS__INIT;
    const char *fields[CLI_FIELDS_MAX];
    char buf[CLI_FIELDS_MAX * 66];
    struct cli_args a;
    uint64_t ttl;
    size_t n;
    int rc = cli_args_parse(&a, ctx, &cli_grant, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_grant, "grant request takes one resource id");
    if (a.val[0] == NULL || cli_split(fields, CLI_FIELDS_MAX, &n, buf, sizeof(buf), a.val[0]) != 0)
        return cli_usage_error(&cli_grant, "--fields takes a comma-separated list of 1 to %d field names",
                               CLI_FIELDS_MAX);
    if (a.val[1] == NULL || a.val[1][0] == '\0')
        return cli_usage_error(&cli_grant, "a request states its --purpose");
    if (a.val[2] == NULL || strcasecmp(a.val[2], "read") == 0)
        args.mode = BEX__ACCESS_MODE__MODE_READ;
    else if (strcasecmp(a.val[2], "verify") == 0)
        args.mode = BEX__ACCESS_MODE__MODE_VERIFY;
    else
        return cli_usage_error(&cli_grant, "--mode is read or verify");
    if (a.val[3] == NULL || cli_parse_duration(&ttl, a.val[3], CLI_DAY_MS) != 0)
        return cli_usage_error(&cli_grant, "--expires takes days (e.g. 90) or a duration (12h, 30d)");
    args.resource = (char *)a.pos[0];
    args.fields = (char **)fields;
    args.n_fields = n;
    args.purpose = (char *)a.val[1];
    args.expiry_ms = cli_now_ms() + ttl;
    return cli_tx_run(ctx, cli_grant.name, "grant", "request", &args.base);
}

/* approve, reject, revoke, escalate: a grant id and a reason. */
static int act(struct cli_ctx *ctx, int argc, char **argv, const char *method, bool reason_required)
{
    static const struct cli_opt opts[] = {{"--reason", CLI_OPT_VALUE}};
    Bex__GrantActArgs args = BEX__GRANT_ACT_ARGS__INIT;
    struct cli_args a;
    int rc = cli_args_parse(&a, ctx, &cli_grant, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_grant, "grant %s takes one grant id", method);
    if (cli_parse_u64(&args.grant_id, a.pos[0], 1, UINT64_MAX) != 0)
        return cli_usage_error(&cli_grant, "a grant id is a positive number, not '%.40s'", a.pos[0]);
    if (reason_required && (a.val[0] == NULL || a.val[0][0] == '\0'))
        return cli_usage_error(&cli_grant, "grant %s needs --reason TEXT", method);
    args.reason = (char *)(a.val[0] != NULL ? a.val[0] : "");
    return cli_tx_run(ctx, cli_grant.name, "grant", method, &args.base);
}

/* "active" -> "GRANT_ACTIVE"; NULL when unknown. */
static const char *status_name(const char *s)
{
    static const char *const names[][2] = {{"pending", "GRANT_PENDING"},   {"active", "GRANT_ACTIVE"},
                                           {"rejected", "GRANT_REJECTED"}, {"revoked", "GRANT_REVOKED"},
                                           {"expired", "GRANT_EXPIRED"}};
    for (size_t i = 0; i < BEX_ARRAY_LEN(names); i++)
        if (strcasecmp(s, names[i][0]) == 0 || strcasecmp(s, names[i][1]) == 0)
            return names[i][1];
    return NULL;
}

static int list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--resource", CLI_OPT_VALUE},
                                          {"--consumer", CLI_OPT_VALUE},
                                          {"--owner", CLI_OPT_VALUE},
                                          {"--status", CLI_OPT_VALUE},
                                          {"--overdue", 0}};
    static const char *const filters[] = {"resource", "consumer", "owner"};
    static const char *const heads[] = {"ID", "RESOURCE", "CONSUMER", "MODE", "STATUS", "FIELDS", "EXPIRES"};
    struct cli_args a;
    struct cli_table t;
    json_t *items = NULL, *args, *g;
    const char *status = NULL;
    bool more;
    size_t i, nfilters = 0;
    int rc = cli_args_parse(&a, ctx, &cli_grant, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 0)
        return cli_usage_error(&cli_grant, "grant list takes no arguments");
    for (i = 0; i < BEX_ARRAY_LEN(filters); i++)
        nfilters += a.val[i] != NULL;
    if (nfilters > 1)
        return cli_usage_error(&cli_grant, "filter by one of --resource, --consumer, --owner");
    if (a.val[3] != NULL && (status = status_name(a.val[3])) == NULL)
        return cli_usage_error(&cli_grant, "--status is pending, active, rejected, revoked or expired");
    if ((args = json_object()) == NULL)
        return cli_oom(cli_grant.name);
    for (i = 0; i < BEX_ARRAY_LEN(filters); i++)
        if (a.val[i] != NULL && json_object_set_new(args, filters[i], json_string(a.val[i])) != 0)
            rc = CLI_EXIT_FAIL;
    if ((status != NULL && json_object_set_new(args, "status", json_string(status)) != 0) ||
        (a.val[4] != NULL && json_object_set_new(args, "overdue_only", json_true()) != 0))
        rc = CLI_EXIT_FAIL;
    if (rc != CLI_EXIT_OK) {
        json_decref(args);
        return cli_oom(cli_grant.name);
    }
    rc = cli_query_all(ctx, cli_grant.name, &items, &more, "grant", "list", args, "grants", CLI_LIST_ROWS_MAX);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(items, i, g)
    {
        char id[24], fields[512] = "", state[48], expires[32];
        size_t k, used = 0;
        json_t *f;
        json_array_foreach(json_object_get(g, "fields"), k, f)
        {
            if (used < sizeof(fields))
                used += (size_t)snprintf(fields + used, sizeof(fields) - used, "%s%s", k ? "," : "",
                                         json_string_value(f));
        }
        const char *st = json_string_value(json_object_get(g, "status"));
        const char *mode = json_string_value(json_object_get(g, "mode"));
        snprintf(state, sizeof(state), "%s%s%s", st != NULL ? cli_enum_short(st) : "?",
                 json_is_true(json_object_get(g, "overdue")) ? " (overdue)" : "",
                 json_is_true(json_object_get(g, "escalated")) ? " (escalated)" : "");
        cli_format_time(expires, (uint64_t)json_integer_value(json_object_get(g, "expiry_ms")));
        const char *cells[] = {cli_json_text(id, sizeof(id), g, "id"),
                               json_string_value(json_object_get(g, "resource")),
                               json_string_value(json_object_get(g, "consumer")),
                               mode != NULL ? cli_enum_short(mode) : NULL,
                               state,
                               fields,
                               expires};
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    rc = cli_list_print(ctx, cli_grant.name, &t, items, "grants", more);
    json_decref(items);
    return rc;
}

static int show(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const times[] = {"expiry_ms", "requested_ms", "review_deadline_ms", "decided_ms",
                                        "escalated_ms"};
    struct cli_args a;
    json_t *args, *res = NULL;
    uint64_t id;
    int rc = cli_args_parse(&a, ctx, &cli_grant, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1 || cli_parse_u64(&id, a.pos[0], 1, (1ull << 53) - 1) != 0)
        return cli_usage_error(&cli_grant, "grant show takes one grant id");
    if ((args = json_pack("{s:I}", "id", (json_int_t)id)) == NULL)
        return cli_oom(cli_grant.name);
    rc = cli_query_json(ctx, cli_grant.name, &res, "grant", "get", args);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!ctx->json) {
        /* Times read better as dates than as milliseconds. */
        for (size_t i = 0; i < BEX_ARRAY_LEN(times); i++) {
            char when[32];
            json_t *v = json_object_get(res, times[i]);
            if (!json_is_integer(v))
                continue;
            cli_format_time(when, (uint64_t)json_integer_value(v));
            json_object_set_new(res, times[i], json_string(when));
        }
    }
    if ((ctx->json ? cli_print_json(ctx->out, res) : cli_print_fields(ctx->out, res)) != 0) {
        cli_error(cli_grant.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(res);
    return rc;
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error(&cli_grant, "expected request, approve, reject, revoke, escalate, list or show");
    if (cli_is_help(argv[1])) {
        fputs(cli_grant.usage, ctx->out);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "request") == 0)
        return request(ctx, argc, argv);
    if (strcmp(argv[1], "approve") == 0)
        return act(ctx, argc, argv, "approve", false);
    if (strcmp(argv[1], "reject") == 0)
        return act(ctx, argc, argv, "reject", true);
    if (strcmp(argv[1], "revoke") == 0)
        return act(ctx, argc, argv, "revoke", true);
    if (strcmp(argv[1], "escalate") == 0)
        return act(ctx, argc, argv, "escalate", false);
    if (strcmp(argv[1], "list") == 0)
        return list(ctx, argc, argv);
    if (strcmp(argv[1], "show") == 0)
        return show(ctx, argc, argv);
    return cli_usage_error(&cli_grant, "unknown subcommand '%s'", argv[1]);
}
