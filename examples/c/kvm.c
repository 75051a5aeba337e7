/*
 * A KVM-owned stage 2 over this program's own memory, walked by the model's SMMUv3.
 *
 *   iommufs exec -- dist/examples/c/kvm MOUNT [VFIO_NODE]
 *
 * The program asks the mount's dev/kvm (text requests, docs/kvm.md) for a VM
 * whose guest-physical page 0..1 is a buffer of its own heap (MAP
 * userspace_addr=), exports the VM's stage 2 (CREATE_TDP_FD), and imports it
 * into an IOMMU domain with a real IOMMU_HWPT_ALLOC (data type
 * IOMMU_HWPT_DATA_IOMMUFS_KVM, struct iommu_hwpt_kvm_info). The device then
 * reads and writes the buffer by GPA (IOMMUFS_DMA). KVM zaps a page: the
 * SMMUv3 driver's importer hook invalidates at once and the next DMA
 * faults. KVM write-protects the memory: a DMA write faults.
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

static int kvmfd;

/* One dev/kvm request; its reply line (without the newline) in reply. */
static void kvm(const char *req, char *reply, size_t len)
{
	if (write(kvmfd, req, strlen(req)) < 0) {
		int e = errno;
		ssize_t n = pread(kvmfd, reply, len - 1, 0);
		reply[n > 0 ? n : 0] = 0;
		printf("kvm %s -> err %s: %s", req, errno_name(e), reply);
		exit(1);
	}
	ssize_t n = pread(kvmfd, reply, len - 1, 0);
	reply[n > 0 ? n : 0] = 0;
	char *nl = strchr(reply, '\n');
	if (nl) *nl = 0;
	printf("kvm %.*s -> %s\n", (int)strcspn(req, "\n"), req, reply);
}

static unsigned field(const char *reply, const char *key)
{
	const char *p = strstr(reply, key);
	return p ? (unsigned)strtoul(p + strlen(key), NULL, 0) : 0;
}

static const char *status_name(unsigned s)
{
	static const char *names[] = { "OK", "FAULT", "ABORT", "STOPPED" };
	return s < 4 ? names[s] : "?";
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		printf("usage: kvm MOUNT [VFIO_NODE]\n");
		return 2;
	}
	char path[4096], req[256], reply[512];
	snprintf(path, sizeof path, "%s/dev/kvm", argv[1]);
	kvmfd = open_node(path);
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node(argc > 2 ? argv[2] : "/dev/vfio/devices/vfio0");

	char *ram = aligned_alloc(4096, 8192);
	if (!ram) return 1;
	memset(ram, 0, 8192);
	strcpy(ram, "guest memory of the program");

	kvm("CREATE_VM pgtable=arm64\n", reply, sizeof reply);
	unsigned vm = field(reply, " vm=");
	snprintf(req, sizeof req, "MAP vm=%u gpa=0x0 size=0x2000 userspace_addr=0x%lx\n", vm, (unsigned long)(uintptr_t)ram);
	kvm(req, reply, sizeof reply);
	snprintf(req, sizeof req, "CREATE_TDP_FD vm=%u\n", vm);
	kvm(req, reply, sizeof reply);
	struct iommu_hwpt_kvm_info info = { .fd = field(reply, " fd=") };

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("VFIO_DEVICE_BIND_IOMMUFD", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	struct iommu_hwpt_alloc alloc = {
		.size = sizeof(alloc),
		.flags = IOMMU_HWPT_ALLOC_NEST_PARENT,
		.dev_id = bind.out_devid,
		.data_type = IOMMU_HWPT_DATA_IOMMUFS_KVM,
		.data_len = sizeof(info),
		.data_uptr = (uintptr_t)&info,
	};
	MUST("IOMMU_HWPT_ALLOC", iommufd, IOMMU_HWPT_ALLOC, &alloc);
	printf(" out_hwpt_id=%u\n", alloc.out_hwpt_id);
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = alloc.out_hwpt_id };
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	printf(" pt_id=%u\n", attach.pt_id);

	/* the device reads guest page 0 (the program's buffer) through KVM's table */
	char got[32] = { 0 };
	struct iommufs_dma rd = { .size = sizeof(rd), .dev_id = bind.out_devid, .iova = 0x0, .length = 27, .out_data_uptr = (uintptr_t)got };
	MUST("IOMMUFS_DMA read gpa 0x0", iommufd, IOMMUFS_DMA, &rd);
	printf(" status=%s data=\"%s\"\n", status_name(rd.out_status), rd.out_status == 0 ? got : "");

	/* and writes guest page 1 */
	const char msg[] = "written by the device";
	struct iommufs_dma wr = { .size = sizeof(wr), .flags = IOMMUFS_DMA_WRITE, .dev_id = bind.out_devid, .iova = 0x1000, .length = sizeof(msg), .in_data_uptr = (uintptr_t)msg };
	MUST("IOMMUFS_DMA write gpa 0x1000", iommufd, IOMMUFS_DMA, &wr);
	printf(" status=%s the program reads \"%s\"\n", status_name(wr.out_status), ram + 4096);

	/* KVM zaps page 0: the SMMUv3 driver invalidated it directly, so the device faults */
	snprintf(req, sizeof req, "ZAP vm=%u gpa=0x0 size=0x1000\n", vm);
	kvm(req, reply, sizeof reply);
	struct iommufs_dma rd2 = { .size = sizeof(rd2), .dev_id = bind.out_devid, .iova = 0x0, .length = 8, .out_data_uptr = (uintptr_t)got };
	MUST("IOMMUFS_DMA read after zap", iommufd, IOMMUFS_DMA, &rd2);
	printf(" status=%s event=0x%llx\n", status_name(rd2.out_status), (unsigned long long)rd2.out_event[0]);

	/* KVM write-protects page 1 (dirty logging): a DMA write faults */
	snprintf(req, sizeof req, "PROTECT vm=%u gpa=0x1000 size=0x1000 perm=r\n", vm);
	kvm(req, reply, sizeof reply);
	struct iommufs_dma wr2 = { .size = sizeof(wr2), .flags = IOMMUFS_DMA_WRITE, .dev_id = bind.out_devid, .iova = 0x1000, .length = sizeof(msg), .in_data_uptr = (uintptr_t)msg };
	MUST("IOMMUFS_DMA write after write-protect", iommufd, IOMMUFS_DMA, &wr2);
	printf(" status=%s event=0x%llx\n", status_name(wr2.out_status), (unsigned long long)wr2.out_event[0]);

	/* bad input: an fd KVM never gave out */
	struct iommu_hwpt_kvm_info none = { .fd = 999 };
	alloc.data_uptr = (uintptr_t)&none;
	printf("IOMMU_HWPT_ALLOC fd=999: err %s\n", errno_name(do_ioctl(iommufd, IOMMU_HWPT_ALLOC, &alloc)));
	return 0;
}
