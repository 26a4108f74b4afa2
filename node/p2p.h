/*
 * p2p.h: the authenticated links between the nodes of one network.
 *
 * Every link is TCP (libuv) carrying TLS 1.3 (tls.h) in which both sides
 * present their node key. A peer is accepted only if its key is the one the
 * peer table (the genesis) lists for the node index it speaks for; anything
 * else is closed, counted and logged, never trusted and never a crash.
 *
 * Connection policy: exactly one link per pair of nodes, dialed by the node
 * with the LOWER index. A node dials every listed peer with a higher index,
 * redials with exponential back-off plus jitter when the link drops, and
 * accepts links only from lower indices. A newer authenticated link from a
 * peer replaces an older one (the peer restarted and our side has not yet
 * noticed the old link is dead).
 *
 * Wire format, after the TLS handshake, in each direction:
 *
 *   frame   = length (4 bytes, big-endian) || payload
 *   length  = bit 31 clear: an application frame of `length` bytes,
 *             1 <= length <= frame_bytes_max (an Envelope, see bex.proto);
 *             bit 31 set: a control frame of (length & 0x7fffffff) bytes,
 *             at most P2P_CTRL_BYTES_MAX, never delivered to the caller.
 *   control = type (1 byte) || body
 *     HELLO (1): version (1 byte, P2P_WIRE_VERSION) || index (2 bytes, BE)
 *     PING  (2): empty
 *
 * The dialer sends HELLO right after its handshake; the acceptor checks that
 * the claimed index is the one whose key the dialer's certificate carries
 * and only then answers with its own HELLO. The first frame in each
 * direction is a HELLO, so the pinned-key check is complete before any
 * application frame is delivered. A zero length, an oversize length, an
 * application frame before the HELLO or an unknown control type disconnects
 * the peer. A side that has sent nothing for idle_timeout_ms / 3 sends a
 * PING; a link that has received nothing for idle_timeout_ms is dropped.
 *
 * Memory is bounded per peer: the receive side holds at most one frame
 * (grown as its bytes arrive, never up front from the announced length) and
 * the send side at most send_queue_bytes_max of queued output, counted after
 * encryption. A peer that lets its queue overflow is disconnected (it is
 * slow, and consensus recovers missing messages by its own protocol).
 *
 * Sending: one socket write is in flight per link. A frame sent while the
 * link is idle leaves at once; frames sent while a write is in flight are
 * coalesced into full TLS records and leave together when it completes.
 *
 * All calls must come from the thread that runs the loop.
 */
#ifndef BEX_P2P_H
#define BEX_P2P_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "bex.h"
#include "tls.h"

/* Limits. */
#define P2P_PEERS_MAX 16                    /* nodes in one network, self included */
#define P2P_ADDR_MAX 128                    /* "host:port" or "[v6]:port", with NUL */
#define P2P_FRAME_HEADER_BYTES 4
#define P2P_FRAME_BYTES_LIMIT (64u << 20)   /* largest allowed frame_bytes_max */
#define P2P_QUEUE_BYTES_LIMIT (1024u << 20) /* largest allowed send_queue_bytes_max */
#define P2P_CTRL_BYTES_MAX 64
#define P2P_INBOUND_PENDING_MAX 32 /* accepted links still in handshake */
#define P2P_WIRE_VERSION 1
#define P2P_PEER_NONE UINT32_MAX

_Static_assert(P2P_PEERS_MAX <= 0xffff, "a HELLO carries the index in 16 bits");
_Static_assert(P2P_FRAME_BYTES_LIMIT < 0x80000000u, "bit 31 of a length marks control frames");
_Static_assert(P2P_QUEUE_BYTES_LIMIT >= P2P_FRAME_BYTES_LIMIT + P2P_FRAME_HEADER_BYTES,
               "a queue must be able to hold one frame of the largest size");

/* Why a link went down; the index of struct p2p_peer_stats.disconnects. */
enum p2p_reason {
    P2P_REASON_EOF = 0,   /* the peer closed the connection */
    P2P_REASON_IO,        /* socket error, connect failure, out of memory */
    P2P_REASON_HANDSHAKE, /* TLS handshake failed or timed out */
    P2P_REASON_BAD_KEY,   /* key not listed, or not the key of the claimed index */
    P2P_REASON_OVERSIZE,  /* frame longer than frame_bytes_max announced */
    P2P_REASON_MALFORMED, /* protocol violation: empty frame, bad control frame, ... */
    P2P_REASON_SLOW,      /* send queue would exceed send_queue_bytes_max */
    P2P_REASON_IDLE,      /* nothing received for idle_timeout_ms */
    P2P_REASON_REPLACED,  /* a newer link from the same peer took over */
    P2P_REASON_BUSY,      /* too many inbound links in handshake */
    P2P_REASON_LOCAL,     /* p2p_close() */
    P2P_REASON_COUNT
};

