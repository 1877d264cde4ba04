/* loop: see loop.h.
 *
 * Timers live in a binary min-heap ordered by deadline; the single timerfd is
 * armed for the earliest one. Re-arming is lazy: timerfd_settime costs a few
 * microseconds (more in a VM), and busy paths re-arm far timers all the time
 * (the sender's idle timer per request), so the timerfd is only moved when
 * the earliest deadline comes before the armed one, and within a dispatch
 * round only once, at its end. An armed deadline earlier than needed merely
 * wakes the loop once for nothing, and it is re-armed then.
 *
 * Sources are kept in an array so status output can enumerate them; removal
 * during dispatch only marks the source dead and the array is compacted after
 * the round, so a callback can remove anything (including sources whose
 * events are still pending in the same epoll batch). */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "../lib/event.h"
#include "../lib/xalloc.h"

enum loop_kind {
        LOOP_KIND_IO,
        LOOP_KIND_TIMER,
        LOOP_KIND_SIGNAL,
        LOOP_KIND_MAX,
};

static const char *const kind_names[LOOP_KIND_MAX] = {"io", "timer", "signal"};

struct loop_source {
        enum loop_kind kind;
        char *name;
        void *userdata;
        struct loop *loop;
        bool dead;
        union {
                struct {
                        int fd;
                        loop_io_fn fn;
                } io;
                struct {
                        uint64_t deadline; /* 0: disarmed */
                        uint64_t jitter;
                        size_t heap_index; /* SIZE_MAX when not in the heap */
                        loop_timer_fn fn;
                } timer;
                struct {
                        int signo;
                        loop_signal_fn fn;
                } sig;
        };
};

struct loop {
        int epfd;
        int timerfd;
        int sigfd;
        sigset_t sigmask;
        struct loop_source **sources;
        size_t n_sources, cap_sources;
        struct loop_source **heap;
        size_t n_heap, cap_heap;
        uint64_t armed; /* the timerfd's pending deadline; 0: none pending */
        bool dispatching;
        bool have_dead;
        bool exiting;
        int exit_code;
        unsigned int rand_state;
};

/* epoll user data tags for the loop's own fds */
static char timerfd_tag, sigfd_tag;

int loop_new(struct loop **ret)
{
        struct loop *l = xcalloc(1, sizeof *l);
        struct epoll_event ev = {.events = EPOLLIN};

        if (!l)
                return -ENOMEM;
        l->timerfd = l->sigfd = -1;
        sigemptyset(&l->sigmask);
        l->rand_state = (unsigned int)time_mono_usec() ^ (unsigned int)getpid();
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0)
                goto fail;
        l->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (l->timerfd < 0)
                goto fail;
        ev.data.ptr = &timerfd_tag;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->timerfd, &ev) < 0)
                goto fail;
        *ret = l;
        return 0;
fail:;
        int r = -errno;
        loop_free(l);
        return r;
}

static void source_free(struct loop_source *s)
{
        free(s->name);
        free(s);
}

void loop_free(struct loop *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n_sources; i++)
                source_free(l->sources[i]);
        free(l->sources);
        free(l->heap);
        if (l->sigfd >= 0)
                close(l->sigfd);
        if (l->timerfd >= 0)
                close(l->timerfd);
        if (l->epfd >= 0)
                close(l->epfd);
        if (!sigisemptyset(&l->sigmask))
                sigprocmask(SIG_UNBLOCK, &l->sigmask, NULL);
        free(l);
}

static int source_new(struct loop *l, enum loop_kind kind, const char *name, void *userdata, struct loop_source **ret)
{
        struct loop_source *s;

        if (l->n_sources == l->cap_sources) {
                size_t cap = l->cap_sources ? l->cap_sources * 2 : 16;
                struct loop_source **n = xrealloc(l->sources, cap * sizeof *n);
                if (!n)
                        return -ENOMEM;
                l->sources = n;
                l->cap_sources = cap;
        }
        s = xcalloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->name = xstrdup(name ? name : "");
        if (!s->name) {
                free(s);
                return -ENOMEM;
        }
        s->kind = kind;
        s->userdata = userdata;
        s->loop = l;
        l->sources[l->n_sources++] = s;
        *ret = s;
        return 0;
}

/* Drops s from the source array (not yet freed). */
static void source_unlink(struct loop *l, struct loop_source *s)
{
        for (size_t i = 0; i < l->n_sources; i++)
                if (l->sources[i] == s) {
                        l->sources[i] = l->sources[--l->n_sources];
                        return;
                }
}

