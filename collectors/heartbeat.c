/* heartbeat: the links to the HA peer, seen two ways at once.
 *
 * 1. The kernel's view, from rtnetlink events on the loop (no polling):
 *    admin state, carrier, operstate, the link's local address. A change is
 *    seen the moment the kernel announces it.
 * 2. An authenticated UDP heartbeat with the peer's agent over exactly that
 *    link: the socket is bound to the link's local address, every packet
 *    leaves through the link's interface (IP_PKTINFO with its ifindex) and
 *    an arriving packet counts only when it came in on that interface from
 *    the peer's address with a valid HMAC and a fresh sequence number
 *    (hbwire.h has the format). A deadline timer per link notices silence.
 * A link is up when both views say so. Optionally a management path
 * (peer_address: the peer over the ordinary network) tells "all links down
 * but the peer alive" (split-brain risk) from "peer down".
 *
 * Settings, in "collector heartbeat { ... }" (one group: this agent and its
 * HA peer):
 *   peer          string, required: the HA peer's name, used in titles;
 *   group         string, default the peer's name: the fault key's group;
 *   link          repeatable, 1..8, "INTERFACE LOCAL_ADDRESS PEER_ADDRESS"
 *                 (IPv4): a dedicated heartbeat link;
 *   peer_address  optional IPv4 address of the peer on another network;
 *   port          UDP port on both sides, default 7405;
 *   interval      duration, 10ms .. 10s, default 200ms;
 *   timeout       duration, more than interval, default 5 x interval and
 *                 at least 1s: silence after which a clean link's heartbeat
 *                 counts as lost; a lossy link is allowed more silence, up
 *                 to 3 x timeout, as its own loss makes a run of losses
 *                 likely (hbwire_window_allowance);
 *   key_file      required: the shared key (at least 16 bytes; trailing
 *                 whitespace is not part of it); like the token file it
 *                 must not be readable by group or others;
 *   window        duration, default 10s: loss, RTT and jitter are over the
 *                 last window / interval heartbeats (8 .. 1024);
 *   startup_grace duration, default 5s: how long after start a peer that
 *                 has not been heard yet is not taken as silent;
 *   report_interval duration, default 1s: how often the figures go to the
 *                 rules as events (state changes go at once);
 *   flap_count    number, default 3, and flap_window duration, default 60s:
 *                 a link that went down flap_count times within flap_window
 *                 is flapping; it counts as down until it has stayed up for
 *                 flap_window;
 *   corosync      bool, default yes: where corosync runs, show its own knet
 *                 link status (corosync-cfgtool -s) beside ours.
 *
 * Events (source "heartbeat"; docs/heartbeat.md lists every field):
 *   link   object the interface, on every state change and every
 *          report_interval: state, kernel, heartbeat, loss, rtt_ms, ...
 *   group  object the group: links, links_up, links_down, down_links,
 *          peer_reachable, verdict.
 *
 * Assumptions: one group per agent (an HA pair); IPv4 links. Sockets set
 * SO_REUSEADDR so the management socket (any address) and the per-link
 * sockets (their own address) can share the port; IP_FREEBIND lets a link
 * whose address is missing still be watched (it is reported down, and comes
 * back by itself when the address returns). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <signal.h>
#include <spawn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../agent/loop.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../rules/conf.h"
#include "../rules/rules.h"
#include "collector.h"
#include "hbwire.h"

#define LINKS_MAX 8
#define GROUP_NAME_MAX 64 /* bytes; with "/" and an interface name it fits OBJECT_MAX */
#define OBJECT_MAX 96     /* a link event's object, "{group}/{interface}" */
#define DEFAULT_PORT 7405
#define DEFAULT_INTERVAL_USEC 200000ull
#define MIN_INTERVAL_USEC 10000ull
#define MAX_INTERVAL_USEC 10000000ull
#define DEFAULT_TIMEOUT_MIN_USEC 1000000ull
#define ALLOWANCE_TIMEOUTS 3 /* a lossy link's silence allowance: at most this many timeouts */
#define DEFAULT_WINDOW_USEC 10000000ull
#define DEFAULT_GRACE_USEC 5000000ull
#define DEFAULT_REPORT_USEC 1000000ull
#define DEFAULT_FLAP_COUNT 3
#define FLAP_COUNT_MAX 32
#define DEFAULT_FLAP_WINDOW_USEC 60000000ull
#define KEY_FILE_MAX 4096
#define NL_BUF 65536                    /* one netlink read; a larger message is counted and a dump is redone */
#define NL_DUMP_TIMEOUT_USEC 2000000ull /* a dump not finished by then is asked again */
#define DGRAM_BUF 512
#define RX_PER_WAKEUP 64
#define COROSYNC_TEXT_MAX 4096
#define COROSYNC_EVERY_USEC (10 * 1000000ull)
#define COROSYNC_TIMEOUT_USEC (10 * 1000000ull) /* a corosync-cfgtool running longer is killed */
#define MIN_LOSS_SLOTS 8                        /* below this the loss figure is not reported */
/* RFC 2863 operstates and FLAG_LOWER_UP as <linux/if.h> has them (that
 * header cannot be included beside <net/if.h>). */
#define OPER_UNKNOWN 0
#define OPER_UP 6
#define FLAG_LOWER_UP 0x10000

enum hb_link_state {
        HB_LINK_STARTING,
        HB_LINK_UP,
        HB_LINK_DOWN,
        HB_LINK_STATE_MAX,
};

static const char *hb_link_state_to_string(enum hb_link_state s)
{
        static const char *const names[HB_LINK_STATE_MAX] = {"starting", "up", "down"};
        return (unsigned)s < HB_LINK_STATE_MAX ? names[s] : "?";
}

struct hb_link {
        struct hb_state *st;
        bool mgmt;  /* the management path: no interface of its own, not one of the links */
        char *name; /* interface name ("mgmt" for the management path) */
        char *spec; /* the link setting as given */
        struct in_addr local, peer;
        char local_s[INET_ADDRSTRLEN], peer_s[INET_ADDRSTRLEN];

        int fd;
        struct loop_source *io, *deadline;

        /* kernel view (netlink) */
        int ifindex; /* 0: no such interface */
        bool k_admin_up, k_carrier, k_addr;
        bool k_seen; /* in the running dump: the link (link phase), its address (address phase) */
        uint8_t k_operstate;

        /* heartbeat view */
        bool hb_alive, hb_heard;
        uint64_t last_rx_mono;
        uint64_t allowance_usec; /* silence allowed now: timeout, longer on a lossy link */
        uint64_t tx_seq;
        uint64_t first_tx_seq;    /* our first seq on this link in this run */
        bool fresh;               /* the peer has acknowledged one of this run's sends */
        uint64_t unproven;        /* authentic datagrams taken before that proof, not as life */
        uint64_t rx_highest_mono; /* when the highest peer seq arrived, for ack_delay */
        struct hbwire_window win;
        struct hbwire_sent sent;
        struct hbwire_rtt rtt;
        uint16_t peer_loss;

        /* the combined state */
        enum hb_link_state state;
        bool raw_up;
        uint64_t since_mono;       /* of the current state */
        uint64_t last_change_mono; /* of raw_up */
        uint64_t downs[FLAP_COUNT_MAX];
        size_t n_downs, downs_head;
        bool flapping;
        uint64_t flaps_total;

        /* counters */
        uint64_t sent_ok, send_errors, received, counts[HBWIRE_VERDICT_MAX];
        uint64_t transitions;
};

struct hb_state {
        /* settings */
        char *peer, *group, *key_file;
        struct hbwire_key key;
        uint16_t port;
        uint64_t interval_usec, timeout_usec, window_usec, grace_usec, report_usec, flap_window_usec;
        size_t flap_count, window_slots;
        bool corosync;
        uint32_t own_tag;
        struct hb_link links[LINKS_MAX + 1]; /* the management path, if any, last */
        size_t n_links;                      /* dedicated links */
        bool has_mgmt;

        /* running */
        bool started;
        struct loop *loop;
        collector_emit_fn emit;
        void *userdata;
        int nl_fd;
        struct loop_source *nl_io, *send_timer, *report_timer;
        enum { NL_DUMP_LINKS, NL_DUMP_ADDRS, NL_IDLE } nl_phase;
        uint32_t nl_seq;
        uint64_t nl_phase_mono; /* when the running dump was asked for */
        bool nl_synced;         /* a link and an address dump are in: the kernel view is complete */
        bool nl_damaged;        /* the running dump lost a message (truncated, overrun): not trusted */
        bool nl_redo;           /* a dump is owed: asked again from the report timer */
        bool nl_failing;        /* the last request failed (logged once until one succeeds) */
        uint8_t *nl_buf;
        uint64_t started_mono;
        uint64_t nl_messages, nl_overruns, nl_errors;
        char verdict[32];

