/** `toa load`: build, load, attach and pin the receiver; a second run replaces it in place. */
import { Command } from "commander";
import { UsageError } from "../io.js";
import { cgroupOption, jsonOption, pinDirOption } from "./common.js";
import type { CommandFactory } from "./index.js";

export const loadCommand: CommandFactory = (io, exit) =>
  new Command("load")
    .summary("load the receiver: accept()/getpeername() return the client from the TOA")
    .description(
      "Build the eBPF receiver (sock_ops), the getpeername4/6 rewriters and the NAT64 getsockopt look-up, " +
        "load them, attach them to a cgroup v2 folder and pin them, so they stay after this command exits " +
        "and every application in that cgroup sees client addresses. Running it again with other settings " +
        "swaps the programs atomically: new connections never miss, accepted ones keep their address.",
    )
    .option("--trust <cidrs>", "load balancer source addresses allowed to send a TOA, comma separated (e.g. 100.125.0.0/16,2001:db8::/32); without it every source is believed")
    .option("--kinds <kinds>", "TCP option kinds to accept, comma separated (lengths 8 = IPv4, 20 = IPv6; add 28 for Alibaba CDN's 7/19-byte form without port)", "254,253,200")
    .option("--syn", "also look for the TOA in the SYN, for balancers that write it there only (keeps the SYN's headers per connection until close); on by default only with kind 28 (Alibaba CDN)")
    .option("--no-syn", "don't look for the TOA in the SYN, even with kind 28")
    .addOption(cgroupOption())
    .addOption(pinDirOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      `
Examples:
  toa load --trust 100.125.0.0/16                 # Huawei Cloud ELB, whole host
  toa load --cgroup /sys/fs/cgroup/system.slice/nginx.service --pin-dir /sys/fs/bpf/toa-nginx
  toa load --kinds 200 --trust 10.0.0.0/8         # Tencent CLB / old LVS FULLNAT kind
  toa load --kinds 254,28                          # Alibaba Cloud CDN (kind 28, no port) and 254

Needs root (or CAP_BPF + CAP_NET_ADMIN), cgroup v2 and Linux 5.10+ (or a distribution kernel with the
same eBPF features: \`toa doctor\` checks). The line it prints also goes to the kernel log (dmesg | grep TOA).`,
    )
    .action(async (opts: { trust?: string; kinds: string; syn?: boolean; cgroup?: string; pinDir: string; json?: boolean }) => {
      const { defaultCgroup, loadReceiver } = await import("../../agent/receiver.js");
      const { parseKinds, parseTrust, SettingsError, synDefault } = await import("../../agent/settings.js");
      let settings;
      try {
        const kinds = parseKinds(opts.kinds);
        settings = { cgroup: opts.cgroup ?? defaultCgroup(), pinDir: opts.pinDir, kinds, trust: parseTrust(opts.trust), syn: opts.syn ?? synDefault(kinds) };
      } catch (e) {
        if (e instanceof SettingsError) throw new UsageError(e.message);
        throw e;
      }
      const r = loadReceiver(settings);
      if (opts.json) io.out(JSON.stringify(r, null, 2));
      else {
        io.out(`TOA: ${r.line}`);
        if (settings.trust.length === 0) io.err("warning: no --trust list: any host that reaches this one directly can forge its client address");
        for (const w of r.warnings) io.err(`warning: ${w}`);
      }
      exit(0);
    });
