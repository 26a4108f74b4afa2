/* bexd: the node daemon. */
#include "bex.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: bexd --config FILE [--log-level LEVEL]\n"
               "       bexd --help\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "bexd: the node is not built yet\n");
    usage(stderr);
    return 2;
}
