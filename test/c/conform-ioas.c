/*
 * Conformance of the IOAS world of /dev/iommu, as an outside client sees it:
 * every struct below is written from the uAPI (offsets checked here), not
 * taken from the generated header, and every check names the exact return
 * value, errno or out field the kernel gives.
 *
 *   dispatch:  unknown numbers, the size field (too small, a zero tail, a
 *              nonzero tail is E2BIG, bytes past size are never looked at);
 *   ids:       lowest free, reused at once, typed lookups (a FAULT id where
 *              an IOAS is wanted is ENOENT), an open fault fd keeps DESTROY
 *              EBUSY;
 *   map/unmap: check order of the errors, FIXED_IOVA against allocated IOVA
 *              (never 0, aligned as the user address), byte granularity until
 *              huge pages are turned off, whole areas only, unmap-all;
 *   copy, iova_ranges, allow_iovas, option, vfio_ioas, map_file,
 *   change_process.
 *
 * Each line: "NAME: ok" or "NAME: FAIL got X want Y"; exits 1 on any FAIL.
 * Runs under the shim (iommufs exec) or with real ioctl()s (--namespace).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "conform.h"

#define T ';'
#define C_DESTROY _IO(T, 0x80)
#define C_IOAS_ALLOC _IO(T, 0x81)
#define C_ALLOW_IOVAS _IO(T, 0x82)
#define C_COPY _IO(T, 0x83)
#define C_IOVA_RANGES _IO(T, 0x84)
#define C_MAP _IO(T, 0x85)
#define C_UNMAP _IO(T, 0x86)
#define C_OPTION _IO(T, 0x87)
#define C_VFIO_IOAS _IO(T, 0x88)
#define C_FAULT_ALLOC _IO(T, 0x8e)
#define C_MAP_FILE _IO(T, 0x8f)
#define C_CHANGE_PROCESS _IO(T, 0x92)

#define FIXED 1u
#define WRITE 2u
#define READ 4u
#define RW (READ | WRITE)

#define U64_MAX UINT64_MAX
#define PAGE 0x1000ull

#define LAYOUT(s, f, off) _Static_assert(offsetof(struct s, f) == (off), #s "." #f)
#define SIZE(s, n) _Static_assert(sizeof(struct s) == (n), #s " size")

struct destroy { uint32_t size, id; };
SIZE(destroy, 8);
struct ioas_alloc { uint32_t size, flags, out_ioas_id; };
SIZE(ioas_alloc, 12);
struct range { uint64_t start, last; };
struct allow { uint32_t size, ioas_id, num_iovas, reserved; uint64_t allowed_iovas; };
SIZE(allow, 24); LAYOUT(allow, allowed_iovas, 16);
struct copy { uint32_t size, flags, dst_ioas_id, src_ioas_id; uint64_t length, dst_iova, src_iova; };
SIZE(copy, 40); LAYOUT(copy, length, 16); LAYOUT(copy, dst_iova, 24); LAYOUT(copy, src_iova, 32);
struct ranges { uint32_t size, ioas_id, num_iovas, reserved; uint64_t allowed_iovas, out_iova_alignment; };
SIZE(ranges, 32); LAYOUT(ranges, out_iova_alignment, 24);
struct map { uint32_t size, flags, ioas_id, reserved; uint64_t user_va, length, iova; };
SIZE(map, 40); LAYOUT(map, user_va, 16); LAYOUT(map, iova, 32);
struct unmap { uint32_t size, ioas_id; uint64_t iova, length; };
SIZE(unmap, 24); LAYOUT(unmap, iova, 8); LAYOUT(unmap, length, 16);
struct option { uint32_t size, option_id; uint16_t op, reserved; uint32_t object_id; uint64_t val64; };
SIZE(option, 24); LAYOUT(option, op, 8); LAYOUT(option, object_id, 12); LAYOUT(option, val64, 16);
struct vfio_ioas { uint32_t size, ioas_id; uint16_t op, reserved; };
SIZE(vfio_ioas, 12); LAYOUT(vfio_ioas, op, 8);
struct fault_alloc { uint32_t size, flags, out_fault_id, out_fault_fd; };
SIZE(fault_alloc, 16);
struct map_file { uint32_t size, flags, ioas_id; int32_t fd; uint64_t start, length, iova; };
SIZE(map_file, 40); LAYOUT(map_file, fd, 12); LAYOUT(map_file, start, 16); LAYOUT(map_file, iova, 32);
struct change_process { uint32_t size, reserved; };
SIZE(change_process, 8);

enum { OPT_RLIMIT = 0, OPT_HUGE = 1, OP_SET = 0, OP_GET = 1, V_GET = 0, V_SET = 1, V_CLEAR = 2 };

static int fd;
static uint8_t *buf; /* 4 MiB, 2 MiB aligned */

static int open_iommu(void)
{
	int f = open("/dev/iommu", O_RDWR);
	if (f < 0) {
		printf("open: FAIL got %s want ok\n", ename(errno));
		exit(1);
	}
	return f;
}

static uint32_t ioas_new(int f)
{
	struct ioas_alloc a = { .size = sizeof(a) };
	if (io(f, C_IOAS_ALLOC, &a)) {
		printf("ioas_alloc: FAIL got %s want ok\n", ename(errno));
		exit(1);
	}
	return a.out_ioas_id;
}

static int destroy(int f, uint32_t id)
{
	struct destroy d = { .size = sizeof(d), .id = id };
	return io(f, C_DESTROY, &d);
}

static struct map mapv(uint32_t ioas, uint32_t flags, const void *va, uint64_t len, uint64_t iova)
{
	return (struct map){ .size = sizeof(struct map), .flags = flags, .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len, .iova = iova };
}

static int map_fixed(uint32_t ioas, const void *va, uint64_t len, uint64_t iova)
{
	struct map m = mapv(ioas, FIXED | RW, va, len, iova);
	return io(fd, C_MAP, &m);
}

/* Allocated IOVA of an automatic MAP, or U64_MAX with the errno in *err. */
static uint64_t map_auto(uint32_t ioas, const void *va, uint64_t len, int *err)
{
	struct map m = mapv(ioas, RW, va, len, 0);
	*err = io(fd, C_MAP, &m);
	return *err ? U64_MAX : m.iova;
}

static int unmap(uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *out)
{
	struct unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = len };
	int e = io(fd, C_UNMAP, &u);
	if (out)
		*out = u.length;
	return e;
}

static int option(int f, uint32_t id, uint16_t op, uint32_t obj, uint64_t *val)
{
	struct option o = { .size = sizeof(o), .option_id = id, .op = op, .object_id = obj, .val64 = *val };
	int e = io(f, C_OPTION, &o);
	*val = o.val64;
	return e;
}

