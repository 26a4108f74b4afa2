/*
 * exec.c: the executor. It runs a block's transactions in order on a block
 * overlay over committed state, one transaction overlay at a time, and
 * produces the block's write set, receipts, events, history and state root.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define EXEC_CHAIN_ID_BYTES_MAX 64
#define EXEC_MSG_STACK_BYTES 1024

/* What one transaction amounts to, before its receipt is written. */
struct txrun {
    uint8_t tx_id[CONTRACT_HASH_BYTES];
    const Bex__Tx *tx; /* tx_owned, or the caller's decoded tx */
    Bex__Tx *tx_owned;
    Bex__TxBody *body;
    Bex__Agency *agency;
    const struct contract_def *def;
    const struct contract_method *method;
    ProtobufCMessage *args;
    uint8_t signers[CONTRACT_SIGNERS_MAX * CONTRACT_PUBKEY_BYTES];
    size_t signer_count;
    int code; /* positive receipt code */
    char message[CONTRACT_MESSAGE_BYTES_MAX];
    bool audit; /* the sender is known: the tx leaves an audit entry */
    bool ran;   /* the method ran: ctx holds its subject */
    bool deferred; /* nonce ahead of last + 1: no receipt, run it later */
};

struct exec {
    char chain_id[EXEC_CHAIN_ID_BYTES_MAX + 1];
    uint32_t tx_budget;
    const struct exec_store *store;
    struct contract_alloc alloc; /* for decoding txs and registry entries */

    bool open;
    uint64_t height;
    uint64_t time_ms;
    uint8_t prev_root[CONTRACT_HASH_BYTES];
    struct overlay block;
    struct overlay tx;
    struct contract_ctx ctx;
    struct txrun run; /* the tx being executed */

    struct exec_receipt *receipts; /* EXEC_BLOCK_TXS_MAX slots */
    size_t receipt_count;
    struct exec_event *events;
    size_t event_count, event_cap;
    struct exec_history *history;
    size_t history_count, history_cap;
    struct exec_write *writes;
    size_t write_cap;
    struct exec_output out;
};

static void *plain_alloc(void *data, size_t size)
{
    struct contract_alloc *a = data;
    void *p = malloc(size ? size : 1);
    if (!p)
        a->failed = true;
    return p;
}

static void plain_free(void *data, void *p)
{
    (void)data;
    free(p);
}

int exec_new(struct exec **out, const struct exec_config *cfg, const struct exec_store *store)
{
    *out = NULL;
    if (!cfg || !cfg->chain_id || strlen(cfg->chain_id) > EXEC_CHAIN_ID_BYTES_MAX || !store || !store->get ||
        !store->iter)
        return -BEX_EINVAL;
    struct exec *e = calloc(1, sizeof(*e));
    if (!e)
        return -BEX_ENOMEM;
    snprintf(e->chain_id, sizeof(e->chain_id), "%s", cfg->chain_id);
    e->tx_budget = cfg->tx_budget ? cfg->tx_budget : CONTRACT_BUDGET_DEFAULT;
    e->store = store;
    e->alloc.pb.alloc = plain_alloc;
    e->alloc.pb.free = plain_free;
    e->alloc.pb.allocator_data = &e->alloc;
    contract__overlay_init(&e->block);
    contract__overlay_init(&e->tx);
    e->receipts = calloc(EXEC_BLOCK_TXS_MAX, sizeof(*e->receipts));
    if (!e->receipts) {
        free(e);
        return -BEX_ENOMEM;
    }
    *out = e;
    return 0;
}

static void outputs_clear(struct exec *e)
{
    for (size_t i = 0; i < e->receipt_count; i++)
        free((void *)e->receipts[i].encoded);
    e->receipt_count = 0;
    for (size_t i = 0; i < e->event_count; i++) {
        free((void *)e->events[i].kind);
        free((void *)e->events[i].data);
    }
    e->event_count = 0;
    e->history_count = 0;
    contract__overlay_clear(&e->block);
    contract__overlay_clear(&e->tx);
    memset(&e->out, 0, sizeof(e->out));
}

