"""Run by scripts/bench.sh (burst workload): python3 burst.py PORT PATH N TIMEOUT_S

Sends N concurrent GET http://127.0.0.1:PORT/PATH requests (HTTP/1.0, one connection each,
no keepalive), one thread per request, all released at once, and prints one line:

    WALL_MS OK FAILED SEND_SPREAD_MS [STATUS ...]

WALL_MS is the time from the first send to the last answer, OK the requests answered 200,
FAILED the others, SEND_SPREAD_MS the time between the first and the last send (how
concurrent the client managed to be), then the status of each failed request (an HTTP code
or the name of the error). Every request gives up after TIMEOUT_S seconds.
"""

import socket
import sys
import threading
import time


def main():
    port, path, n, timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    request = ("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode()
    start = threading.Barrier(n + 1)
    sent = [0.0] * n
    done = [0.0] * n
    status = [""] * n

    def one(i):
        start.wait()
        deadline = time.monotonic() + timeout
        sent[i] = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(request)
                head = b""
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout("no complete answer within %gs" % timeout)
                    s.settimeout(left)
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    if len(head) < 64:
                        head += chunk
            parts = head.split(b" ", 2)
            status[i] = parts[1].decode("ascii", "replace") if len(parts) > 1 else "empty"
        except OSError as e:
            status[i] = type(e).__name__
        done[i] = time.monotonic()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    failed = [s for s in status if s != "200"]
    print(
        "%.1f %d %d %.1f %s"
        % (
            (max(done) - min(sent)) * 1000,
            n - len(failed),
            len(failed),
            (max(sent) - min(sent)) * 1000,
            " ".join(failed),
        )
    )


if __name__ == "__main__":
    main()
