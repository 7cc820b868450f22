/**
 * `read()` at most once per `ms`: a Prometheus scrape asks every metric family in turn within
 * microseconds, and each family needs the same snapshot (kernel counters, balancer state).
 */
export function freshFor<T>(ms: number, read: () => T): () => T {
  let value: T;
  let at = -Infinity;
  return () => {
    const now = Date.now();
    if (now - at > ms) {
      value = read();
      at = now;
    }
    return value;
  };
}
