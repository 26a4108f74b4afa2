/*
 * txcheck.c: admission checks of a transaction and the verified-signature
 * cache. The order of the checks is cheapest first, so a flood of replayed or
 * foreign transactions costs decoding and a few comparisons, and only a tx
 * that passes everything else reaches the ECDSA verifications.
 */
#include "txcheck.h"

#include "bex.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One remembered check: the encoded tx (by digest) whose id this is passed
 * every check but the nonce, signatures included. A hit needs the same id
 * and the same bytes: the same body carrying other signatures, or encoded
 * otherwise, is a different claim and is checked on its own.
 */
struct cache_entry {
    uint8_t id[TXCHECK_HASH_BYTES];
    uint8_t tx_digest[TXCHECK_HASH_BYTES];
    int32_t next; /* next entry of the same bucket, -1 ends the chain */
    bool referenced;
};

struct txcheck {
    struct txcheck_config cfg;
    char chain_id[TXCHECK_CHAIN_ID_BYTES_MAX + 1];
    uint8_t *scratch; /* tx_bytes_max bytes: the re-encoded body */
    struct cache_entry *cache;
    size_t cache_count; /* entries [0, cache_count) are in use */
    size_t hand;        /* the CLOCK hand */
    int32_t *buckets;   /* head entry per bucket, -1 when empty */
    size_t bucket_mask;
    struct txcheck_stats stats;
};

_Static_assert(TXCHECK_CACHE_ENTRIES_LIMIT < INT32_MAX, "cache indexes fit an int32_t");

/* The splitmix64 finalizer: spreads a seeded key over all 64 bits. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static size_t bucket_of(const struct txcheck *tc, const uint8_t id[TXCHECK_HASH_BYTES])
{
    uint64_t k;
    memcpy(&k, id, sizeof k);
    return (size_t)(mix64(k ^ tc->cfg.hash_seed) & tc->bucket_mask);
}

static int32_t cache_find(const struct txcheck *tc, const uint8_t id[TXCHECK_HASH_BYTES])
{
    for (int32_t i = tc->buckets[bucket_of(tc, id)]; i >= 0; i = tc->cache[i].next) {
        if (memcmp(tc->cache[i].id, id, TXCHECK_HASH_BYTES) == 0)
            return i;
    }
    return -1;
}

static void cache_unlink(struct txcheck *tc, int32_t victim)
{
    int32_t *link = &tc->buckets[bucket_of(tc, tc->cache[victim].id)];
    while (*link != victim) {
        BEX_ASSERT(*link >= 0);
        link = &tc->cache[*link].next;
    }
    *link = tc->cache[victim].next;
}

/*
 * Picks the slot for a new entry: a free one while the cache fills, then the
 * CLOCK victim, which gives each entry a second chance when it was hit since
 * the hand last passed. The loop ends within two turns of the hand.
 */
static int32_t cache_take_slot(struct txcheck *tc)
{
    if (tc->cache_count < tc->cfg.cache_entries)
        return (int32_t)tc->cache_count++;
    for (;;) {
        struct cache_entry *e = &tc->cache[tc->hand];
        int32_t i = (int32_t)tc->hand;
        tc->hand = (tc->hand + 1) % tc->cfg.cache_entries;
        if (e->referenced) {
            e->referenced = false;
            continue;
        }
        cache_unlink(tc, i);
        tc->stats.cache_evictions++;
        return i;
    }
}

static void cache_put(struct txcheck *tc, const uint8_t id[TXCHECK_HASH_BYTES],
                      const uint8_t tx_digest[TXCHECK_HASH_BYTES])
{
    int32_t i = cache_find(tc, id);
    if (i < 0) {
        i = cache_take_slot(tc);
        size_t b = bucket_of(tc, id);
        memcpy(tc->cache[i].id, id, TXCHECK_HASH_BYTES);
        tc->cache[i].next = tc->buckets[b];
        tc->buckets[b] = i;
    }
    memcpy(tc->cache[i].tx_digest, tx_digest, TXCHECK_HASH_BYTES);
    tc->cache[i].referenced = true;
    BEX_ASSERT(cache_find(tc, id) == i);
}