        /* corosync's view (corosync-cfgtool -s) */
        bool coro_running;
        pid_t coro_pid;
        int coro_fd, coro_exit;
        struct loop_source *coro_io;
        uint64_t coro_last_mono; /* when the tool was last started */
        bool coro_killed;        /* the last run did not finish in time and was killed */
        int64_t coro_wall;
        size_t coro_len;
        bool coro_truncated;
        char coro_buf[COROSYNC_TEXT_MAX];
        char coro_text[COROSYNC_TEXT_MAX];
};

static size_t all_links(const struct hb_state *st)
{
        return st->n_links + (st->has_mgmt ? 1 : 0);
}

/* ---- settings ---- */

static int parse_addr(const char *s, struct in_addr *a, char *out)
{
        if (inet_pton(AF_INET, s, a) != 1)
                return -EINVAL;
        inet_ntop(AF_INET, a, out, INET_ADDRSTRLEN);
        return 0;
}

static int parse_link(struct hb_link *l, const char *spec)
{
        char buf[256], *save = NULL, *w[4];
        size_t n = 0;

        if (strlen(spec) >= sizeof buf)
                return -EINVAL;
        strcpy(buf, spec);
        for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
                if (n == 4)
                        return -EINVAL;
                w[n++] = t;
        }
        if (n != 3)
                return -EINVAL;
        if (strlen(w[0]) >= IFNAMSIZ)
                return -ENAMETOOLONG;
        if (parse_addr(w[1], &l->local, l->local_s) < 0 || parse_addr(w[2], &l->peer, l->peer_s) < 0)
                return -EINVAL;
        l->name = xstrdup(w[0]);
        l->spec = xstrdup(spec);
        return l->name && l->spec ? 0 : -ENOMEM;
}

static char *resolve_path(const struct collector_context *ctx, const char *p)
{
        if (p[0] == '/' || !ctx || !ctx->base_dir)
                return xstrdup(p);
        return xasprintf("%s/%s", ctx->base_dir, p);
}

/* The key file holds the shared secret: refuse it when group or others may
 * read it, as the token file. */
static int read_key(struct hb_state *st, const struct conf_block *b, struct diag *d)
{
        uint8_t buf[KEY_FILE_MAX + 1];
        struct stat sb;
        size_t n;
        int fd, r;

        fd = open(st->key_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return conf_block_diag(b, "key_file", d, "cannot read %s: %s", st->key_file, strerror(errno));
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                close(fd);
                return conf_block_diag(b, "key_file", d, "%s is not a regular file", st->key_file);
        }
        if (sb.st_mode & 0077) {
                close(fd);
                return conf_block_diag(b, "key_file", d,
                                       "%s holds the heartbeat key but group or others may read it (mode %04o); "
                                       "chmod 600 it",
                                       st->key_file, (unsigned)(sb.st_mode & 07777));
        }
        n = 0;
        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof buf - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                n += (size_t)k;
                if (n == sizeof buf)
                        break;
        }
        close(fd);
        r = n > KEY_FILE_MAX ? -E2BIG : hbwire_key_set(&st->key, buf, n);
        explicit_bzero(buf, sizeof buf);
        if (r == -E2BIG)
                return conf_block_diag(b, "key_file", d, "%s: the key is longer than %d bytes", st->key_file,
                                       HBWIRE_KEY_MAX);
        if (r < 0)
                return conf_block_diag(b, "key_file", d,
                                       "%s: the key must be at least %d bytes (e.g. head -c 32 /dev/urandom | "
                                       "base64 > FILE)",
                                       st->key_file, HBWIRE_KEY_MIN);
        return 0;
}

static int get_duration(const struct conf_block *b, const char *key, uint64_t *v, uint64_t min, uint64_t max,
                        struct diag *d)
{
        int r = conf_block_get_duration(b, key, v, d);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (*v < min || *v > max) {
                char lo[32], hi[32];
                duration_format(min, lo, sizeof lo);
                duration_format(max, hi, sizeof hi);
                return conf_block_diag(b, key, d, "%s must be between %s and %s", key, lo, hi);
        }
        return 0;
}

static uint32_t own_tag(const struct collector_context *ctx)
{
        char buf[256] = "";
        FILE *f;

        if (ctx && ctx->agent_id)
                return hbwire_tag(ctx->agent_id);
        f = fopen("/etc/machine-id", "re");
        if (f) {
                if (!fgets(buf, sizeof buf, f))
                        buf[0] = '\0';
                fclose(f);
        }
        if (!buf[0])
                gethostname(buf, sizeof buf - 1);
        buf[strcspn(buf, "\n")] = '\0';
        return hbwire_tag(buf);
}

static void hb_free(void *userdata);

