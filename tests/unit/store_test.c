#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bex.h"
#include "store.h"
#include "store_util.h"

/* ------------------------------------------------------------- fixture */

struct fx {
    char root[STORE_UTIL_PATH_BYTES];
    char dir[STORE_UTIL_PATH_BYTES + 8]; /* root/db: not created, store_open must create it */
    struct store *s;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    if (f == NULL || store_util_tmpdir(f->root, sizeof f->root) != 0)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/db", f->root);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->s);
    store_util_rmtree(f->root);
    free(f);
    return 0;
}

static const struct store_options fast = {.no_sync = true};

static struct store *fx_open(struct fx *f, const struct store_options *opt)
{
    char err[256];
    int rc;

    store_close(f->s);
    f->s = NULL;
    rc = store_open(&f->s, f->dir, opt, err, sizeof err);
    if (rc != 0)
        fail_msg("store_open: %s (%s)", bex_errname(rc), err);
    return f->s;
}

/* ------------------------------------------------------------- blocks */

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void fill(uint8_t *out, size_t n, uint64_t h, uint8_t tag)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(h * 31 + i * 7 + tag);
}

static void txid(uint8_t out[STORE_TXID_BYTES], uint64_t h, uint32_t i)
{
    memset(out, 0xa5, STORE_TXID_BYTES);
    be64(out, h);
    out[8] = (uint8_t)(i >> 24);
    out[9] = (uint8_t)(i >> 16);
    out[10] = (uint8_t)(i >> 8);
    out[11] = (uint8_t)i;
}

/*
 * A standard test block h: record "record h", cert "cert h", two receipts,
 * writes counter = h and k/<h> = "value h", history of both keys and the
 * meta entry tick = h. The struct points into itself: fill it in place.
 */
struct tblock {
    struct store_block b;
    char record[32], cert[32];
    struct store_receipt receipts[2];
    char rbytes[2][32];
    struct store_write writes[2];
    char key[16], val[32];
    uint8_t counter[8];
    struct store_history history[2];
    struct store_meta meta[1];
};

static void tblock_make(struct tblock *t, uint64_t h)
{
    memset(t, 0, sizeof *t);
    t->b.height = h;
    snprintf(t->record, sizeof t->record, "record %" PRIu64, h);
    snprintf(t->cert, sizeof t->cert, "cert %" PRIu64, h);
    t->b.record = (const uint8_t *)t->record;
    t->b.record_len = strlen(t->record);
    t->b.cert = (const uint8_t *)t->cert;
    t->b.cert_len = strlen(t->cert);
    fill(t->b.hash, STORE_HASH_BYTES, h, 'H');
    fill(t->b.state_root, STORE_HASH_BYTES, h, 'R');
    for (uint32_t i = 0; i < 2; i++) {
        txid(t->receipts[i].tx_id, h, i);
        snprintf(t->rbytes[i], sizeof t->rbytes[i], "receipt %" PRIu64 ".%" PRIu32, h, i);
        t->receipts[i].bytes = (const uint8_t *)t->rbytes[i];
        t->receipts[i].len = strlen(t->rbytes[i]);
    }
    be64(t->counter, h);
    snprintf(t->key, sizeof t->key, "k/%04" PRIu64, h);
    snprintf(t->val, sizeof t->val, "value %" PRIu64, h);
    t->writes[0] = (struct store_write){(const uint8_t *)"counter", 7, t->counter, 8, false};
    t->writes[1] = (struct store_write){(const uint8_t *)t->key, strlen(t->key),
                                        (const uint8_t *)t->val, strlen(t->val), false};
    t->history[0] = (struct store_history){(const uint8_t *)"counter", 7, 0, {0}};
    txid(t->history[0].tx_id, h, 0);
    t->history[1] = (struct store_history){(const uint8_t *)t->key, strlen(t->key), 1, {0}};
    txid(t->history[1].tx_id, h, 1);
    t->meta[0] = (struct store_meta){(const uint8_t *)"tick", 4, t->counter, 8};
    t->b.receipts = t->receipts;
    t->b.receipts_len = 2;
    t->b.writes = t->writes;
    t->b.writes_len = 2;
    t->b.history = t->history;
    t->b.history_len = 2;
    t->b.meta = t->meta;
    t->b.meta_len = 1;
}

static int commit_std(struct store *s, uint64_t h)
{
    struct tblock t;

    tblock_make(&t, h);
    return store_commit_block(s, &t.b);
}

static void assert_bytes(const uint8_t *p, size_t n, const void *want, size_t want_n)
{
    assert_int_equal(n, want_n);
    assert_memory_equal(p, want, n);
}

/* Checks everything standard block h stored, through snapshot r. */
static void check_std_block(struct store_read *r, uint64_t h)
{
    struct tblock t;
    const uint8_t *p;
    size_t n;
    uint8_t id[STORE_TXID_BYTES];

    tblock_make(&t, h);
    assert_int_equal(store_get_block(r, &p, &n, h), 0);
    assert_bytes(p, n, t.record, strlen(t.record));
    assert_int_equal(store_get_cert(r, &p, &n, h), 0);
    assert_bytes(p, n, t.cert, strlen(t.cert));
    for (uint32_t i = 0; i < 2; i++) {
        txid(id, h, i);
        assert_int_equal(store_get_receipt(r, &p, &n, id), 0);
        assert_bytes(p, n, t.rbytes[i], strlen(t.rbytes[i]));
    }
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)t.key, strlen(t.key)), 0);
    assert_bytes(p, n, t.val, strlen(t.val));
}

/* Checks meta height, root, hash, counter and tick all say h. */
static void check_tip(struct store_read *r, uint64_t h)
{
    uint8_t want[STORE_HASH_BYTES], got[STORE_HASH_BYTES];
    const uint8_t *p;
    size_t n;
    uint64_t height;

    assert_int_equal(store_get_height(r, &height), 0);
    assert_int_equal(height, h);
    fill(want, sizeof want, h, 'R');
    assert_int_equal(store_get_root(r, got), 0);
    assert_memory_equal(got, want, sizeof want);
    fill(want, sizeof want, h, 'H');
    assert_int_equal(store_get_hash(r, got), 0);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"counter", 7), 0);
    assert_int_equal(n, 8);
    assert_int_equal(get_be64(p), h);
    assert_int_equal(store_get_meta(r, &p, &n, (const uint8_t *)"tick", 4), 0);
    assert_int_equal(n, 8);
    assert_int_equal(get_be64(p), h);
    assert_int_equal(store_get_block(r, &p, &n, h + 1), -BEX_ENOTFOUND);
}

/* A block h with the given writes and history only. */
static int commit_custom(struct store *s, uint64_t h, const struct store_write *w, size_t nw,
                         const struct store_history *hi, size_t nh)
{
    struct store_block b = {.height = h, .record = (const uint8_t *)"r", .record_len = 1,
                            .cert = (const uint8_t *)"c", .cert_len = 1, .writes = w,
                            .writes_len = nw, .history = hi, .history_len = nh};

    fill(b.hash, STORE_HASH_BYTES, h, 'H');
    fill(b.state_root, STORE_HASH_BYTES, h, 'R');
    return store_commit_block(s, &b);
}

static struct store_write put_str(const char *k, const char *v)
{
    return (struct store_write){(const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v), false};
}

static struct store_write del_str(const char *k)
{
    return (struct store_write){(const uint8_t *)k, strlen(k), NULL, 0, true};
}

/* ------------------------------------------------------------- lifecycle */

