/* snmptrap: the SNMP notification receiver (v1 and v2c traps, v2c and v3
 * informs, v3 traps with USM users), on the agent's one event loop.
 *
 * Settings, in "collector snmptrap { ... }" (all optional; repeatable ones
 * may be given several times):
 *   listen        repeatable, "udp:[ADDR:]PORT" or "udp6:[[ADDR]:]PORT";
 *                 default udp:162 and udp6:162. Ignored when systemd passes
 *                 datagram sockets (weibao-agent.socket): those are used.
 *   community     repeatable: accepted v1/v2c communities. None: every v1
 *                 and v2c notification is rejected (reason "community").
 *   allow         repeatable: source networks, "10.0.0.0/8", "2001:db8::/32"
 *                 or a single address; default: any source.
 *   users_file    file of v3 users, one net-snmp createUser line each; it
 *                 holds secrets, so it must not be readable by group/others.
 *   min_security  noAuthNoPriv, authNoPriv (default) or authPriv: the lowest
 *                 v3 security level accepted.
 *   engine_id     the local SNMP engine ID ("0x" hex, or text); default
 *                 derived from the agent id. Senders of v3 informs discover it.
 *   mib_dirs      repeatable: MIB directories (vendor MIBs, full IETF
 *                 modules); a module there replaces one of the same name in
 *                 Debian's directory or weibao's own subset.
 *   receive_buffer  bytes of kernel receive buffer per socket, default 8 MiB.
 *   auth_report   duration, default 10m: at most one "authentication
 *                 failures from X" event per source this often.
 *   recent        how many decoded notifications `weibaoctl traps` keeps,
 *                 default 50, 1..1000.
 *
 * Path of one datagram: recvmmsg batch → source network check (before any
 * parsing, so a flood from a stranger costs little) → snmp_receiver_feed
 * (net-snmp: BER, USM, informs acknowledged) → community check → the event
 * goes to the rules. Every datagram ends in exactly one counter: accepted or
 * one rejection reason. Datagrams the kernel dropped because the receive
 * buffer was full are read from the socket (SO_MEMINFO) and reported as
 * "traps-lost" events; failed access is reported per source, rate-limited,
 * as "auth-failures" events. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "../agent/loop.h"
#include "../lib/event_ring.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../rules/conf.h"
#include "collector.h"
#include "snmp_receiver.h"

#ifndef WEIBAO_LIBEXECDIR
#define WEIBAO_LIBEXECDIR "/usr/libexec/weibao"
#endif
#ifndef WEIBAO_MIBDIR
#define WEIBAO_MIBDIR "/usr/share/weibao/mibs"
#endif

#define LISTEN_MAX 16
#define COMMUNITIES_MAX 64
#define NETWORKS_MAX 256
#define USERS_MAX 256
#define MIB_DIRS_MAX 32
#define BATCH 16             /* datagrams per recvmmsg */
#define BATCHES_PER_WAKEUP 8 /* then the loop gets a turn */
/* Every slot of a batch holds the largest UDP datagram (65507 bytes over
 * IPv4, 65527 over IPv6). The kernel writes only what arrives, so pages
 * past a slot's first few stay untouched (no RSS) until a large
 * notification comes; a smaller slot with one spare buffer cannot work with
 * recvmmsg, which fills every slot of a batch before returning. */
#define DATAGRAM_MAX 65536
#define DEFAULT_RCVBUF (8 << 20) /* about 10,000 typical traps of slack */
#define DEFAULT_AUTH_REPORT_USEC (600ull * 1000000)
#define CHECK_INTERVAL_USEC (5ull * 1000000) /* kernel drops and pending failure reports */
#define SOURCES_MAX 256                      /* sources with pending failure reports */
/* Sources reported one by one per auth_report period; failures from further
 * sources (spoofed addresses, a scan) go into one "many" report. */
#define AUTH_REPORTS_MAX 10
#define SHED_REPORT_USEC (60ull * 1000000) /* at most one traps-shed event this often */

/* Default MIB directories: Debian's, then where snmp-mibs-downloader puts
 * the IETF and IANA modules; a missing one is skipped. */
static const char *const default_mib_dirs[] = {
        "/usr/share/snmp/mibs", "/usr/share/snmp/mibs/iana", "/usr/share/snmp/mibs/ietf",
        "/var/lib/mibs/iana",   "/var/lib/mibs/ietf",
};

struct network {
        int family; /* AF_INET or AF_INET6 */
        uint8_t addr[16];
        unsigned prefix;
};

struct listener {
        char *address; /* as configured, or "systemd:N" */
        int fd;
        bool activated;
        struct loop_source *src;
        uint32_t drops_seen; /* kernel drop counter at the last check */
        int rcvbuf;          /* what the kernel granted */
};

/* Failed access from one source, waiting to be reported. */
struct failing_source {
        char addr[INET6_ADDRSTRLEN];
        uint64_t pending, total;
        uint64_t last_report_mono; /* 0: never reported */
        uint64_t folded_window;    /* the window whose "many" report counts it; 0: none */
        enum trap_verdict last_reason;
};

/* Failures folded into the "many" report since it was last emitted. */
struct failing_many {
        uint64_t sources, failures, total;
        uint64_t last_report_mono;
        enum trap_verdict last_reason;
};

struct snmptrap_state {
        /* settings */
        char *listen[LISTEN_MAX];
        size_t n_listen;
        char *communities[COMMUNITIES_MAX];
        size_t n_communities;
        struct network networks[NETWORKS_MAX];
        size_t n_networks;
        char *users[USERS_MAX]; /* createUser lines, secrets included */
        size_t n_users;
        char *users_file;
        int min_security;
        char *engine_id;
        char *mib_dirs[MIB_DIRS_MAX + 8];
        size_t n_mib_dirs;
        char *engine_boots_file;
        int rcvbuf;
        bool rcvbuf_explicit; /* receive_buffer was configured */
        uint64_t auth_report_usec;
        size_t recent_n;

