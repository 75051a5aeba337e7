/*
 * A libfuse3 low-level session served from Node's main loop.
 *
 * The session fd is watched with uv_poll on the loop Node runs; each readable
 * event drains the requests the kernel queued and hands each one to JS
 * synchronously, in the order the kernel queued them (one thread, no hop).
 * JS answers a request at once or later: requests are kept in a table under a
 * small integer id, and every reply function takes that id, so a late or
 * repeated reply is refused instead of touching freed memory.
 *
 * Read-only opens of inodes JS marked with setSnapshot (sysfs-style
 * attributes under fixed paths) are served here: OPEN, READ past offset 0,
 * POLL and RELEASE never reach JS; a READ at offset 0 asks JS for the text
 * (OP_RENDER) and keeps it as the open's snapshot, as sysfs does.
 *
 * A session mounted with MOUNT_NO_OPEN (the sysfs part of the tree) answers
 * ENOSYS to OPEN and FLUSH, so the kernel stops sending them for that whole
 * connection and serves its files from the page cache with no request. JS
 * hands each attribute's text over with its LOOKUP and GETATTR replies; the
 * addon keeps the latest per inode, reports its exact length, moves the
 * reported mtime by one nanosecond whenever the text changes (with
 * auto_inval_data the kernel then drops the cached pages) and answers READs
 * from it.
 *
 * Every session is mounted on a worker thread: a mount point inside another
 * session of this process is resolved by the kernel through that session,
 * which only this thread's loop answers.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <node_api.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include "warm.h"

/* operation codes handed to JS (kept in step with src/fs/libfuse3.ts) */
enum {
  OP_INIT = 0, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_READLINK, OP_OPEN, OP_READ, OP_WRITE,
  OP_RELEASE, OP_READDIR, OP_SETATTR, OP_IOCTL, OP_POLL, OP_INTERRUPT, OP_ENDED,
  /* changes to the tree: JS (TreeOps) decides what each answers */
  OP_MKDIR, OP_CREATE, OP_UNLINK, OP_RMDIR, OP_RENAME, OP_SYMLINK, OP_LINK,
  /* the text of a snapshot inode: JS returns a Buffer or a positive errno */
  OP_RENDER,
  /* the mount (done on a worker thread) finished: a = 0 or a positive errno */
  OP_MOUNTED
};

/* mount flags JS gives mount() */
enum { MOUNT_NO_OPEN = 1 };

/* how the addon serves an inode's read-only opens (setSnapshot) */
enum { SNAP_NONE = 0, SNAP_DIRECT = 1, SNAP_CACHED = 2 };

/* per-open flags JS gives replyOpen */
enum { OPEN_DIRECT_IO = 1, OPEN_KEEP_CACHE = 2, OPEN_NONSEEKABLE = 4, OPEN_NOFLUSH = 8 };

/* What a MOUNT_NO_OPEN session last told the kernel of an inode's text. */
typedef struct {
  char *data;
  size_t len;
  uint64_t version;     /* text changes since the reported mtime base last moved */
  struct timespec base; /* the mtime JS reported with it */
  int err;              /* no text: what READ answered (and traced) last, until a text is kept */
  int have_st;          /* st and timeout hold what JS reported with the text: GETATTR is answered here */
  struct stat st;
  double timeout;
} attr_text;

typedef struct session {
  struct fuse_session *se;
  char *dir;           /* the mount point, until the mount finished */
  int flags;           /* MOUNT_* */
  int mount_err;       /* set by the worker */
  napi_async_work work;
  attr_text **texts;   /* ino -> its text (MOUNT_NO_OPEN) */
  size_t ntexts;
  napi_env env;
  napi_ref handler;    /* function(op, id, ino, a, b, c, d) */
  napi_ref receiver;   /* `this` for the handler */
  napi_async_context async;
  uv_poll_t poll;
  int mounted, closed, ended;
  int mounting, polled, unwanted, detach;
  double start;        /* mtime/atime/ctime of every node, seconds */
  uint8_t *snapkind;   /* ino -> SNAP_*, for inodes JS marked */
  size_t nsnapkind;
  struct kept_reply *kept; /* KEPT_REPLIES slots, by fh */
  /* requests read in this drain, served after every session's releases (drain_all) */
  struct fuse_buf *stash;
  int nstash, ending;
  int ready;           /* its fd was readable in this loop iteration's poll phase */
  int init_answered;   /* the INIT reply went out (io_writev) */
} session;

/* While draining: the JS scopes, opened only once a request needs JS (one drain serves every session). */
static int draining, scoped;
static napi_handle_scope hs;
static napi_callback_scope cs;

/* The env, with a handle scope and a callback scope (promise jobs and nextTicks JS
 * queues run when it closes) open for this drain: requests the addon answers alone
 * (attribute opens and reads, kept replies) cost no V8 work at all. */
static napi_env js_env(session *s) {
  if (draining && !scoped) {
    napi_value resource;
    napi_open_handle_scope(s->env, &hs);
    napi_create_object(s->env, &resource);
    napi_open_callback_scope(s->env, resource, s->async, &cs);
    scoped = 1;
  }
  return s->env;
}

/* mmap regions of an iommufd start at its first page boundary (mtree_alloc_range from PAGE_SIZE) */
#define MAPPED_PAGES_FROM 4096

/* What a transaction file's read answers the thread that wrote last, until the
 * descriptor's next write (JS hands it over with the write's reply): that
 * thread's read is served here. Slots are direct-mapped by fh; any other
 * write on the descriptor replaces the slot, so a slot is never stale. Once a
 * read has reached the reply's end, the descriptor's next write tells JS
 * (the process's other threads then read the latest reply, not this one). */
struct kept_reply { uint64_t fh; int tid; int used; int read_end; size_t base, len; char *data; };
#define KEPT_REPLIES 256
static struct kept_reply *kept_slot(session *s, uint64_t fh) { return s->kept ? &s->kept[fh % KEPT_REPLIES] : NULL; }
/* Drops fh's kept reply; returns the thread that read it to its end (0: none did, or none was kept). */
static int kept_drop(session *s, uint64_t fh) {
  struct kept_reply *k = kept_slot(s, fh);
  int reader = 0;
  if (k && k->used && k->fh == fh) {
    reader = k->read_end ? k->tid : 0;
    free(k->data);
    memset(k, 0, sizeof *k);
  }
  return reader;
}

/* A read-only open served by the addon: the text taken at the last read of offset 0.
 * Its fh carries SNAP_TAG, which JS's handles (at most 32 bits) never have. */
typedef struct { char *data; size_t len; int taken, err; } snapshot;
#define SNAP_TAG (1ULL << 63)
static snapshot *snap_of(const struct fuse_file_info *fi) {
  return (fi->fh & SNAP_TAG) ? (snapshot *)(uintptr_t)(fi->fh & ~SNAP_TAG) : NULL;
}

/* ---- MOUNT_NO_OPEN: the text last reported per inode ---- */
static attr_text *text_of(session *s, fuse_ino_t ino) { return ino < s->ntexts ? s->texts[ino] : NULL; }

static void text_drop(session *s, fuse_ino_t ino) {
  attr_text *t = text_of(s, ino);
  if (!t) return;
  free(t->data);
  free(t);
  s->texts[ino] = NULL;
}

/* ino's entry, made empty if there is none; NULL when out of memory. */
static attr_text *text_slot(session *s, fuse_ino_t ino) {
  if (ino >= s->ntexts) {
    size_t n = s->ntexts ? s->ntexts : 1024;
    while (n <= ino) n *= 2;
    attr_text **t = realloc(s->texts, n * sizeof *t);
    if (!t) return NULL;
    memset(t + s->ntexts, 0, (n - s->ntexts) * sizeof *t);
    s->texts = t;
    s->ntexts = n;
  }
  if (!s->texts[ino]) s->texts[ino] = calloc(1, sizeof(attr_text));
  return s->texts[ino];
}

