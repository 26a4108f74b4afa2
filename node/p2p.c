/*
 * p2p.c: TCP + TLS 1.3 links between nodes, framing, queues and redial.
 *
 * Lifetimes. A struct p2p_conn is one TCP connection; it owns a uv_tcp_t,
 * a uv_timer_t (handshake deadline, then keepalive ticks) and a tls_conn.
 * conn_close() only marks it closing and closes its handles; the memory is
 * freed in the last close callback, a safe point of the loop, so code that
 * still holds the pointer (a read callback delivering frames, a write
 * callback) can check c->closing and stop. Outstanding writes and connects
 * are cancelled by libuv before the close callbacks run.
 *
 * p->pending counts everything that must finish before p2p_close()'s
 * callback may run: p-level handles, connections and address lookups.
 *
 * Peer notifications. "down" is owed when the up link of a peer closes and is
 * delivered from that link's close callback, never from inside p2p_send():
 * callers may send from anywhere without being re-entered. If a new link
 * comes up first, the owed "down" is delivered just before its "up".
 */
#include "p2p.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#define READ_BYTES (64 * 1024)
#define PLAIN_BYTES TLS_RECORD_PLAIN_MAX
#define BLOCK_BYTES (64 * 1024)  /* send queue block */
#define WRITE_BLOCKS_MAX 16       /* blocks handed to one uv_write */
#define RX_MIN_BYTES 4096
#define RX_KEEP_BYTES (64 * 1024) /* larger receive buffers are released after each frame */
#define ALERT_BYTES_MAX 1024      /* output sent best-effort when a link is dropped */
#define CTRL_BIT 0x80000000u
#define CTRL_HELLO 1
#define CTRL_PING 2
#define HELLO_BYTES 4
#define BACKOFF_SHIFT_MAX 20
#define LOG_BYTES 384
#define LISTEN_BACKLOG 128

_Static_assert(HELLO_BYTES <= P2P_CTRL_BYTES_MAX, "HELLO fits a control frame");
_Static_assert(PLAIN_BYTES > P2P_FRAME_HEADER_BYTES + P2P_CTRL_BYTES_MAX, "scratch holds a control frame");

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum conn_state {
    CONN_CONNECTING, /* outbound TCP connect in progress */
    CONN_HANDSHAKE,  /* TLS handshake */
    CONN_HELLO,      /* TLS done, waiting for the peer's HELLO */
    CONN_UP,
};

/*
 * The send queue is a list of ciphertext blocks. The TLS output buffer is
 * drained into it after every record, so that buffer stays one record small
 * (a growing OpenSSL memory BIO copies and wipes itself on each growth), and
 * blocks go to the socket without another copy. Blocks handed to a
 * uv_write are sealed: nothing is appended to them while in flight.
 */
struct out_block {
    struct out_block *next;
    size_t len;
    bool sealed;
    uint8_t data[BLOCK_BYTES];
};

struct p2p_conn {
    struct p2p *p;
    struct p2p_conn *prev;
    struct p2p_conn *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    struct tls_conn *tls;
    enum conn_state state;
    uint32_t peer;     /* P2P_PEER_NONE until identified */
    uint32_t key_peer; /* inbound: the index whose key the certificate carries */
    int handles;       /* libuv handles not yet closed */
    bool outbound;
    bool closing;
    bool writing;
    bool inbound_pending;
    uint64_t last_rx_ms;
    uint64_t last_tx_ms;
    uint64_t up_ms;
    uv_write_t write_req; /* one write in flight at a time */
    int write_blocks;     /* blocks at the head of the queue it covers */
    size_t write_bytes;
    struct out_block *out_head;
    struct out_block *out_tail;
    size_t out_bytes; /* ciphertext queued, including the write in flight */
    uint8_t *tx_buf;  /* plaintext coalesced into the next record */
    size_t tx_len;
    char remote[P2P_ADDR_MAX];
    /* The frame being received. */
    uint8_t hdr[P2P_FRAME_HEADER_BYTES];
    size_t hdr_have;
    uint32_t rx_len;
    bool rx_ctrl;
    uint8_t *rx_buf;
    size_t rx_cap;
    size_t rx_have;
};

static const char *const reason_names[P2P_REASON_COUNT] = {
    [P2P_REASON_EOF] = "eof",
    [P2P_REASON_IO] = "io",
    [P2P_REASON_HANDSHAKE] = "handshake",
    [P2P_REASON_BAD_KEY] = "bad_key",
    [P2P_REASON_OVERSIZE] = "oversize",
    [P2P_REASON_MALFORMED] = "malformed",
    [P2P_REASON_SLOW] = "slow",
    [P2P_REASON_IDLE] = "idle",
    [P2P_REASON_REPLACED] = "replaced",
    [P2P_REASON_BUSY] = "busy",
    [P2P_REASON_LOCAL] = "local",
};

const char *p2p_reason_name(int reason)
{
    if (reason < 0 || reason >= P2P_REASON_COUNT)
        return "unknown";
    return reason_names[reason];
}

static void conn_close(struct p2p_conn *c, int reason, const char *fmt, ...) BEX_PRINTF(3, 4);
static void conn_flush(struct p2p_conn *c);
static void peer_dial(struct p2p_peer *pe);

/* ---------------------------------------------------------------- helpers */

static void plog(struct p2p *p, int level, const char *fmt, ...) BEX_PRINTF(3, 4);

static void plog(struct p2p *p, int level, const char *fmt, ...)
{
    char msg[LOG_BYTES];
    va_list ap;
    int n;

    /* After p2p_close() no callback but the close callback runs. */
    if (p->closing)
        return;
    n = snprintf(msg, sizeof(msg), "p2p[%u]: ", p->cfg.self);
    BEX_ASSERT(n > 0 && (size_t)n < sizeof(msg));
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    if (p->cfg.on_log != NULL)
        p->cfg.on_log(level, msg, p->cfg.ud);
    else
        fprintf(stderr, "%s\n", msg);
}

