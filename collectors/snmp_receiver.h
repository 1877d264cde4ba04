/* snmp_receiver: everything weibao asks of net-snmp to receive notifications.
 *
 * The trap collector owns its sockets and reads datagrams itself (batches,
 * source filtering before any parsing, kernel drop counters). Each datagram
 * is handed to snmp_receiver_feed(), which runs it through net-snmp's own
 * session machinery over an in-memory transport: BER decoding, community and
 * USM processing (authentication, decryption, engine ID discovery and
 * reports), then decodes the notification into an event with names from the
 * MIBs. Inform acknowledgements and USM reports go back through reply_fd.
 * No BER or USM code lives here; only the glue and the mapping to events.
 *
 * net-snmp keeps process-wide state (the MIB tree, the USM user list, the
 * local engine ID), so one receiver exists at a time.
 *
 * The agent does not link net-snmp: this file is built into weibao-snmp.so,
 * which the trap collector loads with dlopen when the first datagram
 * arrives and calls through snmp_receiver_api. Linking net-snmp (and the
 * OpenSSL it brings) costs an idle agent well over a megabyte of memory;
 * an agent that never receives a notification never pays it. Tests and the
 * fuzzer link this file directly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/event.h"

enum trap_verdict {
        TRAP_ACCEPTED,
        TRAP_REJECT_SOURCE,           /* source address outside the allowed networks */
        TRAP_REJECT_COMMUNITY,        /* v1/v2c community not configured */
        TRAP_REJECT_UNKNOWN_USER,     /* v3 user name not configured */
        TRAP_REJECT_AUTH,             /* v3 authentication failed: wrong key */
        TRAP_REJECT_DECRYPT,          /* v3 privacy: the message does not decrypt */
        TRAP_REJECT_ENGINE_ID,        /* v3 engine ID unknown for that user */
        TRAP_REJECT_TIME_WINDOW,      /* v3 message outside the time window */
        TRAP_REJECT_SECURITY_LEVEL,   /* v3 below the configured minimum level */
        TRAP_REJECT_MALFORMED,        /* not a well-formed SNMP message */
        TRAP_REJECT_NOT_NOTIFICATION, /* a get, set or response sent to the trap port */
        TRAP_DISCOVERY,               /* a v3 engine ID probe, answered with a report */
        TRAP_VERDICT_MAX,
};

/* "accepted", "source", "community", "unknown-user", "auth", "decrypt",
 * "engine-id", "time-window", "security-level", "malformed",
 * "not-notification", "discovery". */
const char *trap_verdict_to_string(enum trap_verdict v);
/* Rejections that suggest a sender with wrong credentials (reported as
 * authentication failures), as opposed to garbage or probes. */
bool trap_verdict_is_auth_failure(enum trap_verdict v);

/* What access control needs to know about one decoded notification. */
struct trap_info {
        int version;           /* 1, 2 (v2c) or 3 */
        bool inform;           /* acknowledged when accepted */
        const char *community; /* v1/v2c, else NULL */
        const char *user;      /* v3, else NULL */
        int security_level;    /* v3: 1 noAuthNoPriv, 2 authNoPriv, 3 authPriv; else 0 */
        const char *source;    /* the sender's address without port */
};

/* Decides on one notification whose event is already decoded: returns
 * TRAP_ACCEPTED (the event is then the caller's to emit, during this call)
 * or the reason to reject it. */
typedef enum trap_verdict (*snmp_trap_fn)(const struct trap_info *info, const struct event *e, void *userdata);

struct snmp_receiver_settings {
        /* MIB directories; a module in a later one replaces the same module
         * in an earlier one (net-snmp's rule) */
        const char *const *mib_dirs;
        size_t n_mib_dirs;
        const char *builtin_mib_dir;   /* weibao's own minimal modules, put first; NULL: none */
        const char *engine_boots_file; /* counts restarts for USM; NULL: boots stay 1 */
        const char *engine_id;         /* "0x..." hex, or text used after net-snmp's prefix; NULL: derive */
};

struct snmp_receiver;

/* Initialises net-snmp (once per process; MIBs are re-read when the
 * directories change), loads the MIBs and sets up the local engine. Returns
 * 0 and a receiver, or negative errno with a message in err. */
int snmp_receiver_new(const struct snmp_receiver_settings *s, snmp_trap_fn fn, void *userdata, char *err,
                      size_t errsize, struct snmp_receiver **ret);
/* Removes the receiver's USM users and frees it. NULL does nothing. */
void snmp_receiver_free(struct snmp_receiver *r);

/* Adds a USM user from one line in net-snmp's createUser syntax (without the
 * keyword): "[-e ENGINEID] NAME (MD5|SHA|SHA-224|SHA-256|SHA-384|SHA-512)
 * AUTHPASS [(DES|AES|AES-192|AES-256) [PRIVPASS]]". Returns 0, or -EINVAL with
 * net-snmp's complaint in err. */
int snmp_receiver_add_user(struct snmp_receiver *r, const char *line, char *err, size_t errsize);
/* The lowest v3 security level accepted (default 2, authNoPriv). */
void snmp_receiver_set_min_security(struct snmp_receiver *r, int level);

/* Processes one datagram received from `from`. Replies (inform
 * acknowledgements, USM reports) are sent on reply_fd, or dropped when it is
 * -1 (fuzzing). Returns what became of it. */
enum trap_verdict snmp_receiver_feed(struct snmp_receiver *r, const void *buf, size_t len, const struct sockaddr *from,
                                     socklen_t fromlen, int reply_fd);

/* The local engine ID as hex ("80001f8804..."), for senders of v3 informs. */
const char *snmp_receiver_engine_id(const struct snmp_receiver *r);
/* Replies that could not be sent (inform acknowledgements and reports). */
uint64_t snmp_receiver_reply_failures(const struct snmp_receiver *r);

/* The module's entry points, for the agent to find with dlsym (symbol
 * SNMP_RECEIVER_API_SYMBOL in weibao-snmp.so). */
struct snmp_receiver_api {
        int (*new)(const struct snmp_receiver_settings *s, snmp_trap_fn fn, void *userdata, char *err, size_t errsize,
                   struct snmp_receiver **ret);
        void (*free)(struct snmp_receiver *r);
        int (*add_user)(struct snmp_receiver *r, const char *line, char *err, size_t errsize);
        void (*set_min_security)(struct snmp_receiver *r, int level);
        enum trap_verdict (*feed)(struct snmp_receiver *r, const void *buf, size_t len, const struct sockaddr *from,
                                  socklen_t fromlen, int reply_fd);
        const char *(*engine_id)(const struct snmp_receiver *r);
        uint64_t (*reply_failures)(const struct snmp_receiver *r);
};
#define SNMP_RECEIVER_API_SYMBOL "snmp_receiver_api"
extern const struct snmp_receiver_api snmp_receiver_api;
