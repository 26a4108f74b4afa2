/*
 * p2p_frame_fuzz.c: the frame reader of node/p2p.c, behind a real TLS 1.3
 * link on 127.0.0.1.
 *
 * The reader (conn_parse and the HELLO and control frame handling) is
 * static and runs only on plaintext that came out of the link's TLS session,
 * so the target drives a whole p2p instance: node 1 of a table of three
 * listens in this process, and the fuzzer plays node 0 (or node 2) with its
 * own tls_conn over a plain non-blocking socket, turning the same uv loop
 * between its steps. An established link is kept from one input to the next
 * (a TLS handshake costs far more than an input), and each input leaves the
 * reader between two frames: after the input, the harness completes a
 * partial header or frame with zero bytes and sends a sync frame, then
 * waits until node 1 delivered it (or closed the link).
 *
 * Input: byte 0 is the mode (bits 0-1) and flags; byte 1 the size of the
 * TLS records the payload is cut into (0: one record); the rest is the
 * payload. Modes:
 *   0  the payload is plaintext on the established link (after HELLO);
 *   1  a fresh link: TLS handshake, then the payload is the first
 *      plaintext, where node 1 expects a HELLO (bit 3: the client presents
 *      node 2's key instead of node 0's);
 *   2  the payload is raw bytes on a fresh TCP connection (no TLS): the
 *      TLS layer of node 1 (tls_conn_feed and the handshake) gets garbage;
 *   3  the payload is raw bytes on the established link's socket: garbage
 *      where node 1 expects TLS records.
 * Bit 2 turns the loop between records, so node 1 reads them one by one
 * and resumes mid-header and mid-frame.
 *
 * Checked, with a model of the framing written from p2p.h: the frames node 1
 * delivers are exactly those the model reads from the plaintext, in order;
 * node 1 closes the link exactly when the model says the stream breaks the
 * rules (empty frame, oversize frame, application frame before HELLO, bad or
 * repeated HELLO, bad PING, unknown control type), counting the reason the
 * model names under the right peer; every delivered frame that node 1 sends
 * back (on_frame echoes it with p2p_send) arrives intact; a link that comes
 * up replaces the old one; garbage never brings a link up; every connection
 * is freed again (p2p's pending count returns to its idle value) and
 * LeakSanitizer finds nothing.
 */
#include "fuzz_util.h"
#include "p2p.h"
#include "tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 4096

#define SELF 1
#define NODES 3
#define FRAME_MAX 1024     /* node 1's frame_bytes_max */
#define CTRL_MAX P2P_CTRL_BYTES_MAX
#define CTRL_BIT 0x80000000u
#define FRAMES_MAX 2048    /* frames one input can hold, and then some */
#define STREAM_MAX (FUZZ_MAX_LEN + 2 * FRAME_MAX + 64)
#define PUMPS_MAX 100000   /* loop turns before node 1 counts as hung */
#define PLAIN_MAX (1u << 20)
#define SYNC_BYTES 16

enum mode { MODE_LINK, MODE_FRESH, MODE_TCP_GARBAGE, MODE_TLS_GARBAGE };

/* Frames in order: their lengths and their bytes back to back. */
struct frames {
    size_t n;
    size_t len[FRAMES_MAX];
    size_t bytes;
    uint8_t data[STREAM_MAX + PLAIN_MAX];
};

/* What node 1's reader must do with a plaintext stream, per p2p.h. */
struct model {
    bool up;      /* HELLO exchanged */
    bool closed;
    int reason;   /* of the close */
    bool counted_as_peer; /* the close counts under peer 0, else under unknown */
    uint32_t key_peer;    /* the index whose key the client presented */
    uint8_t hdr[4];
    size_t hdr_have;
    bool ctrl;
    uint32_t len;
    size_t have;
    uint8_t buf[FRAME_MAX];
};