static void store_open_close_reopen_persists(void **state)
{
    struct fx *f = *state;
    struct store_read *r;
    uint8_t digest[STORE_HASH_BYTES], got[STORE_HASH_BYTES];
    uint64_t height, view, seq;
    const uint8_t *p;
    size_t n;

    fx_open(f, NULL);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_height(r, &height), 0);
    assert_int_equal(height, 0);
    assert_int_equal(store_get_root(r, got), -BEX_ENOTFOUND);
    assert_int_equal(store_get_hash(r, got), -BEX_ENOTFOUND);
    assert_int_equal(store_get_view(r, &view), 0);
    assert_int_equal(view, 0);
    assert_int_equal(store_get_checkpoint(r, &seq, got), -BEX_ENOTFOUND);
    store_read_end(r);

    assert_int_equal(commit_std(f->s, 1), 0);
    assert_int_equal(commit_std(f->s, 2), 0);
    assert_int_equal(store_set_view(f->s, 7), 0);
    fill(digest, sizeof digest, 2, 'D');
    assert_int_equal(store_set_checkpoint(f->s, 2, digest), 0);
    assert_int_equal(store_put_meta(f->s, (const uint8_t *)"genesis", 7, (const uint8_t *)"g1", 2), 0);
    /* A node name equal to an internal one must not touch the store's own entry. */
    assert_int_equal(store_put_meta(f->s, (const uint8_t *)"sys/height", 10, (const uint8_t *)"x", 1), 0);
    store_close(f->s);
    f->s = NULL;

    fx_open(f, NULL);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    check_tip(r, 2);
    check_std_block(r, 1);
    check_std_block(r, 2);
    assert_int_equal(store_get_view(r, &view), 0);
    assert_int_equal(view, 7);
    assert_int_equal(store_get_checkpoint(r, &seq, got), 0);
    assert_int_equal(seq, 2);
    assert_memory_equal(got, digest, sizeof digest);
    assert_int_equal(store_get_meta(r, &p, &n, (const uint8_t *)"genesis", 7), 0);
    assert_bytes(p, n, "g1", 2);
    assert_int_equal(store_get_meta(r, &p, &n, (const uint8_t *)"absent", 6), -BEX_ENOTFOUND);
    store_read_end(r);
    assert_int_equal(commit_std(f->s, 3), 0);
}

static void store_open_refuses_second_opener(void **state)
{
    struct fx *f = *state;
    struct store *s2 = (struct store *)&s2;
    char err[256];

    fx_open(f, &fast);
    assert_int_equal(store_open(&s2, f->dir, &fast, err, sizeof err), -BEX_ESTATE);
    assert_null(s2);
    assert_non_null(strstr(err, "in use"));
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(&s2, f->dir, &fast, err, sizeof err), 0);
    store_close(s2);
}

static void store_open_checks_arguments(void **state)
{
    struct fx *f = *state;
    struct store_options small = {.map_bytes = STORE_MAP_BYTES_MIN - 1};
    struct store_options readers = {.readers_max = STORE_READERS_MAX + 1};
    struct store *s = NULL;
    char err[256], bad[STORE_UTIL_PATH_BYTES + 32];

    assert_int_equal(store_open(NULL, f->dir, NULL, err, sizeof err), -BEX_EINVAL);
    assert_int_equal(store_open(&s, NULL, NULL, err, sizeof err), -BEX_EINVAL);
    assert_int_equal(store_open(&s, "", NULL, err, sizeof err), -BEX_EINVAL);
    assert_int_equal(store_open(&s, f->dir, &small, err, sizeof err), -BEX_EINVAL);
    assert_int_equal(store_open(&s, f->dir, &readers, NULL, 0), -BEX_EINVAL);
    snprintf(bad, sizeof bad, "%s/missing/db", f->root);
    assert_int_equal(store_open(&s, bad, NULL, err, sizeof err), -BEX_EIO);
    assert_non_null(strstr(err, "mkdir"));
    assert_null(s);
}

static void store_schema_mismatch_refused(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    uint8_t v[4] = {0, 0, 0, 2};
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {10, "sys/schema"}, d = {4, v};
    char err[256];

    fx_open(f, &fast);
    assert_int_equal(commit_std(f->s, 1), 0);
    store_close(f->s);
    f->s = NULL;

    /* Rewrite the version behind the store's back, as a future build would. */
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(store_open(&s, f->dir, &fast, err, sizeof err), -BEX_ESTATE);
    assert_null(s);
    assert_non_null(strstr(err, "schema version 2"));
}

static void store_open_detects_meta_block_disagreement(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    uint8_t h[8];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {10, "sys/height"}, d = {8, h};
    char err[256];

    fx_open(f, &fast);
    assert_int_equal(commit_std(f->s, 1), 0);
    assert_int_equal(commit_std(f->s, 2), 0);
    store_close(f->s);
    f->s = NULL;
    be64(h, 1);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(store_open(&s, f->dir, &fast, err, sizeof err), -BEX_ECORRUPT);
    assert_non_null(strstr(err, "meta height 1"));
}

/* ------------------------------------------------------------- commits */

static void store_commit_reads_back_everything(void **state)
{
    struct fx *f = *state;
    struct store_block_item items[3];
    struct store_history_item hist[8];
    struct store_stats st;
    struct store_read *r;
    size_t n;
    bool more;

    fx_open(f, &fast);
    for (uint64_t h = 1; h <= 5; h++)
        assert_int_equal(commit_std(f->s, h), 0);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    check_tip(r, 5);
    for (uint64_t h = 1; h <= 5; h++)
        check_std_block(r, h);

    assert_int_equal(store_scan_blocks(r, items, 3, &n, &more, 2, 100), 0);
    assert_int_equal(n, 3);
    assert_true(more);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        assert_int_equal(items[i].height, 2 + i);
        snprintf(want, sizeof want, "cert %zu", 2 + i);
        assert_bytes(items[i].cert, items[i].cert_len, want, strlen(want));
    }
    assert_int_equal(store_scan_blocks(r, items, 3, &n, &more, 5, 100), 0);
    assert_int_equal(n, 1);
    assert_false(more);
    assert_int_equal(store_scan_blocks(r, items, 3, &n, &more, 1, 3), 0);
    assert_int_equal(n, 3);
    assert_false(more);
    assert_int_equal(store_scan_blocks(r, items, 3, &n, &more, 4, 2), 0);
    assert_int_equal(n, 0);

    assert_int_equal(store_scan_history(r, hist, 8, &n, &more, (const uint8_t *)"counter", 7, NULL), 0);
    assert_int_equal(n, 5);
    assert_false(more);
    for (size_t i = 0; i < n; i++) {
        uint8_t id[STORE_TXID_BYTES];
        txid(id, 5 - i, 0);
        assert_int_equal(hist[i].height, 5 - i);
        assert_int_equal(hist[i].index, 0);
        assert_memory_equal(hist[i].tx_id, id, STORE_TXID_BYTES);
    }

    assert_int_equal(store_get_stats(r, &st), 0);
    assert_int_equal(st.blocks, 5);
    assert_int_equal(st.certs, 5);
    assert_int_equal(st.receipts, 10);
    assert_int_equal(st.state, 6);
    assert_int_equal(st.history, 10);
    assert_int_equal(st.pbft, 0);
    assert_true(st.used_bytes > 0 && st.used_bytes <= st.map_bytes);
    store_read_end(r);
}

