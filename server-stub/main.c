/* weibao-stub: the reference central ticket API (docs/api.md), used by the
 * integration tests, the demo and as the executable statement of the API.
 *
 * main parses options, reads the token, opens the store, starts the HTTP
 * server and then waits for SIGINT/SIGTERM, running the central clock
 * (dead-man's switch, escalation: central.c) once a second in between; all
 * requests run on libmicrohttpd's single internal thread, and the tick takes
 * the server's lock. The signals are blocked before that thread exists so
 * it inherits the mask and they are only ever taken by sigtimedwait() here. Exit codes: 0 clean stop, 1 cannot serve
 * (bind, libmicrohttpd), 2 usage or configuration (options, token, database). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "central.h"
#include "escalation.h"
#include "http.h"
#include "store.h"

#define TOKEN_MAX 4096        /* bytes in a token or token file */
#define PEM_MAX (1024 * 1024) /* bytes in a certificate, key or CA file */

/* Parsed command line: the one global this program has besides the log level. */
static struct options {
        const char *listen;
        const char *db;
        const char *token_file;
        const char *token;
        const char *tls_cert, *tls_key, *tls_client_ca;
        const char *escalation;
        int deadman_intervals;
        bool test_control;
        bool verbose;
} opts = {.deadman_intervals = 3};

#define DEADMAN_INTERVALS_MAX 1000

static void usage(FILE *f)
{
        fprintf(f, "Usage: weibao-stub --listen HOST:PORT --db FILE (--token-file FILE | --token TOKEN)\n"
                   "                   [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--test-control]\n"
                   "                   [--deadman-intervals N] [--escalation FILE] [--verbose]\n"
                   "\n"
                   "The reference central ticket API of weibao (docs/api.md).\n"
                   "\n"
                   "  --listen HOST:PORT   address to serve on: 127.0.0.1:8080, [::1]:8080; port 0 picks one\n"
                   "  --db FILE            SQLite database of cases (created if missing)\n"
                   "  --token-file FILE    file whose first line is the bearer token clients must send\n"
                   "  --token TOKEN        the bearer token itself (visible in ps; for tests)\n"
                   "  --tls-cert FILE      serve HTTPS with this PEM certificate (chain)\n"
                   "  --tls-key FILE       the PEM private key of --tls-cert\n"
                   "  --tls-client-ca FILE require client certificates signed by this PEM CA (mTLS)\n"
                   "  --deadman-intervals N  an agent silent for more than N of its check-in intervals gets a\n"
                   "                       P1 \"not reporting\" case (1..1000, default 3)\n"
                   "  --escalation FILE    escalation matrix, a JSON file (docs/api.md; default: the agreement's)\n"
                   "  --test-control       serve /api/v1/_test/inject and /api/v1/_test/clock (tests only)\n"
                   "  --verbose            log at debug level\n"
                   "  --help               show this help\n"
                   "\n"
                   "Prints \"weibao-stub: listening on http://HOST:PORT\" (https:// with TLS) once bound.\n"
                   "Exit status: 0 stopped by SIGINT/SIGTERM, 1 cannot serve, 2 usage or configuration error.\n");
}

/* Returns 0 (parsed), 1 (--help), or -EINVAL after printing the reason. */
static int parse_options(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"listen", required_argument, NULL, 'l'},
                {"db", required_argument, NULL, 'd'},
                {"token-file", required_argument, NULL, 'f'},
                {"token", required_argument, NULL, 't'},
                {"tls-cert", required_argument, NULL, 'C'},
                {"tls-key", required_argument, NULL, 'K'},
                {"tls-client-ca", required_argument, NULL, 'A'},
                {"test-control", no_argument, NULL, 'T'},
                {"deadman-intervals", required_argument, NULL, 'N'},
                {"escalation", required_argument, NULL, 'E'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":l:d:f:t:vh", longopts, NULL)) != -1) {
                switch (c) {
                case 'l':
                        opts.listen = optarg;
                        break;
                case 'd':
                        opts.db = optarg;
                        break;
                case 'f':
                        opts.token_file = optarg;
                        break;
                case 't':
                        opts.token = optarg;
                        break;
                case 'C':
                        opts.tls_cert = optarg;
                        break;
                case 'K':
                        opts.tls_key = optarg;
                        break;
                case 'A':
                        opts.tls_client_ca = optarg;
                        break;
                case 'T':
                        opts.test_control = true;
                        break;
                case 'N': {
                        char *end;
                        long v;

                        errno = 0;
                        v = strtol(optarg, &end, 10);
                        if (errno || end == optarg || *end || v < 1 || v > DEADMAN_INTERVALS_MAX) {
                                fprintf(stderr, "weibao-stub: --deadman-intervals: expected an integer 1..%d\n",
                                        DEADMAN_INTERVALS_MAX);
                                return -EINVAL;
                        }
                        opts.deadman_intervals = (int)v;
                        break;
                }
                case 'E':
                        opts.escalation = optarg;
                        break;
                case 'v':
                        opts.verbose = true;
                        break;
                case 'h':
                        return 1;
                case ':':
                        fprintf(stderr, "weibao-stub: option %s needs an argument\n", argv[optind - 1]);
                        return -EINVAL;
                default:
                        fprintf(stderr, "weibao-stub: unknown option %s\n", argv[optind - 1]);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "weibao-stub: unexpected argument %s\n", argv[optind]);
                return -EINVAL;
        }
        if (!opts.listen) {
                fprintf(stderr, "weibao-stub: --listen HOST:PORT is required\n");
                return -EINVAL;
        }
        if (!opts.db) {
                fprintf(stderr, "weibao-stub: --db FILE is required\n");
                return -EINVAL;
        }
        if (!opts.token_file == !opts.token) {
                fprintf(stderr, "weibao-stub: exactly one of --token-file FILE or --token TOKEN is required\n");
                return -EINVAL;
        }
        if (!opts.tls_cert != !opts.tls_key) {
                fprintf(stderr, "weibao-stub: --tls-cert and --tls-key go together\n");
                return -EINVAL;
        }
        if (opts.tls_client_ca && !opts.tls_cert) {
                fprintf(stderr, "weibao-stub: --tls-client-ca needs --tls-cert and --tls-key\n");
                return -EINVAL;
        }
        return 0;
}