/* Keeps `data` as ino's text; the version moves when the text changes, and
 * starts again when the mtime JS reports moves (touch). NULL when out of memory. */
static attr_text *text_keep(session *s, fuse_ino_t ino, const void *data, size_t len, const struct timespec *base) {
  attr_text *t = text_slot(s, ino);
  if (!t) return NULL;
  int same = t->data && t->len == len && !memcmp(t->data, data, len);
  if (t->base.tv_sec != base->tv_sec || t->base.tv_nsec != base->tv_nsec) {
    t->base = *base;
    t->version = 0;
  } else if (t->data && !same) {
    t->version++;
  }
  t->err = 0;
  if (!same) {
    char *copy = malloc(len ? len : 1);
    if (!copy) return NULL;
    if (len) memcpy(copy, data, len);
    free(t->data);
    t->data = copy;
    t->len = len;
  }
  return t;
}

/* The attributes the kernel is told for a kept text: its exact length, and an
 * mtime that differs from the last one reported whenever the text did. */
static void text_attr(struct stat *st, const attr_text *t) {
  st->st_size = (off_t)t->len;
  st->st_blocks = ((off_t)t->len + 511) / 512;
  st->st_mtim = t->base;
  uint64_t ns = (uint64_t)st->st_mtim.tv_nsec + t->version;
  st->st_mtim.tv_sec += (time_t)(ns / 1000000000ULL);
  st->st_mtim.tv_nsec = (long)(ns % 1000000000ULL);
}

/* ---- the request table: id -> pending request ---- */
typedef struct { fuse_req_t req; session *s; } slot;
static slot *slots;
static uint32_t nslots, freehead; /* free list threaded through .req == NULL entries via freenext */
static uint32_t *freenext;

static uint32_t slot_put(session *s, fuse_req_t req) {
  if (!freehead) {
    uint32_t n = nslots ? nslots * 2 : 256;
    slots = realloc(slots, n * sizeof *slots);
    freenext = realloc(freenext, n * sizeof *freenext);
    if (!slots || !freenext) abort();
    for (uint32_t i = n; i-- > (nslots ? nslots : 1);) {
      slots[i].req = NULL;
      slots[i].s = NULL;
      freenext[i] = freehead;
      freehead = i;
    }
    nslots = n;
  }
  uint32_t id = freehead;
  freehead = freenext[id];
  slots[id].req = req;
  slots[id].s = s;
  return id;
}

static fuse_req_t slot_take(uint32_t id) {
  if (id == 0 || id >= nslots || !slots[id].req) return NULL;
  fuse_req_t r = slots[id].req;
  slots[id].req = NULL;
  slots[id].s = NULL;
  freenext[id] = freehead;
  freehead = id;
  return r;
}

/* ---- poll handles: id -> fuse_pollhandle ---- */
static struct fuse_pollhandle **polls;
static uint32_t npolls;

static uint32_t poll_put(struct fuse_pollhandle *ph) {
  for (uint32_t i = 1; i < npolls; i++)
    if (!polls[i]) { polls[i] = ph; return i; }
  uint32_t n = npolls ? npolls * 2 : 64;
  polls = realloc(polls, n * sizeof *polls);
  if (!polls) abort();
  memset(polls + npolls, 0, (n - npolls) * sizeof *polls);
  uint32_t id = npolls ? npolls : 1;
  npolls = n;
  polls[id] = ph;
  return id;
}

/* interrupts seen while processing a request; handed to JS after it returns */
static uint32_t pending_intr[256];
static int npending_intr;

/* ---- calling JS ---- */
static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

/* The handler, synchronously. An exception escaping JS is a bug in the binding's
 * wrapper: the request (if still pending) gets EIO and the exception goes to
 * Node's uncaught-exception handling when the callback scope closes. */
static void call_js(session *s, uint32_t id, int argc, napi_value *argv) {
  napi_env env = js_env(s);
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, s->handler, &fn) != napi_ok) return;
  if (napi_get_reference_value(env, s->receiver, &recv) != napi_ok) return;
  if (napi_call_function(env, recv, fn, argc, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
    fuse_req_t r = id ? slot_take(id) : NULL;
    if (r) fuse_reply_err(r, EIO);
  }
}

static session *ses(fuse_req_t req) { return fuse_req_userdata(req); }

static void dispatch(fuse_req_t req, int op, double ino, int argc, napi_value *rest) {
  session *s = ses(req);
  napi_env env = js_env(s);
  uint32_t id = req ? slot_put(s, req) : 0;
  napi_value argv[8];
  argv[0] = num(env, op);
  argv[1] = num(env, id);
  argv[2] = num(env, ino);
  for (int i = 0; i < argc; i++) argv[3 + i] = rest[i];
  call_js(s, id, 3 + argc, argv);
}

/* ---- libfuse operations ---- */
static void op_init(void *userdata, struct fuse_conn_info *conn) {
  session *s = userdata;
  /* one request at a time, in queue order: no parallel dir ops, no async reads */
  conn->want &= ~FUSE_CAP_ASYNC_READ;
  if (s->flags & MOUNT_NO_OPEN) {
    /* with no OPEN, O_TRUNC must come as SETATTR (which JS refuses on a read-only
     * attribute) rather than be applied to the cached size by the kernel alone */
    conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
    /* a read first revalidates expired attributes and drops the pages when the mtime moved */
    if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  } else {
    /* no readahead: a fault in a mapping of a transaction node reads its own
     * page alone (a READ at 0 is a reply, never a page of a region) */
    conn->max_readahead = 0;
  }
  napi_env env = js_env(s);
  napi_value argv[3] = { num(env, OP_INIT), num(env, 0), num(env, 0) };
  call_js(s, 0, 3, argv);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_value a[1];
  napi_create_string_utf8(js_env(ses(req)), name, NAPI_AUTO_LENGTH, &a[0]);
  dispatch(req, OP_LOOKUP, parent, 1, a);
}

static void forget_one(session *s, fuse_ino_t ino, uint64_t n) {
  napi_env env = js_env(s);
  napi_value argv[4] = { num(env, OP_FORGET), num(env, 0), num(env, ino), num(env, (double)n) };
  call_js(s, 0, 4, argv);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  forget_one(ses(req), ino, nlookup);
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f) {
  for (size_t i = 0; i < count; i++) forget_one(ses(req), f[i].ino, f[i].nlookup);
  fuse_reply_none(req);
}

static int render(session *s, fuse_ino_t ino, snapshot *sn, int quiet);

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  session *s = ses(req);
  attr_text *t = s->flags & MOUNT_NO_OPEN ? text_of(s, ino) : NULL;
  if (t && t->have_st) {
    /* an attribute's owner, mode and times change only by SETATTR, whose reply updates
     * them: only its text is taken anew (a failure goes through JS, which says so) */
    snapshot sn = { 0 };
    if (!render(s, ino, &sn, 1) && text_keep(s, ino, sn.data, sn.len, &t->st.st_mtim)) {
      struct stat st = t->st;
      text_attr(&st, t);
      free(sn.data);
      fuse_reply_attr(req, &st, t->timeout);
      return;
    }
    free(sn.data);
  }
  dispatch(req, OP_GETATTR, ino, 0, NULL);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) { dispatch(req, OP_READLINK, ino, 0, NULL); }

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = ses(req);
  if (s->flags & MOUNT_NO_OPEN) { /* the kernel stops asking: every later open costs no request */
    fuse_reply_err(req, ENOSYS);
    return;
  }
  int kind = ino < s->nsnapkind ? s->snapkind[ino] : SNAP_NONE;
  if (kind != SNAP_NONE && (fi->flags & O_ACCMODE) == O_RDONLY) {
    snapshot *sn = calloc(1, sizeof *sn);
    if (!sn) {
      fuse_reply_err(req, ENOMEM);
      return;
    }
    fi->fh = (uint64_t)(uintptr_t)sn | SNAP_TAG;
    fi->direct_io = kind == SNAP_DIRECT;
    fi->keep_cache = kind == SNAP_CACHED;
    fi->noflush = 1;
    if (fuse_reply_open(req, fi) != 0) free(sn); /* the opener was interrupted: no RELEASE comes */
    return;
  }
  napi_env env = js_env(s);
  napi_value a[2] = { num(env, fi->flags), num(env, fuse_req_ctx(req)->pid) };
  dispatch(req, OP_OPEN, ino, 2, a);
}

