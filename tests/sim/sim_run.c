/*
 * sim_run.c: one simulated cluster from one seed. An event heap orders
 * message deliveries, ticks, state transfers, crashes, restarts and
 * partitions on a simulated clock. Every node wraps a real engine with what
 * bexd would do around it: persist, send, execute (the state root is a hash
 * chain of the committed digests), transfer state from a peer after
 * verifying each commit certificate, restart from what it persisted.
 *
 * Checked after every event: no two replicas commit different digests at one
 * seq, commits form a gap-free prefix, every commit certificate verifies,
 * nothing signed leaves before it is persisted. After the faults heal, every
 * honest replica must execute new requests within a bounded time.
 */
#include "sim_cluster.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LIVENESS_BOUND_MS 60000
#define EVENTS_MAX 20000000ull

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL) {
        fprintf(stderr, "sim: out of memory\n");
        abort();
    }
    return q;
}

static void *xcalloc(size_t size)
{
    void *q = calloc(1, size);
    if (q == NULL) {
        fprintf(stderr, "sim: out of memory\n");
        abort();
    }
    return q;
}

void sim__trace(struct sim *s, const char *fmt, ...)
{
    va_list ap;

    if (!s->opt.verbose)
        return;
    printf("%8llu ", (unsigned long long)s->now);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

void sim__violation(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    int len;

    if (s->res->violation)
        return;
    s->res->violation = true;
    len = snprintf(s->res->why, sizeof(s->res->why), "t=%llu: ", (unsigned long long)s->now);
    va_start(ap, fmt);
    vsnprintf(s->res->why + len, sizeof(s->res->why) - (size_t)len, fmt, ap);
    va_end(ap);
    s->done = true;
}

static const char *msg_name(enum pbft_msg_type t)
{
    static const char *names[] = {"?", "PRE-PREPARE", "PREPARE", "COMMIT", "CHECKPOINT",
                                  "VIEW-CHANGE", "NEW-VIEW", "PREPARED", "STABLE"};
    return (unsigned)t < BEX_ARRAY_LEN(names) ? names[t] : "?";
}

/* ---------------------------------------------------------------- events */

static bool ev_before(const struct event *a, const struct event *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static void heap_push(struct sim *s, struct event ev)
{
    size_t i;

    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 1024;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof(*s->heap));
    }
    ev.order = s->order++;
    i = s->heap_len++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!ev_before(&ev, &s->heap[up]))
            break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = ev;
}

static struct event heap_pop(struct sim *s)
{
    struct event top = s->heap[0];
    struct event last = s->heap[--s->heap_len];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_len)
            break;
        if (c + 1 < s->heap_len && ev_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_len > 0)
        s->heap[i] = last;
    return top;
}

static void schedule(struct sim *s, uint64_t at, enum ev_kind kind, uint32_t node)
{
    struct event ev;

    memset(&ev, 0, sizeof(ev));
    ev.at = at;
    ev.kind = kind;
    ev.node = node;
    heap_push(s, ev);
}

/* ---------------------------------------------------------------- network */

struct blob *sim__blob_new(enum pbft_msg_type type, const void *data)
{
    size_t size = type == PBFT_MSG_VIEW_CHANGE ? sizeof(struct pbft_view_change)
                                               : sizeof(struct pbft_new_view);
    struct blob *b = xcalloc(sizeof(*b));

    BEX_ASSERT(type == PBFT_MSG_VIEW_CHANGE || type == PBFT_MSG_NEW_VIEW);
    b->refs = 1;
    b->type = type;
    b->data = xrealloc(NULL, size);
    memcpy(b->data, data, size);
    return b;
}

void sim__blob_put(struct blob *b)
{
    if (b == NULL)
        return;
    BEX_ASSERT(b->refs > 0);
    if (--b->refs == 0) {
        free(b->data);
        free(b);
    }
}

static bool cut(const struct sim *s, uint32_t a, uint32_t b)
{
    if (!s->partitioned)
        return false;
    return ((s->side_mask >> a) & 1) != ((s->side_mask >> b) & 1);
}

void sim__enqueue(struct sim *s, uint32_t from, uint32_t to, const struct msg *m)
{
    uint32_t copies = 1;

    BEX_ASSERT(to < s->n);
    BEX_ASSERT(from < s->n);
    s->res->messages++;
    if (sim_rng_chance(&s->rng, s->drop_pm))
        return;
    if (sim_rng_chance(&s->rng, s->dup_pm))
        copies = 2;
    for (uint32_t i = 0; i < copies; i++) {
        struct event ev;
        memset(&ev, 0, sizeof(ev));
        ev.at = s->now + sim_rng_range(&s->rng, s->delay_min, s->delay_max);
        if (sim_rng_chance(&s->rng, s->late_pm))
            ev.at += sim_rng_range(&s->rng, 100, 600);
        ev.kind = EV_DELIVER;
        ev.node = to;
        ev.msg = *m;
        ev.msg.from = from;
        if (m->blob != NULL)
            m->blob->refs++;
        heap_push(s, ev);
    }
}

