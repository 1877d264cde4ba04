/* loop: the agent's single event loop. One epoll instance; timers in a
 * min-heap on CLOCK_MONOTONIC behind one timerfd; signals through one
 * signalfd. Every registered source carries a common header (kind, name,
 * callback, user data) so status output can list what the loop watches.
 *
 * Callbacks must not block. A callback may remove any source, including its
 * own; removal during dispatch is deferred until the dispatch round ends. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_source;

/* Called when fd is ready; events are EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP bits. */
typedef void (*loop_io_fn)(struct loop_source *s, int fd, uint32_t events, void *userdata);
/* Called when the timer expires. Returns the delay in microseconds until the
 * next run (jitter is added by the loop), or 0 to disarm the timer (the source
 * stays registered and can be re-armed with loop_timer_set). */
typedef uint64_t (*loop_timer_fn)(struct loop_source *s, uint64_t now_mono_usec, void *userdata);
/* Called for each delivery of the signal. */
typedef void (*loop_signal_fn)(struct loop_source *s, int signo, void *userdata);

/* Returns 0 and a new loop (caller frees with loop_free), or negative errno. */
int loop_new(struct loop **ret);
/* Frees the loop and every source still registered. */
void loop_free(struct loop *l);

/* Registers fd (not owned; the caller closes it after removing the source).
 * name is copied. Returns 0 and sets *ret (may be NULL), or negative errno. */
int loop_add_io(struct loop *l, int fd, uint32_t events, const char *name, loop_io_fn fn, void *userdata,
                struct loop_source **ret);
int loop_io_set_events(struct loop_source *s, uint32_t events);

/* A timer that first fires after delay_usec; every later delay is what the
 * callback returns plus a random jitter in [0, jitter_usec). */
int loop_add_timer(struct loop *l, uint64_t delay_usec, uint64_t jitter_usec, const char *name, loop_timer_fn fn,
                   void *userdata, struct loop_source **ret);
/* (Re-)arms a timer to fire after delay_usec (0: disarm). */
int loop_timer_set(struct loop_source *s, uint64_t delay_usec);

/* Blocks signo for the process and delivers it through the loop's signalfd. */
int loop_add_signal(struct loop *l, int signo, const char *name, loop_signal_fn fn, void *userdata,
                    struct loop_source **ret);

/* Unregisters and frees s. NULL does nothing. */
void loop_remove(struct loop_source *s);
const char *loop_source_name(const struct loop_source *s);
/* Number of registered sources, and the i-th one's kind ("io", "timer",
 * "signal") and name, for status output. */
size_t loop_source_count(const struct loop *l);
int loop_source_describe(const struct loop *l, size_t i, const char **ret_kind, const char **ret_name);

/* Runs until loop_exit(); returns the code given to it, or negative errno if
 * epoll itself fails. */
int loop_run(struct loop *l);
void loop_exit(struct loop *l, int code);
/* Runs one dispatch round, waiting at most timeout_usec (tests). Returns the
 * number of sources dispatched or negative errno. */
int loop_run_once(struct loop *l, uint64_t timeout_usec);
