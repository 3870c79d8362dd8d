# permessage-deflate checks for spec/deflate_spec.lua, with Debian's python3-websockets (10.4)
# and raw sockets. Prints key=value lines, then done=True.
#   deflate_check.py PORT handshake OFFER...    the answer's Sec-WebSocket-Extensions (or none)
#   deflate_check.py PORT roundtrip N SEED      N random messages echoed byte-identical
#   deflate_check.py PORT mixed N SEED          shared/context/plain subscribers, hash compare
#   deflate_check.py PORT fanout N              N subscribers, one 64 KiB publish
#   deflate_check.py PORT bomb PID              100 MB of zeros: close code and RSS growth
#   deflate_check.py PORT idle N PID OFFER      RSS per idle connection (offer "" for none)
import asyncio, base64, hashlib, os, random, socket, struct, sys, zlib
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

out = {}
MiB = 1 << 20


def handshake(port, offers):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /echo HTTP/1.1", "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
    lines += ["Sec-WebSocket-Extensions: " + o for o in offers if o]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].decode()
    ext = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            ext = value.strip()
    return s, status, ext, rest


def frame(opcode, payload, rsv1=False, fin=True):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return head + mask + masked


def read_close(s, rest, timeout=20):
    s.settimeout(timeout)
    buf = rest
    while True:
        while len(buf) >= 2:
            op, n = buf[0] & 0x0F, buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4: break
                n, off = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10: break
                n, off = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < off + n: break
            payload, buf = buf[off:off + n], buf[off + n:]
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        chunk = s.recv(65536)
        if not chunk:
            return 1006
        buf += chunk


def rss_kib(pid, field="VmRSS"):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def random_message(rng):
    kind = rng.random()
    # Sizes 0 .. 1 MiB, most small: the run stays bounded under ASan.
    r = rng.random()
    size = int(rng.random() * 200) if r < 0.7 else int(rng.random() * 16384) if r < 0.97 \
        else int(rng.random() * MiB)
    words = ["alpha", "beta", "\u00e9t\u00e9", "\u263a", "gamma", "{\"k\":", "12345", " "]
    if kind < 0.5:
        parts, n = [], 0
        while n < size:
            w = words[rng.randrange(len(words))] if rng.random() < 0.8 else chr(rng.randrange(32, 0x3000))
            parts.append(w)
            n += len(w.encode())
        return "".join(parts)
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def fragments(msg, rng):
    cut = sorted(rng.randrange(len(msg) + 1) for _ in range(rng.randrange(1, 4)))
    pieces, last = [], 0
    for c in cut + [len(msg)]:
        pieces.append(msg[last:c])
        last = c
    return pieces


async def roundtrip(port, n, seed):
    rng = random.Random(seed)
    async with websockets.connect("ws://127.0.0.1:%d/echo" % port, max_size=None,
                                  open_timeout=10, close_timeout=10) as ws:
        out["extensions"] = ",".join(e.name for e in ws.extensions)
        ok = 0
        for i in range(n):
            msg = random_message(rng)
            if isinstance(msg, str) and rng.random() < 0.2 and len(msg) > 4:
                # Fragment text on character boundaries.
                chars = list(msg)
                k = len(chars) // 2
                await ws.send(["".join(chars[:k]), "".join(chars[k:])])
            elif isinstance(msg, bytes) and rng.random() < 0.2:
                await ws.send(fragments(msg, rng))
            else:
                await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 30)
            if got == msg:
                ok += 1
            else:
                out["first_mismatch"] = i
                break
        out["ok"] = ok


def mixed_payload(rng, i):
    # JSON-like and repetitive, so that back-references into earlier messages pay off.
    n = rng.choice([10, 50, 200, 2000, 20000])
    body = ",".join('{"id":%d,"user":"user%d","text":"%s"}' % (i, rng.randrange(20),
                    "hello world " * rng.randrange(1, 5)) for _ in range(max(1, n // 60)))
    return ("[" + body + "]")[:max(n, 2)]


async def mixed(port, n, seed):
    rng = random.Random(seed)
    uri = "ws://127.0.0.1:%d/mixed" % port
    kinds = {
        "context": dict(),
        "shared": dict(extensions=[ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True)]),
        "plain": dict(compression=None),
    }
    clients = []
    for k, opts in kinds.items():
        for _ in range(10):
            ws = await websockets.connect(uri, max_size=None, open_timeout=10, **opts)
            clients.append((k, ws))
    for k, ws in clients:
        await ws.send("sub")
        assert await asyncio.wait_for(ws.recv(), 10) == "subscribed"
    for k, ws in clients:
        out["ext_" + k] = ",".join(e.name for e in ws.extensions) or "none"
    driver = clients[0][1]
    expected = hashlib.sha256()
    cmds = []
    for i in range(n):
        p = mixed_payload(rng, i)
        cmds.append(("pub:" if rng.random() < 0.5 else "dm:") + p)
        expected.update(p.encode() + b"\n")
    # Send in batches and read as they come, so that queues stay small.
    hashes = {id(ws): hashlib.sha256() for _, ws in clients}

    async def reader(ws, count):
        for _ in range(count):
            m = await asyncio.wait_for(ws.recv(), 60)
            hashes[id(ws)].update((m if isinstance(m, bytes) else m.encode()) + b"\n")

    tasks = [asyncio.create_task(reader(ws, n)) for _, ws in clients]
    for c in cmds:
        await driver.send(c)
    await asyncio.gather(*tasks)
    want = expected.hexdigest()
    for k in kinds:
        out["match_" + k] = sum(1 for kk, ws in clients if kk == k and hashes[id(ws)].hexdigest() == want)
    for _, ws in clients:
        await ws.close()


async def fanout(port, n):
    uri = "ws://127.0.0.1:%d/mixed" % port
    clients = []
    for _ in range(n):
        clients.append(await websockets.connect(uri, max_size=None, open_timeout=20))
    for ws in clients:
        await ws.send("sub")
    for ws in clients:
        assert await asyncio.wait_for(ws.recv(), 20) == "subscribed"
    msg = ("{\"tick\": 1, \"data\": \"" + "x" * 100 + "\"}") * (65536 // 124)
    await clients[0].send("pub:" + msg)
    got = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 30) for ws in clients))
    out["received"] = sum(1 for g in got if g == msg)
    for ws in clients:
        await ws.close()


