/* store: see store.h.
 *
 * Schema (version 1, in meta): cases and updates are the outbox, faults the
 * fault table as JSON documents the faults module defines, maintenance the
 * windows. Every statement is prepared once at open. A failed transaction is
 * rolled back whole, so the database always holds one consistent state: the
 * one of the last successful commit. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/xalloc.h"
#include "loop.h"

#define STORE_RETRY_USEC 1000000 /* a failed commit is tried again this often */
/* After this long without a commit, SQLite's page cache is given back (and
 * the heap trimmed): an agent at rest then holds only what it uses, and a
 * busy one, committing all the time, keeps its cache. */
#define STORE_IDLE_RELEASE_USEC 2000000
#define SCHEMA_VERSION "1"

enum {
        Q_PUT_CASE,
        Q_DEL_CASE,
        Q_PUT_UPDATE,
        Q_DEL_UPDATE,
        Q_PUT_FAULT,
        Q_DEL_FAULT,
        Q_PUT_WINDOW,
        Q_PUT_META,
        Q_GET_META,
        Q_SERIES_FIND,
        Q_SERIES_ADD,
        Q_PUT_1M,
        Q_PUT_1H,
        Q_PRUNE_1M,
        Q_PRUNE_1H,
        Q_OLDEST_1M,
        Q_OLDEST_1H,
        Q_PUT_EVENT,
        Q_PRUNE_EVENTS,
        Q_PUT_OUTAGE,
        Q_SERIES_THRESHOLDS,
        Q_HOUR_FROM_MINUTES,
        Q_CLOSE_ORPHAN_HOURS,
        Q_OLDEST_EVENTS,
        Q_MAX,
};

