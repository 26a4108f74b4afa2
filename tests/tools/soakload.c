/*
 * soakload: the load and the checker of the crash soak (scripts/soak.sh) and
 * of the full-store tests (tests/integration/node_mapfull.sh, node_diskfull.sh).
 *
 * soakload run --testnet DIR --seconds S --acked FILE [--rate TX_PER_S]
 *              [--agencies N] [--value-bytes B] [--window W] [--drain S] [--trace]
 *   Runs one thread per agency of the testnet in DIR (agencies.txt; the key
 *   is agencies/ID/officer1.key, opened with DIR/passphrase). Each agency
 *   registers an UNCONDITIONAL resource "<agency>/soak" and then publishes
 *   records at rate/N tx/s, keeping at most W signed txs unconfirmed. Every
 *   tick (100 ms) an agency picks its own node, or the next healthy one when
 *   its own does not answer GET /health with 200, reads account.nonce there,
 *   confirms each tx whose nonce is now committed with tx.get, and (re)submits
 *   its unconfirmed txs: the same signed bytes every time, in nonce order, so
 *   a sender's txs stay sequential whichever node holds them and a tx lost
 *   with a killed node's mempool is offered again. A tx is acknowledged when
 *   tx.get on some node says it is committed: FILE gets one line
 *   "ID AGENCY NONCE HEIGHT CODE" per acknowledged tx. A monitor thread polls
 *   every node's status and measures the longest stall: the longest interval
 *   in which the highest height of any live node did not grow. After S seconds
 *   (or SIGTERM/SIGINT) no new tx is signed and the agencies keep confirming
 *   and resubmitting for up to --drain seconds (default 60). Prints one JSON
 *   line; exits 1 when a committed nonce holds a tx that is not ours.
 *   A tx that waits long is looked up: one executed with an error code
 *   (which does not use its nonce, e.g. ENONCE when proposed out of order)
 *   is acknowledged with that code, and its nonce signed anew (counted as
 *   failed_code and replaced). "stuck" in the JSON names, per agency that
 *   still has unconfirmed txs, the first of them and the node last used.
 *   --trace prints each agency's state every tick.
 *
 * soakload verify --testnet DIR [--acked FILE] [--node K] [--timeout S]
 *   Waits (up to S seconds, default 60) until every node answers and all
 *   report the same height, state root and block hash; walks block.get over
 *   every height of node K (default 0), checking that each block names the
 *   hash of the one before and that the last is the head every node reported;
 *   then checks that every acknowledged tx of FILE is in the chain, at the
 *   height it was acknowledged at, executed once (a later copy of a tx is
 *   skipped by the ledger and counted as a duplicate), and that its receipt
 *   (tx.get, spread over all nodes) names that height and position. Prints
 *   one JSON line; exits 1 on any disagreement, gap, loss or bad receipt.
 */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#define AGENTS_MAX 16
#define URL_BYTES 128
#define ID_BYTES 65
#define WINDOW_MAX 4096
#define SUBMIT_TXS_MAX 1000                /* tx.submit_batch takes at most this many */
#define SUBMIT_HEX_BYTES_MAX (2u << 20)    /* under the node's 4 MiB request limit */
#define FIELD_BYTES 1900                   /* a plaintext field holds at most 2000 */
#define FIELDS_MAX 32
#define VALUE_BYTES_MAX (FIELDS_MAX * FIELD_BYTES)
#define TICK_MS 100
#define RESEND_S 3.0                       /* a pending tx is offered again after this */
#define CALL_MS 5000                       /* one RPC call */
#define HEALTH_MS 1000
#define REASONS_MAX 16
#define REASON_BYTES 24
#define PROGRESS_S 10.0

_Static_assert(VALUE_BYTES_MAX < 65536 - 4096, "a tx stays under the node's 64 KiB tx limit");

/* The testnet: its nodes and agencies, from DIR/agencies.txt. */
struct net {
    const char *dir;
    char urls[NODES_MAX][URL_BYTES];
    int nodes_n;
    char agency[AGENTS_MAX][ID_BYTES];
    int home[AGENTS_MAX];
    int agencies_n;
    char passphrase[256];
    char chain[80];
};

/* A signed tx that is not yet confirmed. */
struct slot {
    uint64_t nonce;
    bool reg;         /* the catalog register, else a record publish */
    uint32_t attempt; /* how often this nonce was signed anew */
    uint8_t id[32];
    char *hex;
    size_t hex_len;
    double sent_s;  /* when it was last offered; 0 never */
    int sent_node;  /* where it was last offered; -1 none */
};

struct reason_count {
    char reason[REASON_BYTES];
    uint64_t n;
};

struct soak;

/* One agency's load thread. */
struct agent {
    struct soak *s;
    const char *id;
    int home;
    int cur; /* the node in use, -1 none */
    char resource[160];
    struct crypto_seckey sk;
    struct slot *win; /* ring of cap slots, n used from head */
    size_t head, n, cap;
    uint64_t next_nonce;
    uint64_t due_done; /* txs of the schedule signed or throttled */
    bool registered;
    uint64_t replaced; /* txs executed with an error and signed anew */
    /* Counters; read by main after the thread ended. */
    uint64_t signed_n, acked, foreign, failed_code, failovers, resent, throttled, no_node_ticks;
    struct reason_count rejects[REASONS_MAX];
    pthread_t thr;
};

struct soak {
    struct net net;
    double seconds, rate, drain_s;
    bool trace;
    long value_bytes;
    int fields_n;
    size_t window;
    double t0;
    /* Set once by main: first drain_end_s, then load_done; read by every thread. */
    double drain_end_s;
    atomic_int load_done;
    double load_end_s; /* when load_done was set; main only */
    FILE *acked;
    pthread_mutex_t mu; /* acked file, progress */
    struct agent agents[AGENTS_MAX];
    int agents_n;
    /* Monitor. */
    pthread_t mon;
    atomic_int mon_done;
    int64_t max_height;
    double longest_stall_s, longest_stall_end_s, last_growth_s;
    bool grew;
    uint64_t acked_total; /* under mu, for progress */
};

