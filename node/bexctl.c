/*
 * bexctl: the command-line client. This file only dispatches; the commands
 * live in the library (cli.h), one entry each in the table below.
 */
#include "bex.h"
#include "cli.h"

#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
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

/*
 * Global options that no command uses for itself may also follow the
 * command ("bexctl status --node URL"): they are moved in front of it.
 * --key and --agency are not moved, because record publish and audit give
 * them a meaning of their own.
 */
static char **hoist_globals(int argc, char **argv)
{
    static const char *const valued[] = {"--node", "--enc-key", "--passphrase-file", "--timeout"};
    char **out = calloc((size_t)argc + 1, sizeof *out);
    int n = 0, cmd = 1, k = 0;

    if (out == NULL)
        return argv;
    /* Find the command: the first word after the leading global options. */
    while (cmd < argc && strncmp(argv[cmd], "--", 2) == 0) {
        bool takes = strcmp(argv[cmd], "--key") == 0 || strcmp(argv[cmd], "--agency") == 0;

        for (size_t i = 0; i < BEX_ARRAY_LEN(valued); i++)
            takes = takes || strcmp(argv[cmd], valued[i]) == 0;
        cmd += takes ? 2 : 1;
    }
    out[n++] = argv[0];
    for (int i = cmd + 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--no-wait") == 0) {
            out[n++] = argv[i];
            continue;
        }
        for (k = 0; k < (int)BEX_ARRAY_LEN(valued); k++) {
            if (strcmp(argv[i], valued[k]) == 0 && i + 1 < argc) {
                out[n++] = argv[i];
                out[n++] = argv[++i];
                break;
            }
        }
    }
    for (int i = 1; i < argc && i <= cmd; i++) {
        if (i < argc)
            out[n++] = argv[i];
    }
    for (int i = cmd + 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                out[n++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--no-wait") == 0)
            continue;
        for (k = 0; k < (int)BEX_ARRAY_LEN(valued); k++) {
            if (strcmp(argv[i], valued[k]) == 0 && i + 1 < argc)
                break;
        }
        if (k < (int)BEX_ARRAY_LEN(valued)) {
            i++;
            continue;
        }
        out[n++] = argv[i];
    }
    BEX_ASSERT(n == argc);
    return out;
}

int main(int argc, char **argv)
{
    const struct cli_command *cmd;
    struct cli_ctx ctx;
    char **args = hoist_globals(argc, argv);
    int first, rc;

    if ((rc = cli_globals_parse(&ctx, &first, argc, args)) != CLI_EXIT_OK)
        goto done;
    if (first >= argc) {
        usage(stderr);
        rc = CLI_EXIT_USAGE;
    } else if (cli_is_help(args[first])) {
        usage(stdout);
        rc = CLI_EXIT_OK;
    } else if ((cmd = find(args[first])) == NULL) {
        fprintf(stderr, "bexctl: unknown command '%s' (see 'bexctl --help')\n", args[first]);
        rc = CLI_EXIT_USAGE;
    } else {
        rc = cmd->run(&ctx, argc - first, args + first);
    }
done:
    if (args != argv)
        free(args);
    return rc;
}
