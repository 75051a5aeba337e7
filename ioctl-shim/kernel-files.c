/* Kernel files an iommufs mount serves in their place (kernel-files.h). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel-files.h"

static const char *digits_then(const char *s, const char *end)
{
	const char *d = s;
	while (isdigit((unsigned char)*d))
		d++;
	return d > s && strncmp(d, end, strlen(end)) == 0 ? d + strlen(end) : NULL;
}

/* The process or thread whose file /proc/{self,thread-self,PID}[/task/TID]/`name` `path` is; 0 for any other path. */
static long proc_file_of(const char *path, const char *name, long pid, long tid)
{
	static const char proc[] = "/proc/";
	if (strncmp(path, proc, sizeof proc - 1) != 0)
		return 0;
	const char *r = path + sizeof proc - 1, *t;
	long id;
	if (strncmp(r, "thread-self/", 12) == 0)
		return strcmp(r + 12, name) == 0 ? tid : 0;
	if (strncmp(r, "self/", 5) == 0) {
		id = pid;
		r += 5;
	} else if ((t = digits_then(r, "/"))) {
		id = strtol(r, NULL, 10);
		r = t;
	} else {
		return 0;
	}
	if (strcmp(r, name) == 0)
		return id;
	return strncmp(r, "task/", 5) == 0 && (t = digits_then(r + 5, "/")) && strcmp(t, name) == 0 ? strtol(r + 5, NULL, 10) : 0;
}

/*
 * The fault-injection files the kernel's iommufd_fail_nth uses
 * (/sys/kernel/debug itself and its iommufd and fail* entries, the switches
 * it sets; a thread's /proc/.../fail-nth, which is the mount's
 * sys/kernel/debug/iommufd/fail-nth, each thread with its own count there),
 * and a process's /proc/.../status.
 */
int kernel_file_path(const char *mount_dir, const char *path, long pid, long tid, char *out, size_t cap)
{
	static const char debug[] = "/sys/kernel/debug";
	int n;
	long status;
	if (proc_file_of(path, "fail-nth", pid, tid) > 0) {
		n = snprintf(out, cap, "%s/sys/kernel/debug/iommufd/fail-nth", mount_dir);
	} else if ((status = proc_file_of(path, "status", pid, tid)) > 0) {
		n = snprintf(out, cap, "%s/sys/kernel/debug/iommufd/proc/%ld/status", mount_dir, status);
	} else if (strncmp(path, debug, sizeof debug - 1) == 0 && (!path[sizeof debug - 1] || path[sizeof debug - 1] == '/')) {
		const char *r = path + sizeof debug - 1;
		while (*r == '/')
			r++;
		if (*r && strncmp(r, "fail", 4) != 0 && !(strncmp(r, "iommufd", 7) == 0 && (!r[7] || r[7] == '/')))
			return 0;
		n = snprintf(out, cap, "%s/sys/kernel/debug/%s", mount_dir, r);
	} else {
		return 0;
	}
	return n > 0 && (size_t)n < cap;
}

static int ends_with(const char *s, size_t len, const char *end)
{
	size_t n = strlen(end);
	return len >= n && memcmp(s + len - n, end, n) == 0;
}

int queue_read_nothing(int fd)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path);
	if (n <= 0 || (size_t)n >= sizeof path)
		return 1;
	/* the debug tree names each queue's file <id>.veventq/queue or <id>.fault/queue */
	if (ends_with(path, (size_t)n, ".veventq/queue"))
		return -EINVAL;
	if (!ends_with(path, (size_t)n, ".fault/queue"))
		return 1;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) ? -EINVAL : 0;
}
