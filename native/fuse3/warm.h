/* Keeping the other CPUs out of idle while the server busy-polls (warm.c). */
#ifndef IOMMUFS_WARM_H
#define IOMMUFS_WARM_H

/* The server, at `now` on its CPU, lingers until `until` (monotonic ns): spin on the others till then. */
void warm_others(long long now, long long until);

/* The server stops lingering: so do the warmers. */
void warm_stop(void);

#endif
