/*
 * SMMUv3 PASIDs through the kernel's uAPI: a PASID-capable domain over this
 * program's malloc'd memory on the RID, a second one over another buffer on
 * PASID 7 (VFIO_DEVICE_ATTACH_IOMMUFD_PT with VFIO_DEVICE_ATTACH_PASID),
 * IOMMUFS_DMA with and without the PASID, replace, detach, and the errnos
 * Linux answers: a PASID past the device's width, an IOAS (its automatic
 * domain is not PASID-compatible), a short argsz, NEST_PARENT with PASID.
 *
 *   iommufs exec -- dist/test/c/pasid [VFIO_NODE]
 * One line per step (test/integration/pasid.test.ts compares them).
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

static const char *status_name(unsigned s)
{
	static const char *names[] = { "OK", "FAULT", "ABORT", "STOPPED", "PENDING" };
	return s < 5 ? names[s] : "?";
}

static int iommufd;
static unsigned dev_id;

/* Reads 8 bytes at IOVA 0x100000, with PASID `pasid` (-1: none). */
static void dma(const char *step, int pasid)
{
	char got[16] = { 0 };
	struct iommufs_dma rd = { .size = sizeof(rd), .flags = pasid >= 0 ? IOMMUFS_DMA_PASID : 0, .dev_id = dev_id, .pasid = pasid >= 0 ? (unsigned)pasid : 0, .iova = 0x100000, .length = 8, .out_data_uptr = (uintptr_t)got };
	if (ioctl(iommufd, IOMMUFS_DMA, &rd) < 0) {
		printf("%s: err %s\n", step, errno_name(errno));
		return;
	}
	printf("%s: status=%s", step, status_name(rd.out_status));
	if (rd.out_status == 0) printf(" data=\"%s\"", got);
	printf("\n");
}

static void attach(const char *step, int devfd, unsigned argsz, unsigned pt_id, unsigned pasid)
{
	struct vfio_device_attach_iommufd_pt at = { .argsz = argsz, .flags = VFIO_DEVICE_ATTACH_PASID, .pt_id = pt_id, .pasid = pasid };
	if (ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) < 0) printf("%s: err %s\n", step, errno_name(errno));
	else printf("%s: ok pt_id=%u\n", step, at.pt_id);
}

/* A PASID-capable paging HWPT over a new IOAS mapping `buf` at IOVA 0x100000. */
static unsigned domain(const char *step, char *buf)
{
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &ioas) < 0) return 0;
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas.out_ioas_id,
		.user_va = (uintptr_t)buf,
		.length = 4096,
		.iova = 0x100000,
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map) < 0) return 0;
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha), .flags = IOMMU_HWPT_ALLOC_PASID, .dev_id = dev_id, .pt_id = ioas.out_ioas_id };
	MUST(step, iommufd, IOMMU_HWPT_ALLOC, &ha);
	printf(" ioas=%u hwpt=%u\n", ioas.out_ioas_id, ha.out_hwpt_id);
	return ha.out_hwpt_id;
}

int main(int argc, char **argv)
{
	iommufd = open_node("/dev/iommu");
	int devfd = open_node(argc > 1 ? argv[1] : "/dev/vfio/devices/vfio0");
	char *a = aligned_alloc(4096, 4096), *b = aligned_alloc(4096, 4096);
	if (!a || !b) return 1;
	memset(a, 0, 4096);
	memset(b, 0, 4096);
	strcpy(a, "buffer A");
	strcpy(b, "buffer B");

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("bind", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	dev_id = bind.out_devid;
	struct iommu_hw_info hw = { .size = sizeof(hw), .dev_id = dev_id };
	MUST("hw_info", iommufd, IOMMU_GET_HW_INFO, &hw);
	printf(" out_max_pasid_log2=%u\n", hw.out_max_pasid_log2);
	unsigned ha = domain("domain_a", a), hb = domain("domain_b", b);

	struct vfio_device_attach_iommufd_pt rid = { .argsz = sizeof(rid), .pt_id = ha };
	MUST("attach_rid", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &rid);
	printf("\n");
	attach("attach_pasid7", devfd, sizeof(struct vfio_device_attach_iommufd_pt), hb, 7);
	dma("dma_pasid7", 7);
	dma("dma_rid", -1);
	attach("attach_pasid0x12345", devfd, sizeof(struct vfio_device_attach_iommufd_pt), hb, 0x12345);
	dma("dma_pasid0x12345", 0x12345);
	attach("replace_pasid7", devfd, sizeof(struct vfio_device_attach_iommufd_pt), ha, 7);
	dma("dma_pasid7", 7);

	struct vfio_device_detach_iommufd_pt dt = { .argsz = sizeof(dt), .flags = VFIO_DEVICE_DETACH_PASID, .pasid = 7 };
	MUST("detach_pasid7", devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt);
	printf("\n");
	dma("dma_pasid7", 7);

	attach("attach_past_width", devfd, sizeof(struct vfio_device_attach_iommufd_pt), hb, 0x100000);
	attach("attach_short_argsz", devfd, 12, hb, 9);
	attach("attach_ioas", devfd, sizeof(struct vfio_device_attach_iommufd_pt), 2, 9);
	struct iommu_hwpt_alloc np = { .size = sizeof(np), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID, .dev_id = dev_id, .pt_id = 2 };
	if (ioctl(iommufd, IOMMU_HWPT_ALLOC, &np) < 0) printf("nest_parent_pasid: err %s\n", errno_name(errno));
	else printf("nest_parent_pasid: ok\n");
	dma("dma_past_width", 0x100000);
	return 0;
}