static int hb_new(const struct conf_block *b, const struct collector_context *ctx, struct diag *d, void **ret_state)
{
        struct hb_state *st = xcalloc(1, sizeof *st);
        const char **specs = NULL;
        size_t n_specs = 0;
        const char *s;
        double num;
        bool timeout_set, group_given = false;
        int r = 0, q;

        if (!st)
                return -ENOMEM;
        st->nl_fd = -1;
        st->coro_fd = -1;
        st->port = DEFAULT_PORT;
        st->interval_usec = DEFAULT_INTERVAL_USEC;
        st->window_usec = DEFAULT_WINDOW_USEC;
        st->grace_usec = DEFAULT_GRACE_USEC;
        st->report_usec = DEFAULT_REPORT_USEC;
        st->flap_count = DEFAULT_FLAP_COUNT;
        st->flap_window_usec = DEFAULT_FLAP_WINDOW_USEC;
        st->corosync = true;
        for (size_t i = 0; i <= LINKS_MAX; i++)
                st->links[i].fd = -1;
        if (!b) {
                /* enabled only by a block: there is nothing to watch without one */
                hb_free(st);
                return -EINVAL;
        }

        if ((q = conf_block_get_string(b, "peer", &s, d)) == 0) {
                if (!(st->peer = xstrdup(s)))
                        r = -ENOMEM;
        } else if (q == -ENOENT)
                r = conf_block_diag(b, NULL, d, "needs 'peer' (the HA peer's name)");
        else
                r = q;
        if ((q = conf_block_get_string(b, "group", &s, d)) == 0) {
                group_given = true;
                if (!(st->group = xstrdup(s)))
                        r = -ENOMEM;
        } else if (q == -EINVAL)
                r = q;
        if (!st->group && st->peer && !(st->group = xstrdup(st->peer)))
                r = -ENOMEM;
        /* The group names fault keys and objects ("{group}/{interface}"):
         * a longer one is refused here, never cut short there. */
        if (st->group && strlen(st->group) > GROUP_NAME_MAX)
                r = conf_block_diag(b, group_given ? "group" : "peer", d,
                                    "the group name '%.20s...' is %zu bytes long; at most %d (it names the faults)",
                                    st->group, strlen(st->group), GROUP_NAME_MAX);

        q = conf_block_get_strings(b, "link", &specs, &n_specs, d);
        if (q == -ENOENT || (q == 0 && n_specs == 0))
                r = conf_block_diag(b, NULL, d, "needs at least one 'link \"INTERFACE LOCAL PEER\"'");
        else if (q < 0)
                r = q;
        else if (n_specs > LINKS_MAX)
                r = conf_block_diag(b, "link", d, "at most %d links", LINKS_MAX);
        else
                for (size_t i = 0; i < n_specs; i++) {
                        struct hb_link *l = &st->links[st->n_links];
                        q = parse_link(l, specs[i]);
                        if (q == -ENOMEM) {
                                r = q;
                                break;
                        }
                        if (q == -ENAMETOOLONG) {
                                r = conf_block_diag_nth(b, "link", i, 0, d,
                                                        "link '%s': interface names are at most %d bytes", specs[i],
                                                        IFNAMSIZ - 1);
                                continue;
                        }
                        if (q < 0) {
                                r = conf_block_diag_nth(b, "link", i, 0, d,
                                                        "link '%s': expected \"INTERFACE LOCAL_ADDRESS PEER_ADDRESS\" "
                                                        "(IPv4), e.g. \"hb0 10.0.0.1 10.0.0.2\"",
                                                        specs[i]);
                                continue;
                        }
                        for (size_t j = 0; j < st->n_links; j++)
                                if (strcmp(st->links[j].name, l->name) == 0 ||
                                    st->links[j].local.s_addr == l->local.s_addr)
                                        r = conf_block_diag_nth(b, "link", i, 0, d,
                                                                "link '%s': same interface or address as '%s'",
                                                                specs[i], st->links[j].spec);
                        l->st = st;
                        st->n_links++;
                }
        free(specs);

        if ((q = conf_block_get_string(b, "peer_address", &s, d)) == 0) {
                struct hb_link *m = &st->links[LINKS_MAX];
                if (parse_addr(s, &m->peer, m->peer_s) < 0)
                        r = conf_block_diag(b, "peer_address", d, "'%s' is not an IPv4 address", s);
                else {
                        m->mgmt = true;
                        m->st = st;
                        m->local.s_addr = htonl(INADDR_ANY);
                        snprintf(m->local_s, sizeof m->local_s, "0.0.0.0");
                        m->name = xstrdup("mgmt");
                        m->spec = xstrdup(s);
                        if (!m->name || !m->spec)
                                r = -ENOMEM;
                        st->has_mgmt = true;
                }
        } else if (q == -EINVAL)
                r = q;

        if ((q = conf_block_get_number(b, "port", &num, d)) == 0) {
                if (num < 1 || num > 65535 || num != (double)(uint16_t)num)
                        r = conf_block_diag(b, "port", d, "port must be a whole number 1 .. 65535");
                else
                        st->port = (uint16_t)num;
        } else if (q == -EINVAL)
                r = q;
        if ((q = get_duration(b, "interval", &st->interval_usec, MIN_INTERVAL_USEC, MAX_INTERVAL_USEC, d)) < 0)
                r = q;
        /* 5 heartbeats and at least 1 s: three losses in a row, which the
         * old 3 x interval default took for a dead link, come ~13 times a
         * minute on a link losing 30 %; five, ~0.5 times, and the lossy
         * link's own allowance (hbwire_window_allowance) covers the rest. */
        st->timeout_usec =
                5 * st->interval_usec < DEFAULT_TIMEOUT_MIN_USEC ? DEFAULT_TIMEOUT_MIN_USEC : 5 * st->interval_usec;
        q = conf_block_get_duration(b, "timeout", &st->timeout_usec, d);
        timeout_set = q == 0;
        if (q == -EINVAL)
                r = q;
        else if (timeout_set && (st->timeout_usec <= st->interval_usec || st->timeout_usec > 3600ull * 1000000))
                r = conf_block_diag(b, "timeout", d, "timeout must be longer than interval and at most 1h");
        if ((q = get_duration(b, "window", &st->window_usec, 100000, 3600ull * 1000000, d)) < 0)
                r = q;
        if ((q = get_duration(b, "startup_grace", &st->grace_usec, 0, 3600ull * 1000000, d)) < 0)
                r = q;
        if ((q = get_duration(b, "report_interval", &st->report_usec, 100000, 3600ull * 1000000, d)) < 0)
                r = q;
        if ((q = get_duration(b, "flap_window", &st->flap_window_usec, 1000000, 86400ull * 1000000, d)) < 0)
                r = q;
        if ((q = conf_block_get_number(b, "flap_count", &num, d)) == 0) {
                if (num < 2 || num > FLAP_COUNT_MAX || num != (double)(size_t)num)
                        r = conf_block_diag(b, "flap_count", d, "flap_count must be a whole number 2 .. %d",
                                            FLAP_COUNT_MAX);
                else
                        st->flap_count = (size_t)num;
        } else if (q == -EINVAL)
                r = q;
        if ((q = conf_block_get_bool(b, "corosync", &st->corosync, d)) == -EINVAL)
                r = q;
        if ((q = conf_block_get_string(b, "key_file", &s, d)) == 0) {
                if (!(st->key_file = resolve_path(ctx, s)))
                        r = -ENOMEM;
                else if ((q = read_key(st, b, d)) < 0)
                        r = q;
        } else if (q == -ENOENT)
                r = conf_block_diag(b, NULL, d, "needs 'key_file' (the shared heartbeat key)");
        else
                r = q;
        if ((q = conf_block_check_unused(b, d)) < 0)
                r = q;
        if (r < 0) {
                hb_free(st);
                return r;
        }
        st->window_slots = (size_t)(st->window_usec / st->interval_usec);
        if (st->window_slots < 8)
                st->window_slots = 8;
        if (st->window_slots > HBWIRE_WINDOW_MAX)
                st->window_slots = HBWIRE_WINDOW_MAX;
        if (st->has_mgmt) {
                /* the management path sits right after the dedicated links */
                st->links[st->n_links] = st->links[LINKS_MAX];
                memset(&st->links[LINKS_MAX], 0, sizeof st->links[LINKS_MAX]);
                st->links[LINKS_MAX].fd = -1;
        }
        st->own_tag = own_tag(ctx);
        *ret_state = st;
        return 0;
}

/* ---- state ---- */

static bool kernel_up(const struct hb_link *l)
{
        if (l->mgmt)
                return true;
        return l->st->nl_synced && l->ifindex > 0 && l->k_admin_up && l->k_carrier &&
               (l->k_operstate == OPER_UP || l->k_operstate == OPER_UNKNOWN) && l->k_addr;
}

static const char *operstate_name(uint8_t s)
{
        static const char *const names[] = {"unknown", "notpresent", "down", "lowerlayerdown",
                                            "testing", "dormant",    "up"};
        return s < sizeof names / sizeof names[0] ? names[s] : "?";
}

/* The kernel's verdict in one word, for events and status. */
static const char *kernel_reason(const struct hb_link *l, char *buf, size_t size)
{
        if (l->mgmt)
                snprintf(buf, size, "routed");
        else if (!l->st->nl_synced)
                snprintf(buf, size, "kernel-unknown");
        else if (l->ifindex <= 0)
                snprintf(buf, size, "absent");
        else if (!l->k_admin_up)
                snprintf(buf, size, "admin-down");
        else if (!l->k_carrier)
                snprintf(buf, size, "no-carrier");
        else if (l->k_operstate != OPER_UP && l->k_operstate != OPER_UNKNOWN)
                snprintf(buf, size, "operstate-%s", operstate_name(l->k_operstate));
        else if (!l->k_addr)
                snprintf(buf, size, "no-address");
        else
                snprintf(buf, size, "up");
        return buf;
}

static const char *hb_view(const struct hb_link *l)
{
        if (l->hb_alive)
                return "alive";
        return l->hb_heard ? "timeout" : "waiting";
}

static bool in_grace(const struct hb_state *st, uint64_t now)
{
        return now - st->started_mono < st->grace_usec;
}

/* Whether the link counts as down for the group (flapping counts as down). */
static bool counts_down(const struct hb_link *l)
{
        return l->state == HB_LINK_DOWN || l->flapping;
}

static void describe_down(const struct hb_link *l, char *buf, size_t size)
{
        char k[32];

        if (l->flapping)
                snprintf(buf, size, "%s (flapping)", l->name);
        else if (!kernel_up(l))
                snprintf(buf, size, "%s (%s)", l->name, kernel_reason(l, k, sizeof k));
        else
                snprintf(buf, size, "%s (no heartbeat for %.0f ms)", l->name, (double)l->allowance_usec / 1000);
}

static const char *group_verdict(const struct hb_state *st, size_t up, bool peer_reachable)
{
        if (up == st->n_links)
                return "ok";
        if (up > 0)
                return "partial";
        if (peer_reachable)
                return "split-brain-risk";
        return "peer-down";
}

