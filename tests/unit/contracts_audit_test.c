/* Tests of the audit trail queries and of the JSON rendering and parsing. */
#include "contracts_harness.h"

#define RES "city.traffic/violations"

static const char *const FIELDS_PLATE[] = {"plate"};
static const uint8_t KEY1[32] = {1};
static const uint8_t KEY2[32] = {2};

static Bex__AuditList *audit(struct harness *h, const Bex__AuditQueryArgs *q)
{
    ProtobufCMessage *m = NULL;
    assert_int_equal(h_query(h, &m, "audit", "query", &q->base), 0);
    return (Bex__AuditList *)m;
}

/* A short history: register at T0+1s, grant at +2s, publish two records at +3s, access at +4s. */
static void history(struct harness *h)
{
    h_advance(h, 1000);
    assert_int_equal(h_register(h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    h_advance(h, 1000);
    assert_int_equal(h_request(h, NULL, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    h_advance(h, 1000);
    assert_int_equal(h_publish(h, TRAFFIC, RES, KEY1, 1), 0);
    assert_int_equal(h_publish(h, TRAFFIC, RES, KEY2, 1), 0);
    h_advance(h, 1000);
    assert_int_equal(h_access(h, NULL, POLICE, RES, KEY1), 0);
    assert_int_equal(h_access(h, NULL, TAX, RES, KEY1), BEX_EREFUSED);
}

static void audit_query_filters_newest_first(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    history(&h);
    Bex__AuditQueryArgs q = BEX__AUDIT_QUERY_ARGS__INIT;
    Bex__AuditList *l = audit(&h, &q);
    assert_int_equal(l->n_entries, 6);
    for (size_t i = 1; i < l->n_entries; i++)
        assert_true(l->entries[i - 1]->height > l->entries[i]->height);
    assert_string_equal(l->entries[0]->action, "access.request");
    assert_string_equal(l->entries[0]->actor, "city.tax");
    assert_int_equal(l->entries[0]->code, BEX_EREFUSED);
    assert_string_equal(l->entries[1]->actor, "city.police");
    assert_int_equal(l->entries[1]->access_id, 1);
    assert_int_equal(l->entries[1]->grant_id, 1);
    contract_result_free(&l->base);

    /* By record key: the publish of KEY1 and both access requests. */
    q.resource = RES;
    q.record_key.data = (uint8_t *)KEY1;
    q.record_key.len = 32;
    l = audit(&h, &q);
    assert_int_equal(l->n_entries, 3);
    assert_string_equal(l->entries[2]->action, "record.publish");
    contract_result_free(&l->base);

    /* By agency, and by resource with a time window. */
    memset(&q.record_key, 0, sizeof(q.record_key));
    q.resource = (char *)protobuf_c_empty_string;
    q.agency = "city.police";
    l = audit(&h, &q);
    assert_int_equal(l->n_entries, 2);
    contract_result_free(&l->base);
    q.agency = (char *)protobuf_c_empty_string;
    q.resource = RES;
    q.since_ms = H_T0 + 2000;
    q.until_ms = H_T0 + 3000;
    l = audit(&h, &q);
    assert_int_equal(l->n_entries, 3);
    assert_string_equal(l->entries[2]->action, "grant.request");
    assert_int_equal(l->next_cursor.len, 0);
    contract_result_free(&l->base);

    /* Paging through all six two at a time. */
    Bex__AuditQueryArgs p = BEX__AUDIT_QUERY_ARGS__INIT;
    p.limit = 2;
    uint8_t cur[CONTRACT_KEY_BYTES_MAX];
    size_t seen = 0, pages = 0;
    uint64_t last_height = UINT64_MAX;
    for (;;) {
        l = audit(&h, &p);
        pages++;
        for (size_t i = 0; i < l->n_entries; i++) {
            assert_true(l->entries[i]->height < last_height);
            last_height = l->entries[i]->height;
        }
        seen += l->n_entries;
        bool more = l->next_cursor.len > 0;
        if (more) {
            memcpy(cur, l->next_cursor.data, l->next_cursor.len);
            p.cursor.data = cur;
            p.cursor.len = l->next_cursor.len;
        }
        contract_result_free(&l->base);
        if (!more)
            break;
    }
    assert_int_equal(seen, 6);
    assert_int_equal(pages, 3);
    h_close(&h);
}

static void audit_query_refuses_bad_filters(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    ProtobufCMessage *m;
    Bex__AuditQueryArgs q = BEX__AUDIT_QUERY_ARGS__INIT;
    q.record_key.data = (uint8_t *)KEY1;
    q.record_key.len = 32;
    assert_int_equal(h_query(&h, &m, "audit", "query", &q.base), BEX_EINVAL);
    memset(&q.record_key, 0, sizeof(q.record_key));
    q.agency = "../etc";
    assert_int_equal(h_query(&h, &m, "audit", "query", &q.base), BEX_EINVAL);
    q.agency = (char *)protobuf_c_empty_string;
    q.cursor.data = (uint8_t *)"grant/g/0000";
    q.cursor.len = 12;
    assert_int_equal(h_query(&h, &m, "audit", "query", &q.base), BEX_EINVAL);
    /* Undecodable query arguments. */
    static const uint8_t junk[] = {0x0a, 0xff};
    char err[128];
    assert_int_equal(contract_query(&m, err, sizeof(err), &h.st, "audit", "query", junk, sizeof(junk)), -BEX_EDECODE);
    assert_non_null(strstr(err, "AuditQueryArgs"));
    h_close(&h);
}

static void json_render_walks_descriptor(void **state)
{
    (void)state;
    Bex__Grant g = BEX__GRANT__INIT;
    char *fields[] = {"plate", "amount"};
    uint8_t key[3] = {0xab, 0x01, 0xff};
    ProtobufCBinaryData approvals[1] = {{3, key}};
    g.id = 17;
    g.resource = "city.traffic/v";
    g.fields = fields;
    g.n_fields = 2;
    g.mode = BEX__ACCESS_MODE__MODE_VERIFY;
    g.status = BEX__GRANT_STATUS__GRANT_PENDING;
    g.expiry_ms = 1ull << 60;
    g.approvals = approvals;
    g.n_approvals = 1;
    g.overdue = 1;
    g.purpose = "say \"hi\"";
    char *json;
    assert_int_equal(contract_json_render(&json, &g.base), 0);
    assert_non_null(strstr(json, "\"id\":17"));
    assert_non_null(strstr(json, "\"fields\":[\"plate\",\"amount\"]"));
    assert_non_null(strstr(json, "\"mode\":\"MODE_VERIFY\""));
    assert_non_null(strstr(json, "\"status\":\"GRANT_PENDING\""));
    assert_non_null(strstr(json, "\"expiry_ms\":\"1152921504606846976\""));
    assert_non_null(strstr(json, "\"approvals\":[\"ab01ff\"]"));
    assert_non_null(strstr(json, "\"overdue\":true"));
    assert_non_null(strstr(json, "\"purpose\":\"say \\\"hi\\\"\""));
    free(json);

    /* A oneof shows only its set member. */
    Bex__RecordField f = BEX__RECORD_FIELD__INIT;
    f.name = "plate";
    f.value_case = BEX__RECORD_FIELD__VALUE_PLAINTEXT;
    f.plaintext = "AB-123";
    assert_int_equal(contract_json_render(&json, &f.base), 0);
    assert_string_equal(json, "{\"name\":\"plate\",\"plaintext\":\"AB-123\"}");
    free(json);
}

static void json_parse_roundtrip_and_errors(void **state)
{
    (void)state;
    const char *text = "{\"resource\":{\"id\":\"city.traffic/v\",\"title\":\"T\",\"fields\":[{\"name\":\"plate\","
                       "\"type\":\"FIELD_STRING\",\"sensitive\":true},{\"name\":\"kind\",\"type\":5,"
                       "\"enum_values\":[\"a\",\"b\"]}],\"share_type\":\"SHARE_CONDITIONAL\",\"version\":\"42\"}}";
    ProtobufCMessage *m;
    char err[160];
    assert_int_equal(contract_json_parse(&m, err, sizeof(err), &bex__catalog_put_args__descriptor, text, strlen(text)),
                     0);
    Bex__CatalogPutArgs *a = (Bex__CatalogPutArgs *)m;
    assert_string_equal(a->resource->id, "city.traffic/v");
    assert_int_equal(a->resource->n_fields, 2);
    assert_true(a->resource->fields[0]->sensitive);
    assert_int_equal(a->resource->fields[1]->type, BEX__FIELD_TYPE__FIELD_ENUM);
    assert_int_equal(a->resource->share_type, BEX__SHARE_TYPE__SHARE_CONDITIONAL);
    assert_int_equal(a->resource->version, 42);
    /* Render and parse again: the same encoding. */
    char *json;
    assert_int_equal(contract_json_render(&json, m), 0);
    ProtobufCMessage *m2;
    assert_int_equal(contract_json_parse(&m2, err, sizeof(err), &bex__catalog_put_args__descriptor, json, strlen(json)),
                     0);
    uint8_t b1[1024], b2[1024];
    size_t n1 = protobuf_c_message_pack(m, b1), n2 = protobuf_c_message_pack(m2, b2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(json);
    contract_result_free(m);
    contract_result_free(m2);

    static const struct {
        const char *json, *err;
    } bad[] = {
        {"{\"nope\":1}", "has no field nope"},
        {"{\"id\":\"xyz\"}", "expected an integer"},
        {"{\"id\":-1}", "negative"},
        {"[1]", "expected an object"},
        {"{\"id\":1,\"id\":2}", "JSON"},
        {"{\"cursor\":\"abc\"}", "hex"},
        {"{\"limit\":4294967296}", "out of range"},
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad); i++) {
        const ProtobufCMessageDescriptor *d =
            i < 3 || i == 4 ? &bex__id_args__descriptor : &bex__agency_list_args__descriptor;
        if (i == 0)
            d = &bex__name_args__descriptor;
        err[0] = '\0';
        assert_int_equal(contract_json_parse(&m, err, sizeof(err), d, bad[i].json, strlen(bad[i].json)), -BEX_EDECODE);
        assert_null(m);
        assert_non_null(strstr(err, bad[i].err));
    }
    /* A failure half way through a repeated field frees what was parsed. */
    const char *half = "{\"resource\":{\"fields\":[{\"name\":\"a\"},{\"name\":7}]}}";
    assert_int_equal(contract_json_parse(&m, err, sizeof(err), &bex__catalog_put_args__descriptor, half, strlen(half)),
                     -BEX_EDECODE);
    const char *oneof = "{\"sealed\":{},\"plaintext\":\"x\"}";
    assert_int_equal(contract_json_parse(&m, err, sizeof(err), &bex__record_field__descriptor, oneof, strlen(oneof)),
                     -BEX_EDECODE);
}

static void json_query_for_the_rpc(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    char *out;
    char err[160];
    assert_int_equal(contract_query_json(&out, err, sizeof(err), &h.st, "catalog", "get", "{\"id\":\"" RES "\"}"), 0);
    assert_non_null(strstr(out, "\"share_type\":\"SHARE_CONDITIONAL\""));
    assert_non_null(strstr(out, "\"owner\":\"city.traffic\""));
    free(out);
    assert_int_equal(contract_query_json(&out, err, sizeof(err), &h.st, "catalog", "list", NULL), 0);
    assert_non_null(strstr(out, "\"next_cursor\":\"\""));
    free(out);
    assert_int_equal(contract_query_json(&out, err, sizeof(err), &h.st, "catalog", "get", "{\"id\":\"city.x/none\"}"),
                     -BEX_ENOTFOUND);
    assert_string_equal(err, "resource city.x/none not found");
    assert_int_equal(contract_query_json(&out, err, sizeof(err), &h.st, "catalog", "fly", "{}"), -BEX_EUNKNOWN);

    const ProtobufCMessageDescriptor *ad, *rd;
    assert_int_equal(contract_describe(&ad, &rd, "grant", "method", "approve"), 0);
    assert_ptr_equal(ad, &bex__grant_act_args__descriptor);
    assert_ptr_equal(rd, &bex__grant_result__descriptor);
    assert_int_equal(contract_describe(&ad, &rd, "grant", "query", "approve"), -BEX_EUNKNOWN);
    h_close(&h);
}

static void count_cb(void *user, const char *contract, const char *kind, const char *name)
{
    size_t *n = user;
    const ProtobufCMessageDescriptor *ad, *rd;
    assert_int_equal(contract_describe(&ad, &rd, contract, kind, name), 0);
    assert_non_null(ad);
    assert_non_null(rd);
    (*n)++;
}

static void json_every_entry_point_listed(void **state)
{
    (void)state;
    size_t n = 0;
    contract_list(count_cb, &n);
    /* 15 methods and 14 queries. */
    assert_int_equal(n, 29);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_query_filters_newest_first),
        cmocka_unit_test(audit_query_refuses_bad_filters),
        cmocka_unit_test(json_render_walks_descriptor),
        cmocka_unit_test(json_parse_roundtrip_and_errors),
        cmocka_unit_test(json_query_for_the_rpc),
        cmocka_unit_test(json_every_entry_point_listed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