        /* running */
        struct loop *loop;
        collector_emit_fn emit;
        void *userdata;
        const struct snmp_receiver_api *api; /* weibao-snmp.so, loaded at the first datagram */
        struct snmp_receiver *rx;            /* NULL until the first datagram (ensure_receiver) */
        uint64_t rx_failed_mono;             /* when setting it up last failed */
        struct listener listeners[LISTEN_MAX];
        size_t n_listeners;
        struct loop_source *check_timer;
        struct event_ring *recent;
        struct failing_source sources[SOURCES_MAX];
        uint64_t sources_overflow;
        uint64_t auth_window;            /* number of the current auth_report period, from 1 */
        uint64_t auth_window_start_mono; /* when it began */
        unsigned auth_reports;           /* per-source reports in it */
        struct failing_many many;
        uint8_t *bufs; /* BATCH * DATAGRAM_MAX */
        uint64_t counts[TRAP_VERDICT_MAX];
        uint64_t received, unmatched, truncated, kernel_drops, user_errors, unprocessed, varbinds_dropped;
        /* what the last traps-shed event covered */
        uint64_t shed_seen[4];
        uint64_t shed_last_report_mono;
        bool started;
};

/* Sockets survive a reload: stop parks them here and the next start takes
 * back those whose address is unchanged, so no trap arrives at a closed port
 * while the configuration is swapped. Sockets systemd passed are never
 * closed. */
static struct {
        char *address;
        int fd;
        bool activated;
} parked[LISTEN_MAX];
static size_t n_parked;
static bool activation_checked;

/* ---- settings ---- */

static int get_strings(const struct conf_block *b, const char *key, char **out, size_t max, size_t *n, struct diag *d)
{
        const char **vals = NULL;
        size_t nv = 0;
        int r;

        if (!b)
                return 0;
        r = conf_block_get_strings(b, key, &vals, &nv, d);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (nv > max) {
                free(vals);
                return conf_block_diag(b, key, d, "at most %zu '%s' settings", max, key);
        }
        for (size_t i = 0; i < nv; i++) {
                out[*n] = xstrdup(vals[i]);
                if (!out[*n]) {
                        free(vals);
                        return -ENOMEM;
                }
                (*n)++;
        }
        free(vals);
        return 0;
}

/* "udp:[ADDR:]PORT" / "udp6:[[ADDR]:]PORT" into a socket address. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errsize)
{
        const char *rest;
        char host[INET6_ADDRSTRLEN + 2] = "", *end;
        const char *port_s;
        unsigned long port;
        bool v6;

        if (strncmp(spec, "udp6:", 5) == 0) {
                v6 = true;
                rest = spec + 5;
        } else if (strncmp(spec, "udp:", 4) == 0) {
                v6 = false;
                rest = spec + 4;
        } else {
                snprintf(err, errsize, "'%s': expected udp:[ADDRESS:]PORT or udp6:[[ADDRESS]:]PORT", spec);
                return -EINVAL;
        }
        if (v6 && rest[0] == '[') {
                const char *close = strchr(rest, ']');
                if (!close || close[1] != ':' || (size_t)(close - rest - 1) >= sizeof host) {
                        snprintf(err, errsize, "'%s': expected udp6:[ADDRESS]:PORT", spec);
                        return -EINVAL;
                }
                memcpy(host, rest + 1, (size_t)(close - rest - 1));
                host[close - rest - 1] = '\0';
                port_s = close + 2;
        } else if (!v6 && strchr(rest, ':')) {
                const char *colon = strchr(rest, ':');
                if ((size_t)(colon - rest) >= sizeof host) {
                        snprintf(err, errsize, "'%s': address too long", spec);
                        return -EINVAL;
                }
                memcpy(host, rest, (size_t)(colon - rest));
                host[colon - rest] = '\0';
                port_s = colon + 1;
        } else {
                port_s = rest;
        }
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (!*port_s || *end || errno || port == 0 || port > 65535) {
                snprintf(err, errsize, "'%s': port must be 1..65535", spec);
                return -EINVAL;
        }
        memset(ss, 0, sizeof *ss);
        if (v6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t)port);
                a->sin6_addr = in6addr_any;
                if (host[0] && inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
                        snprintf(err, errsize, "'%s': '%s' is not an IPv6 address", spec, host);
                        return -EINVAL;
                }
                *len = sizeof *a;
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)ss;
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t)port);
                a->sin_addr.s_addr = htonl(INADDR_ANY);
                if (host[0] && inet_pton(AF_INET, host, &a->sin_addr) != 1) {
                        snprintf(err, errsize, "'%s': '%s' is not an IPv4 address", spec, host);
                        return -EINVAL;
                }
                *len = sizeof *a;
        }
        return 0;
}

static int parse_network(const char *spec, struct network *n)
{
        char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
        unsigned long prefix;

        if (strlen(spec) >= sizeof buf)
                return -EINVAL;
        strcpy(buf, spec);
        slash = strchr(buf, '/');
        if (slash)
                *slash = '\0';
        memset(n, 0, sizeof *n);
        if (inet_pton(AF_INET, buf, n->addr) == 1) {
                n->family = AF_INET;
                n->prefix = 32;
        } else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
                n->family = AF_INET6;
                n->prefix = 128;
        } else {
                return -EINVAL;
        }
        if (slash) {
                errno = 0;
                prefix = strtoul(slash + 1, &end, 10);
                if (!slash[1] || *end || errno || prefix > n->prefix)
                        return -EINVAL;
                n->prefix = (unsigned)prefix;
        }
        return 0;
}

static bool network_contains(const struct network *n, int family, const uint8_t *addr)
{
        unsigned full = n->prefix / 8, bits = n->prefix % 8;

        if (n->family != family)
                return false;
        if (memcmp(n->addr, addr, full) != 0)
                return false;
        if (bits) {
                uint8_t mask = (uint8_t)(0xff << (8 - bits));
                if ((n->addr[full] & mask) != (addr[full] & mask))
                        return false;
        }
        return true;
}

static bool source_allowed(const struct snmptrap_state *st, const struct sockaddr_storage *from)
{
        uint8_t a[16];
        int family;

        if (st->n_networks == 0)
                return true;
        if (from->ss_family == AF_INET) {
                family = AF_INET;
                memcpy(a, &((const struct sockaddr_in *)from)->sin_addr, 4);
        } else if (from->ss_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)from)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a6)) {
                        family = AF_INET;
                        memcpy(a, &a6->s6_addr[12], 4);
                } else {
                        family = AF_INET6;
                        memcpy(a, a6, 16);
                }
        } else {
                return false;
        }
        for (size_t i = 0; i < st->n_networks; i++)
                if (network_contains(&st->networks[i], family, a))
                        return true;
        return false;
}

static char *resolve_path(const struct collector_context *ctx, const char *p)
{
        if (p[0] == '/' || !ctx || !ctx->base_dir)
                return xstrdup(p);
        return xasprintf("%s/%s", ctx->base_dir, p);
}

/* Reads createUser lines. The file holds secrets: refuse it when group or
 * others may read it, as for the central API token. */
