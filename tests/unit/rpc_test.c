/*
 * rpc_test: the JSON-RPC server on 127.0.0.1 with an OS-chosen port. Each
 * test starts its own server whose loop runs on a background thread, then
 * talks to it with raw sockets (an HTTP reader written here, independent of
 * the server's parser) and with curl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bex.h"
#include "metrics.h"
#include "rpc.h"

#define IO_TIMEOUT_MS 3000

struct server {
    uv_loop_t loop;
    uv_async_t stop;
    struct rpc rpc;
    struct metrics *metrics;
    struct metrics_family *events, *rejected, *latency;
    pthread_t thread;
    bool inited, running;
    uint16_t port;
    atomic_int notes;
    atomic_int holds;
    atomic_int cancels;
    atomic_int defer_refused;
    atomic_int health_ok;
};

static struct server S;

/* ---- methods the tests call ----
 * They run on the loop thread, where a cmocka assertion cannot unwind: they
 * check with BEX_ASSERT, which aborts the binary (a reported failure). */

static void m_echo(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)ud;
    rpc_reply(call, params ? json_deep_copy(params) : json_null());
}

static void m_add(struct rpc_call *call, const json_t *params, void *ud)
{
    static const char *const names[] = {"a", "b"};
    uint64_t a = 0, b = 0;
    (void)ud;
    if (rpc_params_only(call, params, names, 2) != 0 ||
        rpc_param_uint64(call, &a, params, "a", RPC_REQUIRED) != 0 ||
        rpc_param_uint64(call, &b, params, "b", RPC_REQUIRED) != 0)
        return;
    rpc_reply(call, json_pack("{s:I}", "sum", (json_int_t)(a + b)));
}

static void m_types(struct rpc_call *call, const json_t *params, void *ud)
{
    const char *s = "default";
    bool flag = false;
    uint8_t bytes[4];
    size_t bytes_len = 0;
    const json_t *list = NULL;
    (void)ud;
    if (rpc_param_string(call, &s, params, "s", RPC_OPTIONAL) != 0 ||
        rpc_param_bool(call, &flag, params, "flag", RPC_OPTIONAL) != 0 ||
        rpc_param_hex(call, bytes, &bytes_len, 2, sizeof(bytes), params, "hex", RPC_OPTIONAL) != 0 ||
        rpc_param_array(call, &list, params, "list", 2, RPC_OPTIONAL) != 0)
        return;
    rpc_reply(call, json_pack("{s:s,s:b,s:i,s:i,s:i}", "s", s, "flag", flag, "hex_len",
                              (int)bytes_len, "hex0", bytes_len ? bytes[0] : -1, "list_len",
                              list ? (int)json_array_size(list) : -1));
}

static void m_reject(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)params;
    (void)ud;
    rpc_reply_bex(call, RPC_TX_REJECTED, BEX_ESIG, NULL);
}

static void m_note(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)params;
    (void)ud;
    BEX_ASSERT(strcmp(rpc_call_method(call), "note") == 0);
    atomic_fetch_add(&S.notes, 1);
    rpc_reply(call, json_true());
}

struct sleeper {
    uv_timer_t timer;
    struct rpc_call *call;
    uint64_t ms;
};

static void sleeper_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sleeper_fire(uv_timer_t *t)
{
    struct sleeper *sl = t->data;
    rpc_reply(sl->call, json_pack("{s:I}", "slept", (json_int_t)sl->ms));
    uv_close((uv_handle_t *)&sl->timer, sleeper_closed);
}

static void sleeper_cancel(struct rpc_call *call, void *ud)
{
    struct sleeper *sl = ud;
    BEX_ASSERT(call == sl->call);
    atomic_fetch_add(&S.cancels, 1);
    uv_timer_stop(&sl->timer);
    uv_close((uv_handle_t *)&sl->timer, sleeper_closed);
}

/* Answers {"slept": ms} after ms milliseconds: a deferred call. */
static void m_sleep(struct rpc_call *call, const json_t *params, void *ud)
{
    uint64_t ms = 0;
    (void)ud;
    if (rpc_param_uint64(call, &ms, params, "ms", RPC_REQUIRED) != 0)
        return;
    struct sleeper *sl = calloc(1, sizeof(*sl));
    BEX_ASSERT(sl != NULL);
    if (rpc_defer(call, sleeper_cancel, sl) != 0) {
        atomic_fetch_add(&S.defer_refused, 1);
        free(sl);
        return;
    }
    sl->call = call;
    sl->ms = ms;
    sl->timer.data = sl;
    BEX_ASSERT(uv_timer_init(&S.loop, &sl->timer) == 0);
    BEX_ASSERT(uv_timer_start(&sl->timer, sleeper_fire, ms, 0) == 0);
}

static void hold_cancel(struct rpc_call *call, void *ud)
{
    (void)call;
    (void)ud;
    atomic_fetch_add(&S.cancels, 1);
}

/* Never answers: only a cancel ends it. */
static void m_hold(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)params;
    (void)ud;
    if (rpc_defer(call, hold_cancel, NULL) != 0) {
        atomic_fetch_add(&S.defer_refused, 1);
        return;
    }
    atomic_fetch_add(&S.holds, 1);
}

