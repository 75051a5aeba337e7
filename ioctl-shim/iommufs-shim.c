/*
 * iommufs ioctl shim (LD_PRELOAD): unmodified programs open /dev/iommu and
 * /dev/vfio/devices/vfio<N> and issue real ioctl() calls; the shim sends each
 * one to an iommufs mount as a binary frame (docs/frames.md) and writes the
 * reply back into the program's memory where the kernel would.
 *
 *   IOMMUFS_MOUNT=/path/to/mount LD_PRELOAD=.../libiommufs-shim.so program
 *   IOMMUFS_SHIM_TRACE=1   one line per forwarded ioctl on stderr (with the server's message)
 *
 * The shim knows no struct layout: it reads the first u32 (size, or argsz for
 * VFIO), sends that many bytes, and sends the buffers the server names in a
 * RETRY frame. Every access to the caller's memory goes through
 * process_vm_readv/process_vm_writev on our own pid, so a bad pointer is
 * EFAULT, never a crash.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iommufs-shim.h"
#include "frames.h"
#include "kernel-files.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- configuration ---- */

static char mount_dir[PATH_MAX];
static int trace_on;

static void load_config(void)
{
	const char *m = getenv("IOMMUFS_MOUNT");
	const char *t = getenv("IOMMUFS_SHIM_TRACE");
	trace_on = t && *t && strcmp(t, "0") != 0;
	if (!m || !*m)
		return;
	size_t n = strlen(m);
	while (n > 1 && m[n - 1] == '/')
		n--;
	if (n >= sizeof mount_dir)
		return;
	memcpy(mount_dir, m, n);
	mount_dir[n] = 0;
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
	if (!trace_on)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	ssize_t w = write(2, line, (size_t)n);
	(void)w;
}

/* ---- the real libc functions ---- */

static struct {
	int (*open)(const char *, int, ...);
	int (*open64)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*openat64)(int, const char *, int, ...);
	int (*open_2)(const char *, int);
	int (*open64_2)(const char *, int);
	int (*openat_2)(int, const char *, int);
	int (*openat64_2)(int, const char *, int);
	int (*ioctl)(int, unsigned long, ...);
	int (*close)(int);
	int (*close_range)(unsigned int, unsigned int, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	DIR *(*opendir)(const char *);
	FILE *(*fopen)(const char *, const char *);
	FILE *(*fopen64)(const char *, const char *);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	void *(*mmap64)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
} real;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static void resolve(void)
{
	real.open = next("open");
	real.open64 = next("open64");
	real.openat = next("openat");
	real.openat64 = next("openat64");
	real.open_2 = next("__open_2");
	real.open64_2 = next("__open64_2");
	real.openat_2 = next("__openat_2");
	real.openat64_2 = next("__openat64_2");
	real.ioctl = next("ioctl");
	real.close = next("close");
	real.close_range = next("close_range");
	real.dup = next("dup");
	real.dup2 = next("dup2");
	real.dup3 = next("dup3");
	real.fcntl = next("fcntl");
	real.fcntl64 = next("fcntl64");
	real.opendir = next("opendir");
	real.fopen = next("fopen");
	real.fopen64 = next("fopen64");
	real.mmap = next("mmap");
	real.mmap64 = next("mmap64");
	real.munmap = next("munmap");
	real.read = next("read");
	real.read_chk = next("__read_chk");
	/* older libcs lack some variants: fall back to the plain call */
	if (!real.open64)
		real.open64 = real.open;
	if (!real.openat64)
		real.openat64 = real.openat;
	if (!real.fcntl64)
		real.fcntl64 = real.fcntl;
	if (!real.mmap64)
		real.mmap64 = real.mmap;
	if (!real.fopen64)
		real.fopen64 = real.fopen;
	load_config();
}

#define RESOLVE() pthread_once(&resolved, resolve)

/* ---- descriptor bookkeeping: which fds are ours, and each iommufd's context ID ---- */

enum fd_kind { FD_NONE = 0, FD_IOMMU = 1, FD_VFIO = 2, FD_ACCESS = 3, FD_QUEUE = 4 };

/*
 * FD_ACCESS: a descriptor the server asked for (the selftest's access file);
 * FD_QUEUE: an event queue's file (a fault queue or a vEVENTQ). ctx holds its
 * handle and owner the iommufd it was made on, where closing it is reported.
 */
struct slot {
	uint8_t kind;
	uint8_t ctx_known;
	/* another process may hold the open file too (inherited, or we forked): its close is not ours to make final */
	uint8_t shared;
	uint32_t ctx;
	/* which open() of ours this descriptor refers to (dups share it); 0 when inherited */
	uint32_t open_id;
	int owner;
	/* an iommufd the program has closed, kept by the shim while its queues and accesses are open */
	uint8_t kept;
};

