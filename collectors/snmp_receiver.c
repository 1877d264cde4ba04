/* snmp_receiver: see snmp_receiver.h.
 *
 * How a datagram travels: snmp_receiver_feed() parks it in r->cur and asks
 * net-snmp to read the session; the session's transport (ours) hands the
 * parked bytes to the library as if they came off a socket. net-snmp parses
 * and authenticates, then calls on_pdu() for a notification, or fails. A
 * failure is attributed by which of net-snmp's statistics counters moved
 * during the call (they are the library's own reason codes, e.g.
 * usmStatsWrongDigests), helped by the message fields post_parse() saw.
 *
 * Event shape (source "snmptrap"): name = the trap's label ("linkDown"),
 * object = the sender's address; attributes trap ("IF-MIB::linkDown"),
 * trap_oid ("1.3.6.1.6.3.1.1.5.3"), source_addr, agent_addr (v1 agent-addr,
 * else the source), version ("1", "2c", "3"), community or user and
 * security_level, pdu ("trap" or "inform"), and each varbind twice:
 * varbind[MODULE::object] without the instance (enumerations by label) and
 * varbind[numeric OID with instance] (raw numbers). v1 traps are first
 * mapped to their SNMPv2 form (RFC 3584 section 3.1). */
#include "snmp_receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>
#include <net-snmp/library/large_fd_set.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

#define ARENA_SIZE 16384 /* all strings of one decoded trap */
#define VALUE_MAX 512    /* longest varbind value kept, in bytes */
#define NAME_MAX_LEN 256 /* longest OID name kept */
#define MIB_ERRORS_LOGGED 10

/* net-snmp's counters, in the order their moves are checked: the first
 * that moved names the reason. */
static const struct {
        int stat;
        enum trap_verdict verdict;
} stat_reasons[] = {
        {STAT_USMSTATSWRONGDIGESTS, TRAP_REJECT_AUTH},
        {STAT_USMSTATSDECRYPTIONERRORS, TRAP_REJECT_DECRYPT},
        {STAT_USMSTATSUNKNOWNUSERNAMES, TRAP_REJECT_UNKNOWN_USER},
        {STAT_USMSTATSUNSUPPORTEDSECLEVELS, TRAP_REJECT_SECURITY_LEVEL},
        {STAT_USMSTATSNOTINTIMEWINDOWS, TRAP_REJECT_TIME_WINDOW},
        {STAT_USMSTATSUNKNOWNENGINEIDS, TRAP_REJECT_ENGINE_ID},
        {STAT_SNMPUNKNOWNPDUHANDLERS, TRAP_REJECT_NOT_NOTIFICATION},
        {STAT_SNMPINASNPARSEERRS, TRAP_REJECT_MALFORMED},
        {STAT_SNMPINBADVERSIONS, TRAP_REJECT_MALFORMED},
        {STAT_SNMPUNKNOWNSECURITYMODELS, TRAP_REJECT_MALFORMED},
        {STAT_SNMPINVALIDMSGS, TRAP_REJECT_MALFORMED},
};
#define N_STAT_REASONS (sizeof stat_reasons / sizeof stat_reasons[0])

/* Where a reply to the current datagram goes; net-snmp keeps it with the PDU
 * as the transport's opaque address and frees it with free(). */
struct reply_addr {
        struct sockaddr_storage addr;
        socklen_t len;
        int fd;
};

struct snmp_receiver {
        snmp_trap_fn fn;
        void *userdata;
        void *sessp;  /* net-snmp single-session handle */
        int dummy_fd; /* the transport's "socket": net-snmp only tests it in an fd set */
        netsnmp_large_fd_set fdset;
        int min_security;
        char engine_id_hex[80];
        uint64_t reply_failures;
        /* USM users this receiver added (name + engine ID), removed on free */
        struct usmUser **users;
        size_t n_users;

        /* the datagram being fed */
        struct {
                const void *buf;
                size_t len;
                struct reply_addr to;
                char source[INET6_ADDRSTRLEN];
        } cur;
        int verdict; /* set by on_pdu; -1 when it was not called */
        /* what post_parse saw of a message that failed */
        bool post_seen;
        long post_version;
        int post_result, post_level;
        size_t post_engine_id_len;
        u_char post_engine_id[32];

        char arena[ARENA_SIZE];
        size_t arena_used;
};

/* ---- logging bridge and process-wide library state ---- */

static char *lib_mib_path; /* the MIB search path the tree was read with */
static bool lib_ready;
static char *capture; /* while non-NULL, net-snmp's messages go here */
static size_t capture_size, capture_used;
static unsigned mib_errors;
static bool in_feed; /* per-datagram complaints are counted, not logged */

