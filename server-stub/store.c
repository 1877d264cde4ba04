/* store: see store.h.
 *
 * Schema (user_version 1): "cases" holds the columns the API filters and
 * shows plus the JSON sub-trees as text and the whole request; "updates"
 * holds each update's request body and the level it replaced. Idempotency
 * keys are UNIQUE columns, so a retried POST finds its first answer even
 * after a restart: case keys are global, update keys are per case (an agent
 * numbering its updates per case must not collide with another case).
 * Statements are prepared once and kept (stmt_get/stmt_put): parsing the SQL
 * anew took a fifth of the stub's time per case in the delivery benchmark. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../lib/event.h"
#include "../lib/xalloc.h"

#define STORE_SCHEMA_VERSION 2
#define STMT_CACHE_MAX 64

/* A kept statement, found by the address of its SQL text (every caller
 * passes a string constant; the text is compared too, so an address reused
 * for other text only misses). in_use: handed out and not yet put back, so
 * a nested query of the same text gets a private statement instead. */
struct cached_stmt {
        const char *sql;
        sqlite3_stmt *st;
        bool in_use;
};

struct store {
        sqlite3 *db;
        char err[256];         /* SQLite's message saved before a ROLLBACK replaces it; "" when none */
        int64_t clock_offset;  /* microseconds added to the wall clock (test control) */
        int64_t started_usec;  /* the wall clock when the store was opened */
        int deadman_intervals; /* an agent silent for more check-in intervals is not reporting */
        struct escalation_matrix matrix;
        struct cached_stmt cache[STMT_CACHE_MAX];
        size_t n_cache;
};

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS cases ("
                                 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                 " idempotency_key TEXT NOT NULL UNIQUE,"
                                 " agent_id TEXT NOT NULL,"
                                 " hostname TEXT NOT NULL,"
                                 " fault_key TEXT NOT NULL,"
                                 " level TEXT NOT NULL,"
                                 " rule TEXT NOT NULL,"
                                 " title TEXT NOT NULL,"
                                 " description TEXT NOT NULL,"
                                 " status TEXT NOT NULL DEFAULT 'open',"
                                 " fault_active INTEGER NOT NULL DEFAULT 1,"
                                 " occurrences INTEGER NOT NULL,"
                                 " first_seen TEXT NOT NULL,"
                                 " last_seen TEXT NOT NULL,"
                                 " created_at TEXT NOT NULL,"
                                 " updated_at TEXT NOT NULL,"
                                 " cleared_at TEXT,"
                                 " agent TEXT NOT NULL,"
                                 " readings TEXT NOT NULL,"
                                 " evidence TEXT NOT NULL,"
                                 " request TEXT NOT NULL);"
                                 "CREATE INDEX IF NOT EXISTS cases_agent ON cases(agent_id, fault_key);"
                                 "CREATE TABLE IF NOT EXISTS updates ("
                                 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                 " case_id INTEGER NOT NULL REFERENCES cases(id),"
                                 " idempotency_key TEXT NOT NULL,"
                                 " type TEXT NOT NULL,"
                                 " created_at TEXT NOT NULL,"
                                 " previous_level TEXT,"
                                 " body TEXT NOT NULL,"
                                 " UNIQUE(case_id, idempotency_key));"
                                 /* version 2: the central side (agents, commands, inspections,
                                  * snapshots, the escalation steps reached) */
                                 "CREATE TABLE IF NOT EXISTS agents ("
                                 " id TEXT PRIMARY KEY,"
                                 " hostname TEXT NOT NULL,"
                                 " identity TEXT NOT NULL,"
                                 " first_seen TEXT NOT NULL,"
                                 " last_checkin TEXT NOT NULL,"
                                 " last_checkin_usec INTEGER NOT NULL,"
                                 " agent_time TEXT,"
                                 " interval_s INTEGER NOT NULL,"
                                 " status TEXT NOT NULL,"
                                 " checkins INTEGER NOT NULL,"
                                 " deadman_case INTEGER REFERENCES cases(id));"
                                 "CREATE TABLE IF NOT EXISTS inspections ("
                                 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                 " idempotency_key TEXT NOT NULL UNIQUE,"
                                 " all_agents INTEGER NOT NULL,"
                                 " seconds INTEGER NOT NULL,"
                                 " created_at TEXT NOT NULL);"
                                 "CREATE TABLE IF NOT EXISTS commands ("
                                 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                 " agent_id TEXT NOT NULL,"
                                 " idempotency_key TEXT UNIQUE,"
                                 " type TEXT NOT NULL,"
                                 " seconds INTEGER,"
                                 " reason TEXT,"
                                 " request TEXT,"
                                 " inspection_id INTEGER REFERENCES inspections(id),"
                                 " created_at TEXT NOT NULL,"
                                 " done_at TEXT);"
                                 "CREATE INDEX IF NOT EXISTS commands_agent ON commands(agent_id, done_at);"
                                 "CREATE INDEX IF NOT EXISTS commands_inspection ON commands(inspection_id);"
                                 "CREATE TABLE IF NOT EXISTS snapshots ("
                                 " agent_id TEXT NOT NULL,"
                                 " request TEXT NOT NULL,"
                                 " body TEXT NOT NULL,"
                                 " bytes INTEGER NOT NULL,"
                                 " received_at TEXT NOT NULL,"
                                 " updated_at TEXT NOT NULL,"
                                 " PRIMARY KEY(agent_id, request));"
                                 "CREATE TABLE IF NOT EXISTS escalations ("
                                 " case_id INTEGER NOT NULL REFERENCES cases(id),"
                                 " level TEXT NOT NULL,"
                                 " after_s INTEGER NOT NULL,"
                                 " step TEXT NOT NULL,"
                                 " reached_at TEXT NOT NULL,"
                                 " PRIMARY KEY(case_id, level, after_s));"
                                 "PRAGMA user_version = 2;";

/* The columns every case view reads, in this order (see case_from_row). */
#define CASE_COLUMNS                                                                                    \
        "id, idempotency_key, agent_id, hostname, fault_key, level, rule, title, description, status,"  \
        " fault_active, occurrences, first_seen, last_seen, created_at, updated_at, cleared_at, agent," \
        " readings, evidence, request"

#define UPDATE_COLUMNS "id, case_id, type, created_at, previous_level, body"

/* Request members that have their own place in the case view; the rest of
 * the request is shown as "extra". */
static const char *const case_known_fields[] = {
        "agent",      "fault_key", "level",       "rule",     "title",    "description",
        "first_seen", "last_seen", "occurrences", "readings", "evidence",
};

static int errno_from_sqlite(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

const char *store_errmsg(struct store *s)
{
        if (!s || !s->db)
                return "no database";
        return s->err[0] ? s->err : sqlite3_errmsg(s->db);
}

void store_free(struct store *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n_cache; i++)
                sqlite3_finalize(s->cache[i].st);
        sqlite3_close(s->db);
        free(s);
}

/* Hands out the prepared statement for sql, reset and unbound, to be given
 * back with stmt_put. Returns an SQLite result code. */
static int stmt_get(struct store *s, const char *sql, sqlite3_stmt **ret)
{
        int rc;

        for (size_t i = 0; i < s->n_cache; i++) {
                struct cached_stmt *c = &s->cache[i];

                if (c->sql == sql && !c->in_use && strcmp(sqlite3_sql(c->st), sql) == 0) {
                        c->in_use = true;
                        *ret = c->st;
                        return SQLITE_OK;
                }
        }
        rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
        if (rc == SQLITE_OK && s->n_cache < STMT_CACHE_MAX)
                s->cache[s->n_cache++] = (struct cached_stmt){sql, *ret, true};
        return rc;
}

/* Gives back a statement from stmt_get (NULL is ignored): a kept one is
 * reset, so it holds no read transaction open; any other is finalized. */
static void stmt_put(struct store *s, sqlite3_stmt *st)
{
        if (!st)
                return;
        for (size_t i = 0; i < s->n_cache; i++) {
                if (s->cache[i].st == st) {
                        sqlite3_reset(st);
                        sqlite3_clear_bindings(st);
                        s->cache[i].in_use = false;
                        return;
                }
        }
        sqlite3_finalize(st);
}

size_t store_release_statements(struct store *s)
{
        size_t n = 0;

        for (size_t i = 0; i < s->n_cache; i++) {
                if (s->cache[i].in_use) {
                        stmt_put(s, s->cache[i].st);
                        n++;
                }
        }
        return n;
}

/* Runs one kept statement without parameters or rows (BEGIN, COMMIT). */
static int run_sql(struct store *s, const char *sql)
{
        sqlite3_stmt *st;
        int rc = stmt_get(s, sql, &st);

        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                stmt_put(s, st);
        }
        return errno_from_sqlite(rc);
}

