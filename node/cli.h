/*
 * cli.h: the commands of bexctl. bexctl.c only dispatches; each command is a
 * library function so tests can run it and new commands plug in by adding
 * one entry to the table in bexctl.c.
 *
 * Every command gets the global options (struct cli_ctx), parsed from the
 * command line before the command name. Results go to ctx->out: aligned
 * tables and short summaries, or one JSON document with --json. Errors are
 * one line on stderr, "bexctl COMMAND: what went wrong", and the exit code
 * says what kind of failure it was (CLI_EXIT_*).
 */
#ifndef BEX_CLI_H
#define BEX_CLI_H

#include "bex.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes of every command. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1        /* the command could not do its work */
#define CLI_EXIT_USAGE 2       /* the command line is wrong */
#define CLI_EXIT_REJECTED 3    /* the node refused the tx, or its receipt is a failure */
#define CLI_EXIT_UNREACHABLE 4 /* the node cannot be reached or is unavailable */
#define CLI_EXIT_NOTFOUND 5    /* the tx, block, resource, ... does not exist */

#define CLI_KEYS_MAX 16                      /* --key files: signers of one tx */
#define CLI_NODE_DEFAULT "http://127.0.0.1:26701"
#define CLI_NODE_ENV "BEX_NODE"
#define CLI_AGENCY_ENV "BEX_AGENCY"
#define CLI_TIMEOUT_MS_DEFAULT 30000u        /* --timeout default */
#define CLI_TIMEOUT_S_MAX 3600u              /* --timeout at most an hour */

/* The global options, valid for the whole run of a command. */
struct cli_ctx {
    const char *node;                /* the node's RPC URL */
    const char *keys[CLI_KEYS_MAX];  /* signing keystores, in signing order */
    size_t key_count;
    const char *enc_key;             /* the agency's encryption keystore, or NULL */
    const char *agency;              /* the sender agency, or NULL: found by key */
    const char *passphrase_file;     /* or NULL: BEX_PASSPHRASE, else the terminal */
    bool json;                       /* print one JSON document */
    bool no_wait;                    /* return once a tx is accepted */
    uint32_t timeout_ms;             /* waiting for a commit or an owner's answer */
    FILE *out;                       /* where results go */
};

struct cli_command {
    const char *name;
    const char *summary; /* one line, for the command list */
    const char *usage;   /* the full help text, ending with a newline */
    /* Runs the command; argv[0] is the command name. Returns a CLI_EXIT_*. */
    int (*run)(struct cli_ctx *ctx, int argc, char **argv);
};

/* Prints "bexctl NAME: message" and a newline to stderr. */
void cli_error(const char *name, const char *fmt, ...) BEX_PRINTF(2, 3);

/* Prints the error, points at 'bexctl help NAME' and returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...) BEX_PRINTF(2, 3);

/* True when arg is "--help" or "-h". */
bool cli_is_help(const char *arg);

/*
 * Fills ctx with the defaults (node from BEX_NODE or CLI_NODE_DEFAULT,
 * agency from BEX_AGENCY, out = stdout) and parses the global options at
 * argv[1..] up to the first argument that is not one: *cmd_index receives
 * its index (argc when there is none). The strings stay borrowed from argv
 * and the environment. Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after
 * printing what is wrong.
 */
BEX_MUST_USE int cli_globals_parse(struct cli_ctx *ctx, int *cmd_index, int argc, char **argv);

/* The text describing the global options, for the top-level help. */
extern const char cli_globals_usage[];

/* bexctl keygen: create a passphrase-encrypted secp256k1 key file. */
extern const struct cli_command cli_keygen;
/* bexctl status, peers, tx, block, query: the node and raw state. */
extern const struct cli_command cli_status;
extern const struct cli_command cli_peers;
extern const struct cli_command cli_tx;
extern const struct cli_command cli_block;
extern const struct cli_command cli_query;
/* bexctl agency, catalog, grant, record: the contracts. */
extern const struct cli_command cli_agency;
extern const struct cli_command cli_catalog;
extern const struct cli_command cli_grant;
extern const struct cli_command cli_record;
/* bexctl access and verify: a consumer reads or checks one record. */
extern const struct cli_command cli_access;
extern const struct cli_command cli_verify;
/* bexctl audit: who did what, when. */
extern const struct cli_command cli_audit;

/* bexctl testnet init: keys, genesis and node configs for a local network. */
extern const struct cli_command cli_testnet;

#endif
