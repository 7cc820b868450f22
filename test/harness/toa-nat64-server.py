#!/usr/bin/python3
"""A server patched for DPVS/elb-toa/Tencent NAT64, as such applications are: an AF_INET listener
that, for each line received, answers (and logs) one JSON line with getpeername() and the client
read with getsockopt(fd, IPPROTO_IP, 4096 /* TOA_SO_GET_LOOKUP */) as
struct toa_nat64_peer { struct in6_addr saddr; uint16_t sport; } (port in network order).

argv: bind address, port. Started inside the backend netns and the receiver's cgroup.
"""
import ipaddress
import json
import socket
import struct
import sys
import threading

TOA_SO_GET_LOOKUP = 4096


def nat64_peer(conn):
    try:
        raw = conn.getsockopt(socket.IPPROTO_IP, TOA_SO_GET_LOOKUP, 20)
    except OSError as e:
        return None, f"getsockopt: {e.strerror} (errno {e.errno})"
    if len(raw) < 18:
        return None, f"getsockopt returned {len(raw)} bytes"
    addr = str(ipaddress.IPv6Address(raw[:16]))
    (port,) = struct.unpack("!H", raw[16:18])
    return {"address": addr, "port": port}, None


def serve(conn):
    buf = b""
    with conn:
        while True:
            d = conn.recv(4096)
            if not d:
                return
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                host, port = conn.getpeername()
                nat64, err = nat64_peer(conn)
                reply = {"peer": {"address": host, "port": port, "family": "IPv4"}, "remoteAddress": host, "remotePort": port,
                         "client": None, "nat64": nat64, "line": line.decode(errors="replace")}
                if err:
                    reply["clientError"] = err
                text = json.dumps(reply)
                print(text, flush=True)
                conn.sendall(text.encode() + b"\n")


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(64)
    print(json.dumps({"event": "ready"}), flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
