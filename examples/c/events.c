/*
 * A VMM's event loop: poll() a vIOMMU's vEVENTQ and read the guest's events.
 *
 *   iommufs exec -- dist/examples/c/events [PCI]      (PCI defaults to 0000:00:01.0, vfio0)
 *
 * The program binds vfio0 (behind the first SMMUv3), builds a nested setup
 * (NEST_PARENT stage 2, a vIOMMU, a vDEVICE with virtual StreamID 0x42, a
 * nested HWPT from a guest STE with S1CDMax = 0) and allocates the vIOMMU's
 * vEVENTQ. Its descriptor is a real fd: the program poll()s it. A child
 * process then makes the device issue a DMA with a PASID through the mount's
 * DMA port (sys/kernel/debug/iommufd/dma/<pci>): with S1CDMax = 0 that is
 * C_BAD_SUBSTREAMID, which the host driver forwards to the vEVENTQ with the
 * StreamID replaced by 0x42. poll() wakes up, read() returns the 8-byte
 * header and the 32-byte record. Then the same with epoll.
 *
 * Under `exec --namespace` (real ioctl() through the mount) no descriptor can
 * be installed in the caller: VEVENTQ_ALLOC answers EOPNOTSUPP (exit 2).
 */
#include "example.h" /* first: it sets _GNU_SOURCE */

#include <poll.h>
#include <sys/epoll.h>
#include <sys/wait.h>