static int read_users(struct snmptrap_state *st, const struct conf_block *b, struct diag *d)
{
        struct stat sb;
        char line[1024];
        unsigned lineno = 0;
        FILE *f;
        int r = 0;

        f = fopen(st->users_file, "re");
        if (!f)
                return conf_block_diag(b, "users_file", d, "cannot read %s: %s", st->users_file, strerror(errno));
        if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 0077)) {
                fclose(f);
                return conf_block_diag(b, "users_file", d,
                                       "%s holds SNMPv3 secrets but group or others may read it (mode %04o); "
                                       "chmod 600 it",
                                       st->users_file, (unsigned)(sb.st_mode & 07777));
        }
        while (fgets(line, sizeof line, f)) {
                char *p = line, *e;
                size_t words = 0;
                bool in_word = false;

                lineno++;
                if (!strchr(line, '\n') && !feof(f)) {
                        r = conf_block_diag(b, "users_file", d, "%s:%u: line too long", st->users_file, lineno);
                        break;
                }
                while (*p == ' ' || *p == '\t')
                        p++;
                e = p + strlen(p);
                while (e > p && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                        *--e = '\0';
                if (!*p || *p == '#')
                        continue;
                if (strncmp(p, "createUser", 10) == 0 && (p[10] == ' ' || p[10] == '\t')) {
                        p += 10;
                        while (*p == ' ' || *p == '\t')
                                p++;
                }
                for (const char *q = p; *q; q++) {
                        bool space = *q == ' ' || *q == '\t';
                        if (!space && !in_word)
                                words++;
                        in_word = !space;
                }
                if (words < 1 || (strncmp(p, "-e", 2) == 0 && words < 3)) {
                        r = conf_block_diag(b, "users_file", d,
                                            "%s:%u: expected [createUser] [-e ENGINEID] NAME [AUTHPROTO AUTHPASS "
                                            "[PRIVPROTO [PRIVPASS]]]",
                                            st->users_file, lineno);
                        continue;
                }
                if (st->n_users >= USERS_MAX) {
                        r = conf_block_diag(b, "users_file", d, "%s: more than %d users", st->users_file, USERS_MAX);
                        break;
                }
                if (!(st->users[st->n_users++] = xstrdup(p))) {
                        r = -ENOMEM;
                        break;
                }
        }
        fclose(f);
        return r;
}

static void snmptrap_free(void *userdata);

