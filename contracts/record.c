/*
 * record.c: records the owner publishes. Field values travel sealed
 * (AES-256-GCM under a per-field data key, the key ECIES-wrapped to the
 * owner's own encryption key), so that only the owner's node can release
 * them later. Plaintext is accepted only for non-sensitive fields of
 * UNCONDITIONAL resources; for the others the record key too must be a
 * 32-byte keyed hash, whose index key the owner shares with approved
 * consumers through share_index.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define RECORD_ARGS_BYTES_MAX (512 * 1024)

static bool wrapped_ok(const ProtobufCBinaryData *k)
{
    return k->len >= CONTRACT_WRAPPED_KEY_BYTES_MIN && k->len <= CONTRACT_WRAPPED_KEY_BYTES_MAX;
}

static int check_values(struct contract_ctx *c, const Bex__Resource *r, const Bex__RecordPublishArgs *a)
{
    bool open = r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    if (a->n_fields == 0 || a->n_fields > CONTRACT_FIELDS_MAX)
        return contract__fail(c, BEX_EINVAL, "a record has 1 to %d fields", CONTRACT_FIELDS_MAX);
    for (size_t i = 0; i < a->n_fields; i++) {
        const Bex__RecordField *f = a->fields[i];
        const Bex__FieldDef *def = contract__field(r, f->name);
        if (!def)
            return contract__fail(c, BEX_EINVAL, "%s has no field %.64s", r->id, f->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->fields[j]->name, f->name) == 0)
                return contract__fail(c, BEX_EINVAL, "field %s is given twice", f->name);
        if (f->value_case == BEX__RECORD_FIELD__VALUE_PLAINTEXT) {
            /* The chain never holds plaintext of a resource that is not open. */
            if (!open)
                return contract__fail(c, BEX_EREFUSED, "plaintext %s refused: %s is not UNCONDITIONAL", f->name,
                                      r->id);
            if (def->sensitive)
                return contract__fail(c, BEX_EREFUSED, "plaintext %s refused: the field is sensitive", f->name);
            if (!contract__text_ok(f->plaintext, CONTRACT_TEXT_BYTES_MAX))
                return contract__fail(c, BEX_EINVAL, "plaintext %s is malformed", f->name);
        } else if (f->value_case == BEX__RECORD_FIELD__VALUE_SEALED) {
            const Bex__Sealed *s = f->sealed;
            if (s->ciphertext.len < CONTRACT_CIPHERTEXT_BYTES_MIN || s->ciphertext.len > CONTRACT_CIPHERTEXT_BYTES_MAX)
                return contract__fail(c, BEX_EINVAL, "ciphertext of %s has %zu bytes", f->name, s->ciphertext.len);
            if (!wrapped_ok(&s->wrapped_key))
                return contract__fail(c, BEX_EINVAL, "wrapped key of %s has %zu bytes", f->name,
                                      s->wrapped_key.len);
        } else {
            return contract__fail(c, BEX_EINVAL, "field %s has no value", f->name);
        }
    }
    return 0;
}

static int record_publish(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__RecordPublishArgs *a = (const Bex__RecordPublishArgs *)args;
    Bex__Resource *r = NULL;
    Bex__Record *old = NULL;
    contract__subject(c, a->resource, a->key.data, a->key.len);
    int rc = contract__load_resource(c, &r, a->resource);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "resource %.129s not found", a->resource);
    if (rc != 0)
        return rc;
    bool open = r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    if (!contract__is_owner(c, r->owner)) {
        rc = contract__fail(c, BEX_EPERM, "only the owner %s publishes to %s", r->owner, r->id);
    } else if (r->status != BEX__RESOURCE_STATUS__RESOURCE_ACTIVE) {
        rc = contract__fail(c, BEX_ESTATE, "resource %s is withdrawn", r->id);
    } else if (!open && a->key.len != CONTRACT_RECORD_KEY_BYTES) {
        rc = contract__fail(c, BEX_EINVAL, "record keys of %s must be 32-byte keyed hashes", r->id);
    } else if (a->key.len == 0 || a->key.len > CONTRACT_RECORD_KEY_BYTES_MAX) {
        rc = contract__fail(c, BEX_EINVAL, "a record key has 1 to %d bytes", CONTRACT_RECORD_KEY_BYTES_MAX);
    } else if (a->version == 0) {
        rc = contract__fail(c, BEX_EINVAL, "versions start at 1");
    } else {
        rc = check_values(c, r, a);
    }
    if (rc != 0)
        goto done;
    rc = contract__load_record(c, &old, r->id, a->key.data, a->key.len);
    if (rc != 0 && rc != -BEX_ENOTFOUND)
        goto done;
    if (rc == 0 && a->version <= old->version) {
        rc = contract__fail(c, BEX_ESTATE, "version %llu is not above %llu", (unsigned long long)a->version,
                            (unsigned long long)old->version);
        goto done;
    }

    char key[CONTRACT_KEY_BYTES_MAX];
    char hex[2 * CONTRACT_RECORD_KEY_BYTES_MAX + 1];
    contract__hex(hex, a->key.data, a->key.len);
    if ((rc = contract__key(key, "record/d/%s/%s", r->id, hex)) < 0)
        goto done;
    /* No plaintext and no readable key reach a resource that is not open. */
    for (size_t i = 0; i < a->n_fields; i++)
        BEX_ASSERT(open || a->fields[i]->value_case == BEX__RECORD_FIELD__VALUE_SEALED);
    BEX_ASSERT(open || a->key.len == CONTRACT_RECORD_KEY_BYTES);
    Bex__Record rec = BEX__RECORD__INIT;
    rec.resource = r->id;
    rec.key = a->key;
    rec.version = a->version;
    rec.n_fields = a->n_fields;
    rec.fields = a->fields;
    rec.owner = r->owner;
    rec.published_ms = c->time_ms;
    rec.published_height = c->height;
    rec.tx_id.data = (uint8_t *)c->tx_id;
    rec.tx_id.len = CONTRACT_HASH_BYTES;
    if ((rc = contract__put_msg(c, key, &rec.base)) != 0)
        goto done;
    Bex__RecordResult res = BEX__RECORD_RESULT__INIT;
    res.resource = r->id;
    res.key = a->key;
    res.version = a->version;
    contract__detail(c, "published v%llu", (unsigned long long)a->version);
    if ((rc = contract__emit(c, "published", &res.base)) == 0)
        rc = contract__result(c, &res.base);