/* The child: one DMA request on the device's port, then exit (0 if the port answered "fault"). */
static int child_dma(const char *pci)
{
	const char *mnt = getenv("IOMMUFS_MOUNT");
	char path[4096], reply[512] = { 0 };
	snprintf(path, sizeof path, "%s/sys/kernel/debug/iommufd/dma/%s", mnt ? mnt : "", pci);
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		printf("child: open %s: err %s\n", path, errno_name(errno));
		return 1;
	}
	static const char req[] = "read iova=0x1000 len=4 pasid=1\n";
	if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) return 1;
	ssize_t n = read(fd, reply, sizeof reply - 1);
	close(fd);
	if (n <= 0) return 1;
	reply[strcspn(reply, "\n")] = 0;
	printf("child: DMA port: %s\n", reply);
	fflush(stdout);
	return strncmp(reply, "fault", 5) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *pci = argc > 1 ? argv[1] : "0000:00:01.0";
	setvbuf(stdout, NULL, _IOLBF, 0);
	int iommufd = open_node("/dev/iommu");
	int devfd = open_node("/dev/vfio/devices/vfio0");

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	MUST("VFIO_DEVICE_BIND_IOMMUFD", devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	printf(" out_devid=%u\n", bind.out_devid);
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	MUST("IOMMU_IOAS_ALLOC", iommufd, IOMMU_IOAS_ALLOC, &ioas);
	printf(" out_ioas_id=%u\n", ioas.out_ioas_id);
	struct iommu_hwpt_alloc s2 = { .size = sizeof(s2), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = bind.out_devid, .pt_id = ioas.out_ioas_id };
	MUST("IOMMU_HWPT_ALLOC nest parent", iommufd, IOMMU_HWPT_ALLOC, &s2);
	printf(" out_hwpt_id=%u\n", s2.out_hwpt_id);
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = s2.out_hwpt_id };
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT stage 2", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
	printf("\n");
	struct iommu_viommu_alloc viommu = { .size = sizeof(viommu), .type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3, .dev_id = bind.out_devid, .hwpt_id = s2.out_hwpt_id };
	MUST("IOMMU_VIOMMU_ALLOC", iommufd, IOMMU_VIOMMU_ALLOC, &viommu);
	printf(" out_viommu_id=%u\n", viommu.out_viommu_id);
	struct iommu_vdevice_alloc vdev = { .size = sizeof(vdev), .viommu_id = viommu.out_viommu_id, .dev_id = bind.out_devid, .virt_id = 0x42 };
	MUST("IOMMU_VDEVICE_ALLOC", iommufd, IOMMU_VDEVICE_ALLOC, &vdev);
	printf(" out_vdevice_id=%u\n", vdev.out_vdevice_id);
	/* the guest's STE: V, Config = S1 translate, a CD at IPA 0x40000000, S1CDMax = 0 (no substreams) */
	struct iommu_hwpt_arm_smmuv3 ste = { .ste = { 0x40000000ull | (5 << 1) | 1, 0 } };
	struct iommu_hwpt_alloc nested = { .size = sizeof(nested), .dev_id = bind.out_devid, .pt_id = viommu.out_viommu_id, .data_type = IOMMU_HWPT_DATA_ARM_SMMUV3, .data_len = sizeof(ste), .data_uptr = (uintptr_t)&ste };
	MUST("IOMMU_HWPT_ALLOC nested", iommufd, IOMMU_HWPT_ALLOC, &nested);
	printf(" out_hwpt_id=%u\n", nested.out_hwpt_id);
	at.pt_id = nested.out_hwpt_id;
	MUST("VFIO_DEVICE_ATTACH_IOMMUFD_PT nested", devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
	printf("\n");

	struct iommu_veventq_alloc vq = { .size = sizeof(vq), .viommu_id = viommu.out_viommu_id, .type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, .veventq_depth = 64 };
	int e = do_ioctl(iommufd, IOMMU_VEVENTQ_ALLOC, &vq);
	if (e) {
		printf("IOMMU_VEVENTQ_ALLOC: err %s\n", errno_name(e));
		return e == EOPNOTSUPP ? 2 : 1;
	}
	printf("IOMMU_VEVENTQ_ALLOC: ok out_veventq_id=%u out_veventq_fd=%u\n", vq.out_veventq_id, vq.out_veventq_fd);
	int q = (int)vq.out_veventq_fd;

	/* nothing waits yet: poll() with no timeout says so, a read returns 0 */
	struct pollfd p = { .fd = q, .events = POLLIN | POLLOUT };
	printf("poll before the fault: %d\n", poll(&p, 1, 0));
	uint8_t buf[4096];
	printf("read of an empty queue: %zd\n", read(q, buf, sizeof buf));
	ssize_t pr = pread(q, buf, sizeof buf, 0);
	printf("pread: %zd %s\n", pr, pr < 0 ? errno_name(errno) : "");

	/* another process makes the device fault; this one sleeps in poll() until the event is queued */
	pid_t child = fork();
	if (child == 0) _exit(child_dma(pci));
	int r = poll(&p, 1, 60000);
	/* printed once the child has printed its line and gone: the output has one order */
	int status = 0;
	waitpid(child, &status, 0);
	/* asked for POLLIN and POLLOUT: as the kernel's, POLLIN only (a vEVENTQ has no write) */
	printf("poll: %d revents=%s%s\n", r, p.revents & POLLIN ? "POLLIN" : "-", p.revents & POLLOUT ? "|POLLOUT" : "");
	if (r != 1 || !(p.revents & POLLIN)) return 1;

	/* a buffer too small for the 40-byte record takes nothing: EINVAL (older kernels returned 0) */
	ssize_t small = read(q, buf, 39);
	printf("read of 39 bytes: %zd %s\n", small, small < 0 ? strerror(errno) : "");
	ssize_t n = read(q, buf, sizeof buf);
	printf("read: %zd bytes\n", n);
	if (n != (ssize_t)(sizeof(struct iommufd_vevent_header) + sizeof(struct iommu_vevent_arm_smmuv3))) return 1;
	struct iommufd_vevent_header h;
	struct iommu_vevent_arm_smmuv3 ev;
	memcpy(&h, buf, sizeof h);
	memcpy(&ev, buf + sizeof h, sizeof ev);
	printf("header: flags=0x%x sequence=%u\n", h.flags, h.sequence);
	printf("evt: 0x%016llx 0x%016llx 0x%016llx 0x%016llx\n", (unsigned long long)ev.evt[0], (unsigned long long)ev.evt[1], (unsigned long long)ev.evt[2], (unsigned long long)ev.evt[3]);
	unsigned id = (unsigned)(ev.evt[0] & 0xff), vsid = (unsigned)(ev.evt[0] >> 32);
	printf("event 0x%02x (C_BAD_SUBSTREAMID is 0x08) vsid=0x%x ssid=0x%x\n", id, vsid, (unsigned)((ev.evt[0] >> 12) & 0xfffff));
	printf("poll after the read: %d\n", poll(&p, 1, 0));

	/* the same with epoll: the next fault wakes epoll_wait() */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ee = { .events = EPOLLIN, .data.fd = q }, got;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, q, &ee) < 0) return 1;
	printf("epoll_wait before the fault: %d\n", epoll_wait(ep, &got, 1, 0));
	pid_t child2 = fork();
	if (child2 == 0) _exit(child_dma(pci));
	int er = epoll_wait(ep, &got, 1, 60000);
	int status2 = 0;
	waitpid(child2, &status2, 0);
	printf("epoll_wait: %d events=%s\n", er, er == 1 && (got.events & EPOLLIN) ? "EPOLLIN" : "-");
	n = read(q, buf, sizeof buf);
	memcpy(&h, buf, sizeof h);
	printf("read: %zd bytes, sequence=%u\n", n, h.sequence);
	close(ep);
	int ok = id == 0x08 && vsid == 0x42 && h.flags == 0 && h.sequence == 1 && er == 1 && n == 40 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	printf("events: %s\n", ok ? "ok" : "FAIL");
	return ok ? 0 : 1;
}
