/*
 * iommufs ioctl shim: the binary frame format of docs/frames.md, and nothing
 * else. The shim knows no ioctl struct: it sends the caller's `size` (or
 * `argsz`) bytes and lets the server name, in a RETRY frame, every buffer the
 * struct's pointers refer to (as CUSE's retry iovecs do).
 *
 * All integers are little endian; sections are padded to 8 bytes.
 */
#ifndef IOMMUFS_SHIM_H
#define IOMMUFS_SHIM_H

#include <stdint.h>

#define IOMF_MAGIC 0x464d4f49u /* "IOMF" */
#define IOMF_VERSION 1
#define IOMF_HEADER 32u

enum iomf_kind {
	IOMF_REQUEST = 1,
	IOMF_REPLY = 2,
	IOMF_RETRY = 3,
};

/* Buffer entry flags in a REQUEST. */
enum iomf_buffer_flags {
	IOMF_BUF_FAULT = 1, /* the caller cannot read addr: no data follows */
	IOMF_BUF_FD = 2,    /* addr is an fd number; 4 data bytes: its iommufd context ID */
	IOMF_BUF_ARG = 4,   /* addr is the ioctl's raw argument (pointer or integer); no data */
	IOMF_BUF_OWN = 8,   /* with ARG: the struct's addresses and fd numbers are the writer's own */
	IOMF_BUF_READONLY = 16, /* with ARG: the writer cannot write the struct back (read-only memory) */
};

/* Entry flags in a REPLY. */
enum iomf_reply_flags {
	IOMF_REPLY_RETVAL = 4, /* not a write: addr is the ioctl's return value */
	IOMF_REPLY_NEWFD = 8,  /* give the caller a descriptor for handle addr; data: u32 where in the struct its
				* number goes, then optionally the path (under the mount) the descriptor opens */
};

/* A NEWFD offset naming no struct field: the descriptor is the ioctl's return value. */
#define NEWFD_RETVAL 0xffffffffu

struct iomf_header {
	uint32_t magic;
	uint16_t version;
	uint16_t kind;
	uint32_t total_len;
	uint32_t cmd;
	uint32_t target_or_errno; /* REQUEST: 0 or N+1 (vfioN); REPLY: positive errno or 0 */
	uint32_t struct_len;
	uint32_t nbuf;
	uint32_t msg_len;
};

struct iomf_buffer {
	uint64_t addr;
	uint32_t len;
	uint32_t flags;
};

/* The server refuses frames above 17 MiB; the shim never builds one. */
#define IOMF_MAX_FRAME (17u * 1024u * 1024u)
/*
 * The most struct bytes the shim sends, as many as the server reads of a
 * real ioctl's (16 MiB, docs/limits.md). It sends the caller's size bytes,
 * or as many as it could read, and the server walks the tail as the kernel
 * does: a nonzero byte is E2BIG, a byte not sent EFAULT.
 */
#define IOMF_MAX_STRUCT (16u * 1024u * 1024u)
/*
 * The most struct bytes an ioctl writes back: the kernel copies out at most
 * its own struct, and none the server knows is larger (a unit test keeps this
 * so). The shim probes only these for writing, so a large size over memory
 * that is read-only past the struct gets the kernel's answer, not EFAULT.
 */
#define IOMF_MAX_WRITTEN_BACK 256u

#define IOMF_PAD8(n) (((n) + 7u) & ~(uint32_t)7u)

_Static_assert(sizeof(struct iomf_header) == IOMF_HEADER, "frame header is 32 bytes");
_Static_assert(sizeof(struct iomf_buffer) == 16, "buffer entry header is 16 bytes");

#endif