static int on_netsnmp_log(int major, int minor, void *serverarg, void *clientarg)
{
        const struct snmp_log_message *m = serverarg;
        size_t n;

        (void)major;
        (void)minor;
        (void)clientarg;
        if (!m || !m->msg)
                return 0;
        n = strlen(m->msg);
        while (n > 0 && (m->msg[n - 1] == '\n' || m->msg[n - 1] == '\r'))
                n--;
        if (n == 0)
                return 0;
        if (capture) {
                if (capture_used + 3 < capture_size) {
                        int w = snprintf(capture + capture_used, capture_size - capture_used, "%s%.*s",
                                         capture_used ? "; " : "", (int)n, m->msg);
                        if (w > 0)
                                capture_used += (size_t)w < capture_size - capture_used
                                                        ? (size_t)w
                                                        : capture_size - capture_used - 1;
                }
                return 0;
        }
        if (in_feed) {
                log_debug("snmptrap: net-snmp: %.*s", (int)n, m->msg);
                return 0;
        }
        if (m->priority <= LOG_WARNING && mib_errors < MIB_ERRORS_LOGGED)
                log_warning("snmptrap: net-snmp: %.*s", (int)n, m->msg);
        else
                log_debug("snmptrap: net-snmp: %.*s", (int)n, m->msg);
        if (m->priority <= LOG_WARNING)
                mib_errors++;
        return 0;
}

static void capture_begin(char *buf, size_t size)
{
        buf[0] = '\0';
        capture = buf;
        capture_size = size;
        capture_used = 0;
}

static void capture_end(void)
{
        capture = NULL;
}

/* net-snmp takes each module from the last directory in the path that
 * has it, so weibao's own subset goes first and everything configured can
 * replace it. */
static char *mib_path_join(const struct snmp_receiver_settings *s)
{
        size_t len = 1;
        char *p;

        for (size_t i = 0; i < s->n_mib_dirs; i++)
                len += strlen(s->mib_dirs[i]) + 1;
        if (s->builtin_mib_dir)
                len += strlen(s->builtin_mib_dir) + 1;
        p = xmalloc(len);
        if (!p)
                return NULL;
        p[0] = '\0';
        if (s->builtin_mib_dir)
                strcat(p, s->builtin_mib_dir);
        for (size_t i = 0; i < s->n_mib_dirs; i++) {
                if (p[0])
                        strcat(p, ":");
                strcat(p, s->mib_dirs[i]);
        }
        return p;
}

/* Reads every module of every directory in path (net-snmp: MIBS=ALL). */
static void load_mibs(const char *path)
{
        mib_errors = 0;
        netsnmp_set_mib_directory(path);
        init_mib();
        if (mib_errors > MIB_ERRORS_LOGGED)
                log_warning("snmptrap: %u more MIB messages (log level debug shows them)",
                            mib_errors - MIB_ERRORS_LOGGED);
}

static int lib_init(const char *mib_path, const char *persistent_dir)
{
        if (!lib_ready) {
                /* Nothing from /etc/snmp or ~/.snmp: the agent's config is the whole truth. */
                netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_READ_CONFIGS, 1);
                netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_PERSIST_STATE, 1);
                netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_LOAD, 1);
                netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_SAVE, 1);
                netsnmp_ds_set_int(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_MIB_WARNINGS, 0);
                if (persistent_dir)
                        netsnmp_ds_set_string(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_PERSISTENT_DIR, persistent_dir);
                snmp_disable_log();
                snmp_enable_calllog();
                snmp_register_callback(SNMP_CALLBACK_LIBRARY, SNMP_CALLBACK_LOGGING, on_netsnmp_log, NULL);
                /* init_snmp reads the modules named by $MIBS; ALL means every
                 * module in the search path, which is what a trap receiver wants. */
                setenv("MIBS", "ALL", 1);
                netsnmp_set_mib_directory(mib_path);
                mib_errors = 0;
                init_snmp("weibao-agent");
                lib_ready = true;
        } else if (!lib_mib_path || strcmp(lib_mib_path, mib_path) != 0) {
                shutdown_mib();
                load_mibs(mib_path);
        }
        free(lib_mib_path);
        lib_mib_path = xstrdup(mib_path);
        return lib_mib_path ? 0 : -ENOMEM;
}

/* ---- the in-memory transport ---- */

static struct snmp_receiver *transport_owner(netsnmp_transport *t)
{
        return t && t->data ? *(struct snmp_receiver **)t->data : NULL;
}

static int t_recv(netsnmp_transport *t, void *buf, int size, void **opaque, int *olength)
{
        struct snmp_receiver *r = transport_owner(t);
        struct reply_addr *a;
        size_t n;

        *opaque = NULL;
        *olength = 0;
        if (!r || !r->cur.buf || size <= 0)
                return -1;
        n = r->cur.len < (size_t)size ? r->cur.len : (size_t)size;
        memcpy(buf, r->cur.buf, n);
        r->cur.buf = NULL; /* one datagram per feed */
        a = malloc(sizeof *a);
        if (a) {
                *a = r->cur.to;
                *opaque = a;
                *olength = (int)sizeof *a;
        }
        return (int)n;
}

static int t_send(netsnmp_transport *t, const void *buf, int size, void **opaque, int *olength)
{
        struct snmp_receiver *r = transport_owner(t);
        const struct reply_addr *a = opaque ? *opaque : NULL;
        ssize_t n;

        if (!a || !olength || *olength != (int)sizeof *a || size < 0)
                return -1;
        if (a->fd < 0)
                return size; /* fuzzing: replies go nowhere */
        n = sendto(a->fd, buf, (size_t)size, MSG_DONTWAIT, (const struct sockaddr *)&a->addr, a->len);
        if (n < 0 && r)
                r->reply_failures++;
        return n < 0 ? -1 : (int)n;
}

