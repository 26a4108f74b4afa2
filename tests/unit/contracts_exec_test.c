/* Tests of the executor, the runtime's state view and the memstore. */
#include "contracts_harness.h"

#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../../contracts/internal.h"

static const char *const FIELDS_PLATE[] = {"plate"};

static void exec_genesis_seeds_registry(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h.height, 0);
    Bex__NameArgs q = BEX__NAME_ARGS__INIT;
    q.id = "city.traffic";
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "agency", "get", &q.base), 0);
    Bex__Agency *a = (Bex__Agency *)m;
    assert_string_equal(a->id, "city.traffic");
    assert_int_equal(a->threshold, 2);
    assert_int_equal(a->n_officer_keys, 3);
    assert_memory_equal(a->node_key.data, h.ag[TRAFFIC].node, 33);
    contract_result_free(m);

    Bex__AgencyListArgs l = BEX__AGENCY_LIST_ARGS__INIT;
    l.limit = 3;
    assert_int_equal(h_query(&h, &m, "agency", "list", &l.base), 0);
    Bex__AgencyList *al = (Bex__AgencyList *)m;
    assert_int_equal(al->n_agencies, 3);
    assert_true(al->next_cursor.len > 0);
    /* The second page holds the fourth agency and ends the listing. */
    uint8_t cur[CONTRACT_KEY_BYTES_MAX];
    memcpy(cur, al->next_cursor.data, al->next_cursor.len);
    l.cursor.data = cur;
    l.cursor.len = al->next_cursor.len;
    contract_result_free(m);
    assert_int_equal(h_query(&h, &m, "agency", "list", &l.base), 0);
    al = (Bex__AgencyList *)m;
    assert_int_equal(al->n_agencies, 1);
    assert_int_equal(al->next_cursor.len, 0);
    contract_result_free(m);

    q.id = "nobody";
    assert_int_equal(h_query(&h, &m, "agency", "get", &q.base), BEX_ENOTFOUND);
    h_close(&h);
}

static void exec_genesis_refuses_bad_agencies(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    struct exec *e;
    struct memstore *ms;
    struct exec_store st;
    assert_int_equal(memstore_new(&ms, 1000, 1 << 20), 0);
    memstore_store(ms, &st);
    struct exec_config cfg = {.chain_id = H_CHAIN};
    assert_int_equal(exec_new(&e, &cfg, &st), 0);

    Bex__Agency a;
    ProtobufCBinaryData keys[3];
    char *roles[1];
    const Bex__Agency *p[2] = {&a, &a};
    const struct exec_output *out;
    h_agency_msg(&a, &h.ag[TRAFFIC], keys, roles);
    a.threshold = 4;
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), -BEX_EINVAL);
    a.threshold = 0;
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), -BEX_EINVAL);
    a.threshold = 2;
    keys[1].len = 32;
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), -BEX_EINVAL);
    keys[1].len = 33;
    a.node_key = keys[0];
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), -BEX_EINVAL);
    h_agency_msg(&a, &h.ag[TRAFFIC], keys, roles);
    a.id = "Bad Id";
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), -BEX_EINVAL);
    a.id = "city.traffic";
    assert_int_equal(exec_genesis(e, &out, p, 2, H_T0), -BEX_EINVAL); /* duplicate id */
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), 0);
    assert_int_equal(memstore_apply(ms, out), 0);
    /* A store that already holds state cannot take a second genesis. */
    assert_int_equal(exec_genesis(e, &out, p, 1, H_T0), -BEX_ESTATE);
    exec_free(e);
    memstore_free(ms);
    h_close(&h);
}

static void exec_nonce_replay_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL,
                                "*", NULL),
                     0);
    /* The same nonce again: refused, and it does not consume a nonce. */
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.traffic/violations";
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, 1);
    h_block(&h);
    assert_int_equal(h.rc[0].code, BEX_ENONCE);
    assert_string_equal(h_msg(&h), "nonce 1, expected 2");
    /* The refused attempts are audited all the same. */
    assert_int_equal(h_audit_count(&h, h.rc[0].tx_id, BEX_ENONCE), 1);
    /* Nonce 2 is still free. */
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base), 0);

    /* A byte-identical replay of a tx in the same block is refused too. */
    uint64_t n = h.ag[TRAFFIC].nonce + 1;
    Bex__CatalogWithdrawArgs w2 = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w2.id = "city.traffic/none";
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w2.base, n);
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w2.base, n);
    h_block(&h);
    assert_int_equal(h.rc[0].code, BEX_ENOTFOUND);
    assert_int_equal(h.rc[1].code, BEX_ENONCE);
    h_close(&h);
}

