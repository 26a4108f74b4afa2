/*
 * tls_test.c: node keys on disk and TLS 1.3 sessions pumped in memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "bex.h"
#include "tls.h"

#define PASS "correct horse battery staple"

static char dir[64];

static void path_of(char *out, size_t out_len, const char *name)
{
    snprintf(out, out_len, "%s/%s", dir, name);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bex-tls-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    static const char *const names[] = {"a.pem", "b.pem", "plain.pem", "p256.pem", "junk.pem",
                                        "empty.pem"};
    char path[128];

    (void)state;
    for (size_t i = 0; i < BEX_ARRAY_LEN(names); i++) {
        path_of(path, sizeof(path), names[i]);
        unlink(path);
    }
    return rmdir(dir);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ---------------------------------------------------------------- keys */

static void tls_keygen_writes_encrypted_pkcs8_0600(void **state)
{
    char path[128];
    char text[4096] = {0};
    struct stat st;
    struct tls_key *k1 = NULL;
    struct tls_key *k2 = NULL;
    uint8_t pub1[TLS_PUBKEY_BYTES];
    uint8_t pub2[TLS_PUBKEY_BYTES];
    uint8_t zero[TLS_PUBKEY_BYTES] = {0};
    FILE *f;

    (void)state;
    path_of(path, sizeof(path), "a.pem");
    assert_int_equal(tls_keygen(path, PASS), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    f = fopen(path, "r");
    assert_non_null(f);
    assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(text, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));

    assert_int_equal(tls_key_load(&k1, path, PASS), 0);
    assert_int_equal(tls_key_load(&k2, path, PASS), 0);
    tls_pubkey_raw(k1, pub1);
    tls_pubkey_raw(k2, pub2);
    assert_memory_equal(pub1, pub2, TLS_PUBKEY_BYTES);
    assert_memory_not_equal(pub1, zero, TLS_PUBKEY_BYTES);
    tls_key_free(k1);
    tls_key_free(k2);
}

static void tls_key_load_wrong_passphrase(void **state)
{
    char path[128];
    struct tls_key *k = NULL;

    (void)state;
    path_of(path, sizeof(path), "b.pem");
    assert_int_equal(tls_keygen(path, PASS), 0);
    assert_int_equal(tls_key_load(&k, path, "wrong"), -BEX_EPASSPHRASE);
    assert_null(k);
    assert_int_equal(tls_key_load(&k, path, ""), -BEX_EPASSPHRASE);
    assert_null(k);
    assert_int_equal(tls_key_load(&k, path, PASS), 0);
    assert_non_null(k);
    tls_key_free(k);
}

static void tls_keygen_refuses_overwrite_and_empty_passphrase(void **state)
{
    char path[128];
    char other[128];
    struct tls_key *before = NULL;
    struct tls_key *after = NULL;
    uint8_t p1[TLS_PUBKEY_BYTES];
    uint8_t p2[TLS_PUBKEY_BYTES];

    (void)state;
    path_of(path, sizeof(path), "a.pem");
    assert_int_equal(tls_key_load(&before, path, PASS), 0);
    assert_int_equal(tls_keygen(path, PASS), -BEX_EEXIST);
    assert_int_equal(tls_key_load(&after, path, PASS), 0);
    tls_pubkey_raw(before, p1);
    tls_pubkey_raw(after, p2);
    assert_memory_equal(p1, p2, TLS_PUBKEY_BYTES);
    tls_key_free(before);
    tls_key_free(after);

    path_of(other, sizeof(other), "empty.pem");
    assert_int_equal(tls_keygen(other, ""), -BEX_EINVAL);
    assert_int_equal(access(other, F_OK), -1);
    path_of(other, sizeof(other), "no-such-dir/k.pem");
    assert_int_equal(tls_keygen(other, PASS), -BEX_ENOTFOUND);
}

