"""A loopback stand-in for download.pytorch.org, GitHub release assets and the Hugging Face Hub.

Two threaded HTTP servers on 127.0.0.1: the *main* one answers for every URL source (through
``MVT_WEIGHTS_MIRROR``, which keeps the path) and for the hub (through ``HF_ENDPOINT``); the *cdn* one plays
the hosts real servers redirect to (objects.githubusercontent.com, the hub's LFS CDN), so the redirects go to
another origin exactly as they do for real. It serves the real paths and formats with random weights:

* ``/models/mvit_v1_b-dbeb1030.pth``, ``/models/mvit_v2_s-ae3be167.pth`` (torchvision's names; random weights
  cannot match the hash prefix in the name, so downloads of these fail the hash check, as they must);
* ``/zhuang-group/HVT/releases/download/v1.*/…pth``: 302 to the cdn, files written the way HVT's ``main.py``
  writes them (``model``, ``optimizer``, ``lr_scheduler``, ``epoch``, ``scaler``, ``args`` = a Namespace);
* ``/google/vivit-b-16x2-kinetics400/resolve/<rev>/{pytorch_model.bin,config.json}``: what
  ``hf_hub_download`` asks (HEAD, then GET): ``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag`` (the LFS file's
  SHA-256, the git blob SHA-1 for config.json), ``X-Linked-Size``, a 302 to the cdn for the LFS file, and the
  hub's ``X-Error-Code`` 404s (RepoNotFound, RevisionNotFound, EntryNotFound).

Files are built lazily (on the first request that needs their bytes or hash) and cached for the session.
Unless a test needs the real size, the standard entries are small stand-ins with the real names, formats and
key sets. Per-path modes: ``normal``, ``stalled`` (accepts, then sends nothing until :meth:`Mirror.reset`),
``corrupt`` (same length, flipped bytes), ``short`` (announces the full size, sends half), ``slow``.
Every request is counted per (method, path).

Use the ``weights_mirror`` fixture (tests/conftest.py)::

    def test_x(weights_mirror):
        m = weights_mirror                       # server up; TORCH_HOME/HF_HOME empty tmp dirs; env pointed at it
        m.add("/models/x-1234abcd.pth", lambda: path_or_bytes)     # register a URL file (lazy)
        m.add_hf("org/repo", "pytorch_model.bin", data)            # register a hub file
        m.set_mode("stalled", "/models/x-1234abcd.pth")            # or m.set_mode("corrupt") for every path
        m.count("/models/x-1234abcd.pth", "GET")                   # requests seen
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

MODES = ("normal", "stalled", "corrupt", "short", "cut", "slow")
HF_REPO = "google/vivit-b-16x2-kinetics400"
GITHUB_RELEASES = "/zhuang-group/HVT/releases/download"
Content = bytes | Path | Callable[[], "bytes | Path"]


@dataclass
class _File:
    content: Content
    redirect: bool = False
    """Answer on the main server with a 302 to the cdn (GitHub release assets)."""
    data: bytes | None = None

    def bytes(self) -> bytes:
        if self.data is None:
            c = self.content() if callable(self.content) else self.content
            self.data = c.read_bytes() if isinstance(c, Path) else bytes(c)
        return self.data

    def sha256(self) -> str:
        return hashlib.sha256(self.bytes()).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Mirror:
    """The two servers, the registered files, the modes and the request counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files: dict[str, _File] = {}
        self.cdn_files: dict[str, _File] = {}
        self.hf: dict[str, dict[str, tuple[_File, bool]]] = {}
        self.commits: dict[str, str] = {}
        self.modes: dict[str | None, str] = {None: "normal"}
        self.requests: Counter[tuple[str, str]] = Counter()
        self._release = threading.Event()
        self._main = self._serve(cdn=False)
        self._cdn = self._serve(cdn=True)
        self.url = f"http://127.0.0.1:{self._main.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"

    # -- registering files ----------------------------------------------------------------------------------

    def add(self, path: str, content: Content, *, redirect: bool = False) -> str:
        """Serve ``content`` at ``path`` of the main server (``redirect``: via a 302 to the cdn). Returns the URL."""
        with self._lock:
            self.files[path] = _File(content, redirect=redirect)
        return self.url + path

    def add_hf(self, repo_id: str, filename: str, content: Content, *, lfs: bool | None = None) -> None:
        """Serve ``content`` as ``filename`` of hub repo ``repo_id`` (LFS unless it is a small JSON file)."""
        lfs = not filename.endswith(".json") if lfs is None else lfs
        with self._lock:
            self.hf.setdefault(repo_id, {})[filename] = (_File(content), lfs)
            self.commits.setdefault(repo_id, _default_commit(repo_id))

    def set_commit(self, repo_id: str, sha: str) -> None:
        """The commit the repo's ``main`` resolves to (and the only pinned revision it knows)."""
        with self._lock:
            self.commits[repo_id] = sha

    def hf_paths(self, repo_id: str, filename: str, revision: str | None = None) -> tuple[str, str]:
        """(the resolve path hf_hub_download asks first, the cdn path of the bytes) of a hub file."""
        rev = revision or self.commits.get(repo_id, "main")
        f, _ = self.hf[repo_id][filename]
        return f"/{repo_id}/resolve/{rev}/{filename}", f"/repos/{f.sha256()}"

    def cdn_path(self, path: str) -> str:
        """Where a redirected file's bytes are served (the cdn server), for modes and counts of the body."""
        return f"/release-assets/{self.files[path].sha256()}/{path.rsplit('/', 1)[-1]}"

    def sha256(self, path: str) -> str:
        return self.files[path].sha256()

    def size(self, path: str) -> int:
        return len(self.files[path].bytes())

    # -- behaviour and counts -------------------------------------------------------------------------------

    def set_mode(self, mode: str, path: str | None = None) -> None:
        """``mode`` for requests of ``path`` (exact request path, either server), or for every path."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        with self._lock:
            self.modes[path] = mode

    def mode(self, path: str) -> str:
        with self._lock:
            return self.modes.get(path, self.modes[None])

    def count(self, path: str, method: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, p), n in self.requests.items() if p == path and method in (None, m))

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.requests)

    def reset(self) -> None:
        """Every path back to ``normal``, counts to zero, stalled connections closed."""
        with self._lock:
            self.modes = {None: "normal"}
            self.requests.clear()
            release, self._release = self._release, threading.Event()
        release.set()

    def clear_files(self) -> None:
        """Forget every registered file (URL and hub)."""
        with self._lock:
            self.files.clear()
            self.cdn_files.clear()
            self.hf.clear()
            self.commits.clear()

    def close(self) -> None:
        self.reset()
        for server in (self._main, self._cdn):
            server.shutdown()
            server.server_close()

    # -- the server -----------------------------------------------------------------------------------------

    def _serve(self, *, cdn: bool) -> http.server.ThreadingHTTPServer:
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                mirror._handle(self, cdn, head=True)

            def do_GET(self) -> None:
                mirror._handle(self, cdn, head=False)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="mirror", daemon=True).start()
        return server

    def _handle(self, h: http.server.BaseHTTPRequestHandler, cdn: bool, head: bool) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.requests[(h.command, path)] += 1
            release = self._release
        mode = self.mode(path)
        if mode == "cut" and not head:
            with self._lock:
                self.modes[path] = "normal"  # one connection dropped; the next is served whole
        if mode == "stalled":
            release.wait(300)  # accepted, and nothing is sent until reset()
            return
        try:
            if cdn:
                f = self.cdn_files.get(path)
                if f is None:
                    return self._status(h, 404)
                return self._send(h, f.bytes(), head, mode, {})
            if path in self.files:
                f = self.files[path]
                if f.redirect:
                    cdn_path = self.cdn_path(path)
                    self.cdn_files[cdn_path] = f
                    return self._status(h, 302, {"Location": self.cdn_url + cdn_path})
                return self._send(h, f.bytes(), head, mode, {})
            m = re.fullmatch(r"/(?:models/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                return self._hub(h, *m.groups(), head=head, mode=mode)
            self._status(h, 404)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _hub(self, h, repo_id: str, revision: str, filename: str, *, head: bool, mode: str) -> None:
        if repo_id not in self.hf:
            return self._status(
                h, 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            )
        commit = self.commits[repo_id]
        if revision not in ("main", commit):
            return self._status(
                h, 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}
            )
        if filename not in self.hf[repo_id]:
            return self._status(h, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        f, lfs = self.hf[repo_id][filename]
        data = f.bytes()
        if lfs:
            sha = f.sha256()
            self.cdn_files[f"/repos/{sha}"] = f
            return self._status(
                h,
                302,
                {
                    "Location": f"{self.cdn_url}/repos/{sha}",
                    "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{git_blob_sha1(sha.encode())}"',
                },
            )
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_sha1(data)}"'}
        self._send(h, data, head, mode, headers)

    @staticmethod
    def _status(h, code: int, headers: dict | None = None) -> None:
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", "0")
        h.end_headers()

    @staticmethod
    def _send(h, data: bytes, head: bool, mode: str, headers: dict) -> None:
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", "").strip())
        if wanted and int(wanted.group(1)) < len(data):
            first = int(wanted.group(1))
            last = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
            headers = {**headers, "Content-Range": f"bytes {first}-{last}/{len(data)}"}
            data = data[first : last + 1]
            h.send_response(206)
        else:
            h.send_response(200)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if head:
            return
        if mode == "corrupt":
            mid = len(data) // 2
            data = data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :]
        elif mode in ("short", "cut"):
            data = data[: len(data) // 2]
        if mode == "slow":
            for i in range(0, len(data), 1 << 16):
                h.wfile.write(data[i : i + (1 << 16)])
                h.wfile.flush()
                time.sleep(0.02)
        else:
            h.wfile.write(data)
        h.wfile.flush()


def _default_commit(repo_id: str) -> str:
    if repo_id == HF_REPO:
        from mvt.models.vivit import HF_REVISION

        return HF_REVISION
    return hashlib.sha1(repo_id.encode()).hexdigest()


# -- checkpoints in the real formats, random weights (cached per session) -------------------------------------


class Files:
    """Builds checkpoint files once per test session in ``root``, by name."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._built: dict[str, Path] = {}

    def get(self, name: str, build: Callable[[Path], None]) -> Path:
        with self._lock:
            if name not in self._built:
                path = self.root / name
                build(path)
                self._built[name] = path
            return self._built[name]

    def lazy(self, name: str, build: Callable[[Path], None]) -> Callable[[], Path]:
        return lambda: self.get(name, build)


