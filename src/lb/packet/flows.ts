/**
 * Expiry of nat_flows: the tc program creates two entries per connection (the client's direction
 * and the backend's) and only ever refreshes them; the control plane decides when a connection is
 * over and deletes both. {@link flowVerdict} is the rule, pure; {@link sweepFlows} applies it to the map.
 *
 * Cost: BpfMap.entries() reads the map with BPF_MAP_LOOKUP_BATCH (a few syscalls per thousand
 * entries; a walk of GET_NEXT_KEY + LOOKUP where that is missing), plus two lookups and two deletes
 * per connection removed.
 */
import type { BpfMap } from "../../bpf/index.js";
import { LbError } from "../errors.js";
import { FlowDir, FlowFlag, FlowKey, FlowValue } from "../../programs/nat-layout.js";
import { reverseFlowKey } from "./structs.js";

/** How long a connection may stay in each state, in milliseconds. */
export interface SweepTimeouts {
  /** From the SYN to the backend's first packet; past it the connect failed. */
  readonly connectMs: number;
  /**
   * From the SYN to the client's ACK (the handshake's end); past it the half-open connection goes
   * and gives its place in the half-open budget back. Spoofed SYNs never complete.
   */
  readonly synMs: number;
  /** No packet either way for this long: the connection is dropped. */
  readonly idleMs: number;
  /** Both sides sent FIN and nothing moved for this long (TIME_WAIT-like linger for the last ACK). */
  readonly closedMs: number;
}

/** Why a connection was removed. */
export type SweepReason = "rst" | "closed" | "idle" | "connect_failed" | "syn_timeout" | "orphan";
export const SWEEP_REASONS: readonly SweepReason[] = ["rst", "closed", "idle", "connect_failed", "syn_timeout", "orphan"];

/** What a sweep found and did. */
export interface SweepResult {
  /** Connections left and still open, per backend index (indices with none are absent). */
  readonly active: Map<number, number>;
  /** Connections left that are closed both ways, kept closedMs for late ACKs and retransmits. */
  readonly closing: number;
  /** Connections removed (an entry whose other direction is gone counts as one). */
  readonly removed: number;
  readonly removedBy: Record<SweepReason, number>;
  /** Connections whose backend never answered within connectMs, per backend index. */
  readonly connectFailures: Map<number, number>;
  /** nat_flows entries seen. */
  readonly entries: number;
  /** Connections left whose handshake has not completed (they hold the half-open budget). */
  readonly halfOpen: number;
}

/** Timeouts in nanoseconds (CLOCK_MONOTONIC, the program's bpf_ktime_get_ns). */
export interface SweepLimitsNs {
  connect: bigint;
  syn: bigint;
  idle: bigint;
  closed: bigint;
}

/** Check timeouts where they enter and turn them into nanoseconds. */
export function sweepLimits(t: SweepTimeouts): SweepLimitsNs {
  const ns = (v: number, name: string): bigint => {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new LbError("LB_ERR_CONFIG", `sweep: ${name} must be a number of milliseconds >= 0, got ${v}`);
    return BigInt(Math.round(v * 1e6));
  };
  return { connect: ns(t.connectMs, "connectMs"), syn: ns(t.synMs, "synMs"), idle: ns(t.idleMs, "idleMs"), closed: ns(t.closedMs, "closedMs") };
}

const flagsOf = (v: Buffer | undefined): number => (v ? v[FlowValue.flags] : 0);
const lastOf = (v: Buffer | undefined): bigint => (v ? v.readBigUInt64LE(FlowValue.lastNs) : 0n);
const createdOf = (v: Buffer | undefined): bigint => (v ? v.readBigUInt64LE(FlowValue.createdNs) : 0n);
const max = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b > a ? b : a));

/**
 * Whether a connection is over, from its two flow values (raw nat_flow bytes; undefined for a
 * direction that is missing), or undefined to keep it. In order:
 *   rst             an RST went either way
 *   connect_failed  the backend's direction never saw a packet (last_ns 0) connectMs after the SYN
 *   syn_timeout     the client never completed the handshake (HALF_OPEN) synMs after its SYN
 *   closed          FIN both ways and the last packet older than closedMs
 *   idle            no packet either way for idleMs
 *   orphan          one direction missing (the pair is mid-insertion or mid-removal) and
 *                   the other older than connectMs: the program inserts the backend's direction
 *                   first, then the client's, so a fresh lone entry is left alone
 */
