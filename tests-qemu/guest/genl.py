#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A raw generic netlink client for tests, independent of rdrbdadm.

    genl.py cmd FAMILY CMD [ATTR=TYPE:VALUE ...]   send one request, print replies, exit with
                                                   the errno (0 on success)
    genl.py fuzz FAMILY COUNT [SEED]               send COUNT random or malformed requests
    genl.py join FAMILY GROUP                      join the multicast group GROUP, exit with the
                                                   errno of NETLINK_ADD_MEMBERSHIP (0 on success)
    genl.py cleanup FAMILY MINORS [RES ...]        secondary, detach, del-minor for minors
                                                   0..MINORS-1, then del-resource for each RES
                                                   (default r0; drbd_rs numbering)

Attribute syntax: 2=u32:0, 1=str:r0, 6=flag:, 4=u8:1, 7=u64:5, 3=raw:0a0b (hex).
The fuzzer mixes valid-looking requests with wrong types, lengths, nesting, truncated headers,
unknown commands and attributes, and garbage. It prints a summary of the errnos it got back.
"""

import errno
import os
import random
import socket
import struct
import sys

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2
NETLINK_ADD_MEMBERSHIP = 1
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11


def attr(t, payload):
    hdr = struct.pack("=HH", 4 + len(payload), t)
    pad = b"\0" * ((4 - len(payload) % 4) % 4)
    return hdr + payload + pad


def message(family, cmd, attrs=b"", seq=1, flags=NLM_F_REQUEST | NLM_F_ACK, version=1):
    body = struct.pack("=BBH", cmd, version, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), family, flags, seq, 0) + body


def parse_attrs(data):
    out = {}
    while len(data) >= 4:
        ln, t = struct.unpack_from("=HH", data)
        if ln < 4 or ln > len(data):
            break
        out[t & 0x3FFF] = data[4:ln]
        data = data[(ln + 3) & ~3:]
    return out


class Genl:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.bind((0, 0))
        self.sock.settimeout(10)
        self.seq = 100

    def transact(self, raw):
        """Send raw bytes; return (errno, ext_msg, replies)."""
        self.sock.send(raw)
        replies = []
        while True:
            data = self.sock.recv(65536)
            while len(data) >= 16:
                ln, typ, flags, seq, pid = struct.unpack_from("=IHHII", data)
                if ln < 16 or ln > len(data):
                    return (-1, "bad reply framing", replies)
                payload = data[16:ln]
                data = data[(ln + 3) & ~3:]
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", payload)[0]
                    msg = None
                    if flags & 0x200:  # NLM_F_ACK_TLVS
                        skip = 4 + (16 if flags & 0x100 else struct.unpack_from("=I", payload, 4)[0])
                        tl = parse_attrs(payload[skip:])
                        if 1 in tl:
                            msg = tl[1].rstrip(b"\0").decode(errors="replace")
                    return (-err, msg, replies)
                replies.append((typ, payload))

    def family_attrs(self, name):
        self.seq += 1
        err, msg, replies = self.transact(
            message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"),
                    seq=self.seq))
        if err:
            sys.exit(f"genl: family {name}: {os.strerror(err)}")
        return parse_attrs(replies[0][1][4:])

    def family(self, name):
        return struct.unpack("=H", self.family_attrs(name)[CTRL_ATTR_FAMILY_ID][:2])[0]

    def group(self, family, name):
        """The id of multicast group `name` of `family`."""
        groups = parse_attrs(self.family_attrs(family).get(CTRL_ATTR_MCAST_GROUPS, b""))
        for nested in groups.values():
            g = parse_attrs(nested)
            if g.get(CTRL_ATTR_MCAST_GRP_NAME, b"").rstrip(b"\0") == name.encode():
                return struct.unpack("=I", g[CTRL_ATTR_MCAST_GRP_ID][:4])[0]
        sys.exit(f"genl: family {family} has no multicast group {name}")


def encode(spec):
    t, _, rest = spec.partition("=")
    kind, _, value = rest.partition(":")
    t = int(t)
    if kind == "u8":
        return attr(t, struct.pack("=B", int(value)))
    if kind == "u32":
        return attr(t, struct.pack("=I", int(value)))
    if kind == "u64":
        return attr(t, struct.pack("=Q", int(value)))
    if kind == "str":
        return attr(t, value.encode() + b"\0")
    if kind == "flag":
        return attr(t, b"")
    if kind == "raw":
        return attr(t, bytes.fromhex(value))
    raise SystemExit(f"genl: bad attribute spec {spec!r}")


def cmd_main(args):
    g = Genl()
    fam = g.family(args[0])
    attrs = b"".join(encode(a) for a in args[2:])
    err, msg, replies = g.transact(message(fam, int(args[1]), attrs))
    for typ, payload in replies:
        cmd = payload[0]
        fields = parse_attrs(payload[4:])
        print(f"reply cmd={cmd} " + " ".join(f"{k}={v.hex()}" for k, v in sorted(fields.items())))
    print(f"result: {err} ({errno.errorcode.get(err, 'OK') if err else 'OK'}) {msg or ''}".rstrip())
    return err


def join_main(args):
    g = Genl()
    grp = g.group(args[0], args[1])
    try:
        g.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, grp)
    except OSError as e:
        print(f"join {args[0]}/{args[1]} (group {grp}): {errno.errorcode.get(e.errno, e.errno)}")
        return e.errno
    print(f"join {args[0]}/{args[1]} (group {grp}): OK")
    return 0


def random_attr(rng):
    t = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 200, 0x3FFF, 0x8002])
    kind = rng.randrange(8)
    if kind == 0:
        payload = b""
    elif kind == 1:
        payload = struct.pack("=I", rng.choice([0, 1, 7, 31, 32, 255, 2**31, 2**32 - 1]))
    elif kind == 2:
        payload = rng.choice([b"r0\0", b"/dev/vda\0", b"\0", b"x" * 300 + b"\0", b"no-nul", b"/dev/null\0"])
    elif kind == 3:
        payload = bytes([rng.randrange(256)])
    elif kind == 4:
        payload = struct.pack("=Q", rng.getrandbits(64))
    elif kind == 5:
        payload = os.urandom(rng.randrange(0, 64))
    elif kind == 6:  # a nested attribute with random inner attributes
        payload = b"".join(random_attr(rng) for _ in range(rng.randrange(3)))
    else:
        payload = os.urandom(rng.randrange(0, 8))
    raw = attr(t, payload)
    if rng.random() < 0.1:  # lie about the length
        raw = struct.pack("=HH", rng.randrange(0, 0x10000), t) + raw[4:]
    return raw


def drain(sock):
    """Collect the errnos of every ack already queued (the kernel handles a request inside
    sendmsg(), so its answers are queued when send() returns); requests the kernel drops
    silently (no NLM_F_REQUEST, truncated) simply have none."""
    errs = []
    # Python waits for readability (up to the timeout) before recv() on a socket with a
    # timeout, MSG_DONTWAIT or not: switch to non-blocking mode while draining.
    timeout = sock.gettimeout()
    sock.setblocking(False)
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            sock.settimeout(timeout)
            return errs
        while len(data) >= 16:
            ln, typ = struct.unpack_from("=IH", data)
            if ln < 16 or ln > len(data):
                break
            if typ == NLMSG_ERROR:
                errs.append(-struct.unpack_from("=i", data, 16)[0])
            data = data[(ln + 3) & ~3:]


def fuzz_main(args):
    g = Genl()
    fam = g.family(args[0])
    count = int(args[1])
    rng = random.Random(int(args[2]) if len(args) > 2 else 1)
    seen = {}
    sent = 0
    while sent < count:
        # Several requests per datagram, as netlink allows; the kernel parses them in turn.
        batch = []
        for _ in range(min(rng.randrange(1, 9), count - sent)):
            cmd = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 99, 255])
            attrs = b"".join(random_attr(rng) for _ in range(rng.randrange(6)))
            raw = message(fam, cmd, attrs, seq=1000 + sent, version=rng.choice([0, 1, 2]),
                          flags=rng.choice([NLM_F_REQUEST | NLM_F_ACK, NLM_F_REQUEST, 0, 0x305]))
            mode = rng.random()
            if mode < 0.05:
                raw = raw[: rng.randrange(1, len(raw))]  # truncated
            elif mode < 0.08:
                raw = os.urandom(rng.randrange(16, 128))  # garbage
            elif mode < 0.10:
                raw = struct.pack("=I", len(raw) + rng.randrange(1, 64)) + raw[4:]  # overlong
            batch.append(raw)
            sent += 1
        try:
            g.sock.send(b"".join(batch))
        except OSError as e:
            seen[-e.errno] = seen.get(-e.errno, 0) + 1
        for err in drain(g.sock):
            seen[err] = seen.get(err, 0) + 1
    # The family must still answer normally afterwards.
    err, _, _ = g.transact(message(fam, 10, b""))
    names = {k: ("OK" if k == 0 else errno.errorcode.get(k, str(k))) for k in seen}
    print("fuzz: %d requests; answers: %s; status afterwards: %s" % (count, ", ".join(
        f"{names[k]}={v}" for k, v in sorted(seen.items(), key=lambda kv: -kv[1])),
        "OK" if err == 0 else err))
    return 0 if err == 0 else 1


def cleanup_main(args):
    g = Genl()
    fam = g.family(args[0])
    for minor in range(int(args[1])):
        for cmd in (9, 7, 5):  # secondary, detach, del-minor
            g.transact(message(fam, cmd, attr(2, struct.pack("=I", minor))))
    for name in args[2:] or ["r0"]:
        g.transact(message(fam, 3, attr(1, name.encode() + b"\0")))  # del-resource
    return 0


if __name__ == "__main__":
    modes = {"cmd": cmd_main, "fuzz": fuzz_main, "cleanup": cleanup_main, "join": join_main}
    if len(sys.argv) < 3 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    sys.exit(modes[sys.argv[1]](sys.argv[2:]))
