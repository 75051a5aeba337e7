/*
 * A conformance client of the nested / vIOMMU uAPI, written from the
 * kernel's uAPI facts alone (its own struct layouts, not the generated
 * header): it finds an SMMUv3 device and a VT-d device the way a VMM does
 * (sys/bus/pci/devices/BDF/iommu and BDF/vfio-dev/vfioN, then
 * /dev/vfio/devices/vfioN), binds them and checks GET_HW_INFO, HWPT_ALLOC,
 * VIOMMU_ALLOC, VDEVICE_ALLOC, HWPT_INVALIDATE, VEVENTQ_ALLOC,
 * FAULT_QUEUE_ALLOC, HW_QUEUE_ALLOC, the dirty-tracking ioctls and the
 * destroy-order rules with exact values and errnos. One line per check,
 * "NAME: ok" or "NAME: FAIL got X want Y"; exit 1 on any FAIL.
 * Run under `iommufs exec [--namespace]`: $IOMMUFS_MOUNT names the sysfs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>
#include "conform.h"

/* ---- the uAPI, restated (every command is _IO(';', nr)) ---- */
#define CMD(nr) _IO(0x3B, (nr))
#define IOMMU_DESTROY CMD(0x80)
#define IOMMU_IOAS_ALLOC CMD(0x81)
#define IOMMU_IOAS_MAP CMD(0x85)
#define IOMMU_HWPT_ALLOC CMD(0x89)
#define IOMMU_GET_HW_INFO CMD(0x8A)
#define IOMMU_HWPT_SET_DIRTY_TRACKING CMD(0x8B)
#define IOMMU_HWPT_GET_DIRTY_BITMAP CMD(0x8C)
#define IOMMU_HWPT_INVALIDATE CMD(0x8D)
#define IOMMU_FAULT_QUEUE_ALLOC CMD(0x8E)
#define IOMMU_VIOMMU_ALLOC CMD(0x90)
#define IOMMU_VDEVICE_ALLOC CMD(0x91)
#define IOMMU_VEVENTQ_ALLOC CMD(0x93)
#define IOMMU_HW_QUEUE_ALLOC CMD(0x94)
#define VFIO_DEVICE_BIND_IOMMUFD CMD(100 + 18)
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT CMD(100 + 19)
#define VFIO_DEVICE_DETACH_IOMMUFD_PT CMD(100 + 20)

#define MAP_FIXED_IOVA 1u
#define MAP_WRITEABLE 2u
#define MAP_READABLE 4u

#define NEST_PARENT 1u
#define DIRTY_TRACKING 2u
#define FAULT_ID_VALID 4u
#define ALLOC_PASID 8u

#define DATA_NONE 0u
#define DATA_VTD_S1 1u
#define DATA_ARM_SMMUV3 2u
#define INV_VTD_S1 0u
#define INV_ARM_SMMUV3 1u
#define VIOMMU_ARM_SMMUV3 1u
#define VIOMMU_TEGRA241 2u
#define HW_INFO_VTD 1u
#define HW_INFO_SMMUV3 2u
#define HW_INFO_INPUT_TYPE 1u
#define CAP_DIRTY 1ull
#define CAP_KNOWN 0xFull
#define VEVENTQ_ARM_SMMUV3 1u
#define HW_QUEUE_TEGRA241 1u

struct destroy_s { uint32_t size, id; };
struct ioas_alloc_s { uint32_t size, flags, out_ioas_id; };
struct ioas_map_s { uint32_t size, flags, ioas_id, reserved; uint64_t user_va, length, iova; };
struct hwpt_alloc_s {
	uint32_t size, flags, dev_id, pt_id, out_hwpt_id, reserved, data_type, data_len;
	uint64_t data_uptr;
	uint32_t fault_id, reserved2;
};
struct hw_info_s {
	uint32_t size, flags, dev_id, data_len;
	uint64_t data_uptr;
	uint32_t data_type;
	uint8_t out_max_pasid_log2, reserved[3];
	uint64_t out_capabilities;
};
struct dirty_track_s { uint32_t size, flags, hwpt_id, reserved; };
struct dirty_bitmap_s { uint32_t size, hwpt_id, flags, reserved; uint64_t iova, length, page_size, data; };
struct invalidate_s { uint32_t size, hwpt_id; uint64_t data_uptr; uint32_t data_type, entry_len, entry_num, reserved; };
struct fault_alloc_s { uint32_t size, flags, out_fault_id, out_fault_fd; };
struct viommu_alloc_s { uint32_t size, flags, type, dev_id, hwpt_id, out_viommu_id, data_len, reserved; uint64_t data_uptr; };
struct vdevice_alloc_s { uint32_t size, viommu_id, dev_id, out_vdevice_id; uint64_t virt_id; };
struct veventq_alloc_s { uint32_t size, flags, viommu_id, type, depth, out_veventq_id, out_veventq_fd, reserved; };
struct hw_queue_alloc_s { uint32_t size, flags, viommu_id, type, index, out_hw_queue_id; uint64_t iova, length; };
struct bind_s { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; uint64_t token_uuid_ptr; };
struct attach_s { uint32_t argsz, flags, pt_id, pasid; };
struct detach_s { uint32_t argsz, flags, pasid; };
struct smmu_info_s { uint32_t flags, reserved, idr[6], iidr, aidr; };
struct vtd_info_s { uint32_t flags, reserved; uint64_t cap, ecap; };
struct vtd_s1_s { uint64_t flags, pgtbl_addr; uint32_t addr_width, reserved; };
struct vtd_inv_s { uint64_t addr, npages; uint32_t flags, reserved; };
struct pgfault_response_s { uint32_t cookie, code; };

_Static_assert(sizeof(struct hwpt_alloc_s) == 48, "hwpt_alloc");
_Static_assert(sizeof(struct hw_info_s) == 40, "hw_info");
_Static_assert(sizeof(struct dirty_bitmap_s) == 48, "dirty_bitmap");
_Static_assert(sizeof(struct invalidate_s) == 32, "invalidate");
_Static_assert(sizeof(struct viommu_alloc_s) == 40, "viommu_alloc");
_Static_assert(sizeof(struct vdevice_alloc_s) == 24, "vdevice_alloc");
_Static_assert(sizeof(struct veventq_alloc_s) == 32, "veventq_alloc");
_Static_assert(sizeof(struct hw_queue_alloc_s) == 40, "hw_queue_alloc");
_Static_assert(sizeof(struct smmu_info_s) == 40, "smmu info");
_Static_assert(sizeof(struct vtd_info_s) == 24, "vtd info");
_Static_assert(sizeof(struct vtd_s1_s) == 24, "vtd s1");
_Static_assert(sizeof(struct vtd_inv_s) == 24, "vtd inv");
_Static_assert(sizeof(struct bind_s) == 24, "bind");

/* ---- reporting ---- */
static const char *root = "";
static uint32_t vtd_dev_id, smmu_dev_id; /* for the checks that cross drivers */

static int destroy(int fd, uint32_t id)
{
	struct destroy_s d = { sizeof(d), id };
	return io(fd, IOMMU_DESTROY, &d);
}

static uint32_t ioas_alloc(int fd)
{
	struct ioas_alloc_s a = { .size = sizeof(a) };
	if (io(fd, IOMMU_IOAS_ALLOC, &a))
		return 0;
	return a.out_ioas_id;
}

static int hwpt_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t flags, uint32_t type, const void *data, uint32_t len, uint32_t *out)
{
	struct hwpt_alloc_s h = { .size = sizeof(h), .flags = flags, .dev_id = dev, .pt_id = pt, .data_type = type, .data_len = len, .data_uptr = (uintptr_t)data };
	int rc = io(fd, IOMMU_HWPT_ALLOC, &h);
	if (out)
		*out = rc ? 0 : h.out_hwpt_id;
	return rc;
}

static int viommu_alloc(int fd, uint32_t type, uint32_t dev, uint32_t hwpt, uint32_t *out)
{
	struct viommu_alloc_s v = { .size = sizeof(v), .type = type, .dev_id = dev, .hwpt_id = hwpt };
	int rc = io(fd, IOMMU_VIOMMU_ALLOC, &v);
	if (out)
		*out = rc ? 0 : v.out_viommu_id;
	return rc;
}

static int vdevice_alloc(int fd, uint32_t viommu, uint32_t dev, uint64_t virt_id, uint32_t *out)
{
	struct vdevice_alloc_s v = { .size = sizeof(v), .viommu_id = viommu, .dev_id = dev, .virt_id = virt_id };
	int rc = io(fd, IOMMU_VDEVICE_ALLOC, &v);
	if (out)
		*out = rc ? 0 : v.out_vdevice_id;
	return rc;
}

/* entry_num comes back in *done */
static int invalidate(int fd, uint32_t id, uint32_t type, const void *data, uint32_t len, uint32_t num, uint32_t *done)
{
	struct invalidate_s i = { .size = sizeof(i), .hwpt_id = id, .data_uptr = (uintptr_t)data, .data_type = type, .entry_len = len, .entry_num = num };
	int rc = io(fd, IOMMU_HWPT_INVALIDATE, &i);
	*done = i.entry_num;
	return rc;
}

static int attach(int dfd, uint32_t pt, uint32_t *out)
{
	struct attach_s a = { .argsz = sizeof(a), .pt_id = pt };
	int rc = io(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);
	if (out)
		*out = a.pt_id;
	return rc;
}

static int detach(int dfd)
{
	struct detach_s d = { .argsz = sizeof(d) };
	return io(dfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d);
}

