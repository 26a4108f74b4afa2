/*
 * sim_util.c: the simulator's PRNG (xoshiro256** seeded by splitmix64), its
 * hash and its keyed-hash signatures. Speed and determinism matter here, not
 * cryptographic strength: a Byzantine replica in the simulator only ever
 * signs with its own secret.
 */
#include "sim.h"

#include <string.h>

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

uint64_t sim_rng_next(struct sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sim_rng_below(struct sim_rng *r, uint64_t n)
{
    BEX_ASSERT(n > 0);
    return sim_rng_next(r) % n;
}

uint64_t sim_rng_range(struct sim_rng *r, uint64_t lo, uint64_t hi)
{
    BEX_ASSERT(lo <= hi);
    return lo + sim_rng_below(r, hi - lo + 1);
}

bool sim_rng_chance(struct sim_rng *r, uint32_t per_mille)
{
    return sim_rng_below(r, 1000) < per_mille;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return z ^ (z >> 33);
}

void sim_hash(const uint8_t *bytes, size_t len, uint8_t out[PBFT_DIGEST_BYTES])
{
    uint64_t h[4] = {0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull,
                     0xa54ff53a5f1d36f1ull};
    size_t i = 0;
    size_t word = 0;

    for (; i + 8 <= len; i += 8, word++) {
        uint64_t w;
        memcpy(&w, bytes + i, 8);
        h[word & 3] = mix(h[word & 3] ^ w) + rotl(h[(word + 1) & 3], 23);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, bytes + i, len - i);
        h[word & 3] = mix(h[word & 3] ^ w ^ 0x80) + rotl(h[(word + 1) & 3], 23);
    }
    for (int k = 0; k < 4; k++) {
        uint64_t v = mix(h[k] ^ (uint64_t)len ^ ((uint64_t)k << 56)) ^ mix(h[(k + 1) & 3] + h[(k + 2) & 3]);
        memcpy(out + 8 * k, &v, 8);
    }
}

void sim_sign_as(const struct sim_keys *keys, uint32_t replica,
                 const uint8_t digest[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES])
{
    uint8_t buf[8 + PBFT_DIGEST_BYTES + 1];

    BEX_ASSERT(replica < keys->n);
    memcpy(buf, &keys->secret[replica], 8);
    memcpy(buf + 8, digest, PBFT_DIGEST_BYTES);
    buf[sizeof(buf) - 1] = 1;
    sim_hash(buf, sizeof(buf), sig);
    buf[sizeof(buf) - 1] = 2;
    sim_hash(buf, sizeof(buf), sig + PBFT_DIGEST_BYTES);
}

static void sign_cb(void *ctx, const uint8_t digest[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES])
{
    const struct sim_signer *s = ctx;
    sim_sign_as(s->keys, s->self, digest, sig);
}

static bool verify_cb(void *ctx, uint32_t replica, const uint8_t digest[PBFT_DIGEST_BYTES],
                      const uint8_t sig[PBFT_SIG_BYTES])
{
    const struct sim_signer *s = ctx;
    uint8_t want[PBFT_SIG_BYTES];

    if (replica >= s->keys->n)
        return false;
    sim_sign_as(s->keys, replica, digest, want);
    return memcmp(want, sig, PBFT_SIG_BYTES) == 0;
}

static void hash_cb(void *ctx, const uint8_t *bytes, size_t len, uint8_t out[PBFT_DIGEST_BYTES])
{
    (void)ctx;
    sim_hash(bytes, len, out);
}

struct pbft_crypto sim_crypto(struct sim_signer *signer)
{
    struct pbft_crypto c = {sign_cb, verify_cb, hash_cb, signer};
    return c;
}

static const char *const fault_names[] = {"drop",    "dup",    "delay",    "partition", "crash",
                                          "equivocate", "silent", "partial", "conflict",
                                          "replay",  "forge",  "flood",    "badnv"};

_Static_assert(BEX_ARRAY_LEN(fault_names) == 13, "one name per fault class");

int sim_faults_parse(const char *text, uint32_t *mask)
{
    char buf[256];
    char *save = NULL;

    if (strlen(text) >= sizeof(buf))
        return -1;
    strcpy(buf, text);
    *mask = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        if (strcmp(tok, "all") == 0) {
            *mask |= SIM_F_ALL;
            continue;
        }
        if (strcmp(tok, "none") == 0)
            continue;
        for (size_t i = 0; i < BEX_ARRAY_LEN(fault_names); i++) {
            if (strcmp(tok, fault_names[i]) == 0) {
                *mask |= 1u << i;
                found = true;
            }
        }
        if (!found)
            return -1;
    }
    return 0;
}

void sim_faults_format(uint32_t mask, char *buf, size_t len)
{
    size_t used = 0;

    BEX_ASSERT(len > 0);
    buf[0] = 0;
    if ((mask & SIM_F_ALL) == SIM_F_ALL) {
        snprintf(buf, len, "all");
        return;
    }
    if (mask == 0) {
        snprintf(buf, len, "none");
        return;
    }
    for (size_t i = 0; i < BEX_ARRAY_LEN(fault_names); i++) {
        if (mask & (1u << i)) {
            int w = snprintf(buf + used, len - used, "%s%s", used ? "," : "", fault_names[i]);
            if (w < 0 || (size_t)w >= len - used)
                return;
            used += (size_t)w;
        }
    }
}