/* xorshift64*: jitter only, never security. */
static uint64_t rng_next(struct p2p *p)
{
    uint64_t x = p->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    p->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void rng_seed(struct p2p *p)
{
    uint64_t s = 0;

    if (RAND_bytes((unsigned char *)&s, sizeof(s)) != 1)
        s = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    p->rng = s != 0 ? s : 0x9E3779B97F4A7C15ULL;
}

/* Redial delay: exponential in the failed attempts, capped, with equal jitter. */
static uint64_t backoff_ms(struct p2p *p, uint32_t attempts)
{
    uint32_t shift = attempts < BACKOFF_SHIFT_MAX ? attempts : BACKOFF_SHIFT_MAX;
    uint64_t base = (uint64_t)p->cfg.reconnect_min_ms << shift;
    uint64_t half;

    if (base > p->cfg.reconnect_max_ms)
        base = p->cfg.reconnect_max_ms;
    half = base / 2;
    return half + rng_next(p) % (base - half + 1);
}

/*
 * How much one frame can grow the send queue: its bytes plus the overhead of
 * every record it may complete, including the partial record before it.
 */
static size_t frame_sealed_bytes(size_t len)
{
    size_t plain = P2P_FRAME_HEADER_BYTES + len;

    return plain + TLS_RECORD_OVERHEAD * (plain / TLS_RECORD_PLAIN_MAX + 2);
}

/*
 * Splits "host:port" or "[v6]:port" into `host` and `port`. Only characters
 * of host names and IP literals are accepted.
 */
static int addr_split(const char *addr, char *host, size_t host_len, uint16_t *port)
{
    const char *h = addr;
    const char *colon;
    size_t hl;
    unsigned long v = 0;

    if (addr == NULL)
        return -BEX_EINVAL;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':')
            return -BEX_EINVAL;
        h = addr + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -BEX_EINVAL;
        hl = (size_t)(colon - addr);
        if (memchr(addr, ':', hl) != NULL)
            return -BEX_EINVAL; /* an IPv6 literal needs brackets */
    }
    if (hl == 0 || hl >= host_len)
        return -BEX_EINVAL;
    for (size_t i = 0; i < hl; i++) {
        char ch = h[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '%';
        if (!ok)
            return -BEX_EINVAL;
    }
    if (colon[1] == '\0' || strlen(colon + 1) > 5)
        return -BEX_EINVAL;
    for (const char *d = colon + 1; *d != '\0'; d++) {
        if (*d < '0' || *d > '9')
            return -BEX_EINVAL;
        v = v * 10 + (unsigned long)(*d - '0');
    }
    if (v > 65535)
        return -BEX_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

static int addr_numeric(struct sockaddr_storage *ss, const char *host, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -BEX_EINVAL;
}

static void sockaddr_text(const struct sockaddr_storage *ss, char *out, size_t out_len)
{
    char ip[64] = "?";

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, out_len, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, out_len, "%s:%u", ip, ntohs(a->sin_port));
    }
}

static struct p2p_peer_stats *stats_of(struct p2p_conn *c)
{
    return c->peer != P2P_PEER_NONE ? &c->p->peers[c->peer].stats : &c->p->unknown;
}

static size_t conn_queue_bytes(const struct p2p_conn *c)
{
    return c->out_bytes + c->tx_len + (c->tls != NULL ? tls_conn_out_pending(c->tls) : 0);
}

/* Frees the `count` blocks at the head of the send queue. */
static void out_pop(struct p2p_conn *c, int count)
{
    while (count-- > 0) {
        struct out_block *b = c->out_head;
        BEX_ASSERT(b != NULL);
        BEX_ASSERT(c->out_bytes >= b->len);
        c->out_head = b->next;
        c->out_bytes -= b->len;
        free(b);
    }
    if (c->out_head == NULL)
        c->out_tail = NULL;
}

static void notify_peer(struct p2p *p, uint32_t peer, bool up)
{
    if (!p->closing && p->cfg.on_peer != NULL)
        p->cfg.on_peer(peer, up, p->cfg.ud);
}

/* Runs the close callback once everything of a closing p2p is released. */
static void finish_if_done(struct p2p *p)
{
    p2p_close_fn cb;

    if (!p->closing || p->pending > 0)
        return;
    BEX_ASSERT(p->conns == NULL);
    tls_ctx_free(p->tls);
    p->tls = NULL;
    free(p->read_buf);
    free(p->rx_plain);
    p->read_buf = p->rx_plain = NULL;
    cb = p->close_cb;
    p->close_cb = NULL;
    if (cb != NULL)
        cb(p, p->cfg.ud);
}

static void p_handle_closed(uv_handle_t *h)
{
    struct p2p *p = h->data;

    BEX_ASSERT(p->pending > 0);
    p->pending--;
    finish_if_done(p);
}

/* ---------------------------------------------------------------- redial */

static void on_retry(uv_timer_t *t)
{
    struct p2p_peer *pe = container_of(t, struct p2p_peer, retry);

    peer_dial(pe);
}

/* Schedules the next dial of `pe`; `reset` after a link that stayed up. */
static void peer_retry(struct p2p_peer *pe, bool reset)
{
    struct p2p *p = pe->p;
    uint64_t delay;

    if (p->closing || !pe->retry_init)
        return;
    if (reset)
        pe->attempts = 0;
    delay = backoff_ms(p, pe->attempts);
    if (pe->attempts < UINT32_MAX)
        pe->attempts++;
    BEX_ASSERT(uv_timer_start(&pe->retry, on_retry, delay, 0) == 0);
}

/* ---------------------------------------------------------------- connections */

static void conn_handle_closed(uv_handle_t *h)
{
    struct p2p_conn *c = h->data;
    struct p2p *p = c->p;
    uint32_t peer = c->peer;

    BEX_ASSERT(c->handles > 0);
    if (--c->handles > 0)
        return;
    BEX_ASSERT(c->closing);
    BEX_ASSERT(!c->writing);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    while (c->out_head != NULL)
        out_pop(c, 1);
    tls_conn_free(c->tls);
    free(c->tx_buf);
    free(c->rx_buf);
    free(c);

    if (peer != P2P_PEER_NONE) {
        struct p2p_peer *pe = &p->peers[peer];
        if (pe->down_pending && pe->conn == NULL) {
            pe->down_pending = false;
            notify_peer(p, peer, false);
        }
    }
    BEX_ASSERT(p->pending > 0);
    p->pending--;
    finish_if_done(p);
}

static void conn_name(const struct p2p_conn *c, char *out, size_t out_len)
{
    if (c->peer != P2P_PEER_NONE)
        snprintf(out, out_len, "peer %u (%s)", c->peer, c->remote);
    else
        snprintf(out, out_len, "inbound %s", c->remote);
}

static int reason_level(int reason)
{
    switch (reason) {
    case P2P_REASON_HANDSHAKE:
    case P2P_REASON_BAD_KEY:
    case P2P_REASON_OVERSIZE:
    case P2P_REASON_MALFORMED:
    case P2P_REASON_SLOW:
    case P2P_REASON_BUSY:
        return P2P_LOG_WARN;
    default:
        return P2P_LOG_INFO;
    }
}

