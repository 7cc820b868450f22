/**
 * The admin listener's HTML status page, in the spirit of HAProxy's stats page: one table of
 * listeners (frontends), one table per pool with a row per backend coloured by health, and the TOA
 * counters. Self-contained (inline CSS, no script), refreshes itself every 5 s.
 */
import type { BackendStatus, StatusSnapshot } from "./status.js";
import { formatAge } from "./duration.js";

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function stateClass(b: BackendStatus): string {
  return b.state === "UP" ? "up" : b.state === "DOWN" ? "down" : "nocheck";
}

/** Render the page. */
export function renderStatusPage(s: StatusSnapshot): string {
  const totals = s.listeners.reduce((t, l) => ({ active: t.active + l.active, accepted: t.accepted + l.accepted, in: t.in + l.bytesIn, out: t.out + l.bytesOut }), { active: 0, accepted: 0, in: 0, out: 0 });
  const listenerRows = s.listeners
    .map(
      (l) => `<tr><td class="name">${esc(l.name)}</td><td>${esc(l.listen)}</td><td>${esc(l.mode)}${l.dataPath === "packet" ? " · packet path" : ""}</td><td>${esc(l.pool)}</td>` +
        `<td>${l.active}</td><td>${l.accepted}</td><td>${formatBytes(l.bytesIn)}</td><td>${formatBytes(l.bytesOut)}</td>` +
        `<td class="${l.noBackend ? "warn" : ""}">${l.noBackend}</td><td class="${l.failed ? "warn" : ""}">${l.failed}</td><td>${l.connectErrors}</td></tr>`,
    )
    .join("\n");
  const pools = s.pools
    .map((p) => {
      const up = p.backends.filter((b) => b.healthy).length;
      const rows = p.backends
        .map(
          (b) => `<tr class="${stateClass(b)}"><td class="name">${esc(b.id)}</td><td class="state">${b.state}</td><td>${esc(b.lastCheck || "-")}</td><td>${formatAge(s.nowMs - b.lastChangeMs)}</td>` +
            `<td>${b.weight}</td><td>${b.active}</td><td>${b.connections}</td><td>${formatBytes(b.bytesIn)}</td><td>${formatBytes(b.bytesOut)}</td>` +
            `<td>${b.connectErrors}</td><td>${b.portExhausted}</td><td>${b.checksFailed}</td></tr>`,
        )
        .join("\n");
      return `<h2>pool <b>${esc(p.name)}</b> <span class="sub">${esc(p.scheduler)} · check: ${esc(p.healthCheck)} · ${up}/${p.backends.length} up</span></h2>
<table><thead><tr><th>backend</th><th>status</th><th>last check</th><th>since</th><th>weight</th><th>active</th><th>total</th><th>bytes in</th><th>bytes out</th><th>connect errors</th><th>port exhaustion</th><th>checks failed</th></tr></thead>
<tbody>${rows}</tbody></table>`;
    })
    .join("\n");
  const toa = s.toa
    ? `<table class="toa"><tr><th>TOA written</th><td>${s.toa.written}</td><th>skipped (no option room)</th><td class="${s.toa.skippedNoSpace ? "warn" : ""}">${s.toa.skippedNoSpace}</td></tr></table>`
    : `<p class="sub">No listener uses toa mode.</p>`;
  const packet = s.packet
    ? `<h2>packet path <span class="sub">tc ingress (${esc(s.packet.attach)}) on ${esc(s.packet.devices.join(", "))} · ${s.packet.active} open of ${s.packet.maxConnections} · ${s.packet.halfOpen} opening of ${s.packet.maxHalfOpen} · ${s.packet.entries} table entries</span></h2>
<p class="sub">instance ${esc(s.packet.instance.name)} at ${esc(s.packet.instance.pinDir)} · made ${esc(formatAge(s.nowMs - s.packet.instance.createdMs))} ago${s.packet.instance.adopted ? ` · adopted by this process (adoption ${s.packet.instance.adoptions})` : " · made by this process"} · program ${esc(s.packet.instance.programTag)} (build ${esc(s.packet.instance.build)}) since ${esc(formatAge(s.nowMs - s.packet.instance.programSinceMs))} ago · layout ${s.packet.instance.layoutVersion}</p>
${s.packet.warnings.map((w) => `<p class="sub">⚠ ${esc(w)}</p>`).join("")}
<table class="packet"><tr>${Object.entries(s.packet.counters).map(([k]) => `<th>${esc(k.replace(/_/g, " "))}</th>`).join("")}</tr><tr>${Object.entries(s.packet.counters)
        .map(([k, v]) => `<td class="${v && k !== "flows_created" ? "warn" : ""}">${v}</td>`)
        .join("")}</tr></table>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>toa lb — status</title>
<style>
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px 24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:22px 0 6px} .sub{color:#666;font-weight:normal;font-size:12px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.08);margin-bottom:6px}
th,td{border:1px solid #d6d6d6;padding:4px 9px;text-align:right;white-space:nowrap}
th{background:#3a4b6b;color:#fff;font-weight:600} td.name{text-align:left;font-family:ui-monospace,monospace}
tr.up td{background:#c8f0c0} tr.down td{background:#f6b5b0} tr.nocheck td{background:#e8e8e8}
tr.up td.state{color:#11650b;font-weight:700} tr.down td.state{color:#a00;font-weight:700}
td.warn{background:#ffe38a} .summary{display:flex;gap:22px;margin:8px 0 4px} .summary div{background:#fff;padding:6px 12px;border-left:4px solid #3a4b6b}
.summary b{display:block;font-size:17px} .legend span{display:inline-block;padding:1px 8px;margin-right:6px;border:1px solid #ccc}
</style></head><body>
<h1>toa lb <span class="sub">pid ${s.pid} · up ${formatAge(s.nowMs - s.startedAtMs)} · config ${esc(s.config)} · reloads ${s.reloads}${s.reloadFailures ? ` (${s.reloadFailures} failed)` : ""}${s.draining ? ' · <b style="color:#a00">DRAINING</b>' : ""}</span></h1>
<div class="summary"><div>active<b>${totals.active}</b></div><div>accepted<b>${totals.accepted}</b></div><div>bytes in<b>${formatBytes(totals.in)}</b></div><div>bytes out<b>${formatBytes(totals.out)}</b></div><div>TOA written<b>${s.toa ? s.toa.written : "-"}</b></div></div>
<h2>listeners</h2>
<table><thead><tr><th>name</th><th>address</th><th>mode</th><th>pool</th><th>active</th><th>total</th><th>bytes in</th><th>bytes out</th><th>no backend</th><th>failed</th><th>connect errors</th></tr></thead>
<tbody>${listenerRows}</tbody></table>
${pools}
${packet}
<h2>TOA sender</h2>
${toa}
<p class="legend sub"><span style="background:#c8f0c0">UP</span><span style="background:#f6b5b0">DOWN</span><span style="background:#e8e8e8">no check</span><span style="background:#ffe38a">needs attention</span> · <a href="/metrics">/metrics</a> · <a href="/status.json">/status.json</a></p>
</body></html>
`;
}
