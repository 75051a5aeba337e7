/*
 * The benchmarks' C reference: a libfuse3 low-level server, single-threaded
 * (fuse_session_loop), with the caching iommufs uses for files the model
 * changes: entries cached, attributes not, direct_io and no FLUSH per open.
 *   file    "0\n", like an attribute the model changes
 *   echo    a write is stored per open; a read returns it (a transaction node)
 *   cached  "1\n" kept by the kernel (keep_cache, exact size, day-long TTLs, no
 *           FLUSH): OPEN + RELEASE only, the least a file with per-open handles costs
 *
 *   ref-server DIR      (foreground; SIGINT/SIGTERM unmount)
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { INO_ROOT = 1, INO_FILE, INO_ECHO, INO_CACHED };
static const char FILE_TEXT[] = "0\n";
static const char CACHED_TEXT[] = "1\n";
static const double DAY = 86400;

struct echo { size_t len; char data[4096]; };

static int stat_of(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	switch (ino) {
	case INO_ROOT: st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; return 0;
	case INO_FILE: st->st_mode = S_IFREG | 0444; st->st_nlink = 1; st->st_size = 4096; return 0;
	case INO_ECHO: st->st_mode = S_IFREG | 0666; st->st_nlink = 1; st->st_size = 4096; return 0;
	case INO_CACHED: st->st_mode = S_IFREG | 0444; st->st_nlink = 1; st->st_size = sizeof CACHED_TEXT - 1; return 0;
	}
	return -1;
}

static void ref_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof e);
	e.ino = parent != INO_ROOT ? 0 : !strcmp(name, "file") ? INO_FILE : !strcmp(name, "echo") ? INO_ECHO : !strcmp(name, "cached") ? INO_CACHED : 0;
	if (!e.ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	stat_of(e.ino, &e.attr);
	e.entry_timeout = DAY;
	e.attr_timeout = e.ino == INO_CACHED ? DAY : 0;
	fuse_reply_entry(req, &e);
}

static void ref_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	if (stat_of(ino, &st))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, ino == INO_CACHED ? DAY : 0);
}

static void ref_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fi->direct_io = ino != INO_CACHED;
	fi->keep_cache = ino == INO_CACHED;
	fi->noflush = 1;
	fi->fh = ino == INO_ECHO ? (uintptr_t)calloc(1, sizeof(struct echo)) : 0;
	fuse_reply_open(req, fi);
}

static void ref_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	const char *data = FILE_TEXT;
	size_t len = sizeof FILE_TEXT - 1;
	if (ino == INO_CACHED) {
		data = CACHED_TEXT;
		len = sizeof CACHED_TEXT - 1;
	}
	if (ino == INO_ECHO) {
		struct echo *e = (struct echo *)(uintptr_t)fi->fh;
		data = e->data;
		len = e->len;
		off = 0; /* like iommufs: a read after the write starts at the reply */
	}
	if ((size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, data + off, len - off < size ? len - off : size);
}

static void ref_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)off;
	if (ino != INO_ECHO) {
		fuse_reply_err(req, EACCES);
		return;
	}
	struct echo *e = (struct echo *)(uintptr_t)fi->fh;
	e->len = size < sizeof e->data ? size : sizeof e->data;
	memcpy(e->data, buf, e->len);
	fuse_reply_write(req, size);
}

static void ref_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops OPS = {
	.lookup = ref_lookup, .getattr = ref_getattr, .open = ref_open,
	.read = ref_read, .write = ref_write, .release = ref_release,
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ref-server DIR\n");
		return 2;
	}
	char *fargv[] = { argv[0], "-o", "fsname=bench-ref,subtype=benchref", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &OPS, sizeof OPS, NULL);
	if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[1]))
		return 1;
	printf("READY\n");
	fflush(stdout);
	int rc = fuse_session_loop(se);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	return rc ? 1 : 0;
}
