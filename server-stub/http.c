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
 * socket ourselves so a bind failure gets a real errno in the message. */
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

#include <microhttpd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "body.h"
#include "cases.h"

#define HTTP_DRAIN_MAX (64u * 1024 * 1024) /* body bytes read and discarded for a refused request */
#define HTTP_PATH_MAX 1024                 /* longer paths are a 404 */
#define HTTP_CONNECTION_LIMIT 64
#define HTTP_CONNECTION_TIMEOUT 30 /* seconds */

struct http_server {
        struct MHD_Daemon *daemon;
        const char *token;
        struct store *store;
};

struct route {
        const char *method;
        const char *pattern; /* "{name}" matches one non-empty path segment */
        bool auth;
        http_handler_fn handler;
};

static void handle_health(struct store *store, const struct http_call *call, struct http_reply *reply);

/* The whole API. Later endpoints go here, e.g.
 *   POST /api/v1/agents/{id}/checkin
 *   PUT  /api/v1/agents/{id}/snapshots/{request}
 *   GET  /api/v1/agents, /api/v1/inspections */
static const struct route routes[] = {
        {"GET", "/api/v1/health", false, handle_health},
        {"GET", "/api/v1/cases", true, cases_list},
        {"POST", "/api/v1/cases", true, cases_create},
        {"GET", "/api/v1/cases/{id}", true, cases_get},
        {"POST", "/api/v1/cases/{id}/updates", true, cases_update},
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
};

const char *http_call_header(const struct http_call *call, const char *name)
{
        return MHD_lookup_connection_value(call->conn, MHD_HEADER_KIND, name);
}

void http_reply_json(struct http_reply *reply, unsigned status, cJSON *json)
{
        cJSON_Delete(reply->json);
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
static const struct route *route_find(struct request *req, const char *method, const char *path, unsigned *ret_status,
                                      char *allow, size_t allowsize)
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

static enum MHD_Result send_reply(struct MHD_Connection *conn, const char *method, const char *path,
                                  struct http_reply *reply, const char *allow)
{
        static const char oom[] = "{\"error\":\"out of memory\"}";
        struct MHD_Response *resp;
        unsigned status = reply->status;
        char shown[160];
        char *text = reply->json ? cJSON_PrintUnformatted(reply->json) : NULL;
        enum MHD_Result ret;

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
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        if (status == MHD_HTTP_UNAUTHORIZED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED && allow && allow[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        log_info("%s %s %u", method, printable(path, shown, sizeof shown), status);
        return ret;
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
        req->route = route_find(req, method, url, &status, req->allow, sizeof req->allow);
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
        if (length > BODY_MAX_BYTES) {
                http_reply_error(&req->early, MHD_HTTP_CONTENT_TOO_LARGE, "body: larger than %d bytes", BODY_MAX_BYTES);
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
        if (req->body_len + size > BODY_MAX_BYTES) {
                free(req->body);
                req->body = NULL;
                req->body_len = req->body_cap = 0;
                http_reply_error(&req->early, MHD_HTTP_CONTENT_TOO_LARGE, "body: larger than %d bytes", BODY_MAX_BYTES);
                return MHD_YES;
        }
        if (req->body_len + size > req->body_cap) {
                size_t cap = req->body_cap ? req->body_cap : 4096;
                char *p;

                while (cap < req->body_len + size)
                        cap *= 2;
                if (cap > BODY_MAX_BYTES)
                        cap = BODY_MAX_BYTES;
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

        (void)version;
        if (!req)
                return request_begin(srv, conn, url, method, con_cls);
        if (*upload_data_size > 0) {
                ret = request_body(req, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return ret;
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
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, &call);
        if (call.n_query > HTTP_MAX_QUERY)
                http_reply_error(&reply, MHD_HTTP_BAD_REQUEST, "query: more than %d arguments", HTTP_MAX_QUERY);
        else
                req->route->handler(srv->store, &call, &reply);
        if (reply.status == 0)
                reply.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        ret = send_reply(conn, method, url, &reply, NULL);
        cJSON_Delete(reply.json);
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

int http_server_start(const struct sockaddr *addr, socklen_t addrlen, const char *token, struct store *store,
                      struct http_server **ret, uint16_t *ret_port, char *err, size_t errsize)
{
        struct http_server *srv;
        unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
        uint16_t port = 0;
        int fd;

        srv = xcalloc(1, sizeof *srv);
        if (!srv) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        srv->token = token;
        srv->store = store;
        fd = listen_on(addr, addrlen, &port, err, errsize);
        if (fd < 0) {
                free(srv);
                return fd;
        }
        if (addr->sa_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        /* The logger goes first so that no option's complaint reaches
         * libmicrohttpd's own stderr logger. */
        srv->daemon =
                MHD_start_daemon(flags, 0, NULL, NULL, access_cb, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, srv,
                                 MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, srv,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONNECTION_TIMEOUT, MHD_OPTION_END);
        if (!srv->daemon) {
                snprintf(err, errsize, "libmicrohttpd failed to start");
                close(fd);
                free(srv);
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
        if (srv->daemon)
                MHD_stop_daemon(srv->daemon);
        free(srv);
}