int store_open(const char *path, struct store **ret, char *err, size_t errsize)
{
        struct store *s;
        sqlite3_stmt *st = NULL;
        int version = 0, rc, r;

        s = xcalloc(1, sizeof *s);
        if (!s) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
        if (rc != SQLITE_OK)
                goto fail;
        s->started_usec = time_wall_usec();
        s->deadman_intervals = 3;
        escalation_default(&s->matrix);
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, 5000);
        /* The first statement that reads the file: a file that is not a
         * database fails here, not on the first request. */
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL,
                          NULL, NULL);
        if (rc != SQLITE_OK)
                goto fail;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
        if (rc != SQLITE_OK)
                goto fail;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                goto fail;
        version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        st = NULL;
        if (version > STORE_SCHEMA_VERSION) {
                snprintf(err, errsize, "schema version %d is newer than this program's %d", version,
                         STORE_SCHEMA_VERSION);
                store_free(s);
                return -EPROTO;
        }
        if (version < STORE_SCHEMA_VERSION) {
                rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL);
                if (rc != SQLITE_OK)
                        goto fail;
        }
        *ret = s;
        return 0;

fail:
        r = errno_from_sqlite(rc);
        snprintf(err, errsize, "%s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sqlite3_finalize(st);
        store_free(s);
        return r < 0 ? r : -EIO;
}

/* Prints a JSON sub-tree for a TEXT column; def when j is NULL. Returns a
 * string the caller frees with free(), or NULL on allocation failure. */
static char *print_or(const cJSON *j, const char *def)
{
        return j ? cJSON_PrintUnformatted(j) : xstrdup(def);
}

int64_t store_now_usec(const struct store *s)
{
        return time_wall_usec() + s->clock_offset;
}

int64_t store_clock_offset_usec(const struct store *s)
{
        return s->clock_offset;
}

void store_clock_advance(struct store *s, int64_t usec)
{
        s->clock_offset += usec;
}

void store_set_central(struct store *s, const struct escalation_matrix *m, int deadman_intervals)
{
        s->matrix = *m;
        s->deadman_intervals = deadman_intervals;
}

const struct escalation_matrix *store_matrix(const struct store *s)
{
        return &s->matrix;
}

int store_deadman_intervals(const struct store *s)
{
        return s->deadman_intervals;
}

static void now_rfc3339(struct store *s, char *buf, size_t size)
{
        time_format_rfc3339(store_now_usec(s), buf, size);
}

static int begin(struct store *s)
{
        return run_sql(s, "BEGIN IMMEDIATE");
}

/* Ends the transaction begun by begin(): commits when r >= 0 and returns r,
 * rolls back otherwise. A failed COMMIT is rolled back too, so the next
 * request does not find a transaction left open. */
static int finish(struct store *s, int r)
{
        int c;

        if (r >= 0) {
                c = run_sql(s, "COMMIT");
                if (c == 0)
                        return r;
                r = c;
        }
        snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
        if (!sqlite3_get_autocommit(s->db))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

/* Runs a one-column integer query with ?1 bound to p1 and ?2 to p2 (a
 * statement may use either). Returns 1 with *ret set when there is a row, 0
 * when none, negative errno on failure. */
static int query_id(struct store *s, const char *sql, int64_t p1, const char *p2, int64_t *ret)
{
        sqlite3_stmt *st = NULL;
        int rc, r;

        rc = stmt_get(s, sql, &st);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, p1);
        if (p2)
                sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                r = 1;
        } else
                r = rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
        stmt_put(s, st);
        return r;
}

int store_case_create(struct store *s, const char *key, const struct body_case *c, const cJSON *request,
                      int64_t *ret_id)
{
        static const char insert_sql[] =
                "INSERT INTO cases (idempotency_key, agent_id, hostname, fault_key, level, rule, title,"
                " description, occurrences, first_seen, last_seen, created_at, updated_at, agent, readings,"
                " evidence, request) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14,"
                " ?15, ?16)";
        char *agent = NULL, *readings = NULL, *evidence = NULL, *req = NULL;
        char now[32];
        sqlite3_stmt *st = NULL;
        int64_t id = 0;
        int r, rc;

        s->err[0] = '\0';

        agent = print_or(c->agent, "{}");
        readings = print_or(c->readings, "{}");
        evidence = print_or(c->evidence, "[]");
        req = print_or(request, "{}");
        if (!agent || !readings || !evidence || !req) {
                r = -ENOMEM;
                goto out;
        }
        now_rfc3339(s, now, sizeof now);

        r = begin(s);
        if (r < 0)
                goto out;
        /* Keys are global (the agent makes them unique per fault opening),
         * and a known key answers with its case whatever the body says. */
        r = query_id(s, "SELECT id FROM cases WHERE idempotency_key = ?2", 0, key, &id);
        if (r != 0) {
                r = finish(s, r < 0 ? r : 0);
                goto out;
        }
        rc = stmt_get(s, insert_sql, &st);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, c->agent_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, c->hostname, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, c->fault_key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, rule_level_to_string(c->level), -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, c->rule, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, c->title, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 8, c->description ? c->description : "", -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 9, c->occurrences);
                sqlite3_bind_text(st, 10, c->first_seen, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 11, c->last_seen ? c->last_seen : c->first_seen, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 12, now, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 13, agent, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 14, readings, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 15, evidence, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 16, req, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
        }
        if (rc != SQLITE_DONE) {
                r = finish(s, errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO);
                goto out;
        }
        id = sqlite3_last_insert_rowid(s->db);
        stmt_put(s, st);
        st = NULL;
        r = finish(s, 1);
