/* Tests of the record, access and verify contracts, with one end-to-end run in real crypto. */
#include "contracts_harness.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <secp256k1_ecdh.h>

#define RES "city.traffic/violations"

static const char *const FIELDS_PLATE[] = {"plate"};
static const char *const FIELDS_PLATE_AMOUNT[] = {"plate", "amount"};
static const char *const FIELDS_OWNER[] = {"owner_name"};
static const uint8_t KEY1[32] = {1, 2, 3};
static const uint8_t KEY2[32] = {9, 9, 9};

/* A CONDITIONAL resource with an approved READ grant (plate, amount) for police. */
static uint64_t setup_granted(struct harness *h, uint64_t expiry_ms)
{
    assert_int_equal(h_register(h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t id = 0;
    assert_int_equal(h_request(h, &id, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE_AMOUNT, 2, expiry_ms), 0);
    assert_int_equal(h_act(h, TRAFFIC, SIG_O1 | SIG_O2, "approve", id), 0);
    assert_int_equal(h_publish(h, TRAFFIC, RES, KEY1, 1), 0);
    return id;
}

static Bex__Access *get_access(struct harness *h, uint64_t id)
{
    Bex__IdArgs q = BEX__ID_ARGS__INIT;
    q.id = id;
    ProtobufCMessage *m = NULL;
    assert_int_equal(h_query(h, &m, "access", "get", &q.base), 0);
    return (Bex__Access *)m;
}

/* Publishes one field of RES as given (sealed when plaintext is NULL). */
static int publish_one(struct harness *h, int owner, const char *resource, const uint8_t *key, size_t key_len,
                       const char *field, const char *plaintext, size_t ct_len, size_t wk_len)
{
    static uint8_t ct[CONTRACT_CIPHERTEXT_BYTES_MAX + 16], wk[256];
    Bex__Sealed s = BEX__SEALED__INIT;
    h_blob(&s.ciphertext, ct, ct_len, 0x44);
    h_blob(&s.wrapped_key, wk, wk_len, 0x55);
    Bex__RecordField f = BEX__RECORD_FIELD__INIT;
    Bex__RecordField *fp = &f;
    f.name = (char *)field;
    if (plaintext) {
        f.value_case = BEX__RECORD_FIELD__VALUE_PLAINTEXT;
        f.plaintext = (char *)plaintext;
    } else {
        f.value_case = BEX__RECORD_FIELD__VALUE_SEALED;
        f.sealed = &s;
    }
    Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;
    a.resource = (char *)resource;
    a.key.data = (uint8_t *)key;
    a.key.len = key_len;
    a.version = 1;
    a.n_fields = 1;
    a.fields = &fp;
    return h_call(h, owner, SIG_O1, "record", "publish", &a.base);
}

static void record_publish_by_non_owner_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_publish(&h, POLICE, RES, KEY1, 1), BEX_EPERM);
    assert_string_equal(h_msg(&h), "only the owner city.traffic publishes to city.traffic/violations");
    assert_int_equal(h_publish(&h, TRAFFIC, "city.traffic/none", KEY1, 1), BEX_ENOTFOUND);
    assert_int_equal(h_publish(&h, TRAFFIC, RES, KEY1, 1), 0);
    h_close(&h);
}