static void tls_key_load_rejects_bad_files(void **state)
{
    char path[128];
    struct tls_key *k = NULL;
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *bio;

    (void)state;
    assert_non_null(ed);
    assert_non_null(ec);

    path_of(path, sizeof(path), "missing.pem");
    assert_int_equal(tls_key_load(&k, path, PASS), -BEX_ENOTFOUND);

    path_of(path, sizeof(path), "junk.pem");
    write_file(path, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n", 43);
    assert_int_equal(tls_key_load(&k, path, PASS), -BEX_EDECODE);

    /* An unencrypted key is refused even though it is a valid Ed25519 key. */
    path_of(path, sizeof(path), "plain.pem");
    bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, ed, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(bio);
    assert_int_equal(tls_key_load(&k, path, PASS), -BEX_EDECODE);

    /* An encrypted key of another type is refused. */
    path_of(path, sizeof(path), "p256.pem");
    bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, ec, EVP_aes_256_cbc(), PASS,
                                                   (int)strlen(PASS), NULL, NULL),
                     1);
    BIO_free(bio);
    assert_int_equal(tls_key_load(&k, path, PASS), -BEX_EINVAL);
    assert_null(k);

    EVP_PKEY_free(ed);
    EVP_PKEY_free(ec);
    ERR_clear_error();
}

/* ---------------------------------------------------------------- sessions */

struct side {
    struct tls_key *key;
    struct tls_ctx *ctx;
    struct tls_conn *conn;
    uint8_t pub[TLS_PUBKEY_BYTES];
    uint8_t accept[TLS_PUBKEY_BYTES]; /* the only key this side accepts */
    int verify_calls;
    int hs_rc;
    bool done;
};

static int side_verify(const uint8_t pub[TLS_PUBKEY_BYTES], void *ud)
{
    struct side *s = ud;

    s->verify_calls++;
    return memcmp(pub, s->accept, TLS_PUBKEY_BYTES) == 0 ? 0 : -BEX_EPERM;
}

static void side_init(struct side *s, bool server)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(tls_key_new(&s->key), 0);
    tls_pubkey_raw(s->key, s->pub);
    assert_int_equal(tls_ctx_new(&s->ctx, s->key), 0);
    assert_int_equal(tls_conn_new(&s->conn, s->ctx, server, side_verify, s), 0);
}

static void side_free(struct side *s)
{
    tls_conn_free(s->conn);
    tls_ctx_free(s->ctx);
    tls_key_free(s->key);
}

/* Moves every waiting byte of `from` into `to`; returns how many. */
static size_t xfer(struct tls_conn *from, struct tls_conn *to)
{
    uint8_t buf[4096];
    size_t total = 0;
    size_t n;

    while ((n = tls_conn_take(from, buf, sizeof(buf))) > 0) {
        assert_int_equal(tls_conn_feed(to, buf, n), 0);
        total += n;
    }
    return total;
}

/* Runs the handshake of a client and a server to completion or failure. */
static void pump_handshake(struct side *cl, struct side *sv)
{
    for (int round = 0; round < 20; round++) {
        bool moved;
        if (cl->hs_rc == 0 && !cl->done)
            cl->hs_rc = tls_conn_handshake(cl->conn, &cl->done);
        moved = xfer(cl->conn, sv->conn) > 0;
        if (sv->hs_rc == 0 && !sv->done)
            sv->hs_rc = tls_conn_handshake(sv->conn, &sv->done);
        moved = xfer(sv->conn, cl->conn) > 0 || moved;
        if (!moved && (cl->done || cl->hs_rc != 0) && (sv->done || sv->hs_rc != 0))
            return;
    }
}

static size_t read_all(struct tls_conn *c, uint8_t *out, size_t cap, int *rc)
{
    size_t total = 0;

    *rc = 0;
    while (total < cap) {
        size_t n = 0;
        *rc = tls_conn_read(c, out + total, cap - total, &n);
        if (*rc != 0 || n == 0)
            break;
        total += n;
    }
    return total;
}

