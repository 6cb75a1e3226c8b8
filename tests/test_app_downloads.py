"""The app on a fresh machine: empty TORCH_HOME / HF_HOME and the loopback mirror (tests/mirror.py) standing in for
download.pytorch.org and the Hugging Face Hub. Compare downloads the Kinetics-400 weights with progress, never
twice; a stalled server fails one request clearly while other users are served."""

from __future__ import annotations

import threading
import time

import pytest

import lens
import mvt
from mvt import labels as mvt_labels
from mvt.models.vivit import HF_REPO, HF_REVISION
from mvt.weights import WeightsSource
from tests.mirror import register_test_model
from tests.test_app import analyse, make_moving_square

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture
def forget_models():
    """Models built from the mirror's random weights leave the app's caches after the test."""
    import app

    names: list[str] = []
    yield names
    for n in names:
        app.SERVICE.forget(n)


def _own_hash_mvit(
    mirror, monkeypatch, *, real_size: bool = True, arch: str = "mvit_v2_s", tag: str = "k400mirror"
):
    """A torchvision-style entry whose URL carries the served file's own SHA-256 prefix (random weights cannot
    match torchvision's), checked by the same code as the real ``mvit_v2_s.k400``."""
    url, request_path, served = mirror.standard.serve_with_own_hash(mirror, arch, real_size=real_size)
    base = f"{arch}.k400" if arch == "mvit_v2_s" else f"{arch}.untrained"
    name = register_test_model(
        monkeypatch, f"{arch}.{tag}", base, weights=WeightsSource(kind="url", url=url), trained=True
    )
    return name, request_path, served


@pytest.mark.slow
def test_cold_cache_compare_downloads_kinetics_models_once_and_names_their_classes(
    app_url, weights_mirror, monkeypatch, tmp_path, forget_models
):
    m = weights_mirror
    # ViViT-B at its real size, built before the server is asked for it
    hub_file = m.standard.vivit("vivit_b_16x2")()
    m.add_hf(HF_REPO, "pytorch_model.bin", hub_file)
    mvit, mvit_path, served = _own_hash_mvit(m, monkeypatch)
    names = ["vivit_b_16x2.k400", mvit]
    forget_models += names
    labels = dict((n, lab) for lab, n in lens.defaults.model_choices(probe=True))
    hub_size = hub_file.stat().st_size
    assert f"downloads {mvt.weights.format_size(hub_size)} on first use" in labels["vivit_b_16x2.k400"]
    assert f"downloads {mvt.weights.format_size(served.stat().st_size)} on first use" in labels[mvit]

    client = Client(app_url, verbose=False)
    clip = make_moving_square(tmp_path / "a.mp4", seed=1)
    out = analyse(client, clip, names, methods=["attention"])
    kinetics = set(mvt_labels.get_labels("kinetics400"))
    for model in out["models"]:
        assert "error" not in model, model
        assert len(model["top5"]) == 5 and {p["label"] for p in model["top5"]} <= kinetics
    _, blob = m.hf_paths(HF_REPO, "pytorch_model.bin", HF_REVISION)
    assert m.count(blob, "GET") == 1 and m.count(mvit_path, "GET") == 1
    import app

    for n in names:  # the comparison's result, from the app's cache: its download is timed
        (r,) = app.SERVICE.analyse(clip, [n], ["attention"]).results
        assert "download weights" in r.timings

    before = m.counts()
    again = analyse(client, make_moving_square(tmp_path / "b.mp4", seed=2), names, methods=["attention"])
    assert all("error" not in x for x in again["models"])
    assert m.counts() == before, "the second Compare downloads nothing"


