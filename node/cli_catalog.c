/*
 * cli_catalog.c: bexctl catalog: the resources agencies offer.
 */
#include "cli_internal.h"

#include "contract.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_catalog = {
    .name = "catalog",
    .summary = "register, update, withdraw, list and show resources",
    .usage =
        "usage: bexctl --key FILE... catalog register FILE.json\n"
        "       bexctl --key FILE... catalog update FILE.json\n"
        "       bexctl --key FILE... catalog withdraw ID --reason TEXT\n"
        "       bexctl catalog list [--owner AGENCY] [--share unconditional|conditional|none]\n"
        "       bexctl catalog show ID\n"
        "\n"
        "register: offers a new resource, described by FILE.json (\"-\": standard\n"
        "input), a bex.Resource as JSON, e.g.\n"
        "  {\"id\": \"city.traffic/plates\", \"title\": \"Registered vehicles\",\n"
        "   \"share_type\": \"SHARE_CONDITIONAL\", \"share_conditions\": \"law enforcement\",\n"
        "   \"update_cycle\": \"daily\",\n"
        "   \"fields\": [{\"name\": \"owner\", \"type\": \"FIELD_STRING\"},\n"
        "              {\"name\": \"colour\", \"type\": \"FIELD_ENUM\",\n"
        "               \"enum_values\": [\"red\", \"blue\"]},\n"
        "              {\"name\": \"insured\", \"type\": \"FIELD_STRING\", \"sensitive\": true}],\n"
        "   \"roles\": [{\"role\": \"police\", \"read\": true, \"verify\": true}]}\n"
        "The id is \"<your agency>/<name>\". A NONE resource needs a \"legal_basis\".\n"
        "Owner, status, version and update time are set by the chain.\n"
        "update: replaces the description of an existing resource (version + 1).\n"
        "withdraw: stops offering ID; existing records stay, new grants are refused.\n"
        "list: resources of every agency, or of one owner or share type.\n"
        "show: one resource with its fields and role policies.\n",
    .run = run,
};

static int put(struct cli_ctx *ctx, int argc, char **argv, const char *method)
{
    Bex__CatalogPutArgs args = BEX__CATALOG_PUT_ARGS__INIT;
    ProtobufCMessage *res = NULL;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    char *text = NULL;
    size_t len;
    int rc = cli_args_parse(&a, ctx, &cli_catalog, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_catalog, "catalog %s takes one FILE.json", method);
    if (cli_read_file(&text, &len, a.pos[0], CLI_FILE_BYTES_MAX, err, sizeof(err)) != 0) {
        cli_error(cli_catalog.name, "%s", err);
        return CLI_EXIT_FAIL;
    }
    rc = contract_json_parse(&res, err, sizeof(err), &bex__resource__descriptor, text, len);
    free(text);
    if (rc != 0) {
        cli_error(cli_catalog.name, "%s is not a resource: %s", a.pos[0], rc == -BEX_EDECODE ? err : bex_strerror(rc));
        return CLI_EXIT_USAGE;
    }
    args.resource = (Bex__Resource *)res;
    rc = cli_tx_run(ctx, cli_catalog.name, "catalog", method, &args.base);
    contract_result_free(res);
    return rc;
}

static int withdraw(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--reason", CLI_OPT_VALUE}};
    Bex__CatalogWithdrawArgs args = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    struct cli_args a;
    int rc = cli_args_parse(&a, ctx, &cli_catalog, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_catalog, "catalog withdraw takes one resource id");
    if (a.val[0] == NULL || a.val[0][0] == '\0')
        return cli_usage_error(&cli_catalog, "withdrawing needs --reason TEXT");
    args.id = (char *)a.pos[0];
    args.reason = (char *)a.val[0];
    return cli_tx_run(ctx, cli_catalog.name, "catalog", "withdraw", &args.base);
}

/* "conditional" -> "SHARE_CONDITIONAL"; NULL when unknown. */
static const char *share_name(const char *s)
{
    static const char *const names[][2] = {{"unconditional", "SHARE_UNCONDITIONAL"},
                                           {"conditional", "SHARE_CONDITIONAL"},
                                           {"none", "SHARE_NONE"}};
    for (size_t i = 0; i < BEX_ARRAY_LEN(names); i++)
        if (strcasecmp(s, names[i][0]) == 0 || strcasecmp(s, names[i][1]) == 0)
            return names[i][1];
    return NULL;
}

/* The names of a resource's fields, comma-separated, sensitive ones marked '*'. */
static void field_names(char *out, size_t size, const json_t *fields)
{
    size_t i, used = 0;
    json_t *f;
    out[0] = '\0';
    json_array_foreach(fields, i, f)
    {
        if (used >= size)
            break;
        used += (size_t)snprintf(out + used, size - used, "%s%s%s", i ? "," : "",
                                 json_string_value(json_object_get(f, "name")),
                                 json_is_true(json_object_get(f, "sensitive")) ? "*" : "");
    }
}

