// SPDX-License-Identifier: GPL-2.0
/*
 * vmwb-rogue - raw VMware balloon backdoor calls from guest user space.
 *
 * A test program for the emulated host: it can break the protocol on
 * purpose (double locks, unknown pages, bad batch sizes, commands before
 * START, ...), which a real driver never does, so the tests can check
 * that the host notices.  It only ever locks pages it owns: 16 locked
 * pages of its own memory, whose PFNs it reads from /proc/self/pagemap
 * (needs root).  On VMware the backdoor port is reachable from ring 3;
 * under QEMU the IN really runs (the host plugin answers after it), so
 * the four bytes of the 32-bit port need ioperm().
 *
 * usage: vmwb-rogue OP [OP...]  - runs the OPs in order, one output line
 * ("R: ...") each.  Values are decimal or 0x hex; "pI" is the PFN of own
 * page I, "hI" that PFN rounded down to 2 MiB.
 *	pfns			print the PFNs of the own pages
 *	waitfile PATH		wait (up to 600 s) until PATH exists
 *	call CMD A1 A2		one backdoor call
 *	batch CMD N E,E,...	batched call on own page 0 with N entries
 *				(entries beyond the list are zero); each entry
 *				starts with status 0x1f so untouched ones show
 *	peek I			first 8 bytes of own page I
 *	poke I			write to own page I
 *	flags N			N GET_TARGET calls, each right after an
 *				ADD whose flags are known; counts the calls
 *				after which EFLAGS is not what the ADD left
 *				(the host must not disturb them)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NPAGES		16
#define PAGE		4096
#define BD_MAGIC	0x456c6d6fUL
#define BD_PORT		0x5670UL

static uint8_t *mem;
static uint64_t pfn[NPAGES];

static void die(const char *what)
{
	printf("R: error %s: %s\n", what, strerror(errno));
	exit(1);
}

static void setup(void)
{
	int fd;

	mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	memset(mem, 0, NPAGES * PAGE);
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("pagemap");
	for (int i = 0; i < NPAGES; i++) {
		uint64_t e;
		off_t off = (off_t)((uintptr_t)(mem + i * PAGE) / PAGE) * 8;

		if (pread(fd, &e, 8, off) != 8)
			die("pagemap read");
		if (!(e >> 63) || !(e & ((1ULL << 55) - 1))) {
			errno = EPERM;
			die("page not present or PFN hidden");
		}
		pfn[i] = e & ((1ULL << 55) - 1);
	}
	close(fd);
	if (ioperm(BD_PORT, 4, 1))
		die("ioperm");
}

static uint64_t value(const char *s)
{
	char *end;
	uint64_t v;

	if ((s[0] == 'p' || s[0] == 'h') && s[1]) {
		long i = strtol(s + 1, &end, 10);

		if (*end || i < 0 || i >= NPAGES) {
			printf("R: error bad page %s\n", s);
			exit(2);
		}
		return s[0] == 'p' ? pfn[i] : pfn[i] & ~511ULL;
	}
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || end == s) {
		printf("R: error bad number %s\n", s);
		exit(2);
	}
	return v;
}

struct result {
	uint64_t rax, rbx, rcx;
};

static struct result backdoor(uint64_t cmd, uint64_t a1, uint64_t a2)
{
	struct result r;
	uint64_t rdx, rsi;

	asm volatile("inl %%dx, %%eax"
		     : "=a"(r.rax), "=b"(r.rbx), "=c"(r.rcx), "=d"(rdx), "=S"(rsi)
		     : "a"(BD_MAGIC), "b"(a1), "c"(cmd), "d"(BD_PORT), "S"(a2)
		     : "memory");
	return r;
}

static void print_result(struct result r)
{
	printf("status=0x%" PRIx64 " rbx=0x%" PRIx64 " rcx=0x%" PRIx64,
	       r.rax & 0xffffffff, r.rbx, r.rcx);
}

static void batch(uint64_t cmd, uint64_t n, char *list)
{
	volatile uint64_t *e = (volatile uint64_t *)mem;
	unsigned int count = 0;
	struct result r;

	memset(mem, 0, PAGE);
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (count == PAGE / 8) {
			printf("R: error too many entries\n");
			exit(2);
		}
		e[count++] = (value(t) << 12) | 0x1f;
	}
	r = backdoor(cmd, pfn[0], n);
	printf("R: ");
	print_result(r);
	printf(" entries=");
	for (unsigned int i = 0; i < count; i++)
		printf("%s0x%" PRIx64, i ? "," : "", e[i] & 0x1f);
	printf("\n");
}

/* Flags an ADD of 1 to 0 leaves: CF PF AF ZF SF OF all clear. */
#define ARITH_FLAGS	0x8d5UL
#define TF_NT		0x4100UL

