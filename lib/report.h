/* report: the inspection report, one self-contained HTML page rendered from
 * health snapshots (docs/snapshot.md). Pure: no I/O, no logging; used by
 * weibaoctl (one snapshot) and the central stub (one per host of an
 * inspection). */
#pragma once

#include <stddef.h>

#include <cjson/cJSON.h>

/* Largest page report_render_html produces; beyond it the call fails. */
#define REPORT_HTML_MAX (16u * 1024 * 1024)
/* Most points drawn per chart line; longer series are downsampled. */
#define REPORT_CHART_POINTS 360

/* Renders snapshots[0..n) (each a snapshot object, version 1) as one HTML
 * page: per host its identity, inventory, charts (inline SVG), a summary row
 * and its open cases. cases is an array of case objects (docs/api.md) or
 * NULL / empty: then each host's firing faults are listed instead. title may
 * be NULL. Every string taken from the input is escaped. On success sets
 * *ret_html to a fresh string (caller frees with free()) and returns 0;
 * -EINVAL for a NULL or non-object snapshot, -ENOMEM, or -EFBIG when the page
 * would exceed REPORT_HTML_MAX. */
int report_render_html(const cJSON *const *snapshots, size_t n, const cJSON *cases, const char *title, char **ret_html);