static int t_close(netsnmp_transport *t)
{
        (void)t;
        return 0; /* the fd is the receiver's */
}

static void format_addr(const struct sockaddr *sa, char *buf, size_t size)
{
        buf[0] = '\0';
        if (sa->sa_family == AF_INET) {
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)size);
        } else if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a6))
                        inet_ntop(AF_INET, &a6->s6_addr[12], buf, (socklen_t)size);
                else
                        inet_ntop(AF_INET6, a6, buf, (socklen_t)size);
        } else {
                snprintf(buf, size, "unknown");
        }
}

static char *t_fmtaddr(netsnmp_transport *t, const void *data, int len)
{
        const struct reply_addr *a = data;
        char host[INET6_ADDRSTRLEN];

        (void)t;
        if (!a || len != (int)sizeof *a)
                return strdup("UDP: unknown");
        format_addr((const struct sockaddr *)&a->addr, host, sizeof host);
        return xasprintf("UDP: [%s]", host);
}

/* ---- decoding ---- */

static const char *arena_put(struct snmp_receiver *r, const char *s, size_t n)
{
        char *p;

        if (r->arena_used + n + 1 > sizeof r->arena)
                return NULL;
        p = r->arena + r->arena_used;
        memcpy(p, s, n);
        p[n] = '\0';
        r->arena_used += n + 1;
        return p;
}

/* Strings of a pieces joined into buf, cut to size as snprintf cuts;
 * returns the length the whole would have. Every trap names a dozen OIDs
 * and keys: printf's machinery was half of the agent's time per trap. */
static size_t join3(char *buf, size_t size, const char *a, const char *b, const char *c)
{
        const char *parts[3] = {a, b, c};
        size_t used = 0, total = 0;

        for (int i = 0; i < 3; i++) {
                size_t n = strlen(parts[i]);
                if (used + 1 < size) {
                        size_t k = n < size - 1 - used ? n : size - 1 - used;
                        memcpy(buf + used, parts[i], k);
                        used += k;
                }
                total += n;
        }
        if (size)
                buf[used] = '\0';
        return total;
}

/* "1.3.6.1..." into buf; a sub-identifier that does not fit ends it there. */
/* "varbind[NAME]" in the arena, or NULL when it is full. */
static const char *arena_key(struct snmp_receiver *r, const char *name)
{
        size_t room = sizeof r->arena - r->arena_used, n;

        if (room == 0)
                return NULL;
        n = join3(r->arena + r->arena_used, room, "varbind[", name, "]");
        if (n >= room)
                return NULL;
        r->arena_used += n + 1;
        return r->arena + r->arena_used - n - 1;
}

static bool oid_numeric(const oid *o, size_t len, char *buf, size_t size)
{
        size_t used = 0;

        if (size == 0)
                return false;
        buf[0] = '\0';
        for (size_t i = 0; i < len; i++) {
                char t[24];
                size_t n = 0;
                unsigned long v = (unsigned long)o[i];

                do {
                        t[n++] = (char)('0' + v % 10);
                        v /= 10;
                } while (v);
                if (used + (i ? 1 : 0) + n >= size) {
                        buf[used] = '\0';
                        return false;
                }
                if (i)
                        buf[used++] = '.';
                while (n)
                        buf[used++] = t[--n];
        }
        buf[used] = '\0';
        return true;
}

/* The MIB node that names o: the deepest node of the tree on its path, and
 * how many sub-identifiers it covers. NULL when no module names even the
 * first arc. */
static struct tree *oid_node(const oid *o, size_t len, size_t *ret_depth)
{
        struct tree *tp, *p;
        size_t depth = 0;

        *ret_depth = 0;
        if (len == 0)
                return NULL;
        tp = get_tree(o, len, get_tree_head());
        if (!tp)
                return NULL;
        for (p = tp; p; p = p->parent)
                depth++;
        if (depth > len)
                return NULL;
        *ret_depth = depth;
        return tp;
}

/* "MODULE::label" for the node, plus ".rest" of the OID beyond it when
 * with_rest; numeric when no module defines the node or when the name does
 * not fit in size bytes (a cut name could be another object's). */
static void oid_name(const oid *o, size_t len, bool with_rest, char *buf, size_t size, struct tree **ret_node,
                     size_t *ret_depth)
{
        size_t depth;
        struct tree *tp = oid_node(o, len, &depth);
        char mod[128];
        size_t n;

        if (ret_node)
                *ret_node = tp;
        if (ret_depth)
                *ret_depth = depth;
        if (!tp || tp->modid < 0 || !tp->label) {
                oid_numeric(o, len, buf, size);
                if (ret_node)
                        *ret_node = NULL;
                return;
        }
        module_name(tp->modid, mod);
        n = join3(buf, size, mod, "::", tp->label);
        /* the '.' of the rest needs a byte before the terminating NUL */
        if (n >= size || (with_rest && depth < len &&
                          (n + 1 >= size || !oid_numeric(o + depth, len - depth, buf + n + 1, size - n - 1)))) {
                oid_numeric(o, len, buf, size);
                return;
        }
        if (with_rest && depth < len)
                buf[n] = '.';
}

