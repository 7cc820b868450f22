/**
 * `toa/wire`: pure codecs (no I/O) for addresses and address prefixes (CIDR), TOA options, TCP options,
 * IPv4/IPv6/TCP headers and checksums, PROXY protocol v1/v2, and pcap/pcapng captures. Decoders throw
 * only {@link WireError}.
 */
export * from "./errors.js";
export * from "./addr.js";
export * from "./cidr.js";
export * from "./toa.js";
export * from "./tcp-options.js";
export * from "./checksum.js";
export * from "./ip.js";
export * from "./tcp.js";
export * from "./crc32c.js";
export * from "./proxy-v1.js";
export * from "./proxy-v2.js";
export * from "./proxy.js";
export * from "./link.js";
export * from "./pcap.js";
export * from "./pcapng.js";
export * from "./capture.js";
export * from "./pcap-writer.js";
