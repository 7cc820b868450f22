/** What `toa lb --check` says of the packet-path instance a config would adopt. */
import { join } from "node:path";
import { existsSync } from "node:fs";
import type { LbConfig } from "../config.js";
import { servingClaim } from "../claims.js";
import { InstanceMeta } from "../../programs/nat-layout.js";
import { layoutProblem, META_PIN, metaFacts, openMeta, readMetaRaw } from "./instance.js";
import { formatAge } from "../duration.js";

export function describePinnedInstance(config: LbConfig, nowMs = Date.now()): string {
  const dir = config.packet.pinDir;
  const head = `  instance ${config.instance}: `;
  if (!existsSync(join(dir, META_PIN))) {
    const packet = config.listeners.some((l) => l.dataPath === "packet");
    return `${head}nothing pinned at ${dir}${packet ? " (the start makes it there)" : ""}`;
  }
  let raw: Buffer;
  try {
    const meta = openMeta(dir)!;
    try {
      raw = readMetaRaw(meta, dir);
    } finally {
      meta.close();
    }
  } catch (e) {
    return `${head}${(e as Error).message}`;
  }
  const problem = layoutProblem(raw, dir);
  if (problem) return `${head}REFUSED: ${problem}`;
  const f = metaFacts(InstanceMeta.decode(raw), dir);
  const claim = servingClaim(config.instance);
  const served = claim ? `served by pid ${claim.pid}` : "no process: serving from the kernel on its last tables";
  return (
    `${head}pinned at ${dir}, made ${formatAge(nowMs - f.createdMs)} ago, adopted ${f.adoptions} time(s); ` +
    `program ${f.programTag} (build ${f.build}) running for ${formatAge(nowMs - f.programSinceMs)}; tables for ${f.maxConnections} connections; ${served}. ` +
    `A start adopts it: same tables, this build's program swapped in, no connection lost`
  );
}
