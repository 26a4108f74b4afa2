/* bexd: the node daemon every agency runs. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "bex.h"
#include "log.h"
#include "node.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: bexd --config FILE [--log-level error|warn|info|debug]\n"
               "       bexd --help\n"
               "\n"
               "Runs one bex node: PBFT consensus with the nodes of the genesis, the\n"
               "contract runtime, the LMDB store and the JSON-RPC server.\n"
               "\n"
               "  --config FILE      the node's config file (node.json); it names the\n"
               "                     genesis file, the data directory, the key files,\n"
               "                     the p2p and RPC addresses and the limits\n"
               "  --log-level LEVEL  overrides log_level of the config file\n"
               "  --help             this text\n"
               "\n"
               "The passphrase of the key files comes from passphrase_file in the\n"
               "config, else from BEX_PASSPHRASE, else from the terminal. SIGINT or\n"
               "SIGTERM stops the node cleanly. Logs go to stderr, one line per event.\n");
}

int main(int argc, char **argv)
{
    static struct node n;
    const char *config = NULL, *level = NULL;
    enum log_level lv;
    uv_loop_t loop;
    char err[1024] = "";
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            level = argv[++i];
        } else {
            fprintf(stderr, "bexd: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL) {
        fprintf(stderr, "bexd: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (level != NULL && log_level_parse(&lv, level) != 0) {
        fprintf(stderr, "bexd: --log-level must be error, warn, info or debug\n");
        return 2;
    }
    /* A peer or RPC client resetting its connection must not kill the node. */
    signal(SIGPIPE, SIG_IGN);
    /* A write past the file size limit must fail with EFBIG (the store reports a full disk), not kill the node. */
    signal(SIGXFSZ, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "bexd: cannot start the event loop\n");
        return 1;
    }
    rc = node_open(&n, &loop, config, err, sizeof err);
    if (rc == 0 && level != NULL)
        log_init(lv, (int)n.self);
    if (rc != 0) {
        fprintf(stderr, "bexd: %s\n", err[0] ? err : bex_strerror(rc));
        node_close(&n);
        uv_loop_close(&loop);
        return 1;
    }
    rc = node_run(&n);
    node_close(&n);
    uv_loop_close(&loop);
    return rc;
}
