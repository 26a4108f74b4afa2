/*
 * contract_args_fuzz.c: the input as the arguments of every contract method
 * and query (contracts/contract.h), on a chain with state to act on.
 *
 * Once per process a memstore chain is built: genesis with four agencies
 * whose officer and node keys are fixed secp256k1 keys, then fixture blocks
 * that register resources of each share type, request, approve and leave
 * pending grants of both modes, publish a record, share its index key, and
 * open an access and a verification. That state is never changed: every
 * block the fuzzer runs is executed and then dropped, not applied.
 *
 * Input: byte 0 picks the sender agency and which of its keys sign (two
 * officers, the node key); byte 1 moves the block time forward (in steps of
 * six hours, so grants expire and reviews fall overdue); the rest is the
 * argument bytes. For each method of contract_list(), a transaction carrying
 * those arguments, with the sender's next nonce and real signatures over its
 * body, runs alone in the next block. Checked:
 * - exec_tx() and exec_block_end() succeed (a negative code is allowed only
 *   for ENOMEM), with exactly one receipt of a known code whose encoding
 *   decodes to the same code, index, height and tx id (SHA-256 of the body),
 *   whose message is printable UTF-8, and which renders as JSON and parses
 *   back to the same message;
 * - the write set is sorted by key without duplicates and always consumes
 *   the sender's nonce and writes an audit entry;
 * - a failed transaction writes nothing but its nonce, audit entries and the
 *   chain head, and has no history or events; a successful one writes its
 *   contract's keys only under "<contract>/", its result decodes as the
 *   method's result message, and running the same block again gives the
 *   same state root, writes and receipt (determinism).
 * Every query of contract_list() then runs with the input's argument bytes:
 * it succeeds with a result, or fails with a documented code; a result
 * renders as JSON and parses back to the same message.
 */
#include "bex.pb-c.h"
#include "contract.h"
#include "crypto.h"
#include "fuzz_util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 4096

#define AGENCIES 4
#define ENTRIES_MAX 1024
#define STORE_BYTES_MAX (4u << 20)
#define T0 1764000000000ull
#define HOUR_MS (3600ull * 1000)
#define DAY_MS (24 * HOUR_MS)
#define ENTRY_MAX 64 /* methods and queries of the registry */
#define SIGNERS 3    /* officers 0 and 1, then the node key */

struct agency {
    const char *id;
    const char *role;
    size_t officers;
    uint32_t threshold;
    struct crypto_seckey sk[SIGNERS];
    struct crypto_pubkey pk[SIGNERS];
    struct crypto_pubkey enc;
    uint64_t nonce; /* last used */
};

struct entry {
    const char *contract;
    const char *name;
    const ProtobufCMessageDescriptor *args;
    const ProtobufCMessageDescriptor *result;
};

static struct {
    bool ready;
    struct memstore *ms;
    struct exec_store st;
    struct exec *e;
    uint64_t height;
    uint64_t time_ms;
    uint8_t root[CONTRACT_HASH_BYTES];
    struct agency ag[AGENCIES];
    struct entry methods[ENTRY_MAX];
    size_t methods_n;
    struct entry queries[ENTRY_MAX];
    size_t queries_n;
} fx = {
    .ag = {
        {.id = "city.traffic", .role = "traffic", .officers = 2, .threshold = 1},
        {.id = "city.police", .role = "police", .officers = 2, .threshold = 2},
        {.id = "state.health", .role = "health", .officers = 2, .threshold = 1},
        {.id = "city.tax", .role = "finance", .officers = 1, .threshold = 1},
    },
};

enum { TRAFFIC, POLICE, HEALTH, TAX };

#define SIG_O1 1u
#define SIG_O2 2u
#define SIG_NODE 4u

static const char *const RESOURCE_C = "city.traffic/violations";
static const char *const RESOURCE_U = "city.traffic/stats";
static const char *const RESOURCE_N = "state.health/cases";
static const uint8_t RECORD_KEY[CONTRACT_RECORD_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};

/* ---------------------------------------------------------------- transactions */

/*
 * Encodes a tx of agency a (signers: SIG_* bits, keys the agency lacks do
 * not sign) into a malloc'd buffer, signed over SHA-256 of its body, and
 * writes that hash (the tx id) to id.
 */
