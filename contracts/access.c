/*
 * access.c: a consumer's request to read one record under an ACTIVE READ
 * grant, and the owner's answer. The owner's node answers automatically
 * with a release that wraps the data keys of granted, non-sensitive fields
 * for that consumer alone; the contract refuses any release that does not
 * match an open access of a still usable grant.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define ACCESS_ARGS_BYTES_MAX (32 * 1024)

static int save(struct contract_ctx *c, const Bex__Access *x, const char *kind)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    BEX_ASSERT(x->id > 0);
    BEX_ASSERT(x->status != BEX__ACCESS_STATUS__ACCESS_STATUS_UNSPECIFIED);
    int rc = contract__key(key, "access/a/%016llx", (unsigned long long)x->id);
    BEX_ASSERT(rc > 0);
    if ((rc = contract__put_msg(c, key, &x->base)) != 0)
        return rc;
    Bex__AccessResult res = BEX__ACCESS_RESULT__INIT;
    res.access_id = x->id;
    res.grant_id = x->grant_id;
    res.status = x->status;
    if ((rc = contract__emit(c, kind, &res.base)) != 0)
        return rc;
    return contract__result(c, &res.base);
}

static int access_request(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__AccessRequestArgs *a = (const Bex__AccessRequestArgs *)args;
    Bex__Resource *r = NULL;
    Bex__Grant *g = NULL;
    Bex__Record *rec = NULL;
    contract__subject(c, a->resource, a->record_key.data, a->record_key.len);
    int rc = contract__load_resource(c, &r, a->resource);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "resource %.129s not found", a->resource);
    if (rc != 0)
        return rc;
    if (a->purpose[0] == '\0' || !contract__text_ok(a->purpose, CONTRACT_TEXT_BYTES_MAX)) {
        rc = contract__fail(c, BEX_EINVAL, "a purpose is required");
        goto done;
    }
    if ((rc = contract__find_grant(c, &g, c->sender, r->id, 1u << BEX__ACCESS_MODE__MODE_READ, NULL)) != 0)
        goto done;
    c->grant_id = g->id;
    BEX_ASSERT(g->mode == BEX__ACCESS_MODE__MODE_READ);
    BEX_ASSERT(contract__grant_status(g, c->time_ms) == BEX__GRANT_STATUS__GRANT_ACTIVE);
    rc = contract__load_record(c, &rec, r->id, a->record_key.data, a->record_key.len);
    if (rc == -BEX_ENOTFOUND)
        rc = contract__fail(c, BEX_ENOTFOUND, "no such record in %s", r->id);
    if (rc != 0)
        goto done;

    Bex__Access x = BEX__ACCESS__INIT;
    if ((rc = contract__next_id(c, &x.id, "access/next")) != 0)
        goto done;
    c->access_id = x.id;
    x.grant_id = g->id;
    x.resource = r->id;
    x.record_key = a->record_key;
    x.record_version = rec->version;
    x.consumer = (char *)c->sender;
    x.owner = r->owner;
    x.purpose = a->purpose;
    x.status = BEX__ACCESS_STATUS__ACCESS_OPEN;
    x.requested_ms = c->time_ms;
    static const uint8_t empty[1];
    char key[CONTRACT_KEY_BYTES_MAX];
    if ((rc = contract__key(key, "access/o/%s/%016llx", x.owner, (unsigned long long)x.id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        goto done;
    if ((rc = contract__key(key, "access/c/%s/%016llx", x.consumer, (unsigned long long)x.id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        goto done;
    contract__detail(c, "access %llu under grant %llu", (unsigned long long)x.id, (unsigned long long)g->id);
    rc = save(c, &x, "requested");
done:
    contract__free(c, rec);
    contract__free(c, g);
    contract__free(c, r);
    return rc;
}

static int load_access(struct contract_ctx *c, Bex__Access **x, uint64_t id)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    int rc = contract__key(key, "access/a/%016llx", (unsigned long long)id);
    BEX_ASSERT(rc > 0);
    return contract__get_msg(c, (ProtobufCMessage **)x, key, &bex__access__descriptor);
}

/* Loads access id for its owner and checks that it is still open. */
static int load_open(struct contract_ctx *c, Bex__Access **x, uint64_t id)
{
    c->access_id = id;
    int rc = load_access(c, x, id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "no access %llu to answer", (unsigned long long)id);
    if (rc != 0)
        return rc;
    c->grant_id = (*x)->grant_id;
    contract__subject(c, (*x)->resource, (*x)->record_key.data, (*x)->record_key.len);
    if (!contract__is_owner(c, (*x)->owner))
        return contract__fail(c, BEX_EPERM, "access %llu: only the owner %s may answer it", (unsigned long long)id,
                              (*x)->owner);
    if ((*x)->status != BEX__ACCESS_STATUS__ACCESS_OPEN)
        return contract__fail(c, BEX_ESTATE, "access %llu is already closed", (unsigned long long)id);
    return 0;
}

