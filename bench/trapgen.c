/* trapgen: a paced SNMP trap generator for bench/traps.sh.
 *
 * Encodes a linkDown notification once per interface with net-snmp's own
 * encoder (SNMPv2c by default, SNMPv1 with -v 1), then sends those bytes over
 * a connected UDP socket at a target rate, for a count or a duration, and
 * prints one line on stdout:
 *
 *     sent=N elapsed=SECONDS rate=ACHIEVED target=RATE errors=E
 *
 * Pacing: trap i is due at start + i / rate. The loop reads CLOCK_MONOTONIC,
 * sends everything due (at most BATCH_MAX per sendmmsg), and otherwise waits
 * for the next due time: clock_nanosleep while that is far, busy-waiting for
 * the last stretch, with the timer slack lowered to 1 ns. Sleeping alone
 * would release traps in bursts of up to a timer tick; a receiver with a
 * small socket buffer then loses traps to the burst rather than to the rate,
 * which is not what the benchmark means to measure. At rates where one send
 * takes longer than the interval the batches grow by themselves.
 *
 * Assumptions: the destination is a host:port reachable over UDP (IPv4 or
 * IPv6); the receiver's rate is what is measured, so the generator is pinned
 * by the caller to a core of its own. A send that fails with ECONNREFUSED
 * (an earlier trap met a closed port), ENOBUFS, EAGAIN or EINTR is counted
 * in errors and retried; any other error ends the run with exit status 1.
 * Exit status 2 is bad usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>

#define BATCH_MAX 32          /* datagrams per sendmmsg */
#define KEYS_MAX 4096         /* distinct prebuilt traps (-k) */
#define RATE_MAX 10000000     /* traps/s */
#define SECONDS_MAX 86400.0   /* -d */
#define SPIN_NS 200000        /* busy-wait the last 200 µs before a due time */
#define UPTIME_TICKS 4242424u /* sysUpTime.0 in every trap: 11 h 47 min */

struct options {
        const char *host;
        const char *port;
        const char *community;
        long version; /* SNMP_VERSION_1 or SNMP_VERSION_2c */
        double rate;  /* traps/s; 0: as fast as possible */
        uint64_t count;
        double seconds;
        long ifindex;
        long keys;
};

struct packet {
        unsigned char *bytes; /* caller frees with free() */
        size_t len;
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: trapgen -p PORT [-h HOST] [-r RATE] (-n COUNT | -d SECONDS) [-i IFINDEX] [-k KEYS]\n"
                   "               [-v 1|2c] [-c COMMUNITY]\n"
                   "\n"
                   "Sends linkDown traps, encoded once with net-snmp, at a steady rate over UDP and\n"
                   "prints \"sent=N elapsed=S rate=R target=T errors=E\" on stdout.\n"
                   "\n"
                   "  -p PORT       destination UDP port (required)\n"
                   "  -h HOST       destination host or address (default 127.0.0.1)\n"
                   "  -r RATE       traps per second, 0 for as fast as possible (default 10000)\n"
                   "  -n COUNT      send COUNT traps\n"
                   "  -d SECONDS    send for SECONDS (RATE x SECONDS traps; needs RATE > 0)\n"
                   "  -i IFINDEX    ifIndex of the first interface (default 1)\n"
                   "  -k KEYS       cycle through KEYS interfaces IFINDEX, IFINDEX+1, ... (default 1:\n"
                   "                every trap is the same, so all share one fault key)\n"
                   "  -v VERSION    1 or 2c (default 2c)\n"
                   "  -c COMMUNITY  community string (default public)\n"
                   "      --help    show this help\n");
}

static int parse_long(const char *s, long min, long max, long *ret)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_double(const char *s, double min, double max, double *ret)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Parses argv into o. Returns 0, 1 after --help, or -EINVAL after printing
 * what is wrong on stderr. */