/* A page of a MOUNT_NO_OPEN file: the text last reported with its attributes,
 * which is what the kernel's size matches; or, if none could be taken, one
 * taken now (a failure is answered and traced here). */
static void read_kept_text(fuse_req_t req, session *s, fuse_ino_t ino, size_t size, off_t off) {
  attr_text *t = text_of(s, ino);
  if (t && t->data) {
    size_t at = (size_t)off < t->len ? (size_t)off : t->len;
    fuse_reply_buf(req, t->data + at, t->len - at < size ? t->len - at : size);
    return;
  }
  if (t && t->err) { /* the page cache retries a failed read at once: one answer, traced once */
    fuse_reply_err(req, t->err);
    return;
  }
  snapshot sn = { 0 };
  int err = render(s, ino, &sn, 0);
  if (err) {
    if ((t = text_slot(s, ino))) t->err = err;
    fuse_reply_err(req, err);
  } else {
    size_t at = (size_t)off < sn.len ? (size_t)off : sn.len;
    fuse_reply_buf(req, sn.data + at, sn.len - at < size ? sn.len - at : size);
  }
  free(sn.data);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if (ses(req)->flags & MOUNT_NO_OPEN) {
    read_kept_text(req, ses(req), ino, size, off);
    return;
  }
  snapshot *sn = snap_of(fi);
  if (sn) {
    if (!sn->err && (off == 0 || !sn->taken)) {
      session *s = ses(req);
      sn->err = render(s, ino, sn, 0);
      /* a failed text is this open's answer from now on (the page cache retries a
       * failed read at once), and later opens of the inode go through JS whole,
       * so a failure is seen, and traced, once per open as before */
      if (sn->err && ino < s->nsnapkind) s->snapkind[ino] = SNAP_NONE;
    }
    if (sn->err) {
      fuse_reply_err(req, sn->err);
      return;
    }
    size_t at = (size_t)off < sn->len ? (size_t)off : sn->len;
    fuse_reply_buf(req, sn->data + at, sn->len - at < size ? sn->len - at : size);
    return;
  }
  struct kept_reply *k = kept_slot(ses(req), fi->fh);
  if (k && k->used && k->fh == fi->fh && k->tid == (int)fuse_req_ctx(req)->pid) {
    /* as Session.read: a read past the write starts at the reply's beginning */
    size_t at = (size_t)off >= k->base ? (size_t)off - k->base : (size_t)off;
    if (at > k->len) at = k->len;
    /* past the reply at a page's offset, JS answers: it may be a page of a
     * mapping of the file (an iommufd's mmap region under exec --namespace) */
    if (at < k->len || off < MAPPED_PAGES_FROM) {
      size_t n = k->len - at < size ? k->len - at : size;
      if (at + n == k->len) k->read_end = 1; /* JS hears of it with the next write (replyRead) */
      fuse_reply_buf(req, k->data + at, n);
      return;
    }
  }
  napi_env env = js_env(ses(req));
  napi_value a[4] = { num(env, (double)fi->fh), num(env, size), num(env, (double)off), num(env, fuse_req_ctx(req)->pid) };
  dispatch(req, OP_READ, ino, 4, a);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off, struct fuse_file_info *fi) {
  if (snap_of(fi)) { /* opened read-only: the kernel refuses writes before they get here */
    fuse_reply_err(req, EBADF);
    return;
  }
  /* opened for writing with no OPEN: JS opens, writes and releases the attribute by inode (fh 0) */
  int no_open = ses(req)->flags & MOUNT_NO_OPEN;
  uint64_t fh = no_open ? 0 : fi->fh;
  int reader = no_open ? 0 : kept_drop(ses(req), fh); /* JS hands the new reply over with its answer, or nothing */
  napi_env env = js_env(ses(req));
  napi_value a[5];
  void *copy;
  a[0] = num(env, (double)fh);
  /* JS may keep the bytes (a partial request line), so they are copied out of libfuse's buffer */
  if (napi_create_buffer_copy(env, size, data, &copy, &a[1]) != napi_ok) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  a[2] = num(env, (double)off);
  a[3] = num(env, fuse_req_ctx(req)->pid);
  a[4] = num(env, reader);
  dispatch(req, OP_WRITE, ino, 5, a);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino; (void)fi;
  /* ENOSYS: the kernel sends no FLUSH on this connection again (opens without OPEN have no noflush) */
  fuse_reply_err(req, ses(req)->flags & MOUNT_NO_OPEN ? ENOSYS : 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ses(req)->flags & MOUNT_NO_OPEN) { /* nothing was opened */
    fuse_reply_err(req, 0);
    return;
  }
  snapshot *sn = snap_of(fi);
  if (sn) {
    free(sn->data);
    free(sn);
    fuse_reply_err(req, 0);
    return;
  }
  kept_drop(ses(req), fi->fh);
  napi_value a[1] = { num(js_env(ses(req)), (double)fi->fh) };
  dispatch(req, OP_RELEASE, ino, 1, a);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  napi_env env = js_env(ses(req));
  napi_value a[2] = { num(env, size), num(env, (double)off) };
  dispatch(req, OP_READDIR, ino, 2, a);
}

static double ms_of(const struct timespec *t) {
  return (double)t->tv_sec * 1000.0 + (double)t->tv_nsec / 1e6;
}

/* setattr(toSet, size, fh, mode, [uid, gid, atimeMs, mtimeMs]) */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  napi_env env = js_env(ses(req));
  napi_value owner_times;
  double v[4] = { (double)attr->st_uid, (double)attr->st_gid, ms_of(&attr->st_atim), ms_of(&attr->st_mtim) };
  napi_create_array_with_length(env, 4, &owner_times);
  for (uint32_t i = 0; i < 4; i++) napi_set_element(env, owner_times, i, num(env, v[i]));
  napi_value a[5] = { num(env, to_set), num(env, (double)attr->st_size), num(env, fi ? (double)fi->fh : 0),
                      num(env, attr->st_mode & 07777), owner_times };
  dispatch(req, OP_SETATTR, ino, 5, a);
}

static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg, struct fuse_file_info *fi,
                     unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz) {
  napi_env env = js_env(ses(req));
  napi_value a[5];
  void *copy;
  if (flags & FUSE_IOCTL_COMPAT) {
    fuse_reply_err(req, ENOSYS); /* 32-bit callers: pointers would need translating */
    return;
  }
  if (snap_of(fi) || ses(req)->flags & MOUNT_NO_OPEN) { /* an attribute takes no ioctls */
    fuse_reply_err(req, ENOTTY);
    return;
  }
  a[0] = num(env, (double)fi->fh);
  a[1] = num(env, cmd);
  napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)arg, &a[2]);
  if (napi_create_buffer_copy(env, in_bufsz, in_buf ? in_buf : "", &copy, &a[3]) != napi_ok) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  a[4] = num(env, fuse_req_ctx(req)->pid);
  (void)out_bufsz;
  dispatch(req, OP_IOCTL, ino, 5, a);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct fuse_pollhandle *ph) {
  if (snap_of(fi) || ses(req)->flags & MOUNT_NO_OPEN) { /* an attribute is always readable */
    if (ph) fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
    return;
  }
  napi_env env = js_env(ses(req));
  napi_value a[2] = { num(env, (double)fi->fh), num(env, ph ? poll_put(ph) : 0) };
  dispatch(req, OP_POLL, ino, 2, a);
}

