/*
 * store.h: the durable state of a bex node in one LMDB environment.
 *
 * One data directory holds one LMDB environment with these named databases:
 *
 *   blocks    height (8 bytes BE)            -> encoded bex.BlockRecord
 *   certs     height (8 bytes BE)            -> encoded bex.CommitCert
 *   receipts  tx id (32 bytes)               -> encoded bex.Receipt
 *   state     contract-scoped key bytes      -> value bytes
 *   history   klen (2 BE) || key || height (8 BE) || tx index (4 BE) -> tx id
 *   meta      name                           -> small value (schema version,
 *             height, state root, last block hash, view, stable checkpoint,
 *             and free-form entries of the node)
 *   pbft      opaque key bytes               -> opaque bytes (own signed votes)
 *
 * The history key starts with the length of the state key so that the
 * entries of one key are contiguous: with a bare key prefix, the entries of
 * "ab" would interleave with those of every longer key starting with "ab".
 *
 * Writes. A block lands with store_commit_block() in ONE write transaction:
 * block record, certificate, receipts, state writes, history and meta
 * (height, root, hash, extra entries). Either all of it is durable or none of
 * it is. The other writes (votes, view, checkpoint, named meta) are each one
 * small transaction of their own. Writes may come from any thread; the store
 * serialises them.
 *
 * Reads. store_read_begin() opens a read-only snapshot (an LMDB read
 * transaction). A snapshot never blocks a writer and never sees a half
 * committed block: it keeps seeing the state of the moment it began until
 * store_read_end(). Every pointer a getter or scan returns is borrowed from
 * the memory map and stays valid until store_read_end() of that snapshot. A
 * snapshot may be begun on one thread and used or ended on another (the
 * environment is opened with MDB_NOTLS), but only by one thread at a time.
 *
 * Errors. Every function returns 0 or a negative BEX_E* code; each lists the
 * codes it can return. A failed write leaves nothing behind. Some write
 * failures are FATAL and STICKY: once one happens, every later write returns
 * the same code (with its original message) until it is cleared, while reads
 * keep working:
 *
 *   -BEX_EMAPFULL  the LMDB map is full. Cleared by store_resize() with a
 *                  larger map.
 *   -BEX_ENOSPC    the disk (or quota, or file size limit) refused a write.
 *   -BEX_EIO       the operating system reported an I/O error, or LMDB
 *                  declared the environment unusable (MDB_PANIC). LMDB
 *                  also reports a write cut short as EIO; when the data
 *                  file is then at the file size limit or its filesystem
 *                  has less than 8 MiB free, the store reports
 *                  -BEX_ENOSPC instead. Every -BEX_ENOSPC message says
 *                  "disk full".
 *   -BEX_ECORRUPT  LMDB or the store found inconsistent data on disk.
 *
 * -BEX_ENOSPC, -BEX_EIO and -BEX_ECORRUPT are cleared only by store_close()
 * and a new store_open(), which rereads the environment from disk: after the
 * operator freed space, the node closes and reopens its store. store_error()
 * reports the sticky state and the message of the last failure.
 *
 * Durability. With the default options every write is on stable storage
 * (fdatasync) when its call returns. With no_sync, commits stay atomic and
 * survive a crash of the process (the page cache keeps them), but a crash of
 * the machine may lose recent commits or corrupt the store: for tests and
 * benchmarks only.
 *
 * One process per data directory: store_open() takes an exclusive lock on
 * the file "store.lock" in the directory and refuses a second opener, in
 * this process or another one.
 */
#ifndef BEX_STORE_H
#define BEX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bex.h"

/* ------------------------------------------------------------- limits */

/* The schema version this build reads and writes, kept in meta. */
#define STORE_SCHEMA_VERSION 1u

#define STORE_HASH_BYTES 32
#define STORE_TXID_BYTES 32

/* The largest height a block may have; larger heights are -BEX_ELIMIT. */
#define STORE_HEIGHT_MAX ((uint64_t)INT64_MAX)

