/*
 * The kernel's fail-nth sweep, as iommufd_fail_nth drives it, under the shim:
 * the debugfs switches through opendir("/sys/kernel/debug/") and openat, the
 * thread's /proc/self/task/TID/fail-nth, and a scenario (open, IOAS_ALLOC,
 * IOAS_ALLOW_IOVAS, IOAS_IOVA_RANGES, a mock domain, IOAS_MAP of this
 * program's memory, IOAS_MAP_FILE of a memfd, IOAS_COPY, a selftest access,
 * IOAS_UNMAP) run with its Nth step
 * failed, N = 1, 2, ..., until one run goes through. One line per run: N, the
 * step that failed and its errno, then what fail-nth read back ("0" once it
 * fired).
 *
 *   fail-nth Y|N [device|vfio|vtd|compat|events]   the value written to
 *       failslab/ and fail_page_alloc/ignore-gfp-wait first; device, vfio (an
 *       SMMUv3 device), vtd (a VT-d device), compat (VFIO type1 and a
 *       DMA-BUF), events (a page request and a vEVENT): those scenarios instead
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

#include <dirent.h>
#include <sys/mman.h>

static int writeat(int dfd, const char *name, const char *val)
{
	int fd = openat(dfd, name, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

/* Closes each of the descriptors that is open (not -1) and returns rc. */
static int closing(int rc, int a, int b, int c)
{
	int fds[] = { a, b, c };
	for (unsigned i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

static const char *failed_step;
static int failed_errno;

/* `step` as the scenario's result: 0 goes on, anything else records the first failure. */
static int step(const char *name, int rc)
{
	if (rc && !failed_step) {
		failed_step = name;
		failed_errno = errno;
	}
	return rc;
}

static char *buffer;

/* What iommufd_fail_nth's fail_nth_enable() does: the Nth step from here fails (none for 0). */
static int arm(int nth_fd, unsigned nth)
{
	char n[16];
	int len = snprintf(n, sizeof n, "%u", nth);
	return nth && pwrite(nth_fd, n, len, 0) != len ? -1 : 0;
}
static int memfd;

static int scenario(int nth_fd, unsigned nth)
{
	if (arm(nth_fd, nth))
		return -1;
	int fd = open("/dev/iommu", O_RDWR);
	if (step("open", fd < 0 ? -1 : 0))
		return -1;
	int rc = -1;
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (step("IOAS_ALLOC", ioctl(fd, IOMMU_IOAS_ALLOC, &a)))
		goto out;
	struct iommu_iova_range allow_range = { .start = 1 << 24, .last = (1ULL << 31) - 1 }; /* the mock aperture */
	struct iommu_ioas_allow_iovas allow = { .size = sizeof(allow), .ioas_id = a.out_ioas_id, .num_iovas = 1, .allowed_iovas = (uintptr_t)&allow_range };
	if (step("IOAS_ALLOW_IOVAS", ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &allow)))
		goto out;
	struct iommu_iova_range ranges[4];
	struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = a.out_ioas_id, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges };
	if (step("IOAS_IOVA_RANGES", ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r)))
		goto out;
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = a.out_ioas_id };
	if (step("MOCK_DOMAIN", ioctl(fd, IOMMU_TEST_CMD, &mock)))
		goto out;
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = a.out_ioas_id,
		.user_va = (uintptr_t)buffer,
		.length = 0x10000,
		.iova = 1 << 24,
	};
	if (step("IOAS_MAP", ioctl(fd, IOMMU_IOAS_MAP, &map)))
		goto out;
	struct iommu_ioas_map_file mf = { .size = sizeof(mf), .flags = map.flags, .ioas_id = a.out_ioas_id, .fd = memfd, .length = 0x10000, .iova = 1 << 25 };
	if (step("IOAS_MAP_FILE", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf)))
		goto out;
	struct iommu_ioas_copy copy = { .size = sizeof(copy), .flags = map.flags, .dst_ioas_id = a.out_ioas_id, .src_ioas_id = a.out_ioas_id,
					.length = 0x10000, .dst_iova = 1 << 26, .src_iova = 1 << 24 };
	if (step("IOAS_COPY", ioctl(fd, IOMMU_IOAS_COPY, &copy)))
		goto out;
	struct iommu_test_cmd access = { .size = sizeof(access), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = a.out_ioas_id };
	if (step("CREATE_ACCESS", ioctl(fd, IOMMU_TEST_CMD, &access)))
		goto out;
	close(access.create_access.out_access_fd);
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = a.out_ioas_id, .iova = 1 << 24, .length = 0x10000 };
	if (step("IOAS_UNMAP", ioctl(fd, IOMMU_IOAS_UNMAP, &unmap)))
		goto out;
	rc = 0;
