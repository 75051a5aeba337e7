/*
 * Frames (docs/frames.md) as their clients build and read them: the ioctl
 * shim inside a program, and `iommufs exec --namespace`'s supervisor outside
 * it. Hidden: the shim's only exported symbols are the calls it interposes.
 */
#ifndef IOMMUFS_FRAMES_H
#define IOMMUFS_FRAMES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "iommufs-shim.h"

#define FRAMES_API __attribute__((visibility("hidden")))

struct entry {
	uint64_t addr;
	uint32_t len;
	uint32_t flags;
	uint8_t *data; /* len bytes, or NULL for FAULT */
};

struct request {
	uint32_t cmd;
	const uint8_t *st;
	uint32_t st_len;
	struct entry *e;
	size_t ne, cap;
};

struct reply {
	struct iomf_header h;
	const uint8_t *st;
	struct {
		uint64_t addr;
		uint32_t len;
		uint32_t flags;
		const uint8_t *data;
	} *b;
	const char *msg;
};

FRAMES_API int add_entry(struct request *r, struct entry e);
FRAMES_API void free_request(struct request *r);
/* The REQUEST frame for r, malloc'd; *len its size. NULL with errno on failure. */
FRAMES_API uint8_t *build_request(const struct request *r, size_t *len);
FRAMES_API int write_all(int fd, const uint8_t *p, size_t n);
/* Reads the reply to a request of `sent` bytes (malloc'd; *len its size). */
FRAMES_API uint8_t *read_reply(int fd, size_t sent, size_t *len);
/* Splits a reply frame into its parts (pointers into f; r->b malloc'd). -1 if it is malformed. */
FRAMES_API int parse_reply(const uint8_t *f, size_t n, struct reply *r);
/* One request/reply exchange on fd. The reply frame is malloc'd. */
FRAMES_API uint8_t *exchange(int fd, const struct request *r, size_t *len);

/* Reads len bytes at addr in the caller the request is for (`who`): bytes read, short at an unmapped page, or -1. */
typedef ssize_t (*mem_reader)(void *who, uint64_t addr, void *dst, size_t len);

/*
 * The struct at addr into r->st (malloc'd), as an ioctl takes it: its first
 * u32 says the size (at least 4, at most IOMF_MAX_STRUCT). If not even that
 * can be read, the struct goes out empty: the server answers ENOTTY for an
 * unknown command first, else EFAULT, in the kernel's order. A tail that
 * cannot be read goes out short: the server walks what came as the kernel
 * walks the tail (a nonzero byte E2BIG, a missing one EFAULT). -1 (ENOMEM)
 * on failure.
 */
FRAMES_API int read_struct(struct request *r, mem_reader read, void *who, uint64_t addr);

/*
 * Sends r on fd until the server answers: each RETRY names buffers, which
 * are read from the caller (an unreadable one goes as FAULT) and sent with
 * the request again. Returns the reply frame (malloc'd), split into *rep;
 * NULL with errno on failure.
 */
FRAMES_API uint8_t *transact(int fd, struct request *r, mem_reader read, void *who, struct reply *rep);

/* Where a reply lands in the caller: its memory, and the descriptors the kernel would install there. */
struct reply_sink {
	void *who;
	/* Writes len bytes at addr of the caller: 0, or -1. */
	int (*write)(void *who, uint64_t addr, const void *src, size_t len);
	/*
	 * Gives the caller a descriptor for the server's `handle`: the mount's
	 * file `path` (plen bytes, not NUL-terminated), or with no path a
	 * placeholder the server knows by handle. `retval`: it is the ioctl's
	 * return value, given last, once everything else succeeded. Returns its
	 * number, or -errno.
	 */
	int (*install)(void *who, uint32_t handle, const char *path, uint32_t plen, int retval);
};

/*
 * A REPLY carried into the caller as the kernel's ioctl leaves it: the
 * descriptors struct fields name (their numbers go in the struct), the
 * struct (even with an errno: HWPT_INVALIDATE's entry_num), the out buffers,
 * then a descriptor that is the return value. Returns 0 with *retval, or a
 * positive errno.
 */
FRAMES_API int apply_reply(const struct reply *rep, uint64_t addr, const struct reply_sink *sink, int64_t *retval);

/* The file a NEWFD entry's path names: MOUNT/path, or /dev/null for none (a placeholder). 0, or -ENAMETOOLONG. */
FRAMES_API int handed_file(const char *mount_dir, const char *path, uint32_t plen, char *out, size_t cap);

#endif
