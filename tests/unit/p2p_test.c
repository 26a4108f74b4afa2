/*
 * p2p_test.c: real links on 127.0.0.1 inside one process and one uv loop.
 *
 * Nodes listen on ports the OS picks; the peer tables are completed with
 * p2p_set_peer_addr() once the ports are known. Every wait runs the loop
 * until a condition holds or a deadline passes. Adversaries are a raw TCP
 * client (garbage, silence) and a "fake" peer built from tls.h that speaks
 * the documented wire format by hand (malformed frames, slow reading).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "bex.h"
#include "p2p.h"
#include "tls.h"

#define PASS "p2p test passphrase"
#define KEYS 6
/* Generous: waits end as soon as their condition holds, and SAN builds on a loaded machine are slow. */
#define WAIT_MS 20000
#define LOG_CAP 16384

static struct tls_key *keys[KEYS];
static uint8_t pubs[KEYS][TLS_PUBKEY_BYTES];
static uv_loop_t loop;
static uv_timer_t deadline;
static bool deadline_fired;

/* ---------------------------------------------------------------- waiting */

typedef bool (*cond_fn)(void *arg);

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    deadline_fired = true;
}

/* Runs the loop until cond(arg) holds or timeout_ms pass; returns cond(arg). */
static bool wait_for(cond_fn cond, void *arg, uint64_t timeout_ms)
{
    deadline_fired = false;
    assert_int_equal(uv_timer_start(&deadline, on_deadline, timeout_ms, 0), 0);
    while (!cond(arg) && !deadline_fired)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(uv_timer_stop(&deadline), 0);
    return cond(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* ---------------------------------------------------------------- nodes */

struct node {
    struct p2p p;
    bool inited;
    bool closed;
    uint32_t self;
    int ups[P2P_PEERS_MAX];
    int downs[P2P_PEERS_MAX];
    bool events_broken; /* an up without a down in between, or the reverse */
    uint64_t frames;
    uint64_t bytes;
    uint32_t last_from;
    uint8_t *last;
    size_t last_len;
    bool check_order;
    uint64_t next_seq[P2P_PEERS_MAX];
    bool order_broken;
    bool close_on_frame;
    bool close_on_up;
    bool count_only;
    char log[LOG_CAP];
    size_t log_len;
};

static void on_node_closed(struct p2p *p, void *ud)
{
    struct node *n = ud;

    assert_ptr_equal(p, &n->p);
    n->closed = true;
}

static uint64_t get_be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static void put_be64(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* A sequenced frame: 8-byte sequence number, then (seq + i) & 0xff bytes. */
static void fill_seq_frame(uint8_t *f, size_t len, uint64_t seq)
{
    assert_true(len >= 8);
    put_be64(f, seq);
    for (size_t i = 8; i < len; i++)
        f[i] = (uint8_t)(seq + i);
}

static void on_frame(uint32_t peer, const uint8_t *bytes, size_t len, void *ud)
{
    struct node *n = ud;

    assert_true(len > 0);
    n->frames++;
    n->bytes += len;
    n->last_from = peer;
    if (n->check_order) {
        uint64_t seq = len >= 8 ? get_be64(bytes) : UINT64_MAX;
        if (seq != n->next_seq[peer])
            n->order_broken = true;
        for (size_t i = 8; i < len && !n->order_broken; i++)
            if (bytes[i] != (uint8_t)(seq + i))
                n->order_broken = true;
        n->next_seq[peer]++;
    } else if (!n->count_only) {
        uint8_t *copy = realloc(n->last, len);
        assert_non_null(copy);
        memcpy(copy, bytes, len);
        n->last = copy;
        n->last_len = len;
    }
    if (n->close_on_frame)
        p2p_close(&n->p, on_node_closed);
}

static void on_peer(uint32_t peer, bool up, void *ud)
{
    struct node *n = ud;

    assert_true(peer < P2P_PEERS_MAX);
    if (up) {
        if (n->ups[peer] != n->downs[peer])
            n->events_broken = true;
        n->ups[peer]++;
    } else {
        if (n->ups[peer] != n->downs[peer] + 1)
            n->events_broken = true;
        n->downs[peer]++;
    }
    if (up && n->close_on_up)
        p2p_close(&n->p, on_node_closed);
}

static void on_log(int level, const char *msg, void *ud)
{
    struct node *n = ud;
    int w;

    assert_true(level == P2P_LOG_INFO || level == P2P_LOG_WARN);
    if (n->log_len + 2 >= LOG_CAP)
        return;
    w = snprintf(n->log + n->log_len, LOG_CAP - n->log_len, "%s\n", msg);
    if (w > 0)
        n->log_len += (size_t)w < LOG_CAP - n->log_len ? (size_t)w : LOG_CAP - n->log_len - 1;
}

static struct node *node_new(void)
{
    struct node *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    return n;
}

/*
 * A configuration for node `self` using key `key`, whose table lists
 * indices 0..len-1 with the keys table_keys[i] (default: key i).
 */
static void node_config(struct node *n, struct p2p_config *cfg, uint32_t self, int key, size_t len,
                        const int *table_keys)
{
    p2p_config_defaults(cfg);
    cfg->self = self;
    cfg->listen = "127.0.0.1:0";
    cfg->key = keys[key];
    cfg->peers_len = len;
    for (size_t i = 0; i < len; i++) {
        cfg->peers[i].index = (uint32_t)i;
        memcpy(cfg->peers[i].pubkey, pubs[table_keys != NULL ? table_keys[i] : (int)i], TLS_PUBKEY_BYTES);
    }
    cfg->handshake_timeout_ms = 2000;
    cfg->idle_timeout_ms = 5000;
    cfg->reconnect_min_ms = 20;
    cfg->reconnect_max_ms = 200;
    cfg->on_frame = on_frame;
    cfg->on_peer = on_peer;
    cfg->on_log = on_log;
    cfg->ud = n;
}

static void node_start(struct node *n, const struct p2p_config *cfg)
{
    int rc = p2p_init(&n->p, &loop, cfg);

    n->inited = true;
    n->self = cfg->self;
    if (rc != 0)
        fail_msg("p2p_init: %s: %s", bex_strerror(rc), p2p_error(&n->p));
    assert_true(p2p_port(&n->p) > 0);
}

/* Tells `n` where node `index` (running as `target`) listens. */
static void set_addr(struct node *n, uint32_t index, const struct node *target)
{
    char addr[64];

    snprintf(addr, sizeof(addr), "127.0.0.1:%u", p2p_port(&target->p));
    assert_int_equal(p2p_set_peer_addr(&n->p, index, addr), 0);
}

/* Starts `count` nodes 0..count-1 with default tables and links them all. */
static void mesh_start(struct node **ns, size_t count, void (*tweak)(struct p2p_config *))
{
    struct p2p_config cfg;

    for (size_t i = 0; i < count; i++) {
        ns[i] = node_new();
        node_config(ns[i], &cfg, (uint32_t)i, (int)i, count, NULL);
        if (tweak != NULL)
            tweak(&cfg);
        node_start(ns[i], &cfg);
    }
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < count; j++)
            if (i != j)
                set_addr(ns[i], (uint32_t)j, ns[j]);
}

struct mesh {
    struct node **ns;
    size_t count;
};

static bool mesh_up(void *arg)
{
    struct mesh *m = arg;

    for (size_t i = 0; i < m->count; i++)
        if (p2p_peer_count(&m->ns[i]->p) != m->count - 1)
            return false;
    return true;
}

static void wait_mesh(struct node **ns, size_t count)
{
    struct mesh m = {ns, count};
    assert_true(wait_for(mesh_up, &m, WAIT_MS));
}

static bool nodes_closed(void *arg)
{
    struct mesh *m = arg;

    for (size_t i = 0; i < m->count; i++)
        if (m->ns[i] != NULL && m->ns[i]->inited && !m->ns[i]->closed)
            return false;
    return true;
}

/* Closes and frees nodes; every handle must be released. */
static void nodes_free(struct node **ns, size_t count)
{
    struct mesh m = {ns, count};

    for (size_t i = 0; i < count; i++)
        if (ns[i] != NULL && ns[i]->inited && !ns[i]->closed && !ns[i]->p.closing)
            p2p_close(&ns[i]->p, on_node_closed);
    assert_true(wait_for(nodes_closed, &m, WAIT_MS));
    for (size_t i = 0; i < count; i++) {
        if (ns[i] == NULL)
            continue;
        assert_false(ns[i]->events_broken);
        free(ns[i]->last);
        free(ns[i]);
        ns[i] = NULL;
    }
}

static struct p2p_peer_stats peer_stats(struct node *n, uint32_t peer)
{
    struct p2p_stats st;

    p2p_stats(&n->p, &st);
    return peer == P2P_PEER_NONE ? st.unknown : st.peer[peer];
}

/* Conditions on one node. */
struct probe {
    struct node *n;
    uint32_t peer; /* P2P_PEER_NONE: the unknown bucket */
    int reason;
    uint64_t min;
};

static bool probe_disconnects(void *arg)
{
    struct probe *pr = arg;
    return peer_stats(pr->n, pr->peer).disconnects[pr->reason] >= pr->min;
}

static bool probe_frames(void *arg)
{
    struct probe *pr = arg;
    return pr->n->frames >= pr->min;
}

static bool probe_up(void *arg)
{
    struct probe *pr = arg;
    return p2p_peer_up(&pr->n->p, pr->peer);
}

static bool probe_downs(void *arg)
{
    struct probe *pr = arg;
    return (uint64_t)pr->n->downs[pr->peer] >= pr->min;
}

static bool probe_connects(void *arg)
{
    struct probe *pr = arg;
    return peer_stats(pr->n, pr->peer).connects >= pr->min;
}

static bool probe_dial_failures(void *arg)
{
    struct probe *pr = arg;
    return peer_stats(pr->n, pr->peer).dial_failures >= pr->min;
}

static void assert_log(struct node *n, const char *text)
{
    if (strstr(n->log, text) == NULL)
        fail_msg("log of node %u lacks \"%s\":\n%s", n->self, text, n->log);
}

/* Sends one frame from a to b and waits for it. */
static void exchange(struct node *a, struct node *b, const char *text)
{
    struct probe pr = {b, 0, 0, b->frames + 1};

    assert_int_equal(p2p_send(&a->p, b->self, (const uint8_t *)text, strlen(text)), 0);
    assert_true(wait_for(probe_frames, &pr, WAIT_MS));
    assert_int_equal(b->last_from, a->self);
    assert_int_equal(b->last_len, strlen(text));
    assert_memory_equal(b->last, text, strlen(text));
}

/* ---------------------------------------------------------------- raw TCP */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_write_t wreq;
    uint8_t junk[4096];
    size_t junk_len;
    uint8_t rbuf[1024];
    bool connected;
    bool eof;
    bool closed;
};

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct raw *r = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)r->rbuf, sizeof(r->rbuf));
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    (void)buf;
    if (nread < 0)
        r->eof = true;
}

