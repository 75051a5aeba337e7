/*
 * A tiny C test suite, the kind a project keeps for its iommufd code: each
 * test is a function, selected by name on the command line, and exits 0 when
 * it passes. CTestTestfile.cmake lists them for ctest; run the whole suite
 * on a fresh machine with
 *
 *   iommufs run -- ctest --test-dir examples/suites/c --output-on-failure
 *
 * (iommufs run preloads the ioctl shim into ctest and every test it starts).
 */
#include "../../c/example.h"

#define CHECK(cond)                                                                \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			return 1;                                                  \
		}                                                                  \
	} while (0)

/* Each open of /dev/iommu is a new context; the first IOAS gets ID 1. */
static int test_ioas_alloc(void)
{
	int fd = open_node("/dev/iommu");
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, &a) == 0);
	CHECK(a.out_ioas_id == 1);
	struct iommu_destroy d = { .size = sizeof(d), .id = a.out_ioas_id };
	CHECK(ioctl(fd, IOMMU_DESTROY, &d) == 0);
	CHECK(ioctl(fd, IOMMU_DESTROY, &d) == -1 && errno == ENOENT);
	return close(fd);
}

/* Bind a device, read its SMMUv3 registers through GET_HW_INFO. */
static int test_hw_info(void)
{
	int fd = open_node("/dev/iommu");
	int dev = open_node("/dev/vfio/devices/vfio1");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = fd };
	CHECK(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0);
	struct iommu_hw_info_arm_smmuv3 regs = { 0 };
	struct iommu_hw_info info = { .size = sizeof(info), .dev_id = bind.out_devid, .data_len = sizeof(regs), .data_uptr = (uintptr_t)&regs };
	CHECK(ioctl(fd, IOMMU_GET_HW_INFO, &info) == 0);
	CHECK(info.out_data_type == IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
	CHECK(regs.idr[0] != 0);
	close(dev);
	return close(fd);
}

/* An error changes nothing: a bad flag is refused and no ID is used up. */
static int test_errors_change_nothing(void)
{
	int fd = open_node("/dev/iommu");
	struct iommu_ioas_alloc bad = { .size = sizeof(bad), .flags = 1 };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, &bad) == -1 && errno == EOPNOTSUPP);
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, &a) == 0 && a.out_ioas_id == 1);
	return close(fd);
}

static const struct {
	const char *name;
	int (*fn)(void);
} tests[] = {
	{ "ioas_alloc", test_ioas_alloc },
	{ "hw_info", test_hw_info },
	{ "errors_change_nothing", test_errors_change_nothing },
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s TEST (", argv[0]);
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			fprintf(stderr, "%s%s", i ? ", " : "", tests[i].name);
		fprintf(stderr, ")\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (!strcmp(argv[1], tests[i].name))
			return tests[i].fn();
	fprintf(stderr, "%s: no such test\n", argv[1]);
	return 2;
}
