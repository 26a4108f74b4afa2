/*
 * sim.h: the deterministic cluster simulator of the PBFT engine.
 *
 * One seed decides everything: the configuration, the network (delays,
 * drops, duplicates, reordering, partitions), crashes and restarts, and which
 * replicas are Byzantine and how. Time is simulated; nothing reads a clock
 * or calls rand(), so `sim --n N --seed S` replays a run exactly.
 */
#ifndef BEX_SIM_H
#define BEX_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pbft.h"

/* Fault classes; a seed picks a random mix of the enabled ones. */
enum sim_fault {
    SIM_F_DROP = 1u << 0,       /* lost messages */
    SIM_F_DUP = 1u << 1,        /* duplicated messages */
    SIM_F_DELAY = 1u << 2,      /* long, reordering delays */
    SIM_F_PARTITION = 1u << 3,  /* partitions that heal */
    SIM_F_CRASH = 1u << 4,      /* crash and restart from persisted state */
    SIM_F_EQUIVOCATE = 1u << 5, /* primary sends different digests to different replicas */
    SIM_F_SILENT = 1u << 6,     /* primary sends nothing */
    SIM_F_PARTIAL = 1u << 7,    /* primary pre-prepares to only some replicas */
    SIM_F_CONFLICT = 1u << 8,   /* votes for conflicting digests */
    SIM_F_REPLAY = 1u << 9,     /* replays old messages */
    SIM_F_FORGE = 1u << 10,     /* forged or corrupted signatures, forged certificates */
    SIM_F_FLOOD = 1u << 11,     /* floods VIEW-CHANGEs for random future views */
    SIM_F_BADNV = 1u << 12,     /* primary sends NEW-VIEWs with a wrong O set */
};
#define SIM_F_ALL ((1u << 13) - 1)
#define SIM_F_BYZANTINE                                                                    \
    (SIM_F_EQUIVOCATE | SIM_F_SILENT | SIM_F_PARTIAL | SIM_F_CONFLICT | SIM_F_REPLAY |       \
     SIM_F_FORGE | SIM_F_FLOOD | SIM_F_BADNV)

/* ---------------------------------------------------------------- utilities */

struct sim_rng {
    uint64_t s[4];
};

void sim_rng_seed(struct sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *r);
uint64_t sim_rng_below(struct sim_rng *r, uint64_t n);      /* uniform in [0, n), n > 0 */
uint64_t sim_rng_range(struct sim_rng *r, uint64_t lo, uint64_t hi); /* [lo, hi] */
bool sim_rng_chance(struct sim_rng *r, uint32_t per_mille);

/* A fast, deterministic, non-cryptographic 256-bit hash. */
void sim_hash(const uint8_t *bytes, size_t len, uint8_t out[PBFT_DIGEST_BYTES]);

/* Keys and the crypto table of one replica: signatures are keyed hashes. */
struct sim_keys {
    uint32_t n;
    uint64_t secret[PBFT_REPLICAS_MAX];
};

struct sim_signer {
    const struct sim_keys *keys;
    uint32_t self;
};

void sim_sign_as(const struct sim_keys *keys, uint32_t replica,
                 const uint8_t digest[PBFT_DIGEST_BYTES], uint8_t sig[PBFT_SIG_BYTES]);
struct pbft_crypto sim_crypto(struct sim_signer *signer);

/* ---------------------------------------------------------------- one run */

struct sim_options {
    uint32_t n;
    uint64_t seed;
    uint32_t faults; /* enabled classes */
    bool verbose;
};

struct sim_result {
    uint64_t blocks;       /* highest seq every honest replica executed */
    uint64_t view_changes; /* highest view any honest replica installed */
    uint64_t messages;     /* messages put on the network */
    uint64_t sim_ms;       /* simulated time */
    uint32_t faults;       /* the classes this seed actually used */
    bool violation;
    char why[512];
};

/* Runs one seed; returns 0, or -1 with res->violation and res->why set. */
int sim_run(const struct sim_options *opt, struct sim_result *res);

/* Frees the memory sim_run() keeps between seeds. */
void sim_release(void);

/* Fault class names: "drop,dup,..."; "all" and "none" too. Returns 0 or -1. */
int sim_faults_parse(const char *text, uint32_t *mask);
void sim_faults_format(uint32_t mask, char *buf, size_t len);

/* Formats the command that replays opt into buf. */
void sim_replay_command(const struct sim_options *opt, char *buf, size_t len);

#endif
