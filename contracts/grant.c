/*
 * grant.c: who may use which fields of a resource, in which mode, until
 * when. UNCONDITIONAL resources grant on request; CONDITIONAL ones wait for
 * the owner's officers (at least the agency's threshold of them) before a
 * review deadline; NONE resources are never granted. Expiry is lazy: a
 * grant whose expiry has passed reads as EXPIRED wherever it is evaluated,
 * with the block time of the evaluation, so every node agrees.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRANT_ARGS_BYTES_MAX 8192

static const char *status_name(Bex__GrantStatus s)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&bex__grant_status__descriptor, s);
    return v ? v->name : "?";
}

static bool role_allows(const Bex__Resource *r, const Bex__Agency *a, Bex__AccessMode mode)
{
    /* Without role policies every role may ask: sharing is the rule. */
    if (r->n_roles == 0)
        return true;
    for (size_t i = 0; i < r->n_roles; i++) {
        const Bex__RolePolicy *p = r->roles[i];
        if (!(mode == BEX__ACCESS_MODE__MODE_READ ? p->read : p->verify))
            continue;
        if (strcmp(p->role, "*") == 0)
            return true;
        for (size_t k = 0; k < a->n_roles; k++)
            if (strcmp(a->roles[k], p->role) == 0)
                return true;
    }
    return false;
}

static bool overdue(const Bex__Grant *g, uint64_t now_ms)
{
    return contract__grant_status(g, now_ms) == BEX__GRANT_STATUS__GRANT_PENDING && g->review_deadline_ms != 0 &&
           now_ms > g->review_deadline_ms;
}

/*
 * The latest grant of each (resource, consumer, mode) is marked under
 * "grant/l/<resource>/<consumer>/<mode>". A request is refused while the
 * marked grant is live, so at most one grant per marker is ever live and
 * the marker names it: finding a usable grant or counting the live ones of
 * a resource never scans the grant history.
 */
static int marker_key(char *key, const char *resource, const char *consumer, Bex__AccessMode mode)
{
    return contract__key(key, "grant/l/%s/%s/%s", resource, consumer,
                         mode == BEX__ACCESS_MODE__MODE_READ ? "read" : "verify");
}

/* Loads the grant a marker names; -BEX_ENOTFOUND if there is none. */
static int load_marked(struct contract_ctx *c, Bex__Grant **g, const char *key)
{
    uint64_t id;
    *g = NULL;
    int rc = contract__get_u64(c, &id, key);
    if (rc != 0)
        return rc;
    rc = contract__load_grant(c, g, id);
    /* A marker always names a stored grant. */
    return rc == -BEX_ENOTFOUND ? contract__corrupt(c) : rc;
}

static bool is_live(Bex__GrantStatus st)
{
    return st == BEX__GRANT_STATUS__GRANT_PENDING || st == BEX__GRANT_STATUS__GRANT_ACTIVE;
}

struct live_scan {
    struct contract_ctx *c;
    size_t max;
    size_t count;
};

static int live_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct live_scan *s = user;
    char k[CONTRACT_KEY_BYTES_MAX];
    Bex__Grant *g = NULL;
    BEX_ASSERT(key_len < sizeof(k));
    (void)val, (void)val_len;
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    int rc = load_marked(s->c, &g, k);
    if (rc != 0)
        return rc;
    if (is_live(contract__grant_status(g, s->c->time_ms)))
        s->count++;
    contract__free(s->c, g);
    return s->count >= s->max ? 1 : 0;
}

int contract__live_grants(struct contract_ctx *c, size_t *count, const char *resource, size_t max)
{
    char prefix[CONTRACT_KEY_BYTES_MAX];
    struct live_scan s = {.c = c, .max = max};
    int rc = contract__key(prefix, "grant/l/%s/", resource);
    if (rc < 0)
        return contract__fail(c, BEX_ELIMIT, "resource id too long");
    rc = contract__iter(c, prefix, NULL, 0, live_cb, &s);
    *count = s.count;
    return rc;
}

