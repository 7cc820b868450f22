/**
 * Python programs for the SYN-flood test and bench: an echo server, and a sender of spoofed SYNs.
 */

/** A line echo server on argv[1]:argv[2], one thread per connection; prints "listening". */
export const ECHO_SERVER_PY = `
import socket, sys, threading
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(4096)
print("listening", flush=True)
def serve(c):
    try:
        f = c.makefile("rb")
        for line in f: c.sendall(line)
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/**
 * Spoofed IPv4 SYNs to argv[1]:argv[2]: argv[4] of them, from random hosts of the /24 in argv[3] and
 * random ports, in 20 bursts spread over argv[5] seconds (bounded in count and time). A raw socket
 * with our own IP header: the kernel fills in the IP checksum. Prints {"sent", "seconds"}.
 */
export const SYN_FLOOD_PY = `
import json, random, socket, struct, sys, time
dst, dport, prefix, count, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
net = prefix.rsplit(".", 1)[0]
dst_b = socket.inet_aton(dst)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def csum(b):
    if len(b) % 2: b += b"\\0"
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n >> 16: n = (n & 0xffff) + (n >> 16)
    return ~n & 0xffff
def syn():
    src = socket.inet_aton("%s.%d" % (net, random.randint(1, 254)))
    tcp = struct.pack("!HHIIBBHHH", random.randint(1024, 65535), dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst_b + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, 6, 0, src, dst_b)
    return ip + tcp
bursts = 20
t0 = time.time(); sent = 0
for b in range(bursts):
    for i in range(count * (b + 1) // bursts - count * b // bursts):
        s.sendto(syn(), (dst, 0)); sent += 1
    wait = t0 + seconds * (b + 1) / bursts - time.time()
    if wait > 0: time.sleep(wait)
print(json.dumps({"sent": sent, "seconds": time.time() - t0}))
`;
