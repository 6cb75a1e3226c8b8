"""lens.dataset with the local engine: sources, the per-clip rows, the output folder, --resume, the summary,
the report and ``python -m mvt analyse-dataset``. The Ray engine is tested in test_dataset_ray.py."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="pyarrow comes with requirements-scale.txt (CI installs it)")
import pyarrow.parquet as pq  # noqa: E402

from lens.cli import main  # noqa: E402
from lens.core.request import LensError  # noqa: E402
from lens.dataset import (  # noqa: E402
    COLUMNS,
    DatasetConfig,
    RowConfig,
    analyse_dataset,
    plan,
    read_source,
    summarise,
    synth_refs,
)
from lens.dataset.schema import schema  # noqa: E402
from lens.dataset.sources import shuffle_order  # noqa: E402
from lens.dataset.summary import mean_ci, rate_ci  # noqa: E402
from mvt import synth  # noqa: E402
from tests.lens.dataset.clips import write_clip_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
MODEL = "hvt_t.synth"
FAST = {"threads": 1, "progress": False}


def run(source, methods=(), out=None, *, models=(MODEL,), steps=2, row=None, **config):
    """``analyse_dataset`` with small settings: ``row`` fields go to the rows' config, the rest to the run's."""
    rows = RowConfig(methods=tuple(methods), steps=steps, **(row or {}))
    return analyse_dataset(source, list(models), DatasetConfig(rows, out=out, **{**FAST, **config}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_clip_folder(tmp_path_factory.mktemp("dataset") / "clips")


# -- sources -------------------------------------------------------------------------------------------------


def test_sources_folder_glob_lists_and_synth(folder, tmp_path):
    found = read_source(str(folder.root))
    names = [Path(r.path).name for r in found]
    assert len(found) == 6 and "readme.txt" not in names and "clip_03.mp4" in names, "recursive, videos only"
    assert [r.index for r in found] == list(range(6)) and all(r.clip_id == r.path for r in found)
    assert len(read_source(str(folder.root / "*.mp4"))) == 5, "a glob is not recursive unless it says **"
    good = sorted(folder.good)
    (tmp_path / "list.txt").write_text(f"# clips\n{good[0]}\n\n{os.path.relpath(good[1], tmp_path)}\n")
    refs = read_source(str(tmp_path / "list.txt"))
    assert [r.path for r in refs] == [str(good[0]), str(good[1])], "relative to the list's folder"
    (tmp_path / "l.csv").write_text(f"label,path,start_s\ngrow,{good[0]},0.5\n,{good[1]},0\n")
    a, b = read_source(str(tmp_path / "l.csv"))
    assert (a.label, a.start_s, b.label, b.start_s) == ("grow", 0.5, None, None), "0 s: the whole clip"
    (tmp_path / "p.csv").write_text(f"{good[0]},3,1.25\n")
    (c,) = read_source(str(tmp_path / "p.csv"))
    assert (c.path, c.label, c.start_s) == (str(good[0]), "3", 1.25), "positional path,label,start_s"
    s = read_source("synth:10:4")
    assert [r.clip_id for r in s[:2]] == ["synth:4:0", "synth:4:1"]
    assert [r.label for r in s] == [synth.CLASSES[synth.label_for(i, 4)] for i in range(10)]


@pytest.mark.parametrize(
    ("src", "needle"),
    [
        ("synth:ten:1", "synth:N:SEED"),
        ("/no/such/folder", "not found"),
        ("/tmp/*.nothing-here", "matches no"),
    ],
)
def test_bad_sources_say_what_to_do(src, needle):
    with pytest.raises(LensError, match=needle):
        read_source(src)


def test_shuffled_order_is_the_trainers_stream():
    # mvt.train.evaluate(..., shuffle_frames=True) draws clip i's order as the i-th permutation of this rng.
    rng = np.random.default_rng([5, 7])
    expected = [rng.permutation(16) for _ in range(6)]
    refs = synth_refs(6, 5)
    for i in (3, 4, 5, 0, 1, 2):  # out of order: the stream is replayed
        assert np.array_equal(shuffle_order(refs[i], 16), expected[i])


def test_plan_sizes_the_pool_to_the_machine():
    p = plan(2.0)
    assert (p.actors, p.threads, p.actor_gpus) == (2, 1, 0.0)
    assert p.actors * p.actor_cpus + p.decode_cpus <= 2.0, "the actors leave room for the decode tasks"
    assert plan(2.0, actors=1, threads=2).actor_cpus == pytest.approx(1.75)
    g = plan(32.0, 4.0)
    assert (g.actors, g.actor_gpus, g.decode_cpus) == (4, 1.0, 1.0)


# -- rows, errors, files -------------------------------------------------------------------------------------


def test_folder_with_broken_files_gives_error_rows_for_exactly_those(folder, tmp_path):
    out = tmp_path / "out"
    r = run(str(folder.root), ["rollout"], out, faithfulness_n=1, row={"volumes": True})
    rows = pq.read_table(out / "results.parquet")
    assert rows.schema.equals(schema()) and rows.num_rows == 6 and not r.missing
    errors = {Path(p).name: e for p, e in zip(rows["path"].to_pylist(), rows["error"].to_pylist()) if e}
    assert set(errors) == {p.name for p in folder.broken}, errors
    assert "not a video file" in errors["notes_not_a_video.mp4"]
    ok = [x for x in rows.to_pylist() if x["error"] is None]
    assert all(x["pred"] is not None and len(x["topk_probs"]) == 5 and x["sha256"] for x in ok)
    assert all(x["label"] is None and x["correct"] is None for x in ok), "a folder has no labels"
    scored = [x for x in ok if x["scores"][0]["deletion_auc"] is not None]
    assert len(scored) == 1 and scored[0]["index"] == 0, "deletion / insertion on the first clip only"
    assert {s["method"] for s in ok[0]["scores"]} == {"attention", "rollout", "random", "center"}
    assert all(s["pointing_game"] is None for x in ok for s in x["scores"]), "no masks for files"
    vols = sorted((out / "volumes").glob("*.npz"))
    assert len(vols) == 4, "one .npz per readable clip"
    with np.load(vols[0]) as z:
        assert f"{MODEL}/rollout" in z.files and f"{MODEL}/attention_0" in z.files
    s = json.loads((out / "summary.json").read_text())
    assert s["models"][MODEL]["errors"] == 2 and s["error_rows"] == 2
    page = (out / "summary.html").read_text()
    assert page.count('class="plotly-graph-div"') == 3 and "Plotly.newPlot" in page


def test_labels_from_a_csv_are_scored(folder, tmp_path):
    good = sorted(folder.good)[:2]
    lst = tmp_path / "labels.csv"
    lst.write_text("path,label\n" + "".join(f"{p},{folder.good[p]}\n" for p in good))
    r = run(str(lst), row={"shuffled": True})
    for row, p in zip(r.rows, good):
        assert row["label_name"] == folder.good[p]
        assert row["label"] == synth.CLASSES.index(folder.good[p]) == row["target"]
        assert row["correct"] == (row["pred"] == row["label"]) and row["shuffled_pred"] is not None
        assert row["scores"] == [] and len(row["stage_entropy"]) >= 3, "no methods: predictions and stats"


def test_synth_rows_have_masks_and_seeded_baselines():
    refs = synth_refs(2, 3)
    a = run(refs, ["rollout"], faithfulness_n=0).rows
    b = run(refs[1:], ["rollout"], faithfulness_n=0).rows
    untimed = [[{k: v for k, v in s.items() if k != "seconds"} for s in r["scores"]] for r in (a[1], b[0])]
    assert untimed[0] == untimed[1], "a clip's numbers do not depend on which clips ran before it"
    pg = {s["method"]: s["pointing_game"] for s in a[0]["scores"]}
    assert pg["oracle"] == 1.0 and set(pg) == {"attention", "rollout", "random", "center", "oracle"}
    assert all(s["deletion_auc"] is None for s in a[0]["scores"])


def test_an_unknown_model_or_engine_or_a_missing_ray_is_refused(monkeypatch):
    with pytest.raises(LensError, match="no_such"):
        run("synth:1:0", models=["no_such.model"])
    with pytest.raises(LensError, match="engine"):
        run("synth:1:0", engine="spark")
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find(name, *a)
    )
    with pytest.raises(LensError, match="requirements-scale.txt"):
        run("synth:1:0", engine="ray")


def test_an_existing_folder_needs_resume_and_the_same_settings(tmp_path):
    run("synth:2:1", (), tmp_path, report=False)
    with pytest.raises(LensError, match="--resume"):
        run("synth:2:1", (), tmp_path)
    with pytest.raises(LensError, match="other settings"):
        run("synth:2:1", ["rollout"], tmp_path, resume=True)
    again = run("synth:3:1", (), tmp_path, resume=True, report=False)
    assert (again.skipped, again.computed, len(again.rows)) == (2, 1, 3)


def test_resume_after_a_killed_run_does_no_clip_twice(tmp_path):
    out = tmp_path / "out"
    args = ["analyse-dataset", "synth:16:2", "--models", MODEL, "--methods", "rollout", "--out", str(out)]
    args += ["--threads", "1", "--flush-every", "1", "--faithfulness-n", "0"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mvt", *args], cwd=ROOT, stderr=err)
    deadline = time.monotonic() + 240
    while len(list((out / "parts").glob("part-*.parquet"))) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, f"the run wrote no parts: {log.read_text()[-2000:]}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = pa.concat_tables([pq.read_table(p) for p in (out / "parts").glob("part-*.parquet")])
    done = set(first["clip_id"].to_pylist())
    assert 2 <= len(done) < 16, "killed mid-run"
    assert not (out / "results.parquet").exists()

    assert main([*args, "--resume"]) == 0
    parts = pa.concat_tables([pq.read_table(p) for p in (out / "parts").glob("part-*.parquet")])
    ids = parts["clip_id"].to_pylist()
    assert sorted(ids) == sorted(f"synth:2:{i}" for i in range(16)), "every clip once, none twice"
    runs = dict(zip(ids, parts["run"].to_pylist()))
    assert len(set(runs.values())) == 2
    assert {c for c, r in runs.items() if r == runs[next(iter(done))]} == done, "the resumed run did the rest"
    assert pq.read_table(out / "results.parquet")["index"].to_pylist() == list(range(16))


def test_cli_prints_progress_and_a_summary(tmp_path, capfd):
    args = ["analyse-dataset", "synth:3:6", "--models", "hvt_t.*", "--methods", "--out", str(tmp_path)]
    assert main([*args, "--threads", "1", "--shuffled"]) == 0
    out, err = capfd.readouterr()
    assert "clip/s" in err and "ETA" in err and "3/3" in err
    assert "hvt_t.synth: 3 clips, 0 errors, top-1" in out and "hvt_t.untrained: 3 clips" in out
    assert "3 clips analysed, 0 already done" in out and "summary.html" in out


# -- summary -------------------------------------------------------------------------------------------------


def test_intervals():
    w = rate_ci([1.0] * 8 + [0.0] * 2)  # Wilson 95 % for 8/10: 0.490 .. 0.943
    assert w["mean"] == 0.8 and w["lo"] == pytest.approx(0.4902, abs=1e-4)
    assert w["hi"] == pytest.approx(0.9433, abs=1e-4) and w["n"] == 10
    m = mean_ci([1.0, 2.0, 3.0, None, float("nan")])
    assert m["mean"] == 2.0 and m["n"] == 3 and m["hi"] - 2.0 == pytest.approx(1.96 / math.sqrt(3), rel=1e-3)
    assert mean_ci([])["mean"] is None


def test_summary_of_rows():
    base = {"model": "m", "error": None, "label": 1, "shuffled_pred": None, "stage_entropy": [0.5, 0.7]}
    base |= {"stage_distance_px": [3.0, 4.0], "stage_distance_frames": [1.0, 1.0], "seconds_forward": 0.5}
    rows = [
        base | {"clip_id": "a", "correct": True, "scores": [{"method": "rollout", "pointing_game": 1.0}]},
        base | {"clip_id": "b", "correct": False, "scores": [{"method": "rollout", "pointing_game": 0.0}]},
        {"clip_id": "c", "model": "m", "error": "bad file"},
    ]
    s = summarise(rows, ["m"])["models"]["m"]
    assert (s["clips"], s["errors"], s["accuracy"]["mean"], s["accuracy"]["n"]) == (3, 1, 0.5, 2)
    assert s["methods"]["rollout"]["pointing_game"]["mean"] == 0.5
    assert s["methods"]["rollout"]["deletion_auc"]["n"] == 0
    assert [st["entropy"]["mean"] for st in s["stages"]] == [0.5, 0.7]


def test_every_column_is_documented_and_typed():
    assert set(schema().names) == set(COLUMNS)
    assert all(len(meaning) > 10 for _, meaning in COLUMNS.values())


def test_importing_lens_loads_neither_ray_nor_pyarrow():
    """The app and ``evaluate`` run without requirements-scale.txt: only a Ray run imports Ray and only
    writing Parquet imports pyarrow."""
    code = (
        "import sys, lens, lens.dataset.evaluate, lens.dataset, lens.cli\n"
        "loaded = [m for m in ('ray', 'pyarrow') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