static bool printable(const u_char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\0' && i == n - 1)
                        continue; /* some senders count the terminator */
                if (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
                        return false;
                if (s[i] == 0x7f)
                        return false;
        }
        return true;
}

/* Adds varbind[name] and varbind[oid] for one variable. Returns false,
 * adding nothing, when the trap's string space is used up. */
static bool add_varbind(struct snmp_receiver *r, struct event *e, const netsnmp_variable_list *v)
{
        char name[NAME_MAX_LEN], num[NAME_MAX_LEN], sval[VALUE_MAX * 3 + 4];
        struct tree *tp;
        size_t depth;
        const char *kname, *knum, *sv, *label = NULL;
        bool is_num = false;
        double d = 0;

        oid_numeric(v->name, v->name_length, num, sizeof num);
        oid_name(v->name, v->name_length, false, name, sizeof name, &tp, &depth);
        /* An object (a scalar or column: a node with a syntax) is named
         * without its instance. A variable no MIB names down to its object
         * keeps only its numeric OID, so two variables never share a key. */
        if (!tp || tp->type < TYPE_OBJID || tp->type > TYPE_SIMPLE_LAST)
                join3(name, sizeof name, num, "", "");

        switch (v->type) {
        case ASN_INTEGER:
                d = (double)*v->val.integer;
                is_num = true;
                if (tp)
                        for (const struct enum_list *en = tp->enums; en; en = en->next)
                                if (en->value == *v->val.integer) {
                                        label = en->label;
                                        break;
                                }
                break;
        case ASN_COUNTER:
        case ASN_GAUGE:
        case ASN_TIMETICKS:
        case ASN_UINTEGER:
                d = (double)(uint32_t)*v->val.integer;
                is_num = true;
                break;
        case ASN_COUNTER64:
                d = (double)v->val.counter64->high * 4294967296.0 + (double)v->val.counter64->low;
                is_num = true;
                break;
        case ASN_IPADDRESS:
                if (v->val_len == 4)
                        snprintf(sval, sizeof sval, "%u.%u.%u.%u", v->val.string[0], v->val.string[1], v->val.string[2],
                                 v->val.string[3]);
                else
                        snprintf(sval, sizeof sval, "?");
                break;
        case ASN_OBJECT_ID:
                oid_name(v->val.objid, v->val_len / sizeof(oid), true, sval, sizeof sval, NULL, NULL);
                break;
        case ASN_OCTET_STR:
        case ASN_OPAQUE: {
                size_t n = v->val_len < VALUE_MAX ? v->val_len : VALUE_MAX;
                if (v->type == ASN_OCTET_STR && printable(v->val.string, n)) {
                        size_t k = n && v->val.string[n - 1] == '\0' ? n - 1 : n;
                        memcpy(sval, v->val.string, k);
                        sval[k] = '\0';
                } else {
                        size_t used = 0;
                        for (size_t i = 0; i < n; i++)
                                used += (size_t)snprintf(sval + used, sizeof sval - used, i ? ":%02x" : "%02x",
                                                         v->val.string[i]);
                }
                break;
        }
        default: /* NULL, noSuchObject, endOfMibView...: present, without a value */
                sval[0] = '\0';
                break;
        }
        /* all strings first: a varbind is added whole or counted as dropped */
        kname = arena_key(r, name);
        knum = strcmp(name, num) != 0 ? arena_key(r, num) : NULL;
        sv = is_num ? (label ? arena_put(r, label, strlen(label)) : NULL) : arena_put(r, sval, strlen(sval));
        if (!kname || (strcmp(name, num) != 0 && !knum) || (!is_num && !sv) || (label && !sv))
                return false;
        if (is_num) {
                if (label)
                        event_add_string(e, kname, sv);
                else
                        event_add_number(e, kname, d);
                if (knum)
                        event_add_number(e, knum, d);
        } else {
                event_add_string(e, kname, sv);
                if (knum)
                        event_add_string(e, knum, sv);
        }
        return true;
}

static const oid snmpTrapOID0[] = {1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0};
static const oid sysUpTime0[] = {1, 3, 6, 1, 2, 1, 1, 3, 0};
static const oid snmpTraps[] = {1, 3, 6, 1, 6, 3, 1, 1, 5};

static bool oid_eq(const oid *a, size_t alen, const oid *b, size_t blen)
{
        return alen == blen && memcmp(a, b, alen * sizeof *a) == 0;
}

