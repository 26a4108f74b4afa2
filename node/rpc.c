/*
 * rpc.c: HTTP/1.1 + JSON-RPC 2.0 on libuv.
 *
 * A connection reads into a fixed buffer and feeds http-parser, which is
 * paused after every complete request so the request is served outside the
 * parser's callbacks. Each HTTP request becomes an exchange appended to the
 * connection's queue; an exchange holds one call per JSON-RPC request (many
 * for a batch) and becomes ready when every call is answered. Ready exchanges
 * are written strictly from the head of the queue, which keeps pipelined
 * responses in order while a deferred call waits.
 *
 * Lifetimes follow libuv: a connection is freed in the close callback of its
 * last handle. Closing a connection first marks it closed (no more writes, no
 * exchange freed), and its deferred calls are cancelled either in that final
 * close callback or, for rpc_close(), right away. Neither path can run inside
 * rpc_reply(), so cancel callbacks never re-enter the node.
 */
#include "rpc.h"

#include <http_parser.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATH_BYTES 128   /* longer paths are not ours: 404 */
#define FIELD_BYTES 32   /* header names and values we look at are short */
#define HEAD_BYTES 256   /* status line and headers of a response */
#define BODY_KEEP_BYTES (64u << 10) /* a body buffer larger than this is freed */
#define MESSAGE_BYTES 200 /* error messages we write */

enum conn_state {
    CONN_OPEN,     /* reading and serving requests */
    CONN_ENDING,   /* a final response is queued; input is discarded */
    CONN_DRAINING, /* our side is shut down; reading until EOF or linger */
    CONN_CLOSED,   /* uv_close() called; waiting for the close callbacks */
};

enum route { ROUTE_NONE, ROUTE_RPC, ROUTE_HEALTH, ROUTE_METRICS };

enum call_state { CALL_NEW, CALL_HANDLER, CALL_DEFERRED, CALL_DONE, CALL_CANCELLED };

struct rpc_call {
    struct rpc_exchange *ex;
    const json_t *id;   /* borrowed from ex->json; NULL: none (null in errors) */
    const char *method; /* borrowed from ex->json */
    bool notification;  /* the answer is dropped */
    enum call_state state;
    json_t *response;   /* the response object once answered */
    rpc_cancel_fn cancel;
    void *cancel_user;
};

struct rpc_exchange {
    struct rpc_exchange *next;
    struct rpc_conn *conn;
    json_t *json;       /* the parsed body, kept while calls borrow from it */
    bool batch, ready, close_after;
    uint32_t pending;   /* unanswered calls, + 1 while being dispatched */
    int status;
    const char *content_type;
    const char *allow;  /* Allow header of a 405 */
    char *body;         /* the response body (malloc), NULL for none */
    size_t body_len;
    size_t calls_len;
    struct rpc_call calls[];
};

struct rpc_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct rpc *rpc;
    struct rpc_conn *prev, *next;
    struct rpc_conn *resume_next;
    bool resume_queued;
    enum conn_state state;
    int handles;        /* open uv handles; the connection is freed at 0 */
    bool refused;       /* counted in refusing_len, not conns_len */
    bool reading;       /* uv_read_start() is in effect */
    bool blocked;       /* input held back until the queue drains */
    bool in_msg;        /* a request has begun and not completed */
    bool have_msg;      /* a complete request waits to be served */
    http_parser parser;
    /* The request being received. */
    enum route route;
    char path[PATH_BYTES];
    size_t path_len;
    bool path_long;
    char field[FIELD_BYTES];
    size_t field_len;
    char value[FIELD_BYTES];
    size_t value_len;
    bool last_was_value;
    bool expect_continue;
    bool keep_alive;
    size_t header_bytes;
    char *body;
    size_t body_len, body_cap;
    int reject_status;  /* set by a parser callback that refuses the request */
    const char *reject_msg;
    /* Responses. */
    struct rpc_exchange *ex_head, *ex_tail;
    uint32_t ex_len;
    uint32_t writes;
    size_t write_bytes;
    uint32_t deferred;
    /* Input: bytes [in_pos, in_len) are received but not parsed yet. */
    size_t in_pos, in_len;
    char in[RPC_READ_BYTES];
};

struct wreq {
    uv_write_t req;
    struct rpc_conn *conn;
    char *body;         /* owned */
    size_t bytes;
    char head[HEAD_BYTES];
};

static void conn_close(struct rpc_conn *c);
static void conn_settle(struct rpc_conn *c);
static void conn_flush(struct rpc_conn *c);
static void conn_timer(struct rpc_conn *c, uint64_t ms);
static void on_resume(uv_idle_t *idle);

/* Metrics label sets. */
static const char *const call_results[] = {"ok", "error"};
static const int http_statuses[] = {200, 204, 400, 404, 405, 413, 431, 500, 503};
static const char *const http_status_names[] = {"200", "204", "400", "404", "405",
                                                "413", "431", "500", "503"};
_Static_assert(BEX_ARRAY_LEN(http_statuses) == BEX_ARRAY_LEN(http_status_names), "labels");

static const char *status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* ---- config ---- */

void rpc_config_default(struct rpc_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8545;
    cfg->body_bytes_max = 1u << 20;
    cfg->header_bytes_max = 16u << 10;
    cfg->response_bytes_max = 16u << 20;
    cfg->connections_max = 64;
    cfg->idle_timeout_ms = 60000;
    cfg->request_timeout_ms = 10000;
    cfg->depth_max = 64;
    cfg->batch_max = 100;
    cfg->pipeline_max = 16;
    cfg->deferred_per_conn_max = 64;
    cfg->deferred_max = 4096;
}

static void set_err(struct rpc *r, const char *fmt, ...) BEX_PRINTF(2, 3);

static void set_err(struct rpc *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
}

static bool in_range(uint64_t v, uint64_t max)
{
    return v >= 1 && v <= max;
}

