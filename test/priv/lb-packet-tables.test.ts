/**
 * The packet data path's tables against real maps: what apply writes, byte by byte; health and
 * config changes; flow expiry over synthetic flow pairs written as the program writes them; the
 * per-CPU counters; and the route lookup inside a network namespace.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { requireRoot } from "../harness/privileged.js";
import { sh } from "../harness/exec.js";
import { link, Netns } from "../harness/netns.js";
import { BpfMap, possibleCpus } from "../../src/bpf/index.js";
import { NatTables, type NatServiceSpec } from "../../src/lb/packet/tables.js";
import { encodeFlowKey, encodeFlowValue, type Family } from "../../src/lb/packet/structs.js";
import { BackendValue, FlowDir, FlowFlag, ServiceKey, ServiceValue, natBackendCounterIndex, natMapSpecs, NatCounter, NatBackendCounter, SLOTS } from "../../src/programs/nat-layout.js";

const hex = (s: string): string => s.replace(/\s+/g, "");
const zeros = (n: number): string => "00".repeat(n);

const web = (healthy: boolean[] = [true, true], extra: NatServiceSpec["backends"] = []): NatServiceSpec => ({
  key: { addr: "198.51.100.10", port: 80 },
  family: 4,
  scheduler: "weighted-round-robin",
  toaKind: 254,
  portRange: { first: 20000, last: 59999 },
  mtu: 1500,
  backends: [
    { id: "203.0.113.2:80", addr: "203.0.113.2", port: 80, weight: 3, healthy: healthy[0], local: "198.51.100.1", ifindex: 7 },
    { id: "203.0.113.3:8080", addr: "203.0.113.3", port: 8080, weight: 1, healthy: healthy[1], local: "198.51.100.1", ifindex: 7 },
    ...extra,
  ],
});
const api6: NatServiceSpec = {
  key: { addr: "2001:DB8::10", port: 443 },
  family: 6,
  scheduler: "source-hash",
  toaKind: 0,
  portRange: { first: 1024, last: 1024 },
  mtu: 9000,
  backends: [{ id: "[2001:db8::2]:443", addr: "2001:db8::2", port: 443, weight: 1, healthy: true, local: "2001:db8::1", ifindex: 9 }],
};

/** Slot counts of a service row, by backend index. */
function row(t: NatTables, id: number, filled: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let s = 0; s < filled; s++) {
    const b = t.maps.slots.lookup(id * SLOTS + s)!;
    m.set(b, (m.get(b) ?? 0) + 1);
  }
  return m;
}

test("apply writes services, slots and backends at the layout's offsets", (t) => {
  if (!requireRoot(t)) return;
  const nat = NatTables.create(1024, 16);
  t.after(() => nat.close());
  const applied = nat.apply([web(), api6]);
  assert.deepEqual(applied, [
    { key: "198.51.100.10:80", id: 0, filled: 256, backends: [{ id: "203.0.113.2:80", index: 0 }, { id: "203.0.113.3:8080", index: 1 }] },
    { key: "[2001:db8::10]:443", id: 1, filled: 256, backends: [{ id: "[2001:db8::2]:443", index: 2 }] },
  ]);

  // nat_services: key 0 addr[16] 16 be16 port 18 family 19 pad; value id, slots, scheduler, toa kind, pad, ports, mtu, cursor.
  const services = new Map([...nat.maps.services.entries()].map(([k, v]) => [ServiceKey.encode(k).toString("hex"), ServiceValue.encode(v).toString("hex")]));
  assert.deepEqual(services, new Map([
    [hex(`c633640a ${zeros(12)} 0050 04 00`), hex(`00000000 00010000 00 fe 0000 204e0000 409c0000 dc050000 ${zeros(8)}`)],
    [hex(`20010db8 ${zeros(10)} 0010 01bb 06 00`), hex(`01000000 00010000 01 00 0000 00040000 01000000 28230000 ${zeros(8)}`)],
  ]));
  // nat_backends: 0 addr[16] 16 local[16] 32 be16 port 34 family 35 pad 36 u32 ifindex 40 pad[8].
  assert.equal(BackendValue.encode(nat.maps.backends.lookup(0)!).toString("hex"), hex(`cb007102 ${zeros(12)} c6336401 ${zeros(12)} 0050 04 00 07000000 ${zeros(8)}`));
  assert.equal(BackendValue.encode(nat.maps.backends.lookup(1)!).toString("hex"), hex(`cb007103 ${zeros(12)} c6336401 ${zeros(12)} 1f90 04 00 07000000 ${zeros(8)}`));
  assert.equal(BackendValue.encode(nat.maps.backends.lookup(2)!).toString("hex"), hex(`20010db8 ${zeros(10)} 0002 20010db8 ${zeros(10)} 0001 01bb 06 00 09000000 ${zeros(8)}`));
  assert.equal(BackendValue.encode(nat.maps.backends.lookup(3)!).toString("hex"), zeros(48), "unused entries stay zero");
  // nat_slots: row id × 256, weights 3:1 interleaved; the v6 service's row all on its backend.
  assert.deepEqual(row(nat, 0, SLOTS), new Map([[0, 192], [1, 64]]));
  assert.deepEqual(Array.from({ length: 8 }, (_, s) => nat.maps.slots.lookup(s)), [0, 0, 1, 0, 0, 0, 1, 0]);
  assert.deepEqual(row(nat, 1, SLOTS), new Map([[2, 256]]));
});

