/**
 * The bytes of every program, pinned: each variant the census loads, encoded with fixed map fds,
 * against test/unit/golden/programs.json (instruction count and sha256). A change to a program's
 * instructions must be deliberate: a refactor that should change nothing is checked by this test, and
 * a change that means to rewrites the file (`UPDATE_GOLDEN=1 node --test dist/test/unit/programs-golden.test.js`)
 * and says why in its commit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { asm } from "../../src/bpf/index.js";
import { MapName } from "../../src/programs/layout.js";
import { NatMapName } from "../../src/programs/nat-layout.js";
import { programVariants } from "../kernels/program-census.js";

const GOLDEN = resolve(dirname(fileURLToPath(import.meta.url)), "../../../test/unit/golden/programs.json");
// Every map name gets a fixed fd, so the ld_imm64 map loads encode the same on every run.
const fds = new Map([...Object.values(MapName), ...Object.values(NatMapName)].map((n, i) => [n, 100 + i]));

interface Golden {
  instructions: number;
  sha256: string;
}

function current(): Record<string, Golden> {
  const out: Record<string, Golden> = {};
  for (const { variant, spec } of programVariants()) {
    const bytes = asm.encode(spec.instructions, fds);
    out[`${spec.name}${variant ? ` ${variant}` : ""}`] = { instructions: bytes.length / 8, sha256: createHash("sha256").update(bytes).digest("hex") };
  }
  return out;
}

test("every program's instructions are byte for byte the pinned ones (test/unit/golden/programs.json)", () => {
  const now = current();
  if (process.env.UPDATE_GOLDEN === "1") {
    writeFileSync(GOLDEN, JSON.stringify(now, null, 2) + "\n");
    return;
  }
  const pinned = JSON.parse(readFileSync(GOLDEN, "utf8")) as Record<string, Golden>;
  assert.deepEqual(Object.keys(now).sort(), Object.keys(pinned).sort(), "the same programs and variants");
  const changed = Object.keys(now).filter((k) => now[k]!.sha256 !== pinned[k]!.sha256);
  assert.deepEqual(
    changed.map((k) => `${k}: ${pinned[k]!.instructions} → ${now[k]!.instructions} instructions`),
    [],
    "a program's bytes changed: if that is meant, rerun with UPDATE_GOLDEN=1 and say why in the commit",
  );
});