static void send_msg(struct sim *s, struct node *nd, uint32_t to, const struct msg *m)
{
    if (nd->byz)
        sim__byz_send(s, nd, to, m);
    else
        sim__enqueue(s, nd->id, to, m);
}

/* ---------------------------------------------------------------- store */

static void store_vote(struct store *st, const struct pbft_vote *v)
{
    if (st->nvotes == st->cap_votes) {
        st->cap_votes = st->cap_votes ? 2 * st->cap_votes : 64;
        st->votes = xrealloc(st->votes, st->cap_votes * sizeof(*st->votes));
    }
    st->votes[st->nvotes++] = *v;
}

static void store_prepared(struct store *st, const struct pbft_prepared *c)
{
    if (st->nprepared == st->cap_prepared) {
        st->cap_prepared = st->cap_prepared ? 2 * st->cap_prepared : 32;
        st->prepared = xrealloc(st->prepared, st->cap_prepared * sizeof(*st->prepared));
    }
    st->prepared[st->nprepared++] = *c;
}

static void store_prune(struct store *st, uint64_t seq)
{
    size_t k = 0;

    for (size_t i = 0; i < st->nvotes; i++) {
        if (st->votes[i].seq > seq)
            st->votes[k++] = st->votes[i];
    }
    st->nvotes = k;
    k = 0;
    for (size_t i = 0; i < st->nprepared; i++) {
        if (st->prepared[i].seq > seq)
            st->prepared[k++] = st->prepared[i];
    }
    st->nprepared = k;
}

static bool store_has_vote(const struct store *st, const struct pbft_vote *v)
{
    for (size_t i = st->nvotes; i-- > 0;) {
        const struct pbft_vote *x = &st->votes[i];
        if (x->type == v->type && x->view == v->view && x->seq == v->seq &&
            memcmp(x->digest, v->digest, PBFT_DIGEST_BYTES) == 0)
            return true;
    }
    return false;
}

static void store_free(struct store *st)
{
    free(st->votes);
    free(st->prepared);
    free(st->vc);
    free(st->nv);
    memset(st, 0, sizeof(*st));
}

/* ---------------------------------------------------------------- execution */

static struct gblock *global_at(struct sim *s, uint64_t seq)
{
    if (seq >= s->global_cap) {
        size_t cap = s->global_cap ? s->global_cap : 256;
        while (cap <= seq)
            cap *= 2;
        s->global = xrealloc(s->global, cap * sizeof(*s->global));
        memset(s->global + s->global_cap, 0, (cap - s->global_cap) * sizeof(*s->global));
        s->global_cap = cap;
    }
    return &s->global[seq];
}

/* Takes (seq, digest) as the node's next committed block, after every check. */
static bool accept_block(struct sim *s, struct node *nd, uint64_t seq,
                         const uint8_t digest[PBFT_DIGEST_BYTES],
                         const struct pbft_commit_cert *cert, const char *how)
{
    struct gblock *g = global_at(s, seq);
    struct block *b;
    int rc;

    if (seq != nd->delivered + 1) {
        sim__violation(s, "replica %u: %s seq %llu after %llu (gap or repeat)", nd->id, how,
                       (unsigned long long)seq, (unsigned long long)nd->delivered);
        return false;
    }
    if ((rc = pbft_verify_commit_cert(&nd->cfg, seq, digest, cert)) != 0) {
        sim__violation(s, "replica %u: %s of seq %llu with a certificate that fails: %s", nd->id,
                       how, (unsigned long long)seq, bex_errname(rc));
        return false;
    }
    if (g->set && memcmp(g->digest, digest, PBFT_DIGEST_BYTES) != 0) {
        sim__violation(s, "AGREEMENT: replica %u %s seq %llu with digest %02x%02x.., another "
                          "replica committed %02x%02x..",
                       nd->id, how, (unsigned long long)seq, digest[0], digest[1], g->digest[0],
                       g->digest[1]);
        return false;
    }
    if (seq >= nd->cap_blocks) {
        size_t cap = nd->cap_blocks ? nd->cap_blocks : 256;
        while (cap <= seq)
            cap *= 2;
        nd->blocks = xrealloc(nd->blocks, cap * sizeof(*nd->blocks));
        nd->cap_blocks = cap;
    }
    b = &nd->blocks[seq];
    memcpy(b->digest, digest, PBFT_DIGEST_BYTES);
    b->cert = *cert;
    nd->delivered = seq;
    if (!g->set) {
        g->set = true;
        memcpy(g->digest, digest, PBFT_DIGEST_BYTES);
    }
    sim__trace(s, "r%u %s seq %llu digest %02x%02x..", nd->id, how, (unsigned long long)seq,
               digest[0], digest[1]);
    return true;
}