/* ---- timer heap ---- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
        struct loop_source *t = l->heap[a];

        l->heap[a] = l->heap[b];
        l->heap[b] = t;
        l->heap[a]->timer.heap_index = a;
        l->heap[b]->timer.heap_index = b;
}

static void heap_up(struct loop *l, size_t i)
{
        while (i > 0) {
                size_t p = (i - 1) / 2;
                if (l->heap[p]->timer.deadline <= l->heap[i]->timer.deadline)
                        break;
                heap_swap(l, i, p);
                i = p;
        }
}

static void heap_down(struct loop *l, size_t i)
{
        for (;;) {
                size_t c = 2 * i + 1, m = i;
                if (c < l->n_heap && l->heap[c]->timer.deadline < l->heap[m]->timer.deadline)
                        m = c;
                if (c + 1 < l->n_heap && l->heap[c + 1]->timer.deadline < l->heap[m]->timer.deadline)
                        m = c + 1;
                if (m == i)
                        return;
                heap_swap(l, i, m);
                i = m;
        }
}

static void heap_remove(struct loop *l, struct loop_source *s)
{
        size_t i = s->timer.heap_index;

        if (i == SIZE_MAX)
                return;
        s->timer.heap_index = SIZE_MAX;
        l->n_heap--;
        if (i == l->n_heap)
                return;
        l->heap[i] = l->heap[l->n_heap];
        l->heap[i]->timer.heap_index = i;
        heap_up(l, i);
        heap_down(l, l->heap[i]->timer.heap_index);
}

static int heap_insert(struct loop *l, struct loop_source *s)
{
        if (l->n_heap == l->cap_heap) {
                size_t cap = l->cap_heap ? l->cap_heap * 2 : 16;
                struct loop_source **n = xrealloc(l->heap, cap * sizeof *n);
                if (!n)
                        return -ENOMEM;
                l->heap = n;
                l->cap_heap = cap;
        }
        s->timer.heap_index = l->n_heap;
        l->heap[l->n_heap++] = s;
        heap_up(l, s->timer.heap_index);
        return 0;
}

static int timerfd_rearm(struct loop *l)
{
        struct itimerspec its = {0};
        uint64_t d;

        if (l->dispatching || l->n_heap == 0)
                return 0; /* done at the end of the round; a pending expiry is harmless */
        d = l->heap[0]->timer.deadline;
        if (d == 0)
                d = 1; /* 0 would disarm */
        if (l->armed != 0 && l->armed <= d)
                return 0;
        its.it_value.tv_sec = (time_t)(d / 1000000u);
        its.it_value.tv_nsec = (long)(d % 1000000u) * 1000;
        if (timerfd_settime(l->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                return -errno;
        l->armed = d;
        return 0;
}

static uint64_t loop_jitter(struct loop *l, uint64_t jitter)
{
        if (jitter == 0)
                return 0;
        return (uint64_t)rand_r(&l->rand_state) % jitter;
}

int loop_timer_set(struct loop_source *s, uint64_t delay_usec)
{
        struct loop *l = s->loop;
        int r;

        if (s->kind != LOOP_KIND_TIMER)
                return -EINVAL;
        heap_remove(l, s);
        s->timer.deadline = 0;
        if (delay_usec > 0) {
                s->timer.deadline = time_mono_usec() + delay_usec;
                r = heap_insert(l, s);
                if (r < 0)
                        return r;
        }
        return timerfd_rearm(l);
}

int loop_add_timer(struct loop *l, uint64_t delay_usec, uint64_t jitter_usec, const char *name, loop_timer_fn fn,
                   void *userdata, struct loop_source **ret)
{
        struct loop_source *s;
        int r = source_new(l, LOOP_KIND_TIMER, name, userdata, &s);

        if (r < 0)
                return r;
        s->timer.fn = fn;
        s->timer.jitter = jitter_usec;
        s->timer.heap_index = SIZE_MAX;
        r = loop_timer_set(s, delay_usec);
        if (r < 0) {
                source_unlink(l, s);
                source_free(s);
                return r;
        }
        if (ret)
                *ret = s;
        return 0;
}

/* ---- io and signals ---- */

int loop_add_io(struct loop *l, int fd, uint32_t events, const char *name, loop_io_fn fn, void *userdata,
                struct loop_source **ret)
{
        struct loop_source *s;
        struct epoll_event ev = {.events = events};
        int r = source_new(l, LOOP_KIND_IO, name, userdata, &s);

        if (r < 0)
                return r;
        s->io.fd = fd;
        s->io.fn = fn;
        ev.data.ptr = s;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                r = -errno;
                source_unlink(l, s);
                source_free(s);
                return r;
        }
        if (ret)
                *ret = s;
        return 0;
}

int loop_io_set_events(struct loop_source *s, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.ptr = s};

        if (s->kind != LOOP_KIND_IO)
                return -EINVAL;
        if (epoll_ctl(s->loop->epfd, EPOLL_CTL_MOD, s->io.fd, &ev) < 0)
                return -errno;
        return 0;
}

static int sigfd_update(struct loop *l)
{
        int fd = signalfd(l->sigfd, &l->sigmask, SFD_CLOEXEC | SFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sigfd_tag};

        if (fd < 0)
                return -errno;
        if (l->sigfd < 0) {
                if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                l->sigfd = fd;
        }
        return 0;
}

