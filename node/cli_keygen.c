/*
 * cli_keygen.c: bexctl keygen.
 */
#include "cli.h"
#include "crypto.h"
#include "keystore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_keygen = {
    .name = "keygen",
    .summary = "create a passphrase-encrypted secp256k1 key file",
    .usage = "usage: bexctl keygen --out FILE [--scrypt-log2n N] [--force] [--json]\n"
             "\n"
             "Creates a secp256k1 key pair and writes the secret key to FILE (mode 0600),\n"
             "encrypted under a passphrase (scrypt + AES-256-GCM). Prints the public key\n"
             "and its key id. The passphrase comes from BEX_PASSPHRASE, or is asked twice\n"
             "on the terminal.\n"
             "\n"
             "  --out FILE          the key file to create\n"
             "  --scrypt-log2n N    scrypt cost 2^N, 10 to 20 (default 15); lower is faster\n"
             "                      to open and to attack: for tests and testnets only\n"
             "  --force             replace FILE if it exists\n"
             "  --json              print {\"public_key\", \"key_id\", \"file\"} as JSON\n",
    .run = run,
};

/*
 * Matches "--name VALUE" or "--name=VALUE" at argv[*i]. Returns 1 and sets
 * *value (advancing *i past a separate value), 0 when argv[*i] is another
 * option, or -1 when the value is missing.
 */
static int option(const char **value, int argc, char **argv, int *i, const char *name)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static int parse_log2n(int *out, const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < KEYSTORE_SCRYPT_LOG2N_MIN || v > KEYSTORE_SCRYPT_LOG2N_MAX)
        return -BEX_EINVAL;
    *out = (int)v;
    return 0;
}

static int print_result(const char *pub_hex, const char *id, const char *out, bool as_json)
{
    if (!as_json) {
        printf("public_key: %s\nkey_id:     %s\nfile:       %s\n", pub_hex, id, out);
        return fflush(stdout) == 0 ? 0 : -BEX_EIO;
    }
    json_t *doc = json_pack("{s:s, s:s, s:s}", "public_key", pub_hex, "key_id", id, "file", out);
    int rc = doc != NULL && json_dumpf(doc, stdout, JSON_PRESERVE_ORDER) == 0 ? 0 : -BEX_EIO;
    json_decref(doc);
    if (rc == 0 && (putchar('\n') == EOF || fflush(stdout) != 0))
        rc = -BEX_EIO;
    return rc;
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *out = NULL;
    const char *log2n_arg = NULL;
    int log2n = KEYSTORE_SCRYPT_LOG2N_DEFAULT;
    bool force = false, as_json = ctx->json;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char pass[KEYSTORE_PASSPHRASE_MAX + 1];
    char prompt[256];
    char pub_hex[CRYPTO_PUB_HEX + 1], id[CRYPTO_ID_HEX + 1];
    char err[512];
    struct stat st;
    bool crypto_up = false;
    int status = CLI_EXIT_FAIL;
    int rc;

    for (int i = 1; i < argc; i++) {
        int m;
        if (cli_is_help(argv[i])) {
            fputs(cli_keygen.usage, stdout);
            return CLI_EXIT_OK;
        } else if ((m = option(&out, argc, argv, &i, "--out")) != 0) {
            if (m < 0)
                return cli_usage_error(&cli_keygen, "--out needs a file name");
        } else if ((m = option(&log2n_arg, argc, argv, &i, "--scrypt-log2n")) != 0) {
            if (m < 0)
                return cli_usage_error(&cli_keygen, "--scrypt-log2n needs a number");
        } else if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else {
            return cli_usage_error(&cli_keygen, "unknown argument '%s'", argv[i]);
        }
    }
    if (out == NULL || out[0] == '\0')
        return cli_usage_error(&cli_keygen, "--out FILE is required");
    if (log2n_arg != NULL && parse_log2n(&log2n, log2n_arg) != 0)
        return cli_usage_error(&cli_keygen, "--scrypt-log2n must be a whole number from %d to %d",
                               KEYSTORE_SCRYPT_LOG2N_MIN, KEYSTORE_SCRYPT_LOG2N_MAX);
    /* Refuse early, before asking for a passphrase; keystore_write still
     * refuses atomically if the file appears meanwhile. */
    if (!force && lstat(out, &st) == 0) {
        cli_error(cli_keygen.name, "%s already exists; use --force to replace it", out);
        return CLI_EXIT_FAIL;
    }

    if ((rc = crypto_init()) != 0) {
        cli_error(cli_keygen.name, "crypto: %s", bex_strerror(rc));
        goto fail;
    }
    crypto_up = true;
    snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", out);
    if (keystore_passphrase(pass, sizeof(pass), prompt, true, err, sizeof(err)) != 0) {
        cli_error(cli_keygen.name, "%s", err);
        goto fail;
    }
    if ((rc = crypto_keygen(&sk, &pk)) != 0) {
        cli_error(cli_keygen.name, "key generation: %s", bex_strerror(rc));
        goto fail;
    }
    if (keystore_write(out, &sk, pass, log2n, force ? KEYSTORE_REPLACE : 0, err, sizeof(err)) != 0) {
        cli_error(cli_keygen.name, "%s", err);
        goto fail;
    }
    crypto_pubkey_to_hex(pub_hex, &pk);
    crypto_key_id(id, &pk);
    if (print_result(pub_hex, id, out, as_json) != 0) {
        cli_error(cli_keygen.name, "cannot write to standard output");
        goto fail;
    }
    status = CLI_EXIT_OK;
fail:
    crypto_wipe(&sk, sizeof(sk));
    crypto_wipe(pass, sizeof(pass));
    if (crypto_up)
        crypto_close();
    return status;
}
