/*
 * mempool.c: pending transactions in preallocated slots, two open-addressing
 * hash tables (tx id -> slot, sender -> sender slot), a nonce-ordered list
 * per sender and one arrival-ordered list over all txs.
 *
 * The tables use linear probing with backward-shift deletion, so there are
 * no tombstones and a lookup never walks further than the longest run. They
 * are sized to at least twice their maximum population, and keys are mixed
 * with a per-process seed, which keeps runs short even against a sender who
 * grinds tx ids.
 */
#include "mempool.h"

#include "txcheck.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(MEMPOOL_ID_BYTES == TXCHECK_HASH_BYTES, "the pool keys txs by the id txcheck computes");
_Static_assert(MEMPOOL_SENDER_BYTES_MAX >= TXCHECK_SENDER_BYTES_MAX, "every sender txcheck admits fits");

struct sender;

struct entry {
    struct mempool_tx tx; /* what callers see; tx.bytes points to data */
    uint8_t *data;        /* owned copy of the encoded tx */
    struct sender *sender;
    struct entry *s_prev, *s_next; /* the sender's txs, nonce ascending */
    struct entry *a_prev, *a_next; /* all txs, arrival ascending */
    struct entry *m_prev, *m_next; /* the marked txs (proposed_height != 0), any order */
    bool used;
};

struct sender {
    char name[MEMPOOL_SENDER_BYTES_MAX + 1];
    uint64_t last; /* committed last nonce, from the nonce callback */
    size_t count;
    size_t bytes;
    struct entry *head, *tail;
    struct sender *prev, *next; /* turn order: arrival of the sender */
    struct entry *sel;          /* mempool_select scratch: next candidate */
    uint64_t commit_round;      /* the mempool_commit that last refreshed last */
    bool used;
};

struct mempool {
    struct mempool_config cfg;
    struct entry *entries; /* count_max slots */
    uint32_t *free_entries;
    size_t free_entry_count;
    struct sender *senders; /* senders_max slots */
    uint32_t *free_senders;
    size_t free_sender_count;
    uint32_t *id_table; /* slot index + 1, 0 when empty */
    size_t id_mask;
    uint32_t *sender_table;
    size_t sender_mask;
    struct sender **active; /* mempool_select scratch, senders_max */
    struct entry *oldest, *newest;
    struct entry *marked; /* head of the marked txs: unmarking walks these, not the pool */
    struct sender *first, *last; /* turn order */
    struct sender *turn;         /* served first by the next mempool_select */
    size_t count;
    size_t bytes;
    size_t sender_count;
    uint64_t last_added_ms;
    uint64_t commit_round;
    struct mempool_stats stats;
};

/* ---- hashing and the two tables ---- */

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

static size_t id_home(const struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES])
{
    uint64_t k;
    memcpy(&k, id, sizeof k);
    return (size_t)(mix64(k ^ mp->cfg.hash_seed) & mp->id_mask);
}

/* FNV-1a from a seeded basis, then mixed: sender names are short. */
static size_t name_home(const struct mempool *mp, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ mp->cfg.hash_seed;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return (size_t)(mix64(h) & mp->sender_mask);
}

static size_t id_home_of_slot(const struct mempool *mp, uint32_t v)
{
    return id_home(mp, mp->entries[v - 1].tx.id);
}

static size_t name_home_of_slot(const struct mempool *mp, uint32_t v)
{
    return name_home(mp, mp->senders[v - 1].name);
}

/*
 * Removes the value at pos and shifts later members of the run back over the
 * hole when their home allows it (Knuth 6.4, Algorithm R), so every member
 * stays reachable from its home without crossing an empty bucket.
 */
static void table_delete(const struct mempool *mp, uint32_t *table, size_t mask, size_t pos,
                         size_t (*home_of)(const struct mempool *, uint32_t))
{
    size_t hole = pos;
    size_t j = pos;
    table[hole] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (table[j] == 0)
            return;
        size_t home = home_of(mp, table[j]);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            table[hole] = table[j];
            table[j] = 0;
            hole = j;
        }
    }
}

/* Returns the bucket holding id, or the empty bucket where it would go. */
static size_t id_probe(const struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES])
{
    size_t i = id_home(mp, id);
    while (mp->id_table[i] != 0 && memcmp(mp->entries[mp->id_table[i] - 1].tx.id, id, MEMPOOL_ID_BYTES) != 0)
        i = (i + 1) & mp->id_mask;
    return i;
}

