/*
 * contract.h: the deterministic contract runtime of bex, its executor and
 * the native contracts (agency, catalog, grant, record, access, verify,
 * audit).
 *
 * The executor applies committed blocks strictly in height order. It reads
 * committed state only through struct exec_store (two function pointers: get
 * one key, iterate a key prefix in order), so it knows nothing of LMDB. Each
 * transaction runs in its contract on a write overlay: success merges the
 * overlay into the block overlay, failure discards it and records the error
 * code and a short message in the receipt. The nonce is consumed either way,
 * and every transaction leaves an audit entry, written by the executor
 * outside the failed transaction's overlay.
 *
 * The output of a block (struct exec_output) is what the node stores in one
 * write transaction: the write set sorted by key, the encoded bex.Receipt of
 * each transaction, the events, the history (which transaction touched
 * which key) and the new state root.
 *
 * State root. For now the root is a hash chain over the write sets:
 *     root_h = SHA-256(root_{h-1} || u64be(h) || w_1 || ... || w_n)
 * with root_{-1} = 32 zero bytes and each write w, in key order, encoded as
 *     u32be(key_len) || key || u8(1 put, 0 delete) || u32be(val_len) || val.
 * Every honest node computes it identically from the same blocks. A Merkle
 * tree over the state, which also gives inclusion proofs, replaces it later.
 *
 * State keys are printable ASCII, scoped by contract ("grant/g/..."):
 *     chain/head                          bex.ChainHead of the last block
 *     nonce/<agency>                      u64be last nonce used by the agency
 *     agency/a/<id>                       bex.Agency
 *     catalog/r/<owner>/<name>            bex.Resource
 *     grant/next                          u64be last grant id
 *     grant/g/<id:016x>                   bex.Grant (stored status)
 *     grant/r/<resource>/<id:016x>        index (empty value)
 *     grant/c/<consumer>/<resource>/<id:016x>   index
 *     grant/o/<owner>/<id:016x>           index
 *     grant/l/<resource>/<consumer>/<read|verify>   u64be id of the latest
 *                                         grant of that kind (at most one live)
 *     record/d/<resource>/<key hex>       bex.Record
 *     record/x/<resource>/<consumer>      bex.IndexKeyShare
 *     access/next, access/a/<id:016x>     u64be counter, bex.Access
 *     access/o/<owner>/<id:016x>, access/c/<consumer>/<id:016x>   indexes
 *     verify/next, verify/v/<id:016x>     u64be counter, bex.Verification
 *     verify/o/<owner>/<id:016x>, verify/c/<consumer>/<id:016x>   indexes
 *     audit/e/<~height:016x>/<~index:08x> bex.AuditEntry (newest sorts first)
 *     audit/r/<resource>/<~h>/<~i>, audit/k/<resource>/<key hex>/<~h>/<~i>,
 *     audit/a/<agency>/<~h>/<~i>          indexes (empty value)
 *
 * Nothing here reads a clock, draws randomness, uses floating point or
 * iterates in an order that can differ between machines.
 */
#ifndef BEX_CONTRACT_H
#define BEX_CONTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bex.h"
#include "bex.pb-c.h"

/* ------------------------------------------------------------------ limits */

#define CONTRACT_KEY_BYTES_MAX 512          /* a state key */
#define CONTRACT_VALUE_BYTES_MAX (1u << 20) /* a state value */
#define CONTRACT_TX_BYTES_MAX (1u << 20)    /* an encoded bex.Tx */
#define CONTRACT_SIGNERS_MAX 16             /* signatures on one tx */
#define CONTRACT_PUBKEY_BYTES 33            /* compressed secp256k1 */
#define CONTRACT_HASH_BYTES 32
#define CONTRACT_MESSAGE_BYTES_MAX 160      /* receipt message, with NUL */
#define CONTRACT_DETAIL_BYTES_MAX 160       /* audit detail, with NUL */
#define CONTRACT_EVENTS_PER_TX_MAX 8
#define CONTRACT_BUDGET_DEFAULT 2000000u    /* work units per tx */
#define CONTRACT_QUERY_BUDGET 4000000u      /* work units per query */
#define CONTRACT_PAGE_DEFAULT 50            /* limit 0 means this */
#define CONTRACT_PAGE_MAX 500               /* hard maximum of a page */
#define CONTRACT_REVIEW_PERIOD_MS (7ull * 24 * 3600 * 1000)

