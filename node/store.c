/* store.c: the LMDB store of a bex node; the contract is in store.h. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

enum { DB_BLOCKS, DB_CERTS, DB_RECEIPTS, DB_STATE, DB_HISTORY, DB_META, DB_PBFT, DB_COUNT };

static const char *const db_names[DB_COUNT] = {
    [DB_BLOCKS] = "blocks", [DB_CERTS] = "certs",     [DB_RECEIPTS] = "receipts",
    [DB_STATE] = "state",   [DB_HISTORY] = "history", [DB_META] = "meta",
    [DB_PBFT] = "pbft",
};

/*
 * Meta names. The store's own entries live under "sys/" and the node's
 * free-form entries under "usr/", so no node name can overwrite the height
 * or the schema version.
 */
#define META_SCHEMA "sys/schema"
#define META_HEIGHT "sys/height"
#define META_ROOT "sys/root"
#define META_HASH "sys/hash"
#define META_VIEW "sys/view"
#define META_CHECKPOINT "sys/checkpoint" /* seq (8 BE) || digest (32) */
#define META_MAP_BYTES "sys/map_bytes"   /* the size store_resize() last set */
#define META_USER "usr/"
#define META_USER_LEN 4

#define LOCK_FILE "store.lock"
#define MSG_BYTES 256
#define WHAT_BYTES 48
/* An I/O error with less room than this left on the disk or under the file size limit is a full disk. */
#define DISK_FULL_SLACK_BYTES (8u << 20)

struct store_batch {
    struct store *s;
    MDB_txn *txn;
    int rc; /* the first failure; the commit returns it */
};

struct store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    int lock_fd;
    bool mu_ready;
    /* Held for the whole of every write transaction and by store_resize(). */
    pthread_mutex_t wmu;
    /* Guards the fields below; taken after wmu, never before it. */
    pthread_mutex_t mu;
    unsigned readers;
    bool unmapped; /* a failed remap left no map: everything returns -BEX_EIO */
    /* Where the data file is mapped, found by store_trim(); remap() forgets it. */
    uintptr_t map_start, map_end;
    /* The trimmer thread (store_options.trim_ms), woken early by trim_cv to stop. */
    pthread_t trimmer;
    pthread_cond_t trim_cv;
    bool trim_cv_ready, trimmer_on, trimmer_stop;
    unsigned trim_ms;
    size_t trim_above; /* bytes of file-backed resident memory that make it trim */
    unsigned puts_unchecked; /* under wmu: puts since the last check_trim() */
    atomic_uint gets;        /* gets by every reader, counted for maybe_trim() */
    int statm_fd;      /* /proc/self/statm, read by the trimmer; -1 when closed */
    int sticky;
    char msg[MSG_BYTES];
    struct store_batch batch; /* the one open batch, under wmu */
};

struct store_read {
    struct store *s;
    MDB_txn *txn;
};

static int start_trimmer(struct store *s, unsigned trim_ms, size_t trim_above);
static void stop_trimmer(struct store *s);
static void check_trim(struct store *s);
static void maybe_trim(struct store *s);

/* Puts between two looks at the resident set within a commit (check_trim). */
#define TRIM_CHECK_PUTS 64
/* Gets, on any thread, between two looks at the resident set (get). */
#define TRIM_CHECK_GETS 256

/* ------------------------------------------------------------- helpers */

static void lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    BEX_ASSERT(rc == 0);
}

static void unlock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_unlock(m);
    BEX_ASSERT(rc == 0);
}

/* LMDB never writes through mv_data of an input, so dropping const is safe. */
static MDB_val val_of(const void *p, size_t n)
{
    MDB_val v = {n, n > 0 ? (void *)p : (void *)""};
    return v;
}

/* The order LMDB's default comparison gives: memcmp, then the shorter first. */
static int keycmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static bool has_prefix(const MDB_val *k, const uint8_t *prefix, size_t prefix_len)
{
    return k->mv_size >= prefix_len && (prefix_len == 0 || memcmp(k->mv_data, prefix, prefix_len) == 0);
}

/* A pointer may be NULL only when its length is 0. */
static bool bytes_ok(const void *p, size_t n)
{
    return p != NULL || n == 0;
}

static int lmdb_code(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -BEX_ENOTFOUND;
    case MDB_KEYEXIST:
        return -BEX_EEXIST;
    case MDB_MAP_FULL:
        return -BEX_EMAPFULL;
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_BAD_VALSIZE:
        return -BEX_ELIMIT;
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
        return -BEX_EFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        return -BEX_ECORRUPT;
    case ENOMEM:
        return -BEX_ENOMEM;
    case EINVAL:
        return -BEX_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return -BEX_ENOSPC;
    default:
        return -BEX_EIO;
    }
}

static const char *lmdb_text(int rc)
{
    switch (rc) {
    case MDB_MAP_FULL:
        return "map full";
    case MDB_TXN_FULL:
        return "block too large for one transaction";
    case ENOSPC:
        return "disk full (no space left on device)";
    case EDQUOT:
        return "disk full (disk quota exceeded)";
    case EFBIG:
        return "disk full (file size limit reached)";
    default:
        return mdb_strerror(rc);
    }
}

static bool code_is_fatal(int code)
{
    return code == -BEX_EMAPFULL || code == -BEX_ENOSPC || code == -BEX_EIO || code == -BEX_ECORRUPT;
}

/* Records the message of a failed write, makes a fatal code sticky, returns code. */
static int fail(struct store *s, int code, const char *fmt, ...) BEX_PRINTF(3, 4);
static int fail(struct store *s, int code, const char *fmt, ...)
{
    va_list ap;

    BEX_ASSERT(code < 0);
    lock(&s->mu);
    if (s->sticky == 0) {
        va_start(ap, fmt);
        vsnprintf(s->msg, sizeof s->msg, fmt, ap);
        va_end(ap);
        if (code_is_fatal(code))
            s->sticky = code;
    }
    unlock(&s->mu);
    return code;
}

/*
 * LMDB reports a write the kernel cut short as EIO, and a filling disk or a
 * file size limit (RLIMIT_FSIZE) usually cuts the last write short rather
 * than refusing it whole. Returns true, with the cause in why, when the data
 * file is at the process's file size limit or its filesystem is (almost)
 * out of space, so the failure is a full disk and not a failing one.
 */
static bool disk_full_cause(struct store *s, char *why, size_t why_size)
{
    mdb_filehandle_t fd;
    struct rlimit lim;
    struct statvfs vfs;
    struct stat sb;

    if (s->env == NULL || mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &sb) != 0)
        return false;
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (uint64_t)sb.st_size + DISK_FULL_SLACK_BYTES >= (uint64_t)lim.rlim_cur) {
        snprintf(why, why_size, "disk full (file size limit of %llu bytes reached)",
                 (unsigned long long)lim.rlim_cur);
        return true;
    }
    if (fstatvfs(fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < DISK_FULL_SLACK_BYTES) {
        snprintf(why, why_size, "disk full (%llu KiB free)", (unsigned long long)vfs.f_bavail * vfs.f_frsize / 1024);
        return true;
    }
    return false;
}

static int fail_lmdb(struct store *s, int rc, const char *what)
{
    char why[96];

    if (rc == EIO && disk_full_cause(s, why, sizeof why))
        return fail(s, -BEX_ENOSPC, "store: %s: %s", what, why);
    return fail(s, lmdb_code(rc), "store: %s: %s", what, lmdb_text(rc));
}

/* ------------------------------------------------------------- writes */