static void store_commit_refuses_height_gap(void **state)
{
    struct fx *f = *state;
    char msg[256];

    fx_open(f, &fast);
    assert_int_equal(commit_std(f->s, 2), -BEX_ESTATE);
    /* Genesis (height 0) only on an empty store, and only once. */
    assert_int_equal(commit_std(f->s, 0), 0);
    assert_int_equal(commit_std(f->s, 0), -BEX_ESTATE);
    assert_int_equal(commit_std(f->s, 1), 0);
    assert_int_equal(commit_std(f->s, 0), -BEX_ESTATE);
    assert_int_equal(commit_std(f->s, 1), -BEX_ESTATE);
    assert_int_equal(commit_std(f->s, 3), -BEX_ESTATE);
    assert_int_equal(store_error(f->s, msg, sizeof msg), 0);
    assert_string_equal(msg, "store: commit h=3: expected height 2");
    assert_int_equal(commit_std(f->s, STORE_HEIGHT_MAX + 1), -BEX_ELIMIT);
    /* Refusals are not sticky. */
    assert_int_equal(commit_std(f->s, 2), 0);
}

/* Everything about the store at a moment, to compare before and after a failure. */
static void snapshot_stats(struct store *s, struct store_stats *st, uint64_t *height)
{
    struct store_read *r;

    assert_int_equal(store_read_begin(s, &r), 0);
    assert_int_equal(store_get_stats(r, st), 0);
    assert_int_equal(store_get_height(r, height), 0);
    store_read_end(r);
}

static void check_nothing_of_block2(struct store *s, const struct store_stats *before)
{
    struct store_stats st;
    struct store_read *r;
    uint8_t id[STORE_TXID_BYTES];
    const uint8_t *p;
    size_t n;
    uint64_t height;

    snapshot_stats(s, &st, &height);
    assert_int_equal(height, 1);
    assert_int_equal(st.blocks, before->blocks);
    assert_int_equal(st.certs, before->certs);
    assert_int_equal(st.receipts, before->receipts);
    assert_int_equal(st.state, before->state);
    assert_int_equal(st.history, before->history);
    assert_int_equal(st.meta, before->meta);
    assert_int_equal(store_read_begin(s, &r), 0);
    check_tip(r, 1);
    assert_int_equal(store_get_cert(r, &p, &n, 2), -BEX_ENOTFOUND);
    txid(id, 2, 0);
    assert_int_equal(store_get_receipt(r, &p, &n, id), -BEX_ENOTFOUND);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"k/0002", 6), -BEX_ENOTFOUND);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"early", 5), -BEX_ENOTFOUND);
    store_read_end(r);
}

static void store_failed_commit_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct store_stats before;
    struct store_write w[5];
    struct store_receipt rc3[3];
    struct tblock t;
    uint8_t big[STORE_KEY_BYTES_MAX + 1];
    uint64_t height;
    char msg[256];

    fx_open(f, &fast);
    assert_int_equal(commit_std(f->s, 1), 0);
    snapshot_stats(f->s, &before, &height);

    /* An oversize key in the middle: the writes before it were already put. */
    memset(big, 'x', sizeof big);
    tblock_make(&t, 2);
    w[0] = t.writes[0];
    w[1] = t.writes[1];
    w[2] = put_str("early", "1");
    w[3] = (struct store_write){big, sizeof big, (const uint8_t *)"v", 1, false};
    w[4] = put_str("late", "2");
    t.b.writes = w;
    t.b.writes_len = 5;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_ELIMIT);
    assert_int_equal(store_error(f->s, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "commit h=2: write 3: key of 449 bytes"));
    check_nothing_of_block2(f->s, &before);

    /* A receipt whose tx id is already stored, after a new one. */
    tblock_make(&t, 2);
    rc3[0] = t.receipts[0];
    rc3[1] = t.receipts[1];
    rc3[2] = t.receipts[0];
    txid(rc3[2].tx_id, 1, 1);
    t.b.receipts = rc3;
    t.b.receipts_len = 3;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_EEXIST);
    check_nothing_of_block2(f->s, &before);

    /* An empty history key after the state writes went in. */
    tblock_make(&t, 2);
    t.history[1].key_len = 0;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_EINVAL);
    check_nothing_of_block2(f->s, &before);

    /* A bad extra meta entry, the last thing put before meta height. */
    tblock_make(&t, 2);
    t.meta[0].name_len = STORE_META_NAME_BYTES_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_ELIMIT);
    check_nothing_of_block2(f->s, &before);

    assert_int_equal(commit_std(f->s, 2), 0);
}

static void store_delete_removes_key(void **state)
{
    struct fx *f = *state;
    struct store_write b1[] = {put_str("x", "1"), put_str("y", "2")};
    struct store_write b2[] = {del_str("x"), del_str("never"), put_str("y", "3"), del_str("y"),
                               put_str("y", "4"), put_str("z", "5"), del_str("z")};
    struct store_read *r;
    const uint8_t *p;
    size_t n;

    fx_open(f, &fast);
    assert_int_equal(commit_custom(f->s, 1, b1, 2, NULL, 0), 0);
    assert_int_equal(commit_custom(f->s, 2, b2, BEX_ARRAY_LEN(b2), NULL, 0), 0);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"x", 1), -BEX_ENOTFOUND);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"y", 1), 0);
    assert_bytes(p, n, "4", 1);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"z", 1), -BEX_ENOTFOUND);
    store_read_end(r);
}

/* ------------------------------------------------------------- scans */

static void expect_keys(const struct store_kv *kv, size_t n, const char *first, int first_i, int count)
{
    assert_int_equal(n, (size_t)count);
    for (int i = 0; i < count; i++) {
        char want[16];
        if (first != NULL && i == 0)
            snprintf(want, sizeof want, "%s", first);
        else
            snprintf(want, sizeof want, "a/%02d", first_i + i - (first != NULL));
        assert_bytes(kv[i].key, kv[i].key_len, want, strlen(want));
    }
}

static void store_scan_state_pages(void **state)
{
    struct fx *f = *state;
    struct store_write w[40];
    char keys[40][16];
    struct store_kv kv[STORE_SCAN_MAX];
    struct store_read *r;
    size_t nw = 0, n;
    bool more;

    fx_open(f, &fast);
    for (int i = 0; i < 25; i++) {
        snprintf(keys[nw], sizeof keys[nw], "a/%02d", i);
        w[nw] = put_str(keys[nw], keys[nw]);
        nw++;
    }
    w[nw++] = put_str("a", "bare");
    w[nw++] = put_str("a/", "prefix itself");
    w[nw++] = put_str("b/0", "b");
    w[nw++] = put_str("b/1", "b");
    w[nw++] = put_str("0", "zero");
    assert_int_equal(commit_custom(f->s, 1, w, nw, NULL, 0), 0);
    assert_int_equal(store_read_begin(f->s, &r), 0);

#define SCAN(cap, pfx, aft)                                                                       \
    store_scan_state(r, kv, (cap), &n, &more, (const uint8_t *)(pfx), strlen(pfx),              \
                     (const uint8_t *)(aft), strlen(aft))
    assert_int_equal(SCAN(10, "a/", ""), 0);
    expect_keys(kv, n, "a/", 0, 10);
    assert_true(more);
    assert_int_equal(SCAN(10, "a/", "a/08"), 0);
    expect_keys(kv, n, NULL, 9, 10);
    assert_true(more);
    assert_int_equal(SCAN(10, "a/", "a/18"), 0);
    expect_keys(kv, n, NULL, 19, 6);
    assert_false(more);
    /* A page exactly as long as the rest has nothing more. */
    assert_int_equal(SCAN(6, "a/", "a/18"), 0);
    expect_keys(kv, n, NULL, 19, 6);
    assert_false(more);
    assert_int_equal(SCAN(5, "a/", "a/18"), 0);
    expect_keys(kv, n, NULL, 19, 5);
    assert_true(more);
    assert_int_equal(SCAN(10, "a/", "a/24"), 0);
    assert_int_equal(n, 0);
    assert_false(more);
    /* A cursor that is not a stored key, one before the prefix, one after it. */
    assert_int_equal(SCAN(3, "a/", "a/05x"), 0);
    expect_keys(kv, n, NULL, 6, 3);
    assert_int_equal(SCAN(3, "a/", "0"), 0);
    expect_keys(kv, n, "a/", 0, 3);
    assert_int_equal(SCAN(3, "a/", "c"), 0);
    assert_int_equal(n, 0);
    /* No prefix: every key, in byte order. */
    assert_int_equal(SCAN(STORE_SCAN_MAX, "", ""), 0);
    assert_int_equal(n, 30);
    assert_false(more);
    assert_bytes(kv[0].key, kv[0].key_len, "0", 1);
    assert_bytes(kv[1].key, kv[1].key_len, "a", 1);
    assert_bytes(kv[1].val, kv[1].val_len, "bare", 4);
    assert_bytes(kv[29].key, kv[29].key_len, "b/1", 3);
    assert_int_equal(SCAN(2, "", "a/24"), 0);
    assert_int_equal(n, 2);
    assert_bytes(kv[0].key, kv[0].key_len, "b/0", 3);
    assert_false(more);
    assert_int_equal(SCAN(10, "zz", ""), 0);
    assert_int_equal(n, 0);
    assert_int_equal(SCAN(0, "a/", ""), -BEX_EINVAL);
    assert_int_equal(SCAN(STORE_SCAN_MAX + 1, "a/", ""), -BEX_ELIMIT);
#undef SCAN
    store_read_end(r);
}