static void m_big(struct rpc_call *call, const json_t *params, void *ud)
{
    (void)params;
    (void)ud;
    char *s = malloc(100000);
    BEX_ASSERT(s != NULL);
    memset(s, 'x', 99999);
    s[99999] = '\0';
    rpc_reply(call, json_string(s));
    free(s);
}

static bool health(struct rpc_health *out, void *ud)
{
    (void)ud;
    bool ok = atomic_load(&S.health_ok) != 0;
    snprintf(out->reason, sizeof(out->reason), "%s", ok ? "height 7" : "syncing");
    out->has_chain = true;
    out->height = 7;
    out->view = 2;
    return ok;
}

/* ---- server fixture ---- */

static void test_config(struct rpc_config *cfg)
{
    rpc_config_default(cfg);
    cfg->port = 0;
    cfg->body_bytes_max = 4096;
    cfg->header_bytes_max = 2048;
    cfg->response_bytes_max = 65536;
    cfg->connections_max = 4;
    cfg->idle_timeout_ms = 5000;
    cfg->request_timeout_ms = 300;
    cfg->depth_max = 8;
    cfg->batch_max = 4;
    cfg->pipeline_max = 4;
    cfg->deferred_per_conn_max = 3;
    cfg->deferred_max = 6;
}

static void on_stop(uv_async_t *a)
{
    rpc_close(&S.rpc);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&S.loop, UV_RUN_DEFAULT);
    return NULL;
}

static const char *const reasons[] = {"ESIG", "ENONCE"};

static void server_init(const struct rpc_config *base)
{
    struct rpc_config cfg;
    memset(&S, 0, sizeof(S));
    atomic_store(&S.health_ok, 1);
    assert_int_equal(uv_loop_init(&S.loop), 0);
    S.inited = true;
    assert_int_equal(metrics_new(&S.metrics), 0);
    if (base)
        cfg = *base;
    else
        test_config(&cfg);
    cfg.metrics = S.metrics;
    int rc = rpc_init(&S.rpc, &S.loop, &cfg);
    if (rc != 0)
        fail_msg("rpc_init: %s: %s", bex_strerror(rc), rpc_errmsg(&S.rpc));
    S.port = rpc_port(&S.rpc);
    assert_true(S.port != 0);
    assert_int_equal(rpc_register(&S.rpc, "echo", m_echo, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "add", m_add, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "types", m_types, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "reject", m_reject, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "note", m_note, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "sleep", m_sleep, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "hold", m_hold, NULL), 0);
    assert_int_equal(rpc_register(&S.rpc, "big", m_big, NULL), 0);
    rpc_set_health(&S.rpc, health, NULL);

    struct metrics_desc d1 = {.type = METRICS_COUNTER, .name = "bex_test_events_total",
                              .help = "Events."};
    struct metrics_desc d2 = {.type = METRICS_COUNTER, .name = "bex_test_rejected_total",
                              .help = "Rejections.", .label = "reason", .values = reasons,
                              .values_len = 2};
    struct metrics_desc d3 = {.type = METRICS_HISTOGRAM, .name = "bex_test_latency_seconds",
                              .help = "Latency.", .buckets = metrics_latency_buckets,
                              .buckets_len = METRICS_LATENCY_BUCKETS_LEN};
    assert_int_equal(metrics_register(S.metrics, &S.events, &d1), 0);
    assert_int_equal(metrics_register(S.metrics, &S.rejected, &d2), 0);
    assert_int_equal(metrics_register(S.metrics, &S.latency, &d3), 0);
}

static void server_run(void)
{
    assert_int_equal(uv_async_init(&S.loop, &S.stop, on_stop), 0);
    assert_int_equal(pthread_create(&S.thread, NULL, loop_main, NULL), 0);
    S.running = true;
}

static void server_start(const struct rpc_config *base)
{
    server_init(base);
    server_run();
}

