/*
 * Descriptors an ioctl returns, through real ioctl()s with no shim (run under
 * `iommufs exec --namespace`, whose supervisor installs them): a fault
 * queue's holds its object until the last reference to the file goes, a
 * forked child's included; the commands on other files and bad arguments get
 * what the kernel gives. Static on purpose. Exits 3 so that the caller sees
 * the status come through.
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

static void result(const char *step, int err)
{
	printf("%s: %s\n", step, err ? errno_name(err) : "ok");
}

static int destroy(int fd, __u32 id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };
	return do_ioctl(fd, IOMMU_DESTROY, &d);
}

/* A thread other than the first asks: the supervisor reaches its descriptors all the same. */
static void *from_a_thread(void *arg)
{
	int fd = *(int *)arg;
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	int err = do_ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
	printf("IOMMU_FAULT_QUEUE_ALLOC from a second thread: %s, a descriptor: %s\n", err ? errno_name(err) : "ok",
	       !err && fcntl((int)fa.out_fault_fd, F_GETFD) >= 0 ? "yes" : "no");
	if (!err)
		close((int)fa.out_fault_fd);
	return NULL;
}

int main(void)
{
	int fd = open_node("/dev/iommu");
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	MUST("IOMMU_FAULT_QUEUE_ALLOC", fd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
	printf(" out_fault_id=%u, a descriptor above the node's: %s, close-on-exec: %s\n", fa.out_fault_id, fa.out_fault_fd > (__u32)fd ? "yes" : "no",
	       fcntl((int)fa.out_fault_fd, F_GETFD) & FD_CLOEXEC ? "yes" : "no");
	/* nothing queued: a read finds no page request */
	char buf[2 * 40]; /* whole records (struct iommu_hwpt_pgfault), else ESPIPE */
	ssize_t n = read((int)fa.out_fault_fd, buf, sizeof buf);
	printf("read of the queue: %zd%s%s\n", n, n < 0 ? " " : "", n < 0 ? errno_name(errno) : "");
	result("IOMMU_DESTROY of the queue while its descriptor is open", destroy(fd, fa.out_fault_id));
	close((int)fa.out_fault_fd);
	result("IOMMU_DESTROY of the queue once it is closed", destroy(fd, fa.out_fault_id));

	/* a forked child's copy keeps the file, and so the queue, until it exits */
	struct iommu_fault_alloc fb = { .size = sizeof(fb) };
	MUST("IOMMU_FAULT_QUEUE_ALLOC again", fd, IOMMU_FAULT_QUEUE_ALLOC, &fb);
	printf(" out_fault_id=%u\n", fb.out_fault_id);
	int go[2];
	if (pipe(go) < 0)
		return 1;
	pid_t child = fork();
	if (child == 0) {
		close(go[1]);
		char c;
		ssize_t r = read(go[0], &c, 1); /* until the parent has looked */
		_exit(r < 0);
	}
	close(go[0]);
	close((int)fb.out_fault_fd);
	result("IOMMU_DESTROY while a child holds the descriptor", destroy(fd, fb.out_fault_id));
	close(go[1]);
	int status;
	waitpid(child, &status, 0);
	result("IOMMU_DESTROY once the child is gone", destroy(fd, fb.out_fault_id));

	pthread_t t;
	pthread_create(&t, NULL, from_a_thread, &fd);
	pthread_join(t, NULL);

	/* the same numbers elsewhere, and bad arguments */
	int null = open("/dev/null", O_RDWR);
	result("IOMMU_FAULT_QUEUE_ALLOC on /dev/null", do_ioctl(null, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	result("IOMMU_FAULT_QUEUE_ALLOC arg=8", do_ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, (void *)8));
	/* a struct that can be read but not written: EFAULT, and no queue is made (the next takes ID 2, after the thread's) */
	struct iommu_fault_alloc *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro->size = sizeof(*ro);
	mprotect(ro, 4096, PROT_READ);
	result("IOMMU_FAULT_QUEUE_ALLOC into a read-only struct", do_ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, ro));
	struct iommu_fault_alloc fc = { .size = sizeof(fc) };
	MUST("IOMMU_FAULT_QUEUE_ALLOC after it", fd, IOMMU_FAULT_QUEUE_ALLOC, &fc);
	printf(" out_fault_id=%u\n", fc.out_fault_id);
	close((int)fc.out_fault_fd);
	struct iommu_fault_alloc bad = { .size = sizeof(bad), .flags = 1 };
	result("IOMMU_FAULT_QUEUE_ALLOC flags=1", do_ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &bad));
	struct iommu_test_cmd nop = { .size = sizeof(nop), .op = IOMMU_TEST_OP_DMABUF_REVOKE, .dmabuf_revoke = { .dmabuf_fd = null } };
	result("IOMMU_TEST_CMD DMABUF_REVOKE of /dev/null", do_ioctl(fd, IOMMU_TEST_CMD, &nop));
	close(null);
	close(fd);
	return 3;
}
