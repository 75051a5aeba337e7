/*
 * Two threads of one process in text transactions at once on one open of a
 * transaction node, each pwrite()ing its request and pread()ing the reply at
 * offset 0: one asks CONTEXT, the other IOAS_IOVA_RANGES. A reply of the
 * other kind is one the other thread should have read ("crossed").
 *
 *   dist/test/c/thread-text MOUNT/dev/iommu [ITERATIONS]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct worker {
	int fd, iterations, crossed;
	const char *request, *expect;
	pthread_barrier_t *start;
};

static void *work(void *p)
{
	struct worker *w = p;
	char reply[256];
	pthread_barrier_wait(w->start);
	for (int i = 0; i < w->iterations; i++) {
		if (pwrite(w->fd, w->request, strlen(w->request), 0) != (ssize_t)strlen(w->request)) {
			w->crossed++;
			continue;
		}
		ssize_t n = pread(w->fd, reply, sizeof(reply) - 1, 0);
		reply[n > 0 ? n : 0] = 0;
		if (strncmp(reply, w->expect, strlen(w->expect)))
			w->crossed++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s NODE [ITERATIONS]\n", argv[0]);
		return 2;
	}
	int iterations = argc > 2 ? atoi(argv[2]) : 1000;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	static const char alloc[] = "IOAS_ALLOC\n";
	if (pwrite(fd, alloc, sizeof(alloc) - 1, 0) != sizeof(alloc) - 1)
		return 2;
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	struct worker w[2] = {
		{ fd, iterations, 0, "CONTEXT\n", "ok id=", &start },
		{ fd, iterations, 0, "IOAS_IOVA_RANGES ioas_id=1\n", "ok num_iovas=1 ", &start },
	};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, work, &w[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("threads=2 iterations=%d crossed=%d\n", iterations, w[0].crossed + w[1].crossed);
	close(fd);
	return w[0].crossed + w[1].crossed ? 1 : 0;
}
