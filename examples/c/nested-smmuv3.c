/*
 * ARM SMMUv3 nesting, as a VMM sets it up for a guest with a vSMMU:
 * bind the device to an iommufd, make a stage-2 (NEST_PARENT) HWPT on an
 * IOAS and attach, create a vIOMMU and a vDEVICE (the guest's StreamID),
 * allocate a nested HWPT from the guest's STE and attach it, forward the
 * guest's invalidation commands, and read the SMMU's ID registers.
 *
 *   iommufs exec -- dist/examples/c/nested-smmuv3 [/dev/vfio/devices/vfio0]
 */
#include "example.h"

/* SMMUv3 command opcodes (Arm IHI 0070, "Commands") */
#define CMDQ_OP_TLBI_NH_VA 0x12
#define CMDQ_OP_ATC_INV 0x40

/* STE word 0: V (bit 0) and Config (bits 3:1) = 0b101, stage 1 translate / stage 2 bypass */
#define STE0_V 0x1ULL
#define STE0_CFG_S1_TRANS (0x5ULL << 1)

#define GUEST_SID 0x10

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/vfio/devices/vfio0";
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node(dev);

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .flags = 0, .iommufd = iommufd };
	MUST("VFIO_DEVICE_BIND_IOMMUFD", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);

	struct vfio_device_info info = { .argsz = sizeof(info) };
	MUST("VFIO_DEVICE_GET_INFO", devfd, VFIO_DEVICE_GET_INFO, &info);
	printf(" flags=0x%x num_regions=%u num_irqs=%u\n", info.flags, info.num_regions, info.num_irqs);

	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("IOMMU_IOAS_ALLOC", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf(" out_ioas_id=%u\n", ioas.out_ioas_id);

	struct iommu_hwpt_alloc s2 = {
		.size = sizeof(s2),
		.flags = IOMMU_HWPT_ALLOC_NEST_PARENT,
		.dev_id = bind.out_devid,
		.pt_id = ioas.out_ioas_id,
		.data_type = IOMMU_HWPT_DATA_NONE,
	};
	MUST("IOMMU_HWPT_ALLOC(nest_parent)", iommufd, IOMMU_HWPT_ALLOC, &s2);
	printf(" out_hwpt_id=%u\n", s2.out_hwpt_id);

	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = s2.out_hwpt_id };
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT(s2)", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	printf(" pt_id=%u\n", attach.pt_id);

	struct iommu_viommu_alloc viommu = {
		.size = sizeof(viommu),
		.type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
		.dev_id = bind.out_devid,
		.hwpt_id = s2.out_hwpt_id,
	};
	MUST("IOMMU_VIOMMU_ALLOC", iommufd, IOMMU_VIOMMU_ALLOC, &viommu);
	printf(" out_viommu_id=%u\n", viommu.out_viommu_id);

	struct iommu_vdevice_alloc vdev = {
		.size = sizeof(vdev),
		.viommu_id = viommu.out_viommu_id,
		.dev_id = bind.out_devid,
		.virt_id = GUEST_SID,
	};
	MUST("IOMMU_VDEVICE_ALLOC", iommufd, IOMMU_VDEVICE_ALLOC, &vdev);
	printf(" out_vdevice_id=%u virt_id=0x%llx\n", vdev.out_vdevice_id, (unsigned long long)vdev.virt_id);

	/* the guest's STE for the device: valid, stage-1 translation */
	struct iommu_hwpt_arm_smmuv3 ste = { .ste = { STE0_V | STE0_CFG_S1_TRANS, 0 } };
	struct iommu_hwpt_alloc s1 = {
		.size = sizeof(s1),
		.dev_id = bind.out_devid,
		.pt_id = viommu.out_viommu_id,
		.data_type = IOMMU_HWPT_DATA_ARM_SMMUV3,
		.data_len = sizeof(ste),
		.data_uptr = (uintptr_t)&ste,
	};
	MUST("IOMMU_HWPT_ALLOC(nested)", iommufd, IOMMU_HWPT_ALLOC, &s1);
	printf(" out_hwpt_id=%u ste=0x%llx,0x%llx\n", s1.out_hwpt_id, (unsigned long long)ste.ste[0], (unsigned long long)ste.ste[1]);

	attach.pt_id = s1.out_hwpt_id;
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT(nested)", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	printf(" pt_id=%u\n", attach.pt_id);

	/* the guest's commands: a TLBI by VA (ASID 1, leaf) and an ATC invalidation for its StreamID */
	struct iommu_viommu_arm_smmuv3_invalidate cmds[2] = {
		{ .cmd = { CMDQ_OP_TLBI_NH_VA | (1ULL << 48), 0x10000 | 1 } },
		{ .cmd = { CMDQ_OP_ATC_INV | ((unsigned long long)GUEST_SID << 32), 0x10000 } },
	};
	struct iommu_hwpt_invalidate inv = {
		.size = sizeof(inv),
		.hwpt_id = viommu.out_viommu_id,
		.data_uptr = (uintptr_t)cmds,
		.data_type = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
		.entry_len = sizeof(cmds[0]),
		.entry_num = 2,
	};
	/* not every model has it yet: report the errno and go on */
	int e = do_ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv);
	if (e)
		printf("IOMMU_HWPT_INVALIDATE: err %s entry_num=%u\n", errno_name(e), inv.entry_num);
	else
		printf("IOMMU_HWPT_INVALIDATE: ok entry_num=%u\n", inv.entry_num);

	struct iommu_hw_info_arm_smmuv3 regs;
	memset(&regs, 0xa5, sizeof(regs)); /* the kernel overwrites all of it */
	struct iommu_hw_info hw = {
		.size = sizeof(hw),
		.dev_id = bind.out_devid,
		.data_len = sizeof(regs),
		.data_uptr = (uintptr_t)&regs,
	};
	MUST("IOMMU_GET_HW_INFO", iommufd, IOMMU_GET_HW_INFO, &hw);
	printf(" data_len=%u out_data_type=%u out_max_pasid_log2=%u out_capabilities=0x%llx flags=0x%x", hw.data_len, hw.out_data_type,
	       hw.out_max_pasid_log2, (unsigned long long)hw.out_capabilities, regs.flags);
	for (int i = 0; i < 6; i++)
		printf(" idr%d=0x%08x", i, regs.idr[i]);
	printf(" iidr=0x%08x aidr=0x%08x\n", regs.iidr, regs.aidr);

	/* teardown in the order the kernel requires: detach, then leaves first */
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	MUST("VFIO_DEVICE_DETACH_IOMMUFD_PT", devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
	printf("\n");
	const struct {
		const char *what;
		__u32 id;
	} order[] = {
		{ "IOMMU_DESTROY(nested)", s1.out_hwpt_id },   { "IOMMU_DESTROY(vdevice)", vdev.out_vdevice_id },
		{ "IOMMU_DESTROY(viommu)", viommu.out_viommu_id }, { "IOMMU_DESTROY(s2)", s2.out_hwpt_id },
		{ "IOMMU_DESTROY(ioas)", ioas.out_ioas_id },
	};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		struct iommu_destroy d = { .size = sizeof(d), .id = order[i].id };
		MUST(order[i].what, iommufd, IOMMU_DESTROY, &d);
		printf(" id=%u\n", d.id);
	}
	close(devfd);
	close(iommufd);
	return 0;
}
