"""Downloads through the real clients (urllib for URL files, huggingface_hub.hf_hub_download for the hub) against
the loopback mirror (tests/mirror.py): status, progress, integrity checks, stalls, sharing, offline."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from pathlib import Path

import pytest
import torch

import mvt
from mvt import prefetch, weights
from mvt.models.vivit import HF_REPO, HF_REVISION
from mvt.weights import WeightsSource
from tests.mirror import register_test_model, save_state, vivit_hub_config


def _checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _hashed_entry(
    mirror, monkeypatch, arch: str = "mvit_t", *, real_size: bool = True, tag: str = "mirrortest"
):
    """A test model whose URL carries the served file's own SHA-256 prefix (as torchvision's do)."""
    url, request_path, served = mirror.standard.serve_with_own_hash(mirror, arch, real_size=real_size)
    name = register_test_model(
        monkeypatch,
        f"{arch}.{tag}",
        f"{arch}.untrained",
        weights=WeightsSource(kind="url", url=url),
        trained=True,
        description="mirror test",
    )
    return name, request_path, served


# -- URL files ----------------------------------------------------------------------------------------------


def test_url_file_cold_cache_to_loaded_model_and_no_request_the_second_time(weights_mirror, monkeypatch):
    m = weights_mirror
    name, url_path, served = _hashed_entry(m, monkeypatch)
    size = served.stat().st_size

    st = prefetch.weights_status(name)
    assert st.state == "downloadable" and st.size == size, st  # the size the server announces (HEAD)
    assert st.describe() == f"downloads {weights.format_size(size)} on first use"
    assert m.count(url_path, "GET") == 0

    calls: list[tuple[int, int | None]] = []
    model = mvt.create_model(name, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    expected = torch.load(served, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert m.count(url_path, "GET") == 1
    assert _cache_files(_checkpoints()) == [url_path.rsplit("/", 1)[1]]  # the file, and nothing half-written

    before = m.counts()
    assert prefetch.weights_status(name).state == "cached"
    mvt.create_model(name)
    assert m.counts() == before  # resolved from the cache without a single request


@pytest.mark.slow
def test_real_size_torchvision_format_file_with_its_own_hash_prefix_loads(weights_mirror, monkeypatch):
    """MViT v2-S at its real size (138 MB of random weights) through the same code as torchvision's URLs."""
    m = weights_mirror
    name, url_path, served = _hashed_entry(m, monkeypatch, "mvit_v2_s", tag="k400mirror")
    meter, seen = weights.RateMeter(), []
    model = mvt.create_model(name, progress=lambda d, t: seen.append(meter(d, t)))
    assert seen[-1].startswith(
        f"{served.stat().st_size / weights.MB:.1f} / {served.stat().st_size / weights.MB:.1f} MB"
    )
    assert model.spec.labels[0] == "abseiling" and m.count(url_path, "GET") == 1


def test_torchvision_real_name_with_random_weights_fails_the_hash_check(weights_mirror):
    m = weights_mirror
    url_path = "/models/mvit_v2_s-ae3be167.pth"
    st = prefetch.weights_status("mvit_v2_s.k400")
    assert st.state == "downloadable" and st.size == round(131.884 * weights.MB)  # torchvision's own metadata
    with pytest.raises(weights.HashMismatch) as err:
        mvt.create_model("mvit_v2_s.k400")
    actual = m.sha256(url_path)
    assert err.value.expected == "ae3be167" and err.value.actual == actual
    msg = str(err.value)
    assert "mvit_v2_s-ae3be167.pth" in msg and actual in msg and "ae3be167" in msg and "discarded" in msg
    assert _cache_files(_checkpoints()) == []
    with pytest.raises(
        weights.HashMismatch
    ):  # mmvit_s.k400init reads the same file: same check, same verdict
        mvt.create_model("mmvit_s.k400init")


