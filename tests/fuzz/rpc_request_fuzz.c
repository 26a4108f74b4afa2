/*
 * rpc_request_fuzz.c: the HTTP/JSON-RPC request path of node/rpc.h, over a
 * real TCP connection to a server in this process.
 *
 * Once per process the server starts on 127.0.0.1 with an OS-chosen port on
 * a uv loop run by this thread, with small limits (so 413, 431, batch,
 * depth, pipeline and deferral limits are reachable), a metrics registry
 * (GET /metrics), a health callback, and methods that use every
 * rpc_param_* helper, defer calls, fail in each documented way and answer
 * too large. A second, keep-alive connection (the probe) stays open for the
 * whole run.
 *
 * Input: byte 0 holds flags (bit 0: let the loop run before the client
 * closes its side, so deferred calls are answered rather than cancelled;
 * bit 1: send everything and close the client's side before the server
 * reads anything; bit 2: hold deferred calls until a few loop turns after
 * the client closed its side, so they are cancelled);
 * byte 1 the size of the chunks the rest is written in (0: all at once,
 * else 4 * byte bytes, with the loop run between chunks so the parser
 * resumes mid-request); the rest is what the client sends. The client then
 * half-closes and reads until the server closes. Checked:
 * - the server closes the connection (it neither hangs nor crashes), frees
 *   it, and cancels or answers every deferred call;
 * - everything it sent parses as HTTP/1.1 responses with a known status,
 *   Content-Length on every response that has a body, and for JSON bodies
 *   a well-formed JSON-RPC 2.0 response object or array;
 * - each helper's result honours its contract (strings without NUL,
 *   integers as given, hex lengths within bounds, arrays within items_max);
 * - afterwards the probe connection still gets the right answer to a good
 *   request, and LeakSanitizer finds nothing once the connection is freed.
 */
#include "fuzz_util.h"
#include "metrics.h"
#include "rpc.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 8192

#define DEFERRED_MAX 8         /* calls the harness holds at once */
#define PUMPS_MAX 200000       /* loop turns before the server counts as hung */
#define HOLD_TURNS 8           /* loop turns deferred calls are held after the client closed */
#define RESPONSE_BYTES_MAX (1u << 20)
#define HEX_MAX 32
#define ITEMS_MAX 4
#define BIG_BYTES_MAX (64u << 10)

struct server {
    bool ready;
    uv_loop_t loop;
    struct rpc rpc;
    struct metrics *metrics;
    uv_check_t answer; /* answers the deferred calls after each loop turn */
    bool hold;         /* ... unless they are held */
    struct rpc_call *deferred[DEFERRED_MAX];
    size_t deferred_n;
    int probe;
    uint8_t *resp; /* what the server sent to the fuzzed connection */
    size_t resp_len;
    bool resp_truncated;
};

static struct server S = {.probe = -1};

/* ---------------------------------------------------------------- methods */

/* Checks what the helpers handed out against their contracts, then echoes it. */
static void reply_params(struct rpc_call *call, const json_t *params, const char *s, uint64_t u, bool b,
                         size_t h_len, size_t h_min, size_t h_max, const json_t *a)
{
    if (s != NULL) {
        const json_t *v = json_object_get(params, "s");
        FUZZ_CHECK(v != NULL && json_is_string(v));
        if (strlen(s) != json_string_length(v))
            fuzz_fail("rpc_param_string gave out a string with a NUL byte");
    }
    if (json_is_integer(json_object_get(params, "u")))
        FUZZ_CHECK((json_int_t)u == json_integer_value(json_object_get(params, "u")));
    FUZZ_CHECK(h_len == 0 || (h_len >= h_min && h_len <= h_max));
    FUZZ_CHECK(a == NULL || (json_is_array(a) && json_array_size(a) <= ITEMS_MAX));
    char u_text[24];
    snprintf(u_text, sizeof(u_text), "%llu", (unsigned long long)u);
    rpc_reply(call, json_pack("{s:s?,s:s,s:b,s:I,s:I}", "s", s, "u", u_text, "b", b, "h", (json_int_t)h_len, "a",
                              (json_int_t)(a ? json_array_size(a) : 0)));
}

