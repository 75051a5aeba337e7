/*
 * Intel VT-d nesting, as a VMM sets it up for a guest with a vIOMMU: bind the
 * device, make a stage-2 (NEST_PARENT) HWPT on an IOAS, allocate a nested
 * HWPT on that parent from the guest's first-stage table pointer and attach
 * it, then read the unit's CAP/ECAP registers.
 *
 *   iommufs exec -- dist/examples/c/nested-vtd [/dev/vfio/devices/vfio4]
 */
#include "example.h"

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/vfio/devices/vfio4";
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node(dev);

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("VFIO_DEVICE_BIND_IOMMUFD", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);

	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("IOMMU_IOAS_ALLOC", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf(" out_ioas_id=%u\n", ioas.out_ioas_id);

	struct iommu_hwpt_alloc s2 = {
		.size = sizeof(s2),
		.flags = IOMMU_HWPT_ALLOC_NEST_PARENT,
		.dev_id = bind.out_devid,
		.pt_id = ioas.out_ioas_id,
	};
	MUST("IOMMU_HWPT_ALLOC(nest_parent)", iommufd, IOMMU_HWPT_ALLOC, &s2);
	printf(" out_hwpt_id=%u\n", s2.out_hwpt_id);

	/* the guest's first-stage page table: a GPA, 4-level (48-bit) */
	struct iommu_hwpt_vtd_s1 s1_data = { .flags = 0, .pgtbl_addr = 0x1000, .addr_width = 48 };
	struct iommu_hwpt_alloc s1 = {
		.size = sizeof(s1),
		.dev_id = bind.out_devid,
		.pt_id = s2.out_hwpt_id,
		.data_type = IOMMU_HWPT_DATA_VTD_S1,
		.data_len = sizeof(s1_data),
		.data_uptr = (uintptr_t)&s1_data,
	};
	MUST("IOMMU_HWPT_ALLOC(nested)", iommufd, IOMMU_HWPT_ALLOC, &s1);
	printf(" out_hwpt_id=%u\n", s1.out_hwpt_id);

	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = s1.out_hwpt_id };
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT(nested)", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	printf(" pt_id=%u\n", attach.pt_id);

	struct iommu_hw_info_vtd regs;
	memset(&regs, 0xa5, sizeof(regs));
	struct iommu_hw_info hw = {
		.size = sizeof(hw),
		.dev_id = bind.out_devid,
		.data_len = sizeof(regs),
		.data_uptr = (uintptr_t)&regs,
	};
	MUST("IOMMU_GET_HW_INFO", iommufd, IOMMU_GET_HW_INFO, &hw);
	printf(" data_len=%u out_data_type=%u out_max_pasid_log2=%u out_capabilities=0x%llx flags=0x%x cap_reg=0x%llx ecap_reg=0x%llx\n",
	       hw.data_len, hw.out_data_type, hw.out_max_pasid_log2, (unsigned long long)hw.out_capabilities, regs.flags,
	       (unsigned long long)regs.cap_reg, (unsigned long long)regs.ecap_reg);

	/* the parent is held by the nested HWPT, the nested one by the attached device */
	struct iommu_destroy busy = { .size = sizeof(busy), .id = s2.out_hwpt_id };
	int e = do_ioctl(iommufd, IOMMU_DESTROY, &busy);
	printf("IOMMU_DESTROY(parent while nested exists): %s%s\n", e ? "err " : "ok", e ? errno_name(e) : "");

	close(devfd); /* unbinds the device */
	close(iommufd); /* destroys every object of the context */
	return 0;
}