/* Takes the write lock and begins a write transaction, unless sticky. */
static int write_begin(struct store *s, MDB_txn **txn, const char *what)
{
    int rc;

    lock(&s->wmu);
    lock(&s->mu);
    rc = s->sticky;
    unlock(&s->mu);
    if (rc == 0 && (rc = mdb_txn_begin(s->env, NULL, 0, txn)) != 0)
        rc = fail_lmdb(s, rc, what);
    if (rc != 0)
        unlock(&s->wmu);
    return rc;
}

/* Commits (rc == 0) or aborts the transaction and releases the write lock. */
static int write_end(struct store *s, MDB_txn *txn, int rc, const char *what)
{
    int mrc;

    if (rc == 0) {
        if ((mrc = mdb_txn_commit(txn)) != 0)
            rc = fail_lmdb(s, mrc, what);
    } else {
        mdb_txn_abort(txn);
    }
    unlock(&s->wmu);
    return rc;
}

static int meta_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *v)
{
    MDB_val k = val_of(name, strlen(name)), d;
    int rc = mdb_get(txn, dbi, &k, &d);

    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc != 0)
        return lmdb_code(rc);
    if (d.mv_size != 8)
        return -BEX_ECORRUPT;
    *v = bex_be64_get(d.mv_data);
    return 0;
}

static int put_meta_raw(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *v, size_t vlen)
{
    MDB_val k = val_of(name, strlen(name)), d = val_of(v, vlen);
    return mdb_put(txn, dbi, &k, &d, 0);
}

/* Checks lengths and counts that do not need the transaction. */
static int block_check(struct store *s, const struct store_block *b, const char *what)
{
    if (b->height > STORE_HEIGHT_MAX)
        return fail(s, -BEX_ELIMIT, "store: %s: height above %" PRIu64, what, STORE_HEIGHT_MAX);
    if (b->record == NULL || b->record_len == 0)
        return fail(s, -BEX_EINVAL, "store: %s: empty block record", what);
    if (b->record_len > STORE_RECORD_BYTES_MAX)
        return fail(s, -BEX_ELIMIT, "store: %s: record of %zu bytes (max %u)", what, b->record_len,
                    STORE_RECORD_BYTES_MAX);
    if (!bytes_ok(b->cert, b->cert_len))
        return fail(s, -BEX_EINVAL, "store: %s: NULL certificate", what);
    if (b->cert_len > STORE_CERT_BYTES_MAX)
        return fail(s, -BEX_ELIMIT, "store: %s: certificate of %zu bytes (max %u)", what, b->cert_len,
                    STORE_CERT_BYTES_MAX);
    if (!bytes_ok(b->receipts, b->receipts_len) || !bytes_ok(b->writes, b->writes_len) ||
        !bytes_ok(b->history, b->history_len) || !bytes_ok(b->meta, b->meta_len))
        return fail(s, -BEX_EINVAL, "store: %s: NULL array with a length", what);
    if (b->receipts_len > STORE_BLOCK_ENTRIES_MAX || b->writes_len > STORE_BLOCK_ENTRIES_MAX ||
        b->history_len > STORE_BLOCK_ENTRIES_MAX || b->meta_len > STORE_BLOCK_META_MAX)
        return fail(s, -BEX_ELIMIT, "store: %s: too many entries", what);
    return 0;
}

static int put_height_keyed(struct store *s, MDB_txn *txn, int db, const uint8_t hkey[8],
                            const uint8_t *v, size_t vlen, const char *what)
{
    MDB_val k = val_of(hkey, 8), d = val_of(v, vlen);
    int rc = mdb_put(txn, s->dbi[db], &k, &d, MDB_APPEND);

    /*
     * The height was checked against meta, so an existing (or higher) key
     * means the database and meta disagree.
     */
    if (rc == MDB_KEYEXIST)
        return fail(s, -BEX_ECORRUPT, "store: %s: %s database is ahead of meta height", what,
                    db_names[db]);
    return rc != 0 ? fail_lmdb(s, rc, what) : 0;
}

static int put_receipts(struct store *s, MDB_txn *txn, const struct store_block *b, const char *what)
{
    for (size_t i = 0; i < b->receipts_len; i++) {
        const struct store_receipt *e = &b->receipts[i];
        MDB_val k = val_of(e->tx_id, STORE_TXID_BYTES), d = val_of(e->bytes, e->len);
        int rc;

        if (!bytes_ok(e->bytes, e->len))
            return fail(s, -BEX_EINVAL, "store: %s: receipt %zu: NULL bytes", what, i);
        if (e->len > STORE_RECEIPT_BYTES_MAX)
            return fail(s, -BEX_ELIMIT, "store: %s: receipt %zu: %zu bytes (max %u)", what, i, e->len,
                        STORE_RECEIPT_BYTES_MAX);
        rc = mdb_put(txn, s->dbi[DB_RECEIPTS], &k, &d, MDB_NOOVERWRITE);
        check_trim(s);
        if (rc == MDB_KEYEXIST)
            return fail(s, -BEX_EEXIST, "store: %s: receipt %zu: tx id already stored", what, i);
        if (rc != 0)
            return fail(s, lmdb_code(rc), "store: %s: receipt %zu: %s", what, i, lmdb_text(rc));
    }
    return 0;
}

