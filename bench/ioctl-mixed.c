/*
 * The ioctl benchmark's mixed workload, C side (bench/ioctl.ts runs it under
 * `iommufs exec`): one IOAS with a selftest access, then N rounds of
 * IOAS_MAP (4 KiB, automatic IOVA), IOAS_COPY of it within the IOAS,
 * IOMMU_TEST_CMD ACCESS_RW reading 64 bytes through the access, and
 * IOAS_UNMAP of everything. Prints "rounds=<N> ns=<total>" for the measured
 * rounds.
 *
 *   iommufs exec -- dist/bench/ioctl-mixed N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "iommufd.h"

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int fail(const char *what)
{
	fprintf(stderr, "ioctl-mixed: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000;
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("/dev/iommu");
	uint8_t *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return fail("mmap");
	memset(buf, 0x5a, 4096);
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &ioas))
		return fail("IOMMU_IOAS_ALLOC");
	struct iommu_test_cmd create = { .size = sizeof(create), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas.out_ioas_id };
	if (ioctl(fd, IOMMU_TEST_CMD, &create))
		return fail("CREATE_ACCESS");
	uint8_t out[64];
	long long t0 = now_ns();
	for (int i = 0; i < n; i++) {
		struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, .ioas_id = ioas.out_ioas_id, .user_va = (uintptr_t)buf, .length = 4096 };
		if (ioctl(fd, IOMMU_IOAS_MAP, &map))
			return fail("IOMMU_IOAS_MAP");
		struct iommu_ioas_copy copy = { .size = sizeof(copy), .flags = IOMMU_IOAS_MAP_READABLE, .dst_ioas_id = ioas.out_ioas_id, .src_ioas_id = ioas.out_ioas_id, .length = 4096, .src_iova = map.iova };
		if (ioctl(fd, IOMMU_IOAS_COPY, &copy))
			return fail("IOMMU_IOAS_COPY");
		struct iommu_test_cmd rw = { .size = sizeof(rw), .op = IOMMU_TEST_OP_ACCESS_RW, .id = create.create_access.out_access_fd,
					     .access_rw = { .iova = copy.dst_iova, .length = sizeof out, .uptr = (uintptr_t)out } };
		if (ioctl(fd, IOMMU_TEST_CMD, &rw))
			return fail("ACCESS_RW");
		if (out[0] != 0x5a || out[63] != 0x5a) {
			fprintf(stderr, "ioctl-mixed: ACCESS_RW read 0x%02x..0x%02x, expected 0x5a\n", out[0], out[63]);
			return 1;
		}
		struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = ioas.out_ioas_id, .iova = 0, .length = UINT64_MAX };
		if (ioctl(fd, IOMMU_IOAS_UNMAP, &unmap) || unmap.length != 8192)
			return fail("IOMMU_IOAS_UNMAP");
	}
	long long t1 = now_ns();
	printf("rounds=%d ns=%lld\n", n, t1 - t0);
	close(create.create_access.out_access_fd);
	close(fd);
	return 0;
}
