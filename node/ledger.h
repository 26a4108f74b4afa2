/*
 * ledger.h: the chain of one node: the store (store.h) and the contract
 * executor (contract.h) joined.
 *
 * The ledger applies committed blocks strictly in height order. Each block
 * runs through the executor on top of the committed state, and the block
 * record, its commit certificate, the receipts, the state writes, the history
 * and the new state root land in ONE store write transaction
 * (store_commit_block). Height 0 is the genesis: the agency registry of the
 * genesis file, written when the store is empty.
 *
 * The ledger hash chain links every block to the one before it:
 *     hash_0 = SHA-256("bex-genesis" || genesis_hash || root_0)
 *     hash_h = SHA-256(hash_{h-1} || u64be(h) || digest_h || root_h)
 * where digest_h is the PBFT digest (SHA-256 of the encoded BlockProposal;
 * 32 zero bytes for a null request) and root_h the state root after block h.
 *
 * Transactions in a committed block were verified by every honest replica
 * that prepared it, so the ledger never verifies signatures again. A tx
 * whose id already has a receipt (committed earlier, or earlier in the same
 * block) is skipped without a receipt: every node skips it identically.
 *
 * Block time is max(previous block time, proposal time), so a primary with
 * a clock running backwards cannot make execution fail. A null request
 * executes as an empty block at the previous block time.
 *
 * Threads: every call except the ledger_read_* family runs on one thread
 * (the node's loop). Read snapshots may be used from any thread.
 */
#ifndef BEX_LEDGER_H
#define BEX_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bex.h"
#include "config.h"
#include "contract.h"
#include "store.h"

#define LEDGER_HASH_BYTES 32

struct ledger;
struct ledger_read;

/* What ledger_apply() produced; valid until the next ledger_apply(). */
struct ledger_applied {
    uint64_t height;
    uint64_t time_ms;
    uint8_t hash[LEDGER_HASH_BYTES];
    uint8_t state_root[LEDGER_HASH_BYTES];
    const struct exec_output *out; /* receipts, events, writes of the block */
    size_t skipped;                /* txs skipped as already committed */
    const uint8_t (*deferred)[LEDGER_HASH_BYTES]; /* ids of txs deferred: nonce ahead */
    size_t deferred_count;         /* they stay pending, with no receipt */
};

/*
 * Opens the store in dir and, when it is empty, writes the genesis (height
 * 0) from g. A non-empty store must have been made from the same genesis
 * (its hash is kept in meta): -BEX_ESTATE otherwise. err names the cause.
 * Errors: those of store_open(), exec_new(), exec_genesis(),
 * store_commit_block(); -BEX_ECORRUPT for a malformed stored head.
 */
BEX_MUST_USE int ledger_open(struct ledger **out, const char *dir, const struct store_options *opt,
                             const struct genesis *g, char *err, size_t err_size);

/* Closes the ledger and its store. Accepts NULL. */
void ledger_close(struct ledger *l);

/*
 * Applies block `height` (the current height plus one). proposal is the
 * encoded bex.BlockProposal whose SHA-256 is digest, or NULL/0 with an
 * all-zero digest for a null request. cert is the encoded bex.CommitCert.
 * On success *res describes the block.
 * -BEX_ESTATE   height is not the current height plus one.
 * -BEX_EDECODE  the proposal does not decode, or is of another chain or
 *               height (a committed block never is: this is a fault).
 * -BEX_EINVAL   digest does not match the proposal.
 * Store errors (sticky ones included) pass through; nothing is applied.
 */
BEX_MUST_USE int ledger_apply(struct ledger *l, const struct ledger_applied **res, uint64_t height,
                              const uint8_t digest[LEDGER_HASH_BYTES], const uint8_t *proposal,
                              size_t proposal_len, const uint8_t *cert, size_t cert_len);

/*
 * ledger_apply() in two steps, for a caller that commits the block's writes
 * itself (the node does, on its persister's thread, with the votes queued
 * meanwhile). ledger_apply_begin() executes the block and sets *blk to its
 * writes, without committing them; its errors are ledger_apply()'s but
 * store errors of the commit, and -BEX_ESTATE while another block is
 * begun. *blk, and the cert it points to, must stay untouched until the
 * block is committed or dropped. Until the end the ledger still reads and
 * reports the previous head.
 *
 * Once *blk is committed (store_commit_block() or store_batch_block()),
 * ledger_apply_end() moves the ledger to it and sets *res as
 * ledger_apply() does; its only error is one from reopening the
 * executor's snapshot (store_read_begin()). When the commit failed,
 * ledger_apply_abort() drops the block (and accepts a ledger with none).
 */
BEX_MUST_USE int ledger_apply_begin(struct ledger *l, const struct store_block **blk, uint64_t height,
                                    const uint8_t digest[LEDGER_HASH_BYTES], const uint8_t *proposal,
                                    size_t proposal_len, const uint8_t *cert, size_t cert_len);
BEX_MUST_USE int ledger_apply_end(struct ledger *l, const struct ledger_applied **res);
void ledger_apply_abort(struct ledger *l);

uint64_t ledger_height(const struct ledger *l);
uint64_t ledger_time_ms(const struct ledger *l); /* block time of the last block */
const uint8_t *ledger_root(const struct ledger *l);
const uint8_t *ledger_hash(const struct ledger *l);
struct store *ledger_store(struct ledger *l);

/*
 * Grows the store's map to map_bytes (see store_resize()), closing and
 * reopening the executor's snapshot around it. No other snapshot of the
 * store may be open. Errors: those of store_resize() and store_read_begin().
 */
BEX_MUST_USE int ledger_resize(struct ledger *l, size_t map_bytes);

/*
 * The last nonce the agency used (0 if none), from committed state.
 * Errors: -BEX_ECORRUPT (malformed value), store read errors.
 */
BEX_MUST_USE int ledger_last_nonce(struct ledger *l, uint64_t *nonce, const char *agency);

/*
 * Read snapshots for queries: ledger_read_store() is the executor's view of
 * committed state at the snapshot, valid until ledger_read_end().
 */
BEX_MUST_USE int ledger_read_begin(struct ledger *l, struct ledger_read **out);
const struct exec_store *ledger_read_store(struct ledger_read *r);
struct store_read *ledger_read_raw(struct ledger_read *r);
void ledger_read_end(struct ledger_read *r);

#endif