static void server_stop(void)
{
    S.inited = false;
    if (S.running) {
        uv_async_send(&S.stop);
        pthread_join(S.thread, NULL);
        S.running = false;
    }
    if (!rpc_closed(&S.rpc)) {
        rpc_close(&S.rpc);
        uv_run(&S.loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(uv_loop_close(&S.loop), 0);
    metrics_free(S.metrics);
}

/* Stops a server that a failed test left running, so the next test starts
 * clean and reports on its own. */
static int teardown(void **state)
{
    (void)state;
    if (S.inited)
        server_stop();
    return 0;
}

/* ---- client helpers ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls until *v reaches want or the deadline passes; returns the last value. */
static int wait_for(atomic_int *v, int want, uint64_t timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    int x;
    while ((x = atomic_load(v)) < want && now_ms() < end)
        usleep(2000);
    return x;
}

struct client {
    int fd;
    size_t len;
    char buf[1 << 18];
};

struct resp {
    int status;
    char head[4096];
    char *body; /* NUL-terminated, malloc */
    size_t body_len;
};

static int tcp_connect(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static struct client *client_open(void)
{
    struct client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = tcp_connect(S.port);
    return c;
}

static void client_close(struct client *c)
{
    close(c->fd);
    free(c);
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void send_str(struct client *c, const char *s)
{
    send_all(c->fd, s, strlen(s));
}

/* Receives more bytes; returns 0 on EOF or reset, -1 on timeout, else > 0. */
static ssize_t client_fill(struct client *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    assert_true(c->len < sizeof(c->buf));
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0)
        return errno == ECONNRESET ? 0 : -1;
    c->len += (size_t)n;
    return n;
}

static const char *find_header(const struct resp *r, const char *name, char *out, size_t out_len)
{
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(out, out_len, "%.*s", (int)vl, v);
            return out;
        }
    }
    return NULL;
}

/* Reads one response; returns 0, or -1 when the connection ends first. */
static int client_read(struct client *c, struct resp *r)
{
    char *end;
    memset(r, 0, sizeof(*r));
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (client_fill(c, IO_TIMEOUT_MS) <= 0)
            return -1;
    size_t head_len = (size_t)(end - c->buf) + 4;
    assert_true(head_len < sizeof(r->head));
    memcpy(r->head, c->buf, head_len);
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    char v[64];
    size_t body_len = 0;
    if (find_header(r, "Content-Length", v, sizeof(v)))
        body_len = strtoul(v, NULL, 10);
    else
        assert_true(r->status == 204 || r->status == 100);
    while (c->len < head_len + body_len)
        if (client_fill(c, IO_TIMEOUT_MS) <= 0)
            return -1;
    r->body = malloc(body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, c->buf + head_len, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return 0;
}

/* True when the server closes the connection within timeout_ms (any
 * unread bytes are skipped). */
static bool client_sees_close(struct client *c, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t t = now_ms();
        if (t >= end)
            return false;
        c->len = 0;
        ssize_t n = client_fill(c, (int)(end - t));
        if (n == 0)
            return true;
        if (n < 0)
            return false;
    }
}

static char *post_text(const char *body, const char *extra_headers)
{
    char *s = NULL;
    assert_true(asprintf(&s,
                         "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         "%sContent-Length: %zu\r\n\r\n%s",
                         extra_headers ? extra_headers : "", strlen(body), body) > 0);
    return s;
}

static void client_post(struct client *c, const char *body)
{
    char *s = post_text(body, NULL);
    send_str(c, s);
    free(s);
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One POST on a new connection; returns the parsed JSON body (or NULL for 204). */
static json_t *call_raw(const char *body, int *status)
{
    struct client *c = client_open();
    struct resp r;
    client_post(c, body);
    assert_int_equal(client_read(c, &r), 0);
    *status = r.status;
    json_t *j = NULL;
    if (r.body_len) {
        j = json_loads(r.body, 0, NULL);
        assert_non_null(j);
    }
    resp_free(&r);
    client_close(c);
    return j;
}

static json_t *call_ok(const char *body)
{
    int status = 0;
    json_t *j = call_raw(body, &status);
    assert_int_equal(status, 200);
    assert_non_null(j);
    return j;
}

static void assert_error(const json_t *resp, int code, const char *message_part)
{
    json_t *e = json_object_get(resp, "error");
    if (!json_is_object(e))
        fail_msg("no error in %s", json_dumps(resp, 0));
    assert_int_equal(json_integer_value(json_object_get(e, "code")), code);
    const char *m = json_string_value(json_object_get(e, "message"));
    assert_non_null(m);
    if (message_part && !strstr(m, message_part))
        fail_msg("message '%s' lacks '%s'", m, message_part);
    assert_null(json_object_get(resp, "result"));
    assert_string_equal(json_string_value(json_object_get(resp, "jsonrpc")), "2.0");
}

/* Runs curl (with a hard --max-time) and returns its stdout. */
static char *curl(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "curl -s -S --max-time 5 %s", args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n;
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    assert_int_equal(pclose(p), 0);
    return out;
}

/* ---- tests ---- */

static void rpc_call_succeeds(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    struct resp r;
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":2,\"b\":40},\"id\":7}");
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(find_header(&r, "Content-Type", v, sizeof(v)), "application/json");
    assert_non_null(find_header(&r, "Content-Length", v, sizeof(v)));
    assert_int_equal(strtoul(v, NULL, 10), r.body_len);
    assert_string_equal(r.body, "{\"jsonrpc\":\"2.0\",\"result\":{\"sum\":42},\"id\":7}");
    resp_free(&r);
    client_close(c);

    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"x\":[1,\"two\"]},"
                        "\"id\":\"abc\"}");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "abc");
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "result"), "x")), 2);
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"reject\",\"id\":null}");
    assert_true(json_is_null(json_object_get(j, "id")));
    assert_error(j, RPC_TX_REJECTED, "bad signature");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_object_get(j, "error"), "data"),
                                          "reason")),
        "ESIG");
    json_decref(j);
    server_stop();
}

static void rpc_curl_call_succeeds(void **state)
{
    (void)state;
    server_start(NULL);
    char args[512];
    snprintf(args, sizeof(args),
             "-i -H 'Content-Type: application/json' "
             "-d '{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1,\"b\":2},\"id\":1}' "
             "http://127.0.0.1:%u/", S.port);
    char *out = curl(args);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(out, "Content-Length: 43\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n{\"jsonrpc\":\"2.0\",\"result\":{\"sum\":3},\"id\":1}"));
    free(out);
    server_stop();
}

