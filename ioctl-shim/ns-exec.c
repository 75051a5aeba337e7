/*
 * iommufs-ns-exec MOUNT PROGRAM [ARGS...]: the last step of `iommufs exec
 * --namespace`. PROGRAM's real ioctl()s reach the model through FUSE, but
 * FUSE cannot install a descriptor in the caller, and three commands return
 * one: IOMMU_FAULT_QUEUE_ALLOC, IOMMU_VEVENTQ_ALLOC and the selftest's
 * IOMMU_TEST_CMD (CREATE_ACCESS, DMABUF_GET). A seccomp filter stops those
 * commands and this process, outside PROGRAM, answers them (user
 * notification): it sends the request as a frame on PROGRAM's own iommufd
 * (pidfd_getfd), opens the file the reply names, installs it in PROGRAM
 * (SECCOMP_IOCTL_NOTIF_ADDFD) and writes the struct back where the kernel
 * would. Those commands on other files, and every other syscall, go on
 * untouched. Opens stop here too, so that a /proc/.../status (VmPin and
 * VmLck with the model's pins) or a thread's fail-nth opens the mount's
 * stand-in, as under the shim. So do mmap()s of files: one of PROGRAM's
 * iommufd is checked by the server as the kernel checks it, then mapped by
 * PROGRAM's kernel from the FUSE file. Exits with PROGRAM's status (128 +
 * signal when killed). A read() of 0 bytes stops too: on an event queue it
 * gets the kernel's answer, which FUSE cannot give (it sends no request).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* since 6.9: a pidfd for a thread that is not its group's leader */
#endif
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frames.h"
#include "kernel-files.h"
#include "iommufd.h"

#if defined(__x86_64__)
#define THIS_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_ARCH AUDIT_ARCH_AARCH64
#else
#error "iommufs-ns-exec: no seccomp architecture for this machine"
#endif
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "iommufs-ns-exec: the filter reads the command as a little-endian word"
#endif

static const char *mount_dir;
static struct stat iommu_node; /* MOUNT/dev/iommu: a descriptor of it is an iommufd of this mount */
/* the devices of the mounts at MOUNT and below it: the mount's sessions */
#define MAX_MOUNT_DEVS 16
static dev_t mount_devs[MAX_MOUNT_DEVS];
static size_t nmount_devs;

static int on_mount(const struct stat *st)
{
	for (size_t i = 0; i < nmount_devs; i++)
		if (st->st_dev == mount_devs[i])
			return 1;
	return 0;
}
static pid_t child;

static void die(const char *what)
{
	fprintf(stderr, "iommufs-ns-exec: %s: %s\n", what, strerror(errno));
	exit(126);
}

/* mountinfo's octal escapes (\040 for a space) undone in place. */
static void unescape(char *s)
{
	char *out = s;
	for (; *s; s++, out++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*out = *s;
		}
	}
	*out = 0;
}

/* Notes the devices of the mounts at MOUNT and below it (/proc/self/mountinfo), however many sessions the server mounted there. */
static void note_mount_devs(void)
{
	char root[PATH_MAX], line[2 * PATH_MAX], at[PATH_MAX];
	if (!realpath(mount_dir, root))
		die(mount_dir);
	size_t rl = strlen(root);
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		die("/proc/self/mountinfo");
	while (fgets(line, sizeof line, f) && nmount_devs < MAX_MOUNT_DEVS) {
		unsigned major, minor;
		/* ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ... */
		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &major, &minor, at) != 3)
			continue;
		unescape(at);
		if (strncmp(at, root, rl) == 0 && (at[rl] == 0 || at[rl] == '/'))
			mount_devs[nmount_devs++] = makedev(major, minor);
	}
	fclose(f);
}

/* ---- the program's side: the filter ---- */

#ifdef __NR_open
#define NR_OPEN __NR_open
#else
#define NR_OPEN __NR_openat /* no open(2) on this machine: openat is checked twice */
#endif

/*
 * ioctl() with one of the three commands, every open() (an open may name a
 * kernel file the mount stands in for; the filter cannot read the path),
 * every mmap() of a file (it may be an iommufd's region) and every read() of
 * 0 bytes (it may be an event queue's, which FUSE never asks the server
 * about) stop for us; all else runs. Jumps count the instructions skipped:
 * NOTIFY is 18 and 24, ALLOW 19 and 25.
 */
