/* sender: see sender.h.
 *
 * The HTTP itself happens in a worker process, weibao-sender
 * (agent/sender_worker.c), the only program that links libcurl: libcurl and
 * its dependencies cost about 6 MiB of PSS by merely being mapped, while the
 * whole idle agent has a budget of 3 MiB. The alternative, libcurl multi on
 * this loop, is what DESIGN.md first sketched; the worker keeps the same
 * non-blocking contract and leaves the daemon small when it has nothing to
 * send.
 *
 * The worker is started on the first request, talked to over a socketpair
 * in newline-delimited JSON, and told to exit (its stdin closed) once no
 * request has been in flight for SENDER_IDLE_USEC. If it dies, every request
 * in flight completes with an error and the next request starts a new one.
 * The token goes to the worker over the socket, never in argv or environ. */
#include "sender.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "loop.h"
#include "retry_after.h"

#ifndef WEIBAO_LIBEXECDIR
#define WEIBAO_LIBEXECDIR "/usr/libexec/weibao"
#endif

/* Let the worker go after this long unused: long enough to carry a burst,
 * short enough that a check-in a minute does not keep libcurl resident. */
#define SENDER_IDLE_USEC 3000000ULL
#define SENDER_IN_MAX (4 * 1024 * 1024)   /* cap on one answer line from the worker */
#define SENDER_OUT_MAX (64 * 1024 * 1024) /* cap on requests queued for the worker */

extern char **environ;

struct request {
        unsigned long id;
        sender_done_fn fn;
        void *userdata;
        struct request *next;
};

struct sender {
        struct loop *loop;
        char *base_url;
        char *token;
        char *ca_file, *client_cert, *client_key; /* NULL when not set */
        uint64_t timeout_usec;
        char *worker_path;

        pid_t pid;
        int fd;    /* socket to the worker, -1 when none runs */
        int pidfd; /* tells us when it exits */
        struct loop_source *fd_src, *pid_src, *idle_timer;
        char *out;
        size_t out_len, out_cap;
        char *in;
        size_t in_len, in_cap;

        struct request *requests; /* in flight, oldest first */
        size_t n_in_flight;
        unsigned long next_id;
};

/* $WEIBAO_SENDER (tests, development), else next to our own binary (a build
 * tree), else the installed libexec directory. */