static volatile sig_atomic_t stop_requested;

/* The first signal ends the load, the second the drain as well. */
static void on_signal(int sig)
{
    (void)sig;
    if (stop_requested < 2)
        stop_requested = stop_requested + 1;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    double d = t - now_s();

    if (d > 0)
        usleep((useconds_t)(d * 1e6));
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "soakload: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/*
 * Calls method on url. Returns 0 with *result set, 1 with *code set when the
 * node answered with a JSON-RPC error, -1 when the node did not answer.
 * params are consumed.
 */
static int call(json_t **result, int *code, const char *url, const char *method, json_t *params, uint32_t timeout_ms)
{
    json_t *error = NULL;
    char err[HTTPC_ERR_BYTES];
    int rc = httpc_jsonrpc(result, &error, err, sizeof err, url, method, params, timeout_ms);

    json_decref(params);
    if (rc != 0)
        return -1;
    if (error != NULL) {
        *code = (int)json_integer_value(json_object_get(error, "code"));
        json_decref(error);
        return 1;
    }
    return 0;
}

/* Like call(), but any failure is NULL. */
static json_t *call_ok(const char *url, const char *method, json_t *params, uint32_t timeout_ms)
{
    json_t *r = NULL;
    int code;

    return call(&r, &code, url, method, params, timeout_ms) == 0 ? r : NULL;
}

static bool healthy(const char *url)
{
    struct httpc_opts o;
    struct httpc_response resp = {0};
    char u[URL_BYTES + 16];
    bool ok;

    httpc_opts_default(&o);
    o.connect_timeout_ms = HEALTH_MS;
    o.timeout_ms = HEALTH_MS;
    o.response_bytes_max = 4096;
    snprintf(u, sizeof u, "%s/health", url);
    ok = httpc_request(&resp, "GET", u, NULL, 0, &o) == 0 && resp.status == 200;
    httpc_response_free(&resp);
    return ok;
}

/* ---------------------------------------------------------------- the testnet */

static void net_load(struct net *n, const char *dir)
{
    char path[1024], line[1024];
    FILE *f;

    memset(n, 0, sizeof *n);
    n->dir = dir;
    snprintf(path, sizeof path, "%s/agencies.txt", dir);
    if ((f = fopen(path, "r")) == NULL)
        die("cannot open %s", path);
    while (fgets(line, sizeof line, f) != NULL) {
        char *save = NULL, *id = strtok_r(line, "\t\n", &save), *name = strtok_r(NULL, "\t\n", &save);
        char *idx = strtok_r(NULL, "\t\n", &save), *url = strtok_r(NULL, "\t\n", &save);
        int k;

        if (id == NULL || id[0] == '#')
            continue;
        if (name == NULL || idx == NULL || url == NULL || n->agencies_n >= AGENTS_MAX)
            die("malformed or too long: %s", path);
        k = atoi(idx);
        if (k < 0 || k >= NODES_MAX || strlen(url) >= URL_BYTES || strlen(id) >= ID_BYTES)
            die("malformed line in %s", path);
        snprintf(n->urls[k], URL_BYTES, "%s", url);
        if (k + 1 > n->nodes_n)
            n->nodes_n = k + 1;
        snprintf(n->agency[n->agencies_n], ID_BYTES, "%s", id);
        n->home[n->agencies_n++] = k;
    }
    fclose(f);
    for (int k = 0; k < n->nodes_n; k++)
        if (n->urls[k][0] == '\0')
            die("a node index is missing in %s", path);
    if (n->agencies_n == 0)
        die("no agencies in %s", path);
    snprintf(path, sizeof path, "%s/passphrase", dir);
    if ((f = fopen(path, "r")) == NULL)
        die("cannot open %s", path);
    if (fgets(n->passphrase, sizeof n->passphrase, f) == NULL)
        die("empty %s", path);
    fclose(f);
    n->passphrase[strcspn(n->passphrase, "\r\n")] = '\0';
}

/* Reads the chain id from the first node that answers, within timeout_s. */
static void net_chain(struct net *n, double timeout_s)
{
    double deadline = now_s() + timeout_s;

    for (;;) {
        for (int k = 0; k < n->nodes_n; k++) {
            json_t *r = call_ok(n->urls[k], "status", json_object(), CALL_MS);
            const char *c = r ? json_string_value(json_object_get(r, "chain_id")) : NULL;

            if (c != NULL) {
                snprintf(n->chain, sizeof n->chain, "%s", c);
                json_decref(r);
                return;
            }
            json_decref(r);
        }
        if (now_s() > deadline)
            die("%s", "no node answers status");
        usleep(200000);
    }
}

/* ---------------------------------------------------------------- signing */

static char *hex_of(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);

    if (s == NULL || crypto_hex_encode(s, 2 * n + 1, b, n) != 0)
        die("%s", "out of memory");
    return s;
}

static void sign_into(struct agent *a, struct slot *sl, const char *contract, const char *method,
                      const ProtobufCMessage *args)
{
    struct txbuild t = {0};
    size_t alen = protobuf_c_message_get_packed_size(args), tlen;
    uint8_t *abuf = malloc(alen ? alen : 1), *tx;

    if (abuf == NULL)
        die("%s", "out of memory");
    protobuf_c_message_pack(args, abuf);
    t.chain_id = a->s->net.chain;
    t.sender = a->id;
    t.nonce = sl->nonce;
    t.contract = contract;
    t.method = method;
    t.args = abuf;
    t.args_len = alen;
    t.timestamp_ms = (uint64_t)time(NULL) * 1000; /* the attempt in the args keeps ids apart */
    if (txbuild_sign(&tx, &tlen, sl->id, &t, &a->sk, 1) != 0)
        die("%s", "signing failed");
    sl->hex = hex_of(tx, tlen);
    sl->hex_len = 2 * tlen;
    sl->sent_s = 0;
    sl->sent_node = -1;
    free(tx);
    free(abuf);
}

