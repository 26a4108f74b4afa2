/*
 * cli_testnet.c: bexctl testnet init, which lays out a local network of N
 * nodes in one directory: every key, the genesis and one config per node.
 *
 * The work runs in two phases so that a bad argument never leaves files
 * behind: first every key is made in memory and the genesis and node
 * configs are built and checked with the same rules bexd loads them with;
 * only then is anything written, genesis.json last, so a directory holding
 * genesis.json holds a complete network.
 */
#include "cli.h"
#include "cli_internal.h"
#include "config.h"
#include "crypto.h"
#include "keystore.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TESTNET_NODES_DEFAULT GENESIS_NODES_MIN
#define TESTNET_OFFICERS 3
#define TESTNET_THRESHOLD 2
/* Cheap enough that a node or a script opens a key in milliseconds; the keys
 * of a throw-away local network guard nothing of value. */
#define TESTNET_SCRYPT_LOG2N 12
#define TESTNET_PASSPHRASE_BYTES 24
#define TESTNET_HOST "127.0.0.1"
#define TESTNET_CHAIN_ID_DEFAULT "bex-testnet"
/* Consensus for a local net: fast view changes and small batches. The
 * engine needs the window to be a multiple of the checkpoint interval. */
#define TESTNET_VIEW_TIMEOUT_MS 1000
#define TESTNET_BATCH_DELAY_MS 10
#define TESTNET_CHECKPOINT_INTERVAL 16
#define TESTNET_WINDOW 64
#define TESTNET_ERR_BYTES (CONFIG_PATH_MAX + 512) /* a path and what went wrong with it */

_Static_assert(TESTNET_WINDOW % TESTNET_CHECKPOINT_INTERVAL == 0, "window is a multiple of checkpoint_interval");
_Static_assert(TESTNET_SCRYPT_LOG2N >= KEYSTORE_SCRYPT_LOG2N_MIN, "testnet scrypt cost is one keystores accept");
_Static_assert(TESTNET_THRESHOLD >= 1 && TESTNET_THRESHOLD <= TESTNET_OFFICERS, "threshold within the officers");
_Static_assert(TESTNET_OFFICERS <= GENESIS_OFFICERS_MAX, "officers fit the genesis");
_Static_assert(2 * TESTNET_PASSPHRASE_BYTES + 1 <= KEYSTORE_PASSPHRASE_MAX, "passphrase fits a keystore's");

