/**
 * Throwaway cgroup v2 folders for tests. Programs are only ever attached to these, never to the
 * machine's root cgroup. Teardown moves leftover processes out, kills what the test started and
 * removes the folder.
 */
import { mkdirSync, readFileSync, rmdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { findCgroup2Mount } from "../../src/bpf/cgroup.js";
import { uniqueName } from "./privileged.js";

/** A cgroup v2 folder made for one test. */
export interface TestCgroup {
  path: string;
  /** Move a process into it. */
  add(pid: number): void;
  /** Run `fn` with this process inside the cgroup (sockets created then belong to it), then move back. */
  inside<T>(fn: () => Promise<T> | T): Promise<T>;
  remove(): void;
}

/** The cgroup v2 path of this process (the "0::" line of /proc/self/cgroup). */
export function ownCgroup(): string {
  const line = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.startsWith("0::"));
  return join(findCgroup2Mount(), line ? line.slice(3) : "/");
}

/** Create a cgroup folder under the cgroup v2 mount; removed at the end of the test. */
export function createTestCgroup(t: TestContext | undefined, prefix = "toa-test"): TestCgroup {
  const path = join(findCgroup2Mount(), uniqueName(prefix));
  mkdirSync(path);
  const home = ownCgroup();
  const cg: TestCgroup = {
    path,
    add(pid) {
      writeFileSync(join(path, "cgroup.procs"), `${pid}\n`);
    },
    async inside(fn) {
      cg.add(process.pid);
      try {
        return await fn();
      } finally {
        writeFileSync(join(home, "cgroup.procs"), `${process.pid}\n`);
      }
    },
    remove() {
      if (!existsSync(path)) return;
      // Processes left inside keep the folder busy: move them to our own cgroup first.
      const pids = readFileSync(join(path, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
      for (const pid of pids) {
        try {
          writeFileSync(join(home, "cgroup.procs"), `${pid}\n`);
        } catch {
          /* exited meanwhile */
        }
      }
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(path);
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EBUSY") throw e;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
    },
  };
  t?.after(() => cg.remove());
  return cg;
}
