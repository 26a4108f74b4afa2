/*
 * node_byz.h: the misbehaviours of bexd-byz, a deliberately faulty node for
 * the byzantine integration tests (tests/integration/byz_*.sh).
 *
 * Only bexd-byz contains this code: the Makefile compiles node_byz.c and a
 * second copy of node.c and p2p.c with -DBEX_BYZANTINE for it alone, and
 * every call into this module sits under #ifdef BEX_BYZANTINE. bexd and
 * libbex.a never contain it.
 *
 * The environment chooses what the node does wrong:
 *   BEX_BYZ=name[,name...] with the names
 *     equivocate      as primary, sends PRE-PREPAREs (and proposals) with
 *                     two different digests for one seq: the odd-numbered
 *                     peers get one block, the even-numbered another;
 *     conflict_votes  every PREPARE and COMMIT also goes out for a random
 *                     digest, to some peers instead of the honest one;
 *     vc_flood        a VIEW-CHANGE for an ever higher view 50 times a second;
 *     replay          re-sends frames captured from peers earlier (txs,
 *                     HELLOs, votes, proposals) to random peers;
 *     bad_frames      every 250 ms one of: a frame header above the frame
 *                     limit, random bytes in the TLS session, a truncated
 *                     Envelope, a frame of random bytes;
 *   BEX_CLOCK_OFFSET_MS=N (signed) shifts the node's wall clock (block
 *   times) by N milliseconds.
 * The node says at startup which are on. Everything else it does honestly.
 * State is process-wide (one node per process).
 */
#ifndef BEX_NODE_BYZ_H
#define BEX_NODE_BYZ_H

#ifndef BEX_BYZANTINE
#error "node_byz.h is for the bexd-byz build only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bex.h"
#include "node.h"

/* Reads BEX_BYZ and BEX_CLOCK_OFFSET_MS; -BEX_EINVAL with err set if either is wrong. */
BEX_MUST_USE int node_byz_open(struct node *n, char *err, size_t err_size);

/* Frees what node_byz_open() and the capture took. */
void node_byz_close(void);

/* The offset BEX_CLOCK_OFFSET_MS adds to the wall clock (0 before node_byz_open()). */
int64_t node_byz_clock_offset_ms(void);

/*
 * Offered every consensus message before the node sends it to `to` (a peer
 * or P2P_PEER_NONE for all); prop is its proposal for a PRE-PREPARE, if
 * known. Returns true when it sent its own version instead.
 */
bool node_byz_send_msg(struct node *n, uint32_t to, const struct pbft_msg *m, const struct node_proposal *prop);

/* Sees every frame a peer sent (kept for replay). */
void node_byz_frame_in(struct node *n, uint32_t peer, const uint8_t *bytes, size_t len);

/* Called on every node tick: the flood, replay and bad frames. */
void node_byz_tick(struct node *n, uint64_t now_ms);

#endif
