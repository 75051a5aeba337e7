/*
 * IOMMU_IOAS_MAP_FILE with this program's own descriptors, and IOAS_MAP of
 * its own memory, as the kernel sees them: run under the shim or with real
 * ioctl()s (iommufs exec [--namespace]) the output is the same.
 *
 *   memfd: MAP_FILE of a memfd; the device reads what the program wrote into
 *          it and the program reads (pread) what the device wrote;
 *   eof:   start + length past the end of the file is EINVAL;
 *   trunc: after ftruncate shrinks the memfd, the same MAP_FILE is EINVAL;
 *   badfd: a closed descriptor is EBADF;
 *   shm:   a tmpfs file (/dev/shm, O_TMPFILE) maps as a memfd does;
 *   disk:  a file on a disk filesystem is EINVAL with a domain attached:
 *          only shmem and hugetlbfs pages pin (memfd_pin_folios);
 *   unmapped: IOAS_MAP of an address the program has not mapped is EFAULT;
 *   prot_none, read_only: so is one it maps PROT_NONE, or read-only when
 *          the mapping is WRITEABLE (the pin checks the protection);
 *   own:   MAP_FILE of a file of the mount itself is EINVAL (not memory), at
 *          once: the server never opens a file it answers for;
 *   own_mmap: IOAS_MAP of the program's mmap of a mount file is EFAULT, as
 *          the server cannot read those pages (the fault would wait on it);
 *   remapped: a pinned page the program then maps a mount file over reads
 *          as an external abort, for the same reason;
 *   map_dma: VFIO_IOMMU_MAP_DMA on the iommufd (its compat IOAS) maps the
 *          program's memory as IOAS_MAP does: the device reads it, and an
 *          address the program has unmapped is EFAULT.
 *
 * Each line: "NAME: ok ..." or "NAME: err ERRNO"; exits 1 on an unexpected result.
 */
#include "example.h" /* first: it sets _GNU_SOURCE */
#include <sys/mman.h>
#include <sys/vfs.h>
#include <linux/magic.h>

static int failed;

static void expect(const char *name, int got, int want)
{
	printf("%s: %s\n", name, got ? errno_name(got) : "ok");
	if (got != want)
		failed = 1;
}

static int map_file(int iommufd, unsigned ioas, int fd, unsigned long long start, unsigned long long length, unsigned long long iova)
{
	struct iommu_ioas_map_file m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.fd = fd,
		.start = start,
		.length = length,
		.iova = iova,
	};
	return do_ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &m);
}

/* One DMA of `len` bytes at `iova`: 0 and the data on success, else the errno or 1000 + the DMA status. */
static int dma(int iommufd, unsigned dev, int write, unsigned long long iova, void *data, unsigned len)
{
	struct iommufs_dma d = { .size = sizeof(d), .flags = write ? IOMMUFS_DMA_WRITE : 0, .dev_id = dev, .iova = iova, .length = len };
	if (write)
		d.in_data_uptr = (uintptr_t)data;
	else
		d.out_data_uptr = (uintptr_t)data;
	int e = do_ioctl(iommufd, IOMMUFS_DMA, &d);
	return e ? e : d.out_status ? 1000 + (int)d.out_status : 0;
}