/*
 * LMDB's default maximum key size (MDB_MAXKEYSIZE). store_open() refuses an
 * LMDB built with a smaller mdb_env_get_maxkeysize(), so every key within the
 * maxima below is a valid LMDB key.
 */
#define STORE_LMDB_KEY_BYTES 511

#define STORE_KEY_BYTES_MAX 448 /* a state key, at least 1 byte */
#define STORE_HISTORY_KEY_BYTES_MAX (2 + STORE_KEY_BYTES_MAX + 8 + 4)
#define STORE_VALUE_BYTES_MAX (4u << 20)    /* a state value */
#define STORE_RECORD_BYTES_MAX (64u << 20)  /* an encoded BlockRecord, at least 1 byte */
#define STORE_CERT_BYTES_MAX (1u << 20)     /* an encoded CommitCert */
#define STORE_RECEIPT_BYTES_MAX (1u << 20)  /* an encoded Receipt */
#define STORE_META_NAME_BYTES_MAX 64        /* a free-form meta name, at least 1 byte */
#define STORE_META_VALUE_BYTES_MAX 4096     /* a free-form meta value */
#define STORE_PBFT_KEY_BYTES_MAX 128        /* a vote key, at least 1 byte */
#define STORE_PBFT_VALUE_BYTES_MAX (1u << 20)
#define STORE_BLOCK_ENTRIES_MAX 65536 /* receipts, writes or history entries per block, each */
#define STORE_BLOCK_META_MAX 64       /* extra meta entries per block */
#define STORE_SCAN_MAX 1024           /* entries one scan call may return */

#define STORE_MAP_BYTES_MIN ((size_t)64 << 10)
#define STORE_MAP_BYTES_DEFAULT ((size_t)4 << 30)
#define STORE_TRIM_MS_MAX 60000
#define STORE_MAP_BYTES_MAX ((size_t)1 << 40)
#define STORE_READERS_DEFAULT 126
#define STORE_READERS_MAX 1024

_Static_assert(sizeof(size_t) >= 8, "the LMDB map needs a 64-bit address space");
_Static_assert(STORE_KEY_BYTES_MAX <= UINT16_MAX, "history keys carry the key length in 2 bytes");
_Static_assert(STORE_HISTORY_KEY_BYTES_MAX <= STORE_LMDB_KEY_BYTES, "history key fits LMDB");
_Static_assert(STORE_PBFT_KEY_BYTES_MAX <= STORE_LMDB_KEY_BYTES, "vote key fits LMDB");
_Static_assert(STORE_META_NAME_BYTES_MAX + 8 <= STORE_LMDB_KEY_BYTES, "meta name fits LMDB");
_Static_assert(STORE_MAP_BYTES_MIN <= STORE_MAP_BYTES_DEFAULT, "default map within limits");
_Static_assert(STORE_MAP_BYTES_DEFAULT <= STORE_MAP_BYTES_MAX, "default map within limits");
_Static_assert(STORE_READERS_DEFAULT <= STORE_READERS_MAX, "default readers within limits");

/* ------------------------------------------------------------- types */

struct store;
struct store_read;

/*
 * Options of store_open(). A zeroed struct (or NULL) means the defaults: a
 * map of STORE_MAP_BYTES_DEFAULT, STORE_READERS_DEFAULT readers, durable
 * commits. The map is the upper bound of the data file, not its size: LMDB
 * grows the file as pages are written. A store once grown by store_resize()
 * opens with the larger of that size and map_bytes.
 */
struct store_options {
    size_t map_bytes;      /* 0 or STORE_MAP_BYTES_MIN..STORE_MAP_BYTES_MAX */
    unsigned readers_max;  /* 0 or 1..STORE_READERS_MAX concurrent snapshots */
    bool no_sync;          /* true: skip fdatasync at commit (tests, benchmarks) */
    unsigned trim_ms;      /* 0, or 1..STORE_TRIM_MS_MAX: a thread looks this often whether to trim */
    size_t trim_above_bytes; /* it calls store_trim() when the process's file-backed RSS is this
                              * large (0: every trim_ms); so do a commit every 64 puts and the
                              * readers every 256 gets, when it is not 0 */
};

