/**
 * Jump labels from a per-function factory: `const L = labels("flow", ["found", "miss"] as const)`
 * gives `L.found`, `L.miss`, and `L.fuond` is a type error. Every call makes fresh names (a counter
 * goes into them), so a routine expanded inline several times never collides with itself; the names
 * only show in listings, the encoded bytes don't depend on them.
 */

let expansions = 0;

/** Label names by key, unique to this expansion. */
export type Labels<N extends string> = { readonly [K in N]: string };

/** Fresh labels `scope.n.name` for each of `names`. */
export function labels<const N extends readonly string[]>(scope: string, names: N): Labels<N[number]> {
  const n = expansions++;
  return Object.freeze(Object.fromEntries(names.map((name) => [name, `${scope}.${n}.${name}`]))) as Labels<N[number]>;
}

/**
 * Labels indexed by a number, for unrolled loops: `const step = labelSeries(L.step)`, then
 * `label(step(i))` and `ja(step(i + 1))`.
 */
export function labelSeries(base: string): (i: number) => string {
  return (i) => `${base}.${i}`;
}