static void record_plaintext_only_for_unconditional(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/open", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL),
                     0);
    assert_int_equal(h_register(&h, HEALTH, "state.health/closed", BEX__SHARE_TYPE__SHARE_NONE, "*", NULL), 0);
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "plate", "AB-123", 0, 0), BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "plaintext plate refused: city.traffic/violations is not UNCONDITIONAL");
    assert_int_equal(publish_one(&h, HEALTH, "state.health/closed", KEY1, 32, "plate", "AB-123", 0, 0),
                     BEX_EREFUSED);
    /* Sensitive fields never go in clear, even on an open resource. */
    assert_int_equal(publish_one(&h, TRAFFIC, "city.traffic/open", KEY1, 32, "owner_name", "Jane", 0, 0),
                     BEX_EREFUSED);
    /* An open resource takes plaintext and any short record key. */
    assert_int_equal(publish_one(&h, TRAFFIC, "city.traffic/open", (const uint8_t *)"AB-123", 6, "plate", "AB-123",
                                 0, 0),
                     0);
    /* A closed one needs a 32-byte keyed hash as key. */
    assert_int_equal(publish_one(&h, TRAFFIC, RES, (const uint8_t *)"AB-123", 6, "plate", NULL, 64, 93), BEX_EINVAL);
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "plate", NULL, 64, 93), 0);
    assert_int_equal(publish_one(&h, HEALTH, "state.health/closed", KEY1, 32, "plate", NULL, 64, 93), 0);
    h_close(&h);
}

static void record_publish_checks_values(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "colour", NULL, 64, 93), BEX_EINVAL);
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "plate", NULL, 10, 93), BEX_EINVAL);
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "plate", NULL, 64, 40), BEX_EINVAL);
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "plate", NULL, 64, 200), BEX_EINVAL);
    /* A ciphertext over its own limit (the arguments are still within theirs). */
    assert_int_equal(publish_one(&h, TRAFFIC, RES, KEY1, 32, "plate", NULL, CONTRACT_CIPHERTEXT_BYTES_MAX + 1, 93),
                     BEX_EINVAL);
    Bex__RecordField f = BEX__RECORD_FIELD__INIT;
    Bex__RecordField *fp[2] = {&f, &f};
    f.name = "plate";
    Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;
    a.resource = RES;
    a.key.data = (uint8_t *)KEY1;
    a.key.len = 32;
    a.version = 1;
    a.n_fields = 1;
    a.fields = fp;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "record", "publish", &a.base), BEX_EINVAL);
    assert_string_equal(h_msg(&h), "field plate has no value");
    Bex__Sealed s = BEX__SEALED__INIT;
    uint8_t ct[64], wk[93];
    h_blob(&s.ciphertext, ct, sizeof(ct), 1);
    h_blob(&s.wrapped_key, wk, sizeof(wk), 2);
    f.value_case = BEX__RECORD_FIELD__VALUE_SEALED;
    f.sealed = &s;
    a.n_fields = 2;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "record", "publish", &a.base), BEX_EINVAL);
    a.n_fields = 1;
    a.version = 0;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "record", "publish", &a.base), BEX_EINVAL);
    h_close(&h);
}

static void record_versions_must_increase(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    assert_int_equal(h_publish(&h, TRAFFIC, RES, KEY1, 3), 0);
    assert_int_equal(h_publish(&h, TRAFFIC, RES, KEY1, 3), BEX_ESTATE);
    assert_string_equal(h_msg(&h), "version 3 is not above 3");
    assert_int_equal(h_publish(&h, TRAFFIC, RES, KEY1, 2), BEX_ESTATE);
    assert_int_equal(h_publish(&h, TRAFFIC, RES, KEY1, 4), 0);
    assert_int_equal(h_publish(&h, TRAFFIC, RES, KEY2, 1), 0);
    Bex__RecordGetArgs g = BEX__RECORD_GET_ARGS__INIT;
    g.resource = RES;
    g.key.data = (uint8_t *)KEY1;
    g.key.len = 32;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "record", "get", &g.base), 0);
    Bex__Record *r = (Bex__Record *)m;
    assert_int_equal(r->version, 4);
    assert_string_equal(r->owner, "city.traffic");
    assert_int_equal(r->n_fields, 3);
    assert_int_equal(r->fields[0]->value_case, BEX__RECORD_FIELD__VALUE_SEALED);
    contract_result_free(m);
    Bex__RecordListArgs l = BEX__RECORD_LIST_ARGS__INIT;
    l.resource = RES;
    l.limit = 1;
    assert_int_equal(h_query(&h, &m, "record", "list", &l.base), 0);
    assert_int_equal(((Bex__RecordList *)m)->n_records, 1);
    assert_true(((Bex__RecordList *)m)->next_cursor.len > 0);
    contract_result_free(m);
    l.limit = 0;
    assert_int_equal(h_query(&h, &m, "record", "list", &l.base), 0);
    assert_int_equal(((Bex__RecordList *)m)->n_records, 2);
    assert_int_equal(((Bex__RecordList *)m)->next_cursor.len, 0);
    contract_result_free(m);
    h_close(&h);
}