/* Resolves "HOST:PORT" or "[V6]:PORT" into *ret. Returns 0 or -EINVAL with
 * a message in err. */
static int parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, char *err, size_t errsize)
{
        char host[256];
        const char *port, *colon;
        struct addrinfo hints = {0}, *ai = NULL;
        size_t hlen;
        int rc;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':') {
                        snprintf(err, errsize, "expected [ADDRESS]:PORT");
                        return -EINVAL;
                }
                hlen = (size_t)(close - s - 1);
                s++;
                port = close + 2;
        } else {
                colon = strrchr(s, ':');
                if (!colon || strchr(s, ':') != colon) {
                        snprintf(err, errsize, "expected HOST:PORT (IPv6 as [ADDRESS]:PORT)");
                        return -EINVAL;
                }
                hlen = (size_t)(colon - s);
                port = colon + 1;
        }
        if (hlen == 0 || hlen >= sizeof host) {
                snprintf(err, errsize, "missing or overlong host");
                return -EINVAL;
        }
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) || atoi(port) > 65535) {
                snprintf(err, errsize, "port: expected 0..65535");
                return -EINVAL;
        }
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        rc = getaddrinfo(host, port, &hints, &ai);
        if (rc != 0) {
                snprintf(err, errsize, "%s: %s", host, gai_strerror(rc));
                return -EINVAL;
        }
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

/* Reads the token: the first line of path, surrounding whitespace removed.
 * Returns 0 and a string (caller frees with free()), or a negative errno
 * with a message in err. */
static int read_token_file(const char *path, char **ret, char *err, size_t errsize)
{
        char buf[TOKEN_MAX + 2];
        size_t len = 0;
        ssize_t n;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "%s", strerror(errno));
                return r;
        }
        while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        snprintf(err, errsize, "%s", strerror(errno));
                        close(fd);
                        return r;
                }
                len += (size_t)n;
        }
        close(fd);
        buf[len] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        len = strlen(buf);
        while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t' || buf[len - 1] == '\r'))
                buf[--len] = '\0';
        if (len > TOKEN_MAX) {
                snprintf(err, errsize, "token longer than %d bytes", TOKEN_MAX);
                return -EINVAL;
        }
        *ret = xstrdup(buf + strspn(buf, " \t"));
        if (!*ret) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        return 0;
}

/* Reads a whole PEM file (at most PEM_MAX bytes) as a string. Returns 0
 * and the text (caller frees with free()), or a negative errno with a
 * message in err. */
static int read_pem(const char *path, char **ret, char *err, size_t errsize)
{
        char *buf = NULL;
        size_t len = 0;
        ssize_t n;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "%s", strerror(errno));
                return r;
        }
        buf = xmalloc(PEM_MAX + 1);
        if (!buf) {
                close(fd);
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        while (len <= PEM_MAX && (n = read(fd, buf + len, PEM_MAX + 1 - len)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        snprintf(err, errsize, "%s", strerror(errno));
                        goto fail;
                }
                len += (size_t)n;
        }
        if (len > PEM_MAX) {
                r = -EFBIG;
                snprintf(err, errsize, "larger than %d bytes", PEM_MAX);
                goto fail;
        }
        if (len == 0 || !memmem(buf, len, "-----BEGIN ", 11)) {
                r = -EINVAL;
                snprintf(err, errsize, "not a PEM file");
                goto fail;
        }
        close(fd);
        buf[len] = '\0';
        *ret = buf;
        return 0;
fail:
        close(fd);
        free(buf);
        return r;
}

/* Reads and parses the --escalation file into *ret. Returns 0, or a
 * negative errno with a message in err. */
