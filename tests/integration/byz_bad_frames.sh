#!/bin/sh
# Bad frames: node4 of a 5-node network (f = 1) runs bexd-byz with
# BEX_BYZ=bad_frames and every 250 ms sends one peer a frame header above
# the frame limit, random bytes inside the TLS session, a truncated Envelope
# or a frame of random bytes. Each honest node drops the link on the spot
# (bex_p2p_disconnects_total{reason="oversize"} and {reason="malformed"})
# and redials with back-off; under load the honest nodes commit everything,
# agree, and none of them crashes.
. "$(dirname "$0")/byz_lib.sh"

it_setup byz_bad_frames
byz_net 5 4 bad_frames
byz_load 1500 500 5
byz_expect_sent bad_frames
byz_expect_metric 'bex_p2p_disconnects_total{reason="oversize"}'
byz_expect_metric 'bex_p2p_disconnects_total{reason="malformed"}'
byz_show_faults
it_done