static int share_index(struct harness *h, int agency, unsigned sigs, uint64_t grant_id)
{
    uint8_t wk[93];
    Bex__RecordShareIndexArgs a = BEX__RECORD_SHARE_INDEX_ARGS__INIT;
    a.grant_id = grant_id;
    h_blob(&a.wrapped_index_key, wk, sizeof(wk), 0x66);
    return h_call(h, agency, sigs, "record", "share_index", &a.base);
}

static void record_share_index_for_active_grant_only(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    uint64_t id = setup_granted(&h, H_T0 + 10 * H_DAY);
    assert_int_equal(share_index(&h, POLICE, SIG_O1, id), BEX_EPERM);
    assert_int_equal(share_index(&h, TRAFFIC, SIG_NODE, id), 0);
    Bex__RecordIndexKeyArgs q = BEX__RECORD_INDEX_KEY_ARGS__INIT;
    q.resource = RES;
    q.consumer = "city.police";
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "record", "index_key", &q.base), 0);
    assert_int_equal(((Bex__IndexKeyShare *)m)->grant_id, id);
    assert_int_equal(((Bex__IndexKeyShare *)m)->wrapped_index_key.len, 93);
    contract_result_free(m);
    q.consumer = "city.tax";
    assert_int_equal(h_query(&h, &m, "record", "index_key", &q.base), BEX_ENOTFOUND);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "revoke", id), 0);
    assert_int_equal(share_index(&h, TRAFFIC, SIG_NODE, id), BEX_EREFUSED);
    uint64_t pending = 0;
    assert_int_equal(h_request(&h, &pending, TAX, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, H_T0 + H_DAY), 0);
    assert_int_equal(share_index(&h, TRAFFIC, SIG_NODE, pending), BEX_EREFUSED);
    h_close(&h);
}

static void access_without_grant_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    setup_granted(&h, H_T0 + 10 * H_DAY);
    assert_int_equal(h_access(&h, NULL, TAX, RES, KEY1), BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "city.tax has no active grant on city.traffic/violations");
    /* A VERIFY grant does not open READ access. */
    assert_int_equal(h_request(&h, NULL, HEALTH, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_OWNER, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", 2), 0);
    assert_int_equal(h_access(&h, NULL, HEALTH, RES, KEY1), BEX_EREFUSED);
    /* The record must exist. */
    assert_int_equal(h_access(&h, NULL, POLICE, RES, KEY2), BEX_ENOTFOUND);
    uint64_t id = 0;
    assert_int_equal(h_access(&h, &id, POLICE, RES, KEY1), 0);
    Bex__Access *x = get_access(&h, id);
    assert_int_equal(x->status, BEX__ACCESS_STATUS__ACCESS_OPEN);
    assert_int_equal(x->grant_id, 1);
    assert_int_equal(x->record_version, 1);
    assert_string_equal(x->owner, "city.traffic");
    contract_result_free(&x->base);
    h_close(&h);
}

static void access_release_rules(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    setup_granted(&h, H_T0 + 10 * H_DAY);
    uint64_t id = 0;
    assert_int_equal(h_access(&h, &id, POLICE, RES, KEY1), 0);
    static const char *const outside[] = {"plate", "owner_name"};
    static const char *const twice[] = {"plate", "plate"};
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, outside, 2), BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "field owner_name is outside grant 1");
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, twice, 2), BEX_EINVAL);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id + 1, FIELDS_PLATE, 1), BEX_ENOTFOUND);
    assert_int_equal(h_release(&h, POLICE, SIG_NODE, id, FIELDS_PLATE, 1), BEX_EPERM);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, FIELDS_PLATE_AMOUNT, 2), 0);
    Bex__Access *x = get_access(&h, id);
    assert_int_equal(x->status, BEX__ACCESS_STATUS__ACCESS_RELEASED);
    assert_int_equal(x->n_keys, 2);
    assert_string_equal(x->keys[1]->field, "amount");
    contract_result_free(&x->base);
    /* One release per access. */
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, FIELDS_PLATE, 1), BEX_ESTATE);
    h_close(&h);
}

