/*
 * config.h: the two configuration files of a bex node.
 *
 * genesis.json is shared by every node of a network: chain id, consensus
 * parameters, the founding agencies and the nodes (index = position).
 * node.json is one node's own: where its genesis, data and keys are, what it
 * listens on, and its resource limits.
 *
 * Loading is strict: every field is type- and range-checked, unknown and
 * duplicate fields are errors (a typo must not silently fall back to a
 * default), and each error names the file, the field path and the problem,
 * e.g. "genesis.json: agencies[2].threshold: 3 exceeds the 2 officer keys".
 * Both structs are plain values with fixed-size arrays: nothing is
 * allocated, and _close only clears them.
 *
 * The loaders and checkers parse public keys without crypto_init().
 */
#ifndef BEX_CONFIG_H
#define BEX_CONFIG_H

#include "bex.h"
#include "crypto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ---- */

#define CONFIG_FILE_BYTES_MAX (1u << 20) /* a config file larger than this is refused */
#define CONFIG_PATH_MAX 4096             /* bytes of a resolved path, with its NUL */
#define CONFIG_HOST_MAX 253              /* a DNS name or an IP literal */
#define CONFIG_ADDRESS_MAX (CONFIG_HOST_MAX + 8) /* "[host]:65535" */
#define CONFIG_TLS_KEY_BYTES 32          /* Ed25519 public key */

#define GENESIS_CHAIN_ID_MAX 64
#define GENESIS_AGENCY_ID_MAX 64
#define GENESIS_AGENCY_NAME_MAX 128
#define GENESIS_AGENCIES_MAX 64
#define GENESIS_ROLE_MAX 32
#define GENESIS_ROLES_MAX 16
#define GENESIS_OFFICERS_MAX 16
#define GENESIS_NODES_MIN 4
#define GENESIS_NODES_MAX 16

_Static_assert(GENESIS_NODES_MIN >= 4, "PBFT needs n >= 3f + 1 with f >= 1");
_Static_assert(GENESIS_NODES_MIN <= GENESIS_NODES_MAX, "node bounds");
_Static_assert(GENESIS_NODES_MAX <= GENESIS_AGENCIES_MAX, "each node belongs to its own agency");
_Static_assert(GENESIS_OFFICERS_MAX <= 32, "officer sets fit a 32-bit mask");
_Static_assert(CONFIG_ADDRESS_MAX >= CONFIG_HOST_MAX + sizeof("[]:65535") - 1, "address fits host and port");

/* ---- genesis.json ---- */

/* Consensus parameters; the loader fills defaults for omitted fields. */
struct genesis_consensus {
    uint32_t checkpoint_interval; /* blocks between checkpoints: [1, 128], default 32 */
    uint32_t window;              /* sequence numbers in flight: [1, 128], a multiple of
                                     checkpoint_interval, default 128 */
    uint32_t view_timeout_ms;     /* [100, 600000], default 2000 */
    uint32_t block_txs_max;       /* [1, 100000], default 2000 */
    uint32_t block_bytes_max;     /* [4096, 64 MiB], default 4 MiB */
    uint32_t batch_delay_ms;      /* [0, 10000], default 20 */
};

/* host is an IPv4 literal, an IPv6 literal (without brackets) or a DNS name. */
struct config_address {
    char host[CONFIG_HOST_MAX + 1];
    uint16_t port;
};

struct genesis_agency {
    char id[GENESIS_AGENCY_ID_MAX + 1];     /* dot-separated lowercase labels, e.g. "city.traffic" */
    char name[GENESIS_AGENCY_NAME_MAX + 1]; /* free text without control characters */
    uint32_t roles_n;
    char roles[GENESIS_ROLES_MAX][GENESIS_ROLE_MAX + 1];
    uint32_t officers_n;
    struct crypto_pubkey officers[GENESIS_OFFICERS_MAX];
    uint32_t threshold;                     /* 1 <= threshold <= officers_n */
    struct crypto_pubkey enc_key;           /* ECIES key that releases are wrapped to */
    int32_t node_index;                     /* its node, or -1; set by config_check_genesis() */
};

