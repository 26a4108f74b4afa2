/*
 * cli_internal.h: what the bexctl commands (node/cli_*.c) share: option
 * parsing, output (tables, fields, JSON), the node's RPC with failures
 * mapped to exit codes, queries, signing and submitting transactions, and
 * the record keys of the sealing scheme. Nothing outside the commands and
 * their tests includes it.
 *
 * Functions returning int here return a CLI_EXIT_* code unless they say
 * otherwise; a function that returns anything but CLI_EXIT_OK has already
 * printed one line saying why, prefixed with the command name `cmd`.
 */
#ifndef BEX_CLI_INTERNAL_H
#define BEX_CLI_INTERNAL_H

#include "bex.h"
#include "bex.pb-c.h"
#include "cli.h"
#include "crypto.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_POS_MAX 8                /* positional arguments of a command */
#define CLI_OPTS_MAX 16              /* options a command knows */
#define CLI_MULTI_MAX 64             /* values of a repeatable option */
#define CLI_RPC_TIMEOUT_MS 10000u    /* a call that does not wait */
#define CLI_RPC_SLACK_MS 5000u       /* transport time on top of a server-side wait */
#define CLI_WAIT_CALL_MS_MAX 60000u  /* tx.wait's own maximum */
#define CLI_POLL_MS 250u             /* between polls for an owner's answer */
#define CLI_LIST_ROWS_MAX 10000u     /* rows a list gathers over all pages */
#define CLI_PAGE_LIMIT 500u          /* items asked per page */
#define CLI_PAGES_MAX 1000u          /* pages one list walks */
#define CLI_BATCH_TXS 200u           /* transactions per tx.submit_batch */
#define CLI_NONCE_ATTEMPTS 3         /* submissions of one write when its nonce is taken */
#define CLI_LINE_BYTES_MAX (1u << 20) /* a line of a records file */
#define CLI_FILE_BYTES_MAX (1u << 20) /* a resource JSON file */
#define CLI_FIELDS_MAX 64            /* fields of one record (the contract's bound) */
#define CLI_TABLE_COLS_MAX 12
#define CLI_TABLE_ROWS_MAX 100000u
#define CLI_CELL_BYTES_MAX 4096      /* longer cells are cut with "..." */
#define CLI_ID_BYTES_MAX 64          /* an agency id, with room for its NUL */
#define CLI_ERR_BYTES 256
#define CLI_DAY_MS (24ull * 3600 * 1000)

_Static_assert(CLI_MULTI_MAX >= CLI_FIELDS_MAX, "--field may name every field of a record");
_Static_assert(CLI_BATCH_TXS <= 1000, "tx.submit_batch takes at most 1000");
_Static_assert(CLI_PAGE_LIMIT <= 500, "queries cap a page at 500");

/* ------------------------------------------------------------ arguments */

enum cli_opt_flags {
    CLI_OPT_VALUE = 1 << 0, /* takes a value: "--name VALUE" or "--name=VALUE" */
    CLI_OPT_MULTI = 1 << 1, /* may repeat; values collect in cli_args.multi */
};

struct cli_opt {
    const char *name; /* "--fields" */
    unsigned flags;
};

/*
 * A parsed command line. val[i] belongs to opts[i]: NULL when absent, ""
 * for a flag that is present, else the (last) value. Everything points
 * into argv.
 */
struct cli_args {
    const char *pos[CLI_POS_MAX];
    size_t npos;
    const char *val[CLI_OPTS_MAX];
    const char *multi[CLI_MULTI_MAX];
    size_t nmulti;
    bool help; /* --help was given and the usage printed: exit 0 */
};

/*
 * Parses argv[first..] for cmd against opts (at most CLI_OPTS_MAX; at most
 * one CLI_OPT_MULTI). The global options other than --key and --agency
 * (--json, --no-wait, --timeout, --node, --enc-key, --passphrase-file) are
 * accepted anywhere and set ctx;
 * "--help" prints cmd->usage to ctx->out; "--" ends the options. Returns
 * CLI_EXIT_OK or CLI_EXIT_USAGE.
 */
BEX_MUST_USE int cli_args_parse(struct cli_args *a, struct cli_ctx *ctx, const struct cli_command *cmd,
                                const struct cli_opt *opts, size_t nopts, int argc, char **argv, int first);

/* Parses a whole decimal number in [min, max]. Returns 0 or -BEX_EINVAL. */
BEX_MUST_USE int cli_parse_u64(uint64_t *out, const char *s, uint64_t min, uint64_t max);

/*
 * Parses a duration: a number with a unit s, m, h or d ("90m", "7d"), or a
 * bare number counted in unit_ms. Zero and more than ten years are refused.
 * Returns 0 or -BEX_EINVAL.
 */
BEX_MUST_USE int cli_parse_duration(uint64_t *ms, const char *s, uint64_t unit_ms);

