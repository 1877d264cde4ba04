/* hbwire: see hbwire.h. The HMAC is nettle's (Debian's libnettle8): the
 * agent must not link OpenSSL (memory budget), and crypto is never written
 * by hand here. */
#include "hbwire.h"

#include <errno.h>
#include <string.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>

#define MAGIC "WBHB"
#define VERSION 1
#define BODY_SIZE (HBWIRE_PACKET_SIZE - HBWIRE_MAC_SIZE)

static const char *const verdict_names[HBWIRE_VERDICT_MAX] = {
        [HBWIRE_ACCEPTED] = "accepted",          [HBWIRE_REJECT_TRUNCATED] = "truncated",
        [HBWIRE_REJECT_MALFORMED] = "malformed", [HBWIRE_REJECT_MAC] = "bad-mac",
        [HBWIRE_REJECT_REFLECTED] = "reflected", [HBWIRE_REJECT_REPLAY] = "replay",
        [HBWIRE_REJECT_INTERFACE] = "interface", [HBWIRE_REJECT_SOURCE] = "source",
};

const char *hbwire_verdict_to_string(enum hbwire_verdict v)
{
        return (unsigned)v < HBWIRE_VERDICT_MAX ? verdict_names[v] : "?";
}

int hbwire_key_set(struct hbwire_key *k, const uint8_t *buf, size_t len)
{
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
                len--;
        if (len > HBWIRE_KEY_MAX)
                return -E2BIG;
        if (len < HBWIRE_KEY_MIN)
                return -EINVAL;
        memcpy(k->bytes, buf, len);
        k->len = len;
        return 0;
}

uint32_t hbwire_tag(const char *s)
{
        uint32_t h = 2166136261u;

        for (; *s; s++) {
                h ^= (uint8_t)*s;
                h *= 16777619u;
        }
        return h;
}

static void put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
        put16(p, (uint16_t)(v >> 16));
        put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
        put32(p, (uint32_t)(v >> 32));
        put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
        return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
        return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
        return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void mac(const struct hbwire_key *k, const uint8_t *body, uint8_t out[HBWIRE_MAC_SIZE])
{
        struct hmac_sha256_ctx ctx;

        hmac_sha256_set_key(&ctx, k->len, k->bytes);
        hmac_sha256_update(&ctx, BODY_SIZE, body);
        hmac_sha256_digest(&ctx, HBWIRE_MAC_SIZE, out);
}

void hbwire_encode(const struct hbwire_packet *p, const struct hbwire_key *k, uint8_t out[HBWIRE_PACKET_SIZE])
{
        memcpy(out, MAGIC, 4);
        out[4] = VERSION;
        out[5] = 0;
        put16(out + 6, p->peer_loss);
        put32(out + 8, p->sender_tag);
        put64(out + 12, p->seq);
        put64(out + 20, (uint64_t)p->wall_usec);
        put64(out + 28, p->ack_seq);
        put32(out + 36, p->ack_delay_usec);
        mac(k, out, out + BODY_SIZE);
}

enum hbwire_verdict hbwire_decode(const uint8_t *buf, size_t len, const struct hbwire_key *k, struct hbwire_packet *ret)
{
        uint8_t want[HBWIRE_MAC_SIZE];
        struct hbwire_packet p;

        if (len < HBWIRE_PACKET_SIZE)
                return HBWIRE_REJECT_TRUNCATED;
        if (len > HBWIRE_PACKET_SIZE || memcmp(buf, MAGIC, 4) != 0 || buf[4] != VERSION)
                return HBWIRE_REJECT_MALFORMED;
        mac(k, buf, want);
        if (!memeql_sec(want, buf + BODY_SIZE, HBWIRE_MAC_SIZE))
                return HBWIRE_REJECT_MAC;
        p.peer_loss = get16(buf + 6);
        p.sender_tag = get32(buf + 8);
        p.seq = get64(buf + 12);
        p.wall_usec = (int64_t)get64(buf + 20);
        p.ack_seq = get64(buf + 28);
        p.ack_delay_usec = get32(buf + 36);
        /* Authentic but nonsensical: a peer with a bug, not an attacker. */
        if (p.seq == 0 || (p.peer_loss > 1000 && p.peer_loss != HBWIRE_LOSS_UNKNOWN))
                return HBWIRE_REJECT_MALFORMED;
        *ret = p;
        return HBWIRE_ACCEPTED;
}

