/** Writing a PROXY v2 header (haproxy doc/proxy-protocol.txt §2.2). */
import { checkPort, parseAddress } from "./addr.js";
import { crc32c } from "./crc32c.js";
import { WireError } from "./errors.js";
import type { ProxyEndpoint } from "./proxy-v1.js";
import { PP2_TYPE, PROXY_V2_MAX_UNIQUE_ID, PROXY_V2_SIGNATURE, PROXY_V2_TRANSPORTS, type ProxyV2Init } from "./proxy-v2-format.js";

function isPath(e: ProxyEndpoint | { path: string }): e is { path: string } {
  return typeof (e as { path?: unknown }).path === "string";
}

/** Encode a v2 header. */
export function encodeProxyV2(init: ProxyV2Init): Buffer {
  if (init.command !== "PROXY" && init.command !== "LOCAL") {
    throw new WireError("WIRE_ERR_INVALID_ARG", `command must be PROXY or LOCAL, got ${JSON.stringify(init.command)}`);
  }
  const transport = init.transport ?? "STREAM";
  const t = PROXY_V2_TRANSPORTS.indexOf(transport);
  if (t < 0) throw new WireError("WIRE_ERR_INVALID_ARG", `transport must be STREAM, DGRAM or UNSPEC, got ${JSON.stringify(transport)}`);
  let fam = 0;
  let addr: Buffer = Buffer.alloc(0);
  if (init.source || init.destination) {
    if (!init.source || !init.destination) throw new WireError("WIRE_ERR_INVALID_ARG", "source and destination go together");
    const s = init.source;
    const d = init.destination;
    if (isPath(s) || isPath(d)) {
      if (!isPath(s) || !isPath(d)) throw new WireError("WIRE_ERR_INVALID_ARG", "a UNIX source needs a UNIX destination");
      fam = 3;
      addr = Buffer.alloc(216);
      for (const [p, at] of [[s.path, 0], [d.path, 108]] as const) {
        const b = Buffer.from(p, "utf8");
        if (b.length > 108) throw new WireError("WIRE_ERR_INVALID_ARG", `UNIX path is ${b.length} bytes, at most 108`);
        b.copy(addr, at);
      }
    } else {
      const sa = parseAddress(s.address, "source.address");
      const da = parseAddress(d.address, "destination.address");
      if (sa.family !== da.family) throw new WireError("WIRE_ERR_INVALID_ARG", "source and destination must be the same family");
      fam = sa.family === 4 ? 1 : 2;
      const n = sa.bytes.length;
      addr = Buffer.alloc(2 * n + 4);
      addr.set(sa.bytes, 0);
      addr.set(da.bytes, n);
      addr.writeUInt16BE(checkPort(s.port, "source.port"), 2 * n);
      addr.writeUInt16BE(checkPort(d.port, "destination.port"), 2 * n + 2);
    }
  } else if (init.command === "PROXY") {
    throw new WireError("WIRE_ERR_INVALID_ARG", "PROXY command needs source and destination");
  }
  const tlvParts: Buffer[] = [];
  for (const tlv of init.tlvs ?? []) {
    const v = typeof tlv.value === "string" ? Buffer.from(tlv.value, "utf8") : Buffer.from(tlv.value);
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 255) throw new WireError("WIRE_ERR_INVALID_ARG", `TLV type must be 0..255, got ${tlv.type}`);
    if (tlv.type === PP2_TYPE.UNIQUE_ID && v.length > PROXY_V2_MAX_UNIQUE_ID) {
      throw new WireError("WIRE_ERR_INVALID_ARG", `UNIQUE_ID is ${v.length} bytes, at most ${PROXY_V2_MAX_UNIQUE_ID}`);
    }
    if (v.length > 0xffff) throw new WireError("WIRE_ERR_INVALID_ARG", `TLV 0x${tlv.type.toString(16)} value longer than 65535 bytes`);
    const h = Buffer.alloc(3);
    h[0] = tlv.type;
    h.writeUInt16BE(v.length, 1);
    tlvParts.push(h, v);
  }
  if (init.crc32c) tlvParts.push(Buffer.from([PP2_TYPE.CRC32C, 0, 4, 0, 0, 0, 0]));
  const body = Buffer.concat([addr, ...tlvParts]);
  if (body.length > 0xffff) throw new WireError("WIRE_ERR_INVALID_ARG", `header body is ${body.length} bytes, at most 65535`);
  const out = Buffer.alloc(16 + body.length);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = 0x20 | (init.command === "PROXY" ? 1 : 0);
  out[13] = (fam << 4) | t;
  out.writeUInt16BE(body.length, 14);
  body.copy(out, 16);
  // §2.2.2: the CRC covers the whole header with the CRC field itself zeroed.
  if (init.crc32c) out.writeUInt32BE(crc32c(out), out.length - 4);
  return out;
}
