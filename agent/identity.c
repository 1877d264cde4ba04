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
        if (agent_id && *agent_id)
                id->agent_id = xstrdup(agent_id);
        else if (id->machine_id && *id->machine_id)
                id->agent_id = xstrdup(id->machine_id);
        else
                id->agent_id = xstrdup(host[0] ? host : "unknown");
        if (!id->hostname || !id->machine_id || !id->os || !id->kernel || !id->version || !id->agent_id) {
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
            !cJSON_AddStringToObject(o, "kernel", id->kernel) || !cJSON_AddStringToObject(o, "version", id->version)) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}