static void rpc_keep_alive_serves_two_requests(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    struct resp r;
    for (int i = 1; i <= 2; i++) {
        char body[128];
        snprintf(body, sizeof(body),
                 "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":%d,\"b\":0},\"id\":%d}",
                 i, i);
        client_post(c, body);
        assert_int_equal(client_read(c, &r), 0);
        assert_int_equal(r.status, 200);
        char v[64];
        assert_string_equal(find_header(&r, "Connection", v, sizeof(v)), "keep-alive");
        json_t *j = json_loads(r.body, 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(j, "id")), i);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "result"), "sum")), i);
        json_decref(j);
        resp_free(&r);
    }
    client_close(c);

    /* curl reuses one connection for both URLs. */
    char args[1024];
    snprintf(args, sizeof(args),
             "-w ' connects=%%{num_connects}\\n' -d '{\"jsonrpc\":\"2.0\",\"method\":\"note\",\"id\":1}' "
             "http://127.0.0.1:%u/ --next -w ' connects=%%{num_connects}\\n' "
             "-d '{\"jsonrpc\":\"2.0\",\"method\":\"note\",\"id\":2}' http://127.0.0.1:%u/",
             S.port, S.port);
    char *out = curl(args);
    assert_non_null(strstr(out, "\"id\":1} connects=1\n"));
    assert_non_null(strstr(out, "\"id\":2} connects=0\n"));
    free(out);
    assert_int_equal(atomic_load(&S.notes), 2);
    server_stop();
}

static void rpc_pipelined_requests_answer_in_order(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    char *a = post_text("{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":150},\"id\":1}", NULL);
    char *b = post_text("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"n\":2},\"id\":2}", NULL);
    char *both = NULL;
    assert_true(asprintf(&both, "%s%s", a, b) > 0);
    uint64_t t0 = now_ms();
    send_str(c, both); /* one write: both requests arrive together */
    struct resp r;
    assert_int_equal(client_read(c, &r), 0);
    assert_true(now_ms() - t0 >= 140);
    assert_string_equal(r.body, "{\"jsonrpc\":\"2.0\",\"result\":{\"slept\":150},\"id\":1}");
    resp_free(&r);
    assert_int_equal(client_read(c, &r), 0);
    assert_string_equal(r.body, "{\"jsonrpc\":\"2.0\",\"result\":{\"n\":2},\"id\":2}");
    resp_free(&r);
    free(a);
    free(b);
    free(both);
    client_close(c);
    server_stop();
}

/* More pipelined requests than pipeline_max: the server stops reading, then
 * resumes as answers go out, and every response still comes in order. */
static void rpc_pipeline_backpressure_keeps_order(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    char all[4096] = "";
    for (int i = 1; i <= 7; i++) {
        char body[128];
        if (i <= 2)
            snprintf(body, sizeof(body),
                     "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":60},\"id\":%d}", i);
        else
            snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":%d}", i);
        char *s = post_text(body, NULL);
        strcat(all, s);
        free(s);
    }
    send_str(c, all);
    for (int i = 1; i <= 7; i++) {
        struct resp r;
        assert_int_equal(client_read(c, &r), 0);
        json_t *j = json_loads(r.body, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "id")), i);
        assert_non_null(json_object_get(j, "result"));
        json_decref(j);
        resp_free(&r);
    }
    client_close(c);
    server_stop();
}

static void rpc_batch_answers_each_member(void **state)
{
    (void)state;
    server_start(NULL);
    json_t *j = call_ok("[{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1,\"b\":1},\"id\":1},"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"note\"},"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":3},"
                        "5]");
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 3);
    json_t *r0 = json_array_get(j, 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r0, "result"), "sum")), 2);
    assert_error(json_array_get(j, 1), RPC_METHOD_NOT_FOUND, "nope");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 1), "id")), 3);
    assert_error(json_array_get(j, 2), RPC_INVALID_REQUEST, "not an object");
    assert_true(json_is_null(json_object_get(json_array_get(j, 2), "id")));
    json_decref(j);
    assert_int_equal(atomic_load(&S.notes), 1);

    /* A batch with a deferred member waits for it. */
    j = call_ok("[{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":30},\"id\":1},"
                "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":2}]");
    assert_int_equal(json_array_size(j), 2);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(j, 0), "result"), "slept")), 30);
    json_decref(j);

    j = call_ok("[]");
    assert_error(j, RPC_INVALID_REQUEST, "batch");
    json_decref(j);
    j = call_ok("[1,2,3,4,5]");
    assert_true(json_is_object(j));
    assert_error(j, RPC_INVALID_REQUEST, "batch of 5");
    json_decref(j);
    server_stop();
}

static void rpc_notification_gets_no_response(void **state)
{
    (void)state;
    server_start(NULL);
    int status = 0;
    json_t *j = call_raw("{\"jsonrpc\":\"2.0\",\"method\":\"note\",\"params\":{}}", &status);
    assert_int_equal(status, 204);
    assert_null(j);
    assert_int_equal(atomic_load(&S.notes), 1);
    /* A notification of an unknown method is not answered either. */
    j = call_raw("[{\"jsonrpc\":\"2.0\",\"method\":\"note\"},{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}]",
                 &status);
    assert_int_equal(status, 204);
    assert_null(j);
    assert_int_equal(atomic_load(&S.notes), 2);
    server_stop();
}

static void rpc_malformed_json_is_parse_error(void **state)
{
    (void)state;
    server_start(NULL);
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":");
    assert_error(j, RPC_PARSE_ERROR, "parse error");
    assert_true(json_is_null(json_object_get(j, "id")));
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1,\"id\":2}");
    assert_error(j, RPC_PARSE_ERROR, "duplicate");
    json_decref(j);
    j = call_ok("");
    assert_error(j, RPC_PARSE_ERROR, NULL);
    json_decref(j);
    server_stop();
}

