/*
 * One iommufd shared by two processes after fork(), both issuing ioctls at
 * once: each allocates IOASes, gives each its own allowed IOVA range, maps a
 * page there and reads the IOVA ranges back. A reply that went to the other
 * process shows as a wrong ID, a wrong IOVA or an error ("crossed").
 *
 *   iommufs exec -- dist/test/c/fork-share [ITERATIONS]
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

#include <sys/wait.h>

/* what each IOAS maps: nothing is pinned while no device is attached */
static char page[4096] __attribute__((aligned(4096)));

static int work(int fd, int index, int iterations)
{
	int crossed = 0;
	for (int i = 0; i < iterations; i++) {
		struct iommu_ioas_alloc a = { .size = sizeof(a) };
		if (ioctl(fd, IOMMU_IOAS_ALLOC, &a)) {
			crossed++;
			continue;
		}
		struct iommu_iova_range want = { .start = ((__u64)index << 40) + ((__u64)i << 24), .last = 0 };
		want.last = want.start + 0xffffff;
		struct iommu_ioas_allow_iovas allow = { .size = sizeof(allow), .ioas_id = a.out_ioas_id, .num_iovas = 1, .allowed_iovas = (uintptr_t)&want };
		if (ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &allow)) {
			crossed++;
			continue;
		}
		/* an allocated IOVA lands at the lowest allowed one (never below a page) */
		struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_READABLE, .ioas_id = a.out_ioas_id, .user_va = (uintptr_t)page, .length = sizeof(page) };
		if (ioctl(fd, IOMMU_IOAS_MAP, &m) || m.iova != (want.start ? want.start : sizeof(page))) {
			crossed++;
			continue;
		}
		/* the ranges read back (an output array): the holes between reserved ranges, all of it */
		struct iommu_iova_range got[4] = { 0 };
		struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = a.out_ioas_id, .num_iovas = 4, .allowed_iovas = (uintptr_t)got };
		if (ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) || r.num_iovas != 1 || got[0].start != 0 || got[0].last != ~0ull)
			crossed++;
	}
	return crossed;
}

int main(int argc, char **argv)
{
	int iterations = argc > 1 ? atoi(argv[1]) : 100;
	int fd = open_node("/dev/iommu");
	/* both start together: the child waits for the parent's byte */
	int go[2];
	if (pipe(go))
		return 2;
	pid_t child = fork();
	if (child < 0)
		return 2;
	if (child == 0) {
		char c;
		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(255);
		int n = work(fd, 2, iterations);
		_exit(n > 254 ? 254 : n);
	}
	close(go[0]);
	(void)!write(go[1], "g", 1);
	int mine = work(fd, 1, iterations);
	int status = 0;
	waitpid(child, &status, 0);
	int theirs = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
	printf("processes=2 iterations=%d crossed=%d\n", iterations, mine + theirs);
	close(fd);
	return mine + theirs ? 1 : 0;
}
