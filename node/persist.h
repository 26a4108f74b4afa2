/*
 * persist.h: the engine's votes, and the blocks, made durable off the loop thread.
 *
 * PBFT's ordering contract (consensus/pbft.h) is that a replica's own vote
 * is on stable storage before any message of the same engine call leaves.
 * Doing the fdatasync on the loop thread stalls everything else the node
 * does (admitting txs, answering RPC, reading peers) for one disk sync per
 * engine call. Here the loop only queues a batch of writes and holds the
 * sends that depend on it; one writer thread commits every batch queued
 * since its last commit in ONE store transaction (group commit: one
 * fdatasync for all of them) and then says how far batches are durable. The
 * loop releases the held sends of every durable batch, in order.
 *
 * Batches are numbered from 1 in the order they are submitted, and become
 * durable in that order. A failed commit stops the writer: every batch of
 * the failed transaction (the first one after persist_durable()'s number,
 * and those grouped with it) stays queued with every batch after it, and
 * none of their sends may leave. persist_retry() tries again after the
 * cause was dealt with (a grown map); persist_free() drops them.
 *
 * The writer thread uses only the store (thread-safe, serialised by its
 * write lock) and the wake callback, which it calls after each commit or
 * failure; the node's wake is uv_async_send(). Everything else is called on
 * one thread, the owner's.
 */
#ifndef BEX_PERSIST_H
#define BEX_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "bex.h"
#include "store.h"

#define PERSIST_BATCHES_MAX 4096          /* batches queued and not yet durable */
#define PERSIST_BYTES_MAX (64u << 20)     /* their bytes */
#define PERSIST_BATCH_BYTES_MAX (8u << 20) /* one batch */

struct persist;
struct persist_batch;

typedef void (*persist_wake_fn)(void *ud);

/*
 * Starts the writer thread on an open store, which must outlive the
 * persister. wake is called on the writer thread. *out is NULL on failure.
 * Returns 0, -BEX_EINVAL,
 * -BEX_ENOMEM, or -BEX_EIO when no thread can be started.
 */
BEX_MUST_USE int persist_new(struct persist **out, struct store *s, persist_wake_fn wake, void *ud);

/* Stops the writer after its current commit and frees the batches still queued. Accepts NULL. */
void persist_free(struct persist *p);

/* A new, empty batch; NULL when out of memory. */
struct persist_batch *persist_batch_new(void);

/* Frees a batch that was not submitted. Accepts NULL. */
void persist_batch_free(struct persist_batch *b);

/*
 * The operations of a batch, applied in order by one store transaction (see
 * store_batch_pbft_put(), store_batch_pbft_prune(), store_batch_checkpoint()).
 * Bytes are copied. -BEX_ELIMIT past PERSIST_BATCH_BYTES_MAX or the store's
 * key and value limits (STORE_PBFT_KEY_BYTES_MAX, STORE_PBFT_VALUE_BYTES_MAX),
 * -BEX_ENOMEM, -BEX_EINVAL.
 */
BEX_MUST_USE int persist_batch_put(struct persist_batch *b, const uint8_t *key, size_t key_len, const uint8_t *val,
                                   size_t val_len);
BEX_MUST_USE int persist_batch_prune(struct persist_batch *b, const uint8_t *from, size_t from_len,
                                     const uint8_t *to, size_t to_len);
BEX_MUST_USE int persist_batch_checkpoint(struct persist_batch *b, uint64_t seq,
                                          const uint8_t digest[STORE_HASH_BYTES]);

/*
 * Adds a whole block (store_batch_block()), committed in the same
 * transaction as the votes around it. The block is BORROWED, not copied:
 * blk and everything it points to must stay untouched until the batch is
 * durable (persist_durable() reaches its number) or persist_free() has
 * returned. -BEX_EINVAL, -BEX_ENOMEM, -BEX_ELIMIT.
 */
BEX_MUST_USE int persist_batch_block(struct persist_batch *b, const struct store_block *blk);

/* Operations in the batch. */
uint32_t persist_batch_ops(const struct persist_batch *b);

/*
 * Queues a batch for the writer and takes it over (also on failure). *seq
 * is its number. When PERSIST_BATCHES_MAX batches or PERSIST_BYTES_MAX
 * bytes wait already (the disk is not keeping up), blocks until the writer
 * has made room: back-pressure, as a synchronous commit would. When the
 * queue is full and the writer stopped at a failure, returns that failure's
 * code and drops the batch. -BEX_EINVAL.
 */
BEX_MUST_USE int persist_submit(struct persist *p, uint64_t *seq, struct persist_batch *b);

/* The number of the last batch submitted, 0 before any. */
uint64_t persist_submitted(const struct persist *p);

/*
 * The number of the last durable batch; every batch up to it is on stable
 * storage. *failed is 0, or the store's code for the batch after it, which
 * the writer could not commit (it waits for persist_retry()).
 */
uint64_t persist_durable(struct persist *p, int *failed);

/* Lets a stopped writer try its failed batch again. */
void persist_retry(struct persist *p);

/* Commits so far (each one store transaction, one fdatasync) and batches they held. */
void persist_counts(struct persist *p, uint64_t *commits, uint64_t *batches);

#endif
