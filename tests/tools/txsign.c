/*
 * txsign: signs one contract transaction and prints it, so the integration
 * tests can submit, tamper with and replay real transactions through curl.
 *
 * usage: txsign --key KEYSTORE [--key KEYSTORE...] --chain ID --sender AGENCY
 *               --nonce N --contract C --method M [--args JSON] [--timestamp MS]
 *
 * --args is the method's argument message as JSON (contract_json_parse: bytes
 * in hex, enums by name; default {}); --timestamp defaults to now. The
 * keystores open with the passphrase in BEX_PASSPHRASE. Prints one line,
 * "ID TX": the tx id and the encoded bex.Tx, both in lowercase hex. Exit code
 * 0, 1 on failure (one line on stderr says why), 2 for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract.h"
#include "crypto.h"
#include "keystore.h"
#include "txbuild.h"

#define ERR_BYTES 256

struct opts {
    const char *keys[TXBUILD_SIGNERS_MAX];
    size_t keys_n;
    const char *chain, *sender, *contract, *method, *args;
    unsigned long long nonce, timestamp_ms;
    int have_nonce;
};

static int usage(void)
{
    fprintf(stderr, "usage: txsign --key KEYSTORE [--key KEYSTORE...] --chain ID --sender AGENCY --nonce N\n"
                    "              --contract C --method M [--args JSON] [--timestamp MS]\n");
    return 2;
}

static int parse_u64(unsigned long long *out, const char *s)
{
    char *end;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    *out = strtoull(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

static int parse(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->args = "{}";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (i + 1 >= argc)
            return -1;
        v = argv[++i];
        if (strcmp(a, "--key") == 0 && o->keys_n < TXBUILD_SIGNERS_MAX)
            o->keys[o->keys_n++] = v;
        else if (strcmp(a, "--chain") == 0)
            o->chain = v;
        else if (strcmp(a, "--sender") == 0)
            o->sender = v;
        else if (strcmp(a, "--contract") == 0)
            o->contract = v;
        else if (strcmp(a, "--method") == 0)
            o->method = v;
        else if (strcmp(a, "--args") == 0)
            o->args = v;
        else if (strcmp(a, "--nonce") == 0 && parse_u64(&o->nonce, v) == 0)
            o->have_nonce = 1;
        else if (strcmp(a, "--timestamp") == 0 && parse_u64(&o->timestamp_ms, v) == 0)
            continue;
        else
            return -1;
    }
    if (o->keys_n == 0 || !o->chain || !o->sender || !o->contract || !o->method || !o->have_nonce)
        return -1;
    if (o->timestamp_ms == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->timestamp_ms = (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const ProtobufCMessageDescriptor *args_desc, *result_desc;
    struct crypto_seckey keys[TXBUILD_SIGNERS_MAX];
    struct crypto_pubkey pub;
    ProtobufCMessage *args = NULL;
    struct txbuild t = {0};
    struct opts o;
    uint8_t id[CRYPTO_HASH_BYTES], *packed = NULL, *tx = NULL;
    char err[ERR_BYTES], id_hex[2 * CRYPTO_HASH_BYTES + 1], *tx_hex = NULL;
    const char *pass = getenv("BEX_PASSPHRASE");
    size_t len, tx_len, loaded = 0;
    int rc = 1;

    if (parse(&o, argc, argv) != 0)
        return usage();
    if (pass == NULL) {
        fprintf(stderr, "txsign: set BEX_PASSPHRASE\n");
        return 1;
    }
    if (crypto_init() != 0) {
        fprintf(stderr, "txsign: cannot set up the cryptography\n");
        return 1;
    }
    if (contract_describe(&args_desc, &result_desc, o.contract, "method", o.method) != 0) {
        fprintf(stderr, "txsign: no method %s.%s\n", o.contract, o.method);
        goto fail;
    }
    if (contract_json_parse(&args, err, sizeof(err), args_desc, o.args, strlen(o.args)) != 0) {
        fprintf(stderr, "txsign: --args is not a %s: %s\n", args_desc->name, err);
        goto fail;
    }
    len = protobuf_c_message_get_packed_size(args);
    if ((packed = malloc(len ? len : 1)) == NULL)
        goto oom;
    protobuf_c_message_pack(args, packed);
    for (; loaded < o.keys_n; loaded++) {
        if (keystore_read(&keys[loaded], &pub, o.keys[loaded], pass, err, sizeof(err)) != 0) {
            fprintf(stderr, "txsign: %s\n", err);
            goto fail;
        }
    }
    t.chain_id = o.chain;
    t.sender = o.sender;
    t.nonce = o.nonce;
    t.contract = o.contract;
    t.method = o.method;
    t.args = packed;
    t.args_len = len;
    t.timestamp_ms = o.timestamp_ms;
    if (txbuild_sign(&tx, &tx_len, id, &t, keys, loaded) != 0) {
        fprintf(stderr, "txsign: signing failed\n");
        goto fail;
    }
    if ((tx_hex = malloc(2 * tx_len + 1)) == NULL)
        goto oom;
    if (crypto_hex_encode(tx_hex, 2 * tx_len + 1, tx, tx_len) != 0 ||
        crypto_hex_encode(id_hex, sizeof(id_hex), id, sizeof(id)) != 0) {
        fprintf(stderr, "txsign: cannot encode the tx\n");
        goto fail;
    }
    printf("%s %s\n", id_hex, tx_hex);
    rc = fflush(stdout) == 0 ? 0 : 1;
    goto fail;
oom:
    fprintf(stderr, "txsign: out of memory\n");
fail:
    crypto_wipe(keys, sizeof(keys));
    free(tx_hex);
    free(tx);
    free(packed);
    contract_result_free(args);
    crypto_close();
    return rc;
}
