/*
 * rpc.h: the node's HTTP/1.1 JSON-RPC 2.0 server, on the node's libuv loop.
 *
 * Endpoints:
 *   POST /         JSON-RPC 2.0: one request object or a batch (array).
 *   GET  /health   200 {"status":"ok","reason":...,"height":H,"view":V} or
 *                  503 {"status":"unavailable","reason":...,"height":H,
 *                  "view":V} from the node's health callback (height and
 *                  view when it sets them; always ok when none is set).
 *   GET  /metrics  Prometheus text of the registry given in the config
 *                  (404 when there is none).
 * Another path is 404, another method on a known path 405 (with Allow).
 *
 * HTTP: keep-alive and pipelining; responses go out in request order even
 * when a later request finishes first. Every response carries Content-Length
 * (except 204) and Content-Type (application/json; the metrics are
 * text/plain; version=0.0.4). "Expect: 100-continue" is honoured.
 * Limits, each answered and counted, never asserted:
 *   headers over header_bytes_max       -> 431 and close
 *   body over body_bytes_max            -> 413 and close (from Content-Length
 *                                          before the body is read)
 *   malformed HTTP                      -> 400 and close
 *   more than connections_max clients   -> 503 and close
 *   request not complete within request_timeout_ms of its first byte, or
 *   a client that stops reading its responses for that long -> dropped
 *   no request for idle_timeout_ms      -> closed
 *   pipeline_max requests waiting on one connection -> the connection is not
 *                                          read until one is answered
 * After a final response the server shuts down its side and reads until the
 * client closes or RPC_LINGER_MS pass, so the client sees the response rather
 * than a reset. A client that closes its side (EOF, a half-close included)
 * is gone: its waiting calls are cancelled and its unsent responses dropped.
 *
 * JSON-RPC 2.0 exactly: "jsonrpc" must be "2.0"; "method" a string; "id" a
 * string, number or null (absent: a notification, which runs but gets no
 * response); "params" an object or array when present. A batch of 1 to
 * batch_max requests gets an array of the responses of its non-notification
 * members; a request or batch with no response at all gets HTTP 204. Errors
 * are HTTP 200 with a JSON-RPC error object: see enum rpc_code.
 *
 * Threads: everything here runs on the loop thread, including handlers and
 * cancel callbacks; rpc_reply*() and rpc_defer() must be called from it too.
 * Re-entrancy: rpc_reply*() never calls a handler or a cancel callback, and
 * no handler or cancel callback is called from inside another one, so a node
 * may answer calls while walking its own lists.
 */
#ifndef BEX_RPC_H
#define BEX_RPC_H

#include "bex.h"
#include "metrics.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * JSON-RPC error codes. The first five are the standard's; the rest are bex's
 * and are protocol: never renumber them. Where a bex error code explains the
 * failure, the error's "data" is {"reason": "<bex_errname>"}, e.g.
 * {"reason":"ENONCE"}.
 */
enum rpc_code {
    RPC_PARSE_ERROR = -32700,      /* body is not JSON */
    RPC_INVALID_REQUEST = -32600,  /* not a JSON-RPC 2.0 request, empty or
                                      oversized batch, nesting too deep */
    RPC_METHOD_NOT_FOUND = -32601, /* no such method */
    RPC_INVALID_PARAMS = -32602,   /* message names the parameter and says why;
                                      data is {"param": "<name>"} */
    RPC_INTERNAL_ERROR = -32603,   /* node failure, response too large */
    RPC_TX_REJECTED = -32001,      /* transaction refused; data {"reason":
                                      "ESIG" | "ENONCE" | "EFULL" | "EUNKNOWN"
                                      | "ECHAIN" | ...} */
    RPC_NOT_FOUND = -32004,        /* no such tx, block, key, ...; data
                                      {"reason":"ENOTFOUND"} */
    RPC_TIMEOUT = -32008,          /* a wait (tx.wait) passed its deadline */
    RPC_UNAVAILABLE = -32010,      /* node not in sync, shutting down, or too
                                      many calls waiting; retry later */
};