static int veventq_alloc(int fd, uint32_t viommu, uint32_t type, uint32_t depth, uint32_t *id, int *qfd)
{
	struct veventq_alloc_s q = { .size = sizeof(q), .viommu_id = viommu, .type = type, .depth = depth };
	int rc = io(fd, IOMMU_VEVENTQ_ALLOC, &q);
	*id = rc ? 0 : q.out_veventq_id;
	*qfd = rc ? -1 : (int)q.out_veventq_fd;
	return rc;
}

static int hw_queue_alloc(int fd, uint32_t flags, uint32_t viommu, uint32_t type, uint64_t iova, uint64_t len)
{
	struct hw_queue_alloc_s q = { .size = sizeof(q), .flags = flags, .viommu_id = viommu, .type = type, .iova = iova, .length = len };
	return io(fd, IOMMU_HW_QUEUE_ALLOC, &q);
}

static int map_at(int fd, uint32_t ioas, void *va, uint64_t len, uint64_t iova, uint32_t flags)
{
	struct ioas_map_s m = { .size = sizeof(m), .flags = flags | MAP_FIXED_IOVA, .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len, .iova = iova };
	return io(fd, IOMMU_IOAS_MAP, &m);
}

/* ---- finding the devices ---- */
static uint64_t read_hex(const char *rel)
{
	char path[PATH_MAX], buf[64] = "";
	snprintf(path, sizeof path, "%s/%s", root, rel);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof buf, f)) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(2);
	}
	fclose(f);
	return strtoull(buf, NULL, 16);
}

struct dev {
	char bdf[32];
	char unit[96]; /* sys/class/iommu name */
	int vfio;      /* N of vfioN */
	int fd;
	uint32_t id;
};

/* the PCI devices that have a VFIO cdev, with the IOMMU unit each is behind */
static int find_devices(struct dev *out, int max)
{
	char path[PATH_MAX], link[PATH_MAX];
	int n = 0;
	snprintf(path, sizeof path, "%s/sys/bus/pci/devices", root);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/sys/bus/pci/devices/%s/iommu", root, e->d_name);
		ssize_t l = readlink(path, link, sizeof link - 1);
		if (l <= 0)
			continue;
		link[l] = 0;
		snprintf(path, sizeof path, "%s/sys/bus/pci/devices/%s/vfio-dev", root, e->d_name);
		DIR *v = opendir(path);
		if (!v)
			continue;
		struct dirent *ve;
		int vfio = -1;
		while ((ve = readdir(v)))
			if (sscanf(ve->d_name, "vfio%d", &vfio) == 1)
				break;
		closedir(v);
		if (vfio < 0)
			continue;
		struct dev *dv = &out[n++];
		memset(dv, 0, sizeof *dv);
		snprintf(dv->bdf, sizeof dv->bdf, "%.31s", e->d_name);
		snprintf(dv->unit, sizeof dv->unit, "%.95s", strrchr(link, '/') + 1);
		dv->vfio = vfio;
		dv->fd = -1;
	}
	closedir(d);
	return n;
}

static int bind_dev(int iommufd, struct dev *d)
{
	char path[64];
	snprintf(path, sizeof path, "/dev/vfio/devices/vfio%d", d->vfio);
	d->fd = open(path, O_RDWR);
	if (d->fd < 0)
		return errno;
	struct bind_s b = { .argsz = sizeof(b), .iommufd = iommufd };
	int rc = io(d->fd, VFIO_DEVICE_BIND_IOMMUFD, &b);
	d->id = b.out_devid;
	return rc;
}

