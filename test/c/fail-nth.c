/*
 * The kernel's fail-nth sweep, as iommufd_fail_nth drives it, under the shim:
 * the debugfs switches through opendir("/sys/kernel/debug/") and openat, the
 * thread's /proc/self/task/TID/fail-nth, and a scenario (open, IOAS_ALLOC,
 * IOAS_ALLOW_IOVAS, IOAS_IOVA_RANGES, a mock domain, IOAS_MAP of this
 * program's memory, a selftest access, IOAS_UNMAP) run with its Nth step
 * failed, N = 1, 2, ..., until one run goes through. One line per run: N, the
 * step that failed and its errno, then what fail-nth read back ("0" once it
 * fired).
 *
 *   fail-nth Y|N     the value written to failslab/ignore-gfp-wait first
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

static int scenario(int nth_fd, unsigned nth)
{
	char n[16];
	int len = snprintf(n, sizeof n, "%u", nth);
	if (nth && pwrite(nth_fd, n, len, 0) != len)
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
	struct iommu_test_cmd access = { .size = sizeof(access), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = a.out_ioas_id };
	if (step("CREATE_ACCESS", ioctl(fd, IOMMU_TEST_CMD, &access)))
		goto out;
	close(access.create_access.out_access_fd);
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = a.out_ioas_id, .iova = 1 << 24, .length = 0x10000 };
	if (step("IOAS_UNMAP", ioctl(fd, IOMMU_IOAS_UNMAP, &unmap)))
		goto out;
	rc = 0;
out:
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	buffer = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	DIR *debugfs = opendir("/sys/kernel/debug/");
	if (!debugfs || writeat(dirfd(debugfs), "failslab/ignore-gfp-wait", argc > 1 ? argv[1] : "N")) {
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
	if (scenario(nth_fd, 0)) {
		printf("no injection: %s %s\n", failed_step, errno_name(failed_errno));
		return 1;
	}
	for (unsigned nth = 1; nth < 400; nth++) {
		failed_step = NULL;
		int rc = scenario(nth_fd, nth);
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