/*
 * A nonce ahead of last + 1 is a tx that came too early (a view change
 * dropped its predecessors' block): deferred with no receipt, no audit and
 * no write, so that it can run once its predecessors have.
 */
static void exec_nonce_ahead_deferred(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    uint64_t n = h.ag[TRAFFIC].nonce;
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.traffic/none";
    size_t before = memstore_count(h.ms);
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, n + 3);
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, n + 2);
    const struct exec_output *out = h_block(&h);
    assert_int_equal(h.deferred, 2);
    assert_int_equal(out->receipt_count, 0);
    /* Only the chain head moved: no nonce, receipt or audit key. */
    assert_int_equal(memstore_count(h.ms), before);
    assert_int_equal(h.last_writes, 1);

    /* With the predecessor first, the same txs run in order. */
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, n + 1);
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, n + 2);
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, n + 3);
    h_block(&h);
    assert_int_equal(h.deferred, 0);
    assert_int_equal(h.rc_count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(h.rc[i].code, BEX_ENOTFOUND);
    /* The same nonce twice: the second is a replay, refused. */
    h_queue_nonce(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", &w.base, n + 3);
    h_block(&h);
    assert_int_equal(h.rc[0].code, BEX_ENONCE);
    h_close(&h);
}

static void exec_unknown_contract_or_method(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "lottery", "draw", NULL), BEX_EUNKNOWN);
    assert_string_equal(h_msg(&h), "unknown contract lottery");
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "grant", "steal", NULL), BEX_EUNKNOWN);
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "audit", "query", NULL), BEX_EUNKNOWN);
    /* Both consumed their nonce: the next one is 4. */
    assert_int_equal(h.ag[POLICE].nonce, 3);
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.police/x";
    assert_int_equal(h_call(&h, POLICE, SIG_O1, "catalog", "withdraw", &w.base), BEX_ENOTFOUND);
    ProtobufCMessage *m;
    assert_int_equal(h_query(&h, &m, "grant", "nothing", NULL), BEX_EUNKNOWN);
    assert_int_equal(h_query(&h, &m, "nothing", "list", NULL), BEX_EUNKNOWN);
    h_close(&h);
}

static void exec_undecodable_or_unknown_args_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/v", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*", NULL), 0);
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.traffic/v";
    uint8_t buf[64];
    size_t n = bex__catalog_withdraw_args__pack(&w, buf);
    /* Field 99 (varint 1) is not in the schema. */
    buf[n] = 0x98;
    buf[n + 1] = 0x06;
    buf[n + 2] = 0x01;
    h_queue_raw(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", buf, n + 3, 0);
    h_block(&h);
    assert_int_equal(h.rc[0].code, BEX_EDECODE);
    assert_string_equal(h_msg(&h), "arguments of bex.CatalogWithdrawArgs carry unknown fields");
    /* A truncated encoding does not decode at all. */
    h_queue_raw(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", buf, n - 2, 0);
    h_block(&h);
    assert_int_equal(h.rc[0].code, BEX_EDECODE);
    /* The exact encoding works. */
    h_queue_raw(&h, TRAFFIC, SIG_O1, "catalog", "withdraw", buf, n, 0);
    h_block(&h);
    assert_int_equal(h.rc[0].code, 0);
    h_close(&h);
}

static void exec_messages_are_clean_text(void **state)
{
    (void)state;
    struct contract_ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    /* Control characters go; a valid multibyte character stays; a cut one goes. */
    assert_int_equal(contract__fail(c, BEX_EINVAL, "a\nb \xc3\xa9"), -BEX_EINVAL);
    assert_string_equal(c->message, "a?b \xc3\xa9");
    assert_int_equal(contract__fail(c, BEX_EINVAL, "cut \xe2\x82"), -BEX_EINVAL);
    assert_string_equal(c->message, "cut ");
    assert_int_equal(contract__fail(c, BEX_EINVAL, "bad \xff\xfe ok"), -BEX_EINVAL);
    assert_string_equal(c->message, "bad ?? ok");
    free(c);
}

static void exec_oversized_args_refused(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    static char title[70 * 1024];
    memset(title, 'a', sizeof(title) - 1);
    Bex__FieldDef f = BEX__FIELD_DEF__INIT;
    Bex__FieldDef *fp = &f;
    f.name = "plate";
    f.type = BEX__FIELD_TYPE__FIELD_STRING;
    Bex__Resource r = BEX__RESOURCE__INIT;
    r.id = "city.traffic/big";
    r.title = title;
    r.n_fields = 1;
    r.fields = &fp;
    r.share_type = BEX__SHARE_TYPE__SHARE_UNCONDITIONAL;
    Bex__CatalogPutArgs a = BEX__CATALOG_PUT_ARGS__INIT;
    a.resource = &r;
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_ELIMIT);
    /* Just under the limit the title itself is refused as malformed, not the size. */
    title[300] = '\0';
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), BEX_EINVAL);
    title[150] = '\0';
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1, "catalog", "register", &a.base), 0);
    h_close(&h);
}

