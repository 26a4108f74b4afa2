/*
 * keystore.c: scrypt + AES-256-GCM key files and passphrase input.
 */
#include "keystore.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define KIND "secp256k1"
#define KDF "scrypt"
#define CIPHER "aes-256-gcm"
#define SEALED_BYTES (CRYPTO_SEC_BYTES + CRYPTO_AEAD_TAG_BYTES)

static const char *const fields[] = {"version", "kind", "public_key", "key_id", "kdf", "scrypt_log2_n",
                                     "scrypt_r", "scrypt_p", "salt", "cipher", "nonce", "ciphertext"};

/* Everything of a keystore file except the secret, decoded and checked. */
struct sealed {
    struct crypto_pubkey pk;
    int log2_n;
    int r;
    int p;
    uint8_t salt[KEYSTORE_SALT_BYTES];
    uint8_t nonce[CRYPTO_AEAD_NONCE_BYTES];
    uint8_t ct[SEALED_BYTES];
};

BEX_PRINTF(3, 4) static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static int derive(uint8_t key[CRYPTO_AEAD_KEY_BYTES], const char *passphrase, const struct sealed *s)
{
    uint64_t n = (uint64_t)1 << s->log2_n;

    /* OpenSSL refuses parameters needing more than maxmem bytes. */
    if (EVP_PBE_scrypt(passphrase, strlen(passphrase), s->salt, sizeof(s->salt), n, (uint64_t)s->r,
                       (uint64_t)s->p, KEYSTORE_SCRYPT_MEM_MAX, key, CRYPTO_AEAD_KEY_BYTES) != 1) {
        OPENSSL_cleanse(key, CRYPTO_AEAD_KEY_BYTES);
        return -BEX_ECRYPTO;
    }
    return 0;
}

static void hex_field(char *out, size_t out_size, const uint8_t *b, size_t len)
{
    int rc = crypto_hex_encode(out, out_size, b, len);
    BEX_ASSERT(rc == 0);
}