static int read_escalation(const char *path, struct escalation_matrix *ret, char *err, size_t errsize)
{
        char *buf = NULL;
        size_t len = 0;
        ssize_t n;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "%s", strerror(errno));
                return r;
        }
        buf = xmalloc(ESCALATION_FILE_MAX + 1);
        if (!buf) {
                close(fd);
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        r = 0;
        while (len <= ESCALATION_FILE_MAX && (n = read(fd, buf + len, ESCALATION_FILE_MAX + 1 - len)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        snprintf(err, errsize, "%s", strerror(errno));
                        goto out;
                }
                len += (size_t)n;
        }
        r = escalation_parse(buf, len, ret, err, errsize);
        if (r == -ENOMEM)
                snprintf(err, errsize, "out of memory");
out:
        close(fd);
        free(buf);
        return r;
}

static void tick(struct store *store)
{
        central_tick(store);
}

/* A token must be non-empty visible ASCII: it travels in an HTTP header. */
static bool token_valid(const char *t)
{
        if (!*t || strlen(t) > TOKEN_MAX)
                return false;
        for (; *t; t++)
                if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e)
                        return false;
        return true;
}

static void format_url(const struct sockaddr_storage *ss, uint16_t port, bool tls, char *buf, size_t size)
{
        char host[INET6_ADDRSTRLEN];
        const char *scheme = tls ? "https" : "http";

        if (ss->ss_family == AF_INET6) {
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof host);
                snprintf(buf, size, "%s://[%s]:%u", scheme, host, port);
        } else {
                inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof host);
                snprintf(buf, size, "%s://%s:%u", scheme, host, port);
        }
}

int main(int argc, char **argv)
{
        cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};
        struct sockaddr_storage addr;
        socklen_t addrlen = 0;
        struct http_server *srv = NULL;
        struct store *store = NULL;
        char *token = NULL, *cert = NULL, *key = NULL, *client_ca = NULL;
        struct http_options hopts = {0};
        struct escalation_matrix matrix;
        struct timespec second = {.tv_sec = 1};
        char err[512], url[128];
        sigset_t mask;
        uint16_t port;
        int r, sig, ret = 2;

        log_init("weibao-stub");
        cJSON_InitHooks(&hooks);
        r = parse_options(argc, argv);
        if (r > 0) {
                usage(stdout);
                return 0;
        }
        if (r < 0) {
                usage(stderr);
                return 2;
        }
        if (opts.verbose)
                log_set_level(LOG_LEVEL_DEBUG);
        if (parse_listen(opts.listen, &addr, &addrlen, err, sizeof err) < 0) {
                log_err("--listen %s: %s", opts.listen, err);
                return 2;
        }
        if (opts.token_file) {
                if (read_token_file(opts.token_file, &token, err, sizeof err) < 0) {
                        log_err("reading token file %s: %s", opts.token_file, err);
                        goto out;
                }
        } else if (!(token = xstrdup(opts.token))) {
                log_err("out of memory");
                goto out;
        }
        if (!token_valid(token)) {
                log_err("token %s: must be 1..%d bytes of visible ASCII",
                        opts.token_file ? opts.token_file : "from --token", TOKEN_MAX);
                goto out;
        }
        if (opts.tls_cert) {
                const struct {
                        const char *opt, *path;
                        char **dst;
                } pems[] = {{"--tls-cert", opts.tls_cert, &cert},
                            {"--tls-key", opts.tls_key, &key},
                            {"--tls-client-ca", opts.tls_client_ca, &client_ca}};

                for (size_t i = 0; i < sizeof pems / sizeof pems[0]; i++)
                        if (pems[i].path && read_pem(pems[i].path, pems[i].dst, err, sizeof err) < 0) {
                                log_err("%s %s: %s", pems[i].opt, pems[i].path, err);
                                goto out;
                        }
        }
        escalation_default(&matrix);
        if (opts.escalation && read_escalation(opts.escalation, &matrix, err, sizeof err) < 0) {
                log_err("--escalation %s: %s", opts.escalation, err);
                goto out;
        }
        if (store_open(opts.db, &store, err, sizeof err) < 0) {
                log_err("opening database %s: %s", opts.db, err);
                goto out;
        }
        store_set_central(store, &matrix, opts.deadman_intervals);

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        hopts.token = token;
        hopts.test_control = opts.test_control;
        hopts.tls_cert = cert;
        hopts.tls_key = key;
        hopts.tls_client_ca = client_ca;
        if (http_server_start((const struct sockaddr *)&addr, addrlen, &hopts, store, &srv, &port, err, sizeof err) <
            0) {
                log_err("serving on %s: %s", opts.listen, err);
                ret = 1;
                goto out;
        }
        format_url(&addr, port, cert != NULL, url, sizeof url);
        printf("weibao-stub: listening on %s\n", url);
        fflush(stdout);
        log_info("serving %s with database %s%s%s", url, opts.db, client_ca ? ", client certificates required" : "",
                 opts.test_control ? ", test control on" : "");

        for (;;) {
                sig = sigtimedwait(&mask, NULL, &second);
                if (sig == SIGINT || sig == SIGTERM)
                        break;
                if (sig < 0 && errno == EAGAIN)
                        http_server_locked(srv, tick);
        }
        log_info("%s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        ret = 0;
out:
        http_server_stop(srv);
        store_free(store);
        free(token);
        if (key)
                explicit_bzero(key, strlen(key));
        free(key);
        free(cert);
        free(client_ca);
        return ret;
}
