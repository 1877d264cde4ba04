/* agent: see agent.h.
 *
 * Lifetime: agent_new builds nothing that touches the system besides reading
 * files; agent_start brings pieces up in the order loop → signals → sender →
 * faults → rule engine → control socket → collectors, and agent_free takes
 * them down in exactly the reverse order. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "../collectors/collector.h"
#include "../lib/event.h"
#include "../lib/event_ring.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../rules/conf.h"
#include "../rules/rules.h"
#include "checkin.h"
#include "control.h"
#include "faults.h"
#include "history.h"
#include "identity.h"
#include "ledger.h"
#include "loop.h"
#include "maintenance.h"
#include "outbox.h"
#include "sender.h"
#include "snapshot.h"
#include "store.h"

#define AGENT_TICK_USEC 250000 /* how often pending "for" durations are checked */
#define TOKEN_MAX 4096
#define UNMATCHED_KEPT 100 /* recent events no rule matched, for weibaoctl events */

struct running_collector {
        const struct collector_ops *ops;
        void *state;
        bool started;
        char *error; /* why it is not running, or NULL */
};

struct agent {
        char *config_path;
        struct config *config;
        struct identity *id;
        struct loop *loop;
        struct sender *sender;
        struct store *store;
        struct outbox *outbox;
        struct faults *faults;
        struct maintenance *maintenance;
        struct history *history;
        struct ledger *ledger;
        struct checkin *checkin;
        struct rule_engine *engine;
        struct control *control;
        struct running_collector *collectors;
        size_t n_collectors;
        struct loop_source *tick;
        struct loop_source *watchdog; /* pings systemd's watchdog from the loop, when it asks */
        uint64_t watchdog_usec;
        bool allow_stall;             /* WEIBAO_TEST_STALL=1: the "stall" command exists (watchdog tests) */
        struct event_ring *unmatched; /* the last events no rule matched */
        int64_t started_wall;
        int64_t rules_loaded_wall;
        uint64_t reloads, reload_failures;
        bool started;
};

/* ---- events ---- */

static bool on_event(const struct event *e, void *userdata)
{
        struct agent *a = userdata;
        bool matched;

        if (a->history)
                history_record(a->history, e);
        matched = rule_engine_eval(a->engine, e, faults_handle_hit, a->faults);

        if (!matched && a->unmatched)
                event_ring_push(a->unmatched, e, "matched no rule");
        return matched;
}

/* The agent's own problems are events too, so rules turn them into P5 cases. */
static void emit_agent_event(struct agent *a, const char *name, const char *object, const char *k1, const char *v1,
                             const char *k2, const char *v2)
{
        struct event e;

        event_init(&e, "agent", name, object);
        if (k1)
                event_add_string(&e, k1, v1);
        if (k2)
                event_add_string(&e, k2, v2);
        on_event(&e, a);
}

/* The ping comes from a loop timer, so a loop that hangs stops pinging and
 * systemd restarts the agent (WatchdogSec= in weibao-agent.service). */
static uint64_t on_watchdog(struct loop_source *s, uint64_t now, void *userdata)
{
        struct agent *a = userdata;

        (void)s;
        (void)now;
        sd_notify(0, "WATCHDOG=1");
        return a->watchdog_usec / 2;
}

static uint64_t on_tick(struct loop_source *s, uint64_t now, void *userdata)
{
        struct agent *a = userdata;

        (void)s;
        rule_engine_tick(a->engine, now, faults_handle_hit, a->faults);
        return AGENT_TICK_USEC;
}

/* ---- configuration pieces ---- */

/* Reads the bearer token; the file must not be readable by group or others. */
static int read_token(const char *path, char **ret, char *err, size_t errsize)
{
        struct stat st;
        char buf[TOKEN_MAX + 2];
        size_t n;
        FILE *f = fopen(path, "re");

        if (!f) {
                snprintf(err, errsize, "cannot read token file %s: %s", path, strerror(errno));
                return -errno;
        }
        if (fstat(fileno(f), &st) < 0 || (st.st_mode & 077)) {
                fclose(f);
                snprintf(err, errsize, "token file %s is accessible by group or others (mode %03o); chmod 600 it", path,
                         (unsigned)(st.st_mode & 0777));
                return -EPERM;
        }
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (n > TOKEN_MAX) {
                snprintf(err, errsize, "token file %s is larger than %d bytes", path, TOKEN_MAX);
                return -E2BIG;
        }
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
                buf[--n] = '\0';
        if (n == 0) {
                snprintf(err, errsize, "token file %s is empty", path);
                return -EINVAL;
        }
        *ret = xstrdup(buf);
        return *ret ? 0 : -ENOMEM;
}

/* The TLS client key, like the token, must be ours alone: refuses a file
 * that group or others may read or write. Only checks: weibao-sender reads it. */
static int check_key_file(const char *path, char *err, size_t errsize)
{
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), r;

        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "cannot read client key %s: %s", path, strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errsize, "cannot stat client key %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        close(fd);
        if (st.st_mode & 077) {
                snprintf(err, errsize, "client key %s is accessible by group or others (mode %03o); chmod 600 it", path,
                         (unsigned)(st.st_mode & 0777));
                return -EPERM;
        }
        return 0;
}

