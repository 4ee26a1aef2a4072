"""Runs a command in a session of its own, as systemd starts a service, for bench.sh:
  session.py PIDFILE CMD [ARG...]
With the kernel's autogroups (CONFIG_SCHED_AUTOGROUP, on in Debian's kernels) each session
shares the CPU as one group, so which processes share a session decides who gets the CPU on
a busy machine. A job that bench.sh starts leads its own process group (job control), and a
group leader cannot call setsid(): this process forks, the child calls setsid() and execs
CMD, its pid goes to PIDFILE (bench.sh measures that process), and the signals a service
gets (TERM, INT, QUIT, HUP, USR1, USR2) are passed on to it; this process exits with its
status once it has ended."""
import os
import signal
import sys

pidfile, argv = sys.argv[1], sys.argv[2:]
child = os.fork()
if child == 0:
    os.setsid()
    os.execvp(argv[0], argv)
with open(pidfile, "w") as f:
    f.write(f"{child}\n")
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
while True:
    try:
        _, status = os.waitpid(child, 0)
        break
    except InterruptedError:
        continue
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