static void field_name(char *buf, size_t size, int i)
{
    snprintf(buf, size, "f%d", i);
}

/*
 * Signs the tx of slot sl (its nonce, kind and attempt set). The attempt
 * goes into the record, so a tx signed anew for a nonce has a new id.
 */
static void slot_sign(struct agent *a, struct slot *sl)
{
    char names[FIELDS_MAX][16], title[64];
    int nf = a->s->fields_n;

    for (int i = 0; i < nf; i++)
        field_name(names[i], sizeof names[i], i);
    if (sl->reg) {
        Bex__Resource res = BEX__RESOURCE__INIT;
        Bex__FieldDef fd[FIELDS_MAX], *fdp[FIELDS_MAX];
        Bex__CatalogPutArgs args = BEX__CATALOG_PUT_ARGS__INIT;

        for (int i = 0; i < nf; i++) {
            bex__field_def__init(&fd[i]);
            fd[i].name = names[i];
            fd[i].type = BEX__FIELD_TYPE__FIELD_STRING;
            fdp[i] = &fd[i];
        }
        res.id = a->resource;
        snprintf(title, sizeof title, "Soak test records (attempt %u)", sl->attempt);
        res.title = title;
        res.n_fields = (size_t)nf;
        res.fields = fdp;
        res.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
        res.update_cycle = (char *)"realtime";
        args.resource = &res;
        sign_into(a, sl, "catalog", "register", &args.base);
    } else {
        Bex__RecordPublishArgs args = BEX__RECORD_PUBLISH_ARGS__INIT;
        Bex__RecordField f[FIELDS_MAX], *fp[FIELDS_MAX];
        char key[64], *values[FIELDS_MAX];
        long left = a->s->value_bytes;

        snprintf(key, sizeof key, "s-%" PRIu64, sl->nonce);
        for (int i = 0; i < nf; i++) {
            long len = left > FIELD_BYTES ? FIELD_BYTES : (left > 0 ? left : 1);
            int head;

            if ((values[i] = malloc((size_t)len + 1)) == NULL)
                die("%s", "out of memory");
            head = snprintf(values[i], (size_t)len + 1, "%s nonce %" PRIu64 " attempt %u field %d ", a->id, sl->nonce,
                            sl->attempt, i);
            for (long c = head < len ? head : len; c < len; c++)
                values[i][c] = (char)('a' + (sl->nonce + (uint64_t)c) % 26);
            values[i][len] = '\0';
            left -= len;
            bex__record_field__init(&f[i]);
            f[i].name = names[i];
            f[i].value_case = BEX__RECORD_FIELD__VALUE_PLAINTEXT;
            f[i].plaintext = values[i];
            fp[i] = &f[i];
        }
        args.resource = a->resource;
        args.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
        args.version = 1;
        args.n_fields = (size_t)nf;
        args.fields = fp;
        sign_into(a, sl, "record", "publish", &args.base);
        for (int i = 0; i < nf; i++)
            free(values[i]);
    }
}

/* Appends the next tx of the agency to its window: the register first, then publishes. */
static void agent_sign(struct agent *a)
{
    struct slot *sl = &a->win[(a->head + a->n) % a->cap];

    memset(sl, 0, sizeof *sl);
    sl->nonce = a->next_nonce++;
    sl->reg = !a->registered;
    a->registered = true;
    slot_sign(a, sl);
    a->n++;
    a->signed_n++;
}

/* ---------------------------------------------------------------- the load */

static bool load_over(struct soak *s)
{
    return atomic_load(&s->load_done) != 0;
}

static void count_reject(struct agent *a, const char *reason)
{
    int i;

    for (i = 0; i < REASONS_MAX && a->rejects[i].reason[0] != '\0'; i++)
        if (strcmp(a->rejects[i].reason, reason) == 0)
            break;
    if (i == REASONS_MAX)
        i = REASONS_MAX - 1; /* the last entry collects the rest */
    if (a->rejects[i].reason[0] == '\0')
        snprintf(a->rejects[i].reason, REASON_BYTES, "%s", reason[0] ? reason : "other");
    a->rejects[i].n++;
}

/* The agency's own node when healthy, else the next healthy one; -1 when none is. */
static int agent_pick(struct agent *a)
{
    const struct net *net = &a->s->net;

    for (int k = 0; k < net->nodes_n; k++) {
        int node = (a->home + k) % net->nodes_n;

        if (healthy(net->urls[node])) {
            if (node != a->cur && node != a->home)
                a->failovers++;
            a->cur = node;
            return node;
        }
    }
    a->cur = -1;
    return -1;
}

static void slot_drop(struct agent *a)
{
    free(a->win[a->head].hex);
    a->win[a->head].hex = NULL;
    a->head = (a->head + 1) % a->cap;
    a->n--;
}

/* Records a tx that tx.get on some node says is committed. */
static void ack(struct agent *a, const struct slot *sl, const char *idhex, int64_t height, int code)
{
    pthread_mutex_lock(&a->s->mu);
    fprintf(a->s->acked, "%s %s %" PRIu64 " %" PRId64 " %d\n", idhex, a->id, sl->nonce, height, code);
    fflush(a->s->acked);
    a->s->acked_total++;
    pthread_mutex_unlock(&a->s->mu);
    a->acked++;
    if (code != 0)
        a->failed_code++;
}

/*
 * Asks the node about a tx that waits long: one executed with an error (its
 * nonce was not used, e.g. ENONCE when it was proposed out of order) is
 * acknowledged and its nonce signed anew, since that id can never commit
 * again. Returns 0, or -1 when the node did not answer.
 */