static void emit_link(struct hb_state *st, struct hb_link *l, uint64_t now)
{
        struct hbwire_rtt_summary rs;
        struct event e;
        char k[32];
        size_t slots;
        unsigned loss = hbwire_window_loss(&l->win, &slots);

        char object[OBJECT_MAX];

        /* No "group" attribute on link events: rules keyed on {group} are
         * then never applied to them, so a link event can neither clear nor
         * interrupt the clearing of a group fault. */
        snprintf(object, sizeof object, "%s/%s", st->group, l->name);
        event_init(&e, "heartbeat", "link", object);
        if (slots >= MIN_LOSS_SLOTS) {
                event_set_value(&e, loss / 10.0, "%");
                event_add_number(&e, "loss", loss / 10.0);
        }
        event_add_string(&e, "peer", st->peer);
        event_add_string(&e, "link", l->name);
        event_add_string(&e, "local_addr", l->local_s);
        event_add_string(&e, "remote_addr", l->peer_s);
        event_add_string(&e, "state", hb_link_state_to_string(l->state));
        event_add_string(&e, "kernel", kernel_reason(l, k, sizeof k));
        event_add_string(&e, "heartbeat", hb_view(l));
        event_add_number(&e, "flapping", l->flapping ? 1 : 0);
        event_add_number(&e, "flaps", (double)l->n_downs);
        event_add_number(&e, "flap_window_s", (double)st->flap_window_usec / 1e6);
        event_add_number(&e, "since_s", (double)(now - l->since_mono) / 1e6);
        event_add_number(&e, "window", (double)slots);
        if (l->peer_loss != HBWIRE_LOSS_UNKNOWN)
                event_add_number(&e, "peer_loss", l->peer_loss / 10.0);
        hbwire_rtt_summary(&l->rtt, &rs);
        if (rs.samples > 0) {
                event_add_number(&e, "rtt_ms", (double)(long)(rs.mean_usec + 0.5) / 1000);
                event_add_number(&e, "rtt_max_ms", rs.max_usec / 1000);
                event_add_number(&e, "jitter_ms", (double)(long)(rs.jitter_usec + 0.5) / 1000);
        }
        event_add_number(&e, "received", (double)l->received);
        event_add_number(&e, "rejected", (double)(l->received - l->counts[HBWIRE_ACCEPTED]));
        event_add_number(&e, "management", l->mgmt ? 1 : 0);
        st->emit(&e, st->userdata);
}

static void emit_group(struct hb_state *st, const char *trigger)
{
        char down[512] = "", flapping[256] = "", one[64];
        size_t up = 0, n_down = 0, n_flap = 0;
        bool reachable = st->has_mgmt && st->links[st->n_links].state == HB_LINK_UP;
        struct event e;

        for (size_t i = 0; i < st->n_links; i++) {
                const struct hb_link *l = &st->links[i];
                if (!counts_down(l)) {
                        up++;
                        continue;
                }
                n_down++;
                describe_down(l, one, sizeof one);
                snprintf(down + strlen(down), sizeof down - strlen(down), "%s%s", n_down > 1 ? ", " : "", one);
                if (l->flapping)
                        snprintf(flapping + strlen(flapping), sizeof flapping - strlen(flapping), "%s%s",
                                 n_flap++ ? ", " : "", l->name);
        }
        snprintf(st->verdict, sizeof st->verdict, "%s", group_verdict(st, up, reachable));
        event_init(&e, "heartbeat", "group", st->group);
        event_add_string(&e, "group", st->group);
        event_add_string(&e, "peer", st->peer);
        event_add_number(&e, "links", (double)st->n_links);
        event_add_number(&e, "links_up", (double)up);
        event_add_number(&e, "links_down", (double)n_down);
        event_add_string(&e, "down_links", down);
        event_add_number(&e, "flapping", (double)n_flap);
        event_add_string(&e, "flapping_links", flapping);
        if (st->has_mgmt) {
                event_add_string(&e, "peer_address", st->links[st->n_links].peer_s);
                event_add_number(&e, "peer_reachable", reachable ? 1 : 0);
        }
        event_add_string(&e, "verdict", st->verdict);
        if (trigger)
                event_add_string(&e, "trigger", trigger);
        st->emit(&e, st->userdata);
}

static void note_down(struct hb_state *st, struct hb_link *l, uint64_t now)
{
        size_t oldest;

        l->downs[l->downs_head] = now;
        l->downs_head = (l->downs_head + 1) % st->flap_count;
        if (l->n_downs < st->flap_count)
                l->n_downs++;
        /* the oldest of the last flap_count downs still inside the window: flapping */
        oldest = l->downs_head; /* after the increment it points at the oldest entry when full */
        if (!l->flapping && l->n_downs == st->flap_count && now - l->downs[oldest] <= st->flap_window_usec) {
                l->flapping = true;
                l->flaps_total++;
                log_warning("heartbeat: %s: flapping (%zu downs within %.0f s)", l->name, st->flap_count,
                            (double)st->flap_window_usec / 1e6);
        }
}

/* Recomputes the link's state from both views; emits and logs a change. */
static void evaluate(struct hb_state *st, struct hb_link *l, uint64_t now)
{
        bool kup = kernel_up(l), raw = kup && l->hb_alive;
        enum hb_link_state ns;
        char k[32], trig[128];

        /* Between the first link dump and address dump a link would look
         * addressless: judge only from a complete picture, while the
         * startup grace lasts. A kernel view that never completes is not
         * silence: after the grace the links are down, "kernel-unknown". */
        if (!st->nl_synced && in_grace(st, now))
                return;
        if (raw)
                ns = HB_LINK_UP;
        else if (kup && !l->hb_heard && in_grace(st, now))
                ns = HB_LINK_STARTING;
        else
                ns = HB_LINK_DOWN;
        if (raw != l->raw_up) {
                if (l->raw_up && !raw && !l->mgmt)
                        note_down(st, l, now);
                l->raw_up = raw;
                l->last_change_mono = now;
        }
        if (ns == l->state)
                return;
        log_notice("heartbeat: %s%s: %s -> %s (kernel %s, heartbeat %s)", l->mgmt ? "management path " : "", l->name,
                   hb_link_state_to_string(l->state), hb_link_state_to_string(ns), kernel_reason(l, k, sizeof k),
                   hb_view(l));
        l->state = ns;
        l->since_mono = now;
        l->transitions++;
        emit_link(st, l, now);
        snprintf(trig, sizeof trig, "%s %s", l->name, hb_link_state_to_string(ns));
        emit_group(st, trig);
}

/* ---- heartbeats ---- */