static void store_scan_history_newest_first(void **state)
{
    struct fx *f = *state;
    /* "ab" followed by bytes that look like a height and an index. */
    static const uint8_t tricky[] = {'a', 'b', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1};
    struct store_history_item it[STORE_SCAN_MAX];
    struct store_history_pos pos;
    struct store_read *r;
    size_t n;
    bool more;

    fx_open(f, &fast);
    for (uint64_t h = 1; h <= 6; h++) {
        struct store_history hi[5] = {
            {(const uint8_t *)"ab", 2, 0, {0}},
            {(const uint8_t *)"ab", 2, 2, {0}},
            {tricky, sizeof tricky, 1, {0}},
            {(const uint8_t *)"abc", 3, 0, {0}},
            {(const uint8_t *)"a", 1, 0, {0}},
        };
        for (int i = 0; i < 5; i++)
            txid(hi[i].tx_id, h, hi[i].index);
        assert_int_equal(commit_custom(f->s, h, NULL, 0, hi, 5), 0);
    }
    assert_int_equal(store_read_begin(f->s, &r), 0);

    pos = (struct store_history_pos){0, 0};
    for (int page = 0; page < 3; page++) {
        assert_int_equal(store_scan_history(r, it, 4, &n, &more, (const uint8_t *)"ab", 2,
                                            page == 0 ? NULL : &pos),
                         0);
        assert_int_equal(n, 4);
        assert_int_equal(more, page < 2);
        for (size_t i = 0; i < n; i++) {
            uint64_t h = 6 - (uint64_t)page * 2 - i / 2;
            uint32_t idx = i % 2 == 0 ? 2 : 0;
            uint8_t id[STORE_TXID_BYTES];
            txid(id, h, idx);
            assert_int_equal(it[i].height, h);
            assert_int_equal(it[i].index, idx);
            assert_memory_equal(it[i].tx_id, id, STORE_TXID_BYTES);
        }
        pos = (struct store_history_pos){it[n - 1].height, it[n - 1].index};
    }
    /* Strictly before a position that is not an entry. */
    pos = (struct store_history_pos){3, 1};
    assert_int_equal(store_scan_history(r, it, 2, &n, &more, (const uint8_t *)"ab", 2, &pos), 0);
    assert_int_equal(n, 2);
    assert_true(more);
    assert_int_equal(it[0].height, 3);
    assert_int_equal(it[0].index, 0);
    assert_int_equal(it[1].height, 2);
    assert_int_equal(it[1].index, 2);
    pos = (struct store_history_pos){1, 0};
    assert_int_equal(store_scan_history(r, it, 2, &n, &more, (const uint8_t *)"ab", 2, &pos), 0);
    assert_int_equal(n, 0);
    assert_false(more);
    pos = (struct store_history_pos){100, 0};
    assert_int_equal(store_scan_history(r, it, 1, &n, &more, (const uint8_t *)"ab", 2, &pos), 0);
    assert_int_equal(n, 1);
    assert_int_equal(it[0].height, 6);
    /* Keys sharing a prefix keep histories of their own. */
    assert_int_equal(store_scan_history(r, it, STORE_SCAN_MAX, &n, &more, tricky, sizeof tricky, NULL), 0);
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(it[i].index, 1);
    assert_int_equal(store_scan_history(r, it, STORE_SCAN_MAX, &n, &more, (const uint8_t *)"a", 1, NULL), 0);
    assert_int_equal(n, 6);
    assert_int_equal(store_scan_history(r, it, STORE_SCAN_MAX, &n, &more, (const uint8_t *)"b", 1, NULL), 0);
    assert_int_equal(n, 0);
    store_read_end(r);
}

/* ------------------------------------------------------------- sticky errors */

static int commit_filler(struct store *s, uint64_t h, size_t val_bytes)
{
    static uint8_t val[16384];
    char key[32];
    struct store_write w;

    memset(val, (int)h, sizeof val);
    snprintf(key, sizeof key, "fill/%06" PRIu64, h);
    w = (struct store_write){(const uint8_t *)key, strlen(key), val, val_bytes, false};
    return commit_custom(s, h, &w, 1, NULL, 0);
}

static void store_map_full_is_sticky_until_resize(void **state)
{
    struct fx *f = *state;
    struct store_options tiny = {.map_bytes = 256 << 10, .no_sync = true};
    struct store_stats st;
    struct store_read *r;
    const uint8_t *p;
    size_t n;
    uint64_t h, height;
    int rc = 0;
    char msg[256], want[256];

    fx_open(f, &tiny);
    for (h = 1; h <= 100; h++)
        if ((rc = commit_filler(f->s, h, 8192)) != 0)
            break;
    assert_int_equal(rc, -BEX_EMAPFULL);
    assert_true(h > 1);
    assert_int_equal(store_error(f->s, msg, sizeof msg), -BEX_EMAPFULL);
    snprintf(want, sizeof want, "store: commit h=%" PRIu64 ": ", h);
    assert_memory_equal(msg, want, strlen(want));
    assert_non_null(strstr(msg, "map full"));
    snprintf(want, sizeof want, "%s", msg);

    /* Sticky: even writes that would fit are refused, with the first message. */
    assert_int_equal(commit_custom(f->s, h, NULL, 0, NULL, 0), -BEX_EMAPFULL);
    assert_int_equal(store_pbft_put(f->s, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1),
                     -BEX_EMAPFULL);
    assert_int_equal(store_set_view(f->s, 1), -BEX_EMAPFULL);
    assert_int_equal(store_put_meta(f->s, (const uint8_t *)"n", 1, NULL, 0), -BEX_EMAPFULL);
    assert_int_equal(store_error(f->s, msg, sizeof msg), -BEX_EMAPFULL);
    assert_string_equal(msg, want);

    /* Reads keep working and show the last good block. */
    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_height(r, &height), 0);
    assert_int_equal(height, h - 1);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)"fill/000001", 11), 0);
    assert_int_equal(n, 8192);
    assert_int_equal(store_get_block(r, &p, &n, h), -BEX_ENOTFOUND);
    /* No remap under an open snapshot. */
    assert_int_equal(store_resize(f->s, 1 << 20), -BEX_ESTATE);
    store_read_end(r);

    assert_int_equal(store_resize(f->s, 128 << 10), -BEX_EINVAL);
    assert_int_equal(store_error(f->s, NULL, 0), -BEX_EMAPFULL);
    assert_int_equal(store_resize(f->s, 1 << 20), 0);
    assert_int_equal(store_error(f->s, NULL, 0), 0);
    assert_int_equal(commit_filler(f->s, h, 8192), 0);
    assert_int_equal(commit_filler(f->s, h + 1, 8192), 0);

    /* The recorded size outlives a restart with the old configuration. */
    fx_open(f, &tiny);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_stats(r, &st), 0);
    assert_int_equal(st.map_bytes, 1 << 20);
    assert_int_equal(store_get_height(r, &height), 0);
    assert_int_equal(height, h + 1);
    store_read_end(r);
    assert_int_equal(commit_filler(f->s, h + 2, 8192), 0);
}