static const char *const queries[Q_MAX] = {
        [Q_PUT_CASE] = "INSERT OR REPLACE INTO cases(ref, fault_key, idem_key, body, prev_ref, case_id, parked, "
                       "update_seq, method, path, sent) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        [Q_DEL_CASE] = "DELETE FROM cases WHERE ref = ?1",
        [Q_PUT_UPDATE] = "INSERT OR REPLACE INTO updates(seq, ref, type, body, idem_key, parked) "
                         "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        [Q_DEL_UPDATE] = "DELETE FROM updates WHERE seq = ?1",
        [Q_PUT_FAULT] = "INSERT OR REPLACE INTO faults(key, data) VALUES(?1, ?2)",
        [Q_DEL_FAULT] = "DELETE FROM faults WHERE key = ?1",
        [Q_PUT_WINDOW] = "INSERT OR REPLACE INTO maintenance(id, start, end_at, ended_at, reason) "
                         "VALUES(?1, ?2, ?3, ?4, ?5)",
        [Q_PUT_META] = "INSERT OR REPLACE INTO meta(k, v) VALUES(?1, ?2)",
        [Q_GET_META] = "SELECT v FROM meta WHERE k = ?1",
        [Q_SERIES_FIND] = "SELECT id FROM series WHERE source = ?1 AND name = ?2 AND object = ?3",
        [Q_SERIES_ADD] = "INSERT INTO series(source, name, object, unit) VALUES(?1, ?2, ?3, ?4)",
        /* a minute written again (after a restart within it, or a late reading) merges into its row */
        [Q_PUT_1M] = "INSERT INTO samples_1m(series, t, min, avg, max, n) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
                     "ON CONFLICT(t, series) DO UPDATE SET min = min(samples_1m.min, excluded.min), "
                     "max = max(samples_1m.max, excluded.max), "
                     "avg = (samples_1m.avg * samples_1m.n + excluded.avg * excluded.n) / (samples_1m.n + excluded.n), "
                     "n = samples_1m.n + excluded.n",
        [Q_PUT_1H] = "INSERT OR REPLACE INTO samples_1h(series, t, min, avg, max, n) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        [Q_PRUNE_1M] = "DELETE FROM samples_1m WHERE t < ?1",
        [Q_PRUNE_1H] = "DELETE FROM samples_1h WHERE t < ?1",
        /* the oldest ?1 + 1 rows (whole minutes or hours), none from ?2 on */
        [Q_OLDEST_1M] = "DELETE FROM samples_1m WHERE t < ?2 AND t <= coalesce((SELECT t FROM samples_1m WHERE t < ?2 "
                        "ORDER BY t LIMIT 1 OFFSET ?1), (SELECT max(t) FROM samples_1m WHERE t < ?2))",
        [Q_OLDEST_1H] = "DELETE FROM samples_1h WHERE t < ?2 AND t <= coalesce((SELECT t FROM samples_1h WHERE t < ?2 "
                        "ORDER BY t LIMIT 1 OFFSET ?1), (SELECT max(t) FROM samples_1h WHERE t < ?2))",
        [Q_OLDEST_EVENTS] = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE t < ?2 ORDER BY t LIMIT ?1)",
        [Q_PUT_EVENT] = "INSERT INTO events(t, kind, object, detail) VALUES(?1, ?2, ?3, ?4)",
        [Q_PRUNE_EVENTS] = "DELETE FROM events WHERE t < ?1",
        [Q_SERIES_THRESHOLDS] = "UPDATE series SET thresholds = ?2 WHERE id = ?1",
        [Q_HOUR_FROM_MINUTES] = "INSERT OR REPLACE INTO samples_1h(series, t, min, avg, max, n) "
                                "SELECT ?1, ?2, min(min), sum(avg * n) / sum(n), max(max), sum(n) FROM samples_1m "
                                "WHERE series = ?1 AND t >= ?2 AND t < ?2 + 3600 HAVING sum(n) > 0",
        /* hours a stopped agent left open: since the newest hour written, before ?1 */
        [Q_CLOSE_ORPHAN_HOURS] = "INSERT OR IGNORE INTO samples_1h(series, t, min, avg, max, n) "
                                 "SELECT series, t - t % 3600, min(min), sum(avg * n) / sum(n), max(max), sum(n) "
                                 "FROM samples_1m WHERE t >= coalesce((SELECT max(t) FROM samples_1h), 0) "
                                 "AND t < ?1 GROUP BY series, t - t % 3600",
        [Q_PUT_OUTAGE] = "INSERT OR REPLACE INTO outages(start, end_at, clean, boot_before, boot_after) "
                         "VALUES(?1, ?2, ?3, ?4, ?5)",
};

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS cases(ref INTEGER PRIMARY KEY, fault_key TEXT NOT NULL, "
        "  idem_key TEXT NOT NULL, body TEXT NOT NULL, prev_ref INTEGER NOT NULL DEFAULT 0, "
        "  case_id TEXT, parked TEXT, update_seq INTEGER NOT NULL DEFAULT 0, method TEXT, path TEXT, "
        "  sent INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS updates(seq INTEGER PRIMARY KEY, ref INTEGER NOT NULL, "
        "  type TEXT NOT NULL, body TEXT NOT NULL, idem_key TEXT NOT NULL, parked TEXT);"
        "CREATE TABLE IF NOT EXISTS faults(key TEXT PRIMARY KEY, data TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS maintenance(id INTEGER PRIMARY KEY, start INTEGER NOT NULL, "
        "  end_at INTEGER NOT NULL, ended_at INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, source TEXT NOT NULL, "
        "  name TEXT NOT NULL, object TEXT NOT NULL, unit TEXT NOT NULL DEFAULT '', thresholds TEXT, "
        "  UNIQUE(source, name, object));"
        "CREATE TABLE IF NOT EXISTS samples_1m(series INTEGER NOT NULL, t INTEGER NOT NULL, "
        "  min REAL, avg REAL, max REAL, n INTEGER, PRIMARY KEY(t, series)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS samples_1h(series INTEGER NOT NULL, t INTEGER NOT NULL, "
        "  min REAL, avg REAL, max REAL, n INTEGER, PRIMARY KEY(t, series)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, t INTEGER NOT NULL, "
        "  kind TEXT NOT NULL, object TEXT NOT NULL, detail TEXT);"
        "CREATE INDEX IF NOT EXISTS events_t ON events(t);"
        "CREATE TABLE IF NOT EXISTS outages(start INTEGER PRIMARY KEY, end_at INTEGER NOT NULL, "
        "  clean INTEGER NOT NULL, boot_before TEXT, boot_after TEXT);"
        "INSERT OR IGNORE INTO meta(k, v) VALUES('schema', '" SCHEMA_VERSION "');";

struct store {
        sqlite3 *db;
        char *path;
        sqlite3_stmt *q[Q_MAX];
        struct loop_source *timer;
        struct loop_source *idle_timer; /* STORE_IDLE_RELEASE_USEC after the last commit */
        struct store_writer writers[STORE_WRITERS_MAX];
        size_t n_writers;
        bool dirty;
        uint64_t wal_max; /* the WAL is checkpointed and truncated after a commit that left it larger */
        struct store_stats stats;
        char last_error[256];
};

static int errno_of(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

static const char *const sync_names[STORE_SYNC_MAX] = {"full", "normal"};

const char *store_sync_to_string(enum store_sync s)
{
        return s < STORE_SYNC_MAX ? sync_names[s] : "unknown";
}

int store_sync_from_string(const char *s, enum store_sync *ret)
{
        for (size_t i = 0; i < STORE_SYNC_MAX; i++)
                if (strcmp(s, sync_names[i]) == 0) {
                        *ret = (enum store_sync)i;
                        return 0;
                }
        return -EINVAL;
}

static int fail(struct store *st, int rc)
{
        snprintf(st->last_error, sizeof st->last_error, "%s", st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        return errno_of(rc) ? errno_of(rc) : -EIO;
}

static uint64_t file_size(const char *path, const char *suffix)
{
        char p[4200];
        struct stat sb;

        snprintf(p, sizeof p, "%s%s", path, suffix);
        return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static uint64_t on_commit_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct store *st = userdata;

        (void)s;
        (void)now;
        if (store_commit_now(st) < 0)
                return STORE_RETRY_USEC;
        return 0;
}

static uint64_t on_idle_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct store *st = userdata;

        (void)s;
        (void)now;
        sqlite3_db_release_memory(st->db);
        malloc_trim(0);
        return 0;
}

int store_open(struct loop *loop, const char *path, enum store_sync sync, struct store **ret, const char **ret_error)
{
        static char open_error[256];
        struct store *st = xcalloc(1, sizeof *st);
        char pragmas[200];
        int rc, r, fd;

        if (!st)
                return -ENOMEM;
        st->wal_max = STORE_WAL_MAX_DEFAULT;
        st->path = xstrdup(path);
        if (!st->path) {
                r = -ENOMEM;
                goto fail;
        }
        /* Created 0600 before SQLite sees it: cases carry host details. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                snprintf(st->last_error, sizeof st->last_error, "%s", strerror(errno));
                goto fail;
        }
        close(fd);
        rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                r = fail(st, rc);
                goto fail;
        }
        snprintf(pragmas, sizeof pragmas,
                 "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; "
                 "PRAGMA journal_size_limit=4194304;"
                 "PRAGMA foreign_keys=OFF;",
                 sync == STORE_SYNC_NORMAL ? "NORMAL" : "FULL");
        if ((rc = sqlite3_exec(st->db, pragmas, NULL, NULL, NULL)) != SQLITE_OK ||
            (rc = sqlite3_exec(st->db, schema, NULL, NULL, NULL)) != SQLITE_OK) {
                r = fail(st, rc);
                goto fail;
        }
        for (size_t i = 0; i < Q_MAX; i++)
                if ((rc = sqlite3_prepare_v3(st->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &st->q[i], NULL)) !=
                    SQLITE_OK) {
                        r = fail(st, rc);
                        goto fail;
                }
        r = loop_add_timer(loop, 0, 0, "store-commit", on_commit_timer, st, &st->timer);
        if (r < 0)
                goto fail;
        r = loop_add_timer(loop, STORE_IDLE_RELEASE_USEC, 0, "store-idle", on_idle_timer, st, &st->idle_timer);
        if (r < 0)
                goto fail;
        *ret = st;
        return 0;
fail:
        snprintf(open_error, sizeof open_error, "%s", st->last_error[0] ? st->last_error : strerror(-r));
        if (ret_error)
                *ret_error = open_error;
        store_free(st);
        return r;
}

void store_free(struct store *st)
{
        if (!st)
                return;
        loop_remove(st->timer);
        loop_remove(st->idle_timer);
        for (size_t i = 0; i < Q_MAX; i++)
                sqlite3_finalize(st->q[i]);
        sqlite3_close(st->db);
        free(st->path);
        free(st);
}

int store_add_writer(struct store *st, const struct store_writer *w)
{
        if (st->n_writers == STORE_WRITERS_MAX)
                return -E2BIG;
        st->writers[st->n_writers++] = *w;
        return 0;
}

void store_remove_writer(struct store *st, void *userdata)
{
        size_t j = 0;

        if (!st)
                return;
        for (size_t i = 0; i < st->n_writers; i++)
                if (st->writers[i].userdata != userdata)
                        st->writers[j++] = st->writers[i];
        st->n_writers = j;
}

void store_mark_dirty(struct store *st)
{
        if (st->dirty)
                return;
        st->dirty = true;
        /* 1 µs: due at once, but after the events already waiting in this round */
        if (!st->stats.failing)
                loop_timer_set(st->timer, 1);
}

int store_commit_now(struct store *st)
{
        int rc, r = 0;

        st->dirty = false;
        rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                r = fail(st, rc);
        for (size_t i = 0; r == 0 && i < st->n_writers; i++)
                r = st->writers[i].write(st, st->writers[i].userdata);
        if (r == 0) {
                rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
                if (rc != SQLITE_OK)
                        r = fail(st, rc);
        }
        if (r < 0 && sqlite3_get_autocommit(st->db) == 0)
                sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        if (r < 0) {
                st->stats.commit_failures++;
                st->stats.last_errno = -r;
                st->stats.failing = true;
                st->dirty = true; /* the changes are still to be written */
                loop_timer_set(st->timer, STORE_RETRY_USEC);
        } else {
                /* the WAL holds what the database file has yet to take: keep it small on disk */
                if (file_size(st->path, "-wal") > st->wal_max)
                        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
                st->stats.commits++;
                loop_timer_set(st->idle_timer, STORE_IDLE_RELEASE_USEC);
                st->stats.last_errno = 0;
                st->stats.failing = false;
                st->last_error[0] = '\0';
        }
        for (size_t i = 0; i < st->n_writers; i++)
                st->writers[i].done(st, r == 0, st->writers[i].userdata);
        return r;
}

void store_get_stats(const struct store *st, struct store_stats *ret)
{
        struct stat sb;
        char wal[4200];

        *ret = st->stats;
        ret->bytes = 0;
        if (stat(st->path, &sb) == 0)
                ret->bytes += (uint64_t)sb.st_size;
        snprintf(wal, sizeof wal, "%s-wal", st->path);
        if (stat(wal, &sb) == 0)
                ret->bytes += (uint64_t)sb.st_size;
}

const char *store_last_error(const struct store *st)
{
        return st->last_error;
}

/* ---- statements ---- */

static int bind_text(sqlite3_stmt *q, int i, const char *s)
{
        return s ? sqlite3_bind_text(q, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(q, i);
}

static int run(struct store *st, sqlite3_stmt *q, int rc)
{
        if (rc == SQLITE_OK)
                rc = sqlite3_step(q);
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

int store_put_case(struct store *st, const struct store_case *c)
{
        sqlite3_stmt *q = st->q[Q_PUT_CASE];
        int rc = sqlite3_bind_int64(q, 1, c->ref);

        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, c->fault_key);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 3, c->idem_key);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 4, c->body);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 5, c->prev_ref);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 6, c->case_id);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 7, c->parked);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 8, c->update_seq);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 9, c->method);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 10, c->path);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(q, 11, c->sent);
        return run(st, q, rc);
}