static size_t name_probe(const struct mempool *mp, const char *name)
{
    size_t i = name_home(mp, name);
    while (mp->sender_table[i] != 0 && strcmp(mp->senders[mp->sender_table[i] - 1].name, name) != 0)
        i = (i + 1) & mp->sender_mask;
    return i;
}

static struct entry *entry_find(const struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES])
{
    uint32_t v = mp->id_table[id_probe(mp, id)];
    return v == 0 ? NULL : &mp->entries[v - 1];
}

static struct sender *sender_find(const struct mempool *mp, const char *name)
{
    uint32_t v = mp->sender_table[name_probe(mp, name)];
    return v == 0 ? NULL : &mp->senders[v - 1];
}

/* A table of at least twice n buckets, a power of two. */
static size_t table_size(size_t n)
{
    size_t size = 2;
    while (size < 2 * n)
        size <<= 1;
    return size;
}

/* ---- lifecycle ---- */

int mempool_new(struct mempool **out, const struct mempool_config *cfg)
{
    struct mempool *mp = NULL;
    size_t id_size, sender_size;
    int rc = -BEX_EINVAL;

    *out = NULL;
    if (cfg->count_max == 0 || cfg->count_max > MEMPOOL_COUNT_LIMIT || cfg->bytes_max == 0)
        goto fail;
    if (cfg->sender_count_max == 0 || cfg->sender_count_max > cfg->count_max)
        goto fail;
    if (cfg->sender_bytes_max == 0 || cfg->sender_bytes_max > cfg->bytes_max)
        goto fail;
    if (cfg->senders_max == 0 || cfg->senders_max > MEMPOOL_SENDERS_LIMIT || cfg->last_nonce == NULL)
        goto fail;

    rc = -BEX_ENOMEM;
    if ((mp = calloc(1, sizeof *mp)) == NULL)
        goto fail;
    mp->cfg = *cfg;
    id_size = table_size(cfg->count_max);
    sender_size = table_size(cfg->senders_max);
    mp->id_mask = id_size - 1;
    mp->sender_mask = sender_size - 1;
    mp->entries = calloc(cfg->count_max, sizeof *mp->entries);
    mp->free_entries = malloc(cfg->count_max * sizeof *mp->free_entries);
    mp->senders = calloc(cfg->senders_max, sizeof *mp->senders);
    mp->free_senders = malloc(cfg->senders_max * sizeof *mp->free_senders);
    mp->id_table = calloc(id_size, sizeof *mp->id_table);
    mp->sender_table = calloc(sender_size, sizeof *mp->sender_table);
    mp->active = malloc(cfg->senders_max * sizeof *mp->active);
    if (mp->entries == NULL || mp->free_entries == NULL || mp->senders == NULL || mp->free_senders == NULL ||
        mp->id_table == NULL || mp->sender_table == NULL || mp->active == NULL)
        goto fail;
    /* Free slots are a stack; push in reverse so slot 0 is used first. */
    for (size_t i = 0; i < cfg->count_max; i++)
        mp->free_entries[i] = (uint32_t)(cfg->count_max - 1 - i);
    mp->free_entry_count = cfg->count_max;
    for (size_t i = 0; i < cfg->senders_max; i++)
        mp->free_senders[i] = (uint32_t)(cfg->senders_max - 1 - i);
    mp->free_sender_count = cfg->senders_max;
    *out = mp;
    return 0;
fail:
    mempool_free(mp);
    return rc;
}

void mempool_free(struct mempool *mp)
{
    if (mp == NULL)
        return;
    if (mp->entries != NULL) {
        for (size_t i = 0; i < mp->cfg.count_max; i++)
            free(mp->entries[i].data);
    }
    free(mp->entries);
    free(mp->free_entries);
    free(mp->senders);
    free(mp->free_senders);
    free(mp->id_table);
    free(mp->sender_table);
    free(mp->active);
    free(mp);
}

/* ---- senders ---- */

static struct sender *ring_next(const struct mempool *mp, const struct sender *s)
{
    return s->next != NULL ? s->next : mp->first;
}

