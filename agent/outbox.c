/* outbox: see outbox.h.
 *
 * Data: case records in a list ordered by ref (the order they were made),
 * found by ref through a hash table, and chained per fault key (key_prev is
 * the record of the same key made before this one; a record waits until its
 * key_prev owes nothing). Each record holds its open (until acknowledged)
 * and a FIFO of updates. Durability is per item: "durable" is set once a
 * commit held it, and only durable items are sent. Rows of delivered items
 * are deleted in the next commit; until then a crash resends them with their
 * old Idempotency-Key, which the central side answers as a replay. */
#include "outbox.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/hash.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "answer.h"
#include "loop.h"
#include "sender.h"
#include "store.h"

#define REF_BUCKETS 4096
#define KEY_BUCKETS 4096
#define BACKOFF_START_USEC 1000000
#define RETRY_AFTER_MAX_USEC (3600ULL * 1000000) /* a Retry-After beyond an hour is read as an hour */
#define JSON_RECORDS_MAX 200

struct item {
        int64_t seq;
        char type[16];
        char *body;
        char *idem_key;
        bool durable;
        struct item *next;
};

struct rec {
        struct outbox *ob;
        int64_t ref;
        char *fault_key;
        char *idem_key;
        char *body; /* the open request */
        int64_t prev_ref;
        char *case_id;       /* NULL until acknowledged */
        char *method, *path; /* a plain request; NULL for a case */
        bool sent;           /* a plain request, acknowledged */
        char *parked;        /* why the head item was refused for good, or NULL */
        unsigned update_seq;
        struct item *items, *items_tail;
        bool row_durable; /* the case row holds the current fields */
        bool released;    /* no fault needs it any more */
        bool in_flight;
        unsigned failures; /* consecutive */
        uint64_t next_try;
        char *last_error;
        struct rec *next, *prev;         /* all records, by ref */
        struct rec *key_prev, *key_next; /* the same fault key, by ref */
        struct rec *owe_prev, *owe_next; /* the records that owe something */
        bool owing;
        bool in_dirty;
        struct rec *ref_next; /* hash chain */
};

struct key_slot {
        struct rec *newest;
        struct key_slot *next;
};

struct outbox {
        struct loop *loop;
        struct store *st;
        struct sender *sender;
        struct outbox_settings set;
        outbox_opened_fn opened;
        void *userdata;
        struct loop_source *timer;
        struct rec *head, *tail;
        struct rec *owe_head, *owe_tail; /* what outbox_kick looks at */
        struct rec **dirty;              /* records changed since the last commit */
        size_t n_dirty, cap_dirty;
        bool dirty_all; /* the dirty list lost track: write every record */
        bool swept;
        struct rec *by_ref[REF_BUCKETS];
        struct key_slot *by_key[KEY_BUCKETS];
        int64_t last_ref, last_seq;
        size_t n_items; /* opens not acknowledged + updates */
        size_t in_flight;
        /* the central side as a whole: down or asking to wait */
        unsigned down_failures;
        bool store_failing; /* logged once per failing streak */
        uint64_t down_until;
        int64_t *del_refs, *del_seqs;
        size_t n_del_refs, n_del_seqs, cap_del_refs, cap_del_seqs;
        struct outbox_stats stats;
};

static struct rec *rec_find(const struct outbox *ob, int64_t ref)
{
        struct rec *r = ob->by_ref[(uint64_t)ref % REF_BUCKETS];

        while (r && r->ref != ref)
                r = r->ref_next;
        return r;
}

static struct key_slot **key_slot_find(struct outbox *ob, const char *key)
{
        struct key_slot **pp = &ob->by_key[hash_fnv_str(key) % KEY_BUCKETS];

        while (*pp && strcmp((*pp)->newest->fault_key, key) != 0)
                pp = &(*pp)->next;
        return pp;
}

static bool rec_owes(const struct rec *r)
{
        if (r->path)
                return !r->sent || r->in_flight;
        return !r->case_id || r->items || r->in_flight;
}

static void owe_unlink(struct outbox *ob, struct rec *r)
{
        if (r->owe_prev)
                r->owe_prev->owe_next = r->owe_next;
        else
                ob->owe_head = r->owe_next;
        if (r->owe_next)
                r->owe_next->owe_prev = r->owe_prev;
        else
                ob->owe_tail = r->owe_prev;
        r->owe_prev = r->owe_next = NULL;
        r->owing = false;
}

