/*
 * log.h: leveled, one line per event, on stderr:
 *     2026-11-29T17:40:00.123Z INFO  n0 v3 h120 p2p: peer 2 up
 * The node id, view and height come from log_set_context(), which the node
 * updates as they change. Never log secrets or decrypted record values.
 */
#ifndef BEX_LOG_H
#define BEX_LOG_H

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

#define LOG_E(...) log_write(LOG_ERROR, __VA_ARGS__)
#define LOG_W(...) log_write(LOG_WARN, __VA_ARGS__)
#define LOG_I(...) log_write(LOG_INFO, __VA_ARGS__)
#define LOG_D(...)                                                                                 \
    do {                                                                                           \
        if (log_level_get() >= LOG_DEBUG)                                                          \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
