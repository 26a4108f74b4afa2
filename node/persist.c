/* persist.c: group commit of the engine's votes on a writer thread. See persist.h. */
#include "persist.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { OP_PUT = 1, OP_PRUNE = 2, OP_CHECKPOINT = 3, OP_BLOCK = 4 };

/* An operation is: op (1 byte), a_len (4 BE), a, b_len (4 BE), b. */
struct persist_batch {
    struct persist_batch *next;
    uint64_t seq;
    uint8_t *buf;
    size_t len, cap;
    uint32_t ops;
};

struct persist {
    struct store *s;
    persist_wake_fn wake;
    void *ud;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* the writer waits for batches */
    pthread_cond_t space; /* the owner waits for room in the queue */
    /* Under mu. */
    struct persist_batch *head, *tail; /* queued, oldest first */
    size_t queued_n, queued_bytes;
    uint64_t submitted, durable;
    int failed;
    bool stop;
    uint64_t commits, batches;
};

/* ------------------------------------------------------------- batches */

struct persist_batch *persist_batch_new(void)
{
    return calloc(1, sizeof(struct persist_batch));
}

void persist_batch_free(struct persist_batch *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    free(b);
}

uint32_t persist_batch_ops(const struct persist_batch *b)
{
    return b == NULL ? 0 : b->ops;
}

static int add_op(struct persist_batch *b, uint8_t op, const uint8_t *a, size_t a_len, const uint8_t *c,
                  size_t c_len)
{
    size_t need;

    if (b == NULL || (a == NULL && a_len > 0) || (c == NULL && c_len > 0))
        return -BEX_EINVAL;
    if (a_len > PERSIST_BATCH_BYTES_MAX || c_len > PERSIST_BATCH_BYTES_MAX)
        return -BEX_ELIMIT;
    need = 1 + 4 + a_len + 4 + c_len;
    if (b->len + need > PERSIST_BATCH_BYTES_MAX)
        return -BEX_ELIMIT;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        uint8_t *nb;

        while (cap < b->len + need)
            cap *= 2;
        if ((nb = realloc(b->buf, cap)) == NULL)
            return -BEX_ENOMEM;
        b->buf = nb;
        b->cap = cap;
    }
    b->buf[b->len++] = op;
    bex_be32_put(b->buf + b->len, (uint32_t)a_len);
    b->len += 4;
    if (a_len > 0)
        memcpy(b->buf + b->len, a, a_len);
    b->len += a_len;
    bex_be32_put(b->buf + b->len, (uint32_t)c_len);
    b->len += 4;
    if (c_len > 0)
        memcpy(b->buf + b->len, c, c_len);
    b->len += c_len;
    b->ops++;
    return 0;
}

int persist_batch_put(struct persist_batch *b, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    if (key == NULL || key_len == 0)
        return -BEX_EINVAL;
    /* The store's limits, checked here: a batch the writer cannot commit would stop it for good. */
    if (key_len > STORE_PBFT_KEY_BYTES_MAX || val_len > STORE_PBFT_VALUE_BYTES_MAX)
        return -BEX_ELIMIT;
    return add_op(b, OP_PUT, key, key_len, val, val_len);
}

int persist_batch_prune(struct persist_batch *b, const uint8_t *from, size_t from_len, const uint8_t *to,
                        size_t to_len)
{
    if (to == NULL || to_len == 0)
        return -BEX_EINVAL;
    if (from_len > STORE_PBFT_KEY_BYTES_MAX || to_len > STORE_PBFT_KEY_BYTES_MAX)
        return -BEX_ELIMIT;
    return add_op(b, OP_PRUNE, from, from_len, to, to_len);
}

int persist_batch_checkpoint(struct persist_batch *b, uint64_t seq, const uint8_t digest[STORE_HASH_BYTES])
{
    uint8_t s[8];

    if (digest == NULL)
        return -BEX_EINVAL;
    bex_be64_put(s, seq);
    return add_op(b, OP_CHECKPOINT, s, sizeof s, digest, STORE_HASH_BYTES);
}

int persist_batch_block(struct persist_batch *b, const struct store_block *blk)
{
    if (blk == NULL)
        return -BEX_EINVAL;
    /* The pointer itself: the block is borrowed, not copied (persist.h). */
    return add_op(b, OP_BLOCK, (const uint8_t *)&blk, sizeof blk, NULL, 0);
}

/* Adds one batch's operations to the open store batch; the encoding is ours, so it is asserted. */
static int apply_batch(struct store_batch *sb, const struct persist_batch *b)
{
    size_t off = 0;
    int rc = 0;

    while (rc == 0 && off < b->len) {
        uint8_t op = b->buf[off];
        const uint8_t *a, *c;
        uint32_t a_len, c_len;

        BEX_ASSERT(off + 5 <= b->len);
        a_len = bex_be32_get(b->buf + off + 1);
        a = b->buf + off + 5;
        BEX_ASSERT(off + 5 + (size_t)a_len + 4 <= b->len);
        c_len = bex_be32_get(a + a_len);
        c = a + a_len + 4;
        off += 1 + 4 + (size_t)a_len + 4 + c_len;
        BEX_ASSERT(off <= b->len);
        switch (op) {
        case OP_PUT:
            rc = store_batch_pbft_put(sb, a, a_len, c, c_len);
            break;
        case OP_PRUNE:
            rc = store_batch_pbft_prune(sb, NULL, a, a_len, c, c_len);
            break;
        case OP_BLOCK: {
            const struct store_block *blk;

            BEX_ASSERT(a_len == sizeof blk && c_len == 0);
            memcpy(&blk, a, sizeof blk);
            rc = store_batch_block(sb, blk);
            break;
        }
        case OP_CHECKPOINT:
            BEX_ASSERT(a_len == 8 && c_len == STORE_HASH_BYTES);
            rc = store_batch_checkpoint(sb, bex_be64_get(a), c);
            break;
        default:
            BEX_ASSERT(!"unknown persist op");
        }
    }
    return rc;
}

