/* http: see http.h.
 *
 * A request goes through three phases of the libmicrohttpd access callback:
 * headers (route, method, token and Content-Length are decided here), body
 * chunks (appended up to BODY_MAX_BYTES) and the final call (the handler runs
 * and the reply is queued). A request refused early still has its body read
 * and discarded up to HTTP_DRAIN_MAX before the answer goes out: answering
 * while the client is still writing makes libmicrohttpd close the connection
 * under it, and most clients then report a reset instead of our 413 or 401.
 * Beyond HTTP_DRAIN_MAX the connection is simply dropped. We bind the listen
 * socket ourselves so a bind failure gets a real errno in the message.
 *
 * Fault injection (--test-control) is decided at the final call, once the
 * body is in: "before" actions replace the handler, "after" ones replace or
 * hold its answer. A delay suspends the connection (MHD_suspend_connection)
 * and the delayer thread resumes it when due; libmicrohttpd then calls us
 * again and the held answer goes out. A thread per connection would also
 * allow sleeping, but then handlers would run concurrently on the store.
 *
 * TLS is libmicrohttpd's (GnuTLS). With a client CA, libmicrohttpd asks
 * for a client certificate but leaves verifying it to us: a request whose
 * peer presented none, or one the CA did not sign, is answered 403 before
 * anything else happens. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <pthread.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "agents.h"
#include "body.h"
#include "cases.h"
#include "central.h"
#include "inject.h"
#include "inspections.h"
#include "store.h"

#define HTTP_DRAIN_MAX (64u * 1024 * 1024) /* body bytes read and discarded for a refused request */
#define HTTP_PATH_MAX 1024                 /* longer paths are a 404 */
#define HTTP_CONNECTION_LIMIT 64
#define HTTP_CONNECTION_TIMEOUT 30 /* seconds */

/* Suspended connections waiting for their injected delay. */
struct delayed {
        struct MHD_Connection *conn;
        struct timespec due; /* CLOCK_MONOTONIC */
        struct delayed *next;
};

struct delayer {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct delayed *list;
        bool stop, started;
        pthread_t thread;
};

struct http_server {
        struct MHD_Daemon *daemon;
        const char *token;
        bool test_control, client_certs;
        struct store *store;
        struct inject_queue *inject;
        struct delayer delayer;
        /* Held by every handler call and by http_server_locked (the central
         * clock on the main thread): the store sees one caller at a time. */
        pthread_mutex_t lock;
};

struct route {
        const char *method;
        const char *pattern; /* "{name}" matches one non-empty path segment */
        bool auth;
        bool test_only; /* exists only with --test-control */
        http_handler_fn handler;
        size_t max_body; /* 0: BODY_MAX_BYTES */
};

static void handle_health(struct store *store, const struct http_call *call, struct http_reply *reply);
static void handle_inject_add(struct store *store, const struct http_call *call, struct http_reply *reply);
static void handle_inject_list(struct store *store, const struct http_call *call, struct http_reply *reply);
static void handle_inject_clear(struct store *store, const struct http_call *call, struct http_reply *reply);

/* The whole API. */
static const struct route routes[] = {
        {"GET", "/api/v1/health", false, false, handle_health, 0},
        {"GET", "/api/v1/cases", true, false, cases_list, 0},
        {"POST", "/api/v1/cases", true, false, cases_create, 0},
        {"GET", "/api/v1/cases/{id}", true, false, cases_get, 0},
        {"POST", "/api/v1/cases/{id}/updates", true, false, cases_update, 0},
        {"GET", "/api/v1/agents", true, false, agents_list, 0},
        {"GET", "/api/v1/agents/{agent_id}", true, false, agents_get, 0},
        {"POST", "/api/v1/agents/{agent_id}/checkin", true, false, agents_checkin, 0},
        {"POST", "/api/v1/agents/{agent_id}/commands", true, false, agents_command_add, 0},
        {"PUT", "/api/v1/agents/{agent_id}/snapshots/{request}", true, false, agents_snapshot_put,
         BODY_MAX_SNAPSHOT_BYTES},
        {"GET", "/api/v1/agents/{agent_id}/snapshots/{request}", true, false, agents_snapshot_get, 0},
        {"GET", "/api/v1/inspections", true, false, inspections_list, 0},
        {"POST", "/api/v1/inspections", true, false, inspections_create, 0},
        {"GET", "/api/v1/inspections/{id}", true, false, inspections_get, 0},
        {"GET", "/inspections/{id}/report.html", true, false, inspections_report, 0},
        {"POST", "/api/v1/_test/inject", true, true, handle_inject_add, 0},
        {"GET", "/api/v1/_test/inject", true, true, handle_inject_list, 0},
        {"DELETE", "/api/v1/_test/inject", true, true, handle_inject_clear, 0},
        {"GET", "/api/v1/_test/clock", true, true, central_clock_get, 0},
        {"POST", "/api/v1/_test/clock", true, true, central_clock_advance, 0},
};

