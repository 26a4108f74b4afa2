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

void log_write(enum log_level level, const char *fmt, ...)
{
    char line[1024], stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (level > current)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03ldZ %s n%d v%" PRIu64 " h%" PRIu64 " ", stamp, ts.tv_nsec / 1000000,
                 names[level], node, ctx_view, ctx_height);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
