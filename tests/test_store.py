"""The run directory's layout: the results folder holds the table alone."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raysweep import store


def test_a_run_of_the_older_layout_has_its_records_moved_beside_the_table(tmp_path):
    run = store.RunDir(tmp_path)
    (run.results / "failed").mkdir(parents=True)
    (run.results / "failed" / "trial-b.json").write_text(json.dumps({"trial_key": "b", "name": "b", "cause": "x"}))
    pq.write_table(pa.table({"trial_key": ["a"], "loss": [1.0]}), run.trial_file("a"))
    assert store.finished_keys(run) == ({"a"}, [])
    assert [f["trial_key"] for f in store.read_failures(run)] == ["b"]
    assert sorted(p.name for p in run.results.iterdir()) == ["trial-a.parquet"]
    assert pd.read_parquet(run.results)["trial_key"].tolist() == ["a"]
