/*
 * pbft_wire_test.c: the engine's messages through their protobuf form, and
 * the decoder refusing what no honest peer sends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pbft_wire.h"

static struct wire_scratch scratch;

static struct pbft_msg vote_msg(uint64_t view)
{
    struct pbft_msg m;

    memset(&m, 0, sizeof m);
    m.type = PBFT_MSG_PREPARE;
    m.vote.type = PBFT_MSG_PREPARE;
    m.vote.view = view;
    m.vote.seq = 7;
    m.vote.replica = 2;
    memset(m.vote.digest, 0xab, sizeof m.vote.digest);
    memset(m.vote.sig, 0x11, sizeof m.vote.sig);
    return m;
}

/* Decodes bytes as a peer's envelope would be: not as a persisted message. */
static int from_network(struct pbft_msg *out, const uint8_t *bytes, size_t len)
{
    Bex__Envelope *env = bex__envelope__unpack(NULL, len, bytes);
    int rc;

    assert_non_null(env);
    rc = wire_from_envelope(out, &scratch, env);
    bex__envelope__free_unpacked(env, NULL);
    return rc;
}

static void pbft_wire_vote_round_trip(void **state)
{
    struct pbft_msg m = vote_msg(3), got;
    uint8_t *buf;
    size_t len;

    (void)state;
    assert_int_equal(wire_encode(&buf, &len, &m), 0);
    assert_int_equal(from_network(&got, buf, len), 0);
    assert_int_equal(got.type, PBFT_MSG_PREPARE);
    assert_memory_equal(&got.vote, &m.vote, sizeof m.vote);
    free(buf);
}

/*
 * Views above half the range are refused: more than f Byzantine replicas
 * could otherwise push an honest one into the views the persisted messages
 * use as tags.
 */
static void pbft_wire_view_out_of_range_refused(void **state)
{
    static struct pbft_view_change vc;
    struct pbft_msg m = vote_msg(UINT64_MAX >> 1), got;
    uint8_t *buf;
    size_t len;

    (void)state;
    assert_int_equal(wire_encode(&buf, &len, &m), 0);
    assert_int_equal(from_network(&got, buf, len), 0);
    free(buf);

    m = vote_msg((UINT64_MAX >> 1) + 1);
    assert_int_equal(wire_encode(&buf, &len, &m), 0);
    assert_int_equal(from_network(&got, buf, len), -BEX_EDECODE);
    free(buf);

    memset(&vc, 0, sizeof vc);
    vc.new_view = UINT64_MAX - 2;
    vc.replica = 1;
    memset(&m, 0, sizeof m);
    m.type = PBFT_MSG_VIEW_CHANGE;
    m.view_change = &vc;
    assert_int_equal(wire_encode(&buf, &len, &m), 0);
    assert_int_equal(from_network(&got, buf, len), -BEX_EDECODE);
    free(buf);

    vc.new_view = 9;
    vc.prepared_count = 1;
    vc.prepared[0].view = UINT64_MAX;
    vc.prepared[0].seq = 3;
    assert_int_equal(wire_encode(&buf, &len, &m), 0);
    assert_int_equal(from_network(&got, buf, len), -BEX_EDECODE);
    free(buf);
}

/* A persisted PREPARED certificate decodes from disk but never from a peer. */
static void pbft_wire_persisted_only_from_disk(void **state)
{
    static struct pbft_prepared pr;
    struct pbft_msg m, got;
    uint8_t *buf;
    size_t len;

    (void)state;
    memset(&pr, 0, sizeof pr);
    pr.view = 4;
    pr.seq = 12;
    memset(pr.digest, 0x5a, sizeof pr.digest);
    memset(&m, 0, sizeof m);
    m.type = PBFT_MSG_PREPARED;
    m.prepared = &pr;
    assert_int_equal(wire_encode(&buf, &len, &m), 0);
    assert_int_equal(wire_decode(&got, &scratch, buf, len), 0);
    assert_int_equal(got.type, PBFT_MSG_PREPARED);
    assert_int_equal(got.prepared->view, 4);
    assert_int_equal(got.prepared->seq, 12);
    assert_int_equal(from_network(&got, buf, len), -BEX_EDECODE);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pbft_wire_vote_round_trip),
        cmocka_unit_test(pbft_wire_view_out_of_range_refused),
        cmocka_unit_test(pbft_wire_persisted_only_from_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