static char *find_worker(void)
{
        const char *env = getenv("WEIBAO_SENDER");
        char self[PATH_MAX];
        ssize_t n;

        if (env && *env)
                return xstrdup(env);
        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
                char *p;
                self[n] = '\0';
                p = xasprintf("%s/weibao-sender", dirname(self));
                if (p && access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return xstrdup(WEIBAO_LIBEXECDIR "/weibao-sender");
}

static uint64_t on_idle(struct loop_source *src, uint64_t now, void *userdata);

int sender_new(struct loop *loop, struct sender **ret)
{
        struct sender *s = xcalloc(1, sizeof *s);
        int r;

        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->fd = s->pidfd = -1;
        s->timeout_usec = 10000000;
        s->worker_path = find_worker();
        if (!s->worker_path) {
                free(s);
                return -ENOMEM;
        }
        r = loop_add_timer(loop, 0, 0, "sender-idle", on_idle, s, &s->idle_timer);
        if (r < 0) {
                free(s->worker_path);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* Completes every request in flight with error text. */
static void fail_all(struct sender *s, const char *error)
{
        /* Detached first: a callback may start new requests (and a new
         * worker), which must not be failed with the old worker's error. */
        struct request *list = s->requests;

        s->requests = NULL;
        s->n_in_flight = 0;
        while (list) {
                struct request *q = list;
                struct sender_result res = {.body = "", .error = error};
                list = q->next;
                q->fn(&res, q->userdata);
                free(q);
        }
}

/* Closes our side and reaps the worker. wait: block for it (shutdown). */
static void worker_close(struct sender *s, bool wait)
{
        int status;

        if (s->fd < 0)
                return;
        loop_remove(s->fd_src);
        loop_remove(s->pid_src);
        s->fd_src = s->pid_src = NULL;
        close(s->fd); /* EOF on its stdin: it exits */
        s->fd = -1;
        if (waitpid(s->pid, &status, wait ? 0 : WNOHANG) == 0) {
                /* Not gone yet: it will be in a moment; do not leave a zombie. */
                kill(s->pid, SIGTERM);
                waitpid(s->pid, &status, 0);
        }
        close(s->pidfd);
        s->pidfd = -1;
        s->pid = 0;
        s->out_len = s->in_len = 0;
}

void sender_free(struct sender *s)
{
        if (!s)
                return;
        worker_close(s, true);
        while (s->requests) {
                struct request *q = s->requests;
                s->requests = q->next;
                free(q);
        }
        loop_remove(s->idle_timer);
        free(s->out);
        free(s->in);
        free(s->base_url);
        free(s->token);
        free(s->ca_file);
        free(s->client_cert);
        free(s->client_key);
        free(s->worker_path);
        free(s);
}

static int queue_line(struct sender *s, cJSON *o)
{
        char *text = cJSON_PrintUnformatted(o);
        size_t n;

        if (!text)
                return -ENOMEM;
        n = strlen(text);
        if (s->out_len + n + 1 > SENDER_OUT_MAX) {
                free(text);
                return -ENOBUFS;
        }
        if (s->out_len + n + 1 > s->out_cap) {
                size_t cap = (s->out_len + n + 1) * 2;
                char *p = xrealloc(s->out, cap);
                if (!p) {
                        free(text);
                        return -ENOMEM;
                }
                s->out = p;
                s->out_cap = cap;
        }
        memcpy(s->out + s->out_len, text, n);
        s->out[s->out_len + n] = '\n';
        s->out_len += n + 1;
        free(text);
        return loop_io_set_events(s->fd_src, EPOLLIN | EPOLLOUT);
}

static int queue_config(struct sender *s)
{
        cJSON *o = cJSON_CreateObject();
        int r = -ENOMEM;

        if (o && cJSON_AddStringToObject(o, "type", "config") && cJSON_AddStringToObject(o, "base_url", s->base_url) &&
            cJSON_AddStringToObject(o, "token", s->token) &&
            cJSON_AddNumberToObject(o, "timeout_ms", (double)(s->timeout_usec / 1000)) &&
            (!s->ca_file || cJSON_AddStringToObject(o, "ca_file", s->ca_file)) &&
            (!s->client_cert || cJSON_AddStringToObject(o, "client_cert", s->client_cert)) &&
            (!s->client_key || cJSON_AddStringToObject(o, "client_key", s->client_key)))
                r = queue_line(s, o);
        cJSON_Delete(o);
        return r;
}

static void handle_answer(struct sender *s, const char *line, size_t len)
{
        cJSON *o = cJSON_ParseWithLength(line, len);
        const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
        const cJSON *st = o ? cJSON_GetObjectItemCaseSensitive(o, "status") : NULL;
        const cJSON *body = o ? cJSON_GetObjectItemCaseSensitive(o, "body") : NULL;
        const cJSON *err = o ? cJSON_GetObjectItemCaseSensitive(o, "error") : NULL;
        const cJSON *ra = o ? cJSON_GetObjectItemCaseSensitive(o, "retry_after_usec") : NULL;
        struct request **pp, *q = NULL;

        if (cJSON_IsNumber(id))
                for (pp = &s->requests; *pp; pp = &(*pp)->next)
                        if ((double)(*pp)->id == id->valuedouble) {
                                q = *pp;
                                *pp = q->next;
                                break;
                        }
        if (!q) {
                log_warning("sender: ignoring an answer from weibao-sender for no known request");
                cJSON_Delete(o);
                return;
        }
        s->n_in_flight--;
        struct sender_result res = {
                .http_status = cJSON_IsNumber(st) ? (long)st->valuedouble : 0,
                .body = cJSON_IsString(body) ? body->valuestring : "",
        };
        res.body_len = strlen(res.body);
        /* The worker caps it already; the agent does not trust that alone. */
        if (res.http_status != 0 && cJSON_IsNumber(ra) && ra->valuedouble > 0)
                res.retry_after_usec = ra->valuedouble < RETRY_AFTER_MAX_SEC * 1e6 ? (uint64_t)ra->valuedouble
                                                                                   : RETRY_AFTER_MAX_SEC * 1000000ULL;
        if (res.http_status == 0)
                res.error = cJSON_IsString(err) ? err->valuestring : "the HTTP worker gave no reason";
        q->fn(&res, q->userdata);
        free(q);
        cJSON_Delete(o);
        if (s->n_in_flight == 0)
                loop_timer_set(s->idle_timer, SENDER_IDLE_USEC);
}

static void worker_died(struct sender *s, const char *why)
{
        if (s->n_in_flight > 0)
                log_warning("sender: %s with %zu requests in flight; they will be retried", why, s->n_in_flight);
        worker_close(s, false);
        fail_all(s, why);
}

static void on_worker_io(struct loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct sender *s = userdata;
        ssize_t n;
        char *nl;

        (void)src;
        if (events & EPOLLOUT && s->out_len > 0) {
                n = write(fd, s->out, s->out_len);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        worker_died(s, "the HTTP worker stopped reading");
                        return;
                }
                if (n > 0) {
                        memmove(s->out, s->out + n, s->out_len - (size_t)n);
                        s->out_len -= (size_t)n;
                }
                if (s->out_len == 0)
                        loop_io_set_events(s->fd_src, EPOLLIN);
        }
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        if (s->in_len + 65536 > s->in_cap) {
                size_t cap = s->in_cap ? s->in_cap * 2 : 131072;
                char *p;
                if (cap > SENDER_IN_MAX + 65536) {
                        worker_died(s, "the HTTP worker sent an over-long answer");
                        return;
                }
                p = xrealloc(s->in, cap);
                if (!p) {
                        worker_died(s, "out of memory reading the HTTP worker");
                        return;
                }
                s->in = p;
                s->in_cap = cap;
        }
        n = read(fd, s->in + s->in_len, s->in_cap - s->in_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                worker_died(s, "the HTTP worker exited");
                return;
        }
        s->in_len += (size_t)n;
        while (s->fd >= 0 && (nl = memchr(s->in, '\n', s->in_len))) {
                size_t l = (size_t)(nl - s->in);
                handle_answer(s, s->in, l);
                if (s->fd < 0)
                        break;
                memmove(s->in, nl + 1, s->in_len - l - 1);
                s->in_len -= l + 1;
        }
}

static void on_worker_exit(struct loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct sender *s = userdata;
        siginfo_t si = {0};
        char why[120];

        (void)src;
        (void)fd;
        (void)events;
        if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == s->pid) {
                if (si.si_code == CLD_EXITED)
                        snprintf(why, sizeof why, "the HTTP worker exited with status %d", si.si_status);
                else
                        snprintf(why, sizeof why, "the HTTP worker was killed by signal %s",
                                 sigabbrev_np(si.si_status) ? sigabbrev_np(si.si_status) : "?");
        } else {
                snprintf(why, sizeof why, "the HTTP worker exited");
        }
        worker_died(s, why);
}

static uint64_t on_idle(struct loop_source *src, uint64_t now, void *userdata)
{
        struct sender *s = userdata;

        (void)src;
        (void)now;
        if (s->n_in_flight == 0 && s->out_len == 0)
                worker_close(s, false);
        return 0;
}

static int worker_start(struct sender *s)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, defaults;
        char *argv[] = {(char *)"weibao-sender", NULL};
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
        /* The loop blocks the signals it reads through signalfd and the agent
         * ignores SIGPIPE; the worker gets neither. */
        sigemptyset(&none);
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGPIPE);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = posix_spawn(&s->pid, s->worker_path, &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        close(sv[1]);
        if (r != 0) {
                close(sv[0]);
                s->pid = 0;
                return -r;
        }
        s->fd = sv[0];
        s->pidfd = pidfd_open(s->pid, 0);
        if (fcntl(s->fd, F_SETFL, O_NONBLOCK) < 0 || s->pidfd < 0 ||
            (r = loop_add_io(s->loop, s->fd, EPOLLIN, "central-api-worker", on_worker_io, s, &s->fd_src)) < 0 ||
            (r = loop_add_io(s->loop, s->pidfd, EPOLLIN, "central-api-worker-exit", on_worker_exit, s, &s->pid_src)) <
                    0 ||
            (r = queue_config(s)) < 0) {
                if (r == 0)
                        r = -errno;
                worker_close(s, true);
                return r;
        }
        log_debug("sender: started %s (pid %d)", s->worker_path, (int)s->pid);
        return 0;
}

