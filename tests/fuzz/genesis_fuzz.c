/*
 * genesis_fuzz.c: config_load_genesis() on arbitrary file contents.
 *
 * config.h loads only from a path, so the input is written to a file in a
 * scratch directory made once per process. A refusal must carry one of the
 * documented codes and a message naming the file, and leave the struct
 * cleared. An accepted genesis must pass config_check_genesis() again, and
 * writing it with config_write_genesis() and loading that file back must
 * give the same genesis hash and the same derived fields: what a node
 * accepted, it can write, and what it wrote, every node reads alike.
 */
#include "config.h"
#include "fuzz_util.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh). */
#define FUZZ_MAX_LEN 16384

static bool cleared(const struct genesis *g)
{
    static const struct genesis zero;
    return memcmp(g, &zero, sizeof(zero)) == 0;
}

static void check_same(const struct genesis *a, const struct genesis *b)
{
    uint8_t ha[CRYPTO_HASH_BYTES], hb[CRYPTO_HASH_BYTES];

    FUZZ_CHECK(config_genesis_hash(ha, a) == 0);
    FUZZ_CHECK(config_genesis_hash(hb, b) == 0);
    if (memcmp(ha, hb, sizeof(ha)) != 0)
        fuzz_fail("the genesis written and read back has another hash");
    FUZZ_CHECK(a->f == b->f && a->agencies_n == b->agencies_n && a->nodes_n == b->nodes_n);
    for (uint32_t i = 0; i < a->agencies_n; i++) {
        FUZZ_CHECK(a->agencies[i].node_index == b->agencies[i].node_index);
        FUZZ_CHECK(config_genesis_find_agency(a, a->agencies[i].id) == (int)i);
    }
    for (uint32_t i = 0; i < a->nodes_n; i++)
        FUZZ_CHECK(a->nodes[i].agency_index == b->nodes[i].agency_index);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct genesis g, again;
    static char in[FUZZ_PATH_MAX], out[FUZZ_PATH_MAX];
    char err[512];

    if (size > FUZZ_MAX_LEN)
        return 0;
    if (in[0] == '\0') {
        fuzz_path(in, "genesis.json");
        fuzz_path(out, "written.json");
    }
    fuzz_write_file(in, data, size);
    err[0] = '\0';
    int rc = config_load_genesis(&g, in, err, sizeof(err));
    if (rc != 0) {
        if (rc != -BEX_ELIMIT && rc != -BEX_EDECODE && rc != -BEX_EINVAL)
            fuzz_fail("config_load_genesis returned %s: %s", bex_errname(rc), err);
        FUZZ_CHECK(strncmp(err, in, strlen(in)) == 0);
        FUZZ_CHECK(cleared(&g));
        return 0;
    }
    FUZZ_CHECK(g.nodes_n >= GENESIS_NODES_MIN && g.f == (g.nodes_n - 1) / 3);
    if (config_check_genesis(&g, "again", err, sizeof(err)) != 0)
        fuzz_fail("a loaded genesis fails its check: %s", err);
    if (config_write_genesis(&g, out, true, err, sizeof(err)) != 0)
        fuzz_fail("a loaded genesis cannot be written: %s", err);
    if (config_load_genesis(&again, out, err, sizeof(err)) != 0)
        fuzz_fail("a written genesis does not load: %s", err);
    check_same(&g, &again);
    config_genesis_close(&again);
    config_genesis_close(&g);
    return 0;
}