static int parse_options(int argc, char **argv, struct options *o)
{
        static const struct option longopts[] = {{"help", no_argument, NULL, 'H'}, {NULL, 0, NULL, 0}};
        bool have_count = false, have_seconds = false;
        long port, count;
        int c;

        *o = (struct options){.host = "127.0.0.1",
                              .community = "public",
                              .version = SNMP_VERSION_2c,
                              .rate = 10000,
                              .ifindex = 1,
                              .keys = 1};
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":p:h:r:n:d:i:k:v:c:", longopts, NULL)) != -1) {
                switch (c) {
                case 'p':
                        if (parse_long(optarg, 1, 65535, &port) < 0) {
                                fprintf(stderr, "trapgen: -p: '%s' is not a port number (1-65535)\n", optarg);
                                return -EINVAL;
                        }
                        o->port = optarg;
                        break;
                case 'h':
                        o->host = optarg;
                        break;
                case 'r':
                        if (parse_double(optarg, 0, RATE_MAX, &o->rate) < 0) {
                                fprintf(stderr, "trapgen: -r: '%s' is not a rate from 0 to %d traps/s\n", optarg,
                                        RATE_MAX);
                                return -EINVAL;
                        }
                        break;
                case 'n':
                        if (parse_long(optarg, 1, LONG_MAX, &count) < 0) {
                                fprintf(stderr, "trapgen: -n: '%s' is not a positive count\n", optarg);
                                return -EINVAL;
                        }
                        o->count = (uint64_t)count;
                        have_count = true;
                        break;
                case 'd':
                        if (parse_double(optarg, 0.001, SECONDS_MAX, &o->seconds) < 0) {
                                fprintf(stderr, "trapgen: -d: '%s' is not a duration from 0.001 to %.0f s\n", optarg,
                                        SECONDS_MAX);
                                return -EINVAL;
                        }
                        have_seconds = true;
                        break;
                case 'i':
                        if (parse_long(optarg, 1, INT32_MAX, &o->ifindex) < 0) {
                                fprintf(stderr, "trapgen: -i: '%s' is not an ifIndex (1-%" PRId32 ")\n", optarg,
                                        INT32_MAX);
                                return -EINVAL;
                        }
                        break;
                case 'k':
                        if (parse_long(optarg, 1, KEYS_MAX, &o->keys) < 0) {
                                fprintf(stderr, "trapgen: -k: '%s' is not a number of keys (1-%d)\n", optarg, KEYS_MAX);
                                return -EINVAL;
                        }
                        break;
                case 'v':
                        if (strcmp(optarg, "1") == 0) {
                                o->version = SNMP_VERSION_1;
                        } else if (strcmp(optarg, "2c") == 0) {
                                o->version = SNMP_VERSION_2c;
                        } else {
                                fprintf(stderr, "trapgen: -v: '%s' is not a version (1 or 2c)\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case 'c':
                        if (optarg[0] == '\0' || strlen(optarg) > 255) {
                                fprintf(stderr, "trapgen: -c: the community must be 1 to 255 bytes\n");
                                return -EINVAL;
                        }
                        o->community = optarg;
                        break;
                case 'H':
                        return 1;
                case ':':
                        fprintf(stderr, "trapgen: option -%c needs a value (try --help)\n", optopt);
                        return -EINVAL;
                default:
                        if (optopt)
                                fprintf(stderr, "trapgen: unknown option -%c (try --help)\n", optopt);
                        else
                                fprintf(stderr, "trapgen: unknown option %s (try --help)\n", argv[optind - 1]);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "trapgen: unexpected argument '%s' (try --help)\n", argv[optind]);
                return -EINVAL;
        }
        if (!o->port) {
                fprintf(stderr, "trapgen: -p PORT is required (try --help)\n");
                return -EINVAL;
        }
        if (have_count == have_seconds) {
                fprintf(stderr, "trapgen: give exactly one of -n COUNT and -d SECONDS\n");
                return -EINVAL;
        }
        if (have_seconds) {
                if (o->rate <= 0) {
                        fprintf(stderr, "trapgen: -d needs a rate above 0 (-r)\n");
                        return -EINVAL;
                }
                o->count = (uint64_t)(o->rate * o->seconds + 0.5);
                if (o->count == 0)
                        o->count = 1;
        }
        if (o->ifindex + o->keys - 1 > INT32_MAX) {
                fprintf(stderr, "trapgen: -i %ld with -k %ld goes past ifIndex %" PRId32 "\n", o->ifindex, o->keys,
                        INT32_MAX);
                return -EINVAL;
        }
        return 0;
}

/* Appends OID prefix.index to pdu with the given type and value. Returns 0,
 * or -ENOMEM. */
static int add_column(netsnmp_pdu *pdu, const oid *prefix, size_t prefix_len, long index, unsigned char type,
                      const void *value, size_t value_len)
{
        oid name[MAX_OID_LEN];

        memcpy(name, prefix, prefix_len * sizeof(oid));
        name[prefix_len] = (oid)index;
        if (!snmp_pdu_add_variable(pdu, name, prefix_len + 1, type, value, value_len))
                return -ENOMEM;
        return 0;
}

/* Encodes the linkDown trap of interface ifindex with net-snmp into
 * ret->bytes (caller frees with free()). Returns 0, or -EPROTO when net-snmp
 * cannot encode it (its message on stderr is left to the caller), -ENOMEM. */
static int build_trap(const struct options *o, long ifindex, struct packet *ret)
{
        static const oid sys_uptime[] = {1, 3, 6, 1, 2, 1, 1, 3, 0};
        static const oid snmp_trap_oid[] = {1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0};
        static const oid link_down[] = {1, 3, 6, 1, 6, 3, 1, 1, 5, 3};
        /* NET-SNMP-MIB::netSnmpAgentOIDs.linux: the sysObjectID net-snmp's own agent sends as enterprise. */
        static const oid enterprise[] = {1, 3, 6, 1, 4, 1, 8072, 3, 2, 10};
        static const oid if_index[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 1};
        static const oid if_descr[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 2};
        static const oid if_admin[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 7};
        static const oid if_oper[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 8};
        const long up = 1, down = 2;
        const u_long uptime = UPTIME_TICKS;
        netsnmp_session session;
        netsnmp_pdu *pdu;
        unsigned char community[256], *buf = NULL;
        size_t cap = 1024, offset = 0;
        char descr[32];
        int r = -ENOMEM;

        snmp_sess_init(&session);
        session.version = o->version;
        session.community_len = strlen(o->community);
        memcpy(community, o->community, session.community_len);
        session.community = community;

        pdu = snmp_pdu_create(o->version == SNMP_VERSION_1 ? SNMP_MSG_TRAP : SNMP_MSG_TRAP2);
        if (!pdu)
                return -ENOMEM;
        pdu->version = o->version;
        if (o->version == SNMP_VERSION_1) {
                pdu->enterprise = netsnmp_memdup(enterprise, sizeof enterprise);
                if (!pdu->enterprise)
                        goto out;
                pdu->enterprise_length = OID_LENGTH(enterprise);
                pdu->trap_type = SNMP_TRAP_LINKDOWN;
                pdu->specific_type = 0;
                pdu->time = uptime;
                memcpy(pdu->agent_addr, (const unsigned char[4]){127, 0, 0, 1}, 4);
        } else {
                if (!snmp_pdu_add_variable(pdu, sys_uptime, OID_LENGTH(sys_uptime), ASN_TIMETICKS, &uptime,
                                           sizeof uptime) ||
                    !snmp_pdu_add_variable(pdu, snmp_trap_oid, OID_LENGTH(snmp_trap_oid), ASN_OBJECT_ID, link_down,
                                           sizeof link_down))
                        goto out;
        }
        snprintf(descr, sizeof descr, "eth%ld", ifindex);
        if (add_column(pdu, if_index, OID_LENGTH(if_index), ifindex, ASN_INTEGER, &ifindex, sizeof ifindex) < 0 ||
            add_column(pdu, if_admin, OID_LENGTH(if_admin), ifindex, ASN_INTEGER, &up, sizeof up) < 0 ||
            add_column(pdu, if_oper, OID_LENGTH(if_oper), ifindex, ASN_INTEGER, &down, sizeof down) < 0 ||
            add_column(pdu, if_descr, OID_LENGTH(if_descr), ifindex, ASN_OCTET_STR, descr, strlen(descr)) < 0)
                goto out;

        /* Reverse encoding (net-snmp's default once init_snmp has run, which this
         * program skips: it needs no MIBs or config files) builds the message
         * backwards from the end of the buffer: it ends at buf + cap and is
         * offset bytes long. snmp_build may grow buf and cap. */
        netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_REVERSE_ENCODE, 1);
        buf = malloc(cap);
        if (!buf)
                goto out;
        if (snmp_build(&buf, &cap, &offset, &session, pdu) != SNMPERR_SUCCESS || offset == 0 || offset > cap ||
            buf[cap - offset] != (ASN_SEQUENCE | ASN_CONSTRUCTOR)) {
                r = -EPROTO;
                goto out;
        }
        ret->bytes = malloc(offset);
        if (!ret->bytes)
                goto out;
        memcpy(ret->bytes, buf + cap - offset, offset);
        ret->len = offset;
        r = 0;
out:
        free(buf);
        snmp_free_pdu(pdu);
        return r;
}

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns when CLOCK_MONOTONIC has reached t: sleeps while t is more than
 * SPIN_NS away, then spins. */