out:
	return closing(rc, fd, -1, -1);
}

static int test_cmd(int fd, const char *name, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return step(name, ioctl(fd, IOMMU_TEST_CMD, c));
}

/*
 * Devices and what hangs off them, as the newer iommufd_fail_nth's device
 * scenario has them: a PASID-capable mock device, its hw_info, domains
 * replaced under it, a vIOMMU with a vDEVICE, a HW queue, a fault queue and
 * an IOPF-capable nested domain, a vEVENTQ, and a PASID attached, replaced
 * and detached. The queues' descriptors are closed whatever happens.
 */
static int device_scenario(int nth_fd, unsigned nth)
{
	int fd = open("/dev/iommu", O_RDWR), fault_fd = -1, veventq_fd = -1, rc = -1;
	if (step("open", fd < 0 ? -1 : 0))
		return -1;
	struct iommu_ioas_alloc a1 = { .size = sizeof(a1) }, a2 = { .size = sizeof(a2) };
	struct iommu_ioas_map map = { .size = sizeof(map), .user_va = (uintptr_t)buffer, .length = 0x1000, .iova = 1 << 24,
				      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
	if (step("setup", ioctl(fd, IOMMU_IOAS_ALLOC, &a1)) || step("setup", ioctl(fd, IOMMU_IOAS_ALLOC, &a2)))
		goto out;
	map.ioas_id = a1.out_ioas_id;
	if (step("setup", ioctl(fd, IOMMU_IOAS_MAP, &map)))
		goto out;
	map.ioas_id = a2.out_ioas_id;
	if (step("setup", ioctl(fd, IOMMU_IOAS_MAP, &map)))
		goto out;
	if (arm(nth_fd, nth))
		goto out;

	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = a1.out_ioas_id, .mock_domain_flags = { .dev_flags = 4 /* PASID */ } };
	if (test_cmd(fd, "MOCK_DOMAIN_FLAGS", &md))
		goto out;
	uint32_t stdev = md.mock_domain_flags.out_stdev_id, idev = md.mock_domain_flags.out_idev_id;
	struct iommu_test_hw_info info;
	struct iommu_hw_info hw = { .size = sizeof(hw), .dev_id = idev, .data_len = sizeof(info), .data_uptr = (uintptr_t)&info };
	if (step("GET_HW_INFO", ioctl(fd, IOMMU_GET_HW_INFO, &hw)))
		goto out;
	struct iommu_hwpt_alloc s2 = { .size = sizeof(s2), .flags = IOMMU_HWPT_ALLOC_PASID, .dev_id = idev, .pt_id = a1.out_ioas_id };
	if (step("HWPT_ALLOC", ioctl(fd, IOMMU_HWPT_ALLOC, &s2)))
		goto out;
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev, .mock_domain_replace = { .pt_id = a2.out_ioas_id } };
	if (test_cmd(fd, "MOCK_DOMAIN_REPLACE ioas", &rep))
		goto out;
	rep.mock_domain_replace.pt_id = s2.out_hwpt_id;
	if (test_cmd(fd, "MOCK_DOMAIN_REPLACE hwpt", &rep))
		goto out;
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID, .dev_id = idev, .pt_id = a1.out_ioas_id };
	if (step("HWPT_ALLOC parent", ioctl(fd, IOMMU_HWPT_ALLOC, &parent)))
		goto out;
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST, .dev_id = idev, .hwpt_id = parent.out_hwpt_id };
	if (step("VIOMMU_ALLOC", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va)))
		goto out;
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = va.out_viommu_id, .dev_id = idev, .virt_id = 0x99 };
	if (step("VDEVICE_ALLOC", ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd)))
		goto out;
	struct iommu_hw_queue_alloc q = { .size = sizeof(q), .viommu_id = va.out_viommu_id, .type = IOMMU_HW_QUEUE_TYPE_SELFTEST, .nesting_parent_iova = 1 << 24, .length = 0x1000 };
	if (step("HW_QUEUE_ALLOC", ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &q)))
		goto out;
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	if (step("FAULT_QUEUE_ALLOC", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa)))
		goto out;
	fault_fd = (int)fa.out_fault_fd;
	struct iommu_hwpt_selftest data = { .iotlb = 0xbadbeef };
	struct iommu_hwpt_alloc iopf = { .size = sizeof(iopf), .flags = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID, .dev_id = idev, .pt_id = va.out_viommu_id,
					 .data_type = 0xdead /* IOMMU_HWPT_DATA_SELFTEST */, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data, .fault_id = fa.out_fault_id };
	if (step("HWPT_ALLOC iopf", ioctl(fd, IOMMU_HWPT_ALLOC, &iopf)))
		goto out;
	struct iommu_veventq_alloc vq = { .size = sizeof(vq), .viommu_id = va.out_viommu_id, .type = IOMMU_VEVENTQ_TYPE_SELFTEST, .veventq_depth = 2 };
	if (step("VEVENTQ_ALLOC", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &vq)))
		goto out;
	veventq_fd = (int)vq.out_veventq_fd;
	struct iommu_test_cmd pasid = { .op = IOMMU_TEST_OP_PASID_ATTACH, .id = stdev, .pasid_attach = { .pasid = 100, .pt_id = s2.out_hwpt_id } };
	if (test_cmd(fd, "PASID_ATTACH", &pasid))
		goto out;
	pasid.op = IOMMU_TEST_OP_PASID_REPLACE;
	pasid.pasid_attach.pt_id = iopf.out_hwpt_id;
	if (test_cmd(fd, "PASID_REPLACE", &pasid))
		goto out;
	pasid.op = IOMMU_TEST_OP_PASID_DETACH;
	if (test_cmd(fd, "PASID_DETACH", &pasid))
		goto out;
	rc = 0;
