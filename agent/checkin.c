/* checkin: see checkin.h. One check-in at a time; the timer's jitter keeps a
 * fleet of agents started together from checking in in step. */
#include "checkin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "identity.h"
#include "loop.h"
#include "sender.h"

#define FIRST_USEC 1000000 /* the first check-in, after the start */
#define RECENT_MAX 64      /* command ids remembered, so a resent command runs once */

#define ERRORS_MAX 16 /* failed commands waiting to be reported; beyond, the oldest go */

struct cmd_error {
        char id[ANSWER_ID_MAX];
        char type[24];
        char error[200];
};

struct checkin {
        struct loop *loop;
        struct sender *sender;
        const struct identity *id;
        uint64_t interval;
        checkin_command_fn cmd;
        checkin_status_fn status;
        void *userdata;
        struct loop_source *timer;
        char path[400];
        bool in_flight;
        uint64_t seq;
        char recent[RECENT_MAX][ANSWER_ID_MAX];
        size_t n_recent, recent_next;
        char done[RECENT_MAX][ANSWER_ID_MAX]; /* handled, not yet acknowledged to the central side */
        size_t n_done, n_done_sent;
        struct cmd_error errors[ERRORS_MAX]; /* failed, not yet reported */
        size_t n_errors, n_errors_sent;
        int64_t last_ok;
        char last_error[300];
        uint64_t ok, failed, commands, skipped, command_failures;
};

static bool url_safe(const char *s)
{
        return s[0] && strlen(s) < 256 &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == strlen(s);
}

static bool seen(const struct checkin *c, const char *id)
{
        for (size_t i = 0; i < c->n_recent; i++)
                if (strcmp(c->recent[i], id) == 0)
                        return true;
        return false;
}

static void remember(struct checkin *c, const char *id)
{
        snprintf(c->recent[c->recent_next], ANSWER_ID_MAX, "%s", id);
        c->recent_next = (c->recent_next + 1) % RECENT_MAX;
        if (c->n_recent < RECENT_MAX)
                c->n_recent++;
}

/* Forgets id, the last one remembered, so that it runs again when sent again. */
static void forget_last(struct checkin *c, const char *id)
{
        size_t last = (c->recent_next + RECENT_MAX - 1) % RECENT_MAX;

        if (c->n_recent && strcmp(c->recent[last], id) == 0) {
                c->recent[last][0] = '\0';
                c->recent_next = last;
                c->n_recent--;
        }
}

static void acknowledge(struct checkin *c, const char *id)
{
        if (c->n_done < RECENT_MAX)
                snprintf(c->done[c->n_done++], ANSWER_ID_MAX, "%s", id);
}

static void report_error(struct checkin *c, const struct answer_command *cmd, const char *msg)
{
        static const char *const types[] = {"inspect", "maintenance-start", "maintenance-end"};
        struct cmd_error *e;

        if (c->n_errors == ERRORS_MAX) {
                /* the oldest unsent one goes; those in flight stay where they are */
                size_t from = c->n_errors_sent < ERRORS_MAX ? c->n_errors_sent : ERRORS_MAX - 1;
                memmove(&c->errors[from], &c->errors[from + 1], (ERRORS_MAX - from - 1) * sizeof c->errors[0]);
                c->n_errors--;
        }
        e = &c->errors[c->n_errors++];
        snprintf(e->id, sizeof e->id, "%s", cmd->id);
        snprintf(e->type, sizeof e->type, "%s",
                 (size_t)cmd->type < sizeof types / sizeof types[0] ? types[cmd->type] : "unknown");
        snprintf(e->error, sizeof e->error, "%s", msg);
}

static void failed(struct checkin *c, const char *msg)
{
        c->failed++;
        if (strcmp(c->last_error, msg) != 0)
                log_warning("check-in with the central API failed: %s (next in %" PRIu64 " s)", msg,
                            c->interval / 1000000);
        snprintf(c->last_error, sizeof c->last_error, "%s", msg);
}

static void on_done(const struct sender_result *res, void *userdata)
{
        struct checkin *c = userdata;
        struct answer_command cmds[ANSWER_COMMANDS_MAX];
        size_t skipped = 0;
        int n;
        char msg[300], text[200];

        c->in_flight = false;
        if (res->http_status != 200) {
                if (res->http_status == 401)
                        snprintf(msg, sizeof msg, "central API refused the bearer token (HTTP 401); check token_file");
                else if (res->http_status)
                        snprintf(msg, sizeof msg, "HTTP %ld: %s", res->http_status,
                                 answer_error_text(res->body, res->body_len, text, sizeof text));
                else
                        snprintf(msg, sizeof msg, "%s", res->error ? res->error : "no answer");
                failed(c, msg);
                return;
        }
        n = answer_parse_commands(res->body, res->body_len, cmds, ANSWER_COMMANDS_MAX, &skipped);
        if (n < 0) {
                failed(c, "the answer is not a JSON object");
                return;
        }
        if (c->last_error[0])
                log_notice("check-in with the central API works again");
        c->last_error[0] = '\0';
        c->ok++;
        c->last_ok = time_wall_usec();
        /* what the request acknowledged is done with */
        memmove(c->done, c->done + c->n_done_sent, (c->n_done - c->n_done_sent) * sizeof c->done[0]);
        c->n_done -= c->n_done_sent;
        c->n_done_sent = 0;
        memmove(c->errors, c->errors + c->n_errors_sent, (c->n_errors - c->n_errors_sent) * sizeof c->errors[0]);
        c->n_errors -= c->n_errors_sent;
        c->n_errors_sent = 0;
        if (skipped) {
                c->skipped += skipped;
                log_warning("check-in: %zu commands of the central API not understood; ignored", skipped);
        }
        for (int i = 0; i < n; i++) {
                if (cmds[i].id[0] && seen(c, cmds[i].id))
                        continue; /* handled; its acknowledgement is on its way */
                if (cmds[i].id[0])
                        remember(c, cmds[i].id);
                c->commands++;
                text[0] = '\0';
                if (c->cmd(&cmds[i], text, sizeof text, c->userdata) == 0) {
                        if (cmds[i].id[0])
                                acknowledge(c, cmds[i].id);
                } else {
                        c->command_failures++;
                        forget_last(c, cmds[i].id);
                        report_error(c, &cmds[i], text[0] ? text : "failed");
                }
        }
}

