#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bex.h"
#include "config.h"
#include "crypto.h"

#define AGENCIES 5 /* one more than nodes: an agency may run no node */
#define NODES 4

struct fixture {
    char dir[64];
    char genesis_path[128];
    char node_path[128];
    char err[512];
    struct genesis g;
    struct node_config c;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || crypto_init() != 0)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/bex-config-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->genesis_path, sizeof(fx->genesis_path), "%s/genesis.json", fx->dir);
    snprintf(fx->node_path, sizeof(fx->node_path), "%s/node.json", fx->dir);
    *state = fx;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = nftw(fx->dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    crypto_close();
    return rc;
}

/* The public key of a deterministic secret key, as hex. */
static json_t *key_hex(uint32_t seed)
{
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char hex[CRYPTO_PUB_HEX + 1];

    crypto_sha256(sk.b, &seed, sizeof(seed));
    assert_int_equal(crypto_pubkey_of(&pk, &sk), 0);
    crypto_pubkey_to_hex(hex, &pk);
    return json_string(hex);
}

static json_t *tls_hex(uint32_t seed)
{
    uint8_t b[32];
    char hex[65];

    crypto_sha256(b, &seed, sizeof(seed));
    assert_int_equal(crypto_hex_encode(hex, sizeof(hex), b, sizeof(b)), 0);
    return json_string(hex);
}

static const char *const agency_ids[AGENCIES] = {"city.traffic", "city.police", "state.registry", "health",
                                                 "city.tax-office"};

static json_t *valid_genesis(void)
{
    json_t *agencies = json_array();
    json_t *nodes = json_array();

    for (uint32_t i = 0; i < AGENCIES; i++) {
        json_t *a = json_pack("{s:s, s:s, s:[s,s], s:[o,o,o], s:i, s:o}", "id", agency_ids[i], "name",
                              "An Agency", "roles", "traffic", "records", "officers", key_hex(100 * i + 1),
                              key_hex(100 * i + 2), key_hex(100 * i + 3), "threshold", 2, "enc_key",
                              key_hex(100 * i + 50));
        assert_non_null(a);
        json_array_append_new(agencies, a);
    }
    for (uint32_t i = 0; i < NODES; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", 26601 + i);
        json_t *n = json_pack("{s:s, s:o, s:o, s:s}", "agency", agency_ids[i], "node_key", key_hex(1000 + i),
                              "tls_key", tls_hex(2000 + i), "address", addr);
        assert_non_null(n);
        json_array_append_new(nodes, n);
    }
    json_t *doc = json_pack("{s:s, s:I, s:{s:i, s:i, s:i, s:i, s:i, s:i}, s:o, s:o}", "chain_id", "bex-local",
                            "genesis_time_ms", (json_int_t)1764000000000, "consensus", "checkpoint_interval", 16,
                            "window", 64, "view_timeout_ms", 2000, "block_txs_max", 2000, "block_bytes_max",
                            4194304, "batch_delay_ms", 20, "agencies", agencies, "nodes", nodes);
    assert_non_null(doc);
    return doc;
}

static json_t *valid_node(void)
{
    json_t *doc = json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:i, s:I, s:i, s:I, "
                            "s:i, s:i, s:i}}",
                            "genesis", "genesis.json", "node_index", 0, "data_dir", "data", "listen",
                            "127.0.0.1:26601", "rpc", "127.0.0.1:26701", "rpc_public", 0, "node_key", "node.key",
                            "tls_key", "tls.pem", "enc_key", "enc.key", "passphrase_file", "/etc/bex/pass.txt",
                            "log_level", "info", "map_size_mb", 1024, "limits", "mempool_txs", 20000,
                            "mempool_bytes", (json_int_t)67108864, "frame_bytes_max", 16777216,
                            "peer_queue_bytes_max", (json_int_t)67108864, "rpc_body_bytes_max", 4194304,
                            "rpc_conns_max", 256, "tx_bytes_max", 65536);
    assert_non_null(doc);
    return doc;
}

static void write_doc(const char *path, json_t *doc)
{
    assert_int_equal(json_dump_file(doc, path, JSON_INDENT(2)), 0);
}

/* Sets a value at a path like "agencies[2].threshold" (NULL value: delete). */
static void set_at(json_t *doc, const char *path, json_t *value)
{
    char buf[128];
    json_t *cur = doc;
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    char *part = strtok_r(buf, ".", &save);
    while (part != NULL) {
        char *next = strtok_r(NULL, ".", &save);
        char *bracket = strchr(part, '[');
        size_t index = 0;
        if (bracket != NULL) {
            index = strtoul(bracket + 1, NULL, 10);
            *bracket = '\0';
        }
        if (next == NULL && bracket == NULL) {
            if (value == NULL)
                assert_int_equal(json_object_del(cur, part), 0);
            else
                assert_int_equal(json_object_set_new(cur, part, value), 0);
            return;
        }
        cur = json_object_get(cur, part);
        assert_non_null(cur);
        if (bracket != NULL) {
            if (next == NULL) {
                assert_int_equal(json_array_set_new(cur, index, value), 0);
                return;
            }
            cur = json_array_get(cur, index);
            assert_non_null(cur);
        }
        part = next;
    }
}

