/**
 * Statistics the benches share: the median of per-round figures, and how far that median can be
 * trusted.
 *
 * The machines these benches run on are shared and noisy: per-round figures are skewed and have
 * outliers, so a mean and a normal-theory interval would mislead. medianInterval() is the
 * distribution-free interval of the median from order statistics (the sign-test interval): with n
 * independent rounds, the true median lies between the j-th smallest and the j-th largest figure
 * with probability 1 − 2·P(Bin(n, ½) ≤ j − 1), whatever the figures' distribution.
 */

/** The median (the mean of the two middle figures for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** P(X ≤ k) for X ~ Bin(n, ½). */
function binomialHalfCdf(n: number, k: number): number {
  let term = Math.pow(0.5, n); // P(X = 0)
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += term;
    term = (term * (n - i)) / (i + 1);
  }
  return sum;
}

export interface MedianInterval {
  low: number;
  high: number;
  /** The interval's actual coverage (order statistics give discrete levels, at least the one asked). */
  confidence: number;
}

/**
 * The narrowest order-statistic interval that covers the median with at least `confidence`, or
 * undefined when there are too few figures for that (fewer than 6 at 95%).
 */
export function medianInterval(xs: readonly number[], confidence = 0.95): MedianInterval | undefined {
  const n = xs.length;
  const s = [...xs].sort((a, b) => a - b);
  let best: MedianInterval | undefined;
  // j-th smallest and j-th largest (1-based): the larger j, the narrower the interval.
  for (let j = 1; j <= Math.ceil(n / 2); j++) {
    const coverage = 1 - 2 * binomialHalfCdf(n, j - 1);
    if (coverage < confidence) break;
    best = { low: s[j - 1], high: s[n - j], confidence: coverage };
  }
  return best;
}

/**
 * "met", "**missed**" or "undecided" for a goal of `≥ goal` on a median with interval `ci`: met only
 * when the whole interval is at or above the goal, missed when it is all below.
 */
export function verdictAtLeast(m: number, ci: MedianInterval | undefined, goal: number): string {
  if (!ci) return m >= goal ? "met (too few rounds for an interval)" : "**missed** (too few rounds for an interval)";
  if (ci.low >= goal) return "met";
  if (ci.high < goal) return "**missed**";
  return `undecided: the median's interval spans ${goal}`;
}
