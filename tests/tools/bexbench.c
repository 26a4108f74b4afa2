/*
 * bexbench: the load generator and meter behind `make bench`
 * (scripts/bench.sh; method and results in docs/bench.md).
 *
 * bexbench run --testnet DIR --out FILE.json [--png FILE.png] [options]
 *   Offers real, signed record.publish transactions to the running network
 *   in DIR (laid out by `bexctl testnet init`, started by testnet/up.sh) and
 *   measures it. Every agency of agencies.txt is one sender: its officer1
 *   key signs, and its own agency's node receives all its transactions (a
 *   sender's nonces are strictly sequential, so one node must see them in
 *   order). Each sender first registers the UNCONDITIONAL resource
 *   "<agency>/bench"; then everything is signed before the clock starts.
 *   The run lasts --warmup plus --seconds; only the window after the warm-up
 *   counts:
 *     committed tx/s  bench txs seen committed at their submitting node
 *                     inside the window, divided by its length;
 *     latency         of the txs first offered inside the window: from the
 *                     moment their tx.submit_batch request left to the
 *                     status poll of the submitting node that first showed
 *                     a height whose block lists them (one follower thread
 *                     per node polls status every --poll-ms and reads each
 *                     new block with block.get; nothing calls tx.wait);
 *     per node        CPU seconds (/proc/PID/stat) inside the window, peak
 *                     resident memory (VmHWM of /proc/PID/status), view
 *                     changes (status.view_changes);
 *     blocks          blocks/s and average txs per block inside the window.
 *   --rate R > 0: the senders together offer R tx/s on a fixed schedule.
 *   --rate 0: each sender keeps at most --inflight/senders txs submitted but
 *   not yet committed and refills as fast as the network commits them.
 *   A tx refused with EFULL (mempool full) is offered again after a
 *   back-off (5 ms, doubling while refusals go on, at most 320 ms), keeping
 *   its first offer time. Writes the JSON report to --out,
 *   a PNG chart (committed and offered tx/s, latency p50/p99 and RSS per
 *   node over time) to --png, and a short summary on stdout.
 *
 * bexbench summary [--micro MICRO.json] [--out FILE.json] RUN.json...
 *   Groups run reports by node count and offered rate, prints the median of
 *   each figure next to the targets of the issue and next to the bound that
 *   tests/bench/micro measured for this machine, and writes them as JSON.
 *
 * The keystore passphrase is read from DIR/passphrase. Exit status 0 on a
 * completed run (the figures say how good it was), 1 on a failure.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bex.pb-c.h"
#include "crypto.h"
#include "httpc.h"
#include "keystore.h"
#include "txbuild.h"

#define SENDERS_MAX 16
#define NODES_MAX 16
#define ID_BYTES 128
#define URL_BYTES 256
#define ERR_BYTES 256
#define SECONDS_MAX 7200
#define BLOCKS_MAX ((size_t)1 << 20)
#define SIGN_THREADS_MAX 8
#define RPC_TIMEOUT_MS 30000
#define BACKOFF_MS 5      /* first wait after a refusal; doubles while refusals go on */
#define BACKOFF_MAX_MS 320
#define ERROR_BACKOFF_MS 50
#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define CACHE_TX_BYTES_MAX ((uint64_t)1 << 20) /* a cached tx longer than this is a damaged file */

/* Bits of btx.state. */
#define TX_OFFERED 1u  /* offered at least once (submit_ns is set) */
#define TX_ACCEPTED 2u /* a node accepted it at least once */

struct opts {
    const char *testnet, *out, *png, *label, *exec_at_window, *cache;
    long seconds, warmup, rate, batch, poll_ms, tick_ms, inflight, presign_rate, drain_s, senders_max;
};

/* One pre-signed transaction and what happened to it. */
struct btx {
    uint8_t *bytes;
    uint32_t len;
    uint8_t state;
    uint8_t id[CRYPTO_HASH_BYTES];
    int64_t submit_ns; /* first offer (monotonic); set by the submitter */
    int64_t commit_ns; /* first seen committed at the sender's node; set by its follower */
};

struct bench;

struct sender {
    struct bench *b;
    char id[ID_BYTES];
    size_t node; /* index into bench.nodes */
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    uint64_t nonce0; /* nonce of the register tx; load tx i has nonce0 + 1 + i */
    struct btx reg;
    struct btx *txs;
    size_t count;
    size_t next;               /* submitter: txs [0, next) were accepted */
    _Atomic size_t committed;  /* follower: load txs seen committed */
    uint64_t batches, rejected, retries, http_errors; /* submitter; read after join */
    unsigned backoff_ms;                               /* submitter: the next wait after a refusal */
    bool exhausted;
    char last_error[ERR_BYTES];
    pthread_t thread;
};

/* What a node's status said last; height -1 while it never answered. */
struct status {
    int64_t height, view, view_changes, mempool_txs, committed_txs;
};

struct sample {
    bool ok; /* the /proc figures are valid */
    uint64_t cpu_ticks;
    uint64_t rss_kib, hwm_kib;        /* VmRSS, VmHWM */
    uint64_t anon_kib, file_kib;      /* RssAnon, RssFile: LMDB's mapped pages count as file */
    struct status st;
};

struct bnode {
    struct bench *b;
    uint32_t index;
    char url[URL_BYTES];
    pid_t pid;
    bool follows;    /* a sender submits here: its follower reads every block */
    bool records;    /* this follower records the blocks */
    uint64_t height; /* follower: last height read */
    uint64_t polls, poll_errors, blocks_read;
    pthread_mutex_t mu; /* guards st */
    struct status st;   /* the latest status, for the sampler */
    pthread_t thread;
};

struct block_obs {
    uint64_t height, time_ms, view;
    int64_t seen_ns;
    uint32_t txs;
    bool null;
};

struct bench {
    struct opts o;
    char chain[ID_BYTES];
    long cores;
    struct sender senders[SENDERS_MAX];
    size_t senders_n;
    struct bnode nodes[NODES_MAX];
    size_t nodes_n;
    uint64_t *table; /* tx id -> (sender + 1) << 32 | index; open addressing */
    size_t table_mask;
    int64_t t0;
    _Atomic bool stop_submit, stop_follow;
    struct block_obs *blocks;
    _Atomic size_t blocks_n;
    struct sample *samples; /* [second * nodes_n + node] */
    size_t samples_n;       /* seconds sampled */
    uint64_t client_ticks[SECONDS_MAX];
    double load_start[3], load_end[3];
    double presign_s;
    size_t presigned;
    bool presign_cached;
    bool agree;
    uint64_t final_height;
    pid_t window_child;
};

