/**
 * The kernel's own per-program statistics (run_cnt, run_time_ns in bpf_prog_info), switched on for
 * as long as the caller holds them: BPF_ENABLE_STATS (Linux 5.8) returns an fd, and the kernel keeps
 * counting until the last such fd closes, then restores the setting by itself — a crash can't leave
 * the machine paying for the statistics (each run takes two clock reads while they are on).
 */
import { closeSync } from "node:fs";
import { BpfCommand, bpf } from "./syscall.js";
import { EnableStatsAttr } from "./sys.js";

/** enum bpf_stats_type. */
const BPF_STATS_RUN_TIME = 0;

/** Run statistics held on; close() gives them back. */
export interface RunStatsHandle {
  close(): void;
}

/** Switch on run-time statistics until the handle is closed. */
export function enableRunStats(): RunStatsHandle {
  let fd = bpf(BpfCommand.ENABLE_STATS, EnableStatsAttr.encode({ type: BPF_STATS_RUN_TIME }), EnableStatsAttr.size, "run-time statistics");
  return {
    close() {
      if (fd >= 0) closeSync(fd);
      fd = -1;
    },
  };
}