/* Keeps r in the list of records that owe something exactly while it does. */
static void owe_sync(struct outbox *ob, struct rec *r)
{
        bool owes = rec_owes(r);

        if (owes == r->owing)
                return;
        if (owes) {
                r->owing = true;
                r->owe_prev = ob->owe_tail;
                r->owe_next = NULL;
                if (ob->owe_tail)
                        ob->owe_tail->owe_next = r;
                else
                        ob->owe_head = r;
                ob->owe_tail = r;
                return;
        }
        owe_unlink(ob, r);
}

static void item_free(struct item *it)
{
        if (!it)
                return;
        free(it->body);
        free(it->idem_key);
        free(it);
}

static int push_id(int64_t **arr, size_t *n, size_t *cap, int64_t id)
{
        if (*n == *cap) {
                size_t nc = *cap ? 2 * *cap : 64;
                int64_t *na = xrealloc(*arr, nc * sizeof *na);
                if (!na)
                        return -ENOMEM;
                *arr = na;
                *cap = nc;
        }
        (*arr)[(*n)++] = id;
        return 0;
}

/* Links a new record into the list, the ref table and its key's chain. */
static int rec_link(struct outbox *ob, struct rec *r)
{
        struct key_slot **kp = key_slot_find(ob, r->fault_key);
        struct rec **bp = &ob->by_ref[(uint64_t)r->ref % REF_BUCKETS];

        if (!*kp) {
                struct key_slot *k = xcalloc(1, sizeof *k);
                if (!k)
                        return -ENOMEM;
                *kp = k;
        } else {
                r->key_prev = (*kp)->newest;
                r->key_prev->key_next = r;
        }
        (*kp)->newest = r;
        r->ref_next = *bp;
        *bp = r;
        r->prev = ob->tail;
        if (ob->tail)
                ob->tail->next = r;
        else
                ob->head = r;
        ob->tail = r;
        return 0;
}

static void rec_free(struct rec *r)
{
        if (!r)
                return;
        while (r->items) {
                struct item *it = r->items;
                r->items = it->next;
                item_free(it);
        }
        free(r->fault_key);
        free(r->idem_key);
        free(r->body);
        free(r->case_id);
        free(r->method);
        free(r->path);
        free(r->parked);
        free(r->last_error);
        free(r);
}

/* Unlinks a record that owes nothing and frees it; its row goes in the next commit. */
static void rec_drop(struct outbox *ob, struct rec *r)
{
        struct key_slot **kp = key_slot_find(ob, r->fault_key);
        struct rec **bp = &ob->by_ref[(uint64_t)r->ref % REF_BUCKETS];

        if (push_id(&ob->del_refs, &ob->n_del_refs, &ob->cap_del_refs, r->ref) < 0)
                return; /* kept: dropped at a later release or start */
        store_mark_dirty(ob->st);
        if (r->owing)
                owe_unlink(ob, r);
        if (r->in_dirty)
                for (size_t i = 0; i < ob->n_dirty; i++)
                        if (ob->dirty[i] == r) {
                                ob->dirty[i] = ob->dirty[--ob->n_dirty];
                                break;
                        }
        if (r->key_next)
                r->key_next->key_prev = r->key_prev;
        if (r->key_prev)
                r->key_prev->key_next = r->key_next;
        if (*kp && (*kp)->newest == r) {
                if (r->key_prev) {
                        (*kp)->newest = r->key_prev;
                } else {
                        struct key_slot *k = *kp;
                        *kp = k->next;
                        free(k);
                }
        }
        while (*bp != r)
                bp = &(*bp)->ref_next;
        *bp = r->ref_next;
        if (r->prev)
                r->prev->next = r->next;
        else
                ob->head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        else
                ob->tail = r->prev;
        rec_free(r);
}

/* ---- persistence ---- */

static int rec_write(struct store *st, const struct rec *c)
{
        int r;

        if (!c->row_durable) {
                struct store_case sc = {
                        .ref = c->ref,
                        .fault_key = c->fault_key,
                        .idem_key = c->idem_key,
                        .body = c->body,
                        .prev_ref = c->prev_ref,
                        .case_id = c->case_id,
                        .parked = c->parked,
                        .update_seq = c->update_seq,
                        .method = c->method,
                        .path = c->path,
                        .sent = c->sent,
                };
                if ((r = store_put_case(st, &sc)) < 0)
                        return r;
        }
        for (const struct item *it = c->items; it; it = it->next) {
                if (it->durable)
                        continue;
                struct store_update su = {
                        .seq = it->seq,
                        .ref = c->ref,
                        .type = it->type,
                        .body = it->body,
                        .idem_key = it->idem_key,
                };
                if ((r = store_put_update(st, &su)) < 0)
                        return r;
        }
        return 0;
}

