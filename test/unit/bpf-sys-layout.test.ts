/** bpf/sys.ts: the attrs and info structs at the offsets and sizes of include/uapi/linux/bpf.h. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { sys, programTypeName } from "../../src/bpf/index.js";

const cases: { name: string; have: object; want: Record<string, number> }[] = [
  { name: "map create", have: sys.MapCreateAttr, want: { size: 64, mapFlags: 16, mapName: 28, mapIfindex: 44, btfFd: 48, btfKeyTypeId: 52, btfValueTypeId: 56 } },
  { name: "map elem", have: sys.MapElemAttr, want: { size: 32, mapFd: 0, key: 8, value: 16, flags: 24 } },
  { name: "map batch", have: sys.MapBatchAttr, want: { size: 56, inBatch: 0, outBatch: 8, keys: 16, values: 24, count: 32, mapFd: 36, elemFlags: 40, flags: 48 } },
  {
    name: "prog load",
    have: sys.ProgLoadAttr,
    want: { size: 144, insnCnt: 4, insns: 8, license: 16, logLevel: 24, logSize: 28, logBuf: 32, progName: 48, expectedAttachType: 68, fdArray: 120, logTrueSize: 140 },
  },
  { name: "btf load", have: sys.BtfLoadAttr, want: { size: 32, btfLogBuf: 8, btfSize: 16, btfLogSize: 20, btfLogLevel: 24 } },
  { name: "obj pin", have: sys.ObjPinAttr, want: { pathname: 0, bpfFd: 8, fileFlags: 12, pathFd: 16 } },
  { name: "obj info", have: sys.ObjInfoAttr, want: { size: 16, bpfFd: 0, infoLen: 4, info: 8 } },
  { name: "prog attach", have: sys.ProgAttachAttr, want: { size: 20, attachType: 8, attachFlags: 12, replaceBpfFd: 16 } },
  { name: "prog query", have: sys.ProgQueryAttr, want: { size: 64, attachFlags: 12, progIds: 16, progCnt: 24, progAttachFlags: 32, linkIds: 40, revision: 56 } },
  { name: "link create (tcx)", have: sys.LinkCreateAttr, want: { size: 32, attachType: 8, flags: 12, relative: 16, expectedRevision: 24 } },
  { name: "link update", have: sys.LinkUpdateAttr, want: { size: 16, newProgFd: 4, oldProgFd: 12 } },
  { name: "get fd by id", have: sys.GetFdByIdAttr, want: { size: 12, openFlags: 8 } },
  { name: "bpf_map_info", have: sys.MapInfoStruct, want: { size: 88, maxEntries: 16, mapFlags: 20, name: 24, btfId: 64, mapExtra: 80 } },
  { name: "bpf_prog_info", have: sys.ProgInfoStruct, want: { size: 232, tag: 8, xlatedProgLen: 20, nrMapIds: 52, name: 64, netnsDev: 88, btfId: 128, runTimeNs: 192, runCnt: 200, verifiedInsns: 216 } },
  { name: "bpf_link_info (cgroup)", have: sys.LinkInfoStruct, want: { size: 64, progId: 8, cgroupId: 16, attachType: 24 } },
];

test("sys: every attr and info struct field at its UAPI offset", () => {
  for (const c of cases) assert.deepEqual(Object.fromEntries(Object.keys(c.want).map((k) => [k, (c.have as Record<string, unknown>)[k]])), c.want, c.name);
  assert.equal(sys.OBJ_PIN_ATTR_SIZE, 20, "offsetofend(path_fd), not the padded size");
});

test("sys: names are char[16] with a NUL", () => {
  const attr = sys.MapCreateAttr.encode({ ...sys.MapCreateAttr.decode(Buffer.alloc(64)), mapName: sys.objName("a_name_longer_than_15") });
  assert.equal(attr.toString("latin1", 28, 44), "a_name_longer_t\0");
  assert.equal(sys.nameText(Buffer.from("abc\0\0junk")), "abc");
});

test("programTypeName: the name of a kernel program type, undefined for one the toolkit does not know", () => {
  assert.equal(programTypeName(13), "SOCK_OPS");
  assert.equal(programTypeName(3), "SCHED_CLS");
  assert.equal(programTypeName(9999), undefined);
});
