/*
 * registry.c: the static table of native contracts, and the entry point of
 * read-only queries.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct contract_def *const registry[] = {
    &contract__agency, &contract__catalog, &contract__grant, &contract__record,
    &contract__access, &contract__verify,  &contract__audit,
};

const struct contract_def *contract__find(const char *name)
{
    for (size_t i = 0; i < BEX_ARRAY_LEN(registry); i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

const struct contract_method *contract__find_method(const struct contract_def *d, const char *name)
{
    for (size_t i = 0; i < d->method_count; i++)
        if (strcmp(d->methods[i].name, name) == 0)
            return &d->methods[i];
    return NULL;
}

const struct contract_query *contract__find_query(const struct contract_def *d, const char *name)
{
    for (size_t i = 0; i < d->query_count; i++)
        if (strcmp(d->queries[i].name, name) == 0)
            return &d->queries[i];
    return NULL;
}

int contract_describe(const ProtobufCMessageDescriptor **args, const ProtobufCMessageDescriptor **result,
                      const char *contract, const char *kind, const char *name)
{
    const struct contract_def *d = contract__find(contract);
    if (!d)
        return -BEX_EUNKNOWN;
    if (strcmp(kind, "method") == 0) {
        const struct contract_method *m = contract__find_method(d, name);
        if (!m)
            return -BEX_EUNKNOWN;
        *args = m->args;
        *result = m->result;
        return 0;
    }
    if (strcmp(kind, "query") == 0) {
        const struct contract_query *q = contract__find_query(d, name);
        if (!q)
            return -BEX_EUNKNOWN;
        *args = q->args;
        *result = q->result;
        return 0;
    }
    return -BEX_EUNKNOWN;
}

void contract_list(contract_list_fn fn, void *user)
{
    for (size_t i = 0; i < BEX_ARRAY_LEN(registry); i++) {
        const struct contract_def *d = registry[i];
        for (size_t k = 0; k < d->method_count; k++)
            fn(user, d->name, "method", d->methods[k].name);
        for (size_t k = 0; k < d->query_count; k++)
            fn(user, d->name, "query", d->queries[k].name);
    }
}

int contract__query_ctx(struct contract_ctx *c, const struct exec_store *store, const char *contract)
{
    contract__ctx_init(c, store, CONTRACT_QUERY_BUDGET);
    c->contract = contract;
    c->sender = "";
    Bex__ChainHead *head = NULL;
    int rc = contract__get_msg(c, (ProtobufCMessage **)&head, "chain/head", &bex__chain_head__descriptor);
    if (rc == -BEX_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    c->height = head->height;
    c->time_ms = head->time_ms;
    contract__free(c, head);
    return 0;
}

void contract_result_free(ProtobufCMessage *m)
{
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

int contract_query(ProtobufCMessage **result, char *err, size_t err_len, const struct exec_store *store,
                   const char *contract, const char *query, const uint8_t *args, size_t args_len)
{
    *result = NULL;
    struct contract_ctx *c = malloc(sizeof(*c));
    if (!c)
        return -BEX_ENOMEM;
    ProtobufCMessage *a = NULL;
    const struct contract_def *d = contract__find(contract);
    const struct contract_query *q = d ? contract__find_query(d, query) : NULL;
    int rc = contract__query_ctx(c, store, d ? d->name : "");
    if (rc != 0)
        goto fail;
    if (!q) {
        rc = contract__fail(c, BEX_EUNKNOWN, "unknown query %.40s.%.40s", contract, query);
        goto fail;
    }
    if (args_len > CONTRACT_KEY_BYTES_MAX * 4) {
        rc = contract__fail(c, BEX_ELIMIT, "query arguments of %zu bytes over the limit", args_len);
        goto fail;
    }
    c->alloc.failed = false;
    a = protobuf_c_message_unpack(q->args, &c->alloc.pb, args_len, args);
    if (!a) {
        rc = c->alloc.failed ? -BEX_ENOMEM : contract__fail(c, BEX_EDECODE, "arguments do not decode as %s", q->args->name);
        goto fail;
    }
    rc = q->run(c, result, a);
    if (c->fatal)
        rc = c->fatal;
    else if (c->budget_out)
        rc = contract__fail(c, BEX_EBUDGET, "query work budget exhausted");
    if (rc != 0 && *result) {
        contract_result_free(*result);
        *result = NULL;
    }
fail:
    if (rc != 0 && err && err_len > 0)
        snprintf(err, err_len, "%s", c->message[0] ? c->message : bex_strerror(rc));
    contract__free(c, a);
    contract__ctx_close(c);
    free(c);
    BEX_ASSERT(rc != 0 || *result != NULL);
    return rc;
}