static void m_params(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *const names[] = {"s", "u", "b", "h", "a"};
    const char *s = NULL;
    uint64_t u = 0;
    bool b = false;
    uint8_t h[HEX_MAX];
    size_t h_len = 0;
    const json_t *a = NULL;

    (void)ud;
    if (rpc_params_only(call, params, names, BEX_ARRAY_LEN(names)) != 0 ||
        rpc_param_string(call, &s, params, "s", RPC_OPTIONAL) != 0 ||
        rpc_param_uint64(call, &u, params, "u", RPC_OPTIONAL) != 0 ||
        rpc_param_bool(call, &b, params, "b", RPC_OPTIONAL) != 0 ||
        rpc_param_hex(call, h, &h_len, 0, HEX_MAX, params, "h", RPC_OPTIONAL) != 0 ||
        rpc_param_array(call, &a, params, "a", ITEMS_MAX, RPC_OPTIONAL) != 0)
        return;
    reply_params(call, params, s, u, b, h_len, 0, HEX_MAX, a);
}

static void m_required(struct rpc_call *call, const json_t *params, void *ud)
{
    const char *s = NULL;
    uint64_t u = 0;
    bool b = false;
    uint8_t h[8];
    size_t h_len = 0;
    const json_t *a = NULL;

    (void)ud;
    if (rpc_param_string(call, &s, params, "s", RPC_REQUIRED) != 0 ||
        rpc_param_uint64(call, &u, params, "u", RPC_REQUIRED) != 0 ||
        rpc_param_bool(call, &b, params, "b", RPC_REQUIRED) != 0 ||
        rpc_param_hex(call, h, &h_len, 4, sizeof(h), params, "h", RPC_REQUIRED) != 0 ||
        rpc_param_array(call, &a, params, "a", ITEMS_MAX, RPC_REQUIRED) != 0)
        return;
    FUZZ_CHECK(s != NULL && a != NULL);
    reply_params(call, params, s, u, b, h_len, 4, sizeof(h), a);
}

static void on_cancel(struct rpc_call *call, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < S.deferred_n; i++) {
        if (S.deferred[i] == call) {
            S.deferred[i] = S.deferred[--S.deferred_n];
            return;
        }
    }
    fuzz_fail("a call the harness does not hold was cancelled");
}

static void m_defer(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)params;
    (void)ud;
    if (S.deferred_n == DEFERRED_MAX) {
        rpc_reply_error(call, RPC_UNAVAILABLE, NULL, NULL);
        return;
    }
    if (rpc_defer(call, on_cancel, NULL) != 0)
        return; /* refused: already answered with RPC_UNAVAILABLE */
    S.deferred[S.deferred_n++] = call;
}

static void on_answer(uv_check_t *h)
{
    (void)h;
    while (!S.hold && S.deferred_n > 0)
        rpc_reply(S.deferred[--S.deferred_n], json_string("late"));
}

/* Fails in the way "kind" names: each error helper, with and without data. */
static void m_error(struct rpc_call *call, const json_t *params, void *ud)
{
    uint64_t kind = 0;

    (void)ud;
    if (rpc_param_uint64(call, &kind, params, "kind", RPC_OPTIONAL) != 0)
        return;
    switch (kind % 5) {
    case 0:
        rpc_reply_bex(call, RPC_TX_REJECTED, -BEX_ENONCE, NULL);
        return;
    case 1:
        rpc_reply_bex(call, RPC_NOT_FOUND, -BEX_ENOTFOUND, "no such thing");
        return;
    case 2:
        rpc_reply_error(call, RPC_INTERNAL_ERROR, NULL, NULL);
        return;
    case 3:
        rpc_reply_error(call, RPC_TIMEOUT, "waited", json_pack("{s:I}", "kind", (json_int_t)kind));
        return;
    default:
        rpc_reply(call, NULL);
        return;
    }
}

