/* Tests of the paginated list queries of the access and verify contracts: filters, statuses, cursors, errors. */
#include "contracts_harness.h"

#define RES "city.traffic/violations"

static const char *const FIELDS_PLATE_OWNER[] = {"plate", "owner_name"};
static const uint8_t KEY1[32] = {1, 2, 3};

/* A CONDITIONAL resource with approved grants for police (READ plate) and health (VERIFY owner_name). */
static void setup(struct harness *h)
{
    uint64_t id = 0;

    assert_int_equal(h_register(h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_request(h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_PLATE_OWNER, 2,
                               H_T0 + 10 * H_DAY),
                     0);
    assert_int_equal(h_act(h, TRAFFIC, SIG_O1 | SIG_O2, "approve", id), 0);
    assert_int_equal(h_request(h, &id, HEALTH, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_PLATE_OWNER, 2,
                               H_T0 + 10 * H_DAY),
                     0);
    assert_int_equal(h_act(h, TRAFFIC, SIG_O1 | SIG_O2, "approve", id), 0);
    assert_int_equal(h_publish(h, TRAFFIC, RES, KEY1, 1), 0);
}

static uint64_t verify_req(struct harness *h, int consumer)
{
    Bex__VerifyRequestArgs a = BEX__VERIFY_REQUEST_ARGS__INIT;
    uint8_t claim[100];

    memset(claim, 7, sizeof(claim));
    a.resource = RES;
    a.record_key.data = (uint8_t *)KEY1;
    a.record_key.len = 32;
    a.field = "owner_name";
    a.claim.data = claim;
    a.claim.len = sizeof(claim);
    a.purpose = "benefit eligibility";
    assert_int_equal(h_call(h, consumer, SIG_O1, "verify", "request", &a.base), 0);
    return h_result_id(h, &bex__verify_result__descriptor);
}

/* Lists verifications by args; returns the ids in order (at most 8) and their count, keeps the cursor in next. */
static size_t list_ids(struct harness *h, uint64_t ids[8], uint8_t *next, size_t *next_len, Bex__AccessListArgs *q)
{
    ProtobufCMessage *m = NULL;
    Bex__VerificationList *l;
    size_t n;

    assert_int_equal(h_query(h, &m, "verify", "list", &q->base), 0);
    l = (Bex__VerificationList *)m;
    n = l->n_verifications;
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        ids[i] = l->verifications[i]->id;
    assert_true(l->next_cursor.len < 256);
    if (l->next_cursor.len > 0)
        memcpy(next, l->next_cursor.data, l->next_cursor.len);
    *next_len = l->next_cursor.len;
    contract_result_free(m);
    return n;
}

static void verify_list_filters_and_pages(void **state)
{
    struct harness h;
    Bex__AccessListArgs q = BEX__ACCESS_LIST_ARGS__INIT;
    Bex__VerifyAnswerArgs ans = BEX__VERIFY_ANSWER_ARGS__INIT;
    uint64_t ids[8], p1, p2, p3;
    uint8_t next[256];
    size_t next_len;

    (void)state;
    h_init(&h);
    setup(&h);
    p1 = verify_req(&h, POLICE);
    p2 = verify_req(&h, HEALTH);
    p3 = verify_req(&h, POLICE);
    ans.verify_id = p2;
    ans.match = true;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_NODE, "verify", "answer", &ans.base), 0);

    /* All, in id order. */
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 3);
    assert_int_equal(ids[0], p1);
    assert_int_equal(ids[1], p2);
    assert_int_equal(ids[2], p3);
    assert_int_equal(next_len, 0);

    /* By consumer and by owner, through the indexes. */
    q.consumer = "city.police";
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 2);
    assert_int_equal(ids[0], p1);
    assert_int_equal(ids[1], p3);
    q.consumer = "state.health";
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 1);
    assert_int_equal(ids[0], p2);
    q.consumer = "";
    q.owner = "city.traffic";
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 3);

    /* By status. */
    q.status = BEX__VERIFY_STATUS__VERIFY_ANSWERED;
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 1);
    assert_int_equal(ids[0], p2);
    q.status = BEX__VERIFY_STATUS__VERIFY_OPEN;
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 2);

    /* One per page: the cursor walks the index to the end. */
    q.status = 0;
    q.owner = "";
    q.consumer = "city.police";
    q.limit = 1;
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 1);
    assert_int_equal(ids[0], p1);
    assert_true(next_len > 0);
    q.cursor.data = next;
    q.cursor.len = next_len;
    assert_int_equal(list_ids(&h, ids, next, &next_len, &q), 1);
    assert_int_equal(ids[0], p3);
    h_close(&h);
}

static void verify_list_refuses_bad_args(void **state)
{
    struct harness h;
    ProtobufCMessage *m = NULL;
    Bex__AccessListArgs q = BEX__ACCESS_LIST_ARGS__INIT;
    static uint8_t foreign[] = "access/a/0000000000000001";

    (void)state;
    h_init(&h);
    setup(&h);
    q.owner = "city.traffic";
    q.consumer = "city.police";
    assert_int_equal(h_query(&h, &m, "verify", "list", &q.base), BEX_EINVAL);
    q.owner = "";
    q.consumer = "Not An Agency";
    assert_int_equal(h_query(&h, &m, "verify", "list", &q.base), BEX_EINVAL);
    q.consumer = "";
    q.cursor.data = foreign;
    q.cursor.len = sizeof(foreign) - 1;
    assert_int_equal(h_query(&h, &m, "verify", "list", &q.base), BEX_EINVAL);
    assert_int_equal(h_query(&h, &m, "access", "list", &q.base), 0);
    contract_result_free(m);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_list_filters_and_pages),
        cmocka_unit_test(verify_list_refuses_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