void exec_free(struct exec *e)
{
    if (!e)
        return;
    outputs_clear(e);
    contract__overlay_close(&e->block);
    contract__overlay_close(&e->tx);
    free(e->receipts);
    free(e->events);
    free(e->history);
    free(e->writes);
    free(e);
}

/* Reads committed state under the block overlay (between transactions). */
static int read_key(struct exec *e, const uint8_t **val, size_t *len, const char *key)
{
    size_t key_len = strlen(key);
    const struct overlay_entry *en = contract__overlay_get(&e->block, key, key_len);
    if (en) {
        if (en->del)
            return -BEX_ENOTFOUND;
        *val = en->val;
        *len = en->val_len;
        return 0;
    }
    return e->store->get(e->store->user, key, key_len, val, len);
}

static void put_u32be(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Encodes m into the block overlay; the usual small message goes through the stack, not malloc. */
static int put_msg(struct exec *e, const char *key, const ProtobufCMessage *m)
{
    uint8_t stack[EXEC_MSG_STACK_BYTES];
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = len <= sizeof(stack) ? stack : malloc(len);
    if (!buf)
        return -BEX_ENOMEM;
    size_t packed = protobuf_c_message_pack(m, buf);
    BEX_ASSERT(packed == len);
    int rc = contract__overlay_set(&e->block, key, strlen(key), buf, len);
    if (buf != stack)
        free(buf);
    return rc;
}

static int write_head(struct exec *e)
{
    Bex__ChainHead head = BEX__CHAIN_HEAD__INIT;
    head.height = e->height;
    head.time_ms = e->time_ms;
    return put_msg(e, "chain/head", &head.base);
}

/* ----------------------------------------------------------------- output */

static int sha_update(EVP_MD_CTX *md, const void *p, size_t n)
{
    return EVP_DigestUpdate(md, p, n) == 1 ? 0 : -BEX_ECRYPTO;
}

/* root_h = SHA-256(root_{h-1} || u64be(h) || each write, see contract.h). */
static int compute_root(struct exec *e)
{
    int rc = -BEX_ECRYPTO;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return -BEX_ENOMEM;
    uint8_t num[8];
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto fail;
    contract__put_u64be(num, e->height);
    if ((rc = sha_update(md, e->prev_root, CONTRACT_HASH_BYTES)) != 0 || (rc = sha_update(md, num, 8)) != 0)
        goto fail;
    for (const struct overlay_entry *w = contract__overlay_first(&e->block); w; w = contract__overlay_next(w)) {
        uint8_t len[4];
        uint8_t op = w->del ? 0 : 1;
        put_u32be(len, (uint32_t)w->key_len);
        if ((rc = sha_update(md, len, 4)) != 0 || (rc = sha_update(md, w->key, w->key_len)) != 0 ||
            (rc = sha_update(md, &op, 1)) != 0)
            goto fail;
        put_u32be(len, (uint32_t)w->val_len);
        if ((rc = sha_update(md, len, 4)) != 0 || (rc = sha_update(md, w->val, w->val_len)) != 0)
            goto fail;
    }
    unsigned int n = 0;
    rc = -BEX_ECRYPTO;
    if (EVP_DigestFinal_ex(md, e->out.state_root, &n) != 1 || n != CONTRACT_HASH_BYTES)
        goto fail;
    rc = 0;
fail:
    EVP_MD_CTX_free(md);
    return rc;
}

static int finish_output(struct exec *e, const struct exec_output **out)
{
    if (e->block.count > e->write_cap) {
        struct exec_write *w = realloc(e->writes, e->block.count * sizeof(*w));
        if (!w)
            return -BEX_ENOMEM;
        e->writes = w;
        e->write_cap = e->block.count;
    }
    size_t i = 0;
    for (const struct overlay_entry *en = contract__overlay_first(&e->block); en; en = contract__overlay_next(en)) {
        BEX_ASSERT(i < e->block.count);
        e->writes[i++] = (struct exec_write){.key = en->key,
                                           .key_len = en->key_len,
                                           .val = en->del ? NULL : en->val,
                                           .val_len = en->val_len,
                                           .del = en->del};
    }
    BEX_ASSERT(i == e->block.count);
    e->out.height = e->height;
    e->out.time_ms = e->time_ms;
    int rc = compute_root(e);
    if (rc != 0)
        return rc;
    e->out.writes = e->writes;
    e->out.write_count = e->block.count;
    e->out.receipts = e->receipts;
    e->out.receipt_count = e->receipt_count;
    e->out.events = e->events;
    e->out.event_count = e->event_count;
    e->out.history = e->history;
    e->out.history_count = e->history_count;
    *out = &e->out;
    return 0;
}

/* ---------------------------------------------------------------- genesis */

static bool keys_distinct(const ProtobufCBinaryData *keys, size_t n, const ProtobufCBinaryData *extra)
{
    for (size_t i = 0; i < n; i++) {
        if (extra && keys[i].len == extra->len && memcmp(keys[i].data, extra->data, extra->len) == 0)
            return false;
        for (size_t j = 0; j < i; j++)
            if (keys[i].len == keys[j].len && memcmp(keys[i].data, keys[j].data, keys[i].len) == 0)
                return false;
    }
    return true;
}

static int check_agency(const Bex__Agency *a)
{
    if (!a || !contract__agency_id_ok(a->id) || !contract__text_ok(a->name, 200) || a->n_roles > CONTRACT_ROLES_MAX)
        return -BEX_EINVAL;
    for (size_t i = 0; i < a->n_roles; i++)
        if (!contract__name_ok(a->roles[i]) || strcmp(a->roles[i], "*") == 0)
            return -BEX_EINVAL;
    if (a->n_officer_keys == 0 || a->n_officer_keys > CONTRACT_SIGNERS_MAX)
        return -BEX_EINVAL;
    if (a->threshold == 0 || a->threshold > a->n_officer_keys)
        return -BEX_EINVAL;
    for (size_t i = 0; i < a->n_officer_keys; i++)
        if (!contract__pubkey_ok(a->officer_keys[i].data, a->officer_keys[i].len))
            return -BEX_EINVAL;
    /* An agency may take part without running a node of its own: then it has no node key. */
    if ((a->node_key.len != 0 && !contract__pubkey_ok(a->node_key.data, a->node_key.len)) ||
        !contract__pubkey_ok(a->enc_key.data, a->enc_key.len))
        return -BEX_EINVAL;
    /* The node key must not also be an officer key: it signs unattended. */
    if (!keys_distinct(a->officer_keys, a->n_officer_keys, &a->node_key))
        return -BEX_EINVAL;
    return 0;
}

static int any_key(void *user, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    (void)key, (void)key_len, (void)val, (void)val_len;
    *(bool *)user = true;
    return 1;
}

int exec_genesis(struct exec *e, const struct exec_output **out, const Bex__Agency *const *agencies,
                 size_t agency_count, uint64_t time_ms)
{
    BEX_ASSERT(e != NULL);
    *out = NULL;
    if (e->open)
        return -BEX_ESTATE;
    outputs_clear(e);
    if (agency_count == 0 || agency_count > EXEC_GENESIS_AGENCIES_MAX)
        return agency_count ? -BEX_ELIMIT : -BEX_EINVAL;
    bool found = false;
    int rc = e->store->iter(e->store->user, "", 0, NULL, 0, any_key, &found);
    if (rc != 0)
        return rc;
    if (found)
        return -BEX_ESTATE;
    for (size_t i = 0; i < agency_count; i++) {
        if ((rc = check_agency(agencies[i])) != 0)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (strcmp(agencies[i]->id, agencies[j]->id) == 0) {
                rc = -BEX_EINVAL;
                goto fail;
            }
        char key[CONTRACT_KEY_BYTES_MAX];
        if ((rc = contract__key(key, "agency/a/%s", agencies[i]->id)) < 0)
            goto fail;
        if ((rc = put_msg(e, key, &agencies[i]->base)) != 0)
            goto fail;
    }
    e->height = 0;
    e->time_ms = time_ms;
    memset(e->prev_root, 0, sizeof(e->prev_root));
    if ((rc = write_head(e)) != 0)
        goto fail;
    return finish_output(e, out);
fail:
    outputs_clear(e);
    return rc;
}

/* ----------------------------------------------------------------- blocks */

int exec_block_begin(struct exec *e, uint64_t height, uint64_t time_ms, const uint8_t prev_root[CONTRACT_HASH_BYTES])
{
    if (e->open)
        return -BEX_ESTATE;
    outputs_clear(e);
    const uint8_t *val;
    size_t len;
    int rc = e->store->get(e->store->user, "chain/head", strlen("chain/head"), &val, &len);
    if (rc == -BEX_ENOTFOUND)
        return -BEX_ESTATE;
    if (rc != 0)
        return rc;
    Bex__ChainHead *head = bex__chain_head__unpack(&e->alloc.pb, len, val);
    if (!head)
        return e->alloc.failed ? -BEX_ENOMEM : -BEX_ECORRUPT;
    bool next = head->height + 1 == height;
    bool forward = time_ms >= head->time_ms;
    bex__chain_head__free_unpacked(head, &e->alloc.pb);
    if (!next)
        return -BEX_ESTATE;
    if (!forward)
        return -BEX_EINVAL;
    e->height = height;
    e->time_ms = time_ms;
    memcpy(e->prev_root, prev_root, CONTRACT_HASH_BYTES);
    if ((rc = write_head(e)) != 0) {
        outputs_clear(e);
        return rc;
    }
    e->open = true;
    return 0;
}

void exec_block_abort(struct exec *e)
{
    outputs_clear(e);
    e->open = false;
}

int exec_block_end(struct exec *e, const struct exec_output **out)
{
    *out = NULL;
    if (!e->open)
        return -BEX_ESTATE;
    e->open = false;
    int rc = finish_output(e, out);
    if (rc != 0)
        outputs_clear(e);
    return rc;
}

/* ------------------------------------------------------------ transactions */

static int fail_tx(struct txrun *t, int code, const char *fmt, const char *arg)
{
    BEX_ASSERT(code > 0);
    t->code = code;
    snprintf(t->message, sizeof(t->message), fmt, arg);
    contract__sanitize(t->message);
    return 0;
}

static bool same_key(const ProtobufCBinaryData *k, const uint8_t *p)
{
    return k->len == CONTRACT_PUBKEY_BYTES && memcmp(k->data, p, CONTRACT_PUBKEY_BYTES) == 0;
}

/* Checks that every signer is a key of the sender and sorts officers from the node key. */
static int classify_signers(struct exec *e, struct txrun *t)
{
    struct contract_ctx *c = &e->ctx;
    const Bex__Agency *a = t->agency;
    if (t->tx->n_sigs == 0)
        return fail_tx(t, BEX_EPERM, "%s: unsigned transaction", a->id);
    if (t->tx->n_sigs > CONTRACT_SIGNERS_MAX)
        return fail_tx(t, BEX_ELIMIT, "%s: too many signatures", a->id);
    for (size_t i = 0; i < t->tx->n_sigs; i++) {
        const ProtobufCBinaryData *pk = &t->tx->sigs[i]->pubkey;
        if (!contract__pubkey_ok(pk->data, pk->len))
            return fail_tx(t, BEX_EINVAL, "%s: malformed signer key", a->id);
        uint8_t *slot = &t->signers[t->signer_count++ * CONTRACT_PUBKEY_BYTES];
        memcpy(slot, pk->data, CONTRACT_PUBKEY_BYTES);
        if (same_key(&a->node_key, slot)) {
            c->node_signed = true;
            continue;
        }
        size_t k;
        for (k = 0; k < a->n_officer_keys; k++)
            if (same_key(&a->officer_keys[k], slot))
                break;
        if (k == a->n_officer_keys)
            return fail_tx(t, BEX_EPERM, "%s: a signer is not a key of the sender", a->id);
        bool seen = false;
        for (size_t j = 0; j < c->officer_count; j++)
            if (memcmp(c->officers[j], a->officer_keys[k].data, CONTRACT_PUBKEY_BYTES) == 0)
                seen = true;
        if (!seen)
            c->officers[c->officer_count++] = a->officer_keys[k].data;
    }
    BEX_ASSERT(c->officer_count <= a->n_officer_keys);
    return 0;
}

static int check_nonce(struct exec *e, struct txrun *t)
{
    char key[CONTRACT_KEY_BYTES_MAX];
    const uint8_t *val;
    size_t len;
    uint64_t last = 0;
    int rc = contract__key(key, "nonce/%s", t->agency->id);
    BEX_ASSERT(rc > 0);
    rc = read_key(e, &val, &len, key);
    if (rc == 0) {
        if (len != 8)
            return -BEX_ECORRUPT;
        last = contract__get_u64be(val);
    } else if (rc != -BEX_ENOTFOUND) {
        return rc;
    }
    if (t->body->nonce > last + 1) {
        t->deferred = true;
        return 0;
    }
    if (t->body->nonce != last + 1) {
        t->code = BEX_ENONCE;
        snprintf(t->message, sizeof(t->message), "nonce %llu, expected %llu", (unsigned long long)t->body->nonce,
                 (unsigned long long)(last + 1));
        return 0;
    }
    /* The nonce is consumed whatever the method does next. */
    uint8_t buf[8];
    contract__put_u64be(buf, t->body->nonce);
    return contract__overlay_set(&e->block, key, strlen(key), buf, sizeof(buf));
}

/* Runs the method on the tx overlay; 0 with t->code set, or a node fault. */
static int run_method(struct exec *e, struct txrun *t)
{
    struct contract_ctx *c = &e->ctx;
    const Bex__TxBody *b = t->body;
    t->def = contract__find(b->contract);
    if (!t->def)
        return fail_tx(t, BEX_EUNKNOWN, "unknown contract %.40s", b->contract);
    t->method = contract__find_method(t->def, b->method);
    if (!t->method)
        return fail_tx(t, BEX_EUNKNOWN, "unknown method %.40s", b->method);
    if (!(t->method->flags & CONTRACT_NODE_KEY_OK) && c->officer_count == 0)
        return fail_tx(t, BEX_EPERM, "%s needs an officer signature", b->method);
    if (b->args.len > t->method->args_bytes_max) {
        t->code = BEX_ELIMIT;
        snprintf(t->message, sizeof(t->message), "arguments of %zu bytes over the limit of %zu", b->args.len,
                 t->method->args_bytes_max);
        return 0;
    }
    c->contract = t->def->name;
    c->tx = &e->tx;
    c->block = &e->block;
    if (contract__charge(c, b->args.len * CONTRACT_COST_BYTE) != 0)
        return fail_tx(t, BEX_EBUDGET, "%s", "work budget exhausted by the arguments");
    e->alloc.failed = false;
    t->args = protobuf_c_message_unpack(t->method->args, &e->alloc.pb, b->args.len, b->args.data);
    if (!t->args) {
        if (e->alloc.failed)
            return -BEX_ENOMEM;
        return fail_tx(t, BEX_EDECODE, "arguments do not decode as %s", t->method->args->name);
    }
    if (contract__has_unknown(t->args))
        return fail_tx(t, BEX_EDECODE, "arguments of %s carry unknown fields", t->method->args->name);
    t->ran = true;
    int rc = t->method->run(c, t->args);
    if (c->fatal)
        return c->fatal;
    if (c->budget_out) {
        t->code = BEX_EBUDGET;
        snprintf(t->message, sizeof(t->message), "work budget of %llu units exhausted",
                 (unsigned long long)c->budget);
        return 0;
    }
    /* Methods return 0 or a negative receipt code; anything else is a bug. */
    BEX_ASSERT(rc <= 0);
    BEX_ASSERT(rc > -BEX_E_COUNT);
    t->code = -rc;
    if (rc != 0) {
        snprintf(t->message, sizeof(t->message), "%s", c->message[0] ? c->message : bex_strerror(rc));
        return 0;
    }
    if (e->block.bytes + e->tx.bytes > EXEC_BLOCK_WRITE_BYTES_MAX)
        return fail_tx(t, BEX_ELIMIT, "%s", "block write set is full");
    return 0;
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *p = realloc(*v, n * size);
    if (!p)
        return -BEX_ENOMEM;
    *v = p;
    *cap = n;
    return 0;
}

/* Merges a successful tx's overlay and records its history and events. */
static int commit_tx(struct exec *e, struct txrun *t)
{
    struct contract_ctx *c = &e->ctx;
    uint32_t index = (uint32_t)e->receipt_count;
    int rc = contract__overlay_merge(&e->block, &e->tx);
    if (rc != 0)
        return rc;
    rc = grow((void **)&e->history, &e->history_cap, e->history_count + e->tx.count, sizeof(*e->history));
    if (rc != 0)
        return rc;
    for (const struct overlay_entry *en = contract__overlay_first(&e->tx); en; en = contract__overlay_next(en)) {
        const struct overlay_entry *at = contract__overlay_get(&e->block, en->key, en->key_len);
        BEX_ASSERT(at != NULL);
        struct exec_history *h = &e->history[e->history_count++];
        h->key = at->key;
        h->key_len = at->key_len;
        h->tx_index = index;
        memcpy(h->tx_id, t->tx_id, CONTRACT_HASH_BYTES);
    }
    rc = grow((void **)&e->events, &e->event_cap, e->event_count + c->event_count, sizeof(*e->events));
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < c->event_count; i++) {
        char *kind = strdup(c->events[i].kind);
        if (!kind)
            return -BEX_ENOMEM;
        e->events[e->event_count++] = (struct exec_event){.tx_index = index,
                                                          .contract = t->def->name,
                                                          .kind = kind,
                                                          .data = c->events[i].data,
                                                          .data_len = c->events[i].len};
        c->events[i].data = NULL;
    }
    c->event_count = 0;
    return 0;
}

