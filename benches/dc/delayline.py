#!/usr/bin/env python3
"""Userspace delay line on a TUN device (this kernel has no sch_netem).

Usage: delayline.py DEV DELAY_MS

Attaches to the existing TUN device DEV (created with `ip tuntap add DEV mode tun`, no packet
info), and writes every packet read from it back into it DELAY_MS later. The router namespace
steers WAN-bound packets into DEV by policy routing; packets written back enter the router from
DEV and leave through the WAN veth (whose tbf does the rate limiting). One-way delay is added
per direction, in the router of the sending DC. Prints "ready" once attached.
"""

import collections
import fcntl
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_QUEUED = 20000  # packets; beyond this the line drops (never reached at 20 Mbit)


def main():
    dev, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
    try:  # a wire must not wait for the CPU: it needs little, but needs it on time
        os.nice(-10)
    except OSError:
        pass
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    print("ready", flush=True)
    sys.stdout.close()
    q = collections.deque()
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    while True:
        now = time.monotonic()
        while q and q[0][0] <= now:
            try:
                os.write(fd, q.popleft()[1])
            except BlockingIOError:
                break
            except OSError:
                pass  # e.g. a packet the stack refuses; drop it like a wire would
        timeout = max(0.0, q[0][0] - now) * 1000 if q else 1000
        if poll.poll(timeout):
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if len(q) < MAX_QUEUED:
                    q.append((time.monotonic() + delay, pkt))


if __name__ == "__main__":
    main()
