/*
 * overlay.c: the ordered set of pending writes, and the byte helpers the
 * runtime shares. Transactions write into one overlay per transaction,
 * merged into the block's overlay on success.
 *
 * A block of n transactions puts a few keys per transaction into the block
 * overlay, and audit keys sort newest first, so a sorted array (O(n) per
 * insert) made a block cost O(n^2). The overlay is an AVL tree instead:
 * O(log n) lookups and inserts, in-order walks through parent links. Nodes
 * and their keys come from chunks of the overlay's own arena and are never
 * freed one by one, so a key pointer stays valid until the overlay is
 * cleared and the executor's output can point at it. Small values live in
 * the arena too, in a slot that later writes of the same key reuse; a value
 * above OVERLAY_SMALL_BYTES gets its own heap block, freed as soon as the key
 * is overwritten or deleted, so the arena never holds a large dead value.
 * Clearing keeps up to OVERLAY_KEEP_BYTES of chunks for the next block or
 * transaction: a steady stream of blocks allocates almost nothing.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define OVERLAY_CHUNK_BYTES ((size_t)64 << 10)
#define OVERLAY_KEEP_BYTES ((size_t)4 << 20)
#define OVERLAY_SMALL_BYTES ((size_t)128)
#define OVERLAY_ALIGN ((size_t)16)

struct overlay_chunk {
    struct overlay_chunk *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct overlay_node {
    struct overlay_entry e; /* first member: an entry pointer is its node */
    struct overlay_node *left, *right, *parent;
    struct overlay_node *heap_next; /* on o->heap once its slot was on the heap */
    uint8_t *slot;                  /* the value's storage, NULL until a value */
    size_t slot_cap;
    bool slot_heap;   /* slot is a malloc'd block, not arena */
    bool heap_listed; /* the node is on o->heap */
    int height;       /* of the subtree; a leaf is 1 */
    char key[];       /* key_len bytes and a NUL */
};

/* The largest arena request: a node with the longest key. */
_Static_assert(sizeof(struct overlay_node) + CONTRACT_KEY_BYTES_MAX + 1 + 16 <= OVERLAY_CHUNK_BYTES,
               "a node fits a chunk");
_Static_assert(OVERLAY_SMALL_BYTES % OVERLAY_ALIGN == 0, "small slots are whole arena units");

int contract__keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = memcmp(a, b, n);
    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