/* Sealed blobs follow crypto.h: eph_pub(33) || nonce(12) || ct || tag(16). */
#define CONTRACT_ECIES_OVERHEAD (33 + 12 + 16)
#define CONTRACT_WRAPPED_KEY_BYTES_MIN (CONTRACT_ECIES_OVERHEAD + 16)
#define CONTRACT_WRAPPED_KEY_BYTES_MAX (CONTRACT_ECIES_OVERHEAD + 64)
#define CONTRACT_CLAIM_BYTES_MAX (CONTRACT_ECIES_OVERHEAD + 1024)
#define CONTRACT_CIPHERTEXT_BYTES_MIN (12 + 16)
#define CONTRACT_CIPHERTEXT_BYTES_MAX (64 * 1024)
#define CONTRACT_RECORD_KEY_BYTES 32        /* HMAC-SHA256 record keys */

/* Work units: what each state operation costs against the budget. */
#define CONTRACT_COST_READ 100
#define CONTRACT_COST_WRITE 500
#define CONTRACT_COST_ITER 50
#define CONTRACT_COST_BYTE 1

#define EXEC_BLOCK_TXS_MAX 8192                /* transactions in one block */
#define EXEC_BLOCK_WRITE_BYTES_MAX (64u << 20) /* keys and values one block writes */
#define EXEC_GENESIS_AGENCIES_MAX 256

_Static_assert(CONTRACT_PAGE_DEFAULT <= CONTRACT_PAGE_MAX, "default page within the maximum");
_Static_assert(CONTRACT_KEY_BYTES_MAX < CONTRACT_VALUE_BYTES_MAX, "keys are smaller than values");
_Static_assert(CONTRACT_WRAPPED_KEY_BYTES_MIN > CONTRACT_ECIES_OVERHEAD, "a wrapped key has content");

/* ------------------------------------------------------------------- store */

/*
 * Called for each key of an iteration in ascending byte order. key and val
 * are valid during the call only. Return 0 to go on, 1 to stop, or a
 * negative BEX_E* code to stop with that error.
 */
typedef int (*exec_iter_fn)(void *user, const char *key, size_t key_len, const uint8_t *val,
                            size_t val_len);

/*
 * Committed state as the executor sees it: read-only.
 *
 * get: 0 with *val and *val_len borrowed (valid until the store changes, which
 *   never happens while the executor or a query uses it), -BEX_ENOTFOUND, or
 *   another negative code for a storage failure (fatal for the block).
 * iter: calls fn for every key that starts with prefix and sorts strictly
 *   after `after` (after_len 0: from the first), in ascending byte order;
 *   returns 0, or fn's negative code, or a storage failure.
 */
struct exec_store {
    void *user;
    int (*get)(void *user, const char *key, size_t key_len, const uint8_t **val, size_t *val_len);
    int (*iter)(void *user, const char *prefix, size_t prefix_len, const char *after, size_t after_len,
                exec_iter_fn fn, void *fn_user);
};

/* --------------------------------------------------------------- executor */

struct exec_config {
    const char *chain_id;   /* txs of another chain get a BEX_ECHAIN receipt */
    uint32_t tx_budget;     /* work units per tx; 0: CONTRACT_BUDGET_DEFAULT */
};

/* One entry of a block's write set. */
struct exec_write {
    const char *key; /* NUL-terminated */
    size_t key_len;
    const uint8_t *val; /* NULL for a delete */
    size_t val_len;
    bool del;
};

/* Which transaction wrote which key (successful transactions only). */
struct exec_history {
    const char *key;
    size_t key_len;
    uint32_t tx_index;
    uint8_t tx_id[CONTRACT_HASH_BYTES];
};

struct exec_receipt {
    uint8_t tx_id[CONTRACT_HASH_BYTES];
    uint32_t index;
    int code;               /* 0 or the positive BEX_E* code */
    const uint8_t *encoded; /* bex.Receipt */
    size_t encoded_len;
};

struct exec_event {
    uint32_t tx_index;
    const char *contract;
    const char *kind;
    const uint8_t *data; /* the encoded message the event describes */
    size_t data_len;
};

