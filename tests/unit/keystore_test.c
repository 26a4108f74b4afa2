#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bex.h"
#include "config.h"
#include "crypto.h"
#include "keystore.h"

/* The cheapest cost keystore_write accepts keeps each read near 2 ms. */
#define LOG2N KEYSTORE_SCRYPT_LOG2N_MIN
#define PASS "correct horse battery staple"

struct fixture {
    char dir[64];
    char path[128];
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    char err[512];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || crypto_init() != 0)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/bex-keystore-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof(fx->path), "%s/node.key", fx->dir);
    if (crypto_keygen(&fx->sk, &fx->pk) != 0)
        return -1;
    unsetenv(KEYSTORE_PASSPHRASE_ENV);
    *state = fx;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = nftw(fx->dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    crypto_close();
    return rc;
}

static char *slurp(const char *path, size_t *len)
{
    char *text;
    char err[256];
    assert_int_equal(config_file_read(&text, len, path, 1 << 16, err, sizeof(err)), 0);
    return text;
}

static void spit(const char *path, const void *data, size_t len)
{
    char err[256];
    assert_int_equal(config_file_write(path, data, len, 0600, true, err, sizeof(err)), 0);
}

/* Only the keystore itself may be in the directory: no temporary left over. */
static void assert_dir_holds_only(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        files++;
        assert_string_equal(e->d_name, name);
    }
    closedir(d);
    assert_int_equal(files, name != NULL ? 1 : 0);
}

static void keystore_round_trip(void **state)
{
    struct fixture *fx = *state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(keystore_read(&sk, &pk, fx->path, PASS, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(sk.b, fx->sk.b, sizeof(sk.b));
    assert_memory_equal(pk.b, fx->pk.b, sizeof(pk.b));
    assert_int_equal(keystore_read_public(&pk, fx->path, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(pk.b, fx->pk.b, sizeof(pk.b));
    assert_dir_holds_only(fx->dir, "node.key");

    /* The file states the cost it was made with, and the right key id. */
    json_error_t jerr;
    json_t *doc = json_load_file(fx->path, 0, &jerr);
    char id[CRYPTO_ID_HEX + 1];
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "scrypt_log2_n")), LOG2N);
    assert_int_equal(json_integer_value(json_object_get(doc, "scrypt_r")), 8);
    assert_int_equal(json_integer_value(json_object_get(doc, "scrypt_p")), 1);
    crypto_key_id(id, &fx->pk);
    assert_string_equal(json_string_value(json_object_get(doc, "key_id")), id);
    json_decref(doc);
}

static void keystore_file_is_private_and_holds_no_secret(void **state)
{
    struct fixture *fx = *state;
    struct stat st;
    char hex[2 * CRYPTO_SEC_BYTES + 1];
    size_t len;

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    char *text = slurp(fx->path, &len);
    assert_null(memmem(text, len, fx->sk.b, sizeof(fx->sk.b)));
    assert_int_equal(crypto_hex_encode(hex, sizeof(hex), fx->sk.b, sizeof(fx->sk.b)), 0);
    assert_null(memmem(text, len, hex, strlen(hex)));
    /* Half of the key in hex would be a leak too. */
    assert_null(memmem(text, len, hex, 32));
    assert_null(memmem(text, len, hex + 32, 32));
    assert_null(strstr(text, PASS));
    free(text);
}

static void keystore_wrong_passphrase(void **state)
{
    struct fixture *fx = *state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    const uint8_t zero[CRYPTO_SEC_BYTES] = {0};

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), 0);
    memset(&sk, 0xaa, sizeof(sk));
    assert_int_equal(keystore_read(&sk, &pk, fx->path, PASS "!", fx->err, sizeof(fx->err)), -BEX_EPASSPHRASE);
    assert_memory_equal(sk.b, zero, sizeof(zero));
    assert_non_null(strstr(fx->err, fx->path));
    assert_non_null(strstr(fx->err, "passphrase"));
    assert_int_equal(keystore_read(&sk, &pk, fx->path, "", fx->err, sizeof(fx->err)), -BEX_EPASSPHRASE);
}