/* The receipt of one transaction: stored under its tx id, which must be new. */
struct store_receipt {
    uint8_t tx_id[STORE_TXID_BYTES];
    const uint8_t *bytes; /* encoded bex.Receipt */
    size_t len;
};

/* One state write: put key = val, or delete key (deleting a missing key is not an error). */
struct store_write {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *val; /* ignored when del */
    size_t val_len;
    bool del;
};

/* One provenance entry: tx index (within the block) tx_id touched key. */
struct store_history {
    const uint8_t *key;
    size_t key_len;
    uint32_t index;
    uint8_t tx_id[STORE_TXID_BYTES];
};

/* A free-form named meta value of the node. */
struct store_meta {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *val;
    size_t val_len;
};

/*
 * Everything one block changes. Arrays may be empty (NULL with length 0).
 * Writes apply in array order, so the last write of a key wins.
 */
struct store_block {
    uint64_t height;
    const uint8_t *record; /* encoded bex.BlockRecord */
    size_t record_len;
    const uint8_t *cert;   /* encoded bex.CommitCert */
    size_t cert_len;
    uint8_t hash[STORE_HASH_BYTES];       /* becomes meta "last block hash" */
    uint8_t state_root[STORE_HASH_BYTES]; /* becomes meta "state root" */
    const struct store_receipt *receipts;
    size_t receipts_len;
    const struct store_write *writes;
    size_t writes_len;
    const struct store_history *history;
    size_t history_len;
    const struct store_meta *meta;
    size_t meta_len;
};

/* One entry of a state scan. */
struct store_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *val;
    size_t val_len;
};

/* A position in the history of one key: (height, tx index). */
struct store_history_pos {
    uint64_t height;
    uint32_t index;
};

/* One entry of a history scan. */
struct store_history_item {
    uint64_t height;
    uint32_t index;
    const uint8_t *tx_id; /* STORE_TXID_BYTES bytes */
};

/* One entry of a block scan. */
struct store_block_item {
    uint64_t height;
    const uint8_t *record;
    size_t record_len;
    const uint8_t *cert;
    size_t cert_len;
};

/* Entry counts and space of the environment, for metrics and operators. */
struct store_stats {
    uint64_t blocks, certs, receipts, state, history, meta, pbft; /* entries */
    uint64_t map_bytes;  /* current map size */
    uint64_t used_bytes; /* pages in use times the page size */
};

/*
 * Called once per vote by store_pbft_iter(). The pointers are valid during the
 * call only. Return 0 to continue; any other value stops the iteration and
 * becomes the result of store_pbft_iter().
 */
typedef int (*store_pbft_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                             size_t val_len);

/* ------------------------------------------------------------- lifecycle */

/*
 * Opens (creating if missing) the store in directory dir; the parent of dir
 * must exist. On first open it creates the databases and writes the schema
 * version; later opens check it and the agreement of meta height and the
 * last block. On failure *out is NULL and err (if err_size > 0) holds a
 * message.
 * -BEX_EINVAL   NULL argument or an option out of range.
 * -BEX_ESTATE   another opener holds the directory, the schema version on
 *               disk is not STORE_SCHEMA_VERSION, or LMDB's maximum key
 *               size is below STORE_LMDB_KEY_BYTES.
 * -BEX_ECORRUPT meta is malformed or disagrees with the blocks database.
 * -BEX_ENOMEM, -BEX_EIO, -BEX_ENOSPC, -BEX_EMAPFULL from the system or LMDB.
 */
BEX_MUST_USE int store_open(struct store **out, const char *dir, const struct store_options *opt,
                            char *err, size_t err_size);

/*
 * Closes the store and frees it. Accepts NULL. Every snapshot must have
 * ended and no other thread may be inside a store call.
 */
void store_close(struct store *s);

/*
 * Returns the sticky error (0 if none) and copies into msg (if msg_size > 0)
 * the message of the last failed write, "" if none. With writers on several
 * threads the message is that of whichever failed last.
 */