struct genesis_node {
    char agency[GENESIS_AGENCY_ID_MAX + 1];
    uint32_t agency_index; /* set by config_check_genesis() */
    struct crypto_pubkey node_key;
    uint8_t tls_key[CONFIG_TLS_KEY_BYTES];
    struct config_address address;
};

struct genesis {
    char chain_id[GENESIS_CHAIN_ID_MAX + 1]; /* 1..64 of [a-z0-9.-] */
    uint64_t genesis_time_ms;
    struct genesis_consensus consensus;
    uint32_t agencies_n;
    struct genesis_agency agencies[GENESIS_AGENCIES_MAX];
    uint32_t nodes_n;
    struct genesis_node nodes[GENESIS_NODES_MAX];
    uint32_t f; /* faults tolerated, (nodes_n - 1) / 3; set by config_check_genesis() */
};

/* ---- node.json ---- */

enum config_log_level {
    CONFIG_LOG_ERROR = 0,
    CONFIG_LOG_WARN = 1,
    CONFIG_LOG_INFO = 2,
    CONFIG_LOG_DEBUG = 3,
};

/* Resource limits of one node; the loader fills defaults for omitted fields. */
struct node_limits {
    uint32_t mempool_txs;          /* [1, 10^7], default 20000 */
    uint64_t mempool_bytes;        /* [64 KiB, 64 GiB], default 64 MiB */
    uint32_t frame_bytes_max;      /* [64 KiB, 256 MiB], default 16 MiB */
    uint64_t peer_queue_bytes_max; /* [frame_bytes_max, 16 GiB], default 64 MiB */
    uint32_t rpc_body_bytes_max;   /* [4 KiB, 256 MiB], default 4 MiB */
    uint32_t rpc_conns_max;        /* [1, 65536], default 256 */
    uint32_t tx_bytes_max;         /* [256, 16 MiB], default 64 KiB; below the frame, mempool and RPC body limits */
    uint32_t clock_skew_max_ms;    /* [1000, 3600000], default 10000: how far a block proposal's time may
                                      be from this node's wall clock before it is refused (blocktime.h) */
};

/*
 * Paths are resolved against the directory of node.json when loaded; when
 * written they are stored as they are. enc_key and passphrase_file are empty
 * strings when absent.
 */
struct node_config {
    char genesis[CONFIG_PATH_MAX];
    uint32_t node_index;
    char data_dir[CONFIG_PATH_MAX];
    struct config_address listen; /* an IP literal */
    struct config_address rpc;    /* an IP literal; loopback unless rpc_public */
    bool rpc_public;
    char node_key[CONFIG_PATH_MAX];
    char tls_key[CONFIG_PATH_MAX];
    char enc_key[CONFIG_PATH_MAX];
    char passphrase_file[CONFIG_PATH_MAX];
    enum config_log_level log_level; /* default info */
    uint32_t map_size_mb;            /* LMDB map size: [16, 4194304], default 1024 */
    /*
     * The node doubles the map as the store fills, up to this: 0 (the
     * default) means 16 x map_size_mb capped at 4194304, else
     * [map_size_mb, 4194304]; equal to map_size_mb: never grows.
     */
    uint32_t map_size_max_mb;
    struct node_limits limits;
};

/* ---- genesis ---- */

/* Clears g and sets the consensus defaults. */
void config_genesis_defaults(struct genesis *g);

/*
 * Loads and checks the genesis file at path. Returns 0, -BEX_EIO (cannot
 * read), -BEX_ELIMIT (file too large), -BEX_EDECODE (not JSON, wrong shape)
 * or -BEX_EINVAL (a rule is broken), with the reason in err. On failure g is
 * cleared.
 */
BEX_MUST_USE int config_load_genesis(struct genesis *g, const char *path, char *err, size_t err_size);

/*
 * Checks every rule of a genesis built in memory and sets its derived fields
 * (f, agency node_index, node agency_index). name prefixes the messages.
 * Returns 0 or -BEX_EINVAL.
 */
BEX_MUST_USE int config_check_genesis(struct genesis *g, const char *name, char *err, size_t err_size);

/*
 * Checks g and writes it to path atomically (mode 0644), in the format
 * config_load_genesis() reads. Returns 0, -BEX_EINVAL, -BEX_ENOMEM, -BEX_EIO,
 * -BEX_ENOSPC, or -BEX_EEXIST when path exists and replace is false.
 */
