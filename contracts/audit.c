/*
 * audit.c: the audit trail. The executor writes one entry per transaction
 * of a known sender, failed ones included (see exec.c); this contract only
 * answers queries, newest first, through the indexes by resource, by record
 * key and by acting agency.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct audit_scan {
    struct contract_page p;
    bool by_index;
    const Bex__AuditQueryArgs *a;
    Bex__AuditList *out;
};

/*
 * The main key of an index key: "audit/e/" and its last 25 characters. A
 * scanned key is not NUL-terminated (a store hands out its own bytes), so
 * the tail is copied by length.
 */
static int main_key(char *out, const char *key, size_t key_len)
{
    const size_t tail = 16 + 1 + 8;
    if (key_len < tail)
        return -BEX_ECORRUPT;
    return contract__key(out, "audit/e/%.*s", (int)tail, key + key_len - tail);
}

static int list_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct audit_scan *s = user;
    struct contract_ctx *c = s->p.c;
    if (contract__page_step(&s->p, key, key_len))
        return 1;
    Bex__AuditEntry *e = NULL;
    if (s->by_index) {
        char k[CONTRACT_KEY_BYTES_MAX];
        int rc = main_key(k, key, key_len);
        if (rc < 0)
            return 0;
        rc = contract__get_msg(c, (ProtobufCMessage **)&e, k, &bex__audit_entry__descriptor);
        if (rc != 0)
            return rc == -BEX_ENOTFOUND ? 0 : rc;
    } else {
        e = (Bex__AuditEntry *)contract__decode(c, &bex__audit_entry__descriptor, val, val_len);
        if (!e)
            return c->fatal;
    }
    const Bex__AuditQueryArgs *a = s->a;
    /* Newest first: past the lower time bound nothing older can match. */
    if (a->since_ms && e->time_ms < a->since_ms) {
        contract__free(c, e);
        s->p.more = false;
        return 1;
    }
    bool keep = (!a->until_ms || e->time_ms <= a->until_ms) && (!a->agency[0] || strcmp(e->actor, a->agency) == 0);
    if (!keep) {
        contract__free(c, e);
        return 0;
    }
    int rc = contract__push(c, (void ***)&s->out->entries, &s->out->n_entries, e);
    if (rc != 0) {
        contract__free(c, e);
        return rc;
    }
    s->p.count++;
    return 0;
}

static int audit_query(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__AuditQueryArgs *a = (const Bex__AuditQueryArgs *)args;
    char prefix[CONTRACT_KEY_BYTES_MAX];
    int rc;
    if (a->resource[0] && !contract__resource_id_ok(a->resource, NULL))
        return contract__fail(c, BEX_EINVAL, "resource is not a resource id");
    if (a->agency[0] && !contract__agency_id_ok(a->agency))
        return contract__fail(c, BEX_EINVAL, "agency is not an agency id");
    if (a->record_key.len > 0 && (!a->resource[0] || a->record_key.len > CONTRACT_RECORD_KEY_BYTES_MAX))
        return contract__fail(c, BEX_EINVAL, "a record key filter needs its resource");
    if (a->record_key.len > 0) {
        char hex[2 * CONTRACT_RECORD_KEY_BYTES_MAX + 1];
        contract__hex(hex, a->record_key.data, a->record_key.len);
        rc = contract__key(prefix, "audit/k/%s/%s/", a->resource, hex);
    } else if (a->resource[0]) {
        rc = contract__key(prefix, "audit/r/%s/", a->resource);
    } else if (a->agency[0]) {
        rc = contract__key(prefix, "audit/a/%s/", a->agency);
    } else {
        rc = contract__key(prefix, "audit/e/");
    }
    BEX_ASSERT(rc > 0);
    if ((rc = contract__cursor(c, prefix, &a->cursor)) != 0)
        return rc;
    Bex__AuditList *out = malloc(sizeof(*out));
    if (!out)
        return -BEX_ENOMEM;
    bex__audit_list__init(out);
    struct audit_scan s = {.by_index = strcmp(prefix, "audit/e/") != 0, .a = a, .out = out};
    contract__page_init(&s.p, c, a->limit);
    rc = contract__iter(c, prefix, (const char *)a->cursor.data, a->cursor.len, list_cb, &s);
    if (rc == 0)
        rc = contract__next_cursor(c, &out->next_cursor, &s.p);
    if (rc != 0) {
        contract_result_free(&out->base);
        return rc;
    }
    *result = &out->base;
    return 0;
}

static const struct contract_query queries[] = {
    {"query", &bex__audit_query_args__descriptor, &bex__audit_list__descriptor, audit_query},
};

const struct contract_def contract__audit = {
    .name = "audit",
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
