/**
 * `address:port` endpoints as written in configs and flags: `198.51.100.1:80`, `[2001:db8::1]:80`,
 * `*:80` / `[::]:80` for every address. Addresses are checked with node:net's isIP.
 */
import { isIP } from "node:net";

/** An IP address and a TCP port; `family` is 4 or 6. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/**
 * Parse `ADDR:PORT` or `[V6]:PORT`; `*` means 0.0.0.0. Returns a message naming what is allowed
 * instead of throwing, so config validation can attach the field path.
 */
export function parseEndpoint(text: string, opts: { allowPortZero?: boolean } = {}): Endpoint | string {
  const allowed = "expected ADDR:PORT, e.g. 198.51.100.1:80 or [2001:db8::1]:80";
  if (typeof text !== "string") return `${allowed}, got ${JSON.stringify(text)}`;
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return `${allowed}, got ${JSON.stringify(text)}`;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return `${JSON.stringify(host)} in brackets is not an IPv6 address (${allowed})`;
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return `${allowed}, got ${JSON.stringify(text)} (no port)`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host === "*") host = "0.0.0.0";
    if (host.includes(":")) return `IPv6 addresses need brackets: [${host}]:${portText}`;
    if (isIP(host) !== 4) return `${JSON.stringify(host)} is not an IPv4 address (${allowed})`;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return `port ${JSON.stringify(portText)} is not a number 1..65535`;
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !opts.allowPortZero)) return `port ${port} is not in 1..65535`;
  return Object.freeze({ address: host, port, family: isIP(host) as 4 | 6 });
}

/** `198.51.100.1:80` or `[2001:db8::1]:80`. */
export function formatEndpoint(e: { address: string; port: number }): string {
  return isIP(e.address) === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Strip the `::ffff:` prefix Node puts on IPv4 peers of dual-stack sockets. */
export function unmapV4(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