static void tls_handshake_mutual_and_data_both_ways(void **state)
{
    struct side cl;
    struct side sv;
    uint8_t key[TLS_PUBKEY_BYTES];
    size_t big_len = 100 * 1024;
    uint8_t *big = malloc(big_len);
    uint8_t *got = malloc(big_len);
    uint8_t small[16];
    int rc;

    (void)state;
    assert_non_null(big);
    assert_non_null(got);
    side_init(&cl, false);
    side_init(&sv, true);
    memcpy(cl.accept, sv.pub, TLS_PUBKEY_BYTES);
    memcpy(sv.accept, cl.pub, TLS_PUBKEY_BYTES);
    assert_int_equal(tls_conn_peer_key(cl.conn, key), -BEX_ESTATE);
    assert_int_equal(tls_conn_write(cl.conn, small, sizeof(small)), -BEX_ESTATE);

    pump_handshake(&cl, &sv);
    assert_int_equal(cl.hs_rc, 0);
    assert_int_equal(sv.hs_rc, 0);
    assert_true(cl.done);
    assert_true(sv.done);
    assert_int_equal(cl.verify_calls, 1);
    assert_int_equal(sv.verify_calls, 1);
    assert_int_equal(tls_conn_peer_key(cl.conn, key), 0);
    assert_memory_equal(key, sv.pub, TLS_PUBKEY_BYTES);
    assert_int_equal(tls_conn_peer_key(sv.conn, key), 0);
    assert_memory_equal(key, cl.pub, TLS_PUBKEY_BYTES);

    /* Client to server: many records. */
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(tls_conn_write(cl.conn, big, big_len), 0);
    assert_true(tls_conn_out_pending(cl.conn) > big_len);
    xfer(cl.conn, sv.conn);
    assert_int_equal(tls_conn_out_pending(cl.conn), 0);
    assert_int_equal(read_all(sv.conn, got, big_len, &rc), big_len);
    assert_int_equal(rc, 0);
    assert_memory_equal(got, big, big_len);

    /* Server to client. */
    memcpy(small, "hello from sv...", sizeof(small));
    assert_int_equal(tls_conn_write(sv.conn, small, sizeof(small)), 0);
    xfer(sv.conn, cl.conn);
    assert_int_equal(read_all(cl.conn, got, big_len, &rc), sizeof(small));
    assert_memory_equal(got, small, sizeof(small));

    side_free(&cl);
    side_free(&sv);
    free(big);
    free(got);
}

static void tls_server_refuses_unlisted_client_key(void **state)
{
    struct side cl;
    struct side sv;
    uint8_t buf[64];
    int rc;

    (void)state;
    side_init(&cl, false);
    side_init(&sv, true);
    memcpy(cl.accept, sv.pub, TLS_PUBKEY_BYTES);
    memset(sv.accept, 0xab, TLS_PUBKEY_BYTES); /* not the client's key */

    pump_handshake(&cl, &sv);
    assert_int_equal(sv.hs_rc, -BEX_EPERM);
    assert_false(sv.done);
    assert_string_equal(tls_conn_error(sv.conn), "peer key refused");
    /* In TLS 1.3 the client finishes first and learns of the refusal from the alert. */
    assert_true(cl.done);
    assert_int_equal(read_all(cl.conn, buf, sizeof(buf), &rc), 0);
    assert_int_equal(rc, -BEX_ECRYPTO);
    assert_true(strlen(tls_conn_error(cl.conn)) > 0);

    side_free(&cl);
    side_free(&sv);
}