/* The fuzzer's end of a link. */
struct link {
    int fd;
    struct tls_conn *tls;
    bool hs_done;
    bool failed;   /* our TLS session failed */
    bool eof;      /* node 1 closed the connection */
    /* Plaintext node 1 sent, cut into frames as it arrives. */
    uint8_t hdr[4];
    size_t hdr_have;
    uint32_t len;
    bool ctrl;
    size_t have;
    uint8_t *buf;
};

static struct {
    bool ready;
    uv_loop_t loop;
    struct p2p p;
    struct tls_key *keys[NODES];
    struct tls_ctx *ctx[NODES];
    uint8_t pubs[NODES][TLS_PUBKEY_BYTES];
    uint32_t pending_idle[2]; /* p->pending with no link, and with the link up */
    struct link link;         /* the established link, fd < 0 when none */
    struct frames delivered;  /* what node 1 delivered this input */
    struct frames echoed;     /* what came back on the link */
    int ups, downs;
    uint64_t sync_counter;
} S;

static struct model model;
static struct frames expected;

/* ---------------------------------------------------------------- frames */

static void frames_clear(struct frames *f)
{
    f->n = 0;
    f->bytes = 0;
}

static void frames_add(struct frames *f, const uint8_t *bytes, size_t len)
{
    FUZZ_CHECK(f->n < FRAMES_MAX && len <= sizeof(f->data) - f->bytes);
    f->len[f->n++] = len;
    memcpy(f->data + f->bytes, bytes, len);
    f->bytes += len;
}

static bool frames_equal(const struct frames *a, const struct frames *b)
{
    if (a->n != b->n || a->bytes != b->bytes)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        if (a->len[i] != b->len[i])
            return false;
    }
    return memcmp(a->data, b->data, a->bytes) == 0;
}

/* ---------------------------------------------------------------- node 1 */

static void on_frame(uint32_t peer, const uint8_t *bytes, size_t len, void *ud)
{
    (void)ud;
    FUZZ_CHECK(peer == 0);
    FUZZ_CHECK(len > 0 && len <= FRAME_MAX);
    frames_add(&S.delivered, bytes, len);
    /* Echoed, so the send path carries the same bytes back. */
    if (p2p_send(&S.p, peer, bytes, len) != 0)
        fuzz_fail("p2p_send of an echo failed on an up link");
}

static void on_peer(uint32_t peer, bool up, void *ud)
{
    (void)ud;
    FUZZ_CHECK(peer == 0);
    if (up) {
        FUZZ_CHECK(S.ups == S.downs);
        S.ups++;
    } else {
        FUZZ_CHECK(S.ups == S.downs + 1);
        S.downs++;
    }
}

static void on_log(int level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
}

static int verify_node1(const uint8_t pubkey[TLS_PUBKEY_BYTES], void *ud)
{
    (void)ud;
    return memcmp(pubkey, S.pubs[SELF], TLS_PUBKEY_BYTES) == 0 ? 0 : -BEX_EPERM;
}

/* ---------------------------------------------------------------- client side */

static void link_reset(struct link *l)
{
    uint8_t *buf = l->buf;

    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->buf = buf;
}