static void send_one(struct hb_state *st, struct hb_link *l, uint64_t now)
{
        struct hbwire_packet p = {0};
        uint8_t buf[HBWIRE_PACKET_SIZE];
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(st->port), .sin_addr = l->peer};
        union {
                struct cmsghdr h;
                uint8_t b[CMSG_SPACE(sizeof(struct in_pktinfo))];
        } ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr m = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1};
        size_t slots;
        unsigned loss = hbwire_window_loss(&l->win, &slots);

        if (l->fd < 0 || (!l->mgmt && l->ifindex <= 0))
                return;
        p.seq = ++l->tx_seq;
        p.wall_usec = time_wall_usec();
        p.sender_tag = st->own_tag;
        p.peer_loss = slots >= MIN_LOSS_SLOTS ? (uint16_t)loss : HBWIRE_LOSS_UNKNOWN;
        if (l->win.started) {
                uint64_t held = now - l->rx_highest_mono;
                p.ack_seq = l->win.highest;
                p.ack_delay_usec = held > UINT32_MAX ? UINT32_MAX : (uint32_t)held;
        }
        hbwire_encode(&p, &st->key, buf);
        if (!l->mgmt) {
                /* out through exactly this link's interface, from its address */
                struct in_pktinfo *pi;
                memset(&ctl, 0, sizeof ctl);
                m.msg_control = ctl.b;
                m.msg_controllen = sizeof ctl.b;
                ctl.h.cmsg_level = IPPROTO_IP;
                ctl.h.cmsg_type = IP_PKTINFO;
                ctl.h.cmsg_len = CMSG_LEN(sizeof *pi);
                pi = (struct in_pktinfo *)CMSG_DATA(&ctl.h);
                pi->ipi_ifindex = l->ifindex;
                pi->ipi_spec_dst = l->local;
        }
        hbwire_sent_record(&l->sent, p.seq, now);
        if (sendmsg(l->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                l->send_errors++;
        else
                l->sent_ok++;
}

static uint64_t on_send(struct loop_source *s, uint64_t now, void *userdata)
{
        struct hb_state *st = userdata;

        (void)s;
        for (size_t i = 0; i < all_links(st); i++)
                send_one(st, &st->links[i], now);
        return st->interval_usec;
}

static uint64_t on_deadline(struct loop_source *s, uint64_t now, void *userdata)
{
        struct hb_link *l = userdata;

        (void)s;
        l->hb_alive = false;
        /* the silence is an outage, seen here; the sequence numbers it
         * skips are not loss on the link when it comes back */
        hbwire_window_forget(&l->win);
        evaluate(l->st, l, now);
        return 0;
}

/* Verdict for one datagram that came in on l's socket. */
static enum hbwire_verdict check_datagram(struct hb_state *st, struct hb_link *l, const uint8_t *buf, size_t len,
                                          bool truncated, const struct sockaddr_in *from, int ifindex,
                                          struct hbwire_packet *p)
{
        enum hbwire_verdict v;

        if (truncated)
                return HBWIRE_REJECT_MALFORMED;
        v = hbwire_decode(buf, len, &st->key, p);
        if (v != HBWIRE_ACCEPTED)
                return v;
        if (p->sender_tag == st->own_tag)
                return HBWIRE_REJECT_REFLECTED;
        if (!l->mgmt && (l->ifindex <= 0 || ifindex != l->ifindex))
                return HBWIRE_REJECT_INTERFACE;
        if (from->sin_family != AF_INET || from->sin_addr.s_addr != l->peer.s_addr)
                return HBWIRE_REJECT_SOURCE;
        return hbwire_window_accept(&l->win, p->seq);
}

static void on_datagram(struct hb_state *st, struct hb_link *l, const uint8_t *buf, size_t len, bool truncated,
                        const struct sockaddr_in *from, int ifindex, uint64_t now)
{
        struct hbwire_packet p;
        enum hbwire_verdict v = check_datagram(st, l, buf, len, truncated, from, ifindex, &p);
        uint32_t rtt;

        l->received++;
        l->counts[v]++;
        if (v != HBWIRE_ACCEPTED) {
                char a[INET_ADDRSTRLEN] = "?";
                inet_ntop(AF_INET, &from->sin_addr, a, sizeof a);
                log_debug("heartbeat: %s: datagram of %zu bytes from %s rejected: %s", l->name, len, a,
                          hbwire_verdict_to_string(v));
                return;
        }
        if (p.seq == l->win.highest)
                l->rx_highest_mono = now;
        l->peer_loss = p.peer_loss;
        if (hbwire_sent_ack(&l->sent, p.ack_seq, p.ack_delay_usec, now, &rtt) == 0)
                hbwire_rtt_add(&l->rtt, rtt);
        /* Since our start the window has known nothing to reject a capture
         * by: the peer counts as alive only once a packet acknowledges one
         * of this run's sends, which a capture made before it cannot do.
         * The packet still enters the window, so that our next sends
         * acknowledge it and a live peer proves itself one round trip
         * later. Later replays fall at the window. */
        if (!l->fresh) {
                if (p.ack_seq < l->first_tx_seq) {
                        l->unproven++;
                        return;
                }
                l->fresh = true;
        }
        l->last_rx_mono = now;
        l->hb_heard = true;
        l->allowance_usec = hbwire_window_allowance(&l->win, st->interval_usec, st->timeout_usec,
                                                    ALLOWANCE_TIMEOUTS * st->timeout_usec);
        loop_timer_set(l->deadline, l->allowance_usec);
        if (!l->hb_alive) {
                l->hb_alive = true;
                evaluate(st, l, now);
        }
}

static void on_readable(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct hb_link *l = userdata;
        struct hb_state *st = l->st;

        (void)s;
        (void)events;
        for (int round = 0; round < RX_PER_WAKEUP; round++) {
                uint8_t buf[DGRAM_BUF];
                struct sockaddr_in from;
                union {
                        struct cmsghdr h;
                        uint8_t b[CMSG_SPACE(sizeof(struct in_pktinfo))];
                } ctl;
                struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
                struct msghdr m = {.msg_name = &from,
                                   .msg_namelen = sizeof from,
                                   .msg_iov = &iov,
                                   .msg_iovlen = 1,
                                   .msg_control = ctl.b,
                                   .msg_controllen = sizeof ctl.b};
                int ifindex = 0;
                ssize_t n;

                memset(&from, 0, sizeof from);
                n = recvmsg(fd, &m, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                                log_debug("heartbeat: %s: recvmsg: %m", l->name);
                        return;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
                        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
                            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
                                struct in_pktinfo pi;
                                memcpy(&pi, CMSG_DATA(c), sizeof pi);
                                ifindex = pi.ipi_ifindex;
                        }
                on_datagram(st, l, buf, (size_t)n, (m.msg_flags & MSG_TRUNC) != 0, &from, ifindex, time_mono_usec());
        }
}

static int open_socket(const struct hb_state *st, const struct hb_link *l)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(st->port), .sin_addr = l->local};
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, r;

        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0 ||
            setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* ---- rtnetlink ---- */

static struct hb_link *link_by_name(struct hb_state *st, const char *name)
{
        for (size_t i = 0; i < st->n_links; i++)
                if (strcmp(st->links[i].name, name) == 0)
                        return &st->links[i];
        return NULL;
}

static struct hb_link *link_by_index(struct hb_state *st, int ifindex)
{
        for (size_t i = 0; i < st->n_links; i++)
                if (st->links[i].ifindex == ifindex)
                        return &st->links[i];
        return NULL;
}

static int nl_request(struct hb_state *st, int type, int family)
{
        struct {
                struct nlmsghdr h;
                struct rtgenmsg g;
        } req = {0};

        req.h.nlmsg_len = NLMSG_LENGTH(sizeof req.g);
        req.h.nlmsg_type = (uint16_t)type;
        req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.h.nlmsg_seq = ++st->nl_seq;
        req.g.rtgen_family = (uint8_t)family;
        if (send(st->nl_fd, &req, req.h.nlmsg_len, MSG_DONTWAIT) < 0)
                return -errno;
        return 0;
}

static void nl_link(struct hb_state *st, const struct nlmsghdr *h, uint64_t now)
{
        const struct ifinfomsg *ifi = NLMSG_DATA(h);
        int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *ifi);
        const char *name = NULL;
        int carrier = -1, oper = -1;
        struct hb_link *l;

        if (len < 0)
                return;
        for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                size_t plen = RTA_PAYLOAD(a);
                if (a->rta_type == IFLA_IFNAME && plen > 0 && memchr(RTA_DATA(a), '\0', plen))
                        name = RTA_DATA(a);
                else if (a->rta_type == IFLA_CARRIER && plen >= 1)
                        carrier = *(const uint8_t *)RTA_DATA(a);
                else if (a->rta_type == IFLA_OPERSTATE && plen >= 1)
                        oper = *(const uint8_t *)RTA_DATA(a);
        }
        l = name ? link_by_name(st, name) : NULL;
        if (!l) {
                /* renamed away from a watched name, or gone */
                l = link_by_index(st, ifi->ifi_index);
                if (!l)
                        return;
                if (h->nlmsg_type == RTM_NEWLINK && name && strcmp(name, l->name) != 0) {
                        l->ifindex = 0;
                        evaluate(st, l, now);
                        return;
                }
        }
        if (st->nl_phase == NL_DUMP_LINKS)
                l->k_seen = h->nlmsg_type == RTM_NEWLINK;
        if (h->nlmsg_type == RTM_DELLINK) {
                l->ifindex = 0;
                l->k_addr = false;
        } else {
                if (l->ifindex != ifi->ifi_index)
                        l->k_addr = false; /* a new interface of that name: its addresses come next */
                l->ifindex = ifi->ifi_index;
                l->k_admin_up = (ifi->ifi_flags & IFF_UP) != 0;
                if (carrier >= 0)
                        l->k_carrier = carrier != 0;
                else
                        l->k_carrier = (ifi->ifi_flags & FLAG_LOWER_UP) != 0;
                if (oper >= 0)
                        l->k_operstate = (uint8_t)oper;
        }
        evaluate(st, l, now);
}

static void nl_addr(struct hb_state *st, const struct nlmsghdr *h, uint64_t now)
{
        const struct ifaddrmsg *ifa = NLMSG_DATA(h);
        int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *ifa);
        struct in_addr local = {0};
        bool have = false;
        struct hb_link *l;

        if (len < 0 || ifa->ifa_family != AF_INET)
                return;
        for (const struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if ((a->rta_type == IFA_LOCAL || (a->rta_type == IFA_ADDRESS && !have)) &&
                    RTA_PAYLOAD(a) >= sizeof local) {
                        memcpy(&local, RTA_DATA(a), sizeof local);
                        have = true;
                }
        l = have ? link_by_index(st, (int)ifa->ifa_index) : NULL;
        if (!l || l->local.s_addr != local.s_addr)
                return;
        l->k_addr = h->nlmsg_type == RTM_NEWADDR;
        if (st->nl_phase == NL_DUMP_ADDRS)
                l->k_seen = l->k_addr;
        evaluate(st, l, now);
}

/* Asks the kernel for every link; nl_dump_done then asks for every
 * address. A dump the kernel is still sending cannot be asked again (it
 * answers EBUSY): the request is then owed (nl_redo) and made by the
 * report timer once the running one ended. Returns 0 or -errno from the
 * request (then owed too). */