test("health and config changes: slots follow, ids and indices stay, removed indices wait for a sweep", (t) => {
  if (!requireRoot(t)) return;
  const nat = NatTables.create(1024, 16);
  t.after(() => nat.close());
  nat.apply([web(), api6]);
  // The program keeps its round robin cursor in the service value's last 8 bytes: apply keeps it.
  const key = [...nat.maps.services.keys()].find((k) => k.family === 4)!;
  const withCursor = nat.maps.services.lookup(key)!;
  withCursor.rrCursor = 12345; // at 24
  nat.maps.services.update(key, withCursor);

  // First backend down: every slot on the second; the first keeps its index and entry.
  let applied = nat.apply([web([false, true]), api6]);
  assert.deepEqual(applied[0].backends.map((b) => b.index), [0, 1]);
  assert.equal(applied[0].filled, 256);
  assert.deepEqual(row(nat, 0, SLOTS), new Map([[1, 256]]));
  assert.equal(nat.maps.services.lookup(key)!.rrCursor, 12345, "round robin cursor kept");

  // Both down: slots = 0 in the service; the row is left as it was (it still names valid backends).
  applied = nat.apply([web([false, false]), api6]);
  assert.equal(applied[0].filled, 0);
  assert.equal(nat.maps.services.lookup(key)!.slots, 0);
  assert.deepEqual(row(nat, 0, SLOTS), new Map([[1, 256]]));

  // Back up, plus a new backend: it takes the next free index; the others keep theirs.
  const third = { id: "203.0.113.4:80", addr: "203.0.113.4", port: 80, weight: 4, healthy: true, local: "198.51.100.1", ifindex: 7 };
  applied = nat.apply([web([true, true], [third]), api6]);
  assert.deepEqual(applied[0].backends.map((b) => b.index), [0, 1, 3]);
  assert.deepEqual(row(nat, 0, 256), new Map([[0, 96], [1, 32], [3, 128]]));

  // The v6 service goes: its key is deleted, its backend index retired but not reused yet.
  applied = nat.apply([web([true, true], [third])]);
  assert.equal([...nat.maps.services.keys()].length, 1);
  assert.equal(nat.indexOf({ addr: "2001:db8::2", port: 443, local: "2001:db8::1" }), 2, "retired, still known");
  const fourth = { ...third, id: "203.0.113.5:80", addr: "203.0.113.5" };
  applied = nat.apply([web([true, true], [third, fourth])]);
  assert.equal(applied[0].backends[3].index, 4, "not the retired index 2");
  // A sweep with no flow on index 2 frees it (and zeroes its entry); the next new backend gets it later.
  nat.sweep({ connectMs: 1000, synMs: 1000, idleMs: 1000, closedMs: 1000 });
  assert.equal(BackendValue.encode(nat.maps.backends.lookup(2)!).toString("hex"), zeros(48));
  assert.equal(nat.indexOf({ addr: "2001:db8::2", port: 443, local: "2001:db8::1" }), undefined);

  // A service that comes back gets a free id (freed ids are taken last: 2, not its old 1) and its row written whole.
  applied = nat.apply([web([true, true], [third, fourth]), api6]);
  assert.equal(applied[1].id, 2);
  assert.deepEqual(row(nat, applied[1].id, SLOTS), new Map([[applied[1].backends[0].index, 256]]));
});

