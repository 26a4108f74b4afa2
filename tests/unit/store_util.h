/*
 * store_util.h: helpers shared by the store tests: a private temporary
 * directory per test and its removal.
 */
#ifndef BEX_STORE_UTIL_H
#define BEX_STORE_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_UTIL_PATH_BYTES 512

/* Creates a fresh directory under $TMPDIR (or /tmp); returns 0 or -1. */
static inline int store_util_tmpdir(char *path, size_t size)
{
    const char *base = getenv("TMPDIR");

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    if ((size_t)snprintf(path, size, "%s/bex-store-XXXXXX", base) >= size)
        return -1;
    return mkdtemp(path) != NULL ? 0 : -1;
}

static inline int store_util_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Removes a directory tree; returns 0 or -1. */
static inline int store_util_rmtree(const char *path)
{
    return nftw(path, store_util_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Monotonic time in microseconds. */
static inline double store_util_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

#endif