int store_error(struct store *s, char *msg, size_t msg_size);

/*
 * Sets the map size to new_map_bytes, which must exceed the current size,
 * clears a sticky -BEX_EMAPFULL and records the new size in meta, so that a
 * later store_open() uses the larger of it and opt->map_bytes. Waits for a
 * write in progress to finish; refuses while any snapshot is open, because
 * LMDB remaps the file.
 * -BEX_EINVAL   not larger than the current size, or above STORE_MAP_BYTES_MAX.
 * -BEX_ESTATE   a snapshot is open; end it and retry.
 * -BEX_ENOMEM   the larger map does not fit the address space; the old map
 *               stays in use.
 * -BEX_EIO      the old map could not be restored either: sticky, and reads
 *               fail too.
 * -BEX_ENOSPC, -BEX_EIO, -BEX_ECORRUPT: the store is sticky with this code
 *               (nothing was changed), or the map was grown but recording
 *               its size failed.
 */
BEX_MUST_USE int store_resize(struct store *s, size_t new_map_bytes);

/* ------------------------------------------------------------- writes */

/*
 * Commits block b and everything it changes in one write transaction, and
 * sets meta height, state root and last block hash to those of b. b->height
 * must be the current height plus one (the first block has height 1), or
 * 0 for the genesis block, which only an empty store accepts; then the
 * first regular block has height 1 as before.
 * -BEX_EINVAL   NULL or malformed input (a NULL pointer with a length, an
 *               empty key, name or record).
 * -BEX_ELIMIT   a length or count above its STORE_*_MAX, or the block needs
 *               more dirty pages than one LMDB transaction allows.
 * -BEX_ESTATE   b->height is not the current height plus one.
 * -BEX_EEXIST   a receipt's tx id is already stored.
 * -BEX_ENOMEM   allocation failed.
 * -BEX_EMAPFULL, -BEX_ENOSPC, -BEX_EIO, -BEX_ECORRUPT: fatal and sticky (see
 *               the top of this file); also returned, unchanged, by every
 *               write while the store is in a sticky state.
 * On any error nothing of b is stored.
 */
BEX_MUST_USE int store_commit_block(struct store *s, const struct store_block *b);

/*
 * Stores (or replaces) one of the consensus engine's own votes. Durable when
 * it returns (unless no_sync), so the engine may then send it.
 * Errors: -BEX_EINVAL (NULL, empty key), -BEX_ELIMIT, -BEX_ENOMEM and the
 * sticky codes, as for store_commit_block().
 */
BEX_MUST_USE int store_pbft_put(struct store *s, const uint8_t *key, size_t key_len,
                                const uint8_t *val, size_t val_len);

/*
 * Deletes every vote whose key k satisfies from <= k < to, and sets *deleted
 * (if not NULL) to their number. An empty from (NULL, 0) means from the first
 * key. Keys compare as unsigned byte strings: memcmp over the common length,
 * then the shorter first. Fixed-width big-endian integers therefore sort
 * numerically, so a node that builds keys as type (1) || seq (8 BE) || view
 * (8 BE) drops every vote of one type below sequence n with
 * from = type, to = type || n.
 * Errors: -BEX_EINVAL (NULL, empty to, from > to), -BEX_ELIMIT, -BEX_ENOMEM
 * and the sticky codes.
 */
BEX_MUST_USE int store_pbft_prune(struct store *s, size_t *deleted, const uint8_t *from,
                                  size_t from_len, const uint8_t *to, size_t to_len);

/*
 * Calls fn for every vote in key order (see store_pbft_prune()), from a
 * snapshot of its own; for replay when the node starts.
 * Returns 0, the non-zero value fn returned, or -BEX_EINVAL (NULL),
 * -BEX_EFULL (no free reader slot), -BEX_ECORRUPT, -BEX_EIO.
 */
BEX_MUST_USE int store_pbft_iter(struct store *s, store_pbft_fn fn, void *arg);