/* Executes the next accepted block: the state root is a hash chain. */
static bool execute_next(struct sim *s, struct node *nd)
{
    uint64_t seq = nd->executed + 1;
    struct gblock *g = global_at(s, seq);
    uint8_t buf[2 * PBFT_DIGEST_BYTES];
    struct block *b = &nd->blocks[seq];

    BEX_ASSERT(seq <= nd->delivered);
    BEX_ASSERT(g->set);
    memcpy(buf, nd->root, PBFT_DIGEST_BYTES);
    memcpy(buf + PBFT_DIGEST_BYTES, b->digest, PBFT_DIGEST_BYTES);
    sim_hash(buf, sizeof(buf), nd->root);
    memcpy(b->root, nd->root, PBFT_DIGEST_BYTES);
    nd->executed = seq;
    if (!g->root_set) {
        g->root_set = true;
        memcpy(g->root, nd->root, PBFT_DIGEST_BYTES);
    } else if (memcmp(g->root, nd->root, PBFT_DIGEST_BYTES) != 0) {
        sim__violation(s, "replica %u: state root differs at seq %llu", nd->id,
                       (unsigned long long)seq);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- actions */

static void node_crash(struct sim *s, struct node *nd);

static bool persisted_before_send(const struct node *nd, const struct pbft_msg *m)
{
    switch (m->type) {
    case PBFT_MSG_PRE_PREPARE:
        /* The O set of a NEW-VIEW is durable with the NEW-VIEW. */
        if (nd->st.has_nv && nd->st.nv->view == m->vote.view) {
            for (uint32_t i = 0; i < nd->st.nv->pre_prepare_count; i++) {
                const struct pbft_vote *pp = &nd->st.nv->pre_prepares[i];
                if (pp->seq == m->vote.seq &&
                    memcmp(pp->digest, m->vote.digest, PBFT_DIGEST_BYTES) == 0)
                    return true;
            }
        }
        return store_has_vote(&nd->st, &m->vote);
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        return store_has_vote(&nd->st, &m->vote);
    case PBFT_MSG_VIEW_CHANGE:
        return nd->st.has_vc && nd->st.vc->new_view == m->view_change->new_view &&
               memcmp(nd->st.vc->sig, m->view_change->sig, PBFT_SIG_BYTES) == 0;
    case PBFT_MSG_NEW_VIEW:
        return nd->st.has_nv && nd->st.nv->view == m->new_view->view &&
               memcmp(nd->st.nv->sig, m->new_view->sig, PBFT_SIG_BYTES) == 0;
    default:
        return true;
    }
}

static void persist(struct node *nd, const struct pbft_msg *m)
{
    struct store *st = &nd->st;

    switch (m->type) {
    case PBFT_MSG_PRE_PREPARE:
    case PBFT_MSG_PREPARE:
    case PBFT_MSG_COMMIT:
        store_vote(st, &m->vote);
        break;
    case PBFT_MSG_PREPARED:
        store_prepared(st, m->prepared);
        break;
    case PBFT_MSG_VIEW_CHANGE:
        if (st->vc == NULL)
            st->vc = xcalloc(sizeof(*st->vc));
        *st->vc = *m->view_change;
        st->has_vc = true;
        break;
    case PBFT_MSG_NEW_VIEW:
        if (st->nv == NULL)
            st->nv = xcalloc(sizeof(*st->nv));
        *st->nv = *m->new_view;
        st->has_nv = true;
        break;
    default:
        BEX_ASSERT(0);
    }
}

static void out_msg(struct sim *s, struct node *nd, const struct pbft_action *a)
{
    struct msg m;

    memset(&m, 0, sizeof(m));
    m.type = a->msg.type;
    if (m.type == PBFT_MSG_VIEW_CHANGE)
        m.blob = sim__blob_new(m.type, a->msg.view_change);
    else if (m.type == PBFT_MSG_NEW_VIEW)
        m.blob = sim__blob_new(m.type, a->msg.new_view);
    else
        m.vote = a->msg.vote;
    if (a->type == PBFT_ACT_SEND) {
        send_msg(s, nd, a->to, &m);
    } else {
        for (uint32_t to = 0; to < s->n; to++) {
            if (to != nd->id)
                send_msg(s, nd, to, &m);
        }
    }
    sim__blob_put(m.blob);
}

static void run_actions(struct sim *s, struct node *nd);

/* Executes every accepted block and reports each to the engine. */
static void execute_pending(struct sim *s, struct node *nd)
{
    while (!s->done && nd->up && nd->executed < nd->delivered) {
        uint64_t seq = nd->executed + 1;
        int rc;
        if (!execute_next(s, nd))
            return;
        if ((rc = pbft_executed(nd->p, seq, nd->blocks[seq].root, s->out)) != 0) {
            sim__violation(s, "replica %u: pbft_executed(%llu) failed: %s", nd->id,
                           (unsigned long long)seq, bex_errname(rc));
            return;
        }
        run_actions(s, nd);
    }
}

/*
 * Performs the actions of the last call in order, as bexd would. A crash
 * armed on the node strikes after crash_after of them.
 */
static void run_actions(struct sim *s, struct node *nd)
{
    struct pbft_actions *out = s->out;
    bool committed = false;
    uint32_t limit = out->count;
    bool crash = false;

    if (nd->crash_after >= 0 && (uint32_t)nd->crash_after < limit) {
        limit = (uint32_t)nd->crash_after;
        crash = true;
    }
    for (uint32_t i = 0; i < limit && !s->done; i++) {
        const struct pbft_action *a = &out->items[i];
        switch (a->type) {
        case PBFT_ACT_PERSIST:
            persist(nd, &a->msg);
            break;
        case PBFT_ACT_SEND:
        case PBFT_ACT_BROADCAST:
            if (!nd->byz && !persisted_before_send(nd, &a->msg)) {
                sim__violation(s, "replica %u sent a %s before persisting it", nd->id,
                               msg_name(a->msg.type));
                return;
            }
            out_msg(s, nd, a);
            break;
        case PBFT_ACT_COMMIT:
            if (!accept_block(s, nd, a->seq, a->digest, a->cert, "commits"))
                return;
            committed = true;
            break;
        case PBFT_ACT_FETCH:
            sim__trace(s, "r%u fetch to %llu", nd->id, (unsigned long long)a->seq);
            if (!nd->transfer_pending) {
                nd->transfer_pending = true;
                nd->transfer_target = a->seq;
                memcpy(nd->transfer_root, a->digest, PBFT_DIGEST_BYTES);
                schedule(s, s->now + sim_rng_range(&s->rng, 2, 30), EV_TRANSFER, nd->id);
            }
            break;
        case PBFT_ACT_STABLE:
            nd->st.proof = *a->proof;
            nd->st.has_proof = true;
            store_prune(&nd->st, a->seq);
            sim__trace(s, "r%u stable %llu", nd->id, (unsigned long long)a->seq);
            break;
        case PBFT_ACT_VIEW_CHANGE:
            sim__trace(s, "r%u view change to %llu", nd->id, (unsigned long long)a->view);
            break;
        case PBFT_ACT_NEW_VIEW:
            sim__trace(s, "r%u new view %llu", nd->id, (unsigned long long)a->view);
            if (a->view > nd->highest_view)
                nd->highest_view = a->view;
            break;
        }
    }
    if (crash) {
        sim__trace(s, "r%u crashes after %u of %u actions", nd->id, limit, out->count);
        node_crash(s, nd);
        return;
    }
    if (!committed)
        return;
    /* Execution may lag behind the commits, as in a busy node. */
    if (s->exec_delay_max == 0) {
        execute_pending(s, nd);
    } else if (!nd->exec_scheduled) {
        nd->exec_scheduled = true;
        schedule(s, s->now + sim_rng_range(&s->rng, 1, s->exec_delay_max), EV_EXECUTE, nd->id);
    }
}

/* ---------------------------------------------------------------- nodes */

static void node_crash(struct sim *s, struct node *nd)
{
    BEX_ASSERT(!nd->byz);
    nd->up = false;
    nd->crash_after = -1;
    nd->transfer_pending = false;
    /* Committed but not executed: not durable. */
    nd->delivered = nd->executed;
    pbft_close(nd->p);
    if (!s->healed)
        schedule(s, s->now + sim_rng_range(&s->rng, 100, 1500), EV_RESTART, nd->id);
}

static void restore_or_fail(struct sim *s, struct node *nd, const struct pbft_msg *m)
{
    int rc = pbft_restore(nd->p, m);

    if (rc != 0 && rc != -BEX_ELIMIT)
        sim__violation(s, "replica %u: restoring its own %s failed: %s", nd->id,
                       msg_name(m->type), bex_errname(rc));
}

/* Restarts from the durable store and executed state, like bexd at boot. */
static void node_start(struct sim *s, struct node *nd)
{
    struct pbft_msg m;
    size_t total = nd->st.nvotes + nd->st.nprepared;
    size_t *order = xcalloc((total + 1) * sizeof(*order));
    int rc;

    if ((rc = pbft_init(nd->p, &nd->cfg)) != 0) {
        sim__violation(s, "replica %u: pbft_init failed: %s", nd->id, bex_errname(rc));
        free(order);
        return;
    }
    memset(&m, 0, sizeof(m));
    if (nd->st.has_proof) {
        m.type = PBFT_MSG_STABLE;
        m.proof = &nd->st.proof;
        restore_or_fail(s, nd, &m);
    }
    if (nd->st.has_vc) {
        memset(&m, 0, sizeof(m));
        m.type = PBFT_MSG_VIEW_CHANGE;
        m.view_change = nd->st.vc;
        restore_or_fail(s, nd, &m);
    }
    if (nd->st.has_nv) {
        memset(&m, 0, sizeof(m));
        m.type = PBFT_MSG_NEW_VIEW;
        m.new_view = nd->st.nv;
        restore_or_fail(s, nd, &m);
    }
    /* Votes and certificates come back in a random order. */
    for (size_t i = 0; i < total; i++)
        order[i] = i;
    for (size_t i = total; i > 1; i--) {
        size_t j = sim_rng_below(&s->rng, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < total && !s->done; i++) {
        memset(&m, 0, sizeof(m));
        if (order[i] < nd->st.nvotes) {
            m.vote = nd->st.votes[order[i]];
            m.type = (enum pbft_msg_type)m.vote.type;
        } else {
            m.type = PBFT_MSG_PREPARED;
            m.prepared = &nd->st.prepared[order[i] - nd->st.nvotes];
        }
        restore_or_fail(s, nd, &m);
    }
    free(order);
    if (s->done)
        return;
    nd->up = true;
    nd->crash_after = -1;
    nd->transfer_pending = false;
    BEX_ASSERT(nd->delivered == nd->executed);
    if ((rc = pbft_start(nd->p, s->now, nd->executed, nd->root, s->out)) != 0) {
        sim__violation(s, "replica %u: pbft_start failed: %s", nd->id, bex_errname(rc));
        return;
    }
    pbft_set_pending(nd->p, true);
    run_actions(s, nd);
}

static void make_digest(struct sim *s, struct node *nd, uint64_t seq, uint8_t out[PBFT_DIGEST_BYTES])
{
    uint64_t words[5] = {s->opt.seed, nd->id, seq, pbft_view(nd->p), ++s->digest_counter};
    sim_hash((const uint8_t *)words, sizeof(words), out);
}

static void node_propose(struct sim *s, struct node *nd)
{
    uint8_t digest[PBFT_DIGEST_BYTES];
    uint64_t seq;
    int rc;

    if (s->now < nd->next_propose_ms)
        return;
    if (pbft_next_seq(nd->p, &seq) != 0)
        return;
    make_digest(s, nd, seq, digest);
    if ((rc = pbft_propose(nd->p, digest, s->out)) != 0) {
        sim__violation(s, "replica %u: pbft_propose failed: %s", nd->id, bex_errname(rc));
        return;
    }
    sim__trace(s, "r%u proposes seq %llu view %llu", nd->id, (unsigned long long)seq,
               (unsigned long long)pbft_view(nd->p));
    nd->next_propose_ms = s->now + s->propose_every_ms;
    run_actions(s, nd);
}

static void on_tick(struct sim *s, struct node *nd)
{
    int rc;

    schedule(s, s->now + s->tick_ms, EV_TICK, nd->id);
    if (!nd->up)
        return;
    pbft_set_pending(nd->p, true);
    if ((rc = pbft_tick(nd->p, s->now, s->out)) != 0) {
        sim__violation(s, "replica %u: pbft_tick failed: %s", nd->id, bex_errname(rc));
        return;
    }
    run_actions(s, nd);
    if (s->done || !nd->up)
        return;
    node_propose(s, nd);
    if (!s->done && nd->byz)
        sim__byz_tick(s, nd);
}

static void on_deliver(struct sim *s, struct node *nd, struct msg *m)
{
    struct pbft_msg pm;
    int rc;

    if (!nd->up || cut(s, m->from, nd->id))
        return;
    memset(&pm, 0, sizeof(pm));
    pm.type = m->type;
    if (m->type == PBFT_MSG_VIEW_CHANGE)
        pm.view_change = m->blob->data;
    else if (m->type == PBFT_MSG_NEW_VIEW)
        pm.new_view = m->blob->data;
    else
        pm.vote = m->vote;
    if (nd->byz)
        sim__byz_seen(nd, m);
    rc = pbft_step(nd->p, &pm, s->out);
    if (s->opt.verbose) {
        uint32_t signer = m->type == PBFT_MSG_VIEW_CHANGE ? pm.view_change->replica
                          : m->type == PBFT_MSG_NEW_VIEW  ? pm.new_view->replica
                                                          : m->vote.replica;
        uint64_t view = m->type == PBFT_MSG_VIEW_CHANGE ? pm.view_change->new_view
                        : m->type == PBFT_MSG_NEW_VIEW  ? pm.new_view->view
                                                        : m->vote.view;
        sim__trace(s, "r%u <- r%u %s v%llu s%llu by r%u: %s", nd->id, m->from, msg_name(m->type),
                   (unsigned long long)view, (unsigned long long)m->vote.seq, signer,
                   rc == 0 ? "ok" : bex_errname(rc));
    }
    run_actions(s, nd);
}

static bool zero_digest(const uint8_t d[PBFT_DIGEST_BYTES])
{
    static const uint8_t zero[PBFT_DIGEST_BYTES];
    return memcmp(d, zero, PBFT_DIGEST_BYTES) == 0;
}

/* State transfer: blocks and certificates from a peer, each verified. */
static void on_transfer(struct sim *s, struct node *nd)
{
    struct node *src = NULL;
    uint64_t reach;
    int rc;

    if (!nd->up || !nd->transfer_pending)
        return;
    nd->transfer_pending = false;
    sim__byz_transfer(s, nd);
    /* A node finishes executing what it has before it transfers. */
    execute_pending(s, nd);
    if (s->done || !nd->up)
        return;
    for (uint32_t i = 0; i < s->n; i++) {
        struct node *c = &s->nodes[i];
        if (c == nd || c->byz || !c->up || cut(s, c->id, nd->id))
            continue;
        if (src == NULL || c->executed > src->executed)
            src = c;
    }
    if (src == NULL || src->executed <= nd->executed)
        return;
    reach = nd->transfer_target < src->executed ? nd->transfer_target : src->executed;
    if (reach <= nd->executed)
        return;
    for (uint64_t seq = nd->executed + 1; seq <= reach; seq++) {
        const struct block *b = &src->blocks[seq];
        if (!accept_block(s, nd, seq, b->digest, &b->cert, "transfers"))
            return;
        if (!execute_next(s, nd))
            return;
    }
    if (reach == nd->transfer_target && !zero_digest(nd->transfer_root) &&
        memcmp(nd->transfer_root, nd->root, PBFT_DIGEST_BYTES) != 0) {
        sim__violation(s, "replica %u: state root after transfer to %llu differs from the "
                          "checkpoint proof",
                       nd->id, (unsigned long long)reach);
        return;
    }
    if ((rc = pbft_transferred(nd->p, reach, nd->root, s->out)) != 0) {
        sim__violation(s, "replica %u: pbft_transferred(%llu) failed: %s", nd->id,
                       (unsigned long long)reach, bex_errname(rc));
        return;
    }
    run_actions(s, nd);
}

/* ---------------------------------------------------------------- checks */

static void check_all(struct sim *s)
{
    uint64_t lowest = UINT64_MAX;

    for (uint32_t i = 0; i < s->n && !s->done; i++) {
        struct node *nd = &s->nodes[i];
        if (nd->executed > 0) {
            const struct gblock *g = global_at(s, nd->executed);
            if (!g->root_set || memcmp(g->root, nd->root, PBFT_DIGEST_BYTES) != 0)
                sim__violation(s, "replica %u: executed prefix diverges at %llu", nd->id,
                               (unsigned long long)nd->executed);
        }
        if (nd->up && pbft_committed_seq(nd->p) != nd->delivered)
            sim__violation(s, "replica %u: engine committed %llu, node %llu", nd->id,
                           (unsigned long long)pbft_committed_seq(nd->p),
                           (unsigned long long)nd->delivered);
        if (nd->up && pbft_executed_seq(nd->p) != nd->executed)
            sim__violation(s, "replica %u: engine executed %llu, node %llu", nd->id,
                           (unsigned long long)pbft_executed_seq(nd->p),
                           (unsigned long long)nd->executed);
        if (nd->up && !nd->byz && pbft_view(nd->p) > nd->highest_view && pbft_view_active(nd->p))
            nd->highest_view = pbft_view(nd->p);
        if (!nd->byz && nd->executed < lowest)
            lowest = nd->executed;
    }
    if (s->done || !s->healed)
        return;
    if (lowest >= s->live_target) {
        s->done = true;
        return;
    }
    if (s->now > s->live_deadline) {
        for (uint32_t i = 0; i < s->n; i++) {
            struct node *nd = &s->nodes[i];
            if (!nd->byz && nd->executed < s->live_target) {
                sim__violation(s, "LIVENESS: replica %u executed %llu < %llu, %llu ms after the "
                                  "faults healed (view %llu %s)",
                               nd->id, (unsigned long long)nd->executed,
                               (unsigned long long)s->live_target,
                               (unsigned long long)(s->now - s->heal_at),
                               (unsigned long long)pbft_view(nd->p),
                               pbft_view_active(nd->p) ? "active" : "changing");
                break;
            }
        }
    }
}

/*
 * A crash strikes now, or in the middle of the node's next call (after some
 * of its actions were performed). Sometimes it is a site-wide outage that
 * takes down several honest replicas within a few milliseconds.
 */
static void crash_one(struct sim *s, struct node *nd)
{
    if (!nd->up || nd->byz)
        return;
    if (sim_rng_chance(&s->rng, 500))
        nd->crash_after = (int)sim_rng_below(&s->rng, 4);
    else
        node_crash(s, nd);
}

static void on_crash(struct sim *s, struct node *nd)
{
    if (s->healed)
        return;
    crash_one(s, nd);
    if (!sim_rng_chance(&s->rng, 300))
        return;
    for (uint32_t i = 0; i < s->n && !s->done; i++) {
        if (&s->nodes[i] != nd && sim_rng_chance(&s->rng, 600))
            crash_one(s, &s->nodes[i]);
    }
}

static void on_heal(struct sim *s)
{
    uint64_t highest = 0;

    s->healed = true;
    s->drop_pm = 0;
    s->dup_pm = 0;
    s->late_pm = 0;
    s->delay_min = 1;
    s->delay_max = 10;
    s->partitioned = false;
    for (uint32_t i = 0; i < s->n && !s->done; i++) {
        struct node *nd = &s->nodes[i];
        nd->crash_after = -1;
        if (!nd->up)
            node_start(s, nd);
        if (!nd->byz && nd->executed > highest)
            highest = nd->executed;
    }
    s->live_target = highest + 2 * s->k + 2;
    s->live_deadline = s->now + LIVENESS_BOUND_MS;
    sim__trace(s, "faults heal; every honest replica must reach %llu",
               (unsigned long long)s->live_target);
}

/* ---------------------------------------------------------------- setup */

static uint32_t pick_faults(struct sim *s, uint32_t enabled)
{
    uint32_t mask = 0;

    for (uint32_t bit = 1; bit & SIM_F_ALL; bit <<= 1) {
        if ((enabled & bit) && sim_rng_chance(&s->rng, 500))
            mask |= bit;
    }
    return mask;
}

/*
 * Engines are large (pbft_size()) and every seed needs n of them: the
 * buffers are allocated once and reused, pbft_init() clears them.
 */
static struct pbft *engines[PBFT_REPLICAS_MAX];

static struct pbft *engine_memory(uint32_t i)
{
    BEX_ASSERT(i < PBFT_REPLICAS_MAX);
    if (engines[i] == NULL)
        engines[i] = xcalloc(pbft_size());
    return engines[i];
}

void sim_release(void)
{
    for (size_t i = 0; i < PBFT_REPLICAS_MAX; i++) {
        free(engines[i]);
        engines[i] = NULL;
    }
}

static void setup(struct sim *s)
{
    static const uint32_t drops[] = {5, 20, 50, 120, 250};
    static const uint32_t dups[] = {10, 50, 100};
    uint32_t faults;
    uint64_t words[3] = {s->opt.seed, s->opt.n, s->opt.faults};
    uint8_t h[PBFT_DIGEST_BYTES];
    uint64_t seed;

    sim_hash((const uint8_t *)words, sizeof(words), h);
    memcpy(&seed, h, sizeof(seed));
    sim_rng_seed(&s->rng, seed);
    s->n = s->opt.n;
    s->f = pbft_faults(s->n);
    s->q = pbft_quorum(s->n);
    s->keys.n = s->n;
    for (uint32_t i = 0; i < s->n; i++)
        s->keys.secret[i] = sim_rng_next(&s->rng);
    s->k = 1u << sim_rng_range(&s->rng, 1, 3);
    s->window = s->k << sim_rng_range(&s->rng, 0, 2);
    /* Now and then the production shape: few checkpoints, a wide window. */
    if (sim_rng_chance(&s->rng, 100)) {
        s->k = PBFT_CHECKPOINT_INTERVAL_DEFAULT;
        s->window = PBFT_WINDOW_DEFAULT;
    }
    s->timeout_ms = sim_rng_range(&s->rng, 150, 400);
    s->retransmit_ms = sim_rng_range(&s->rng, 40, 100);
    s->tick_ms = 10;
    s->propose_every_ms = sim_rng_range(&s->rng, 10, 40);
    s->exec_delay_max = sim_rng_chance(&s->rng, 500) ? 0 : sim_rng_range(&s->rng, 1, 30);
    s->delay_min = 1;
    s->delay_max = sim_rng_range(&s->rng, 2, 15);
    s->heal_at = sim_rng_range(&s->rng, 1500, 3000);

    faults = pick_faults(s, s->opt.faults);
    if (faults & SIM_F_DROP)
        s->drop_pm = drops[sim_rng_below(&s->rng, BEX_ARRAY_LEN(drops))];
    if (faults & SIM_F_DUP)
        s->dup_pm = dups[sim_rng_below(&s->rng, BEX_ARRAY_LEN(dups))];
    if (faults & SIM_F_DELAY)
        s->delay_max = sim_rng_range(&s->rng, 20, 120);
    /*
     * A view-change storm: timeouts near the network delay make views
     * change while requests are in flight, so certificates of several views
     * for one seq meet in the NEW-VIEWs.
     */
    if ((faults & SIM_F_DELAY) && sim_rng_chance(&s->rng, 600)) {
        s->timeout_ms = sim_rng_range(&s->rng, 15, 50);
        s->retransmit_ms = sim_rng_range(&s->rng, 15, 30);
    }
    if (faults & SIM_F_DELAY)
        s->late_pm = (uint32_t)sim_rng_range(&s->rng, 0, 50);
    if (faults & SIM_F_BYZANTINE) {
        uint32_t b = (uint32_t)sim_rng_range(&s->rng, 1, s->f);
        for (uint32_t i = 0; i < b; i++) {
            uint32_t id;
            do {
                id = (uint32_t)sim_rng_below(&s->rng, s->n);
            } while (s->nodes[id].byz);
            s->nodes[id].byz = true;
            do {
                s->nodes[id].byz_mask = (faults & SIM_F_BYZANTINE) & (uint32_t)sim_rng_next(&s->rng);
            } while (s->nodes[id].byz_mask == 0);
        }
    }
    if (faults & SIM_F_PARTITION) {
        uint64_t count = sim_rng_range(&s->rng, 1, 3);
        for (uint64_t i = 0; i < count; i++)
            schedule(s, sim_rng_below(&s->rng, s->heal_at), EV_PARTITION, 0);
    }
    if (faults & SIM_F_CRASH) {
        uint64_t count = sim_rng_range(&s->rng, 1, 3);
        for (uint64_t i = 0; i < count; i++) {
            uint32_t id = (uint32_t)sim_rng_below(&s->rng, s->n);
            if (!s->nodes[id].byz)
                schedule(s, sim_rng_below(&s->rng, s->heal_at), EV_CRASH, id);
        }
    }
    schedule(s, s->heal_at, EV_HEAL, 0);
    s->res->faults = faults;
    sim__trace(s, "n=%u f=%u q=%u K=%u L=%u timeout=%llu retransmit=%llu drop=%u dup=%u "
                  "delay<=%llu heal=%llu faults=%#x",
               s->n, s->f, s->q, s->k, s->window, (unsigned long long)s->timeout_ms,
               (unsigned long long)s->retransmit_ms, s->drop_pm, s->dup_pm,
               (unsigned long long)s->delay_max, (unsigned long long)s->heal_at, faults);
    for (uint32_t i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        nd->id = i;
        nd->crash_after = -1;
        nd->p = engine_memory(i);
        nd->signer.keys = &s->keys;
        nd->signer.self = i;
        pbft_config_default(&nd->cfg, s->n, i);
        nd->cfg.checkpoint_interval = s->k;
        nd->cfg.window = s->window;
        nd->cfg.view_timeout_ms = s->timeout_ms;
        nd->cfg.retransmit_ms = s->retransmit_ms;
        nd->cfg.checks = true;
        nd->cfg.crypto = sim_crypto(&nd->signer);
        if (nd->byz)
            sim__trace(s, "r%u is Byzantine: %#x", i, nd->byz_mask);
        schedule(s, sim_rng_below(&s->rng, s->tick_ms), EV_TICK, i);
    }
    for (uint32_t i = 0; i < s->n && !s->done; i++)
        node_start(s, &s->nodes[i]);
}

static void teardown(struct sim *s)
{
    while (s->heap_len > 0) {
        struct event ev = heap_pop(s);
        sim__blob_put(ev.msg.blob);
    }
    free(s->heap);
    for (uint32_t i = 0; i < s->n; i++) {
        struct node *nd = &s->nodes[i];
        pbft_close(nd->p);
        free(nd->blocks);
        sim__blob_put(nd->seen_blob);
        store_free(&nd->st);
    }
    free(s->global);
    free(s->out);
}

int sim_run(const struct sim_options *opt, struct sim_result *res)
{
    struct sim *s = xcalloc(sizeof(*s));
    int rc;

    memset(res, 0, sizeof(*res));
    s->opt = *opt;
    s->res = res;
    s->out = xcalloc(sizeof(*s->out));
    setup(s);
    while (!s->done && s->heap_len > 0) {
        struct event ev = heap_pop(s);
        struct node *nd = &s->nodes[ev.node];
        s->now = ev.at;
        if (++s->events > EVENTS_MAX)
            sim__violation(s, "runaway: more than %llu events", EVENTS_MAX);
        switch (ev.kind) {
        case EV_DELIVER:
            on_deliver(s, nd, &ev.msg);
            break;
        case EV_TICK:
            on_tick(s, nd);
            break;
        case EV_TRANSFER:
            on_transfer(s, nd);
            break;
        case EV_CRASH:
            on_crash(s, nd);
            break;
        case EV_RESTART:
            if (!nd->up && !s->healed)
                node_start(s, nd);
            break;
        case EV_PARTITION:
            if (!s->partitioned && !s->healed) {
                do {
                    s->side_mask = (uint32_t)sim_rng_below(&s->rng, 1u << s->n);
                } while (s->side_mask == 0 || s->side_mask == (1u << s->n) - 1);
                s->partitioned = true;
                sim__trace(s, "partition %#x", s->side_mask);
                schedule(s, s->now + sim_rng_range(&s->rng, 200, 1500), EV_UNPARTITION, 0);
            }
            break;
        case EV_UNPARTITION:
            s->partitioned = false;
            sim__trace(s, "partition heals");
            break;
        case EV_HEAL:
            on_heal(s);
            break;
        case EV_EXECUTE:
            nd->exec_scheduled = false;
            execute_pending(s, nd);
            break;
        }
        sim__blob_put(ev.msg.blob);
        if (!s->done)
            check_all(s);
    }
    res->sim_ms = s->now;
    res->blocks = UINT64_MAX;
    for (uint32_t i = 0; i < s->n; i++) {
        const struct node *nd = &s->nodes[i];
        if (nd->byz)
            continue;
        if (nd->executed < res->blocks)
            res->blocks = nd->executed;
        if (nd->highest_view > res->view_changes)
            res->view_changes = nd->highest_view;
    }
    if (res->blocks == UINT64_MAX)
        res->blocks = 0;
    rc = res->violation ? -1 : 0;
    teardown(s);
    free(s);
    return rc;
}

void sim_replay_command(const struct sim_options *opt, char *buf, size_t len)
{
    char faults[128];

    sim_faults_format(opt->faults, faults, sizeof(faults));
    snprintf(buf, len, "build/tests/sim/sim --n %u --seed %llu --faults %s", opt->n,
             (unsigned long long)opt->seed, faults);
}
