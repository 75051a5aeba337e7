/* Frames (docs/frames.md): building a request, reading and splitting a reply. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <string.h>
#include <unistd.h>

#include "frames.h"

int add_entry(struct request *r, struct entry e)
{
	if (r->ne == r->cap) {
		size_t n = r->cap ? r->cap * 2 : 8;
		struct entry *p = realloc(r->e, n * sizeof *p);
		if (!p)
			return -1;
		r->e = p;
		r->cap = n;
	}
	r->e[r->ne++] = e;
	return 0;
}

void free_request(struct request *r)
{
	for (size_t i = 0; i < r->ne; i++)
		free(r->e[i].data);
	free(r->e);
}

uint8_t *build_request(const struct request *r, size_t *len)
{
	size_t total = IOMF_HEADER + IOMF_PAD8(r->st_len);
	for (size_t i = 0; i < r->ne; i++)
		total += sizeof(struct iomf_buffer) + (r->e[i].data ? IOMF_PAD8(r->e[i].len) : 0);
	if (total > IOMF_MAX_FRAME) {
		errno = ENOMEM;
		return NULL;
	}
	uint8_t *f = calloc(1, total);
	if (!f)
		return NULL;
	struct iomf_header h = {
		.magic = IOMF_MAGIC,
		.version = IOMF_VERSION,
		.kind = IOMF_REQUEST,
		.total_len = (uint32_t)total,
		.cmd = r->cmd,
		.target_or_errno = 0,
		.struct_len = r->st_len,
		.nbuf = (uint32_t)r->ne,
		.msg_len = 0,
	};
	memcpy(f, &h, sizeof h);
	size_t off = IOMF_HEADER;
	if (r->st_len)
		memcpy(f + off, r->st, r->st_len);
	off += IOMF_PAD8(r->st_len);
	for (size_t i = 0; i < r->ne; i++) {
		struct iomf_buffer b = { r->e[i].addr, r->e[i].len, r->e[i].flags };
		memcpy(f + off, &b, sizeof b);
		off += sizeof b;
		if (r->e[i].data) {
			memcpy(f + off, r->e[i].data, r->e[i].len);
			off += IOMF_PAD8(r->e[i].len);
		}
	}
	*len = total;
	return f;
}

int write_all(int fd, const uint8_t *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(fd, p + done, n - done, (off_t)done);
		if (w < 0)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

/*
 * Reads the reply to a request of `sent` bytes. Offsets at or past the end of
 * the last write read the reply from its beginning (docs/frames.md), so the
 * kernel may split a large read into several requests without losing bytes.
 */
uint8_t *read_reply(int fd, size_t sent, size_t *len)
{
	size_t cap = 4096, have = 0, total = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		size_t want = (total ? total : cap) - have;
		ssize_t n = pread(fd, buf + have, want, (off_t)(sent + have));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		have += (size_t)n;
		if (!total && have >= IOMF_HEADER) {
			struct iomf_header h;
			memcpy(&h, buf, sizeof h);
			if (h.magic != IOMF_MAGIC || h.version != IOMF_VERSION || h.total_len < IOMF_HEADER || h.total_len > IOMF_MAX_FRAME) {
				errno = EPROTO;
				goto fail;
			}
			total = h.total_len;
			if (total > cap) {
				uint8_t *p = realloc(buf, total);
				if (!p)
					goto fail;
				buf = p;
				cap = total;
			}
		}
		if (total && have >= total)
			break;
		if (!total && have == cap)
			break;
	}
	if (!total || have < total) {
		errno = EIO;
		goto fail;
	}
	*len = total;
	return buf;
fail:
	free(buf);
	return NULL;
}

int parse_reply(const uint8_t *f, size_t n, struct reply *r)
{
	memcpy(&r->h, f, sizeof r->h);
	size_t off = IOMF_HEADER;
	if (r->h.kind != IOMF_REPLY && r->h.kind != IOMF_RETRY)
		return -1;
	if (r->h.struct_len > n - off)
		return -1;
	r->st = f + off;
	off += IOMF_PAD8(r->h.struct_len);
	if (r->h.nbuf > n / sizeof(struct iomf_buffer))
		return -1;
	r->b = calloc(r->h.nbuf ? r->h.nbuf : 1, sizeof *r->b);
	if (!r->b)
		return -1;
	for (uint32_t i = 0; i < r->h.nbuf; i++) {
		struct iomf_buffer b;
		if (off + sizeof b > n)
			return -1;
		memcpy(&b, f + off, sizeof b);
		off += sizeof b;
		r->b[i].addr = b.addr;
		r->b[i].len = b.len;
		r->b[i].flags = b.flags;
		r->b[i].data = NULL;
		if (r->h.kind == IOMF_REPLY) {
			if (b.len > n - off)
				return -1;
			r->b[i].data = f + off;
			off += IOMF_PAD8(b.len);
		}
	}
	if (r->h.msg_len > n - (off < n ? off : n))
		return -1;
	r->msg = (const char *)f + off;
	return 0;
}