static void on_interrupt(fuse_req_t req, void *data) {
  (void)req;
  if (npending_intr < (int)(sizeof pending_intr / sizeof *pending_intr)) pending_intr[npending_intr++] = (uint32_t)(uintptr_t)data;
}

/* a change naming (parent, name) and maybe a second string: forwarded as (op, id, parent, name, other) */
static void named(fuse_req_t req, int op, fuse_ino_t parent, const char *name, const char *other) {
  napi_env env = js_env(ses(req));
  napi_value a[2];
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &a[0]);
  if (other) napi_create_string_utf8(env, other, NAPI_AUTO_LENGTH, &a[1]);
  dispatch(req, op, parent, other ? 2 : 1, a);
}
static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi) { (void)m; (void)fi; named(req, OP_CREATE, p, n, NULL); }
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d) { (void)m; (void)d; named(req, OP_CREATE, p, n, NULL); }
static void op_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { (void)m; named(req, OP_MKDIR, p, n, NULL); }
static void op_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { named(req, OP_UNLINK, p, n, NULL); }
static void op_rmdir(fuse_req_t req, fuse_ino_t p, const char *n) { named(req, OP_RMDIR, p, n, NULL); }
static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t p, const char *n) { named(req, OP_SYMLINK, p, n, target); }

/* rename(parent, name, newparent, newname): (op, id, parent, name, newparent, newname) */
static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned int flags) {
  (void)flags;
  napi_env env = js_env(ses(req));
  napi_value a[3];
  napi_create_string_utf8(env, n, NAPI_AUTO_LENGTH, &a[0]);
  a[1] = num(env, (double)np);
  napi_create_string_utf8(env, nn, NAPI_AUTO_LENGTH, &a[2]);
  dispatch(req, OP_RENAME, p, 3, a);
}

/* link(ino, newparent, newname): (op, id, newparent, newname) */
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t np, const char *nn) {
  (void)ino;
  named(req, OP_LINK, np, nn, NULL);
}

/* The snapshot's text from JS (OP_RENDER), synchronously; 0 or a positive errno (traced by JS unless quiet). */
static int render(session *s, fuse_ino_t ino, snapshot *sn, int quiet) {
  napi_env env = js_env(s);
  napi_value fn, recv, result, argv[4] = { num(env, OP_RENDER), num(env, 0), num(env, (double)ino), num(env, quiet) };
  if (napi_get_reference_value(env, s->handler, &fn) != napi_ok || napi_get_reference_value(env, s->receiver, &recv) != napi_ok)
    return EIO;
  if (napi_call_function(env, recv, fn, 4, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
    return EIO;
  }
  bool isbuf = false;
  napi_is_buffer(env, result, &isbuf);
  if (!isbuf) {
    double e = EIO;
    napi_get_value_double(env, result, &e);
    return e > 0 ? (int)e : EIO;
  }
  void *data = NULL;
  size_t len = 0;
  napi_get_buffer_info(env, result, &data, &len);
  char *copy = malloc(len ? len : 1);
  if (!copy) return ENOMEM;
  if (len) memcpy(copy, data, len);
  free(sn->data);
  sn->data = copy;
  sn->len = len;
  sn->taken = 1;
  return 0;
}

static const struct fuse_lowlevel_ops OPS = {
  .init = op_init,
  .lookup = op_lookup,
  .forget = op_forget,
  .forget_multi = op_forget_multi,
  .getattr = op_getattr,
  .readlink = op_readlink,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .flush = op_flush,
  .release = op_release,
  .readdir = op_readdir,
  .setattr = op_setattr,
  .ioctl = op_ioctl,
  .poll = op_poll,
  .create = op_create,
  .mknod = op_mknod,
  .mkdir = op_mkdir,
  .unlink = op_unlink,
  .rmdir = op_rmdir,
  .rename = op_rename,
  .symlink = op_symlink,
  .link = op_link,
};

/* ---- the loop ---- */
/* Sessions being served, in mount order. */
#define MAX_SESSIONS 16
static session *live[MAX_SESSIONS];
static int nlive;

static void live_remove(session *s) {
  for (int i = 0; i < nlive; i++)
    if (live[i] == s) {
      memmove(live + i, live + i + 1, (size_t)(nlive - i - 1) * sizeof *live);
      nlive--;
      return;
    }
}

#define BATCH 64

static void on_closed(uv_handle_t *h) {
  session *s = h->data;
  if (s->stash)
    for (int i = 0; i < BATCH; i++) free(s->stash[i].mem);
  free(s->stash);
  free(s->snapkind);
  for (size_t i = 0; i < s->ntexts; i++) text_drop(s, i);
  free(s->texts);
  free(s->dir);
  if (s->kept)
    for (int i = 0; i < KEPT_REPLIES; i++) free(s->kept[i].data);
  free(s->kept);
  free(s);
}

static void stop_polling(session *s) {
  if (s->closed) return;
  s->closed = 1;
  live_remove(s);
  if (s->polled) uv_poll_stop(&s->poll);
}

/* A request's opcode (0, which no request has, when its header is not in memory). */
static uint32_t opcode_of(const struct fuse_buf *b) {
  return b->flags & FUSE_BUF_IS_FD || b->size < sizeof(struct fuse_in_header) ? 0 : ((const struct fuse_in_header *)b->mem)->opcode;
}

/* A request the kernel queued without waiting for it (close()'s RELEASE, FORGET). */
static int is_background(const struct fuse_buf *b) {
  uint32_t op = opcode_of(b);
  return op == FUSE_RELEASE || op == FUSE_RELEASEDIR || op == FUSE_FORGET || op == FUSE_BATCH_FORGET;
}

static void forget_pages(void); /* the pages a request found present (pages_present) */

static long long mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The opcode of the request served last (-1: none yet, or one past OPCODES). */
#define OPCODES 64
static int last_op = -1;

static void process(session *s, struct fuse_buf *b) {
  if (!s->se || s->closed) return; /* unmounted by JS earlier in this drain */
  uint32_t op = opcode_of(b);
  last_op = op && op < OPCODES ? (int)op : -1;
  forget_pages();
  fuse_session_process_buf(s->se, b);
  forget_pages();
  for (int k = 0; k < npending_intr; k++) {
    napi_env e = js_env(s);
    napi_value argv[3] = { num(e, OP_INTERRUPT), num(e, pending_intr[k]), num(e, 0) };
    call_js(s, 0, 3, argv);
  }
  npending_intr = 0;
}

/*
 * Serves what the sessions the poll phase found readable have queued.
 * Requests are read from all of them first; releases and forgets are served as
 * they are read, the rest after, each session's in its queue's order. A release
 * is queued before close() returns, so whatever the closer does next (on any
 * session) is answered after it, as on one queue; the requests it overtakes
 * were pending at the close, so concurrent with it. A bounded batch per
 * session, so timers and other I/O get their turn. Sessions with nothing
 * queued are not read: a read that finds nothing is a syscall per session per
 * request.
 */
static int drain_all(void) {
  if (draining) return 0;
  draining = 1;
  int served = 0;
  napi_env env = nlive ? live[0]->env : NULL;
  session *cur[MAX_SESSIONS];
  int n = nlive;
  memcpy(cur, live, (size_t)n * sizeof *cur);
  for (int i = 0; i < n; i++) {
    session *s = cur[i];
    s->nstash = 0;
    if (!s->ready) continue;
    s->ready = 0;
    if (!s->stash && !(s->stash = calloc(BATCH, sizeof *s->stash))) continue;
    while (s->nstash < BATCH && !s->ending && s->se && !s->closed) {
      struct fuse_buf *b = &s->stash[s->nstash];
      int res = fuse_session_receive_buf(s->se, b);
      if (res == -EINTR || res == -EAGAIN) break;
      if (res <= 0 || fuse_session_exited(s->se)) {
        s->ending = 1;
        break;
      }
      served++;
      if (is_background(b)) process(s, b);
      else s->nstash++;
    }
  }
  for (int i = 0; i < n; i++) {
    session *s = cur[i];
    for (int k = 0; k < s->nstash; k++) process(s, &s->stash[k]);
    s->nstash = 0;
  }
  for (int i = 0; i < n; i++) {
    session *s = cur[i];
    if (s->ending && !s->ended && s->se && !s->closed) {
      /* unmounted from outside (or the connection was aborted) */
      s->ended = 1;
      stop_polling(s);
      napi_env e = js_env(s);
      napi_value argv[3] = { num(e, OP_ENDED), num(e, 0), num(e, 0) };
      call_js(s, 0, 3, argv);
    }
  }
  if (scoped) {
    napi_close_callback_scope(env, cs);
    napi_close_handle_scope(env, hs);
    scoped = 0;
  }
  draining = 0;
  return served;
}

/*
 * After serving, the thread keeps watching the sessions for a short while
 * (BUSY_WINDOW_NS since the last request) before it goes back to the loop's
 * epoll. A client whose next request comes within that window finds this
 * thread running: neither side then waits for its CPU to come out of idle,
 * which on a VM whose idle vCPUs halt is most of what a request across CPUs
 * costs. It yields between looks, so a client sharing this CPU runs first,
 * and it goes back to the loop after BUSY_MAX_NS however busy the sessions are.
 *
 * It does so only after a kind of request (an opcode) that the next request
 * has lately followed soon: next_gap holds, per opcode, an average of how soon
 * it did (each gap capped at GAP_CAP_NS), and the thread lingers while that
 * is at most LINGER_IF_GAP_NS, twice the window: a gap measured while the
 * thread slept includes its own wake-up, which lingering would have saved. A
 * transaction's WRITE is followed by its READ at once; a client that pauses
 * after each transaction then keeps no CPU busy after the READ.
 */
#define BUSY_WINDOW_NS 100000LL
/*
 * The other CPUs are kept out of idle (warm.c) once lingering has caught
 * this many requests: a client in a run of back-to-back requests, not one
 * transaction's READ after its WRITE.
 */
#define WARM_AFTER 2
#define BUSY_MAX_NS 2000000LL
#define GAP_CAP_NS 1000000LL
#define LINGER_IF_GAP_NS (2 * BUSY_WINDOW_NS)

static long long next_gap[OPCODES], last_done;

/* Serves what is queued (drain_all), having learnt how soon after the last request served it came (at `now`). */
static int serve(long long now) {
  int op = last_op;
  long long done = last_done;
  int served = drain_all();
  if (served > 0) {
    if (op >= 0 && done) {
      long long gap = now - done < GAP_CAP_NS ? now - done : GAP_CAP_NS;
      next_gap[op] += (gap - next_gap[op]) / 8;
    }
    last_done = mono_ns();
  }
  return served;
}

static void linger(void) {
  long long start = mono_ns(), last = start;
  int caught = 0; /* requests this lingering found */
  while (last_op >= 0 && next_gap[last_op] <= LINGER_IF_GAP_NS) {
    long long now = mono_ns();
    if (now - last >= BUSY_WINDOW_NS || now - start >= BUSY_MAX_NS) return;
    if (caught >= WARM_AFTER) warm_others(last + BUSY_WINDOW_NS);
    struct pollfd fds[MAX_SESSIONS];
    session *of[MAX_SESSIONS];
    int n = 0;
    for (int i = 0; i < nlive; i++)
      if (live[i]->se && !live[i]->closed) {
        fds[n] = (struct pollfd){ .fd = fuse_session_fd(live[i]->se), .events = POLLIN };
        of[n++] = live[i];
      }
    if (n == 0) return;
    if (poll(fds, (nfds_t)n, 0) > 0) {
      for (int i = 0; i < n; i++)
        if (fds[i].revents) of[i]->ready = 1;
      if (serve(now) > 0) {
        last = mono_ns();
        caught++;
      }
    } else {
      sched_yield();
    }
  }
}

/* Runs once the poll phase has called on_readable for every readable session. */
static uv_check_t drain_check;
static int drain_check_made;

static void on_check(uv_check_t *h) {
  uv_check_stop(h);
  if (serve(mono_ns()) > 0) {
    linger();
    warm_stop();
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  session *s = h->data;
  if (status < 0) s->ending = 1;
  s->ready = 1;
  uv_check_start(&drain_check, on_check);
}

/* ---- exported functions ---- */
static napi_value js_undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, m, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, m, &e);
  napi_set_named_property(env, e, "errno", code);
  napi_throw(env, e);
  return NULL;
}

