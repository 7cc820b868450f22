/**
 * The structs shared by the programs and user space, declared with struct(): their offsets and
 * sizes are the ones the programs were written against (and the golden bytes encode).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Peer, SenderKey, SenderValue } from "../../src/programs/layout.js";
import { BackendValue, FlowKey, FlowValue, ServiceKey, ServiceValue } from "../../src/programs/nat-layout.js";

const cases: { name: string; have: object; want: Record<string, number> }[] = [
  { name: "toa_peer", have: Peer, want: { size: 40, family: 0, kind: 1, foundIn: 2, viaFamily: 3, port: 4, viaPort: 6, addr: 8, viaAddr: 24 } },
  { name: "sender key", have: SenderKey, want: { size: 48, family: 0, localPort: 4, remotePort: 6, local: 16, remote: 32 } },
  { name: "sender value", have: SenderValue, want: { size: 24, kind: 0, family: 1, flags: 2, port: 4, addr: 8 } },
  { name: "nat_flow_key", have: FlowKey, want: { size: 40, saddr: 0, daddr: 16, sport: 32, dport: 34, family: 36 } },
  {
    name: "nat_flow",
    have: FlowValue,
    want: { size: 72, saddr: 0, daddr: 16, sport: 32, dport: 34, ifindex: 36, backend: 40, dir: 44, flags: 45, service: 46, toaKind: 47, lastNs: 48, createdNs: 56, seqBase: 64, hdrLen: 68 },
  },
  { name: "nat_service_key", have: ServiceKey, want: { size: 20, addr: 0, port: 16, family: 18 } },
  {
    name: "nat_service",
    have: ServiceValue,
    want: { size: 32, id: 0, slots: 4, scheduler: 8, toaKind: 9, proxy: 10, portFirst: 12, portCount: 16, mtu: 20, rrCursor: 24, portCursor: 28 },
  },
  { name: "nat_backend", have: BackendValue, want: { size: 48, addr: 0, local: 16, port: 32, family: 34, ifindex: 36 } },
];

test("shared structs keep their offsets and sizes", () => {
  for (const c of cases) assert.deepEqual(Object.fromEntries(Object.keys(c.want).map((k) => [k, (c.have as Record<string, unknown>)[k]])), c.want, c.name);
});

test("toa_peer BTF: the members bpftool prints", () => {
  assert.ok(Peer.btf.kind === "struct");
  assert.deepEqual(
    Peer.btf.members.map((m) => `${m.name}@${m.offset}`),
    ["family@0", "kind@1", "found_in@2", "via_family@3", "port@4", "via_port@6", "addr@8", "via_addr@24"],
  );
});