/* Fills e from pdu. Returns false when the notification has no trap OID. */
static bool decode(struct snmp_receiver *r, const netsnmp_pdu *pdu, const struct trap_info *info, struct event *e)
{
        oid trap_oid[MAX_OID_LEN];
        size_t trap_len = 0;
        char tname[NAME_MAX_LEN], tnum[NAME_MAX_LEN], agent_addr[INET6_ADDRSTRLEN];
        const char *label;
        const netsnmp_variable_list *v;
        size_t dropped = 0;

        r->arena_used = 0;
        snprintf(agent_addr, sizeof agent_addr, "%s", info->source);
        if (pdu->command == SNMP_MSG_TRAP) {
                /* RFC 3584 3.1: generic traps 0..5 are snmpTraps.(n+1);
                 * enterpriseSpecific is enterprise.0.specific. */
                if (pdu->trap_type != SNMP_TRAP_ENTERPRISESPECIFIC) {
                        if (pdu->trap_type < 0 || pdu->trap_type > 5)
                                return false;
                        memcpy(trap_oid, snmpTraps, sizeof snmpTraps);
                        trap_len = sizeof snmpTraps / sizeof(oid);
                        trap_oid[trap_len++] = (oid)pdu->trap_type + 1;
                } else {
                        if (!pdu->enterprise || pdu->enterprise_length == 0 || pdu->enterprise_length + 2 > MAX_OID_LEN)
                                return false;
                        memcpy(trap_oid, pdu->enterprise, pdu->enterprise_length * sizeof(oid));
                        trap_len = pdu->enterprise_length;
                        trap_oid[trap_len++] = 0;
                        trap_oid[trap_len++] = (oid)pdu->specific_type;
                }
                snprintf(agent_addr, sizeof agent_addr, "%u.%u.%u.%u", pdu->agent_addr[0], pdu->agent_addr[1],
                         pdu->agent_addr[2], pdu->agent_addr[3]);
        } else {
                for (v = pdu->variables; v; v = v->next_variable)
                        if (oid_eq(v->name, v->name_length, snmpTrapOID0, sizeof snmpTrapOID0 / sizeof(oid)) &&
                            v->type == ASN_OBJECT_ID && v->val_len / sizeof(oid) <= MAX_OID_LEN) {
                                trap_len = v->val_len / sizeof(oid);
                                memcpy(trap_oid, v->val.objid, trap_len * sizeof(oid));
                                break;
                        }
                if (trap_len == 0)
                        return false;
        }
        {
                struct tree *tp;
                size_t depth;
                oid_name(trap_oid, trap_len, true, tname, sizeof tname, &tp, &depth);
                oid_numeric(trap_oid, trap_len, tnum, sizeof tnum);
                /* the event's name is the trap's label when a MIB defines the
                 * notification itself, else its numeric OID */
                const char *sep = strstr(tname, "::");
                label = tp && depth == trap_len && sep ? sep + 2 : tnum;
        }

        event_init(e, "snmptrap", arena_put(r, label, strlen(label)), arena_put(r, info->source, strlen(info->source)));
        event_add_string(e, "trap", arena_put(r, tname, strlen(tname)));
        event_add_string(e, "trap_oid", arena_put(r, tnum, strlen(tnum)));
        event_add_string(e, "source_addr", e->object);
        event_add_string(e, "agent_addr", arena_put(r, agent_addr, strlen(agent_addr)));
        event_add_string(e, "version", info->version == 1 ? "1" : info->version == 2 ? "2c" : "3");
        event_add_string(e, "pdu", info->inform ? "inform" : "trap");
        if (info->community)
                event_add_string(e, "community", info->community);
        if (info->user) {
                event_add_string(e, "user", info->user);
                event_add_string(e, "security_level",
                                 info->security_level == 3   ? "authPriv"
                                 : info->security_level == 2 ? "authNoPriv"
                                                             : "noAuthNoPriv");
        }
        if (pdu->command == SNMP_MSG_TRAP) {
                netsnmp_variable_list up = {0};
                long ticks = (long)pdu->time;
                oid name[sizeof sysUpTime0 / sizeof(oid)];
                memcpy(name, sysUpTime0, sizeof name);
                up.name = name;
                up.name_length = sizeof sysUpTime0 / sizeof(oid);
                up.type = ASN_TIMETICKS;
                up.val.integer = &ticks;
                up.val_len = sizeof ticks;
                if (!add_varbind(r, e, &up))
                        dropped++;
        }
        for (v = pdu->variables; v; v = v->next_variable) {
                if (oid_eq(v->name, v->name_length, snmpTrapOID0, sizeof snmpTrapOID0 / sizeof(oid)))
                        continue; /* it is `trap` */
                /* two attributes per varbind, one slot kept for the count */
                if (e->n_attrs + 2 > EVENT_ATTRS_MAX - 1 || !add_varbind(r, e, v))
                        dropped++;
        }
        if (dropped)
                event_add_number(e, "varbinds_dropped", (double)dropped);
        return e->name && e->object;
}

/* ---- net-snmp callbacks ---- */

static int post_parse(netsnmp_session *sp, netsnmp_pdu *pdu, int result)
{
        struct snmp_receiver *r = sp->callback_magic;

        if (r && pdu) {
                r->post_seen = true;
                r->post_version = pdu->version;
                r->post_result = result;
                r->post_level = pdu->securityLevel;
                r->post_engine_id_len = pdu->securityEngineIDLen;
                if (pdu->securityEngineID && pdu->securityEngineIDLen <= sizeof r->post_engine_id)
                        memcpy(r->post_engine_id, pdu->securityEngineID, pdu->securityEngineIDLen);
                else
                        r->post_engine_id_len = 0;
        }
        return 1;
}