static int put_writes(struct store *s, MDB_txn *txn, const struct store_block *b, const char *what)
{
    for (size_t i = 0; i < b->writes_len; i++) {
        const struct store_write *w = &b->writes[i];
        MDB_val k = val_of(w->key, w->key_len), d = val_of(w->val, w->val_len);
        int rc;

        if (w->key == NULL || w->key_len == 0)
            return fail(s, -BEX_EINVAL, "store: %s: write %zu: empty key", what, i);
        if (w->key_len > STORE_KEY_BYTES_MAX)
            return fail(s, -BEX_ELIMIT, "store: %s: write %zu: key of %zu bytes (max %d)", what, i,
                        w->key_len, STORE_KEY_BYTES_MAX);
        if (w->del) {
            rc = mdb_del(txn, s->dbi[DB_STATE], &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        } else {
            if (!bytes_ok(w->val, w->val_len))
                return fail(s, -BEX_EINVAL, "store: %s: write %zu: NULL value", what, i);
            if (w->val_len > STORE_VALUE_BYTES_MAX)
                return fail(s, -BEX_ELIMIT, "store: %s: write %zu: value of %zu bytes (max %u)", what,
                            i, w->val_len, STORE_VALUE_BYTES_MAX);
            rc = mdb_put(txn, s->dbi[DB_STATE], &k, &d, 0);
        }
        check_trim(s);
        if (rc != 0)
            return fail(s, lmdb_code(rc), "store: %s: write %zu: %s", what, i, lmdb_text(rc));
    }
    return 0;
}

/* klen (2 BE) || key || height (8 BE) || index (4 BE); returns its length. */
static size_t history_key(uint8_t *out, const uint8_t *key, size_t key_len, uint64_t height,
                          uint32_t index)
{
    BEX_ASSERT(key_len <= STORE_KEY_BYTES_MAX);
    out[0] = (uint8_t)(key_len >> 8);
    out[1] = (uint8_t)key_len;
    memcpy(out + 2, key, key_len);
    bex_be64_put(out + 2 + key_len, height);
    bex_be32_put(out + 10 + key_len, index);
    return key_len + 14;
}

static int put_history(struct store *s, MDB_txn *txn, const struct store_block *b, const char *what)
{
    uint8_t buf[STORE_HISTORY_KEY_BYTES_MAX];

    for (size_t i = 0; i < b->history_len; i++) {
        const struct store_history *h = &b->history[i];
        MDB_val k, d = val_of(h->tx_id, STORE_TXID_BYTES);
        int rc;

        if (h->key == NULL || h->key_len == 0)
            return fail(s, -BEX_EINVAL, "store: %s: history %zu: empty key", what, i);
        if (h->key_len > STORE_KEY_BYTES_MAX)
            return fail(s, -BEX_ELIMIT, "store: %s: history %zu: key of %zu bytes (max %d)", what, i,
                        h->key_len, STORE_KEY_BYTES_MAX);
        k = val_of(buf, history_key(buf, h->key, h->key_len, b->height, h->index));
        if ((rc = mdb_put(txn, s->dbi[DB_HISTORY], &k, &d, 0)) != 0)
            return fail(s, lmdb_code(rc), "store: %s: history %zu: %s", what, i, lmdb_text(rc));
        check_trim(s);
    }
    return 0;
}

/* Checks a free-form meta entry and builds its key "usr/" || name. */
static int user_meta_key(struct store *s, uint8_t *buf, MDB_val *k, const uint8_t *name,
                         size_t name_len, const uint8_t *val, size_t val_len, const char *what)
{
    if (name == NULL || name_len == 0)
        return fail(s, -BEX_EINVAL, "store: %s: empty meta name", what);
    if (!bytes_ok(val, val_len))
        return fail(s, -BEX_EINVAL, "store: %s: NULL meta value", what);
    if (name_len > STORE_META_NAME_BYTES_MAX || val_len > STORE_META_VALUE_BYTES_MAX)
        return fail(s, -BEX_ELIMIT, "store: %s: meta name of %zu or value of %zu bytes (max %d, %d)",
                    what, name_len, val_len, STORE_META_NAME_BYTES_MAX, STORE_META_VALUE_BYTES_MAX);
    memcpy(buf, META_USER, META_USER_LEN);
    memcpy(buf + META_USER_LEN, name, name_len);
    *k = val_of(buf, META_USER_LEN + name_len);
    return 0;
}

static int put_block_meta(struct store *s, MDB_txn *txn, const struct store_block *b, const char *what)
{
    uint8_t buf[META_USER_LEN + STORE_META_NAME_BYTES_MAX], h[8];
    MDB_dbi dbi = s->dbi[DB_META];
    int rc;

    for (size_t i = 0; i < b->meta_len; i++) {
        const struct store_meta *m = &b->meta[i];
        MDB_val k, d = val_of(m->val, m->val_len);

        if ((rc = user_meta_key(s, buf, &k, m->name, m->name_len, m->val, m->val_len, what)) != 0)
            return rc;
        if ((rc = mdb_put(txn, dbi, &k, &d, 0)) != 0)
            return fail_lmdb(s, rc, what);
    }
    bex_be64_put(h, b->height);
    if ((rc = put_meta_raw(txn, dbi, META_HEIGHT, h, 8)) != 0 ||
        (rc = put_meta_raw(txn, dbi, META_ROOT, b->state_root, STORE_HASH_BYTES)) != 0 ||
        (rc = put_meta_raw(txn, dbi, META_HASH, b->hash, STORE_HASH_BYTES)) != 0)
        return fail_lmdb(s, rc, what);
    return 0;
}

/*
 * Validation happens entry by entry right before each put, so a bad entry in
 * the middle of a block is found after earlier entries are already in the
 * transaction; the abort in write_end() is what leaves nothing behind.
 */
static int commit_txn(struct store *s, MDB_txn *txn, const struct store_block *b, const char *what)
{
    uint8_t hkey[8];
    uint64_t last;
    int rc;

    if ((rc = block_check(s, b, what)) != 0)
        return rc;
    if ((rc = meta_u64(txn, s->dbi[DB_META], META_HEIGHT, &last)) != 0)
        return fail(s, rc, "store: %s: cannot read meta height: %s", what, bex_strerror(rc));
    bex_be64_put(hkey, b->height);
    if (b->height == 0) {
        /* Genesis: only as the very first block of an empty store. */
        MDB_val k = val_of(hkey, 8), d;
        int grc = mdb_get(txn, s->dbi[DB_BLOCKS], &k, &d);

        if (grc == 0 || last != 0)
            return fail(s, -BEX_ESTATE, "store: %s: genesis on a non-empty store", what);
        if (grc != MDB_NOTFOUND)
            return fail_lmdb(s, grc, what);
    } else if (b->height != last + 1) {
        return fail(s, -BEX_ESTATE, "store: %s: expected height %" PRIu64, what, last + 1);
    }
    if ((rc = put_height_keyed(s, txn, DB_BLOCKS, hkey, b->record, b->record_len, what)) != 0 ||
        (rc = put_height_keyed(s, txn, DB_CERTS, hkey, b->cert, b->cert_len, what)) != 0 ||
        (rc = put_receipts(s, txn, b, what)) != 0 || (rc = put_writes(s, txn, b, what)) != 0 ||
        (rc = put_history(s, txn, b, what)) != 0 || (rc = put_block_meta(s, txn, b, what)) != 0)
        return rc;
    BEX_CHECK(meta_u64(txn, s->dbi[DB_META], META_HEIGHT, &last) == 0);
    BEX_CHECK(last == b->height);
    return 0;
}

int store_commit_block(struct store *s, const struct store_block *b)
{
    char what[WHAT_BYTES];
    MDB_txn *txn;
    int rc;

    if (s == NULL || b == NULL)
        return -BEX_EINVAL;
    snprintf(what, sizeof what, "commit h=%" PRIu64, b->height);
    if ((rc = write_begin(s, &txn, what)) != 0)
        return rc;
    rc = commit_txn(s, txn, b, what);
    return write_end(s, txn, rc, what);
}

/* One put of a small value in a transaction of its own. */
static int put_one(struct store *s, int db, MDB_val *k, MDB_val *d, const char *what)
{
    MDB_txn *txn;
    int rc;

    if ((rc = write_begin(s, &txn, what)) != 0)
        return rc;
    if ((rc = mdb_put(txn, s->dbi[db], k, d, 0)) != 0)
        rc = fail_lmdb(s, rc, what);
    return write_end(s, txn, rc, what);
}

int store_pbft_put(struct store *s, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    MDB_val k = val_of(key, key_len), d = val_of(val, val_len);

    if (s == NULL || key == NULL || key_len == 0 || !bytes_ok(val, val_len))
        return -BEX_EINVAL;
    if (key_len > STORE_PBFT_KEY_BYTES_MAX || val_len > STORE_PBFT_VALUE_BYTES_MAX)
        return fail(s, -BEX_ELIMIT, "store: pbft put: key of %zu or value of %zu bytes (max %d, %u)",
                    key_len, val_len, STORE_PBFT_KEY_BYTES_MAX, STORE_PBFT_VALUE_BYTES_MAX);
    return put_one(s, DB_PBFT, &k, &d, "pbft put");
}

int store_set_view(struct store *s, uint64_t view)
{
    uint8_t v[8];
    MDB_val k = val_of(META_VIEW, strlen(META_VIEW)), d = val_of(v, 8);

    if (s == NULL)
        return -BEX_EINVAL;
    bex_be64_put(v, view);
    return put_one(s, DB_META, &k, &d, "set view");
}

int store_set_checkpoint(struct store *s, uint64_t seq, const uint8_t digest[STORE_HASH_BYTES])
{
    uint8_t v[8 + STORE_HASH_BYTES];
    MDB_val k = val_of(META_CHECKPOINT, strlen(META_CHECKPOINT)), d = val_of(v, sizeof v);

    if (s == NULL || digest == NULL)
        return -BEX_EINVAL;
    bex_be64_put(v, seq);
    memcpy(v + 8, digest, STORE_HASH_BYTES);
    return put_one(s, DB_META, &k, &d, "set checkpoint");
}

int store_put_meta(struct store *s, const uint8_t *name, size_t name_len, const uint8_t *val,
                   size_t val_len)
{
    uint8_t buf[META_USER_LEN + STORE_META_NAME_BYTES_MAX];
    MDB_val k, d = val_of(val, val_len);
    int rc;

    if (s == NULL)
        return -BEX_EINVAL;
    if ((rc = user_meta_key(s, buf, &k, name, name_len, val, val_len, "put meta")) != 0)
        return rc;
    return put_one(s, DB_META, &k, &d, "put meta");
}

/*
 * Each deletion seeks again from `from` rather than stepping the cursor on,
 * so the loop does not depend on where LMDB leaves a cursor after a delete.
 */
static int prune_txn(struct store *s, MDB_txn *txn, size_t *deleted, const uint8_t *from,
                     size_t from_len, const uint8_t *to, size_t to_len)
{
    MDB_cursor *c;
    MDB_val k, d;
    int rc;

    if ((rc = mdb_cursor_open(txn, s->dbi[DB_PBFT], &c)) != 0)
        return fail_lmdb(s, rc, "pbft prune");
    for (;;) {
        k = val_of(from, from_len);
        rc = mdb_cursor_get(c, &k, &d, from_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
        if (rc != 0 || keycmp(k.mv_data, k.mv_size, to, to_len) >= 0)
            break;
        if ((rc = mdb_cursor_del(c, 0)) != 0)
            break;
        (*deleted)++;
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return fail_lmdb(s, rc, "pbft prune");
    return 0;
}

int store_pbft_prune(struct store *s, size_t *deleted, const uint8_t *from, size_t from_len,
                     const uint8_t *to, size_t to_len)
{
    size_t count = 0;
    MDB_txn *txn;
    int rc;

    if (deleted != NULL)
        *deleted = 0;
    if (s == NULL || !bytes_ok(from, from_len) || to == NULL || to_len == 0)
        return -BEX_EINVAL;
    if (from_len > STORE_PBFT_KEY_BYTES_MAX || to_len > STORE_PBFT_KEY_BYTES_MAX)
        return fail(s, -BEX_ELIMIT, "store: pbft prune: key of more than %d bytes",
                    STORE_PBFT_KEY_BYTES_MAX);
    if (keycmp(from, from_len, to, to_len) > 0)
        return fail(s, -BEX_EINVAL, "store: pbft prune: from is after to");
    if ((rc = write_begin(s, &txn, "pbft prune")) != 0)
        return rc;
    rc = prune_txn(s, txn, &count, from, from_len, to, to_len);
    rc = write_end(s, txn, rc, "pbft prune");
    if (rc == 0 && deleted != NULL)
        *deleted = count;
    return rc;
}

int store_batch_begin(struct store *s, struct store_batch **out)
{
    MDB_txn *txn;
    int rc;

    if (s == NULL || out == NULL)
        return -BEX_EINVAL;
    *out = NULL;
    if ((rc = write_begin(s, &txn, "batch")) != 0)
        return rc;
    /* write_begin() holds wmu, so no other batch can be open. */
    BEX_ASSERT(s->batch.txn == NULL);
    s->batch = (struct store_batch){s, txn, 0};
    *out = &s->batch;
    return 0;
}

/* Records the batch's first failure; every later operation returns it. */
static int batch_fail(struct store_batch *b, int rc)
{
    BEX_ASSERT(rc < 0);
    if (b->rc == 0)
        b->rc = rc;
    return b->rc;
}

int store_batch_pbft_put(struct store_batch *b, const uint8_t *key, size_t key_len, const uint8_t *val,
                         size_t val_len)
{
    MDB_val k = val_of(key, key_len), d = val_of(val, val_len);
    int rc;

    BEX_ASSERT(b != NULL && b->txn != NULL);
    if (b->rc != 0)
        return b->rc;
    if (key == NULL || key_len == 0 || !bytes_ok(val, val_len))
        return batch_fail(b, -BEX_EINVAL);
    if (key_len > STORE_PBFT_KEY_BYTES_MAX || val_len > STORE_PBFT_VALUE_BYTES_MAX)
        return batch_fail(b, fail(b->s, -BEX_ELIMIT,
                                  "store: pbft put: key of %zu or value of %zu bytes (max %d, %u)", key_len,
                                  val_len, STORE_PBFT_KEY_BYTES_MAX, STORE_PBFT_VALUE_BYTES_MAX));
    if ((rc = mdb_put(b->txn, b->s->dbi[DB_PBFT], &k, &d, 0)) != 0)
        return batch_fail(b, fail_lmdb(b->s, rc, "pbft put"));
    return 0;
}

int store_batch_pbft_prune(struct store_batch *b, size_t *deleted, const uint8_t *from, size_t from_len,
                           const uint8_t *to, size_t to_len)
{
    size_t count = 0;
    int rc;

    BEX_ASSERT(b != NULL && b->txn != NULL);
    if (deleted != NULL)
        *deleted = 0;
    if (b->rc != 0)
        return b->rc;
    if (!bytes_ok(from, from_len) || to == NULL || to_len == 0)
        return batch_fail(b, -BEX_EINVAL);
    if (from_len > STORE_PBFT_KEY_BYTES_MAX || to_len > STORE_PBFT_KEY_BYTES_MAX)
        return batch_fail(b, fail(b->s, -BEX_ELIMIT, "store: pbft prune: key of more than %d bytes",
                                  STORE_PBFT_KEY_BYTES_MAX));
    if (keycmp(from, from_len, to, to_len) > 0)
        return batch_fail(b, fail(b->s, -BEX_EINVAL, "store: pbft prune: from is after to"));
    if ((rc = prune_txn(b->s, b->txn, &count, from, from_len, to, to_len)) != 0)
        return batch_fail(b, rc);
    if (deleted != NULL)
        *deleted = count;
    return 0;
}

int store_batch_checkpoint(struct store_batch *b, uint64_t seq, const uint8_t digest[STORE_HASH_BYTES])
{
    uint8_t v[8 + STORE_HASH_BYTES];
    MDB_val k = val_of(META_CHECKPOINT, strlen(META_CHECKPOINT)), d = val_of(v, sizeof v);
    int rc;

    BEX_ASSERT(b != NULL && b->txn != NULL);
    if (b->rc != 0)
        return b->rc;
    if (digest == NULL)
        return batch_fail(b, -BEX_EINVAL);
    bex_be64_put(v, seq);
    memcpy(v + 8, digest, STORE_HASH_BYTES);
    if ((rc = mdb_put(b->txn, b->s->dbi[DB_META], &k, &d, 0)) != 0)
        return batch_fail(b, fail_lmdb(b->s, rc, "set checkpoint"));
    return 0;
}

int store_batch_block(struct store_batch *b, const struct store_block *blk)
{
    char what[WHAT_BYTES];
    int rc;

    BEX_ASSERT(b != NULL && b->txn != NULL);
    if (b->rc != 0)
        return b->rc;
    if (blk == NULL)
        return batch_fail(b, -BEX_EINVAL);
    snprintf(what, sizeof what, "commit h=%" PRIu64, blk->height);
    if ((rc = commit_txn(b->s, b->txn, blk, what)) != 0)
        return batch_fail(b, rc);
    return 0;
}

int store_batch_commit(struct store_batch *b)
{
    struct store *s;
    MDB_txn *txn;

    BEX_ASSERT(b != NULL && b->txn != NULL);
    s = b->s;
    txn = b->txn;
    b->txn = NULL;
    return write_end(s, txn, b->rc, "batch");
}

void store_batch_abort(struct store_batch *b)
{
    MDB_txn *txn;

    if (b == NULL || b->txn == NULL)
        return;
    txn = b->txn;
    b->txn = NULL;
    (void)write_end(b->s, txn, -BEX_ECLOSED, "batch");
}

int store_pbft_iter(struct store *s, store_pbft_fn fn, void *arg)
{
    struct store_read *r = NULL;
    MDB_cursor *c = NULL;
    MDB_val k, d;
    int rc, mrc;

    if (s == NULL || fn == NULL)
        return -BEX_EINVAL;
    if ((rc = store_read_begin(s, &r)) != 0)
        return rc;
    if ((mrc = mdb_cursor_open(r->txn, s->dbi[DB_PBFT], &c)) != 0) {
        rc = lmdb_code(mrc);
        goto fail;
    }
    for (mrc = mdb_cursor_get(c, &k, &d, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if ((rc = fn(arg, k.mv_data, k.mv_size, d.mv_data, d.mv_size)) != 0)
            goto fail;
    }
    if (mrc != MDB_NOTFOUND)
        rc = lmdb_code(mrc);
fail:
    if (c != NULL)
        mdb_cursor_close(c);
    store_read_end(r);
    return rc;
}

/* ------------------------------------------------------------- lifecycle */

static int open_fail(char *err, size_t err_size, int code, const char *fmt, ...) BEX_PRINTF(4, 5);
static int open_fail(char *err, size_t err_size, int code, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && err_size > 0) {
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int errno_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? -BEX_ENOSPC : e == ENOMEM ? -BEX_ENOMEM : -BEX_EIO;
}

/* A store without a schema version must be new: nothing else may be there. */
static int check_schema(struct store *s, MDB_txn *txn, const char *dir, char *err, size_t err_size)
{
    MDB_val k = val_of(META_SCHEMA, strlen(META_SCHEMA)), d;
    MDB_stat st;
    uint8_t v[4];
    int rc = mdb_get(txn, s->dbi[DB_META], &k, &d);

    if (rc == 0) {
        if (d.mv_size != 4)
            return open_fail(err, err_size, -BEX_ECORRUPT, "store: %s: malformed schema version", dir);
        if (bex_be32_get(d.mv_data) != STORE_SCHEMA_VERSION)
            return open_fail(err, err_size, -BEX_ESTATE,
                             "store: %s: schema version %" PRIu32 ", this build reads %u", dir,
                             bex_be32_get(d.mv_data), STORE_SCHEMA_VERSION);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
    for (int i = 0; i < DB_COUNT; i++) {
        if ((rc = mdb_stat(txn, s->dbi[i], &st)) != 0)
            return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
        if (st.ms_entries != 0)
            return open_fail(err, err_size, -BEX_ECORRUPT,
                             "store: %s: data without a schema version", dir);
    }
    bex_be32_put(v, STORE_SCHEMA_VERSION);
    if ((rc = put_meta_raw(txn, s->dbi[DB_META], META_SCHEMA, v, 4)) != 0)
        return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
    return 0;
}

/* The last block and certificate must both be at the meta height. */
static int check_height(struct store *s, MDB_txn *txn, const char *dir, char *err, size_t err_size)
{
    static const int dbs[] = {DB_BLOCKS, DB_CERTS};
    uint64_t height;
    int rc;

    if ((rc = meta_u64(txn, s->dbi[DB_META], META_HEIGHT, &height)) != 0)
        return open_fail(err, err_size, rc, "store: %s: cannot read meta height", dir);
    for (size_t i = 0; i < BEX_ARRAY_LEN(dbs); i++) {
        MDB_cursor *c;
        MDB_val k, d;
        uint64_t last = 0;

        if ((rc = mdb_cursor_open(txn, s->dbi[dbs[i]], &c)) != 0)
            return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
        rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
        mdb_cursor_close(c);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
        if (rc == 0 && k.mv_size != 8)
            return open_fail(err, err_size, -BEX_ECORRUPT, "store: %s: malformed %s key", dir,
                             db_names[dbs[i]]);
        if (rc == 0)
            last = bex_be64_get(k.mv_data);
        if (last != height)
            return open_fail(err, err_size, -BEX_ECORRUPT,
                             "store: %s: last %s entry %" PRIu64 " but meta height %" PRIu64, dir,
                             db_names[dbs[i]], last, height);
    }
    return 0;
}

/* Opens the databases and sets *map_bytes to the size store_resize() recorded, or 0. */
static int open_dbs(struct store *s, uint64_t *map_bytes, const char *dir, char *err, size_t err_size)
{
    MDB_txn *txn;
    int rc;

    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
    for (int i = 0; i < DB_COUNT; i++) {
        if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i])) != 0) {
            rc = open_fail(err, err_size, lmdb_code(rc), "store: %s: database %s: %s", dir,
                           db_names[i], lmdb_text(rc));
            goto fail;
        }
    }
    if ((rc = check_schema(s, txn, dir, err, err_size)) != 0 ||
        (rc = check_height(s, txn, dir, err, err_size)) != 0)
        goto fail;
    if ((rc = meta_u64(txn, s->dbi[DB_META], META_MAP_BYTES, map_bytes)) != 0) {
        rc = open_fail(err, err_size, rc, "store: %s: malformed recorded map size", dir);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        return open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
    return 0;
fail:
    mdb_txn_abort(txn);
    return rc;
}

static int open_lock(struct store *s, const char *dir, char *err, size_t err_size)
{
    char path[4096];

    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return open_fail(err, err_size, errno_code(errno), "store: mkdir %s: %s", dir, strerror(errno));
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, LOCK_FILE) >= sizeof path)
        return open_fail(err, err_size, -BEX_EINVAL, "store: path too long: %s", dir);
    if ((s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return open_fail(err, err_size, errno_code(errno), "store: %s: %s", path, strerror(errno));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return open_fail(err, err_size, -BEX_ESTATE, "store: %s is in use by another opener", dir);
        return open_fail(err, err_size, -BEX_EIO, "store: lock %s: %s", path, strerror(errno));
    }
    return 0;
}

int store_open(struct store **out, const char *dir, const struct store_options *opt, char *err,
               size_t err_size)
{
    struct store_options o = {0};
    struct store *s = NULL;
    uint64_t recorded;
    int rc, keymax;

    if (err != NULL && err_size > 0)
        err[0] = '\0';
    if (out == NULL)
        return open_fail(err, err_size, -BEX_EINVAL, "store: NULL argument");
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return open_fail(err, err_size, -BEX_EINVAL, "store: no directory");
    if (opt != NULL)
        o = *opt;
    if (o.map_bytes == 0)
        o.map_bytes = STORE_MAP_BYTES_DEFAULT;
    if (o.readers_max == 0)
        o.readers_max = STORE_READERS_DEFAULT;
    if (o.map_bytes < STORE_MAP_BYTES_MIN || o.map_bytes > STORE_MAP_BYTES_MAX ||
        o.readers_max > STORE_READERS_MAX || o.trim_ms > STORE_TRIM_MS_MAX)
        return open_fail(err, err_size, -BEX_EINVAL, "store: map size, reader count or trim period out of range");
    if ((s = calloc(1, sizeof *s)) == NULL)
        return open_fail(err, err_size, -BEX_ENOMEM, "store: out of memory");
    s->lock_fd = -1;
    s->statm_fd = -1;
    if (pthread_mutex_init(&s->wmu, NULL) != 0) {
        free(s);
        return open_fail(err, err_size, -BEX_ENOMEM, "store: cannot create a mutex");
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        pthread_mutex_destroy(&s->wmu);
        free(s);
        return open_fail(err, err_size, -BEX_ENOMEM, "store: cannot create a mutex");
    }
    s->mu_ready = true;
    if ((rc = open_lock(s, dir, err, err_size)) != 0)
        goto fail;
    if ((rc = mdb_env_create(&s->env)) != 0 || (rc = mdb_env_set_maxdbs(s->env, DB_COUNT)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, o.map_bytes)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, o.readers_max)) != 0 ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS | (o.no_sync ? MDB_NOSYNC : 0), 0600)) != 0) {
        rc = open_fail(err, err_size, lmdb_code(rc), "store: %s: %s", dir, lmdb_text(rc));
        goto fail;
    }
    if ((keymax = mdb_env_get_maxkeysize(s->env)) < STORE_LMDB_KEY_BYTES) {
        rc = open_fail(err, err_size, -BEX_ESTATE, "store: LMDB allows keys of %d bytes, bex needs %d",
                       keymax, STORE_LMDB_KEY_BYTES);
        goto fail;
    }
    if ((rc = open_dbs(s, &recorded, dir, err, err_size)) != 0)
        goto fail;
    if (recorded > o.map_bytes && recorded <= STORE_MAP_BYTES_MAX &&
        (rc = mdb_env_set_mapsize(s->env, recorded)) != 0) {
        rc = open_fail(err, err_size, lmdb_code(rc), "store: %s: map of %" PRIu64 " bytes: %s", dir,
                       recorded, lmdb_text(rc));
        goto fail;
    }
    if (o.trim_ms > 0 && (rc = start_trimmer(s, o.trim_ms, o.trim_above_bytes)) != 0) {
        rc = open_fail(err, err_size, rc, "store: cannot start the trimmer thread");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    store_close(s);
    return rc;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    BEX_ASSERT(s->readers == 0);
    stop_trimmer(s);
    if (s->env != NULL)
        mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    if (s->mu_ready) {
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->wmu);
    }
    free(s);
}