static void raw_written(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;

    if (status < 0) {
        r->eof = true;
        return;
    }
    r->connected = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
    if (r->junk_len > 0) {
        uv_buf_t b = uv_buf_init((char *)r->junk, (unsigned)r->junk_len);
        assert_int_equal(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written), 0);
    }
}

static void raw_connect(struct raw *r, uint16_t port, size_t junk_len)
{
    struct sockaddr_in sa;

    memset(r, 0, sizeof(*r));
    r->junk_len = junk_len;
    for (size_t i = 0; i < junk_len; i++)
        r->junk[i] = (uint8_t)(i * 97 + 41);
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &sa), 0);
    assert_int_equal(uv_tcp_init(&loop, &r->tcp), 0);
    r->tcp.data = r;
    r->req.data = r;
    assert_int_equal(uv_tcp_connect(&r->req, &r->tcp, (struct sockaddr *)&sa, raw_connected), 0);
}

static void raw_on_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = true;
}

static bool raw_is_closed(void *arg)
{
    return ((struct raw *)arg)->closed;
}

static bool raw_has_eof(void *arg)
{
    return ((struct raw *)arg)->eof;
}

static void raw_close(struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_on_closed);
    assert_true(wait_for(raw_is_closed, r, WAIT_MS));
}

/* ---------------------------------------------------------------- fake peer */

struct fake {
    uv_tcp_t tcp;
    uv_connect_t req;
    struct tls_ctx *ctx;
    struct tls_conn *tls;
    uint8_t expect[TLS_PUBKEY_BYTES];
    uint8_t rbuf[65536];
    uint8_t plain[16384];
    size_t plain_in;
    int writes;
    bool junk;
    bool hs_done;
    bool failed;
    bool eof;
    bool closed;
};

struct fake_write {
    uv_write_t req;
    struct fake *f;
    uint8_t data[];
};