out:
	return closing(rc, fault_fd, veventq_fd, fd);
}

/*
 * The start the VFIO scenarios share: the device node `dev` bound to
 * iommufd `fd`, and a nest parent on a new IOAS (the Nth step armed after
 * the IOAS). Returns 0, or -1 with the failed step recorded.
 */
static int bind_with_parent(int fd, int dev, int nth_fd, unsigned nth, uint32_t *dev_id, uint32_t *parent)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (step("setup", ioctl(fd, IOMMU_IOAS_ALLOC, &a)) || arm(nth_fd, nth))
		return -1;
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = fd };
	if (step("VFIO_DEVICE_BIND_IOMMUFD", ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind)))
		return -1;
	struct iommu_hwpt_alloc s2 = { .size = sizeof(s2), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = bind.out_devid, .pt_id = a.out_ioas_id };
	if (step("HWPT_ALLOC parent", ioctl(fd, IOMMU_HWPT_ALLOC, &s2)))
		return -1;
	*dev_id = bind.out_devid;
	*parent = s2.out_hwpt_id;
	return 0;
}

/* The start the compat and events scenarios share: an iommufd with an IOAS and a mock device on it (the Nth step armed after them). */
static int mock_device(int nth_fd, unsigned nth, int *fd, struct iommu_ioas_alloc *a, struct iommu_test_cmd *md)
{
	if (step("open", (*fd = open("/dev/iommu", O_RDWR)) < 0 ? -1 : 0))
		return -1;
	*a = (struct iommu_ioas_alloc){ .size = sizeof(*a) };
	if (step("setup", ioctl(*fd, IOMMU_IOAS_ALLOC, a)))
		return -1;
	*md = (struct iommu_test_cmd){ .size = sizeof(*md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = a->out_ioas_id };
	return step("setup", ioctl(*fd, IOMMU_TEST_CMD, md)) || arm(nth_fd, nth) ? -1 : 0;
}

/*
 * A VFIO device behind an SMMUv3 nested as a VMM nests it: bind, a nest
 * parent attached, a vIOMMU, a vDEVICE, the guest's STE as a nested domain
 * attached, an invalidation through the vIOMMU, a vEVENTQ, then detach.
 */
static int vfio_scenario(int nth_fd, unsigned nth)
{
	int fd = open("/dev/iommu", O_RDWR), dev = open("/dev/vfio/devices/vfio0", O_RDWR), veventq_fd = -1, rc = -1;
	if (step("open", fd < 0 || dev < 0 ? -1 : 0))
		goto out;
	uint32_t dev_id, parent;
	if (bind_with_parent(fd, dev, nth_fd, nth, &dev_id, &parent))
		goto out;
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = parent };
	if (step("VFIO_DEVICE_ATTACH parent", ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)))
		goto out;
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3, .dev_id = dev_id, .hwpt_id = parent };
	if (step("VIOMMU_ALLOC", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va)))
		goto out;
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = va.out_viommu_id, .dev_id = dev_id, .virt_id = 0x10 };
	if (step("VDEVICE_ALLOC", ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd)))
		goto out;
	struct iommu_hwpt_arm_smmuv3 ste = { .ste = { 0x1 | (0x5 << 1) /* V, stage 1 translate */, 0 } };
	struct iommu_hwpt_alloc s1 = { .size = sizeof(s1), .dev_id = dev_id, .pt_id = va.out_viommu_id, .data_type = IOMMU_HWPT_DATA_ARM_SMMUV3,
				       .data_len = sizeof(ste), .data_uptr = (uintptr_t)&ste };
	if (step("HWPT_ALLOC nested", ioctl(fd, IOMMU_HWPT_ALLOC, &s1)))
		goto out;
	attach.pt_id = s1.out_hwpt_id;
	if (step("VFIO_DEVICE_ATTACH nested", ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)))
		goto out;
	struct iommu_viommu_arm_smmuv3_invalidate cmd = { .cmd = { 0x12 /* CMD_TLBI_NH_VA */ | (1ULL << 48), 0x10000 | 1 } };
	struct iommu_hwpt_invalidate inv = { .size = sizeof(inv), .hwpt_id = va.out_viommu_id, .data_uptr = (uintptr_t)&cmd,
					     .data_type = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, .entry_len = sizeof(cmd), .entry_num = 1 };
	if (step("HWPT_INVALIDATE", ioctl(fd, IOMMU_HWPT_INVALIDATE, &inv)))
		goto out;
	struct iommu_veventq_alloc vq = { .size = sizeof(vq), .viommu_id = va.out_viommu_id, .type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, .veventq_depth = 4 };
	if (step("VEVENTQ_ALLOC", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &vq)))
		goto out;
	veventq_fd = (int)vq.out_veventq_fd;
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	if (step("VFIO_DEVICE_DETACH", ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach)))
		goto out;
	rc = 0;
