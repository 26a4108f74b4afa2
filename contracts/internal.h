/*
 * internal.h: what the runtime, the executor and the native contracts share
 * inside contracts/. Nothing outside contracts/ includes it.
 *
 * A contract method gets a struct contract_ctx. It reads any contract's
 * state but writes only under "<its contract>/"; every read, write and
 * byte is charged to the transaction's work budget. A method returns 0 or
 * a negative BEX_E* code, normally through contract__fail(), which also
 * sets the receipt message. Storage and allocation failures are not receipt
 * codes: they are sticky in c->fatal and abort the block on this node.
 */
#ifndef BEX_CONTRACTS_INTERNAL_H
#define BEX_CONTRACTS_INTERNAL_H

#include "contract.h"

/* ------------------------------------------------------------------ bytes */

/* Byte order of keys: memcmp, then the shorter first. */
int contract__keycmp(const char *a, size_t alen, const char *b, size_t blen);
void contract__put_u64be(uint8_t out[8], uint64_t v);
uint64_t contract__get_u64be(const uint8_t in[8]);

/* ---------------------------------------------------------------- overlay */

struct overlay_entry {
    char *key; /* NUL-terminated */
    size_t key_len;
    uint8_t *val; /* NULL when del */
    size_t val_len;
    bool del;
};

struct overlay_node;
struct overlay_chunk;

/*
 * An ordered set of pending writes (a balanced tree, see overlay.c). Entry
 * pointers, and the key and value pointers in them, stay valid until the
 * overlay is cleared, except that a value pointer dies when its key is
 * written again. bytes counts keys and values held.
 */
struct overlay {
    struct overlay_node *root;
    size_t count;
    size_t bytes;
    struct overlay_node *heap;    /* nodes that ever had a heap slot */
    struct overlay_chunk *chunks; /* the arena; cur is the one being filled */
    struct overlay_chunk *cur;
};

void contract__overlay_init(struct overlay *o);
/* Frees everything; o is then as after init. */
void contract__overlay_close(struct overlay *o);
/* Empties o, keeping some of its memory for reuse. */
void contract__overlay_clear(struct overlay *o);

/* The entry of key (a put or a delete), or NULL. O(log n). */
const struct overlay_entry *contract__overlay_get(const struct overlay *o, const char *key, size_t key_len);

/* The first entry whose key sorts at or after key, or NULL. O(log n). */
const struct overlay_entry *contract__overlay_seek(const struct overlay *o, const char *key, size_t key_len);

/* In-order walk: the smallest entry, and the one after en (NULL at the end). */
const struct overlay_entry *contract__overlay_first(const struct overlay *o);
const struct overlay_entry *contract__overlay_next(const struct overlay_entry *en);

/* Puts (val non-NULL) or marks deleted (val NULL). O(log n). Errors: BEX_ENOMEM. */
BEX_MUST_USE int contract__overlay_set(struct overlay *o, const char *key, size_t key_len, const uint8_t *val,
                             size_t val_len);

/* Applies every entry of src to dst in key order. Errors: BEX_ENOMEM. */
BEX_MUST_USE int contract__overlay_merge(struct overlay *dst, const struct overlay *src);

/* ------------------------------------------------------------------ context */

/* The node key alone may sign this method (automatic owner services). */
#define CONTRACT_NODE_KEY_OK 1u

#define CONTRACT_ID_BYTES_MAX 64       /* agency id, role, field name */
#define CONTRACT_RESOURCE_BYTES_MAX 129 /* "<agency>/<name>" */
#define CONTRACT_TEXT_BYTES_MAX 2000    /* free text: title, purpose, ... */
#define CONTRACT_FIELDS_MAX 64
#define CONTRACT_ROLES_MAX 32
#define CONTRACT_RECORD_KEY_BYTES_MAX 64

struct contract_event {
    char kind[32];
    uint8_t *data;
    size_t len;
};

/* An allocator for protobuf-c that remembers that an allocation failed. */
struct contract_alloc {
    ProtobufCAllocator pb;
    bool failed;
};

struct contract_ctx {
    /* The transaction: set by the executor, read by methods. */
    const char *sender;
    const Bex__Agency *agency; /* the sender's registry entry */
    const uint8_t *signers;    /* signer_count keys of CONTRACT_PUBKEY_BYTES */
    size_t signer_count;
    const uint8_t *officers[CONTRACT_SIGNERS_MAX]; /* distinct officer keys that signed */
    size_t officer_count;
    bool node_signed;
    const uint8_t *tx_id;
    uint32_t tx_index;
    uint64_t height;
    uint64_t time_ms; /* block time; for queries the last block's */

