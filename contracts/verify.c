/*
 * verify.c: yes/no checks of a consumer's claim about one field of a
 * record. The claim travels ECIES-sealed to the owner's encryption key; the
 * owner's node opens it, compares, and answers on chain. The value never
 * appears in clear. A VERIFY or READ grant covering the field is needed.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define VERIFY_ARGS_BYTES_MAX 4096

static int load_verify(struct contract_ctx *c, Bex__Verification **v, uint64_t id)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    int rc = contract__key(key, "verify/v/%016llx", (unsigned long long)id);
    BEX_ASSERT(rc > 0);
    return contract__get_msg(c, (ProtobufCMessage **)v, key, &bex__verification__descriptor);
}

static int save(struct contract_ctx *c, const Bex__Verification *v, const char *kind)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    int rc = contract__key(key, "verify/v/%016llx", (unsigned long long)v->id);
    BEX_ASSERT(rc > 0);
    if ((rc = contract__put_msg(c, key, &v->base)) != 0)
        return rc;
    Bex__VerifyResult res = BEX__VERIFY_RESULT__INIT;
    res.verify_id = v->id;
    res.status = v->status;
    res.match = v->match;
    if ((rc = contract__emit(c, kind, &res.base)) != 0)
        return rc;
    return contract__result(c, &res.base);
}

static int verify_request(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__VerifyRequestArgs *a = (const Bex__VerifyRequestArgs *)args;
    Bex__Resource *r = NULL;
    Bex__Grant *g = NULL;
    Bex__Record *rec = NULL;
    contract__subject(c, a->resource, a->record_key.data, a->record_key.len);
    int rc = contract__load_resource(c, &r, a->resource);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "resource %.129s not found", a->resource);
    if (rc != 0)
        return rc;
    if (!contract__field(r, a->field)) {
        rc = contract__fail(c, BEX_EINVAL, "%s has no field %.64s", r->id, a->field);
    } else if (a->claim.len <= CONTRACT_ECIES_OVERHEAD || a->claim.len > CONTRACT_CLAIM_BYTES_MAX) {
        rc = contract__fail(c, BEX_EINVAL, "sealed claim has %zu bytes", a->claim.len);
    } else if (!contract__text_ok(a->purpose, CONTRACT_TEXT_BYTES_MAX)) {
        rc = contract__fail(c, BEX_EINVAL, "purpose is malformed");
    } else {
        unsigned modes = 1u << BEX__ACCESS_MODE__MODE_READ | 1u << BEX__ACCESS_MODE__MODE_VERIFY;
        rc = contract__find_grant(c, &g, c->sender, r->id, modes, a->field);
    }
    if (rc != 0)
        goto done;
    c->grant_id = g->id;
    rc = contract__load_record(c, &rec, r->id, a->record_key.data, a->record_key.len);
    if (rc == -BEX_ENOTFOUND)
        rc = contract__fail(c, BEX_ENOTFOUND, "no such record in %s", r->id);
    if (rc != 0)
        goto done;

    Bex__Verification v = BEX__VERIFICATION__INIT;
    if ((rc = contract__next_id(c, &v.id, "verify/next")) != 0)
        goto done;
    c->access_id = v.id;
    v.grant_id = g->id;
    v.resource = r->id;
    v.record_key = a->record_key;
    v.field = a->field;
    v.claim = a->claim;
    v.consumer = (char *)c->sender;
    v.owner = r->owner;
    v.purpose = a->purpose;
    v.status = BEX__VERIFY_STATUS__VERIFY_OPEN;
    v.requested_ms = c->time_ms;
    static const uint8_t empty[1];
    char key[CONTRACT_KEY_BYTES_MAX];
    if ((rc = contract__key(key, "verify/o/%s/%016llx", v.owner, (unsigned long long)v.id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        goto done;
    if ((rc = contract__key(key, "verify/c/%s/%016llx", v.consumer, (unsigned long long)v.id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        goto done;
    contract__detail(c, "verification %llu of %s under grant %llu", (unsigned long long)v.id, a->field,
                     (unsigned long long)g->id);
    rc = save(c, &v, "requested");
done:
    contract__free(c, rec);
    contract__free(c, g);
    contract__free(c, r);
    return rc;
}

static int verify_answer(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__VerifyAnswerArgs *a = (const Bex__VerifyAnswerArgs *)args;
    Bex__Verification *v = NULL;
    Bex__Grant *g = NULL;
    c->access_id = a->verify_id;
    int rc = load_verify(c, &v, a->verify_id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "no verification %llu to answer", (unsigned long long)a->verify_id);
    if (rc != 0)
        return rc;
    c->grant_id = v->grant_id;
    contract__subject(c, v->resource, v->record_key.data, v->record_key.len);
    if (!contract__is_owner(c, v->owner)) {
        rc = contract__fail(c, BEX_EPERM, "verification %llu: only the owner %s may answer it",
                            (unsigned long long)v->id, v->owner);
        goto done;
    }
    if (v->status != BEX__VERIFY_STATUS__VERIFY_OPEN) {
        rc = contract__fail(c, BEX_ESTATE, "verification %llu is already answered", (unsigned long long)v->id);
        goto done;
    }
    /* No answer leaves once the grant is revoked or expired. */
    rc = contract__load_grant(c, &g, v->grant_id);
    if (rc == -BEX_ENOTFOUND)
        rc = contract__fail(c, BEX_ENOTFOUND, "grant %llu not found", (unsigned long long)v->grant_id);
    if (rc != 0 || (rc = contract__grant_usable(c, g)) != 0)
        goto done;
    BEX_ASSERT(v->status == BEX__VERIFY_STATUS__VERIFY_OPEN);
    BEX_ASSERT(contract__is_owner(c, v->owner));
    v->status = BEX__VERIFY_STATUS__VERIFY_ANSWERED;
    v->match = a->match;
    v->answered_ms = c->time_ms;
    contract__detail(c, "answered %s", a->match ? "yes" : "no");
    rc = save(c, v, "answered");
done:
    contract__free(c, g);
    contract__free(c, v);
    return rc;
}

/* ---------------------------------------------------------------- queries */

static int verify_list(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    return contract__list_requests(c, result, (const Bex__AccessListArgs *)args, "verify", 'v',
                                   &bex__verification_list__descriptor);
}

static int verify_get(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__IdArgs *a = (const Bex__IdArgs *)args;
    int rc = load_verify(c, (Bex__Verification **)result, a->id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "verification %llu not found", (unsigned long long)a->id);
    return rc;
}

static const struct contract_method methods[] = {
    {"request", &bex__verify_request_args__descriptor, &bex__verify_result__descriptor, VERIFY_ARGS_BYTES_MAX, 0,
     verify_request},
    {"answer", &bex__verify_answer_args__descriptor, &bex__verify_result__descriptor, 256, CONTRACT_NODE_KEY_OK,
     verify_answer},
};

static const struct contract_query queries[] = {
    {"list", &bex__access_list_args__descriptor, &bex__verification_list__descriptor, verify_list},
    {"get", &bex__id_args__descriptor, &bex__verification__descriptor, verify_get},
};

const struct contract_def contract__verify = {
    .name = "verify",
    .methods = methods,
    .method_count = BEX_ARRAY_LEN(methods),
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
