/*
 * httpc.h: a small blocking HTTP/1.1 client for bexctl and the tests: one
 * request per connection (Connection: close), plain http:// only, with a
 * connect timeout, an overall deadline and a cap on the response body.
 * Functions here block the calling thread; never call them on the node's
 * loop thread.
 */
#ifndef BEX_HTTPC_H
#define BEX_HTTPC_H

#include "bex.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPC_URL_BYTES_MAX 2048
#define HTTPC_ERR_BYTES 192
#define HTTPC_CONTENT_TYPE_BYTES 128

struct httpc_opts {
    uint32_t connect_timeout_ms; /* to establish the TCP connection */
    uint32_t timeout_ms;         /* from connected to the whole response read */
    size_t response_bytes_max;   /* response body; more is BEX_ELIMIT */
};

/* Fills the defaults: 5 s connect, 30 s response, 16 MiB body. */
void httpc_opts_default(struct httpc_opts *opts);

struct httpc_response {
    int status;                /* HTTP status, 0 when none was received */
    char *body;                /* NUL-terminated (malloc), "" when empty */
    size_t body_len;
    char content_type[HTTPC_CONTENT_TYPE_BYTES]; /* "" when absent */
    char err[HTTPC_ERR_BYTES]; /* why a request failed */
};

/* Releases the body; accepts a zeroed or failed response. */
void httpc_response_free(struct httpc_response *resp);

/*
 * Sends `method` (e.g. "GET", "POST") to `url` ("http://host[:port][/path]",
 * host a name or a numeric address, [v6] in brackets) with `body` when
 * body_len > 0 (as application/json), and reads the response of any status
 * into *resp. Returns 0 when a complete response arrived. Errors, with
 * resp->err saying what happened: BEX_EINVAL (bad URL or not http://),
 * BEX_EIO (name lookup, connect, send or receive failed, malformed
 * response), BEX_ETIMEOUT (a deadline passed), BEX_ELIMIT (body over
 * opts->response_bytes_max), BEX_ENOMEM. Call httpc_response_free() either way.
 */
BEX_MUST_USE int httpc_request(struct httpc_response *resp, const char *method, const char *url,
                               const char *body, size_t body_len, const struct httpc_opts *opts);

/*
 * Calls a JSON-RPC 2.0 method: `params` (borrowed; NULL to omit) are sent by
 * name, and the whole exchange is bounded by timeout_ms. Returns 0 when the
 * server answered: then exactly one of *result and *error (the JSON-RPC error
 * object, with "code" and "message") is set and owned by the caller
 * (json_decref). Errors, with err (err_len bytes) saying what happened: those
 * of httpc_request(), BEX_ELIMIT also for HTTP 413, BEX_EFULL for HTTP 503,
 * BEX_EIO for another non-200 status, BEX_EDECODE when the reply is not a
 * JSON-RPC 2.0 response to this request.
 */
BEX_MUST_USE int httpc_jsonrpc(json_t **result, json_t **error, char *err, size_t err_len,
                               const char *url, const char *method, const json_t *params,
                               uint32_t timeout_ms);

#endif