def bomb(port, pid):
    s, status, ext, rest = handshake(port, ["permessage-deflate; client_max_window_bits"])
    out["status"] = status.split(" ")[1]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    data = b"".join(c.compress(zeros) for _ in range(100)) + c.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]
    out["compressed_bytes"] = len(data)
    before = rss_kib(pid, "VmHWM")
    s.sendall(frame(2, data, rsv1=True))
    out["close_code"] = read_close(s, rest)
    out["hwm_growth_kib"] = rss_kib(pid, "VmHWM") - before
    s.close()


def zlib_bytes(admin):
    import urllib.request
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read()
    for line in body.decode().split("\n"):
        if line.startswith("moonwire_deflate_memory_bytes "):
            return int(float(line.split()[1]))
    return -1


async def busy(port, n, pid, admin):
    # n context-mode connections, each after one compressed message both ways.
    before = rss_kib(pid)
    clients = []
    msg = '{"type":"chat","room":"general","user":"ada","text":"%s"}' % ("hello world " * 80)
    for _ in range(n):
        ws = await websockets.connect("ws://127.0.0.1:%d/echo" % port, max_size=None,
                                      open_timeout=20)
        await ws.send(msg)
        assert await asyncio.wait_for(ws.recv(), 20) == msg
        clients.append(ws)
    await asyncio.sleep(0.5)
    out["per_conn_bytes"] = (rss_kib(pid) - before) * 1024 // n
    out["zlib_bytes"] = zlib_bytes(admin)
    for ws in clients:
        await ws.close()


def idle(port, n, pid, offer):
    socks = []
    before = rss_kib(pid)
    for _ in range(n):
        s, status, ext, rest = handshake(port, [offer] if offer else [])
        socks.append(s)
        if ext is None and offer:
            out["unanswered"] = out.get("unanswered", 0) + 1
    import time
    time.sleep(0.5)
    out["per_conn_bytes"] = (rss_kib(pid) - before) * 1024 // n
    for s in socks:
        s.close()


port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "handshake":
    s, status, ext, rest = handshake(port, sys.argv[3:])
    out["status"] = status.split(" ")[1]
    out["extensions"] = "none" if ext is None else ext
    s.close()
elif mode == "roundtrip":
    asyncio.run(roundtrip(port, int(sys.argv[3]), int(sys.argv[4])))
elif mode == "mixed":
    asyncio.run(mixed(port, int(sys.argv[3]), int(sys.argv[4])))
elif mode == "fanout":
    asyncio.run(fanout(port, int(sys.argv[3])))
elif mode == "bomb":
    bomb(port, int(sys.argv[3]))
elif mode == "badframe":
    kind = sys.argv[3]
    s, status, ext, rest = handshake(port, ["permessage-deflate"])
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    if kind == "control":
        s.sendall(frame(9, b"", rsv1=True))
    elif kind == "continuation":
        s.sendall(frame(1, b"", rsv1=True, fin=False) + frame(0, b"", rsv1=True))
    elif kind == "garbage":
        s.sendall(frame(2, b"\xff\xff\xff\xff\x00", rsv1=True))
    elif kind == "badutf8":
        data = c.compress(b"ok \xc3\x28 not utf-8") + c.flush(zlib.Z_SYNC_FLUSH)
        s.sendall(frame(1, data[:-4], rsv1=True))
    out["extensions"] = "none" if ext is None else ext
    out["close_code"] = read_close(s, rest)
    s.close()
elif mode == "busy":
    asyncio.run(busy(port, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
elif mode == "idle":
    idle(port, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "")
for k in sorted(out):
    print("%s=%s" % (k, out[k]))
print("done=True")
