/*
 * pbft_wire.h: the consensus engine's C messages (consensus/pbft.h) to and
 * from their protobuf form (PbftVote, PbftPrepared, PbftViewChange,
 * PbftNewView in proto/bex.proto), for the wire and for the persisted votes.
 *
 * Decoding is the boundary for bytes from peers and disk: every length and
 * count is checked against the engine's limits, and a message that does not
 * fit is refused with -BEX_EDECODE, never truncated.
 */
#ifndef BEX_PBFT_WIRE_H
#define BEX_PBFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "bex.h"
#include "bex.pb-c.h"
#include "pbft.h"

/*
 * Scratch space for decoding the large messages. One per node, reused by
 * every decode; what wire_decode() returns points into it until the next
 * decode.
 */
struct wire_scratch {
    struct pbft_view_change vc;
    struct pbft_new_view nv;
    struct pbft_prepared prepared;
    struct pbft_checkpoint_proof proof;
};

/*
 * Encodes msg as an Envelope (vote, view_change or new_view) into a malloc'd
 * buffer. PBFT_MSG_PREPARED and PBFT_MSG_STABLE (persisted only) are encoded
 * as PbftPrepared and as a PbftViewChange carrying only the stable proof,
 * inside an Envelope of their own tag (see pbft_wire.c).
 * Errors: -BEX_ENOMEM, -BEX_EINVAL (unknown type).
 */
BEX_MUST_USE int wire_encode(uint8_t **out, size_t *out_len, const struct pbft_msg *msg);

/*
 * Fills msg from a decoded Envelope that carries a vote, a view change or a
 * new view. Errors: -BEX_EDECODE (wrong lengths, counts above the limits),
 * -BEX_EINVAL (the envelope carries something else).
 */
BEX_MUST_USE int wire_from_envelope(struct pbft_msg *msg, struct wire_scratch *s, const Bex__Envelope *env);

/* Decodes bytes from wire_encode() (persisted messages included) into msg. */
BEX_MUST_USE int wire_decode(struct pbft_msg *msg, struct wire_scratch *s, const uint8_t *bytes, size_t len);

/* A commit certificate to and from bex.CommitCert bytes (malloc'd). */
BEX_MUST_USE int wire_cert_encode(uint8_t **out, size_t *out_len, uint64_t seq, const uint8_t digest[PBFT_DIGEST_BYTES],
                                  const struct pbft_commit_cert *cert);
BEX_MUST_USE int wire_cert_from_proto(struct pbft_commit_cert *cert, uint64_t *seq, uint8_t digest[PBFT_DIGEST_BYTES],
                                      const Bex__CommitCert *c);

#endif
