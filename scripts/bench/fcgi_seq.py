#!/usr/bin/env python3
"""Sends N hello-world requests one after another to a FastCGI unix socket.

usage: fcgi_seq.py SOCKET N keep|new DOCROOT
keep: one connection with FCGI_KEEP_CONN; new: a connection per request.
Each request waits for its END_REQUEST (deterministic work for callgrind.sh).
"""
import socket
import struct
import sys


def record(kind, content, request_id=1):
    pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", 1, kind, request_id, len(content), pad, 0) + content + b"\0" * pad


def pair(name, value):
    return bytes([len(name), len(value)]) + name + value


def main():
    path, n, mode, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    params = b"".join(pair(k.encode(), v.encode()) for k, v in [
        ("GATEWAY_INTERFACE", "CGI/1.1"), ("REQUEST_METHOD", "GET"),
        ("SCRIPT_FILENAME", root + "/hello.php"), ("SCRIPT_NAME", "/hello.php"),
        ("REQUEST_URI", "/hello.php"), ("DOCUMENT_ROOT", root),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("QUERY_STRING", ""), ("CONTENT_LENGTH", ""),
        ("HTTP_HOST", "localhost"), ("HTTP_USER_AGENT", "bench"), ("REMOTE_ADDR", "127.0.0.1")])
    keep = mode == "keep"
    begin = struct.pack(">HB5x", 1, 1 if keep else 0)
    request = record(1, begin) + record(4, params) + record(4, b"") + record(5, b"")
    conn = None
    for _ in range(n):
        if conn is None:
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(path)
        conn.sendall(request)
        read_until_end(conn)
        if not keep:
            conn.close()
            conn = None


def read_until_end(conn):
    buf = b""
    while True:
        while len(buf) >= 8:
            length, pad = struct.unpack(">HB", buf[4:7])
            if len(buf) < 8 + length + pad:
                break
            kind = buf[1]
            buf = buf[8 + length + pad:]
            if kind == 3:
                return
        data = conn.recv(65536)
        if not data:
            sys.exit("the connection closed before END_REQUEST")
        buf += data


main()
