/* hbwire: the wire format of weibao's agent-to-agent heartbeat and the
 * per-link arithmetic on what arrives (replay window, loss, round-trip time
 * and jitter). No sockets and no clock here: the heartbeat collector owns
 * those, so this module is what the unit tests and the fuzz target drive.
 *
 * A heartbeat is one UDP datagram of exactly HBWIRE_PACKET_SIZE bytes, all
 * numbers big-endian:
 *   0  magic "WBHB"         4  version (1)       5  flags (0; others ignored)
 *   6  peer_loss, u16: the sender's measured loss on this link, in 1/1000
 *      (0xffff: not known yet)
 *   8  sender_tag, u32: FNV-1a of the sender's agent id (a packet carrying
 *      our own tag is one of ours reflected back)
 *  12  seq, u64: per link and sender, +1 per packet; it starts from the
 *      sender's wall clock in microseconds, so a restarted sender continues
 *      above its previous run and is not taken for a replay
 *  20  wall_usec, i64: the sender's CLOCK_REALTIME when sent
 *  28  ack_seq, u64: the highest seq the sender has received from us on this
 *      link (0: none yet)
 *  36  ack_delay_usec, u32: how long the sender held ack_seq before sending
 *  40  HMAC-SHA256 (nettle) over bytes 0..39 with the group's shared key.
 * Round trip = now - (when we sent ack_seq) - ack_delay: both durations are
 * measured on one host's monotonic clock, so the two clocks need not agree.
 *
 * Replay protection is the IPsec-style sliding window over seq: a seq at or
 * below the window, or one already seen inside it, is rejected. The same
 * bitmap gives the loss ratio over the last window-size sequence numbers.
 * After a restart the receiver has no window to reject a capture by: the
 * collector counts the peer alive only once a packet's ack_seq names one of
 * its sends of this run (heartbeat.c, "unproven"), which an old capture
 * cannot do. Known limit: seq starts from the sender's wall clock, so a
 * sender whose clock stepped back before it restarted numbers below what
 * the receiver has seen, and is rejected as a replay until its numbers
 * pass the old ones. A random per-run epoch in the packet (version 2),
 * with a new window only for a packet whose ack_seq names one of the
 * receiver's recent sends, would close that too. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HBWIRE_PACKET_SIZE 72
#define HBWIRE_MAC_SIZE 32
#define HBWIRE_KEY_MIN 16
#define HBWIRE_KEY_MAX 256
#define HBWIRE_LOSS_UNKNOWN 0xffff
#define HBWIRE_WINDOW_MAX 1024 /* sequence numbers (and RTT samples) per window */
#define HBWIRE_SENT_RING 64    /* our recent packets an ack can name */

/* What became of one datagram. Every received datagram ends in exactly one
 * of these; hbwire_verdict_to_string names them for status and logs. */
enum hbwire_verdict {
        HBWIRE_ACCEPTED,
        HBWIRE_REJECT_TRUNCATED, /* shorter than a heartbeat */
        HBWIRE_REJECT_MALFORMED, /* wrong size, magic, version or field values */
        HBWIRE_REJECT_MAC,       /* HMAC does not match: forged, or another key */
        HBWIRE_REJECT_REFLECTED, /* authentic but our own sender tag */
        HBWIRE_REJECT_REPLAY,    /* authentic but a seq already seen or too old */
        HBWIRE_REJECT_INTERFACE, /* authentic but arrived on another interface */
        HBWIRE_REJECT_SOURCE,    /* authentic but from an address not the peer's */
        HBWIRE_VERDICT_MAX,
};

const char *hbwire_verdict_to_string(enum hbwire_verdict v);

struct hbwire_key {
        uint8_t bytes[HBWIRE_KEY_MAX];
        size_t len;
};

struct hbwire_packet {
        uint16_t peer_loss; /* 1/1000, or HBWIRE_LOSS_UNKNOWN */
        uint32_t sender_tag;
        uint64_t seq;
        int64_t wall_usec;
        uint64_t ack_seq;
        uint32_t ack_delay_usec;
};

/* Reads a key from text: the bytes of buf with trailing whitespace removed.
 * Returns 0, -EINVAL (shorter than HBWIRE_KEY_MIN) or -E2BIG. */
int hbwire_key_set(struct hbwire_key *k, const uint8_t *buf, size_t len);
/* FNV-1a of s: the sender tag of an agent id. */
uint32_t hbwire_tag(const char *s);

