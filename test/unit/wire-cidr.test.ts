import { test } from "node:test";
import assert from "node:assert/strict";
import { cidrContains, formatCidr, inAnyCidr, parseAddress, parseCidr, parseCidrList, WireError } from "../../src/wire/index.js";

test("parseCidr: networks, bare addresses, and errors a caller can prefix with its flag", () => {
  const cases: { have: string; want: unknown }[] = [
    { have: "100.125.0.0/16", want: { family: 4, address: "100.125.0.0", prefix: 16 } },
    { have: " 198.51.100.7 ", want: { family: 4, address: "198.51.100.7", prefix: 32 } },
    { have: "2001:db8::/32", want: { family: 6, address: "2001:db8::", prefix: 32 } },
    { have: "0.0.0.0/0", want: { family: 4, address: "0.0.0.0", prefix: 0 } },
  ];
  for (const { have, want } of cases) assert.deepEqual(parseCidr(have), want, have);
  const bad: { have: string; want: RegExp }[] = [
    { have: "lb.example", want: /^"lb\.example" is not an address or CIDR: write e\.g\. 100\.125\.0\.0\/16/ },
    { have: "10.0.0.0/8/1", want: /is not an address or CIDR/ },
    { have: "10.0.0.0/33", want: /^"10\.0\.0\.0\/33": prefix length must be 0-32$/ },
    { have: "2001:db8::/a", want: /prefix length must be 0-128/ },
    { have: "10.0.0.1/8", want: /^"10\.0\.0\.1\/8" has host bits set: write the network, 10\.0\.0\.0\/8, or the host alone, 10\.0\.0\.1\/32$/ },
  ];
  for (const { have, want } of bad) {
    assert.throws(() => parseCidr(have), (e: Error) => e instanceof WireError && e.code === "WIRE_ERR_INVALID_ARG" && want.test(e.message), have);
  }
  assert.deepEqual(parseCidr("10.0.0.1/8", { allowHostBits: true }), { family: 4, address: "10.0.0.1", prefix: 8 });
  assert.deepEqual(parseCidrList(" , 192.0.2.0/24,2001:db8::/32,").map(formatCidr), ["192.0.2.0/24", "2001:db8::/32"]);
});

test("cidrContains and inAnyCidr match by prefix bits, never across families", () => {
  const cases: { cidr: string; address: string; want: boolean }[] = [
    { cidr: "100.125.0.0/16", address: "100.125.9.9", want: true },
    { cidr: "100.125.0.0/16", address: "100.126.0.1", want: false },
    { cidr: "10.0.0.1/9", address: "10.127.255.255", want: true },
    { cidr: "10.0.0.1/9", address: "10.128.0.0", want: false },
    { cidr: "0.0.0.0/0", address: "203.0.113.1", want: true },
    { cidr: "0.0.0.0/0", address: "::1", want: false },
    { cidr: "2001:db8::/32", address: "2001:db8:ffff::1", want: true },
    { cidr: "2001:db8::/33", address: "2001:db8:8000::1", want: false },
  ];
  for (const { cidr, address, want } of cases) {
    const c = parseCidr(cidr, { allowHostBits: true });
    assert.equal(cidrContains(c, parseAddress(address).bytes), want, `${cidr} ∋ ${address}`);
    assert.equal(inAnyCidr(address, [c]), want, `${cidr} ∋ ${address}`);
  }
  assert.equal(inAnyCidr("not-an-address", parseCidrList("0.0.0.0/0,::/0")), false);
});
