"""Shared pieces of the benchmark scripts: child processes, scratch databases, load runs.

Nothing here is imported by openecr itself. The scripts run by hand (``python bench/X.py``);
this module sits beside them so that ``import _common`` finds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

POSTGRES_ADMIN_URL = os.environ.get(
    "OPENECR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- CPU placement -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPUs the servers and the load generators run on (``taskset -c``).

    By default the server under test gets CPU 0 and the client (wrk, ab, skopeo) gets
    CPU 1, so that the two never fight for one core and every server gets the same single
    core. ``None`` leaves placement to the scheduler.
    """

    server_cpus: str | None = "0"
    client_cpus: str | None = "1"

    def server(self, argv: Sequence[str]) -> list[str]:
        return _pinned(self.server_cpus, argv)

    def client(self, argv: Sequence[str]) -> list[str]:
        return _pinned(self.client_cpus, argv)

    def pin_this_process(self) -> None:
        """Moves the benchmark process itself (its in-process clients) onto the client CPUs."""
        if self.client_cpus is None or not hasattr(os, "sched_setaffinity"):
            return
        cpus = {int(cpu) for cpu in self.client_cpus.split(",")}
        os.sched_setaffinity(0, cpus)

    def describe(self) -> str:
        if self.server_cpus is None and self.client_cpus is None:
            return "not pinned (scheduler decides)"
        return f"servers on CPU {self.server_cpus}, load generators on CPU {self.client_cpus}"


def _pinned(cpus: str | None, argv: Sequence[str]) -> list[str]:
    if cpus is None or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", cpus, *argv]


# -- child processes -----------------------------------------------------------------------


@dataclass
class ChildProcess:
    """One server started by a benchmark; stopped by its PID, its output kept in a file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 60.0) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process has used so far (Linux /proc)."""
        return _process_cpu_seconds(self.pid)[1]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID, then SIGKILL by PID if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self, limit: int = 10, ignore: str | Sequence[str] | None = None) -> list[str]:
        """Log lines that look like warnings, errors or tracebacks, less those containing
        ``ignore`` (one string or several)."""
        pattern = re.compile(r"error|warn|traceback|exception|critical|panic", re.IGNORECASE)
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        lines = [line for line in text.splitlines() if pattern.search(line)]
        ignored = [ignore] if isinstance(ignore, str) else list(ignore or ())
        lines = [line for line in lines if not any(text in line for text in ignored)]
        return lines[:limit]


def http_ready(url: str, expect: int | None = 200) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            response = httpx.get(url, timeout=1.0)
        except httpx.HTTPError:
            return False
        return expect is None or response.status_code == expect

    return probe