static int ob_write(struct store *st, void *userdata)
{
        struct outbox *ob = userdata;
        int r;

        if (ob->dirty_all) {
                for (struct rec *c = ob->head; c; c = c->next)
                        if ((r = rec_write(st, c)) < 0)
                                return r;
        } else {
                for (size_t i = 0; i < ob->n_dirty; i++)
                        if ((r = rec_write(st, ob->dirty[i])) < 0)
                                return r;
        }
        for (size_t i = 0; i < ob->n_del_seqs; i++)
                if ((r = store_del_update(st, ob->del_seqs[i])) < 0)
                        return r;
        for (size_t i = 0; i < ob->n_del_refs; i++)
                if ((r = store_del_case(st, ob->del_refs[i])) < 0)
                        return r;
        if ((r = store_put_counter(st, "case_ref", ob->last_ref)) < 0 ||
            (r = store_put_counter(st, "update_seq", ob->last_seq)) < 0)
                return r;
        return 0;
}

static void ob_done(struct store *st, bool committed, void *userdata)
{
        struct outbox *ob = userdata;

        if (!committed) {
                if (!ob->store_failing) {
                        struct outbox_stats os;
                        outbox_get_stats(ob, &os);
                        log_err("state database: cannot save (%s); %" PRIu64 " requests and the fault table "
                                "are held in memory only, saved as soon as it works again (tried every second)",
                                store_last_error(st), os.not_durable);
                        ob->store_failing = true;
                }
                return;
        }
        if (ob->store_failing) {
                log_notice("state database: saving works again");
                ob->store_failing = false;
        }
        size_t n = ob->n_dirty;
        if (ob->dirty_all) {
                for (struct rec *c = ob->head; c; c = c->next) {
                        c->row_durable = true;
                        for (struct item *it = c->items; it; it = it->next)
                                it->durable = true;
                }
                ob->dirty_all = false;
        }
        for (size_t i = 0; i < n; i++) {
                struct rec *c = ob->dirty[i];
                c->row_durable = true;
                c->in_dirty = false;
                for (struct item *it = c->items; it; it = it->next)
                        it->durable = true;
        }
        ob->n_dirty = 0;
        ob->n_del_refs = ob->n_del_seqs = 0;
        /* records that were waiting for this commit to go */
        for (size_t i = 0; i < n; i++) {
                struct rec *c = ob->dirty[i];
                if (c->released && !rec_owes(c))
                        rec_drop(ob, c);
        }
        outbox_kick(ob);
}

static void mark(struct outbox *ob, struct rec *r)
{
        r->row_durable = false;
        store_mark_dirty(ob->st);
        if (r->in_dirty)
                return;
        if (ob->n_dirty == ob->cap_dirty) {
                size_t nc = ob->cap_dirty ? 2 * ob->cap_dirty : 256;
                struct rec **nd = xrealloc(ob->dirty, nc * sizeof *nd);
                if (!nd) {
                        ob->dirty_all = true; /* cannot remember it: the next commit writes every record */
                        return;
                }
                ob->dirty = nd;
                ob->cap_dirty = nc;
        }
        ob->dirty[ob->n_dirty++] = r;
        r->in_dirty = true;
}

/* ---- delivery ---- */

static uint64_t backoff(const struct outbox *ob, unsigned failures)
{
        uint64_t d = BACKOFF_START_USEC < ob->set.retry_max_usec ? BACKOFF_START_USEC : ob->set.retry_max_usec;

        for (unsigned i = 1; i < failures && d < ob->set.retry_max_usec; i++)
                d *= 2;
        if (d > ob->set.retry_max_usec)
                d = ob->set.retry_max_usec;
        /* jitter: between half and all of it, so agents that lost the
         * central side together do not come back in step */
        return d / 2 + (uint64_t)((double)(d / 2) * ((double)rand() / RAND_MAX));
}