void contract__put_u64be(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t contract__get_u64be(const uint8_t in[8])
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

/* ------------------------------------------------------------------ arena */

static size_t round_up(size_t n)
{
    return (n + OVERLAY_ALIGN - 1) & ~(OVERLAY_ALIGN - 1);
}

/*
 * Bump allocation from the current chunk. The chunks after o->cur are the
 * empty ones kept by the last clear; a new chunk goes in right after o->cur.
 */
static void *arena_alloc(struct overlay *o, size_t n)
{
    n = round_up(n);
    BEX_ASSERT(n <= OVERLAY_CHUNK_BYTES);
    struct overlay_chunk *c = o->cur;
    if (c && c->cap - c->used < n) {
        c = c->next;
        if (c) {
            BEX_ASSERT(c->used == 0);
            BEX_ASSERT(c->cap >= n);
        }
    }
    if (!c) {
        c = malloc(sizeof(*c) + OVERLAY_CHUNK_BYTES);
        if (!c)
            return NULL;
        c->cap = OVERLAY_CHUNK_BYTES;
        c->used = 0;
        if (o->cur) {
            c->next = o->cur->next;
            o->cur->next = c;
        } else {
            c->next = o->chunks;
            o->chunks = c;
        }
    }
    o->cur = c;
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

/* ------------------------------------------------------------- lifecycle */

void contract__overlay_init(struct overlay *o)
{
    memset(o, 0, sizeof(*o));
}

void contract__overlay_clear(struct overlay *o)
{
    for (struct overlay_node *n = o->heap; n; n = n->heap_next)
        if (n->slot_heap)
            free(n->slot);
    /* Keep the first chunks up to the limit, emptied; free the rest. */
    size_t kept = 0;
    struct overlay_chunk **link = &o->chunks;
    while (*link) {
        struct overlay_chunk *c = *link;
        if (kept + c->cap <= OVERLAY_KEEP_BYTES) {
            kept += c->cap;
            c->used = 0;
            link = &c->next;
        } else {
            *link = c->next;
            free(c);
        }
    }
    o->cur = o->chunks;
    o->root = NULL;
    o->heap = NULL;
    o->count = 0;
    o->bytes = 0;
}

void contract__overlay_close(struct overlay *o)
{
    contract__overlay_clear(o);
    while (o->chunks) {
        struct overlay_chunk *c = o->chunks;
        o->chunks = c->next;
        free(c);
    }
    contract__overlay_init(o);
}

/* ------------------------------------------------------------------- tree */

static int height_of(const struct overlay_node *n)
{
    return n ? n->height : 0;
}

static void fix_height(struct overlay_node *n)
{
    int l = height_of(n->left), r = height_of(n->right);
    n->height = 1 + (l > r ? l : r);
}

static void replace_child(struct overlay *o, struct overlay_node *parent, const struct overlay_node *old,
                          struct overlay_node *repl)
{
    if (!parent) {
        BEX_ASSERT(o->root == old);
        o->root = repl;
    } else if (parent->left == old) {
        parent->left = repl;
    } else {
        BEX_ASSERT(parent->right == old);
        parent->right = repl;
    }
}

/* Lifts x's right child into x's place; returns it. */
static struct overlay_node *rotate_left(struct overlay *o, struct overlay_node *x)
{
    struct overlay_node *y = x->right;
    BEX_ASSERT(y != NULL);
    x->right = y->left;
    if (y->left)
        y->left->parent = x;
    y->parent = x->parent;
    replace_child(o, x->parent, x, y);
    y->left = x;
    x->parent = y;
    fix_height(x);
    fix_height(y);
    return y;
}

/* Lifts x's left child into x's place; returns it. */
static struct overlay_node *rotate_right(struct overlay *o, struct overlay_node *x)
{
    struct overlay_node *y = x->left;
    BEX_ASSERT(y != NULL);
    x->left = y->right;
    if (y->right)
        y->right->parent = x;
    y->parent = x->parent;
    replace_child(o, x->parent, x, y);
    y->right = x;
    x->parent = y;
    fix_height(x);
    fix_height(y);
    return y;
}

/*
 * Restores the AVL balance from n (the parent of a new leaf) up. A subtree
 * whose height did not change, or that one rotation brought back to its
 * height before the insert, leaves every ancestor as it was: stop there.
 */
static void rebalance(struct overlay *o, struct overlay_node *n)
{
    while (n) {
        int before = n->height;
        int balance = height_of(n->left) - height_of(n->right);
        if (balance > 1) {
            if (height_of(n->left->left) < height_of(n->left->right))
                (void)rotate_left(o, n->left);
            n = rotate_right(o, n);
        } else if (balance < -1) {
            if (height_of(n->right->right) < height_of(n->right->left))
                (void)rotate_right(o, n->right);
            n = rotate_left(o, n);
        } else {
            fix_height(n);
        }
        if (n->height == before)
            return;
        n = n->parent;
    }
}

/* Whole-tree check for tests and SAN=1 builds; returns the subtree's height, or -1. */
BEX_UNUSED static int check_subtree(const struct overlay_node *n, const struct overlay_node *parent, size_t *count,
                                    const struct overlay_node **prev)
{
    if (!n)
        return 0;
    if (n->parent != parent)
        return -1;
    int l = check_subtree(n->left, n, count, prev);
    if (l < 0)
        return -1;
    if (*prev && contract__keycmp((*prev)->e.key, (*prev)->e.key_len, n->e.key, n->e.key_len) >= 0)
        return -1;
    if (n->e.key != n->key || n->e.del != (n->e.val == NULL) || (n->e.val && n->e.val != n->slot))
        return -1;
    *prev = n;
    (*count)++;
    int r = check_subtree(n->right, n, count, prev);
    if (r < 0 || l - r > 1 || r - l > 1 || n->height != 1 + (l > r ? l : r))
        return -1;
    return n->height;
}

BEX_UNUSED static bool tree_ok(const struct overlay *o)
{
    size_t count = 0;
    const struct overlay_node *prev = NULL;
    return check_subtree(o->root, NULL, &count, &prev) >= 0 && count == o->count;
}

/* ------------------------------------------------------------------ reads */

const struct overlay_entry *contract__overlay_get(const struct overlay *o, const char *key, size_t key_len)
{
    const struct overlay_node *n = o->root;
    while (n) {
        int r = contract__keycmp(key, key_len, n->e.key, n->e.key_len);
        if (r == 0)
            return &n->e;
        n = r < 0 ? n->left : n->right;
    }
    return NULL;
}

const struct overlay_entry *contract__overlay_seek(const struct overlay *o, const char *key, size_t key_len)
{
    const struct overlay_node *n = o->root, *best = NULL;
    while (n) {
        int r = contract__keycmp(n->e.key, n->e.key_len, key, key_len);
        if (r == 0)
            return &n->e;
        if (r > 0) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    return best ? &best->e : NULL;
}

const struct overlay_entry *contract__overlay_first(const struct overlay *o)
{
    const struct overlay_node *n = o->root;
    if (!n)
        return NULL;
    while (n->left)
        n = n->left;
    return &n->e;
}

const struct overlay_entry *contract__overlay_next(const struct overlay_entry *en)
{
    const struct overlay_node *n = (const struct overlay_node *)en;
    if (n->right) {
        n = n->right;
        while (n->left)
            n = n->left;
        return &n->e;
    }
    while (n->parent && n->parent->right == n)
        n = n->parent;
    return n->parent ? &n->parent->e : NULL;
}

/* ----------------------------------------------------------------- writes */

static void drop_heap_slot(struct overlay_node *n)
{
    if (n->slot_heap) {
        free(n->slot);
        n->slot = NULL;
        n->slot_cap = 0;
        n->slot_heap = false;
    }
}

/*
 * Stores val (NULL: a delete) in n. The value is copied before the old slot
 * is released, since val may point into it (a method writing back what it
 * read). A small slot is reused while the value fits; a heap slot only
 * while the value fills at least half of it, so a shrunk value does not pin
 * a large block. A small value that outgrows its slot moves to a full-size
 * small slot, so a key leaves at most one dead slot in the arena.
 */
static int put_value(struct overlay *o, struct overlay_node *n, const uint8_t *val, size_t len)
{
    if (!val) {
        drop_heap_slot(n);
        n->e.val = NULL;
        n->e.val_len = 0;
        n->e.del = true;
        return 0;
    }
    if (n->slot && len <= n->slot_cap && (!n->slot_heap || len >= n->slot_cap / 2)) {
        memmove(n->slot, val, len);
    } else {
        uint8_t *slot;
        size_t cap;
        bool heap = len > OVERLAY_SMALL_BYTES;
        if (heap) {
            cap = len;
            slot = malloc(cap);
        } else {
            /* One unit at least, so that an empty value still has a non-NULL slot. */
            cap = n->slot ? OVERLAY_SMALL_BYTES : round_up(len ? len : 1);
            slot = arena_alloc(o, cap);
        }
        if (!slot)
            return -BEX_ENOMEM;
        memcpy(slot, val, len);
        drop_heap_slot(n);
        n->slot = slot;
        n->slot_cap = cap;
        n->slot_heap = heap;
        if (heap && !n->heap_listed) {
            n->heap_next = o->heap;
            o->heap = n;
            n->heap_listed = true;
        }
    }
    n->e.val = n->slot;
    n->e.val_len = len;
    n->e.del = false;
    return 0;
}

int contract__overlay_set(struct overlay *o, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    BEX_ASSERT(key_len > 0);
    BEX_ASSERT(key_len <= CONTRACT_KEY_BYTES_MAX);
    struct overlay_node **link = &o->root, *parent = NULL;
    while (*link) {
        parent = *link;
        int r = contract__keycmp(key, key_len, parent->e.key, parent->e.key_len);
        if (r == 0) {
            size_t old = parent->e.val_len;
            int rc = put_value(o, parent, val, val_len);
            if (rc != 0)
                return rc;
            o->bytes = o->bytes - old + parent->e.val_len;
            return 0;
        }
        link = r < 0 ? &parent->left : &parent->right;
    }
    struct overlay_node *n = arena_alloc(o, sizeof(*n) + key_len + 1);
    if (!n)
        return -BEX_ENOMEM;
    memset(n, 0, sizeof(*n));
    memcpy(n->key, key, key_len);
    n->key[key_len] = '\0';
    n->e.key = n->key;
    n->e.key_len = key_len;
    /* On failure the node stays unlinked: dead arena space until the clear. */
    int rc = put_value(o, n, val, val_len);
    if (rc != 0)
        return rc;
    n->parent = parent;
    n->height = 1;
    *link = n;
    rebalance(o, parent);
    o->count++;
    o->bytes += key_len + n->e.val_len;
    BEX_ASSERT(contract__overlay_get(o, key, key_len) == &n->e);
    BEX_CHECK(tree_ok(o));
    return 0;
}

int contract__overlay_merge(struct overlay *dst, const struct overlay *src)
{
    for (const struct overlay_entry *en = contract__overlay_first(src); en; en = contract__overlay_next(en)) {
        int rc = contract__overlay_set(dst, en->key, en->key_len, en->del ? NULL : en->val, en->val_len);
        if (rc != 0)
            return rc;
    }
    return 0;
}