static void exec_budget_exhaustion_fails_tx(void **state)
{
    (void)state;
    struct harness h;
    h_init_budget(&h, 1200);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL,
                                "*", NULL),
                     BEX_EBUDGET);
    assert_non_null(strstr(h_msg(&h), "budget"));
    uint8_t tx_id[32];
    memcpy(tx_id, h.rc[0].tx_id, 32);
    ProtobufCMessage *m;
    Bex__NameArgs q = BEX__NAME_ARGS__INIT;
    q.id = "city.traffic/violations";
    assert_int_equal(h_query(&h, &m, "catalog", "get", &q.base), BEX_ENOTFOUND);
    assert_int_equal(h_audit_count(&h, tx_id, BEX_EBUDGET), 1);
    h_close(&h);

    /* With the default budget the same transaction goes through. */
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL,
                                "*", NULL),
                     0);
    h_close(&h);
}

static void exec_failed_tx_leaves_audit_and_consumes_nonce(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, HEALTH, "state.health/patients", BEX__SHARE_TYPE__SHARE_NONE, "*", NULL), 0);
    size_t before = memstore_count(h.ms);
    assert_int_equal(h_request(&h, NULL, POLICE, "state.health/patients", BEX__ACCESS_MODE__MODE_READ,
                               FIELDS_PLATE, 1, H_T0 + 30 * H_DAY),
                     BEX_EREFUSED);
    uint8_t tx_id[32];
    memcpy(tx_id, h.rc[0].tx_id, 32);
    /* No grant state: the counter was never written. */
    ProtobufCMessage *m;
    Bex__IdArgs g = BEX__ID_ARGS__INIT;
    g.id = 1;
    assert_int_equal(h_query(&h, &m, "grant", "get", &g.base), BEX_ENOTFOUND);
    /* What changed: chain/head, the nonce and four audit keys (e, a, r and no k). */
    assert_int_equal(memstore_count(h.ms), before + 1 + 3);
    assert_int_equal(h.last_writes, 5);
    assert_int_equal(h_audit_count(&h, tx_id, BEX_EREFUSED), 1);

    Bex__AuditQueryArgs q = BEX__AUDIT_QUERY_ARGS__INIT;
    q.resource = "state.health/patients";
    assert_int_equal(h_query(&h, &m, "audit", "query", &q.base), 0);
    Bex__AuditList *l = (Bex__AuditList *)m;
    assert_int_equal(l->n_entries, 2);
    assert_string_equal(l->entries[0]->action, "grant.request");
    assert_string_equal(l->entries[0]->actor, "city.police");
    assert_int_equal(l->entries[0]->code, BEX_EREFUSED);
    assert_non_null(strstr(l->entries[0]->detail, "NONE"));
    assert_string_equal(l->entries[1]->action, "catalog.register");
    contract_result_free(m);
    /* The nonce was consumed: replaying nonce 1 is refused. */
    h_queue_nonce(&h, POLICE, SIG_O1, "grant", "request", NULL, 1);
    h_block(&h);
    assert_int_equal(h.rc[0].code, BEX_ENONCE);
    h_close(&h);
}

static void exec_signers_must_belong_to_sender(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    /* Sign a traffic tx with police's key by swapping the key material. */
    uint8_t saved[33];
    memcpy(saved, h.ag[TRAFFIC].officers[0], 33);
    memcpy(h.ag[TRAFFIC].officers[0], h.ag[POLICE].officers[0], 33);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*",
                                NULL),
                     BEX_EPERM);
    memcpy(h.ag[TRAFFIC].officers[0], saved, 33);
    /* That did not consume nonce 1. */
    h.ag[TRAFFIC].nonce = 0;
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*",
                                NULL),
                     0);
    /* An unsigned tx is refused. */
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.traffic/violations";
    assert_int_equal(h_call(&h, TRAFFIC, 0, "catalog", "withdraw", &w.base), BEX_EPERM);
    h_close(&h);
}