int store_error(struct store *s, char *msg, size_t msg_size)
{
    int rc;

    if (s == NULL)
        return -BEX_EINVAL;
    lock(&s->mu);
    rc = s->sticky;
    if (msg != NULL && msg_size > 0)
        snprintf(msg, msg_size, "%s", s->msg);
    unlock(&s->mu);
    return rc;
}

/* Remaps with the lock held; see store_resize(). */
static int remap(struct store *s, size_t new_map_bytes)
{
    MDB_envinfo info;
    int mrc;

    /* Only a full map is cured by a larger one. */
    if (s->sticky != 0 && s->sticky != -BEX_EMAPFULL)
        return s->sticky;
    if (s->readers > 0)
        return -BEX_ESTATE;
    if ((mrc = mdb_env_info(s->env, &info)) != 0)
        return lmdb_code(mrc);
    if (new_map_bytes <= info.me_mapsize)
        return -BEX_EINVAL;
    s->map_start = s->map_end = 0;
    if ((mrc = mdb_env_set_mapsize(s->env, new_map_bytes)) == 0) {
        if (s->sticky == -BEX_EMAPFULL)
            s->sticky = 0;
        return 0;
    }
    /*
     * LMDB unmapped the file before it failed to map it again: restore the
     * old size, or nothing may touch the environment any more.
     */
    if (mdb_env_set_mapsize(s->env, info.me_mapsize) != 0) {
        snprintf(s->msg, sizeof s->msg, "store: resize to %zu bytes: %s; the map is lost",
                 new_map_bytes, lmdb_text(mrc));
        s->unmapped = true;
        s->sticky = -BEX_EIO;
        return -BEX_EIO;
    }
    return lmdb_code(mrc);
}

