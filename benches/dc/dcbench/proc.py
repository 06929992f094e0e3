"""Processes started by the harness: each runs inside a namespace via `ip netns exec` (which
execs the command, so the pid we hold is the command's), in its own session so a terminal's
Ctrl-C reaches only the harness, and is reaped by a thread with wait4 to record its exit time
on the harness clock and its CPU use. Everything is stopped by pid."""

import os
import signal
import subprocess
import threading
import time


class Proc:
    def __init__(self, name, ns, argv, env=None, stdout=None, stderr=None, cwd=None):
        self.name, self.ns, self.argv = name, ns, argv
        self.lock = threading.Lock()
        self.exited = False
        self.exit_time = None
        self.status = None
        self.cpu = 0.0
        self.start_time = time.time()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns] + argv,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.thread = threading.Thread(target=self._reap, daemon=True)
        self.thread.start()

    def _reap(self):
        try:
            _, status, ru = os.wait4(self.pid, 0)
        except ChildProcessError:
            status, ru = -1, None
        with self.lock:
            self.exited = True
            self.exit_time = time.time()
            self.status = os.waitstatus_to_exitcode(status) if status != -1 else -1
            self.cpu = (ru.ru_utime + ru.ru_stime) if ru else 0.0
            self.popen.returncode = self.status  # keep Popen from waiting again

    def alive(self):
        with self.lock:
            return not self.exited

    def kill(self, sig=signal.SIGKILL):
        """Signals the process group we created (the command and any children it forked)."""
        with self.lock:
            if self.exited:
                return
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=None):
        self.thread.join(timeout)
        return self.status


class Procs:
    """Registry of everything started; stop_all() kills by pid and reaps."""

    def __init__(self):
        self.all = []

    def start(self, name, ns, argv, **kw):
        p = Proc(name, ns, argv, **kw)
        self.all.append(p)
        return p

    def stop(self, plist, timeout=5):
        for p in plist:
            p.kill()
        for p in plist:
            p.wait(timeout)

    def stop_all(self):
        self.stop([p for p in self.all if p.alive()])
