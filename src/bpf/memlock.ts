/**
 * What the toolkit's automatic RLIMIT_MEMLOCK raise did, once per process (kept apart so that both the
 * syscall layer, which raises it, and the error hints, which report it, can read it).
 *
 * Kernels before 5.11 charge maps and programs to RLIMIT_MEMLOCK (64 KiB by default) and answer EPERM
 * when it is exceeded — the errno of missing privileges too.
 */
let raiseErrno: number | undefined;

/** undefined: never needed; 0: raised; otherwise the setrlimit errno. */
export function memlockRaiseErrno(): number | undefined {
  return raiseErrno;
}

/** Record the outcome of the one raise (syscall.ts). */
export function recordMemlockRaise(errno: number): void {
  raiseErrno = errno;
}

/** Forget the outcome (a new syscall backend is a new kernel: tests). */
export function forgetMemlockRaise(): void {
  raiseErrno = undefined;
}