static int install_filter(void)
{
	struct sock_filter prog[] = {
		/* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_ARCH, 1, 0),
		/* 2 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		/* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_OPEN, 13, 0),
		/* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 12, 0),
		/* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 2, 0),
		/* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 6, 0),
		/* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_read, 11, 10),
		/* 9: the kernel takes the command as an unsigned int: its low word */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		/* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOMMU_FAULT_QUEUE_ALLOC, 7, 0),
		/* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOMMU_VEVENTQ_ALLOC, 6, 0),
		/* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOMMU_TEST_CMD, 5, 0),
		/* 13 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* 14: mmap's descriptor (an int: its low word); -1 maps no file */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[4])),
		/* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffu, 3, 0),
		/* 16: its flags; MAP_ANONYMOUS ignores the descriptor */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])),
		/* 17 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MAP_ANONYMOUS, 1, 0),
		/* 18 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		/* 19 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* 20: read's count, both words */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		/* 21 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
		/* 22 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]) + 4),
		/* 23 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
		/* 24 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		/* 25 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = { .len = sizeof prog / sizeof prog[0], .filter = prog };
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
}

static void send_fd(int sock, int fd)
{
	char byte = 0;
	struct iovec io = { &byte, 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	if (sendmsg(sock, &m, 0) < 0)
		die("sendmsg");
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec io = { &byte, 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

/* ---- our side: answering a stopped ioctl ---- */

static ssize_t remote_read(pid_t pid, uint64_t addr, void *dst, size_t len)
{
	struct iovec local = { dst, len }, remote = { (void *)(uintptr_t)addr, len };
	return len ? process_vm_readv(pid, &local, 1, &remote, 1, 0) : 0;
}

