/*
 * Helpers shared by the C examples (include this first: it sets _GNU_SOURCE);
 * they report each ioctl as one line,
 *   STEP: ok field=value ...      or      STEP: err ERRNO_NAME
 * and stop at the first result they did not expect.
 *
 * The examples are written as for a real kernel: they open /dev/iommu and
 * /dev/vfio/devices/vfio<N> and call ioctl(). Run them under the shim:
 *   iommufs exec -- dist/examples/c/nested-smmuv3
 */
#ifndef IOMMUFS_EXAMPLE_H
#define IOMMUFS_EXAMPLE_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "iommufd.h"

static inline const char *errno_name(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static inline int open_node(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("open %s: err %s\n", path, errno_name(errno));
		exit(1);
	}
	return fd;
}

/* ioctl() returning 0 or the errno. */
static inline int do_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? errno : 0;
}

/* A step that must succeed: prints "STEP: ok" and the caller prints the fields. */
#define MUST(step, fd, cmd, arg)                                                   \
	do {                                                                       \
		int e_ = do_ioctl((fd), (cmd), (arg));                             \
		if (e_) {                                                          \
			printf("%s: err %s\n", (step), errno_name(e_));            \
			exit(1);                                                   \
		}                                                                  \
		printf("%s: ok", (step));                                          \
	} while (0)

#endif
