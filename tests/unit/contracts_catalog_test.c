/* Tests of the catalog contract. */
#include "contracts_harness.h"

static const char *const FIELDS_PLATE[] = {"plate"};

static Bex__Resource *get_resource(struct harness *h, const char *id)
{
    Bex__NameArgs q = BEX__NAME_ARGS__INIT;
    q.id = (char *)id;
    ProtobufCMessage *m = NULL;
    if (h_query(h, &m, "catalog", "get", &q.base) != 0)
        return NULL;
    return (Bex__Resource *)m;
}

static void catalog_register_and_get(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_CONDITIONAL, "police",
                                "finance"),
                     0);
    Bex__Resource *r = get_resource(&h, "city.traffic/violations");
    assert_non_null(r);
    assert_string_equal(r->owner, "city.traffic");
    assert_int_equal(r->version, 1);
    assert_int_equal(r->status, BEX__RESOURCE_STATUS__RESOURCE_ACTIVE);
    assert_int_equal(r->n_fields, 3);
    assert_true(r->fields[1]->sensitive);
    assert_int_equal(r->n_roles, 2);
    assert_int_equal(r->updated_ms, H_T0);
    contract_result_free(&r->base);
    assert_null(get_resource(&h, "city.traffic/nothing"));
    h_close(&h);
}

static void catalog_register_by_non_owner_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, POLICE, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*",
                                NULL),
                     BEX_EPERM);
    assert_string_equal(h_msg(&h), "city.traffic/violations does not belong to city.police");
    /* A prefix of the sender's id is not the sender. */
    assert_int_equal(h_register(&h, POLICE, "city/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL),
                     BEX_EPERM);
    assert_int_equal(h_register(&h, POLICE, "no-slash", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL),
                     BEX_EINVAL);
    assert_null(get_resource(&h, "city.traffic/violations"));
    h_close(&h);
}

static void catalog_register_duplicate_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/v", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/v", BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL),
                     BEX_EEXIST);
    h_close(&h);
}

static void catalog_none_needs_legal_basis(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    Bex__FieldDef f = BEX__FIELD_DEF__INIT;
    Bex__FieldDef *fp = &f;
    f.name = "diagnosis";
    f.type = BEX__FIELD_TYPE__FIELD_STRING;
    Bex__Resource r = BEX__RESOURCE__INIT;
    r.id = "state.health/records";
    r.title = "Patient records";
    r.n_fields = 1;
    r.fields = &fp;
    r.share_type = BEX__SHARE_TYPE__SHARE_NONE;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = &r;
    assert_int_equal(h_call(&h, HEALTH, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    assert_string_equal(h_msg(&h), "a NONE resource needs a legal basis");
    r.legal_basis = "Health Records Act s.4";
    assert_int_equal(h_call(&h, HEALTH, SIG_O1, "catalog", "register", &a.base), 0);
    h_close(&h);
}

static void catalog_register_malformed_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    Bex__FieldDef f[2] = {BEX__FIELD_DEF__INIT, BEX__FIELD_DEF__INIT};
    Bex__FieldDef *fp[2] = {&f[0], &f[1]};
    f[0].name = "plate";
    f[0].type = BEX__FIELD_TYPE__FIELD_STRING;
    f[1].name = "plate";
    f[1].type = BEX__FIELD_TYPE__FIELD_INT;
    Bex__Resource r = BEX__RESOURCE__INIT;
    r.id = "city.traffic/v";
    r.title = "T";
    r.fields = fp;
    r.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = &r;
    r.n_fields = 0;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    r.n_fields = 2;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    assert_string_equal(h_msg(&h), "field plate is listed twice");
    f[1].name = "kind";
    f[1].type = BEX__FIELD_TYPE__FIELD_ENUM;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    char *values[] = {"speeding", "parking"};
    f[1].enum_values = values;
    f[1].n_enum_values = 2;
    f[0].type = 99;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    f[0].type = BEX__FIELD_TYPE__FIELD_STRING;
    r.share_type = 0;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    r.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    r.title = "bad\ncontrol";
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    r.title = "";
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    r.title = "Violations";
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), 0);
    Bex__CatalogPutArgs none = BEX__CATALOG_PUT_ARGS__INIT;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &none.base), BEX_EINVAL);
    h_close(&h);
}