/*
 * The new size is also recorded in meta, because LMDB lets the size given at
 * open win over the one in the file: a node restarted with its old
 * configuration would otherwise be full again at once.
 */
int store_resize(struct store *s, size_t new_map_bytes)
{
    uint8_t v[8];
    MDB_txn *txn;
    int rc;

    if (s == NULL || new_map_bytes > STORE_MAP_BYTES_MAX)
        return -BEX_EINVAL;
    lock(&s->wmu);
    lock(&s->mu);
    rc = remap(s, new_map_bytes);
    unlock(&s->mu);
    unlock(&s->wmu);
    if (rc != 0)
        return rc;
    if ((rc = write_begin(s, &txn, "resize")) != 0)
        return rc;
    bex_be64_put(v, new_map_bytes);
    if ((rc = put_meta_raw(txn, s->dbi[DB_META], META_MAP_BYTES, v, 8)) != 0)
        rc = fail_lmdb(s, rc, "resize");
    return write_end(s, txn, rc, "resize");
}

/* ------------------------------------------------------------- reads */

int store_read_begin(struct store *s, struct store_read **out)
{
    struct store_read *r;
    int rc;

    if (s == NULL || out == NULL)
        return -BEX_EINVAL;
    *out = NULL;
    if ((r = calloc(1, sizeof *r)) == NULL)
        return -BEX_ENOMEM;
    r->s = s;
    /* Under mu, so that store_resize() cannot remap while a snapshot starts. */
    lock(&s->mu);
    rc = s->unmapped ? -BEX_EIO : lmdb_code(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn));
    if (rc == 0)
        s->readers++;
    unlock(&s->mu);
    if (rc != 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void store_read_end(struct store_read *r)
{
    if (r == NULL)
        return;
    mdb_txn_abort(r->txn);
    lock(&r->s->mu);
    BEX_ASSERT(r->s->readers > 0);
    r->s->readers--;
    unlock(&r->s->mu);
    free(r);
}

static int get(struct store_read *r, int db, const void *key, size_t key_len, MDB_val *d)
{
    MDB_val k = val_of(key, key_len);

    /* A block's worth of random reads (its receipts, say) faults in folios as a commit does. */
    if (atomic_fetch_add_explicit(&r->s->gets, 1, memory_order_relaxed) % TRIM_CHECK_GETS == TRIM_CHECK_GETS - 1)
        maybe_trim(r->s);
    return lmdb_code(mdb_get(r->txn, r->s->dbi[db], &k, d));
}

static int get_bytes(struct store_read *r, int db, const void *key, size_t key_len,
                     const uint8_t **val, size_t *val_len)
{
    MDB_val d;
    int rc = get(r, db, key, key_len, &d);

    if (rc != 0)
        return rc;
    *val = d.mv_data;
    *val_len = d.mv_size;
    return 0;
}

int store_get_state(struct store_read *r, const uint8_t **val, size_t *val_len, const uint8_t *key,
                    size_t key_len)
{
    if (r == NULL || val == NULL || val_len == NULL || key == NULL || key_len == 0 ||
        key_len > STORE_KEY_BYTES_MAX)
        return -BEX_EINVAL;
    return get_bytes(r, DB_STATE, key, key_len, val, val_len);
}

int store_get_block(struct store_read *r, const uint8_t **record, size_t *record_len, uint64_t height)
{
    uint8_t k[8];

    if (r == NULL || record == NULL || record_len == NULL)
        return -BEX_EINVAL;
    bex_be64_put(k, height);
    return get_bytes(r, DB_BLOCKS, k, 8, record, record_len);
}

int store_get_cert(struct store_read *r, const uint8_t **cert, size_t *cert_len, uint64_t height)
{
    uint8_t k[8];

    if (r == NULL || cert == NULL || cert_len == NULL)
        return -BEX_EINVAL;
    bex_be64_put(k, height);
    return get_bytes(r, DB_CERTS, k, 8, cert, cert_len);
}

int store_get_receipt(struct store_read *r, const uint8_t **receipt, size_t *receipt_len,
                      const uint8_t tx_id[STORE_TXID_BYTES])
{
    if (r == NULL || receipt == NULL || receipt_len == NULL || tx_id == NULL)
        return -BEX_EINVAL;
    return get_bytes(r, DB_RECEIPTS, tx_id, STORE_TXID_BYTES, receipt, receipt_len);
}

int store_get_meta(struct store_read *r, const uint8_t **val, size_t *val_len, const uint8_t *name,
                   size_t name_len)
{
    uint8_t buf[META_USER_LEN + STORE_META_NAME_BYTES_MAX];

    if (r == NULL || val == NULL || val_len == NULL || name == NULL || name_len == 0 ||
        name_len > STORE_META_NAME_BYTES_MAX)
        return -BEX_EINVAL;
    memcpy(buf, META_USER, META_USER_LEN);
    memcpy(buf + META_USER_LEN, name, name_len);
    return get_bytes(r, DB_META, buf, META_USER_LEN + name_len, val, val_len);
}

int store_get_height(struct store_read *r, uint64_t *height)
{
    if (r == NULL || height == NULL)
        return -BEX_EINVAL;
    return meta_u64(r->txn, r->s->dbi[DB_META], META_HEIGHT, height);
}

static int get_hash(struct store_read *r, const char *name, uint8_t out[STORE_HASH_BYTES])
{
    MDB_val d;
    int rc;

    if (r == NULL || out == NULL)
        return -BEX_EINVAL;
    if ((rc = get(r, DB_META, name, strlen(name), &d)) != 0)
        return rc;
    if (d.mv_size != STORE_HASH_BYTES)
        return -BEX_ECORRUPT;
    memcpy(out, d.mv_data, STORE_HASH_BYTES);
    return 0;
}

int store_get_root(struct store_read *r, uint8_t root[STORE_HASH_BYTES])
{
    return get_hash(r, META_ROOT, root);
}

int store_get_hash(struct store_read *r, uint8_t hash[STORE_HASH_BYTES])
{
    return get_hash(r, META_HASH, hash);
}

int store_get_view(struct store_read *r, uint64_t *view)
{
    if (r == NULL || view == NULL)
        return -BEX_EINVAL;
    return meta_u64(r->txn, r->s->dbi[DB_META], META_VIEW, view);
}

int store_get_checkpoint(struct store_read *r, uint64_t *seq, uint8_t digest[STORE_HASH_BYTES])
{
    MDB_val d;
    int rc;

    if (r == NULL || seq == NULL || digest == NULL)
        return -BEX_EINVAL;
    if ((rc = get(r, DB_META, META_CHECKPOINT, strlen(META_CHECKPOINT), &d)) != 0)
        return rc;
    if (d.mv_size != 8 + STORE_HASH_BYTES)
        return -BEX_ECORRUPT;
    *seq = bex_be64_get(d.mv_data);
    memcpy(digest, (const uint8_t *)d.mv_data + 8, STORE_HASH_BYTES);
    return 0;
}

/*
 * LMDB does not tell where it mapped the file (me_mapaddr is only set for a
 * fixed map), so the mapping is found once in /proc/self/maps by the data
 * file's device and inode, and kept until remap() moves it.
 */
static int find_map(struct store *s)
{
    char line[512];
    struct stat st;
    FILE *fp;
    int fd, found = 0;

    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0 || (fp = fopen("/proc/self/maps", "r")) == NULL)
        return -BEX_EIO;
    while (fgets(line, sizeof line, fp) != NULL) {
        unsigned long start, end, off, ino;
        unsigned maj, mnr;
        char perms[8];

        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &start, &end, perms, &off, &maj, &mnr, &ino) != 7)
            continue;
        if (ino != (unsigned long)st.st_ino || maj != major(st.st_dev) || mnr != minor(st.st_dev) || end <= start)
            continue;
        s->map_start = start;
        s->map_end = end;
        found++;
    }
    fclose(fp);
    /* LMDB maps the file once; anything else is not a map this code knows. */
    if (found != 1) {
        s->map_start = s->map_end = 0;
        return -BEX_EIO;
    }
    return 0;
}

