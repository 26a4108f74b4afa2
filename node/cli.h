/*
 * cli.h: the commands of bexctl. bexctl.c only dispatches; each command is a
 * library function so tests can run it and new commands plug in by adding
 * one entry to the table in bexctl.c.
 */
#ifndef BEX_CLI_H
#define BEX_CLI_H

#include "bex.h"

#include <stdbool.h>
#include <stdio.h>

/* Exit codes of every command. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1  /* the command could not do its work */
#define CLI_EXIT_USAGE 2 /* the command line is wrong */

struct cli_command {
    const char *name;
    const char *summary; /* one line, for the command list */
    const char *usage;   /* the full help text, ending with a newline */
    /* Runs the command; argv[0] is the command name. Returns a CLI_EXIT_*. */
    int (*run)(int argc, char **argv);
};

/* Prints "bexctl NAME: message" and a newline to stderr. */
void cli_error(const char *name, const char *fmt, ...) BEX_PRINTF(2, 3);

/* Prints the error, points at 'bexctl help NAME' and returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...) BEX_PRINTF(2, 3);

/* True when arg is "--help" or "-h". */
bool cli_is_help(const char *arg);

/* bexctl keygen: create a passphrase-encrypted secp256k1 key file. */
extern const struct cli_command cli_keygen;

/* bexctl testnet init: keys, genesis and node configs for a local network. */
extern const struct cli_command cli_testnet;

#endif
