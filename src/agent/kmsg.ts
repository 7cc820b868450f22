/**
 * The kernel log line: toa.ko printed "TOA: toa loaded" and runbooks check `dmesg | grep TOA`, so the
 * agent writes the same kind of line to /dev/kmsg. Failure to write is not an error.
 */
import { appendFileSync } from "node:fs";

/** Write `TOA: <text>` at KERN_INFO to the kernel log; returns whether it was written. */
export function kernelLog(text: string): boolean {
  try {
    appendFileSync("/dev/kmsg", `<6>TOA: ${text}\n`);
    return true;
  } catch {
    return false;
  }
}
