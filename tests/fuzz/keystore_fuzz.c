/*
 * keystore_fuzz.c: the keystore file readers on arbitrary file contents.
 *
 * The input is written to a file in a scratch directory made once per
 * process and read three ways:
 *  - keystore_read_public(), which parses and checks without a passphrase;
 *  - keystore_read() with the passphrase of the seed corpus, which must
 *    agree with it: the same refusal for a file that does not parse, and on
 *    success the same public key and a secret key that derives it;
 *  - keystore_passphrase_file(), checked against the rule its header states
 *    (the whole file minus one trailing newline, not empty, no NUL byte).
 *
 * The scrypt cost is input: the file declares N = 2^scrypt_log2_n, r and p,
 * and the keystore only caps the memory (1.25 GiB), which is right for an
 * operator's key but lets one input cost seconds of scrypt and teach the
 * fuzzer nothing about the parser. So keystore_read() is skipped for inputs
 * that declare more work than log2 N = 12 with r * p = 8; the parser still
 * sees them through keystore_read_public(). The seeds use log2 N = 10.
 */
#include "fuzz_util.h"
#include "keystore.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh); above
 * KEYSTORE_FILE_BYTES_MAX, so the size refusal is reached too. */
#define FUZZ_MAX_LEN 5000

#define LOG2N_CHEAP 12
#define RP_CHEAP 8
/* A small buffer, so the length limit of keystore_passphrase_file is reached. */
#define PASSPHRASE_BUF 24

/* The integer member name of doc, or fallback when it is absent or not an integer. */
static json_int_t int_member(json_t *doc, const char *name, json_int_t fallback)
{
    json_t *v = json_object_get(doc, name);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

/*
 * True unless the input parses as the keystore parser parses it and
 * declares, within the ranges the keystore accepts (r and p in [1, 64]), an
 * scrypt cost above the budget. A file declaring anything else is refused
 * before scrypt runs.
 */
static bool cheap(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    bool ok = true;

    if (json_is_object(doc)) {
        json_int_t log2n = int_member(doc, "scrypt_log2_n", 0);
        json_int_t r = int_member(doc, "scrypt_r", 0);
        json_int_t p = int_member(doc, "scrypt_p", 0);
        bool declared = log2n >= KEYSTORE_SCRYPT_LOG2N_MIN && log2n <= KEYSTORE_SCRYPT_LOG2N_MAX && r >= 1 &&
                        r <= 64 && p >= 1 && p <= 64;
        ok = !declared || (log2n <= LOG2N_CHEAP && r * p <= RP_CHEAP);
    }
    json_decref(doc);
    return ok;
}

static bool zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

static void check_keystore(const char *path, const uint8_t *data, size_t size)
{
    struct crypto_seckey sk;
    struct crypto_pubkey pk, pk_read, derived;
    char err[512];

    err[0] = '\0';
    int rc_public = keystore_read_public(&pk, path, err, sizeof(err));
    if (rc_public != 0 && rc_public != -BEX_EDECODE)
        fuzz_fail("keystore_read_public returned %s: %s", bex_errname(rc_public), err);
    FUZZ_CHECK(rc_public == 0 || err[0] != '\0');
    if (!cheap(data, size))
        return;

    memset(&sk, 0xa5, sizeof(sk));
    int rc = keystore_read(&sk, &pk_read, path, FUZZ_PASSPHRASE, err, sizeof(err));
    if (rc != 0 && rc != -BEX_EDECODE && rc != -BEX_EPASSPHRASE && rc != -BEX_ECRYPTO)
        fuzz_fail("keystore_read returned %s: %s", bex_errname(rc), err);
    if (rc_public != 0 && rc != rc_public)
        fuzz_fail("keystore_read_public refused with %s but keystore_read returned %s", bex_errname(rc_public),
                  bex_errname(rc));
    if (rc != 0) {
        FUZZ_CHECK(zero(&sk, sizeof(sk)));
        return;
    }
    FUZZ_CHECK(rc_public == 0 && memcmp(pk.b, pk_read.b, sizeof(pk.b)) == 0);
    FUZZ_CHECK(crypto_pubkey_of(&derived, &sk) == 0 && memcmp(derived.b, pk.b, sizeof(pk.b)) == 0);
    crypto_wipe(&sk, sizeof(sk));
}

static void check_passphrase_file(const char *path, const uint8_t *data, size_t size)
{
    char buf[PASSPHRASE_BUF];
    char err[512];
    size_t n = size;

    if (n > 0 && data[n - 1] == '\n') {
        n--;
        if (n > 0 && data[n - 1] == '\r')
            n--;
    }
    bool empty = n == 0;
    bool nul = memchr(data, '\0', n) != NULL;
    bool long_ = n > sizeof(buf) - 1;

    int rc = keystore_passphrase_file(buf, sizeof(buf), path, err, sizeof(err));
    if (rc == 0) {
        if (empty || nul || long_)
            fuzz_fail("passphrase file of %zu bytes accepted, expected a refusal (%d%d%d)", size, empty, nul, long_);
        FUZZ_CHECK(strlen(buf) == n && memcmp(buf, data, n) == 0);
        return;
    }
    bool allowed = (rc == -BEX_EINVAL && (empty || nul)) || (rc == -BEX_ELIMIT && long_);
    if (!allowed)
        fuzz_fail("passphrase file of %zu bytes (%zu without the newline): %s (%s), expected (%d%d%d)", size, n,
                  bex_errname(rc), err, empty, nul, long_);
    FUZZ_CHECK(zero(buf, sizeof(buf)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[FUZZ_PATH_MAX];

    if (size > FUZZ_MAX_LEN)
        return 0;
    if (path[0] == '\0') {
        fuzz_crypto_init();
        fuzz_path(path, "key.json");
    }
    fuzz_write_file(path, data, size);
    check_keystore(path, data, size);
    check_passphrase_file(path, data, size);
    return 0;
}
