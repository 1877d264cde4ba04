/* Unit tests for collectors/hbwire.c: the heartbeat packet's encoder,
 * parser and verifier (against an RFC 4231 HMAC-SHA256 vector and a byte
 * layout written out here), the receive window (replay, reorder, loss)
 * checked against a trivial reference model over random sequences, and the
 * round-trip and jitter figures. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <nettle/hmac.h>

#include "../../collectors/hbwire.h"

static struct hbwire_key key;

static int setup(void **state)
{
        static const char k[] = "unit-test-key-0123456789\n";

        (void)state;
        assert_int_equal(hbwire_key_set(&key, (const uint8_t *)k, strlen(k)), 0);
        return 0;
}

static struct hbwire_packet sample(void)
{
        struct hbwire_packet p = {
                .peer_loss = 123,
                .sender_tag = 0xdeadbeef,
                .seq = 0x0102030405060708ull,
                .wall_usec = 1700000000123456ll,
                .ack_seq = 42,
                .ack_delay_usec = 7000,
        };
        return p;
}

static void test_key_rules(void **state)
{
        struct hbwire_key k;
        uint8_t big[HBWIRE_KEY_MAX + 1];

        (void)state;
        assert_int_equal(hbwire_key_set(&k, (const uint8_t *)"short-key\n", 10), -EINVAL);
        /* trailing whitespace is not part of the key */
        assert_int_equal(hbwire_key_set(&k, (const uint8_t *)"0123456789abcdef \r\n\t", 20), 0);
        assert_int_equal(k.len, 16);
        memset(big, 'x', sizeof big);
        assert_int_equal(hbwire_key_set(&k, big, sizeof big), -E2BIG);
        assert_int_equal(hbwire_key_set(&k, big, HBWIRE_KEY_MAX), 0);
}

