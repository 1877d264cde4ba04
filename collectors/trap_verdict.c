/* trap_verdict: names of what became of a datagram (snmp_receiver.h); in
 * the agent itself, which counts verdicts before the SNMP module is loaded. */
#include "snmp_receiver.h"

static const char *const verdict_names[TRAP_VERDICT_MAX] = {
        [TRAP_ACCEPTED] = "accepted",
        [TRAP_REJECT_SOURCE] = "source",
        [TRAP_REJECT_COMMUNITY] = "community",
        [TRAP_REJECT_UNKNOWN_USER] = "unknown-user",
        [TRAP_REJECT_AUTH] = "auth",
        [TRAP_REJECT_DECRYPT] = "decrypt",
        [TRAP_REJECT_ENGINE_ID] = "engine-id",
        [TRAP_REJECT_TIME_WINDOW] = "time-window",
        [TRAP_REJECT_SECURITY_LEVEL] = "security-level",
        [TRAP_REJECT_MALFORMED] = "malformed",
        [TRAP_REJECT_NOT_NOTIFICATION] = "not-notification",
        [TRAP_DISCOVERY] = "discovery",
};

const char *trap_verdict_to_string(enum trap_verdict v)
{
        return (unsigned)v < TRAP_VERDICT_MAX ? verdict_names[v] : "unknown";
}

bool trap_verdict_is_auth_failure(enum trap_verdict v)
{
        switch (v) {
        case TRAP_REJECT_COMMUNITY:
        case TRAP_REJECT_UNKNOWN_USER:
        case TRAP_REJECT_AUTH:
        case TRAP_REJECT_DECRYPT:
        case TRAP_REJECT_ENGINE_ID:
        case TRAP_REJECT_SECURITY_LEVEL:
                return true;
        default:
                return false;
        }
}