static int remote_write(pid_t pid, uint64_t addr, const void *src, size_t len)
{
	struct iovec local = { (void *)src, len }, remote = { (void *)(uintptr_t)addr, len };
	return !len || process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

/* A TEST_CMD op that makes a descriptor: the only ones answered here. */
static int makes_descriptor(uint32_t op)
{
	return op == IOMMU_TEST_OP_CREATE_ACCESS || op == IOMMU_TEST_OP_DMABUF_GET;
}

/* The process of thread `tid` (its Tgid), or 0. */
static pid_t tgid_of(pid_t tid)
{
	char path[64], line[128];
	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	FILE *f = fopen(path, "r");
	pid_t tgid = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	if (f)
		fclose(f);
	return tgid;
}

/* A pidfd for the task that made the call: the thread itself where the kernel allows it, else its process (which shares its descriptors). */
static int pidfd_of_task(pid_t tid)
{
	int pidfd = pidfd_open(tid, PIDFD_THREAD);
	if (pidfd >= 0 || errno != EINVAL)
		return pidfd;
	pid_t tgid = tgid_of(tid);
	return tgid > 0 ? pidfd_open(tgid, 0) : -1;
}

/* The calling task's descriptor `fd`, duplicated here, with its stat; -1 if it cannot be. */
static int program_file(pid_t tid, int fd, struct stat *st)
{
	int pidfd = pidfd_of_task(tid);
	if (pidfd < 0)
		return -1;
	int own = pidfd_getfd(pidfd, fd, 0);
	close(pidfd);
	if (own >= 0 && fstat(own, st) < 0) {
		close(own);
		own = -1;
	}
	return own;
}

static int is_iommu_node(const struct stat *st)
{
	return st->st_dev == iommu_node.st_dev && st->st_ino == iommu_node.st_ino;
}

/* The calling task's descriptor `fd`, duplicated here when it is an iommufd of this mount; else -1. */
static int iommufd_of(pid_t tid, int fd)
{
	struct stat st;
	int own = program_file(tid, fd, &st);
	if (own >= 0 && !is_iommu_node(&st)) {
		close(own);
		own = -1;
	}
	return own;
}

/* The stopped call a reply lands in: PROGRAM's thread and the notification that installs its descriptors. */
struct stopped {
	pid_t pid;
	int listener;
	uint64_t id;
	int answered; /* a descriptor was installed as the return value, which answers the call */
};

static ssize_t program_read(void *who, uint64_t addr, void *dst, size_t len)
{
	return remote_read(((struct stopped *)who)->pid, addr, dst, len);
}

static int program_write(void *who, uint64_t addr, const void *src, size_t len)
{
	return remote_write(((struct stopped *)who)->pid, addr, src, len);
}

/* Opens the mount's file for PROGRAM and installs it there (SECCOMP_ADDFD_FLAG_SEND for the return value). */
static int hand_over(void *who, uint32_t handle, const char *path, uint32_t plen, int retval)
{
	(void)handle;
	struct stopped *c = who;
	char file[PATH_MAX];
	int rc = handed_file(mount_dir, path, plen, file, sizeof file);
	if (rc < 0)
		return rc;
	int nfd = open(file, O_RDWR | O_CLOEXEC);
	if (nfd < 0)
		return -errno;
	struct seccomp_notif_addfd add = { .id = c->id, .flags = retval ? SECCOMP_ADDFD_FLAG_SEND : 0, .srcfd = (uint32_t)nfd, .newfd_flags = O_CLOEXEC };
	int target = ioctl(c->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
	int err = errno;
	close(nfd);
	if (target >= 0 && retval)
		c->answered = 1;
	return target < 0 ? -err : target;
}

/*
 * The ioctl as a frame on `own` (PROGRAM's iommufd), its reply written into
 * PROGRAM as the kernel's would be. Returns 0 with *val, or a positive errno.
 */
static int forward(struct stopped *c, const struct seccomp_notif *n, int own, int64_t *val)
{
	uint64_t addr = n->data.args[2];
	struct request r = { .cmd = (uint32_t)n->data.args[1] };
	if (read_struct(&r, program_read, c, addr) < 0)
		return ENOMEM;
	/*
	 * Probed for writing before anything is made, as the server probes a real
	 * ioctl's: a struct the reply cannot be written to is EFAULT with nothing
	 * made, where the kernel would make, fail to copy out, and undo.
	 */
	if (r.st_len && remote_write(c->pid, addr, r.st, r.st_len) < 0) {
		free((void *)r.st);
		return EFAULT;
	}
	/* not OWN: the struct's addresses are PROGRAM's, not this writer's */
	struct entry argent = { .addr = addr, .len = 0, .flags = IOMF_BUF_ARG, .data = NULL };
	struct reply rep = { 0 };
	uint8_t *f = NULL;
	int err = add_entry(&r, argent) < 0 ? ENOMEM : 0;
	if (!err && !(f = transact(own, &r, program_read, c, &rep)))
		err = errno;
	if (!err) {
		struct reply_sink sink = { .who = c, .write = program_write, .install = hand_over };
		err = apply_reply(&rep, addr, &sink, val);
	}
	free(rep.b);
	free(f);
	free_request(&r);
	free((void *)r.st);
	return err;
}

/* The NUL-terminated string at addr in `pid`, read a page at a time (the next may be unmapped): 0, or -1. */
static int remote_string(pid_t pid, uint64_t addr, char *out, size_t cap)
{
	size_t have = 0;
	while (have < cap) {
		size_t page_left = 4096 - ((addr + have) & 4095);
		size_t want = page_left < cap - have ? page_left : cap - have;
		ssize_t got = remote_read(pid, addr + have, out + have, want);
		if (got <= 0)
			return -1;
		char *nul = memchr(out + have, 0, (size_t)got);
		if (nul)
			return 0;
		have += (size_t)got;
	}
	return -1;
}

/*
 * A stopped open() or openat(): a kernel file the mount stands in for (a
 * /proc/.../status with the model's pins, a thread's fail-nth) is opened on
 * the mount and becomes the call's result, as the shim redirects it; any
 * other path opens as it would have. Returns whether it answered.
 */
static int answer_open(int listener, const struct seccomp_notif *n)
{
	int at = n->data.nr == __NR_openat;
	uint64_t path_addr = n->data.args[at ? 1 : 0];
	int flags = (int)n->data.args[at ? 2 : 1];
	mode_t mode = (mode_t)n->data.args[at ? 3 : 2];
	char path[PATH_MAX], stand_in[PATH_MAX];
	static const char proc[] = "/proc/";
	pid_t tid = (pid_t)n->pid;
	if (remote_string(tid, path_addr, path, sizeof path) < 0 || strncmp(path, proc, sizeof proc - 1) != 0)
		return 0;
	if (!kernel_file_path(mount_dir, path, tgid_of(tid), tid, stand_in, sizeof stand_in))
		return 0;
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) < 0)
		return 0;
	int fd = open(stand_in, flags & ~O_CLOEXEC, mode);
	if (fd < 0) {
		struct seccomp_notif_resp resp = { .id = n->id, .error = -errno };
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
		return 1;
	}
	struct seccomp_notif_addfd add = { .id = n->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (uint32_t)fd, .newfd_flags = (uint32_t)(flags & O_CLOEXEC) };
	ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
	close(fd);
	return 1;
}

