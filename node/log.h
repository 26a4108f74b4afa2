/*
 * log.h: leveled, one line per event, on stderr:
 *     2026-11-29T17:40:00.123Z INFO  n0 v3 h120 p2p: peer 2 up
 * The node id, view and height come from log_set_context(), which the node
 * updates as they change. Never log secrets or decrypted record values.
 */
#ifndef BEX_LOG_H
#define BEX_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "bex.h"

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
};

void log_init(enum log_level level, int node_index);
void log_set_context(uint64_t view, uint64_t height);
enum log_level log_level_get(void);
/* Parses "error", "warn", "info" or "debug"; -BEX_EINVAL otherwise. */
BEX_MUST_USE int log_level_parse(enum log_level *out, const char *text);

void log_write(enum log_level level, const char *fmt, ...) BEX_PRINTF(2, 3);

/*
 * A rate limit for one call site of a line that a peer or a broken state can
 * trigger at a high rate (an invalid proposal per message while the store
 * refuses writes, a malformed frame per read): at most LOG_LIMIT_LINES lines
 * per window of LOG_LIMIT_WINDOW_MS. The first line written after some were
 * dropped ends with "(K similar lines suppressed)". A zeroed struct is ready;
 * a call site whose lines are distinct events (one per connection) may set
 * burst to allow more lines per window.
 */
#define LOG_LIMIT_LINES 5
#define LOG_LIMIT_WINDOW_MS 10000

struct log_limit {
    uint32_t burst; /* lines per window; 0 means LOG_LIMIT_LINES */
    bool started;
    uint64_t window_start_ms;
    uint32_t lines;      /* written in the current window */
    uint64_t suppressed; /* dropped since the last written line */
};

/*
 * Counts one event at now_ms (any monotonic clock). Returns true when it may
 * be written, with *suppressed set to the number of events dropped since the
 * last written one (the count then restarts); false when it is dropped.
 */
bool log_limit_pass(struct log_limit *l, uint64_t *suppressed, uint64_t now_ms);

/* log_write() under the limit l, on the monotonic clock. */
void log_write_limited(struct log_limit *l, enum log_level level, const char *fmt, ...) BEX_PRINTF(3, 4);

#define LOG_E(...) log_write(LOG_ERROR, __VA_ARGS__)
#define LOG_W(...) log_write(LOG_WARN, __VA_ARGS__)
#define LOG_I(...) log_write(LOG_INFO, __VA_ARGS__)
#define LOG_D(...)                                                                                 \
    do {                                                                                           \
        if (log_level_get() >= LOG_DEBUG)                                                          \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

/* LOG_W with a limit of its own for each call site (not for hot paths of several threads). */
#define LOG_W_LIMITED(...)                                                                         \
    do {                                                                                           \
        static struct log_limit log_limit_;                                                        \
        log_write_limited(&log_limit_, LOG_WARN, __VA_ARGS__);                                     \
    } while (0)

#endif