/* Per-request state, from the first callback to request-completed. */
struct request {
        const struct route *route;
        char path[HTTP_PATH_MAX + HTTP_MAX_PARAMS + 1]; /* copy of the path, split in place for params */
        const char *params[HTTP_MAX_PARAMS];
        struct http_reply early; /* status 0: none; otherwise sent after draining */
        char allow[64];          /* the Allow header of an early 405 */
        char *body;
        size_t body_len, body_cap;
        uint64_t received;
        bool injected;     /* inj holds the injection this request got */
        bool cert_refused; /* mTLS refused it: nothing but the 403, injections included */
        size_t max_body;   /* the route's body cap */
        struct inject_spec inj;
        struct http_reply held; /* status 0: none; the answer a delay holds back */
};

const char *http_call_header(const struct http_call *call, const char *name)
{
        return MHD_lookup_connection_value(call->conn, MHD_HEADER_KIND, name);
}

void http_reply_html(struct http_reply *reply, unsigned status, char *html)
{
        cJSON_Delete(reply->json);
        reply->json = NULL;
        free(reply->html);
        reply->html = html;
        reply->status = status;
        if (!html)
                http_reply_error(reply, 500, "out of memory");
}

void http_reply_json(struct http_reply *reply, unsigned status, cJSON *json)
{
        cJSON_Delete(reply->json);
        free(reply->html);
        reply->html = NULL;
        reply->status = status;
        reply->json = json;
}

void http_reply_error(struct http_reply *reply, unsigned status, const char *fmt, ...)
{
        char msg[512];
        cJSON *j;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        j = cJSON_CreateObject();
        if (j && !cJSON_AddStringToObject(j, "error", msg)) {
                cJSON_Delete(j);
                j = NULL;
        }
        http_reply_json(reply, status, j);
}

static void handle_health(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *j = cJSON_CreateObject();

        (void)store;
        (void)call;
        if (j && !cJSON_AddStringToObject(j, "status", "ok")) {
                cJSON_Delete(j);
                j = NULL;
        }
        http_reply_json(reply, MHD_HTTP_OK, j);
}

static void handle_inject_add(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        struct inject_spec spec;
        cJSON *body = NULL;
        char err[256];
        int r;

        (void)store;
        r = body_parse_json(call->body, call->body_len, &body, err, sizeof err);
        if (r < 0) {
                http_reply_error(reply, r == -ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST, "%s",
                                 err);
                return;
        }
        if (inject_parse(body, &spec, err, sizeof err) < 0) {
                http_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s", err);
                goto out;
        }
        if (inject_queue_push(call->inject, &spec) < 0) {
                http_reply_error(reply, MHD_HTTP_CONFLICT, "inject: %d injections already queued", INJECT_QUEUE_MAX);
                goto out;
        }
        log_notice("injection queued: %s for the next %u request(s) under %s", inject_action_to_string(spec.action),
                   spec.count, spec.match);
        http_reply_json(reply, MHD_HTTP_CREATED, inject_spec_to_json(&spec));
out:
        cJSON_Delete(body);
}

static void handle_inject_list(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        (void)store;
        http_reply_json(reply, MHD_HTTP_OK, inject_queue_to_json(call->inject));
}

static void handle_inject_clear(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *j = cJSON_CreateObject();
        size_t n = inject_queue_clear(call->inject);

        (void)store;
        if (j && !cJSON_AddNumberToObject(j, "cleared", (double)n)) {
                cJSON_Delete(j);
                j = NULL;
        }
        http_reply_json(reply, MHD_HTTP_OK, j);
}