static int slot_check(struct agent *a, struct slot *sl, const char *url)
{
    char idhex[ID_BYTES];
    json_t *r = NULL;
    const char *st;
    int code, rc;

    if (crypto_hex_encode(idhex, sizeof idhex, sl->id, 32) != 0)
        die("%s", "hex");
    rc = call(&r, &code, url, "tx.get", json_pack("{s:s}", "id", idhex), CALL_MS);
    if (rc < 0)
        return -1;
    st = rc == 0 ? json_string_value(json_object_get(r, "status")) : NULL;
    if (st != NULL && strcmp(st, "committed") == 0) {
        int c = (int)json_integer_value(json_object_get(r, "code"));

        if (c != 0) {
            if (a->failed_code < 3)
                fprintf(stderr, "soakload: %s nonce %" PRIu64 " (tx %.16s) was executed with %s: %s\n", a->id,
                        sl->nonce, idhex, json_string_value(json_object_get(r, "code_name")),
                        json_string_value(json_object_get(r, "message")));
            ack(a, sl, idhex, (int64_t)json_integer_value(json_object_get(r, "height")), c);
            free(sl->hex);
            sl->attempt++;
            slot_sign(a, sl);
            a->signed_n++;
            a->replaced++;
        }
    }
    json_decref(r);
    return 0;
}

/*
 * Confirms the txs whose nonce the node has committed. Returns 0, or -1 when
 * the node stopped answering.
 */
static int agent_confirm(struct agent *a, const char *url)
{
    json_t *r;
    uint64_t last;
    int code;

    if (call(&r, &code, url, "account.nonce", json_pack("{s:s}", "agency", a->id), CALL_MS) != 0)
        return -1;
    last = (uint64_t)json_integer_value(json_object_get(r, "last_committed"));
    json_decref(r);
    while (a->n > 0 && a->win[a->head].nonce <= last) {
        struct slot *sl = &a->win[a->head];
        char idhex[ID_BYTES];
        const char *st;
        int rc;

        if (crypto_hex_encode(idhex, sizeof idhex, sl->id, 32) != 0)
            die("%s", "hex");
        rc = call(&r, &code, url, "tx.get", json_pack("{s:s}", "id", idhex), CALL_MS);
        if (rc < 0)
            return -1;
        st = rc == 0 ? json_string_value(json_object_get(r, "status")) : NULL;
        if (st != NULL && strcmp(st, "committed") == 0) {
            ack(a, sl, idhex, (int64_t)json_integer_value(json_object_get(r, "height")),
                (int)json_integer_value(json_object_get(r, "code")));
        } else {
            /* The nonce is used, but not by this tx: it is lost for good. */
            a->foreign++;
            fprintf(stderr, "soakload: nonce %" PRIu64 " of %s is committed on %s, but tx %s is not\n", sl->nonce,
                    a->id, url, idhex);
        }
        json_decref(r);
        slot_drop(a);
    }
    return 0;
}

/*
 * Offers the node every unconfirmed tx it has not seen lately, in nonce
 * order. Returns 0, or -1 when the node did not answer or refuses writes.
 */
static int agent_submit(struct agent *a, int node, const char *url)
{
    size_t i = 0;
    double t = now_s();

    while (i < a->n) {
        json_t *arr = json_array(), *r, *results;
        size_t idx[SUBMIT_TXS_MAX], m = 0, bytes = 0;
        int code, rc;
        bool refused = false;

        for (; i < a->n && m < SUBMIT_TXS_MAX; i++) {
            struct slot *sl = &a->win[(a->head + i) % a->cap];

            if (sl->sent_node == node && t - sl->sent_s < RESEND_S)
                continue;
            /*
             * Offered long ago and still not committed: ask why before
             * offering it again, as a node would take back a tx that was
             * executed with an error (its nonce is still unused).
             */
            if (sl->sent_s > 0 && t - sl->sent_s >= RESEND_S && slot_check(a, sl, url) != 0) {
                json_decref(arr);
                return -1;
            }
            if (m > 0 && bytes + sl->hex_len > SUBMIT_HEX_BYTES_MAX)
                break;
            json_array_append_new(arr, json_string(sl->hex));
            idx[m++] = (a->head + i) % a->cap;
            bytes += sl->hex_len;
        }
        if (m == 0) {
            json_decref(arr);
            return 0;
        }
        rc = call(&r, &code, url, "tx.submit_batch", json_pack("{s:o}", "txs", arr), CALL_MS);
        if (rc != 0) {
            json_decref(r);
            if (rc > 0)
                count_reject(a, "batch refused");
            return -1;
        }
        results = json_object_get(r, "results");
        for (size_t k = 0; k < m && k < json_array_size(results); k++) {
            struct slot *sl = &a->win[idx[k]];
            json_t *err = json_object_get(json_array_get(results, k), "error");

            if (sl->sent_s > 0)
                a->resent++;
            if (err != NULL) {
                const char *reason = json_string_value(json_object_get(err, "reason"));

                count_reject(a, reason ? reason : "");
                /* A used nonce is confirmed next tick; anything else is the node's trouble. */
                if (reason == NULL || strcmp(reason, "ENONCE") != 0)
                    refused = true;
            }
            sl->sent_node = node;
            sl->sent_s = t;
        }
        json_decref(r);
        if (refused)
            return -1;
    }
    return 0;
}

static void agent_tick(struct agent *a)
{
    struct soak *s = a->s;
    int node;

    if (!load_over(s)) {
        uint64_t due = (uint64_t)(s->rate / s->agents_n * (now_s() - s->t0)) + 1;

        while (a->due_done < due) {
            if (a->n < a->cap)
                agent_sign(a);
            else
                a->throttled++;
            a->due_done++;
        }
    }
    if ((node = agent_pick(a)) < 0) {
        a->no_node_ticks++;
        return;
    }
    if (agent_confirm(a, s->net.urls[node]) != 0 || agent_submit(a, node, s->net.urls[node]) != 0)
        a->cur = -1;
    if (s->trace) {
        char idhex[ID_BYTES] = "-";

        if (a->n > 0 && crypto_hex_encode(idhex, sizeof idhex, a->win[a->head].id, 32) != 0)
            die("%s", "hex");
        fprintf(stderr, "trace %.2f %s node %d window %zu first %" PRIu64 " %s acked %" PRIu64 " resent %" PRIu64 "\n",
                now_s() - s->t0, a->id, node, a->n, a->n > 0 ? a->win[a->head].nonce : 0, idhex, a->acked, a->resent);
    }
}