static uint8_t *make_tx(size_t *len, uint8_t id[CONTRACT_HASH_BYTES], const struct agency *a, unsigned signers,
                        uint64_t nonce, uint64_t time_ms, const char *contract, const char *method,
                        const uint8_t *args, size_t args_len)
{
    Bex__TxBody body = BEX__TX_BODY__INIT;
    Bex__Tx tx = BEX__TX__INIT;
    Bex__Signature sigs[SIGNERS], *sig_ptrs[SIGNERS];
    struct crypto_sig sig[SIGNERS];
    uint8_t *body_bytes, *bytes;
    size_t n = 0;

    body.chain_id = FUZZ_CHAIN_ID;
    body.sender = (char *)a->id;
    body.nonce = nonce;
    body.contract = (char *)contract;
    body.method = (char *)method;
    body.args.data = (uint8_t *)args;
    body.args.len = args_len;
    body.timestamp_ms = time_ms;
    if ((body_bytes = malloc(bex__tx_body__get_packed_size(&body) + 1)) == NULL)
        fuzz_fail("out of memory for a tx body");
    tx.body.len = bex__tx_body__pack(&body, body_bytes);
    tx.body.data = body_bytes;
    crypto_sha256(id, body_bytes, tx.body.len);
    for (unsigned k = 0; k < SIGNERS; k++) {
        if (!(signers & (1u << k)) || (k < 2 && k >= a->officers))
            continue;
        if (crypto_sign(&sig[n], &a->sk[k], id) != 0)
            fuzz_fail("signing with a fixed key failed");
        bex__signature__init(&sigs[n]);
        sigs[n].pubkey.data = (uint8_t *)a->pk[k].b;
        sigs[n].pubkey.len = CRYPTO_PUB_BYTES;
        sigs[n].sig.data = sig[n].b;
        sigs[n].sig.len = CRYPTO_SIG_BYTES;
        sig_ptrs[n] = &sigs[n];
        n++;
    }
    tx.sigs = sig_ptrs;
    tx.n_sigs = n;
    if ((bytes = malloc(bex__tx__get_packed_size(&tx) + 1)) == NULL)
        fuzz_fail("out of memory for a tx");
    *len = bex__tx__pack(&tx, bytes);
    free(body_bytes);
    return bytes;
}

/* Runs one tx as block fx.height + 1 at time_ms; NULL when the node ran out of memory. */
static const struct exec_output *run_block(const uint8_t *tx, size_t len, uint64_t time_ms, int *code)
{
    const struct exec_output *out;
    int rc = exec_block_begin(fx.e, fx.height + 1, time_ms, fx.root);

    if (rc != 0)
        fuzz_fail("exec_block_begin: %s", bex_errname(rc));
    *code = -1;
    rc = exec_tx(fx.e, code, tx, len);
    if (rc == -BEX_ENOMEM) {
        exec_block_abort(fx.e);
        return NULL;
    }
    if (rc != 0)
        fuzz_fail("exec_tx returned %s", bex_errname(rc));
    if ((rc = exec_block_end(fx.e, &out)) != 0)
        fuzz_fail("exec_block_end: %s", bex_errname(rc));
    return out;
}

/* ---------------------------------------------------------------- fixtures */

/* Runs a fixture tx of agency `who` and applies its block; the receipt must be 0. */
static void fixture(int who, unsigned signers, const char *contract, const char *method, const ProtobufCMessage *args)
{
    struct agency *a = &fx.ag[who];
    size_t args_len = protobuf_c_message_get_packed_size(args), tx_len;
    uint8_t *argbuf = malloc(args_len + 1), id[CONTRACT_HASH_BYTES];
    const struct exec_output *out;
    int code;

    if (argbuf == NULL)
        fuzz_fail("out of memory for fixture arguments");
    protobuf_c_message_pack(args, argbuf);
    fx.time_ms += 1000;
    uint8_t *tx = make_tx(&tx_len, id, a, signers, a->nonce + 1, fx.time_ms, contract, method, argbuf, args_len);
    if ((out = run_block(tx, tx_len, fx.time_ms, &code)) == NULL)
        fuzz_fail("out of memory in fixture %s.%s", contract, method);
    if (code != 0) {
        Bex__Receipt *r = bex__receipt__unpack(NULL, out->receipts[0].encoded_len, out->receipts[0].encoded);
        fuzz_fail("fixture %s.%s by %s: %s (%s)", contract, method, a->id, bex_errname(-code),
                  r != NULL ? r->message : "?");
    }
    if (memstore_apply(fx.ms, out) != 0)
        fuzz_fail("memstore_apply failed in fixture %s.%s", contract, method);
    fx.height = out->height;
    memcpy(fx.root, out->state_root, CONTRACT_HASH_BYTES);
    a->nonce++;
    free(tx);
    free(argbuf);
}

