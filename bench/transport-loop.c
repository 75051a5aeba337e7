/*
 * The transport benchmark's C side (bench/transport.ts runs it): every
 * target timed in the same run, in chunks interleaved round by round so all
 * see the same machine state. Targets are given as KIND:ARGS words:
 *   read:FILE              open + read(64 KiB) until 0 + close
 *   txn:FILE:TEXT          on a kept-open FILE: pwrite(TEXT + "\n", 0) + pread(reply, 0)
 *                          (on a dev/iommu, IOAS 1 is allocated first)
 *   frame:FILE:HEXFILE     the same with the bytes of HEXFILE's frame (hex text)
 *   ioctl:FILE             IOMMU_IOAS_ALLOC once, then IOMMU_IOAS_IOVA_RANGES on it
 * With --pause-us N first, the loop sleeps N µs after each operation (a
 * client with pauses between its transactions; the sleep is not timed).
 * Prints "median_ns p99_ns R1,R2,... NAME" per target, where Rk is the
 * median of round k alone: rounds run close together in time, so a ratio
 * taken round by round is not moved by the machine's load changing between
 * rounds.
 *
 *   transport-loop [--pause-us N] ROUNDS ITERATIONS TARGET...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "iommufd.h"

struct target {
	char kind;
	const char *name;
	char *path;
	int fd;
	char *msg;
	size_t msg_len;
	uint32_t ioas;
	long long *ns;
	int n;
};

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char buf[65536];
static unsigned pause_us;

static void die(const char *what, const char *path)
{
	fprintf(stderr, "transport-loop: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void once(struct target *t)
{
	long long t0 = now_ns();
	if (t->kind == 'r') {
		int fd = open(t->path, O_RDONLY);
		if (fd < 0)
			die("open", t->path);
		while (read(fd, buf, sizeof buf) > 0)
			;
		close(fd);
	} else if (t->kind == 'i') {
		struct iommu_iova_range ranges[4];
		struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = t->ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges };
		if (ioctl(t->fd, IOMMU_IOAS_IOVA_RANGES, &r))
			die("IOMMU_IOAS_IOVA_RANGES", t->path);
	} else {
		if (pwrite(t->fd, t->msg, t->msg_len, 0) != (ssize_t)t->msg_len)
			die("write", t->path);
		if (pread(t->fd, buf, sizeof buf, 0) <= 0)
			die("read reply", t->path);
	}
	t->ns[t->n++] = now_ns() - t0;
	if (pause_us)
		usleep(pause_us);
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

static char *hex_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("open", path);
	char *out = malloc(65536);
	unsigned v;
	size_t n = 0;
	while (n < 65536 && fscanf(f, "%2x", &v) == 1)
		out[n++] = (char)v;
	fclose(f);
	*len = n;
	return out;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--pause-us")) {
		pause_us = (unsigned)atoi(argv[2]);
		argv += 2;
		argc -= 2;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: transport-loop [--pause-us N] ROUNDS ITERATIONS TARGET...\n");
		return 2;
	}
	int rounds = atoi(argv[1]), iterations = atoi(argv[2]), nt = argc - 3;
	int chunk = iterations / rounds;
	struct target *ts = calloc((size_t)nt, sizeof *ts);
	for (int i = 0; i < nt; i++) {
		struct target *t = &ts[i];
		char *spec = strdup(argv[3 + i]);
		t->name = argv[3 + i];
		t->kind = spec[0];
		t->path = strchr(spec, ':') + 1;
		char *rest = strchr(t->path, ':');
		if (rest)
			*rest++ = 0;
		t->ns = calloc((size_t)rounds * chunk, sizeof *t->ns);
		if (t->kind == 'r')
			continue;
		t->fd = open(t->path, O_RDWR);
		if (t->fd < 0)
			die("open", t->path);
		/* a context's first IOAS (ID 1), for the requests that name one */
		size_t pl = strlen(t->path);
		if (t->kind != 'i' && pl >= 10 && !strcmp(t->path + pl - 10, "/dev/iommu") &&
		    (pwrite(t->fd, "IOAS_ALLOC\n", 11, 0) != 11 || pread(t->fd, buf, sizeof buf, 0) <= 0))
			die("IOAS_ALLOC on", t->path);
		if (t->kind == 't') {
			t->msg_len = strlen(rest) + 1;
			t->msg = malloc(t->msg_len);
			memcpy(t->msg, rest, t->msg_len - 1);
			t->msg[t->msg_len - 1] = '\n';
		} else if (t->kind == 'f') {
			t->msg = hex_file(rest, &t->msg_len);
		} else if (t->kind == 'i') {
			struct iommu_ioas_alloc a = { .size = sizeof(a) };
			if (ioctl(t->fd, IOMMU_IOAS_ALLOC, &a))
				die("IOMMU_IOAS_ALLOC", t->path);
			t->ioas = a.out_ioas_id;
		}
	}
	/* warm-up: one chunk each, not kept */
	for (int i = 0; i < nt; i++) {
		for (int k = 0; k < chunk; k++)
			once(&ts[i]);
		ts[i].n = 0;
	}
	for (int r = 0; r < rounds; r++)
		for (int j = 0; j < nt; j++) {
			/* a different target order each round */
			struct target *t = &ts[(j + r) % nt];
			for (int k = 0; k < chunk; k++)
				once(t);
		}
	for (int i = 0; i < nt; i++) {
		/* each round's chunk is contiguous in ns: its median first, then the whole set's */
		long long *round = calloc((size_t)rounds, sizeof *round);
		for (int r = 0; r < rounds; r++) {
			qsort(ts[i].ns + (size_t)r * chunk, (size_t)chunk, sizeof(long long), cmp);
			round[r] = ts[i].ns[(size_t)r * chunk + chunk / 2];
		}
		qsort(ts[i].ns, (size_t)ts[i].n, sizeof(long long), cmp);
		printf("%lld %lld ", ts[i].ns[ts[i].n / 2], ts[i].ns[(ts[i].n * 99) / 100]);
		for (int r = 0; r < rounds; r++)
			printf("%s%lld", r ? "," : "", round[r]);
		printf(" %s\n", ts[i].name);
		free(round);
	}
	return 0;
}
