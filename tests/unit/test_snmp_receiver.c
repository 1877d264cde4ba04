/* Unit tests for collectors/snmp_receiver.c against real net-snmp.
 *
 * Every datagram is built in the test with net-snmp's own encoder
 * (snmp_pdu_create, snmp_pdu_add_variable, snmp_build), never hand-written
 * BER, and fed to a receiver that loads weibao's MIB subset from
 * collectors/mibs (the tests run from the repository root). v3 messages are
 * built for the sender engine 0x8000000001020304 and user testuser, a user the
 * receiver knows: net-snmp's USM state is process-wide, so the encoder finds
 * that user's keys on the same list the receiver checks against. One
 * receiver exists at a time (net-snmp's rule): each test creates and frees
 * its own; the engine boots file and anything net-snmp writes beside it live
 * in one temporary directory removed after the group. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>

#include "../../collectors/snmp_receiver.h"

#define MIB_DIR "collectors/mibs"
#define USER_LINE "-e 0x8000000001020304 testuser SHA-256 testpass123 AES testpass123"
#define PKT_MAX 65536
#define KEY_MAX 320
#define STR_MAX 1600

static const u_char sender_engine[] = {0x80, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04};
static const oid sysUpTime0[] = {1, 3, 6, 1, 2, 1, 1, 3, 0};
static const oid snmpTrapOID0[] = {1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0};
static const oid linkDown[] = {1, 3, 6, 1, 6, 3, 1, 1, 5, 3};
static const oid snmpTraps[] = {1, 3, 6, 1, 6, 3, 1, 1, 5};
static const oid ifIndex3[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 3};
static const oid ifDescr3[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 3};
static const oid ifAdminStatus3[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 7, 3};
static const oid ifOperStatus3[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 3};
static const oid sysName0[] = {1, 3, 6, 1, 2, 1, 1, 5, 0};
static const oid enterprise99999[] = {1, 3, 6, 1, 4, 1, 99999};

#define OID_LEN(o) (sizeof(o) / sizeof(oid))

/* ---- what the callback saw, copied (the event's strings die with the call) ---- */

struct seen_attr {
        char key[KEY_MAX];
        enum event_attr_type type;
        char str[STR_MAX];
        double num;
};

static struct {
        int calls;
        struct trap_info info; /* strings point into the fields below */
        char community[256], user[256], source[64];
        char name[256], object[64], ev_source[32];
        size_t n_attrs;
        struct seen_attr attrs[EVENT_ATTRS_MAX];
        enum trap_verdict answer_public; /* verdict for community "public" and v3 */
} seen;
static char tmpdir[] = "/tmp/weibao-test-snmp-XXXXXX";
static char boots_file[sizeof tmpdir + 32];
static struct snmp_receiver *rx;
static void copy_str(char *dst, size_t size, const char *src)
{
        snprintf(dst, size, "%s", src ? src : "");
}

static enum trap_verdict on_trap(const struct trap_info *info, const struct event *e, void *userdata)
{
        assert_ptr_equal(userdata, &seen);
        seen.calls++;
        seen.info = *info;
        copy_str(seen.community, sizeof seen.community, info->community);
        copy_str(seen.user, sizeof seen.user, info->user);
        copy_str(seen.source, sizeof seen.source, info->source);
        seen.info.community = info->community ? seen.community : NULL;
        seen.info.user = info->user ? seen.user : NULL;
        seen.info.source = seen.source;
        copy_str(seen.ev_source, sizeof seen.ev_source, e->source);
        copy_str(seen.name, sizeof seen.name, e->name);
        copy_str(seen.object, sizeof seen.object, e->object);
        assert_true(e->n_attrs <= EVENT_ATTRS_MAX);
        seen.n_attrs = e->n_attrs;
        for (size_t i = 0; i < e->n_attrs; i++) {
                struct seen_attr *a = &seen.attrs[i];
                assert_non_null(e->attrs[i].key);
                assert_true(strlen(e->attrs[i].key) < sizeof a->key);
                copy_str(a->key, sizeof a->key, e->attrs[i].key);
                a->type = e->attrs[i].type;
                if (a->type == EVENT_ATTR_STRING) {
                        assert_non_null(e->attrs[i].str);
                        assert_true(strlen(e->attrs[i].str) < sizeof a->str);
                        copy_str(a->str, sizeof a->str, e->attrs[i].str);
                } else {
                        a->num = e->attrs[i].num;
                }
        }
        if (info->community && strcmp(info->community, "public") != 0)
                return TRAP_REJECT_COMMUNITY;
        return seen.answer_public;
}

static const struct seen_attr *seen_attr(const char *key)
{
        for (size_t i = 0; i < seen.n_attrs; i++)
                if (strcmp(seen.attrs[i].key, key) == 0)
                        return &seen.attrs[i];
        fail_msg("the event has no attribute %s", key);
        return NULL;
}

static void assert_attr_str(const char *key, const char *want)
{
        const struct seen_attr *a = seen_attr(key);
        if (a->type != EVENT_ATTR_STRING)
                fail_msg("%s is a number (%g), not the string \"%s\"", key, a->num, want);
        assert_string_equal(a->str, want);
}

static void assert_attr_num(const char *key, double want)
{
        const struct seen_attr *a = seen_attr(key);
        if (a->type != EVENT_ATTR_NUMBER)
                fail_msg("%s is the string \"%s\", not the number %g", key, a->str, want);
        assert_true(a->num == want);
}