/* A result of n bytes: above the response limit it becomes an internal error. */
static void m_big(struct rpc_call *call, const json_t *params, void *ud)
{
    uint64_t n = 0;
    char *text;

    (void)ud;
    if (rpc_param_uint64(call, &n, params, "n", RPC_REQUIRED) != 0)
        return;
    if (n > BIG_BYTES_MAX)
        n = BIG_BYTES_MAX;
    if ((text = malloc(n + 1)) == NULL)
        fuzz_fail("out of memory for a big result");
    memset(text, 'x', n);
    text[n] = '\0';
    rpc_reply(call, json_string(text));
    free(text);
}

static bool health(struct rpc_health *out, void *ud)
{
    (void)ud;
    snprintf(out->reason, sizeof(out->reason), "fuzzing");
    out->has_chain = true;
    out->height = 1;
    return true;
}

static void start_server(void)
{
    struct rpc_config cfg;
    int rc;

    FUZZ_CHECK(uv_loop_init(&S.loop) == 0);
    if (metrics_new(&S.metrics) != 0)
        fuzz_fail("metrics_new failed");
    rpc_config_default(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.body_bytes_max = 4096;
    cfg.header_bytes_max = 1024;
    cfg.response_bytes_max = 8192;
    cfg.connections_max = 3;
    cfg.idle_timeout_ms = RPC_TIMEOUT_MS_LIMIT;
    cfg.request_timeout_ms = RPC_TIMEOUT_MS_LIMIT;
    cfg.depth_max = 8;
    cfg.batch_max = 4;
    cfg.pipeline_max = 3;
    cfg.deferred_per_conn_max = 2;
    cfg.deferred_max = 3;
    cfg.metrics = S.metrics;
    if ((rc = rpc_init(&S.rpc, &S.loop, &cfg)) != 0)
        fuzz_fail("rpc_init: %s: %s", bex_errname(rc), rpc_errmsg(&S.rpc));
    FUZZ_CHECK(rpc_register(&S.rpc, "fuzz.params", m_params, NULL) == 0);
    FUZZ_CHECK(rpc_register(&S.rpc, "fuzz.required", m_required, NULL) == 0);
    FUZZ_CHECK(rpc_register(&S.rpc, "fuzz.defer", m_defer, NULL) == 0);
    FUZZ_CHECK(rpc_register(&S.rpc, "fuzz.error", m_error, NULL) == 0);
    FUZZ_CHECK(rpc_register(&S.rpc, "fuzz.big", m_big, NULL) == 0);
    rpc_set_health(&S.rpc, health, NULL);
    FUZZ_CHECK(uv_check_init(&S.loop, &S.answer) == 0);
    FUZZ_CHECK(uv_check_start(&S.answer, on_answer) == 0);
    if ((S.resp = malloc(RESPONSE_BYTES_MAX)) == NULL)
        fuzz_fail("out of memory for responses");
    S.ready = true;
}

/* ---------------------------------------------------------------- client */

/* Sends what the socket takes now; a server that already closed is no error. */
static void client_send(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            (void)uv_run(&S.loop, UV_RUN_NOWAIT);
            continue;
        }
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

/* Reads what arrived; returns true once the server closed (EOF or reset). */
static bool client_drain(int fd, uint8_t *buf, size_t *len, size_t cap, bool *truncated)
{
    uint8_t chunk[16384];

    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n <= 0)
            return true;
        size_t take = (size_t)n <= cap - *len ? (size_t)n : cap - *len;
        memcpy(buf + *len, chunk, take);
        *len += take;
        *truncated |= take < (size_t)n;
    }
}

/* ---------------------------------------------------------------- response checks */

struct reader {
    http_parser parser;
    char field[32];
    bool in_content_type;
    char content_type[64];
    bool content_length;
    uint8_t *body;
    size_t body_len;
    size_t body_cap;
    bool truncated;
    size_t messages;
    json_t *last; /* the last JSON body, kept when asked */
    bool keep_last;
};