/* ---------------------------------------------------------------- small helpers */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_until(int64_t t_ns)
{
    int64_t d = t_ns - now_ns();
    struct timespec ts;

    if (d <= 0)
        return;
    ts.tv_sec = (time_t)(d / NS_PER_S);
    ts.tv_nsec = (long)(d % NS_PER_S);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void sleep_ms(long ms)
{
    sleep_until(now_ns() + ms * NS_PER_MS);
}

static void die(const char *fmt, ...) BEX_PRINTF(1, 2) __attribute__((noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "bexbench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/*
 * Calls a JSON-RPC method. Returns the result (owned by the caller), or NULL
 * with err saying why: a transport failure or the JSON-RPC error.
 */
static json_t *rpc(const char *url, const char *method, json_t *params, char *err, size_t err_n)
{
    json_t *result = NULL, *error = NULL;
    int rc = httpc_jsonrpc(&result, &error, err, err_n, url, method, params, RPC_TIMEOUT_MS);

    json_decref(params);
    if (rc != 0)
        return NULL;
    if (error != NULL) {
        char *s = json_dumps(error, JSON_COMPACT);

        snprintf(err, err_n, "%s", s ? s : "error");
        free(s);
        json_decref(error);
        return NULL;
    }
    return result;
}

static int64_t jint(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

static double jnum(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static double median(double *v, size_t n);

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of sorted v[0..n) by the nearest-rank method. */
static int64_t quantile_i64(const int64_t *v, size_t n, double q)
{
    size_t k;

    if (n == 0)
        return 0;
    k = (size_t)ceil(q * (double)n);
    if (k == 0)
        k = 1;
    return v[(k > n ? n : k) - 1];
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------------------------------------------------------- /proc */

/* utime + stime of pid in clock ticks. */
static int proc_cpu_ticks(pid_t pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;
    char *p;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields count from the last ')'. */
    if ((p = strrchr(buf, ')')) == NULL)
        return -1;
    /* After ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    *ticks = ut + st;
    return 0;
}

/* VmRSS, VmHWM, RssAnon and RssFile of pid in KiB. */
static int proc_mem_kib(pid_t pid, uint64_t *rss, uint64_t *hwm, uint64_t *anon, uint64_t *file)
{
    char path[64], line[256];
    unsigned long long v;
    FILE *f;
    int found = 0;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmRSS: %llu", &v) == 1) {
            *rss = v;
            found |= 1;
        } else if (sscanf(line, "VmHWM: %llu", &v) == 1) {
            *hwm = v;
            found |= 2;
        } else if (sscanf(line, "RssAnon: %llu", &v) == 1) {
            *anon = v;
            found |= 4;
        } else if (sscanf(line, "RssFile: %llu", &v) == 1) {
            *file = v;
            found |= 8;
        }
    }
    fclose(f);
    return found == 15 ? 0 : -1;
}

static void loadavg(double out[3])
{
    FILE *f = fopen("/proc/loadavg", "r");

    out[0] = out[1] = out[2] = -1;
    if (f == NULL)
        return;
    if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3)
        out[0] = out[1] = out[2] = -1;
    fclose(f);
}

/* ---------------------------------------------------------------- options */

static const char *usage_text =
    "usage: bexbench run --testnet DIR --out FILE.json [--png FILE.png] [--seconds S] [--warmup W]\n"
    "                    [--rate R] [--batch B] [--poll-ms P] [--tick-ms T] [--inflight N]\n"
    "                    [--presign-rate R] [--drain S] [--senders N] [--label TEXT] [--exec-at-window CMD]\n"
    "                    [--cache FILE]\n"
    "       bexbench summary [--micro MICRO.json] [--out FILE.json] RUN.json...\n";

static long num_arg(const char *name, const char *v, long lo, long hi)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
        die("%s must be a whole number from %ld to %ld, not \"%s\"", name, lo, hi, v);
    return x;
}

static void parse_run(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->seconds = 60;
    o->warmup = 10;
    o->batch = 500;
    o->poll_ms = 10;
    o->tick_ms = 10;
    o->inflight = 8000;
    o->presign_rate = 12000;
    o->drain_s = 20;
    o->senders_max = SENDERS_MAX;
    o->label = "";
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL)
            die("%s needs a value\n%s", a, usage_text);
        if (strcmp(a, "--testnet") == 0)
            o->testnet = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--png") == 0)
            o->png = v;
        else if (strcmp(a, "--label") == 0)
            o->label = v;
        else if (strcmp(a, "--exec-at-window") == 0)
            o->exec_at_window = v;
        else if (strcmp(a, "--cache") == 0)
            o->cache = v;
        else if (strcmp(a, "--seconds") == 0)
            o->seconds = num_arg(a, v, 1, 3600);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = num_arg(a, v, 0, 600);
        else if (strcmp(a, "--rate") == 0)
            o->rate = num_arg(a, v, 0, 1000000);
        else if (strcmp(a, "--batch") == 0)
            o->batch = num_arg(a, v, 1, 1000);
        else if (strcmp(a, "--poll-ms") == 0)
            o->poll_ms = num_arg(a, v, 1, 1000);
        else if (strcmp(a, "--tick-ms") == 0)
            o->tick_ms = num_arg(a, v, 1, 1000);
        else if (strcmp(a, "--inflight") == 0)
            o->inflight = num_arg(a, v, 1, 10000000);
        else if (strcmp(a, "--presign-rate") == 0)
            o->presign_rate = num_arg(a, v, 1, 1000000);
        else if (strcmp(a, "--drain") == 0)
            o->drain_s = num_arg(a, v, 0, 600);
        else if (strcmp(a, "--senders") == 0)
            o->senders_max = num_arg(a, v, 1, SENDERS_MAX);
        else
            die("unknown option %s\n%s", a, usage_text);
    }
    if (o->testnet == NULL || o->out == NULL)
        die("--testnet and --out are required\n%s", usage_text);
    if (o->warmup + o->seconds + o->drain_s + 2 > SECONDS_MAX)
        die("warm-up, seconds and drain together exceed %d s", SECONDS_MAX);
}

/* ---------------------------------------------------------------- the network */

static pid_t read_pid(const char *dir, uint32_t index)
{
    char path[1024];
    long pid = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/node%u/bexd.pid", dir, index);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

static size_t node_slot(struct bench *b, uint32_t index, const char *url)
{
    for (size_t k = 0; k < b->nodes_n; k++) {
        if (b->nodes[k].index == index)
            return k;
    }
    if (b->nodes_n == NODES_MAX)
        die("more than %d nodes", NODES_MAX);
    struct bnode *nd = &b->nodes[b->nodes_n];

    nd->b = b;
    nd->index = index;
    nd->st.height = -1;
    if (pthread_mutex_init(&nd->mu, NULL) != 0)
        die("cannot make a mutex");
    snprintf(nd->url, sizeof nd->url, "%s", url);
    nd->pid = read_pid(b->o.testnet, index);
    if (nd->pid <= 0)
        die("no pid file for node%u in %s: is the network up (testnet/up.sh)?", index, b->o.testnet);
    return b->nodes_n++;
}

/* Reads agencies.txt: one sender per agency, and every node. */
static void load_network(struct bench *b)
{
    char path[1024], line[1024], pass[1024], err[ERR_BYTES];
    FILE *f;

    snprintf(path, sizeof path, "%s/agencies.txt", b->o.testnet);
    if ((f = fopen(path, "r")) == NULL)
        die("cannot open %s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f) != NULL) {
        char *fields[4], *save = NULL, *t;
        int nf = 0;

        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        for (t = strtok_r(line, "\t", &save); t != NULL && nf < 4; t = strtok_r(NULL, "\t", &save))
            fields[nf++] = t;
        if (nf != 4)
            die("%s: a line without 4 tab-separated fields", path);
        size_t slot = node_slot(b, (uint32_t)num_arg("node index", fields[2], 0, NODES_MAX - 1), fields[3]);

        if (b->senders_n < (size_t)b->o.senders_max) {
            struct sender *s = &b->senders[b->senders_n++];

            s->b = b;
            s->backoff_ms = BACKOFF_MS;
            snprintf(s->id, sizeof s->id, "%s", fields[0]);
            s->node = slot;
            b->nodes[slot].follows = true;
        }
    }
    fclose(f);
    if (b->senders_n == 0)
        die("%s lists no agency", path);
    snprintf(path, sizeof path, "%s/passphrase", b->o.testnet);
    if (keystore_passphrase_file(pass, sizeof pass, path, err, sizeof err) != 0)
        die("passphrase: %s", err);
    for (size_t i = 0; i < b->senders_n; i++) {
        struct sender *s = &b->senders[i];

        snprintf(path, sizeof path, "%s/agencies/%s/officer1.key", b->o.testnet, s->id);
        if (keystore_read(&s->sk, &s->pk, path, pass, err, sizeof err) != 0)
            die("%s: %s", path, err);
    }
    crypto_wipe(pass, sizeof pass);
    /* The first node that a sender submits to records the blocks. */
    for (size_t k = 0; k < b->nodes_n; k++) {
        if (b->nodes[k].follows) {
            b->nodes[k].records = true;
            break;
        }
    }
}

/* ---------------------------------------------------------------- signing */

static void sign_one(struct btx *t, const struct sender *s, const char *chain, uint64_t nonce, const char *contract,
                     const char *method, const ProtobufCMessage *args)
{
    struct txbuild tb = {0};
    uint8_t abuf[1024], *tx = NULL;
    size_t alen = protobuf_c_message_get_packed_size(args), tlen = 0;
    struct timespec ts;

    if (alen > sizeof abuf)
        die("args of %zu bytes", alen);
    protobuf_c_message_pack(args, abuf);
    clock_gettime(CLOCK_REALTIME, &ts);
    tb.chain_id = chain;
    tb.sender = s->id;
    tb.nonce = nonce;
    tb.contract = contract;
    tb.method = method;
    tb.args = abuf;
    tb.args_len = alen;
    tb.timestamp_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    if (txbuild_sign(&tx, &tlen, t->id, &tb, &s->sk, 1) != 0)
        die("signing failed");
    t->bytes = tx;
    t->len = (uint32_t)tlen;
}

static void sign_register(struct sender *s, const char *chain)
{
    Bex__Resource res = BEX__RESOURCE__INIT;
    Bex__FieldDef fd[3] = {BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT};
    Bex__FieldDef *fdp[3] = {&fd[0], &fd[1], &fd[2]};
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    char rid[ID_BYTES + 16];

    snprintf(rid, sizeof rid, "%s/bench", s->id);
    res.id = rid;
    res.title = (char *)"Benchmark readings";
    fd[0].name = (char *)"plate";
    fd[1].name = (char *)"kind";
    fd[2].name = (char *)"place";
    for (int i = 0; i < 3; i++)
        fd[i].type = BEX__FIELD_TYPE__FIELD_STRING;
    res.n_fields = 3;
    res.fields = fdp;
    res.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    res.update_cycle = (char *)"realtime";
    a.resource = &res;
    sign_one(&s->reg, s, chain, s->nonce0, "catalog", "register", &a.base);
}

/* A record like a traffic violation: a plate, a kind and a place, all short strings. */
static void sign_publish(struct btx *t, const struct sender *s, const char *chain, size_t i)
{
    static const char *const kinds[] = {"speeding", "red-light", "parking", "lane", "phone"};
    Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;
    Bex__RecordField f[3] = {BEX__RECORD_FIELD__INIT, BEX__RECORD_FIELD__INIT, BEX__RECORD_FIELD__INIT};
    Bex__RecordField *fp[3] = {&f[0], &f[1], &f[2]};
    char rid[ID_BYTES + 16], key[48], plate[24], place[48];
    uint64_t nonce = s->nonce0 + 1 + i;

    snprintf(rid, sizeof rid, "%s/bench", s->id);
    snprintf(key, sizeof key, "case-%" PRIu64, nonce);
    snprintf(plate, sizeof plate, "A%05u", (unsigned)(nonce * 7919u % 100000u));
    snprintf(place, sizeof place, "ring road %u, km %u", (unsigned)(nonce % 6u + 1u), (unsigned)(nonce % 97u));
    a.resource = rid;
    a.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
    a.version = 1;
    f[0].name = (char *)"plate";
    f[0].plaintext = plate;
    f[1].name = (char *)"kind";
    f[1].plaintext = (char *)kinds[nonce % BEX_ARRAY_LEN(kinds)];
    f[2].name = (char *)"place";
    f[2].plaintext = place;
    for (int k = 0; k < 3; k++)
        f[k].value_case = BEX__RECORD_FIELD__VALUE_PLAINTEXT;
    a.n_fields = 3;
    a.fields = fp;
    sign_one(t, s, chain, nonce, "record", "publish", &a.base);
}

struct sign_job {
    struct bench *b;
    size_t from, to; /* global tx numbers: sender k's tx i is number k * per + i */
    size_t per;
};

static void *sign_main(void *arg)
{
    struct sign_job *j = arg;

    for (size_t g = j->from; g < j->to; g++) {
        struct sender *s = &j->b->senders[g / j->per];

        sign_publish(&s->txs[g % j->per], s, j->b->chain, g % j->per);
    }
    return NULL;
}

/*
 * The signing cache (--cache FILE). Pre-signing several hundred thousand txs
 * takes a minute or more, and every run on a network made from one layout
 * (the same keys and genesis, fresh data) needs the same txs. The file holds
 * the chain id and, per sender, its id, public key, first nonce and its
 * signed txs. A run takes a prefix of it when it matches this network and
 * holds enough; otherwise the run signs and rewrites the file.
 */
#define CACHE_MAGIC "bexbench-txs-1\n"

static bool rd(FILE *f, void *p, size_t n)
{
    return fread(p, 1, n, f) == n;
}

static bool rd_u64(FILE *f, uint64_t *v)
{
    return rd(f, v, sizeof *v);
}

static bool rd_tx(FILE *f, struct btx *t)
{
    uint64_t len;

    if (!rd_u64(f, &len) || len == 0 || len > CACHE_TX_BYTES_MAX || !rd(f, t->id, sizeof t->id))
        return false;
    t->bytes = malloc((size_t)len);
    t->len = (uint32_t)len;
    return t->bytes != NULL && rd(f, t->bytes, (size_t)len);
}

/* Loads `per` txs for every sender; false (nothing kept) when the file does not fit this run. */
static bool cache_load(struct bench *b, size_t per)
{
    FILE *f = fopen(b->o.cache, "rb");
    char magic[sizeof CACHE_MAGIC - 1], chain[ID_BYTES];
    uint64_t v, n = 0, counts[SENDERS_MAX];
    bool ok;

    if (f == NULL)
        return false;
    ok = rd(f, magic, sizeof magic) && memcmp(magic, CACHE_MAGIC, sizeof magic) == 0 && rd_u64(f, &v) &&
         v < sizeof chain && rd(f, chain, (size_t)v);
    if (ok) {
        chain[v] = '\0';
        ok = strcmp(chain, b->chain) == 0 && rd_u64(f, &n) && n == b->senders_n;
    }
    for (size_t i = 0; ok && i < b->senders_n; i++) {
        struct sender *s = &b->senders[i];
        char id[ID_BYTES];
        uint8_t pk[CRYPTO_PUB_BYTES];

        ok = rd_u64(f, &v) && v < sizeof id && rd(f, id, (size_t)v);
        if (ok)
            id[v] = '\0';
        ok = ok && strcmp(id, s->id) == 0 && rd(f, pk, sizeof pk) && memcmp(pk, s->pk.b, sizeof pk) == 0 &&
             rd_u64(f, &v) && v == s->nonce0 && rd_u64(f, &counts[i]) && counts[i] >= per;
    }
    for (size_t i = 0; ok && i < b->senders_n; i++) {
        struct sender *s = &b->senders[i];
        struct btx skip;

        s->txs = xcalloc(per, sizeof(struct btx));
        s->count = per;
        ok = rd_tx(f, &s->reg);
        for (size_t k = 0; ok && k < counts[i]; k++) {
            if (k < per) {
                ok = rd_tx(f, &s->txs[k]);
            } else {
                memset(&skip, 0, sizeof skip);
                ok = rd_tx(f, &skip);
                free(skip.bytes);
            }
        }
    }
    fclose(f);
    if (!ok) {
        for (size_t i = 0; i < b->senders_n; i++) {
            for (size_t k = 0; k < b->senders[i].count; k++)
                free(b->senders[i].txs[k].bytes);
            free(b->senders[i].txs);
            free(b->senders[i].reg.bytes);
            b->senders[i].txs = NULL;
            b->senders[i].count = 0;
            memset(&b->senders[i].reg, 0, sizeof b->senders[i].reg);
        }
        fprintf(stderr, "bexbench: %s does not fit this network or run; signing anew\n", b->o.cache);
    }
    return ok;
}

static bool wr_tx(FILE *f, const struct btx *t)
{
    uint64_t len = t->len;

    return fwrite(&len, sizeof len, 1, f) == 1 && fwrite(t->id, sizeof t->id, 1, f) == 1 &&
           fwrite(t->bytes, 1, t->len, f) == t->len;
}

static void cache_save(const struct bench *b)
{
    char tmp[1024];
    FILE *f;
    uint64_t v;
    bool ok;

    snprintf(tmp, sizeof tmp, "%s.tmp", b->o.cache);
    if ((f = fopen(tmp, "wb")) == NULL) {
        fprintf(stderr, "bexbench: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    v = strlen(b->chain);
    ok = fwrite(CACHE_MAGIC, sizeof CACHE_MAGIC - 1, 1, f) == 1 && fwrite(&v, sizeof v, 1, f) == 1 &&
         fwrite(b->chain, 1, (size_t)v, f) == v;
    v = b->senders_n;
    ok = ok && fwrite(&v, sizeof v, 1, f) == 1;
    for (size_t i = 0; ok && i < b->senders_n; i++) {
        const struct sender *s = &b->senders[i];
        uint64_t idlen = strlen(s->id), count = s->count;

        ok = fwrite(&idlen, sizeof idlen, 1, f) == 1 && fwrite(s->id, 1, (size_t)idlen, f) == idlen &&
             fwrite(s->pk.b, sizeof s->pk.b, 1, f) == 1 && fwrite(&s->nonce0, sizeof s->nonce0, 1, f) == 1 &&
             fwrite(&count, sizeof count, 1, f) == 1;
    }
    for (size_t i = 0; ok && i < b->senders_n; i++) {
        ok = wr_tx(f, &b->senders[i].reg);
        for (size_t k = 0; ok && k < b->senders[i].count; k++)
            ok = wr_tx(f, &b->senders[i].txs[k]);
    }
    if (fclose(f) != 0 || !ok || rename(tmp, b->o.cache) != 0) {
        fprintf(stderr, "bexbench: cannot write %s\n", b->o.cache);
        remove(tmp);
    }
}

static void presign(struct bench *b)
{
    size_t per, total, nthreads;
    double rate = b->o.rate > 0 ? (double)b->o.rate : (double)b->o.presign_rate;
    struct sign_job jobs[SIGN_THREADS_MAX];
    pthread_t th[SIGN_THREADS_MAX];
    int64_t t = now_ns();

    per = (size_t)ceil(rate * (double)(b->o.warmup + b->o.seconds) * 1.02 / (double)b->senders_n) +
          (size_t)b->o.batch;
    total = per * b->senders_n;
    b->presigned = total;
    if (b->o.cache != NULL && cache_load(b, per)) {
        b->presign_cached = true;
        b->presign_s = (double)(now_ns() - t) / 1e9;
        return;
    }
    for (size_t i = 0; i < b->senders_n; i++) {
        b->senders[i].txs = xcalloc(per, sizeof(struct btx));
        b->senders[i].count = per;
        sign_register(&b->senders[i], b->chain);
    }
    nthreads = b->cores < 1 ? 1 : (size_t)b->cores;
    if (nthreads > SIGN_THREADS_MAX)
        nthreads = SIGN_THREADS_MAX;
    for (size_t k = 0; k < nthreads; k++) {
        jobs[k] = (struct sign_job){b, total * k / nthreads, total * (k + 1) / nthreads, per};
        if (pthread_create(&th[k], NULL, sign_main, &jobs[k]) != 0)
            die("cannot start a signing thread");
    }
    for (size_t k = 0; k < nthreads; k++)
        pthread_join(th[k], NULL);
    b->presign_s = (double)(now_ns() - t) / 1e9;
    if (b->o.cache != NULL)
        cache_save(b);
}

/* ---------------------------------------------------------------- tx id table */

static uint64_t id_hash(const uint8_t id[CRYPTO_HASH_BYTES])
{
    uint64_t h;

    /* Ids are SHA-256 outputs: their first bytes are already uniform. */
    memcpy(&h, id, sizeof h);
    return h;
}

static void table_build(struct bench *b)
{
    size_t total = 0, cap = 1024;

    for (size_t i = 0; i < b->senders_n; i++)
        total += b->senders[i].count;
    while (cap < 2 * total)
        cap <<= 1;
    b->table = xcalloc(cap, sizeof *b->table);
    b->table_mask = cap - 1;
    for (size_t s = 0; s < b->senders_n; s++) {
        for (size_t i = 0; i < b->senders[s].count; i++) {
            size_t k = (size_t)id_hash(b->senders[s].txs[i].id) & b->table_mask;

            while (b->table[k] != 0)
                k = (k + 1) & b->table_mask;
            b->table[k] = ((uint64_t)(s + 1) << 32) | (uint64_t)i;
        }
    }
}

/* Finds a bench tx by id; returns false for other txs. */
static bool table_find(const struct bench *b, const uint8_t id[CRYPTO_HASH_BYTES], size_t *s, size_t *i)
{
    size_t k = (size_t)id_hash(id) & b->table_mask;

    for (; b->table[k] != 0; k = (k + 1) & b->table_mask) {
        size_t ss = (size_t)(b->table[k] >> 32) - 1, ii = (size_t)(b->table[k] & 0xffffffffu);

        if (memcmp(b->senders[ss].txs[ii].id, id, CRYPTO_HASH_BYTES) == 0) {
            *s = ss;
            *i = ii;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- submitting */

static json_t *hex_string(const uint8_t *bytes, size_t len)
{
    char *hex = malloc(2 * len + 1);
    json_t *j;

    if (hex == NULL || crypto_hex_encode(hex, 2 * len + 1, bytes, len) != 0)
        die("out of memory");
    j = json_stringn(hex, 2 * len);
    free(hex);
    return j;
}

/*
 * Offers txs [next, next + n) of s in one tx.submit_batch. Returns how many
 * leading txs may be counted as accepted: all n, or up to the first refused
 * one (that one and what follows are offered again later; resubmitting a
 * pending tx is idempotent, and a tx refused with ENONCE after it had been
 * accepted once has already committed).
 */
static size_t submit_batch(struct sender *s, size_t n, bool *refused)
{
    struct bench *b = s->b;
    json_t *arr = json_array(), *res, *results;
    char err[ERR_BYTES];
    int64_t t;
    size_t ok = n;

    *refused = false;
    for (size_t k = 0; k < n; k++)
        json_array_append_new(arr, hex_string(s->txs[s->next + k].bytes, s->txs[s->next + k].len));
    t = now_ns();
    for (size_t k = 0; k < n; k++) {
        struct btx *x = &s->txs[s->next + k];

        if (!(x->state & TX_OFFERED)) {
            x->submit_ns = t;
            x->state |= TX_OFFERED;
        }
    }
    s->batches++;
    res = rpc(b->nodes[s->node].url, "tx.submit_batch", json_pack("{s:o}", "txs", arr), err, sizeof err);
    if (res == NULL) {
        s->http_errors++;
        snprintf(s->last_error, sizeof s->last_error, "%s", err);
        *refused = true;
        return 0;
    }
    results = json_object_get(res, "results");
    for (size_t k = 0; k < n; k++) {
        struct btx *x = &s->txs[s->next + k];
        const json_t *item = json_array_get(results, k), *e = json_object_get(item, "error");
        const char *reason = item == NULL ? "no result" : json_string_value(json_object_get(e, "reason"));
        bool done = item != NULL && (e == NULL || (reason != NULL && strcmp(reason, "ENONCE") == 0 &&
                                                   (x->state & TX_ACCEPTED)));

        if (done) {
            x->state |= TX_ACCEPTED;
            continue;
        }
        s->rejected++;
        snprintf(s->last_error, sizeof s->last_error, "%s", reason ? reason : "refused");
        if (ok == n)
            ok = k;
        *refused = true;
    }
    json_decref(res);
    return ok;
}

static void *submit_main(void *arg)
{
    struct sender *s = arg;
    struct bench *b = s->b;
    double per_s = (double)b->o.rate / (double)b->senders_n;
    size_t inflight = (size_t)b->o.inflight / b->senders_n, chunk;
    int64_t tick = b->o.tick_ms * NS_PER_MS;

    if (inflight < 1)
        inflight = 1;
    chunk = inflight / 4 < (size_t)b->o.batch / 4 ? inflight / 4 : (size_t)b->o.batch / 4;
    if (chunk < 1)
        chunk = 1;
    while (!atomic_load(&b->stop_submit)) {
        int64_t t = now_ns();
        size_t want, n, ok;
        bool refused;

        if (b->o.rate > 0) {
            want = (size_t)((double)(t - b->t0) / 1e9 * per_s) + 1;
        } else {
            want = atomic_load(&s->committed) + inflight;
            /* Refill in chunks (a quarter of the window, at most a quarter batch), not one tx per commit. */
            if (want > s->next && want - s->next < chunk && want < s->count)
                want = s->next;
        }
        if (want > s->count)
            want = s->count;
        if (s->next >= s->count) {
            s->exhausted = true;
            break;
        }
        if (s->next >= want) {
            sleep_until(t + (b->o.rate > 0 ? tick : 2 * NS_PER_MS));
            continue;
        }
        n = want - s->next;
        if (n > (size_t)b->o.batch)
            n = (size_t)b->o.batch;
        ok = submit_batch(s, n, &refused);
        s->next += ok;
        if (refused) {
            /*
             * A full pool stays full for a while: offering the same txs
             * every 5 ms only adds RPCs for the nodes to parse and refuse,
             * so the wait doubles while refusals go on.
             */
            s->retries++;
            if (s->http_errors > 0 && ok == 0) {
                sleep_ms(ERROR_BACKOFF_MS);
            } else {
                sleep_ms(s->backoff_ms);
                s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
            }
        } else {
            s->backoff_ms = BACKOFF_MS;
            if (b->o.rate > 0)
                sleep_until(t + tick);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- following commits */

static void record_block(struct bench *b, const json_t *blk, int64_t seen, size_t ntx)
{
    size_t k = atomic_load(&b->blocks_n);

    if (k >= BLOCKS_MAX)
        return;
    b->blocks[k] = (struct block_obs){
        .height = (uint64_t)jint(blk, "height"),
        .time_ms = (uint64_t)jint(blk, "time_ms"),
        .view = (uint64_t)jint(blk, "view"),
        .seen_ns = seen,
        .txs = (uint32_t)ntx,
        .null = json_is_true(json_object_get(blk, "null")),
    };
    atomic_store(&b->blocks_n, k + 1);
}

/* Reads block h at nd and marks the bench txs of nd's senders committed at `seen`. */
static int follow_block(struct bnode *nd, uint64_t h, int64_t seen)
{
    struct bench *b = nd->b;
    char err[ERR_BYTES];
    json_t *blk = rpc(nd->url, "block.get", json_pack("{s:I}", "height", (json_int_t)h), err, sizeof err);
    const json_t *txs;
    size_t slot = (size_t)(nd - b->nodes);

    if (blk == NULL)
        return -1;
    txs = json_object_get(blk, "txs");
    for (size_t k = 0; k < json_array_size(txs); k++) {
        const char *hex = json_string_value(json_array_get(txs, k));
        uint8_t id[CRYPTO_HASH_BYTES];
        size_t idlen = 0, s, i;

        if (hex == NULL || crypto_hex_decode(id, sizeof id, &idlen, hex) != 0 || idlen != sizeof id)
            continue;
        if (!table_find(b, id, &s, &i) || b->senders[s].node != slot || b->senders[s].txs[i].commit_ns != 0)
            continue;
        b->senders[s].txs[i].commit_ns = seen;
        atomic_fetch_add(&b->senders[s].committed, 1);
    }
    if (nd->records)
        record_block(b, blk, seen, json_array_size(txs));
    nd->blocks_read++;
    json_decref(blk);
    return 0;
}

static void *follow_main(void *arg)
{
    struct bnode *nd = arg;
    struct bench *b = nd->b;
    int64_t period = nd->b->o.poll_ms * NS_PER_MS;
    char err[ERR_BYTES];

    while (!atomic_load(&b->stop_follow)) {
        int64_t t = now_ns(), seen;
        json_t *st = rpc(nd->url, "status", json_object(), err, sizeof err);
        uint64_t h;

        seen = now_ns();
        nd->polls++;
        if (st == NULL) {
            nd->poll_errors++;
            sleep_until(t + period);
            continue;
        }
        h = (uint64_t)jint(st, "height");
        pthread_mutex_lock(&nd->mu);
        nd->st = (struct status){jint(st, "height"), jint(st, "view"), jint(st, "view_changes"),
                                 jint(st, "mempool_txs"), jint(st, "committed_txs")};
        pthread_mutex_unlock(&nd->mu);
        json_decref(st);
        while (nd->follows && nd->height < h && follow_block(nd, nd->height + 1, seen) == 0)
            nd->height++;
        sleep_until(t + period);
    }
    return NULL;
}

/* ---------------------------------------------------------------- sampling */

/*
 * Samples /proc for every node and copies the status its follower read
 * last. Nothing here waits on a node, so the clock of the run stays true
 * even when the nodes answer slowly.
 */
static void sample_nodes(struct bench *b, size_t sec)
{
    for (size_t k = 0; k < b->nodes_n; k++) {
        struct sample *sm = &b->samples[sec * b->nodes_n + k];

        memset(sm, 0, sizeof *sm);
        sm->ok = proc_cpu_ticks(b->nodes[k].pid, &sm->cpu_ticks) == 0 &&
                 proc_mem_kib(b->nodes[k].pid, &sm->rss_kib, &sm->hwm_kib, &sm->anon_kib, &sm->file_kib) == 0;
        pthread_mutex_lock(&b->nodes[k].mu);
        sm->st = b->nodes[k].st;
        pthread_mutex_unlock(&b->nodes[k].mu);
    }
    if (proc_cpu_ticks(getpid(), &b->client_ticks[sec]) != 0)
        b->client_ticks[sec] = 0;
    b->samples_n = sec + 1;
}

static bool drained(struct bench *b)
{
    for (size_t i = 0; i < b->senders_n; i++) {
        if (atomic_load(&b->senders[i].committed) < b->senders[i].next)
            return false;
    }
    return true;
}

/*
 * Checks that every node holds the same block at the lowest height any of
 * them reached (heights may differ by blocks still in flight; a hash that
 * differs would be a safety fault). Retries for a while when a node does
 * not answer.
 */
static bool agreement(struct bench *b)
{
    int64_t deadline = now_ns() + 30 * NS_PER_S;
    char err[ERR_BYTES];

    do {
        int64_t h = INT64_MAX;
        char hash0[80] = "";
        bool answered = true, same = true;

        for (size_t k = 0; k < b->nodes_n && answered; k++) {
            json_t *st = rpc(b->nodes[k].url, "status", json_object(), err, sizeof err);

            answered = st != NULL;
            if (st != NULL && jint(st, "height") < h)
                h = jint(st, "height");
            json_decref(st);
        }
        for (size_t k = 0; k < b->nodes_n && answered && same; k++) {
            json_t *blk = rpc(b->nodes[k].url, "block.get", json_pack("{s:I}", "height", (json_int_t)h), err,
                              sizeof err);
            const char *hash = json_string_value(json_object_get(blk, "hash"));

            answered = hash != NULL;
            if (hash != NULL && k == 0)
                snprintf(hash0, sizeof hash0, "%s", hash);
            else if (hash != NULL && strcmp(hash, hash0) != 0)
                same = false;
            json_decref(blk);
        }
        if (answered) {
            b->final_height = (uint64_t)h;
            if (!same)
                fprintf(stderr, "bexbench: the nodes hold different blocks at height %" PRId64 "\n", h);
            return same;
        }
        sleep_ms(200);
    } while (now_ns() < deadline);
    fprintf(stderr, "bexbench: a node did not answer after the run: %s\n", err);
    return false;
}

/*
 * Runs cmd through /bin/sh in the background (for a profiler over the
 * window), with BENCH_WINDOW_S set to the window's length. The environment
 * is built before fork(): the child of a threaded process may only exec.
 */
static pid_t spawn(const char *cmd, long seconds)
{
    extern char **environ;
    char var[48], *argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL}, **envp;
    size_t n = 0, k = 0;
    pid_t pid;

    while (environ[n] != NULL)
        n++;
    envp = xcalloc(n + 2, sizeof *envp);
    snprintf(var, sizeof var, "BENCH_WINDOW_S=%ld", seconds);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "BENCH_WINDOW_S=", 15) != 0)
            envp[k++] = environ[i];
    }
    envp[k++] = var;
    envp[k] = NULL;
    pid = fork();
    if (pid == 0) {
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    free(envp);
    return pid;
}

/* ---------------------------------------------------------------- the run */

static void register_resources(struct bench *b)
{
    char err[ERR_BYTES];

    for (size_t i = 0; i < b->senders_n; i++) {
        struct sender *s = &b->senders[i];
        json_t *r = rpc(b->nodes[s->node].url, "tx.submit",
                        json_pack("{s:o}", "tx", hex_string(s->reg.bytes, s->reg.len)), err, sizeof err);

        if (r == NULL)
            die("%s: registering %s/bench: %s", s->id, s->id, err);
        json_decref(r);
    }
    for (size_t i = 0; i < b->senders_n; i++) {
        struct sender *s = &b->senders[i];
        char hex[2 * CRYPTO_HASH_BYTES + 1];
        json_t *r;

        BEX_ASSERT(crypto_hex_encode(hex, sizeof hex, s->reg.id, CRYPTO_HASH_BYTES) == 0);
        r = rpc(b->nodes[s->node].url, "tx.wait", json_pack("{s:s, s:i}", "id", hex, "timeout_ms", 30000), err,
                sizeof err);
        if (r == NULL)
            die("%s: waiting for the register tx: %s", s->id, err);
        if (jint(r, "code") != 0)
            fprintf(stderr, "bexbench: %s: register answered %s (%s); publishing anyway\n", s->id,
                    json_string_value(json_object_get(r, "code_name")),
                    json_string_value(json_object_get(r, "message")));
        json_decref(r);
    }
}

static void prepare(struct bench *b)
{
    char err[ERR_BYTES];
    json_t *r;

    b->cores = sysconf(_SC_NPROCESSORS_ONLN);
    load_network(b);
    if ((r = rpc(b->nodes[0].url, "status", json_object(), err, sizeof err)) == NULL)
        die("%s: %s", b->nodes[0].url, err);
    snprintf(b->chain, sizeof b->chain, "%s", json_string_value(json_object_get(r, "chain_id")));
    json_decref(r);
    for (size_t i = 0; i < b->senders_n; i++) {
        struct sender *s = &b->senders[i];

        r = rpc(b->nodes[s->node].url, "account.nonce", json_pack("{s:s}", "agency", s->id), err, sizeof err);
        if (r == NULL)
            die("%s: account.nonce: %s", s->id, err);
        s->nonce0 = (uint64_t)jint(r, "next");
        json_decref(r);
    }
    presign(b);
    table_build(b);
    b->blocks = xcalloc(BLOCKS_MAX, sizeof *b->blocks);
    b->samples = xcalloc((size_t)SECONDS_MAX * b->nodes_n, sizeof *b->samples);
    register_resources(b);
}

static void run(struct bench *b)
{
    const struct opts *o = &b->o;
    size_t end_sec = (size_t)(o->warmup + o->seconds), sec;
    char err[ERR_BYTES];

    for (size_t k = 0; k < b->nodes_n; k++) {
        json_t *st = rpc(b->nodes[k].url, "status", json_object(), err, sizeof err);

        if (st == NULL)
            die("%s: %s", b->nodes[k].url, err);
        b->nodes[k].height = (uint64_t)jint(st, "height");
        json_decref(st);
    }
    loadavg(b->load_start);
    b->t0 = now_ns();
    for (size_t k = 0; k < b->nodes_n; k++) {
        if (pthread_create(&b->nodes[k].thread, NULL, follow_main, &b->nodes[k]) != 0)
            die("cannot start a follower");
    }
    for (size_t i = 0; i < b->senders_n; i++) {
        if (pthread_create(&b->senders[i].thread, NULL, submit_main, &b->senders[i]) != 0)
            die("cannot start a submitter");
    }
    for (sec = 0; sec <= end_sec; sec++) {
        sleep_until(b->t0 + (int64_t)sec * NS_PER_S);
        sample_nodes(b, sec);
        if (sec == (size_t)o->warmup && o->exec_at_window != NULL)
            b->window_child = spawn(o->exec_at_window, o->seconds);
    }
    loadavg(b->load_end);
    atomic_store(&b->stop_submit, true);
    for (size_t i = 0; i < b->senders_n; i++)
        pthread_join(b->senders[i].thread, NULL);
    /* Drain: what was offered inside the window should commit before the figures are taken. */
    for (; sec < end_sec + (size_t)o->drain_s + 1 && !drained(b); sec++) {
        sleep_until(b->t0 + (int64_t)sec * NS_PER_S);
        sample_nodes(b, sec);
    }
    atomic_store(&b->stop_follow, true);
    for (size_t k = 0; k < b->nodes_n; k++)
        pthread_join(b->nodes[k].thread, NULL);
    if (b->window_child > 0) {
        int status;

        waitpid(b->window_child, &status, 0);
    }
    b->agree = agreement(b);
}

/* ---------------------------------------------------------------- the chart */

/*
 * A small palette image and a PNG writer with its own minimal deflate, so
 * the chart needs no library and works on a fresh machine.
 */
enum { C_WHITE, C_BLACK, C_GRID, C_SHADE, C_GRAY, C_BLUE, C_RED, C_GREEN, C_ORANGE, C_PURPLE, C_TEAL, C_BROWN, C_N };

static const uint8_t palette[C_N][3] = {
    {255, 255, 255}, {0, 0, 0},     {225, 225, 225}, {235, 242, 255}, {150, 150, 150}, {31, 119, 180},
    {214, 39, 40},   {44, 160, 44}, {255, 127, 14},  {148, 103, 189}, {23, 190, 207},  {140, 86, 75},
};

struct canvas {
    int w, h;
    uint8_t *px;
};

static void px_set(struct canvas *c, int x, int y, uint8_t color)
{
    if (x >= 0 && y >= 0 && x < c->w && y < c->h)
        c->px[(size_t)y * (size_t)c->w + (size_t)x] = color;
}

static void fill(struct canvas *c, int x0, int y0, int x1, int y1, uint8_t color)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            px_set(c, x, y, color);
}

/* A line two pixels thick (Bresenham). */
static void line(struct canvas *c, int x0, int y0, int x1, int y1, uint8_t color, int thick)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;

    for (;;) {
        px_set(c, x0, y0, color);
        if (thick > 1) {
            px_set(c, x0 + 1, y0, color);
            px_set(c, x0, y0 + 1, color);
        }
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;

        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* 5x7 glyphs, one byte per row, bit 4 the leftmost pixel; letters are lowercase. */
struct glyph {
    char ch;
    uint8_t rows[7];
};

static const struct glyph font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}}, {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
    {'g', {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}}, {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}}, {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01}}, {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}}, {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
};

#define FONT_SCALE 2
#define CHAR_W (6 * FONT_SCALE)
#define CHAR_H (8 * FONT_SCALE)

static void text(struct canvas *c, int x, int y, const char *s, uint8_t color)
{
    for (; *s != '\0'; s++, x += CHAR_W) {
        char ch = (char)tolower((unsigned char)*s);

        for (size_t g = 0; g < BEX_ARRAY_LEN(font); g++) {
            if (font[g].ch != ch)
                continue;
            for (int r = 0; r < 7; r++)
                for (int col = 0; col < 5; col++)
                    if (font[g].rows[r] & (0x10 >> col))
                        fill(c, x + col * FONT_SCALE, y + r * FONT_SCALE, x + (col + 1) * FONT_SCALE,
                             y + (r + 1) * FONT_SCALE, color);
            break;
        }
    }
}

/* A tick step of 1, 2 or 5 times a power of ten giving about five ticks up to max. */
static double nice_step(double max)
{
    double raw = max / 5, p = pow(10, floor(log10(raw > 0 ? raw : 1)));

    if (raw / p <= 1)
        return p;
    if (raw / p <= 2)
        return 2 * p;
    if (raw / p <= 5)
        return 5 * p;
    return 10 * p;
}

struct series {
    const double *y;
    uint8_t color;
    const char *name;
};

struct panel {
    int x, y, w, h; /* the plot area */
    const char *title;
    double xmax, ymax, shade_from, shade_to;
};

static void panel_draw(struct canvas *c, const struct panel *p, const struct series *s, size_t ns, size_t n)
{
    double ystep = nice_step(p->ymax), xstep = nice_step(p->xmax);
    double ymax = ceil(p->ymax / ystep) * ystep;
    char buf[64];
    int lx = p->x + (int)strlen(p->title) * CHAR_W + 2 * CHAR_W;

    fill(c, p->x + (int)(p->shade_from / p->xmax * p->w), p->y, p->x + (int)(p->shade_to / p->xmax * p->w),
         p->y + p->h, C_SHADE);
    for (double v = 0; v <= ymax + ystep / 2; v += ystep) {
        int y = p->y + p->h - (int)(v / ymax * p->h);

        line(c, p->x, y, p->x + p->w, y, C_GRID, 1);
        snprintf(buf, sizeof buf, "%g", v);
        text(c, p->x - (int)strlen(buf) * CHAR_W - 6, y - CHAR_H / 2, buf, C_BLACK);
    }
    for (double v = 0; v <= p->xmax + xstep / 2; v += xstep) {
        int x = p->x + (int)(v / p->xmax * p->w);

        line(c, x, p->y, x, p->y + p->h, C_GRID, 1);
        snprintf(buf, sizeof buf, "%g", v);
        text(c, x - (int)strlen(buf) * CHAR_W / 2, p->y + p->h + 6, buf, C_BLACK);
    }
    line(c, p->x, p->y + p->h, p->x + p->w, p->y + p->h, C_BLACK, 1);
    line(c, p->x, p->y, p->x, p->y + p->h, C_BLACK, 1);
    text(c, p->x, p->y - CHAR_H - 6, p->title, C_BLACK);
    for (size_t k = 0; k < ns; k++) {
        int px = 0, py = 0;
        bool have = false;

        for (size_t i = 0; i < n; i++) {
            double v = s[k].y[i];
            int x, y;

            if (isnan(v)) {
                have = false;
                continue;
            }
            if (v > ymax)
                v = ymax;
            x = p->x + (int)(((double)i + 0.5) / p->xmax * p->w);
            y = p->y + p->h - (int)(v / ymax * p->h);
            if (have)
                line(c, px, py, x, y, s[k].color, 2);
            px = x;
            py = y;
            have = true;
        }
        if (s[k].name != NULL) {
            fill(c, lx, p->y - CHAR_H / 2 - 6, lx + 3 * CHAR_W, p->y - CHAR_H / 2 - 2, s[k].color);
            text(c, lx + 4 * CHAR_W, p->y - CHAR_H - 6, s[k].name, C_BLACK);
            lx += (int)(5 + strlen(s[k].name)) * CHAR_W;
        }
    }
}

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;

        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int chunk(FILE *f, const char *type, const uint8_t *data, size_t len)
{
    uint8_t hdr[8], crc[4];
    uint32_t c;

    put32(hdr, (uint32_t)len);
    memcpy(hdr + 4, type, 4);
    c = crc32_of(0, hdr + 4, 4);
    c = crc32_of(c, data, len);
    put32(crc, c);
    return fwrite(hdr, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) && fwrite(crc, 1, 4, f) == 4
               ? 0
               : -1;
}

/*
 * Deflate (RFC 1951) in one block of fixed Huffman codes, coding a run of a
 * repeated byte as a match at distance 1 and every other byte as a literal.
 * Charts are mostly runs of one colour, so this keeps them small with a few
 * lines of code. Bits go out least significant first, Huffman codes most
 * significant bit first.
 */
struct bitbuf {
    uint8_t *p;
    size_t len;
    uint32_t acc;
    int n;
};

static void put_bits(struct bitbuf *b, uint32_t v, int n)
{
    b->acc |= v << b->n;
    b->n += n;
    while (b->n >= 8) {
        b->p[b->len++] = (uint8_t)b->acc;
        b->acc >>= 8;
        b->n -= 8;
    }
}

static void put_code(struct bitbuf *b, uint32_t code, int n)
{
    uint32_t r = 0;

    for (int i = 0; i < n; i++)
        r |= ((code >> i) & 1u) << (n - 1 - i);
    put_bits(b, r, n);
}

/* A literal/length symbol in the fixed code of RFC 1951 3.2.6. */
static void put_sym(struct bitbuf *b, int sym)
{
    if (sym < 144)
        put_code(b, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256)
        put_code(b, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280)
        put_code(b, (uint32_t)(sym - 256), 7);
    else
        put_code(b, 0xC0u + (uint32_t)(sym - 280), 8);
}

/* A match of len (3..258) bytes at distance 1. */
static void put_run(struct bitbuf *b, int len)
{
    static const uint16_t base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const uint8_t extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    int k = 28;

    BEX_ASSERT(len >= 3);
    BEX_ASSERT(len <= 258);
    while (base[k] > len)
        k--;
    put_sym(b, 257 + k);
    put_bits(b, (uint32_t)(len - base[k]), extra[k]);
    put_code(b, 0, 5); /* distance code 0: distance 1 */
}

/* Writes the zlib stream of raw into out (room for raw_len * 9 / 8 + 16 bytes); returns its length. */
static size_t zlib_runs(uint8_t *out, const uint8_t *raw, size_t raw_len)
{
    struct bitbuf b = {out, 0, 0, 0};
    uint32_t a = 1, sum = 0;

    out[b.len++] = 0x78; /* deflate, 32K window */
    out[b.len++] = 0x01; /* (0x7801 is a multiple of 31) */
    put_bits(&b, 1, 1);  /* BFINAL */
    put_bits(&b, 1, 2);  /* BTYPE = fixed Huffman codes */
    for (size_t i = 0; i < raw_len;) {
        size_t run = 0;

        while (i > 0 && i + run < raw_len && run < 258 && raw[i + run] == raw[i - 1])
            run++;
        if (run >= 3) {
            put_run(&b, (int)run);
            i += run;
        } else {
            put_sym(&b, raw[i++]);
        }
    }
    put_sym(&b, 256); /* end of block */
    if (b.n > 0)
        put_bits(&b, 0, 8 - b.n);
    for (size_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        sum = (sum + a) % 65521;
    }
    put32(out + b.len, (sum << 16) | a);
    return b.len + 4;
}

/* Writes c as an 8-bit palette PNG. */
static int png_write(const char *path, const struct canvas *c)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t raw_len = (size_t)c->h * ((size_t)c->w + 1), z_len;
    uint8_t ihdr[13], plte[3 * C_N], *raw = malloc(raw_len), *z = malloc(raw_len / 8 * 9 + 64);
    FILE *f;
    int rc = -1;

    if (raw == NULL || z == NULL)
        goto done;
    for (int y = 0; y < c->h; y++) {
        raw[(size_t)y * ((size_t)c->w + 1)] = 0; /* filter: none */
        memcpy(raw + (size_t)y * ((size_t)c->w + 1) + 1, c->px + (size_t)y * (size_t)c->w, (size_t)c->w);
    }
    z_len = zlib_runs(z, raw, raw_len);
    BEX_ASSERT(z_len <= raw_len / 8 * 9 + 64);
    put32(ihdr, (uint32_t)c->w);
    put32(ihdr + 4, (uint32_t)c->h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 3;  /* palette */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* no interlace */
    memcpy(plte, palette, sizeof plte);
    crc_init();
    if ((f = fopen(path, "wb")) == NULL)
        goto done;
    rc = fwrite(sig, 1, 8, f) == 8 && chunk(f, "IHDR", ihdr, 13) == 0 && chunk(f, "PLTE", plte, sizeof plte) == 0 &&
                 chunk(f, "IDAT", z, z_len) == 0 && chunk(f, "IEND", NULL, 0) == 0
             ? 0
             : -1;
    if (fclose(f) != 0)
        rc = -1;
done:
    free(raw);
    free(z);
    return rc;
}

/* ---------------------------------------------------------------- results */

struct timeline {
    size_t n; /* seconds */
    double *offered, *committed, *p50, *p99;
    double **rss;   /* [node][second], MiB */
    double **anon;  /* [node][second], MiB */
    double **cpu;   /* [node][second], share of one core */
};

struct lat_item {
    uint32_t sec;
    uint32_t us;
};

static int cmp_lat(const void *a, const void *b)
{
    const struct lat_item *x = a, *y = b;

    if (x->sec != y->sec)
        return (x->sec > y->sec) - (x->sec < y->sec);
    return (x->us > y->us) - (x->us < y->us);
}

static void timeline_build(struct bench *b, struct timeline *tl)
{
    size_t total = 0, m = 0;
    struct lat_item *items;
    long hz = sysconf(_SC_CLK_TCK);

    tl->n = b->samples_n;
    tl->offered = xcalloc(tl->n, sizeof(double));
    tl->committed = xcalloc(tl->n, sizeof(double));
    tl->p50 = xcalloc(tl->n, sizeof(double));
    tl->p99 = xcalloc(tl->n, sizeof(double));
    tl->rss = xcalloc(b->nodes_n, sizeof(double *));
    tl->anon = xcalloc(b->nodes_n, sizeof(double *));
    tl->cpu = xcalloc(b->nodes_n, sizeof(double *));
    for (size_t s = 0; s < b->senders_n; s++)
        total += b->senders[s].count;
    items = xcalloc(total, sizeof *items);
    for (size_t s = 0; s < b->senders_n; s++) {
        for (size_t i = 0; i < b->senders[s].count; i++) {
            const struct btx *x = &b->senders[s].txs[i];
            int64_t so = (x->submit_ns - b->t0) / NS_PER_S, co = (x->commit_ns - b->t0) / NS_PER_S;

            if ((x->state & TX_OFFERED) && so >= 0 && (size_t)so < tl->n)
                tl->offered[so]++;
            if (x->commit_ns != 0 && (x->state & TX_OFFERED) && co >= 0 && (size_t)co < tl->n) {
                tl->committed[co]++;
                items[m++] = (struct lat_item){(uint32_t)co, (uint32_t)((x->commit_ns - x->submit_ns) / 1000)};
            }
        }
    }
    qsort(items, m, sizeof *items, cmp_lat);
    for (size_t sec = 0; sec < tl->n; sec++) {
        tl->p50[sec] = tl->p99[sec] = NAN;
    }
    for (size_t i = 0; i < m;) {
        size_t j = i;

        while (j < m && items[j].sec == items[i].sec)
            j++;
        size_t cnt = j - i, k50 = (size_t)ceil(0.5 * (double)cnt), k99 = (size_t)ceil(0.99 * (double)cnt);

        tl->p50[items[i].sec] = items[i + (k50 ? k50 : 1) - 1].us / 1000.0;
        tl->p99[items[i].sec] = items[i + (k99 ? k99 : 1) - 1].us / 1000.0;
        i = j;
    }
    free(items);
    for (size_t k = 0; k < b->nodes_n; k++) {
        tl->rss[k] = xcalloc(tl->n, sizeof(double));
        tl->anon[k] = xcalloc(tl->n, sizeof(double));
        tl->cpu[k] = xcalloc(tl->n, sizeof(double));
        for (size_t sec = 0; sec < tl->n; sec++) {
            const struct sample *sm = &b->samples[sec * b->nodes_n + k];
            const struct sample *prev = sec > 0 ? &b->samples[(sec - 1) * b->nodes_n + k] : NULL;

            tl->rss[k][sec] = sm->ok ? (double)sm->rss_kib / 1024.0 : NAN;
            tl->anon[k][sec] = sm->ok ? (double)sm->anon_kib / 1024.0 : NAN;
            tl->cpu[k][sec] = prev && prev->ok && sm->ok ? (double)(sm->cpu_ticks - prev->cpu_ticks) / (double)hz : NAN;
        }
    }
}

static void timeline_free(struct timeline *tl, size_t nodes)
{
    for (size_t k = 0; k < nodes; k++) {
        free(tl->rss[k]);
        free(tl->anon[k]);
        free(tl->cpu[k]);
    }
    free(tl->rss);
    free(tl->anon);
    free(tl->cpu);
    free(tl->offered);
    free(tl->committed);
    free(tl->p50);
    free(tl->p99);
}

static json_t *jarray_of(const double *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, isnan(v[i]) ? json_null() : json_real(round(v[i] * 1000) / 1000));
    return a;
}

static double max_of(const double *v, size_t n)
{
    double m = 0;

    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i]) && v[i] > m)
            m = v[i];
    return m;
}

