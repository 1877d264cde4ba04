/* libFuzzer target: the process collector's parsers of semi-trusted input
 * (collectors/proc_parse.c). Every input goes through all of them: as the
 * text of /proc/PID/stat, of /proc/PID/status and of /proc/PID/cmdline (a
 * process picks its own name and arguments), as a datagram from the proc
 * connector socket, and, NUL-terminated, as a watch setting whose normalised
 * form must parse again to the same spec. The input is copied to a buffer of
 * exactly its size so ASan sees any read past the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../collectors/proc_parse.h"

static void on_event(const struct proc_cn_event *ev, void *userdata)
{
        size_t *n = userdata;

        if (ev->kind >= PROC_CN_KIND_MAX)
                abort();
        (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *buf = malloc(size ? size : 1), *text = malloc(size + 1);
        struct proc_stat st;
        struct proc_status status;
        struct proc_watch_spec w, again;
        char out[64], err[300], norm[2048];
        unsigned off;
        size_t events = 0;
        int n;

        if (!buf || !text)
                abort();
        memcpy(buf, data, size);
        if (proc_stat_parse(buf, size, &st) == 0 && strlen(st.comm) >= sizeof st.comm)
                abort();
        (void)proc_status_parse(buf, size, &status);
        n = proc_cmdline_join(buf, size, out, sizeof out);
        if (strlen(out) >= sizeof out || (n >= 0 && (size_t)n != strlen(out)))
                abort();
        n = proc_cn_parse(buf, size, on_event, &events);
        if (n >= 0 && (size_t)n != events)
                abort();

        memcpy(text, data, size);
        text[size] = '\0';
        if (proc_watch_parse(text, &w, err, sizeof err, &off) == 0) {
                proc_watch_format(&w, norm, sizeof norm);
                if (proc_watch_parse(norm, &again, err, sizeof err, &off) != 0 || memcmp(&w, &again, sizeof w) != 0) {
                        fprintf(stderr, "normalised form '%s' of '%s' does not parse back the same\n", norm, text);
                        abort();
                }
                (void)proc_watch_matches(&w, "comm", text);
        } else if (off > size) {
                abort();
        }
        free(buf);
        free(text);
        return 0;
}