/*
 * What a block (or genesis) produced. Everything is owned by the executor
 * and valid until the next exec_genesis, exec_block_begin or exec_free.
 */
struct exec_output {
    uint64_t height;
    uint64_t time_ms;
    uint8_t state_root[CONTRACT_HASH_BYTES];
    const struct exec_write *writes; /* sorted by key, one per key */
    size_t write_count;
    const struct exec_receipt *receipts; /* in tx order */
    size_t receipt_count;
    const struct exec_event *events;
    size_t event_count;
    const struct exec_history *history; /* in tx order, then key order */
    size_t history_count;
};

struct exec;

/* Creates an executor over `store` (borrowed; must outlive the executor). */
BEX_MUST_USE int exec_new(struct exec **out, const struct exec_config *cfg, const struct exec_store *store);

/* Frees an executor; accepts NULL. */
void exec_free(struct exec *e);

/*
 * Executes height 0: registers the agencies (validated: ids unique and
 * well-formed, 1..16 distinct officer keys, 1 <= threshold <= keys, 33-byte
 * node and encryption keys). The store must be empty. On success *out
 * describes the writes and the root of height 0.
 * Errors: BEX_EINVAL (bad agency), BEX_ELIMIT, BEX_ESTATE (store not empty
 * or a block open),
 * BEX_ENOMEM, or a storage failure.
 */
BEX_MUST_USE int exec_genesis(struct exec *e, const struct exec_output **out,
                              const Bex__Agency *const *agencies, size_t agency_count, uint64_t time_ms);

/*
 * Starts block `height` with block time `time_ms` on top of prev_root, the
 * root of height - 1. The caller must have applied the write set of the
 * previous block (or genesis) to the store: the head is read from there.
 * Errors: BEX_ESTATE if a block is open or height is not the committed
 * head + 1, BEX_EINVAL if time_ms runs backwards.
 */
BEX_MUST_USE int exec_block_begin(struct exec *e, uint64_t height, uint64_t time_ms,
                                  const uint8_t prev_root[CONTRACT_HASH_BYTES]);

/*
 * Executes one encoded bex.Tx (signatures already verified by the node; the
 * executor never re-verifies, it only reads the signer keys). In order:
 * decode (BEX_EDECODE; a tx that does not decode gets the SHA-256 of its
 * bytes as id), chain id (BEX_ECHAIN), sender registered (BEX_EUNKNOWN),
 * every signer a key of the sender (BEX_EPERM), nonce = last + 1
 * (BEX_ENONCE for a nonce already used); none of these consume the nonce.
 * A nonce beyond last + 1 is not a failure but a tx that came too early (a
 * view change dropped the block holding its predecessors): it is deferred,
 * with no receipt, audit entry or write, *code = EXEC_DEFERRED, and it may
 * be proposed again once its predecessors commit. Then the nonce is
 * consumed, and contract and method (BEX_EUNKNOWN), an officer signature
 * unless the method is an owner service (BEX_EPERM), argument size
 * (BEX_ELIMIT), argument decoding without unknown fields (BEX_EDECODE) and
 * the method itself decide. Every tx of a registered sender leaves an audit
 * entry, failed or not. Whatever the
 * transaction's fate, it gets a receipt, and the call returns 0; *code (may
 * be NULL) receives the receipt code. A negative return is not a receipt but
 * a fault of this node (BEX_ENOMEM, storage failure) or of the caller
 * (BEX_ESTATE: no open block; BEX_ELIMIT: more than EXEC_BLOCK_TXS_MAX txs):
 * the block must then be aborted.
 */
#define EXEC_DEFERRED (-1)
BEX_MUST_USE int exec_tx(struct exec *e, int *code, const uint8_t *tx, size_t tx_len);

/*
 * Exactly exec_tx() for a tx the caller has already decoded, so that a
 * node that decodes every tx to learn its id does not decode it twice: tx
 * is what bex__tx__unpack() made of at most CONTRACT_TX_BYTES_MAX bytes,
 * and id is SHA-256 of tx->body (the tx id; checked in SAN=1 builds). Both
 * are borrowed for the call. Receipt, writes and root are byte for byte
 * those exec_tx() gives for the same bytes.
 */