static void check_rpc_object(const json_t *o)
{
    const json_t *err;

    if (!json_is_object(o))
        fuzz_fail("a JSON-RPC response that is not an object");
    FUZZ_CHECK(json_is_string(json_object_get(o, "jsonrpc")) &&
               strcmp(json_string_value(json_object_get(o, "jsonrpc")), "2.0") == 0);
    FUZZ_CHECK(json_object_get(o, "id") != NULL);
    err = json_object_get(o, "error");
    if ((err == NULL) == (json_object_get(o, "result") == NULL))
        fuzz_fail("a JSON-RPC response needs exactly one of result and error");
    if (err != NULL) {
        FUZZ_CHECK(json_is_object(err) && json_is_integer(json_object_get(err, "code")));
        FUZZ_CHECK(json_is_string(json_object_get(err, "message")));
    }
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    size_t n = len < sizeof(r->field) - 1 ? len : sizeof(r->field) - 1;

    memcpy(r->field, at, n);
    r->field[n] = '\0';
    r->in_content_type = strcasecmp(r->field, "Content-Type") == 0;
    if (strcasecmp(r->field, "Content-Length") == 0)
        r->content_length = true;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    size_t n = len < sizeof(r->content_type) - 1 ? len : sizeof(r->content_type) - 1;

    if (r->in_content_type) {
        memcpy(r->content_type, at, n);
        r->content_type[n] = '\0';
    }
    return 0;
}

static int on_begin(http_parser *p)
{
    struct reader *r = p->data;

    r->content_type[0] = '\0';
    r->content_length = false;
    r->body_len = 0;
    r->truncated = false;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    size_t take = len <= r->body_cap - r->body_len ? len : r->body_cap - r->body_len;

    memcpy(r->body + r->body_len, at, take);
    r->body_len += take;
    r->truncated |= take < len;
    return 0;
}

static int on_complete(http_parser *p)
{
    static const unsigned statuses[] = {100, 200, 204, 400, 404, 405, 413, 431, 500, 503};
    struct reader *r = p->data;
    bool known = false;

    r->messages++;
    for (size_t i = 0; i < BEX_ARRAY_LEN(statuses); i++)
        known |= p->status_code == statuses[i];
    if (!known)
        fuzz_fail("HTTP status %u", p->status_code);
    if (p->status_code == 100 || p->status_code == 204) {
        FUZZ_CHECK(r->body_len == 0);
        return 0;
    }
    if (!r->content_length)
        fuzz_fail("a %u response without Content-Length", p->status_code);
    if (strncmp(r->content_type, "application/json", 16) != 0 || r->truncated)
        return 0;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)r->body, r->body_len, 0, &jerr);
    if (j == NULL)
        fuzz_fail("a %u response whose JSON body does not parse: %s", p->status_code, jerr.text);
    if (json_is_array(j)) {
        FUZZ_CHECK(json_array_size(j) > 0);
        for (size_t i = 0; i < json_array_size(j); i++)
            check_rpc_object(json_array_get(j, i));
    } else if (json_object_get(j, "jsonrpc") != NULL) {
        check_rpc_object(j);
    }
    if (r->keep_last) {
        json_decref(r->last);
        r->last = j;
    } else {
        json_decref(j);
    }
    return 0;
}

static const http_parser_settings reader_settings = {
    .on_message_begin = on_begin,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void reader_init(struct reader *r, uint8_t *body, size_t body_cap, bool keep_last)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    r->body = body;
    r->body_cap = body_cap;
    r->keep_last = keep_last;
}

/* Parses bytes the server sent; eof marks the end of the stream. */
static void reader_feed(struct reader *r, const uint8_t *data, size_t len, bool eof)
{
    size_t n = http_parser_execute(&r->parser, &reader_settings, (const char *)data, len);

    if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK || n != len)
        fuzz_fail("the server sent malformed HTTP: %s",
                  http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
    if (eof) {
        (void)http_parser_execute(&r->parser, &reader_settings, NULL, 0);
        if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK)
            fuzz_fail("the server's last response is cut short: %s",
                      http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
    }
}

/* ---------------------------------------------------------------- probe */

