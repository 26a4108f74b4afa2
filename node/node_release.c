/*
 * node_release.c: the owner's automatic answers. The node of an agency that
 * holds its encryption key answers, for the resources its agency owns:
 *   - access.requested  -> access.release: the data keys of the granted
 *                          fields, unwrapped with the owner's key and wrapped
 *                          again (ECIES) for that consumer alone;
 *   - verify.requested  -> verify.answer: yes/no, comparing the consumer's
 *                          sealed claim with the sealed field (no clear value
 *                          ever leaves this process);
 *   - grant.approved / grant.activated -> record.share_index: the
 *                          resource's index key wrapped for the consumer, so
 *                          it can name records by their keyed hash.
 * The answers are transactions signed with the node key (the contracts allow
 * the node key alone for exactly these three methods). They are driven by
 * the events of each committed block, and a sweep every few seconds answers
 * what is still open (requests committed while this node was down or
 * catching up), and shares index keys that no event shared.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bex.pb-c.h"
#include "contract.h"
#include "log.h"
#include "node.h"
#include "sealing.h"
#include "txbuild.h"

#define ANSWERED_MAX 1024

/* Requests answered recently, so the sweep does not answer them twice before the answer commits. */
static struct {
    char kind; /* 'a' access, 'v' verify, 'g' grant */
    uint64_t id;
    uint64_t at_ms;
} answered[ANSWERED_MAX];
static size_t answered_next;

static bool recently_answered(const struct node *n, char kind, uint64_t id)
{
    uint64_t now = uv_now(n->loop);

    for (size_t i = 0; i < ANSWERED_MAX; i++) {
        if (answered[i].kind == kind && answered[i].id == id && now - answered[i].at_ms < 30000)
            return true;
    }
    return false;
}

static void mark_answered(const struct node *n, char kind, uint64_t id)
{
    answered[answered_next].kind = kind;
    answered[answered_next].id = id;
    answered[answered_next].at_ms = uv_now(n->loop);
    answered_next = (answered_next + 1) % ANSWERED_MAX;
}

/* Runs contract.query with an encoded argument message; *out freed with contract_result_free. */
static int query(struct node *n, ProtobufCMessage **out, const char *contract, const char *q,
                 const ProtobufCMessage *args)
{
    struct ledger_read *lr;
    uint8_t buf[1024];
    size_t len = protobuf_c_message_get_packed_size(args);
    int rc;

    *out = NULL;
    if (len > sizeof buf)
        return -BEX_ELIMIT;
    protobuf_c_message_pack(args, buf);
    if ((rc = ledger_read_begin(n->ledger, &lr)) != 0)
        return rc;
    rc = contract_query(out, NULL, 0, ledger_read_store(lr), contract, q, buf, len);
    ledger_read_end(lr);
    return rc;
}

static int query_id(struct node *n, ProtobufCMessage **out, const char *contract, const char *q, uint64_t id)
{
    Bex__IdArgs a = BEX__ID_ARGS__INIT;

    a.id = id;
    return query(n, out, contract, q, &a.base);
}

static const struct crypto_pubkey *enc_key_of(const struct node *n, const char *agency)
{
    int i = config_genesis_find_agency(&n->gen, agency);

    return i < 0 ? NULL : &n->gen.agencies[i].enc_key;
}