BEX_MUST_USE int exec_tx_decoded(struct exec *e, int *code, const Bex__Tx *tx,
                                 const uint8_t id[CONTRACT_HASH_BYTES]);

/* Finishes the open block: sorts the write set and computes the root. */
BEX_MUST_USE int exec_block_end(struct exec *e, const struct exec_output **out);

/* Drops the open block, if any, and everything it wrote. */
void exec_block_abort(struct exec *e);

/* ------------------------------------------------------------- memstore */

/*
 * An in-memory, sorted, bounded implementation of struct exec_store for
 * tests, the simulator and fuzzers.
 */
struct memstore;

BEX_MUST_USE int memstore_new(struct memstore **out, size_t entries_max, size_t bytes_max);
void memstore_free(struct memstore *m);

/* Fills *out with the store interface of m (valid while m lives). */
void memstore_store(struct memstore *m, struct exec_store *out);

/* Applies a block's write set. Errors: BEX_EFULL (bounds), BEX_ENOMEM. */
BEX_MUST_USE int memstore_apply(struct memstore *m, const struct exec_output *out);

/* Number of keys held. */
size_t memstore_count(const struct memstore *m);

/* --------------------------------------------------------------- queries */

/*
 * Runs the read-only query `contract`.`query` against committed state with
 * args encoded as the query's argument message. "Now" for lazy expiry and
 * overdue flags is the block time of the last executed block. On success
 * *result is a message the caller frees with contract_result_free.
 * On failure err (may be NULL) receives a short text. Queries keep no
 * global state: several may run at once on different threads.
 * Errors: BEX_EUNKNOWN, BEX_ELIMIT (args too large), BEX_EDECODE,
 * BEX_EINVAL, BEX_ENOTFOUND, BEX_EBUDGET, BEX_ENOMEM, storage failures.
 */
BEX_MUST_USE int contract_query(ProtobufCMessage **result, char *err, size_t err_len,
                                const struct exec_store *store, const char *contract, const char *query,
                                const uint8_t *args, size_t args_len);

void contract_result_free(ProtobufCMessage *m);

/*
 * Looks up a method or query (kind "method" or "query") and returns its
 * argument and result message descriptors. Errors: BEX_EUNKNOWN.
 */
BEX_MUST_USE int contract_describe(const ProtobufCMessageDescriptor **args,
                                   const ProtobufCMessageDescriptor **result, const char *contract,
                                   const char *kind, const char *name);

/* Calls fn for every registered method and query, in registry order. */
typedef void (*contract_list_fn)(void *user, const char *contract, const char *kind, const char *name);
void contract_list(contract_list_fn fn, void *user);

/* Writes the 16-hex-digit key id of a public key (first 8 bytes of its SHA-256). */
void contract_key_id(char out[17], const uint8_t pubkey[CONTRACT_PUBKEY_BYTES]);

/* ----------------------------------------------------------------- JSON */

/*
 * Renders any protobuf-c message as JSON text by walking its descriptor:
 * every field by its proto name, bytes as lowercase hex, enums by name,
 * 64-bit integers as numbers (as strings above 2^53), oneofs only when set.
 * *out is malloc'd, NUL-terminated, freed by the caller with free().
 * Errors: BEX_ENOMEM, BEX_EINVAL (nesting deeper than 32).
 */
BEX_MUST_USE int contract_json_render(char **out, const ProtobufCMessage *m);

/*
 * Parses JSON text into a new message of type desc, the inverse of
 * contract_json_render (bytes as hex, enums by name or number, integers as
 * numbers or decimal strings). Unknown fields are refused. Free the result
 * with contract_result_free. Errors: BEX_EDECODE (with a text in err),
 * BEX_ELIMIT (text over 1 MiB), BEX_ENOMEM.
 */
BEX_MUST_USE int contract_json_parse(ProtobufCMessage **out, char *err, size_t err_len,
                                     const ProtobufCMessageDescriptor *desc, const char *json, size_t json_len);

/*
 * Convenience for the RPC: parses args_json ("" or NULL: empty args) for
 * contract.query, runs it and renders the result. *out is freed with free().
 */
BEX_MUST_USE int contract_query_json(char **out, char *err, size_t err_len, const struct exec_store *store,
                                     const char *contract, const char *query, const char *args_json);

#endif