static const Bex__RecordField *record_field(const Bex__Record *rec, const char *name)
{
    for (size_t i = 0; i < rec->n_fields; i++)
        if (strcmp(rec->fields[i]->name, name) == 0)
            return rec->fields[i];
    return NULL;
}

static bool in_grant(const Bex__Grant *g, const char *field)
{
    for (size_t i = 0; i < g->n_fields; i++)
        if (strcmp(g->fields[i], field) == 0)
            return true;
    return false;
}

static int check_keys(struct contract_ctx *c, const Bex__AccessReleaseArgs *a, const Bex__Grant *g,
                      const Bex__Resource *r, const Bex__Record *rec)
{
    if (a->n_keys > CONTRACT_FIELDS_MAX)
        return contract__fail(c, BEX_EINVAL, "a release carries at most %d keys", CONTRACT_FIELDS_MAX);
    /* A release without keys only answers a record whose granted fields are all in clear. */
    for (size_t i = 0; a->n_keys == 0 && i < g->n_fields; i++) {
        const Bex__RecordField *f = record_field(rec, g->fields[i]);
        const Bex__FieldDef *def = contract__field(r, g->fields[i]);
        if (f && def && !def->sensitive && f->value_case == BEX__RECORD_FIELD__VALUE_SEALED)
            return contract__fail(c, BEX_EINVAL, "a release carries the key of sealed field %s", g->fields[i]);
    }
    for (size_t i = 0; i < a->n_keys; i++) {
        const Bex__FieldKey *k = a->keys[i];
        if (!in_grant(g, k->field))
            return contract__fail(c, BEX_EREFUSED, "field %.64s is outside grant %llu", k->field,
                                  (unsigned long long)g->id);
        const Bex__FieldDef *def = contract__field(r, k->field);
        if (!def || def->sensitive)
            return contract__fail(c, BEX_EREFUSED, "field %s is sensitive or gone: never released", k->field);
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->keys[j]->field, k->field) == 0)
                return contract__fail(c, BEX_EINVAL, "field %s is released twice", k->field);
        const Bex__RecordField *f = record_field(rec, k->field);
        if (!f || f->value_case != BEX__RECORD_FIELD__VALUE_SEALED)
            return contract__fail(c, BEX_EINVAL, "the record has no sealed %s", k->field);
        if (k->wrapped_key.len < CONTRACT_WRAPPED_KEY_BYTES_MIN || k->wrapped_key.len > CONTRACT_WRAPPED_KEY_BYTES_MAX)
            return contract__fail(c, BEX_EINVAL, "wrapped key of %s has %zu bytes", k->field, k->wrapped_key.len);
    }
    return 0;
}