static int run(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_testnet = {
    .name = "testnet",
    .summary = "generate keys, genesis and configs for a local network",
    .usage = "usage: bexctl testnet init --dir DIR [--nodes N] [--base-port P] [--chain-id ID] [--force] [--json]\n"
             "\n"
             "Lays out a network of N nodes on 127.0.0.1 in DIR, one agency per node:\n"
             "  genesis.json      the network: chain id, consensus parameters, agencies, nodes\n"
             "  passphrase        one random passphrase (mode 0600) that opens every key below\n"
             "  nodeK/            node.json, node.key (node signing key), tls.pem (Ed25519\n"
             "                    link key), enc.key (the agency's encryption key), data/\n"
             "  agencies/ID/      officer1.key .. officer3.key (threshold 2) and enc.key\n"
             "  agencies.txt      id, name, node index and RPC URL of each agency, tab-separated\n"
             "The first four agencies are city.traffic, city.police, city.tax and city.health;\n"
             "more nodes add city.agencyK with role member. Keys use a cheap scrypt cost\n"
             "(2^12): for local networks only.\n"
             "\n"
             "  --dir DIR          where to write (created if missing)\n"
             "  --nodes N          number of nodes, 4 to 16 (default 4)\n"
             "  --base-port P      node K listens on P+2K (p2p) and P+2K+1 (RPC); by default\n"
             "                     free ports are picked now\n"
             "  --chain-id ID      the chain id (default bex-testnet)\n"
             "  --force            replace a network already in DIR, deleting its node data\n"
             "  --json             print the nodes, their addresses and the passphrase file as JSON\n",
    .run = run,
};

/* The agencies of the demo scenarios, one per node of the smallest network. */
static const struct {
    const char *id;
    const char *name;
    const char *role;
} demo_agencies[] = {
    {"city.traffic", "City Traffic Bureau", "traffic"},
    {"city.police", "City Public Security Bureau", "police"},
    {"city.tax", "City Tax Bureau", "tax"},
    {"city.health", "City Health Commission", "health"},
};

_Static_assert(BEX_ARRAY_LEN(demo_agencies) == GENESIS_NODES_MIN, "one demo agency per node of the smallest net");

struct node_secrets {
    struct crypto_seckey node_sk;
    struct crypto_seckey enc_sk;
    struct crypto_seckey officer_sk[TESTNET_OFFICERS];
    struct tls_key *tls;
};

struct testnet {
    /* The command line. */
    const char *dir;
    uint32_t nodes_n;
    uint32_t base_port; /* 0: pick free ports */
    const char *chain_id;
    bool force;
    /* What phase one makes. */
    uint16_t p2p_port[GENESIS_NODES_MAX];
    uint16_t rpc_port[GENESIS_NODES_MAX];
    struct genesis genesis;
    struct node_config node;
    struct node_secrets secrets[GENESIS_NODES_MAX];
    char pass[2 * TESTNET_PASSPHRASE_BYTES + 2]; /* hex, then a newline when written */
    char err[TESTNET_ERR_BYTES];
};

/* The names init writes in DIR besides node0 .. node15; --force deletes
 * exactly these, once the new network is ready to be written. */
static const char *const top_names[] = {"genesis.json", "agencies.txt", "passphrase", "agencies"};

/* ---- small helpers ---- */

/* Formats a path into out (CONFIG_PATH_MAX bytes). Returns 0 or -BEX_ELIMIT. */
static int path_fmt(char *out, char *err, const char *fmt, ...) BEX_PRINTF(3, 4);

static int path_fmt(char *out, char *err, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out, CONFIG_PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= CONFIG_PATH_MAX) {
        snprintf(err, TESTNET_ERR_BYTES, "a path under the directory is longer than %d bytes", CONFIG_PATH_MAX - 1);
        return -BEX_ELIMIT;
    }
    return 0;
}

static int make_dir(const char *path, unsigned mode, char *err)
{
    if (mkdir(path, mode) == 0)
        return 0;
    snprintf(err, TESTNET_ERR_BYTES, "%s: %s", path, strerror(errno));
    return errno == ENOSPC ? -BEX_ENOSPC : -BEX_EIO;
}

/* Creates path and any missing parent, like mkdir -p. */
static int make_dirs(const char *path, char *err)
{
    char p[CONFIG_PATH_MAX];
    struct stat st;
    size_t n = strlen(path);

    if (n >= sizeof(p)) {
        snprintf(err, TESTNET_ERR_BYTES, "directory name longer than %d bytes", CONFIG_PATH_MAX - 1);
        return -BEX_ELIMIT;
    }
    memcpy(p, path, n + 1);
    /* Each prefix ending before a slash, then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            snprintf(err, TESTNET_ERR_BYTES, "%s: %s", p, strerror(errno));
            return -BEX_EIO;
        }
        p[i] = path[i];
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, TESTNET_ERR_BYTES, "%s: not a directory", path);
        return -BEX_EIO;
    }
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Deletes path and, for a directory, everything below it, without following
 * symbolic links. A missing path is not an error. */
static int remove_tree(const char *path, char *err)
{
    if (!exists(path))
        return 0;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        snprintf(err, TESTNET_ERR_BYTES, "cannot delete %s: %s", path, strerror(errno));
        return -BEX_EIO;
    }
    return 0;
}

/* ---- phase one: checks, ports, keys, configs ---- */

/*
 * True when DIR/nodeK/bexd.pid (written by testnet/up.sh) names a live
 * process, whose pid is then in *pid. A stale file whose pid was reused
 * reads as alive: deleting a running node's data is the worse mistake.
 */