static void chart(struct bench *b, const struct timeline *tl, const char *title)
{
    static const uint8_t node_colors[] = {C_BLUE, C_RED, C_GREEN, C_ORANGE, C_PURPLE, C_TEAL, C_BROWN, C_GRAY};
    struct canvas c = {1100, 960, NULL};
    double xmax = (double)(tl->n > 0 ? tl->n : 1), p99max = 0, sorted[SECONDS_MAX];
    struct series rate_s[2] = {{tl->offered, C_GRAY, "offered"}, {tl->committed, C_BLUE, "committed"}};
    struct series lat_s[2] = {{tl->p50, C_GREEN, "p50"}, {tl->p99, C_RED, "p99"}};
    struct series mem_s[NODES_MAX];
    char name[NODES_MAX][16];
    double rss_max = 0, shade0 = (double)b->o.warmup, shade1 = (double)(b->o.warmup + b->o.seconds);
    size_t m = 0;

    c.px = xcalloc((size_t)c.w * (size_t)c.h, 1);
    text(&c, 20, 12, title, C_BLACK);
    /* The latency axis ends at the 95th percentile of the per-second p99s: one spike must not flatten the rest. */
    for (size_t i = 0; i < tl->n; i++)
        if (!isnan(tl->p99[i]))
            sorted[m++] = tl->p99[i];
    if (m > 0) {
        qsort(sorted, m, sizeof *sorted, cmp_double);
        p99max = sorted[(size_t)((double)(m - 1) * 0.95)] * 1.2;
    }
    for (size_t k = 0; k < b->nodes_n; k++) {
        snprintf(name[k], sizeof name[k], "node%u", b->nodes[k].index);
        mem_s[k] = (struct series){tl->rss[k], node_colors[k % BEX_ARRAY_LEN(node_colors)],
                                   b->nodes_n <= 8 ? name[k] : NULL};
        if (max_of(tl->rss[k], tl->n) > rss_max)
            rss_max = max_of(tl->rss[k], tl->n);
    }
    struct panel p1 = {110, 80, 940, 210, "committed tx/s", xmax, 0, shade0, shade1};
    struct panel p2 = {110, 380, 940, 210, "latency ms", xmax, p99max > 1 ? p99max : 1, shade0, shade1};
    struct panel p3 = {110, 680, 940, 210, "rss mib", xmax, rss_max > 1 ? rss_max * 1.1 : 1, shade0, shade1};

    p1.ymax = fmax(max_of(tl->offered, tl->n), max_of(tl->committed, tl->n)) * 1.1;
    if (p1.ymax < 1)
        p1.ymax = 1;
    panel_draw(&c, &p1, rate_s, 2, tl->n);
    panel_draw(&c, &p2, lat_s, 2, tl->n);
    panel_draw(&c, &p3, mem_s, b->nodes_n, tl->n);
    text(&c, 110 + 940 / 2 - 12 * CHAR_W, 930, "seconds (shaded: measured)", C_BLACK);
    if (png_write(b->o.png, &c) != 0)
        fprintf(stderr, "bexbench: cannot write %s\n", b->o.png);
    free(c.px);
}