/*
 * Under mu, which store_resize() holds while it moves the map; not under the
 * write lock, which a writer holds for a whole commit and fdatasync.
 */
static int trim_locked(struct store *s)
{
    int rc = 0;

    if (s->unmapped)
        rc = -BEX_EIO;
    else if (s->map_end == 0)
        rc = find_map(s);
    if (rc == 0 && madvise((void *)s->map_start, s->map_end - s->map_start, MADV_DONTNEED) != 0)
        rc = -BEX_EIO;
    return rc;
}

int store_trim(struct store *s)
{
    int rc;

    if (s == NULL)
        return -BEX_EINVAL;
    lock(&s->mu);
    rc = trim_locked(s);
    unlock(&s->mu);
    return rc;
}

/*
 * The process's file-backed resident memory in bytes (the "shared" field of
 * /proc/self/statm: the store's mapped pages, and the program's own code), or
 * SIZE_MAX when it cannot be read, so that the caller trims.
 */
static size_t resident_file_bytes(int fd)
{
    char buf[256];
    unsigned long size, resident, shared;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);

    if (n <= 0)
        return SIZE_MAX;
    buf[n] = '\0';
    if (sscanf(buf, "%lu %lu %lu", &size, &resident, &shared) != 3)
        return SIZE_MAX;
    return (size_t)shared * (size_t)sysconf(_SC_PAGESIZE);
}

