/**
 * Every eBPF program of the project loaded once with the verifier's statistics: how many instructions
 * it has and how many the verifier processed proving it safe (the figure that grows on older
 * verifiers and has a 1,000,000 limit). Run in each leg of the kernel matrix for docs/kernels.md; a
 * refusal is recorded with the verifier's last line instead of stopping the census.
 */
import { BpfMap, Program, raiseMemlockLimit, type ProgramSpec } from "../../src/bpf/index.js";
import { encode } from "../../src/bpf/asm/index.js";
import { DEFAULT_KINDS, MapName, mapSpecs } from "../../src/programs/layout.js";
import { receiverProgram } from "../../src/programs/receiver.js";
import { getpeername4Program, getpeername6Program } from "../../src/programs/rewriter.js";
import { nat64LookupProgram } from "../../src/programs/nat64.js";
import { senderProgram } from "../../src/programs/sender.js";
import { natProgram } from "../../src/programs/nat/index.js";
import { NatMapName, natMapSpecs } from "../../src/programs/nat-layout.js";

export interface CensusRow {
  program: string;
  variant: string;
  instructions: number;
  processed: number;
  /** Wall time of the load (verification dominates; emulation makes it several times longer). */
  ms: number;
  /** The verifier's reason, when it refused the program. */
  error?: string;
  /** The whole verifier log of a refusal. */
  log?: string;
}

/** The line of a verifier log that says why: the last one before the statistics lines. */
export function refusalReason(text: string): string {
  const lines = text.trim().split("\n").map((l) => l.trim()).filter((l) => l && !/^(processed \d+ insns|stack depth|verification time|last_idx|regs=|parent|from \d+ to)/.test(l));
  return lines.slice(-1)[0] ?? "refused (no log)";
}

/** The programs and the settings that change their shape (also the golden test's list). */
export function programVariants(): { variant: string; spec: ProgramSpec }[] {
  return [
    { variant: "default (kinds 254,253,200, trust, SYN)", spec: receiverProgram({ kinds: DEFAULT_KINDS, trust: true, syn: true }) },
    { variant: "--no-syn, no trust list", spec: receiverProgram({ kinds: DEFAULT_KINDS, trust: false, syn: false }) },
    { variant: "8 kinds incl. 28, trust, SYN", spec: receiverProgram({ kinds: [254, 253, 252, 251, 250, 200, 199, 28], trust: true, syn: true }) },
    { variant: "", spec: getpeername4Program() },
    { variant: "", spec: getpeername6Program() },
    { variant: "", spec: nat64LookupProgram() },
    { variant: "", spec: senderProgram() },
    { variant: "", spec: natProgram() },
  ];
}

/** Load each program with statistics; maps are made for the census and closed after. */
export function programCensus(): CensusRow[] {
  try {
    raiseMemlockLimit();
  } catch {
    /* kernels since 5.11 charge BPF memory to the cgroup */
  }
  const maps = new Map<string, BpfMap>();
  const rows: CensusRow[] = [];
  try {
    for (const key of Object.keys(mapSpecs) as (keyof typeof mapSpecs)[]) maps.set(MapName[key], BpfMap.create(mapSpecs[key]));
    const nat = natMapSpecs(1024, 256);
    for (const key of Object.keys(nat) as (keyof typeof nat)[]) maps.set(NatMapName[key], BpfMap.create(nat[key]));
    for (const { variant, spec } of programVariants()) {
      const instructions = encode(spec.instructions, (name) => maps.get(name)?.fd).length / 8; // ld_imm64 counts twice, as the kernel does
      const t0 = performance.now();
      try {
        const p = Program.load(spec, { maps, stats: true });
        rows.push({ program: spec.name, variant, instructions, processed: p.verifierStats?.processedInstructions ?? -1, ms: Math.round(performance.now() - t0) });
        p.close();
      } catch (e) {
        rows.push({ program: spec.name, variant, instructions, processed: -1, ms: Math.round(performance.now() - t0), error: refusalReason((e as Error).message), log: (e as { log?: string }).log ?? (e as Error).message });
      }
    }
  } finally {
    for (const m of maps.values()) m.close();
  }
  return rows;
}
