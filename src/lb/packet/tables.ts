/**
 * The control plane of the packet data path: {@link NatTables} owns the five maps of
 * src/programs/nat-layout.ts and keeps them in step with the services (listeners) and their
 * backends. The tc program reads nat_services, nat_slots and nat_backends per SYN, writes nat_flows
 * and nat_counters; this side writes the former, expires flows and reads the counters.
 *
 * Identity: a service keeps its id (its row of nat_slots) and a backend its index (its entry of
 * nat_backends and its counters) as long as it is configured. A backend is its address, port and
 * local address, shared by the services that name it. A removed backend's index is reused only
 * after a sweep found no flow left on it, so old flows never count for a new backend.
 */
import { BpfMap, codec } from "../../bpf/index.js";
import { formatEndpoint } from "../endpoint.js";
import { LbError } from "../errors.js";
import {
  Admission,
  BackendValue,
  MAX_BACKENDS,
  MAX_SERVICES,
  NatBackendCounter,
  NatCounter,
  natBackendCounterIndex,
  natMapSpecs,
  NatMapName,
  ServiceKey,
  ServiceValue,
  SLOTS,
} from "../../programs/nat-layout.js";
import { fillSlots } from "./slots.js";
import { sweepFlows, type SweepResult, type SweepTimeouts } from "./flows.js";
import { type BackendStruct, natBackend, natServiceKey, type ServiceKeyStruct, type ServiceValueStruct, serviceValueStruct } from "./structs.js";
import { backendKey, checkMap, plan, type NatServiceSpec } from "./service-spec.js";

export type { NatBackendSpec, NatServiceSpec } from "./service-spec.js";

/** What {@link NatTables.apply} wrote for a service. */
export interface AppliedService {
  /** `addr:port` or `[addr]:port`. */
  readonly key: string;
  readonly id: number;
  /** nat_service.slots: 0 when no backend is healthy. */
  readonly filled: number;
  readonly backends: readonly { readonly id: string; readonly index: number }[];
}

/** Counters of one backend, summed over CPUs. */
export interface NatBackendCounters {
  connections: number;
  bytesToBackend: number;
  bytesToClient: number;
  toaWritten: number;
}

/** Everything in nat_counters, summed over CPUs. */
export interface NatCounters {
  global: Record<keyof typeof NatCounter, number>;
  /** Per backend index in use (configured, or removed with flows left). */
  backends: Map<number, NatBackendCounters>;
}

/**
 * The maps as this module reads them: services and backends typed by their struct declarations
 * (nat-layout.ts); flows as raw bytes, which the sweep reads field by field (flows.ts).
 */
export interface NatMaps {
  flows: BpfMap<Buffer, Buffer>;
  services: BpfMap<ServiceKeyStruct, ServiceValueStruct>;
  slots: BpfMap<number, number>;
  backends: BpfMap<number, BackendStruct>;
  counters: BpfMap<number, bigint>;
  /** The program's per-CPU buffer; nothing to fill. */
  scratch: BpfMap<number, Buffer>;
  /** The half-open budget (nat-layout.ts Admission). */
  admission: BpfMap<number, bigint>;
}

const codecs = {
  flows: {},
  services: { key: ServiceKey, value: ServiceValue },
  slots: { key: codec.u32, value: codec.u32 },
  backends: { key: codec.u32, value: BackendValue },
  counters: { key: codec.u32, value: codec.u64 },
  scratch: { key: codec.u32 },
  admission: { key: codec.u32, value: codec.u64 },
} as const;

/** The tables by their keys in NatMapName (creation, pinning and program loading walk them in this order). */
export const NAT_MAP_KEYS = Object.keys(NatMapName) as (keyof typeof NatMapName)[];


export class NatTables {
  private closed = false;
  /** Maps given to {@link open} with `own`: closed with this object. */
  private alsoClose: BpfMap<any, any>[] = [];
  /** Service key text → id (row of nat_slots); ids free to take, oldest freed last. */
  private readonly serviceIds = new Map<string, number>();
  private readonly freeServiceIds: number[] = [];
  /** Backend key (addr|port|local) → index; removed ones wait in `retired` until no flow uses them. */
  private readonly backendIndex = new Map<string, number>();
  private readonly retired = new Map<string, number>();
  private readonly freeIndices: number[] = [];
  /** What is in the kernel, so an apply writes only what changed. */
  private readonly rows = new Map<number, Uint32Array>();
  private readonly backendValues = new Map<number, Buffer>();