/* Writes p, authenticated with k, to out. */
void hbwire_encode(const struct hbwire_packet *p, const struct hbwire_key *k, uint8_t out[HBWIRE_PACKET_SIZE]);
/* Checks size, header and MAC of buf and decodes it into *ret (set only
 * when HBWIRE_ACCEPTED). The MAC is compared in constant time. Interface,
 * source, reflection and replay are the caller's checks (they need state). */
enum hbwire_verdict hbwire_decode(const uint8_t *buf, size_t len, const struct hbwire_key *k,
                                  struct hbwire_packet *ret);

/* The receive window: replay protection and loss over the last size seqs. */
struct hbwire_window {
        size_t size; /* 8 .. HBWIRE_WINDOW_MAX */
        bool started;
        uint64_t highest;
        size_t filled; /* how many of the size slots count (since the first packet or a reset) */
        uint64_t bits[HBWIRE_WINDOW_MAX / 64]; /* bit i: seq highest - i arrived */
};

void hbwire_window_init(struct hbwire_window *w, size_t size);
/* Accepts seq (HBWIRE_ACCEPTED, recorded) or rejects it as a replay. A jump
 * forward of size or more starts the window again (the sender restarted, or
 * the link was silent longer than the window: both already seen through the
 * deadline, neither is loss inside the window). */
enum hbwire_verdict hbwire_window_accept(struct hbwire_window *w, uint64_t seq);
/* Loss over the counted slots in 1/1000; *ret_slots says how many slots it
 * is over (0: no packet yet, and the result is 0). */
unsigned hbwire_window_loss(const struct hbwire_window *w, size_t *ret_slots);
/* Stops counting the slots seen so far: the loss restarts with the next
 * packet, and the sequence numbers skipped until then are not loss (the
 * link was silent past its timeout, which the deadline already reported).
 * Replay protection stays: everything at or below the highest seq is
 * rejected from now on. */
void hbwire_window_forget(struct hbwire_window *w);

/* How long a link may stay silent before its heartbeat counts as lost.
 * timeout_usec on a link that loses nothing. On a lossy one, silence is
 * judged against the link's own loss p (the larger of the window's and the
 * newest HBWIRE_ALLOWANCE_RECENT slots', once HBWIRE_ALLOWANCE_MIN_SLOTS
 * are in): the allowance is k intervals, k the fewest heartbeats whose loss
 * in a row has odds p^k <= HBWIRE_ALLOWANCE_ODDS, never less than
 * timeout_usec nor more than max_usec. At 30 % loss and 200 ms that is 10
 * heartbeats (2 s), where three in a row go missing ~13 times a minute. */
#define HBWIRE_ALLOWANCE_ODDS 1e-5
#define HBWIRE_ALLOWANCE_RECENT 16
#define HBWIRE_ALLOWANCE_MIN_SLOTS 8
uint64_t hbwire_window_allowance(const struct hbwire_window *w, uint64_t interval_usec, uint64_t timeout_usec,
                                 uint64_t max_usec);

/* Our recent sends, to turn an ack into a round trip. */
struct hbwire_sent {
        struct {
                uint64_t seq;
                uint64_t mono_usec;
                bool acked;
        } slot[HBWIRE_SENT_RING];
};

void hbwire_sent_init(struct hbwire_sent *s);
void hbwire_sent_record(struct hbwire_sent *s, uint64_t seq, uint64_t mono_usec);
/* Returns 0 and the round trip when ack_seq names a packet we sent and no
 * earlier ack took; -ENOENT otherwise (unknown, too old, already taken, or
 * an ack_delay longer than the time since the send). */
int hbwire_sent_ack(struct hbwire_sent *s, uint64_t ack_seq, uint32_t ack_delay_usec, uint64_t now_mono_usec,
                    uint32_t *ret_rtt_usec);

/* The last size round-trip samples. Jitter is the mean absolute difference
 * of consecutive samples (what mtr calls jitter), over the same window. */
struct hbwire_rtt {
        size_t size, n, head;
        uint32_t usec[HBWIRE_WINDOW_MAX];
};

struct hbwire_rtt_summary {
        size_t samples;
        double mean_usec, min_usec, max_usec, jitter_usec, last_usec;
};

void hbwire_rtt_init(struct hbwire_rtt *r, size_t size);
void hbwire_rtt_add(struct hbwire_rtt *r, uint32_t usec);
void hbwire_rtt_summary(const struct hbwire_rtt *r, struct hbwire_rtt_summary *ret);