/* Whether the file-backed resident set has reached trim_above (which is not 0). */
static bool over_trim_threshold(struct store *s)
{
    return resident_file_bytes(s->statm_fd) >= s->trim_above;
}

/*
 * Every trim_ms, gives the mapped pages back once they pass trim_above: so
 * the pages a burst of reads maps are gone within a period, while the hot
 * pages (the trees' upper levels) are not unmapped and faulted in again
 * needlessly; each fault maps a whole folio, which costs CPU.
 */
static void *trimmer_main(void *arg)
{
    struct store *s = arg;
    struct timespec at;

    lock(&s->mu);
    clock_gettime(CLOCK_MONOTONIC, &at);
    while (!s->trimmer_stop) {
        at.tv_nsec += (long)s->trim_ms * 1000000L;
        at.tv_sec += at.tv_nsec / 1000000000L;
        at.tv_nsec %= 1000000000L;
        while (!s->trimmer_stop && pthread_cond_timedwait(&s->trim_cv, &s->mu, &at) == 0)
            ;
        /* A map lost to a failed resize stays lost; the readers report it. */
        if (!s->trimmer_stop && (s->trim_above == 0 || over_trim_threshold(s)))
            (void)trim_locked(s);
        clock_gettime(CLOCK_MONOTONIC, &at);
    }
    unlock(&s->mu);
    return NULL;
}

/*
 * A block's random inserts read a page per put, and each read maps a folio,
 * faster than the trimmer thread looks: so a commit looks too, every
 * TRIM_CHECK_PUTS puts, and trims past the same threshold. Under wmu.
 */
static void check_trim(struct store *s)
{
    if (++s->puts_unchecked < TRIM_CHECK_PUTS)
        return;
    s->puts_unchecked = 0;
    maybe_trim(s);
}

/* Trims when the trimmer's threshold is passed; any thread, mu not held. */
static void maybe_trim(struct store *s)
{
    if (!s->trimmer_on || s->trim_above == 0 || !over_trim_threshold(s))
        return;
    lock(&s->mu);
    (void)trim_locked(s);
    unlock(&s->mu);
}

