/*
 * The ioctl benchmark's C side (bench/ioctl.ts runs it under `iommufs exec`):
 * one IOAS, then WARMUP + N calls of IOMMU_IOAS_IOVA_RANGES, each timed on
 * CLOCK_MONOTONIC. Prints "ranges=<num_iovas> ns=<t1>,<t2>,..." (the measured
 * calls only) so the caller computes every statistic the same way.
 *
 *   iommufs exec -- dist/bench/ioctl-loop N WARMUP
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "iommufd.h"

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	int warmup = argc > 2 ? atoi(argv[2]) : 200;
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ioctl-loop: /dev/iommu: %s\n", strerror(errno));
		return 1;
	}
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &ioas)) {
		fprintf(stderr, "ioctl-loop: IOMMU_IOAS_ALLOC: %s\n", strerror(errno));
		return 1;
	}
	long long *ns = calloc((size_t)n, sizeof *ns);
	struct iommu_iova_range ranges[4];
	struct iommu_ioas_iova_ranges r = { 0 };
	for (int i = -warmup; i < n; i++) {
		r = (struct iommu_ioas_iova_ranges){ .size = sizeof(r), .ioas_id = ioas.out_ioas_id, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges };
		long long t0 = now_ns();
		int rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r);
		long long t1 = now_ns();
		if (rc) {
			fprintf(stderr, "ioctl-loop: IOMMU_IOAS_IOVA_RANGES: %s\n", strerror(errno));
			return 1;
		}
		if (i >= 0)
			ns[i] = t1 - t0;
	}
	printf("ranges=%u ns=", r.num_iovas);
	for (int i = 0; i < n; i++)
		printf("%s%lld", i ? "," : "", ns[i]);
	printf("\n");
	close(fd);
	return 0;
}