/* ---- receive window ---- */

void hbwire_window_init(struct hbwire_window *w, size_t size)
{
        memset(w, 0, sizeof *w);
        if (size < 8)
                size = 8;
        if (size > HBWIRE_WINDOW_MAX)
                size = HBWIRE_WINDOW_MAX;
        w->size = size;
}

static bool bit_get(const struct hbwire_window *w, size_t i)
{
        return (w->bits[i / 64] >> (i % 64)) & 1;
}

static void bit_set(struct hbwire_window *w, size_t i)
{
        w->bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Moves every bit up by n (n < size): bit i becomes bit i + n. */
static void shift_up(struct hbwire_window *w, size_t n)
{
        size_t words = HBWIRE_WINDOW_MAX / 64, wshift = n / 64, bshift = n % 64;

        for (size_t i = words; i-- > 0;) {
                uint64_t v = 0;
                if (i >= wshift) {
                        v = w->bits[i - wshift] << bshift;
                        if (bshift && i > wshift)
                                v |= w->bits[i - wshift - 1] >> (64 - bshift);
                }
                w->bits[i] = v;
        }
        /* bits at or above size mean nothing; keep them clear */
        for (size_t i = w->size; i < HBWIRE_WINDOW_MAX; i++)
                w->bits[i / 64] &= ~((uint64_t)1 << (i % 64));
}

enum hbwire_verdict hbwire_window_accept(struct hbwire_window *w, uint64_t seq)
{
        if (!w->started || (seq > w->highest && seq - w->highest >= w->size)) {
                memset(w->bits, 0, sizeof w->bits);
                w->started = true;
                w->highest = seq;
                w->filled = 1;
                bit_set(w, 0);
                return HBWIRE_ACCEPTED;
        }
        if (seq > w->highest) {
                size_t n = (size_t)(seq - w->highest);
                shift_up(w, n);
                w->highest = seq;
                if (w->filled == 0)
                        w->filled = 1; /* after hbwire_window_forget: the gap is not loss */
                else
                        w->filled = w->filled + n > w->size ? w->size : w->filled + n;
                bit_set(w, 0);
                return HBWIRE_ACCEPTED;
        }
        {
                uint64_t back = w->highest - seq;
                if (back >= w->filled || bit_get(w, (size_t)back))
                        return HBWIRE_REJECT_REPLAY;
                bit_set(w, (size_t)back);
                return HBWIRE_ACCEPTED;
        }
}

unsigned hbwire_window_loss(const struct hbwire_window *w, size_t *ret_slots)
{
        size_t got = 0;

        if (ret_slots)
                *ret_slots = w->started ? w->filled : 0;
        if (!w->started || w->filled == 0)
                return 0;
        for (size_t i = 0; i < w->filled; i++)
                got += bit_get(w, i);
        return (unsigned)(((w->filled - got) * 1000 + w->filled / 2) / w->filled);
}

void hbwire_window_forget(struct hbwire_window *w)
{
        w->filled = 0;
}

/* Loss over the newest n of the counted slots, in 1/1000. */
static unsigned recent_loss(const struct hbwire_window *w, size_t n)
{
        size_t got = 0;

        if (n > w->filled)
                n = w->filled;
        if (n == 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                got += bit_get(w, i);
        return (unsigned)(((n - got) * 1000 + n / 2) / n);
}

uint64_t hbwire_window_allowance(const struct hbwire_window *w, uint64_t interval_usec, uint64_t timeout_usec,
                                 uint64_t max_usec)
{
        unsigned loss = 0, r;
        uint64_t k = 1;
        double p, run;

        if (max_usec < timeout_usec)
                max_usec = timeout_usec;
        if (w->started && w->filled >= HBWIRE_ALLOWANCE_MIN_SLOTS) {
                loss = hbwire_window_loss(w, NULL);
                r = recent_loss(w, HBWIRE_ALLOWANCE_RECENT);
                if (r > loss)
                        loss = r;
        }
        if (loss == 0 || interval_usec == 0)
                return timeout_usec;
        if (loss >= 1000)
                return max_usec;
        /* the fewest heartbeats k whose loss in a row is at most
         * HBWIRE_ALLOWANCE_ODDS likely, if losses are independent */
        p = loss / 1000.0;
        for (run = p; run > HBWIRE_ALLOWANCE_ODDS && k * interval_usec < max_usec; run *= p)
                k++;
        if (k * interval_usec <= timeout_usec)
                return timeout_usec;
        return k * interval_usec < max_usec ? k * interval_usec : max_usec;
}

/* ---- round trips ---- */

void hbwire_sent_init(struct hbwire_sent *s)
{
        memset(s, 0, sizeof *s);
}

void hbwire_sent_record(struct hbwire_sent *s, uint64_t seq, uint64_t mono_usec)
{
        size_t i = (size_t)(seq % HBWIRE_SENT_RING);

        s->slot[i].seq = seq;
        s->slot[i].mono_usec = mono_usec;
        s->slot[i].acked = false;
}

int hbwire_sent_ack(struct hbwire_sent *s, uint64_t ack_seq, uint32_t ack_delay_usec, uint64_t now_mono_usec,
                    uint32_t *ret_rtt_usec)
{
        size_t i = (size_t)(ack_seq % HBWIRE_SENT_RING);
        uint64_t elapsed;

        if (ack_seq == 0 || s->slot[i].seq != ack_seq || s->slot[i].acked || now_mono_usec < s->slot[i].mono_usec)
                return -ENOENT;
        elapsed = now_mono_usec - s->slot[i].mono_usec;
        if (ack_delay_usec > elapsed)
                return -ENOENT;
        s->slot[i].acked = true;
        elapsed -= ack_delay_usec;
        *ret_rtt_usec = elapsed > UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed;
        return 0;
}

void hbwire_rtt_init(struct hbwire_rtt *r, size_t size)
{
        memset(r, 0, sizeof *r);
        if (size < 2)
                size = 2;
        if (size > HBWIRE_WINDOW_MAX)
                size = HBWIRE_WINDOW_MAX;
        r->size = size;
}

void hbwire_rtt_add(struct hbwire_rtt *r, uint32_t usec)
{
        r->usec[r->head] = usec;
        r->head = (r->head + 1) % r->size;
        if (r->n < r->size)
                r->n++;
}

void hbwire_rtt_summary(const struct hbwire_rtt *r, struct hbwire_rtt_summary *ret)
{
        double sum = 0, jsum = 0;
        size_t first = (r->head + r->size - r->n) % r->size;

        memset(ret, 0, sizeof *ret);
        ret->samples = r->n;
        if (r->n == 0)
                return;
        ret->min_usec = ret->max_usec = r->usec[first];
        for (size_t k = 0; k < r->n; k++) {
                uint32_t v = r->usec[(first + k) % r->size];
                sum += v;
                if (v < ret->min_usec)
                        ret->min_usec = v;
                if (v > ret->max_usec)
                        ret->max_usec = v;
                if (k > 0) {
                        uint32_t prev = r->usec[(first + k - 1) % r->size];
                        jsum += v > prev ? v - prev : prev - v;
                }
        }
        ret->mean_usec = sum / (double)r->n;
        ret->jitter_usec = r->n > 1 ? jsum / (double)(r->n - 1) : 0;
        ret->last_usec = r->usec[(r->head + r->size - 1) % r->size];
}
