/*
 * envelope_fuzz.c: a peer's byte stream as the p2p layer reads it.
 *
 * The input is a stream of frames: a 4-byte big-endian length, then that
 * many bytes of an encoded bex.Envelope. Frames are read one after the other
 * until the stream ends, a frame is incomplete, a length is above the frame
 * limit or a frame does not decode, which is where a node would stop reading
 * (and drop the peer). Every frame that decodes must re-encode stably, and so
 * must the transactions, proposals and blocks it carries, which the node
 * decodes in turn.
 */
#include "bex.pb-c.h"
#include "fuzz_util.h"

#include <stdint.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 65536

/* The hard frame limit of this target. The node's own limit is configured
 * (limits.frame_bytes_max) and far larger, but no input here reaches it. */
#define FRAME_BYTES_MAX ((uint32_t)FUZZ_MAX_LEN)

/* The nested bytes a node decodes after the envelope: txs, their bodies and proposals. */
static void check_nested(const Bex__Envelope *env)
{
    switch (env->kind_case) {
    case BEX__ENVELOPE__KIND_TX: {
        ProtobufCMessage *body = fuzz_roundtrip(&bex__tx_body__descriptor, env->tx->body.data, env->tx->body.len);
        if (body != NULL)
            protobuf_c_message_free_unpacked(body, NULL);
        break;
    }
    case BEX__ENVELOPE__KIND_PROPOSAL:
        fuzz_check_proposal_txs(env->proposal->txs, env->proposal->n_txs);
        break;
    case BEX__ENVELOPE__KIND_BLOCK_RESPONSE:
        for (size_t i = 0; i < env->block_response->n_blocks; i++)
            fuzz_check_proposal_bytes(env->block_response->blocks[i]->proposal.data,
                                      env->block_response->blocks[i]->proposal.len);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t at = 0;

    if (size > FUZZ_MAX_LEN)
        return 0;
    while (size - at >= 4) {
        uint32_t len = (uint32_t)data[at] << 24 | (uint32_t)data[at + 1] << 16 | (uint32_t)data[at + 2] << 8 |
                       (uint32_t)data[at + 3];
        if (len > FRAME_BYTES_MAX || len > size - at - 4)
            break;
        at += 4;
        ProtobufCMessage *m = fuzz_roundtrip(&bex__envelope__descriptor, data + at, len);
        if (m == NULL)
            break;
        const Bex__Envelope *env = (const Bex__Envelope *)m;
        FUZZ_CHECK(env->kind_case == BEX__ENVELOPE__KIND__NOT_SET ||
                   protobuf_c_message_descriptor_get_field(&bex__envelope__descriptor, env->kind_case) != NULL);
        check_nested(env);
        protobuf_c_message_free_unpacked(m, NULL);
        at += len;
    }
    return 0;
}
