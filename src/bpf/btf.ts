/**
 * A small BTF writer: the types map keys and values need (INT, STRUCT, ARRAY, TYPEDEF), enough for
 * the kernel to accept maps that require BTF (sk_storage) and to pretty-print map contents.
 *
 *   header (24 bytes): magic 0xEB9F u16 | version 1 u8 | flags 0 u8 | hdr_len u32 |
 *                      type_off u32 | type_len u32 | str_off u32 | str_len u32
 *   types:  btf_type { name_off u32, info u32 (vlen:16 | kind:5 << 24 | kind_flag << 31), size|type u32 } + extra
 *   strings: "\0name\0..."
 *
 * hdr_len stays 24: every kernel accepts it (newer UAPI grew the header; btf_parse_hdr wants the
 * unknown tail zero). See include/uapi/linux/btf.h.
 */
import { BpfError } from "./errors.js";
import { BpfCommand, bpfTry, syscalls } from "./syscall.js";
import { SyscallError } from "./errors.js";
import { closeSync } from "node:fs";
import { BtfLoadAttr } from "./sys.js";

import { type BtfType, u32 } from "./btf-types.js";

export { type BtfType, u8, u16, u32, u64, s32 } from "./btf-types.js";

const KIND = { int: 1, array: 3, struct: 4, typedef: 8 } as const;
const BTF_INT_SIGNED = 1;

/** Byte size of a BTF type. */
export function btfSize(t: BtfType): number {
  switch (t.kind) {
    case "int":
    case "struct":
      return t.size;
    case "array":
      return btfSize(t.element) * t.length;
    case "typedef":
      return btfSize(t.type);
  }
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** An index type for arrays (the kernel wants ARRAY to name one). */
const arrayIndex = u32;

/** A blob and the type ids assigned to the given roots. */
export interface BtfBlob {
  bytes: Buffer;
  ids: number[];
}

/** Build a BTF blob describing `roots` (and everything they reference), deduplicated by identity. */
export function buildBtf(roots: BtfType[]): BtfBlob {
  const strings: string[] = [""];
  const stringOffsets = new Map<string, number>([["", 0]]);
  let strLen = 1;
  // Only INT names may contain spaces ("unsigned long long"); struct, member and typedef names must
  // be C identifiers or the kernel refuses the blob (btf_name_valid_identifier).
  const str = (s: string, spaced = false): number => {
    if (s !== "" && !identifier.test(spaced ? s.replace(/ /g, "_") : s)) throw new BpfError("BPF_ERR_BTF", `BTF name "${s}" is not a C identifier`);
    let off = stringOffsets.get(s);
    if (off === undefined) {
      off = strLen;
      stringOffsets.set(s, off);
      strings.push(s);
      strLen += Buffer.byteLength(s) + 1;
    }
    return off;
  };
  const ids = new Map<BtfType, number>();
  const records: Buffer[] = [];
  const visit = (t: BtfType): number => {
    const known = ids.get(t);
    if (known !== undefined) return known;
    // Children first so that every reference points at an id assigned already.
    let rec: Buffer;
    switch (t.kind) {
      case "int": {
        if (!identifier.test(t.name.replace(/ /g, "_"))) throw new BpfError("BPF_ERR_BTF", `bad int name ${t.name}`);
        rec = Buffer.alloc(16);
        rec.writeUInt32LE(str(t.name, true), 0);
        rec.writeUInt32LE(KIND.int << 24, 4);
        rec.writeUInt32LE(t.size, 8);
        // nr_bits = 8 * size: anything else makes the kernel treat it as a bitfield.
        rec.writeUInt32LE(((t.signed ? BTF_INT_SIGNED : 0) << 24) | (t.size * 8), 12);
        break;
      }
      case "array": {
        const elem = visit(t.element);
        const index = visit(arrayIndex);
        rec = Buffer.alloc(24);
        rec.writeUInt32LE(0, 0);
        rec.writeUInt32LE(KIND.array << 24, 4);
        rec.writeUInt32LE(0, 8);
        rec.writeUInt32LE(elem, 12);
        rec.writeUInt32LE(index, 16);
        rec.writeUInt32LE(t.length, 20);
        break;
      }
      case "typedef": {
        const target = visit(t.type);
        rec = Buffer.alloc(12);
        rec.writeUInt32LE(str(t.name), 0);
        rec.writeUInt32LE(KIND.typedef << 24, 4);
        rec.writeUInt32LE(target, 8);
        break;
      }
      case "struct": {
        const memberIds = t.members.map((m) => visit(m.type));
        rec = Buffer.alloc(12 + 12 * t.members.length);
        rec.writeUInt32LE(str(t.name), 0);
        rec.writeUInt32LE((KIND.struct << 24) | t.members.length, 4);
        rec.writeUInt32LE(t.size, 8);
        t.members.forEach((m, i) => {
          if (m.offset + btfSize(m.type) > t.size) throw new BpfError("BPF_ERR_BTF", `member ${t.name}.${m.name} runs past the struct's ${t.size} bytes`);
          rec.writeUInt32LE(str(m.name), 12 + 12 * i);
          rec.writeUInt32LE(memberIds[i], 16 + 12 * i);
          rec.writeUInt32LE(m.offset * 8, 20 + 12 * i); // kind_flag 0: offset in bits
        });
        break;
      }
    }
    records.push(rec);
    const id = records.length;
    ids.set(t, id);
    return id;
  };
  const rootIds = roots.map(visit);
  const types = Buffer.concat(records);
  const strs = Buffer.concat(strings.map((s) => Buffer.from(`${s}\0`)));
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(0xeb9f, 0);
  hdr.writeUInt8(1, 2);
  hdr.writeUInt8(0, 3);
  hdr.writeUInt32LE(24, 4);
  hdr.writeUInt32LE(0, 8);
  hdr.writeUInt32LE(types.length, 12);
  hdr.writeUInt32LE(types.length, 16);
  hdr.writeUInt32LE(strs.length, 20);
  return { bytes: Buffer.concat([hdr, types, strs]), ids: rootIds };
}

/** A BTF object loaded in the kernel. */
export class Btf {
  private constructor(private _fd: number) {}

  /** Load a blob with BPF_BTF_LOAD; on failure the kernel's BTF log is in the error. */
  static load(blob: Buffer): Btf {
    const attr = { btfData: syscalls().address(blob), btfLogBuf: 0n, btfSize: blob.length, btfLogSize: 0, btfLogLevel: 0, btfLogTrueSize: 0 };
    let r = bpfTry(BpfCommand.BTF_LOAD, BtfLoadAttr.encode(attr));
    if (r.ret >= 0) return new Btf(r.ret);
    const log = Buffer.alloc(64 * 1024);
    r = bpfTry(BpfCommand.BTF_LOAD, BtfLoadAttr.encode({ ...attr, btfLogBuf: syscalls().address(log), btfLogSize: log.length, btfLogLevel: 1 }));
    if (r.ret >= 0) return new Btf(r.ret);
    const text = log.toString("utf8", 0, Math.max(0, log.indexOf(0)));
    throw new SyscallError("BPF_BTF_LOAD", r.errno, text.trim().split("\n").slice(-5).join(" | "));
  }

  get fd(): number {
    if (this._fd < 0) throw new BpfError("BPF_ERR_CLOSED", "BTF object is closed");
    return this._fd;
  }

  close(): void {
    if (this._fd >= 0) closeSync(this._fd);
    this._fd = -1;
  }
}