static void conn_close(struct p2p_conn *c, int reason, const char *fmt, ...)
{
    struct p2p *p = c->p;
    struct p2p_peer_stats *st;
    bool was_up = c->state == CONN_UP;
    char name[P2P_ADDR_MAX + 32];
    char detail[LOG_BYTES];
    va_list ap;

    BEX_ASSERT(reason >= 0 && reason < P2P_REASON_COUNT);
    if (c->closing)
        return;
    c->closing = true;

    st = stats_of(c);
    if (c->state == CONN_CONNECTING)
        st->dial_failures++;
    else
        st->disconnects[reason]++;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    conn_name(c, name, sizeof(name));
    plog(p, reason_level(reason), "%s: %s (%s)", name, detail, p2p_reason_name(reason));

    if (c->peer != P2P_PEER_NONE) {
        struct p2p_peer *pe = &p->peers[c->peer];
        if (pe->conn == c) {
            pe->conn = NULL;
            pe->down_pending = true;
        }
        if (pe->dialing == c)
            pe->dialing = NULL;
    }
    if (c->inbound_pending) {
        c->inbound_pending = false;
        BEX_ASSERT(p->inbound_pending > 0);
        p->inbound_pending--;
    }

    /* Best effort: hand a waiting TLS alert to the kernel so the peer learns why. */
    if (c->tls != NULL && !c->writing && c->out_head == NULL && c->state != CONN_CONNECTING) {
        uint8_t alert[ALERT_BYTES_MAX];
        size_t n = tls_conn_out_pending(c->tls);
        if (n > 0 && n <= sizeof(alert)) {
            uv_buf_t b = uv_buf_init((char *)alert, (unsigned)tls_conn_take(c->tls, alert, n));
            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);

    if (c->outbound && !p->closing) {
        bool stable = was_up && uv_now(p->loop) - c->up_ms >= p->cfg.reconnect_max_ms;
        peer_retry(&p->peers[c->peer], stable);
    }
}

static void on_handshake_timeout(uv_timer_t *t)
{
    struct p2p_conn *c = t->data;
    static const char *const what[] = {
        [CONN_CONNECTING] = "TCP connection",
        [CONN_HANDSHAKE] = "TLS handshake",
        [CONN_HELLO] = "HELLO",
        [CONN_UP] = "",
    };

    BEX_ASSERT(c->state != CONN_UP);
    conn_close(c, c->state == CONN_CONNECTING ? P2P_REASON_IO : P2P_REASON_HANDSHAKE,
               "no %s within %u ms", what[c->state], c->p->cfg.handshake_timeout_ms);
}

static struct p2p_conn *conn_new(struct p2p *p, bool outbound, uint32_t peer)
{
    struct p2p_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    if (uv_tcp_init(p->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    BEX_ASSERT(uv_timer_init(p->loop, &c->timer) == 0);
    c->p = p;
    c->outbound = outbound;
    c->peer = peer;
    c->key_peer = P2P_PEER_NONE;
    c->state = outbound ? CONN_CONNECTING : CONN_HANDSHAKE;
    c->handles = 2;
    c->tcp.data = c;
    c->timer.data = c;
    c->connect_req.data = c;
    c->last_rx_ms = c->last_tx_ms = uv_now(p->loop);
    snprintf(c->remote, sizeof(c->remote), "?");
    c->next = p->conns;
    if (p->conns != NULL)
        p->conns->prev = c;
    p->conns = c;
    p->pending++;
    /* One deadline covers TCP connect, TLS and HELLO. */
    BEX_ASSERT(uv_timer_start(&c->timer, on_handshake_timeout, p->cfg.handshake_timeout_ms, 0) == 0);
    return c;
}

/* Moves the TLS output into the send queue. */
static int conn_drain_tls(struct p2p_conn *c)
{
    while (tls_conn_out_pending(c->tls) > 0) {
        struct out_block *b = c->out_tail;
        size_t got;

        if (b == NULL || b->sealed || b->len == BLOCK_BYTES) {
            b = malloc(sizeof(*b));
            if (b == NULL)
                return -BEX_ENOMEM;
            b->next = NULL;
            b->len = 0;
            b->sealed = false;
            if (c->out_tail != NULL)
                c->out_tail->next = b;
            else
                c->out_head = b;
            c->out_tail = b;
        }
        got = tls_conn_take(c->tls, b->data + b->len, BLOCK_BYTES - b->len);
        BEX_ASSERT(got > 0);
        b->len += got;
        c->out_bytes += got;
    }
    return 0;
}

/* Encrypts the coalesced plaintext as one record and queues it. */
static int conn_seal(struct p2p_conn *c)
{
    int rc;

    if (c->tx_len == 0)
        return 0;
    rc = tls_conn_write(c->tls, c->tx_buf, c->tx_len);
    c->tx_len = 0;
    return rc != 0 ? rc : conn_drain_tls(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct p2p_conn *c = req->data;

    BEX_ASSERT(c->writing);
    c->writing = false;
    out_pop(c, c->write_blocks);
    if (status < 0) {
        if (!c->closing)
            conn_close(c, status == UV_EPIPE || status == UV_ECONNRESET ? P2P_REASON_EOF : P2P_REASON_IO,
                       "write: %s", uv_strerror(status));
        return;
    }
    stats_of(c)->bytes_out += c->write_bytes;
    conn_flush(c);
}

/*
 * Starts a socket write of queued ciphertext unless one is in flight: one
 * write at a time per link, so frames queued meanwhile leave together.
 */
static void conn_flush(struct p2p_conn *c)
{
    uv_buf_t bufs[WRITE_BLOCKS_MAX];
    int k = 0;
    int rc;

    if (c->closing || c->writing || c->tls == NULL)
        return;
    if (conn_seal(c) != 0 || conn_drain_tls(c) != 0) {
        conn_close(c, P2P_REASON_IO, "out of memory for the send queue");
        return;
    }
    c->write_bytes = 0;
    for (struct out_block *b = c->out_head; b != NULL && k < WRITE_BLOCKS_MAX; b = b->next) {
        BEX_ASSERT(b->len > 0);
        b->sealed = true;
        bufs[k++] = uv_buf_init((char *)b->data, (unsigned)b->len);
        c->write_bytes += b->len;
    }
    if (k == 0)
        return;
    c->write_blocks = k;
    c->write_req.data = c;
    rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, (unsigned)k, on_write);
    if (rc != 0) {
        conn_close(c, P2P_REASON_IO, "write: %s", uv_strerror(rc));
        return;
    }
    c->writing = true;
}

/*
 * Appends plaintext for the peer. Small frames are coalesced into one TLS
 * record until the next socket write starts (conn_flush seals them), which
 * saves a record and its AEAD pass per frame; full records of a large frame
 * are encrypted straight from the caller's bytes.
 */
static int conn_put(struct p2p_conn *c, const uint8_t *data, size_t n)
{
    int rc;

    if (c->tx_buf == NULL && (c->tx_buf = malloc(PLAIN_BYTES)) == NULL)
        return -BEX_ENOMEM;
    while (n > 0) {
        size_t take;

        if (c->tx_len == 0 && n >= PLAIN_BYTES) {
            if ((rc = tls_conn_write(c->tls, data, PLAIN_BYTES)) != 0 || (rc = conn_drain_tls(c)) != 0)
                return rc;
            data += PLAIN_BYTES;
            n -= PLAIN_BYTES;
            continue;
        }
        take = PLAIN_BYTES - c->tx_len < n ? PLAIN_BYTES - c->tx_len : n;
        memcpy(c->tx_buf + c->tx_len, data, take);
        c->tx_len += take;
        data += take;
        n -= take;
        if (c->tx_len == PLAIN_BYTES && (rc = conn_seal(c)) != 0)
            return rc;
    }
    return 0;
}

static int conn_send_ctrl(struct p2p_conn *c, const uint8_t *body, size_t len)
{
    uint8_t buf[P2P_FRAME_HEADER_BYTES + P2P_CTRL_BYTES_MAX];
    int rc;

    BEX_ASSERT(len > 0 && len <= P2P_CTRL_BYTES_MAX);
    bex_be32_put(buf, CTRL_BIT | (uint32_t)len);
    memcpy(buf + P2P_FRAME_HEADER_BYTES, body, len);
    rc = conn_put(c, buf, P2P_FRAME_HEADER_BYTES + len);
    if (rc != 0) {
        conn_close(c, P2P_REASON_IO, "TLS write: %s", bex_strerror(rc));
        return rc;
    }
    c->last_tx_ms = uv_now(c->p->loop);
    conn_flush(c);
    return 0;
}

static int conn_send_hello(struct p2p_conn *c)
{
    uint32_t self = c->p->cfg.self;
    uint8_t body[HELLO_BYTES] = {CTRL_HELLO, P2P_WIRE_VERSION, (uint8_t)(self >> 8), (uint8_t)self};

    return conn_send_ctrl(c, body, sizeof(body));
}

static int conn_send_frame(struct p2p_conn *c, const uint8_t *bytes, size_t len)
{
    struct p2p *p = c->p;
    size_t queued = conn_queue_bytes(c);
    size_t sealed = frame_sealed_bytes(len);
    uint8_t hdr[P2P_FRAME_HEADER_BYTES];
    int rc;

    BEX_ASSERT(c->state == CONN_UP);
    BEX_ASSERT(len > 0 && len <= p->cfg.frame_bytes_max);
    if (queued + sealed > p->cfg.send_queue_bytes_max) {
        conn_close(c, P2P_REASON_SLOW, "send queue holds %zu bytes, a frame of %zu more exceeds %zu",
                   queued, len, p->cfg.send_queue_bytes_max);
        return -BEX_EFULL;
    }
    bex_be32_put(hdr, (uint32_t)len);
    rc = conn_put(c, hdr, sizeof(hdr));
    if (rc == 0)
        rc = conn_put(c, bytes, len);
    if (rc != 0) {
        conn_close(c, P2P_REASON_IO, "TLS write: %s", bex_strerror(rc));
        return rc;
    }
    BEX_CHECK(conn_queue_bytes(c) <= p->cfg.send_queue_bytes_max);
    stats_of(c)->frames_out++;
    c->last_tx_ms = uv_now(p->loop);
    conn_flush(c);
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    struct p2p_conn *c = t->data;
    struct p2p *p = c->p;
    uint64_t now = uv_now(p->loop);
    uint64_t keepalive = p->cfg.idle_timeout_ms / 3;
    static const uint8_t ping[1] = {CTRL_PING};

    BEX_ASSERT(c->state == CONN_UP);
    if (now - c->last_rx_ms >= p->cfg.idle_timeout_ms) {
        conn_close(c, P2P_REASON_IDLE, "nothing received for %llu ms",
                   (unsigned long long)(now - c->last_rx_ms));
        return;
    }
    /* Data already waiting to leave keeps the link alive by itself. */
    if (now - c->last_tx_ms >= keepalive && conn_queue_bytes(c) == 0)
        (void)conn_send_ctrl(c, ping, sizeof(ping));
}

static void conn_up(struct p2p_conn *c)
{
    struct p2p *p = c->p;
    struct p2p_peer *pe = &p->peers[c->peer];
    uint64_t keepalive = p->cfg.idle_timeout_ms / 3;
    char name[P2P_ADDR_MAX + 32];

    BEX_ASSERT(c->state == CONN_HELLO);
    BEX_ASSERT(pe->listed);
    if (c->outbound) {
        BEX_ASSERT(pe->dialing == c);
        pe->dialing = NULL;
    }
    if (c->inbound_pending) {
        c->inbound_pending = false;
        p->inbound_pending--;
    }
    if (pe->conn != NULL)
        conn_close(pe->conn, P2P_REASON_REPLACED, "replaced by a newer link");
    if (pe->down_pending) {
        pe->down_pending = false;
        notify_peer(p, c->peer, false);
        if (c->closing)
            return;
    }
    pe->conn = c;
    c->state = CONN_UP;
    c->up_ms = uv_now(p->loop);
    pe->stats.connects++;
    BEX_ASSERT(uv_timer_start(&c->timer, on_tick, keepalive, keepalive) == 0);
    conn_name(c, name, sizeof(name));
    plog(p, P2P_LOG_INFO, "%s: up (%s)", name, c->outbound ? "dialed" : "accepted");
    notify_peer(p, c->peer, true);
}

static void conn_hello(struct p2p_conn *c, const uint8_t *body, size_t len)
{
    struct p2p *p = c->p;
    uint32_t idx;

    if (c->state != CONN_HELLO) {
        conn_close(c, P2P_REASON_MALFORMED, "unexpected HELLO");
        return;
    }
    if (len != HELLO_BYTES) {
        conn_close(c, P2P_REASON_MALFORMED, "HELLO of %zu bytes", len);
        return;
    }
    if (body[1] != P2P_WIRE_VERSION) {
        conn_close(c, P2P_REASON_MALFORMED, "wire version %u, expected %u", body[1], P2P_WIRE_VERSION);
        return;
    }
    idx = (uint32_t)body[2] << 8 | body[3];
    if (c->outbound) {
        if (idx != c->peer) {
            conn_close(c, P2P_REASON_MALFORMED, "answered HELLO as index %u", idx);
            return;
        }
    } else {
        /* The pinned-key check: the claimed index must own the certificate key. */
        if (idx != c->key_peer) {
            conn_close(c, P2P_REASON_BAD_KEY, "claims index %u but its key is listed for index %u",
                       idx, c->key_peer);
            return;
        }
        if (idx > p->cfg.self) {
            conn_close(c, P2P_REASON_MALFORMED, "index %u dialed us, but the lower index dials", idx);
            return;
        }
        c->peer = idx;
        if (conn_send_hello(c) != 0)
            return;
    }
    conn_up(c);
}

static void conn_control(struct p2p_conn *c, const uint8_t *body, size_t len)
{
    BEX_ASSERT(len > 0);
    switch (body[0]) {
    case CTRL_HELLO:
        conn_hello(c, body, len);
        return;
    case CTRL_PING:
        if (len != 1 || c->state != CONN_UP)
            conn_close(c, P2P_REASON_MALFORMED, "unexpected PING");
        return;
    default:
        conn_close(c, P2P_REASON_MALFORMED, "unknown control frame type %u", body[0]);
        return;
    }
}

static void conn_deliver(struct p2p_conn *c, const uint8_t *bytes, size_t len)
{
    struct p2p *p = c->p;

    if (c->rx_ctrl) {
        conn_control(c, bytes, len);
        return;
    }
    BEX_ASSERT(c->state == CONN_UP);
    stats_of(c)->frames_in++;
    p->cfg.on_frame(c->peer, bytes, len, p->cfg.ud);
}

/* Validates a complete header; closes the link and returns an error if bad. */
static int conn_check_header(struct p2p_conn *c)
{
    struct p2p *p = c->p;
    uint32_t v = bex_be32_get(c->hdr);

    c->rx_ctrl = (v & CTRL_BIT) != 0;
    c->rx_len = v & ~CTRL_BIT;
    c->rx_have = 0;
    if (c->rx_len == 0) {
        conn_close(c, P2P_REASON_MALFORMED, "empty %s frame", c->rx_ctrl ? "control" : "application");
        return -BEX_EDECODE;
    }
    if (c->rx_ctrl) {
        if (c->rx_len > P2P_CTRL_BYTES_MAX) {
            conn_close(c, P2P_REASON_MALFORMED, "control frame of %u bytes", c->rx_len);
            return -BEX_EDECODE;
        }
        return 0;
    }
    if (c->rx_len > p->cfg.frame_bytes_max) {
        conn_close(c, P2P_REASON_OVERSIZE, "frame of %u bytes announced, limit %u", c->rx_len,
                   p->cfg.frame_bytes_max);
        return -BEX_ELIMIT;
    }
    if (c->state != CONN_UP) {
        conn_close(c, P2P_REASON_MALFORMED, "application frame before HELLO");
        return -BEX_EDECODE;
    }
    return 0;
}

static void frame_reset(struct p2p_conn *c)
{
    c->hdr_have = 0;
    c->rx_have = 0;
    c->rx_len = 0;
    if (c->rx_cap > RX_KEEP_BYTES) {
        free(c->rx_buf);
        c->rx_buf = NULL;
        c->rx_cap = 0;
    }
}

/*
 * Grows the receive buffer to hold `need` bytes: by doubling, never beyond
 * the announced length, so memory follows the bytes that actually arrived.
 */
static int rx_reserve(struct p2p_conn *c, size_t need)
{
    size_t cap = c->rx_cap > 0 ? c->rx_cap : RX_MIN_BYTES;
    uint8_t *b;

    BEX_ASSERT(need <= c->rx_len);
    if (need <= c->rx_cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > c->rx_len)
        cap = c->rx_len;
    b = realloc(c->rx_buf, cap);
    if (b == NULL)
        return -BEX_ENOMEM;
    c->rx_buf = b;
    c->rx_cap = cap;
    return 0;
}

/* Cuts decrypted bytes into frames; stops as soon as the link is closing. */
static void conn_parse(struct p2p_conn *c, const uint8_t *data, size_t n)
{
    while (n > 0 && !c->closing) {
        size_t take;

        if (c->hdr_have < P2P_FRAME_HEADER_BYTES) {
            take = P2P_FRAME_HEADER_BYTES - c->hdr_have;
            if (take > n)
                take = n;
            memcpy(c->hdr + c->hdr_have, data, take);
            c->hdr_have += take;
            data += take;
            n -= take;
            if (c->hdr_have == P2P_FRAME_HEADER_BYTES && conn_check_header(c) != 0)
                return;
            continue;
        }
        /* A frame wholly inside this chunk is delivered without a copy. */
        if (c->rx_have == 0 && n >= c->rx_len) {
            size_t len = c->rx_len;
            frame_reset(c);
            conn_deliver(c, data, len);
            data += len;
            n -= len;
            continue;
        }
        take = c->rx_len - c->rx_have;
        if (take > n)
            take = n;
        if (rx_reserve(c, c->rx_have + take) != 0) {
            conn_close(c, P2P_REASON_IO, "out of memory for a frame of %u bytes", c->rx_len);
            return;
        }
        memcpy(c->rx_buf + c->rx_have, data, take);
        c->rx_have += take;
        data += take;
        n -= take;
        if (c->rx_have == c->rx_len) {
            conn_deliver(c, c->rx_buf, c->rx_len);
            frame_reset(c);
        }
    }
}

static void conn_read_plain(struct p2p_conn *c)
{
    struct p2p *p = c->p;

    while (!c->closing) {
        size_t n = 0;
        int rc = tls_conn_read(c->tls, p->rx_plain, PLAIN_BYTES, &n);

        if (rc == -BEX_ECLOSED) {
            conn_close(c, P2P_REASON_EOF, "peer closed the TLS session");
            return;
        }
        if (rc != 0) {
            conn_close(c, c->state == CONN_UP ? P2P_REASON_MALFORMED : P2P_REASON_HANDSHAKE, "TLS: %s",
                       tls_conn_error(c->tls));
            return;
        }
        if (n == 0)
            return;
        conn_parse(c, p->rx_plain, n);
    }
}

static void conn_handshake(struct p2p_conn *c)
{
    bool done = false;
    int rc = tls_conn_handshake(c->tls, &done);

    if (rc == -BEX_EPERM) {
        conn_close(c, P2P_REASON_BAD_KEY, "%s",
                   c->outbound ? "certificate key is not the key listed for this index"
                               : "certificate key is not listed in the peer table");
        return;
    }
    if (rc != 0) {
        conn_close(c, P2P_REASON_HANDSHAKE, "TLS handshake: %s", tls_conn_error(c->tls));
        return;
    }
    if (!done)
        return;
    c->state = CONN_HELLO;
    if (c->outbound)
        (void)conn_send_hello(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct p2p_conn *c = h->data;

    (void)suggested;
    /* One buffer per p2p: libuv hands it to read_cb before the next alloc. */
    *buf = uv_buf_init((char *)c->p->read_buf, READ_BYTES);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct p2p_conn *c = s->data;
    struct p2p *p = c->p;

    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_close(c, P2P_REASON_EOF, "connection closed by the peer");
        else
            conn_close(c, nread == UV_ECONNRESET ? P2P_REASON_EOF : P2P_REASON_IO, "read: %s",
                       uv_strerror((int)nread));
        return;
    }
    c->last_rx_ms = uv_now(p->loop);
    stats_of(c)->bytes_in += (uint64_t)nread;
    if (tls_conn_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) != 0) {
        conn_close(c, P2P_REASON_IO, "out of memory for %zd received bytes", nread);
        return;
    }
    if (c->state == CONN_HANDSHAKE)
        conn_handshake(c);
    if (!c->closing && c->state != CONN_HANDSHAKE)
        conn_read_plain(c);
    conn_flush(c);
}

/*
 * The certificate key check. An outbound link must present exactly the key
 * listed for the index we dialed; an inbound one any listed key but ours,
 * and its HELLO must then claim the index of that key (conn_hello).
 */
static int verify_peer(const uint8_t pubkey[TLS_PUBKEY_BYTES], void *ud)
{
    struct p2p_conn *c = ud;
    struct p2p *p = c->p;

    if (c->outbound)
        return memcmp(pubkey, p->peers[c->peer].pubkey, TLS_PUBKEY_BYTES) == 0 ? 0 : -BEX_EPERM;
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++) {
        const struct p2p_peer *pe = &p->peers[i];
        if (pe->listed && i != p->cfg.self && memcmp(pubkey, pe->pubkey, TLS_PUBKEY_BYTES) == 0) {
            c->key_peer = i;
            return 0;
        }
    }
    return -BEX_EPERM;
}

static void conn_start(struct p2p_conn *c)
{
    struct p2p *p = c->p;
    int rc;

    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (tls_conn_new(&c->tls, p->tls, !c->outbound, verify_peer, c) != 0) {
        conn_close(c, P2P_REASON_IO, "out of memory for a TLS session");
        return;
    }
    c->state = CONN_HANDSHAKE;
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_close(c, P2P_REASON_IO, "read: %s", uv_strerror(rc));
        return;
    }
    if (c->outbound) {
        conn_handshake(c); /* the ClientHello */
        conn_flush(c);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct p2p_conn *c = req->data;

    if (status == UV_ECANCELED || c->closing)
        return;
    if (status < 0) {
        conn_close(c, P2P_REASON_IO, "connect: %s", uv_strerror(status));
        return;
    }
    conn_start(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct p2p *p = server->data;
    struct p2p_conn *c;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc;

    if (p->closing)
        return;
    if (status < 0) {
        plog(p, P2P_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    c = conn_new(p, false, P2P_PEER_NONE);
    if (c == NULL) {
        plog(p, P2P_LOG_WARN, "accept: out of memory");
        return;
    }
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        conn_close(c, P2P_REASON_IO, "accept: %s", uv_strerror(rc));
        return;
    }
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_text(&ss, c->remote, sizeof(c->remote));
    if (p->inbound_pending >= P2P_INBOUND_PENDING_MAX) {
        conn_close(c, P2P_REASON_BUSY, "%u links already in handshake", p->inbound_pending);
        return;
    }
    p->inbound_pending++;
    c->inbound_pending = true;
    conn_start(c);
}

/* ---------------------------------------------------------------- dialing */

static void peer_connect(struct p2p_peer *pe, const struct sockaddr *sa)
{
    struct p2p *p = pe->p;
    struct p2p_conn *c = conn_new(p, true, pe->index);
    int rc;

    if (c == NULL) {
        plog(p, P2P_LOG_WARN, "peer %u: out of memory for a connection", pe->index);
        pe->stats.dial_failures++;
        peer_retry(pe, false);
        return;
    }
    pe->dialing = c;
    snprintf(c->remote, sizeof(c->remote), "%s", pe->addr);
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, sa, on_connect);
    if (rc != 0)
        conn_close(c, P2P_REASON_IO, "connect: %s", uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct p2p_peer *pe = req->data;
    struct p2p *p = pe->p;

    free(req);
    pe->resolving = NULL;
    if (!p->closing) {
        if (status < 0 || res == NULL) {
            plog(p, P2P_LOG_INFO, "peer %u (%s): resolve: %s", pe->index, pe->addr,
                 uv_strerror(status));
            pe->stats.dial_failures++;
            peer_retry(pe, false);
        } else {
            /* Successive attempts rotate through the addresses of the name. */
            uint32_t count = 0;
            struct addrinfo *ai = res;
            for (struct addrinfo *i = res; i != NULL; i = i->ai_next)
                count++;
            for (uint32_t k = pe->attempts % count; k > 0; k--)
                ai = ai->ai_next;
            peer_connect(pe, ai->ai_addr);
        }
    }
    uv_freeaddrinfo(res);
    BEX_ASSERT(p->pending > 0);
    p->pending--;
    finish_if_done(p);
}

static void peer_dial(struct p2p_peer *pe)
{
    struct p2p *p = pe->p;
    struct sockaddr_storage ss;
    struct addrinfo hints;
    char host[P2P_ADDR_MAX];
    char port_text[8];
    uint16_t port;
    uv_getaddrinfo_t *req;
    int rc;

    if (p->closing || !pe->dial || pe->conn != NULL || pe->dialing != NULL || pe->resolving != NULL ||
        pe->addr[0] == '\0')
        return;
    BEX_ASSERT(addr_split(pe->addr, host, sizeof(host), &port) == 0);
    if (addr_numeric(&ss, host, port) == 0) {
        peer_connect(pe, (const struct sockaddr *)&ss);
        return;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        plog(p, P2P_LOG_WARN, "peer %u: out of memory for a lookup", pe->index);
        peer_retry(pe, false);
        return;
    }
    req->data = pe;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port_text, sizeof(port_text), "%u", port);
    rc = uv_getaddrinfo(p->loop, req, on_resolved, host, port_text, &hints);
    if (rc != 0) {
        free(req);
        plog(p, P2P_LOG_WARN, "peer %u (%s): resolve: %s", pe->index, pe->addr, uv_strerror(rc));
        peer_retry(pe, false);
        return;
    }
    pe->resolving = req;
    p->pending++;
}

/* ---------------------------------------------------------------- lifecycle */

void p2p_config_defaults(struct p2p_config *cfg)
{
    BEX_ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof(*cfg));
    cfg->frame_bytes_max = 8u << 20;
    cfg->send_queue_bytes_max = 16u << 20;
    cfg->handshake_timeout_ms = 5000;
    cfg->idle_timeout_ms = 30000;
    cfg->reconnect_min_ms = 200;
    cfg->reconnect_max_ms = 10000;
}

static int config_fail(struct p2p *p, const char *fmt, ...) BEX_PRINTF(2, 3);

static int config_fail(struct p2p *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    return -BEX_EINVAL;
}

static int config_check(struct p2p *p, const struct p2p_config *cfg, struct sockaddr_storage *listen)
{
    char host[P2P_ADDR_MAX];
    uint8_t mine[TLS_PUBKEY_BYTES];
    bool seen[P2P_PEERS_MAX] = {false};
    uint16_t port;

    if (cfg->key == NULL || cfg->on_frame == NULL)
        return config_fail(p, "a key and an on_frame callback are required");
    if (cfg->self >= P2P_PEERS_MAX)
        return config_fail(p, "self index %u is not below %u", cfg->self, P2P_PEERS_MAX);
    if (cfg->peers_len > P2P_PEERS_MAX)
        return config_fail(p, "%zu peers, at most %u", cfg->peers_len, P2P_PEERS_MAX);
    if (cfg->listen == NULL || addr_split(cfg->listen, host, sizeof(host), &port) != 0 ||
        addr_numeric(listen, host, port) != 0)
        return config_fail(p, "listen address is not a numeric ip:port");
    tls_pubkey_raw(cfg->key, mine);
    for (size_t i = 0; i < cfg->peers_len; i++) {
        const struct p2p_peer_config *pc = &cfg->peers[i];
        if (pc->index >= P2P_PEERS_MAX)
            return config_fail(p, "peer index %u is not below %u", pc->index, P2P_PEERS_MAX);
        if (seen[pc->index])
            return config_fail(p, "peer index %u listed twice", pc->index);
        seen[pc->index] = true;
        if (pc->addr != NULL && pc->addr[0] != '\0' &&
            addr_split(pc->addr, host, sizeof(host), &port) != 0)
            return config_fail(p, "peer %u: address is not host:port", pc->index);
        for (size_t j = 0; j < i; j++)
            if (memcmp(pc->pubkey, cfg->peers[j].pubkey, TLS_PUBKEY_BYTES) == 0)
                return config_fail(p, "peers %u and %u share a key", cfg->peers[j].index, pc->index);
        if (pc->index == cfg->self && memcmp(pc->pubkey, mine, TLS_PUBKEY_BYTES) != 0)
            return config_fail(p, "my key is not the key listed for my index %u", cfg->self);
    }
    if (!seen[cfg->self])
        return config_fail(p, "my index %u is not in the peer table", cfg->self);
    if (cfg->frame_bytes_max == 0 || cfg->frame_bytes_max > P2P_FRAME_BYTES_LIMIT)
        return config_fail(p, "frame_bytes_max must be 1..%u", P2P_FRAME_BYTES_LIMIT);
    if (cfg->send_queue_bytes_max < frame_sealed_bytes(cfg->frame_bytes_max) ||
        cfg->send_queue_bytes_max > P2P_QUEUE_BYTES_LIMIT)
        return config_fail(p, "send_queue_bytes_max must be %zu..%u", frame_sealed_bytes(cfg->frame_bytes_max),
                           P2P_QUEUE_BYTES_LIMIT);
    if (cfg->handshake_timeout_ms == 0 || cfg->idle_timeout_ms < 3)
        return config_fail(p, "handshake_timeout_ms must be > 0 and idle_timeout_ms >= 3");
    if (cfg->reconnect_min_ms == 0 || cfg->reconnect_max_ms < cfg->reconnect_min_ms)
        return config_fail(p, "reconnect_min_ms must be > 0 and <= reconnect_max_ms");
    return 0;
}

int p2p_init(struct p2p *p, uv_loop_t *loop, const struct p2p_config *cfg)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc;

    BEX_ASSERT(p != NULL);
    memset(p, 0, sizeof(*p));
    if (loop == NULL || cfg == NULL)
        return config_fail(p, "a loop and a configuration are required");
    p->loop = loop;
    p->cfg = *cfg;
    /* The strings are borrowed only during this call. */
    p->cfg.listen = NULL;
    for (size_t i = 0; i < P2P_PEERS_MAX; i++)
        p->cfg.peers[i].addr = NULL;
    p->cfg.key = NULL;
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++) {
        p->peers[i].p = p;
        p->peers[i].index = i;
    }
    if ((rc = config_check(p, cfg, &ss)) != 0)
        goto fail;
    rng_seed(p);

    p->read_buf = malloc(READ_BYTES);
    p->rx_plain = malloc(PLAIN_BYTES);
    if (p->read_buf == NULL || p->rx_plain == NULL) {
        rc = -BEX_ENOMEM;
        snprintf(p->err, sizeof(p->err), "out of memory");
        goto fail;
    }
    if ((rc = tls_ctx_new(&p->tls, cfg->key)) != 0) {
        snprintf(p->err, sizeof(p->err), "TLS context: %s", bex_strerror(rc));
        goto fail;
    }

    for (size_t i = 0; i < cfg->peers_len; i++) {
        const struct p2p_peer_config *pc = &cfg->peers[i];
        struct p2p_peer *pe = &p->peers[pc->index];
        pe->listed = true;
        memcpy(pe->pubkey, pc->pubkey, TLS_PUBKEY_BYTES);
        if (pc->addr != NULL)
            snprintf(pe->addr, sizeof(pe->addr), "%s", pc->addr);
        pe->dial = pc->index > cfg->self;
        if (pe->dial) {
            BEX_ASSERT(uv_timer_init(loop, &pe->retry) == 0);
            pe->retry.data = p;
            pe->retry_init = true;
            p->pending++;
        }
    }

    if ((rc = uv_tcp_init(loop, &p->listener)) != 0) {
        snprintf(p->err, sizeof(p->err), "listener: %s", uv_strerror(rc));
        rc = -BEX_EIO;
        goto fail;
    }
    p->listener.data = p;
    p->listener_init = true;
    p->pending++;
    rc = uv_tcp_bind(&p->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, LISTEN_BACKLOG, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len);
    if (rc != 0) {
        snprintf(p->err, sizeof(p->err), "listen on %s: %s", cfg->listen, uv_strerror(rc));
        rc = -BEX_EIO;
        goto fail;
    }
    p->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    plog(p, P2P_LOG_INFO, "listening on port %u", p->port);
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++)
        peer_dial(&p->peers[i]);
    return 0;