static double arg_num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static session *arg_session(napi_env env, napi_value v) {
  session *s = NULL;
  napi_get_value_external(env, v, (void **)&s);
  return s;
}

/* The worker: mount(2) resolves the mount point, maybe through another session of ours. */
static void mount_work(napi_env env, void *data) {
  (void)env;
  session *s = data;
  errno = 0;
  s->mount_err = fuse_session_mount(s->se, s->dir) == 0 ? 0 : errno ? errno : EIO;
}

static void free_session(session *s) {
  if (s->polled) {
    uv_close((uv_handle_t *)&s->poll, on_closed);
    return;
  }
  s->poll.data = s;
  on_closed((uv_handle_t *)&s->poll);
}

static void release_session(napi_env env, session *s) {
  fuse_session_destroy(s->se); /* closes the session's fd: the kernel ends the connection */
  s->se = NULL;
  napi_delete_reference(env, s->handler);
  napi_delete_reference(env, s->receiver);
  napi_async_destroy(env, s->async);
  free_session(s);
}

/*
 * libfuse 3.14 knows no INIT flag past bit 31, so it cannot ask for
 * FUSE_DIRECT_IO_ALLOW_MMAP (bit 36, in the reply's flags2 word): the session
 * writes through here, and its first reply, INIT's, gets the bit. With it a
 * direct_io file may be mapped MAP_SHARED, its pages read as READs of their
 * offsets (an iommufd's mmap regions under `exec --namespace`).
 */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36) /* protocol 7.39 */
#endif
static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  session *s = userdata;
  if (!s->init_answered) {
    s->init_answered = 1;
    if (count >= 2 && iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t)) {
      struct fuse_init_out *out = iov[1].iov_base; /* (the kernel has FUSE_INIT_EXT since 5.17) */
      out->flags |= FUSE_INIT_EXT;
      out->flags2 |= (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
    }
  }
  return writev(fd, iov, count);
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata) {
  (void)userdata;
  return read(fd, buf, len);
}

static const struct fuse_custom_io SESSION_IO = { .writev = io_writev, .read = io_read };

/* Back on the loop: serve the new session's fd (INIT comes first), and tell JS (OP_MOUNTED). */
static void mount_done(napi_env env, napi_status status, void *data) {
  session *s = data;
  napi_delete_async_work(env, s->work);
  s->mounting = 0;
  int err = status != napi_ok ? EIO : s->mount_err;
  if (!err) {
    s->mounted = 1;
    fuse_session_custom_io(s->se, &SESSION_IO, fuse_session_fd(s->se));
    uv_loop_t *loop;
    napi_get_uv_event_loop(env, &loop);
    uv_poll_init(loop, &s->poll, fuse_session_fd(s->se)); /* sets O_NONBLOCK: receive_buf then answers -EAGAIN when drained */
    s->poll.data = s;
    s->polled = 1;
    if (!drain_check_made) {
      uv_check_init(loop, &drain_check);
      uv_unref((uv_handle_t *)&drain_check); /* only the sessions keep the loop alive */
      drain_check_made = 1;
    }
    if (!s->unwanted && nlive < MAX_SESSIONS) {
      live[nlive++] = s;
      uv_poll_start(&s->poll, UV_READABLE, on_readable);
    }
  }
  if (s->unwanted) { /* unmount() came while mounting */
    s->closed = 1;
    if (s->mounted && s->detach) fuse_session_unmount(s->se);
    release_session(env, s);
    return;
  }
  napi_value argv[4] = { num(env, OP_MOUNTED), num(env, 0), num(env, 0), num(env, err) };
  call_js(s, 0, 4, argv);
}