static int start_trimmer(struct store *s, unsigned trim_ms, size_t trim_above)
{
    pthread_condattr_t ca;
    int rc;

    if (trim_above > 0 && (s->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) < 0)
        return -BEX_EIO;
    s->trim_above = trim_above;
    if (pthread_condattr_init(&ca) != 0)
        return -BEX_ENOMEM;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&s->trim_cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!rc)
        return -BEX_ENOMEM;
    s->trim_cv_ready = true;
    s->trim_ms = trim_ms;
    if (pthread_create(&s->trimmer, NULL, trimmer_main, s) != 0)
        return -BEX_ENOMEM;
    s->trimmer_on = true;
    return 0;
}

static void stop_trimmer(struct store *s)
{
    if (s->trimmer_on) {
        lock(&s->mu);
        s->trimmer_stop = true;
        pthread_cond_signal(&s->trim_cv);
        unlock(&s->mu);
        pthread_join(s->trimmer, NULL);
        s->trimmer_on = false;
    }
    if (s->trim_cv_ready) {
        pthread_cond_destroy(&s->trim_cv);
        s->trim_cv_ready = false;
    }
    if (s->statm_fd >= 0) {
        close(s->statm_fd);
        s->statm_fd = -1;
    }
}

int store_get_stats(struct store_read *r, struct store_stats *out)
{
    uint64_t *counts[DB_COUNT];
    MDB_envinfo info;
    MDB_stat st;
    int rc;

    if (r == NULL || out == NULL)
        return -BEX_EINVAL;
    counts[DB_BLOCKS] = &out->blocks;
    counts[DB_CERTS] = &out->certs;
    counts[DB_RECEIPTS] = &out->receipts;
    counts[DB_STATE] = &out->state;
    counts[DB_HISTORY] = &out->history;
    counts[DB_META] = &out->meta;
    counts[DB_PBFT] = &out->pbft;
    for (int i = 0; i < DB_COUNT; i++) {
        if ((rc = mdb_stat(r->txn, r->s->dbi[i], &st)) != 0)
            return lmdb_code(rc);
        *counts[i] = st.ms_entries;
    }
    if ((rc = mdb_env_info(r->s->env, &info)) != 0 || (rc = mdb_env_stat(r->s->env, &st)) != 0)
        return lmdb_code(rc);
    out->map_bytes = info.me_mapsize;
    out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    return 0;
}

static int scan_args(struct store_read *r, const void *out, size_t cap, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (r == NULL || out == NULL || n == NULL || cap == 0)
        return -BEX_EINVAL;
    return cap > STORE_SCAN_MAX ? -BEX_ELIMIT : 0;
}

int store_scan_state(struct store_read *r, struct store_kv *out, size_t cap, size_t *n, bool *more,
                     const uint8_t *prefix, size_t prefix_len, const uint8_t *after, size_t after_len)
{
    MDB_cursor *c;
    MDB_val k, d;
    MDB_cursor_op op = MDB_SET_RANGE;
    bool skip_after = false;
    int rc;

    if (more != NULL)
        *more = false;
    if ((rc = scan_args(r, out, cap, n)) != 0)
        return rc;
    if (!bytes_ok(prefix, prefix_len) || !bytes_ok(after, after_len) ||
        prefix_len > STORE_KEY_BYTES_MAX || after_len > STORE_KEY_BYTES_MAX)
        return -BEX_EINVAL;
    /* Start at whichever of prefix and after sorts later. */
    if (after_len > 0 && keycmp(after, after_len, prefix, prefix_len) >= 0) {
        k = val_of(after, after_len);
        skip_after = true;
    } else if (prefix_len > 0) {
        k = val_of(prefix, prefix_len);
    } else {
        op = MDB_FIRST;
    }
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_STATE], &c)) != 0)
        return lmdb_code(rc);
    rc = mdb_cursor_get(c, &k, &d, op);
    if (rc == 0 && skip_after && keycmp(k.mv_data, k.mv_size, after, after_len) == 0)
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    for (; rc == 0 && has_prefix(&k, prefix, prefix_len); rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (*n == cap) {
            if (more != NULL)
                *more = true;
            break;
        }
        out[*n] = (struct store_kv){k.mv_data, k.mv_size, d.mv_data, d.mv_size};
        (*n)++;
    }
    mdb_cursor_close(c);
    BEX_ASSERT(*n <= cap);
    return rc == MDB_NOTFOUND ? 0 : lmdb_code(rc);
}

int store_scan_history(struct store_read *r, struct store_history_item *out, size_t cap, size_t *n,
                       bool *more, const uint8_t *key, size_t key_len,
                       const struct store_history_pos *before)
{
    uint8_t seek[STORE_HISTORY_KEY_BYTES_MAX];
    MDB_cursor *c;
    MDB_val k, d;
    size_t prefix_len = 2 + key_len, len;
    int rc;

    if (more != NULL)
        *more = false;
    if ((rc = scan_args(r, out, cap, n)) != 0)
        return rc;
    if (key == NULL || key_len == 0 || key_len > STORE_KEY_BYTES_MAX)
        return -BEX_EINVAL;
    /*
     * Heights stop at STORE_HEIGHT_MAX, so "before (UINT64_MAX, any index)"
     * is after every entry of the key.
     */
    if (before != NULL)
        len = history_key(seek, key, key_len, before->height, before->index);
    else
        len = history_key(seek, key, key_len, UINT64_MAX, UINT32_MAX);
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_HISTORY], &c)) != 0)
        return lmdb_code(rc);
    /* The first entry at or after the position; the one before it is the newest wanted. */
    k = val_of(seek, len);
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(c, &k, &d, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
    for (; rc == 0 && has_prefix(&k, seek, prefix_len); rc = mdb_cursor_get(c, &k, &d, MDB_PREV)) {
        const uint8_t *p = k.mv_data;

        if (k.mv_size != prefix_len + 12 || d.mv_size != STORE_TXID_BYTES) {
            rc = MDB_CORRUPTED;
            break;
        }
        if (*n == cap) {
            if (more != NULL)
                *more = true;
            break;
        }
        out[*n] = (struct store_history_item){bex_be64_get(p + prefix_len), bex_be32_get(p + prefix_len + 8),
                                              d.mv_data};
        (*n)++;
    }
    mdb_cursor_close(c);
    BEX_ASSERT(*n <= cap);
    return rc == MDB_NOTFOUND ? 0 : lmdb_code(rc);
}

int store_scan_blocks(struct store_read *r, struct store_block_item *out, size_t cap, size_t *n,
                      bool *more, uint64_t from, uint64_t to)
{
    uint8_t seek[8];
    MDB_cursor *c;
    MDB_val k, d, cd;
    int rc;

    if (more != NULL)
        *more = false;
    if ((rc = scan_args(r, out, cap, n)) != 0)
        return rc;
    if (from > to)
        return 0;
    bex_be64_put(seek, from);
    k = val_of(seek, 8);
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_BLOCKS], &c)) != 0)
        return lmdb_code(rc);
    for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        uint64_t h;

        if (k.mv_size != 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        if ((h = bex_be64_get(k.mv_data)) > to)
            break;
        if (*n == cap) {
            if (more != NULL)
                *more = true;
            break;
        }
        /* A block without its certificate breaks the commit invariant. */
        if ((rc = mdb_get(r->txn, r->s->dbi[DB_CERTS], &k, &cd)) != 0) {
            rc = rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
            break;
        }
        out[*n] = (struct store_block_item){h, d.mv_data, d.mv_size, cd.mv_data, cd.mv_size};
        (*n)++;
    }
    mdb_cursor_close(c);
    BEX_ASSERT(*n <= cap);
    return rc == MDB_NOTFOUND ? 0 : lmdb_code(rc);
}