/* Writes v as `digits` lowercase hex digits, zero-padded, no NUL: snprintf's "%0*llx" without its cost. */
static void put_hex(char *out, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 0xf];
    BEX_ASSERT(v == 0);
}

static int write_audit(struct exec *e, const struct txrun *t)
{
    const struct contract_ctx *c = &e->ctx;
    uint32_t index = (uint32_t)e->receipt_count;
    char action[2 * CONTRACT_ID_BYTES_MAX + 2];
    char suffix[32];
    char key[CONTRACT_KEY_BYTES_MAX];
    snprintf(action, sizeof(action), "%.64s.%.64s", t->body->contract, t->body->method);
    /* Inverted numbers make the newest entry sort first: "%016llx/%08lx" of ~height, ~index. */
    put_hex(suffix, ~e->height, 16);
    suffix[16] = '/';
    put_hex(suffix + 17, ~index & 0xffffffffu, 8);
    suffix[25] = '\0';

    Bex__AuditEntry a = BEX__AUDIT_ENTRY__INIT;
    a.height = e->height;
    a.time_ms = e->time_ms;
    a.tx_id.data = (uint8_t *)t->tx_id;
    a.tx_id.len = CONTRACT_HASH_BYTES;
    a.tx_index = index;
    a.actor = t->agency->id;
    a.action = contract__text_ok(action, sizeof(action)) ? action : "?";
    a.code = t->code;
    if (t->ran) {
        a.resource = (char *)c->resource;
        a.record_key.data = (uint8_t *)c->record_key;
        a.record_key.len = c->record_key_len;
        a.grant_id = c->grant_id;
        a.access_id = c->access_id;
    }
    char detail[CONTRACT_DETAIL_BYTES_MAX];
    snprintf(detail, sizeof(detail), "%s", t->code ? t->message : t->ran ? c->detail : "");
    if (!contract__text_ok(detail, sizeof(detail)))
        snprintf(detail, sizeof(detail), "%s", bex_strerror(t->code));
    a.detail = detail;

    int rc = contract__key(key, "audit/e/%s", suffix);
    if (rc < 0 || (rc = put_msg(e, key, &a.base)) != 0)
        return rc;
    static const uint8_t empty[1];
    rc = contract__key(key, "audit/a/%s/%s", t->agency->id, suffix);
    if (rc < 0 || (rc = contract__overlay_set(&e->block, key, strlen(key), empty, 0)) != 0)
        return rc;
    if (a.resource[0] == '\0')
        return 0;
    rc = contract__key(key, "audit/r/%s/%s", a.resource, suffix);
    if (rc < 0 || (rc = contract__overlay_set(&e->block, key, strlen(key), empty, 0)) != 0)
        return rc;
    if (a.record_key.len == 0)
        return 0;
    char hex[2 * CONTRACT_RECORD_KEY_BYTES_MAX + 1];
    contract__hex(hex, a.record_key.data, a.record_key.len);
    rc = contract__key(key, "audit/k/%s/%s/%s", a.resource, hex, suffix);
    if (rc < 0 || (rc = contract__overlay_set(&e->block, key, strlen(key), empty, 0)) != 0)
        return rc;
    return 0;
}