def test_stalled_mirror_fails_one_request_clearly_while_another_client_is_served(
    app_url, weights_mirror, monkeypatch, tmp_path, forget_models
):
    m = weights_mirror
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "6")
    stalled, path, _ = _own_hash_mvit(m, monkeypatch, real_size=False, arch="hvt_t", tag="stalltest")
    forget_models.append(stalled)
    m.set_mode("stalled", path)
    box: dict = {}

    def stalled_request() -> None:
        t0 = time.monotonic()
        try:  # the model's error comes back in its place in the answer
            out = analyse(
                Client(app_url, verbose=False), make_moving_square(tmp_path / "s.mp4", seed=4), [stalled]
            )
            box["error"] = out["models"][0]["error"]
        except AppError as e:
            box["error"] = str(e)
        box["seconds"], box["end"] = time.monotonic() - t0, time.monotonic()

    thread = threading.Thread(target=stalled_request)
    thread.start()
    time.sleep(1.0)  # the first request is waiting on the stalled server now
    synth = lens.defaults.set_models("SynthMotion")
    clip = make_moving_square(tmp_path / "ok.mp4", seed=5)
    ok = analyse(Client(app_url, verbose=False), clip, synth, methods=["attention"])
    served_at = time.monotonic()
    thread.join(90)
    assert all("error" not in x for x in ok["models"])
    assert "error" in box and box["seconds"] <= 60, box
    assert "sent nothing for 6" in box["error"] or "no data for 6" in box["error"], box["error"]
    assert served_at < box["end"], "the other client was served while the download hung"


def test_compare_reports_download_bytes_and_rate_and_never_holds_the_compute_slot(
    weights_mirror, monkeypatch, tmp_path, forget_models
):
    """Direct: progress while a (slowed) download runs says which model, bytes and MB/s; a cached model runs
    meanwhile — its result comes first although it was asked second."""
    import app

    m = weights_mirror
    name, path, served = _own_hash_mvit(m, monkeypatch, real_size=True, arch="mvit_t", tag="slowtest")
    forget_models.append(name)
    m.set_mode("slow", path)
    said: list[str] = []
    job = app.SERVICE.analyse_iter(
        make_moving_square(tmp_path / "p.mp4", seed=8),
        [name, "hvt_t.synth"],
        ["attention"],
        progress=lambda frac, what: said.append(what),
    )
    order = [entry.name for _, entry in job]
    assert order == ["hvt_t.synth", name], "the cached model does not wait for the other's download"
    downloading = [s for s in said if s.startswith("downloading weights") and "MB/s" in s]
    assert downloading and name in downloading[-1] and " / " in downloading[-1], said[:5]
    assert all(isinstance(e, lens.ModelResult) for e in job.analysis.entries)


def test_start_up_prefetches_in_the_background_and_warms_the_models_up(weights_mirror, monkeypatch, tmp_path):
    m = weights_mirror
    name, path, _ = _own_hash_mvit(m, monkeypatch, real_size=True, arch="mvit_t", tag="starttest")
    service = lens.Service(out_dir=tmp_path / "out")
    clip = make_moving_square(tmp_path / "warm.mp4", seed=13)
    done = lens.startup.run(service, "custom", names=[name, "hvt_t.synth", "nope_t.untrained"], clip=clip)
    assert m.count(path, "GET") == 1 and set(service.models.loaded()) == {name, "hvt_t.synth"}
    assert isinstance(done[name], float) and isinstance(done["hvt_t.synth"], float)
    assert "nope_t.untrained" in done["nope_t.untrained"], "an unknown model is reported, not raised"
    # the warm-up went through the service: the same request now comes from its cache, without a model run
    assert service.analyse(clip, [name, "hvt_t.synth"], lens.startup.WARM_METHODS).entries[0].timings
    before = m.counts()
    thread = lens.startup.start(
        service, "custom"
    )  # nothing to fetch, no example for 'custom': returns quietly
    thread.join(30)
    assert not thread.is_alive() and m.counts() == before


def test_model_labels_say_cached_after_the_compare_that_downloaded_them(
    weights_mirror, monkeypatch, tmp_path, forget_models
):
    """The model list is relabelled by the Compare that downloaded weights: ``downloads … MB`` becomes
    ``cached`` without reloading the page."""
    from tests.test_app import run_compare

    m = weights_mirror
    name, _, served = _own_hash_mvit(m, monkeypatch, real_size=False, arch="mvit_t", tag="relabel")
    forget_models.append(name)
    labels = dict((n, lab) for lab, n in lens.defaults.model_choices(probe=True))
    assert "downloads" in labels[name]
    out, steps = run_compare(make_moving_square(tmp_path / "r.mp4", seed=4), [name], methods=[])
    assert "models" not in steps[0], "the labels change once the download is done, not before"
    after = dict((n, lab) for lab, n in out["models"]["choices"])
    assert "cached" in after[name] and "downloads" not in after[name], after[name]
    assert out["models"]["value"] == [name]
