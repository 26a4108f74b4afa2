/*
 * runtime.c: the context a contract method or query runs in: budgeted state
 * access through the transaction and block overlays, events, results, the
 * audit subject, and the validation helpers every contract shares.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

static void *alloc_fn(void *data, size_t size)
{
    struct contract_alloc *a = data;
    void *p = malloc(size ? size : 1);
    if (!p)
        a->failed = true;
    return p;
}

static void free_fn(void *data, void *p)
{
    (void)data;
    free(p);
}

void contract__ctx_init(struct contract_ctx *c, const struct exec_store *store, uint64_t budget)
{
    memset(c, 0, sizeof(*c));
    c->store = store;
    c->budget = budget;
    c->alloc.pb.alloc = alloc_fn;
    c->alloc.pb.free = free_fn;
    c->alloc.pb.allocator_data = &c->alloc;
}

void contract__ctx_close(struct contract_ctx *c)
{
    for (size_t i = 0; i < c->event_count; i++)
        free(c->events[i].data);
    c->event_count = 0;
    free(c->result);
    c->result = NULL;
    c->result_len = 0;
}

/*
 * Messages echo identifiers from the arguments, which may be anything:
 * keep receipts and audit details valid text. A sequence cut by truncation
 * is dropped; text that is still not valid UTF-8 loses its non-ASCII bytes.
 */
void contract__sanitize(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
    size_t lead = n;
    while (lead > 0 && n - lead < 4 && ((unsigned char)s[lead - 1] & 0xc0) == 0x80)
        lead--;
    if (lead > 0) {
        unsigned char b = (unsigned char)s[lead - 1];
        size_t want = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
        if (want > 1 && n - (lead - 1) < want)
            s[lead - 1] = '\0';
    }
    if (contract__text_ok(s, n))
        return;
    for (size_t i = 0; s[i]; i++)
        if ((unsigned char)s[i] >= 0x80)
            s[i] = '?';
}

int contract__fail(struct contract_ctx *c, int code, const char *fmt, ...)
{
    BEX_ASSERT(code > 0);
    BEX_ASSERT(code < BEX_E_COUNT);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    contract__sanitize(c->message);
    BEX_ASSERT(contract__text_ok(c->message, sizeof(c->message)));
    return -code;
}

void contract__detail(struct contract_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    contract__sanitize(c->detail);
    BEX_ASSERT(contract__text_ok(c->detail, sizeof(c->detail)));
}

void contract__subject(struct contract_ctx *c, const char *resource, const uint8_t *record_key,
                       size_t record_key_len)
{
    /* Only well-formed values reach the audit keys, which stay printable. */
    if (resource && contract__resource_id_ok(resource, NULL))
        snprintf(c->resource, sizeof(c->resource), "%s", resource);
    if (record_key && record_key_len > 0 && record_key_len <= sizeof(c->record_key)) {
        memcpy(c->record_key, record_key, record_key_len);
        c->record_key_len = record_key_len;
    }
}

int contract__charge(struct contract_ctx *c, uint64_t units)
{
    if (c->budget_out)
        return -BEX_EBUDGET;
    if (units > c->budget - c->used) {
        c->used = c->budget;
        c->budget_out = true;
        return -BEX_EBUDGET;
    }
    c->used += units;
    BEX_ASSERT(c->used <= c->budget);
    return 0;
}

int contract__key(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, CONTRACT_KEY_BYTES_MAX, fmt, ap);
    va_end(ap);
    if (n <= 0 || n >= CONTRACT_KEY_BYTES_MAX)
        return -BEX_ELIMIT;
    return n;
}

static int set_fatal(struct contract_ctx *c, int code)
{
    BEX_ASSERT(code < 0);
    if (c->fatal == 0)
        c->fatal = code;
    return c->fatal;
}

