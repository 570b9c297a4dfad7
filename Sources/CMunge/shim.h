#ifndef DLHUB_CMUNGE_SHIM_H
#define DLHUB_CMUNGE_SHIM_H

#include <stdlib.h>
#include <sys/types.h>
#include <munge.h>

/* munge_ctx_set/munge_ctx_get are variadic, which Swift cannot call. */
static inline munge_err_t cmunge_ctx_set_ttl(munge_ctx_t ctx, int ttl) {
    return munge_ctx_set(ctx, MUNGE_OPT_TTL, ttl);
}
static inline munge_err_t cmunge_ctx_set_socket(munge_ctx_t ctx, const char *path) {
    return munge_ctx_set(ctx, MUNGE_OPT_SOCKET, path);
}
static inline munge_err_t cmunge_ctx_get_encode_time(munge_ctx_t ctx, time_t *t) {
    return munge_ctx_get(ctx, MUNGE_OPT_ENCODE_TIME, t);
}

#endif