static void *agent_main(void *arg)
{
    struct agent *a = arg;
    struct soak *s = a->s;
    double t = now_s();

    while (!load_over(s) || (a->n > 0 && now_s() < s->drain_end_s && stop_requested < 2)) {
        agent_tick(a);
        t += TICK_MS / 1000.0;
        if (t < now_s())
            t = now_s();
        sleep_until(t);
    }
    return NULL;
}

/* Reads the agency's next nonce from any node that answers. */
static void agent_start_nonce(struct agent *a, double timeout_s)
{
    const struct net *net = &a->s->net;
    double deadline = now_s() + timeout_s;

    for (;;) {
        for (int k = 0; k < net->nodes_n; k++) {
            int node = (a->home + k) % net->nodes_n;
            json_t *r = call_ok(net->urls[node], "account.nonce", json_pack("{s:s}", "agency", a->id), CALL_MS);

            if (r != NULL) {
                a->next_nonce = (uint64_t)json_integer_value(json_object_get(r, "next"));
                json_decref(r);
                return;
            }
        }
        if (now_s() > deadline)
            die("no node answers account.nonce for %s", a->id);
        usleep(200000);
    }
}

/* ---------------------------------------------------------------- the monitor */

static void *monitor_main(void *arg)
{
    struct soak *s = arg;
    double t = now_s(), next_progress = s->t0 + PROGRESS_S;

    while (!atomic_load(&s->mon_done)) {
        int64_t top = -1;
        double now;

        for (int k = 0; k < s->net.nodes_n; k++) {
            json_t *r = call_ok(s->net.urls[k], "status", json_object(), HEALTH_MS);

            if (r != NULL) {
                int64_t h = (int64_t)json_integer_value(json_object_get(r, "height"));

                if (h > top)
                    top = h;
                json_decref(r);
            }
        }
        now = now_s();
        if (!load_over(s)) {
            if (top > s->max_height) {
                /* Time before the first block of the load is start-up, not a stall. */
                if (s->grew && now - s->last_growth_s > s->longest_stall_s) {
                    s->longest_stall_s = now - s->last_growth_s;
                    s->longest_stall_end_s = now - s->t0;
                }
                if (s->max_height >= 0)
                    s->grew = true;
                s->max_height = top;
                s->last_growth_s = now;
            } else if (s->grew && now - s->last_growth_s > s->longest_stall_s) {
                s->longest_stall_s = now - s->last_growth_s;
                s->longest_stall_end_s = now - s->t0;
            }
        } else if (top > s->max_height) {
            s->max_height = top;
        }
        if (now >= next_progress) {
            pthread_mutex_lock(&s->mu);
            fprintf(stderr, "soakload: %4.0fs acked %" PRIu64 ", height %" PRId64 ", longest stall %.1fs\n",
                    now - s->t0, s->acked_total, s->max_height, s->longest_stall_s);
            pthread_mutex_unlock(&s->mu);
            next_progress += PROGRESS_S;
        }
        t += TICK_MS / 1000.0;
        if (t < now_s())
            t = now_s();
        sleep_until(t);
    }
    return NULL;
}

/* ---------------------------------------------------------------- run */

static void print_run(struct soak *s)
{
    uint64_t replaced = 0, signed_n = 0, acked = 0, foreign = 0, failed = 0, failovers = 0, resent = 0, throttled = 0,
             unconfirmed = 0, no_node = 0;
    json_t *rej = json_object(), *stuck = json_array(), *out;
    char *txt;

    for (int i = 0; i < s->agents_n; i++) {
        const struct agent *a = &s->agents[i];

        signed_n += a->signed_n;
        acked += a->acked;
        foreign += a->foreign;
        failed += a->failed_code;
        replaced += a->replaced;
        failovers += a->failovers;
        resent += a->resent;
        throttled += a->throttled;
        unconfirmed += a->n;
        if (a->n > 0) {
            char idhex[ID_BYTES];

            if (crypto_hex_encode(idhex, sizeof idhex, a->win[a->head].id, 32) != 0)
                die("%s", "hex");
            json_array_append_new(stuck, json_pack("{s:s, s:I, s:s, s:i, s:I}", "agency", a->id, "nonce",
                                                   (json_int_t)a->win[a->head].nonce, "tx", idhex, "node", a->cur,
                                                   "window", (json_int_t)a->n));
        }
        no_node += a->no_node_ticks;
        for (int k = 0; k < REASONS_MAX && a->rejects[k].reason[0] != '\0'; k++) {
            json_t *v = json_object_get(rej, a->rejects[k].reason);

            json_object_set_new(rej, a->rejects[k].reason,
                                json_integer((v ? json_integer_value(v) : 0) + (json_int_t)a->rejects[k].n));
        }
    }
    out = json_pack("{s:i, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:f, s:f, s:I}", "agencies",
                    s->agents_n, "seconds", s->load_end_s - s->t0, "rate", s->rate, "signed", (json_int_t)signed_n,
                    "acked", (json_int_t)acked, "unconfirmed", (json_int_t)unconfirmed, "foreign",
                    (json_int_t)foreign, "failed_code", (json_int_t)failed, "replaced", (json_int_t)replaced, "failovers", (json_int_t)failovers,
                    "resent", (json_int_t)resent, "throttled", (json_int_t)throttled, "no_node_ticks",
                    (json_int_t)no_node, "rejects", rej, "stuck", stuck, "longest_stall_s", s->longest_stall_s,
                    "longest_stall_end_s", s->longest_stall_end_s, "height", (json_int_t)s->max_height);
    txt = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", txt ? txt : "{}");
    fflush(stdout);
    free(txt);
    json_decref(out);
}