static void catalog_update_bumps_version_owner_only(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/v", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    Bex__Resource *r = get_resource(&h, "city.traffic/v");
    assert_non_null(r);
    free(r->title);
    r->title = "Renamed";
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = r;
    h_advance(&h, 5000);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "update", &a.base), 0);
    /* The contract keeps the owner whatever the argument says. */
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "catalog", "update", &a.base), BEX_EPERM);
    r->title = (char *)protobuf_c_empty_string;
    contract_result_free(&r->base);
    r = get_resource(&h, "city.traffic/v");
    assert_string_equal(r->title, "Renamed");
    assert_int_equal(r->version, 2);
    assert_int_equal(r->updated_ms, H_T0 + 5000);
    contract_result_free(&r->base);
    h_close(&h);
}

static void catalog_none_or_withdraw_needs_no_live_grants(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/v", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(&h, &id, POLICE, "city.traffic/v", BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1,
                               H_T0 + H_DAY),
                     0);
    Bex__Resource *r = get_resource(&h, "city.traffic/v");
    r->share_type = BEX__SHARE_TYPE__SHARE_NONE;
    r->legal_basis = strdup("Statute 9");
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = r;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "update", &a.base), BEX_ESTATE);
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.traffic/v";
    w.reason = "replaced";
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base), BEX_ESTATE);
    /* Once the grant is revoked both go through, and the resource is closed to requests. */
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "revoke", id), 0);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "update", &a.base), 0);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base), 0);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base), BEX_ESTATE);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "update", &a.base), BEX_ESTATE);
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "catalog", "withdraw", &w.base), BEX_EPERM);
    contract_result_free(&r->base);
    r = get_resource(&h, "city.traffic/v");
    assert_int_equal(r->status, BEX__RESOURCE_STATUS__RESOURCE_WITHDRAWN);
    assert_int_equal(r->version, 3);
    contract_result_free(&r->base);
    h_close(&h);
}

static void catalog_list_filters_and_pages(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/a", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/b", BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/c", BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_register(&h, POLICE, "city.police/d", BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    Bex__CatalogListArgs q = BEX__CATALOG_LIST_ARGS__INIT;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "catalog", "list", &q.base), 0);
    assert_int_equal(((Bex__CatalogList *)m)->n_resources, 4);
    contract_result_free(m);
    q.owner = "city.traffic";
    q.share_type = BEX__SHARE_TYPE__SHARE_CONDITIONAL;
    q.limit = 1;
    assert_int_equal(h_query(&h, &m, "catalog", "list", &q.base), 0);
    Bex__CatalogList *l = (Bex__CatalogList *)m;
    assert_int_equal(l->n_resources, 1);
    assert_string_equal(l->resources[0]->id, "city.traffic/b");
    uint8_t cur[CONTRACT_KEY_BYTES_MAX];
    memcpy(cur, l->next_cursor.data, l->next_cursor.len);
    q.cursor.data = cur;
    q.cursor.len = l->next_cursor.len;
    contract_result_free(m);
    assert_int_equal(h_query(&h, &m, "catalog", "list", &q.base), 0);
    l = (Bex__CatalogList *)m;
    assert_int_equal(l->n_resources, 1);
    assert_string_equal(l->resources[0]->id, "city.traffic/c");
    contract_result_free(m);
    /* A cursor from another listing is refused. */
    q.owner = "city.police";
    assert_int_equal(h_query(&h, &m, "catalog", "list", &q.base), BEX_EINVAL);
    q.owner = "Not An Id";
    q.cursor.len = 0;
    assert_int_equal(h_query(&h, &m, "catalog", "list", &q.base), BEX_EINVAL);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(catalog_register_and_get),
        cmocka_unit_test(catalog_register_by_non_owner_refused),
        cmocka_unit_test(catalog_register_duplicate_refused),
        cmocka_unit_test(catalog_none_needs_legal_basis),
        cmocka_unit_test(catalog_register_malformed_refused),
        cmocka_unit_test(catalog_update_bumps_version_owner_only),
        cmocka_unit_test(catalog_none_or_withdraw_needs_no_live_grants),
        cmocka_unit_test(catalog_list_filters_and_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