static void rec_failed(struct rec *r, const char *what, const struct sender_result *res)
{
        struct outbox *ob = r->ob;
        uint64_t now = time_mono_usec(), wait, ra = res->retry_after_usec;
        char msg[512], text[300];
        long st = res->http_status;

        if (st)
                snprintf(msg, sizeof msg, "HTTP %ld: %s", st,
                         answer_error_text(res->body, res->body_len, text, sizeof text));
        else
                snprintf(msg, sizeof msg, "%s", res->error ? res->error : "unknown error");
        ob->stats.send_failures++;
        if (st >= 400 && st < 500 && st != 408 && st != 429) {
                /* refused for good: retrying the same request cannot help */
                free(r->parked);
                r->parked = xstrdup(msg);
                mark(ob, r);
                if (st == 401)
                        log_fault(LOG_LEVEL_ERR, r->fault_key, NULL, NULL, r->case_id,
                                  "central API refused the bearer token (HTTP 401) on %s; check token_file, then "
                                  "reload: the request is parked until then",
                                  what);
                else
                        log_fault(LOG_LEVEL_ERR, r->fault_key, NULL, NULL, r->case_id,
                                  "%s refused by the central API (%s); parked, not retried until a reload or "
                                  "'weibaoctl outbox retry'",
                                  what, msg);
                free(r->last_error);
                r->last_error = xstrdup(msg);
                return;
        }
        if (ra > RETRY_AFTER_MAX_USEC)
                ra = RETRY_AFTER_MAX_USEC;
        r->failures++;
        wait = backoff(ob, r->failures);
        if (ra > wait)
                wait = ra;
        r->next_try = now + wait;
        if (st == 0 || st == 429 || st == 503) {
                ob->down_failures++;
                uint64_t w = backoff(ob, ob->down_failures);
                ob->down_until = now + (ra > w ? ra : w);
        }
        if (r->failures == 1 || !r->last_error || strcmp(r->last_error, msg) != 0)
                log_fault(LOG_LEVEL_WARNING, r->fault_key, NULL, NULL, r->case_id,
                          "%s failed: %s (retrying in %.1fs, backoff up to %" PRIu64 "s)", what, msg,
                          (double)wait / 1e6, ob->set.retry_max_usec / 1000000);
        free(r->last_error);
        r->last_error = xstrdup(msg);
}

static void central_answered(struct outbox *ob, const struct sender_result *res)
{
        if (res->http_status && res->http_status != 429 && res->http_status != 503) {
                if (ob->down_failures)
                        log_notice("central API answers again");
                ob->down_failures = 0;
                ob->down_until = 0;
        }
}

/* A rec waiting for another record's case id learns it. */
static void prev_opened(struct outbox *ob, const struct rec *prev)
{
        for (struct rec *c = prev->key_next; c; c = c->key_next) {
                if (c->prev_ref != prev->ref || c->case_id)
                        continue;
                cJSON *o = cJSON_Parse(c->body);
                char *nb = NULL;
                if (o && !cJSON_HasObjectItem(o, "previous_case_id") &&
                    cJSON_AddStringToObject(o, "previous_case_id", prev->case_id))
                        nb = cJSON_PrintUnformatted(o);
                cJSON_Delete(o);
                if (nb) {
                        free(c->body);
                        c->body = nb;
                        mark(ob, c);
                }
        }
}

static void on_open_done(const struct sender_result *res, void *userdata)
{
        struct rec *r = userdata;
        struct outbox *ob = r->ob;
        char *id = NULL;

        r->in_flight = false;
        ob->in_flight--;
        central_answered(ob, res);
        if (res->http_status == 200 || res->http_status == 201) {
                int q = answer_parse_case_id(res->body, res->body_len, &id);
                if (q == 0) {
                        r->case_id = id;
                        ob->n_items--;
                        ob->stats.cases_opened++;
                        log_fault(LOG_LEVEL_NOTICE, r->fault_key, NULL, NULL, r->case_id, "case %s %s%s", r->case_id,
                                  res->http_status == 201 ? "opened" : "already open (idempotent retry)",
                                  r->failures ? " after failed attempts" : "");
                        r->failures = 0;
                        free(r->last_error);
                        r->last_error = NULL;
                        mark(ob, r);
                        owe_sync(ob, r);
                        prev_opened(ob, r);
                        if (ob->opened)
                                ob->opened(r->ref, r->fault_key, r->case_id, ob->userdata);
                        outbox_kick(ob);
                        return;
                }
                struct sender_result bad = *res;
                bad.http_status = 0;
                bad.error = q == -ENOMEM ? "out of memory reading the answer" : "answer carries no usable case id";
                rec_failed(r, "opening the case", &bad);
                outbox_kick(ob);
                return;
        }
        rec_failed(r, "opening the case", res);
        outbox_kick(ob);
}

/* Whether a 2xx answer is a JSON object with an id, as every answer of the API's writes is. */
static bool answer_names_object(const struct sender_result *res)
{
        char *id = NULL;

        if (answer_parse_case_id(res->body, res->body_len, &id) != 0)
                return false;
        free(id);
        return true;
}

