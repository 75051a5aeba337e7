/* What the outside conformance programs share: one ioctl as an errno, and the
 * "name: ok" / "name: FAIL got X want Y" line each check prints. */
#ifndef CONFORM_H
#define CONFORM_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

/* Checks that failed; the program exits 1 when any did. */
static int fails;

/* 0 or the errno of one ioctl. */
static int io(int f, unsigned long cmd, void *arg)
{
	return ioctl(f, cmd, arg) < 0 ? errno : 0;
}

static const char *ename(int e)
{
	static char s[32];
	if (!e)
		return "ok";
	const char *n = strerrorname_np(e);
	if (n)
		return n;
	snprintf(s, sizeof s, "errno%d", e);
	return s;
}

/* got and want are 0 or an errno. */
static void expect(const char *name, int got, int want)
{
	if (got == want) {
		printf("%s: ok\n", name);
		return;
	}
	printf("%s: FAIL got %s want %s\n", name, ename(got), ename(want));
	fails++;
}

static void expect_u64(const char *name, uint64_t got, uint64_t want)
{
	if (got == want) {
		printf("%s: ok\n", name);
		return;
	}
	printf("%s: FAIL got 0x%llx want 0x%llx\n", name, (unsigned long long)got, (unsigned long long)want);
	fails++;
}

#endif