/*
 * Parses a point in time as milliseconds since the epoch: "YYYY-MM-DD"
 * (midnight UTC), "YYYY-MM-DDTHH:MM:SSZ", or an age before now_ms ("24h",
 * "7d"). Returns 0 or -BEX_EINVAL.
 */
BEX_MUST_USE int cli_parse_time(uint64_t *ms, const char *s, uint64_t now_ms);

/*
 * Splits a comma-separated list into at most max non-empty items, written
 * into buf (buf_size bytes, a copy of s) and pointed to by items.
 * Returns 0, -BEX_EINVAL (an empty item) or -BEX_ELIMIT (too many, too long).
 */
BEX_MUST_USE int cli_split(const char **items, size_t max, size_t *n, char *buf, size_t buf_size, const char *s);

/*
 * Reads the whole file at path ("-": standard input) into *out (malloc'd,
 * NUL-terminated) and sets *len. Returns 0, -BEX_EIO or -BEX_ELIMIT (more
 * than max bytes) or -BEX_ENOMEM, with err set.
 */
BEX_MUST_USE int cli_read_file(char **out, size_t *len, const char *path, size_t max, char *err, size_t err_len);

/* The wall clock in milliseconds since the epoch. */
uint64_t cli_now_ms(void);

/* A monotonic clock in milliseconds, for deadlines. */
uint64_t cli_mono_ms(void);

/* --------------------------------------------------------------- output */

/* An aligned text table; cells are copied. */
struct cli_table {
    size_t ncols;
    const char *heads[CLI_TABLE_COLS_MAX];
    char **cells; /* rows * ncols */
    size_t rows;
    size_t cap;
};

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *heads);
void cli_table_close(struct cli_table *t);

/*
 * Appends a row of t->ncols cells (NULL prints "-"). Control characters
 * become '?', so nothing a node sends can drive the terminal, and a cell is
 * cut at CLI_CELL_BYTES_MAX. Errors: -BEX_ELIMIT (CLI_TABLE_ROWS_MAX rows),
 * -BEX_ENOMEM.
 */
BEX_MUST_USE int cli_table_add(struct cli_table *t, const char *const *cells);

/* Prints the header and the rows, columns aligned on their widest cell, two
 * spaces apart, the last column unpadded. A table without rows prints
 * "(none)". Returns 0 or -BEX_EIO. */
BEX_MUST_USE int cli_table_print(const struct cli_table *t, FILE *f);

/* The number of characters (UTF-8 code points) of s. */
size_t cli_text_width(const char *s);

/*
 * Prints the members of a JSON object as aligned "name: value" lines:
 * strings as they are (control characters as '?'), empty strings and null
 * as "-", arrays of
 * scalars comma-separated, other arrays and objects as compact JSON.
 * Returns 0 or -BEX_EIO.
 */
BEX_MUST_USE int cli_print_fields(FILE *f, const json_t *obj);

/* Prints j indented, keys in their order, and a newline. Returns 0 or -BEX_EIO. */
BEX_MUST_USE int cli_print_json(FILE *f, const json_t *j);

/*
 * Prints the result of a list command: with --json {key: items, "more":
 * bool}, else the table t. When more items were left, says so on stderr.
 * Closes t. Returns the exit code.
 */
int cli_list_print(const struct cli_ctx *ctx, const char *cmd, struct cli_table *t, json_t *items,
                   const char *key, bool more);

/* Formats block time ms as "YYYY-MM-DD HH:MM:SSZ" (UTC); 0 as "-". */
void cli_format_time(char out[32], uint64_t ms);

/* The value of a JSON member as a string for a cell: a string as is, a
 * number in decimal, true/false, "" when absent. Valid until buf is reused. */
const char *cli_json_text(char *buf, size_t size, const json_t *obj, const char *key);

/* The text of an enum name without its prefix: "GRANT_ACTIVE" -> "ACTIVE". */
const char *cli_enum_short(const char *name);

/* Prints "out of memory" for cmd and returns CLI_EXIT_FAIL. */
int cli_oom(const char *cmd);

/* ------------------------------------------------------------------ RPC */

/* What a failed call said. */
struct cli_rpc_err {
    int exit;                /* the CLI_EXIT_* this failure maps to */
    long code;               /* the JSON-RPC error code, 0 for a transport failure */
    char reason[32];         /* data.reason, e.g. "ENONCE", or "" */
    char message[2 * CLI_ERR_BYTES];
};

/*
 * Calls method with params (borrowed; NULL for none) within timeout_ms.
 * On CLI_EXIT_OK *result is set (the caller json_decref()s it). On failure
 * nothing is printed and e says why: transport failures (bad URL: USAGE;
 * connect, timeout, HTTP 503: UNREACHABLE), -32004 NOTFOUND, -32001
 * REJECTED, -32010 UNREACHABLE, others FAIL.
 */