static int run(int argc, char **argv)
{
    static struct soak s;
    const char *dir = NULL, *acked = NULL;
    long agencies = 0;
    int foreign = 0;
    struct sigaction sa;

    s.rate = 100;
    s.drain_s = 60;
    s.seconds = -1;
    s.value_bytes = 64;
    s.window = 256;
    for (int i = 2; i < argc; i += 2) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(o, "--trace") == 0) {
            s.trace = true;
            i--;
            continue;
        }
        if (v == NULL)
            die("%s needs a value", o);
        if (strcmp(o, "--testnet") == 0)
            dir = v;
        else if (strcmp(o, "--acked") == 0)
            acked = v;
        else if (strcmp(o, "--seconds") == 0)
            s.seconds = atof(v);
        else if (strcmp(o, "--rate") == 0)
            s.rate = atof(v);
        else if (strcmp(o, "--agencies") == 0)
            agencies = atol(v);
        else if (strcmp(o, "--value-bytes") == 0)
            s.value_bytes = atol(v);
        else if (strcmp(o, "--window") == 0)
            s.window = (size_t)atol(v);
        else if (strcmp(o, "--drain") == 0)
            s.drain_s = atof(v);
        else
            die("unknown option %s", o);
    }
    if (dir == NULL || acked == NULL || s.seconds < 0 || s.rate <= 0 || s.drain_s < 0 || s.value_bytes < 1 ||
        s.value_bytes > VALUE_BYTES_MAX || s.window < 1 || s.window > WINDOW_MAX || agencies < 0)
        die("%s", "run needs --testnet DIR --seconds S --acked FILE; --rate > 0, --value-bytes 1..60800, "
                  "--window 1..4096");
    s.fields_n = (int)((s.value_bytes + FIELD_BYTES - 1) / FIELD_BYTES);
    net_load(&s.net, dir);
    s.agents_n = agencies > 0 && agencies < s.net.agencies_n ? (int)agencies : s.net.agencies_n;
    if ((s.acked = fopen(acked, "a")) == NULL)
        die("cannot open %s", acked);
    if (pthread_mutex_init(&s.mu, NULL) != 0 || crypto_init() != 0)
        die("%s", "cannot initialise");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    net_chain(&s.net, 60);

    for (int i = 0; i < s.agents_n; i++) {
        struct agent *a = &s.agents[i];
        struct crypto_pubkey pk;
        char path[1024], err[256];

        a->s = &s;
        a->id = s.net.agency[i];
        a->home = s.net.home[i];
        a->cur = -1;
        a->cap = s.window;
        {
            /* The id and the resource both live in s: copy, as snprintf must not overlap. */
            size_t idlen = strlen(a->id);

            memcpy(a->resource, a->id, idlen);
            memcpy(a->resource + idlen, "/soak", sizeof "/soak");
        }
        snprintf(path, sizeof path, "%s/agencies/%s/officer1.key", dir, a->id);
        if (keystore_read(&a->sk, &pk, path, s.net.passphrase, err, sizeof err) != 0)
            die("%s", err);
        if ((a->win = calloc(a->cap, sizeof *a->win)) == NULL)
            die("%s", "out of memory");
        agent_start_nonce(a, 60);
    }
    s.max_height = -1;
    s.t0 = now_s();
    if (pthread_create(&s.mon, NULL, monitor_main, &s) != 0)
        die("%s", "cannot start the monitor");
    for (int i = 0; i < s.agents_n; i++)
        if (pthread_create(&s.agents[i].thr, NULL, agent_main, &s.agents[i]) != 0)
            die("%s", "cannot start an agency thread");
    while (stop_requested == 0 && now_s() < s.t0 + s.seconds)
        usleep(20000);
    s.load_end_s = now_s();
    s.drain_end_s = s.load_end_s + s.drain_s;
    atomic_store(&s.load_done, 1);
    for (int i = 0; i < s.agents_n; i++)
        pthread_join(s.agents[i].thr, NULL);
    atomic_store(&s.mon_done, 1);
    pthread_join(s.mon, NULL);
    print_run(&s);
    for (int i = 0; i < s.agents_n; i++) {
        struct agent *a = &s.agents[i];

        foreign += a->foreign > 0;
        while (a->n > 0)
            slot_drop(a);
        free(a->win);
        crypto_wipe(&a->sk, sizeof a->sk);
    }
    fclose(s.acked);
    pthread_mutex_destroy(&s.mu);
    crypto_wipe(s.net.passphrase, sizeof s.net.passphrase);
    crypto_close();
    return foreign > 0;
}

/* ---------------------------------------------------------------- verify */

/* Where the chain executed a tx id (block.get's "executed" says where). */
struct entry {
    uint8_t id[32];
    uint64_t height;
    uint32_t index;  /* the receipt index in that block */
    uint32_t count;  /* how often the chain names the id */
    uint32_t runs;   /* how often a block executed it: 1, never more */
    bool used, acked;
};

struct table {
    struct entry *e;
    size_t cap, n;
};

static uint64_t id_hash(const uint8_t id[32])
{
    uint64_t h;

    memcpy(&h, id, sizeof h); /* ids are SHA-256 digests: already uniform */
    return h;
}

static struct entry *table_find(struct table *t, const uint8_t id[32])
{
    size_t i = (size_t)(id_hash(id) & (t->cap - 1));

    while (t->e[i].used && memcmp(t->e[i].id, id, 32) != 0)
        i = (i + 1) & (t->cap - 1);
    return &t->e[i];
}

static void table_grow(struct table *t)
{
    struct table n = {calloc(t->cap ? 2 * t->cap : 1024, sizeof *n.e), t->cap ? 2 * t->cap : 1024, t->n};

    if (n.e == NULL)
        die("%s", "out of memory");
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].used)
            *table_find(&n, t->e[i].id) = t->e[i];
    free(t->e);
    *t = n;
}

/* The entry of id, added (count 0) when new. */
static struct entry *table_get(struct table *t, const uint8_t id[32])
{
    struct entry *e;

    if (2 * (t->n + 1) > t->cap)
        table_grow(t);
    e = table_find(t, id);
    if (!e->used) {
        memset(e, 0, sizeof *e);
        memcpy(e->id, id, 32);
        e->used = true;
        t->n++;
    }
    return e;
}