/* Returns the short name of a reason ("eof", "bad_key", ...). */
const char *p2p_reason_name(int reason);

enum p2p_log_level {
    P2P_LOG_INFO = 0, /* links up and down, expected churn */
    P2P_LOG_WARN = 1, /* refused peers, protocol violations */
};

/* Called with each received application frame; `bytes` is valid only during the call. */
typedef void (*p2p_frame_fn)(uint32_t peer, const uint8_t *bytes, size_t len, void *ud);

/*
 * Called when the link to `peer` comes up (authenticated, ready to send) and
 * when it goes down. Every up is followed by exactly one down unless
 * p2p_close() was called first. Never called from inside p2p_send() or
 * p2p_broadcast().
 */
typedef void (*p2p_peer_fn)(uint32_t peer, bool up, void *ud);

/*
 * Receives one log line (no trailing newline); keys and secrets are never
 * logged. May be called from inside any p2p function but p2p_close().
 */
typedef void (*p2p_log_fn)(int level, const char *msg, void *ud);

struct p2p;

/* Called once when every handle of a closed p2p has been released. */
typedef void (*p2p_close_fn)(struct p2p *p, void *ud);

/* One row of the peer table. */
struct p2p_peer_config {
    uint32_t index;                   /* node index, < P2P_PEERS_MAX */
    const char *addr;                 /* "host:port"; NULL or "" if not known yet */
    uint8_t pubkey[TLS_PUBKEY_BYTES]; /* raw Ed25519 key the genesis lists */
};

struct p2p_config {
    uint32_t self;      /* my node index; must be listed in peers */
    const char *listen; /* numeric "ip:port" to listen on; port 0 picks one */
    struct p2p_peer_config peers[P2P_PEERS_MAX];
    size_t peers_len;
    const struct tls_key *key; /* my node key; only used during p2p_init */

    uint32_t frame_bytes_max;       /* largest application frame, both ways */
    size_t send_queue_bytes_max;    /* per peer; >= one largest frame once encrypted */
    uint32_t handshake_timeout_ms;  /* TCP connect + TLS + HELLO */
    uint32_t idle_timeout_ms;       /* PING every third of it */
    uint32_t reconnect_min_ms;      /* first redial delay */
    uint32_t reconnect_max_ms;      /* cap of the back-off */

    p2p_frame_fn on_frame; /* required */
    p2p_peer_fn on_peer;   /* optional */
    p2p_log_fn on_log;     /* optional; default: stderr */
    void *ud;              /* passed to every callback */
};

/* Counters of one peer (or of inbound links not yet identified). */
struct p2p_peer_stats {
    uint64_t bytes_in;  /* TLS bytes received */
    uint64_t bytes_out; /* TLS bytes written to the socket */
    uint64_t frames_in; /* application frames delivered */
    uint64_t frames_out;
    uint64_t connects;      /* links that came up */
    uint64_t dial_failures; /* TCP connects that failed */
    uint64_t disconnects[P2P_REASON_COUNT];
    uint64_t queue_bytes; /* encrypted bytes waiting to be sent now */
    bool up;
};

/*
 * Statistics. Failures of an inbound link before its HELLO identified the
 * peer (garbage, unknown keys, a wrong claimed index) are counted under
 * `unknown`; an outbound link always counts under the peer it dials.
 */
struct p2p_stats {
    struct p2p_peer_stats peer[P2P_PEERS_MAX];
    struct p2p_peer_stats unknown;
    uint32_t peers_up;
    uint32_t inbound_pending;
};

struct p2p_conn;

/* Per-peer state. Private: read it through p2p_stats(). */
struct p2p_peer {
    struct p2p *p;
    uint32_t index;
    bool listed;
    bool dial;         /* we dial this peer (its index is higher) */
    bool retry_init;   /* retry timer initialised */
    bool down_pending; /* a down notification is owed */
    uint8_t pubkey[TLS_PUBKEY_BYTES];
    char addr[P2P_ADDR_MAX];
    struct p2p_conn *conn;    /* the link that is up, or NULL */
    struct p2p_conn *dialing; /* our outbound link not yet up, or NULL */
    uv_getaddrinfo_t *resolving;
    uv_timer_t retry;
    uint32_t attempts; /* failed dials since the last stable link */
    struct p2p_peer_stats stats;
};