static int snmptrap_new(const struct conf_block *b, const struct collector_context *ctx, struct diag *d,
                        void **ret_state)
{
        struct snmptrap_state *st = xcalloc(1, sizeof *st);
        char *nets[NETWORKS_MAX];
        size_t n_nets = 0;
        const char *s;
        double num;
        int r = 0, q;

        if (!st)
                return -ENOMEM;
        st->min_security = 2;
        st->rcvbuf = DEFAULT_RCVBUF;
        st->auth_report_usec = DEFAULT_AUTH_REPORT_USEC;
        st->recent_n = 50;

        if ((q = get_strings(b, "listen", st->listen, LISTEN_MAX, &st->n_listen, d)) < 0)
                r = q;
        for (size_t i = 0; i < st->n_listen; i++) {
                struct sockaddr_storage ss;
                socklen_t len;
                char err[300];
                if (parse_listen(st->listen[i], &ss, &len, err, sizeof err) < 0)
                        r = conf_block_diag(b, "listen", d, "%s", err);
        }
        if (st->n_listen == 0 && r == 0) {
                st->listen[st->n_listen++] = xstrdup("udp:162");
                st->listen[st->n_listen++] = xstrdup("udp6:162");
                if (!st->listen[0] || !st->listen[1])
                        r = -ENOMEM;
        }
        if ((q = get_strings(b, "community", st->communities, COMMUNITIES_MAX, &st->n_communities, d)) < 0)
                r = q;
        if ((q = get_strings(b, "allow", nets, NETWORKS_MAX, &n_nets, d)) < 0)
                r = q;
        for (size_t i = 0; i < n_nets; i++) {
                if (parse_network(nets[i], &st->networks[st->n_networks]) < 0)
                        r = conf_block_diag(b, "allow", d,
                                            "'%s' is not a network (expected ADDRESS or ADDRESS/PREFIX, e.g. "
                                            "10.0.0.0/8)",
                                            nets[i]);
                else
                        st->n_networks++;
                free(nets[i]);
        }
        /* net-snmp takes a module from the last directory that has it: Debian's
         * come first, then the ones configured (vendor or full IETF modules),
         * and weibao's own subset is searched before all of them. */
        for (size_t i = 0; i < sizeof default_mib_dirs / sizeof default_mib_dirs[0]; i++)
                if (access(default_mib_dirs[i], R_OK | X_OK) == 0 &&
                    !(st->mib_dirs[st->n_mib_dirs++] = xstrdup(default_mib_dirs[i])))
                        r = -ENOMEM;
        {
                size_t first = st->n_mib_dirs;
                if ((q = get_strings(b, "mib_dirs", st->mib_dirs, MIB_DIRS_MAX + first, &st->n_mib_dirs, d)) < 0)
                        r = q;
                for (size_t i = first; i < st->n_mib_dirs; i++) {
                        char *abs = resolve_path(ctx, st->mib_dirs[i]);
                        if (!abs) {
                                snmptrap_free(st);
                                return -ENOMEM;
                        }
                        free(st->mib_dirs[i]);
                        st->mib_dirs[i] = abs;
                }
        }
        if (b && (q = conf_block_get_string(b, "min_security", &s, d)) == 0) {
                if (strcmp(s, "noAuthNoPriv") == 0)
                        st->min_security = 1;
                else if (strcmp(s, "authNoPriv") == 0)
                        st->min_security = 2;
                else if (strcmp(s, "authPriv") == 0)
                        st->min_security = 3;
                else
                        r = conf_block_diag(b, "min_security", d,
                                            "expected noAuthNoPriv, authNoPriv or authPriv, got '%s'", s);
        } else if (q == -EINVAL) {
                r = q;
        }
        if (b && (q = conf_block_get_string(b, "engine_id", &s, d)) == 0) {
                size_t len = strlen(s);
                bool hex = len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
                if (hex && (strspn(s + 2, "0123456789abcdefABCDEF") != len - 2 || (len - 2) % 2 || len - 2 < 10 ||
                            len - 2 > 64))
                        r = conf_block_diag(b, "engine_id", d, "engine_id '%s': hex engine IDs are 5 to 32 bytes", s);
                else if (!hex && (len == 0 || len > 27))
                        r = conf_block_diag(b, "engine_id", d,
                                            "engine_id text must be 1 to 27 characters (or 0x and 5 to 32 bytes of "
                                            "hex)");
                else if (!(st->engine_id = xstrdup(s)))
                        r = -ENOMEM;
        } else if (q == -EINVAL) {
                r = q;
        }
        if (b && (q = conf_block_get_number(b, "receive_buffer", &num, d)) == 0) {
                if (num < 65536 || num > 1073741824)
                        r = conf_block_diag(b, "receive_buffer", d, "receive_buffer must be 65536 .. 1073741824 bytes");
                else {
                        st->rcvbuf = (int)num;
                        st->rcvbuf_explicit = true;
                }
        } else if (q == -EINVAL) {
                r = q;
        }
        if (b && (q = conf_block_get_duration(b, "auth_report", &st->auth_report_usec, d)) == 0) {
                if (st->auth_report_usec < 1000000)
                        r = conf_block_diag(b, "auth_report", d, "auth_report must be at least 1s");
        } else if (q == -EINVAL) {
                r = q;
        }
        if (b && (q = conf_block_get_number(b, "recent", &num, d)) == 0) {
                if (num < 1 || num > 1000 || num != (double)(size_t)num)
                        r = conf_block_diag(b, "recent", d, "recent must be a whole number 1 .. 1000");
                else
                        st->recent_n = (size_t)num;
        } else if (q == -EINVAL) {
                r = q;
        }
        if (b && (q = conf_block_get_string(b, "users_file", &s, d)) == 0) {
                st->users_file = resolve_path(ctx, s);
                if (!st->users_file)
                        r = -ENOMEM;
                else if ((q = read_users(st, b, d)) < 0)
                        r = q;
        } else if (q == -EINVAL) {
                r = q;
        }
        if (ctx && ctx->state_dir)
                st->engine_boots_file = xasprintf("%s/snmp-engine-boots", ctx->state_dir);
        if (!st->engine_id && ctx && ctx->agent_id) {
                /* net-snmp prefixes text engine IDs; it allows 27 bytes of text */
                st->engine_id = xasprintf("weibao:%.20s", ctx->agent_id);
        }
        if (b && (q = conf_block_check_unused(b, d)) < 0)
                r = q;
        if (r < 0) {
                snmptrap_free(st);
                return r;
        }
        *ret_state = st;
        return 0;
}

/* ---- reporting ---- */

static void emit_auth_report(struct snmptrap_state *st, struct failing_source *fs, uint64_t now)
{
        struct event e;

        event_init(&e, "snmptrap", "auth-failures", fs->addr);
        event_add_string(&e, "source_addr", fs->addr);
        event_add_number(&e, "failures", (double)fs->pending);
        event_add_number(&e, "total", (double)fs->total);
        event_add_string(&e, "reason", trap_verdict_to_string(fs->last_reason));
        fs->pending = 0;
        fs->last_report_mono = now;
        st->emit(&e, st->userdata);
}

/* The "many" report: failures of the sources beyond AUTH_REPORTS_MAX in a
 * period, at most once per auth_report. */
static void emit_many_report(struct snmptrap_state *st, uint64_t now)
{
        struct failing_many *m = &st->many;
        struct event e;

        event_init(&e, "snmptrap", "auth-failures", "many");
        event_add_string(&e, "source_addr", "many");
        event_add_number(&e, "sources", (double)m->sources);
        event_add_number(&e, "failures", (double)m->failures);
        event_add_number(&e, "total", (double)m->total);
        event_add_string(&e, "reason", trap_verdict_to_string(m->last_reason));
        m->sources = 0;
        m->failures = 0;
        m->last_report_mono = now;
        st->emit(&e, st->userdata);
}

/* A report of fs is due: its own while the period's budget lasts, else its
 * failures go into the "many" report. */
static void report_source(struct snmptrap_state *st, struct failing_source *fs, uint64_t now)
{
        if (st->auth_window == 0 || now - st->auth_window_start_mono >= st->auth_report_usec) {
                st->auth_window++;
                st->auth_window_start_mono = now;
                st->auth_reports = 0;
        }
        if (st->auth_reports < AUTH_REPORTS_MAX) {
                st->auth_reports++;
                emit_auth_report(st, fs, now);
                return;
        }
        if (fs->folded_window != st->auth_window) {
                fs->folded_window = st->auth_window;
                st->many.sources++;
        }
        st->many.failures += fs->pending;
        st->many.total += fs->pending;
        st->many.last_reason = fs->last_reason;
        fs->pending = 0;
        fs->last_report_mono = now;
}