test("bad services are refused before anything is written", (t) => {
  if (!requireRoot(t)) return;
  const nat = NatTables.create(16, 16);
  t.after(() => nat.close());
  nat.apply([web()]);
  const before = [...nat.maps.services.entries()].map(([k, v]) => ServiceKey.encode(k).toString("hex") + ServiceValue.encode(v).toString("hex"));
  const cases: [NatServiceSpec[], RegExp][] = [
    [[web(), { ...api6, scheduler: "least-connections" }], /least-connections is not supported on the packet data path/],
    [[web(), { ...api6, backends: [{ ...api6.backends[0], addr: "203.0.113.9" }] }], /services\[1\].*backends\[0\]\.addr.*203\.0\.113\.9 is not an IPv6 address/],
    [[web(), web()], /service 198\.51\.100\.10:80 is listed twice/],
    [[{ ...web(), portRange: { first: 5000, last: 4000 } }], /services\[0\].*portRange must be/],
    [[{ ...web(), toaKind: 1 }], /toaKind must be 0 \(none\) or a TCP option kind 2\.\.255/],
  ];
  for (const [input, want] of cases) assert.throws(() => nat.apply(input), want);
  assert.deepEqual([...nat.maps.services.entries()].map(([k, v]) => ServiceKey.encode(k).toString("hex") + ServiceValue.encode(v).toString("hex")), before);
});

test("open() takes maps made elsewhere and keeps the ids and indices they hold", (t) => {
  if (!requireRoot(t)) return;
  const specs = natMapSpecs(64, 16);
  const maps = { flows: BpfMap.create(specs.flows), services: BpfMap.create(specs.services), slots: BpfMap.create(specs.slots), backends: BpfMap.create(specs.backends), counters: BpfMap.create(specs.counters), scratch: BpfMap.create(specs.scratch), admission: BpfMap.create(specs.admission) };
  t.after(() => Object.values(maps).forEach((m) => m.close()));
  const third = { id: "203.0.113.4:80", addr: "203.0.113.4", port: 80, weight: 1, healthy: true, local: "198.51.100.1", ifindex: 7 };
  const first = NatTables.open(maps);
  first.apply([api6, web()]);
  first.apply([web([true, true], [third]), api6]);
  const want = first.apply([web([true, true], [third]), api6]);
  first.close();
  assert.ok(maps.services.fd >= 0, "close() leaves borrowed maps open");
  const again = NatTables.open(maps);
  t.after(() => again.close());
  assert.deepEqual(again.apply([web([true, true], [third]), api6]), want);
  assert.throws(() => NatTables.open({ ...maps, slots: maps.backends }), /map nat_slots: key\/value sizes 4\/48, expected 4\/4/);
});

/** One connection as the program stores it: the client's entry and the backend's. */
interface Conn {
  client: string;
  cport: number;
  backend: string;
  lport: number;
  index: number;
  family?: Family;
  /** Per direction: last_ns and flags. */
  toBackend: { last: bigint; flags?: number };
  toClient: { last: bigint; flags?: number };
  created: bigint;
}
const VIP = "198.51.100.10";
const LOCAL = "198.51.100.1";
function keysOf(c: Conn): { fwd: Buffer; rev: Buffer } {
  const family = c.family ?? 4;
  return {
    fwd: encodeFlowKey({ saddr: c.client, daddr: VIP, sport: c.cport, dport: 80, family }),
    rev: encodeFlowKey({ saddr: c.backend, daddr: LOCAL, sport: 80, dport: c.lport, family }),
  };
}
function writeConn(m: BpfMap<Buffer, Buffer>, c: Conn, sides: { fwd?: boolean; rev?: boolean } = { fwd: true, rev: true }): void {
  const family = c.family ?? 4;
  const { fwd, rev } = keysOf(c);
  if (sides.rev) {
    m.update(rev, encodeFlowValue({ saddr: VIP, daddr: c.client, sport: 80, dport: c.cport, ifindex: 3, backend: c.index, dir: FlowDir.TO_CLIENT, flags: c.toClient.flags ?? 0, lastNs: c.toClient.last, createdNs: c.created }, family));
  }
  if (sides.fwd) {
    m.update(fwd, encodeFlowValue({ saddr: LOCAL, daddr: c.backend, sport: c.lport, dport: 80, ifindex: 7, backend: c.index, dir: FlowDir.TO_BACKEND, flags: c.toBackend.flags ?? FlowFlag.TOA_PENDING, lastNs: c.toBackend.last, createdNs: c.created }, family));
  }
}