static void on_update_done(const struct sender_result *res, void *userdata)
{
        struct rec *r = userdata;
        struct outbox *ob = r->ob;
        struct item *it = r->items;

        r->in_flight = false;
        ob->in_flight--;
        central_answered(ob, res);
        if ((res->http_status == 200 || res->http_status == 201) && !answer_names_object(res)) {
                /* a 2xx that is not the update object (a proxy's page, a
                 * truncated answer) confirms nothing: the retry's key makes it safe */
                struct sender_result bad = *res;
                bad.http_status = 0;
                bad.error = "answer is not the update object (no usable id)";
                rec_failed(r, "updating the case", &bad);
                outbox_kick(ob);
                return;
        }
        if (res->http_status == 200 || res->http_status == 201) {
                log_fault(LOG_LEVEL_INFO, r->fault_key, NULL, NULL, r->case_id, "case %s told '%s'", r->case_id,
                          it->type);
                if (push_id(&ob->del_seqs, &ob->n_del_seqs, &ob->cap_del_seqs, it->seq) < 0) {
                        /* the row stays until a restart resends it: a replay, harmless */
                        log_warning("outbox: out of memory noting update %" PRId64 " as delivered", it->seq);
                }
                store_mark_dirty(ob->st);
                r->items = it->next;
                if (!r->items)
                        r->items_tail = NULL;
                item_free(it);
                owe_sync(ob, r);
                ob->n_items--;
                ob->stats.updates_sent++;
                r->failures = 0;
                free(r->last_error);
                r->last_error = NULL;
                outbox_kick(ob);
                return;
        }
        rec_failed(r, "updating the case", res);
        outbox_kick(ob);
}

static void on_request_done(const struct sender_result *res, void *userdata)
{
        struct rec *r = userdata;
        struct outbox *ob = r->ob;

        r->in_flight = false;
        ob->in_flight--;
        central_answered(ob, res);
        if (res->http_status >= 200 && res->http_status < 300) {
                log_info("outbox: %s %s delivered", r->method, r->path);
                r->sent = true;
                ob->n_items--;
                r->failures = 0;
                free(r->last_error);
                r->last_error = NULL;
                owe_sync(ob, r);
                mark(ob, r);
                outbox_kick(ob);
                return;
        }
        rec_failed(r, "sending it", res);
        outbox_kick(ob);
}

static void rec_send(struct outbox *ob, struct rec *r)
{
        char path[200];
        int ret;

        if (r->path) {
                ret = sender_request(ob->sender, r->method, r->path, r->body, r->idem_key, 0, on_request_done, r);
        } else if (!r->case_id) {
                /* only the case's id is read from the answer */
                ret = sender_request(ob->sender, "POST", "/api/v1/cases", r->body, r->idem_key, SENDER_ANSWER_MINIMAL,
                                     on_open_done, r);
        } else {
                snprintf(path, sizeof path, "/api/v1/cases/%s/updates", r->case_id);
                ret = sender_request(ob->sender, "POST", path, r->items->body, r->items->idem_key,
                                     SENDER_ANSWER_MINIMAL, on_update_done, r);
        }
        if (ret < 0) {
                char why[200];
                struct sender_result res = {.body = "", .error = why};
                snprintf(why, sizeof why, "cannot start the request: %s%s", strerror(-ret),
                         ret == -ENOENT ? " (is weibao-sender installed beside weibao-agent or in libexec?)" : "");
                rec_failed(r, r->case_id ? "updating the case" : "opening the case", &res);
                return;
        }
        r->in_flight = true;
        ob->in_flight++;
}

/* Whether r has something it may send now. */
static bool rec_ready(const struct rec *r, uint64_t now)
{
        if (r->in_flight || r->parked || now < r->next_try)
                return false;
        if (r->key_prev && rec_owes(r->key_prev))
                return false; /* the older case of this key goes first */
        if (r->path || !r->case_id)
                return r->row_durable;
        return r->items && r->items->durable;
}

void outbox_kick(struct outbox *ob)
{
        uint64_t now = time_mono_usec(), next = 1000000;
        struct rec *r, *n;

        if (!ob->swept) {
                /* records of a previous run that no fault claimed */
                ob->swept = true;
                for (r = ob->head; r; r = n) {
                        n = r->next;
                        if (r->released && !rec_owes(r) && r->row_durable && !r->in_dirty)
                                rec_drop(ob, r);
                }
        }
        for (r = ob->owe_head; r; r = n) {
                n = r->owe_next;
                if (ob->in_flight >= ob->set.max_in_flight)
                        break; /* an answer kicks again */
                if (ob->down_failures && (now < ob->down_until || ob->in_flight > 0))
                        break; /* down: one probe at a time, after the wait */
                if (rec_ready(r, now))
                        rec_send(ob, r);
                else if (!r->in_flight && !r->parked && r->next_try > now && r->next_try - now < next)
                        next = r->next_try - now;
        }
        if (ob->down_failures && ob->down_until > now && ob->down_until - now < next)
                next = ob->down_until - now;
        /* owing nothing, nothing to wake up for: a new item kicks again */
        loop_timer_set(ob->timer, ob->owe_head ? (next ? next : 1) : 0);
}

