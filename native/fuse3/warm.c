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
 * The spinning ends when the server stops lingering, and stays off the CPU
 * the server lingers on (its yields there would hand the CPU to it).
 * A server limited to one CPU, or allowed more than MAX_WARMERS, starts none,
 * and so does one started with IOMMUFS_WARM=0.
 */
#define _GNU_SOURCE
#include "warm.h"
#include <limits.h>
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

static _Atomic long long warm_until; /* monotonic ns: spin until then */
static _Atomic int server_cpu = -1;   /* where the lingering thread runs */
static _Atomic unsigned wake_seq;     /* futex word: bumped to wake sleeping warmers */
static int started;                   /* 0 not yet, 1 running, -1 none (one CPU, or too many) */

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

static void *warmer(void *arg) {
  int cpu = (int)(long)arg;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  struct sched_param idle = { 0 };
  if (sched_setaffinity(0, sizeof one, &one) || sched_setscheduler(0, SCHED_IDLE, &idle)) return NULL;
  for (;;) {
    unsigned seq = atomic_load(&wake_seq);
    /*
     * off the server's own CPU (its yields would hand the CPU to this thread), and only while it
     * lingers; where it runs is asked each time, as an affinity set from outside may have moved it
     */
    if (atomic_load(&server_cpu) == sched_getcpu() || now_ns() >= atomic_load(&warm_until)) {
      futex(&wake_seq, FUTEX_WAIT, seq);
      continue;
    }
    while (atomic_load(&server_cpu) != sched_getcpu() && now_ns() < atomic_load(&warm_until)) cpu_relax();
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
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    pthread_t t;
    if (CPU_ISSET(cpu, &mine) && pthread_create(&t, &attr, warmer, (void *)(long)cpu) == 0) started = 1;
  }
  pthread_attr_destroy(&attr);
}

void warm_stop(void) {
  if (started > 0) atomic_store(&warm_until, 0);
}

void warm_others(long long now, long long until) {
  if (!started) start();
  if (started < 0) return;
  int cpu = sched_getcpu();
  int moved = atomic_exchange(&server_cpu, cpu) != cpu;
  long long was = atomic_exchange(&warm_until, until);
  /* sleeping warmers wake when a window opens, and when the server left a CPU whose warmer it stopped */
  if (was <= now || moved) {
    atomic_fetch_add(&wake_seq, 1);
    futex(&wake_seq, FUTEX_WAKE, INT_MAX);
  }
}