static void tls_client_refuses_wrong_server_key(void **state)
{
    struct side cl;
    struct side sv;

    (void)state;
    side_init(&cl, false);
    side_init(&sv, true);
    memset(cl.accept, 0xcd, TLS_PUBKEY_BYTES);
    memcpy(sv.accept, cl.pub, TLS_PUBKEY_BYTES);

    pump_handshake(&cl, &sv);
    assert_int_equal(cl.hs_rc, -BEX_EPERM);
    assert_int_equal(cl.verify_calls, 1);
    assert_int_equal(sv.hs_rc, -BEX_ECRYPTO);
    assert_int_equal(sv.verify_calls, 0);
    assert_false(sv.done);

    side_free(&cl);
    side_free(&sv);
}

static void tls_garbage_fails_handshake(void **state)
{
    struct side sv;
    struct side cl;
    uint8_t junk[2048];
    static const uint8_t huge_record[] = {0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x02};

    (void)state;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 17);

    side_init(&sv, true);
    assert_int_equal(tls_conn_feed(sv.conn, junk, sizeof(junk)), 0);
    assert_int_equal(tls_conn_handshake(sv.conn, &sv.done), -BEX_ECRYPTO);
    assert_false(sv.done);
    side_free(&sv);

    /* A record header announcing more than TLS allows. */
    side_init(&sv, true);
    assert_int_equal(tls_conn_feed(sv.conn, huge_record, sizeof(huge_record)), 0);
    assert_int_equal(tls_conn_handshake(sv.conn, &sv.done), -BEX_ECRYPTO);
    side_free(&sv);

    /* The client side, answered with junk. */
    side_init(&cl, false);
    assert_int_equal(tls_conn_handshake(cl.conn, &cl.done), 0);
    assert_true(tls_conn_out_pending(cl.conn) > 0);
    assert_int_equal(tls_conn_feed(cl.conn, junk, sizeof(junk)), 0);
    assert_int_equal(tls_conn_handshake(cl.conn, &cl.done), -BEX_ECRYPTO);
    side_free(&cl);
}

static void tls_corrupt_record_is_detected(void **state)
{
    struct side cl;
    struct side sv;
    uint8_t msg[100] = {1, 2, 3};
    uint8_t wire[512];
    uint8_t out[128];
    size_t n;
    int rc;

    (void)state;
    side_init(&cl, false);
    side_init(&sv, true);
    memcpy(cl.accept, sv.pub, TLS_PUBKEY_BYTES);
    memcpy(sv.accept, cl.pub, TLS_PUBKEY_BYTES);
    pump_handshake(&cl, &sv);
    assert_true(cl.done && sv.done);

    assert_int_equal(tls_conn_write(cl.conn, msg, sizeof(msg)), 0);
    n = tls_conn_take(cl.conn, wire, sizeof(wire));
    assert_true(n > sizeof(msg));
    wire[n - 3] ^= 0x40; /* inside the AEAD tag */
    assert_int_equal(tls_conn_feed(sv.conn, wire, n), 0);
    assert_int_equal(read_all(sv.conn, out, sizeof(out), &rc), 0);
    assert_int_equal(rc, -BEX_ECRYPTO);

    side_free(&cl);
    side_free(&sv);
}

/*
 * Drives a raw OpenSSL client (configured by the test) against our server and
 * returns our server's handshake result.
 */
static int raw_client_against(struct side *sv, SSL_CTX *raw_ctx)
{
    SSL *ssl = SSL_new(raw_ctx);
    BIO *rb = BIO_new(BIO_s_mem());
    BIO *wb = BIO_new(BIO_s_mem());
    uint8_t buf[8192];
    int rc = 0;

    assert_non_null(ssl);
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    for (int round = 0; round < 10 && rc == 0 && !sv->done; round++) {
        int n;
        (void)SSL_do_handshake(ssl);
        while ((n = BIO_read(wb, buf, sizeof(buf))) > 0)
            assert_int_equal(tls_conn_feed(sv->conn, buf, (size_t)n), 0);
        rc = tls_conn_handshake(sv->conn, &sv->done);
        size_t m;
        while ((m = tls_conn_take(sv->conn, buf, sizeof(buf))) > 0)
            assert_int_equal(BIO_write(rb, buf, (int)m), (int)m);
    }
    SSL_free(ssl);
    ERR_clear_error();
    return rc;
}