static int write_receipt(struct exec *e, const struct txrun *t)
{
    const struct contract_ctx *c = &e->ctx;
    uint32_t index = (uint32_t)e->receipt_count;
    Bex__Receipt r = BEX__RECEIPT__INIT;
    Bex__Event evs[CONTRACT_EVENTS_PER_TX_MAX];
    Bex__Event *evp[CONTRACT_EVENTS_PER_TX_MAX];
    r.tx_id.data = (uint8_t *)t->tx_id;
    r.tx_id.len = CONTRACT_HASH_BYTES;
    r.height = e->height;
    r.index = index;
    r.code = t->code;
    r.message = t->code ? (char *)t->message : "";
    if (t->code == 0) {
        /* The events just moved to e->events are the last ones there. */
        size_t n = 0;
        for (size_t i = e->event_count; i > 0 && e->events[i - 1].tx_index == index; i--)
            n++;
        BEX_ASSERT(n <= CONTRACT_EVENTS_PER_TX_MAX);
        for (size_t i = 0; i < n; i++) {
            const struct exec_event *ev = &e->events[e->event_count - n + i];
            bex__event__init(&evs[i]);
            evs[i].contract = (char *)ev->contract;
            evs[i].kind = (char *)ev->kind;
            evs[i].data.data = (uint8_t *)ev->data;
            evs[i].data.len = ev->data_len;
            evp[i] = &evs[i];
        }
        r.n_events = n;
        r.events = evp;
        r.result.data = c->result;
        r.result.len = c->result_len;
    }
    size_t len = bex__receipt__get_packed_size(&r);
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        return -BEX_ENOMEM;
    size_t packed = bex__receipt__pack(&r, buf);
    BEX_ASSERT(packed == len);
    struct exec_receipt *er = &e->receipts[e->receipt_count++];
    memcpy(er->tx_id, t->tx_id, CONTRACT_HASH_BYTES);
    er->index = index;
    er->code = t->code;
    er->encoded = buf;
    er->encoded_len = len;
    return 0;
}

