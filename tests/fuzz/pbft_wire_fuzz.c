/*
 * pbft_wire_fuzz.c: the consensus messages as the node decodes them from
 * peers and from its own persisted votes (node/pbft_wire.h).
 *
 * The input is decoded with wire_decode(), which must succeed or refuse
 * with -BEX_EDECODE or -BEX_EINVAL. A decoded message must encode with
 * wire_encode(), and that encoding must decode and encode again to the same
 * bytes: what a replica persisted or sent, it and its peers read back alike.
 * The same bytes are also decoded as a bex.CommitCert and, when
 * wire_cert_from_proto() accepts it, the certificate must survive
 * wire_cert_encode() and a second decoding unchanged.
 */
#include "bex.pb-c.h"
#include "fuzz_util.h"
#include "pbft_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 65536

static struct wire_scratch scratch;

static void check_message(const uint8_t *data, size_t size)
{
    static struct pbft_msg msg;
    uint8_t *once = NULL, *twice = NULL;
    size_t once_len, twice_len;

    int rc = wire_decode(&msg, &scratch, data, size);
    if (rc != 0) {
        if (rc != -BEX_EDECODE && rc != -BEX_EINVAL)
            fuzz_fail("wire_decode returned %s", bex_errname(rc));
        return;
    }
    if ((rc = wire_encode(&once, &once_len, &msg)) != 0)
        fuzz_fail("a decoded message does not encode: %s", bex_errname(rc));
    if ((rc = wire_decode(&msg, &scratch, once, once_len)) != 0)
        fuzz_fail("wire_encode output (%zu bytes) does not decode: %s", once_len, bex_errname(rc));
    if ((rc = wire_encode(&twice, &twice_len, &msg)) != 0)
        fuzz_fail("a re-decoded message does not encode: %s", bex_errname(rc));
    if (twice_len != once_len || memcmp(once, twice, once_len) != 0)
        fuzz_fail("wire encoding is not stable (%zu then %zu bytes)", once_len, twice_len);
    free(twice);
    free(once);
}

static void check_cert(const uint8_t *data, size_t size)
{
    static struct pbft_commit_cert cert, again;
    uint8_t digest[PBFT_DIGEST_BYTES], digest_again[PBFT_DIGEST_BYTES];
    uint64_t seq, seq_again;
    uint8_t *once = NULL, *twice = NULL;
    size_t once_len, twice_len;
    Bex__CommitCert *c = bex__commit_cert__unpack(NULL, size, data);

    if (c == NULL)
        return;
    int rc = wire_cert_from_proto(&cert, &seq, digest, c);
    bex__commit_cert__free_unpacked(c, NULL);
    if (rc != 0) {
        if (rc != -BEX_EDECODE)
            fuzz_fail("wire_cert_from_proto returned %s", bex_errname(rc));
        return;
    }
    FUZZ_CHECK(wire_cert_encode(&once, &once_len, seq, digest, &cert) == 0);
    c = bex__commit_cert__unpack(NULL, once_len, once);
    if (c == NULL || wire_cert_from_proto(&again, &seq_again, digest_again, c) != 0)
        fuzz_fail("wire_cert_encode output (%zu bytes) does not decode", once_len);
    bex__commit_cert__free_unpacked(c, NULL);
    FUZZ_CHECK(seq_again == seq && memcmp(digest_again, digest, sizeof(digest)) == 0);
    FUZZ_CHECK(wire_cert_encode(&twice, &twice_len, seq_again, digest_again, &again) == 0);
    if (twice_len != once_len || memcmp(once, twice, once_len) != 0)
        fuzz_fail("certificate encoding is not stable (%zu then %zu bytes)", once_len, twice_len);
    free(twice);
    free(once);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_LEN)
        return 0;
    check_message(data, size);
    check_cert(data, size);
    return 0;
}
