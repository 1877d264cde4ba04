/* libFuzzer target: one UDP datagram through the SNMP notification decoder
 * (collectors/snmp_receiver.c) and net-snmp beneath it: BER, community and
 * USM processing, the v1-to-v2 mapping and the event built from the MIBs.
 *
 * One receiver for the whole run (net-snmp's state is process-wide): the
 * callback accepts community "public" and the receiver knows the v3 user
 * fuzzuser under engine ID 0x8000000001020304 (SHA-256/AES, passwords
 * fuzzpass123), the credentials the seed corpus was captured with, so the
 * authenticated seeds reach the decoder and their mutations exercise USM's
 * checks; noAuthNoPriv is accepted so mutated v3 messages reach the decoder
 * too. Replies go nowhere (reply_fd -1). USM remembers the newest boots/time it authenticated from
 * an engine and refuses older messages; that engine's entry is forgotten
 * before each input so the result depends on the input alone (otherwise one
 * mutated boots counter would shut the authenticated seeds out for the rest
 * of the run). The callback reads every string and number of the event so
 * a dangling or unterminated pointer shows up under ASan.
 *
 * The MIBs come from $WEIBAO_FUZZ_MIBDIR, else from FUZZ_MIBDIR (the
 * Makefile passes the absolute path of collectors/mibs), else from
 * collectors/mibs relative to the working directory. The engine boots file
 * and whatever net-snmp puts beside it live in a temporary directory removed
 * at exit. */
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>

#include "../../collectors/snmp_receiver.h"

#ifndef FUZZ_MIBDIR
#define FUZZ_MIBDIR "collectors/mibs"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct snmp_receiver *receiver;
static char tmpdir[] = "/tmp/weibao-fuzz-trap-XXXXXX";
static char boots_file[sizeof tmpdir + 32];
static volatile size_t sink; /* keeps the callback's reads */
static u_char fuzz_engine[] = {0x80, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04};

/* Reads every byte of s. */
static size_t touch_string(const char *s)
{
        size_t n = strlen(s), sum = 0;

        for (size_t i = 0; i < n; i++)
                sum += (unsigned char)s[i];
        return sum + n;
}

static enum trap_verdict on_trap(const struct trap_info *info, const struct event *e, void *userdata)
{
        size_t sum = 0;

        (void)userdata;
        if (!e->source || !e->name || !e->object || e->n_attrs > EVENT_ATTRS_MAX)
                abort();
        sum += touch_string(e->source) + touch_string(e->name) + touch_string(e->object);
        if (e->unit)
                sum += touch_string(e->unit);
        if (e->has_value)
                sum += (size_t)(e->value != e->value);
        for (size_t i = 0; i < e->n_attrs; i++) {
                const struct event_attr *a = &e->attrs[i];
                if (!a->key)
                        abort();
                sum += touch_string(a->key);
                if (a->type == EVENT_ATTR_STRING) {
                        if (!a->str)
                                abort();
                        sum += touch_string(a->str);
                } else if (a->type == EVENT_ATTR_NUMBER) {
                        sum += (size_t)(a->num != a->num);
                } else {
                        abort();
                }
        }
        if (info->source)
                sum += touch_string(info->source);
        if (info->user)
                sum += touch_string(info->user);
        if (info->version < 1 || info->version > 3 || (info->version == 3) != (info->user != NULL) ||
            (info->version != 3) != (info->community != NULL))
                abort();
        if (info->community)
                sum += touch_string(info->community);
        sink = sum;
        if (!info->community)
                return TRAP_ACCEPTED;
        return strcmp(info->community, "public") == 0 ? TRAP_ACCEPTED : TRAP_REJECT_COMMUNITY;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path) < 0 ? -1 : 0;
}

static void cleanup(void)
{
        snmp_receiver_free(receiver);
        receiver = NULL;
        nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        struct snmp_receiver_settings s = {0};
        const char *mibdir = getenv("WEIBAO_FUZZ_MIBDIR");
        char err[600];

        (void)argc;
        (void)argv;
        if (!mkdtemp(tmpdir)) {
                perror("fuzz_trap: mkdtemp");
                abort();
        }
        snprintf(boots_file, sizeof boots_file, "%s/engine-boots", tmpdir);
        s.builtin_mib_dir = mibdir && mibdir[0] ? mibdir : FUZZ_MIBDIR;
        s.engine_boots_file = boots_file;
        if (snmp_receiver_new(&s, on_trap, NULL, err, sizeof err, &receiver) < 0) {
                fprintf(stderr, "fuzz_trap: %s\n", err);
                abort();
        }
        if (snmp_receiver_add_user(receiver, "-e 0x8000000001020304 fuzzuser SHA-256 fuzzpass123 AES fuzzpass123", err,
                                   sizeof err) < 0) {
                fprintf(stderr, "fuzz_trap: adding the v3 user: %s\n", err);
                abort();
        }
        /* the seeds include noAuthNoPriv: let it through to the decoder */
        snmp_receiver_set_min_security(receiver, 1);
        atexit(cleanup);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(50162)};
        enum trap_verdict v;

        from.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
        free_enginetime(fuzz_engine, sizeof fuzz_engine);
        v = snmp_receiver_feed(receiver, data, size, (const struct sockaddr *)&from, sizeof from, -1);
        if ((unsigned)v >= TRAP_VERDICT_MAX || !trap_verdict_to_string(v))
                abort();
        return 0;
}