/* Checks and runs the decoded tx t->tx; returns a node fault or 0 with t filled. */
static int run_decoded(struct exec *e, struct txrun *t)
{
    struct contract_ctx *c = &e->ctx;
    e->alloc.failed = false;
    t->body = bex__tx_body__unpack(&e->alloc.pb, t->tx->body.len, t->tx->body.data);
    if (!t->body)
        return e->alloc.failed ? -BEX_ENOMEM : fail_tx(t, BEX_EDECODE, "%s", "transaction body does not decode");
    if (strcmp(t->body->chain_id, e->chain_id) != 0)
        return fail_tx(t, BEX_ECHAIN, "%s", "wrong chain id");

    /* Reading the registry is the executor's work, not charged to the method. */
    c->contract = "agency";
    c->budget = UINT64_MAX;
    int rc = contract__load_agency(c, &t->agency, t->body->sender);
    if (rc == -BEX_ENOTFOUND)
        return fail_tx(t, BEX_EUNKNOWN, "%s", "unknown sender");
    if (rc != 0)
        return c->fatal ? c->fatal : rc;
    c->used = 0;
    c->budget = e->tx_budget;
    t->audit = true;
    c->sender = t->agency->id;
    c->agency = t->agency;
    if ((rc = classify_signers(e, t)) != 0 || t->code)
        return rc;
    c->signers = t->signers;
    c->signer_count = t->signer_count;
    if ((rc = check_nonce(e, t)) != 0 || t->code || t->deferred)
        return rc;
    return run_method(e, t);
}