static void rpc_wrong_version_is_invalid_request(void **state)
{
    (void)state;
    server_start(NULL);
    json_t *j = call_ok("{\"jsonrpc\":\"1.0\",\"method\":\"echo\",\"id\":9}");
    assert_error(j, RPC_INVALID_REQUEST, "jsonrpc");
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 9);
    json_decref(j);
    j = call_ok("{\"method\":\"echo\"}"); /* no version: answered though id-less */
    assert_error(j, RPC_INVALID_REQUEST, "jsonrpc");
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":[1]}");
    assert_error(j, RPC_INVALID_REQUEST, "'id'");
    assert_true(json_is_null(json_object_get(j, "id")));
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":7,\"id\":1}");
    assert_error(j, RPC_INVALID_REQUEST, "'method'");
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":3,\"id\":1}");
    assert_error(j, RPC_INVALID_REQUEST, "'params'");
    json_decref(j);
    server_stop();
}

static void rpc_unknown_method_is_not_found(void **state)
{
    (void)state;
    server_start(NULL);
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"tx.nope\",\"id\":1}");
    assert_error(j, RPC_METHOD_NOT_FOUND, "tx.nope");
    json_decref(j);
    server_stop();
}

static void expect_invalid_param(const char *body, const char *param, const char *why)
{
    json_t *j = call_ok(body);
    assert_error(j, RPC_INVALID_PARAMS, why);
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "'%s'", param);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (!strstr(m, quoted))
        fail_msg("message '%s' does not name %s", m, quoted);
    json_t *data = json_object_get(json_object_get(j, "error"), "data");
    assert_string_equal(json_string_value(json_object_get(data, "param")), param);
    json_decref(j);
}

static void rpc_wrong_param_types_name_the_param(void **state)
{
    (void)state;
    server_start(NULL);
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":\"x\",\"b\":1},\"id\":1}",
                         "a", "non-negative integer");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":-1,\"b\":1},\"id\":1}",
                         "a", "non-negative integer");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1},\"id\":1}",
                         "b", "is required");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1,\"b\":2,\"c\":3},\"id\":1}",
                         "c", "not a parameter of add");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":[1,2],\"id\":1}",
                         "a", "by name");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1,\"b\":\"18446744073709551616\"},\"id\":1}",
                         "b", "above 2^64");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"s\":5},\"id\":1}",
                         "s", "must be a string");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"flag\":1},\"id\":1}",
                         "flag", "true or false");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"hex\":\"abc\"},\"id\":1}",
                         "hex", "even number");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"hex\":\"zz\"},\"id\":1}",
                         "hex", "2 to 4 bytes");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"hex\":\"zzzz\"},\"id\":1}",
                         "hex", "only hex digits");
    expect_invalid_param("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"list\":[1,2,3]},\"id\":1}",
                         "list", "at most 2 items");

    /* Valid values of every kind, and defaults for absent ones. */
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":{\"s\":\"hi\","
                        "\"flag\":true,\"hex\":\"0xAB01\",\"list\":[1]},\"id\":1}");
    char *text = json_dumps(json_object_get(j, "result"), JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(text,
                        "{\"flag\":true,\"hex0\":171,\"hex_len\":2,\"list_len\":1,\"s\":\"hi\"}");
    free(text);
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"id\":1}");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "result"), "s")),
                        "default");
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":\"18446744073709551614\",\"b\":1},\"id\":1}");
    assert_int_equal((uint64_t)json_integer_value(json_object_get(json_object_get(j, "result"), "sum")),
                     UINT64_MAX);
    json_decref(j);
    server_stop();
}

