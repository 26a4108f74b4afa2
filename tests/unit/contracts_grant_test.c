/* Tests of the grant contract. */
#include "contracts_harness.h"

#define RES "city.traffic/violations"

static const char *const FIELDS_PLATE[] = {"plate"};
static const char *const FIELDS_OWNER[] = {"owner_name"};

static Bex__Grant *get_grant(struct harness *h, uint64_t id)
{
    Bex__IdArgs q = BEX__ID_ARGS__INIT;
    q.id = id;
    ProtobufCMessage *m = NULL;
    if (h_query(h, &m, "grant", "get", &q.base) != 0)
        return NULL;
    return (Bex__Grant *)m;
}

static Bex__GrantStatus status_of(struct harness *h, uint64_t id)
{
    Bex__Grant *g = get_grant(h, id);
    assert_non_null(g);
    Bex__GrantStatus s = g->status;
    contract_result_free(&g->base);
    return s;
}

static void grant_unconditional_active_at_once(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(&h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(id, 1);
    Bex__Grant *g = get_grant(&h, id);
    assert_int_equal(g->status, BEX__GRANT_STATUS__GRANT_ACTIVE);
    assert_string_equal(g->owner, "city.traffic");
    assert_string_equal(g->consumer, "city.police");
    assert_string_equal(g->purpose, "case 2024-17");
    assert_int_equal(g->review_deadline_ms, 0);
    contract_result_free(&g->base);
    /* Ids come from a counter in state. */
    assert_int_equal(h_request(&h, &id, TAX, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(id, 2);
    h_close(&h);
}

static void grant_conditional_needs_threshold(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(&h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + 30 * H_DAY),
                     0);
    Bex__Grant *g = get_grant(&h, id);
    assert_int_equal(g->status, BEX__GRANT_STATUS__GRANT_PENDING);
    assert_int_equal(g->review_deadline_ms, H_T0 + CONTRACT_REVIEW_PERIOD_MS);
    assert_false(g->overdue);
    contract_result_free(&g->base);

    /* One officer of a 2-of-3 agency is not enough; neither is officer + node key. */
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "approve", id), BEX_ETHRESHOLD);
    assert_string_equal(h_msg(&h), "grant 1: approval has 1 of 2 officer signatures");
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_NODE, "approve", id), BEX_ETHRESHOLD);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_NODE, "approve", id), BEX_EPERM);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O2, "reject", id), BEX_ETHRESHOLD);
    assert_int_equal(status_of(&h, id), BEX__GRANT_STATUS__GRANT_PENDING);

    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O3, "approve", id), 0);
    g = get_grant(&h, id);
    assert_int_equal(g->status, BEX__GRANT_STATUS__GRANT_ACTIVE);
    assert_int_equal(g->n_approvals, 2);
    assert_memory_equal(g->approvals[0].data, h.ag[TRAFFIC].officers[0], 33);
    assert_memory_equal(g->approvals[1].data, h.ag[TRAFFIC].officers[2], 33);
    contract_result_free(&g->base);
    /* The audit entry names the approving officer keys. */
    Bex__AuditQueryArgs q = BEX__AUDIT_QUERY_ARGS__INIT;
    q.resource = RES;
    q.limit = 1;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "audit", "query", &q.base), 0);
    Bex__AuditList *l = (Bex__AuditList *)m;
    char id1[17], id3[17], want[64];
    contract_key_id(id1, h.ag[TRAFFIC].officers[0]);
    contract_key_id(id3, h.ag[TRAFFIC].officers[2]);
    snprintf(want, sizeof(want), "approved by %s,%s", id1, id3);
    assert_string_equal(l->entries[0]->detail, want);
    assert_string_equal(l->entries[0]->action, "grant.approve");
    assert_int_equal(l->entries[0]->grant_id, id);
    contract_result_free(m);
    /* Approving twice is a state error. */
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", id), BEX_ESTATE);
    h_close(&h);
}