/* nettle's HMAC is what the packet uses; RFC 4231 test case 2 pins it. */
static void test_hmac_vector(void **state)
{
        static const uint8_t want[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                         0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                         0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
        struct hmac_sha256_ctx ctx;
        uint8_t got[32];

        (void)state;
        hmac_sha256_set_key(&ctx, 4, (const uint8_t *)"Jefe");
        hmac_sha256_update(&ctx, 28, (const uint8_t *)"what do ya want for nothing?");
        hmac_sha256_digest(&ctx, 32, got);
        assert_memory_equal(got, want, 32);
}

static void test_layout_and_roundtrip(void **state)
{
        struct hbwire_packet p = sample(), q;
        uint8_t buf[HBWIRE_PACKET_SIZE], mac[32];
        struct hmac_sha256_ctx ctx;
        static const uint8_t head[40] = {
                'W', 'B', 'H', 'B', 1, 0, 0,    123,  0xde, 0xad, 0xbe, 0xef, 1,    2,
                3,   4,   5,   6,   7, 8, 0x00, 0x06, 0x0a, 0x24, 0x18, 0x20, 0x22, 0x40 /* wall */,
                0,   0,   0,   0,   0, 0, 0,    42,   0,    0,    0x1b, 0x58};

        (void)state;
        hbwire_encode(&p, &key, buf);
        assert_memory_equal(buf, head, 28);
        assert_memory_equal(buf + 28, head + 28, 12);
        hmac_sha256_set_key(&ctx, key.len, key.bytes);
        hmac_sha256_update(&ctx, 40, buf);
        hmac_sha256_digest(&ctx, 32, mac);
        assert_memory_equal(buf + 40, mac, 32);

        memset(&q, 0, sizeof q);
        assert_int_equal(hbwire_decode(buf, sizeof buf, &key, &q), HBWIRE_ACCEPTED);
        assert_int_equal(q.peer_loss, 123);
        assert_int_equal(q.sender_tag, 0xdeadbeef);
        assert_true(q.seq == p.seq);
        assert_true(q.wall_usec == p.wall_usec);
        assert_true(q.ack_seq == 42);
        assert_int_equal(q.ack_delay_usec, 7000);
}

static void test_rejections(void **state)
{
        struct hbwire_packet p = sample(), q = {0}, untouched;
        uint8_t buf[HBWIRE_PACKET_SIZE + 8], copy[HBWIRE_PACKET_SIZE];
        struct hbwire_key other;

        (void)state;
        hbwire_encode(&p, &key, buf);
        memcpy(copy, buf, sizeof copy);
        untouched = q;
        assert_int_equal(hbwire_decode(buf, 0, &key, &q), HBWIRE_REJECT_TRUNCATED);
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE - 1, &key, &q), HBWIRE_REJECT_TRUNCATED);
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE + 1, &key, &q), HBWIRE_REJECT_MALFORMED);
        buf[0] = 'X';
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q), HBWIRE_REJECT_MALFORMED);
        memcpy(buf, copy, sizeof copy);
        buf[4] = 2;
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q), HBWIRE_REJECT_MALFORMED);
        /* every single bit flipped in the signed part or the MAC: bad MAC */
        for (size_t i = 5 * 8; i < HBWIRE_PACKET_SIZE * 8; i++) {
                memcpy(buf, copy, sizeof copy);
                buf[i / 8] ^= (uint8_t)(1u << (i % 8));
                assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q), HBWIRE_REJECT_MAC);
        }
        assert_int_equal(hbwire_key_set(&other, (const uint8_t *)"another-key-0123456789", 22), 0);
        assert_int_equal(hbwire_decode(copy, HBWIRE_PACKET_SIZE, &other, &q), HBWIRE_REJECT_MAC);
        /* authentic but impossible fields */
        p.seq = 0;
        hbwire_encode(&p, &key, buf);
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q), HBWIRE_REJECT_MALFORMED);
        p = sample();
        p.peer_loss = 1001;
        hbwire_encode(&p, &key, buf);
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q), HBWIRE_REJECT_MALFORMED);
        p.peer_loss = HBWIRE_LOSS_UNKNOWN;
        hbwire_encode(&p, &key, buf);
        assert_int_equal(hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q), HBWIRE_ACCEPTED);
        (void)untouched;
}

static void test_verdict_names(void **state)
{
        (void)state;
        for (int v = 0; v < HBWIRE_VERDICT_MAX; v++)
                assert_string_not_equal(hbwire_verdict_to_string((enum hbwire_verdict)v), "?");
        assert_string_equal(hbwire_verdict_to_string(HBWIRE_VERDICT_MAX), "?");
        assert_string_equal(hbwire_verdict_to_string(HBWIRE_REJECT_MAC), "bad-mac");
}

static void test_window_replay_and_reorder(void **state)
{
        struct hbwire_window w;
        size_t slots;

        (void)state;
        hbwire_window_init(&w, 16);
        assert_int_equal(hbwire_window_loss(&w, &slots), 0);
        assert_int_equal(slots, 0);
        assert_int_equal(hbwire_window_accept(&w, 1000), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_accept(&w, 1000), HBWIRE_REJECT_REPLAY);
        assert_int_equal(hbwire_window_accept(&w, 1003), HBWIRE_ACCEPTED); /* 1001, 1002 missing */
        assert_int_equal(hbwire_window_loss(&w, &slots), 500);
        assert_int_equal(slots, 4);
        assert_int_equal(hbwire_window_accept(&w, 1001), HBWIRE_ACCEPTED); /* late, not a replay */
        assert_int_equal(hbwire_window_accept(&w, 1001), HBWIRE_REJECT_REPLAY);
        assert_int_equal(hbwire_window_loss(&w, NULL), 250);
        assert_int_equal(hbwire_window_accept(&w, 999), HBWIRE_REJECT_REPLAY); /* before the first */
        assert_int_equal(hbwire_window_accept(&w, 1018), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_accept(&w, 1002), HBWIRE_REJECT_REPLAY); /* fell out of the window */
        assert_int_equal(hbwire_window_loss(&w, &slots), 875);                  /* 1003..1018: 2 of 16 */
        assert_int_equal(slots, 16);
        /* a jump of a whole window: the sender restarted, a fresh start */
        assert_int_equal(hbwire_window_accept(&w, 5000000), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_loss(&w, &slots), 0);
        assert_int_equal(slots, 1);
        assert_int_equal(hbwire_window_accept(&w, 1019), HBWIRE_REJECT_REPLAY);
        /* sizes are clamped */
        hbwire_window_init(&w, 1);
        assert_int_equal(w.size, 8);
        hbwire_window_init(&w, 1u << 20);
        assert_int_equal(w.size, HBWIRE_WINDOW_MAX);
}

