"""A replica dies with SIGKILL: pushes through the others go on, nothing acknowledged is
lost, and its scheduled jobs (lifecycle, GC) are taken over.

Storage of its own (a moto S3 server and a fresh PostgreSQL database), three replicas:
r1 and r2 run the lifecycle and GC jobs every second (``--lifecycle-interval 1
--gc-interval 1``), r3 runs them hourly (never, within the test). A job runs on one replica
at a time under a PostgreSQL advisory lock taken per run.

The test catches r1 *inside* a job run: it freezes r1 with SIGSTOP at random moments until
``pg_locks`` shows one of r1's own connections holding a job lock. While r1 stays frozen
with the lock, the job must not run anywhere else (the lock excludes r2). Then r1 gets
SIGKILL, its connections die with it, and r2 must run the job from then on: images pushed
after the kill expire, ``lastEvaluatedAt`` advances, r2 logs GC runs. Meanwhile pusher
threads push through all three replicas; pushes through r2 and r3 must all succeed, and
every image any replica acknowledged (r1's up to its death included) must be there at the
end, its manifest and every blob byte for byte.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from ecr_helpers import make_ecr_client
from harness import ServerProcess
from images import Image, build_image
from lifecycle_gc_helpers import describe_all, lifecycle_log, policy_text, rule
from oci_helpers import Registry, login_password
from replica_helpers import Fleet, fleet, log_entries, sigkill, wait_until

pytestmark = pytest.mark.postgres

JOBS = ("lifecycle", "gc")
PUSHES = "failover/pushes"
EXPIRING = "failover/expiring"
KEEP = 2
BUSY_REPOSITORIES = 40  # lifecycle policies that make a run last long enough to be caught


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("failover")) as shared:
        yield shared


def _socket_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process ``pid`` has open (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _job_lock_holders(database_url: str) -> dict[str, set[int]]:
    """job name -> client ports of the database connections holding its advisory lock."""
    query = (
        "SELECT j.name, a.client_port FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "JOIN (VALUES ('lifecycle'), ('gc')) AS j(name) "
        "ON l.objid::text::bigint = (hashtext('job:' || j.name)::bigint + 4294967296) "
        "% 4294967296 "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    )
    result = subprocess.run(
        ["psql", database_url, "-tA", "-F", " ", "-c", query],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    holders: dict[str, set[int]] = {}
    for row in result.stdout.strip().splitlines():
        name, port = row.split()
        holders.setdefault(name, set()).add(int(port))
    return holders


def _freeze_while_holding_a_job(server: ServerProcess, database_url: str) -> str:
    """SIGSTOPs the server at random moments until it is frozen holding a job lock;
    returns the job. The server stays stopped."""
    assert server.process is not None
    pid = server.process.pid
    deadline = time.monotonic() + 30
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        time.sleep(random.uniform(0, 0.15))
        server.process.send_signal(signal.SIGSTOP)
        mine = _socket_ports(pid)
        for job, ports in _job_lock_holders(database_url).items():
            if ports & mine:
                print(f"\ncaught r1 holding the {job} lock after {attempts} attempts")
                return job
        server.process.send_signal(signal.SIGCONT)
    raise AssertionError(f"r1 never held a job lock in {attempts} attempts")


@dataclass
class Pushes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, tuple[str, Image]] = field(default_factory=dict)  # tag -> (replica, image)
    failures: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def push(self, name: str, registry: Registry, n: int) -> None:
        image = build_image(layers=2, layer_size=2000 + n)
        tag = f"{name}-{n}"
        try:
            registry.push(PUSHES, image, tag)
        except (AssertionError, httpx.HTTPError) as error:
            with self.lock:
                self.failures.setdefault(name, []).append((time.time(), repr(error)[:200]))
            return
        with self.lock:
            self.acked[tag] = (name, image)


def _evaluated_at(ecr: Any, repository: str) -> datetime | None:
    value: datetime | None = ecr.get_lifecycle_policy(repositoryName=repository).get(
        "lastEvaluatedAt"
    )
    return value


def test_a_killed_replica_loses_nothing_and_its_jobs_move_to_another(
    storage: Fleet, tmp_path: Path
) -> None:
    jobs = ("--lifecycle-interval", "1", "--gc-interval", "1", "--gc-grace", "30")
    r1 = storage.start("r1", *jobs, "--log-level", "info")
    r2 = storage.start("r2", *jobs, "--log-level", "info")
    r3 = storage.start("r3")
    ecr = make_ecr_client(r3.url)
    password = login_password(ecr)
    ecr.create_repository(repositoryName=PUSHES)
    ecr.create_repository(repositoryName=EXPIRING)
    ecr.put_lifecycle_policy(
        repositoryName=EXPIRING,
        lifecyclePolicyText=policy_text(rule(1, "any", "imageCountMoreThan", KEEP)),
    )
    busy_policy = policy_text(rule(1, "any", "imageCountMoreThan", 1000))
    for i in range(BUSY_REPOSITORIES):
        ecr.create_repository(repositoryName=f"failover/busy-{i}")
        ecr.put_lifecycle_policy(
            repositoryName=f"failover/busy-{i}", lifecyclePolicyText=busy_policy
        )

    # The jobs run: images beyond the newest KEEP expire, GC runs, r1 takes part.
    via_r3 = Registry(r3, password)
    for i in range(KEEP + 2):
        via_r3.push(EXPIRING, build_image(layers=1, layer_size=100 + i), f"before-{i}")
    assert wait_until(lambda: len(describe_all(ecr, EXPIRING)) == KEEP, timeout=15)
    assert _evaluated_at(ecr, EXPIRING) is not None
    assert wait_until(lambda: log_entries(r1, "openecr.services.garbage_collection"), 10), (
        "r1 never ran GC"
    )

    pushes = Pushes()
    stop = threading.Event()
    targets = {"r1": Registry(r1, password), "r2": Registry(r2, password), "r3": via_r3}

    def pusher(name: str) -> None:
        n = 0
        while not stop.is_set():
            pushes.push(name, targets[name], n)
            n += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=pusher, args=(name,), name=name) for name in targets]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3.0)
        job = _freeze_while_holding_a_job(r1, storage.database_url)
        # r1 is frozen holding the lock: the job runs nowhere else meanwhile.
        frozen_at = time.time()
        evaluated = _evaluated_at(ecr, EXPIRING)
        busy_evaluated = _evaluated_at(ecr, "failover/busy-0")
        time.sleep(2.5)
        if job == "lifecycle":
            assert _evaluated_at(ecr, EXPIRING) == evaluated
            assert _evaluated_at(ecr, "failover/busy-0") == busy_evaluated
        else:
            gc_runs = log_entries(r2, "openecr.services.garbage_collection")
            assert not [e for e in gc_runs if e["time"] > frozen_at + 0.5], "GC ran twice"
        assert r1.process is not None
        still = _job_lock_holders(storage.database_url).get(job, set())
        assert still & _socket_ports(r1.process.pid), "r1 lost the lock while frozen"

        sigkill(r1)
        killed_at = time.time()
        # r2 takes the job over.
        after = [build_image(layers=1, layer_size=500 + i) for i in range(KEEP + 2)]
        for i, image in enumerate(after):
            targets["r2"].push(EXPIRING, image, f"after-{i}")
        newest = {image.digest for image in after[-KEEP:]}

        def expired_after_kill() -> bool:
            listed = {d["imageDigest"] for d in describe_all(ecr, EXPIRING)}
            return listed == newest

        assert wait_until(expired_after_kill, timeout=15), describe_all(ecr, EXPIRING)
        evaluated_now = _evaluated_at(ecr, EXPIRING)
        assert evaluated_now is not None and evaluated_now.timestamp() > killed_at
        assert wait_until(
            lambda: [
                e
                for e in log_entries(r2, "openecr.services.garbage_collection")
                if e["time"] > killed_at
            ],
            timeout=10,
        ), "r2 ran no GC after the kill"
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        if r1.process is not None and r1.process.poll() is None:
            r1.process.send_signal(signal.SIGCONT)

    expired_by_r2 = {line.digest for line in lifecycle_log(r2.output())}
    assert {image.digest for image in after[:2]} <= expired_by_r2

    # Pushes through the living replicas never failed; r1's stopped at its death.
    assert not pushes.failures.get("r2"), pushes.failures
    assert not pushes.failures.get("r3"), pushes.failures
    by_replica = {name: sum(1 for n, _ in pushes.acked.values() if n == name) for name in targets}
    assert by_replica["r2"] > 3 and by_replica["r3"] > 3, by_replica
    assert by_replica["r1"] > 0, by_replica
    assert all(when > frozen_at for when, _ in pushes.failures.get("r1", [])), pushes.failures

    # Every acknowledged image is there, whole, read through r2 and r3.
    listed = {d["imageDigest"]: set(d.get("imageTags", [])) for d in describe_all(ecr, PUSHES)}
    readers = [targets["r2"], via_r3]
    for i, (tag, (_, image)) in enumerate(sorted(pushes.acked.items())):
        assert tag in listed.get(image.digest, set()), f"LOST {tag} ({image.digest})"
        reader = readers[i % 2]
        assert reader.manifest(PUSHES, tag).content == image.manifest
        for digest, data in image.blobs.items():
            response = reader.http.get(f"/v2/{PUSHES}/blobs/{digest}")
            assert response.status_code == 200 and response.content == data, (tag, digest)
    for registry in targets.values():
        registry.close()
    print(
        f"acknowledged {by_replica}; r1 push failures after its death: "
        f"{len(pushes.failures.get('r1', []))}"
    )


def test_a_job_runs_once_per_interval_fleet_wide(storage: Fleet) -> None:
    storage.stop_all()  # the previous test's replicas would compete for the job
    # Each replica wakes once per interval and skips the run when another ran it less than
    # an interval ago, so with unlucky phases a fleet-wide gap can reach two intervals:
    # the window leaves room for at least three runs even then.
    interval, window = 2, 13.0
    flags = ("--gc-interval", str(interval), "--gc-grace", "60", "--log-level", "info")
    fleet_of_three = [storage.start(f"interval-{i}", *flags) for i in range(3)]
    started = time.time()  # from here on all three run
    time.sleep(window)
    runs = sorted(
        entry["time"]
        for server in fleet_of_three
        for entry in log_entries(server, "openecr.services.garbage_collection")
        if entry["message"].startswith("garbage collection:") and entry["time"] >= started
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    print(f"\nGC runs at --gc-interval {interval} in {window:.0f} s: {len(runs)}, gaps {gaps}")
    # Fleet-wide, one run per interval: consecutive runs (of any replica) about an
    # interval apart. A run's own length only lengthens the gaps.
    assert len(gaps) >= 2, runs
    assert statistics.median(gaps) >= 0.8 * interval, gaps
    assert max(gaps) <= 2.5 * interval, gaps