    /* The runtime. */
    const char *contract; /* writes stay under "<contract>/" */
    const struct exec_store *store;
    struct overlay *block; /* NULL for queries */
    struct overlay *tx;    /* NULL for queries */
    uint64_t budget;
    uint64_t used;
    bool budget_out;
    int fatal; /* sticky negative code: storage failure or ENOMEM */
    struct contract_alloc alloc;

    /* What the method leaves behind. */
    char message[CONTRACT_MESSAGE_BYTES_MAX];
    char detail[CONTRACT_DETAIL_BYTES_MAX];
    char resource[CONTRACT_RESOURCE_BYTES_MAX + 1];
    uint8_t record_key[CONTRACT_RECORD_KEY_BYTES_MAX];
    size_t record_key_len;
    uint64_t grant_id;
    uint64_t access_id;
    struct contract_event events[CONTRACT_EVENTS_PER_TX_MAX];
    size_t event_count;
    uint8_t *result;
    size_t result_len;
};

/* Prepares c for one method or query; the caller then sets its fields. */
void contract__ctx_init(struct contract_ctx *c, const struct exec_store *store, uint64_t budget);

/* Frees what the method left (events, result); keeps the struct reusable. */
void contract__ctx_close(struct contract_ctx *c);

/* Sets the receipt message and returns -code. */
BEX_MUST_USE int contract__fail(struct contract_ctx *c, int code, const char *fmt, ...) BEX_PRINTF(3, 4);

/* Makes s valid text in place: no control characters, valid UTF-8. */
void contract__sanitize(char *s);

/* Sets the audit detail of a successful call. */
void contract__detail(struct contract_ctx *c, const char *fmt, ...) BEX_PRINTF(2, 3);

/* Records what the transaction is about, for the audit entry. */
void contract__subject(struct contract_ctx *c, const char *resource, const uint8_t *record_key,
                       size_t record_key_len);

/* Charges units of work; -BEX_EBUDGET (sticky) once the budget is spent. */
BEX_MUST_USE int contract__charge(struct contract_ctx *c, uint64_t units);

/* Formats a state key into buf (CONTRACT_KEY_BYTES_MAX); returns its length or -BEX_ELIMIT. */
BEX_MUST_USE int contract__key(char *buf, const char *fmt, ...) BEX_PRINTF(2, 3);

/*
 * State access. get: 0 with a borrowed value (valid until the next state
 * call on c), or -BEX_ENOTFOUND. put/del: only under "<contract>/".
 */
BEX_MUST_USE int contract__get(struct contract_ctx *c, const uint8_t **val, size_t *len, const char *key);
BEX_MUST_USE int contract__put(struct contract_ctx *c, const char *key, const uint8_t *val, size_t len);
BEX_MUST_USE int contract__del(struct contract_ctx *c, const char *key);

/* Reads and decodes a message (free with contract__free); -BEX_ENOTFOUND. */
BEX_MUST_USE int contract__get_msg(struct contract_ctx *c, ProtobufCMessage **out, const char *key,
                                   const ProtobufCMessageDescriptor *desc);
BEX_MUST_USE int contract__put_msg(struct contract_ctx *c, const char *key, const ProtobufCMessage *m);
void contract__free(struct contract_ctx *c, void *m);

/* u64 values stored big-endian (8 bytes); get returns -BEX_ENOTFOUND. */
BEX_MUST_USE int contract__get_u64(struct contract_ctx *c, uint64_t *v, const char *key);
BEX_MUST_USE int contract__put_u64(struct contract_ctx *c, const char *key, uint64_t v);

/* Marks state as corrupt (sticky, fatal for the block) and returns the code. */
BEX_MUST_USE int contract__corrupt(struct contract_ctx *c);

/* u64 counters stored big-endian: *id receives the next value. */
BEX_MUST_USE int contract__next_id(struct contract_ctx *c, uint64_t *id, const char *key);

/*
 * Iterates keys starting with prefix after `after` (NULL: from the first)
 * in ascending order, through the overlays; fn as exec_iter_fn.
 */
