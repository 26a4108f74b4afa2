/*
 * httpc_test: the blocking client against the real RPC server (loop on a
 * background thread) and against canned servers on raw sockets that answer
 * one connection with fixed bytes, or never answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bex.h"
#include "httpc.h"
#include "rpc.h"

/* ---- the real server ---- */

struct server {
    uv_loop_t loop;
    uv_async_t stop;
    struct rpc rpc;
    pthread_t thread;
    char url[64];
};

static struct server S;

static void m_add(struct rpc_call *call, const json_t *params, void *ud)
{
    uint64_t a = 0, b = 0;
    (void)ud;
    if (rpc_param_uint64(call, &a, params, "a", RPC_REQUIRED) != 0 ||
        rpc_param_uint64(call, &b, params, "b", RPC_REQUIRED) != 0)
        return;
    rpc_reply(call, json_pack("{s:I}", "sum", (json_int_t)(a + b)));
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

static int server_setup(void **state)
{
    struct rpc_config cfg;
    (void)state;
    rpc_config_default(&cfg);
    cfg.port = 0;
    cfg.body_bytes_max = 256;
    if (uv_loop_init(&S.loop) != 0 || rpc_init(&S.rpc, &S.loop, &cfg) != 0 ||
        rpc_register(&S.rpc, "add", m_add, NULL) != 0 ||
        uv_async_init(&S.loop, &S.stop, on_stop) != 0 ||
        pthread_create(&S.thread, NULL, loop_main, NULL) != 0)
        return -1;
    snprintf(S.url, sizeof(S.url), "http://127.0.0.1:%u/", rpc_port(&S.rpc));
    return 0;
}

static int server_teardown(void **state)
{
    (void)state;
    uv_async_send(&S.stop);
    pthread_join(S.thread, NULL);
    return rpc_closed(&S.rpc) && uv_loop_close(&S.loop) == 0 ? 0 : -1;
}

/* ---- canned servers ---- */

struct canned {
    int lfd;
    uint16_t port;
    pthread_t thread;
    const char *reply; /* sent after the request head and body, then closed */
    char request[8192];
    size_t request_len;
};

static void *canned_main(void *arg)
{
    struct canned *c = arg;
    int fd = accept(c->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    /* Read the head, then as many body bytes as Content-Length says. */
    size_t want = SIZE_MAX;
    while (c->request_len < want && c->request_len < sizeof(c->request) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 3000) <= 0)
            break;
        ssize_t n = recv(fd, c->request + c->request_len, sizeof(c->request) - 1 - c->request_len, 0);
        if (n <= 0)
            break;
        c->request_len += (size_t)n;
        c->request[c->request_len] = '\0';
        char *end = strstr(c->request, "\r\n\r\n");
        if (end && want == SIZE_MAX) {
            const char *cl = strstr(c->request, "Content-Length: ");
            want = (size_t)(end + 4 - c->request) + (cl ? strtoul(cl + 16, NULL, 10) : 0);
        }
    }
    send(fd, c->reply, strlen(c->reply), MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

static int listen_any(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void canned_start(struct canned *c, const char *reply)
{
    memset(c, 0, sizeof(*c));
    c->reply = reply;
    c->lfd = listen_any(&c->port);
    assert_int_equal(pthread_create(&c->thread, NULL, canned_main, c), 0);
}

static void canned_stop(struct canned *c)
{
    pthread_join(c->thread, NULL);
    close(c->lfd);
}

static char *canned_url(const struct canned *c, const char *path)
{
    static char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", c->port, path);
    return url;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- tests against the server ---- */

static void httpc_jsonrpc_returns_result(void **state)
{
    json_t *result = NULL, *error = NULL, *params = json_pack("{s:i,s:i}", "a", 40, "b", 2);
    char err[128];
    (void)state;
    assert_int_equal(httpc_jsonrpc(&result, &error, err, sizeof(err), S.url, "add", params, 2000), 0);
    assert_null(error);
    assert_int_equal(json_integer_value(json_object_get(result, "sum")), 42);
    json_decref(result);
    json_decref(params);
}

static void httpc_jsonrpc_returns_error_object(void **state)
{
    json_t *result = NULL, *error = NULL, *params = json_pack("{s:s}", "a", "x");
    char err[128];
    (void)state;
    assert_int_equal(httpc_jsonrpc(&result, &error, err, sizeof(err), S.url, "nope", NULL, 2000), 0);
    assert_null(result);
    assert_int_equal(json_integer_value(json_object_get(error, "code")), RPC_METHOD_NOT_FOUND);
    json_decref(error);
    assert_int_equal(httpc_jsonrpc(&result, &error, err, sizeof(err), S.url, "add", params, 2000), 0);
    assert_int_equal(json_integer_value(json_object_get(error, "code")), RPC_INVALID_PARAMS);
    assert_non_null(strstr(json_string_value(json_object_get(error, "message")), "'a'"));
    json_decref(error);
    json_decref(params);
}

static void httpc_jsonrpc_maps_http_errors(void **state)
{
    char big[400], err[160];
    json_t *result = NULL, *error = NULL;
    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_t *params = json_pack("{s:s}", "a", big);
    assert_int_equal(httpc_jsonrpc(&result, &error, err, sizeof(err), S.url, "add", params, 2000),
                     -BEX_ELIMIT);
    assert_null(result);
    assert_null(error);
    assert_non_null(strstr(err, "HTTP 413"));
    assert_non_null(strstr(err, "too large"));
    json_decref(params);
}

static void httpc_get_reads_health(void **state)
{
    struct httpc_response resp;
    struct httpc_opts opts;
    char url[96];
    (void)state;
    httpc_opts_default(&opts);
    snprintf(url, sizeof(url), "%shealth", S.url);
    assert_int_equal(httpc_request(&resp, "GET", url, NULL, 0, &opts), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.body, "{\"status\":\"ok\",\"reason\":\"\"}");
    assert_int_equal(resp.body_len, strlen(resp.body));
    httpc_response_free(&resp);
    snprintf(url, sizeof(url), "%snowhere", S.url);
    assert_int_equal(httpc_request(&resp, "GET", url, NULL, 0, &opts), 0);
    assert_int_equal(resp.status, 404);
    httpc_response_free(&resp);
}

/* ---- tests against canned servers ---- */

static void httpc_request_carries_path_query_and_body(void **state)
{
    struct canned c;
    struct httpc_response resp;
    struct httpc_opts opts;
    char host[64];
    (void)state;
    httpc_opts_default(&opts);
    canned_start(&c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_int_equal(httpc_request(&resp, "POST", canned_url(&c, "/a/b?x=1#frag"), "{}", 2, &opts), 0);
    canned_stop(&c);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "ok");
    httpc_response_free(&resp);
    assert_int_equal(strncmp(c.request, "POST /a/b?x=1 HTTP/1.1\r\n", 24), 0);
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%u\r\n", c.port);
    assert_non_null(strstr(c.request, host));
    assert_non_null(strstr(c.request, "\r\nContent-Length: 2\r\n"));
    assert_non_null(strstr(c.request, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(c.request, "\r\n\r\n{}"));

    canned_start(&c, "HTTP/1.1 204 No Content\r\n\r\n");
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, ""), NULL, 0, &opts), 0);
    canned_stop(&c);
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.body_len, 0);
    assert_string_equal(resp.body, "");
    httpc_response_free(&resp);
    assert_int_equal(strncmp(c.request, "GET / HTTP/1.1\r\n", 16), 0);
}

static void httpc_reads_close_delimited_and_chunked_bodies(void **state)
{
    struct canned c;
    struct httpc_response resp;
    struct httpc_opts opts;
    (void)state;
    httpc_opts_default(&opts);
    canned_start(&c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close");
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, "/"), NULL, 0, &opts), 0);
    canned_stop(&c);
    assert_string_equal(resp.body, "until close");
    assert_string_equal(resp.content_type, "text/plain");
    httpc_response_free(&resp);

    canned_start(&c, "HTTP/1.1 100 Continue\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, "/"), NULL, 0, &opts), 0);
    canned_stop(&c);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "hello world");
    httpc_response_free(&resp);

    canned_start(&c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, "/"), NULL, 0, &opts), -BEX_EIO);
    canned_stop(&c);
    assert_non_null(strstr(resp.err, "closed before"));
    httpc_response_free(&resp);

    canned_start(&c, "SPDY/9 nonsense\r\n\r\n");
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, "/"), NULL, 0, &opts), -BEX_EIO);
    canned_stop(&c);
    assert_non_null(strstr(resp.err, "malformed"));
    httpc_response_free(&resp);
}