int main(int argc, char **argv)
{
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node(argc > 1 ? argv[1] : "/dev/vfio/devices/vfio0");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("bind", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf("\n");
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("ioas", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf("\n");
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas.out_ioas_id };
	MUST("attach", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	printf("\n");

	int mfd = memfd_create("iommufs-map-file", 0);
	if (mfd < 0 || ftruncate(mfd, 0x4000) || pwrite(mfd, "in the memfd", 12, 0x1000) != 12) {
		perror("memfd");
		return 1;
	}
	expect("memfd", map_file(iommufd, ioas.out_ioas_id, mfd, 0x1000, 0x2000, 0x200000), 0);
	char got[16] = { 0 };
	int e = dma(iommufd, bind.out_devid, 0, 0x200000, got, 12);
	printf("memfd read: %s \"%s\"\n", e ? "err" : "ok", got);
	failed |= e || strcmp(got, "in the memfd");
	e = dma(iommufd, bind.out_devid, 1, 0x201000, "from the device", 15);
	memset(got, 0, sizeof got);
	if (pread(mfd, got, 15, 0x2000) != 15)
		e = errno;
	printf("memfd write: %s \"%s\"\n", e ? "err" : "ok", got);
	failed |= e || strcmp(got, "from the device");

	expect("eof", map_file(iommufd, ioas.out_ioas_id, mfd, 0x3000, 0x2000, 0x400000), EINVAL);
	if (ftruncate(mfd, 0x1000))
		return 1;
	expect("trunc", map_file(iommufd, ioas.out_ioas_id, mfd, 0, 0x2000, 0x400000), EINVAL);
	int spare = dup(mfd);
	close(spare);
	expect("badfd", map_file(iommufd, ioas.out_ioas_id, spare, 0, 0x1000, 0x400000), EBADF);

	int tfd = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
	if (tfd < 0 || pwrite(tfd, "in a shm file", 13, 0) != 13 || ftruncate(tfd, 0x1000)) {
		perror("/dev/shm O_TMPFILE");
		return 1;
	}
	expect("shm", map_file(iommufd, ioas.out_ioas_id, tfd, 0, 0x1000, 0x600000), 0);
	memset(got, 0, sizeof got);
	e = dma(iommufd, bind.out_devid, 0, 0x600000, got, 13);
	printf("shm read: %s \"%s\"\n", e ? "err" : "ok", got);
	failed |= e || strcmp(got, "in a shm file");

	/* the first of these on a filesystem other than tmpfs (a CI clone may live on tmpfs) */
	const char *dirs[] = { "/var/tmp", "/var/cache", "/" };
	int dfd = -1;
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && dfd < 0; i++) {
		struct statfs sf;
		if (statfs(dirs[i], &sf) == 0 && sf.f_type != TMPFS_MAGIC)
			dfd = open(dirs[i], O_TMPFILE | O_RDWR, 0600);
	}
	if (dfd < 0 || ftruncate(dfd, 0x1000)) {
		perror("disk O_TMPFILE");
		return 1;
	}
	expect("disk", map_file(iommufd, ioas.out_ioas_id, dfd, 0, 0x1000, 0x700000), EINVAL);

	/* a page the program has given back: pinning it fails */
	void *gone = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (gone == MAP_FAILED || munmap(gone, 0x2000))
		return 1;
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.ioas_id = ioas.out_ioas_id,
		.user_va = (uintptr_t)gone,
		.length = 0x2000,
		.iova = 0x800000,
	};
	expect("unmapped", do_ioctl(iommufd, IOMMU_IOAS_MAP, &map), EFAULT);

	/* mapped, but not as the pin needs it (pin_user_pages checks the protection): PROT_NONE, and read-only for a writable mapping */
	void *none = mmap(NULL, 0x2000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *ro = mmap(NULL, 0x2000, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (none == MAP_FAILED || ro == MAP_FAILED)
		return 1;
	map.user_va = (uintptr_t)none;
	expect("prot_none", do_ioctl(iommufd, IOMMU_IOAS_MAP, &map), EFAULT);
	map.user_va = (uintptr_t)ro;
	map.flags |= IOMMU_IOAS_MAP_WRITEABLE;
	expect("read_only writable", do_ioctl(iommufd, IOMMU_IOAS_MAP, &map), EFAULT);
	map.flags &= ~IOMMU_IOAS_MAP_WRITEABLE;
	expect("read_only", do_ioctl(iommufd, IOMMU_IOAS_MAP, &map), 0);
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = ioas.out_ioas_id, .iova = 0x800000, .length = 0x2000 };
	if (do_ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		return 1;

	char own[4096];
	snprintf(own, sizeof own, "%s/dev/vfio/devices/vfio1", getenv("IOMMUFS_MOUNT") ? getenv("IOMMUFS_MOUNT") : "");
	int ofd = open(own, O_RDONLY);
	expect("own", ofd < 0 ? errno : map_file(iommufd, ioas.out_ioas_id, ofd, 0, 0x1000, 0x900000), EINVAL);

	/* a feature file: the mount's under the shim, the namespace's /sys (the mount's too) with real ioctl()s */
	snprintf(own, sizeof own, "%s/sys/class/iommu/dmar0/intel-iommu/cap", getenv("IOMMUFS_MOUNT") ? getenv("IOMMUFS_MOUNT") : "");
	int cfd = open(own, O_RDONLY);
	if (cfd < 0)
		cfd = open("/sys/class/iommu/dmar0/intel-iommu/cap", O_RDONLY);
	void *page = cfd < 0 ? MAP_FAILED : mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE, cfd, 0);
	map.user_va = (uintptr_t)page;
	map.length = 0x1000;
	map.iova = 0xa00000;
	expect("own_mmap", page == MAP_FAILED ? errno : do_ioctl(iommufd, IOMMU_IOAS_MAP, &map), EFAULT);

	/* a pinned page the program then maps a mount file over: a DMA there is an
	 * external abort (the server cannot fault that page in), not a wait on itself */
	char *pinned = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pinned == MAP_FAILED)
		return 1;
	strcpy(pinned, "pinned");
	map.user_va = (uintptr_t)pinned;
	map.iova = 0xb00000;
	expect("pin", do_ioctl(iommufd, IOMMU_IOAS_MAP, &map), 0);
	char got6[8] = { 0 };
	int r = dma(iommufd, bind.out_devid, 0, 0xb00000, got6, 6);
	printf("pinned read: %s \"%s\"\n", r ? "err" : "ok", got6);
	failed |= r || strcmp(got6, "pinned");
	if (cfd < 0 || mmap(pinned, 0x1000, PROT_READ, MAP_PRIVATE | MAP_FIXED, cfd, 0) == MAP_FAILED)
		return 1;
	r = dma(iommufd, bind.out_devid, 0, 0xb00000, got6, 6);
	printf("remapped read: %s\n", r == 1000 + IOMMUFS_DMA_STATUS_ABORT ? "abort" : r ? "other" : "ok");
	failed |= r != 1000 + IOMMUFS_DMA_STATUS_ABORT;

	/* VFIO type1 on the iommufd (its compat IOAS): MAP_DMA maps the program's memory as IOAS_MAP does */
	struct iommu_vfio_ioas compat = { .size = sizeof(compat), .ioas_id = ioas.out_ioas_id, .op = IOMMU_VFIO_IOAS_SET };
	if (do_ioctl(iommufd, IOMMU_VFIO_IOAS, &compat))
		return 1;
	char *buf = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	strcpy(buf + 0x1000, "type1");
	struct vfio_iommu_type1_dma_map dm = {
		.argsz = sizeof(dm),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf,
		.iova = 0xc00000,
		.size = 0x2000,
	};
	expect("map_dma", do_ioctl(iommufd, VFIO_IOMMU_MAP_DMA, &dm), 0);
	memset(got6, 0, sizeof got6);
	r = dma(iommufd, bind.out_devid, 0, 0xc01000, got6, 5);
	printf("map_dma read: %s \"%s\"\n", r ? "err" : "ok", got6);
	failed |= r || strcmp(got6, "type1");
	dm.vaddr = (uintptr_t)gone;
	dm.iova = 0xd00000;
	expect("map_dma unmapped", do_ioctl(iommufd, VFIO_IOMMU_MAP_DMA, &dm), EFAULT);
	return failed;
}