static struct sender *sender_create(struct mempool *mp, const char *name, uint64_t last)
{
    BEX_ASSERT(mp->free_sender_count > 0);
    uint32_t slot = mp->free_senders[--mp->free_sender_count];
    struct sender *s = &mp->senders[slot];
    size_t pos = name_probe(mp, name);

    BEX_ASSERT(!s->used);
    BEX_ASSERT(mp->sender_table[pos] == 0);
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, strlen(name) + 1);
    s->last = last;
    s->used = true;
    s->prev = mp->last;
    if (mp->last != NULL)
        mp->last->next = s;
    else
        mp->first = s;
    mp->last = s;
    if (mp->turn == NULL)
        mp->turn = s;
    mp->sender_table[pos] = slot + 1;
    mp->sender_count++;
    return s;
}

static void sender_destroy(struct mempool *mp, struct sender *s)
{
    size_t pos = name_probe(mp, s->name);
    uint32_t slot = (uint32_t)(s - mp->senders);

    BEX_ASSERT(s->count == 0 && s->bytes == 0);
    BEX_ASSERT(mp->sender_table[pos] == slot + 1);
    if (mp->turn == s)
        mp->turn = mp->sender_count > 1 ? ring_next(mp, s) : NULL;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        mp->first = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    else
        mp->last = s->prev;
    table_delete(mp, mp->sender_table, mp->sender_mask, pos, name_home_of_slot);
    s->used = false;
    mp->free_senders[mp->free_sender_count++] = slot;
    mp->sender_count--;
}

/* ---- entries ---- */

/* Sets the height whose proposal carries e (0: none), keeping the marked list. */
static void set_mark(struct mempool *mp, struct entry *e, uint64_t height)
{
    bool was = e->tx.proposed_height != 0;

    e->tx.proposed_height = height;
    if (was == (height != 0))
        return;
    if (height != 0) {
        e->m_prev = NULL;
        e->m_next = mp->marked;
        if (mp->marked != NULL)
            mp->marked->m_prev = e;
        mp->marked = e;
        return;
    }
    if (e->m_prev != NULL)
        e->m_prev->m_next = e->m_next;
    else
        mp->marked = e->m_next;
    if (e->m_next != NULL)
        e->m_next->m_prev = e->m_prev;
    e->m_prev = e->m_next = NULL;
}

static void entry_remove(struct mempool *mp, struct entry *e)
{
    struct sender *s = e->sender;
    size_t pos = id_probe(mp, e->tx.id);
    uint32_t slot = (uint32_t)(e - mp->entries);

    BEX_ASSERT(e->used);
    BEX_ASSERT(mp->id_table[pos] == slot + 1);
    table_delete(mp, mp->id_table, mp->id_mask, pos, id_home_of_slot);
    set_mark(mp, e, 0);
    if (e->s_prev != NULL)
        e->s_prev->s_next = e->s_next;
    else
        s->head = e->s_next;
    if (e->s_next != NULL)
        e->s_next->s_prev = e->s_prev;
    else
        s->tail = e->s_prev;
    if (e->a_prev != NULL)
        e->a_prev->a_next = e->a_next;
    else
        mp->oldest = e->a_next;
    if (e->a_next != NULL)
        e->a_next->a_prev = e->a_prev;
    else
        mp->newest = e->a_prev;
    s->count--;
    s->bytes -= e->tx.len;
    mp->count--;
    mp->bytes -= e->tx.len;
    free(e->data);
    memset(e, 0, sizeof *e);
    mp->free_entries[mp->free_entry_count++] = slot;
    if (s->count == 0)
        sender_destroy(mp, s);
}

/*
 * The sender with the most pending txs whose highest nonce is in no
 * proposal (on a tie, the first by name: the same on every run), or NULL.
 */
static struct sender *largest_evictable(struct mempool *mp)
{
    struct sender *best = NULL;

    for (size_t i = 0; i < mp->cfg.senders_max; i++) {
        struct sender *s = &mp->senders[i];

        if (!s->used || s->tail == NULL || s->tail->tx.proposed_height != 0)
            continue;
        if (best == NULL || s->count > best->count || (s->count == best->count && strcmp(s->name, best->name) < 0))
            best = s;
    }
    return best;
}

/*
 * Makes room for the next tx of sender (nonce committed last + 1) in a full
 * pool: without it none of the sender's later txs can be proposed, and a
 * pool full of them would keep it out for good (a gossiped tx lost to a
 * full pool leaves such a gap). The txs dropped are the furthest from
 * execution: the highest nonces, of this sender while it is at its own
 * limits, then of the sender with the most pending. Txs in a proposal are
 * never dropped. The sender may be destroyed: the caller looks it up again.
 */