  private constructor(
    readonly maps: NatMaps,
    private readonly owned: boolean,
  ) {
    const takenIds = new Set<number>();
    for (const [k, { id }] of maps.services.entries()) {
      if (id >= MAX_SERVICES || takenIds.has(id)) continue;
      const key = natServiceKey(k);
      this.serviceIds.set(formatEndpoint({ address: key.addr, port: key.port }), id);
      takenIds.add(id);
    }
    for (let id = 0; id < MAX_SERVICES; id++) if (!takenIds.has(id)) this.freeServiceIds.push(id);
    const takenIndices = new Set<number>();
    if (!owned) {
      // Maps from before (pinned, or loaded with the program): adopt what they hold, so flows and
      // counters keep their backend. Fresh maps are all zero: nothing to read.
      for (let i = 0; i < MAX_BACKENDS; i++) {
        const raw = maps.backends.lookup(i);
        const b = raw && natBackend(raw);
        if (!raw || !b) continue;
        const key = `${b.addr}|${b.port}|${b.local}`;
        if (this.backendIndex.has(key)) continue;
        this.backendIndex.set(key, i);
        this.backendValues.set(i, BackendValue.encode(raw));
        takenIndices.add(i);
      }
    }
    for (let i = 0; i < MAX_BACKENDS; i++) if (!takenIndices.has(i)) this.freeIndices.push(i);
  }