static void fixture_resource(int owner, const char *id, Bex__ShareType share)
{
    static const char *const names[3] = {"plate", "owner_name", "amount"};
    Bex__FieldDef f[3], *fp[3];
    Bex__RolePolicy p[3], *pp[3];
    Bex__Resource r = BEX__RESOURCE__INIT;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;

    for (int i = 0; i < 3; i++) {
        bex__field_def__init(&f[i]);
        f[i].name = (char *)names[i];
        f[i].type = i == 2 ? BEX__FIELD_TYPE__FIELD_DECIMAL : BEX__FIELD_TYPE__FIELD_STRING;
        f[i].sensitive = i == 1;
        fp[i] = &f[i];
        bex__role_policy__init(&p[i]);
        p[i].role = (char *)fx.ag[i + 1].role;
        p[i].read = i != 1;
        p[i].verify = 1;
        pp[i] = &p[i];
    }
    r.id = (char *)id;
    r.title = "Fixture resource";
    r.n_fields = 3;
    r.fields = fp;
    r.share_type = share;
    r.share_conditions = share == BEX__SHARE_TYPE__SHARE_CONDITIONAL ? "for enforcement only" : "";
    r.legal_basis = share == BEX__SHARE_TYPE__SHARE_NONE ? "Privacy Act s.12" : "";
    r.update_cycle = "daily";
    r.n_roles = 3;
    r.roles = pp;
    a.resource = &r;
    fixture(owner, SIG_O1, "catalog", "register", &a.base);
}

static void fixture_request(int consumer, const char *resource, Bex__AccessMode mode, const char *field)
{
    Bex__GrantRequestArgs a = BEX__GRANT_REQUEST_ARGS__INIT;
    char *fields[1] = {(char *)field};

    a.resource = (char *)resource;
    a.fields = fields;
    a.n_fields = 1;
    a.mode = mode;
    a.purpose = "case 2025-17";
    a.expiry_ms = T0 + 30 * DAY_MS;
    fixture(consumer, SIG_O1 | SIG_O2, "grant", "request", &a.base);
}

static void fixture_approve(uint64_t grant_id)
{
    Bex__GrantActArgs a = BEX__GRANT_ACT_ARGS__INIT;

    a.grant_id = grant_id;
    a.reason = "reviewed";
    fixture(TRAFFIC, SIG_O1, "grant", "approve", &a.base);
}

static void fixture_publish(void)
{
    static const char *const names[3] = {"plate", "owner_name", "amount"};
    static uint8_t ct[64], wk[93];
    Bex__Sealed s[3];
    Bex__RecordField f[3], *fp[3];
    Bex__RecordPublishArgs a = BEX__RECORD_PUBLISH_ARGS__INIT;

    memset(ct, 0x11, sizeof(ct));
    memset(wk, 0x22, sizeof(wk));
    for (int i = 0; i < 3; i++) {
        bex__sealed__init(&s[i]);
        s[i].ciphertext.data = ct;
        s[i].ciphertext.len = sizeof(ct);
        s[i].wrapped_key.data = wk;
        s[i].wrapped_key.len = sizeof(wk);
        bex__record_field__init(&f[i]);
        f[i].name = (char *)names[i];
        f[i].value_case = BEX__RECORD_FIELD__VALUE_SEALED;
        f[i].sealed = &s[i];
        fp[i] = &f[i];
    }
    a.resource = (char *)RESOURCE_C;
    a.key.data = (uint8_t *)RECORD_KEY;
    a.key.len = sizeof(RECORD_KEY);
    a.version = 1;
    a.n_fields = 3;
    a.fields = fp;
    fixture(TRAFFIC, SIG_O1, "record", "publish", &a.base);
}