static size_t count_attrs(const char *key)
{
        size_t n = 0;
        for (size_t i = 0; i < seen.n_attrs; i++)
                n += strcmp(seen.attrs[i].key, key) == 0;
        return n;
}

/* ---- building datagrams with net-snmp ---- */

static void add_int(netsnmp_pdu *pdu, const oid *name, size_t len, long v)
{
        assert_non_null(snmp_pdu_add_variable(pdu, name, len, ASN_INTEGER, &v, sizeof v));
}

static void add_str(netsnmp_pdu *pdu, const oid *name, size_t len, const char *s)
{
        assert_non_null(snmp_pdu_add_variable(pdu, name, len, ASN_OCTET_STR, s, strlen(s)));
}

static void add_oid(netsnmp_pdu *pdu, const oid *name, size_t len, const oid *value, size_t value_len)
{
        assert_non_null(snmp_pdu_add_variable(pdu, name, len, ASN_OBJECT_ID, value, value_len * sizeof(oid)));
}

static void add_ticks(netsnmp_pdu *pdu, u_long ticks)
{
        assert_non_null(
                snmp_pdu_add_variable(pdu, sysUpTime0, OID_LEN(sysUpTime0), ASN_TIMETICKS, &ticks, sizeof ticks));
}

/* A v2c notification (SNMP_MSG_TRAP2 or SNMP_MSG_INFORM) or request with
 * sysUpTime.0 and, when trap is not NULL, snmpTrapOID.0 = trap. */
static netsnmp_pdu *pdu_v2(int command, const oid *trap, size_t trap_len)
{
        netsnmp_pdu *pdu = snmp_pdu_create(command);
        assert_non_null(pdu);
        pdu->version = SNMP_VERSION_2c;
        if (trap) {
                add_ticks(pdu, 4242);
                add_oid(pdu, snmpTrapOID0, OID_LEN(snmpTrapOID0), trap, trap_len);
        }
        return pdu;
}

static netsnmp_pdu *pdu_v1(const oid *enterprise, size_t enterprise_len, long generic, long specific)
{
        netsnmp_pdu *pdu = snmp_pdu_create(SNMP_MSG_TRAP);
        assert_non_null(pdu);
        pdu->version = SNMP_VERSION_1;
        pdu->enterprise = snmp_duplicate_objid(enterprise, enterprise_len);
        assert_non_null(pdu->enterprise);
        pdu->enterprise_length = enterprise_len;
        pdu->trap_type = generic;
        pdu->specific_type = specific;
        pdu->time = 1234;
        memcpy(pdu->agent_addr, (const u_char[]){198, 51, 100, 7}, 4);
        return pdu;
}

/* A v3 notification from the sender engine; user must be on net-snmp's
 * USM list (with keys) unless level is noAuthNoPriv. */
static netsnmp_pdu *pdu_v3(int command, const char *user, int level, const oid *trap, size_t trap_len)
{
        netsnmp_pdu *pdu = pdu_v2(command, trap, trap_len);
        pdu->version = SNMP_VERSION_3;
        pdu->securityModel = SNMP_SEC_MODEL_USM;
        pdu->securityLevel = level;
        pdu->securityName = strdup(user);
        assert_non_null(pdu->securityName);
        pdu->securityNameLen = strlen(user);
        pdu->securityEngineID = netsnmp_memdup(sender_engine, sizeof sender_engine);
        pdu->securityEngineIDLen = sizeof sender_engine;
        pdu->contextEngineID = netsnmp_memdup(sender_engine, sizeof sender_engine);
        pdu->contextEngineIDLen = sizeof sender_engine;
        pdu->contextName = strdup("");
        pdu->contextNameLen = 0;
        assert_non_null(pdu->securityEngineID);
        assert_non_null(pdu->contextEngineID);
        assert_non_null(pdu->contextName);
        return pdu;
}

/* Encodes pdu (freed here) as one datagram into out; returns its length. */ static size_t
build_with(netsnmp_pdu *pdu, const char *community, u_char *out, size_t size)
{
        netsnmp_session sess;
        size_t pkt_len = 2048, offset = 0;
        u_char *pkt = malloc(pkt_len);
        int rc;
        assert_non_null(pkt);
        /* net-snmp's default, and the only layout handled here: the message
         * ends the buffer and is offset bytes long */
        assert_true(netsnmp_ds_get_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_REVERSE_ENCODE));
        snmp_sess_init(&sess);
        sess.version = pdu->version;
        sess.community = (u_char *)(uintptr_t)community;
        sess.community_len = strlen(community);
        rc = snmp_build(&pkt, &pkt_len, &offset, &sess, pdu);
        if (rc != 0)
                fail_msg("snmp_build: %s", snmp_api_errstring(sess.s_snmp_errno));
        assert_true(offset > 0 && offset <= size);
        memcpy(out, pkt + pkt_len - offset, offset);
        free(pkt);
        snmp_free_pdu(pdu);
        return offset;
}

static size_t build(netsnmp_pdu *pdu, u_char *out, size_t size)
{
        return build_with(pdu, "public", out, size);
}

/* Fed as if from 192.0.2.1:50162, replies dropped. */ static enum trap_verdict feed(const void *buf, size_t len)
{
        struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(50162)};
        from.sin_addr.s_addr = htonl(0xc0000201);
        return snmp_receiver_feed(rx, buf, len, (const struct sockaddr *)&from, sizeof from, -1);
}