def _meta_state(arch: str) -> dict[str, torch.Size]:
    from mvt import zoo

    entry, spec = zoo.get_arch(arch), zoo.get_spec(arch)
    with torch.device("meta"):
        model = entry.builder(num_classes=spec.num_classes or len(spec.labels))
    return {k: v.shape for k, v in model.state_dict().items()}


def model_state(arch: str, *, real_size: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under ``arch``'s exact keys: at the real shapes, or one small tensor per key."""
    g = torch.Generator().manual_seed(seed)
    shapes = _meta_state(arch)
    if real_size:
        return {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
    return {k: torch.randn(min(s.numel(), 4), generator=g) for k, s in shapes.items()}


def save_state(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def hvt_args(arch: str) -> argparse.Namespace:
    """The ``args`` HVT's ``main.py`` saves: params.py's options after a ``--config`` JSON and main's edits."""
    heads, width = {"hvt_ti_1": (3, 12), "hvt_s_1": (6, 12), "hvt_s_2": (6, 6), "hvt_s_3": (6, 4)}.get(
        arch, (6, 3)
    )
    return argparse.Namespace(
        batch_size=128, epochs=300, model="hvt_model", input_size=224, drop=0.0, drop_path=0.1, model_ema=True,
        model_ema_decay=0.99996, model_ema_force_cpu=False, opt="adamw", opt_eps=1e-8, opt_betas=None,
        clip_grad=None, momentum=0.9, weight_decay=0.025, sched="cosine", lr=0.001, lr_noise=None,
        lr_noise_pct=0.67, lr_noise_std=1.0, warmup_lr=1e-6, min_lr=1e-5, decay_epochs=30, warmup_epochs=5,
        cooldown_epochs=10, patience_epochs=10, decay_rate=0.1, color_jitter=0.4, aa="rand-m9-mstd0.5-inc1",
        smoothing=0.1, train_interpolation="bicubic", repeated_aug=True, reprob=0.25, remode="pixel", recount=1,
        resplit=False, mixup=0.8, cutmix=1.0, cutmix_minmax=None, mixup_prob=1.0, mixup_switch_prob=0.5,
        mixup_mode="batch", teacher_model="regnety_160", teacher_path="", distillation_type="none",
        distillation_alpha=0.5, distillation_tau=1.0, finetune="", data_path="/datasets/imagenet",
        data_set="IMNET", inat_category="name", output_dir=f"output/{arch}", device="cuda", seed=0,
        resume="", start_epoch=0, eval=False, dist_eval=False, num_workers=10, pin_mem=True, world_size=8,
        dist_url="env://", exp_name=arch.replace("_", "-"), patch_size=16, num_heads=heads, head_dim=64,
        num_blocks=12, pool_kernel_size=3, pool_block_width=width, pool_stride=2, rank=0, gpu=0,
        distributed=True, dist_backend="nccl", nb_classes=1000,
    )  # fmt: skip


def hvt_training_checkpoint(arch: str, *, real_size: bool, seed: int = 0) -> dict:
    """A dict exactly as HVT's ``main.py`` passes to ``utils.save_on_master`` (= ``torch.save``)."""
    model = model_state(arch, real_size=real_size, seed=seed)
    params = [torch.nn.Parameter(v.clone()) for v in model.values()]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.025}]
    )
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    scheduler = {  # timm 0.3.2 CosineLRScheduler.state_dict(): its __dict__ without the optimizer
        "param_group_field": "lr", "_initial_param_group_field": "initial_lr", "base_values": [0.001, 0.001],
        "metric": None, "noise_range_t": None, "noise_pct": 0.67, "noise_type": "normal", "noise_std": 1.0,
        "noise_seed": 42, "t_initial": 300, "t_mul": 1.0, "lr_min": 1e-5, "decay_rate": 0.1, "cycle_limit": 1,
        "warmup_t": 5, "warmup_lr_init": 1e-6, "warmup_prefix": False, "t_in_epochs": True,
        "warmup_steps": [0.0001998, 0.0001998],
    }  # fmt: skip
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }
    return {
        "model": model,
        "optimizer": opt.state_dict(),
        "lr_scheduler": scheduler,
        "epoch": 299,
        "scaler": scaler,
        "args": hvt_args(arch),
    }