static int allow(uint32_t ioas, const struct range *r, uint32_t n)
{
	struct allow a = { .size = sizeof(a), .ioas_id = ioas, .num_iovas = n, .allowed_iovas = (uintptr_t)r };
	return io(fd, C_ALLOW_IOVAS, &a);
}

static uint64_t alignment_of(uint32_t ioas)
{
	struct range r[4];
	struct ranges q = { .size = sizeof(q), .ioas_id = ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	return io(fd, C_IOVA_RANGES, &q) ? 0 : q.out_iova_alignment;
}

static void dispatch(void)
{
	uint8_t raw[64];
	struct ioas_alloc *a = (struct ioas_alloc *)raw;
	int f = open_iommu();

	memset(raw, 0, sizeof raw);
	a->size = 12;
	expect("unknown_nr_past_table", io(f, _IO(T, 0x95), raw), ENOTTY);
	expect("unknown_nr_below_base", io(f, _IO(T, 0x7f), raw), ENOTTY);
	expect("unknown_dir_bits", io(f, _IOWR(T, 0x81, struct ioas_alloc), raw), ENOTTY);
	expect("unknown_type_byte", io(f, _IO('a', 0x81), raw), ENOTTY);
	expect("unknown_nr_null_arg", io(f, _IO(T, 0x95), NULL), ENOTTY);
	/* an iommufd answers the VFIO container's numbers, never a VFIO device's (vfio_compat.c: ENOIOCTLCMD) */
	memset(raw, 0, sizeof raw);
	*(uint32_t *)raw = 1;
	expect("vfio_device_get_info_on_iommufd", io(f, _IO(';', 100 + 7), raw), ENOTTY);
	expect("vfio_device_bind_on_iommufd", io(f, _IO(';', 100 + 18), raw), ENOTTY);
	expect("vfio_dirty_pages_on_iommufd", io(f, _IO(';', 100 + 17), raw), ENOTTY);
	expect("null_arg", io(f, C_IOAS_ALLOC, NULL), EFAULT);
	a->size = 0;
	expect("size_zero", io(f, C_IOAS_ALLOC, raw), EINVAL);
	a->size = 11;
	expect("size_below_min", io(f, C_IOAS_ALLOC, raw), EINVAL);
	struct map m = mapv(1, FIXED | RW, buf, PAGE, 0);
	m.size = 32;
	expect("map_size_below_min", io(f, C_MAP, &m), EINVAL);

	/* a nonzero byte in the tail is E2BIG, before the handler looks at flags, and makes nothing */
	memset(raw, 0, sizeof raw);
	a->size = 16;
	raw[15] = 1;
	expect("size_tail_nonzero", io(f, C_IOAS_ALLOC, raw), E2BIG);
	a->flags = 1;
	expect("size_tail_nonzero_before_flags", io(f, C_IOAS_ALLOC, raw), E2BIG);
	a->flags = 0;
	raw[15] = 0;
	raw[12] = 0x80;
	expect("size_tail_first_byte", io(f, C_IOAS_ALLOC, raw), E2BIG);

	/* a zero tail is fine; bytes past size are neither checked nor written */
	memset(raw, 0, sizeof raw);
	a->size = 16;
	memset(raw + 16, 0xaa, 16);
	expect("size_zero_tail", io(f, C_IOAS_ALLOC, raw), 0);
	expect_u64("size_zero_tail_id_is_1", a->out_ioas_id, 1);
	int untouched = 1;
	for (int i = 16; i < 32; i++)
		untouched &= raw[i] == 0xaa;
	expect_u64("size_past_size_untouched", untouched, 1);

	uint8_t *big = calloc(1, 4096);
	((struct ioas_alloc *)big)->size = 4096;
	expect("size_page_zero_tail", io(f, C_IOAS_ALLOC, big), 0);
	expect_u64("size_page_id_is_2", ((struct ioas_alloc *)big)->out_ioas_id, 2);
	big[4095] = 1;
	expect("size_page_last_byte", io(f, C_IOAS_ALLOC, big), E2BIG);
	free(big);

	/*
	 * The tail is walked to size whatever its length: the first nonzero byte
	 * is E2BIG, the first byte that cannot be read EFAULT (here a PROT_NONE
	 * page after 64 pages of zeros), whichever comes first.
	 */
	size_t span = 64 * 4096;
	uint8_t *zeros = mmap(NULL, span + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mprotect(zeros + span, 4096, PROT_NONE);
	struct ioas_alloc *w = (struct ioas_alloc *)zeros;
	w->size = 0x11000;
	expect("size_tail_past_64k_zero", io(f, C_IOAS_ALLOC, zeros), 0);
	w->size = span + 8;
	expect("size_tail_unreadable", io(f, C_IOAS_ALLOC, zeros), EFAULT);
	zeros[0x20000] = 1;
	expect("size_tail_nonzero_before_unreadable", io(f, C_IOAS_ALLOC, zeros), E2BIG);
	w->size = 0xffffffff;
	expect("size_huge_nonzero_first", io(f, C_IOAS_ALLOC, zeros), E2BIG);
	zeros[0x20000] = 0;
	expect("size_huge_unreadable_first", io(f, C_IOAS_ALLOC, zeros), EFAULT);
	munmap(zeros, span + 4096);

	/* flags */
	struct ioas_alloc b = { .size = sizeof(b), .flags = 1 };
	expect("ioas_alloc_flags", io(f, C_IOAS_ALLOC, &b), EOPNOTSUPP);
	b.flags = 0x80000000u;
	expect("ioas_alloc_flags_high", io(f, C_IOAS_ALLOC, &b), EOPNOTSUPP);
	close(f);
}

static void ids(void)
{
	int f = open_iommu();
	uint32_t a = ioas_new(f), b = ioas_new(f), c = ioas_new(f);
	expect_u64("ids_first_three", (uint64_t)a << 32 | b << 16 | c, (1ull << 32) | (2 << 16) | 3);
	expect("destroy_middle", destroy(f, b), 0);
	expect("destroy_again", destroy(f, b), ENOENT);
	expect_u64("ids_lowest_free_reused", ioas_new(f), 2);
	expect_u64("ids_next", ioas_new(f), 4);
	expect("destroy_id_0", destroy(f, 0), ENOENT);
	expect("destroy_id_max", destroy(f, 0x7fffffff), ENOENT);
	expect("destroy_id_2_31", destroy(f, 0x80000000u), ENOENT);
	expect("destroy_id_u32_max", destroy(f, 0xffffffffu), ENOENT);

	/* a second context sees none of these */
	int g = open_iommu();
	expect("other_context_destroy", destroy(g, 1), ENOENT);
	expect_u64("other_context_first_id", ioas_new(g), 1);
	close(g);

	/* a FAULT id where an IOAS is wanted: lookups are typed */
	struct fault_alloc fa = { .size = sizeof(fa) };
	expect("fault_alloc", io(f, C_FAULT_ALLOC, &fa), 0);
	expect_u64("fault_id_lowest_free", fa.out_fault_id, 5);
	uint32_t flt = fa.out_fault_id;
	struct fault_alloc fb = { .size = sizeof(fb), .flags = 1 };
	expect("fault_alloc_flags", io(f, C_FAULT_ALLOC, &fb), EOPNOTSUPP);

	int sfd = fd;
	fd = f;
	struct map m = mapv(flt, FIXED | RW, buf, PAGE, 0x10000);
	expect("wrongtype_map", io(f, C_MAP, &m), ENOENT);
	expect("wrongtype_unmap", unmap(flt, 0, U64_MAX, NULL), ENOENT);
	struct range rg[1];
	struct ranges q = { .size = sizeof(q), .ioas_id = flt, .num_iovas = 1, .allowed_iovas = (uintptr_t)rg };
	expect("wrongtype_iova_ranges", io(f, C_IOVA_RANGES, &q), ENOENT);
	struct range ok = { 0x10000, 0x1ffff };
	expect("wrongtype_allow_iovas", allow(flt, &ok, 1), ENOENT);
	uint64_t v = 0x55;
	expect("wrongtype_option_huge", option(f, OPT_HUGE, OP_GET, flt, &v), ENOENT);
	expect_u64("wrongtype_option_val_untouched", v, 0x55);
	struct vfio_ioas vi = { .size = sizeof(vi), .ioas_id = flt, .op = V_SET };
	expect("wrongtype_vfio_ioas_set", io(f, C_VFIO_IOAS, &vi), ENOENT);
	expect("map_for_copy", map_fixed(a, buf, PAGE, 0x10000), 0);
	struct copy cp = { .size = sizeof(cp), .flags = RW, .dst_ioas_id = flt, .src_ioas_id = a, .length = PAGE, .src_iova = 0x10000 };
	expect("wrongtype_copy_dst", io(f, C_COPY, &cp), ENOENT);
	cp.dst_ioas_id = a;
	cp.src_ioas_id = flt;
	expect("wrongtype_copy_src", io(f, C_COPY, &cp), ENOENT);
	int mfd = memfd_create("conform", 0);
	ftruncate(mfd, PAGE);
	struct map_file mf = { .size = sizeof(mf), .flags = RW, .ioas_id = flt, .fd = mfd, .length = PAGE };
	expect("wrongtype_map_file", io(f, C_MAP_FILE, &mf), ENOENT);
	close(mfd);
	fd = sfd;

	/* quirk: an open fault fd keeps DESTROY busy */
	expect("destroy_fault_fd_open", destroy(f, flt), EBUSY);
	close((int)fa.out_fault_fd);
	expect("destroy_fault_fd_closed", destroy(f, flt), 0);
	expect("destroy_ioas_with_mapping", destroy(f, a), 0);
	close(f);
}

static void map_checks(void)
{
	uint32_t a = ioas_new(fd), bad = 0x7ffffff0;
	struct map m;
	int e;

	m = mapv(a, FIXED | RW | 8, buf, PAGE, 0x10000);
	expect("map_flags_unknown", io(fd, C_MAP, &m), EOPNOTSUPP);
	m = mapv(a, FIXED | RW, buf, PAGE, 0x10000);
	m.reserved = 1;
	expect("map_reserved", io(fd, C_MAP, &m), EOPNOTSUPP);
	m = mapv(bad, FIXED | RW | 8, buf, PAGE, U64_MAX);
	expect("map_order_flags_first", io(fd, C_MAP, &m), EOPNOTSUPP);
	m = mapv(bad, FIXED, buf, PAGE, U64_MAX);
	expect("map_order_overflow_before_rw", io(fd, C_MAP, &m), EOVERFLOW);
	m = mapv(bad, FIXED, buf, PAGE, 0x10000);
	expect("map_no_rw", io(fd, C_MAP, &m), EINVAL);
	m = mapv(bad, FIXED | RW, buf, 0, 0x10000);
	expect("map_order_ioas_before_length", io(fd, C_MAP, &m), ENOENT);
	m = mapv(a, FIXED | RW, buf, U64_MAX, 0x10000);
	expect("map_length_u64_max", io(fd, C_MAP, &m), EOVERFLOW);
	m = mapv(a, FIXED | RW, buf, 0, 0x10000);
	expect("map_length_zero", io(fd, C_MAP, &m), EINVAL);
	m = mapv(a, FIXED | RW, buf, 2 * PAGE, 0xfffffffffffff000ull);
	expect("map_fixed_wraps", io(fd, C_MAP, &m), EOVERFLOW);
	m = mapv(a, FIXED | RW, (void *)0xfffffffffffff000ull, 2 * PAGE, 0x10000);
	expect("map_user_va_wraps", io(fd, C_MAP, &m), EOVERFLOW);
	/* the user range ends past the last address even when its last byte is the last address (check_add_overflow(user_va, length)) */
	m = mapv(a, FIXED | RW, (void *)0xfffffffffffff000ull, PAGE, 0x10000);
	expect("map_user_va_ends_at_top", io(fd, C_MAP, &m), EOVERFLOW);
	/* a length the page count could overflow is EINVAL; one too long to place an IOVA for EOVERFLOW */
	m = mapv(a, FIXED | RW, 0, 0xfffffffffffffffeull, 0);
	expect("map_length_too_long_for_pages", io(fd, C_MAP, &m), EINVAL);
	m = mapv(a, RW, 0, 0x8000000000000000ull, 0);
	expect("map_length_too_long_to_place", io(fd, C_MAP, &m), EOVERFLOW);

	m = mapv(a, FIXED | READ, buf, 2 * PAGE, 0x100000);
	expect("map_fixed", io(fd, C_MAP, &m), 0);
	expect_u64("map_fixed_iova_kept", m.iova, 0x100000);
	expect("map_fixed_overlap", map_fixed(a, buf, 2 * PAGE, 0x101000), EEXIST);
	expect("map_fixed_overlap_below", map_fixed(a, buf, 2 * PAGE, 0xff000), EEXIST);
	expect("map_fixed_adjacent", map_fixed(a, buf, PAGE, 0x102000), 0);
	expect("map_fixed_iova_0", map_fixed(a, buf, PAGE, 0), 0);
	expect("map_fixed_last_page", map_fixed(a, buf, PAGE, 0xfffffffffffff000ull), 0);

	/* automatic IOVA: lowest hole from PAGE_SIZE, aligned as the user address and the length allow */
	uint32_t b = ioas_new(fd);
	expect_u64("map_auto_page", map_auto(b, buf, PAGE, &e), PAGE);
	expect_u64("map_auto_next_hole", map_auto(b, buf, PAGE, &e), 2 * PAGE);
	expect_u64("map_auto_3_pages_aligned_4", map_auto(b, buf, 3 * PAGE, &e), 4 * PAGE);
	expect_u64("map_auto_keeps_page_offset", map_auto(b, buf + 0x10, 0x100, &e), 3 * PAGE + 0x10);
	uint32_t c = ioas_new(fd);
	expect_u64("map_auto_never_0_unaligned", map_auto(c, buf + 0x10, 0x100, &e), PAGE + 0x10);
	m = mapv(c, FIXED | RW, buf + 0x10, 0x100, 0x200010);
	expect("map_fixed_byte_granular", io(fd, C_MAP, &m), 0);
	expect_u64("map_alignment_fresh", alignment_of(c), 1);

	/* huge pages off: alignment becomes PAGE_SIZE, refused while an area is not page aligned */
	uint64_t v = 0;
	expect("huge_off_unaligned_area", option(fd, OPT_HUGE, OP_SET, c, &v), EADDRINUSE);
	v = 0x55;
	expect("huge_still_on", option(fd, OPT_HUGE, OP_GET, c, &v), 0);
	expect_u64("huge_still_on_val", v, 1);
	uint32_t d = ioas_new(fd);
	v = 0;
	expect("huge_off", option(fd, OPT_HUGE, OP_SET, d, &v), 0);
	expect_u64("huge_off_alignment", alignment_of(d), PAGE);
	m = mapv(d, FIXED | RW, buf, 0x100, 0x10000);
	expect("huge_off_map_short_length", io(fd, C_MAP, &m), EINVAL);
	m = mapv(d, FIXED | RW, buf, PAGE, 0x10010);
	expect("huge_off_map_unaligned_iova", io(fd, C_MAP, &m), EINVAL);
	m = mapv(d, FIXED | RW, buf + 0x10, PAGE, 0x10000);
	expect("huge_off_map_unaligned_va", io(fd, C_MAP, &m), EINVAL);
	m = mapv(d, RW, buf + 0x10, PAGE, 0);
	expect("huge_off_map_auto_unaligned_va", io(fd, C_MAP, &m), EINVAL);
	expect("huge_off_map_aligned", map_fixed(d, buf, PAGE, 0x10000), 0);
	v = 1;
	expect("huge_on", option(fd, OPT_HUGE, OP_SET, d, &v), 0);
	expect_u64("huge_on_alignment", alignment_of(d), 1);

	/* nothing is pinned while no domain or access uses the IOAS */
	uint32_t u = ioas_new(fd);
	expect("map_unpinned_va_fixed", map_fixed(u, (void *)0x10000, PAGE, 0x10000), 0);
	expect_u64("map_unpinned_va_auto", map_auto(u, (void *)0x200000, PAGE, &e), PAGE);
	expect("map_unpinned_va_0", map_fixed(u, NULL, PAGE, 0x20000), 0);
	/* an allocated IOVA is aligned to at most a huge page (2 MiB) */
	uint32_t h = ioas_new(fd);
	expect_u64("map_auto_align_capped", map_auto(h, (void *)0x40000000, 8 << 20, &e), 2 << 20);
	destroy(fd, h);

	/* allowed ranges steer allocation only */
	uint32_t w = ioas_new(fd);
	struct range r = { 0x40000000, 0x4fffffff };
	expect("allow_set", allow(w, &r, 1), 0);
	expect_u64("map_auto_in_allowed", map_auto(w, buf, 2 * PAGE, &e), 0x40000000);
	expect("map_fixed_outside_allowed", map_fixed(w, buf, PAGE, 0x10000), 0);
	r = (struct range){ 0x10000, 0x1ffff };
	expect("allow_small", allow(w, &r, 1), 0);
	map_auto(w, buf, 0x20000, &e);
	expect("map_auto_no_hole", e, ENOSPC);
	r = (struct range){ 0, 0xfff };
	expect("allow_below_page", allow(w, &r, 1), 0);
	map_auto(w, buf, 0x100, &e);
	expect("map_auto_never_below_page", e, ENOSPC);
	expect("allow_clear", allow(w, NULL, 0), 0);
	expect_u64("map_auto_after_clear", map_auto(w, buf, PAGE, &e), PAGE);

	uint32_t all[] = { a, b, c, d, u, w };
	for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
		destroy(fd, all[i]);
}

static void unmap_checks(void)
{
	uint32_t a = ioas_new(fd);
	uint64_t n = 0x55;

	expect("unmap_all_empty", unmap(a, 0, U64_MAX, &n), 0);
	expect_u64("unmap_all_empty_length", n, 0);
	expect("unmap_all_bad_ioas", unmap(0x7ffffff0, 0, U64_MAX, NULL), ENOENT);
	expect("unmap_bad_ioas_first", unmap(0x7ffffff0, 0x1000, 0, NULL), ENOENT);

	expect("unmap_setup_a", map_fixed(a, buf, 2 * PAGE, 0x10000), 0);
	expect("unmap_setup_b", map_fixed(a, buf, 4 * PAGE, 0x20000), 0);
	expect("unmap_setup_c", map_fixed(a, buf, PAGE, 0x30000), 0);

	expect("unmap_length_zero", unmap(a, 0x10000, 0, NULL), EINVAL);
	expect("unmap_length_u64_max", unmap(a, 0x1000, U64_MAX, NULL), EOVERFLOW);
	expect("unmap_iova_u64_max", unmap(a, U64_MAX, 1, NULL), EOVERFLOW);
	expect("unmap_wraps", unmap(a, 0x2000, U64_MAX - 0x1000, NULL), EOVERFLOW);
	expect("unmap_nothing", unmap(a, 0x50000, PAGE, NULL), ENOENT);
	expect("unmap_partial_head", unmap(a, 0x20000, PAGE, NULL), ENOENT);
	expect("unmap_partial_tail", unmap(a, 0x21000, 3 * PAGE, NULL), ENOENT);
	expect("unmap_inside", unmap(a, 0x21000, PAGE, NULL), ENOENT);
	n = 0x55;
	expect("unmap_exact", unmap(a, 0x20000, 4 * PAGE, &n), 0);
	expect_u64("unmap_exact_length", n, 4 * PAGE);
	expect("unmap_gone", unmap(a, 0x20000, 4 * PAGE, NULL), ENOENT);
	n = 0x55;
	expect("unmap_superset", unmap(a, 0x2f000, 0x3000, &n), 0);
	expect_u64("unmap_superset_length", n, PAGE);

	/*
	 * A whole area then a cut one: ENOENT. (The kernel has unmapped the
	 * whole areas it met before the cut one by then; iommufs keeps its rule
	 * that a failing request changes nothing, so that is not checked.)
	 */
	expect("unmap_setup_b2", map_fixed(a, buf, 4 * PAGE, 0x20000), 0);
	expect("unmap_spans_partial", unmap(a, 0x10000, 0x12000, NULL), ENOENT);
	expect("unmap_spans_partial_cut_kept", map_fixed(a, buf, PAGE, 0x23000), EEXIST);
	expect("unmap_spans_partial_first", unmap(a, 0x10000, 2 * PAGE, NULL), 0);

	expect("unmap_setup_d", map_fixed(a, buf, PAGE, 0), 0);
	expect("unmap_setup_e", map_fixed(a, buf, PAGE, 0xfffffffffffff000ull), 0);
	n = 0;
	expect("unmap_all", unmap(a, 0, U64_MAX, &n), 0);
	expect_u64("unmap_all_length", n, 6 * PAGE);
	expect("unmap_all_again", unmap(a, 0, U64_MAX, &n), 0);
	expect_u64("unmap_all_again_length", n, 0);
	destroy(fd, a);
}

static int copy(struct copy *c)
{
	c->size = sizeof(*c);
	return io(fd, C_COPY, c);
}

static void copy_checks(void)
{
	uint32_t s = ioas_new(fd), d = ioas_new(fd);
	struct copy c;

	expect("copy_setup", map_fixed(s, buf, 4 * PAGE, 0x100000), 0);
	c = (struct copy){ .flags = RW | 8, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x100000 };
	expect("copy_flags_unknown", copy(&c), EOPNOTSUPP);
	c = (struct copy){ .flags = FIXED, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x100000 };
	expect("copy_no_rw", copy(&c), EINVAL);
	c = (struct copy){ .flags = FIXED, .dst_ioas_id = d, .src_ioas_id = s, .length = U64_MAX, .src_iova = 0x100000 };
	expect("copy_length_u64_max", copy(&c), EOVERFLOW);
	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = U64_MAX };
	expect("copy_src_u64_max", copy(&c), EOVERFLOW);
	c = (struct copy){ .flags = FIXED | RW, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x100000, .dst_iova = U64_MAX };
	expect("copy_dst_u64_max", copy(&c), EOVERFLOW);
	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = s, .length = 0, .src_iova = 0x100000 };
	expect("copy_length_zero", copy(&c), EINVAL);
	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = s, .length = 2 * PAGE, .src_iova = 0xfffffffffffff000ull };
	expect("copy_src_wraps", copy(&c), EOVERFLOW);
	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = 0x7ffffff0, .length = PAGE, .src_iova = 0x100000 };
	expect("copy_bad_src", copy(&c), ENOENT);
	c = (struct copy){ .flags = RW, .dst_ioas_id = 0x7ffffff0, .src_ioas_id = s, .length = PAGE, .src_iova = 0x100000 };
	expect("copy_bad_dst", copy(&c), ENOENT);
	c = (struct copy){ .flags = RW, .dst_ioas_id = 0x7ffffff0, .src_ioas_id = s, .length = 0, .src_iova = 0x100000 };
	expect("copy_src_checked_before_dst", copy(&c), EINVAL);
	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x500000 };
	expect("copy_src_unmapped", copy(&c), ENOENT);
	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = s, .length = 2 * PAGE, .src_iova = 0x103000 };
	expect("copy_src_past_end", copy(&c), ENOENT);

	c = (struct copy){ .flags = RW, .dst_ioas_id = d, .src_ioas_id = s, .length = 4 * PAGE, .src_iova = 0x100000 };
	expect("copy_whole_auto", copy(&c), 0);
	expect_u64("copy_whole_auto_iova", c.dst_iova, 4 * PAGE);
	c = (struct copy){ .flags = FIXED | RW, .dst_ioas_id = d, .src_ioas_id = s, .length = 4 * PAGE, .src_iova = 0x100000, .dst_iova = 0x200000 };
	expect("copy_fixed", copy(&c), 0);
	expect_u64("copy_fixed_iova", c.dst_iova, 0x200000);
	expect("copy_fixed_again", copy(&c), EEXIST);

	/* the source may be any part of contiguous areas, not only a whole mapping */
	c = (struct copy){ .flags = FIXED | READ, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x101000, .dst_iova = 0x300000 };
	expect("copy_sub_range", copy(&c), 0);
	expect("copy_setup_next", map_fixed(s, buf + 4 * PAGE, PAGE, 0x104000), 0);
	c = (struct copy){ .flags = FIXED | RW, .dst_ioas_id = d, .src_ioas_id = s, .length = 2 * PAGE, .src_iova = 0x103000, .dst_iova = 0x400000 };
	expect("copy_across_two_areas", copy(&c), 0);
	c = (struct copy){ .flags = FIXED | RW, .dst_ioas_id = s, .src_ioas_id = s, .length = PAGE, .src_iova = 0x100000, .dst_iova = 0x600000 };
	expect("copy_same_ioas", copy(&c), 0);

	/* pages mapped without WRITEABLE stay read-only: a writable copy of them is EPERM (iopt_insert_area) */
	expect("copy_setup_read_only", io(fd, C_MAP, &(struct map){ .size = sizeof(struct map), .flags = FIXED | READ, .ioas_id = s, .user_va = (uintptr_t)(buf + 6 * PAGE), .length = PAGE, .iova = 0x700000 }), 0);
	c = (struct copy){ .flags = FIXED | RW, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x700000, .dst_iova = 0x700000 };
	expect("copy_read_only_as_writeable", copy(&c), EPERM);
	c.flags = RW;
	expect("copy_read_only_as_writeable_auto", copy(&c), EPERM);
	c = (struct copy){ .flags = FIXED | READ, .dst_ioas_id = d, .src_ioas_id = s, .length = PAGE, .src_iova = 0x700000, .dst_iova = 0x700000 };
	expect("copy_read_only_as_read_only", copy(&c), 0);
	expect("copy_read_only_unmap", unmap(d, 0x700000, PAGE, NULL), 0);
	expect("copy_read_only_unmap_src", unmap(s, 0x700000, PAGE, NULL), 0);

	/* copies outlive the source */
	uint64_t n = 0;
	expect("copy_unmap_src", unmap(s, 0, U64_MAX, &n), 0);
	expect_u64("copy_unmap_src_length", n, 6 * PAGE);
	expect("copy_dst_kept", unmap(d, 0x200000, 4 * PAGE, &n), 0);
	/* one destination area per source area */
	expect("copy_across_first_area", unmap(d, 0x400000, PAGE, NULL), 0);
	expect("copy_across_second_area", unmap(d, 0x401000, PAGE, NULL), 0);
	destroy(fd, s);
	destroy(fd, d);
}

