/*
 * gen_corpus.c: writes the generated seed files of the fuzz corpora.
 *
 *   gen_corpus DIR        (make fuzz-corpus: DIR is tests/fuzz/corpus)
 *
 * Seeds that need real signatures, keys or a consistent genesis cannot be
 * typed by hand, so they are made here with the library itself: signed txs
 * for the fixed genesis of the txcheck target, envelopes and blocks carrying
 * them, genesis and node files written by config_write_*(), a keystore
 * written by keystore_write(), and near misses of each that break one rule.
 * Every file is written to DIR/<target>/<name>, replacing what was there.
 * Everything but the keystore (random salt and nonce) comes out the same on
 * every run.
 */
#include "bex.pb-c.h"
#include "config.h"
#include "fuzz_util.h"
#include "keystore.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUF_BYTES FUZZ_TX_BYTES_MAX

static const char *out_dir;

static void write_seed(const char *target, const char *name, const void *data, size_t len)
{
    char path[FUZZ_PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fuzz_fail("mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    fuzz_write_file(path, data, len);
}

/* ---- transactions ---- */

static const struct fuzz_tx txs[] = {
    {"valid-one-sig", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {0}, 1, 0},
    {"valid-two-sigs", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 2, 0, {0, 1}, 2, 0},
    {"valid-node-key", FUZZ_CHAIN_ID, FUZZ_AGENCY_B, FUZZ_AGENCY_B_LAST + 1, 64, {4}, 1, 0},
    {"bad-sig", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {0}, 1, FUZZ_TX_CORRUPT_SIG},
    {"unregistered-key", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {FUZZ_KEY_UNREGISTERED}, 1, 0},
    {"other-agency-key", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {3}, 1, 0},
    {"duplicate-key", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {1, 1}, 2, 0},
    {"wrong-chain", "bex-other", FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {0}, 1, 0},
    {"nonce-used", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST, 8, {0}, 1, 0},
    {"nonce-far-ahead", FUZZ_CHAIN_ID, FUZZ_AGENCY_B, 5000, 8, {3}, 1, 0},
    {"unknown-sender", FUZZ_CHAIN_ID, "city.unknown", 1, 8, {0}, 1, 0},
    {"unknown-body-field", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {0}, 1, FUZZ_TX_UNKNOWN_FIELD},
    {"args-too-long", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 1025, {0}, 1, 0},
    {"method-too-long", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 1, 8, {0}, 1, FUZZ_TX_LONG_METHOD},
    {"keys-unreadable", FUZZ_CHAIN_ID, FUZZ_AGENCY_NO_KEYS, 1, 8, {0}, 1, 0},
    {"nonce-unreadable", FUZZ_CHAIN_ID, FUZZ_AGENCY_NO_NONCE, 1, 8, {FUZZ_KEY_NO_NONCE}, 1, 0},
};

static void gen_txcheck(void)
{
    static uint8_t buf[BUF_BYTES];
    for (size_t i = 0; i < BEX_ARRAY_LEN(txs); i++)
        write_seed("txcheck", txs[i].name, buf, fuzz_make_tx(buf, sizeof(buf), &txs[i]));
}

/* ---- blocks and envelopes ---- */

static uint8_t tx_a[BUF_BYTES], tx_b[BUF_BYTES];
static size_t tx_a_len, tx_b_len;
static uint8_t digest_bytes[CRYPTO_HASH_BYTES], sig_bytes[CRYPTO_SIG_BYTES];

/* Packs any message into a new buffer; the caller frees it. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len > 0 ? *len : 1);
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(protobuf_c_message_pack(m, buf) == *len);
    return buf;
}

static void proposal_of(Bex__BlockProposal *p, ProtobufCBinaryData txs_out[2], bool null)
{
    bex__block_proposal__init(p);
    p->chain_id = FUZZ_CHAIN_ID;
    p->height = 1;
    p->view = 0;
    p->time_ms = 1764000000000ull;
    p->proposer = 0;
    p->null = null;
    if (!null) {
        txs_out[0] = (ProtobufCBinaryData){tx_a_len, tx_a};
        txs_out[1] = (ProtobufCBinaryData){tx_b_len, tx_b};
        p->txs = txs_out;
        p->n_txs = 2;
    }
}

static void cert_of(Bex__CommitCert *c, Bex__CertVote votes[3], Bex__CertVote *ptrs[3])
{
    bex__commit_cert__init(c);
    c->view = 0;
    c->seq = 1;
    c->digest = (ProtobufCBinaryData){sizeof(digest_bytes), digest_bytes};
    for (uint32_t i = 0; i < 3; i++) {
        bex__cert_vote__init(&votes[i]);
        votes[i].replica = i;
        votes[i].sig = (ProtobufCBinaryData){sizeof(sig_bytes), sig_bytes};
        ptrs[i] = &votes[i];
    }
    c->votes = ptrs;
    c->n_votes = 3;
}

/* Fills r with a record of height 1 whose proposal bytes are *proposal (freed by the caller). */
static void record_of(Bex__BlockRecord *r, Bex__CommitCert *cert, uint8_t **proposal, size_t *proposal_len)
{
    Bex__BlockProposal p;
    ProtobufCBinaryData txs_out[2];

    proposal_of(&p, txs_out, false);
    *proposal = pack(&p.base, proposal_len);
    bex__block_record__init(r);
    r->height = 1;
    r->proposal = (ProtobufCBinaryData){*proposal_len, *proposal};
    r->cert = cert;
    r->prev_hash = (ProtobufCBinaryData){sizeof(digest_bytes), digest_bytes};
    r->hash = (ProtobufCBinaryData){sizeof(digest_bytes), digest_bytes};
    r->state_root = (ProtobufCBinaryData){sizeof(digest_bytes), digest_bytes};
}

static void write_message(const char *target, const char *name, const ProtobufCMessage *m)
{
    size_t len;
    uint8_t *buf = pack(m, &len);
    write_seed(target, name, buf, len);
    free(buf);
}

/* A state_root of 0 bytes after field 0, wire type 5, tagged 0x85 0x00. */
static const uint8_t field_zero[] = {0x85, 0x00, 0x32, 0x00, 0x32, 0x00, 0x32, 0x00};

static void gen_block_record(void)
{
    Bex__BlockProposal p;
    ProtobufCBinaryData txs_out[2];
    Bex__CommitCert cert;
    Bex__CertVote votes[3], *vote_ptrs[3];
    Bex__BlockRecord r;
    uint8_t *proposal;
    size_t proposal_len;

    proposal_of(&p, txs_out, false);
    write_message("block_record", "proposal", &p.base);
    proposal_of(&p, txs_out, true);
    write_message("block_record", "proposal-null", &p.base);
    cert_of(&cert, votes, vote_ptrs);
    write_message("block_record", "cert", &cert.base);
    record_of(&r, &cert, &proposal, &proposal_len);
    write_message("block_record", "record", &r.base);
    free(proposal);
    /* Found by fuzzing: field 0 behind a non-minimal tag varint decodes, but
     * its re-encoding does not (see has_field_zero() in fuzz_util.c). */
    write_seed("block_record", "field-zero", field_zero, sizeof(field_zero));
}

/* Appends one frame (4-byte big-endian length + encoded envelope) to buf at *len. */
static void frame(uint8_t *buf, size_t *len, const Bex__Envelope *env)
{
    size_t n = bex__envelope__get_packed_size(env);
    FUZZ_CHECK(*len + 4 + n <= BUF_BYTES * 2);
    buf[*len] = (uint8_t)(n >> 24);
    buf[*len + 1] = (uint8_t)(n >> 16);
    buf[*len + 2] = (uint8_t)(n >> 8);
    buf[*len + 3] = (uint8_t)n;
    *len += 4;
    *len += bex__envelope__pack(env, buf + *len);
}

static void write_frame(const char *name, const Bex__Envelope *env)
{
    static uint8_t buf[BUF_BYTES * 2];
    size_t len = 0;
    frame(buf, &len, env);
    write_seed("envelope", name, buf, len);
}

static void gen_envelope(void)
{
    static uint8_t buf[BUF_BYTES * 2];
    Bex__Envelope env = BEX__ENVELOPE__INIT;
    Bex__Hello hello = BEX__HELLO__INIT;
    Bex__PbftVote vote = BEX__PBFT_VOTE__INIT;
    Bex__PbftVote *vote_ptr = &vote;
    Bex__CertVote votes[3], *vote_ptrs[3];
    Bex__PbftPrepared prepared = BEX__PBFT_PREPARED__INIT;
    Bex__PbftPrepared *prepared_ptr = &prepared;
    Bex__PbftViewChange vc = BEX__PBFT_VIEW_CHANGE__INIT;
    Bex__PbftViewChange *vc_ptr = &vc;
    Bex__PbftNewView nv = BEX__PBFT_NEW_VIEW__INIT;
    Bex__BlockRequest req = BEX__BLOCK_REQUEST__INIT;
    Bex__BlockResponse resp = BEX__BLOCK_RESPONSE__INIT;
    Bex__BlockProposal p;
    ProtobufCBinaryData txs_out[2];
    Bex__CommitCert cert;
    Bex__CertVote cert_votes[3], *cert_vote_ptrs[3];
    Bex__BlockRecord r, *r_ptr = &r;
    Bex__Tx *tx;
    uint8_t *proposal;
    size_t proposal_len, len;

    hello.chain_id = FUZZ_CHAIN_ID;
    hello.replica = 2;
    hello.height = 41;
    hello.version = "bex/0.1";
    env.kind_case = BEX__ENVELOPE__KIND_HELLO;
    env.hello = &hello;
    write_frame("hello", &env);

    FUZZ_CHECK((tx = bex__tx__unpack(NULL, tx_b_len, tx_b)) != NULL);
    env.kind_case = BEX__ENVELOPE__KIND_TX;
    env.tx = tx;
    write_frame("tx", &env);
    bex__tx__free_unpacked(tx, NULL);

    vote.type = 2;
    vote.view = 1;
    vote.seq = 7;
    vote.digest = (ProtobufCBinaryData){sizeof(digest_bytes), digest_bytes};
    vote.replica = 3;
    vote.sig = (ProtobufCBinaryData){sizeof(sig_bytes), sig_bytes};
    env.kind_case = BEX__ENVELOPE__KIND_VOTE;
    env.vote = &vote;
    write_frame("vote", &env);

    for (uint32_t i = 0; i < 3; i++) {
        bex__cert_vote__init(&votes[i]);
        votes[i].replica = i;
        votes[i].sig = (ProtobufCBinaryData){sizeof(sig_bytes), sig_bytes};
        vote_ptrs[i] = &votes[i];
    }
    prepared.view = 1;
    prepared.seq = 7;
    prepared.digest = vote.digest;
    prepared.pre_prepare_sig = vote.sig;
    prepared.prepares = vote_ptrs;
    prepared.n_prepares = 3;
    vc.new_view = 2;
    vc.stable_seq = 64;
    vc.stable_digest = vote.digest;
    vc.checkpoint_proof = vote_ptrs;
    vc.n_checkpoint_proof = 3;
    vc.prepared = &prepared_ptr;
    vc.n_prepared = 1;
    vc.replica = 1;
    vc.sig = vote.sig;
    env.kind_case = BEX__ENVELOPE__KIND_VIEW_CHANGE;
    env.view_change = &vc;
    write_frame("view-change", &env);

    nv.view = 2;
    nv.view_changes = &vc_ptr;
    nv.n_view_changes = 1;
    nv.pre_prepares = &vote_ptr;
    nv.n_pre_prepares = 1;
    nv.replica = 2;
    nv.sig = vote.sig;
    env.kind_case = BEX__ENVELOPE__KIND_NEW_VIEW;
    env.new_view = &nv;
    write_frame("new-view", &env);

    proposal_of(&p, txs_out, false);
    env.kind_case = BEX__ENVELOPE__KIND_PROPOSAL;
    env.proposal = &p;
    write_frame("proposal", &env);

    req.from_height = 1;
    req.max_blocks = 16;
    env.kind_case = BEX__ENVELOPE__KIND_BLOCK_REQUEST;
    env.block_request = &req;
    write_frame("block-request", &env);

    cert_of(&cert, cert_votes, cert_vote_ptrs);
    record_of(&r, &cert, &proposal, &proposal_len);
    resp.blocks = &r_ptr;
    resp.n_blocks = 1;
    resp.tip = 1;
    env.kind_case = BEX__ENVELOPE__KIND_BLOCK_RESPONSE;
    env.block_response = &resp;
    write_frame("block-response", &env);
    free(proposal);

    /* A stream: hello, a block request, then a frame cut short. */
    len = 0;
    env.kind_case = BEX__ENVELOPE__KIND_HELLO;
    frame(buf, &len, &env);
    env.kind_case = BEX__ENVELOPE__KIND_BLOCK_REQUEST;
    frame(buf, &len, &env);
    frame(buf, &len, &env);
    write_seed("envelope", "stream", buf, len - 2);

    buf[0] = buf[1] = buf[2] = 0;
    buf[3] = sizeof(field_zero);
    memcpy(buf + 4, field_zero, sizeof(field_zero));
    write_seed("envelope", "field-zero", buf, 4 + sizeof(field_zero));
}

/* ---- mempool ---- */

static void gen_mempool(void)
{
    /* Config 0; adds for three senders, a marked selection, a commit of two
     * pooled txs, an eviction, an unmark and a failing nonce callback. */
    static const uint8_t scripted[] = {
        0x00,                   /* configuration 0 */
        0x00, 0x00, 0x20, 0x10, /* add: sender 0, id 0, next nonce, 16 bytes */
        0x00, 0x00, 0x41, 0x20, /* add: sender 0, id 1, nonce + 2, 32 bytes */
        0x00, 0x01, 0x22, 0x30, /* add: sender 1, id 2, next nonce */
        0x00, 0x02, 0x23, 0x85, /* add: sender 2, id 3, 40 bytes */
        0x00, 0x03, 0x24, 0x08, /* add: sender 3 (over senders_max) */
        0x01, 0x10, 0xff, 0x01, /* select 16, 4080 bytes, mark */
        0x02, 0x02, 0x00, 0x00, /* commit 2 txs: */
        0x00, 0x01,             /*   pooled txs 0 and 1 */
        0x04, 0x20, 0x00, 0x00, /* tick */
        0x00, 0x80, 0x25, 0x10, /* add with an earlier clock */
        0x06, 0x01, 0x00, 0x00, /* nonce callback of sender 1 fails */
        0x00, 0x01, 0x26, 0x10, /* add for sender 1 */
        0x02, 0x01, 0x00, 0x00, /* commit 1 tx: */
        0xc1,                   /*   a foreign tx of sender 1 */
        0x05, 0x00, 0x00, 0x00, /* unmark all */
        0x01, 0x03, 0x04, 0x00, /* select 3, 64 bytes, no mark */
        0x07, 0x00, 0x02, 0x00, /* sender 0's committed nonce moves */
        0x03, 0x02, 0x40, 0x00, /* evict older than 8 ms after 64 ms */
    };
    uint8_t buf[1 + 4 * 96];
    uint64_t x = 0x9e3779b97f4a7c15ull;

    write_seed("mempool", "scripted", scripted, sizeof(scripted));
    /* Random programs: every byte string is a valid program. */
    for (unsigned cfg = 0; cfg < 4; cfg++) {
        char name[32];
        buf[0] = (uint8_t)cfg;
        for (size_t i = 1; i < sizeof(buf); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        /* Mostly adds, so the pool fills. */
        for (size_t i = 1; i + 4 <= sizeof(buf); i += 4)
            buf[i] = buf[i] % 3 == 0 ? buf[i] : 0;
        snprintf(name, sizeof(name), "random-config-%u", cfg);
        write_seed("mempool", name, buf, sizeof(buf));
    }
}

/* ---- JSON files ---- */

static void write_json(const char *target, const char *name, json_t *doc, size_t flags)
{
    char *text = json_dumps(doc, flags);
    FUZZ_CHECK(text != NULL);
    write_seed(target, name, text, strlen(text));
    free(text);
    json_decref(doc);
}

/* Reads a file the library wrote into a JSON document. */
static json_t *load_written(const char *path)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        fuzz_fail("%s: %s", path, jerr.text);
    return doc;
}

/* Sets member key of the object at doc[path...] (NULL value: delete it). */
static json_t *edit(json_t *base, const char *array, size_t index, const char *key, json_t *value)
{
    json_t *doc = json_deep_copy(base);
    json_t *obj = doc;

    if (array != NULL)
        obj = json_array_get(json_object_get(doc, array), index);
    FUZZ_CHECK(obj != NULL);
    if (value == NULL)
        FUZZ_CHECK(json_object_del(obj, key) == 0);
    else
        FUZZ_CHECK(json_object_set_new(obj, key, value) == 0);
    return doc;
}

static const size_t PRETTY = JSON_INDENT(2) | JSON_PRESERVE_ORDER;

static void gen_genesis(void)
{
    static struct genesis g;
    char path[FUZZ_PATH_MAX], err[256];
    char zeros[65] = "", long_name[66] = "", long_host[303];
    json_t *doc, *v;

    memset(zeros, '0', 64);
    memset(long_name, 'a', 65);
    memset(long_host, 'h', 300);
    memcpy(long_host + 300, ":1", 3);
    fuzz_genesis(&g);
    fuzz_path(path, "genesis.json");
    if (config_write_genesis(&g, path, true, err, sizeof(err)) != 0)
        fuzz_fail("%s", err);
    doc = load_written(path);
    write_json("genesis", "valid", json_incref(doc), PRETTY);
    write_json("genesis", "valid-compact", json_incref(doc), JSON_COMPACT);

    write_json("genesis", "threshold-above-officers", edit(doc, "agencies", 1, "threshold", json_integer(3)),
               PRETTY);
    write_json("genesis", "unknown-field", edit(doc, NULL, 0, "extra", json_true()), PRETTY);
    write_json("genesis", "chain-id-uppercase", edit(doc, NULL, 0, "chain_id", json_string("BEX")), PRETTY);
    write_json("genesis", "port-zero", edit(doc, "nodes", 2, "address", json_string("127.0.0.1:0")), PRETTY);
    write_json("genesis", "dns-address", edit(doc, "nodes", 3, "address", json_string("node-3.bex.example:26604")),
               PRETTY);
    v = json_object_get(json_array_get(json_object_get(doc, "agencies"), 0), "enc_key");
    write_json("genesis", "key-reused", edit(doc, "nodes", 0, "node_key", json_incref(v)), PRETTY);
    write_json("genesis", "node-key-not-hex", edit(doc, "nodes", 1, "node_key", json_string("zz")), PRETTY);

    write_json("genesis", "role-twice", edit(doc, "agencies", 0, "roles", json_pack("[s,s]", "audit", "audit")),
               PRETTY);
    write_json("genesis", "tls-key-zero", edit(doc, "nodes", 0, "tls_key", json_string(zeros)), PRETTY);
    v = json_object_get(json_array_get(json_object_get(doc, "nodes"), 0), "tls_key");
    write_json("genesis", "tls-key-reused", edit(doc, "nodes", 1, "tls_key", json_incref(v)), PRETTY);
    write_json("genesis", "time-after-9999",
               edit(doc, NULL, 0, "genesis_time_ms", json_integer((json_int_t)253402300800000)), PRETTY);
    write_json("genesis", "chain-id-65", edit(doc, NULL, 0, "chain_id", json_string(long_name)), PRETTY);
    write_json("genesis", "agencies-empty", edit(doc, NULL, 0, "agencies", json_array()), PRETTY);
    write_json("genesis", "host-too-long", edit(doc, "nodes", 0, "address", json_string(long_host)), PRETTY);

    v = json_deep_copy(doc);
    FUZZ_CHECK(json_array_remove(json_object_get(v, "nodes"), 3) == 0);
    write_json("genesis", "three-nodes", v, PRETTY);
    v = json_deep_copy(doc);
    FUZZ_CHECK(json_object_set_new(json_object_get(v, "consensus"), "window", json_integer(0)) == 0);
    write_json("genesis", "window-zero", v, PRETTY);
    json_decref(doc);
}

static void gen_nodeconfig(void)
{
    struct node_config c;
    char path[FUZZ_PATH_MAX], err[256];
    json_t *doc;

    config_node_defaults(&c);
    snprintf(c.genesis, sizeof(c.genesis), "genesis.json");
    snprintf(c.data_dir, sizeof(c.data_dir), "data");
    snprintf(c.node_key, sizeof(c.node_key), "node.key");
    snprintf(c.tls_key, sizeof(c.tls_key), "tls.pem");
    snprintf(c.enc_key, sizeof(c.enc_key), "/etc/bex/enc.key");
    snprintf(c.listen.host, sizeof(c.listen.host), "127.0.0.1");
    c.listen.port = 26601;
    snprintf(c.rpc.host, sizeof(c.rpc.host), "127.0.0.1");
    c.rpc.port = 26701;
    fuzz_path(path, "node.json");
    if (config_write_node(&c, path, true, err, sizeof(err)) != 0)
        fuzz_fail("%s", err);
    doc = load_written(path);
    write_json("nodeconfig", "valid", json_incref(doc), PRETTY);

    write_json("nodeconfig", "rpc-public-address", edit(doc, NULL, 0, "rpc", json_string("0.0.0.0:26701")), PRETTY);
    json_t *open_rpc = edit(doc, NULL, 0, "rpc", json_string("[::]:26701"));
    FUZZ_CHECK(json_object_set_new(open_rpc, "rpc_public", json_true()) == 0);
    write_json("nodeconfig", "rpc-public-allowed", open_rpc, PRETTY);
    write_json("nodeconfig", "listen-ipv6", edit(doc, NULL, 0, "listen", json_string("[::1]:26601")), PRETTY);
    write_json("nodeconfig", "log-level-unknown", edit(doc, NULL, 0, "log_level", json_string("verbose")), PRETTY);
    write_json("nodeconfig", "no-data-dir", edit(doc, NULL, 0, "data_dir", NULL), PRETTY);
    write_json("nodeconfig", "node-index-high", edit(doc, NULL, 0, "node_index", json_integer(16)), PRETTY);
    write_json("nodeconfig", "map-size-small", edit(doc, NULL, 0, "map_size_mb", json_integer(8)), PRETTY);
    static char long_path[4101];
    memset(long_path, 'p', sizeof(long_path) - 1);
    write_json("nodeconfig", "path-too-long", edit(doc, NULL, 0, "data_dir", json_string(long_path)), PRETTY);
    write_json("nodeconfig", "rpc-same-as-listen", edit(doc, NULL, 0, "rpc", json_string("127.0.0.1:26601")),
               PRETTY);
    json_t *limits = edit(doc, NULL, 0, "log_level", json_string("debug"));
    FUZZ_CHECK(json_object_set_new(json_object_get(limits, "limits"), "tx_bytes_max", json_integer(16777216)) == 0);
    write_json("nodeconfig", "tx-above-frame", limits, PRETTY);
    json_decref(doc);
}

static void gen_keystore(void)
{
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char path[FUZZ_PATH_MAX], err[256];
    json_t *doc;
    char ct[2 * (CRYPTO_SEC_BYTES + CRYPTO_AEAD_TAG_BYTES) + 1];

    fuzz_key(&sk, &pk, FUZZ_KEYS_MAX - 1);
    fuzz_path(path, "key.json");
    if (keystore_write(path, &sk, FUZZ_PASSPHRASE, KEYSTORE_SCRYPT_LOG2N_MIN, KEYSTORE_REPLACE, err, sizeof(err)) !=
        0)
        fuzz_fail("%s", err);
    crypto_wipe(&sk, sizeof(sk));
    doc = load_written(path);
    write_json("keystore", "valid", json_incref(doc), PRETTY);

    snprintf(ct, sizeof(ct), "%s", json_string_value(json_object_get(doc, "ciphertext")));
    ct[0] = ct[0] == '0' ? '1' : '0';
    write_json("keystore", "ciphertext-altered", edit(doc, NULL, 0, "ciphertext", json_string(ct)), PRETTY);
    write_json("keystore", "key-id-wrong", edit(doc, NULL, 0, "key_id", json_string("00")), PRETTY);
    write_json("keystore", "log2n-below-min", edit(doc, NULL, 0, "scrypt_log2_n", json_integer(9)), PRETTY);
    write_json("keystore", "r-costly", edit(doc, NULL, 0, "scrypt_r", json_integer(64)), PRETTY);
    write_json("keystore", "version-2", edit(doc, NULL, 0, "version", json_integer(2)), PRETTY);
    write_json("keystore", "unknown-field", edit(doc, NULL, 0, "comment", json_string("x")), PRETTY);
    write_json("keystore", "no-salt", edit(doc, NULL, 0, "salt", NULL), PRETTY);
    json_decref(doc);

    /* The same files are read as passphrase files too. */
    write_seed("keystore", "passphrase-newline", FUZZ_PASSPHRASE "\n", sizeof(FUZZ_PASSPHRASE));
    write_seed("keystore", "passphrase-crlf", FUZZ_PASSPHRASE "\r\n", sizeof(FUZZ_PASSPHRASE) + 1);
    write_seed("keystore", "passphrase-nul", "pass\0word", 9);
    /* Found by fuzzing: a passphrase that fills the target's 24-byte buffer,
     * followed by its newline, was refused as too long. */
    write_seed("keystore", "passphrase-fills-buffer-lf", "xxxxxxxxxxxxxxxxxxxxxxx\n", 24);
    write_seed("keystore", "passphrase-fills-buffer-crlf", "xxxxxxxxxxxxxxxxxxxxxxx\r\n", 25);
}

int main(int argc, char **argv)
{
    Bex__Tx *tx;

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        fuzz_fail("mkdir %s: %s", out_dir, strerror(errno));
    crypto_sha256(digest_bytes, "digest", 6);
    memset(sig_bytes, 0x5c, sizeof(sig_bytes));
    tx_a_len = fuzz_make_tx(tx_a, sizeof(tx_a), &txs[0]);
    tx_b_len = fuzz_make_tx(tx_b, sizeof(tx_b), &txs[1]);
    FUZZ_CHECK((tx = bex__tx__unpack(NULL, tx_a_len, tx_a)) != NULL);
    bex__tx__free_unpacked(tx, NULL);

    gen_txcheck();
    gen_block_record();
    gen_envelope();
    gen_mempool();
    gen_genesis();
    gen_nodeconfig();
    gen_keystore();
    printf("seed files written under %s\n", out_dir);
    return 0;
}
