/*
 * Who pinned pages belong to: the process that mapped them.
 *
 *   gone:   a child maps its memory into a domain-less IOAS and exits; a
 *           domain attached afterwards must pin it from the child's mm,
 *           which is gone: EFAULT (the same while the child lives: ok);
 *   change: IOAS_CHANGE_PROCESS moves the charge of IOAS_MAP_FILE pins to the
 *           caller (a forked child), EINVAL while an IOAS_MAP area exists,
 *           EOPNOTSUPP for __reserved, ENOMEM past the caller's RLIMIT_MEMLOCK,
 *           in the user and the mm account modes (CAP_IPC_LOCK dropped);
 *   limit:  with RLIMIT_MEMLOCK at 4 pages, a map that a domain pins past it
 *           is ENOMEM, and so is a first domain over such mappings.
 *
 * argv[1] is the mount: the model's charges are read from its debug tree
 * (sys/kernel/debug/iommufd/pinned), each process named parent/child.
 * One line per check (test/integration/pins.test.ts).
 */
#include "example.h" /* first: it sets _GNU_SOURCE */
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PG 4096
#define IOVA (1ull << 24)

static const char *mnt;
static pid_t parent;

static void report(const char *name, int e)
{
	printf("%s: %s\n", name, e ? errno_name(e) : "ok");
	fflush(stdout);
}

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return do_ioctl(fd, IOMMU_TEST_CMD, c);
}

static unsigned ioas_alloc(int fd)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (do_ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		exit(1);
	return a.out_ioas_id;
}

static int mock_domain(int fd, unsigned ioas, unsigned *stdev)
{
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	int e = test_cmd(fd, &md);
	if (stdev)
		*stdev = md.mock_domain.out_stdev_id;
	return e;
}

static int map(int fd, unsigned ioas, void *p, size_t len, unsigned long long iova)
{
	struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
				    .ioas_id = ioas, .user_va = (uintptr_t)p, .length = len, .iova = iova };
	return do_ioctl(fd, IOMMU_IOAS_MAP, &m);
}

static int map_file(int fd, unsigned ioas, int mfd, size_t len, unsigned long long iova)
{
	struct iommu_ioas_map_file m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
					  .ioas_id = ioas, .fd = mfd, .start = 0, .length = len, .iova = iova };
	return do_ioctl(fd, IOMMU_IOAS_MAP_FILE, &m);
}

static int unmap(int fd, unsigned ioas, unsigned long long iova, size_t len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = len };
	return do_ioctl(fd, IOMMU_IOAS_UNMAP, &u);
}

static int change_process(int fd, unsigned reserved)
{
	struct iommu_ioas_change_process c = { .size = sizeof(c), .__reserved = reserved };
	return do_ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &c);
}

/* The debug tree's charges, one "pinned: ..." line each, with pids as parent/child. */
static void show_pinned(const char *when)
{
	char path[512], line[256];
	snprintf(path, sizeof(path), "%s/sys/kernel/debug/iommufd/pinned", mnt);
	FILE *f = fopen(path, "r");
	if (!f) {
		printf("pinned %s: cannot open\n", when);
		return;
	}
	int any = 0;
	while (fgets(line, sizeof(line), f)) {
		int pid;
		char rest[200];
		any = 1;
		if (sscanf(line, "pid %d: %199[^\n]", &pid, rest) == 2)
			printf("pinned %s: %s %s\n", when, pid == parent ? "parent" : "child", rest);
		else
			printf("pinned %s: %s", when, line);
	}
	if (!any)
		printf("pinned %s: none\n", when);
	fclose(f);
	fflush(stdout);
}

/* VmPin and VmLck as the program reads them in /proc/.../status (`by_fd`: with open() and read(), else stdio). */
static void show_status(const char *when, const char *who, const char *path, int by_fd)
{
	char text[8192] = "", *pin, *lck;
	if (by_fd) {
		int f = open(path, O_RDONLY);
		ssize_t n = f < 0 ? -1 : read(f, text, sizeof(text) - 1);
		if (f >= 0)
			close(f);
		if (n > 0)
			text[n] = 0;
	} else {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
		text[n] = 0;
		if (f)
			fclose(f);
	}
	pin = strstr(text, "VmPin:");
	lck = strstr(text, "VmLck:");
	if (!pin || !lck) {
		printf("status %s: %s: no VmPin or VmLck\n", when, who);
		return;
	}
	printf("status %s: %s VmPin %ld kB, VmLck %ld kB\n", when, who, strtol(pin + 6, NULL, 10), strtol(lck + 6, NULL, 10));
	fflush(stdout);
}

/* A child that runs `fn` and exits; the parent waits for it. */
static void in_child(void (*fn)(int, unsigned long), int fd, unsigned long arg)
{
	pid_t c = fork();
	if (c == 0) {
		fn(fd, arg);
		fflush(stdout);
		_exit(0);
	}
	waitpid(c, NULL, 0);
}

