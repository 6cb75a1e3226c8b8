"""Two engines for the same per-clip computation (:mod:`lens.dataset.rows`): in this process, or on Ray Data.

``local``: decode and run the models clip by clip in this process (tests, tiny runs, ``evaluate``).

``ray``: a Ray Data pipeline — the clip list (``from_items``, a block per clip), decode in ``map_batches``
tasks, the models in an actor pool (``ActorPoolStrategy``, each actor builds every model once; ``num_gpus``
per actor when the cluster has GPUs), rows streamed back to the driver, which writes them
(:mod:`lens.dataset.store`). Ray's fault tolerance does the rest: an actor whose process dies is restarted
and its clip retried (Ray Data's defaults for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``),
so a run survives workers that die; a clip that got no rows all the same is reported as missing
(``--resume`` tries it again). Local Ray by default
(``ray.init(num_cpus=...)``), a cluster with ``address=`` or ``RAY_ADDRESS``.

Both call ``sink(rows, volumes)`` on the driver once per finished clip.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.cache import build_model
from .rows import Decoded, RowConfig, Sampling, clip_rows, decode, decode_specs, pack, sampling, unpack
from .sources import ClipRef

Sink = Callable[[list[dict], Mapping[str, np.ndarray]], None]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block (``None``: leave it)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def samplings_of(names: Sequence[str]) -> list[Sampling]:
    """The distinct samplings of the models ``names``, in :func:`~lens.dataset.rows.decode_specs` order."""
    return [sampling(s) for s in decode_specs(names)]


def run_local(
    refs: Sequence[ClipRef],
    names: Sequence[str],
    cfg: RowConfig,
    sink: Sink,
    *,
    device: str = "cpu",
    threads: int | None = None,
) -> None:
    """Every clip of ``refs`` through :func:`~lens.dataset.rows.decode` and
    :func:`~lens.dataset.rows.clip_rows` in this process (models built once, ``threads`` torch threads)."""
    dev = torch.device(device)
    with torch_threads(threads):
        models = {n: build_model(n, dev) for n in names}
        specs = decode_specs(names)
        for ref in refs:
            rows, volumes = clip_rows(models, ref, decode(ref, specs), cfg, dev)
            sink(rows, volumes)


# -- Ray ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How a Ray run uses a cluster: ``actors`` model actors of ``actor_cpus`` / ``actor_gpus`` logical
    resources running ``threads`` torch threads each, decode tasks of ``decode_cpus``."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    threads: int
    decode_cpus: float


def plan(cpus: float, gpus: float = 0.0, *, actors: int | None = None, threads: int | None = None) -> Plan:
    """Size the actor pool to the cluster: one actor per GPU (``num_gpus=1`` each) when there are GPUs,
    else ``cpus // threads`` actors (``threads`` default 1). Decode tasks keep a small CPU share, so the
    actors never take every CPU and starve the decode (which would stall the pipeline)."""
    if gpus >= 1:
        n = actors or int(gpus)
        return Plan(n, 1.0, min(1.0, gpus / n), threads or 1, 1.0)
    t = max(1, int(threads or 1))
    n = actors or max(1, int(cpus // t))
    decode_cpus = 0.25
    return Plan(n, max(0.25, min(float(t), (cpus - decode_cpus) / n)), 0.0, t, decode_cpus)


_REF_FIELDS = [f.name for f in fields(ClipRef)]


def _decode_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("index", pa.int64()),
            ("clip_id", pa.string()),
            ("path", pa.string()),
            ("label", pa.string()),
            ("start_s", pa.float64()),
            ("synth_seed", pa.int64()),
            ("synth_index", pa.int64()),
            ("scored", pa.bool_()),
            ("payload", pa.binary()),
            ("sha256", pa.string()),
            ("error", pa.string()),
            ("seconds", pa.float64()),
        ]
    )


def _ref(row: Mapping[str, Any]) -> ClipRef:
    return ClipRef(**{k: row[k] for k in _REF_FIELDS})


def decode_batch(batch, names: list[str]):
    """The Ray decode task: clip refs → the same rows with the clip decoded for the models ``names``
    (``payload``, an ``.npz``)."""
    import pyarrow as pa

    specs = decode_specs(names)
    samplings = [sampling(s) for s in specs]
    out = []
    for row in batch.to_pylist():
        d = decode(_ref(row), specs)
        payload = pack(d, samplings) if d.error is None else None
        out.append({**row, "payload": payload, "sha256": d.sha256, "error": d.error, "seconds": d.seconds})
    return pa.Table.from_pylist(out, schema=_decode_schema())


def _volumes_bytes(volumes: Mapping[str, np.ndarray]) -> bytes | None:
    if not volumes:
        return None
    import io

    buf = io.BytesIO()
    np.savez(buf, **volumes)
    return buf.getvalue()


class ClipWorker:
    """The Ray actor: builds every model once, then turns decoded clips into rows."""

    def __init__(self, names: list[str], cfg: dict, threads: int, device: str) -> None:
        torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.models = {n: build_model(n, self.device) for n in names}
        self.cfg = RowConfig.from_dict(cfg)
        self.samplings = samplings_of(names)

    def __call__(self, batch):
        import pyarrow as pa

        from .schema import to_table

        rows, blobs = [], []
        for r in batch.to_pylist():
            decoded: Decoded = unpack(
                r["payload"], self.samplings, sha256=r["sha256"], error=r["error"], seconds=r["seconds"]
            )
            clip, volumes = clip_rows(self.models, _ref(r), decoded, self.cfg, self.device)
            rows += clip
            blobs += [_volumes_bytes(volumes)] + [None] * (len(clip) - 1)
        table = to_table(rows)
        return table.append_column("volumes", pa.array(blobs, type=pa.binary()))


def project_root() -> str:
    """The folder that holds the ``lens`` package (put on local Ray workers' ``PYTHONPATH``)."""
    return str(Path(__file__).resolve().parents[2])


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make sure Ray is initialised: reuse a running session, connect to ``address`` (or ``RAY_ADDRESS``),
    or start local Ray on ``num_cpus`` (default: every core) without the dashboard. Returns whether this
    call started the session (the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return True
    path = os.pathsep.join(p for p in (project_root(), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        logging_level=logging.WARNING,
        # workers import this checkout; OpenMP threads sleep at barriers (app.py does the same: spinning
        # threads of several actors on few cores cost more than anything else, bench/README.md)
        runtime_env={
            "env_vars": {"PYTHONPATH": path, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        },
    )
    return True


def run_ray(
    refs: Sequence[ClipRef],
    names: Sequence[str],
    cfg: RowConfig,
    sink: Sink,
    *,
    actors: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Plan:
    """Every clip of ``refs`` through a Ray Data pipeline (see the module docstring); returns the plan it
    used."""
    import ray
    import ray.data

    started = connect(address, num_cpus)
    try:
        res = ray.cluster_resources()
        p = plan(float(res.get("CPU", 1)), float(res.get("GPU", 0)), actors=actors, threads=threads)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver draws one bar: clips/s and ETA
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        if not refs:
            return p
        items = [asdict(r) for r in refs]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            decode_batch,
            fn_kwargs={"names": list(names)},
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=p.decode_cpus,
        )
        device = "cuda" if p.actor_gpus > 0 else "cpu"
        ds = ds.map_batches(
            ClipWorker,
            fn_constructor_kwargs={
                "names": list(names),
                "cfg": cfg.as_dict(),
                "threads": p.threads,
                "device": device,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=p.actors, max_tasks_in_flight_per_actor=2),
            num_cpus=p.actor_cpus,
            num_gpus=p.actor_gpus or None,
        )
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            rows = block.to_pylist()
            by_clip: dict[str, list[dict]] = {}
            for r in rows:
                by_clip.setdefault(r["clip_id"], []).append(r)
            for clip in by_clip.values():
                blob = next((r["volumes"] for r in clip if r.get("volumes")), None)
                for r in clip:
                    r.pop("volumes", None)
                sink(clip, _unpack_volumes(blob))
        return p
    finally:
        if started:
            ray.shutdown()


def _unpack_volumes(blob: bytes | None) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    import io

    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


def effective_threads(engine: str, threads: int | None) -> int:
    """The torch thread count a worker of ``engine`` will use (recorded with the results)."""
    if threads:
        return int(threads)
    return torch.get_num_threads() if engine == "local" else 1
