/* Unit tests for agent/checkin.c: a command is acknowledged in the next
 * check-in's "done" only when it succeeded; a failed one is reported in the
 * next check-in's status.command_errors and runs again when the central side
 * sends it again. The sender is replaced by a fake that keeps the request and
 * its callback, so the test plays the central side; the loop runs for real
 * (the check-in timer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/checkin.h"
#include "../../agent/identity.h"
#include "../../agent/loop.h"
#include "../../agent/sender.h"

/* ---- the fake sender: one request at a time ---- */

static char *sent_body;
static sender_done_fn sent_fn;
static void *sent_ud;

int sender_request(struct sender *s, const char *method, const char *path, const char *body,
                   const char *idempotency_key, unsigned flags, sender_done_fn fn, void *userdata)
{
        (void)s;
        (void)idempotency_key;
        assert_int_equal(flags, 0); /* a check-in's answer carries commands: never minimal */
        assert_string_equal(method, "POST");
        assert_string_equal(path, "/api/v1/agents/host-1/checkin");
        free(sent_body);
        sent_body = strdup(body);
        sent_fn = fn;
        sent_ud = userdata;
        return 0;
}

/* ---- the command handler: ids listed in failing fail ---- */

static const char *failing = "";
static int runs[16];

static int on_command(const struct answer_command *c, char *err, size_t errsize, void *userdata)
{
        int id = atoi(c->id);

        (void)userdata;
        assert_true(id > 0 && id < 16);
        runs[id]++;
        if (strstr(failing, c->id)) {
                snprintf(err, errsize, "the outbox is full");
                return -ENOBUFS;
        }
        return 0;
}

/* Runs the loop until the next check-in is sent; returns its body, parsed. */
static cJSON *next_checkin(struct loop *loop)
{
        cJSON *b;

        free(sent_body);
        sent_body = NULL;
        for (int i = 0; i < 40 && !sent_body; i++)
                assert_true(loop_run_once(loop, 100000) >= 0);
        assert_non_null(sent_body);
        b = cJSON_Parse(sent_body);
        assert_non_null(b);
        return b;
}

static void answer(const char *body)
{
        struct sender_result res = {.http_status = 200, .body = body, .body_len = strlen(body)};

        sent_fn(&res, sent_ud);
}

static int count_done(const cJSON *b, const char *id)
{
        const cJSON *x;
        int n = 0;

        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(b, "done")) n += strcmp(x->valuestring, id) == 0;
        return n;
}

static void test_only_successful_commands_are_acknowledged(void **state)
{
        struct loop *loop;
        struct checkin *c;
        char id_text[] = "host-1", empty[] = "";
        struct identity id = {.agent_id = id_text,
                              .hostname = id_text,
                              .machine_id = empty,
                              .os = empty,
                              .kernel = empty,
                              .version = empty,
                              .hw_vendor = empty,
                              .hw_model = empty,
                              .cpu_model = empty,
                              .cpus = 1};
        const char *cmds = "{\"commands\":[{\"id\":\"7\",\"type\":\"inspect\",\"request\":\"12\"},"
                           "{\"id\":\"8\",\"type\":\"inspect\",\"request\":\"13\"}]}";
        cJSON *b;

        (void)state;
        assert_int_equal(loop_new(&loop), 0);
        assert_int_equal(checkin_new(loop, NULL, &id, 200000, on_command, NULL, NULL, &c), 0);
        cJSON_Delete(next_checkin(loop));
        failing = "7";
        answer(cmds);
        assert_int_equal(runs[7], 1);
        assert_int_equal(runs[8], 1);

        /* 8 is acknowledged, 7 is not: its error is reported instead */
        b = next_checkin(loop);
        assert_int_equal(count_done(b, "8"), 1);
        assert_int_equal(count_done(b, "7"), 0);
        const cJSON *errs =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "status"), "command_errors");
        assert_int_equal(cJSON_GetArraySize(errs), 1);
        const cJSON *e = cJSON_GetArrayItem(errs, 0);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "id")->valuestring, "7");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "type")->valuestring, "inspect");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "error")->valuestring, "the outbox is full");
        cJSON_Delete(b);

        /* the central side still sends both: 7 runs again (and works now), 8 does not */
        failing = "";
        answer(cmds);
        assert_int_equal(runs[7], 2);
        assert_int_equal(runs[8], 1);
        b = next_checkin(loop);
        assert_int_equal(count_done(b, "7"), 1);
        assert_int_equal(count_done(b, "8"), 0); /* acknowledged by the answer before */
        assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "status"), "command_errors"));
        cJSON_Delete(b);
        answer("{\"commands\":[]}");

        cJSON *j = checkin_to_json(c);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "commands_failed")->valueint, 1);
        cJSON_Delete(j);
        checkin_free(c);
        loop_free(loop);
        free(sent_body);
        sent_body = NULL;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_only_successful_commands_are_acknowledged),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
