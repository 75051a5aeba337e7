/* Keeping the other CPUs out of idle while the server busy-polls (warm.c). */
#ifndef IOMMUFS_WARM_H
#define IOMMUFS_WARM_H

/* The server lingers on its CPU until `until` (monotonic ns): spin on the others till then, and a grace after. */
void warm_others(long long until);

/* The server stops lingering: the warmers stop after their grace. */
void warm_stop(void);

#endif
