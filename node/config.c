/*
 * config.c: strict loading, checking and writing of genesis.json and
 * node.json.
 *
 * Loading has two steps. Parsing turns JSON into the struct and refuses only
 * what cannot be represented: wrong types, unknown or missing fields, bad
 * hex, strings too long for their buffer. Checking then applies every rule
 * to the struct, so a genesis built in memory (by a testnet generator) and
 * one read from disk pass the same gate, and the messages name the same
 * field paths either way.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* The last millisecond of year 9999: later genesis times are typos. */
#define GENESIS_TIME_MS_MAX 253402300799999ull
#define FIELD_MAX 160

BEX_PRINTF(3, 4) static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* Where messages go and which file they name. */
struct loader {
    const char *file;
    char *err;
    size_t err_size;
};

/* Reports "file: field: message" and returns -code. */
BEX_PRINTF(4, 5) static int fail(const struct loader *l, int code, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (field != NULL && field[0] != '\0')
        set_err(l->err, l->err_size, "%s: %s: %s", l->file, field, msg);
    else
        set_err(l->err, l->err_size, "%s: %s", l->file, msg);
    return -code;
}

/* Formats a field path; one that does not fit is cut short, which only
 * shortens a message. */
BEX_PRINTF(2, 3) static void path_printf(char out[FIELD_MAX], const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, FIELD_MAX, fmt, ap);
    va_end(ap);
}

/* Joins a field path: "agencies[2]" + "threshold" -> "agencies[2].threshold". */
static void field_path(char out[FIELD_MAX], const char *prefix, const char *name)
{
    if (prefix[0] == '\0')
        path_printf(out, "%s", name);
    else
        path_printf(out, "%s.%s", prefix, name);
}

/* ---- numeric fields, described once for parsing, defaults and checks ---- */

struct num_field {
    const char *name;
    size_t offset;
    size_t size; /* 4 or 8 */
    uint64_t min;
    uint64_t max;
    uint64_t def;
};

#define NUM32(type, field, lo, hi, d) {#field, offsetof(type, field), 4, (lo), (hi), (d)}
#define NUM64(type, field, lo, hi, d) {#field, offsetof(type, field), 8, (lo), (hi), (d)}

static const struct num_field consensus_fields[] = {
    NUM32(struct genesis_consensus, checkpoint_interval, 1, 128, 32),
    NUM32(struct genesis_consensus, window, 1, 128, 128),
    NUM32(struct genesis_consensus, view_timeout_ms, 100, 600000, 2000),
    NUM32(struct genesis_consensus, block_txs_max, 1, 100000, 2000),
    NUM32(struct genesis_consensus, block_bytes_max, 4096, 64u << 20, 4u << 20),
    NUM32(struct genesis_consensus, batch_delay_ms, 0, 10000, 20),
};

static const struct num_field limits_fields[] = {
    NUM32(struct node_limits, mempool_txs, 1, 10000000, 20000),
    NUM64(struct node_limits, mempool_bytes, 64u << 10, 64ull << 30, 64u << 20),
    NUM32(struct node_limits, frame_bytes_max, 64u << 10, 256u << 20, 16u << 20),
    NUM64(struct node_limits, peer_queue_bytes_max, 64u << 10, 16ull << 30, 64u << 20),
    NUM32(struct node_limits, rpc_body_bytes_max, 4u << 10, 256u << 20, 4u << 20),
    NUM32(struct node_limits, rpc_conns_max, 1, 65536, 256),
    NUM32(struct node_limits, tx_bytes_max, 256, 16u << 20, 64u << 10),
    NUM32(struct node_limits, clock_skew_max_ms, 1000, 3600000, 10000),
};

#define MAP_SIZE_MB_MIN 16
#define MAP_SIZE_MB_MAX (4u << 20)
#define MAP_SIZE_MB_DEFAULT 1024

static uint64_t num_get(const void *base, const struct num_field *f)
{
    const uint8_t *p = (const uint8_t *)base + f->offset;
    if (f->size == 4) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static void num_set(void *base, const struct num_field *f, uint64_t v)
{
    uint8_t *p = (uint8_t *)base + f->offset;
    BEX_ASSERT(f->size == 4 || f->size == 8);
    if (f->size == 4) {
        BEX_ASSERT(v <= UINT32_MAX);
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, sizeof(w));
    } else {
        memcpy(p, &v, sizeof(v));
    }
}

static void num_defaults(void *base, const struct num_field *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        num_set(base, &fields[i], fields[i].def);
}

static int num_check(const struct loader *l, const void *base, const char *prefix, const struct num_field *fields,
                     size_t n)
{
    char f[FIELD_MAX];

    for (size_t i = 0; i < n; i++) {
        uint64_t v = num_get(base, &fields[i]);
        if (v < fields[i].min || v > fields[i].max) {
            field_path(f, prefix, fields[i].name);
            return fail(l, BEX_EINVAL, f, "%llu is outside [%llu, %llu]", (unsigned long long)v,
                        (unsigned long long)fields[i].min, (unsigned long long)fields[i].max);
        }
    }
    return 0;
}

/* ---- JSON reading ---- */

/* Refuses members of obj that are not in names (and, when given, in extra). */
static int check_fields(const struct loader *l, json_t *obj, const char *prefix, const char *const *names,
                        size_t n, const struct num_field *extra, size_t extra_n)
{
    const char *key;
    json_t *value;
    char f[FIELD_MAX];

    json_object_foreach(obj, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(key, names[i]) == 0;
        for (size_t i = 0; i < extra_n && !known; i++)
            known = strcmp(key, extra[i].name) == 0;
        if (!known) {
            field_path(f, prefix, key);
            return fail(l, BEX_EDECODE, f, "unknown field");
        }
    }
    return 0;
}

/* Sets *out to the member, or NULL when it is absent and optional. */
static int member(const struct loader *l, json_t **out, json_t *obj, const char *prefix, const char *name,
                  bool required)
{
    char f[FIELD_MAX];

    *out = json_object_get(obj, name);
    if (*out == NULL && required) {
        field_path(f, prefix, name);
        return fail(l, BEX_EDECODE, f, "missing");
    }
    return 0;
}

/* Copies a JSON string value into out; f names it in messages. */
static int string_value(const struct loader *l, char *out, size_t out_size, json_t *v, const char *f)
{
    if (!json_is_string(v))
        return fail(l, BEX_EDECODE, f, "not a string");
    const char *s = json_string_value(v);
    size_t len = strlen(s);
    if (len >= out_size)
        return fail(l, BEX_EINVAL, f, "longer than %zu bytes", out_size - 1);
    memcpy(out, s, len + 1);
    return 0;
}

static int read_string(const struct loader *l, char *out, size_t out_size, json_t *obj, const char *prefix,
                       const char *name, bool required)
{
    json_t *v;
    char f[FIELD_MAX];
    int rc;

    if ((rc = member(l, &v, obj, prefix, name, required)) != 0 || v == NULL)
        return rc;
    field_path(f, prefix, name);
    return string_value(l, out, out_size, v, f);
}