/* Loads the genesis doc and expects rc with every fragment in the message. */
static void expect_genesis(struct fixture *fx, json_t *doc, int rc, const char *fragment)
{
    write_doc(fx->genesis_path, doc);
    json_decref(doc);
    fx->err[0] = '\0';
    int got = config_load_genesis(&fx->g, fx->genesis_path, fx->err, sizeof(fx->err));
    if (got != rc || (fragment != NULL && strstr(fx->err, fragment) == NULL))
        fail_msg("want %d \"%s\", got %d \"%s\"", rc, fragment ? fragment : "", got, fx->err);
    if (rc != 0) {
        /* The message starts with the file name, and a failed load leaves a cleared struct. */
        assert_memory_equal(fx->err, fx->genesis_path, strlen(fx->genesis_path));
        assert_int_equal(fx->g.nodes_n, 0);
    }
}

static void expect_node(struct fixture *fx, json_t *doc, int rc, const char *fragment)
{
    write_doc(fx->node_path, doc);
    json_decref(doc);
    fx->err[0] = '\0';
    int got = config_load_node(&fx->c, fx->node_path, fx->err, sizeof(fx->err));
    if (got != rc || (fragment != NULL && strstr(fx->err, fragment) == NULL))
        fail_msg("want %d \"%s\", got %d \"%s\"", rc, fragment ? fragment : "", got, fx->err);
    if (rc != 0)
        assert_memory_equal(fx->err, fx->node_path, strlen(fx->node_path));
}

/* ---- genesis ---- */

static void config_genesis_valid_loads(void **state)
{
    struct fixture *fx = *state;
    struct crypto_pubkey pk;
    char hex[CRYPTO_PUB_HEX + 1];

    expect_genesis(fx, valid_genesis(), 0, NULL);
    const struct genesis *g = &fx->g;
    assert_string_equal(g->chain_id, "bex-local");
    assert_int_equal(g->genesis_time_ms, 1764000000000ull);
    assert_int_equal(g->agencies_n, AGENCIES);
    assert_int_equal(g->nodes_n, NODES);
    assert_int_equal(g->f, 1);
    assert_int_equal(g->consensus.block_bytes_max, 4194304);
    assert_string_equal(g->agencies[1].id, "city.police");
    assert_int_equal(g->agencies[1].roles_n, 2);
    assert_string_equal(g->agencies[1].roles[1], "records");
    assert_int_equal(g->agencies[1].officers_n, 3);
    assert_int_equal(g->agencies[1].threshold, 2);
    assert_int_equal(g->agencies[2].node_index, 2);
    assert_int_equal(g->agencies[4].node_index, -1);
    assert_int_equal(g->nodes[3].agency_index, 3);
    assert_string_equal(g->nodes[3].address.host, "127.0.0.1");
    assert_int_equal(g->nodes[3].address.port, 26604);
    json_t *k = key_hex(1001);
    assert_int_equal(crypto_pubkey_from_hex(&pk, json_string_value(k)), 0);
    json_decref(k);
    assert_memory_equal(g->nodes[1].node_key.b, pk.b, sizeof(pk.b));
    crypto_pubkey_to_hex(hex, &g->agencies[0].officers[2]);
    k = key_hex(3);
    assert_string_equal(hex, json_string_value(k));
    json_decref(k);
    assert_int_equal(config_genesis_find_agency(g, "health"), 3);
    assert_int_equal(config_genesis_find_agency(g, "nope"), -1);
}

static void config_genesis_defaults_and_f(void **state)
{
    struct fixture *fx = *state;

    json_t *doc = valid_genesis();
    set_at(doc, "consensus", NULL);
    expect_genesis(fx, doc, 0, NULL);
    assert_int_equal(fx->g.consensus.checkpoint_interval, 32);
    assert_int_equal(fx->g.consensus.window, 128);
    assert_int_equal(fx->g.consensus.view_timeout_ms, 2000);
    assert_int_equal(fx->g.consensus.block_txs_max, 2000);
    assert_int_equal(fx->g.consensus.block_bytes_max, 4u << 20);
    assert_int_equal(fx->g.consensus.batch_delay_ms, 20);

    doc = valid_genesis();
    set_at(doc, "consensus", json_pack("{s:i, s:i}", "window", 8, "checkpoint_interval", 4));
    expect_genesis(fx, doc, 0, NULL);
    assert_int_equal(fx->g.consensus.window, 8);
    assert_int_equal(fx->g.consensus.checkpoint_interval, 4);

    /* n = 7 tolerates f = 2; n = 3f + 1 is not required (n = 5: f = 1). */
    doc = valid_genesis();
    json_array_append_new(json_object_get(doc, "nodes"),
                          json_pack("{s:s, s:o, s:o, s:s}", "agency", "city.tax-office", "node_key", key_hex(1100),
                                    "tls_key", tls_hex(2100), "address", "node5.example.org:26601"));
    expect_genesis(fx, doc, 0, NULL);
    assert_int_equal(fx->g.nodes_n, 5);
    assert_int_equal(fx->g.f, 1);
    assert_string_equal(fx->g.nodes[4].address.host, "node5.example.org");
}

