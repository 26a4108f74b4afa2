/*
 * blocktime.h: the time a block carries, and how far a replica trusts it.
 *
 * Block time drives grant expiry and review deadlines, so it must follow real
 * time closely on every node. The primary stamps a proposal with its wall
 * clock, never below the time of the last block (block time is monotonic,
 * and the ledger clamps it again when it applies a block). A backup refuses
 * to prepare a proposal stamped further ahead of its own wall clock than
 * clock_skew_max_ms (node.json limits): a primary whose clock runs fast
 * cannot push block time into the future, it is replaced by a view change
 * instead. A primary whose clock runs slow is harmless to safety: its blocks
 * keep the time of the last block until its clock catches up.
 */
#ifndef BEX_BLOCKTIME_H
#define BEX_BLOCKTIME_H

#include <stdint.h>

#include "bex.h"

/* The time the primary stamps on a proposal: its wall clock, at least the last block's time. */
uint64_t blocktime_propose(uint64_t now_ms, uint64_t last_block_ms);

/*
 * Checks the time of a proposal against this replica's wall clock now_ms.
 * Returns 0, or -BEX_ELIMIT when time_ms is more than skew_max_ms ahead of
 * now_ms; *ahead_ms then says by how much it is ahead (0 otherwise).
 */
BEX_MUST_USE int blocktime_check(uint64_t *ahead_ms, uint64_t time_ms, uint64_t now_ms, uint32_t skew_max_ms);

#endif
