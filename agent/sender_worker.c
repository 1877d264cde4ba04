/* weibao-sender: the agent's HTTP worker, the only program that links libcurl.
 *
 * Why a separate process: libcurl and the 30-odd libraries it pulls in
 * (OpenSSL, GnuTLS, Kerberos, LDAP, ...) cost about 6 MiB of PSS merely by
 * being mapped and relocated, four times what the whole idle agent may cost.
 * The agent starts this worker when it has something to send and lets it exit
 * when nothing has been sent for a while (agent/sender.c).
 *
 * Protocol, newline-delimited JSON (cJSON never emits a raw newline):
 *   stdin  {"type":"config","base_url":..,"token":..,"timeout_ms":..,
 *           "ca_file":..,"client_cert":..,"client_key":..}   (the last three optional)
 *   stdin  {"type":"request","id":N,"method":"POST","path":..,"body":..,"idempotency_key":..}
 *   stdout {"id":N,"status":201,"body":"...","retry_after_usec":N}  or  {"id":N,"status":0,"error":"..."}
 * retry_after_usec is the answer's Retry-After (agent/retry_after.h), 0 when
 * absent or unreadable.
 *
 * TLS: certificate and host name verification stay at libcurl's defaults
 * (on); nothing here turns them off. ca_file replaces the system CA bundle,
 * client_cert/client_key present a client certificate (mTLS).
 * Requests run concurrently on one curl multi handle. EOF on stdin ends the
 * worker at once; requests still in flight are abandoned (the agent retries). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../lib/xalloc.h"
#include "identity.h"
#include "retry_after.h"

#define MIB (1024 * 1024)
#define LINE_MAX_MIB 40 /* a request line: a 16 MiB snapshot upload, escaped */
#define LINE_MAX_BYTES (LINE_MAX_MIB * MIB)
#define ANSWER_MAX_MIB 1
#define ANSWER_MAX (ANSWER_MAX_MIB * MIB)
#define STR(x) #x
#define XSTR(x) STR(x)

struct job {
        double id;
        CURL *easy;
        struct curl_slist *headers;
        char *body;
        char *answer;
        size_t answer_len;
        bool too_big;
        char errbuf[CURL_ERROR_SIZE];
};

static char *base_url, *auth_header, *ca_file, *client_cert, *client_key;
static long timeout_ms = 10000;

static void fail(const char *what)
{
        fprintf(stderr, "weibao-sender: %s\n", what);
        exit(1);
}

/* Writes an answer line whole. stdout is the same socket as stdin
 * (agent/sender.c dup2()s one end of a socketpair to both), so it shares
 * stdin's O_NONBLOCK: EAGAIN means the agent has not read for a while (a
 * burst of answers, or its loop sits in an fsync), not that it went away;
 * wait for room. Transfers stall meanwhile, which is the back-pressure we
 * want: the alternative, an output queue, would grow without bound while
 * the agent does not read. The agent going away shows as an error or EOF. */
static void write_all(const char *s, size_t n)
{
        while (n > 0) {
                ssize_t w = write(1, s, n);
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        struct pollfd p = {.fd = 1, .events = POLLOUT};
                        if (poll(&p, 1, -1) < 0 && errno != EINTR)
                                exit(0);
                        continue;
                }
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        exit(0); /* the agent went away */
                s += w;
                n -= (size_t)w;
        }
}

static void answer(double id, long status, const char *body, const char *error, uint64_t retry_after_usec)
{
        cJSON *o = cJSON_CreateObject();
        char *s;

        if (!o)
                fail("out of memory");
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddNumberToObject(o, "status", (double)status);
        cJSON_AddStringToObject(o, "body", body ? body : "");
        if (error)
                cJSON_AddStringToObject(o, "error", error);
        if (retry_after_usec)
                cJSON_AddNumberToObject(o, "retry_after_usec", (double)retry_after_usec);
        s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s)
                fail("out of memory");
        write_all(s, strlen(s));
        write_all("\n", 1);
        free(s);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct job *j = userdata;
        size_t n = size * nmemb;
        char *p;

        if (j->answer_len + n > ANSWER_MAX) {
                j->too_big = true;
                return 0;
        }
        p = xrealloc(j->answer, j->answer_len + n + 1);
        if (!p)
                return 0;
        j->answer = p;
        memcpy(j->answer + j->answer_len, data, n);
        j->answer_len += n;
        j->answer[j->answer_len] = '\0';
        return n;
}

static void job_free(struct job *j)
{
        if (!j)
                return;
        if (j->easy)
                curl_easy_cleanup(j->easy);
        curl_slist_free_all(j->headers);
        free(j->body);
        free(j->answer);
        free(j);
}

