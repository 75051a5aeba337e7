/*
 * Kernel files an iommufs mount serves in their place, by path: a process's
 * /proc/.../status (VmPin and VmLck count the model's pins), a thread's
 * /proc/.../fail-nth, and the fault-injection corner of /sys/kernel/debug.
 * The ioctl shim redirects its program's opens there; exec --namespace's
 * supervisor its program's.
 */
#ifndef IOMMUFS_KERNEL_FILES_H
#define IOMMUFS_KERNEL_FILES_H

#include <stddef.h>

/*
 * The mount's file that stands in for `path` as opened by thread `tid` of
 * process `pid` (what self and thread-self mean), written to `out`: 1, or 0
 * when `path` is none of those files (or does not fit).
 */
__attribute__((visibility("hidden"))) int kernel_file_path(const char *mount_dir, const char *path, long pid, long tid, char *out, size_t cap);

/*
 * What read(fd, buf, 0) answers on one of the mount's event queue files,
 * which FUSE never passes to the server (a read of 0 bytes sends no READ):
 * on a vEVENTQ EINVAL (less than a header), on a fault queue EINVAL when a
 * group is queued (it does not fit) and 0 when none is. `fd` is open on the
 * queue's file (a descriptor of the caller's open file). Returns 0 or
 * -EINVAL, or 1 when `fd` is no queue file.
 */
__attribute__((visibility("hidden"))) int queue_read_nothing(int fd);

#endif