int contract__get(struct contract_ctx *c, const uint8_t **val, size_t *len, const char *key)
{
    size_t key_len = strlen(key);
    BEX_ASSERT(key_len > 0);
    BEX_ASSERT(key_len < CONTRACT_KEY_BYTES_MAX);
    if (c->fatal)
        return c->fatal;
    int rc = contract__charge(c, CONTRACT_COST_READ + key_len);
    if (rc != 0)
        return rc;
    const struct overlay *layers[2] = {c->tx, c->block};
    for (size_t i = 0; i < 2; i++) {
        if (!layers[i])
            continue;
        const struct overlay_entry *en = contract__overlay_get(layers[i], key, key_len);
        if (!en)
            continue;
        if (en->del)
            return -BEX_ENOTFOUND;
        *val = en->val;
        *len = en->val_len;
        return contract__charge(c, en->val_len * CONTRACT_COST_BYTE);
    }
    rc = c->store->get(c->store->user, key, key_len, val, len);
    if (rc == -BEX_ENOTFOUND)
        return rc;
    if (rc != 0)
        return set_fatal(c, rc);
    return contract__charge(c, *len * CONTRACT_COST_BYTE);
}


static int write_key(struct contract_ctx *c, const char *key, const uint8_t *val, size_t len)
{
    size_t key_len = strlen(key);
    size_t scope = strlen(c->contract);
    /* A contract writes only its own scope: anything else is a bug in it. */
    BEX_ASSERT(c->tx != NULL);
    BEX_ASSERT(key_len > scope + 1 && memcmp(key, c->contract, scope) == 0 && key[scope] == '/');
    if (c->fatal)
        return c->fatal;
    if (len > CONTRACT_VALUE_BYTES_MAX)
        return contract__fail(c, BEX_ELIMIT, "value of %zu bytes over the limit", len);
    int rc = contract__charge(c, CONTRACT_COST_WRITE + (key_len + len) * CONTRACT_COST_BYTE);
    if (rc != 0)
        return rc;
    rc = contract__overlay_set(c->tx, key, key_len, val, len);
    if (rc != 0)
        return set_fatal(c, rc);
    return 0;
}

int contract__put(struct contract_ctx *c, const char *key, const uint8_t *val, size_t len)
{
    BEX_ASSERT(val != NULL);
    return write_key(c, key, val, len);
}

int contract__del(struct contract_ctx *c, const char *key)
{
    return write_key(c, key, NULL, 0);
}

int contract__get_msg(struct contract_ctx *c, ProtobufCMessage **out, const char *key,
                      const ProtobufCMessageDescriptor *desc)
{
    const uint8_t *val;
    size_t len;
    *out = NULL;
    int rc = contract__get(c, &val, &len, key);
    if (rc != 0)
        return rc;
    c->alloc.failed = false;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &c->alloc.pb, len, val);
    if (!m)
        return set_fatal(c, c->alloc.failed ? -BEX_ENOMEM : -BEX_ECORRUPT);
    *out = m;
    return 0;
}

int contract__put_msg(struct contract_ctx *c, const char *key, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if (len > CONTRACT_VALUE_BYTES_MAX)
        return contract__fail(c, BEX_ELIMIT, "value of %zu bytes over the limit", len);
    /* The usual small message goes through the stack, not malloc. */
    uint8_t stack[1024];
    uint8_t *buf = len <= sizeof(stack) ? stack : malloc(len);
    if (!buf)
        return set_fatal(c, -BEX_ENOMEM);
    size_t packed = protobuf_c_message_pack(m, buf);
    BEX_ASSERT(packed == len);
    int rc = contract__put(c, key, buf, len);
    if (buf != stack)
        free(buf);
    return rc;
}

void contract__free(struct contract_ctx *c, void *m)
{
    if (m)
        protobuf_c_message_free_unpacked(m, &c->alloc.pb);
}

int contract__corrupt(struct contract_ctx *c)
{
    return set_fatal(c, -BEX_ECORRUPT);
}

int contract__get_u64(struct contract_ctx *c, uint64_t *v, const char *key)
{
    const uint8_t *val;
    size_t len;
    int rc = contract__get(c, &val, &len, key);
    if (rc != 0)
        return rc;
    if (len != 8)
        return contract__corrupt(c);
    *v = contract__get_u64be(val);
    return 0;
}

int contract__put_u64(struct contract_ctx *c, const char *key, uint64_t v)
{
    uint8_t buf[8];
    contract__put_u64be(buf, v);
    return contract__put(c, key, buf, sizeof(buf));
}

int contract__next_id(struct contract_ctx *c, uint64_t *id, const char *key)
{
    uint64_t last = 0;
    int rc = contract__get_u64(c, &last, key);
    if (rc != 0 && rc != -BEX_ENOTFOUND)
        return rc;
    if ((rc = contract__put_u64(c, key, last + 1)) != 0)
        return rc;
    *id = last + 1;
    BEX_ASSERT(*id > 0);
    return 0;
}

