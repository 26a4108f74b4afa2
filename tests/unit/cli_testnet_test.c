#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bex.h"
#include "cli.h"
#include "config.h"
#include "crypto.h"
#include "keystore.h"
#include "tls.h"

/*
 * One 4-node network is made once for the whole group (a TLS key costs
 * 600000 PBKDF2 rounds to write and to read); the tests that need another
 * network make their own in a directory of their own.
 */
struct group {
    char root[64];     /* mkdtemp */
    char net[96];      /* root/net: the shared network, made by the group setup */
    char out[96];      /* captured standard output of the last command */
    char errout[96];   /* captured standard error of the last command */
    int init_status;   /* exit status of the group's testnet init */
};

static struct group grp;

/* Runs "bexctl ARGS..." as bexctl's main does for the testnet command, with
 * standard output and error captured to files, and returns its exit status. */
static int run_cli(int argc, const char **argv)
{
    char *args[24];
    struct cli_ctx ctx;
    int saved_out, saved_err, fd_out, fd_err;
    int first;
    int status;

    assert_true(argc + 1 < (int)BEX_ARRAY_LEN(args));
    args[0] = (char *)"bexctl";
    for (int i = 0; i < argc; i++)
        args[i + 1] = (char *)argv[i];
    args[argc + 1] = NULL;
    fflush(stdout);
    fflush(stderr);
    saved_out = dup(STDOUT_FILENO);
    saved_err = dup(STDERR_FILENO);
    fd_out = open(grp.out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    fd_err = open(grp.errout, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved_out >= 0 && saved_err >= 0 && fd_out >= 0 && fd_err >= 0);
    assert_true(dup2(fd_out, STDOUT_FILENO) >= 0 && dup2(fd_err, STDERR_FILENO) >= 0);
    status = cli_globals_parse(&ctx, &first, argc + 1, args);
    if (status == CLI_EXIT_OK) {
        assert_true(first < argc + 1);
        assert_string_equal(args[first], "testnet");
        status = cli_testnet.run(&ctx, argc + 1 - first, args + first);
    }
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    close(fd_out);
    close(fd_err);
    return status;
}

#define RUN(...)                                                                                                   \
    run_cli((int)BEX_ARRAY_LEN(((const char *[]){"testnet", __VA_ARGS__})), (const char *[]){"testnet", __VA_ARGS__})

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len;
    char err[256];

    if (config_file_read(&text, &len, path, 1 << 20, err, sizeof(err)) != 0)
        return NULL;
    return text;
}

/* Fails the test unless the captured file holds text. */
static void captured_has(const char *file, const char *text)
{
    char *s = slurp(file);
    assert_non_null(s);
    if (strstr(s, text) == NULL)
        fail_msg("'%s' not in: %s", text, s);
    free(s);
}

static bool path_exists(const char *fmt, ...) BEX_PRINTF(1, 2);