test("sweep deletes exactly the connections that are over, both entries, and counts the rest", (t) => {
  if (!requireRoot(t)) return;
  const nat = NatTables.create(1024, 16);
  t.after(() => nat.close());
  const now = 5_000_000_000_000n;
  const ms = (n: number) => BigInt(n) * 1_000_000n;
  const timeouts = { connectMs: 3000, synMs: 5000, idleMs: 60_000, closedMs: 2000 };
  let port = 40000;
  const conn = (index: number, toBackend: Conn["toBackend"], toClient: Conn["toClient"], created = now - ms(10_000)): Conn => ({
    client: `192.0.2.${(port % 200) + 1}`,
    cport: port,
    backend: `203.0.113.${index + 2}`,
    lport: port++,
    index,
    toBackend,
    toClient,
    created,
  });
  const recent = now - ms(100);
  const cases: { name: string; c: Conn; sides?: { fwd?: boolean; rev?: boolean }; gone: boolean }[] = [
    { name: "busy", c: conn(0, { last: recent }, { last: recent }), gone: false },
    { name: "RST from the client", c: conn(0, { last: recent, flags: FlowFlag.RST }, { last: recent }), gone: true },
    { name: "RST from the backend", c: conn(1, { last: recent }, { last: recent, flags: FlowFlag.RST }), gone: true },
    { name: "FIN both ways, quiet past closedMs", c: conn(0, { last: now - ms(2500), flags: FlowFlag.FIN }, { last: now - ms(2100), flags: FlowFlag.FIN }), gone: true },
    { name: "FIN both ways, last packet recent", c: conn(0, { last: now - ms(500), flags: FlowFlag.FIN }, { last: now - ms(1900), flags: FlowFlag.FIN }), gone: false },
    { name: "FIN one way only, quiet past closedMs", c: conn(1, { last: now - ms(5000), flags: FlowFlag.FIN }, { last: now - ms(5000) }), gone: false },
    { name: "idle past idleMs", c: conn(1, { last: now - ms(61_000) }, { last: now - ms(60_500) }, now - ms(100_000)), gone: true },
    { name: "idle one way only", c: conn(1, { last: now - ms(61_000) }, { last: now - ms(1000) }, now - ms(100_000)), gone: false },
    { name: "backend never answered (connect failed)", c: conn(1, { last: now - ms(3500) }, { last: 0n }, now - ms(3500)), gone: true },
    { name: "backend not answered yet", c: conn(1, { last: now - ms(1000) }, { last: 0n }, now - ms(1000)), gone: false },
    { name: "client never completed the handshake (SYN flood)", c: conn(1, { last: now - ms(5500), flags: FlowFlag.HALF_OPEN }, { last: now - ms(5500) }, now - ms(5500)), gone: true },
    { name: "handshake not completed yet", c: conn(0, { last: now - ms(1000), flags: FlowFlag.HALF_OPEN }, { last: now - ms(1000) }, now - ms(1000)), gone: false },
    { name: "lone backend side, fresh (the program inserts it first)", c: conn(0, { last: 0n }, { last: 0n }, now - ms(1)), sides: { rev: true }, gone: false },
    { name: "lone client side, old (its pair was evicted)", c: conn(0, { last: recent }, { last: recent }, now - ms(10_000)), sides: { fwd: true }, gone: true },
  ];
  for (const k of cases) writeConn(nat.maps.flows, k.c, k.sides);

  const r = nat.sweep(timeouts, now);
  for (const k of cases) {
    const { fwd, rev } = keysOf(k.c);
    const sides = k.sides ?? { fwd: true, rev: true };
    if (sides.fwd) assert.equal(nat.maps.flows.lookup(fwd) === undefined, k.gone, `${k.name}: client side`);
    if (sides.rev) assert.equal(nat.maps.flows.lookup(rev) === undefined, k.gone, `${k.name}: backend side`);
  }
  assert.equal(r.entries, 26);
  assert.equal(r.removed, 7);
  assert.deepEqual(r.removedBy, { rst: 2, closed: 1, idle: 1, connect_failed: 1, syn_timeout: 1, orphan: 1 });
  assert.deepEqual(r.connectFailures, new Map([[1, 1]]));
  // The recent both-ways FIN is kept, but as closing, not active.
  assert.deepEqual(r.active, new Map([[0, 3], [1, 3]]));
  assert.equal(r.closing, 1);
  assert.equal(r.halfOpen, 1, "the handshake still in progress holds the budget");
  assert.equal([...nat.maps.flows.keys()].length, 13);

  // A second sweep later: what was kept ages out the same way.
  const later = nat.sweep(timeouts, now + ms(120_000));
  assert.equal(later.removed, 7);
  assert.equal([...nat.maps.flows.keys()].length, 0);
});

