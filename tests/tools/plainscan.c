/*
 * plainscan: looks for plaintext values in the LMDB stores of stopped bex
 * nodes. It reads every key and every value of every database of each
 * environment (the unnamed main database and every named one listed in it)
 * and searches them for each value of two lists, both as its raw bytes and
 * as its lowercase hex (the form bex gives bytes in state keys and JSON):
 *
 *   --absent FILE   values that must appear nowhere (the fields of
 *                   CONDITIONAL and NONE resources, verify claims);
 *   --present FILE  values that must be found (values stored in clear),
 *                   which shows that the scan sees what it should.
 *
 * usage: plainscan [--absent FILE] [--present FILE] ENV_DIR...
 * Each FILE holds one value per line (UTF-8; empty lines are skipped);
 * values shorter than NEEDLE_BYTES_MIN bytes are refused, as they would
 * match sealed bytes by chance. Exit status: 0 when no absent value was
 * found and every present value was, 1 otherwise, 2 on a usage or storage
 * error. Prints every hit (up to HITS_SHOWN_MAX) and a summary line.
 *
 * The search is a single pass per key or value: a hash table maps the first
 * NEEDLE_BYTES_MIN bytes of every needle to the needles that start with
 * them, so each position of the data costs one lookup.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bex.h"

#define NEEDLE_BYTES_MIN 6
#define NEEDLE_BYTES_MAX 1024
#define NEEDLES_MAX 100000 /* values of both lists, before their hex forms */
#define DBS_MAX 64         /* named databases of one environment */
#define HITS_SHOWN_MAX 40

_Static_assert(NEEDLE_BYTES_MIN <= 8, "a prefix fits a uint64_t");

enum needle_kind { NEEDLE_ABSENT, NEEDLE_PRESENT };

struct needle {
    uint8_t *bytes;
    size_t len;
    size_t value;  /* index of the value it comes from */
    bool hex;      /* the lowercase hex form of that value */
    int32_t next;  /* next needle with the same prefix, or -1 */
};

struct value {
    char *text;
    enum needle_kind kind;
    uint64_t hits;
};

struct slot {
    uint64_t prefix;
    int32_t first; /* -1: empty */
};

struct scan {
    struct value *values;
    size_t values_n;
    struct needle *needles;
    size_t needles_n;
    struct slot *table;
    size_t table_size; /* a power of two, at least twice the needles */
    uint64_t entries, bytes, dbs, hits_shown;
    const char *env_dir;
    char db_name[512]; /* the database being scanned */
};

static uint64_t prefix_of(const uint8_t *p)
{
    uint64_t v = 0;
    for (size_t i = 0; i < NEEDLE_BYTES_MIN; i++)
        v = v << 8 | p[i];
    return v;
}

static size_t slot_of(const struct scan *s, uint64_t prefix)
{
    /* A multiplicative hash; the table size is a power of two. */
    return (size_t)((prefix * 0x9e3779b97f4a7c15ull) >> 20) & (s->table_size - 1);
}

BEX_MUST_USE static int value_add(struct scan *s, const char *text, size_t len, enum needle_kind kind)
{
    if (len < NEEDLE_BYTES_MIN || len > NEEDLE_BYTES_MAX) {
        fprintf(stderr, "plainscan: value \"%.*s\" has %zu bytes, not %d to %d\n", (int)len, text, len,
                NEEDLE_BYTES_MIN, NEEDLE_BYTES_MAX);
        return -BEX_EINVAL;
    }
    if (s->values_n == NEEDLES_MAX) {
        fprintf(stderr, "plainscan: more than %d values\n", NEEDLES_MAX);
        return -BEX_ELIMIT;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -BEX_ENOMEM;
    memcpy(copy, text, len);
    copy[len] = '\0';
    s->values[s->values_n++] = (struct value){.text = copy, .kind = kind};
    return 0;
}

/* Reads one value per line of path into s. */
BEX_MUST_USE static int values_read(struct scan *s, const char *path, enum needle_kind kind)
{
    FILE *f = fopen(path, "r");
    char line[NEEDLE_BYTES_MAX + 2];
    int rc = 0;

    if (f == NULL) {
        fprintf(stderr, "plainscan: %s: %s\n", path, strerror(errno));
        return -BEX_EIO;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
            fprintf(stderr, "plainscan: %s: a line longer than %d bytes\n", path, NEEDLE_BYTES_MAX);
            rc = -BEX_ELIMIT;
            goto fail;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len > 0 && (rc = value_add(s, line, len, kind)) != 0)
            goto fail;
    }
    if (ferror(f)) {
        fprintf(stderr, "plainscan: %s: read error\n", path);
        rc = -BEX_EIO;
    }
fail:
    fclose(f);
    return rc;
}