/* Matches path against pattern, splitting the request's path copy in place
 * to capture the placeholders. Returns true on a match. */
static bool route_match(const char *pattern, const char *path, char *scratch, const char **params)
{
        const char *p = pattern, *q = path;
        size_t n = 0;

        while (*p && *q) {
                if (*p == '{') {
                        const char *end = strchr(q, '/');
                        size_t len = end ? (size_t)(end - q) : strlen(q);

                        if (len == 0 || n >= HTTP_MAX_PARAMS)
                                return false;
                        memcpy(scratch, q, len);
                        scratch[len] = '\0';
                        params[n++] = scratch;
                        scratch += len + 1;
                        p = strchr(p, '}');
                        if (!p)
                                return false;
                        p++;
                        q += len;
                        continue;
                }
                if (*p != *q)
                        return false;
                p++;
                q++;
        }
        return *p == '\0' && *q == '\0';
}

/* Finds the route for method and path. Returns it (params filled), or NULL
 * with *ret_status 404 (no such path) or 405 (path known, method not) and
 * the allowed methods in allow. */
static const struct route *route_find(struct request *req, bool test_control, const char *method, const char *path,
                                      unsigned *ret_status, char *allow, size_t allowsize)
{
        const char *params[HTTP_MAX_PARAMS];
        bool path_known = false;
        /* HEAD is served as GET; libmicrohttpd drops the body. */
        const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;

        allow[0] = '\0';
        if (strlen(path) > HTTP_PATH_MAX) {
                *ret_status = MHD_HTTP_NOT_FOUND;
                return NULL;
        }
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
                memset(params, 0, sizeof params);
                if (routes[i].test_only && !test_control)
                        continue;
                if (!route_match(routes[i].pattern, path, req->path, params))
                        continue;
                if (strcmp(routes[i].method, m) == 0) {
                        memcpy(req->params, params, sizeof params);
                        return &routes[i];
                }
                path_known = true;
                if (strlen(allow) + strlen(routes[i].method) + 3 < allowsize) {
                        if (allow[0])
                                strcat(allow, ", ");
                        strcat(allow, routes[i].method);
                }
        }
        *ret_status = path_known ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
        return NULL;
}

/* Compares in time independent of where the strings differ; only the length
 * of the expected token, which is no secret, shapes the loop. */
static bool token_equal(const char *given, const char *expected)
{
        size_t n = strlen(given), m = strlen(expected);
        volatile unsigned char diff = n != m;

        for (size_t i = 0; i < m; i++)
                diff |= (unsigned char)expected[i] ^ (unsigned char)(i < n ? given[i] : 0);
        return diff == 0;
}

static bool authorized(struct MHD_Connection *conn, const char *token)
{
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);

        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return false;
        h += 7;
        while (*h == ' ')
                h++;
        return token_equal(h, token);
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        struct http_call *call = cls;

        (void)kind;
        if (call->n_query >= HTTP_MAX_QUERY) {
                call->n_query = HTTP_MAX_QUERY + 1; /* overflow marker */
                return MHD_NO;
        }
        call->query[call->n_query].key = key;
        call->query[call->n_query].value = value;
        call->n_query++;
        return MHD_YES;
}

/* A client-supplied string made safe for one log line: control bytes
 * become '?', and a long one is cut with "..." (the log only, never data). */
static const char *printable(const char *s, char *buf, size_t size)
{
        size_t i;

        for (i = 0; s[i] && i + 1 < size; i++)
                buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        buf[i] = '\0';
        if (s[i] && size > 4)
                memcpy(buf + size - 4, "...", 4);
        return buf;
}

/* Queues reply (JSON) with the headers its status calls for; retry_after
 * (seconds, -1 for none) adds a Retry-After header. */
static enum MHD_Result send_reply_ra(struct MHD_Connection *conn, const char *method, const char *path,
                                     struct http_reply *reply, const char *allow, int retry_after)
{
        static const char oom[] = "{\"error\":\"out of memory\"}";
        struct MHD_Response *resp;
        unsigned status = reply->status;
        char shown[160];
        char *text = reply->html ? reply->html : reply->json ? cJSON_PrintUnformatted(reply->json) : NULL;
        bool html = reply->html != NULL;
        enum MHD_Result ret;