# -- process memory ------------------------------------------------------------------------


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """One ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``), or None."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakRss:
    """The peak resident set size of a process over a ``with`` block.

    On entry the kernel's high-water mark (``VmHWM``) is reset by writing ``5`` to
    ``/proc/PID/clear_refs`` (Linux 4.0+, needs the right to write there); a thread also
    samples ``VmRSS`` every ``interval`` seconds. ``peak_kib`` is the larger of the two, so
    it holds even where the reset is refused (then ``VmHWM`` is the lifetime peak, an upper
    bound).
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.hwm_reset = False
        self.start_kib: int | None = None
        self.sampled_peak_kib = 0
        self.hwm_kib: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.start_kib = proc_status_kib(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm_kib = proc_status_kib(self.pid, "VmHWM")

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.sampled_peak_kib = max(self.sampled_peak_kib, rss)
                self.samples += 1
            self._stop.wait(self.interval)

    @property
    def peak_kib(self) -> int:
        return max(self.sampled_peak_kib, self.hwm_kib or 0)


# -- PostgreSQL ----------------------------------------------------------------------------


def _psql(sql: str, url: str = POSTGRES_ADMIN_URL) -> str:
    completed = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-At", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.stdout.strip()


def postgres_setting(name: str) -> str:
    try:
        return _psql(f"SHOW {name}")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def postgres_analyze(url: str) -> None:
    """Refresh the planner statistics of one database, as autovacuum would."""
    _psql("ANALYZE", url)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one run, dropped afterwards."""
    name = f"openecr_bench_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- load runs -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    """One bounded load run: counts, latency percentiles and every sign of failure."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    capped: bool = False
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def error_summary(self) -> str:
        parts = [f"{status}x{count}" for status, count in sorted(self.statuses.items())]
        parts = [p for p in parts if not p.startswith("2")]
        parts += [f"{kind}:{count}" for kind, count in self.socket_errors.items() if count]
        return " ".join(parts) if parts else "-"


# wrk sends requests from a file of length-prefixed raw HTTP/1.1 requests, cycling through
# them, counts every status in response(), stops the thread at its request cap, and prints
# one machine-readable line in done(). The first non-2xx response is written to a file.
# A thread that reaches its cap also leaves a marker file: wrk's main thread sleeps for the
# whole -d whatever its threads do, so run_wrk interrupts it (SIGINT, which wrk handles by
# ending the run and printing its summary) once every thread is capped; the summary's
# duration is then the time the requests took, not -d.
_WRK_SCRIPT = r"""
local requests_path = "@REQUESTS@"
local error_path = "@ERRORS@"
local capped_path = "@CAPPED@"
local per_thread_limit = @LIMIT@
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local pool = {}
local pool_size = 0
local cursor = 0
responses = 0
statuses = {}
wrote_error = false
capped = false

function init(args)
  local f = assert(io.open(requests_path, "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1))
    pool[#pool + 1] = data:sub(nl + 1, nl + len)
    pos = nl + 1 + len
  end
  pool_size = #pool
  -- threads start at different offsets of a pool of distinct requests
  cursor = tid * math.floor(pool_size / @THREADS@)
end

function request()
  local raw = pool[cursor % pool_size + 1]
  cursor = cursor + 1
  return raw
end

function response(status, headers, body)
  responses = responses + 1
  statuses[status] = (statuses[status] or 0) + 1
  if (status < 200 or status > 299) and not wrote_error then
    wrote_error = true
    local f = io.open(error_path .. "." .. tid, "wb")
    if f then
      f:write(tostring(status), "\n", body or "")
      f:close()
    end
  end
  if responses >= per_thread_limit and not capped then
    capped = true
    -- wrk itself keeps running to -d; the marker tells the caller to stop it (SIGINT)
    local marker = io.open(capped_path .. "." .. tid, "wb")
    if marker then
      marker:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total = 0
  local merged = {}
  for _, t in ipairs(threads) do
    total = total + t:get("responses")
    for code, count in pairs(t:get("statuses")) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%d":%d', code, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"responses":%d,"duration_us":%d,"statuses":{%s},' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%.1f,"p99_us":%.1f}\n',
    total, summary.duration, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def write_request_pool(path: Path, raw_requests: Sequence[bytes]) -> None:
    with open(path, "wb") as out:
        for raw in raw_requests:
            out.write(b"%d\n" % len(raw))
            out.write(raw)


def raw_http_request(
    method: str, target: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_wrk(
    url: str,
    raw_requests: Sequence[bytes],
    *,
    connections: int,
    duration_s: float,
    max_requests: int,
    workdir: Path,
    placement: Placement,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> LoadResult:
    """wrk for ``duration_s`` seconds or ``max_requests`` responses, whichever comes first.

    Requests cycle through ``raw_requests``; a pool of distinct requests whose size is
    ``max_requests`` sends each one at most once.
    """
    run_id = uuid.uuid4().hex[:8]
    pool_path = workdir / f"wrk-{run_id}.pool"
    error_path = workdir / f"wrk-{run_id}.error"
    script_path = workdir / f"wrk-{run_id}.lua"
    write_request_pool(pool_path, raw_requests)
    per_thread = max(1, max_requests // threads)
    script = (
        _WRK_SCRIPT.replace("@REQUESTS@", str(pool_path))
        .replace("@ERRORS@", str(error_path))
        .replace("@CAPPED@", str(workdir / f"wrk-{run_id}.capped"))
        .replace("@LIMIT@", str(per_thread))
        .replace("@THREADS@", str(threads))
    )
    script_path.write_text(script)
    argv = placement.client(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={timeout_s:g}s",
            "-s",
            str(script_path),
            url,
        ]
    )
    try:
        stdout, stderr = _run_until_capped(
            argv, workdir, f"wrk-{run_id}.capped.", threads, duration_s + timeout_s + 60
        )
        line = next((x for x in stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")
        data = json.loads(line.removeprefix("BENCH_RESULT "))
        first_error = None
        for candidate in sorted(workdir.glob(f"wrk-{run_id}.error.*")):
            first_error = candidate.read_text(errors="replace")[:600]
            break
    finally:
        for path in workdir.glob(f"wrk-{run_id}*"):
            path.unlink()
    return LoadResult(
        requests=int(data["responses"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        socket_errors={k: int(data[k]) for k in ("connect", "read", "write", "timeout")},
        capped=int(data["responses"]) >= per_thread * threads,
        first_error=first_error,
    )


def _run_until_capped(
    argv: list[str], workdir: Path, marker_prefix: str, threads: int, timeout_s: float
) -> tuple[str, str]:
    """Runs wrk; sends it SIGINT (by PID) as soon as every thread has left its cap marker,
    SIGKILL if it outlives ``timeout_s``. Returns its stdout and stderr."""
    with (
        tempfile.TemporaryFile(mode="w+", dir=workdir) as out,
        tempfile.TemporaryFile(mode="w+", dir=workdir) as err,
    ):
        process = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout_s
        interrupted = False
        try:
            while process.poll() is None:
                if time.monotonic() > deadline:
                    process.kill()
                    break
                if not interrupted and (len(list(workdir.glob(marker_prefix + "*"))) >= threads):
                    process.send_signal(signal.SIGINT)
                    interrupted = True
                time.sleep(0.01)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        out.seek(0)
        err.seek(0)
        return out.read(), err.read()


def run_ab_head(
    url: str,
    headers: dict[str, str],
    *,
    connections: int,
    duration_s: float,
    max_requests: int,
    workdir: Path,
    placement: Placement,
) -> LoadResult:
    """ApacheBench HEAD requests (wrk 4.1 cannot read HEAD responses), keep-alive."""
    csv_path = workdir / f"ab-{uuid.uuid4().hex[:8]}.csv"
    argv = ["ab", "-q", "-k", "-i", "-r", "-c", str(connections)]
    # -t implies -n 50000; the -n after it raises that cap to ours.
    argv += [
        "-t",
        str(max(1, round(duration_s))),
        "-n",
        str(max_requests),
        "-s",
        "10",
        "-e",
        str(csv_path),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    try:
        completed = subprocess.run(
            placement.client(argv), capture_output=True, text=True, timeout=duration_s + 60
        )
        out = completed.stdout
        if "Complete requests" not in out:
            raise RuntimeError(f"ab failed:\n{out}\n{completed.stderr}")
        percentiles: dict[int, float] = {}
        for row in csv_path.read_text().splitlines()[1:]:
            pct, _, ms = row.partition(",")
            percentiles[int(pct)] = float(ms)
    finally:
        csv_path.unlink(missing_ok=True)

    def number(label: str) -> float:
        match = re.search(rf"^{label}:\s+([0-9.]+)", out, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    complete = int(number("Complete requests"))
    non_2xx = int(number("Non-2xx responses"))
    failures = re.search(
        r"Failed requests:\s+\d+\s*\(Connect: (\d+), Receive: (\d+), Length: (\d+), "
        r"Exceptions: (\d+)\)",
        out,
    )
    socket_errors = {"failed": int(number("Failed requests"))}
    if failures:
        socket_errors = dict(
            zip(
                ("connect", "receive", "length", "exceptions"),
                map(int, failures.groups()),
                strict=True,
            )
        )
    statuses = {200: complete - non_2xx}
    if non_2xx:
        statuses[0] = non_2xx  # ab does not say which status; 0 marks "some non-2xx"
    return LoadResult(
        requests=complete,
        duration_s=number("Time taken for tests"),
        p50_ms=percentiles.get(50, 0.0),
        p99_ms=percentiles.get(99, 0.0),
        statuses=statuses,
        socket_errors=socket_errors,
        capped=complete >= max_requests,
    )


# -- output --------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, right-aligned except for the first columns that hold text."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_looks_numeric(row[i]) for row in cells[1:]) if rows else False
        for i in range(len(headers))
    ]

    def render(row: list[str]) -> str:
        out = []
        for i, cell in enumerate(row):
            out.append(cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [render(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [render(row) for row in cells[1:]]
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[0-9.,]+[x%]?|-|n/a", text))


def ratio(numerator: float, denominator: float) -> str:
    if denominator <= 0 or numerator <= 0:
        return "n/a"
    return f"{numerator / denominator:.2f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine_note() -> str:
    """Load average and the busiest other processes: the benchmarks share the machine."""
    load = os.getloadavg()
    return f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"


def _process_cpu_seconds(pid: int | str) -> tuple[str, float]:
    """(command name, user plus system CPU seconds) of a process, from /proc; ("", 0.0) if
    it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0.0
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    # Fields 14 and 15 of stat(5) (utime, stime), counted after the ")" that ends comm.
    fields = stat.rpartition(")")[2].split()
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the live processes of the machine's PostgreSQL server
    (the backends of a pool live as long as its connections)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            name, seconds = _process_cpu_seconds(entry.name)
            if name.startswith("postgres"):
                total += seconds
    return total
