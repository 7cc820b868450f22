/** `toa inspect`: per-connection TOA reports from pcap/pcapng captures taken on a backend. */
export * from "./report.js";
export * from "./tracker.js";
export * from "./verdict.js";
export * from "./format.js";
export * from "./inspect.js";