static void make_room(struct mempool *mp, const char *sender, size_t tx_len)
{
    struct sender *s = sender_find(mp, sender);
    size_t n = 0;

    while (s != NULL && s->tail != NULL && s->tail->tx.proposed_height == 0 &&
           (s->count >= mp->cfg.sender_count_max || tx_len > mp->cfg.sender_bytes_max - s->bytes)) {
        entry_remove(mp, s->tail);
        n++;
        s = sender_find(mp, sender);
    }
    while (mp->count >= mp->cfg.count_max || tx_len > mp->cfg.bytes_max - mp->bytes) {
        struct sender *big = largest_evictable(mp);

        if (big == NULL)
            break;
        entry_remove(mp, big->tail);
        n++;
    }
    mp->stats.evicted_room += n;
}

/* Writes a refusal's reason (when wanted), counts it and returns rc. */
BEX_PRINTF(5, 6)
static int refuse(char *reason, size_t reason_len, int rc, uint64_t *counter, const char *fmt, ...)
{
    (*counter)++;
    if (reason != NULL && reason_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, reason_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int mempool_add(struct mempool *mp, char *reason, size_t reason_len, const uint8_t id[MEMPOOL_ID_BYTES],
                const char *sender, uint64_t nonce, const uint8_t *tx, size_t tx_len, uint64_t now_ms)
{
    struct mempool_stats *st = &mp->stats;
    struct sender *s;
    struct entry *prev = NULL;
    struct entry *e;
    uint8_t *data;
    uint64_t last;
    size_t name_len;
    int rc;

    if (reason != NULL && reason_len > 0)
        reason[0] = '\0';
    if (id == NULL || sender == NULL || tx == NULL || tx_len == 0)
        return refuse(reason, reason_len, -BEX_EINVAL, &st->rejected_invalid, "empty tx");
    name_len = strnlen(sender, MEMPOOL_SENDER_BYTES_MAX + 1);
    if (name_len == 0 || name_len > MEMPOOL_SENDER_BYTES_MAX)
        return refuse(reason, reason_len, -BEX_EINVAL, &st->rejected_invalid, "sender is empty or too long");
    if (entry_find(mp, id) != NULL)
        return refuse(reason, reason_len, -BEX_EEXIST, &st->rejected_exist, "tx already pending");

    s = sender_find(mp, sender);
    if (s != NULL) {
        last = s->last;
    } else if ((rc = mp->cfg.last_nonce(&last, sender, mp->cfg.user)) != 0) {
        return refuse(reason, reason_len, rc < 0 ? rc : -BEX_EIO, &st->rejected_state,
                      "reading the nonce of %s: %s", sender, bex_strerror(rc));
    }
    if (nonce <= last)
        return refuse(reason, reason_len, -BEX_ENONCE, &st->rejected_nonce, "nonce %llu already used (last %llu)",
                      (unsigned long long)nonce, (unsigned long long)last);
    if (s != NULL) {
        /* New nonces usually come last, so the walk starts at the tail. */
        for (prev = s->tail; prev != NULL && prev->tx.nonce > nonce; prev = prev->s_prev)
            ;
        if (prev != NULL && prev->tx.nonce == nonce)
            return refuse(reason, reason_len, -BEX_ENONCE, &st->rejected_nonce, "nonce %llu already pending",
                          (unsigned long long)nonce);
    }
    if (nonce == last + 1) {
        /* The sender's next tx comes first in its list (prev stays NULL): see make_room(). */
        BEX_ASSERT(prev == NULL);
        make_room(mp, sender, tx_len);
        s = sender_find(mp, sender);
    }
    if (s != NULL && s->count >= mp->cfg.sender_count_max)
        return refuse(reason, reason_len, -BEX_EFULL, &st->rejected_full_sender,
                      "sender %s has %zu txs pending, the most allowed", sender, s->count);
    if (tx_len > mp->cfg.sender_bytes_max - (s != NULL ? s->bytes : 0))
        return refuse(reason, reason_len, -BEX_EFULL, &st->rejected_full_sender,
                      "sender %s would exceed %zu pending bytes", sender, mp->cfg.sender_bytes_max);
    if (s == NULL && mp->sender_count >= mp->cfg.senders_max)
        return refuse(reason, reason_len, -BEX_EFULL, &st->rejected_full_senders,
                      "txs of %zu senders pending, the most allowed", mp->sender_count);
    if (mp->count >= mp->cfg.count_max)
        return refuse(reason, reason_len, -BEX_EFULL, &st->rejected_full_count, "pool full: %zu txs pending",
                      mp->count);
    if (tx_len > mp->cfg.bytes_max - mp->bytes)
        return refuse(reason, reason_len, -BEX_EFULL, &st->rejected_full_bytes,
                      "pool full: %zu of %zu bytes pending", mp->bytes, mp->cfg.bytes_max);
    if ((data = malloc(tx_len)) == NULL)
        return refuse(reason, reason_len, -BEX_ENOMEM, &st->rejected_nomem, "out of memory");

    /* From here on nothing can fail. */
    if (s == NULL)
        s = sender_create(mp, sender, last);
    BEX_ASSERT(mp->free_entry_count > 0);
    uint32_t slot = mp->free_entries[--mp->free_entry_count];
    e = &mp->entries[slot];
    BEX_ASSERT(!e->used);
    memcpy(data, tx, tx_len);
    memcpy(e->tx.id, id, MEMPOOL_ID_BYTES);
    e->tx.sender = s->name;
    e->tx.nonce = nonce;
    e->tx.bytes = data;
    e->tx.len = tx_len;
    if (now_ms > mp->last_added_ms)
        mp->last_added_ms = now_ms;
    e->tx.added_ms = mp->last_added_ms;
    e->tx.proposed_height = 0;
    e->data = data;
    e->sender = s;
    e->used = true;

    e->s_prev = prev;
    e->s_next = prev != NULL ? prev->s_next : s->head;
    if (e->s_prev != NULL)
        e->s_prev->s_next = e;
    else
        s->head = e;
    if (e->s_next != NULL)
        e->s_next->s_prev = e;
    else
        s->tail = e;
    e->a_prev = mp->newest;
    e->a_next = NULL;
    if (mp->newest != NULL)
        mp->newest->a_next = e;
    else
        mp->oldest = e;
    mp->newest = e;

    size_t pos = id_probe(mp, id);
    BEX_ASSERT(mp->id_table[pos] == 0);
    mp->id_table[pos] = slot + 1;
    s->count++;
    s->bytes += tx_len;
    mp->count++;
    mp->bytes += tx_len;
    st->added++;
    BEX_ASSERT(mp->count <= mp->cfg.count_max && mp->bytes <= mp->cfg.bytes_max);
    BEX_ASSERT(s->count <= mp->cfg.sender_count_max && s->bytes <= mp->cfg.sender_bytes_max);
    return 0;
}

/* ---- selection ---- */

/*
 * The sender's first tx that may go into a new proposal: the nonce run from
 * last + 1, past the txs already marked for an earlier proposal; NULL at a
 * gap.
 */
static struct entry *first_candidate(const struct sender *s)
{
    uint64_t expect = s->last + 1;
    for (struct entry *e = s->head; e != NULL; e = e->s_next, expect++) {
        if (e->tx.nonce != expect)
            return NULL;
        if (e->tx.proposed_height == 0)
            return e;
    }
    return NULL;
}

size_t mempool_select(struct mempool *mp, const struct mempool_tx **out, size_t count_max, size_t bytes_max,
                      uint64_t mark_height)
{
    struct sender *last_served = NULL;
    size_t nactive = 0;
    size_t n = 0;
    size_t bytes = 0;

    if (count_max == 0 || mp->turn == NULL)
        return 0;
    struct sender *s = mp->turn;
    do {
        s->sel = first_candidate(s);
        if (s->sel != NULL)
            mp->active[nactive++] = s;
        s = ring_next(mp, s);
    } while (s != mp->turn);

    /*
     * Rounds of one tx per active sender, in turn order. A sender leaves the
     * rotation at a gap or when its next tx does not fit the bytes left: a
     * later nonce cannot be taken without it.
     */
    while (nactive > 0 && n < count_max) {
        size_t keep = 0;
        for (size_t i = 0; i < nactive && n < count_max; i++) {
            s = mp->active[i];
            struct entry *e = s->sel;
            if (e->tx.len > bytes_max - bytes)
                continue;
            out[n++] = &e->tx;
            bytes += e->tx.len;
            if (mark_height != 0)
                set_mark(mp, e, mark_height);
            last_served = s;
            struct entry *next = e->s_next;
            if (next != NULL && next->tx.nonce == e->tx.nonce + 1 && next->tx.proposed_height == 0) {
                s->sel = next;
                mp->active[keep++] = s;
            }
        }
        nactive = keep;
    }
    if (last_served != NULL)
        mp->turn = ring_next(mp, last_served);
    BEX_ASSERT(n <= count_max);
    BEX_ASSERT(bytes <= bytes_max);
    mp->stats.selected += n;
    return n;
}

void mempool_unmark(struct mempool *mp, uint64_t from_height)
{
    for (struct entry *e = mp->marked, *next; e != NULL; e = next) {
        next = e->m_next;
        if (e->tx.proposed_height >= from_height)
            set_mark(mp, e, 0);
    }
}

void mempool_mark(struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES], uint64_t height)
{
    struct entry *e = entry_find(mp, id);

    BEX_ASSERT(height > 0);
    if (e != NULL && (e->tx.proposed_height == 0 || e->tx.proposed_height > height))
        set_mark(mp, e, height);
}

void mempool_unmark_below(struct mempool *mp, uint64_t height)
{
    for (struct entry *e = mp->marked, *next; e != NULL; e = next) {
        next = e->m_next;
        if (e->tx.proposed_height <= height)
            set_mark(mp, e, 0);
    }
}

bool mempool_ready(const struct mempool *mp)
{
    for (size_t i = 0; i < mp->cfg.senders_max; i++) {
        const struct sender *s = &mp->senders[i];

        if (s->used && s->head != NULL && s->head->tx.nonce == s->last + 1)
            return true;
    }
    return false;
}

/* ---- removal ---- */

int mempool_commit(struct mempool *mp, const struct mempool_done *done, size_t count)
{
    int first_rc = 0;

    for (size_t i = 0; i < count; i++) {
        struct entry *e = entry_find(mp, done[i].id);
        if (e != NULL) {
            entry_remove(mp, e);
            mp->stats.committed++;
        }
    }
    /* Each sender is refreshed once per block, however many txs it had in it. */
    mp->commit_round++;
    for (size_t i = 0; i < count; i++) {
        if (done[i].sender == NULL ||
            strnlen(done[i].sender, MEMPOOL_SENDER_BYTES_MAX + 1) > MEMPOOL_SENDER_BYTES_MAX)
            continue;
        struct sender *s = sender_find(mp, done[i].sender);
        if (s == NULL || s->commit_round == mp->commit_round)
            continue;
        s->commit_round = mp->commit_round;
        uint64_t last;
        int rc = mp->cfg.last_nonce(&last, s->name, mp->cfg.user);
        if (rc != 0) {
            if (first_rc == 0)
                first_rc = rc < 0 ? rc : -BEX_EIO;
            continue;
        }
        s->last = last;
        /* The list is in nonce order, so the used nonces are a prefix. */
        for (;;) {
            struct entry *e = s->head;
            if (e == NULL || e->tx.nonce > last)
                break;
            bool last_of_sender = s->count == 1;
            entry_remove(mp, e);
            mp->stats.evicted_stale++;
            if (last_of_sender)
                break;
        }
    }
    return first_rc;
}

static uint64_t age_at(const struct entry *e, uint64_t now_ms)
{
    return now_ms > e->tx.added_ms ? now_ms - e->tx.added_ms : 0;
}

size_t mempool_evict_older_than(struct mempool *mp, uint64_t now_ms, uint64_t age_ms)
{
    size_t n = 0;
    while (mp->oldest != NULL && age_at(mp->oldest, now_ms) > age_ms) {
        entry_remove(mp, mp->oldest);
        n++;
    }
    mp->stats.evicted_ttl += n;
    return n;
}

/* ---- queries ---- */

uint64_t mempool_sender_top(const struct mempool *mp, const char *sender)
{
    const struct sender *s = sender_find(mp, sender);

    return s != NULL && s->tail != NULL ? s->tail->tx.nonce : 0;
}

size_t mempool_count(const struct mempool *mp)
{
    return mp->count;
}

bool mempool_full(const struct mempool *mp, size_t tx_len)
{
    return mp->count >= mp->cfg.count_max || tx_len > mp->cfg.bytes_max - mp->bytes;
}

bool mempool_crowded(const struct mempool *mp, size_t tx_len)
{
    return mempool_full(mp, tx_len) || mp->count >= mp->cfg.sender_count_max ||
           tx_len > mp->cfg.sender_bytes_max - (mp->bytes < mp->cfg.sender_bytes_max ? mp->bytes
                                                                                    : mp->cfg.sender_bytes_max);
}

bool mempool_may_admit(const struct mempool *mp, const char *sender, uint64_t nonce, size_t tx_len)
{
    const struct sender *s = sender_find(mp, sender);

    if (s == NULL || nonce == s->last + 1)
        return true;
    return !mempool_full(mp, tx_len) && s->count < mp->cfg.sender_count_max &&
           tx_len <= mp->cfg.sender_bytes_max - s->bytes;
}

size_t mempool_stuck_heads(const struct mempool *mp, const struct mempool_tx **out, size_t max, size_t run,
                           uint64_t now_ms, uint64_t age_ms)
{
    size_t n = 0;

    for (size_t i = 0; i < mp->cfg.senders_max && n < max; i++) {
        const struct sender *s = &mp->senders[i];
        const struct entry *e = s->head;
        uint64_t expect = s->last + 1;

        if (!s->used || e == NULL || e->tx.nonce != expect || e->tx.proposed_height != 0 ||
            age_at(e, now_ms) < age_ms)
            continue;
        for (size_t k = 0; e != NULL && k < run && n < max; k++, e = e->s_next, expect++) {
            if (e->tx.nonce != expect || e->tx.proposed_height != 0)
                break;
            out[n++] = &e->tx;
        }
    }
    BEX_ASSERT(n <= max);
    return n;
}

size_t mempool_bytes(const struct mempool *mp)
{
    return mp->bytes;
}

const struct mempool_tx *mempool_get(const struct mempool *mp, const uint8_t id[MEMPOOL_ID_BYTES])
{
    struct entry *e = entry_find(mp, id);
    return e != NULL ? &e->tx : NULL;
}

uint64_t mempool_oldest_age_ms(const struct mempool *mp, uint64_t now_ms)
{
    return mp->oldest != NULL ? age_at(mp->oldest, now_ms) : 0;
}

void mempool_get_stats(const struct mempool *mp, struct mempool_stats *out)
{
    *out = mp->stats;
}

/* ---- invariants ---- */

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            if (reason != NULL && reason_len > 0)                                                                      \
                snprintf(reason, reason_len, __VA_ARGS__);                                                             \
            return -BEX_ECORRUPT;                                                                                      \
        }                                                                                                              \
    } while (0)

