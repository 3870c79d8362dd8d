#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets into spec/fuzz/corpus/<target>/seed-*.

The seeds are committed; run this again only after changing it (it overwrites seed-* files and
leaves the inputs libFuzzer found alone). Each target's input starts with a few bytes of settings
(see the comment at the top of its spec/fuzz/fuzz_<target>.c); the helpers below write them."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Split plans (spec/fuzz/fuzz.h): a byte below 0x80 is a piece of byte+1 bytes.
WHOLE = bytes([0xFF] * 8)                    # pieces of 2033 bytes: everything at once
BYTES = bytes([0] * 8)                       # one byte at a time
MIXED = bytes([2, 0, 10, 0x81, 0, 5, 30, 1])
PLANS = {"whole": WHOLE, "bytes": BYTES, "mixed": MIXED}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- HTTP -----------------------------------------------------------------------------------

def http_input(head, max_headers=16, max_len=0, plan=WHOLE):
    """max_len 0: 65536; else max_len // 16 steps of 16."""
    if isinstance(head, str):
        head = head.encode("latin-1")
    return bytes([max_headers, max_len // 16]) + plan + head


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(extra="", key=KEY, version="13", method="GET", target="/chat", proto="HTTP/1.1",
            host="example.com"):
    lines = [f"{method} {target} {proto}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    head = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return head


HTTP_SEEDS = {
    "upgrade-minimal": upgrade(),
    "upgrade-browser": (
        "GET /chat?room=lobby&name=ann HTTP/1.1\r\n"
        "Host: chat.example.com:8080\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
        "Accept: */*\r\n"
        "Accept-Language: en-US,en;q=0.5\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Origin: https://chat.example.com\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Cookie: session=abc123\r\n"
        "Pragma: no-cache\r\n"
        "Cache-Control: no-cache\r\n"
        "Upgrade: websocket\r\n"
        "\r\n"),
    "upgrade-lists-split": upgrade("Connection: keep-alive\r\nUpgrade: h2c\r\n"
                                   "Sec-WebSocket-Protocol: a,,b ,\tc\r\n"),
    "upgrade-case": upgrade().replace("Upgrade: websocket", "uPgRaDe: WebSocket")
                             .replace("Connection: Upgrade", "CONNECTION:  upgrade \t"),
    "upgrade-with-body": upgrade() + "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    "upgrade-http10": upgrade(proto="HTTP/1.0"),
    "upgrade-no-host": upgrade(host=None),
    "upgrade-empty-host": upgrade(host=""),
    "upgrade-two-hosts": upgrade("Host: other.example\r\n"),
    "upgrade-no-key": upgrade(key=None),
    "upgrade-two-keys": upgrade(f"Sec-WebSocket-Key: {KEY}\r\n"),
    "upgrade-key-short": upgrade(key="dGhlIHNhbXBsZSBub25jZQ="),
    "upgrade-key-pad-inside": upgrade(key="dGhlIHNhbXBs=SBub25jZQ=="),
    "upgrade-key-bad-char": upgrade(key="dGhlIHNhbXBs*SBub25jZQ=="),
    "upgrade-key-base64url": upgrade(key="dGhlIHNhbXBs-SBub25jZQ=="),
    "upgrade-key-base64url-2": upgrade(key="dGhlIHNhbXBs_SBub25jZQ=="),
    "upgrade-version-8": upgrade(version="8"),
    "upgrade-no-version": upgrade(version=None),
    "upgrade-post": upgrade(method="POST"),
    "upgrade-lowercase-get": upgrade(method="get"),
    "upgrade-no-connection-token": upgrade().replace("Connection: Upgrade", "Connection: close"),
    "upgrade-origin-null": upgrade("Origin: null\r\n"),
    "upgrade-two-origins": upgrade("Origin: https://a.example\r\nOrigin: https://b.example\r\n"),
    "get-plain": "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: text/html\r\n\r\n",
    "head-plain": "HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "get-http10-no-host": "GET / HTTP/1.0\r\n\r\n",
    "get-http09": "GET /\r\n\r\n",
    "http2": "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "http-version-junk": "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
    "bare-lf": "GET / HTTP/1.1\nHost: a\n\n",
    "bare-lf-late": "GET / HTTP/1.1\r\nHost: a\r\nX: y\n\r\n",
    "stray-cr": "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    "stray-cr-request-line": "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
    "obs-fold": "GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n",
    "space-before-colon": "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "empty-name": "GET / HTTP/1.1\r\n: a\r\n\r\n",
    "no-colon": "GET / HTTP/1.1\r\nHost a\r\n\r\n",
    "control-in-value": "GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
    "del-in-value": "GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n",
    "obs-text-value": "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n",
    "empty-value": "GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY: \t \r\n\r\n",
    # Absolute-form targets (RFC 7230 section 5.3.2): accepted with a served scheme, the Host
    # field then ignored for the target's authority; refused when malformed.
    "absolute-target": "GET http://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-upgrade-ws": upgrade(target="ws://example.com:8080/chat?room=1"),
    "absolute-upgrade-wss-upper": upgrade(target="WSS://Example.COM/chat"),
    "absolute-upgrade-https-empty-path": upgrade(target="https://example.com"),
    "absolute-upgrade-query-no-path": upgrade(target="ws://example.com?room=1"),
    "absolute-upgrade-ipv6": upgrade(target="ws://[::1]:8080/chat", host="[::1]:8080"),
    "absolute-upgrade-other-host": upgrade("Origin: http://foreign.example\r\n",
                                           target="ws://foreign.example/chat"),
    "absolute-upgrade-no-host": upgrade(target="ws://example.com/chat", host=None),
    "absolute-http10-no-host": "GET http://example.com/old HTTP/1.0\r\n\r\n",
    "absolute-escape-in-host": "GET http://ex%41mple.com:1/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-bad-scheme": upgrade(target="ftp://example.com/chat"),
    "absolute-no-authority": upgrade(target="ws:///chat"),
    "absolute-no-slashes": upgrade(target="ws:example.com/chat"),
    "absolute-userinfo": upgrade(target="ws://user:pass@example.com/chat"),
    "absolute-fragment": upgrade(target="ws://example.com/chat#top"),
    "absolute-port-too-big": upgrade(target="ws://example.com:65536/chat"),
    "absolute-empty-port": upgrade(target="ws://example.com:/chat"),
    "absolute-ipv6-unclosed": upgrade(target="ws://[::1:8080/chat"),
    "absolute-bad-escape": upgrade(target="ws://ex%4/chat"),
    "asterisk-target": "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "two-spaces": "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "tab-separator": "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "only-blank-line": "\r\n\r\n",
    "leading-crlf": "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "incomplete": "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: webso",
    "incomplete-cr": "GET / HTTP/1.1\r\nHost: a\r\n\r",
    "empty": "",
}


def http_seeds():
    for name, head in HTTP_SEEDS.items():
        write("http", name, http_input(head))
    # The same heads in pieces.
    for name in ("upgrade-minimal", "upgrade-browser", "bare-lf-late", "incomplete-cr",
                 "absolute-upgrade-ws"):
        write("http", name + "-bytes", http_input(HTTP_SEEDS[name], plan=BYTES))
        write("http", name + "-mixed", http_input(HTTP_SEEDS[name], plan=MIXED))
    # Limits: too many fields, and a head longer than max_len (exactly at and just past it).
    write("http", "too-many-fields", http_input(upgrade(), max_headers=3))
    write("http", "fields-exactly-max", http_input(upgrade(), max_headers=5))
    head = upgrade()
    write("http", "too-large", http_input(head + "X" * 40, max_len=len(head) // 16 * 16))
    exact = "GET / HTTP/1.1\r\nHost: a\r\nX: " + "y" * 10 + "\r\n\r\n"
    pad = 64 - len(exact)
    exact = exact.replace("X: ", "X: " + "z" * pad)
    assert len(exact) == 64
    write("http", "head-exactly-max-len", http_input(exact, max_len=64))
    write("http", "head-exactly-max-len-bytes", http_input(exact, max_len=64, plan=BYTES))
    write("http", "head-one-past-max-len", http_input(exact.replace("X: ", "X: z"), max_len=64))


# ---- Frames ---------------------------------------------------------------------------------

MASKS = [b"\x37\xfa\x21\x3d", b"\x00\x00\x00\x00", b"\xff\x01\x80\x7f", b"\x12\x34\x56\x78"]


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None, masked=True, length=None,
          encoding=None, n=[0]):
    """A client frame. length: the declared length (default: the payload's); encoding: force
    7, 16 or 64-bit length encoding."""
    if isinstance(payload, str):
        payload = payload.encode()
    if mask is None:
        mask = MASKS[n[0] % len(MASKS)]
        n[0] += 1
    declared = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    enc = encoding or (7 if declared < 126 else 16 if declared <= 0xFFFF else 64)
    m = 0x80 if masked else 0
    if enc == 7:
        head = bytes([b0, m | declared])
    elif enc == 16:
        head = bytes([b0, m | 126]) + struct.pack(">H", declared)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", declared)
    if not masked:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def close(code=None, reason=b""):
    if code is None:
        return frame(CLOSE)
    if isinstance(reason, str):
        reason = reason.encode()
    return frame(CLOSE, struct.pack(">H", code) + reason)


def frames_input(stream, max_message=0, rsv=0, pause=0, plan=WHOLE):
    """max_message: 0 for no limit; otherwise written as base << shift with base < 2^16."""
    shift = 0
    while max_message >> shift >= 1 << 16:
        shift += 1
    assert (max_message >> shift) << shift == max_message, "max_message not representable"
    base = max_message >> shift
    return struct.pack("<H", base) + bytes([shift, rsv, pause]) + plan + stream


FRAME_SEEDS = {
    "text": frame(TEXT, "Hello"),
    "binary": frame(BINARY, bytes(range(256))),
    "empty-text": frame(TEXT),
    "empty-binary": frame(BINARY),
    "text-utf8": frame(TEXT, "Grüße, 世界 🌍"),
    "text-16bit": frame(TEXT, "x" * 300),
    "binary-64bit-partial": frame(BINARY, bytes(100), length=70000)[:14 + 100],
    "fragmented": frame(TEXT, "Hel", fin=False) + frame(CONT, "lo ", fin=False)
    + frame(CONT, "world"),
    "fragmented-ping-between": frame(TEXT, "Hel", fin=False) + frame(PING, "p")
    + frame(CONT, "lo", fin=False) + frame(PONG) + frame(CONT, "!"),
    "fragmented-empty-parts": frame(BINARY, fin=False) + frame(CONT, "a", fin=False)
    + frame(CONT, fin=False) + frame(CONT),
    "fragmented-utf8-split": frame(TEXT, "€".encode()[:1], fin=False)
    + frame(CONT, "€".encode()[1:2], fin=False) + frame(CONT, "€".encode()[2:] + b"!"),
    "fragment-ends-mid-char": frame(TEXT, "€".encode()[:2]),
    "text-invalid-utf8": frame(TEXT, b"abc\xff"),
    "text-overlong": frame(TEXT, b"\xc0\xaf"),
    "text-surrogate": frame(TEXT, b"\xed\xa0\x80"),
    "text-above-max": frame(TEXT, b"\xf4\x90\x80\x80"),
    "ping-pong": frame(PING, "are you there") + frame(PONG, "yes") + frame(PING, b"\x00" * 125),
    "close-normal": close(1000, "bye"),
    "close-empty": close(),
    "close-then-data": close(1001) + frame(TEXT, "after"),
    "close-one-byte": frame(CLOSE, b"\x03"),
    "close-bad-code": close(1005),
    "close-code-999": close(999),
    "close-code-1015": close(1015),
    "close-code-3000": close(3000, "registered"),
    "close-code-4999": close(4999, "private"),
    "close-code-5000": close(5000),
    "close-bad-reason": close(1000, b"\xe2\x82"),
    "close-long-reason": close(1000, "r" * 123),
    "control-too-long": frame(PING, b"x" * 126),
    "control-fragmented": frame(PING, "x", fin=False),
    "control-16bit-len": frame(PONG, b"x" * 10, length=10, encoding=16),
    "unmasked": frame(TEXT, "x", masked=False),
    "rsv1-no-extension": frame(TEXT, "x", rsv=0x40),
    "rsv2": frame(TEXT, "x", rsv=0x20),
    "reserved-opcode-3": frame(3, "x"),
    "reserved-opcode-b": frame(0xB, "x"),
    "continuation-first": frame(CONT, "x"),
    "new-message-inside-fragmented": frame(TEXT, "a", fin=False) + frame(BINARY, "b"),
    "16bit-not-shortest": frame(BINARY, b"x" * 10, encoding=16),
    "64bit-not-shortest": frame(BINARY, b"x" * 10, encoding=64),
    "16bit-for-125": frame(BINARY, b"x" * 125, encoding=16),
    "16bit-for-126": frame(BINARY, b"x" * 126, encoding=16),
    "64bit-for-65535": frame(BINARY, length=65535, encoding=64)[:14] + b"x" * 10,
    "64bit-for-65536": frame(BINARY, length=65536, encoding=64)[:14] + b"x" * 10,
    "64bit-top-bit": frame(BINARY, length=1 << 63)[:14],
    "64bit-huge": frame(BINARY, length=(1 << 63) - 1)[:14] + b"abc",
    "header-only": frame(TEXT, "hello")[:4],
    "garbage": b"\x00\x01\x02\x03\xfe\xff",
    "many-small": b"".join(frame(TEXT if i % 2 else BINARY, "m%d" % i) for i in range(20)),
}


def frames_seeds():
    for name, stream in FRAME_SEEDS.items():
        write("frames", name, frames_input(stream))
    for name in ("fragmented-ping-between", "fragmented-utf8-split", "close-then-data",
                 "text-16bit", "text-invalid-utf8", "many-small"):
        s = FRAME_SEEDS[name]
        write("frames", name + "-bytes", frames_input(s, plan=BYTES))
        write("frames", name + "-mixed", frames_input(s, plan=MIXED))
        write("frames", name + "-pause", frames_input(s, plan=MIXED, pause=1))
    write("frames", "many-small-pause3", frames_input(FRAME_SEEDS["many-small"], pause=3))
    # The size limit: a message just at and just over it, whole and fragmented.
    write("frames", "max-exact", frames_input(frame(BINARY, b"x" * 16), max_message=16))
    write("frames", "max-over", frames_input(frame(BINARY, b"x" * 17), max_message=16))
    write("frames", "max-over-fragmented",
          frames_input(frame(TEXT, "x" * 10, fin=False) + frame(CONT, "y" * 7), max_message=16))
    write("frames", "max-control-ignored", frames_input(frame(PING, "p" * 100), max_message=16))
    write("frames", "max-64bit", frames_input(frame(BINARY, length=1 << 40)[:14],
                                              max_message=1 << 40))
    # Reserved bits an extension negotiated.
    write("frames", "rsv1-negotiated",
          frames_input(frame(TEXT, "x", rsv=0x40, fin=False) + frame(CONT, "y"), rsv=0x40))
    write("frames", "rsv1-on-continuation",
          frames_input(frame(TEXT, "x", fin=False) + frame(CONT, "y", rsv=0x40), rsv=0x40))
    write("frames", "rsv1-on-control", frames_input(frame(PING, "x", rsv=0x40), rsv=0x40))


# ---- UTF-8 ----------------------------------------------------------------------------------

UTF8_SEEDS = {
    "empty": b"",
    "ascii": b"Hello, world! " * 4,
    "mixed": "Grüße, Καλημέρα, こんにちは, 🌍🚀, ∑∞".encode(),
    "boundaries": b"".join(chr(c).encode() for c in (
        0x7F, 0x80, 0x7FF, 0x800, 0xFFF, 0x1000, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000,
        0x3FFFF, 0x40000, 0xFFFFF, 0x100000, 0x10FFFF)),
    "overlong-2": b"\xc0\x80",
    "overlong-c1": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\x80",
    "overlong-3-top": b"\xe0\x9f\xbf",
    "overlong-4": b"\xf0\x80\x80\x80",
    "overlong-4-top": b"\xf0\x8f\xbf\xbf",
    "surrogate-low": b"\xed\xa0\x80",
    "surrogate-high": b"\xed\xbf\xbf",
    "above-max": b"\xf4\x90\x80\x80",
    "f5": b"\xf5\x80\x80\x80",
    "ff": b"ab\xff",
    "stray-continuation": b"a\x80b",
    "truncated-2": b"abc\xc3",
    "truncated-3": b"abc\xe2\x82",
    "truncated-4": b"abc\xf0\x9f\x98",
    "lead-then-ascii": b"\xe2a\x82\xac",
    "ascii-block-then-bad": b"abcdefghijklmnop\x80",
    "ascii-block-with-euro": b"abcdefg\xe2\x82\xacabcdefghijklmnop",
    "char-across-word": b"abcdef\xf0\x9f\x98\x80abcdefgh",
}


def utf8_input(text, plan=WHOLE, code=1000):
    # The first two plan bytes double as the close code ws_close_build gets.
    plan = struct.pack(">H", code) + plan[2:]
    return plan + text


def utf8_seeds():
    for name, text in UTF8_SEEDS.items():
        write("utf8", name, utf8_input(text))
    for name in ("mixed", "boundaries", "truncated-4", "ascii-block-with-euro", "char-across-word"):
        write("utf8", name + "-bytes", utf8_input(UTF8_SEEDS[name], plan=BYTES, code=0))
        write("utf8", name + "-mixed", utf8_input(UTF8_SEEDS[name], plan=MIXED, code=4000))
    long_reason = ("é" * 70).encode()  # 140 bytes: cut to 123 at a character boundary
    write("utf8", "close-reason-cut", utf8_input(long_reason, code=1001))
    write("utf8", "close-code-invalid", utf8_input(b"reason", code=1005))


# ---- Origin ---------------------------------------------------------------------------------

ORIGIN_SEEDS = {
    "exact": (0, "https://example.com", "https://example.com", "example.com"),
    "port": (0, "http://localhost:8080", "http://localhost:8080", "localhost:8080"),
    "wildcard": (0, "https://*.Example.com", "https://chat.example.com", "example.com"),
    "wildcard-parent": (0, "https://*.example.com", "https://example.com", "example.com"),
    "wildcard-twice": (0, "https://*.*.example.com", "https://a.b.example.com", "x"),
    "star-inside": (0, "https://a*.example.com", "https://ab.example.com", "x"),
    "ipv6": (0, "http://[::1]:9000", "http://[::1]:9000", "[::1]:9000"),
    "ipv6-default-port": (0, "https://[2001:db8::1]", "https://[2001:db8::1]:443", "[2001:db8::1]"),
    "default-port-explicit": (0, "https://example.com:443", "https://example.com", "example.com"),
    "ws-scheme": (0, "wss://example.com", "wss://EXAMPLE.com", "example.com:443"),
    "other-scheme-needs-port": (0, "chrome-extension://abc", "chrome-extension://abc", "x"),
    "other-scheme-port": (0, "app+x.y-z://host:1", "app+x.y-z://host:1", "host:1"),
    "null-origin": (0, "https://example.com", "null", "null"),
    "no-origin": (2, "https://example.com", "", "example.com"),
    "no-origin-required": (3, "https://example.com", "", "example.com"),
    "path-in-origin": (0, "https://example.com/", "https://example.com/", "example.com"),
    "userinfo": (0, "https://u@example.com", "https://u@example.com", "example.com"),
    "port-zero": (0, "http://a:0", "http://a:0", "a:0"),
    "port-too-big": (0, "http://a:65536", "http://a:65536", "a:65536"),
    "port-long": (0, "http://a:000080", "http://a:00080", "a:80"),
    "empty-host": (0, "http://", "http://:80", ":80"),
    "no-scheme": (0, "://example.com", "example.com", "example.com"),
    "same-host-port": (0, "", "http://example.com:8080", "EXAMPLE.com:8080"),
    "same-host-default": (0, "", "https://example.com", "example.com:443"),
    "same-host-mismatch": (0, "", "https://example.com", "example.com:80"),
    "host-with-junk": (0, "", "http://a", "a b"),
    "long-host": (0, "https://" + "a" * 300, "https://" + "a" * 300, "a" * 300),
    "long-scheme": (0, "abcdefghijklmnopq://a:1", "abcdefghijklmnopq://a:1", "a:1"),
}


def origin_seeds():
    for name, (flags, pattern, origin, host) in ORIGIN_SEEDS.items():
        data = bytes([flags]) + b"\n".join(s.encode() for s in (pattern, origin, host))
        write("origin", name, data)


# ---- Responses (the outbound client) --------------------------------------------------------

def response_input(text, head=False, max_body=0, plan=WHOLE):
    """max_body 0: 65536; else max_body // 64 steps of 64."""
    if isinstance(text, str):
        text = text.encode("latin-1")
    return bytes([1 if head else 0, max_body // 64]) + plan + text


RESPONSE_SEEDS = {
    "length": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    "repeats": "HTTP/1.1 200 OK\r\nX-Dup: a\r\nx-dup: b\r\nSet-Cookie: a=1\r\n"
               "Set-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
    "chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n"
               "6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    "until-close": "HTTP/1.1 200 OK\r\n\r\nall of it",
    "http10": "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "close": "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "204": "HTTP/1.1 204 No Content\r\n\r\n",
    "304": "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    "continue": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n"
                "\r\nx",
    "both-framings": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
                     "\r\n1\r\nz\r\n0\r\n\r\n",
    "too-large": "HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n",
    "huge-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
    "folded": "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    "pipelined": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
}


def response_seeds():
    for name, text in RESPONSE_SEEDS.items():
        write("response", name, response_input(text))
        write("response", name + "-bytes", response_input(text, plan=BYTES))
    write("response", "head", response_input("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                                             head=True))
    write("response", "small-cap", response_input(RESPONSE_SEEDS["chunked"], max_body=64,
                                                  plan=MIXED))


def main():
    targets = sys.argv[1:] or ["http", "frames", "utf8", "origin", "response"]
    for t in targets:
        globals()[t + "_seeds"]()


if __name__ == "__main__":
    main()
