/*
 * catalog.c: the resources agencies offer, with their fields, share type
 * and who may ask for what. Only the owner (the agency named before the '/'
 * of the id) registers, updates or withdraws a resource.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define CATALOG_ARGS_BYTES_MAX (64 * 1024)
#define CATALOG_TITLE_BYTES_MAX 200
#define CATALOG_CYCLE_BYTES_MAX 64
#define CATALOG_ENUM_VALUES_MAX 64

static int check_fields(struct contract_ctx *c, const Bex__Resource *r)
{
    if (r->n_fields == 0 || r->n_fields > CONTRACT_FIELDS_MAX)
        return contract__fail(c, BEX_EINVAL, "a resource has 1 to %d fields", CONTRACT_FIELDS_MAX);
    for (size_t i = 0; i < r->n_fields; i++) {
        const Bex__FieldDef *f = r->fields[i];
        if (!contract__name_ok(f->name) || strchr(f->name, '*'))
            return contract__fail(c, BEX_EINVAL, "field %zu has a malformed name", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->fields[j]->name, f->name) == 0)
                return contract__fail(c, BEX_EINVAL, "field %s is listed twice", f->name);
        if (f->type < BEX__FIELD_TYPE__FIELD_STRING || f->type > BEX__FIELD_TYPE__FIELD_DECIMAL)
            return contract__fail(c, BEX_EINVAL, "field %s has no valid type", f->name);
        bool is_enum = f->type == BEX__FIELD_TYPE__FIELD_ENUM;
        if (is_enum && (f->n_enum_values == 0 || f->n_enum_values > CATALOG_ENUM_VALUES_MAX))
            return contract__fail(c, BEX_EINVAL, "enum field %s needs 1 to %d values", f->name,
                                  CATALOG_ENUM_VALUES_MAX);
        if (!is_enum && f->n_enum_values != 0)
            return contract__fail(c, BEX_EINVAL, "field %s is not an enum", f->name);
        for (size_t k = 0; k < f->n_enum_values; k++)
            if (f->enum_values[k][0] == '\0' || !contract__text_ok(f->enum_values[k], CONTRACT_ID_BYTES_MAX))
                return contract__fail(c, BEX_EINVAL, "field %s has a malformed enum value", f->name);
    }
    return 0;
}

static int check_resource(struct contract_ctx *c, const Bex__Resource *r)
{
    if (r->title[0] == '\0' || !contract__text_ok(r->title, CATALOG_TITLE_BYTES_MAX))
        return contract__fail(c, BEX_EINVAL, "title is empty or malformed");
    int rc = check_fields(c, r);
    if (rc != 0)
        return rc;
    if (r->share_type < BEX__SHARE_TYPE__SHARE_UNCONDITIONAL || r->share_type > BEX__SHARE_TYPE__SHARE_NONE)
        return contract__fail(c, BEX_EINVAL, "share type must be UNCONDITIONAL, CONDITIONAL or NONE");
    if (!contract__text_ok(r->share_conditions, CONTRACT_TEXT_BYTES_MAX) ||
        !contract__text_ok(r->legal_basis, CONTRACT_TEXT_BYTES_MAX) ||
        !contract__text_ok(r->update_cycle, CATALOG_CYCLE_BYTES_MAX))
        return contract__fail(c, BEX_EINVAL, "conditions, legal basis or update cycle malformed");
    /* Not sharing is the exception and must say why. */
    if (r->share_type == BEX__SHARE_TYPE__SHARE_NONE && r->legal_basis[0] == '\0')
        return contract__fail(c, BEX_EINVAL, "a NONE resource needs a legal basis");
    if (r->n_roles > CONTRACT_ROLES_MAX)
        return contract__fail(c, BEX_EINVAL, "at most %d role policies", CONTRACT_ROLES_MAX);
    for (size_t i = 0; i < r->n_roles; i++) {
        const Bex__RolePolicy *p = r->roles[i];
        if (!contract__name_ok(p->role) || (!p->read && !p->verify))
            return contract__fail(c, BEX_EINVAL, "role policy %zu is malformed or allows nothing", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->roles[j]->role, p->role) == 0)
                return contract__fail(c, BEX_EINVAL, "role %s is listed twice", p->role);
    }
    return 0;
}