static void report(struct bench *b)
{
    const struct opts *o = &b->o;
    int64_t w0 = b->t0 + o->warmup * NS_PER_S, w1 = w0 + o->seconds * NS_PER_S;
    size_t total = 0, nlat = 0, in_window = 0, offered = 0, uncommitted = 0, blocks = 0, block_txs = 0, nulls = 0;
    uint64_t rejected = 0, retries = 0, http_errors = 0, batches = 0;
    int64_t *lat, vc_max = 0;
    double cpu_all = 0;
    double lat_sum = 0, hz = (double)sysconf(_SC_CLK_TCK);
    bool exhausted = false;
    struct timeline tl;
    json_t *root, *jn = json_array(), *js = json_array(), *jt;
    size_t ws = (size_t)o->warmup, we = (size_t)(o->warmup + o->seconds);
    char title[160];

    for (size_t s = 0; s < b->senders_n; s++)
        total += b->senders[s].count;
    lat = xcalloc(total, sizeof *lat);
    for (size_t s = 0; s < b->senders_n; s++) {
        const struct sender *sd = &b->senders[s];

        for (size_t i = 0; i < sd->count; i++) {
            const struct btx *x = &sd->txs[i];

            if (x->commit_ns >= w0 && x->commit_ns < w1)
                in_window++;
            if (!(x->state & TX_OFFERED) || x->submit_ns < w0 || x->submit_ns >= w1)
                continue;
            offered++;
            if (x->commit_ns == 0) {
                uncommitted++;
                continue;
            }
            lat[nlat] = x->commit_ns - x->submit_ns;
            lat_sum += (double)lat[nlat];
            nlat++;
        }
        rejected += sd->rejected;
        retries += sd->retries;
        http_errors += sd->http_errors;
        batches += sd->batches;
        exhausted = exhausted || sd->exhausted;
        json_array_append_new(js, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:s}", "agency", sd->id, "node",
                                            (json_int_t)b->nodes[sd->node].index, "offered", (json_int_t)sd->next,
                                            "committed", (json_int_t)atomic_load(&sd->committed), "rejected",
                                            (json_int_t)sd->rejected, "batches", (json_int_t)sd->batches,
                                            "exhausted", sd->exhausted, "last_error", sd->last_error));
    }
    qsort(lat, nlat, sizeof *lat, cmp_i64);
    for (size_t k = 0; k < atomic_load(&b->blocks_n); k++) {
        if (b->blocks[k].seen_ns < w0 || b->blocks[k].seen_ns >= w1)
            continue;
        blocks++;
        block_txs += b->blocks[k].txs;
        nulls += b->blocks[k].null;
    }
    if (we >= b->samples_n)
        we = b->samples_n - 1;
    for (size_t k = 0; k < b->nodes_n; k++) {
        const struct sample *a = &b->samples[ws * b->nodes_n + k], *z = &b->samples[we * b->nodes_n + k];
        const struct sample *last = &b->samples[(b->samples_n - 1) * b->nodes_n + k];
        double cpu = a->ok && z->ok ? (double)(z->cpu_ticks - a->cpu_ticks) / hz : -1;
        int64_t vc = a->st.height >= 0 && z->st.height >= 0 ? z->st.view_changes - a->st.view_changes : -1;

        if (vc > vc_max)
            vc_max = vc;
        if (cpu > 0)
            cpu_all += cpu;
        double anon_peak = 0;

        for (size_t sec = 0; sec < b->samples_n; sec++)
            anon_peak = fmax(anon_peak, (double)b->samples[sec * b->nodes_n + k].anon_kib / 1024.0);
        json_t *nj = json_pack("{s:I, s:I, s:I}", "polls", (json_int_t)b->nodes[k].polls, "poll_errors",
                               (json_int_t)b->nodes[k].poll_errors, "blocks_read", (json_int_t)b->nodes[k].blocks_read);

        json_object_update_new(
            nj, json_pack("{s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I}", "index",
                          (json_int_t)b->nodes[k].index, "pid", (int)b->nodes[k].pid, "cpu_s", cpu, "cpu_util",
                          cpu / (double)o->seconds, "peak_rss_mib", (double)last->hwm_kib / 1024.0, "rss_start_mib",
                          (double)a->rss_kib / 1024.0, "rss_end_mib", (double)z->rss_kib / 1024.0,
                          "peak_anon_mib", anon_peak, "anon_end_mib", (double)last->anon_kib / 1024.0, "file_end_mib",
                          (double)last->file_kib / 1024.0, "view_changes",
                          (json_int_t)vc, "view_changes_total", (json_int_t)last->st.view_changes, "committed_txs",
                          (json_int_t)last->st.committed_txs, "height", (json_int_t)last->st.height));
        json_array_append_new(jn, nj);
    }
    timeline_build(b, &tl);
    jt = json_pack("{s:o, s:o, s:o, s:o}", "offered", jarray_of(tl.offered, tl.n), "committed",
                   jarray_of(tl.committed, tl.n), "p50_ms", jarray_of(tl.p50, tl.n), "p99_ms", jarray_of(tl.p99, tl.n));
    {
        json_t *rss = json_array(), *anon = json_array(), *cpu = json_array();

        for (size_t k = 0; k < b->nodes_n; k++) {
            json_array_append_new(rss, jarray_of(tl.rss[k], tl.n));
            json_array_append_new(anon, jarray_of(tl.anon[k], tl.n));
            json_array_append_new(cpu, jarray_of(tl.cpu[k], tl.n));
        }
        json_object_set_new(jt, "rss_mib", rss);
        json_object_set_new(jt, "rss_anon_mib", anon);
        json_object_set_new(jt, "cpu_util", cpu);
    }
    double tps = (double)in_window / (double)o->seconds;
    double client_cpu = (double)(b->client_ticks[we] - b->client_ticks[ws]) / hz;

    root = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:[f,f,f], s:[f,f,f]}",
                     "tool", "bexbench", "label", o->label, "nodes", (json_int_t)b->nodes_n, "senders",
                     (json_int_t)b->senders_n, "rate_offered", (json_int_t)o->rate, "seconds", (json_int_t)o->seconds,
                     "warmup", (json_int_t)o->warmup, "batch", (json_int_t)o->batch, "poll_ms", (json_int_t)o->poll_ms,
                     "inflight", (json_int_t)o->inflight, "presigned", (json_int_t)b->presigned, "presign_s",
                     b->presign_s, "exhausted", exhausted, "loadavg_start", b->load_start[0], b->load_start[1],
                     b->load_start[2], "loadavg_end", b->load_end[0], b->load_end[1], b->load_end[2]);
    json_object_set_new(root, "cores", json_integer(b->cores));
    json_object_set_new(root, "presign_cached", json_boolean(b->presign_cached));
    json_object_set_new(root, "committed_tps", json_real(tps));
    json_object_set_new(root, "committed_in_window", json_integer((json_int_t)in_window));
    json_object_set_new(root, "offered_tps", json_real((double)offered / (double)o->seconds));
    json_object_set_new(root, "uncommitted_in_window", json_integer((json_int_t)uncommitted));
    json_object_set_new(root, "latency_ms",
                        json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)nlat, "mean",
                                  nlat ? lat_sum / (double)nlat / 1e6 : 0.0, "p50",
                                  (double)quantile_i64(lat, nlat, 0.50) / 1e6, "p90",
                                  (double)quantile_i64(lat, nlat, 0.90) / 1e6, "p99",
                                  (double)quantile_i64(lat, nlat, 0.99) / 1e6, "max",
                                  nlat ? (double)lat[nlat - 1] / 1e6 : 0.0));
    json_object_set_new(root, "blocks_per_s", json_real((double)blocks / (double)o->seconds));
    json_object_set_new(root, "blocks_in_window", json_integer((json_int_t)blocks));
    json_object_set_new(root, "avg_block_txs", json_real(blocks ? (double)block_txs / (double)blocks : 0.0));
    json_object_set_new(root, "null_blocks", json_integer((json_int_t)nulls));
    json_object_set_new(root, "view_changes", json_integer((json_int_t)vc_max));
    /* Machine-independent: all nodes' CPU per committed tx, and what that would give on every core. */
    json_object_set_new(root, "node_cpu_cores", json_real(cpu_all / (double)o->seconds));
    json_object_set_new(root, "cpu_us_per_tx", json_real(in_window ? cpu_all * 1e6 / (double)in_window : 0.0));
    json_object_set_new(root, "projected_tps_all_cores",
                        json_real(cpu_all > 0 ? (double)b->cores * (double)in_window / cpu_all : 0.0));
    json_object_set_new(root, "agree", json_boolean(b->agree));
    json_object_set_new(root, "final_height", json_integer((json_int_t)b->final_height));
    json_object_set_new(root, "client", json_pack("{s:f, s:I, s:I, s:I, s:I}", "cpu_s", client_cpu, "batches",
                                                  (json_int_t)batches, "rejected", (json_int_t)rejected, "retries",
                                                  (json_int_t)retries, "http_errors", (json_int_t)http_errors));
    json_object_set_new(root, "node_stats", jn);
    json_object_set_new(root, "sender_stats", js);
    json_object_set_new(root, "timeline", jt);
    if (json_dump_file(root, o->out, JSON_INDENT(1)) != 0)
        die("cannot write %s", o->out);

    printf("bexbench: %zu nodes, %zu senders, offered %s, window %lds after %lds warm-up; load avg %.2f -> %.2f "
           "(%ld cores)\n",
           b->nodes_n, b->senders_n, o->rate > 0 ? "at a fixed rate" : "as fast as accepted", o->seconds, o->warmup,
           b->load_start[0], b->load_end[0], b->cores);
    if (o->rate > 0)
        printf("  offered       %.0f tx/s (target %ld)\n", (double)offered / (double)o->seconds, o->rate);
    printf("  committed     %.0f tx/s (%zu txs in the window)%s\n", tps, in_window,
           exhausted ? "  [pre-signed txs ran out: a lower bound]" : "");
    printf("  latency ms    p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  (%zu txs; %zu offered in the window never "
           "committed)\n",
           (double)quantile_i64(lat, nlat, 0.50) / 1e6, (double)quantile_i64(lat, nlat, 0.90) / 1e6,
           (double)quantile_i64(lat, nlat, 0.99) / 1e6, nlat ? (double)lat[nlat - 1] / 1e6 : 0.0, nlat, uncommitted);
    printf("  node CPU      %.2f cores in all = %.0f us per committed tx; with all %ld cores to the nodes: ~%.0f "
           "tx/s (projection)\n",
           cpu_all / (double)o->seconds, in_window ? cpu_all * 1e6 / (double)in_window : 0.0, b->cores,
           cpu_all > 0 ? (double)b->cores * (double)in_window / cpu_all : 0.0);
    printf("  blocks        %.1f/s, %.1f txs per block; view changes %" PRId64 "; nodes agree: %s (height %" PRIu64
           ")\n",
           (double)blocks / (double)o->seconds, blocks ? (double)block_txs / (double)blocks : 0.0, vc_max,
           b->agree ? "yes" : "NO", b->final_height);
    for (size_t k = 0; k < b->nodes_n; k++) {
        const json_t *n = json_array_get(jn, k);

        printf("  node%-2u        cpu %.1f s (%.0f%% of a core)  peak rss %.1f MiB (at the end: anon %.1f, "
               "file-backed %.1f; peak anon %.1f)\n",
               b->nodes[k].index, jnum(n, "cpu_s"), 100 * jnum(n, "cpu_util"), jnum(n, "peak_rss_mib"),
               jnum(n, "anon_end_mib"), jnum(n, "file_end_mib"), jnum(n, "peak_anon_mib"));
    }
    printf("  client        cpu %.1f s, %" PRIu64 " batches, %" PRIu64 " refusals, %" PRIu64 " http errors; "
           "pre-signed %zu txs in %.1f s%s\n",
           client_cpu, batches, rejected, http_errors, b->presigned, b->presign_s,
           b->presign_cached ? " (from the cache)" : "");
    if (o->png != NULL) {
        snprintf(title, sizeof title, "bex %zu nodes, %s: %.0f tx/s, p99 %.0f ms", b->nodes_n,
                 o->rate > 0 ? "fixed rate" : "max rate", tps, (double)quantile_i64(lat, nlat, 0.99) / 1e6);
        chart(b, &tl, title);
    }
    timeline_free(&tl, b->nodes_n);
    json_decref(root);
    free(lat);
}