int sender_configure(struct sender *s, const char *base_url, const char *token, uint64_t timeout_usec)
{
        char *url = xstrdup(base_url), *tok = xstrdup(token ? token : "");

        if (!url || !tok) {
                free(url);
                free(tok);
                return -ENOMEM;
        }
        free(s->base_url);
        free(s->token);
        s->base_url = url;
        s->token = tok;
        s->timeout_usec = timeout_usec ? timeout_usec : 10000000;
        return s->fd >= 0 ? queue_config(s) : 0;
}

/* Copies an optional string: *ret NULL for NULL or "". Returns 0 or -ENOMEM. */
static int dup_optional(const char *v, char **ret)
{
        *ret = NULL;
        if (v && *v && !(*ret = xstrdup(v)))
                return -ENOMEM;
        return 0;
}

int sender_set_tls(struct sender *s, const char *ca_file, const char *client_cert, const char *client_key)
{
        char *ca, *cert = NULL, *key = NULL;

        if (dup_optional(ca_file, &ca) < 0 || dup_optional(client_cert, &cert) < 0 ||
            dup_optional(client_key, &key) < 0) {
                free(ca);
                free(cert);
                free(key);
                return -ENOMEM;
        }
        free(s->ca_file);
        free(s->client_cert);
        free(s->client_key);
        s->ca_file = ca;
        s->client_cert = cert;
        s->client_key = key;
        return s->fd >= 0 && s->base_url ? queue_config(s) : 0;
}

