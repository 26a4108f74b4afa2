#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The node logs from its loop thread; the context is plain state of that thread. */
static enum log_level current = LOG_INFO;
static int node = -1;
static uint64_t ctx_view, ctx_height;

static const char *names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

void log_init(enum log_level level, int node_index)
{
    current = level;
    node = node_index;
}

void log_set_context(uint64_t view, uint64_t height)
{
    ctx_view = view;
    ctx_height = height;
}

enum log_level log_level_get(void)
{
    return current;
}

int log_level_parse(enum log_level *out, const char *text)
{
    static const char *words[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(text, words[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -BEX_EINVAL;
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap) BEX_PRINTF(2, 0);
static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    char line[1024], stamp[32];
    struct timespec ts;
    struct tm tm;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03ldZ %s n%d v%" PRIu64 " h%" PRIu64 " ", stamp, ts.tv_nsec / 1000000,
                 names[level], node, ctx_view, ctx_height);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    fprintf(stderr, "%s\n", line);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level > current)
        return;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

bool log_limit_pass(struct log_limit *l, uint64_t *suppressed, uint64_t now_ms)
{
    if (!l->started || now_ms - l->window_start_ms >= LOG_LIMIT_WINDOW_MS) {
        l->started = true;
        l->window_start_ms = now_ms;
        l->lines = 0;
    }
    if (l->lines >= (l->burst ? l->burst : LOG_LIMIT_LINES)) {
        l->suppressed++;
        return false;
    }
    l->lines++;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return true;
}

void log_write_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
{
    char msg[900];
    struct timespec ts;
    uint64_t dropped;
    va_list ap;

    if (level > current)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (!log_limit_pass(l, &dropped, (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u))
        return;
    va_start(ap, fmt);
    if (dropped == 0) {
        log_vwrite(level, fmt, ap);
    } else {
        vsnprintf(msg, sizeof msg, fmt, ap);
        log_write(level, "%s (%" PRIu64 " similar lines suppressed)", msg, dropped);
    }
    va_end(ap);
}
