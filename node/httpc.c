/*
 * httpc.c: blocking HTTP/1.1 client. Sockets are non-blocking and every wait
 * goes through poll() against one deadline, so no single slow step (connect,
 * a trickling server) can stretch the total beyond what the caller allowed.
 */
#include "httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOST_BYTES 256
#define PATH_BYTES 1024
#define HEAD_BYTES 1536
#define RECV_BYTES 16384
#define FIELD_BYTES 32

void httpc_opts_default(struct httpc_opts *opts)
{
    opts->connect_timeout_ms = 5000;
    opts->timeout_ms = 30000;
    opts->response_bytes_max = 16u << 20;
}

void httpc_response_free(struct httpc_response *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

static int fail(struct httpc_response *resp, int rc, const char *fmt, ...) BEX_PRINTF(3, 4);

static int fail(struct httpc_response *resp, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->err, sizeof(resp->err), fmt, ap);
    va_end(ap);
    return rc;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t t = now_ms();
        if (t >= deadline)
            return 0;
        uint64_t left = deadline - t;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

struct url {
    char host[HOST_BYTES];
    char port[8];
    char path[PATH_BYTES];
};

/* Offset and length of one URL part, or false when the URL lacks it. */
static bool url_part(const struct http_parser_url *pu, enum http_parser_url_fields f, size_t *off,
                     size_t *len)
{
    if (!(pu->field_set & (1 << f)))
        return false;
    *off = pu->field_data[f].off;
    *len = pu->field_data[f].len;
    return true;
}

static int url_parse(struct httpc_response *resp, struct url *u, const char *s)
{
    struct http_parser_url pu;
    size_t n = strlen(s), off = 0, len = 0;

    if (n == 0 || n >= HTTPC_URL_BYTES_MAX)
        return fail(resp, -BEX_EINVAL, "url: empty or over %d bytes", HTTPC_URL_BYTES_MAX - 1);
    http_parser_url_init(&pu);
    if (http_parser_parse_url(s, n, 0, &pu) != 0 || !url_part(&pu, UF_HOST, &off, &len))
        return fail(resp, -BEX_EINVAL, "url %s: expected http://host[:port][/path]", s);
    if (len >= sizeof(u->host))
        return fail(resp, -BEX_EINVAL, "url %s: host too long", s);
    memcpy(u->host, s + off, len);
    u->host[len] = '\0';
    if (!url_part(&pu, UF_SCHEMA, &off, &len) || len != 4 || strncasecmp(s + off, "http", 4) != 0)
        return fail(resp, -BEX_EINVAL, "url %s: only http:// is supported", s);
    snprintf(u->port, sizeof(u->port), "%u", (pu.field_set & (1 << UF_PORT)) ? pu.port : 80u);
    /* The request target is the path and query as written, "/" when none. */
    size_t start = n, end = n;
    if (url_part(&pu, UF_PATH, &off, &len))
        start = off;
    else if (url_part(&pu, UF_QUERY, &off, &len))
        start = off - 1; /* keep the '?' */
    if (url_part(&pu, UF_FRAGMENT, &off, &len))
        end = off - 1; /* drop the '#' and the fragment */
    if (start > end)
        start = end;
    if (end - start + 2 > sizeof(u->path))
        return fail(resp, -BEX_EINVAL, "url %s: path too long", s);
    snprintf(u->path, sizeof(u->path), "%s%.*s", start == end || s[start] != '/' ? "/" : "",
             (int)(end - start), s + start);
    return 0;
}

/* Connects to the first address of host:port that accepts within the deadline. */
static int connect_to(struct httpc_response *resp, int *out, const struct url *u, uint64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = -BEX_EIO, e;

    *out = -1;
    if ((e = getaddrinfo(u->host, u->port, &hints, &ai)) != 0)
        return fail(resp, -BEX_EIO, "resolve %s: %s", u->host, gai_strerror(e));
    fail(resp, -BEX_EIO, "connect %s:%s: no address", u->host, u->port);
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int type = a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC;
        int fd = socket(a->ai_family, type, a->ai_protocol);
        if (fd < 0) {
            rc = fail(resp, -BEX_EIO, "socket: %s", strerror(errno));
            continue;
        }
        int err = 0;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                int w = wait_fd(fd, POLLOUT, deadline);
                socklen_t len = sizeof(err);
                if (w == 0)
                    err = ETIMEDOUT;
                else if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                    err = errno;
            }
        }
        if (err == 0) {
            *out = fd;
            rc = 0;
            break;
        }
        close(fd);
        if (err == ETIMEDOUT) {
            rc = fail(resp, -BEX_ETIMEOUT, "connect %s:%s: timed out", u->host, u->port);
            break;
        }
        rc = fail(resp, -BEX_EIO, "connect %s:%s: %s", u->host, u->port, strerror(err));
    }
    freeaddrinfo(ai);
    return rc;
}

