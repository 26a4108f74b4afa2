#include "bex.h"

#include <stdio.h>
#include <stdlib.h>

static const struct {
    const char *name;
    const char *text;
} table[BEX_E_COUNT] = {
    [BEX_OK] = {"OK", "success"},
    [BEX_EINVAL] = {"EINVAL", "invalid argument"},
    [BEX_ENOMEM] = {"ENOMEM", "out of memory"},
    [BEX_EIO] = {"EIO", "input/output error"},
    [BEX_ENOTFOUND] = {"ENOTFOUND", "not found"},
    [BEX_EEXIST] = {"EEXIST", "already exists"},
    [BEX_ELIMIT] = {"ELIMIT", "limit exceeded"},
    [BEX_EDECODE] = {"EDECODE", "malformed encoding"},
    [BEX_ESIG] = {"ESIG", "bad signature"},
    [BEX_EPERM] = {"EPERM", "not permitted"},
    [BEX_ESTATE] = {"ESTATE", "invalid in current state"},
    [BEX_EMAPFULL] = {"EMAPFULL", "store map full"},
    [BEX_ECORRUPT] = {"ECORRUPT", "data corrupt"},
    [BEX_ENONCE] = {"ENONCE", "bad nonce"},
    [BEX_EFULL] = {"EFULL", "at capacity"},
    [BEX_EBUDGET] = {"EBUDGET", "work budget exhausted"},
    [BEX_ECRYPTO] = {"ECRYPTO", "cryptographic failure"},
    [BEX_EEXPIRED] = {"EEXPIRED", "expired"},
    [BEX_EREFUSED] = {"EREFUSED", "refused by sharing rules"},
    [BEX_ETHRESHOLD] = {"ETHRESHOLD", "below signature threshold"},
    [BEX_ECHAIN] = {"ECHAIN", "wrong chain id"},
    [BEX_EUNKNOWN] = {"EUNKNOWN", "unknown contract, method or sender"},
    [BEX_ETIMEOUT] = {"ETIMEOUT", "timed out"},
    [BEX_EPASSPHRASE] = {"EPASSPHRASE", "wrong passphrase"},
    [BEX_ENOSPC] = {"ENOSPC", "no space left on device"},
    [BEX_ECLOSED] = {"ECLOSED", "closed"},
};

static int index_of(int code)
{
    if (code < 0)
        code = -code;
    return code < BEX_E_COUNT ? code : -1;
}

const char *bex_strerror(int code)
{
    int i = index_of(code);
    return i < 0 ? "unknown error" : table[i].text;
}

const char *bex_errname(int code)
{
    int i = index_of(code);
    return i < 0 ? "EUNKNOWNCODE" : table[i].name;
}

void bex_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "bex: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