static void access_release_never_sensitive(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    setup_granted(&h, H_T0 + 10 * H_DAY);
    uint64_t id = 0;
    assert_int_equal(h_access(&h, &id, POLICE, RES, KEY1), 0);
    /* The owner marks "plate" sensitive after granting it: it can no longer be released. */
    Bex__NameArgs q = BEX__NAME_ARGS__INIT;
    q.id = RES;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "catalog", "get", &q.base), 0);
    Bex__Resource *r = (Bex__Resource *)m;
    r->fields[0]->sensitive = 1;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = r;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "update", &a.base), 0);
    contract_result_free(m);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, FIELDS_PLATE, 1), BEX_EREFUSED);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, FIELDS_PLATE_AMOUNT + 1, 1), 0);
    h_close(&h);
}

static void access_after_revoke_or_expiry_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    uint64_t g = setup_granted(&h, H_T0 + 10 * H_DAY);
    uint64_t open1 = 0, open2 = 0;
    assert_int_equal(h_access(&h, &open1, POLICE, RES, KEY1), 0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "revoke", g), 0);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, open1, FIELDS_PLATE, 1), BEX_EREFUSED);
    assert_string_equal(h_msg(&h), "grant 1 was revoked");
    assert_int_equal(h_access(&h, NULL, POLICE, RES, KEY1), BEX_EREFUSED);

    /* A fresh grant, then time passes its expiry. */
    uint64_t g2 = 0;
    assert_int_equal(h_request(&h, &g2, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE, 1, h.time_ms + H_DAY),
                     0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", g2), 0);
    assert_int_equal(h_access(&h, &open2, POLICE, RES, KEY1), 0);
    h_advance(&h, H_DAY);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, open2, FIELDS_PLATE, 1), BEX_EEXPIRED);
    assert_int_equal(h_access(&h, NULL, POLICE, RES, KEY1), BEX_EEXPIRED);
    h_close(&h);
}

static void access_deny_closes(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    setup_granted(&h, H_T0 + 10 * H_DAY);
    uint64_t id = 0;
    assert_int_equal(h_access(&h, &id, POLICE, RES, KEY1), 0);
    Bex__AccessDenyArgs d = BEX__ACCESS_DENY_ARGS__INIT;
    d.access_id = id;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "access", "deny", &d.base), BEX_EINVAL);
    d.reason = "record under seal by court order";
    assert_int_equal(h_call(&h, TRAFFIC, SIG_NODE, "access", "deny", &d.base), BEX_EPERM);
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "access", "deny", &d.base), BEX_EPERM);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "access", "deny", &d.base), 0);
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, id, FIELDS_PLATE, 1), BEX_ESTATE);
    Bex__AccessListArgs q = BEX__ACCESS_LIST_ARGS__INIT;
    q.consumer = "city.police";
    q.status = BEX__ACCESS_STATUS__ACCESS_DENIED;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "access", "list", &q.base), 0);
    Bex__AccessList *l = (Bex__AccessList *)m;
    assert_int_equal(l->n_accesses, 1);
    assert_string_equal(l->accesses[0]->reason, "record under seal by court order");
    contract_result_free(m);
    q.status = BEX__ACCESS_STATUS__ACCESS_OPEN;
    assert_int_equal(h_query(&h, &m, "access", "list", &q.base), 0);
    assert_int_equal(((Bex__AccessList *)m)->n_accesses, 0);
    contract_result_free(m);
    h_close(&h);
}

