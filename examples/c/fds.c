/*
 * Descriptors of an iommufd behave as in the kernel: dup, dup2, dup3 and
 * fcntl(F_DUPFD*) give more descriptors of the same open file (the same
 * context, so IOAS IDs keep counting up), the context lives until its last
 * descriptor closes, and a descriptor reused for another file is that file's.
 * A duplicated iommufd can be passed to VFIO_DEVICE_BIND_IOMMUFD.
 *
 *   iommufs exec -- dist/examples/c/fds
 */
#include "example.h"

static unsigned ioas_alloc(const char *step, int fd)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	MUST(step, fd, IOMMU_IOAS_ALLOC, &a);
	printf(" fd=%d out_ioas_id=%u\n", fd, a.out_ioas_id);
	return a.out_ioas_id;
}

int main(void)
{
	int a = open_node("/dev/iommu");
	ioas_alloc("open", a);

	int b = dup(a);
	close(a);
	ioas_alloc("dup+close", b);

	int c = fcntl(b, F_DUPFD_CLOEXEC, 100);
	close(b);
	ioas_alloc("F_DUPFD_CLOEXEC", c);

	int d = dup2(c, 50);
	ioas_alloc("dup2", d);
	int e = dup3(c, 60, O_CLOEXEC);
	ioas_alloc("dup3", e);
	close(c);
	close(d);
	ioas_alloc("last-descriptor", e);

	/* a closed descriptor is nobody's: the real ioctl says EBADF */
	struct iommu_ioas_alloc x = { .size = sizeof(x) };
	int err = do_ioctl(c, IOMMU_IOAS_ALLOC, &x);
	printf("closed-fd: err %s\n", errno_name(err));

	/* dup2 of another file over it: now it is /dev/null's (and the context's last descriptor is gone) */
	int null = open("/dev/null", O_RDWR);
	dup2(null, e);
	close(null);
	err = do_ioctl(e, IOMMU_IOAS_ALLOC, &x);
	printf("replaced-fd: err %s\n", errno_name(err));
	close(e);

	/* a fresh iommufd is a fresh context: IDs start at 1 again */
	int f = open_node("/dev/iommu");
	int g = dup(f);
	close(f);
	int dev = open_node("/dev/vfio/devices/vfio2");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = g };
	MUST("bind-dup", dev, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" iommufd=%d out_devid=%u\n", g, bind.out_devid);
	ioas_alloc("after-bind", g);
	close(dev);
	close(g);
	return 0;
}
