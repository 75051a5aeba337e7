/*
 * The uAPI's error paths, each as the kernel answers it: a missing ID, an ID
 * of the wrong object type, nonzero bytes past the struct the kernel knows,
 * a size below the minimum, bad pointers (the struct itself, an input array,
 * an output buffer), an unknown ioctl number, and an error that still writes
 * a field back. One line per case: "case: err ERRNO" (or "ok"); the exit
 * status is the number of cases that did not give the expected errno.
 *
 *   iommufs exec -- dist/examples/c/errors
 */
#include "example.h"

static int mismatches;

static void expect(const char *what, int fd, unsigned long cmd, void *arg, int want)
{
	int e = do_ioctl(fd, cmd, arg);
	if (e)
		printf("%s: err %s", what, errno_name(e));
	else
		printf("%s: ok", what);
	if (e != want) {
		printf(" (expected %s)", want ? errno_name(want) : "success");
		mismatches++;
	}
	printf("\n");
}

/* A user-space pointer no mapping covers (the first page is never mapped). */
#define BAD_POINTER ((void *)0x10)

int main(void)
{
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node("/dev/vfio/devices/vfio1");

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("setup: VFIO_DEVICE_BIND_IOMMUFD", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("setup: IOMMU_IOAS_ALLOC", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf(" out_ioas_id=%u\n", ioas.out_ioas_id);
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt), .dev_id = bind.out_devid, .pt_id = ioas.out_ioas_id };
	MUST("setup: IOMMU_HWPT_ALLOC", iommufd, IOMMU_HWPT_ALLOC, &hwpt);
	printf(" out_hwpt_id=%u\n", hwpt.out_hwpt_id);

	/* a missing ID */
	struct iommu_destroy destroy = { .size = sizeof(destroy), .id = 99 };
	expect("bad-id IOMMU_DESTROY id=99", iommufd, IOMMU_DESTROY, &destroy, ENOENT);

	/* an ID of another object type: lookups are typed */
	struct iommu_ioas_iova_ranges ranges = { .size = sizeof(ranges), .ioas_id = hwpt.out_hwpt_id };
	expect("wrong-type IOMMU_IOAS_IOVA_RANGES ioas_id=<hwpt>", iommufd, IOMMU_IOAS_IOVA_RANGES, &ranges, ENOENT);
	struct iommu_vdevice_alloc vdev = { .size = sizeof(vdev), .viommu_id = ioas.out_ioas_id, .dev_id = bind.out_devid, .virt_id = 1 };
	expect("wrong-type IOMMU_VDEVICE_ALLOC viommu_id=<ioas>", iommufd, IOMMU_VDEVICE_ALLOC, &vdev, ENOENT);

	/* HWPT_ALLOC's quirk: a pt_id that does not exist is EINVAL, not ENOENT */
	struct iommu_hwpt_alloc nopt = { .size = sizeof(nopt), .dev_id = bind.out_devid, .pt_id = 99 };
	expect("quirk IOMMU_HWPT_ALLOC pt_id=99", iommufd, IOMMU_HWPT_ALLOC, &nopt, EINVAL);

	/* a newer userspace's larger struct: its extra bytes must be zero */
	struct {
		struct iommu_ioas_alloc cmd;
		__u32 future;
	} bigger = { .cmd = { .size = sizeof(bigger) }, .future = 1 };
	expect("trailing-nonzero IOMMU_IOAS_ALLOC size=16", iommufd, IOMMU_IOAS_ALLOC, &bigger, E2BIG);
	bigger.future = 0;
	expect("trailing-zero IOMMU_IOAS_ALLOC size=16", iommufd, IOMMU_IOAS_ALLOC, &bigger, 0);
	printf("trailing-zero out_ioas_id=%u\n", bigger.cmd.out_ioas_id);

	/* smaller than the first version of the struct */
	struct iommu_ioas_alloc small = { .size = 8 };
	expect("short-size IOMMU_IOAS_ALLOC size=8", iommufd, IOMMU_IOAS_ALLOC, &small, EINVAL);

	/* a flag the kernel does not know */
	struct iommu_ioas_alloc flagged = { .size = sizeof(flagged), .flags = 1 };
	expect("unknown-flag IOMMU_IOAS_ALLOC flags=1", iommufd, IOMMU_IOAS_ALLOC, &flagged, EOPNOTSUPP);

	/* bad pointers: the struct itself, an input array, an output buffer */
	expect("bad-pointer IOMMU_IOAS_ALLOC arg=0x10", iommufd, IOMMU_IOAS_ALLOC, BAD_POINTER, EFAULT);
	struct iommu_ioas_allow_iovas allow = { .size = sizeof(allow), .ioas_id = ioas.out_ioas_id, .num_iovas = 1, .allowed_iovas = (uintptr_t)BAD_POINTER };
	expect("bad-pointer IOMMU_IOAS_ALLOW_IOVAS allowed_iovas=0x10", iommufd, IOMMU_IOAS_ALLOW_IOVAS, &allow, EFAULT);
	struct iommu_hw_info hw = { .size = sizeof(hw), .dev_id = bind.out_devid, .data_len = 40, .data_uptr = (uintptr_t)BAD_POINTER };
	expect("bad-pointer IOMMU_GET_HW_INFO data_uptr=0x10", iommufd, IOMMU_GET_HW_INFO, &hw, EFAULT);

	/* numbers the kernel does not know, with or without a struct behind them */
	struct iommu_destroy any = { .size = sizeof(any) };
	expect("unknown-ioctl _IO(';', 0xff)", iommufd, _IO(IOMMUFD_TYPE, 0xff), &any, ENOTTY);
	expect("unknown-ioctl _IO(';', 0xff) arg=NULL", iommufd, _IO(IOMMUFD_TYPE, 0xff), NULL, ENOTTY);

	/* an error that still writes back: the array is too small, num_iovas says how many are needed */
	struct iommu_iova_range one[1];
	struct iommu_ioas_iova_ranges none = { .size = sizeof(none), .ioas_id = ioas.out_ioas_id, .num_iovas = 0, .allowed_iovas = (uintptr_t)one };
	expect("too-small IOMMU_IOAS_IOVA_RANGES num_iovas=0", iommufd, IOMMU_IOAS_IOVA_RANGES, &none, EMSGSIZE);
	printf("too-small num_iovas=%u\n", none.num_iovas);

	/* any other descriptor is the real kernel's */
	int null = open("/dev/null", O_RDWR);
	struct iommu_ioas_alloc elsewhere = { .size = sizeof(elsewhere) };
	expect("other-fd /dev/null IOMMU_IOAS_ALLOC", null, IOMMU_IOAS_ALLOC, &elsewhere, ENOTTY);
	close(null);

	close(devfd);
	close(iommufd);
	printf("mismatches: %d\n", mismatches);
	return mismatches;
}