/*
 * Iteration through the overlays. The store calls us back in key order;
 * before handing a store key on we hand on every overlay key that sorts
 * before it, and an overlay entry for the same key shadows the store's
 * (a delete hides it). The transaction overlay shadows the block overlay.
 */
struct merge {
    struct contract_ctx *c;
    const char *prefix;
    size_t prefix_len;
    const struct overlay_entry *ti, *bi; /* next entries of the tx and block overlays, or NULL */
    exec_iter_fn fn;
    void *user;
    bool stopped;
    int cb_rc; /* the last error our callback returned to the store */
};

static const struct overlay_entry *entry_at(const struct overlay_entry *en, const struct merge *m)
{
    if (!en)
        return NULL;
    if (en->key_len < m->prefix_len || memcmp(en->key, m->prefix, m->prefix_len) != 0)
        return NULL;
    return en;
}

/* The smallest pending overlay entry, or NULL; *both when both layers hold it. */
static const struct overlay_entry *merge_peek(const struct merge *m, bool *from_tx, bool *both)
{
    const struct overlay_entry *t = entry_at(m->ti, m);
    const struct overlay_entry *b = entry_at(m->bi, m);
    *both = false;
    if (!t) {
        *from_tx = false;
        return b;
    }
    if (!b) {
        *from_tx = true;
        return t;
    }
    int r = contract__keycmp(t->key, t->key_len, b->key, b->key_len);
    *from_tx = r <= 0;
    *both = r == 0;
    return r <= 0 ? t : b;
}

static void merge_advance(struct merge *m, bool from_tx, bool both)
{
    if (from_tx || both)
        m->ti = contract__overlay_next(m->ti);
    if (!from_tx || both)
        m->bi = contract__overlay_next(m->bi);
}

static int emit(struct merge *m, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    int rc = contract__charge(m->c, CONTRACT_COST_ITER + (key_len + val_len) * CONTRACT_COST_BYTE);
    if (rc != 0)
        return rc;
    rc = m->fn(m->user, key, key_len, val, val_len);
    if (rc == 1) {
        m->stopped = true;
        return 0;
    }
    return rc;
}

/* Hands on overlay entries that sort before (key, key_len), or all if key is NULL. */
static int drain(struct merge *m, const char *key, size_t key_len, bool *shadowed)
{
    *shadowed = false;
    while (!m->stopped) {
        bool from_tx, both;
        const struct overlay_entry *en = merge_peek(m, &from_tx, &both);
        if (!en)
            return 0;
        int r = key ? contract__keycmp(en->key, en->key_len, key, key_len) : -1;
        if (r > 0)
            return 0;
        merge_advance(m, from_tx, both);
        if (r == 0)
            *shadowed = true;
        if (!en->del) {
            int rc = emit(m, en->key, en->key_len, en->val, en->val_len);
            if (rc != 0)
                return rc;
        }
        if (r == 0)
            return 0;
    }
    return 0;
}

static int merge_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct merge *m = user;
    bool shadowed;
    int rc = drain(m, key, key_len, &shadowed);
    if (rc == 0 && !m->stopped)
        rc = shadowed ? contract__charge(m->c, CONTRACT_COST_ITER) : emit(m, key, key_len, val, val_len);
    if (rc < 0) {
        m->cb_rc = rc;
        return rc;
    }
    return m->stopped ? 1 : 0;
}

/* The first entry of layer o to hand on: after the cursor, or at the prefix. */
static const struct overlay_entry *layer_start(const struct overlay *o, const char *prefix, size_t prefix_len,
                                               const char *after, size_t after_len)
{
    if (!o)
        return NULL;
    if (after_len == 0)
        return contract__overlay_seek(o, prefix, prefix_len);
    const struct overlay_entry *en = contract__overlay_seek(o, after, after_len);
    if (en && contract__keycmp(en->key, en->key_len, after, after_len) == 0)
        en = contract__overlay_next(en);
    return en;
}