/* ---- fixtures ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path) < 0 ? -1 : 0;
}

static int group_setup(void **state)
{
        (void)state;
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(boots_file, sizeof boots_file, "%s/engine-boots", tmpdir);
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static int setup(void **state)
{
        struct snmp_receiver_settings s = {.builtin_mib_dir = MIB_DIR, .engine_boots_file = boots_file};
        char err[600];
        (void)state;
        memset(&seen, 0, sizeof seen);
        seen.answer_public = TRAP_ACCEPTED;
        if (snmp_receiver_new(&s, on_trap, &seen, err, sizeof err, &rx) < 0) {
                print_error("snmp_receiver_new: %s\n", err);
                return -1;
        }
        if (snmp_receiver_add_user(rx, USER_LINE, err, sizeof err) < 0) {
                print_error("snmp_receiver_add_user: %s\n", err);
                snmp_receiver_free(rx);
                rx = NULL;
                return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        snmp_receiver_free(rx);
        rx = NULL;
        return 0;
}

/* ---- v1 and v2c ---- */

static size_t build_linkdown_v2c(u_char *out, size_t size)
{
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, linkDown, OID_LEN(linkDown));
        add_int(pdu, ifIndex3, OID_LEN(ifIndex3), 3);
        add_str(pdu, ifDescr3, OID_LEN(ifDescr3), "eth2");
        add_int(pdu, ifAdminStatus3, OID_LEN(ifAdminStatus3), 1);
        add_int(pdu, ifOperStatus3, OID_LEN(ifOperStatus3), 2);
        return build(pdu, out, size);
}

static void test_v2c_linkdown(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len = build_linkdown_v2c(buf, sizeof buf);
        (void)state;
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.info.version, 2);
        assert_false(seen.info.inform);
        assert_string_equal(seen.info.community, "public");
        assert_null(seen.info.user);
        assert_int_equal(seen.info.security_level, 0);
        assert_string_equal(seen.info.source, "192.0.2.1");
        assert_string_equal(seen.ev_source, "snmptrap");
        assert_string_equal(seen.name, "linkDown");
        assert_string_equal(seen.object, "192.0.2.1");
        assert_attr_str("trap", "IF-MIB::linkDown");
        assert_attr_str("trap_oid", "1.3.6.1.6.3.1.1.5.3");
        assert_attr_str("source_addr", "192.0.2.1");
        assert_attr_str("agent_addr", "192.0.2.1");
        assert_attr_str("version", "2c");
        assert_attr_str("pdu", "trap");
        assert_attr_str("community", "public");
        assert_attr_num("varbind[SNMPv2-MIB::sysUpTime]", 4242);
        assert_attr_num("varbind[IF-MIB::ifIndex]", 3);
        assert_attr_num("varbind[1.3.6.1.2.1.2.2.1.1.3]", 3);
        assert_attr_str("varbind[IF-MIB::ifDescr]", "eth2");
        assert_attr_str("varbind[1.3.6.1.2.1.2.2.1.2.3]", "eth2");
        assert_attr_str("varbind[IF-MIB::ifAdminStatus]", "up");
        assert_attr_num("varbind[1.3.6.1.2.1.2.2.1.7.3]", 1);
        assert_attr_str("varbind[IF-MIB::ifOperStatus]", "down");
        assert_attr_num("varbind[1.3.6.1.2.1.2.2.1.8.3]", 2);
        /* snmpTrapOID.0 is the trap attribute, not a varbind */
        assert_int_equal(count_attrs("varbind[SNMPv2-MIB::snmpTrapOID]"), 0);
        assert_int_equal(count_attrs("varbinds_dropped"), 0);
}

static void test_v2c_value_types(void **state)
{
        static u_char buf[PKT_MAX];
        static const oid ipv[] = {1, 3, 6, 1, 4, 1, 99999, 1, 3, 0};
        static const oid oidv[] = {1, 3, 6, 1, 4, 1, 99999, 1, 4, 0};
        static const oid c64v[] = {1, 3, 6, 1, 4, 1, 99999, 1, 5, 0};
        static const oid gaugev[] = {1, 3, 6, 1, 4, 1, 99999, 1, 6, 0};
        static const oid binv[] = {1, 3, 6, 1, 4, 1, 99999, 1, 7, 0};
        static const oid trap[] = {1, 3, 6, 1, 4, 1, 99999, 0, 1};
        const u_char ip[4] = {192, 0, 2, 9}, bin[4] = {0x00, 0x01, 0xfe, 0xff};
        struct counter64 c64 = {.high = 1, .low = 2};
        u_long gauge = 4000000000UL;
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, trap, OID_LEN(trap));
        size_t len;
        (void)state;
        assert_non_null(snmp_pdu_add_variable(pdu, ipv, OID_LEN(ipv), ASN_IPADDRESS, ip, sizeof ip));
        add_oid(pdu, oidv, OID_LEN(oidv), ifOperStatus3, OID_LEN(ifOperStatus3));
        assert_non_null(snmp_pdu_add_variable(pdu, c64v, OID_LEN(c64v), ASN_COUNTER64, &c64, sizeof c64));
        assert_non_null(snmp_pdu_add_variable(pdu, gaugev, OID_LEN(gaugev), ASN_GAUGE, &gauge, sizeof gauge));
        assert_non_null(snmp_pdu_add_variable(pdu, binv, OID_LEN(binv), ASN_OCTET_STR, bin, sizeof bin));
        add_str(pdu, sysName0, OID_LEN(sysName0), "host1");
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_attr_str("trap_oid", "1.3.6.1.4.1.99999.0.1");
        assert_attr_str("varbind[1.3.6.1.4.1.99999.1.3.0]", "192.0.2.9");
        assert_attr_str("varbind[1.3.6.1.4.1.99999.1.4.0]", "IF-MIB::ifOperStatus.3");
        assert_attr_num("varbind[1.3.6.1.4.1.99999.1.5.0]", 4294967296.0 + 2);
        assert_attr_num("varbind[1.3.6.1.4.1.99999.1.6.0]", 4000000000.0);
        assert_attr_str("varbind[1.3.6.1.4.1.99999.1.7.0]", "00:01:fe:ff");
        assert_attr_str("varbind[SNMPv2-MIB::sysName]", "host1");
        assert_attr_str("varbind[1.3.6.1.2.1.1.5.0]", "host1");
}