static uint64_t on_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        (void)s;
        (void)now;
        outbox_kick(userdata);
        return 0; /* outbox_kick re-armed it */
}

/* ---- loading ---- */

static int load_case(const struct store_case *c, void *ud)
{
        struct outbox *ob = ud;
        struct rec *r = xcalloc(1, sizeof *r);

        if (!r)
                return -ENOMEM;
        r->ob = ob;
        r->ref = c->ref;
        r->prev_ref = c->prev_ref;
        r->update_seq = c->update_seq;
        r->row_durable = true;
        r->released = true; /* until a fault claims it */
        r->fault_key = xstrdup(c->fault_key);
        r->idem_key = xstrdup(c->idem_key);
        r->body = xstrdup(c->body);
        if (c->case_id)
                r->case_id = xstrdup(c->case_id);
        if (c->parked)
                r->parked = xstrdup(c->parked);
        if (c->path) {
                r->method = xstrdup(c->method ? c->method : "PUT");
                r->path = xstrdup(c->path);
                r->sent = c->sent;
                if (!r->method || !r->path) {
                        rec_free(r);
                        return -ENOMEM;
                }
        }
        if (!r->fault_key || !r->idem_key || !r->body || (c->case_id && !r->case_id) || rec_link(ob, r) < 0) {
                rec_free(r);
                return -ENOMEM;
        }
        if (r->path ? !r->sent : !r->case_id)
                ob->n_items++;
        if (c->ref > ob->last_ref)
                ob->last_ref = c->ref;
        return 0;
}

static int load_update(const struct store_update *u, void *ud)
{
        struct outbox *ob = ud;
        struct rec *r = rec_find(ob, u->ref);
        struct item *it;

        if (u->seq > ob->last_seq)
                ob->last_seq = u->seq;
        if (!r) {
                /* an orphan (its case row went first): nothing can send it */
                return push_id(&ob->del_seqs, &ob->n_del_seqs, &ob->cap_del_seqs, u->seq);
        }
        it = xcalloc(1, sizeof *it);
        if (!it)
                return -ENOMEM;
        it->seq = u->seq;
        snprintf(it->type, sizeof it->type, "%s", u->type);
        it->body = xstrdup(u->body);
        it->idem_key = xstrdup(u->idem_key);
        it->durable = true;
        if (!it->body || !it->idem_key) {
                item_free(it);
                return -ENOMEM;
        }
        if (u->parked && !r->parked)
                r->parked = xstrdup(u->parked);
        if (r->items_tail)
                r->items_tail->next = it;
        else
                r->items = it;
        r->items_tail = it;
        ob->n_items++;
        return 0;
}

/* ---- interface ---- */

int outbox_new(struct loop *loop, struct store *st, struct sender *sender, const struct outbox_settings *set,
               outbox_opened_fn opened, void *userdata, struct outbox **ret)
{
        struct outbox *ob = xcalloc(1, sizeof *ob);
        struct store_writer w = {.write = ob_write, .done = ob_done};
        int64_t c_ref = 0, c_seq = 0;
        int r;

        if (!ob)
                return -ENOMEM;
        ob->loop = loop;
        ob->st = st;
        ob->sender = sender;
        ob->opened = opened;
        ob->userdata = userdata;
        outbox_set_settings(ob, set);
        w.userdata = ob;
        if ((r = store_get_counter(st, "case_ref", &c_ref)) < 0 ||
            (r = store_get_counter(st, "update_seq", &c_seq)) < 0 || (r = store_load_cases(st, load_case, ob)) < 0 ||
            (r = store_load_updates(st, load_update, ob)) < 0 || (r = store_add_writer(st, &w)) < 0 ||
            (r = loop_add_timer(loop, 1000000, 0, "outbox", on_timer, ob, &ob->timer)) < 0) {
                outbox_free(ob);
                return r;
        }
        for (struct rec *c = ob->head; c; c = c->next)
                owe_sync(ob, c);
        if (c_ref > ob->last_ref)
                ob->last_ref = c_ref;
        if (c_seq > ob->last_seq)
                ob->last_seq = c_seq;
        *ret = ob;
        return 0;
}

