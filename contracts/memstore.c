/*
 * memstore.c: committed state in memory, a sorted array of keys, for the
 * tests, the simulator and the fuzzers. It implements struct exec_store.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct mem_entry {
    char *key;
    size_t key_len;
    uint8_t *val;
    size_t val_len;
};

struct memstore {
    struct mem_entry *v;
    size_t count;
    size_t bytes;
    size_t entries_max;
    size_t bytes_max;
};

/* Index of the first entry >= key; *found tells whether it equals key. */
static size_t lower_bound(const struct memstore *m, const char *key, size_t key_len, bool *found)
{
    size_t lo = 0, hi = m->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (contract__keycmp(m->v[mid].key, m->v[mid].key_len, key, key_len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < m->count && contract__keycmp(m->v[lo].key, m->v[lo].key_len, key, key_len) == 0;
    return lo;
}

int memstore_new(struct memstore **out, size_t entries_max, size_t bytes_max)
{
    *out = NULL;
    if (entries_max == 0 || bytes_max == 0)
        return -BEX_EINVAL;
    struct memstore *m = calloc(1, sizeof(*m));
    if (!m)
        return -BEX_ENOMEM;
    m->entries_max = entries_max;
    m->bytes_max = bytes_max;
    *out = m;
    return 0;
}

void memstore_free(struct memstore *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++) {
        free(m->v[i].key);
        free(m->v[i].val);
    }
    free(m->v);
    free(m);
}

size_t memstore_count(const struct memstore *m)
{
    return m->count;
}

static int mem_get(void *user, const char *key, size_t key_len, const uint8_t **val, size_t *val_len)
{
    struct memstore *m = user;
    bool found;
    size_t i = lower_bound(m, key, key_len, &found);
    if (!found)
        return -BEX_ENOTFOUND;
    *val = m->v[i].val;
    *val_len = m->v[i].val_len;
    return 0;
}

static int mem_iter(void *user, const char *prefix, size_t prefix_len, const char *after, size_t after_len,
                    exec_iter_fn fn, void *fn_user)
{
    struct memstore *m = user;
    bool found;
    size_t i;
    if (after_len > 0 && contract__keycmp(after, after_len, prefix, prefix_len) >= 0) {
        i = lower_bound(m, after, after_len, &found);
        if (found)
            i++;
    } else {
        i = lower_bound(m, prefix, prefix_len, &found);
    }
    for (; i < m->count; i++) {
        const struct mem_entry *en = &m->v[i];
        if (en->key_len < prefix_len || memcmp(en->key, prefix, prefix_len) != 0)
            break;
        int rc = fn(fn_user, en->key, en->key_len, en->val, en->val_len);
        if (rc == 1)
            return 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

void memstore_store(struct memstore *m, struct exec_store *out)
{
    out->user = m;
    out->get = mem_get;
    out->iter = mem_iter;
}

static void entry_free(struct mem_entry *en)
{
    free(en->key);
    free(en->val);
}

/*
 * Applies a sorted write set in one merge pass over the sorted entries, so a
 * block costs O(entries + writes) rather than a shift per inserted key.
 */
int memstore_apply(struct memstore *m, const struct exec_output *out)
{
    /* A dry run first, so that a write set over the bounds changes nothing. */
    size_t count = m->count, bytes = m->bytes;
    for (size_t k = 0; k < out->write_count; k++) {
        const struct exec_write *w = &out->writes[k];
        bool found;
        size_t i = lower_bound(m, w->key, w->key_len, &found);
        if (k > 0)
            BEX_ASSERT(contract__keycmp(out->writes[k - 1].key, out->writes[k - 1].key_len, w->key, w->key_len) < 0);
        if (found) {
            bytes -= m->v[i].key_len + m->v[i].val_len;
            count--;
        }
        if (!w->del) {
            bytes += w->key_len + w->val_len;
            count++;
        }
    }
    if (count > m->entries_max || bytes > m->bytes_max)
        return -BEX_EFULL;

    /* Copy the new values first: after this nothing can fail. */
    struct mem_entry *fresh = calloc(out->write_count + 1, sizeof(*fresh));
    struct mem_entry *v = malloc((count + 1) * sizeof(*v));
    int rc = -BEX_ENOMEM;
    if (!fresh || !v)
        goto fail;
    for (size_t k = 0; k < out->write_count; k++) {
        const struct exec_write *w = &out->writes[k];
        if (w->del)
            continue;
        fresh[k].key = malloc(w->key_len + 1);
        fresh[k].val = malloc(w->val_len + 1);
        if (!fresh[k].key || !fresh[k].val)
            goto fail;
        memcpy(fresh[k].key, w->key, w->key_len);
        fresh[k].key[w->key_len] = '\0';
        fresh[k].key_len = w->key_len;
        if (w->val_len > 0)
            memcpy(fresh[k].val, w->val, w->val_len);
        fresh[k].val_len = w->val_len;
    }
    size_t i = 0, k = 0, n = 0;
    while (i < m->count || k < out->write_count) {
        int r;
        if (i == m->count)
            r = 1;
        else if (k == out->write_count)
            r = -1;
        else
            r = contract__keycmp(m->v[i].key, m->v[i].key_len, out->writes[k].key, out->writes[k].key_len);
        if (r < 0) {
            v[n++] = m->v[i++];
            continue;
        }
        if (r == 0)
            entry_free(&m->v[i++]);
        if (!out->writes[k].del)
            v[n++] = fresh[k];
        k++;
    }
    BEX_ASSERT(n == count);
    free(m->v);
    m->v = v;
    m->count = count;
    m->bytes = bytes;
    free(fresh);
    return 0;
fail:
    for (size_t j = 0; fresh && j < out->write_count; j++)
        entry_free(&fresh[j]);
    free(fresh);
    free(v);
    return rc;
}
