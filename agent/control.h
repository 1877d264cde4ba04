/* control: the agent's Unix control socket, spoken by weibaoctl.
 *
 * Protocol: the client sends one command line ("status\n", at most
 * CONTROL_LINE_MAX bytes); the agent answers with one JSON document and closes
 * the connection. Every answer has "ok": true|false and, when false, "error".
 * The socket is created mode 0660 (the directory decides who may connect). */
#pragma once

#include <cjson/cJSON.h>

#define CONTROL_LINE_MAX 4096
#define CONTROL_CLIENTS_MAX 16

struct control;
struct loop;

/* Answers one command; returns a new JSON object that control sends and frees
 * (NULL: an "out of memory" error answer is sent). argv[0] is the command. */
typedef cJSON *(*control_handler_fn)(int argc, char **argv, void *userdata);

/* Binds path (replacing a stale socket file) and listens on loop. Returns 0
 * and a handle (caller frees with control_free, which unlinks path), or
 * negative errno. */
int control_new(struct loop *loop, const char *path, control_handler_fn fn, void *userdata, struct control **ret);
void control_free(struct control *c);