void outbox_free(struct outbox *ob)
{
        if (!ob)
                return;
        store_remove_writer(ob->st, ob);
        loop_remove(ob->timer);
        while (ob->head) {
                struct rec *r = ob->head;
                ob->head = r->next;
                rec_free(r);
        }
        for (size_t b = 0; b < KEY_BUCKETS; b++)
                while (ob->by_key[b]) {
                        struct key_slot *k = ob->by_key[b];
                        ob->by_key[b] = k->next;
                        free(k);
                }
        free(ob->del_refs);
        free(ob->del_seqs);
        free(ob->dirty);
        free(ob);
}

void outbox_set_settings(struct outbox *ob, const struct outbox_settings *set)
{
        ob->set = *set;
        if (!ob->set.retry_max_usec)
                ob->set.retry_max_usec = 30000000;
        if (!ob->set.max_items)
                ob->set.max_items = 100000;
        if (!ob->set.max_in_flight)
                ob->set.max_in_flight = 32;
}

int64_t outbox_open_case(struct outbox *ob, const char *fault_key, const char *body, const char *idem_key,
                         int64_t prev_ref)
{
        struct rec *r, *prev = prev_ref ? rec_find(ob, prev_ref) : NULL;

        if (ob->n_items >= ob->set.max_items) {
                ob->stats.shed++;
                return -ENOBUFS;
        }
        r = xcalloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->ob = ob;
        r->ref = ob->last_ref + 1;
        r->prev_ref = prev ? prev_ref : 0;
        r->fault_key = xstrdup(fault_key);
        r->idem_key = xstrdup(idem_key);
        r->body = xstrdup(body);
        if (!r->fault_key || !r->idem_key || !r->body || rec_link(ob, r) < 0) {
                rec_free(r);
                return -ENOMEM;
        }
        ob->last_ref = r->ref;
        ob->n_items++;
        owe_sync(ob, r);
        if (prev && prev->case_id)
                prev_opened(ob, prev);
        mark(ob, r);
        return r->ref;
}

int outbox_add_request(struct outbox *ob, const char *key, const char *method, const char *path, const char *body,
                       const char *idem_key)
{
        int64_t ref = outbox_open_case(ob, key, body, idem_key, 0);
        struct rec *r;

        if (ref < 0)
                return (int)ref;
        r = rec_find(ob, ref);
        r->method = xstrdup(method);
        r->path = xstrdup(path);
        r->released = true; /* nobody sends more to it */
        if (!r->method || !r->path) {
                free(r->method);
                free(r->path);
                r->method = r->path = NULL;
                r->case_id = xstrdup("-"); /* unusable: let it go */
                ob->n_items--;
                owe_sync(ob, r);
                return -ENOMEM;
        }
        return 0;
}

int outbox_add_update(struct outbox *ob, int64_t ref, const char *type, const char *body)
{
        struct rec *r = rec_find(ob, ref);
        struct item *it;

        if (!r)
                return -ENOENT;
        if (ob->n_items >= ob->set.max_items) {
                ob->stats.shed++;
                return -ENOBUFS;
        }
        it = xcalloc(1, sizeof *it);
        if (!it)
                return -ENOMEM;
        it->seq = ob->last_seq + 1;
        snprintf(it->type, sizeof it->type, "%s", type);
        it->body = xstrdup(body);
        it->idem_key = xasprintf("%s-u%u", r->idem_key, r->update_seq + 1);
        if (!it->body || !it->idem_key) {
                item_free(it);
                return -ENOMEM;
        }
        ob->last_seq = it->seq;
        r->update_seq++;
        if (r->items_tail)
                r->items_tail->next = it;
        else
                r->items = it;
        r->items_tail = it;
        ob->n_items++;
        owe_sync(ob, r);
        mark(ob, r);
        return 0;
}

bool outbox_case_idle(const struct outbox *ob, int64_t ref)
{
        const struct rec *r = rec_find(ob, ref);

        return !r || !rec_owes(r);
}

const char *outbox_case_id(const struct outbox *ob, int64_t ref)
{
        const struct rec *r = rec_find(ob, ref);

        return r ? r->case_id : NULL;
}

const char *outbox_case_delivery(const struct outbox *ob, int64_t ref, const char **ret_error)
{
        const struct rec *r = rec_find(ob, ref);

        if (ret_error)
                *ret_error = r && r->failures + (r->parked != NULL) ? r->last_error : NULL;
        if (!r)
                return "none";
        if (r->parked)
                return "parked";
        if (!r->case_id)
                return "opening";
        return r->items || r->in_flight ? "updating" : "delivered";
}

bool outbox_claim(struct outbox *ob, int64_t ref)
{
        struct rec *r = rec_find(ob, ref);

        if (!r)
                return false;
        r->released = false;
        return true;
}