static void test_v1_generic_linkdown(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v1(snmpTraps, OID_LEN(snmpTraps), SNMP_TRAP_LINKDOWN, 0);
        size_t len;
        (void)state;
        add_int(pdu, ifIndex3, OID_LEN(ifIndex3), 3);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.info.version, 1);
        assert_string_equal(seen.info.community, "public");
        assert_string_equal(seen.name, "linkDown");
        assert_attr_str("trap", "IF-MIB::linkDown");
        assert_attr_str("trap_oid", "1.3.6.1.6.3.1.1.5.3");
        assert_attr_str("version", "1");
        assert_attr_str("pdu", "trap");
        assert_attr_str("source_addr", "192.0.2.1");
        assert_attr_str("agent_addr", "198.51.100.7");
        assert_attr_num("varbind[SNMPv2-MIB::sysUpTime]", 1234);
        assert_attr_num("varbind[IF-MIB::ifIndex]", 3);
}

static void test_v1_enterprise_specific(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v1(enterprise99999, OID_LEN(enterprise99999), SNMP_TRAP_ENTERPRISESPECIFIC, 17);
        size_t len;
        (void)state;
        add_str(pdu, sysName0, OID_LEN(sysName0), "host1");
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_attr_str("trap_oid", "1.3.6.1.4.1.99999.0.17");
        assert_attr_str("agent_addr", "198.51.100.7");
        assert_attr_str("version", "1");
        assert_attr_str("varbind[SNMPv2-MIB::sysName]", "host1");
}

static void test_v1_all_generic_traps(void **state)
{
        static u_char buf[PKT_MAX];
        static const char *const names[] = {
                "coldStart", "warmStart", "linkDown", "linkUp", "authenticationFailure", "egpNeighborLoss"};
        (void)state;
        for (long g = 0; g <= 5; g++) {
                char want[64];
                size_t len = build(pdu_v1(enterprise99999, OID_LEN(enterprise99999), g, 0), buf, sizeof buf);
                seen.calls = 0;
                assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
                assert_int_equal(seen.calls, 1);
                snprintf(want, sizeof want, "1.3.6.1.6.3.1.1.5.%ld", g + 1);
                assert_attr_str("trap_oid", want);
                /* egpNeighborLoss lives in RFC1213-MIB, not in weibao's subset */
                if (g < 5)
                        assert_string_equal(seen.name, names[g]);
        }
}

static void test_callback_verdict_is_returned(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, linkDown, OID_LEN(linkDown));
        size_t len = build_with(pdu, "private", buf, sizeof buf);
        (void)state;
        assert_int_equal(feed(buf, len), TRAP_REJECT_COMMUNITY);
        assert_int_equal(seen.calls, 1);
        assert_string_equal(seen.info.community, "private");
        /* whatever the callback answers is the verdict */
        len = build_linkdown_v2c(buf, sizeof buf);
        seen.answer_public = TRAP_REJECT_SOURCE;
        assert_int_equal(feed(buf, len), TRAP_REJECT_SOURCE);
        assert_int_equal(seen.calls, 2);
}

/* ---- v3 ---- */

static void test_v3_authpriv_accepted(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHPRIV, linkDown, OID_LEN(linkDown));
        size_t len;
        (void)state;
        add_int(pdu, ifOperStatus3, OID_LEN(ifOperStatus3), 2);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.info.version, 3);
        assert_null(seen.info.community);
        assert_string_equal(seen.info.user, "testuser");
        assert_int_equal(seen.info.security_level, 3);
        assert_attr_str("version", "3");
        assert_attr_str("user", "testuser");
        assert_attr_str("security_level", "authPriv");
        assert_attr_str("trap", "IF-MIB::linkDown");
        assert_attr_str("varbind[IF-MIB::ifOperStatus]", "down");
        assert_int_equal(count_attrs("community"), 0);
}

static void test_v3_authnopriv_accepted(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHNOPRIV, linkDown, OID_LEN(linkDown)),
                           buf, sizeof buf);
        (void)state;
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_attr_str("security_level", "authNoPriv");
}

static void test_v3_unknown_user(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len = build(pdu_v3(SNMP_MSG_TRAP2, "nosuchuser", SNMP_SEC_LEVEL_NOAUTH, linkDown, OID_LEN(linkDown)),
                           buf, sizeof buf);
        (void)state;
        assert_int_equal(feed(buf, len), TRAP_REJECT_UNKNOWN_USER);
        assert_int_equal(seen.calls, 0);
        assert_true(trap_verdict_is_auth_failure(TRAP_REJECT_UNKNOWN_USER));
}

/* The message is authenticated with a key other than the receiver's: the
 * user's key on net-snmp's list is altered while the sender encodes. */
