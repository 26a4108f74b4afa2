/*
 * cli.c: what every bexctl command shares.
 */
#include "cli.h"

#include <stdarg.h>
#include <string.h>

void cli_error(const char *name, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "bexctl %s: ", name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "bexctl %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'bexctl help %s')\n", cmd->name);
    return CLI_EXIT_USAGE;
}

bool cli_is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}
