/*
 * txcheck_fuzz.c: txcheck_tx() and txcheck_tx_signed() on arbitrary bytes, as
 * a tx arrives from the RPC, from gossip or inside a proposal.
 *
 * The genesis is fixed (fuzz_util.h): two agencies with real secp256k1 keys
 * derived from fixed seeds, and verification is the real crypto_verify, so
 * the seed corpus (valid signed txs from gen_corpus.c) reaches every check.
 * Each input runs through a fresh checker twice and through a checker
 * without a cache, and the three answers must agree: the second call of an
 * admitted tx must be a cache hit that verifies nothing. An admitted tx is
 * then checked independently of txcheck: its id is SHA-256 of its body, its
 * sender and nonce are what the body says, and every signature is by a
 * distinct key of the sender and verifies. An admitted tx then goes through
 * the cache's harder cases: the same body with fewer signatures (a miss
 * that replaces the cached list), and a cache of two entries shared with two
 * other admitted txs (CLOCK replacement). Two more agencies have state that
 * cannot be read, so the callbacks' failures are reached.
 */
#include "bex.pb-c.h"
#include "fuzz_util.h"
#include "txcheck.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* libFuzzer's -max_len for this target (read by scripts/fuzz.sh); above the
 * checker's tx limit, so the size check is reached too. */
#define FUZZ_MAX_LEN 5000
#define TX_BYTES_MAX 4096
#define ARGS_BYTES_MAX 1024
#define NONCE_AHEAD_MAX 1000

struct agency {
    const char *id;
    unsigned keys[3];
    size_t nkeys;
    uint64_t last;
};

static const struct agency agencies[] = {
    {FUZZ_AGENCY_A, {0, 1, 2}, 3, FUZZ_AGENCY_A_LAST},
    {FUZZ_AGENCY_B, {3, 4}, 2, FUZZ_AGENCY_B_LAST},
    {FUZZ_AGENCY_NO_NONCE, {FUZZ_KEY_NO_NONCE}, 1, 0},
};

/* Two more admissible txs, to fill a small cache around an admitted input. */
static const struct fuzz_tx others[] = {
    {"other-a", FUZZ_CHAIN_ID, FUZZ_AGENCY_A, FUZZ_AGENCY_A_LAST + 3, 4, {2}, 1, 0},
    {"other-b", FUZZ_CHAIN_ID, FUZZ_AGENCY_B, FUZZ_AGENCY_B_LAST + 2, 4, {3, 4}, 2, 0},
};
static uint8_t other_tx[2][FUZZ_TX_BYTES_MAX];
static size_t other_len[2];

static struct crypto_pubkey pubs[FUZZ_KEYS];
static bool ready;

static const struct agency *agency_find(const char *id)
{
    for (size_t i = 0; i < BEX_ARRAY_LEN(agencies); i++) {
        if (strcmp(agencies[i].id, id) == 0)
            return &agencies[i];
    }
    return NULL;
}

static void hash(uint8_t out[TXCHECK_HASH_BYTES], const void *data, size_t len)
{
    crypto_sha256(out, data, len);
}

static int verify(const uint8_t pub[TXCHECK_PUB_BYTES], const uint8_t digest[TXCHECK_HASH_BYTES],
                  const uint8_t sig[TXCHECK_SIG_BYTES])
{
    struct crypto_pubkey pk;
    struct crypto_sig s;

    memcpy(pk.b, pub, sizeof(pk.b));
    memcpy(s.b, sig, sizeof(s.b));
    return crypto_verify(&pk, digest, &s);
}

static int keys_of(struct txcheck_keys *keys, const char *sender, void *user)
{
    const struct agency *a = agency_find(sender);

    (void)user;
    if (strcmp(sender, FUZZ_AGENCY_NO_KEYS) == 0)
        return -BEX_EIO;
    if (a == NULL)
        return -BEX_EUNKNOWN;
    keys->count = a->nkeys;
    for (size_t i = 0; i < a->nkeys; i++)
        memcpy(keys->key[i], pubs[a->keys[i]].b, TXCHECK_PUB_BYTES);
    return 0;
}

static int last_nonce(uint64_t *last, const char *sender, void *user)
{
    const struct agency *a = agency_find(sender);

    (void)user;
    if (strcmp(sender, FUZZ_AGENCY_NO_NONCE) == 0)
        return -BEX_EIO;
    *last = a != NULL ? a->last : 0;
    return 0;
}

