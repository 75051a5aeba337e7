/*
 * IOMMU_TEST_CMD and VFIO type1 compat through the shim, as a kernel
 * selftest drives them: one line per check, "NAME: ok" or "NAME: err ERRNO",
 * with values where the test compares them (test/integration/selftest.test.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iommufd.h"

#define VFIO_CHECK_EXTENSION_CMD _IO(';', 100 + 1)
#define VFIO_GET_API_VERSION_CMD _IO(';', 100 + 0)

static void report(const char *name, int rc)
{
	if (rc < 0)
		printf("%s: err %s\n", name, strerrorname_np(errno));
	else
		printf("%s: ok ret=%d\n", name, rc);
}

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static int refs(int fd, void *buf, size_t len, unsigned n)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MD_CHECK_REFS, .check_refs = { .length = len, .uptr = (uintptr_t)buf, .refs = n } };
	return test_cmd(fd, &c);
}

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return 1;
	report("api_version", ioctl(fd, VFIO_GET_API_VERSION_CMD));
	report("check_extension_v2", ioctl(fd, VFIO_CHECK_EXTENSION_CMD, 3));
	report("check_extension_vaddr", ioctl(fd, VFIO_CHECK_EXTENSION_CMD, 10));
	report("unknown_op", test_cmd(fd, &(struct iommu_test_cmd){ .op = 99 }));

	uint8_t *buf = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 16 * 4096; i++)
		buf[i] = (uint8_t)i;
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &ioas);
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas.out_ioas_id };
	report("mock_domain", test_cmd(fd, &md));
	printf("ids: stdev=%u idev=%u hwpt=%u\n", md.mock_domain.out_stdev_id, md.mock_domain.out_idev_id, md.mock_domain.out_hwpt_id);

	struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
				      .ioas_id = ioas.out_ioas_id, .user_va = (uintptr_t)buf, .length = 16 * 4096, .iova = 1 << 24 };
	report("map", ioctl(fd, IOMMU_IOAS_MAP, &map));
	report("refs_1", refs(fd, buf, 16 * 4096, 1));
	struct iommu_test_cmd cm = { .op = IOMMU_TEST_OP_MD_CHECK_MAP, .id = md.mock_domain.out_hwpt_id, .check_map = { .iova = 1 << 24, .length = 16 * 4096, .uptr = (uintptr_t)buf } };
	report("check_map", test_cmd(fd, &cm));

	struct iommu_test_cmd ca = { .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas.out_ioas_id, .create_access = { .flags = 1 } };
	report("create_access", test_cmd(fd, &ca));
	int afd = (int)ca.create_access.out_access_fd;
	printf("access_fd_is_open: %s\n", fcntl(afd, F_GETFD) >= 0 && (fcntl(afd, F_GETFD) & FD_CLOEXEC) ? "yes" : "no");

	uint8_t out[100];
	struct iommu_test_cmd rw = { .op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)afd, .access_rw = { .iova = (1 << 24) + 4096 - 50, .length = sizeof(out), .uptr = (uintptr_t)out } };
	report("rw_read", test_cmd(fd, &rw));
	printf("rw_read_matches: %s\n", memcmp(out, buf + 4096 - 50, sizeof(out)) == 0 ? "yes" : "no");
	memset(out, 0xee, sizeof(out));
	rw.access_rw.flags = 1;
	report("rw_write", test_cmd(fd, &rw));
	printf("rw_write_landed: %s\n", buf[4096 - 50] == 0xee && buf[4096 + 49] == 0xee && buf[4096 + 50] != 0xee ? "yes" : "no");

	struct iommu_test_cmd ap = { .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = (uint32_t)afd, .access_pages = { .iova = 1 << 24, .length = 4096, .uptr = (uintptr_t)buf } };
	report("access_pages", test_cmd(fd, &ap));
	ap.access_pages.uptr = (uintptr_t)(buf + 4096);
	report("access_pages_wrong_uptr", test_cmd(fd, &ap));
	report("refs_still_1", refs(fd, buf, 4096, 1));
	close(afd);
	struct iommu_ioas_unmap un = { .size = sizeof(un), .ioas_id = ioas.out_ioas_id, .iova = 0, .length = UINT64_MAX };
	ioctl(fd, IOMMU_IOAS_UNMAP, &un);
	report("refs_0_after_close", refs(fd, buf, 16 * 4096, 0));

	/* VFIO type1: the compat IOAS, then GET_INFO into a buffer filled with 0xAA past argsz */
	struct iommu_vfio_ioas vi = { .size = sizeof(vi), .ioas_id = ioas.out_ioas_id, .op = 1 };
	ioctl(fd, IOMMU_VFIO_IOAS, &vi);
	report("set_iommu", ioctl(fd, _IO(';', 100 + 2), 3));
	uint8_t info[128];
	memset(info, 0xaa, sizeof(info));
	*(uint32_t *)info = 60;
	report("get_info_60", ioctl(fd, _IO(';', 100 + 12), info));
	int clean = 1;
	for (int i = 60; i < 128; i++)
		clean &= info[i] == 0xaa;
	printf("get_info_60: argsz=%u cap_offset=%u next=%u untouched_past_argsz=%s\n", *(uint32_t *)info, *(uint32_t *)(info + 16), *(uint32_t *)(info + 28), clean ? "yes" : "no");
	close(fd);
	return 0;
}
