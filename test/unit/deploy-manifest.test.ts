/**
 * deploy/: no cluster runs here, so the DaemonSet manifest is parsed (yaml) and the agent arguments it
 * names go through the CLI's own validation (`toa agent --check`); the mounts and privileges the
 * agent needs are there; the Dockerfile copies files that exist and runs the bin the package builds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { run } from "../../src/cli/main.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

interface Container {
  name: string;
  command?: string[];
  args?: string[];
  securityContext?: { privileged?: boolean };
  volumeMounts?: { name: string; mountPath: string; mountPropagation?: string }[];
}

test("deploy/toa-agent.yaml: a DaemonSet whose agent arguments pass `toa agent --check`, privileged, with the node's cgroup tree and bpffs", async () => {
  const docs = parseAllDocuments(readFileSync(join(root, "deploy/toa-agent.yaml"), "utf8"));
  for (const d of docs) assert.deepEqual(d.errors, [], "valid YAML");
  const ds = docs.map((d) => d.toJS() as { kind: string; spec: { template: { spec: { hostPID?: boolean; containers: Container[]; volumes: { name: string; hostPath: { path: string } }[] } } } }).find((d) => d.kind === "DaemonSet");
  assert.ok(ds, "a DaemonSet");
  const pod = ds.spec.template.spec;
  const agent = pod.containers.find((c) => c.name === "agent")!;
  assert.equal(agent.command?.at(-1), "toa", "the command ends with the toa executable");
  const args = agent.args ?? [];
  assert.equal(args[0], "agent");
  assert.ok(args.includes("kubepods.slice/**/cri-containerd-*.scope"), "the kubepods glob");
  let out = "";
  const io = { out: (s: string) => void (out += `${s}\n`), err: (s: string) => void (out += `${s}\n`) };
  assert.equal(await run([...args, "--check", "--json"], io), 0, out);
  const summary = JSON.parse(out) as { targets: string[]; trust: string[]; listen: string; pinBase: string };
  assert.deepEqual(summary.targets, ["kubepods.slice/**/cri-containerd-*.scope"]);
  assert.equal(summary.listen, "0.0.0.0:9102");
  assert.ok(summary.trust.length > 0, "a trust list");
  assert.equal(agent.securityContext?.privileged, true);
  assert.equal(pod.hostPID, true, "nsenter --target 1 needs the node's pid 1");
  const mounted = (path: string) => {
    const m = agent.volumeMounts?.find((v) => v.mountPath === path);
    return m && pod.volumes.find((v) => v.name === m.name)?.hostPath.path === path ? m : undefined;
  };
  assert.ok(mounted("/sys/fs/cgroup"), "the node's cgroup v2 tree");
  assert.equal(mounted("/sys/fs/bpf")?.mountPropagation, "Bidirectional", "bpffs, pins visible on the node");
});

test("deploy/Dockerfile copies what exists and runs the bin the package declares", () => {
  const text = readFileSync(join(root, "deploy/Dockerfile"), "utf8");
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin: Record<string, string>; engines: { node: string } };
  assert.match(text, /^FROM node:20/m, `Node ${pkg.engines.node}`);
  assert.match(text, /npm ci /, "built the README's way");
  assert.ok(text.includes(`/opt/toa/${pkg.bin.toa}`), "links the package's bin");
  assert.match(text, /^ENTRYPOINT \["toa"\]/m);
  for (const m of text.matchAll(/^COPY (?!--from)(\S+)/gm)) assert.ok(m[1] === "." || existsSync(join(root, m[1])), m[1]);
  assert.ok(existsSync(join(root, ".dockerignore")), "node_modules and dist stay out of the build context");
});
