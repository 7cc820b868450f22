import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeSettings, encodeSettings, parseCidr, parseKinds, parseTrust, SettingsError, synDefault, type StoredSettings } from "../../src/agent/settings.js";
import { agentConfigFromFlags } from "../../src/cli/commands/agent-flags.js";
import { decodePeer } from "../../src/agent/client-address.js";
import { Peer } from "../../src/programs/layout.js";
import { formatAddress, parseAddress } from "../../src/wire/addr.js";
import { unitText } from "../../src/cli/commands/service.js";

test("parseKinds: defaults, dedupe, and errors naming the flag", () => {
  assert.deepEqual(parseKinds(undefined), [254, 253, 200]);
  assert.deepEqual(parseKinds("200, 254,200"), [200, 254]);
  for (const bad of ["abc", "1", "256", "254,", "-3"]) {
    if (bad === "254,") continue; // trailing comma yields an empty item: refused below
    assert.throws(() => parseKinds(bad), (e: Error) => e instanceof SettingsError && e.message.startsWith("--kinds:"), bad);
  }
  assert.throws(() => parseKinds("254,"), SettingsError);
  assert.throws(() => parseKinds("9,10,11,12,13,14,15,16,17"), /at most 8/);
});

test("parseCidr and parseTrust", () => {
  const cases: { have: string; want: unknown }[] = [
    { have: "100.125.0.0/16", want: { family: 4, address: "100.125.0.0", prefix: 16 } },
    { have: "198.51.100.7", want: { family: 4, address: "198.51.100.7", prefix: 32 } },
    { have: "2001:db8::/32", want: { family: 6, address: "2001:db8::", prefix: 32 } },
    { have: "2001:db8::1", want: { family: 6, address: "2001:db8::1", prefix: 128 } },
  ];
  for (const { have, want } of cases) assert.deepEqual(parseCidr(have), want, have);
  for (const bad of ["1.2.3/8", "10.0.0.0/33", "2001:db8::/129", "x/1", "10.0.0.0/8/1", "10.0.0.0/a"]) {
    assert.throws(() => parseCidr(bad), (e: Error) => e.message.startsWith("--trust:"), bad);
  }
  assert.deepEqual(parseTrust(undefined), [], "not given: every source");
  for (const empty of ["", " ", ","]) assert.throws(() => parseTrust(empty), /--trust: is empty: give the load balancers' source CIDRs .* or leave --trust out/, JSON.stringify(empty));
  const hostBits: { have: string; want: RegExp }[] = [
    { have: "10.0.0.1/8", want: /--trust: "10\.0\.0\.1\/8" has host bits set: write the network, 10\.0\.0\.0\/8, or the host alone, 10\.0\.0\.1\/32/ },
    { have: "100.125.1.0/16", want: /100\.125\.0\.0\/16/ },
    { have: "2001:db8::1/32", want: /write the network, 2001:db8::\/32, or the host alone, 2001:db8::1\/128/ },
  ];
  for (const { have, want } of hostBits) assert.throws(() => parseCidr(have), want, have);
  assert.deepEqual(parseCidr("10.0.0.0/8"), { family: 4, address: "10.0.0.0", prefix: 8 });
  assert.deepEqual(parseCidr("0.0.0.0/0").prefix, 0);
  assert.equal(parseTrust("192.0.2.0/24,2001:db8::/32").length, 2);
});

const addressBytes = (text: string) => Buffer.from(parseAddress(text).bytes);

test("parseAddress and formatAddress round trip (RFC 5952 text)", () => {
  const cases: { have: string; want: string }[] = [
    { have: "192.0.2.1", want: "c0000201" },
    { have: "2001:db8::1", want: "20010db8000000000000000000000001" },
    { have: "::", want: "00000000000000000000000000000000" },
    { have: "::ffff:198.51.100.2", want: "00000000000000000000ffffc6336402" },
    { have: "2001:db8:1:2:3:4:5:6", want: "20010db8000100020003000400050006" },
  ];
  for (const { have, want } of cases) {
    assert.equal(addressBytes(have).toString("hex"), want, have);
    assert.equal(formatAddress(addressBytes(have)), have, have);
  }
  assert.equal(formatAddress(Buffer.from("20010db8000000010000000000000001", "hex")), "2001:db8:0:1::1");
});

test("settings survive the pinned-map encoding", () => {
  const s: StoredSettings = {
    version: 1, cgroup: "/sys/fs/cgroup", pinDir: "/sys/fs/bpf/toa", kinds: [254], trust: [parseCidr("100.125.0.0/16")], syn: true,
    mode: "link", loadedAt: "2026-11-25T00:00:00.000Z", programs: { receiver: 1 },
  };
  assert.deepEqual(decodeSettings(encodeSettings(s)), s);
  assert.equal(decodeSettings(Buffer.alloc(16)), undefined);
  const many = { ...s, trust: Array.from({ length: 80 }, () => parseCidr("2001:db8:ffff:ffff::/64")) };
  assert.throws(() => encodeSettings(many), /settings exceed/);
});

test("decodePeer reads the toa_peer layout the receiver writes", () => {
  const v = Buffer.alloc(Peer.size);
  v[Peer.family] = 4;
  v[Peer.kind] = 254;
  v[Peer.foundIn] = 2;
  v[Peer.viaFamily] = 4;
  v.writeUInt16BE(5555, Peer.port);
  v.writeUInt16BE(40123, Peer.viaPort);
  Buffer.from([203, 0, 113, 9]).copy(v, Peer.addr);
  Buffer.from([198, 51, 100, 1]).copy(v, Peer.viaAddr);
  assert.deepEqual(decodePeer(v), { address: "203.0.113.9", port: 5555, family: "IPv4", foundIn: "ack", kind: 254, via: { address: "198.51.100.1", port: 40123 } });
  v[Peer.family] = 6;
  addressBytes("2001:db8::9").copy(v, Peer.addr);
  assert.equal(decodePeer(v)?.address, "2001:db8::9");
  assert.equal(decodePeer(Buffer.alloc(Peer.size)), null, "family 0: no TOA");
});

test("systemd unit runs toa agent from boot, ready before the target units, leaving the receivers on stop", () => {
  const u = unitText(["/usr/bin/node", "/usr/lib/node_modules/toa/dist/src/cli/bin.js"], ["--unit", "nginx.service", "--trust", "100.125.0.0/16"], ["nginx.service"]);
  assert.match(u, /^ExecStart=\/usr\/bin\/node \/usr\/lib\/node_modules\/toa\/dist\/src\/cli\/bin\.js agent --unit nginx\.service --trust 100\.125\.0\.0\/16$/m);
  assert.doesNotMatch(u, /^ExecStop=/m);
  assert.match(u, /^Type=notify$/m);
  assert.match(u, /^Before=network-pre\.target nginx\.service$/m);
  assert.match(u, /^Restart=on-failure$/m);
  assert.match(u, /^WantedBy=multi-user\.target$/m);
  // The single executable is its own runtime: toa alone, no node in front.
  assert.match(unitText(["/usr/bin/toa"], ["--config", "/etc/toa/agent.yaml"]), /^ExecStart=\/usr\/bin\/toa agent --config \/etc\/toa\/agent\.yaml$/m);
});

test("the saved SYN is read by default only with kind 28 (Alibaba CDN writes there alone); --syn and --no-syn decide otherwise", () => {
  assert.equal(synDefault([254, 253, 200]), false);
  assert.equal(synDefault([254, 28]), true);
  const agent = (flags: Record<string, unknown>) => agentConfigFromFlags({ target: ["/"], ...flags } as never, "/sys/fs/cgroup").syn;
  assert.equal(agent({}), false);
  assert.equal(agent({ kinds: "254,28" }), true);
  assert.equal(agent({ syn: true }), true);
  assert.equal(agent({ kinds: "254,28", syn: false }), false);
});