static int cmd_run(int argc, char **argv)
{
    struct bench *b = xcalloc(1, sizeof *b);

    parse_run(&b->o, argc, argv);
    if (crypto_init() != 0)
        die("crypto init failed");
    prepare(b);
    run(b);
    report(b);
    for (size_t i = 0; i < b->senders_n; i++) {
        for (size_t k = 0; k < b->senders[i].count; k++)
            free(b->senders[i].txs[k].bytes);
        free(b->senders[i].txs);
        free(b->senders[i].reg.bytes);
        crypto_wipe(&b->senders[i].sk, sizeof b->senders[i].sk);
    }
    for (size_t k = 0; k < b->nodes_n; k++)
        pthread_mutex_destroy(&b->nodes[k].mu);
    free(b->table);
    free(b->blocks);
    free(b->samples);
    free(b);
    return 0;
}

/* ---------------------------------------------------------------- summary */

#define RUNS_MAX 64

struct group {
    int64_t nodes, rate;
    json_t *runs[RUNS_MAX];
    size_t n;
};

/* The median over a group's runs of the number at path "a" or "a.b". */
static double gmed(const struct group *g, const char *a, const char *bkey)
{
    double v[RUNS_MAX];

    for (size_t i = 0; i < g->n; i++) {
        const json_t *o = json_object_get(g->runs[i], a);

        v[i] = json_number_value(bkey ? json_object_get(o, bkey) : o);
    }
    return median(v, g->n);
}