/* ------------------------------------------------------------- the writer */

/* One store transaction for the batches from first up to and including last. */
static int commit_batches(struct store *s, struct persist_batch *first, const struct persist_batch *last)
{
    struct store_batch *sb;
    int rc;

    if ((rc = store_batch_begin(s, &sb)) != 0)
        return rc;
    for (struct persist_batch *b = first; rc == 0; b = b->next) {
        rc = apply_batch(sb, b);
        if (b == last)
            break;
    }
    if (rc != 0) {
        store_batch_abort(sb);
        return rc;
    }
    return store_batch_commit(sb);
}

static void *writer(void *arg)
{
    struct persist *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct persist_batch *first, *last, *done;
        uint64_t n = 0;
        int rc;

        while (!p->stop && (p->head == NULL || p->failed != 0))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        /* Everything queued now goes in one transaction; later batches wait for the next. */
        first = p->head;
        last = p->tail;
        pthread_mutex_unlock(&p->mu);
        rc = commit_batches(p->s, first, last);
        pthread_mutex_lock(&p->mu);
        if (rc != 0) {
            p->failed = rc;
            /* An owner blocked on a full queue must learn of it: nothing else would wake it. */
            pthread_cond_broadcast(&p->space);
        } else {
            done = first;
            p->head = last->next;
            if (p->head == NULL)
                p->tail = NULL;
            p->durable = last->seq;
            p->commits++;
            while (done != NULL) {
                struct persist_batch *next = done == last ? NULL : done->next;

                p->queued_n--;
                p->queued_bytes -= done->len;
                persist_batch_free(done);
                n++;
                done = next;
            }
            p->batches += n;
            pthread_cond_broadcast(&p->space);
        }
        pthread_mutex_unlock(&p->mu);
        p->wake(p->ud);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

int persist_new(struct persist **out, struct store *s, persist_wake_fn wake, void *ud)
{
    struct persist *p;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || s == NULL || wake == NULL)
        return -BEX_EINVAL;
    if ((p = calloc(1, sizeof *p)) == NULL)
        return -BEX_ENOMEM;
    p->s = s;
    p->wake = wake;
    p->ud = ud;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return -BEX_ENOMEM;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -BEX_ENOMEM;
    }
    if (pthread_cond_init(&p->space, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -BEX_ENOMEM;
    }
    if (pthread_create(&p->thread, NULL, writer, p) != 0) {
        pthread_cond_destroy(&p->space);
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -BEX_EIO;
    }
    p->started = true;
    *out = p;
    return 0;
}

void persist_free(struct persist *p)
{
    struct persist_batch *b;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->thread, NULL);
    while ((b = p->head) != NULL) {
        p->head = b->next;
        persist_batch_free(b);
    }
    pthread_cond_destroy(&p->space);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ------------------------------------------------------------- the owner's side */

int persist_submit(struct persist *p, uint64_t *seq, struct persist_batch *b)
{
    int rc = 0;

    if (p == NULL || seq == NULL || b == NULL) {
        persist_batch_free(b);
        return -BEX_EINVAL;
    }
    pthread_mutex_lock(&p->mu);
    while (p->failed == 0 && p->head != NULL &&
           (p->queued_n >= PERSIST_BATCHES_MAX || p->queued_bytes + b->len > PERSIST_BYTES_MAX))
        pthread_cond_wait(&p->space, &p->mu);
    if (p->failed != 0 && (p->queued_n >= PERSIST_BATCHES_MAX || p->queued_bytes + b->len > PERSIST_BYTES_MAX)) {
        rc = p->failed;
    } else {
        b->seq = ++p->submitted;
        b->next = NULL;
        if (p->tail != NULL)
            p->tail->next = b;
        else
            p->head = b;
        p->tail = b;
        p->queued_n++;
        p->queued_bytes += b->len;
        *seq = b->seq;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (rc != 0)
        persist_batch_free(b);
    return rc;
}

uint64_t persist_submitted(const struct persist *p)
{
    /* Written only by the owner's thread, which is the caller. */
    return p == NULL ? 0 : p->submitted;
}

uint64_t persist_durable(struct persist *p, int *failed)
{
    uint64_t d;

    pthread_mutex_lock(&p->mu);
    d = p->durable;
    if (failed != NULL)
        *failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    return d;
}

void persist_retry(struct persist *p)
{
    pthread_mutex_lock(&p->mu);
    p->failed = 0;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void persist_counts(struct persist *p, uint64_t *commits, uint64_t *batches)
{
    pthread_mutex_lock(&p->mu);
    if (commits != NULL)
        *commits = p->commits;
    if (batches != NULL)
        *batches = p->batches;
    pthread_mutex_unlock(&p->mu);
}