static int verify_req(struct harness *h, uint64_t *id, int consumer, const char *field, const uint8_t *claim,
                      size_t claim_len)
{
    Bex__VerifyRequestArgs a = BEX__VERIFY_REQUEST_ARGS__INIT;
    a.resource = RES;
    a.record_key.data = (uint8_t *)KEY1;
    a.record_key.len = 32;
    a.field = (char *)field;
    a.claim.data = (uint8_t *)claim;
    a.claim.len = claim_len;
    a.purpose = "benefit eligibility";
    int code = h_call(h, consumer, SIG_O1, "verify", "request", &a.base);
    if (code == 0 && id)
        *id = h_result_id(h, &bex__verify_result__descriptor);
    return code;
}

static int verify_answer(struct harness *h, int agency, unsigned sigs, uint64_t id, bool match)
{
    Bex__VerifyAnswerArgs a = BEX__VERIFY_ANSWER_ARGS__INIT;
    a.verify_id = id;
    a.match = match;
    return h_call(h, agency, sigs, "verify", "answer", &a.base);
}

static void verify_needs_grant_covering_field(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    setup_granted(&h, H_T0 + 10 * H_DAY);
    uint8_t claim[100];
    memset(claim, 7, sizeof(claim));
    assert_int_equal(verify_req(&h, NULL, HEALTH, "owner_name", claim, sizeof(claim)), BEX_EREFUSED);
    /* police's READ grant covers plate, not owner_name. */
    assert_int_equal(verify_req(&h, NULL, POLICE, "owner_name", claim, sizeof(claim)), BEX_EREFUSED);
    assert_int_equal(verify_req(&h, NULL, POLICE, "colour", claim, sizeof(claim)), BEX_EINVAL);
    assert_int_equal(verify_req(&h, NULL, POLICE, "plate", claim, 20), BEX_EINVAL);
    uint64_t id = 0;
    assert_int_equal(verify_req(&h, &id, POLICE, "plate", claim, sizeof(claim)), 0);
    /* A VERIFY grant on the sensitive field is what health needs. */
    uint64_t g = 0;
    assert_int_equal(h_request(&h, &g, HEALTH, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_OWNER, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", g), 0);
    uint64_t v = 0;
    assert_int_equal(verify_req(&h, &v, HEALTH, "owner_name", claim, sizeof(claim)), 0);
    assert_int_equal(verify_answer(&h, HEALTH, SIG_NODE, v, true), BEX_EPERM);
    assert_int_equal(verify_answer(&h, TRAFFIC, SIG_NODE, v, false), 0);
    assert_int_equal(verify_answer(&h, TRAFFIC, SIG_NODE, v, true), BEX_ESTATE);
    Bex__IdArgs q = BEX__ID_ARGS__INIT;
    q.id = v;
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "verify", "get", &q.base), 0);
    Bex__Verification *ver = (Bex__Verification *)m;
    assert_int_equal(ver->status, BEX__VERIFY_STATUS__VERIFY_ANSWERED);
    assert_false(ver->match);
    assert_string_equal(ver->consumer, "state.health");
    contract_result_free(m);
    /* Once the grant is revoked the open verification gets no answer. */
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1, "revoke", 1), 0);
    assert_int_equal(verify_answer(&h, TRAFFIC, SIG_NODE, id, true), BEX_EREFUSED);
    assert_int_equal(verify_answer(&h, TRAFFIC, SIG_NODE, 99, true), BEX_ENOTFOUND);
    h_close(&h);
}

/* ----------------------------------------------------- real crypto, end to end */

