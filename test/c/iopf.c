/*
 * IOPF through the shim, with the kernel's fault-queue uAPI: a fault queue,
 * a paging HWPT using it (IOMMU_HWPT_FAULT_ID_VALID), a DMA (IOMMUFS_DMA)
 * to an unmapped IOVA that comes back PENDING, the page request read from the
 * queue's descriptor, the page mapped, the response written, and the DMA's
 * end asked on the device's DMA port. Then the errnos: a read or write of
 * the wrong size (ESPIPE), a bad code and an unknown cookie (EINVAL). Last,
 * a DMA left pending: closing the queue's descriptor leaves it pending (the
 * kernel's release only drops a reference); closing the device and the
 * iommufd detaches it and destroys the HWPT, which answers it INVALID.
 *
 *   iommufs exec -- dist/test/c/iopf [VFIO_NODE [PCI]]
 * One line per step (test/integration/iopf.test.ts compares them).
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

/* the kernel's struct iommu_hwpt_pgfault and struct iommu_hwpt_page_response */
struct pgfault {
	uint32_t flags, dev_id, pasid, grpid, perm, reserved;
	uint64_t addr;
	uint32_t length, cookie;
};
struct page_response {
	uint32_t cookie, code;
};

/* One request on the device's DMA port (a debug-tree file of the mount); the reply's first line into `line`. */
static void port(const char *pci, const char *req, char *line, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/sys/kernel/debug/iommufd/dma/%s", getenv("IOMMUFS_MOUNT") ? getenv("IOMMUFS_MOUNT") : ".", pci);
	int fd = open(path, O_RDWR);
	if (fd < 0 || write(fd, req, strlen(req)) < 0) {
		snprintf(line, n, "port: err %s", errno_name(errno));
		return;
	}
	ssize_t got = read(fd, line, n - 1);
	line[got > 0 ? got : 0] = 0;
	close(fd);
}

/* "result: FIRST LINE / SECOND LINE" of `result dma=ID` */
static void result(const char *pci, unsigned long long id)
{
	char req[64], line[4096];
	snprintf(req, sizeof(req), "result dma=%llu\n", id);
	port(pci, req, line, sizeof(line));
	char *nl = strchr(line, '\n');
	printf("result: %.*s / %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line, nl ? (int)strcspn(nl + 1, "\n") : 0, nl ? nl + 1 : "");
}

static void say(const char *step, long rc)
{
	if (rc < 0)
		printf("%s: err %s\n", step, errno_name(errno));
	else
		printf("%s: ok ret=%ld\n", step, rc);
}

int main(int argc, char **argv)
{
	const char *pci = argc > 2 ? argv[2] : "0000:00:01.0";
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node(argc > 1 ? argv[1] : "/dev/vfio/devices/vfio0");

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("bind", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("ioas", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf("\n");
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	MUST("fault_queue", iommufd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
	printf(" fd_is_open=%s\n", fcntl((int)fa.out_fault_fd, F_GETFD) >= 0 ? "yes" : "no");
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha), .flags = IOMMU_HWPT_FAULT_ID_VALID, .dev_id = bind.out_devid, .pt_id = ioas.out_ioas_id, .fault_id = fa.out_fault_id };
	MUST("hwpt", iommufd, IOMMU_HWPT_ALLOC, &ha);
	printf("\n");
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = ha.out_hwpt_id };
	MUST("attach", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
	printf("\n");

	/* a read of an IOVA nothing maps: held, PENDING */
	char got[16] = { 0 };
	struct iommufs_dma rd = { .size = sizeof(rd), .dev_id = bind.out_devid, .iova = 0x200000, .length = 8, .out_data_uptr = (uintptr_t)got };
	MUST("dma", iommufd, IOMMUFS_DMA, &rd);
	printf(" status=%u dma_id=%llu stall=%llu\n", rd.out_status, (unsigned long long)rd.out_addr, (unsigned long long)(rd.out_event[1] >> 31) & 1);

	int qfd = (int)fa.out_fault_fd;
	struct pgfault pf[2];
	say("read_39", read(qfd, pf, 39));
	/* 0 bytes cannot hold the queued group: EINVAL (on an empty queue, 0) */
	say("read_0_pending", read(qfd, pf, 0));
	ssize_t n = read(qfd, pf, sizeof(pf));
	printf("read: bytes=%zd flags=%u dev_id=%u pasid=%u grpid=%u perm=%u addr=0x%llx length=%u cookie=%u\n", n, pf[0].flags, pf[0].dev_id, pf[0].pasid, pf[0].grpid, pf[0].perm,
	       (unsigned long long)pf[0].addr, pf[0].length, pf[0].cookie);
	say("read_empty", read(qfd, pf, sizeof(pf)));
	say("read_0_empty", read(qfd, pf, 0));

	struct page_response bad_code = { pf[0].cookie, 7 }, unknown = { pf[0].cookie + 10, 0 }, ok = { pf[0].cookie, 0 };
	say("write_7", write(qfd, &ok, 7));
	say("write_bad_code", write(qfd, &bad_code, sizeof(bad_code)));
	say("write_unknown_cookie", write(qfd, &unknown, sizeof(unknown)));

	/* the fix: a page at 0x200000, then SUCCESS: the DMA is retried */
	static char page[4096] __attribute__((aligned(4096))) = "retried!";
	struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
				      .ioas_id = ioas.out_ioas_id, .user_va = (uintptr_t)page, .length = 4096, .iova = 0x200000 };
	MUST("map", iommufd, IOMMU_IOAS_MAP, &map);
	printf("\n");
	say("respond", write(qfd, &ok, sizeof(ok)));
	say("respond_again", write(qfd, &ok, sizeof(ok)));
	result(pci, rd.out_addr);

	/* closing the queue's descriptor only drops it: a held DMA stays pending until its HWPT goes */
	struct iommufs_dma rd2 = { .size = sizeof(rd2), .dev_id = bind.out_devid, .iova = 0x300000, .length = 8, .out_data_uptr = (uintptr_t)got };
	MUST("dma2", iommufd, IOMMUFS_DMA, &rd2);
	printf(" status=%u dma_id=%llu\n", rd2.out_status, (unsigned long long)rd2.out_addr);
	say("close_queue", close(qfd));
	result(pci, rd2.out_addr);
	say("close_device", close(devfd));
	say("close_iommufd", close(iommufd));
	result(pci, rd2.out_addr);
	return 0;
}