/* Signs args as method of contract with the node key and submits it here. */
static void submit_own(struct node *n, const char *contract, const char *method, const ProtobufCMessage *args)
{
    struct txbuild t = {0};
    uint8_t *tx = NULL, *abuf, id[32];
    size_t tx_len, alen = protobuf_c_message_get_packed_size(args);
    uint64_t next, last;
    char reason[160] = "";
    int rc;

    abuf = malloc(alen ? alen : 1);
    if (abuf == NULL)
        return;
    protobuf_c_message_pack(args, abuf);
    if ((rc = node_next_nonce(n, &next, &last, n->agency->id)) != 0)
        goto done;
    t.chain_id = n->gen.chain_id;
    t.sender = n->agency->id;
    t.nonce = next;
    t.contract = contract;
    t.method = method;
    t.args = abuf;
    t.args_len = alen;
    t.timestamp_ms = node_now_ms(n);
    if ((rc = txbuild_sign(&tx, &tx_len, id, &t, &n->node_sk, 1)) != 0)
        goto done;
    rc = node_submit(n, id, reason, sizeof reason, tx, tx_len);
done:
    if (rc != 0)
        LOG_W_LIMITED("release: %s.%s not submitted: %s %s", contract, method, bex_strerror(rc), reason);
    else
        LOG_I("release: submitted %s.%s (nonce %" PRIu64 ")", contract, method, next);
    free(tx);
    free(abuf);
}

static const Bex__RecordField *record_field(const Bex__Record *r, const char *name)
{
    for (size_t i = 0; i < r->n_fields; i++) {
        if (strcmp(r->fields[i]->name, name) == 0)
            return r->fields[i];
    }
    return NULL;
}

static int load_record(struct node *n, Bex__Record **rec, const char *resource, ProtobufCBinaryData key)
{
    Bex__RecordGetArgs a = BEX__RECORD_GET_ARGS__INIT;

    a.resource = (char *)resource;
    a.key = key;
    return query(n, (ProtobufCMessage **)rec, "record", "get", &a.base);
}

static void answer_access(struct node *n, uint64_t access_id)
{
    Bex__Access *acc = NULL;
    Bex__Grant *g = NULL;
    Bex__Record *rec = NULL;
    Bex__FieldKey *keys = NULL, **kp = NULL;
    uint8_t(*wrapped)[SEALING_WRAPPED_BYTES] = NULL;
    const struct crypto_pubkey *to;
    size_t nk = 0;

    if (recently_answered(n, 'a', access_id) || query_id(n, (ProtobufCMessage **)&acc, "access", "get", access_id) != 0)
        goto done;
    if (strcmp(acc->owner, n->agency->id) != 0 || acc->status != BEX__ACCESS_STATUS__ACCESS_OPEN)
        goto done;
    if (query_id(n, (ProtobufCMessage **)&g, "grant", "get", acc->grant_id) != 0 ||
        load_record(n, &rec, acc->resource, acc->record_key) != 0 || (to = enc_key_of(n, acc->consumer)) == NULL)
        goto done;
    keys = calloc(g->n_fields + 1, sizeof *keys);
    kp = calloc(g->n_fields + 1, sizeof *kp);
    wrapped = calloc(g->n_fields + 1, sizeof *wrapped);
    if (keys == NULL || kp == NULL || wrapped == NULL)
        goto done;
    for (size_t i = 0; i < g->n_fields; i++) {
        const Bex__RecordField *f = record_field(rec, g->fields[i]);
        struct sealing_ref ref = {acc->resource, acc->record_key.data, acc->record_key.len, g->fields[i]};

        if (f == NULL || f->value_case != BEX__RECORD_FIELD__VALUE_SEALED)
            continue;
        if (sealing_rewrap(wrapped[nk], &n->enc_sk, to, &ref, f->sealed->wrapped_key.data,
                           f->sealed->wrapped_key.len) != 0) {
            LOG_W("release: access %" PRIu64 ": field %s does not open with this agency's key", access_id,
                  g->fields[i]);
            continue;
        }
        bex__field_key__init(&keys[nk]);
        keys[nk].field = g->fields[i];
        keys[nk].wrapped_key = (ProtobufCBinaryData){SEALING_WRAPPED_BYTES, wrapped[nk]};
        kp[nk] = &keys[nk];
        nk++;
    }
    {
        Bex__AccessReleaseArgs a = BEX__ACCESS_RELEASE_ARGS__INIT;

        a.access_id = access_id;
        a.n_keys = nk;
        a.keys = kp;
        mark_answered(n, 'a', access_id);
        submit_own(n, "access", "release", &a.base);
    }
done:
    free(keys);
    free(kp);
    free(wrapped);
    if (rec != NULL)
        contract_result_free(&rec->base);
    if (g != NULL)
        contract_result_free(&g->base);
    if (acc != NULL)
        contract_result_free(&acc->base);
}

