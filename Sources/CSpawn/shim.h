#ifndef DLHUB_CSPAWN_SHIM_H
#define DLHUB_CSPAWN_SHIM_H

#include <spawn.h>
#include <signal.h>

/* glibc (2.34+) has these, but declares them only under _GNU_SOURCE, which Swift's Glibc module
   is not built with. Declared again here, exactly as glibc's <spawn.h> does. */
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int);
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *__restrict, const char *__restrict);

/* Close every descriptor from `from` up in the child: nothing of the parent's leaks into it. */
static inline int cspawn_add_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

extern int pipe2(int pipefd[2], int flags);

/* A pipe whose two ends close at exec: only what a spawn dup2s survives into the child. */
static inline int cspawn_pipe_cloexec(int ends[2]) {
    return pipe2(ends, 02000000 /* O_CLOEXEC */);
}

static inline int cspawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

#endif
