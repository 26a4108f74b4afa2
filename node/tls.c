/*
 * tls.c: Ed25519 node keys and TLS 1.3 sessions over memory BIOs.
 *
 * The certificate of a node is self-signed and made at start. Chain
 * verification is replaced as a whole (SSL_CTX_set_cert_verify_callback):
 * the only question asked about a peer's certificate is whether its public
 * key is acceptable to the caller. Possession of the matching private key is
 * proven by the TLS 1.3 CertificateVerify message, which OpenSSL checks
 * against the key of the certificate whatever our callback says.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A node certificate is made at every start; ten years outlives any process. */
#define CERT_DAYS (10 * 366)

/* Output buffers larger than this are released once drained. */
#define OUT_KEEP_BYTES (64 * 1024)

struct tls_key {
    EVP_PKEY *pkey;
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer; owned by ssl */
    BIO *wbio; /* ciphertext for the peer; owned by ssl */
    tls_verify_fn verify;
    void *ud;
    bool verified;
    bool refused;
    uint8_t peer_key[TLS_PUBKEY_BYTES];
    char err[TLS_ERROR_BYTES];
};

/* ---------------------------------------------------------------- keys */

static bool is_ed25519(const EVP_PKEY *pkey)
{
    return pkey != NULL && EVP_PKEY_is_a(pkey, "ED25519");
}

int tls_key_new(struct tls_key **out)
{
    struct tls_key *k;

    BEX_ASSERT(out != NULL);
    *out = NULL;
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return -BEX_ENOMEM;
    ERR_clear_error();
    k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    ERR_clear_error();
    if (k->pkey == NULL) {
        free(k);
        return -BEX_ECRYPTO;
    }
    *out = k;
    return 0;
}

void tls_key_free(struct tls_key *key)
{
    if (key == NULL)
        return;
    /* EVP_PKEY_free wipes the Ed25519 private key material it holds. */
    EVP_PKEY_free(key->pkey);
    free(key);
}

void tls_pubkey_raw(const struct tls_key *key, uint8_t out[TLS_PUBKEY_BYTES])
{
    size_t len = TLS_PUBKEY_BYTES;

    BEX_ASSERT(key != NULL);
    BEX_ASSERT(is_ed25519(key->pkey));
    BEX_ASSERT(EVP_PKEY_get_raw_public_key(key->pkey, out, &len) == 1);
    BEX_ASSERT(len == TLS_PUBKEY_BYTES);
}

/* Encodes `key` as an encrypted PKCS#8 PEM into a new memory BIO. */
static int encode_encrypted(BIO **out, const struct tls_key *key, const char *passphrase)
{
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    X509_ALGOR *pbe = NULL;
    X509_SIG *sig = NULL;
    BIO *bio = NULL;
    size_t plen = strlen(passphrase);
    int rc = -BEX_ECRYPTO;

    if (plen > INT_MAX)
        return -BEX_EINVAL;
    ERR_clear_error();
    p8 = EVP_PKEY2PKCS8(key->pkey);
    if (p8 == NULL)
        goto fail;
    pbe = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), TLS_KEY_KDF_ITER, NULL, 0, NULL,
                               NID_hmacWithSHA256, NULL);
    if (pbe == NULL)
        goto fail;
    sig = PKCS8_set0_pbe(passphrase, (int)plen, p8, pbe);
    if (sig == NULL)
        goto fail;
    pbe = NULL; /* owned by sig now */
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        rc = -BEX_ENOMEM;
        goto fail;
    }
    if (PEM_write_bio_PKCS8(bio, sig) != 1)
        goto fail;
    *out = bio;
    bio = NULL;
    rc = 0;
fail:
    BIO_free(bio);
    X509_SIG_free(sig);
    X509_ALGOR_free(pbe);
    /* The PKCS#8 structure holds the private key in clear; its free wipes it. */
    PKCS8_PRIV_KEY_INFO_free(p8);
    ERR_clear_error();
    return rc;
}

static int errno_code(int e)
{
    switch (e) {
    case ENOENT:
        return -BEX_ENOTFOUND;
    case EEXIST:
        return -BEX_EEXIST;
    case ENOSPC:
    case EDQUOT:
        return -BEX_ENOSPC;
    case ENOMEM:
        return -BEX_ENOMEM;
    default:
        return -BEX_EIO;
    }
}