_LEGACY = (  # transformers-5 names -> the hub file's transformers-4 names
    (r"vivit\.layers\.(\d+)\.attention\.(q|k|v)_proj\.", None),
    (r"vivit\.layers\.(\d+)\.attention\.o_proj\.", r"vivit.encoder.layer.\1.attention.output.dense."),
    (r"vivit\.layers\.(\d+)\.mlp\.fc1\.", r"vivit.encoder.layer.\1.intermediate.dense."),
    (r"vivit\.layers\.(\d+)\.mlp\.fc2\.", r"vivit.encoder.layer.\1.output.dense."),
    (r"vivit\.layers\.(\d+)\.", r"vivit.encoder.layer.\1."),
)


def _legacy_name(key: str) -> str:
    for pattern, repl in _LEGACY:
        m = re.match(pattern, key)
        if m:
            if repl is None:
                which = {"q": "query", "k": "key", "v": "value"}[m.group(2)]
                repl = rf"vivit.encoder.layer.\1.attention.attention.{which}."
            return re.sub(pattern, repl, key, count=1)
    return key


def vivit_hub_config(arch: str = "vivit_b_16x2", labels: tuple[str, ...] | None = None) -> dict:
    """``config.json`` of a ``VivitForVideoClassification`` with ``arch``'s sizes and ``id2label`` = ``labels``."""
    from mvt.models.vivit import CONFIGS

    c = CONFIGS[arch]
    if labels is None:
        from mvt.labels import get_labels

        labels = get_labels("kinetics400") if arch == "vivit_b_16x2" else get_labels("synthmotion")
    return {
        "architectures": ["VivitForVideoClassification"],
        "attention_probs_dropout_prob": 0.0,
        "hidden_act": "gelu_fast",
        "hidden_dropout_prob": 0.0,
        "hidden_size": c.dim,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "image_size": c.image_size,
        "initializer_range": 0.02,
        "intermediate_size": c.mlp_dim,
        "layer_norm_eps": 1e-06,
        "model_type": "vivit",
        "num_attention_heads": c.heads,
        "num_channels": 3,
        "num_frames": c.num_frames,
        "num_hidden_layers": c.depth,
        "qkv_bias": True,
        "torch_dtype": "float32",
        "transformers_version": "4.25.0.dev0",
        "tubelet_size": list(c.tubelet),
        "video_size": [c.num_frames, c.image_size, c.image_size],
    }