static void note_failure(struct snmptrap_state *st, const char *addr, enum trap_verdict v)
{
        struct failing_source *fs = NULL, *oldest = NULL;
        uint64_t now = time_mono_usec();

        for (size_t i = 0; i < SOURCES_MAX; i++) {
                struct failing_source *c = &st->sources[i];
                if (c->addr[0] && strcmp(c->addr, addr) == 0) {
                        fs = c;
                        break;
                }
                if (!c->addr[0] && !oldest)
                        oldest = c;
        }
        if (!fs) {
                if (!oldest) {
                        /* the table is full of reported sources: reuse the one reported longest ago */
                        for (size_t i = 0; i < SOURCES_MAX; i++) {
                                struct failing_source *c = &st->sources[i];
                                if (c->pending == 0 && (!oldest || c->last_report_mono < oldest->last_report_mono))
                                        oldest = c;
                        }
                        if (!oldest) {
                                /* every source waits for its report: this one is
                                 * counted in the "many" report, as one more source */
                                st->sources_overflow++;
                                st->many.sources++;
                                st->many.failures++;
                                st->many.total++;
                                st->many.last_reason = v;
                                return;
                        }
                }
                fs = oldest;
                memset(fs, 0, sizeof *fs);
                snprintf(fs->addr, sizeof fs->addr, "%s", addr);
        }
        fs->pending++;
        fs->total++;
        fs->last_reason = v;
        if (fs->last_report_mono == 0 || now - fs->last_report_mono >= st->auth_report_usec)
                report_source(st, fs, now);
}

static uint32_t socket_drops(int fd)
{
        uint32_t mem[SK_MEMINFO_VARS] = {0};
        socklen_t len = sizeof mem;

        if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0 || len < sizeof(uint32_t) * (SK_MEMINFO_DROPS + 1))
                return 0;
        return mem[SK_MEMINFO_DROPS];
}

static void check_drops(struct snmptrap_state *st)
{
        for (size_t i = 0; i < st->n_listeners; i++) {
                struct listener *l = &st->listeners[i];
                uint32_t now = socket_drops(l->fd), delta = now - l->drops_seen;
                struct event e;

                if (delta == 0)
                        continue;
                l->drops_seen = now;
                st->kernel_drops += delta;
                log_warning("snmptrap: %s: the kernel dropped %u notifications (receive buffer full)", l->address,
                            delta);
                event_init(&e, "snmptrap", "traps-lost", l->address);
                event_add_string(&e, "listen", l->address);
                event_add_number(&e, "lost", delta);
                event_add_number(&e, "total", (double)st->kernel_drops);
                event_add_number(&e, "receive_buffer", l->rcvbuf);
                st->emit(&e, st->userdata);
        }
}

/* Notifications lost after the kernel gave them to the agent: not decoded
 * (the SNMP module could not be set up), truncated, or decoded with
 * varbinds left out, plus failures that no source entry could hold. Kernel
 * drops have their own event (traps-lost). */
static uint64_t shed_total(const struct snmptrap_state *st)
{
        return st->kernel_drops + st->unprocessed + st->truncated;
}

/* A traps-shed event when anything was shed since the last one, at most
 * once per SHED_REPORT_USEC. */
static void check_shed(struct snmptrap_state *st, uint64_t now)
{
        static const char *const what[4] = {"not decoded (SNMP module not set up)", "truncated",
                                            "varbind(s) left out of decoded notifications",
                                            "failure(s) from sources beyond the report table"};
        const uint64_t cur[4] = {st->unprocessed, st->truncated, st->varbinds_dropped, st->sources_overflow};
        static const char *const keys[4] = {"unprocessed", "truncated", "varbinds_dropped", "auth_sources_overflow"};
        char text[400];
        size_t used = 0;
        bool any = false;
        struct event e;

        for (int i = 0; i < 4; i++)
                any |= cur[i] != st->shed_seen[i];
        if (!any || (st->shed_last_report_mono && now - st->shed_last_report_mono < SHED_REPORT_USEC))
                return;
        event_init(&e, "snmptrap", "traps-shed", "snmptrap");
        text[0] = '\0';
        for (int i = 0; i < 4; i++) {
                uint64_t d = cur[i] - st->shed_seen[i];
                event_add_number(&e, keys[i], (double)d);
                if (d && used < sizeof text) {
                        int n = snprintf(text + used, sizeof text - used, "%s%" PRIu64 " %s", used ? ", " : "", d,
                                         what[i]);
                        if (n > 0)
                                used += (size_t)n;
                }
                st->shed_seen[i] = cur[i];
        }
        event_add_string(&e, "what", text);
        event_add_number(&e, "shed_total", (double)shed_total(st));
        st->shed_last_report_mono = now;
        log_warning("snmptrap: shed: %s", text);
        st->emit(&e, st->userdata);
}

static uint64_t on_check(struct loop_source *s, uint64_t now, void *userdata)
{
        struct snmptrap_state *st = userdata;

        (void)s;
        check_drops(st);
        check_shed(st, now);
        for (size_t i = 0; i < SOURCES_MAX; i++) {
                struct failing_source *fs = &st->sources[i];
                if (fs->addr[0] && fs->pending && now - fs->last_report_mono >= st->auth_report_usec)
                        report_source(st, fs, now);
        }
        /* the first "many" report at the first check after the budget ran
         * out (its count then covers the burst), later ones once per period */
        if (st->many.failures &&
            (st->many.last_report_mono == 0 || now - st->many.last_report_mono >= st->auth_report_usec))
                emit_many_report(st, now);
        return CHECK_INTERVAL_USEC;
}

/* ---- receiving ---- */

static int ensure_receiver(struct snmptrap_state *st);

static enum trap_verdict on_trap(const struct trap_info *info, const struct event *e, void *userdata)
{
        struct snmptrap_state *st = userdata;
        enum trap_verdict v = TRAP_ACCEPTED;

        if (info->community) {
                v = TRAP_REJECT_COMMUNITY;
                for (size_t i = 0; i < st->n_communities; i++)
                        if (strcmp(st->communities[i], info->community) == 0) {
                                v = TRAP_ACCEPTED;
                                break;
                        }
        }
        if (v == TRAP_ACCEPTED) {
                const struct event_attr *dropped = event_find(e, "varbinds_dropped");
                bool matched;
                if (dropped && dropped->type == EVENT_ATTR_NUMBER && dropped->num > 0)
                        st->varbinds_dropped += (uint64_t)dropped->num;
                matched = st->emit(e, st->userdata);
                if (!matched)
                        st->unmatched++;
                event_ring_push(st->recent, e, matched ? "accepted" : "accepted, matched no rule");
        } else {
                event_ring_push(st->recent, e, trap_verdict_to_string(v));
        }
        return v;
}