static void keystore_refuses_to_overwrite(void **state)
{
    struct fixture *fx = *state;
    struct crypto_seckey sk2, back;
    struct crypto_pubkey pk2, pk;

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(crypto_keygen(&sk2, &pk2), 0);
    assert_int_equal(keystore_write(fx->path, &sk2, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), -BEX_EEXIST);
    assert_dir_holds_only(fx->dir, "node.key");
    assert_int_equal(keystore_read(&back, &pk, fx->path, PASS, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(back.b, fx->sk.b, sizeof(back.b));

    assert_int_equal(keystore_write(fx->path, &sk2, PASS, LOG2N, KEYSTORE_REPLACE, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(keystore_read(&back, &pk, fx->path, PASS, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(back.b, sk2.b, sizeof(back.b));
    assert_dir_holds_only(fx->dir, "node.key");
}

static void keystore_write_checks_arguments(void **state)
{
    struct fixture *fx = *state;
    struct crypto_seckey zero = {{0}};

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, KEYSTORE_SCRYPT_LOG2N_MIN - 1, 0, fx->err,
                                    sizeof(fx->err)),
                     -BEX_EINVAL);
    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, KEYSTORE_SCRYPT_LOG2N_MAX + 1, 0, fx->err,
                                    sizeof(fx->err)),
                     -BEX_EINVAL);
    assert_int_equal(keystore_write(fx->path, &fx->sk, "", LOG2N, 0, fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_int_equal(keystore_write(fx->path, &zero, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), -BEX_EINVAL);
    assert_dir_holds_only(fx->dir, NULL);

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/k", fx->dir);
    assert_int_equal(keystore_write(missing, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), -BEX_EIO);
    assert_non_null(strstr(fx->err, missing));
}

static void keystore_truncated_file_is_malformed(void **state)
{
    struct fixture *fx = *state;
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    size_t len;

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), 0);
    char *text = slurp(fx->path, &len);
    /* Every prefix that stops before the closing brace. */
    size_t brace = len;
    while (brace > 0 && text[brace - 1] != '}')
        brace--;
    assert_true(brace > 0);
    for (size_t cut = 0; cut < brace; cut++) {
        spit(fx->path, text, cut);
        assert_int_equal(keystore_read(&sk, &pk, fx->path, PASS, fx->err, sizeof(fx->err)), -BEX_EDECODE);
        assert_non_null(strstr(fx->err, fx->path));
    }
    free(text);

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/absent.key", fx->dir);
    assert_int_equal(keystore_read(&sk, &pk, missing, PASS, fx->err, sizeof(fx->err)), -BEX_EIO);
    assert_non_null(strstr(fx->err, missing));

    /* Far too large to be a keystore. */
    char *big = malloc(KEYSTORE_FILE_BYTES_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', KEYSTORE_FILE_BYTES_MAX + 1);
    spit(fx->path, big, KEYSTORE_FILE_BYTES_MAX + 1);
    free(big);
    assert_int_equal(keystore_read(&sk, &pk, fx->path, PASS, fx->err, sizeof(fx->err)), -BEX_EDECODE);
}

/* Rewrites one or two fields of the written keystore and reads it back;
 * a NULL value deletes the field. */
static int read_with2(struct fixture *fx, const char *field, json_t *value, const char *field2, json_t *value2)
{
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    json_error_t jerr;
    char err[256];

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, KEYSTORE_REPLACE, err, sizeof(err)), 0);
    json_t *doc = json_load_file(fx->path, 0, &jerr);
    assert_non_null(doc);
    if (value == NULL)
        assert_int_equal(json_object_del(doc, field), 0);
    else
        assert_int_equal(json_object_set_new(doc, field, value), 0);
    if (field2 != NULL)
        assert_int_equal(json_object_set_new(doc, field2, value2), 0);
    char *text = json_dumps(doc, 0);
    assert_non_null(text);
    spit(fx->path, text, strlen(text));
    free(text);
    json_decref(doc);
    int rc = keystore_read(&sk, &pk, fx->path, PASS, fx->err, sizeof(fx->err));
    if (rc != 0)
        assert_non_null(strstr(fx->err, fx->path));
    return rc;
}

static int read_with(struct fixture *fx, const char *field, json_t *value)
{
    return read_with2(fx, field, value, NULL, NULL);
}

static void keystore_garbled_fields_are_refused(void **state)
{
    struct fixture *fx = *state;
    static const char *const required[] = {"version", "kind", "public_key", "key_id", "kdf", "scrypt_log2_n",
                                           "scrypt_r", "scrypt_p", "salt", "cipher", "nonce", "ciphertext"};

    for (size_t i = 0; i < BEX_ARRAY_LEN(required); i++) {
        assert_int_equal(read_with(fx, required[i], NULL), -BEX_EDECODE);
        assert_non_null(strstr(fx->err, required[i]));
    }
    assert_int_equal(read_with(fx, "comment", json_string("x")), -BEX_EDECODE);
    assert_non_null(strstr(fx->err, "comment: unknown field"));
    assert_int_equal(read_with(fx, "version", json_integer(2)), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "version", json_string("1")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "kind", json_string("ed25519")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "kdf", json_string("pbkdf2")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "cipher", json_string("aes-128-gcm")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "scrypt_log2_n", json_integer(40)), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "scrypt_r", json_integer(65)), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "scrypt_p", json_integer(0)), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "scrypt_log2_n", json_integer(KEYSTORE_SCRYPT_LOG2N_MIN - 1)), -BEX_EDECODE);
    /* Costs a file could use to make the reader allocate gigabytes. */
    assert_int_equal(read_with2(fx, "scrypt_r", json_integer(16), "scrypt_log2_n", json_integer(20)), -BEX_EDECODE);
    assert_non_null(strstr(fx->err, "MiB"));
    assert_int_equal(read_with(fx, "salt", json_string("00")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "nonce", json_string("zz")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "ciphertext", json_string("")), -BEX_EDECODE);
    assert_int_equal(read_with(fx, "key_id", json_string("0000000000000000000000000000000000000000")),
                     -BEX_EDECODE);
    assert_int_equal(read_with(fx, "public_key",
                               json_string("020000000000000000000000000000000000000000000000000000000000000000")),
                     -BEX_EDECODE);
    /* A different r changes the derived key: the passphrase no longer fits. */
    assert_int_equal(read_with(fx, "scrypt_r", json_integer(4)), -BEX_EPASSPHRASE);
}

