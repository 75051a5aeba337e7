/*
 * Keeping the client's CPU out of idle while the server busy-polls.
 *
 * The server's thread lingers after a request (fuse3.c), so a client's next
 * request finds it running. The reply still has to wake the client, and on a
 * VM whose idle vCPUs halt, a client whose CPU went idle while it waited pays
 * for that CPU's wake-up, more than a request costs. While the server lingers,
 * one thread per other CPU spins there at SCHED_IDLE: a CPU that has nothing
 * else to run runs it instead of halting, and anything else that wants the
 * CPU (the woken client first) preempts it at once.
 *
 * The server asks for it only once it has caught a run of requests (fuse3.c),
 * and a warmer keeps spinning GRACE_NS past the end of the server's window,
 * so a window that opens soon after needs no wake-up: waking a thread on a
 * halted CPU costs the server a system call and an interrupt, per window.
 * None spins on the CPU the server lingers on: its yields there would hand
 * the CPU to it. A server limited to one CPU, or allowed more than
 * MAX_WARMERS, starts none, and so does one started with IOMMUFS_WARM=0.
 */
#define _GNU_SOURCE
#include "warm.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_WARMERS 8
#define GRACE_NS 1000000LL

typedef struct {
  int cpu;
  _Atomic unsigned seq;    /* futex word: bumped to wake it */
  _Atomic int asleep_on;   /* the CPU it sleeps on, -1 while awake */
} warmer_t;

static warmer_t warmers[MAX_WARMERS];
static int nwarmers;
static _Atomic long long warm_until; /* monotonic ns: spin until then (and GRACE_NS more) */
static _Atomic int server_cpu = -1;   /* where the lingering thread runs */
static int started;                   /* 0 not yet, 1 running, -1 none (one CPU, too many, or turned off) */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void futex(_Atomic unsigned *word, int op, unsigned val) {
  syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

/* Whether a warmer should spin now; where it runs is asked each time, as an affinity set from outside may have moved it. */
static int wanted(void) {
  return atomic_load(&server_cpu) != sched_getcpu() && now_ns() < atomic_load(&warm_until) + GRACE_NS;
}

static void *warm(void *arg) {
  warmer_t *w = arg;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(w->cpu, &one);
  struct sched_param idle = { 0 };
  if (sched_setaffinity(0, sizeof one, &one) || sched_setscheduler(0, SCHED_IDLE, &idle)) return NULL;
  for (;;) {
    unsigned seq = atomic_load(&w->seq);
    atomic_store(&w->asleep_on, sched_getcpu());
    if (!wanted()) futex(&w->seq, FUTEX_WAIT, seq);
    atomic_store(&w->asleep_on, -1);
    while (wanted()) cpu_relax();
  }
  return NULL;
}

static void start(void) {
  cpu_set_t mine;
  started = -1;
  const char *knob = getenv("IOMMUFS_WARM");
  if (knob && strcmp(knob, "0") == 0) return;
  if (sched_getaffinity(0, sizeof mine, &mine)) return;
  int n = CPU_COUNT(&mine);
  if (n < 2 || n > MAX_WARMERS) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (int cpu = 0; cpu < CPU_SETSIZE && nwarmers < MAX_WARMERS; cpu++) {
    if (!CPU_ISSET(cpu, &mine)) continue;
    warmer_t *w = &warmers[nwarmers];
    w->cpu = cpu;
    w->asleep_on = -1;
    pthread_t t;
    if (pthread_create(&t, &attr, warm, w) == 0) nwarmers++;
  }
  pthread_attr_destroy(&attr);
  if (nwarmers) started = 1;
}

void warm_stop(void) {
  if (started > 0) atomic_store(&warm_until, now_ns());
}

void warm_others(long long until) {
  if (!started) start();
  if (started < 0) return;
  int cpu = sched_getcpu();
  atomic_store(&server_cpu, cpu);
  atomic_store(&warm_until, until);
  /* only a warmer that sleeps, and not on the server's own CPU (where an outside affinity may also have put it), needs waking */
  for (int i = 0; i < nwarmers; i++) {
    warmer_t *w = &warmers[i];
    int on = atomic_load(&w->asleep_on);
    if (on >= 0 && on != cpu) {
      atomic_fetch_add(&w->seq, 1);
      futex(&w->seq, FUTEX_WAKE, 1);
    }
  }
}