static void exec_node_key_alone_only_for_services(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*",
                                NULL),
                     0);
    Bex__CatalogWithdrawArgs w = BEX__CATALOG_WITHDRAW_ARGS__INIT;
    w.id = "city.traffic/violations";
    assert_int_equal(h_call(&h, TRAFFIC, SIG_NODE, "catalog", "withdraw", &w.base), BEX_EPERM);
    assert_string_equal(h_msg(&h), "withdraw needs an officer signature");
    /* The node key may answer: release with no access fails on the access, not the signer. */
    assert_int_equal(h_release(&h, TRAFFIC, SIG_NODE, 9, FIELDS_PLATE, 1), BEX_ENOTFOUND);
    /* Officer plus node key is fine. */
    assert_int_equal(h_call(&h, TRAFFIC, SIG_O1 | SIG_NODE, "catalog", "withdraw", &w.base), 0);
    h_close(&h);
}

static void exec_wrong_chain_and_garbage_get_receipts(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    Bex__TxBody body = BEX__TX_BODY__INIT;
    body.chain_id = "other-chain";
    body.sender = "city.police";
    body.nonce = 1;
    body.contract = "catalog";
    body.method = "withdraw";
    uint8_t bbuf[256], tbuf[512];
    size_t blen = bex__tx_body__pack(&body, bbuf);
    Bex__Tx tx = BEX__TX__INIT;
    tx.body.data = bbuf;
    tx.body.len = blen;
    size_t tlen = bex__tx__pack(&tx, tbuf);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};

    assert_int_equal(exec_block_begin(h.e, h.height + 1, h.time_ms, h.root), 0);
    int code;
    assert_int_equal(exec_tx(h.e, &code, tbuf, tlen), 0);
    assert_int_equal(code, BEX_ECHAIN);
    assert_int_equal(exec_tx(h.e, &code, garbage, sizeof(garbage)), 0);
    assert_int_equal(code, BEX_EDECODE);
    body.chain_id = H_CHAIN;
    body.sender = "city.nobody";
    blen = bex__tx_body__pack(&body, bbuf);
    tx.body.len = blen;
    tlen = bex__tx__pack(&tx, tbuf);
    assert_int_equal(exec_tx(h.e, &code, tbuf, tlen), 0);
    assert_int_equal(code, BEX_EUNKNOWN);
    const struct exec_output *out;
    assert_int_equal(exec_block_end(h.e, &out), 0);
    assert_int_equal(out->receipt_count, 3);
    /* None of them had a known sender: only chain/head was written. */
    assert_int_equal(out->write_count, 1);
    assert_string_equal(out->writes[0].key, "chain/head");
    h_apply(&h, out);
    h_close(&h);
}

static void exec_block_order_enforced(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    int code;
    assert_int_equal(exec_tx(h.e, &code, (const uint8_t *)"", 0), -BEX_ESTATE);
    assert_int_equal(exec_block_begin(h.e, h.height + 2, h.time_ms, h.root), -BEX_ESTATE);
    assert_int_equal(exec_block_begin(h.e, h.height + 1, h.time_ms - 1, h.root), -BEX_EINVAL);
    assert_int_equal(exec_block_begin(h.e, h.height + 1, h.time_ms, h.root), 0);
    assert_int_equal(exec_block_begin(h.e, h.height + 1, h.time_ms, h.root), -BEX_ESTATE);
    exec_block_abort(h.e);
    /* Ending without applying leaves the store behind: the next begin refuses. */
    const struct exec_output *out;
    assert_int_equal(exec_block_begin(h.e, h.height + 1, h.time_ms, h.root), 0);
    assert_int_equal(exec_block_end(h.e, &out), 0);
    assert_int_equal(exec_block_begin(h.e, h.height + 2, h.time_ms, h.root), -BEX_ESTATE);
    h_close(&h);
}