/* AES-256-GCM: out = nonce(12) || ct || tag(16). */
static size_t aead_seal(uint8_t *out, const uint8_t key[32], const uint8_t *pt, size_t n)
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int len;
    assert_int_equal(RAND_bytes(out, 12), 1);
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, out), 1);
    assert_int_equal(EVP_EncryptUpdate(x, out + 12, &len, pt, (int)n), 1);
    assert_int_equal(EVP_EncryptFinal_ex(x, out + 12 + len, &len), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + n), 1);
    EVP_CIPHER_CTX_free(x);
    return 12 + n + 16;
}

static size_t aead_open(uint8_t *out, const uint8_t key[32], const uint8_t *in, size_t n)
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int len;
    size_t m = n - 28;
    assert_int_equal(EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, in), 1);
    assert_int_equal(EVP_DecryptUpdate(x, out, &len, in + 12, (int)m), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + 12 + m)), 1);
    assert_int_equal(EVP_DecryptFinal_ex(x, out + len, &len), 1);
    EVP_CIPHER_CTX_free(x);
    return m;
}

/* ECIES as the node does it: ephemeral key, ECDH, SHA-256 of the point, AES-256-GCM. */
static size_t ecies_seal(uint8_t *out, const uint8_t to[33], const uint8_t *pt, size_t n)
{
    secp256k1_context *ctx = h_secp();
    uint8_t esk[32], shared[32];
    secp256k1_pubkey epk, rpk;
    size_t plen = 33;
    assert_int_equal(RAND_bytes(esk, 32), 1);
    assert_int_equal(secp256k1_ec_pubkey_create(ctx, &epk, esk), 1);
    assert_int_equal(secp256k1_ec_pubkey_serialize(ctx, out, &plen, &epk, SECP256K1_EC_COMPRESSED), 1);
    assert_int_equal(secp256k1_ec_pubkey_parse(ctx, &rpk, to, 33), 1);
    assert_int_equal(secp256k1_ecdh(ctx, shared, &rpk, esk, NULL, NULL), 1);
    return 33 + aead_seal(out + 33, shared, pt, n);
}

static size_t ecies_open(uint8_t *out, const uint8_t sk[32], const uint8_t *in, size_t n)
{
    secp256k1_context *ctx = h_secp();
    secp256k1_pubkey epk;
    uint8_t shared[32];
    assert_int_equal(secp256k1_ec_pubkey_parse(ctx, &epk, in, 33), 1);
    assert_int_equal(secp256k1_ecdh(ctx, shared, &epk, sk, NULL, NULL), 1);
    return aead_open(out, shared, in + 33, n - 33);
}

struct plain_scan {
    const char *needle;
    size_t hits;
};

static int scan_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct plain_scan *s = user;
    size_t n = strlen(s->needle);
    (void)key, (void)key_len;
    for (size_t i = 0; i + n <= val_len; i++)
        if (memcmp(val + i, s->needle, n) == 0)
            s->hits++;
    return 0;
}

static size_t state_hits(struct harness *h, const char *needle)
{
    struct plain_scan s = {.needle = needle};
    assert_int_equal(h->st.iter(h->st.user, "", 0, NULL, 0, scan_cb, &s), 0);
    return s.hits;
}