static int config_check(struct rpc *r, const struct rpc_config *c)
{
    const char *bad = NULL;
    if (!c->host || strlen(c->host) >= RPC_HOST_BYTES_MAX)
        bad = "host";
    else if (!in_range(c->body_bytes_max, RPC_BODY_BYTES_LIMIT))
        bad = "body_bytes_max";
    else if (!in_range(c->header_bytes_max, RPC_HEADER_BYTES_LIMIT))
        bad = "header_bytes_max";
    else if (!in_range(c->response_bytes_max, RPC_RESPONSE_BYTES_LIMIT))
        bad = "response_bytes_max";
    else if (!in_range(c->connections_max, RPC_CONNECTIONS_LIMIT))
        bad = "connections_max";
    else if (!in_range(c->idle_timeout_ms, RPC_TIMEOUT_MS_LIMIT))
        bad = "idle_timeout_ms";
    else if (!in_range(c->request_timeout_ms, RPC_TIMEOUT_MS_LIMIT))
        bad = "request_timeout_ms";
    else if (!in_range(c->depth_max, RPC_DEPTH_LIMIT))
        bad = "depth_max";
    else if (!in_range(c->batch_max, RPC_BATCH_LIMIT))
        bad = "batch_max";
    else if (!in_range(c->pipeline_max, RPC_PIPELINE_LIMIT))
        bad = "pipeline_max";
    else if (!in_range(c->deferred_per_conn_max, RPC_DEFERRED_LIMIT))
        bad = "deferred_per_conn_max";
    else if (!in_range(c->deferred_max, RPC_DEFERRED_LIMIT))
        bad = "deferred_max";
    if (!bad)
        return 0;
    set_err(r, "rpc: config: %s is missing or out of range", bad);
    return -BEX_EINVAL;
}

/* ---- JSON helpers ---- */

/* A JSON string of `s`; bytes that are not printable ASCII become '?' so a
 * message quoting user input (or cut in the middle of a character) is
 * always valid UTF-8. */
static json_t *text_json(const char *s)
{
    char buf[2 * MESSAGE_BYTES];
    size_t n = 0;
    for (; s[n] && n < sizeof(buf) - 1; n++)
        buf[n] = (s[n] >= 0x20 && s[n] < 0x7f) ? s[n] : '?';
    buf[n] = '\0';
    return json_string(buf);
}

/* Counts how deeply arrays and objects nest, outside strings, and stops as
 * soon as `max` is passed, so hostile input costs one linear scan. */
static bool depth_exceeds(const char *s, size_t n, uint32_t max)
{
    uint32_t depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max)
                return true;
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

static json_t *error_object(int code, const char *message, json_t *data)
{
    json_t *e = json_object();
    if (!e) {
        json_decref(data);
        return NULL;
    }
    json_object_set_new(e, "code", json_integer(code));
    json_object_set_new(e, "message", text_json(message));
    if (data)
        json_object_set_new(e, "data", data);
    return e;
}

static json_t *response_object(const json_t *id, const char *key, json_t *value)
{
    json_t *o = json_object();
    if (!o || !value) {
        json_decref(o);
        json_decref(value);
        return NULL;
    }
    json_object_set_new(o, "jsonrpc", json_string("2.0"));
    json_object_set_new(o, key, value);
    json_object_set(o, "id", id ? (json_t *)id : json_null());
    return o;
}

static const char *code_text(int code)
{
    switch (code) {
    case RPC_PARSE_ERROR: return "parse error";
    case RPC_INVALID_REQUEST: return "invalid request";
    case RPC_METHOD_NOT_FOUND: return "method not found";
    case RPC_INVALID_PARAMS: return "invalid params";
    case RPC_TX_REJECTED: return "transaction rejected";
    case RPC_NOT_FOUND: return "not found";
    case RPC_TIMEOUT: return "timed out";
    case RPC_UNAVAILABLE: return "unavailable";
    default: return "internal error";
    }
}

/* ---- metrics ---- */

/* Every status outside the table is counted as 500, which is in it. */
static size_t status_label(int status)
{
    for (size_t i = 0; i < BEX_ARRAY_LEN(http_statuses); i++)
        if (http_statuses[i] == status)
            return i;
    return status_label(500);
}