static void keystore_sealed_bytes_are_authenticated(void **state)
{
    struct fixture *fx = *state;
    struct crypto_seckey other_sk;
    struct crypto_pubkey other_pk;
    char hex[2 * (CRYPTO_SEC_BYTES + CRYPTO_AEAD_TAG_BYTES) + 1];
    char id[CRYPTO_ID_HEX + 1];
    json_error_t jerr;
    size_t n;

    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, 0, fx->err, sizeof(fx->err)), 0);
    json_t *doc = json_load_file(fx->path, 0, &jerr);
    assert_non_null(doc);
    char ct[sizeof(hex)];
    snprintf(ct, sizeof(ct), "%s", json_string_value(json_object_get(doc, "ciphertext")));
    json_decref(doc);

    /* Each flipped bit of ciphertext or tag is caught. */
    for (size_t i = 0; i < CRYPTO_SEC_BYTES + CRYPTO_AEAD_TAG_BYTES; i += 5) {
        uint8_t b[CRYPTO_SEC_BYTES + CRYPTO_AEAD_TAG_BYTES];
        assert_int_equal(crypto_hex_decode(b, sizeof(b), &n, ct), 0);
        b[i] ^= 0x10;
        assert_int_equal(crypto_hex_encode(hex, sizeof(hex), b, sizeof(b)), 0);
        assert_int_equal(read_with(fx, "ciphertext", json_string(hex)), -BEX_EPASSPHRASE);
    }

    /* Another valid public key with a matching key id: the associated data
     * binds the ciphertext to its own key. */
    assert_int_equal(crypto_keygen(&other_sk, &other_pk), 0);
    crypto_key_id(id, &other_pk);
    crypto_pubkey_to_hex(hex, &other_pk);
    assert_int_equal(keystore_write(fx->path, &fx->sk, PASS, LOG2N, KEYSTORE_REPLACE, fx->err, sizeof(fx->err)), 0);
    doc = json_load_file(fx->path, 0, &jerr);
    assert_non_null(doc);
    json_object_set_new(doc, "public_key", json_string(hex));
    json_object_set_new(doc, "key_id", json_string(id));
    char *text = json_dumps(doc, 0);
    spit(fx->path, text, strlen(text));
    free(text);
    json_decref(doc);
    struct crypto_seckey sk;
    struct crypto_pubkey pk;
    assert_int_equal(keystore_read(&sk, &pk, fx->path, PASS, fx->err, sizeof(fx->err)), -BEX_EPASSPHRASE);
    /* Its public part still reads: it is only authenticated on decryption. */
    assert_int_equal(keystore_read_public(&pk, fx->path, fx->err, sizeof(fx->err)), 0);
    assert_memory_equal(pk.b, other_pk.b, sizeof(pk.b));
}