/* Hard maxima; a config above one (or a zero) is refused by rpc_init(). */
#define RPC_BODY_BYTES_LIMIT (64u << 20)
#define RPC_HEADER_BYTES_LIMIT (64u << 10)
#define RPC_RESPONSE_BYTES_LIMIT (256u << 20)
#define RPC_CONNECTIONS_LIMIT 4096u
#define RPC_TIMEOUT_MS_LIMIT (24u * 3600 * 1000)
#define RPC_DEPTH_LIMIT 512u
#define RPC_BATCH_LIMIT 1000u
#define RPC_PIPELINE_LIMIT 256u
#define RPC_DEFERRED_LIMIT 65536u

#define RPC_METHODS_MAX 96       /* registered methods */
#define RPC_METHOD_BYTES_MAX 64  /* a method name, with its NUL */
#define RPC_HOST_BYTES_MAX 64    /* the bind address, with its NUL */
#define RPC_READ_BYTES 16384     /* read buffer per connection */
#define RPC_WRITE_QUEUE_BYTES (1u << 20) /* unsent bytes before reading pauses */
#define RPC_LINGER_MS 2000       /* reading after a final response */
#define RPC_REFUSING_MAX 16      /* connections being refused at once */
#define RPC_HEALTH_REASON_BYTES 256
#define RPC_ERRMSG_BYTES 160

_Static_assert(RPC_HEADER_BYTES_LIMIT < RPC_BODY_BYTES_LIMIT, "limits are ordered");
_Static_assert(RPC_DEFERRED_LIMIT >= RPC_BATCH_LIMIT, "one batch can wait entirely");

struct rpc_config {
    const char *host;              /* numeric IPv4 or IPv6 address to bind */
    uint16_t port;                 /* 0: the OS picks one; see rpc_port() */
    size_t body_bytes_max;         /* request body */
    size_t header_bytes_max;       /* request line and headers */
    size_t response_bytes_max;     /* one JSON-RPC response (or whole batch) */
    uint32_t connections_max;      /* open client connections */
    uint32_t idle_timeout_ms;      /* keep-alive connection without a request */
    uint32_t request_timeout_ms;   /* first byte to last byte of a request */
    uint32_t depth_max;            /* JSON nesting of arrays and objects */
    uint32_t batch_max;            /* requests in one batch */
    uint32_t pipeline_max;         /* HTTP requests queued on one connection */
    uint32_t deferred_per_conn_max; /* calls waiting on one connection */
    uint32_t deferred_max;         /* calls waiting in total */
    struct metrics *metrics;       /* optional: served at /metrics and given
                                      the bex_rpc_* families; must outlive r */
};

/* Fills the production defaults: 127.0.0.1:8545, 1 MiB body, 16 KiB headers,
 * 16 MiB response, 64 connections, 60 s idle, 10 s request, depth 64,
 * batch 100, pipeline 16, 64 waiting calls per connection, 4096 in all. */
void rpc_config_default(struct rpc_config *cfg);

struct rpc_call; /* one JSON-RPC request in progress (opaque) */
struct rpc_conn; /* one client connection (internal) */

/*
 * A method handler. `params` is the request's "params" (object or array) or
 * NULL when absent; it is borrowed and stays valid until the call is answered
 * or cancelled. Before returning, the handler must do exactly one of: answer
 * with rpc_reply*() (possibly through a failed rpc_param_*()), or
 * rpc_defer() and answer later. Returning with the call neither answered nor
 * deferred is a programming error and asserts.
 */
typedef void (*rpc_handler_fn)(struct rpc_call *call, const json_t *params, void *user_data);