def test_corrupted_download_is_a_hash_error_and_leaves_nothing_then_a_retry_succeeds(
    weights_mirror, monkeypatch
):
    m = weights_mirror
    name, url_path, _ = _hashed_entry(m, monkeypatch, real_size=False, arch="hvt_t")
    m.set_mode("corrupt", url_path)
    with pytest.raises(weights.HashMismatch, match="failed its integrity check"):
        weights.resolve(mvt.get_spec(name).weights)
    assert _cache_files(_checkpoints()) == []
    m.set_mode("normal", url_path)
    assert weights.resolve(mvt.get_spec(name).weights).is_file()


def test_release_file_short_body_is_a_size_error(weights_mirror):
    m = weights_mirror
    path = m.standard.HVT["hvt_ti_1"]
    m.set_mode("short", m.cdn_path(path))
    with pytest.raises(weights.SizeMismatch, match="announced") as err:
        mvt.create_model("hvt_ti_1.in1k")
    assert err.value.actual == err.value.expected // 2
    assert _cache_files(_checkpoints()) == []


def test_release_file_written_as_hvts_training_script_writes_it_downloads_and_loads(weights_mirror):
    """hvt_ti_1.in1k through a 302 to another origin, size and key checks, Namespace allowed for that load only."""
    m = weights_mirror
    path = m.standard.HVT["hvt_ti_1"]
    model = mvt.create_model("hvt_ti_1.in1k")
    served = m.standard.hvt("hvt_ti_1")()
    ckpt = torch.load(served, weights_only=False)
    assert isinstance(ckpt["args"], argparse.Namespace) and "optimizer" in ckpt
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())
    assert m.count(path, "GET") == 1 and m.count(m.cdn_path(path), "GET") == 1
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # allowed for that load only


def test_release_file_with_wrong_keys_never_enters_the_cache(weights_mirror):
    m = weights_mirror
    bad = m.standard.files.get(
        "hvt-wrong-keys.pth",
        lambda p: save_state({"model": {"blocks.0.pos_embedding": torch.zeros(1)}, "epoch": 1}, p),
    )
    m.add(m.standard.HVT["hvt_s_2"], bad, redirect=True)
    with pytest.raises(weights.KeysMismatch, match="missing keys") as err:
        mvt.create_model("hvt_s_2.in1k")
    assert "discarded" in str(err.value)
    assert _cache_files(_checkpoints()) == []


# -- stalls and sharing -------------------------------------------------------------------------------------


def test_default_timeout_is_at_most_a_minute(monkeypatch):
    monkeypatch.delenv("MVT_DOWNLOAD_TIMEOUT", raising=False)
    assert 0 < weights.download_timeout() <= 60
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(weights.WeightsError, match="MVT_DOWNLOAD_TIMEOUT"):
        weights.download_timeout()


def _in_thread(fn):
    box: dict = {}

    def run():
        t0 = time.monotonic()
        try:
            box["value"] = fn()
        except Exception as e:
            box["error"] = e
        box["t"] = time.monotonic() - t0
        box["end"] = time.monotonic()

    th = threading.Thread(target=run)
    th.start()
    return th, box


def test_stalled_url_server_fails_in_time_while_another_download_succeeds(weights_mirror, monkeypatch):
    m = weights_mirror
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "1.5")
    stalled_name, stalled_path, _ = _hashed_entry(m, monkeypatch, "hvt_t", real_size=False, tag="stalled")
    ok_name, ok_path, _ = _hashed_entry(m, monkeypatch, "mvit_t", real_size=False, tag="healthy")
    m.set_mode("stalled", stalled_path)
    t1, stalled = _in_thread(lambda: mvt.create_model(stalled_name))
    time.sleep(0.2)
    t2, healthy = _in_thread(lambda: weights.resolve(mvt.get_spec(ok_name).weights))
    t1.join(30)
    t2.join(30)
    assert isinstance(stalled.get("error"), weights.DownloadStalled), stalled
    assert "sent nothing for 1.5 s" in str(stalled["error"]) or "no data for 1.5 s" in str(stalled["error"])
    assert stalled["t"] < 1.5 + 2.0
    assert "error" not in healthy and healthy["value"].is_file()
    assert healthy["end"] < stalled["end"]  # served while the other download hung: nothing global was held
    assert not any(n.startswith(".") for n in _cache_files(_checkpoints()))