static int check_sender(const struct mempool *mp, const struct sender *s, char *reason, size_t reason_len)
{
    size_t count = 0;
    size_t bytes = 0;
    uint64_t prev_nonce = s->last;

    CHECK(s->used, "sender %s in turn order but not in use", s->name);
    CHECK(sender_find(mp, s->name) == s, "sender %s not found by name", s->name);
    CHECK(s->head != NULL && s->count > 0, "sender %s has no txs", s->name);
    for (const struct entry *e = s->head; e != NULL; e = e->s_next) {
        CHECK(e->used && e->sender == s, "sender %s lists a foreign entry", s->name);
        CHECK(e->tx.nonce > prev_nonce, "sender %s: nonce %llu after %llu (last %llu)", s->name,
              (unsigned long long)e->tx.nonce, (unsigned long long)prev_nonce, (unsigned long long)s->last);
        CHECK(e->s_prev == NULL ? s->head == e : e->s_prev->s_next == e, "sender %s: broken back link", s->name);
        CHECK(e->s_next != NULL || s->tail == e, "sender %s: wrong tail", s->name);
        prev_nonce = e->tx.nonce;
        count++;
        bytes += e->tx.len;
    }
    CHECK(count == s->count && bytes == s->bytes, "sender %s: counted %zu txs %zu bytes, recorded %zu %zu", s->name,
          count, bytes, s->count, s->bytes);
    CHECK(count <= mp->cfg.sender_count_max && bytes <= mp->cfg.sender_bytes_max, "sender %s over its caps",
          s->name);
    return 0;
}