/* Checks that the sender owns the resource id; returns 0 or fails. */
static int check_owner(struct contract_ctx *c, const char *id)
{
    size_t owner_len;
    if (!contract__resource_id_ok(id, &owner_len))
        return contract__fail(c, BEX_EINVAL, "resource id must be <agency>/<name>");
    if (owner_len != strlen(c->sender) || memcmp(id, c->sender, owner_len) != 0)
        return contract__fail(c, BEX_EPERM, "%.129s does not belong to %s", id, c->sender);
    return 0;
}

/* Stores r with the fields the contract owns set, then restores r. */
static int store_resource(struct contract_ctx *c, Bex__Resource *r, uint64_t version, Bex__ResourceStatus status,
                          const char *kind)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    int rc = contract__key(key, "catalog/r/%s", r->id);
    if (rc < 0)
        return contract__fail(c, BEX_ELIMIT, "resource id too long");
    BEX_ASSERT(version >= 1);
    BEX_ASSERT(r->share_type != BEX__SHARE_TYPE__SHARE_NONE || r->legal_basis[0] != '\0');
    char *owner = r->owner;
    r->owner = (char *)c->sender;
    r->version = version;
    r->status = status;
    r->updated_ms = c->time_ms;
    rc = contract__put_msg(c, key, &r->base);
    if (rc == 0)
        rc = contract__emit(c, kind, &r->base);
    if (rc == 0)
        rc = contract__result(c, &r->base);
    r->owner = owner;
    return rc;
}

static int catalog_register(struct contract_ctx *c, const ProtobufCMessage *args)
{
    Bex__Resource *r = ((const Bex__CatalogPutArgs *)args)->resource;
    if (!r)
        return contract__fail(c, BEX_EINVAL, "no resource given");
    contract__subject(c, r->id, NULL, 0);
    int rc = check_owner(c, r->id);
    if (rc == 0)
        rc = check_resource(c, r);
    if (rc != 0)
        return rc;
    Bex__Resource *old = NULL;
    rc = contract__load_resource(c, &old, r->id);
    contract__free(c, old);
    if (rc == 0)
        return contract__fail(c, BEX_EEXIST, "resource %s already exists", r->id);
    if (rc != -BEX_ENOTFOUND)
        return rc;
    contract__detail(c, "registered %s v1", r->id);
    return store_resource(c, r, 1, BEX__RESOURCE_STATUS__RESOURCE_ACTIVE, "registered");
}

/* Loads the sender's active resource id into *out, or fails. */
static int load_own(struct contract_ctx *c, Bex__Resource **out, const char *id)
{
    int rc = check_owner(c, id);
    if (rc != 0)
        return rc;
    rc = contract__load_resource(c, out, id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "resource %s not found", id);
    if (rc != 0)
        return rc;
    if ((*out)->status != BEX__RESOURCE_STATUS__RESOURCE_ACTIVE)
        return contract__fail(c, BEX_ESTATE, "resource %s is withdrawn", id);
    return 0;
}

static int refuse_live_grants(struct contract_ctx *c, const char *id, const char *what)
{
    size_t live = 0;
    int rc = contract__live_grants(c, &live, id, 1);
    if (rc != 0)
        return rc;
    if (live > 0)
        return contract__fail(c, BEX_ESTATE, "%s has pending or active grants: settle them before %s", id, what);
    return 0;
}

static int catalog_update(struct contract_ctx *c, const ProtobufCMessage *args)
{
    Bex__Resource *r = ((const Bex__CatalogPutArgs *)args)->resource;
    Bex__Resource *old = NULL;
    if (!r)
        return contract__fail(c, BEX_EINVAL, "no resource given");
    contract__subject(c, r->id, NULL, 0);
    int rc = load_own(c, &old, r->id);
    if (rc == 0)
        rc = check_resource(c, r);
    /* No grant may stay live on a resource that stops being shared. */
    if (rc == 0 && r->share_type == BEX__SHARE_TYPE__SHARE_NONE && old->share_type != BEX__SHARE_TYPE__SHARE_NONE)
        rc = refuse_live_grants(c, r->id, "marking it NONE");
    if (rc == 0) {
        contract__detail(c, "updated %s to v%llu", r->id, (unsigned long long)(old->version + 1));
        rc = store_resource(c, r, old->version + 1, BEX__RESOURCE_STATUS__RESOURCE_ACTIVE, "updated");
    }
    contract__free(c, old);
    return rc;
}

