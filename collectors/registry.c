/* registry: the list of built-in collectors. One line per collector. */
#include "collector.h"

extern const struct collector_ops sensors_collector_ops;
extern const struct collector_ops snmptrap_collector_ops;
extern const struct collector_ops process_collector_ops;
extern const struct collector_ops heartbeat_collector_ops;

const struct collector_ops *const collector_registry[] = {
        &sensors_collector_ops, &snmptrap_collector_ops, &process_collector_ops, &heartbeat_collector_ops, NULL,
};
