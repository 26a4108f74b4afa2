/*
 * bexload: offers real, signed contract transactions to a bex network, for
 * the integration tests and the benchmark. It registers one UNCONDITIONAL
 * resource "<agency>/load" (if the first run), pre-signs `count`
 * record.publish transactions with an officer key, submits them in batches
 * (tx.submit_batch) round-robin over the given nodes, and with --wait polls
 * until every transaction is committed on every node, then checks that all
 * nodes report the same height, block hash and state root.
 *
 * usage: bexload --node URL[,URL...] --key KEYSTORE --agency ID --count N
 *                [--batch B] [--rate TX_PER_S] [--wait] [--timeout S]
 * The keystore passphrase comes from BEX_PASSPHRASE. Prints one JSON line.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bex.pb-c.h"
#include "crypto.h"
#include "httpc.h"
#include "keystore.h"
#include "txbuild.h"

#define NODES_MAX 16

struct opts {
    char *nodes_buf; /* the --node list, split in place into nodes[] */
    char *nodes[NODES_MAX];
    int nodes_n;
    const char *key, *agency;
    long count, batch, rate, timeout_s;
    int wait;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bexload: %s\n", what);
    exit(1);
}

static json_t *call(const char *url, const char *method, json_t *params)
{
    json_t *result = NULL, *error = NULL;
    char err[256];
    int rc = httpc_jsonrpc(&result, &error, err, sizeof err, url, method, params, 30000);

    json_decref(params);
    if (rc != 0) {
        fprintf(stderr, "bexload: %s %s: %s\n", url, method, err);
        return NULL;
    }
    if (error != NULL) {
        char *s = json_dumps(error, JSON_COMPACT);

        fprintf(stderr, "bexload: %s %s: %s\n", url, method, s ? s : "error");
        free(s);
        json_decref(error);
        return NULL;
    }
    return result;
}

static char *hex_of(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);

    if (s == NULL || crypto_hex_encode(s, 2 * n + 1, b, n) != 0)
        die("out of memory");
    return s;
}

static char *sign_tx(uint8_t id[32], const struct crypto_seckey *sk, const char *chain, const char *agency,
                     uint64_t nonce, const char *method, const ProtobufCMessage *args)
{
    struct txbuild t = {0};
    size_t alen = protobuf_c_message_get_packed_size(args), tlen;
    uint8_t *abuf = malloc(alen ? alen : 1), *tx;
    char *hex;

    if (abuf == NULL)
        die("out of memory");
    protobuf_c_message_pack(args, abuf);
    t.chain_id = chain;
    t.sender = agency;
    t.nonce = nonce;
    t.contract = strcmp(method, "register") == 0 ? "catalog" : "record";
    t.method = method;
    t.args = abuf;
    t.args_len = alen;
    t.timestamp_ms = (uint64_t)(now_s() * 1000);
    if (txbuild_sign(&tx, &tlen, id, &t, sk, 1) != 0)
        die("signing failed");
    hex = hex_of(tx, tlen);
    free(tx);
    free(abuf);
    return hex;
}

static void parse(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->batch = 500;
    o->timeout_s = 120;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--wait") == 0) {
            o->wait = 1;
            continue;
        }
        if (v == NULL)
            die("missing value; usage: bexload --node URL[,URL] --key KEYSTORE --agency ID --count N "
                "[--batch B] [--rate R] [--wait] [--timeout S]");
        i++;
        if (strcmp(a, "--node") == 0) {
            char *s = strdup(v), *save = NULL;

            if (s == NULL)
                die("out of memory");
            free(o->nodes_buf);
            o->nodes_buf = s;
            o->nodes_n = 0;
            for (char *t = strtok_r(s, ",", &save); t && o->nodes_n < NODES_MAX; t = strtok_r(NULL, ",", &save))
                o->nodes[o->nodes_n++] = t;
        } else if (strcmp(a, "--key") == 0) {
            o->key = v;
        } else if (strcmp(a, "--agency") == 0) {
            o->agency = v;
        } else if (strcmp(a, "--count") == 0) {
            o->count = atol(v);
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = atol(v);
        } else if (strcmp(a, "--rate") == 0) {
            o->rate = atol(v);
        } else if (strcmp(a, "--timeout") == 0) {
            o->timeout_s = atol(v);
        } else {
            die("unknown option");
        }
    }
    if (o->nodes_n == 0 || o->key == NULL || o->agency == NULL || o->count <= 0 || o->batch <= 0 || o->batch > 1000)
        die("--node, --key, --agency and --count N > 0 are required; --batch is 1..1000");
}