static void ranges_checks(void)
{
	uint32_t a = ioas_new(fd);
	struct range r[4];
	struct ranges q;

	memset(r, 0xaa, sizeof r);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = a, .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	expect("iova_ranges", io(fd, C_IOVA_RANGES, &q), 0);
	expect_u64("iova_ranges_num", q.num_iovas, 1);
	expect_u64("iova_ranges_start", r[0].start, 0);
	expect_u64("iova_ranges_last", r[0].last, U64_MAX);
	expect_u64("iova_ranges_alignment", q.out_iova_alignment, 1);
	expect_u64("iova_ranges_rest_untouched", r[1].start, 0xaaaaaaaaaaaaaaaaull);

	memset(r, 0xaa, sizeof r);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = a, .num_iovas = 0, .allowed_iovas = (uintptr_t)r, .out_iova_alignment = 0x55 };
	expect("iova_ranges_too_small", io(fd, C_IOVA_RANGES, &q), EMSGSIZE);
	expect_u64("iova_ranges_too_small_num", q.num_iovas, 1);
	expect_u64("iova_ranges_too_small_alignment", q.out_iova_alignment, 1);
	expect_u64("iova_ranges_too_small_array_untouched", r[0].start, 0xaaaaaaaaaaaaaaaaull);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = a, .num_iovas = 0 };
	expect("iova_ranges_too_small_null", io(fd, C_IOVA_RANGES, &q), EMSGSIZE);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = a, .num_iovas = 1, .allowed_iovas = 8 };
	expect("iova_ranges_bad_pointer", io(fd, C_IOVA_RANGES, &q), EFAULT);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = a, .num_iovas = 4, .reserved = 1, .allowed_iovas = (uintptr_t)r };
	expect("iova_ranges_reserved", io(fd, C_IOVA_RANGES, &q), EOPNOTSUPP);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = 0x7ffffff0, .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	expect("iova_ranges_bad_ioas", io(fd, C_IOVA_RANGES, &q), ENOENT);
	q = (struct ranges){ .size = 24, .ioas_id = a, .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	expect("iova_ranges_size_below_min", io(fd, C_IOVA_RANGES, &q), EINVAL);

	/* allowed ranges are not what IOVA_RANGES reports */
	struct range al = { 0x100000, 0x1fffff };
	expect("iova_ranges_allow", allow(a, &al, 1), 0);
	memset(r, 0, sizeof r);
	q = (struct ranges){ .size = sizeof(q), .ioas_id = a, .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	expect("iova_ranges_after_allow", io(fd, C_IOVA_RANGES, &q), 0);
	expect_u64("iova_ranges_after_allow_num", q.num_iovas, 1);
	expect_u64("iova_ranges_after_allow_last", r[0].last, U64_MAX);
	destroy(fd, a);
}

static void allow_checks(void)
{
	uint32_t a = ioas_new(fd);
	struct range r[3];
	struct allow s;

	r[0] = (struct range){ 0x10000, 0x1ffff };
	s = (struct allow){ .size = sizeof(s), .ioas_id = 0x7ffffff0, .num_iovas = 1, .reserved = 1, .allowed_iovas = (uintptr_t)r };
	expect("allow_reserved_first", io(fd, C_ALLOW_IOVAS, &s), EOPNOTSUPP);
	expect("allow_bad_ioas", allow(0x7ffffff0, r, 1), ENOENT);
	r[0] = (struct range){ 0x10000, 0x10000 };
	expect("allow_start_eq_last", allow(a, r, 1), EINVAL);
	r[0] = (struct range){ 0x20000, 0x10000 };
	expect("allow_start_gt_last", allow(a, r, 1), EINVAL);
	r[0] = (struct range){ 0x10000, 0x1ffff };
	r[1] = (struct range){ 0x1f000, 0x2ffff };
	expect("allow_overlap", allow(a, r, 2), EINVAL);
	expect("allow_bad_pointer", allow(a, (struct range *)8, 1), EFAULT);
	r[1] = (struct range){ 0x20000, 0x2ffff };
	r[2] = (struct range){ 0x100000, 0x100001 };
	expect("allow_three", allow(a, r, 3), 0);
	int e;
	/* the lowest allowed place that fits; abutting ranges count as one */
	expect_u64("allow_auto_first", map_auto(a, buf + PAGE, 0x20000, &e), 0x10000);
	/* a failed replacement keeps the old list */
	r[0] = (struct range){ 0x400000, 0x3fffff };
	expect("allow_bad_keeps_old", allow(a, r, 1), EINVAL);
	expect_u64("allow_auto_second", map_auto(a, buf, 2, &e), 0x100000);
	map_auto(a, buf, PAGE, &e);
	expect("allow_auto_full", e, ENOSPC);
	destroy(fd, a);
}

static void option_checks(void)
{
	int f = open_iommu();
	uint64_t v;

	v = 0x55;
	expect("rlimit_get", option(f, OPT_RLIMIT, OP_GET, 0, &v), 0);
	expect_u64("rlimit_get_default", v, 0);
	/*
	 * SET's own answers (ok, EINVAL, EBUSY) need CAP_SYS_RESOURCE, which a
	 * container's root may lack (EPERM then): only what comes before that
	 * check is asked here.
	 */
	v = 1;
	expect("rlimit_set_object_id", option(f, OPT_RLIMIT, OP_SET, 1, &v), EOPNOTSUPP);
	v = 0;
	expect("rlimit_object_id", option(f, OPT_RLIMIT, OP_GET, 1, &v), EOPNOTSUPP);
	expect("rlimit_op_unknown", option(f, OPT_RLIMIT, 2, 0, &v), EOPNOTSUPP);
	expect("option_unknown", option(f, 2, OP_GET, 0, &v), EOPNOTSUPP);
	struct option o = { .size = sizeof(o), .option_id = OPT_RLIMIT, .op = OP_GET, .reserved = 1 };
	expect("option_reserved", io(f, C_OPTION, &o), EOPNOTSUPP);
	o = (struct option){ .size = 16, .option_id = OPT_RLIMIT, .op = OP_GET };
	expect("option_size_below_min", io(f, C_OPTION, &o), EINVAL);

	uint32_t a = ioas_new(f);
	v = 0x55;
	expect("huge_get", option(f, OPT_HUGE, OP_GET, a, &v), 0);
	expect_u64("huge_get_default", v, 1);
	v = 2;
	expect("huge_set_2", option(f, OPT_HUGE, OP_SET, a, &v), EINVAL);
	v = 0;
	expect("huge_set_0", option(f, OPT_HUGE, OP_SET, a, &v), 0);
	expect("huge_set_0_again", option(f, OPT_HUGE, OP_SET, a, &v), 0);
	v = 0x55;
	option(f, OPT_HUGE, OP_GET, a, &v);
	expect_u64("huge_get_0", v, 0);
	v = 1;
	expect("huge_set_1", option(f, OPT_HUGE, OP_SET, a, &v), 0);
	v = 0x55;
	expect("huge_bad_ioas", option(f, OPT_HUGE, OP_GET, 0x7ffffff0, &v), ENOENT);
	expect_u64("huge_bad_ioas_val_untouched", v, 0x55);
	expect("huge_object_0", option(f, OPT_HUGE, OP_GET, 0, &v), ENOENT);
	expect("huge_op_unknown", option(f, OPT_HUGE, 2, a, &v), EOPNOTSUPP);
	expect("huge_op_unknown_bad_ioas", option(f, OPT_HUGE, 2, 0x7ffffff0, &v), ENOENT);

	/* only val64 is written back */
	uint8_t raw[32];
	memset(raw, 0, sizeof raw);
	o = (struct option){ .size = 32, .option_id = OPT_HUGE, .op = OP_GET, .object_id = a };
	memcpy(raw, &o, sizeof o);
	expect("option_size_32", io(f, C_OPTION, raw), 0);
	memcpy(&o, raw, sizeof o);
	expect_u64("option_size_32_val", o.val64, 1);
	expect_u64("option_size_32_fields_kept", (uint64_t)o.size << 32 | o.object_id, (32ull << 32) | a);

	close(f);
}

static int vfio_ioas(int f, uint16_t op, uint32_t *id)
{
	struct vfio_ioas v = { .size = sizeof(v), .ioas_id = *id, .op = op };
	int e = io(f, C_VFIO_IOAS, &v);
	*id = v.ioas_id;
	return e;
}

static void vfio_ioas_checks(void)
{
	int f = open_iommu();
	uint32_t id = 0;

	expect("vfio_ioas_get_none", vfio_ioas(f, V_GET, &id), ENODEV);
	id = 1;
	expect("vfio_ioas_set_missing", vfio_ioas(f, V_SET, &id), ENOENT);
	uint32_t a = ioas_new(f), b = ioas_new(f);
	id = b;
	expect("vfio_ioas_set", vfio_ioas(f, V_SET, &id), 0);
	id = 0;
	expect("vfio_ioas_get", vfio_ioas(f, V_GET, &id), 0);
	expect_u64("vfio_ioas_get_id", id, b);
	id = a;
	expect("vfio_ioas_set_replace", vfio_ioas(f, V_SET, &id), 0);
	id = 0;
	vfio_ioas(f, V_GET, &id);
	expect_u64("vfio_ioas_get_replaced", id, a);
	expect("vfio_ioas_op_unknown", vfio_ioas(f, 3, &id), EOPNOTSUPP);
	struct vfio_ioas v = { .size = sizeof(v), .op = V_GET, .reserved = 1 };
	expect("vfio_ioas_reserved", io(f, C_VFIO_IOAS, &v), EOPNOTSUPP);
	v = (struct vfio_ioas){ .size = 8, .op = V_GET };
	expect("vfio_ioas_size_below_min", io(f, C_VFIO_IOAS, &v), EINVAL);
	id = 0;
	expect("vfio_ioas_clear", vfio_ioas(f, V_CLEAR, &id), 0);
	expect("vfio_ioas_get_cleared", vfio_ioas(f, V_GET, &id), ENODEV);
	expect("vfio_ioas_clear_again", vfio_ioas(f, V_CLEAR, &id), 0);
	/* the compat IOAS holds no reference: DESTROY works and GET is ENODEV again */
	id = b;
	vfio_ioas(f, V_SET, &id);
	expect("vfio_ioas_destroy_compat", destroy(f, b), 0);
	expect("vfio_ioas_get_destroyed", vfio_ioas(f, V_GET, &id), ENODEV);
	close(f);
}

static void map_file_checks(void)
{
	uint32_t a = ioas_new(fd);
	int mfd = memfd_create("conform-ioas", 0);
	if (ftruncate(mfd, 4 * PAGE))
		exit(1);
	struct map_file m;

	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = mfd, .start = 0, .length = 2 * PAGE };
	expect("map_file_auto", io(fd, C_MAP_FILE, &m), 0);
	expect_u64("map_file_auto_iova", m.iova, 2 * PAGE);
	m = (struct map_file){ .size = sizeof(m), .flags = FIXED | READ, .ioas_id = a, .fd = mfd, .start = PAGE, .length = PAGE, .iova = 0x100000 };
	expect("map_file_fixed", io(fd, C_MAP_FILE, &m), 0);
	expect("map_file_fixed_overlap", io(fd, C_MAP_FILE, &m), EEXIST);
	m = (struct map_file){ .size = sizeof(m), .flags = RW | 8, .ioas_id = a, .fd = mfd, .length = PAGE };
	expect("map_file_flags_unknown", io(fd, C_MAP_FILE, &m), EOPNOTSUPP);
	m = (struct map_file){ .size = sizeof(m), .flags = FIXED, .ioas_id = a, .fd = mfd, .length = PAGE };
	expect("map_file_no_rw", io(fd, C_MAP_FILE, &m), EINVAL);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = mfd, .length = U64_MAX };
	expect("map_file_length_u64_max", io(fd, C_MAP_FILE, &m), EOVERFLOW);
	m = (struct map_file){ .size = sizeof(m), .flags = FIXED | RW, .ioas_id = a, .fd = mfd, .length = PAGE, .iova = U64_MAX };
	expect("map_file_iova_u64_max", io(fd, C_MAP_FILE, &m), EOVERFLOW);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = -1, .length = PAGE };
	expect("map_file_fd_minus_1", io(fd, C_MAP_FILE, &m), EBADF);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = 1000, .length = PAGE };
	expect("map_file_fd_closed", io(fd, C_MAP_FILE, &m), EBADF);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = 0x7ffffff0, .fd = -1, .length = PAGE };
	expect("map_file_ioas_before_fd", io(fd, C_MAP_FILE, &m), ENOENT);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = mfd, .length = 0 };
	expect("map_file_length_zero", io(fd, C_MAP_FILE, &m), EINVAL);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = mfd, .start = U64_MAX - 0x10, .length = PAGE };
	expect("map_file_start_wraps", io(fd, C_MAP_FILE, &m), EOVERFLOW);
	m = (struct map_file){ .size = 32, .flags = RW, .ioas_id = a, .fd = mfd, .length = PAGE };
	expect("map_file_size_below_min", io(fd, C_MAP_FILE, &m), EINVAL);
	/* the file range is checked before the descriptor is looked up */
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = -1, .length = 0 };
	expect("map_file_length_before_fd", io(fd, C_MAP_FILE, &m), EINVAL);
	m = (struct map_file){ .size = sizeof(m), .flags = RW, .ioas_id = a, .fd = -1, .start = U64_MAX - 0x10, .length = PAGE };
	expect("map_file_wrap_before_fd", io(fd, C_MAP_FILE, &m), EOVERFLOW);
	/* the descriptor is looked up before the IOVA is checked; the pages' length before the IOVA too */
	m = (struct map_file){ .size = sizeof(m), .flags = FIXED | READ, .ioas_id = a, .fd = 1000, .start = PAGE, .length = PAGE, .iova = 0x100000 };
	expect("map_file_fd_before_iova", io(fd, C_MAP_FILE, &m), EBADF);
	m = (struct map_file){ .size = sizeof(m), .flags = FIXED | RW, .ioas_id = a, .fd = mfd, .length = 0xfffffffffffffffeull, .iova = 0 };
	expect("map_file_length_too_long", io(fd, C_MAP_FILE, &m), EINVAL);
	/* a writable copy of a file mapped read-only: EPERM */
	{
		uint32_t d2 = ioas_new(fd);
		struct copy c = { .size = sizeof(c), .flags = FIXED | RW, .dst_ioas_id = d2, .src_ioas_id = a, .length = PAGE, .src_iova = 0x100000, .dst_iova = 0x100000 };
		expect("map_file_read_only_copy_writeable", io(fd, C_COPY, &c), EPERM);
		destroy(fd, d2);
	}
	/* nothing is pinned while no domain uses the IOAS: a range past the end of the file maps */
	m = (struct map_file){ .size = sizeof(m), .flags = FIXED | RW, .ioas_id = a, .fd = mfd, .start = 2 * PAGE, .length = 4 * PAGE, .iova = 0x200000 };
	expect("map_file_past_eof_unpinned", io(fd, C_MAP_FILE, &m), 0);
	uint64_t n = 0;
	expect("map_file_unmap_all", unmap(a, 0, U64_MAX, &n), 0);
	expect_u64("map_file_unmap_all_length", n, 7 * PAGE);
	close(mfd);
	destroy(fd, a);
}

