#!/usr/bin/env python3
"""TCP load for the calibration step.

  tcpcal.py recv BIND_IP PORT         accept connections and discard what they send
  tcpcal.py send DST_IP PORT SECONDS [STREAMS]
                                      send as fast as TCP allows for SECONDS over STREAMS
                                      parallel connections (default 4), print bytes sent
"""

import socket
import sys
import threading
import time


def recv(ip, port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(64)
    print("ready", flush=True)
    sys.stdout.close()

    def drain(c):
        with c:
            while c.recv(1 << 16):
                pass

    while True:
        c, _ = srv.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()


def send(ip, port, seconds, streams):
    deadline = time.monotonic() + seconds
    totals = [0] * streams
    threads = [threading.Thread(target=send1, args=(ip, port, deadline, totals, i)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(totals), flush=True)


def send1(ip, port, deadline, totals, i):
    buf = b"\0" * (1 << 16)
    s = None
    while s is None:  # the receiver may still be starting
        try:
            s = socket.create_connection((ip, port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    sent = 0
    s.settimeout(2)
    while time.monotonic() < deadline:
        try:
            sent += s.send(buf)
        except socket.timeout:
            pass
    s.close()
    totals[i] = sent


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 4)