/* A p2p instance. The caller allocates it; its fields are private. */
struct p2p {
    uv_loop_t *loop;
    struct p2p_config cfg; /* copy; its string pointers are cleared */
    struct tls_ctx *tls;
    uv_tcp_t listener;
    bool listener_init;
    bool closing;
    uint16_t port;
    struct p2p_peer peers[P2P_PEERS_MAX];
    struct p2p_peer_stats unknown;
    struct p2p_conn *conns; /* every connection not yet freed */
    uint32_t inbound_pending;
    uint32_t pending; /* handles, connections and requests still open */
    uint64_t rng;
    uint8_t *read_buf; /* ciphertext from the socket, used within one read callback */
    uint8_t *rx_plain; /* decrypted bytes being parsed */
    p2p_close_fn close_cb;
    char err[160];
};

/* Fills `cfg` with zeroes and the default limits. */
void p2p_config_defaults(struct p2p_config *cfg);

/*
 * Validates `cfg`, makes the TLS context, starts listening and dials every
 * listed peer with a higher index whose address is known. Strings in `cfg`
 * are copied. Returns 0, -BEX_EINVAL for a bad configuration (p2p_error()
 * says what), -BEX_EIO if the address cannot be bound, -BEX_ENOMEM or
 * -BEX_ECRYPTO. On failure, as after success, the caller must call
 * p2p_close() and wait for its callback.
 */
BEX_MUST_USE int p2p_init(struct p2p *p, uv_loop_t *loop, const struct p2p_config *cfg);

/*
 * Closes every link, timer and the listener; no callback but `cb` runs
 * afterwards. `cb` (may be NULL) is called once all handles are released,
 * from the loop, or before p2p_close returns if nothing was open (a zeroed
 * or failed object). `p` must stay allocated until then. Safe to call from
 * any callback of this p2p.
 */
void p2p_close(struct p2p *p, p2p_close_fn cb);

/*
 * Sets or changes the address of `peer` (used from its next dial; dials now
 * if we dial it and no link exists). Returns 0, -BEX_EINVAL (not a listed
 * peer, or not "host:port") or -BEX_ECLOSED.
 */
BEX_MUST_USE int p2p_set_peer_addr(struct p2p *p, uint32_t peer, const char *addr);

/* Returns the port the listener is bound to. */
uint16_t p2p_port(const struct p2p *p);

/*
 * Queues a copy of one application frame for `peer`. Returns 0,
 * -BEX_ECLOSED if the link is not up, -BEX_EFULL if the frame does not fit
 * in the peer's send queue (the peer is then disconnected as slow),
 * -BEX_ELIMIT if len > frame_bytes_max, -BEX_EINVAL for an empty frame, an
 * unlisted peer or self.
 */
BEX_MUST_USE int p2p_send(struct p2p *p, uint32_t peer, const uint8_t *bytes, size_t len);

/*
 * Queues a copy of one application frame for every peer whose link is up.
 * Returns 0, -BEX_EFULL if at least one peer was disconnected as slow (the
 * others still got the frame), -BEX_ELIMIT, -BEX_EINVAL or -BEX_ECLOSED as
 * p2p_send().
 */
BEX_MUST_USE int p2p_broadcast(struct p2p *p, const uint8_t *bytes, size_t len);

/*
 * Drops the link to `peer` for a protocol violation the caller found in
 * what it sent (an application frame that is not a valid message): the link
 * is closed and counted under P2P_REASON_MALFORMED with `why` in the log.
 * The peer may connect again (the dialer redials with back-off). Does
 * nothing if the link is not up. Safe to call from on_frame.
 */
void p2p_disconnect(struct p2p *p, uint32_t peer, const char *why);

#ifdef BEX_BYZANTINE
/*
 * Test-only (bexd-byz): writes `bytes` into the TLS session of `peer` as
 * they are, without a frame header, to send oversize headers and garbage
 * inside a valid session. Returns 0, -BEX_ECLOSED or -BEX_EINVAL.
 */
BEX_MUST_USE int p2p_send_raw(struct p2p *p, uint32_t peer, const uint8_t *bytes, size_t len);
#endif

/* Returns the number of peers whose link is up. */
uint32_t p2p_peer_count(const struct p2p *p);

/* Returns whether the link to `peer` is up. */
bool p2p_peer_up(const struct p2p *p, uint32_t peer);

/* Copies the statistics into `out`. */
void p2p_stats(const struct p2p *p, struct p2p_stats *out);

/*
 * Sets *bytes_in and *bytes_out to the TLS bytes received from and written
 * to all links since p2p_init(), unidentified inbound links included: the
 * sums of bytes_in and bytes_out over p2p_stats(). Cheap enough for a tick.
 */
void p2p_traffic(const struct p2p *p, uint64_t *bytes_in, uint64_t *bytes_out);

/* Returns the text of the last configuration or start-up error ("" if none). */
const char *p2p_error(const struct p2p *p);

#endif
