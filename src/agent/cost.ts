/**
 * What the receiver costs, in the kernel's own figures: each program's run count and run time
 * (bpf_prog_info run_cnt / run_time_ns) over a measurement window, per connection the receiver saw.
 * Run statistics are switched on only for the window (BPF_ENABLE_STATS: the kernel switches them
 * off again when the measurement ends, whatever happens to this process).
 */
import { closeSync } from "node:fs";
import { BpfCommand, bpfTry, enableRunStats, programInfo } from "../bpf/index.js";
import { AgentError } from "./errors.js";
import { readLoadedSettings } from "./loaded.js";
import { receiverCounters, type Counters } from "./stats.js";

/** One program over the window. */
export interface ProgramCost {
  /** The program's key in the load (receiver, getpeer4, getpeer6, nat64) and its kernel name. */
  key: string;
  name: string;
  runs: number;
  ns: number;
  nsPerRun: number;
  /** Runs per connection (getpeername: calls per connection). */
  runsPerConnection: number;
  nsPerConnection: number;
}

/** The receiver's cost over a window. */
export interface ReceiverCost {
  seconds: number;
  /** Connections the receiver saw complete their handshake (with and without a TOA). */
  connections: number;
  withToa: number;
  programs: ProgramCost[];
  /** All programs together, per connection. */
  nsPerConnection: number;
}

/** Run count and time of a program by id; undefined when it is gone. */
function runStats(id: number): { name: string; runs: bigint; ns: bigint } | undefined {
  const attr = Buffer.alloc(12);
  attr.writeUInt32LE(id, 0);
  const r = bpfTry(BpfCommand.PROG_GET_FD_BY_ID, attr, 12);
  if (r.ret < 0) return undefined;
  try {
    const i = programInfo(r.ret);
    return { name: i.name, runs: i.runCount, ns: i.runTimeNs };
  } finally {
    closeSync(r.ret);
  }
}

const connectionsOf = (c: Counters) => ({ all: c.found_in_syn + c.found_in_ack + c.found_in_data + c.syn_recv_sock_no_toa, toa: c.syn_recv_sock_toa });

/**
 * Measure the receiver loaded at `pinDir` while `during` runs (by default: `seconds` of whatever
 * traffic the host has). Throws when nothing is loaded there.
 */
export async function measureReceiverCost(pinDir: string, options: { seconds?: number; during?: () => Promise<unknown> } = {}): Promise<ReceiverCost> {
  const settings = readLoadedSettings(pinDir);
  if (!settings) throw new AgentError("AGENT_ERR_NOT_LOADED", `nothing loaded at ${pinDir}: run \`toa load\` first`);
  const ids = Object.entries(settings.programs);
  const stats = enableRunStats();
  const started = performance.now();
  try {
    const before = new Map(ids.map(([key, id]) => [key, runStats(id)]));
    const c0 = connectionsOf(receiverCounters(pinDir)!);
    if (options.during) await options.during();
    else await new Promise((r) => setTimeout(r, (options.seconds ?? 10) * 1000));
    const c1 = connectionsOf(receiverCounters(pinDir)!);
    const connections = c1.all - c0.all;
    const programs: ProgramCost[] = [];
    for (const [key, id] of ids) {
      const a = before.get(key);
      const b = runStats(id);
      if (!a || !b) continue;
      const runs = Number(b.runs - a.runs);
      const ns = Number(b.ns - a.ns);
      const per = (x: number) => (connections > 0 ? x / connections : 0);
      programs.push({ key, name: b.name, runs, ns, nsPerRun: runs > 0 ? ns / runs : 0, runsPerConnection: per(runs), nsPerConnection: per(ns) });
    }
    return {
      seconds: (performance.now() - started) / 1000,
      connections,
      withToa: c1.toa - c0.toa,
      programs,
      nsPerConnection: programs.reduce((n, p) => n + p.nsPerConnection, 0),
    };
  } finally {
    stats.close();
  }
}