static void checkin_send(struct checkin *c)
{
        cJSON *o = cJSON_CreateObject(), *done, *status, *errs = NULL;
        char ts[40], *body = NULL, *idem = NULL;
        int r = -ENOMEM;

        if (!o)
                goto out;
        json_add(o, "agent", identity_to_json(c->id));
        cJSON_AddStringToObject(o, "time", time_format_rfc3339(time_wall_usec(), ts, sizeof ts));
        cJSON_AddNumberToObject(o, "interval_s", (double)(c->interval / 1000000));
        status = c->status ? c->status(c->userdata) : NULL;
        if (!status && !(status = cJSON_CreateObject()))
                goto out;
        if (json_add(o, "status", status) < 0)
                goto out;
        if (c->n_errors && (errs = cJSON_AddArrayToObject(status, "command_errors")))
                for (size_t i = 0; i < c->n_errors; i++) {
                        cJSON *x = cJSON_CreateObject();
                        if (json_add(errs, NULL, x) < 0 || !cJSON_AddStringToObject(x, "id", c->errors[i].id) ||
                            !cJSON_AddStringToObject(x, "type", c->errors[i].type) ||
                            !cJSON_AddStringToObject(x, "error", c->errors[i].error))
                                goto out;
                }
        /* every id in the list or no request: what is sent counts as acknowledged */
        if (!(done = cJSON_AddArrayToObject(o, "done")))
                goto out;
        for (size_t i = 0; i < c->n_done; i++)
                if (json_add(done, NULL, cJSON_CreateString(c->done[i])) < 0)
                        goto out;
        body = cJSON_PrintUnformatted(o);
        idem = xasprintf("checkin-%s-%" PRIu64 "-%" PRId64, c->id->agent_id, ++c->seq, time_wall_usec());
        if (!body || !idem)
                goto out;
        r = sender_request(c->sender, "POST", c->path, body, idem, 0, on_done, c);
        if (r == 0) {
                c->in_flight = true;
                c->n_done_sent = c->n_done;
                c->n_errors_sent = errs ? c->n_errors : 0;
        }
out:
        if (r < 0) {
                char msg[200];
                snprintf(msg, sizeof msg, "cannot start the request: %s", strerror(-r));
                failed(c, msg);
        }
        cJSON_Delete(o);
        free(body);
        free(idem);
}

static uint64_t on_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct checkin *c = userdata;

        (void)s;
        (void)now;
        if (!c->in_flight)
                checkin_send(c);
        return c->interval;
}

int checkin_new(struct loop *loop, struct sender *sender, const struct identity *id, uint64_t interval,
                checkin_command_fn cmd, checkin_status_fn status, void *userdata, struct checkin **ret)
{
        struct checkin *c;
        int r;

        if (!url_safe(id->agent_id))
                return -EINVAL;
        c = xcalloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->sender = sender;
        c->id = id;
        c->interval = interval ? interval : 60000000;
        c->cmd = cmd;
        c->status = status;
        c->userdata = userdata;
        snprintf(c->path, sizeof c->path, "/api/v1/agents/%s/checkin", id->agent_id);
        r = loop_add_timer(loop, FIRST_USEC, c->interval / 10, "checkin", on_timer, c, &c->timer);
        if (r < 0) {
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void checkin_free(struct checkin *c)
{
        if (!c)
                return;
        loop_remove(c->timer);
        free(c);
}

void checkin_set_interval(struct checkin *c, uint64_t interval)
{
        if (interval && interval != c->interval) {
                c->interval = interval;
                loop_timer_set(c->timer, interval);
        }
}

cJSON *checkin_to_json(const struct checkin *c)
{
        cJSON *o = cJSON_CreateObject();
        char ts[40];

        if (!o)
                return NULL;
        cJSON_AddNumberToObject(o, "interval_s", (double)(c->interval / 1000000));
        if (c->last_ok)
                cJSON_AddStringToObject(o, "last_ok", time_format_rfc3339(c->last_ok, ts, sizeof ts));
        else
                cJSON_AddNullToObject(o, "last_ok");
        if (c->last_error[0])
                cJSON_AddStringToObject(o, "last_error", c->last_error);
        cJSON_AddNumberToObject(o, "ok", (double)c->ok);
        cJSON_AddNumberToObject(o, "failed", (double)c->failed);
        cJSON_AddNumberToObject(o, "commands", (double)c->commands);
        cJSON_AddNumberToObject(o, "commands_not_understood", (double)c->skipped);
        cJSON_AddNumberToObject(o, "commands_failed", (double)c->command_failures);
        return o;
}