static bool path_exists(const char *fmt, ...)
{
    char path[512];
    struct stat st;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return lstat(path, &st) == 0;
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    close(fd);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    if (crypto_init() != 0)
        return -1;
    snprintf(grp.root, sizeof(grp.root), "/tmp/bex-testnet-XXXXXX");
    if (mkdtemp(grp.root) == NULL)
        return -1;
    snprintf(grp.net, sizeof(grp.net), "%s/net", grp.root);
    snprintf(grp.out, sizeof(grp.out), "%s/stdout", grp.root);
    snprintf(grp.errout, sizeof(grp.errout), "%s/stderr", grp.root);
    /* The directory does not exist yet: init creates it. */
    grp.init_status = RUN("init", "--dir", grp.net);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = nftw(grp.root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    crypto_close();
    return rc;
}

/* Checks that the keystore at path opens with pass and holds want. */
static void check_keystore(const char *path, const char *pass, const struct crypto_pubkey *want)
{
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char err[512];
    struct stat st;
    char *text;

    if (keystore_read(&sk, &pk, path, pass, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_memory_equal(pk.b, want->b, sizeof(pk.b));
    assert_int_equal(keystore_read(&sk, &pk, path, "not the passphrase", err, sizeof(err)), -BEX_EPASSPHRASE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_non_null(text = slurp(path));
    assert_non_null(strstr(text, "\"scrypt_log2_n\": 12"));
    free(text);
    crypto_wipe(&sk, sizeof(sk));
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int entries = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            entries++;
    closedir(d);
    return entries == 0;
}

static void load_genesis(struct genesis *g, const char *dir)
{
    char path[256], err[512];

    snprintf(path, sizeof(path), "%s/genesis.json", dir);
    if (config_load_genesis(g, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static void cli_testnet_init_writes_a_network_that_loads(void **state)
{
    (void)state;
    static const char *const ids[] = {"city.traffic", "city.police", "city.tax", "city.health"};
    static const char *const names[] = {"City Traffic Bureau", "City Public Security Bureau", "City Tax Bureau",
                                        "City Health Commission"};
    static const char *const roles[] = {"traffic", "police", "tax", "health"};
    struct genesis *g = calloc(1, sizeof(*g));
    struct node_config *c = calloc(1, sizeof(*c));
    char pass[KEYSTORE_PASSPHRASE_MAX + 1], node_pass[KEYSTORE_PASSPHRASE_MAX + 1];
    char path[512], line[512], err[512];
    uint16_t ports[2 * GENESIS_NODES_MAX];
    struct stat st;
    size_t txt_at = 0;
    char *txt;

    assert_non_null(g);
    assert_non_null(c);
    assert_int_equal(grp.init_status, CLI_EXIT_OK);
    load_genesis(g, grp.net);
    assert_string_equal(g->chain_id, "bex-testnet");
    assert_int_equal(g->nodes_n, 4);
    assert_int_equal(g->agencies_n, 4);
    assert_int_equal(g->f, 1);
    assert_int_equal(g->consensus.view_timeout_ms, 1000);
    assert_int_equal(g->consensus.batch_delay_ms, 10);
    assert_int_equal(g->consensus.checkpoint_interval, 16);
    assert_int_equal(g->consensus.window, 64);
    assert_int_equal(g->consensus.window % g->consensus.checkpoint_interval, 0);

    snprintf(path, sizeof(path), "%s/passphrase", grp.net);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    if (keystore_passphrase_file(pass, sizeof(pass), path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_true(strlen(pass) >= 32);

    snprintf(path, sizeof(path), "%s/agencies.txt", grp.net);
    assert_non_null(txt = slurp(path));

    for (uint32_t k = 0; k < 4; k++) {
        const struct genesis_agency *a = &g->agencies[k];
        const struct genesis_node *n = &g->nodes[k];
        struct tls_key *tls = NULL;
        uint8_t raw[TLS_PUBKEY_BYTES];

        assert_string_equal(a->id, ids[k]);
        assert_string_equal(a->name, names[k]);
        assert_int_equal(a->roles_n, 1);
        assert_string_equal(a->roles[0], roles[k]);
        assert_int_equal(a->officers_n, 3);
        assert_int_equal(a->threshold, 2);
        assert_int_equal(a->node_index, (int32_t)k);
        assert_string_equal(n->agency, ids[k]);
        assert_string_equal(n->address.host, "127.0.0.1");

        snprintf(path, sizeof(path), "%s/node%u/node.json", grp.net, k);
        if (config_load_node(c, path, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        if (config_check_node_genesis(c, g, path, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        assert_int_equal(c->node_index, k);
        assert_string_equal(c->listen.host, "127.0.0.1");
        assert_string_equal(c->rpc.host, "127.0.0.1");
        assert_false(c->rpc_public);
        assert_int_equal(c->listen.port, n->address.port);
        ports[2 * k] = c->listen.port;
        ports[2 * k + 1] = c->rpc.port;

        /* Every path resolves to the files init wrote, under the shared passphrase. */
        if (keystore_passphrase_file(node_pass, sizeof(node_pass), c->passphrase_file, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        assert_string_equal(node_pass, pass);
        check_keystore(c->node_key, pass, &n->node_key);
        check_keystore(c->enc_key, pass, &a->enc_key);
        assert_int_equal(tls_key_load(&tls, c->tls_key, pass), 0);
        tls_pubkey_raw(tls, raw);
        tls_key_free(tls);
        assert_memory_equal(raw, n->tls_key, sizeof(raw));
        assert_int_equal(stat(c->tls_key, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(stat(c->data_dir, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_true(dir_is_empty(c->data_dir));

        for (uint32_t i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s/agencies/%s/officer%u.key", grp.net, ids[k], i + 1);
            check_keystore(path, pass, &a->officers[i]);
        }
        snprintf(path, sizeof(path), "%s/agencies/%s/enc.key", grp.net, ids[k]);
        check_keystore(path, pass, &a->enc_key);

        /* Line k of agencies.txt is node k's agency, nothing precedes it. */
        snprintf(line, sizeof(line), "%s\t%s\t%u\thttp://127.0.0.1:%u\n", ids[k], names[k], k,
                 (unsigned)c->rpc.port);
        if (strncmp(txt + txt_at, line, strlen(line)) != 0)
            fail_msg("agencies.txt line %u is not '%s': %s", k + 1, line, txt);
        txt_at += strlen(line);
        config_node_close(c);
    }
    assert_int_equal(txt[txt_at], '\0');
    for (uint32_t i = 0; i < 8; i++)
        for (uint32_t j = i + 1; j < 8; j++)
            assert_int_not_equal(ports[i], ports[j]);

    /* The paths are relative to node.json, so the directory can move. */
    snprintf(path, sizeof(path), "%s/node0/node.json", grp.net);
    free(txt);
    assert_non_null(txt = slurp(path));
    assert_non_null(strstr(txt, "\"genesis\": \"../genesis.json\""));
    assert_non_null(strstr(txt, "\"passphrase_file\": \"../passphrase\""));
    free(txt);
    crypto_wipe(pass, sizeof(pass));
    free(g);
    free(c);
}

static void cli_testnet_refuses_an_existing_network(void **state)
{
    (void)state;
    char path[256], partial[160];
    char *before, *after;

    snprintf(path, sizeof(path), "%s/genesis.json", grp.net);
    assert_non_null(before = slurp(path));
    assert_int_equal(RUN("init", "--dir", grp.net), CLI_EXIT_FAIL);
    captured_has(grp.errout, "already holds a network");
    captured_has(grp.errout, "--force");
    assert_non_null(after = slurp(path));
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* A directory left by an interrupted init is no place to write either. */
    snprintf(partial, sizeof(partial), "%s/partial", grp.root);
    assert_int_equal(mkdir(partial, 0755), 0);
    snprintf(path, sizeof(path), "%s/passphrase", partial);
    touch(path);
    assert_int_equal(RUN("init", "--dir", partial), CLI_EXIT_FAIL);
    captured_has(grp.errout, "holds part of a network");
    assert_false(path_exists("%s/genesis.json", partial));
    assert_false(path_exists("%s/node0", partial));
}

static void cli_testnet_force_refuses_while_a_node_runs(void **state)
{
    (void)state;
    char path[256], pid[32];
    char *before, *after;
    int fd;

    snprintf(path, sizeof(path), "%s/genesis.json", grp.net);
    assert_non_null(before = slurp(path));
    /* This test process stands in for a running bexd. */
    snprintf(path, sizeof(path), "%s/node2/bexd.pid", grp.net);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    assert_int_equal(write(fd, pid, strlen(pid)), (ssize_t)strlen(pid));
    close(fd);
    assert_int_equal(RUN("init", "--dir", grp.net, "--force"), CLI_EXIT_FAIL);
    captured_has(grp.errout, "node2");
    captured_has(grp.errout, "is running");
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/genesis.json", grp.net);
    assert_non_null(after = slurp(path));
    assert_string_equal(before, after);
    assert_true(path_exists("%s/node2/node.json", grp.net));
    free(before);
    free(after);
}

/* Finds a base port with the next n ports free: binds them all, then lets go. */
static uint32_t free_port_run(uint32_t n)
{
    for (uint32_t attempt = 0; attempt < 50; attempt++) {
        uint32_t base = 20000 + (uint32_t)((getpid() * 7919u + attempt * 104729u) % 30000u);
        int fds[2 * GENESIS_NODES_MAX];
        uint32_t ok = 0;

        assert_true(n <= BEX_ARRAY_LEN(fds));
        for (; ok < n; ok++) {
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + ok))};
            int one = 1;
            inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
            fds[ok] = socket(AF_INET, SOCK_STREAM, 0);
            assert_true(fds[ok] >= 0);
            setsockopt(fds[ok], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(fds[ok], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                close(fds[ok]);
                break;
            }
        }
        for (uint32_t i = 0; i < ok; i++)
            close(fds[i]);
        if (ok == n)
            return base;
    }
    fail_msg("no run of %u free ports", n);
    return 0;
}

static void cli_testnet_force_replaces_with_more_nodes(void **state)
{
    (void)state;
    struct genesis *g = calloc(1, sizeof(*g));
    struct node_config c;
    char dir[160], path[256], base_arg[16], err[512];
    uint32_t base = free_port_run(10);
    json_t *doc, *node;
    char *txt;

    assert_non_null(g);
    /* An older network: a genesis, chain data, a node beyond the new count,
     * an agency that no longer exists, and a file that is not ours. */
    snprintf(dir, sizeof(dir), "%s/old", grp.root);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/genesis.json", dir);
    touch(path);
    snprintf(path, sizeof(path), "%s/node0", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/node0/data", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/node0/data/data.mdb", dir);
    touch(path);
    snprintf(path, sizeof(path), "%s/node9", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/agencies", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/agencies/gone.agency", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/notes.txt", dir);
    touch(path);

    snprintf(base_arg, sizeof(base_arg), "%u", base);
    assert_int_equal(RUN("init", "--dir", dir, "--force", "--nodes", "5", "--base-port", base_arg, "--chain-id",
                         "city-net.test", "--json"),
                     CLI_EXIT_OK);
    doc = json_load_file(grp.out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "chain_id")), "city-net.test");
    assert_int_equal(json_integer_value(json_object_get(doc, "scrypt_log2_n")), 12);
    snprintf(path, sizeof(path), "%s/passphrase", dir);
    assert_string_equal(json_string_value(json_object_get(doc, "passphrase_file")), path);
    assert_int_equal(json_array_size(json_object_get(doc, "nodes")), 5);
    node = json_array_get(json_object_get(doc, "nodes"), 4);
    assert_string_equal(json_string_value(json_object_get(node, "agency")), "city.agency4");
    snprintf(path, sizeof(path), "127.0.0.1:%u", base + 8);
    assert_string_equal(json_string_value(json_object_get(node, "p2p")), path);
    snprintf(path, sizeof(path), "http://127.0.0.1:%u", base + 9);
    assert_string_equal(json_string_value(json_object_get(node, "rpc")), path);
    json_decref(doc);
    load_genesis(g, dir);
    assert_string_equal(g->chain_id, "city-net.test");
    assert_int_equal(g->nodes_n, 5);
    assert_string_equal(g->agencies[4].id, "city.agency4");
    assert_int_equal(g->agencies[4].roles_n, 1);
    assert_string_equal(g->agencies[4].roles[0], "member");
    assert_string_equal(g->agencies[0].id, "city.traffic");
    for (uint32_t k = 0; k < 5; k++) {
        snprintf(path, sizeof(path), "%s/node%u/node.json", dir, k);
        if (config_load_node(&c, path, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        assert_int_equal(c.listen.port, base + 2 * k);
        assert_int_equal(c.rpc.port, base + 2 * k + 1);
        assert_int_equal(g->nodes[k].address.port, base + 2 * k);
        config_node_close(&c);
    }
    assert_false(path_exists("%s/node0/data/data.mdb", dir));
    assert_false(path_exists("%s/node9", dir));
    assert_false(path_exists("%s/agencies/gone.agency", dir));
    assert_true(path_exists("%s/agencies/city.agency4/officer3.key", dir));
    assert_true(path_exists("%s/notes.txt", dir));
    snprintf(path, sizeof(path), "%s/agencies.txt", dir);
    assert_non_null(txt = slurp(path));
    snprintf(path, sizeof(path), "city.agency4\tCity Agency 4\t4\thttp://127.0.0.1:%u\n", base + 9);
    assert_non_null(strstr(txt, path));
    free(txt);
    free(g);
}

static void cli_testnet_usage_errors_write_nothing(void **state)
{
    (void)state;
    char dir[160];

    snprintf(dir, sizeof(dir), "%s/never", grp.root);
    assert_int_equal(RUN("init"), CLI_EXIT_USAGE);
    captured_has(grp.errout, "--dir DIR is required");
    assert_int_equal(RUN("init", "--dir", dir, "--nodes", "3"), CLI_EXIT_USAGE);
    captured_has(grp.errout, "--nodes must be a whole number from 4 to 16");
    assert_int_equal(RUN("init", "--dir", dir, "--nodes", "17"), CLI_EXIT_USAGE);
    assert_int_equal(RUN("init", "--dir", dir, "--nodes", "-4"), CLI_EXIT_USAGE);
    assert_int_equal(RUN("init", "--dir", dir, "--nodes", "4x"), CLI_EXIT_USAGE);
    assert_int_equal(RUN("init", "--dir", dir, "--nodes"), CLI_EXIT_USAGE);
    /* Four nodes need ports up to base + 7. */
    assert_int_equal(RUN("init", "--dir", dir, "--base-port", "65529"), CLI_EXIT_USAGE);
    assert_int_equal(RUN("init", "--dir", dir, "--base-port", "0"), CLI_EXIT_USAGE);
    assert_int_equal(RUN("init", "--dir", dir, "--bogus"), CLI_EXIT_USAGE);
    captured_has(grp.errout, "unknown option '--bogus'");
    assert_int_equal(RUN("init", "--dir", dir, "extra"), CLI_EXIT_USAGE);
    captured_has(grp.errout, "unexpected argument 'extra'");
    assert_int_equal(RUN("init", "--dir", dir, "--chain-id", "Not_Valid"), CLI_EXIT_USAGE);
    captured_has(grp.errout, "chain_id");
    assert_int_equal(RUN("frobnicate"), CLI_EXIT_USAGE);
    captured_has(grp.errout, "unknown subcommand 'frobnicate'");
    assert_int_equal(run_cli(1, (const char *[]){"testnet"}), CLI_EXIT_USAGE);
    assert_int_equal(RUN("--help"), CLI_EXIT_OK);
    captured_has(grp.out, "usage: bexctl testnet init --dir DIR");
    assert_int_equal(RUN("init", "--help"), CLI_EXIT_OK);
    assert_false(path_exists("%s", dir));
}

static void cli_testnet_refuses_ports_in_use(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    char dir[160], path[256], base_arg[16];
    char *before, *after;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* A listening socket holds the RPC port of node 0. */
    assert_true(fd >= 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(base_arg, sizeof(base_arg), "%u", (unsigned)ntohs(sa.sin_port) - 1);
    snprintf(dir, sizeof(dir), "%s/busy", grp.root);
    assert_int_equal(RUN("init", "--dir", dir, "--base-port", base_arg), CLI_EXIT_FAIL);
    captured_has(grp.errout, "Address already in use");
    assert_false(path_exists("%s/genesis.json", dir));
    assert_false(path_exists("%s/passphrase", dir));

    /* --force deletes the old network only once the new one can be made. */
    snprintf(path, sizeof(path), "%s/genesis.json", grp.net);
    assert_non_null(before = slurp(path));
    assert_int_equal(RUN("init", "--dir", grp.net, "--force", "--base-port", base_arg), CLI_EXIT_FAIL);
    close(fd);
    assert_non_null(after = slurp(path));
    assert_string_equal(before, after);
    assert_true(path_exists("%s/node3/tls.pem", grp.net));
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_testnet_init_writes_a_network_that_loads),
        cmocka_unit_test(cli_testnet_refuses_an_existing_network),
        cmocka_unit_test(cli_testnet_force_refuses_while_a_node_runs),
        cmocka_unit_test(cli_testnet_force_replaces_with_more_nodes),
        cmocka_unit_test(cli_testnet_usage_errors_write_nothing),
        cmocka_unit_test(cli_testnet_refuses_ports_in_use),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