static int nl_redump(struct hb_state *st, uint64_t now)
{
        int r;

        if (st->nl_phase != NL_IDLE) {
                st->nl_redo = true;
                return 0;
        }
        st->nl_redo = false;
        st->nl_damaged = false;
        for (size_t i = 0; i < st->n_links; i++)
                st->links[i].k_seen = false;
        r = nl_request(st, RTM_GETLINK, AF_UNSPEC);
        if (r < 0) {
                st->nl_errors++;
                st->nl_redo = true;
                return r;
        }
        st->nl_phase = NL_DUMP_LINKS;
        st->nl_phase_mono = now;
        return 0;
}

/* The running dump ended: with NLMSG_DONE, or failed (an error answer, a
 * message lost on the way, no answer in time). Only a complete dump is
 * trusted: then whatever it did not name is gone (a link deleted, an
 * address removed while events were lost). A failed one is asked again. */
static void nl_dump_done(struct hb_state *st, bool failed, uint64_t now)
{
        int r;

        failed = failed || st->nl_damaged;
        st->nl_damaged = false;
        if (failed) {
                st->nl_phase = NL_IDLE;
                st->nl_redo = true;
                return;
        }
        if (st->nl_phase == NL_DUMP_LINKS) {
                for (size_t i = 0; i < st->n_links; i++) {
                        struct hb_link *l = &st->links[i];
                        if (!l->k_seen && l->ifindex > 0) {
                                l->ifindex = 0;
                                l->k_addr = false;
                        }
                        l->k_seen = false;
                }
                st->nl_phase = NL_DUMP_ADDRS;
                st->nl_phase_mono = now;
                r = nl_request(st, RTM_GETADDR, AF_INET);
                if (r < 0) {
                        st->nl_errors++;
                        st->nl_phase = NL_IDLE;
                        st->nl_redo = true;
                        if (!st->nl_failing)
                                log_warning("heartbeat: asking the kernel for addresses: %s (asking again)",
                                            strerror(-r));
                        st->nl_failing = true;
                        return;
                }
        } else if (st->nl_phase == NL_DUMP_ADDRS) {
                st->nl_phase = NL_IDLE;
                st->nl_failing = false;
                for (size_t i = 0; i < st->n_links; i++)
                        if (!st->links[i].k_seen)
                                st->links[i].k_addr = false;
                if (!st->nl_synced)
                        log_debug("heartbeat: the kernel's view of the links is complete");
                st->nl_synced = true;
                for (size_t i = 0; i < all_links(st); i++)
                        evaluate(st, &st->links[i], now);
        }
}

/* From the report timer: a dump that hangs (its NLMSG_DONE lost) is given
 * up, and an owed one is asked for. */
static void nl_check(struct hb_state *st, uint64_t now)
{
        int r;

        if (st->nl_phase != NL_IDLE && now - st->nl_phase_mono >= NL_DUMP_TIMEOUT_USEC) {
                st->nl_errors++;
                log_warning("heartbeat: the kernel's answer to a link dump did not end within %.0f s; asking again",
                            (double)NL_DUMP_TIMEOUT_USEC / 1e6);
                st->nl_phase = NL_IDLE;
                st->nl_redo = true;
        }
        if (st->nl_phase != NL_IDLE || !st->nl_redo)
                return;
        r = nl_redump(st, now);
        if (r < 0 && !st->nl_failing)
                log_warning("heartbeat: asking the kernel for links: %s (asking again)", strerror(-r));
        st->nl_failing = r < 0;
}

static void on_netlink(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct hb_state *st = userdata;

        (void)s;
        (void)events;
        for (int round = 0; round < 16; round++) {
                struct sockaddr_nl from;
                struct iovec iov = {.iov_base = st->nl_buf, .iov_len = NL_BUF};
                struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
                ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
                uint64_t now = time_mono_usec();
                int len;

                if (n < 0) {
                        if (errno == ENOBUFS) {
                                /* events were lost: the kernel's state is asked again */
                                st->nl_overruns++;
                                log_warning("heartbeat: netlink events lost (receive buffer full); reading the "
                                            "link state again");
                                if (st->nl_phase != NL_IDLE)
                                        st->nl_damaged = true; /* a dump message may be among them */
                                nl_redump(st, now);            /* a failure is owed and retried */
                                continue;
                        }
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                                st->nl_errors++;
                        return;
                }
                if (from.nl_pid != 0) {
                        st->nl_errors++; /* not the kernel */
                        continue;
                }
                if (m.msg_flags & MSG_TRUNC) {
                        /* a message longer than NL_BUF: its state is lost,
                         * so the whole view is read again */
                        st->nl_overruns++;
                        if (st->nl_phase != NL_IDLE)
                                st->nl_damaged = true;
                        else
                                st->nl_redo = true;
                        continue;
                }
                len = (int)n;
                for (struct nlmsghdr *h = (struct nlmsghdr *)st->nl_buf; NLMSG_OK(h, (unsigned)len);
                     h = NLMSG_NEXT(h, len)) {
                        st->nl_messages++;
                        switch (h->nlmsg_type) {
                        case NLMSG_DONE:
                                if (h->nlmsg_seq == st->nl_seq)
                                        nl_dump_done(st, false, now);
                                break;
                        case NLMSG_ERROR:
                                st->nl_errors++;
                                if (h->nlmsg_seq == st->nl_seq)
                                        nl_dump_done(st, true, now);
                                break;
                        case RTM_NEWLINK:
                        case RTM_DELLINK:
                                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg)))
                                        nl_link(st, h, now);
                                break;
                        case RTM_NEWADDR:
                        case RTM_DELADDR:
                                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
                                        nl_addr(st, h, now);
                                break;
                        default:
                                break;
                        }
                }
        }
}

static int open_netlink(void)
{
        struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR};
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE), r;
        int rcvbuf = 1 << 20;

        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* ---- reports ---- */

static void corosync_start(struct hb_state *st, uint64_t now);

static uint64_t on_report(struct loop_source *s, uint64_t now, void *userdata)
{
        struct hb_state *st = userdata;

        (void)s;
        nl_check(st, now);
        for (size_t i = 0; i < all_links(st); i++) {
                struct hb_link *l = &st->links[i];
                /* a link leaves the startup grace by time alone */
                if (l->state == HB_LINK_STARTING && !in_grace(st, now))
                        evaluate(st, l, now);
                if (l->flapping && l->raw_up && now - l->last_change_mono >= st->flap_window_usec) {
                        l->flapping = false;
                        l->n_downs = 0;
                        log_notice("heartbeat: %s: no longer flapping (up for %.0f s)", l->name,
                                   (double)st->flap_window_usec / 1e6);
                        emit_link(st, l, now);
                        emit_group(st, "flapping ended");
                }
        }
        for (size_t i = 0; i < all_links(st); i++)
                emit_link(st, &st->links[i], now);
        emit_group(st, NULL);
        if (st->corosync)
                corosync_start(st, now);
        return st->report_usec;
}

/* ---- collector_ops ---- */

static void hb_stop(void *userdata)
{
        struct hb_state *st = userdata;

        if (!st || !st->started)
                return;
        for (size_t i = 0; i < all_links(st); i++) {
                struct hb_link *l = &st->links[i];
                loop_remove(l->io);
                loop_remove(l->deadline);
                l->io = l->deadline = NULL;
                if (l->fd >= 0)
                        close(l->fd);
                l->fd = -1;
        }
        loop_remove(st->nl_io);
        loop_remove(st->send_timer);
        loop_remove(st->report_timer);
        st->nl_io = st->send_timer = st->report_timer = NULL;
        if (st->nl_fd >= 0)
                close(st->nl_fd);
        st->nl_fd = -1;
        free(st->nl_buf);
        st->nl_buf = NULL;
        loop_remove(st->coro_io);
        st->coro_io = NULL;
        if (st->coro_fd >= 0)
                close(st->coro_fd);
        st->coro_fd = -1;
        if (st->coro_pid > 0) {
                /* no zombie left behind, and no wait on a tool that hangs */
                kill(st->coro_pid, SIGKILL);
                waitpid(st->coro_pid, NULL, 0);
                st->coro_pid = 0;
        }
        st->started = false;
}

