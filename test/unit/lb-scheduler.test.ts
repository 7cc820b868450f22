/** Schedulers with fake backends: expected sequences and ratios (undici balanced-pool style). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createScheduler, type SchedulerBackend } from "../../src/lb/scheduler/index.js";
import { hash32 } from "../../src/lb/scheduler/source-hash.js";
import type { SchedulerName } from "../../src/lb/config.js";

interface Fake extends SchedulerBackend {
  id: string;
  weight: number;
  active: number;
  healthy: boolean;
}
const fakes = (weights: number[]): Fake[] => weights.map((weight, i) => ({ id: String.fromCharCode(97 + i), weight, active: 0, healthy: true }));
const seq = (name: SchedulerName, bs: Fake[], n: number, client = "198.51.100.7"): string => {
  const s = createScheduler(name, bs);
  return Array.from({ length: n }, () => s.pick(client)?.id ?? "-").join("");
};

const sequences: { name: string; scheduler: SchedulerName; weights: number[]; down?: number[]; n: number; want: string }[] = [
  { name: "round robin", scheduler: "round-robin", weights: [1, 1, 1], n: 7, want: "abcabca" },
  { name: "round robin ignores weights", scheduler: "round-robin", weights: [5, 1], n: 4, want: "abab" },
  { name: "round robin skips a down backend", scheduler: "round-robin", weights: [1, 1, 1], down: [1], n: 4, want: "acac" },
  { name: "smooth wrr 5,1,1 (nginx's example)", scheduler: "weighted-round-robin", weights: [5, 1, 1], n: 7, want: "aabacaa" },
  { name: "smooth wrr 2,1", scheduler: "weighted-round-robin", weights: [2, 1], n: 6, want: "abaaba" },
  { name: "smooth wrr equal weights", scheduler: "weighted-round-robin", weights: [1, 1, 1], n: 6, want: "abcabc" },
  { name: "smooth wrr with a down backend", scheduler: "weighted-round-robin", weights: [5, 1, 1], down: [0], n: 4, want: "bcbc" },
  { name: "everything down", scheduler: "weighted-round-robin", weights: [1, 1], down: [0, 1], n: 2, want: "--" },
  { name: "least connections, all idle, rotates", scheduler: "least-connections", weights: [1, 1, 1], n: 6, want: "abcabc" },
  { name: "source hash is sticky", scheduler: "source-hash", weights: [1, 1, 1], n: 5, want: "" },
];

for (const c of sequences) {
  test(`scheduler sequence: ${c.name}`, () => {
    const bs = fakes(c.weights);
    for (const d of c.down ?? []) bs[d].healthy = false;
    const got = seq(c.scheduler, bs, c.n);
    if (c.want === "") assert.equal(new Set(got).size, 1, got);
    else assert.equal(got, c.want);
  });
}

test("weighted round robin ratios follow weights", () => {
  const s2 = createScheduler("weighted-round-robin", fakes([1, 2, 7]));
  const c2: Record<string, number> = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 1000; i++) c2[s2.pick("x")!.id]++;
  assert.deepEqual(c2, { a: 100, b: 200, c: 700 });
});

test("least connections follows active/weight", () => {
  const bs = fakes([1, 1, 2]);
  const s = createScheduler("least-connections", bs);
  // Simulate long-lived connections: each pick keeps its connection open.
  for (let i = 0; i < 400; i++) s.pick("x")!.active++;
  assert.deepEqual(bs.map((b) => b.active), [100, 100, 200]);
  bs[0].active = 0; // a's connections closed: it takes the next ones
  assert.equal(s.pick("x")!.id, "a");
});

test("source hash spreads clients by weight and is stable", () => {
  const bs = fakes([1, 1, 2]);
  const s = createScheduler("source-hash", bs);
  const count: Record<string, number> = { a: 0, b: 0, c: 0 };
  const first = new Map<string, string>();
  for (let i = 0; i < 4000; i++) {
    const client = `198.51.${(i >> 8) & 255}.${i & 255}`;
    const b = s.pick(client)!.id;
    count[b]++;
    first.set(client, b);
  }
  // Expected 1000/1000/2000; consistent hashing with 160 points per weight unit stays within ±15%.
  assert.ok(Math.abs(count.a - 1000) < 150 && Math.abs(count.b - 1000) < 150 && Math.abs(count.c - 2000) < 300, JSON.stringify(count));
  // b goes down: only b's clients move; the others keep their backend.
  bs[1].healthy = false;
  let moved = 0;
  for (const [client, was] of first) {
    const now = s.pick(client)!.id;
    if (was === "b") assert.notEqual(now, "b");
    else if (now !== was) moved++;
  }
  assert.equal(moved, 0);
  // Removing backend c from the list (a reload) moves c's clients only.
  const s2 = createScheduler("source-hash", [bs[0], { ...bs[1], healthy: true }]);
  for (const [client, was] of first) if (was !== "c") assert.equal(s2.pick(client)!.id, was);
});

test("skip set passes over backends already tried", () => {
  for (const name of ["round-robin", "weighted-round-robin", "least-connections", "source-hash"] as SchedulerName[]) {
    const bs = fakes([1, 1]);
    const s = createScheduler(name, bs);
    const first = s.pick("198.51.100.9")!;
    const second = s.pick("198.51.100.9", new Set([first]))!;
    assert.notEqual(second, first, name);
    assert.equal(s.pick("198.51.100.9", new Set(bs)), undefined, name);
  }
});

test("hash32 is deterministic and spreads", () => {
  assert.equal(hash32("198.51.100.1"), hash32("198.51.100.1"));
  assert.notEqual(hash32("198.51.100.1"), hash32("198.51.100.2"));
});
