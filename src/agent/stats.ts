/** Reading the per-CPU counters of a load, summed over CPUs. */
import { existsSync } from "node:fs";
import { BpfMap, codec } from "../bpf/index.js";
import { Counter, type CounterName } from "../programs/layout.js";
import { pinPaths } from "./pins.js";

export type Counters = Record<CounterName, number>;

/** Sum every counter of a per-CPU stats map. */
export function readCounters(map: BpfMap<number, bigint>): Counters {
  const out = {} as Counters;
  for (const [name, index] of Object.entries(Counter) as [CounterName, number][]) {
    const perCpu = map.lookupPerCpu(index) ?? [];
    out[name] = Number(perCpu.reduce((a, b) => a + b, 0n));
  }
  return out;
}

/** Open a pinned per-CPU counter map with typed codecs. */
export function openCounters(path: string): BpfMap<number, bigint> {
  return BpfMap.fromPin(path, { key: codec.u32, value: codec.u64 });
}

/** Counters of the receiver loaded at `pinDir`, or undefined when nothing is loaded. */
export function receiverCounters(pinDir: string): Counters | undefined {
  const path = pinPaths(pinDir).stats;
  if (!existsSync(path)) return undefined;
  const m = openCounters(path);
  try {
    const c = readCounters(m);
    // The receiver counts where it found each TOA; toa.ko's total is their sum. (Receivers before
    // 0.2 counted the total too, in its own slot, along with the same found_in_* counts.)
    c.syn_recv_sock_toa = c.found_in_syn + c.found_in_ack + c.found_in_data;
    return c;
  } finally {
    m.close();
  }
}

/** The receiver's counters under toa.ko's names and ours, for display. */
export const receiverCounterNames: CounterName[] = [
  "syn_recv_sock_toa",
  "syn_recv_sock_no_toa",
  "getname_toa_ok",
  "getname_toa_empty",
  "getname_toa_mismatch",
  "untrusted",
  "malformed",
  "nat64",
  "nat64_lookup_ok",
  "found_in_syn",
  "found_in_ack",
  "found_in_data",
  "data_search_stopped",
];