static void child_map(int fd, unsigned long ioas)
{
	uint8_t *mine = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(mine, 1, 4 * PG);
	report("gone_child_map", map(fd, (unsigned)ioas, mine, 4 * PG, IOVA));
}

static void child_change(int fd, unsigned long limit)
{
	if (limit != ~0ul) {
		struct rlimit r;
		getrlimit(RLIMIT_MEMLOCK, &r);
		r.rlim_cur = limit;
		if (setrlimit(RLIMIT_MEMLOCK, &r))
			printf("setrlimit: err %s\n", errno_name(errno));
	}
	report(limit != ~0ul ? "change_child_over_limit" : "change_child", change_process(fd, 0));
	const char *when = limit != ~0ul ? "after_refused_change" : "after_child_change";
	show_pinned(when);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", parent);
	show_status(when, "parent", path, 1);
	show_status(when, "child", "/proc/self/status", 0);
}

static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	syscall(SYS_capget, &h, d);
	d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &h, d))
		exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	mnt = argv[1];
	parent = getpid();

	/* gone: the mapping's process exits before a domain pins its pages */
	int fd = open_node("/dev/iommu");
	unsigned ioas = ioas_alloc(fd);
	in_child(child_map, fd, ioas);
	report("gone_attach_after_exit", mock_domain(fd, ioas, NULL));
	report("gone_unmap", unmap(fd, ioas, IOVA, 4 * PG));
	report("gone_attach_after_unmap", mock_domain(fd, ioas, NULL));
	/* an address nobody maps is accepted without a domain, and refused when one comes */
	unsigned ioas2 = ioas_alloc(fd);
	report("unmapped_map_no_domain", map(fd, ioas2, (void *)(2ul << 30), PG, IOVA));
	report("unmapped_attach", mock_domain(fd, ioas2, NULL));
	close(fd);

	/* change: the user account mode (no CAP_IPC_LOCK, RLIMIT_MODE 0) */
	drop_ipc_lock();
	fd = open_node("/dev/iommu");
	ioas = ioas_alloc(fd);
	report("mock_domain", mock_domain(fd, ioas, NULL));
	uint8_t *anon = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	report("map_user_pages", map(fd, ioas, anon, PG, IOVA));
	report("change_with_user_pages", change_process(fd, 0));
	report("unmap_user_pages", unmap(fd, ioas, IOVA, PG));
	int mfd = memfd_create("pins", 0);
	if (mfd < 0 || ftruncate(mfd, 4 * PG))
		return 1;
	report("map_file", map_file(fd, ioas, mfd, PG, IOVA));
	show_pinned("after_map_file");
	show_status("after_map_file", "parent", "/proc/self/status", 0);
	show_status("after_map_file", "parent", "/proc/thread-self/status", 1);
	report("change_reserved", change_process(fd, 1));
	report("change_same_process", change_process(fd, 0));
	in_child(child_change, fd, ~0ul);
	report("change_back", change_process(fd, 0));
	show_pinned("after_change_back");
	in_child(child_change, fd, 0);
	close(fd);
	show_pinned("after_close");

	/* change: the mm account mode (RLIMIT_MODE 1) */
	fd = open_node("/dev/iommu");
	struct iommu_option o = { .size = sizeof(o), .option_id = IOMMU_OPTION_RLIMIT_MODE, .op = IOMMU_OPTION_OP_SET, .val64 = 1 };
	report("rlimit_mode_mm", do_ioctl(fd, IOMMU_OPTION, &o));
	ioas = ioas_alloc(fd);
	report("mm_mock_domain", mock_domain(fd, ioas, NULL));
	report("mm_map_file", map_file(fd, ioas, mfd, 2 * PG, IOVA));
	show_pinned("mm_after_map_file");
	show_status("mm_after_map_file", "parent", "/proc/self/status", 0);
	in_child(child_change, fd, 0);
	in_child(child_change, fd, ~0ul);
	close(fd);

	/* limit: pins past RLIMIT_MEMLOCK are ENOMEM where a domain pins them (user mode, 4 pages allowed) */
	struct rlimit four = { 4 * PG, 4 * PG };
	if (setrlimit(RLIMIT_MEMLOCK, &four))
		return 1;
	fd = open_node("/dev/iommu");
	ioas = ioas_alloc(fd);
	report("limit_mock_domain", mock_domain(fd, ioas, NULL));
	uint8_t *eight = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	report("limit_map_over", map(fd, ioas, eight, 8 * PG, IOVA));
	report("limit_map_under", map(fd, ioas, eight, 3 * PG, IOVA));
	show_pinned("limit_after_map");
	report("limit_map_past_total", map(fd, ioas, eight + 4 * PG, 2 * PG, IOVA + 4 * PG));
	unsigned bare = ioas_alloc(fd);
	report("limit_map_no_domain", map(fd, bare, eight, 8 * PG, IOVA));
	report("limit_first_domain", mock_domain(fd, bare, NULL));
	close(fd);
	return 0;
}