static int send_all(struct httpc_response *resp, int fd, const char *p, size_t len,
                    uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return fail(resp, -BEX_EIO, "send: %s", strerror(errno));
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w == 0)
            return fail(resp, -BEX_ETIMEOUT, "send: timed out");
        if (w < 0)
            return fail(resp, -BEX_EIO, "send: %s", strerror(errno));
    }
    return 0;
}

/* Response parsing state behind http_parser.data. */
struct reader {
    struct httpc_response *resp;
    size_t cap, max;
    bool done, too_big, oom;
    char field[FIELD_BYTES];
    size_t field_len;
    bool last_was_value;
    bool field_ct; /* the current header is Content-Type */
};

/* Names and values may arrive in pieces: a name ends when its value begins. */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    if (r->last_was_value) {
        r->field_len = 0;
        r->last_was_value = false;
    }
    if (r->field_len + len < sizeof(r->field)) {
        memcpy(r->field + r->field_len, at, len);
        r->field_len += len;
    } else {
        r->field_len = sizeof(r->field); /* too long to be a name we want */
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    if (!r->last_was_value) {
        r->last_was_value = true;
        r->field_ct = r->field_len == 12 && strncasecmp(r->field, "content-type", 12) == 0;
    }
    if (r->field_ct) {
        char *ct = r->resp->content_type;
        size_t have = strlen(ct);
        snprintf(ct + have, sizeof(r->resp->content_type) - have, "%.*s", (int)len, at);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct reader *r = p->data;
    struct httpc_response *resp = r->resp;

    if (len > r->max - resp->body_len) {
        r->too_big = true;
        return -1;
    }
    if (resp->body_len + len + 1 > r->cap) {
        size_t cap = r->cap * 2;
        if (cap < resp->body_len + len + 1)
            cap = resp->body_len + len + 1;
        char *b = realloc(resp->body, cap);
        if (!b) {
            r->oom = true;
            return -1;
        }
        resp->body = b;
        r->cap = cap;
    }
    memcpy(resp->body + resp->body_len, at, len);
    resp->body_len += len;
    resp->body[resp->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct reader *r = p->data;
    /* An interim 1xx response is followed by the real one. */
    if (p->status_code >= 100 && p->status_code < 200) {
        r->resp->body_len = 0;
        r->resp->body[0] = '\0';
        r->resp->content_type[0] = '\0';
        return 0;
    }
    r->resp->status = (int)p->status_code;
    r->done = true;
    return 0;
}

static const http_parser_settings reader_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int read_response(struct httpc_response *resp, int fd, size_t max, uint64_t deadline)
{
    struct reader r = {.resp = resp, .cap = 1, .max = max};
    http_parser parser;
    char buf[RECV_BYTES];

    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &r;
    while (!r.done) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                return fail(resp, -BEX_EIO, "receive: %s", strerror(errno));
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 0)
                return fail(resp, -BEX_ETIMEOUT, "receive: timed out");
            if (w < 0)
                return fail(resp, -BEX_EIO, "receive: %s", strerror(errno));
            continue;
        }
        /* n == 0 tells the parser the stream ended, which completes a body
         * delimited by the end of the connection. */
        size_t used = http_parser_execute(&parser, &reader_settings, buf, (size_t)n);
        if (r.too_big)
            return fail(resp, -BEX_ELIMIT, "response body over %zu bytes", max);
        if (r.oom)
            return fail(resp, -BEX_ENOMEM, "out of memory");
        if (n == 0 && !r.done)
            return fail(resp, -BEX_EIO, "connection closed before the response was complete");
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || (used != (size_t)n && !r.done))
            return fail(resp, -BEX_EIO, "malformed response: %s",
                        http_errno_description(HTTP_PARSER_ERRNO(&parser)));
    }
    return 0;
}