int sender_request(struct sender *s, const char *method, const char *path, const char *body,
                   const char *idempotency_key, unsigned flags, sender_done_fn fn, void *userdata)
{
        struct request *q, **tail;
        cJSON *o;
        int r;

        if (!s->base_url)
                return -EINVAL;
        if (s->fd < 0 && (r = worker_start(s)) < 0)
                return r;
        q = xcalloc(1, sizeof *q);
        o = cJSON_CreateObject();
        if (!q || !o) {
                free(q);
                cJSON_Delete(o);
                return -ENOMEM;
        }
        q->id = ++s->next_id;
        q->fn = fn;
        q->userdata = userdata;
        r = -ENOMEM;
        if (cJSON_AddStringToObject(o, "type", "request") && cJSON_AddNumberToObject(o, "id", (double)q->id) &&
            cJSON_AddStringToObject(o, "method", method) && cJSON_AddStringToObject(o, "path", path) &&
            cJSON_AddStringToObject(o, "body", body ? body : "") &&
            (!idempotency_key || cJSON_AddStringToObject(o, "idempotency_key", idempotency_key)) &&
            (!(flags & SENDER_ANSWER_MINIMAL) || cJSON_AddTrueToObject(o, "minimal")))
                r = queue_line(s, o);
        cJSON_Delete(o);
        if (r < 0) {
                free(q);
                return r;
        }
        for (tail = &s->requests; *tail; tail = &(*tail)->next)
                ;
        *tail = q;
        s->n_in_flight++;
        loop_timer_set(s->idle_timer, 0);
        return 0;
}

size_t sender_in_flight(const struct sender *s)
{
        return s->n_in_flight;
}
