/**
 * The TCP options list (RFC 9293 §3.1): a sequence of `[kind]` (EOL=0, NOP=1) or `[kind][len][data]`
 * entries, at most 40 bytes. Known kinds are decoded; every other kind (TOA among them) is kept raw.
 *
 * ```
 *   EOL  [0]             NOP [1]            MSS  [2][4][mss be16]      WS [3][3][shift]
 *   SACK-permitted [4][2]   SACK [5][2+8n][left be32, right be32]...   TS [8][10][val be32][ecr be32]
 * ```
 */
import { WireError } from "./errors.js";

/** Largest options area of a TCP header: data offset 15 words minus the 20-byte fixed header. */
export const MAX_TCP_OPTIONS_LENGTH = 40;

/** One decoded TCP option; `offset` is its position in the options list when decoded. */
export type TcpOption =
  | { kind: 0; name: "EOL"; offset?: number }
  | { kind: 1; name: "NOP"; offset?: number }
  | { kind: 2; name: "MSS"; mss: number; offset?: number }
  | { kind: 3; name: "WS"; shift: number; offset?: number }
  | { kind: 4; name: "SACK_PERMITTED"; offset?: number }
  | { kind: 5; name: "SACK"; blocks: { left: number; right: number }[]; offset?: number }
  | { kind: 8; name: "TIMESTAMP"; value: number; echo: number; offset?: number }
  | { kind: number; name: "UNKNOWN"; data: Buffer; offset?: number };

/** Result of {@link scanOptions}: what could be read, and why the rest could not. */
export interface OptionScan {
  options: TcpOption[];
  malformed?: string;
  /** Byte where the malformation was found. */
  malformedAt?: number;
}

const fixedLength: Record<number, number> = { 2: 4, 3: 3, 4: 2, 8: 10 };

/**
 * Read an options list without throwing: stops at EOL or at the first malformed entry (length 0 or 1,
 * running past the end, wrong length for a known kind) and reports it, as the kernel would stop
 * parsing there (tcp_parse_options).
 */
export function scanOptions(buf: Buffer, start = 0, end = buf.length): OptionScan {
  const options: TcpOption[] = [];
  let i = start;
  while (i < end) {
    const kind = buf[i];
    const offset = i - start;
    if (kind === 0) {
      options.push({ kind: 0, name: "EOL", offset });
      break;
    }
    if (kind === 1) {
      options.push({ kind: 1, name: "NOP", offset });
      i++;
      continue;
    }
    if (i + 1 >= end) return { options, malformed: `option kind ${kind} has no length byte`, malformedAt: offset };
    const len = buf[i + 1];
    if (len < 2) return { options, malformed: `option kind ${kind} has length ${len} (minimum 2)`, malformedAt: offset };
    if (i + len > end) {
      return { options, malformed: `option kind ${kind} length ${len} runs past the end of the options (${end - i} bytes left)`, malformedAt: offset };
    }
    const want = fixedLength[kind];
    if (want !== undefined && len !== want) {
      return { options, malformed: `option kind ${kind} has length ${len}, expected ${want}`, malformedAt: offset };
    }
    switch (kind) {
      case 2:
        options.push({ kind: 2, name: "MSS", mss: buf.readUInt16BE(i + 2), offset });
        break;
      case 3:
        options.push({ kind: 3, name: "WS", shift: buf[i + 2], offset });
        break;
      case 4:
        options.push({ kind: 4, name: "SACK_PERMITTED", offset });
        break;
      case 5: {
        if ((len - 2) % 8 !== 0 || len === 2) {
          return { options, malformed: `SACK option has length ${len}, expected 2+8n`, malformedAt: offset };
        }
        const blocks: { left: number; right: number }[] = [];
        for (let b = i + 2; b < i + len; b += 8) blocks.push({ left: buf.readUInt32BE(b), right: buf.readUInt32BE(b + 4) });
        options.push({ kind: 5, name: "SACK", blocks, offset });
        break;
      }
      case 8:
        options.push({ kind: 8, name: "TIMESTAMP", value: buf.readUInt32BE(i + 2), echo: buf.readUInt32BE(i + 6), offset });
        break;
      default:
        options.push({ kind, name: "UNKNOWN", data: Buffer.from(buf.subarray(i + 2, i + len)), offset });
    }
    i += len;
  }
  return { options };
}

/** Decode an options list; throws WireError (WIRE_ERR_MALFORMED) where {@link scanOptions} reports one. */
export function decodeTcpOptions(buf: Buffer, start = 0, end = buf.length): TcpOption[] {
  const scan = scanOptions(buf, start, end);
  if (scan.malformed !== undefined) throw new WireError("WIRE_ERR_MALFORMED", `TCP options: ${scan.malformed}`, start + (scan.malformedAt ?? 0));
  return scan.options;
}

/** Encoded size of one option. */
export function optionLength(o: TcpOption): number {
  switch (o.name) {
    case "EOL":
    case "NOP":
      return 1;
    case "SACK":
      return 2 + 8 * o.blocks.length;
    case "UNKNOWN":
      return 2 + o.data.length;
    default:
      return fixedLength[o.kind];
  }
}

/**
 * Encode an options list. With `pad` (default true) the result is zero-filled (EOL) to a multiple of
 * 4 bytes, as the data offset counts 32-bit words. Throws WIRE_ERR_INVALID_ARG beyond 40 bytes.
 */
export function encodeTcpOptions(options: TcpOption[], pad = true): Buffer {
  let total = 0;
  for (const o of options) total += optionLength(o);
  const padded = pad ? (total + 3) & ~3 : total;
  if (padded > MAX_TCP_OPTIONS_LENGTH) {
    throw new WireError("WIRE_ERR_INVALID_ARG", `TCP options need ${padded} bytes, at most ${MAX_TCP_OPTIONS_LENGTH} fit`);
  }
  const out = Buffer.alloc(padded);
  let i = 0;
  for (const o of options) {
    out[i] = o.kind;
    const len = optionLength(o);
    if (len > 1) out[i + 1] = len;
    switch (o.name) {
      case "MSS":
        out.writeUInt16BE(o.mss, i + 2);
        break;
      case "WS":
        out[i + 2] = o.shift;
        break;
      case "SACK":
        o.blocks.forEach((b, n) => {
          out.writeUInt32BE(b.left >>> 0, i + 2 + 8 * n);
          out.writeUInt32BE(b.right >>> 0, i + 6 + 8 * n);
        });
        break;
      case "TIMESTAMP":
        out.writeUInt32BE(o.value >>> 0, i + 2);
        out.writeUInt32BE(o.echo >>> 0, i + 6);
        break;
      case "UNKNOWN":
        if (o.kind < 0 || o.kind > 255 || o.kind <= 1 || fixedLength[o.kind] !== undefined || o.kind === 5) {
          throw new WireError("WIRE_ERR_INVALID_ARG", `raw option kind must be 2..255 and not a decoded kind, got ${o.kind}`);
        }
        o.data.copy(out, i + 2);
        break;
    }
    i += len;
  }
  return out;
}