/* mount(dir, options, handler, receiver, startSeconds, flags) -> session. The mount
 * runs on a worker thread; the handler hears OP_MOUNTED (0 or an errno) when it is
 * done, then OP_INIT once the kernel's INIT has been answered. */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  char dir[4096], opts[1024];
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) return throw_errno(env, "mount", EINVAL);
  if (napi_get_value_string_utf8(env, argv[0], dir, sizeof dir, &len) != napi_ok) return throw_errno(env, "mount dir", EINVAL);
  if (napi_get_value_string_utf8(env, argv[1], opts, sizeof opts, &len) != napi_ok) return throw_errno(env, "mount options", EINVAL);

  session *s = calloc(1, sizeof *s);
  if (!s || !(s->dir = strdup(dir))) {
    free(s);
    return throw_errno(env, "mount", ENOMEM);
  }
  s->env = env;
  s->start = arg_num(env, argv[4]);
  s->flags = argc > 5 ? (int)arg_num(env, argv[5]) : 0;
  char *fargv[] = { "iommufs", "-o", opts, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  s->se = fuse_session_new(&args, &OPS, sizeof OPS, s);
  if (!s->se) {
    free(s->dir);
    free(s);
    return throw_errno(env, "fuse_session_new (bad options?)", EINVAL);
  }
  napi_create_reference(env, argv[2], 1, &s->handler);
  napi_create_reference(env, argv[3], 1, &s->receiver);
  napi_value name;
  napi_create_string_utf8(env, "iommufs-fuse3", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->async);
  if (napi_create_async_work(env, NULL, name, mount_work, mount_done, s, &s->work) != napi_ok ||
      napi_queue_async_work(env, s->work) != napi_ok) {
    release_session(env, s);
    return throw_errno(env, "mount: cannot start the mount", EAGAIN);
  }
  s->mounting = 1;
  napi_value ext;
  napi_create_external(env, s, NULL, NULL, &ext);
  return ext;
}

/* unmount(session, detach): stops serving and frees the session; with detach, the mount
 * is detached lazily first (with every mount below it), else closing the session's fd
 * ends the connection and the mount is left for whoever detaches the one above it */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = arg_session(env, argv[0]);
  if (!s || !s->se || s->unwanted) return js_undefined(env);
  bool detach = true;
  if (argc > 1) napi_get_value_bool(env, argv[1], &detach);
  s->unwanted = 1;
  s->detach = detach;
  if (s->mounting) return js_undefined(env); /* mount_done finishes it */
  /* what the kernel queued before the unmount is served first: a process that
   * exits closes its files (queueing RELEASEs) before its parent hears of the
   * exit, and a caller that unmounts then must see those closes */
  if (!s->closed) {
    for (int i = 0; i < nlive; i++) live[i]->ready = 1;
    drain_all();
  }
  stop_polling(s);
  /* requests still held by JS can no longer be answered */
  for (uint32_t i = 1; i < nslots; i++)
    if (slots[i].req && slots[i].s == s) slot_take(i);
  if (s->mounted && detach) fuse_session_unmount(s->se);
  release_session(env, s);
  return js_undefined(env);
}

static fuse_req_t take_arg(napi_env env, napi_value v) {
  fuse_req_t r = slot_take((uint32_t)arg_num(env, v));
  if (!r) napi_throw_error(env, NULL, "no pending FUSE request with this id (answered twice?)");
  return r;
}

static napi_value ret_int(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

#define ARGS(n) size_t argc = n; napi_value argv[n]; napi_get_cb_info(env, info, &argc, argv, NULL, NULL)

/* replyErr(id, errno) */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_req_t r = take_arg(env, argv[0]);
  return r ? ret_int(env, fuse_reply_err(r, (int)arg_num(env, argv[1]))) : NULL;
}

static void set_ms(struct timespec *t, double ms) {
  t->tv_sec = (time_t)(ms / 1000.0);
  t->tv_nsec = (long)((ms - (double)t->tv_sec * 1000.0) * 1e6);
  if (t->tv_nsec < 0) t->tv_nsec = 0;
  if (t->tv_nsec > 999999999) t->tv_nsec = 999999999;
}

/* `meta`: [uid, gid, atimeMs, mtimeMs, ctimeMs] from JS, or NULL for root's and the mount's time */
static void fill_attr(napi_env env, session *s, struct stat *st, double ino, double mode, double nlink, double size, napi_value meta) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)ino;
  st->st_mode = (mode_t)mode;
  st->st_nlink = (nlink_t)nlink;
  st->st_size = (off_t)size;
  st->st_blksize = 4096;
  st->st_blocks = ((off_t)size + 511) / 512;
  st->st_atime = st->st_mtime = st->st_ctime = (time_t)s->start;
  bool is_array = false;
  if (!meta || napi_is_array(env, meta, &is_array) != napi_ok || !is_array) return;
  double v[5];
  for (uint32_t i = 0; i < 5; i++) {
    napi_value e;
    if (napi_get_element(env, meta, i, &e) != napi_ok || napi_get_value_double(env, e, &v[i]) != napi_ok) return;
  }
  st->st_uid = (uid_t)v[0];
  st->st_gid = (gid_t)v[1];
  set_ms(&st->st_atim, v[2]);
  set_ms(&st->st_mtim, v[3]);
  set_ms(&st->st_ctim, v[4]);
}

/* `text` (MOUNT_NO_OPEN sessions): a Buffer is kept as ino's text, which sets the size and
 * mtime reported; null says none could be taken now, so the next READ takes (and traces) it. */
static void keep_text(napi_env env, session *s, struct stat *st, double timeout, napi_value text) {
  napi_valuetype type;
  if (!s || !text || napi_typeof(env, text, &type) != napi_ok) return;
  if (type == napi_null) {
    attr_text *t = text_of(s, st->st_ino);
    if (t) {
      free(t->data);
      t->data = NULL;
      t->len = 0;
      t->err = 0;
      t->have_st = 0;
    }
    return;
  }
  bool isbuf = false;
  if (napi_is_buffer(env, text, &isbuf) != napi_ok || !isbuf) return;
  void *data = NULL;
  size_t len = 0;
  napi_get_buffer_info(env, text, &data, &len);
  attr_text *t = text_keep(s, st->st_ino, data, len, &st->st_mtim);
  if (!t) return;
  t->st = *st;
  t->timeout = timeout;
  t->have_st = 1;
  text_attr(st, t);
}

/* replyEntry(id, ino, mode, nlink, size, attrTimeout, entryTimeout, meta?, text?); ino 0 = a cached "no such name" */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(9);
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  session *s = id < nslots ? slots[id].s : NULL;
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = (fuse_ino_t)arg_num(env, argv[1]);
  fill_attr(env, s, &e.attr, arg_num(env, argv[1]), arg_num(env, argv[2]), arg_num(env, argv[3]), arg_num(env, argv[4]), argc > 7 ? argv[7] : NULL);
  e.attr_timeout = arg_num(env, argv[5]);
  if (argc > 8) keep_text(env, s, &e.attr, e.attr_timeout, argv[8]);
  e.entry_timeout = arg_num(env, argv[6]);
  return ret_int(env, fuse_reply_entry(r, &e));
}

/* replyAttr(id, ino, mode, nlink, size, attrTimeout, meta?, text?) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(8);
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  session *s = id < nslots ? slots[id].s : NULL;
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  struct stat st;
  fill_attr(env, s, &st, arg_num(env, argv[1]), arg_num(env, argv[2]), arg_num(env, argv[3]), arg_num(env, argv[4]), argc > 6 ? argv[6] : NULL);
  if (argc > 7) keep_text(env, s, &st, arg_num(env, argv[5]), argv[7]);
  return ret_int(env, fuse_reply_attr(r, &st, arg_num(env, argv[5])));
}

/* replyOpen(id, fh, flags) */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ARGS(3);
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = (uint64_t)arg_num(env, argv[1]);
  int f = (int)arg_num(env, argv[2]);
  fi.direct_io = !!(f & OPEN_DIRECT_IO);
  fi.keep_cache = !!(f & OPEN_KEEP_CACHE);
  fi.nonseekable = !!(f & OPEN_NONSEEKABLE);
  fi.noflush = !!(f & OPEN_NOFLUSH);
  return ret_int(env, fuse_reply_open(r, &fi));
}

