/* libFuzzer target: the agent's reading of central API answers
 * (agent/answer.c: case ids, error texts, check-in commands) and of their Retry-After header
 * (agent/retry_after.c). Any byte string must parse or be refused without crash, leak or unbounded output. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/answer.c"
#include "../../agent/retry_after.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *id = NULL, buf[64];

        if (answer_parse_case_id((const char *)data, size, &id) == 0) {
                if (strlen(id) == 0 || strlen(id) >= ANSWER_ID_MAX)
                        abort();
                free(id);
        }
        answer_error_text((const char *)data, size, buf, sizeof buf);
        struct answer_command cmds[ANSWER_COMMANDS_MAX];
        size_t skipped = 0;
        int n = answer_parse_commands((const char *)data, size, cmds, ANSWER_COMMANDS_MAX, &skipped);
        if (n > ANSWER_COMMANDS_MAX)
                abort();
        for (int i = 0; i < n; i++) {
                if (cmds[i].type >= ANSWER_COMMAND_TYPE_MAX || strlen(cmds[i].request) >= ANSWER_ID_MAX ||
                    strlen(cmds[i].reason) > ANSWER_REASON_MAX || strchr(cmds[i].request, '/'))
                        abort();
                if (cmds[i].type == ANSWER_COMMAND_INSPECT && (!cmds[i].request[0] || !cmds[i].seconds))
                        abort();
        }
        if (strlen(buf) >= sizeof buf)
                abort();
        {
                uint64_t usec = UINT64_MAX;

                if (retry_after_parse((const char *)data, size, (time_t)1764633600, &usec) == 0 &&
                    usec > (uint64_t)RETRY_AFTER_MAX_SEC * 1000000)
                        abort();
        }
        return 0;
}