static void send_ack(struct snmp_receiver *r, netsnmp_pdu *pdu)
{
        netsnmp_pdu *reply = snmp_clone_pdu(pdu);

        if (!reply) {
                r->reply_failures++;
                return;
        }
        reply->command = SNMP_MSG_RESPONSE;
        reply->errstat = 0;
        reply->errindex = 0;
        if (!snmp_sess_send(r->sessp, reply)) {
                snmp_free_pdu(reply);
                r->reply_failures++;
        }
}

static int on_pdu(int op, netsnmp_session *sp, int reqid, netsnmp_pdu *pdu, void *magic)
{
        struct snmp_receiver *r = magic;
        struct trap_info info = {0};
        char community[256], user[256];
        struct event e;

        (void)reqid;
        if (op != NETSNMP_CALLBACK_OP_RECEIVED_MESSAGE || !pdu)
                return 1;
        if (sp->s_snmp_errno == SNMPERR_USM_AUTHENTICATIONFAILURE) {
                r->verdict = TRAP_REJECT_AUTH; /* USM shows the failed message to the session first */
                return 1;
        }
        if (pdu->command != SNMP_MSG_TRAP && pdu->command != SNMP_MSG_TRAP2 && pdu->command != SNMP_MSG_INFORM) {
                r->verdict = TRAP_REJECT_NOT_NOTIFICATION;
                return 1;
        }
        info.source = r->cur.source;
        info.inform = pdu->command == SNMP_MSG_INFORM;
        switch (pdu->version) {
        case SNMP_VERSION_1:
        case SNMP_VERSION_2c:
                info.version = pdu->version == SNMP_VERSION_1 ? 1 : 2;
                /* a community that cannot be held as a C string matches none */
                if (pdu->community_len >= sizeof community ||
                    (pdu->community_len && memchr(pdu->community, '\0', pdu->community_len))) {
                        r->verdict = TRAP_REJECT_COMMUNITY;
                        return 1;
                }
                snprintf(community, sizeof community, "%.*s",
                         (int)(pdu->community_len < sizeof community ? pdu->community_len : sizeof community - 1),
                         pdu->community ? (const char *)pdu->community : "");
                info.community = community;
                break;
        case SNMP_VERSION_3:
                info.version = 3;
                snprintf(user, sizeof user, "%.*s",
                         (int)(pdu->securityNameLen < sizeof user ? pdu->securityNameLen : sizeof user - 1),
                         pdu->securityName ? pdu->securityName : "");
                info.user = user;
                info.security_level = pdu->securityLevel;
                if (pdu->securityLevel < r->min_security) {
                        r->verdict = TRAP_REJECT_SECURITY_LEVEL;
                        return 1;
                }
                break;
        default:
                r->verdict = TRAP_REJECT_MALFORMED;
                return 1;
        }
        if (!decode(r, pdu, &info, &e)) {
                r->verdict = TRAP_REJECT_MALFORMED;
                return 1;
        }
        r->verdict = r->fn(&info, &e, r->userdata);
        if (r->verdict == TRAP_ACCEPTED && info.inform)
                send_ack(r, pdu);
        return 1;
}

/* ---- engine ---- */

static unsigned next_engine_boots(const char *path)
{
        unsigned long boots = 0;
        char buf[32];
        FILE *f;

        if (!path)
                return 1;
        f = fopen(path, "re");
        if (f) {
                if (fgets(buf, sizeof buf, f))
                        boots = strtoul(buf, NULL, 10);
                fclose(f);
        }
        boots = boots >= 2147483646UL ? 1 : boots + 1; /* RFC 3414: at the maximum, start over */
        f = fopen(path, "we");
        if (!f || fprintf(f, "%lu\n", boots) < 0 || fclose(f) != 0) {
                log_warning("snmptrap: cannot record SNMP engine boots in %s: %m; v3 informs may see "
                            "time-window reports after restarts",
                            path);
                if (f)
                        (void)0;
        }
        return (unsigned)boots;
}

static void engine_id_hex(char *buf, size_t size)
{
        u_char id[64];
        size_t n = snmpv3_get_engineID(id, sizeof id), used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && used + 3 < size; i++)
                used += (size_t)snprintf(buf + used, size - used, "%02x", id[i]);
}

static int set_engine_id(const char *text, char *err, size_t errsize)
{
        if (!text)
                return 0;
        if (strncmp(text, "0x", 2) == 0 || strncmp(text, "0X", 2) == 0) {
                u_char *bytes = NULL;
                size_t blen = 0, olen = 0;
                if (!snmp_hex_to_binary(&bytes, &blen, &olen, 1, text + 2) || olen < 5 || olen > 32) {
                        free(bytes);
                        snprintf(err, errsize, "engine_id '%s' is not 5 to 32 bytes of hex", text);
                        return -EINVAL;
                }
                set_exact_engineID(bytes, olen);
                free(bytes);
                return 0;
        }
        if (setup_engineID(NULL, text) < 0) {
                snprintf(err, errsize, "engine_id '%s' is not usable as an SNMP engine ID", text);
                return -EINVAL;
        }
        return 0;
}