/* Decodes, checks and runs one encoded tx; returns a node fault or 0 with t filled. */
static int run_tx(struct exec *e, struct txrun *t, const uint8_t *tx, size_t tx_len)
{
    if (tx_len > CONTRACT_TX_BYTES_MAX) {
        SHA256(tx, tx_len, t->tx_id);
        return fail_tx(t, BEX_ELIMIT, "%s", "transaction too large");
    }
    e->alloc.failed = false;
    t->tx_owned = bex__tx__unpack(&e->alloc.pb, tx_len, tx);
    if (!t->tx_owned) {
        SHA256(tx, tx_len, t->tx_id);
        return e->alloc.failed ? -BEX_ENOMEM : fail_tx(t, BEX_EDECODE, "%s", "transaction does not decode");
    }
    t->tx = t->tx_owned;
    SHA256(t->tx->body.data, t->tx->body.len, t->tx_id);
    return run_decoded(e, t);
}

/* The id a caller computed for its decoded tx must be ours: checked in tests and SAN=1 builds. */
BEX_UNUSED static bool id_matches(const Bex__Tx *tx, const uint8_t id[CONTRACT_HASH_BYTES])
{
    uint8_t mine[CONTRACT_HASH_BYTES];
    SHA256(tx->body.data, tx->body.len, mine);
    return memcmp(mine, id, CONTRACT_HASH_BYTES) == 0;
}

