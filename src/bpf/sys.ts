/**
 * The bpf(2) attributes and the info structs the kernel fills, declared once with {@link struct}
 * (include/uapi/linux/bpf.h: union bpf_attr's anonymous structs, struct bpf_map_info,
 * bpf_prog_info, bpf_link_info). Pointers are u64 addresses (syscalls().address). Each attr
 * declares the fields up to the last one we use: the size passed to bpf(2) is the declaration's
 * (or the offset of the end of the last field the command knows, where the kernel wants exactly
 * that), so newer kernels' fields stay zero.
 *
 * Also the commands built on them: BPF_OBJ_PIN, BPF_OBJ_GET and BPF_OBJ_GET_INFO_BY_FD.
 */
import { bytes, pad, s32, struct, type Struct, type Fields, type ValueOf, u32, u64 } from "./struct.js";
import { BpfCommand, bpf, bpfTry, cString, syscalls } from "./syscall.js";

/** An object name (map_name, prog_name): char[16], NUL-terminated, at most 15 characters. */
export const objName = (s: string): Buffer => Buffer.from(s.slice(0, 15), "latin1");
/** Read an object name back. */
export const nameText = (b: Buffer): string => b.toString("latin1").replace(/\0.*$/s, "");

/** BPF_MAP_CREATE. */
export const MapCreateAttr = struct("bpf_map_create_attr", {
  mapType: u32,
  keySize: u32,
  valueSize: u32,
  maxEntries: u32,
  mapFlags: u32,
  innerMapFd: u32,
  numaNode: u32,
  mapName: bytes(16),
  mapIfindex: u32,
  btfFd: u32,
  btfKeyTypeId: u32,
  btfValueTypeId: u32,
  btfVmlinuxValueTypeId: u32,
});

/** BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM, DELETE_ELEM (which ends at `key`), GET_NEXT_KEY (`value` = next key). */
export const MapElemAttr = struct("bpf_map_elem_attr", { mapFd: u32, _pad: pad(4), key: u64, value: u64, flags: u64 });

/** BPF_MAP_LOOKUP_BATCH (Linux 5.6). */
export const MapBatchAttr = struct("bpf_map_batch_attr", {
  inBatch: u64,
  outBatch: u64,
  keys: u64,
  values: u64,
  /** In: room in keys/values; out: entries written. */
  count: u32,
  mapFd: u32,
  elemFlags: u64,
  flags: u64,
});

/** BPF_PROG_LOAD, up to log_true_size (Linux 6.4; older kernels take the zero tail). */
export const ProgLoadAttr = struct("bpf_prog_load_attr", {
  progType: u32,
  insnCnt: u32,
  insns: u64,
  license: u64,
  logLevel: u32,
  logSize: u32,
  logBuf: u64,
  kernVersion: u32,
  progFlags: u32,
  progName: bytes(16),
  progIfindex: u32,
  expectedAttachType: u32,
  progBtfFd: u32,
  funcInfoRecSize: u32,
  funcInfo: u64,
  funcInfoCnt: u32,
  lineInfoRecSize: u32,
  lineInfo: u64,
  lineInfoCnt: u32,
  attachBtfId: u32,
  attachProgFd: u32,
  coreReloCnt: u32,
  fdArray: u64,
  coreRelos: u64,
  coreReloRecSize: u32,
  /** Out (6.4+): the size the whole log needs. */
  logTrueSize: u32,
});

/** BPF_BTF_LOAD (`btf` in C: the name is the struct's own here). */
export const BtfLoadAttr = struct("bpf_btf_load_attr", { btfData: u64, btfLogBuf: u64, btfSize: u32, btfLogSize: u32, btfLogLevel: u32, btfLogTrueSize: u32 });

/** BPF_OBJ_PIN and BPF_OBJ_GET; the kernel wants 20 bytes (up to path_fd), not the padded 24. */
export const ObjPinAttr = struct("bpf_obj_pin_attr", { pathname: u64, bpfFd: u32, fileFlags: u32, pathFd: s32 });
export const OBJ_PIN_ATTR_SIZE = ObjPinAttr.pathFd + 4;

/** BPF_OBJ_GET_INFO_BY_FD. */
export const ObjInfoAttr = struct("bpf_obj_info_attr", { bpfFd: u32, infoLen: u32, info: u64 });

/** BPF_PROG_ATTACH / BPF_PROG_DETACH (cgroups); the kernel wants 20 bytes (up to replace_bpf_fd). */
export const ProgAttachAttr = struct("bpf_prog_attach_attr", { targetFd: u32, attachBpfFd: u32, attachType: u32, attachFlags: u32, replaceBpfFd: u32 });

/** BPF_PROG_QUERY (cgroups: up to prog_cnt; tcx, Linux 6.6: link ids and the revision). */
export const ProgQueryAttr = struct("bpf_prog_query_attr", {
  targetFd: u32,
  attachType: u32,
  queryFlags: u32,
  attachFlags: u32,
  progIds: u64,
  /** In: room in prog_ids; out: programs attached. */
  progCnt: u32,
  _pad: pad(4),
  progAttachFlags: u64,
  linkIds: u64,
  linkAttachFlags: u64,
  revision: u64,
});

