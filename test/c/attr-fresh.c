/*
 * A value the model changes is never stale, whoever reads it how: this keeps
 * one descriptor open on domains_used and, around each attach and detach of a
 * VT-d device (text requests on dev/iommu), reads it again at offset 0 on that
 * descriptor (pread) and through a fresh open, many times in a row.
 *
 *   attr-fresh MOUNT ROUNDS     prints "first 0", then "stale N" (reads that
 *                               saw an old value) and "last 0"
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path_du[4096];

/* The value at offset 0 of fd, as a number (-1 on a failed read). */
static int value_at0(int fd)
{
	char buf[64];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return atoi(buf);
}

/* open + read to EOF + close, as cat does. */
static int value_fresh(void)
{
	int fd = open(path_du, O_RDONLY);
	char buf[64];
	size_t len = 0;
	ssize_t n;
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = 0;
	return len ? atoi(buf) : -1;
}

/* One text request on dev/iommu; exits on an error reply. */
static void request(int ctl, const char *line)
{
	char reply[4096];
	if (write(ctl, line, strlen(line)) != (ssize_t)strlen(line)) {
		perror("write");
		exit(2);
	}
	ssize_t n = pread(ctl, reply, sizeof reply - 1, 0);
	if (n <= 0 || strncmp(reply, "ok", 2)) {
		fprintf(stderr, "%s -> %.*s\n", line, (int)(n > 0 ? n : 0), reply);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	char path_ctl[4096];
	if (argc != 3) {
		fprintf(stderr, "usage: attr-fresh MOUNT ROUNDS\n");
		return 2;
	}
	snprintf(path_du, sizeof path_du, "%s/sys/class/iommu/dmar0/intel-iommu/domains_used", argv[1]);
	snprintf(path_ctl, sizeof path_ctl, "%s/dev/iommu", argv[1]);
	int rounds = atoi(argv[2]);
	int du = open(path_du, O_RDONLY);
	int ctl = open(path_ctl, O_RDWR);
	if (du < 0 || ctl < 0) {
		perror("open");
		return 2;
	}
	printf("first %d\n", value_at0(du));
	request(ctl, "DEVICE_BIND pci=0000:02:00.0\n");
	request(ctl, "IOAS_ALLOC\n");
	int stale = 0;
	for (int i = 0; i < rounds; i++) {
		request(ctl, "DEVICE_ATTACH dev_id=1 pt_id=2\n");
		stale += value_at0(du) != 1;
		stale += value_fresh() != 1;
		request(ctl, "DEVICE_DETACH dev_id=1\n");
		stale += value_at0(du) != 0;
		stale += value_fresh() != 0;
	}
	printf("stale %d\n", stale);
	close(ctl);
	printf("last %d\n", value_at0(du));
	close(du);
	return 0;
}
