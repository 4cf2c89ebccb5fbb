"""The disk cache's lock-file protocol: eviction deletes lock files without two processes ever locking
different files for one model directory (no sockets; flock conflicts between open files in one process
exactly as between worker processes)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from endpoint.download import _exclusive, _lock_shared


def test_a_waiter_on_a_lock_file_that_eviction_deletes_locks_the_new_file_at_the_path(tmp_path: Path) -> None:
    lock_path = tmp_path / "locks" / "model"
    lock_path.parent.mkdir()
    acquired: list[int] = []
    # Given an evictor holding the lock file exclusively
    with _exclusive(lock_path) as locked:
        assert locked
        # When a fetcher opens the same file and waits for its shared lock
        waiter = threading.Thread(target=lambda: acquired.append(_lock_shared(lock_path)))
        waiter.start()
        time.sleep(0.2)
        assert acquired == []  # still blocked behind the evictor
        # and the evictor deletes the lock file before letting go
        os.unlink(lock_path)
    waiter.join(timeout=5)
    # Then the fetcher holds a lock on the file now at the path, not on the deleted one (a deleted
    # file has no links; the inode number itself may be reused once the old file is closed)
    [fd] = acquired
    try:
        held = os.fstat(fd)
        assert held.st_nlink == 1
        assert held.st_ino == os.stat(lock_path).st_ino
        # and an evictor can no longer take it
        with _exclusive(lock_path) as locked:
            assert not locked
    finally:
        os.close(fd)


def test_an_evictor_holding_a_deleted_file_does_not_count_as_holding_the_lock(tmp_path: Path) -> None:
    lock_path = tmp_path / "model"
    # Given a lock file that another evictor deletes after this one opened it
    with _exclusive(lock_path) as first:
        assert first
        os.unlink(lock_path)
        # When a second evictor locks the path meanwhile, Then it gets the new file, not the deleted one
        with _exclusive(lock_path) as second:
            assert second
            assert lock_path.exists()