struct head {
    int64_t height;
    char root[ID_BYTES], hash[ID_BYTES];
};

/* Waits until every node reports the same head; returns 0 and fills *h, or 1. */
static int wait_agree(const struct net *net, struct head *h, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    char last[512] = "";

    for (;;) {
        bool agree = true;
        struct head first = {-1, "", ""};

        last[0] = '\0';
        for (int k = 0; k < net->nodes_n; k++) {
            json_t *r = call_ok(net->urls[k], "status", json_object(), CALL_MS);
            struct head cur = {-1, "", ""};
            size_t used = strlen(last);

            if (r != NULL) {
                const char *root = json_string_value(json_object_get(r, "state_root"));
                const char *hash = json_string_value(json_object_get(r, "block_hash"));

                cur.height = (int64_t)json_integer_value(json_object_get(r, "height"));
                snprintf(cur.root, sizeof cur.root, "%s", root ? root : "");
                snprintf(cur.hash, sizeof cur.hash, "%s", hash ? hash : "");
                json_decref(r);
            }
            snprintf(last + used, sizeof last - used, " node%d h=%" PRId64 " root=%.12s hash=%.12s", k, cur.height,
                     cur.root, cur.hash);
            if (k == 0)
                first = cur;
            else if (cur.height != first.height || strcmp(cur.root, first.root) != 0 ||
                     strcmp(cur.hash, first.hash) != 0)
                agree = false;
            if (cur.height < 0)
                agree = false;
        }
        if (agree) {
            *h = first;
            return 0;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "soakload: the nodes do not agree after %.0fs:%s\n", timeout_s, last);
            return 1;
        }
        usleep(200000);
    }
}

struct receipt_job {
    const struct net *net;
    struct entry **items;
    size_t from, to;
    int node;
    const int *codes;
    uint64_t bad;
};

static void *receipt_main(void *arg)
{
    struct receipt_job *j = arg;
    const char *url = j->net->urls[j->node];

    for (size_t i = j->from; i < j->to; i++) {
        const struct entry *e = j->items[i];
        char idhex[ID_BYTES];
        json_t *r;
        const char *st;
        bool ok;

        if (crypto_hex_encode(idhex, sizeof idhex, e->id, 32) != 0)
            die("%s", "hex");
        r = call_ok(url, "tx.get", json_pack("{s:s}", "id", idhex), CALL_MS);
        st = r ? json_string_value(json_object_get(r, "status")) : NULL;
        ok = st != NULL && strcmp(st, "committed") == 0 &&
             (uint64_t)json_integer_value(json_object_get(r, "height")) == e->height &&
             (uint32_t)json_integer_value(json_object_get(r, "index")) == e->index &&
             (int)json_integer_value(json_object_get(r, "code")) == j->codes[i];
        if (!ok) {
            char *txt = r ? json_dumps(r, JSON_COMPACT) : NULL;

            if (j->bad < 5)
                fprintf(stderr, "soakload: receipt of %s on node%d: want height %" PRIu64 " index %u code %d, got %.300s\n",
                        idhex, j->node, e->height, e->index, j->codes[i], txt ? txt : "no answer");
            free(txt);
            j->bad++;
        }
        json_decref(r);
    }
    return NULL;
}