static int del_by_id(struct store *st, int which, int64_t id)
{
        sqlite3_stmt *q = st->q[which];

        return run(st, q, sqlite3_bind_int64(q, 1, id));
}

int store_del_case(struct store *st, int64_t ref)
{
        return del_by_id(st, Q_DEL_CASE, ref);
}

int store_put_update(struct store *st, const struct store_update *u)
{
        sqlite3_stmt *q = st->q[Q_PUT_UPDATE];
        int rc = sqlite3_bind_int64(q, 1, u->seq);

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, u->ref);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 3, u->type);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 4, u->body);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 5, u->idem_key);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 6, u->parked);
        return run(st, q, rc);
}

int store_del_update(struct store *st, int64_t seq)
{
        return del_by_id(st, Q_DEL_UPDATE, seq);
}

int store_put_fault(struct store *st, const char *key, const char *json)
{
        sqlite3_stmt *q = st->q[Q_PUT_FAULT];
        int rc = bind_text(q, 1, key);

        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, json);
        return run(st, q, rc);
}

int store_del_fault(struct store *st, const char *key)
{
        sqlite3_stmt *q = st->q[Q_DEL_FAULT];

        return run(st, q, bind_text(q, 1, key));
}

int store_put_window(struct store *st, const struct store_window *w)
{
        sqlite3_stmt *q = st->q[Q_PUT_WINDOW];
        int rc = sqlite3_bind_int64(q, 1, w->id);

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, w->start);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 3, w->end);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 4, w->ended_at);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 5, w->reason ? w->reason : "");
        return run(st, q, rc);
}