/* The window against a reference: a set of seen numbers and a plain count. */
static void test_window_random_against_model(void **state)
{
        static const size_t sizes[] = {8, 63, 64, 65, 200, 1024};

        (void)state;
        srand(4);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                size_t size = sizes[si];
                struct hbwire_window w;
                uint64_t base = 1ull << 50, highest = 0, first = 0;
                static uint8_t seen[1 << 16];
                bool started = false;

                memset(seen, 0, sizeof seen);
                hbwire_window_init(&w, size);
                for (int i = 0; i < 20000; i++) {
                        /* mostly forward, some loss, some reordering, some replays */
                        uint64_t off = highest ? highest - base : 0;
                        int r = rand() % 100;
                        uint64_t cand;
                        if (r < 70)
                                cand = off + 1;
                        else if (r < 85)
                                cand = off + 2 + (uint64_t)(rand() % 5);
                        else if (off > 0)
                                cand = off - (uint64_t)(rand() % (size + 10));
                        else
                                cand = 0;
                        if (cand >= sizeof seen)
                                break;
                        uint64_t seq = base + cand;
                        bool fresh;
                        if (!started)
                                fresh = true;
                        else if (seq > highest)
                                fresh = true;
                        else
                                fresh = highest - seq < size && seq >= first && !seen[cand];
                        enum hbwire_verdict v = hbwire_window_accept(&w, seq);
                        assert_int_equal(v, fresh ? HBWIRE_ACCEPTED : HBWIRE_REJECT_REPLAY);
                        if (fresh) {
                                if (!started) {
                                        started = true;
                                        first = seq;
                                }
                                seen[cand] = 1;
                                if (seq > highest)
                                        highest = seq;
                        }
                        /* reference loss over the counted slots */
                        uint64_t lo = highest - base + 1 >= size ? highest - base + 1 - size : 0;
                        if (lo < first - base)
                                lo = first - base;
                        size_t slots = (size_t)(highest - base - lo + 1), got = 0, s2;
                        for (uint64_t k = lo; k <= highest - base; k++)
                                got += seen[k];
                        unsigned want = (unsigned)(((slots - got) * 1000 + slots / 2) / slots);
                        assert_int_equal(hbwire_window_loss(&w, &s2), want);
                        assert_int_equal(s2, slots);
                }
        }
}

/* After a timeout the window forgets: the skipped numbers are not loss,
 * and nothing at or below the highest seq is accepted again. */
static void test_window_forget(void **state)
{
        struct hbwire_window w;
        size_t slots;

        (void)state;
        hbwire_window_init(&w, 50);
        for (uint64_t s = 100; s < 120; s++)
                assert_int_equal(hbwire_window_accept(&w, s), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_accept(&w, 122), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_loss(&w, &slots), 87); /* 120, 121 of 100..122 */
        hbwire_window_forget(&w);
        assert_int_equal(hbwire_window_loss(&w, &slots), 0);
        assert_int_equal(slots, 0);
        /* late and replayed numbers from before stay rejected */
        assert_int_equal(hbwire_window_accept(&w, 120), HBWIRE_REJECT_REPLAY);
        assert_int_equal(hbwire_window_accept(&w, 122), HBWIRE_REJECT_REPLAY);
        /* the link comes back 10 heartbeats later: a clean start, not 9 lost */
        assert_int_equal(hbwire_window_accept(&w, 132), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_loss(&w, &slots), 0);
        assert_int_equal(slots, 1);
        assert_int_equal(hbwire_window_accept(&w, 131), HBWIRE_REJECT_REPLAY);
        assert_int_equal(hbwire_window_accept(&w, 134), HBWIRE_ACCEPTED);
        assert_int_equal(hbwire_window_loss(&w, &slots), 333); /* 133 of 132..134 */
        assert_int_equal(slots, 3);
}