static void answer_verify(struct node *n, uint64_t verify_id)
{
    Bex__Verification *v = NULL;
    Bex__Record *rec = NULL;
    const Bex__RecordField *f;
    bool match = false;

    if (recently_answered(n, 'v', verify_id) || query_id(n, (ProtobufCMessage **)&v, "verify", "get", verify_id) != 0)
        goto done;
    if (strcmp(v->owner, n->agency->id) != 0 || v->status != BEX__VERIFY_STATUS__VERIFY_OPEN)
        goto done;
    if (load_record(n, &rec, v->resource, v->record_key) == 0 && (f = record_field(rec, v->field)) != NULL) {
        struct sealing_ref ref = {v->resource, v->record_key.data, v->record_key.len, v->field};

        /* A claim that does not open (altered, or sealed for another field) is answered "no". */
        if (f->value_case == BEX__RECORD_FIELD__VALUE_SEALED) {
            if (sealing_claim_check(&match, &n->enc_sk, &ref, v->consumer, v->claim.data, v->claim.len,
                                    f->sealed->wrapped_key.data, f->sealed->wrapped_key.len,
                                    f->sealed->ciphertext.data, f->sealed->ciphertext.len) != 0)
                match = false;
        } else if (f->value_case == BEX__RECORD_FIELD__VALUE_PLAINTEXT) {
            uint8_t claim[SEALING_CLAIM_VALUE_BYTES_MAX];
            size_t claim_len = 0, plain_len = strlen(f->plaintext);

            if (sealing_claim_open(claim, sizeof claim, &claim_len, &n->enc_sk, &ref, v->consumer, v->claim.data,
                                   v->claim.len) == 0)
                match = claim_len == plain_len && crypto_memeq(claim, f->plaintext, plain_len);
            crypto_wipe(claim, sizeof claim);
        }
    }
    {
        Bex__VerifyAnswerArgs a = BEX__VERIFY_ANSWER_ARGS__INIT;

        a.verify_id = verify_id;
        a.match = match;
        mark_answered(n, 'v', verify_id);
        submit_own(n, "verify", "answer", &a.base);
    }
done:
    if (rec != NULL)
        contract_result_free(&rec->base);
    if (v != NULL)
        contract_result_free(&v->base);
}

static void share_index(struct node *n, uint64_t grant_id)
{
    Bex__Grant *g = NULL;
    Bex__Resource *r = NULL;
    Bex__NameArgs na = BEX__NAME_ARGS__INIT;
    const struct crypto_pubkey *to;
    uint8_t wrapped[SEALING_WRAPPED_BYTES];

    if (recently_answered(n, 'g', grant_id) || query_id(n, (ProtobufCMessage **)&g, "grant", "get", grant_id) != 0)
        goto done;
    if (strcmp(g->owner, n->agency->id) != 0 || g->status != BEX__GRANT_STATUS__GRANT_ACTIVE)
        goto done;
    {
        Bex__RecordIndexKeyArgs ia = BEX__RECORD_INDEX_KEY_ARGS__INIT;
        ProtobufCMessage *have = NULL;

        ia.resource = g->resource;
        ia.consumer = g->consumer;
        if (query(n, &have, "record", "index_key", &ia.base) == 0) {
            contract_result_free(have);
            goto done; /* shared already */
        }
    }
    na.id = g->resource;
    if (query(n, (ProtobufCMessage **)&r, "catalog", "get", &na.base) != 0 ||
        r->share_type == BEX__SHARE_TYPE__SHARE_UNCONDITIONAL)
        goto done; /* plain record keys: nothing to share */
    if ((to = enc_key_of(n, g->consumer)) == NULL ||
        sealing_index_share(wrapped, &n->enc_sk, to, g->resource, g->consumer) != 0)
        goto done;
    {
        Bex__RecordShareIndexArgs a = BEX__RECORD_SHARE_INDEX_ARGS__INIT;

        a.grant_id = grant_id;
        a.wrapped_index_key = (ProtobufCBinaryData){sizeof wrapped, wrapped};
        mark_answered(n, 'g', grant_id);
        submit_own(n, "record", "share_index", &a.base);
    }
done:
    if (r != NULL)
        contract_result_free(&r->base);
    if (g != NULL)
        contract_result_free(&g->base);
}

