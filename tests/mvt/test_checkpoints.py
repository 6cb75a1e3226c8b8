"""Safe loading of checkpoints as they really are: HVT's training-script files load with exactly the globals
they need, scoped to their own load; a pickle that would run code is refused all the same."""

from __future__ import annotations

import argparse
import os
import threading

import pytest
import torch

from mvt import weights, zoo
from mvt.weights import UnsafeCheckpoint, WeightsError
from tests.mirror import hvt_training_checkpoint

NAMESPACE = ("argparse.Namespace",)


class _RunsCode:
    """Unpickling this would call ``os.system`` (the marker file proves whether it ran)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"echo ran > {self.marker}",))


@pytest.fixture(scope="module")
def training_file(tmp_path_factory):
    """hvt_ti_1 at its real size, saved exactly as HVT's main.py saves it, with torch 1.7's defaults
    (zip format, pickle protocol 2)."""
    path = tmp_path_factory.mktemp("hvt") / "hvt_ti_1.pth"
    torch.save(hvt_training_checkpoint("hvt_ti_1", real_size=True), path, pickle_protocol=2)
    return path


def test_training_script_file_loads_with_namespace_allowed_for_that_load_only(training_file):
    sd = weights.load_file(training_file, state_key="model", pickle_globals=NAMESPACE)
    zoo.keys_check("hvt_ti_1.in1k")(sd)  # every key and shape of the real architecture
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    with pytest.raises(UnsafeCheckpoint, match="Namespace"):  # the same file without the allowance
        weights.load_file(training_file, state_key="model")


def test_registered_hvt_sources_name_only_the_namespace():
    for name in zoo.list_models("hvt_*.in1k"):
        assert zoo.get_spec(name).weights.pickle_globals == NAMESPACE
    assert set(weights.ALLOWED_GLOBALS) == {"argparse.Namespace"}


def test_globals_outside_the_allowlist_cannot_be_requested(training_file):
    with pytest.raises(WeightsError, match="ALLOWED_GLOBALS"):
        weights.load_file(training_file, state_key="model", pickle_globals=("builtins.eval",))


def test_a_pickle_that_runs_code_is_refused_even_beside_an_allowed_namespace(tmp_path):
    marker = tmp_path / "payload-ran"
    ckpt = hvt_training_checkpoint("hvt_t", real_size=False)
    ckpt["args"] = _RunsCode(marker)
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path, pickle_protocol=2)
    with pytest.raises(UnsafeCheckpoint, match="Refused"):
        weights.load_file(path, state_key="model", pickle_globals=NAMESPACE)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unsafe loader would have run it
    assert marker.read_text().strip() == "ran"


def test_a_namespace_smuggling_code_in_its_state_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    ckpt = hvt_training_checkpoint("hvt_t", real_size=False)
    ckpt["args"].hook = _RunsCode(marker)  # Namespace is allowed; what it carries is still unpickled safely
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path)
    with pytest.raises(UnsafeCheckpoint):
        weights.load_file(path, state_key="model", pickle_globals=NAMESPACE)
    assert not marker.exists()


def test_concurrent_loads_with_and_without_extra_globals(training_file, tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.ones(3)}, plain)
    errors: list[BaseException] = []

    def work(i):
        try:
            if i % 2:
                weights.load_file(training_file, state_key="model", pickle_globals=NAMESPACE)
            else:
                weights.load_file(plain)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