fail:
    return rc;
}

void p2p_close(struct p2p *p, p2p_close_fn cb)
{
    BEX_ASSERT(p != NULL);
    BEX_ASSERT(!p->closing);
    p->closing = true;
    p->close_cb = cb;
    /* Held so that the callback cannot run before this function is done. */
    p->pending++;
    for (struct p2p_conn *c = p->conns; c != NULL; c = c->next)
        conn_close(c, P2P_REASON_LOCAL, "closing");
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++) {
        struct p2p_peer *pe = &p->peers[i];
        if (pe->retry_init)
            uv_close((uv_handle_t *)&pe->retry, p_handle_closed);
        /* A lookup already running finishes; its callback then only frees. */
        if (pe->resolving != NULL)
            (void)uv_cancel((uv_req_t *)pe->resolving);
    }
    if (p->listener_init)
        uv_close((uv_handle_t *)&p->listener, p_handle_closed);
    p->pending--;
    finish_if_done(p);
}

/* ---------------------------------------------------------------- operations */

int p2p_set_peer_addr(struct p2p *p, uint32_t peer, const char *addr)
{
    struct p2p_peer *pe;
    char host[P2P_ADDR_MAX];
    uint16_t port;

    BEX_ASSERT(p != NULL);
    if (p->closing || p->tls == NULL)
        return -BEX_ECLOSED;
    if (peer >= P2P_PEERS_MAX || !p->peers[peer].listed || peer == p->cfg.self)
        return -BEX_EINVAL;
    if (addr_split(addr, host, sizeof(host), &port) != 0)
        return -BEX_EINVAL;
    pe = &p->peers[peer];
    snprintf(pe->addr, sizeof(pe->addr), "%s", addr);
    if (pe->dial && pe->conn == NULL && pe->dialing == NULL && pe->resolving == NULL) {
        BEX_ASSERT(uv_timer_stop(&pe->retry) == 0);
        pe->attempts = 0;
        peer_dial(pe);
    }
    return 0;
}

