/*
 * Two threads issue ioctls on one iommufd at once. Each allocates IOASes,
 * gives each one its own allowed IOVA range (an input array the shim must
 * fetch), maps a page there and reads the IOVA ranges back (an output array
 * it must write): every ID is distinct and every thread's page lands at
 * exactly its own allowed range.
 *
 *   iommufs exec -- dist/examples/c/threads [ITERATIONS]
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>

#define THREADS 2

/* what each IOAS maps: nothing is pinned while no device is attached */
static char page[4096] __attribute__((aligned(4096)));

struct worker {
	int fd;
	int index;
	int iterations;
	unsigned *ids;
	int errors;
};

static void *work(void *p)
{
	struct worker *w = p;
	for (int i = 0; i < w->iterations; i++) {
		struct iommu_ioas_alloc a = { .size = sizeof(a) };
		if (ioctl(w->fd, IOMMU_IOAS_ALLOC, &a)) {
			w->errors++;
			continue;
		}
		w->ids[i] = a.out_ioas_id;
		/* a range unique to this thread and iteration */
		struct iommu_iova_range want = { .start = ((__u64)w->index << 40) + ((__u64)i << 24), .last = 0 };
		want.last = want.start + 0xffffff;
		struct iommu_ioas_allow_iovas allow = { .size = sizeof(allow), .ioas_id = a.out_ioas_id, .num_iovas = 1, .allowed_iovas = (uintptr_t)&want };
		if (ioctl(w->fd, IOMMU_IOAS_ALLOW_IOVAS, &allow)) {
			w->errors++;
			continue;
		}
		/* an allocated IOVA lands at the lowest allowed one (never below a page) */
		struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_READABLE, .ioas_id = a.out_ioas_id, .user_va = (uintptr_t)page, .length = sizeof(page) };
		if (ioctl(w->fd, IOMMU_IOAS_MAP, &m) || m.iova != (want.start ? want.start : sizeof(page))) {
			w->errors++;
			continue;
		}
		/* the ranges read back (an output array): the holes between reserved ranges, all of it */
		struct iommu_iova_range got[4] = { 0 };
		struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = a.out_ioas_id, .num_iovas = 4, .allowed_iovas = (uintptr_t)got };
		if (ioctl(w->fd, IOMMU_IOAS_IOVA_RANGES, &r) || r.num_iovas != 1 || got[0].start != 0 || got[0].last != ~0ull)
			w->errors++;
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int iterations = argc > 1 ? atoi(argv[1]) : 100;
	int fd = open_node("/dev/iommu");
	unsigned *ids = calloc((size_t)THREADS * iterations, sizeof *ids);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .fd = fd, .index = i + 1, .iterations = iterations, .ids = ids + (size_t)i * iterations };
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	int errors = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		errors += w[i].errors;
	}
	size_t n = (size_t)THREADS * iterations;
	qsort(ids, n, sizeof *ids, cmp);
	size_t distinct = n ? 1 : 0;
	for (size_t i = 1; i < n; i++)
		distinct += ids[i] != ids[i - 1];
	printf("threads=%d iterations=%d ids=%zu distinct=%zu min=%u max=%u errors=%d\n", THREADS, iterations, n, distinct, n ? ids[0] : 0,
	       n ? ids[n - 1] : 0, errors);
	close(fd);
	return errors ? 1 : 0;
}