/* Answers a stopped call; ENOENT: the caller is gone (killed while it waited). */
static void send_response(int listener, struct seccomp_notif_resp *resp)
{
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0 && errno != ENOENT)
		fprintf(stderr, "iommufs-ns-exec: SECCOMP_IOCTL_NOTIF_SEND: %s\n", strerror(errno));
}

static ssize_t nothing_to_read(void *who, uint64_t addr, void *dst, size_t len)
{
	(void)who, (void)addr, (void)dst, (void)len;
	return -1;
}

/*
 * A stopped mmap() of a file. On this mount's iommufd the server checks
 * offset, length and flags as the kernel's iommufd does (IOMMUFS_MMAP with
 * FILE): its errno is the call's, and on success the call runs and the
 * kernel maps the file itself, reading each page as a READ of its offset
 * (the region's bytes). The mount's other files (a VFIO device, a queue, the
 * debug tree) are not mapped shared: ENODEV, as before the mount allowed it
 * for dev/iommu. Any other file maps as it would have, and so does a length
 * or offset the kernel refuses before any file sees it.
 */
static void answer_mmap(int listener, const struct seccomp_notif *n, struct seccomp_notif_resp *resp)
{
	uint64_t len = n->data.args[1], off = n->data.args[5];
	int prot = (int)n->data.args[2], flags = (int)n->data.args[3];
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct stat st;
	int own = len && !(off & (page - 1)) ? program_file((pid_t)n->pid, (int)n->data.args[4], &st) : -1;
	if (own >= 0 && !is_iommu_node(&st)) {
		if (on_mount(&st) && (flags & MAP_TYPE) != MAP_PRIVATE) {
			resp->flags = 0;
			resp->error = -ENODEV;
		}
		close(own);
		own = -1;
	}
	if (own >= 0 && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) == 0) {
		struct iommufs_mmap m = {
			.size = sizeof m,
			.flags = ((flags & MAP_TYPE) != MAP_PRIVATE ? IOMMUFS_MMAP_SHARED : 0) | (prot & PROT_EXEC ? IOMMUFS_MMAP_EXEC : 0) | IOMMUFS_MMAP_FILE,
			.offset = off,
			.length = (len + page - 1) & ~(page - 1),
			.pid = (uint32_t)tgid_of((pid_t)n->pid),
			.dev_major = major(st.st_dev),
			.dev_minor = minor(st.st_dev),
			.ino = st.st_ino,
		};
		struct request r = { .cmd = IOMMUFS_MMAP, .st = (const uint8_t *)&m, .st_len = sizeof m };
		struct reply rep = { 0 };
		uint8_t *f = transact(own, &r, nothing_to_read, NULL, &rep);
		int err = f ? (int)rep.h.target_or_errno : errno;
		free(rep.b);
		free(f);
		if (err) {
			resp->flags = 0;
			resp->error = -err;
		} else {
			/* a GETATTR: the file's size now reaches the region, or its pages would fault (SIGBUS) */
			fstat(own, &st);
		}
	}
	if (own >= 0)
		close(own);
	send_response(listener, resp);
}

/* A stopped read() of 0 bytes: on one of the mount's event queues, the kernel's answer (queue_read_nothing); else it runs. */
static void answer_read_nothing(int listener, const struct seccomp_notif *n, struct seccomp_notif_resp *resp)
{
	struct stat st;
	int own = program_file((pid_t)n->pid, (int)n->data.args[0], &st);
	if (own >= 0) {
		int r = on_mount(&st) ? queue_read_nothing(own) : 1;
		if (r <= 0 && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) == 0) {
			resp->flags = 0;
			resp->error = r;
		}
		close(own);
	}
	send_response(listener, resp);
}

