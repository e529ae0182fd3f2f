// SPDX-License-Identifier: GPL-2.0
/*
 * bench-pressure - time to get memory under pressure (make bench, guest).
 *
 * usage: bench-pressure MiB
 * Makes itself the OOM killer's first choice (oom_score_adj 1000, so the
 * guest's shell survives), maps MiB of anonymous memory and writes one
 * byte per 4 KiB page, then prints one line:
 *	PRESSURE mib M ms T majflt F
 * (T: milliseconds to touch it all; F: its own major faults).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 0;
	unsigned long size = mib << 20, off;
	struct rusage ru;
	FILE *f;
	char *p;
	double t0;

	if (!mib) {
		fprintf(stderr, "usage: bench-pressure MiB\n");
		return 2;
	}
	f = fopen("/proc/self/oom_score_adj", "w");
	if (f) {
		fputs("1000\n", f);
		fclose(f);
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	t0 = now_ms();
	for (off = 0; off < size; off += 4096)
		p[off] = 1;
	t0 = now_ms() - t0;
	getrusage(RUSAGE_SELF, &ru);
	printf("PRESSURE mib %lu ms %.1f majflt %ld\n", mib, t0, ru.ru_majflt);
	return 0;
}
