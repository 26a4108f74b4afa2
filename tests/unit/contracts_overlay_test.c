/*
 * contracts_overlay_test.c: the executor's write overlay (contracts/overlay.c)
 * against a plain model: a sorted array of (key, value or deleted) built by
 * linear search. Many keys in adversarial orders, overwrites that grow and
 * shrink values across the small/heap boundary, deletes, lookups, seeks,
 * in-order walks, merges, and reuse after a clear.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../contracts/internal.h"

#define MODEL_MAX 8000
#define VAL_MAX 600

struct model_entry {
    char key[32];
    size_t key_len;
    bool del;
    uint8_t val[VAL_MAX];
    size_t val_len;
};

struct model {
    struct model_entry *v;
    size_t count;
    size_t bytes;
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static struct model_entry *model_find(struct model *m, const char *key, size_t key_len)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->v[i].key_len == key_len && memcmp(m->v[i].key, key, key_len) == 0)
            return &m->v[i];
    return NULL;
}

static void model_set(struct model *m, const char *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct model_entry *e = model_find(m, key, key_len);
    if (!e) {
        assert_true(m->count < MODEL_MAX);
        e = &m->v[m->count++];
        memcpy(e->key, key, key_len);
        e->key_len = key_len;
        e->val_len = 0;
        m->bytes += key_len;
    }
    m->bytes -= e->val_len;
    e->del = val == NULL;
    e->val_len = val ? val_len : 0;
    if (val)
        memcpy(e->val, val, val_len);
    m->bytes += e->val_len;
}

static int model_cmp(const void *a, const void *b)
{
    const struct model_entry *x = a, *y = b;
    return contract__keycmp(x->key, x->key_len, y->key, y->key_len);
}

/* Both agree on every entry, in order, and on count and bytes. */
static void check_same(struct overlay *o, struct model *m)
{
    qsort(m->v, m->count, sizeof(m->v[0]), model_cmp);
    assert_int_equal(o->count, m->count);
    assert_int_equal(o->bytes, m->bytes);
    size_t i = 0;
    for (const struct overlay_entry *en = contract__overlay_first(o); en; en = contract__overlay_next(en), i++) {
        assert_true(i < m->count);
        const struct model_entry *me = &m->v[i];
        assert_int_equal(en->key_len, me->key_len);
        assert_memory_equal(en->key, me->key, me->key_len);
        assert_int_equal(en->key[en->key_len], '\0');
        assert_int_equal(en->del, me->del);
        if (me->del) {
            assert_null(en->val);
        } else {
            assert_non_null(en->val);
            assert_int_equal(en->val_len, me->val_len);
            if (me->val_len > 0)
                assert_memory_equal(en->val, me->val, me->val_len);
        }
        assert_ptr_equal(contract__overlay_get(o, me->key, me->key_len), en);
        assert_ptr_equal(contract__overlay_seek(o, me->key, me->key_len), en);
    }
    assert_int_equal(i, m->count);
}

static size_t make_key(char *out, uint64_t k, int order)
{
    /* Ascending, descending (like the audit keys) and scattered keys. */
    if (order == 0)
        return (size_t)snprintf(out, 32, "asc/%010llu", (unsigned long long)k);
    if (order == 1)
        return (size_t)snprintf(out, 32, "desc/%016llx", (unsigned long long)~k);
    return (size_t)snprintf(out, 32, "rnd/%llx", (unsigned long long)(k * 0x9e3779b97f4a7c15ull));
}

static void overlay_many_keys_in_order(void **state)
{
    (void)state;
    struct model m = {.v = calloc(MODEL_MAX, sizeof(struct model_entry))};
    assert_non_null(m.v);
    struct overlay o;
    contract__overlay_init(&o);
    for (int order = 0; order < 3; order++) {
        for (uint64_t k = 0; k < 2000; k++) {
            char key[32];
            uint8_t val[8];
            size_t n = make_key(key, k, order);
            contract__put_u64be(val, k);
            assert_int_equal(contract__overlay_set(&o, key, n, val, sizeof(val)), 0);
            model_set(&m, key, n, val, sizeof(val));
        }
    }
    check_same(&o, &m);
    contract__overlay_close(&o);
    free(m.v);
}

/* Random puts, overwrites of every size and deletes against the model. */
static void overlay_random_writes_match_model(void **state)
{
    (void)state;
    struct model m = {.v = calloc(MODEL_MAX, sizeof(struct model_entry))};
    assert_non_null(m.v);
    struct overlay o;
    contract__overlay_init(&o);
    uint64_t s = 42;
    uint8_t val[VAL_MAX];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 20000; i++) {
            char key[32];
            size_t n = (size_t)snprintf(key, sizeof(key), "k/%llu", (unsigned long long)(rng_next(&s) % 3000));
            uint64_t r = rng_next(&s);
            if (r % 5 == 0) {
                assert_int_equal(contract__overlay_set(&o, key, n, NULL, 0), 0);
                model_set(&m, key, n, NULL, 0);
                continue;
            }
            /* Sizes on both sides of the small-slot limit, and empty values. */
            size_t len = (size_t)(r >> 8) % (r % 3 == 0 ? VAL_MAX : 40);
            for (size_t b = 0; b < len; b++)
                val[b] = (uint8_t)(r >> (b % 56));
            assert_int_equal(contract__overlay_set(&o, key, n, val, len), 0);
            model_set(&m, key, n, val, len);
        }
        check_same(&o, &m);
        /* A cleared overlay is empty and takes new writes in its kept memory. */
        contract__overlay_clear(&o);
        m.count = 0;
        m.bytes = 0;
        assert_null(contract__overlay_first(&o));
        check_same(&o, &m);
    }
    contract__overlay_close(&o);
    free(m.v);
}