static void handle_datagram(struct snmptrap_state *st, int fd, const uint8_t *buf, size_t len, bool truncated,
                            const struct sockaddr_storage *from, socklen_t fromlen)
{
        enum trap_verdict v;
        char addr[INET6_ADDRSTRLEN] = "?";

        st->received++;
        if (!source_allowed(st, from))
                v = TRAP_REJECT_SOURCE;
        else if (truncated) {
                st->truncated++;
                v = TRAP_REJECT_MALFORMED;
        } else if (ensure_receiver(st) < 0) {
                st->unprocessed++;
                return;
        } else
                v = st->api->feed(st->rx, buf, len, (const struct sockaddr *)from, fromlen, fd);
        st->counts[v]++;
        if (v == TRAP_REJECT_SOURCE || trap_verdict_is_auth_failure(v)) {
                if (from->ss_family == AF_INET)
                        inet_ntop(AF_INET, &((const struct sockaddr_in *)from)->sin_addr, addr, sizeof addr);
                else if (from->ss_family == AF_INET6) {
                        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)from)->sin6_addr;
                        if (IN6_IS_ADDR_V4MAPPED(a6))
                                inet_ntop(AF_INET, &a6->s6_addr[12], addr, sizeof addr);
                        else
                                inet_ntop(AF_INET6, a6, addr, sizeof addr);
                }
                note_failure(st, addr, v);
        }
}

static void on_readable(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct snmptrap_state *st = userdata;
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        struct sockaddr_storage from[BATCH];

        (void)s;
        (void)events;
        for (int round = 0; round < BATCHES_PER_WAKEUP; round++) {
                int n;

                for (size_t i = 0; i < BATCH; i++) {
                        iov[i].iov_base = st->bufs + i * DATAGRAM_MAX;
                        iov[i].iov_len = DATAGRAM_MAX;
                        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                        msgs[i].msg_hdr.msg_iov = &iov[i];
                        msgs[i].msg_hdr.msg_iovlen = 1;
                        msgs[i].msg_hdr.msg_name = &from[i];
                        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
                }
                n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                                log_debug("snmptrap: recvmmsg: %m");
                        return;
                }
                for (int i = 0; i < n; i++)
                        handle_datagram(st, fd, iov[i].iov_base, msgs[i].msg_len,
                                        (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, &from[i],
                                        msgs[i].msg_hdr.msg_namelen);
                if (n < BATCH)
                        return;
        }
}

/* ---- sockets ---- */

static void take_activated_sockets(void)
{
        int n;

        if (activation_checked)
                return;
        activation_checked = true;
        n = sd_listen_fds(1);
        if (n <= 0)
                return;
        for (int i = 0; i < n && n_parked < LISTEN_MAX; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) <= 0)
                        continue;
                parked[n_parked].address = xasprintf("systemd:%d", fd);
                parked[n_parked].fd = fd;
                parked[n_parked].activated = true;
                n_parked++;
        }
}

/* net.core.rmem_max, or -1 when it cannot be read. */
static long rmem_max(void)
{
        FILE *f = fopen("/proc/sys/net/core/rmem_max", "re");
        long v = -1;

        if (!f)
                return -1;
        if (fscanf(f, "%ld", &v) != 1)
                v = -1;
        fclose(f);
        return v;
}

/* Raises the socket's receive buffer towards want and returns what the
 * kernel reports (twice the usable bytes, as SO_RCVBUF reads). Never shrinks
 * it: a buffer already at least want (systemd's ReceiveBuffer=, or one set
 * by root) is left alone, and without CAP_NET_ADMIN SO_RCVBUF would cap a
 * larger one at net.core.rmem_max. want 0: only read it. */
static int set_rcvbuf(int fd, int want)
{
        int got = 0;
        socklen_t len = sizeof got;

        if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0)
                return 0;
        /* the kernel doubles what was asked (bookkeeping overhead) */
        if (want <= 0 || got / 2 >= want)
                return got;
        /* FORCE needs CAP_NET_ADMIN. Without it SO_RCVBUF caps at rmem_max,
         * which may be below what the socket already has: then leave it. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) < 0) {
                long cap = rmem_max();
                if (cap >= 0 && (cap < want ? cap : want) <= got / 2)
                        return got;
                (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
        }
        len = sizeof got;
        if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0)
                return 0;
        return got;
}

static int open_listener(const char *spec, char *err, size_t errsize)
{
        struct sockaddr_storage ss;
        socklen_t len;
        int fd, one = 1;

        if (parse_listen(spec, &ss, &len, err, errsize) < 0)
                return -EINVAL;
        fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                int e = errno;
                snprintf(err, errsize, "%s: socket: %s", spec, strerror(e));
                return -e;
        }
        if (ss.ss_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
                int e = errno;
                snprintf(err, errsize, "%s: bind: %s%s", spec, strerror(e),
                         e == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE; under systemd "
                                       "weibao-agent.socket passes port 162)"
                                     : "");
                close(fd);
                return -e;
        }
        return fd;
}

static int add_listener(struct snmptrap_state *st, const char *address, int fd, bool activated)
{
        struct listener *l = &st->listeners[st->n_listeners];
        int flags = fcntl(fd, F_GETFL);
        int r;

        if (flags >= 0 && !(flags & O_NONBLOCK))
                (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        memset(l, 0, sizeof *l);
        l->address = xstrdup(address);
        if (!l->address)
                return -ENOMEM;
        l->fd = fd;
        l->activated = activated;
        /* a socket systemd passed keeps its unit's ReceiveBuffer= unless
         * receive_buffer is set explicitly, and then is only raised */
        l->rcvbuf = set_rcvbuf(fd, activated && !st->rcvbuf_explicit ? 0 : st->rcvbuf);
        l->drops_seen = socket_drops(fd);
        r = loop_add_io(st->loop, fd, EPOLLIN, address, on_readable, st, &l->src);
        if (r < 0) {
                free(l->address);
                return r;
        }
        st->n_listeners++;
        return 0;
}

