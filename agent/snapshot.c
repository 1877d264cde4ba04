/* snapshot: see snapshot.h. Host facts come from /proc and /sys at the time
 * of the snapshot; digests are FNV-1a 64-bit over file contents ("fnv1a64:"
 * and 16 hex digits): they tell whether a file changed between inspections,
 * they are not a security measure. */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/hash.h"
#include "../lib/json.h"
#include "../rules/conf.h"
#include "faults.h"
#include "history.h"
#include "identity.h"
#include "ledger.h"
#include "maintenance.h"
#include "outbox.h"

#define FILE_DIGEST_MAX (16 << 20)

/* Digest of a file's contents into out (at least 26 bytes); "unreadable" when it cannot be read. */
static uint64_t file_digest(const char *path, char *out, size_t size, uint64_t *acc)
{
        FILE *f = fopen(path, "re");
        char buf[8192];
        uint64_t h = HASH_FNV_INIT;
        size_t n, total = 0;

        if (!f) {
                snprintf(out, size, "unreadable");
                return 0;
        }
        while ((n = fread(buf, 1, sizeof buf, f)) > 0 && total < FILE_DIGEST_MAX) {
                h = hash_fnv_mem(h, buf, n);
                if (acc)
                        *acc = hash_fnv_mem(*acc, buf, n);
                total += n;
        }
        fclose(f);
        snprintf(out, size, "fnv1a64:%016" PRIx64, h);
        return h;
}

static cJSON *config_json(const struct config *c)
{
        cJSON *o = cJSON_CreateObject(), *files;
        char d[40];
        uint64_t all = HASH_FNV_INIT;

        if (!o)
                return NULL;
        file_digest(c->path, d, sizeof d, NULL);
        cJSON_AddStringToObject(o, "path", c->path);
        cJSON_AddStringToObject(o, "digest", d);
        files = cJSON_AddArrayToObject(o, "rules_files");
        for (size_t i = 0; files && i < c->n_rules_paths; i++) {
                glob_t g;
                if (glob(c->rules_paths[i], 0, NULL, &g) != 0)
                        continue;
                for (size_t j = 0; j < g.gl_pathc; j++) {
                        cJSON *x = cJSON_CreateObject();
                        if (!x)
                                break;
                        all = hash_fnv_mem(all, g.gl_pathv[j], strlen(g.gl_pathv[j]) + 1);
                        file_digest(g.gl_pathv[j], d, sizeof d, &all);
                        cJSON_AddStringToObject(x, "path", g.gl_pathv[j]);
                        cJSON_AddStringToObject(x, "digest", d);
                        json_add(files, NULL, x);
                }
                globfree(&g);
        }
        snprintf(d, sizeof d, "fnv1a64:%016" PRIx64, all);
        cJSON_AddStringToObject(o, "rules_digest", d);
        return o;
}

static int read_line(const char *path, char *buf, size_t size)
{
        FILE *f = fopen(path, "re");

        buf[0] = '\0';
        if (!f)
                return -errno;
        if (!fgets(buf, (int)size, f))
                buf[0] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        fclose(f);
        return 0;
}

static cJSON *host_json(void)
{
        cJSON *o = cJSON_CreateObject(), *disks;
        char line[256], path[512];
        DIR *d;
        struct dirent *de;

        if (!o)
                return NULL;
        if (read_line("/proc/uptime", line, sizeof line) == 0)
                cJSON_AddNumberToObject(o, "uptime_s", strtod(line, NULL));
        if (read_line("/proc/sys/kernel/random/boot_id", line, sizeof line) == 0)
                cJSON_AddStringToObject(o, "boot_id", line);
        if (read_line("/proc/loadavg", line, sizeof line) == 0)
                cJSON_AddStringToObject(o, "loadavg", line);
        disks = cJSON_AddArrayToObject(o, "disks");
        if (disks && (d = opendir("/sys/block"))) {
                while ((de = readdir(d))) {
                        cJSON *x;
                        if (de->d_name[0] == '.' || strncmp(de->d_name, "loop", 4) == 0 ||
                            strncmp(de->d_name, "ram", 3) == 0)
                                continue;
                        if (!(x = cJSON_CreateObject()))
                                break;
                        cJSON_AddStringToObject(x, "name", de->d_name);
                        snprintf(path, sizeof path, "/sys/block/%s/size", de->d_name);
                        if (read_line(path, line, sizeof line) == 0)
                                cJSON_AddNumberToObject(x, "size_bytes", strtod(line, NULL) * 512);
                        snprintf(path, sizeof path, "/sys/block/%s/device/model", de->d_name);
                        if (read_line(path, line, sizeof line) == 0 && line[0])
                                cJSON_AddStringToObject(x, "model", line);
                        snprintf(path, sizeof path, "/sys/block/%s/queue/rotational", de->d_name);
                        if (read_line(path, line, sizeof line) == 0 && line[0])
                                cJSON_AddBoolToObject(x, "rotational", line[0] == '1');
                        json_add(disks, NULL, x);
                }
                closedir(d);
        }
        return o;
}

