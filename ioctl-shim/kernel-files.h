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

#endif
