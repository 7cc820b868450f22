/** Human-readable output of `toa inspect`: a table and a summary line. */
import { VERDICTS, type InspectResult } from "./report.js";

/** A fixed-width table of the connections, with the reason under each row that is not ok. */
export function formatTable(r: InspectResult): string {
  const head = ["#", "CLIENT -> SERVER", "TOA IN", "KIND", "CARRIES", "VERDICT"];
  const rows = r.connections.map((c) => {
    const t = c.toa;
    const carries = !t || t.address === null ? "-" : t.port === null ? t.address : t.format === "ipv6" ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`;
    return [
      String(c.firstPacket),
      `${c.client} -> ${c.server}`,
      t ? t.packet : "-",
      t ? `${t.kind}${t.format ? `/${t.format}` : ""}` : "-",
      carries,
      c.verdict,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]): string => cells.map((x, i) => (i === cells.length - 1 ? x : x.padEnd(widths[i]))).join("  ");
  const out = [line(head)];
  r.connections.forEach((c, i) => {
    out.push(line(rows[i]));
    if (c.verdict !== "ok") out.push(`${" ".repeat(widths[0] + 2)}-> ${c.reason}`);
  });
  return out.join("\n");
}

/** One line: totals per verdict, and what was not reported. */
export function formatSummary(r: InspectResult): string {
  const counts = VERDICTS.map((v) => [v, r.connections.filter((c) => c.verdict === v).length] as const).filter(([, n]) => n > 0);
  const n = r.connections.length;
  let s = `${n} connection${n === 1 ? "" : "s"}${counts.length ? `: ${counts.map(([v, k]) => `${k} ${v}`).join(", ")}` : ""}`;
  s += ` (${r.packets} packets, ${r.tcpPackets} TCP)`;
  if (r.withoutSyn > 0) s += `; ${r.withoutSyn} connection${r.withoutSyn === 1 ? "" : "s"} without a SYN in the capture not reported`;
  if (r.undecodable > 0) s += `; ${r.undecodable} packet${r.undecodable === 1 ? "" : "s"} not decodable (first: ${r.firstUndecodable})`;
  return s;
}