        reply->html = NULL; /* the response owns it now */
        if (text)
                resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        else {
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
                resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)(uintptr_t)oom, MHD_RESPMEM_PERSISTENT);
        }
        if (!resp) {
                free(text);
                log_warning("%s %s: cannot build a response, dropping the connection", method,
                            printable(path, shown, sizeof shown));
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                html && text ? "text/html; charset=utf-8" : "application/json");
        if (status == MHD_HTTP_UNAUTHORIZED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED && allow && allow[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        if (reply->preference_applied)
                MHD_add_response_header(resp, "Preference-Applied", reply->preference_applied);
        if (retry_after >= 0) {
                char ra[16];

                snprintf(ra, sizeof ra, "%d", retry_after);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
        }
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        log_info("%s %s %u%s%s%s", method, printable(path, shown, sizeof shown), status,
                 reply->preference_applied ? " (" : "", reply->preference_applied ? reply->preference_applied : "",
                 reply->preference_applied ? ")" : "");
        return ret;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, const char *method, const char *path,
                                  struct http_reply *reply, const char *allow)
{
        return send_reply_ra(conn, method, path, reply, allow, -1);
}

/* The "garbage" injection: 200 with a body no JSON parser accepts, under a
 * JSON content type, as a broken proxy or server might send. */
static enum MHD_Result send_garbage(struct MHD_Connection *conn, const char *method, const char *path)
{
        static const char garbage[] = "<html>injected: this is not JSON {\"id\": \n";
        struct MHD_Response *resp;
        char shown[160];
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(sizeof garbage - 1, (void *)(uintptr_t)garbage, MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        log_info("%s %s 200 (injected garbage)", method, printable(path, shown, sizeof shown));
        return ret;
}

/* ---- the delayer: resumes suspended connections when their delay is up ---- */

static void timespec_add_ms(struct timespec *t, unsigned ms)
{
        t->tv_sec += ms / 1000;
        t->tv_nsec += (long)(ms % 1000) * 1000000L;
        if (t->tv_nsec >= 1000000000L) {
                t->tv_sec++;
                t->tv_nsec -= 1000000000L;
        }
}

static bool timespec_le(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec <= b->tv_nsec);
}

static void *delayer_main(void *arg)
{
        struct delayer *d = arg;

        pthread_mutex_lock(&d->mu);
        for (;;) {
                struct delayed *due = NULL, **pp, *earliest = NULL;
                struct timespec now;

                clock_gettime(CLOCK_MONOTONIC, &now);
                for (pp = &d->list; *pp;) {
                        struct delayed *x = *pp;

                        if (d->stop || timespec_le(&x->due, &now)) {
                                *pp = x->next;
                                x->next = due;
                                due = x;
                                continue;
                        }
                        if (!earliest || timespec_le(&x->due, &earliest->due))
                                earliest = x;
                        pp = &x->next;
                }
                if (due) {
                        /* Resumed outside our lock: libmicrohttpd takes its own. */
                        pthread_mutex_unlock(&d->mu);
                        while (due) {
                                struct delayed *x = due;

                                due = x->next;
                                MHD_resume_connection(x->conn);
                                free(x);
                        }
                        pthread_mutex_lock(&d->mu);
                        continue;
                }
                if (d->stop)
                        break;
                if (earliest)
                        pthread_cond_timedwait(&d->cv, &d->mu, &earliest->due);
                else
                        pthread_cond_wait(&d->cv, &d->mu);
        }
        pthread_mutex_unlock(&d->mu);
        return NULL;
}

static int delayer_start(struct delayer *d)
{
        pthread_condattr_t ca;
        int r;

        pthread_mutex_init(&d->mu, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&d->cv, &ca);
        pthread_condattr_destroy(&ca);
        r = pthread_create(&d->thread, NULL, delayer_main, d);
        if (r != 0)
                return -r;
        d->started = true;
        return 0;
}

/* Resumes everything still waiting and ends the thread. */
static void delayer_stop(struct delayer *d)
{
        if (!d->started)
                return;
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        d->started = false;
}

/* Suspends conn for ms milliseconds. Returns 0, or a negative errno when
 * it cannot (stopping, no memory): the caller answers at once. */
static int delayer_add(struct delayer *d, struct MHD_Connection *conn, unsigned ms)
{
        struct delayed *x;

        if (!d->started)
                return -ESHUTDOWN;
        x = xcalloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->conn = conn;
        clock_gettime(CLOCK_MONOTONIC, &x->due);
        timespec_add_ms(&x->due, ms);
        pthread_mutex_lock(&d->mu);
        if (d->stop) {
                pthread_mutex_unlock(&d->mu);
                free(x);
                return -ESHUTDOWN;
        }
        MHD_suspend_connection(conn);
        x->next = d->list;
        d->list = x;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        return 0;
}

/* With a client CA: 0 when the peer presented a certificate the CA signed,
 * else -EACCES with the reason in why. */
static int check_client_cert(struct MHD_Connection *conn, char *why, size_t whysize)
{
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        gnutls_session_t session = ci ? (gnutls_session_t)ci->tls_session : NULL;
        unsigned int status = 0, n = 0;
        gnutls_datum_t text = {0};
        int r;

        if (!session || !gnutls_certificate_get_peers(session, &n) || n == 0) {
                snprintf(why, whysize, "client certificate required");
                return -EACCES;
        }
        r = gnutls_certificate_verify_peers3(session, NULL, &status);
        if (r < 0) {
                snprintf(why, whysize, "client certificate not verified: %s", gnutls_strerror(r));
                return -EACCES;
        }
        if (status != 0) {
                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0) {
                        snprintf(why, whysize, "client certificate refused: %s", (const char *)text.data);
                        gnutls_free(text.data);
                } else {
                        snprintf(why, whysize, "client certificate refused");
                }
                return -EACCES;
        }
        return 0;
}

