/*
 * micro: the microbenchmarks of `make bench`: what one transaction costs
 * this machine, and from that the highest rate N nodes could verify on its
 * cores.
 *
 * usage: micro [--out FILE.json] [--block-txs B] [--dir TMPDIR] [--part P]
 *
 * --part picks one group of figures (crypto, lmdb, ledger or exec; default
 * all); the bound needs all of them, so it is printed only for all.
 *
 * Measured, each the median of REPS repetitions:
 *   verify_us        one secp256k1 ECDSA verification (crypto_verify);
 *   sign_us          one signature (what pre-signing costs the client);
 *   sha256_tx_us     one SHA-256 over an encoded bench transaction;
 *   txcheck_us       the node's whole admission check of that transaction
 *                    (decode, hash, verify, state callbacks) with the
 *                    signature cache off;
 *   txcheck_hit_us   the same check of a tx in the cache (a gossip
 *                    duplicate: decoded and checked, not verified);
 *   proposal_tx_us   txcheck_tx_signed() of a tx in the cache, as a
 *                    proposal's tx this node already admitted (two hashes);
 *   lmdb_commit_*    one LMDB write transaction holding a block's worth of
 *                    writes for B transactions (the block, B receipts, B
 *                    state records, B history entries), with fdatasync as
 *                    the node runs (sync) and without (nosync);
 *   lmdb_vote_sync_ms one synced store_pbft_put: what persisting one
 *                    consensus vote costs before it may be sent;
 *   ledger_apply_*   ledger_apply() of real blocks of B record.publish txs
 *                    (execution, state root, receipts and the synced LMDB
 *                    commit), per block and per tx;
 *   exec_cpu_us_per_tx the executor alone on the same blocks over an
 *                    in-memory store (exec_tx of every tx and
 *                    exec_block_end: decoding, contract, audit, receipts,
 *                    write set and state root; no LMDB);
 *   store_bytes_per_tx how much data.mdb grows per applied tx.
 * CPU-bound figures are thread CPU time, so other processes on a shared
 * machine do not inflate them; the disk-bound ones (commits) are wall time.
 *
 * The bound: each tx is verified by every node, so N nodes on C cores can
 * verify at most C / (N x (verify + sha256)) tx/s; with admission, execution
 * and commit counted too, C / (N x (txcheck + apply per tx)).
 */
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bex.pb-c.h"
#include "config.h"
#include "contract.h"
#include "crypto.h"
#include "ledger.h"
#include "store.h"
#include "txbuild.h"
#include "txcheck.h"

#define CHAIN "bex-micro"
#define T0 1700000000000ull
#define AGENCIES 4
#define REPS 5
#define VERIFY_N 2000
#define SHA_N 200000
#define HIT_N 20000 /* cached txchecks per repetition */
#define BLOCKS_N 6
#define BLOCK_TXS_MAX 10000
#define PATH_BYTES 512

static const char *const agency_ids[AGENCIES] = {"city.traffic", "city.police", "city.tax", "city.health"};

struct clock_pair {
    double wall_us, cpu_us;
};

static struct clock_pair now(void)
{
    struct timespec w, c;

    clock_gettime(CLOCK_MONOTONIC, &w);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
    return (struct clock_pair){(double)w.tv_sec * 1e6 + (double)w.tv_nsec / 1e3,
                               (double)c.tv_sec * 1e6 + (double)c.tv_nsec / 1e3};
}

