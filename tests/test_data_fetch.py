"""`fetch` against a loopback HTTP server serving the real data folder (no other network)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import http.server
import socket
import threading

import pytest

from optical_viz.commands import data as data_command
from optical_viz.data import (
    CorruptDataError,
    DataError,
    MissingDataError,
    check,
    fetch,
    file_url,
    load_word_alignment,
    read_manifest,
)
from optical_viz.data.manifest import entries_for


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def mirror(data_root):
    """Base URL of an HTTP server on 127.0.0.1 (ephemeral port) serving the data root."""
    handler = functools.partial(_QuietHandler, directory=str(data_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _leftovers(root):
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_fetch_a_set_from_the_mirror(tmp_path, mirror):
    report = fetch("word_alignment", root=tmp_path, base_url=mirror, progress=False)
    expected = [e.path for e in entries_for("word_alignment")]
    assert sorted(report.downloaded) == sorted(expected) and report.skipped == []
    assert report.bytes == sum(e.size for e in entries_for("word_alignment"))
    assert check(tmp_path, sets=["word_alignment"]) == []
    assert len(load_word_alignment("enfr", root=tmp_path)) == 447
    again = fetch("word_alignment", root=tmp_path, base_url=mirror, progress=False)
    assert again.downloaded == [] and sorted(again.skipped) == sorted(expected)
    # a corrupt local file is downloaded again, the intact ones are skipped
    (tmp_path / "word_alignment/roen.gold").write_text("1-1\n")
    third = fetch("word_alignment", root=tmp_path, base_url=mirror, progress=False)
    assert third.downloaded == ["word_alignment/roen.gold"]
    assert check(tmp_path, sets=["word_alignment"]) == [] and _leftovers(tmp_path) == []


def test_corrupt_download_leaves_nothing(tmp_path, mirror):
    good = entries_for("word_alignment")
    bad = dataclasses.replace(good[1], sha256="0" * 64)  # the server's file no longer matches
    with pytest.raises(CorruptDataError) as info:
        fetch("word_alignment", root=tmp_path, base_url=mirror, progress=False, manifest=[good[0], bad])
    msg = str(info.value)
    assert bad.path in msg and "word_alignment" in msg and "nothing was written" in msg
    assert info.value.fix == f"optical-viz data fetch word_alignment --root {tmp_path}"
    assert not (tmp_path / bad.path).exists() and _leftovers(tmp_path) == []
    assert (tmp_path / good[0].path).is_file()  # files fetched before the failure are complete


def test_missing_on_the_server(tmp_path, mirror):
    entry = dataclasses.replace(entries_for("word_alignment")[0], path="word_alignment/frde.gold")
    with pytest.raises(MissingDataError, match=r"word_alignment: cannot download word_alignment/frde\.gold .*HTTP 404"):
        fetch("word_alignment", root=tmp_path, base_url=mirror, progress=False, manifest=[entry])
    assert list(tmp_path.rglob("*.gold")) == [] and _leftovers(tmp_path) == []


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes, sends 10, then closes the connection."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_interrupted_download_leaves_nothing(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(DataError, match=r"interrupted after 10 bytes.*nothing was written") as info:
            fetch("word_alignment", root=tmp_path, base_url=f"http://127.0.0.1:{server.server_address[1]}",
                  progress=False, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert info.value.set == "word_alignment"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unreachable_server(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot download .*--base-url"):
        fetch("word_alignment", root=tmp_path, base_url=f"http://127.0.0.1:{port}", progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_urls():
    entry = next(e for e in read_manifest() if e.path == "tatoeba/LASER_REPO_LICENSE")
    assert file_url(entry) == (
        "https://raw.githubusercontent.com/facebookresearch/LASER/"
        "74bc6ae7ffb7cba670fe0f428d0ede9f666fb821/LICENSE"
    )
    assert file_url(entry, "http://mirror/x/") == "http://mirror/x/tatoeba/LASER_REPO_LICENSE"
    spaced = dataclasses.replace(entry, path="a b/c", upstream_path="d e")
    assert file_url(spaced).endswith("/d%20e") and file_url(spaced, "http://m").endswith("/a%20b/c")


def test_fetch_command(tmp_path, mirror, capsys):
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "fetch", "word_alignment", "--root", str(tmp_path), "--base-url", mirror])
    assert args.func(args) == 0
    assert "5 files downloaded" in capsys.readouterr().out
    assert check(tmp_path, sets=["word_alignment"]) == []


def test_fetch_command_reports_errors(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["data", "fetch", "word_alignment", "--root", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}"]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "optical-viz data fetch: error: word_alignment: cannot download word_alignment/" in err


def _bicici_zip(data_root) -> bytes:
    """An archive laid out as bicici/SMTData's German-English_WordAlignment.zip, made back from
    the converted files (``de-en.de``, ``de-en.en``, 0-indexed ``de-en.ref.wa``)."""
    import io
    import zipfile

    base = data_root / "word_alignment_deen"
    pairs = (base / "deen.src-tgt").read_text(encoding="utf-8").splitlines()
    gold = (base / "deen.gold").read_text(encoding="utf-8").splitlines()
    de = [p.split(" ||| ")[0] for p in pairs]
    en = [p.split(" ||| ")[1] for p in pairs]
    rows = [f"{k} {int(i) - 1} {int(j) - 1} S" for k, line in enumerate(gold) for i, j in
            (link.split("-") for link in line.split())]
    rows.append(f"0 {len(de[0].split()) + 5} 0 S")  # a link past its sentence: dropped
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("wa/de-en.de", "\n".join(de) + "\n")
        z.writestr("wa/de-en.en", "\n".join(en) + "\n")
        z.writestr("wa/de-en.ref.wa", "\n".join(rows) + "\n")
    return buf.getvalue()


def test_convert_bicici_archive(data_root):
    from optical_viz.data.fetch import convert_bicici_wa

    files = convert_bicici_wa(_bicici_zip(data_root))
    for name in ("deen.src-tgt", "deen.gold"):
        assert files[name] == (data_root / "word_alignment_deen" / name).read_bytes()
    with pytest.raises(ValueError, match=r"no member \*\.ref\.wa"):
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.de", "a\n")
            z.writestr("x.en", "b\n")
        convert_bicici_wa(buf.getvalue())


def test_fetch_converts_the_deen_archive(tmp_path, data_root, monkeypatch):
    """`data fetch word_alignment_deen` downloads the upstream zip, converts it, checks it."""
    from optical_viz.data.manifest import ManifestEntry

    site = tmp_path / "site"
    site.mkdir()
    (site / "German-English_WordAlignment.zip").write_bytes(_bicici_zip(data_root))
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(ManifestEntry, "url", property(lambda e: f"{base}/{e.upstream_path}"))
    try:
        root = tmp_path / "root"
        report = fetch("deen", root=root, progress=False)
        assert sorted(report.downloaded) == ["word_alignment_deen/deen.gold", "word_alignment_deen/deen.src-tgt"]
        assert check(root, sets=["word_alignment_deen"]) == []
        assert len(load_word_alignment("deen", root=root)) == 100
        # an archive that converts to other files writes nothing
        import zipfile

        with zipfile.ZipFile(site / "German-English_WordAlignment.zip", "w") as z:
            z.writestr("de-en.de", "a b\n")
            z.writestr("de-en.en", "c d\n")
            z.writestr("de-en.ref.wa", "0 0 0 S\n")
        other = tmp_path / "other"
        with pytest.raises(CorruptDataError, match="does not match the manifest; nothing was written"):
            fetch("deen", root=other, progress=False)
        assert not (other / "word_alignment_deen" / "deen.gold").exists() and _leftovers(tmp_path) == []
    finally:
        server.shutdown()
        server.server_close()