/* ---- loading ---- */

static const char *col_text(sqlite3_stmt *q, int i)
{
        return (const char *)sqlite3_column_text(q, i);
}

/* Runs sql and calls row(q, ud) for each row. */
static int walk(struct store *st, const char *sql, int (*row)(sqlite3_stmt *q, void *ctx), void *ctx)
{
        sqlite3_stmt *q;
        int rc = sqlite3_prepare_v2(st->db, sql, -1, &q, NULL), r = 0;

        if (rc != SQLITE_OK)
                return fail(st, rc);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW)
                if ((r = row(q, ctx)) < 0)
                        break;
        if (r == 0 && rc != SQLITE_DONE)
                r = fail(st, rc);
        sqlite3_finalize(q);
        return r;
}

struct cb {
        void *fn;
        void *ud;
};

static int case_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        struct store_case c = {
                .ref = sqlite3_column_int64(q, 0),
                .fault_key = col_text(q, 1),
                .idem_key = col_text(q, 2),
                .body = col_text(q, 3),
                .prev_ref = sqlite3_column_int64(q, 4),
                .case_id = col_text(q, 5),
                .parked = col_text(q, 6),
                .update_seq = (unsigned)sqlite3_column_int64(q, 7),
                .method = col_text(q, 8),
                .path = col_text(q, 9),
                .sent = sqlite3_column_int(q, 10) != 0,
        };

        if (!c.fault_key || !c.idem_key || !c.body)
                return -EBADMSG;
        return ((int (*)(const struct store_case *, void *))cb->fn)(&c, cb->ud);
}

