/*
 * json.c: protobuf-c messages to and from JSON text, by walking message
 * descriptors, for the RPC and the CLI. Pure: no I/O.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define JSON_DEPTH_MAX 32
#define JSON_TEXT_BYTES_MAX (1u << 20)
#define JSON_SAFE_INT (1ll << 53) /* integers JavaScript holds exactly */

static size_t elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

/* ------------------------------------------------------------------ render */

static json_t *render_msg(const ProtobufCMessage *m, int depth);

static json_t *render_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    /* Not UTF-8: render what is printable ASCII and mark the rest. */
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    copy[n] = '\0';
    j = json_string(copy);
    free(copy);
    return j;
}

static json_t *render_u64(uint64_t v)
{
    if (v < (uint64_t)JSON_SAFE_INT)
        return json_integer((json_int_t)v);
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    return json_string(buf);
}

static json_t *render_i64(int64_t v)
{
    if (v < JSON_SAFE_INT && v > -JSON_SAFE_INT)
        return json_integer((json_int_t)v);
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return json_string(buf);
}

static json_t *render_value(const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return render_i64(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return render_u64(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        return render_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *hex = malloc(2 * b->len + 1);
        if (!hex)
            return NULL;
        contract__hex(hex, b->data, b->len);
        json_t *j = json_string(hex);
        free(hex);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
        return sub ? render_msg(sub, depth + 1) : json_null();
    }
    default:
        /* bex.proto has no floating point fields. */
        return json_null();
    }
}

static json_t *render_msg(const ProtobufCMessage *m, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        return NULL;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = base + f->offset;
        json_t *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)member;
            v = json_array();
            for (size_t k = 0; v && k < n; k++) {
                json_t *e = render_value(f, arr + k * elt_size(f->type), depth);
                if (!e || json_array_append_new(v, e) != 0) {
                    json_decref(v);
                    v = NULL;
                }
            }
        } else {
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                    continue;
            } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
                       f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
                if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                    continue;
            }
            v = render_value(f, member, depth);
        }
        if (!v || json_object_set_new(obj, f->name, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

int contract_json_render(char **out, const ProtobufCMessage *m)
{
    *out = NULL;
    json_t *j = render_msg(m, 0);
    if (!j)
        return -BEX_ENOMEM;
    *out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return *out ? 0 : -BEX_ENOMEM;
}

/* ------------------------------------------------------------------- parse */

struct parse {
    char *err;
    size_t err_len;
    bool nomem;
};

static int perr(struct parse *ps, const char *fmt, ...) BEX_PRINTF(2, 3);
static int perr(struct parse *ps, const char *fmt, ...)
{
    if (ps->err && ps->err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err, ps->err_len, fmt, ap);
        va_end(ap);
    }
    return -BEX_EDECODE;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* An integer given as a JSON number or a decimal string. */
static int parse_int(struct parse *ps, const char *name, const json_t *j, bool is_signed, int64_t *sv, uint64_t *uv)
{
    if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);
        if (!is_signed && v < 0)
            return perr(ps, "%s: negative value", name);
        *sv = v;
        *uv = (uint64_t)v;
        return 0;
    }
    if (!json_is_string(j))
        return perr(ps, "%s: expected an integer", name);
    const char *s = json_string_value(j);
    char *end = NULL;
    errno = 0;
    if (s[0] == '\0' || (!is_signed && s[0] == '-'))
        return perr(ps, "%s: expected an integer", name);
    if (is_signed)
        *sv = strtoll(s, &end, 10);
    else
        *uv = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return perr(ps, "%s: expected an integer", name);
    if (is_signed)
        *uv = (uint64_t)*sv;
    else
        *sv = (int64_t)*uv;
    return 0;
}

static int parse_msg(struct parse *ps, ProtobufCMessage **out, const ProtobufCMessageDescriptor *d, const json_t *j,
                     int depth);

static int parse_value(struct parse *ps, const ProtobufCFieldDescriptor *f, void *p, const json_t *j, int depth)
{
    int64_t sv = 0;
    uint64_t uv = 0;
    int rc;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((rc = parse_int(ps, f->name, j, true, &sv, &uv)) != 0)
            return rc;
        if (sv < INT32_MIN || sv > INT32_MAX)
            return perr(ps, "%s: out of range", f->name);
        *(int32_t *)p = (int32_t)sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((rc = parse_int(ps, f->name, j, false, &sv, &uv)) != 0)
            return rc;
        if (uv > UINT32_MAX)
            return perr(ps, "%s: out of range", f->name);
        *(uint32_t *)p = (uint32_t)uv;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if ((rc = parse_int(ps, f->name, j, true, &sv, &uv)) != 0)
            return rc;
        *(int64_t *)p = sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if ((rc = parse_int(ps, f->name, j, false, &sv, &uv)) != 0)
            return rc;
        *(uint64_t *)p = uv;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            return perr(ps, "%s: expected true or false", f->name);
        *(protobuf_c_boolean *)p = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev = NULL;
        if (json_is_string(j))
            ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, json_string_value(j));
        else if (json_is_integer(j) && json_integer_value(j) >= INT32_MIN && json_integer_value(j) <= INT32_MAX)
            ev = protobuf_c_enum_descriptor_get_value(f->descriptor, (int)json_integer_value(j));
        if (!ev)
            return perr(ps, "%s: not a value of %s", f->name, ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
        *(int *)p = ev->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(j) || strlen(json_string_value(j)) != json_string_length(j))
            return perr(ps, "%s: expected a string without NUL", f->name);
        char *s = strdup(json_string_value(j));
        if (!s) {
            ps->nomem = true;
            return -BEX_ENOMEM;
        }
        *(char **)p = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const char *s = json_is_string(j) ? json_string_value(j) : NULL;
        size_t n = s ? strlen(s) : 1;
        if (!s || n % 2 != 0)
            return perr(ps, "%s: expected an even-length hex string", f->name);
        ProtobufCBinaryData *b = p;
        uint8_t *data = malloc(n / 2 + 1);
        if (!data) {
            ps->nomem = true;
            return -BEX_ENOMEM;
        }
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                free(data);
                return perr(ps, "%s: expected hex digits", f->name);
            }
            data[i] = (uint8_t)(hi << 4 | lo);
        }
        b->data = data;
        b->len = n / 2;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return parse_msg(ps, (ProtobufCMessage **)p, f->descriptor, j, depth + 1);
    default:
        return perr(ps, "%s: unsupported field type", f->name);
    }
}

