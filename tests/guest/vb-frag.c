// SPDX-License-Identifier: GPL-2.0
/*
 * vb-frag LEAVE_MIB: leave the guest's free memory in single pages.
 *
 * Touches anonymous memory (no transparent huge pages) page by page until
 * only LEAVE_MIB MiB are free (MemFree less CmaFree), then gives every
 * other touched page back.  Pages handed out one after the other lie
 * mostly side by side, so what it gives back is free memory with a page
 * in use next to nearly every free page: no free 2 MiB block can form
 * there until the program exits.  Prints "VB-FRAG-READY <kB kept>" and
 * waits for a signal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Free memory any allocation can use: MemFree without CmaFree (a kernel
 * with a CMA area, such as Debian's arm64 ones, counts it as free, but
 * page tables cannot come from there).
 */
static long mem_free_kb(void)
{
	char line[128];
	long kb = -1, cma = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "MemFree:", 8))
			kb = atol(line + 8);
		else if (!strncmp(line, "CmaFree:", 8))
			cma = atol(line + 8);
	}
	fclose(f);
	return kb < 0 ? kb : kb - cma;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len, off, used;
	long leave_kb;
	char *p;

	if (argc != 2 || atol(argv[1]) <= 0) {
		fprintf(stderr, "usage: vb-frag LEAVE_MIB\n");
		return 2;
	}
	leave_kb = atol(argv[1]) * 1024;
	len = (size_t)sysconf(_SC_PHYS_PAGES) * page;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		perror("vb-frag: mmap");
		return 1;
	}
	madvise(p, len, MADV_NOHUGEPAGE);
	for (used = 0; used < len; used += page) {
		if (!(used % (256 * page)) && mem_free_kb() < leave_kb)
			break;
		p[used] = 1;
	}
	for (off = 0; off < used; off += 2 * page)
		madvise(p + off, page, MADV_DONTNEED);
	printf("VB-FRAG-READY %zu\n", used / 2 / 1024);
	fflush(stdout);
	for (;;)
		pause();
}