static void grant_approval_by_non_owner_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(&h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_act(&h, POLICE, SIG_O1 | SIG_O2, "approve", id), BEX_EPERM);
    assert_int_equal(h_act(&h, HEALTH, SIG_O1 | SIG_O2, "approve", id), BEX_EPERM);
    assert_int_equal(h_act(&h, TAX, SIG_O1, "reject", id), BEX_EPERM);
    assert_int_equal(h_act(&h, POLICE, SIG_O1, "revoke", id), BEX_EPERM);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", 99), BEX_ENOTFOUND);
    assert_int_equal(status_of(&h, id), BEX__GRANT_STATUS__GRANT_PENDING);
    h_close(&h);
}

static void grant_none_resource_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, HEALTH, "state.health/patients", BEX__SHARE_TYPE__SHARE_NONE, "*", NULL), 0);
    assert_int_equal(h_request(&h, NULL, POLICE, "state.health/patients", BEX__ACCESS_MODE__MODE_VERIFY,
                               FIELDS_PLATE, 1, H_T0 + H_DAY),
                     BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "state.health/patients is not shared (NONE): Privacy Act s.12");
    assert_null(get_grant(&h, 1));
    h_close(&h);
}

static void grant_wrong_role_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    /* police may READ and VERIFY; finance may only VERIFY; health nothing. */
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "police", "finance"), 0);
    assert_int_equal(h_request(&h, NULL, HEALTH, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_PLATE, 1, H_T0 + H_DAY),
                     BEX_EREFUSED);
    assert_int_equal(h_request(&h, NULL, TAX, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY),
                     BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "no role of city.tax may request READ on city.traffic/violations");
    assert_int_equal(h_request(&h, NULL, TAX, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    h_close(&h);
}

static void grant_request_checks_fields_purpose_expiry(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    static const char *const unknown[] = {"colour"};
    static const char *const twice[] = {"plate", "plate"};
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, unknown, 1, H_T0 + H_DAY),
                     BEX_EINVAL);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, twice, 2, H_T0 + H_DAY),
                     BEX_EINVAL);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 0, H_T0 + H_DAY),
                     BEX_EINVAL);
    /* A sensitive field is VERIFY only. */
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_OWNER, 1, H_T0 + H_DAY),
                     BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "field owner_name is sensitive: VERIFY mode only");
    assert_int_equal(h_request(&h, NULL, POLICE, RES, 0, FIELDS_PLATE, 1, H_T0 + H_DAY), BEX_EINVAL);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0),
                     BEX_EEXPIRED);
    assert_int_equal(h_request(&h, NULL, TRAFFIC, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY),
                     BEX_EPERM);
    assert_int_equal(h_request(&h, NULL, POLICE, "city.traffic/none", BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1,
                               H_T0 + H_DAY),
                     BEX_ENOTFOUND);
    Bex__GrantRequestArgs a = BEX__GRANT_REQUEST_ARGS__INIT;
    a.resource = RES;
    a.fields = (char **)FIELDS_PLATE;
    a.n_fields = 1;
    a.mode = BEX__ACCESS_MODE__MODE_READ;
    a.expiry_ms = H_T0 + H_DAY;
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "grant", "request", &a.base), BEX_EINVAL);
    assert_string_equal(h_msg(&h), "a purpose is required");
    assert_null(get_grant(&h, 1));

    /* Valid at last, then the same again is a duplicate; VERIFY mode is separate. */
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY),
                     BEX_EEXIST);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_OWNER, 1, H_T0 + H_DAY),
                     0);
    h_close(&h);
}

static void grant_reject_and_revoke(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(&h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O2 | SIG_O3, "reject", id), 0);
    assert_int_equal(status_of(&h, id), BEX__GRANT_STATUS__GRANT_REJECTED);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "revoke", id), BEX_ESTATE);
    /* A rejected request does not block a new one. */
    assert_int_equal(h_request(&h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(id, 2);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", id), 0);
    /* Revoke needs only one officer of the owner. */
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O3, "revoke", id), 0);
    assert_int_equal(status_of(&h, id), BEX__GRANT_STATUS__GRANT_REVOKED);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O3, "revoke", id), BEX_ESTATE);
    h_close(&h);
}

