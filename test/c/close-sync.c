/*
 * The last close() of an iommufd or a VFIO cdev takes effect before close()
 * returns, as in the kernel: run under the shim (iommufs exec), this binds
 * the same device in a fresh context right after closing the previous one,
 * many times, and looks at the debug tree right after each close. A close
 * that is not the last (a dup remains, or a forked child holds the file)
 * leaves the context alive.
 *
 * Prints one line per check: "NAME: ok" or "NAME: FAIL why", and exits 1 on a failure.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iommufd.h"

static char debug_dir[4096];
static int failed;

static void check(const char *name, int ok, const char *why)
{
	printf("%s: %s%s\n", name, ok ? "ok" : "FAIL ", ok ? "" : why);
	failed |= !ok;
}

/* Context directories in the debug tree now. */
static int contexts(void)
{
	DIR *d = opendir(debug_dir);
	int n = 0;
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] >= '1' && e->d_name[0] <= '9';
	closedir(d);
	return n;
}

static int bind(int dev, int iommufd)
{
	struct vfio_device_bind_iommufd b = { .argsz = sizeof b, .iommufd = iommufd };
	return ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) ? errno : 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 200;
	const char *mnt = getenv("IOMMUFS_MOUNT");
	if (!mnt)
		return fprintf(stderr, "IOMMUFS_MOUNT is not set (run under iommufs exec)\n"), 2;
	snprintf(debug_dir, sizeof debug_dir, "%s/sys/kernel/debug/iommufd", mnt);
	char why[128] = "";

	/* 1. bind, close both, bind again in a new context: never EBUSY, and no context left after each close */
	int busy = 0, left = 0;
	for (int i = 0; i < rounds; i++) {
		int fd = open("/dev/iommu", O_RDWR);
		int dev = open("/dev/vfio/devices/vfio0", O_RDWR);
		int e = bind(dev, fd);
		busy += e != 0;
		if (e && !why[0])
			snprintf(why, sizeof why, "round %d: bind %s", i, strerrorname_np(e));
		close(dev);
		close(fd);
		left += contexts() != 0;
	}
	check("rebind-after-close", busy == 0, why);
	snprintf(why, sizeof why, "%d of %d closes left a context directory", left, rounds);
	check("gone-after-close", left == 0, why);

	/* 2. a dup keeps the context; closing the last one ends it */
	int fd = open("/dev/iommu", O_RDWR);
	int fd2 = dup(fd);
	close(fd);
	int dev = open("/dev/vfio/devices/vfio0", O_RDWR);
	int e = bind(dev, fd2);
	snprintf(why, sizeof why, "bind through the dup: %s", e ? strerrorname_np(e) : "ok");
	check("dup-keeps-context", e == 0 && contexts() == 1, why);
	close(dev);
	close(fd2);
	check("last-dup-closes", contexts() == 0, "a context is left");

	/* 3. a forked child's close is not the last: the parent's context lives on */
	fd = open("/dev/iommu", O_RDWR);
	pid_t pid = fork();
	if (pid == 0) {
		close(fd);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	dev = open("/dev/vfio/devices/vfio0", O_RDWR);
	e = bind(dev, fd);
	snprintf(why, sizeof why, "bind after the child's close: %s", e ? strerrorname_np(e) : "ok");
	check("fork-shares", e == 0 && contexts() == 1, why);
	close(dev);
	/* shared once forked: this close is not known to be the last, so it is not waited for; wait for the state */
	close(fd);
	while (contexts() != 0)
		;

	/* 4. close_range and dup2 over an iommufd are closes too */
	fd = open("/dev/iommu", O_RDWR);
	close_range((unsigned)fd, (unsigned)fd, 0);
	check("close-range", contexts() == 0, "a context is left");
	fd = open("/dev/iommu", O_RDWR);
	int devnull = open("/dev/null", O_RDONLY);
	dup2(devnull, fd);
	check("dup2-over", contexts() == 0, "a context is left");
	close(fd);
	close(devnull);
	return failed;
}
