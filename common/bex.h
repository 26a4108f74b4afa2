/*
 * bex.h: what every module of bex shares: the error table, assertions, a
 * few attribute macros and the big-endian integers of the wire and the store. Nothing here allocates or touches the outside world,
 * so consensus/ and contracts/ may include it.
 */
#ifndef BEX_H
#define BEX_H

#include <stddef.h>
#include <stdint.h>

#define BEX_MUST_USE __attribute__((warn_unused_result))
#define BEX_UNUSED __attribute__((unused))
#define BEX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/*
 * Error codes. Every fallible function returns 0 or one of these, negated.
 * The numbers are protocol where they reach a receipt or the RPC: never
 * renumber one, only append.
 */
enum bex_err {
    BEX_OK = 0,
    BEX_EINVAL = 1,      /* malformed argument or input */
    BEX_ENOMEM = 2,      /* allocation failed */
    BEX_EIO = 3,         /* system I/O failure */
    BEX_ENOTFOUND = 4,   /* no such key, block, tx, ... */
    BEX_EEXIST = 5,      /* already exists */
    BEX_ELIMIT = 6,      /* a size or count limit was exceeded */
    BEX_EDECODE = 7,     /* bytes do not decode as the expected message */
    BEX_ESIG = 8,        /* a signature does not verify */
    BEX_EPERM = 9,       /* caller is not allowed to do this */
    BEX_ESTATE = 10,     /* operation not valid in the current state */
    BEX_EMAPFULL = 11,   /* LMDB map is full; store refuses writes */
    BEX_ECORRUPT = 12,   /* stored data is inconsistent */
    BEX_ENONCE = 13,     /* nonce already used or out of order */
    BEX_EFULL = 14,      /* a queue or pool is at capacity */
    BEX_EBUDGET = 15,    /* contract work budget exhausted */
    BEX_ECRYPTO = 16,    /* cryptographic failure (decrypt, derive, ...) */
    BEX_EEXPIRED = 17,   /* grant or request past its expiry */
    BEX_EREFUSED = 18,   /* sharing rules refuse the request */
    BEX_ETHRESHOLD = 19, /* fewer officer signatures than the threshold */
    BEX_ECHAIN = 20,     /* wrong chain id */
    BEX_EUNKNOWN = 21,   /* unknown contract, method or sender */
    BEX_ETIMEOUT = 22,   /* deadline passed */
    BEX_EPASSPHRASE = 23, /* keystore passphrase is wrong */
    BEX_ENOSPC = 24,     /* disk full */
    BEX_ECLOSED = 25,    /* object or connection closed */
    BEX_E_COUNT
};

/* Returns a static, human-readable text for a code (positive or negative). */
const char *bex_strerror(int code);

/* Returns the stable short name of a code, e.g. "EPERM", for logs and JSON. */
const char *bex_errname(int code);

/*
 * BEX_ASSERT stays on in release builds: a crash is a liveness fault, a
 * wrong commit is a safety fault.
 */
void bex_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define BEX_ASSERT(e) ((e) ? (void)0 : bex_assert_fail(#e, __FILE__, __LINE__))

/* Whole-state checks, compiled in only for tests and SAN=1 builds. */
#ifdef BEX_CHECKS
#define BEX_CHECK(e) BEX_ASSERT(e)
#else
#define BEX_CHECK(e) ((void)0)
#endif

#define BEX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Big-endian integers, as the wire frames and the store's keys hold them. */
static inline void bex_be32_put(uint8_t b[4], uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static inline uint32_t bex_be32_get(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline void bex_be64_put(uint8_t b[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static inline uint64_t bex_be64_get(const uint8_t b[8])
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

#endif
