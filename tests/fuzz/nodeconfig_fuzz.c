/*
 * nodeconfig_fuzz.c: config_load_node() on arbitrary file contents.
 *
 * The input is written to node.json in a scratch directory made once per
 * process (config.h loads only from a path), so relative paths resolve
 * against that directory. A refusal must carry one of the documented codes
 * and a message naming the file, and leave the struct cleared. An accepted
 * config must pass config_check_node() again, fit or be refused by a fixed
 * genesis with -BEX_EINVAL only, and survive config_write_node() and a
 * second load unchanged, field by field.
 */
#include "config.h"
#include "fuzz_util.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 16384

static bool cleared(const struct node_config *c)
{
    static const struct node_config zero;
    return memcmp(c, &zero, sizeof(zero)) == 0;
}

static bool same_address(const struct config_address *a, const struct config_address *b)
{
    return strcmp(a->host, b->host) == 0 && a->port == b->port;
}

static void check_same(const struct node_config *a, const struct node_config *b)
{
    const struct node_limits *la = &a->limits, *lb = &b->limits;

    FUZZ_CHECK(strcmp(a->genesis, b->genesis) == 0 && strcmp(a->data_dir, b->data_dir) == 0);
    FUZZ_CHECK(strcmp(a->node_key, b->node_key) == 0 && strcmp(a->tls_key, b->tls_key) == 0);
    FUZZ_CHECK(strcmp(a->enc_key, b->enc_key) == 0 && strcmp(a->passphrase_file, b->passphrase_file) == 0);
    FUZZ_CHECK(a->node_index == b->node_index && a->rpc_public == b->rpc_public);
    FUZZ_CHECK(same_address(&a->listen, &b->listen) && same_address(&a->rpc, &b->rpc));
    FUZZ_CHECK(a->log_level == b->log_level && a->map_size_mb == b->map_size_mb);
    FUZZ_CHECK(la->mempool_txs == lb->mempool_txs && la->mempool_bytes == lb->mempool_bytes);
    FUZZ_CHECK(la->frame_bytes_max == lb->frame_bytes_max && la->peer_queue_bytes_max == lb->peer_queue_bytes_max);
    FUZZ_CHECK(la->rpc_body_bytes_max == lb->rpc_body_bytes_max && la->rpc_conns_max == lb->rpc_conns_max);
    FUZZ_CHECK(la->tx_bytes_max == lb->tx_bytes_max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct node_config c, again;
    static struct genesis g;
    static char in[FUZZ_PATH_MAX], out[FUZZ_PATH_MAX];
    char err[512];

    if (size > FUZZ_MAX_LEN)
        return 0;
    if (in[0] == '\0') {
        fuzz_path(in, "node.json");
        fuzz_path(out, "written.json");
        fuzz_genesis(&g);
    }
    fuzz_write_file(in, data, size);
    err[0] = '\0';
    int rc = config_load_node(&c, in, err, sizeof(err));
    if (rc != 0) {
        if (rc != -BEX_ELIMIT && rc != -BEX_EDECODE && rc != -BEX_EINVAL)
            fuzz_fail("config_load_node returned %s: %s", bex_errname(rc), err);
        FUZZ_CHECK(strncmp(err, in, strlen(in)) == 0);
        FUZZ_CHECK(cleared(&c));
        return 0;
    }
    FUZZ_CHECK(c.log_level <= CONFIG_LOG_DEBUG && config_log_level_name(c.log_level) != NULL);
    if (config_check_node(&c, "again", err, sizeof(err)) != 0)
        fuzz_fail("a loaded node config fails its check: %s", err);
    rc = config_check_node_genesis(&c, &g, "genesis", err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -BEX_EINVAL);
    FUZZ_CHECK(rc != 0 || c.node_index < g.nodes_n);
    if (config_write_node(&c, out, true, err, sizeof(err)) != 0)
        fuzz_fail("a loaded node config cannot be written: %s", err);
    if (config_load_node(&again, out, err, sizeof(err)) != 0)
        fuzz_fail("a written node config does not load: %s", err);
    check_same(&c, &again);
    config_node_close(&again);
    config_node_close(&c);
    return 0;
}
