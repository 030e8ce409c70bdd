"""`rediswq dashboard` as a subprocess (the installed command), its address read from its first line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

RQ = shutil.which("rediswq", path=str(Path(sys.executable).parent)) or "rediswq"
TOKEN = "test-token-0123456789abcdef"


class RunningDashboard:
    """One dashboard process; its log (standard error) goes to a file the test reads."""

    def __init__(self, url: str, log: Path, *args: str, actions: bool = True) -> None:
        self.log = log
        env = {**os.environ, "REDISWQ_URL": url, "REDISWQ_DASHBOARD_TOKEN": TOKEN}
        cmd = [RQ, "dashboard", "--port", "0", "--interval", "0.5", *args]
        if actions:
            cmd.append("--allow-actions")
        with open(log, "wb") as sink:
            self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        deadline = time.monotonic() + 30
        while not (found := re.search(r"serving (http://\S+)", log.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the dashboard did not start: {log.read_text()}")
            time.sleep(0.05)
        self.base = found.group(1)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path.lstrip("/"), timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + "api/action", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def csrf(self) -> str:
        _, page = self.get("/")
        found = re.search(rb'name="rediswq-csrf" content="([^"]+)"', page)
        assert found, page
        return found.group(1).decode()

    def wait_for(self, path: str, check: Any, secs: float = 30) -> Any:
        deadline = time.monotonic() + secs
        while True:
            data = self.json(path)
            if check(data) or time.monotonic() > deadline:
                return data
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