BEX_MUST_USE int cli_rpc_try(const struct cli_ctx *ctx, json_t **result, struct cli_rpc_err *e, const char *method,
                             json_t *params, uint32_t timeout_ms);

/* cli_rpc_try() that prints the failure for cmd. */
BEX_MUST_USE int cli_rpc(const struct cli_ctx *ctx, const char *cmd, json_t **result, const char *method,
                         json_t *params, uint32_t timeout_ms);

/* Prints e as the one error line of cmd and returns e->exit. */
int cli_rpc_report(const char *cmd, const struct cli_rpc_err *e);

/*
 * state.query of contract.query with args (a message of the query's
 * argument type; NULL for none). On CLI_EXIT_OK *json (if not NULL) holds
 * the result as the node sent it and *msg (if not NULL) the result decoded
 * into the query's result message (free with contract_result_free). With e
 * NULL failures are printed for cmd; otherwise the node's failures are left
 * in e (e->exit != CLI_EXIT_OK) and only others (memory, an answer that
 * does not decode) are printed.
 */
BEX_MUST_USE int cli_query_msg(const struct cli_ctx *ctx, const char *cmd, struct cli_rpc_err *e,
                               ProtobufCMessage **msg, json_t **json, const char *contract, const char *query,
                               const ProtobufCMessage *args);

/*
 * Runs a list query page by page: args (borrowed, an object; its "cursor"
 * and "limit" are set here) and the items of each page's array `items_key`
 * gathered into *items (a new array) until the last page or max items;
 * *more is set when items were left. Failures are printed for cmd.
 */
BEX_MUST_USE int cli_query_all(const struct cli_ctx *ctx, const char *cmd, json_t **items, bool *more,
                               const char *contract, const char *query, json_t *args, const char *items_key,
                               size_t max);

/* Runs one query with JSON args (borrowed; NULL for none); failures printed. */
BEX_MUST_USE int cli_query_json(const struct cli_ctx *ctx, const char *cmd, json_t **result, const char *contract,
                                const char *query, json_t *args);

/* Renders a message as a JSON value. Returns NULL when out of memory. */
json_t *cli_msg_json(const ProtobufCMessage *m);

/* Decodes the JSON j into a new message of type desc (contract_result_free).
 * Returns CLI_EXIT_OK or CLI_EXIT_FAIL (printed for cmd). */
BEX_MUST_USE int cli_json_msg(ProtobufCMessage **out, const char *cmd, const ProtobufCMessageDescriptor *desc,
                              const json_t *j);

/* Loads an agency (agency.get) and a resource (catalog.get). */
BEX_MUST_USE int cli_get_agency(const struct cli_ctx *ctx, const char *cmd, Bex__Agency **out, const char *id);
BEX_MUST_USE int cli_get_resource(const struct cli_ctx *ctx, const char *cmd, Bex__Resource **out, const char *id);

/* ------------------------------------------------------------- signing */

/* The keys and identity a write is made with. */
struct cli_signer {
    struct crypto_seckey keys[CLI_KEYS_MAX];
    struct crypto_pubkey pubs[CLI_KEYS_MAX];
    size_t count;
    char agency[CLI_ID_BYTES_MAX + 1]; /* the sender */
    char chain_id[CLI_ID_BYTES_MAX + 1];
    bool crypto_up; /* holds a crypto_init() */
};

/*
 * Reads every --key keystore (asking for passphrases as ctx says), finds
 * the sender (ctx->agency, else the agency with the first key as officer or
 * node key) and the chain id (status). Needs crypto_init().
 * cli_signer_close() wipes the keys; it accepts a zeroed signer.
 */
BEX_MUST_USE int cli_signer_open(struct cli_signer *s, const struct cli_ctx *ctx, const char *cmd);
void cli_signer_close(struct cli_signer *s);

/* The agency the command acts for without signing (ctx->agency, else by the
 * first --key's public key). Needs no passphrase. */
BEX_MUST_USE int cli_whoami(const struct cli_ctx *ctx, const char *cmd, char out[CLI_ID_BYTES_MAX + 1]);

/* Reads the --enc-key keystore. Needs crypto_init(); the caller wipes sk. */
BEX_MUST_USE int cli_enc_key(const struct cli_ctx *ctx, const char *cmd, struct crypto_seckey *sk,
                             struct crypto_pubkey *pk);

/* The next nonce of the sender (account.nonce). */
BEX_MUST_USE int cli_next_nonce(const struct cli_ctx *ctx, const char *cmd, uint64_t *nonce, const char *agency);

/*
 * Encodes args, signs a tx of contract.method with nonce and returns it
 * (*tx, malloc'd) with its id. Returns CLI_EXIT_OK or CLI_EXIT_FAIL.
 */