static void fixture_share_index(uint64_t grant_id)
{
    static uint8_t wk[93];
    Bex__RecordShareIndexArgs a = BEX__RECORD_SHARE_INDEX_ARGS__INIT;

    memset(wk, 0x33, sizeof(wk));
    a.grant_id = grant_id;
    a.wrapped_index_key.data = wk;
    a.wrapped_index_key.len = sizeof(wk);
    fixture(TRAFFIC, SIG_O1, "record", "share_index", &a.base);
}

static void fixture_access(void)
{
    Bex__AccessRequestArgs a = BEX__ACCESS_REQUEST_ARGS__INIT;

    a.resource = (char *)RESOURCE_C;
    a.record_key.data = (uint8_t *)RECORD_KEY;
    a.record_key.len = sizeof(RECORD_KEY);
    a.purpose = "traffic stop";
    fixture(POLICE, SIG_O1 | SIG_O2, "access", "request", &a.base);
}

static void fixture_verify(void)
{
    static uint8_t claim[100];
    Bex__VerifyRequestArgs a = BEX__VERIFY_REQUEST_ARGS__INIT;

    memset(claim, 0x44, sizeof(claim));
    a.resource = (char *)RESOURCE_C;
    a.record_key.data = (uint8_t *)RECORD_KEY;
    a.record_key.len = sizeof(RECORD_KEY);
    a.field = "owner_name";
    a.claim.data = claim;
    a.claim.len = sizeof(claim);
    a.purpose = "benefit eligibility";
    fixture(HEALTH, SIG_O1, "verify", "request", &a.base);
}

static void list_entry(void *user, const char *contract, const char *kind, const char *name)
{
    const ProtobufCMessageDescriptor *args, *result;
    bool method = strcmp(kind, "method") == 0;
    struct entry *e;

    (void)user;
    if (contract_describe(&args, &result, contract, kind, name) != 0)
        fuzz_fail("contract_list names %s %s.%s, contract_describe does not know it", kind, contract, name);
    if (method)
        FUZZ_CHECK(fx.methods_n < ENTRY_MAX);
    else
        FUZZ_CHECK(fx.queries_n < ENTRY_MAX);
    e = method ? &fx.methods[fx.methods_n++] : &fx.queries[fx.queries_n++];
    e->contract = contract;
    e->name = name;
    e->args = args;
    e->result = result;
}

