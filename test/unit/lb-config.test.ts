/** Config validation: good configs become frozen objects, bad ones name the file, the field and what is allowed. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { loadConfigFile, validateConfig } from "../../src/lb/config.js";
import { ConfigError } from "../../src/lb/errors.js";
import { parseEndpoint } from "../../src/lb/endpoint.js";
import { rawConfigFromFlags } from "../../src/lb/flags.js";

const good = () => ({
  admin: "127.0.0.1:9100",
  timeouts: { connect: "2s", idle: "5m" },
  listeners: [{ name: "web", listen: "198.51.100.1:80", pool: "web", mode: "proxy-v2" }],
  pools: {
    web: {
      scheduler: "weighted-round-robin",
      backends: ["203.0.113.10:80", { address: "[2001:db8:2::10]:80", weight: 3 }],
      healthCheck: { type: "http", path: "/healthz", interval: "1s", rise: 2, fall: 2 },
    },
  },
});

test("a good config is validated into a frozen object with defaults", () => {
  const c = validateConfig(good(), "lb.yaml");
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.listeners[0]) && Object.isFrozen(c.pools.web.backends[1]));
  assert.equal(c.listeners[0].connectTimeoutMs, 2000);
  assert.equal(c.listeners[0].idleTimeoutMs, 300_000);
  assert.equal(c.listeners[0].toaKind, 254);
  assert.equal(c.pools.web.backends[1].id, "[2001:db8:2::10]:80");
  assert.equal(c.pools.web.backends[1].weight, 3);
  assert.equal(c.pools.web.healthCheck?.expectStatus, 200);
  assert.equal(c.pools.web.healthCheck?.timeoutMs, 1000);
  assert.deepEqual(c.admin, { address: "127.0.0.1", port: 9100, family: 4 });
  assert.equal(c.drainTimeoutMs, 30_000);
});

test("mode defaults to toa with kind 254", () => {
  const c = validateConfig({ listeners: [{ listen: "[::]:8080" }], pools: { p: { backends: ["203.0.113.1:80"] } } }, "x");
  assert.equal(c.listeners[0].mode, "toa");
  assert.equal(c.listeners[0].pool, "p");
  assert.equal(c.listeners[0].listen.family, 6);
});

type Mutate = (c: ReturnType<typeof good>) => void;
const bad: { name: string; have: Mutate | unknown; want: RegExp }[] = [
  { name: "weight zero", have: (c: any) => (c.pools.web.backends[1].weight = 0), want: /^lb\.yaml: pools\.web\.backends\[1\]\.weight: must be an integer 1\.\.256, got 0$/m },
  { name: "unknown scheduler", have: (c: any) => (c.pools.web.scheduler = "random"), want: /pools\.web\.scheduler: must be one of round-robin, weighted-round-robin, least-connections, source-hash; got "random"/ },
  { name: "unknown mode", have: (c: any) => (c.listeners[0].mode = "toa2"), want: /listeners\[0\]\.mode: must be one of toa, proxy-v1, proxy-v2, none; got "toa2"/ },
  { name: "v6 without brackets", have: (c: any) => (c.listeners[0].listen = "2001:db8::1:80"), want: /listeners\[0\]\.listen: IPv6 addresses need brackets/ },
  { name: "port out of range", have: (c: any) => (c.pools.web.backends[0] = "203.0.113.10:70000"), want: /pools\.web\.backends\[0\]: port 70000 is not in 1\.\.65535/ },
  { name: "no port", have: (c: any) => (c.pools.web.backends[0] = "203.0.113.10"), want: /backends\[0\]: expected ADDR:PORT.*\(no port\)/ },
  { name: "hostname", have: (c: any) => (c.pools.web.backends[0] = "web1:80"), want: /backends\[0\]: "web1" is not an IPv4 address/ },
  { name: "missing pool", have: (c: any) => (c.listeners[0].pool = "api"), want: /listeners\[0\]\.pool: no pool named "api"; defined: web/ },
  { name: "typo field", have: (c: any) => (c.pools.web.shceduler = "round-robin"), want: /pools\.web\.shceduler: unknown field; allowed here: scheduler, backends/ },
  { name: "bad duration", have: (c: any) => (c.timeouts.connect = "soon"), want: /timeouts\.connect: expected a duration such as 500ms/ },
  { name: "health type", have: (c: any) => (c.pools.web.healthCheck.type = "icmp"), want: /pools\.web\.healthCheck\.type: must be one of tcp, http/ },
  { name: "health timeout > interval", have: (c: any) => (c.pools.web.healthCheck.timeout = "5s"), want: /healthCheck\.timeout: must not exceed interval \(1000ms\)/ },
  { name: "empty backends", have: (c: any) => (c.pools.web.backends = []), want: /pools\.web\.backends: must be a non-empty list/ },
  { name: "no listeners", have: (c: any) => delete c.listeners, want: /listeners: must be a non-empty list of listeners, got nothing/ },
  { name: "toaKind out of range", have: (c: any) => ((c.listeners[0].mode = "toa"), (c.listeners[0].toaKind = 300)), want: /listeners\[0\]\.toaKind: must be an integer 2\.\.255, got 300/ },
  { name: "toaKind with proxy mode", have: (c: any) => (c.listeners[0].toaKind = 200), want: /listeners\[0\]\.toaKind: only used with mode toa/ },
  { name: "duplicate listen", have: (c: any) => c.listeners.push({ name: "b", listen: "198.51.100.1:80", pool: "web" }), want: /listeners\[1\]\.listen: 198\.51\.100\.1:80 is already used by listeners\[0\]/ },
  { name: "duplicate backend", have: (c: any) => c.pools.web.backends.push("203.0.113.10:80"), want: /backends\[2\]: duplicate backend 203\.0\.113\.10:80/ },
  { name: "source address family", have: (c: any) => (c.pools.web.sourceAddresses = ["203.0.113.1"]), want: /pools\.web\.sourceAddresses: has no IPv6 address for backend \[2001:db8:2::10\]:80/ },
  { name: "source ports", have: (c: any) => (c.pools.web.sourcePorts = "80-90"), want: /pools\.web\.sourcePorts: must be a range FIRST-LAST within 1024-65535/ },
  { name: "admin port clash", have: (c: any) => (c.admin = "0.0.0.0:80"), want: /admin: port 80 is also used by a listener/ },
  { name: "top level not a mapping", have: [1, 2], want: /^lb\.yaml: \(top level\): must be a mapping, got a list$/ },
];

for (const { name, have, want } of bad) {
  test(`bad config is refused: ${name}`, () => {
    let raw: unknown = have;
    if (typeof have === "function") {
      const c = good();
      (have as Mutate)(c);
      raw = c;
    }
    assert.throws(
      () => validateConfig(raw, "lb.yaml"),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.code, "LB_ERR_CONFIG");
        assert.match(e.message, want);
        return true;
      },
    );
  });
}

test("every issue is reported, one a line", () => {
  const c: any = good();
  c.pools.web.scheduler = "x";
  c.listeners[0].mode = "y";
  assert.throws(() => validateConfig(c, "f.yaml"), (e: ConfigError) => e.issues.length === 2 && e.message.split("\n").length === 2);
});

test("a YAML file is read, and YAML errors name the file", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lb-config-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ok = join(dir, "ok.yaml");
  writeFileSync(ok, "listeners:\n  - listen: 198.51.100.1:80\n    mode: none\npools:\n  web:\n    backends: [203.0.113.10:80]\n");
  assert.equal(loadConfigFile(ok).listeners[0].mode, "none");
  const broken = join(dir, "broken.yaml");
  writeFileSync(broken, "listeners: [\n");
  assert.throws(() => loadConfigFile(broken), { message: new RegExp(`^${broken}: \\(top level\\): not valid YAML: .* at line 2`) });
  assert.throws(() => loadConfigFile(join(dir, "nope.yaml")), /nope\.yaml: \(top level\): cannot read/);
});

test("flags build the same config as a file", () => {
  const raw = rawConfigFromFlags({
    listen: ["198.51.100.1:80", "[2001:db8:1::1]:80"],
    backend: ["203.0.113.10:80", "203.0.113.11:80*3"],
    mode: "proxy-v1",
    scheduler: "weighted-round-robin",
    health: "http:/healthz=204",
    connectTimeout: "500",
    admin: "127.0.0.1:9100",
  });
  const c = validateConfig(raw, "command line");
  assert.equal(c.listeners.length, 2);
  assert.equal(c.listeners[1].listen.address, "2001:db8:1::1");
  assert.equal(c.listeners[0].connectTimeoutMs, 500);
  assert.equal(c.pools.default.backends[1].weight, 3);
  assert.deepEqual([c.pools.default.healthCheck?.type, c.pools.default.healthCheck?.path, c.pools.default.healthCheck?.expectStatus], ["http", "/healthz", 204]);
  assert.throws(() => validateConfig(rawConfigFromFlags({ listen: ["198.51.100.1:80"], backend: ["203.0.113.1:80*0"] }), "command line"), /command line: pools\.default\.backends\[0\]\.weight: must be an integer 1\.\.256, got 0/);
});

test("endpoints", () => {
  const table: { have: string; want: unknown }[] = [
    { have: "198.51.100.1:80", want: { address: "198.51.100.1", port: 80, family: 4 } },
    { have: "[2001:db8::1]:443", want: { address: "2001:db8::1", port: 443, family: 6 } },
    { have: "*:80", want: { address: "0.0.0.0", port: 80, family: 4 } },
    { have: "[::]:80", want: { address: "::", port: 80, family: 6 } },
    { have: "[198.51.100.1]:80", want: /not an IPv6 address/ },
    { have: "198.51.100.1:0", want: /not in 1\.\.65535/ },
  ];
  for (const { have, want } of table) {
    const got = parseEndpoint(have);
    if (want instanceof RegExp) assert.match(got as string, want, have);
    else assert.deepEqual(got, want, have);
  }
});

test("dataPath: global default js, per-listener override, bad and removed values refused with the way out", () => {
  const pools = { p: { backends: ["192.0.2.1:80"] } };
  const c = validateConfig({ dataPath: "js", listeners: [{ listen: "192.0.2.2:80", mode: "none" }, { listen: "192.0.2.2:81", mode: "none", dataPath: "packet" }], pools }, "t");
  assert.deepEqual(c.listeners.map((l) => l.dataPath), ["js", "packet"]);
  assert.equal(validateConfig({ listeners: [{ listen: "192.0.2.2:80" }], pools }, "t").listeners[0].dataPath, "js");
  assert.throws(() => validateConfig({ dataPath: "fast", listeners: [{ listen: "192.0.2.2:80" }], pools }, "t"), /dataPath: must be one of packet, js; got "fast"/);
  assert.throws(() => validateConfig({ dataPath: "kernel", listeners: [{ listen: "192.0.2.2:80" }], pools }, "t"), /dataPath: "kernel" is no longer a data path: the sockmap relay was removed: .* use packet \(modes toa, proxy-v2, none\) or js/);
  assert.throws(() => validateConfig({ listeners: [{ listen: "192.0.2.2:80", dataPath: "auto" }], pools }, "t"), /listeners\[0\]\.dataPath: "auto" is no longer a data path/);
});

test("the YAML blocks of docs/lb.md are configs toa lb accepts (the reference stays true)", () => {
  // dist/test/unit → the repository's docs/lb.md.
  const doc = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "../../../docs/lb.md"), "utf8");
  const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 1, "docs/lb.md has YAML examples");
  const reference = blocks[0];
  const c = validateConfig(parseYaml(reference), "docs/lb.md");
  assert.deepEqual(c.listeners.map((l) => l.name), ["web", "web6"]);
  // The packet block is a fragment: it is valid merged into the reference, with IPv4 backends only.
  const packet = parseYaml(blocks.find((b) => b.startsWith("dataPath: packet"))!) as Record<string, unknown>;
  const merged = { ...(parseYaml(reference) as Record<string, unknown>), ...packet };
  (merged.pools as { web: { backends: unknown[] } }).web.backends = ["203.0.113.10:80"];
  (merged.listeners as unknown[]).splice(1);
  assert.equal(validateConfig(merged, "docs/lb.md").listeners[0].dataPath, "packet");
});