/* A request refused from its headers alone: its body is drained before the
 * answer (so the client reads it rather than a reset), unless the body is
 * announced too large to be worth draining; then the answer goes at once. */
static enum MHD_Result refuse_early(struct request *req, struct MHD_Connection *conn, const char *method,
                                    const char *url, unsigned long long length)
{
        if (length > HTTP_DRAIN_MAX)
                return send_reply(conn, method, url, &req->early, req->allow);
        return MHD_YES;
}

/* First callback of a request: decide everything the headers allow. */
static enum MHD_Result request_begin(struct http_server *srv, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
        struct request *req;
        const char *cl;
        unsigned status = 0;
        unsigned long long length = 0;

        req = xcalloc(1, sizeof *req);
        if (!req)
                return MHD_NO;
        *con_cls = req;

        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
                char *end;
                errno = 0;
                length = strtoull(cl, &end, 10);
                if (errno || end == cl)
                        length = 0; /* libmicrohttpd has already refused a malformed length */
        }
        if (srv->client_certs) {
                char why[256];

                if (check_client_cert(conn, why, sizeof why) < 0) {
                        char shown[160];

                        log_warning("%s %s: %s", method, printable(url, shown, sizeof shown), why);
                        req->cert_refused = true;
                        http_reply_error(&req->early, MHD_HTTP_FORBIDDEN, "%s", why);
                        return refuse_early(req, conn, method, url, length);
                }
        }
        req->max_body = BODY_MAX_BYTES;
        req->route = route_find(req, srv->test_control, method, url, &status, req->allow, sizeof req->allow);
        if (req->route && req->route->max_body)
                req->max_body = req->route->max_body;
        if (!req->route) {
                if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                        http_reply_error(&req->early, status, "method %s not allowed on %s (allowed: %s)", method, url,
                                         req->allow);
                else
                        http_reply_error(&req->early, status, "no such endpoint: %s", url);
                return refuse_early(req, conn, method, url, length);
        }
        if (req->route->auth && !authorized(conn, srv->token)) {
                http_reply_error(&req->early, MHD_HTTP_UNAUTHORIZED, "missing or invalid bearer token");
                return refuse_early(req, conn, method, url, length);
        }
        if (length > req->max_body) {
                http_reply_error(&req->early, MHD_HTTP_CONTENT_TOO_LARGE, "body: larger than %zu bytes", req->max_body);
                return refuse_early(req, conn, method, url, length);
        }
        return MHD_YES;
}

