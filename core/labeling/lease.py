"""One writer at a time on a labels dataset: a lease, renewed by a heartbeat, taken over when its holder died.

Commit protocol of a labels dataset (local folder or ``s3://`` prefix); the same discipline as Hadoop's
FileOutputCommitter (private temporaries, one atomic publish per file) and a Delta log (every state change is
the exclusive creation of the next numbered object, so concurrent writers serialise on a name, not a lock
server):

* **Who may write.**  Only the run holding the lease writes part files, compacts, removes stale temporaries and
  writes its run summary.  The lease is the highest-numbered object ``_lease/<generation>.json`` under the
  dataset: a small JSON record naming the run id, host, pid, start time, last heartbeat and the holder's stated
  timeout (never anything from an image).  Every change of the lease (take, renew, take over, release) is the
  *exclusive creation* of generation ``N+1`` by a process that read generation ``N``: locally a hard link of a
  complete temporary onto the new name (fails if the name exists: an atomic O_EXCL create whose content is
  whole the instant it is visible), on S3 a ``PutObject`` with ``If-None-Match: *`` (412 if it exists).  Of
  any number of contenders that read ``N``, exactly one creates ``N+1``; the others re-read and see a fresh
  holder.  That one primitive is the compare-and-swap for renewal and takeover as well, so a holder that
  slept past its timeout finds ``N+1`` taken when it next renews, learns it lost the lease and stops before
  committing anything more.  After each create the writer lists again: a generation above its own means it
  wrote into a slot pruned long ago (a zombie), which also counts as lost.
* **Heartbeat and takeover.**  The holder renews every ``timeout / 4`` from a daemon thread.  A lease whose
  heartbeat is older than its own stated timeout (default 120 s) is stale: the next run takes it over and logs
  the old holder.  Clocks of the hosts must agree to well within the timeout (NTP does).
* **A holder that died on this host is taken over at once.**  The record names the holder's host, boot and
  process namespace as well as its pid; a contender on the same host, boot and namespace can see for itself
  that the pid is gone (or now belongs to a process started after the lease was taken: a reused pid) and takes
  the lease over without waiting for the timeout, saying so in its log.  A holder on another host, or one this
  process cannot see (another container), keeps the heartbeat timeout: only a heartbeat proves it alive there
  (docs/faults.md, "A crashed run's lease").
* **How writes become visible.**  A part file is written under a hidden ``.tmp-*`` name and renamed into place
  (one PUT on S3): readers see a whole file or none.  A committed row stays until compaction removes it, which
  it does only when a strictly newer row of the same (image_id, model_id) exists, deciding on row content, never on
  positions (see ``core.labeling.store.compact``), so even two writers that ignore the lease cannot drop the only
  row of an image; the lease makes them not waste the work in the first place.
* **What a crashed writer leaves.**  Its committed part files (kept; the next run plans around them), perhaps a
  ``.tmp-*`` temporary (removed by the next lease holder), perhaps duplicates (removed by compaction), and a
  lease that goes stale after its timeout and is taken over.  Nothing is lost; at worst the uncommitted tail of
  the crashed run is labelled again.

``gs://`` datasets run without a lease: pyarrow's GCS filesystem exposes no conditional write, and the
content-keyed compaction keeps overlapping runs correct (only wasteful).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, replace
from urllib.parse import parse_qs, urlparse

import psutil

from core import killpoints
from core.io import storage

LEASE_DIR = "_lease"
DEFAULT_TIMEOUT_S = 120.0
KEEP_GENERATIONS = 8  # older lease records are pruned; a zombie writing into a pruned slot sees a newer one
EXIT_CODE = 5  # `scanlabel label` exits with this when another run holds the dataset
RETRY_ATTEMPTS = 6  # per S3 lease request: with botocore's backoff, some 15 s of a store that keeps failing

_log = logging.getLogger("scanlabel.lease")


class LeaseError(RuntimeError):
    """The lease could not be handled at all (e.g. the store has no conditional writes)."""


class LeaseHeld(LeaseError):
    """Another live run holds the lease on this dataset."""

    def __init__(self, out: str, holder: LeaseRecord, waited_s: float = 0.0) -> None:
        self.out, self.holder, self.waited_s = out, holder, waited_s
        waited = f" after waiting {waited_s:.0f} s" if waited_s else ""
        super().__init__(
            f"labels dataset {out} is leased by another run{waited}: {holder.describe()}. "
            "Overlapping runs would label the same images twice; wait for it with --wait-for-lease SECONDS "
            "or run again later (a holder that died on this host is taken over at once, one on another host once "
            f"its heartbeat is {holder.timeout_s:.0f} s old)"
        )


class LeaseLost(LeaseError):
    """This run no longer holds the lease (it missed its heartbeats and another run took over)."""


@dataclass(frozen=True)
class LeaseRecord:
    run_id: str
    host: str
    pid: int
    started_at: float  # epoch seconds
    heartbeat_at: float
    timeout_s: float
    generation: int
    state: str  # "held" or "released"
    token: str  # unique per acquisition: tells a holder's own records from anyone else's
    # Where the pid means something: the kernel's boot id and the holder's pid namespace ("" in records written
    # before these existed, which therefore only ever go stale by their heartbeat).
    boot_id: str = ""
    pid_ns: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord:
        try:
            d = json.loads(data)
            return cls(**{k: d[k] for k, f in cls.__dataclass_fields__.items() if k in d or f.default is MISSING})
        except (ValueError, KeyError, TypeError) as e:
            raise LeaseError(
                f"unreadable lease record ({e}): records are only ever created whole, so it was edited by hand; "
                f"if no run is working on this dataset, delete its {LEASE_DIR}/ folder"
            ) from e

    def free(self, now: float) -> bool:
        return self.state == "released" or now - self.heartbeat_at > self.timeout_s

    def describe(self, now: float | None = None) -> str:
        age = (now or time.time()) - self.heartbeat_at
        return (
            f"run {self.run_id} on host {self.host} (pid {self.pid}), started {_iso(self.started_at)}, "
            f"last heartbeat {_iso(self.heartbeat_at)} ({age:.0f} s ago, stale after {self.timeout_s:.0f} s)"
        )


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def _name(generation: int) -> str:
    return f"{generation:012d}.json"


def _generation(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "json" and len(stem) == 12 and stem.isdigit() else None


# A process younger than the lease by more than this is not its holder.  psutil derives a start time from the
# boot time, which the kernel reports in whole seconds: the slack keeps the real holder from looking younger than
# its own lease; the error it allows is the safe one (a reused pid looks alive: wait for the timeout).
_PID_START_SLACK_S = 2.0


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def holder_gone(record: LeaseRecord) -> str | None:
    """Why the holder of ``record`` is certainly dead, or None when this process cannot tell (then only its
    heartbeat timeout frees the lease).

    Certain only where pids are comparable: the same host name, the same kernel boot (an id the kernel draws at
    boot: two machines that share a host name differ here, and so does a host that rebooted, which this process
    cannot tell apart, so both wait for the timeout) and the same pid namespace (a container on the same host
    sees other pids).  There the holder is gone when its pid is, when the pid is a zombie (killed, not yet
    reaped), or when the pid belongs to a process started after the lease was taken: the kernel reused it.
    """
    if record.host != socket.gethostname() or not record.boot_id or not record.pid_ns:
        return None
    if record.boot_id != _boot_id() or record.pid_ns != _pid_namespace():
        return None
    try:
        proc = psutil.Process(record.pid)
        started, status = proc.create_time(), proc.status()
    except psutil.NoSuchProcess:
        return f"its process {record.pid} on this host is gone"
    except psutil.AccessDenied:
        return None
    if status == psutil.STATUS_ZOMBIE:
        return f"its process {record.pid} on this host has exited"
    if started > record.started_at + _PID_START_SLACK_S:
        return (
            f"pid {record.pid} now belongs to a process started {_iso(started)}, after the lease was taken "
            f"{_iso(record.started_at)} (a reused pid: the holder is gone)"
        )
    return None


class _LocalStore:
    def __init__(self, out: str) -> None:
        _, path = storage.resolve(out)
        self.dir = os.path.join(path, LEASE_DIR)

    def generations(self) -> list[int]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(g for g in map(_generation, names) if g is not None)

    def read(self, generation: int) -> bytes | None:
        try:
            with open(os.path.join(self.dir, _name(generation)), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def create(self, generation: int, data: bytes) -> bool:
        """Exclusive create, whole on arrival: link() of a complete, fsynced temporary fails if the name exists."""
        os.makedirs(self.dir, exist_ok=True)
        tmp = os.path.join(self.dir, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, os.path.join(self.dir, _name(generation)))
            return True
        except FileExistsError:
            return False
        except OSError as e:  # e.g. a FUSE mount of an object store
            raise LeaseError(
                f"{self.dir} does not support hard links ({e}), which the local lease uses as its atomic "
                "exclusive create; write the labels to a local disk, NFS, or s3://"
            ) from e
        finally:
            os.unlink(tmp)

    def delete(self, generation: int) -> None:
        try:
            os.unlink(os.path.join(self.dir, _name(generation)))
        except FileNotFoundError:
            pass

    def sweep(self, older_than_s: float = 600.0) -> None:
        """Remove temporaries of creates killed between writing and linking.  Contenders that do not hold the
        lease write here too, so only old ones go: a live create takes milliseconds."""
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return
        for e in entries:
            try:
                if e.name.startswith(".tmp-") and time.time() - e.stat().st_mtime > older_than_s:
                    os.unlink(e.path)
            except FileNotFoundError:
                pass


class _S3Store:
    """boto3, because pyarrow's S3 filesystem cannot send ``If-None-Match`` on a PUT."""

    def __init__(self, out: str) -> None:
        import boto3

        parsed = urlparse(out)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        endpoint = query.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        # AWS_ENDPOINT_URL (the variable pyarrow honours too) is read by boto3 itself when no override is given.
        from botocore.config import Config

        # botocore's standard retry mode (backoff with jitter on 503 SlowDown, 500s, resets, timeouts) with more
        # attempts than its default 3: a lease request that fails for good fails the run (docs/faults.md).
        config = Config(retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS})
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=query.get("region"), config=config)
        self.errors_retried = 0
        self.client.meta.events.register_first("needs-retry.s3", self._count_retry)
        self.bucket = parsed.netloc
        self.prefix = "/".join(p for p in (parsed.path.strip("/"), LEASE_DIR) if p) + "/"

    def _count_retry(self, response=None, caught_exception=None, **_) -> None:
        """Count the failed attempts botocore's retry handler (registered after this one) will judge."""
        status = response[0].status_code if response and response[0] is not None else None
        if caught_exception is not None or (status is not None and (status >= 500 or status == 429)):
            self.errors_retried += 1

    def generations(self) -> list[int]:
        found: list[int] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                g = _generation(obj["Key"][len(self.prefix) :])
                if g is not None:
                    found.append(g)
        return sorted(found)

    def read(self, generation: int) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + _name(generation))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def create(self, generation: int, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + _name(generation), Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False  # another writer created it first (409: a concurrent conditional write)
            if code == "NotImplemented" or status == 501:
                raise LeaseError(
                    f"the object store behind s3://{self.bucket} does not support conditional writes "
                    "(PutObject with If-None-Match), which the dataset lease needs"
                ) from e
            raise

    def delete(self, generation: int) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + _name(generation))


