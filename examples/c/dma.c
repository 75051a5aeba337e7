/*
 * DMA into this program's own malloc'd memory through the model's SMMUv3.
 *
 *   iommufs exec [--namespace] -- dist/examples/c/dma [VFIO_NODE]
 *
 * The program maps a buffer of its heap into an IOAS (IOMMU_IOAS_MAP with
 * user_va = the buffer), attaches device vfio0 (behind the first SMMUv3, a
 * stage-1 domain), and asks the device to read and write it with the iommufs
 * extension IOMMUFS_DMA. With real ioctl() calls (--namespace) and under the
 * LD_PRELOAD shim alike, the server reaches the caller's memory (the process
 * FUSE names for the request), so the device reads what the program wrote and
 * the program sees what the device wrote.
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

static const char *status_name(unsigned s)
{
	static const char *names[] = { "OK", "FAULT", "ABORT", "STOPPED" };
	return s < 4 ? names[s] : "?";
}

int main(int argc, char **argv)
{
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node(argc > 1 ? argv[1] : "/dev/vfio/devices/vfio0");

	char *buf = aligned_alloc(4096, 8192);
	if (!buf) return 1;
	memset(buf, 0, 8192);
	strcpy(buf, "written by the program");

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("VFIO_DEVICE_BIND_IOMMUFD", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("IOMMU_IOAS_ALLOC", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf(" out_ioas_id=%u\n", ioas.out_ioas_id);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas.out_ioas_id,
		.user_va = (uintptr_t)buf,
		.length = 8192,
		.iova = 0x100000,
	};
	MUST("IOMMU_IOAS_MAP", iommufd, IOMMU_IOAS_MAP, &map);
	printf(" iova=0x%llx\n", (unsigned long long)map.iova);
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas.out_ioas_id };
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	printf(" pt_id=%u\n", attach.pt_id);

	/* the device reads the buffer */
	char got[32] = { 0 };
	struct iommufs_dma rd = { .size = sizeof(rd), .dev_id = bind.out_devid, .iova = 0x100000, .length = 22, .out_data_uptr = (uintptr_t)got };
	MUST("IOMMUFS_DMA read", iommufd, IOMMUFS_DMA, &rd);
	printf(" status=%s", status_name(rd.out_status));
	if (rd.out_status == 0) printf(" data=\"%s\"", got);
	printf("\n");

	/* the device writes into the second page */
	const char msg[] = "written by the device";
	struct iommufs_dma wr = { .size = sizeof(wr), .flags = IOMMUFS_DMA_WRITE, .dev_id = bind.out_devid, .iova = 0x101000, .length = sizeof(msg), .in_data_uptr = (uintptr_t)msg };
	MUST("IOMMUFS_DMA write", iommufd, IOMMUFS_DMA, &wr);
	printf(" status=%s", status_name(wr.out_status));
	if (wr.out_status == 0) printf(" the program now reads \"%s\"", buf + 4096);
	printf("\n");

	/* an address nothing is mapped at: a translation fault, with its event record */
	struct iommufs_dma bad = { .size = sizeof(bad), .dev_id = bind.out_devid, .iova = 0x300000, .length = 8, .out_data_uptr = (uintptr_t)got };
	MUST("IOMMUFS_DMA unmapped", iommufd, IOMMUFS_DMA, &bad);
	printf(" status=%s event=0x%llx\n", status_name(bad.out_status), (unsigned long long)bad.out_event[0]);
	return 0;
}