static void raw_send(struct link *l, const uint8_t *data, size_t len)
{
    while (len > 0 && !l->eof) {
        ssize_t n = send(l->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            (void)uv_run(&S.loop, UV_RUN_NOWAIT);
            continue;
        }
        if (n <= 0) {
            l->eof = true;
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void link_flush(struct link *l)
{
    uint8_t buf[16384];
    size_t n;

    while (l->tls != NULL && (n = tls_conn_take(l->tls, buf, sizeof(buf))) > 0)
        raw_send(l, buf, n);
}

/* Cuts the plaintext node 1 sent into frames; application frames are echoes. */
static void link_plain(struct link *l, const uint8_t *data, size_t n)
{
    while (n > 0) {
        size_t take;
        if (l->hdr_have < 4) {
            l->hdr[l->hdr_have++] = *data++;
            n--;
            if (l->hdr_have == 4) {
                uint32_t v = (uint32_t)l->hdr[0] << 24 | (uint32_t)l->hdr[1] << 16 | (uint32_t)l->hdr[2] << 8 |
                             l->hdr[3];
                l->ctrl = (v & CTRL_BIT) != 0;
                l->len = v & ~CTRL_BIT;
                l->have = 0;
                if (l->len == 0 || l->len > (l->ctrl ? CTRL_MAX : FRAME_MAX))
                    fuzz_fail("node 1 sent a frame header of %s length %u", l->ctrl ? "control" : "application",
                              l->len);
            }
            continue;
        }
        take = l->len - l->have < n ? l->len - l->have : n;
        memcpy(l->buf + l->have, data, take);
        l->have += take;
        data += take;
        n -= take;
        if (l->have == l->len) {
            if (!l->ctrl)
                frames_add(&S.echoed, l->buf, l->len);
            l->hdr_have = 0;
        }
    }
}

/* Turns the loop once, then takes what node 1 sent on this link. */
static void link_pump(struct link *l)
{
    uint8_t buf[16384];

    (void)uv_run(&S.loop, UV_RUN_NOWAIT);
    while (l->fd >= 0 && !l->eof) {
        ssize_t n = recv(l->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            l->eof = true;
            break;
        }
        if (l->tls == NULL || l->failed)
            continue;
        FUZZ_CHECK(tls_conn_feed(l->tls, buf, (size_t)n) == 0);
    }
    if (l->tls == NULL || l->failed)
        return;
    if (!l->hs_done && tls_conn_handshake(l->tls, &l->hs_done) != 0)
        l->failed = true;
    while (l->hs_done && !l->failed) {
        size_t got = 0;
        if (tls_conn_read(l->tls, buf, sizeof(buf), &got) != 0)
            l->failed = true;
        if (got == 0)
            break;
        link_plain(l, buf, got);
    }
    link_flush(l);
}

static void link_close(struct link *l)
{
    if (l->fd >= 0)
        close(l->fd);
    tls_conn_free(l->tls);
    link_reset(l);
}

/* Connects and completes the TLS handshake as node `identity`; false if node 1 refused it. */
static bool link_open(struct link *l, unsigned identity)
{
    link_reset(l);
    l->fd = fuzz_tcp_connect(p2p_port(&S.p));
    if (tls_conn_new(&l->tls, S.ctx[identity], false, verify_node1, NULL) != 0)
        fuzz_fail("tls_conn_new failed");
    if (tls_conn_handshake(l->tls, &l->hs_done) != 0)
        fuzz_fail("the ClientHello failed");
    link_flush(l);
    for (int i = 0; !l->hs_done && !l->failed && !l->eof; i++) {
        if (i == PUMPS_MAX)
            fuzz_fail("the TLS handshake with node 1 does not finish");
        link_pump(l);
    }
    return l->hs_done && !l->failed;
}

/* Sends plaintext in records of `record` bytes (0: one), turning the loop between them if asked. */
static void link_write(struct link *l, const uint8_t *data, size_t len, size_t record, bool pump)
{
    if (record == 0)
        record = len;
    for (size_t at = 0; at < len && !l->eof; at += record) {
        size_t n = len - at < record ? len - at : record;
        if (tls_conn_write(l->tls, data + at, n) != 0)
            fuzz_fail("tls_conn_write failed");
        link_flush(l);
        if (pump)
            link_pump(l);
    }
}

/* Waits until node 1 closed l and freed what it held for it. */
static void wait_closed(struct link *l, uint32_t pending_after)
{
    for (int i = 0; !l->eof || S.p.pending != pending_after; i++) {
        if (i == PUMPS_MAX)
            fuzz_fail("node 1 did not close and free the connection (pending %u, want %u)", S.p.pending,
                      pending_after);
        link_pump(l);
    }
}

/* ---------------------------------------------------------------- the model */

static void model_close(int reason)
{
    model.closed = true;
    model.reason = reason;
    model.counted_as_peer = model.up;
}

static void model_control(const uint8_t *body, size_t len)
{
    switch (body[0]) {
    case 1: /* HELLO: type, version, index (2 bytes, BE) */
        if (model.up || len != 4 || body[1] != P2P_WIRE_VERSION) {
            model_close(P2P_REASON_MALFORMED);
            return;
        }
        if (((uint32_t)body[2] << 8 | body[3]) != model.key_peer) {
            model_close(P2P_REASON_BAD_KEY);
            return;
        }
        /* Only a lower index dials. */
        if (model.key_peer > SELF) {
            model_close(P2P_REASON_MALFORMED);
            return;
        }
        model.up = true;
        return;
    case 2: /* PING: the type byte alone, on an up link */
        if (len != 1 || !model.up)
            model_close(P2P_REASON_MALFORMED);
        return;
    default:
        model_close(P2P_REASON_MALFORMED);
        return;
    }
}

static void model_feed(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n && !model.closed; i++) {
        if (model.hdr_have < 4) {
            model.hdr[model.hdr_have++] = data[i];
            if (model.hdr_have < 4)
                continue;
            uint32_t v = (uint32_t)model.hdr[0] << 24 | (uint32_t)model.hdr[1] << 16 |
                         (uint32_t)model.hdr[2] << 8 | model.hdr[3];
            model.ctrl = (v & CTRL_BIT) != 0;
            model.len = v & ~CTRL_BIT;
            model.have = 0;
            if (model.len == 0 || (model.ctrl && model.len > CTRL_MAX))
                model_close(P2P_REASON_MALFORMED);
            else if (!model.ctrl && model.len > FRAME_MAX)
                model_close(P2P_REASON_OVERSIZE);
            else if (!model.ctrl && !model.up)
                model_close(P2P_REASON_MALFORMED);
            continue;
        }
        model.buf[model.have++] = data[i];
        if (model.have < model.len)
            continue;
        model.hdr_have = 0;
        if (model.ctrl)
            model_control(model.buf, model.len);
        else
            frames_add(&expected, model.buf, model.len);
    }
}

/* Zero bytes that bring the stream to a frame boundary (the model may close on them). */
static size_t model_padding(void)
{
    if (model.closed)
        return 0;
    if (model.hdr_have > 0 && model.hdr_have < 4)
        return 4 - model.hdr_have;
    if (model.hdr_have == 4)
        return model.len - model.have;
    return 0;
}

/* ---------------------------------------------------------------- driving */

static void stats_now(struct p2p_stats *st)
{
    p2p_stats(&S.p, st);
}

/* The HELLO node 0 sends, then waits for node 1's answer and the link to come up. */
static bool link_establish(struct link *l)
{
    static const uint8_t hello[] = {0x80, 0, 0, 4, 1, P2P_WIRE_VERSION, 0, 0};

    if (!link_open(l, 0))
        return false;
    link_write(l, hello, sizeof(hello), 0, false);
    for (int i = 0; !p2p_peer_up(&S.p, 0) && !l->eof; i++) {
        if (i == PUMPS_MAX)
            fuzz_fail("the link does not come up after HELLO");
        link_pump(l);
    }
    return p2p_peer_up(&S.p, 0);
}

static void setup(void)
{
    struct p2p_config cfg;
    int rc;

    FUZZ_CHECK(uv_loop_init(&S.loop) == 0);
    for (unsigned i = 0; i < NODES; i++) {
        if (tls_key_new(&S.keys[i]) != 0 || tls_ctx_new(&S.ctx[i], S.keys[i]) != 0)
            fuzz_fail("cannot make TLS key %u", i);
        tls_pubkey_raw(S.keys[i], S.pubs[i]);
    }
    p2p_config_defaults(&cfg);
    cfg.self = SELF;
    cfg.listen = "127.0.0.1:0";
    cfg.key = S.keys[SELF];
    cfg.peers_len = NODES;
    for (unsigned i = 0; i < NODES; i++) {
        cfg.peers[i].index = i;
        memcpy(cfg.peers[i].pubkey, S.pubs[i], TLS_PUBKEY_BYTES);
    }
    cfg.frame_bytes_max = FRAME_MAX;
    /* No timer may fire during a run: the links stay up as long as the harness wants. */
    cfg.handshake_timeout_ms = 24u * 3600 * 1000;
    cfg.idle_timeout_ms = 24u * 3600 * 1000;
    cfg.on_frame = on_frame;
    cfg.on_peer = on_peer;
    cfg.on_log = on_log;
    if ((rc = p2p_init(&S.p, &S.loop, &cfg)) != 0)
        fuzz_fail("p2p_init: %s: %s", bex_errname(rc), p2p_error(&S.p));
    S.pending_idle[0] = S.p.pending;
    if ((S.link.buf = malloc(FRAME_MAX)) == NULL)
        fuzz_fail("out of memory for the link");
    link_reset(&S.link);
    if (!link_establish(&S.link))
        fuzz_fail("cannot establish the first link");
    for (int i = 0; i < 16; i++)
        link_pump(&S.link);
    S.pending_idle[1] = S.p.pending;
    FUZZ_CHECK(S.pending_idle[1] > S.pending_idle[0]);
    S.ready = true;
}

/*
 * After the payload of a plaintext mode: pads to a frame boundary, sends a
 * sync frame if the model still has an up link, and waits for node 1 to
 * deliver it (and echo it back) or to close the link and return to
 * pending_closed; then compares.
 */
static void finish_plain(struct link *l, const struct p2p_stats *before, uint32_t pending_closed)
{
    static const uint8_t zeros[FRAME_MAX];
    struct p2p_stats after;
    size_t pad;

    while ((pad = model_padding()) > 0) {
        model_feed(zeros, pad);
        link_write(l, zeros, pad, 0, false);
    }
    if (!model.closed && model.up) {
        uint8_t sync[4 + SYNC_BYTES] = {0, 0, 0, SYNC_BYTES, 'b', 'e', 'x', '-', 's', 'y', 'n', 'c'};
        for (int i = 0; i < 8; i++)
            sync[4 + 8 + i] = (uint8_t)(S.sync_counter >> (8 * i));
        S.sync_counter++;
        model_feed(sync, sizeof(sync));
        link_write(l, sync, sizeof(sync), 0, false);
        for (int i = 0; S.echoed.n < expected.n && !l->eof && !l->failed; i++) {
            if (i == PUMPS_MAX)
                fuzz_fail("node 1 did not deliver and echo the sync frame (%zu of %zu frames)", S.echoed.n,
                          expected.n);
            link_pump(l);
        }
        if (l->eof || l->failed)
            fuzz_fail("node 1 dropped a link that follows the wire format");
        if (!frames_equal(&S.echoed, &S.delivered))
            fuzz_fail("the echoed frames differ from the delivered ones");
    } else if (!model.closed) {
        /* A fresh link still waiting for its HELLO: we give up on it. */
        shutdown(l->fd, SHUT_WR);
        model_close(P2P_REASON_EOF);
    }
    if (!model.closed) {
        if (!frames_equal(&S.delivered, &expected))
            fuzz_fail("node 1 delivered %zu frames, the model %zu", S.delivered.n, expected.n);
        return;
    }
    /* Node 1 must close the link, for the reason the model gives, counted under the right peer. */
    wait_closed(l, pending_closed);
    if (!frames_equal(&S.delivered, &expected))
        fuzz_fail("node 1 delivered %zu frames before closing, the model %zu", S.delivered.n, expected.n);
    stats_now(&after);
    const struct p2p_peer_stats *b = model.counted_as_peer ? &before->peer[0] : &before->unknown;
    const struct p2p_peer_stats *a = model.counted_as_peer ? &after.peer[0] : &after.unknown;
    if (a->disconnects[model.reason] != b->disconnects[model.reason] + 1)
        fuzz_fail("node 1 did not count a %s disconnect under %s", p2p_reason_name(model.reason),
                  model.counted_as_peer ? "peer 0" : "unknown");
}

static void run_link(const uint8_t *data, size_t size, size_t record, bool pump)
{
    struct p2p_stats before;

    if (S.link.fd < 0 && !link_establish(&S.link))
        fuzz_fail("cannot re-establish the link");
    stats_now(&before);
    memset(&model, 0, sizeof(model));
    model.up = true;
    model.key_peer = 0;
    model_feed(data, size);
    link_write(&S.link, data, size, record, pump);
    finish_plain(&S.link, &before, S.pending_idle[0]);
    if (model.closed)
        link_close(&S.link);
}

static void run_fresh(const uint8_t *data, size_t size, size_t record, bool pump, unsigned identity)
{
    static struct link fresh;
    struct p2p_stats before;
    bool had_link = S.link.fd >= 0;

    if (fresh.buf == NULL && (fresh.buf = malloc(FRAME_MAX)) == NULL)
        fuzz_fail("out of memory for a link");
    stats_now(&before);
    memset(&model, 0, sizeof(model));
    model.key_peer = identity;
    if (!link_open(&fresh, identity))
        fuzz_fail("node 1 refused the TLS handshake of listed node %u", identity);
    model_feed(data, size);
    link_write(&fresh, data, size, record, pump);
    /* Closed, the fresh link leaves the old one as it was, unless it came up first and replaced it. */
    finish_plain(&fresh, &before, had_link && !model.up ? S.pending_idle[1] : S.pending_idle[0]);
    if (model.up && had_link) {
        wait_closed(&S.link, model.closed ? S.pending_idle[0] : S.pending_idle[1]);
        link_close(&S.link);
    }
    if (model.closed) {
        link_close(&fresh);
        return;
    }
    FUZZ_CHECK(p2p_peer_up(&S.p, 0));
    S.link.fd = fresh.fd;
    S.link.tls = fresh.tls;
    S.link.hs_done = true;
    /* The new link is between frames: the reader state starts over. */
    fresh.fd = -1;
    fresh.tls = NULL;
    link_reset(&fresh);
}

static void run_tcp_garbage(const uint8_t *data, size_t size)
{
    static struct link raw;
    bool had_link = S.link.fd >= 0;

    link_reset(&raw);
    raw.fd = fuzz_tcp_connect(p2p_port(&S.p));
    raw_send(&raw, data, size);
    shutdown(raw.fd, SHUT_WR);
    wait_closed(&raw, had_link ? S.pending_idle[1] : S.pending_idle[0]);
    if (had_link != p2p_peer_up(&S.p, 0))
        fuzz_fail("garbage on another connection changed the link");
    link_close(&raw);
}

static void run_tls_garbage(const uint8_t *data, size_t size)
{
    if (S.link.fd < 0 && !link_establish(&S.link))
        fuzz_fail("cannot re-establish the link");
    raw_send(&S.link, data, size);
    /* Whatever node 1 made of it, it cannot be a valid record: the link ends. */
    shutdown(S.link.fd, SHUT_WR);
    S.link.failed = true;
    wait_closed(&S.link, S.pending_idle[0]);
    FUZZ_CHECK(!p2p_peer_up(&S.p, 0));
    link_close(&S.link);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_LEN)
        return 0;
    if (!S.ready)
        setup();
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t record = data[1];
    data += 2;
    size -= 2;

    frames_clear(&S.delivered);
    frames_clear(&S.echoed);
    frames_clear(&expected);
    switch ((enum mode)(flags & 3)) {
    case MODE_LINK:
        run_link(data, size, record, (flags & 4) != 0);
        break;
    case MODE_FRESH:
        run_fresh(data, size, record, (flags & 4) != 0, flags & 8 ? 2 : 0);
        break;
    case MODE_TCP_GARBAGE:
        run_tcp_garbage(data, size);
        break;
    case MODE_TLS_GARBAGE:
        run_tls_garbage(data, size);
        break;
    }
    FUZZ_CHECK(S.ups - S.downs == (p2p_peer_up(&S.p, 0) ? 1 : 0));
    FUZZ_CHECK(S.p.pending == S.pending_idle[S.link.fd >= 0 ? 1 : 0]);
    return 0;
}