void node_release_block(struct node *n, const struct ledger_applied *a)
{
    if (!n->has_enc || n->catching_up || n->store_failed)
        return;
    for (size_t i = 0; i < a->out->event_count; i++) {
        const struct exec_event *e = &a->out->events[i];

        if (strcmp(e->contract, "access") == 0 && strcmp(e->kind, "requested") == 0) {
            Bex__AccessResult *r = bex__access_result__unpack(NULL, e->data_len, e->data);

            if (r != NULL) {
                answer_access(n, r->access_id);
                bex__access_result__free_unpacked(r, NULL);
            }
        } else if (strcmp(e->contract, "verify") == 0 && strcmp(e->kind, "requested") == 0) {
            Bex__VerifyResult *r = bex__verify_result__unpack(NULL, e->data_len, e->data);

            if (r != NULL) {
                answer_verify(n, r->verify_id);
                bex__verify_result__free_unpacked(r, NULL);
            }
        } else if (strcmp(e->contract, "grant") == 0 &&
                   (strcmp(e->kind, "approved") == 0 || strcmp(e->kind, "activated") == 0)) {
            /* Grant events carry the whole grant. */
            Bex__Grant *g = bex__grant__unpack(NULL, e->data_len, e->data);

            if (g != NULL) {
                share_index(n, g->id);
                bex__grant__free_unpacked(g, NULL);
            }
        }
    }
}

/* Answers open accesses and verifications of this agency that no event answered (node was down or behind). */
void node_release_sweep(struct node *n)
{
    static const char *kinds[] = {"access", "verify"};

    if (!n->has_enc || n->catching_up || n->store_failed)
        return;
    {
        Bex__GrantListArgs ga = BEX__GRANT_LIST_ARGS__INIT;
        ProtobufCMessage *out = NULL;

        ga.owner = (char *)n->agency->id;
        ga.status = BEX__GRANT_STATUS__GRANT_ACTIVE;
        ga.limit = 50;
        if (query(n, &out, "grant", "list", &ga.base) == 0) {
            Bex__GrantList *l = (Bex__GrantList *)out;

            for (size_t i = 0; i < l->n_grants; i++)
                share_index(n, l->grants[i]->id);
            contract_result_free(out);
        }
    }
    for (size_t k = 0; k < 2; k++) {
        Bex__AccessListArgs a = BEX__ACCESS_LIST_ARGS__INIT;
        ProtobufCMessage *out = NULL;

        a.owner = (char *)n->agency->id;
        a.status = 1; /* ACCESS_OPEN / VERIFY_OPEN */
        a.limit = 50;
        if (query(n, &out, kinds[k], "list", &a.base) != 0)
            continue;
        if (k == 0) {
            Bex__AccessList *l = (Bex__AccessList *)out;

            for (size_t i = 0; i < l->n_accesses; i++)
                answer_access(n, l->accesses[i]->id);
        } else {
            Bex__VerificationList *l = (Bex__VerificationList *)out;

            for (size_t i = 0; i < l->n_verifications; i++)
                answer_verify(n, l->verifications[i]->id);
        }
        contract_result_free(out);
    }
}
