"""The run directory's layout: the results folder holds the table alone; writes ride out a storage outage."""

from __future__ import annotations

import errno
import json
import threading

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysweep import store
from raysweep.files import write_through_outage

from conftest import wait_for


def test_a_run_of_the_older_layout_has_its_records_moved_beside_the_table(tmp_path):
    run = store.RunDir(tmp_path)
    (run.results / "failed").mkdir(parents=True)
    (run.results / "failed" / "trial-b.json").write_text(json.dumps({"trial_key": "b", "name": "b", "cause": "x"}))
    pq.write_table(pa.table({"trial_key": ["a"], "loss": [1.0]}), run.trial_file("a"))
    assert store.finished_keys(run) == ({"a"}, [])
    assert [f["trial_key"] for f in store.read_failures(run)] == ["b"]
    assert sorted(p.name for p in run.results.iterdir()) == ["trial-a.parquet"]
    assert pd.read_parquet(run.results)["trial_key"].tolist() == ["a"]


def test_a_write_into_a_folder_that_is_away_waits_for_it_and_never_creates_it(tmp_path):
    folder, heard, came_back = tmp_path / "share", [], []

    def come_back() -> None:
        wait_for(lambda: heard, "the writer meeting the outage")
        folder.mkdir()  # fails if the writer had created it meanwhile
        came_back.append(True)

    thread = threading.Thread(target=come_back)
    thread.start()
    waited = write_through_outage(folder / "trial.json", lambda staging: staging.write_text("{}"), 30.0, heard.append)
    thread.join()
    assert came_back and (folder / "trial.json").read_text() == "{}" and waited > 0
    assert [err.errno for err in heard] == [errno.ENOENT]  # heard once, however often it retried


def test_a_write_gives_up_after_its_patience_and_says_the_storage_is_unavailable(tmp_path):
    with pytest.raises(OSError, match="storage unavailable for 0 s") as raised:
        write_through_outage(tmp_path / "away" / "trial.json", lambda staging: staging.write_text("{}"), 0.3,
                             lambda err: None)
    assert raised.value.errno == errno.ENOENT and not (tmp_path / "away").exists()


def test_a_full_disk_is_not_waited_for(tmp_path):
    attempts = []

    def full(staging) -> None:
        attempts.append(staging)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_through_outage(tmp_path / "trial.json", full, 30.0, lambda err: None)
    assert len(attempts) == 1 and list(tmp_path.iterdir()) == []