test("sweep over 10k flow entries (timing: get-next-key + lookup per entry, no batch lookup)", (t) => {
  if (!requireRoot(t)) return;
  const nat = NatTables.create(10_000, 16);
  t.after(() => nat.close());
  // A fixed clock handed to the sweep: the machine's monotonic clock can be younger than the
  // entries' ages (a VM a minute after its boot), and the timestamps are unsigned.
  const now = 5_000_000_000_000n;
  const t0 = performance.now();
  for (let i = 0; i < 5000; i++) {
    const old = i % 2 === 0;
    const last = old ? now - 120_000_000_000n : now - 1_000_000n;
    writeConn(nat.maps.flows, {
      client: `192.0.2.${(i % 250) + 1}`,
      cport: 10000 + Math.floor(i / 250),
      backend: `203.0.113.${(i % 4) + 2}`,
      lport: 20000 + i,
      index: i % 4,
      toBackend: { last },
      toClient: { last },
      created: now - 200_000_000_000n,
    });
  }
  const filled = performance.now() - t0;
  const entries = [...nat.maps.flows.keys()].length;
  assert.equal(entries, 10_000, "no LRU eviction below the map's size");
  const t1 = performance.now();
  const r = nat.sweep({ connectMs: 3000, synMs: 5000, idleMs: 60_000, closedMs: 2000 }, now);
  const swept = performance.now() - t1;
  assert.equal(r.entries, 10_000);
  assert.equal(r.removed, 2500);
  assert.deepEqual([...r.active.values()].reduce((a, b) => a + b, 0), 2500);
  const t2 = performance.now();
  const r2 = nat.sweep({ connectMs: 3000, synMs: 5000, idleMs: 60_000, closedMs: 2000 }, now);
  const keptOnly = performance.now() - t2;
  assert.equal(r2.removed, 0);
  const line = `sweep: ${entries} entries (5000 connections, half expired) in ${swept.toFixed(1)} ms (${((swept * 1000) / entries).toFixed(1)} µs/entry incl. 2500×(2 lookups + 2 deletes)); 5000 entries, none expired: ${keptOnly.toFixed(1)} ms; writing 10k entries from JS: ${filled.toFixed(1)} ms`;
  t.diagnostic(line);
  console.log(`# ${line}`);
});