/* One request/reply exchange on fd (the shim holds its io_lock). The reply frame is malloc'd. */
uint8_t *exchange(int fd, const struct request *r, size_t *len)
{
	size_t n;
	uint8_t *f = build_request(r, &n);
	if (!f)
		return NULL;
	int rc = write_all(fd, f, n);
	free(f);
	if (rc < 0)
		return NULL;
	return read_reply(fd, n, len);
}

int read_struct(struct request *r, mem_reader read, void *who, uint64_t addr)
{
	uint32_t size = 0;
	if (read(who, addr, &size, 4) != 4)
		return 0;
	uint32_t want = size < 4 ? 4 : size > IOMF_MAX_STRUCT ? IOMF_MAX_STRUCT : size;
	uint8_t *st = malloc(want);
	if (!st)
		return errno = ENOMEM, -1;
	ssize_t got = read(who, addr, st, want);
	if (got < 4) {
		/* unmapped between the two reads: send the size alone */
		memcpy(st, &size, 4);
		got = 4;
	}
	r->st = st;
	r->st_len = (uint32_t)got;
	return 0;
}

static int has_buffer(const struct request *r, uint64_t addr, uint32_t len)
{
	for (size_t i = 0; i < r->ne; i++)
		if (!(r->e[i].flags & (IOMF_BUF_FD | IOMF_BUF_ARG)) && r->e[i].addr == addr && (r->e[i].len >= len || !r->e[i].data))
			return 1;
	return 0;
}

/* Rounds of RETRY before giving up: the server names every buffer at once, from the struct alone. */
#define MAX_ROUNDS 4

uint8_t *transact(int fd, struct request *r, mem_reader read, void *who, struct reply *rep)
{
	for (int round = 0;; round++) {
		size_t flen;
		uint8_t *f = exchange(fd, r, &flen);
		if (!f) {
			if (!errno)
				errno = EIO;
			return NULL;
		}
		if (parse_reply(f, flen, rep) < 0) {
			free(rep->b);
			rep->b = NULL;
			free(f);
			return errno = EPROTO, NULL;
		}
		if (rep->h.kind == IOMF_REPLY)
			return f;
		int err = round + 1 >= MAX_ROUNDS ? EPROTO : 0;
		for (uint32_t i = 0; i < rep->h.nbuf && !err; i++) {
			uint64_t a = rep->b[i].addr;
			uint32_t l = rep->b[i].len;
			if (has_buffer(r, a, l))
				continue;
			struct entry e = { .addr = a, .len = l, .flags = 0, .data = malloc(l ? l : 1) };
			if (!e.data || read(who, a, e.data, l) != (ssize_t)l) {
				free(e.data);
				e = (struct entry){ .addr = a, .flags = IOMF_BUF_FAULT };
			}
			if (add_entry(r, e) < 0) {
				free(e.data);
				err = ENOMEM;
			}
		}
		free(rep->b);
		rep->b = NULL;
		free(f);
		if (err)
			return errno = err, NULL;
	}
}

int apply_reply(const struct reply *rep, uint64_t addr, const struct reply_sink *sink, int64_t *retval)
{
	uint8_t *st = (uint8_t *)rep->st; /* in the caller's own copy of the frame */
	int err = (int)rep->h.target_or_errno;
	int last = -1;
	*retval = 0;
	for (uint32_t i = 0; i < rep->h.nbuf && !err; i++) {
		uint32_t off;
		if (!(rep->b[i].flags & IOMF_REPLY_NEWFD) || rep->b[i].len < 4)
			continue;
		memcpy(&off, rep->b[i].data, 4);
		if (off == NEWFD_RETVAL) {
			last = (int)i;
			continue;
		}
		if ((uint64_t)off + 4 > rep->h.struct_len) {
			err = EPROTO;
			break;
		}
		int nfd = sink->install(sink->who, (uint32_t)rep->b[i].addr, (const char *)rep->b[i].data + 4, rep->b[i].len - 4, 0);
		if (nfd < 0)
			err = -nfd;
		else
			memcpy(st + off, &nfd, 4);
	}
	if (rep->h.struct_len && sink->write(sink->who, addr, st, rep->h.struct_len) < 0)
		err = EFAULT;
	for (uint32_t i = 0; i < rep->h.nbuf; i++) {
		if (rep->b[i].flags & IOMF_REPLY_RETVAL)
			*retval = (int64_t)rep->b[i].addr;
		else if (!(rep->b[i].flags & IOMF_REPLY_NEWFD) && sink->write(sink->who, rep->b[i].addr, rep->b[i].data, rep->b[i].len) < 0)
			err = EFAULT;
	}
	if (!err && last >= 0) {
		int nfd = sink->install(sink->who, (uint32_t)rep->b[last].addr, (const char *)rep->b[last].data + 4, rep->b[last].len - 4, 1);
		if (nfd < 0)
			err = -nfd;
		else
			*retval = nfd;
	}
	return err;
}

int handed_file(const char *mount_dir, const char *path, uint32_t plen, char *out, size_t cap)
{
	int n = plen ? snprintf(out, cap, "%s/%.*s", mount_dir, (int)plen, path) : snprintf(out, cap, "/dev/null");
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