static struct txcheck *checker(size_t cache_entries)
{
    struct txcheck_config cfg = {
        .chain_id = FUZZ_CHAIN_ID,
        .tx_bytes_max = TX_BYTES_MAX,
        .args_bytes_max = ARGS_BYTES_MAX,
        .nonce_ahead_max = NONCE_AHEAD_MAX,
        .cache_entries = cache_entries,
        .hash_seed = 0x6a09e667f3bcc908ULL,
        .crypto = {hash, verify},
        .keys = keys_of,
        .last_nonce = last_nonce,
    };
    struct txcheck *tc = NULL;

    if (txcheck_new(&tc, &cfg) != 0)
        fuzz_fail("txcheck_new refused a valid configuration");
    return tc;
}

static bool documented(int rc)
{
    return rc == 0 || rc == -BEX_ELIMIT || rc == -BEX_EDECODE || rc == -BEX_ECHAIN || rc == -BEX_EUNKNOWN ||
           rc == -BEX_ESIG || rc == -BEX_ENONCE || rc == -BEX_EIO;
}

/* Re-derives everything txcheck_tx() claims about an admitted tx. */
static void check_admitted(const struct txcheck_result *res, const uint8_t *data, size_t size)
{
    Bex__Tx *tx = bex__tx__unpack(NULL, size, data);
    Bex__TxBody *body;
    uint8_t id[CRYPTO_HASH_BYTES];

    FUZZ_CHECK(tx != NULL);
    body = bex__tx_body__unpack(NULL, tx->body.len, tx->body.data);
    FUZZ_CHECK(body != NULL);
    crypto_sha256(id, tx->body.data, tx->body.len);
    FUZZ_CHECK(res->has_id && memcmp(res->id, id, sizeof(id)) == 0);
    FUZZ_CHECK(strcmp(body->chain_id, FUZZ_CHAIN_ID) == 0);
    FUZZ_CHECK(strcmp(res->sender, body->sender) == 0);
    FUZZ_CHECK(res->nonce == body->nonce);

    const struct agency *a = agency_find(body->sender);
    FUZZ_CHECK(a != NULL);
    FUZZ_CHECK(res->last_nonce == a->last);
    FUZZ_CHECK(body->nonce > a->last && body->nonce - a->last <= NONCE_AHEAD_MAX);
    FUZZ_CHECK(body->args.len <= ARGS_BYTES_MAX);
    FUZZ_CHECK(tx->n_sigs >= 1 && tx->n_sigs <= TXCHECK_SIGS_MAX && res->signer_count == tx->n_sigs);
    for (size_t i = 0; i < tx->n_sigs; i++) {
        const Bex__Signature *s = tx->sigs[i];
        bool registered = false;
        FUZZ_CHECK(s->pubkey.len == CRYPTO_PUB_BYTES && s->sig.len == CRYPTO_SIG_BYTES);
        FUZZ_CHECK(memcmp(res->signers[i], s->pubkey.data, CRYPTO_PUB_BYTES) == 0);
        for (size_t k = 0; k < a->nkeys; k++)
            registered = registered || memcmp(pubs[a->keys[k]].b, s->pubkey.data, CRYPTO_PUB_BYTES) == 0;
        FUZZ_CHECK(registered);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(memcmp(tx->sigs[j]->pubkey.data, s->pubkey.data, CRYPTO_PUB_BYTES) != 0);
        FUZZ_CHECK(verify(s->pubkey.data, id, s->sig.data) == 0);
    }
    bex__tx_body__free_unpacked(body, NULL);
    bex__tx__free_unpacked(tx, NULL);
}

/*
 * An admitted tx in a cache of two entries with two other admitted txs: the
 * CLOCK replaces entries, and every tx is still admitted, from the cache or
 * verified again.
 */
static void check_eviction(const uint8_t *data, size_t size, const struct txcheck_result *admitted)
{
    static struct txcheck_result res;
    struct txcheck_stats st;
    struct txcheck *tc = checker(2);
    bool distinct = true;

    FUZZ_CHECK(txcheck_tx(tc, &res, data, size) == 0);
    for (size_t i = 0; i < 2; i++) {
        FUZZ_CHECK(txcheck_tx(tc, &res, other_tx[i], other_len[i]) == 0);
        distinct = distinct && memcmp(res.id, admitted->id, sizeof(res.id)) != 0;
    }
    FUZZ_CHECK(txcheck_tx(tc, &res, data, size) == 0);
    FUZZ_CHECK(txcheck_tx(tc, &res, other_tx[0], other_len[0]) == 0);
    txcheck_get_stats(tc, &st);
    FUZZ_CHECK(txcheck_cache_count(tc) <= 2);
    FUZZ_CHECK(!distinct || st.cache_evictions >= 1);
    txcheck_free(tc);
}