static int read_u64(const struct loader *l, uint64_t *out, json_t *obj, const char *prefix, const char *name,
                    bool required, uint64_t max)
{
    json_t *v;
    char f[FIELD_MAX];
    int rc;

    if ((rc = member(l, &v, obj, prefix, name, required)) != 0 || v == NULL)
        return rc;
    field_path(f, prefix, name);
    if (!json_is_integer(v))
        return fail(l, BEX_EDECODE, f, "not an integer");
    json_int_t i = json_integer_value(v);
    if (i < 0)
        return fail(l, BEX_EINVAL, f, "%lld is negative", (long long)i);
    if ((uint64_t)i > max)
        return fail(l, BEX_EINVAL, f, "%lld exceeds the maximum of %llu", (long long)i, (unsigned long long)max);
    *out = (uint64_t)i;
    return 0;
}

static int read_bool(const struct loader *l, bool *out, json_t *obj, const char *prefix, const char *name)
{
    json_t *v;
    char f[FIELD_MAX];
    int rc;

    if ((rc = member(l, &v, obj, prefix, name, false)) != 0 || v == NULL)
        return rc;
    field_path(f, prefix, name);
    if (!json_is_boolean(v))
        return fail(l, BEX_EDECODE, f, "not true or false");
    *out = json_is_true(v);
    return 0;
}

/* Reads exactly len bytes of hex. */
static int hex_value(const struct loader *l, uint8_t *out, size_t len, json_t *v, const char *f)
{
    size_t n;

    if (!json_is_string(v))
        return fail(l, BEX_EDECODE, f, "not a string");
    const char *hex = json_string_value(v);
    if (strlen(hex) != 2 * len || crypto_hex_decode(out, len, &n, hex) != 0)
        return fail(l, BEX_EINVAL, f, "expected %zu hex digits (%zu bytes)", 2 * len, len);
    return 0;
}

static int read_hex(const struct loader *l, uint8_t *out, size_t len, json_t *obj, const char *prefix,
                    const char *name)
{
    json_t *v;
    char f[FIELD_MAX];
    int rc;

    if ((rc = member(l, &v, obj, prefix, name, true)) != 0)
        return rc;
    field_path(f, prefix, name);
    return hex_value(l, out, len, v, f);
}

static int read_address(const struct loader *l, struct config_address *a, json_t *obj, const char *prefix,
                        const char *name, bool ip_only)
{
    char text[CONFIG_ADDRESS_MAX + 1];
    char why[128];
    char f[FIELD_MAX];
    int rc;

    if ((rc = read_string(l, text, sizeof(text), obj, prefix, name, true)) != 0)
        return rc;
    if (config_parse_address(a, text, ip_only, why, sizeof(why)) != 0) {
        field_path(f, prefix, name);
        return fail(l, BEX_EINVAL, f, "%s", why);
    }
    return 0;
}

/* Returns the array member with at most max entries, or fails. */
static int read_array(const struct loader *l, json_t **out, json_t *obj, const char *prefix, const char *name,
                      size_t max)
{
    char f[FIELD_MAX];
    int rc;

    if ((rc = member(l, out, obj, prefix, name, true)) != 0)
        return rc;
    field_path(f, prefix, name);
    if (!json_is_array(*out))
        return fail(l, BEX_EDECODE, f, "not an array");
    if (json_array_size(*out) > max)
        return fail(l, BEX_EINVAL, f, "%zu entries exceed the maximum of %zu", json_array_size(*out), max);
    return 0;
}

static int read_numbers(const struct loader *l, void *base, json_t *obj, const char *prefix,
                        const struct num_field *fields, size_t n)
{
    int rc;

    for (size_t i = 0; i < n; i++) {
        uint64_t v = num_get(base, &fields[i]);
        uint64_t type_max = fields[i].size == 4 ? UINT32_MAX : UINT64_MAX;
        if ((rc = read_u64(l, &v, obj, prefix, fields[i].name, false, type_max)) != 0)
            return rc;
        num_set(base, &fields[i], v);
    }
    return 0;
}

static int parse_file(const struct loader *l, json_t **doc, const char *path)
{
    char *text = NULL;
    size_t len;
    json_error_t jerr;
    int rc;

    if ((rc = config_file_read(&text, &len, path, CONFIG_FILE_BYTES_MAX, l->err, l->err_size)) != 0)
        return rc;
    /* Without JSON_ALLOW_NUL jansson refuses "\u0000", so every string
     * below is a whole C string; duplicate keys are refused like typos. */
    *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (*doc == NULL) {
        set_err(l->err, l->err_size, "%s:%d:%d: %s", l->file, jerr.line, jerr.column, jerr.text);
        return -BEX_EDECODE;
    }
    if (!json_is_object(*doc)) {
        json_decref(*doc);
        *doc = NULL;
        return fail(l, BEX_EDECODE, NULL, "not a JSON object");
    }
    return 0;
}

/* ---- syntax rules ---- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* chain_id: 1..64 of [a-z0-9.-]. */
static const char *chain_id_problem(const char *s)
{
    size_t n = strlen(s);

    if (n == 0)
        return "empty";
    if (n > GENESIS_CHAIN_ID_MAX)
        return "longer than 64 characters";
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '.' && s[i] != '-')
            return "only a-z, 0-9, '.' and '-' are allowed";
    return NULL;
}

/* Agency ids: lowercase labels of [a-z0-9-] (no '-' at either end) joined by dots. */
static const char *agency_id_problem(const char *s)
{
    size_t n = strlen(s);
    size_t label = 0;

    if (n == 0)
        return "empty";
    if (n > GENESIS_AGENCY_ID_MAX)
        return "longer than 64 characters";
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0)
                return "empty label (labels are joined by single dots)";
            if (s[i - 1] == '-')
                return "a label ends with '-'";
            label = 0;
            continue;
        }
        if (!is_lower_alnum(c) && c != '-')
            return "only lowercase labels of a-z, 0-9 and '-' joined by dots are allowed";
        if (label == 0 && c == '-')
            return "a label starts with '-'";
        label++;
    }
    return NULL;
}

/* Roles: 1..32 of [a-z0-9_-], starting with a letter or digit. */
static const char *role_problem(const char *s)
{
    size_t n = strlen(s);

    if (n == 0)
        return "empty";
    if (n > GENESIS_ROLE_MAX)
        return "longer than 32 characters";
    if (!is_lower_alnum(s[0]))
        return "must start with a-z or 0-9";
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '_' && s[i] != '-')
            return "only a-z, 0-9, '_' and '-' are allowed";
    return NULL;
}

static const char *name_problem(const char *s)
{
    if (s[0] == '\0')
        return "empty";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            return "contains a control character";
    return NULL;
}

/* ---- addresses ---- */

static bool is_ip(const char *host, int *family)
{
    uint8_t buf[sizeof(struct in6_addr)];

    if (inet_pton(AF_INET, host, buf) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, host, buf) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

/* RFC 1123 host names; an all-digit last label would be a mistyped IPv4. */
static bool is_hostname(const char *s)
{
    size_t n = strlen(s);
    size_t label = 0;
    bool digits_only = true;

    if (n == 0 || n > CONFIG_HOST_MAX)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            if (c == '\0' && digits_only)
                return false;
            label = 0;
            digits_only = true;
            continue;
        }
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !digit && c != '-')
            return false;
        if (label == 0 && c == '-')
            return false;
        if (!digit)
            digits_only = false;
        label++;
    }
    return true;
}