static void change_process_checks(void)
{
	int f = open_iommu();
	struct change_process c = { .size = sizeof(c) };

	expect("change_process_empty", io(f, C_CHANGE_PROCESS, &c), 0);
	c.reserved = 1;
	expect("change_process_reserved", io(f, C_CHANGE_PROCESS, &c), EOPNOTSUPP);
	c.reserved = 0;
	c.size = 4;
	expect("change_process_size_below_min", io(f, C_CHANGE_PROCESS, &c), EINVAL);
	c.size = sizeof(c);

	int sfd = fd;
	fd = f;
	uint32_t a = ioas_new(f), b = ioas_new(f);
	int mfd = memfd_create("conform-cp", 0);
	if (ftruncate(mfd, 2 * PAGE))
		exit(1);
	struct map_file m = { .size = sizeof(m), .flags = FIXED | RW, .ioas_id = a, .fd = mfd, .length = 2 * PAGE, .iova = 0x10000 };
	expect("change_process_map_file", io(f, C_MAP_FILE, &m), 0);
	struct copy cp = { .size = sizeof(cp), .flags = FIXED | RW, .dst_ioas_id = b, .src_ioas_id = a, .length = PAGE, .src_iova = 0x10000, .dst_iova = 0x10000 };
	expect("change_process_copy", io(f, C_COPY, &cp), 0);
	expect("change_process_files_only", io(f, C_CHANGE_PROCESS, &c), 0);

	pid_t pid = fork();
	if (pid == 0)
		_exit(io(f, C_CHANGE_PROCESS, &c));
	int st = 0;
	waitpid(pid, &st, 0);
	expect("change_process_child", WIFEXITED(st) ? WEXITSTATUS(st) : 255, 0);

	expect("change_process_user_map", map_fixed(b, buf, PAGE, 0x40000), 0);
	expect("change_process_user_va", io(f, C_CHANGE_PROCESS, &c), EINVAL);
	expect("change_process_user_unmapped", unmap(b, 0x40000, PAGE, NULL), 0);
	expect("change_process_files_again", io(f, C_CHANGE_PROCESS, &c), 0);
	fd = sfd;
	close(mfd);
	close(f);
}