out:
	return closing(rc, veventq_fd, dev, fd);
}

/* A VFIO device behind VT-d nested: bind, a nest parent, the guest's first stage as a nested domain attached, an invalidation, hw_info, detach. */
static int vtd_scenario(int nth_fd, unsigned nth)
{
	int fd = open("/dev/iommu", O_RDWR), dev = open("/dev/vfio/devices/vfio4", O_RDWR), rc = -1;
	if (step("open", fd < 0 || dev < 0 ? -1 : 0))
		goto out;
	uint32_t dev_id, parent;
	if (bind_with_parent(fd, dev, nth_fd, nth, &dev_id, &parent))
		goto out;
	struct iommu_hwpt_vtd_s1 s1_data = { .pgtbl_addr = 0x1000, .addr_width = 48 };
	struct iommu_hwpt_alloc s1 = { .size = sizeof(s1), .dev_id = dev_id, .pt_id = parent, .data_type = IOMMU_HWPT_DATA_VTD_S1,
				       .data_len = sizeof(s1_data), .data_uptr = (uintptr_t)&s1_data };
	if (step("HWPT_ALLOC nested", ioctl(fd, IOMMU_HWPT_ALLOC, &s1)))
		goto out;
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = s1.out_hwpt_id };
	if (step("VFIO_DEVICE_ATTACH nested", ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)))
		goto out;
	struct iommu_hwpt_vtd_s1_invalidate entry = { .addr = 0, .npages = 1 };
	struct iommu_hwpt_invalidate inv = { .size = sizeof(inv), .hwpt_id = s1.out_hwpt_id, .data_uptr = (uintptr_t)&entry,
					     .data_type = IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, .entry_len = sizeof(entry), .entry_num = 1 };
	if (step("HWPT_INVALIDATE", ioctl(fd, IOMMU_HWPT_INVALIDATE, &inv)))
		goto out;
	struct iommu_hw_info_vtd regs;
	struct iommu_hw_info hw = { .size = sizeof(hw), .dev_id = dev_id, .data_len = sizeof(regs), .data_uptr = (uintptr_t)&regs };
	if (step("GET_HW_INFO", ioctl(fd, IOMMU_GET_HW_INFO, &hw)))
		goto out;
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	if (step("VFIO_DEVICE_DETACH", ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach)))
		goto out;
	rc = 0;