/*
 * A batch of consensus writes in ONE write transaction: the votes, prunes and
 * checkpoint of one engine step cost one commit (and one fdatasync) instead
 * of one each. store_batch_begin() takes the store's write lock, so every
 * other write waits until store_batch_commit() or store_batch_abort() ends
 * the batch; nothing in it is visible or durable before the commit. The
 * handle lives inside the store (one batch at a time) and is valid until the
 * batch ends. An operation that fails leaves the batch failed: later
 * operations return the same code, and the commit aborts and returns it.
 * Errors: those of store_pbft_put(), store_pbft_prune() and
 * store_set_checkpoint() for the same input.
 */
struct store_batch;

BEX_MUST_USE int store_batch_begin(struct store *s, struct store_batch **out);
BEX_MUST_USE int store_batch_pbft_put(struct store_batch *b, const uint8_t *key, size_t key_len,
                                      const uint8_t *val, size_t val_len);
BEX_MUST_USE int store_batch_pbft_prune(struct store_batch *b, size_t *deleted, const uint8_t *from,
                                        size_t from_len, const uint8_t *to, size_t to_len);
BEX_MUST_USE int store_batch_checkpoint(struct store_batch *b, uint64_t seq,
                                        const uint8_t digest[STORE_HASH_BYTES]);
/* Commits the batch, durable when it returns 0 (unless no_sync); ends it either way. */
/*
 * Adds a whole block to the batch: the writes of store_commit_block(), with
 * its checks and errors, in the batch's transaction (so a block and the
 * votes written with it are durable together). blk is read only during the
 * call.
 */
BEX_MUST_USE int store_batch_block(struct store_batch *b, const struct store_block *blk);
BEX_MUST_USE int store_batch_commit(struct store_batch *b);
/* Discards the batch. Accepts NULL. */
void store_batch_abort(struct store_batch *b);

/* Durably records the current view. Errors as for store_pbft_put(). */
BEX_MUST_USE int store_set_view(struct store *s, uint64_t view);

/*
 * Durably records the stable checkpoint (sequence number and the digest the
 * checkpoint certifies). Errors as for store_pbft_put().
 */
BEX_MUST_USE int store_set_checkpoint(struct store *s, uint64_t seq,
                                      const uint8_t digest[STORE_HASH_BYTES]);

/*
 * Durably stores a free-form named meta value, outside any block. The names
 * live apart from the store's own entries, so any name is allowed.
 * Errors: -BEX_EINVAL (NULL, empty name), -BEX_ELIMIT, -BEX_ENOMEM and the
 * sticky codes.
 */
BEX_MUST_USE int store_put_meta(struct store *s, const uint8_t *name, size_t name_len,
                                const uint8_t *val, size_t val_len);

/* ------------------------------------------------------------- reads */

/*
 * Opens a read snapshot. Works in a sticky error state too.
 * -BEX_EINVAL (NULL), -BEX_ENOMEM, -BEX_EFULL (all readers_max slots in use),
 * -BEX_EIO (LMDB cannot begin a transaction).
 */
BEX_MUST_USE int store_read_begin(struct store *s, struct store_read **out);

/* Ends a snapshot; every pointer it returned becomes invalid. Accepts NULL. */
void store_read_end(struct store_read *r);

/*
 * Point getters. Each sets its outputs only on success; borrowed pointers
 * stay valid until store_read_end(r).
 * -BEX_EINVAL   NULL argument, or a key or name of bad length.
 * -BEX_ENOTFOUND no such entry.
 * -BEX_ECORRUPT a stored value has the wrong size.
 * -BEX_EIO      LMDB failed.
 */
BEX_MUST_USE int store_get_state(struct store_read *r, const uint8_t **val, size_t *val_len,
                                 const uint8_t *key, size_t key_len);
BEX_MUST_USE int store_get_block(struct store_read *r, const uint8_t **record, size_t *record_len,
                                 uint64_t height);
BEX_MUST_USE int store_get_cert(struct store_read *r, const uint8_t **cert, size_t *cert_len,
                                uint64_t height);