/** BPF_LINK_CREATE, with the tcx member of its union (Linux 6.6). */
export const LinkCreateAttr = struct("bpf_link_create_attr", {
  progFd: u32,
  targetFd: u32,
  attachType: u32,
  flags: u32,
  /** tcx: relative_fd or relative_id. */
  relative: u32,
  _pad: pad(4),
  expectedRevision: u64,
});

/** BPF_LINK_UPDATE. */
export const LinkUpdateAttr = struct("bpf_link_update_attr", { linkFd: u32, newProgFd: u32, flags: u32, oldProgFd: u32 });

/** BPF_LINK_DETACH. */
export const LinkDetachAttr = struct("bpf_link_detach_attr", { linkFd: u32 });

/** BPF_ENABLE_STATS. */
export const EnableStatsAttr = struct("bpf_enable_stats_attr", { type: u32 });

/** BPF_PROG_GET_FD_BY_ID (and the other GET_FD_BY_ID commands). */
export const GetFdByIdAttr = struct("bpf_get_fd_by_id_attr", { id: u32, nextId: u32, openFlags: u32 });

/** struct bpf_map_info. */
export const MapInfoStruct = struct("bpf_map_info", {
  type: u32,
  id: u32,
  keySize: u32,
  valueSize: u32,
  maxEntries: u32,
  mapFlags: u32,
  name: bytes(16),
  ifindex: u32,
  btfVmlinuxValueTypeId: u32,
  netnsDev: u64,
  netnsIno: u64,
  btfId: u32,
  btfKeyTypeId: u32,
  btfValueTypeId: u32,
  _pad: pad(4),
  mapExtra: u64,
});

/** struct bpf_prog_info, up to attach_btf_id. */
export const ProgInfoStruct = struct("bpf_prog_info", {
  type: u32,
  id: u32,
  tag: bytes(8),
  jitedProgLen: u32,
  xlatedProgLen: u32,
  jitedProgInsns: u64,
  xlatedProgInsns: u64,
  loadTime: u64,
  createdByUid: u32,
  nrMapIds: u32,
  mapIds: u64,
  name: bytes(16),
  ifindex: u32,
  /** Bit 0: gpl_compatible. */
  gplCompatible: u32,
  netnsDev: u64,
  netnsIno: u64,
  nrJitedKsyms: u32,
  nrJitedFuncLens: u32,
  jitedKsyms: u64,
  jitedFuncLens: u64,
  btfId: u32,
  funcInfoRecSize: u32,
  funcInfo: u64,
  nrFuncInfo: u32,
  nrLineInfo: u32,
  lineInfo: u64,
  jitedLineInfo: u64,
  nrJitedLineInfo: u32,
  lineInfoRecSize: u32,
  jitedLineInfoRecSize: u32,
  nrProgTags: u32,
  progTags: u64,
  /** Run statistics (BPF_ENABLE_STATS or kernel.bpf_stats_enabled; Linux 5.1). */
  runTimeNs: u64,
  runCnt: u64,
  recursionMisses: u64,
  verifiedInsns: u32,
  attachBtfObjId: u32,
  attachBtfId: u32,
});

/** struct bpf_link_info with the cgroup member of its union (the union is 48 bytes). */
export const LinkInfoStruct = struct("bpf_link_info", { type: u32, id: u32, progId: u32, _pad: pad(4), cgroupId: u64, attachType: u32, _union: pad(36) });

/**
 * BPF_OBJ_GET_INFO_BY_FD: the kernel's info struct `S` for an fd (the kernel fills what it knows of
 * it and leaves the rest zero).
 */
export function objInfo<F extends Fields>(fd: number, S: Struct<F>): ValueOf<Struct<F>> {
  const info = Buffer.alloc(S.size);
  bpf(BpfCommand.OBJ_GET_INFO_BY_FD, ObjInfoAttr.encode({ bpfFd: fd, infoLen: info.length, info: syscalls().address(info) }));
  return S.decode(info) as ValueOf<Struct<F>>;
}

/** BPF_OBJ_PIN: pin an fd at `path` (bpffs). */
export function objPin(path: string, fd: number): void {
  const p = cString(path);
  bpf(BpfCommand.OBJ_PIN, ObjPinAttr.encode({ pathname: syscalls().address(p), bpfFd: fd, fileFlags: 0, pathFd: 0 }), OBJ_PIN_ATTR_SIZE, path);
}

/** BPF_OBJ_GET: open the object pinned at `path`. */
export function objGet(path: string): number {
  const p = cString(path);
  return bpf(BpfCommand.OBJ_GET, ObjPinAttr.encode({ pathname: syscalls().address(p), bpfFd: 0, fileFlags: 0, pathFd: 0 }), OBJ_PIN_ATTR_SIZE, path);
}

/**
 * BPF_LINK_DETACH: end a link's attachment now, even while it is pinned elsewhere (best effort: a
 * link already gone is fine). The fd stays the caller's to close.
 */
export function linkDetach(linkFd: number): void {
  bpfTry(BpfCommand.LINK_DETACH, LinkDetachAttr.encode({ linkFd }));
}
