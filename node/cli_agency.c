/*
 * cli_agency.c: bexctl agency list|show: the members of the consortium.
 */
#include "cli_internal.h"

#include <string.h>

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_agency = {
    .name = "agency",
    .summary = "list the member agencies, or show one",
    .usage = "usage: bexctl agency list [--json]\n"
             "       bexctl agency show ID [--json]\n"
             "\n"
             "list: every member agency: id, name, roles, and how many of its officers\n"
             "must sign its decisions (M of N).\n"
             "show: one agency: its roles, officer keys and threshold, node key and\n"
             "encryption key (the key records are sealed and released to).\n",
    .run = run,
};

static int list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const heads[] = {"ID", "NAME", "ROLES", "OFFICERS"};
    struct cli_args a;
    struct cli_table t;
    json_t *items = NULL, *args, *ag;
    bool more;
    size_t i;
    int rc = cli_args_parse(&a, ctx, &cli_agency, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 0)
        return cli_usage_error(&cli_agency, "agency list takes no arguments");
    if ((args = json_object()) == NULL)
        return cli_oom(cli_agency.name);
    rc = cli_query_all(ctx, cli_agency.name, &items, &more, "agency", "list", args, "agencies", CLI_LIST_ROWS_MAX);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(items, i, ag)
    {
        char roles[512] = "", officers[32];
        size_t k, used = 0;
        json_t *r;
        json_array_foreach(json_object_get(ag, "roles"), k, r)
        {
            if (json_is_string(r) && used < sizeof(roles))
                used += (size_t)snprintf(roles + used, sizeof(roles) - used, "%s%s", k ? "," : "",
                                         json_string_value(r));
        }
        snprintf(officers, sizeof(officers), "%" JSON_INTEGER_FORMAT " of %zu",
                 json_integer_value(json_object_get(ag, "threshold")),
                 json_array_size(json_object_get(ag, "officer_keys")));
        const char *cells[] = {json_string_value(json_object_get(ag, "id")),
                               json_string_value(json_object_get(ag, "name")), roles, officers};
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    rc = cli_list_print(ctx, cli_agency.name, &t, items, "agencies", more);
    json_decref(items);
    return rc;
}

static int show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_args a;
    json_t *args, *res = NULL;
    int rc = cli_args_parse(&a, ctx, &cli_agency, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_agency, "expected one agency id");
    if ((args = json_pack("{s:s}", "id", a.pos[0])) == NULL)
        return cli_oom(cli_agency.name);
    rc = cli_query_json(ctx, cli_agency.name, &res, "agency", "get", args);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((ctx->json ? cli_print_json(ctx->out, res) : cli_print_fields(ctx->out, res)) != 0) {
        cli_error(cli_agency.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(res);
    return rc;
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error(&cli_agency, "expected list or show");
    if (cli_is_help(argv[1])) {
        fputs(cli_agency.usage, ctx->out);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "list") == 0)
        return list(ctx, argc, argv);
    if (strcmp(argv[1], "show") == 0)
        return show(ctx, argc, argv);
    return cli_usage_error(&cli_agency, "unknown subcommand '%s'", argv[1]);
}