/*
 * One tx from start to receipt: the encoded bytes (decoded == NULL), or a tx
 * the caller decoded, with its id.
 */
static int exec_one(struct exec *e, int *code, const uint8_t *tx, size_t tx_len, const Bex__Tx *decoded,
                    const uint8_t *id)
{
    if (!e->open)
        return -BEX_ESTATE;
    if (e->receipt_count >= EXEC_BLOCK_TXS_MAX)
        return -BEX_ELIMIT;
    struct txrun *t = &e->run;
    memset(t, 0, sizeof(*t));
    struct contract_ctx *c = &e->ctx;
    contract__ctx_init(c, e->store, e->tx_budget);
    c->tx_id = t->tx_id;
    c->tx_index = (uint32_t)e->receipt_count;
    c->height = e->height;
    c->time_ms = e->time_ms;
    c->block = &e->block;

    int rc;
    if (decoded) {
        t->tx = decoded;
        memcpy(t->tx_id, id, CONTRACT_HASH_BYTES);
        rc = run_decoded(e, t);
    } else {
        rc = run_tx(e, t, tx, tx_len);
    }
    if (rc == 0 && t->deferred) {
        if (code)
            *code = EXEC_DEFERRED;
        contract__overlay_clear(&e->tx);
        goto done;
    }
    if (rc == 0 && t->code == 0)
        rc = commit_tx(e, t);
    contract__overlay_clear(&e->tx);
    if (rc == 0 && t->audit)
        rc = write_audit(e, t);
    if (rc == 0)
        rc = write_receipt(e, t);
    if (rc == 0 && code)
        *code = t->code;
done:
    contract__ctx_close(c);
    if (t->args)
        protobuf_c_message_free_unpacked(t->args, &e->alloc.pb);
    if (t->agency)
        bex__agency__free_unpacked(t->agency, &c->alloc.pb);
    if (t->body)
        bex__tx_body__free_unpacked(t->body, &e->alloc.pb);
    if (t->tx_owned)
        bex__tx__free_unpacked(t->tx_owned, &e->alloc.pb);
    return rc;
}

int exec_tx(struct exec *e, int *code, const uint8_t *tx, size_t tx_len)
{
    BEX_ASSERT(e != NULL);
    BEX_ASSERT(tx != NULL || tx_len == 0);
    return exec_one(e, code, tx, tx_len, NULL, NULL);
}

int exec_tx_decoded(struct exec *e, int *code, const Bex__Tx *tx, const uint8_t id[CONTRACT_HASH_BYTES])
{
    BEX_ASSERT(e != NULL);
    BEX_ASSERT(tx != NULL);
    BEX_ASSERT(id != NULL);
    BEX_CHECK(id_matches(tx, id));
    return exec_one(e, code, NULL, 0, tx, id);
}
