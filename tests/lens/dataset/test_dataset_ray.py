"""lens.dataset on Ray Data, for real: local Ray with 2 CPUs, one session for the module (start-up costs
seconds). Same rows as the local engine, decode errors as rows, and a worker killed mid-run."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray comes with requirements-scale.txt (CI installs it)")
import pyarrow.parquet as pq  # noqa: E402

from lens.dataset import DatasetConfig, RowConfig, analyse_dataset  # noqa: E402
from lens.dataset.engines import connect  # noqa: E402
from tests.lens.dataset.clips import write_clip_folder  # noqa: E402

MODEL = "hvt_t.synth"
TIMINGS = {"seconds_decode", "seconds_forward", "seconds_explain", "seconds_scores", "worker", "run"}


@pytest.fixture(scope="module")
def ray_session():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)  # local Ray, whatever the environment says
        started = connect(num_cpus=2)
        yield
        if started:
            ray.shutdown()


def _close(a, b, path: str = "") -> list[str]:
    """Where two row values differ (floats by more than 1e-6; NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6
        return [] if same else [f"{path}: {a} vs {b}"]
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a if k != "seconds" for d in _close(a[k], b[k], f"{path}.{k}")]  # a method's time
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_ray_and_local_engines_give_the_same_rows(ray_session, tmp_path):
    # sinks: each actor probes the model itself, so the same keys everywhere
    rows = RowConfig(methods=("rollout", "saliency", "token_flow"), steps=3, shuffled=True, sinks=True)
    kw = {"faithfulness_n": 4, "threads": 1, "progress": False, "report": False}
    local = analyse_dataset("synth:40:5", [MODEL], DatasetConfig(rows, out=tmp_path / "local", **kw))
    on_ray = analyse_dataset(
        "synth:40:5", [MODEL], DatasetConfig(rows, out=tmp_path / "ray", engine="ray", actors=2, **kw)
    )
    a = pq.read_table(tmp_path / "local" / "results.parquet").to_pylist()
    b = pq.read_table(tmp_path / "ray" / "results.parquet").to_pylist()
    assert len(a) == len(b) == 40 and not on_ray.missing
    assert len({r["worker"] for r in b}) == 2 and {r["worker"] for r in a}.isdisjoint(r["worker"] for r in b)
    assert [r["pred"] for r in a] == [r["pred"] for r in b]
    diffs = [
        d
        for x, y in zip(a, b)
        for k in x
        if k not in TIMINGS
        for d in _close(x[k], y[k], f"{x['clip_id']}.{k}")
    ]
    assert not diffs, diffs[:10]
    assert sum(r["scores"][0]["deletion_auc"] is not None for r in b) == 4
    assert local.summary["models"][MODEL]["accuracy"] == on_ray.summary["models"][MODEL]["accuracy"]


def test_broken_files_are_error_rows_on_ray_and_volumes_come_back(ray_session, tmp_path):
    folder = write_clip_folder(tmp_path / "clips", n_good=2)
    out = tmp_path / "out"
    rows = RowConfig(methods=("rollout",), volumes=True)
    config = DatasetConfig(
        rows, out=out, engine="ray", actors=1, faithfulness_n=0, progress=False, report=False
    )
    r = analyse_dataset(str(folder.root), [MODEL], config)
    errors = {Path(x["path"]).name for x in r.rows if x["error"]}
    assert errors == {p.name for p in folder.broken} and len(r.rows) == 4 and not r.missing
    files = sorted((out / "volumes").glob("*.npz"))
    assert len(files) == 2, "the driver writes what the workers computed, for the readable clips"
    with np.load(files[0]) as z:
        assert f"{MODEL}/rollout" in z.files and z[f"{MODEL}/rollout"].ndim == 3


def test_a_worker_killed_mid_run_is_retried_and_every_row_completes(ray_session, tmp_path):
    killed: list[int] = []
    after: list[str] = []

    def kill_first_worker(rows: list[dict]) -> None:
        if not killed:
            pid = int(rows[0]["worker"].rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        else:
            after.append(rows[0]["worker"])

    config = DatasetConfig(
        RowConfig(methods=("rollout",)),
        out=tmp_path / "out",
        engine="ray",
        actors=2,
        threads=1,
        faithfulness_n=0,
        progress=False,
        report=False,
        on_clip=kill_first_worker,
    )
    r = analyse_dataset("synth:16:8", [MODEL], config)
    assert killed and len(after) == 15, "the kill happened with clips left to do"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    ids = pq.read_table(tmp_path / "out" / "results.parquet")["clip_id"].to_pylist()
    assert sorted(ids) == sorted(f"synth:8:{i}" for i in range(16)) and not r.missing, "every clip, once"