done:
    contract__free(c, old);
    contract__free(c, r);
    return rc;
}

static int record_share_index(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__RecordShareIndexArgs *a = (const Bex__RecordShareIndexArgs *)args;
    Bex__Grant *g = NULL;
    c->grant_id = a->grant_id;
    int rc = contract__load_grant(c, &g, a->grant_id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "grant %llu not found", (unsigned long long)a->grant_id);
    if (rc != 0)
        return rc;
    contract__subject(c, g->resource, NULL, 0);
    if (!contract__is_owner(c, g->owner))
        rc = contract__fail(c, BEX_EPERM, "only the owner %s shares the index key of %s", g->owner, g->resource);
    else if (!wrapped_ok(&a->wrapped_index_key))
        rc = contract__fail(c, BEX_EINVAL, "wrapped index key has %zu bytes", a->wrapped_index_key.len);
    else
        rc = contract__grant_usable(c, g);
    if (rc != 0)
        goto done;
    char key[CONTRACT_KEY_BYTES_MAX];
    if ((rc = contract__key(key, "record/x/%s/%s", g->resource, g->consumer)) < 0)
        goto done;
    Bex__IndexKeyShare share = BEX__INDEX_KEY_SHARE__INIT;
    share.resource = g->resource;
    share.consumer = g->consumer;
    share.grant_id = g->id;
    share.wrapped_index_key = a->wrapped_index_key;
    share.shared_ms = c->time_ms;
    contract__detail(c, "index key shared with %s", g->consumer);
    if ((rc = contract__put_msg(c, key, &share.base)) == 0 && (rc = contract__emit(c, "index_shared", &share.base)) == 0)
        rc = contract__result(c, &share.base);
done:
    contract__free(c, g);
    return rc;
}

/* ---------------------------------------------------------------- queries */

struct record_scan {
    struct contract_page p;
    Bex__RecordList *out;
};

static int list_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct record_scan *s = user;
    if (contract__page_step(&s->p, key, key_len))
        return 1;
    ProtobufCMessage *m = contract__decode(s->p.c, &bex__record__descriptor, val, val_len);
    if (!m)
        return s->p.c->fatal;
    int rc = contract__push(s->p.c, (void ***)&s->out->records, &s->out->n_records, m);
    if (rc != 0) {
        contract__free(s->p.c, m);
        return rc;
    }
    s->p.count++;
    return 0;
}

static int record_list(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__RecordListArgs *a = (const Bex__RecordListArgs *)args;
    char prefix[CONTRACT_KEY_BYTES_MAX];
    if (!contract__resource_id_ok(a->resource, NULL))
        return contract__fail(c, BEX_EINVAL, "resource is not a resource id");
    int rc = contract__key(prefix, "record/d/%s/", a->resource);
    BEX_ASSERT(rc > 0);
    if ((rc = contract__cursor(c, prefix, &a->cursor)) != 0)
        return rc;
    Bex__RecordList *out = malloc(sizeof(*out));
    if (!out)
        return -BEX_ENOMEM;
    bex__record_list__init(out);
    struct record_scan s = {.out = out};
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

static int record_get(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__RecordGetArgs *a = (const Bex__RecordGetArgs *)args;
    Bex__Record *rec = NULL;
    int rc = contract__load_record(c, &rec, a->resource, a->key.data, a->key.len);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "no such record in %.129s", a->resource);
    if (rc != 0)
        return rc;
    *result = &rec->base;
    return 0;
}

static int record_index_key(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__RecordIndexKeyArgs *a = (const Bex__RecordIndexKeyArgs *)args;
    char key[CONTRACT_KEY_BYTES_MAX];
    if (!contract__resource_id_ok(a->resource, NULL) || !contract__agency_id_ok(a->consumer))
        return contract__fail(c, BEX_EINVAL, "resource or consumer malformed");
    int rc = contract__key(key, "record/x/%s/%s", a->resource, a->consumer);
    BEX_ASSERT(rc > 0);
    rc = contract__get_msg(c, result, key, &bex__index_key_share__descriptor);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "no index key of %s for %s", a->resource, a->consumer);
    return rc;
}

static const struct contract_method methods[] = {
    {"publish", &bex__record_publish_args__descriptor, &bex__record_result__descriptor, RECORD_ARGS_BYTES_MAX, 0,
     record_publish},
    {"share_index", &bex__record_share_index_args__descriptor, &bex__index_key_share__descriptor, 1024,
     CONTRACT_NODE_KEY_OK, record_share_index},
};

static const struct contract_query queries[] = {
    {"list", &bex__record_list_args__descriptor, &bex__record_list__descriptor, record_list},
    {"get", &bex__record_get_args__descriptor, &bex__record__descriptor, record_get},
    {"index_key", &bex__record_index_key_args__descriptor, &bex__index_key_share__descriptor, record_index_key},
};

const struct contract_def contract__record = {
    .name = "record",
    .methods = methods,
    .method_count = BEX_ARRAY_LEN(methods),
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