static int fake_verify(const uint8_t pub[TLS_PUBKEY_BYTES], void *ud)
{
    struct fake *f = ud;
    return memcmp(pub, f->expect, TLS_PUBKEY_BYTES) == 0 ? 0 : -BEX_EPERM;
}

static void fake_written(uv_write_t *req, int status)
{
    struct fake_write *w = req->data;

    (void)status;
    w->f->writes--;
    free(w);
}

static void fake_write_raw(struct fake *f, const uint8_t *bytes, size_t len)
{
    struct fake_write *w = malloc(sizeof(*w) + len);
    uv_buf_t b;

    assert_non_null(w);
    memcpy(w->data, bytes, len);
    w->f = f;
    w->req.data = w;
    b = uv_buf_init((char *)w->data, (unsigned)len);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&f->tcp, &b, 1, fake_written), 0);
    f->writes++;
}

static void fake_flush(struct fake *f)
{
    uint8_t buf[65536];
    size_t n;

    while ((n = tls_conn_take(f->tls, buf, sizeof(buf))) > 0)
        fake_write_raw(f, buf, n);
}

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct fake *f = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)f->rbuf, sizeof(f->rbuf));
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct fake *f = s->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        f->eof = true;
        uv_read_stop(s);
        return;
    }
    assert_int_equal(tls_conn_feed(f->tls, (const uint8_t *)buf->base, (size_t)nread), 0);
    if (!f->hs_done && !f->failed) {
        if (tls_conn_handshake(f->tls, &f->hs_done) != 0)
            f->failed = true;
    }
    while (f->hs_done && !f->failed) {
        size_t n = 0;
        if (tls_conn_read(f->tls, f->plain, sizeof(f->plain), &n) != 0)
            f->failed = true;
        if (n == 0)
            break;
        f->plain_in += n;
    }
    fake_flush(f);
}

static void fake_connected(uv_connect_t *req, int status)
{
    struct fake *f = req->data;
    static const uint8_t junk[] = "this is not a TLS record, not at all";

    if (status < 0) {
        f->failed = true;
        return;
    }
    assert_int_equal(uv_read_start((uv_stream_t *)&f->tcp, fake_alloc, fake_read), 0);
    assert_int_equal(tls_conn_handshake(f->tls, &f->hs_done), 0);
    fake_flush(f);
    if (f->junk)
        fake_write_raw(f, junk, sizeof(junk));
}

/*
 * Dials `port` as a peer using key `key`; accepts only the server key
 * `expect`. With `junk`, raw garbage follows the ClientHello.
 */
static void fake_connect(struct fake *f, int key, uint16_t port, const uint8_t *expect, bool junk)
{
    struct sockaddr_in sa;

    memset(f, 0, sizeof(*f));
    f->junk = junk;
    memcpy(f->expect, expect, TLS_PUBKEY_BYTES);
    assert_int_equal(tls_ctx_new(&f->ctx, keys[key]), 0);
    assert_int_equal(tls_conn_new(&f->tls, f->ctx, false, fake_verify, f), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &sa), 0);
    assert_int_equal(uv_tcp_init(&loop, &f->tcp), 0);
    f->tcp.data = f;
    f->req.data = f;
    assert_int_equal(uv_tcp_connect(&f->req, &f->tcp, (struct sockaddr *)&sa, fake_connected), 0);
}

static void fake_send(struct fake *f, const uint8_t *plain, size_t len)
{
    assert_int_equal(tls_conn_write(f->tls, plain, len), 0);
    fake_flush(f);
}

static void fake_send_hello(struct fake *f, uint32_t index)
{
    const uint8_t hello[] = {0x80, 0, 0, 4, 1, P2P_WIRE_VERSION, (uint8_t)(index >> 8), (uint8_t)index};
    fake_send(f, hello, sizeof(hello));
}

static bool fake_hs_done(void *arg)
{
    struct fake *f = arg;
    return f->hs_done || f->failed;
}

static bool fake_written_all(void *arg)
{
    return ((struct fake *)arg)->writes == 0;
}

static bool fake_has_eof(void *arg)
{
    return ((struct fake *)arg)->eof;
}

static void fake_on_closed(uv_handle_t *h)
{
    struct fake *f = h->data;
    f->closed = true;
}

static bool fake_is_closed(void *arg)
{
    return ((struct fake *)arg)->closed;
}

static void fake_close(struct fake *f)
{
    uv_close((uv_handle_t *)&f->tcp, fake_on_closed);
    assert_true(wait_for(fake_is_closed, f, WAIT_MS));
    tls_conn_free(f->tls);
    tls_ctx_free(f->ctx);
    f->tls = NULL;
    f->ctx = NULL;
}

/* Starts a node with index 1 whose table is {0: key 0, 1: key 1}; fakes act as node 0. */
static struct node *acceptor_start(void (*tweak)(struct p2p_config *))
{
    struct node *n = node_new();
    struct p2p_config cfg;

    node_config(n, &cfg, 1, 1, 2, NULL);
    if (tweak != NULL)
        tweak(&cfg);
    node_start(n, &cfg);
    return n;
}

/* Connects a fake node 0 to `n`, completes TLS and HELLO, and waits for the link. */
static void fake_join(struct fake *f, struct node *n)
{
    struct probe up = {n, 0, 0, 0};

    fake_connect(f, 0, p2p_port(&n->p), pubs[1], false);
    assert_true(wait_for(fake_hs_done, f, WAIT_MS));
    assert_true(f->hs_done);
    assert_false(f->failed);
    fake_send_hello(f, 0);
    assert_true(wait_for(probe_up, &up, WAIT_MS));
}

/* ---------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    char dir[] = "/tmp/bex-p2p-XXXXXX";
    char path[64];
    int rc;

    (void)state;
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &deadline) != 0)
        return -1;
    /* Key 0 takes the path bexd takes: an encrypted file in a fresh directory. */
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/node0.pem", dir);
    rc = tls_keygen(path, PASS);
    if (rc == 0)
        rc = tls_key_load(&keys[0], path, PASS);
    unlink(path);
    rmdir(dir);
    if (rc != 0)
        return -1;
    for (int i = 1; i < KEYS; i++)
        if (tls_key_new(&keys[i]) != 0)
            return -1;
    for (int i = 0; i < KEYS; i++)
        tls_pubkey_raw(keys[i], pubs[i]);
    return 0;
}

/* After a failed test its nodes may still hold handles: close them so teardown cannot hang. */
static void close_leftover(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
        (*(int *)arg)++;
    }
}

