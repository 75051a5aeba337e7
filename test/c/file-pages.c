/*
 * A file mapping's pages are the file's (IOAS_MAP_FILE of a memfd), as the
 * kernel's page-identity checks see them: MD_CHECK_MAP, MD_CHECK_REFS and
 * ACCESS_PAGES with uptr compare the page behind an IOVA with the page at the
 * caller's address, which is the same file page at any address the memfd is
 * mapped at, and a different one at another offset or in private memory.
 *
 * One line per check: "NAME: ok" or "NAME: err ERRNO" (test/integration/pins.test.ts).
 */
#include "example.h" /* first: it sets _GNU_SOURCE */
#include <sys/mman.h>

#define PG 4096
#define IOVA (1ull << 24)

static void report(const char *name, int e)
{
	printf("%s: %s\n", name, e ? errno_name(e) : "ok");
}

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return do_ioctl(fd, IOMMU_TEST_CMD, c);
}

static int check_map(int fd, unsigned hwpt, unsigned long long iova, size_t len, void *p)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MD_CHECK_MAP, .id = hwpt, .check_map = { .iova = iova, .length = len, .uptr = (uintptr_t)p } };
	return test_cmd(fd, &c);
}

static int refs(int fd, void *p, size_t len, unsigned n)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MD_CHECK_REFS, .check_refs = { .length = len, .uptr = (uintptr_t)p, .refs = n } };
	return test_cmd(fd, &c);
}

static int map_file(int fd, unsigned ioas, int mfd, unsigned long long start, unsigned long long len, unsigned long long iova)
{
	struct iommu_ioas_map_file m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
					  .ioas_id = ioas, .fd = mfd, .start = start, .length = len, .iova = iova };
	return do_ioctl(fd, IOMMU_IOAS_MAP_FILE, &m);
}

static unsigned ioas_alloc(int fd)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (do_ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		exit(1);
	return a.out_ioas_id;
}

int main(void)
{
	int fd = open_node("/dev/iommu");
	int mfd = memfd_create("pages", 0);
	if (mfd < 0 || ftruncate(mfd, 4 * PG))
		return 1;
	/* the same memfd at two addresses, and private memory of the same size */
	uint8_t *a = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	uint8_t *b = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	uint8_t *priv = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || priv == MAP_FAILED)
		return 1;

	unsigned ioas = ioas_alloc(fd);
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	report("mock_domain", test_cmd(fd, &md));
	unsigned hwpt = md.mock_domain.out_hwpt_id;

	/* file pages 1 and 2 at IOVA */
	report("map_file", map_file(fd, ioas, mfd, PG, 2 * PG, IOVA));
	report("check_map_first_address", check_map(fd, hwpt, IOVA, 2 * PG, a + PG));
	report("check_map_second_address", check_map(fd, hwpt, IOVA, 2 * PG, b + PG));
	report("check_map_half_page", check_map(fd, hwpt, IOVA + PG / 2, PG, b + PG + PG / 2));
	report("check_map_other_offset", check_map(fd, hwpt, IOVA, 2 * PG, a));
	report("check_map_private", check_map(fd, hwpt, IOVA, 2 * PG, priv + PG));
	report("refs_mapped_pages_1", refs(fd, a + PG, 2 * PG, 1));
	report("refs_mapped_pages_1_other_address", refs(fd, b + PG, 2 * PG, 1));
	report("refs_first_page_0", refs(fd, a, PG, 0));
	report("refs_last_page_0", refs(fd, b + 3 * PG, PG, 0));
	report("refs_private_0", refs(fd, priv + PG, 2 * PG, 0));

	/* the same file pages pinned again through an access in a domain-less IOAS: a second pinner */
	unsigned ioas2 = ioas_alloc(fd);
	report("map_file_no_domain", map_file(fd, ioas2, mfd, 0, 4 * PG, IOVA));
	report("refs_unpinned_without_domain", refs(fd, a + PG, 2 * PG, 1));
	struct iommu_test_cmd ca = { .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas2, .create_access = { .flags = 1 /* NEEDS_PIN_PAGES */ } };
	report("create_access", test_cmd(fd, &ca));
	struct iommu_test_cmd ap = { .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = ca.create_access.out_access_fd,
				     .access_pages = { .iova = IOVA + PG, .length = 2 * PG, .uptr = (uintptr_t)(b + PG) } };
	report("access_pages_file_uptr", test_cmd(fd, &ap));
	report("refs_two_pinners", refs(fd, a + PG, 2 * PG, 2));
	ap.access_pages.uptr = (uintptr_t)a;
	report("access_pages_wrong_offset", test_cmd(fd, &ap));
	ap.access_pages.uptr = (uintptr_t)(priv + PG);
	report("access_pages_private", test_cmd(fd, &ap));

	/* unmapping the domain's area leaves the access's pin */
	struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = ioas, .iova = IOVA, .length = 2 * PG };
	report("unmap", do_ioctl(fd, IOMMU_IOAS_UNMAP, &um));
	report("refs_access_pin_left", refs(fd, a + PG, 2 * PG, 1));
	close(ca.create_access.out_access_fd);
	report("refs_0_after_access_close", refs(fd, a, 4 * PG, 0));
	return 0;
}