/* One stopped call: ours to answer, or let run as it would have. */
static void answer(int listener, struct seccomp_notif *n, struct seccomp_notif_resp *resp)
{
	memset(resp, 0, sizeof *resp);
	resp->id = n->id;
	resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	if (n->data.nr == __NR_mmap) {
		answer_mmap(listener, n, resp);
		return;
	}
	if (n->data.nr == __NR_read) {
		answer_read_nothing(listener, n, resp);
		return;
	}
	if (n->data.nr != __NR_ioctl) {
		if (!answer_open(listener, n))
			send_response(listener, resp);
		return;
	}
	uint32_t head[2];
	int own = -1;
	int ours = 1;
	if ((uint32_t)n->data.args[1] == IOMMU_TEST_CMD)
		ours = remote_read((pid_t)n->pid, n->data.args[2], head, sizeof head) == (ssize_t)sizeof head && makes_descriptor(head[1]);
	if (ours)
		own = iommufd_of((pid_t)n->pid, (int)n->data.args[0]);
	/* the pid we read through must still be the caller's */
	if (own >= 0 && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) == 0) {
		struct stopped c = { .pid = (pid_t)n->pid, .listener = listener, .id = n->id };
		int64_t val = 0;
		int err = forward(&c, n, own, &val);
		if (c.answered) {
			close(own);
			return;
		}
		resp->flags = 0;
		resp->error = err ? -err : 0;
		resp->val = err ? 0 : val;
	}
	if (own >= 0)
		close(own);
	send_response(listener, resp);
}

/* Serves PROGRAM's stopped ioctls until PROGRAM ends; returns its wait status. */
static int serve(int listener, int child_pidfd)
{
	struct seccomp_notif_sizes sizes;
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
		die("SECCOMP_GET_NOTIF_SIZES");
	struct seccomp_notif *n = malloc(sizes.seccomp_notif > sizeof *n ? sizes.seccomp_notif : sizeof *n);
	struct seccomp_notif_resp *resp = malloc(sizes.seccomp_notif_resp > sizeof *resp ? sizes.seccomp_notif_resp : sizeof *resp);
	if (!n || !resp)
		die("malloc");
	for (;;) {
		struct pollfd p[2] = { { .fd = listener, .events = POLLIN }, { .fd = child_pidfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			memset(n, 0, sizes.seccomp_notif);
			if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, n) < 0) {
				if (errno == EINTR || errno == ENOENT)
					continue;
				die("SECCOMP_IOCTL_NOTIF_RECV");
			}
			answer(listener, n, resp);
		} else if (p[0].revents & (POLLHUP | POLLERR)) {
			break;
		}
	}
	int status = 0;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* Signals sent to us (by iommufs exec, or a kill) go to PROGRAM, as a shell's would. */
static void forward_signal(int sig)
{
	if (child > 0)
		kill(child, sig);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: iommufs-ns-exec MOUNT PROGRAM [ARGS...]\n");
		return 2;
	}
	mount_dir = argv[1];
	char node[PATH_MAX];
	snprintf(node, sizeof node, "%s/dev/iommu", mount_dir);
	if (stat(node, &iommu_node) < 0)
		die(node);
	note_mount_devs();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(sv[0]);
		int listener = install_filter();
		if (listener < 0)
			die("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)");
		send_fd(sv[1], listener);
		close(listener);
		close(sv[1]);
		execvp(argv[2], argv + 2);
		fprintf(stderr, "iommufs-ns-exec: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	close(sv[1]);
	struct sigaction sa = { .sa_handler = forward_signal };
	sigemptyset(&sa.sa_mask);
	const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaction(forwarded[i], &sa, NULL);
	int child_pidfd = pidfd_open(child, 0);
	int listener = recv_fd(sv[0]);
	close(sv[0]);
	int status;
	if (listener < 0 || child_pidfd < 0) {
		/* the filter never came (the child said why): only wait */
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
	} else {
		status = serve(listener, child_pidfd);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
