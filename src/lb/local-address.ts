/**
 * The local address a backend connection comes from in `toa` mode: one of the pool's
 * `sourceAddresses` (same family as the backend, taken in turn), else the source address the kernel's
 * routing picks for that backend, found with a throwaway UDP connect() (no packet is sent).
 */
import { createSocket } from "node:dgram";
import { isIP } from "node:net";

/** Ask the routing table which local address reaches `address` (cached by the caller). */
export function routeSource(address: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket(isIP(address) === 6 ? "udp6" : "udp4");
    s.once("error", (e) => {
      s.close();
      reject(e);
    });
    s.connect(port, address, () => {
      const local = s.address().address;
      s.close();
      resolve(local);
    });
  });
}

/** Chooses local addresses for one pool. */
export class LocalAddressPicker {
  private next = 0;
  private readonly routeCache = new Map<string, Promise<string>>();
  constructor(private readonly sourceAddresses: readonly string[]) {}

  /** A local address of the backend's family. */
  pick(backend: { address: string; port: number; family: 4 | 6 }): Promise<string> {
    const fit = this.sourceAddresses.filter((a) => isIP(a) === backend.family);
    if (fit.length > 0) return Promise.resolve(fit[this.next++ % fit.length]);
    const key = backend.address;
    let p = this.routeCache.get(key);
    if (!p) {
      p = routeSource(backend.address, backend.port);
      p.catch(() => this.routeCache.delete(key));
      this.routeCache.set(key, p);
    }
    return p;
  }
}