/*
 * The same body with only its first signature is another claim: it is
 * verified on its own, and then replaces the cached list of that id.
 */
static void check_other_sig_list(struct txcheck *tc, const uint8_t *data, size_t size)
{
    static struct txcheck_result res;
    static uint8_t fewer[FUZZ_MAX_LEN];
    struct txcheck_stats before, after;
    Bex__Tx *tx = bex__tx__unpack(NULL, size, data);

    FUZZ_CHECK(tx != NULL);
    if (tx->n_sigs < 2) {
        bex__tx__free_unpacked(tx, NULL);
        return;
    }
    size_t n_sigs = tx->n_sigs;
    tx->n_sigs = 1;
    FUZZ_CHECK(bex__tx__get_packed_size(tx) <= sizeof(fewer));
    size_t len = bex__tx__pack(tx, fewer);
    tx->n_sigs = n_sigs;
    bex__tx__free_unpacked(tx, NULL);

    txcheck_get_stats(tc, &before);
    FUZZ_CHECK(txcheck_tx(tc, &res, fewer, len) == 0);
    txcheck_get_stats(tc, &after);
    FUZZ_CHECK(!res.cached && after.verifies == before.verifies + 1 && res.signer_count == 1);
    FUZZ_CHECK(txcheck_tx(tc, &res, data, size) == 0);
    FUZZ_CHECK(!res.cached && txcheck_cache_count(tc) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct txcheck_result first, again, uncached;
    struct txcheck_stats before, after;

    if (size > FUZZ_MAX_LEN)
        return 0;
    if (!ready) {
        struct crypto_seckey sk;
        for (unsigned i = 0; i < FUZZ_KEYS; i++)
            fuzz_key(&sk, &pubs[i], i);
        crypto_wipe(&sk, sizeof(sk));
        for (size_t i = 0; i < 2; i++)
            other_len[i] = fuzz_make_tx(other_tx[i], sizeof(other_tx[i]), &others[i]);
        ready = true;
    }

    struct txcheck *tc = checker(4);
    struct txcheck *plain = checker(0);
    int rc = txcheck_tx(tc, &first, data, size);

    if (!documented(rc))
        fuzz_fail("txcheck_tx returned %d (%s), not a documented code", rc, bex_errname(rc));
    if (rc != 0) {
        FUZZ_CHECK(first.reason[0] != '\0');
        FUZZ_CHECK(memchr(first.reason, '\0', sizeof(first.reason)) != NULL);
        FUZZ_CHECK(first.signer_count == 0 && !first.cached);
    } else {
        FUZZ_CHECK(!first.cached);
        check_admitted(&first, data, size);
    }

    txcheck_get_stats(tc, &before);
    int rc_again = txcheck_tx(tc, &again, data, size);
    txcheck_get_stats(tc, &after);
    if (rc_again != rc)
        fuzz_fail("the same tx checked twice: %d then %d", rc, rc_again);
    FUZZ_CHECK(again.has_id == first.has_id);
    FUZZ_CHECK(!first.has_id || memcmp(again.id, first.id, sizeof(first.id)) == 0);
    if (rc == 0) {
        FUZZ_CHECK(again.cached && after.verifies == before.verifies && after.cache_hits == before.cache_hits + 1);
        FUZZ_CHECK(again.signer_count == first.signer_count);
        FUZZ_CHECK(memcmp(again.signers, first.signers, first.signer_count * TXCHECK_PUB_BYTES) == 0);
        FUZZ_CHECK(txcheck_cache_count(tc) == 1);
        check_other_sig_list(tc, data, size);
        check_eviction(data, size, &first);
    }

    int rc_plain = txcheck_tx(plain, &uncached, data, size);
    if (rc_plain != rc)
        fuzz_fail("with and without a cache: %d and %d", rc, rc_plain);
    FUZZ_CHECK(!uncached.cached && txcheck_cache_count(plain) == 0);

    /*
     * The check of a proposal's tx answers from the cache only for the very
     * bytes admitted, and then as it would without a cache.
     */
    int rc_signed_plain = txcheck_tx_signed(plain, &uncached, data, size);
    int rc_signed = txcheck_tx_signed(tc, &again, data, size);
    if (rc_signed != rc_signed_plain)
        fuzz_fail("txcheck_tx_signed with and without a cache: %d and %d", rc_signed, rc_signed_plain);
    FUZZ_CHECK(!uncached.cached);
    if (rc == 0)
        FUZZ_CHECK(rc_signed == 0 && again.cached && memcmp(again.id, first.id, sizeof(first.id)) == 0);
    txcheck_free(plain);
    txcheck_free(tc);
    return 0;
}
