/**
 * The toolkit (src/bpf) knows nothing about TOA: this tells it who is using it — tc filters named
 * "toa:<program>", hints that send the user to `toa doctor`. The CLI calls it first thing; the
 * layouts call it too, so the Node API (which has no entry point of its own) gets the same names.
 */
import { setApplication } from "../bpf/errors.js";

export function nameToaToToolkit(): void {
  setApplication({ name: "toa", featureCheck: "toa doctor" });
}