static void die(const char *what)
{
    fprintf(stderr, "micro: %s\n", what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------------------------------------------------------- a bench transaction */

struct fixture {
    struct genesis g;
    struct crypto_seckey sk[AGENCIES];
    char err[512];
};

static void build_genesis(struct fixture *fx)
{
    struct genesis *g = &fx->g;
    struct crypto_seckey sk;

    config_genesis_defaults(g);
    snprintf(g->chain_id, sizeof g->chain_id, "%s", CHAIN);
    g->genesis_time_ms = T0;
    g->agencies_n = AGENCIES;
    g->nodes_n = AGENCIES;
    g->consensus.block_txs_max = BLOCK_TXS_MAX;
    for (int i = 0; i < AGENCIES; i++) {
        struct genesis_agency *a = &g->agencies[i];
        struct genesis_node *n = &g->nodes[i];

        snprintf(a->id, sizeof a->id, "%s", agency_ids[i]);
        snprintf(a->name, sizeof a->name, "Agency %s", agency_ids[i]);
        a->roles_n = 1;
        snprintf(a->roles[0], sizeof a->roles[0], "member");
        a->officers_n = 1;
        if (crypto_keygen(&fx->sk[i], &a->officers[0]) != 0 || crypto_keygen(&sk, &a->enc_key) != 0 ||
            crypto_keygen(&sk, &n->node_key) != 0 || crypto_random(n->tls_key, sizeof n->tls_key) != 0)
            die("keygen failed");
        a->threshold = 1;
        snprintf(n->agency, sizeof n->agency, "%s", agency_ids[i]);
        snprintf(n->address.host, sizeof n->address.host, "127.0.0.1");
        n->address.port = (uint16_t)(27001 + i);
    }
    crypto_wipe(&sk, sizeof sk);
    if (config_check_genesis(g, "genesis", fx->err, sizeof fx->err) != 0)
        die(fx->err);
}

static uint8_t *sign(struct fixture *fx, size_t *len, uint8_t id[CRYPTO_HASH_BYTES], uint64_t nonce,
                     const char *contract, const char *method, const ProtobufCMessage *args)
{
    uint8_t abuf[1024], *tx = NULL;
    size_t alen = protobuf_c_message_get_packed_size(args);
    struct txbuild tb = {0};

    if (alen > sizeof abuf)
        die("args too large");
    protobuf_c_message_pack(args, abuf);
    tb.chain_id = CHAIN;
    tb.sender = agency_ids[0];
    tb.nonce = nonce;
    tb.contract = contract;
    tb.method = method;
    tb.args = abuf;
    tb.args_len = alen;
    tb.timestamp_ms = T0 + nonce;
    if (txbuild_sign(&tx, len, id, &tb, &fx->sk[0], 1) != 0)
        die("signing failed");
    return tx;
}

/* The same shape as bexbench's transactions: three short plaintext fields. */
static uint8_t *sign_publish(struct fixture *fx, size_t *len, uint8_t id[CRYPTO_HASH_BYTES], uint64_t nonce)
{
    Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;
    Bex__RecordField f[3] = {BEX__RECORD_FIELD__INIT, BEX__RECORD_FIELD__INIT, BEX__RECORD_FIELD__INIT};
    Bex__RecordField *fp[3] = {&f[0], &f[1], &f[2]};
    char key[48], plate[24], place[48];

    snprintf(key, sizeof key, "case-%" PRIu64, nonce);
    snprintf(plate, sizeof plate, "A%05u", (unsigned)(nonce * 7919u % 100000u));
    snprintf(place, sizeof place, "ring road %u, km %u", (unsigned)(nonce % 6u + 1u), (unsigned)(nonce % 97u));
    a.resource = (char *)"city.traffic/bench";
    a.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
    a.version = 1;
    f[0].name = (char *)"plate";
    f[0].plaintext = plate;
    f[1].name = (char *)"kind";
    f[1].plaintext = (char *)"speeding";
    f[2].name = (char *)"place";
    f[2].plaintext = place;
    for (int k = 0; k < 3; k++)
        f[k].value_case = BEX__RECORD_FIELD__VALUE_PLAINTEXT;
    a.n_fields = 3;
    a.fields = fp;
    return sign(fx, len, id, nonce, "record", "publish", &a.base);
}

static uint8_t *sign_register(struct fixture *fx, size_t *len, uint8_t id[CRYPTO_HASH_BYTES], uint64_t nonce)
{
    Bex__Resource res = BEX__RESOURCE__INIT;
    Bex__FieldDef fd[3] = {BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT};
    Bex__FieldDef *fdp[3] = {&fd[0], &fd[1], &fd[2]};
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;

    res.id = (char *)"city.traffic/bench";
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
    return sign(fx, len, id, nonce, "catalog", "register", &a.base);
}

/* ---------------------------------------------------------------- crypto */

static void tc_sha256(uint8_t out[TXCHECK_HASH_BYTES], const void *data, size_t len)
{
    crypto_sha256(out, data, len);
}

static int tc_verify(const uint8_t pub[TXCHECK_PUB_BYTES], const uint8_t digest[TXCHECK_HASH_BYTES],
                     const uint8_t sig[TXCHECK_SIG_BYTES])
{
    struct crypto_pubkey pk;
    struct crypto_sig s;

    memcpy(pk.b, pub, sizeof pk.b);
    memcpy(s.b, sig, sizeof s.b);
    return crypto_verify(&pk, digest, &s);
}

static int tc_keys(struct txcheck_keys *keys, const char *sender, void *user)
{
    const struct fixture *fx = user;

    if (strcmp(sender, agency_ids[0]) != 0)
        return -BEX_EUNKNOWN;
    keys->count = 1;
    memcpy(keys->key[0], fx->g.agencies[0].officers[0].b, TXCHECK_PUB_BYTES);
    return 0;
}

static int tc_last_nonce(uint64_t *last, const char *sender, void *user)
{
    (void)sender;
    (void)user;
    *last = 0;
    return 0;
}

struct crypto_figures {
    double verify_us, sign_us, sha256_tx_us, txcheck_us, txcheck_hit_us, proposal_tx_us;
    size_t tx_bytes;
};

typedef int txcheck_fn(struct txcheck *tc, struct txcheck_result *res, const uint8_t *tx, size_t tx_len);

/* CPU us per call of check on tx, which must be a cache hit every time. */
static double cache_hit_us(txcheck_fn *check, struct txcheck *tc, const uint8_t *tx, size_t len)
{
    struct txcheck_result res;
    struct clock_pair a = now(), b;

    for (int i = 0; i < HIT_N; i++) {
        if (check(tc, &res, tx, len) != 0 || !res.cached)
            die("a tx checked before was not a cache hit");
    }
    b = now();
    return (b.cpu_us - a.cpu_us) / HIT_N;
}

static void bench_crypto(struct fixture *fx, struct crypto_figures *f)
{
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    struct crypto_sig sig;
    uint8_t digest[CRYPTO_HASH_BYTES], id[CRYPTO_HASH_BYTES], out[CRYPTO_HASH_BYTES];
    double v[REPS], s[REPS], h[REPS], t[REPS], th[REPS], pt[REPS];
    struct txcheck_config tc = {0};
    struct txcheck *chk = NULL, *cached = NULL;
    size_t len;
    uint8_t *tx = sign_publish(fx, &len, id, 1);

    if (crypto_keygen(&sk, &pk) != 0)
        die("keygen failed");
    crypto_sha256(digest, "bex micro", 9);
    tc.chain_id = CHAIN;
    tc.tx_bytes_max = 65536;
    tc.args_bytes_max = 65536;
    tc.nonce_ahead_max = 100000;
    tc.cache_entries = 0;
    tc.hash_seed = 1;
    tc.crypto = (struct txcheck_crypto){tc_sha256, tc_verify};
    tc.keys = tc_keys;
    tc.last_nonce = tc_last_nonce;
    tc.user = fx;
    if (txcheck_new(&chk, &tc) != 0)
        die("txcheck_new failed");
    tc.cache_entries = 16;
    if (txcheck_new(&cached, &tc) != 0)
        die("txcheck_new failed");
    for (int r = 0; r < REPS; r++) {
        struct clock_pair a = now(), b;
        struct txcheck_result res;

        for (int i = 0; i < VERIFY_N; i++) {
            digest[0] = (uint8_t)i;
            if (crypto_sign(&sig, &sk, digest) != 0)
                die("sign failed");
        }
        b = now();
        s[r] = (b.cpu_us - a.cpu_us) / VERIFY_N;
        a = now();
        for (int i = 0; i < VERIFY_N; i++) {
            if (crypto_verify(&pk, digest, &sig) != 0)
                die("verify failed");
        }
        b = now();
        v[r] = (b.cpu_us - a.cpu_us) / VERIFY_N;
        a = now();
        for (int i = 0; i < SHA_N; i++) {
            tx[len - 1] ^= out[0]; /* a data dependency, so no iteration can be skipped */
            crypto_sha256(out, tx, len);
        }
        b = now();
        h[r] = (b.cpu_us - a.cpu_us) / SHA_N;
        free(tx);
        tx = sign_publish(fx, &len, id, 1);
        a = now();
        for (int i = 0; i < VERIFY_N; i++) {
            if (txcheck_tx(chk, &res, tx, len) != 0)
                die(res.reason);
        }
        b = now();
        t[r] = (b.cpu_us - a.cpu_us) / VERIFY_N;
        if (txcheck_tx(cached, &res, tx, len) != 0)
            die(res.reason);
        th[r] = cache_hit_us(txcheck_tx, cached, tx, len);
        pt[r] = cache_hit_us(txcheck_tx_signed, cached, tx, len);
    }
    f->verify_us = median(v, REPS);
    f->sign_us = median(s, REPS);
    f->sha256_tx_us = median(h, REPS);
    f->txcheck_us = median(t, REPS);
    f->txcheck_hit_us = median(th, REPS);
    f->proposal_tx_us = median(pt, REPS);
    f->tx_bytes = len;
    txcheck_free(chk);
    txcheck_free(cached);
    free(tx);
    crypto_wipe(&sk, sizeof sk);
}

/* ---------------------------------------------------------------- LMDB */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path);
}

