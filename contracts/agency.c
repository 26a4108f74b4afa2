/*
 * agency.c: the registry of member agencies, seeded by genesis. It has no
 * write methods yet (governance comes later); it is the source of roles,
 * officer keys, thresholds, node keys and encryption keys for the others.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct agency_scan {
    struct contract_page p;
    Bex__AgencyList *out;
};

static int list_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct agency_scan *s = user;
    if (contract__page_step(&s->p, key, key_len))
        return 1;
    ProtobufCMessage *m = contract__decode(s->p.c, &bex__agency__descriptor, val, val_len);
    if (!m)
        return s->p.c->fatal;
    int rc = contract__push(s->p.c, (void ***)&s->out->agencies, &s->out->n_agencies, m);
    if (rc != 0) {
        contract__free(s->p.c, m);
        return rc;
    }
    s->p.count++;
    return 0;
}

static int agency_list(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__AgencyListArgs *a = (const Bex__AgencyListArgs *)args;
    static const char prefix[] = "agency/a/";
    int rc = contract__cursor(c, prefix, &a->cursor);
    if (rc != 0)
        return rc;
    Bex__AgencyList *out = malloc(sizeof(*out));
    if (!out)
        return -BEX_ENOMEM;
    bex__agency_list__init(out);
    struct agency_scan s = {.out = out};
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

static int agency_get(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__NameArgs *a = (const Bex__NameArgs *)args;
    Bex__Agency *ag = NULL;
    int rc = contract__load_agency(c, &ag, a->id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "agency %.64s not found", a->id);
    if (rc != 0)
        return rc;
    *result = &ag->base;
    return 0;
}

static const struct contract_query queries[] = {
    {"list", &bex__agency_list_args__descriptor, &bex__agency_list__descriptor, agency_list},
    {"get", &bex__name_args__descriptor, &bex__agency__descriptor, agency_get},
};

const struct contract_def contract__agency = {
    .name = "agency",
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