/* ---- GET_HW_INFO ---- */
static int hw_info(int fd, uint32_t dev, void *buf, uint32_t len, struct hw_info_s *h)
{
	memset(h, 0, sizeof *h);
	h->size = sizeof *h;
	h->dev_id = dev;
	h->data_len = len;
	h->data_uptr = (uintptr_t)buf;
	return io(fd, IOMMU_GET_HW_INFO, h);
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

static void hw_info_common(int fd, uint32_t dev, uint32_t ioas, const char *k, uint32_t blob, uint32_t type)
{
	char name[96];
	uint8_t buf[64];
	struct hw_info_s h;

#define N(s) (snprintf(name, sizeof name, "%s_%s", k, s), name)
	memset(buf, 0xAA, sizeof buf);
	expect(N("hw_info_short_buffer"), hw_info(fd, dev, buf, 8, &h), 0);
	expect_u64(N("hw_info_short_buffer_data_len"), h.data_len, blob);
	expect_u64(N("hw_info_short_buffer_untouched_past_len"), all_bytes(buf + 8, sizeof buf - 8, 0xAA), 1);
	memset(buf, 0xAA, sizeof buf);
	expect(N("hw_info_long_buffer"), hw_info(fd, dev, buf, sizeof buf, &h), 0);
	expect_u64(N("hw_info_long_buffer_data_len"), h.data_len, blob);
	expect_u64(N("hw_info_long_buffer_zero_filled"), all_bytes(buf + blob, sizeof buf - blob, 0), 1);
	expect(N("hw_info_probe"), hw_info(fd, dev, NULL, 0, &h), 0);
	expect_u64(N("hw_info_probe_data_len"), h.data_len, blob);
	expect_u64(N("hw_info_probe_type"), h.data_type, type);
	expect(N("hw_info_null_buffer"), hw_info(fd, dev, NULL, blob, &h), EFAULT);

	/* size 32 (the minimum): out_capabilities is past the caller's struct */
	uint8_t raw[48];
	memset(raw, 0xAA, sizeof raw);
	struct hw_info_s *r = (struct hw_info_s *)raw;
	r->size = 32, r->flags = 0, r->dev_id = dev, r->data_len = 0, r->data_uptr = 0, r->data_type = 0;
	r->out_max_pasid_log2 = 0, memset(r->reserved, 0, 3);
	expect(N("hw_info_size_32"), io(fd, IOMMU_GET_HW_INFO, raw), 0);
	expect_u64(N("hw_info_size_32_type"), r->data_type, type);
	expect_u64(N("hw_info_size_32_caps_untouched"), all_bytes(raw + 32, 16, 0xAA), 1);
	r->size = 28;
	expect(N("hw_info_size_28"), io(fd, IOMMU_GET_HW_INFO, raw), EINVAL);
	memset(raw, 0, sizeof raw);
	r->size = 48, r->dev_id = dev, raw[44] = 1;
	expect(N("hw_info_size_48_nonzero_tail"), io(fd, IOMMU_GET_HW_INFO, raw), E2BIG);
	raw[44] = 0;
	expect(N("hw_info_size_48_zero_tail"), io(fd, IOMMU_GET_HW_INFO, raw), 0);

	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = dev, h.flags = 2;
	expect(N("hw_info_unknown_flag"), io(fd, IOMMU_GET_HW_INFO, &h), EOPNOTSUPP);
	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = dev, h.reserved[2] = 1;
	expect(N("hw_info_reserved"), io(fd, IOMMU_GET_HW_INFO, &h), EOPNOTSUPP);
	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = dev, h.flags = HW_INFO_INPUT_TYPE, h.data_type = type;
	expect(N("hw_info_input_type_own"), io(fd, IOMMU_GET_HW_INFO, &h), 0);
	expect_u64(N("hw_info_input_type_own_type"), h.data_type, type);
	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = dev, h.flags = HW_INFO_INPUT_TYPE, h.data_type = 0;
	expect(N("hw_info_input_type_default"), io(fd, IOMMU_GET_HW_INFO, &h), 0);
	expect_u64(N("hw_info_input_type_default_type"), h.data_type, type);
	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = dev, h.data_type = type == HW_INFO_VTD ? HW_INFO_SMMUV3 : HW_INFO_VTD;
	expect(N("hw_info_type_ignored_without_flag"), io(fd, IOMMU_GET_HW_INFO, &h), 0);
	expect_u64(N("hw_info_type_ignored_without_flag_type"), h.data_type, type);
	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = dev, h.flags = HW_INFO_INPUT_TYPE, h.data_type = type == HW_INFO_VTD ? HW_INFO_SMMUV3 : HW_INFO_VTD;
	expect(N("hw_info_input_type_other"), io(fd, IOMMU_GET_HW_INFO, &h), EOPNOTSUPP);
	memset(&h, 0, sizeof h);
	h.size = sizeof h, h.dev_id = 0x7ffffff0, h.data_len = 0;
	expect(N("hw_info_bad_dev"), io(fd, IOMMU_GET_HW_INFO, &h), ENOENT);
	h.dev_id = ioas;
	expect(N("hw_info_dev_is_ioas"), io(fd, IOMMU_GET_HW_INFO, &h), ENOENT);
#undef N
}

static uint64_t field(uint64_t v, int hi, int lo)
{
	return (v >> lo) & ((2ull << (hi - lo)) - 1);
}

static void hw_info_smmu(int fd, struct dev *d, uint32_t ioas)
{
	struct smmu_info_s info;
	struct hw_info_s h;
	char rel[256];
	memset(&info, 0xAA, sizeof info);
	expect("smmu_hw_info", hw_info(fd, d->id, &info, sizeof info, &h), 0);
	expect_u64("smmu_hw_info_data_len", h.data_len, 40);
	expect_u64("smmu_hw_info_type", h.data_type, HW_INFO_SMMUV3);
	expect_u64("smmu_hw_info_flags", info.flags, 0);
	expect_u64("smmu_hw_info_reserved", info.reserved, 0);
	for (int i = 0; i < 6; i++) {
		char name[32];
		snprintf(rel, sizeof rel, "sys/class/iommu/%s/arm-smmu-v3/idr%d", d->unit, i);
		snprintf(name, sizeof name, "smmu_hw_info_idr%d_raw", i);
		expect_u64(name, info.idr[i], read_hex(rel));
	}
	snprintf(rel, sizeof rel, "sys/class/iommu/%s/arm-smmu-v3/iidr", d->unit);
	expect_u64("smmu_hw_info_iidr_raw", info.iidr, read_hex(rel));
	snprintf(rel, sizeof rel, "sys/class/iommu/%s/arm-smmu-v3/aidr", d->unit);
	expect_u64("smmu_hw_info_aidr_raw", info.aidr, read_hex(rel));
	/* dirty tracking: HTTU = access + dirty */
	expect_u64("smmu_hw_info_cap_dirty", h.out_capabilities & CAP_DIRTY, field(info.idr[0], 7, 6) == 2 ? CAP_DIRTY : 0);
	expect_u64("smmu_hw_info_cap_unknown_bits", h.out_capabilities & ~CAP_KNOWN, 0);
	expect_u64("smmu_hw_info_pasid_log2_within_ssidsize", h.out_max_pasid_log2 <= field(info.idr[1], 10, 6), 1);
	hw_info_common(fd, d->id, ioas, "smmu", 40, HW_INFO_SMMUV3);
}

static void hw_info_vtd(int fd, struct dev *d, uint32_t ioas, struct vtd_info_s *info)
{
	struct hw_info_s h;
	char rel[256];
	memset(info, 0xAA, sizeof *info);
	expect("vtd_hw_info", hw_info(fd, d->id, info, sizeof *info, &h), 0);
	expect_u64("vtd_hw_info_data_len", h.data_len, 24);
	expect_u64("vtd_hw_info_type", h.data_type, HW_INFO_VTD);
	expect_u64("vtd_hw_info_flags_errata", info->flags, 1);
	expect_u64("vtd_hw_info_reserved", info->reserved, 0);
	snprintf(rel, sizeof rel, "sys/class/iommu/%s/intel-iommu/cap", d->unit);
	expect_u64("vtd_hw_info_cap_raw", info->cap, read_hex(rel));
	snprintf(rel, sizeof rel, "sys/class/iommu/%s/intel-iommu/ecap", d->unit);
	expect_u64("vtd_hw_info_ecap_raw", info->ecap, read_hex(rel));
	int dirty = field(info->ecap, 43, 43) && field(info->ecap, 45, 45) && field(info->ecap, 48, 48);
	expect_u64("vtd_hw_info_cap_dirty", h.out_capabilities & CAP_DIRTY, dirty ? CAP_DIRTY : 0);
	expect_u64("vtd_hw_info_cap_unknown_bits", h.out_capabilities & ~CAP_KNOWN, 0);
	expect_u64("vtd_hw_info_pasid_log2_within_pss", h.out_max_pasid_log2 <= field(info->ecap, 39, 35) + 1, 1);
	hw_info_common(fd, d->id, ioas, "vtd", 24, HW_INFO_VTD);
}

/* a DMA read by the device through the mount's debug port (no uAPI makes one) */
static void dma_read(const char *bdf, uint64_t iova)
{
	char path[PATH_MAX], line[96], reply[4096];
	snprintf(path, sizeof path, "%s/sys/kernel/debug/iommufd/dma/%s", root, bdf);
	int f = open(path, O_RDWR);
	if (f < 0) {
		perror(path);
		exit(2);
	}
	int n = snprintf(line, sizeof line, "read iova=0x%llx len=8\n", (unsigned long long)iova);
	if (write(f, line, n) != n || pread(f, reply, sizeof reply, 0) < 0) {
		perror("dma");
		exit(2);
	}
	close(f);
}

struct vevent {
	uint32_t flags, sequence;
	uint64_t evt[4];
};

/* ---- SMMUv3 ---- */
#define STE_V 1ull
#define STE_CFG(c) ((uint64_t)(c) << 1)
#define STE_CTXPTR 0x40000ull
#define STE_EATS(e) ((uint64_t)(e) << 28)

static uint32_t smmu_nested(int fd, uint32_t dev, uint32_t viommu, uint64_t w0, uint64_t w1, int *rc)
{
	uint64_t ste[2] = { w0, w1 };
	uint32_t id = 0;
	*rc = hwpt_alloc(fd, dev, viommu, 0, DATA_ARM_SMMUV3, ste, sizeof ste, &id);
	return id;
}

static void smmu_checks(int fd, struct dev *a, struct dev *b, struct dev *other, uint32_t ioas)
{
	uint32_t parent, plain, dirty, viommu, viommu2, id, done;
	uint64_t ste[3] = { STE_V | STE_CFG(5) | STE_CTXPTR, 0, 0 };
	int rc;

	/* HWPT_ALLOC on the IOAS */
	expect("smmu_nest_parent", hwpt_alloc(fd, a->id, ioas, NEST_PARENT, DATA_NONE, NULL, 0, &parent), 0);
	expect("smmu_plain_paging", hwpt_alloc(fd, a->id, ioas, 0, DATA_NONE, NULL, 0, &plain), 0);
	expect("smmu_dirty_tracking", hwpt_alloc(fd, a->id, ioas, DIRTY_TRACKING, DATA_NONE, NULL, 0, &dirty), 0);
	expect("smmu_fault_id_with_nest_parent", hwpt_alloc(fd, a->id, ioas, NEST_PARENT | FAULT_ID_VALID, DATA_NONE, NULL, 0, NULL), EOPNOTSUPP);
	expect("smmu_unknown_alloc_flag", hwpt_alloc(fd, a->id, ioas, 1u << 4, DATA_NONE, NULL, 0, NULL), EOPNOTSUPP);
	{
		struct hwpt_alloc_s h = { .size = sizeof(h), .flags = FAULT_ID_VALID, .dev_id = a->id, .pt_id = ioas, .fault_id = ioas };
		expect("smmu_fault_id_is_ioas", io(fd, IOMMU_HWPT_ALLOC, &h), ENOENT);
		memset(&h, 0, sizeof h);
		h.size = sizeof h, h.dev_id = a->id, h.pt_id = ioas, h.reserved = 1;
		expect("smmu_alloc_reserved", io(fd, IOMMU_HWPT_ALLOC, &h), EOPNOTSUPP);
		h.reserved = 0, h.reserved2 = 1;
		expect("smmu_alloc_reserved2_unchecked", io(fd, IOMMU_HWPT_ALLOC, &h), 0);
		destroy(fd, h.out_hwpt_id);
		memset(&h, 0, sizeof h);
		h.size = 20, h.dev_id = a->id, h.pt_id = ioas;
		expect("smmu_alloc_size_20", io(fd, IOMMU_HWPT_ALLOC, &h), EINVAL);
		h.size = 24;
		expect("smmu_alloc_size_24", io(fd, IOMMU_HWPT_ALLOC, &h), 0);
		destroy(fd, h.out_hwpt_id);
	}
	expect("smmu_none_with_data_len", hwpt_alloc(fd, a->id, ioas, 0, DATA_NONE, ste, 16, NULL), EINVAL);
	expect("smmu_type_with_zero_len", hwpt_alloc(fd, a->id, ioas, 0, DATA_ARM_SMMUV3, ste, 0, NULL), EINVAL);
	expect("smmu_paging_with_data", hwpt_alloc(fd, a->id, ioas, 0, DATA_ARM_SMMUV3, ste, 16, NULL), EOPNOTSUPP);
	expect("smmu_bad_dev", hwpt_alloc(fd, 0x7ffffff0, ioas, 0, DATA_NONE, NULL, 0, NULL), ENOENT);
	expect("smmu_pt_missing", hwpt_alloc(fd, a->id, 0x7ffffff0, 0, DATA_NONE, NULL, 0, NULL), EINVAL);
	expect("smmu_pt_is_device", hwpt_alloc(fd, a->id, a->id, 0, DATA_NONE, NULL, 0, NULL), EINVAL);
	expect("smmu_nested_on_parent_hwpt", hwpt_alloc(fd, a->id, parent, 0, DATA_ARM_SMMUV3, ste, 16, NULL), EOPNOTSUPP);
	{
		/* the common checks come before the device lookup, the device before pt_id */
		struct hwpt_alloc_s h = { .size = sizeof(h), .dev_id = 0x7ffffff0, .pt_id = 0x7ffffff0, .reserved = 1 };
		expect("smmu_alloc_reserved_before_dev", io(fd, IOMMU_HWPT_ALLOC, &h), EOPNOTSUPP);
		h.reserved = 0, h.data_len = 8;
		expect("smmu_alloc_data_rule_before_dev", io(fd, IOMMU_HWPT_ALLOC, &h), EINVAL);
		h.data_len = 0;
		expect("smmu_alloc_dev_before_pt", io(fd, IOMMU_HWPT_ALLOC, &h), ENOENT);
		uint8_t raw[56] = { 0 };
		struct hwpt_alloc_s *r = (struct hwpt_alloc_s *)raw;
		r->size = sizeof raw, r->dev_id = a->id, r->pt_id = ioas, raw[50] = 1;
		expect("smmu_alloc_size_56_nonzero_tail", io(fd, IOMMU_HWPT_ALLOC, raw), E2BIG);
		raw[50] = 0;
		expect("smmu_alloc_size_56_zero_tail", io(fd, IOMMU_HWPT_ALLOC, raw), 0);
		destroy(fd, r->out_hwpt_id);
	}

	/* VIOMMU_ALLOC */
	{
		struct viommu_alloc_s v = { .size = sizeof(v), .flags = 1, .type = VIOMMU_ARM_SMMUV3, .dev_id = a->id, .hwpt_id = parent };
		expect("viommu_flags", io(fd, IOMMU_VIOMMU_ALLOC, &v), EOPNOTSUPP);
		v.flags = 0, v.size = 20;
		expect("viommu_size_20", io(fd, IOMMU_VIOMMU_ALLOC, &v), EINVAL);
		v.size = sizeof(v), v.reserved = 1;
		expect("viommu_reserved_unchecked", io(fd, IOMMU_VIOMMU_ALLOC, &v), 0);
		destroy(fd, v.out_viommu_id);
	}
	expect("viommu_type_default", viommu_alloc(fd, 0, a->id, parent, NULL), EOPNOTSUPP);
	expect("viommu_type_tegra_on_smmuv3", viommu_alloc(fd, VIOMMU_TEGRA241, a->id, parent, NULL), EOPNOTSUPP);
	expect("viommu_bad_dev", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, 0x7ffffff0, parent, NULL), ENOENT);
	expect("viommu_hwpt_is_ioas", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, ioas, NULL), ENOENT);
	expect("viommu_hwpt_missing", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, 0x7ffffff0, NULL), ENOENT);
	expect("viommu_not_nest_parent", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, plain, NULL), EINVAL);
	{
		uint8_t raw[48] = { 0 };
		struct viommu_alloc_s *v = (struct viommu_alloc_s *)raw;
		v->size = sizeof raw, v->type = VIOMMU_ARM_SMMUV3, v->dev_id = a->id, v->hwpt_id = parent, raw[47] = 1;
		expect("viommu_size_48_nonzero_tail", io(fd, IOMMU_VIOMMU_ALLOC, raw), E2BIG);
	}
	if (other) {
		uint32_t oparent;
		expect("other_smmu_nest_parent", hwpt_alloc(fd, other->id, ioas, NEST_PARENT, DATA_NONE, NULL, 0, &oparent), 0);
		expect("viommu_parent_of_other_smmu", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, oparent, NULL), EINVAL);
		destroy(fd, oparent);
	}
	if (other) {
		/* an SMMUv3 domain is finalised on the SMMU of its dev_id: the other SMMU's devices cannot use it */
		expect("attach_parent_dev_of_other_smmu", attach(other->fd, parent, NULL), EINVAL);
		uint32_t h0 = 0, h1 = 0;
		expect("attach_ioas_a", attach(a->fd, ioas, &h0), 0);
		expect("attach_ioas_other_smmu", attach(other->fd, ioas, &h1), 0);
		expect_u64("auto_domain_per_smmu", h1 != h0 && h0 != ioas && h1 != ioas, 1);
		if (b) {
			uint32_t hb = 0;
			expect("attach_ioas_b", attach(b->fd, ioas, &hb), 0);
			expect_u64("auto_domain_reused_on_same_smmu", hb, h0);
			detach(b->fd);
		}
		expect("detach_ioas_a", detach(a->fd), 0);
		expect("detach_ioas_other", detach(other->fd), 0);
	}
	expect("viommu", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, parent, &viommu), 0);
	expect("viommu2_same_parent", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, parent, &viommu2), 0);
	expect("viommu_hwpt_is_viommu", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, viommu, NULL), ENOENT);
	expect("hwpt_alloc_pt_is_device", hwpt_alloc(fd, a->id, a->id, 0, DATA_ARM_SMMUV3, ste, 16, NULL), EINVAL);
	if (vtd_dev_id)
		expect("ste_dev_of_vtd", hwpt_alloc(fd, vtd_dev_id, viommu, 0, DATA_ARM_SMMUV3, ste, 16, NULL), EINVAL);

	/* nested HWPT through the vIOMMU: STE validation */
	id = smmu_nested(fd, a->id, viommu, 0xFFFFFFFFFFFFFFFEull, ~0ull, &rc);
	expect("ste_v0_anything_accepted", rc, 0);
	destroy(fd, id);
	id = smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(0), 0, &rc);
	expect("ste_cfg_abort", rc, 0);
	destroy(fd, id);
	id = smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(4), 0, &rc);
	expect("ste_cfg_bypass", rc, 0);
	destroy(fd, id);
	smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(6), 0, &rc);
	expect("ste_cfg_s2_only", rc, EIO);
	smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(7), 0, &rc);
	expect("ste_cfg_nested", rc, EIO);
	smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(1), 0, &rc);
	expect("ste_cfg_reserved", rc, EIO);
	smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(5) | (1ull << 52), 0, &rc);
	expect("ste_word0_disallowed_bit", rc, EIO);
	smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(5), 1ull << 8, &rc);
	expect("ste_word1_disallowed_bit", rc, EIO);
	smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(5), STE_EATS(2), &rc);
	expect("ste_eats_s1chk", rc, EIO);
	id = smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(5) | (0x1Full << 59) | (2ull << 4), STE_EATS(1) | (1ull << 27) | 0xFF, &rc);
	expect("ste_all_allowed_fields", rc, 0);
	destroy(fd, id);
	expect("ste_flag_pasid", hwpt_alloc(fd, a->id, viommu, ALLOC_PASID, DATA_ARM_SMMUV3, ste, 16, NULL), EOPNOTSUPP);
	expect("ste_flag_nest_parent", hwpt_alloc(fd, a->id, viommu, NEST_PARENT, DATA_ARM_SMMUV3, ste, 16, NULL), EOPNOTSUPP);
	expect("ste_wrong_data_type", hwpt_alloc(fd, a->id, viommu, 0, DATA_VTD_S1, ste, 16, NULL), EINVAL);
	expect("ste_data_len_8", hwpt_alloc(fd, a->id, viommu, 0, DATA_ARM_SMMUV3, ste, 8, NULL), EINVAL);
	expect("ste_data_len_24", hwpt_alloc(fd, a->id, viommu, 0, DATA_ARM_SMMUV3, ste, 24, NULL), EINVAL);
	expect("ste_data_len_0", hwpt_alloc(fd, a->id, viommu, 0, DATA_ARM_SMMUV3, ste, 0, NULL), EINVAL);
	if (other)
		expect("ste_dev_of_other_smmu", hwpt_alloc(fd, other->id, viommu, 0, DATA_ARM_SMMUV3, ste, 16, NULL), EINVAL);

	/* failed allocations leave no ID behind: the next one is the lowest free */
	{
		uint32_t probe = ioas_alloc(fd);
		destroy(fd, probe);
		hwpt_alloc(fd, a->id, viommu, 0, DATA_ARM_SMMUV3, (uint64_t[2]){ STE_V | STE_CFG(6), 0 }, 16, NULL);
		uint32_t again = ioas_alloc(fd);
		expect_u64("failed_alloc_leaves_no_id", again, probe);
		destroy(fd, again);
	}

	uint32_t s1 = smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(5) | STE_CTXPTR, 0, &rc);
	expect("nested_s1", rc, 0);
	uint32_t byp = smmu_nested(fd, a->id, viommu, STE_V | STE_CFG(4), 0, &rc);
	expect("nested_bypass", rc, 0);
	expect("hwpt_alloc_pt_is_nested", hwpt_alloc(fd, a->id, s1, 0, DATA_ARM_SMMUV3, ste, 16, NULL), EINVAL);
	expect("viommu_hwpt_is_nested", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, a->id, s1, NULL), ENOENT);
	{
		/* the core takes FAULT_ID_VALID off before the driver sees the flags */
		struct fault_alloc_s f = { .size = sizeof(f) };
		io(fd, IOMMU_FAULT_QUEUE_ALLOC, &f);
		struct hwpt_alloc_s h = { .size = sizeof(h), .flags = FAULT_ID_VALID, .dev_id = a->id, .pt_id = viommu, .data_type = DATA_ARM_SMMUV3, .data_len = 16, .data_uptr = (uintptr_t)ste, .fault_id = f.out_fault_id };
		expect("nested_with_fault_id", io(fd, IOMMU_HWPT_ALLOC, &h), 0);
		destroy(fd, h.out_hwpt_id);
		close((int)f.out_fault_fd);
		destroy(fd, f.out_fault_id);
	}

	/* attach: stage 1 needs a vDEVICE, bypass does not */
	expect("attach_s1_without_vdevice", attach(a->fd, s1, NULL), ENOENT);
	expect("attach_bypass_without_vdevice", attach(a->fd, byp, NULL), 0);

	/* VDEVICE_ALLOC */
	uint32_t vd_a, vd_b;
	expect("vdevice_bad_viommu", vdevice_alloc(fd, 0x7ffffff0, a->id, 0x10, NULL), ENOENT);
	expect("vdevice_viommu_is_ioas", vdevice_alloc(fd, ioas, a->id, 0x10, NULL), ENOENT);
	expect("vdevice_bad_dev", vdevice_alloc(fd, viommu, 0x7ffffff0, 0x10, NULL), ENOENT);
	if (vtd_dev_id)
		expect("vdevice_dev_of_vtd", vdevice_alloc(fd, viommu, vtd_dev_id, 0x40, NULL), EINVAL);
	{
		struct vdevice_alloc_s v = { .size = 16, .viommu_id = viommu, .dev_id = a->id, .virt_id = 0x10 };
		expect("vdevice_size_16", io(fd, IOMMU_VDEVICE_ALLOC, &v), EINVAL);
	}
	if (other)
		expect("vdevice_dev_of_other_smmu", vdevice_alloc(fd, viommu, other->id, 0x30, NULL), EINVAL);
	{
		uint32_t big;
		expect("vdevice_virt_id_64bit", vdevice_alloc(fd, viommu, a->id, 0x123400000010ull, &big), 0);
		destroy(fd, big);
	}
	expect("vdevice", vdevice_alloc(fd, viommu, a->id, 0x10, &vd_a), 0);
	{
		uint32_t other_s1 = smmu_nested(fd, a->id, viommu2, STE_V | STE_CFG(5) | STE_CTXPTR, 0, &rc);
		expect("attach_s1_vdevice_on_other_viommu", attach(a->fd, other_s1, NULL), ENOENT);
		destroy(fd, other_s1);
	}
	expect("vdevice_second_for_device", vdevice_alloc(fd, viommu, a->id, 0x11, NULL), EEXIST);
	expect("vdevice_second_for_device_other_viommu", vdevice_alloc(fd, viommu2, a->id, 0x12, NULL), EEXIST);
	if (b) {
		expect("vdevice_duplicate_virt_id", vdevice_alloc(fd, viommu, b->id, 0x10, NULL), EEXIST);
		expect("vdevice_same_virt_id_other_viommu", vdevice_alloc(fd, viommu2, b->id, 0x10, &vd_b), 0);
		expect("destroy_vdevice_b", destroy(fd, vd_b), 0);
		expect("vdevice_b", vdevice_alloc(fd, viommu, b->id, 0x20, &vd_b), 0);
	}
	expect("attach_s1_with_vdevice", attach(a->fd, s1, NULL), 0);
	if (other)
		expect("attach_nested_dev_of_other_smmu", attach(other->fd, byp, NULL), EINVAL);

	/* HWPT_INVALIDATE through the vIOMMU */
	uint64_t cmds[4][2] = {
		{ 0x11 | (5ull << 48), 0 }, /* TLBI_NH_ASID */
		{ 0x46, 0 },                /* CMD_SYNC */
		{ 0x10, 0 },                /* TLBI_NH_ALL */
		{ 0x10, 0 },
	};
	expect("inv_smmu_one", invalidate(fd, viommu, INV_ARM_SMMUV3, cmds[2], 16, 1, &done), 0);
	expect_u64("inv_smmu_one_entry_num", done, 1);
	expect("inv_smmu_empty", invalidate(fd, viommu, INV_ARM_SMMUV3, cmds, 16, 0, &done), EINVAL);
	expect_u64("inv_smmu_empty_entry_num", done, 0);
	expect("inv_smmu_sync_second", invalidate(fd, viommu, INV_ARM_SMMUV3, cmds, 16, 4, &done), EIO);
	expect_u64("inv_smmu_sync_second_entry_num", done, 1);
	uint64_t bad[][2] = { { 0x03, 0 }, { 0x04, 0 }, { 0x01, 0 }, { 0x20, 0 }, { 0x28, 0 }, { 0x2A, 0 }, { 0x41, 0 }, { 0x44, 0 }, { 0x7F, 0 } };
	const char *bad_names[] = { "cfgi_ste", "cfgi_all", "prefetch_cfg", "tlbi_el2_all", "tlbi_s12_vmall", "tlbi_s2_ipa", "pri_resp", "resume", "unknown_opcode" };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "inv_smmu_%s", bad_names[i]);
		expect(name, invalidate(fd, viommu, INV_ARM_SMMUV3, bad[i], 16, 1, &done), EIO);
		snprintf(name, sizeof name, "inv_smmu_%s_entry_num", bad_names[i]);
		expect_u64(name, done, 0);
	}
	uint64_t good[][2] = { { 0x30, 0 }, { 0x12, 0 }, { 0x13, 0 }, { 0x40 | (0x10ull << 32), 0 }, { 0x05 | (0x10ull << 32), 0 }, { 0x06 | (0x10ull << 32), 0 } };
	expect("inv_smmu_accepted_set", invalidate(fd, viommu, INV_ARM_SMMUV3, good, 16, 6, &done), 0);
	expect_u64("inv_smmu_accepted_set_entry_num", done, 6);
	{
		static uint64_t many[100][2];
		for (int i = 0; i < 100; i++)
			many[i][0] = 0x10, many[i][1] = 0;
		expect("inv_smmu_100", invalidate(fd, viommu, INV_ARM_SMMUV3, many, 16, 100, &done), 0);
		expect_u64("inv_smmu_100_entry_num", done, 100);
		many[70][0] = 0x46;
		expect("inv_smmu_sync_at_70", invalidate(fd, viommu, INV_ARM_SMMUV3, many, 16, 100, &done), EIO);
		expect_u64("inv_smmu_sync_at_70_entry_num", done, 70);
	}
	{
		uint8_t raw[28] = { 0 };
		struct invalidate_s *i = (struct invalidate_s *)raw;
		i->size = 28, i->hwpt_id = viommu, i->data_uptr = (uintptr_t)good, i->data_type = INV_ARM_SMMUV3, i->entry_len = 16, i->entry_num = 1;
		expect("inv_size_28", io(fd, IOMMU_HWPT_INVALIDATE, raw), EINVAL);
	}
	uint64_t unknown_sid[2][2] = { { 0x10, 0 }, { 0x40 | (0x99ull << 32), 0 } };
	expect("inv_smmu_unknown_vsid", invalidate(fd, viommu, INV_ARM_SMMUV3, unknown_sid, 16, 2, &done), EIO);
	expect_u64("inv_smmu_unknown_vsid_entry_num", done, 1);
	expect("inv_smmu_vtd_type", invalidate(fd, viommu, INV_VTD_S1, cmds[2], 16, 1, &done), EINVAL);
	expect_u64("inv_smmu_vtd_type_entry_num", done, 0);
	uint64_t short_ent[2] = { 0x10, 0x10 };
	expect("inv_smmu_entry_len_8", invalidate(fd, viommu, INV_ARM_SMMUV3, short_ent, 8, 2, &done), 0);
	expect_u64("inv_smmu_entry_len_8_entry_num", done, 2);
	uint64_t long_ent[2][3] = { { 0x10, 0, 0 }, { 0x10, 0, 1 } };
	expect("inv_smmu_entry_len_24_nonzero_tail", invalidate(fd, viommu, INV_ARM_SMMUV3, long_ent, 24, 2, &done), E2BIG);
	expect_u64("inv_smmu_entry_len_24_nonzero_tail_entry_num", done, 0);
	expect("inv_smmu_entry_len_24_zero_tail", invalidate(fd, viommu, INV_ARM_SMMUV3, long_ent, 24, 1, &done), 0);
	expect("inv_smmu_null_array", invalidate(fd, viommu, INV_ARM_SMMUV3, NULL, 16, 1, &done), EINVAL);
	expect_u64("inv_smmu_null_array_entry_num", done, 0);
	expect("inv_smmu_entry_len_0", invalidate(fd, viommu, INV_ARM_SMMUV3, cmds, 0, 1, &done), EINVAL);
	expect_u64("inv_smmu_entry_len_0_entry_num", done, 0);
	expect("inv_smmu_entry_len_4097", invalidate(fd, viommu, INV_ARM_SMMUV3, cmds, 4097, 1, &done), EINVAL);
	expect_u64("inv_smmu_entry_len_4097_entry_num", done, 0);
	expect("inv_smmu_entry_num_2p19_plus_1", invalidate(fd, viommu, INV_ARM_SMMUV3, cmds, 16, (1u << 19) + 1, &done), EINVAL);
	expect_u64("inv_smmu_entry_num_2p19_plus_1_entry_num", done, 0);
	{
		struct invalidate_s i = { .size = sizeof(i), .hwpt_id = viommu, .data_uptr = (uintptr_t)cmds, .data_type = INV_ARM_SMMUV3, .entry_len = 16, .entry_num = 1, .reserved = 1 };
		expect("inv_smmu_reserved", io(fd, IOMMU_HWPT_INVALIDATE, &i), EOPNOTSUPP);
		expect_u64("inv_smmu_reserved_entry_num", i.entry_num, 0);
	}
	expect("inv_missing_id", invalidate(fd, 0x7ffffff0, INV_ARM_SMMUV3, cmds[2], 16, 1, &done), ENOENT);
	expect_u64("inv_missing_id_entry_num", done, 0);
	expect("inv_paging_hwpt", invalidate(fd, parent, INV_ARM_SMMUV3, cmds[2], 16, 1, &done), EINVAL);
	expect_u64("inv_paging_hwpt_entry_num", done, 0);
	expect("inv_smmu_nested_hwpt", invalidate(fd, s1, INV_ARM_SMMUV3, cmds[2], 16, 1, &done), EOPNOTSUPP);
	expect_u64("inv_smmu_nested_hwpt_entry_num", done, 0);

	/* VEVENTQ_ALLOC */
	uint32_t vq, vq2;
	int qfd, qfd2;
	expect("veventq_depth_0", veventq_alloc(fd, viommu, VEVENTQ_ARM_SMMUV3, 0, &vq, &qfd), EINVAL);
	expect("veventq_depth_above_max", veventq_alloc(fd, viommu, VEVENTQ_ARM_SMMUV3, (1u << 19) + 1, &vq, &qfd), EINVAL);
	expect("veventq_depth_above_max_bad_viommu", veventq_alloc(fd, 0x7ffffff0, VEVENTQ_ARM_SMMUV3, (1u << 19) + 1, &vq, &qfd), EINVAL);
	expect("veventq_type_default", veventq_alloc(fd, viommu, 0, 4, &vq, &qfd), EOPNOTSUPP);
	expect("veventq_bad_viommu", veventq_alloc(fd, 0x7ffffff0, VEVENTQ_ARM_SMMUV3, 4, &vq, &qfd), ENOENT);
	{
		struct veventq_alloc_s q = { .size = sizeof(q), .flags = 1, .viommu_id = viommu, .type = VEVENTQ_ARM_SMMUV3, .depth = 4 };
		expect("veventq_flags", io(fd, IOMMU_VEVENTQ_ALLOC, &q), EOPNOTSUPP);
		q.flags = 0, q.reserved = 1;
		expect("veventq_reserved", io(fd, IOMMU_VEVENTQ_ALLOC, &q), EOPNOTSUPP);
		q.reserved = 0, q.size = 24;
		expect("veventq_size_24", io(fd, IOMMU_VEVENTQ_ALLOC, &q), EINVAL);
		q.size = 28, q.type = 0x66;
		expect("veventq_size_28", io(fd, IOMMU_VEVENTQ_ALLOC, &q), 0);
		close((int)q.out_veventq_fd);
		destroy(fd, q.out_veventq_id);
	}
	expect("veventq", veventq_alloc(fd, viommu, VEVENTQ_ARM_SMMUV3, 4, &vq, &qfd), 0);
	expect_u64("veventq_fd_cloexec", qfd >= 0 && (fcntl(qfd, F_GETFD) & FD_CLOEXEC), 1);
	expect("veventq_same_type", veventq_alloc(fd, viommu, VEVENTQ_ARM_SMMUV3, 4, &vq2, &qfd2), EEXIST);
	expect("veventq_other_viommu", veventq_alloc(fd, viommu2, VEVENTQ_ARM_SMMUV3, 4, &vq2, &qfd2), 0);
	{
		uint32_t vq3;
		int qfd3;
		expect("veventq_unknown_type_accepted", veventq_alloc(fd, viommu, 0x55, 1, &vq3, &qfd3), 0);
		close(qfd3);
		expect("destroy_veventq_unknown_type", destroy(fd, vq3), 0);
	}
	{
		uint8_t rb[64];
		expect_u64("veventq_read_empty", read(qfd, rb, sizeof rb), 0);
		/* fewer bytes than a header are EINVAL, queue empty or not, 0 bytes too */
		expect("veventq_read_small_empty", read(qfd, rb, 4) < 0 ? errno : 0, EINVAL);
		expect("veventq_read_zero_empty", read(qfd, rb, 0) < 0 ? errno : 0, EINVAL);
		expect_u64("veventq_read_header_empty", read(qfd, rb, 8), 0);
	}
	{
		/* the CD table at IPA STE_CTXPTR reads as zeroes: CD 0 is invalid, C_BAD_CD goes to the guest with the vSID */
		void *page = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		expect("map_cd_table", map_at(fd, ioas, page, 0x1000, STE_CTXPTR, MAP_READABLE | MAP_WRITEABLE), 0);
		struct vevent ev[8];
		dma_read(a->bdf, 0x1000);
		/* an oldest event that does not fit is EINVAL, and stays queued */
		expect("veventq_read_short_of_a_record", read(qfd, ev, sizeof ev[0] - 1) < 0 ? errno : 0, EINVAL);
		expect("veventq_read_header_only", read(qfd, ev, 8) < 0 ? errno : 0, EINVAL);
		expect("veventq_read_zero_pending", read(qfd, ev, 0) < 0 ? errno : 0, EINVAL);
		struct pollfd p = { .fd = qfd, .events = POLLIN | POLLRDNORM };
		expect_u64("veventq_poll_pending", poll(&p, 1, 0) == 1 && p.revents == (POLLIN | POLLRDNORM), 1);
		expect("veventq_not_seekable", lseek(qfd, 0, SEEK_SET) < 0 ? errno : 0, ESPIPE);
		expect_u64("veventq_read_one", read(qfd, ev, sizeof ev), 40);
		expect_u64("veventq_record_flags", ev[0].flags, 0);
		expect_u64("veventq_record_sequence", ev[0].sequence, 0);
		expect_u64("veventq_record_event_id_c_bad_cd", ev[0].evt[0] & 0xff, 0x0A);
		expect_u64("veventq_record_vsid", ev[0].evt[0] >> 32, 0x10);
		for (int i = 0; i < 5; i++)
			dma_read(a->bdf, 0x1000);
		/* depth 4: four records, then one LOST_EVENTS header with the next sequence */
		memset(ev, 0, sizeof ev);
		expect_u64("veventq_overflow_read", read(qfd, ev, sizeof ev), 4 * 40 + 8);
		expect_u64("veventq_overflow_sequences", ev[0].sequence == 1 && ev[1].sequence == 2 && ev[2].sequence == 3 && ev[3].sequence == 4, 1);
		struct vevent *lost = &ev[4];
		expect_u64("veventq_lost_events_flags", lost->flags, 1);
		expect_u64("veventq_lost_events_sequence", lost->sequence, 5);
		expect_u64("veventq_read_drained", read(qfd, ev, sizeof ev), 0);
		/* overflow again (records 6..9, lost header 10), read one, then one more event: it takes the lost header's place */
		for (int i = 0; i < 5; i++)
			dma_read(a->bdf, 0x1000);
		expect_u64("veventq_read_one_of_full", read(qfd, ev, sizeof ev[0]), 40);
		expect_u64("veventq_read_one_of_full_sequence", ev[0].sequence, 6);
		dma_read(a->bdf, 0x1000);
		memset(ev, 0, sizeof ev);
		expect_u64("veventq_lost_header_replaced", read(qfd, ev, sizeof ev), 4 * 40);
		expect_u64("veventq_sequence_gap", ev[0].sequence == 7 && ev[1].sequence == 8 && ev[2].sequence == 9 && ev[3].sequence == 11, 1);
		expect_u64("veventq_no_lost_flag", ev[0].flags | ev[1].flags | ev[2].flags | ev[3].flags, 0);
		struct pollfd p2 = { .fd = qfd, .events = POLLIN | POLLRDNORM };
		expect_u64("veventq_poll_empty", poll(&p2, 1, 0), 0);
	}
	expect("destroy_veventq_fd_open", destroy(fd, vq2), EBUSY);
	close(qfd2);
	expect("destroy_veventq_fd_closed", destroy(fd, vq2), 0);

	/* HW_QUEUE_ALLOC: no Tegra241 CMDQV here */
	expect("hw_queue_type_default", hw_queue_alloc(fd, 0, viommu, 0, 0x100000, 0x1000), EOPNOTSUPP);
	expect("hw_queue_flags", hw_queue_alloc(fd, 1, viommu, HW_QUEUE_TEGRA241, 0x100000, 0x1000), EOPNOTSUPP);
	expect("hw_queue_length_0", hw_queue_alloc(fd, 0, viommu, HW_QUEUE_TEGRA241, 0x100000, 0), EINVAL);
	expect("hw_queue_overflow", hw_queue_alloc(fd, 0, viommu, HW_QUEUE_TEGRA241, ~0ull - 0xfff, 0x2000), EOVERFLOW);
	expect("hw_queue_bad_viommu", hw_queue_alloc(fd, 0, 0x7ffffff0, HW_QUEUE_TEGRA241, 0x100000, 0x1000), ENOENT);
	expect("hw_queue_unsupported", hw_queue_alloc(fd, 0, viommu, HW_QUEUE_TEGRA241, 0x100000, 0x1000), EOPNOTSUPP);

	/* dirty tracking */
	{
		struct dirty_track_s t = { .size = sizeof(t), .flags = 1, .hwpt_id = dirty };
		expect("dirty_enable", io(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), 0);
		t.flags = 2;
		expect("dirty_unknown_flag", io(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), EOPNOTSUPP);
		t.flags = 1, t.hwpt_id = s1;
		expect("dirty_on_nested", io(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), ENOENT);
		t.hwpt_id = ioas;
		expect("dirty_on_ioas", io(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), ENOENT);
		t.hwpt_id = plain;
		expect("dirty_without_dirty_flag", io(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), EOPNOTSUPP);

		uint64_t bitmap[2] = { 0, 0 };
		struct dirty_bitmap_s g = { .size = sizeof(g), .hwpt_id = dirty, .iova = 0x200000, .length = 0x8000, .page_size = 0x1000, .data = (uintptr_t)bitmap };
		expect("dirty_bitmap", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), 0);
		expect_u64("dirty_bitmap_clean", bitmap[0], 0);
		g.flags = 2;
		expect("dirty_bitmap_unknown_flag", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EOPNOTSUPP);
		g.flags = 0, g.reserved = 1;
		expect("dirty_bitmap_reserved", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EOPNOTSUPP);
		g.reserved = 0, g.page_size = 0;
		expect("dirty_bitmap_page_size_0", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EINVAL);
		g.page_size = 0x1000, g.iova = 0x200800;
		expect("dirty_bitmap_unaligned_iova", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EINVAL);
		g.iova = 0x200000, g.length = 0x1800;
		expect("dirty_bitmap_unaligned_end", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EINVAL);
		g.iova = ~0ull - 0xfff, g.length = 0x2000;
		expect("dirty_bitmap_overflow", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EOVERFLOW);
		g.iova = 0x200000, g.length = 0x8000, g.hwpt_id = s1;
		expect("dirty_bitmap_nested", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), ENOENT);
		g.hwpt_id = plain;
		expect("dirty_bitmap_without_dirty_flag", io(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), EOPNOTSUPP);
		t.flags = 0, t.hwpt_id = dirty;
		expect("dirty_disable", io(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), 0);
	}

	/* FAULT_QUEUE_ALLOC */
	{
		struct fault_alloc_s f = { .size = sizeof(f), .flags = 1 };
		expect("fault_flags", io(fd, IOMMU_FAULT_QUEUE_ALLOC, &f), EOPNOTSUPP);
		f.flags = 0;
		expect("fault_alloc", io(fd, IOMMU_FAULT_QUEUE_ALLOC, &f), 0);
		int ffd = (int)f.out_fault_fd;
		expect_u64("fault_fd_cloexec", (fcntl(ffd, F_GETFD) & FD_CLOEXEC) != 0, 1);
		uint8_t rb[80];
		errno = 0;
		expect("fault_read_39", read(ffd, rb, 39) < 0 ? errno : 0, ESPIPE);
		expect_u64("fault_read_empty", read(ffd, rb, 80), 0);
		expect("fault_write_7", write(ffd, rb, 7) < 0 ? errno : 0, ESPIPE);
		expect("fault_pread_offset", pread(ffd, rb, 40, 40) < 0 ? errno : 0, ESPIPE);
		struct pollfd p = { .fd = ffd, .events = POLLIN | POLLOUT };
		expect_u64("fault_poll_writable_only", poll(&p, 1, 0) == 1 && p.revents == POLLOUT, 1);
		/* iommufd_eventq_fops_poll says EPOLLOUT, never EPOLLWRNORM */
		p.events = POLLOUT | POLLWRNORM;
		expect_u64("fault_poll_no_wrnorm", poll(&p, 1, 0) == 1 && p.revents == POLLOUT, 1);
		{
			struct fault_alloc_s small = { .size = 12 };
			expect("fault_size_12", io(fd, IOMMU_FAULT_QUEUE_ALLOC, &small), EINVAL);
		}
		struct pgfault_response_s resp = { .cookie = 12345, .code = 0 };
		expect("fault_respond_unknown_cookie", write(ffd, &resp, sizeof resp) < 0 ? errno : 0, EINVAL);
		resp.code = 2;
		expect("fault_respond_bad_code", write(ffd, &resp, sizeof resp) < 0 ? errno : 0, EINVAL);
		struct hwpt_alloc_s h = { .size = sizeof(h), .flags = FAULT_ID_VALID, .dev_id = a->id, .pt_id = ioas, .fault_id = f.out_fault_id };
		expect("hwpt_with_fault", io(fd, IOMMU_HWPT_ALLOC, &h), 0);
		expect("destroy_fault_fd_open", destroy(fd, f.out_fault_id), EBUSY);
		close(ffd);
		expect("destroy_fault_used_by_hwpt", destroy(fd, f.out_fault_id), EBUSY);
		expect("destroy_hwpt_with_fault", destroy(fd, h.out_hwpt_id), 0);
		expect("destroy_fault", destroy(fd, f.out_fault_id), 0);
	}

	/* destroy order */
	expect("destroy_missing", destroy(fd, 0x7ffffff0), ENOENT);
	expect("destroy_device", destroy(fd, a->id), EBUSY);
	expect("destroy_ioas_with_hwpts", destroy(fd, ioas), EBUSY);
	expect("destroy_parent_with_viommu", destroy(fd, parent), EBUSY);
	expect("destroy_viommu_with_children", destroy(fd, viommu), EBUSY);
	expect("destroy_nested_attached", destroy(fd, s1), EBUSY);
	expect("destroy_veventq_open", destroy(fd, vq), EBUSY);
	close(qfd);
	expect("destroy_veventq", destroy(fd, vq), 0);
	expect("detach_a", detach(a->fd), 0);
	{
		/* with a PASID attached, the RID takes only PASID-compatible domains: never an SMMUv3 nested one */
		uint32_t pd;
		expect("pasid_domain", hwpt_alloc(fd, a->id, ioas, ALLOC_PASID, DATA_NONE, NULL, 0, &pd), 0);
		struct attach_s pa = { .argsz = sizeof(pa), .flags = 1, .pt_id = pd, .pasid = 1 };
		expect("attach_pasid_1", io(a->fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &pa), 0);
		expect("attach_nested_with_pasid_in_use", attach(a->fd, byp, NULL), EINVAL);
		struct detach_s pd1 = { .argsz = sizeof(pd1), .flags = 1, .pasid = 1 };
		expect("detach_pasid_1", io(a->fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &pd1), 0);
		expect("destroy_pasid_domain", destroy(fd, pd), 0);
	}
	expect("destroy_nested_s1", destroy(fd, s1), 0);
	expect("destroy_nested_bypass", destroy(fd, byp), 0);
	expect("destroy_viommu_with_vdevice", destroy(fd, viommu), EBUSY);
	expect("destroy_vdevice_a", destroy(fd, vd_a), 0);
	if (b) {
		/* unbinding the device (closing its cdev) destroys its vDEVICE; the ID stays taken until the iommufd closes */
		close(b->fd);
		expect("vdevice_tombstoned_after_unbind", destroy(fd, vd_b), ENOENT);
		uint32_t ids[64];
		int reused = 0;
		for (int i = 0; i < 64; i++)
			reused |= (ids[i] = ioas_alloc(fd)) == vd_b;
		for (int i = 0; i < 64; i++)
			destroy(fd, ids[i]);
		expect_u64("vdevice_tombstone_id_not_reused", reused, 0);
	}
	expect("destroy_viommu", destroy(fd, viommu), 0);
	expect("destroy_parent_with_viommu2", destroy(fd, parent), EBUSY);
	expect("destroy_viommu2", destroy(fd, viommu2), 0);
	expect("destroy_parent", destroy(fd, parent), 0);
	expect("destroy_plain", destroy(fd, plain), 0);
	expect("destroy_dirty", destroy(fd, dirty), 0);
	{
		uint32_t next = ioas_alloc(fd);
		/* b's device object went with its unbind, so its ID is the lowest free one */
		uint32_t lowest = s1 < parent ? s1 : parent;
		expect_u64("lowest_free_id_reused", next, b && b->id < lowest ? b->id : lowest);
		destroy(fd, next);
	}
}

