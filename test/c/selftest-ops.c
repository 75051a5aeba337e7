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

	/* a fault queue: its descriptor reads the page request a mock device raises and takes the response */
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	report("fault_alloc", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	uint32_t parent = 0, iopf = 0;
	struct iommu_hwpt_alloc pa = { .size = sizeof(pa), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = md.mock_domain.out_idev_id, .pt_id = ioas.out_ioas_id };
	ioctl(fd, IOMMU_HWPT_ALLOC, &pa);
	parent = pa.out_hwpt_id;
	struct iommu_hwpt_selftest data = { .iotlb = 0xbadbeef };
	struct iommu_hwpt_alloc na = { .size = sizeof(na), .flags = IOMMU_HWPT_FAULT_ID_VALID, .dev_id = md.mock_domain.out_idev_id, .pt_id = parent,
				       .data_type = 0xdead, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data, .fault_id = fa.out_fault_id };
	report("iopf_hwpt", ioctl(fd, IOMMU_HWPT_ALLOC, &na));
	iopf = na.out_hwpt_id;
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = md.mock_domain.out_stdev_id, .mock_domain_replace = { .pt_id = iopf } };
	report("replace_to_iopf", test_cmd(fd, &rep));
	struct iommu_test_cmd trig = { .op = IOMMU_TEST_OP_TRIGGER_IOPF, .trigger_iopf = { .dev_id = md.mock_domain.out_idev_id, .pasid = 1, .grpid = 2, .perm = 3, .addr = 0xdeadbeaf } };
	report("trigger_iopf", test_cmd(fd, &trig));
	uint32_t pf[10];
	ssize_t got = read((int)fa.out_fault_fd, pf, sizeof(pf));
	printf("fault_read: bytes=%zd flags=%u dev_id=%u pasid=%u grpid=%u perm=%u addr=0x%llx\n", got, pf[0], pf[1], pf[2], pf[3], pf[4],
	       (unsigned long long)pf[6] | (unsigned long long)pf[7] << 32);
	uint32_t bad[2] = { pf[9] + 100, 0 }, good[2] = { pf[9], 0 };
	report("fault_respond_bad_cookie", (int)write((int)fa.out_fault_fd, bad, sizeof(bad)));
	report("fault_respond", (int)write((int)fa.out_fault_fd, good, sizeof(good)));
	struct iommu_destroy d = { .size = sizeof(d), .id = fa.out_fault_id };
	report("destroy_fault_in_use", ioctl(fd, IOMMU_DESTROY, &d));
	rep.mock_domain_replace.pt_id = ioas.out_ioas_id;
	test_cmd(fd, &rep);
	d.id = iopf;
	ioctl(fd, IOMMU_DESTROY, &d);
	d.id = fa.out_fault_id;
	/* the queue's descriptor holds it, as the kernel's file does; its close() releases it at once */
	report("destroy_fault_fd_open", ioctl(fd, IOMMU_DESTROY, &d));
	close((int)fa.out_fault_fd);
	report("destroy_fault", ioctl(fd, IOMMU_DESTROY, &d));

	/* a DMA-BUF (newer kernels): the ioctl returns its descriptor, which IOAS_MAP_FILE maps until it is revoked */
	struct iommu_test_cmd dg = { .op = IOMMU_TEST_OP_DMABUF_GET, .dmabuf_get = { .length = 4 * 4096, .open_flags = O_CLOEXEC } };
	int dfd = test_cmd(fd, &dg);
	printf("dmabuf_get: %s\n", dfd >= 0 && fcntl(dfd, F_GETFD) >= 0 ? "a descriptor" : strerrorname_np(errno));
	struct iommu_ioas_map_file mf = { .size = sizeof(mf), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, .ioas_id = ioas.out_ioas_id, .fd = dfd };
	mf.start = 0, mf.length = 0;
	report("dmabuf_map_empty", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	mf.start = 4 * 4096, mf.length = 4 * 4096;
	report("dmabuf_map_past_end", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	mf.start = 0, mf.length = 4 * 4096 + 1;
	report("dmabuf_map_one_more", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	/* a DMA-BUF's size is checked at map time even with no domain to pin for (a memfd's is not) */
	struct iommu_ioas_alloc bare = { .size = sizeof(bare) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &bare);
	mf.ioas_id = bare.out_ioas_id;
	report("dmabuf_map_one_more_no_domain", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	mf.ioas_id = ioas.out_ioas_id;
	mf.length = 4 * 4096;
	report("dmabuf_map", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	struct iommu_test_cmd dr = { .op = IOMMU_TEST_OP_DMABUF_REVOKE, .dmabuf_revoke = { .dmabuf_fd = dfd, .revoked = 1 } };
	report("dmabuf_revoke", test_cmd(fd, &dr));
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha), .dev_id = md.mock_domain.out_idev_id, .pt_id = ioas.out_ioas_id };
	report("hwpt_alloc_while_revoked", ioctl(fd, IOMMU_HWPT_ALLOC, &ha));
	report("dmabuf_map_revoked", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	dr.dmabuf_revoke.revoked = 0;
	report("dmabuf_unrevoke", test_cmd(fd, &dr));
	report("dmabuf_map_again", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	close(dfd);
	dr.dmabuf_revoke.dmabuf_fd = fd;
	report("dmabuf_revoke_not_dmabuf", test_cmd(fd, &dr));
	dr.dmabuf_revoke.dmabuf_fd = dfd;
	report("dmabuf_revoke_closed", test_cmd(fd, &dr));
	dg.dmabuf_get.length = 0;
	report("dmabuf_get_empty", test_cmd(fd, &dg));
	dg.dmabuf_get.length = 513 * 4096;
	report("dmabuf_get_too_big", test_cmd(fd, &dg));

	/* IOAS_CHANGE_PROCESS moves file pages only: a DMA-BUF's, like user memory's, make it EINVAL */
	{
		int f2 = open("/dev/iommu", O_RDWR);
		struct iommu_ioas_alloc a2 = { .size = sizeof(a2) };
		ioctl(f2, IOMMU_IOAS_ALLOC, &a2);
		int mfd = memfd_create("selftest-ops", 0);
		if (f2 < 0 || mfd < 0 || ftruncate(mfd, 4096))
			return 1;
		struct iommu_ioas_map_file m2 = { .size = sizeof(m2), .flags = IOMMU_IOAS_MAP_READABLE, .ioas_id = a2.out_ioas_id, .fd = mfd, .length = 4096 };
		ioctl(f2, IOMMU_IOAS_MAP_FILE, &m2);
		struct iommu_ioas_change_process cp = { .size = sizeof(cp) };
		report("change_process_memfd", ioctl(f2, IOMMU_IOAS_CHANGE_PROCESS, &cp));
		dg.dmabuf_get.length = 4096;
		int d2 = test_cmd(f2, &dg);
		m2.fd = d2;
		report("dmabuf_map_for_change_process", ioctl(f2, IOMMU_IOAS_MAP_FILE, &m2));
		report("change_process_dmabuf", ioctl(f2, IOMMU_IOAS_CHANGE_PROCESS, &cp));
		close(d2);
		close(mfd);
		close(f2);
	}

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
