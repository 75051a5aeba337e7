/*
 * A fault queue's (and a vEVENTQ's) descriptor holds its iommufd context, as the kernel's
 * file does: closing the iommufd while the queue is open destroys nothing
 * (the mapping stays pinned, the queued page request can still be read and
 * answered); the queue's close then destroys the context before close()
 * returns (the pins are gone at once). Pins are read through a second
 * context (MD_CHECK_REFS counts every context's).
 *
 * One line per check (test/integration/pins.test.ts).
 */
#include "example.h" /* first: it sets _GNU_SOURCE */
#include <sys/mman.h>

#define PG 4096

static void report(const char *name, long rc)
{
	if (rc < 0)
		printf("%s: %s\n", name, errno_name(errno));
	else
		printf("%s: ok %ld\n", name, rc);
}

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static int refs(int fd, void *p, size_t len, unsigned n)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MD_CHECK_REFS, .check_refs = { .length = len, .uptr = (uintptr_t)p, .refs = n } };
	return test_cmd(fd, &c);
}

int main(void)
{
	int fd = open_node("/dev/iommu");
	int probe = open_node("/dev/iommu");
	uint8_t *buf = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(buf, 7, 4 * PG);

	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &ioas);
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas.out_ioas_id };
	report("mock_domain", test_cmd(fd, &md));
	struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
				      .ioas_id = ioas.out_ioas_id, .user_va = (uintptr_t)buf, .length = 4 * PG, .iova = 1 << 24 };
	report("map", ioctl(fd, IOMMU_IOAS_MAP, &map));

	/* a page request waiting in a fault queue */
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	report("fault_alloc", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	int qfd = (int)fa.out_fault_fd;
	struct iommu_hwpt_alloc pa = { .size = sizeof(pa), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = md.mock_domain.out_idev_id, .pt_id = ioas.out_ioas_id };
	report("parent_hwpt", ioctl(fd, IOMMU_HWPT_ALLOC, &pa));
	struct iommu_hwpt_selftest data = { .iotlb = 0xbadbeef };
	struct iommu_hwpt_alloc na = { .size = sizeof(na), .flags = IOMMU_HWPT_FAULT_ID_VALID, .dev_id = md.mock_domain.out_idev_id, .pt_id = pa.out_hwpt_id,
				       .data_type = 0xdead, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data, .fault_id = fa.out_fault_id };
	report("iopf_hwpt", ioctl(fd, IOMMU_HWPT_ALLOC, &na));
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = md.mock_domain.out_stdev_id, .mock_domain_replace = { .pt_id = na.out_hwpt_id } };
	report("replace_to_iopf", test_cmd(fd, &rep));
	struct iommu_test_cmd trig = { .op = IOMMU_TEST_OP_TRIGGER_IOPF, .trigger_iopf = { .dev_id = md.mock_domain.out_idev_id, .pasid = 1, .grpid = 2, .perm = 3, .addr = 0xdeadbeaf } };
	report("trigger_iopf", test_cmd(fd, &trig));
	report("refs_1", refs(probe, buf, 4 * PG, 1));

	/* the iommufd goes; its queue keeps the context */
	report("close_iommufd", close(fd));
	report("iommufd_closed", fcntl(fd, F_GETFD));
	report("refs_1_while_queue_open", refs(probe, buf, 4 * PG, 1));
	uint32_t pf[10];
	ssize_t got = read(qfd, pf, sizeof(pf));
	printf("fault_read: bytes=%zd dev_id=%u grpid=%u addr=0x%llx\n", got, pf[1], pf[3], (unsigned long long)pf[6] | (unsigned long long)pf[7] << 32);
	uint32_t good[2] = { pf[9], 0 };
	report("fault_respond", write(qfd, good, sizeof(good)));

	/* the queue's close is the context's last: everything goes before close() returns */
	report("close_queue", close(qfd));
	report("refs_0_after_queue_close", refs(probe, buf, 4 * PG, 0));

	/* the same with a vEVENTQ */
	fd = open_node("/dev/iommu");
	ioctl(fd, IOMMU_IOAS_ALLOC, &ioas);
	md.id = ioas.out_ioas_id;
	report("v_mock_domain", test_cmd(fd, &md));
	map.ioas_id = ioas.out_ioas_id;
	report("v_map", ioctl(fd, IOMMU_IOAS_MAP, &map));
	pa.dev_id = md.mock_domain.out_idev_id;
	pa.pt_id = ioas.out_ioas_id;
	report("v_parent_hwpt", ioctl(fd, IOMMU_HWPT_ALLOC, &pa));
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST, .dev_id = md.mock_domain.out_idev_id, .hwpt_id = pa.out_hwpt_id };
	report("viommu", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va));
	struct iommu_veventq_alloc vq = { .size = sizeof(vq), .viommu_id = va.out_viommu_id, .type = IOMMU_VEVENTQ_TYPE_SELFTEST, .veventq_depth = 2 };
	report("veventq_alloc", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &vq));
	report("v_close_iommufd", close(fd));
	report("v_refs_1_while_veventq_open", refs(probe, buf, 4 * PG, 1));
	report("close_veventq", close((int)vq.out_veventq_fd));
	report("v_refs_0_after_veventq_close", refs(probe, buf, 4 * PG, 0));
	return 0;
}
