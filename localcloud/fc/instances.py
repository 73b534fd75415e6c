"""Warm instances: one worker subprocess per instance, a small pool per function.

An instance serves one invocation at a time (FC's Python runtimes have no instance concurrency);
the pool starts instances on demand up to ``max_instances`` and reuses idle ones, so concurrent
invocations of one function run in parallel, as FC scales out. An instance that times out,
crashes or fails its cold start is killed; the next invocation starts a fresh one.

The worker's stderr (its own and the function's stdout and stderr) is read line by line by a
thread that forwards each line to a ``log`` callback and collects the lines between the
runtime's ``FC Invoke Start/End RequestId`` marks, which become the invocation's log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.fc import runtime

RUNTIME_SCRIPT = Path(runtime.__file__).resolve()
LOG_SETTLE_SECONDS = 2.0  # how long to wait for the End mark after the reply (it is already written)


@dataclass
class WorkerReply:
    """What one invocation produced inside the instance."""

    meta: dict[str, Any]
    body: bytes
    log: str = ""


@dataclass
class WorkerSpec:
    """How to start an instance of one function."""

    label: str  # "service/function", for logs
    handler: str
    mode: str  # "fc2" | "fc3"
    code_dir: Path
    env: dict[str, str]


class InstanceLost(Exception):
    """The instance died or timed out; ``timed_out`` tells which."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass
class _Collecting:
    request_id: str
    lines: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class Instance:
    _ids = itertools.count(1)

    def __init__(self, spec: WorkerSpec, log: Callable[[str, str], None]) -> None:
        self.id = f"c-{next(self._ids):08x}"
        self.spec = spec
        self._log = log
        self._collecting: _Collecting | None = None
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNTIME_SCRIPT), spec.handler, spec.mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.code_dir,
            env=spec.env,
            bufsize=0,
        )
        self._log_thread = threading.Thread(target=self._read_log, name=f"fc-log-{self.id}", daemon=True)
        self._log_thread.start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            # Logged before ``done`` is set: an invocation ends only once its last line (the End
            # mark) is in the log, so whoever waits for it to finish finds the whole log there.
            self._log(self.spec.label, line)
            with self._lock:
                collecting = self._collecting
            if collecting is not None:
                if line == runtime.END_MARK + collecting.request_id:
                    collecting.done.set()
                elif line != runtime.START_MARK + collecting.request_id:
                    collecting.lines.append(line)
        with self._lock:
            if self._collecting is not None:
                self._collecting.done.set()

    def invoke(self, meta: dict[str, Any], body: bytes, timeout: float) -> WorkerReply:
        """Run one invocation; raises InstanceLost (and kills the instance) on timeout or crash."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        collecting = _Collecting(meta["request_id"])
        with self._lock:
            self._collecting = collecting
        try:
            try:
                self.proc.stdin.write(runtime.encode_frame(meta, body))
            except OSError as exc:
                raise InstanceLost("Process exited unexpectedly before completing request") from exc
            reply = self._read_reply(time.monotonic() + timeout, timeout)
            collecting.done.wait(LOG_SETTLE_SECONDS)
            if reply[0].get("retire"):
                self.kill()
            return WorkerReply(reply[0], reply[1], "\n".join(collecting.lines))
        finally:
            with self._lock:
                self._collecting = None

    def _read_reply(self, deadline: float, timeout: float) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buffer = bytearray()
        need = runtime.HEADER.size
        header: tuple[int, int] | None = None
        while True:
            while len(buffer) < need:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                    self.kill()
                    raise InstanceLost(f"Function timed out after {timeout:g} seconds", timed_out=True)
                chunk = os.read(fd, max(need - len(buffer), 65536))
                if not chunk:
                    self.kill()
                    raise InstanceLost("Process exited unexpectedly before completing request")
                buffer += chunk
            if header is None:
                header = runtime.HEADER.unpack(buffer[: runtime.HEADER.size])
                need = runtime.HEADER.size + header[0] + header[1]
                continue
            start = runtime.HEADER.size
            meta = json.loads(bytes(buffer[start : start + header[0]]))
            return meta, bytes(buffer[start + header[0] : need])

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def stop(self) -> None:
        """Close the request pipe so the worker exits on its own; kill it if it lingers."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()
        self._log_thread.join(timeout=2)


class InstancePool:
    """Up to ``max_instances`` warm instances of one function, one invocation each at a time."""

    def __init__(self, spec: WorkerSpec, max_instances: int, log: Callable[[str, str], None]) -> None:
        self.spec = spec
        self.max_instances = max_instances
        self._log = log
        self._idle: list[Instance] = []
        self._all: set[Instance] = set()
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> Instance:
        with self._cond:
            while True:
                if self._closed:
                    raise InstanceLost("localcloud is shutting down")
                while self._idle:
                    instance = self._idle.pop()
                    if instance.alive:
                        return instance
                    self._all.discard(instance)
                    self._count -= 1
                if self._count < self.max_instances:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            instance = Instance(self.spec, self._log)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.add(instance)
        return instance

    def release(self, instance: Instance) -> None:
        with self._cond:
            if instance.alive and not self._closed:
                self._idle.append(instance)
            else:
                self._all.discard(instance)
                self._count -= 1
                if instance.alive:
                    instance.kill()
            self._cond.notify()

    @property
    def size(self) -> int:
        with self._cond:
            return self._count

    def close(self) -> None:
        """Stop idle instances and kill busy ones (their invocations end as InstanceLost)."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = self._all - set(idle)
            self._cond.notify_all()
        for instance in busy:
            instance.proc.kill()  # the invoking thread sees end-of-stream and cleans up
        for instance in idle:
            instance.stop()
