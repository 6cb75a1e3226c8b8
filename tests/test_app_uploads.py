"""Uploads through the app's own HTTP route (``/gradio_api/upload``), as a hostile client would send them:
too big (refused from the declared length, before the body is read), or named to escape the upload folder
(stored inside it all the same), and files asked for outside the folders the app serves."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.test_app import make_moving_square

BOUNDARY = "mvtlensboundary"


def _multipart(name: str, data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post_upload(url: str, name: str, data: bytes) -> tuple[int, str]:
    req = urllib.request.Request(
        f"{url.rstrip('/')}/gradio_api/upload",
        data=_multipart(name, data),
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _upload_dir() -> Path:
    import app

    return Path(app.demo.GRADIO_CACHE)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_an_upload_declaring_more_than_the_limit_is_refused_before_its_body_is_read(app_url):
    """The client declares 300 MB and sends 1 kB of it: the answer, 413 with a sentence, comes at once —
    the server neither waits for nor stores the rest (Gradio's own limit would read 200 MB first)."""
    import app

    host, port = urllib.parse.urlsplit(app_url).netloc.split(":")
    declared = 300 * 1024**2
    assert declared > app.MAX_UPLOAD
    before = _files(_upload_dir())
    head = (
        f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(head + _multipart("big.mp4", b"\0" * 1024)[:1024])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"clip."):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = answer.split(b"\r\n", 1)[0].decode()
    assert " 413 " in status, answer[:300]
    assert "more than the 210 MB this app accepts" in answer.decode(errors="replace")
    assert time.monotonic() - t0 < 15, "answered without waiting for the body"
    assert not _files(_upload_dir()) - before, "nothing of it was stored"  # (other tests' files may go)


@pytest.mark.parametrize(
    "name",
    [
        "../../../../../../tmp/mvt-escape-{tag}.mp4",
        "/tmp/mvt-escape-{tag}.mp4",
        "..\\..\\..\\mvt-escape-{tag}.mp4",
        "....//....//mvt-escape-{tag}.mp4",
    ],
    ids=["dotdot", "absolute", "backslashes", "doubled"],
)
def test_a_file_name_that_climbs_out_is_stored_inside_the_upload_folder(app_url, tmp_path, name):
    clip = make_moving_square(tmp_path / "clip.mp4", frames=8, size=48, seed=2).read_bytes()
    tag = uuid.uuid4().hex[:8]
    status, body = _post_upload(app_url, name.format(tag=tag), clip)
    assert status == 200, body
    stored = Path(body.strip('[]"\n').split('"')[0])
    uploads = _upload_dir().resolve()
    assert uploads in stored.resolve().parents, stored
    assert stored.read_bytes() == clip
    assert not list(Path("/tmp").glob(f"mvt-escape-{tag}*")), "nothing written where the name pointed"


def test_session_folders_stay_inside_the_service_folder_whatever_the_session_id(tmp_path):
    """Gradio takes the session hash from the client: a hostile one names no folder outside."""
    import lens

    svc = lens.Service(out_dir=tmp_path / "out")
    for session in ("../../etc", "/tmp/x", "..", "a/../../b", "\0"):
        folder = svc.session_dir(session)
        assert folder.resolve().parent == svc.out_dir.resolve(), (session, folder)
    svc.end_session("../..")
    assert svc.out_dir.is_dir()


@pytest.mark.parametrize("path", ["/etc/passwd", "{out}/../../etc/passwd", "{out}/../x", "{app}"])
def test_only_files_of_the_output_folder_are_served(app_url, path):
    import app

    target = path.format(out=app.OUT_DIR, app=Path(app.__file__).resolve())
    url = f"{app_url.rstrip('/')}/gradio_api/file={urllib.parse.quote(target)}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=30)
    assert err.value.code in (403, 404), err.value.code
