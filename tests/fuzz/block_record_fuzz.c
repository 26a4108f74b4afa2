/*
 * block_record_fuzz.c: the block messages a node reads back from its store
 * or receives in state transfer: bex.BlockRecord, bex.BlockProposal and
 * bex.CommitCert.
 *
 * The input is decoded as each of the three messages (protobuf wire format
 * is loose enough that one byte string often decodes as several). Every
 * decoding must re-encode stably; a record's proposal bytes and the txs of
 * every proposal are decoded in turn, as the executor does.
 */
#include "bex.pb-c.h"
#include "fuzz_util.h"

#include <stdint.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m;

    if (size > FUZZ_MAX_LEN)
        return 0;
    if ((m = fuzz_roundtrip(&bex__block_record__descriptor, data, size)) != NULL) {
        const Bex__BlockRecord *r = (const Bex__BlockRecord *)m;
        fuzz_check_proposal_bytes(r->proposal.data, r->proposal.len);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if ((m = fuzz_roundtrip(&bex__block_proposal__descriptor, data, size)) != NULL) {
        const Bex__BlockProposal *p = (const Bex__BlockProposal *)m;
        fuzz_check_proposal_txs(p->txs, p->n_txs);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if ((m = fuzz_roundtrip(&bex__commit_cert__descriptor, data, size)) != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