int store_load_cases(struct store *st, int (*fn)(const struct store_case *c, void *ud), void *ud)
{
        struct cb cb = {(void *)fn, ud};

        return walk(st,
                    "SELECT ref, fault_key, idem_key, body, prev_ref, case_id, parked, update_seq, method, path, sent "
                    "FROM cases "
                    "ORDER BY ref",
                    case_row, &cb);
}

static int update_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        struct store_update u = {
                .seq = sqlite3_column_int64(q, 0),
                .ref = sqlite3_column_int64(q, 1),
                .type = col_text(q, 2),
                .body = col_text(q, 3),
                .idem_key = col_text(q, 4),
                .parked = col_text(q, 5),
        };

        if (!u.type || !u.body || !u.idem_key)
                return -EBADMSG;
        return ((int (*)(const struct store_update *, void *))cb->fn)(&u, cb->ud);
}

int store_load_updates(struct store *st, int (*fn)(const struct store_update *u, void *ud), void *ud)
{
        struct cb cb = {(void *)fn, ud};

        return walk(st, "SELECT seq, ref, type, body, idem_key, parked FROM updates ORDER BY seq", update_row, &cb);
}

static int fault_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        const char *key = col_text(q, 0), *data = col_text(q, 1);

        if (!key || !data)
                return -EBADMSG;
        return ((int (*)(const char *, const char *, void *))cb->fn)(key, data, cb->ud);
}