/*
 * A struct in read-only memory: EFAULT where the kernel writes it back, and
 * the failed ioctl leaves no half-made ID behind; fine where the kernel only
 * reads it (DESTROY, ALLOW_IOVAS, CHANGE_PROCESS: a const struct; VFIO_IOAS
 * writes it back for GET only).
 */
static void readonly_checks(void)
{
	int f = open_iommu();
	uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t a = ioas_new(f), b = ioas_new(f);
	struct ioas_alloc *ia = (struct ioas_alloc *)p;
	struct ranges *q = (struct ranges *)(p + 64);
	struct destroy *d = (struct destroy *)(p + 128);
	struct range *r = (struct range *)(p + 192);
	struct allow *al = (struct allow *)(p + 256);
	struct change_process *cp = (struct change_process *)(p + 320);
	struct vfio_ioas *vs = (struct vfio_ioas *)(p + 384), *vc = vs + 1, *vg = vs + 2;
	*ia = (struct ioas_alloc){ .size = sizeof(*ia) };
	*q = (struct ranges){ .size = sizeof(*q), .ioas_id = a };
	*d = (struct destroy){ .size = sizeof(*d), .id = b };
	*r = (struct range){ 0x100000, 0x1fffff };
	*al = (struct allow){ .size = sizeof(*al), .ioas_id = a, .num_iovas = 1, .allowed_iovas = (uintptr_t)r };
	*cp = (struct change_process){ .size = sizeof(*cp) };
	*vs = (struct vfio_ioas){ .size = sizeof(*vs), .ioas_id = a, .op = V_SET };
	*vc = (struct vfio_ioas){ .size = sizeof(*vc), .op = V_CLEAR };
	*vg = (struct vfio_ioas){ .size = sizeof(*vg), .op = V_GET };
	mprotect(p, PAGE, PROT_READ);
	expect("readonly_ioas_alloc", io(f, C_IOAS_ALLOC, ia), EFAULT);
	expect("readonly_iova_ranges", io(f, C_IOVA_RANGES, q), EFAULT);
	expect("readonly_destroy", io(f, C_DESTROY, d), 0);
	expect_u64("readonly_ioas_alloc_no_id", ioas_new(f), b);
	expect("readonly_destroy_again", io(f, C_DESTROY, d), 0);
	expect("readonly_allow_iovas", io(f, C_ALLOW_IOVAS, al), 0);
	expect("readonly_change_process", io(f, C_CHANGE_PROCESS, cp), 0);
	expect("readonly_vfio_ioas_set", io(f, C_VFIO_IOAS, vs), 0);
	expect("readonly_vfio_ioas_get", io(f, C_VFIO_IOAS, vg), EFAULT);
	expect("readonly_vfio_ioas_clear", io(f, C_VFIO_IOAS, vc), 0);
	uint32_t none = 0;
	expect("readonly_vfio_ioas_cleared", vfio_ioas(f, V_GET, &none), ENODEV);
	munmap(p, PAGE);
	close(f);
}

int main(void)
{
	void *p = mmap(NULL, 6 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	buf = (uint8_t *)(((uintptr_t)p + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
	memset(buf, 0x5a, 4 << 20);
	setvbuf(stdout, NULL, _IOLBF, 0);

	dispatch();
	ids();
	fd = open_iommu();
	map_checks();
	unmap_checks();
	copy_checks();
	ranges_checks();
	allow_checks();
	map_file_checks();
	close(fd);
	option_checks();
	vfio_ioas_checks();
	change_process_checks();
	readonly_checks();
	return fails ? 1 : 0;
}