static void grant_expires_lazily(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t a = 0, b = 0;
    assert_int_equal(h_request(&h, &a, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_request(&h, &b, TAX, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", a), 0);
    /* Queries evaluate expiry at the last block's time: still active. */
    assert_int_equal(status_of(&h, a), BEX__GRANT_STATUS__GRANT_ACTIVE);
    h_advance(&h, H_DAY);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", b), BEX_EEXPIRED);
    assert_int_equal(status_of(&h, a), BEX__GRANT_STATUS__GRANT_EXPIRED);
    assert_int_equal(status_of(&h, b), BEX__GRANT_STATUS__GRANT_EXPIRED);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "revoke", a), BEX_EEXPIRED);
    /* An expired grant is no duplicate. */
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + 9 * H_DAY),
                     0);
    h_close(&h);
}

static void grant_overdue_and_escalate(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(&h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + 60 * H_DAY),
                     0);
    assert_int_equal(h_act(&h, POLICE, SIG_O1, "escalate", id), BEX_ESTATE);
    h_advance(&h, 8 * H_DAY);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "escalate", id), BEX_EPERM);
    Bex__GrantListArgs q = BEX__GRANT_LIST_ARGS__INIT;
    q.owner = "city.traffic";
    q.overdue_only = 1;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "grant", "list", &q.base), 0);
    Bex__GrantList *l = (Bex__GrantList *)m;
    assert_int_equal(l->n_grants, 1);
    assert_true(l->grants[0]->overdue);
    assert_false(l->grants[0]->escalated);
    contract_result_free(m);
    assert_int_equal(h_act(&h, POLICE, SIG_O1, "escalate", id), 0);
    assert_int_equal(h_act(&h, POLICE, SIG_O1, "escalate", id), BEX_EEXIST);
    Bex__Grant *g = get_grant(&h, id);
    assert_true(g->escalated);
    assert_int_equal(g->escalated_ms, H_T0 + 8 * H_DAY);
    contract_result_free(&g->base);
    /* Late approval is still possible and clears the overdue flag. */
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", id), 0);
    assert_int_equal(h_query(&h, &m, "grant", "list", &q.base), 0);
    assert_int_equal(((Bex__GrantList *)m)->n_grants, 0);
    contract_result_free(m);
    h_close(&h);
}

static void grant_list_filters(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_register(&h, POLICE, "city.police/arrests", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL),
                     0);
    assert_int_equal(h_request(&h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_request(&h, NULL, TAX, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(
        h_request(&h, NULL, TAX, "city.police/arrests", BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    struct {
        const char *resource, *consumer, *owner;
        Bex__GrantStatus status;
        size_t want;
    } cases[] = {
        {NULL, NULL, NULL, 0, 3},
        {RES, NULL, NULL, 0, 2},
        {NULL, "city.tax", NULL, 0, 2},
        {NULL, NULL, "city.police", 0, 1},
        {NULL, NULL, NULL, BEX__GRANT_STATUS__GRANT_PENDING, 2},
        {NULL, "city.tax", NULL, BEX__GRANT_STATUS__GRANT_ACTIVE, 1},
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(cases); i++) {
        Bex__GrantListArgs q = BEX__GRANT_LIST_ARGS__INIT;
        if (cases[i].resource)
            q.resource = (char *)cases[i].resource;
        if (cases[i].consumer)
            q.consumer = (char *)cases[i].consumer;
        if (cases[i].owner)
            q.owner = (char *)cases[i].owner;
        q.status = cases[i].status;
        ProtobufCMessage *m;
        assert_int_equal(h_query(&h, &m, "grant", "list", &q.base), 0);
        assert_int_equal(((Bex__GrantList *)m)->n_grants, cases[i].want);
        contract_result_free(m);
    }
    Bex__GrantListArgs q = BEX__GRANT_LIST_ARGS__INIT;
    q.owner = "city.police";
    q.consumer = "city.tax";
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "grant", "list", &q.base), BEX_EINVAL);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grant_unconditional_active_at_once),
        cmocka_unit_test(grant_conditional_needs_threshold),
        cmocka_unit_test(grant_approval_by_non_owner_refused),
        cmocka_unit_test(grant_none_resource_refused),
        cmocka_unit_test(grant_wrong_role_refused),
        cmocka_unit_test(grant_request_checks_fields_purpose_expiry),
        cmocka_unit_test(grant_reject_and_revoke),
        cmocka_unit_test(grant_expires_lazily),
        cmocka_unit_test(grant_overdue_and_escalate),
        cmocka_unit_test(grant_list_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
