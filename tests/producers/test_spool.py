"""The spool shared by many processes: each record replayed by one of them, none lost."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from lammps_stream.errors import InvalidRecordError
from lammps_stream.schemas import encode, example_run_record, new_id
from producers.spool import Spool


def test_a_claimed_record_is_invisible_to_other_replays_until_released(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.put(example_run_record(run_id=new_id()))
    claimed = spool.claim(path)
    assert claimed is not None and spool.claim(path) is None
    assert len(spool) == 0
    spool.release(claimed)
    assert [p for p, _ in spool.pending()] == [path]


def test_a_failed_record_never_replaces_the_same_runs_finished_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    run_id = new_id()
    spool.put(example_run_record(run_id=run_id))
    spool.put(example_run_record(run_id=run_id, status="failed"))
    assert sorted(r["status"] for _, r in spool.pending()) == ["failed", "ok"]


def test_a_claim_left_by_a_dead_process_is_replayed_once_stale(tmp_path: Path) -> None:
    spool = Spool(tmp_path, stale_seconds=60)
    claimed = spool.claim(spool.put(example_run_record(run_id=new_id())))
    assert claimed is not None and len(spool) == 0
    _, rest = claimed.name.removeprefix(".sending-").split("-", 1)
    claimed.rename(claimed.with_name(f".sending-{int(time.time()) - 120}.dead-{rest}"))
    assert len(spool) == 1


def test_a_record_put_back_keeps_its_place_in_the_queue(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    run_id = new_id()
    finished = spool.put(example_run_record(run_id=run_id))
    failed = spool.put(example_run_record(run_id=run_id, status="failed"))
    os.utime(finished, (time.time() - 60, time.time() - 60))  # spooled a minute earlier
    for _ in range(3):  # replays that the broker turned away
        spool.release(spool.claim(finished))
    assert [path for path, _ in spool.pending()] == [finished, failed]


def test_files_vanishing_mid_listing_are_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.put(example_run_record(run_id=new_id()))
    second = spool.put(example_run_record(run_id=new_id()))
    listing = spool.pending()
    seen, _ = next(listing)
    (second if seen == first else first).unlink()  # another replay took it meanwhile
    assert list(listing) == []


def test_an_unwritable_directory_leaves_no_temporary_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a-file")
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(OSError):
        spool.put(example_run_record(run_id=new_id()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def _replay(directory: str, claimed_by: multiprocessing.Queue) -> None:
    spool = Spool(Path(directory))
    for path, record in spool.pending():
        claimed = spool.claim(path)
        if claimed is not None:
            claimed_by.put(record["run_id"])
            spool.done(claimed)


def test_processes_replaying_one_spool_take_each_record_exactly_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    run_ids = [new_id() for _ in range(200)]
    for run_id in run_ids:
        spool.put(example_run_record(run_id=run_id))
    claimed_by: multiprocessing.Queue = multiprocessing.Queue()
    replays = [
        multiprocessing.Process(target=_replay, args=(str(tmp_path), claimed_by)) for _ in range(4)
    ]
    for replay in replays:
        replay.start()
    for replay in replays:
        replay.join(timeout=60)
        assert replay.exitcode == 0
    taken = [claimed_by.get(timeout=5) for _ in range(len(run_ids))]
    assert sorted(taken) == sorted(run_ids)
    assert claimed_by.empty() and len(spool) == 0 and not list(tmp_path.iterdir())


def test_a_write_whose_process_died_is_finished_or_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path, stale_seconds=60)
    record = example_run_record(run_id=new_id())
    whole, torn = tmp_path / ".tmp-a1.json", tmp_path / ".tmp-b2.json"
    whole.write_bytes(encode(record))  # written and synced; the rename never came
    torn.write_bytes(encode(record)[:40])
    assert len(spool) == 0  # fresh: its writer may still be at work
    old = time.time() - 120
    for path in (whole, torn):
        os.utime(path, (old, old))
    assert [r for _, r in spool.pending()] == [record]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".unreadable-b2.json",
        f"{record['run_id']}-ok.json",
    ]


def test_a_record_no_json_can_hold_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    record = example_run_record(run_id=new_id())
    record["params"]["vars"] = {"t": float("inf")}
    with pytest.raises(InvalidRecordError, match="cannot be written as JSON") as refused:
        spool.put(record)
    assert refused.value.code == "not_finite"
    assert list(tmp_path.iterdir()) == []


def test_a_record_set_aside_is_kept_but_never_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.put(example_run_record(run_id=new_id()))
    claimed = spool.claim(path)
    assert claimed is not None
    kept = spool.set_aside(claimed)
    assert kept.name == f".unreadable-{path.name}" and kept.exists()
    assert len(spool) == 0 and [p.name for p in tmp_path.iterdir()] == [kept.name]


def test_counting_the_spool_touches_nothing(tmp_path: Path) -> None:
    """``produce --flush --dry-run`` only counts: a stale claim and a stale write are counted
    as records a replay would send, and left exactly as they are."""
    spool = Spool(tmp_path, stale_seconds=0.0)
    spool.put(example_run_record(run_id=new_id()))
    claimed = spool.claim(spool.put(example_run_record(run_id=new_id())))
    stale_write = tmp_path / ".tmp-dead.json"
    stale_write.write_bytes(encode(example_run_record(run_id=new_id())))
    time.sleep(0.01)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert len(spool) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == before and claimed.exists()
