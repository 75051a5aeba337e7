/*
 * The vEVENTQ benchmark's program (bench/events.ts runs it): on a mount,
 * set up a nested device with a vEVENTQ (text requests on dev/iommu), open
 * the queue file the reply names (the descriptor a VMM gets), then
 *   1. events/s: a thread makes the device fault N times through its DMA
 *      port while the main thread poll()s and read()s the queue until it has
 *      all N records;
 *   2. latency from a fault to poll() waking: K times, the main thread sleeps
 *      in poll(), the other thread takes the time and writes the faulting DMA
 *      request; the main thread takes the time when poll() returns;
 *   3. the latency of a plain transaction on the same mount (IOAS_IOVA_RANGES
 *      on dev/iommu, write then read), and of one faulting DMA port request.
 *
 *   events-loop MOUNT N K
 * prints "name: value" lines; microseconds for latencies (sorted samples).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *mnt;
static int iommu, port;
static char reply[4096];

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what)
{
	fprintf(stderr, "events-loop: %s: %s\n", what, reply[0] ? reply : strerror(errno));
	exit(1);
}

/* One text request on dev/iommu (the reply is read at offset 0, as the transaction file answers). */
static const char *req(const char *line)
{
	if (pwrite(iommu, line, strlen(line), 0) < 0) die(line);
	ssize_t n = pread(iommu, reply, sizeof reply - 1, 0);
	if (n < 0) die(line);
	reply[n] = 0;
	if (strncmp(reply, "ok", 2) != 0) die(line);
	return reply;
}

/* One faulting DMA: a PASID the guest's STE does not allow (C_BAD_SUBSTREAMID). */
static void fault_dma(void)
{
	static const char line[] = "read iova=0x1000 len=4 pasid=1\n";
	char b[2048];
	if (pwrite(port, line, sizeof line - 1, 0) < 0 || pread(port, b, sizeof b, 0) <= 0) die("DMA port");
}

static long n_events;
static int go[2];

static void *producer(void *arg)
{
	(void)arg;
	for (long i = 0; i < n_events; i++)
		fault_dma();
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print_samples(const char *name, double *s, int k)
{
	qsort(s, k, sizeof *s, cmp);
	printf("%s:", name);
	for (int i = 0; i < k; i++)
		printf(" %.1f", s[i]);
	printf("\n");
}

/* when the trigger wrote the faulting request, in ns (atomic: two threads) */
static int64_t t0_ns;

static void *trigger(void *arg)
{
	int k = *(int *)arg;
	char c;
	for (int i = 0; i < k; i++) {
		/* the main thread says it is about to poll; give it time to be asleep in poll() */
		if (read(go[0], &c, 1) != 1) break;
		usleep(2000);
		__atomic_store_n(&t0_ns, (int64_t)(now_us() * 1e3), __ATOMIC_SEQ_CST);
		fault_dma();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: events-loop MOUNT N K\n");
		return 2;
	}
	mnt = argv[1];
	n_events = atol(argv[2]);
	int k = atoi(argv[3]);
	char path[4096];
	snprintf(path, sizeof path, "%s/dev/iommu", mnt);
	if ((iommu = open(path, O_RDWR)) < 0) die(path);
	snprintf(path, sizeof path, "%s/sys/kernel/debug/iommufd/dma/0000:00:01.0", mnt);
	if ((port = open(path, O_RDWR)) < 0) die(path);
	req("DEVICE_BIND pci=0000:00:01.0\n");
	req("IOAS_ALLOC\n");
	req("HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT\n");
	req("DEVICE_ATTACH dev_id=1 pt_id=3\n");
	req("VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3\n");
	req("VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x42\n");
	req("HWPT_ALLOC dev_id=1 pt_id=4 data_type=ARM_SMMUV3 data.ste=0x4000000b,0x0\n");
	req("DEVICE_ATTACH dev_id=1 pt_id=6\n");
	const char *r = req("VEVENTQ_ALLOC viommu_id=4 type=ARM_SMMUV3 veventq_depth=65536\n");
	const char *p = strstr(r, "path=");
	if (!p) die("no path= in the VEVENTQ_ALLOC reply");
	snprintf(path, sizeof path, "%s/%.*s", mnt, (int)strcspn(p + 5, " \n"), p + 5);
	int q = open(path, O_RDONLY);
	if (q < 0) die(path);

	/* 1. events per second, fault to read */
	static uint8_t buf[1 << 16];
	struct pollfd pf = { .fd = q, .events = POLLIN };
	pthread_t th;
	long got = 0, lost = 0;
	double t0 = now_us();
	pthread_create(&th, NULL, producer, NULL);
	while (got + lost < n_events) {
		if (poll(&pf, 1, 10000) != 1) die("poll timed out");
		ssize_t n = read(q, buf, sizeof buf);
		for (ssize_t off = 0; off < n;) {
			uint32_t flags;
			memcpy(&flags, buf + off, 4);
			if (flags & 1) {
				lost++;
				off += 8;
			} else {
				got++;
				off += 40;
			}
		}
	}
	double t1 = now_us();
	pthread_join(th, NULL);
	printf("events: %ld read, %ld lost headers, %.3f s\n", got, lost, (t1 - t0) / 1e6);
	printf("events_per_s: %.0f\n", got / ((t1 - t0) / 1e6));

	/* 2. fault -> poll() wake-up */
	double *wake = calloc(k, sizeof *wake), *plain = calloc(k, sizeof *plain), *dma = calloc(k, sizeof *dma);
	if (pipe(go) < 0) die("pipe");
	pthread_create(&th, NULL, trigger, &k);
	for (int i = 0; i < k; i++) {
		if (write(go[1], "g", 1) != 1) die("pipe");
		if (poll(&pf, 1, 10000) != 1) die("poll timed out");
		wake[i] = now_us() - __atomic_load_n(&t0_ns, __ATOMIC_SEQ_CST) / 1e3;
		if (read(q, buf, sizeof buf) <= 0) die("read");
	}
	pthread_join(th, NULL);

	/* 3. a plain transaction and a faulting DMA request, each on its own */
	for (int i = 0; i < k; i++) {
		double a = now_us();
		req("IOAS_IOVA_RANGES ioas_id=2 num_iovas=4\n");
		plain[i] = now_us() - a;
		a = now_us();
		fault_dma();
		dma[i] = now_us() - a;
		if (read(q, buf, sizeof buf) <= 0) die("read");
	}
	print_samples("wake_us", wake, k);
	print_samples("plain_us", plain, k);
	print_samples("dma_us", dma, k);
	return 0;
}