/* Keys handed out stay where they are while the tree grows and rebalances. */
static void overlay_key_pointers_stable(void **state)
{
    (void)state;
    struct overlay o;
    contract__overlay_init(&o);
    assert_int_equal(contract__overlay_set(&o, "m/first", 7, (const uint8_t *)"v", 1), 0);
    const struct overlay_entry *first = contract__overlay_get(&o, "m/first", 7);
    assert_non_null(first);
    const char *key = first->key;
    for (int i = 0; i < 5000; i++) {
        char k[32];
        size_t n = (size_t)snprintf(k, sizeof(k), "z/%08d", 5000 - i);
        assert_int_equal(contract__overlay_set(&o, k, n, (const uint8_t *)"", 0), 0);
    }
    assert_ptr_equal(contract__overlay_get(&o, "m/first", 7), first);
    assert_ptr_equal(first->key, key);
    assert_string_equal(key, "m/first");
    assert_int_equal(o.count, 5001);
    contract__overlay_close(&o);
}

/* A value written back from its own slot, growing and shrinking across the limits. */
static void overlay_value_rewritten_from_itself(void **state)
{
    (void)state;
    struct overlay o;
    contract__overlay_init(&o);
    static const size_t sizes[] = {0, 8, 100, 128, 129, 4000, 2500, 1000, 10, 300};
    uint8_t buf[4000];
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        memset(buf, (int)i + 1, sizes[i]);
        assert_int_equal(contract__overlay_set(&o, "a/x", 3, buf, sizes[i]), 0);
        const struct overlay_entry *en = contract__overlay_get(&o, "a/x", 3);
        assert_non_null(en);
        assert_int_equal(en->val_len, sizes[i]);
        /* Write back the very bytes the overlay holds. */
        assert_int_equal(contract__overlay_set(&o, "a/x", 3, en->val, en->val_len), 0);
        en = contract__overlay_get(&o, "a/x", 3);
        assert_int_equal(en->val_len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(en->val, buf, sizes[i]);
        assert_int_equal(o.bytes, 3 + sizes[i]);
    }
    assert_int_equal(contract__overlay_set(&o, "a/x", 3, NULL, 0), 0);
    assert_true(contract__overlay_get(&o, "a/x", 3)->del);
    assert_int_equal(o.bytes, 3);
    assert_int_equal(o.count, 1);
    contract__overlay_close(&o);
}

static void overlay_seek_and_merge(void **state)
{
    (void)state;
    struct overlay a, b;
    contract__overlay_init(&a);
    contract__overlay_init(&b);
    assert_null(contract__overlay_seek(&a, "x", 1));
    static const char *const keys[] = {"b/1", "b/3", "b/5", "c/1"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(contract__overlay_set(&a, keys[i], 3, (const uint8_t *)"a", 1), 0);
    assert_string_equal(contract__overlay_seek(&a, "a", 1)->key, "b/1");
    assert_string_equal(contract__overlay_seek(&a, "b/2", 3)->key, "b/3");
    assert_string_equal(contract__overlay_seek(&a, "b/3", 3)->key, "b/3");
    assert_string_equal(contract__overlay_seek(&a, "b/", 2)->key, "b/1");
    assert_string_equal(contract__overlay_seek(&a, "b/6", 3)->key, "c/1");
    assert_null(contract__overlay_seek(&a, "c/2", 3));

    /* b overwrites one key, deletes one and adds one: a takes all three. */
    assert_int_equal(contract__overlay_set(&b, "b/3", 3, (const uint8_t *)"bb", 2), 0);
    assert_int_equal(contract__overlay_set(&b, "b/5", 3, NULL, 0), 0);
    assert_int_equal(contract__overlay_set(&b, "b/4", 3, (const uint8_t *)"b", 1), 0);
    assert_int_equal(contract__overlay_merge(&a, &b), 0);
    static const char *const want[] = {"b/1", "b/3", "b/4", "b/5", "c/1"};
    size_t i = 0;
    for (const struct overlay_entry *en = contract__overlay_first(&a); en; en = contract__overlay_next(en))
        assert_string_equal(en->key, want[i++]);
    assert_int_equal(i, 5);
    assert_int_equal(contract__overlay_get(&a, "b/3", 3)->val_len, 2);
    assert_true(contract__overlay_get(&a, "b/5", 3)->del);
    assert_int_equal(a.bytes, 5 * 3 + 1 + 2 + 1 + 1);
    contract__overlay_close(&a);
    contract__overlay_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(overlay_many_keys_in_order),
        cmocka_unit_test(overlay_random_writes_match_model),
        cmocka_unit_test(overlay_key_pointers_stable),
        cmocka_unit_test(overlay_value_rewritten_from_itself),
        cmocka_unit_test(overlay_seek_and_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
