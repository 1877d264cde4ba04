/* libFuzzer target: datagrams through the heartbeat parser and verifier
 * (collectors/hbwire.c) and what the collector does with an accepted one:
 * the replay/loss window (with its silence allowance and the forgetting
 * after a timeout) and the round-trip ring.
 *
 * The input is a sequence of records, each a length byte and that many
 * bytes. A record whose first byte is odd goes to hbwire_decode as it is
 * (garbage, truncated, forged); one whose first byte is even has its 40
 * header bytes signed with the fuzz key first, so mutations of the fields
 * behind the MAC reach the checks an attacker with the key could reach.
 * Accepted packets feed one window and one sent ring for the whole input,
 * and every figure is read after each step, so an out-of-bounds index or an
 * invariant broken by a crafted seq sequence shows up. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../collectors/hbwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char keytext[] = "fuzz-heartbeat-key-0123456789";
        struct hbwire_key key;
        struct hbwire_window w;
        struct hbwire_sent sent;
        struct hbwire_rtt rtt;
        struct hbwire_rtt_summary rs;
        uint64_t now = 1000000;
        size_t pos = 0, slots;

        if (hbwire_key_set(&key, (const uint8_t *)keytext, sizeof keytext - 1) != 0)
                abort();
        hbwire_window_init(&w, size > 0 ? (size_t)data[0] * 4 + 8 : 50);
        hbwire_sent_init(&sent);
        hbwire_rtt_init(&rtt, 16);
        for (uint64_t s = 1; s <= 80; s++)
                hbwire_sent_record(&sent, s, now + s * 1000);
        while (pos < size) {
                size_t len = data[pos++];
                uint8_t buf[256];
                struct hbwire_packet p;
                enum hbwire_verdict v;
                uint32_t r;

                if (len > size - pos)
                        len = size - pos;
                memcpy(buf, data + pos, len);
                pos += len;
                if (len >= HBWIRE_PACKET_SIZE && (buf[0] & 1) == 0) {
                        struct hbwire_packet q;
                        /* re-encode the fields as given: a valid MAC over them */
                        memcpy(buf, "WBHB", 4);
                        buf[4] = 1;
                        if (hbwire_decode(buf, HBWIRE_PACKET_SIZE, &key, &q) == HBWIRE_REJECT_MAC) {
                                uint8_t good[HBWIRE_PACKET_SIZE];
                                q.peer_loss = (uint16_t)(buf[6] << 8 | buf[7]);
                                q.sender_tag = 0;
                                q.seq = 0;
                                for (int i = 0; i < 8; i++)
                                        q.seq = q.seq << 8 | buf[12 + i];
                                q.wall_usec = 0;
                                q.ack_seq = 0;
                                for (int i = 0; i < 8; i++)
                                        q.ack_seq = q.ack_seq << 8 | buf[28 + i];
                                q.ack_delay_usec = (uint32_t)buf[36] << 24 | (uint32_t)buf[37] << 16 |
                                                   (uint32_t)buf[38] << 8 | buf[39];
                                hbwire_encode(&q, &key, good);
                                memcpy(buf, good, sizeof good);
                        }
                }
                v = hbwire_decode(buf, len, &key, &p);
                if ((unsigned)v >= HBWIRE_VERDICT_MAX || !hbwire_verdict_to_string(v)[0])
                        abort();
                now += 50000;
                if (v != HBWIRE_ACCEPTED)
                        continue;
                if (p.peer_loss > 1000 && p.peer_loss != HBWIRE_LOSS_UNKNOWN)
                        abort();
                if (hbwire_window_accept(&w, p.seq) == HBWIRE_ACCEPTED && w.highest < p.seq)
                        abort();
                if (hbwire_window_loss(&w, &slots) > 1000 || slots > w.size)
                        abort();
                /* the silence allowance stays within timeout .. max */
                {
                        uint64_t a = hbwire_window_allowance(&w, 200000, 1000000, 3000000);
                        if (a < 1000000 || a > 3000000)
                                abort();
                }
                /* a timeout now and then: the loss restarts, replays stay out */
                if (p.ack_delay_usec % 7 == 0) {
                        uint64_t hi = w.highest;
                        hbwire_window_forget(&w);
                        if (hbwire_window_loss(&w, &slots) != 0 || slots != 0 ||
                            hbwire_window_accept(&w, hi) != HBWIRE_REJECT_REPLAY)
                                abort();
                }
                if (hbwire_sent_ack(&sent, p.ack_seq, p.ack_delay_usec, now, &r) == 0)
                        hbwire_rtt_add(&rtt, r);
                hbwire_rtt_summary(&rtt, &rs);
                if (rs.samples > 16 || (rs.samples && rs.min_usec > rs.max_usec))
                        abort();
        }
        return 0;
}