/* Removes a directory tree; a missing one is fine. */
static int rmtree(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return 0;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct lmdb_figures {
    double commit_sync_ms, commit_nosync_ms, vote_sync_ms;
};

/* One write transaction with a block's worth of writes for n txs. */
static double lmdb_block(MDB_env *env, MDB_dbi dbi[4], uint64_t height, size_t n, size_t tx_bytes)
{
    static uint8_t blob[BLOCK_TXS_MAX * 512];
    struct clock_pair a = now(), b;
    uint8_t key[48], val[160];
    MDB_txn *txn;
    MDB_val k, d;

    if (mdb_txn_begin(env, NULL, 0, &txn) != 0)
        die("mdb_txn_begin failed");
    for (int i = 7; i >= 0; i--)
        key[7 - i] = (uint8_t)(height >> (8 * i));
    memset(blob, (int)height, n * tx_bytes);
    k = (MDB_val){8, key};
    d = (MDB_val){n * tx_bytes, blob};
    if (mdb_put(txn, dbi[0], &k, &d, 0) != 0)
        die("mdb_put block failed");
    for (size_t i = 0; i < n; i++) {
        uint64_t x = height * 1000003u + i;

        crypto_sha256(key, &x, sizeof x); /* receipt: tx id -> receipt */
        memset(val, (int)i, sizeof val);
        k = (MDB_val){32, key};
        d = (MDB_val){80, val};
        if (mdb_put(txn, dbi[1], &k, &d, 0) != 0)
            die("mdb_put receipt failed");
        k = (MDB_val){40, key}; /* state: contract-scoped record key -> record */
        d = (MDB_val){160, val};
        if (mdb_put(txn, dbi[2], &k, &d, 0) != 0)
            die("mdb_put state failed");
        k = (MDB_val){48, key}; /* history: key, height -> tx id */
        d = (MDB_val){32, val};
        if (mdb_put(txn, dbi[3], &k, &d, 0) != 0)
            die("mdb_put history failed");
    }
    if (mdb_txn_commit(txn) != 0)
        die("mdb_txn_commit failed");
    b = now();
    return (b.wall_us - a.wall_us) / 1000;
}

static double lmdb_commits(const char *base, size_t n, size_t tx_bytes, bool sync)
{
    static const char *const names[4] = {"blocks", "receipts", "state", "history"};
    char dir[PATH_BYTES + 32];
    double ms[REPS * 2];
    MDB_env *env;
    MDB_dbi dbi[4];
    MDB_txn *txn;

    snprintf(dir, sizeof dir, "%s/lmdb-%s", base, sync ? "sync" : "nosync");
    if (rmtree(dir) != 0 || mkdir(dir, 0700) != 0)
        die("cannot make the LMDB directory");
    if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
        mdb_env_set_mapsize(env, (size_t)1 << 30) != 0 ||
        mdb_env_open(env, dir, MDB_NOTLS | (sync ? 0 : MDB_NOSYNC), 0600) != 0)
        die("cannot open LMDB");
    if (mdb_txn_begin(env, NULL, 0, &txn) != 0)
        die("mdb_txn_begin failed");
    for (int i = 0; i < 4; i++) {
        if (mdb_dbi_open(txn, names[i], MDB_CREATE, &dbi[i]) != 0)
            die("mdb_dbi_open failed");
    }
    if (mdb_txn_commit(txn) != 0)
        die("mdb_txn_commit failed");
    for (int r = 0; r < REPS * 2; r++)
        ms[r] = lmdb_block(env, dbi, (uint64_t)r + 1, n, tx_bytes);
    mdb_env_close(env);
    (void)rmtree(dir);
    /* The first commits grow the file; the median skips them. */
    return median(ms, REPS * 2);
}