static void rpc_body_over_limit_is_413(void **state)
{
    (void)state;
    server_start(NULL);
    /* Refused from Content-Length alone, before the body is sent. */
    struct client *c = client_open();
    send_str(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    struct resp r;
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 413);
    char v[64];
    assert_string_equal(find_header(&r, "Connection", v, sizeof(v)), "close");
    resp_free(&r);
    assert_true(client_sees_close(c, 2000));
    client_close(c);

    /* Chunked: refused when the running total passes the limit. */
    c = client_open();
    send_str(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[1100];
    memset(chunk, ' ', sizeof(chunk));
    for (int i = 0; i < 5; i++) {
        char hdr[16];
        snprintf(hdr, sizeof(hdr), "%zx\r\n", sizeof(chunk));
        send_str(c, hdr);
        send_all(c->fd, chunk, sizeof(chunk));
        send_str(c, "\r\n");
    }
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    assert_true(client_sees_close(c, 2000));
    client_close(c);

    /* curl sends the whole body; it still gets the 413. */
    char *big = malloc(6000);
    assert_non_null(big);
    memset(big, 'a', 5999);
    big[5999] = '\0';
    char *args = NULL;
    assert_true(asprintf(&args, "-o /dev/null -w '%%{http_code}' -d '%s' http://127.0.0.1:%u/", big,
                         S.port) > 0);
    char *out = curl(args);
    assert_string_equal(out, "413");
    free(out);
    free(args);
    free(big);
    server_stop();
}

static void rpc_half_sent_request_times_out(void **state)
{
    (void)state;
    server_start(NULL);
    static const char *const halves[] = {
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Le",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":",
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(halves); i++) {
        struct client *c = client_open();
        uint64_t t0 = now_ms();
        send_str(c, halves[i]);
        assert_true(client_sees_close(c, 2000));
        uint64_t dt = now_ms() - t0;
        assert_true(dt >= 250); /* request_timeout_ms is 300 */
        client_close(c);
    }
    server_stop();
}

static void rpc_idle_connection_is_closed(void **state)
{
    (void)state;
    struct rpc_config cfg;
    test_config(&cfg);
    cfg.idle_timeout_ms = 200;
    server_start(&cfg);
    struct client *c = client_open();
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
    struct resp r;
    assert_int_equal(client_read(c, &r), 0);
    resp_free(&r);
    uint64_t t0 = now_ms();
    assert_true(client_sees_close(c, 2000));
    assert_true(now_ms() - t0 >= 150);
    client_close(c);
    server_stop();
}

static void rpc_too_many_connections_are_refused(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *cs[4];
    struct resp r;
    for (int i = 0; i < 4; i++) {
        cs[i] = client_open();
        client_post(cs[i], "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
        assert_int_equal(client_read(cs[i], &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    struct client *extra = client_open();
    assert_int_equal(client_read(extra, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "too many connections"));
    resp_free(&r);
    assert_true(client_sees_close(extra, 2000));
    client_close(extra);

    /* A slot frees when a client leaves. */
    client_close(cs[0]);
    uint64_t end = now_ms() + 2000;
    bool served = false;
    while (!served && now_ms() < end) {
        struct client *c = client_open();
        client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
        if (client_read(c, &r) == 0) {
            served = r.status == 200;
            resp_free(&r);
        }
        client_close(c);
        if (!served)
            usleep(5000);
    }
    assert_true(served);
    for (int i = 1; i < 4; i++)
        client_close(cs[i]);
    server_stop();
}

static void rpc_deep_nesting_is_refused(void **state)
{
    (void)state;
    server_start(NULL);
    /* depth_max is 8: the request object plus seven arrays pass. */
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[[[[[[[\"[\"]]]]]]],\"id\":1}");
    assert_non_null(json_object_get(j, "result"));
    json_decref(j);
    j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[[[[[[[[1]]]]]]]],\"id\":1}");
    assert_error(j, RPC_INVALID_REQUEST, "nested deeper than 8");
    json_decref(j);
    server_stop();
}

static void rpc_health_reports_ok_and_unavailable(void **state)
{
    (void)state;
    server_start(NULL);
    char args[256];
    snprintf(args, sizeof(args), "-w ' %%{http_code}' http://127.0.0.1:%u/health", S.port);
    char *out = curl(args);
    assert_string_equal(out, "{\"status\":\"ok\",\"reason\":\"height 7\",\"height\":7,\"view\":2} 200");
    free(out);
    atomic_store(&S.health_ok, 0);
    out = curl(args);
    assert_string_equal(out, "{\"status\":\"unavailable\",\"reason\":\"syncing\",\"height\":7,\"view\":2} 503");
    free(out);
    server_stop();
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static void rpc_metrics_text_parses(void **state)
{
    (void)state;
    server_init(NULL);
    /* Updated before the loop thread starts: the registry is single-threaded. */
    metrics_counter_add(S.events, 0, 3);
    metrics_counter_add(S.rejected, 0, 2);
    metrics_histogram_observe(S.latency, 0, 0.02);
    metrics_histogram_observe(S.latency, 0, 3);
    server_run();
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
    json_decref(j);
    char args[256];
    snprintf(args, sizeof(args), "-i http://127.0.0.1:%u/metrics", S.port);
    char *out = curl(args);
    assert_non_null(strstr(out, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_true(has_line(out, "# HELP bex_test_events_total Events."));
    assert_true(has_line(out, "# TYPE bex_test_events_total counter"));
    assert_true(has_line(out, "bex_test_events_total 3"));
    assert_true(has_line(out, "# TYPE bex_test_rejected_total counter"));
    assert_true(has_line(out, "bex_test_rejected_total{reason=\"ESIG\"} 2"));
    assert_true(has_line(out, "bex_test_rejected_total{reason=\"ENONCE\"} 0"));
    assert_true(has_line(out, "# TYPE bex_test_latency_seconds histogram"));
    assert_true(has_line(out, "bex_test_latency_seconds_bucket{le=\"0.01\"} 0"));
    assert_true(has_line(out, "bex_test_latency_seconds_bucket{le=\"0.025\"} 1"));
    assert_true(has_line(out, "bex_test_latency_seconds_bucket{le=\"5\"} 2"));
    assert_true(has_line(out, "bex_test_latency_seconds_bucket{le=\"+Inf\"} 2"));
    assert_true(has_line(out, "bex_test_latency_seconds_sum 3.02"));
    assert_true(has_line(out, "bex_test_latency_seconds_count 2"));
    /* The server's own families: the echo call and its 200. */
    assert_true(has_line(out, "bex_rpc_calls_total{result=\"ok\"} 1"));
    assert_true(has_line(out, "bex_rpc_http_responses_total{status=\"200\"} 1"));
    assert_true(has_line(out, "# TYPE bex_rpc_connections gauge"));
    /* Every sample line is "name[{labels}] value". */
    for (char *line = strstr(out, "\r\n\r\n") + 4; *line; line = strchr(line, '\n') + 1) {
        if (*line == '#')
            continue;
        char name[128], value[64];
        assert_int_equal(sscanf(line, "%127s %63s", name, value), 2);
        assert_int_equal(strncmp(name, "bex_", 4), 0);
        char *end = NULL;
        strtod(value, &end);
        assert_true(*end == '\0' || strcmp(value, "+Inf") == 0);
    }
    free(out);
    server_stop();
}

static void rpc_deferred_reply_completes_later(void **state)
{
    (void)state;
    server_start(NULL);
    uint64_t t0 = now_ms();
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":100},\"id\":5}");
    assert_true(now_ms() - t0 >= 95);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "result"), "slept")), 100);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 5);
    json_decref(j);
    assert_int_equal(atomic_load(&S.cancels), 0);
    server_stop();
}

static void rpc_deferred_call_of_vanished_client_is_cancelled(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}");
    assert_int_equal(wait_for(&S.holds, 1, 2000), 1);
    client_close(c);
    assert_int_equal(wait_for(&S.cancels, 1, 2000), 1);

    /* A sleeper whose client leaves: cancelled, its timer closed, no reply. */
    c = client_open();
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":100},\"id\":2}");
    usleep(20000);
    client_close(c);
    assert_int_equal(wait_for(&S.cancels, 2, 2000), 2);

    /* The server still serves. */
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":3}");
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 3);
    json_decref(j);
    server_stop();
}

static void rpc_deferred_calls_are_bounded(void **state)
{
    (void)state;
    server_start(NULL);
    /* Per connection (3): the fourth hold of a batch is refused at once. */
    const char *four = "[{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":2},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":3},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":4}]";
    struct client *a = client_open();
    client_post(a, four);
    assert_int_equal(wait_for(&S.defer_refused, 1, 2000), 1);
    assert_int_equal(atomic_load(&S.holds), 3);
    struct client *b = client_open();
    client_post(b, four);
    assert_int_equal(wait_for(&S.defer_refused, 2, 2000), 2);
    assert_int_equal(atomic_load(&S.holds), 6);
    /* In total (6): a single hold elsewhere is answered "unavailable". */
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":9}");
    assert_error(j, RPC_UNAVAILABLE, "too many calls waiting");
    json_decref(j);
    client_close(a);
    assert_int_equal(wait_for(&S.cancels, 3, 2000), 3);
    /* Room again: a hold is accepted (and cancelled at shutdown). */
    struct client *c = client_open();
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":10}");
    assert_int_equal(wait_for(&S.holds, 7, 2000), 7);
    server_stop();
    assert_int_equal(atomic_load(&S.cancels), 7);
    client_close(b);
    client_close(c);
}