/* ---- VT-d ---- */
static void vtd_checks(int fd, struct dev *d, struct vtd_info_s *info)
{
	uint32_t ioas = ioas_alloc(fd), parent, plain, nested, done;
	struct vtd_s1_s s1 = { .flags = 0, .pgtbl_addr = 0x100000, .addr_width = 48 };

	expect("vtd_nest_parent", hwpt_alloc(fd, d->id, ioas, NEST_PARENT, DATA_NONE, NULL, 0, &parent), 0);
	expect("vtd_plain_paging", hwpt_alloc(fd, d->id, ioas, 0, DATA_NONE, NULL, 0, &plain), 0);
	{
		uint32_t dt;
		expect("vtd_dirty_tracking", hwpt_alloc(fd, d->id, ioas, DIRTY_TRACKING, DATA_NONE, NULL, 0, &dt), 0);
		destroy(fd, dt);
	}
	expect("vtd_paging_with_data", hwpt_alloc(fd, d->id, ioas, 0, DATA_VTD_S1, &s1, 24, NULL), EOPNOTSUPP);
	expect("vtd_nested", hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, &s1, 24, &nested), 0);
	expect("vtd_nested_no_data", hwpt_alloc(fd, d->id, parent, 0, DATA_NONE, NULL, 0, NULL), EOPNOTSUPP);
	expect("vtd_nested_arm_type", hwpt_alloc(fd, d->id, parent, 0, DATA_ARM_SMMUV3, &s1, 16, NULL), EOPNOTSUPP);
	expect("vtd_nested_len_16", hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, &s1, 16, NULL), EINVAL);
	{
		uint8_t big[32] = { 0 };
		memcpy(big, &s1, sizeof s1);
		expect("vtd_nested_len_32", hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, big, 32, NULL), EINVAL);
	}
	expect("vtd_nested_flag_nest_parent", hwpt_alloc(fd, d->id, parent, NEST_PARENT, DATA_VTD_S1, &s1, 24, NULL), EOPNOTSUPP);
	expect("vtd_nested_flag_dirty", hwpt_alloc(fd, d->id, parent, DIRTY_TRACKING, DATA_VTD_S1, &s1, 24, NULL), EOPNOTSUPP);
	expect("vtd_nested_on_plain_parent", hwpt_alloc(fd, d->id, plain, 0, DATA_VTD_S1, &s1, 24, NULL), EINVAL);
	{
		uint32_t autod = 0, sparent = 0;
		expect("vtd_attach_ioas", attach(d->fd, ioas, &autod), 0);
		expect("vtd_nested_on_auto_domain", hwpt_alloc(fd, d->id, autod, 0, DATA_VTD_S1, &s1, 24, NULL), EINVAL);
		expect("viommu_on_auto_domain", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, smmu_dev_id, autod, NULL), EINVAL);
		detach(d->fd);
		expect("smmu_parent_for_vtd_check", hwpt_alloc(fd, smmu_dev_id, ioas, NEST_PARENT, DATA_NONE, NULL, 0, &sparent), 0);
		expect("vtd_nested_on_smmu_parent", hwpt_alloc(fd, d->id, sparent, 0, DATA_VTD_S1, &s1, 24, NULL), EINVAL);
		destroy(fd, sparent);
	}
	{
		uint32_t id;
		expect("vtd_nested_flag_pasid", hwpt_alloc(fd, d->id, parent, ALLOC_PASID, DATA_VTD_S1, &s1, 24, &id), field(info->ecap, 40, 40) ? 0 : EOPNOTSUPP);
		destroy(fd, id);
		struct fault_alloc_s f = { .size = sizeof(f) };
		io(fd, IOMMU_FAULT_QUEUE_ALLOC, &f);
		struct hwpt_alloc_s h = { .size = sizeof(h), .flags = FAULT_ID_VALID, .dev_id = d->id, .pt_id = parent, .data_type = DATA_VTD_S1, .data_len = 24, .data_uptr = (uintptr_t)&s1, .fault_id = f.out_fault_id };
		expect("vtd_nested_with_fault_id", io(fd, IOMMU_HWPT_ALLOC, &h), 0);
		destroy(fd, h.out_hwpt_id);
		close((int)f.out_fault_fd);
		destroy(fd, f.out_fault_id);
	}
	{
		struct vtd_s1_s odd = { .flags = 0x80, .pgtbl_addr = 0x100000, .addr_width = 39, .reserved = 7 };
		uint32_t id;
		expect("vtd_nested_flags_reserved_unchecked_at_alloc", hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, &odd, 24, &id), 0);
		expect("vtd_attach_addr_width_39", attach(d->fd, id, NULL), EINVAL);
		destroy(fd, id);
		odd = (struct vtd_s1_s){ .pgtbl_addr = 0x100000, .addr_width = 57 };
		hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, &odd, 24, &id);
		expect("vtd_attach_addr_width_57", attach(d->fd, id, NULL), field(info->cap, 60, 60) ? 0 : EINVAL);
		detach(d->fd);
		destroy(fd, id);
		odd = (struct vtd_s1_s){ .flags = 1, .pgtbl_addr = 0x100000, .addr_width = 48 };
		hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, &odd, 24, &id);
		expect("vtd_attach_sre", attach(d->fd, id, NULL), field(info->ecap, 31, 31) ? 0 : EINVAL);
		detach(d->fd);
		destroy(fd, id);
		odd = (struct vtd_s1_s){ .flags = 2, .pgtbl_addr = 0x100000, .addr_width = 48 };
		hwpt_alloc(fd, d->id, parent, 0, DATA_VTD_S1, &odd, 24, &id);
		expect("vtd_attach_eafe", attach(d->fd, id, NULL), field(info->ecap, 34, 34) ? 0 : EINVAL);
		detach(d->fd);
		destroy(fd, id);
	}
	expect("vtd_viommu_unsupported", viommu_alloc(fd, VIOMMU_ARM_SMMUV3, d->id, parent, NULL), EOPNOTSUPP);
	expect("vtd_attach_nested", attach(d->fd, nested, NULL), 0);

	/* errata 772415: no read-only mapping into an IOAS under a nest parent */
	{
		void *buf = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		expect("vtd_map_read_only_under_nest_parent", map_at(fd, ioas, buf, 0x1000, 0x400000, MAP_READABLE), EINVAL);
		expect("vtd_map_writeable_under_nest_parent", map_at(fd, ioas, buf, 0x1000, 0x400000, MAP_READABLE | MAP_WRITEABLE), 0);
	}

	/* invalidation on the nested HWPT */
	struct vtd_inv_s e[3] = { { 0, 1, 0, 0 }, { 0x1000, 2, 1, 0 }, { 0x2000, 1, 0, 0 } };
	expect("inv_vtd_empty_probe", invalidate(fd, nested, INV_VTD_S1, e, 24, 0, &done), 0);
	expect_u64("inv_vtd_empty_probe_entry_num", done, 0);
	expect("inv_vtd_three", invalidate(fd, nested, INV_VTD_S1, e, 24, 3, &done), 0);
	expect_u64("inv_vtd_three_entry_num", done, 3);
	e[1].flags = 2;
	expect("inv_vtd_unknown_flag_second", invalidate(fd, nested, INV_VTD_S1, e, 24, 3, &done), EOPNOTSUPP);
	expect_u64("inv_vtd_unknown_flag_second_entry_num", done, 1);
	e[1].flags = 0, e[1].reserved = 1;
	expect("inv_vtd_reserved_second", invalidate(fd, nested, INV_VTD_S1, e, 24, 3, &done), EOPNOTSUPP);
	expect_u64("inv_vtd_reserved_second_entry_num", done, 1);
	e[1].reserved = 0, e[2].addr = 0x2123;
	expect("inv_vtd_unaligned_third", invalidate(fd, nested, INV_VTD_S1, e, 24, 3, &done), EINVAL);
	expect_u64("inv_vtd_unaligned_third_entry_num", done, 2);
	e[2].addr = 0x2000;
	struct vtd_inv_s all = { 0, ~0ull, 0, 0 }, notall = { 0x1000, ~0ull, 0, 0 };
	expect("inv_vtd_all", invalidate(fd, nested, INV_VTD_S1, &all, 24, 1, &done), 0);
	expect("inv_vtd_all_nonzero_addr", invalidate(fd, nested, INV_VTD_S1, &notall, 24, 1, &done), EINVAL);
	expect_u64("inv_vtd_all_nonzero_addr_entry_num", done, 0);
	expect("inv_vtd_entry_len_16", invalidate(fd, nested, INV_VTD_S1, e, 16, 1, &done), EINVAL);
	{
		uint8_t big[32] = { 0 };
		expect("inv_vtd_entry_len_32_zero_tail", invalidate(fd, nested, INV_VTD_S1, big, 32, 1, &done), EINVAL);
	}
	expect("inv_vtd_arm_type", invalidate(fd, nested, INV_ARM_SMMUV3, e, 24, 1, &done), EINVAL);
	expect_u64("inv_vtd_arm_type_entry_num", done, 0);
	expect("inv_vtd_on_parent", invalidate(fd, parent, INV_VTD_S1, e, 24, 1, &done), EINVAL);

	expect("vtd_destroy_parent_with_nested", destroy(fd, parent), EBUSY);
	expect("vtd_destroy_nested_attached", destroy(fd, nested), EBUSY);
	expect("vtd_detach", detach(d->fd), 0);
	expect("vtd_destroy_nested", destroy(fd, nested), 0);
	expect("vtd_destroy_parent", destroy(fd, parent), 0);
	expect("vtd_destroy_plain", destroy(fd, plain), 0);
	expect("vtd_destroy_ioas", destroy(fd, ioas), 0);
}