static int take_parked(const char *address)
{
        for (size_t i = 0; i < n_parked; i++)
                if (strcmp(parked[i].address, address) == 0) {
                        int fd = parked[i].fd;
                        free(parked[i].address);
                        parked[i] = parked[--n_parked];
                        return fd;
                }
        return -1;
}

static void snmptrap_stop(void *userdata)
{
        struct snmptrap_state *st = userdata;

        if (!st || !st->started)
                return;
        for (size_t i = 0; i < st->n_listeners; i++) {
                struct listener *l = &st->listeners[i];
                loop_remove(l->src);
                if (n_parked < LISTEN_MAX) {
                        parked[n_parked].address = l->address;
                        parked[n_parked].fd = l->fd;
                        parked[n_parked].activated = l->activated;
                        n_parked++;
                } else {
                        if (!l->activated)
                                close(l->fd);
                        free(l->address);
                }
        }
        st->n_listeners = 0;
        loop_remove(st->check_timer);
        st->check_timer = NULL;
        if (st->rx)
                st->api->free(st->rx);
        st->rx = NULL;
        event_ring_free(st->recent);
        st->recent = NULL;
        free(st->bufs);
        st->bufs = NULL;
        st->started = false;
}

/* weibao's own MIB subset: $WEIBAO_MIBDIR, else the source tree's copy when
 * the agent runs from the build directory, else the installed one. */
static const char *builtin_mib_dir(char *buf, size_t size)
{
        const char *env = getenv("WEIBAO_MIBDIR");
        char exe[4096];
        ssize_t n;

        if (env && *env)
                return env;
        n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
                char *slash;
                exe[n] = '\0';
                slash = strrchr(exe, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(buf, size, "%s/../collectors/mibs", exe);
                        if (access(buf, R_OK | X_OK) == 0)
                                return buf;
                }
        }
        return WEIBAO_MIBDIR;
}

/* weibao-snmp.so: $WEIBAO_SNMP_MODULE (tests, development), else next to
 * our own binary (a build tree), else the installed one. Loaded once per
 * process and never unloaded: net-snmp's state lives in it. */
static const struct snmp_receiver_api *load_module(char *err, size_t errsize)
{
        static const struct snmp_receiver_api *api;
        const char *env = getenv("WEIBAO_SNMP_MODULE");
        char path[4200], exe[4096];
        void *h;
        ssize_t n;

        if (api)
                return api;
        if (env && *env) {
                snprintf(path, sizeof path, "%s", env);
        } else {
                snprintf(path, sizeof path, "%s/weibao-snmp.so", WEIBAO_LIBEXECDIR);
                n = readlink("/proc/self/exe", exe, sizeof exe - 1);
                if (n > 0) {
                        char *slash;
                        exe[n] = '\0';
                        if ((slash = strrchr(exe, '/'))) {
                                char local[4200];
                                *slash = '\0';
                                snprintf(local, sizeof local, "%s/weibao-snmp.so", exe);
                                if (access(local, R_OK) == 0)
                                        snprintf(path, sizeof path, "%s", local);
                        }
                }
        }
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                snprintf(err, errsize, "cannot load the SNMP module: %s", dlerror());
                return NULL;
        }
        api = dlsym(h, SNMP_RECEIVER_API_SYMBOL);
        if (!api) {
                snprintf(err, errsize, "%.300s has no %s", path, SNMP_RECEIVER_API_SYMBOL);
                dlclose(h);
                return NULL;
        }
        log_info("snmptrap: loaded %s", path);
        return api;
}

/* net-snmp, with the OpenSSL it needs for USM and the MIB tree, costs well
 * over a megabyte, so its module is loaded and set up when the first
 * datagram arrives: an agent that never receives a notification never pays
 * for it. */
static int ensure_receiver(struct snmptrap_state *st)
{
        struct snmp_receiver_settings rs = {
                .mib_dirs = (const char *const *)st->mib_dirs,
                .n_mib_dirs = st->n_mib_dirs,
                .engine_boots_file = st->engine_boots_file,
                .engine_id = st->engine_id,
        };
        char err[600], mibdir[4200];
        uint64_t now = time_mono_usec();
        int r;

        if (st->rx)
                return 0;
        if (st->rx_failed_mono && now - st->rx_failed_mono < 60000000)
                return -EAGAIN; /* do not retry (and log) for every datagram */
        rs.builtin_mib_dir = builtin_mib_dir(mibdir, sizeof mibdir);
        if (!st->api && !(st->api = load_module(err, sizeof err))) {
                st->rx_failed_mono = now;
                log_err("snmptrap: %s; notifications are counted as unprocessed", err);
                return -ENOENT;
        }
        r = st->api->new (&rs, on_trap, st, err, sizeof err, &st->rx);
        if (r < 0) {
                st->rx_failed_mono = now;
                log_err("snmptrap: cannot set up SNMP decoding: %s; notifications are counted as unprocessed", err);
                return r;
        }
        st->api->set_min_security(st->rx, st->min_security);
        st->user_errors = 0;
        for (size_t i = 0; i < st->n_users; i++)
                if (st->api->add_user(st->rx, st->users[i], err, sizeof err) < 0) {
                        st->user_errors++;
                        log_err("snmptrap: %s: user %zu not added: %s", st->users_file, i + 1, err);
                }
        log_info("snmptrap: SNMP decoding ready: engine ID 0x%s, %zu v3 user(s)", st->api->engine_id(st->rx),
                 st->n_users - st->user_errors);
        return 0;
}