static int list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_opt opts[] = {{"--owner", CLI_OPT_VALUE}, {"--share", CLI_OPT_VALUE}};
    static const char *const heads[] = {"ID", "TITLE", "SHARE", "FIELDS", "VERSION", "STATUS"};
    struct cli_args a;
    struct cli_table t;
    json_t *items = NULL, *args, *r;
    const char *share = NULL;
    bool more;
    size_t i;
    int rc = cli_args_parse(&a, ctx, &cli_catalog, opts, BEX_ARRAY_LEN(opts), argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 0)
        return cli_usage_error(&cli_catalog, "catalog list takes no arguments");
    if (a.val[1] != NULL && (share = share_name(a.val[1])) == NULL)
        return cli_usage_error(&cli_catalog, "--share is unconditional, conditional or none");
    if ((args = json_object()) == NULL ||
        (a.val[0] != NULL && json_object_set_new(args, "owner", json_string(a.val[0])) != 0) ||
        (share != NULL && json_object_set_new(args, "share_type", json_string(share)) != 0)) {
        json_decref(args);
        return cli_oom(cli_catalog.name);
    }
    rc = cli_query_all(ctx, cli_catalog.name, &items, &more, "catalog", "list", args, "resources",
                       CLI_LIST_ROWS_MAX);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_table_init(&t, BEX_ARRAY_LEN(heads), heads);
    json_array_foreach(items, i, r)
    {
        char fields[512], version[24];
        field_names(fields, sizeof(fields), json_object_get(r, "fields"));
        const char *st = json_string_value(json_object_get(r, "share_type"));
        const char *status = json_string_value(json_object_get(r, "status"));
        const char *cells[] = {json_string_value(json_object_get(r, "id")),
                               json_string_value(json_object_get(r, "title")),
                               st != NULL ? cli_enum_short(st) : NULL,
                               fields,
                               cli_json_text(version, sizeof(version), r, "version"),
                               status != NULL ? cli_enum_short(status) : NULL};
        if (cli_table_add(&t, cells) != 0)
            break;
    }
    rc = cli_list_print(ctx, cli_catalog.name, &t, items, "resources", more);
    json_decref(items);
    return rc;
}

/* The human view of a resource: its scalars, then fields and roles as tables. */
static int print_resource(FILE *f, const json_t *r)
{
    static const char *const fheads[] = {"FIELD", "TYPE", "SENSITIVE", "VALUES"};
    static const char *const rheads[] = {"ROLE", "READ", "VERIFY"};
    json_t *top = json_object(), *v;
    struct cli_table t;
    const char *key;
    size_t i;
    char when[32];
    int rc;

    if (top == NULL)
        return -BEX_ENOMEM;
    json_object_foreach((json_t *)r, key, v)
    {
        if (strcmp(key, "fields") != 0 && strcmp(key, "roles") != 0)
            json_object_set(top, key, v);
    }
    cli_format_time(when, (uint64_t)json_integer_value(json_object_get(r, "updated_ms")));
    json_object_set_new(top, "updated", json_string(when));
    rc = cli_print_fields(f, top);
    json_decref(top);
    if (rc != 0)
        return rc;

    fputc('\n', f);
    cli_table_init(&t, BEX_ARRAY_LEN(fheads), fheads);
    json_array_foreach(json_object_get(r, "fields"), i, v)
    {
        char values[512] = "";
        size_t k, used = 0;
        json_t *e;
        json_array_foreach(json_object_get(v, "enum_values"), k, e)
        {
            if (used < sizeof(values))
                used += (size_t)snprintf(values + used, sizeof(values) - used, "%s%s", k ? "," : "",
                                         json_string_value(e));
        }
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *cells[] = {json_string_value(json_object_get(v, "name")), type ? cli_enum_short(type) : NULL,
                               json_is_true(json_object_get(v, "sensitive")) ? "yes (verify only)" : "no",
                               values[0] ? values : NULL};
        if ((rc = cli_table_add(&t, cells)) != 0)
            break;
    }
    if (rc == 0)
        rc = cli_table_print(&t, f);
    cli_table_close(&t);
    if (rc != 0 || json_array_size(json_object_get(r, "roles")) == 0)
        return rc;

    fputc('\n', f);
    cli_table_init(&t, BEX_ARRAY_LEN(rheads), rheads);
    json_array_foreach(json_object_get(r, "roles"), i, v)
    {
        const char *cells[] = {json_string_value(json_object_get(v, "role")),
                               json_is_true(json_object_get(v, "read")) ? "yes" : "no",
                               json_is_true(json_object_get(v, "verify")) ? "yes" : "no"};
        if ((rc = cli_table_add(&t, cells)) != 0)
            break;
    }
    if (rc == 0)
        rc = cli_table_print(&t, f);
    cli_table_close(&t);
    return rc;
}

static int show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_args a;
    json_t *args, *res = NULL;
    int rc = cli_args_parse(&a, ctx, &cli_catalog, NULL, 0, argc, argv, 2);

    if (rc != CLI_EXIT_OK || a.help)
        return rc;
    if (a.npos != 1)
        return cli_usage_error(&cli_catalog, "catalog show takes one resource id");
    if ((args = json_pack("{s:s}", "id", a.pos[0])) == NULL)
        return cli_oom(cli_catalog.name);
    rc = cli_query_json(ctx, cli_catalog.name, &res, "catalog", "get", args);
    json_decref(args);
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((ctx->json ? cli_print_json(ctx->out, res) : print_resource(ctx->out, res)) != 0) {
        cli_error(cli_catalog.name, "cannot write the output");
        rc = CLI_EXIT_FAIL;
    }
    json_decref(res);
    return rc;
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error(&cli_catalog, "expected register, update, withdraw, list or show");
    if (cli_is_help(argv[1])) {
        fputs(cli_catalog.usage, ctx->out);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "register") == 0 || strcmp(argv[1], "update") == 0)
        return put(ctx, argc, argv, argv[1]);
    if (strcmp(argv[1], "withdraw") == 0)
        return withdraw(ctx, argc, argv);
    if (strcmp(argv[1], "list") == 0)
        return list(ctx, argc, argv);
    if (strcmp(argv[1], "show") == 0)
        return show(ctx, argc, argv);
    return cli_usage_error(&cli_catalog, "unknown subcommand '%s'", argv[1]);
}