/* ---- public ---- */

int snmp_receiver_new(const struct snmp_receiver_settings *s, snmp_trap_fn fn, void *userdata, char *err,
                      size_t errsize, struct snmp_receiver **ret)
{
        struct snmp_receiver *r;
        netsnmp_transport *t;
        netsnmp_session sess;
        char *path, *persistent = NULL;
        int rc;

        path = mib_path_join(s);
        if (!path)
                return -ENOMEM;
        if (s->engine_boots_file) {
                char *slash;
                persistent = xstrdup(s->engine_boots_file);
                if (persistent && (slash = strrchr(persistent, '/')))
                        *slash = '\0';
        }
        rc = lib_init(path, persistent);
        free(path);
        free(persistent);
        if (rc < 0)
                return rc;
        rc = set_engine_id(s->engine_id, err, errsize);
        if (rc < 0)
                return rc;
        {
                /* net-snmp's own handler of the persistent "engineBoots" line,
                 * which sets the count to the stored value plus one */
                char boots[24];
                snprintf(boots, sizeof boots, "%u", next_engine_boots(s->engine_boots_file) - 1);
                engineBoots_conf("engineBoots", boots);
        }
        {
                /* USM accepts authoritative messages (informs) only for
                 * engines in its time cache; init put the engine ID of that
                 * moment there, so the one just set goes in too. */
                u_char id[64];
                size_t n = snmpv3_get_engineID(id, sizeof id);
                set_enginetime(id, n, snmpv3_local_snmpEngineBoots(), snmpv3_local_snmpEngineTime(), TRUE);
        }

        r = xcalloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->fn = fn;
        r->userdata = userdata;
        r->min_security = SNMP_SEC_LEVEL_AUTHNOPRIV;
        r->dummy_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (r->dummy_fd < 0) {
                rc = -errno;
                snprintf(err, errsize, "cannot open /dev/null: %s", strerror(errno));
                free(r);
                return rc;
        }
        engine_id_hex(r->engine_id_hex, sizeof r->engine_id_hex);

        t = SNMP_MALLOC_TYPEDEF(netsnmp_transport);
        if (!t)
                goto oom;
        t->data = malloc(sizeof r);
        if (!t->data) {
                free(t);
                goto oom;
        }
        *(struct snmp_receiver **)t->data = r;
        t->data_length = (int)sizeof r;
        t->sock = r->dummy_fd;
        t->msgMaxSize = 65535;
        t->domain = netsnmpUDPDomain;
        t->domain_length = netsnmpUDPDomain_len;
        t->f_recv = t_recv;
        t->f_send = t_send;
        t->f_close = t_close;
        t->f_fmtaddr = t_fmtaddr;

        snmp_sess_init(&sess);
        sess.callback = on_pdu;
        sess.callback_magic = r;
        /* informs make us authoritative, traps do not: USM decides per message */
        sess.isAuthoritative = SNMP_SESS_UNKNOWNAUTH;
        r->sessp = snmp_sess_add_ex(&sess, t, NULL, NULL, post_parse, NULL, NULL, NULL, NULL);
        if (!r->sessp) {
                /* snmp_sess_add_ex frees the transport on failure */
                snprintf(err, errsize, "net-snmp cannot open a session: %s", snmp_api_errstring(snmp_errno));
                close(r->dummy_fd);
                free(r);
                return -EIO;
        }
        netsnmp_large_fd_set_init(&r->fdset, r->dummy_fd + 1);
        NETSNMP_LARGE_FD_SET(r->dummy_fd, &r->fdset);
        *ret = r;
        return 0;
oom:
        close(r->dummy_fd);
        free(r);
        return -ENOMEM;
}

void snmp_receiver_free(struct snmp_receiver *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_users; i++) {
                struct usmUser *u = r->users[i];
                /* only users still on net-snmp's list are ours to remove */
                for (struct usmUser *p = usm_get_userList(); p; p = p->next)
                        if (p == u) {
                                usm_remove_user(u);
                                usm_free_user(u);
                                break;
                        }
        }
        free(r->users);
        if (r->sessp)
                snmp_sess_close(r->sessp);
        netsnmp_large_fd_set_cleanup(&r->fdset);
        if (r->dummy_fd >= 0)
                close(r->dummy_fd);
        free(r);
}

int snmp_receiver_add_user(struct snmp_receiver *r, const char *line, char *err, size_t errsize)
{
        struct usmUser *before = usm_get_userList(), *u, **v;
        size_t n_before = 0, n_after = 0;
        char *copy = xstrdup(line);
        char msg[400];

        if (!copy)
                return -ENOMEM;
        for (u = before; u; u = u->next)
                n_before++;
        capture_begin(msg, sizeof msg);
        usm_parse_create_usmUser("createUser", copy);
        capture_end();
        free(copy);
        for (u = usm_get_userList(); u; u = u->next)
                n_after++;
        if (n_after <= n_before || msg[0]) {
                snprintf(err, errsize, "%s", msg[0] ? msg : "net-snmp did not accept the user");
                return -EINVAL;
        }
        /* the new user is the one not in our list and not there before: net-snmp
         * keeps the list sorted, so find it by elimination */
        v = xrealloc(r->users, (r->n_users + 1) * sizeof *v);
        if (!v)
                return -ENOMEM;
        r->users = v;
        for (u = usm_get_userList(); u; u = u->next) {
                bool known = false;
                for (size_t i = 0; i < r->n_users && !known; i++)
                        known = r->users[i] == u;
                if (!known) {
                        r->users[r->n_users++] = u;
                        break;
                }
        }
        return 0;
}