out:
        stmt_put(s, st);
        free(agent);
        free(readings);
        free(evidence);
        free(req);
        if (r >= 0)
                *ret_id = id;
        return r;
}

/* Adds text (or JSON null for NULL) under name. Returns false on ENOMEM. */
static bool add_text(cJSON *obj, const char *name, sqlite3_stmt *st, int col)
{
        const char *t = (const char *)sqlite3_column_text(st, col);

        return t ? cJSON_AddStringToObject(obj, name, t) != NULL : cJSON_AddNullToObject(obj, name) != NULL;
}

/* Parses a JSON TEXT column and adds it under name. Returns 0, -ENOMEM, or
 * -EIO for text that does not parse (a damaged database). */
static int add_json(cJSON *obj, const char *name, sqlite3_stmt *st, int col)
{
        const char *t = (const char *)sqlite3_column_text(st, col);
        cJSON *j;

        if (!t)
                return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM ? -ENOMEM : -EIO;
        j = cJSON_Parse(t);
        if (!j)
                return -EIO;
        if (!cJSON_AddItemToObject(obj, name, j)) {
                cJSON_Delete(j);
                return -ENOMEM;
        }
        return 0;
}

static bool is_known_case_field(const char *name)
{
        for (size_t i = 0; i < sizeof case_known_fields / sizeof case_known_fields[0]; i++)
                if (strcmp(name, case_known_fields[i]) == 0)
                        return true;
        return false;
}

/* Adds "extra": the request members without a place of their own. */
static int add_extra(cJSON *obj, sqlite3_stmt *st, int col)
{
        const char *t = (const char *)sqlite3_column_text(st, col);
        cJSON *req, *item, *next;

        if (!t)
                return -EIO;
        req = cJSON_Parse(t);
        if (!req)
                return -EIO;
        for (item = req->child; item; item = next) {
                next = item->next;
                if (item->string && is_known_case_field(item->string))
                        cJSON_Delete(cJSON_DetachItemViaPointer(req, item));
        }
        if (!cJSON_AddItemToObject(obj, "extra", req)) {
                cJSON_Delete(req);
                return -ENOMEM;
        }
        return 0;
}

/* Adds the case's "escalation" object (docs/api.md, "Escalation clock"):
 * the steps of its current level, due from created_at, with the time the
 * clock recorded each as reached. */
static int add_escalation(struct store *s, cJSON *c, sqlite3_stmt *row)
{
        const char *level_text = (const char *)sqlite3_column_text(row, 5);
        const char *created = (const char *)sqlite3_column_text(row, 14);
        const char *status = (const char *)sqlite3_column_text(row, 9);
        bool active = sqlite3_column_int(row, 10) != 0;
        int64_t case_id = sqlite3_column_int64(row, 0), created_usec = 0;
        const struct escalation_step *steps = NULL;
        enum rule_level level;
        sqlite3_stmt *st = NULL;
        cJSON *esc, *arr, *d;
        bool running, ok = true;
        const char *next = NULL;
        char due[32], next_buf[32];
        size_t n = 0;
        int rc, r = 0;

        if (!level_text || rule_level_from_string(level_text, &level) < 0 || !created ||
            body_rfc3339_to_usec(created, &created_usec) < 0)
                return -EIO;
        n = s->matrix.n[level];
        steps = s->matrix.steps[level];
        running = active && status && strcmp(status, "open") == 0 && n > 0;
        esc = cJSON_AddObjectToObject(c, "escalation");
        if (!esc || !cJSON_AddStringToObject(esc, "level", level_text) ||
            !cJSON_AddBoolToObject(esc, "running", running) || !(arr = cJSON_AddArrayToObject(esc, "deadlines")))
                return -ENOMEM;
        rc = stmt_get(s, "SELECT reached_at FROM escalations WHERE case_id = ?1 AND level = ?2 AND after_s = ?3", &st);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        for (size_t i = 0; i < n && r == 0; i++) {
                const char *reached = NULL;

                sqlite3_reset(st);
                sqlite3_bind_int64(st, 1, case_id);
                sqlite3_bind_text(st, 2, level_text, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, steps[i].after_s);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        reached = (const char *)sqlite3_column_text(st, 0);
                else if (rc != SQLITE_DONE) {
                        r = errno_from_sqlite(rc);
                        break;
                }
                time_format_rfc3339(created_usec + steps[i].after_s * 1000000, due, sizeof due);
                d = cJSON_CreateObject();
                if (!d || !cJSON_AddItemToArray(arr, d)) {
                        cJSON_Delete(d);
                        r = -ENOMEM;
                        break;
                }
                ok = ok && cJSON_AddNumberToObject(d, "after_s", (double)steps[i].after_s);
                ok = ok && cJSON_AddStringToObject(d, "step", steps[i].step);
                ok = ok && cJSON_AddStringToObject(d, "due_at", due);
                ok = ok && (reached ? cJSON_AddStringToObject(d, "reached_at", reached) != NULL
                                    : cJSON_AddNullToObject(d, "reached_at") != NULL);
                if (!ok)
                        r = -ENOMEM;
                if (!reached && !next && running) {
                        snprintf(next_buf, sizeof next_buf, "%s", due);
                        next = next_buf;
                }
        }
        stmt_put(s, st);
        if (r == 0 &&
            !(next ? cJSON_AddStringToObject(esc, "next_due_at", next) : cJSON_AddNullToObject(esc, "next_due_at")))
                r = -ENOMEM;
        return r;
}

