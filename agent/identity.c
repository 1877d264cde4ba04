/* identity: see identity.h. Missing files (a container without
 * /etc/machine-id, say) leave fields empty rather than failing: an agent
 * that cannot name its OS should still report the fault. */
#include "identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "../lib/xalloc.h"

static char *read_first_line(const char *path)
{
        char buf[256];
        FILE *f = fopen(path, "re");
        char *r = NULL;

        if (!f)
                return xstrdup("");
        if (fgets(buf, sizeof buf, f)) {
                buf[strcspn(buf, "\r\n")] = '\0';
                r = xstrdup(buf);
        } else {
                r = xstrdup("");
        }
        fclose(f);
        return r;
}

static char *read_os_pretty_name(void)
{
        static const char *const paths[] = {"/etc/os-release", "/usr/lib/os-release"};
        char line[512];

        for (size_t i = 0; i < 2; i++) {
                FILE *f = fopen(paths[i], "re");
                if (!f)
                        continue;
                while (fgets(line, sizeof line, f)) {
                        char *v;
                        size_t n;
                        if (strncmp(line, "PRETTY_NAME=", 12) != 0)
                                continue;
                        v = line + 12;
                        v[strcspn(v, "\r\n")] = '\0';
                        n = strlen(v);
                        if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
                                v[n - 1] = '\0';
                                v++;
                        }
                        fclose(f);
                        return xstrdup(v);
                }
                fclose(f);
        }
        return xstrdup("");
}

static char *read_cpu_model(void)
{
        char line[512];
        FILE *f = fopen("/proc/cpuinfo", "re");
        char *r = NULL;

        if (!f)
                return xstrdup("");
        while (!r && fgets(line, sizeof line, f)) {
                char *colon = strchr(line, ':');
                if (strncmp(line, "model name", 10) != 0 || !colon)
                        continue;
                colon += 1 + strspn(colon + 1, " \t");
                colon[strcspn(colon, "\r\n")] = '\0';
                r = xstrdup(colon);
        }
        fclose(f);
        return r ? r : xstrdup("");
}

static unsigned long long read_mem_total(void)
{
        char line[256];
        unsigned long long kib = 0;
        FILE *f = fopen("/proc/meminfo", "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
                        break;
        fclose(f);
        return kib * 1024;
}

void identity_free(struct identity *id)
{
        if (!id)
                return;
        free(id->agent_id);
        free(id->hostname);
        free(id->machine_id);
        free(id->os);
        free(id->kernel);
        free(id->version);
        free(id->hw_vendor);
        free(id->hw_model);
        free(id->cpu_model);
        free(id);
}

int identity_load(const char *agent_id, struct identity **ret)
{
        struct identity *id = xcalloc(1, sizeof *id);
        char host[256] = "";
        struct utsname u;

        if (!id)
                return -ENOMEM;
        if (gethostname(host, sizeof host - 1) < 0)
                host[0] = '\0';
        id->hostname = xstrdup(host);
        id->machine_id = read_first_line("/etc/machine-id");
        id->os = read_os_pretty_name();
        id->kernel = xstrdup(uname(&u) == 0 ? u.release : "");
        id->version = xstrdup(WEIBAO_VERSION);
        id->hw_vendor = read_first_line("/sys/class/dmi/id/sys_vendor");
        id->hw_model = read_first_line("/sys/class/dmi/id/product_name");
        id->cpu_model = read_cpu_model();
        id->cpus = sysconf(_SC_NPROCESSORS_ONLN);
        id->memory_bytes = read_mem_total();
        if (agent_id && *agent_id)
                id->agent_id = xstrdup(agent_id);
        else if (id->machine_id && *id->machine_id)
                id->agent_id = xstrdup(id->machine_id);
        else
                id->agent_id = xstrdup(host[0] ? host : "unknown");
        if (!id->hostname || !id->machine_id || !id->os || !id->kernel || !id->version || !id->agent_id ||
            !id->hw_vendor || !id->hw_model || !id->cpu_model) {
                identity_free(id);
                return -ENOMEM;
        }
        *ret = id;
        return 0;
}

cJSON *identity_to_json(const struct identity *id)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        if (!cJSON_AddStringToObject(o, "id", id->agent_id) || !cJSON_AddStringToObject(o, "hostname", id->hostname) ||
            !cJSON_AddStringToObject(o, "machine_id", id->machine_id) || !cJSON_AddStringToObject(o, "os", id->os) ||
            !cJSON_AddStringToObject(o, "kernel", id->kernel) || !cJSON_AddStringToObject(o, "version", id->version) ||
            !cJSON_AddStringToObject(o, "hw_vendor", id->hw_vendor) ||
            !cJSON_AddStringToObject(o, "hw_model", id->hw_model) ||
            !cJSON_AddStringToObject(o, "cpu_model", id->cpu_model) ||
            !cJSON_AddNumberToObject(o, "cpus", (double)id->cpus) ||
            !cJSON_AddNumberToObject(o, "memory_bytes", (double)id->memory_bytes)) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}