int main(void)
{
	struct dev devs[32];
	struct dev *smmu_a = NULL, *smmu_b = NULL, *smmu_other = NULL, *vtd = NULL;
	struct vtd_info_s vinfo;

	if (getenv("IOMMUFS_MOUNT"))
		root = getenv("IOMMUFS_MOUNT");
	int n = find_devices(devs, 32);
	expect_u64("devices_with_vfio_cdev", n > 0, 1);
	for (int i = 0; i < n; i++) {
		struct dev *d = &devs[i];
		if (!strncmp(d->unit, "smmu3.", 6)) {
			if (!smmu_a)
				smmu_a = d;
			else if (!strcmp(d->unit, smmu_a->unit) && !smmu_b)
				smmu_b = d;
			else if (strcmp(d->unit, smmu_a->unit) && !smmu_other)
				smmu_other = d;
		} else if (!strncmp(d->unit, "dmar", 4) && !vtd)
			vtd = d;
	}
	if (!smmu_a || !vtd) {
		printf("topology: FAIL got no SMMUv3 and VT-d pair want both\n");
		return 1;
	}
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return perror("/dev/iommu"), 2;
	struct dev *all[] = { smmu_a, smmu_b, smmu_other, vtd };
	for (unsigned i = 0; i < 4; i++)
		if (all[i]) {
			char name[64];
			snprintf(name, sizeof name, "bind_%s", all[i]->bdf);
			expect(name, bind_dev(fd, all[i]), 0);
		}
	uint32_t ioas = ioas_alloc(fd);
	{
		/* dispatch (section 1): the number carries no size or direction; a bad pointer is EFAULT; ID 0 is never valid */
		struct viommu_alloc_s v = { .size = sizeof(v), .type = VIOMMU_ARM_SMMUV3, .dev_id = smmu_a->id };
		expect("dispatch_size_bits_set", io(fd, _IOWR(0x3B, 0x90, struct viommu_alloc_s), &v), ENOTTY);
		expect("dispatch_past_the_table", io(fd, _IO(0x3B, 0xB0), &v), ENOTTY);
		expect("dispatch_bad_pointer", io(fd, IOMMU_VIOMMU_ALLOC, (void *)8), EFAULT);
		expect("destroy_id_0", destroy(fd, 0), ENOENT);
	}
	vtd_dev_id = vtd->id;
	smmu_dev_id = smmu_a->id;
	hw_info_smmu(fd, smmu_a, ioas);
	hw_info_vtd(fd, vtd, ioas, &vinfo);
	smmu_checks(fd, smmu_a, smmu_b, smmu_other, ioas);
	vtd_checks(fd, vtd, &vinfo);
	expect("destroy_ioas", destroy(fd, ioas), 0);
	printf("%s\n", fails ? "conform-nested: FAIL" : "conform-nested: all ok");
	return fails ? 1 : 0;
}