BEX_MUST_USE int contract__iter(struct contract_ctx *c, const char *prefix, const char *after, size_t after_len,
                                exec_iter_fn fn, void *user);

/* Appends an event carrying the encoded m. */
BEX_MUST_USE int contract__emit(struct contract_ctx *c, const char *kind, const ProtobufCMessage *m);

/* Sets the receipt result to the encoded m. */
BEX_MUST_USE int contract__result(struct contract_ctx *c, const ProtobufCMessage *m);

/* ------------------------------------------------------------- validation */

bool contract__agency_id_ok(const char *s);
/* A resource id "<agency>/<name>"; *owner_len receives the agency part's length. */
bool contract__resource_id_ok(const char *s, size_t *owner_len);
/* Field and role names: [a-z0-9_.-*], 1..CONTRACT_ID_BYTES_MAX. */
bool contract__name_ok(const char *s);
/* Free text: valid UTF-8, no control characters, at most max bytes. */
bool contract__text_ok(const char *s, size_t max);
bool contract__pubkey_ok(const uint8_t *k, size_t len);
void contract__hex(char *out, const uint8_t *in, size_t len);

/* ------------------------------------------------------------ shared reads */

BEX_MUST_USE int contract__load_agency(struct contract_ctx *c, Bex__Agency **out, const char *id);
BEX_MUST_USE int contract__load_resource(struct contract_ctx *c, Bex__Resource **out, const char *id);
BEX_MUST_USE int contract__load_grant(struct contract_ctx *c, Bex__Grant **out, uint64_t id);
BEX_MUST_USE int contract__load_record(struct contract_ctx *c, Bex__Record **out, const char *resource,
                                       const uint8_t *key, size_t key_len);

/* The status of g at block time now: PENDING/ACTIVE past expiry is EXPIRED. */
Bex__GrantStatus contract__grant_status(const Bex__Grant *g, uint64_t now_ms);

/* Fails with the code that explains why g is not ACTIVE now, or returns 0. */
BEX_MUST_USE int contract__grant_usable(struct contract_ctx *c, const Bex__Grant *g);

/* Counts PENDING or ACTIVE grants on a resource (stops at max). */
BEX_MUST_USE int contract__live_grants(struct contract_ctx *c, size_t *count, const char *resource, size_t max);

/*
 * Finds consumer's ACTIVE grant on resource in one of the modes (a mask of
 * 1 << Bex__AccessMode) that covers field (NULL: any). Fails with
 * BEX_EEXPIRED if the only such grant expired, BEX_EREFUSED otherwise.
 */
BEX_MUST_USE int contract__find_grant(struct contract_ctx *c, Bex__Grant **out, const char *consumer,
                                      const char *resource, unsigned modes, const char *field);

const Bex__FieldDef *contract__field(const Bex__Resource *r, const char *name);

/* Whether the sender of the call is the agency `owner`. */
bool contract__is_owner(const struct contract_ctx *c, const char *owner);

/*
 * Whether m or any message inside it carries fields this schema does not
 * know. Arguments with unknown fields are refused: every node must read a
 * transaction the same way, and state must not carry opaque bytes.
 */
bool contract__has_unknown(const ProtobufCMessage *m);

/* -------------------------------------------------------------- registry */

typedef int (*contract_method_fn)(struct contract_ctx *c, const ProtobufCMessage *args);
typedef int (*contract_query_fn)(struct contract_ctx *c, ProtobufCMessage **result, const ProtobufCMessage *args);

struct contract_method {
    const char *name;
    const ProtobufCMessageDescriptor *args;
    const ProtobufCMessageDescriptor *result;
    size_t args_bytes_max;
    unsigned flags;
    contract_method_fn run;
};

struct contract_query {
    const char *name;
    const ProtobufCMessageDescriptor *args;
    const ProtobufCMessageDescriptor *result;
    contract_query_fn run;
};

struct contract_def {
    const char *name;
    const struct contract_method *methods;
    size_t method_count;
    const struct contract_query *queries;
    size_t query_count;
};

extern const struct contract_def contract__agency;
extern const struct contract_def contract__catalog;
extern const struct contract_def contract__grant;
extern const struct contract_def contract__record;
extern const struct contract_def contract__access;
extern const struct contract_def contract__verify;
extern const struct contract_def contract__audit;

const struct contract_def *contract__find(const char *name);
const struct contract_method *contract__find_method(const struct contract_def *d, const char *name);
const struct contract_query *contract__find_query(const struct contract_def *d, const char *name);