static const char *jstr(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void start_job(CURLM *multi, const cJSON *o)
{
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(o, "id");
        const char *method = jstr(o, "method"), *path = jstr(o, "path"), *body = jstr(o, "body");
        const char *idem = jstr(o, "idempotency_key");
        bool minimal = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "minimal"));
        struct job *j;
        char *url, *idem_header = NULL;
        struct curl_slist *h;

        if (!cJSON_IsNumber(idv))
                return;
        if (!base_url || !method || !path) {
                answer(idv->valuedouble, 0, NULL, "request without configuration, method or path", 0);
                return;
        }
        j = xcalloc(1, sizeof *j);
        url = xasprintf("%s%s", base_url, path);
        if (idem)
                idem_header = xasprintf("Idempotency-Key: %s", idem);
        if (!j || !url || (idem && !idem_header))
                fail("out of memory");
        j->id = idv->valuedouble;
        j->body = xstrdup(body ? body : "");
        j->easy = curl_easy_init();
        h = curl_slist_append(NULL, "Content-Type: application/json");
        if (h)
                j->headers = h;
        if (!j->body || !j->easy || !h || !(h = curl_slist_append(j->headers, auth_header)) ||
            (idem_header && !(h = curl_slist_append(j->headers, idem_header))) ||
            (minimal && !(h = curl_slist_append(j->headers, "Prefer: return=minimal"))) ||
            /* libcurl adds "Expect: 100-continue" to larger bodies: a round trip we do not need */
            !(h = curl_slist_append(j->headers, "Expect:")))
                fail("out of memory");
        curl_easy_setopt(j->easy, CURLOPT_URL, url);
        curl_easy_setopt(j->easy, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
        curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
        curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
        curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->errbuf);
        curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
        curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(j->easy, CURLOPT_USERAGENT, "weibao-agent/" WEIBAO_VERSION);
        curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
        if (ca_file)
                curl_easy_setopt(j->easy, CURLOPT_CAINFO, ca_file);
        if (client_cert && client_key) {
                curl_easy_setopt(j->easy, CURLOPT_SSLCERT, client_cert);
                curl_easy_setopt(j->easy, CURLOPT_SSLKEY, client_key);
        }
        free(url);
        free(idem_header);
        if (curl_multi_add_handle(multi, j->easy) != CURLM_OK) {
                answer(j->id, 0, NULL, "cannot start the transfer", 0);
                job_free(j);
        }
}

/* Replaces *dst with a copy of the optional string member k of o. */
static void set_optional(char **dst, const cJSON *o, const char *k)
{
        const char *v = jstr(o, k);

        free(*dst);
        *dst = NULL;
        if (v && *v && !(*dst = xstrdup(v)))
                fail("out of memory");
}

static void configure(const cJSON *o)
{
        const char *url = jstr(o, "base_url"), *token = jstr(o, "token");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timeout_ms");
        size_t n;

        if (!url || !token)
                return;
        free(base_url);
        free(auth_header);
        base_url = xstrdup(url);
        auth_header = xasprintf("Authorization: Bearer %s", token);
        if (!base_url || !auth_header)
                fail("out of memory");
        set_optional(&ca_file, o, "ca_file");
        set_optional(&client_cert, o, "client_cert");
        set_optional(&client_key, o, "client_key");
        n = strlen(base_url);
        while (n > 0 && base_url[n - 1] == '/')
                base_url[--n] = '\0';
        if (cJSON_IsNumber(t) && t->valuedouble >= 1 && t->valuedouble <= 3600000)
                timeout_ms = (long)t->valuedouble;
}

static void handle_line(CURLM *multi, const char *line, size_t len)
{
        cJSON *o = cJSON_ParseWithLength(line, len);
        const char *type = o ? jstr(o, "type") : NULL;

        if (!type)
                fail("malformed request line from the agent");
        if (strcmp(type, "config") == 0)
                configure(o);
        else if (strcmp(type, "request") == 0)
                start_job(multi, o);
        cJSON_Delete(o);
}

/* The delay the answer's Retry-After asks for, 0 when it has none or an
 * unreadable one. The last header of that name counts: libcurl keeps the
 * headers of the final answer after redirects and 1xx responses. */
static uint64_t retry_after_of(CURL *easy)
{
        struct curl_header *h = NULL;
        uint64_t usec = 0;

        if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h || !h->value)
                return 0;
        if (retry_after_parse(h->value, strlen(h->value), time(NULL), &usec) < 0)
                return 0;
        return usec;
}

static void finish_jobs(CURLM *multi)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(multi, &left))) {
                struct job *j;
                long status = 0;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
                curl_multi_remove_handle(multi, j->easy);
                if (msg->data.result == CURLE_OK) {
                        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
                        answer(j->id, status, j->answer, NULL, retry_after_of(j->easy));
                } else {
                        answer(j->id, 0, NULL,
                               j->too_big     ? "answer larger than " XSTR(ANSWER_MAX_MIB) " MiB"
                               : j->errbuf[0] ? j->errbuf
                                              : curl_easy_strerror(msg->data.result),
                               0);
                }
                job_free(j);
        }
}

int main(void)
{
        CURLM *multi;
        char *buf;
        size_t len = 0;
        int running = 0;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(multi = curl_multi_init()))
                fail("cannot initialise libcurl");
        buf = xmalloc(LINE_MAX_BYTES + 1);
        if (!buf)
                fail("out of memory");
        if (fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK) < 0)
                fail("cannot make stdin non-blocking");
        for (;;) {
                struct curl_waitfd in = {.fd = 0, .events = CURL_WAIT_POLLIN};
                ssize_t n;
                char *nl;

                curl_multi_poll(multi, &in, 1, 1000, NULL);
                n = read(0, buf + len, LINE_MAX_BYTES - len);
                if (n == 0)
                        break; /* the agent closed us: done */
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        break;
                if (n > 0)
                        len += (size_t)n;
                while ((nl = memchr(buf, '\n', len))) {
                        size_t l = (size_t)(nl - buf);
                        handle_line(multi, buf, l);
                        memmove(buf, nl + 1, len - l - 1);
                        len -= l + 1;
                }
                if (len == LINE_MAX_BYTES)
                        fail("request line longer than " XSTR(LINE_MAX_MIB) " MiB");
                curl_multi_perform(multi, &running);
                finish_jobs(multi);
        }
        free(buf);
        return 0;
}