static int catalog_withdraw(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__CatalogWithdrawArgs *a = (const Bex__CatalogWithdrawArgs *)args;
    Bex__Resource *old = NULL;
    contract__subject(c, a->id, NULL, 0);
    if (!contract__text_ok(a->reason, CONTRACT_TEXT_BYTES_MAX))
        return contract__fail(c, BEX_EINVAL, "reason is malformed");
    int rc = load_own(c, &old, a->id);
    if (rc == 0)
        rc = refuse_live_grants(c, a->id, "withdrawing it");
    if (rc == 0) {
        contract__detail(c, "withdrew %s: %.100s", a->id, a->reason);
        rc = store_resource(c, old, old->version + 1, BEX__RESOURCE_STATUS__RESOURCE_WITHDRAWN, "withdrawn");
    }
    contract__free(c, old);
    return rc;
}

struct catalog_scan {
    struct contract_page p;
    Bex__ShareType share_type;
    Bex__CatalogList *out;
};

static int list_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct catalog_scan *s = user;
    if (contract__page_step(&s->p, key, key_len))
        return 1;
    Bex__Resource *r = (Bex__Resource *)contract__decode(s->p.c, &bex__resource__descriptor, val, val_len);
    if (!r)
        return s->p.c->fatal;
    if (s->share_type != BEX__SHARE_TYPE__SHARE_TYPE_UNSPECIFIED && r->share_type != s->share_type) {
        contract__free(s->p.c, r);
        return 0;
    }
    int rc = contract__push(s->p.c, (void ***)&s->out->resources, &s->out->n_resources, r);
    if (rc != 0) {
        contract__free(s->p.c, r);
        return rc;
    }
    s->p.count++;
    return 0;
}

static int catalog_list(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__CatalogListArgs *a = (const Bex__CatalogListArgs *)args;
    char prefix[CONTRACT_KEY_BYTES_MAX];
    if (a->owner[0] != '\0' && !contract__agency_id_ok(a->owner))
        return contract__fail(c, BEX_EINVAL, "owner is not an agency id");
    int rc = contract__key(prefix, "catalog/r/%s%s", a->owner, a->owner[0] ? "/" : "");
    BEX_ASSERT(rc > 0);
    if ((rc = contract__cursor(c, prefix, &a->cursor)) != 0)
        return rc;
    Bex__CatalogList *out = malloc(sizeof(*out));
    if (!out)
        return -BEX_ENOMEM;
    bex__catalog_list__init(out);
    struct catalog_scan s = {.share_type = a->share_type, .out = out};
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

static int catalog_get(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__NameArgs *a = (const Bex__NameArgs *)args;
    Bex__Resource *r = NULL;
    int rc = contract__load_resource(c, &r, a->id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "resource %.129s not found", a->id);
    if (rc != 0)
        return rc;
    *result = &r->base;
    return 0;
}

static const struct contract_method methods[] = {
    {"register", &bex__catalog_put_args__descriptor, &bex__resource__descriptor, CATALOG_ARGS_BYTES_MAX, 0,
     catalog_register},
    {"update", &bex__catalog_put_args__descriptor, &bex__resource__descriptor, CATALOG_ARGS_BYTES_MAX, 0,
     catalog_update},
    {"withdraw", &bex__catalog_withdraw_args__descriptor, &bex__resource__descriptor, 4096, 0, catalog_withdraw},
};

static const struct contract_query queries[] = {
    {"list", &bex__catalog_list_args__descriptor, &bex__catalog_list__descriptor, catalog_list},
    {"get", &bex__name_args__descriptor, &bex__resource__descriptor, catalog_get},
};

const struct contract_def contract__catalog = {
    .name = "catalog",
    .methods = methods,
    .method_count = BEX_ARRAY_LEN(methods),
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
