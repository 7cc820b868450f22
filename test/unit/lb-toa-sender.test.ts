/** The TOA sender's map codecs (src/lb/sender/toa-sender.ts) against the layout the sender program reads. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LbError } from "../../src/lb/errors.js";
import { senderKey, senderValue } from "../../src/lb/sender/toa-sender.js";
import { SenderKey, SenderValue } from "../../src/programs/layout.js";

test("sender key and value match the layout the sender program builds", () => {
  const k = senderKey({ localAddress: "203.0.113.1", localPort: 40000, remoteAddress: "203.0.113.2", remotePort: 80 });
  assert.equal(k.length, SenderKey.size);
  assert.equal(k.readUInt32LE(SenderKey.family), 2);
  assert.equal(k.readUInt16LE(SenderKey.localPort), 40000, "host order, as skops->local_port");
  assert.equal(k.readUInt16LE(SenderKey.remotePort), 80, "host order after ntohs in the program");
  assert.equal(k.subarray(SenderKey.local, SenderKey.local + 4).toString("hex"), "cb007101");
  assert.equal(senderKey({ localAddress: "2001:db8:2::1", localPort: 1, remoteAddress: "2001:db8:2::2", remotePort: 2 }).readUInt32LE(0), 10);
  const v = senderValue({ address: "198.51.100.2", port: 51234 }, 200, true);
  assert.equal(v.length, SenderValue.size);
  assert.deepEqual([v[SenderValue.kind], v[SenderValue.family], v[SenderValue.flags]], [200, 4, 1]);
  assert.equal(v.readUInt16BE(SenderValue.port), 51234);
  assert.throws(() => senderValue({ address: "not-an-ip", port: 1 }, 254, false), (e: unknown) => e instanceof LbError && e.code === "LB_ERR_INVALID_ARG" && /client address "not-an-ip" is not an IP address/.test(e.message));
  assert.throws(() => senderKey({ localAddress: "203.0.113.1", localPort: 1, remoteAddress: "backend", remotePort: 2 }), /remote address "backend" is not an IP address/);
});