uint16_t p2p_port(const struct p2p *p)
{
    BEX_ASSERT(p != NULL);
    return p->port;
}

static int check_frame(const struct p2p *p, const uint8_t *bytes, size_t len)
{
    if (p->closing || p->tls == NULL)
        return -BEX_ECLOSED;
    if (bytes == NULL || len == 0)
        return -BEX_EINVAL;
    if (len > p->cfg.frame_bytes_max)
        return -BEX_ELIMIT;
    return 0;
}

int p2p_send(struct p2p *p, uint32_t peer, const uint8_t *bytes, size_t len)
{
    int rc;

    BEX_ASSERT(p != NULL);
    if ((rc = check_frame(p, bytes, len)) != 0)
        return rc;
    if (peer >= P2P_PEERS_MAX || !p->peers[peer].listed || peer == p->cfg.self)
        return -BEX_EINVAL;
    if (p->peers[peer].conn == NULL)
        return -BEX_ECLOSED;
    return conn_send_frame(p->peers[peer].conn, bytes, len);
}

int p2p_broadcast(struct p2p *p, const uint8_t *bytes, size_t len)
{
    int result = 0;
    int rc;

    BEX_ASSERT(p != NULL);
    if ((rc = check_frame(p, bytes, len)) != 0)
        return rc;
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++) {
        struct p2p_conn *c = p->peers[i].conn;
        if (c == NULL)
            continue;
        rc = conn_send_frame(c, bytes, len);
        if (rc == -BEX_EFULL || (rc != 0 && result == 0))
            result = rc;
    }
    return result;
}

