/**
 * Helper calls as one expression: `call("map_lookup_elem", "nat_flows", fp(S.key))` is
 * `r0 = bpf_map_lookup_elem(&nat_flows, fp + S.key)`. Each argument is moved into r1, r2, … in
 * order:
 *
 *   Register          r<i> = reg       (nothing when it is r<i> already: computed in place)
 *   number            r<i> = imm
 *   string            r<i> = &map      (ld_imm64 with the map's fd, resolved at load time)
 *   ptr(base, off)    r<i> = base; r<i> += off   (always both, so `off` may be 0 in a loop)
 *   fp(off)           ptr(r10, off): a pointer into the stack frame
 *   mem(size, b, off) r<i> = *(size *)(b + off): a value loaded from memory (a parked spill)
 */
import { AsmError } from "./encode.js";
import { Helper, type HelperName } from "./helpers.js";
import { add, callInsn, FP, type Instruction, ldMap, ldx, mov, type Register, R1, R2, R3, R4, R5 } from "./instruction.js";
import { type SizeName } from "./opcodes.js";

/** `base + off` as a helper argument: a pointer into the stack (base r10) or into memory a register points at. */
export interface Pointer {
  readonly kind: "ptr";
  readonly base: Register;
  readonly off: number;
}

/** `base + off`, for {@link call}. */
export const ptr = (base: Register, off: number): Pointer => Object.freeze({ kind: "ptr", base, off });
/** `r10 + off`: a stack slot's address, for {@link call}. */
export const fp = (off: number): Pointer => ptr(FP, off);

/** `*(size *)(base + off)` as a helper argument. */
export interface Load {
  readonly kind: "mem";
  readonly size: SizeName;
  readonly base: Register;
  readonly off: number;
}

/** `*(size *)(base + off)`, for {@link call}. */
export const mem = (size: SizeName, base: Register, off: number): Load => Object.freeze({ kind: "mem", size, base, off });

/** One helper argument: a register, an immediate, a map (by name), a pointer or a load. */
export type Arg = Register | number | string | Pointer | Load;

const ARGS = [R1, R2, R3, R4, R5] as const;

function source(a: Arg): Register | undefined {
  if (typeof a !== "object") return undefined;
  return a.kind === "reg" ? a : a.base;
}

/** The moves that put `args` into r1..r5. Throws when a later argument reads a register an earlier move overwrote. */
export function moveArgs(helper: string, args: readonly Arg[]): Instruction[] {
  if (args.length > ARGS.length) throw new AsmError(`call ${helper}: ${args.length} arguments, helpers take at most 5`);
  const out: Instruction[] = [];
  args.forEach((a, i) => {
    const dst = ARGS[i]!;
    const src = source(a);
    if (src !== undefined && src.n >= 1 && src.n < dst.n) {
      throw new AsmError(`call ${helper}: argument ${i + 1} reads r${src.n}, already overwritten by argument ${src.n}`);
    }
    if (typeof a === "number") out.push(mov(dst, a));
    else if (typeof a === "string") out.push(ldMap(dst, a));
    else if (a.kind === "reg") {
      if (a.n !== dst.n) out.push(mov(dst, a));
    } else if (a.kind === "mem") out.push(ldx(a.size, dst, a.base, a.off));
    else out.push(mov(dst, a.base), add(dst, a.off));
  });
  return out;
}

/** `r0 = helper()` : the call instruction alone (arguments already in r1..r5). Clobbers r1..r5. */
export function call(helper: HelperName | number): Instruction;
/** `r0 = helper(args…)`: the argument moves into r1..r5, then the call. Clobbers r1..r5. */
export function call(helper: HelperName | number, ...args: [Arg, ...Arg[]]): Instruction[];
export function call(helper: HelperName | number, ...args: Arg[]): Instruction | Instruction[] {
  if (args.length === 0) return callInsn(helper);
  const name = typeof helper === "number" ? `#${helper}` : helper;
  if (typeof helper === "string" && !(helper in Helper)) throw new AsmError(`call: unknown helper "${helper}"`);
  return [...moveArgs(name, args), callInsn(helper)];
}
