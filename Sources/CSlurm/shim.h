#ifndef DLHUB_CSLURM_SHIM_H
#define DLHUB_CSLURM_SHIM_H

#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>

/* libslurm exports these string helpers but slurm.h (22.05) does not declare them. */
extern char *slurm_job_reason_string(enum job_state_reason inx);
extern char *slurm_job_state_string(uint32_t inx);
/* Named in slurm.h's comment on slurm_job_will_run2 but not declared there. */
extern void slurm_free_will_run_response_msg(will_run_response_msg_t *msg);

/* Macros Swift cannot import, as prefixed helpers. */
static inline uint32_t cslurm_job_state_base(uint32_t state) { return state & JOB_STATE_BASE; }
static inline int cslurm_job_is_completing(uint32_t state) { return (state & JOB_COMPLETING) != 0; }
static inline uint32_t cslurm_no_val(void) { return NO_VAL; }
static inline uint16_t cslurm_no_val16(void) { return NO_VAL16; }
static inline uint32_t cslurm_infinite(void) { return INFINITE; }
static inline int cslurm_invalid_partition_error(void) { return ESLURM_INVALID_PARTITION_NAME; }
static inline int cslurm_invalid_job_id_error(void) { return ESLURM_INVALID_JOB_ID; }
static inline int cslurm_already_done_error(void) { return ESLURM_ALREADY_DONE; }

#endif
