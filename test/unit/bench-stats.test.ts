/**
 * The benches' statistics (bench/stats.ts): the median and its distribution-free interval, checked
 * against the sign-test tables (n = 10: 2nd to 9th figure, 97.9%; n = 30: 10th to 21st, 95.7%) and,
 * by simulation, against its promised coverage.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { median, medianInterval, verdictAtLeast } from "../../bench/stats.js";

const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

test("median: odd and even counts, order does not matter, none is NaN", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

test("medianInterval: the sign-test order statistics for 10 and 30 rounds", () => {
  const ten = medianInterval(oneTo(10).reverse());
  assert.deepEqual({ low: ten?.low, high: ten?.high }, { low: 2, high: 9 });
  assert.equal(ten?.confidence.toFixed(4), "0.9785"); // 1 - 2·(1 + 10)/1024
  const thirty = medianInterval(oneTo(30));
  assert.deepEqual({ low: thirty?.low, high: thirty?.high }, { low: 10, high: 21 });
  assert.equal(thirty?.confidence.toFixed(4), "0.9572");
});

test("medianInterval: fewer than 6 figures give no 95% interval", () => {
  assert.equal(medianInterval(oneTo(5)), undefined);
  assert.deepEqual(medianInterval(oneTo(6)), { low: 1, high: 6, confidence: 1 - 2 / 64 });
});

test("medianInterval: always holds the sample median, low ≤ high", () => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 6, maxLength: 60 }), (xs) => {
      const ci = medianInterval(xs);
      assert.ok(ci);
      const m = median(xs);
      assert.ok(ci.low <= m && m <= ci.high, `${ci.low} ≤ ${m} ≤ ${ci.high}`);
      assert.ok(ci.confidence >= 0.95);
    }),
  );
});

test("medianInterval: covers the true median at least as often as it says (skewed figures, simulated)", () => {
  // Exponential figures (skewed, like round times on a busy machine): true median ln 2.
  // xorshift32 with a fixed seed: the same figures every run.
  let x = 2463534242;
  const random = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) + 0.5) / 2 ** 32;
  };
  const trials = 2000;
  let covered = 0;
  for (let t = 0; t < trials; t++) {
    const xs = Array.from({ length: 10 }, () => -Math.log(random()));
    const ci = medianInterval(xs)!;
    if (ci.low <= Math.LN2 && Math.LN2 <= ci.high) covered++;
  }
  // Promised 97.85%; allow three standard errors of the simulation (about 1%).
  assert.ok(covered / trials >= 0.9785 - 0.01, `covered ${covered} of ${trials}`);
});

test("verdictAtLeast: met only when the whole interval clears the goal", () => {
  const ci = (low: number, high: number) => ({ low, high, confidence: 0.95 });
  assert.equal(verdictAtLeast(0.99, ci(0.981, 1.01), 0.98), "met");
  assert.equal(verdictAtLeast(0.95, ci(0.9, 0.97), 0.98), "**missed**");
  assert.match(verdictAtLeast(0.99, ci(0.96, 1.02), 0.98), /^undecided/);
  assert.match(verdictAtLeast(0.99, undefined, 0.98), /^met \(too few rounds/);
});