/* Recomputes the documented root formula from an output. */
static void manual_root(uint8_t out[32], const uint8_t prev[32], const struct exec_output *o)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
    uint8_t b[8];
    EVP_DigestUpdate(md, prev, 32);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(o->height >> (56 - 8 * i));
    EVP_DigestUpdate(md, b, 8);
    for (size_t i = 0; i < o->write_count; i++) {
        const struct exec_write *w = &o->writes[i];
        uint8_t l[4] = {(uint8_t)(w->key_len >> 24), (uint8_t)(w->key_len >> 16), (uint8_t)(w->key_len >> 8),
                        (uint8_t)w->key_len};
        uint8_t op = w->del ? 0 : 1;
        EVP_DigestUpdate(md, l, 4);
        EVP_DigestUpdate(md, w->key, w->key_len);
        EVP_DigestUpdate(md, &op, 1);
        uint8_t v[4] = {(uint8_t)(w->val_len >> 24), (uint8_t)(w->val_len >> 16), (uint8_t)(w->val_len >> 8),
                        (uint8_t)w->val_len};
        EVP_DigestUpdate(md, v, 4);
        EVP_DigestUpdate(md, w->val, w->val_len);
    }
    unsigned n;
    EVP_DigestFinal_ex(md, out, &n);
    EVP_MD_CTX_free(md);
}

static void exec_output_sorted_with_history_and_root(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    uint8_t prev[32];
    memcpy(prev, h.root, 32);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_UNCONDITIONAL, "*",
                                NULL),
                     0);
    memcpy(prev, h.root, 32);
    h_advance(&h, 1000);
    const char *fields[] = {"plate", "amount"};
    Bex__GrantRequestArgs a = BEX__GRANT_REQUEST_ARGS__INIT;
    a.resource = "city.traffic/violations";
    a.fields = (char **)fields;
    a.n_fields = 2;
    a.mode = BEX__ACCESS_MODE__MODE_READ;
    a.purpose = "fines";
    a.expiry_ms = h.time_ms + H_DAY;
    h_queue(&h, POLICE, SIG_O1, "grant", "request", &a.base);
    h_queue(&h, TAX, SIG_O1, "grant", "request", &a.base);
    h_queue(&h, POLICE, SIG_O1, "grant", "request", &a.base); /* duplicate */
    assert_int_equal(exec_block_begin(h.e, h.height + 1, h.time_ms, h.root), 0);
    for (size_t i = 0; i < h.pending_count; i++) {
        int code;
        assert_int_equal(exec_tx(h.e, &code, h.pending[i], h.pending_len[i]), 0);
        assert_int_equal(code, i == 2 ? BEX_EEXIST : 0);
        free(h.pending[i]);
    }
    h.pending_count = 0;
    const struct exec_output *out;
    assert_int_equal(exec_block_end(h.e, &out), 0);
    for (size_t i = 1; i < out->write_count; i++)
        assert_true(strcmp(out->writes[i - 1].key, out->writes[i].key) < 0);
    uint8_t root[32];
    manual_root(root, prev, out);
    assert_memory_equal(root, out->state_root, 32);
    /* History: each successful tx wrote grant/next, the grant, 3 indexes and its marker. */
    assert_int_equal(out->history_count, 12);
    size_t touched_next = 0;
    for (size_t i = 0; i < out->history_count; i++) {
        assert_true(out->history[i].tx_index <= 1);
        if (strcmp(out->history[i].key, "grant/next") == 0)
            touched_next++;
    }
    assert_int_equal(touched_next, 2);
    assert_int_equal(out->event_count, 2);
    assert_string_equal(out->events[1].contract, "grant");
    assert_string_equal(out->events[1].kind, "activated");
    assert_int_equal(out->events[1].tx_index, 1);
    Bex__Grant *g = bex__grant__unpack(NULL, out->events[1].data_len, out->events[1].data);
    assert_non_null(g);
    assert_int_equal(g->id, 2);
    assert_string_equal(g->consumer, "city.tax");
    bex__grant__free_unpacked(g, NULL);
    h_apply(&h, out);
    h_close(&h);
}

/* A fixed script of blocks; writes each block's root to fd (or checks them). */
static void script_roots(uint8_t roots[][32], size_t n_blocks)
{
    struct harness h;
    h_init(&h);
    memcpy(roots[0], h.root, 32);
    static const uint8_t key[32] = {7};
    const char *fields[] = {"plate"};
    for (size_t b = 1; b < n_blocks; b++) {
        h_advance(&h, 1000 * b);
        switch (b % 4) {
        case 1:
            h_register(&h, TRAFFIC, b == 1 ? "city.traffic/v" : "city.traffic/w", BEX__SHARE_TYPE__SHARE_CONDITIONAL,
                       "*", NULL);
            break;
        case 2:
            h_request(&h, NULL, POLICE, "city.traffic/v", BEX__ACCESS_MODE__MODE_READ, fields, 1, h.time_ms + H_DAY);
            break;
        case 3:
            h_act(&h, TRAFFIC, SIG_O1 | SIG_O2, "approve", 1);
            break;
        default:
            h_publish(&h, TRAFFIC, "city.traffic/v", key, b);
            break;
        }
        memcpy(roots[b], h.root, 32);
    }
    h_close(&h);
}

