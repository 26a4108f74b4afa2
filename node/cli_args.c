/*
 * cli_args.c: the command line of bexctl: global options, each command's
 * options, and the numbers, durations, times and lists they carry.
 */
#include "cli_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char cli_globals_usage[] =
    "global options (before COMMAND):\n"
    "  --node URL             the node's RPC (default $BEX_NODE or " CLI_NODE_DEFAULT ")\n"
    "  --key FILE             a signing keystore; repeat for several officers (M of N)\n"
    "  --enc-key FILE         the agency's encryption keystore (records, access, verify)\n"
    "  --agency ID            the agency acting (default $BEX_AGENCY, else found by --key)\n"
    "  --passphrase-file FILE passphrase of the keystores (default $BEX_PASSPHRASE or asked)\n"
    "  --json                 print one JSON document\n"
    "  --no-wait              return once the node accepts a transaction\n"
    "  --timeout S            seconds to wait for a commit or an owner's answer (default 30)\n"
    "All but --key and --agency may also follow COMMAND.\n";

/*
 * Matches "--name VALUE" or "--name=VALUE" at argv[*i]. Returns 1 and sets
 * *value (advancing *i past a separate value), 0 when argv[*i] is another
 * argument, or -1 when the value is missing.
 */
static int match_value(const char **value, int argc, char **argv, int *i, const char *name)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static int globals_error(const char *fmt, ...) BEX_PRINTF(1, 2);

static int globals_error(const char *fmt, ...)
{
    va_list ap;
    fputs("bexctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see 'bexctl --help')\n", stderr);
    return CLI_EXIT_USAGE;
}

int cli_globals_parse(struct cli_ctx *ctx, int *cmd_index, int argc, char **argv)
{
    static const char *const valued[] = {"--node", "--key", "--enc-key", "--agency", "--passphrase-file",
                                         "--timeout"};
    const char *env;
    int i;

    memset(ctx, 0, sizeof(*ctx));
    env = getenv(CLI_NODE_ENV);
    ctx->node = env != NULL && env[0] != '\0' ? env : CLI_NODE_DEFAULT;
    env = getenv(CLI_AGENCY_ENV);
    ctx->agency = env != NULL && env[0] != '\0' ? env : NULL;
    ctx->timeout_ms = CLI_TIMEOUT_MS_DEFAULT;
    ctx->out = stdout;

    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0'; i++) {
        const char *v = NULL;
        size_t k;
        int m = 0;
        if (strcmp(argv[i], "--json") == 0) {
            ctx->json = true;
            continue;
        }
        if (strcmp(argv[i], "--no-wait") == 0) {
            ctx->no_wait = true;
            continue;
        }
        if (cli_is_help(argv[i]))
            break;
        for (k = 0; k < BEX_ARRAY_LEN(valued); k++)
            if ((m = match_value(&v, argc, argv, &i, valued[k])) != 0)
                break;
        if (m == 0)
            return globals_error("unknown option '%s'", argv[i]);
        if (m < 0)
            return globals_error("%s needs a value", valued[k]);
        if (v[0] == '\0')
            return globals_error("%s needs a non-empty value", valued[k]);
        switch (k) {
        case 0:
            ctx->node = v;
            break;
        case 1:
            if (ctx->key_count == CLI_KEYS_MAX)
                return globals_error("at most %d --key files", CLI_KEYS_MAX);
            ctx->keys[ctx->key_count++] = v;
            break;
        case 2:
            ctx->enc_key = v;
            break;
        case 3:
            ctx->agency = v;
            break;
        case 4:
            ctx->passphrase_file = v;
            break;
        default: {
            uint64_t s;
            if (cli_parse_u64(&s, v, 1, CLI_TIMEOUT_S_MAX) != 0)
                return globals_error("--timeout takes whole seconds from 1 to 3600, not '%s'", v);
            ctx->timeout_ms = (uint32_t)(s * 1000);
            break;
        }
        }
    }
    *cmd_index = i;
    return CLI_EXIT_OK;
}

/*
 * A global option after the command: --node, --enc-key, --passphrase-file
 * and --timeout mean nothing else to any command, so they are taken here
 * (--key and --agency are not: record publish and audit give them a
 * meaning of their own). Returns 1 when argv[*i] was one, 0 when it is not,
 * -1 after a usage error.
 */
static int trailing_global(struct cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv, int *i)
{
    const char **slots[] = {&ctx->node, &ctx->enc_key, &ctx->passphrase_file};
    static const char *const names[] = {"--node", "--enc-key", "--passphrase-file"};
    const char *v = NULL;
    uint64_t sec;
    int m;

    for (size_t k = 0; k < BEX_ARRAY_LEN(names); k++) {
        if ((m = match_value(&v, argc, argv, i, names[k])) == 0)
            continue;
        if (m < 0 || v[0] == '\0') {
            cli_usage_error(cmd, "%s needs a non-empty value", names[k]);
            return -1;
        }
        *slots[k] = v;
        return 1;
    }
    if ((m = match_value(&v, argc, argv, i, "--timeout")) == 0)
        return 0;
    if (m < 0 || cli_parse_u64(&sec, v, 1, CLI_TIMEOUT_S_MAX) != 0) {
        cli_usage_error(cmd, "--timeout takes whole seconds from 1 to %u", CLI_TIMEOUT_S_MAX);
        return -1;
    }
    ctx->timeout_ms = (uint32_t)(sec * 1000);
    return 1;
}