static int snmptrap_start(void *userdata, struct loop *loop, collector_emit_fn emit, void *emit_userdata)
{
        struct snmptrap_state *st = userdata;
        char err[600];
        int r;

        st->loop = loop;
        st->emit = emit;
        st->userdata = emit_userdata;
        st->rx_failed_mono = 0;
        st->bufs = xmalloc((size_t)BATCH * DATAGRAM_MAX);
        st->recent = event_ring_new(st->recent_n);
        if (!st->bufs || !st->recent) {
                r = -ENOMEM;
                goto fail;
        }

        take_activated_sockets();
        bool activated = false;
        for (size_t i = 0; i < n_parked; i++)
                activated |= parked[i].activated;
        if (activated) {
                log_info("snmptrap: using the sockets systemd passed; the listen setting does not apply");
                while (n_parked > 0) {
                        size_t i = n_parked - 1;
                        if (!parked[i].activated) {
                                close(parked[i].fd);
                                free(parked[i].address);
                                n_parked--;
                                continue;
                        }
                        r = add_listener(st, parked[i].address, parked[i].fd, true);
                        if (r < 0)
                                goto fail;
                        free(parked[i].address);
                        n_parked--;
                }
        } else {
                for (size_t i = 0; i < st->n_listen; i++) {
                        int fd = take_parked(st->listen[i]);
                        if (fd < 0)
                                fd = open_listener(st->listen[i], err, sizeof err);
                        if (fd < 0) {
                                r = fd;
                                log_err("snmptrap: %s", err);
                                goto fail;
                        }
                        r = add_listener(st, st->listen[i], fd, false);
                        if (r < 0) {
                                close(fd);
                                goto fail;
                        }
                }
                /* sockets of addresses no longer configured */
                while (n_parked > 0) {
                        n_parked--;
                        close(parked[n_parked].fd);
                        free(parked[n_parked].address);
                }
        }
        r = loop_add_timer(loop, CHECK_INTERVAL_USEC, 0, "snmptrap-check", on_check, st, &st->check_timer);
        if (r < 0)
                goto fail;
        st->started = true;
        log_info("snmptrap: listening on %zu socket(s), %zu v3 user(s), %zu communities", st->n_listeners, st->n_users,
                 st->n_communities);
        if (st->n_communities == 0)
                log_notice("snmptrap: no community configured: v1 and v2c notifications are rejected");
        return 0;
fail:
        st->started = true;
        snmptrap_stop(st);
        /* a failed start must not keep what it opened */
        while (n_parked > 0 && !parked[n_parked - 1].activated) {
                n_parked--;
                close(parked[n_parked].fd);
                free(parked[n_parked].address);
        }
        return r;
}

static cJSON *snmptrap_status(void *userdata, bool verbose)
{
        struct snmptrap_state *st = userdata;
        cJSON *o = cJSON_CreateObject(), *x;
        uint64_t rejected = 0;

        if (!o)
                return NULL;
        check_drops(st);
        cJSON_AddNumberToObject(o, "received", (double)st->received);
        cJSON_AddNumberToObject(o, "accepted", (double)st->counts[TRAP_ACCEPTED]);
        if ((x = cJSON_AddObjectToObject(o, "rejected")))
                for (int v = TRAP_REJECT_SOURCE; v < TRAP_VERDICT_MAX; v++) {
                        if (v == TRAP_DISCOVERY)
                                continue;
                        cJSON_AddNumberToObject(x, trap_verdict_to_string((enum trap_verdict)v), (double)st->counts[v]);
                        rejected += st->counts[v];
                }
        cJSON_AddNumberToObject(o, "rejected_total", (double)rejected);
        cJSON_AddNumberToObject(o, "discovery", (double)st->counts[TRAP_DISCOVERY]);
        cJSON_AddNumberToObject(o, "unmatched", (double)st->unmatched);
        cJSON_AddNumberToObject(o, "truncated", (double)st->truncated);
        cJSON_AddNumberToObject(o, "unprocessed", (double)st->unprocessed);
        cJSON_AddNumberToObject(o, "kernel_drops", (double)st->kernel_drops);
        /* every notification lost on the way: in the kernel, not decoded, truncated */
        cJSON_AddNumberToObject(o, "shed", (double)shed_total(st));
        cJSON_AddNumberToObject(o, "varbinds_dropped", (double)st->varbinds_dropped);
        cJSON_AddNumberToObject(o, "reply_failures", st->rx ? (double)st->api->reply_failures(st->rx) : 0);
        cJSON_AddNumberToObject(o, "auth_sources_overflow", (double)st->sources_overflow);
        cJSON_AddNumberToObject(o, "users", (double)(st->n_users - st->user_errors));
        cJSON_AddNumberToObject(o, "user_errors", (double)st->user_errors);
        if (st->rx)
                cJSON_AddStringToObject(o, "engine_id", st->api->engine_id(st->rx));
        cJSON_AddStringToObject(o, "decoder", st->rx ? "ready" : "not set up until the first datagram");
        if ((x = cJSON_AddArrayToObject(o, "listen")))
                for (size_t i = 0; i < st->n_listeners; i++) {
                        const struct listener *l = &st->listeners[i];
                        cJSON *y = cJSON_CreateObject();
                        if (!y)
                                break;
                        cJSON_AddStringToObject(y, "address", l->address);
                        cJSON_AddBoolToObject(y, "from_systemd", l->activated);
                        cJSON_AddNumberToObject(y, "receive_buffer", l->rcvbuf);
                        cJSON_AddItemToArray(x, y);
                }
        if (verbose && st->recent)
                json_add(o, "recent", event_ring_to_json(st->recent));
        return o;
}

static void snmptrap_free(void *userdata)
{
        struct snmptrap_state *st = userdata;

        if (!st)
                return;
        snmptrap_stop(st);
        for (size_t i = 0; i < st->n_listen; i++)
                free(st->listen[i]);
        for (size_t i = 0; i < st->n_communities; i++)
                free(st->communities[i]);
        for (size_t i = 0; i < st->n_users; i++) {
                explicit_bzero(st->users[i], strlen(st->users[i]));
                free(st->users[i]);
        }
        for (size_t i = 0; i < st->n_mib_dirs; i++)
                free(st->mib_dirs[i]);
        free(st->users_file);
        free(st->engine_id);
        free(st->engine_boots_file);
        free(st);
}

const struct collector_ops snmptrap_collector_ops = {
        .name = "snmptrap",
        .default_enabled = true,
        .new = snmptrap_new,
        .start = snmptrap_start,
        .stop = snmptrap_stop,
        .status = snmptrap_status,
        .free = snmptrap_free,
};