static void config_genesis_round_trip_and_hash(void **state)
{
    struct fixture *fx = *state;
    struct genesis *copy = calloc(1, sizeof(*copy));
    uint8_t h1[32], h2[32], h3[32];
    char path2[160];

    assert_non_null(copy);
    expect_genesis(fx, valid_genesis(), 0, NULL);
    assert_int_equal(config_genesis_hash(h1, &fx->g), 0);

    snprintf(path2, sizeof(path2), "%s/copy.json", fx->dir);
    assert_int_equal(config_write_genesis(&fx->g, path2, false, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(config_write_genesis(&fx->g, path2, false, fx->err, sizeof(fx->err)), -BEX_EEXIST);
    assert_int_equal(config_write_genesis(&fx->g, path2, true, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(config_load_genesis(copy, path2, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(copy, &fx->g, sizeof(*copy));

    /* Whitespace and field order do not change the hash; a value does. */
    json_t *doc = valid_genesis();
    assert_int_equal(json_dump_file(doc, path2, JSON_COMPACT | JSON_SORT_KEYS), 0);
    json_decref(doc);
    assert_int_equal(config_load_genesis(copy, path2, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(config_genesis_hash(h2, copy), 0);
    assert_memory_equal(h1, h2, sizeof(h1));
    copy->consensus.window++;
    assert_int_equal(config_genesis_hash(h3, copy), 0);
    assert_memory_not_equal(h1, h3, sizeof(h1));

    /* A genesis built in memory goes through the same rules on writing. */
    copy->consensus.window = 0;
    assert_int_equal(config_write_genesis(copy, path2, true, fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_non_null(strstr(fx->err, "consensus.window: 0 is outside [1, 128]"));
    config_genesis_close(copy);
    free(copy);
}

static void config_genesis_top_level_rules(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;
    char long_id[80];

    doc = valid_genesis();
    set_at(doc, "chain_id", json_string("Bex_Local"));
    expect_genesis(fx, doc, -BEX_EINVAL, "chain_id: only a-z, 0-9, '.' and '-' are allowed");
    doc = valid_genesis();
    set_at(doc, "chain_id", json_string(""));
    expect_genesis(fx, doc, -BEX_EINVAL, "chain_id: empty");
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    doc = valid_genesis();
    set_at(doc, "chain_id", json_string(long_id));
    expect_genesis(fx, doc, -BEX_EINVAL, "chain_id: longer than 64");
    long_id[64] = '\0';
    doc = valid_genesis();
    set_at(doc, "chain_id", json_string(long_id));
    expect_genesis(fx, doc, 0, NULL);

    doc = valid_genesis();
    set_at(doc, "chain_idd", json_string("x"));
    expect_genesis(fx, doc, -BEX_EDECODE, "chain_idd: unknown field");
    doc = valid_genesis();
    set_at(doc, "genesis_time_ms", NULL);
    expect_genesis(fx, doc, -BEX_EDECODE, "genesis_time_ms: missing");
    doc = valid_genesis();
    set_at(doc, "genesis_time_ms", json_integer(-1));
    expect_genesis(fx, doc, -BEX_EINVAL, "genesis_time_ms: -1 is negative");
    doc = valid_genesis();
    set_at(doc, "genesis_time_ms", json_string("1764000000000"));
    expect_genesis(fx, doc, -BEX_EDECODE, "genesis_time_ms: not an integer");
    doc = valid_genesis();
    set_at(doc, "genesis_time_ms", json_real(1.5));
    expect_genesis(fx, doc, -BEX_EDECODE, "genesis_time_ms: not an integer");

    doc = valid_genesis();
    set_at(doc, "consensus.window", json_integer(0));
    expect_genesis(fx, doc, -BEX_EINVAL, "consensus.window: 0 is outside [1, 128]");
    doc = valid_genesis();
    set_at(doc, "consensus.window", json_integer(60));
    expect_genesis(fx, doc, -BEX_EINVAL, "consensus.window: 60 is not a multiple of checkpoint_interval 16");
    doc = valid_genesis();
    set_at(doc, "consensus.view_timeout_ms", json_integer(10));
    expect_genesis(fx, doc, -BEX_EINVAL, "consensus.view_timeout_ms: 10 is outside");
    doc = valid_genesis();
    set_at(doc, "consensus.block_bytes_max", json_integer(1LL << 40));
    expect_genesis(fx, doc, -BEX_EINVAL, "consensus.block_bytes_max: 1099511627776 exceeds the maximum");
    doc = valid_genesis();
    set_at(doc, "consensus.windw", json_integer(3));
    expect_genesis(fx, doc, -BEX_EDECODE, "consensus.windw: unknown field");
    doc = valid_genesis();
    set_at(doc, "consensus", json_array());
    expect_genesis(fx, doc, -BEX_EDECODE, "consensus: not an object");
    doc = valid_genesis();
    set_at(doc, "agencies", json_object());
    expect_genesis(fx, doc, -BEX_EDECODE, "agencies: not an array");
}

static void config_genesis_agency_rules(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;

    doc = valid_genesis();
    set_at(doc, "agencies[2].officers", json_pack("[o,o]", key_hex(201), key_hex(202)));
    set_at(doc, "agencies[2].threshold", json_integer(3));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[2].threshold: 3 exceeds the 2 officer keys");
    doc = valid_genesis();
    set_at(doc, "agencies[0].threshold", json_integer(0));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].threshold: must be at least 1");
    doc = valid_genesis();
    set_at(doc, "agencies[0].threshold", json_integer(3));
    expect_genesis(fx, doc, 0, NULL);
    doc = valid_genesis();
    set_at(doc, "agencies[0].officers", json_array());
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].officers: at least one officer key is required");

    doc = valid_genesis();
    json_t *many = json_array();
    for (uint32_t i = 0; i < GENESIS_OFFICERS_MAX + 1; i++)
        json_array_append_new(many, key_hex(5000 + i));
    set_at(doc, "agencies[1].officers", many);
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[1].officers: 17 entries exceed the maximum of 16");

    doc = valid_genesis();
    set_at(doc, "agencies[1].officers[0]",
           json_string("020000000000000000000000000000000000000000000000000000000000000005"));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[1].officers[0]: not a valid secp256k1 public key");
    doc = valid_genesis();
    set_at(doc, "agencies[1].officers[1]", json_string("02abcd"));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[1].officers[1]: expected 66 hex digits");
    doc = valid_genesis();
    set_at(doc, "agencies[1].officers[1]", json_integer(2));
    expect_genesis(fx, doc, -BEX_EDECODE, "agencies[1].officers[1]: not a string");
    doc = valid_genesis();
    set_at(doc, "agencies[1].officers[2]", key_hex(1));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[1].officers[2]: key already used at agencies[0].officers[0]");
    doc = valid_genesis();
    set_at(doc, "agencies[0].enc_key", key_hex(2));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].enc_key: key already used at agencies[0].officers[1]");
    doc = valid_genesis();
    set_at(doc, "agencies[3].enc_key", NULL);
    expect_genesis(fx, doc, -BEX_EDECODE, "agencies[3].enc_key: missing");

    static const struct {
        const char *id;
        const char *why;
    } ids[] = {
        {"City.Traffic", "only lowercase labels"}, {"city..traffic", "empty label"},
        {".city", "empty label"},                  {"city.", "empty label"},
        {"-city.traffic", "starts with '-'"},      {"city-.traffic", "ends with '-'"},
        {"city traffic", "only lowercase labels"}, {"", "empty"},
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(ids); i++) {
        doc = valid_genesis();
        set_at(doc, "agencies[4].id", json_string(ids[i].id));
        expect_genesis(fx, doc, -BEX_EINVAL, ids[i].why);
        assert_non_null(strstr(fx->err, "agencies[4].id: "));
    }
    doc = valid_genesis();
    set_at(doc, "agencies[4].id", json_string("city.police"));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[4].id: \"city.police\" is already the id of agencies[1]");

    doc = valid_genesis();
    set_at(doc, "agencies[0].name", json_string(""));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].name: empty");
    doc = valid_genesis();
    set_at(doc, "agencies[0].name", json_string("Two\nLines"));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].name: contains a control character");
    doc = valid_genesis();
    set_at(doc, "agencies[0].name", json_stringn("Nul\0Byte", 8));
    expect_genesis(fx, doc, -BEX_EDECODE, "is not allowed");
    doc = valid_genesis();
    set_at(doc, "agencies[0].name", json_string("Bureau de la Circulation \xc3\xa9 \xe4\xba\xa4\xe9\x80\x9a"));
    expect_genesis(fx, doc, 0, NULL);

    doc = valid_genesis();
    set_at(doc, "agencies[0].roles", json_pack("[s,s]", "traffic", "traffic"));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].roles[1]: \"traffic\" is listed twice");
    doc = valid_genesis();
    set_at(doc, "agencies[0].roles", json_pack("[s]", "Traffic"));
    expect_genesis(fx, doc, -BEX_EINVAL, "agencies[0].roles[0]: \"Traffic\": must start with a-z or 0-9");
    doc = valid_genesis();
    set_at(doc, "agencies[0].roles", json_array());
    expect_genesis(fx, doc, 0, NULL);
    doc = valid_genesis();
    set_at(doc, "agencies[1].thresold", json_integer(1));
    expect_genesis(fx, doc, -BEX_EDECODE, "agencies[1].thresold: unknown field");
}

static void config_genesis_node_rules(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;

    doc = valid_genesis();
    json_array_remove(json_object_get(doc, "nodes"), 3);
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes: 3 nodes are too few");

    doc = valid_genesis();
    json_t *agencies = json_object_get(doc, "agencies");
    json_t *nodes = json_object_get(doc, "nodes");
    for (uint32_t i = NODES; i < GENESIS_NODES_MAX + 1; i++) {
        char id[32], addr[32];
        snprintf(id, sizeof(id), "extra%u", i);
        snprintf(addr, sizeof(addr), "10.0.0.%u:26601", i);
        json_array_append_new(agencies, json_pack("{s:s, s:s, s:[], s:[o], s:i, s:o}", "id", id, "name", "X",
                                                  "roles", "officers", key_hex(7000 + i), "threshold", 1,
                                                  "enc_key", key_hex(8000 + i)));
        json_array_append_new(nodes, json_pack("{s:s, s:o, s:o, s:s}", "agency", id, "node_key", key_hex(9000 + i),
                                               "tls_key", tls_hex(9000 + i), "address", addr));
    }
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes: 17 entries exceed the maximum of 16");

    doc = valid_genesis();
    set_at(doc, "nodes[1].agency", json_string("city.parks"));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[1].agency: \"city.parks\" is not an agency of this genesis");
    doc = valid_genesis();
    set_at(doc, "nodes[2].agency", json_string("city.traffic"));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[2].agency: \"city.traffic\" already runs nodes[0]");
    doc = valid_genesis();
    set_at(doc, "nodes[2].node_key", key_hex(1001));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[2].node_key: key already used at nodes[1].node_key");
    doc = valid_genesis();
    set_at(doc, "nodes[0].node_key", key_hex(450));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[0].node_key: key already used at agencies[4].enc_key");
    doc = valid_genesis();
    set_at(doc, "nodes[0].node_key", json_string("03zz"));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[0].node_key: expected 66 hex digits");
    doc = valid_genesis();
    set_at(doc, "nodes[3].tls_key", tls_hex(2000));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[3].tls_key: key already used at nodes[0].tls_key");
    doc = valid_genesis();
    set_at(doc, "nodes[3].tls_key", key_hex(1));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[3].tls_key: expected 64 hex digits (32 bytes)");
    doc = valid_genesis();
    set_at(doc, "nodes[3].tls_key", json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[3].tls_key: all zero");
    doc = valid_genesis();
    set_at(doc, "nodes[3].address", json_string("127.0.0.1:26601"));
    expect_genesis(fx, doc, -BEX_EINVAL, "nodes[3].address: address already used by nodes[0]");
    doc = valid_genesis();
    set_at(doc, "nodes[3].addr", json_string("127.0.0.1:26609"));
    expect_genesis(fx, doc, -BEX_EDECODE, "nodes[3].addr: unknown field");

    static const struct {
        const char *address;
        const char *why;
    } bad[] = {
        {"127.0.0.1", "is not host:port"},
        {"127.0.0.1:0", "port must be a number in [1, 65535]"},
        {"127.0.0.1:65536", "port must be a number"},
        {"127.0.0.1:+80", "port must be a number"},
        {"127.0.0.1:", "port must be a number"},
        {":26601", "empty host"},
        {"::1:26601", "needs brackets"},
        {"[::1:26601", "is not [ipv6]:port"},
        {"[127.0.0.1]:26601", "is not an IPv6 address"},
        {"999.1.1.1:26601", "neither an IP address nor a host name"},
        {"bad_host:26601", "neither an IP address nor a host name"},
        {"-host:26601", "neither an IP address nor a host name"},
    };
    for (size_t i = 0; i < BEX_ARRAY_LEN(bad); i++) {
        doc = valid_genesis();
        set_at(doc, "nodes[2].address", json_string(bad[i].address));
        expect_genesis(fx, doc, -BEX_EINVAL, bad[i].why);
        assert_non_null(strstr(fx->err, "nodes[2].address: "));
    }
    doc = valid_genesis();
    set_at(doc, "nodes[2].address", json_string("[::1]:26601"));
    expect_genesis(fx, doc, 0, NULL);
    assert_string_equal(fx->g.nodes[2].address.host, "::1");
}

static void config_genesis_file_errors(void **state)
{
    struct fixture *fx = *state;
    char missing[160];

    json_t *empty = json_object();
    write_doc(fx->genesis_path, empty);
    json_decref(empty);
    assert_int_equal(config_load_genesis(&fx->g, fx->genesis_path, fx->err, sizeof(fx->err)), -BEX_EDECODE);
    assert_non_null(strstr(fx->err, "chain_id: missing"));

    static const char *const broken[] = {"{\"chain_id\": ", "[1, 2]", "{\"chain_id\": \"a\", \"chain_id\": \"b\"}",
                                         ""};
    for (size_t i = 0; i < BEX_ARRAY_LEN(broken); i++) {
        assert_int_equal(config_file_write(fx->genesis_path, broken[i], strlen(broken[i]), 0644, true, fx->err,
                                           sizeof(fx->err)),
                         0);
        assert_int_equal(config_load_genesis(&fx->g, fx->genesis_path, fx->err, sizeof(fx->err)), -BEX_EDECODE);
        assert_memory_equal(fx->err, fx->genesis_path, strlen(fx->genesis_path));
    }
    assert_non_null(strstr(fx->err, fx->genesis_path));

    snprintf(missing, sizeof(missing), "%s/absent.json", fx->dir);
    assert_int_equal(config_load_genesis(&fx->g, missing, fx->err, sizeof(fx->err)), -BEX_EIO);
    assert_non_null(strstr(fx->err, "absent.json: No such file"));
    assert_int_equal(config_load_genesis(&fx->g, fx->dir, fx->err, sizeof(fx->err)), -BEX_EIO);
    assert_non_null(strstr(fx->err, "not a regular file"));

    char *big = malloc(CONFIG_FILE_BYTES_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', CONFIG_FILE_BYTES_MAX + 1);
    assert_int_equal(config_file_write(fx->genesis_path, big, CONFIG_FILE_BYTES_MAX + 1, 0644, true, fx->err,
                                       sizeof(fx->err)),
                     0);
    free(big);
    assert_int_equal(config_load_genesis(&fx->g, fx->genesis_path, fx->err, sizeof(fx->err)), -BEX_ELIMIT);
    assert_non_null(strstr(fx->err, "larger than"));
}

/* ---- node ---- */

static void config_node_valid_loads(void **state)
{
    struct fixture *fx = *state;
    char want[200];

    expect_node(fx, valid_node(), 0, NULL);
    const struct node_config *c = &fx->c;
    snprintf(want, sizeof(want), "%s/genesis.json", fx->dir);
    assert_string_equal(c->genesis, want);
    snprintf(want, sizeof(want), "%s/data", fx->dir);
    assert_string_equal(c->data_dir, want);
    snprintf(want, sizeof(want), "%s/enc.key", fx->dir);
    assert_string_equal(c->enc_key, want);
    /* Absolute paths stay as they are. */
    assert_string_equal(c->passphrase_file, "/etc/bex/pass.txt");
    assert_int_equal(c->node_index, 0);
    assert_string_equal(c->listen.host, "127.0.0.1");
    assert_int_equal(c->listen.port, 26601);
    assert_int_equal(c->rpc.port, 26701);
    assert_false(c->rpc_public);
    assert_int_equal(c->log_level, CONFIG_LOG_INFO);
    assert_int_equal(c->map_size_mb, 1024);
    assert_int_equal(c->limits.tx_bytes_max, 65536);
    assert_int_equal(c->limits.peer_queue_bytes_max, 67108864);

    /* Optional fields: defaults; enc_key and passphrase_file absent. */
    json_t *doc = valid_node();
    set_at(doc, "enc_key", NULL);
    set_at(doc, "passphrase_file", NULL);
    set_at(doc, "limits", NULL);
    set_at(doc, "log_level", NULL);
    set_at(doc, "map_size_mb", NULL);
    set_at(doc, "rpc_public", NULL);
    expect_node(fx, doc, 0, NULL);
    assert_string_equal(fx->c.enc_key, "");
    assert_string_equal(fx->c.passphrase_file, "");
    assert_int_equal(fx->c.limits.mempool_txs, 20000);
    assert_int_equal(fx->c.limits.frame_bytes_max, 16u << 20);
    assert_int_equal(fx->c.log_level, CONFIG_LOG_INFO);

    /* A bare file name resolves against the current directory. */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(fx->dir), 0);
    int rc = config_load_node(&fx->c, "node.json", fx->err, sizeof(fx->err));
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(fx->c.genesis, "genesis.json");
}

static void config_node_rpc_must_be_loopback_unless_public(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;

    doc = valid_node();
    set_at(doc, "rpc", json_string("0.0.0.0:26701"));
    expect_node(fx, doc, -BEX_EINVAL,
                "rpc: 0.0.0.0:26701 is not a loopback address; set \"rpc_public\": true to serve RPC beyond this host");
    doc = valid_node();
    set_at(doc, "rpc", json_string("10.1.2.3:26701"));
    set_at(doc, "rpc_public", json_true());
    expect_node(fx, doc, 0, NULL);
    assert_true(fx->c.rpc_public);
    doc = valid_node();
    set_at(doc, "rpc", json_string("[::1]:26701"));
    expect_node(fx, doc, 0, NULL);
    doc = valid_node();
    set_at(doc, "rpc", json_string("127.8.9.10:26701"));
    expect_node(fx, doc, 0, NULL);
    doc = valid_node();
    set_at(doc, "rpc", json_string("[::]:26701"));
    expect_node(fx, doc, -BEX_EINVAL, "rpc: [::]:26701 is not a loopback address");
    doc = valid_node();
    set_at(doc, "rpc", json_string("localhost:26701"));
    expect_node(fx, doc, -BEX_EINVAL, "rpc: \"localhost:26701\": host must be an IP address");
    doc = valid_node();
    set_at(doc, "rpc", json_string("127.0.0.1:26601"));
    expect_node(fx, doc, -BEX_EINVAL, "rpc: the same address as listen");
    doc = valid_node();
    set_at(doc, "rpc_public", json_string("yes"));
    expect_node(fx, doc, -BEX_EDECODE, "rpc_public: not true or false");
}

static void config_node_field_rules(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;

    doc = valid_node();
    set_at(doc, "rpc_pubilc", json_true());
    expect_node(fx, doc, -BEX_EDECODE, "rpc_pubilc: unknown field");
    doc = valid_node();
    set_at(doc, "node_key", NULL);
    expect_node(fx, doc, -BEX_EDECODE, "node_key: missing");
    doc = valid_node();
    set_at(doc, "data_dir", json_string(""));
    expect_node(fx, doc, -BEX_EINVAL, "data_dir: empty path");
    doc = valid_node();
    set_at(doc, "tls_key", json_integer(3));
    expect_node(fx, doc, -BEX_EDECODE, "tls_key: not a string");
    doc = valid_node();
    set_at(doc, "node_index", json_integer(GENESIS_NODES_MAX));
    expect_node(fx, doc, -BEX_EINVAL, "node_index: 16 exceeds the maximum of 15");
    doc = valid_node();
    set_at(doc, "node_index", json_integer(-2));
    expect_node(fx, doc, -BEX_EINVAL, "node_index: -2 is negative");
    doc = valid_node();
    set_at(doc, "listen", json_string("127.0.0.1"));
    expect_node(fx, doc, -BEX_EINVAL, "listen: \"127.0.0.1\" is not host:port");
    doc = valid_node();
    set_at(doc, "log_level", json_string("verbose"));
    expect_node(fx, doc, -BEX_EINVAL, "log_level: \"verbose\" is not one of error, warn, info, debug");
    doc = valid_node();
    set_at(doc, "log_level", json_string("debug"));
    expect_node(fx, doc, 0, NULL);
    assert_int_equal(fx->c.log_level, CONFIG_LOG_DEBUG);
    doc = valid_node();
    set_at(doc, "map_size_mb", json_integer(1));
    expect_node(fx, doc, -BEX_EINVAL, "map_size_mb: 1 is outside [16, 4194304]");
    /* The map may grow to 16 x map_size_mb by default, or to map_size_max_mb, never below map_size_mb. */
    doc = valid_node();
    expect_node(fx, doc, 0, NULL);
    assert_int_equal(fx->c.map_size_max_mb, 0);
    assert_int_equal(config_map_size_max_mb(&fx->c), 16 * 1024);
    doc = valid_node();
    set_at(doc, "map_size_mb", json_integer(1u << 20));
    expect_node(fx, doc, 0, NULL);
    assert_int_equal(config_map_size_max_mb(&fx->c), 4u << 20);
    doc = valid_node();
    set_at(doc, "map_size_max_mb", json_integer(1024));
    expect_node(fx, doc, 0, NULL);
    assert_int_equal(config_map_size_max_mb(&fx->c), 1024);
    doc = valid_node();
    set_at(doc, "map_size_max_mb", json_integer(1023));
    expect_node(fx, doc, -BEX_EINVAL, "map_size_max_mb: 1023 is outside [map_size_mb 1024, 4194304]");
    doc = valid_node();
    set_at(doc, "map_size_max_mb", json_integer(5u << 20));
    expect_node(fx, doc, -BEX_EINVAL, "map_size_max_mb: 5242880 is outside");

    doc = valid_node();
    set_at(doc, "limits.tx_bytes_max", json_integer(0));
    expect_node(fx, doc, -BEX_EINVAL, "limits.tx_bytes_max: 0 is outside");
    doc = valid_node();
    set_at(doc, "limits.rpc_conns_max", json_integer(1 << 20));
    expect_node(fx, doc, -BEX_EINVAL, "limits.rpc_conns_max: 1048576 is outside [1, 65536]");
    doc = valid_node();
    set_at(doc, "limits.peer_queue_bytes_max", json_integer(1 << 20));
    expect_node(fx, doc, -BEX_EINVAL, "limits.peer_queue_bytes_max: 1048576 is below limits.frame_bytes_max");
    doc = valid_node();
    set_at(doc, "limits.tx_bytes_max", json_integer(4 << 20));
    expect_node(fx, doc, -BEX_EINVAL, "limits.tx_bytes_max: 4194304 in hex (twice the size) does not fit");
    doc = valid_node();
    set_at(doc, "limits.frame_bytes_max", json_integer(64 << 10));
    expect_node(fx, doc, -BEX_EINVAL, "limits.tx_bytes_max: 65536 does not fit in limits.frame_bytes_max");
    doc = valid_node();
    set_at(doc, "limits.mempol_txs", json_integer(1));
    expect_node(fx, doc, -BEX_EDECODE, "limits.mempol_txs: unknown field");
    doc = valid_node();
    set_at(doc, "limits", json_integer(1));
    expect_node(fx, doc, -BEX_EDECODE, "limits: not an object");

    char long_path[CONFIG_PATH_MAX];
    memset(long_path, 'a', sizeof(long_path) - 6);
    long_path[sizeof(long_path) - 6] = '\0';
    doc = valid_node();
    set_at(doc, "data_dir", json_string(long_path));
    expect_node(fx, doc, -BEX_EINVAL, "data_dir: path longer than 4095 bytes once resolved");
}

/* limits.clock_skew_max_ms: defaults to 10 s, bounded to [1 s, 1 h], and survives a write. */
static void config_node_clock_skew(void **state)
{
    struct fixture *fx = *state;
    json_t *doc = valid_node();
    char path[128];

    expect_node(fx, doc, 0, NULL);
    assert_int_equal(fx->c.limits.clock_skew_max_ms, 10000);

    doc = valid_node();
    set_at(doc, "limits.clock_skew_max_ms", json_integer(2500));
    expect_node(fx, doc, 0, NULL);
    assert_int_equal(fx->c.limits.clock_skew_max_ms, 2500);
    snprintf(path, sizeof(path), "%s/skew.json", fx->dir);
    assert_int_equal(config_write_node(&fx->c, path, true, fx->err, sizeof(fx->err)), 0);
    config_node_close(&fx->c);
    assert_int_equal(config_load_node(&fx->c, path, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(fx->c.limits.clock_skew_max_ms, 2500);

    doc = valid_node();
    set_at(doc, "limits.clock_skew_max_ms", json_integer(999));
    expect_node(fx, doc, -BEX_EINVAL, "limits.clock_skew_max_ms: 999 is outside [1000, 3600000]");
    doc = valid_node();
    set_at(doc, "limits.clock_skew_max_ms", json_integer(3600001));
    expect_node(fx, doc, -BEX_EINVAL, "limits.clock_skew_max_ms: 3600001 is outside [1000, 3600000]");
    doc = valid_node();
    set_at(doc, "limits.clock_skew_max_ms", json_string("10s"));
    expect_node(fx, doc, -BEX_EDECODE, "limits.clock_skew_max_ms");
}

static void config_node_against_genesis(void **state)
{
    struct fixture *fx = *state;

    expect_genesis(fx, valid_genesis(), 0, NULL);
    expect_node(fx, valid_node(), 0, NULL);
    assert_int_equal(config_check_node_genesis(&fx->c, &fx->g, "node.json", fx->err, sizeof(fx->err)), 0);

    fx->c.node_index = 4;
    assert_int_equal(config_check_node_genesis(&fx->c, &fx->g, "node.json", fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_string_equal(fx->err, "node.json: node_index: 4 is not a node of the genesis, which has 4");
    fx->c.node_index = 3;
    fx->c.limits.frame_bytes_max = 4u << 20;
    assert_int_equal(config_check_node_genesis(&fx->c, &fx->g, "node.json", fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_non_null(strstr(fx->err, "limits.frame_bytes_max: 4194304 cannot carry a block"));
    fx->c.limits.frame_bytes_max = 16u << 20;
    fx->g.consensus.block_bytes_max = 32u << 10;
    assert_int_equal(config_check_node_genesis(&fx->c, &fx->g, "node.json", fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_non_null(strstr(fx->err, "limits.tx_bytes_max: 65536 exceeds consensus.block_bytes_max"));
}

static void config_node_write_round_trip(void **state)
{
    struct fixture *fx = *state;
    struct node_config *c = calloc(1, sizeof(*c));
    struct node_config *back = calloc(1, sizeof(*back));
    char err[256];

    assert_non_null(c);
    assert_non_null(back);
    config_node_defaults(c);
    snprintf(c->genesis, sizeof(c->genesis), "/srv/bex/genesis.json");
    snprintf(c->data_dir, sizeof(c->data_dir), "/srv/bex/data");
    snprintf(c->node_key, sizeof(c->node_key), "/srv/bex/node.key");
    snprintf(c->tls_key, sizeof(c->tls_key), "/srv/bex/tls.pem");
    c->node_index = 2;
    assert_int_equal(config_parse_address(&c->listen, "[::]:26603", true, err, sizeof(err)), 0);
    assert_int_equal(config_parse_address(&c->rpc, "127.0.0.1:26703", true, err, sizeof(err)), 0);
    c->log_level = CONFIG_LOG_WARN;
    assert_int_equal(config_write_node(c, fx->node_path, false, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(config_load_node(back, fx->node_path, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(back, c, sizeof(*c));

    c->rpc_public = false;
    assert_int_equal(config_parse_address(&c->rpc, "192.168.1.1:26703", true, err, sizeof(err)), 0);
    assert_int_equal(config_write_node(c, fx->node_path, true, fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_non_null(strstr(fx->err, "rpc: 192.168.1.1:26703 is not a loopback address"));
    config_node_close(c);
    config_node_close(back);
    free(c);
    free(back);
}

static void config_addresses(void **state)
{
    (void)state;
    struct config_address a;
    char err[128], out[CONFIG_ADDRESS_MAX + 1];

    assert_int_equal(config_parse_address(&a, "node-1.bex.example:26601", false, err, sizeof(err)), 0);
    assert_string_equal(a.host, "node-1.bex.example");
    assert_int_equal(a.port, 26601);
    assert_int_equal(config_parse_address(&a, "node-1.bex.example:26601", true, err, sizeof(err)), -BEX_EINVAL);
    assert_int_equal(config_parse_address(&a, "[fe80::1]:1", true, err, sizeof(err)), 0);
    assert_int_equal(config_format_address(out, sizeof(out), &a), 0);
    assert_string_equal(out, "[fe80::1]:1");
    assert_false(config_address_is_loopback(&a));
    assert_int_equal(config_parse_address(&a, "[::ffff:127.0.0.1]:1", true, err, sizeof(err)), 0);
    assert_true(config_address_is_loopback(&a));
    assert_int_equal(config_parse_address(&a, "127.255.0.1:65535", true, err, sizeof(err)), 0);
    assert_true(config_address_is_loopback(&a));
    assert_int_equal(config_format_address(out, 8, &a), -BEX_ELIMIT);
    assert_int_equal(config_parse_address(&a, "128.0.0.1:80", true, err, sizeof(err)), 0);
    assert_false(config_address_is_loopback(&a));
    assert_int_equal(config_parse_address(&a, "127.1:80", true, err, sizeof(err)), -BEX_EINVAL);
    assert_int_equal(config_parse_address(&a, "1.2.3.4:080", true, err, sizeof(err)), 0);
    assert_int_equal(a.port, 80);
    assert_int_equal(config_parse_address(&a, "1.2.3.4:123456", true, err, sizeof(err)), -BEX_EINVAL);
    assert_string_equal(config_log_level_name(CONFIG_LOG_ERROR), "error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(config_genesis_valid_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(config_genesis_defaults_and_f, setup, teardown),
        cmocka_unit_test_setup_teardown(config_genesis_round_trip_and_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(config_genesis_top_level_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(config_genesis_agency_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(config_genesis_node_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(config_genesis_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(config_node_valid_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(config_node_rpc_must_be_loopback_unless_public, setup, teardown),
        cmocka_unit_test_setup_teardown(config_node_field_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(config_node_clock_skew, setup, teardown),
        cmocka_unit_test_setup_teardown(config_node_against_genesis, setup, teardown),
        cmocka_unit_test_setup_teardown(config_node_write_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(config_addresses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
