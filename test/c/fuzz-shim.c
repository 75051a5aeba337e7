/*
 * Random ioctl()s through the shim, from a seed: known and unknown command
 * numbers on an iommufd and a VFIO device file, with random structs (random
 * size fields, pointers into a scratch buffer, to nowhere, or NULL), garbage
 * argument pointers and read-only memory. After every failed call the
 * context's debug files (objects, graph.dot) must be unchanged, and every
 * call must return 0 or -1 with an errno. Run under iommufs exec:
 *
 *   fuzz-shim SEED COUNT SECONDS      prints "inputs N" at the end, exits 1 on a failure
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t state;

static uint64_t next(void)
{
	uint64_t z = (state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rnd(unsigned n)
{
	return (unsigned)(next() % n);
}

static char ctx_dir[4400];

/* objects and graph.dot of our context, concatenated, in a malloc'd string */
static char *view(void)
{
	static const char *files[] = { "objects", "graph.dot" };
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	for (int i = 0; i < 2; i++) {
		char p[4500];
		snprintf(p, sizeof p, "%s/%s", ctx_dir, files[i]);
		int fd = open(p, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n;
		while ((n = read(fd, out + len, cap - len - 1)) > 0) {
			len += (size_t)n;
			if (cap - len < 4096)
				out = realloc(out, cap *= 2);
		}
		close(fd);
	}
	out[len] = 0;
	return out;
}

static void find_ctx(const char *mnt)
{
	char d[4096];
	snprintf(d, sizeof d, "%s/sys/kernel/debug/iommufd", mnt);
	DIR *dir = opendir(d);
	struct dirent *e;
	while (dir && (e = readdir(dir)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
			snprintf(ctx_dir, sizeof ctx_dir, "%s/%s", d, e->d_name);
	if (dir)
		closedir(dir);
}

static const unsigned long CMDS[] = { 0x3b80, 0x3b81, 0x3b82, 0x3b83, 0x3b84, 0x3b85, 0x3b86, 0x3b87, 0x3b88, 0x3b89, 0x3b8a,
				      0x3b8b, 0x3b8c, 0x3b8d, 0x3b8e, 0x3b8f, 0x3b90, 0x3b91, 0x3b92, 0x3b93, 0x3b94, 0x3b6b,
				      0x3b76, 0x3b77, 0x3b78, 0x3bc0, 0x3bc1, 0x3b7f, 0x3b95, 0x1234 };

int main(int argc, char **argv)
{
	if (argc < 4)
		return fprintf(stderr, "usage: fuzz-shim SEED COUNT SECONDS\n"), 2;
	state = strtoull(argv[1], NULL, 0) * 0x2545f4914f6cdd1dull + 1;
	long count = atol(argv[2]);
	time_t end = time(NULL) + atol(argv[3]);
	const char *mnt = getenv("IOMMUFS_MOUNT");
	if (!mnt)
		return fprintf(stderr, "IOMMUFS_MOUNT is not set (run under iommufs exec)\n"), 2;

	int fd = open("/dev/iommu", O_RDWR);
	int dev = open("/dev/vfio/devices/vfio0", O_RDWR);
	if (fd < 0 || dev < 0)
		return fprintf(stderr, "open: %s\n", strerror(errno)), 1;
	find_ctx(mnt);
	if (!ctx_dir[0])
		return fprintf(stderr, "no context directory\n"), 1;

	static uint8_t scratch[1 << 16] __attribute__((aligned(8)));
	uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *before = view();
	long n = 0;
	for (; n < count && (n % 64 || time(NULL) < end); n++) {
		unsigned long cmd = CMDS[rnd(sizeof CMDS / sizeof CMDS[0])];
		int target = rnd(4) ? fd : dev;
		uint8_t *arg;
		switch (rnd(10)) {
		case 0:
			arg = NULL;
			break;
		case 1:
			arg = (uint8_t *)(uintptr_t)(0x10000ull + rnd(1 << 20) * 8ull);
			break;
		case 2:
			arg = ro;
			break;
		default: {
			unsigned size = rnd(8) ? 8 + rnd(64) : rnd(1 << 12);
			uint8_t *s = scratch + 8 * rnd(1024);
			for (unsigned i = 0; i < 128; i += 8) {
				uint64_t w = next();
				switch (rnd(6)) {
				case 0:
					w = (uintptr_t)(scratch + 8 * rnd(4096));
					break;
				case 1:
					w = rnd(16);
					break;
				case 2:
					w = 0;
					break;
				}
				memcpy(s + i, &w, 8);
			}
			memcpy(s, &size, 4);
			arg = s;
		}
		}
		errno = 0;
		int rc = ioctl(target, cmd, arg);
		int err = errno;
		if (rc != 0 && rc != -1) {
			printf("input %ld: ioctl(0x%lx) returned %d\n", n, cmd, rc);
			return 1;
		}
		if (rc == -1 && err == 0) {
			printf("input %ld: ioctl(0x%lx) failed without an errno\n", n, cmd);
			return 1;
		}
		char *after = view();
		if (rc == -1 && strcmp(before, after) != 0) {
			printf("input %ld: ioctl(0x%lx) failed with %s but changed the context:\n--- before\n%s\n--- after\n%s\n", n, cmd, strerrorname_np(err), before, after);
			return 1;
		}
		free(before);
		before = after;
	}
	free(before);
	printf("inputs %ld\n", n);
	return 0;
}