static bool node_running(char pid_path[CONFIG_PATH_MAX], long *pid, const char *dir, uint32_t k)
{
    char *text = NULL;
    size_t len;
    char err[256];
    char *end;
    bool alive = false;

    if (path_fmt(pid_path, err, "%s/node%u/bexd.pid", dir, k) != 0)
        return false;
    if (config_file_read(&text, &len, pid_path, 64, err, sizeof(err)) != 0)
        return false;
    errno = 0;
    *pid = strtol(text, &end, 10);
    if (errno == 0 && end != text && (*end == '\0' || *end == '\n') && *pid > 1)
        alive = kill((pid_t)*pid, 0) == 0 || errno == EPERM;
    free(text);
    return alive;
}

/* The number of names init owns in DIR, and the i-th of them as a path. */
#define OWNED_N (BEX_ARRAY_LEN(top_names) + GENESIS_NODES_MAX)

static int owned_path(char path[CONFIG_PATH_MAX], const struct testnet *t, size_t i, char *err)
{
    BEX_ASSERT(i < OWNED_N);
    if (i < BEX_ARRAY_LEN(top_names))
        return path_fmt(path, err, "%s/%s", t->dir, top_names[i]);
    return path_fmt(path, err, "%s/node%zu", t->dir, i - BEX_ARRAY_LEN(top_names));
}

/*
 * Refuses a directory that holds a network, complete or not, unless
 * --force, and even with --force while one of its nodes runs. Returns a
 * CLI_EXIT_* code.
 */
static int check_dir(struct testnet *t)
{
    char path[CONFIG_PATH_MAX];
    long pid;

    if (path_fmt(path, t->err, "%s/genesis.json", t->dir) != 0)
        goto fail;
    if (!t->force && exists(path)) {
        cli_error(cli_testnet.name, "%s already holds a network (%s); use --force to replace it", t->dir, path);
        return CLI_EXIT_FAIL;
    }
    for (uint32_t k = 0; k < GENESIS_NODES_MAX; k++) {
        if (node_running(path, &pid, t->dir, k)) {
            cli_error(cli_testnet.name, "node%u of %s is running (pid %ld in %s); stop it first (testnet/down.sh)",
                      k, t->dir, pid, path);
            return CLI_EXIT_FAIL;
        }
    }
    for (size_t i = 0; i < OWNED_N && !t->force; i++) {
        if (owned_path(path, t, i, t->err) != 0)
            goto fail;
        if (exists(path)) {
            cli_error(cli_testnet.name, "%s holds part of a network (%s); use --force to replace it", t->dir,
                      path);
            return CLI_EXIT_FAIL;
        }
    }
    return CLI_EXIT_OK;
fail:
    cli_error(cli_testnet.name, "%s", t->err);
    return CLI_EXIT_FAIL;
}

/* Deletes the network that --force replaces: only the names init writes,
 * so other files in DIR stay. */
static int clear_dir(struct testnet *t)
{
    char path[CONFIG_PATH_MAX];
    int rc;

    for (size_t i = 0; i < OWNED_N; i++)
        if ((rc = owned_path(path, t, i, t->err)) != 0 || (rc = remove_tree(path, t->err)) != 0)
            return rc;
    return 0;
}

/*
 * Binds n TCP sockets on 127.0.0.1, all open at once so the ports are
 * distinct: with pick the kernel chooses each port (bind to port 0) and the
 * choice is written to ports; otherwise ports are checked to be free.
 * SO_REUSEADDR matches how a node binds, so a port left in TIME_WAIT by an
 * earlier run still counts as free.
 */
