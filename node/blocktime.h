/*
 * blocktime.h: the time a block carries, and how far a replica trusts it.
 *
 * Block time drives grant expiry and review deadlines, so it must follow real
 * time closely on every node. The primary stamps a proposal with its wall
 * clock, never below the time of the last block (block time is monotonic,
 * and the ledger clamps it again when it applies a block). A backup refuses
 * to prepare a proposal stamped further than clock_skew_max_ms (node.json
 * limits) ahead of its own wall clock, and a fresh proposal (one of the
 * current view) stamped further than that behind it. A primary whose clock
 * is off cannot move block time away from real time: it is replaced by a
 * view change instead. Proposals a NEW-VIEW re-issues keep their old view
 * and time; they are not checked for being behind, or a view change that
 * took long could never finish.
 */
#ifndef BEX_BLOCKTIME_H
#define BEX_BLOCKTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "bex.h"

/* The time the primary stamps on a proposal: its wall clock, at least the last block's time. */
uint64_t blocktime_propose(uint64_t now_ms, uint64_t last_block_ms);

/*
 * Checks the time of a proposal against this replica's wall clock now_ms.
 * *ahead_ms and *behind_ms say how far time_ms is from now_ms (one is 0).
 * Returns 0, or -BEX_ELIMIT when time_ms is more than skew_max_ms ahead, or,
 * for a fresh proposal, more than skew_max_ms behind.
 */
BEX_MUST_USE int blocktime_check(uint64_t *ahead_ms, uint64_t *behind_ms, uint64_t time_ms, uint64_t now_ms,
                                 uint32_t skew_max_ms, bool fresh);

#endif