/* Builds a query context over committed state ("now" from chain/head). */
BEX_MUST_USE int contract__query_ctx(struct contract_ctx *c, const struct exec_store *store, const char *contract);

/* --------------------------------------------------------------- paging */

/*
 * A page under construction: list queries collect up to `limit` items from
 * one key prefix and remember the last key scanned as the next cursor.
 */
#define CONTRACT_SCAN_MAX 2000 /* keys one page may scan */

struct contract_page {
    struct contract_ctx *c;
    size_t limit;
    size_t count;   /* items collected */
    size_t scanned; /* keys looked at */
    char last[CONTRACT_KEY_BYTES_MAX];
    size_t last_len;
    bool more;
};

/* Starts a page of at most limit items (0: the default, capped). */
void contract__page_init(struct contract_page *p, struct contract_ctx *c, uint32_t limit);

/*
 * Called first by a scan callback for each key: returns 1 (stop, more to
 * come) once the page is full, has scanned CONTRACT_SCAN_MAX keys or spent
 * half the query budget; otherwise remembers key as the last one scanned and
 * returns 0.
 */
int contract__page_step(struct contract_page *p, const char *key, size_t key_len);

/* Decodes a decoded-to-be value inside a scan; NULL with c->fatal set on failure. */
ProtobufCMessage *contract__decode(struct contract_ctx *c, const ProtobufCMessageDescriptor *desc,
                                   const uint8_t *val, size_t len);

/* The number in the last 16 hex digits of an index key, or 0. */
uint64_t contract__key_id(const char *key, size_t key_len);

/* Cursor bytes as given, checked to lie under prefix; empty if none. */
BEX_MUST_USE int contract__cursor(struct contract_ctx *c, const char *prefix, const ProtobufCBinaryData *cursor);

/* Copies the next cursor of p (empty when the scan ended) into out. */
BEX_MUST_USE int contract__next_cursor(struct contract_ctx *c, ProtobufCBinaryData *out, const struct contract_page *p);

/* Appends item to a malloc'd array of pointers (bounded by the page limit). */
BEX_MUST_USE int contract__push(struct contract_ctx *c, void ***items, size_t *count, void *item);

/*
 * Decides whether an item belongs on a list page; it may first set the
 * fields a query shows as of the block time (c->time_ms). filter is
 * contract_list.filter.
 */
typedef bool (*contract_keep_fn)(const struct contract_ctx *c, ProtobufCMessage *item, const void *filter);

/*
 * A list query: a page of the items under one key prefix, from a cursor.
 * The result message `list` has one repeated message field (the items) and
 * a bytes field next_cursor. The keys under prefix either hold the items
 * themselves (primary NULL) or are index keys ending in the 16-hex id of an
 * item stored at primary followed by that id; an indexed item that is gone
 * is skipped.
 */
struct contract_list {
    const ProtobufCMessageDescriptor *list;
    const char *prefix;
    const ProtobufCBinaryData *cursor; /* from the query's args; empty: from the start */
    uint32_t limit;                    /* 0: the default page size */
    const char *primary;               /* NULL, or the prefix of the items an index key points to */
    contract_keep_fn keep;             /* NULL: every item */
    const void *filter;
};

/*
 * Runs the list query l into a new *result (freed with
 * contract_result_free), its next_cursor set when more items may follow.
 * Errors: BEX_EINVAL (a cursor of another query), BEX_ENOMEM, BEX_ECORRUPT,
 * storage failures.
 */
BEX_MUST_USE int contract__list(struct contract_ctx *c, ProtobufCMessage **result, const struct contract_list *l);

/*
 * The list query of the requests one agency makes of another (accesses,
 * verifications) by AccessListArgs: all of them under "<kind>/<all>/"
 * (their primary keys), or those of one owner or one consumer through the
 * indexes "<kind>/o/<agency>/" and "<kind>/c/<agency>/"; only those whose
 * status is a->status unless it is 0. The items of `list` have an enum field
 * status. Errors: as contract__list, and BEX_EINVAL for both an owner and a
 * consumer, or an agency id that is not one.
 */
BEX_MUST_USE int contract__list_requests(struct contract_ctx *c, ProtobufCMessage **result,
                                         const Bex__AccessListArgs *a, const char *kind, char all,
                                         const ProtobufCMessageDescriptor *list);

#endif