int tls_key_save(const struct tls_key *key, const char *path, const char *passphrase)
{
    BIO *bio = NULL;
    char *data;
    long len;
    int fd = -1;
    int rc;

    BEX_ASSERT(key != NULL);
    BEX_ASSERT(path != NULL);
    if (passphrase == NULL || passphrase[0] == '\0')
        return -BEX_EINVAL;
    if ((rc = encode_encrypted(&bio, key, passphrase)) != 0)
        return rc;
    len = BIO_get_mem_data(bio, &data);
    BEX_ASSERT(len > 0);

    /* O_EXCL: a key file is never silently replaced. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno_code(errno);
        goto fail;
    }
    if (fchmod(fd, 0600) != 0)
        goto fail_unlink;
    for (long off = 0; off < len;) {
        ssize_t w = write(fd, data + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail_unlink;
        off += w;
    }
    if (fsync(fd) != 0)
        goto fail_unlink;
    if (close(fd) != 0) {
        fd = -1;
        goto fail_unlink;
    }
    BIO_free(bio);
    return 0;

fail_unlink:
    rc = errno_code(errno);
    unlink(path);
fail:
    if (fd >= 0)
        close(fd);
    BIO_free(bio);
    return rc;
}

int tls_keygen(const char *path, const char *passphrase)
{
    struct tls_key *key = NULL;
    int rc;

    if (passphrase == NULL || passphrase[0] == '\0')
        return -BEX_EINVAL;
    if ((rc = tls_key_new(&key)) != 0)
        return rc;
    rc = tls_key_save(key, path, passphrase);
    tls_key_free(key);
    return rc;
}

int tls_key_load(struct tls_key **out, const char *path, const char *passphrase)
{
    struct tls_key *k = NULL;
    BIO *bio = NULL;
    X509_SIG *sig = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *pkey = NULL;
    size_t plen;
    int rc;

    BEX_ASSERT(out != NULL);
    BEX_ASSERT(path != NULL);
    *out = NULL;
    if (passphrase == NULL)
        return -BEX_EINVAL;
    plen = strlen(passphrase);
    if (plen > INT_MAX)
        return -BEX_EINVAL;

    ERR_clear_error();
    errno = 0;
    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        rc = errno != 0 ? errno_code(errno) : -BEX_EIO;
        goto fail;
    }
    /* Only the encrypted form is read: an unencrypted key file is refused. */
    sig = PEM_read_bio_PKCS8(bio, NULL, NULL, NULL);
    if (sig == NULL) {
        rc = -BEX_EDECODE;
        goto fail;
    }
    p8 = PKCS8_decrypt(sig, passphrase, (int)plen);
    if (p8 == NULL) {
        rc = -BEX_EPASSPHRASE;
        goto fail;
    }
    pkey = EVP_PKCS82PKEY(p8);
    if (pkey == NULL) {
        rc = -BEX_EDECODE;
        goto fail;
    }
    if (!is_ed25519(pkey)) {
        rc = -BEX_EINVAL;
        goto fail;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        rc = -BEX_ENOMEM;
        goto fail;
    }
    k->pkey = pkey;
    pkey = NULL;
    *out = k;
    rc = 0;
fail:
    EVP_PKEY_free(pkey);
    PKCS8_PRIV_KEY_INFO_free(p8);
    X509_SIG_free(sig);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* ---------------------------------------------------------------- contexts */

static X509 *make_cert(EVP_PKEY *pkey)
{
    X509 *x = X509_new();
    X509_NAME *name;
    uint64_t serial;

    if (x == NULL)
        return NULL;
    if (RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1)
        goto fail;
    serial >>= 1; /* a positive serial number */
    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set_int64(X509_get_serialNumber(x), (int64_t)serial) != 1)
        goto fail;
    if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), CERT_DAYS, 0, NULL) == NULL)
        goto fail;
    name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"bex-node",
                                   -1, -1, 0) != 1)
        goto fail;
    if (X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, pkey) != 1)
        goto fail;
    /* Ed25519 signs the message itself: no digest. */
    if (X509_sign(x, pkey, NULL) <= 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

static void set_err(struct tls_conn *c, const char *text)
{
    snprintf(c->err, sizeof(c->err), "%s", text);
}

/*
 * Replaces chain verification: the leaf certificate's key must be Ed25519
 * and accepted by the session's verify function. Nothing else about the
 * certificate matters.
 */
static int verify_cert(X509_STORE_CTX *store, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get0_cert(store);
    EVP_PKEY *pkey = cert != NULL ? X509_get0_pubkey(cert) : NULL;
    uint8_t raw[TLS_PUBKEY_BYTES];
    size_t len = sizeof(raw);

    (void)arg;
    if (c == NULL)
        return 0;
    if (!is_ed25519(pkey) || EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 ||
        len != sizeof(raw)) {
        set_err(c, "peer certificate key is not Ed25519");
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    if (c->verify(raw, c->ud) != 0) {
        c->refused = true;
        set_err(c, "peer key refused");
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    memcpy(c->peer_key, raw, sizeof(raw));
    c->verified = true;
    return 1;
}

int tls_ctx_new(struct tls_ctx **out, const struct tls_key *key)
{
    struct tls_ctx *t = NULL;
    X509 *cert = NULL;
    int rc = -BEX_ECRYPTO;

    BEX_ASSERT(out != NULL);
    BEX_ASSERT(key != NULL);
    BEX_ASSERT(is_ed25519(key->pkey));
    *out = NULL;
    ERR_clear_error();
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -BEX_ENOMEM;
    cert = make_cert(key->pkey);
    if (cert == NULL)
        goto fail;
    t->ssl_ctx = SSL_CTX_new(TLS_method());
    if (t->ssl_ctx == NULL)
        goto fail;
    if (SSL_CTX_set_min_proto_version(t->ssl_ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(t->ssl_ctx, TLS1_3_VERSION) != 1)
        goto fail;
    /* AEAD suites with a 16-byte tag only: TLS_RECORD_OVERHEAD depends on it. */
    if (SSL_CTX_set_ciphersuites(t->ssl_ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                             "TLS_CHACHA20_POLY1305_SHA256") != 1)
        goto fail;
    /* Both directions sign with Ed25519 only. */
    if (SSL_CTX_set1_sigalgs_list(t->ssl_ctx, "ed25519") != 1 ||
        SSL_CTX_set1_client_sigalgs_list(t->ssl_ctx, "ed25519") != 1)
        goto fail;
    if (SSL_CTX_use_certificate(t->ssl_ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(t->ssl_ctx, key->pkey) != 1 ||
        SSL_CTX_check_private_key(t->ssl_ctx) != 1)
        goto fail;
    /* Links are long-lived and always fully authenticated: no resumption. */
    SSL_CTX_set_session_cache_mode(t->ssl_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(t->ssl_ctx, SSL_OP_NO_TICKET);
    if (SSL_CTX_set_num_tickets(t->ssl_ctx, 0) != 1)
        goto fail;
    /*
     * SSL_MODE_RELEASE_BUFFERS is not set: at most 15 links keep about 34 KiB
     * of record buffers each, and reallocating them per record costs a third
     * of the throughput of a busy link.
     */
    SSL_CTX_set_cert_verify_callback(t->ssl_ctx, verify_cert, NULL);
    X509_free(cert);
    ERR_clear_error();
    *out = t;
    return 0;
fail:
    X509_free(cert);
    tls_ctx_free(t);
    ERR_clear_error();
    return rc;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---------------------------------------------------------------- sessions */

int tls_conn_new(struct tls_conn **out, struct tls_ctx *ctx, bool server, tls_verify_fn verify,
                 void *ud)
{
    struct tls_conn *c;
    int mode = SSL_VERIFY_PEER;

    BEX_ASSERT(out != NULL);
    BEX_ASSERT(ctx != NULL);
    BEX_ASSERT(verify != NULL);
    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -BEX_ENOMEM;
    c->verify = verify;
    c->ud = ud;
    ERR_clear_error();
    c->ssl = SSL_new(ctx->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return -BEX_ENOMEM;
    }
    /* An empty input buffer means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    if (server) {
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
    }
    SSL_set_verify(c->ssl, mode, NULL);
    *out = c;
    return 0;
}

void tls_conn_free(struct tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

int tls_conn_feed(struct tls_conn *c, const uint8_t *in, size_t len)
{
    BEX_ASSERT(c != NULL);
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int w;

        ERR_clear_error();
        w = BIO_write(c->rbio, in, chunk);
        ERR_clear_error();
        if (w <= 0)
            return -BEX_ENOMEM;
        in += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Records the first OpenSSL error of a failed call unless a reason is already known. */
static void capture_err(struct tls_conn *c, const char *what)
{
    unsigned long e = ERR_get_error();

    if (c->err[0] == '\0') {
        if (e != 0) {
            char buf[TLS_ERROR_BYTES - 32];
            ERR_error_string_n(e, buf, sizeof(buf));
            snprintf(c->err, sizeof(c->err), "%.24s: %s", what, buf);
        } else {
            snprintf(c->err, sizeof(c->err), "%s failed", what);
        }
    }
    ERR_clear_error();
}

int tls_conn_handshake(struct tls_conn *c, bool *done)
{
    int r;

    BEX_ASSERT(c != NULL);
    BEX_ASSERT(done != NULL);
    *done = false;
    if (SSL_is_init_finished(c->ssl)) {
        *done = true;
        return 0;
    }
    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        ERR_clear_error();
        /*
         * Both sides require a certificate and resumption is off, so the
         * verify callback has run; refuse rather than trust if it has not.
         */
        if (!c->verified) {
            set_err(c, "handshake finished without a verified peer key");
            return -BEX_ECRYPTO;
        }
        *done = true;
        return 0;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return 0;
    default:
        capture_err(c, "handshake");
        return c->refused ? -BEX_EPERM : -BEX_ECRYPTO;
    }
}

int tls_conn_read(struct tls_conn *c, uint8_t *out, size_t out_len, size_t *n)
{
    size_t got = 0;
    int r;

    BEX_ASSERT(c != NULL);
    BEX_ASSERT(n != NULL);
    *n = 0;
    if (!SSL_is_init_finished(c->ssl))
        return -BEX_ESTATE;
    ERR_clear_error();
    r = SSL_read_ex(c->ssl, out, out_len, &got);
    if (r == 1) {
        *n = got;
        return 0;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return -BEX_ECLOSED;
    default:
        capture_err(c, "read");
        return -BEX_ECRYPTO;
    }
}

int tls_conn_write(struct tls_conn *c, const uint8_t *in, size_t len)
{
    size_t done = 0;

    BEX_ASSERT(c != NULL);
    if (!SSL_is_init_finished(c->ssl))
        return -BEX_ESTATE;
    if (len == 0)
        return 0;
    ERR_clear_error();
    /* A memory BIO never pushes back, so the write is complete or failed. */
    if (SSL_write_ex(c->ssl, in, len, &done) != 1 || done != len) {
        capture_err(c, "write");
        return -BEX_ECRYPTO;
    }
    return 0;
}

size_t tls_conn_out_pending(const struct tls_conn *c)
{
    BEX_ASSERT(c != NULL);
    return BIO_ctrl_pending(c->wbio);
}

size_t tls_conn_take(struct tls_conn *c, uint8_t *out, size_t out_len)
{
    size_t got = 0;
    BUF_MEM *mem = NULL;

    BEX_ASSERT(c != NULL);
    if (out_len == 0 || BIO_ctrl_pending(c->wbio) == 0)
        return 0;
    ERR_clear_error();
    if (BIO_read_ex(c->wbio, out, out_len, &got) != 1)
        got = 0;
    ERR_clear_error();
    /*
     * A memory BIO keeps its high-water allocation. After a burst (a large
     * frame, a queue drained to a slow peer) swap in a fresh one so that an
     * idle link holds little memory.
     */
    if (BIO_ctrl_pending(c->wbio) == 0 && BIO_get_mem_ptr(c->wbio, &mem) == 1 && mem != NULL &&
        mem->max > OUT_KEEP_BYTES) {
        BIO *fresh = BIO_new(BIO_s_mem());
        if (fresh != NULL) {
            BIO_set_mem_eof_return(fresh, -1);
            SSL_set0_wbio(c->ssl, fresh); /* frees the old one */
            c->wbio = fresh;
        }
        ERR_clear_error();
    }
    return got;
}

int tls_conn_peer_key(const struct tls_conn *c, uint8_t out[TLS_PUBKEY_BYTES])
{
    BEX_ASSERT(c != NULL);
    if (!c->verified)
        return -BEX_ESTATE;
    memcpy(out, c->peer_key, TLS_PUBKEY_BYTES);
    return 0;
}

const char *tls_conn_error(const struct tls_conn *c)
{
    BEX_ASSERT(c != NULL);
    return c->err;
}
