"""How much each Space profile installs, from a dry-run resolve (nothing is downloaded but the index pages).

    python -m deploy.sizes cpu-basic zero-gpu t4-small

For each profile: ``pip install --dry-run --report`` of the ``requirements.txt`` :mod:`deploy.space` generates,
for the Space's Python on manylinux x86_64 against PyPI (and the profile's extra index), with this machine's
pip configuration switched off (``PIP_CONFIG_FILE=/dev/null``: no local mirrors, constraints or find-links).
The wheel sizes come from the servers (``Content-Length`` of each resolved file, a HEAD request); installed
size is larger (wheels are zip files; torch's unpack to ~3.5×).

When PyTorch's CPU index cannot be reached, the CPU profile is resolved with the same torch version from PyPI
and its CUDA-only packages (``nvidia-*``, ``cuda-*``, ``triton``: required by PyPI's Linux torch and by nothing
else here; the ``+cpu`` wheel requires none of them) are left out; the ``+cpu`` wheels' own size is then not
measured, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deploy.space import PROFILES, requirements

MiB = 2**20
PLATFORMS = [f"manylinux_2_{v}_x86_64" for v in range(28, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
"""A Space's Linux x86_64 (glibc ≥ 2.28): pip takes ``--platform`` tags literally, so every older one is named."""
CUDA = re.compile(r"^(nvidia-|cuda-|triton$)")


@dataclass
class Item:
    name: str
    version: str
    url: str
    size: int | None = None


def reachable(url: str, timeout: float = 10.0) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve(text: str, python_version: str, extra_index: str | None = None) -> list[Item]:
    """The wheels ``pip install -r`` of ``text`` would install on a Space (dry run, nothing installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT",)}
    env["PIP_CONFIG_FILE"] = os.devnull
    with tempfile.TemporaryDirectory() as tmp:
        req, report = Path(tmp) / "requirements.txt", Path(tmp) / "report.json"
        req.write_text(text)
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--target", str(Path(tmp) / "t"), "--report", str(report), "--only-binary=:all:",
               "--python-version", ".".join(python_version.split(".")[:2]),
               "--index-url", "https://pypi.org/simple", "-r", str(req)]  # fmt: skip
        cmd += [a for p in PLATFORMS for a in ("--platform", p)]
        if extra_index:
            cmd += ["--extra-index-url", extra_index]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not resolve:\n{done.stderr[-3000:]}")
        data = json.loads(report.read_text())
    return [
        Item(
            i["metadata"]["name"].lower().replace("_", "-"),
            i["metadata"]["version"],
            i["download_info"]["url"],
        )
        for i in data["install"]
    ]


def content_length(url: str) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as r:
            value = r.headers.get("Content-Length")
            return int(value) if value else None
    except OSError:
        return None


def measure(profile_name: str) -> dict:
    profile = PROFILES[profile_name]
    text = requirements(profile_name)
    note = ""
    substituted = profile.extra_index is not None and not reachable(profile.extra_index + "/")
    if substituted:
        # the same versions from PyPI (Linux: the CUDA build); its CUDA-only packages are dropped below
        text = re.sub(r"\+cpu\b", "", "\n".join(ln for ln in text.splitlines() if not ln.startswith("--")))
        note = f"{profile.extra_index} not reachable from here: torch/torchvision +cpu wheels not measured"
    items = resolve(text, profile.python_version, None if substituted else profile.extra_index)
    if substituted:
        items = [i for i in items if not CUDA.match(i.name)]
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(content_length, [i.url for i in items]))
    for item, size in zip(items, sizes):
        item.size = size
    torch_part = [i for i in items if i.name in ("torch", "torchvision")]
    cuda_part = [i for i in items if CUDA.match(i.name)]
    rest = [i for i in items if i not in torch_part and i not in cuda_part]

    def mib(part: list[Item]) -> float | None:
        return None if any(i.size is None for i in part) else sum(i.size or 0 for i in part) / MiB

    return {
        "profile": profile_name,
        "hardware": profile.hardware,
        "python": profile.python_version,
        "packages": len(items),
        "torch": [f"{i.name}=={i.version}" for i in torch_part],
        "torch_mib": None if substituted else mib(torch_part),
        "cuda_packages": sorted(f"{i.name}=={i.version}" for i in cuda_part),
        "cuda_mib": mib(cuda_part),
        "rest_mib": mib(rest),
        "unknown_sizes": [i.url for i in items if i.size is None],
        "note": note,
    }


def _fmt(v: float | None) -> str:
    return "not measured" if v is None else f"{v:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.sizes", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "profiles", nargs="*", default=["cpu-basic", "zero-gpu", "t4-small"], choices=sorted(PROFILES)
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    rows = [measure(name) for name in args.profiles]
    print(
        "| profile | Python | torch | wheels | torch + torchvision | CUDA (nvidia-*, cuda-*, triton) | the rest |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        cuda = f"{_fmt(r['cuda_mib'])} ({len(r['cuda_packages'])} packages)" if r["cuda_packages"] else "none"
        print(f"| `{r['profile']}` | {r['python']} | {', '.join(r['torch'])} | {r['packages']} | "
              f"{_fmt(r['torch_mib'])} | {cuda} | {_fmt(r['rest_mib'])} |")  # fmt: skip
    for r in rows:
        if r["note"] or r["unknown_sizes"]:
            print(f"{r['profile']}: {r['note']} {r['unknown_sizes'] or ''}".rstrip())
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