int cli_args_parse(struct cli_args *a, struct cli_ctx *ctx, const struct cli_command *cmd,
                   const struct cli_opt *opts, size_t nopts, int argc, char **argv, int first)
{
    bool options_done = false;

    BEX_ASSERT(nopts <= CLI_OPTS_MAX);
    memset(a, 0, sizeof(*a));
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (a->npos == CLI_POS_MAX)
                return cli_usage_error(cmd, "too many arguments");
            a->pos[a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (cli_is_help(arg)) {
            fputs(cmd->usage, ctx->out);
            a->help = true;
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            ctx->json = true;
            continue;
        }
        if (strcmp(arg, "--no-wait") == 0) {
            ctx->no_wait = true;
            continue;
        }
        int g = trailing_global(ctx, cmd, argc, argv, &i);
        if (g < 0)
            return CLI_EXIT_USAGE;
        if (g > 0)
            continue;
        size_t k;
        int m = 0;
        const char *v = "";
        for (k = 0; k < nopts; k++) {
            if (opts[k].flags & CLI_OPT_VALUE)
                m = match_value(&v, argc, argv, &i, opts[k].name);
            else
                m = strcmp(arg, opts[k].name) == 0;
            if (m != 0)
                break;
        }
        if (m == 0)
            return cli_usage_error(cmd, "unknown option '%s'", arg);
        if (m < 0)
            return cli_usage_error(cmd, "%s needs a value", opts[k].name);
        if (opts[k].flags & CLI_OPT_MULTI) {
            if (a->nmulti == CLI_MULTI_MAX)
                return cli_usage_error(cmd, "%s is given more than %d times", opts[k].name, CLI_MULTI_MAX);
            a->multi[a->nmulti++] = v;
        }
        a->val[k] = v;
    }
    return CLI_EXIT_OK;
}

int cli_parse_u64(uint64_t *out, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    unsigned long long v;

    /* strtoull accepts a sign and leading blanks; a number here has neither. */
    if (s[0] < '0' || s[0] > '9')
        return -BEX_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -BEX_EINVAL;
    *out = v;
    return 0;
}

int cli_parse_duration(uint64_t *ms, const char *s, uint64_t unit_ms)
{
    static const uint64_t ten_years_ms = 3660ull * CLI_DAY_MS;
    char num[24];
    size_t n = strlen(s);
    uint64_t unit = unit_ms, v;

    if (n == 0 || n >= sizeof(num))
        return -BEX_EINVAL;
    memcpy(num, s, n + 1);
    switch (num[n - 1]) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = CLI_DAY_MS;
        break;
    default:
        n++;
        break;
    }
    num[n - 1] = '\0';
    /* A bare number needs a default unit (ages, for one, have none). */
    if (unit == 0 || cli_parse_u64(&v, num, 1, ten_years_ms) != 0 || v > ten_years_ms / unit)
        return -BEX_EINVAL;
    *ms = v * unit;
    return 0;
}

/* Parses exactly `digits` decimal digits at s into *v. */
static bool digits_at(int *v, const char *s, int digits)
{
    *v = 0;
    for (int i = 0; i < digits; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

int cli_parse_time(uint64_t *ms, const char *s, uint64_t now_ms)
{
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, se = 0;
    size_t n = strlen(s);

    if (n == 10 || (n == 20 && s[10] == 'T' && s[19] == 'Z')) {
        if (!digits_at(&y, s, 4) || s[4] != '-' || !digits_at(&mo, s + 5, 2) || s[7] != '-' ||
            !digits_at(&d, s + 8, 2))
            return -BEX_EINVAL;
        if (n == 20 && (!digits_at(&h, s + 11, 2) || s[13] != ':' || !digits_at(&mi, s + 14, 2) || s[16] != ':' ||
                        !digits_at(&se, s + 17, 2)))
            return -BEX_EINVAL;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
            return -BEX_EINVAL;
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = se;
        time_t t = timegm(&tm);
        /* timegm normalises 31 February into March; a date must read back. */
        if (t < 0 || tm.tm_mday != d || tm.tm_mon != mo - 1)
            return -BEX_EINVAL;
        *ms = (uint64_t)t * 1000;
        return 0;
    }
    uint64_t age;
    if (cli_parse_duration(&age, s, 0) != 0 || age > now_ms)
        return -BEX_EINVAL;
    *ms = now_ms - age;
    return 0;
}

int cli_split(const char **items, size_t max, size_t *n, char *buf, size_t buf_size, const char *s)
{
    size_t len = strlen(s);
    char *p, *comma;

    *n = 0;
    if (len >= buf_size)
        return -BEX_ELIMIT;
    memcpy(buf, s, len + 1);
    for (p = buf;; p = comma + 1) {
        comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (p[0] == '\0')
            return -BEX_EINVAL;
        if (*n == max)
            return -BEX_ELIMIT;
        items[(*n)++] = p;
        if (comma == NULL)
            return 0;
    }
}

int cli_read_file(char **out, size_t *len, const char *path, size_t max, char *err, size_t err_len)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    size_t cap = 4096, n = 0;
    char *buf = NULL;
    int rc = 0;

    *out = NULL;
    *len = 0;
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -BEX_EIO;
    }
    for (;;) {
        if (n + 1 >= cap || buf == NULL) {
            if (buf != NULL)
                cap *= 2;
            char *b = realloc(buf, cap);
            if (b == NULL) {
                snprintf(err, err_len, "%s: out of memory", path);
                rc = -BEX_ENOMEM;
                break;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > max) {
            snprintf(err, err_len, "%s: larger than %zu bytes", path, max);
            rc = -BEX_ELIMIT;
            break;
        }
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, err_len, "%s: read error", path);
                rc = -BEX_EIO;
            }
            break;
        }
    }
    if (!is_stdin)
        fclose(f);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t cli_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