static void rpc_wrong_path_and_method(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    struct resp r;
    char v[64];
    send_str(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    send_str(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(find_header(&r, "Allow", v, sizeof(v)), "POST");
    resp_free(&r);
    send_str(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(find_header(&r, "Allow", v, sizeof(v)), "GET");
    resp_free(&r);
    /* Still the same connection: these errors do not close it. */
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}");
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(c);
    server_stop();
}

static void rpc_malformed_http_is_400_and_closed(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    struct resp r;
    send_str(c, "HELLO THERE\r\n\r\n");
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    assert_true(client_sees_close(c, 2000));
    client_close(c);

    /* Bad bytes after a good request: the good one is answered first. */
    c = client_open();
    char *good = post_text("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}", NULL);
    char *both = NULL;
    assert_true(asprintf(&both, "%sPOST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", good) > 0);
    send_str(c, both);
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    assert_true(client_sees_close(c, 2000));
    free(good);
    free(both);
    client_close(c);
    server_stop();
}

static void rpc_headers_over_limit_are_431(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    char hdr[3000];
    memset(hdr, 'a', sizeof(hdr));
    memcpy(hdr, "X-Big: ", 7);
    hdr[sizeof(hdr) - 1] = '\0';
    send_str(c, "GET /health HTTP/1.1\r\nHost: x\r\n");
    send_str(c, hdr);
    send_str(c, "\r\n\r\n");
    struct resp r;
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    assert_true(client_sees_close(c, 2000));
    client_close(c);
    server_stop();
}

static void rpc_expect_continue_is_honoured(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    const char *body = "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}";
    char head[256];
    snprintf(head, sizeof(head),
             "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
             strlen(body));
    send_str(c, head);
    struct resp r;
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 100);
    resp_free(&r);
    send_str(c, body);
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(c);
    server_stop();
}

static void rpc_connection_close_is_respected(void **state)
{
    (void)state;
    server_start(NULL);
    struct client *c = client_open();
    char *s = post_text("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}", "Connection: close\r\n");
    send_str(c, s);
    free(s);
    struct resp r;
    assert_int_equal(client_read(c, &r), 0);
    assert_int_equal(r.status, 200);
    char v[32];
    assert_string_equal(find_header(&r, "Connection", v, sizeof(v)), "close");
    resp_free(&r);
    assert_true(client_sees_close(c, 2000));
    client_close(c);
    server_stop();
}

static void rpc_response_over_limit_is_internal_error(void **state)
{
    (void)state;
    server_start(NULL);
    json_t *j = call_ok("{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":1}");
    assert_error(j, RPC_INTERNAL_ERROR, "exceeds 65536");
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 1);
    json_decref(j);
    server_stop();
}