static int verify(int argc, char **argv)
{
    struct net net;
    const char *dir = NULL, *acked = NULL;
    double timeout_s = 60;
    int node = 0, bad = 0;
    struct head head;
    struct table t = {0};
    char prev[ID_BYTES] = "", line[512];
    size_t block_dups;
    uint64_t dup_blocks = 0, chain_txs = 0, dup_entries = 0, acked_n = 0, lost = 0, moved = 0, twice_acked = 0, receipt_bad = 0;
    uint64_t deferred = 0, executed_twice = 0;
    struct entry **items = NULL;
    int *codes = NULL;
    size_t items_cap = 0;
    json_t *out;
    char *txt;

    for (int i = 2; i < argc; i += 2) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL)
            die("%s needs a value", o);
        if (strcmp(o, "--testnet") == 0)
            dir = v;
        else if (strcmp(o, "--acked") == 0)
            acked = v;
        else if (strcmp(o, "--node") == 0)
            node = atoi(v);
        else if (strcmp(o, "--timeout") == 0)
            timeout_s = atof(v);
        else
            die("unknown option %s", o);
    }
    if (dir == NULL)
        die("%s", "verify needs --testnet DIR");
    net_load(&net, dir);
    if (node < 0 || node >= net.nodes_n)
        die("%s", "--node is not a node of the testnet");
    signal(SIGPIPE, SIG_IGN);
    if (wait_agree(&net, &head, timeout_s) != 0)
        return 1;

    /* The chain of one node, block by block. */
    for (int64_t h = 0; h <= head.height; h++) {
        json_t *r = call_ok(net.urls[node], "block.get", json_pack("{s:I}", "height", (json_int_t)h), CALL_MS);
        const char *hash = r ? json_string_value(json_object_get(r, "hash")) : NULL;
        const char *ph = r ? json_string_value(json_object_get(r, "prev_hash")) : NULL;
        json_t *txs = r ? json_object_get(r, "txs") : NULL;
        json_t *executed = r ? json_object_get(r, "executed") : NULL;
        uint32_t index = 0;

        if (hash == NULL || ph == NULL || !json_is_array(txs) || !json_is_array(executed) ||
            json_array_size(executed) != json_array_size(txs)) {
            fprintf(stderr, "soakload: node%d has no readable block %" PRId64 "\n", node, h);
            json_decref(r);
            return 1;
        }
        if (h > 0 && strcmp(ph, prev) != 0) {
            fprintf(stderr, "soakload: block %" PRId64 " names prev_hash %.16s, block %" PRId64 " is %.16s\n", h, ph,
                    h - 1, prev);
            bad = 1;
        }
        snprintf(prev, sizeof prev, "%s", hash);
        block_dups = 0;
        for (size_t i = 0; i < json_array_size(txs); i++) {
            uint8_t id[32];
            size_t len;
            struct entry *e;

            if (crypto_hex_decode(id, sizeof id, &len, json_string_value(json_array_get(txs, i))) != 0 || len != 32)
                die("%s", "block.get returned a malformed tx id");
            e = table_get(&t, id);
            e->count++;
            if (json_is_integer(json_array_get(executed, i))) {
                /* Executed here: its receipt index counts the executed txs before it. */
                if ((uint32_t)json_integer_value(json_array_get(executed, i)) != index) {
                    fprintf(stderr, "soakload: block %" PRId64 " tx %zu has receipt index %" JSON_INTEGER_FORMAT
                                    ", expected %u\n", h, i, json_integer_value(json_array_get(executed, i)), index);
                    bad = 1;
                }
                if (e->runs++ > 0) {
                    fprintf(stderr, "soakload: block %" PRId64 " executes a tx executed before\n", h);
                    executed_twice++;
                }
                e->height = (uint64_t)h;
                e->index = index++;
                chain_txs++;
            } else if (e->runs > 0) {
                dup_entries++;
                block_dups++;
            } else {
                deferred++;
            }
        }
        if (block_dups > 0) {
            if (dup_blocks < 5)
                fprintf(stderr, "soakload: block %" PRId64 " (view %" JSON_INTEGER_FORMAT ", proposer %" JSON_INTEGER_FORMAT
                                ") names %zu txs, %zu of them committed before\n",
                        h, json_integer_value(json_object_get(r, "view")), json_integer_value(json_object_get(r, "proposer")),
                        json_array_size(txs), block_dups);
            dup_blocks++;
        }
        json_decref(r);
    }
    if (strcmp(prev, head.hash) != 0) {
        fprintf(stderr, "soakload: the last block of node%d is %.16s, the nodes report %.16s\n", node, prev, head.hash);
        bad = 1;
    }

    /* Every acknowledged tx. */
    if (acked != NULL) {
        FILE *f = fopen(acked, "r");

        if (f == NULL)
            die("cannot open %s", acked);
        while (fgets(line, sizeof line, f) != NULL) {
            char idhex[ID_BYTES + 1], agency[ID_BYTES + 1];
            uint64_t nonce;
            int64_t height;
            int code;
            uint8_t id[32];
            size_t len;
            struct entry *e;

            if (sscanf(line, "%64s %64s %" SCNu64 " %" SCNd64 " %d", idhex, agency, &nonce, &height, &code) != 5 ||
                crypto_hex_decode(id, sizeof id, &len, idhex) != 0 || len != 32)
                die("malformed line in %s", acked);
            acked_n++;
            e = table_find(&t, id);
            if (!e->used || e->runs == 0) {
                if (lost < 5)
                    fprintf(stderr, "soakload: acknowledged tx %s (%s nonce %" PRIu64 ", height %" PRId64
                                    ") was never executed by the chain\n", idhex, agency, nonce, height);
                lost++;
                continue;
            }
            if (e->acked) {
                twice_acked++;
                continue;
            }
            e->acked = true;
            if ((int64_t)e->height != height) {
                if (moved < 5)
                    fprintf(stderr, "soakload: tx %s was acknowledged at height %" PRId64 ", the chain has it at %" PRIu64
                                    "\n", idhex, height, e->height);
                moved++;
            }
            if (acked_n > items_cap) {
                items_cap = items_cap ? 2 * items_cap : 4096;
                items = realloc(items, items_cap * sizeof *items);
                codes = realloc(codes, items_cap * sizeof *codes);
                if (items == NULL || codes == NULL)
                    die("%s", "out of memory");
            }
            items[acked_n - lost - twice_acked - 1] = e;
            codes[acked_n - lost - twice_acked - 1] = code;
        }
        fclose(f);
    }

    /* Their receipts, spread over every node. */
    {
        size_t items_n = (size_t)(acked_n - lost - twice_acked);
        struct receipt_job jobs[NODES_MAX];

        for (int k = 0; k < net.nodes_n; k++) {
            jobs[k] = (struct receipt_job){&net, items, items_n * (size_t)k / (size_t)net.nodes_n,
                                           items_n * (size_t)(k + 1) / (size_t)net.nodes_n, k, codes, 0};
        }
        {
            pthread_t thr[NODES_MAX];

            for (int k = 0; k < net.nodes_n; k++)
                if (pthread_create(&thr[k], NULL, receipt_main, &jobs[k]) != 0)
                    die("%s", "cannot start a thread");
            for (int k = 0; k < net.nodes_n; k++) {
                pthread_join(thr[k], NULL);
                receipt_bad += jobs[k].bad;
            }
        }
    }
    out = json_pack("{s:I, s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "deferred", (json_int_t)deferred,
                    "executed_twice", (json_int_t)executed_twice, "height", (json_int_t)head.height,
                    "state_root", head.root, "block_hash", head.hash, "chain_txs", (json_int_t)chain_txs,
                    "duplicate_entries", (json_int_t)dup_entries, "duplicate_blocks", (json_int_t)dup_blocks, "acked", (json_int_t)acked_n, "lost",
                    (json_int_t)lost, "moved", (json_int_t)moved, "acked_twice", (json_int_t)twice_acked,
                    "receipt_bad", (json_int_t)receipt_bad);
    txt = json_dumps(out, JSON_COMPACT);
    printf("%s\n", txt ? txt : "{}");
    free(txt);
    json_decref(out);
    free(items);
    free(codes);
    free(t.e);
    crypto_wipe(net.passphrase, sizeof net.passphrase);
    return bad || lost > 0 || moved > 0 || twice_acked > 0 || receipt_bad > 0 || executed_twice > 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return run(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return verify(argc, argv);
    fprintf(stderr, "usage: soakload run --testnet DIR --seconds S --acked FILE [--rate TX_PER_S] [--agencies N]\n"
                    "                    [--value-bytes B] [--window W] [--drain S] [--trace]\n"
                    "       soakload verify --testnet DIR [--acked FILE] [--node K] [--timeout S]\n");
    return 2;
}
