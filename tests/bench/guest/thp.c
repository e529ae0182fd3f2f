// SPDX-License-Identifier: GPL-2.0
/*
 * bench-thp - THP share of a fresh anonymous mapping (make bench, guest).
 *
 * usage: bench-thp [MiB [plain]]	(default 512)
 * Maps MiB of anonymous memory aligned to 2 MiB, asks for huge pages
 * (MADV_HUGEPAGE, unless "plain" is given: then the mapping gets only the
 * huge pages that are free at fault time, as a program that never asked
 * for them does with THP "always" and defrag "madvise"), writes one byte
 * per 4 KiB page, then reads AnonHugePages from /proc/self/smaps_rollup
 * and prints one line:
 *	THP size_kb S anonhuge_kb A ms T
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define HUGE_SZ (2UL << 20)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long anon_huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	unsigned long size = (argc > 1 ? strtoul(argv[1], NULL, 0) : 512) << 20;
	unsigned long off;
	char *raw, *p;
	double t0;

	raw = mmap(NULL, size + HUGE_SZ, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	p = (char *)(((unsigned long)raw + HUGE_SZ - 1) & ~(HUGE_SZ - 1));
	if ((argc < 3 || strcmp(argv[2], "plain")) &&
	    madvise(p, size, MADV_HUGEPAGE))
		perror("madvise");
	t0 = now_ms();
	for (off = 0; off < size; off += 4096)
		p[off] = 1;
	printf("THP size_kb %lu anonhuge_kb %ld ms %.1f\n", size >> 10,
	       anon_huge_kb(), now_ms() - t0);
	return 0;
}