/* rpc_close() cancels waiting calls before it returns; here the loop is
 * stepped on the test thread instead of a background one. */
static void rpc_close_cancels_deferred_calls(void **state)
{
    (void)state;
    server_init(NULL);
    struct client *c = client_open(); /* the kernel completes the handshake */
    client_post(c, "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}");
    uint64_t end = now_ms() + 2000;
    while (atomic_load(&S.holds) == 0 && now_ms() < end)
        uv_run(&S.loop, UV_RUN_NOWAIT);
    assert_int_equal(atomic_load(&S.holds), 1);
    assert_int_equal(S.rpc.deferred_len, 1);
    rpc_close(&S.rpc);
    assert_int_equal(atomic_load(&S.cancels), 1);
    assert_int_equal(S.rpc.deferred_len, 0);
    assert_false(rpc_closed(&S.rpc));
    uv_run(&S.loop, UV_RUN_DEFAULT);
    server_stop();
    client_close(c);
}

static void rpc_init_refuses_bad_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct rpc a, b;
    struct rpc_config cfg;
    assert_int_equal(uv_loop_init(&loop), 0);

    test_config(&cfg);
    cfg.batch_max = 0;
    assert_int_equal(rpc_init(&a, &loop, &cfg), -BEX_EINVAL);
    assert_non_null(strstr(rpc_errmsg(&a), "batch_max"));
    rpc_close(&a);
    test_config(&cfg);
    cfg.host = "localhost";
    assert_int_equal(rpc_init(&a, &loop, &cfg), -BEX_EINVAL);
    rpc_close(&a);

    /* A port in use: the second server fails with BEX_EIO and says why.
     * The first one also stops SIGPIPE from killing the process. */
    test_config(&cfg);
    struct sigaction sa;
    signal(SIGPIPE, SIG_DFL);
    assert_int_equal(rpc_init(&a, &loop, &cfg), 0);
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    cfg.port = rpc_port(&a);
    assert_int_equal(rpc_init(&b, &loop, &cfg), -BEX_EIO);
    assert_non_null(strstr(rpc_errmsg(&b), "address already in use"));
    rpc_close(&b);

    assert_int_equal(rpc_register(&a, "x", m_echo, NULL), 0);
    assert_int_equal(rpc_register(&a, "x", m_echo, NULL), -BEX_EEXIST);
    assert_int_equal(rpc_register(&a, "rpc.discover", m_echo, NULL), -BEX_EINVAL);
    assert_int_equal(rpc_register(&a, "", m_echo, NULL), -BEX_EINVAL);
    rpc_close(&a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(rpc_closed(&a));
    assert_true(rpc_closed(&b));
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(rpc_call_succeeds, teardown),
        cmocka_unit_test_teardown(rpc_curl_call_succeeds, teardown),
        cmocka_unit_test_teardown(rpc_keep_alive_serves_two_requests, teardown),
        cmocka_unit_test_teardown(rpc_pipelined_requests_answer_in_order, teardown),
        cmocka_unit_test_teardown(rpc_pipeline_backpressure_keeps_order, teardown),
        cmocka_unit_test_teardown(rpc_batch_answers_each_member, teardown),
        cmocka_unit_test_teardown(rpc_notification_gets_no_response, teardown),
        cmocka_unit_test_teardown(rpc_malformed_json_is_parse_error, teardown),
        cmocka_unit_test_teardown(rpc_wrong_version_is_invalid_request, teardown),
        cmocka_unit_test_teardown(rpc_unknown_method_is_not_found, teardown),
        cmocka_unit_test_teardown(rpc_wrong_param_types_name_the_param, teardown),
        cmocka_unit_test_teardown(rpc_body_over_limit_is_413, teardown),
        cmocka_unit_test_teardown(rpc_half_sent_request_times_out, teardown),
        cmocka_unit_test_teardown(rpc_idle_connection_is_closed, teardown),
        cmocka_unit_test_teardown(rpc_too_many_connections_are_refused, teardown),
        cmocka_unit_test_teardown(rpc_deep_nesting_is_refused, teardown),
        cmocka_unit_test_teardown(rpc_health_reports_ok_and_unavailable, teardown),
        cmocka_unit_test_teardown(rpc_metrics_text_parses, teardown),
        cmocka_unit_test_teardown(rpc_deferred_reply_completes_later, teardown),
        cmocka_unit_test_teardown(rpc_deferred_call_of_vanished_client_is_cancelled, teardown),
        cmocka_unit_test_teardown(rpc_deferred_calls_are_bounded, teardown),
        cmocka_unit_test_teardown(rpc_wrong_path_and_method, teardown),
        cmocka_unit_test_teardown(rpc_malformed_http_is_400_and_closed, teardown),
        cmocka_unit_test_teardown(rpc_headers_over_limit_are_431, teardown),
        cmocka_unit_test_teardown(rpc_expect_continue_is_honoured, teardown),
        cmocka_unit_test_teardown(rpc_connection_close_is_respected, teardown),
        cmocka_unit_test_teardown(rpc_response_over_limit_is_internal_error, teardown),
        cmocka_unit_test_teardown(rpc_close_cancels_deferred_calls, teardown),
        cmocka_unit_test_teardown(rpc_init_refuses_bad_config, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