static void setup(void)
{
    Bex__Agency msgs[AGENCIES];
    const Bex__Agency *ptrs[AGENCIES];
    ProtobufCBinaryData keys[AGENCIES][2];
    char *roles[AGENCIES][1];
    const struct exec_output *out;
    struct exec_config cfg = {.chain_id = FUZZ_CHAIN_ID};

    fuzz_crypto_init();
    if (memstore_new(&fx.ms, ENTRIES_MAX, STORE_BYTES_MAX) != 0)
        fuzz_fail("memstore_new failed");
    memstore_store(fx.ms, &fx.st);
    if (exec_new(&fx.e, &cfg, &fx.st) != 0)
        fuzz_fail("exec_new failed");
    for (unsigned i = 0; i < AGENCIES; i++) {
        struct agency *a = &fx.ag[i];
        struct crypto_seckey enc_sk;
        /* Keys 16 and up of fuzz_key(): the txcheck and genesis fixtures use the lower ones. */
        for (unsigned k = 0; k < SIGNERS; k++)
            fuzz_key(&a->sk[k], &a->pk[k], 16 + 4 * i + k);
        fuzz_key(&enc_sk, &a->enc, 16 + 4 * i + 3);
        crypto_wipe(&enc_sk, sizeof(enc_sk));
        bex__agency__init(&msgs[i]);
        msgs[i].id = (char *)a->id;
        msgs[i].name = (char *)a->id;
        roles[i][0] = (char *)a->role;
        msgs[i].roles = roles[i];
        msgs[i].n_roles = 1;
        for (size_t k = 0; k < a->officers; k++) {
            keys[i][k].data = a->pk[k].b;
            keys[i][k].len = CRYPTO_PUB_BYTES;
        }
        msgs[i].officer_keys = keys[i];
        msgs[i].n_officer_keys = a->officers;
        msgs[i].threshold = a->threshold;
        msgs[i].node_key.data = a->pk[2].b;
        msgs[i].node_key.len = CRYPTO_PUB_BYTES;
        msgs[i].enc_key.data = a->enc.b;
        msgs[i].enc_key.len = CRYPTO_PUB_BYTES;
        ptrs[i] = &msgs[i];
    }
    fx.time_ms = T0;
    if (exec_genesis(fx.e, &out, ptrs, AGENCIES, fx.time_ms) != 0 || memstore_apply(fx.ms, out) != 0)
        fuzz_fail("genesis failed");
    fx.height = out->height;
    memcpy(fx.root, out->state_root, CONTRACT_HASH_BYTES);

    fixture_resource(TRAFFIC, RESOURCE_C, BEX__SHARE_TYPE__SHARE_CONDITIONAL);
    fixture_resource(TRAFFIC, RESOURCE_U, BEX__SHARE_TYPE__SHARE_UNCONDITIONAL);
    fixture_resource(HEALTH, RESOURCE_N, BEX__SHARE_TYPE__SHARE_NONE);
    fixture_request(POLICE, RESOURCE_C, BEX__ACCESS_MODE__MODE_READ, "plate"); /* grant 1 */
    fixture_approve(1);
    fixture_request(HEALTH, RESOURCE_C, BEX__ACCESS_MODE__MODE_VERIFY, "owner_name"); /* grant 2 */
    fixture_approve(2);
    fixture_request(TAX, RESOURCE_U, BEX__ACCESS_MODE__MODE_READ, "amount");        /* grant 3, active */
    fixture_request(POLICE, RESOURCE_C, BEX__ACCESS_MODE__MODE_VERIFY, "owner_name"); /* grant 4, pending */
    fixture_publish();
    fixture_share_index(1);
    fixture_access();
    fixture_verify();
    contract_list(list_entry, NULL);
    FUZZ_CHECK(fx.methods_n > 0 && fx.queries_n > 0);
    fx.ready = true;
}

/* ---------------------------------------------------------------- checks */

/* True when s is valid UTF-8 without control characters. */
static bool printable_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        size_t extra;
        uint32_t cp;
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p < 0x80) {
            p++;
            continue;
        }
        if ((*p & 0xe0) == 0xc0) {
            extra = 1;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            extra = 2;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            extra = 3;
            cp = *p & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= extra; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += extra + 1;
    }
    return true;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *b = malloc(protobuf_c_message_get_packed_size(m) + 1);

    if (b == NULL)
        fuzz_fail("out of memory packing %s", m->descriptor->name);
    *len = protobuf_c_message_pack(m, b);
    return b;
}

/* m renders as JSON, and the JSON parses back to a message with the same encoding. */
static void check_json(const ProtobufCMessage *m, const char *what)
{
    ProtobufCMessage *back = NULL;
    char *json = NULL, err[160];
    size_t a_len, b_len;
    int rc = contract_json_render(&json, m);

    if (rc != 0)
        fuzz_fail("%s: %s does not render as JSON: %s", what, m->descriptor->name, bex_errname(rc));
    if ((rc = contract_json_parse(&back, err, sizeof(err), m->descriptor, json, strlen(json))) != 0)
        fuzz_fail("%s: its JSON does not parse back: %s (%s): %s", what, bex_errname(rc), err, json);
    uint8_t *a = pack(m, &a_len), *b = pack(back, &b_len);
    if (a_len != b_len || memcmp(a, b, a_len) != 0)
        fuzz_fail("%s: %s changed through JSON: %s", what, m->descriptor->name, json);
    free(a);
    free(b);
    contract_result_free(back);
    free(json);
}

static uint64_t be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const struct exec_write *find_write(const struct exec_output *out, const char *key)
{
    for (size_t i = 0; i < out->write_count; i++) {
        if (strcmp(out->writes[i].key, key) == 0)
            return &out->writes[i];
    }
    return NULL;
}

