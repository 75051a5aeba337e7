/*
 * The mock IOMMU's dirty bits by page-table entry, as the kernel selftest's
 * dirty tracking checks them: a DIRTY mark dirties the whole PTE mapping the
 * IOVA, so a 1 MiB PTE over hugetlb memory reads back as 512 bits of 2 KiB.
 * Paging HWPTs with SELFTEST data choose the format (pagetable_type, newer
 * kernels); a HUGE_IOVA device does it for the default format (older ones).
 * One line per check (test/integration/selftest.test.ts). The caller makes
 * sure two 2 MiB hugetlb pages can be had.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include "iommufd.h"

#define MIB (1UL << 20)
#define IOVA (16 * MIB) /* MOCK_APERTURE_START */
#define LEN (4 * MIB)
#define MOCK_PAGE 2048
#define NBITS ((int)(LEN / MOCK_PAGE))
#define HUGE_IOVA_DEV 2 /* MOCK_FLAGS_DEVICE_HUGE_IOVA (older kernels) */
enum { PT_DEFAULT, PT_HUGE, PT_AMDV1, PT_UNKNOWN };

static int fd;
static uint64_t bitmap[NBITS / 64];

static const char *result(int rc)
{
	static char buf[64];
	if (rc < 0)
		snprintf(buf, sizeof(buf), "err %s", strerrorname_np(errno));
	else
		snprintf(buf, sizeof(buf), "ok");
	return buf;
}

static uint32_t ioas_with_domain(int dev_flags, int huge_pages, uint32_t *idev)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &a);
	struct iommu_option o = { .size = sizeof(o), .option_id = IOMMU_OPTION_HUGE_PAGES, .op = IOMMU_OPTION_OP_SET, .object_id = a.out_ioas_id, .val64 = huge_pages };
	ioctl(fd, IOMMU_OPTION, &o);
	struct iommu_test_cmd c = { .size = sizeof(c), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = a.out_ioas_id, .mock_domain_flags = { .dev_flags = dev_flags } };
	ioctl(fd, IOMMU_TEST_CMD, &c);
	*idev = c.mock_domain_flags.out_idev_id;
	return a.out_ioas_id;
}

static int map(uint32_t ioas, void *buf)
{
	struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = LEN, .iova = IOVA };
	return ioctl(fd, IOMMU_IOAS_MAP, &m);
}

/* A dirty-tracking paging HWPT; pagetable_type < 0 passes no data. */
static int hwpt(uint32_t idev, uint32_t ioas, int pagetable_type, uint32_t data_len, uint32_t *id)
{
	struct iommu_hwpt_selftest data = { .pagetable_type = pagetable_type };
	struct iommu_hwpt_alloc h = { .size = sizeof(h), .flags = IOMMU_HWPT_ALLOC_DIRTY_TRACKING, .dev_id = idev, .pt_id = ioas };
	if (pagetable_type >= 0) {
		h.data_type = 0xdead; /* IOMMU_HWPT_DATA_SELFTEST */
		h.data_len = data_len;
		h.data_uptr = (uintptr_t)&data;
	}
	int rc = ioctl(fd, IOMMU_HWPT_ALLOC, &h);
	*id = h.out_hwpt_id;
	return rc;
}

/* Marks the 2 KiB pages `pages` dirty, then reads the bitmap twice: "marked=N read=[FIRST..LAST] BITS again=BITS". */
static void mark_and_read(const char *name, uint32_t id, const unsigned *pages, int n)
{
	struct iommu_hwpt_set_dirty_tracking t = { .size = sizeof(t), .flags = IOMMU_HWPT_DIRTY_TRACKING_ENABLE, .hwpt_id = id };
	ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t);
	memset(bitmap, 0, sizeof(bitmap));
	for (int i = 0; i < n; i++)
		bitmap[pages[i] / 64] |= 1ULL << (pages[i] % 64);
	struct iommu_test_cmd c = { .size = sizeof(c), .op = IOMMU_TEST_OP_DIRTY, .id = id, .dirty = { .iova = IOVA, .length = LEN, .page_size = MOCK_PAGE, .uptr = (uintptr_t)bitmap } };
	if (ioctl(fd, IOMMU_TEST_CMD, &c) < 0) {
		printf("%s: dirty %s\n", name, result(-1));
		return;
	}
	printf("%s: marked=%llu", name, (unsigned long long)c.dirty.out_nr_dirty);
	for (int pass = 0; pass < 2; pass++) {
		memset(bitmap, 0, sizeof(bitmap));
		struct iommu_hwpt_get_dirty_bitmap g = { .size = sizeof(g), .hwpt_id = id, .iova = IOVA, .length = LEN, .page_size = MOCK_PAGE, .data = (uintptr_t)bitmap };
		ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g);
		int count = 0, first = -1, last = -1;
		for (int b = 0; b < NBITS; b++) {
			if (!(bitmap[b / 64] >> (b % 64) & 1))
				continue;
			count++;
			if (first < 0)
				first = b;
			last = b;
		}
		if (pass == 0)
			printf(" read=[%d..%d] %d", first, last, count);
		else
			printf(" again=%d\n", count);
	}
}

int main(void)
{
	fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return 1;
	void *huge = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
	if (huge == MAP_FAILED) {
		printf("hugetlb: %s\n", result(-1));
		return 1;
	}
	void *small = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	const unsigned two[] = { 1, 1024 + 3 }; /* inside the first and the third MiB */
	uint32_t idev, id;

	uint32_t ioas = ioas_with_domain(0, 1, &idev);
	map(ioas, huge);
	printf("type_unknown: %s\n", result(hwpt(idev, ioas, PT_UNKNOWN, 8, &id)));
	printf("data_len_3: %s\n", result(hwpt(idev, ioas, PT_DEFAULT, 3, &id)));
	printf("data_len_9: %s\n", result(hwpt(idev, ioas, PT_DEFAULT, 9, &id)));
	printf("type_amdv1: %s\n", result(hwpt(idev, ioas, PT_AMDV1, 8, &id)));
	printf("type_huge: %s\n", result(hwpt(idev, ioas, PT_HUGE, 8, &id)));
	mark_and_read("huge_on_hugetlb", id, two, 2);
	printf("type_default_len_4: %s\n", result(hwpt(idev, ioas, PT_DEFAULT, 4, &id)));
	mark_and_read("default_on_hugetlb", id, two, 2);

	/* HUGE_PAGES off: the core maps PAGE_SIZE at a time, so no PTE is huge */
	ioas = ioas_with_domain(0, 0, &idev);
	map(ioas, huge);
	hwpt(idev, ioas, PT_HUGE, 8, &id);
	mark_and_read("huge_pages_off", id, two, 2);

	/* 4 KiB memory is not contiguous: a HUGE table maps it with PAGE_SIZE PTEs */
	ioas = ioas_with_domain(0, 1, &idev);
	map(ioas, small);
	hwpt(idev, ioas, PT_HUGE, 8, &id);
	mark_and_read("huge_on_4k", id, two, 2);

	/* older kernels: the device's HUGE_IOVA flag gives the default format 1 MiB pages */
	ioas = ioas_with_domain(HUGE_IOVA_DEV, 1, &idev);
	map(ioas, huge);
	hwpt(idev, ioas, -1, 0, &id);
	mark_and_read("huge_iova_device", id, two, 2);
	return 0;
}