/* A chunk of body: keep it, or count and discard it for a refused request. */
static enum MHD_Result request_body(struct request *req, const char *data, size_t size)
{
        req->received += size;
        if (req->received > HTTP_DRAIN_MAX)
                return MHD_NO;
        if (req->early.status)
                return MHD_YES;
        if (req->body_len + size > req->max_body) {
                free(req->body);
                req->body = NULL;
                req->body_len = req->body_cap = 0;
                http_reply_error(&req->early, MHD_HTTP_CONTENT_TOO_LARGE, "body: larger than %zu bytes", req->max_body);
                return MHD_YES;
        }
        if (req->body_len + size > req->body_cap) {
                size_t cap = req->body_cap ? req->body_cap : 4096;
                char *p;

                while (cap < req->body_len + size)
                        cap *= 2;
                if (cap > req->max_body)
                        cap = req->max_body;
                p = xrealloc(req->body, cap);
                if (!p) {
                        http_reply_error(&req->early, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
                        return MHD_YES;
                }
                req->body = p;
                req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, data, size);
        req->body_len += size;
        return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
        struct http_server *srv = cls;
        struct request *req = *con_cls;
        struct http_reply reply = {0};
        struct http_call call;
        enum MHD_Result ret;
        char shown[160];

        (void)version;
        if (!req)
                return request_begin(srv, conn, url, method, con_cls);
        if (*upload_data_size > 0) {
                ret = request_body(req, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return ret;
        }
        if (req->held.status) /* resumed after an injected delay */
                return send_reply(conn, method, url, &req->held, NULL);
        if (srv->test_control && !req->injected && !req->cert_refused &&
            inject_queue_take(srv->inject, url, &req->inj)) {
                req->injected = true;
                log_info("%s %s: injecting %s", method, printable(url, shown, sizeof shown),
                         inject_action_to_string(req->inj.action));
                if (req->inj.action == INJECT_STATUS) {
                        http_reply_error(&reply, req->inj.status, "injected");
                        ret = send_reply_ra(conn, method, url, &reply, NULL, req->inj.retry_after);
                        cJSON_Delete(reply.json);
                        free(reply.html);
                        return ret;
                }
                if (req->inj.when == INJECT_BEFORE && req->inj.action == INJECT_DROP) {
                        log_info("%s %s: connection dropped before processing (injected)", method, shown);
                        return MHD_NO;
                }
                if (req->inj.when == INJECT_BEFORE && req->inj.action == INJECT_GARBAGE)
                        return send_garbage(conn, method, url);
        }
        if (req->early.status)
                return send_reply(conn, method, url, &req->early, req->allow);

        memset(&call, 0, sizeof call);
        call.method = method;
        call.path = url;
        memcpy(call.params, req->params, sizeof call.params);
        call.body = req->body;
        call.body_len = req->body_len;
        call.conn = conn;
        call.inject = srv->inject;
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, &call);
        if (call.n_query > HTTP_MAX_QUERY)
                http_reply_error(&reply, MHD_HTTP_BAD_REQUEST, "query: more than %d arguments", HTTP_MAX_QUERY);
        else {
                size_t leaked;

                pthread_mutex_lock(&srv->lock);
                req->route->handler(srv->store, &call, &reply);
                leaked = store_release_statements(srv->store);
                pthread_mutex_unlock(&srv->lock);
                if (leaked)
                        log_err("%s %s: %zu database statement(s) left in use (a bug in the stub)", method,
                                printable(url, shown, sizeof shown), leaked);
        }
        if (reply.status == 0)
                reply.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        if (req->injected && req->inj.when == INJECT_AFTER) {
                switch (req->inj.action) {
                case INJECT_DROP:
                        log_info("%s %s %u: answer dropped after processing (injected)", method,
                                 printable(url, shown, sizeof shown), reply.status);
                        cJSON_Delete(reply.json);
                        free(reply.html);
                        return MHD_NO;
                case INJECT_GARBAGE:
                        cJSON_Delete(reply.json);
                        free(reply.html);
                        return send_garbage(conn, method, url);
                case INJECT_DELAY:
                        req->held = reply;
                        if (delayer_add(&srv->delayer, conn, req->inj.delay_ms) == 0)
                                return MHD_YES;             /* called again when resumed */
                        req->held = (struct http_reply){0}; /* reply keeps the json */
                        break;
                default:
                        break;
                }
        }
        ret = send_reply(conn, method, url, &reply, NULL);
        cJSON_Delete(reply.json);
        free(reply.html);
        return ret;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct request *req = *con_cls;

        (void)cls;
        (void)conn;
        (void)toe;
        if (!req)
                return;
        cJSON_Delete(req->early.json);
        free(req->early.html);
        cJSON_Delete(req->held.json);
        free(req->held.html);
        free(req->body);
        free(req);
        *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
        char buf[512];
        size_t n;

        (void)cls;
        vsnprintf(buf, sizeof buf, fmt, ap);
        n = strlen(buf);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
        log_warning("libmicrohttpd: %s", buf);
}

/* Creates, binds and listens on a socket for addr. Returns the fd and the
 * port, or a negative errno with a message in err. */
static int listen_on(const struct sockaddr *addr, socklen_t addrlen, uint16_t *ret_port, char *err, size_t errsize)
{
        struct sockaddr_storage bound;
        socklen_t len = sizeof bound;
        int fd, one = 1, r;

        fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "socket: %s", strerror(errno));
                return r;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (addr->sa_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, addr, addrlen) < 0 || listen(fd, 64) < 0 || getsockname(fd, (struct sockaddr *)&bound, &len) < 0) {
                r = -errno;
                snprintf(err, errsize, "bind: %s", strerror(errno));
                close(fd);
                return r;
        }
        if (bound.ss_family == AF_INET6)
                *ret_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        else
                *ret_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        return fd;
}

