/*
 * rawtcp: a plain TCP client for the integration tests, playing a client
 * that does not speak the protocol: it connects, sends bytes (text, hex or a
 * deterministic run of garbage), keeps its side open and reports whether and
 * when the server closed the connection.
 *
 * usage: rawtcp --connect HOST:PORT [--text TEXT] [--hex HEX] [--garbage N]
 *               [--wait-close MS] [--show]
 *
 * The payloads are sent in the order given. --text understands \r, \n and \\.
 * --wait-close (default 5000) is how long to wait for the server to close.
 * --show copies the bytes received to standard output. The last line, on
 * standard error, is one of
 *   rawtcp: closed after MS ms (HOW; received N bytes)   HOW: eof, a reset, ...
 *   rawtcp: still open after MS ms (received N bytes)
 * and the exit code is 0 when the server closed (an EOF or a reset), 1 when
 * the connection was still open at the deadline, 2 for a usage error or a
 * failed connect or send.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOADS_MAX 16
#define PAYLOAD_BYTES_MAX (1u << 20)
#define READ_BYTES 4096

enum payload_kind { PAYLOAD_TEXT, PAYLOAD_HEX, PAYLOAD_GARBAGE };

struct payload {
    enum payload_kind kind;
    const char *arg;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int usage(void)
{
    fprintf(stderr, "usage: rawtcp --connect HOST:PORT [--text TEXT] [--hex HEX] [--garbage N] "
                    "[--wait-close MS] [--show]\n");
    return 2;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes p into buf (PAYLOAD_BYTES_MAX bytes). Returns the length, or -1. */
static long payload_bytes(uint8_t *buf, const struct payload *p)
{
    size_t n = 0, len = strlen(p->arg);

    switch (p->kind) {
    case PAYLOAD_TEXT:
        for (size_t i = 0; i < len && n < PAYLOAD_BYTES_MAX; i++) {
            char c = p->arg[i];
            if (c == '\\' && i + 1 < len) {
                char e = p->arg[++i];
                c = e == 'r' ? '\r' : e == 'n' ? '\n' : e;
            }
            buf[n++] = (uint8_t)c;
        }
        return (long)n;
    case PAYLOAD_HEX:
        if (len % 2 != 0 || len / 2 > PAYLOAD_BYTES_MAX)
            return -1;
        for (size_t i = 0; i < len; i += 2) {
            int hi = hex_digit(p->arg[i]), lo = hex_digit(p->arg[i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            buf[n++] = (uint8_t)(hi << 4 | lo);
        }
        return (long)n;
    case PAYLOAD_GARBAGE: {
        char *end;
        unsigned long count = strtoul(p->arg, &end, 10);
        uint32_t x = 0x9e3779b9u;
        if (*end != '\0' || count == 0 || count > PAYLOAD_BYTES_MAX)
            return -1;
        /* xorshift32: the same garbage on every run, so a failure repeats. */
        for (n = 0; n < count; n++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[n] = (uint8_t)x;
        }
        return (long)n;
    }
    }
    return -1;
}

static int connect_to(const char *hostport)
{
    struct sockaddr_in sa;
    char host[64];
    const char *colon = strrchr(hostport, ':');
    char *end;
    long port;
    int fd;

    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    port = strtol(colon + 1, &end, 10);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (*end != '\0' || port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "rawtcp: connect %s: %s\n", hostport, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct payload payloads[PAYLOADS_MAX];
    size_t npayloads = 0, received = 0;
    const char *target = NULL;
    long wait_ms = 5000;
    int show = 0, fd = -1, rc = 2;
    uint8_t *buf = NULL;
    uint64_t start, now;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--show") == 0) {
            show = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        const char *v = argv[++i];
        if (strcmp(a, "--connect") == 0) {
            target = v;
        } else if (strcmp(a, "--wait-close") == 0) {
            char *end;
            wait_ms = strtol(v, &end, 10);
            if (*end != '\0' || wait_ms < 0 || wait_ms > 600000)
                return usage();
        } else if (npayloads < PAYLOADS_MAX &&
                   (strcmp(a, "--text") == 0 || strcmp(a, "--hex") == 0 || strcmp(a, "--garbage") == 0)) {
            payloads[npayloads].kind = a[2] == 't' ? PAYLOAD_TEXT : a[2] == 'h' ? PAYLOAD_HEX : PAYLOAD_GARBAGE;
            payloads[npayloads++].arg = v;
        } else {
            return usage();
        }
    }
    if (target == NULL)
        return usage();
    if ((buf = malloc(PAYLOAD_BYTES_MAX)) == NULL) {
        fprintf(stderr, "rawtcp: out of memory\n");
        return 2;
    }
    if ((fd = connect_to(target)) < 0) {
        fprintf(stderr, "rawtcp: cannot connect to '%s'\n", target);
        goto done;
    }
    start = mono_ms();
    for (size_t i = 0; i < npayloads; i++) {
        long n = payload_bytes(buf, &payloads[i]);
        if (n < 0) {
            fprintf(stderr, "rawtcp: bad payload '%.40s'\n", payloads[i].arg);
            goto done;
        }
        /* A server that closes at the first bad byte may reset the rest: that is a close too. */
        if (send_all(fd, buf, (size_t)n) != 0) {
            fprintf(stderr, "rawtcp: closed after %llu ms (send: %s; received %zu bytes)\n",
                    (unsigned long long)(mono_ms() - start), strerror(errno), received);
            rc = 0;
            goto done;
        }
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        now = mono_ms();
        if (now - start >= (uint64_t)wait_ms) {
            fprintf(stderr, "rawtcp: still open after %llu ms (received %zu bytes)\n",
                    (unsigned long long)(now - start), received);
            rc = 1;
            break;
        }
        int pr = poll(&pfd, 1, (int)((uint64_t)wait_ms - (now - start)));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            fprintf(stderr, "rawtcp: poll: %s\n", strerror(errno));
            break;
        }
        if (pr == 0)
            continue;
        ssize_t r = recv(fd, buf, READ_BYTES, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0) {
            received += (size_t)r;
            if (show)
                fwrite(buf, 1, (size_t)r, stdout);
            continue;
        }
        fprintf(stderr, "rawtcp: closed after %llu ms (%s; received %zu bytes)\n",
                (unsigned long long)(mono_ms() - start), r == 0 ? "eof" : strerror(errno), received);
        rc = 0;
        break;
    }
done:
    if (show)
        fflush(stdout);
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}
