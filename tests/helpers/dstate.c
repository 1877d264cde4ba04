/* dstate: a process that stays in state D (uninterruptible sleep) for the
 * seconds given, for the process collector's "stuck" test. A vfork parent
 * waits for its child to exec or exit in TASK_KILLABLE, which /proc shows
 * as D, so no kernel module, hung NFS mount or FUSE server is needed.
 *
 * The child only sleeps and _exits, as little as vfork allows. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        unsigned seconds = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 10;
        pid_t pid = vfork();

        if (pid == 0) {
                sleep(seconds);
                _exit(0);
        }
        if (pid < 0) {
                perror("dstate: vfork");
                return 1;
        }
        return 0;
}