out:
	return closing(rc, dev, fd, -1);
}

/* The VFIO type1 compatibility of an iommufd (compat IOAS, SET_IOMMU, MAP_DMA, GET_INFO, UNMAP_DMA) and a selftest DMA-BUF mapped and revoked. */
static int compat_scenario(int nth_fd, unsigned nth)
{
	int fd = -1, dmabuf = -1, rc = -1;
	struct iommu_ioas_alloc a;
	struct iommu_test_cmd md;
	if (mock_device(nth_fd, nth, &fd, &a, &md))
		goto out;
	struct iommu_vfio_ioas vi = { .size = sizeof(vi), .ioas_id = a.out_ioas_id, .op = IOMMU_VFIO_IOAS_SET };
	if (step("IOMMU_VFIO_IOAS", ioctl(fd, IOMMU_VFIO_IOAS, &vi)))
		goto out;
	if (step("VFIO_SET_IOMMU", ioctl(fd, _IO(';', 100 + 2), 3 /* VFIO_TYPE1v2_IOMMU */)))
		goto out;
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map), .flags = 3 /* READ | WRITE */, .vaddr = (uintptr_t)buffer, .iova = 1 << 24, .size = 0x10000 };
	if (step("VFIO_IOMMU_MAP_DMA", ioctl(fd, VFIO_IOMMU_MAP_DMA, &map)))
		goto out;
	uint8_t info[128] = { 0 };
	*(uint32_t *)info = sizeof(info);
	if (step("VFIO_IOMMU_GET_INFO", ioctl(fd, VFIO_IOMMU_GET_INFO, info)))
		goto out;
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = 1 << 24, .size = 0x10000 };
	if (step("VFIO_IOMMU_UNMAP_DMA", ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap)))
		goto out;
	struct iommu_test_cmd dg = { .size = sizeof(dg), .op = IOMMU_TEST_OP_DMABUF_GET, .dmabuf_get = { .length = 0x4000, .open_flags = O_CLOEXEC } };
	dmabuf = ioctl(fd, IOMMU_TEST_CMD, &dg);
	if (step("DMABUF_GET", dmabuf < 0 ? -1 : 0))
		goto out;
	struct iommu_ioas_map_file mf = { .size = sizeof(mf), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, .ioas_id = a.out_ioas_id,
					  .fd = dmabuf, .length = 0x4000, .iova = 1 << 26 };
	if (step("IOAS_MAP_FILE dmabuf", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf)))
		goto out;
	struct iommu_test_cmd dr = { .size = sizeof(dr), .op = IOMMU_TEST_OP_DMABUF_REVOKE, .dmabuf_revoke = { .dmabuf_fd = dmabuf, .revoked = 1 } };
	if (step("DMABUF_REVOKE", ioctl(fd, IOMMU_TEST_CMD, &dr)))
		goto out;
	rc = 0;
