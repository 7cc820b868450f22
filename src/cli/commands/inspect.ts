/** `toa inspect FILE`: does the load balancer's TOA reach this backend? Reads a capture, reports per connection. */
import { Command, InvalidArgumentError } from "commander";
import { formatSummary, formatTable, inspectFile } from "../../inspect/index.js";
import { type Cidr, CidrError, DEFAULT_TOA_KINDS, parseCidrList, parseToaKinds, type WireError } from "../../wire/index.js";
import { UsageError } from "../io.js";
import type { CommandFactory } from "./index.js";

const PROGRESS_THRESHOLD = 10 * 1024 * 1024;

/** A WireError's message without the "(at byte N)" suffix when the text already names the byte. */
function describe(e: WireError): string {
  const m = e.message.replace(/ \(at byte \d+\)$/, "");
  return e.offset === undefined || e.offset === 0 || m.includes(`byte ${e.offset}`) ? m : e.message;
}

function parseKinds(v: string): number[] {
  try {
    return parseToaKinds(v);
  } catch (e) {
    throw new InvalidArgumentError(`--kinds: ${(e as Error).message}`);
  }
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new InvalidArgumentError("--port must be a port number 1..65535");
  return n;
}

function parseTrust(v: string): Cidr[] {
  try {
    // A capture is only read: an address with host bits set is taken as its network.
    return parseCidrList(v, { allowHostBits: true });
  } catch (e) {
    if (!(e instanceof CidrError)) throw e;
    const input = JSON.stringify(e.input);
    if (e.problem === "prefix-length") throw new InvalidArgumentError(`--trust: ${input} has a bad prefix length (0..${e.maxPrefix})`);
    throw new InvalidArgumentError(`--trust: ${input} is not an address or CIDR prefix (e.g. 100.125.0.0/16)`);
  }
}

const HELP = `
What it looks for:
  For each TCP connection (SYN to FIN/RST) in a capture taken on the backend, whether the packets
  from the load balancer carry a TCP Option Address (TOA): kinds 254, 253, 252, 200 with length 8
  (IPv4 + port) or 20 (IPv6 + port), and Alibaba CDN kind 28 with length 7/19 (no port). It says in
  which packet it was (SYN, handshake ACK, data segment n) and the client address it carries.
  Receivers only read the SYN, the handshake ACK and the first data segment.

Verdicts:
  ok                      an accepted TOA in a packet receivers read
  no-toa                  no TOA from the load balancer at all
  only-in-later-segments  TOA only after the handshake ACK and first data segment: too late
  option-space-full       no TOA and 40 bytes of options used: no room for it
  kind-not-accepted       a TOA whose kind is not in --kinds
  untrusted-source        a TOA from a source outside --trust (anyone could forge it)
  malformed               a TOA kind with a bad length, or a broken options list

Example:
  tcpdump -i eth0 -w cap.pcap 'tcp port 80'      # on the backend, then make a few requests
  toa inspect cap.pcap --port 80 --trust 100.125.0.0/16
  toa inspect cap.pcapng --json | jq '.[] | select(.verdict != "ok")'

Exit code: 0 when every connection is ok, 3 when some are not, 1 on an unreadable capture.`;

/** The `inspect` command. */
export const inspectCommand: CommandFactory = (io, exit) =>
  new Command("inspect")
    .description("report, per TCP connection in a pcap/pcapng capture, whether a TOA arrived and why not")
    .argument("<file>", "capture file (pcap or pcapng, e.g. from tcpdump -w)")
    .option("--kinds <list>", "accepted TOA option kinds", parseKinds, [...DEFAULT_TOA_KINDS])
    .option("--trust <cidrs>", "only trust TOA from these source prefixes, e.g. 100.125.0.0/16,2001:db8::/32", parseTrust)
    .option("--port <n>", "only connections with this port on either side", parsePort)
    .option("--json", "print a JSON array of connection objects")
    .addHelpText("after", HELP)
    .action(async (file: string, o: { kinds: number[]; trust?: Cidr[]; port?: number; json?: boolean }) => {
      let lastTenth = -1;
      const progress = (read: number, size: number): void => {
        if (size <= PROGRESS_THRESHOLD) return;
        const tenth = Math.floor((read / size) * 10);
        if (tenth === lastTenth) return;
        lastTenth = tenth;
        io.err(`inspect: ${Math.round((read / size) * 100)}% of ${(size / 1048576).toFixed(1)} MB`);
      };
      let inspection;
      try {
        inspection = await inspectFile(file, { kinds: o.kinds, trust: o.trust, port: o.port }, progress);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === "ENOENT") throw new UsageError(`${file}: file not found`, 1);
        if (code === "EISDIR") throw new UsageError(`${file}: is a directory, expected a pcap or pcapng file`, 1);
        if (code === "EACCES") throw new UsageError(`${file}: permission denied`, 1);
        throw e;
      }
      const { result, error } = inspection;
      if (error && result.packets === 0) throw new UsageError(`${file}: ${describe(error)}`, 1);
      if (o.json) io.out(JSON.stringify(result.connections, null, 2));
      else {
        if (result.connections.length > 0) io.out(formatTable(result));
        io.out(formatSummary(result));
      }
      if (error) {
        io.err(`toa: ${file}: ${describe(error)}; the report covers the ${result.packets} packets before it`);
        exit(1);
        return;
      }
      exit(result.connections.every((c) => c.verdict === "ok") ? 0 : 3);
    });