export function flowVerdict(toBackend: Buffer | undefined, toClient: Buffer | undefined, nowNs: bigint, limits: SweepLimitsNs): SweepReason | undefined {
  if ((flagsOf(toBackend) | flagsOf(toClient)) & FlowFlag.RST) return "rst";
  const created = toBackend ? createdOf(toBackend) : createdOf(toClient);
  if (!toBackend || !toClient) return nowNs - created > limits.connect ? "orphan" : undefined;
  if (lastOf(toClient) === 0n && nowNs - created > limits.connect) return "connect_failed";
  if (flagsOf(toBackend) & FlowFlag.HALF_OPEN && nowNs - created > limits.syn) return "syn_timeout";
  const last = max(lastOf(toBackend), lastOf(toClient), created);
  if (flagsOf(toBackend) & flagsOf(toClient) & FlowFlag.FIN && nowNs - last > limits.closed) return "closed";
  if (nowNs - last > limits.idle) return "idle";
  return undefined;
}

/**
 * Walk nat_flows once: pair each entry with its other direction ({@link reverseFlowKey}), delete both
 * entries of every connection {@link flowVerdict} ends, count the rest per backend. Before deleting,
 * both entries are read again so a packet that arrived during the walk keeps its connection.
 */
export function sweepFlows(flows: BpfMap<Buffer, Buffer>, timeouts: SweepTimeouts | ((service: number) => SweepTimeouts), nowNs: bigint = process.hrtime.bigint()): SweepResult {
  // Per service (the flow's FlowValue.service: its listener's timeouts), computed once each.
  const byService = new Map<number, SweepLimitsNs>();
  const limitsOf = (value: Buffer): SweepLimitsNs => {
    if (typeof timeouts !== "function") return (byService.get(-1) ?? byService.set(-1, sweepLimits(timeouts)).get(-1))!;
    const id = value[FlowValue.service];
    return (byService.get(id) ?? byService.set(id, sweepLimits(timeouts(id))).get(id))!;
  };
  // Snapshot first, delete after: deleting while walking makes GET_NEXT_KEY restart from the top.
  const seen = new Map<string, { key: Buffer; value: Buffer }>();
  for (const [key, value] of flows.entries()) seen.set(key.toString("latin1"), { key, value });

  const active = new Map<number, number>();
  const connectFailures = new Map<number, number>();
  const removedBy = Object.fromEntries(SWEEP_REASONS.map((r) => [r, 0])) as Record<SweepReason, number>;
  let removed = 0;
  let closing = 0;
  let halfOpen = 0;
  const done = new Set<string>();
  const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);

  for (const [id, e] of seen) {
    if (done.has(id)) continue;
    done.add(id);
    const family = e.key[FlowKey.family];
    const rkey = reverseFlowKey(e.value, family);
    const rid = rkey.toString("latin1");
    // The walk can miss an entry inserted or moved meanwhile: ask for the partner directly.
    let other = done.has(rid) ? undefined : (seen.get(rid)?.value ?? flows.lookup(rkey));
    // A partner that does not point back belongs to a newer connection that reused the tuple.
    if (other && reverseFlowKey(other, family).toString("latin1") !== id) other = undefined;
    if (other) done.add(rid);
    const mine = e.value[FlowValue.dir] === FlowDir.TO_BACKEND;
    const pick = (a: Buffer | undefined, b: Buffer | undefined) => (mine ? [a, b] : [b, a]);
    let [toBackend, toClient] = pick(e.value, other);
    const backend = (toBackend ?? toClient)!.readUInt32LE(FlowValue.backend);

    const limits = limitsOf(e.value);
    let verdict = flowVerdict(toBackend, toClient, nowNs, limits);
    if (verdict) {
      [toBackend, toClient] = pick(flows.lookup(e.key), other ? flows.lookup(rkey) : undefined);
      if (!toBackend && !toClient) continue; // gone meanwhile
      verdict = flowVerdict(toBackend, toClient, nowNs, limits);
    }
    if (!verdict) {
      if (flagsOf(toBackend) & FlowFlag.HALF_OPEN) halfOpen++;
      if (flagsOf(toBackend) & flagsOf(toClient) & FlowFlag.FIN) closing++;
      else bump(active, backend);
      continue;
    }
    flows.delete(e.key);
    if (other) flows.delete(rkey);
    removed++;
    removedBy[verdict]++;
    if (verdict === "connect_failed") bump(connectFailures, backend);
  }
  return { active, closing, removed, removedBy, connectFailures, entries: seen.size, halfOpen };
}