static int parse_field(struct parse *ps, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *j,
                       int depth)
{
    char *base = (char *)m;
    void *member = base + f->offset;
    if (json_is_null(j))
        return 0;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!json_is_array(j))
            return perr(ps, "%s: expected an array", f->name);
        size_t *count = (size_t *)(base + f->quantifier_offset);
        size_t n = json_array_size(j);
        if (*count != 0)
            return perr(ps, "%s: given twice", f->name);
        if (n == 0)
            return 0;
        char *arr = calloc(n, elt_size(f->type));
        if (!arr) {
            ps->nomem = true;
            return -BEX_ENOMEM;
        }
        *(char **)member = arr;
        /* The count grows with each parsed element, so a failure frees only those. */
        for (size_t k = 0; k < n; k++) {
            void *slot = arr + k * elt_size(f->type);
            int rc = parse_value(ps, f, slot, json_array_get(j, k), depth);
            if (rc != 0) {
                /* A half-built element message is not counted yet: free it here. */
                if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                    contract_result_free(*(ProtobufCMessage **)slot);
                return rc;
            }
            *count = k + 1;
        }
        return 0;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
        if (*which != 0)
            return perr(ps, "%s: another member of its oneof is set", f->name);
        int rc = parse_value(ps, f, member, j, depth);
        if (rc == 0)
            *which = f->id;
        return rc;
    }
    int rc = parse_value(ps, f, member, j, depth);
    if (rc == 0 && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
        f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    return rc;
}

static int parse_msg(struct parse *ps, ProtobufCMessage **out, const ProtobufCMessageDescriptor *d, const json_t *j,
                     int depth)
{
    *out = NULL;
    if (depth > JSON_DEPTH_MAX)
        return perr(ps, "nesting deeper than %d", JSON_DEPTH_MAX);
    if (!json_is_object(j))
        return perr(ps, "%s: expected an object", d->name);
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m) {
        ps->nomem = true;
        return -BEX_ENOMEM;
    }
    d->message_init(m);
    *out = m;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
        if (!f)
            return perr(ps, "%s has no field %.64s", d->name, key);
        int rc = parse_field(ps, m, f, v, depth);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int contract_json_parse(ProtobufCMessage **out, char *err, size_t err_len, const ProtobufCMessageDescriptor *desc,
                        const char *json, size_t json_len)
{
    struct parse ps = {.err = err, .err_len = err_len};
    *out = NULL;
    if (json_len > JSON_TEXT_BYTES_MAX)
        return -BEX_ELIMIT;
    json_error_t je;
    json_t *root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return perr(&ps, "JSON: %s at %d:%d", je.text, je.line, je.column);
    ProtobufCMessage *m = NULL;
    int rc = parse_msg(&ps, &m, desc, root, 0);
    json_decref(root);
    if (rc != 0) {
        contract_result_free(m);
        return ps.nomem ? -BEX_ENOMEM : rc;
    }
    *out = m;
    return 0;
}

int contract_query_json(char **out, char *err, size_t err_len, const struct exec_store *store, const char *contract,
                        const char *query, const char *args_json)
{
    const ProtobufCMessageDescriptor *ad, *rd;
    ProtobufCMessage *args = NULL, *res = NULL;
    uint8_t *buf = NULL;
    *out = NULL;
    int rc = contract_describe(&ad, &rd, contract, "query", query);
    if (rc != 0) {
        if (err && err_len)
            snprintf(err, err_len, "unknown query %.40s.%.40s", contract, query);
        return rc;
    }
    const char *text = args_json && args_json[0] ? args_json : "{}";
    if ((rc = contract_json_parse(&args, err, err_len, ad, text, strlen(text))) != 0)
        goto fail;
    size_t len = protobuf_c_message_get_packed_size(args);
    if (!(buf = malloc(len + 1))) {
        rc = -BEX_ENOMEM;
        goto fail;
    }
    protobuf_c_message_pack(args, buf);
    if ((rc = contract_query(&res, err, err_len, store, contract, query, buf, len)) != 0)
        goto fail;
    rc = contract_json_render(out, res);
fail:
    contract_result_free(res);
    contract_result_free(args);
    free(buf);
    return rc;
}
