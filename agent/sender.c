/* sender: see sender.h.
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to call it back (CURLMOPT_TIMERFUNCTION); both map onto loop sources. The
 * alternative, a worker thread doing blocking requests, would need locking
 * around every fault; the loop keeps the agent single-threaded. */
#include "sender.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "loop.h"

#define SENDER_BODY_MAX (1024 * 1024) /* cap on an answer's body */
#define SENDER_AGENT "weibao-agent/" WEIBAO_VERSION

#ifndef WEIBAO_VERSION
#define WEIBAO_VERSION "0.1.0"
#endif

struct request {
        struct sender *sender;
        CURL *easy;
        struct curl_slist *headers;
        char *body;
        char *answer;
        size_t answer_len, answer_cap;
        bool answer_too_big;
        char errbuf[CURL_ERROR_SIZE];
        sender_done_fn fn;
        void *userdata;
        struct request *next, *prev;
};

struct sender {
        struct loop *loop;
        CURLM *multi;
        struct loop_source *timer;
        char *base_url;
        char *auth_header;
        long timeout_ms;
        struct request *requests; /* in flight */
        size_t n_in_flight;
};

static void request_free(struct request *r)
{
        if (!r)
                return;
        if (r->easy)
                curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        free(r->body);
        free(r->answer);
        free(r);
}

static void check_done(struct sender *s)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(s->multi, &left))) {
                struct request *r;
                struct sender_result res = {0};

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                curl_multi_remove_handle(s->multi, r->easy);
                if (r->prev)
                        r->prev->next = r->next;
                else
                        s->requests = r->next;
                if (r->next)
                        r->next->prev = r->prev;
                s->n_in_flight--;

                res.body = r->answer ? r->answer : "";
                res.body_len = r->answer_len;
                if (msg->data.result == CURLE_OK) {
                        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.http_status);
                } else if (r->answer_too_big) {
                        res.error = "answer larger than 1 MiB";
                } else {
                        res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(msg->data.result);
                }
                r->fn(&res, r->userdata);
                request_free(r);
        }
}

static void on_socket_ready(struct loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct sender *s = userdata;
        int flags = 0, running;

        (void)src;
        if (events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(s->multi, fd, flags, &running);
        check_done(s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        struct sender *s = userp;
        struct loop_source *src = socketp;
        uint32_t events = 0;

        (void)easy;
        if (what == CURL_POLL_REMOVE) {
                loop_remove(src);
                curl_multi_assign(s->multi, fd, NULL);
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (src)
                return loop_io_set_events(src, events) < 0 ? -1 : 0;
        if (loop_add_io(s->loop, fd, events, "central-api", on_socket_ready, s, &src) < 0)
                return -1;
        curl_multi_assign(s->multi, fd, src);
        return 0;
}

static uint64_t on_timer(struct loop_source *src, uint64_t now, void *userdata)
{
        struct sender *s = userdata;
        int running;

        (void)src;
        (void)now;
        curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(s);
        return 0; /* curl re-arms through on_curl_timer */
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
        struct sender *s = userp;

        (void)multi;
        if (timeout_ms < 0)
                return loop_timer_set(s->timer, 0) < 0 ? -1 : 0;
        /* 0 means "as soon as possible": one microsecond keeps it on the loop. */
        return loop_timer_set(s->timer, timeout_ms == 0 ? 1 : (uint64_t)timeout_ms * 1000) < 0 ? -1 : 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct request *r = userdata;
        size_t n = size * nmemb;

        if (r->answer_len + n > SENDER_BODY_MAX) {
                r->answer_too_big = true;
                return 0; /* aborts the transfer: an error, not a silent cut */
        }
        if (r->answer_len + n + 1 > r->answer_cap) {
                size_t cap = (r->answer_len + n + 1) * 2;
                char *p = xrealloc(r->answer, cap);
                if (!p)
                        return 0;
                r->answer = p;
                r->answer_cap = cap;
        }
        memcpy(r->answer + r->answer_len, data, n);
        r->answer_len += n;
        r->answer[r->answer_len] = '\0';
        return n;
}

int sender_new(struct loop *loop, struct sender **ret)
{
        struct sender *s = xcalloc(1, sizeof *s);
        int r;

        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->timeout_ms = 10000;
        s->multi = curl_multi_init();
        if (!s->multi) {
                free(s);
                return -ENOMEM;
        }
        r = loop_add_timer(loop, 0, 0, "central-api-timer", on_timer, s, &s->timer);
        if (r < 0) {
                curl_multi_cleanup(s->multi);
                free(s);
                return r;
        }
        curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
        curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
        *ret = s;
        return 0;
}

void sender_free(struct sender *s)
{
        if (!s)
                return;
        while (s->requests) {
                struct request *r = s->requests;
                s->requests = r->next;
                curl_multi_remove_handle(s->multi, r->easy);
                request_free(r);
        }
        curl_multi_cleanup(s->multi);
        loop_remove(s->timer);
        free(s->base_url);
        free(s->auth_header);
        free(s);
}

int sender_configure(struct sender *s, const char *base_url, const char *token, uint64_t timeout_usec)
{
        char *url = xstrdup(base_url);
        char *auth = xasprintf("Authorization: Bearer %s", token ? token : "");
        size_t n;

        if (!url || !auth) {
                free(url);
                free(auth);
                return -ENOMEM;
        }
        n = strlen(url);
        while (n > 0 && url[n - 1] == '/')
                url[--n] = '\0';
        free(s->base_url);
        free(s->auth_header);
        s->base_url = url;
        s->auth_header = auth;
        s->timeout_ms = timeout_usec ? (long)(timeout_usec / 1000) : 10000;
        return 0;
}

int sender_request(struct sender *s, const char *method, const char *path, const char *body,
                   const char *idempotency_key, sender_done_fn fn, void *userdata)
{
        struct request *r;
        char *url = NULL, *idem = NULL;
        int ret = -ENOMEM;

        if (!s->base_url)
                return -EINVAL;
        r = xcalloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->sender = s;
        r->fn = fn;
        r->userdata = userdata;
        r->body = xstrdup(body ? body : "");
        url = xasprintf("%s%s", s->base_url, path);
        r->easy = curl_easy_init();
        if (!r->body || !url || !r->easy)
                goto fail;
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        if (!h)
                goto fail;
        r->headers = h;
        if (!(h = curl_slist_append(r->headers, s->auth_header)))
                goto fail;
        if (idempotency_key) {
                idem = xasprintf("Idempotency-Key: %s", idempotency_key);
                if (!idem || !(h = curl_slist_append(r->headers, idem)))
                        goto fail;
        }
        /* libcurl adds "Expect: 100-continue" to larger POSTs; a round trip we do not need. */
        if (!(h = curl_slist_append(r->headers, "Expect:")))
                goto fail;

        curl_easy_setopt(r->easy, CURLOPT_URL, url);
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, s->timeout_ms);
        curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
        curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(r->easy, CURLOPT_USERAGENT, SENDER_AGENT);
        curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
        if (curl_multi_add_handle(s->multi, r->easy) != CURLM_OK) {
                ret = -EIO;
                goto fail;
        }
        r->next = s->requests;
        if (r->next)
                r->next->prev = r;
        s->requests = r;
        s->n_in_flight++;
        free(url);
        free(idem);
        return 0;
fail:
        free(url);
        free(idem);
        request_free(r);
        return ret;
}

size_t sender_in_flight(const struct sender *s)
{
        return s->n_in_flight;
}