void snmp_receiver_set_min_security(struct snmp_receiver *r, int level)
{
        r->min_security = level;
}

static enum trap_verdict classify(struct snmp_receiver *r, const u_int *before);

/* USM remembers the boots and time of every engine ID it sees, before it
 * looks at the user, so v3 messages from ever new engine IDs would grow its
 * table without bound. Forget an engine no configured user belongs to. */
static void forget_stranger_engine(struct snmp_receiver *r)
{
        u_char local[64];
        size_t n = r->post_engine_id_len;

        if (!r->post_seen || r->post_version != SNMP_VERSION_3 || n == 0)
                return;
        if (snmpv3_get_engineID(local, sizeof local) == n && memcmp(local, r->post_engine_id, n) == 0)
                return;
        for (size_t i = 0; i < r->n_users; i++)
                if (r->users[i]->engineIDLen == n && memcmp(r->users[i]->engineID, r->post_engine_id, n) == 0)
                        return;
        free_enginetime(r->post_engine_id, n);
}

enum trap_verdict snmp_receiver_feed(struct snmp_receiver *r, const void *buf, size_t len, const struct sockaddr *from,
                                     socklen_t fromlen, int reply_fd)
{
        u_int before[N_STAT_REASONS];
        enum trap_verdict v;

        if (len == 0 || len > 65535 || fromlen > sizeof r->cur.to.addr)
                return TRAP_REJECT_MALFORMED;
        for (size_t i = 0; i < N_STAT_REASONS; i++)
                before[i] = snmp_get_statistic(stat_reasons[i].stat);
        r->cur.buf = buf;
        r->cur.len = len;
        memset(&r->cur.to, 0, sizeof r->cur.to);
        memcpy(&r->cur.to.addr, from, fromlen);
        r->cur.to.len = fromlen;
        r->cur.to.fd = reply_fd;
        format_addr(from, r->cur.source, sizeof r->cur.source);
        r->verdict = -1;
        r->post_seen = false;
        r->post_engine_id_len = 0;

        NETSNMP_LARGE_FD_SET(r->dummy_fd, &r->fdset); /* net-snmp clears it once read */
        in_feed = true;
        snmp_sess_read2(r->sessp, &r->fdset);
        in_feed = false;
        r->cur.buf = NULL;

        v = classify(r, before);
        if (v != TRAP_ACCEPTED)
                forget_stranger_engine(r);
        return v;
}

static enum trap_verdict classify(struct snmp_receiver *r, const u_int *before)
{
        if (r->verdict >= 0)
                return (enum trap_verdict)r->verdict;
        /* A trap's sender is authoritative: USM refuses one outside the time
         * window without a counter (RFC 3414 3.2.7b). */
        if (r->post_seen && r->post_result == SNMPERR_USM_NOTINTIMEWINDOW)
                return TRAP_REJECT_TIME_WINDOW;
        /* An authenticated authPriv message whose scoped PDU does not parse
         * was decrypted with the wrong privacy key. */
        bool undecryptable = r->post_seen && r->post_version == SNMP_VERSION_3 &&
                             r->post_level == SNMP_SEC_LEVEL_AUTHPRIV && r->post_result != SNMPERR_SUCCESS;
        for (size_t i = 0; i < N_STAT_REASONS; i++)
                if (snmp_get_statistic(stat_reasons[i].stat) != before[i]) {
                        enum trap_verdict v = stat_reasons[i].verdict;
                        /* an engine ID probe carries no engine ID; net-snmp answered it */
                        if (v == TRAP_REJECT_ENGINE_ID && r->post_seen && r->post_engine_id_len == 0)
                                return TRAP_DISCOVERY;
                        if (v == TRAP_REJECT_MALFORMED && undecryptable)
                                return TRAP_REJECT_DECRYPT;
                        return v;
                }
        if (undecryptable)
                return TRAP_REJECT_DECRYPT;
        return TRAP_REJECT_MALFORMED;
}

const char *snmp_receiver_engine_id(const struct snmp_receiver *r)
{
        return r->engine_id_hex;
}

uint64_t snmp_receiver_reply_failures(const struct snmp_receiver *r)
{
        return r->reply_failures;
}

const struct snmp_receiver_api snmp_receiver_api = {
        .new = snmp_receiver_new,
        .free = snmp_receiver_free,
        .add_user = snmp_receiver_add_user,
        .set_min_security = snmp_receiver_set_min_security,
        .feed = snmp_receiver_feed,
        .engine_id = snmp_receiver_engine_id,
        .reply_failures = snmp_receiver_reply_failures,
};