def test_two_callers_of_one_file_share_one_download(weights_mirror, monkeypatch):
    m = weights_mirror
    name, url_path, served = _hashed_entry(m, monkeypatch, "mvit_t", real_size=True, tag="shared")
    m.set_mode("slow", url_path)
    source = mvt.get_spec(name).weights
    seen: dict[str, list] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def get(key):
        barrier.wait()
        return weights.resolve(source, progress=lambda d, t: seen[key].append(d))

    (ta, a), (tb, b) = _in_thread(lambda: get("a")), _in_thread(lambda: get("b"))
    ta.join(60)
    tb.join(60)
    assert a["value"] == b["value"] and a["value"].is_file()
    assert m.count(url_path, "GET") == 1
    size = served.stat().st_size
    assert seen["a"][-1] == size and seen["b"][-1] == size
    assert weights.in_flight() == []


# -- the hub ------------------------------------------------------------------------------------------------


def _hub_entry(mirror, monkeypatch, labels: tuple[str, ...]):
    """vivit_t1 weights in the hub repo's real names and format, with a config.json naming ``labels``."""
    mirror.add_hf(HF_REPO, "config.json", json.dumps(vivit_hub_config("vivit_t1", labels)).encode())
    source = WeightsSource(
        kind="hf",
        repo_id=HF_REPO,
        filename="pytorch_model.bin",
        revision=HF_REVISION,
        config_file="config.json",
    )
    return register_test_model(
        monkeypatch,
        "vivit_t1.hubtest",
        "vivit_t1.untrained",
        weights=source,
        trained=True,
        description="hub test",
    )