out:
	return closing(rc, dmabuf, fd, -1);
}

/*
 * Events: a page request from a mock device through an IOPF-capable domain to
 * its fault queue, read and answered; a vEVENT from a vDEVICE (attached
 * through its vIOMMU) read from the vIOMMU's vEVENTQ.
 */
static int events_scenario(int nth_fd, unsigned nth)
{
	int fd = -1, fault_fd = -1, veventq_fd = -1, rc = -1;
	struct iommu_ioas_alloc a;
	struct iommu_test_cmd md;
	if (mock_device(nth_fd, nth, &fd, &a, &md))
		goto out;
	uint32_t stdev = md.mock_domain.out_stdev_id, idev = md.mock_domain.out_idev_id;
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	if (step("FAULT_QUEUE_ALLOC", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa)))
		goto out;
	fault_fd = (int)fa.out_fault_fd;
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = idev, .pt_id = a.out_ioas_id };
	if (step("HWPT_ALLOC parent", ioctl(fd, IOMMU_HWPT_ALLOC, &parent)))
		goto out;
	struct iommu_hwpt_selftest data = { .iotlb = 0xbadbeef };
	struct iommu_hwpt_alloc iopf = { .size = sizeof(iopf), .flags = IOMMU_HWPT_FAULT_ID_VALID, .dev_id = idev, .pt_id = parent.out_hwpt_id,
					 .data_type = 0xdead /* IOMMU_HWPT_DATA_SELFTEST */, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data, .fault_id = fa.out_fault_id };
	if (step("HWPT_ALLOC iopf", ioctl(fd, IOMMU_HWPT_ALLOC, &iopf)))
		goto out;
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev, .mock_domain_replace = { .pt_id = iopf.out_hwpt_id } };
	if (test_cmd(fd, "MOCK_DOMAIN_REPLACE", &rep))
		goto out;
	struct iommu_test_cmd trig = { .op = IOMMU_TEST_OP_TRIGGER_IOPF, .trigger_iopf = { .dev_id = idev, .grpid = 2, .perm = 1, .addr = 0x1000 } };
	if (test_cmd(fd, "TRIGGER_IOPF", &trig))
		goto out;
	uint32_t pf[10];
	ssize_t got = read(fault_fd, pf, sizeof(pf));
	if (got == 0)
		errno = ENODATA; /* nothing queued: the request was aborted at the device */
	if (step("read fault", got == sizeof(pf) ? 0 : -1))
		goto out;
	uint32_t response[2] = { pf[9] /* cookie */, 0 /* IOMMUFD_PAGE_RESP_SUCCESS */ };
	if (step("write response", write(fault_fd, response, sizeof(response)) == sizeof(response) ? 0 : -1))
		goto out;
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST, .dev_id = idev, .hwpt_id = parent.out_hwpt_id };
	if (step("VIOMMU_ALLOC", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va)))
		goto out;
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = va.out_viommu_id, .dev_id = idev, .virt_id = 0x99 };
	if (step("VDEVICE_ALLOC", ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd)))
		goto out;
	struct iommu_hwpt_alloc nested = { .size = sizeof(nested), .dev_id = idev, .pt_id = va.out_viommu_id,
					   .data_type = 0xdead /* IOMMU_HWPT_DATA_SELFTEST */, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data };
	if (step("HWPT_ALLOC nested", ioctl(fd, IOMMU_HWPT_ALLOC, &nested)))
		goto out;
	rep.mock_domain_replace.pt_id = nested.out_hwpt_id;
	if (test_cmd(fd, "MOCK_DOMAIN_REPLACE nested", &rep))
		goto out;
	struct iommu_veventq_alloc vq = { .size = sizeof(vq), .viommu_id = va.out_viommu_id, .type = IOMMU_VEVENTQ_TYPE_SELFTEST, .veventq_depth = 2 };
	if (step("VEVENTQ_ALLOC", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &vq)))
		goto out;
	veventq_fd = (int)vq.out_veventq_fd;
	struct iommu_test_cmd tv = { .op = IOMMU_TEST_OP_TRIGGER_VEVENT, .trigger_vevent = { .dev_id = idev } };
	if (test_cmd(fd, "TRIGGER_VEVENT", &tv))
		goto out;
	uint8_t ev[64];
	if (step("read vevent", read(veventq_fd, ev, sizeof(ev)) > 0 ? 0 : -1))
		goto out;
	rc = 0;