int loop_add_signal(struct loop *l, int signo, const char *name, loop_signal_fn fn, void *userdata,
                    struct loop_source **ret)
{
        struct loop_source *s;
        sigset_t one;
        int r = source_new(l, LOOP_KIND_SIGNAL, name, userdata, &s);

        if (r < 0)
                return r;
        s->sig.signo = signo;
        s->sig.fn = fn;
        sigemptyset(&one);
        sigaddset(&one, signo);
        sigaddset(&l->sigmask, signo);
        if (sigprocmask(SIG_BLOCK, &one, NULL) < 0 || (r = sigfd_update(l)) < 0) {
                if (r == 0)
                        r = -errno;
                source_unlink(l, s);
                source_free(s);
                return r;
        }
        if (ret)
                *ret = s;
        return 0;
}

void loop_remove(struct loop_source *s)
{
        struct loop *l;

        if (!s || s->dead)
                return;
        l = s->loop;
        if (s->kind == LOOP_KIND_IO)
                epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->io.fd, NULL);
        else if (s->kind == LOOP_KIND_TIMER) {
                heap_remove(l, s);
                timerfd_rearm(l);
        }
        /* Signals stay blocked: unblocking would let a late one kill us. */
        if (l->dispatching) {
                s->dead = true;
                l->have_dead = true;
                return;
        }
        source_unlink(l, s);
        source_free(s);
}

const char *loop_source_name(const struct loop_source *s)
{
        return s->name;
}

size_t loop_source_count(const struct loop *l)
{
        return l->n_sources;
}

int loop_source_describe(const struct loop *l, size_t i, const char **ret_kind, const char **ret_name)
{
        if (i >= l->n_sources)
                return -ENOENT;
        *ret_kind = kind_names[l->sources[i]->kind];
        *ret_name = l->sources[i]->name;
        return 0;
}

/* ---- dispatch ---- */

static int dispatch_timers(struct loop *l)
{
        uint64_t expirations, now = time_mono_usec();
        int n = 0;

        if (read(l->timerfd, &expirations, sizeof expirations) < 0) {
                if (errno != EAGAIN)
                        return -errno;
        } else
                l->armed = 0; /* expired: nothing pending any more */
        while (l->n_heap > 0 && l->heap[0]->timer.deadline <= now) {
                struct loop_source *s = l->heap[0];
                uint64_t next;

                heap_remove(l, s);
                s->timer.deadline = 0;
                next = s->timer.fn(s, now, s->userdata);
                n++;
                /* The callback may have re-armed or removed the timer itself. */
                if (!s->dead && next > 0 && s->timer.heap_index == SIZE_MAX) {
                        s->timer.deadline = now + next + loop_jitter(l, s->timer.jitter);
                        if (heap_insert(l, s) < 0)
                                return -ENOMEM;
                }
        }
        return n;
}

static int dispatch_signals(struct loop *l)
{
        struct signalfd_siginfo si;
        int n = 0;

        while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                for (size_t i = 0; i < l->n_sources; i++) {
                        struct loop_source *s = l->sources[i];
                        if (s->kind == LOOP_KIND_SIGNAL && !s->dead && s->sig.signo == (int)si.ssi_signo) {
                                s->sig.fn(s, s->sig.signo, s->userdata);
                                n++;
                        }
                }
        }
        return n;
}

static void reap_dead(struct loop *l)
{
        size_t j = 0;

        if (!l->have_dead)
                return;
        for (size_t i = 0; i < l->n_sources; i++) {
                if (l->sources[i]->dead)
                        source_free(l->sources[i]);
                else
                        l->sources[j++] = l->sources[i];
        }
        l->n_sources = j;
        l->have_dead = false;
}

int loop_run_once(struct loop *l, uint64_t timeout_usec)
{
        struct epoll_event evs[64];
        int timeout_ms = timeout_usec == UINT64_MAX ? -1 : (int)((timeout_usec + 999) / 1000);
        int n, dispatched = 0, r = 0;

        n = epoll_wait(l->epfd, evs, 64, timeout_ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        l->dispatching = true;
        for (int i = 0; i < n; i++) {
                void *p = evs[i].data.ptr;
                if (p == &timerfd_tag) {
                        r = dispatch_timers(l);
                } else if (p == &sigfd_tag) {
                        r = dispatch_signals(l);
                } else {
                        struct loop_source *s = p;
                        if (s->dead)
                                continue;
                        s->io.fn(s, s->io.fd, evs[i].events, s->userdata);
                        r = 1;
                }
                if (r < 0)
                        break;
                dispatched += r;
        }
        l->dispatching = false;
        reap_dead(l);
        if (r >= 0)
                r = timerfd_rearm(l);
        return r < 0 ? r : dispatched;
}

int loop_run(struct loop *l)
{
        l->exiting = false;
        while (!l->exiting) {
                int r = loop_run_once(l, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return l->exit_code;
}

void loop_exit(struct loop *l, int code)
{
        l->exiting = true;
        l->exit_code = code;
}