static void check_block(const struct exec_output *out, const struct entry *m, const struct agency *a, int code,
                        const uint8_t id[CONTRACT_HASH_BYTES])
{
    char nonce_key[CONTRACT_KEY_BYTES_MAX], contract_prefix[CONTRACT_KEY_BYTES_MAX];
    const struct exec_write *nonce;
    bool audit = false;
    Bex__Receipt *r;

    FUZZ_CHECK(code >= 0 && code < BEX_E_COUNT);
    FUZZ_CHECK(out->height == fx.height + 1);
    FUZZ_CHECK(out->receipt_count == 1);
    FUZZ_CHECK(out->receipts[0].code == code && out->receipts[0].index == 0);
    FUZZ_CHECK(memcmp(out->receipts[0].tx_id, id, CONTRACT_HASH_BYTES) == 0);
    r = bex__receipt__unpack(NULL, out->receipts[0].encoded_len, out->receipts[0].encoded);
    if (r == NULL)
        fuzz_fail("%s.%s: the receipt does not decode", m->contract, m->name);
    FUZZ_CHECK(r->code == code && r->index == 0 && r->height == out->height);
    FUZZ_CHECK(r->tx_id.len == CONTRACT_HASH_BYTES && memcmp(r->tx_id.data, id, CONTRACT_HASH_BYTES) == 0);
    if (strlen(r->message) >= CONTRACT_MESSAGE_BYTES_MAX || !printable_utf8(r->message))
        fuzz_fail("%s.%s: receipt message is not printable UTF-8 of at most %d bytes", m->contract, m->name,
                  CONTRACT_MESSAGE_BYTES_MAX - 1);
    FUZZ_CHECK((code == 0) == (r->message[0] == '\0'));
    if (code == 0 && r->result.len > 0) {
        ProtobufCMessage *res = protobuf_c_message_unpack(m->result, NULL, r->result.len, r->result.data);
        if (res == NULL)
            fuzz_fail("%s.%s: the result does not decode as %s", m->contract, m->name, m->result->name);
        check_json(res, m->name);
        protobuf_c_message_free_unpacked(res, NULL);
    }
    check_json(&r->base, "receipt");
    bex__receipt__free_unpacked(r, NULL);

    for (size_t i = 0; i < out->write_count; i++) {
        const struct exec_write *wr = &out->writes[i];
        FUZZ_CHECK(wr->key != NULL && strlen(wr->key) == wr->key_len);
        FUZZ_CHECK(wr->del == (wr->val == NULL));
        if (i > 0) {
            const struct exec_write *prev = &out->writes[i - 1];
            size_t n = prev->key_len < wr->key_len ? prev->key_len : wr->key_len;
            int c = memcmp(prev->key, wr->key, n);
            if (c > 0 || (c == 0 && prev->key_len >= wr->key_len))
                fuzz_fail("%s.%s: write set not sorted at %s", m->contract, m->name, wr->key);
        }
        audit |= has_prefix(wr->key, "audit/e/");
    }
    snprintf(nonce_key, sizeof(nonce_key), "nonce/%s", a->id);
    nonce = find_write(out, nonce_key);
    if (nonce == NULL || nonce->val_len != 8 || be64(nonce->val) != a->nonce + 1)
        fuzz_fail("%s.%s: the nonce was not consumed", m->contract, m->name);
    if (!audit)
        fuzz_fail("%s.%s: no audit entry", m->contract, m->name);

    snprintf(contract_prefix, sizeof(contract_prefix), "%s/", m->contract);
    if (code != 0) {
        FUZZ_CHECK(out->history_count == 0 && out->event_count == 0);
        for (size_t i = 0; i < out->write_count; i++) {
            const char *k = out->writes[i].key;
            if (strcmp(k, nonce_key) != 0 && strcmp(k, "chain/head") != 0 && !has_prefix(k, "audit/"))
                fuzz_fail("%s.%s failed with %s but wrote %s", m->contract, m->name, bex_errname(-code), k);
        }
        return;
    }
    FUZZ_CHECK(out->event_count <= CONTRACT_EVENTS_PER_TX_MAX);
    for (size_t i = 0; i < out->event_count; i++)
        FUZZ_CHECK(strcmp(out->events[i].contract, m->contract) == 0 && out->events[i].tx_index == 0);
    for (size_t i = 0; i < out->history_count; i++) {
        FUZZ_CHECK(out->history[i].tx_index == 0);
        FUZZ_CHECK(memcmp(out->history[i].tx_id, id, CONTRACT_HASH_BYTES) == 0);
        if (!has_prefix(out->history[i].key, contract_prefix))
            fuzz_fail("%s.%s wrote %s, outside its contract", m->contract, m->name, out->history[i].key);
    }
}