int httpc_request(struct httpc_response *resp, const char *method, const char *url,
                  const char *body, size_t body_len, const struct httpc_opts *opts)
{
    struct url u;
    char head[HEAD_BYTES];
    int fd = -1, rc;

    memset(resp, 0, sizeof(*resp));
    if (!(resp->body = calloc(1, 1)))
        return fail(resp, -BEX_ENOMEM, "out of memory");
    if ((rc = url_parse(resp, &u, url)) != 0)
        goto fail;
    uint64_t start = now_ms();
    if ((rc = connect_to(resp, &fd, &u, start + opts->connect_timeout_ms)) != 0)
        goto fail;
    uint64_t deadline = now_ms() + opts->timeout_ms;
    bool v6 = strchr(u.host, ':') != NULL;
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: bexctl\r\n"
                     "Accept: application/json\r\nConnection: close\r\n",
                     method, u.path, v6 ? "[" : "", u.host, v6 ? "]" : "", u.port);
    if (body_len > 0 && n > 0 && (size_t)n < sizeof(head))
        n += snprintf(head + n, sizeof(head) - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    if (n > 0 && (size_t)n < sizeof(head))
        n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    if (n < 0 || (size_t)n >= sizeof(head)) {
        rc = fail(resp, -BEX_EINVAL, "request head too long");
        goto fail;
    }
    if ((rc = send_all(resp, fd, head, (size_t)n, deadline)) != 0)
        goto fail;
    if (body_len > 0 && (rc = send_all(resp, fd, body, body_len, deadline)) != 0)
        goto fail;
    if ((rc = read_response(resp, fd, opts->response_bytes_max, deadline)) != 0)
        goto fail;
    close(fd);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int jfail(char *err, size_t err_len, int rc, const char *fmt, ...) BEX_PRINTF(4, 5);

static int jfail(char *err, size_t err_len, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err_len > 0)
        vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return rc;
}

/* The "error" text of one of the server's HTTP error bodies, else "". */
static const char *http_error_text(json_t *j)
{
    const char *s = json_string_value(json_object_get(j, "error"));
    return s ? s : "";
}

int httpc_jsonrpc(json_t **result, json_t **error, char *err, size_t err_len, const char *url,
                  const char *method, const json_t *params, uint32_t timeout_ms)
{
    struct httpc_response resp = {0};
    struct httpc_opts opts;
    json_t *req = NULL, *reply = NULL;
    char *body = NULL;
    int rc;

    *result = NULL;
    *error = NULL;
    if (err_len > 0)
        err[0] = '\0';
    httpc_opts_default(&opts);
    opts.timeout_ms = timeout_ms;
    if (opts.connect_timeout_ms > timeout_ms)
        opts.connect_timeout_ms = timeout_ms;
    req = json_pack("{s:s,s:s,s:i}", "jsonrpc", "2.0", "method", method, "id", 1);
    if (req && params)
        json_object_set(req, "params", (json_t *)params);
    if (!req || !(body = json_dumps(req, JSON_COMPACT))) {
        rc = jfail(err, err_len, -BEX_ENOMEM, "cannot encode the request");
        goto fail;
    }
    if ((rc = httpc_request(&resp, "POST", url, body, strlen(body), &opts)) != 0) {
        rc = jfail(err, err_len, rc, "%s", resp.err);
        goto fail;
    }
    reply = json_loadb(resp.body, resp.body_len, 0, NULL);
    if (resp.status != 200) {
        rc = resp.status == 413 ? -BEX_ELIMIT : resp.status == 503 ? -BEX_EFULL : -BEX_EIO;
        rc = jfail(err, err_len, rc, "HTTP %d from %s%s%s", resp.status, url,
                   reply ? ": " : "", reply ? http_error_text(reply) : "");
        goto fail;
    }
    json_t *version = json_object_get(reply, "jsonrpc");
    json_t *id = json_object_get(reply, "id");
    json_t *res = json_object_get(reply, "result");
    json_t *e = json_object_get(reply, "error");
    if (!json_is_object(reply) || !json_is_string(version) ||
        strcmp(json_string_value(version), "2.0") != 0 || (!res && !json_is_object(e))) {
        rc = jfail(err, err_len, -BEX_EDECODE, "reply from %s is not a JSON-RPC 2.0 response", url);
        goto fail;
    }
    /* A parse or invalid-request error cannot echo our id and carries null. */
    if (!(json_is_integer(id) && json_integer_value(id) == 1) && !(e && json_is_null(id))) {
        rc = jfail(err, err_len, -BEX_EDECODE, "reply from %s answers another request", url);
        goto fail;
    }
    if (res)
        *result = json_incref(res);
    else
        *error = json_incref(e);
    rc = 0;
fail:
    json_decref(reply);
    json_decref(req);
    free(body);
    httpc_response_free(&resp);
    return rc;
}