static int bind_ports(uint16_t *ports, size_t n, bool pick, char *err)
{
    int fds[2 * GENESIS_NODES_MAX];
    size_t opened = 0;
    int rc = 0;

    BEX_ASSERT(n <= BEX_ARRAY_LEN(fds));
    for (; opened < n; opened++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(pick ? 0 : ports[opened])};
        socklen_t sa_len = sizeof(sa);
        int one = 1;

        int ok = inet_pton(AF_INET, TESTNET_HOST, &sa.sin_addr);
        BEX_ASSERT(ok == 1);
        if ((fds[opened] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
            snprintf(err, TESTNET_ERR_BYTES, "socket: %s", strerror(errno));
            rc = -BEX_EIO;
            break;
        }
        if (setsockopt(fds[opened], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fds[opened], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            snprintf(err, TESTNET_ERR_BYTES, "port %u of %s: %s", pick ? 0u : (unsigned)ports[opened], TESTNET_HOST,
                     strerror(errno));
            rc = -BEX_EIO;
            opened++;
            break;
        }
        if (pick) {
            if (getsockname(fds[opened], (struct sockaddr *)&sa, &sa_len) != 0) {
                snprintf(err, TESTNET_ERR_BYTES, "getsockname: %s", strerror(errno));
                rc = -BEX_EIO;
                opened++;
                break;
            }
            ports[opened] = ntohs(sa.sin_port);
            BEX_ASSERT(ports[opened] != 0);
        }
    }
    for (size_t i = 0; i < opened; i++)
        close(fds[i]);
    return rc;
}

/* Fills p2p_port and rpc_port: node k uses ports[2k] and ports[2k + 1]. */
static int choose_ports(struct testnet *t)
{
    uint16_t ports[2 * GENESIS_NODES_MAX];
    size_t n = 2 * (size_t)t->nodes_n;
    int rc;

    for (size_t i = 0; i < n && t->base_port != 0; i++)
        ports[i] = (uint16_t)(t->base_port + i);
    if ((rc = bind_ports(ports, n, t->base_port == 0, t->err)) != 0)
        return rc;
    for (uint32_t k = 0; k < t->nodes_n; k++) {
        t->p2p_port[k] = ports[2 * k];
        t->rpc_port[k] = ports[2 * k + 1];
    }
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fill_agency(struct genesis_agency *a, uint32_t k, const struct node_secrets *s, char *err)
{
    const bool demo = k < BEX_ARRAY_LEN(demo_agencies);
    int rc;

    if (demo) {
        snprintf(a->id, sizeof(a->id), "%s", demo_agencies[k].id);
        snprintf(a->name, sizeof(a->name), "%s", demo_agencies[k].name);
    } else {
        snprintf(a->id, sizeof(a->id), "city.agency%u", k);
        snprintf(a->name, sizeof(a->name), "City Agency %u", k);
    }
    a->roles_n = 1;
    snprintf(a->roles[0], sizeof(a->roles[0]), "%s", demo ? demo_agencies[k].role : "member");
    a->officers_n = TESTNET_OFFICERS;
    a->threshold = TESTNET_THRESHOLD;
    for (uint32_t i = 0; i < TESTNET_OFFICERS; i++)
        if ((rc = crypto_pubkey_of(&a->officers[i], &s->officer_sk[i])) != 0)
            goto fail;
    if ((rc = crypto_pubkey_of(&a->enc_key, &s->enc_sk)) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, TESTNET_ERR_BYTES, "agency key: %s", bex_strerror(rc));
    return rc;
}

/* Makes every key of node k in memory. */
static int make_secrets(struct node_secrets *s, char *err)
{
    struct crypto_pubkey pk;
    int rc;

    if ((rc = crypto_keygen(&s->node_sk, &pk)) != 0 || (rc = crypto_keygen(&s->enc_sk, &pk)) != 0)
        goto fail;
    for (uint32_t i = 0; i < TESTNET_OFFICERS; i++)
        if ((rc = crypto_keygen(&s->officer_sk[i], &pk)) != 0)
            goto fail;
    if ((rc = tls_key_new(&s->tls)) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, TESTNET_ERR_BYTES, "key generation: %s", bex_strerror(rc));
    return rc;
}

/*
 * Builds the config of node k into t->node and checks it. Paths are relative
 * to the node's directory so DIR can move. There is one t->node: build()
 * checks every node's, write_node() builds each again to write it.
 */
static int build_node(struct testnet *t, uint32_t k)
{
    struct node_config *c = &t->node;
    char name[32];
    int rc;

    config_node_defaults(c);
    snprintf(c->genesis, sizeof(c->genesis), "../genesis.json");
    c->node_index = k;
    snprintf(c->data_dir, sizeof(c->data_dir), "data");
    snprintf(c->listen.host, sizeof(c->listen.host), TESTNET_HOST);
    c->listen.port = t->p2p_port[k];
    snprintf(c->rpc.host, sizeof(c->rpc.host), TESTNET_HOST);
    c->rpc.port = t->rpc_port[k];
    snprintf(c->node_key, sizeof(c->node_key), "node.key");
    snprintf(c->tls_key, sizeof(c->tls_key), "tls.pem");
    snprintf(c->enc_key, sizeof(c->enc_key), "enc.key");
    snprintf(c->passphrase_file, sizeof(c->passphrase_file), "../passphrase");
    snprintf(name, sizeof(name), "node%u/node.json", k);
    if ((rc = config_check_node(c, name, t->err, sizeof(t->err))) != 0)
        return rc;
    return config_check_node_genesis(c, &t->genesis, name, t->err, sizeof(t->err));
}

/*
 * Phase one: ports, keys and the genesis, all checked. Returns
 * CLI_EXIT_USAGE when the genesis refuses the chain id, the only free text
 * of the command line that reaches it.
 */
static int build(struct testnet *t)
{
    struct genesis *g = &t->genesis;
    int rc;

    if ((rc = choose_ports(t)) != 0)
        goto fail;
    config_genesis_defaults(g);
    snprintf(g->chain_id, sizeof(g->chain_id), "%s", t->chain_id);
    g->genesis_time_ms = now_ms();
    g->consensus.view_timeout_ms = TESTNET_VIEW_TIMEOUT_MS;
    g->consensus.batch_delay_ms = TESTNET_BATCH_DELAY_MS;
    g->consensus.checkpoint_interval = TESTNET_CHECKPOINT_INTERVAL;
    g->consensus.window = TESTNET_WINDOW;
    g->agencies_n = t->nodes_n;
    g->nodes_n = t->nodes_n;
    for (uint32_t k = 0; k < t->nodes_n; k++) {
        struct genesis_node *n = &g->nodes[k];
        struct crypto_seckey *sk = &t->secrets[k].node_sk;

        if ((rc = make_secrets(&t->secrets[k], t->err)) != 0 ||
            (rc = fill_agency(&g->agencies[k], k, &t->secrets[k], t->err)) != 0)
            goto fail;
        _Static_assert(sizeof(n->agency) == sizeof(g->agencies[k].id), "agency ids have one size");
        memcpy(n->agency, g->agencies[k].id, sizeof(n->agency));
        if ((rc = crypto_pubkey_of(&n->node_key, sk)) != 0) {
            snprintf(t->err, sizeof(t->err), "node key: %s", bex_strerror(rc));
            goto fail;
        }
        tls_pubkey_raw(t->secrets[k].tls, n->tls_key);
        snprintf(n->address.host, sizeof(n->address.host), TESTNET_HOST);
        n->address.port = t->p2p_port[k];
    }
    if ((rc = config_check_genesis(g, "genesis.json", t->err, sizeof(t->err))) != 0) {
        cli_usage_error(&cli_testnet, "%s", t->err);
        return CLI_EXIT_USAGE;
    }
    for (uint32_t k = 0; k < t->nodes_n; k++)
        if ((rc = build_node(t, k)) != 0)
            goto fail;
    return CLI_EXIT_OK;
fail:
    cli_error(cli_testnet.name, "%s", t->err);
    return CLI_EXIT_FAIL;
}

/* ---- phase two: files ---- */

static int write_keystore(const char *path, const struct crypto_seckey *sk, const char *pass, char *err)
{
    return keystore_write(path, sk, pass, TESTNET_SCRYPT_LOG2N, 0, err, TESTNET_ERR_BYTES);
}

static int write_node(struct testnet *t, uint32_t k)
{
    const struct node_secrets *s = &t->secrets[k];
    char dir[CONFIG_PATH_MAX], path[CONFIG_PATH_MAX];
    int rc;

    if ((rc = path_fmt(dir, t->err, "%s/node%u", t->dir, k)) != 0 || (rc = make_dir(dir, 0755, t->err)) != 0 ||
        (rc = path_fmt(path, t->err, "%s/data", dir)) != 0 || (rc = make_dir(path, 0700, t->err)) != 0 ||
        (rc = path_fmt(path, t->err, "%s/node.key", dir)) != 0 ||
        (rc = write_keystore(path, &s->node_sk, t->pass, t->err)) != 0 ||
        (rc = path_fmt(path, t->err, "%s/enc.key", dir)) != 0 ||
        (rc = write_keystore(path, &s->enc_sk, t->pass, t->err)) != 0 ||
        (rc = path_fmt(path, t->err, "%s/tls.pem", dir)) != 0)
        return rc;
    if ((rc = tls_key_save(s->tls, path, t->pass)) != 0) {
        snprintf(t->err, sizeof(t->err), "%s: %s", path, bex_strerror(rc));
        return rc;
    }
    if ((rc = build_node(t, k)) != 0 || (rc = path_fmt(path, t->err, "%s/node.json", dir)) != 0)
        return rc;
    return config_write_node(&t->node, path, false, t->err, sizeof(t->err));
}

/* The keys an agency's people hold: its officers' and a copy of the
 * encryption key its node also holds, for bexctl to decrypt releases. */
static int write_agency(struct testnet *t, uint32_t k)
{
    const struct node_secrets *s = &t->secrets[k];
    char dir[CONFIG_PATH_MAX], path[CONFIG_PATH_MAX];
    int rc;

    if ((rc = path_fmt(dir, t->err, "%s/agencies/%s", t->dir, t->genesis.agencies[k].id)) != 0 ||
        (rc = make_dir(dir, 0700, t->err)) != 0)
        return rc;
    for (uint32_t i = 0; i < TESTNET_OFFICERS; i++)
        if ((rc = path_fmt(path, t->err, "%s/officer%u.key", dir, i + 1)) != 0 ||
            (rc = write_keystore(path, &s->officer_sk[i], t->pass, t->err)) != 0)
            return rc;
    if ((rc = path_fmt(path, t->err, "%s/enc.key", dir)) != 0)
        return rc;
    return write_keystore(path, &s->enc_sk, t->pass, t->err);
}

/* One line per agency in node order, "id<TAB>name<TAB>node index<TAB>RPC
 * URL", and nothing else, so "sed -n 1p | cut -f4" is node 0's RPC. */
static int write_agencies_txt(struct testnet *t)
{
    char path[CONFIG_PATH_MAX];
    char *text = NULL;
    size_t size = 0;
    FILE *f;
    int rc;

    if ((rc = path_fmt(path, t->err, "%s/agencies.txt", t->dir)) != 0)
        return rc;
    if ((f = open_memstream(&text, &size)) == NULL) {
        snprintf(t->err, sizeof(t->err), "out of memory");
        return -BEX_ENOMEM;
    }
    for (uint32_t k = 0; k < t->nodes_n; k++)
        fprintf(f, "%s\t%s\t%u\thttp://%s:%u\n", t->genesis.agencies[k].id, t->genesis.agencies[k].name, k,
                TESTNET_HOST, (unsigned)t->rpc_port[k]);
    if (fclose(f) != 0) {
        free(text);
        snprintf(t->err, sizeof(t->err), "out of memory");
        return -BEX_ENOMEM;
    }
    rc = config_file_write(path, text, size, 0644, false, t->err, sizeof(t->err));
    free(text);
    return rc;
}

static int write_all(struct testnet *t)
{
    uint8_t raw[TESTNET_PASSPHRASE_BYTES];
    char path[CONFIG_PATH_MAX];
    size_t len;
    int rc;

    if ((rc = crypto_random(raw, sizeof(raw))) != 0) {
        snprintf(t->err, sizeof(t->err), "no randomness for the passphrase");
        goto fail;
    }
    rc = crypto_hex_encode(t->pass, sizeof(t->pass), raw, sizeof(raw));
    BEX_ASSERT(rc == 0);
    len = strlen(t->pass);
    BEX_ASSERT(len == 2 * TESTNET_PASSPHRASE_BYTES);

    if ((rc = make_dirs(t->dir, t->err)) != 0 || (rc = path_fmt(path, t->err, "%s/passphrase", t->dir)) != 0)
        goto fail;
    /* The file ends with a newline, which every reader of it drops. */
    t->pass[len] = '\n';
    rc = config_file_write(path, t->pass, len + 1, 0600, false, t->err, sizeof(t->err));
    t->pass[len] = '\0';
    if (rc != 0)
        goto fail;

    for (uint32_t k = 0; k < t->nodes_n; k++)
        if ((rc = write_node(t, k)) != 0)
            goto fail;
    if ((rc = path_fmt(path, t->err, "%s/agencies", t->dir)) != 0 || (rc = make_dir(path, 0755, t->err)) != 0)
        goto fail;
    for (uint32_t k = 0; k < t->nodes_n; k++)
        if ((rc = write_agency(t, k)) != 0)
            goto fail;
    if ((rc = write_agencies_txt(t)) != 0 || (rc = path_fmt(path, t->err, "%s/genesis.json", t->dir)) != 0)
        goto fail;
    rc = config_write_genesis(&t->genesis, path, false, t->err, sizeof(t->err));
fail:
    crypto_wipe(raw, sizeof(raw));
    return rc;
}

static int print_text(const struct testnet *t, FILE *out)
{
    fprintf(out, "%u-node network \"%s\" in %s\n", t->nodes_n, t->genesis.chain_id, t->dir);
    for (uint32_t k = 0; k < t->nodes_n; k++)
        fprintf(out, "  node%-3u %-14s p2p %s:%-5u  rpc http://%s:%u\n", k, t->genesis.agencies[k].id,
                TESTNET_HOST, (unsigned)t->p2p_port[k], TESTNET_HOST, (unsigned)t->rpc_port[k]);
    fprintf(out, "keys: %s/nodeK/ (node), %s/agencies/ID/ (officers, threshold %d of %d; encryption)\n", t->dir,
            t->dir, TESTNET_THRESHOLD, TESTNET_OFFICERS);
    fprintf(out, "every key opens with the passphrase in %s/passphrase (scrypt 2^%d: a testnet cost)\n", t->dir,
            TESTNET_SCRYPT_LOG2N);
    return fflush(out) == 0 && !ferror(out) ? 0 : -BEX_EIO;
}

/* {"dir", "chain_id", "passphrase_file", "scrypt_log2_n", "nodes": [{"index",
 * "agency", "name", "p2p", "rpc"}]}: what scripts need to drive the network. */
static int print_json(const struct testnet *t, FILE *out)
{
    char pass_path[CONFIG_PATH_MAX], addr[64], url[64];
    char err[TESTNET_ERR_BYTES];
    json_t *nodes = json_array();
    json_t *doc = NULL;
    bool ok = nodes != NULL && path_fmt(pass_path, err, "%s/passphrase", t->dir) == 0;
    int rc;

    for (uint32_t k = 0; ok && k < t->nodes_n; k++) {
        snprintf(addr, sizeof(addr), "%s:%u", TESTNET_HOST, (unsigned)t->p2p_port[k]);
        snprintf(url, sizeof(url), "http://%s:%u", TESTNET_HOST, (unsigned)t->rpc_port[k]);
        ok = json_array_append_new(nodes, json_pack("{s:I, s:s, s:s, s:s, s:s}", "index", (json_int_t)k, "agency",
                                                     t->genesis.agencies[k].id, "name",
                                                     t->genesis.agencies[k].name, "p2p", addr, "rpc", url)) == 0;
    }
    if (ok)
        doc = json_pack("{s:s, s:s, s:s, s:i, s:O}", "dir", t->dir, "chain_id", t->genesis.chain_id,
                        "passphrase_file", pass_path, "scrypt_log2_n", TESTNET_SCRYPT_LOG2N, "nodes", nodes);
    rc = doc != NULL && json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 && fputc('\n', out) != EOF &&
                 fflush(out) == 0
             ? 0
             : -BEX_EIO;
    json_decref(doc);
    json_decref(nodes);
    return rc;
}

/* ---- the command ---- */

static void testnet_free(struct testnet *t)
{
    if (t == NULL)
        return;
    for (uint32_t k = 0; k < GENESIS_NODES_MAX; k++)
        tls_key_free(t->secrets[k].tls);
    crypto_wipe(t, sizeof(*t));
    free(t);
}

enum { OPT_DIR, OPT_NODES, OPT_BASE_PORT, OPT_CHAIN_ID, OPT_FORCE };

static const struct cli_opt init_opts[] = {
    [OPT_DIR] = {"--dir", CLI_OPT_VALUE},
    [OPT_NODES] = {"--nodes", CLI_OPT_VALUE},
    [OPT_BASE_PORT] = {"--base-port", CLI_OPT_VALUE},
    [OPT_CHAIN_ID] = {"--chain-id", CLI_OPT_VALUE},
    [OPT_FORCE] = {"--force", 0},
};

static int parse_init(struct testnet *t, bool *help, struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = &cli_testnet;
    struct cli_args a;
    uint64_t v;
    int status;

    if ((status = cli_args_parse(&a, ctx, cmd, init_opts, BEX_ARRAY_LEN(init_opts), argc, argv, 1)) != CLI_EXIT_OK)
        return status;
    if ((*help = a.help))
        return CLI_EXIT_OK;
    if (a.npos > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", a.pos[0]);
    t->dir = a.val[OPT_DIR];
    t->chain_id = a.val[OPT_CHAIN_ID] != NULL ? a.val[OPT_CHAIN_ID] : TESTNET_CHAIN_ID_DEFAULT;
    t->force = a.val[OPT_FORCE] != NULL;
    t->nodes_n = TESTNET_NODES_DEFAULT;
    if (t->dir == NULL || t->dir[0] == '\0')
        return cli_usage_error(cmd, "--dir DIR is required");
    if (a.val[OPT_NODES] != NULL) {
        if (cli_parse_u64(&v, a.val[OPT_NODES], GENESIS_NODES_MIN, GENESIS_NODES_MAX) != 0)
            return cli_usage_error(cmd, "--nodes must be a whole number from %d to %d", GENESIS_NODES_MIN,
                                   GENESIS_NODES_MAX);
        t->nodes_n = (uint32_t)v;
    }
    /* The highest port, base + 2N - 1, must exist too. */
    if (a.val[OPT_BASE_PORT] != NULL) {
        if (cli_parse_u64(&v, a.val[OPT_BASE_PORT], 1, 65536 - 2 * t->nodes_n) != 0)
            return cli_usage_error(cmd, "--base-port must be a port from 1 to %u for %u nodes",
                                   65536 - 2 * t->nodes_n, t->nodes_n);
        t->base_port = (uint32_t)v;
    }
    if (strlen(t->chain_id) > GENESIS_CHAIN_ID_MAX)
        return cli_usage_error(cmd, "--chain-id is longer than %d characters", GENESIS_CHAIN_ID_MAX);
    return CLI_EXIT_OK;
}

static int init_run(struct cli_ctx *ctx, int argc, char **argv)
{
    struct testnet *t;
    bool help = false;
    bool crypto_up = false;
    int status;
    int rc;

    if ((t = calloc(1, sizeof(*t))) == NULL) {
        cli_error(cli_testnet.name, "out of memory");
        return CLI_EXIT_FAIL;
    }
    if ((status = parse_init(t, &help, ctx, argc, argv)) != CLI_EXIT_OK || help)
        goto done;
    if ((status = check_dir(t)) != CLI_EXIT_OK)
        goto done;
    status = CLI_EXIT_FAIL;
    if ((rc = crypto_init()) != 0) {
        cli_error(cli_testnet.name, "crypto: %s", bex_strerror(rc));
        goto done;
    }
    crypto_up = true;
    if ((status = build(t)) != CLI_EXIT_OK)
        goto done;
    if ((t->force && clear_dir(t) != 0) || write_all(t) != 0) {
        cli_error(cli_testnet.name, "%s (the network in %s is incomplete; run again with --force)", t->err,
                  t->dir);
        status = CLI_EXIT_FAIL;
        goto done;
    }
    if ((ctx->json ? print_json(t, ctx->out) : print_text(t, ctx->out)) != 0) {
        cli_error(cli_testnet.name, "the network is written, but its summary could not be printed");
        status = CLI_EXIT_FAIL;
        goto done;
    }
    status = CLI_EXIT_OK;
done:
    testnet_free(t);
    if (crypto_up)
        crypto_close();
    return status;
}

static int run(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error(&cli_testnet, "expected a subcommand: init");
    if (cli_is_help(argv[1])) {
        fputs(cli_testnet.usage, ctx->out);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "init") == 0)
        return init_run(ctx, argc - 1, argv + 1);
    return cli_usage_error(&cli_testnet, "unknown subcommand '%s' (expected init)", argv[1]);
}
