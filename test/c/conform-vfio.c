/*
 * Conformance of the VFIO cdev nodes (/dev/vfio/devices/vfioN), as an outside
 * client sees them: every struct below is written from include/uapi/linux/vfio.h
 * (offsets checked here), and every check names the return value, errno or
 * out field of drivers/vfio/device_cdev.c, vfio_main.c and vfio_pci_core.c:
 *
 *   before BIND_IOMMUFD every other command is EINVAL (access not granted);
 *   BIND: argsz short of out_devid, unknown flags, a negative iommufd are
 *   EINVAL; a descriptor that is no iommufd is EBADF/EBADFD; a second BIND on
 *   the same file, or on a second open of a bound device, EINVAL;
 *   ATTACH/DETACH_IOMMUFD_PT: pt_id in/out (an IOAS gives its auto HWPT),
 *   argsz and flags rules, the PASID flag needs argsz up to pasid;
 *   GET_INFO: argsz below num_irqs is EINVAL, nothing past argsz is written;
 *   GET_REGION_INFO, GET_IRQ_INFO: argsz and index rules, the config region,
 *   the ERR and REQ interrupts, what GET_INFO counts; RESET (FLAGS_RESET);
 *   DEVICE_FEATURE: flag rules, unknown features ENOTTY; unknown numbers
 *   ENOTTY; close unbinds (the device binds again on a new open).
 *
 * Each line: "NAME: ok" or "NAME: FAIL got X want Y"; exits 1 on any FAIL.
 * Runs under the shim (iommufs exec) or with real ioctl()s (--namespace).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "conform.h"

#define T ';'
#define V(n) _IO(T, 100 + (n))
#define C_GET_INFO V(7)
#define C_GET_REGION_INFO V(8)
#define C_GET_IRQ_INFO V(9)
#define C_RESET V(11)
#define C_FEATURE V(17)
#define C_BIND V(18)
#define C_ATTACH V(19)
#define C_DETACH V(20)
#define C_UNKNOWN V(27) /* below the numbers iommufd shares with VFIO_BASE + 28.. */
#define C_IOAS_ALLOC _IO(T, 0x81)
#define C_DESTROY _IO(T, 0x80)

#define LAYOUT(s, f, off) _Static_assert(offsetof(struct s, f) == (off), #s "." #f)
#define SIZE(s, n) _Static_assert(sizeof(struct s) == (n), #s " size")

struct bind { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; uint64_t token_uuid_ptr; };
SIZE(bind, 24); LAYOUT(bind, out_devid, 12);
struct attach { uint32_t argsz, flags, pt_id, pasid; };
SIZE(attach, 16);
struct detach { uint32_t argsz, flags, pasid; };
SIZE(detach, 12);
struct dev_info { uint32_t argsz, flags, num_regions, num_irqs, cap_offset, pad; };
SIZE(dev_info, 24);
struct region_info { uint32_t argsz, flags, index, cap_offset; uint64_t size, offset; };
SIZE(region_info, 32); LAYOUT(region_info, size, 16); LAYOUT(region_info, offset, 24);
struct irq_info { uint32_t argsz, flags, index, count; };
SIZE(irq_info, 16);
struct feature { uint32_t argsz, flags; uint8_t data[8]; };
LAYOUT(feature, data, 8);
struct ioas_alloc { uint32_t size, flags, out_ioas_id; };
struct destroy { uint32_t size, id; };

enum { F_GET = 1u << 16, F_SET = 1u << 17, F_PROBE = 1u << 18, F_MIGRATION = 1 };
enum { INFO_RESET = 1, INFO_PCI = 2 };


static int open_or_die(const char *p)
{
	int f = open(p, O_RDWR | O_CLOEXEC);
	if (f < 0) {
		printf("setup: FAIL got %s opening %s want success\n", ename(errno), p);
		exit(2);
	}
	return f;
}

static uint32_t ioas(int iommufd)
{
	struct ioas_alloc a = { .size = sizeof a };
	if (io(iommufd, C_IOAS_ALLOC, &a)) {
		printf("setup: FAIL got %s IOAS_ALLOC want success\n", ename(errno));
		exit(2);
	}
	return a.out_ioas_id;
}

static int bind(int dev, int iommufd, uint32_t *devid)
{
	struct bind b = { .argsz = 16, .iommufd = iommufd };
	int e = io(dev, C_BIND, &b);
	if (devid)
		*devid = b.out_devid;
	return e;
}