/*
 * A file size limit makes the kernel cut LMDB's writes short or refuse them
 * with EFBIG, as a full disk does with ENOSPC; LMDB reports a short write as
 * EIO, which the store must still recognise as a full disk: -BEX_ENOSPC with
 * a message that says so, and it must then stick. The limit
 * applies to a whole process, so the check runs in a child and reports by
 * its exit status (the step that failed).
 */
static int enospc_child(const char *dir)
{
    struct store_options o = {.no_sync = true};
    struct store *s = NULL;
    struct store_read *r;
    struct rlimit lim;
    struct stat sb;
    char path[STORE_UTIL_PATH_BYTES + 16], msg[256], want[64];
    uint64_t h, height;
    int rc = 0;

    if (store_open(&s, dir, &o, NULL, 0) != 0 || commit_filler(s, 1, 100) != 0)
        return 10;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &sb) != 0)
        return 11;
    signal(SIGXFSZ, SIG_IGN);
    if (getrlimit(RLIMIT_FSIZE, &lim) != 0)
        return 12;
    lim.rlim_cur = (rlim_t)sb.st_size + (64 << 10);
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
        return 12;
    for (h = 2; h < 200; h++)
        if ((rc = commit_filler(s, h, 16384)) != 0)
            break;
    if (rc != -BEX_ENOSPC)
        return 13;
    snprintf(want, sizeof want, "store: commit h=%" PRIu64 ": ", h);
    if (store_error(s, msg, sizeof msg) != rc || strncmp(msg, want, strlen(want)) != 0 ||
        strstr(msg, "disk full") == NULL || strstr(msg, "file size limit") == NULL)
        return 14;
    if (commit_custom(s, h, NULL, 0, NULL, 0) != rc ||
        store_pbft_put(s, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1) != rc)
        return 15;
    /* Growing the map does not clear a disk error. */
    if (store_resize(s, STORE_MAP_BYTES_DEFAULT * 2) != rc || store_error(s, NULL, 0) != rc)
        return 16;
    if (store_read_begin(s, &r) != 0 || store_get_height(r, &height) != 0 || height != h - 1)
        return 17;
    store_read_end(r);
    store_close(s);
    /* After the operator frees space, close and reopen resume writing. */
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0 || store_open(&s, dir, &o, NULL, 0) != 0)
        return 18;
    if (commit_filler(s, h, 16384) != 0)
        return 19;
    store_close(s);
    return 0;
}

static void store_disk_error_is_sticky_until_reopen(void **state)
{
    struct fx *f = *state;
    pid_t pid;
    int status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(enospc_child(f->dir));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("enospc child failed at step %d", WEXITSTATUS(status));
}

/* ------------------------------------------------------------- pbft votes */

static void vote_key(uint8_t out[17], uint8_t type, uint64_t seq, uint64_t view)
{
    out[0] = type;
    be64(out + 1, seq);
    be64(out + 9, view);
}

struct collect {
    uint8_t keys[32][17];
    char vals[32][16];
    int n, stop_after;
};

static int collect_vote(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct collect *c = arg;

    if (c->n == c->stop_after)
        return 7;
    if (c->n >= 32 || key_len != 17 || val_len >= 16)
        return -1;
    memcpy(c->keys[c->n], key, 17);
    memcpy(c->vals[c->n], val, val_len);
    c->vals[c->n][val_len] = '\0';
    c->n++;
    return 0;
}