int contract__iter(struct contract_ctx *c, const char *prefix, const char *after, size_t after_len,
                   exec_iter_fn fn, void *user)
{
    BEX_ASSERT(prefix != NULL);
    BEX_ASSERT(fn != NULL);
    if (c->fatal)
        return c->fatal;
    if (!after)
        after_len = 0;
    struct merge m = {.c = c, .prefix = prefix, .prefix_len = strlen(prefix), .fn = fn, .user = user};
    /* A cursor that sorts before the prefix simply starts at the prefix. */
    if (after_len > 0 && contract__keycmp(after, after_len, prefix, m.prefix_len) < 0)
        after_len = 0;
    m.ti = layer_start(c->tx, prefix, m.prefix_len, after, after_len);
    m.bi = layer_start(c->block, prefix, m.prefix_len, after, after_len);
    int rc = contract__charge(c, CONTRACT_COST_READ);
    if (rc != 0)
        return rc;
    rc = c->store->iter(c->store->user, prefix, m.prefix_len, after, after_len, merge_cb, &m);
    if (rc < 0) {
        /* Our callback's codes come back as they are; anything else is storage. */
        if (rc == m.cb_rc)
            return c->fatal ? c->fatal : rc;
        return set_fatal(c, rc);
    }
    if (m.stopped)
        return 0;
    bool shadowed;
    return drain(&m, NULL, 0, &shadowed);
}

int contract__emit(struct contract_ctx *c, const char *kind, const ProtobufCMessage *m)
{
    BEX_ASSERT(strlen(kind) < sizeof(c->events[0].kind));
    BEX_ASSERT(c->event_count < CONTRACT_EVENTS_PER_TX_MAX);
    size_t len = protobuf_c_message_get_packed_size(m);
    int rc = contract__charge(c, CONTRACT_COST_WRITE + len * CONTRACT_COST_BYTE);
    if (rc != 0)
        return rc;
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        return set_fatal(c, -BEX_ENOMEM);
    size_t packed = protobuf_c_message_pack(m, buf);
    BEX_ASSERT(packed == len);
    struct contract_event *ev = &c->events[c->event_count++];
    snprintf(ev->kind, sizeof(ev->kind), "%s", kind);
    ev->data = buf;
    ev->len = len;
    return 0;
}

int contract__result(struct contract_ctx *c, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        return set_fatal(c, -BEX_ENOMEM);
    size_t packed = protobuf_c_message_pack(m, buf);
    BEX_ASSERT(packed == len);
    free(c->result);
    c->result = buf;
    c->result_len = len;
    return 0;
}

/* ------------------------------------------------------------- validation */

static bool is_lower_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

bool contract__agency_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONTRACT_ID_BYTES_MAX)
        return false;
    if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!is_lower_alnum(ch) && ch != '.' && ch != '-' && ch != '_')
            return false;
    }
    return true;
}

bool contract__resource_id_ok(const char *s, size_t *owner_len)
{
    const char *slash = strchr(s, '/');
    if (!slash)
        return false;
    size_t n = (size_t)(slash - s);
    char owner[CONTRACT_ID_BYTES_MAX + 1];
    if (n == 0 || n > CONTRACT_ID_BYTES_MAX)
        return false;
    memcpy(owner, s, n);
    owner[n] = '\0';
    /* The name follows the same rules as an agency id (no further '/'). */
    if (!contract__agency_id_ok(owner) || !contract__agency_id_ok(slash + 1))
        return false;
    if (owner_len)
        *owner_len = n;
    return true;
}

bool contract__name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONTRACT_ID_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!is_lower_alnum(ch) && ch != '.' && ch != '-' && ch != '_' && ch != '*')
            return false;
    }
    return true;
}

bool contract__text_ok(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        size_t extra;
        uint32_t cp;
        if (ch < 0x20 || ch == 0x7f)
            return false;
        if (ch < 0x80) {
            i++;
            continue;
        }
        if ((ch & 0xe0) == 0xc0) {
            extra = 1;
            cp = ch & 0x1f;
        } else if ((ch & 0xf0) == 0xe0) {
            extra = 2;
            cp = ch & 0x0f;
        } else if ((ch & 0xf8) == 0xf0) {
            extra = 3;
            cp = ch & 0x07;
        } else {
            return false;
        }
        if (i + extra >= n)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are refused. */
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000))
            return false;
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += extra + 1;
    }
    return true;
}

bool contract__pubkey_ok(const uint8_t *k, size_t len)
{
    return len == CONTRACT_PUBKEY_BYTES && (k[0] == 0x02 || k[0] == 0x03);
}

