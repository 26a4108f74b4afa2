/*
 * fuzz_util.h: what the fuzz targets, the replay driver and the corpus
 * generator share: fixed keys, a scratch directory for loaders that read
 * files, a loopback connect for targets that drive a listener, and a
 * protobuf round-trip check.
 *
 * Everything here is deterministic: the same input takes the same path
 * through a target on every run, which is what lets libFuzzer minimize a
 * crash and lets `make test` replay a corpus.
 */
#ifndef BEX_FUZZ_UTIL_H
#define BEX_FUZZ_UTIL_H

#include "bex.h"
#include "config.h"
#include "crypto.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* The chain id of the txcheck target and of the corpus it is seeded with. */
#define FUZZ_CHAIN_ID "bex-fuzz"

/* Fixed keys derived from fixed seeds: the txcheck genesis uses the first
 * FUZZ_KEYS, the genesis of fuzz_genesis() the next ones. */
#define FUZZ_KEYS 8
#define FUZZ_KEYS_MAX 64

/* The passphrase of the keystore seeds. */
#define FUZZ_PASSPHRASE "fuzz-passphrase"

/* Longest path fuzz_path() builds, with its NUL. */
#define FUZZ_PATH_MAX 256

/*
 * The txcheck genesis: key i of FUZZ_KEYS belongs to the agency listed here.
 * city.traffic has keys 0, 1 (officers) and 2 (node key), last nonce 7;
 * health.dept has keys 3 and 4, last nonce 0; keys 5 and up belong to nobody.
 */
#define FUZZ_AGENCY_A "city.traffic"
#define FUZZ_AGENCY_A_LAST 7
#define FUZZ_AGENCY_B "health.dept"
#define FUZZ_AGENCY_B_LAST 0
#define FUZZ_KEY_UNREGISTERED 5
/* Agencies whose state cannot be read: the keys callback fails for the
 * first, the nonce callback for the second (key FUZZ_KEY_NO_NONCE is its). */
#define FUZZ_AGENCY_NO_KEYS "broken.keys"
#define FUZZ_AGENCY_NO_NONCE "broken.nonce"
#define FUZZ_KEY_NO_NONCE 6

/* A transaction for fuzz_make_tx(): contract "catalog", method "register". */
enum fuzz_tx_flags {
    FUZZ_TX_CORRUPT_SIG = 1 << 0,   /* flip a bit of the first signature */
    FUZZ_TX_UNKNOWN_FIELD = 1 << 1, /* append field 8 to the signed body */
    FUZZ_TX_LONG_METHOD = 1 << 2,   /* a method name of 33 bytes */
};

#define FUZZ_TX_ARGS_MAX 2048
#define FUZZ_TX_BYTES_MAX 8192

struct fuzz_tx {
    const char *name; /* of the seed file */
    const char *chain;
    const char *sender;
    uint64_t nonce;
    size_t args_len; /* at most FUZZ_TX_ARGS_MAX */
    unsigned signers[3];
    size_t nsigners;
    unsigned flags;
};

/*
 * The entry point every target defines: libFuzzer calls it, and so does the
 * replay driver (replay.c) for each file of a corpus. It returns 0.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Calls crypto_init() once per process (the fixed keys need the signing
 * context) and aborts when it fails: a target cannot run without it.
 */
void fuzz_crypto_init(void);

/* Writes key pair i (i < FUZZ_KEYS_MAX): sk = SHA-256("bex-fuzz-key" || i). */
void fuzz_key(struct crypto_seckey *sk, struct crypto_pubkey *pk, unsigned i);

/*
 * Encodes the Tx of spec, signed with the keys it names over SHA-256 of its
 * body, into out (cap bytes) and returns its length. Aborts when it does not fit.
 */
size_t fuzz_make_tx(uint8_t *out, size_t cap, const struct fuzz_tx *spec);

/*
 * Fills g with a valid genesis of chain FUZZ_CHAIN_ID: four agencies with two
 * officers (threshold 2) and a node each, on 127.0.0.1 ports 26601..26604,
 * checked with config_check_genesis(). Aborts when the check fails.
 */
void fuzz_genesis(struct genesis *g);

/*
 * Writes the path of name inside a scratch directory made once per process
 * (under /dev/shm when it exists, so loaders that fsync stay fast) and
 * removed with its contents at exit.
 */
void fuzz_path(char out[FUZZ_PATH_MAX], const char *name);

/* Replaces the file at path with data[0..len), without syncing. Aborts on failure. */
void fuzz_write_file(const char *path, const uint8_t *data, size_t len);

/*
 * Connects a new TCP socket to 127.0.0.1:port, where a listener of this
 * process (driven by a uv loop the caller turns) waits, and returns it; the
 * caller closes it. The socket is non-blocking, sends small writes at once
 * (TCP_NODELAY) and is reset on close (SO_LINGER 0). The connect completes
 * without the listener's loop turning; it is waited for up to 10 s. Aborts
 * when the socket cannot be made or the connect fails or does not complete.
 */
int fuzz_tcp_connect(uint16_t port);

/*
 * Decodes data[0..len) as a message of desc. When it decodes, checks that
 * the message is well formed and that re-encoding is stable:
 * encode(decode(encode(decode(x)))) == encode(decode(x)). Aborts when a
 * check fails. One known protobuf-c defect is let through (see
 * has_field_zero() in fuzz_util.c): a message holding field number 0 has
 * an encoding that does not decode. Returns the decoded message (free it with
 * protobuf_c_message_free_unpacked) or NULL when data does not decode.
 */
ProtobufCMessage *fuzz_roundtrip(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len);

/*
 * Round trips of the bytes a node decodes in turn (see fuzz_roundtrip):
 * an encoded Tx and then its TxBody; a BlockProposal's txs; an encoded
 * BlockProposal and then its txs. Bytes that do not decode are skipped.
 */
void fuzz_check_tx_bytes(const uint8_t *data, size_t len);
void fuzz_check_proposal_txs(const ProtobufCBinaryData *txs, size_t n);
void fuzz_check_proposal_bytes(const uint8_t *data, size_t len);

/* Prints "fuzz: " and the message to stderr, then aborts. */
void fuzz_fail(const char *fmt, ...) BEX_PRINTF(1, 2) __attribute__((noreturn));

/* Aborts with the failed condition when cond is false; on in every build. */
#define FUZZ_CHECK(cond)                                                                                               \
    ((cond) ? (void)0 : fuzz_fail("check failed: %s (%s:%d)", #cond, __FILE__, __LINE__))

#endif
