/*
 * vodforge-pdeathsig PARENT_PID PROGRAM [ARG...]
 *
 * Exec PROGRAM so that the kernel SIGKILLs it when the thread that started it dies
 * (PR_SET_PDEATHSIG): a worker killed with SIGKILL must not leave an orphan ffmpeg running.
 * Python's subprocess can only vfork+exec (a preexec_fn forces a full fork of a large worker),
 * so the signal is set here, between the vfork and ffmpeg's exec. util-linux's setpriv does the
 * same, but costs ~0.8 ms of CPU per call (dynamic linking, option parsing); this static binary
 * about 0.3 ms. Unlike setpriv it also closes the race where the parent died before prctl:
 * PARENT_PID must still be our parent afterwards, or nothing runs.
 *
 * Exit 127 (and a line on stderr) when it cannot run PROGRAM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PARENT_PID PROGRAM [ARG...]\n", argv[0]);
        return 127;
    }
    char *end = NULL;
    long parent = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || parent <= 1) {
        fprintf(stderr, "%s: bad parent pid %s\n", argv[0], argv[1]);
        return 127;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        fprintf(stderr, "%s: prctl: %s\n", argv[0], strerror(errno));
        return 127;
    }
    if (getppid() != (pid_t)parent) {
        fprintf(stderr, "%s: parent %ld is gone\n", argv[0], parent);
        return 127;
    }
    execv(argv[2], argv + 2);
    fprintf(stderr, "%s: %s\n", argv[2], strerror(errno));
    return 127;
}