static void wait_until(uint64_t t)
{
        uint64_t now = now_ns();

        if (t > now + SPIN_NS) {
                uint64_t wake = t - SPIN_NS / 2;
                struct timespec ts = {.tv_sec = (time_t)(wake / 1000000000u), .tv_nsec = (long)(wake % 1000000000u)};

                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                        ;
        }
        while (now_ns() < t)
                ;
}

/* A UDP socket connected to host:port. Returns the fd, or -1 after printing
 * why on stderr. */
static int open_socket(const char *host, const char *port)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *res, *ai;
        int fd = -1, r, err = 0;

        r = getaddrinfo(host, port, &hints, &res);
        if (r != 0) {
                fprintf(stderr, "trapgen: %s port %s: %s\n", host, port, gai_strerror(r));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                        break;
                err = errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0)
                fprintf(stderr, "trapgen: connecting a UDP socket to %s port %s: %s\n", host, port, strerror(err));
        return fd;
}

/* Sends o->count traps from pkts (cycling through n_pkts) on fd, paced at
 * o->rate. Returns 0 with *ret_sent, *ret_errors and *ret_ns (first send
 * to the end of the last), or a negative errno when sending failed for good
 * (*ret_sent and the others are set then too). */
static int send_traps(int fd, const struct options *o, const struct packet *pkts, size_t n_pkts, uint64_t *ret_sent,
                      uint64_t *ret_errors, uint64_t *ret_ns)
{
        struct mmsghdr msgs[BATCH_MAX];
        struct iovec iov[BATCH_MAX];
        const double ns_per_trap = o->rate > 0 ? 1e9 / o->rate : 0;
        uint64_t sent = 0, errors = 0, t0, now;
        int r = 0;

        memset(msgs, 0, sizeof msgs);
        for (size_t i = 0; i < BATCH_MAX; i++) {
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
        }
        t0 = now_ns();
        while (sent < o->count) {
                uint64_t due = o->count, n;
                int k;

                if (o->rate > 0) {
                        /* Trap i is due at t0 + i * ns_per_trap; trap 0 at t0. */
                        now = now_ns();
                        due = (uint64_t)((double)(now - t0) / ns_per_trap) + 1;
                        if (due > o->count)
                                due = o->count;
                        if (due <= sent) {
                                wait_until(t0 + (uint64_t)((double)sent * ns_per_trap));
                                continue;
                        }
                }
                n = due - sent < BATCH_MAX ? due - sent : BATCH_MAX;
                for (uint64_t i = 0; i < n; i++) {
                        const struct packet *p = &pkts[(sent + i) % n_pkts];

                        iov[i].iov_base = p->bytes;
                        iov[i].iov_len = p->len;
                }
                k = sendmmsg(fd, msgs, (unsigned int)n, 0);
                if (k < 0) {
                        if (errno == ECONNREFUSED || errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
                                errors++;
                                continue;
                        }
                        r = -errno;
                        break;
                }
                sent += (uint64_t)k;
        }
        *ret_ns = now_ns() - t0;
        *ret_sent = sent;
        *ret_errors = errors;
        return r;
}