void p2p_disconnect(struct p2p *p, uint32_t peer, const char *why)
{
    BEX_ASSERT(p != NULL);
    BEX_ASSERT(why != NULL);
    if (peer >= P2P_PEERS_MAX || p->peers[peer].conn == NULL)
        return;
    conn_close(p->peers[peer].conn, P2P_REASON_MALFORMED, "%s", why);
}

#ifdef BEX_BYZANTINE
int p2p_send_raw(struct p2p *p, uint32_t peer, const uint8_t *bytes, size_t len)
{
    struct p2p_conn *c;
    int rc;

    BEX_ASSERT(p != NULL);
    if (p->closing || peer >= P2P_PEERS_MAX || p->peers[peer].conn == NULL)
        return -BEX_ECLOSED;
    if (bytes == NULL || len == 0)
        return -BEX_EINVAL;
    c = p->peers[peer].conn;
    if ((rc = conn_put(c, bytes, len)) != 0) {
        conn_close(c, P2P_REASON_IO, "TLS write: %s", bex_strerror(rc));
        return rc;
    }
    conn_flush(c);
    return 0;
}
#endif

uint32_t p2p_peer_count(const struct p2p *p)
{
    uint32_t n = 0;

    BEX_ASSERT(p != NULL);
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++)
        n += p->peers[i].conn != NULL;
    return n;
}