/* Makes the raw and hex needle of every value and indexes them by prefix. */
BEX_MUST_USE static int needles_build(struct scan *s)
{
    static const char digits[] = "0123456789abcdef";

    s->needles = calloc(2 * s->values_n + 1, sizeof(*s->needles));
    s->table_size = 1024;
    while (s->table_size < 4 * s->values_n)
        s->table_size *= 2;
    s->table = malloc(s->table_size * sizeof(*s->table));
    if (s->needles == NULL || s->table == NULL)
        return -BEX_ENOMEM;
    for (size_t i = 0; i < s->table_size; i++)
        s->table[i] = (struct slot){.first = -1};
    for (size_t v = 0; v < s->values_n; v++) {
        const char *text = s->values[v].text;
        size_t len = strlen(text);
        uint8_t *hex = malloc(2 * len);
        if (hex == NULL)
            return -BEX_ENOMEM;
        for (size_t i = 0; i < len; i++) {
            hex[2 * i] = (uint8_t)digits[(uint8_t)text[i] >> 4];
            hex[2 * i + 1] = (uint8_t)digits[(uint8_t)text[i] & 15];
        }
        s->needles[s->needles_n++] = (struct needle){.bytes = (uint8_t *)text, .len = len, .value = v};
        s->needles[s->needles_n++] = (struct needle){.bytes = hex, .len = 2 * len, .value = v, .hex = true};
    }
    BEX_ASSERT(s->needles_n == 2 * s->values_n);
    for (size_t n = 0; n < s->needles_n; n++) {
        uint64_t prefix = prefix_of(s->needles[n].bytes);
        size_t i = slot_of(s, prefix);
        while (s->table[i].first >= 0 && s->table[i].prefix != prefix)
            i = (i + 1) & (s->table_size - 1);
        s->needles[n].next = s->table[i].first;
        s->table[i] = (struct slot){.prefix = prefix, .first = (int32_t)n};
    }
    return 0;
}

static void scan_free(struct scan *s)
{
    for (size_t n = 0; n < s->needles_n; n++)
        if (s->needles[n].hex)
            free(s->needles[n].bytes);
    for (size_t v = 0; v < s->values_n; v++)
        free(s->values[v].text);
    free(s->needles);
    free(s->values);
    free(s->table);
}

/* Prints where a needle was found: the environment, database and key. */
static void hit_show(struct scan *s, const struct needle *n, const MDB_val *key, bool in_key)
{
    const struct value *v = &s->values[n->value];
    const uint8_t *kb = key->mv_data;
    char shown[100];
    size_t k = 0, i = 0;

    if (v->kind == NEEDLE_PRESENT || s->hits_shown >= HITS_SHOWN_MAX)
        return;
    s->hits_shown++;
    /* The key in printable ASCII, other bytes escaped, cut to fit. */
    for (; i < key->mv_size && k + 5 <= sizeof shown - 4; i++)
        k += (size_t)snprintf(shown + k, sizeof shown - k, kb[i] >= 0x20 && kb[i] < 0x7f ? "%c" : "\\x%02x", kb[i]);
    if (i < key->mv_size)
        k += (size_t)snprintf(shown + k, sizeof shown - k, "...");
    BEX_ASSERT(k < sizeof shown);
    printf("FOUND \"%s\"%s in %s, database %s, %s of key \"%s\"\n", v->text, n->hex ? " (as hex)" : "",
           s->env_dir, s->db_name, in_key ? "the key itself" : "the value", shown);
}

static void search(struct scan *s, const MDB_val *data, const MDB_val *key, bool in_key)
{
    const uint8_t *p = data->mv_data;
    size_t len = data->mv_size;

    s->bytes += len;
    for (size_t at = 0; at + NEEDLE_BYTES_MIN <= len; at++) {
        uint64_t prefix = prefix_of(p + at);
        size_t i = slot_of(s, prefix);
        while (s->table[i].first >= 0 && s->table[i].prefix != prefix)
            i = (i + 1) & (s->table_size - 1);
        for (int32_t n = s->table[i].first; n >= 0; n = s->needles[n].next) {
            const struct needle *nd = &s->needles[n];
            if (nd->len <= len - at && memcmp(p + at, nd->bytes, nd->len) == 0) {
                s->values[nd->value].hits++;
                hit_show(s, nd, key, in_key);
            }
        }
    }
}

