/**
 * A stack frame allocated by name: slots are laid out downwards from r10 in the order they are
 * declared, each aligned to its natural alignment (its size's largest power-of-two factor, at most
 * 8), and the whole must fit the 512 bytes the verifier gives a program (MAX_BPF_STACK).
 *
 *   const S = frame({ key: 40, count: 4, word: { size: 4, align: 8 } });
 *   S.key     // -40: offset from r10, for ldx/stx/st and fp()
 *   S.size    // bytes used
 *
 * Declaring the slots in the order of an existing hand layout reproduces its offsets exactly.
 */
import { AsmError } from "./encode.js";

/** The verifier's stack limit for one frame (include/linux/filter.h MAX_BPF_STACK). */
export const MAX_STACK = 512;

/** A slot: its size in bytes, or the size and an explicit alignment. */
export type SlotSpec = number | { readonly size: number; readonly align: number };

/** Offsets (negative, from r10) by slot name, and the frame's size. */
export type Frame<T> = { readonly [K in keyof T]: number } & { readonly size: number };

const naturalAlign = (size: number) => Math.min(8, size & -size);

/** Lay out `slots` (in declaration order) below r10; throws AsmError beyond {@link MAX_STACK} bytes. */
export function frame<const T extends Record<string, SlotSpec>>(slots: T): Frame<T> {
  const out: Record<string, number> = {};
  let at = 0;
  for (const [name, spec] of Object.entries(slots)) {
    const size = typeof spec === "number" ? spec : spec.size;
    const align = typeof spec === "number" ? naturalAlign(spec) : spec.align;
    if (!Number.isInteger(size) || size <= 0) throw new AsmError(`frame: slot "${name}" has size ${size}, expected a positive integer`);
    if (![1, 2, 4, 8].includes(align)) throw new AsmError(`frame: slot "${name}" has alignment ${align}, expected 1, 2, 4 or 8`);
    at = -Math.ceil((size - at) / align) * align; // down by size, then down to the alignment
    if (-at > MAX_STACK) throw new AsmError(`frame: slot "${name}" ends ${-at} bytes below r10, beyond the ${MAX_STACK}-byte stack`);
    out[name] = at;
  }
  if ("size" in out) throw new AsmError(`frame: "size" is reserved for the frame's size`);
  return Object.freeze({ ...out, size: -at }) as Frame<T>;
}
