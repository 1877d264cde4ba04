/* http: the stub's HTTP server — libmicrohttpd glue, the route table,
 * bearer-token check and the request-body cap.
 *
 * libmicrohttpd runs one internal polling thread; every handler runs on it,
 * one request at a time, under one lock that http_server_locked also takes
 * (the central clock ticks on the main thread), so handlers, the store and
 * the injection queue need no locking of their own. A delayed answer (fault injection) suspends its
 * connection, and one timer thread resumes it: that thread touches nothing
 * but its own list. Handlers
 * see a plain call record (no libmicrohttpd types) and fill a reply with a
 * status and a JSON body; this module owns the wire format: every answer is
 * JSON with Content-Type application/json, every error {"error": "..."}. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

struct store;
struct http_server;
struct inject_queue;

#define HTTP_MAX_PARAMS 4 /* {placeholders} in one route */
#define HTTP_MAX_QUERY 16 /* query arguments in one request; more is a 400 */

struct http_query_arg {
        const char *key;
        const char *value; /* NULL for "?key" without "=" */
};

/* One request as handlers see it. Everything is valid only during the
 * handler call. */
struct http_call {
        const char *method;
        const char *path;
        const char *params[HTTP_MAX_PARAMS]; /* route placeholders, in order */
        const char *body;                    /* not NUL-terminated; NULL when empty */
        size_t body_len;
        size_t n_query;
        struct http_query_arg query[HTTP_MAX_QUERY];
        void *conn;                  /* for http_call_header() */
        struct inject_queue *inject; /* the fault-injection queue (test-control handlers) */
};

struct http_reply {
        unsigned status;
        cJSON *json;                    /* owned by the reply; NULL after an allocation failure */
        char *html;                     /* owned; when set, the answer is this page (text/html) instead of json */
        const char *preference_applied; /* static; when set, sent as Preference-Applied (RFC 7240) */
};

typedef void (*http_handler_fn)(struct store *store, const struct http_call *call, struct http_reply *reply);

/* The value of request header name (case-insensitive), or NULL. */
const char *http_call_header(const struct http_call *call, const char *name);

/* Sets reply to status with json (takes ownership of json). */
void http_reply_json(struct http_reply *reply, unsigned status, cJSON *json);
/* Sets reply to status with an HTML page (takes ownership of html, from malloc). */
void http_reply_html(struct http_reply *reply, unsigned status, char *html);
/* Sets reply to status with {"error": message}. */
void http_reply_error(struct http_reply *reply, unsigned status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* How to serve. Strings are borrowed and valid until http_server_stop. */
struct http_options {
        const char *token;
        bool test_control;    /* serve /api/v1/_test/ (fault injection) */
        const char *tls_cert; /* PEM text; with tls_key: serve HTTPS */
        const char *tls_key;
        const char *tls_client_ca; /* PEM text; set: require client certificates it signed */
};

/* Binds addr, starts serving with store (borrowed, valid until
 * http_server_stop). Returns 0, the server and the bound port (useful
 * when addr asked for port 0); or a negative errno with a message in err. */
int http_server_start(const struct sockaddr *addr, socklen_t addrlen, const struct http_options *opts,
                      struct store *store, struct http_server **ret, uint16_t *ret_port, char *err, size_t errsize);
/* Stops serving (in-flight requests finish) and frees srv; NULL is a no-op. */
void http_server_stop(struct http_server *srv);
/* Calls fn with the server's store while no handler runs (handlers and fn
 * exclude each other): for work on another thread, such as the central
 * clock's tick. */
void http_server_locked(struct http_server *srv, void (*fn)(struct store *store));