/*
 * Called when a deferred call can no longer be answered: its client went
 * away or rpc_close() runs. The token is freed when this returns: the node
 * must forget it and must not answer it. Must not call rpc_close().
 */
typedef void (*rpc_cancel_fn)(struct rpc_call *call, void *user_data);

/* What the health callback reports; GET /health answers with these fields. */
struct rpc_health {
    char reason[RPC_HEALTH_REASON_BYTES]; /* NUL-terminated, e.g. "height 42" or "syncing" */
    bool has_chain;                       /* height and view below are set */
    uint64_t height;                      /* last executed block */
    uint64_t view;                        /* current consensus view */
};

/*
 * The node's health: returns true when the node serves requests (synced,
 * store writable), false otherwise, and fills *out either way (it starts
 * zeroed, with an empty reason).
 */
typedef bool (*rpc_health_fn)(struct rpc_health *out, void *user_data);

struct rpc_method {
    char name[RPC_METHOD_BYTES_MAX];
    rpc_handler_fn fn;
    void *user_data;
};

/* The server. The caller allocates it; every field is private. */
struct rpc {
    uv_loop_t *loop;
    struct rpc_config cfg;
    char host[RPC_HOST_BYTES_MAX];
    uint16_t port;
    uv_tcp_t listener;
    uv_idle_t resume;                /* parses input held back by backpressure */
    struct rpc_method methods[RPC_METHODS_MAX];
    size_t methods_len;
    struct rpc_conn *conns;          /* every open connection */
    struct rpc_conn *resume_list;    /* connections to resume on the next idle */
    uint32_t conns_len;              /* served (counted against connections_max) */
    uint32_t refusing_len;           /* being refused with 503 */
    uint32_t deferred_len;
    uint32_t handles_open;           /* closed when 0 after rpc_close() */
    bool listener_open, resume_open, closing;
    rpc_health_fn health;
    void *health_user;
    struct metrics_family *m_conns, *m_deferred, *m_calls, *m_http, *m_timeouts;
    char err[RPC_ERRMSG_BYTES];
};

/*
 * Lifecycle. rpc_init() binds and listens on cfg->host:cfg->port on `loop`,
 * which must not be running on another thread. Errors: BEX_EINVAL (a config
 * value is zero, above its limit, or the host is not a numeric address),
 * BEX_EIO (bind or listen failed, e.g. address in use; rpc_errmsg() says
 * why), BEX_EEXIST (cfg->metrics already holds the bex_rpc_* families),
 * BEX_ENOMEM.
 *
 * A successful rpc_init() sets SIGPIPE to SIG_IGN when it is still SIG_DFL,
 * so a client resetting its connection cannot kill the process.
 *
 * Whether rpc_init() succeeded or not, call rpc_close() once; it accepts a
 * zeroed or half-built server. rpc_close() cancels every deferred call (each
 * cancel callback runs before it returns), stops accepting and closes every
 * connection. The handles finish closing when the loop runs: keep `r` in
 * place until rpc_closed() is true (run the loop, e.g. uv_run(loop,
 * UV_RUN_DEFAULT) after closing everything else).
 */
BEX_MUST_USE int rpc_init(struct rpc *r, uv_loop_t *loop, const struct rpc_config *cfg);void rpc_close(struct rpc *r);
bool rpc_closed(const struct rpc *r);

/* The bound port (the one the OS picked when cfg->port was 0). */
uint16_t rpc_port(const struct rpc *r);

/* The last error's detail ("rpc: bind 127.0.0.1:8545: address already in use"). */
const char *rpc_errmsg(const struct rpc *r);

/*
 * Registers a method. `method` is copied; names starting with "rpc." are
 * reserved by JSON-RPC. Errors: BEX_EINVAL (empty, too long, reserved),
 * BEX_EEXIST, BEX_ELIMIT (RPC_METHODS_MAX reached).
 */
BEX_MUST_USE int rpc_register(struct rpc *r, const char *method, rpc_handler_fn fn,
                              void *user_data);