int http_server_start(const struct sockaddr *addr, socklen_t addrlen, const struct http_options *opts,
                      struct store *store, struct http_server **ret, uint16_t *ret_port, char *err, size_t errsize)
{
        struct http_server *srv;
        unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
        struct MHD_OptionItem tls[4] = {{MHD_OPTION_END, 0, NULL}};
        size_t n_tls = 0;
        uint16_t port = 0;
        int fd, r;

        srv = xcalloc(1, sizeof *srv);
        if (!srv) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        pthread_mutex_init(&srv->lock, NULL);
        srv->token = opts->token;
        srv->test_control = opts->test_control;
        srv->store = store;
        if (opts->test_control) {
                flags |= MHD_ALLOW_SUSPEND_RESUME;
                srv->inject = inject_queue_new();
                r = srv->inject ? delayer_start(&srv->delayer) : -ENOMEM;
                if (r < 0) {
                        snprintf(err, errsize, "starting fault injection: %s", strerror(-r));
                        http_server_stop(srv);
                        return r;
                }
        }
        if (opts->tls_cert && opts->tls_key) {
                flags |= MHD_USE_TLS;
                tls[n_tls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)(uintptr_t)opts->tls_cert};
                tls[n_tls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)(uintptr_t)opts->tls_key};
                if (opts->tls_client_ca) {
                        tls[n_tls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0,
                                                               (void *)(uintptr_t)opts->tls_client_ca};
                        srv->client_certs = true;
                }
        }
        fd = listen_on(addr, addrlen, &port, err, errsize);
        if (fd < 0) {
                http_server_stop(srv);
                return fd;
        }
        if (addr->sa_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        /* The logger goes first so that no option's complaint reaches
         * libmicrohttpd's own stderr logger. */
        srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb,
                                       srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, completed_cb,
                                       srv, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
                                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONNECTION_TIMEOUT,
                                       MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
        if (!srv->daemon) {
                snprintf(err, errsize, "libmicrohttpd failed to start%s",
                         opts->tls_cert ? " (is the TLS certificate or key malformed?)" : "");
                close(fd);
                http_server_stop(srv);
                return -EIO;
        }
        *ret = srv;
        *ret_port = port;
        return 0;
}

void http_server_stop(struct http_server *srv)
{
        if (!srv)
                return;
        /* Suspended connections are resumed first: libmicrohttpd must not
         * be stopped with any still suspended. */
        delayer_stop(&srv->delayer);
        if (srv->daemon)
                MHD_stop_daemon(srv->daemon);
        inject_queue_free(srv->inject);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
}

void http_server_locked(struct http_server *srv, void (*fn)(struct store *store))
{
        size_t leaked;

        pthread_mutex_lock(&srv->lock);
        fn(srv->store);
        leaked = store_release_statements(srv->store);
        pthread_mutex_unlock(&srv->lock);
        if (leaked)
                log_err("%zu database statement(s) left in use by a timer (a bug in the stub)", leaked);
}