static bool covers(const Bex__Grant *g, const char *field)
{
    if (!field)
        return true;
    for (size_t i = 0; i < g->n_fields; i++)
        if (strcmp(g->fields[i], field) == 0)
            return true;
    return false;
}

int contract__find_grant(struct contract_ctx *c, Bex__Grant **out, const char *consumer, const char *resource,
                         unsigned modes, const char *field)
{
    static const Bex__AccessMode order[2] = {BEX__ACCESS_MODE__MODE_READ, BEX__ACCESS_MODE__MODE_VERIFY};
    uint64_t expired = 0;
    *out = NULL;
    for (size_t i = 0; i < 2; i++) {
        char key[CONTRACT_KEY_BYTES_MAX];
        Bex__Grant *g = NULL;
        if (!((modes >> order[i]) & 1u))
            continue;
        if (marker_key(key, resource, consumer, order[i]) < 0)
            return contract__fail(c, BEX_ELIMIT, "resource id too long");
        int rc = load_marked(c, &g, key);
        if (rc == -BEX_ENOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        Bex__GrantStatus st = contract__grant_status(g, c->time_ms);
        if (covers(g, field) && st == BEX__GRANT_STATUS__GRANT_ACTIVE) {
            BEX_ASSERT(g->mode == order[i]);
            *out = g;
            return 0;
        }
        if (covers(g, field) && st == BEX__GRANT_STATUS__GRANT_EXPIRED)
            expired = g->id;
        contract__free(c, g);
    }
    if (expired)
        return contract__fail(c, BEX_EEXPIRED, "grant %llu of %s on %s expired", (unsigned long long)expired,
                              consumer, resource);
    return contract__fail(c, BEX_EREFUSED, "%s has no active grant on %s%s%s", consumer, resource,
                          field ? " covering " : "", field ? field : "");
}

static int check_fields(struct contract_ctx *c, const Bex__Resource *r, const Bex__GrantRequestArgs *a)
{
    if (a->n_fields == 0 || a->n_fields > CONTRACT_FIELDS_MAX)
        return contract__fail(c, BEX_EINVAL, "a grant covers 1 to %d fields", CONTRACT_FIELDS_MAX);
    for (size_t i = 0; i < a->n_fields; i++) {
        const Bex__FieldDef *f = contract__field(r, a->fields[i]);
        if (!f)
            return contract__fail(c, BEX_EINVAL, "%.129s has no field %.64s", r->id, a->fields[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->fields[i], a->fields[j]) == 0)
                return contract__fail(c, BEX_EINVAL, "field %.64s is listed twice", a->fields[i]);
        if (f->sensitive && a->mode == BEX__ACCESS_MODE__MODE_READ)
            return contract__fail(c, BEX_EREFUSED, "field %s is sensitive: VERIFY mode only", f->name);
    }
    return 0;
}

static int write_indexes(struct contract_ctx *c, const Bex__Grant *g)
{
    static const uint8_t empty[1];
    char key[CONTRACT_KEY_BYTES_MAX];
    unsigned long long id = (unsigned long long)g->id;
    int rc;
    if ((rc = contract__key(key, "grant/r/%s/%016llx", g->resource, id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        return rc;
    if ((rc = contract__key(key, "grant/c/%s/%s/%016llx", g->consumer, g->resource, id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        return rc;
    if ((rc = contract__key(key, "grant/o/%s/%016llx", g->owner, id)) < 0 ||
        (rc = contract__put(c, key, empty, 0)) != 0)
        return rc;
    return 0;
}

/* Stores g, emits kind and sets the result. */
static int save(struct contract_ctx *c, const Bex__Grant *g, const char *kind)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    BEX_ASSERT(g->id > 0);
    BEX_ASSERT(g->status != BEX__GRANT_STATUS__GRANT_STATUS_UNSPECIFIED);
    int rc = contract__key(key, "grant/g/%016llx", (unsigned long long)g->id);
    BEX_ASSERT(rc > 0);
    if ((rc = contract__put_msg(c, key, &g->base)) != 0 || (rc = contract__emit(c, kind, &g->base)) != 0)
        return rc;
    Bex__GrantResult res = BEX__GRANT_RESULT__INIT;
    res.grant_id = g->id;
    res.status = g->status;
    return contract__result(c, &res.base);
}

static int grant_request(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__GrantRequestArgs *a = (const Bex__GrantRequestArgs *)args;
    Bex__Resource *r = NULL;
    contract__subject(c, a->resource, NULL, 0);
    int rc = contract__load_resource(c, &r, a->resource);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "resource %.129s not found", a->resource);
    if (rc != 0)
        return rc;
    if (r->status != BEX__RESOURCE_STATUS__RESOURCE_ACTIVE) {
        rc = contract__fail(c, BEX_ESTATE, "resource %s is withdrawn", r->id);
    } else if (contract__is_owner(c, r->owner)) {
        rc = contract__fail(c, BEX_EPERM, "%s owns %s: no grant needed", r->owner, r->id);
    } else if (r->share_type == BEX__SHARE_TYPE__SHARE_NONE) {
        rc = contract__fail(c, BEX_EREFUSED, "%s is not shared (NONE): %.80s", r->id, r->legal_basis);
    } else if (a->mode != BEX__ACCESS_MODE__MODE_READ && a->mode != BEX__ACCESS_MODE__MODE_VERIFY) {
        rc = contract__fail(c, BEX_EINVAL, "mode must be READ or VERIFY");
    } else if (!role_allows(r, c->agency, a->mode)) {
        rc = contract__fail(c, BEX_EREFUSED, "no role of %s may request %s on %s", c->sender,
                            a->mode == BEX__ACCESS_MODE__MODE_READ ? "READ" : "VERIFY", r->id);
    } else if (a->purpose[0] == '\0' || !contract__text_ok(a->purpose, CONTRACT_TEXT_BYTES_MAX)) {
        rc = contract__fail(c, BEX_EINVAL, "a purpose is required");
    } else if ((rc = check_fields(c, r, a)) != 0) {
        /* check_fields set the message. */
    } else if (a->expiry_ms <= c->time_ms) {
        rc = contract__fail(c, BEX_EEXPIRED, "expiry %llu is not after block time %llu",
                            (unsigned long long)a->expiry_ms, (unsigned long long)c->time_ms);
    }
    if (rc != 0)
        goto done;

    char marker[CONTRACT_KEY_BYTES_MAX];
    Bex__Grant *prev = NULL;
    if ((rc = marker_key(marker, r->id, c->sender, a->mode)) < 0)
        goto done;
    rc = load_marked(c, &prev, marker);
    if (rc == 0 && is_live(contract__grant_status(prev, c->time_ms)))
        rc = contract__fail(c, BEX_EEXIST, "grant %llu for %s is already pending or active",
                            (unsigned long long)prev->id, r->id);
    contract__free(c, prev);
    if (rc != 0 && rc != -BEX_ENOTFOUND)
        goto done;

    Bex__Grant g = BEX__GRANT__INIT;
    if ((rc = contract__next_id(c, &g.id, "grant/next")) != 0)
        goto done;
    c->grant_id = g.id;
    g.resource = r->id;
    g.owner = r->owner;
    g.consumer = (char *)c->sender;
    g.n_fields = a->n_fields;
    g.fields = a->fields;
    g.mode = a->mode;
    g.purpose = a->purpose;
    g.expiry_ms = a->expiry_ms;
    g.requested_ms = c->time_ms;
    if (r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL) {
        g.status = BEX__GRANT_STATUS__GRANT_ACTIVE;
        g.decided_ms = c->time_ms;
    } else {
        g.status = BEX__GRANT_STATUS__GRANT_PENDING;
        g.review_deadline_ms = c->time_ms + CONTRACT_REVIEW_PERIOD_MS;
    }
    /* Whatever passed the checks above is shareable in a valid mode. */
    BEX_ASSERT(r->share_type != BEX__SHARE_TYPE__SHARE_NONE);
    BEX_ASSERT(g.mode == BEX__ACCESS_MODE__MODE_READ || g.mode == BEX__ACCESS_MODE__MODE_VERIFY);
    contract__detail(c, "grant %llu %s", (unsigned long long)g.id, status_name(g.status));
    if ((rc = write_indexes(c, &g)) != 0 || (rc = contract__put_u64(c, marker, g.id)) != 0)
        goto done;
    rc = save(c, &g, g.status == BEX__GRANT_STATUS__GRANT_ACTIVE ? "activated" : "requested");
done:
    contract__free(c, r);
    return rc;
}

/* Loads the grant named by args for its owner; fails unless the sender owns it. */
static int load_owned(struct contract_ctx *c, Bex__Grant **g, const Bex__GrantActArgs *a, const char *verb)
{
    c->grant_id = a->grant_id;
    int rc = contract__load_grant(c, g, a->grant_id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "grant %llu not found", (unsigned long long)a->grant_id);
    if (rc != 0)
        return rc;
    contract__subject(c, (*g)->resource, NULL, 0);
    if (!contract__is_owner(c, (*g)->owner))
        return contract__fail(c, BEX_EPERM, "grant %llu: only the owner %s may %s it",
                              (unsigned long long)a->grant_id, (*g)->owner, verb);
    if (!contract__text_ok(a->reason, CONTRACT_TEXT_BYTES_MAX))
        return contract__fail(c, BEX_EINVAL, "reason is malformed");
    return 0;
}

static int decide(struct contract_ctx *c, const Bex__GrantActArgs *a, bool approve)
{
    const char *verb = approve ? "approve" : "reject";
    Bex__Grant *g = NULL;
    Bex__Resource *r = NULL;
    int rc = load_owned(c, &g, a, verb);
    if (rc != 0)
        goto done;
    Bex__GrantStatus st = contract__grant_status(g, c->time_ms);
    if (st == BEX__GRANT_STATUS__GRANT_EXPIRED) {
        rc = contract__fail(c, BEX_EEXPIRED, "grant %llu expired before a decision", (unsigned long long)g->id);
        goto done;
    }
    if (st != BEX__GRANT_STATUS__GRANT_PENDING) {
        rc = contract__fail(c, BEX_ESTATE, "grant %llu is %s, not PENDING", (unsigned long long)g->id,
                            status_name(st));
        goto done;
    }
    if (c->officer_count < c->agency->threshold) {
        rc = contract__fail(c, BEX_ETHRESHOLD, "grant %llu: %s has %zu of %u officer signatures",
                            (unsigned long long)g->id, approve ? "approval" : "rejection", c->officer_count,
                            c->agency->threshold);
        goto done;
    }
    if (approve) {
        rc = contract__load_resource(c, &r, g->resource);
        if (rc != 0 && rc != -BEX_ENOTFOUND)
            goto done;
        if (rc == -BEX_ENOTFOUND || r->share_type == BEX__SHARE_TYPE__SHARE_NONE ||
            r->status != BEX__RESOURCE_STATUS__RESOURCE_ACTIVE) {
            rc = contract__fail(c, BEX_EREFUSED, "grant %llu: %s is no longer shared", (unsigned long long)g->id,
                                g->resource);
            goto done;
        }
    }

    /* Record which officer keys decided; the arrays are borrowed for packing. */
    ProtobufCBinaryData keys[CONTRACT_SIGNERS_MAX];
    char detail[CONTRACT_DETAIL_BYTES_MAX];
    size_t used = (size_t)snprintf(detail, sizeof(detail), "%s by", approve ? "approved" : "rejected");
    for (size_t i = 0; i < c->officer_count; i++) {
        keys[i].data = (uint8_t *)c->officers[i];
        keys[i].len = CONTRACT_PUBKEY_BYTES;
        char id[17];
        contract_key_id(id, c->officers[i]);
        if (used < sizeof(detail))
            used += (size_t)snprintf(detail + used, sizeof(detail) - used, "%s%s", i ? "," : " ", id);
    }
    BEX_ASSERT(c->officer_count >= c->agency->threshold);
    BEX_ASSERT(contract__is_owner(c, g->owner));
    ProtobufCBinaryData *old_keys = g->approvals;
    size_t old_n = g->n_approvals;
    char *old_reason = g->reason;
    g->approvals = keys;
    g->n_approvals = c->officer_count;
    g->reason = (char *)a->reason;
    g->status = approve ? BEX__GRANT_STATUS__GRANT_ACTIVE : BEX__GRANT_STATUS__GRANT_REJECTED;
    g->decided_ms = c->time_ms;
    contract__detail(c, "%s", detail);
    rc = save(c, g, approve ? "approved" : "rejected");
    g->approvals = old_keys;
    g->n_approvals = old_n;
    g->reason = old_reason;
done:
    contract__free(c, r);
    contract__free(c, g);
    return rc;
}

static int grant_approve(struct contract_ctx *c, const ProtobufCMessage *args)
{
    return decide(c, (const Bex__GrantActArgs *)args, true);
}

static int grant_reject(struct contract_ctx *c, const ProtobufCMessage *args)
{
    return decide(c, (const Bex__GrantActArgs *)args, false);
}

static int grant_revoke(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__GrantActArgs *a = (const Bex__GrantActArgs *)args;
    Bex__Grant *g = NULL;
    int rc = load_owned(c, &g, a, "revoke");
    if (rc != 0)
        goto done;
    Bex__GrantStatus st = contract__grant_status(g, c->time_ms);
    if (st != BEX__GRANT_STATUS__GRANT_ACTIVE) {
        rc = contract__fail(c, st == BEX__GRANT_STATUS__GRANT_EXPIRED ? BEX_EEXPIRED : BEX_ESTATE,
                            "grant %llu is %s, not ACTIVE", (unsigned long long)g->id, status_name(st));
        goto done;
    }
    BEX_ASSERT(contract__is_owner(c, g->owner));
    char *old_reason = g->reason;
    g->reason = (char *)a->reason;
    g->status = BEX__GRANT_STATUS__GRANT_REVOKED;
    g->decided_ms = c->time_ms;
    contract__detail(c, "revoked grant %llu: %.100s", (unsigned long long)g->id, a->reason);
    rc = save(c, g, "revoked");
    g->reason = old_reason;
done:
    contract__free(c, g);
    return rc;
}

static int grant_escalate(struct contract_ctx *c, const ProtobufCMessage *args)
{
    const Bex__GrantActArgs *a = (const Bex__GrantActArgs *)args;
    Bex__Grant *g = NULL;
    c->grant_id = a->grant_id;
    int rc = contract__load_grant(c, &g, a->grant_id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "grant %llu not found", (unsigned long long)a->grant_id);
    if (rc != 0)
        return rc;
    contract__subject(c, g->resource, NULL, 0);
    if (strcmp(g->consumer, c->sender) != 0) {
        rc = contract__fail(c, BEX_EPERM, "grant %llu: only the consumer %s may escalate it",
                            (unsigned long long)g->id, g->consumer);
    } else if (!contract__text_ok(a->reason, CONTRACT_TEXT_BYTES_MAX)) {
        rc = contract__fail(c, BEX_EINVAL, "reason is malformed");
    } else if (contract__grant_status(g, c->time_ms) != BEX__GRANT_STATUS__GRANT_PENDING) {
        rc = contract__fail(c, BEX_ESTATE, "grant %llu is %s, not PENDING", (unsigned long long)g->id,
                            status_name(contract__grant_status(g, c->time_ms)));
    } else if (!overdue(g, c->time_ms)) {
        rc = contract__fail(c, BEX_ESTATE, "grant %llu is not overdue before %llu", (unsigned long long)g->id,
                            (unsigned long long)g->review_deadline_ms);
    } else if (g->escalated) {
        rc = contract__fail(c, BEX_EEXIST, "grant %llu was already escalated", (unsigned long long)g->id);
    } else {
        BEX_ASSERT(strcmp(g->consumer, c->sender) == 0);
        g->escalated = true;
        g->escalated_ms = c->time_ms;
        contract__detail(c, "escalated grant %llu: %.100s", (unsigned long long)g->id, a->reason);
        rc = save(c, g, "escalated");
    }
    contract__free(c, g);
    return rc;
}

/* ---------------------------------------------------------------- queries */

/* Sets the fields a query shows as of block time now. */
static void present(Bex__Grant *g, uint64_t now_ms)
{
    g->overdue = overdue(g, now_ms);
    g->status = contract__grant_status(g, now_ms);
}

/* Keeps the grants of the status asked for (UNSPECIFIED: any), only overdue ones if asked. */
static bool keep_grant(const struct contract_ctx *c, ProtobufCMessage *item, const void *filter)
{
    const Bex__GrantListArgs *a = filter;
    Bex__Grant *g = (Bex__Grant *)item;
    present(g, c->time_ms);
    return (a->status == BEX__GRANT_STATUS__GRANT_STATUS_UNSPECIFIED || g->status == a->status) &&
           (!a->overdue_only || g->overdue);
}

static int grant_list(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__GrantListArgs *a = (const Bex__GrantListArgs *)args;
    char prefix[CONTRACT_KEY_BYTES_MAX];
    int filters = (a->resource[0] != '\0') + (a->consumer[0] != '\0') + (a->owner[0] != '\0');
    int rc;
    if (filters > 1)
        return contract__fail(c, BEX_EINVAL, "filter by at most one of resource, consumer, owner");
    if (a->resource[0]) {
        if (!contract__resource_id_ok(a->resource, NULL))
            return contract__fail(c, BEX_EINVAL, "resource is not a resource id");
        rc = contract__key(prefix, "grant/r/%s/", a->resource);
    } else if (a->consumer[0] || a->owner[0]) {
        const char *who = a->consumer[0] ? a->consumer : a->owner;
        if (!contract__agency_id_ok(who))
            return contract__fail(c, BEX_EINVAL, "not an agency id");
        rc = contract__key(prefix, "grant/%c/%s/", a->consumer[0] ? 'c' : 'o', who);
    } else {
        rc = contract__key(prefix, "grant/g/");
    }
    BEX_ASSERT(rc > 0);
    const struct contract_list l = {
        .list = &bex__grant_list__descriptor,
        .prefix = prefix,
        .cursor = &a->cursor,
        .limit = a->limit,
        .primary = filters > 0 ? "grant/g/" : NULL,
        .keep = keep_grant,
        .filter = a,
    };
    return contract__list(c, result, &l);
}

static int grant_get(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args)
{
    const Bex__IdArgs *a = (const Bex__IdArgs *)args;
    Bex__Grant *g = NULL;
    int rc = contract__load_grant(c, &g, a->id);
    if (rc == -BEX_ENOTFOUND)
        return contract__fail(c, BEX_ENOTFOUND, "grant %llu not found", (unsigned long long)a->id);
    if (rc != 0)
        return rc;
    present(g, c->time_ms);
    *result = &g->base;
    return 0;
}

static const struct contract_method methods[] = {
    {"request", &bex__grant_request_args__descriptor, &bex__grant_result__descriptor, GRANT_ARGS_BYTES_MAX, 0,
     grant_request},
    {"approve", &bex__grant_act_args__descriptor, &bex__grant_result__descriptor, GRANT_ARGS_BYTES_MAX, 0,
     grant_approve},
    {"reject", &bex__grant_act_args__descriptor, &bex__grant_result__descriptor, GRANT_ARGS_BYTES_MAX, 0,
     grant_reject},
    {"revoke", &bex__grant_act_args__descriptor, &bex__grant_result__descriptor, GRANT_ARGS_BYTES_MAX, 0,
     grant_revoke},
    {"escalate", &bex__grant_act_args__descriptor, &bex__grant_result__descriptor, GRANT_ARGS_BYTES_MAX, 0,
     grant_escalate},
};

static const struct contract_query queries[] = {
    {"list", &bex__grant_list_args__descriptor, &bex__grant_list__descriptor, grant_list},
    {"get", &bex__id_args__descriptor, &bex__grant__descriptor, grant_get},
};

const struct contract_def contract__grant = {
    .name = "grant",
    .methods = methods,
    .method_count = BEX_ARRAY_LEN(methods),
    .queries = queries,
    .query_count = BEX_ARRAY_LEN(queries),
};
