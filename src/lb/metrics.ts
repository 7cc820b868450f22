/**
 * Prometheus metrics (prom-client), read from the balancer's own counters at scrape time: the relay
 * only adds to plain numbers, nothing label-keyed runs per chunk.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { StatusSnapshot } from "./status.js";
import { freshFor } from "../shared/fresh.js";

type Snap = () => StatusSnapshot;

/** A registry with the toa_lb_* metrics (and the process_* defaults). */
export function createMetrics(readSnapshot: Snap): Registry {
  const registry = new Registry();
  // One snapshot per scrape (it reads the sender's counters from the kernel), shared by every family.
  const snapshot = freshFor(100, readSnapshot);
  collectDefaultMetrics({ register: registry, prefix: "toa_lb_" });

  type Fill = (s: StatusSnapshot, set: (labels: Record<string, string>, v: number) => void) => void;
  // A counter or gauge refilled from the snapshot at each scrape: counters inc from zero, gauges set.
  const family = (Kind: typeof Counter | typeof Gauge, name: string, help: string, labelNames: string[], fill: Fill): void => {
    new Kind({
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        fill(snapshot(), (labels, v) => (this instanceof Counter ? this.inc(labels, v) : this.set(labels, v)));
      },
    });
  };
  const counter = (name: string, help: string, labelNames: string[], fill: Fill): void => family(Counter, name, help, labelNames, fill);
  const gauge = (name: string, help: string, labelNames: string[], fill: Fill): void => family(Gauge, name, help, labelNames, fill);
  const perListener = (pick: (l: StatusSnapshot["listeners"][number]) => number) => (s: StatusSnapshot, set: (l: Record<string, string>, v: number) => void) => {
    for (const l of s.listeners) set({ listener: l.name }, pick(l));
  };
  const perBackend = (pick: (b: StatusSnapshot["pools"][number]["backends"][number]) => number) => (s: StatusSnapshot, set: (l: Record<string, string>, v: number) => void) => {
    for (const p of s.pools) for (const b of p.backends) set({ pool: p.name, backend: b.id }, pick(b));
  };

  counter("toa_lb_connections_total", "Client connections accepted, per listener.", ["listener"], perListener((l) => l.accepted));
  gauge("toa_lb_connections_active", "Client connections open now, per listener.", ["listener"], perListener((l) => l.active));
  counter("toa_lb_bytes_in_total", "Bytes relayed client → backend, per listener.", ["listener"], perListener((l) => l.bytesIn));
  counter("toa_lb_bytes_out_total", "Bytes relayed backend → client, per listener.", ["listener"], perListener((l) => l.bytesOut));
  counter("toa_lb_no_backend_total", "Clients closed at once because no backend was healthy.", ["listener"], perListener((l) => l.noBackend));
  counter("toa_lb_failed_total", "Clients closed because every connect attempt failed or timed out.", ["listener"], perListener((l) => l.failed));

  counter("toa_lb_backend_connections_total", "Backend connections established.", ["pool", "backend"], perBackend((b) => b.connections));
  gauge("toa_lb_backend_connections_active", "Backend connections open now (including connects in progress).", ["pool", "backend"], perBackend((b) => b.active));
  counter("toa_lb_backend_bytes_in_total", "Bytes relayed client → backend, per backend.", ["pool", "backend"], perBackend((b) => b.bytesIn));
  counter("toa_lb_backend_bytes_out_total", "Bytes relayed backend → client, per backend.", ["pool", "backend"], perBackend((b) => b.bytesOut));
  gauge("toa_lb_backend_up", "1 when the backend takes new connections (health check up or no check).", ["pool", "backend"], perBackend((b) => (b.healthy ? 1 : 0)));
  counter("toa_lb_backend_connect_errors_total", "Failed connects to the backend (refused, timeout, port exhaustion).", ["pool", "backend"], perBackend((b) => b.connectErrors));
  counter("toa_lb_backend_port_exhausted_total", "Connects not tried because every local port for this backend was in use (toa mode).", ["pool", "backend"], perBackend((b) => b.portExhausted));
  counter("toa_lb_backend_checks_failed_total", "Failed health checks.", ["pool", "backend"], perBackend((b) => b.checksFailed));

  counter("toa_lb_toa_written_total", "TOA options written by the sender program.", [], (s, set) => s.toa && set({}, s.toa.written));
  counter("toa_lb_toa_skipped_total", "TOA options skipped because the segment had no option room.", [], (s, set) => s.toa && set({}, s.toa.skippedNoSpace));
  counter("toa_lb_reloads_total", "Configuration reloads.", ["result"], (s, set) => {
    set({ result: "ok" }, s.reloads);
    set({ result: "failed" }, s.reloadFailures);
  });
  counter("toa_lb_packet_events_total", "Packet data path counters (flows_created, no_backend, ports_exhausted, toa_skipped_*, toa_failed, redirect_failed, flows_replaced, client_toa_removed, syn_dropped, table_full, ...; docs/lb.md).", ["event"], (s, set) => {
    for (const [k, v] of Object.entries(s.packet?.counters ?? {})) set({ event: k }, v);
  });
  gauge("toa_lb_packet_table_entries", "nat_flows entries at the last sweep (two per connection).", [], (s, set) => s.packet && set({}, s.packet.entries));
  gauge("toa_lb_packet_table_capacity", "nat_flows size (2 × (packet.maxConnections + packet.maxHalfOpen)); when it is full new connections are refused (table_full).", [], (s, set) => s.packet && set({}, (s.packet.maxConnections + s.packet.maxHalfOpen) * 2));
  gauge("toa_lb_packet_half_open", "Connections still opening (SYN seen, the client's ACK not yet) at the last sweep.", [], (s, set) => s.packet && set({}, s.packet.halfOpen));
  gauge("toa_lb_packet_half_open_budget", "packet.maxHalfOpen: SYNs beyond it are dropped (syn_dropped).", [], (s, set) => s.packet && set({}, s.packet.maxHalfOpen));
  gauge("toa_lb_draining", "1 while draining after SIGTERM.", [], (s, set) => set({}, s.draining ? 1 : 0));
  return registry;
}