int store_load_faults(struct store *st, int (*fn)(const char *key, const char *json, void *ud), void *ud)
{
        struct cb cb = {(void *)fn, ud};

        return walk(st, "SELECT key, data FROM faults", fault_row, &cb);
}

static int window_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        struct store_window w = {
                .id = sqlite3_column_int64(q, 0),
                .start = sqlite3_column_int64(q, 1),
                .end = sqlite3_column_int64(q, 2),
                .ended_at = sqlite3_column_int64(q, 3),
                .reason = col_text(q, 4),
        };

        return ((int (*)(const struct store_window *, void *))cb->fn)(&w, cb->ud);
}

int store_load_windows(struct store *st, int (*fn)(const struct store_window *w, void *ud), void *ud)
{
        struct cb cb = {(void *)fn, ud};

        return walk(st, "SELECT id, start, end_at, ended_at, reason FROM maintenance ORDER BY id", window_row, &cb);
}

static int counter_row(sqlite3_stmt *q, void *ctx)
{
        *(int64_t *)ctx = sqlite3_column_int64(q, 0);
        return 0;
}

int store_get_counter(struct store *st, const char *name, int64_t *ret)
{
        char sql[200];
        int64_t v = 0;
        int r;

        if (strspn(name, "abcdefghijklmnopqrstuvwxyz_") != strlen(name) || strlen(name) > 64)
                return -EINVAL;
        snprintf(sql, sizeof sql, "SELECT CAST(v AS INTEGER) FROM meta WHERE k = 'counter.%s'", name);
        r = walk(st, sql, counter_row, &v);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

int store_put_counter(struct store *st, const char *name, int64_t value)
{
        sqlite3_stmt *q = st->q[Q_PUT_META];
        char k[80], v[32];
        int rc;

        snprintf(k, sizeof k, "counter.%s", name);
        snprintf(v, sizeof v, "%lld", (long long)value);
        rc = bind_text(q, 1, k);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(q, 2, v, -1, SQLITE_TRANSIENT);
        return run(st, q, rc);
}

/* ---- history and ledger ---- */

int store_series_id(struct store *st, const char *source, const char *name, const char *object, const char *unit,
                    int64_t *ret_id)
{
        sqlite3_stmt *q = st->q[Q_SERIES_FIND];
        int rc = bind_text(q, 1, source);

        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, name);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 3, object);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
                *ret_id = sqlite3_column_int64(q, 0);
                sqlite3_reset(q);
                sqlite3_clear_bindings(q);
                return 0;
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        if (rc != SQLITE_DONE)
                return fail(st, rc);
        q = st->q[Q_SERIES_ADD];
        rc = bind_text(q, 1, source);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, name);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 3, object);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 4, unit ? unit : "");
        if ((rc = run(st, q, rc)) < 0)
                return rc;
        *ret_id = sqlite3_last_insert_rowid(st->db);
        return 0;
}

int store_put_sample(struct store *st, enum store_tier tier, int64_t series, int64_t t, double min, double avg,
                     double max, int64_t n)
{
        sqlite3_stmt *q = st->q[tier == STORE_TIER_HOUR ? Q_PUT_1H : Q_PUT_1M];
        int rc = sqlite3_bind_int64(q, 1, series);

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, t);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_double(q, 3, min);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_double(q, 4, avg);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_double(q, 5, max);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 6, n);
        return run(st, q, rc);
}

static int run_changes(struct store *st, sqlite3_stmt *q, int rc)
{
        int r = run(st, q, rc);

        return r < 0 ? r : sqlite3_changes(st->db);
}

