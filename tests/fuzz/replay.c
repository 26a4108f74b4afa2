/*
 * replay.c: a main for a fuzz target without libFuzzer, so `make test` can
 * run every corpus with the normal compiler (and the sanitizers under
 * SAN=1).
 *
 *   <name>_replay PATH...
 *
 * Each PATH is a file or a directory; a directory contributes its regular
 * files (not its subdirectories) in name order. Every input goes through
 * LLVMFuzzerTestOneInput() once, in a buffer of exactly its size so the
 * sanitizers see any read past the end, after one empty input as libFuzzer
 * starts with. The name of each input is printed before it runs, so the
 * last name printed before a crash is the input that crashed. The last line
 * is "replayed N inputs". Exits 0, or 2 when a path cannot be read; a
 * failing input aborts the process.
 */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Larger files are not inputs of any target: refuse rather than allocate. */
#define REPLAY_FILE_BYTES_MAX ((size_t)16 << 20)

static int run_file(const char *path, size_t *count)
{
    struct stat st;
    FILE *f;
    uint8_t *buf;
    size_t len;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > REPLAY_FILE_BYTES_MAX) {
        fprintf(stderr, "replay: %s: not a regular file of at most %zu bytes\n", path, REPLAY_FILE_BYTES_MAX);
        return -1;
    }
    len = (size_t)st.st_size;
    if ((buf = malloc(len > 0 ? len : 1)) == NULL) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
    }
    if ((f = fopen(path, "rb")) == NULL || fread(buf, 1, len, f) != len) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    (*count)++;
    return 0;
}

static int only_files(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int run_dir(const char *dir, size_t *count)
{
    struct dirent **names;
    char path[4096];
    int n = scandir(dir, &names, only_files, alphasort);
    int rc = 0;

    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >= (int)sizeof(path)) {
            fprintf(stderr, "replay: %s/%s: path too long\n", dir, names[i]->d_name);
            rc = -1;
        }
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = run_file(path, count);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    static const uint8_t empty[1];

    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH...\n", argv[0]);
        return 2;
    }
    LLVMFuzzerTestOneInput(empty, 0);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int rc;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 2;
        }
        rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count);
        if (rc != 0)
            return 2;
    }
    printf("replayed %zu inputs\n", count);
    return 0;
}