out:
	return closing(rc, fault_fd, veventq_fd, fd);
}

int main(int argc, char **argv)
{
	buffer = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	memfd = memfd_create("fail-nth", 0);
	if (memfd < 0 || ftruncate(memfd, 0x10000))
		return 1;
	DIR *debugfs = opendir("/sys/kernel/debug/");
	const char *wait = argc > 1 ? argv[1] : "N";
	if (!debugfs || writeat(dirfd(debugfs), "failslab/ignore-gfp-wait", wait) || writeat(dirfd(debugfs), "fail_page_alloc/ignore-gfp-wait", wait)) {
		printf("debugfs: %s\n", errno_name(errno));
		return 1;
	}
	closedir(debugfs);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/fail-nth", gettid());
	int nth_fd = open(path, O_RDWR);
	if (nth_fd < 0) {
		printf("fail-nth: %s\n", errno_name(errno));
		return 1;
	}
	const char *which = argc > 2 ? argv[2] : "";
	int (*run)(int, unsigned) = strcmp(which, "device") == 0 ? device_scenario
				    : strcmp(which, "vfio") == 0 ? vfio_scenario
				    : strcmp(which, "vtd")  == 0 ? vtd_scenario
				    : strcmp(which, "compat") == 0 ? compat_scenario
				    : strcmp(which, "events") == 0 ? events_scenario
								 : scenario;
	if (run(nth_fd, 0)) {
		printf("no injection: %s %s\n", failed_step, errno_name(failed_errno));
		return 1;
	}
	for (unsigned nth = 1; nth < 400; nth++) {
		failed_step = NULL;
		int rc = run(nth_fd, nth);
		char left[16] = { 0 };
		if (pread(nth_fd, left, sizeof left - 1, 0) < 0 || pwrite(nth_fd, "0", 1, 0) != 1)
			return 1;
		left[strcspn(left, "\n")] = 0;
		if (rc)
			printf("%u: %s %s, left %s\n", nth, failed_step, errno_name(failed_errno), left);
		else
			printf("%u: through, left %s\n", nth, left);
		if (!rc)
			return strcmp(left, "0") == 0; /* it went through because nothing was left to fail */
	}
	return 1;
}