static void store_pbft_put_iter_prune(void **state)
{
    struct fx *f = *state;
    uint8_t k[17], to[9], big[STORE_PBFT_KEY_BYTES_MAX + 1] = {0};
    struct collect c;
    size_t deleted;

    fx_open(f, &fast);
    /* Put out of order; iteration must come back in key order. */
    for (uint64_t seq = 10; seq >= 1; seq--) {
        for (uint8_t type = 2; type >= 1; type--) {
            char v[16];
            snprintf(v, sizeof v, "%u.%" PRIu64, type, seq);
            vote_key(k, type, seq, 0);
            assert_int_equal(store_pbft_put(f->s, k, 17, (const uint8_t *)v, strlen(v)), 0);
        }
    }
    vote_key(k, 1, 4, 0);
    assert_int_equal(store_pbft_put(f->s, k, 17, (const uint8_t *)"new", 3), 0);

    memset(&c, 0, sizeof c);
    c.stop_after = -1;
    assert_int_equal(store_pbft_iter(f->s, collect_vote, &c), 0);
    assert_int_equal(c.n, 20);
    for (int i = 0; i < 20; i++) {
        vote_key(k, (uint8_t)(1 + i / 10), (uint64_t)(1 + i % 10), 0);
        assert_memory_equal(c.keys[i], k, 17);
    }
    assert_string_equal(c.vals[3], "new");
    assert_string_equal(c.vals[4], "1.5");

    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    assert_int_equal(store_pbft_iter(f->s, collect_vote, &c), 7);
    assert_int_equal(c.n, 3);

    /* Type 1 below seq 6. */
    to[0] = 1;
    be64(to + 1, 6);
    assert_int_equal(store_pbft_prune(f->s, &deleted, to, 1, to, 9), 0);
    assert_int_equal(deleted, 5);
    /* Everything below type 2 seq 3, from the first key. */
    to[0] = 2;
    be64(to + 1, 3);
    assert_int_equal(store_pbft_prune(f->s, &deleted, NULL, 0, to, 9), 0);
    assert_int_equal(deleted, 7);
    assert_int_equal(store_pbft_prune(f->s, &deleted, NULL, 0, to, 9), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(store_pbft_prune(f->s, &deleted, to, 9, to, 1), -BEX_EINVAL);
    assert_int_equal(store_pbft_prune(f->s, &deleted, NULL, 0, NULL, 0), -BEX_EINVAL);

    /* Durable across a restart. */
    fx_open(f, &fast);
    memset(&c, 0, sizeof c);
    c.stop_after = -1;
    assert_int_equal(store_pbft_iter(f->s, collect_vote, &c), 0);
    assert_int_equal(c.n, 8);
    for (int i = 0; i < 8; i++) {
        vote_key(k, 2, (uint64_t)(3 + i), 0);
        assert_memory_equal(c.keys[i], k, 17);
    }

    assert_int_equal(store_pbft_put(f->s, k, 0, NULL, 0), -BEX_EINVAL);
    assert_int_equal(store_pbft_put(f->s, big, sizeof big, NULL, 0), -BEX_ELIMIT);
    assert_int_equal(store_pbft_put(f->s, k, 17, NULL, 5), -BEX_EINVAL);
    assert_int_equal(store_pbft_iter(f->s, NULL, NULL), -BEX_EINVAL);
}

/* A batch lands whole at its commit, is durable, and an abort or a failed operation leaves nothing. */
static void store_batch_commits_all_or_nothing(void **state)
{
    struct fx *f = *state;
    struct store_batch *b;
    struct store_read *r;
    uint8_t k[17], to[9], digest[STORE_HASH_BYTES], got[STORE_HASH_BYTES];
    uint8_t big[STORE_PBFT_KEY_BYTES_MAX + 1] = {0};
    struct collect c;
    uint64_t seq;
    size_t deleted;

    fx_open(f, &fast);
    memset(digest, 0xab, sizeof digest);
    for (uint64_t s = 1; s <= 4; s++) {
        vote_key(k, 1, s, 0);
        assert_int_equal(store_pbft_put(f->s, k, 17, (const uint8_t *)"old", 3), 0);
    }
    /* Puts, a prune of seqs 1-2 and a checkpoint in one transaction. */
    assert_int_equal(store_batch_begin(f->s, &b), 0);
    for (uint64_t s = 5; s <= 6; s++) {
        vote_key(k, 1, s, 0);
        assert_int_equal(store_batch_pbft_put(b, k, 17, (const uint8_t *)"new", 3), 0);
    }
    to[0] = 1;
    be64(to + 1, 3);
    assert_int_equal(store_batch_pbft_prune(b, &deleted, to, 1, to, 9), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(store_batch_checkpoint(b, 2, digest), 0);
    assert_int_equal(store_batch_commit(b), 0);

    fx_open(f, &fast);
    memset(&c, 0, sizeof c);
    c.stop_after = -1;
    assert_int_equal(store_pbft_iter(f->s, collect_vote, &c), 0);
    assert_int_equal(c.n, 4);
    for (int i = 0; i < 4; i++) {
        vote_key(k, 1, (uint64_t)(3 + i), 0);
        assert_memory_equal(c.keys[i], k, 17);
    }
    assert_string_equal(c.vals[3], "new");
    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_checkpoint(r, &seq, got), 0);
    assert_int_equal(seq, 2);
    assert_memory_equal(got, digest, sizeof digest);
    store_read_end(r);

    /* An aborted batch leaves nothing. */
    assert_int_equal(store_batch_begin(f->s, &b), 0);
    vote_key(k, 1, 9, 0);
    assert_int_equal(store_batch_pbft_put(b, k, 17, (const uint8_t *)"x", 1), 0);
    store_batch_abort(b);
    /* A failed operation fails the batch: later operations and the commit return its code. */
    assert_int_equal(store_batch_begin(f->s, &b), 0);
    vote_key(k, 1, 10, 0);
    assert_int_equal(store_batch_pbft_put(b, k, 17, (const uint8_t *)"x", 1), 0);
    assert_int_equal(store_batch_pbft_put(b, big, sizeof big, NULL, 0), -BEX_ELIMIT);
    assert_int_equal(store_batch_pbft_put(b, k, 17, (const uint8_t *)"y", 1), -BEX_ELIMIT);
    assert_int_equal(store_batch_commit(b), -BEX_ELIMIT);
    memset(&c, 0, sizeof c);
    c.stop_after = -1;
    assert_int_equal(store_pbft_iter(f->s, collect_vote, &c), 0);
    assert_int_equal(c.n, 4);
    /* The write lock was released: a plain put works again. */
    assert_int_equal(store_pbft_put(f->s, k, 17, (const uint8_t *)"z", 1), 0);
    assert_int_equal(store_batch_begin(f->s, NULL), -BEX_EINVAL);
}

/* RssFile of this process in KiB, from /proc/self/status. */
static long rss_file_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *fp = fopen("/proc/self/status", "r");

    assert_non_null(fp);
    while (fgets(line, sizeof line, fp) != NULL) {
        if (sscanf(line, "RssFile: %ld kB", &kib) == 1)
            break;
    }
    fclose(fp);
    assert_true(kib >= 0);
    return kib;
}

static int touch_vote(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    unsigned *sum = arg;

    (void)key;
    (void)key_len;
    for (size_t i = 0; i < val_len; i += 512)
        *sum += val[i];
    return 0;
}

/* 2048 votes of 8 KiB each: 16 MiB to read back through the map. */
static void put_votes_16mib(struct store *s)
{
    static uint8_t val[8192];
    uint8_t k[17];

    for (uint64_t i = 0; i < 2048; i++) {
        memset(val, (int)(i & 0xff), sizeof val);
        vote_key(k, 1, i, 0);
        assert_int_equal(store_pbft_put(s, k, 17, val, sizeof val), 0);
    }
}

/* Trimming gives the data file's pages back (RssFile drops) while borrowed values stay readable. */
static void store_trim_unmaps_pages_not_data(void **state)
{
    struct fx *f = *state;
    uint8_t meta[100];
    struct store_read *r;
    const uint8_t *v;
    size_t vlen;
    unsigned sum = 0;
    long before, after;

    fx_open(f, &fast);
    memset(meta, 0x5a, sizeof meta);
    assert_int_equal(store_put_meta(f->s, (const uint8_t *)"probe", 5, meta, sizeof meta), 0);
    /* 16 MiB of votes, then read every page of them through the map. */
    put_votes_16mib(f->s);
    assert_int_equal(store_pbft_iter(f->s, touch_vote, &sum), 0);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_meta(r, &v, &vlen, (const uint8_t *)"probe", 5), 0);
    before = rss_file_kib();
    assert_int_equal(store_trim(f->s), 0);
    after = rss_file_kib();
    /* At least 12 of the 16 MiB read were mapped, and are not any more. */
    assert_true(before - after >= 12 * 1024);
    assert_int_equal(vlen, sizeof meta);
    assert_memory_equal(v, meta, sizeof meta);
    store_read_end(r);
    assert_int_equal(store_trim(NULL), -BEX_EINVAL);
}

/*
 * The trim remembers where the file is mapped; a resize moves the map, and a
 * trim after it must still find and give back the pages read through the new
 * one.
 */
static void store_trim_follows_a_resize(void **state)
{
    struct fx *f = *state;
    unsigned sum = 0;
    long before;

    fx_open(f, &fast);
    put_votes_16mib(f->s);
    assert_int_equal(store_trim(f->s), 0);
    assert_int_equal(store_resize(f->s, STORE_MAP_BYTES_DEFAULT * 4), 0);
    assert_int_equal(store_pbft_iter(f->s, touch_vote, &sum), 0);
    before = rss_file_kib();
    assert_int_equal(store_trim(f->s), 0);
    assert_true(before - rss_file_kib() >= 12 * 1024);
    /* And again, through the same map: the cached range is still right. */
    assert_int_equal(store_pbft_iter(f->s, touch_vote, &sum), 0);
    before = rss_file_kib();
    assert_int_equal(store_trim(f->s), 0);
    assert_true(before - rss_file_kib() >= 12 * 1024);
}

/*
 * With trim_ms the store's own thread gives the pages back: what a reader
 * mapped is gone within a few periods, without anyone calling store_trim(),
 * unless the file-backed resident set is below trim_above_bytes.
 */
