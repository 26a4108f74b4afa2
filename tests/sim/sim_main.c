/*
 * sim_main.c: the command line of the PBFT cluster simulator.
 *
 *   sim --seeds N [--n N] [--faults LIST]   N seeds for n = 4, 7, 10 (or one n)
 *   sim --n N --seed S [--faults LIST] [--verbose]   replay one run
 *
 * Every violation (and every engine assertion) prints the command that
 * replays it; the exit status is 0 only when no seed found one.
 */
#include "sim.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char replay_line[512];
static size_t replay_len;

static void on_fatal(int sig)
{
    static const char head[] = "sim: the engine or simulator crashed; replay with:\n  ";
    ssize_t rc = write(STDERR_FILENO, head, sizeof(head) - 1);
    rc = write(STDERR_FILENO, replay_line, replay_len);
    (void)rc;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void arm(const struct sim_options *opt)
{
    sim_replay_command(opt, replay_line, sizeof(replay_line) - 1);
    replay_len = strlen(replay_line);
    replay_line[replay_len++] = '\n';
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sim --seeds N [--n N] [--faults LIST]\n"
               "       sim --n N --seed S [--faults LIST] [--verbose]\n"
               "faults: all, none, or a comma list of drop,dup,delay,partition,crash,\n"
               "        equivocate,silent,partial,conflict,replay,forge,flood,badnv\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == 0 || *end != 0)
        return false;
    *out = v;
    return true;
}

/* Runs seeds 1..seeds for n; prints one line; returns the violations. */
static uint64_t run_config(uint32_t n, uint64_t seeds, uint32_t faults)
{
    uint64_t blocks = 0, views = 0, messages = 0, violations = 0;
    double t0 = seconds();

    for (uint64_t seed = 1; seed <= seeds; seed++) {
        struct sim_options opt = {.n = n, .seed = seed, .faults = faults};
        struct sim_result res;
        arm(&opt);
        if (sim_run(&opt, &res) != 0) {
            char cmd[512];
            sim_replay_command(&opt, cmd, sizeof(cmd));
            printf("VIOLATION n=%u seed=%llu: %s\n  replay: %s\n", n, (unsigned long long)seed,
                   res.why, cmd);
            violations++;
        }
        blocks += res.blocks;
        views += res.view_changes;
        messages += res.messages;
    }
    printf("n=%-2u seeds=%llu blocks=%llu view_changes=%llu msgs/block=%.1f violations=%llu "
           "time=%.1fs\n",
           n, (unsigned long long)seeds, (unsigned long long)blocks, (unsigned long long)views,
           blocks ? (double)messages / (double)blocks : 0.0, (unsigned long long)violations,
           seconds() - t0);
    fflush(stdout);
    return violations;
}

int main(int argc, char **argv)
{
    static const uint32_t sizes[] = {4, 7, 10};
    struct sim_options opt = {.faults = SIM_F_ALL};
    uint64_t seeds = 0;
    uint64_t violations = 0;
    bool have_seed = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x;
        if (strcmp(a, "--verbose") == 0) {
            opt.verbose = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (v != NULL && strcmp(a, "--seeds") == 0 && parse_u64(v, &x)) {
            seeds = x;
            i++;
        } else if (v != NULL && strcmp(a, "--seed") == 0 && parse_u64(v, &x)) {
            opt.seed = x;
            have_seed = true;
            i++;
        } else if (v != NULL && strcmp(a, "--n") == 0 && parse_u64(v, &x) &&
                   x >= PBFT_REPLICAS_MIN && x <= PBFT_REPLICAS_MAX) {
            opt.n = (uint32_t)x;
            i++;
        } else if (v != NULL && strcmp(a, "--faults") == 0 && sim_faults_parse(v, &opt.faults) == 0) {
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.verbose)
        setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGABRT, on_fatal);
    signal(SIGSEGV, on_fatal);
    if (have_seed) {
        struct sim_result res;
        char cmd[512];
        char used[128];
        if (opt.n == 0)
            opt.n = 4;
        arm(&opt);
        sim_replay_command(&opt, cmd, sizeof(cmd));
        if (sim_run(&opt, &res) != 0) {
            printf("VIOLATION: %s\n  replay: %s\n", res.why, cmd);
            sim_release();
            return 1;
        }
        sim_release();
        sim_faults_format(res.faults, used, sizeof(used));
        printf("ok n=%u seed=%llu faults used=%s blocks=%llu view_changes=%llu messages=%llu "
               "simulated=%llums\n",
               opt.n, (unsigned long long)opt.seed, used, (unsigned long long)res.blocks,
               (unsigned long long)res.view_changes, (unsigned long long)res.messages,
               (unsigned long long)res.sim_ms);
        return 0;
    }
    if (seeds == 0) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < BEX_ARRAY_LEN(sizes); i++) {
        if (opt.n == 0 || opt.n == sizes[i])
            violations += run_config(sizes[i], seeds, opt.faults);
    }
    if (opt.n != 0 && opt.n != 4 && opt.n != 7 && opt.n != 10)
        violations += run_config(opt.n, seeds, opt.faults);
    sim_release();
    return violations == 0 ? 0 : 1;
}