/* Every member must be there (the schema requires them): a member that
 * could not be built fails the whole snapshot with -ENOMEM rather than
 * leaving it out. */
cJSON *snapshot_build(const struct snapshot_parts *p, int64_t since, bool minutes, int *ret_err)
{
        cJSON *o = cJSON_CreateObject(), *x, *health;
        int64_t now = time_wall_usec();
        char ts[40];
        int err = 0, ok = 1;
        struct history_stats hs;

        *ret_err = 0;
        if (!o) {
                cJSON_Delete(p->collectors);
                goto fail;
        }
        ok &= !!cJSON_AddNumberToObject(o, "version", SNAPSHOT_VERSION);
        ok &= !!cJSON_AddStringToObject(o, "generated_at", time_format_rfc3339(now, ts, sizeof ts));
        ok &= !!cJSON_AddStringToObject(o, "since", time_format_rfc3339(since, ts, sizeof ts));
        ok &= json_add(o, "agent", identity_to_json(p->id)) == 0;
        ok &= json_add(o, "host", host_json()) == 0;
        ok &= json_add(o, "config", config_json(p->config)) == 0;
        ok &= json_add(o, "collectors", p->collectors) == 0;
        ok &= json_add(o, "faults", faults_to_json(p->faults)) == 0;
        ok &= json_add(o, "outbox", outbox_to_json(p->outbox)) == 0;
        ok &= json_add(o, "maintenance", maintenance_to_json(p->maintenance)) == 0;
        if (!ok || !(x = history_to_json(p->history, since, minutes, &err)) || json_add(o, "history", x) < 0)
                goto fail;
        if (!(x = ledger_to_json(p->ledger, since, now, &err)) || json_add(o, "downtime", x) < 0)
                goto fail;
        if (!(health = cJSON_AddObjectToObject(o, "agent_health")))
                goto fail;
        history_get_stats(p->history, &hs);
        ok &= !!cJSON_AddStringToObject(health, "started_at", time_format_rfc3339(p->started_wall, ts, sizeof ts));
        ok &= !!cJSON_AddNumberToObject(health, "uptime_s", (double)(now - p->started_wall) / 1e6);
        ok &= !!cJSON_AddNumberToObject(health, "restarts",
                                        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x, "outages")));
        ok &= !!cJSON_AddNumberToObject(health, "history_series_dropped", (double)hs.series_dropped);
        ok &= !!cJSON_AddBoolToObject(health, "history_over_cap", hs.over_cap);
        /* the counters of the status answer: rules, faults, cases, state */
        static const char *const parts[] = {"rules", "faults", "cases", "state"};
        for (size_t i = 0; p->status && i < sizeof parts / sizeof parts[0]; i++) {
                cJSON *it = cJSON_DetachItemFromObjectCaseSensitive(p->status, parts[i]);
                if (it)
                        ok &= json_add(health, parts[i], it) == 0;
        }
        if (!ok)
                goto fail;
        cJSON_Delete(p->status);
        return o;
fail:
        cJSON_Delete(p->status);
        cJSON_Delete(o);
        *ret_err = err < 0 ? err : -ENOMEM;
        return NULL;
}