/* replyBuf(id, buffer|string): read data, or a readlink target when a string */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t == napi_string) {
    char target[4096];
    size_t len;
    napi_get_value_string_utf8(env, argv[1], target, sizeof target, &len);
    return ret_int(env, fuse_reply_readlink(r, target));
  }
  void *data = NULL;
  size_t len = 0;
  napi_get_buffer_info(env, argv[1], &data, &len);
  return ret_int(env, fuse_reply_buf(r, data, len));
}

/* replyWrite(id, count[, fh, tid, reply, base]): with a reply, the writing thread's reads of fh are
 * answered from it (offsets past base start at its beginning) until fh's next write */
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ARGS(6);
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  session *s = id < nslots ? slots[id].s : NULL;
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  if (s && argc >= 6) {
    uint64_t fh = (uint64_t)arg_num(env, argv[2]);
    void *data = NULL;
    size_t len = 0;
    if (!s->kept) s->kept = calloc(KEPT_REPLIES, sizeof *s->kept);
    struct kept_reply *k = kept_slot(s, fh);
    /* a reply read to its end stays until its descriptor's next write tells JS so: this one is left to JS */
    if (k && k->used && k->fh != fh && k->read_end) k = NULL;
    napi_get_buffer_info(env, argv[4], &data, &len);
    char *copy = k ? malloc(len ? len : 1) : NULL;
    if (copy) {
      memcpy(copy, data, len);
      free(k->data);
      k->fh = fh;
      k->tid = (int)arg_num(env, argv[3]);
      k->used = 1;
      k->read_end = 0;
      k->base = (size_t)arg_num(env, argv[5]);
      k->len = len;
      k->data = copy;
    } else if (k) {
      kept_drop(s, fh);
    }
  }
  return ret_int(env, fuse_reply_write(r, (size_t)arg_num(env, argv[1])));
}

/* replyDir(id, size, off, names[], inos[], modes[]): entries from index off that fit in size */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  ARGS(6);
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  size_t size = (size_t)arg_num(env, argv[1]);
  uint32_t off = (uint32_t)arg_num(env, argv[2]), n = 0;
  napi_get_array_length(env, argv[3], &n);
  char *buf = malloc(size ? size : 1);
  if (!buf) return ret_int(env, fuse_reply_err(r, ENOMEM));
  size_t used = 0;
  for (uint32_t i = off; i < n; i++) {
    napi_value nv, iv, mv;
    char name[1024];
    size_t len;
    napi_get_element(env, argv[3], i, &nv);
    napi_get_element(env, argv[4], i, &iv);
    napi_get_element(env, argv[5], i, &mv);
    napi_get_value_string_utf8(env, nv, name, sizeof name, &len);
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = (ino_t)arg_num(env, iv);
    st.st_mode = (mode_t)arg_num(env, mv);
    size_t need = fuse_add_direntry(r, buf + used, size - used, name, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  int rc = fuse_reply_buf(r, buf, used);
  free(buf);
  return ret_int(env, rc);
}

/* replyIoctl(id, result, buffer?) */
static napi_value js_reply_ioctl(napi_env env, napi_callback_info info) {
  ARGS(3);
  fuse_req_t r = take_arg(env, argv[0]);
  if (!r) return NULL;
  void *data = NULL;
  size_t len = 0;
  if (argc >= 3) napi_get_buffer_info(env, argv[2], &data, &len);
  return ret_int(env, fuse_reply_ioctl(r, (int)arg_num(env, argv[1]), data, len));
}

/* replyPoll(id, revents) */
static napi_value js_reply_poll(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_req_t r = take_arg(env, argv[0]);
  return r ? ret_int(env, fuse_reply_poll(r, (unsigned)arg_num(env, argv[1]))) : NULL;
}

/* onInterrupt(id): a request JS keeps pending is to be reported (OP_INTERRUPT) if the caller is signalled */
static napi_value js_on_interrupt(napi_env env, napi_callback_info info) {
  ARGS(1);
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  if (id && id < nslots && slots[id].req) fuse_req_interrupt_func(slots[id].req, on_interrupt, (void *)(uintptr_t)id);
  return js_undefined(env);
}

/* notifyPoll(pollId, keep): wakes the poller; the handle is freed unless keep */
static napi_value js_notify_poll(napi_env env, napi_callback_info info) {
  ARGS(2);
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  bool keep = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &keep);
  if (!id || id >= npolls || !polls[id]) return ret_int(env, -EINVAL);
  int rc = fuse_lowlevel_notify_poll(polls[id]);
  if (!keep) {
    fuse_pollhandle_destroy(polls[id]);
    polls[id] = NULL;
  }
  return ret_int(env, rc);
}

/* dropPoll(pollId): frees a handle without waking anyone */
static napi_value js_drop_poll(napi_env env, napi_callback_info info) {
  ARGS(1);
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  if (id && id < npolls && polls[id]) {
    fuse_pollhandle_destroy(polls[id]);
    polls[id] = NULL;
  }
  return js_undefined(env);
}

/* setSnapshot(session, ino, kind): how the addon serves ino's read-only opens (SNAP_*); SNAP_NONE (a forgotten inode) also drops its kept text */
static napi_value js_set_snapshot(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = arg_session(env, argv[0]);
  double ino = arg_num(env, argv[1]);
  int kind = (int)arg_num(env, argv[2]);
  if (!s || ino < 1 || ino > (double)(1u << 30)) return ret_int(env, -EINVAL);
  size_t i = (size_t)ino;
  if (kind == SNAP_NONE) text_drop(s, i); /* forgotten */
  if (i >= s->nsnapkind) {
    if (kind == SNAP_NONE) return ret_int(env, 0);
    size_t n = s->nsnapkind ? s->nsnapkind : 1024;
    while (n <= i) n *= 2;
    uint8_t *k = realloc(s->snapkind, n);
    if (!k) return ret_int(env, -ENOMEM);
    memset(k + s->nsnapkind, 0, n - s->nsnapkind);
    s->snapkind = k;
    s->nsnapkind = n;
  }
  s->snapkind[i] = (uint8_t)kind;
  return ret_int(env, 0);
}

/* invalInode(session, ino): drops the kernel's cached data and attributes of ino */
static napi_value js_inval_inode(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = arg_session(env, argv[0]);
  if (!s || !s->se) return ret_int(env, -ENODEV);
  return ret_int(env, fuse_lowlevel_notify_inval_inode(s->se, (fuse_ino_t)arg_num(env, argv[1]), 0, 0));
}

/* invalEntry(session, parentIno, name): drops the kernel's cached lookup of name */
static napi_value js_inval_entry(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = arg_session(env, argv[0]);
  if (!s || !s->se) return ret_int(env, -ENODEV);
  char name[1024];
  size_t len;
  napi_get_value_string_utf8(env, argv[2], name, sizeof name, &len);
  return ret_int(env, fuse_lowlevel_notify_inval_entry(s->se, (fuse_ino_t)arg_num(env, argv[1]), name, len));
}

/*
 * Whether process `pid` has every page of [addr, addr+len) present (bit 63 of
 * its pagemap entries), and for a write none of them a file's (bit 61), so
 * process_vm_readv/writev reach them with no fault and no wait on a file. A
 * fault could read a page of a file of this very mount through FUSE: a
 * request only this thread could answer, so it would wait for good. The last
 * caller's pagemap stays open (it names that process's memory, not its pid: a
 * read after the process is gone or has exec'd comes back short and it is
 * opened again).
 */