def _store(out: str):
    scheme = urlparse(str(out)).scheme
    if scheme == "s3":
        return _S3Store(str(out))
    if storage.is_remote(out):
        return None
    return _LocalStore(str(out))


class DatasetLease:
    """The lease on one labels dataset; use as a context manager (released on exit, failure included)."""

    def __init__(
        self,
        out: str,
        run_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"lease timeout must be positive, got {timeout_s}")
        self.out = str(out)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.timeout_s = float(timeout_s)
        self.log = log or _log.warning
        self.supported = True
        self._store = _store(self.out)
        if self._store is None:
            self.supported = False
        self._token = uuid.uuid4().hex
        self._record: LeaseRecord | None = None
        self._renewed_at = 0.0  # monotonic time of the last successful create
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: LeaseRecord | None = None

    @property
    def store_errors_retried(self) -> int:
        """Failed S3 requests of this lease that were retried (0 on a local folder)."""
        return int(getattr(self._store, "errors_retried", 0))

    # -- reading -------------------------------------------------------------------------------------------
    def current(self) -> LeaseRecord | None:
        """The lease as it stands (the highest generation), or None if the dataset was never leased."""
        for _ in range(10):
            gens = self._store.generations()
            if not gens:
                return None
            data = self._store.read(gens[-1])
            if data is not None:
                return LeaseRecord.from_bytes(data)
            # pruned between listing and reading: list again
        raise LeaseError(f"could not read the lease under {self.out}: its records keep changing")

    # -- taking --------------------------------------------------------------------------------------------
    def acquire(self, wait_s: float = 0.0) -> DatasetLease:
        """Take the lease, waiting up to ``wait_s`` for a live holder to finish; raises LeaseHeld after that."""
        if not self.supported:
            self.log(
                f"[lease] no lease on {self.out}: this store has no conditional writes; overlapping runs are "
                "not excluded (compaction keeps the dataset correct, the work is wasted)"
            )
            return self
        t0 = time.monotonic()
        next_note = t0
        while True:
            holder = self._try_take()
            if holder is None:
                self._start_heartbeat()
                return self
            now = time.monotonic()
            if now - t0 >= wait_s:
                raise LeaseHeld(self.out, holder, now - t0)
            if now >= next_note:  # a line a minute while waiting, so a scheduler's log shows why nothing happens
                self.log(f"[lease] waiting up to {wait_s:.0f} s for the lease on {self.out}: {holder.describe()}")
                next_note = now + 60
            time.sleep(max(0.01, min(self._poll_s(holder), wait_s - (now - t0))))

    @staticmethod
    def _poll_s(holder: LeaseRecord) -> float:
        return min(5.0, max(0.2, holder.timeout_s / 8))

    def _try_take(self) -> LeaseRecord | None:
        """One attempt: None if we now hold the lease, else the live holder."""
        while True:
            gens = self._store.generations()
            top = gens[-1] if gens else 0
            data = self._store.read(top) if top else None
            if top and data is None:
                continue  # pruned under us
            old = LeaseRecord.from_bytes(data) if data else None
            now = time.time()
            gone = None
            if old is not None and not old.free(now):
                gone = holder_gone(old)
                if gone is None:
                    return old
            mine = LeaseRecord(
                self.run_id,
                socket.gethostname(),
                os.getpid(),
                now,
                now,
                self.timeout_s,
                top + 1,
                "held",
                self._token,
                _boot_id(),
                _pid_namespace(),
            )
            if not self._create(mine):
                continue  # another contender moved first: look again
            self._record, self._renewed_at = mine, time.monotonic()
            if old is not None and old.state == "held":
                self.took_over = old
                self._log_takeover(old, gone, now)
            self._prune()
            killpoints.reached("lease.acquired")
            return None

    def _log_takeover(self, old: LeaseRecord, gone: str | None, now: float) -> None:
        if gone is None:
            self.log(f"[lease] took over the stale lease on {self.out} from {old.describe(now)}")
            return
        self.log(
            f"[lease] took over the lease on {self.out} at once from {old.describe(now)}: {gone}, so it cannot "
            "be alive (a holder on another host would be waited for until its heartbeat is stale)"
        )

    def _create(self, record: LeaseRecord) -> bool:
        """Compare-and-swap: create generation N+1 exclusively, then make sure nothing newer already existed."""
        if not self._store.create(record.generation, record.to_bytes()):
            data = self._store.read(record.generation)
            # An earlier attempt of ours may have landed even though its answer was lost (S3 retries).
            return data is not None and LeaseRecord.from_bytes(data).token == self._token and self._newest(record)
        if self._newest(record):
            return True
        self._store.delete(record.generation)  # a slot pruned long ago: the lease moved on without us
        return False

    def _newest(self, record: LeaseRecord) -> bool:
        gens = self._store.generations()
        return not gens or gens[-1] <= record.generation

    def _prune(self) -> None:
        try:
            for g in self._store.generations()[:-KEEP_GENERATIONS]:
                self._store.delete(g)
            if hasattr(self._store, "sweep"):
                self._store.sweep()
        except Exception as e:  # noqa: BLE001 - pruning is housekeeping; the next holder retries it
            _log.debug("lease pruning failed: %s", e)

    # -- holding -------------------------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        return self._record is not None and self._record.state == "held" and self._lost is None

    def renew(self) -> None:
        """One heartbeat: write the next generation with a fresh timestamp, or learn that the lease was lost."""
        with self._lock:
            if not self.held:
                return
            now = time.time()
            nxt = replace(self._record, heartbeat_at=now, generation=self._record.generation + 1)
            if self._create(nxt):
                self._record, self._renewed_at = nxt, time.monotonic()
                if nxt.generation % KEEP_GENERATIONS == 0:
                    self._prune()
                killpoints.reached("lease.renewed")
                return
            winner = self.current()
            self._lost = (
                f"the lease on {self.out} was taken over by "
                + (winner.describe(now) if winner else "another run")
                + f" after this run's heartbeat lapsed (timeout {self.timeout_s:.0f} s)"
            )
            self.log(f"[lease] LOST: {self._lost}")

    def check(self) -> None:
        """Raise LeaseLost unless this run still holds the lease: call before committing anything."""
        if not self.supported:
            return
        if self._record is None:
            raise LeaseLost(f"this run never took the lease on {self.out}")
        if self._lost:
            raise LeaseLost(self._lost)
        silent = time.monotonic() - self._renewed_at
        if silent > self.timeout_s:
            raise LeaseLost(
                f"the lease on {self.out} was not renewed for {silent:.0f} s (timeout {self.timeout_s:.0f} s): "
                "another run may have taken it over"
            )

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{self.run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = self.timeout_s / 4
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 - a store hiccup: retried next beat; check() notices a lapse
                self.log(f"[lease] heartbeat failed (will retry in {interval:.0f} s): {e}")
            if not self.held:
                return

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released, unless it was lost (then it is someone else's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        with self._lock:
            if not self.held:
                return
            killpoints.reached("lease.release")
            done = replace(
                self._record, heartbeat_at=time.time(), generation=self._record.generation + 1, state="released"
            )
            try:
                if self._create(done):
                    self._record = done
                    self._prune()
                else:
                    self.log(f"[lease] could not release the lease on {self.out}: another run holds it now")
            except Exception as e:  # noqa: BLE001 - a lease left behind goes stale and is taken over
                self.log(
                    f"[lease] could not release the lease on {self.out} ({e}); it goes stale in {self.timeout_s:.0f} s"
                )

    def __enter__(self) -> DatasetLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def take(
    out: str,
    run_id: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    wait_s: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> DatasetLease:
    """Take the lease on the dataset at ``out`` (a context manager that releases it)."""
    return DatasetLease(out, run_id, timeout_s, log).acquire(wait_s)
