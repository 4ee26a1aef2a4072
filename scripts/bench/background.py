"""A CPU-bound neighbour for bench.sh's BACKGROUND: sha256sum of /dev/zero (computes, never
sleeps) under the kernel's default policy, in a session of its own. With the kernel's
autogroups (CONFIG_SCHED_AUTOGROUP, on in Debian's kernels) each session shares the CPU as
one group, as each systemd service does with its cgroup: a neighbour in bench.sh's own
session would take its CPU from nginx, wrk and whatever else runs there rather than
from the machine as a whole. SIGTERM stops it (this process waits for its child, which
setsid() would not allow to be bench.sh's job itself: a job leads its process group)."""
import os
import signal
import sys

child = os.fork()
if child == 0:
    os.setsid()
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    os.execvp("sha256sum", ["sha256sum", "/dev/zero"])


def stop(*_):
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
os.waitpid(child, 0)