static void keystore_passphrase_from_environment(void **state)
{
    (void)state;
    char buf[KEYSTORE_PASSPHRASE_MAX + 1];
    char small[4];
    char err[256];

    assert_int_equal(setenv(KEYSTORE_PASSPHRASE_ENV, "from env", 1), 0);
    assert_int_equal(keystore_passphrase(buf, sizeof(buf), "Passphrase: ", true, err, sizeof(err)), 0);
    assert_string_equal(buf, "from env");
    assert_int_equal(keystore_passphrase(small, sizeof(small), "Passphrase: ", false, err, sizeof(err)), -BEX_ELIMIT);
    assert_non_null(strstr(err, KEYSTORE_PASSPHRASE_ENV));
    for (size_t i = 0; i < sizeof(small); i++)
        assert_int_equal(small[i], 0);
    assert_int_equal(setenv(KEYSTORE_PASSPHRASE_ENV, "", 1), 0);
    assert_int_equal(keystore_passphrase(buf, sizeof(buf), "Passphrase: ", false, err, sizeof(err)), -BEX_EINVAL);
    assert_non_null(strstr(err, "empty"));
    unsetenv(KEYSTORE_PASSPHRASE_ENV);
}

static void keystore_passphrase_from_file(void **state)
{
    struct fixture *fx = *state;
    char path[160];
    char buf[16];
    char err[256];
    static const struct {
        const char *content;
        int rc;
        const char *want;
    } cases[] = {
        {"secret\n", 0, "secret"},       {"secret\r\n", 0, "secret"},   {"secret", 0, "secret"},
        {"two\nlines\n", 0, "two\nlines"}, {"secret\n\n", 0, "secret\n"}, {"\n", -BEX_EINVAL, NULL},
        {"", -BEX_EINVAL, NULL},         {"fifteen chars!!", 0, "fifteen chars!!"},
        {"sixteen chars!!!", -BEX_ELIMIT, NULL},
    };

    snprintf(path, sizeof(path), "%s/pass.txt", fx->dir);
    for (size_t i = 0; i < BEX_ARRAY_LEN(cases); i++) {
        spit(path, cases[i].content, strlen(cases[i].content));
        assert_int_equal(keystore_passphrase_file(buf, sizeof(buf), path, err, sizeof(err)), cases[i].rc);
        if (cases[i].rc == 0)
            assert_string_equal(buf, cases[i].want);
        else
            assert_non_null(strstr(err, path));
    }
    spit(path, "a\0b", 3);
    assert_int_equal(keystore_passphrase_file(buf, sizeof(buf), path, err, sizeof(err)), -BEX_EINVAL);
    unlink(path);
    assert_int_equal(keystore_passphrase_file(buf, sizeof(buf), path, err, sizeof(err)), -BEX_EIO);
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(keystore_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_file_is_private_and_holds_no_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_wrong_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_refuses_to_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_write_checks_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_truncated_file_is_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_garbled_fields_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_sealed_bytes_are_authenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_passphrase_from_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(keystore_passphrase_from_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
