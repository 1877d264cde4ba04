/* control: see control.h. Each client is a small state machine on the loop
 * (read a line, then write the answer) so a stuck client cannot stall the
 * agent; clients beyond CONTROL_CLIENTS_MAX are refused at accept. */
#include "control.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "loop.h"

#define CONTROL_ARGS_MAX 16

struct client {
        struct control *ctl;
        int fd;
        struct loop_source *src;
        char in[CONTROL_LINE_MAX + 1];
        size_t in_len;
        char *out;
        size_t out_len, out_off;
        struct client *next;
};

struct control {
        struct loop *loop;
        char *path;
        int fd;
        struct loop_source *src;
        control_handler_fn fn;
        void *userdata;
        struct client *clients;
        size_t n_clients;
};

static void client_free(struct client *cl)
{
        struct client **pp;

        for (pp = &cl->ctl->clients; *pp; pp = &(*pp)->next)
                if (*pp == cl) {
                        *pp = cl->next;
                        break;
                }
        cl->ctl->n_clients--;
        loop_remove(cl->src);
        close(cl->fd);
        free(cl->out);
        free(cl);
}

static char *error_answer(const char *msg)
{
        cJSON *o = cJSON_CreateObject();
        char *s;

        if (!o)
                return NULL;
        cJSON_AddFalseToObject(o, "ok");
        cJSON_AddStringToObject(o, "error", msg);
        s = cJSON_Print(o);
        cJSON_Delete(o);
        return s;
}

/* Splits line on blanks into argv (in place). Returns argc. */
static int split_args(char *line, char **argv)
{
        int argc = 0;
        char *save = NULL;

        for (char *t = strtok_r(line, " \t", &save); t && argc < CONTROL_ARGS_MAX; t = strtok_r(NULL, " \t", &save))
                argv[argc++] = t;
        return argc;
}

static void client_answer(struct client *cl, char *line)
{
        char *argv[CONTROL_ARGS_MAX];
        int argc = split_args(line, argv);
        cJSON *ans;
        char *text;

        if (argc == 0) {
                text = error_answer("empty command");
        } else {
                ans = cl->ctl->fn(argc, argv, cl->ctl->userdata);
                text = ans ? cJSON_Print(ans) : error_answer("out of memory");
                cJSON_Delete(ans);
        }
        if (!text) {
                client_free(cl);
                return;
        }
        cl->out = xasprintf("%s\n", text);
        free(text);
        if (!cl->out) {
                client_free(cl);
                return;
        }
        cl->out_len = strlen(cl->out);
        cl->out_off = 0;
        loop_io_set_events(cl->src, EPOLLOUT);
}

static void on_client(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct client *cl = userdata;
        ssize_t n;

        (void)s;
        if (cl->out) {
                n = write(fd, cl->out + cl->out_off, cl->out_len - cl->out_off);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        client_free(cl);
                        return;
                }
                cl->out_off += (size_t)n;
                if (cl->out_off == cl->out_len)
                        client_free(cl);
                return;
        }
        if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
                client_free(cl);
                return;
        }
        n = read(fd, cl->in + cl->in_len, CONTROL_LINE_MAX - cl->in_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0 && cl->in_len == 0) {
                client_free(cl);
                return;
        }
        if (n > 0)
                cl->in_len += (size_t)n;
        cl->in[cl->in_len] = '\0';
        char *nl = memchr(cl->in, '\n', cl->in_len);
        if (nl) {
                *nl = '\0';
                client_answer(cl, cl->in);
                return;
        }
        if (cl->in_len == CONTROL_LINE_MAX) {
                char *text = error_answer("command line too long");
                cl->out = text ? xasprintf("%s\n", text) : NULL;
                free(text);
                if (!cl->out) {
                        client_free(cl);
                        return;
                }
                cl->out_len = strlen(cl->out);
                loop_io_set_events(cl->src, EPOLLOUT);
                return;
        }
        if (n == 0) /* EOF without newline: take what came */
                client_answer(cl, cl->in);
}

static void on_accept(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct control *c = userdata;
        struct client *cl;
        int cfd;

        (void)s;
        (void)events;
        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return;
        if (c->n_clients >= CONTROL_CLIENTS_MAX) {
                log_warning("control: refusing client, %d already connected", CONTROL_CLIENTS_MAX);
                close(cfd);
                return;
        }
        cl = xcalloc(1, sizeof *cl);
        if (!cl) {
                close(cfd);
                return;
        }
        cl->ctl = c;
        cl->fd = cfd;
        if (loop_add_io(c->loop, cfd, EPOLLIN, "control-client", on_client, cl, &cl->src) < 0) {
                close(cfd);
                free(cl);
                return;
        }
        cl->next = c->clients;
        c->clients = cl;
        c->n_clients++;
}

int control_new(struct loop *loop, const char *path, control_handler_fn fn, void *userdata, struct control **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct control *c;
        int r;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        c = xcalloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->loop = loop;
        c->fn = fn;
        c->userdata = userdata;
        c->path = xstrdup(path);
        if (!c->path) {
                r = -ENOMEM;
                goto fail;
        }
        strcpy(sa.sun_path, path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                r = -errno;
                goto fail;
        }
        /* A socket file nobody answers on is left from a crashed run and may
         * go; one that answers belongs to a running agent and must stay. */
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EAGAIN) {
                r = -EADDRINUSE;
                goto fail;
        }
        close(c->fd);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                r = -errno;
                goto fail;
        }
        (void)unlink(path);
        if (bind(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0660) < 0 || listen(c->fd, 16) < 0) {
                r = -errno;
                goto fail;
        }
        r = loop_add_io(loop, c->fd, EPOLLIN, "control", on_accept, c, &c->src);
        if (r < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        if (c->fd >= 0)
                close(c->fd);
        free(c->path);
        free(c);
        return r;
}

void control_free(struct control *c)
{
        if (!c)
                return;
        while (c->clients)
                client_free(c->clients);
        loop_remove(c->src);
        close(c->fd);
        unlink(c->path);
        free(c->path);
        free(c);
}