void outbox_release(struct outbox *ob, int64_t ref)
{
        struct rec *r = rec_find(ob, ref);

        if (!r)
                return;
        r->released = true;
        if (!rec_owes(r) && r->row_durable && !r->in_dirty)
                rec_drop(ob, r);
}

size_t outbox_unpark(struct outbox *ob)
{
        size_t n = 0;

        for (struct rec *r = ob->head; r; r = r->next)
                if (r->parked) {
                        free(r->parked);
                        r->parked = NULL;
                        r->failures = 0;
                        r->next_try = 0;
                        mark(ob, r);
                        n++;
                }
        if (n)
                outbox_kick(ob);
        return n;
}

void outbox_get_stats(const struct outbox *ob, struct outbox_stats *ret)
{
        *ret = ob->stats;
        ret->opens_pending = ret->updates_pending = ret->requests_pending = ret->not_durable = ret->parked = 0;
        for (const struct rec *r = ob->head; r; r = r->next) {
                if (r->path) {
                        ret->requests_pending += !r->sent;
                        ret->not_durable += !r->sent && !r->row_durable;
                } else if (!r->case_id) {
                        ret->opens_pending++;
                        ret->not_durable += !r->row_durable;
                }
                for (const struct item *it = r->items; it; it = it->next) {
                        ret->updates_pending++;
                        ret->not_durable += !it->durable;
                }
                ret->parked += r->parked != NULL;
        }
        ret->in_flight = ob->in_flight;
        ret->central_down = ob->down_failures > 0;
}

cJSON *outbox_to_json(const struct outbox *ob)
{
        struct outbox_stats s;
        cJSON *o = cJSON_CreateObject(), *arr;
        uint64_t now = time_mono_usec();
        size_t n = 0;

        if (!o)
                return NULL;
        outbox_get_stats(ob, &s);
        cJSON_AddNumberToObject(o, "opens_pending", (double)s.opens_pending);
        cJSON_AddNumberToObject(o, "updates_pending", (double)s.updates_pending);
        cJSON_AddNumberToObject(o, "requests_pending", (double)s.requests_pending);
        cJSON_AddNumberToObject(o, "not_durable", (double)s.not_durable);
        cJSON_AddNumberToObject(o, "in_flight", (double)s.in_flight);
        cJSON_AddNumberToObject(o, "parked", (double)s.parked);
        cJSON_AddNumberToObject(o, "cases_opened", (double)s.cases_opened);
        cJSON_AddNumberToObject(o, "updates_sent", (double)s.updates_sent);
        cJSON_AddNumberToObject(o, "send_failures", (double)s.send_failures);
        cJSON_AddNumberToObject(o, "shed", (double)s.shed);
        cJSON_AddBoolToObject(o, "central_down", s.central_down);
        if (s.central_down)
                cJSON_AddNumberToObject(o, "central_retry_in_s",
                                        ob->down_until > now ? (double)(ob->down_until - now) / 1e6 : 0);
        arr = cJSON_AddArrayToObject(o, "records");
        for (const struct rec *r = ob->head; arr && r && n < JSON_RECORDS_MAX; r = r->next) {
                if (!rec_owes(r))
                        continue;
                cJSON *x = cJSON_CreateObject(), *types;
                if (!x)
                        break;
                n++;
                cJSON_AddNumberToObject(x, "ref", (double)r->ref);
                cJSON_AddStringToObject(x, "fault_key", r->fault_key);
                if (r->case_id)
                        cJSON_AddStringToObject(x, "case_id", r->case_id);
                else
                        cJSON_AddNullToObject(x, "case_id");
                cJSON_AddStringToObject(x, "waiting",
                                        r->parked      ? "parked"
                                        : r->in_flight ? "in flight"
                                        : r->path      ? "request"
                                        : !r->case_id  ? "open"
                                                       : "updates");
                if (r->path)
                        cJSON_AddStringToObject(x, "request", r->path);
                if ((types = cJSON_AddArrayToObject(x, "updates")))
                        for (const struct item *it = r->items; it; it = it->next)
                                json_add(types, NULL, cJSON_CreateString(it->type));
                cJSON_AddNumberToObject(x, "failures", (double)r->failures);
                if (r->next_try > now && !r->parked)
                        cJSON_AddNumberToObject(x, "retry_in_s", (double)(r->next_try - now) / 1e6);
                if (r->parked)
                        cJSON_AddStringToObject(x, "parked", r->parked);
                if (r->last_error)
                        cJSON_AddStringToObject(x, "last_error", r->last_error);
                json_add(arr, NULL, x);
        }
        return o;
}
