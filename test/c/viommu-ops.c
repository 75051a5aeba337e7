/*
 * The mock vIOMMU through the shim, as the kernel selftest drives it: one
 * line per check, "NAME: ok" or "NAME: err ERRNO", with values where the
 * test compares them (test/integration/selftest.test.ts). VIOMMU_ALLOC with
 * data and mmap of its region, HW queues, PASID attach and its fault queue,
 * the vEVENTQ's descriptor and the vIOMMU it holds.
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

#define PAGE 4096

static void report(const char *name, long rc)
{
	if (rc < 0)
		printf("%s: err %s\n", name, strerrorname_np(errno));
	else
		printf("%s: ok ret=%ld\n", name, rc);
}

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static int destroy(int fd, uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };
	return ioctl(fd, IOMMU_DESTROY, &d);
}

static long map_at(int fd, uint64_t len, uint64_t off, int flags, int prot)
{
	void *p = mmap(NULL, len, prot, flags, fd, (off_t)off);
	return p == MAP_FAILED ? -1 : 0;
}

static int hw_queue(int fd, uint32_t viommu, uint32_t type, uint32_t index, uint64_t iova, uint64_t len, uint32_t *id)
{
	struct iommu_hw_queue_alloc q = { .size = sizeof(q), .viommu_id = viommu, .type = type, .index = index, .nesting_parent_iova = iova, .length = len };
	int rc = ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &q);
	if (id)
		*id = q.out_hw_queue_id;
	return rc;
}

static int pasid_op(int fd, uint32_t op, uint32_t stdev, uint32_t pasid, uint32_t pt)
{
	struct iommu_test_cmd c = { .op = op, .id = stdev, .pasid_attach = { .pasid = pasid, .pt_id = pt } };
	return test_cmd(fd, &c);
}

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return 1;
	uint8_t *buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &ioas);
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = ioas.out_ioas_id, .mock_domain = { .dev_flags = 4 } };
	report("mock_domain_pasid", test_cmd(fd, &md));
	uint32_t stdev = md.mock_domain.out_stdev_id, idev = md.mock_domain.out_idev_id;
	struct iommu_hwpt_alloc pa = { .size = sizeof(pa), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = idev, .pt_id = ioas.out_ioas_id };
	report("parent", ioctl(fd, IOMMU_HWPT_ALLOC, &pa));

	/* a vIOMMU with data: in_data comes back, with a 2-page region of the iommufd */
	struct iommu_viommu_selftest data = { .in_data = 0xbeef };
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST, .dev_id = idev, .hwpt_id = pa.out_hwpt_id, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data };
	report("viommu_with_data", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va));
	printf("viommu_data: out_data=0x%x offset=0x%llx length=0x%llx\n", data.out_data, (unsigned long long)data.out_mmap_offset, (unsigned long long)data.out_mmap_length);
	uint64_t off = data.out_mmap_offset, len = data.out_mmap_length;
	report("mmap_offset_plus_page", map_at(fd, len, off + PAGE, MAP_SHARED, PROT_READ));
	report("mmap_offset_plus_2_pages", map_at(fd, len, off + 2 * PAGE, MAP_SHARED, PROT_READ));
	report("mmap_half", map_at(fd, len / 2, off, MAP_SHARED, PROT_READ));
	report("mmap_double", map_at(fd, len * 2, off, MAP_SHARED, PROT_READ));
	report("mmap_private", map_at(fd, len, off, MAP_PRIVATE, PROT_READ));
	uint32_t *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	printf("mmap: %s first_word=0x%x\n", region == MAP_FAILED ? "failed" : "mapped", region == MAP_FAILED ? 0 : region[0]);
	if (region != MAP_FAILED) {
		/* written and synced: under exec --namespace the kernel writes the page back to the file, which is no request */
		region[1] = 0x1234;
		report("msync_written", msync(region, len, MS_SYNC));
		printf("mmap_after_msync: first_word=0x%x second_word=0x%x\n", region[0], region[1]);
	}
	report("destroy_viommu_mapped", destroy(fd, va.out_viommu_id));
	munmap(region, len);
	report("destroy_viommu_unmapped", destroy(fd, va.out_viommu_id));

	/* a vIOMMU without data, its HW queues over the parent's IOAS */
	va.data_len = 0;
	va.data_uptr = 0;
	report("viommu", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va));
	uint32_t viommu = va.out_viommu_id, q0 = 0, q1 = 0;
	report("hw_queue_default", hw_queue(fd, viommu, 0, 0, 1 << 24, PAGE, NULL));
	report("hw_queue_unmapped", hw_queue(fd, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, 1 << 24, PAGE, NULL));
	struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
				      .ioas_id = ioas.out_ioas_id, .user_va = (uintptr_t)buf, .length = PAGE, .iova = 1 << 24 };
	report("map", ioctl(fd, IOMMU_IOAS_MAP, &map));
	report("hw_queue_index_1_first", hw_queue(fd, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 1, 1 << 24, PAGE, NULL));
	report("hw_queue_0", hw_queue(fd, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, 1 << 24, PAGE, &q0));
	report("hw_queue_1", hw_queue(fd, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 1, (1 << 24) + PAGE / 2, PAGE / 2, &q1));
	struct iommu_ioas_unmap un = { .size = sizeof(un), .ioas_id = ioas.out_ioas_id, .iova = 1 << 24, .length = PAGE };
	report("unmap_owned", ioctl(fd, IOMMU_IOAS_UNMAP, &un));
	report("destroy_queue_0_first", destroy(fd, q0));
	report("destroy_queue_1", destroy(fd, q1));
	report("destroy_queue_0", destroy(fd, q0));
	report("unmap", ioctl(fd, IOMMU_IOAS_UNMAP, &un));

	/* PASIDs: a PASID-compatible domain on the RID, the fault of PASID 1024, a page request on a PASID */
	struct iommu_hwpt_alloc s2 = { .size = sizeof(s2), .flags = IOMMU_HWPT_ALLOC_PASID, .dev_id = idev, .pt_id = ioas.out_ioas_id };
	report("s2_pasid", ioctl(fd, IOMMU_HWPT_ALLOC, &s2));
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev, .mock_domain_replace = { .pt_id = s2.out_hwpt_id } };
	report("rid_to_s2", test_cmd(fd, &rep));
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	report("fault_alloc", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	struct iommu_hwpt_selftest nd = { .iotlb = 0xbadbeef };
	struct iommu_hwpt_alloc iopf = { .size = sizeof(iopf), .flags = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID, .dev_id = idev, .pt_id = pa.out_hwpt_id,
					 .data_type = 0xdead, .data_len = sizeof(nd), .data_uptr = (uintptr_t)&nd, .fault_id = fa.out_fault_id };
	report("iopf_hwpt", ioctl(fd, IOMMU_HWPT_ALLOC, &iopf));
	report("pasid_attach_ioas", pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, 100, ioas.out_ioas_id));
	report("pasid_attach_parent", pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, 100, pa.out_hwpt_id));
	report("pasid_1024_attach", pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, 1024, s2.out_hwpt_id));
	report("pasid_1024_attach_again", pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, 1024, s2.out_hwpt_id));
	report("pasid_1024_replace", pasid_op(fd, IOMMU_TEST_OP_PASID_REPLACE, stdev, 1024, iopf.out_hwpt_id));
	struct iommu_test_cmd chk = { .op = IOMMU_TEST_OP_PASID_CHECK_HWPT, .id = stdev, .pasid_check = { .pasid = 1024, .hwpt_id = s2.out_hwpt_id } };
	report("pasid_1024_still_s2", test_cmd(fd, &chk));
	report("pasid_1024_detach", pasid_op(fd, IOMMU_TEST_OP_PASID_DETACH, stdev, 1024, 0));
	report("pasid_2048_attach_iopf", pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, 2048, iopf.out_hwpt_id));
	struct iommu_test_cmd trig = { .op = IOMMU_TEST_OP_TRIGGER_IOPF, .trigger_iopf = { .dev_id = idev, .pasid = 2048, .grpid = 2, .perm = 1, .addr = 0x1000 } };
	report("trigger_iopf_pasid", test_cmd(fd, &trig));
	uint32_t pf[10];
	ssize_t got = read((int)fa.out_fault_fd, pf, sizeof(pf));
	printf("fault_read: bytes=%zd flags=%u pasid=%u\n", got, pf[0], pf[2]);
	report("destroy_iopf_attached", destroy(fd, iopf.out_hwpt_id));
	report("pasid_2048_detach", pasid_op(fd, IOMMU_TEST_OP_PASID_DETACH, stdev, 2048, 0));
	chk.pasid_check.pasid = 2048;
	chk.pasid_check.hwpt_id = 0;
	report("pasid_2048_detached", test_cmd(fd, &chk));
	report("destroy_iopf", destroy(fd, iopf.out_hwpt_id));
	close((int)fa.out_fault_fd);
	report("destroy_fault", destroy(fd, fa.out_fault_id));

	/* a vEVENTQ: its descriptor holds it until close(), and it holds the vIOMMU until destroyed */
	struct iommu_veventq_alloc vq = { .size = sizeof(vq), .viommu_id = viommu, .type = IOMMU_VEVENTQ_TYPE_SELFTEST, .veventq_depth = 2 };
	report("veventq_alloc", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &vq));
	report("destroy_veventq_fd_open", destroy(fd, vq.out_veventq_id));
	report("destroy_viommu_veventq_open", destroy(fd, viommu));
	/* the queue's file has no mmap, as the kernel's has none */
	report("mmap_veventq_shared", map_at((int)vq.out_veventq_fd, PAGE, 0, MAP_SHARED, PROT_READ));
	close((int)vq.out_veventq_fd);
	report("destroy_viommu_veventq_closed", destroy(fd, viommu));
	report("destroy_veventq", destroy(fd, vq.out_veventq_id));
	report("destroy_viommu", destroy(fd, viommu));

	/* nor is a VFIO device's node mapped shared: its regions are not modelled */
	int vfio = open("/dev/vfio/devices/vfio0", O_RDWR);
	report("mmap_vfio_shared", map_at(vfio, PAGE, 0, MAP_SHARED, PROT_READ));
	close(vfio);
	close(fd);
	return 0;
}