int keystore_write(const char *path, const struct crypto_seckey *sk, const char *passphrase, int scrypt_log2_n,
                   unsigned flags, char *err, size_t err_size)
{
    struct sealed s = {.log2_n = scrypt_log2_n, .r = KEYSTORE_SCRYPT_R, .p = KEYSTORE_SCRYPT_P};
    uint8_t key[CRYPTO_AEAD_KEY_BYTES];
    char pub_hex[CRYPTO_PUB_HEX + 1], id[CRYPTO_ID_HEX + 1];
    char salt_hex[2 * KEYSTORE_SALT_BYTES + 1], nonce_hex[2 * CRYPTO_AEAD_NONCE_BYTES + 1];
    char ct_hex[2 * SEALED_BYTES + 1];
    json_t *doc = NULL;
    char *text = NULL;
    int rc;

    if (scrypt_log2_n < KEYSTORE_SCRYPT_LOG2N_MIN || scrypt_log2_n > KEYSTORE_SCRYPT_LOG2N_MAX) {
        set_err(err, err_size, "%s: scrypt log2(N) %d is outside [%d, %d]", path, scrypt_log2_n,
                KEYSTORE_SCRYPT_LOG2N_MIN, KEYSTORE_SCRYPT_LOG2N_MAX);
        rc = -BEX_EINVAL;
        goto fail;
    }
    if (passphrase[0] == '\0') {
        set_err(err, err_size, "%s: empty passphrase", path);
        rc = -BEX_EINVAL;
        goto fail;
    }
    if (crypto_pubkey_of(&s.pk, sk) != 0) {
        set_err(err, err_size, "%s: not a valid secp256k1 secret key", path);
        rc = -BEX_EINVAL;
        goto fail;
    }
    if ((rc = crypto_random(s.salt, sizeof(s.salt))) != 0 || (rc = crypto_random(s.nonce, sizeof(s.nonce))) != 0) {
        set_err(err, err_size, "%s: no randomness", path);
        goto fail;
    }
    if ((rc = derive(key, passphrase, &s)) != 0) {
        set_err(err, err_size, "%s: scrypt failed", path);
        goto fail;
    }
    /* The key is fresh per file (random salt), so the random nonce is used once. */
    if ((rc = crypto_aead_seal(s.ct, key, s.nonce, s.pk.b, sizeof(s.pk.b), sk->b, sizeof(sk->b))) != 0) {
        set_err(err, err_size, "%s: encryption failed", path);
        goto fail;
    }

    crypto_pubkey_to_hex(pub_hex, &s.pk);
    crypto_key_id(id, &s.pk);
    hex_field(salt_hex, sizeof(salt_hex), s.salt, sizeof(s.salt));
    hex_field(nonce_hex, sizeof(nonce_hex), s.nonce, sizeof(s.nonce));
    hex_field(ct_hex, sizeof(ct_hex), s.ct, sizeof(s.ct));
    doc = json_pack("{s:i, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:s}", "version", KEYSTORE_VERSION,
                    "kind", KIND, "public_key", pub_hex, "key_id", id, "kdf", KDF, "scrypt_log2_n", s.log2_n,
                    "scrypt_r", s.r, "scrypt_p", s.p, "salt", salt_hex, "cipher", CIPHER, "nonce", nonce_hex,
                    "ciphertext", ct_hex);
    if (doc == NULL || (text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL) {
        set_err(err, err_size, "%s: out of memory", path);
        rc = -BEX_ENOMEM;
        goto fail;
    }
    /* The text holds no secret: only public key, parameters and ciphertext. */
    size_t len = strlen(text);
    text[len] = '\n';
    rc = config_file_write(path, text, len + 1, 0600, (flags & KEYSTORE_REPLACE) != 0, err, err_size);
fail:
    OPENSSL_cleanse(key, sizeof(key));
    free(text);
    json_decref(doc);
    return rc;
}

/* ---- reading ---- */

static int get_string(const char **out, json_t *doc, const char *path, const char *name, char *err, size_t err_size)
{
    json_t *v = json_object_get(doc, name);

    if (v == NULL) {
        set_err(err, err_size, "%s: %s: missing", path, name);
        return -BEX_EDECODE;
    }
    if (!json_is_string(v)) {
        set_err(err, err_size, "%s: %s: not a string", path, name);
        return -BEX_EDECODE;
    }
    *out = json_string_value(v);
    return 0;
}

static int get_int(int *out, json_t *doc, const char *path, const char *name, int min, int max, char *err,
                   size_t err_size)
{
    json_t *v = json_object_get(doc, name);

    if (v == NULL) {
        set_err(err, err_size, "%s: %s: missing", path, name);
        return -BEX_EDECODE;
    }
    if (!json_is_integer(v)) {
        set_err(err, err_size, "%s: %s: not an integer", path, name);
        return -BEX_EDECODE;
    }
    json_int_t i = json_integer_value(v);
    if (i < min || i > max) {
        set_err(err, err_size, "%s: %s: %lld is outside [%d, %d]", path, name, (long long)i, min, max);
        return -BEX_EDECODE;
    }
    *out = (int)i;
    return 0;
}

static int get_bytes(uint8_t *out, size_t len, json_t *doc, const char *path, const char *name, char *err,
                     size_t err_size)
{
    const char *hex;
    size_t n;
    int rc;

    if ((rc = get_string(&hex, doc, path, name, err, err_size)) != 0)
        return rc;
    if (strlen(hex) != 2 * len || crypto_hex_decode(out, len, &n, hex) != 0) {
        set_err(err, err_size, "%s: %s: expected %zu hex digits", path, name, 2 * len);
        return -BEX_EDECODE;
    }
    return 0;
}

static int expect_string(json_t *doc, const char *path, const char *name, const char *want, char *err,
                         size_t err_size)
{
    const char *s;
    int rc;

    if ((rc = get_string(&s, doc, path, name, err, err_size)) != 0)
        return rc;
    if (strcmp(s, want) != 0) {
        set_err(err, err_size, "%s: %s: \"%s\" is not supported (expected \"%s\")", path, name, s, want);
        return -BEX_EDECODE;
    }
    return 0;
}

/* Parses and checks everything but the ciphertext's contents. */
static int load(struct sealed *s, const char *path, char *err, size_t err_size)
{
    char *text = NULL;
    size_t len;
    json_t *doc = NULL;
    json_error_t jerr;
    const char *key, *id_hex;
    json_t *value;
    char id[CRYPTO_ID_HEX + 1];
    int version;
    int rc;

    if ((rc = config_file_read(&text, &len, path, KEYSTORE_FILE_BYTES_MAX, err, err_size)) != 0) {
        if (rc == -BEX_ELIMIT)
            rc = -BEX_EDECODE;
        goto fail;
    }
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        set_err(err, err_size, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        rc = -BEX_EDECODE;
        goto fail;
    }
    if (!json_is_object(doc)) {
        set_err(err, err_size, "%s: not a JSON object", path);
        rc = -BEX_EDECODE;
        goto fail;
    }
    json_object_foreach(doc, key, value)
    {
        size_t i = 0;
        while (i < BEX_ARRAY_LEN(fields) && strcmp(key, fields[i]) != 0)
            i++;
        if (i == BEX_ARRAY_LEN(fields)) {
            set_err(err, err_size, "%s: %s: unknown field", path, key);
            rc = -BEX_EDECODE;
            goto fail;
        }
    }
    if ((rc = get_int(&version, doc, path, "version", KEYSTORE_VERSION, KEYSTORE_VERSION, err, err_size)) != 0 ||
        (rc = expect_string(doc, path, "kind", KIND, err, err_size)) != 0 ||
        (rc = expect_string(doc, path, "kdf", KDF, err, err_size)) != 0 ||
        (rc = expect_string(doc, path, "cipher", CIPHER, err, err_size)) != 0)
        goto fail;
    if ((rc = get_bytes(s->pk.b, sizeof(s->pk.b), doc, path, "public_key", err, err_size)) != 0)
        goto fail;
    if (crypto_pubkey_check(&s->pk) != 0) {
        set_err(err, err_size, "%s: public_key: not a valid secp256k1 point", path);
        rc = -BEX_EDECODE;
        goto fail;
    }
    if ((rc = get_string(&id_hex, doc, path, "key_id", err, err_size)) != 0)
        goto fail;
    crypto_key_id(id, &s->pk);
    if (strcmp(id, id_hex) != 0) {
        set_err(err, err_size, "%s: key_id: does not match public_key (expected %s)", path, id);
        rc = -BEX_EDECODE;
        goto fail;
    }
    if ((rc = get_int(&s->log2_n, doc, path, "scrypt_log2_n", KEYSTORE_SCRYPT_LOG2N_MIN, KEYSTORE_SCRYPT_LOG2N_MAX,
                      err, err_size)) != 0 ||
        (rc = get_int(&s->r, doc, path, "scrypt_r", 1, 64, err, err_size)) != 0 ||
        (rc = get_int(&s->p, doc, path, "scrypt_p", 1, 64, err, err_size)) != 0)
        goto fail;
    /* A file may not make us allocate more than the cap: the costs are input. */
    if ((uint64_t)128 * (uint64_t)s->r * (((uint64_t)1 << s->log2_n) + (uint64_t)s->p + 2) >
        KEYSTORE_SCRYPT_MEM_MAX) {
        set_err(err, err_size, "%s: scrypt parameters need more than %llu MiB", path,
                (unsigned long long)(KEYSTORE_SCRYPT_MEM_MAX >> 20));
        rc = -BEX_EDECODE;
        goto fail;
    }
    if ((rc = get_bytes(s->salt, sizeof(s->salt), doc, path, "salt", err, err_size)) != 0 ||
        (rc = get_bytes(s->nonce, sizeof(s->nonce), doc, path, "nonce", err, err_size)) != 0 ||
        (rc = get_bytes(s->ct, sizeof(s->ct), doc, path, "ciphertext", err, err_size)) != 0)
        goto fail;
fail:
    json_decref(doc);
    free(text);
    return rc;
}

int keystore_read_public(struct crypto_pubkey *pk, const char *path, char *err, size_t err_size)
{
    struct sealed s;
    int rc = load(&s, path, err, err_size);

    if (rc == 0)
        *pk = s.pk;
    return rc;
}

int keystore_read(struct crypto_seckey *sk, struct crypto_pubkey *pk, const char *path, const char *passphrase,
                  char *err, size_t err_size)
{
    struct sealed s;
    struct crypto_pubkey derived;
    uint8_t key[CRYPTO_AEAD_KEY_BYTES];
    int rc;

    if ((rc = load(&s, path, err, err_size)) != 0)
        goto fail;
    if ((rc = derive(key, passphrase, &s)) != 0) {
        set_err(err, err_size, "%s: scrypt failed", path);
        goto fail;
    }
    if (crypto_aead_open(sk->b, key, s.nonce, s.pk.b, sizeof(s.pk.b), s.ct, sizeof(s.ct)) != 0) {
        set_err(err, err_size, "%s: wrong passphrase (or the file was altered)", path);
        rc = -BEX_EPASSPHRASE;
        goto fail;
    }
    /* Authentic bytes that are not the key of public_key were written by
     * someone holding the passphrase; refuse them all the same. */
    if (crypto_pubkey_of(&derived, sk) != 0 || !crypto_memeq(derived.b, s.pk.b, sizeof(s.pk.b))) {
        set_err(err, err_size, "%s: the sealed secret key does not match public_key", path);
        rc = -BEX_EDECODE;
        goto fail;
    }
    *pk = s.pk;
fail:
    if (rc != 0)
        OPENSSL_cleanse(sk, sizeof(*sk));
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* ---- passphrases ---- */

/* Reads one line from the terminal with echo off. Returns 0, -BEX_ELIMIT or -BEX_EIO. */
static int tty_line(char *buf, size_t size, int fd, const char *prompt)
{
    struct termios old, quiet;
    size_t n = 0;
    bool too_long = false;
    int rc = 0;
    char c;

    if (tcgetattr(fd, &old) != 0)
        return -BEX_EIO;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    if (write(fd, prompt, strlen(prompt)) < 0 || tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        return -BEX_EIO;
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = -BEX_EIO;
            break;
        }
        if (c == '\n')
            break;
        /* Keep reading past the limit so the rest of the line is consumed. */
        if (n + 1 < size)
            buf[n++] = c;
        else
            too_long = true;
    }
    buf[n] = '\0';
    c = 0;
    if (tcsetattr(fd, TCSAFLUSH, &old) != 0 && rc == 0)
        rc = -BEX_EIO;
    if (write(fd, "\n", 1) < 0 && rc == 0)
        rc = -BEX_EIO;
    if (rc == 0 && too_long)
        rc = -BEX_ELIMIT;
    return rc;
}

static int from_terminal(char *buf, size_t size, const char *prompt, bool confirm, char *err, size_t err_size)
{
    char again[KEYSTORE_PASSPHRASE_MAX + 1];
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int rc;

    if (fd < 0) {
        set_err(err, err_size, "no terminal to ask for a passphrase; set %s", KEYSTORE_PASSPHRASE_ENV);
        return -BEX_EIO;
    }
    if ((rc = tty_line(buf, size, fd, prompt)) != 0)
        goto fail;
    if (confirm && (rc = tty_line(again, sizeof(again), fd, "Repeat passphrase: ")) != 0)
        goto fail;
    if (confirm && strcmp(buf, again) != 0) {
        set_err(err, err_size, "the passphrases do not match");
        rc = -BEX_EINVAL;
        goto fail;
    }
fail:
    if (rc == -BEX_ELIMIT)
        set_err(err, err_size, "passphrase longer than %zu bytes", size - 1);
    else if (rc == -BEX_EIO)
        set_err(err, err_size, "cannot read a passphrase from the terminal");
    OPENSSL_cleanse(again, sizeof(again));
    close(fd);
    return rc;
}

int keystore_passphrase(char *buf, size_t size, const char *prompt, bool confirm, char *err, size_t err_size)
{
    const char *env = getenv(KEYSTORE_PASSPHRASE_ENV);
    int rc;

    BEX_ASSERT(size > 0);
    if (env != NULL) {
        if (strlen(env) >= size) {
            set_err(err, err_size, "%s is longer than %zu bytes", KEYSTORE_PASSPHRASE_ENV, size - 1);
            rc = -BEX_ELIMIT;
            goto fail;
        }
        memcpy(buf, env, strlen(env) + 1);
    } else if ((rc = from_terminal(buf, size, prompt, confirm, err, err_size)) != 0) {
        goto fail;
    }
    if (buf[0] == '\0') {
        set_err(err, err_size, "empty passphrase%s", env != NULL ? " in " KEYSTORE_PASSPHRASE_ENV : "");
        rc = -BEX_EINVAL;
        goto fail;
    }
    return 0;
fail:
    OPENSSL_cleanse(buf, size);
    return rc;
}

int keystore_passphrase_file(char *buf, size_t size, const char *path, char *err, size_t err_size)
{
    char tail[2]; /* bytes past a full buf, which may still be the trailing "\r\n" */
    size_t n = 0;
    size_t extra = 0;
    char c = 0;
    int fd;
    int rc = 0;

    BEX_ASSERT(size > 0);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        set_err(err, err_size, "%s: %s", path, strerror(errno));
        return -BEX_EIO;
    }
    /* Read straight into buf: no other copy of the secret is made but the
     * two bytes past it, which tell a trailing newline from a long file. */
    for (;;) {
        bool full = n + 1 >= size;
        char *dst = !full ? buf + n : extra < sizeof(tail) ? tail + extra : &c;
        ssize_t r = read(fd, dst, !full ? size - 1 - n : 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, err_size, "%s: %s", path, strerror(errno));
            rc = -BEX_EIO;
            goto fail;
        }
        if (r == 0)
            break;
        if (dst == &c) {
            set_err(err, err_size, "%s: passphrase longer than %zu bytes", path, size - 1);
            rc = -BEX_ELIMIT;
            goto fail;
        }
        if (full)
            extra++;
        else
            n += (size_t)r;
    }
    /* The file is buf[0, n) followed by tail[0, extra); one trailing "\n" or
     * "\r\n" is dropped, and what is left must fit in buf. */
    size_t len = n + extra;
    if (len > 0 && (extra > 0 ? tail[extra - 1] : buf[len - 1]) == '\n') {
        len--;
        if (len > 0 && (len > n ? tail[len - n - 1] : buf[len - 1]) == '\r')
            len--;
    }
    if (len > n) {
        set_err(err, err_size, "%s: passphrase longer than %zu bytes", path, size - 1);
        rc = -BEX_ELIMIT;
        goto fail;
    }
    n = len;
    buf[n] = '\0';
    if (n == 0) {
        set_err(err, err_size, "%s: empty passphrase", path);
        rc = -BEX_EINVAL;
        goto fail;
    }
    if (memchr(buf, '\0', n) != NULL) {
        set_err(err, err_size, "%s: passphrase contains a NUL byte", path);
        rc = -BEX_EINVAL;
        goto fail;
    }
fail:
    close(fd);
    OPENSSL_cleanse(tail, sizeof(tail));
    OPENSSL_cleanse(&c, sizeof(c));
    if (rc != 0)
        OPENSSL_cleanse(buf, size);
    return rc;
}