int mempool_check(const struct mempool *mp, char *reason, size_t reason_len)
{
    size_t used = 0;
    size_t count = 0;
    size_t bytes = 0;
    size_t senders = 0;
    size_t in_table = 0;
    size_t marked = 0;
    bool turn_seen = mp->turn == NULL;
    int rc;

    for (size_t i = 0; i < mp->cfg.count_max; i++) {
        const struct entry *e = &mp->entries[i];
        if (!e->used)
            continue;
        used++;
        CHECK(mp->id_table[id_probe(mp, e->tx.id)] == i + 1, "slot %zu not found by its id", i);
        CHECK(e->sender != NULL && e->sender->used && e->tx.sender == e->sender->name, "slot %zu: bad sender", i);
        CHECK(e->tx.bytes == e->data && e->data != NULL && e->tx.len > 0, "slot %zu: bad bytes", i);
        marked += e->tx.proposed_height != 0;
    }
    for (const struct entry *e = mp->marked; e != NULL; e = e->m_next) {
        CHECK(e->used && e->tx.proposed_height != 0, "marked list holds a free or unmarked slot");
        CHECK(e->m_prev == NULL ? mp->marked == e : e->m_prev->m_next == e, "marked list: broken back link");
        CHECK(marked-- > 0, "marked list longer than the marked txs");
    }
    CHECK(marked == 0, "%zu marked txs missing from the marked list", marked);
    for (size_t i = 0; i <= mp->id_mask; i++) {
        if (mp->id_table[i] == 0)
            continue;
        in_table++;
        CHECK(mp->id_table[i] <= mp->cfg.count_max && mp->entries[mp->id_table[i] - 1].used,
              "id bucket %zu names a free slot", i);
    }
    for (const struct entry *e = mp->oldest; e != NULL; e = e->a_next) {
        CHECK(e->used, "arrival list holds a free slot");
        CHECK(e->a_prev == NULL ? mp->oldest == e : e->a_prev->a_next == e, "arrival list: broken back link");
        CHECK(e->a_next != NULL || mp->newest == e, "arrival list: wrong newest");
        CHECK(e->a_prev == NULL || e->a_prev->tx.added_ms <= e->tx.added_ms, "arrival list out of time order");
        count++;
        bytes += e->tx.len;
    }
    CHECK(used == mp->count && count == mp->count && in_table == mp->count,
          "count %zu but %zu slots used, %zu in arrival list, %zu in id table", mp->count, used, count, in_table);
    CHECK(bytes == mp->bytes, "bytes %zu but arrival list sums %zu", mp->bytes, bytes);
    CHECK(mp->count + mp->free_entry_count == mp->cfg.count_max, "free entry stack out of step");
    CHECK(mp->count <= mp->cfg.count_max && mp->bytes <= mp->cfg.bytes_max, "pool over its caps");

    count = 0;
    bytes = 0;
    for (const struct sender *s = mp->first; s != NULL; s = s->next) {
        CHECK(s->prev == NULL ? mp->first == s : s->prev->next == s, "turn order: broken back link");
        CHECK(s->next != NULL || mp->last == s, "turn order: wrong last");
        if ((rc = check_sender(mp, s, reason, reason_len)) != 0)
            return rc;
        turn_seen = turn_seen || mp->turn == s;
        senders++;
        count += s->count;
        bytes += s->bytes;
    }
    CHECK(turn_seen, "the next turn names a sender not in the turn order");
    CHECK((mp->turn == NULL) == (senders == 0), "next turn set without senders or missing");
    CHECK(senders == mp->sender_count && senders + mp->free_sender_count == mp->cfg.senders_max,
          "%zu senders in turn order, %zu recorded", senders, mp->sender_count);
    CHECK(count == mp->count && bytes == mp->bytes, "senders hold %zu txs %zu bytes, pool %zu %zu", count, bytes,
          mp->count, mp->bytes);
    in_table = 0;
    for (size_t i = 0; i <= mp->sender_mask; i++) {
        if (mp->sender_table[i] == 0)
            continue;
        in_table++;
        CHECK(mp->sender_table[i] <= mp->cfg.senders_max && mp->senders[mp->sender_table[i] - 1].used,
              "sender bucket %zu names a free slot", i);
    }
    CHECK(in_table == senders, "sender table holds %zu, turn order %zu", in_table, senders);
    return 0;
}