BEX_MUST_USE int cli_tx_build(const struct cli_signer *s, const char *cmd, uint8_t **tx, size_t *tx_len,
                              uint8_t id[CRYPTO_HASH_BYTES], const char *contract, const char *method,
                              const ProtobufCMessage *args, uint64_t nonce);

/*
 * Waits until tx id_hex is committed or ctx->timeout_ms passes, and sets
 * *receipt (tx.get's answer). A receipt with a failure code is still
 * CLI_EXIT_OK here: the caller reads its "code".
 */
BEX_MUST_USE int cli_tx_wait(const struct cli_ctx *ctx, const char *cmd, json_t **receipt, const char *id_hex);

/*
 * The whole write: nonce, sign, tx.submit (again with a fresh nonce, up to
 * CLI_NONCE_ATTEMPTS times, when a concurrent client of the same agency
 * took it) and, unless ctx->no_wait, wait for the commit. *receipt is
 * NULL after --no-wait. A failed receipt returns CLI_EXIT_REJECTED with
 * the receipt set and the failure printed.
 */
BEX_MUST_USE int cli_tx_send(const struct cli_ctx *ctx, const char *cmd, const struct cli_signer *s,
                             json_t **receipt, char id_hex[2 * CRYPTO_HASH_BYTES + 1], const char *contract,
                             const char *method, const ProtobufCMessage *args);

/*
 * Decodes the receipt's "result" as the result message of its contract and
 * method. Returns CLI_EXIT_OK with *out set (contract_result_free), or
 * CLI_EXIT_FAIL.
 */
BEX_MUST_USE int cli_tx_result(ProtobufCMessage **out, const char *cmd, const json_t *receipt);

/*
 * Prints the outcome of a write that ended with rc (from cli_tx_send()):
 * with --no-wait "submitted tx ID"; else the tx id, height and the scalar
 * members of the decoded result as fields; with --json the receipt with the decoded result under
 * "outcome" (also for a failed receipt). Returns rc, or CLI_EXIT_FAIL when
 * the output cannot be written.
 */
int cli_tx_print(const struct cli_ctx *ctx, const char *cmd, int rc, json_t *receipt, const char *id);

/*
 * Runs a whole write (cli_signer_open(), cli_tx_send()) and prints its
 * outcome (cli_tx_print()). Returns the exit code.
 */
BEX_MUST_USE int cli_tx_run(const struct cli_ctx *ctx, const char *cmd, const char *contract, const char *method,
                            const ProtobufCMessage *args);

/* ---------------------------------------------------------- record keys */

/*
 * The record key as on chain for key text: the text itself for an
 * UNCONDITIONAL resource, else its keyed hash under the owner's index key.
 * The owner (sender == r->owner) derives the index key from enc_sk; another
 * agency unwraps the index key the owner shared with it (record.index_key).
 * enc_sk may be NULL for UNCONDITIONAL resources. out holds
 * CLI_RECORD_KEY_BYTES_MAX bytes.
 */
#define CLI_RECORD_KEY_BYTES_MAX 64
BEX_MUST_USE int cli_record_key(const struct cli_ctx *ctx, const char *cmd, uint8_t *out, size_t *out_len,
                                const Bex__Resource *r, const char *sender, const struct crypto_seckey *enc_sk,
                                const char *text);

/* A record key for display: the text when it is printable, else hex. */
void cli_record_key_text(char *out, size_t size, const uint8_t *key, size_t len);

/* ------------------------------------------------------------- records */

/* One line of a records file: {"key": "...", "fields": {...}, "version": N}. */
struct cli_record_line {
    json_t *doc; /* owns the strings below */
    const char *key;
    const char *names[CLI_FIELDS_MAX];
    const char *values[CLI_FIELDS_MAX];
    size_t value_lens[CLI_FIELDS_MAX];
    char numbers[CLI_FIELDS_MAX][24]; /* integer values, as text */
    size_t n;
    uint64_t version; /* 0: one above the published version */
};

/*
 * Parses one line (len bytes, no newline needed). Field values are strings
 * or integers; "version" is optional and positive; other members are
 * refused. Returns 0, or -BEX_EINVAL / -BEX_ELIMIT with err set; on
 * success close the line with cli_record_line_close().
 */
BEX_MUST_USE int cli_record_line_parse(struct cli_record_line *l, const char *line, size_t len, char *err,
                                       size_t err_len);
void cli_record_line_close(struct cli_record_line *l);

/*
 * Checks a record's fields against the resource: every name is a field of
 * it, no name twice, enum values among the allowed ones, integers whole.
 * Returns 0 or -BEX_EINVAL with err set.
 */
BEX_MUST_USE int cli_record_check(const Bex__Resource *r, const char *const *names, const char *const *values,
                                  size_t n, char *err, size_t err_len);

#endif