void contract__hex(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

void contract_key_id(char out[17], const uint8_t pubkey[CONTRACT_PUBKEY_BYTES])
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256(pubkey, CONTRACT_PUBKEY_BYTES, h);
    contract__hex(out, h, 8);
}

static bool has_unknown(const ProtobufCMessage *m, int depth)
{
    /* Decoding already bounded the nesting; this only guards the recursion. */
    if (depth > 64 || m->n_unknown_fields > 0)
        return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *member = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            const ProtobufCMessage *const *arr = *(const ProtobufCMessage *const *const *)member;
            for (size_t k = 0; k < n; k++)
                if (has_unknown(arr[k], depth + 1))
                    return true;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)member;
        if (sub && has_unknown(sub, depth + 1))
            return true;
    }
    return false;
}

bool contract__has_unknown(const ProtobufCMessage *m)
{
    return has_unknown(m, 0);
}

/* ------------------------------------------------------------ shared reads */

int contract__load_agency(struct contract_ctx *c, Bex__Agency **out, const char *id)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    *out = NULL;
    if (!contract__agency_id_ok(id))
        return -BEX_ENOTFOUND;
    if (contract__key(key, "agency/a/%s", id) < 0)
        return -BEX_ENOTFOUND;
    return contract__get_msg(c, (ProtobufCMessage **)out, key, &bex__agency__descriptor);
}

int contract__load_resource(struct contract_ctx *c, Bex__Resource **out, const char *id)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    *out = NULL;
    if (!contract__resource_id_ok(id, NULL))
        return -BEX_ENOTFOUND;
    if (contract__key(key, "catalog/r/%s", id) < 0)
        return -BEX_ENOTFOUND;
    return contract__get_msg(c, (ProtobufCMessage **)out, key, &bex__resource__descriptor);
}

int contract__load_grant(struct contract_ctx *c, Bex__Grant **out, uint64_t id)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    *out = NULL;
    if (contract__key(key, "grant/g/%016llx", (unsigned long long)id) < 0)
        return -BEX_ENOTFOUND;
    return contract__get_msg(c, (ProtobufCMessage **)out, key, &bex__grant__descriptor);
}

int contract__load_record(struct contract_ctx *c, Bex__Record **out, const char *resource, const uint8_t *key,
                          size_t key_len)
{
    char k[CONTRACT_KEY_BYTES_MAX];
    char hex[2 * CONTRACT_RECORD_KEY_BYTES_MAX + 1];
    *out = NULL;
    if (key_len == 0 || key_len > CONTRACT_RECORD_KEY_BYTES_MAX || !contract__resource_id_ok(resource, NULL))
        return -BEX_ENOTFOUND;
    contract__hex(hex, key, key_len);
    if (contract__key(k, "record/d/%s/%s", resource, hex) < 0)
        return -BEX_ENOTFOUND;
    return contract__get_msg(c, (ProtobufCMessage **)out, k, &bex__record__descriptor);
}

Bex__GrantStatus contract__grant_status(const Bex__Grant *g, uint64_t now_ms)
{
    bool live = g->status == BEX__GRANT_STATUS__GRANT_PENDING || g->status == BEX__GRANT_STATUS__GRANT_ACTIVE;
    if (live && now_ms >= g->expiry_ms)
        return BEX__GRANT_STATUS__GRANT_EXPIRED;
    return g->status;
}

int contract__grant_usable(struct contract_ctx *c, const Bex__Grant *g)
{
    switch (contract__grant_status(g, c->time_ms)) {
    case BEX__GRANT_STATUS__GRANT_ACTIVE:
        return 0;
    case BEX__GRANT_STATUS__GRANT_EXPIRED:
        return contract__fail(c, BEX_EEXPIRED, "grant %llu expired", (unsigned long long)g->id);
    case BEX__GRANT_STATUS__GRANT_REVOKED:
        return contract__fail(c, BEX_EREFUSED, "grant %llu was revoked", (unsigned long long)g->id);
    case BEX__GRANT_STATUS__GRANT_PENDING:
        return contract__fail(c, BEX_EREFUSED, "grant %llu is not approved yet", (unsigned long long)g->id);
    default:
        return contract__fail(c, BEX_EREFUSED, "grant %llu was rejected", (unsigned long long)g->id);
    }
}