/* Feeds the window n heartbeats of which every k-th (k > 0) is lost. */
static void feed(struct hbwire_window *w, uint64_t *seq, int n, int k)
{
        for (int i = 0; i < n; i++) {
                ++*seq;
                if (k && i % k == 0)
                        continue;
                assert_int_equal(hbwire_window_accept(w, *seq), HBWIRE_ACCEPTED);
        }
}

static void test_allowance(void **state)
{
        const uint64_t iv = 200000, to = 1000000, max = 3000000;
        struct hbwire_window w;
        uint64_t seq = 1000;

        (void)state;
        hbwire_window_init(&w, 50);
        /* nothing known yet, or a clean link: the timeout */
        assert_true(hbwire_window_allowance(&w, iv, to, max) == to);
        feed(&w, &seq, 7, 0);
        assert_true(hbwire_window_allowance(&w, iv, to, max) == to);
        feed(&w, &seq, 43, 0);
        assert_true(hbwire_window_allowance(&w, iv, to, max) == to);
        /* 1 in 20 lost (6.25 % of the newest 16): 10^-5 takes 5 in a row,
         * which the timeout covers */
        feed(&w, &seq, 50, 20);
        assert_int_equal(hbwire_window_loss(&w, NULL), 60);
        assert_true(hbwire_window_allowance(&w, iv, to, max) == to);
        /* 1 in 3 (33 %): 0.333^11 < 10^-5 <= 0.333^10, so 11 heartbeats */
        feed(&w, &seq, 51, 3);
        assert_true(hbwire_window_allowance(&w, iv, to, max) == 11 * iv);
        /* 1 in 2: 17 heartbeats would be 3.4 s, beyond the cap */
        feed(&w, &seq, 50, 2);
        assert_true(hbwire_window_allowance(&w, iv, to, max) == max);
        /* a short timeout (600 ms, 3 heartbeats) grows on a smaller loss */
        hbwire_window_init(&w, 50);
        feed(&w, &seq, 1, 0);
        feed(&w, &seq, 50, 25);
        assert_int_equal(hbwire_window_loss(&w, NULL), 40);
        assert_true(hbwire_window_allowance(&w, iv, 600000, 1800000) == 4 * iv);
        /* the newest 16 slots count when they are worse than the window:
         * loss that has just begun is not averaged away */
        hbwire_window_init(&w, 50);
        feed(&w, &seq, 40, 0);
        feed(&w, &seq, 15, 3);
        assert_true(hbwire_window_loss(&w, NULL) < 120);                  /* the window alone: the timeout */
        assert_true(hbwire_window_allowance(&w, iv, to, max) == 10 * iv); /* 5 of 16: 0.3125^10 */
        /* after an outage (forget) the old loss no longer stretches it */
        hbwire_window_forget(&w);
        seq += 20;
        feed(&w, &seq, 8, 0);
        assert_true(hbwire_window_allowance(&w, iv, to, max) == to);
}

