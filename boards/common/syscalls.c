/*
 * newlib(-nano) system calls for trec-tflm boards, on top of board.h:
 * stdout/stderr -> board_write (the console UART), stdin <- board_getc, exit -> board_exit,
 * heap from the end of .bss up to the bottom of the main stack (sections.ld).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "board.h"
#include "board_extra.h"

#undef errno
extern int errno;

/* Prototypes (newlib calls these; no header declares all of them). */
int _write(int fd, const char *buf, int len);
int _read(int fd, char *buf, int len);
int _close(int fd);
int _lseek(int fd, int offset, int whence);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
int _getpid(void);
int _kill(int pid, int sig);
void _exit(int code) __attribute__((noreturn));
void *_sbrk(ptrdiff_t incr);
char *board_heap_break(void);

static char *heap_break;

char *board_heap_break(void) { return heap_break ? heap_break : (char *)__heap_start; }

void *_sbrk(ptrdiff_t incr) {
  char *prev = board_heap_break();
  if (incr > 0 ? (uintptr_t)incr > (uintptr_t)((char *)__stack_limit - prev)
               : (uintptr_t)(-incr) > (uintptr_t)(prev - (char *)__heap_start)) {
    errno = ENOMEM;
    return (void *)-1;
  }
  heap_break = prev + incr;
  return prev;
}

int _write(int fd, const char *buf, int len) {
  if (fd != 1 && fd != 2) {
    errno = EBADF;
    return -1;
  }
  board_write(buf, (size_t)len);
  return len;
}

/* stdin: block for the first byte, then take what has already arrived (line-oriented
 * readers such as fgets get a whole line without waiting for a full buffer). */
int _read(int fd, char *buf, int len) {
  if (fd != 0) {
    errno = EBADF;
    return -1;
  }
  int n = 0;
  while (n < len) {
    int c = board_getc(n == 0 ? -1 : 0);
    if (c < 0) break;
    buf[n++] = (char)c;
    if (c == '\n') break;
  }
  return n;
}

int _close(int fd) {
  (void)fd;
  return -1;
}

int _lseek(int fd, int offset, int whence) {
  (void)fd;
  (void)offset;
  (void)whence;
  return 0;
}

int _fstat(int fd, struct stat *st) {
  (void)fd;
  st->st_mode = S_IFCHR;
  return 0;
}

int _isatty(int fd) { return fd >= 0 && fd <= 2; }

int _getpid(void) { return 1; }

/* raise()/abort() end up here: exit like a shell reports a signal (128 + signal). */
int _kill(int pid, int sig) {
  (void)pid;
  char msg[] = "\r\n*** killed by signal 00\r\n";
  msg[23] = (char)('0' + (sig / 10) % 10);
  msg[24] = (char)('0' + sig % 10);
  board_puts(msg);
  board_exit(128 + sig);
}

void _exit(int code) { board_exit(code); }