static void test_v3_wrong_auth_key(void **state)
{
        static u_char buf[PKT_MAX];
        struct usmUser *u = usm_get_user(sender_engine, sizeof sender_engine, "testuser");
        netsnmp_pdu *pdu;
        size_t len;
        (void)state;
        assert_non_null(u);
        assert_true(u->authKeyLen > 0);
        pdu = pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHNOPRIV, linkDown, OID_LEN(linkDown));
        u->authKey[0] ^= 0x5a;
        len = build(pdu, buf, sizeof buf);
        u->authKey[0] ^= 0x5a;
        assert_int_equal(feed(buf, len), TRAP_REJECT_AUTH);
        assert_int_equal(seen.calls, 0);
}

static void test_v3_below_min_security(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len;
        (void)state;
        snmp_receiver_set_min_security(rx, SNMP_SEC_LEVEL_AUTHPRIV);
        len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHNOPRIV, linkDown, OID_LEN(linkDown)), buf,
                    sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_REJECT_SECURITY_LEVEL);
        assert_int_equal(seen.calls, 0);
        /* the default minimum is authNoPriv: noAuthNoPriv is refused */
        snmp_receiver_set_min_security(rx, SNMP_SEC_LEVEL_AUTHNOPRIV);
        len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_NOAUTH, linkDown, OID_LEN(linkDown)), buf,
                    sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_REJECT_SECURITY_LEVEL);
        assert_int_equal(seen.calls, 0);
        /* and accepted once the minimum allows it */
        snmp_receiver_set_min_security(rx, SNMP_SEC_LEVEL_NOAUTH);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_attr_str("security_level", "noAuthNoPriv");
}

/* ---- malformed and misdirected ---- */

static void test_malformed(void **state)
{
        static u_char buf[PKT_MAX];
        static const u_char garbage[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
        u_char noise[512];
        size_t len = build_linkdown_v2c(buf, sizeof buf);
        (void)state;
        assert_int_equal(feed(garbage, sizeof garbage - 1), TRAP_REJECT_MALFORMED);
        assert_int_equal(feed(buf, 0), TRAP_REJECT_MALFORMED);
        for (size_t cut = 1; cut < len; cut += 7)
                assert_int_equal(feed(buf, len - cut), TRAP_REJECT_MALFORMED);
        srand(1);
        for (int i = 0; i < 200; i++) {
                for (size_t j = 0; j < sizeof noise; j++)
                        noise[j] = (u_char)rand();
                assert_int_equal(feed(noise, 1 + (size_t)i * 2), TRAP_REJECT_MALFORMED);
        }
        assert_int_equal(seen.calls, 0);
        /* and the receiver still works */
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
}

static void test_truncated_v3(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHPRIV, linkDown, OID_LEN(linkDown)),
                           buf, sizeof buf);
        (void)state;
        for (size_t cut = 1; cut < len; cut += 5)
                assert_int_equal(feed(buf, len - cut), TRAP_REJECT_MALFORMED);
        assert_int_equal(seen.calls, 0);
}

static void test_notification_without_trap_oid(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, NULL, 0);
        size_t len;
        (void)state;
        add_ticks(pdu, 1);
        add_str(pdu, sysName0, OID_LEN(sysName0), "host1");
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_REJECT_MALFORMED);
        assert_int_equal(seen.calls, 0);
}

static void test_get_request_is_not_notification(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_GET, NULL, 0);
        size_t len;
        (void)state;
        assert_non_null(snmp_add_null_var(pdu, sysName0, OID_LEN(sysName0)));
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_REJECT_NOT_NOTIFICATION);
        assert_int_equal(seen.calls, 0);
}

/* ---- informs: the acknowledgement goes back to the sender ---- */

static int udp_socket(struct sockaddr_in *ret_addr)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = {.s_addr = htonl(INADDR_LOOPBACK)}};
        socklen_t alen = sizeof a;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
        *ret_addr = a;
        return fd;
}

static void test_inform_is_acknowledged(void **state)
{
        static u_char buf[PKT_MAX], reply[PKT_MAX];
        struct sockaddr_in trap_addr, sender_addr;
        int trap_fd = udp_socket(&trap_addr), sender_fd = udp_socket(&sender_addr);
        struct pollfd pfd = {.fd = sender_fd, .events = POLLIN};
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_INFORM, linkDown, OID_LEN(linkDown)), *resp;
        long reqid = pdu->reqid, version;
        u_char *p, type, community[64];
        size_t len, left, community_len = sizeof community;
        ssize_t n;
        (void)state;
        add_int(pdu, ifIndex3, OID_LEN(ifIndex3), 3);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(
                snmp_receiver_feed(rx, buf, len, (const struct sockaddr *)&sender_addr, sizeof sender_addr, trap_fd),
                TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_true(seen.info.inform);
        assert_attr_str("pdu", "inform");
        assert_string_equal(seen.info.source, "127.0.0.1");
        assert_int_equal(snmp_receiver_reply_failures(rx), 0);
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        n = recv(sender_fd, reply, sizeof reply, 0);
        assert_true(n > 0);
        /* message header, then the PDU, decoded with net-snmp */
        left = (size_t)n;
        p = asn_parse_sequence(reply, &left, &type, ASN_SEQUENCE | ASN_CONSTRUCTOR, "message");
        assert_non_null(p);
        p = asn_parse_int(p, &left, &type, &version, sizeof version);
        assert_non_null(p);
        assert_int_equal(version, SNMP_VERSION_2c);
        p = asn_parse_string(p, &left, &type, community, &community_len);
        assert_non_null(p);
        assert_memory_equal(community, "public", 6);
        assert_int_equal(community_len, 6);
        resp = snmp_pdu_create(0);
        assert_non_null(resp);
        assert_int_equal(snmp_pdu_parse(resp, p, &left), 0);
        assert_int_equal(resp->command, SNMP_MSG_RESPONSE);
        assert_int_equal(resp->reqid, reqid);
        assert_int_equal(resp->errstat, 0);
        assert_non_null(resp->variables);
        snmp_free_pdu(resp);
        /* a rejected inform gets no acknowledgement */
        pdu = pdu_v2(SNMP_MSG_INFORM, linkDown, OID_LEN(linkDown));
        len = build_with(pdu, "private", buf, sizeof buf);
        assert_int_equal(
                snmp_receiver_feed(rx, buf, len, (const struct sockaddr *)&sender_addr, sizeof sender_addr, trap_fd),
                TRAP_REJECT_COMMUNITY);
        assert_int_equal(poll(&pfd, 1, 200), 0);
        close(trap_fd);
        close(sender_fd);
}