/* Searches every key and value of one database. */
BEX_MUST_USE static int db_scan(struct scan *s, MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *c;
    MDB_val k, d;
    int rc = mdb_cursor_open(txn, dbi, &c);

    if (rc != 0)
        return rc;
    s->dbs++;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        s->entries++;
        search(s, &k, &k, true);
        search(s, &d, &k, false);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Scans one environment: the main database (whose keys name the others)
 * and then every named database.
 */
BEX_MUST_USE static int env_scan(struct scan *s, const char *dir)
{
    char names[DBS_MAX][sizeof s->db_name];
    size_t names_n = 0;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi main_dbi;
    MDB_cursor *c = NULL;
    MDB_val k, d;
    int rc;

    s->env_dir = dir;
    if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, DBS_MAX)) != 0 ||
        (rc = mdb_env_open(env, dir, MDB_RDONLY, 0)) != 0 || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) != 0)
        goto fail;
    snprintf(s->db_name, sizeof s->db_name, "(main)");
    if ((rc = db_scan(s, txn, main_dbi)) != 0 || (rc = mdb_cursor_open(txn, main_dbi, &c)) != 0)
        goto fail;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (names_n == DBS_MAX || k.mv_size >= sizeof names[0]) {
            fprintf(stderr, "plainscan: %s: more than %d databases or a name too long\n", dir, DBS_MAX);
            rc = EINVAL;
            goto fail;
        }
        memcpy(names[names_n], k.mv_data, k.mv_size);
        names[names_n++][k.mv_size] = '\0';
    }
    mdb_cursor_close(c);
    c = NULL;
    if (rc != MDB_NOTFOUND)
        goto fail;
    for (size_t i = 0; i < names_n; i++) {
        MDB_dbi dbi;
        /* A key of the main database that names no database is plain data, scanned above. */
        rc = mdb_dbi_open(txn, names[i], 0, &dbi);
        if (rc == MDB_INCOMPATIBLE || rc == MDB_NOTFOUND)
            continue;
        _Static_assert(sizeof s->db_name == sizeof names[i], "a name fits");
        memcpy(s->db_name, names[i], sizeof s->db_name);
        if (rc != 0 || (rc = db_scan(s, txn, dbi)) != 0)
            goto fail;
    }
    rc = 0;
fail:
    if (c != NULL)
        mdb_cursor_close(c);
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (env != NULL)
        mdb_env_close(env);
    if (rc != 0)
        fprintf(stderr, "plainscan: %s: %s\n", dir, mdb_strerror(rc));
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: plainscan [--absent FILE] [--present FILE] ENV_DIR...\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct scan s = {0};
    int dirs = 0, rc = 2;

    s.values = calloc(NEEDLES_MAX, sizeof(*s.values));
    if (s.values == NULL)
        return 2;
    for (int i = 1; i < argc; i++) {
        bool absent = strcmp(argv[i], "--absent") == 0;
        if (!absent && strcmp(argv[i], "--present") != 0)
            continue;
        if (i + 1 == argc) {
            scan_free(&s);
            return usage();
        }
        if (values_read(&s, argv[i + 1], absent ? NEEDLE_ABSENT : NEEDLE_PRESENT) != 0)
            goto done;
        argv[i] = argv[i + 1] = NULL;
        i++;
    }
    if (s.values_n == 0) {
        fprintf(stderr, "plainscan: no values to look for\n");
        goto done;
    }
    if (needles_build(&s) != 0) {
        fprintf(stderr, "plainscan: out of memory\n");
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i] == NULL)
            continue;
        if (argv[i][0] == '-') {
            rc = usage();
            goto done;
        }
        if (env_scan(&s, argv[i]) != 0)
            goto done;
        dirs++;
    }
    if (dirs == 0) {
        rc = usage();
        goto done;
    }
    uint64_t absent = 0, absent_found = 0, present = 0, present_found = 0;
    for (size_t v = 0; v < s.values_n; v++) {
        if (s.values[v].kind == NEEDLE_PRESENT) {
            present++;
            if (s.values[v].hits > 0)
                present_found++;
            else
                printf("MISSING \"%s\": a value stored in clear was not found\n", s.values[v].text);
        } else {
            absent++;
            absent_found += s.values[v].hits > 0;
        }
    }
    printf("plainscan: %d environments, %llu databases, %llu entries, %.1f MB read; "
           "%llu of %llu sealed values found, %llu of %llu clear values found\n",
           dirs, (unsigned long long)s.dbs, (unsigned long long)s.entries, (double)s.bytes / 1e6,
           (unsigned long long)absent_found, (unsigned long long)absent, (unsigned long long)present_found,
           (unsigned long long)present);
    rc = absent_found == 0 && present_found == present ? 0 : 1;
done:
    scan_free(&s);
    return rc;
}
