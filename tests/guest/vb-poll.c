// SPDX-License-Identifier: GPL-2.0
/*
 * vb-poll FILE WANT: wait in poll() on a sysfs attribute until it says
 * WANT after having said something else.
 *
 * Prints every value it reads, one a line ("VB-POLL <value>"), the
 * first one before it blocks, so a test knows when it is waiting.  No
 * timeout of its own: whoever runs it bounds the wait.  Exits 0 when
 * WANT came, 1 on an error.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int read_value(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	struct pollfd pfd = { .events = POLLPRI | POLLERR };
	int other = 0;
	char val[64];

	if (argc != 3) {
		fprintf(stderr, "usage: vb-poll FILE WANT\n");
		return 1;
	}
	pfd.fd = open(argv[1], O_RDONLY);
	if (pfd.fd < 0) {
		perror(argv[1]);
		return 1;
	}
	for (;;) {
		if (read_value(pfd.fd, val, sizeof(val))) {
			perror("read");
			return 1;
		}
		printf("VB-POLL %s\n", val);
		fflush(stdout);
		if (strcmp(val, argv[2]))
			other = 1;
		else if (other)
			return 0;
		if (poll(&pfd, 1, -1) < 0) {
			perror("poll");
			return 1;
		}
	}
}