/* Builds a case object from a row of CASE_COLUMNS. */
static int case_from_row(struct store *s, sqlite3_stmt *st, cJSON **ret)
{
        cJSON *c;
        bool ok = true;
        int r = 0;

        c = cJSON_CreateObject();
        if (!c)
                return -ENOMEM;
        ok = ok && cJSON_AddNumberToObject(c, "id", (double)sqlite3_column_int64(st, 0));
        ok = ok && add_text(c, "agent_id", st, 2);
        ok = ok && add_text(c, "hostname", st, 3);
        ok = ok && add_text(c, "fault_key", st, 4);
        ok = ok && add_text(c, "level", st, 5);
        ok = ok && add_text(c, "rule", st, 6);
        ok = ok && add_text(c, "title", st, 7);
        ok = ok && add_text(c, "description", st, 8);
        ok = ok && add_text(c, "status", st, 9);
        ok = ok && cJSON_AddBoolToObject(c, "fault_active", sqlite3_column_int(st, 10) != 0);
        ok = ok && cJSON_AddNumberToObject(c, "occurrences", (double)sqlite3_column_int64(st, 11));
        ok = ok && add_text(c, "first_seen", st, 12);
        ok = ok && add_text(c, "last_seen", st, 13);
        ok = ok && add_text(c, "created_at", st, 14);
        ok = ok && add_text(c, "updated_at", st, 15);
        ok = ok && add_text(c, "cleared_at", st, 16);
        ok = ok && add_text(c, "idempotency_key", st, 1);
        if (!ok)
                r = -ENOMEM;
        if (r == 0)
                r = add_json(c, "agent", st, 17);
        if (r == 0)
                r = add_json(c, "readings", st, 18);
        if (r == 0)
                r = add_json(c, "evidence", st, 19);
        if (r == 0)
                r = add_extra(c, st, 20);
        if (r == 0)
                r = add_escalation(s, c, st);
        if (r < 0) {
                cJSON_Delete(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* Builds an update object from a row of UPDATE_COLUMNS: the request body as
 * sent, with the stub's own fields put first and taking precedence. */
static int update_from_row(sqlite3_stmt *st, cJSON **ret)
{
        const char *t = (const char *)sqlite3_column_text(st, 5);
        static const char *const own[] = {"id", "case_id", "type", "created_at", "previous_level"};
        cJSON *u, *body, *item;
        bool ok = true;

        if (!t)
                return -EIO;
        body = cJSON_Parse(t);
        if (!body)
                return -EIO;
        for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
                cJSON_DeleteItemFromObjectCaseSensitive(body, own[i]);
        u = cJSON_CreateObject();
        if (!u) {
                cJSON_Delete(body);
                return -ENOMEM;
        }
        ok = ok && cJSON_AddNumberToObject(u, "id", (double)sqlite3_column_int64(st, 0));
        ok = ok && cJSON_AddNumberToObject(u, "case_id", (double)sqlite3_column_int64(st, 1));
        ok = ok && add_text(u, "type", st, 2);
        ok = ok && add_text(u, "created_at", st, 3);
        if (ok && sqlite3_column_type(st, 4) != SQLITE_NULL)
                ok = add_text(u, "previous_level", st, 4);
        while (ok && body->child) {
                item = cJSON_DetachItemViaPointer(body, body->child);
                /* cJSON copies the key before it frees the old one. */
                if (!cJSON_AddItemToObject(u, item->string, item)) {
                        cJSON_Delete(item);
                        ok = false;
                }
        }
        cJSON_Delete(body);
        if (!ok) {
                cJSON_Delete(u);
                return -ENOMEM;
        }
        *ret = u;
        return 0;
}

static int add_updates(struct store *s, cJSON *c, int64_t case_id)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr, *u;
        int rc, r = 0;

        arr = cJSON_AddArrayToObject(c, "updates");
        if (!arr)
                return -ENOMEM;
        rc = stmt_get(s, "SELECT " UPDATE_COLUMNS " FROM updates WHERE case_id = ?1 ORDER BY id", &st);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, case_id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = update_from_row(st, &u);
                if (r < 0)
                        goto out;
                cJSON_AddItemToArray(arr, u);
        }
        if (rc != SQLITE_DONE)
                r = errno_from_sqlite(rc);
out:
        stmt_put(s, st);
        return r;
}

int store_case_get(struct store *s, int64_t id, bool with_updates, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *c = NULL;
        int rc, r;

        s->err[0] = '\0';

        rc = stmt_get(s, "SELECT " CASE_COLUMNS " FROM cases WHERE id = ?1", &st);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = case_from_row(s, st, &c);
        else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        stmt_put(s, st);
        if (r == 0 && with_updates)
                r = add_updates(s, c, id);
        if (r < 0) {
                cJSON_Delete(c);
                return r;
        }
        *ret = c;
        return 0;
}

int store_case_list(struct store *s, const struct store_filter *f, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr, *c;
        int rc, r = 0;

        s->err[0] = '\0';

        arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        rc = stmt_get(s,
                      "SELECT " CASE_COLUMNS " FROM cases WHERE (?1 IS NULL OR agent_id = ?1)"
                      " AND (?2 IS NULL OR fault_key = ?2) AND (?3 IS NULL OR status = ?3)"
                      " AND (?4 IS NULL OR fault_active = ?4) ORDER BY id",
                      &st);
        if (rc != SQLITE_OK) {
                r = errno_from_sqlite(rc);
                goto out;
        }
        if (f->agent_id)
                sqlite3_bind_text(st, 1, f->agent_id, -1, SQLITE_STATIC);
        if (f->fault_key)
                sqlite3_bind_text(st, 2, f->fault_key, -1, SQLITE_STATIC);
        if (f->status)
                sqlite3_bind_text(st, 3, f->status, -1, SQLITE_STATIC);
        if (f->fault_active >= 0)
                sqlite3_bind_int(st, 4, f->fault_active);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = case_from_row(s, st, &c);
                if (r < 0)
                        goto out;
                cJSON_AddItemToArray(arr, c);
        }
        if (rc != SQLITE_DONE)
                r = errno_from_sqlite(rc);
out:
        stmt_put(s, st);
        if (r < 0) {
                cJSON_Delete(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

/* Reads the case's current level into buf. Returns 1, 0 for no such case,
 * or negative errno. */
static int case_level(struct store *s, int64_t case_id, char *buf, size_t size)
{
        sqlite3_stmt *st = NULL;
        int rc, r;

        rc = stmt_get(s, "SELECT level FROM cases WHERE id = ?1", &st);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, case_id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(st, 0);
                snprintf(buf, size, "%s", t ? t : "");
                r = 1;
        } else
                r = rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
        stmt_put(s, st);
        return r;
}

int store_update_add(struct store *s, int64_t case_id, const char *key, const struct body_update *u, const cJSON *body,
                     int64_t *ret_id)
{
        /* occurrences and last_seen apply from any update that carries them
         * (a level change usually comes with a fresh count); a second
         * "cleared" keeps the first cleared_at. */
        static const char apply_sql[] =
                "UPDATE cases SET occurrences = COALESCE(?1, occurrences), last_seen = COALESCE(?2, last_seen),"
                " level = COALESCE(?3, level),"
                " fault_active = CASE ?4 WHEN 'cleared' THEN 0 WHEN 'reopened' THEN 1 ELSE fault_active END,"
                " cleared_at = CASE ?4 WHEN 'cleared' THEN COALESCE(cleared_at, ?5) WHEN 'reopened' THEN NULL"
                " ELSE cleared_at END, updated_at = ?5 WHERE id = ?6";
        const char *type = body_update_type_to_string(u->type);
        sqlite3_stmt *st = NULL;
        char now[32], level[16];
        char *text = NULL;
        int64_t id = 0;
        int rc, r;

        s->err[0] = '\0';

        text = cJSON_PrintUnformatted(body);
        if (!text)
                return -ENOMEM;
        now_rfc3339(s, now, sizeof now);

        r = begin(s);
        if (r < 0)
                goto out;
        r = case_level(s, case_id, level, sizeof level);
        if (r <= 0) {
                r = finish(s, r < 0 ? r : -ENOENT);
                goto out;
        }
        r = query_id(s, "SELECT id FROM updates WHERE case_id = ?1 AND idempotency_key = ?2", case_id, key, &id);
        if (r != 0) {
                r = finish(s, r < 0 ? r : 0);
                goto out;
        }

        rc = stmt_get(s,
                      "INSERT INTO updates (case_id, idempotency_key, type, created_at, previous_level,"
                      " body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                      &st);
        if (rc == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, case_id);
                sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
                if (u->type == BODY_UPDATE_LEVEL)
                        sqlite3_bind_text(st, 5, level, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, text, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
        }
        stmt_put(s, st);
        st = NULL;
        if (rc != SQLITE_DONE) {
                r = finish(s, errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO);
                goto out;
        }
        id = sqlite3_last_insert_rowid(s->db);

        rc = stmt_get(s, apply_sql, &st);
        if (rc == SQLITE_OK) {
                if (u->has_occurrences)
                        sqlite3_bind_int64(st, 1, u->occurrences);
                if (u->last_seen)
                        sqlite3_bind_text(st, 2, u->last_seen, -1, SQLITE_STATIC);
                if (u->type == BODY_UPDATE_LEVEL)
                        sqlite3_bind_text(st, 3, rule_level_to_string(u->level), -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 6, case_id);
                rc = sqlite3_step(st);
        }
        if (rc != SQLITE_DONE) {
                r = finish(s, errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO);
                goto out;
        }
        r = finish(s, 1);
out:
        stmt_put(s, st);
        free(text);
        if (r >= 0)
                *ret_id = id;
        return r;
}

int store_update_get(struct store *s, int64_t id, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *u = NULL;
        int rc, r;

        s->err[0] = '\0';

        rc = stmt_get(s, "SELECT " UPDATE_COLUMNS " FROM updates WHERE id = ?1", &st);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = update_from_row(st, &u);
        else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        stmt_put(s, st);
        if (r < 0)
                return r;
        *ret = u;
        return 0;
}

/* ---- the central side ---- */

#define AGENT_COLUMNS                                                                                  \
        "id, hostname, identity, first_seen, last_checkin, last_checkin_usec, agent_time, interval_s," \
        " status, checkins, deadman_case"

#define COMMAND_COLUMNS "id, agent_id, type, seconds, reason, request, inspection_id, created_at, done_at"

static int prepare(struct store *s, const char *sql, sqlite3_stmt **ret)
{
        return errno_from_sqlite(stmt_get(s, sql, ret));
}

/* Runs a statement to its end (no rows expected). Returns 0 or -errno. */
static int run(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : (errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO);
}

/* Builds an agent view from a row of AGENT_COLUMNS. */
static int agent_from_row(struct store *s, sqlite3_stmt *st, cJSON **ret)
{
        int64_t last = sqlite3_column_int64(st, 5), interval = sqlite3_column_int64(st, 7);
        int64_t since = last > s->started_usec ? last : s->started_usec;
        bool deadman = sqlite3_column_type(st, 10) != SQLITE_NULL;
        bool reporting = !deadman && store_now_usec(s) - since <= s->deadman_intervals * interval * 1000000;
        cJSON *a;
        bool ok = true;
        int r = 0;

        a = cJSON_CreateObject();
        if (!a)
                return -ENOMEM;
        ok = ok && add_text(a, "id", st, 0);
        ok = ok && add_text(a, "hostname", st, 1);
        ok = ok && add_text(a, "first_seen", st, 3);
        ok = ok && add_text(a, "last_checkin", st, 4);
        ok = ok && add_text(a, "agent_time", st, 6);
        ok = ok && cJSON_AddNumberToObject(a, "interval_s", (double)interval);
        ok = ok && cJSON_AddNumberToObject(a, "checkins", (double)sqlite3_column_int64(st, 9));
        ok = ok && cJSON_AddBoolToObject(a, "reporting", reporting);
        if (ok && deadman)
                ok = cJSON_AddNumberToObject(a, "not_reporting_case", (double)sqlite3_column_int64(st, 10));
        else if (ok)
                ok = cJSON_AddNullToObject(a, "not_reporting_case");
        if (!ok)
                r = -ENOMEM;
        if (r == 0)
                r = add_json(a, "agent", st, 2);
        if (r == 0)
                r = add_json(a, "status", st, 8);
        if (r < 0) {
                cJSON_Delete(a);
                return r;
        }
        *ret = a;
        return 0;
}

/* Builds a command from a row of COMMAND_COLUMNS: as the check-in answer
 * lists it, or (full) with its agent, inspection and times too. */
static int command_from_row(sqlite3_stmt *st, bool full, cJSON **ret)
{
        char id[24];
        cJSON *c;
        bool ok = true;

        c = cJSON_CreateObject();
        if (!c)
                return -ENOMEM;
        snprintf(id, sizeof id, "%lld", (long long)sqlite3_column_int64(st, 0));
        ok = ok && cJSON_AddStringToObject(c, "id", id);
        ok = ok && add_text(c, "type", st, 2);
        if (ok && sqlite3_column_type(st, 5) != SQLITE_NULL)
                ok = add_text(c, "request", st, 5);
        if (ok && sqlite3_column_type(st, 3) != SQLITE_NULL)
                ok = cJSON_AddNumberToObject(c, "seconds", (double)sqlite3_column_int64(st, 3));
        if (ok && sqlite3_column_type(st, 4) != SQLITE_NULL)
                ok = add_text(c, "reason", st, 4);
        if (ok && full) {
                ok = ok && add_text(c, "agent_id", st, 1);
                if (sqlite3_column_type(st, 6) != SQLITE_NULL)
                        ok = ok && cJSON_AddNumberToObject(c, "inspection", (double)sqlite3_column_int64(st, 6));
                else
                        ok = ok && cJSON_AddNullToObject(c, "inspection");
                ok = ok && add_text(c, "created_at", st, 7);
                ok = ok && add_text(c, "done_at", st, 8);
        }
        if (!ok) {
                cJSON_Delete(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* Appends every row of st (bound already) to arr through build. */
static int rows_to_array(struct store *s, sqlite3_stmt *st, cJSON *arr,
                         int (*build)(struct store *, sqlite3_stmt *, cJSON **))
{
        cJSON *x;
        int rc, r;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = build(s, st, &x);
                if (r < 0)
                        return r;
                if (!cJSON_AddItemToArray(arr, x)) {
                        cJSON_Delete(x);
                        return -ENOMEM;
                }
        }
        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
}

static int command_short(struct store *s, sqlite3_stmt *st, cJSON **ret)
{
        (void)s;
        return command_from_row(st, false, ret);
}

static int command_full(struct store *s, sqlite3_stmt *st, cJSON **ret)
{
        (void)s;
        return command_from_row(st, true, ret);
}

int store_agent_checkin(struct store *s, const char *agent_id, const struct body_checkin *c, int64_t *ret_deadman_case)
{
        /* Identity, interval and status keep their last value when a check-in
         * leaves them out; the host name falls back to the agent id. */
        static const char upsert_sql[] =
                "INSERT INTO agents (id, hostname, identity, first_seen, last_checkin, last_checkin_usec, agent_time,"
                " interval_s, status, checkins) VALUES (?1, COALESCE(?2, ?1), COALESCE(?3, '{}'), ?4, ?4, ?5, ?6,"
                " COALESCE(?7, 60), COALESCE(?8, '{}'), 1)"
                " ON CONFLICT(id) DO UPDATE SET hostname = COALESCE(?2, hostname), identity = COALESCE(?3, identity),"
                " last_checkin = ?4, last_checkin_usec = ?5, agent_time = ?6, interval_s = COALESCE(?7, interval_s),"
                " status = COALESCE(?8, status), checkins = checkins + 1";
        char *identity = NULL, *status = NULL;
        sqlite3_stmt *st = NULL;
        int64_t deadman = 0;
        char now[32];
        int r;

        s->err[0] = '\0';
        if ((c->agent && !(identity = cJSON_PrintUnformatted(c->agent))) ||
            (c->status && !(status = cJSON_PrintUnformatted(c->status)))) {
                r = -ENOMEM;
                goto out;
        }
        now_rfc3339(s, now, sizeof now);
        r = begin(s);
        if (r < 0)
                goto out;
        r = prepare(s, upsert_sql, &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                if (c->hostname)
                        sqlite3_bind_text(st, 2, c->hostname, -1, SQLITE_STATIC);
                if (identity)
                        sqlite3_bind_text(st, 3, identity, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 5, store_now_usec(s));
                if (c->time)
                        sqlite3_bind_text(st, 6, c->time, -1, SQLITE_STATIC);
                if (c->interval_s > 0)
                        sqlite3_bind_int64(st, 7, c->interval_s);
                if (status)
                        sqlite3_bind_text(st, 8, status, -1, SQLITE_STATIC);
                r = run(st);
        }
        stmt_put(s, st);
        st = NULL;
        if (r == 0 && c->n_done > 0) {
                r = prepare(s, "UPDATE commands SET done_at = ?1 WHERE id = ?2 AND agent_id = ?3 AND done_at IS NULL",
                            &st);
                for (size_t i = 0; r == 0 && i < c->n_done; i++) {
                        sqlite3_reset(st);
                        sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(st, 2, c->done[i]);
                        sqlite3_bind_text(st, 3, agent_id, -1, SQLITE_STATIC);
                        r = run(st);
                }
                stmt_put(s, st);
                st = NULL;
        }
        if (r == 0) {
                r = query_id(s, "SELECT deadman_case FROM agents WHERE id = ?2 AND deadman_case IS NOT NULL", 0,
                             agent_id, &deadman);
                r = r < 0 ? r : 0;
        }
        r = finish(s, r);
out:
        free(identity);
        free(status);
        if (r >= 0)
                *ret_deadman_case = deadman;
        return r;
}

static int agent_set_deadman(struct store *s, const char *agent_id, int64_t case_id)
{
        sqlite3_stmt *st = NULL;
        int r;

        s->err[0] = '\0';
        r = prepare(s, "UPDATE agents SET deadman_case = ?1 WHERE id = ?2", &st);
        if (r == 0) {
                if (case_id > 0)
                        sqlite3_bind_int64(st, 1, case_id);
                sqlite3_bind_text(st, 2, agent_id, -1, SQLITE_STATIC);
                r = run(st);
        }
        stmt_put(s, st);
        return r;
}

int store_agent_clear_deadman(struct store *s, const char *agent_id)
{
        return agent_set_deadman(s, agent_id, 0);
}

int store_agent_set_deadman(struct store *s, const char *agent_id, int64_t case_id)
{
        return agent_set_deadman(s, agent_id, case_id);
}

int store_agent_pending(struct store *s, const char *agent_id, size_t max, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr;
        int r;

        s->err[0] = '\0';
        arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        r = prepare(s,
                    "SELECT " COMMAND_COLUMNS " FROM commands WHERE agent_id = ?1 AND done_at IS NULL ORDER BY id"
                    " LIMIT ?2",
                    &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, (int64_t)max);
                r = rows_to_array(s, st, arr, command_short);
        }
        stmt_put(s, st);
        if (r < 0) {
                cJSON_Delete(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

/* Runs an agent query with ?1 bound to text p1 (when not NULL) and ?2..?4
 * to now, the store's start and the deadman intervals (a statement uses
 * those it needs; binding one it lacks is a harmless SQLITE_RANGE); returns
 * the array of views. */
static int agent_query(struct store *s, const char *sql, const char *p1, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr;
        int r;

        s->err[0] = '\0';
        arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        r = prepare(s, sql, &st);
        if (r == 0) {
                if (p1)
                        sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, store_now_usec(s));
                sqlite3_bind_int64(st, 3, s->started_usec);
                sqlite3_bind_int64(st, 4, s->deadman_intervals);
                r = rows_to_array(s, st, arr, agent_from_row);
        }
        stmt_put(s, st);
        if (r < 0) {
                cJSON_Delete(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

int store_agent_list(struct store *s, cJSON **ret)
{
        return agent_query(s, "SELECT " AGENT_COLUMNS " FROM agents ORDER BY id", NULL, ret);
}

int store_agent_overdue(struct store *s, cJSON **ret)
{
        return agent_query(s,
                           "SELECT " AGENT_COLUMNS " FROM agents WHERE deadman_case IS NULL AND"
                           " ?2 - MAX(last_checkin_usec, ?3) > ?4 * interval_s * 1000000 ORDER BY id",
                           NULL, ret);
}

int store_agent_get(struct store *s, const char *agent_id, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr = NULL, *a = NULL, *sub;
        int r;

        r = agent_query(s, "SELECT " AGENT_COLUMNS " FROM agents WHERE id = ?1", agent_id, &arr);
        if (r < 0)
                return r;
        if (!arr->child) {
                cJSON_Delete(arr);
                return -ENOENT;
        }
        a = cJSON_DetachItemViaPointer(arr, arr->child);
        cJSON_Delete(arr);

        sub = cJSON_AddArrayToObject(a, "commands");
        r = sub ? prepare(s, "SELECT " COMMAND_COLUMNS " FROM commands WHERE agent_id = ?1 ORDER BY id", &st) : -ENOMEM;
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                r = rows_to_array(s, st, sub, command_full);
        }
        stmt_put(s, st);
        st = NULL;
        if (r == 0) {
                sub = cJSON_AddArrayToObject(a, "snapshots");
                r = sub ? prepare(s,
                                  "SELECT request, bytes, received_at, updated_at FROM snapshots WHERE agent_id = ?1"
                                  " ORDER BY received_at, request",
                                  &st)
                        : -ENOMEM;
        }
        if (r == 0) {
                int rc;

                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                        cJSON *x = cJSON_CreateObject();
                        bool ok = x && cJSON_AddItemToArray(sub, x);

                        if (x && !ok)
                                cJSON_Delete(x);
                        ok = ok && add_text(x, "request", st, 0);
                        ok = ok && cJSON_AddNumberToObject(x, "bytes", (double)sqlite3_column_int64(st, 1));
                        ok = ok && add_text(x, "received_at", st, 2);
                        ok = ok && add_text(x, "updated_at", st, 3);
                        if (!ok)
                                r = -ENOMEM;
                }
                if (r == 0 && rc != SQLITE_DONE)
                        r = errno_from_sqlite(rc);
        }
        stmt_put(s, st);
        if (r < 0) {
                cJSON_Delete(a);
                return r;
        }
        *ret = a;
        return 0;
}

/* Inserts one command (inside the caller's transaction). */
static int insert_command(struct store *s, const char *agent_id, const char *key, enum body_command_type type,
                          int64_t seconds, const char *reason, const char *request, int64_t inspection_id,
                          const char *now)
{
        sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT INTO commands (agent_id, idempotency_key, type, seconds, reason, request, inspection_id,"
                    " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                if (key)
                        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, body_command_type_to_string(type), -1, SQLITE_STATIC);
                if (seconds > 0)
                        sqlite3_bind_int64(st, 4, seconds);
                if (reason)
                        sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
                if (request)
                        sqlite3_bind_text(st, 6, request, -1, SQLITE_STATIC);
                if (inspection_id > 0)
                        sqlite3_bind_int64(st, 7, inspection_id);
                sqlite3_bind_text(st, 8, now, -1, SQLITE_STATIC);
                r = run(st);
        }
        stmt_put(s, st);
        return r;
}

int store_command_add(struct store *s, const char *agent_id, const char *key, const struct body_command *c,
                      int64_t *ret_id)
{
        char now[32];
        int64_t id = 0;
        int r;

        s->err[0] = '\0';
        now_rfc3339(s, now, sizeof now);
        r = begin(s);
        if (r < 0)
                return r;
        r = query_id(s, "SELECT id FROM commands WHERE idempotency_key = ?2", 0, key, &id);
        if (r != 0) {
                r = finish(s, r < 0 ? r : 0);
                goto out;
        }
        r = insert_command(s, agent_id, key, c->type, c->seconds, c->reason, NULL, 0, now);
        id = sqlite3_last_insert_rowid(s->db);
        r = finish(s, r < 0 ? r : 1);
out:
        if (r >= 0)
                *ret_id = id;
        return r;
}

int store_command_get(struct store *s, int64_t id, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr;
        int r;

        s->err[0] = '\0';
        arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        r = prepare(s, "SELECT " COMMAND_COLUMNS " FROM commands WHERE id = ?1", &st);
        if (r == 0) {
                sqlite3_bind_int64(st, 1, id);
                r = rows_to_array(s, st, arr, command_full);
        }
        stmt_put(s, st);
        if (r == 0 && !arr->child)
                r = -ENOENT;
        if (r < 0) {
                cJSON_Delete(arr);
                return r;
        }
        *ret = cJSON_DetachItemViaPointer(arr, arr->child);
        cJSON_Delete(arr);
        return 0;
}

int store_inspection_create(struct store *s, const char *key, const struct body_inspection *in, int64_t *ret_id)
{
        sqlite3_stmt *st = NULL, *ids = NULL;
        char now[32], request[24];
        int64_t id = 0;
        const cJSON *a;
        int r, rc;

        s->err[0] = '\0';
        now_rfc3339(s, now, sizeof now);
        r = begin(s);
        if (r < 0)
                return r;
        r = query_id(s, "SELECT id FROM inspections WHERE idempotency_key = ?2", 0, key, &id);
        if (r != 0) {
                r = finish(s, r < 0 ? r : 0);
                goto out;
        }
        r = prepare(
                s, "INSERT INTO inspections (idempotency_key, all_agents, seconds, created_at) VALUES (?1, ?2, ?3, ?4)",
                &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 2, in->all);
                sqlite3_bind_int64(st, 3, in->seconds);
                sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
                r = run(st);
        }
        stmt_put(s, st);
        if (r < 0)
                goto fail;
        id = sqlite3_last_insert_rowid(s->db);
        snprintf(request, sizeof request, "%lld", (long long)id);
        if (in->all) {
                r = prepare(s, "SELECT id FROM agents ORDER BY id", &ids);
                while (r == 0 && (rc = sqlite3_step(ids)) == SQLITE_ROW)
                        r = insert_command(s, (const char *)sqlite3_column_text(ids, 0), NULL, BODY_COMMAND_INSPECT,
                                           in->seconds, NULL, request, id, now);
                if (r == 0 && rc != SQLITE_DONE)
                        r = errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO;
                stmt_put(s, ids);
        } else {
                cJSON_ArrayForEach(a, in->agents)
                {
                        r = insert_command(s, a->valuestring, NULL, BODY_COMMAND_INSPECT, in->seconds, NULL, request,
                                           id, now);
                        if (r < 0)
                                break;
                }
        }
fail:
        r = finish(s, r < 0 ? r : 1);
out:
        if (r >= 0)
                *ret_id = id;
        return r;
}

/* Builds an inspection view from a row of (id, seconds, created_at, all_agents). */
static int inspection_from_row(struct store *s, sqlite3_stmt *row, cJSON **ret)
{
        static const char per_agent_sql[] =
                "SELECT c.agent_id, c.id, c.done_at, n.received_at, n.updated_at, n.bytes,"
                " EXISTS(SELECT 1 FROM agents a WHERE a.id = c.agent_id)"
                " FROM commands c LEFT JOIN snapshots n ON n.agent_id = c.agent_id AND n.request = c.request"
                " WHERE c.inspection_id = ?1 ORDER BY c.id";
        int64_t id = sqlite3_column_int64(row, 0);
        sqlite3_stmt *st = NULL;
        cJSON *v, *agents, *per, *x;
        size_t n = 0, received = 0;
        bool ok = true;
        char cmd[24];
        int rc, r;

        v = cJSON_CreateObject();
        if (!v)
                return -ENOMEM;
        ok = ok && cJSON_AddNumberToObject(v, "id", (double)id);
        ok = ok && cJSON_AddNumberToObject(v, "seconds", (double)sqlite3_column_int64(row, 1));
        ok = ok && add_text(v, "created_at", row, 2);
        ok = ok && cJSON_AddBoolToObject(v, "all", sqlite3_column_int(row, 3) != 0);
        ok = ok && (agents = cJSON_AddArrayToObject(v, "agents")) != NULL;
        ok = ok && (per = cJSON_AddArrayToObject(v, "status")) != NULL;
        if (!ok) {
                cJSON_Delete(v);
                return -ENOMEM;
        }
        r = prepare(s, per_agent_sql, &st);
        if (r == 0) {
                sqlite3_bind_int64(st, 1, id);
                while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                        bool got = sqlite3_column_type(st, 3) != SQLITE_NULL;

                        n++;
                        received += got;
                        snprintf(cmd, sizeof cmd, "%lld", (long long)sqlite3_column_int64(st, 1));
                        x = cJSON_CreateObject();
                        ok = x && cJSON_AddItemToArray(per, x);
                        if (x && !ok)
                                cJSON_Delete(x);
                        if (ok) {
                                cJSON *name = cJSON_CreateString((const char *)sqlite3_column_text(st, 0));

                                ok = name && cJSON_AddItemToArray(agents, name);
                                if (name && !ok)
                                        cJSON_Delete(name);
                        }
                        ok = ok && add_text(x, "agent_id", st, 0);
                        ok = ok && cJSON_AddBoolToObject(x, "known", sqlite3_column_int(st, 6) != 0);
                        ok = ok && cJSON_AddStringToObject(x, "command", cmd);
                        ok = ok && add_text(x, "command_done_at", st, 2);
                        ok = ok && cJSON_AddBoolToObject(x, "snapshot", got);
                        ok = ok && add_text(x, "snapshot_at", st, 3);
                        ok = ok && add_text(x, "snapshot_updated_at", st, 4);
                        if (ok && got)
                                ok = cJSON_AddNumberToObject(x, "snapshot_bytes", (double)sqlite3_column_int64(st, 5));
                        else if (ok)
                                ok = cJSON_AddNullToObject(x, "snapshot_bytes");
                        if (!ok)
                                r = -ENOMEM;
                }
                if (r == 0 && rc != SQLITE_DONE)
                        r = errno_from_sqlite(rc);
        }
        stmt_put(s, st);
        if (r == 0 && (!cJSON_AddNumberToObject(v, "snapshots_received", (double)received) ||
                       !cJSON_AddBoolToObject(v, "complete", received == n)))
                r = -ENOMEM;
        if (r < 0) {
                cJSON_Delete(v);
                return r;
        }
        *ret = v;
        return 0;
}

static int inspection_query(struct store *s, int64_t id, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *arr;
        int r;

        s->err[0] = '\0';
        arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        r = prepare(s,
                    "SELECT id, seconds, created_at, all_agents FROM inspections WHERE ?1 = 0 OR id = ?1 ORDER BY id",
                    &st);
        if (r == 0) {
                sqlite3_bind_int64(st, 1, id);
                r = rows_to_array(s, st, arr, inspection_from_row);
        }
        stmt_put(s, st);
        if (r < 0) {
                cJSON_Delete(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

int store_inspection_list(struct store *s, cJSON **ret)
{
        return inspection_query(s, 0, ret);
}

int store_inspection_get(struct store *s, int64_t id, cJSON **ret)
{
        cJSON *arr;
        int r = inspection_query(s, id, &arr);

        if (r < 0)
                return r;
        if (!arr->child) {
                cJSON_Delete(arr);
                return -ENOENT;
        }
        *ret = cJSON_DetachItemViaPointer(arr, arr->child);
        cJSON_Delete(arr);
        return 0;
}

int store_snapshot_put(struct store *s, const char *agent_id, const char *request, const char *text, size_t len,
                       cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *v = NULL;
        char now[32];
        int r, created = 0;

        s->err[0] = '\0';
        now_rfc3339(s, now, sizeof now);
        r = begin(s);
        if (r < 0)
                return r;
        r = prepare(s, "SELECT 1 FROM snapshots WHERE agent_id = ?1 AND request = ?2", &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, request, -1, SQLITE_STATIC);
                int rc = sqlite3_step(st);
                created = rc == SQLITE_DONE;
                if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                        r = errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO;
        }
        stmt_put(s, st);
        st = NULL;
        if (r == 0)
                r = prepare(s,
                            "INSERT INTO snapshots (agent_id, request, body, bytes, received_at, updated_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(agent_id, request) DO UPDATE SET"
                            " body = ?3, bytes = ?4, updated_at = ?5",
                            &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, request, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, text, (int)len, SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, (int64_t)len);
                sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
                r = run(st);
        }
        stmt_put(s, st);
        st = NULL;
        r = finish(s, r);
        if (r < 0)
                return r;
        r = prepare(s,
                    "SELECT agent_id, request, bytes, received_at, updated_at FROM snapshots WHERE agent_id = ?1 AND "
                    "request = ?2",
                    &st);
        if (r == 0) {
                sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, request, -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_ROW)
                        r = -EIO;
        }
        if (r == 0) {
                bool ok = (v = cJSON_CreateObject()) != NULL;

                ok = ok && add_text(v, "agent_id", st, 0);
                ok = ok && add_text(v, "request", st, 1);
                ok = ok && cJSON_AddNumberToObject(v, "bytes", (double)sqlite3_column_int64(st, 2));
                ok = ok && add_text(v, "received_at", st, 3);
                ok = ok && add_text(v, "updated_at", st, 4);
                ok = ok && cJSON_AddBoolToObject(v, "replaced", !created);
                if (!ok)
                        r = -ENOMEM;
        }
        stmt_put(s, st);
        if (r < 0) {
                cJSON_Delete(v);
                return r;
        }
        *ret = v;
        return created;
}

int store_snapshot_get(struct store *s, const char *agent_id, const char *request, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *j = NULL;
        int r, rc;

        s->err[0] = '\0';
        r = prepare(s, "SELECT body FROM snapshots WHERE agent_id = ?1 AND request = ?2", &st);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, request, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(st, 0);
                int n = sqlite3_column_bytes(st, 0);

                j = t ? cJSON_ParseWithLength(t, (size_t)n) : NULL;
                r = j ? 0 : -EIO;
        } else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        stmt_put(s, st);
        if (r < 0)
                return r;
        *ret = j;
        return 0;
}

int store_escalation_tick(struct store *s, store_reached_fn reached, void *arg)
{
        sqlite3_stmt *cases = NULL, *ins = NULL;
        int64_t now = store_now_usec(s);
        char now_text[32];
        int r, rc, count = 0;

        s->err[0] = '\0';
        time_format_rfc3339(now, now_text, sizeof now_text);
        r = begin(s);
        if (r < 0)
                return r;
        r = prepare(s, "SELECT id, level, created_at, title FROM cases WHERE status = 'open' AND fault_active = 1",
                    &cases);
        if (r == 0)
                r = prepare(s,
                            "INSERT OR IGNORE INTO escalations (case_id, level, after_s, step, reached_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5)",
                            &ins);
        while (r == 0 && (rc = sqlite3_step(cases)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(cases, 0), created;
                const char *level_text = (const char *)sqlite3_column_text(cases, 1);
                const char *created_text = (const char *)sqlite3_column_text(cases, 2);
                const char *title = (const char *)sqlite3_column_text(cases, 3);
                enum rule_level level;

                if (!level_text || rule_level_from_string(level_text, &level) < 0 || !created_text ||
                    body_rfc3339_to_usec(created_text, &created) < 0)
                        continue;
                for (size_t i = 0; r == 0 && i < s->matrix.n[level]; i++) {
                        const struct escalation_step *step = &s->matrix.steps[level][i];

                        if (created + step->after_s * 1000000 > now)
                                break;
                        sqlite3_reset(ins);
                        sqlite3_bind_int64(ins, 1, id);
                        sqlite3_bind_text(ins, 2, level_text, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(ins, 3, step->after_s);
                        sqlite3_bind_text(ins, 4, step->step, -1, SQLITE_STATIC);
                        sqlite3_bind_text(ins, 5, now_text, -1, SQLITE_STATIC);
                        r = run(ins);
                        if (r == 0 && sqlite3_changes(s->db) > 0) {
                                count++;
                                if (reached)
                                        reached(arg, id, level_text, step, title ? title : "");
                        }
                }
        }
        if (r == 0 && rc != SQLITE_DONE)
                r = errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO;
        stmt_put(s, cases);
        stmt_put(s, ins);
        r = finish(s, r);
        return r < 0 ? r : count;
}