/* A v3 request without an engine ID (how a sender of v3 informs discovers
 * ours) is answered with a report that carries the local engine ID. */
static void test_v3_engine_id_discovery(void **state)
{
        static u_char buf[PKT_MAX], reply[PKT_MAX];
        struct sockaddr_in trap_addr, sender_addr;
        int trap_fd = udp_socket(&trap_addr), sender_fd = udp_socket(&sender_addr);
        struct pollfd pfd = {.fd = sender_fd, .events = POLLIN};
        netsnmp_pdu *pdu = snmp_pdu_create(SNMP_MSG_GET);
        u_char *engine = NULL;
        size_t engine_size = 0, engine_len = 0, len;
        ssize_t n;
        (void)state;
        assert_non_null(pdu);
        pdu->version = SNMP_VERSION_3;
        pdu->securityModel = SNMP_SEC_MODEL_USM;
        pdu->securityLevel = SNMP_SEC_LEVEL_NOAUTH;
        pdu->securityName = strdup("");
        pdu->contextName = strdup("");
        assert_non_null(pdu->securityName);
        assert_non_null(pdu->contextName);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(
                snmp_receiver_feed(rx, buf, len, (const struct sockaddr *)&sender_addr, sizeof sender_addr, trap_fd),
                TRAP_DISCOVERY);
        assert_int_equal(seen.calls, 0);
        assert_false(trap_verdict_is_auth_failure(TRAP_DISCOVERY));
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        n = recv(sender_fd, reply, sizeof reply, 0);
        assert_true(n > 0);
        assert_true(snmp_hex_to_binary(&engine, &engine_size, &engine_len, 1, snmp_receiver_engine_id(rx)));
        assert_true(engine_len >= 5);
        assert_non_null(memmem(reply, (size_t)n, engine, engine_len));
        assert_int_equal(snmp_receiver_reply_failures(rx), 0);
        free(engine);
        close(trap_fd);
        close(sender_fd);
}

/* ---- limits ---- */

static void test_many_varbinds(void **state)
{
        static u_char buf[PKT_MAX];
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, linkDown, OID_LEN(linkDown));
        size_t len, kept = 0;
        const struct seen_attr *dropped;
        (void)state;
        for (oid i = 1; i <= 40; i++) {
                oid name[] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i};
                char descr[16];
                snprintf(descr, sizeof descr, "eth%lu", (unsigned long)i);
                add_str(pdu, name, OID_LEN(name), descr);
        }
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        assert_true(seen.n_attrs <= EVENT_ATTRS_MAX);
        dropped = seen_attr("varbinds_dropped");
        assert_int_equal(dropped->type, EVENT_ATTR_NUMBER);
        assert_true(dropped->num > 0);
        /* the first ones made it, by name and by number, and every one of
         * the 40 is either in the event or counted as dropped */
        assert_attr_str("varbind[1.3.6.1.2.1.2.2.1.2.1]", "eth1");
        assert_attr_str("trap", "IF-MIB::linkDown");
        for (size_t i = 0; i < seen.n_attrs; i++)
                kept += strncmp(seen.attrs[i].key, "varbind[1.3.6.1.2.1.2.2.1.2.", 28) == 0;
        assert_true(kept > 0);
        assert_true(dropped->num == (double)(40 - kept));
}

static void test_long_values_are_bounded(void **state)
{
        static u_char buf[PKT_MAX];
        static char big[4000];
        static const oid name[] = {1, 3, 6, 1, 4, 1, 99999, 1, 1, 0};
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, linkDown, OID_LEN(linkDown));
        const struct seen_attr *a;
        size_t len;
        (void)state;
        memset(big, 'x', sizeof big - 1);
        for (int i = 0; i < 10; i++)
                add_str(pdu, name, OID_LEN(name), big);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_int_equal(seen.calls, 1);
        a = seen_attr("varbind[1.3.6.1.4.1.99999.1.1.0]");
        assert_int_equal(a->type, EVENT_ATTR_STRING);
        assert_true(strlen(a->str) < sizeof big - 1);
}

/* A v3 trap from before the sender rebooted is outside the time window:
 * USM says so without a counter, and it must not look like a wrong key. */