int main(int argc, char **argv)
{
        struct options o;
        struct packet *pkts = NULL;
        uint64_t sent = 0, errors = 0, ns = 0;
        int fd = -1, r, status = 1;
        long k;

        r = parse_options(argc, argv, &o);
        if (r == 1) {
                usage(stdout);
                return 0;
        }
        if (r < 0)
                return 2;

        pkts = calloc((size_t)o.keys, sizeof *pkts);
        if (!pkts) {
                fprintf(stderr, "trapgen: out of memory\n");
                goto out;
        }
        for (k = 0; k < o.keys; k++) {
                r = build_trap(&o, o.ifindex + k, &pkts[k]);
                if (r < 0) {
                        fprintf(stderr, "trapgen: encoding the trap for ifIndex %ld: %s\n", o.ifindex + k,
                                r == -EPROTO ? snmp_api_errstring(snmp_errno) : strerror(-r));
                        goto out;
                }
        }

        fd = open_socket(o.host, o.port);
        if (fd < 0)
                goto out;
        /* Without this, every nanosleep may overshoot by the default 50 µs slack. */
        (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

        r = send_traps(fd, &o, pkts, (size_t)o.keys, &sent, &errors, &ns);
        if (r < 0)
                fprintf(stderr, "trapgen: sending to %s port %s: %s\n", o.host, o.port, strerror(-r));
        else
                status = 0;
        printf("sent=%" PRIu64 " elapsed=%.6f rate=%.1f target=%.0f errors=%" PRIu64 "\n", sent, (double)ns / 1e9,
               ns > 0 ? (double)sent * 1e9 / (double)ns : 0.0, o.rate, errors);
        if (fflush(stdout) != 0) {
                fprintf(stderr, "trapgen: writing the result: %s\n", strerror(errno));
                status = 1;
        }
out:
        if (fd >= 0)
                close(fd);
        for (k = 0; pkts && k < o.keys; k++)
                free(pkts[k].bytes);
        free(pkts);
        return status;
}