/* Sets (or with NULL clears) the health callback behind GET /health. */
void rpc_set_health(struct rpc *r, rpc_health_fn fn, void *user_data);

/*
 * Answers a call with `result` and takes ownership of one reference to it.
 * NULL (e.g. a failed json_pack) answers RPC_INTERNAL_ERROR. A call is
 * answered exactly once; the token is invalid afterwards. The answer of a
 * notification is dropped. A result whose encoding exceeds
 * response_bytes_max is replaced by RPC_INTERNAL_ERROR.
 */
void rpc_reply(struct rpc_call *call, json_t *result);

/* Answers with an error. `message` is copied (NULL: a generic text for the
 * code); `data` (NULL: none) is stolen like rpc_reply()'s result. */
void rpc_reply_error(struct rpc_call *call, int code, const char *message, json_t *data);

/* Answers with an error whose data is {"reason": bex_errname(bex_rc)} and
 * whose message is `message`, or bex_strerror(bex_rc) when NULL. */
void rpc_reply_bex(struct rpc_call *call, int code, int bex_rc, const char *message);

/*
 * Defers a call from inside its handler: the handler returns and the node
 * answers later with rpc_reply*(), or learns through `cancel` (required) that
 * it must not. Errors: BEX_EFULL when deferred_per_conn_max or deferred_max
 * calls are already waiting; the call has then been answered with
 * RPC_UNAVAILABLE and the handler must just return.
 */
BEX_MUST_USE int rpc_defer(struct rpc_call *call, rpc_cancel_fn cancel, void *user_data);

/* The method name of a call, valid as long as the call. */
const char *rpc_call_method(const struct rpc_call *call);

/*
 * Parameter helpers for handlers. Parameters are by name: `params` must be
 * an object (or absent); an array is refused as positional. Each helper
 * returns 0 when the parameter is valid (written to the outputs) or optional
 * and absent (outputs untouched, so preset the default). Otherwise it answers
 * the call with RPC_INVALID_PARAMS, a message naming the parameter and the
 * reason ("invalid params: 'height' must be a non-negative integer") and data
 * {"param": name}, and returns -BEX_EINVAL: the handler must then return
 * without touching the call.
 */
enum rpc_need { RPC_OPTIONAL = 0, RPC_REQUIRED = 1 };

/* A string without NUL bytes, borrowed from params (valid as long as params). */
BEX_MUST_USE int rpc_param_string(struct rpc_call *call, const char **out, const json_t *params,
                                  const char *name, enum rpc_need need);

/* A non-negative integer, or a string of decimal digits for values above
 * 2^63 - 1 (JSON integers are signed 64-bit here). */
BEX_MUST_USE int rpc_param_uint64(struct rpc_call *call, uint64_t *out, const json_t *params,
                                  const char *name, enum rpc_need need);

BEX_MUST_USE int rpc_param_bool(struct rpc_call *call, bool *out, const json_t *params,
                                const char *name, enum rpc_need need);

/* Hex bytes (even length, optional "0x", either case) decoded into out[0..out_max);
 * their count, between out_min and out_max, goes to *out_len. */
BEX_MUST_USE int rpc_param_hex(struct rpc_call *call, uint8_t *out, size_t *out_len,
                               size_t out_min, size_t out_max, const json_t *params,
                               const char *name, enum rpc_need need);

/* A JSON array of at most items_max items, borrowed from params. */
BEX_MUST_USE int rpc_param_array(struct rpc_call *call, const json_t **out, const json_t *params,
                                 const char *name, size_t items_max, enum rpc_need need);

/* Refuses any parameter whose name is not among names[0..names_len), so a
 * misspelt optional parameter is an error rather than silently ignored. */
BEX_MUST_USE int rpc_params_only(struct rpc_call *call, const json_t *params,
                                 const char *const *names, size_t names_len);

#endif