static void test_v3_stale_trap_is_time_window(void **state)
{
        static u_char buf[PKT_MAX], stale_noauth[PKT_MAX], stale_priv[PKT_MAX];
        size_t len, len_noauth, len_priv;
        u_int boots, etime;
        (void)state;
        len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHPRIV, linkDown, OID_LEN(linkDown)), buf,
                    sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        len_noauth = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHNOPRIV, linkDown, OID_LEN(linkDown)),
                           stale_noauth, sizeof stale_noauth);
        len_priv = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHPRIV, linkDown, OID_LEN(linkDown)),
                         stale_priv, sizeof stale_priv);
        /* the sender reboots (boots + 1) and says so in an accepted trap */
        assert_int_equal(get_enginetime(sender_engine, sizeof sender_engine, &boots, &etime, FALSE), 0);
        set_enginetime(sender_engine, sizeof sender_engine, boots + 1, 5, TRUE);
        len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHPRIV, linkDown, OID_LEN(linkDown)), buf,
                    sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        seen.calls = 0;
        assert_int_equal(feed(stale_noauth, len_noauth), TRAP_REJECT_TIME_WINDOW);
        assert_int_equal(feed(stale_priv, len_priv), TRAP_REJECT_TIME_WINDOW);
        assert_int_equal(seen.calls, 0);
        assert_false(trap_verdict_is_auth_failure(TRAP_REJECT_TIME_WINDOW));
}

/* v3 messages from engines no user belongs to leave nothing behind in
 * USM's engine table (a stream of new engine IDs would grow it forever). */
static void test_v3_stranger_engine_is_forgotten(void **state)
{
        static u_char buf[PKT_MAX];
        static const u_char stranger[] = {0x80, 0x00, 0x00, 0x00, 0x01, 0x09, 0x09, 0x09};
        netsnmp_pdu *pdu;
        size_t len;
        (void)state;
        pdu = pdu_v3(SNMP_MSG_TRAP2, "nosuchuser", SNMP_SEC_LEVEL_NOAUTH, linkDown, OID_LEN(linkDown));
        memcpy(pdu->securityEngineID, stranger, sizeof stranger);
        memcpy(pdu->contextEngineID, stranger, sizeof stranger);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_REJECT_UNKNOWN_USER);
        assert_null(search_enginetime_list((u_char *)(uintptr_t)stranger, sizeof stranger));
        /* the configured sender's engine stays known */
        len = build(pdu_v3(SNMP_MSG_TRAP2, "testuser", SNMP_SEC_LEVEL_AUTHPRIV, linkDown, OID_LEN(linkDown)), buf,
                    sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_non_null(search_enginetime_list((u_char *)(uintptr_t)sender_engine, sizeof sender_engine));
}

/* Variables no MIB names down to their object keep distinct numeric keys,
 * and a trap no MIB defines is named by its OID. */
static void test_unnamed_variables_have_distinct_keys(void **state)
{
        static u_char buf[PKT_MAX];
        static const oid a[] = {1, 3, 6, 1, 4, 1, 99999, 1, 1}, b[] = {1, 3, 6, 1, 4, 1, 99999, 1, 2};
        static const oid trap[] = {1, 3, 6, 1, 4, 1, 99999, 0, 3};
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, trap, OID_LEN(trap));
        size_t len;
        (void)state;
        add_str(pdu, a, OID_LEN(a), "first");
        add_str(pdu, b, OID_LEN(b), "second");
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_attr_str("varbind[1.3.6.1.4.1.99999.1.1]", "first");
        assert_attr_str("varbind[1.3.6.1.4.1.99999.1.2]", "second");
        assert_int_equal(count_attrs("varbind[SNMPv2-SMI::enterprises]"), 0);
        assert_string_equal(seen.name, "1.3.6.1.4.1.99999.0.3");
}

/* A community with a NUL in it matches no configured community. */ static void
test_community_with_nul_is_rejected(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len;
        u_char *p;
        (void)state;
        len = build_with(pdu_v2(SNMP_MSG_TRAP2, linkDown, OID_LEN(linkDown)), "publicXevil", buf, sizeof buf);
        p = memmem(buf, len, "publicXevil", 11);
        assert_non_null(p);
        p[6] = '\0';
        assert_int_equal(feed(buf, len), TRAP_REJECT_COMMUNITY);
        assert_int_equal(seen.calls, 0);
}

/* When one trap's strings fill the receiver's space, the varbinds that do not
 * fit are counted in varbinds_dropped, never added half or empty. */