const Bex__FieldDef *contract__field(const Bex__Resource *r, const char *name)
{
    for (size_t i = 0; i < r->n_fields; i++)
        if (strcmp(r->fields[i]->name, name) == 0)
            return r->fields[i];
    return NULL;
}

bool contract__is_owner(const struct contract_ctx *c, const char *owner)
{
    return strcmp(c->sender, owner) == 0;
}

void contract__page_init(struct contract_page *p, struct contract_ctx *c, uint32_t limit)
{
    memset(p, 0, sizeof(*p));
    p->c = c;
    p->limit = limit == 0 ? CONTRACT_PAGE_DEFAULT : limit > CONTRACT_PAGE_MAX ? CONTRACT_PAGE_MAX : limit;
}

int contract__page_step(struct contract_page *p, const char *key, size_t key_len)
{
    BEX_ASSERT(key_len < CONTRACT_KEY_BYTES_MAX);
    BEX_ASSERT(p->count <= p->limit);
    if (p->count == p->limit || p->scanned >= CONTRACT_SCAN_MAX || p->c->used > p->c->budget / 2) {
        p->more = true;
        return 1;
    }
    p->scanned++;
    memcpy(p->last, key, key_len);
    p->last_len = key_len;
    return 0;
}

ProtobufCMessage *contract__decode(struct contract_ctx *c, const ProtobufCMessageDescriptor *desc,
                                   const uint8_t *val, size_t len)
{
    c->alloc.failed = false;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &c->alloc.pb, len, val);
    if (!m)
        set_fatal(c, c->alloc.failed ? -BEX_ENOMEM : -BEX_ECORRUPT);
    return m;
}