int txcheck_new(struct txcheck **out, const struct txcheck_config *cfg)
{
    struct txcheck *tc = NULL;
    int rc = -BEX_EINVAL;
    size_t chain_len;

    *out = NULL;
    if (cfg->chain_id == NULL || cfg->crypto.sha256 == NULL || cfg->crypto.verify == NULL || cfg->keys == NULL ||
        cfg->last_nonce == NULL)
        goto fail;
    chain_len = strnlen(cfg->chain_id, TXCHECK_CHAIN_ID_BYTES_MAX + 1);
    if (chain_len == 0 || chain_len > TXCHECK_CHAIN_ID_BYTES_MAX)
        goto fail;
    if (cfg->tx_bytes_max == 0 || cfg->tx_bytes_max > TXCHECK_TX_BYTES_LIMIT)
        goto fail;
    if (cfg->args_bytes_max > cfg->tx_bytes_max || cfg->nonce_ahead_max == 0)
        goto fail;
    if (cfg->cache_entries > TXCHECK_CACHE_ENTRIES_LIMIT)
        goto fail;

    rc = -BEX_ENOMEM;
    if ((tc = calloc(1, sizeof *tc)) == NULL)
        goto fail;
    tc->cfg = *cfg;
    memcpy(tc->chain_id, cfg->chain_id, chain_len);
    tc->cfg.chain_id = tc->chain_id;
    if ((tc->scratch = malloc(cfg->tx_bytes_max)) == NULL)
        goto fail;
    if (cfg->cache_entries > 0) {
        size_t nbuckets = 1;
        while (nbuckets < cfg->cache_entries)
            nbuckets <<= 1;
        tc->bucket_mask = nbuckets - 1;
        if ((tc->cache = calloc(cfg->cache_entries, sizeof *tc->cache)) == NULL)
            goto fail;
        if ((tc->buckets = malloc(nbuckets * sizeof *tc->buckets)) == NULL)
            goto fail;
        for (size_t i = 0; i < nbuckets; i++)
            tc->buckets[i] = -1;
    }
    *out = tc;
    return 0;
fail:
    txcheck_free(tc);
    return rc;
}

void txcheck_free(struct txcheck *tc)
{
    if (tc == NULL)
        return;
    free(tc->scratch);
    free(tc->cache);
    free(tc->buckets);
    free(tc);
}

/* Writes the reason text for a rejection and returns the code unchanged. */
BEX_PRINTF(3, 4)
static int reject(struct txcheck_result *res, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
    return rc;
}

/* Reads a varint at p[0..len) into *v. Returns the bytes it took, 0 when malformed. */
static size_t read_varint(uint64_t *v, const uint8_t *p, size_t len)
{
    *v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if ((p[i] & 0x80) == 0)
            return i + 1;
    }
    return 0;
}

/*
 * Steps over the top-level field of an encoded message at p[*at..len): sets
 * its number, and for a length-delimited field its bytes (*data is NULL for
 * the other wire types). False when the wire format is malformed.
 */
static bool next_field(const uint8_t *p, size_t len, size_t *at, uint64_t *field, const uint8_t **data,
                       size_t *data_len)
{
    uint64_t tag, n;
    size_t used = read_varint(&tag, p + *at, len - *at);
    if (used == 0)
        return false;
    *at += used;
    *field = tag >> 3;
    *data = NULL;
    switch (tag & 7) {
    case 0:
        if ((used = read_varint(&n, p + *at, len - *at)) == 0)
            return false;
        *at += used;
        break;
    case 1:
        *at += 8;
        break;
    case 2:
        if ((used = read_varint(&n, p + *at, len - *at)) == 0 || n > len - *at - used)
            return false;
        *data = p + *at + used;
        *data_len = (size_t)n;
        *at += used + (size_t)n;
        break;
    case 5:
        *at += 4;
        break;
    default:
        return false;
    }
    return *at <= len;
}

/*
 * Counts the top-level occurrences of one field of an encoded message
 * without decoding it. protobuf-c allocates a struct for every repeated
 * element before the count can be seen, so a 1 MiB tx of empty signatures
 * (2 bytes each) would cost tens of megabytes to refuse; counting first keeps
 * a hostile tx's cost proportional to its size. Returns -1 when the wire
 * format is malformed, which the decoder then reports.
 */
static long count_field(const uint8_t *p, size_t len, uint64_t field)
{
    long count = 0;
    size_t at = 0;
    while (at < len) {
        uint64_t f;
        const uint8_t *data;
        size_t data_len;
        if (!next_field(p, len, &at, &f, &data, &data_len))
            return -1;
        count += f == field;
    }
    return count;
}

/*
 * The body of an encoded Tx (field 1, length-delimited) without decoding it.
 * False when it is missing, given twice or not length-delimited, or the wire
 * format is malformed: the full check then decides what the tx is.
 */