static uint32_t next_open_id;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;
static size_t nslots;
/* Access descriptors made so far (only then do iommufd ioctls carry FD entries for them). */
static unsigned n_access;

static struct slot slot_get(int fd)
{
	struct slot s = { 0 };
	if (fd < 0)
		return s;
	pthread_mutex_lock(&table_lock);
	if ((size_t)fd < nslots)
		s = slots[fd];
	pthread_mutex_unlock(&table_lock);
	return s;
}

/* Caller holds table_lock. */
static int slot_reserve(int fd)
{
	if ((size_t)fd < nslots)
		return 0;
	size_t n = nslots ? nslots : 64;
	while (n <= (size_t)fd)
		n *= 2;
	struct slot *p = realloc(slots, n * sizeof *p);
	if (!p)
		return -1;
	memset(p + nslots, 0, (n - nslots) * sizeof *p);
	slots = p;
	nslots = n;
	return 0;
}

static void slot_set(int fd, struct slot s)
{
	if (fd < 0)
		return;
	pthread_mutex_lock(&table_lock);
	if (s.kind == FD_NONE) {
		if ((size_t)fd < nslots)
			slots[fd] = s;
	} else if (slot_reserve(fd) == 0) {
		slots[fd] = s;
	}
	pthread_mutex_unlock(&table_lock);
}

static void slot_clear(int fd)
{
	struct slot none = { 0 };
	slot_set(fd, none);
}

/* After dup-like calls: `to` now refers to what `from` does. */
static void slot_copy(int from, int to)
{
	slot_set(to, slot_get(from));
}

/* ---- the caller's memory ---- */

/*
 * A sandbox (seccomp) may forbid process_vm_readv/writev even on our own pid:
 * then every ioctl would look like a bad pointer, so say why, once.
 */
static void check_vm_errno(const char *call)
{
	static int warned;
	if ((errno == ENOSYS || errno == EPERM) && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED)) {
		char line[160];
		int n = snprintf(line, sizeof line, "iommufs-shim: %s: %s; ioctls on iommufs nodes will fail with EFAULT\n", call, errname(errno));
		if (n > 0) {
			ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
			(void)w;
		}
	}
}