uint64_t contract__key_id(const char *key, size_t key_len)
{
    uint64_t v = 0;
    if (key_len < 16)
        return 0;
    for (size_t i = key_len - 16; i < key_len; i++) {
        char ch = key[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    return v;
}

/* ------------------------------------------------------------------ paging */

int contract__cursor(struct contract_ctx *c, const char *prefix, const ProtobufCBinaryData *cursor)
{
    size_t n = strlen(prefix);
    if (cursor->len == 0)
        return 0;
    if (cursor->len >= CONTRACT_KEY_BYTES_MAX || cursor->len < n || memcmp(cursor->data, prefix, n) != 0)
        return contract__fail(c, BEX_EINVAL, "cursor does not belong to this query");
    for (size_t i = 0; i < cursor->len; i++)
        if (cursor->data[i] < 0x20 || cursor->data[i] > 0x7e)
            return contract__fail(c, BEX_EINVAL, "cursor is not a state key");
    return 0;
}

int contract__next_cursor(struct contract_ctx *c, ProtobufCBinaryData *out, const struct contract_page *p)
{
    out->len = 0;
    out->data = NULL;
    if (!p->more)
        return 0;
    BEX_ASSERT(p->last_len > 0);
    out->data = c->alloc.pb.alloc(&c->alloc, p->last_len);
    if (!out->data)
        return set_fatal(c, -BEX_ENOMEM);
    memcpy(out->data, p->last, p->last_len);
    out->len = p->last_len;
    return 0;
}

int contract__push(struct contract_ctx *c, void ***items, size_t *count, void *item)
{
    /* Pages are small: growing one slot at a time keeps it simple. */
    void **v = realloc(*items, (*count + 1) * sizeof(*v));
    if (!v)
        return set_fatal(c, -BEX_ENOMEM);
    v[(*count)++] = item;
    *items = v;
    return 0;
}

struct list_scan {
    struct contract_page p;
    const struct contract_list *l;
    const ProtobufCMessageDescriptor *item;
    void ***items;
    size_t *count;
};

static int list_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct list_scan *s = user;
    struct contract_ctx *c = s->p.c;
    ProtobufCMessage *m = NULL;
    int rc;

    if (contract__page_step(&s->p, key, key_len))
        return 1;
    if (s->l->primary != NULL) {
        char item_key[CONTRACT_KEY_BYTES_MAX];

        rc = contract__key(item_key, "%s%016llx", s->l->primary, (unsigned long long)contract__key_id(key, key_len));
        BEX_ASSERT(rc > 0);
        rc = contract__get_msg(c, &m, item_key, s->item);
        if (rc != 0)
            return rc == -BEX_ENOTFOUND ? 0 : rc;
    } else {
        m = contract__decode(c, s->item, val, val_len);
        if (!m)
            return c->fatal;
    }
    if (s->l->keep != NULL && !s->l->keep(c, m, s->l->filter)) {
        contract__free(c, m);
        return 0;
    }
    rc = contract__push(c, s->items, s->count, m);
    if (rc != 0) {
        contract__free(c, m);
        return rc;
    }
    s->p.count++;
    return 0;
}

/* The one repeated message field of a list result. */
static const ProtobufCFieldDescriptor *list_items_field(const ProtobufCMessageDescriptor *list)
{
    const ProtobufCFieldDescriptor *found = NULL;

    for (unsigned i = 0; i < list->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &list->fields[i];

        if (f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            BEX_ASSERT(found == NULL);
            found = f;
        }
    }
    return found;
}

int contract__list(struct contract_ctx *c, ProtobufCMessage **result, const struct contract_list *l)
{
    const ProtobufCFieldDescriptor *items = list_items_field(l->list);
    const ProtobufCFieldDescriptor *next = protobuf_c_message_descriptor_get_field_by_name(l->list, "next_cursor");
    BEX_ASSERT(items != NULL);
    BEX_ASSERT(next != NULL && next->type == PROTOBUF_C_TYPE_BYTES && next->label == PROTOBUF_C_LABEL_NONE);
    int rc = contract__cursor(c, l->prefix, l->cursor);
    if (rc != 0)
        return rc;
    ProtobufCMessage *out = malloc(l->list->sizeof_message);
    if (!out)
        return -BEX_ENOMEM;
    protobuf_c_message_init(l->list, out);
    /* The generated struct holds the item count and array, and the cursor, at these offsets. */
    struct list_scan s = {
        .l = l,
        .item = items->descriptor,
        .items = (void ***)((char *)out + items->offset),
        .count = (size_t *)((char *)out + items->quantifier_offset),
    };
    contract__page_init(&s.p, c, l->limit);
    rc = contract__iter(c, l->prefix, (const char *)l->cursor->data, l->cursor->len, list_cb, &s);
    if (rc == 0)
        rc = contract__next_cursor(c, (ProtobufCBinaryData *)((char *)out + next->offset), &s.p);
    if (rc != 0) {
        contract_result_free(out);
        return rc;
    }
    *result = out;
    return 0;
}

/* Keeps the items whose enum field status is the one asked for (0: any). */
static bool keep_request_status(const struct contract_ctx *c, ProtobufCMessage *item, const void *filter)
{
    const Bex__AccessListArgs *a = filter;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(item->descriptor, "status");
    (void)c;
    BEX_ASSERT(f != NULL);
    BEX_ASSERT(f->type == PROTOBUF_C_TYPE_ENUM && f->label == PROTOBUF_C_LABEL_NONE);
    /* protobuf-c stores every enum field as an int-sized C enum. */
    return a->status == 0 || (uint32_t)*(const int *)((const char *)item + f->offset) == a->status;
}

int contract__list_requests(struct contract_ctx *c, ProtobufCMessage **result, const Bex__AccessListArgs *a,
                            const char *kind, char all, const ProtobufCMessageDescriptor *list)
{
    char prefix[CONTRACT_KEY_BYTES_MAX], primary[CONTRACT_KEY_BYTES_MAX];
    int rc;
    if (a->owner[0] && a->consumer[0])
        return contract__fail(c, BEX_EINVAL, "filter by owner or consumer, not both");
    const char *who = a->owner[0] ? a->owner : a->consumer;
    if (who[0] && !contract__agency_id_ok(who))
        return contract__fail(c, BEX_EINVAL, "not an agency id");
    rc = contract__key(primary, "%s/%c/", kind, all);
    BEX_ASSERT(rc > 0);
    if (who[0])
        rc = contract__key(prefix, "%s/%c/%s/", kind, a->owner[0] ? 'o' : 'c', who);
    else
        rc = contract__key(prefix, "%s", primary);
    BEX_ASSERT(rc > 0);
    const struct contract_list l = {
        .list = list,
        .prefix = prefix,
        .cursor = &a->cursor,
        .limit = a->limit,
        .primary = who[0] ? primary : NULL,
        .keep = keep_request_status,
        .filter = a,
    };
    return contract__list(c, result, &l);
}
