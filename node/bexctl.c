/*
 * bexctl: the command-line client. This file only dispatches; the commands
 * live in the library (cli.h), one entry each in the table below.
 */
#include "bex.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int help_run(struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_command help = {
    .name = "help",
    .summary = "show the commands, or the options of one command",
    .usage = "usage: bexctl help [COMMAND]\n",
    .run = help_run,
};

static const struct cli_command *const commands[] = {
    &cli_status, &cli_peers, &cli_tx,    &cli_block,  &cli_agency, &cli_catalog, &cli_grant,
    &cli_record, &cli_access, &cli_verify, &cli_audit, &cli_query, &cli_keygen,  &cli_testnet, &help,
};

static const struct cli_command *find(const char *name)
{
    for (size_t i = 0; i < BEX_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bexctl [GLOBAL OPTIONS] COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < BEX_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n%s", cli_globals_usage);
    fprintf(f, "\nexit codes: 0 ok, 1 failure, 2 usage, 3 tx rejected or failed, 4 node unreachable,\n"
               "5 not found. Run 'bexctl help COMMAND' for the options of a command.\n");
}

static int help_run(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd;

    if (argc < 2) {
        usage(ctx->out);
        return CLI_EXIT_OK;
    }
    if (cli_is_help(argv[1])) {
        fputs(help.usage, ctx->out);
        return CLI_EXIT_OK;
    }
    if (argc > 2)
        return cli_usage_error(&help, "expected one command name");
    if ((cmd = find(argv[1])) == NULL)
        return cli_usage_error(&help, "unknown command '%s'", argv[1]);
    fputs(cmd->usage, ctx->out);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    const struct cli_command *cmd;
    struct cli_ctx ctx;
    int first, rc;

    if ((rc = cli_globals_parse(&ctx, &first, argc, argv)) != CLI_EXIT_OK)
        return rc;
    if (first >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_is_help(argv[first])) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if ((cmd = find(argv[first])) == NULL) {
        fprintf(stderr, "bexctl: unknown command '%s' (see 'bexctl --help')\n", argv[first]);
        return CLI_EXIT_USAGE;
    }
    return cmd->run(&ctx, argc - first, argv + first);
}