static void httpc_response_over_cap_is_limit(void **state)
{
    static char reply[20100];
    struct canned c;
    struct httpc_response resp;
    struct httpc_opts opts;
    (void)state;
    int n = snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n");
    memset(reply + n, 'z', 20000);
    reply[n + 20000] = '\0';
    httpc_opts_default(&opts);
    opts.response_bytes_max = 10000;
    canned_start(&c, reply);
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, "/"), NULL, 0, &opts), -BEX_ELIMIT);
    canned_stop(&c);
    assert_non_null(strstr(resp.err, "over 10000 bytes"));
    httpc_response_free(&resp);

    opts.response_bytes_max = 20000; /* exactly the cap is fine */
    canned_start(&c, reply);
    assert_int_equal(httpc_request(&resp, "GET", canned_url(&c, "/"), NULL, 0, &opts), 0);
    canned_stop(&c);
    assert_int_equal(resp.body_len, 20000);
    httpc_response_free(&resp);
}

static void httpc_read_times_out(void **state)
{
    struct httpc_response resp;
    struct httpc_opts opts;
    uint16_t port;
    char url[64];
    (void)state;
    /* Listening but never answering: the kernel accepts, nobody replies. */
    int lfd = listen_any(&port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    httpc_opts_default(&opts);
    opts.timeout_ms = 200;
    uint64_t t0 = now_ms();
    assert_int_equal(httpc_request(&resp, "GET", url, NULL, 0, &opts), -BEX_ETIMEOUT);
    uint64_t dt = now_ms() - t0;
    assert_true(dt >= 190 && dt < 2000);
    assert_non_null(strstr(resp.err, "timed out"));
    httpc_response_free(&resp);

    json_t *result = NULL, *error = NULL;
    char err[128];
    assert_int_equal(httpc_jsonrpc(&result, &error, err, sizeof(err), url, "x", NULL, 150),
                     -BEX_ETIMEOUT);
    assert_non_null(strstr(err, "timed out"));
    close(lfd);
}

static void httpc_connect_refused_is_io_error(void **state)
{
    struct httpc_response resp;
    struct httpc_opts opts;
    uint16_t port;
    char url[64];
    (void)state;
    close(listen_any(&port)); /* a port that nobody listens on now */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    httpc_opts_default(&opts);
    assert_int_equal(httpc_request(&resp, "GET", url, NULL, 0, &opts), -BEX_EIO);
    assert_non_null(strstr(resp.err, "refused"));
    httpc_response_free(&resp);
}

static void httpc_bad_urls_are_refused(void **state)
{
    static const char *const bad[] = {"", "nonsense", "ftp://127.0.0.1/", "https://127.0.0.1/",
                                      "http:///path"};
    struct httpc_response resp;
    struct httpc_opts opts;
    (void)state;
    httpc_opts_default(&opts);
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad); i++) {
        assert_int_equal(httpc_request(&resp, "GET", bad[i], NULL, 0, &opts), -BEX_EINVAL);
        assert_true(resp.err[0] != '\0');
        httpc_response_free(&resp);
    }
}