static void collectors_free(struct running_collector *cs, size_t n)
{
        if (!cs)
                return;
        /* reverse order of start */
        for (size_t i = n; i-- > 0;) {
                if (cs[i].started)
                        cs[i].ops->stop(cs[i].state);
                cs[i].ops->free(cs[i].state);
                free(cs[i].error);
        }
        free(cs);
}

/* Configures every enabled collector from cfg into a fresh array. */
static int collectors_prepare(const struct config *cfg, struct diag *d, struct running_collector **ret, size_t *ret_n)
{
        size_t n = 0, count = 0;
        struct running_collector *cs;
        const struct collector_context ctx = {
                .base_dir = cfg->base_dir,
                .state_dir = cfg->state_dir,
                .agent_id = cfg->agent_id,
        };
        int r = 0;

        for (const struct collector_ops *const *o = collector_registry; *o; o++)
                count++;
        cs = xcalloc(count ? count : 1, sizeof *cs);
        if (!cs)
                return -ENOMEM;
        for (const struct collector_ops *const *o = collector_registry; *o; o++) {
                const struct conf_block *b = config_find_collector(cfg, (*o)->name);
                bool enabled = (*o)->default_enabled || b;
                int q;

                if (b) {
                        bool en = true;
                        if (conf_block_get_bool(b, "enabled", &en, d) == 0)
                                enabled = en;
                }
                if (!enabled)
                        continue;
                q = (*o)->new (b, &ctx, d, &cs[n].state);
                if (q < 0) {
                        r = q;
                        continue;
                }
                cs[n++].ops = *o;
        }
        /* Collector blocks that name no built-in collector are errors. */
        char builtin_names[256] = "";
        for (const struct collector_ops *const *o = collector_registry; *o; o++)
                snprintf(builtin_names + strlen(builtin_names), sizeof builtin_names - strlen(builtin_names), "%s%s",
                         o == collector_registry ? "" : ", ", (*o)->name);
        for (size_t i = 0; i < cfg->n_collectors; i++) {
                const char *name = conf_block_name(cfg->collectors[i]);
                bool known = false;
                for (const struct collector_ops *const *o = collector_registry; *o && !known; o++)
                        known = strcmp((*o)->name, name) == 0;
                if (!known)
                        r = conf_block_diag(cfg->collectors[i], NULL, d, "unknown collector (built in: %s)",
                                            builtin_names);
        }
        if (r < 0) {
                collectors_free(cs, n);
                return r;
        }
        *ret = cs;
        *ret_n = n;
        return 0;
}

static void collectors_start(struct agent *a)
{
        for (size_t i = 0; i < a->n_collectors; i++) {
                struct running_collector *c = &a->collectors[i];
                int r = c->ops->start(c->state, a->loop, on_event, a);
                if (r < 0) {
                        free(c->error);
                        c->error = xstrdup(strerror(-r));
                        log_err("collector %s: cannot start: %s", c->ops->name, strerror(-r));
                        emit_agent_event(a, "collector-failed", c->ops->name, "collector", c->ops->name, "error",
                                         strerror(-r));
                        continue;
                }
                c->started = true;
                log_info("collector %s: started", c->ops->name);
        }
}

/* ---- lifecycle ---- */

int agent_new(const char *config_path, struct diag *d, struct agent **ret)
{
        struct agent *a = xcalloc(1, sizeof *a);
        int r;

        if (!a)
                return -ENOMEM;
        a->config_path = xstrdup(config_path);
        if (!a->config_path) {
                r = -ENOMEM;
                goto fail;
        }
        r = config_load(config_path, &a->config, d);
        if (r < 0)
                goto fail;
        r = collectors_prepare(a->config, d, &a->collectors, &a->n_collectors);
        if (r < 0)
                goto fail;
        *ret = a;
        return 0;
fail:
        agent_free(a);
        return r;
}

void agent_format_config(const struct agent *a, FILE *f)
{
        config_format(a->config, f);
}

static void notify_status(struct agent *a)
{
        struct faults_stats fs;
        struct outbox_stats os;

        faults_get_stats(a->faults, &fs);
        outbox_get_stats(a->outbox, &os);
        sd_notifyf(0,
                   "STATUS=%zu rules, %" PRIu64 " faults firing, %" PRIu64 " cases opened, %" PRIu64 " sends pending",
                   ruleset_count(rule_engine_rules(a->engine)), fs.firing, os.cases_opened,
                   os.opens_pending + os.updates_pending);
}

static void settings_of(const struct config *cfg, struct faults_settings *fset, struct outbox_settings *oset)
{
        *fset = (struct faults_settings){
                .occurrence_usec = cfg->occurrence_usec,
                .reopen_window_usec = cfg->reopen_window_usec,
                .flap_count = cfg->flap_count,
                .flap_window_usec = cfg->flap_window_usec,
                .case_rate = cfg->case_rate,
                .case_burst = cfg->case_burst,
                .storm_keys = cfg->storm_keys,
                .storm_window_usec = cfg->storm_window_usec,
        };
        *oset = (struct outbox_settings){.retry_max_usec = cfg->retry_usec, .max_items = cfg->outbox_max};
}