static void tls_only_tls13_is_spoken(void **state)
{
    struct side sv;
    SSL_CTX *raw = SSL_CTX_new(TLS_client_method());

    (void)state;
    assert_non_null(raw);
    assert_int_equal(SSL_CTX_set_max_proto_version(raw, TLS1_2_VERSION), 1);
    side_init(&sv, true);
    assert_int_equal(raw_client_against(&sv, raw), -BEX_ECRYPTO);
    assert_false(sv.done);
    assert_int_equal(sv.verify_calls, 0);
    assert_non_null(strstr(tls_conn_error(sv.conn), "unsupported protocol"));
    side_free(&sv);
    SSL_CTX_free(raw);
}

static void tls_client_without_certificate_is_refused(void **state)
{
    struct side sv;
    SSL_CTX *raw = SSL_CTX_new(TLS_client_method());

    (void)state;
    assert_non_null(raw);
    SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, NULL);
    side_init(&sv, true);
    assert_int_equal(raw_client_against(&sv, raw), -BEX_ECRYPTO);
    assert_false(sv.done);
    assert_int_equal(sv.verify_calls, 0);
    assert_non_null(strstr(tls_conn_error(sv.conn), "did not return a certificate"));
    side_free(&sv);
    SSL_CTX_free(raw);
}

static void tls_output_buffer_is_released_after_burst(void **state)
{
    struct side cl;
    struct side sv;
    size_t len = 1 << 20;
    uint8_t *big = calloc(1, len);
    uint8_t *sink = malloc(64 * 1024);
    size_t total = 0;
    size_t n;

    (void)state;
    assert_non_null(big);
    assert_non_null(sink);
    side_init(&cl, false);
    side_init(&sv, true);
    memcpy(cl.accept, sv.pub, TLS_PUBKEY_BYTES);
    memcpy(sv.accept, cl.pub, TLS_PUBKEY_BYTES);
    pump_handshake(&cl, &sv);
    assert_true(cl.done && sv.done);

    /* The ciphertext bound the p2p queue relies on. */
    assert_int_equal(tls_conn_write(cl.conn, big, len), 0);
    assert_true(tls_conn_out_pending(cl.conn) <=
                len + TLS_RECORD_OVERHEAD * (len / TLS_RECORD_PLAIN_MAX + 1));
    assert_true(tls_conn_out_pending(cl.conn) > len);
    while ((n = tls_conn_take(cl.conn, sink, 64 * 1024)) > 0)
        total += n;
    assert_true(total > len);
    assert_int_equal(tls_conn_out_pending(cl.conn), 0);
    /* The session keeps working with its fresh output buffer. */
    assert_int_equal(tls_conn_write(cl.conn, big, 10), 0);
    assert_true(tls_conn_out_pending(cl.conn) > 10);

    side_free(&cl);
    side_free(&sv);
    free(big);
    free(sink);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tls_keygen_writes_encrypted_pkcs8_0600),
        cmocka_unit_test(tls_key_load_wrong_passphrase),
        cmocka_unit_test(tls_keygen_refuses_overwrite_and_empty_passphrase),
        cmocka_unit_test(tls_key_load_rejects_bad_files),
        cmocka_unit_test(tls_handshake_mutual_and_data_both_ways),
        cmocka_unit_test(tls_server_refuses_unlisted_client_key),
        cmocka_unit_test(tls_client_refuses_wrong_server_key),
        cmocka_unit_test(tls_garbage_fails_handshake),
        cmocka_unit_test(tls_corrupt_record_is_detected),
        cmocka_unit_test(tls_only_tls13_is_spoken),
        cmocka_unit_test(tls_client_without_certificate_is_refused),
        cmocka_unit_test(tls_output_buffer_is_released_after_burst),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