static void httpc_jsonrpc_refuses_foreign_replies(void **state)
{
    static const char *const bodies[] = {
        "hello",
        "{\"jsonrpc\":\"2.0\",\"result\":1,\"id\":2}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
    };
    char reply[256];
    struct canned c;
    json_t *result = NULL, *error = NULL;
    char err[160];
    (void)state;
    for (size_t i = 0; i < BEX_ARRAY_LEN(bodies); i++) {
        snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(bodies[i]), bodies[i]);
        canned_start(&c, reply);
        int rc = httpc_jsonrpc(&result, &error, err, sizeof(err), canned_url(&c, "/"), "m", NULL,
                               2000);
        if (rc != -BEX_EDECODE)
            fail_msg("reply %zu: %s: %s", i, bex_errname(rc), err);
        assert_int_equal(rc,
                         -BEX_EDECODE);
        canned_stop(&c);
        assert_non_null(strstr(err, i == 1 ? "another request" : "not a JSON-RPC 2.0 response"));
        assert_null(result);
        assert_null(error);
        assert_true(strstr(c.request, "\"method\":\"m\"") && !strstr(c.request, "params"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(httpc_jsonrpc_returns_result),
        cmocka_unit_test(httpc_jsonrpc_returns_error_object),
        cmocka_unit_test(httpc_jsonrpc_maps_http_errors),
        cmocka_unit_test(httpc_get_reads_health),
        cmocka_unit_test(httpc_request_carries_path_query_and_body),
        cmocka_unit_test(httpc_reads_close_delimited_and_chunked_bodies),
        cmocka_unit_test(httpc_response_over_cap_is_limit),
        cmocka_unit_test(httpc_read_times_out),
        cmocka_unit_test(httpc_connect_refused_is_io_error),
        cmocka_unit_test(httpc_bad_urls_are_refused),
        cmocka_unit_test(httpc_jsonrpc_refuses_foreign_replies),
    };
    return cmocka_run_group_tests(tests, server_setup, server_teardown);
}
