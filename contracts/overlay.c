/*
 * overlay.c: a sorted array of pending writes, and the byte helpers the
 * runtime shares. Transactions write into one
 * overlay per transaction, merged into the block's overlay on success.
 * Key pointers of an entry stay valid until the overlay is cleared, so the
 * executor's output can point at them.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

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

void contract__overlay_init(struct overlay *o)
{
    memset(o, 0, sizeof(*o));
}

void contract__overlay_clear(struct overlay *o)
{
    for (size_t i = 0; i < o->count; i++) {
        free(o->v[i].key);
        free(o->v[i].val);
    }
    o->count = 0;
    o->bytes = 0;
}

void contract__overlay_close(struct overlay *o)
{
    contract__overlay_clear(o);
    free(o->v);
    contract__overlay_init(o);
}

/* Whole-overlay check for tests and SAN=1 builds: keys strictly ascending. */
BEX_UNUSED static bool sorted(const struct overlay *o)
{
    for (size_t i = 1; i < o->count; i++)
        if (contract__keycmp(o->v[i - 1].key, o->v[i - 1].key_len, o->v[i].key, o->v[i].key_len) >= 0)
            return false;
    return true;
}

long contract__overlay_find(const struct overlay *o, size_t *pos, const char *key, size_t key_len)
{
    size_t lo = 0, hi = o->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = contract__keycmp(o->v[mid].key, o->v[mid].key_len, key, key_len);
        if (r == 0) {
            if (pos)
                *pos = mid;
            return (long)mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return -1;
}

int contract__overlay_set(struct overlay *o, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    BEX_ASSERT(key_len > 0);
    BEX_ASSERT(key_len <= CONTRACT_KEY_BYTES_MAX);
    uint8_t *copy = NULL;
    if (val) {
        /* One extra byte so that an empty value still has a non-NULL copy. */
        copy = malloc(val_len + 1);
        if (!copy)
            return -BEX_ENOMEM;
        memcpy(copy, val, val_len);
    }
    size_t pos;
    long i = contract__overlay_find(o, &pos, key, key_len);
    if (i >= 0) {
        struct overlay_entry *en = &o->v[i];
        o->bytes -= en->val_len;
        free(en->val);
        en->val = copy;
        en->val_len = val ? val_len : 0;
        en->del = val == NULL;
        o->bytes += en->val_len;
        return 0;
    }
    if (o->count == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        struct overlay_entry *v = realloc(o->v, cap * sizeof(*v));
        if (!v) {
            free(copy);
            return -BEX_ENOMEM;
        }
        o->v = v;
        o->cap = cap;
    }
    char *k = malloc(key_len + 1);
    if (!k) {
        free(copy);
        return -BEX_ENOMEM;
    }
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    memmove(&o->v[pos + 1], &o->v[pos], (o->count - pos) * sizeof(o->v[0]));
    o->v[pos] = (struct overlay_entry){
        .key = k, .key_len = key_len, .val = copy, .val_len = val ? val_len : 0, .del = val == NULL};
    o->count++;
    o->bytes += key_len + (val ? val_len : 0);
    BEX_ASSERT(contract__overlay_find(o, NULL, key, key_len) == (long)pos);
    BEX_CHECK(sorted(o));
    return 0;
}

int contract__overlay_merge(struct overlay *dst, const struct overlay *src)
{
    for (size_t i = 0; i < src->count; i++) {
        const struct overlay_entry *en = &src->v[i];
        int rc = contract__overlay_set(dst, en->key, en->key_len, en->del ? NULL : en->val, en->val_len);
        if (rc != 0)
            return rc;
    }
    return 0;
}