BEX_MUST_USE int config_write_genesis(struct genesis *g, const char *path, bool replace, char *err,
                                      size_t err_size);

/*
 * The genesis hash: SHA-256 of the canonical JSON of g (compact, keys
 * sorted, defaults written out). Nodes that loaded equivalent files get the
 * same hash whatever their whitespace or field order. g must have passed
 * config_check_genesis(). Returns 0 or -BEX_ENOMEM.
 */
BEX_MUST_USE int config_genesis_hash(uint8_t out[CRYPTO_HASH_BYTES], const struct genesis *g);

/* Returns the index of the agency with this id, or -1. */
int config_genesis_find_agency(const struct genesis *g, const char *id);

/* Clears g. Accepts a zeroed or half-loaded struct. */
void config_genesis_close(struct genesis *g);

/* ---- node ---- */

/* Clears c and sets the defaults of the optional fields. */
void config_node_defaults(struct node_config *c);

/*
 * Loads and checks the node file at path, resolving relative paths against
 * its directory. Codes as config_load_genesis(). On failure c is cleared.
 */
BEX_MUST_USE int config_load_node(struct node_config *c, const char *path, char *err, size_t err_size);

/* Checks every rule of a node config built in memory. Returns 0 or -BEX_EINVAL. */
BEX_MUST_USE int config_check_node(const struct node_config *c, const char *name, char *err, size_t err_size);

/*
 * Checks that a node config fits the genesis it names: node_index is a node
 * of g, and the limits can carry the largest block and transaction g allows.
 * Returns 0 or -BEX_EINVAL.
 */
BEX_MUST_USE int config_check_node_genesis(const struct node_config *c, const struct genesis *g, const char *name,
                                           char *err, size_t err_size);

/* Checks c and writes it to path atomically (mode 0644). Codes as config_write_genesis(). */
BEX_MUST_USE int config_write_node(const struct node_config *c, const char *path, bool replace, char *err,
                                   size_t err_size);

/* Clears c. Accepts a zeroed or half-loaded struct. */
void config_node_close(struct node_config *c);

/* The largest map the node may grow its store to, in MiB: map_size_max_mb or its default. */
uint32_t config_map_size_max_mb(const struct node_config *c);

/* Returns "error", "warn", "info" or "debug". */
const char *config_log_level_name(enum config_log_level level);

/* ---- addresses ---- */

/*
 * Parses "host:port" ("[v6]:port" for IPv6). With ip_only the host must be
 * an IP literal, otherwise a DNS name is accepted too. Returns 0 or
 * -BEX_EINVAL with the reason (without a file or field prefix) in err.
 */
BEX_MUST_USE int config_parse_address(struct config_address *a, const char *text, bool ip_only, char *err,
                                      size_t err_size);

/* Formats a as "host:port" or "[v6]:port" into out. Returns 0 or -BEX_ELIMIT. */
BEX_MUST_USE int config_format_address(char *out, size_t out_size, const struct config_address *a);

/* True when a's host is an IPv4 127.0.0.0/8 or IPv6 ::1 literal. */
bool config_address_is_loopback(const struct config_address *a);

/* ---- files ---- */

/*
 * Reads the regular file at path, at most max bytes, into a new
 * NUL-terminated buffer the caller frees. Returns 0, -BEX_EIO, -BEX_ELIMIT
 * (larger than max) or -BEX_ENOMEM, with the reason in err.
 */
BEX_MUST_USE int config_file_read(char **out, size_t *out_len, const char *path, size_t max, char *err,
                                  size_t err_size);

/*
 * Writes data to path atomically with the given mode: a temporary file in
 * the same directory is written and synced, then renamed over path (replace)
 * or hard-linked to it, which fails with -BEX_EEXIST if path exists; the
 * directory is synced last. Returns 0, -BEX_EEXIST, -BEX_ENOSPC or -BEX_EIO.
 */
BEX_MUST_USE int config_file_write(const char *path, const void *data, size_t len, unsigned mode, bool replace,
                                   char *err, size_t err_size);

#endif