static bool tx_body(const uint8_t *tx, size_t tx_len, const uint8_t **body, size_t *body_len)
{
    size_t at = 0;
    bool found = false;
    while (at < tx_len) {
        uint64_t f;
        const uint8_t *data;
        size_t data_len;
        if (!next_field(tx, tx_len, &at, &f, &data, &data_len))
            return false;
        if (f != 1)
            continue;
        if (found || data == NULL)
            return false;
        found = true;
        *body = data;
        *body_len = data_len;
    }
    return found;
}

/* True when s is 1..max bytes long and every byte is in the set allowed. */
static bool name_ok(const char *s, size_t max, const char *allowed)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    return strspn(s, allowed) == n;
}

static const char SENDER_CHARS[] = "abcdefghijklmnopqrstuvwxyz0123456789._-";
static const char NAME_CHARS[] = "abcdefghijklmnopqrstuvwxyz_.";

/*
 * Bounds and character sets of the body fields. A length above its bound is
 * ELIMIT, a name outside its set EDECODE; neither text is echoed, since it is
 * not known to be printable.
 */
static int check_fields(const struct txcheck *tc, struct txcheck_result *res, const Bex__TxBody *body)
{
    if (strnlen(body->chain_id, TXCHECK_CHAIN_ID_BYTES_MAX + 1) > TXCHECK_CHAIN_ID_BYTES_MAX)
        return reject(res, -BEX_ELIMIT, "chain id longer than %d bytes", TXCHECK_CHAIN_ID_BYTES_MAX);
    if (strnlen(body->sender, TXCHECK_SENDER_BYTES_MAX + 1) > TXCHECK_SENDER_BYTES_MAX)
        return reject(res, -BEX_ELIMIT, "sender longer than %d bytes", TXCHECK_SENDER_BYTES_MAX);
    if (!name_ok(body->sender, TXCHECK_SENDER_BYTES_MAX, SENDER_CHARS))
        return reject(res, -BEX_EDECODE, "sender must be [a-z0-9._-]+");
    if (strnlen(body->contract, TXCHECK_NAME_BYTES_MAX + 1) > TXCHECK_NAME_BYTES_MAX)
        return reject(res, -BEX_ELIMIT, "contract name longer than %d bytes", TXCHECK_NAME_BYTES_MAX);
    if (!name_ok(body->contract, TXCHECK_NAME_BYTES_MAX, NAME_CHARS))
        return reject(res, -BEX_EDECODE, "contract name must be [a-z_.]+");
    if (strnlen(body->method, TXCHECK_NAME_BYTES_MAX + 1) > TXCHECK_NAME_BYTES_MAX)
        return reject(res, -BEX_ELIMIT, "method name longer than %d bytes", TXCHECK_NAME_BYTES_MAX);
    if (!name_ok(body->method, TXCHECK_NAME_BYTES_MAX, NAME_CHARS))
        return reject(res, -BEX_EDECODE, "method name must be [a-z_.]+");
    if (body->args.len > tc->cfg.args_bytes_max)
        return reject(res, -BEX_ELIMIT, "args are %zu bytes, limit %zu", body->args.len, tc->cfg.args_bytes_max);
    return 0;
}

/*
 * The body must be exactly what protobuf-c would encode for its fields: no
 * unknown fields, no repeated scalar, no string with an embedded NUL (which
 * would read shorter in C than what was signed). Then every node and the
 * contracts read the same values from the same signed bytes.
 */
static int check_canonical(struct txcheck *tc, struct txcheck_result *res, const Bex__TxBody *body,
                           const uint8_t *bytes, size_t len)
{
    if (body->base.n_unknown_fields != 0)
        return reject(res, -BEX_EDECODE, "body has unknown fields");
    if (bex__tx_body__get_packed_size(body) != len)
        return reject(res, -BEX_EDECODE, "body is not canonically encoded");
    BEX_ASSERT(len <= tc->cfg.tx_bytes_max);
    if (bex__tx_body__pack(body, tc->scratch) != len || memcmp(tc->scratch, bytes, len) != 0)
        return reject(res, -BEX_EDECODE, "body is not canonically encoded");
    return 0;
}