/* ---------------------------------------------------------------- ledger */

struct ledger_figures {
    double block_ms, us_per_tx, cpu_us_per_tx, vote_sync_ms;
    double bytes_per_tx; /* growth of data.mdb per applied tx */
};

static double file_bytes(const char *dir, const char *name)
{
    char path[PATH_BYTES + 64];
    struct stat st;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

static void make_block(uint8_t **prop, size_t *prop_len, uint8_t digest[LEDGER_HASH_BYTES], uint8_t **cert,
                       size_t *cert_len, uint64_t height, ProtobufCBinaryData *txs, size_t n)
{
    Bex__BlockProposal p = BEX__BLOCK_PROPOSAL__INIT;
    Bex__CommitCert c = BEX__COMMIT_CERT__INIT;
    Bex__CertVote v[3], *vp[3];
    uint8_t sig[3][CRYPTO_SIG_BYTES];

    p.chain_id = (char *)CHAIN;
    p.height = height;
    p.time_ms = T0 + height * 1000;
    p.n_txs = n;
    p.txs = txs;
    *prop_len = bex__block_proposal__get_packed_size(&p);
    if ((*prop = malloc(*prop_len)) == NULL)
        die("out of memory");
    bex__block_proposal__pack(&p, *prop);
    crypto_sha256(digest, *prop, *prop_len);
    c.seq = height;
    c.digest = (ProtobufCBinaryData){LEDGER_HASH_BYTES, digest};
    for (int i = 0; i < 3; i++) {
        bex__cert_vote__init(&v[i]);
        memset(sig[i], 0x40 + i, sizeof sig[i]);
        v[i].replica = (uint32_t)i;
        v[i].sig = (ProtobufCBinaryData){sizeof sig[i], sig[i]};
        vp[i] = &v[i];
    }
    c.n_votes = 3;
    c.votes = vp;
    *cert_len = bex__commit_cert__get_packed_size(&c);
    if ((*cert = malloc(*cert_len)) == NULL)
        die("out of memory");
    bex__commit_cert__pack(&c, *cert);
}

static void apply_block(struct ledger *l, double *wall_ms, double *cpu_ms, uint64_t height, ProtobufCBinaryData *txs,
                        size_t n, bool expect_ok)
{
    const struct ledger_applied *res;
    uint8_t *prop, *cert, digest[LEDGER_HASH_BYTES];
    size_t prop_len, cert_len;
    struct clock_pair a, b;

    make_block(&prop, &prop_len, digest, &cert, &cert_len, height, txs, n);
    a = now();
    if (ledger_apply(l, &res, height, digest, prop, prop_len, cert, cert_len) != 0)
        die("ledger_apply failed");
    b = now();
    for (size_t i = 0; expect_ok && i < res->out->receipt_count; i++) {
        if (res->out->receipts[i].code != 0)
            die("a bench tx failed in the ledger");
    }
    *wall_ms = (b.wall_us - a.wall_us) / 1000;
    *cpu_ms = (b.cpu_us - a.cpu_us) / 1000;
    free(prop);
    free(cert);
}

static void bench_ledger(struct fixture *fx, struct ledger_figures *f, const char *base, size_t n)
{
    char dir[PATH_BYTES + 32];
    struct store_options so = {0};
    struct ledger *l = NULL;
    ProtobufCBinaryData *txs = calloc(n, sizeof *txs);
    uint8_t id[CRYPTO_HASH_BYTES];
    double wall[BLOCKS_N], cpu[BLOCKS_N], vote[REPS], w, c, size0;
    uint64_t nonce = 1;

    if (txs == NULL)
        die("out of memory");
    snprintf(dir, sizeof dir, "%s/ledger", base);
    if (rmtree(dir) != 0 || mkdir(dir, 0700) != 0)
        die("cannot make the ledger directory");
    so.map_bytes = (size_t)1 << 30;
    so.no_sync = false; /* as the node runs */
    if (ledger_open(&l, dir, &so, &fx->g, fx->err, sizeof fx->err) != 0)
        die(fx->err);
    txs[0].data = sign_register(fx, &txs[0].len, id, nonce++);
    apply_block(l, &w, &c, 1, txs, 1, true);
    free(txs[0].data);
    size0 = file_bytes(dir, "data.mdb");
    for (int b = 0; b < BLOCKS_N; b++) {
        for (size_t i = 0; i < n; i++)
            txs[i].data = sign_publish(fx, &txs[i].len, id, nonce++);
        apply_block(l, &wall[b], &cpu[b], (uint64_t)b + 2, txs, n, true);
        for (size_t i = 0; i < n; i++)
            free(txs[i].data);
    }
    for (int r = 0; r < REPS; r++) {
        uint8_t key[17] = {'d', 2}, val[200];
        struct clock_pair a, b;

        memset(val, r, sizeof val);
        key[9] = (uint8_t)r;
        a = now();
        if (store_pbft_put(ledger_store(l), key, sizeof key, val, sizeof val) != 0)
            die("store_pbft_put failed");
        b = now();
        vote[r] = (b.wall_us - a.wall_us) / 1000;
    }
    f->block_ms = median(wall, BLOCKS_N);
    f->us_per_tx = f->block_ms * 1000 / (double)n;
    f->cpu_us_per_tx = median(cpu, BLOCKS_N) * 1000 / (double)n;
    f->vote_sync_ms = median(vote, REPS);
    f->bytes_per_tx = (file_bytes(dir, "data.mdb") - size0) / (double)(BLOCKS_N * n);
    ledger_close(l);
    (void)rmtree(dir);
    free(txs);
}

/* ---------------------------------------------------------------- executor */

struct exec_figures {
    double cpu_us_per_tx, apply_us_per_tx;
};

/* Runs txs[0..n) as block height; returns the executor's CPU time in ms. */
static double exec_block(struct exec *e, struct memstore *ms, double *apply_ms, uint64_t height, uint8_t root[32],
                         const ProtobufCBinaryData *txs, size_t n)
{
    const struct exec_output *o;
    struct clock_pair a = now(), b, c;

    if (exec_block_begin(e, height, T0 + height * 1000, root) != 0)
        die("exec_block_begin failed");
    for (size_t i = 0; i < n; i++) {
        int code;

        if (exec_tx(e, &code, txs[i].data, txs[i].len) != 0 || code != 0)
            die("a bench tx failed in the executor");
    }
    if (exec_block_end(e, &o) != 0)
        die("exec_block_end failed");
    b = now();
    if (memstore_apply(ms, o) != 0)
        die("memstore_apply failed");
    c = now();
    memcpy(root, o->state_root, 32);
    *apply_ms = (c.cpu_us - b.cpu_us) / 1000;
    return (b.cpu_us - a.cpu_us) / 1000;
}

static void bench_exec(struct fixture *fx, struct exec_figures *f, size_t n)
{
    const struct genesis_agency *ga = &fx->g.agencies[0];
    Bex__Agency ag = BEX__AGENCY__INIT;
    const Bex__Agency *agp = &ag;
    ProtobufCBinaryData officer = {CRYPTO_PUB_BYTES, (uint8_t *)ga->officers[0].b};
    char *role = (char *)ga->roles[0];
    struct exec_config cfg = {.chain_id = CHAIN};
    struct exec_store st;
    struct memstore *ms;
    struct exec *e;
    const struct exec_output *o;
    ProtobufCBinaryData *txs = calloc(n, sizeof *txs);
    uint8_t id[CRYPTO_HASH_BYTES], root[32];
    double cpu[BLOCKS_N], apply[BLOCKS_N], unused;
    uint64_t nonce = 1;

    if (txs == NULL || memstore_new(&ms, (size_t)1 << 22, (size_t)1 << 30) != 0)
        die("out of memory");
    memstore_store(ms, &st);
    if (exec_new(&e, &cfg, &st) != 0)
        die("exec_new failed");
    ag.id = (char *)ga->id;
    ag.name = (char *)ga->name;
    ag.n_roles = 1;
    ag.roles = &role;
    ag.n_officer_keys = 1;
    ag.officer_keys = &officer;
    ag.threshold = 1;
    ag.node_key = (ProtobufCBinaryData){CRYPTO_PUB_BYTES, (uint8_t *)fx->g.nodes[0].node_key.b};
    ag.enc_key = (ProtobufCBinaryData){CRYPTO_PUB_BYTES, (uint8_t *)ga->enc_key.b};
    if (exec_genesis(e, &o, &agp, 1, T0) != 0 || memstore_apply(ms, o) != 0)
        die("exec_genesis failed");
    memcpy(root, o->state_root, 32);
    txs[0].data = sign_register(fx, &txs[0].len, id, nonce++);
    (void)exec_block(e, ms, &unused, 1, root, txs, 1);
    free(txs[0].data);
    for (int b = 0; b < BLOCKS_N; b++) {
        for (size_t i = 0; i < n; i++)
            txs[i].data = sign_publish(fx, &txs[i].len, id, nonce++);
        cpu[b] = exec_block(e, ms, &apply[b], (uint64_t)b + 2, root, txs, n);
        for (size_t i = 0; i < n; i++)
            free(txs[i].data);
    }
    f->cpu_us_per_tx = median(cpu, BLOCKS_N) * 1000 / (double)n;
    f->apply_us_per_tx = median(apply, BLOCKS_N) * 1000 / (double)n;
    exec_free(e);
    memstore_free(ms);
    free(txs);
}

int main(int argc, char **argv)
{
    static const char usage[] = "usage: micro [--out FILE.json] [--block-txs B] [--dir TMPDIR] [--part P]";
    const char *out = NULL, *tmp = getenv("TMPDIR"), *part = "all";
    char base[PATH_BYTES];
    size_t block_txs = 1000;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct fixture *fx = calloc(1, sizeof *fx);
    struct crypto_figures cf = {0};
    struct lmdb_figures lf = {0};
    struct ledger_figures gf = {0};
    struct exec_figures ef = {0};
    json_t *j, *bounds = json_array();
    bool all, crypto, lmdb, ledger, exec;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--out") == 0)
            out = argv[i + 1];
        else if (strcmp(argv[i], "--block-txs") == 0)
            block_txs = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0)
            tmp = argv[i + 1];
        else if (strcmp(argv[i], "--part") == 0)
            part = argv[i + 1];
        else
            die(usage);
    }
    if (argc % 2 == 0)
        die(usage);
    if (block_txs < 1 || block_txs > BLOCK_TXS_MAX)
        die("--block-txs must be 1..10000");
    all = strcmp(part, "all") == 0;
    crypto = all || strcmp(part, "crypto") == 0;
    lmdb = all || strcmp(part, "lmdb") == 0;
    ledger = all || strcmp(part, "ledger") == 0;
    exec = all || strcmp(part, "exec") == 0;
    if (!crypto && !lmdb && !ledger && !exec)
        die("--part must be all, crypto, lmdb, ledger or exec");
    snprintf(base, sizeof base, "%s/bex-micro-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (fx == NULL || mkdtemp(base) == NULL)
        die("cannot make a temporary directory");
    if (crypto_init() != 0)
        die("crypto init failed");
    build_genesis(fx);
    if (crypto)
        bench_crypto(fx, &cf);
    if (lmdb) {
        /* The size of a bench tx, without the crypto figures that measure it. */
        uint8_t id[CRYPTO_HASH_BYTES];
        size_t len;

        free(sign_publish(fx, &len, id, 1));
        cf.tx_bytes = len;
        lf.commit_sync_ms = lmdb_commits(base, block_txs, cf.tx_bytes, true);
        lf.commit_nosync_ms = lmdb_commits(base, block_txs, cf.tx_bytes, false);
    }
    if (ledger || lmdb)
        bench_ledger(fx, &gf, base, block_txs);
    lf.vote_sync_ms = gf.vote_sync_ms;
    if (exec)
        bench_exec(fx, &ef, block_txs);
    (void)rmtree(base);

    printf("micro: %ld cores; a bench tx is %zu bytes\n", cores, cf.tx_bytes);
    if (crypto) {
        printf("  verify          %8.1f us   (secp256k1 ECDSA, thread CPU time)\n", cf.verify_us);
        printf("  sign            %8.1f us\n", cf.sign_us);
        printf("  sha256 of a tx  %8.2f us\n", cf.sha256_tx_us);
        printf("  txcheck         %8.1f us   (the node's admission: decode, hash, verify)\n", cf.txcheck_us);
        printf("  txcheck, cached %8.2f us   (a gossip duplicate: decoded and checked, not verified)\n",
               cf.txcheck_hit_us);
        printf("  proposal's tx   %8.2f us   (txcheck_tx_signed of a tx already admitted: two hashes)\n",
               cf.proposal_tx_us);
    }
    if (lmdb) {
        printf("  LMDB commit     %8.2f ms   (%zu txs' worth of writes, fdatasync; %.2f ms without)\n",
               lf.commit_sync_ms, block_txs, lf.commit_nosync_ms);
        printf("  LMDB vote       %8.2f ms   (one synced store_pbft_put)\n", lf.vote_sync_ms);
    }
    if (ledger)
        printf("  ledger apply    %8.2f ms   per block of %zu txs = %.1f us/tx wall, %.1f us/tx CPU; the store "
               "grows %.0f bytes per tx\n",
               gf.block_ms, block_txs, gf.us_per_tx, gf.cpu_us_per_tx, gf.bytes_per_tx);
    if (exec)
        printf("  executor        %8.1f us   CPU per tx in blocks of %zu txs (no LMDB; applying the writes to a "
               "memstore: %.1f us/tx more)\n",
               ef.cpu_us_per_tx, block_txs, ef.apply_us_per_tx);
    for (int nodes = 4; all && nodes <= 10; nodes += 3) {
        double vb = (double)cores * 1e6 / (nodes * (cf.verify_us + cf.sha256_tx_us));
        double fb = (double)cores * 1e6 / (nodes * (cf.txcheck_us + gf.cpu_us_per_tx));

        printf("  bound, %2d nodes: %6.0f tx/s verifying only, %6.0f tx/s with admission + execution + commit\n",
               nodes, vb, fb);
        json_array_append_new(bounds, json_pack("{s:i, s:f, s:f}", "nodes", nodes, "verify_tps", vb, "full_tps", fb));
    }
    j = json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o}", "cores", (json_int_t)cores,
                  "tx_bytes", (json_int_t)cf.tx_bytes, "block_txs", (json_int_t)block_txs, "verify_us", cf.verify_us,
                  "sign_us", cf.sign_us, "sha256_tx_us", cf.sha256_tx_us, "txcheck_us", cf.txcheck_us,
                  "lmdb_commit_sync_ms", lf.commit_sync_ms, "lmdb_commit_nosync_ms", lf.commit_nosync_ms,
                  "lmdb_vote_sync_ms", lf.vote_sync_ms, "ledger_apply_block_ms", gf.block_ms,
                  "ledger_apply_us_per_tx", gf.us_per_tx, "ledger_apply_cpu_us_per_tx", gf.cpu_us_per_tx, "bounds",
                  bounds);
    json_object_set_new(j, "store_bytes_per_tx", json_real(gf.bytes_per_tx));
    json_object_set_new(j, "txcheck_hit_us", json_real(cf.txcheck_hit_us));
    json_object_set_new(j, "proposal_tx_us", json_real(cf.proposal_tx_us));
    json_object_set_new(j, "exec_cpu_us_per_tx", json_real(ef.cpu_us_per_tx));
    if (out != NULL && json_dump_file(j, out, JSON_INDENT(1)) != 0)
        die("cannot write the report");
    json_decref(j);
    crypto_wipe(fx->sk, sizeof fx->sk);
    free(fx);
    return 0;
}