static void test_round_trips(void **state)
{
        struct hbwire_sent s;
        uint32_t rtt = 0;

        (void)state;
        hbwire_sent_init(&s);
        hbwire_sent_record(&s, 500, 1000000);
        hbwire_sent_record(&s, 501, 1200000);
        assert_int_equal(hbwire_sent_ack(&s, 0, 0, 1300000, &rtt), -ENOENT);
        assert_int_equal(hbwire_sent_ack(&s, 499, 0, 1300000, &rtt), -ENOENT);
        /* acked 150 ms after our send, held 140 ms by the peer: 10 ms */
        assert_int_equal(hbwire_sent_ack(&s, 500, 140000, 1150000, &rtt), 0);
        assert_int_equal(rtt, 10000);
        assert_int_equal(hbwire_sent_ack(&s, 500, 0, 1400000, &rtt), -ENOENT); /* only the first ack counts */
        /* a hold longer than the time since the send is a lie */
        assert_int_equal(hbwire_sent_ack(&s, 501, 300000, 1300000, &rtt), -ENOENT);
        assert_int_equal(hbwire_sent_ack(&s, 501, 50000, 1300000, &rtt), 0);
        assert_int_equal(rtt, 50000);
        /* the ring forgets what is HBWIRE_SENT_RING sends old */
        hbwire_sent_record(&s, 502 + HBWIRE_SENT_RING - 1, 2000000);
        hbwire_sent_record(&s, 502, 2000000);
        hbwire_sent_record(&s, 502 + HBWIRE_SENT_RING, 2100000);
        assert_int_equal(hbwire_sent_ack(&s, 502, 0, 2200000, &rtt), -ENOENT);
        assert_int_equal(hbwire_sent_ack(&s, 502 + HBWIRE_SENT_RING, 0, 2200000, &rtt), 0);
        assert_int_equal(rtt, 100000);
}

static void test_rtt_window_and_jitter(void **state)
{
        struct hbwire_rtt r;
        struct hbwire_rtt_summary s;

        (void)state;
        hbwire_rtt_init(&r, 4);
        hbwire_rtt_summary(&r, &s);
        assert_int_equal(s.samples, 0);
        hbwire_rtt_add(&r, 100);
        hbwire_rtt_summary(&r, &s);
        assert_int_equal(s.samples, 1);
        assert_true(s.jitter_usec == 0 && s.mean_usec == 100 && s.last_usec == 100);
        hbwire_rtt_add(&r, 300);
        hbwire_rtt_add(&r, 200);
        hbwire_rtt_add(&r, 200);
        hbwire_rtt_summary(&r, &s);
        assert_int_equal(s.samples, 4);
        assert_true(s.mean_usec == 200);
        assert_true(s.min_usec == 100 && s.max_usec == 300);
        assert_true(s.jitter_usec == (200.0 + 100 + 0) / 3);
        /* the window slides: 100 drops out */
        hbwire_rtt_add(&r, 600);
        hbwire_rtt_summary(&r, &s);
        assert_int_equal(s.samples, 4);
        assert_true(s.min_usec == 200 && s.max_usec == 600);
        assert_true(s.mean_usec == 325);
        assert_true(s.jitter_usec == (100.0 + 0 + 400) / 3);
        assert_true(s.last_usec == 600);
}

static void test_tag(void **state)
{
        (void)state;
        /* FNV-1a 32 reference values */
        assert_int_equal(hbwire_tag(""), 0x811c9dc5u);
        assert_int_equal(hbwire_tag("a"), 0xe40c292cu);
        assert_int_not_equal(hbwire_tag("hb-a"), hbwire_tag("hb-b"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_key_rules),
                cmocka_unit_test(test_hmac_vector),
                cmocka_unit_test(test_layout_and_roundtrip),
                cmocka_unit_test(test_rejections),
                cmocka_unit_test(test_verdict_names),
                cmocka_unit_test(test_window_replay_and_reorder),
                cmocka_unit_test(test_window_random_against_model),
                cmocka_unit_test(test_window_forget),
                cmocka_unit_test(test_allowance),
                cmocka_unit_test(test_round_trips),
                cmocka_unit_test(test_rtt_window_and_jitter),
                cmocka_unit_test(test_tag),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