static int group_teardown(void **state)
{
    int leftover = 0;

    (void)state;
    for (int i = 0; i < KEYS; i++)
        tls_key_free(keys[i]);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_walk(&loop, close_leftover, &leftover);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (leftover > 0)
        return -1; /* a test leaked handles */
    /* UV_EBUSY here would mean a handle was leaked. */
    return uv_loop_close(&loop) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- tests */

static void p2p_three_nodes_exchange_both_ways(void **state)
{
    struct node *ns[3] = {NULL};
    char text[64];

    (void)state;
    mesh_start(ns, 3, NULL);
    wait_mesh(ns, 3);
    for (uint32_t i = 0; i < 3; i++) {
        for (uint32_t j = 0; j < 3; j++) {
            if (i == j)
                continue;
            snprintf(text, sizeof(text), "frame from %u to %u", i, j);
            exchange(ns[i], ns[j], text);
        }
    }
    for (uint32_t i = 0; i < 3; i++) {
        struct p2p_stats st;
        uint64_t in = 0, out = 0, sum_in, sum_out;

        p2p_stats(&ns[i]->p, &st);
        p2p_traffic(&ns[i]->p, &in, &out);
        sum_in = st.unknown.bytes_in;
        sum_out = st.unknown.bytes_out;
        for (uint32_t j = 0; j < P2P_PEERS_MAX; j++) {
            sum_in += st.peer[j].bytes_in;
            sum_out += st.peer[j].bytes_out;
        }
        assert_true(in > 0);
        assert_true(out > 0);
        assert_int_equal(in, sum_in);
        assert_int_equal(out, sum_out);
        assert_int_equal(st.peers_up, 2);
        assert_int_equal(ns[i]->frames, 2);
        for (uint32_t j = 0; j < 3; j++) {
            if (i == j)
                continue;
            assert_true(st.peer[j].up);
            assert_int_equal(st.peer[j].connects, 1);
            assert_int_equal(st.peer[j].frames_in, 1);
            assert_int_equal(st.peer[j].frames_out, 1);
            assert_true(st.peer[j].bytes_in > 0);
            assert_true(st.peer[j].bytes_out > 0);
            assert_int_equal(ns[i]->ups[j], 1);
        }
        assert_log(ns[i], "up (");
    }
    nodes_free(ns, 3);
}

static void p2p_broadcast_reaches_all(void **state)
{
    struct node *ns[4] = {NULL};
    static const uint8_t msg[] = "a broadcast envelope";
    struct probe pr;

    (void)state;
    mesh_start(ns, 4, NULL);
    wait_mesh(ns, 4);
    assert_int_equal(p2p_broadcast(&ns[2]->p, msg, sizeof(msg)), 0);
    for (int i = 0; i < 4; i++) {
        if (i == 2)
            continue;
        pr = (struct probe){ns[i], 0, 0, 1};
        assert_true(wait_for(probe_frames, &pr, WAIT_MS));
        assert_int_equal(ns[i]->last_from, 2);
        assert_memory_equal(ns[i]->last, msg, sizeof(msg));
    }
    assert_int_equal(ns[2]->frames, 0);
    nodes_free(ns, 4);
}

static void p2p_send_errors(void **state)
{
    struct node *ns[2] = {NULL};
    struct p2p_config cfg;
    uint8_t b[8] = {1};
    uint8_t *big;

    (void)state;
    /* Node 0 of a three-node table whose node 2 never starts. */
    ns[0] = node_new();
    node_config(ns[0], &cfg, 0, 0, 3, NULL);
    cfg.frame_bytes_max = 1024;
    cfg.send_queue_bytes_max = 64 * 1024;
    node_start(ns[0], &cfg);
    ns[1] = node_new();
    node_config(ns[1], &cfg, 1, 1, 3, NULL);
    node_start(ns[1], &cfg);
    set_addr(ns[0], 1, ns[1]);
    struct probe up = {ns[0], 1, 0, 0};
    assert_true(wait_for(probe_up, &up, WAIT_MS));

    big = calloc(1, 1025);
    assert_non_null(big);
    assert_int_equal(p2p_send(&ns[0]->p, 0, b, sizeof(b)), -BEX_EINVAL);      /* self */
    assert_int_equal(p2p_send(&ns[0]->p, 5, b, sizeof(b)), -BEX_EINVAL);      /* unlisted */
    assert_int_equal(p2p_send(&ns[0]->p, 99, b, sizeof(b)), -BEX_EINVAL);     /* out of range */
    assert_int_equal(p2p_send(&ns[0]->p, 1, b, 0), -BEX_EINVAL);              /* empty */
    assert_int_equal(p2p_send(&ns[0]->p, 1, big, 1025), -BEX_ELIMIT);         /* too big */
    assert_int_equal(p2p_broadcast(&ns[0]->p, big, 1025), -BEX_ELIMIT);
    assert_int_equal(p2p_send(&ns[0]->p, 2, b, sizeof(b)), -BEX_ECLOSED);     /* not up */
    assert_int_equal(p2p_send(&ns[0]->p, 1, big, 1024), 0);
    assert_int_equal(p2p_set_peer_addr(&ns[0]->p, 2, "no-port"), -BEX_EINVAL);
    assert_int_equal(p2p_set_peer_addr(&ns[0]->p, 2, "[::1:80"), -BEX_EINVAL);
    assert_int_equal(p2p_set_peer_addr(&ns[0]->p, 2, "host:99999"), -BEX_EINVAL);
    assert_int_equal(p2p_set_peer_addr(&ns[0]->p, 0, "127.0.0.1:1"), -BEX_EINVAL);
    assert_string_equal(p2p_reason_name(P2P_REASON_BAD_KEY), "bad_key");
    assert_string_equal(p2p_reason_name(P2P_REASON_COUNT), "unknown");
    free(big);
    nodes_free(ns, 2);
}

static void p2p_config_is_validated(void **state)
{
    struct node *n = node_new();
    struct node *m = node_new();
    struct p2p_config cfg;
    const int wrong_self[] = {0, 2};
    const int shared[] = {0, 0};
    char listen[64];

    (void)state;
#define EXPECT_INVALID(what)                                                                        \
    do {                                                                                            \
        memset(n, 0, sizeof(*n));                                                                   \
        assert_int_equal(p2p_init(&n->p, &loop, &cfg), -BEX_EINVAL);                                \
        assert_non_null(strstr(p2p_error(&n->p), what));                                            \
        p2p_close(&n->p, on_node_closed);                                                           \
        assert_true(n->closed); /* nothing was open: the callback ran at once */                    \
    } while (0)

    node_config(n, &cfg, 1, 1, 2, wrong_self);
    EXPECT_INVALID("my key is not the key listed");
    node_config(n, &cfg, 2, 1, 2, NULL);
    EXPECT_INVALID("not in the peer table");
    node_config(n, &cfg, 1, 1, 2, shared);
    EXPECT_INVALID("share a key");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.peers[1].index = 0;
    EXPECT_INVALID("listed twice");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.peers[0].addr = "10.0.0.1";
    EXPECT_INVALID("not host:port");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.listen = "localhost:0";
    EXPECT_INVALID("numeric");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.send_queue_bytes_max = cfg.frame_bytes_max;
    EXPECT_INVALID("send_queue_bytes_max");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.frame_bytes_max = P2P_FRAME_BYTES_LIMIT + 1;
    EXPECT_INVALID("frame_bytes_max");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.reconnect_max_ms = cfg.reconnect_min_ms - 1;
    EXPECT_INVALID("reconnect");
    node_config(n, &cfg, 1, 1, 2, NULL);
    cfg.key = NULL;
    EXPECT_INVALID("key");
#undef EXPECT_INVALID

    /* A zeroed object closes at once too. */
    memset(n, 0, sizeof(*n));
    p2p_close(&n->p, NULL);

    /* A port in use: the listener was opened, so closing completes in the loop. */
    memset(n, 0, sizeof(*n));
    node_config(n, &cfg, 1, 1, 2, NULL);
    node_start(n, &cfg);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", p2p_port(&n->p));
    node_config(m, &cfg, 1, 1, 2, NULL);
    cfg.listen = listen;
    assert_int_equal(p2p_init(&m->p, &loop, &cfg), -BEX_EIO);
    assert_non_null(strstr(p2p_error(&m->p), "listen on"));
    m->inited = true;
    struct node *ns[2] = {n, m};
    nodes_free(ns, 2);
}

static void p2p_unlisted_key_is_refused(void **state)
{
    struct node *ns[4] = {NULL};
    struct p2p_config cfg;
    const int rogue_table[] = {5, 1, 2};
    struct probe pr;

    (void)state;
    mesh_start(ns, 3, NULL);
    wait_mesh(ns, 3);

    /* A node 0 impostor whose key (5) no genesis lists dials nodes 1 and 2. */
    ns[3] = node_new();
    node_config(ns[3], &cfg, 0, 5, 3, rogue_table);
    node_start(ns[3], &cfg);
    set_addr(ns[3], 1, ns[1]);
    set_addr(ns[3], 2, ns[2]);
    for (int i = 1; i <= 2; i++) {
        pr = (struct probe){ns[i], P2P_PEER_NONE, P2P_REASON_BAD_KEY, 1};
        assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
        assert_log(ns[i], "certificate key is not listed in the peer table");
    }
    p2p_close(&ns[3]->p, on_node_closed);

    assert_int_equal(p2p_peer_count(&ns[3]->p), 0);
    assert_int_equal(peer_stats(ns[3], 1).connects, 0);
    /* The real links were never disturbed. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p2p_peer_count(&ns[i]->p), 2);
        for (int j = 0; j < 3; j++)
            assert_int_equal(ns[i]->downs[j], 0);
    }
    exchange(ns[0], ns[1], "still here");
    exchange(ns[2], ns[0], "me too");
    nodes_free(ns, 4);
}

static void p2p_claimed_index_is_refused(void **state)
{
    struct node *ns[4] = {NULL};
    struct p2p_config cfg;
    const int rogue_table[] = {3, 0, 2};
    struct probe pr;

    (void)state;
    mesh_start(ns, 3, NULL);
    wait_mesh(ns, 3);

    /* Node 0's key, listed, claiming to be node 1 when it dials node 2. */
    ns[3] = node_new();
    node_config(ns[3], &cfg, 1, 0, 3, rogue_table);
    node_start(ns[3], &cfg);
    set_addr(ns[3], 2, ns[2]);
    pr = (struct probe){ns[2], P2P_PEER_NONE, P2P_REASON_BAD_KEY, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_log(ns[2], "claims index 1 but its key is listed for index 0");
    p2p_close(&ns[3]->p, on_node_closed);

    /* Refused before anything was delivered; the real node 0 and 1 links stand. */
    assert_int_equal(peer_stats(ns[2], 1).frames_in, 0);
    assert_int_equal(ns[2]->frames, 0);
    assert_int_equal(ns[2]->downs[0], 0);
    assert_int_equal(ns[2]->downs[1], 0);
    assert_int_equal(peer_stats(ns[2], 1).connects, 1);
    exchange(ns[1], ns[2], "the real node 1");
    exchange(ns[2], ns[0], "and node 0");
    nodes_free(ns, 4);
}

static void p2p_dialer_pins_the_acceptor_key(void **state)
{
    struct node *ns[2] = {NULL};
    struct p2p_config cfg;
    const int wrong_table[] = {0, 4};
    struct probe pr;

    (void)state;
    /* Node 0 expects key 4 for node 1, which runs with key 1. */
    ns[0] = node_new();
    node_config(ns[0], &cfg, 0, 0, 2, wrong_table);
    node_start(ns[0], &cfg);
    ns[1] = node_new();
    node_config(ns[1], &cfg, 1, 1, 2, NULL);
    node_start(ns[1], &cfg);
    set_addr(ns[0], 1, ns[1]);
    pr = (struct probe){ns[0], 1, P2P_REASON_BAD_KEY, 2};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_log(ns[0], "certificate key is not the key listed for this index");
    pr = (struct probe){ns[1], P2P_PEER_NONE, P2P_REASON_HANDSHAKE, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_int_equal(peer_stats(ns[0], 1).connects, 0);
    assert_int_equal(peer_stats(ns[1], 0).connects, 0);
    nodes_free(ns, 2);
}

static void short_handshake(struct p2p_config *cfg)
{
    cfg->handshake_timeout_ms = 200;
}

static void p2p_plain_tcp_garbage_is_dropped(void **state)
{
    struct node *ns[4] = {NULL};
    struct raw junk;
    struct raw silent;
    struct fake f;
    struct probe pr;

    (void)state;
    mesh_start(ns, 3, NULL);
    wait_mesh(ns, 3);

    raw_connect(&junk, p2p_port(&ns[1]->p), 4000);
    pr = (struct probe){ns[1], P2P_PEER_NONE, P2P_REASON_HANDSHAKE, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_true(wait_for(raw_has_eof, &junk, WAIT_MS));
    raw_close(&junk);

    /* Junk right behind a valid ClientHello. */
    fake_connect(&f, 0, p2p_port(&ns[1]->p), pubs[1], true);
    pr.min = 2;
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_true(wait_for(fake_has_eof, &f, WAIT_MS));
    fake_close(&f);

    /* A client that connects and says nothing meets the handshake deadline. */
    ns[3] = acceptor_start(short_handshake);
    raw_connect(&silent, p2p_port(&ns[3]->p), 0);
    pr = (struct probe){ns[3], P2P_PEER_NONE, P2P_REASON_HANDSHAKE, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_log(ns[3], "no TLS handshake within 200 ms");
    assert_true(wait_for(raw_has_eof, &silent, WAIT_MS));
    raw_close(&silent);

    /* The mesh never noticed. */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            assert_int_equal(ns[i]->downs[j], 0);
    exchange(ns[0], ns[1], "unharmed");
    exchange(ns[2], ns[1], "unharmed too");
    nodes_free(ns, 4);
}

static void small_frames(struct p2p_config *cfg)
{
    cfg->frame_bytes_max = 64 * 1024;
    cfg->send_queue_bytes_max = 256 * 1024;
}

static void p2p_oversize_frame_disconnects_sender(void **state)
{
    struct node *ns[2] = {NULL};
    struct p2p_config cfg;
    uint8_t *big = calloc(1, 100 * 1024);
    struct probe pr;

    (void)state;
    assert_non_null(big);
    /* Node 0 allows 1 MiB frames, node 1 only 64 KiB. */
    ns[0] = node_new();
    node_config(ns[0], &cfg, 0, 0, 2, NULL);
    cfg.frame_bytes_max = 1 << 20;
    cfg.send_queue_bytes_max = 4 << 20;
    node_start(ns[0], &cfg);
    ns[1] = node_new();
    node_config(ns[1], &cfg, 1, 1, 2, NULL);
    small_frames(&cfg);
    node_start(ns[1], &cfg);
    set_addr(ns[0], 1, ns[1]);
    pr = (struct probe){ns[0], 1, 0, 0};
    assert_true(wait_for(probe_up, &pr, WAIT_MS));

    assert_int_equal(p2p_send(&ns[0]->p, 1, big, 100 * 1024), 0);
    pr = (struct probe){ns[1], 0, P2P_REASON_OVERSIZE, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_log(ns[1], "frame of 102400 bytes announced, limit 65536");
    assert_int_equal(ns[1]->frames, 0);
    pr = (struct probe){ns[0], 1, 0, 1};
    assert_true(wait_for(probe_downs, &pr, WAIT_MS));
    /* The sender is allowed back and may send what fits. */
    pr = (struct probe){ns[0], 1, 0, 2};
    assert_true(wait_for(probe_connects, &pr, WAIT_MS));
    exchange(ns[0], ns[1], "small enough");
    free(big);
    nodes_free(ns, 2);
}

static void p2p_malformed_input_drops_the_peer(void **state)
{
    struct node *n = acceptor_start(NULL);
    struct fake f;
    struct probe pr;
    static const uint8_t early[] = {0, 0, 0, 3, 'a', 'b', 'c'};
    static const uint8_t empty[] = {0, 0, 0, 0};
    static const uint8_t unknown_ctrl[] = {0x80, 0, 0, 1, 9};
    static const uint8_t big_ctrl[] = {0x80, 0, 1, 0, 1};
    static const uint8_t truncated[] = {0, 0, 0x03, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

    (void)state;
    /* An application frame before HELLO: the peer is never identified. */
    fake_connect(&f, 0, p2p_port(&n->p), pubs[1], false);
    assert_true(wait_for(fake_hs_done, &f, WAIT_MS));
    fake_send(&f, early, sizeof(early));
    pr = (struct probe){n, P2P_PEER_NONE, P2P_REASON_MALFORMED, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_true(wait_for(fake_has_eof, &f, WAIT_MS));
    fake_close(&f);

    /* An empty frame, an unknown and an oversize control frame after HELLO. */
    const uint8_t *bad[] = {empty, unknown_ctrl, big_ctrl};
    const size_t bad_len[] = {sizeof(empty), sizeof(unknown_ctrl), sizeof(big_ctrl)};
    for (size_t i = 0; i < 3; i++) {
        fake_join(&f, n);
        fake_send(&f, bad[i], bad_len[i]);
        pr = (struct probe){n, 0, P2P_REASON_MALFORMED, i + 1};
        assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
        assert_true(wait_for(fake_has_eof, &f, WAIT_MS));
        fake_close(&f);
    }
    assert_log(n, "empty application frame");
    assert_log(n, "unknown control frame type 9");
    assert_log(n, "control frame of 256 bytes");

    /* A frame cut short by the peer closing. */
    fake_join(&f, n);
    fake_send(&f, truncated, sizeof(truncated));
    assert_true(wait_for(fake_written_all, &f, WAIT_MS));
    fake_close(&f);
    pr = (struct probe){n, 0, P2P_REASON_EOF, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));

    assert_int_equal(n->frames, 0);
    assert_int_equal(n->ups[0], 4);
    pr = (struct probe){n, 0, 0, 4};
    assert_true(wait_for(probe_downs, &pr, WAIT_MS));
    struct node *ns[1] = {n};
    nodes_free(ns, 1);
}

static void short_idle(struct p2p_config *cfg)
{
    cfg->idle_timeout_ms = 300;
}

static void p2p_idle_peer_is_dropped_and_keepalive_holds(void **state)
{
    struct node *ns[3] = {NULL};
    struct fake f;
    struct probe pr;
    uint64_t before;

    (void)state;
    /* A peer that completes HELLO and then stays silent. */
    ns[2] = acceptor_start(short_idle);
    fake_join(&f, ns[2]);
    pr = (struct probe){ns[2], 0, P2P_REASON_IDLE, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_log(ns[2], "nothing received for");
    fake_close(&f);

    /* Two real nodes with nothing to say keep their link alive with PINGs. */
    mesh_start(ns, 2, short_idle);
    wait_mesh(ns, 2);
    before = peer_stats(ns[1], 0).bytes_in;
    assert_false(wait_for(never, NULL, 1000));
    assert_true(p2p_peer_up(&ns[0]->p, 1));
    assert_int_equal(ns[0]->downs[1], 0);
    assert_int_equal(ns[1]->downs[0], 0);
    assert_true(peer_stats(ns[1], 0).bytes_in > before);
    assert_int_equal(ns[1]->frames, 0);
    nodes_free(ns, 3);
}

static void p2p_slow_peer_is_disconnected(void **state)
{
    struct node *n = acceptor_start(small_frames);
    struct fake f;
    struct probe pr;
    uint8_t frame[16 * 1024];
    uint64_t peak = 0;
    int rc = 0;
    int sent = 0;

    (void)state;
    memset(frame, 0x5a, sizeof(frame));
    fake_join(&f, n);
    /* The peer stops reading: the kernel buffers fill, then our queue. */
    assert_int_equal(uv_read_stop((uv_stream_t *)&f.tcp), 0);
    for (sent = 0; sent < 20000; sent++) {
        struct p2p_peer_stats st;
        rc = p2p_send(&n->p, 0, frame, sizeof(frame));
        if (rc != 0)
            break;
        st = peer_stats(n, 0);
        if (st.queue_bytes > peak)
            peak = st.queue_bytes;
        assert_true(st.queue_bytes <= 256 * 1024);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(rc, -BEX_EFULL);
    assert_true(peak > 200 * 1024); /* the queue really filled */
    assert_true(peak <= 256 * 1024);
    assert_false(p2p_peer_up(&n->p, 0));
    assert_int_equal(peer_stats(n, 0).disconnects[P2P_REASON_SLOW], 1);
    assert_int_equal(p2p_send(&n->p, 0, frame, sizeof(frame)), -BEX_ECLOSED);
    assert_log(n, "send queue holds");
    pr = (struct probe){n, 0, 0, 1};
    assert_true(wait_for(probe_downs, &pr, WAIT_MS));
    print_message("# slow peer dropped after %d frames of 16 KiB, queue peak %llu bytes\n", sent,
                  (unsigned long long)peak);
    fake_close(&f);
    struct node *ns[1] = {n};
    nodes_free(ns, 1);
}

static void p2p_closed_peer_reconnects_after_backoff(void **state)
{
    struct node *ns[2] = {NULL};
    struct p2p_config cfg;
    struct mesh m;
    struct probe pr;
    char listen[64];
    uint16_t port;

    (void)state;
    mesh_start(ns, 2, NULL);
    wait_mesh(ns, 2);
    port = p2p_port(&ns[1]->p);

    /* Node 1 goes away; node 0 redials and is refused for a while. */
    p2p_close(&ns[1]->p, on_node_closed);
    m = (struct mesh){&ns[1], 1};
    assert_true(wait_for(nodes_closed, &m, WAIT_MS));
    pr = (struct probe){ns[0], 1, 0, 1};
    assert_true(wait_for(probe_downs, &pr, WAIT_MS));
    pr = (struct probe){ns[0], 1, 0, 3};
    assert_true(wait_for(probe_dial_failures, &pr, WAIT_MS));

    /* Node 1 comes back on the same port; node 0's next dial finds it. */
    free(ns[1]->last);
    memset(ns[1], 0, sizeof(*ns[1]));
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    node_config(ns[1], &cfg, 1, 1, 2, NULL);
    cfg.listen = listen;
    node_start(ns[1], &cfg);
    pr = (struct probe){ns[0], 1, 0, 0};
    assert_true(wait_for(probe_up, &pr, WAIT_MS));
    assert_int_equal(peer_stats(ns[0], 1).connects, 2);
    assert_int_equal(ns[0]->ups[1], 2);
    assert_int_equal(ns[0]->downs[1], 1);
    assert_log(ns[0], "connect: connection refused");
    exchange(ns[0], ns[1], "welcome back");
    exchange(ns[1], ns[0], "thanks");
    nodes_free(ns, 2);
}

static void p2p_newer_link_replaces_older(void **state)
{
    struct node *ns[2] = {NULL};
    struct fake f;
    struct probe pr;

    (void)state;
    mesh_start(ns, 2, NULL);
    wait_mesh(ns, 2);
    /* Someone holding node 0's key (node 0 restarted) links to node 1 again. */
    fake_connect(&f, 0, p2p_port(&ns[1]->p), pubs[1], false);
    assert_true(wait_for(fake_hs_done, &f, WAIT_MS));
    fake_send_hello(&f, 0);
    pr = (struct probe){ns[1], 0, P2P_REASON_REPLACED, 1};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_true(p2p_peer_up(&ns[1]->p, 0));
    assert_int_equal(ns[1]->downs[0], 1);
    assert_int_equal(ns[1]->ups[0], 2);
    /* The real node 0 lost its link, redials and takes over again. */
    pr = (struct probe){ns[1], 0, P2P_REASON_REPLACED, 2};
    assert_true(wait_for(probe_disconnects, &pr, WAIT_MS));
    assert_true(wait_for(fake_has_eof, &f, WAIT_MS));
    pr = (struct probe){ns[0], 1, 0, 0};
    assert_true(wait_for(probe_up, &pr, WAIT_MS));
    exchange(ns[1], ns[0], "to the real node 0");
    fake_close(&f);
    nodes_free(ns, 2);
}

static void p2p_large_frame_arrives_intact(void **state)
{
    struct node *ns[2] = {NULL};
    size_t len = 4u << 20;
    uint8_t *big = malloc(len);
    struct probe pr;
    uint64_t state_x = 0x1234567;

    (void)state;
    assert_non_null(big);
    for (size_t i = 0; i < len; i++) {
        state_x = state_x * 6364136223846793005ULL + 1442695040888963407ULL;
        big[i] = (uint8_t)(state_x >> 56);
    }
    mesh_start(ns, 2, NULL);
    wait_mesh(ns, 2);
    assert_int_equal(p2p_send(&ns[1]->p, 0, big, len), 0);
    assert_int_equal(p2p_send(&ns[1]->p, 0, (const uint8_t *)"after", 5), 0);
    pr = (struct probe){ns[0], 0, 0, 2};
    assert_true(wait_for(probe_frames, &pr, WAIT_MS));
    assert_int_equal(ns[0]->bytes, len + 5);
    assert_int_equal(ns[0]->last_len, 5);
    /* Check the big one by sending it back the other way. */
    assert_int_equal(p2p_send(&ns[0]->p, 1, big, len), 0);
    pr = (struct probe){ns[1], 0, 0, 1};
    assert_true(wait_for(probe_frames, &pr, WAIT_MS));
    assert_int_equal(ns[1]->last_len, len);
    assert_memory_equal(ns[1]->last, big, len);
    free(big);
    nodes_free(ns, 2);
}

static void p2p_many_small_frames_arrive_in_order(void **state)
{
    struct node *ns[3] = {NULL};
    uint8_t frame[256];
    const uint64_t count = 5000;
    struct probe pr;

    (void)state;
    mesh_start(ns, 3, NULL);
    wait_mesh(ns, 3);
    ns[2]->check_order = true;
    for (uint64_t s = 0; s < count; s++) {
        size_t len = 8 + (size_t)(s * 37 % 240);
        fill_seq_frame(frame, len, s);
        assert_int_equal(p2p_send(&ns[0]->p, 2, frame, len), 0);
        assert_int_equal(p2p_send(&ns[1]->p, 2, frame, len), 0);
        if (s % 500 == 0)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    pr = (struct probe){ns[2], 0, 0, 2 * count};
    assert_true(wait_for(probe_frames, &pr, WAIT_MS));
    assert_false(ns[2]->order_broken);
    assert_int_equal(ns[2]->next_seq[0], count);
    assert_int_equal(ns[2]->next_seq[1], count);
    assert_int_equal(peer_stats(ns[0], 2).frames_out, count);
    nodes_free(ns, 3);
}

static void p2p_close_from_callbacks(void **state)
{
    struct node *ns[3] = {NULL};
    struct probe pr;
    struct mesh m;

    (void)state;
    mesh_start(ns, 3, NULL);
    wait_mesh(ns, 3);
    ns[1]->close_on_frame = true;
    assert_int_equal(p2p_send(&ns[0]->p, 1, (const uint8_t *)"bye", 3), 0);
    assert_int_equal(p2p_send(&ns[0]->p, 1, (const uint8_t *)"never delivered", 15), 0);
    m = (struct mesh){&ns[1], 1};
    assert_true(wait_for(nodes_closed, &m, WAIT_MS));
    assert_int_equal(ns[1]->frames, 1);
    pr = (struct probe){ns[0], 1, 0, 1};
    assert_true(wait_for(probe_downs, &pr, WAIT_MS));
    pr = (struct probe){ns[2], 1, 0, 1};
    assert_true(wait_for(probe_downs, &pr, WAIT_MS));

    /* A node that closes itself as soon as its first link comes up. */
    free(ns[1]->last);
    memset(ns[1], 0, sizeof(*ns[1]));
    {
        struct p2p_config cfg;
        node_config(ns[1], &cfg, 1, 1, 3, NULL);
        ns[1]->close_on_up = true;
        node_start(ns[1], &cfg);
        set_addr(ns[1], 2, ns[2]);
    }
    m = (struct mesh){&ns[1], 1};
    assert_true(wait_for(nodes_closed, &m, WAIT_MS));
    assert_int_equal(ns[1]->ups[2], 1);
    exchange(ns[0], ns[2], "the survivors");
    nodes_free(ns, 3);
}

static void p2p_dials_host_names(void **state)
{
    struct node *ns[2] = {NULL};
    struct p2p_config cfg;
    char addr[64];
    struct probe pr;

    (void)state;
    ns[1] = node_new();
    node_config(ns[1], &cfg, 1, 1, 2, NULL);
    node_start(ns[1], &cfg);
    ns[0] = node_new();
    node_config(ns[0], &cfg, 0, 0, 2, NULL);
    snprintf(addr, sizeof(addr), "localhost:%u", p2p_port(&ns[1]->p));
    cfg.peers[1].addr = addr;
    node_start(ns[0], &cfg);
    pr = (struct probe){ns[0], 1, 0, 0};
    assert_true(wait_for(probe_up, &pr, WAIT_MS));
    exchange(ns[0], ns[1], "by name");
    nodes_free(ns, 2);
}

/* Pushes `total` bytes in frames of `size` over one link and reports the rate. */
static void measure(struct node *tx, struct node *rx, size_t size, size_t total)
{
    uint8_t *frame = calloc(1, size);
    uint64_t frames = total / size;
    uint64_t sent = 0;
    uint64_t start;
    uint64_t ns_elapsed;
    uint64_t rx_before = rx->frames;
    struct probe pr = {rx, 0, 0, rx_before + frames};

    assert_non_null(frame);
    start = uv_hrtime();
    while (rx->frames < rx_before + frames) {
        while (sent < frames && peer_stats(tx, rx->self).queue_bytes < (2u << 20)) {
            assert_int_equal(p2p_send(&tx->p, rx->self, frame, size), 0);
            sent++;
        }
        if (uv_hrtime() - start > 20ull * 1000 * 1000 * 1000)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    ns_elapsed = uv_hrtime() - start;
    assert_true(probe_frames(&pr));
    print_message("# throughput, one link, %zu-byte frames: %.1f MiB/s, %.0f frames/s (%llu frames)\n",
                  size, (double)(frames * size) / (1 << 20) / ((double)ns_elapsed / 1e9),
                  (double)frames / ((double)ns_elapsed / 1e9), (unsigned long long)frames);
    free(frame);
}

static void p2p_throughput_is_reported(void **state)
{
    struct node *ns[2] = {NULL};

    (void)state;
    mesh_start(ns, 2, NULL);
    wait_mesh(ns, 2);
    ns[1]->count_only = true;
    measure(ns[0], ns[1], 1024, 32u << 20);
    measure(ns[0], ns[1], 64 * 1024, 64u << 20);
    assert_int_equal(ns[1]->bytes, (32u << 20) + (64u << 20));
    nodes_free(ns, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(p2p_three_nodes_exchange_both_ways),
        cmocka_unit_test(p2p_broadcast_reaches_all),
        cmocka_unit_test(p2p_send_errors),
        cmocka_unit_test(p2p_config_is_validated),
        cmocka_unit_test(p2p_unlisted_key_is_refused),
        cmocka_unit_test(p2p_claimed_index_is_refused),
        cmocka_unit_test(p2p_dialer_pins_the_acceptor_key),
        cmocka_unit_test(p2p_plain_tcp_garbage_is_dropped),
        cmocka_unit_test(p2p_oversize_frame_disconnects_sender),
        cmocka_unit_test(p2p_malformed_input_drops_the_peer),
        cmocka_unit_test(p2p_idle_peer_is_dropped_and_keepalive_holds),
        cmocka_unit_test(p2p_slow_peer_is_disconnected),
        cmocka_unit_test(p2p_closed_peer_reconnects_after_backoff),
        cmocka_unit_test(p2p_newer_link_replaces_older),
        cmocka_unit_test(p2p_large_frame_arrives_intact),
        cmocka_unit_test(p2p_many_small_frames_arrive_in_order),
        cmocka_unit_test(p2p_close_from_callbacks),
        cmocka_unit_test(p2p_dials_host_names),
        cmocka_unit_test(p2p_throughput_is_reported),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