#define PRESENT_CHECK_PAGES 64
static int pagemap_pid = -1, pagemap_fd = -1;

/* Pages found present while one request is served (a real ioctl reads its
 * struct, probes it for writing and writes it back): one pagemap read answers
 * for all of them. Emptied before and after every request (process), so no
 * answer outlives the request that asked; the caller's thread waits in its
 * ioctl meanwhile. */
#define KNOWN_PAGES 8
static struct { uint64_t page, entry; } known[KNOWN_PAGES];
static int nknown, known_pid = -1;

static void forget_pages(void) { nknown = 0; known_pid = -1; }

static int known_entry(int pid, uint64_t page, uint64_t *entry) {
  if (pid != known_pid) return 0;
  for (int i = 0; i < nknown; i++)
    if (known[i].page == page) { *entry = known[i].entry; return 1; }
  return 0;
}

static void remember_page(int pid, uint64_t page, uint64_t entry) {
  if (!(entry >> 63)) return; /* a page not present is looked at again */
  if (pid != known_pid) { nknown = 0; known_pid = pid; }
  if (nknown == KNOWN_PAGES) return;
  known[nknown].page = page;
  known[nknown++].entry = entry;
}

/*
 * A page that is a file's or shared (bit 61) is still written with no wait on
 * a file when its frame is shared memory or hugetlb (KPF_SWAPBACKED, KPF_HUGE
 * in /proc/kpageflags): shmem and hugetlbfs have no page_mkwrite, and neither
 * is ever this mount's. A program's MAP_SHARED|MAP_ANONYMOUS buffer is such
 * memory. Without the frame number (pagemap hides it from a server lacking
 * CAP_SYS_ADMIN) the maps decide, as for any other file.
 */
#define PAGEMAP_PFN_MASK ((1ULL << 55) - 1)
#define KPF_SWAPBACKED 14
#define KPF_HUGE 17
static int kpageflags_fd = -2; /* -2: not opened yet */

static int frame_is_memory(uint64_t entry) {
  uint64_t pfn = entry & PAGEMAP_PFN_MASK, flags;
  if (!pfn) return 0;
  if (kpageflags_fd == -2) kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  if (kpageflags_fd < 0 || pread(kpageflags_fd, &flags, sizeof flags, (off_t)(pfn * sizeof flags)) != (ssize_t)sizeof flags) return 0;
  return (flags >> KPF_SWAPBACKED & 1) || (flags >> KPF_HUGE & 1);
}

static int page_ok(uint64_t entry, int write) {
  return (entry >> 63) && !(write && (entry >> 61 & 1) && !frame_is_memory(entry));
}

/* The pagemap entries of `n` pages of `pid` from page `first` (remembered for the request); 0 when they cannot be read. */
static int read_pagemap(int pid, uint64_t first, uint64_t n, uint64_t *entry) {
  for (int attempt = 0; attempt < 2; attempt++) {
    if (pagemap_pid != pid) {
      if (pagemap_fd >= 0) close(pagemap_fd);
      char path[64];
      snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
      pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
      pagemap_pid = pagemap_fd >= 0 ? pid : -1;
      if (pagemap_fd < 0) return 0;
    }
    if (pread(pagemap_fd, entry, n * sizeof *entry, (off_t)(first * sizeof *entry)) == (ssize_t)(n * sizeof *entry)) {
      for (uint64_t i = 0; i < n; i++) remember_page(pid, first + i, entry[i]);
      return 1;
    }
    pagemap_pid = -1; /* opened again once: the pid may name a new process */
  }
  return 0;
}

static int pages_present(int pid, uint64_t addr, size_t len, int write) {
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (addr + len < addr) return 0;
  uint64_t first = addr / page, n = (addr + len - 1) / page - first + 1;
  if (n > PRESENT_CHECK_PAGES) return 0;
  uint64_t entry[PRESENT_CHECK_PAGES];
  uint64_t i = 0;
  while (i < n && known_entry(pid, first + i, &entry[i])) i++;
  if (i < n && !read_pagemap(pid, first, n, entry)) return 0;
  for (i = 0; i < n; i++)
    if (!page_ok(entry[i], write)) return 0;
  return 1;
}

/* What vmRead and vmWrite answer when a page is not present and the caller has
 * not said it checked the range (mayFault): it looks at the process's maps and
 * asks again. */
#define NOT_PRESENT EAGAIN

/* vmRead(pid, addr, len, mayFault) -> Buffer | -errno: the caller's memory, by process_vm_readv */
static napi_value js_vm_read(napi_env env, napi_callback_info info) {
  ARGS(4);
  int pid = (int)arg_num(env, argv[0]);
  uint64_t addr;
  bool lossless, may_fault = false;
  napi_get_value_bigint_uint64(env, argv[1], &addr, &lossless);
  size_t len = (size_t)arg_num(env, argv[2]);
  napi_get_value_bool(env, argv[3], &may_fault);
  void *data;
  napi_value buf;
  if (napi_create_buffer(env, len, &data, &buf) != napi_ok) return ret_int(env, -ENOMEM);
  if (!len) return buf;
  if (!may_fault && !pages_present(pid, addr, len, 0)) return ret_int(env, -NOT_PRESENT);
  struct iovec local = { data, len }, remote = { (void *)(uintptr_t)addr, len };
  ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n < 0) return ret_int(env, -errno);
  if ((size_t)n != len) return ret_int(env, -EFAULT);
  return buf;
}

/* vmWrite(pid, addr, buffer, mayFault) -> 0 | -errno */
static napi_value js_vm_write(napi_env env, napi_callback_info info) {
  ARGS(4);
  int pid = (int)arg_num(env, argv[0]);
  uint64_t addr;
  bool lossless, may_fault = false;
  napi_get_value_bigint_uint64(env, argv[1], &addr, &lossless);
  void *data = NULL;
  size_t len = 0;
  napi_get_buffer_info(env, argv[2], &data, &len);
  napi_get_value_bool(env, argv[3], &may_fault);
  if (!len) return ret_int(env, 0);
  if (!may_fault && !pages_present(pid, addr, len, 1)) return ret_int(env, -NOT_PRESENT);
  struct iovec local = { data, len }, remote = { (void *)(uintptr_t)addr, len };
  ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n < 0) return ret_int(env, -errno);
  return ret_int(env, (size_t)n == len ? 0 : -EFAULT);
}

/*
 * descriptorDevice(pid, fd) -> [major, minor] | -errno: the device of the
 * file behind /proc/PID/fd/FD, by statx asking for nothing and syncing
 * nothing, so a file of this very mount costs no request (FUSE then fills in
 * its cached attributes alone); a stat that syncs would wait for this thread.
 */
static napi_value js_descriptor_device(napi_env env, napi_callback_info info) {
  ARGS(2);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)arg_num(env, argv[0]), (int)arg_num(env, argv[1]));
  struct statx st;
  if (statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, 0, &st) < 0) return ret_int(env, -errno);
  napi_value out;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, num(env, st.stx_dev_major));
  napi_set_element(env, out, 1, num(env, st.stx_dev_minor));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  const struct { const char *name; napi_callback fn; } fns[] = {
    { "mount", js_mount }, { "unmount", js_unmount },
    { "replyErr", js_reply_err }, { "replyEntry", js_reply_entry }, { "replyAttr", js_reply_attr },
    { "replyOpen", js_reply_open }, { "replyBuf", js_reply_buf }, { "replyWrite", js_reply_write },
    { "replyDir", js_reply_dir }, { "replyIoctl", js_reply_ioctl }, { "replyPoll", js_reply_poll },
    { "onInterrupt", js_on_interrupt }, { "notifyPoll", js_notify_poll }, { "dropPoll", js_drop_poll },
    { "setSnapshot", js_set_snapshot }, { "invalInode", js_inval_inode }, { "invalEntry", js_inval_entry },
    { "vmRead", js_vm_read }, { "vmWrite", js_vm_write }, { "descriptorDevice", js_descriptor_device },
  };
  for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