static void test_string_space_full_is_counted(void **state)
{
        static u_char buf[PKT_MAX * 4];
        static char big[500];
        netsnmp_pdu *pdu = pdu_v2(SNMP_MSG_TRAP2, linkDown, OID_LEN(linkDown));
        size_t len, kept = 0;
        (void)state;
        memset(big, 'x', sizeof big - 1);
        /* long instances make long numeric keys: the space runs out before
         * the event's attribute slots do */
        for (unsigned i = 0; i < 24; i++) {
                oid name[70] = {1, 3, 6, 1, 2, 1, 2, 2, 1, 2};
                for (size_t k = 10; k < 70; k++)
                        name[k] = 1000 + i;
                add_str(pdu, name, 70, big);
        }
        add_int(pdu, ifOperStatus3, OID_LEN(ifOperStatus3), 2);
        len = build(pdu, buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        for (size_t i = 0; i < seen.n_attrs; i++) {
                if (seen.attrs[i].type == EVENT_ATTR_STRING && strncmp(seen.attrs[i].key, "varbind[", 8) == 0)
                        assert_true(strlen(seen.attrs[i].str) > 0);
                if (strncmp(seen.attrs[i].key, "varbind[1.", 10) == 0)
                        kept++;
        }
        assert_non_null(seen_attr("varbinds_dropped"));
        assert_int_equal(kept + (size_t)seen_attr("varbinds_dropped")->num, 26); /* with sysUpTime */
}

/* A module whose "MODULE::label" is 255 characters: exactly what the
 * receiver's 256-byte names hold, with no room for ".rest". */
#define LONG_MODULE                                \
        "W"                                        \
        "-LONG-LONG-LONG-LONG-LONG-LONG-LONG-LONG" \
        "-LONG-LONG-LONG-LONG-LONG-LONG-LONG-LONG" \
        "-LONG-LONG-LONG-LONG-LONG-LONG-LONG-LONG" \
        "-MIBX"
#define LONG_LABEL                                   \
        "a"                                          \
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" \
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" \
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
static const oid longRoot1[] = {1, 3, 6, 1, 4, 1, 32473, 9, 1};
static const oid longRoot1_5[] = {1, 3, 6, 1, 4, 1, 32473, 9, 1, 5};

static int setup_long_names(void **state)
{
        char dir[sizeof tmpdir + 16], path[sizeof dir + sizeof LONG_MODULE + 8], err[600];
        const char *dirs[1] = {dir};
        struct snmp_receiver_settings s = {
                .builtin_mib_dir = MIB_DIR, .engine_boots_file = boots_file, .mib_dirs = dirs, .n_mib_dirs = 1};
        FILE *f;

        (void)state;
        assert_int_equal(strlen(LONG_MODULE) + 2 + strlen(LONG_LABEL), 255);
        snprintf(dir, sizeof dir, "%s/long-mib", tmpdir);
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -1;
        snprintf(path, sizeof path, "%s/%s.txt", dir, LONG_MODULE);
        f = fopen(path, "w");
        if (!f)
                return -1;
        fprintf(f,
                "%s DEFINITIONS ::= BEGIN\n"
                "IMPORTS NOTIFICATION-TYPE, enterprises FROM SNMPv2-SMI;\n"
                "longRoot OBJECT IDENTIFIER ::= { enterprises 32473 9 }\n"
                "%s NOTIFICATION-TYPE\n  STATUS current\n  DESCRIPTION \"a name of 255 characters\"\n"
                "  ::= { longRoot 1 }\nEND\n",
                LONG_MODULE, LONG_LABEL);
        if (fclose(f) != 0)
                return -1;
        memset(&seen, 0, sizeof seen);
        seen.answer_public = TRAP_ACCEPTED;
        if (snmp_receiver_new(&s, on_trap, &seen, err, sizeof err, &rx) < 0) {
                print_error("snmp_receiver_new: %s\n", err);
                return -1;
        }
        return 0;
}

/* A name that fills the buffer is kept whole; one with no room left for
 * ".rest" (or its terminating NUL) becomes the numeric OID, never a cut or
 * unterminated string. */
static void test_names_that_fill_the_buffer(void **state)
{
        static u_char buf[PKT_MAX];
        size_t len;

        (void)state;
        len = build(pdu_v2(SNMP_MSG_TRAP2, longRoot1, OID_LEN(longRoot1)), buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_attr_str("trap", LONG_MODULE "::" LONG_LABEL);
        assert_string_equal(seen.name, LONG_LABEL);

        len = build(pdu_v2(SNMP_MSG_TRAP2, longRoot1_5, OID_LEN(longRoot1_5)), buf, sizeof buf);
        assert_int_equal(feed(buf, len), TRAP_ACCEPTED);
        assert_attr_str("trap", "1.3.6.1.4.1.32473.9.1.5");
        assert_attr_str("trap_oid", "1.3.6.1.4.1.32473.9.1.5");
        assert_string_equal(seen.name, "1.3.6.1.4.1.32473.9.1.5");
}

static void test_verdict_names(void **state)
{
        (void)state;
        for (int v = 0; v < TRAP_VERDICT_MAX; v++) {
                assert_non_null(trap_verdict_to_string(v));
                assert_string_not_equal(trap_verdict_to_string(v), "unknown");
        }
        assert_string_equal(trap_verdict_to_string(TRAP_REJECT_SECURITY_LEVEL), "security-level");
        assert_string_equal(trap_verdict_to_string(TRAP_VERDICT_MAX), "unknown");
        assert_false(trap_verdict_is_auth_failure(TRAP_REJECT_MALFORMED));
        assert_true(trap_verdict_is_auth_failure(TRAP_REJECT_AUTH));
        assert_non_null(snmp_receiver_engine_id(rx));
        assert_true(strlen(snmp_receiver_engine_id(rx)) >= 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_v2c_linkdown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v2c_value_types, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1_generic_linkdown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1_enterprise_specific, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1_all_generic_traps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_callback_verdict_is_returned, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_authpriv_accepted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_authnopriv_accepted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_unknown_user, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_wrong_auth_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_below_min_security, setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated_v3, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notification_without_trap_oid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_get_request_is_not_notification, setup, teardown),
                cmocka_unit_test_setup_teardown(test_inform_is_acknowledged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_engine_id_discovery, setup, teardown),
                cmocka_unit_test_setup_teardown(test_many_varbinds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_values_are_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_stale_trap_is_time_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v3_stranger_engine_is_forgotten, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unnamed_variables_have_distinct_keys, setup, teardown),
                cmocka_unit_test_setup_teardown(test_community_with_nul_is_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_string_space_full_is_counted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verdict_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_names_that_fill_the_buffer, setup_long_names, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}