static int hb_start(void *userdata, struct loop *loop, collector_emit_fn emit, void *emit_userdata)
{
        struct hb_state *st = userdata;
        uint64_t now = time_mono_usec(), seq0 = (uint64_t)time_wall_usec();
        char name[64];
        int r;

        if (st->started)
                return -EALREADY;
        st->loop = loop;
        st->emit = emit;
        st->userdata = emit_userdata;
        st->started_mono = now;
        st->nl_synced = false;
        st->started = true; /* so that a failure below can use hb_stop */
        st->nl_buf = xmalloc(NL_BUF);
        if (!st->nl_buf) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < all_links(st); i++) {
                struct hb_link *l = &st->links[i];
                l->state = HB_LINK_STARTING;
                l->since_mono = l->last_change_mono = now;
                l->raw_up = l->hb_alive = l->hb_heard = l->fresh = false;
                l->tx_seq = seq0;
                l->first_tx_seq = seq0 + 1;
                l->unproven = 0;
                l->allowance_usec = st->timeout_usec;
                l->peer_loss = HBWIRE_LOSS_UNKNOWN;
                hbwire_window_init(&l->win, st->window_slots);
                hbwire_sent_init(&l->sent);
                hbwire_rtt_init(&l->rtt, st->window_slots);
                r = open_socket(st, l);
                if (r < 0) {
                        log_err("heartbeat: %s: socket on %s:%u: %s", l->name, l->local_s, st->port, strerror(-r));
                        goto fail;
                }
                l->fd = r;
                snprintf(name, sizeof name, "heartbeat:%s", l->name);
                r = loop_add_io(loop, l->fd, EPOLLIN, name, on_readable, l, &l->io);
                if (r < 0)
                        goto fail;
                snprintf(name, sizeof name, "heartbeat-deadline:%s", l->name);
                r = loop_add_timer(loop, st->grace_usec > st->timeout_usec ? st->grace_usec : st->timeout_usec, 0, name,
                                   on_deadline, l, &l->deadline);
                if (r < 0)
                        goto fail;
        }
        r = open_netlink();
        if (r < 0) {
                log_err("heartbeat: netlink socket: %s", strerror(-r));
                goto fail;
        }
        st->nl_fd = r;
        r = loop_add_io(loop, st->nl_fd, EPOLLIN, "heartbeat-netlink", on_netlink, st, &st->nl_io);
        if (r < 0)
                goto fail;
        st->nl_phase = NL_IDLE;
        st->nl_redo = st->nl_damaged = st->nl_failing = false;
        r = nl_redump(st, now);
        if (r < 0) {
                log_err("heartbeat: asking the kernel for its links: %s", strerror(-r));
                goto fail;
        }
        r = loop_add_timer(loop, 1000, st->interval_usec / 20, "heartbeat-send", on_send, st, &st->send_timer);
        if (r < 0)
                goto fail;
        r = loop_add_timer(loop, st->report_usec, 0, "heartbeat-report", on_report, st, &st->report_timer);
        if (r < 0)
                goto fail;
        log_info("heartbeat: group %s, peer %s: %zu link(s)%s, every %.0f ms, timeout %.0f ms, port %u", st->group,
                 st->peer, st->n_links, st->has_mgmt ? " and a management path" : "", (double)st->interval_usec / 1000,
                 (double)st->timeout_usec / 1000, st->port);
        return 0;
fail:
        hb_stop(st);
        return r;
}

/* corosync, where it runs: its own view of the links (knet, per node),
 * shown beside ours. It comes from `corosync-cfgtool -s`, started from the
 * report timer at most every COROSYNC_EVERY_USEC while corosync runs, its
 * output read on the loop (never waited for) and capped; the tool needs
 * root or the haclient group, so a sandboxed agent may only show its error.
 * The alternative, libcfg, would put corosync's libraries in every agent's
 * memory for the few hosts that run it. */
extern char **environ;

static bool corosync_running(void)
{
        FILE *f = fopen("/run/corosync.pid", "re");
        char buf[32] = "";
        char path[64];
        long pid;

        if (!f)
                f = fopen("/var/run/corosync.pid", "re");
        if (!f)
                return false;
        if (!fgets(buf, sizeof buf, f))
                buf[0] = '\0';
        fclose(f);
        pid = strtol(buf, NULL, 10);
        if (pid <= 0)
                return false;
        snprintf(path, sizeof path, "/proc/%ld", pid);
        return access(path, F_OK) == 0;
}

static void corosync_reap(struct hb_state *st)
{
        int status;

        if (st->coro_pid > 0 && st->coro_fd < 0 && waitpid(st->coro_pid, &status, WNOHANG) == st->coro_pid) {
                st->coro_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                st->coro_pid = 0;
        }
}

static void corosync_readable(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct hb_state *st = userdata;
        ssize_t n;

        (void)s;
        (void)events;
        for (;;) {
                char tmp[1024];
                n = read(fd, tmp, sizeof tmp);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return;
                if (n <= 0)
                        break;
                if (st->coro_len + (size_t)n >= sizeof st->coro_buf) {
                        st->coro_truncated = true; /* the rest is read and dropped */
                        n = (ssize_t)(sizeof st->coro_buf - 1 - st->coro_len);
                }
                memcpy(st->coro_buf + st->coro_len, tmp, (size_t)n);
                st->coro_len += (size_t)n;
        }
        st->coro_buf[st->coro_len] = '\0';
        memcpy(st->coro_text, st->coro_buf, st->coro_len + 1);
        st->coro_wall = time_wall_usec();
        loop_remove(st->coro_io);
        st->coro_io = NULL;
        close(st->coro_fd);
        st->coro_fd = -1;
        corosync_reap(st);
}

/* A tool that hangs (corosync wedged, its IPC stuck) would hold the view
 * forever: after COROSYNC_TIMEOUT_USEC it is killed, and the view says so. */
static void corosync_kill(struct hb_state *st)
{
        kill(st->coro_pid, SIGKILL);
        waitpid(st->coro_pid, NULL, 0); /* SIGKILL cannot be ignored: this is short */
        st->coro_pid = 0;
        loop_remove(st->coro_io);
        st->coro_io = NULL;
        if (st->coro_fd >= 0)
                close(st->coro_fd);
        st->coro_fd = -1;
        st->coro_killed = true;
        st->coro_exit = 128 + SIGKILL;
        st->coro_wall = time_wall_usec();
        snprintf(st->coro_text, sizeof st->coro_text, "corosync-cfgtool -s did not finish within %.0f s; killed",
                 (double)COROSYNC_TIMEOUT_USEC / 1e6);
        st->coro_truncated = false;
        log_warning("heartbeat: %s", st->coro_text);
}

static void corosync_start(struct hb_state *st, uint64_t now)
{
        posix_spawn_file_actions_t fa;
        char *const argv[] = {(char *)"corosync-cfgtool", (char *)"-s", NULL};
        int p[2], r;

        corosync_reap(st);
        if (st->coro_pid > 0 && now - st->coro_last_mono >= COROSYNC_TIMEOUT_USEC) {
                corosync_kill(st);
                st->coro_last_mono = now; /* the next try in COROSYNC_EVERY_USEC */
                return;
        }
        if (st->coro_pid > 0 || now - st->coro_last_mono < COROSYNC_EVERY_USEC)
                return;
        st->coro_last_mono = now;
        st->coro_running = corosync_running();
        /* only our end is non-blocking: the tool writes as any program
         * does, and a full pipe holds it rather than failing its output */
        if (!st->coro_running || pipe2(p, O_CLOEXEC) < 0)
                return;
        if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
                close(p[0]);
                close(p[1]);
                return;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);
        r = posix_spawnp(&st->coro_pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (r != 0) {
                close(p[0]);
                st->coro_pid = 0;
                snprintf(st->coro_text, sizeof st->coro_text, "cannot run corosync-cfgtool: %s", strerror(r));
                st->coro_exit = 127;
                return;
        }
        st->coro_fd = p[0];
        st->coro_len = 0;
        st->coro_truncated = false;
        st->coro_killed = false;
        if (loop_add_io(st->loop, st->coro_fd, EPOLLIN, "heartbeat-corosync", corosync_readable, st, &st->coro_io) <
            0) {
                close(st->coro_fd);
                st->coro_fd = -1;
        }
}

/* corosync-cfgtool -s prints, per link,
 *   LINK ID 0 udp
 *           addr    = 10.0.0.1
 *           status:
 *                   nodeid:          1:    localhost
 *                   nodeid:          2:    connected
 * Anything else is kept only in the raw text. */
