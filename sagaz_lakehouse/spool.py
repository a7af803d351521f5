"""The listener's on-disk spool: saga events appended to segment files before a hook returns.

A spool is a directory that one process at a time owns (an exclusive ``flock`` on ``spool.lock``, holding the
owner's pid). Events get consecutive sequence numbers; each is one line of a segment file named after the sequence
number of its first event (``00000000000000000042.spool``)::

    <crc32 of the JSON, 8 hex digits> <the event's 11 fields as a JSON array>\\n

``append`` writes the line with one ``os.write`` on an ``O_APPEND`` descriptor, so once it returns the event is in
the operating system's page cache: a ``kill -9`` of the process loses nothing. Whether it also survives a crash of
the machine depends on ``fsync``:

- ``always``: ``fdatasync`` after every event (``append`` returns once the event is on the disk);
- ``interval`` (default): a background thread syncs the written segments every ``fsync_interval`` seconds, so a
  machine crash loses at most the events of that last window;
- ``never``: the kernel writes the pages back when it likes (about 30 s on Linux); fine for tests.

A new process on the directory reads every segment left (``read``, in sequence order; a torn or damaged line, e.g.
the last one written before a machine crash, fails its checksum and is skipped and counted) and appends its own
events to a new segment after them. ``release(upto)`` deletes every closed segment whose events all lie below
``upto``: the listener calls it once those events are known to be in Iceberg (see ``sagaz.py``).

Standard library only; no Sagaz, no pyfluss.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO

from sagaz_lakehouse.saga_events import SagaEvent

log = logging.getLogger(__name__)

SUFFIX = ".spool"
LOCK_FILE = "spool.lock"
AGE_SAMPLE_EVERY = 1024  # one (seq, wall time) sample per this many events: the oldest-event age is exact to that
_encode = json.JSONEncoder(separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


class FsyncMode(StrEnum):
    """When appended events are forced to the disk (all survive a kill -9 of the process in any mode)."""

    ALWAYS = "always"  # every event, before append returns
    INTERVAL = "interval"  # every fsync_interval seconds, by a background thread
    NEVER = "never"  # left to the kernel


class SpoolInUse(RuntimeError):
    """Another process (or another listener of this one) owns the spool directory."""


class SpoolError(ValueError):
    """A setting of the spool is out of range (the message names it)."""


def encode(event: SagaEvent) -> bytes:
    body = _encode((*event[:10], event[10].isoformat())).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> SagaEvent | None:
    """The event of one line, or None when the line is torn or damaged."""
    if len(line) < 11 or line[8:9] != b" " or not line.endswith(b"\n"):
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        values = _decode(body.decode())
        values[10] = datetime.fromisoformat(values[10])
        return SagaEvent(*values)
    except (ValueError, TypeError, IndexError):
        return None


@dataclass
class Segment:
    base: int  # sequence number of its first event
    path: Path
    count: int = 0  # complete lines
    size: int = 0  # bytes, a torn last line included

    @property
    def end(self) -> int:
        return self.base + self.count


class Spool:
    """Segment files of saga events in ``directory``. Not thread-safe except for ``sync`` (the fsync thread): one
    event loop appends, reads and releases."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: FsyncMode | str = FsyncMode.INTERVAL,
                 fsync_interval: float = 0.1, max_bytes: int = 1 << 30, segment_bytes: int = 8 << 20) -> None:
        try:
            self.fsync = FsyncMode(fsync)
        except ValueError:
            raise SpoolError(f"spool_fsync must be one of always, interval, never; got {fsync!r}") from None
        if fsync_interval <= 0:
            raise SpoolError(f"spool_fsync_interval must be > 0 seconds, got {fsync_interval!r}")
        if segment_bytes < 4096 or max_bytes < segment_bytes:
            raise SpoolError(f"spool_max_bytes ({max_bytes}) must be at least the segment size ({segment_bytes}), "
                             "which must be at least 4096")
        self.directory = Path(directory)
        self.fsync_interval, self.max_bytes, self.segment_bytes = fsync_interval, max_bytes, segment_bytes
        self.segments: list[Segment] = []
        self.bytes = 0
        self.next_seq = 0  # the sequence number the next appended event gets
        self.recovered = 0  # events found on disk when opened
        self.released = 0  # every event below this sequence number was released (is safe)
        self.corrupt = 0  # lines skipped by read(): torn or damaged
        self.syncs = 0  # fsync rounds of the background thread (interval mode)
        self.sync_seconds = 0.0  # time they took in total
        self.owner_pid: int | None = None
        self._bases: list[int] = []  # segment bases, for bisect
        self._fd: int | None = None  # the active (last) segment, open for appending
        self._lock_fd: int | None = None
        self._lock = threading.Lock()  # guards the descriptors the fsync thread touches
        self._unsynced: list[int] = []  # descriptors of segments rolled over and not yet synced (thread closes them)
        self._dirty = self._dir_dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: tuple[Segment, IO[bytes], int] | None = None  # (segment, file, sequence number of next line)
        self._ages: deque[tuple[int, float]] = deque()  # (seq, wall time it was appended) samples

    # ------------------------------------------------------------------------------------------ open / close

    @property
    def opened(self) -> bool:
        return self._lock_fd is not None

    def open(self) -> None:
        """Take the directory (SpoolInUse if another process has it) and find the segments left in it."""
        if self.opened:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(lock_fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(lock_fd)
            raise SpoolInUse(f"spool directory {self.directory} is in use by process {holder}: give every process "
                             "(and every listener) a spool directory of its own") from None
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd, self.owner_pid = lock_fd, os.getpid()
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                base = int(path.name[:-len(SUFFIX)])
            except ValueError:
                continue
            data = path.read_bytes()
            segment = Segment(base, path, data.count(b"\n"), len(data))
            if self.segments and base < self.segments[-1].end:  # cannot happen unless files were copied in by hand
                log.warning("spool segment %s overlaps the one before it; its events are read as they are", path)
            self._add(segment)
            if segment.count:
                first = decode(data[:data.find(b"\n") + 1])
                if first is not None:
                    stamp = (first.timestamp - datetime(1970, 1, 1)).total_seconds()
                    self._ages.append((base, stamp))
        self.recovered = sum(s.count for s in self.segments)
        self.next_seq = self.segments[-1].end if self.segments else 0
        self.released = self.segments[0].base if self.segments else self.next_seq
        if self.fsync is FsyncMode.INTERVAL:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sync_loop, name="sagaz-lakehouse spool fsync", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Sync what was written (unless ``never``), close the files and let the directory go. Segments whose events
        were all released are removed, the active one included."""
        if not self.opened:
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.fsync is not FsyncMode.NEVER:
            self.sync()
        with self._lock:
            fd, self._fd = self._fd, None
            pending, self._unsynced = self._unsynced, []
        for descriptor in [*pending, *([fd] if fd is not None else [])]:
            os.close(descriptor)
        self._close_reader()
        self.release(self.released)  # with no segment open for appending, the last one goes too if released
        for segment in [s for s in self.segments if s.count == 0]:
            self._remove(segment)
        os.close(self._lock_fd)  # type: ignore[arg-type]  # opened above
        self._lock_fd = self.owner_pid = None

    # ------------------------------------------------------------------------------------------ the hook side

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def append(self, event: SagaEvent) -> int:
        """Write the event (to the OS; to the disk too with fsync ``always``); returns its sequence number."""
        line = encode(event)
        if self._fd is None or self.segments[-1].size >= self.segment_bytes:
            self._roll()
        fd = self._fd
        assert fd is not None
        written = os.write(fd, line)
        while written < len(line):  # a regular file takes it whole unless the disk is full (then this raises)
            written += os.write(fd, line[written:])
        if self.fsync is FsyncMode.ALWAYS:
            os.fdatasync(fd)
        else:
            self._dirty = True
        segment = self.segments[-1]
        segment.count += 1
        segment.size += len(line)
        self.bytes += len(line)
        seq = self.next_seq
        self.next_seq = seq + 1
        if seq % AGE_SAMPLE_EVERY == 0:
            self._ages.append((seq, time.time()))
        return seq

    def _roll(self) -> None:
        """Start a new segment after the last one (the first append after open always does: old segments are
        never appended to, their last line may be torn)."""
        segment = Segment(self.next_seq, self.directory / f"{self.next_seq:020d}{SUFFIX}")
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        with self._lock:
            old, self._fd = self._fd, fd
            if old is not None:
                if self.fsync is FsyncMode.INTERVAL:
                    self._unsynced.append(old)  # the thread syncs and closes it
                else:
                    os.close(old)
            self._dir_dirty = True
        if self.fsync is FsyncMode.ALWAYS:
            self._sync_directory()
        self._add(segment)
        self._ages.append((segment.base, time.time()))

    # ------------------------------------------------------------------------------------------ fsync

    def sync(self) -> None:
        """Force everything appended so far to the disk (any thread)."""
        started = time.monotonic()
        with self._lock:
            pending, self._unsynced = self._unsynced, []
            current = os.dup(self._fd) if self._fd is not None and self._dirty else None
            self._dirty = False
            directory, self._dir_dirty = self._dir_dirty, False
        for fd in [*pending, *([current] if current is not None else [])]:
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        if directory:
            self._sync_directory()
        if pending or current is not None or directory:
            self.syncs += 1
            self.sync_seconds += time.monotonic() - started

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval):
            try:
                self.sync()
            except OSError as exc:  # the disk failed: the next round tries again, the events stay written
                log.error("spool fsync in %s failed: %s", self.directory, exc)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------------------------ the writer side

    def read(self, seq: int, limit: int) -> tuple[list[tuple[int, SagaEvent]], int]:
        """Up to ``limit`` events from sequence number ``seq`` on, in order; and the sequence number after the last
        line read (damaged lines are skipped: counted in ``corrupt``)."""
        out: list[tuple[int, SagaEvent]] = []
        while len(out) < limit and seq < self.next_seq:
            reader = self._position(seq)
            if reader is None:  # released meanwhile, or a gap between segments: go to the next one
                later = bisect.bisect_right(self._bases, seq)
                if later >= len(self.segments):
                    break
                seq = self.segments[later].base
                continue
            segment, handle, _ = reader
            while len(out) < limit and seq < segment.end:
                line = handle.readline()
                event = decode(line)
                if event is None:
                    self.corrupt += 1
                    log.warning("spool %s: line %d is damaged (torn write?); skipped", segment.path, seq - segment.base)
                else:
                    out.append((seq, event))
                seq += 1
            self._reader = (segment, handle, seq)
        return out, seq

    def _position(self, seq: int) -> tuple[Segment, IO[bytes], int] | None:
        if self._reader is not None and self._reader[2] == seq and seq < self._reader[0].end:
            return self._reader
        index = bisect.bisect_right(self._bases, seq) - 1
        if index < 0 or seq >= self.segments[index].end:
            return None
        segment = self.segments[index]
        self._close_reader()
        handle = segment.path.open("rb")
        for _ in range(seq - segment.base):
            handle.readline()
        self._reader = (segment, handle, seq)
        return self._reader

    def release(self, upto: int) -> int:
        """Delete every segment whose events all lie below ``upto``, except the one being appended to (``close``
        removes that one too); returns the bytes freed."""
        self.released = max(self.released, upto)
        freed = 0
        while self.segments and self.segments[0].end <= upto and not (
                self._fd is not None and len(self.segments) == 1):
            freed += self._remove(self.segments[0])
        while len(self._ages) > 1 and self._ages[1][0] <= upto:
            self._ages.popleft()
        return freed

    def appended_at(self, seq: int) -> float | None:
        """Wall time (seconds) at or before which event ``seq`` was appended (None: nothing that old is known)."""
        stamp = None
        for sample_seq, wall in self._ages:
            if sample_seq > seq:
                break
            stamp = wall
        return stamp

    def _add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._bases.append(segment.base)
        self.bytes += segment.size

    def _remove(self, segment: Segment) -> int:
        if self._reader is not None and self._reader[0] is segment:
            self._close_reader()
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        index = self.segments.index(segment)
        del self.segments[index]
        del self._bases[index]
        self.bytes -= segment.size
        return segment.size

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None
