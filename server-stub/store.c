/* store: see store.h.
 *
 * Schema (user_version 1): "cases" holds the columns the API filters and
 * shows plus the JSON sub-trees as text and the whole request; "updates"
 * holds each update's request body and the level it replaced. Idempotency
 * keys are UNIQUE columns, so a retried POST finds its first answer even
 * after a restart: case keys are global, update keys are per case (an agent
 * numbering its updates per case must not collide with another case).
 * Statements are prepared per call: the stub serves tests and demos, and
 * simple code matters more here than the microseconds a statement cache saves. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../lib/event.h"
#include "../lib/xalloc.h"

#define STORE_SCHEMA_VERSION 1

struct store {
        sqlite3 *db;
        char err[256]; /* SQLite's message saved before a ROLLBACK replaces it; "" when none */
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
                                 "PRAGMA user_version = 1;";

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
        sqlite3_close(s->db);
        free(s);
}

static int exec(struct store *s, const char *sql)
{
        return errno_from_sqlite(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
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

static void now_rfc3339(char *buf, size_t size)
{
        time_format_rfc3339(time_wall_usec(), buf, size);
}

static int begin(struct store *s)
{
        return exec(s, "BEGIN IMMEDIATE");
}

/* Ends the transaction begun by begin(): commits when r >= 0 and returns r,
 * rolls back otherwise. A failed COMMIT is rolled back too, so the next
 * request does not find a transaction left open. */
static int finish(struct store *s, int r)
{
        int c;

        if (r >= 0) {
                c = exec(s, "COMMIT");
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

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
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
        sqlite3_finalize(st);
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
        now_rfc3339(now, sizeof now);

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
        rc = sqlite3_prepare_v2(s->db, insert_sql, -1, &st, NULL);
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
        sqlite3_finalize(st);
        st = NULL;
        r = finish(s, 1);
out:
        sqlite3_finalize(st);
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

/* Builds a case object from a row of CASE_COLUMNS. */
static int case_from_row(sqlite3_stmt *st, cJSON **ret)
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
        rc = sqlite3_prepare_v2(s->db, "SELECT " UPDATE_COLUMNS " FROM updates WHERE case_id = ?1 ORDER BY id", -1, &st,
                                NULL);
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
        sqlite3_finalize(st);
        return r;
}

int store_case_get(struct store *s, int64_t id, bool with_updates, cJSON **ret)
{
        sqlite3_stmt *st = NULL;
        cJSON *c = NULL;
        int rc, r;

        s->err[0] = '\0';

        rc = sqlite3_prepare_v2(s->db, "SELECT " CASE_COLUMNS " FROM cases WHERE id = ?1", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = case_from_row(st, &c);
        else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        sqlite3_finalize(st);
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
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT " CASE_COLUMNS " FROM cases WHERE (?1 IS NULL OR agent_id = ?1)"
                                " AND (?2 IS NULL OR fault_key = ?2) AND (?3 IS NULL OR status = ?3)"
                                " AND (?4 IS NULL OR fault_active = ?4) ORDER BY id",
                                -1, &st, NULL);
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
                r = case_from_row(st, &c);
                if (r < 0)
                        goto out;
                cJSON_AddItemToArray(arr, c);
        }
        if (rc != SQLITE_DONE)
                r = errno_from_sqlite(rc);
out:
        sqlite3_finalize(st);
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

        rc = sqlite3_prepare_v2(s->db, "SELECT level FROM cases WHERE id = ?1", -1, &st, NULL);
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
        sqlite3_finalize(st);
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
        now_rfc3339(now, sizeof now);

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

        rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO updates (case_id, idempotency_key, type, created_at, previous_level,"
                                " body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                -1, &st, NULL);
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
        sqlite3_finalize(st);
        st = NULL;
        if (rc != SQLITE_DONE) {
                r = finish(s, errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO);
                goto out;
        }
        id = sqlite3_last_insert_rowid(s->db);

        rc = sqlite3_prepare_v2(s->db, apply_sql, -1, &st, NULL);
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
        sqlite3_finalize(st);
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

        rc = sqlite3_prepare_v2(s->db, "SELECT " UPDATE_COLUMNS " FROM updates WHERE id = ?1", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(rc);
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = update_from_row(st, &u);
        else
                r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
        sqlite3_finalize(st);
        if (r < 0)
                return r;
        *ret = u;
        return 0;
}