bool p2p_peer_up(const struct p2p *p, uint32_t peer)
{
    BEX_ASSERT(p != NULL);
    return peer < P2P_PEERS_MAX && p->peers[peer].conn != NULL;
}

void p2p_stats(const struct p2p *p, struct p2p_stats *out)
{
    BEX_ASSERT(p != NULL);
    BEX_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++) {
        const struct p2p_peer *pe = &p->peers[i];
        out->peer[i] = pe->stats;
        out->peer[i].up = pe->conn != NULL;
        out->peer[i].queue_bytes = pe->conn != NULL ? conn_queue_bytes(pe->conn) : 0;
        out->peers_up += pe->conn != NULL;
    }
    out->unknown = p->unknown;
    out->inbound_pending = p->inbound_pending;
}

void p2p_traffic(const struct p2p *p, uint64_t *bytes_in, uint64_t *bytes_out)
{
    BEX_ASSERT(p != NULL);
    BEX_ASSERT(bytes_in != NULL && bytes_out != NULL);
    *bytes_in = p->unknown.bytes_in;
    *bytes_out = p->unknown.bytes_out;
    for (uint32_t i = 0; i < P2P_PEERS_MAX; i++) {
        *bytes_in += p->peers[i].stats.bytes_in;
        *bytes_out += p->peers[i].stats.bytes_out;
    }
}

const char *p2p_error(const struct p2p *p)
{
    BEX_ASSERT(p != NULL);
    return p->err;
}