def test_hub_file_cold_cache_to_loaded_model_with_the_configs_class_names(weights_mirror, monkeypatch):
    m = weights_mirror
    labels = tuple(reversed(mvt.get_spec("vivit_t1.untrained").labels))
    name = _hub_entry(m, monkeypatch, labels)
    served = m.standard.vivit("vivit_t1")()
    st = prefetch.weights_status(name)
    assert st.state == "downloadable" and st.size == served.stat().st_size, st

    calls: list[tuple[int, int | None]] = []
    model = mvt.create_model(name, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (served.stat().st_size, served.stat().st_size)
    assert model.spec.labels == labels  # from config.json's id2label, not the label set
    state = torch.load(served, weights_only=True)
    assert torch.equal(model.state_dict()["head.weight"], state["classifier.weight"])
    resolve_path, blob_path = m.hf_paths(HF_REPO, "pytorch_model.bin", HF_REVISION)
    assert m.count(resolve_path, "HEAD") >= 1 and m.count(blob_path, "GET") == 1

    before = m.counts()
    assert prefetch.weights_status(name).state == "cached"
    again = mvt.create_model(name)
    assert again.spec.labels == labels and m.counts() == before  # pinned commit + cache: no request


def test_a_differently_ordered_id2label_changes_the_labels(weights_mirror, monkeypatch, tmp_path):
    m = weights_mirror
    base = mvt.get_spec("vivit_t1.untrained").labels
    shuffled = base[3:] + base[:3]
    _hub_entry(m, monkeypatch, base)
    first = mvt.create_model("vivit_t1.hubtest")
    monkeypatch.setenv(
        "HF_HOME", str(tmp_path / "other-hf")
    )  # a fresh cache, and the repo's config reordered
    _hub_entry(m, monkeypatch, shuffled)
    second = mvt.create_model("vivit_t1.hubtest")
    assert first.spec.labels == base and second.spec.labels == shuffled
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.inference_mode():
        top_first, top_second = first(x).argmax(-1).item(), second(x).argmax(-1).item()
    assert top_first == top_second  # same weights, same index...
    assert first.spec.labels[top_first] != second.spec.labels[top_second]  # ...a different name


def test_real_vivit_entry_is_listed_with_the_hub_size_and_pinned_revision(weights_mirror):
    m = weights_mirror
    spec = mvt.get_spec("vivit_b_16x2.k400")
    assert spec.weights.revision == HF_REVISION and len(HF_REVISION) == 40
    st = prefetch.weights_status("vivit_b_16x2.k400")
    assert st.state == "downloadable" and st.size == m.standard.vivit("vivit_t1")().stat().st_size
    resolve_path, _ = m.hf_paths(HF_REPO, "pytorch_model.bin", HF_REVISION)
    assert m.count(resolve_path, "HEAD") == 1  # the size came from the hub API for the pinned commit


def test_corrupted_hub_file_is_a_hash_error_and_is_removed_from_the_cache(weights_mirror, monkeypatch):
    m = weights_mirror
    name = _hub_entry(m, monkeypatch, mvt.get_spec("vivit_t1.untrained").labels)
    _, blob_path = m.hf_paths(HF_REPO, "pytorch_model.bin")
    m.set_mode("corrupt", blob_path)
    with pytest.raises(weights.HashMismatch, match="failed its integrity check"):
        mvt.create_model(name)
    hub = weights.hf_cache_dir()
    assert not [f for f in _cache_files(hub) if "blobs" in f and not f.endswith(_config_blob(m))]
    assert weights.cached_path(mvt.get_spec(name).weights) is None


def _config_blob(m) -> str:
    from tests.mirror import git_blob_sha1

    f, _ = m.hf[HF_REPO]["config.json"]
    return git_blob_sha1(f.bytes())


def test_stalled_hub_download_fails_in_time(weights_mirror, monkeypatch):
    m = weights_mirror
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "1.5")
    name = _hub_entry(m, monkeypatch, mvt.get_spec("vivit_t1.untrained").labels)
    _, blob_path = m.hf_paths(HF_REPO, "pytorch_model.bin")
    m.set_mode("stalled", blob_path)
    t0 = time.monotonic()
    with pytest.raises(weights.DownloadStalled, match="sent nothing for 1.5 s"):
        mvt.create_model(name)
    assert time.monotonic() - t0 < 1.5 + 2.0


def test_stalled_hub_metadata_request_fails_in_time(weights_mirror, monkeypatch):
    m = weights_mirror
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "1.5")
    name = _hub_entry(m, monkeypatch, mvt.get_spec("vivit_t1.untrained").labels)
    resolve_path, _ = m.hf_paths(HF_REPO, "pytorch_model.bin", HF_REVISION)
    m.set_mode("stalled", resolve_path)
    t0 = time.monotonic()
    with pytest.raises(weights.DownloadError) as err:
        weights.resolve(mvt.get_spec(name).weights)
    assert time.monotonic() - t0 < 1.5 + 2.0
    assert "hf download google/vivit-b-16x2-kinetics400 pytorch_model.bin config.json" in str(err.value)


# -- offline ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["MVT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_models_stay_listed_as_unavailable_and_fail_fast(weights_mirror, monkeypatch, var):
    m = weights_mirror
    monkeypatch.setenv(var, "1")
    for name in ("mvit_v2_s.k400", "vivit_b_16x2.k400", "hvt_s_1.in1k"):
        assert name in mvt.list_models()
        st = prefetch.weights_status(name)
        assert st.state == "unavailable" and f"{var} is set" in st.reason, st
    t0 = time.monotonic()
    with pytest.raises(weights.WeightsUnavailable) as err:
        mvt.create_model("vivit_b_16x2.k400")
    msg = str(err.value)
    assert time.monotonic() - t0 < 1.0
    assert f"hf download {HF_REPO} pytorch_model.bin config.json --revision {HF_REVISION}" in msg
    assert "huggingface-cli" not in msg
    with pytest.raises(weights.WeightsUnavailable, match="place it at"):
        mvt.create_model("mvit_v1_b.k400")
    assert m.counts() == {}  # not one request


