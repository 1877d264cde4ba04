/* identity: who this agent is and what host it runs on, as every case and
 * snapshot reports it (hostname, machine-id, OS, kernel, agent version, and
 * the hardware inventory: vendor and model from DMI, CPUs, memory). */
#pragma once

#include <cjson/cJSON.h>

#ifndef WEIBAO_VERSION
#define WEIBAO_VERSION "0.1.0"
#endif

struct identity {
        char *agent_id; /* configured id, else the machine-id, else the hostname */
        char *hostname;
        char *machine_id;                /* "" when /etc/machine-id is unreadable */
        char *os;                        /* PRETTY_NAME from os-release, "" if unknown */
        char *kernel;                    /* uname -r */
        char *version;                   /* the agent's version */
        char *hw_vendor;                 /* /sys/class/dmi/id/sys_vendor, "" if unknown */
        char *hw_model;                  /* /sys/class/dmi/id/product_name, "" if unknown */
        char *cpu_model;                 /* the first "model name" of /proc/cpuinfo, "" if unknown */
        long cpus;                       /* online CPUs */
        unsigned long long memory_bytes; /* MemTotal, 0 if unknown */
};

/* Reads the host's identity. agent_id may be NULL. Returns 0 and a fresh
 * identity (caller frees with identity_free), or -ENOMEM. */
int identity_load(const char *agent_id, struct identity **ret);
void identity_free(struct identity *id);
/* A new JSON object with every field; NULL on allocation failure. */
cJSON *identity_to_json(const struct identity *id);