static void store_trimmer_thread_gives_pages_back(void **state)
{
    struct fx *f = *state;
    static const struct store_options trimmed = {.no_sync = true, .trim_ms = 5};
    static const struct store_options high = {.no_sync = true, .trim_ms = 5, .trim_above_bytes = (size_t)1 << 30};
    static const struct store_options too_slow = {.no_sync = true, .trim_ms = STORE_TRIM_MS_MAX + 1};
    struct store *other = NULL;
    char err[256];
    unsigned sum = 0;
    long before, now = 0;

    assert_int_equal(store_open(&other, f->dir, &too_slow, err, sizeof err), -BEX_EINVAL);
    assert_null(other);
    /* Below its threshold the thread leaves the mapped pages alone. */
    fx_open(f, &high);
    put_votes_16mib(f->s);
    before = rss_file_kib();
    assert_int_equal(store_pbft_iter(f->s, touch_vote, &sum), 0);
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    assert_true(rss_file_kib() >= before + 12 * 1024);
    store_close(f->s);
    f->s = NULL;

    fx_open(f, &trimmed);
    /* Read 16 MiB through the map; the thread may already trim during the scan. */
    before = rss_file_kib();
    assert_int_equal(store_pbft_iter(f->s, touch_vote, &sum), 0);
    for (int tries = 0; tries < 200; tries++) {
        struct timespec ms = {0, 5 * 1000 * 1000};
        now = rss_file_kib();
        if (now <= before + 2 * 1024)
            break;
        nanosleep(&ms, NULL);
    }
    assert_true(now <= before + 2 * 1024);
    /* Closing stops and joins the thread (a leak or a hang here fails the test run). */
    store_close(f->s);
    f->s = NULL;
}

/*
 * Past the threshold, a commit (every 64 puts) and the readers (every 256
 * gets) trim on their own thread, without waiting for the trimmer's period
 * (here a minute, so it never comes).
 */
static void store_commits_and_reads_trim_past_the_threshold(void **state)
{
    struct fx *f = *state;
    static const struct store_options eager = {.no_sync = true, .trim_ms = STORE_TRIM_MS_MAX, .trim_above_bytes = 1};
    static uint8_t val[8192];
    static struct store_write w[2048];
    static char keys[2048][16];
    struct tblock t;
    struct store_read *r;
    unsigned sum = 0;
    long before;

    fx_open(f, &eager);
    put_votes_16mib(f->s);
    /* 16 MiB of votes read through the map (a cursor, not counted as gets), then a block of 2048 writes. */
    before = rss_file_kib();
    assert_int_equal(store_pbft_iter(f->s, touch_vote, &sum), 0);
    assert_true(rss_file_kib() >= before + 12 * 1024);
    tblock_make(&t, 1);
    memset(val, 0x77, sizeof val);
    for (size_t i = 0; i < 2048; i++) {
        snprintf(keys[i], sizeof keys[i], "big/%04zu", i);
        w[i] = (struct store_write){(const uint8_t *)keys[i], strlen(keys[i]), val, sizeof val, false};
    }
    t.b.writes = w;
    t.b.writes_len = 2048;
    assert_int_equal(store_commit_block(f->s, &t.b), 0);
    assert_true(rss_file_kib() < before + 8 * 1024);

    /* 16 MiB of values read by key: at most the last 255 gets' pages stay mapped. */
    assert_int_equal(store_read_begin(f->s, &r), 0);
    before = rss_file_kib();
    for (size_t i = 0; i < 2048; i++) {
        const uint8_t *v;
        size_t n;

        assert_int_equal(store_get_state(r, &v, &n, (const uint8_t *)keys[i], strlen(keys[i])), 0);
        assert_int_equal(n, sizeof val);
        for (size_t j = 0; j < n; j += 512)
            sum += v[j];
    }
    assert_true(rss_file_kib() < before + 8 * 1024);
    store_read_end(r);
    assert_true(sum > 0);
}

/* ------------------------------------------------------------- concurrency */

struct writer {
    struct store *s;
    uint64_t from, to;
    int rc;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;

    for (uint64_t h = w->from; h <= w->to && w->rc == 0; h++)
        w->rc = commit_std(w->s, h);
    return NULL;
}

static void store_reader_snapshot_is_consistent(void **state)
{
    struct fx *f = *state;
    struct writer w;
    struct store_read *old, *r;
    pthread_t t;
    uint64_t height, last = 0;
    unsigned snapshots = 0, distinct = 0;

    fx_open(f, &fast);
    assert_int_equal(commit_std(f->s, 1), 0);
    assert_int_equal(commit_std(f->s, 2), 0);
    assert_int_equal(store_read_begin(f->s, &old), 0);

    w = (struct writer){f->s, 3, 300, 0};
    assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
    do {
        assert_int_equal(store_read_begin(f->s, &r), 0);
        assert_int_equal(store_get_height(r, &height), 0);
        /* Every part of a block is there, or none of it. */
        check_tip(r, height);
        check_std_block(r, height);
        store_read_end(r);
        snapshots++;
        distinct += height != last;
        last = height;
    } while (height < 300 && w.rc == 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.rc, 0);
    print_message("# %u snapshots saw %u distinct heights during the writes\n", snapshots, distinct);

    /* The snapshot taken before the writer still shows height 2. */
    check_tip(old, 2);
    store_read_end(old);
    assert_int_equal(store_read_begin(f->s, &r), 0);
    check_tip(r, 300);
    store_read_end(r);
}

struct handoff {
    struct store_read *r;
    int rc;
    uint64_t height;
};

static void *reader_main(void *arg)
{
    struct handoff *h = arg;

    h->rc = store_get_height(h->r, &h->height);
    store_read_end(h->r);
    return NULL;
}

static void store_read_moves_between_threads(void **state)
{
    struct fx *f = *state;
    struct handoff h = {0};
    pthread_t t;

    fx_open(f, &fast);
    assert_int_equal(commit_std(f->s, 1), 0);
    assert_int_equal(store_read_begin(f->s, &h.r), 0);
    assert_int_equal(commit_std(f->s, 2), 0);
    assert_int_equal(pthread_create(&t, NULL, reader_main, &h), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.height, 1);
    /* The snapshot ended on the other thread: a resize now succeeds. */
    assert_int_equal(store_resize(f->s, STORE_MAP_BYTES_DEFAULT * 2), 0);
}

static void store_readers_are_bounded(void **state)
{
    struct fx *f = *state;
    struct store_options two = {.readers_max = 2, .no_sync = true};
    struct store_read *r[3];

    fx_open(f, &two);
    assert_int_equal(store_read_begin(f->s, &r[0]), 0);
    assert_int_equal(store_read_begin(f->s, &r[1]), 0);
    assert_int_equal(store_read_begin(f->s, &r[2]), -BEX_EFULL);
    assert_null(r[2]);
    store_read_end(r[0]);
    assert_int_equal(store_read_begin(f->s, &r[2]), 0);
    store_read_end(r[1]);
    store_read_end(r[2]);
}

/* ------------------------------------------------------------- input */

