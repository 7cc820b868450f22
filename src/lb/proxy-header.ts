/**
 * The PROXY protocol header written first on a backend connection in `proxy-v1`/`proxy-v2` modes
 * (haproxy doc/proxy-protocol.txt), from the codecs in src/wire.
 */
import { isIP } from "node:net";
import { encodeProxyV1 } from "../wire/proxy-v1.js";
import { encodeProxyV2 } from "../wire/proxy-v2.js";
import type { ClientAddressMode } from "./config.js";
import { unmapV4 } from "./endpoint.js";

/** An address and port. */
export interface AddressPort {
  address: string;
  port: number;
}

/**
 * The header for `mode`, or null for `toa`/`none`. `client` is the client's address (source),
 * `local` the listener address it connected to (destination). IPv4 clients of dual-stack listeners
 * (`::ffff:a.b.c.d`) are written as TCP4/INET; if the two families still differ the header says
 * UNKNOWN (v1) or LOCAL (v2), as the spec asks when the addresses cannot be represented.
 */
export function proxyHeader(mode: ClientAddressMode, client: AddressPort, local: AddressPort): Buffer | null {
  if (mode !== "proxy-v1" && mode !== "proxy-v2") return null;
  const source = { address: unmapV4(client.address), port: client.port };
  const destination = { address: unmapV4(local.address), port: local.port };
  const family = isIP(source.address);
  const same = family !== 0 && family === isIP(destination.address);
  if (mode === "proxy-v1") {
    return same ? encodeProxyV1({ family: family === 4 ? "TCP4" : "TCP6", source, destination }) : encodeProxyV1({ family: "UNKNOWN" });
  }
  return same ? encodeProxyV2({ command: "PROXY", transport: "STREAM", source, destination }) : encodeProxyV2({ command: "LOCAL" });
}
