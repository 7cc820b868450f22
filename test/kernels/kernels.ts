/**
 * The kernels of the matrix: Debian's own kernel packages, booted under qemu, plus the machine's own
 * kernel (the "host" leg runs the same files without a VM). Debian 11/12/13 carry the LTS kernels that
 * RHEL 8/9, Ubuntu 22.04/24.04, Amazon Linux 2023 and openEuler 22.03 are built around.
 */
export interface KernelTarget {
  /** Short id used on the command line and in tables ("5.10"). */
  id: string;
  /** What it stands for, for tables and docs. */
  label: string;
  /** Debian suite whose linux-image package is booted; absent for the host leg. */
  suite?: string;
  /** Debian's name for the kernel's architecture; arm64 legs boot qemu-system-aarch64 (run-kernel.sh). */
  arch: "amd64" | "arm64";
}

export const KERNELS: readonly KernelTarget[] = [
  { id: "5.10", label: "Debian 11 bullseye", suite: "bullseye", arch: "amd64" },
  { id: "6.1", label: "Debian 12 bookworm", suite: "bookworm", arch: "amd64" },
  { id: "6.12", label: "Debian 13 trixie", suite: "trixie", arch: "amd64" },
  { id: "6.1-arm64", label: "Debian 12 bookworm, arm64", suite: "bookworm", arch: "arm64" },
  { id: "6.12-arm64", label: "Debian 13 trixie, arm64", suite: "trixie", arch: "arm64" },
  { id: "host", label: "this machine", arch: "amd64" },
];

/**
 * Resolve a comma list of ids ("5.10,host"), "all", "amd64" (the x86-64 kernels and the host) or
 * "arm64" (the arm64 kernels); throws naming the unknown id.
 */
export function selectKernels(list: string): KernelTarget[] {
  if (list === "all") return [...KERNELS];
  if (list === "arm64") return KERNELS.filter((k) => k.arch === "arm64");
  if (list === "amd64") return KERNELS.filter((k) => k.arch === "amd64");
  return list.split(",").map((id) => {
    const k = KERNELS.find((x) => x.id === id.trim() || x.suite === id.trim());
    if (!k) throw new Error(`--kernels: unknown kernel "${id}"; choose from ${KERNELS.map((x) => x.id).join(", ")}; or the groups amd64, arm64 or all`);
    return k;
  });
}