static const char *host_problem(const char *host, bool ip_only)
{
    int family;

    if (host[0] == '\0')
        return "empty host";
    if (is_ip(host, &family))
        return NULL;
    if (ip_only)
        return "host must be an IP address";
    if (!is_hostname(host))
        return "host is neither an IP address nor a host name";
    return NULL;
}

int config_parse_address(struct config_address *a, const char *text, bool ip_only, char *err, size_t err_size)
{
    const char *port;
    size_t host_len;
    const char *problem;
    unsigned long p = 0;

    memset(a, 0, sizeof(*a));
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || end[1] != ':') {
            set_err(err, err_size, "\"%s\" is not [ipv6]:port", text);
            return -BEX_EINVAL;
        }
        host_len = (size_t)(end - text - 1);
        port = end + 2;
        if (host_len > CONFIG_HOST_MAX) {
            set_err(err, err_size, "host too long");
            return -BEX_EINVAL;
        }
        memcpy(a->host, text + 1, host_len);
        int family = 0;
        if (!is_ip(a->host, &family) || family != AF_INET6) {
            set_err(err, err_size, "\"%s\" is not an IPv6 address", a->host);
            return -BEX_EINVAL;
        }
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            set_err(err, err_size, "\"%s\" is not host:port", text);
            return -BEX_EINVAL;
        }
        host_len = (size_t)(colon - text);
        port = colon + 1;
        if (memchr(text, ':', host_len) != NULL) {
            set_err(err, err_size, "\"%s\": an IPv6 address needs brackets, as in [::1]:26601", text);
            return -BEX_EINVAL;
        }
        if (host_len > CONFIG_HOST_MAX) {
            set_err(err, err_size, "host too long");
            return -BEX_EINVAL;
        }
        memcpy(a->host, text, host_len);
        if ((problem = host_problem(a->host, ip_only)) != NULL) {
            set_err(err, err_size, "\"%s\": %s", text, problem);
            return -BEX_EINVAL;
        }
    }
    /* Only plain decimal digits: strtoul alone would take " +1" or "0x10". */
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0' || (p = strtoul(port, NULL, 10)) == 0 || p > 65535) {
        set_err(err, err_size, "\"%s\": port must be a number in [1, 65535]", text);
        return -BEX_EINVAL;
    }
    a->port = (uint16_t)p;
    return 0;
}

int config_format_address(char *out, size_t out_size, const struct config_address *a)
{
    int n;

    if (strchr(a->host, ':') != NULL)
        n = snprintf(out, out_size, "[%s]:%u", a->host, (unsigned)a->port);
    else
        n = snprintf(out, out_size, "%s:%u", a->host, (unsigned)a->port);
    return n < 0 || (size_t)n >= out_size ? -BEX_ELIMIT : 0;
}