static void on_case_opened(int64_t ref, const char *fault_key, const char *case_id, void *userdata)
{
        struct agent *a = userdata;
        cJSON *d = cJSON_CreateObject();

        (void)ref;
        if (d)
                cJSON_AddStringToObject(d, "case_id", case_id);
        if (a->history)
                history_note(a->history, time_wall_usec(), "case-opened", fault_key, d);
        else
                cJSON_Delete(d);
}

static cJSON *snapshot_of(struct agent *a, uint64_t seconds, bool minutes, int *ret_err);

/* An inspection: the snapshot goes up through the durable outbox. Returns 0
 * once it is queued, or negative errno with the reason in err. */
static int inspect(struct agent *a, const struct answer_command *c, char *err_text, size_t errsize)
{
        int err = 0;
        cJSON *snap = snapshot_of(a, c->seconds, false, &err);
        char *body = snap ? cJSON_PrintUnformatted(snap) : NULL, *path = NULL, *key = NULL, *idem = NULL;
        int r = -ENOMEM;

        cJSON_Delete(snap);
        if (!body) {
                snprintf(err_text, errsize, "building the snapshot failed: %s", strerror(err ? -err : ENOMEM));
                log_err("inspection %s: %s", c->request, err_text);
                return err ? err : -ENOMEM;
        }
        path = xasprintf("/api/v1/agents/%s/snapshots/%s", a->id->agent_id, c->request);
        key = xasprintf("snapshot:%s", c->request);
        idem = xasprintf("snapshot-%s-%s", a->id->agent_id, c->request);
        if (path && key && idem)
                r = outbox_add_request(a->outbox, key, "PUT", path, body, idem);
        if (r < 0) {
                snprintf(err_text, errsize, "the snapshot (%zu bytes) is not queued: %s", strlen(body),
                         r == -ENOBUFS ? "the outbox is full" : strerror(-r));
                log_err("inspection %s: %s", c->request, err_text);
        } else
                log_notice("inspection %s: snapshot of %zu bytes queued for the central API", c->request, strlen(body));
        free(body);
        free(path);
        free(key);
        free(idem);
        return r < 0 ? r : 0;
}

static int on_command(const struct answer_command *c, char *err, size_t errsize, void *userdata)
{
        struct agent *a = userdata;
        int64_t id;
        int r;

        switch (c->type) {
        case ANSWER_COMMAND_INSPECT:
                return inspect(a, c, err, errsize);
        case ANSWER_COMMAND_MAINTENANCE_START:
                r = maintenance_start(a->maintenance, c->seconds * 1000000ULL, c->reason, &id);
                if (r == -EBUSY) /* handled: the window asked for is not opened, and said so */
                        log_warning("central API asked for a maintenance window (%s): one is already running",
                                    c->reason);
                else if (r < 0) {
                        snprintf(err, errsize, "starting a maintenance window: %s", strerror(-r));
                        log_warning("central API asked for a maintenance window (%s): %s", c->reason, strerror(-r));
                        return r;
                }
                return 0;
        case ANSWER_COMMAND_MAINTENANCE_END:
                if (maintenance_end(a->maintenance, 0) < 0)
                        log_info("central API ended the maintenance window: none was running");
                return 0;
        default:
                return 0;
        }
}

/* The agent's own health, a reading a minute into the history. */
static void record_health(struct history *h, int64_t wall, void *userdata)
{
        struct agent *a = userdata;
        struct outbox_stats os;
        struct faults_stats fs;
        struct store_stats ss;
        struct history_stats hs;
        const char *id = a->id->agent_id;

        outbox_get_stats(a->outbox, &os);
        faults_get_stats(a->faults, &fs);
        store_get_stats(a->store, &ss);
        history_get_stats(h, &hs);
        history_record_value(h, "agent", "outbox_depth", id, "",
                             (double)(os.opens_pending + os.updates_pending + os.requests_pending), wall);
        history_record_value(h, "agent", "outbox_parked", id, "", (double)os.parked, wall);
        history_record_value(h, "agent", "send_failures", id, "", (double)os.send_failures, wall);
        history_record_value(h, "agent", "cases_lost", id, "", (double)(fs.lost + fs.shed + os.shed), wall);
        history_record_value(h, "agent", "commit_failures", id, "", (double)ss.commit_failures, wall);
        history_record_value(h, "agent", "series_dropped", id, "", (double)hs.series_dropped, wall);
        history_record_value(h, "agent", "db_bytes", id, "bytes", (double)ss.bytes, wall);
}

static cJSON *checkin_status(void *userdata)
{
        struct agent *a = userdata;
        struct faults_stats fs;
        struct outbox_stats os;
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        faults_get_stats(a->faults, &fs);
        outbox_get_stats(a->outbox, &os);
        cJSON_AddNumberToObject(o, "faults_firing", (double)fs.firing);
        cJSON_AddNumberToObject(o, "sends_pending",
                                (double)(os.opens_pending + os.updates_pending + os.requests_pending));
        cJSON_AddBoolToObject(o, "maintenance", maintenance_active(a->maintenance));
        cJSON_AddNumberToObject(o, "uptime_s", (double)(time_wall_usec() - a->started_wall) / 1e6);
        return o;
}