int store_put_hour_from_minutes(struct store *st, int64_t series, int64_t t, double min, double avg, double max,
                                int64_t n)
{
        sqlite3_stmt *q = st->q[Q_HOUR_FROM_MINUTES];
        int rc = sqlite3_bind_int64(q, 1, series), r;

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, t);
        if ((r = run_changes(st, q, rc)) != 0)
                return r < 0 ? r : 0;
        return store_put_sample(st, STORE_TIER_HOUR, series, t, min, avg, max, n);
}

int store_close_orphan_hours(struct store *st, int64_t before)
{
        sqlite3_stmt *q = st->q[Q_CLOSE_ORPHAN_HOURS];

        return run_changes(st, q, sqlite3_bind_int64(q, 1, before));
}

int store_prune_samples(struct store *st, enum store_tier tier, int64_t before)
{
        sqlite3_stmt *q = st->q[tier == STORE_TIER_HOUR ? Q_PRUNE_1H : Q_PRUNE_1M];

        return run_changes(st, q, sqlite3_bind_int64(q, 1, before));
}

int store_drop_oldest_samples(struct store *st, enum store_tier tier, int n, int64_t keep_from)
{
        sqlite3_stmt *q = st->q[tier == STORE_TIER_HOUR ? Q_OLDEST_1H : Q_OLDEST_1M];
        int rc = sqlite3_bind_int64(q, 1, n > 0 ? n - 1 : 0);

        /* whole minutes (or hours) at a time: rows sharing the oldest times */
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, keep_from);
        return run_changes(st, q, rc);
}

int store_drop_oldest_events(struct store *st, int n, int64_t keep_from)
{
        sqlite3_stmt *q = st->q[Q_OLDEST_EVENTS];
        int rc = sqlite3_bind_int64(q, 1, n);

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, keep_from);
        return run_changes(st, q, rc);
}

int store_release_free_pages(struct store *st)
{
        int rc = sqlite3_exec(st->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : fail(st, rc);
}

void store_set_wal_max(struct store *st, uint64_t bytes)
{
        st->wal_max = bytes;
}

uint64_t store_disk_bytes(const struct store *st)
{
        return file_size(st->path, "") + file_size(st->path, "-wal");
}

static int int_row(sqlite3_stmt *q, void *ctx)
{
        int64_t *v = ctx;

        v[0] = sqlite3_column_int64(q, 0);
        v[1] = sqlite3_column_int64(q, 1);
        v[2] = sqlite3_column_int64(q, 2);
        return 0;
}

int store_used_bytes(struct store *st, uint64_t *ret)
{
        int64_t v[3] = {0, 0, 0};
        int r = walk(st, "SELECT * FROM pragma_page_count, pragma_freelist_count, pragma_page_size", int_row, v);

        if (r < 0)
                return r;
        *ret = (uint64_t)(v[0] - v[1]) * (uint64_t)v[2];
        return 0;
}

static int sample_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        struct store_sample s = {
                .series = sqlite3_column_int64(q, 0),
                .source = col_text(q, 1),
                .name = col_text(q, 2),
                .object = col_text(q, 3),
                .unit = col_text(q, 4),
                .t = sqlite3_column_int64(q, 5),
                .min = sqlite3_column_double(q, 6),
                .avg = sqlite3_column_double(q, 7),
                .max = sqlite3_column_double(q, 8),
                .n = sqlite3_column_int64(q, 9),
                .thresholds = col_text(q, 10),
        };

        if (!s.source || !s.name || !s.object)
                return -EBADMSG;
        return ((int (*)(const struct store_sample *, void *))cb->fn)(&s, cb->ud);
}

int store_load_samples(struct store *st, enum store_tier tier, int64_t since,
                       int (*fn)(const struct store_sample *s, void *ud), void *ud)
{
        struct cb cb = {(void *)fn, ud};
        char sql[400];

        snprintf(sql, sizeof sql,
                 "SELECT s.series, r.source, r.name, r.object, r.unit, s.t, s.min, s.avg, s.max, s.n, r.thresholds "
                 "FROM %s s JOIN series r ON r.id = s.series WHERE s.t >= %lld ORDER BY s.series, s.t",
                 tier == STORE_TIER_HOUR ? "samples_1h" : "samples_1m", (long long)since);
        return walk(st, sql, sample_row, &cb);
}