def test_no_route_to_the_host_marks_models_unavailable_quickly(weights_mirror, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("MVT_WEIGHTS_MIRROR", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    weights.forget_probes()
    t0 = time.monotonic()
    st = prefetch.weights_status("mvit_v1_b.k400")
    assert st.state == "unavailable" and "no route to 127.0.0.1" in st.reason
    assert st.size == round(139.764 * weights.MB)  # still known, from torchvision's metadata
    with pytest.raises(weights.WeightsUnavailable, match="no route"):
        mvt.create_model("mvit_v1_b.k400")
    assert time.monotonic() - t0 < 5


def test_mirror_replaces_scheme_and_host_and_keeps_the_path(monkeypatch):
    url = "https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth"
    monkeypatch.delenv("MVT_WEIGHTS_MIRROR", raising=False)
    assert weights.mirror_url(url) == url
    monkeypatch.setenv("MVT_WEIGHTS_MIRROR", "http://10.0.0.5:8080/")
    assert weights.mirror_url(url) == "http://10.0.0.5:8080/models/mvit_v2_s-ae3be167.pth"
    monkeypatch.setenv("MVT_WEIGHTS_MIRROR", "http://cache.local/weights")
    assert weights.mirror_url(url) == "http://cache.local/weights/models/mvit_v2_s-ae3be167.pth"
    monkeypatch.setenv("MVT_WEIGHTS_MIRROR", "cache.local")
    with pytest.raises(weights.WeightsError, match="MVT_WEIGHTS_MIRROR"):
        weights.mirror_url(url)


# -- progress text, prefetch, the CLI -----------------------------------------------------------------------


def test_progress_text():
    assert weights.format_progress(int(42.1 * weights.MB), int(139.8 * weights.MB), 11.3 * weights.MB) == (
        "42.1 / 139.8 MB, 11.3 MB/s"
    )
    assert weights.format_progress(3 * weights.MB, None) == "3.0 MB"
    clock = iter([100.0, 102.0])
    meter = weights.RateMeter(clock=lambda: next(clock))
    assert meter(0, 10 * weights.MB) == "0.0 / 10.0 MB"
    assert meter(5 * weights.MB, 10 * weights.MB) == "5.0 / 10.0 MB, 2.5 MB/s"


def test_prefetch_downloads_what_it_can_and_reports_the_rest(weights_mirror, monkeypatch):
    m = weights_mirror
    ok, _, _ = _hashed_entry(m, monkeypatch, "mvit_t", real_size=False, tag="prefetch")
    seen: list[str] = []
    out = prefetch.prefetch([ok, "mvit_t.synth", "mvit_v2_s.k400"], lambda n, d, t: seen.append(n))
    assert out[ok] is None and out["mvit_t.synth"] is None
    assert isinstance(out["mvit_v2_s.k400"], weights.HashMismatch)
    assert ok in seen and prefetch.weights_status(ok).state == "cached"


def test_cli_download_command(weights_mirror, monkeypatch):
    m = weights_mirror
    name, url_path, _ = _hashed_entry(m, monkeypatch, "hvt_t", real_size=False, tag="cli")
    out = io.StringIO()
    assert prefetch.download([name], file=out) == 0
    assert f"{name}: ready" in out.getvalue() and m.count(url_path, "GET") == 1
    out = io.StringIO()
    assert prefetch.download(["hvt_t.cli", "mvit_v2_s.k400"], file=out) == 1
    assert f"{name}: cached" in out.getvalue() and "integrity check" in out.getvalue()
    assert prefetch.download(["nope.k400"], file=io.StringIO()) == 2
