#!/usr/bin/python3
"""Play the load balancer with scapy: TCP handshakes to the backend carrying exactly the options a
test asks for, in the SYN, the handshake ACK and/or the first data segment. Run with Debian's python3
(python3-scapy) in the balancer netns, whose kernel must not answer with RSTs (the test drops them).

argv[1]: JSON list of connections, each
  {"src", "dst", "sport", "dport", "synOptions"?, "ackOptions"?, "dataOptions"? (hex of raw option
   bytes, NOP-padded here to a multiple of 4), "noAck"? (the data segment completes the handshake), "moreSegments"? ([{options, data}] sent after it),
   "data"? (default "hello\\n")}
Prints one JSON list: [{"sport", "reply": text the server sent back or null, "error"?}].
"""
import json
import sys
import threading
import time

# The layers it uses, not scapy.all: importing every layer took 36-54 s under the kernel matrix's TCG.
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw
from scapy.sendrecv import AsyncSniffer, send, sr1
from scapy.config import conf

conf.verb = 0


def pad(opts: bytes) -> bytes:
    return b"\x01" * (-len(opts) % 4) + opts


def segment(ip, c, flags, seq, ack, opts: bytes, payload: bytes = b""):
    """A TCP segment with raw option bytes: the fixed header, then options + payload as Raw."""
    opts = pad(opts)
    if len(opts) > 40:
        raise ValueError("options longer than 40 bytes")
    return ip / TCP(sport=c["sport"], dport=c["dport"], flags=flags, seq=seq, ack=ack, window=65535,
                    dataofs=5 + len(opts) // 4) / Raw(opts + payload)


# Payload the servers sent, per scapy source port (segments may repeat: we never ACK them).
replies = {}


def collect(p):
    if p.haslayer(TCP) and p[TCP].dport in replies:
        payload = bytes(p[TCP].payload)
        if payload and payload not in replies[p[TCP].dport]:
            replies[p[TCP].dport] += payload


def one(c):
    v6 = ":" in c["dst"]
    ip = IPv6(src=c["src"], dst=c["dst"]) if v6 else IP(src=c["src"], dst=c["dst"])
    mss = b"\x02\x04\x05\x78"  # MSS 1400
    syn_opts = mss + bytes.fromhex(c.get("synOptions", ""))
    synack = sr1(segment(ip, c, "S", 1000, 0, syn_opts), timeout=5)
    if synack is None or not synack.haslayer(TCP) or (int(synack[TCP].flags) & 0x12) != 0x12:
        return {"sport": c["sport"], "reply": None, "error": "no SYN-ACK"}
    ack = synack[TCP].seq + 1
    data = c.get("data", "hello\n").encode()
    replies.setdefault(c["sport"], b"")
    if not c.get("noAck"):
        send(segment(ip, c, "A", 1001, ack, bytes.fromhex(c.get("ackOptions", ""))))
    send(segment(ip, c, "PA", 1001, ack, bytes.fromhex(c.get("dataOptions", "")), data))
    # Further data segments in order, each with its own options ("moreSegments": [{options, data}]).
    seq = 1001 + len(data)
    for m in c.get("moreSegments", []):
        more = m.get("data", "x\n").encode()
        send(segment(ip, c, "PA", seq, ack, bytes.fromhex(m.get("options", "")), more))
        seq += len(more)
    deadline = time.time() + 5
    while time.time() < deadline and b"\n" not in replies[c["sport"]]:
        time.sleep(0.02)
    reply = replies[c["sport"]]
    # Tell the server we're gone.
    send(ip / TCP(sport=c["sport"], dport=c["dport"], flags="RA", seq=seq, ack=ack))
    text = reply.decode(errors="replace")
    return {"sport": c["sport"], "reply": text if text else None}


def main():
    conns = json.loads(sys.argv[1])
    # One sniffer for every connection, on the interfaces towards the servers.
    ifaces = sorted({(conf.route6.route(c["dst"]) if ":" in c["dst"] else conf.route.route(c["dst"]))[0] for c in conns})
    started = threading.Event()
    sniffer = AsyncSniffer(iface=ifaces, prn=collect, store=False, started_callback=started.set)
    sniffer.start()
    if not started.wait(5):
        sys.exit("the sniffer did not start")
    out = []
    for c in conns:
        try:
            out.append(one(c))
        except Exception as e:  # report, keep going
            out.append({"sport": c.get("sport"), "reply": None, "error": repr(e)})
    sniffer.stop()
    print(json.dumps(out))


main()