static void store_rejects_bad_input(void **state)
{
    struct fx *f = *state;
    uint8_t big[STORE_KEY_BYTES_MAX + 1];
    struct store_kv kv[1];
    struct store_history_item hi[1];
    struct store_read *r;
    struct store_block b;
    struct tblock t;
    const uint8_t *p;
    size_t n;

    memset(big, 'k', sizeof big);
    fx_open(f, &fast);
    assert_int_equal(store_commit_block(f->s, NULL), -BEX_EINVAL);
    assert_int_equal(store_commit_block(NULL, NULL), -BEX_EINVAL);

    tblock_make(&t, 1);
    b = t.b;
    b.record_len = 0;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_EINVAL);
    b = t.b;
    b.record_len = STORE_RECORD_BYTES_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_ELIMIT);
    b = t.b;
    b.cert = NULL;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_EINVAL);
    b = t.b;
    b.cert_len = STORE_CERT_BYTES_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_ELIMIT);
    b = t.b;
    b.writes = NULL;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_EINVAL);
    b = t.b;
    b.writes_len = STORE_BLOCK_ENTRIES_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_ELIMIT);
    b = t.b;
    b.meta_len = STORE_BLOCK_META_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &b), -BEX_ELIMIT);
    tblock_make(&t, 1);
    t.receipts[1].len = STORE_RECEIPT_BYTES_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_ELIMIT);
    tblock_make(&t, 1);
    t.writes[1].val_len = STORE_VALUE_BYTES_MAX + 1;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_ELIMIT);
    tblock_make(&t, 1);
    t.writes[1].val = NULL;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_EINVAL);
    tblock_make(&t, 1);
    t.history[0].key = big;
    t.history[0].key_len = sizeof big;
    assert_int_equal(store_commit_block(f->s, &t.b), -BEX_ELIMIT);
    /* The largest key is fine, in state and in history. */
    tblock_make(&t, 1);
    t.writes[1].key = big;
    t.writes[1].key_len = STORE_KEY_BYTES_MAX;
    t.history[1].key = big;
    t.history[1].key_len = STORE_KEY_BYTES_MAX;
    assert_int_equal(store_commit_block(f->s, &t.b), 0);
    assert_int_equal(store_error(f->s, NULL, 0), 0);

    assert_int_equal(store_put_meta(f->s, NULL, 0, NULL, 0), -BEX_EINVAL);
    assert_int_equal(store_put_meta(f->s, big, STORE_META_NAME_BYTES_MAX + 1, NULL, 0), -BEX_ELIMIT);
    assert_int_equal(store_put_meta(f->s, big, 1, big, STORE_META_VALUE_BYTES_MAX + 1), -BEX_ELIMIT);
    assert_int_equal(store_set_checkpoint(f->s, 1, NULL), -BEX_EINVAL);
    assert_int_equal(store_resize(f->s, STORE_MAP_BYTES_MAX + 1), -BEX_EINVAL);
    assert_int_equal(store_read_begin(f->s, NULL), -BEX_EINVAL);

    assert_int_equal(store_read_begin(f->s, &r), 0);
    assert_int_equal(store_get_state(r, &p, &n, big, STORE_KEY_BYTES_MAX), 0);
    assert_int_equal(store_get_state(r, &p, &n, big, sizeof big), -BEX_EINVAL);
    assert_int_equal(store_get_state(r, &p, &n, big, 0), -BEX_EINVAL);
    assert_int_equal(store_get_meta(r, &p, &n, big, STORE_META_NAME_BYTES_MAX + 1), -BEX_EINVAL);
    assert_int_equal(store_get_receipt(r, &p, &n, NULL), -BEX_EINVAL);
    assert_int_equal(store_scan_state(r, kv, 1, &n, NULL, big, sizeof big, NULL, 0), -BEX_EINVAL);
    assert_int_equal(store_scan_state(r, kv, 1, &n, NULL, NULL, 3, NULL, 0), -BEX_EINVAL);
    assert_int_equal(store_scan_history(r, hi, 1, &n, NULL, big, sizeof big, NULL), -BEX_EINVAL);
    assert_int_equal(store_scan_history(r, hi, 1, &n, NULL, big, STORE_KEY_BYTES_MAX, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_scan_history(r, NULL, 1, &n, NULL, big, 1, NULL), -BEX_EINVAL);
    store_read_end(r);
}

/* ------------------------------------------------------------- measurement */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define BENCH_N 1000
#define BENCH_RUNS 7

/* Times commits of blocks with 1000 state writes and 1000 receipts; prints the median. */
static double bench_commits(const char *dir, bool no_sync)
{
    static struct store_write w[BENCH_N];
    static struct store_receipt rc[BENCH_N];
    static char keys[BENCH_N][24];
    static uint8_t val[100], rbytes[200];
    struct store_options o = {.no_sync = no_sync};
    struct store *s = NULL;
    struct store_read *r;
    double us[BENCH_RUNS];
    const uint8_t *p;
    size_t n;

    memset(val, 'v', sizeof val);
    memset(rbytes, 'r', sizeof rbytes);
    assert_int_equal(store_open(&s, dir, &o, NULL, 0), 0);
    for (uint64_t h = 1; h <= BENCH_RUNS; h++) {
        struct store_block b = {.height = h, .record = rbytes, .record_len = sizeof rbytes,
                                .cert = rbytes, .cert_len = 100, .receipts = rc,
                                .receipts_len = BENCH_N, .writes = w, .writes_len = BENCH_N};
        double t0;

        for (uint32_t i = 0; i < BENCH_N; i++) {
            snprintf(keys[i], sizeof keys[i], "bench/%03" PRIu64 "/%04" PRIu32, h, i);
            w[i] = (struct store_write){(const uint8_t *)keys[i], strlen(keys[i]), val, sizeof val, false};
            txid(rc[i].tx_id, h, i);
            rc[i].bytes = rbytes;
            rc[i].len = sizeof rbytes;
        }
        t0 = store_util_now_us();
        assert_int_equal(store_commit_block(s, &b), 0);
        us[h - 1] = store_util_now_us() - t0;
    }
    assert_int_equal(store_read_begin(s, &r), 0);
    assert_int_equal(store_get_state(r, &p, &n, (const uint8_t *)keys[BENCH_N - 1],
                                     strlen(keys[BENCH_N - 1])),
                     0);
    assert_int_equal(n, sizeof val);
    store_read_end(r);
    store_close(s);
    qsort(us, BENCH_RUNS, sizeof us[0], cmp_double);
    return us[BENCH_RUNS / 2];
}

static void store_commit_large_block_timing(void **state)
{
    struct fx *f = *state;
    char dir2[STORE_UTIL_PATH_BYTES + 8];
    double off, on;

    snprintf(dir2, sizeof dir2, "%s/db2", f->root);
    off = bench_commits(f->dir, true);
    on = bench_commits(dir2, false);
    print_message("# store_commit_block, 1000 writes + 1000 receipts, median of %d: "
                  "sync off %.0f us, sync on %.0f us\n",
                  BENCH_RUNS, off, on);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(store_open_close_reopen_persists),
        T(store_open_refuses_second_opener),
        T(store_open_checks_arguments),
        T(store_schema_mismatch_refused),
        T(store_open_detects_meta_block_disagreement),
        T(store_commit_reads_back_everything),
        T(store_commit_refuses_height_gap),
        T(store_failed_commit_leaves_nothing),
        T(store_delete_removes_key),
        T(store_scan_state_pages),
        T(store_scan_history_newest_first),
        T(store_map_full_is_sticky_until_resize),
        T(store_disk_error_is_sticky_until_reopen),
        T(store_pbft_put_iter_prune),
        T(store_batch_commits_all_or_nothing),
        T(store_trim_unmaps_pages_not_data),
        T(store_trim_follows_a_resize),
        T(store_trimmer_thread_gives_pages_back),
        T(store_commits_and_reads_trim_past_the_threshold),
        T(store_reader_snapshot_is_consistent),
        T(store_read_moves_between_threads),
        T(store_readers_are_bounded),
        T(store_rejects_bad_input),
        T(store_commit_large_block_timing),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