def vivit_hub_state(arch: str = "vivit_b_16x2", *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ``VivitForVideoClassification`` weights under the hub file's (transformers-4) key names."""
    import transformers

    cfg = vivit_hub_config(arch)
    config = transformers.VivitConfig(
        **{k: v for k, v in cfg.items() if k not in ("architectures", "label2id")}
    )
    torch.manual_seed(seed)
    model = transformers.VivitForVideoClassification(config)
    return {_legacy_name(k): v.detach().clone() for k, v in model.state_dict().items()}


class Standard:
    """The standard entries (real paths, real formats, random weights), built lazily in a session cache."""

    TORCHVISION = {
        "mvit_v1_b": "/models/mvit_v1_b-dbeb1030.pth",
        "mvit_v2_s": "/models/mvit_v2_s-ae3be167.pth",
    }
    HVT = {
        "hvt_ti_1": f"{GITHUB_RELEASES}/v1.0/hvt_ti_1.pth",
        "hvt_s_1": f"{GITHUB_RELEASES}/v1.1/hvt_s_1.pth",
        "hvt_s_2": f"{GITHUB_RELEASES}/v1.0/hvt_s_2.pth",
        "hvt_s_3": f"{GITHUB_RELEASES}/v1.0/hvt_s_3.pth",
        "hvt_s_4": f"{GITHUB_RELEASES}/v1.0/scale_hvt_ti_4.pth",
    }

    def __init__(self, files: Files):
        self.files = files

    def torchvision(self, arch: str, *, real_size: bool = False) -> Callable[[], Path]:
        name = f"tv-{arch}-{'full' if real_size else 'small'}.pth"
        return self.files.lazy(name, lambda p: save_state(model_state(arch, real_size=real_size), p))

    def hvt(self, arch: str, *, real_size: bool | None = None) -> Callable[[], Path]:
        real = arch == "hvt_ti_1" if real_size is None else real_size  # HVT-Ti-1 is small at its real size
        name = f"hvt-{arch}-{'full' if real else 'small'}.pth"
        return self.files.lazy(name, lambda p: save_state(hvt_training_checkpoint(arch, real_size=real), p))

    def vivit(self, arch: str = "vivit_t1") -> Callable[[], Path]:
        return self.files.lazy(f"hf-{arch}.bin", lambda p: save_state(vivit_hub_state(arch), p))

    def serve_with_own_hash(
        self, mirror: Mirror, arch: str, *, real_size: bool = True, seed: int = 3
    ) -> tuple[str, str, Path]:
        """Serve random ``arch`` weights as ``/models/<arch>-<its own sha256[:8]>.pth``, so torch hub's hash rule
        passes. Returns (the URL as torchvision would write it, for a ``WeightsSource``; the request path; the
        served file)."""
        path = self.files.get(
            f"hashed-{arch}-{'full' if real_size else 'small'}-{seed}.pth",
            lambda p: save_state(model_state(arch, real_size=real_size, seed=seed), p),
        )
        request_path = f"/models/{arch}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pth"
        mirror.add(request_path, path)
        return f"https://download.pytorch.org{request_path}", request_path, path

    def install(self, mirror: Mirror) -> None:
        for arch, path in self.TORCHVISION.items():
            mirror.add(path, self.torchvision(arch))
        for arch, path in self.HVT.items():
            mirror.add(path, self.hvt(arch), redirect=True)
        mirror.add_hf(HF_REPO, "pytorch_model.bin", self.vivit("vivit_t1"))  # small stand-in, real names
        mirror.add_hf(HF_REPO, "config.json", json.dumps(vivit_hub_config()).encode())


# -- registering a test model -----------------------------------------------------------------------------------


def register_test_model(monkeypatch, name: str, base: str, **changes) -> str:
    """Register ``name`` (``arch.tag``) for this test only: ``base``'s spec (e.g. ``"mvit_t.untrained"``) with
    ``changes`` (usually ``weights=WeightsSource(...)``, ``trained=True``). Removed at teardown."""
    from mvt import zoo

    arch, tag = name.split(".", 1)
    spec = replace(zoo.get_spec(base), name=name, arch=arch, tag=tag, **changes)
    monkeypatch.setitem(zoo._SPECS, name, spec)
    return name


def copy_to(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
