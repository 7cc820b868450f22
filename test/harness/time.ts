/**
 * One factor for every wait of the privileged tests. The kernel matrix runs them under qemu's TCG
 * emulation, several times slower than the host; it sets TOA_TEST_TIME_FACTOR (4 by default) instead
 * of every timeout being loosened for everyone. Unset, the factor is 1.
 */
const raw = process.env.TOA_TEST_TIME_FACTOR;
export const TIME_FACTOR = raw === undefined || raw === "" ? 1 : Number(raw);
if (!(TIME_FACTOR >= 1)) throw new Error(`TOA_TEST_TIME_FACTOR must be a number >= 1, got ${JSON.stringify(raw)}`);

/** `ms` scaled by the time factor. */
export function scaled(ms: number): number {
  return Math.round(ms * TIME_FACTOR);
}