/* One device's node: the whole life of a file. */
static void node(const char *tag, const char *path, int iommufd)
{
	char n[96];
#define N(s) (snprintf(n, sizeof n, "%s_%s", tag, s), n)
	int dev = open_or_die(path);

	/* before BIND, access is not granted: every other command is EINVAL */
	struct dev_info info = { .argsz = sizeof info };
	expect(N("before_bind_get_info"), io(dev, C_GET_INFO, &info), EINVAL);
	struct attach at = { .argsz = sizeof at, .pt_id = 1 };
	expect(N("before_bind_attach"), io(dev, C_ATTACH, &at), EINVAL);
	struct detach dt = { .argsz = sizeof dt };
	expect(N("before_bind_detach"), io(dev, C_DETACH, &dt), EINVAL);
	expect(N("before_bind_unknown"), io(dev, C_UNKNOWN, &info), EINVAL);
	expect(N("before_bind_reset"), io(dev, C_RESET, NULL), EINVAL);
	struct region_info ri0 = { .argsz = sizeof ri0, .index = 7 };
	expect(N("before_bind_region_info"), io(dev, C_GET_REGION_INFO, &ri0), EINVAL);
	struct feature ft = { .argsz = sizeof ft, .flags = F_PROBE | F_GET | F_MIGRATION };
	expect(N("before_bind_feature"), io(dev, C_FEATURE, &ft), EINVAL);

	/* BIND's checks, in the kernel's order: argsz, flags, iommufd < 0 */
	struct bind b = { .argsz = 12, .iommufd = iommufd };
	expect(N("bind_argsz_12"), io(dev, C_BIND, &b), EINVAL);
	b = (struct bind){ .argsz = 16, .flags = 2, .iommufd = iommufd };
	expect(N("bind_flags_2"), io(dev, C_BIND, &b), EINVAL);
	b = (struct bind){ .argsz = 16, .iommufd = -1 };
	expect(N("bind_iommufd_negative"), io(dev, C_BIND, &b), EINVAL);
	int null = open_or_die("/dev/null");
	expect(N("bind_iommufd_not_iommufd"), bind(dev, null, NULL), EBADFD);
	close(null);
	expect(N("bind_iommufd_closed"), bind(dev, 999, NULL), EBADF);

	uint32_t devid = 0;
	/* BIND reads its struct with copy_struct_from_user: a nonzero byte past it is E2BIG */
	{
		struct { struct bind b; uint64_t tail; } big = { { .argsz = 32, .iommufd = iommufd }, 1 };
		expect(N("bind_tail_nonzero"), io(dev, C_BIND, &big), E2BIG);
	}
	/* a VF token on a function with no SR-IOV: read first (EFAULT), then EINVAL */
	{
		uint8_t uuid[16] = { 1 };
		b = (struct bind){ .argsz = sizeof b, .flags = 1, .iommufd = iommufd, .token_uuid_ptr = 8 };
		expect(N("bind_token_bad_pointer"), io(dev, C_BIND, &b), EFAULT);
		b.token_uuid_ptr = (uintptr_t)uuid;
		expect(N("bind_token_not_sriov"), io(dev, C_BIND, &b), EINVAL);
	}
	b = (struct bind){ .argsz = sizeof b, .iommufd = iommufd };
	expect(N("bind"), io(dev, C_BIND, &b), 0);
	devid = b.out_devid;
	expect(N("bind_out_devid_set"), devid != 0, 1);
	expect(N("bind_twice"), bind(dev, iommufd, NULL), EINVAL);
	int dev2 = open_or_die(path);
	expect(N("bind_second_open"), bind(dev2, iommufd, NULL), EINVAL);
	close(dev2);

	/* GET_INFO: minsz ends at num_irqs; no byte past argsz is written */
	info = (struct dev_info){ .argsz = 12 };
	expect(N("get_info_argsz_12"), io(dev, C_GET_INFO, &info), EINVAL);
	info = (struct dev_info){ .argsz = 16, .cap_offset = 0xdead, .pad = 0xbeef };
	expect(N("get_info_argsz_16"), io(dev, C_GET_INFO, &info), 0);
	expect_u64(N("get_info_flags"), info.flags, INFO_PCI | INFO_RESET);
	expect_u64(N("get_info_num_regions"), info.num_regions, 9);
	expect_u64(N("get_info_num_irqs"), info.num_irqs, 5);
	expect_u64(N("get_info_argsz_kept"), info.argsz, 16);
	expect_u64(N("get_info_past_argsz_untouched"), info.cap_offset, 0xdead);
	info = (struct dev_info){ .argsz = sizeof info, .cap_offset = 0xdead, .pad = 0xbeef };
	expect(N("get_info_full"), io(dev, C_GET_INFO, &info), 0);
	expect_u64(N("get_info_cap_offset"), info.cap_offset, 0);
	expect_u64(N("get_info_pad_untouched"), info.pad, 0xbeef);

	/* every region and interrupt type GET_INFO counts answers: config space
	 * at index << 40, read/write; a BAR the function lacks is size 0, no flags;
	 * VGA only on a VGA device; ERR (PCIe) and REQ have one interrupt each */
	struct region_info ri = { .argsz = 24, .index = 7 };
	expect(N("region_info_argsz_24"), io(dev, C_GET_REGION_INFO, &ri), EINVAL);
	ri = (struct region_info){ .argsz = sizeof ri, .index = 7 };
	expect(N("region_info_config"), io(dev, C_GET_REGION_INFO, &ri), 0);
	expect_u64(N("region_info_config_flags"), ri.flags, 3);
	expect_u64(N("region_info_config_offset"), ri.offset, 7ull << 40);
	expect_u64(N("region_info_config_size"), ri.size == 256 || ri.size == 4096, 1);
	ri = (struct region_info){ .argsz = sizeof ri, .index = 9 };
	expect(N("region_info_index_9"), io(dev, C_GET_REGION_INFO, &ri), EINVAL);
	int bars_ok = 1;
	for (uint32_t i = 0; i < 7; i++) {
		ri = (struct region_info){ .argsz = sizeof ri, .index = i };
		if (io(dev, C_GET_REGION_INFO, &ri) || ri.offset != (uint64_t)i << 40 || (ri.size == 0) != (ri.flags == 0))
			bars_ok = 0;
	}
	expect(N("region_info_bars_and_rom"), bars_ok, 1);
	struct irq_info ii = { .argsz = 12, .index = 3 };
	expect(N("irq_info_argsz_12"), io(dev, C_GET_IRQ_INFO, &ii), EINVAL);
	ii = (struct irq_info){ .argsz = sizeof ii, .index = 5 };
	expect(N("irq_info_index_5"), io(dev, C_GET_IRQ_INFO, &ii), EINVAL);
	ii = (struct irq_info){ .argsz = sizeof ii, .index = 3 };
	expect(N("irq_info_err"), io(dev, C_GET_IRQ_INFO, &ii), 0);
	expect_u64(N("irq_info_err_flags"), ii.flags, 9);
	expect_u64(N("irq_info_err_count"), ii.count, 1);
	ii = (struct irq_info){ .argsz = sizeof ii, .index = 4 };
	expect(N("irq_info_req"), io(dev, C_GET_IRQ_INFO, &ii), 0);
	expect_u64(N("irq_info_req_count"), ii.count, 1);
	ii = (struct irq_info){ .argsz = sizeof ii, .index = 0 };
	expect(N("irq_info_intx"), io(dev, C_GET_IRQ_INFO, &ii), 0);
	expect_u64(N("irq_info_intx_flags"), ii.flags, 7);
	expect(N("reset"), io(dev, C_RESET, NULL), 0);

	/* unknown commands, after access is granted, are the driver's ENOTTY */
	expect(N("unknown_ioctl"), io(dev, C_UNKNOWN, &info), ENOTTY);
	struct ioas_alloc ia = { .size = sizeof ia };
	expect(N("iommufd_ioctl_on_device"), io(dev, C_IOAS_ALLOC, &ia), ENOTTY);
	expect(N("container_ioctl_on_device"), io(dev, _IO(T, 100), NULL), ENOTTY);

	/* DEVICE_FEATURE: argsz, unknown flags, GET with SET without PROBE */
	ft = (struct feature){ .argsz = 4, .flags = F_GET | F_MIGRATION };
	expect(N("feature_argsz_4"), io(dev, C_FEATURE, &ft), EINVAL);
	ft = (struct feature){ .argsz = sizeof ft, .flags = (1u << 20) | F_GET | F_MIGRATION };
	expect(N("feature_unknown_flag"), io(dev, C_FEATURE, &ft), EINVAL);
	ft = (struct feature){ .argsz = sizeof ft, .flags = F_GET | F_SET | F_MIGRATION };
	expect(N("feature_get_and_set"), io(dev, C_FEATURE, &ft), EINVAL);
	ft = (struct feature){ .argsz = sizeof ft, .flags = F_GET | F_MIGRATION };
	expect(N("feature_migration_unsupported"), io(dev, C_FEATURE, &ft), ENOTTY);
	ft = (struct feature){ .argsz = sizeof ft, .flags = F_PROBE | F_GET | 0x7fff };
	expect(N("feature_unknown"), io(dev, C_FEATURE, &ft), ENOTTY);

	/* ATTACH: argsz below pt_id, unknown flags, PASID without pasid in argsz */
	uint32_t ioas_id = ioas(iommufd);
	at = (struct attach){ .argsz = 8, .pt_id = ioas_id };
	expect(N("attach_argsz_8"), io(dev, C_ATTACH, &at), EINVAL);
	at = (struct attach){ .argsz = 12, .flags = 2, .pt_id = ioas_id };
	expect(N("attach_flags_2"), io(dev, C_ATTACH, &at), EINVAL);
	at = (struct attach){ .argsz = 12, .flags = 1, .pt_id = ioas_id, .pasid = 1 };
	expect(N("attach_pasid_argsz_12"), io(dev, C_ATTACH, &at), EINVAL);
	at = (struct attach){ .argsz = 12, .pt_id = 0xfffff };
	expect(N("attach_pt_id_missing"), io(dev, C_ATTACH, &at), ENOENT);
	at = (struct attach){ .argsz = 12, .pt_id = devid };
	expect(N("attach_pt_id_device"), io(dev, C_ATTACH, &at), EINVAL);

	/* an IOAS gives back the auto HWPT, a new ID; the same IOAS again replaces with it */
	at = (struct attach){ .argsz = 12, .pt_id = ioas_id };
	expect(N("attach_ioas"), io(dev, C_ATTACH, &at), 0);
	uint32_t hwpt = at.pt_id;
	expect(N("attach_pt_id_out_is_hwpt"), hwpt != ioas_id && hwpt != devid, 1);
	at = (struct attach){ .argsz = 12, .pt_id = ioas_id };
	expect(N("attach_replace_same_ioas"), io(dev, C_ATTACH, &at), 0);
	expect_u64(N("attach_replace_same_hwpt"), at.pt_id, hwpt);
	at = (struct attach){ .argsz = 12, .pt_id = hwpt };
	expect(N("attach_hwpt"), io(dev, C_ATTACH, &at), 0);
	expect_u64(N("attach_hwpt_pt_id_kept"), at.pt_id, hwpt);
	struct destroy d = { .size = sizeof d, .id = ioas_id };
	expect(N("destroy_attached_ioas_busy"), io(iommufd, C_DESTROY, &d), EBUSY);

	/* DETACH: argsz, flags, the PASID flag's argsz; detaching twice is fine */
	dt = (struct detach){ .argsz = 4 };
	expect(N("detach_argsz_4"), io(dev, C_DETACH, &dt), EINVAL);
	dt = (struct detach){ .argsz = 8, .flags = 2 };
	expect(N("detach_flags_2"), io(dev, C_DETACH, &dt), EINVAL);
	dt = (struct detach){ .argsz = 8, .flags = 1 };
	expect(N("detach_pasid_argsz_8"), io(dev, C_DETACH, &dt), EINVAL);
	dt = (struct detach){ .argsz = 8 };
	expect(N("detach"), io(dev, C_DETACH, &dt), 0);
	expect(N("detach_again"), io(dev, C_DETACH, &dt), 0);
	d = (struct destroy){ .size = sizeof d, .id = hwpt };
	expect(N("detached_auto_hwpt_gone"), io(iommufd, C_DESTROY, &d), ENOENT);

	/* close unbinds: a new open binds again */
	at = (struct attach){ .argsz = 12, .pt_id = ioas_id };
	expect(N("attach_before_close"), io(dev, C_ATTACH, &at), 0);
	close(dev);
	d = (struct destroy){ .size = sizeof d, .id = ioas_id };
	expect(N("close_detaches"), io(iommufd, C_DESTROY, &d), 0);
	dev = open_or_die(path);
	expect(N("bind_after_close"), bind(dev, iommufd, NULL), 0);
	close(dev);
#undef N
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int iommufd = open_or_die("/dev/iommu");
	node("smmu", "/dev/vfio/devices/vfio0", iommufd);
	node("vtd", "/dev/vfio/devices/vfio4", iommufd);
	close(iommufd);
	return fails ? 1 : 0;
}