int store_put_event(struct store *st, int64_t t, const char *kind, const char *object, const char *detail)
{
        sqlite3_stmt *q = st->q[Q_PUT_EVENT];
        int rc = sqlite3_bind_int64(q, 1, t);

        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, kind);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 3, object ? object : "");
        if (rc == SQLITE_OK)
                rc = bind_text(q, 4, detail);
        return run(st, q, rc);
}

int store_prune_events(struct store *st, int64_t before)
{
        sqlite3_stmt *q = st->q[Q_PRUNE_EVENTS];

        return run_changes(st, q, sqlite3_bind_int64(q, 1, before));
}

static int event_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        const char *kind = col_text(q, 1), *object = col_text(q, 2);

        if (!kind || !object)
                return -EBADMSG;
        return ((int (*)(int64_t, const char *, const char *, const char *, void *))cb->fn)(
                sqlite3_column_int64(q, 0), kind, object, col_text(q, 3), cb->ud);
}

int store_load_events(struct store *st, int64_t since,
                      int (*fn)(int64_t t, const char *kind, const char *object, const char *detail, void *ud),
                      void *ud)
{
        struct cb cb = {(void *)fn, ud};
        char sql[200];

        snprintf(sql, sizeof sql, "SELECT t, kind, object, detail FROM events WHERE t >= %lld ORDER BY t, id",
                 (long long)since);
        return walk(st, sql, event_row, &cb);
}

int store_put_outage(struct store *st, const struct store_outage *o)
{
        sqlite3_stmt *q = st->q[Q_PUT_OUTAGE];
        int rc = sqlite3_bind_int64(q, 1, o->start);

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(q, 2, o->end);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(q, 3, o->clean);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 4, o->boot_before);
        if (rc == SQLITE_OK)
                rc = bind_text(q, 5, o->boot_after);
        return run(st, q, rc);
}

static int outage_row(sqlite3_stmt *q, void *ctx)
{
        struct cb *cb = ctx;
        struct store_outage o = {
                .start = sqlite3_column_int64(q, 0),
                .end = sqlite3_column_int64(q, 1),
                .clean = sqlite3_column_int(q, 2) != 0,
                .boot_before = col_text(q, 3),
                .boot_after = col_text(q, 4),
        };

        return ((int (*)(const struct store_outage *, void *))cb->fn)(&o, cb->ud);
}

int store_load_outages(struct store *st, int64_t since, int (*fn)(const struct store_outage *o, void *ud), void *ud)
{
        struct cb cb = {(void *)fn, ud};
        char sql[200];

        snprintf(sql, sizeof sql,
                 "SELECT start, end_at, clean, boot_before, boot_after FROM outages WHERE end_at >= %lld "
                 "ORDER BY start",
                 (long long)since);
        return walk(st, sql, outage_row, &cb);
}

int store_get_text(struct store *st, const char *name, char **ret)
{
        sqlite3_stmt *q = st->q[Q_GET_META];
        int rc = bind_text(q, 1, name), r;

        if (rc == SQLITE_OK)
                rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
                const char *v = (const char *)sqlite3_column_text(q, 0);
                *ret = xstrdup(v ? v : "");
                r = *ret ? 0 : -ENOMEM;
        } else {
                r = rc == SQLITE_DONE ? -ENOENT : fail(st, rc);
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        return r;
}

int store_put_text(struct store *st, const char *name, const char *value)
{
        sqlite3_stmt *q = st->q[Q_PUT_META];
        int rc = bind_text(q, 1, name);

        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, value);
        return run(st, q, rc);
}

int store_series_thresholds(struct store *st, int64_t series, const char *json)
{
        sqlite3_stmt *q = st->q[Q_SERIES_THRESHOLDS];
        int rc = sqlite3_bind_int64(q, 1, series);

        if (rc == SQLITE_OK)
                rc = bind_text(q, 2, json);
        return run(st, q, rc);
}