/* Bytes read at addr (may be short at an unmapped page), or -1. */
static ssize_t mem_read(uint64_t addr, void *dst, size_t len)
{
	if (len == 0)
		return 0;
	struct iovec local = { dst, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	if (n < 0)
		check_vm_errno("process_vm_readv");
	return n;
}

static int mem_write(uint64_t addr, const void *src, size_t len)
{
	if (len == 0)
		return 0;
	struct iovec local = { (void *)src, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	if (n < 0)
		check_vm_errno("process_vm_writev");
	return n == (ssize_t)len ? 0 : -1;
}

/* ---- transactions ---- */

static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The text request CONTEXT on an iommufd answers "ok id=<N> path=...".
 * Caller holds io_lock. On failure, `why` (if given) says what went wrong.
 */
static int query_context(int fd, uint32_t *id, char *why, size_t why_len)
{
	static const char req[] = "CONTEXT\n";
	char buf[256];
	if (write_all(fd, (const uint8_t *)req, sizeof req - 1) < 0) {
		if (why)
			snprintf(why, why_len, "writing CONTEXT: %s", errname(errno));
		return -1;
	}
	ssize_t n;
	do
		n = pread(fd, buf, sizeof buf - 1, (off_t)(sizeof req - 1));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (why)
			snprintf(why, why_len, "reading the CONTEXT reply: %s", errname(errno));
		return -1;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	char *end = buf;
	unsigned long v = strncmp(buf, "ok id=", 6) == 0 ? strtoul(buf + 6, &end, 10) : 0;
	if (end == buf || end == buf + 6 || v == 0 || v > UINT32_MAX) {
		if (why)
			snprintf(why, why_len, "CONTEXT answered \"%.200s\"", buf);
		errno = EPROTO;
		return -1;
	}
	*id = (uint32_t)v;
	return 0;
}

/* Adds an FD entry for every iommufd the program has open (for VFIO_DEVICE_BIND_IOMMUFD). Caller holds io_lock. */
static int add_iommufds(struct request *r)
{
	pthread_mutex_lock(&table_lock);
	size_t n = nslots;
	struct slot *copy = n ? malloc(n * sizeof *copy) : NULL;
	if (copy)
		memcpy(copy, slots, n * sizeof *copy);
	pthread_mutex_unlock(&table_lock);
	if (n && !copy)
		return -1;
	for (size_t fd = 0; fd < n; fd++) {
		if (copy[fd].kind != FD_IOMMU)
			continue;
		if (!copy[fd].ctx_known) {
			/* inherited across exec: ask once */
			if (query_context((int)fd, &copy[fd].ctx, NULL, 0) < 0)
				continue;
			copy[fd].ctx_known = 1;
			slot_set((int)fd, copy[fd]);
		}
		uint8_t *d = malloc(4);
		if (!d)
			break;
		memcpy(d, &copy[fd].ctx, 4);
		struct entry e = { .addr = fd, .len = 4, .flags = IOMF_BUF_FD, .data = d };
		if (add_entry(r, e) < 0) {
			free(d);
			break;
		}
	}
	free(copy);
	return 0;
}

/* Adds an FD entry (fd -> handle) for every access descriptor made on an iommufd of context `ctx`. Caller holds io_lock. */
static int add_access_fds(struct request *r, uint32_t ctx)
{
	int rc = 0;
	pthread_mutex_lock(&table_lock);
	for (size_t fd = 0; fd < nslots && rc == 0; fd++) {
		if (slots[fd].kind != FD_ACCESS)
			continue;
		int o = slots[fd].owner;
		if (o < 0 || (size_t)o >= nslots || slots[o].kind != FD_IOMMU || slots[o].ctx != ctx)
			continue;
		uint8_t *d = malloc(4);
		if (!d) {
			rc = -1;
			break;
		}
		memcpy(d, &slots[fd].ctx, 4);
		struct entry e = { .addr = fd, .len = 4, .flags = IOMF_BUF_FD, .data = d };
		if (add_entry(r, e) < 0) {
			free(d);
			rc = -1;
		}
	}
	pthread_mutex_unlock(&table_lock);
	return rc;
}

/* mem_read for transact(): the caller is this process. */
static ssize_t own_read(void *who, uint64_t addr, void *dst, size_t len)
{
	(void)who;
	return mem_read(addr, dst, len);
}

/* mem_write for apply_reply(): the caller is this process. */
static int own_write(void *who, uint64_t addr, const void *src, size_t len)
{
	(void)who;
	return mem_write(addr, src, len);
}

/*
 * A descriptor the kernel would install, for the iommufd `*who`: a path is a
 * file of the mount (an event queue) that serves its read and write; none, a
 * placeholder (/dev/null) the server knows by handle (an access). One that is
 * the return value (a DMA-BUF) is kept in no table.
 */
static int shim_install(void *who, uint32_t handle, const char *path, uint32_t plen, int retval)
{
	int owner = *(const int *)who;
	char file[PATH_MAX];
	int rc = handed_file(mount_dir, path, plen, file, sizeof file);
	if (rc < 0)
		return rc;
	int nfd = real.open(file, O_RDWR | O_CLOEXEC);
	if (nfd < 0)
		return -errno;
	if (retval) {
		trace("iommufs-shim: fd %d = %s", nfd, file);
		return nfd;
	}
	if (!plen) {
		slot_set(nfd, (struct slot){ .kind = FD_ACCESS, .ctx = handle, .owner = owner });
		__atomic_add_fetch(&n_access, 1, __ATOMIC_RELAXED);
	} else {
		slot_set(nfd, (struct slot){ .kind = FD_QUEUE, .ctx = handle, .owner = owner });
	}
	trace("iommufs-shim: fd %d = %s %u of fd %d", nfd, plen ? "queue" : "access", handle, owner);
	return nfd;
}

static int forward_ioctl(int fd, struct slot s, uint32_t cmd, void *arg)
{
	uint64_t addr = (uintptr_t)arg;
	struct request r = { .cmd = cmd };
	if (read_struct(&r, own_read, NULL, addr) < 0)
		return -1;
	/*
	 * Probed for writing before the server acts, as it probes a real ioctl's:
	 * READONLY tells it the struct cannot be written back, which it answers
	 * with EFAULT and nothing made or undone (IOAS_ALLOC leaves no ID behind)
	 * where the kernel would make, fail to copy out, and undo; a struct the
	 * kernel only reads (IOMMU_DESTROY's) works from read-only memory.
	 */
	uint32_t probe = r.st_len < IOMF_MAX_WRITTEN_BACK ? r.st_len : IOMF_MAX_WRITTEN_BACK;
	uint32_t readonly = probe && mem_write(addr, r.st, probe) < 0 ? IOMF_BUF_READONLY : 0;
	uint8_t *f = NULL;
	struct reply rep = { 0 };
	int err = 0;

	/*
	 * The raw argument: the struct's address, or the integer VFIO_CHECK_EXTENSION
	 * and friends take. OWN: the addresses and fd numbers are this process's, so
	 * the server pins IOAS_MAP's pages and opens MAP_FILE's fd in it, as the kernel
	 * does in the caller (FUSE tells the server who wrote the frame).
	 */
	struct entry argent = { .addr = addr, .len = 0, .flags = IOMF_BUF_ARG | IOMF_BUF_OWN | readonly, .data = NULL };
	if (add_entry(&r, argent) < 0) {
		free((void *)r.st);
		return errno = ENOMEM, -1;
	}

	pthread_mutex_lock(&io_lock);
	if (s.kind == FD_VFIO)
		add_iommufds(&r);
	else if (s.kind == FD_IOMMU && n_access)
		add_access_fds(&r, s.ctx);
	f = transact(fd, &r, own_read, NULL, &rep);
	if (!f)
		err = errno;
	pthread_mutex_unlock(&io_lock);

	int64_t retval = 0;
	if (!err) {
		struct reply_sink sink = { .who = &fd, .write = own_write, .install = shim_install };
		err = apply_reply(&rep, addr, &sink, &retval);
		trace("iommufs-shim: ioctl(%d, 0x%x) = %s%s%.*s", fd, cmd, err ? errname(err) : "0", rep.h.msg_len ? ": " : "",
		      (int)rep.h.msg_len, rep.msg);
	} else {
		trace("iommufs-shim: ioctl(%d, 0x%x): transport error %s", fd, cmd, errname(err));
	}
	free(rep.b);
	free(f);
	free_request(&r);
	free((void *)r.st);
	if (err) {
		errno = err;
		return -1;
	}
	return (int)retval;
}

/*
 * Commands the kernel's VFS handles itself before any driver sees them
 * (fs/ioctl.c do_vfs_ioctl): they act on the descriptor, so they go to the
 * real ioctl on the mount's file.
 */
static int vfs_generic(unsigned long req)
{
	switch (req) {
	case FIOCLEX:
	case FIONCLEX:
	case FIONBIO:
	case FIOASYNC:
	case FIOQSIZE:
		return 1;
	}
	return 0;
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	RESOLVE();
	struct slot s = slot_get(fd);
	if (s.kind == FD_NONE || vfs_generic(req))
		return real.ioctl(fd, req, arg);
	return forward_ioctl(fd, s, (uint32_t)req, arg);
}

/* ---- mmap of an iommufd (a vIOMMU's region) ---- */

/*
 * The kernel maps a driver's pages into the caller at an offset the driver
 * handed out. The shim makes a shared anonymous mapping, asks the server to
 * check offset, length and flags as the kernel does (IOMMUFS_MMAP) and to
 * write the region's bytes into it, and reports the munmap (IOMMUFS_MUNMAP),
 * so that the region's owner cannot be destroyed while it is mapped (EBUSY).
 * The mapping shows the region as it was when mapped.
 */
#define IOMMUFS_MMAP_CMD ((0x3bu << 8) | 0xc3u)
#define IOMMUFS_MUNMAP_CMD ((0x3bu << 8) | 0xc4u)
#define IOMMUFS_MMAP_SHARED 1u
#define IOMMUFS_MMAP_EXEC 2u

struct mmap_req {
	uint32_t size;
	uint32_t flags;
	uint64_t offset;
	uint64_t length;
	uint64_t addr;
};

struct munmap_req {
	uint32_t size;
	uint32_t reserved;
	uint64_t offset;
};

struct region_map {
	uintptr_t addr;
	size_t len;
	int fd;
	uint64_t offset;
};

#define MAX_REGION_MAPS 64
static struct region_map region_maps[MAX_REGION_MAPS];
static unsigned n_region_maps;

static void *iommufd_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, struct slot s)
{
	long pg = sysconf(_SC_PAGESIZE);
	if (len == 0 || off < 0 || (off & (pg - 1))) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	size_t plen = (len + (size_t)pg - 1) & ~((size_t)pg - 1);
	int keep = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
	void *m = real.mmap(addr, plen, PROT_READ | PROT_WRITE, keep | MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return m;
	struct mmap_req r = {
		.size = sizeof r,
		.flags = ((flags & MAP_TYPE) != MAP_PRIVATE ? IOMMUFS_MMAP_SHARED : 0) | (prot & PROT_EXEC ? IOMMUFS_MMAP_EXEC : 0),
		.offset = (uint64_t)off,
		.length = plen,
		.addr = (uintptr_t)m,
	};
	if (forward_ioctl(fd, s, IOMMUFS_MMAP_CMD, &r) < 0) {
		int e = errno;
		real.munmap(m, plen);
		errno = e;
		return MAP_FAILED;
	}
	if (prot != (PROT_READ | PROT_WRITE))
		mprotect(m, plen, prot);
	pthread_mutex_lock(&table_lock);
	if (n_region_maps < MAX_REGION_MAPS)
		region_maps[n_region_maps++] = (struct region_map){ (uintptr_t)m, plen, fd, (uint64_t)off };
	pthread_mutex_unlock(&table_lock);
	trace("iommufs-shim: mmap(fd %d, offset 0x%llx, 0x%zx) = %p", fd, (unsigned long long)off, plen, m);
	return m;
}

/* A read of 0 bytes on an event queue's descriptor: the kernel's answer, 0 or -1 with errno (FUSE sends the server none); 1 for any other. */
static int read_nothing(int fd, size_t count)
{
	if (count || slot_get(fd).kind != FD_QUEUE)
		return 1;
	int r = queue_read_nothing(fd);
	if (r >= 0)
		return r;
	errno = -r;
	return -1;
}

EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	RESOLVE();
	int r = read_nothing(fd, count);
	return r <= 0 ? r : real.read(fd, buf, count);
}

/* what read() becomes under _FORTIFY_SOURCE when the buffer's size is known */
EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	RESOLVE();
	int r = read_nothing(fd, count);
	if (r <= 0)
		return r;
	return real.read_chk ? real.read_chk(fd, buf, count, buflen) : real.read(fd, buf, count);
}

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static void *mmap_any(mmap_fn fn, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct slot s = slot_get(fd);
	/* a VFIO device's or a queue's node is not mapped shared (its regions are not modelled): ENODEV, as FUSE answered before the mount allowed it for dev/iommu */
	if ((s.kind == FD_VFIO || s.kind == FD_QUEUE) && (flags & MAP_TYPE) != MAP_PRIVATE) {
		errno = ENODEV;
		return MAP_FAILED;
	}
	if (s.kind != FD_IOMMU)
		return fn(addr, len, prot, flags, fd, off);
	return iommufd_mmap(addr, len, prot, flags, fd, off, s);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	RESOLVE();
	return mmap_any(real.mmap, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	RESOLVE();
	return mmap_any(real.mmap64, addr, len, prot, flags, fd, off);
}

/* A region mapping wholly inside [addr, addr + len) is gone: tell its iommufd, if still open. */
EXPORT int munmap(void *addr, size_t len)
{
	RESOLVE();
	struct region_map gone[MAX_REGION_MAPS];
	unsigned ngone = 0;
	uintptr_t a = (uintptr_t)addr;
	pthread_mutex_lock(&table_lock);
	for (unsigned i = 0; i < n_region_maps;) {
		struct region_map *r = &region_maps[i];
		if (r->addr >= a && r->addr + r->len <= a + len) {
			gone[ngone++] = *r;
			region_maps[i] = region_maps[--n_region_maps];
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&table_lock);
	int rc = real.munmap(addr, len);
	int saved = errno;
	for (unsigned i = 0; i < ngone; i++) {
		struct slot s = slot_get(gone[i].fd);
		if (s.kind != FD_IOMMU)
			continue;
		struct munmap_req r = { .size = sizeof r, .offset = gone[i].offset };
		forward_ioctl(gone[i].fd, s, IOMMUFS_MUNMAP_CMD, &r);
	}
	errno = saved;
	return rc;
}

/* ---- opens ---- */

/* The mount's node for path, if path is /dev/iommu or /dev/vfio/devices/vfio<N>. */
static int redirect(const char *path, char *out, size_t cap, int *kind)
{
	static const char vfio[] = "/dev/vfio/devices/vfio";
	if (!path || !mount_dir[0])
		return 0;
	if (strcmp(path, "/dev/iommu") == 0) {
		*kind = FD_IOMMU;
	} else if (strncmp(path, vfio, sizeof vfio - 1) == 0) {
		const char *d = path + sizeof vfio - 1;
		if (!*d)
			return 0;
		for (const char *c = d; *c; c++)
			if (!isdigit((unsigned char)*c))
				return 0;
		*kind = FD_VFIO;
	} else {
		return 0;
	}
	int n = snprintf(out, cap, "%s%s", mount_dir, path);
	return n > 0 && (size_t)n < cap;
}

/* Whether `s` starts with one or more digits and then `end`; the rest after `end`. */
/* The mount's stand-in for `path` as this process and thread would name it (kernel-files.c). */
static int debug_path(const char *path, char *out, size_t cap)
{
	return path && mount_dir[0] && kernel_file_path(mount_dir, path, getpid(), gettid(), out, cap);
}

EXPORT DIR *opendir(const char *name)
{
	RESOLVE();
	char p[PATH_MAX];
	return real.opendir(debug_path(name, p, sizeof p) ? p : name);
}

/* stdio's opens do not go through open(): the same kernel files, for fopen. */
EXPORT FILE *fopen(const char *path, const char *mode)
{
	RESOLVE();
	char p[PATH_MAX];
	return real.fopen(debug_path(path, p, sizeof p) ? p : path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	RESOLVE();
	char p[PATH_MAX];
	return real.fopen64(debug_path(path, p, sizeof p) ? p : path, mode);
}

/*
 * The nodes are transaction files: always read-write (as a real /dev/iommu
 * is opened), never appending or truncating, whatever the program asked.
 */
static int node_flags(int flags)
{
	return (flags & ~(O_ACCMODE | O_APPEND | O_TRUNC | O_CREAT | O_EXCL | O_DIRECTORY)) | O_RDWR;
}

/* Records a redirected open of `node`; an iommufd learns its context ID. */
static int opened(int fd, int kind, const char *node)
{
	if (fd < 0)
		return fd;
	struct slot s = { .kind = (uint8_t)kind };
	pthread_mutex_lock(&table_lock);
	s.open_id = ++next_open_id ? next_open_id : ++next_open_id;
	pthread_mutex_unlock(&table_lock);
	if (kind == FD_IOMMU) {
		char why[320];
		pthread_mutex_lock(&io_lock);
		int rc = query_context(fd, &s.ctx, why, sizeof why);
		pthread_mutex_unlock(&io_lock);
		if (rc < 0) {
			/* not an iommufd we can use: say why (always), and fail the open */
			char line[PATH_MAX + 400];
			int n = snprintf(line, sizeof line, "iommufs-shim: %s: no iommufd context: %s\n", node, why);
			if (n > 0) {
				ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
				(void)w;
			}
			real.close(fd);
			errno = EIO;
			return -1;
		}
		s.ctx_known = 1;
	}
	slot_set(fd, s);
	if (kind == FD_IOMMU)
		trace("iommufs-shim: fd %d = %s (iommufd context %u)", fd, node, s.ctx);
	else
		trace("iommufs-shim: fd %d = %s", fd, node);
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.open(p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.open(p, flags, mode);
	return real.open(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.open64(p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.open64(p, flags, mode);
	return real.open64(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.openat(dirfd, p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.openat(dirfd, p, flags, mode);
	return real.openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.openat64(dirfd, p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.openat64(dirfd, p, flags, mode);
	return real.openat64(dirfd, path, flags, mode);
}

/* The fortified variants (-D_FORTIFY_SOURCE) take no mode. */
EXPORT int __open_2(const char *path, int flags)
{
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.open(p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.open_2(p, flags);
	return real.open_2(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.open64(p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.open64_2(p, flags);
	return real.open64_2(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.openat(dirfd, p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.openat_2(dirfd, p, flags);
	return real.openat_2(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	RESOLVE();
	char p[PATH_MAX];
	int kind;
	if (redirect(path, p, sizeof p, &kind))
		return opened(real.openat64(dirfd, p, node_flags(flags)), kind, p);
	if (debug_path(path, p, sizeof p))
		return real.openat64_2(dirfd, p, flags);
	return real.openat64_2(dirfd, path, flags);
}

/* ---- descriptors: close and the dup family keep the table right ---- */

/*
 * The kernel destroys an iommufd context (and unbinds a VFIO cdev) before the
 * last close() returns, but FUSE delivers the close to the server after
 * close() has returned. So when fd is the last descriptor of its open file,
 * the shim asks the server to release it first (the text request RELEASE)
 * and waits for the answer: the effect is complete when close() returns.
 * Not for a file another process may hold (inherited, or shared by fork):
 * there the last close is not known, as it is not to the kernel's caller.
 */
static int is_last_descriptor(int fd, struct slot s)
{
	if (s.kind == FD_NONE || s.shared || !s.open_id)
		return 0;
	int last = 1;
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < nslots && last; i++)
		if ((int)i != fd && slots[i].kind != FD_NONE && slots[i].open_id == s.open_id)
			last = 0;
	pthread_mutex_unlock(&table_lock);
	return last;
}

static void release_now(int fd)
{
	static const char req[] = "RELEASE\n";
	char buf[256];
	pthread_mutex_lock(&io_lock);
	if (write_all(fd, (const uint8_t *)req, sizeof req - 1) == 0) {
		ssize_t n;
		do
			n = pread(fd, buf, sizeof buf - 1, (off_t)(sizeof req - 1));
		while (n < 0 && errno == EINTR);
		if (n >= 0) {
			buf[n] = 0;
			buf[strcspn(buf, "\n")] = 0;
			trace("iommufs-shim: close(%d): RELEASE -> %s", fd, buf);
		}
	}
	pthread_mutex_unlock(&io_lock);
}

/* Releases fd first when this close is its open file's last; errno is kept. */
static void before_last_close(int fd)
{
	if (!is_last_descriptor(fd, slot_get(fd)))
		return;
	int saved = errno;
	release_now(fd);
	errno = saved;
}

/* Whether an access or queue descriptor still names `owner` as the iommufd it was made on. Caller holds table_lock. */
static int owner_in_use(int owner)
{
	for (size_t i = 0; i < nslots; i++)
		if ((slots[i].kind == FD_ACCESS || slots[i].kind == FD_QUEUE) && slots[i].owner == owner)
			return 1;
	return 0;
}

/*
 * The kernel's queue and access files hold their iommufd context: closing the
 * iommufd's last descriptor while one is open destroys nothing. So the shim
 * keeps that iommufd open on a descriptor of its own (above the program's,
 * close-on-exec), the queues' requests go there, and the context is released
 * when the last of them closes (drop_kept_owner), before that close() returns.
 */
static void keep_owner_for_queues(int fd)
{
	struct slot s = slot_get(fd);
	if (s.kind != FD_IOMMU || s.kept || !is_last_descriptor(fd, s))
		return;
	pthread_mutex_lock(&table_lock);
	int used = owner_in_use(fd);
	pthread_mutex_unlock(&table_lock);
	if (!used)
		return;
	int saved = errno;
	int kept = real.fcntl(fd, F_DUPFD_CLOEXEC, 1024);
	if (kept < 0) {
		errno = saved;
		return;
	}
	s.kept = 1;
	slot_set(kept, s);
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < nslots; i++)
		if ((slots[i].kind == FD_ACCESS || slots[i].kind == FD_QUEUE) && slots[i].owner == fd)
			slots[i].owner = kept;
	pthread_mutex_unlock(&table_lock);
	trace("iommufs-shim: close(%d): its queues or accesses are open; the context stays (kept on fd %d)", fd, kept);
	errno = saved;
}

/* A kept iommufd whose last queue or access closed: release the context now, as the kernel does at that close. */
static void drop_kept_owner(int owner)
{
	struct slot o = slot_get(owner);
	if (o.kind != FD_IOMMU || !o.kept)
		return;
	pthread_mutex_lock(&table_lock);
	int used = owner_in_use(owner);
	pthread_mutex_unlock(&table_lock);
	if (used)
		return;
	release_now(owner);
	slot_clear(owner);
	real.close(owner);
}

/*
 * The last descriptor of an access or an event queue closed: the kernel
 * releases that file (an access's pins go; a queue's object may be destroyed
 * again) before close() returns, so tell the server at once, on the iommufd
 * it was made on.
 */
static void server_fd_closed(struct slot s)
{
	pthread_mutex_lock(&table_lock);
	int others = 0, owner_ok = 0;
	for (size_t i = 0; i < nslots; i++)
		if (slots[i].kind == s.kind && slots[i].ctx == s.ctx && slots[i].owner == s.owner)
			others = 1;
	if (s.owner >= 0 && (size_t)s.owner < nslots && slots[s.owner].kind == FD_IOMMU)
		owner_ok = 1;
	pthread_mutex_unlock(&table_lock);
	if (others || !owner_ok)
		return;
	char req[64], buf[256];
	int n = snprintf(req, sizeof req, "%s handle=%u\n", s.kind == FD_ACCESS ? "ACCESS_CLOSE" : "QUEUE_CLOSE", s.ctx);
	pthread_mutex_lock(&io_lock);
	if (n > 0 && write_all(s.owner, (const uint8_t *)req, (size_t)n) == 0) {
		ssize_t r;
		do
			r = pread(s.owner, buf, sizeof buf - 1, n);
		while (r < 0 && errno == EINTR);
	}
	pthread_mutex_unlock(&io_lock);
	trace("iommufs-shim: %s %u of fd %d closed", s.kind == FD_ACCESS ? "access" : "queue", s.ctx, s.owner);
	drop_kept_owner(s.owner);
}

EXPORT int close(int fd)
{
	RESOLVE();
	keep_owner_for_queues(fd);
	before_last_close(fd);
	struct slot s = slot_get(fd);
	/* forget first: once closed, another thread's open may get this number */
	slot_clear(fd);
	int rc = real.close(fd);
	if ((s.kind == FD_ACCESS || s.kind == FD_QUEUE) && rc == 0) {
		int saved = errno;
		server_fd_closed(s);
		errno = saved;
	}
	return rc;
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	RESOLVE();
	if (!real.close_range) {
		errno = ENOSYS;
		return -1;
	}
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		pthread_mutex_lock(&table_lock);
		size_t n = nslots;
		pthread_mutex_unlock(&table_lock);
		/* release one at a time, forgetting each: the next one's "last" then counts only what stays open */
		for (size_t fd = first; fd < n && fd <= last; fd++) {
			before_last_close((int)fd);
			slot_clear((int)fd);
		}
	}
	int rc = real.close_range(first, last, flags);
	if (rc == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) {
		pthread_mutex_lock(&table_lock);
		for (size_t fd = first; fd < nslots && fd <= last; fd++)
			memset(&slots[fd], 0, sizeof slots[fd]);
		pthread_mutex_unlock(&table_lock);
	}
	return rc;
}

EXPORT int dup(int fd)
{
	RESOLVE();
	int r = real.dup(fd);
	if (r >= 0)
		slot_copy(fd, r);
	return r;
}

EXPORT int dup2(int fd, int to)
{
	RESOLVE();
	if (fd != to && real.fcntl(fd, F_GETFD) >= 0)
		before_last_close(to);
	int r = real.dup2(fd, to);
	if (r >= 0 && fd != to)
		slot_copy(fd, r);
	return r;
}

EXPORT int dup3(int fd, int to, int flags)
{
	RESOLVE();
	if (fd != to && real.fcntl(fd, F_GETFD) >= 0)
		before_last_close(to);
	int r = real.dup3(fd, to, flags);
	if (r >= 0)
		slot_copy(fd, r);
	return r;
}

static int fcntl_common(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
	int r = fn(fd, cmd, arg);
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		slot_copy(fd, r);
	return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	RESOLVE();
	return fcntl_common(real.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	RESOLVE();
	return fcntl_common(real.fcntl64, fd, cmd, arg);
}

/* ---- start-up ---- */

/*
 * Descriptors inherited across exec (a shell's `exec 3<>/dev/iommu`, a
 * parent that passed its iommufd) are recognised by where they point; an
 * iommufd's context ID is asked for when it is first needed.
 */
static void adopt_inherited(void)
{
	char root[PATH_MAX];
	if (!mount_dir[0] || !realpath(mount_dir, root))
		return;
	char iommu[PATH_MAX + 16], vfio[PATH_MAX + 32];
	snprintf(iommu, sizeof iommu, "%s/dev/iommu", root);
	snprintf(vfio, sizeof vfio, "%s/dev/vfio/devices/vfio", root);
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		if (*end || end == de->d_name || fd == self)
			continue;
		char link[64], target[PATH_MAX];
		snprintf(link, sizeof link, "/proc/self/fd/%ld", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		struct slot s = { 0 };
		if (strcmp(target, iommu) == 0)
			s.kind = FD_IOMMU;
		else if (strncmp(target, vfio, strlen(vfio)) == 0)
			s.kind = FD_VFIO;
		if (s.kind)
			slot_set((int)fd, s);
	}
	closedir(d);
}

/* A fork while another thread is mid-transaction must not inherit a held lock. */
static void before_fork(void)
{
	pthread_mutex_lock(&io_lock);
	pthread_mutex_lock(&table_lock);
}

static void after_fork(void)
{
	pthread_mutex_unlock(&table_lock);
	pthread_mutex_unlock(&io_lock);
}

/* Parent and child now hold every open file alike: neither's close is known to be the last. */
static void after_fork_shared(void)
{
	for (size_t fd = 0; fd < nslots; fd++)
		slots[fd].shared = 1;
	after_fork();
}

/* A normal exit closes every descriptor: release ours first, so a parent's wait sees the effect. */
__attribute__((destructor)) static void shim_fini(void)
{
	pthread_mutex_lock(&table_lock);
	size_t n = nslots;
	pthread_mutex_unlock(&table_lock);
	for (size_t fd = 0; fd < n; fd++) {
		before_last_close((int)fd);
		slot_clear((int)fd);
	}
}

__attribute__((constructor)) static void shim_init(void)
{
	RESOLVE();
	adopt_inherited();
	pthread_atfork(before_fork, after_fork_shared, after_fork_shared);
}
