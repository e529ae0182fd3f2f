// SPDX-License-Identifier: GPL-2.0
/*
 * bench-age - make a guest's free memory look like a long-running one's
 * (make bench, guest side of the "aged" row).
 *
 * usage: bench-age DIR MIB [CHUNK_KB]	(CHUNK_KB defaults to 64)
 * Writes DIR/a and DIR/b, MIB in all, in alternating CHUNK_KB pieces, so
 * that the pages of the two files interleave in physical memory.  DIR is
 * meant to be a tmpfs mounted with huge=never: every page is then an
 * order-0, movable page that stays put until its file is deleted.  Deleting
 * one file afterwards leaves its pages as small free holes between the
 * pages of the other, the free-list layout of a guest that has run for a
 * while.  Prints one line:
 *	AGE a_kb A b_kb B ms T
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int open_in(const char *dir, const char *name)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		perror(path);
	return fd;
}

static int put(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n <= 0) {
			perror("write");
			return -1;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long total, chunk, done = 0;
	unsigned long long kb[2] = { 0, 0 };
	double t0;
	char *buf;
	int fd[2];

	if (argc < 3) {
		fprintf(stderr, "usage: %s DIR MIB [CHUNK_KB]\n", argv[0]);
		return 2;
	}
	total = strtoul(argv[2], NULL, 0) << 20;
	chunk = (argc > 3 ? strtoul(argv[3], NULL, 0) : 64) << 10;
	if (!total || !chunk || chunk > total) {
		fprintf(stderr, "%s: bad sizes\n", argv[0]);
		return 2;
	}
	buf = malloc(chunk);
	if (!buf)
		return 1;
	memset(buf, 0x5a, chunk);
	fd[0] = open_in(argv[1], "a");
	fd[1] = open_in(argv[1], "b");
	if (fd[0] < 0 || fd[1] < 0)
		return 1;
	t0 = now_ms();
	while (done + chunk <= total) {
		int which = (done / chunk) & 1;

		if (put(fd[which], buf, chunk))
			return 1;
		kb[which] += chunk >> 10;
		done += chunk;
	}
	close(fd[0]);
	close(fd[1]);
	printf("AGE a_kb %llu b_kb %llu ms %.0f\n", kb[0], kb[1], now_ms() - t0);
	return 0;
}