/* The median over runs of the largest (or summed) per-node figure. */
static double gmed_nodes(const struct group *g, const char *key, bool sum)
{
    double v[RUNS_MAX];

    for (size_t i = 0; i < g->n; i++) {
        const json_t *ns = json_object_get(g->runs[i], "node_stats");
        double acc = 0;

        for (size_t k = 0; k < json_array_size(ns); k++) {
            double x = jnum(json_array_get(ns, k), key);

            acc = sum ? acc + x : fmax(acc, x);
        }
        v[i] = acc;
    }
    return median(v, g->n);
}

static const char *verdict(bool ok)
{
    return ok ? "met" : "NOT met";
}

static int cmd_summary(int argc, char **argv)
{
    const char *micro_path = NULL, *out = NULL;
    struct group groups[16];
    size_t ng = 0;
    json_t *micro = NULL, *sum = json_object(), *jg = json_array();
    double tps4 = -1, tps7 = -1;

    memset(groups, 0, sizeof groups);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--micro") == 0 && i + 1 < argc) {
            micro_path = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
            continue;
        }
        json_error_t je;
        json_t *r = json_load_file(argv[i], 0, &je);
        int64_t nodes, rate;
        size_t g;

        if (r == NULL)
            die("%s: %s", argv[i], je.text);
        nodes = jint(r, "nodes");
        rate = jint(r, "rate_offered");
        for (g = 0; g < ng; g++)
            if (groups[g].nodes == nodes && groups[g].rate == rate)
                break;
        if (g == ng) {
            if (ng == BEX_ARRAY_LEN(groups))
                die("too many configurations");
            groups[ng++] = (struct group){.nodes = nodes, .rate = rate};
        }
        if (groups[g].n == RUNS_MAX)
            die("too many runs of one configuration");
        groups[g].runs[groups[g].n++] = r;
    }
    if (ng == 0)
        die("no run reports given\n%s", usage_text);
    if (micro_path != NULL) {
        json_error_t je;

        if ((micro = json_load_file(micro_path, 0, &je)) == NULL)
            die("%s: %s", micro_path, je.text);
    }
    printf("\n==== bex benchmark summary (medians of runs; targets from the issue \"Throughput and latency\")\n");
    if (micro != NULL) {
        printf("machine bound (tests/bench/micro, %" PRId64 " cores): verify %.1f us, sha256 of a tx %.2f us, "
               "admission (txcheck) %.1f us, LMDB block commit %.2f ms (%" PRId64 " txs, fsync), ledger apply %.1f "
               "us/tx (CPU %.1f)\n",
               jint(micro, "cores"), jnum(micro, "verify_us"), jnum(micro, "sha256_tx_us"), jnum(micro, "txcheck_us"),
               jnum(micro, "lmdb_commit_sync_ms"), jint(micro, "block_txs"), jnum(micro, "ledger_apply_us_per_tx"),
               jnum(micro, "ledger_apply_cpu_us_per_tx"));
    }
    for (size_t g = 0; g < ng; g++) {
        const struct group *gr = &groups[g];
        double tps = gmed(gr, "committed_tps", NULL), bound = 0, bound_full = 0, load[RUNS_MAX];
        double p50 = gmed(gr, "latency_ms", "p50"), p99 = gmed(gr, "latency_ms", "p99");
        double rss = gmed_nodes(gr, "peak_rss_mib", false), anon = gmed_nodes(gr, "peak_anon_mib", false);

        for (size_t i = 0; i < gr->n; i++)
            load[i] = json_number_value(json_array_get(json_object_get(gr->runs[i], "loadavg_end"), 0));
        if (micro != NULL) {
            double cores = (double)jint(micro, "cores");

            bound = cores * 1e6 / ((double)gr->nodes * (jnum(micro, "verify_us") + jnum(micro, "sha256_tx_us")));
            bound_full = cores * 1e6 / ((double)gr->nodes * (jnum(micro, "txcheck_us") +
                                                             jnum(micro, "ledger_apply_cpu_us_per_tx")));
        }
        printf("\n-- %" PRId64 " nodes, %s, %zu run(s), load average at the end %.2f (median)\n", gr->nodes,
               gr->rate > 0 ? "fixed offered rate" : "offered as fast as accepted", gr->n, median(load, gr->n));
        if (gr->rate > 0)
            printf("   offered         %8.0f tx/s (asked %" PRId64 ")\n", gmed(gr, "offered_tps", NULL), gr->rate);
        printf("   committed       %8.0f tx/s", tps);
        if (gr->rate == 0 && gr->nodes == 4)
            printf("   target >= 10000: %s", verdict(tps >= 10000));
        printf("\n");
        if (bound > 0)
            printf("   of the bound    %8.1f %%   (verify bound %.0f tx/s = cores / (nodes x (verify + sha256)); "
                   "with admission + execution + commit %.0f tx/s: %.1f %%)\n",
                   100 * tps / bound, bound, bound_full, 100 * tps / bound_full);
        printf("   latency ms      p50 %.1f  p90 %.1f  p99 %.1f  max %.1f", p50, gmed(gr, "latency_ms", "p90"), p99,
               gmed(gr, "latency_ms", "max"));
        if (gr->rate == 5000 && gr->nodes == 4)
            printf("   targets p50 <= 100: %s, p99 <= 300: %s", verdict(p50 <= 100), verdict(p99 <= 300));
        printf("\n");
        printf("   node CPU        %.2f cores in all, %.0f us per committed tx; all %" PRId64 " cores to the nodes would "
               "give ~%.0f tx/s (projection)\n",
               gmed(gr, "node_cpu_cores", NULL), gmed(gr, "cpu_us_per_tx", NULL), jint(gr->runs[0], "cores"),
               gmed(gr, "projected_tps_all_cores", NULL));
        printf("   blocks          %.1f/s, %.0f txs per block, view changes %.0f\n", gmed(gr, "blocks_per_s", NULL),
               gmed(gr, "avg_block_txs", NULL), gmed(gr, "view_changes", NULL));
        printf("   per node        cpu %.1f s of %" PRId64 " s; peak rss (VmHWM) %.1f MiB, of it anonymous at most "
               "%.1f MiB, the rest LMDB's mapped file (max over nodes; target <= 256 after 2M txs: %s here, after "
               "%.0f txs)\n",
               gmed_nodes(gr, "cpu_s", false), jint(gr->runs[0], "seconds"), rss, anon, verdict(rss <= 256),
               gmed_nodes(gr, "committed_txs", false));
        if (gr->rate == 0 && gr->nodes == 4)
            tps4 = tps;
        if (gr->rate == 0 && gr->nodes == 7)
            tps7 = tps;
        json_array_append_new(
            jg, json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
                          "s:f}",
                          "nodes",
                          (json_int_t)gr->nodes, "rate_offered", (json_int_t)gr->rate, "runs", (json_int_t)gr->n,
                          "committed_tps", tps, "offered_tps", gmed(gr, "offered_tps", NULL), "p50_ms", p50, "p90_ms",
                          gmed(gr, "latency_ms", "p90"), "p99_ms", p99, "max_ms", gmed(gr, "latency_ms", "max"),
                          "blocks_per_s", gmed(gr, "blocks_per_s", NULL), "avg_block_txs",
                          gmed(gr, "avg_block_txs", NULL), "peak_rss_mib", rss, "cpu_s_max",
                          gmed_nodes(gr, "cpu_s", false), "bound_verify_tps", bound, "bound_fraction",
                          bound > 0 ? tps / bound : 0.0, "cpu_us_per_tx", gmed(gr, "cpu_us_per_tx", NULL),
                          "projected_tps_all_cores", gmed(gr, "projected_tps_all_cores", NULL), "peak_anon_mib", anon,
                          "load_end",
                          median(load, gr->n)));
    }
    if (tps4 > 0 && tps7 >= 0)
        printf("\n7-node throughput is %.0f %% of 4-node (target >= 55 %%: %s)\n", 100 * tps7 / tps4,
               verdict(tps7 >= 0.55 * tps4));
    json_object_set_new(sum, "groups", jg);
    if (micro != NULL)
        json_object_set(sum, "micro", micro);
    if (tps4 > 0 && tps7 >= 0)
        json_object_set_new(sum, "scale_7_over_4", json_real(tps7 / tps4));
    if (out != NULL && json_dump_file(sum, out, JSON_INDENT(1)) != 0)
        die("cannot write %s", out);
    json_decref(sum);
    json_decref(micro);
    for (size_t g = 0; g < ng; g++)
        for (size_t i = 0; i < groups[g].n; i++)
            json_decref(groups[g].runs[i]);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return cmd_run(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "summary") == 0)
        return cmd_summary(argc, argv);
    fprintf(stderr, "%s", usage_text);
    return argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) ? 0 : 2;
}