/* Every signature is a well-formed pair by a distinct key registered to the sender. */
static int check_signers(struct txcheck_result *res, const Bex__Tx *msg, const struct txcheck_keys *keys)
{
    if (msg->n_sigs == 0)
        return reject(res, -BEX_ESIG, "no signatures");
    for (size_t i = 0; i < msg->n_sigs; i++) {
        const Bex__Signature *s = msg->sigs[i];
        bool registered = false;
        if (s->pubkey.len != TXCHECK_PUB_BYTES)
            return reject(res, -BEX_EDECODE, "sigs[%zu]: pubkey is %zu bytes, expected %d", i, s->pubkey.len,
                          TXCHECK_PUB_BYTES);
        if (s->sig.len != TXCHECK_SIG_BYTES)
            return reject(res, -BEX_EDECODE, "sigs[%zu]: signature is %zu bytes, expected %d", i, s->sig.len,
                          TXCHECK_SIG_BYTES);
        for (size_t k = 0; k < keys->count && !registered; k++)
            registered = memcmp(keys->key[k], s->pubkey.data, TXCHECK_PUB_BYTES) == 0;
        if (!registered)
            return reject(res, -BEX_ESIG, "sigs[%zu]: key is not registered to %s", i, res->sender);
        for (size_t j = 0; j < i; j++) {
            if (memcmp(msg->sigs[j]->pubkey.data, s->pubkey.data, TXCHECK_PUB_BYTES) == 0)
                return reject(res, -BEX_ESIG, "sigs[%zu]: same key as sigs[%zu]", i, j);
        }
    }
    return 0;
}

static int check_nonce(struct txcheck *tc, struct txcheck_result *res)
{
    uint64_t last = 0;
    int rc = tc->cfg.last_nonce(&last, res->sender, tc->cfg.user);
    if (rc != 0)
        return reject(res, rc < 0 ? rc : -BEX_EIO, "reading the nonce of %s: %s", res->sender, bex_strerror(rc));
    res->last_nonce = last;
    if (res->nonce <= last)
        return reject(res, -BEX_ENONCE, "nonce %llu already used (last %llu)", (unsigned long long)res->nonce,
                      (unsigned long long)last);
    if (res->nonce - last > tc->cfg.nonce_ahead_max)
        return reject(res, -BEX_ENONCE, "nonce %llu too far ahead (last %llu, at most %llu ahead)",
                      (unsigned long long)res->nonce, (unsigned long long)last,
                      (unsigned long long)tc->cfg.nonce_ahead_max);
    return 0;
}

/*
 * Verifies every signature over the tx id (SHA-256 of the body), unless the
 * cache holds this id with this exact signature list.
 */
static int check_signatures(struct txcheck *tc, struct txcheck_result *res, const Bex__Tx *msg, const uint8_t *tx,
                            size_t tx_len)
{
    uint8_t digest[TXCHECK_HASH_BYTES];

    BEX_ASSERT(msg->n_sigs <= TXCHECK_SIGS_MAX);
    if (tc->cfg.cache_entries > 0) {
        tc->cfg.crypto.sha256(digest, tx, tx_len);
        int32_t i = cache_find(tc, res->id);
        if (i >= 0 && memcmp(tc->cache[i].tx_digest, digest, TXCHECK_HASH_BYTES) == 0) {
            tc->cache[i].referenced = true;
            tc->stats.cache_hits++;
            res->cached = true;
            return 0;
        }
        tc->stats.cache_misses++;
    }
    for (size_t i = 0; i < msg->n_sigs; i++) {
        tc->stats.verifies++;
        if (tc->cfg.crypto.verify(msg->sigs[i]->pubkey.data, res->id, msg->sigs[i]->sig.data) != 0)
            return reject(res, -BEX_ESIG, "sigs[%zu] does not verify", i);
    }
    if (tc->cfg.cache_entries > 0)
        cache_put(tc, res->id, digest);
    return 0;
}