  /**
   * Create the maps: nat_flows holds `maxConnections` connections plus `maxHalfOpen` still opening
   * (two entries each), and the half-open budget is `maxHalfOpen`. Closed by {@link close}.
   */
  static create(maxConnections: number, maxHalfOpen: number): NatTables {
    for (const [name, v] of [["maxConnections", maxConnections], ["maxHalfOpen", maxHalfOpen]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new LbError("LB_ERR_CONFIG", `${name} must be a positive integer, got ${v}`);
    }
    const specs = natMapSpecs(maxConnections, maxHalfOpen);
    const made: Partial<Record<keyof typeof NatMapName, BpfMap<any, any>>> = {};
    try {
      for (const name of NAT_MAP_KEYS) made[name] = BpfMap.create<any, any>(specs[name], codecs[name]);
    } catch (e) {
      for (const m of Object.values(made)) m?.close();
      throw e;
    }
    const tables = new NatTables(made as NatMaps, true);
    tables.setHalfOpenBudget(maxHalfOpen);
    return tables;
  }

  /** SYNs beyond this many connections still opening are dropped (counted: syn_dropped). */
  setHalfOpenBudget(n: number): void {
    this.checkOpen();
    if (!Number.isInteger(n) || n < 1) throw new LbError("LB_ERR_CONFIG", `maxHalfOpen must be a positive integer, got ${n}`);
    this.maps.admission.update(Admission.budget, BigInt(n));
  }

  /**
   * Work on maps made elsewhere (the program's loader, or pins from a previous run). Their layout
   * is checked against natMapSpecs; ids and indices they hold are kept. The maps stay the caller's:
   * {@link close} leaves them open, and the caller must not close them while this object is used.
   */
  static open(maps: Record<keyof typeof NatMapName, BpfMap<any, any>>, options: { own?: boolean } = {}): NatTables {
    const want = natMapSpecs(1, 1);
    const views: Partial<Record<keyof typeof NatMapName, BpfMap<any, any>>> = {};
    for (const name of NAT_MAP_KEYS) {
      const m = maps[name];
      checkMap(m, want[name], name !== "flows");
      // A second view on the same fd with this module's codecs (it never closes the fd).
      views[name] = new BpfMap<any, any>(m.fd, m.info, codecs[name]);
    }
    const tables = new NatTables(views as NatMaps, false);
    // Owned: close() closes the given maps too (pinned maps opened for this object alone).
    if (options.own) tables.alsoClose = Object.values(maps);
    return tables;
  }

  /** The index of a backend (by address, port and local address), or undefined when it has none. */
  indexOf(b: { addr: string; port: number; local: string }): number | undefined {
    const key = backendKey(b.addr, b.port, b.local);
    return key === undefined ? undefined : (this.backendIndex.get(key) ?? this.retired.get(key));
  }

  /**
   * Make the maps describe exactly `services`. Everything is checked before the first write. The
   * writes are ordered so that the program, reading at any moment, finds a usable state:
   * backends first, then per service its slots before the service value that points at them
   * (with no healthy backend, the value with slots = 0 first, the old slots left in place);
   * services no longer present are deleted last, and a removed backend's entry stays until no
   * slot or flow names it.
   */
  apply(services: readonly NatServiceSpec[]): AppliedService[] {
    this.checkOpen();
    const planned = services.map((s, i) => plan(s, `services[${i}]`));
    if (planned.length > MAX_SERVICES) throw new LbError("LB_ERR_CONFIG", `packet tables: ${planned.length} services, at most ${MAX_SERVICES}`);
    const seen = new Set<string>();
    const values = new Map<string, BackendStruct>();
    for (const p of planned) {
      if (seen.has(p.key)) throw new LbError("LB_ERR_CONFIG", `packet tables: service ${p.key} is listed twice`);
      seen.add(p.key);
      for (const b of p.backends) {
        const prev = values.get(b.key);
        if (prev && !BackendValue.encode(prev).equals(BackendValue.encode(b.value))) throw new LbError("LB_ERR_CONFIG", `packet tables: backend ${b.spec.id} from ${b.spec.local} has different devices in two services`);
        values.set(b.key, b.value);
      }
    }

    // Ids and indices: kept, else taken from the free lists (planned on copies, committed at the end).
    const freeIds = [...this.freeServiceIds];
    const ids = new Map(planned.map((p) => [p.key, this.serviceIds.get(p.key) ?? freeIds.shift()!]));
    const freeIdx = [...this.freeIndices];
    const retired = new Map(this.retired);
    const index = new Map<string, number>();
    const fresh: number[] = [];
    for (const key of values.keys()) {
      let i = this.backendIndex.get(key) ?? retired.get(key);
      retired.delete(key);
      if (i === undefined) {
        // Last resort: the oldest removed backend's index, though flows may still name it.
        i = freeIdx.shift() ?? takeOldest(retired);
        if (i === undefined) throw new LbError("LB_ERR_CONFIG", `packet tables: more than ${MAX_BACKENDS} backends`);
        fresh.push(i);
      }
      index.set(key, i);
    }

    const m = this.maps;
    // Counters of an index start at zero for its new backend.
    for (const i of fresh) for (const c of Object.values(NatBackendCounter)) m.counters.update(natBackendCounterIndex(i, c), 0n);
    for (const [key, value] of values) this.writeBackend(index.get(key)!, value);

    const applied: AppliedService[] = [];
    for (const p of planned) {
      const id = ids.get(p.key)!;
      const table = fillSlots(p.spec.scheduler, p.backends.map((b) => ({ index: index.get(b.key)!, id: b.spec.hashId ?? b.spec.id, weight: b.spec.weight, healthy: b.spec.healthy })));
      const value = serviceValueStruct(
        { id, slots: table.filled, scheduler: p.scheduler, toaKind: p.spec.toaKind, proxy: p.spec.proxy ? 1 : 0, portFirst: p.spec.portRange.first, portCount: p.spec.portRange.last - p.spec.portRange.first + 1, mtu: p.spec.mtu },
        m.services.lookup(p.keyStruct),
      );
      if (table.filled > 0) this.writeRow(id, table.slots);
      m.services.update(p.keyStruct, value);
      applied.push({ key: p.key, id, filled: table.filled, backends: p.backends.map((b) => ({ id: b.spec.id, index: index.get(b.key)! })) });
    }

    const keyId = (k: ServiceKeyStruct) => ServiceKey.encode(k).toString("latin1");
    const keep = new Set(planned.map((p) => keyId(p.keyStruct)));
    for (const k of [...m.services.keys()]) if (!keep.has(keyId(k))) m.services.delete(k);

    // Commit.
    for (const [key, id] of this.serviceIds) {
      if (ids.has(key)) continue;
      this.rows.delete(id);
      freeIds.push(id); // to the back: its row is taken again as late as possible
    }
    this.serviceIds.clear();
    for (const [k, v] of ids) this.serviceIds.set(k, v);
    this.freeServiceIds.splice(0, this.freeServiceIds.length, ...freeIds);
    for (const [key, i] of this.backendIndex) if (!index.has(key)) retired.set(key, i);
    this.backendIndex.clear();
    for (const [k, v] of index) this.backendIndex.set(k, v);
    this.retired.clear();
    for (const [k, v] of retired) this.retired.set(k, v);
    this.freeIndices.splice(0, this.freeIndices.length, ...freeIdx);
    return applied;
  }

  /**
   * Expire connections in nat_flows (see flows.ts for the rules) and count those left per backend.
   * `nowNs` is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns: process.hrtime.bigint() on Linux.
   * Removed backends without flows left give their index back here.
   */
  sweep(timeouts: SweepTimeouts | ((service: number) => SweepTimeouts), nowNs: bigint = process.hrtime.bigint()): SweepResult {
    this.checkOpen();
    // The program's two counters first, then the walk: a connection opened meanwhile is then in
    // neither, one completed meanwhile errs towards refusing (see nat-layout.ts Admission).
    const opened = this.maps.admission.lookup(Admission.opened) ?? 0n;
    const completed = this.maps.admission.lookup(Admission.completed) ?? 0n;
    const result = sweepFlows(this.maps.flows, timeouts, nowNs);
    // Modular, like the program's arithmetic: tables written by hand (tests) can make it "negative".
    this.maps.admission.update(Admission.settled, BigInt.asUintN(64, opened - completed - BigInt(result.halfOpen)));
    for (const [key, i] of [...this.retired]) {
      if (result.active.has(i)) continue;
      this.retired.delete(key);
      this.writeBackend(i, BackendValue.decode(Buffer.alloc(BackendValue.size)));
      this.backendValues.delete(i);
      this.freeIndices.push(i);
    }
    return result;
  }

  /** nat_counters summed over CPUs: the global ones by name, and those of every backend index in use. */
  counters(): NatCounters {
    this.checkOpen();
    const read = (i: number): number => Number((this.maps.counters.lookupPerCpu(i) ?? []).reduce((a, b) => a + b, 0n));
    const global = Object.fromEntries(Object.entries(NatCounter).map(([name, i]) => [name, read(i)])) as Record<keyof typeof NatCounter, number>;
    const backends = new Map<number, NatBackendCounters>();
    for (const i of [...this.backendIndex.values(), ...this.retired.values()].sort((a, b) => a - b)) {
      backends.set(i, {
        connections: read(natBackendCounterIndex(i, NatBackendCounter.connections)),
        bytesToBackend: read(natBackendCounterIndex(i, NatBackendCounter.bytes_to_backend)),
        bytesToClient: read(natBackendCounterIndex(i, NatBackendCounter.bytes_to_client)),
        toaWritten: read(natBackendCounterIndex(i, NatBackendCounter.toa_written)),
      });
    }
    return { global, backends };
  }

  /** Close the maps this object created (maps given to {@link open} stay open). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) for (const m of Object.values(this.maps)) m.close();
    for (const m of this.alsoClose) m.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new LbError("LB_ERR_CLOSED", "packet tables are closed");
  }

  private writeBackend(i: number, value: BackendStruct): void {
    const bytes = BackendValue.encode(value);
    if (this.backendValues.get(i)?.equals(bytes)) return;
    this.maps.backends.update(i, value);
    this.backendValues.set(i, bytes);
  }

  /** Write the slots of row `id` that differ from what the kernel holds. */
  private writeRow(id: number, slots: Uint32Array): void {
    let row = this.rows.get(id);
    if (!row) {
      row = new Uint32Array(SLOTS).fill(0xffffffff); // unknown: write every slot
      this.rows.set(id, row);
    }
    for (let s = 0; s < SLOTS; s++) {
      if (row[s] === slots[s]) continue;
      this.maps.slots.update(id * SLOTS + s, slots[s]);
      row[s] = slots[s];
    }
  }
}

function takeOldest(retired: Map<string, number>): number | undefined {
  for (const [k, i] of retired) {
    retired.delete(k);
    return i;
  }
  return undefined;
}