/* What a block produced, to compare a second run of it with. */
struct digest_of_block {
    uint8_t root[CONTRACT_HASH_BYTES];
    size_t writes;
    size_t receipt_len;
    uint8_t receipt[CONTRACT_HASH_BYTES];
};

static void summarize(struct digest_of_block *d, const struct exec_output *out)
{
    memcpy(d->root, out->state_root, CONTRACT_HASH_BYTES);
    d->writes = out->write_count;
    d->receipt_len = out->receipts[0].encoded_len;
    crypto_sha256(d->receipt, out->receipts[0].encoded, out->receipts[0].encoded_len);
}

static void run_method(const struct entry *m, const struct agency *a, unsigned signers, uint64_t time_ms,
                       const uint8_t *args, size_t args_len)
{
    uint8_t id[CONTRACT_HASH_BYTES];
    struct digest_of_block first, second;
    const struct exec_output *out;
    size_t len;
    int code;
    uint8_t *tx = make_tx(&len, id, a, signers, a->nonce + 1, time_ms, m->contract, m->name, args, args_len);

    if ((out = run_block(tx, len, time_ms, &code)) == NULL) {
        free(tx);
        return;
    }
    check_block(out, m, a, code, id);
    if (code == 0) {
        summarize(&first, out);
        if ((out = run_block(tx, len, time_ms, &code)) != NULL) {
            summarize(&second, out);
            if (code != 0 || memcmp(&first, &second, sizeof(first)) != 0)
                fuzz_fail("%s.%s: the same block run twice gave another result", m->contract, m->name);
        }
    }
    free(tx);
}

static void run_query(const struct entry *q, const uint8_t *args, size_t args_len)
{
    ProtobufCMessage *res = NULL;
    char err[160];
    int rc = contract_query(&res, err, sizeof(err), &fx.st, q->contract, q->name, args, args_len);

    switch (-rc) {
    case 0:
        if (res == NULL || res->descriptor != q->result)
            fuzz_fail("query %s.%s succeeded without a %s", q->contract, q->name, q->result->name);
        check_json(res, q->name);
        contract_result_free(res);
        return;
    case BEX_EINVAL:
    case BEX_ELIMIT:
    case BEX_EDECODE:
    case BEX_ENOTFOUND:
    case BEX_EBUDGET:
    case BEX_ENOMEM:
    case BEX_EPERM:
        FUZZ_CHECK(res == NULL);
        if (!printable_utf8(err))
            fuzz_fail("query %s.%s: error text is not printable UTF-8", q->contract, q->name);
        return;
    default:
        fuzz_fail("query %s.%s returned %s (%s)", q->contract, q->name, bex_errname(rc), err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_LEN)
        return 0;
    if (!fx.ready)
        setup();
    if (size < 2)
        return 0;
    const struct agency *a = &fx.ag[data[0] & 3];
    unsigned signers = (data[0] >> 2) & 7;
    uint64_t time_ms = fx.time_ms + 1000 + data[1] * 6 * HOUR_MS;

    /* Only keys the sender has sign, and at least one does. */
    if (a->officers < 2)
        signers &= ~SIG_O2;
    if (signers == 0)
        signers = SIG_O1;
    for (size_t i = 0; i < fx.methods_n; i++)
        run_method(&fx.methods[i], a, signers, time_ms, data + 2, size - 2);
    for (size_t i = 0; i < fx.queries_n; i++)
        run_query(&fx.queries[i], data + 2, size - 2);
    return 0;
}