static int metrics_setup(struct rpc *r)
{
    struct metrics *m = r->cfg.metrics;
    const struct metrics_desc descs[] = {
        {.type = METRICS_GAUGE, .name = "bex_rpc_connections",
         .help = "Open RPC client connections."},
        {.type = METRICS_GAUGE, .name = "bex_rpc_deferred_calls",
         .help = "RPC calls waiting for the node to answer."},
        {.type = METRICS_COUNTER, .name = "bex_rpc_calls_total",
         .help = "JSON-RPC calls answered, by result.", .label = "result",
         .values = call_results, .values_len = BEX_ARRAY_LEN(call_results)},
        {.type = METRICS_COUNTER, .name = "bex_rpc_http_responses_total",
         .help = "HTTP responses sent, by status.", .label = "status",
         .values = http_status_names, .values_len = BEX_ARRAY_LEN(http_status_names)},
        {.type = METRICS_COUNTER, .name = "bex_rpc_timeouts_total",
         .help = "RPC connections dropped for a slow request or a client not reading."},
    };
    struct metrics_family **out[] = {&r->m_conns, &r->m_deferred, &r->m_calls, &r->m_http,
                                     &r->m_timeouts};
    _Static_assert(BEX_ARRAY_LEN(descs) == BEX_ARRAY_LEN(out), "one family per pointer");
    int rc;

    if (!m)
        return 0;
    for (size_t i = 0; i < BEX_ARRAY_LEN(descs); i++) {
        if ((rc = metrics_register(m, out[i], &descs[i])) != 0) {
            set_err(r, "rpc: metrics %s: %s", descs[i].name, bex_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void deferred_add(struct rpc_conn *c, int delta)
{
    c->deferred = (uint32_t)((int)c->deferred + delta);
    c->rpc->deferred_len = (uint32_t)((int)c->rpc->deferred_len + delta);
    metrics_gauge_add(c->rpc->m_deferred, 0, delta);
}

/* ---- exchanges ---- */

static struct rpc_exchange *exchange_new(struct rpc_conn *c, size_t calls, bool close_after)
{
    struct rpc_exchange *ex = calloc(1, sizeof(*ex) + calls * sizeof(ex->calls[0]));
    if (!ex)
        return NULL;
    ex->conn = c;
    ex->close_after = close_after;
    ex->calls_len = calls;
    for (size_t i = 0; i < calls; i++)
        ex->calls[i].ex = ex;
    if (c->ex_tail)
        c->ex_tail->next = ex;
    else
        c->ex_head = ex;
    c->ex_tail = ex;
    c->ex_len++;
    if (close_after && c->state == CONN_OPEN) {
        /* Nothing after this request is served: discard what follows. */
        c->state = CONN_ENDING;
        c->in_pos = c->in_len;
        c->in_msg = false;
    }
    return ex;
}

static void exchange_free(struct rpc_exchange *ex)
{
    for (size_t i = 0; i < ex->calls_len; i++)
        json_decref(ex->calls[i].response);
    json_decref(ex->json);
    free(ex->body);
    free(ex);
}

/* Makes an exchange ready with `body` (taken over, may be NULL) and flushes. */
static void exchange_ready(struct rpc_exchange *ex, int status, const char *content_type,
                           char *body, size_t body_len)
{
    ex->status = status;
    ex->content_type = content_type;
    ex->body = body;
    ex->body_len = body_len;
    ex->ready = true;
    conn_flush(ex->conn);
}

static void exchange_http_error(struct rpc_conn *c, int status, const char *message,
                                bool close_after, const char *allow)
{
    struct rpc_exchange *ex = exchange_new(c, 0, close_after);
    if (!ex) {
        conn_close(c);
        return;
    }
    json_t *o = json_pack("{s:i,s:o}", "status", status, "error", text_json(message));
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    ex->allow = allow;
    exchange_ready(ex, body ? status : 500, "application/json", body, body ? strlen(body) : 0);
}

/* Called when the last call of an exchange is answered: encodes the response. */
static void exchange_finish(struct rpc_exchange *ex)
{
    struct rpc *r = ex->conn->rpc;
    json_t *out = NULL;
    char *body = NULL;
    int status = 200;

    BEX_ASSERT(ex->pending == 0);
    BEX_ASSERT(!ex->ready);
    if (ex->conn->state == CONN_CLOSED) {
        ex->ready = true; /* nobody to send it to; freed with the connection */
        return;
    }
    if (ex->batch) {
        out = json_array();
        for (size_t i = 0; out && i < ex->calls_len; i++)
            if (ex->calls[i].response)
                json_array_append(out, ex->calls[i].response);
    } else if (ex->calls_len == 1 && ex->calls[0].response) {
        out = json_incref(ex->calls[0].response);
    }
    if (!out || (json_is_array(out) && json_array_size(out) == 0)) {
        status = 204; /* only notifications: nothing to answer */
    } else if ((body = json_dumps(out, JSON_COMPACT)) && strlen(body) > r->cfg.response_bytes_max) {
        char msg[MESSAGE_BYTES];
        snprintf(msg, sizeof(msg), "internal error: response of %zu bytes exceeds %zu",
                 strlen(body), r->cfg.response_bytes_max);
        free(body);
        json_decref(out);
        /* The id is still valid here: ex->json is released below. */
        out = response_object(ex->batch ? NULL : ex->calls[0].id, "error",
                              error_object(RPC_INTERNAL_ERROR, msg, NULL));
        body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    }
    if (status == 200 && !body)
        status = 500;
    json_decref(out);
    for (size_t i = 0; i < ex->calls_len; i++) {
        json_decref(ex->calls[i].response);
        ex->calls[i].response = NULL;
    }
    json_decref(ex->json);
    ex->json = NULL;
    exchange_ready(ex, status, status == 204 ? NULL : "application/json", body,
                   body ? strlen(body) : 0);
}

/* ---- calls ---- */

static void call_answer(struct rpc_call *call, json_t *response, bool ok)
{
    struct rpc_exchange *ex = call->ex;
    struct rpc_conn *c = ex->conn;

    BEX_ASSERT(call->state == CALL_NEW || call->state == CALL_HANDLER ||
               call->state == CALL_DEFERRED);
    BEX_ASSERT(ex->pending > 0);
    if (call->state == CALL_DEFERRED)
        deferred_add(c, -1);
    call->state = CALL_DONE;
    metrics_counter_inc(c->rpc->m_calls, ok ? 0 : 1);
    if (call->notification) {
        json_decref(response);
    } else {
        if (!response)
            response = response_object(call->id, "error",
                                       error_object(RPC_INTERNAL_ERROR, "internal error", NULL));
        call->response = response;
    }
    if (--ex->pending == 0)
        exchange_finish(ex);
}

void rpc_reply(struct rpc_call *call, json_t *result)
{
    if (!result) {
        rpc_reply_error(call, RPC_INTERNAL_ERROR, "internal error: no result", NULL);
        return;
    }
    json_t *resp = call->notification ? NULL : response_object(call->id, "result", result);
    if (call->notification)
        json_decref(result);
    call_answer(call, resp, true);
}

void rpc_reply_error(struct rpc_call *call, int code, const char *message, json_t *data)
{
    json_t *resp = NULL;
    if (call->notification)
        json_decref(data);
    else
        resp = response_object(call->id, "error",
                               error_object(code, message ? message : code_text(code), data));
    call_answer(call, resp, false);
}

void rpc_reply_bex(struct rpc_call *call, int code, int bex_rc, const char *message)
{
    rpc_reply_error(call, code, message ? message : bex_strerror(bex_rc),
                    json_pack("{s:s}", "reason", bex_errname(bex_rc)));
}

int rpc_defer(struct rpc_call *call, rpc_cancel_fn cancel, void *user_data)
{
    struct rpc_conn *c = call->ex->conn;
    struct rpc *r = c->rpc;

    BEX_ASSERT(call->state == CALL_HANDLER);
    BEX_ASSERT(cancel != NULL);
    if (c->deferred >= r->cfg.deferred_per_conn_max || r->deferred_len >= r->cfg.deferred_max) {
        rpc_reply_error(call, RPC_UNAVAILABLE, "unavailable: too many calls waiting", NULL);
        return -BEX_EFULL;
    }
    call->state = CALL_DEFERRED;
    call->cancel = cancel;
    call->cancel_user = user_data;
    deferred_add(c, 1);
    return 0;
}

const char *rpc_call_method(const struct rpc_call *call)
{
    return call->method;
}

static void call_invalid(struct rpc_call *call, const char *message)
{
    call->notification = false; /* an invalid request is always answered */
    rpc_reply_error(call, RPC_INVALID_REQUEST, message, NULL);
}

/* Validates one request object and runs its handler. */
static void call_start(struct rpc_call *call, json_t *req)
{
    struct rpc *r = call->ex->conn->rpc;
    char msg[MESSAGE_BYTES];

    call->ex->pending++;
    if (!json_is_object(req)) {
        call_invalid(call, "invalid request: not an object");
        return;
    }
    json_t *id = json_object_get(req, "id");
    json_t *version = json_object_get(req, "jsonrpc");
    json_t *method = json_object_get(req, "method");
    json_t *params = json_object_get(req, "params");
    if (id && !json_is_string(id) && !json_is_number(id) && !json_is_null(id)) {
        call_invalid(call, "invalid request: 'id' must be a string, number or null");
        return;
    }
    call->id = id;
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
        call_invalid(call, "invalid request: 'jsonrpc' must be \"2.0\"");
        return;
    }
    if (!json_is_string(method)) {
        call_invalid(call, "invalid request: 'method' must be a string");
        return;
    }
    if (params && !json_is_object(params) && !json_is_array(params)) {
        call_invalid(call, "invalid request: 'params' must be an object or an array");
        return;
    }
    call->method = json_string_value(method);
    call->notification = id == NULL;
    const struct rpc_method *m = NULL;
    for (size_t i = 0; i < r->methods_len && !m; i++)
        if (strcmp(r->methods[i].name, call->method) == 0)
            m = &r->methods[i];
    if (!m) {
        snprintf(msg, sizeof(msg), "method not found: %s", call->method);
        rpc_reply_error(call, RPC_METHOD_NOT_FOUND, msg, NULL);
        return;
    }
    call->state = CALL_HANDLER;
    m->fn(call, params, m->user_data);
    /* The handler contract: answered or deferred, never left hanging. */
    BEX_ASSERT(call->state == CALL_DONE || call->state == CALL_DEFERRED);
}

/* ---- serving a request ---- */

static void serve_rpc(struct rpc_conn *c, bool close_after)
{
    struct rpc *r = c->rpc;
    json_error_t jerr;
    json_t *root = NULL;
    char msg[MESSAGE_BYTES];
    int early = 0;
    size_t n = 1;

    if (depth_exceeds(c->body, c->body_len, r->cfg.depth_max)) {
        early = RPC_INVALID_REQUEST;
        snprintf(msg, sizeof(msg), "invalid request: JSON nested deeper than %" PRIu32,
                 r->cfg.depth_max);
    } else if (!(root = json_loadb(c->body ? c->body : "", c->body_len,
                                   JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr))) {
        early = RPC_PARSE_ERROR;
        snprintf(msg, sizeof(msg), "parse error: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
    } else if (json_is_array(root)) {
        n = json_array_size(root);
        if (n == 0 || n > r->cfg.batch_max) {
            early = RPC_INVALID_REQUEST;
            snprintf(msg, sizeof(msg), "invalid request: batch of %zu requests (1 to %" PRIu32 ")",
                     n, r->cfg.batch_max);
        }
    }
    struct rpc_exchange *ex = exchange_new(c, early ? 1 : n, close_after);
    if (!ex) {
        json_decref(root);
        conn_close(c);
        return;
    }
    ex->pending = 1; /* held until every call has been started */
    if (early) {
        json_decref(root);
        ex->pending++;
        ex->calls[0].state = CALL_HANDLER;
        rpc_reply_error(&ex->calls[0], early, msg, NULL);
    } else {
        ex->json = root;
        ex->batch = json_is_array(root);
        for (size_t i = 0; i < n; i++)
            call_start(&ex->calls[i], ex->batch ? json_array_get(root, i) : root);
    }
    if (--ex->pending == 0)
        exchange_finish(ex);
}

static void serve_health(struct rpc_conn *c, bool close_after)
{
    struct rpc *r = c->rpc;
    struct rpc_health h;
    bool ok = true;

    memset(&h, 0, sizeof(h));
    if (r->health) {
        ok = r->health(&h, r->health_user);
        h.reason[sizeof(h.reason) - 1] = '\0';
    }
    struct rpc_exchange *ex = exchange_new(c, 0, close_after);
    if (!ex) {
        conn_close(c);
        return;
    }
    json_t *o = json_pack("{s:s,s:o}", "status", ok ? "ok" : "unavailable", "reason",
                          text_json(h.reason));
    if (o && h.has_chain &&
        (json_object_set_new(o, "height", json_integer((json_int_t)h.height)) != 0 ||
         json_object_set_new(o, "view", json_integer((json_int_t)h.view)) != 0)) {
        json_decref(o);
        o = NULL;
    }
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    exchange_ready(ex, body ? (ok ? 200 : 503) : 500, "application/json", body,
                   body ? strlen(body) : 0);
}

static void serve_metrics(struct rpc_conn *c, bool close_after)
{
    char *text = NULL;
    size_t len = 0;
    struct rpc_exchange *ex = exchange_new(c, 0, close_after);
    if (!ex) {
        conn_close(c);
        return;
    }
    if (metrics_render(c->rpc->cfg.metrics, &text, &len) != 0) {
        exchange_ready(ex, 500, "text/plain; charset=utf-8", NULL, 0);
        return;
    }
    exchange_ready(ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void conn_dispatch(struct rpc_conn *c)
{
    bool close_after = !c->keep_alive;
    enum http_method method = (enum http_method)c->parser.method;

    switch (c->route) {
    case ROUTE_RPC:
        if (method == HTTP_POST)
            serve_rpc(c, close_after);
        else
            exchange_http_error(c, 405, "use POST", close_after, "POST");
        break;
    case ROUTE_HEALTH:
    case ROUTE_METRICS:
        if (method != HTTP_GET)
            exchange_http_error(c, 405, "use GET", close_after, "GET");
        else if (c->route == ROUTE_HEALTH)
            serve_health(c, close_after);
        else
            serve_metrics(c, close_after);
        break;
    case ROUTE_NONE:
        exchange_http_error(c, 404, "no such path", close_after, NULL);
        break;
    }
    c->body_len = 0;
    if (c->body_cap > BODY_KEEP_BYTES) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
}

/* ---- parser callbacks ---- */

static int reject(struct rpc_conn *c, int status, const char *message)
{
    c->reject_status = status;
    c->reject_msg = message;
    return -1;
}

static int count_header(struct rpc_conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->rpc->cfg.header_bytes_max)
        return reject(c, 431, "request line and headers too large");
    return 0;
}

static void append(char *dst, size_t *dst_len, size_t cap, const char *src, size_t len)
{
    /* A name or value too long for us is not one we look for; keep it
     * unequal to every short one by marking it full. */
    if (*dst_len + len >= cap) {
        *dst_len = cap;
        return;
    }
    memcpy(dst + *dst_len, src, len);
    *dst_len += len;
    dst[*dst_len] = '\0';
}

static bool is_token(const char *s, size_t len, const char *token)
{
    return len == strlen(token) && strncasecmp(s, token, len) == 0;
}

static void header_done(struct rpc_conn *c)
{
    if (is_token(c->field, c->field_len, "expect") &&
        is_token(c->value, c->value_len, "100-continue"))
        c->expect_continue = true;
    c->field_len = 0;
    c->value_len = 0;
}

static int on_message_begin(http_parser *p)
{
    struct rpc_conn *c = p->data;
    c->route = ROUTE_NONE;
    c->path_len = 0;
    c->path_long = false;
    c->field_len = 0;
    c->value_len = 0;
    c->last_was_value = false;
    c->expect_continue = false;
    c->header_bytes = 0;
    c->body_len = 0;
    c->reject_status = 0;
    c->reject_msg = NULL;
    c->in_msg = true;
    conn_timer(c, c->rpc->cfg.request_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct rpc_conn *c = p->data;
    if (count_header(c, len) != 0)
        return -1;
    if (c->path_len + len >= PATH_BYTES) {
        c->path_long = true;
        return 0;
    }
    memcpy(c->path + c->path_len, at, len);
    c->path_len += len;
    c->path[c->path_len] = '\0';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct rpc_conn *c = p->data;
    if (count_header(c, len) != 0)
        return -1;
    if (c->last_was_value)
        header_done(c);
    c->last_was_value = false;
    append(c->field, &c->field_len, FIELD_BYTES, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct rpc_conn *c = p->data;
    if (count_header(c, len) != 0)
        return -1;
    c->last_was_value = true;
    append(c->value, &c->value_len, FIELD_BYTES, at, len);
    return 0;
}

static enum route route_of(const struct rpc_conn *c)
{
    if (c->path_long)
        return ROUTE_NONE;
    size_t n = strcspn(c->path, "?#");
    if (n == 1 && c->path[0] == '/')
        return ROUTE_RPC;
    if (n == 7 && strncmp(c->path, "/health", n) == 0)
        return ROUTE_HEALTH;
    if (n == 8 && strncmp(c->path, "/metrics", n) == 0 && c->rpc->cfg.metrics)
        return ROUTE_METRICS;
    return ROUTE_NONE;
}

static void write_raw(struct rpc_conn *c, const char *data, size_t len);

static int on_headers_complete(http_parser *p)
{
    struct rpc_conn *c = p->data;
    struct rpc *r = c->rpc;

    if (c->last_was_value)
        header_done(c);
    c->route = route_of(c);
    /* content_length is ULLONG_MAX when the request has no Content-Length. */
    if (p->content_length != UINT64_MAX && p->content_length > r->cfg.body_bytes_max)
        return reject(c, 413, "request body too large");
    /* The interim response may only go out when it cannot overtake the
     * response to an earlier pipelined request. */
    if (c->expect_continue && !c->ex_head && c->writes == 0)
        write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct rpc_conn *c = p->data;
    size_t max = c->rpc->cfg.body_bytes_max;

    if (len > max - c->body_len)
        return reject(c, 413, "request body too large");
    /* The buffer grows with the bytes that arrive, not with what
     * Content-Length promises, so idle clients cost no body memory. */
    if (c->route == ROUTE_RPC) {
        if (c->body_len + len > c->body_cap) {
            size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
            if (cap < c->body_len + len)
                cap = c->body_len + len;
            if (cap > max)
                cap = max;
            char *b = realloc(c->body, cap);
            if (!b)
                return reject(c, 500, "out of memory");
            c->body = b;
            c->body_cap = cap;
        }
        memcpy(c->body + c->body_len, at, len);
    }
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct rpc_conn *c = p->data;
    c->keep_alive = http_should_keep_alive(p) != 0;
    c->in_msg = false;
    c->have_msg = true;
    /* Serve this request outside the parser; execute() returns here. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connection I/O ---- */

static void on_handle_closed(uv_handle_t *h);

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct rpc_conn *c = w->conn;

    c->writes--;
    c->write_bytes -= w->bytes;
    free(w->body);
    free(w);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_settle(c);
}

/* Queues head + body (taken over) for writing; on failure closes. */
static void write_parts(struct rpc_conn *c, const char *head, size_t head_len, char *body,
                        size_t body_len)
{
    struct wreq *w = calloc(1, sizeof(*w));
    if (!w) {
        free(body);
        conn_close(c);
        return;
    }
    BEX_ASSERT(head_len <= sizeof(w->head));
    memcpy(w->head, head, head_len);
    w->conn = c;
    w->body = body;
    w->bytes = head_len + body_len;
    uv_buf_t bufs[2] = {uv_buf_init(w->head, (unsigned)head_len),
                        uv_buf_init(body, (unsigned)body_len)};
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1, on_write);
    if (rc < 0) {
        free(w->body);
        free(w);
        conn_close(c);
        return;
    }
    c->writes++;
    c->write_bytes += w->bytes;
}

static void write_raw(struct rpc_conn *c, const char *data, size_t len)
{
    write_parts(c, data, len, NULL, 0);
}

static void conn_flush(struct rpc_conn *c)
{
    struct rpc_exchange *ex;
    char head[HEAD_BYTES];

    while (c->state != CONN_CLOSED && (ex = c->ex_head) && ex->ready) {
        int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n", ex->status,
                         status_text(ex->status));
        if (ex->status != 204) {
            if (ex->content_type)
                n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Type: %s\r\n",
                              ex->content_type);
            n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n",
                          ex->body_len);
        }
        if (ex->allow)
            n += snprintf(head + n, sizeof(head) - (size_t)n, "Allow: %s\r\n", ex->allow);
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: %s\r\n\r\n",
                      ex->close_after ? "close" : "keep-alive");
        BEX_ASSERT(n > 0 && (size_t)n < sizeof(head));
        c->ex_head = ex->next;
        if (!c->ex_head)
            c->ex_tail = NULL;
        c->ex_len--;
        metrics_counter_inc(c->rpc->m_http, status_label(ex->status));
        char *body = ex->body;
        ex->body = NULL;
        bool last = ex->close_after;
        size_t body_len = ex->body_len;
        exchange_free(ex);
        write_parts(c, head, (size_t)n, body, body_len);
        if (last)
            break;
    }
    conn_settle(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct rpc_conn *c = req->data;
    if (c->state != CONN_CLOSED && status < 0)
        conn_close(c);
}

static void conn_read(struct rpc_conn *c, bool on);

/* Decides, after any event, what the connection waits for next: a resume,
 * a shutdown, or which timer. */
static void conn_settle(struct rpc_conn *c)
{
    struct rpc *r = c->rpc;

    if (c->state == CONN_CLOSED || c->state == CONN_DRAINING)
        return;
    if (c->state == CONN_ENDING) {
        if (!c->ex_head && c->writes == 0) {
            c->state = CONN_DRAINING;
            c->shutdown.data = c;
            if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
                conn_close(c);
                return;
            }
            conn_read(c, true);
            conn_timer(c, RPC_LINGER_MS);
        } else if (c->writes > 0) {
            conn_timer(c, r->cfg.request_timeout_ms);
        } else {
            uv_timer_stop(&c->timer);
        }
        return;
    }
    bool must_block = c->ex_len >= r->cfg.pipeline_max || c->write_bytes > RPC_WRITE_QUEUE_BYTES;
    if (c->blocked && !must_block && !c->resume_queued) {
        c->resume_queued = true;
        c->resume_next = r->resume_list;
        r->resume_list = c;
        (void)uv_idle_start(&r->resume, on_resume);
    }
    if (c->in_msg)
        return; /* the request timer runs from the request's first byte */
    if (c->writes > 0)
        conn_timer(c, r->cfg.request_timeout_ms);
    else if (c->ex_head)
        uv_timer_stop(&c->timer); /* deferred calls: the node owns the deadline */
    else
        conn_timer(c, r->cfg.idle_timeout_ms);
}

/* Refuses the request being parsed and ends the connection after answering. */
static void conn_reject(struct rpc_conn *c, int status, const char *message)
{
    exchange_http_error(c, status, message, true, NULL);
}

/* Feeds held input to the parser and serves the requests it completes, until
 * the input runs out, the queue is full or the connection ends. */
static void conn_parse(struct rpc_conn *c)
{
    struct rpc *r = c->rpc;

    while (c->state == CONN_OPEN && c->in_pos < c->in_len) {
        if (c->ex_len >= r->cfg.pipeline_max || c->write_bytes > RPC_WRITE_QUEUE_BYTES) {
            c->blocked = true;
            conn_read(c, false);
            return;
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_pos,
                                       c->in_len - c->in_pos);
        c->in_pos += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->state != CONN_OPEN)
            break; /* closed by a failed write from a callback */
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
        } else if (e != HPE_OK) {
            c->in_msg = false;
            conn_reject(c, c->reject_status ? c->reject_status : 400,
                        c->reject_msg ? c->reject_msg : http_errno_description(e));
            break;
        }
        if (c->have_msg) {
            c->have_msg = false;
            conn_dispatch(c);
        } else if (n == 0) {
            conn_reject(c, 400, "malformed request");
            break;
        }
    }
    /* An ending connection keeps reading, to discard input and see EOF. */
    if (c->state == CONN_OPEN || c->state == CONN_ENDING) {
        c->blocked = false;
        conn_read(c, true);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rpc_conn *c = h->data;
    (void)suggested;
    /* Reading runs only when every held byte has been parsed or discarded. */
    BEX_ASSERT(c->in_pos == c->in_len);
    c->in_pos = 0;
    c->in_len = 0;
    *buf = uv_buf_init(c->in, sizeof(c->in));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc_conn *c = s->data;
    (void)buf;

    if (nread < 0) {
        /* EOF or error: the client is gone; waiting calls are cancelled. */
        conn_close(c);
        return;
    }
    if (c->state != CONN_OPEN)
        return; /* discarded: in_pos == in_len == 0 */
    c->in_len = (size_t)nread;
    conn_parse(c);
    conn_settle(c);
}

static void conn_read(struct rpc_conn *c, bool on)
{
    if (c->state == CONN_CLOSED || c->reading == on)
        return;
    if (on && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    if (!on)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = on;
}

static void on_timer(uv_timer_t *t)
{
    struct rpc_conn *c = t->data;
    if (c->in_msg || c->writes > 0)
        metrics_counter_inc(c->rpc->m_timeouts, 0);
    conn_close(c);
}

static void conn_timer(struct rpc_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_resume(uv_idle_t *idle)
{
    struct rpc *r = idle->data;
    struct rpc_conn *list = r->resume_list;

    r->resume_list = NULL;
    while (list) {
        struct rpc_conn *c = list;
        list = c->resume_next;
        c->resume_next = NULL;
        c->resume_queued = false;
        if (c->state == CONN_OPEN && c->blocked) {
            conn_parse(c);
            conn_settle(c);
        }
    }
    if (!r->resume_list)
        uv_idle_stop(&r->resume);
}

/* Cancels the deferred calls of a closed connection. Nothing is freed while
 * the connection is closed, so the walk survives what cancel callbacks do. */
static void conn_cancel(struct rpc_conn *c)
{
    BEX_ASSERT(c->state == CONN_CLOSED);
    for (struct rpc_exchange *ex = c->ex_head; ex; ex = ex->next) {
        for (size_t i = 0; i < ex->calls_len; i++) {
            struct rpc_call *call = &ex->calls[i];
            if (call->state != CALL_DEFERRED)
                continue;
            call->state = CALL_CANCELLED;
            deferred_add(c, -1);
            call->cancel(call, call->cancel_user);
        }
    }
    BEX_ASSERT(c->deferred == 0);
}

static void conn_free(struct rpc_conn *c)
{
    struct rpc *r = c->rpc;

    conn_cancel(c);
    while (c->ex_head) {
        struct rpc_exchange *ex = c->ex_head;
        c->ex_head = ex->next;
        exchange_free(ex);
    }
    if (c->resume_queued) {
        struct rpc_conn **pp = &r->resume_list;
        while (*pp != c)
            pp = &(*pp)->resume_next;
        *pp = c->resume_next;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->refused) {
        r->refusing_len--;
    } else {
        r->conns_len--;
        metrics_gauge_add(r->m_conns, 0, -1);
    }
    free(c->body);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct rpc_conn *c = h->data;
    c->rpc->handles_open--;
    if (--c->handles == 0)
        conn_free(c);
}

static void conn_close(struct rpc_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    c->state = CONN_CLOSED;
    c->in_msg = false;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ---- accepting ---- */

static void on_rpc_handle_closed(uv_handle_t *h)
{
    struct rpc *r = h->data;
    r->handles_open--;
}

static void on_overflow_closed(uv_handle_t *h)
{
    struct rpc *r = h->data;
    r->handles_open--;
    free(h);
}

/* Past every limit (or out of memory): accept and close at once, holding
 * nothing. A connection must be accepted in the callback, or libuv stops
 * watching the listener; only if even this allocation fails is it left. */
static void refuse_hard(struct rpc *r)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    if (!t || uv_tcp_init(r->loop, t) < 0) {
        free(t);
        return;
    }
    t->data = r;
    r->handles_open++;
    (void)uv_accept((uv_stream_t *)&r->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_overflow_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct rpc *r = server->data;
    bool refuse = r->conns_len >= r->cfg.connections_max;

    if (status < 0 || r->closing)
        return;
    if (refuse && r->refusing_len >= RPC_REFUSING_MAX) {
        refuse_hard(r);
        return;
    }
    struct rpc_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        refuse_hard(r);
        return;
    }
    c->rpc = r;
    c->tcp.data = c;
    c->timer.data = c;
    /* Neither init can fail on Unix: no socket is created before accept. */
    (void)uv_tcp_init(r->loop, &c->tcp);
    (void)uv_timer_init(r->loop, &c->timer);
    c->handles = 2;
    r->handles_open += 2;
    c->next = r->conns;
    if (r->conns)
        r->conns->prev = c;
    r->conns = c;
    c->refused = refuse;
    if (refuse) {
        r->refusing_len++;
    } else {
        r->conns_len++;
        metrics_gauge_add(r->m_conns, 0, 1);
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    conn_read(c, true);
    if (refuse)
        exchange_http_error(c, 503, "too many connections", true, NULL);
    else
        conn_settle(c);
}

/* ---- lifecycle ---- */

int rpc_init(struct rpc *r, uv_loop_t *loop, const struct rpc_config *cfg)
{
    struct sockaddr_storage addr;
    int rc;

    memset(r, 0, sizeof(*r));
    r->loop = loop;
    if ((rc = config_check(r, cfg)) != 0)
        goto fail;
    r->cfg = *cfg;
    snprintf(r->host, sizeof(r->host), "%s", cfg->host);
    r->cfg.host = r->host;
    if (uv_ip4_addr(r->host, cfg->port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(r->host, cfg->port, (struct sockaddr_in6 *)&addr) != 0) {
        set_err(r, "rpc: host %s is not a numeric IPv4 or IPv6 address", r->host);
        rc = -BEX_EINVAL;
        goto fail;
    }
    rc = -BEX_EIO;
    if (uv_tcp_init(loop, &r->listener) != 0) {
        set_err(r, "rpc: cannot create the listening socket");
        goto fail;
    }
    r->listener.data = r;
    r->listener_open = true;
    r->handles_open++;
    if (uv_idle_init(loop, &r->resume) != 0) {
        set_err(r, "rpc: cannot create the idle handle");
        goto fail;
    }
    r->resume.data = r;
    r->resume_open = true;
    r->handles_open++;
    int e = uv_tcp_bind(&r->listener, (const struct sockaddr *)&addr, 0);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&r->listener, 128, on_connection);
    if (e != 0) {
        set_err(r, "rpc: listen %s:%u: %s", r->host, (unsigned)cfg->port, uv_strerror(e));
        goto fail;
    }
    int len = sizeof(addr);
    if ((e = uv_tcp_getsockname(&r->listener, (struct sockaddr *)&addr, &len)) != 0) {
        set_err(r, "rpc: getsockname: %s", uv_strerror(e));
        goto fail;
    }
    r->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                               : ((struct sockaddr_in *)&addr)->sin_port);
    if ((rc = metrics_setup(r)) != 0)
        goto fail;
    /* libuv writes with write(2): a client that resets its connection would
     * otherwise kill the node with SIGPIPE. A handler the process installed
     * itself is left alone. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    return 0;
fail:
    return rc;
}

void rpc_close(struct rpc *r)
{
    if (r->closing)
        return;
    r->closing = true;
    for (struct rpc_conn *c = r->conns; c; c = c->next) {
        conn_close(c);
        conn_cancel(c);
    }
    if (r->listener_open)
        uv_close((uv_handle_t *)&r->listener, on_rpc_handle_closed);
    if (r->resume_open)
        uv_close((uv_handle_t *)&r->resume, on_rpc_handle_closed);
}

bool rpc_closed(const struct rpc *r)
{
    return r->handles_open == 0;
}

uint16_t rpc_port(const struct rpc *r)
{
    return r->port;
}

const char *rpc_errmsg(const struct rpc *r)
{
    return r->err;
}

int rpc_register(struct rpc *r, const char *method, rpc_handler_fn fn, void *user_data)
{
    size_t n = method ? strlen(method) : 0;
    if (n == 0 || n >= RPC_METHOD_BYTES_MAX || strncmp(method, "rpc.", 4) == 0 || !fn)
        return -BEX_EINVAL;
    for (size_t i = 0; i < r->methods_len; i++)
        if (strcmp(r->methods[i].name, method) == 0)
            return -BEX_EEXIST;
    if (r->methods_len == RPC_METHODS_MAX)
        return -BEX_ELIMIT;
    struct rpc_method *m = &r->methods[r->methods_len++];
    memcpy(m->name, method, n + 1);
    m->fn = fn;
    m->user_data = user_data;
    return 0;
}

void rpc_set_health(struct rpc *r, rpc_health_fn fn, void *user_data)
{
    r->health = fn;
    r->health_user = user_data;
}

/* ---- parameter helpers ---- */

static int param_fail(struct rpc_call *call, const char *name, const char *fmt, ...)
    BEX_PRINTF(3, 4);

static int param_fail(struct rpc_call *call, const char *name, const char *fmt, ...)
{
    char why[MESSAGE_BYTES], msg[MESSAGE_BYTES + 96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "invalid params: '%.64s' %s", name, why);
    rpc_reply_error(call, RPC_INVALID_PARAMS, msg, json_pack("{s:o}", "param", text_json(name)));
    return -BEX_EINVAL;
}

/* Answers a call whose params came as an array, naming the first parameter
 * the handler looked for. */
static int positional_fail(struct rpc_call *call, const char *name)
{
    char msg[MESSAGE_BYTES];
    snprintf(msg, sizeof(msg),
             "invalid params: parameters go by name in an object, not by position "
             "(expected '%.64s')", name);
    rpc_reply_error(call, RPC_INVALID_PARAMS, msg, json_pack("{s:o}", "param", text_json(name)));
    return -BEX_EINVAL;
}

/* Finds a parameter; *out is NULL when it is absent (or null) and optional. */
static int param_get(struct rpc_call *call, const json_t **out, const json_t *params,
                     const char *name, enum rpc_need need)
{
    *out = NULL;
    if (params && !json_is_object(params))
        return positional_fail(call, name);
    const json_t *v = params ? json_object_get(params, name) : NULL;
    if (!v || json_is_null(v)) {
        if (need == RPC_REQUIRED)
            return param_fail(call, name, "is required");
        return 0;
    }
    *out = v;
    return 0;
}

int rpc_param_string(struct rpc_call *call, const char **out, const json_t *params,
                     const char *name, enum rpc_need need)
{
    const json_t *v;
    if (param_get(call, &v, params, name, need) != 0)
        return -BEX_EINVAL;
    if (!v)
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return param_fail(call, name, "must be a string");
    *out = json_string_value(v);
    return 0;
}

int rpc_param_uint64(struct rpc_call *call, uint64_t *out, const json_t *params, const char *name,
                     enum rpc_need need)
{
    const json_t *v;
    if (param_get(call, &v, params, name, need) != 0)
        return -BEX_EINVAL;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return param_fail(call, name, "must be a non-negative integer");
        *out = (uint64_t)i;
        return 0;
    }
    if (!json_is_string(v))
        return param_fail(call, name, "must be a non-negative integer");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    uint64_t x = 0;
    if (n == 0 || n > 20)
        return param_fail(call, name, "must be a non-negative integer or a decimal string");
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return param_fail(call, name, "must be a non-negative integer or a decimal string");
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return param_fail(call, name, "is above 2^64 - 1");
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

int rpc_param_bool(struct rpc_call *call, bool *out, const json_t *params, const char *name,
                   enum rpc_need need)
{
    const json_t *v;
    if (param_get(call, &v, params, name, need) != 0)
        return -BEX_EINVAL;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return param_fail(call, name, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int rpc_param_hex(struct rpc_call *call, uint8_t *out, size_t *out_len, size_t out_min,
                  size_t out_max, const json_t *params, const char *name, enum rpc_need need)
{
    const json_t *v;
    BEX_ASSERT(out_min <= out_max);
    if (param_get(call, &v, params, name, need) != 0)
        return -BEX_EINVAL;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return param_fail(call, name, "must be a hex string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        n -= 2;
    }
    if (n % 2 != 0)
        return param_fail(call, name, "must have an even number of hex digits");
    if (n / 2 < out_min || n / 2 > out_max) {
        if (out_min == out_max)
            return param_fail(call, name, "must be %zu bytes of hex (got %zu)", out_min, n / 2);
        return param_fail(call, name, "must be %zu to %zu bytes of hex (got %zu)", out_min,
                          out_max, n / 2);
    }
    for (size_t i = 0; i < n; i++)
        if (hex_digit(s[i]) < 0)
            return param_fail(call, name, "must contain only hex digits");
    for (size_t i = 0; i < n / 2; i++)
        out[i] = (uint8_t)(hex_digit(s[2 * i]) << 4 | hex_digit(s[2 * i + 1]));
    *out_len = n / 2;
    return 0;
}

int rpc_param_array(struct rpc_call *call, const json_t **out, const json_t *params,
                    const char *name, size_t items_max, enum rpc_need need)
{
    const json_t *v;
    if (param_get(call, &v, params, name, need) != 0)
        return -BEX_EINVAL;
    if (!v)
        return 0;
    if (!json_is_array(v))
        return param_fail(call, name, "must be an array");
    if (json_array_size(v) > items_max)
        return param_fail(call, name, "must have at most %zu items (got %zu)", items_max,
                          json_array_size(v));
    *out = v;
    return 0;
}

int rpc_params_only(struct rpc_call *call, const json_t *params, const char *const *names,
                    size_t names_len)
{
    const char *key;
    json_t *v;

    if (!params)
        return 0;
    if (!json_is_object(params))
        return positional_fail(call, names_len ? names[0] : "");
    json_object_foreach((json_t *)params, key, v) {
        bool known = false;
        for (size_t i = 0; i < names_len && !known; i++)
            known = strcmp(key, names[i]) == 0;
        if (!known)
            return param_fail(call, key, "is not a parameter of %s", call->method);
    }
    return 0;
}