/*
 * POPF makes QEMU end the translation block with the flags written back,
 * so the ADD that follows starts a block whose flags are only known to
 * the translator; a host that resumed the guest without writing them
 * back would hand PUSHF stale ones.  The stack is moved past the red
 * zone before PUSHF writes to it.
 */
static uint64_t flags_after_call(void)
{
	uint64_t rax, rbx, rcx, rdx, rsi, f;

	asm volatile("lea -128(%%rsp), %%rsp\n\t"
		     "pushfq\n\t"
		     "popfq\n\t"
		     "xor %%r8d, %%r8d\n\t"
		     "add $1, %%r8\n\t"
		     "inl %%dx, %%eax\n\t"
		     "pushfq\n\t"
		     "popq %[f]\n\t"
		     "lea 128(%%rsp), %%rsp"
		     : "=a"(rax), "=b"(rbx), "=c"(rcx), "=d"(rdx), "=S"(rsi),
		       [f] "=r"(f)
		     : "a"(BD_MAGIC), "b"(0UL), "c"(1UL), "d"(BD_PORT),
		       "S"(0UL)
		     : "r8", "memory", "cc");
	if ((rax & 0xffffffff) < 0x100)
		return f;	/* a status: the host answered */
	printf("R: error no answer from the host (status 0x%" PRIx64 ")\n",
	       rax & 0xffffffff);
	exit(1);
}

/* GET_TARGET (1) calls; a status below 0x100 is the host's answer. */
static void flags(uint64_t n)
{
	uint64_t bad = 0, first = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t f = flags_after_call();

		if (!(f & (ARITH_FLAGS | TF_NT)))
			continue;
		if (!bad++)
			first = f;
	}
	printf("R: flags calls=0x%" PRIx64 " bad=0x%" PRIx64 " first=0x%" PRIx64
	       "\n", n, bad, first);
}

static void wait_file(const char *path)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	struct stat st;

	for (int i = 0; i < 12000; i++) {
		if (stat(path, &st) == 0) {
			printf("R: found %s\n", path);
			return;
		}
		nanosleep(&ts, NULL);
	}
	printf("R: error timeout waiting for %s\n", path);
	exit(3);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup();
	for (int i = 1; i < argc; i++) {
		const char *op = argv[i];

		if (!strcmp(op, "pfns")) {
			printf("R: pfns");
			for (int p = 0; p < NPAGES; p++)
				printf(" 0x%" PRIx64, pfn[p]);
			printf("\n");
		} else if (!strcmp(op, "waitfile") && i + 1 < argc) {
			wait_file(argv[++i]);
		} else if (!strcmp(op, "call") && i + 3 < argc) {
			uint64_t c = value(argv[i + 1]), a1 = value(argv[i + 2]);
			uint64_t a2 = value(argv[i + 3]);

			i += 3;
			printf("R: ");
			print_result(backdoor(c, a1, a2));
			printf("\n");
		} else if (!strcmp(op, "batch") && i + 3 < argc) {
			uint64_t c = value(argv[i + 1]), n = value(argv[i + 2]);

			batch(c, n, argv[i + 3]);
			i += 3;
		} else if (!strcmp(op, "flags") && i + 1 < argc) {
			flags(value(argv[++i]));
		} else if ((!strcmp(op, "peek") || !strcmp(op, "poke")) &&
			   i + 1 < argc) {
			uint64_t p = value(argv[++i]);
			volatile uint64_t *q;

			if (p >= NPAGES) {
				printf("R: error bad page %s\n", argv[i]);
				return 2;
			}
			q = (volatile uint64_t *)(mem + p * PAGE);
			if (op[1] == 'o')
				*q = 0x1111111111111111ULL;
			printf("R: 0x%016" PRIx64 "\n", *q);
		} else {
			printf("R: error bad op %s\n", op);
			return 2;
		}
	}
	return 0;
}