static void on_maintenance(bool active, const char *why, void *userdata)
{
        struct agent *a = userdata;

        faults_hold_cases(a->faults, active, why);
}

/* Creates the state directory (not its parents: those are the system's). */
static int open_store(struct agent *a, const struct config *cfg)
{
        enum store_sync sync = cfg->sync_full ? STORE_SYNC_FULL : STORE_SYNC_NORMAL;
        const char *why = NULL;
        char *path;
        int r;

        if (mkdir(cfg->state_dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                log_err("creating state directory %s: %s", cfg->state_dir, strerror(errno));
                return r;
        }
        path = xasprintf("%s/agent.db", cfg->state_dir);
        if (!path)
                return -ENOMEM;
        r = store_open(a->loop, path, sync, &a->store, &why);
        if (r < 0)
                log_err("opening the state database %s: %s%s", path, why ? why : strerror(-r),
                        r == -ENOSPC ? " (the state directory's filesystem is full)" : "");
        free(path);
        return r;
}

static void on_signal(struct loop_source *s, int signo, void *userdata)
{
        struct agent *a = userdata;

        (void)s;
        if (signo == SIGHUP) {
                agent_reload(a);
                return;
        }
        log_notice("received %s, shutting down", strsignal(signo));
        sd_notify(0, "STOPPING=1");
        loop_exit(a->loop, 0);
}

static cJSON *control_answer(int argc, char **argv, void *userdata);

static int apply_central(struct agent *a, const struct config *cfg, char *err, size_t errsize)
{
        char *token = NULL;
        struct faults_settings fset;
        struct outbox_settings oset;
        int r = read_token(cfg->token_file, &token, err, errsize);

        if (r < 0)
                return r;
        if (cfg->client_key && (r = check_key_file(cfg->client_key, err, errsize)) < 0) {
                free(token);
                return r;
        }
        r = sender_set_tls(a->sender, cfg->ca_file, cfg->client_cert, cfg->client_key);
        if (r == 0)
                r = sender_configure(a->sender, cfg->central_url, token, cfg->central_timeout_usec);
        free(token);
        if (r < 0) {
                snprintf(err, errsize, "configuring the central API: %s", strerror(-r));
                return r;
        }
        settings_of(cfg, &fset, &oset);
        if (a->faults)
                faults_set_settings(a->faults, &fset);
        if (a->outbox)
                outbox_set_settings(a->outbox, &oset);
        if (a->checkin)
                checkin_set_interval(a->checkin, cfg->checkin_usec);
        return 0;
}

int agent_start(struct agent *a)
{
        struct config *cfg = a->config;
        struct faults_settings fset;
        struct outbox_settings oset;
        char err[600];
        int r;

        log_set_level(cfg->log_level);
        a->started_wall = time_wall_usec();
        r = identity_load(cfg->agent_id, &a->id);
        if (r < 0) {
                log_err("reading host identity: %s", strerror(-r));
                return r;
        }
        r = loop_new(&a->loop);
        if (r < 0) {
                log_err("creating event loop: %s", strerror(-r));
                return r;
        }
        if ((r = loop_add_signal(a->loop, SIGTERM, "SIGTERM", on_signal, a, NULL)) < 0 ||
            (r = loop_add_signal(a->loop, SIGINT, "SIGINT", on_signal, a, NULL)) < 0 ||
            (r = loop_add_signal(a->loop, SIGHUP, "SIGHUP", on_signal, a, NULL)) < 0) {
                log_err("setting up signals: %s", strerror(-r));
                return r;
        }
        signal(SIGPIPE, SIG_IGN);
        r = sender_new(a->loop, &a->sender);
        if (r < 0) {
                log_err("setting up the HTTP client: %s", strerror(-r));
                return r;
        }
        r = apply_central(a, cfg, err, sizeof err);
        if (r < 0) {
                log_err("%s", err);
                return r;
        }
        settings_of(cfg, &fset, &oset);
        r = open_store(a, cfg);
        if (r < 0)
                return r;
        r = outbox_new(a->loop, a->store, a->sender, &oset, on_case_opened, a, &a->outbox);
        if (r < 0) {
                log_err("loading the case outbox from %s/agent.db: %s", cfg->state_dir, strerror(-r));
                return r;
        }
        r = faults_new(a->loop, a->id, a->store, a->outbox, &fset, &a->faults);
        if (r < 0) {
                log_err("loading the fault table from %s/agent.db: %s", cfg->state_dir, strerror(-r));
                return r;
        }
        r = rule_engine_new(0, &a->engine);
        if (r < 0) {
                log_err("setting up the rule engine: %s", strerror(-r));
                return r;
        }
        rule_engine_set_rules(a->engine, config_take_rules(cfg));
        faults_restore(a->faults, a->engine);
        r = maintenance_new(a->loop, a->store, on_maintenance, a, &a->maintenance);
        if (r < 0) {
                log_err("loading maintenance windows: %s", strerror(-r));
                return r;
        }
        struct history_settings hset = {.cap_bytes = (uint64_t)cfg->history_cap_mib << 20};
        r = history_new(a->loop, a->store, &hset, &a->history);
        if (r >= 0)
                r = ledger_new(a->loop, a->store, cfg->alive_interval_usec, &a->ledger);
        if (r < 0) {
                log_err("setting up the history and the downtime ledger: %s", strerror(-r));
                return r;
        }
        faults_set_history(a->faults, a->history);
        history_set_health(a->history, record_health, a);
        r = checkin_new(a->loop, a->sender, a->id, cfg->checkin_usec, on_command, checkin_status, a, &a->checkin);
        if (r == -EINVAL)
                log_warning("agent id '%s' cannot be put in a URL: no check-ins, no remote inspections "
                            "(set agent { id \"...\" } to letters, digits, '.', '_' and '-')",
                            a->id->agent_id);
        else if (r < 0) {
                log_err("setting up check-ins: %s", strerror(-r));
                return r;
        }
        {
                cJSON *d = cJSON_CreateObject();
                if (d)
                        cJSON_AddStringToObject(d, "version", a->id->version);
                history_note(a->history, time_wall_usec(), "agent-start", a->id->agent_id, d);
        }
        outbox_kick(a->outbox);
        a->rules_loaded_wall = time_wall_usec();
        a->unmatched = event_ring_new(UNMATCHED_KEPT);
        if (!a->unmatched) {
                log_err("setting up the recent events: %s", strerror(ENOMEM));
                return -ENOMEM;
        }
        r = loop_add_timer(a->loop, AGENT_TICK_USEC, 0, "rule-tick", on_tick, a, &a->tick);
        if (r < 0) {
                log_err("adding rule timer: %s", strerror(-r));
                return r;
        }
        if (sd_watchdog_enabled(0, &a->watchdog_usec) > 0 && a->watchdog_usec > 0) {
                r = loop_add_timer(a->loop, a->watchdog_usec / 2, 0, "watchdog", on_watchdog, a, &a->watchdog);
                if (r < 0) {
                        log_err("adding the watchdog timer: %s", strerror(-r));
                        return r;
                }
                sd_notify(0, "WATCHDOG=1");
        }
        a->allow_stall = getenv("WEIBAO_TEST_STALL") && strcmp(getenv("WEIBAO_TEST_STALL"), "1") == 0;
        r = control_new(a->loop, cfg->control_socket, control_answer, a, &a->control);
        if (r < 0) {
                log_err("opening control socket %s: %s", cfg->control_socket,
                        r == -EADDRINUSE ? "another weibao-agent is answering on it" : strerror(-r));
                return r;
        }
        collectors_start(a);
        a->started = true;
        log_notice("weibao-agent %s started: agent id %s, %zu rules, %zu collectors, central %s", a->id->version,
                   a->id->agent_id, ruleset_count(rule_engine_rules(a->engine)), a->n_collectors, cfg->central_url);
        sd_notify(0, "READY=1");
        notify_status(a);
        return 0;
}

int agent_run(struct agent *a)
{
        int r = loop_run(a->loop);

        if (r < 0) {
                log_err("event loop failed: %s", strerror(-r));
                return 1;
        }
        return r;
}

int agent_reload(struct agent *a)
{
        struct diag *d = diag_new();
        struct config *cfg = NULL;
        struct running_collector *cs = NULL;
        size_t n = 0;
        char err[600];
        int r;

        if (!d) {
                log_err("reload: out of memory; keeping the running configuration");
                return -ENOMEM;
        }
        sd_notify(0, "RELOADING=1");
        log_notice("reloading %s", a->config_path);
        r = config_load(a->config_path, &cfg, d);
        if (r >= 0)
                r = collectors_prepare(cfg, d, &cs, &n);
        if (r < 0) {
                for (size_t i = 0; i < diag_count(d); i++)
                        log_err("reload: %s", diag_get(d, i));
                log_err("reload failed; the running configuration and rules stay in force");
                goto out;
        }
        r = apply_central(a, cfg, err, sizeof err);
        if (r < 0) {
                log_err("reload: %s; the running configuration and rules stay in force", err);
                goto out;
        }
        if (strcmp(cfg->control_socket, a->config->control_socket) != 0)
                log_warning("reload: control_socket changes take effect at the next start");
        /* Only a changed log_level applies, so a --log-level given at start survives reloads. */
        if (cfg->log_level != a->config->log_level)
                log_set_level(cfg->log_level);
        rule_engine_set_rules(a->engine, config_take_rules(cfg));
        faults_rules_changed(a->faults, a->engine);
        {
                size_t n_unparked = outbox_unpark(a->outbox);
                if (n_unparked)
                        log_notice("reload: %zu parked requests are tried again", n_unparked);
        }
        a->rules_loaded_wall = time_wall_usec();
        collectors_free(a->collectors, a->n_collectors);
        a->collectors = cs;
        a->n_collectors = n;
        cs = NULL;
        n = 0;
        config_free(a->config);
        a->config = cfg;
        cfg = NULL;
        collectors_start(a);
        log_notice("reload done: %zu rules", ruleset_count(rule_engine_rules(a->engine)));
        r = 0;
out:
        if (r < 0)
                a->reload_failures++;
        else
                a->reloads++;
        collectors_free(cs, n);
        config_free(cfg);
        diag_free(d);
        sd_notify(0, "READY=1");
        notify_status(a);
        return r;
}

void agent_free(struct agent *a)
{
        if (!a)
                return;
        if (a->collectors)
                collectors_free(a->collectors, a->n_collectors);
        control_free(a->control);
        loop_remove(a->tick);
        loop_remove(a->watchdog);
        rule_engine_free(a->engine);
        event_ring_free(a->unmatched);
        if (a->started) {
                ledger_stop(a->ledger);
                if (a->history)
                        history_flush(a->history);
        }
        if (a->store && store_commit_now(a->store) < 0)
                log_err("saving state at exit: %s; the last changes are lost", store_last_error(a->store));
        checkin_free(a->checkin);
        ledger_free(a->ledger);
        history_free(a->history);
        maintenance_free(a->maintenance);
        faults_free(a->faults);
        outbox_free(a->outbox);
        store_free(a->store);
        sender_free(a->sender);
        loop_free(a->loop);
        identity_free(a->id);
        config_free(a->config);
        free(a->config_path);
        free(a);
}

/* ---- control commands ---- */

static cJSON *answer_ok(void)
{
        cJSON *o = cJSON_CreateObject();

        if (o)
                cJSON_AddTrueToObject(o, "ok");
        return o;
}

static cJSON *collectors_json(const struct agent *a)
{
        cJSON *arr = cJSON_CreateArray();

        for (size_t i = 0; arr && i < a->n_collectors; i++) {
                const struct running_collector *c = &a->collectors[i];
                cJSON *o = c->started ? c->ops->status(c->state, false) : cJSON_CreateObject();
                if (!o)
                        continue;
                cJSON_AddStringToObject(o, "name", c->ops->name);
                cJSON_AddBoolToObject(o, "running", c->started);
                if (c->error)
                        cJSON_AddStringToObject(o, "error", c->error);
                json_add(arr, NULL, o);
        }
        return arr;
}

static cJSON *status_json(const struct agent *a)
{
        cJSON *o = answer_ok(), *x;
        struct faults_stats fs;
        struct outbox_stats os;
        struct store_stats ss;
        struct rule_engine_stats es;
        char ts[40];

        if (!o)
                return NULL;
        faults_get_stats(a->faults, &fs);
        outbox_get_stats(a->outbox, &os);
        store_get_stats(a->store, &ss);
        rule_engine_get_stats(a->engine, &es);
        json_add(o, "agent", identity_to_json(a->id));
        cJSON_AddStringToObject(o, "started_at", time_format_rfc3339(a->started_wall, ts, sizeof ts));
        cJSON_AddNumberToObject(o, "uptime_s", (double)(time_wall_usec() - a->started_wall) / 1e6);
        cJSON_AddStringToObject(o, "config", a->config_path);
        cJSON_AddStringToObject(o, "central", a->config->central_url);
        if ((x = cJSON_AddObjectToObject(o, "rules"))) {
                cJSON_AddNumberToObject(x, "loaded", (double)ruleset_count(rule_engine_rules(a->engine)));
                cJSON_AddStringToObject(x, "loaded_at", time_format_rfc3339(a->rules_loaded_wall, ts, sizeof ts));
                cJSON_AddNumberToObject(x, "reloads", (double)a->reloads);
                cJSON_AddNumberToObject(x, "reload_failures", (double)a->reload_failures);
                cJSON_AddNumberToObject(x, "events", (double)es.events);
                cJSON_AddNumberToObject(x, "unmatched_events", (double)es.unmatched);
                cJSON_AddNumberToObject(x, "unmatched_kept", (double)UNMATCHED_KEPT);
                cJSON_AddNumberToObject(x, "states", (double)es.states);
                cJSON_AddNumberToObject(x, "states_shed", (double)es.shed);
        }
        if ((x = cJSON_AddObjectToObject(o, "faults"))) {
                cJSON_AddNumberToObject(x, "firing", (double)fs.firing);
                cJSON_AddNumberToObject(x, "cleared", (double)fs.cleared);
                cJSON_AddNumberToObject(x, "shed", (double)fs.shed);
                cJSON_AddNumberToObject(x, "flapping", (double)fs.flapping);
                cJSON_AddNumberToObject(x, "remembered", (double)fs.remembered);
        }
        if ((x = cJSON_AddObjectToObject(o, "cases"))) {
                cJSON_AddNumberToObject(x, "opened", (double)os.cases_opened);
                cJSON_AddNumberToObject(x, "wanted", (double)fs.cases_wanted);
                cJSON_AddNumberToObject(x, "sends_pending",
                                        (double)(os.opens_pending + os.updates_pending + os.requests_pending));
                cJSON_AddNumberToObject(x, "requests_pending", (double)os.requests_pending);
                cJSON_AddNumberToObject(x, "opens_pending", (double)os.opens_pending);
                cJSON_AddNumberToObject(x, "updates_pending", (double)os.updates_pending);
                cJSON_AddNumberToObject(x, "not_durable", (double)os.not_durable);
                cJSON_AddNumberToObject(x, "parked", (double)os.parked);
                cJSON_AddNumberToObject(x, "send_failures", (double)os.send_failures);
                cJSON_AddNumberToObject(x, "in_flight", (double)os.in_flight);
                cJSON_AddBoolToObject(x, "central_down", os.central_down);
                cJSON_AddNumberToObject(x, "held_maintenance", (double)fs.held_maintenance);
                cJSON_AddNumberToObject(x, "rate_limited", (double)fs.rate_limited);
                cJSON_AddNumberToObject(x, "storm_summarised", (double)fs.storm_summarised);
                cJSON_AddNumberToObject(x, "lost", (double)(fs.lost + os.shed));
                cJSON_AddBoolToObject(x, "maintenance", maintenance_active(a->maintenance));
        }
        if (a->checkin)
                json_add(o, "checkin", checkin_to_json(a->checkin));
        if ((x = cJSON_AddObjectToObject(o, "state"))) {
                cJSON_AddStringToObject(x, "dir", a->config->state_dir);
                cJSON_AddNumberToObject(x, "bytes", (double)ss.bytes);
                cJSON_AddNumberToObject(x, "commits", (double)ss.commits);
                cJSON_AddNumberToObject(x, "commit_failures", (double)ss.commit_failures);
                cJSON_AddBoolToObject(x, "failing", ss.failing);
                if (ss.failing)
                        cJSON_AddStringToObject(x, "error", store_last_error(a->store));
        }
        json_add(o, "collectors", collectors_json(a));
        if ((x = cJSON_AddArrayToObject(o, "loop_sources"))) {
                for (size_t i = 0; i < loop_source_count(a->loop); i++) {
                        const char *kind, *name;
                        if (loop_source_describe(a->loop, i, &kind, &name) < 0)
                                continue;
                        cJSON *s = cJSON_CreateObject();
                        if (!s)
                                break;
                        cJSON_AddStringToObject(s, "kind", kind);
                        cJSON_AddStringToObject(s, "name", name);
                        json_add(x, NULL, s);
                }
        }
        return o;
}

static cJSON *answer_error(const char *msg)
{
        cJSON *o = cJSON_CreateObject();

        if (o) {
                cJSON_AddFalseToObject(o, "ok");
                cJSON_AddStringToObject(o, "error", msg);
        }
        return o;
}

/* maintenance [list] | start SECONDS REASON... | end [ID]; the words of the
 * reason are joined by single spaces (the control line splits on blanks). */
static cJSON *maintenance_command(struct agent *a, int argc, char **argv)
{
        const char *sub = argc > 1 ? argv[1] : "list";
        cJSON *o;
        char *end;
        int r;

        if (strcmp(sub, "list") == 0) {
                if ((o = answer_ok()))
                        json_add(o, "maintenance", maintenance_to_json(a->maintenance));
                return o;
        }
        if (strcmp(sub, "start") == 0) {
                char reason[MAINTENANCE_REASON_MAX + 1] = "";
                unsigned long long secs;
                int64_t id;

                if (argc < 4)
                        return answer_error("maintenance start: expected SECONDS and a reason");
                errno = 0;
                secs = strtoull(argv[2], &end, 10);
                if (errno || *end || argv[2][0] == '-' || secs == 0 || secs > MAINTENANCE_MAX_USEC / 1000000)
                        return answer_error("maintenance start: the duration must be 1 s to 30 days");
                for (int i = 3; i < argc; i++) {
                        size_t len = strlen(reason);
                        if (len + strlen(argv[i]) + 2 > sizeof reason)
                                return answer_error("maintenance start: the reason is longer than 512 bytes");
                        snprintf(reason + len, sizeof reason - len, "%s%s", i > 3 ? " " : "", argv[i]);
                }
                r = maintenance_start(a->maintenance, secs * 1000000ULL, reason, &id);
                if (r == -EBUSY)
                        return answer_error("a maintenance window is already running; end it first "
                                            "(weibaoctl maintenance end)");
                if (r < 0)
                        return answer_error(r == -EINVAL ? "maintenance start: the reason must be printable text"
                                                         : strerror(-r));
                if ((o = answer_ok()))
                        json_add(o, "maintenance", maintenance_to_json(a->maintenance));
                return o;
        }
        if (strcmp(sub, "end") == 0) {
                long long id = 0;
                if (argc > 2) {
                        errno = 0;
                        id = strtoll(argv[2], &end, 10);
                        if (errno || *end || id <= 0)
                                return answer_error("maintenance end: expected a window id");
                }
                if (maintenance_end(a->maintenance, id) < 0)
                        return answer_error(id ? "no such maintenance window is running"
                                               : "no maintenance window is running");
                if ((o = answer_ok()))
                        json_add(o, "maintenance", maintenance_to_json(a->maintenance));
                return o;
        }
        return answer_error("maintenance: expected list, start SECONDS REASON, or end [ID]");
}

static cJSON *snapshot_of(struct agent *a, uint64_t seconds, bool minutes, int *ret_err)
{
        struct snapshot_parts parts = {
                .id = a->id,
                .config = a->config,
                .collectors = collectors_json(a),
                .status = status_json(a),
                .faults = a->faults,
                .outbox = a->outbox,
                .maintenance = a->maintenance,
                .history = a->history,
                .ledger = a->ledger,
                .started_wall = a->started_wall,
        };

        return snapshot_build(&parts, time_wall_usec() - (int64_t)seconds * 1000000, minutes, ret_err);
}

static cJSON *control_answer(int argc, char **argv, void *userdata)
{
        struct agent *a = userdata;
        cJSON *o;

        if (strcmp(argv[0], "status") == 0)
                return status_json(a);
        if (strcmp(argv[0], "faults") == 0) {
                if ((o = answer_ok()))
                        json_add(o, "faults", faults_to_json(a->faults));
                return o;
        }
        if (strcmp(argv[0], "snapshot") == 0) {
                /* snapshot [SINCE_SECONDS [minutes]] */
                long long secs = 90LL * 86400;
                char *end;
                int err = 0;
                if (argc > 1) {
                        errno = 0;
                        secs = strtoll(argv[1], &end, 10);
                        if (errno || *end || secs <= 0 || secs > 3660LL * 86400)
                                return answer_error("snapshot: the period must be 1 s to 10 years");
                }
                cJSON *snap = snapshot_of(a, (uint64_t)secs, argc > 2 && strcmp(argv[2], "minutes") == 0, &err);
                if (!snap) {
                        char msg[200];
                        snprintf(msg, sizeof msg, "snapshot: reading the state database: %s", strerror(-err));
                        return answer_error(msg);
                }
                if ((o = answer_ok()))
                        json_add(o, "snapshot", snap);
                else
                        cJSON_Delete(snap);
                return o;
        }
        if (strcmp(argv[0], "events") == 0) {
                if ((o = answer_ok()))
                        json_add(o, "unmatched", event_ring_to_json(a->unmatched));
                return o;
        }
        if (strcmp(argv[0], "collector") == 0 || strcmp(argv[0], "traps") == 0) {
                const char *name = strcmp(argv[0], "traps") == 0 ? "snmptrap" : argc > 1 ? argv[1] : "";
                for (size_t i = 0; i < a->n_collectors; i++) {
                        const struct running_collector *c = &a->collectors[i];
                        if (strcmp(c->ops->name, name) != 0)
                                continue;
                        if (!(o = answer_ok()))
                                return NULL;
                        cJSON *st = c->started ? c->ops->status(c->state, true) : cJSON_CreateObject();
                        if (st) {
                                cJSON_AddStringToObject(st, "name", name);
                                cJSON_AddBoolToObject(st, "running", c->started);
                                if (c->error)
                                        cJSON_AddStringToObject(st, "error", c->error);
                        }
                        json_add(o, "collector", st);
                        return o;
                }
                if (!(o = cJSON_CreateObject()))
                        return NULL;
                cJSON_AddFalseToObject(o, "ok");
                char msg[200];
                snprintf(msg, sizeof msg, "collector '%.60s' is not running (not enabled in the configuration?)", name);
                cJSON_AddStringToObject(o, "error", msg);
                return o;
        }
        if (strcmp(argv[0], "outbox") == 0) {
                if (argc > 1 && strcmp(argv[1], "retry") == 0) {
                        size_t n = outbox_unpark(a->outbox);
                        if ((o = answer_ok()))
                                cJSON_AddNumberToObject(o, "unparked", (double)n);
                        return o;
                }
                if ((o = answer_ok()))
                        json_add(o, "outbox", outbox_to_json(a->outbox));
                return o;
        }
        if (strcmp(argv[0], "maintenance") == 0)
                return maintenance_command(a, argc, argv);
        if (strcmp(argv[0], "stall") == 0 && a->allow_stall) {
                /* Test mode only: blocks the loop, as a hang would, so that
                 * tests can see the watchdog stop being pinged. */
                unsigned secs = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1;
                log_warning("stalling the event loop for %u s (WEIBAO_TEST_STALL test mode)", secs);
                sleep(secs > 600 ? 600 : secs);
                return answer_ok();
        }
        if (strcmp(argv[0], "reload") == 0) {
                int r = agent_reload(a);
                if (!(o = cJSON_CreateObject()))
                        return NULL;
                cJSON_AddBoolToObject(o, "ok", r >= 0);
                if (r < 0)
                        cJSON_AddStringToObject(o, "error",
                                                "reload failed; the running configuration and rules "
                                                "stay in force (the agent's log has the reasons)");
                else
                        cJSON_AddNumberToObject(o, "rules", (double)ruleset_count(rule_engine_rules(a->engine)));
                return o;
        }
        (void)argc;
        if (!(o = cJSON_CreateObject()))
                return NULL;
        cJSON_AddFalseToObject(o, "ok");
        char msg[300];
        snprintf(msg, sizeof msg,
                 "unknown command '%.100s' (known: status, faults, events, traps, collector, outbox, maintenance, "
                 "snapshot, reload)",
                 argv[0]);
        cJSON_AddStringToObject(o, "error", msg);
        return o;
}