test("counters(): per-CPU values summed, global by name and per backend index", (t) => {
  if (!requireRoot(t)) return;
  const nat = NatTables.create(16, 16);
  t.after(() => nat.close());
  nat.apply([web()]);
  const cpus = BigInt(possibleCpus());
  // update() writes the value into every CPU's slot: the sum is value × CPUs.
  nat.maps.counters.update(NatCounter.flows_created, 5n);
  nat.maps.counters.update(NatCounter.redirect_failed, 2n);
  nat.maps.counters.update(natBackendCounterIndex(1, NatBackendCounter.connections), 3n);
  nat.maps.counters.update(natBackendCounterIndex(1, NatBackendCounter.bytes_to_backend), 1000n);
  nat.maps.counters.update(natBackendCounterIndex(1, NatBackendCounter.bytes_to_client), 7000n);
  nat.maps.counters.update(natBackendCounterIndex(1, NatBackendCounter.toa_written), 3n);
  const c = nat.counters();
  const n = (v: bigint) => Number(v * cpus);
  assert.deepEqual(c.global, { flows_created: n(5n), no_backend: 0, ports_exhausted: 0, toa_skipped_no_room: 0, toa_skipped_mtu: 0, toa_failed: 0, redirect_failed: n(2n), flows_replaced: 0, proxy_written: 0, proxy_skipped: 0, client_toa_removed: 0, syn_dropped: 0, table_full: 0, syn_data_dropped: 0, options_unreadable: 0 });
  assert.deepEqual(c.backends, new Map([
    [0, { connections: 0, bytesToBackend: 0, bytesToClient: 0, toaWritten: 0 }],
    [1, { connections: n(3n), bytesToBackend: n(1000n), bytesToClient: n(7000n), toaWritten: n(3n) }],
  ]));
});

test("routeTo inside a network namespace: device, index, source, gateway; no route names the address", async (t) => {
  if (!requireRoot(t)) return;
  const a = await Netns.create(t, "toa-rt");
  const b = await Netns.create(t, "toa-rt");
  const { aIf } = await link(a, b, { a4: "198.51.100.1/24", b4: "198.51.100.2/24" });
  await a.run("ip", ["route", "add", "203.0.113.0/24", "via", "198.51.100.2"]);
  const ifindex = (JSON.parse(await a.run("ip", ["-j", "link", "show", "dev", aIf])) as { ifindex: number }[])[0].ifindex;
  const route = fileURLToPath(new URL("../../src/lb/packet/route.js", import.meta.url));
  const script = `const { routeTo } = await import(${JSON.stringify(route)});
try { console.log(JSON.stringify(await routeTo(process.argv[1]))); } catch (e) { console.log(JSON.stringify({ error: e.message, code: e.code, address: e.address })); }`;
  // nsenter switches only the network namespace: /sys still shows the host's devices there, so the
  // ifindex must come from netlink (this is the case a /sys/class/net read would get wrong).
  const inNs = async (how: "ip netns exec" | "nsenter", addr: string) => {
    const cmd = how === "nsenter" ? ["nsenter", `--net=/run/netns/${a.name}`] : ["ip", "netns", "exec", a.name];
    return JSON.parse(await sh(cmd[0], [...cmd.slice(1), process.execPath, "--input-type=module", "-e", script, addr])) as Record<string, unknown>;
  };
  for (const how of ["ip netns exec", "nsenter"] as const) {
    assert.deepEqual(await inNs(how, "203.0.113.7"), { ifindex, dev: aIf, src: "198.51.100.1", gateway: "198.51.100.2", local: false }, how);
    assert.deepEqual(await inNs(how, "198.51.100.2"), { ifindex, dev: aIf, src: "198.51.100.1", local: false }, how);
    assert.deepEqual(await inNs(how, "192.0.2.9"), { error: "no route to 192.0.2.9: Network is unreachable", code: "LB_ERR_NO_ROUTE", address: "192.0.2.9" }, how);
  }
  await assert.rejects(sh("nsenter", [`--net=/run/netns/${a.name}`, "cat", `/sys/class/net/${aIf}/ifindex`]), /No such file or directory/, "sysfs under nsenter is the host's");
  await a.run("ip", ["route", "add", "blackhole", "192.0.2.0/24"]);
  assert.match(String((await inNs("ip netns exec", "192.0.2.9")).error), /^no route to 192\.0\.2\.9: /);
  assert.deepEqual(await inNs("ip netns exec", "not-an-address"), { error: 'route: expected an IPv4 or IPv6 address, got "not-an-address"', code: "LB_ERR_CONFIG" });
});