static void exec_same_blocks_same_roots_across_processes(void **state)
{
    (void)state;
    enum { N = 12 };
    uint8_t a[N][32], b[N][32], c[N][32];
    script_roots(a, N);
    script_roots(b, N);
    assert_memory_equal(a, b, sizeof(a));
    for (size_t i = 1; i < N; i++)
        assert_memory_not_equal(a[i - 1], a[i], 32);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        uint8_t r[N][32];
        script_roots(r, N);
        ssize_t w = write(fds[1], r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof(c)) {
        ssize_t n = read(fds[0], (uint8_t *)c + got, sizeof(c) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got, sizeof(c));
    assert_memory_equal(a, c, sizeof(a));
}

/* ------------------------------------------------------ state view, memstore */

struct collect {
    char keys[16][64];
    size_t n;
    size_t stop_after;
};

static int collect_cb(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct collect *c = user;
    (void)val, (void)val_len;
    assert_true(key_len < 64);
    assert_true(c->n < 16);
    memcpy(c->keys[c->n], key, key_len);
    c->keys[c->n][key_len] = '\0';
    c->n++;
    return c->stop_after && c->n == c->stop_after ? 1 : 0;
}

static void put_store(struct memstore *ms, const char *const *keys, size_t n)
{
    struct exec_write w[8];
    for (size_t i = 0; i < n; i++)
        w[i] = (struct exec_write){.key = keys[i], .key_len = strlen(keys[i]), .val = (const uint8_t *)"v",
                                   .val_len = 1};
    struct exec_output out = {.writes = w, .write_count = n};
    assert_int_equal(memstore_apply(ms, &out), 0);
}

static void exec_iteration_merges_overlays(void **state)
{
    (void)state;
    struct memstore *ms;
    struct exec_store st;
    assert_int_equal(memstore_new(&ms, 100, 10000), 0);
    memstore_store(ms, &st);
    static const char *const keys[] = {"grant/a", "grant/c", "grant/e", "grant/g", "other/x"};
    put_store(ms, keys, 5);

    struct overlay block, tx;
    contract__overlay_init(&block);
    contract__overlay_init(&tx);
    struct contract_ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    contract__ctx_init(c, &st, 1000000);
    c->contract = "grant";
    c->block = &block;
    c->tx = &tx;
    /* Block overlay: adds b, deletes c. Tx overlay: adds d, deletes e, re-adds c. */
    assert_int_equal(contract__overlay_set(&block, "grant/b", 7, (const uint8_t *)"1", 1), 0);
    assert_int_equal(contract__overlay_set(&block, "grant/c", 7, NULL, 0), 0);
    assert_int_equal(contract__put(c, "grant/d", (const uint8_t *)"2", 1), 0);
    assert_int_equal(contract__del(c, "grant/e"), 0);
    const uint8_t *v;
    size_t len;
    assert_int_equal(contract__get(c, &v, &len, "grant/c"), -BEX_ENOTFOUND);
    assert_int_equal(contract__get(c, &v, &len, "grant/e"), -BEX_ENOTFOUND);
    assert_int_equal(contract__get(c, &v, &len, "grant/b"), 0);
    assert_memory_equal(v, "1", 1);

    struct collect col = {0};
    assert_int_equal(contract__iter(c, "grant/", NULL, 0, collect_cb, &col), 0);
    assert_int_equal(col.n, 4);
    assert_string_equal(col.keys[0], "grant/a");
    assert_string_equal(col.keys[1], "grant/b");
    assert_string_equal(col.keys[2], "grant/d");
    assert_string_equal(col.keys[3], "grant/g");

    /* From a cursor, and stopping early. */
    memset(&col, 0, sizeof(col));
    col.stop_after = 1;
    assert_int_equal(contract__iter(c, "grant/", "grant/b", 7, collect_cb, &col), 0);
    assert_int_equal(col.n, 1);
    assert_string_equal(col.keys[0], "grant/d");
    assert_int_equal(contract__put(c, "grant/c", (const uint8_t *)"3", 1), 0);
    memset(&col, 0, sizeof(col));
    assert_int_equal(contract__iter(c, "grant/", "grant/b", 7, collect_cb, &col), 0);
    assert_int_equal(col.n, 3);
    assert_string_equal(col.keys[0], "grant/c");

    /* Every step costs: a tiny budget ends the scan with EBUDGET. */
    c->budget = c->used + 120;
    memset(&col, 0, sizeof(col));
    assert_int_equal(contract__iter(c, "grant/", NULL, 0, collect_cb, &col), -BEX_EBUDGET);
    assert_true(c->budget_out);

    contract__ctx_close(c);
    free(c);
    contract__overlay_close(&block);
    contract__overlay_close(&tx);
    memstore_free(ms);
}

static void memstore_bounds_and_order(void **state)
{
    (void)state;
    struct memstore *ms;
    struct exec_store st;
    assert_int_equal(memstore_new(&ms, 3, 1000), 0);
    memstore_store(ms, &st);
    static const char *const keys[] = {"a", "b", "c"};
    put_store(ms, keys, 3);
    assert_int_equal(memstore_count(ms), 3);
    struct collect col = {0};
    assert_int_equal(st.iter(st.user, "", 0, "a", 1, collect_cb, &col), 0);
    assert_int_equal(col.n, 2);
    assert_string_equal(col.keys[0], "b");
    assert_string_equal(col.keys[1], "c");
    /* A fourth key is over the bound and changes nothing. */
    static const char *const more[] = {"d"};
    struct exec_write w = {.key = more[0], .key_len = 1, .val = (const uint8_t *)"v", .val_len = 1};
    struct exec_output out = {.writes = &w, .write_count = 1};
    assert_int_equal(memstore_apply(ms, &out), -BEX_EFULL);
    assert_int_equal(memstore_count(ms), 3);
    /* A delete makes room. */
    struct exec_write ws[2] = {{.key = "a", .key_len = 1, .del = true}, w};
    out.writes = ws;
    out.write_count = 2;
    assert_int_equal(memstore_apply(ms, &out), 0);
    const uint8_t *v;
    size_t len;
    assert_int_equal(st.get(st.user, "a", 1, &v, &len), -BEX_ENOTFOUND);
    assert_int_equal(st.get(st.user, "d", 1, &v, &len), 0);
    memstore_free(ms);
}

/* ------------------------------------------------- random arguments */

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Fills a message of type d with random values drawn to hit the validators. */
static ProtobufCMessage *random_msg(uint64_t *s, const ProtobufCMessageDescriptor *d, int depth)
{
    static const char *const strings[] = {"",           "city.traffic/violations", "city.police", "plate",
                                          "owner_name", "amount",                  "*",           "x y\n",
                                          "city.traffic", "state.health/r0",       "\xff\xfe"};
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    assert_non_null(m);
    d->message_init(m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *member = (char *)m + f->offset;
        if (xs(s) % 3 == 0 || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF && *(uint32_t *)((char *)m + f->quantifier_offset)))
            continue;
        size_t n = f->label == PROTOBUF_C_LABEL_REPEATED ? xs(s) % 4 : 1;
        size_t elt = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE ? sizeof(void *)
                     : f->type == PROTOBUF_C_TYPE_BYTES                                      ? sizeof(ProtobufCBinaryData)
                     : f->type == PROTOBUF_C_TYPE_UINT64                                     ? 8
                                                                                             : 4;
        char *slot = member;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (n == 0)
                continue;
            slot = calloc(n, elt);
            assert_non_null(slot);
            *(char **)member = slot;
            *(size_t *)((char *)m + f->quantifier_offset) = n;
        }
        for (size_t k = 0; k < n; k++) {
            void *p = slot + k * elt;
            switch (f->type) {
            case PROTOBUF_C_TYPE_STRING:
                *(char **)p = strdup(strings[xs(s) % BEX_ARRAY_LEN(strings)]);
                break;
            case PROTOBUF_C_TYPE_BYTES: {
                static const size_t sizes[] = {0, 6, 32, 40, 93, 200};
                ProtobufCBinaryData *b = p;
                b->len = sizes[xs(s) % BEX_ARRAY_LEN(sizes)];
                b->data = malloc(b->len + 1);
                memset(b->data, (int)(xs(s) & 0xff), b->len);
                break;
            }
            case PROTOBUF_C_TYPE_MESSAGE:
                *(ProtobufCMessage **)p = depth < 3 ? random_msg(s, f->descriptor, depth + 1) : NULL;
                break;
            case PROTOBUF_C_TYPE_UINT64:
                *(uint64_t *)p = xs(s) % 2 ? xs(s) % 5 : H_T0 + xs(s) % (10 * H_DAY);
                break;
            case PROTOBUF_C_TYPE_BOOL:
                *(protobuf_c_boolean *)p = xs(s) % 2;
                break;
            default:
                *(uint32_t *)p = (uint32_t)(xs(s) % 5);
                break;
            }
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
    }
    return m;
}