BEX_MUST_USE int store_get_receipt(struct store_read *r, const uint8_t **receipt, size_t *receipt_len,
                                   const uint8_t tx_id[STORE_TXID_BYTES]);
BEX_MUST_USE int store_get_meta(struct store_read *r, const uint8_t **val, size_t *val_len,
                                const uint8_t *name, size_t name_len);

/* The height of the last block; 0 for an empty store (never -BEX_ENOTFOUND). */
BEX_MUST_USE int store_get_height(struct store_read *r, uint64_t *height);

/* State root and hash of the last block; -BEX_ENOTFOUND for an empty store. */
BEX_MUST_USE int store_get_root(struct store_read *r, uint8_t root[STORE_HASH_BYTES]);
BEX_MUST_USE int store_get_hash(struct store_read *r, uint8_t hash[STORE_HASH_BYTES]);

/* The recorded view; 0 if none was ever set (never -BEX_ENOTFOUND). */
BEX_MUST_USE int store_get_view(struct store_read *r, uint64_t *view);

/* The stable checkpoint; -BEX_ENOTFOUND if none was ever set. */
BEX_MUST_USE int store_get_checkpoint(struct store_read *r, uint64_t *seq,
                                      uint8_t digest[STORE_HASH_BYTES]);

/* Entry counts and space; see struct store_stats. -BEX_EINVAL, -BEX_EIO. */
BEX_MUST_USE int store_get_stats(struct store_read *r, struct store_stats *out);

/*
 * Drops this process's mappings of the data file's pages (the pages stay in
 * the kernel's page cache and are mapped again, by a minor fault, when next
 * read). Every page a reader touches counts in the process's resident set, so
 * without this the RSS of a long-running node grows with its store although
 * none of it is the node's own memory. Borrowed pointers stay valid: the file
 * is mapped shared and read-only, so its content never changes under them.
 * Between two calls, every read fault also maps the page's neighbours (the
 * kernel's fault-around, or the whole large folio the page cache holds it
 * in, as large as the run of pages LMDB wrote at once), so the resident set
 * is what was read since the last call, several times over: a node opens its
 * store with trim_ms and trim_above_bytes and lets the store's thread call
 * this whenever the mapped pages pass that size.
 * Returns 0, -BEX_EINVAL (NULL) or -BEX_EIO (the map is lost).
 */
BEX_MUST_USE int store_trim(struct store *s);

/*
 * Scans. Each fills out[0..*n) with at most cap (1..STORE_SCAN_MAX) entries
 * and sets *more (if not NULL) to whether further entries follow, so the
 * caller pages on with the last entry returned as the next cursor. Borrowed
 * pointers stay valid until store_read_end(r). Common errors: -BEX_EINVAL
 * (NULL, cap 0, bad key length), -BEX_ELIMIT (cap above STORE_SCAN_MAX),
 * -BEX_EIO; -BEX_ECORRUPT for a stored entry of the wrong shape. An empty
 * result is 0 with *n = 0, not -BEX_ENOTFOUND.
 */

/*
 * State entries whose key starts with prefix (prefix_len 0: all), in key
 * order (as for store_pbft_prune()), strictly after key `after` (after_len 0:
 * from the first).
 */
BEX_MUST_USE int store_scan_state(struct store_read *r, struct store_kv *out, size_t cap, size_t *n,
                                  bool *more, const uint8_t *prefix, size_t prefix_len,
                                  const uint8_t *after, size_t after_len);

/*
 * The history of one state key, newest first: entries strictly before
 * position `before` in (height, index) order, or from the newest when before
 * is NULL.
 */
BEX_MUST_USE int store_scan_history(struct store_read *r, struct store_history_item *out, size_t cap,
                                    size_t *n, bool *more, const uint8_t *key, size_t key_len,
                                    const struct store_history_pos *before);

/* Blocks (with their certificates) of heights from..to inclusive, ascending. */
BEX_MUST_USE int store_scan_blocks(struct store_read *r, struct store_block_item *out, size_t cap,
                                   size_t *n, bool *more, uint64_t from, uint64_t to);

#endif
