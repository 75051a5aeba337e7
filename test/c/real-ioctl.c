/*
 * Real ioctl() calls on an iommufs mount's nodes, with no shim: built with
 * gcc -static, so nothing could be preloaded. Opens the paths it is given
 * (default /dev/iommu and /dev/vfio/devices/vfio0, as in `iommufs exec
 * --namespace`) and prints one line per step.
 *
 *   real-ioctl [IOMMU_NODE [VFIO_NODE]]
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

#include <stddef.h>
#include <sys/mman.h>

static void result(const char *step, int err)
{
	printf("%s: %s\n", step, err ? errno_name(err) : "ok");
}

int main(int argc, char **argv)
{
	int fd = open_node(argc > 1 ? argv[1] : "/dev/iommu");
	int vfio = open_node(argc > 2 ? argv[2] : "/dev/vfio/devices/vfio0");

	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	MUST("IOAS_ALLOC", fd, IOMMU_IOAS_ALLOC, &a);
	printf(" out_ioas_id=%u\n", a.out_ioas_id);

	/* the struct pointer itself is bad: EFAULT, no IOAS made */
	result("IOAS_ALLOC arg=8", do_ioctl(fd, IOMMU_IOAS_ALLOC, (void *)8));
	/* a struct in read-only memory: the ID could not be written back, so nothing is made */
	struct iommu_ioas_alloc *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro->size = sizeof(*ro);
	mprotect(ro, 4096, PROT_READ);
	result("IOAS_ALLOC read-only struct", do_ioctl(fd, IOMMU_IOAS_ALLOC, ro));
	/* a number iommufd does not have */
	result("ioctl _IO(';', 0x7f)", do_ioctl(fd, _IO(';', 0x7f), &a));
	/* the IDs go on from 1: the failed calls made nothing */
	struct iommu_ioas_alloc b = { .size = sizeof(b) };
	MUST("IOAS_ALLOC again", fd, IOMMU_IOAS_ALLOC, &b);
	printf(" out_ioas_id=%u\n", b.out_ioas_id);

	/* an input array followed into the caller's memory, an output array written there */
	struct iommu_iova_range want = { .start = 0x100000, .last = 0x1fffff };
	struct iommu_ioas_allow_iovas allow = { .size = sizeof(allow), .ioas_id = a.out_ioas_id, .num_iovas = 1, .allowed_iovas = (uintptr_t)&want };
	MUST("IOAS_ALLOW_IOVAS", fd, IOMMU_IOAS_ALLOW_IOVAS, &allow);
	printf("\n");
	struct iommu_iova_range got[2] = { 0 };
	struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = a.out_ioas_id, .num_iovas = 2, .allowed_iovas = (uintptr_t)got };
	MUST("IOAS_IOVA_RANGES", fd, IOMMU_IOAS_IOVA_RANGES, &r);
	printf(" num_iovas=%u start=0x%llx last=0x%llx\n", r.num_iovas, (unsigned long long)got[0].start, (unsigned long long)got[0].last);
	/* the output array's pointer is bad */
	r.allowed_iovas = 16;
	result("IOAS_IOVA_RANGES allowed_iovas=16", do_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r));

	/* arrays in this program's mapping of a file of the mount: a page it has not touched
	 * yet is EFAULT (the server would fault it in through FUSE from itself and wait for
	 * good); once the program has read it, its bytes are used as the kernel would */
	char own[4096];
	const char *node = argc > 1 ? argv[1] : "/dev/iommu";
	snprintf(own, sizeof own, "%.*s/sys/class/iommu/dmar0/intel-iommu/cap", (int)(strlen(node) - strlen("/dev/iommu")), node);
	int cap = open(own, O_RDONLY);
	struct iommu_iova_range *mapped = cap < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, cap, 0);
	if (mapped == MAP_FAILED) {
		printf("%s: cannot map: %s\n", own, strerror(errno));
		return 1;
	}
	allow.allowed_iovas = (uintptr_t)mapped;
	result("IOAS_ALLOW_IOVAS from a mount file's page", do_ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &allow));
	r.allowed_iovas = (uintptr_t)mapped;
	result("IOAS_IOVA_RANGES into a mount file's page", do_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r));
	volatile char first = *(volatile char *)mapped;
	(void)first;
	/* the file's text read as a range: its start is above its last */
	result("IOAS_ALLOW_IOVAS from that page, read", do_ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &allow));
	munmap(mapped, 4096);
	close(cap);

	/* VFIO cdev: bind names the iommufd by this process's descriptor */
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = fd };
	MUST("VFIO_DEVICE_BIND_IOMMUFD", vfio, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = a.out_ioas_id };
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT", vfio, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
	printf(" pt_id=%u\n", at.pt_id);
	/* pinned for the attached domain: /proc/self/status counts them (the supervisor opens the mount's for it) */
	void *buf = aligned_alloc(4096, 2 * 4096);
	memset(buf, 1, 2 * 4096);
	struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, .ioas_id = a.out_ioas_id, .user_va = (uintptr_t)buf, .length = 2 * 4096 };
	MUST("IOAS_MAP of 2 pages", fd, IOMMU_IOAS_MAP, &map);
	printf(" iova=0x%llx\n", (unsigned long long)map.iova);
	char line[128];
	FILE *status = fopen("/proc/self/status", "r");
	while (status && fgets(line, sizeof line, status))
		if (strncmp(line, "VmPin:", 6) == 0)
			printf("/proc/self/status %s", line);
	if (status)
		fclose(status);
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = a.out_ioas_id, .iova = map.iova, .length = 2 * 4096 };
	MUST("IOAS_UNMAP", fd, IOMMU_IOAS_UNMAP, &unmap);
	printf("\n");
	free(buf);
	/* a struct of the oldest size the kernel takes (HWPT_ALLOC before data_type), ending where
	 * the mapping does: nothing past it is read */
	char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mprotect(two + 4096, 4096, PROT_NONE);
	const size_t oldest = offsetof(struct iommu_hwpt_alloc, __reserved) + sizeof(__u32);
	struct iommu_hwpt_alloc *h = (void *)(two + 4096 - oldest), full = { .size = oldest, .dev_id = bind.out_devid, .pt_id = a.out_ioas_id };
	memcpy(h, &full, oldest);
	MUST("IOMMU_HWPT_ALLOC, its size 24, at a mapping's end", fd, IOMMU_HWPT_ALLOC, h);
	printf(" out_hwpt_id=%u\n", h->out_hwpt_id);
	/* a descriptor the ioctl returns (a selftest DMA-BUF): only a supervisor can install it (exec --namespace) */
	struct iommu_test_cmd dg = { .size = sizeof(dg), .op = IOMMU_TEST_OP_DMABUF_GET, .dmabuf_get = { .length = 4096 } };
	int dmabuf = ioctl(fd, IOMMU_TEST_CMD, &dg);
	if (dmabuf < 0) {
		result("IOMMU_TEST_CMD DMABUF_GET", errno);
	} else {
		/* a descriptor the program can map from: IOAS_MAP_FILE takes it */
		struct iommu_ioas_map_file mf = { .size = sizeof(mf), .flags = IOMMU_IOAS_MAP_READABLE, .ioas_id = a.out_ioas_id, .fd = dmabuf, .length = 4096 };
		int flags = fcntl(dmabuf, F_GETFD);
		printf("IOMMU_TEST_CMD DMABUF_GET: ok, a descriptor above the node's (%s), close-on-exec %s\n", dmabuf > fd ? "yes" : "no", flags & FD_CLOEXEC ? "yes" : "no");
		MUST("IOAS_MAP_FILE of it", fd, IOMMU_IOAS_MAP_FILE, &mf);
		printf(" iova=0x%llx\n", (unsigned long long)mf.iova);
		close(dmabuf);
	}
	close(vfio);
	close(fd);
	return 0;
}