struct method_list {
    const char *contract[32];
    const char *name[32];
    size_t n;
};

static void collect_methods(void *user, const char *contract, const char *kind, const char *name)
{
    struct method_list *l = user;
    if (strcmp(kind, "method") != 0)
        return;
    assert_true(l->n < 32);
    l->contract[l->n] = contract;
    l->name[l->n++] = name;
}

static void exec_random_args_answered_with_codes(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    assert_int_equal(h_register(&h, TRAFFIC, "city.traffic/violations", BEX__SHARE_TYPE__SHARE_CONDITIONAL, "*", NULL),
                     0);
    struct method_list l = {0};
    contract_list(collect_methods, &l);
    assert_int_equal(l.n, 15);
    uint64_t seed = 0x5eed;
    size_t ok = 0, failed = 0;
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < l.n; i++) {
            const ProtobufCMessageDescriptor *ad, *rd;
            assert_int_equal(contract_describe(&ad, &rd, l.contract[i], "method", l.name[i]), 0);
            ProtobufCMessage *m = random_msg(&seed, ad, 0);
            uint8_t buf[8192];
            size_t n = protobuf_c_message_get_packed_size(m);
            assert_true(n <= sizeof(buf));
            protobuf_c_message_pack(m, buf);
            protobuf_c_message_free_unpacked(m, NULL);
            /* Some of the encodings get a byte flipped. */
            if (n > 0 && xs(&seed) % 4 == 0)
                buf[xs(&seed) % n] ^= (uint8_t)(1 + xs(&seed) % 255);
            h_queue_raw(&h, (int)(xs(&seed) % H_AGENCIES), SIG_O1 | (xs(&seed) % 2 ? SIG_O2 : SIG_NODE),
                        l.contract[i], l.name[i], buf, n, 0);
        }
        h_advance(&h, 3600 * 1000);
        h_block(&h);
        for (size_t i = 0; i < h.rc_count; i++) {
            assert_true(h.rc[i].code >= 0 && h.rc[i].code < BEX_E_COUNT);
            assert_int_not_equal(h.rc[i].code, BEX_ENONCE);
            if (h.rc[i].code == 0)
                ok++;
            else
                failed++;
            assert_true(h.rc[i].code == 0 || h.rc[i].message[0] != '\0');
            /* Whatever the arguments held, the message is clean text. */
            for (const char *p = h.rc[i].message; *p; p++)
                assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
        }
    }
    print_message("random args: %zu ok, %zu refused\n", ok, failed);
    assert_true(failed > 0);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exec_genesis_seeds_registry),
        cmocka_unit_test(exec_genesis_refuses_bad_agencies),
        cmocka_unit_test(exec_nonce_replay_refused),
        cmocka_unit_test(exec_nonce_ahead_deferred),
        cmocka_unit_test(exec_unknown_contract_or_method),
        cmocka_unit_test(exec_undecodable_or_unknown_args_refused),
        cmocka_unit_test(exec_messages_are_clean_text),
        cmocka_unit_test(exec_oversized_args_refused),
        cmocka_unit_test(exec_budget_exhaustion_fails_tx),
        cmocka_unit_test(exec_failed_tx_leaves_audit_and_consumes_nonce),
        cmocka_unit_test(exec_signers_must_belong_to_sender),
        cmocka_unit_test(exec_node_key_alone_only_for_services),
        cmocka_unit_test(exec_wrong_chain_and_garbage_get_receipts),
        cmocka_unit_test(exec_block_order_enforced),
        cmocka_unit_test(exec_output_sorted_with_history_and_root),
        cmocka_unit_test(exec_same_blocks_same_roots_across_processes),
        cmocka_unit_test(exec_iteration_merges_overlays),
        cmocka_unit_test(memstore_bounds_and_order),
        cmocka_unit_test(exec_random_args_answered_with_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