static cJSON *corosync_links(const char *text)
{
        cJSON *links = cJSON_CreateArray(), *cur = NULL, *nodes = NULL;
        char line[256];

        if (!links)
                return NULL;
        while (*text) {
                size_t n = strcspn(text, "\n");
                const char *p = line;
                unsigned long id;
                char word[64];

                snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), text);
                text += n + (text[n] == '\n');
                while (*p == ' ' || *p == '\t')
                        p++;
                if (sscanf(p, "LINK ID %lu", &id) == 1) {
                        cur = cJSON_CreateObject();
                        if (!cur || !cJSON_AddItemToArray(links, cur)) {
                                cJSON_Delete(cur);
                                break;
                        }
                        cJSON_AddNumberToObject(cur, "link", (double)id);
                        nodes = cJSON_AddArrayToObject(cur, "nodes");
                } else if (cur && sscanf(p, "addr = %63s", word) == 1) {
                        cJSON_AddStringToObject(cur, "addr", word);
                } else if (nodes && sscanf(p, "nodeid: %lu: %63s", &id, word) == 2) {
                        cJSON *node = cJSON_CreateObject();
                        if (!node || !cJSON_AddItemToArray(nodes, node)) {
                                cJSON_Delete(node);
                                break;
                        }
                        cJSON_AddNumberToObject(node, "nodeid", (double)id);
                        cJSON_AddStringToObject(node, "status", word);
                }
        }
        return links;
}

static cJSON *corosync_status(const struct hb_state *st)
{
        cJSON *o = cJSON_CreateObject();
        char ts[40];

        if (!o)
                return NULL;
        if (!st->coro_running) {
                cJSON_AddStringToObject(o, "state", "not running");
                return o;
        }
        cJSON_AddStringToObject(o, "state", "running");
        if (!st->coro_wall && !st->coro_text[0]) {
                cJSON_AddStringToObject(o, "links", "not read yet");
                return o;
        }
        if (st->coro_wall)
                cJSON_AddStringToObject(o, "read_at", time_format_rfc3339(st->coro_wall, ts, sizeof ts));
        cJSON_AddNumberToObject(o, "exit_status", st->coro_exit);
        if (st->coro_killed)
                cJSON_AddStringToObject(o, "error", "timeout");
        if (st->coro_exit == 0)
                json_add(o, "links", corosync_links(st->coro_text));
        cJSON_AddStringToObject(o, "output", st->coro_text);
        cJSON_AddBoolToObject(o, "output_truncated", st->coro_truncated);
        return o;
}

static cJSON *link_status(const struct hb_state *st, const struct hb_link *l, uint64_t now)
{
        cJSON *o = cJSON_CreateObject(), *x;
        struct hbwire_rtt_summary rs;
        size_t slots;
        unsigned loss = hbwire_window_loss(&l->win, &slots);
        char k[32];

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "link", l->name);
        cJSON_AddBoolToObject(o, "management", l->mgmt);
        cJSON_AddStringToObject(o, "local_addr", l->local_s);
        cJSON_AddStringToObject(o, "remote_addr", l->peer_s);
        cJSON_AddStringToObject(o, "state", hb_link_state_to_string(l->state));
        cJSON_AddNumberToObject(o, "since_s", (double)(now - l->since_mono) / 1e6);
        cJSON_AddStringToObject(o, "kernel", kernel_reason(l, k, sizeof k));
        if (!l->mgmt) {
                cJSON_AddNumberToObject(o, "ifindex", l->ifindex);
                cJSON_AddStringToObject(o, "operstate", operstate_name(l->k_operstate));
        }
        cJSON_AddStringToObject(o, "heartbeat", hb_view(l));
        cJSON_AddNumberToObject(o, "timeout_ms", (double)l->allowance_usec / 1000);
        cJSON_AddBoolToObject(o, "flapping", l->flapping);
        cJSON_AddNumberToObject(o, "recent_downs", (double)l->n_downs);
        cJSON_AddNumberToObject(o, "transitions", (double)l->transitions);
        if (slots >= MIN_LOSS_SLOTS)
                cJSON_AddNumberToObject(o, "loss", loss / 10.0);
        else
                cJSON_AddNullToObject(o, "loss");
        cJSON_AddNumberToObject(o, "window", (double)slots);
        if (l->peer_loss != HBWIRE_LOSS_UNKNOWN)
                cJSON_AddNumberToObject(o, "peer_loss", l->peer_loss / 10.0);
        else
                cJSON_AddNullToObject(o, "peer_loss");
        hbwire_rtt_summary(&l->rtt, &rs);
        cJSON_AddNumberToObject(o, "rtt_samples", (double)rs.samples);
        if (rs.samples) {
                cJSON_AddNumberToObject(o, "rtt_ms", rs.mean_usec / 1000);
                cJSON_AddNumberToObject(o, "rtt_min_ms", rs.min_usec / 1000);
                cJSON_AddNumberToObject(o, "rtt_max_ms", rs.max_usec / 1000);
                cJSON_AddNumberToObject(o, "jitter_ms", rs.jitter_usec / 1000);
        }
        cJSON_AddNumberToObject(o, "sent", (double)l->sent_ok);
        cJSON_AddNumberToObject(o, "send_errors", (double)l->send_errors);
        cJSON_AddNumberToObject(o, "received", (double)l->received);
        cJSON_AddNumberToObject(o, "accepted", (double)l->counts[HBWIRE_ACCEPTED]);
        cJSON_AddNumberToObject(o, "unproven", (double)l->unproven);
        if ((x = cJSON_AddObjectToObject(o, "rejected")))
                for (int v = HBWIRE_ACCEPTED + 1; v < HBWIRE_VERDICT_MAX; v++)
                        cJSON_AddNumberToObject(x, hbwire_verdict_to_string((enum hbwire_verdict)v),
                                                (double)l->counts[v]);
        (void)st;
        return o;
}

static cJSON *hb_status(void *userdata, bool verbose)
{
        struct hb_state *st = userdata;
        cJSON *o = cJSON_CreateObject(), *arr, *x;
        uint64_t now = time_mono_usec(), rejected[HBWIRE_VERDICT_MAX] = {0}, total = 0;

        (void)verbose;
        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "group", st->group);
        cJSON_AddStringToObject(o, "peer", st->peer);
        cJSON_AddStringToObject(o, "verdict", st->verdict[0] ? st->verdict : "starting");
        cJSON_AddNumberToObject(o, "port", st->port);
        cJSON_AddNumberToObject(o, "interval_ms", (double)st->interval_usec / 1000);
        cJSON_AddNumberToObject(o, "timeout_ms", (double)st->timeout_usec / 1000);
        cJSON_AddNumberToObject(o, "window", (double)st->window_slots);
        cJSON_AddStringToObject(o, "key_file", st->key_file);
        if ((arr = cJSON_AddArrayToObject(o, "links")))
                for (size_t i = 0; i < all_links(st); i++) {
                        const struct hb_link *l = &st->links[i];
                        json_add(arr, NULL, link_status(st, l, now));
                        for (int v = HBWIRE_ACCEPTED + 1; v < HBWIRE_VERDICT_MAX; v++) {
                                rejected[v] += l->counts[v];
                                total += l->counts[v];
                        }
                }
        if ((x = cJSON_AddObjectToObject(o, "rejected")))
                for (int v = HBWIRE_ACCEPTED + 1; v < HBWIRE_VERDICT_MAX; v++)
                        cJSON_AddNumberToObject(x, hbwire_verdict_to_string((enum hbwire_verdict)v),
                                                (double)rejected[v]);
        cJSON_AddNumberToObject(o, "rejected_total", (double)total);
        if ((x = cJSON_AddObjectToObject(o, "netlink"))) {
                cJSON_AddNumberToObject(x, "messages", (double)st->nl_messages);
                cJSON_AddNumberToObject(x, "overruns", (double)st->nl_overruns);
                cJSON_AddNumberToObject(x, "errors", (double)st->nl_errors);
        }
        if (st->corosync)
                json_add(o, "corosync", corosync_status(st));
        return o;
}

static void hb_free(void *userdata)
{
        struct hb_state *st = userdata;

        if (!st)
                return;
        hb_stop(st);
        for (size_t i = 0; i <= LINKS_MAX; i++) {
                free(st->links[i].name);
                free(st->links[i].spec);
        }
        free(st->peer);
        free(st->group);
        free(st->key_file);
        explicit_bzero(&st->key, sizeof st->key);
        free(st);
}

const struct collector_ops heartbeat_collector_ops = {
        .name = "heartbeat",
        .default_enabled = false,
        .new = hb_new,
        .start = hb_start,
        .stop = hb_stop,
        .status = hb_status,
        .free = hb_free,
};
