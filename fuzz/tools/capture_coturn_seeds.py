#!/usr/bin/env python3
"""Capture real coturn responses on loopback as fuzz seeds (fuzz/corpus_seed/coturn/).

Starts `turnserver` on 127.0.0.1 (user test:secret, realm lab, default peer policy), runs
Binding, an unauthenticated Allocate (401 with REALM/NONCE), an authenticated Allocate,
CreatePermission toward 127.0.0.1 (403) and 10.0.0.1, ChannelBind, a Refresh LIFETIME 0, and
writes every response as one file. Also writes `tcp-stream.bin`, the same responses back to back
with padded ChannelData frames between them, as a seed for the stream reassemblers.

    python3 fuzz/tools/capture_coturn_seeds.py fuzz/corpus_seed/coturn
"""
import hashlib, hmac, os, socket, struct, subprocess, sys, tempfile, time, zlib

COOKIE = 0x2112A442


def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * ((4 - len(v) % 4) % 4)


def xaddr(ip, port, tid):
    packed = socket.inet_pton(socket.AF_INET, ip)
    x = bytes(a ^ b for a, b in zip(packed, struct.pack("!I", COOKIE)))
    return struct.pack("!BBH", 0, 1, port ^ (COOKIE >> 16)) + x


def message(mtype, tid, attrs, key=None):
    body = b"".join(attrs)
    if key is not None:
        head = struct.pack("!HHI", mtype, len(body) + 24, COOKIE) + tid
        mac = hmac.new(key, head + body, hashlib.sha1).digest()
        body += attr(0x0008, mac)
    head = struct.pack("!HHI", mtype, len(body) + 8, COOKIE) + tid
    crc = (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
    return head + body + attr(0x8028, struct.pack("!I", crc))


def attrs_of(msg):
    out, i = {}, 20
    while i + 4 <= len(msg):
        t, n = struct.unpack("!HH", msg[i : i + 4])
        out.setdefault(t, msg[i + 4 : i + 4 + n])
        i += 4 + n + ((4 - n % 4) % 4)
    return out


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    tmp = tempfile.mkdtemp()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--no-tls",
         "--no-dtls", "--no-cli", "--fingerprint", "--lt-cred-mech", "--user=test:secret",
         "--realm=lab", f"--userdb={tmp}/db", f"--pidfile={tmp}/pid", f"--log-file={tmp}/log",
         "--no-stdout-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(0.2)
        server = ("127.0.0.1", port)
        n = [0]

        def ask(mtype, attrs, key=None):
            n[0] += 1
            tid = struct.pack("!III", 0x51EED000 + n[0], n[0], 7)
            req = message(mtype, tid, attrs, key)
            for _ in range(50):
                c.sendto(req, server)
                try:
                    return c.recv(65536)
                except socket.timeout:
                    continue
            raise SystemExit("coturn did not answer")

        seeds = {}
        seeds["binding-success"] = ask(0x0001, [])
        r401 = ask(0x0003, [attr(0x0019, b"\x11\0\0\0")])
        seeds["allocate-401-realm-nonce"] = r401
        a = attrs_of(r401)
        realm, nonce = a[0x0014], a[0x0015]
        key = hashlib.md5(b"test:" + realm + b":secret").digest()
        auth = [attr(0x0006, b"test"), attr(0x0014, realm), attr(0x0015, nonce)]
        seeds["allocate-success"] = ask(0x0003, [attr(0x0019, b"\x11\0\0\0")] + auth, key)
        tid0 = b"\0" * 12
        seeds["create-permission-403"] = ask(0x0008, [attr(0x0012, xaddr("127.0.0.1", 9, tid0))] + auth, key)
        seeds["create-permission-success"] = ask(0x0008, [attr(0x0012, xaddr("10.0.0.1", 9, tid0))] + auth, key)
        seeds["channel-bind-success"] = ask(0x0009, [attr(0x000C, b"\x40\x00\0\0"), attr(0x0012, xaddr("10.0.0.1", 9, tid0))] + auth, key)
        seeds["refresh-0-success"] = ask(0x0004, [attr(0x000D, b"\0\0\0\0")] + auth, key)
        stream = b""
        for name, msg in seeds.items():
            with open(os.path.join(outdir, name + ".bin"), "wb") as f:
                f.write(msg)
            stream += msg + b"\x40\x00\x00\x05hello\0\0\0"
        with open(os.path.join(outdir, "tcp-stream.bin"), "wb") as f:
            f.write(stream)
        print(f"wrote {len(seeds) + 1} seeds to {outdir}")
    finally:
        srv.kill()
        srv.wait()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus_seed/coturn")