static void probe(void)
{
    static const char body[] = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"fuzz.params\",\"params\":{\"u\":42,\"h\":\"0a0b\"}}";
    static uint8_t in[RESPONSE_BYTES_MAX];
    char req[512];
    struct reader r;
    size_t len = 0, done = 0;
    bool truncated = false;
    int n;

    if (S.probe < 0)
        S.probe = fuzz_tcp_connect(rpc_port(&S.rpc));
    n = snprintf(req, sizeof(req),
                 "POST / HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                 sizeof(body) - 1, body);
    client_send(S.probe, (const uint8_t *)req, (size_t)n);
    reader_init(&r, in + RESPONSE_BYTES_MAX / 2, RESPONSE_BYTES_MAX / 2, true);
    for (int i = 0; r.messages == 0; i++) {
        if (i == PUMPS_MAX)
            fuzz_fail("the server does not answer the probe any more");
        (void)uv_run(&S.loop, UV_RUN_NOWAIT);
        if (client_drain(S.probe, in, &len, RESPONSE_BYTES_MAX / 2, &truncated))
            fuzz_fail("the server closed the probe connection");
        reader_feed(&r, in + done, len - done, false);
        done = len;
    }
    FUZZ_CHECK(r.messages == 1 && r.parser.status_code == 200 && r.last != NULL);
    const json_t *res = json_object_get(r.last, "result");
    if (json_integer_value(json_object_get(r.last, "id")) != 7 || res == NULL ||
        json_integer_value(json_object_get(res, "h")) != 2 ||
        !json_is_string(json_object_get(res, "u")) || strcmp(json_string_value(json_object_get(res, "u")), "42") != 0)
        fuzz_fail("wrong answer to the probe");
    json_decref(r.last);
}

/* ---------------------------------------------------------------- driver */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t body[RESPONSE_BYTES_MAX];
    struct reader r;
    bool closed = false;
    int fd, i;

    if (size > FUZZ_MAX_LEN)
        return 0;
    if (!S.ready) {
        start_server();
        probe();
    }
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t chunk = data[1] == 0 ? size : (size_t)data[1] * 4;
    data += 2;
    size -= 2;

    S.resp_len = 0;
    S.resp_truncated = false;
    S.hold = (flags & 4) != 0;
    fd = fuzz_tcp_connect(rpc_port(&S.rpc));
    if (flags & 2) {
        client_send(fd, data, size);
        (void)shutdown(fd, SHUT_WR);
        size = 0;
    }
    for (size_t at = 0; at < size; at += chunk) {
        client_send(fd, data + at, size - at < chunk ? size - at : chunk);
        (void)uv_run(&S.loop, UV_RUN_NOWAIT);
        closed = client_drain(fd, S.resp, &S.resp_len, RESPONSE_BYTES_MAX, &S.resp_truncated);
        if (closed)
            break;
    }
    for (i = 0; (flags & 1) && !closed && i < 4; i++) {
        (void)uv_run(&S.loop, UV_RUN_NOWAIT);
        closed = client_drain(fd, S.resp, &S.resp_len, RESPONSE_BYTES_MAX, &S.resp_truncated);
    }
    (void)shutdown(fd, SHUT_WR);
    for (i = 0; !closed; i++) {
        if (i == PUMPS_MAX)
            fuzz_fail("the server neither answered nor closed the connection");
        /* A server that stopped reading behind held calls sees the end of the stream once they are answered. */
        if (i == HOLD_TURNS)
            S.hold = false;
        (void)uv_run(&S.loop, UV_RUN_NOWAIT);
        closed = client_drain(fd, S.resp, &S.resp_len, RESPONSE_BYTES_MAX, &S.resp_truncated);
    }
    /* Only the probe connection is left once the server freed this one. */
    for (i = 0; S.rpc.conns_len + S.rpc.refusing_len > 1; i++) {
        if (i == PUMPS_MAX)
            fuzz_fail("the server keeps a closed connection");
        (void)uv_run(&S.loop, UV_RUN_NOWAIT);
    }
    close(fd);
    S.hold = false;
    FUZZ_CHECK(S.deferred_n == 0);
    FUZZ_CHECK(S.rpc.deferred_len == 0);
    if (!S.resp_truncated) {
        reader_init(&r, body, sizeof(body), false);
        reader_feed(&r, S.resp, S.resp_len, true);
    }
    probe();
    return 0;
}