static void record_end_to_end_with_real_crypto(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    const char *values[3] = {"AB-123-XY", "Jane Q. Doe", "150.00"};
    static const char *const names[3] = {"plate", "owner_name", "amount"};
    uint8_t owner_sk[32], police_sk[32];
    h_seckey(owner_sk, "city.traffic", 200);
    h_seckey(police_sk, "city.police", 200);

    assert_int_equal(h_register(&h, TRAFFIC, RES, BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL), 0);
    uint64_t g = 0;
    assert_int_equal(h_request(&h, &g, POLICE, RES, BEX__ACCESS_MODE__MODE_READ, FIELDS_PLATE_AMOUNT, 2, H_T0 + H_DAY),
                     0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", g), 0);

    /* The owner's client: keyed-hash record key, per-field data keys wrapped to itself. */
    uint8_t index_key[32], rkey[32], dk[3][32], ct[3][64], wk[3][96];
    unsigned int rlen = 32;
    assert_int_equal(RAND_bytes(index_key, 32), 1);
    HMAC(EVP_sha256(), index_key, 32, (const uint8_t *)values[0], strlen(values[0]), rkey, &rlen);
    Bex__Sealed s[3];
    Bex__RecordField f[3];
    Bex__RecordField *fp[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(RAND_bytes(dk[i], 32), 1);
        bex__sealed__init(&s[i]);
        s[i].ciphertext.data = ct[i];
        s[i].ciphertext.len = aead_seal(ct[i], dk[i], (const uint8_t *)values[i], strlen(values[i]));
        s[i].wrapped_key.data = wk[i];
        s[i].wrapped_key.len = ecies_seal(wk[i], h.ag[TRAFFIC].enc, dk[i], 32);
        assert_int_equal(s[i].wrapped_key.len, 93);
        bex__record_field__init(&f[i]);
        f[i].name = (char *)names[i];
        f[i].value_case = BEX__RECORD_FIELD__VALUE_SEALED;
        f[i].sealed = &s[i];
        fp[i] = &f[i];
    }
    Bex__RecordPublishArgs pub = BEX__RECORD_PUBLISH_ARGS__INIT;
    pub.resource = RES;
    pub.key.data = rkey;
    pub.key.len = 32;
    pub.version = 1;
    pub.n_fields = 3;
    pub.fields = fp;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "record", "publish", &pub.base), 0);
    /* No plaintext anywhere in state. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(state_hits(&h, values[i]), 0);

    /* The owner's node shares the index key with the grantee. */
    uint8_t wrapped_index[96];
    Bex__RecordShareIndexArgs si = BEX__RECORD_SHARE_INDEX_ARGS__INIT;
    si.grant_id = g;
    si.wrapped_index_key.data = wrapped_index;
    si.wrapped_index_key.len = ecies_seal(wrapped_index, h.ag[POLICE].enc, index_key, 32);
    assert_int_equal(h_call(&h, TRAFFIC, SIG_NODE, "record", "share_index", &si.base), 0);

    /* The consumer finds the record key from the plate it knows. */
    Bex__RecordIndexKeyArgs ik = BEX__RECORD_INDEX_KEY_ARGS__INIT;
    ik.resource = RES;
    ik.consumer = "city.police";
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "record", "index_key", &ik.base), 0);
    uint8_t got_index[32], my_rkey[32];
    const Bex__IndexKeyShare *share = (const Bex__IndexKeyShare *)m;
    assert_int_equal(ecies_open(got_index, police_sk, share->wrapped_index_key.data, share->wrapped_index_key.len), 32);
    contract_result_free(m);
    HMAC(EVP_sha256(), got_index, 32, (const uint8_t *)values[0], strlen(values[0]), my_rkey, &rlen);
    assert_memory_equal(my_rkey, rkey, 32);
    uint64_t acc = 0;
    assert_int_equal(h_access(&h, &acc, POLICE, RES, my_rkey), 0);

    /* The owner's node re-wraps the granted field keys for the consumer. */
    uint8_t rw[2][96];
    Bex__FieldKey fk[2];
    Bex__FieldKey *fkp[2];
    const int granted[2] = {0, 2};
    for (int i = 0; i < 2; i++) {
        uint8_t key[32];
        const Bex__Sealed *sealed = &s[granted[i]];
        assert_int_equal(ecies_open(key, owner_sk, sealed->wrapped_key.data, sealed->wrapped_key.len), 32);
        bex__field_key__init(&fk[i]);
        fk[i].field = (char *)names[granted[i]];
        fk[i].wrapped_key.data = rw[i];
        fk[i].wrapped_key.len = ecies_seal(rw[i], h.ag[POLICE].enc, key, 32);
        fkp[i] = &fk[i];
    }
    Bex__AccessReleaseArgs rel = BEX__ACCESS_RELEASE_ARGS__INIT;
    rel.access_id = acc;
    rel.n_keys = 2;
    rel.keys = fkp;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_NODE, "access", "release", &rel.base), 0);

    /* The consumer opens what was released, and only that. */
    Bex__Access *x = get_access(&h, acc);
    Bex__RecordGetArgs rg = BEX__RECORD_GET_ARGS__INIT;
    rg.resource = RES;
    rg.key.data = my_rkey;
    rg.key.len = 32;
    assert_int_equal(h_query(&h, &m, "record", "get", &rg.base), 0);
    const Bex__Record *rec = (const Bex__Record *)m;
    assert_int_equal(x->n_keys, 2);
    for (size_t i = 0; i < x->n_keys; i++) {
        uint8_t key[32], pt[64];
        assert_int_equal(ecies_open(key, police_sk, x->keys[i]->wrapped_key.data, x->keys[i]->wrapped_key.len), 32);
        const Bex__RecordField *rf = NULL;
        for (size_t k = 0; k < rec->n_fields; k++)
            if (strcmp(rec->fields[k]->name, x->keys[i]->field) == 0)
                rf = rec->fields[k];
        assert_non_null(rf);
        size_t n = aead_open(pt, key, rf->sealed->ciphertext.data, rf->sealed->ciphertext.len);
        pt[n] = '\0';
        assert_string_equal((char *)pt, values[granted[i]]);
        assert_string_not_equal(x->keys[i]->field, "owner_name");
    }
    contract_result_free(m);
    contract_result_free(&x->base);

    /* Health verifies the sensitive owner name without ever seeing it. */
    uint64_t vg = 0;
    assert_int_equal(h_request(&h, &vg, HEALTH, RES, BEX__ACCESS_MODE__MODE_VERIFY, FIELDS_OWNER, 1, H_T0 + H_DAY), 0);
    assert_int_equal(h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", vg), 0);
    uint8_t claim[128];
    size_t claim_len = ecies_seal(claim, h.ag[TRAFFIC].enc, (const uint8_t *)values[1], strlen(values[1]));
    Bex__VerifyRequestArgs vr = BEX__VERIFY_REQUEST_ARGS__INIT;
    vr.resource = RES;
    vr.record_key.data = rkey;
    vr.record_key.len = 32;
    vr.field = "owner_name";
    vr.claim.data = claim;
    vr.claim.len = claim_len;
    assert_int_equal(h_call(&h, HEALTH, SIG_O1, "verify", "request", &vr.base), 0);
    uint64_t vid = h_result_id(&h, &bex__verify_result__descriptor);
    /* The owner's node opens the claim and the field, compares, answers. */
    uint8_t claimed[64], key[32], actual[64];
    size_t cn = ecies_open(claimed, owner_sk, claim, claim_len);
    assert_int_equal(ecies_open(key, owner_sk, s[1].wrapped_key.data, s[1].wrapped_key.len), 32);
    size_t an = aead_open(actual, key, s[1].ciphertext.data, s[1].ciphertext.len);
    bool match = cn == an && memcmp(claimed, actual, an) == 0;
    assert_true(match);
    Bex__VerifyAnswerArgs va = BEX__VERIFY_ANSWER_ARGS__INIT;
    va.verify_id = vid;
    va.match = match;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_NODE, "verify", "answer", &va.base), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(state_hits(&h, values[i]), 0);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(record_publish_by_non_owner_refused),
        cmocka_unit_test(record_plaintext_only_for_unconditional),
        cmocka_unit_test(record_publish_checks_values),
        cmocka_unit_test(record_versions_must_increase),
        cmocka_unit_test(record_share_index_for_active_grant_only),
        cmocka_unit_test(access_without_grant_refused),
        cmocka_unit_test(access_release_rules),
        cmocka_unit_test(access_release_never_sensitive),
        cmocka_unit_test(access_after_revoke_or_expiry_refused),
        cmocka_unit_test(access_deny_closes),
        cmocka_unit_test(verify_needs_grant_covering_field),
        cmocka_unit_test(record_end_to_end_with_real_crypto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