/* Waits until the last tx is committed on every node and all agree; returns 0 when they do. */
static int wait_all(const struct opts *o, const char *last_id, double deadline)
{
    char root0[80] = "", hash0[80] = "";
    json_int_t h0 = -1;

    for (int k = 0; k < o->nodes_n; k++) {
        for (;;) {
            json_t *r = call(o->nodes[k], "tx.get", json_pack("{s:s}", "id", last_id));
            const char *st = r ? json_string_value(json_object_get(r, "status")) : NULL;
            int done = st != NULL && strcmp(st, "committed") == 0;

            json_decref(r);
            if (done)
                break;
            if (now_s() > deadline) {
                fprintf(stderr, "bexload: node %s did not commit the last tx in time\n", o->nodes[k]);
                return 1;
            }
            usleep(50000);
        }
    }
    /* Heights may differ by in-flight empty work; wait for agreement at a common height. */
    for (;;) {
        int agree = 1;

        h0 = -1;
        for (int k = 0; k < o->nodes_n && agree; k++) {
            json_t *r = call(o->nodes[k], "status", json_object());
            json_int_t h;
            const char *root, *hash;

            if (r == NULL) {
                agree = 0;
                break;
            }
            h = json_integer_value(json_object_get(r, "height"));
            root = json_string_value(json_object_get(r, "state_root"));
            hash = json_string_value(json_object_get(r, "block_hash"));
            if (k == 0) {
                h0 = h;
                snprintf(root0, sizeof root0, "%s", root ? root : "");
                snprintf(hash0, sizeof hash0, "%s", hash ? hash : "");
            } else if (h != h0 || !root || strcmp(root, root0) != 0 || !hash || strcmp(hash, hash0) != 0) {
                agree = 0;
            }
            json_decref(r);
        }
        if (agree) {
            fprintf(stderr, "bexload: all %d nodes at height %" JSON_INTEGER_FORMAT " with state root %.16s\n",
                    o->nodes_n, h0, root0);
            return 0;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "bexload: nodes disagree on height/root after the deadline\n");
            return 1;
        }
        usleep(100000);
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char err[256], chain[80], resource[160], **txs;
    uint8_t id[32];
    uint64_t nonce;
    long rejected = 0, submitted = 0;
    double t0, t1, t2;
    json_t *r;
    int rc = 0;

    parse(&o, argc, argv);
    if (crypto_init() != 0)
        die("crypto init failed");
    if (getenv("BEX_PASSPHRASE") == NULL)
        die("set BEX_PASSPHRASE");
    if (keystore_read(&sk, &pk, o.key, getenv("BEX_PASSPHRASE"), err, sizeof err) != 0)
        die(err);
    if ((r = call(o.nodes[0], "status", json_object())) == NULL)
        die("node unreachable");
    snprintf(chain, sizeof chain, "%s", json_string_value(json_object_get(r, "chain_id")));
    json_decref(r);
    if ((r = call(o.nodes[0], "account.nonce", json_pack("{s:s}", "agency", o.agency))) == NULL)
        die("cannot read the nonce");
    nonce = (uint64_t)json_integer_value(json_object_get(r, "next"));
    json_decref(r);
    snprintf(resource, sizeof resource, "%s/load", o.agency);

    /* Pre-sign everything: the register first, then the publishes. */
    txs = calloc((size_t)o.count + 1, sizeof *txs);
    if (txs == NULL)
        die("out of memory");
    {
        Bex__Resource res = BEX__RESOURCE__INIT;
        Bex__FieldDef fd = BEX__FIELD_DEF__INIT, *fdp = &fd;
        Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;

        res.id = resource;
        res.title = (char *)"Load test records";
        fd.name = (char *)"data";
        fd.type = BEX__FIELD_TYPE__FIELD_STRING;
        res.n_fields = 1;
        res.fields = &fdp;
        res.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
        res.update_cycle = (char *)"realtime";
        a.resource = &res;
        txs[0] = sign_tx(id, &sk, chain, o.agency, nonce, "register", &a.base);
    }
    for (long i = 1; i <= o.count; i++) {
        Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;
        Bex__RecordField f = BEX__RECORD_FIELD__INIT, *fp = &f;
        char key[64], value[96];

        snprintf(key, sizeof key, "k-%" PRIu64, nonce + (uint64_t)i);
        snprintf(value, sizeof value, "reading %ld of a load run at nonce %" PRIu64, i, nonce + (uint64_t)i);
        a.resource = resource;
        a.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
        a.version = 1;
        f.name = (char *)"data";
        f.value_case = BEX__RECORD_FIELD__VALUE_PLAINTEXT;
        f.plaintext = value;
        a.n_fields = 1;
        a.fields = &fp;
        txs[i] = sign_tx(id, &sk, chain, o.agency, nonce + (uint64_t)i, "publish", &a.base);
    }
    char *last_id = hex_of(id, 32);

    t0 = now_s();
    for (long i = 0; i <= o.count; i += o.batch) {
        long end = i + o.batch > o.count + 1 ? o.count + 1 : i + o.batch;
        json_t *arr = json_array(), *res;

        for (long k = i; k < end; k++)
            json_array_append_new(arr, json_string(txs[k]));
        /* All txs of one sender go to one node: another node may see nonce N+1 before N. */
        res = call(o.nodes[0], "tx.submit_batch", json_pack("{s:o}", "txs", arr));
        if (res == NULL) {
            rc = 1;
            break;
        }
        json_t *results = json_object_get(res, "results");

        for (size_t k = 0; k < json_array_size(results); k++) {
            if (json_object_get(json_array_get(results, k), "error") != NULL)
                rejected++;
            else
                submitted++;
        }
        json_decref(res);
        if (o.rate > 0) {
            double due = t0 + (double)end / (double)o.rate;

            while (now_s() < due)
                usleep(1000);
        }
    }
    t1 = now_s();
    if (rc == 0 && o.wait)
        rc = wait_all(&o, last_id, t1 + (double)o.timeout_s);
    t2 = now_s();
    printf("{\"submitted\": %ld, \"rejected\": %ld, \"submit_s\": %.3f, \"commit_s\": %.3f, \"tps\": %.1f}\n",
           submitted, rejected, t1 - t0, t2 - t0, o.wait ? (double)submitted / (t2 - t0) : 0.0);
    for (long i = 0; i <= o.count; i++)
        free(txs[i]);
    free(txs);
    free(last_id);
    free(o.nodes_buf);
    crypto_wipe(&sk, sizeof sk);
    return rc != 0 || rejected > 0;
}
