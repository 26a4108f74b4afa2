/*
 * cli_out.c: what bexctl prints: aligned tables, "name: value" fields and
 * JSON. Text that came from the node is shown with control characters
 * replaced, since a node (or a record) must not be able to drive the
 * operator's terminal.
 */
#include "cli_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *heads)
{
    BEX_ASSERT(ncols > 0 && ncols <= CLI_TABLE_COLS_MAX);
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    for (size_t i = 0; i < ncols; i++)
        t->heads[i] = heads[i];
}

void cli_table_close(struct cli_table *t)
{
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->rows = 0;
    t->cap = 0;
}

/* A copy of s fit for a terminal: control characters as '?', at most
 * CLI_CELL_BYTES_MAX bytes (cut at a character boundary, marked "..."). */
static char *clean_copy(const char *s)
{
    size_t n = strlen(s), cut = n;
    if (n > CLI_CELL_BYTES_MAX) {
        cut = CLI_CELL_BYTES_MAX - 3;
        while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
            cut--;
    }
    char *c = malloc(cut + 4);
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < cut; i++) {
        unsigned char ch = (unsigned char)s[i];
        c[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (cut < n)
        memcpy(c + cut, "...", 3), cut += 3;
    c[cut] = '\0';
    return c;
}

int cli_table_add(struct cli_table *t, const char *const *cells)
{
    if (t->rows == CLI_TABLE_ROWS_MAX)
        return -BEX_ELIMIT;
    if (t->rows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        if (cap > CLI_TABLE_ROWS_MAX)
            cap = CLI_TABLE_ROWS_MAX;
        char **cells_new = realloc(t->cells, cap * t->ncols * sizeof(char *));
        if (cells_new == NULL)
            return -BEX_ENOMEM;
        t->cells = cells_new;
        t->cap = cap;
    }
    char **row = t->cells + t->rows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = clean_copy(cells[i] != NULL ? cells[i] : "-");
        if (row[i] == NULL) {
            while (i > 0)
                free(row[--i]);
            return -BEX_ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

size_t cli_text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

static void pad(FILE *f, size_t n)
{
    while (n-- > 0)
        fputc(' ', f);
}

static void print_row(FILE *f, const struct cli_table *t, const char *const *cells, const size_t *widths)
{
    for (size_t c = 0; c < t->ncols; c++) {
        fputs(cells[c], f);
        if (c + 1 < t->ncols) {
            pad(f, widths[c] - cli_text_width(cells[c]) + 2);
        }
    }
    fputc('\n', f);
}

int cli_table_print(const struct cli_table *t, FILE *f)
{
    size_t widths[CLI_TABLE_COLS_MAX];

    if (t->rows == 0) {
        fputs("(none)\n", f);
        return fflush(f) == 0 && !ferror(f) ? 0 : -BEX_EIO;
    }
    for (size_t c = 0; c < t->ncols; c++) {
        widths[c] = cli_text_width(t->heads[c]);
        for (size_t r = 0; r < t->rows; r++) {
            size_t w = cli_text_width(t->cells[r * t->ncols + c]);
            if (w > widths[c])
                widths[c] = w;
        }
    }
    print_row(f, t, t->heads, widths);
    for (size_t r = 0; r < t->rows; r++)
        print_row(f, t, (const char *const *)t->cells + r * t->ncols, widths);
    return fflush(f) == 0 && !ferror(f) ? 0 : -BEX_EIO;
}

/* Appends the text of a scalar to a malloc'd string (or NULL). */
static char *scalar_text(const json_t *v)
{
    char buf[32];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return clean_copy(json_string_length(v) > 0 ? json_string_value(v) : "-");
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    case JSON_NULL:
        return strdup("-");
    case JSON_REAL:
        snprintf(buf, sizeof(buf), "%g", json_real_value(v));
        return strdup(buf);
    default: {
        char *dump = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        char *c = dump != NULL ? clean_copy(dump) : NULL;
        free(dump);
        return c;
    }
    }
}

static bool scalar_array(const json_t *v)
{
    size_t i;
    const json_t *e;
    if (!json_is_array(v))
        return false;
    json_array_foreach(v, i, e)
    {
        if (json_is_object(e) || json_is_array(e))
            return false;
    }
    return true;
}

/* The text of a member value: scalars, or a scalar array joined by ", ". */
static char *value_text(const json_t *v)
{
    if (!scalar_array(v))
        return scalar_text(v);
    if (json_array_size(v) == 0)
        return strdup("-");
    size_t len = 0, cap = 64, i;
    const json_t *e;
    char *s = malloc(cap);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    json_array_foreach(v, i, e)
    {
        char *t = scalar_text(e);
        if (t == NULL) {
            free(s);
            return NULL;
        }
        size_t tl = strlen(t);
        if (len + tl + 3 > cap) {
            while (len + tl + 3 > cap)
                cap *= 2;
            char *s2 = realloc(s, cap);
            if (s2 == NULL) {
                free(t);
                free(s);
                return NULL;
            }
            s = s2;
        }
        if (i > 0)
            memcpy(s + len, ", ", 2), len += 2;
        memcpy(s + len, t, tl + 1);
        len += tl;
        free(t);
    }
    return s;
}

int cli_print_fields(FILE *f, const json_t *obj)
{
    const char *key;
    const json_t *v;
    size_t width = 0;

    if (!json_is_object(obj))
        return -BEX_EINVAL;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t w = cli_text_width(key);
        if (w > width)
            width = w;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        char *text = value_text(v);
        if (text == NULL)
            return -BEX_ENOMEM;
        fprintf(f, "%s:", key);
        pad(f, width - cli_text_width(key) + 1);
        fprintf(f, "%s\n", text);
        free(text);
    }
    return fflush(f) == 0 && !ferror(f) ? 0 : -BEX_EIO;
}

int cli_print_json(FILE *f, const json_t *j)
{
    if (json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return -BEX_EIO;
    fputc('\n', f);
    return fflush(f) == 0 && !ferror(f) ? 0 : -BEX_EIO;
}

void cli_format_time(char out[32], uint64_t ms)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);

    if (ms == 0 || gmtime_r(&t, &tm) == NULL) {
        strcpy(out, "-");
        return;
    }
    strftime(out, 32, "%Y-%m-%d %H:%M:%SZ", &tm);
}

const char *cli_json_text(char *buf, size_t size, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    buf[0] = '\0';
    if (v == NULL)
        return buf;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_value(v);
    case JSON_INTEGER:
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return buf;
    }
}

const char *cli_enum_short(const char *name)
{
    static const char *const prefixes[] = {"SHARE_", "GRANT_", "ACCESS_", "VERIFY_", "RESOURCE_", "MODE_",
                                           "FIELD_"};
    for (size_t i = 0; i < BEX_ARRAY_LEN(prefixes); i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], n) == 0 && name[n] != '\0')
            return name + n;
    }
    return name;
}

int cli_list_print(const struct cli_ctx *ctx, const char *cmd, struct cli_table *t, json_t *items,
                   const char *key, bool more)
{
    int rc;
    if (ctx->json) {
        json_t *doc = json_pack("{s:O, s:b}", key, items, "more", more);
        rc = doc != NULL ? cli_print_json(ctx->out, doc) : -BEX_ENOMEM;
        json_decref(doc);
    } else {
        rc = cli_table_print(t, ctx->out);
    }
    cli_table_close(t);
    if (rc != 0) {
        cli_error(cmd, "cannot write the output: %s", bex_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    if (more)
        cli_error(cmd, "showing the first %zu; there are more", json_array_size(items));
    return CLI_EXIT_OK;
}