bool config_address_is_loopback(const struct config_address *a)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (inet_pton(AF_INET, a->host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, a->host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return false;
}

/* Re-validates an address of a struct that may have been built in memory. */
static int check_address(const struct loader *l, const struct config_address *a, const char *f, bool ip_only)
{
    const char *problem;

    if (strnlen(a->host, sizeof(a->host)) == sizeof(a->host))
        return fail(l, BEX_EINVAL, f, "host not terminated");
    if ((problem = host_problem(a->host, ip_only)) != NULL)
        return fail(l, BEX_EINVAL, f, "%s", problem);
    if (a->port == 0)
        return fail(l, BEX_EINVAL, f, "port must be in [1, 65535]");
    return 0;
}

/* ---- genesis: parsing ---- */

static const char *const genesis_names[] = {"chain_id", "genesis_time_ms", "consensus", "agencies", "nodes"};
static const char *const agency_names[] = {"id", "name", "roles", "officers", "threshold", "enc_key"};
static const char *const node_entry_names[] = {"agency", "node_key", "tls_key", "address"};

void config_genesis_defaults(struct genesis *g)
{
    memset(g, 0, sizeof(*g));
    num_defaults(&g->consensus, consensus_fields, BEX_ARRAY_LEN(consensus_fields));
}

static int parse_agency(const struct loader *l, struct genesis_agency *a, json_t *obj, const char *prefix)
{
    json_t *arr, *v;
    char f[FIELD_MAX];
    uint64_t threshold = 0;
    size_t i;
    int rc;

    if (!json_is_object(obj))
        return fail(l, BEX_EDECODE, prefix, "not an object");
    if ((rc = check_fields(l, obj, prefix, agency_names, BEX_ARRAY_LEN(agency_names), NULL, 0)) != 0 ||
        (rc = read_string(l, a->id, sizeof(a->id), obj, prefix, "id", true)) != 0 ||
        (rc = read_string(l, a->name, sizeof(a->name), obj, prefix, "name", true)) != 0)
        return rc;

    if ((rc = read_array(l, &arr, obj, prefix, "roles", GENESIS_ROLES_MAX)) != 0)
        return rc;
    json_array_foreach(arr, i, v)
    {
        path_printf(f, "%s.roles[%zu]", prefix, i);
        if ((rc = string_value(l, a->roles[i], sizeof(a->roles[i]), v, f)) != 0)
            return rc;
    }
    a->roles_n = (uint32_t)json_array_size(arr);

    if ((rc = read_array(l, &arr, obj, prefix, "officers", GENESIS_OFFICERS_MAX)) != 0)
        return rc;
    json_array_foreach(arr, i, v)
    {
        path_printf(f, "%s.officers[%zu]", prefix, i);
        if ((rc = hex_value(l, a->officers[i].b, CRYPTO_PUB_BYTES, v, f)) != 0)
            return rc;
    }
    a->officers_n = (uint32_t)json_array_size(arr);

    if ((rc = read_u64(l, &threshold, obj, prefix, "threshold", true, UINT32_MAX)) != 0)
        return rc;
    a->threshold = (uint32_t)threshold;
    return read_hex(l, a->enc_key.b, CRYPTO_PUB_BYTES, obj, prefix, "enc_key");
}

static int parse_node_entry(const struct loader *l, struct genesis_node *n, json_t *obj, const char *prefix)
{
    int rc;

    if (!json_is_object(obj))
        return fail(l, BEX_EDECODE, prefix, "not an object");
    if ((rc = check_fields(l, obj, prefix, node_entry_names, BEX_ARRAY_LEN(node_entry_names), NULL, 0)) != 0 ||
        (rc = read_string(l, n->agency, sizeof(n->agency), obj, prefix, "agency", true)) != 0 ||
        (rc = read_hex(l, n->node_key.b, CRYPTO_PUB_BYTES, obj, prefix, "node_key")) != 0 ||
        (rc = read_hex(l, n->tls_key, CONFIG_TLS_KEY_BYTES, obj, prefix, "tls_key")) != 0)
        return rc;
    return read_address(l, &n->address, obj, prefix, "address", false);
}

static int parse_genesis(const struct loader *l, struct genesis *g, json_t *doc)
{
    json_t *v, *arr;
    char f[FIELD_MAX];
    size_t i;
    int rc;

    if ((rc = check_fields(l, doc, "", genesis_names, BEX_ARRAY_LEN(genesis_names), NULL, 0)) != 0 ||
        (rc = read_string(l, g->chain_id, sizeof(g->chain_id), doc, "", "chain_id", true)) != 0 ||
        (rc = read_u64(l, &g->genesis_time_ms, doc, "", "genesis_time_ms", true, GENESIS_TIME_MS_MAX)) != 0)
        return rc;

    if ((rc = member(l, &v, doc, "", "consensus", false)) != 0)
        return rc;
    if (v != NULL) {
        if (!json_is_object(v))
            return fail(l, BEX_EDECODE, "consensus", "not an object");
        if ((rc = check_fields(l, v, "consensus", NULL, 0, consensus_fields, BEX_ARRAY_LEN(consensus_fields))) !=
                0 ||
            (rc = read_numbers(l, &g->consensus, v, "consensus", consensus_fields,
                               BEX_ARRAY_LEN(consensus_fields))) != 0)
            return rc;
    }

    if ((rc = read_array(l, &arr, doc, "", "agencies", GENESIS_AGENCIES_MAX)) != 0)
        return rc;
    json_array_foreach(arr, i, v)
    {
        path_printf(f, "agencies[%zu]", i);
        if ((rc = parse_agency(l, &g->agencies[i], v, f)) != 0)
            return rc;
    }
    g->agencies_n = (uint32_t)json_array_size(arr);

    if ((rc = read_array(l, &arr, doc, "", "nodes", GENESIS_NODES_MAX)) != 0)
        return rc;
    json_array_foreach(arr, i, v)
    {
        path_printf(f, "nodes[%zu]", i);
        if ((rc = parse_node_entry(l, &g->nodes[i], v, f)) != 0)
            return rc;
    }
    g->nodes_n = (uint32_t)json_array_size(arr);
    return 0;
}

/* ---- genesis: checking ---- */

/* A secp256k1 key of the genesis and where it appears, for uniqueness. */
struct key_use {
    const struct crypto_pubkey *key;
    char where[FIELD_MAX];
};

#define GENESIS_KEYS_MAX (GENESIS_AGENCIES_MAX * (GENESIS_OFFICERS_MAX + 1) + GENESIS_NODES_MAX)

/* Adds a key to the list, or fails naming the field that used it first. */
static int key_unique(const struct loader *l, struct key_use *uses, size_t *n, const struct crypto_pubkey *key,
                      const char *where)
{
    if (crypto_pubkey_check(key) != 0)
        return fail(l, BEX_EINVAL, where, "not a valid secp256k1 public key");
    for (size_t i = 0; i < *n; i++)
        if (memcmp(uses[i].key->b, key->b, sizeof(key->b)) == 0)
            return fail(l, BEX_EINVAL, where, "key already used at %s", uses[i].where);
    BEX_ASSERT(*n < GENESIS_KEYS_MAX);
    uses[*n].key = key;
    path_printf(uses[*n].where, "%s", where);
    (*n)++;
    return 0;
}

static int check_agency(const struct loader *l, const struct genesis *g, uint32_t i, struct key_use *keys,
                        size_t *keys_n)
{
    const struct genesis_agency *a = &g->agencies[i];
    char p[FIELD_MAX], f[FIELD_MAX];
    const char *problem;
    int rc;

    path_printf(p, "agencies[%u]", i);
    field_path(f, p, "id");
    if (strnlen(a->id, sizeof(a->id)) == sizeof(a->id))
        return fail(l, BEX_EINVAL, f, "not terminated");
    if ((problem = agency_id_problem(a->id)) != NULL)
        return fail(l, BEX_EINVAL, f, "\"%s\": %s", a->id, problem);
    for (uint32_t j = 0; j < i; j++)
        if (strcmp(g->agencies[j].id, a->id) == 0)
            return fail(l, BEX_EINVAL, f, "\"%s\" is already the id of agencies[%u]", a->id, j);

    field_path(f, p, "name");
    if (strnlen(a->name, sizeof(a->name)) == sizeof(a->name))
        return fail(l, BEX_EINVAL, f, "not terminated");
    if ((problem = name_problem(a->name)) != NULL)
        return fail(l, BEX_EINVAL, f, "%s", problem);

    if (a->roles_n > GENESIS_ROLES_MAX)
        return fail(l, BEX_EINVAL, p, "%u roles exceed the maximum of %d", a->roles_n, GENESIS_ROLES_MAX);
    for (uint32_t r = 0; r < a->roles_n; r++) {
        path_printf(f, "%s.roles[%u]", p, r);
        if (strnlen(a->roles[r], sizeof(a->roles[r])) == sizeof(a->roles[r]))
            return fail(l, BEX_EINVAL, f, "not terminated");
        if ((problem = role_problem(a->roles[r])) != NULL)
            return fail(l, BEX_EINVAL, f, "\"%s\": %s", a->roles[r], problem);
        for (uint32_t s = 0; s < r; s++)
            if (strcmp(a->roles[s], a->roles[r]) == 0)
                return fail(l, BEX_EINVAL, f, "\"%s\" is listed twice", a->roles[r]);
    }

    field_path(f, p, "officers");
    if (a->officers_n == 0)
        return fail(l, BEX_EINVAL, f, "at least one officer key is required");
    if (a->officers_n > GENESIS_OFFICERS_MAX)
        return fail(l, BEX_EINVAL, f, "%u keys exceed the maximum of %d", a->officers_n, GENESIS_OFFICERS_MAX);
    for (uint32_t k = 0; k < a->officers_n; k++) {
        path_printf(f, "%s.officers[%u]", p, k);
        if ((rc = key_unique(l, keys, keys_n, &a->officers[k], f)) != 0)
            return rc;
    }

    field_path(f, p, "threshold");
    if (a->threshold == 0)
        return fail(l, BEX_EINVAL, f, "must be at least 1");
    if (a->threshold > a->officers_n)
        return fail(l, BEX_EINVAL, f, "%u exceeds the %u officer key%s", a->threshold, a->officers_n,
                    a->officers_n == 1 ? "" : "s");

    field_path(f, p, "enc_key");
    return key_unique(l, keys, keys_n, &a->enc_key, f);
}

static bool zero_bytes(const uint8_t *b, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= b[i];
    return acc == 0;
}

static int check_node_entry(const struct loader *l, struct genesis *g, uint32_t i, struct key_use *keys,
                            size_t *keys_n)
{
    struct genesis_node *n = &g->nodes[i];
    char p[FIELD_MAX], f[FIELD_MAX];
    int rc;

    path_printf(p, "nodes[%u]", i);
    field_path(f, p, "agency");
    int a = config_genesis_find_agency(g, n->agency);
    if (a < 0)
        return fail(l, BEX_EINVAL, f, "\"%.64s\" is not an agency of this genesis", n->agency);
    if (g->agencies[a].node_index >= 0)
        return fail(l, BEX_EINVAL, f, "\"%s\" already runs nodes[%d]; an agency runs at most one node", n->agency,
                    (int)g->agencies[a].node_index);
    g->agencies[a].node_index = (int32_t)i;
    n->agency_index = (uint32_t)a;

    field_path(f, p, "node_key");
    if ((rc = key_unique(l, keys, keys_n, &n->node_key, f)) != 0)
        return rc;

    field_path(f, p, "tls_key");
    if (zero_bytes(n->tls_key, sizeof(n->tls_key)))
        return fail(l, BEX_EINVAL, f, "all zero");
    for (uint32_t j = 0; j < i; j++)
        if (memcmp(g->nodes[j].tls_key, n->tls_key, sizeof(n->tls_key)) == 0)
            return fail(l, BEX_EINVAL, f, "key already used at nodes[%u].tls_key", j);

    field_path(f, p, "address");
    if ((rc = check_address(l, &n->address, f, false)) != 0)
        return rc;
    for (uint32_t j = 0; j < i; j++)
        if (g->nodes[j].address.port == n->address.port && strcmp(g->nodes[j].address.host, n->address.host) == 0)
            return fail(l, BEX_EINVAL, f, "address already used by nodes[%u]", j);
    return 0;
}

static int check_genesis(const struct loader *l, struct genesis *g)
{
    const char *problem;
    struct key_use *keys;
    size_t keys_n = 0;
    int rc = 0;

    if (strnlen(g->chain_id, sizeof(g->chain_id)) == sizeof(g->chain_id))
        return fail(l, BEX_EINVAL, "chain_id", "not terminated");
    if ((problem = chain_id_problem(g->chain_id)) != NULL)
        return fail(l, BEX_EINVAL, "chain_id", "%s", problem);
    if (g->genesis_time_ms > GENESIS_TIME_MS_MAX)
        return fail(l, BEX_EINVAL, "genesis_time_ms", "%llu is after the year 9999",
                    (unsigned long long)g->genesis_time_ms);
    if ((rc = num_check(l, &g->consensus, "consensus", consensus_fields, BEX_ARRAY_LEN(consensus_fields))) != 0)
        return rc;
    /* The PBFT engine keeps its log between checkpoints: the window holds whole checkpoint intervals. */
    if (g->consensus.window % g->consensus.checkpoint_interval != 0)
        return fail(l, BEX_EINVAL, "consensus.window", "%u is not a multiple of checkpoint_interval %u",
                    g->consensus.window, g->consensus.checkpoint_interval);
    if (g->agencies_n == 0)
        return fail(l, BEX_EINVAL, "agencies", "at least one agency is required");
    if (g->agencies_n > GENESIS_AGENCIES_MAX)
        return fail(l, BEX_EINVAL, "agencies", "%u entries exceed the maximum of %d", g->agencies_n,
                    GENESIS_AGENCIES_MAX);
    if (g->nodes_n < GENESIS_NODES_MIN)
        return fail(l, BEX_EINVAL, "nodes", "%u nodes are too few: PBFT needs at least %d (n >= 3f + 1, f >= 1)",
                    g->nodes_n, GENESIS_NODES_MIN);
    if (g->nodes_n > GENESIS_NODES_MAX)
        return fail(l, BEX_EINVAL, "nodes", "%u entries exceed the maximum of %d", g->nodes_n, GENESIS_NODES_MAX);

    /* About 180 KiB: too much for the stack of a libuv worker thread. */
    keys = malloc(GENESIS_KEYS_MAX * sizeof(*keys));
    if (keys == NULL) {
        set_err(l->err, l->err_size, "%s: out of memory", l->file);
        return -BEX_ENOMEM;
    }
    for (uint32_t i = 0; i < g->agencies_n; i++)
        g->agencies[i].node_index = -1;
    for (uint32_t i = 0; i < g->agencies_n && rc == 0; i++)
        rc = check_agency(l, g, i, keys, &keys_n);
    for (uint32_t i = 0; i < g->nodes_n && rc == 0; i++)
        rc = check_node_entry(l, g, i, keys, &keys_n);
    free(keys);
    if (rc != 0)
        return rc;
    g->f = (g->nodes_n - 1) / 3;
    BEX_ASSERT(g->f >= 1);
    BEX_ASSERT(3 * g->f + 1 <= g->nodes_n);
    return 0;
}

int config_check_genesis(struct genesis *g, const char *name, char *err, size_t err_size)
{
    struct loader l = {name, err, err_size};
    return check_genesis(&l, g);
}

int config_load_genesis(struct genesis *g, const char *path, char *err, size_t err_size)
{
    struct loader l = {path, err, err_size};
    json_t *doc = NULL;
    int rc;

    config_genesis_defaults(g);
    if ((rc = parse_file(&l, &doc, path)) != 0)
        goto fail;
    if ((rc = parse_genesis(&l, g, doc)) != 0)
        goto fail;
    rc = check_genesis(&l, g);
fail:
    json_decref(doc);
    if (rc != 0)
        config_genesis_close(g);
    return rc;
}

int config_genesis_find_agency(const struct genesis *g, const char *id)
{
    for (uint32_t i = 0; i < g->agencies_n && i < GENESIS_AGENCIES_MAX; i++)
        if (strcmp(g->agencies[i].id, id) == 0)
            return (int)i;
    return -1;
}

void config_genesis_close(struct genesis *g)
{
    memset(g, 0, sizeof(*g));
}

/* ---- genesis: writing ---- */

static json_t *hex_json(const uint8_t *b, size_t len)
{
    char hex[2 * CRYPTO_PUB_BYTES + 1];
    int rc = crypto_hex_encode(hex, sizeof(hex), b, len);
    BEX_ASSERT(rc == 0);
    return json_string(hex);
}

/* json_object_set_new and json_array_append_new take the value even on
 * failure, so building can go on and one check at the end suffices. */
static bool put(json_t *obj, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(obj, key, value) == 0;
}

static bool append(json_t *arr, json_t *value)
{
    return value != NULL && json_array_append_new(arr, value) == 0;
}

static json_t *numbers_json(const void *base, const struct num_field *fields, size_t n)
{
    json_t *obj = json_object();
    bool ok = obj != NULL;

    for (size_t i = 0; i < n && ok; i++)
        ok = put(obj, fields[i].name, json_integer((json_int_t)num_get(base, &fields[i])));
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *genesis_json(const struct genesis *g)
{
    json_t *doc = json_object();
    json_t *agencies = json_array();
    json_t *nodes = json_array();
    bool ok = doc != NULL && agencies != NULL && nodes != NULL;
    char addr[CONFIG_ADDRESS_MAX + 1];

    for (uint32_t i = 0; i < g->agencies_n && ok; i++) {
        const struct genesis_agency *a = &g->agencies[i];
        json_t *obj = json_object();
        json_t *roles = json_array();
        json_t *officers = json_array();
        ok = obj != NULL && roles != NULL && officers != NULL;
        for (uint32_t r = 0; r < a->roles_n && ok; r++)
            ok = append(roles, json_string(a->roles[r]));
        for (uint32_t k = 0; k < a->officers_n && ok; k++)
            ok = append(officers, hex_json(a->officers[k].b, CRYPTO_PUB_BYTES));
        ok = ok && put(obj, "id", json_string(a->id)) && put(obj, "name", json_string(a->name));
        ok = ok && put(obj, "roles", json_incref(roles)) && put(obj, "officers", json_incref(officers));
        ok = ok && put(obj, "threshold", json_integer(a->threshold));
        ok = ok && put(obj, "enc_key", hex_json(a->enc_key.b, CRYPTO_PUB_BYTES));
        ok = ok && append(agencies, json_incref(obj));
        json_decref(roles);
        json_decref(officers);
        json_decref(obj);
    }
    for (uint32_t i = 0; i < g->nodes_n && ok; i++) {
        const struct genesis_node *n = &g->nodes[i];
        json_t *obj = json_object();
        ok = obj != NULL && config_format_address(addr, sizeof(addr), &n->address) == 0;
        ok = ok && put(obj, "agency", json_string(n->agency));
        ok = ok && put(obj, "node_key", hex_json(n->node_key.b, CRYPTO_PUB_BYTES));
        ok = ok && put(obj, "tls_key", hex_json(n->tls_key, CONFIG_TLS_KEY_BYTES));
        ok = ok && put(obj, "address", json_string(addr));
        ok = ok && append(nodes, json_incref(obj));
        json_decref(obj);
    }
    ok = ok && put(doc, "chain_id", json_string(g->chain_id));
    ok = ok && put(doc, "genesis_time_ms", json_integer((json_int_t)g->genesis_time_ms));
    ok = ok && put(doc, "consensus", numbers_json(&g->consensus, consensus_fields, BEX_ARRAY_LEN(consensus_fields)));
    ok = ok && put(doc, "agencies", json_incref(agencies)) && put(doc, "nodes", json_incref(nodes));
    json_decref(agencies);
    json_decref(nodes);
    if (!ok) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static int write_json(const struct loader *l, json_t *doc, const char *path, bool replace)
{
    char *text;
    int rc;

    if (doc == NULL || (text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL) {
        set_err(l->err, l->err_size, "%s: out of memory", path);
        return -BEX_ENOMEM;
    }
    size_t len = strlen(text);
    /* json_dumps leaves room for its NUL, which becomes the final newline. */
    text[len] = '\n';
    rc = config_file_write(path, text, len + 1, 0644, replace, l->err, l->err_size);
    free(text);
    return rc;
}

int config_write_genesis(struct genesis *g, const char *path, bool replace, char *err, size_t err_size)
{
    struct loader l = {path, err, err_size};
    json_t *doc;
    int rc;

    if ((rc = check_genesis(&l, g)) != 0)
        return rc;
    doc = genesis_json(g);
    rc = write_json(&l, doc, path, replace);
    json_decref(doc);
    return rc;
}

int config_genesis_hash(uint8_t out[CRYPTO_HASH_BYTES], const struct genesis *g)
{
    json_t *doc = genesis_json(g);
    char *text = NULL;

    BEX_ASSERT(g->nodes_n >= GENESIS_NODES_MIN);
    if (doc == NULL || (text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        json_decref(doc);
        return -BEX_ENOMEM;
    }
    crypto_sha256(out, text, strlen(text));
    free(text);
    json_decref(doc);
    return 0;
}

/* ---- node.json ---- */

static const char *const node_names[] = {"genesis",  "node_index", "data_dir",       "listen",
                                         "rpc",      "rpc_public", "node_key",       "tls_key",
                                         "enc_key",  "passphrase_file", "log_level", "map_size_mb",
                                         "map_size_max_mb", "limits"};
static const char *const level_names[] = {"error", "warn", "info", "debug"};

_Static_assert(BEX_ARRAY_LEN(level_names) == CONFIG_LOG_DEBUG + 1, "one name per log level");

const char *config_log_level_name(enum config_log_level level)
{
    BEX_ASSERT((unsigned)level < BEX_ARRAY_LEN(level_names));
    return level_names[level];
}

uint32_t config_map_size_max_mb(const struct node_config *c)
{
    uint64_t mb = (uint64_t)c->map_size_mb * 16;

    if (c->map_size_max_mb != 0)
        return c->map_size_max_mb;
    return mb < MAP_SIZE_MB_MAX ? (uint32_t)mb : MAP_SIZE_MB_MAX;
}

void config_node_defaults(struct node_config *c)
{
    memset(c, 0, sizeof(*c));
    c->log_level = CONFIG_LOG_INFO;
    c->map_size_mb = MAP_SIZE_MB_DEFAULT;
    num_defaults(&c->limits, limits_fields, BEX_ARRAY_LEN(limits_fields));
}

/* Reads a path and resolves it against dir (the config file's directory). */
static int read_path(const struct loader *l, char out[CONFIG_PATH_MAX], json_t *obj, const char *name,
                     bool required, const char *dir)
{
    char raw[CONFIG_PATH_MAX];
    int rc;

    raw[0] = '\0';
    if ((rc = read_string(l, raw, sizeof(raw), obj, "", name, required)) != 0)
        return rc;
    if (json_object_get(obj, name) == NULL)
        return 0;
    if (raw[0] == '\0')
        return fail(l, BEX_EINVAL, name, "empty path");
    size_t d = strlen(dir);
    int n = raw[0] == '/' || d == 0 ? snprintf(out, CONFIG_PATH_MAX, "%s", raw)
                                    : snprintf(out, CONFIG_PATH_MAX, "%s%s%s", dir, dir[d - 1] == '/' ? "" : "/", raw);
    if (n < 0 || n >= CONFIG_PATH_MAX)
        return fail(l, BEX_EINVAL, name, "path longer than %d bytes once resolved", CONFIG_PATH_MAX - 1);
    return 0;
}

static int parse_node(const struct loader *l, struct node_config *c, json_t *doc, const char *dir)
{
    char level[16];
    json_t *v;
    uint64_t u;
    int rc;

    if ((rc = check_fields(l, doc, "", node_names, BEX_ARRAY_LEN(node_names), NULL, 0)) != 0 ||
        (rc = read_path(l, c->genesis, doc, "genesis", true, dir)) != 0 ||
        (rc = read_path(l, c->data_dir, doc, "data_dir", true, dir)) != 0 ||
        (rc = read_path(l, c->node_key, doc, "node_key", true, dir)) != 0 ||
        (rc = read_path(l, c->tls_key, doc, "tls_key", true, dir)) != 0 ||
        (rc = read_path(l, c->enc_key, doc, "enc_key", false, dir)) != 0 ||
        (rc = read_path(l, c->passphrase_file, doc, "passphrase_file", false, dir)) != 0)
        return rc;
    if ((rc = read_u64(l, &u, doc, "", "node_index", true, UINT32_MAX)) != 0)
        return rc;
    c->node_index = (uint32_t)u;
    if ((rc = read_address(l, &c->listen, doc, "", "listen", true)) != 0 ||
        (rc = read_address(l, &c->rpc, doc, "", "rpc", true)) != 0 ||
        (rc = read_bool(l, &c->rpc_public, doc, "", "rpc_public")) != 0)
        return rc;

    if (json_object_get(doc, "log_level") != NULL) {
        if ((rc = read_string(l, level, sizeof(level), doc, "", "log_level", true)) != 0)
            return rc;
        size_t i = 0;
        while (i < BEX_ARRAY_LEN(level_names) && strcmp(level, level_names[i]) != 0)
            i++;
        if (i == BEX_ARRAY_LEN(level_names))
            return fail(l, BEX_EINVAL, "log_level", "\"%s\" is not one of error, warn, info, debug", level);
        c->log_level = (enum config_log_level)i;
    }

    u = c->map_size_mb;
    if ((rc = read_u64(l, &u, doc, "", "map_size_mb", false, UINT32_MAX)) != 0)
        return rc;
    c->map_size_mb = (uint32_t)u;
    u = c->map_size_max_mb;
    if ((rc = read_u64(l, &u, doc, "", "map_size_max_mb", false, UINT32_MAX)) != 0)
        return rc;
    c->map_size_max_mb = (uint32_t)u;

    if ((rc = member(l, &v, doc, "", "limits", false)) != 0)
        return rc;
    if (v != NULL) {
        if (!json_is_object(v))
            return fail(l, BEX_EDECODE, "limits", "not an object");
        if ((rc = check_fields(l, v, "limits", NULL, 0, limits_fields, BEX_ARRAY_LEN(limits_fields))) != 0 ||
            (rc = read_numbers(l, &c->limits, v, "limits", limits_fields, BEX_ARRAY_LEN(limits_fields))) != 0)
            return rc;
    }
    return 0;
}

static int check_path(const struct loader *l, const char *path, const char *name, bool required)
{
    if (strnlen(path, CONFIG_PATH_MAX) == CONFIG_PATH_MAX)
        return fail(l, BEX_EINVAL, name, "not terminated");
    if (required && path[0] == '\0')
        return fail(l, BEX_EINVAL, name, "empty path");
    return 0;
}

static int check_node(const struct loader *l, const struct node_config *c)
{
    const struct node_limits *lim = &c->limits;
    char addr[CONFIG_ADDRESS_MAX + 1];
    int rc;

    if ((rc = check_path(l, c->genesis, "genesis", true)) != 0 ||
        (rc = check_path(l, c->data_dir, "data_dir", true)) != 0 ||
        (rc = check_path(l, c->node_key, "node_key", true)) != 0 ||
        (rc = check_path(l, c->tls_key, "tls_key", true)) != 0 ||
        (rc = check_path(l, c->enc_key, "enc_key", false)) != 0 ||
        (rc = check_path(l, c->passphrase_file, "passphrase_file", false)) != 0)
        return rc;
    if (c->node_index >= GENESIS_NODES_MAX)
        return fail(l, BEX_EINVAL, "node_index", "%u exceeds the maximum of %d", c->node_index,
                    GENESIS_NODES_MAX - 1);
    if ((rc = check_address(l, &c->listen, "listen", true)) != 0 ||
        (rc = check_address(l, &c->rpc, "rpc", true)) != 0)
        return rc;
    if (c->rpc.port == c->listen.port && strcmp(c->rpc.host, c->listen.host) == 0)
        return fail(l, BEX_EINVAL, "rpc", "the same address as listen");
    /* The RPC can submit transactions and read everything the node holds:
     * exposing it beyond the host must be a decision, not a default. */
    if (!c->rpc_public && !config_address_is_loopback(&c->rpc)) {
        if (config_format_address(addr, sizeof(addr), &c->rpc) != 0)
            addr[0] = '\0';
        return fail(l, BEX_EINVAL, "rpc",
                    "%s is not a loopback address; set \"rpc_public\": true to serve RPC beyond this host", addr);
    }
    if ((unsigned)c->log_level > CONFIG_LOG_DEBUG)
        return fail(l, BEX_EINVAL, "log_level", "%d is not a log level", (int)c->log_level);
    if (c->map_size_mb < MAP_SIZE_MB_MIN || c->map_size_mb > MAP_SIZE_MB_MAX)
        return fail(l, BEX_EINVAL, "map_size_mb", "%u is outside [%u, %u]", c->map_size_mb, MAP_SIZE_MB_MIN,
                    MAP_SIZE_MB_MAX);
    if (c->map_size_max_mb != 0 && (c->map_size_max_mb < c->map_size_mb || c->map_size_max_mb > MAP_SIZE_MB_MAX))
        return fail(l, BEX_EINVAL, "map_size_max_mb", "%u is outside [map_size_mb %u, %u] (0: 16 x map_size_mb)",
                    c->map_size_max_mb, c->map_size_mb, MAP_SIZE_MB_MAX);
    if ((rc = num_check(l, lim, "limits", limits_fields, BEX_ARRAY_LEN(limits_fields))) != 0)
        return rc;
    if (lim->peer_queue_bytes_max < lim->frame_bytes_max)
        return fail(l, BEX_EINVAL, "limits.peer_queue_bytes_max",
                    "%llu is below limits.frame_bytes_max (%u): a queue must hold the largest frame",
                    (unsigned long long)lim->peer_queue_bytes_max, lim->frame_bytes_max);
    if (lim->tx_bytes_max >= lim->frame_bytes_max)
        return fail(l, BEX_EINVAL, "limits.tx_bytes_max", "%u does not fit in limits.frame_bytes_max (%u)",
                    lim->tx_bytes_max, lim->frame_bytes_max);
    if (lim->tx_bytes_max > lim->mempool_bytes)
        return fail(l, BEX_EINVAL, "limits.tx_bytes_max", "%u exceeds limits.mempool_bytes (%llu)",
                    lim->tx_bytes_max, (unsigned long long)lim->mempool_bytes);
    /* A transaction reaches the RPC hex-encoded, twice its size. */
    if ((uint64_t)lim->tx_bytes_max * 2 > lim->rpc_body_bytes_max)
        return fail(l, BEX_EINVAL, "limits.tx_bytes_max",
                    "%u in hex (twice the size) does not fit in limits.rpc_body_bytes_max (%u)", lim->tx_bytes_max,
                    lim->rpc_body_bytes_max);
    return 0;
}

int config_check_node(const struct node_config *c, const char *name, char *err, size_t err_size)
{
    struct loader l = {name, err, err_size};
    return check_node(&l, c);
}

/* Envelope, block header and commit certificate around the block's txs. */
#define FRAME_OVERHEAD_BYTES (64u << 10)

int config_check_node_genesis(const struct node_config *c, const struct genesis *g, const char *name, char *err,
                              size_t err_size)
{
    struct loader l = {name, err, err_size};

    if (c->node_index >= g->nodes_n)
        return fail(&l, BEX_EINVAL, "node_index", "%u is not a node of the genesis, which has %u", c->node_index,
                    g->nodes_n);
    if ((uint64_t)g->consensus.block_bytes_max + FRAME_OVERHEAD_BYTES > c->limits.frame_bytes_max)
        return fail(&l, BEX_EINVAL, "limits.frame_bytes_max",
                    "%u cannot carry a block of consensus.block_bytes_max (%u) plus %u bytes of envelope",
                    c->limits.frame_bytes_max, g->consensus.block_bytes_max, FRAME_OVERHEAD_BYTES);
    if (c->limits.tx_bytes_max > g->consensus.block_bytes_max)
        return fail(&l, BEX_EINVAL, "limits.tx_bytes_max", "%u exceeds consensus.block_bytes_max (%u)",
                    c->limits.tx_bytes_max, g->consensus.block_bytes_max);
    return 0;
}

/* The directory part of path: "" for a bare file name, "/" for "/x". */
static void dir_of(char out[CONFIG_PATH_MAX], const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);

    if (n >= CONFIG_PATH_MAX)
        n = CONFIG_PATH_MAX - 1;
    memcpy(out, path, n);
    out[n] = '\0';
}

int config_load_node(struct node_config *c, const char *path, char *err, size_t err_size)
{
    struct loader l = {path, err, err_size};
    char dir[CONFIG_PATH_MAX];
    json_t *doc = NULL;
    int rc;

    config_node_defaults(c);
    if (strlen(path) >= CONFIG_PATH_MAX) {
        set_err(err, err_size, "config path longer than %d bytes", CONFIG_PATH_MAX - 1);
        rc = -BEX_EINVAL;
        goto fail;
    }
    dir_of(dir, path);
    if ((rc = parse_file(&l, &doc, path)) != 0)
        goto fail;
    if ((rc = parse_node(&l, c, doc, dir)) != 0)
        goto fail;
    rc = check_node(&l, c);
fail:
    json_decref(doc);
    if (rc != 0)
        config_node_close(c);
    return rc;
}

static json_t *node_json(const struct node_config *c)
{
    json_t *doc = json_object();
    char listen[CONFIG_ADDRESS_MAX + 1], rpc[CONFIG_ADDRESS_MAX + 1];
    bool ok = doc != NULL && config_format_address(listen, sizeof(listen), &c->listen) == 0 &&
              config_format_address(rpc, sizeof(rpc), &c->rpc) == 0;

    ok = ok && put(doc, "genesis", json_string(c->genesis));
    ok = ok && put(doc, "node_index", json_integer(c->node_index));
    ok = ok && put(doc, "data_dir", json_string(c->data_dir));
    ok = ok && put(doc, "listen", json_string(listen));
    ok = ok && put(doc, "rpc", json_string(rpc));
    ok = ok && put(doc, "rpc_public", json_boolean(c->rpc_public));
    ok = ok && put(doc, "node_key", json_string(c->node_key));
    ok = ok && put(doc, "tls_key", json_string(c->tls_key));
    if (c->enc_key[0] != '\0')
        ok = ok && put(doc, "enc_key", json_string(c->enc_key));
    if (c->passphrase_file[0] != '\0')
        ok = ok && put(doc, "passphrase_file", json_string(c->passphrase_file));
    ok = ok && put(doc, "log_level", json_string(config_log_level_name(c->log_level)));
    ok = ok && put(doc, "map_size_mb", json_integer(c->map_size_mb));
    if (c->map_size_max_mb != 0)
        ok = ok && put(doc, "map_size_max_mb", json_integer(c->map_size_max_mb));
    ok = ok && put(doc, "limits", numbers_json(&c->limits, limits_fields, BEX_ARRAY_LEN(limits_fields)));
    if (!ok) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int config_write_node(const struct node_config *c, const char *path, bool replace, char *err, size_t err_size)
{
    struct loader l = {path, err, err_size};
    json_t *doc;
    int rc;

    if ((rc = check_node(&l, c)) != 0)
        return rc;
    doc = node_json(c);
    rc = write_json(&l, doc, path, replace);
    json_decref(doc);
    return rc;
}

void config_node_close(struct node_config *c)
{
    memset(c, 0, sizeof(*c));
}

/* ---- files ---- */

int config_file_read(char **out, size_t *out_len, const char *path, size_t max, char *err, size_t err_size)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    char extra;
    int fd;
    int rc;

    *out = NULL;
    *out_len = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        set_err(err, err_size, "%s: %s", path, strerror(errno));
        return -BEX_EIO;
    }
    if (fstat(fd, &st) != 0) {
        set_err(err, err_size, "%s: %s", path, strerror(errno));
        rc = -BEX_EIO;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, err_size, "%s: not a regular file", path);
        rc = -BEX_EIO;
        goto fail;
    }
    if ((uint64_t)st.st_size > max) {
        set_err(err, err_size, "%s: larger than %zu bytes", path, max);
        rc = -BEX_ELIMIT;
        goto fail;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        set_err(err, err_size, "%s: out of memory", path);
        rc = -BEX_ENOMEM;
        goto fail;
    }
    /* Read what fstat promised, then make sure nothing follows: a file that
     * grows while we read is not the file we checked. */
    for (;;) {
        bool full = n == (size_t)st.st_size;
        ssize_t r = full ? read(fd, &extra, 1) : read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, err_size, "%s: %s", path, strerror(errno));
            rc = -BEX_EIO;
            goto fail;
        }
        if (r == 0)
            break;
        if (full) {
            set_err(err, err_size, "%s: changed while being read", path);
            rc = -BEX_EIO;
            goto fail;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    buf = NULL;
    rc = 0;
fail:
    free(buf);
    close(fd);
    return rc;
}

static int io_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? -BEX_ENOSPC : -BEX_EIO;
}

int config_file_write(const char *path, const void *data, size_t len, unsigned mode, bool replace, char *err,
                      size_t err_size)
{
    char tmp[PATH_MAX];
    char dir[CONFIG_PATH_MAX];
    const uint8_t *p = data;
    size_t done = 0;
    int fd = -1;
    int dfd;
    int rc;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp)) {
        set_err(err, err_size, "%s: path too long", path);
        return -BEX_EIO;
    }
    /* mkostemp creates the file with mode 0600: no moment where a wider
     * mode exposes it. */
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        set_err(err, err_size, "%s: cannot create a temporary file: %s", path, strerror(errno));
        return io_code(errno);
    }
    if (fchmod(fd, (mode_t)mode) != 0)
        goto io_fail;
    while (done < len) {
        ssize_t r = write(fd, p + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto io_fail;
        done += (size_t)r;
    }
    if (fsync(fd) != 0)
        goto io_fail;
    if (close(fd) != 0) {
        fd = -1;
        goto io_fail;
    }
    fd = -1;
    if (replace) {
        if (rename(tmp, path) != 0)
            goto io_fail;
    } else {
        /* link() fails with EEXIST instead of replacing: no check-then-write race. */
        if (link(tmp, path) != 0) {
            if (errno == EEXIST) {
                set_err(err, err_size, "%s: already exists", path);
                rc = -BEX_EEXIST;
                goto fail;
            }
            goto io_fail;
        }
        unlink(tmp);
    }
    /* The new directory entry is durable once the directory is synced. */
    dir_of(dir, path);
    dfd = open(dir[0] == '\0' ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int synced = fsync(dfd);
        close(dfd);
        if (synced != 0) {
            set_err(err, err_size, "%s: syncing the directory: %s", path, strerror(errno));
            return -BEX_EIO;
        }
    }
    return 0;
io_fail:
    set_err(err, err_size, "%s: %s", path, strerror(errno));
    rc = io_code(errno);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}