static int check_tx(struct txcheck *tc, struct txcheck_result *res, const uint8_t *tx, size_t tx_len, bool nonce)
{
    Bex__Tx *msg = NULL;
    Bex__TxBody *body = NULL;
    struct txcheck_keys keys;
    int rc;

    memset(res, 0, sizeof *res);
    if (tx_len > tc->cfg.tx_bytes_max) {
        rc = reject(res, -BEX_ELIMIT, "tx is %zu bytes, limit %zu", tx_len, tc->cfg.tx_bytes_max);
        goto fail;
    }
    if (tx == NULL || tx_len == 0) {
        rc = reject(res, -BEX_EDECODE, "empty tx");
        goto fail;
    }
    long nsigs = count_field(tx, tx_len, 2);
    if (nsigs > TXCHECK_SIGS_MAX) {
        rc = reject(res, -BEX_ELIMIT, "%ld signatures, limit %d", nsigs, TXCHECK_SIGS_MAX);
        goto fail;
    }
    if (nsigs < 0 || (msg = bex__tx__unpack(NULL, tx_len, tx)) == NULL) {
        rc = reject(res, -BEX_EDECODE, "not a bex.Tx");
        goto fail;
    }
    if (msg->n_sigs > TXCHECK_SIGS_MAX) {
        rc = reject(res, -BEX_ELIMIT, "%zu signatures, limit %d", msg->n_sigs, TXCHECK_SIGS_MAX);
        goto fail;
    }
    if (msg->body.len == 0) {
        rc = reject(res, -BEX_EDECODE, "empty body");
        goto fail;
    }
    tc->cfg.crypto.sha256(res->id, msg->body.data, msg->body.len);
    res->has_id = true;
    if ((body = bex__tx_body__unpack(NULL, msg->body.len, msg->body.data)) == NULL) {
        rc = reject(res, -BEX_EDECODE, "body is not a bex.TxBody");
        goto fail;
    }
    if ((rc = check_canonical(tc, res, body, msg->body.data, msg->body.len)) != 0)
        goto fail;
    if ((rc = check_fields(tc, res, body)) != 0)
        goto fail;
    memcpy(res->sender, body->sender, strlen(body->sender) + 1);
    res->nonce = body->nonce;
    if (strcmp(body->chain_id, tc->chain_id) != 0) {
        rc = reject(res, -BEX_ECHAIN, "wrong chain id (this node is on %s)", tc->chain_id);
        goto fail;
    }

    memset(&keys, 0, sizeof keys);
    if ((rc = tc->cfg.keys(&keys, res->sender, tc->cfg.user)) != 0) {
        if (rc == -BEX_EUNKNOWN)
            reject(res, rc, "unknown sender %s", res->sender);
        else
            rc = reject(res, rc < 0 ? rc : -BEX_EIO, "reading the keys of %s: %s", res->sender, bex_strerror(rc));
        goto fail;
    }
    BEX_ASSERT(keys.count <= TXCHECK_KEYS_MAX);
    if ((rc = check_signers(res, msg, &keys)) != 0)
        goto fail;
    if (nonce && (rc = check_nonce(tc, res)) != 0)
        goto fail;
    if ((rc = check_signatures(tc, res, msg, tx, tx_len)) != 0)
        goto fail;

    res->signer_count = msg->n_sigs;
    for (size_t i = 0; i < msg->n_sigs; i++)
        memcpy(res->signers[i], msg->sigs[i]->pubkey.data, TXCHECK_PUB_BYTES);
    tc->stats.accepted++;
    /* Success shares the cleanup below with every refusal. */
fail:
    if (rc != 0) {
        BEX_ASSERT(rc < 0);
        BEX_ASSERT(res->reason[0] != '\0');
        if (rc > -BEX_E_COUNT)
            tc->stats.rejected[-rc]++;
        res->signer_count = 0;
        res->cached = false;
    }
    if (body != NULL)
        bex__tx_body__free_unpacked(body, NULL);
    if (msg != NULL)
        bex__tx__free_unpacked(msg, NULL);
    return rc;
}

int txcheck_tx(struct txcheck *tc, struct txcheck_result *res, const uint8_t *tx, size_t tx_len)
{
    return check_tx(tc, res, tx, tx_len, true);
}

/*
 * The txs of a proposal are mostly txs this node checked when they reached
 * its pool, so the same bytes found in the cache pass at the cost of two
 * hashes, without decoding them again.
 */
int txcheck_tx_signed(struct txcheck *tc, struct txcheck_result *res, const uint8_t *tx, size_t tx_len)
{
    const uint8_t *body;
    size_t body_len;
    int32_t i;

    if (tc->cfg.cache_entries > 0 && tx != NULL && tx_len <= tc->cfg.tx_bytes_max &&
        tx_body(tx, tx_len, &body, &body_len)) {
        uint8_t id[TXCHECK_HASH_BYTES], digest[TXCHECK_HASH_BYTES];

        tc->cfg.crypto.sha256(id, body, body_len);
        if ((i = cache_find(tc, id)) >= 0) {
            tc->cfg.crypto.sha256(digest, tx, tx_len);
            if (memcmp(tc->cache[i].tx_digest, digest, TXCHECK_HASH_BYTES) == 0) {
                memset(res, 0, sizeof *res);
                memcpy(res->id, id, sizeof res->id);
                res->has_id = true;
                res->cached = true;
                tc->cache[i].referenced = true;
                tc->stats.cache_hits++;
                tc->stats.accepted++;
                return 0;
            }
        }
    }
    return check_tx(tc, res, tx, tx_len, false);
}

void txcheck_get_stats(const struct txcheck *tc, struct txcheck_stats *out)
{
    *out = tc->stats;
}

size_t txcheck_cache_count(const struct txcheck *tc)
{
    return tc->cache_count;
}