static int access_release(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__AccessReleaseArgs *a = (const Bex__AccessReleaseArgs *)args;
    Bex__Access *x = NULL;
    Bex__Grant *g = NULL;
    Bex__Resource *r = NULL;
    Bex__Record *rec = NULL;
    int rc = load_open(c, &x, a->access_id);
    if (rc != 0)
        goto done;
    /* A grant revoked or expired since the request stops the release. */
    rc = contract__load_grant(c, &g, x->grant_id);
    if (rc == -BEX_ENOTFOUND)
        rc = contract__fail(c, BEX_ENOTFOUND, "grant %llu not found", (unsigned long long)x->grant_id);
    if (rc != 0 || (rc = contract__grant_usable(c, g)) != 0)
        goto done;
    rc = contract__load_resource(c, &r, x->resource);
    if (rc == 0)
        rc = contract__load_record(c, &rec, x->resource, x->record_key.data, x->record_key.len);
    if (rc == -BEX_ENOTFOUND)
        rc = contract__fail(c, BEX_ENOTFOUND, "record of access %llu is gone", (unsigned long long)x->id);
    if (rc != 0 || (rc = check_keys(c, a, g, r, rec)) != 0)
        goto done;

    BEX_ASSERT(x->status == BEX__ACCESS_STATUS__ACCESS_OPEN);
    BEX_ASSERT(a->n_keys <= g->n_fields);
    Bex__FieldKey **old_keys = x->keys;
    size_t old_n = x->n_keys;
    x->keys = a->keys;
    x->n_keys = a->n_keys;
    x->status = BEX__ACCESS_STATUS__ACCESS_RELEASED;
    x->closed_ms = c->time_ms;
    contract__detail(c, "released %zu field keys to %s", a->n_keys, x->consumer);
    rc = save(c, x, "released");
    x->keys = old_keys;
    x->n_keys = old_n;
done:
    contract__free(c, rec);
    contract__free(c, r);
    contract__free(c, g);
    contract__free(c, x);
    return rc;
}

static int access_deny(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__AccessDenyArgs *a = (const Bex__AccessDenyArgs *)args;
    Bex__Access *x = NULL;
    int rc = load_open(c, &x, a->access_id);
    if (rc == 0 && (a->reason[0] == '\0' || !contract__text_ok(a->reason, CONTRACT_TEXT_BYTES_MAX)))
        rc = contract__fail(c, BEX_EINVAL, "a denial needs a reason");
    if (rc == 0) {
        char *old_reason = x->reason;
        x->reason = a->reason;
        x->status = BEX__ACCESS_STATUS__ACCESS_DENIED;
        x->closed_ms = c->time_ms;
        contract__detail(c, "denied: %.100s", a->reason);
        rc = save(c, x, "denied");
        x->reason = old_reason;
    }
    contract__free(c, x);
    return rc;
}

/* ---------------------------------------------------------------- queries */

static int access_list(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    return contract__list_requests(c, result, (const Bex__AccessListArgs *)args, "access", 'a',
                                   &bex__access_list__descriptor);
}

static int access_get(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__IdArgs *a = (const Bex__IdArgs *)args;
    int rc = load_access(c, (Bex__Access **)result, a->id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "access %llu not found", (unsigned long long)a->id);
    return rc;
}

static const struct contract_method methods[] = {
    {"request", &bex__access_request_args__descriptor, &bex__access_result__descriptor, ACCESS_ARGS_BYTES_MAX, 0,
     access_request},
    {"release", &bex__access_release_args__descriptor, &bex__access_result__descriptor, ACCESS_ARGS_BYTES_MAX,
     CONTRACT_NODE_KEY_OK, access_release},
    {"deny", &bex__access_deny_args__descriptor, &bex__access_result__descriptor, ACCESS_ARGS_BYTES_MAX, 0,
     access_deny},
};

static const struct contract_query queries[] = {
    {"list", &bex__access_list_args__descriptor, &bex__access_list__descriptor, access_list},
    {"get", &bex__id_args__descriptor, &bex__access__descriptor, access_get},
};

const struct contract_def contract__access = {
    .name = "access",
    .methods = methods,
    .method_count = BEX_ARRAY_LEN(methods),
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
