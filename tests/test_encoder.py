"""The Encoder contract: token batches, word ids, layers, batching, sentence embeddings, errors."""
from __future__ import annotations

import json
import shutil
import unicodedata
import warnings

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optical_viz.encoder import Encoder, TokenBatch, _identity, load_encoder

TEXTS = ["The cat sleeps.", "Le chat dort sur le tapis rouge, vraiment.", "Ọmọ náà ń sùn", "猫が寝ている。"]
ATOL = 1e-5  # float32 results of different batch compositions


def test_default_encoder_attributes(encoder):
    assert isinstance(encoder, Encoder)
    assert encoder.name == "multilingual-e5-small-q4"
    assert (encoder.num_layers, encoder.hidden_size, encoder.max_length) == (12, 384, 512)
    assert encoder.prefix == "query: "
    assert encoder.identity.startswith("multilingual-e5-small-q4-") and len(encoder.identity) == len(encoder.name) + 17
    assert str(encoder.device) == "cpu"
    assert not encoder.model.training


def test_token_batch_contract(encoder):
    b = encoder.embed_tokens(TEXTS)
    assert isinstance(b, TokenBatch) and len(b) == 4
    B, T, H = b.embeddings.shape
    assert (B, H) == (4, 384) and b.embeddings.dtype == torch.float32
    assert b.mask.shape == b.input_ids.shape == (B, T) and b.mask.dtype == torch.bool
    assert b.input_ids.dtype == torch.long
    assert T == max(len(t) for t in b.tokens)
    for i in range(B):
        n = int(b.mask[i].sum())
        assert b.mask[i, :n].all() and not b.mask[i, n:].any()  # real tokens first
        assert len(b.tokens[i]) == len(b.word_ids[i]) == n
        assert b.tokens[i] == encoder.tokenizer.convert_ids_to_tokens(b.input_ids[i, :n].tolist())
        assert b.tokens[i][:4] == ["<s>", "▁que", "ry", ":"] and b.tokens[i][-1] == "</s>"
        assert b.word_ids[i][:4] == [None] * 4 and b.word_ids[i][-1] is None
        assert None not in b.word_ids[i][4:-1]
        assert b.words[i] == TEXTS[i].split()
        assert (b.input_ids[i, n:] == encoder.tokenizer.pad_token_id).all()
        assert (b.embeddings[i, n:] == 0).all() and (b.embeddings[i, :n].norm(dim=-1) > 0).all()
    assert b.word_ids[0][4:-1] == [0, 1, 2, 2, 2]  # ▁The ▁cat ▁sleep s .
    assert not b.embeddings.requires_grad


def test_outputs_are_usable_as_training_targets(encoder):
    """No gradients are recorded, but the outputs are normal tensors (not inference tensors)."""
    target = encoder.embed_tokens(TEXTS[:1]).embeddings  # (1, T, H)
    sent = encoder.embed_sentences(TEXTS[:1])
    assert not target.is_inference() and not sent.is_inference()
    x = torch.zeros_like(target, requires_grad=True)
    ((x - target) ** 2).sum().backward()  # would raise for inference tensors
    torch.testing.assert_close(x.grad, -2 * target)


def test_tokens_of_each_word_spell_the_word(encoder):
    b = encoder.embed_tokens(["Le chat dort sur le tapis rouge, vraiment."], prefix="")
    spelled: dict[int, str] = {}
    for tok, w in zip(b.tokens[0], b.word_ids[0]):
        if w is not None:
            spelled[w] = spelled.get(w, "") + tok.replace("▁", "")
    assert [spelled[i] for i in range(len(b.words[0]))] == b.words[0]
    assert b.tokens[0][0] == "<s>" and b.word_ids[0][1] == 0  # no prefix tokens with prefix=""


_CHARS = st.sampled_from(list("ab cé\tZ9,.!?ß ﬁ猫ọ́\u0301\u200b\n  ") + ["Ọmọ", "🙂", "\u3000"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_CHARS, max_size=30).map("".join), st.sampled_from(["", "query: ", "passage: "]))
@example("\u3000\u0301 a", "")  # a word the normaliser deletes (found by CI)
def test_word_ids_follow_whitespace_words(encoder, text, prefix):
    enc = encoder._encode([text], prefix)
    from optical_viz.encoder import _word_ids

    words, ids = _word_ids(text, prefix, enc.offsets[0], enc.special[0])
    assert words == text.split()
    real = [w for w in ids if w is not None]
    assert real == sorted(real) and all(0 <= w < len(words) for w in real)
    # every word has a token, except words the normaliser deletes entirely (only combining
    # marks or format characters, e.g. "\u0301" after an ideographic space)
    visible = {i for i, w in enumerate(words) if any(unicodedata.category(c)[0] in "LNPS" for c in w)}
    assert visible <= set(real)
    n_prefix = len(encoder._encode([prefix.rstrip()], "").ids[0]) - 2 if prefix else 0
    assert ids[: 1 + n_prefix] == [None] * (1 + n_prefix) and ids[-1] is None


def test_layer_indexing_matches_transformers(encoder):
    inputs = encoder.tokenize(TEXTS[:2])
    with torch.inference_mode():
        hs = encoder.model(**inputs, output_hidden_states=True).hidden_states  # 13 x (B, T, H)
    m = inputs["attention_mask"].bool()
    for layer, want in [(0, hs[0]), (5, hs[5]), (12, hs[12]), (-1, hs[12]), (-13, hs[0])]:
        got = encoder.embed_tokens(TEXTS[:2], layer=layer)
        torch.testing.assert_close(got.embeddings[m], want[m], atol=ATOL, rtol=0)
    emb = encoder.model.embeddings(input_ids=inputs["input_ids"])  # layer 0 = embedding output
    torch.testing.assert_close(hs[0], emb, atol=0, rtol=0)


def test_length_sorted_batches_return_input_order(encoder):
    together = encoder.embed_tokens(TEXTS, batch_size=2)
    for i, t in enumerate(TEXTS):
        alone = encoder.embed_tokens([t], batch_size=1)
        n = int(alone.mask.sum())
        assert together.tokens[i] == alone.tokens[0]
        torch.testing.assert_close(together.embeddings[i, :n], alone.embeddings[0, :n], atol=ATOL, rtol=0)


def test_sentence_embeddings_are_mean_of_real_tokens(encoder):
    b = encoder.embed_tokens(TEXTS, layer=6)
    m = b.mask.unsqueeze(-1).float()
    mean = (b.embeddings * m).sum(1) / m.sum(1)  # (B, H)
    raw = encoder.embed_sentences(TEXTS, layer=6, normalize=False, batch_size=3)
    torch.testing.assert_close(raw, mean, atol=ATOL, rtol=0)
    s = encoder.embed_sentences(TEXTS, layer=6)
    assert s.shape == (4, 384) and s.dtype == torch.float32
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(s, torch.nn.functional.normalize(mean, dim=-1), atol=ATOL, rtol=0)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(4))


def test_prefix_changes_the_embedding(encoder):
    q = encoder.embed_sentences(TEXTS[:1])
    assert torch.equal(q, encoder.embed_sentences(TEXTS[:1], prefix="query: "))
    p = encoder.embed_sentences(TEXTS[:1], prefix="passage: ")
    assert 0.5 < float(q[0] @ p[0]) < 0.9999


def test_hidden_states_are_differentiable(encoder):
    inputs = encoder.tokenize(TEXTS[:2])
    with torch.enable_grad():
        h = encoder.hidden_states(inputs["input_ids"], inputs["attention_mask"], layer=-1)  # (B, T, H)
        assert h.requires_grad and h.shape[:2] == inputs["input_ids"].shape
        h.sum().backward()
    w = encoder.model.encoder.layer[0].attention.self.query.weight
    assert w.grad is not None and w.grad.abs().sum() > 0
    encoder.model.zero_grad(set_to_none=True)
    assert (h[~inputs["attention_mask"].bool()] == 0).all()


def test_long_text_is_truncated_with_a_warning(encoder):
    text = " ".join(["word"] * 700)
    with pytest.warns(UserWarning, match="max_length=512"):
        b = encoder.embed_tokens([text, "short"])
    assert b.embeddings.shape[1] == 512 and b.tokens[0][-1] == "</s>"
    assert len(b.words[0]) == 700 and max(w for w in b.word_ids[0] if w is not None) < 700
    with pytest.warns(UserWarning, match="truncated"):
        ids = encoder.tokenize([text])["input_ids"]
    assert ids.shape == (1, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.tokenize(["short"])  # no warning


def test_empty_input(encoder):
    b = encoder.embed_tokens([])
    assert b.embeddings.shape == (0, 0, 384) and b.tokens == [] and b.mask.shape == (0, 0)
    assert encoder.embed_sentences([]).shape == (0, 384)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: e.embed_tokens(TEXTS, layer=13), r"layer must be an int in \[-13, 12\]"),
        (lambda e: e.embed_sentences(TEXTS, layer=-14), r"got -14"),
        (lambda e: e.embed_tokens("one text"), "list of strings, got str"),
        (lambda e: e.embed_sentences(["a", 3]), "item 1 is int"),
        (lambda e: e.embed_tokens(TEXTS, batch_size=0), "batch_size must be a positive int"),
        (lambda e: e.hidden_states(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4)), r"\(2, 3\) and \(2, 4\)"),
    ],
)
def test_bad_arguments_raise_value_errors(encoder, call, match):
    with pytest.raises(ValueError, match=match):
        call(encoder)


def test_progress_bar_only_with_several_batches(encoder, capsys):
    encoder.embed_sentences(TEXTS[:2], batch_size=2)
    assert "embedding sentences" not in capsys.readouterr().err
    encoder.embed_sentences(TEXTS[:2], batch_size=1)
    assert "embedding sentences" in capsys.readouterr().err


def test_progress_switch_silences_the_bars(encoder, capsys):
    encoder.progress = False
    try:
        encoder.embed_sentences(TEXTS[:2], batch_size=1)
        assert "embedding sentences" not in capsys.readouterr().err
    finally:
        encoder.progress = True


def test_bf16_is_close_to_fp32_and_cached_apart(encoder, default_model_dir):
    fast = load_encoder(default_model_dir, precision="bf16")
    assert fast.precision == "bf16" and encoder.precision == "fp32"
    assert fast.identity != encoder.identity and fast.identity.startswith(encoder.identity)
    a, b = encoder.embed_sentences(TEXTS), fast.embed_sentences(TEXTS)
    cos = (a * b).sum(-1)  # both L2-normalised
    assert cos.min() > 0.999 and not torch.equal(a, b)  # close, but really computed in bf16
    assert b.dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        load_encoder(default_model_dir, precision="fp16")


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Set whether the CPU has native bf16 (as torch reports it) -> a setter; the warn-once flag reset."""
    from optical_viz import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "_warned_emulated_bf16", False)

    def set_native(native: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)

    return set_native


def test_auto_precision_is_bf16_only_where_native(cpu_bf16):
    from optical_viz.encoder import native_bf16, resolve_precision

    cpu_bf16(True)
    assert native_bf16("cpu") and resolve_precision("auto", "cpu") == "bf16"
    cpu_bf16(False)
    assert not native_bf16("cpu") and resolve_precision("auto", "cpu") == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto and fp32 never warn
        assert resolve_precision("auto") == resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


def test_explicit_bf16_without_native_bf16_is_kept_and_warns_once(cpu_bf16, tiny_e5_dir):
    from optical_viz.encoder import resolve_precision

    cpu_bf16(False)
    with pytest.warns(RuntimeWarning, match=r"emulates it, measured 6-7x slower than fp32") as caught:
        assert resolve_precision("bf16", "cpu") == "bf16"  # a protocol that fixed bf16 keeps it
        fast = load_encoder(tiny_e5_dir, precision="bf16")  # the choice of precision, not its numbers
    assert len([w for w in caught if "bf16" in str(w.message)]) == 1 and fast.precision == "bf16"
    cpu_bf16(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_encoder(tiny_e5_dir, precision="auto").precision == "bf16"


def test_training_precision_auto_follows_the_cpu(cpu_bf16):
    from optical_viz.distill import DistillConfig, _accelerator

    cfg = DistillConfig(languages=["yor_Latn"], device="cpu")
    assert cfg.precision == "auto"  # the default
    for native, expected in ((False, "no"), (True, "bf16")):
        cpu_bf16(native)
        assert _accelerator(cfg, cpu=True).mixed_precision == expected
    cpu_bf16(False)
    assert _accelerator(cfg.replace(precision="fp32"), cpu=True).mixed_precision == "no"


def test_identity_hashes_weights_and_name(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights v1")
    a = _identity("m", tmp_path)
    assert a == _identity("m", tmp_path) and a.startswith("m-")
    assert _identity("other", tmp_path) != a
    (tmp_path / "model.safetensors").write_bytes(b"weights v2")
    assert _identity("m", tmp_path) != a
    assert _identity("org/model", tmp_path).startswith("org--model-")


def test_any_transformers_directory_loads(tmp_path, default_model_dir):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=250002, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(tmp_path / "tiny-bert")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_dir / f, tmp_path / "tiny-bert" / f)
    enc = load_encoder(tmp_path / "tiny-bert")
    assert (enc.name, enc.prefix, enc.num_layers, enc.hidden_size) == ("tiny-bert", "", 2, 16)
    assert enc.max_length == 64  # the position table, below the tokenizer's 512
    b = enc.embed_tokens(["a b c"], layer=1)
    assert b.embeddings.shape == (1, 5, 16) and b.word_ids[0] == [None, 0, 1, 2, None]
    assert enc.embed_sentences(["x", "y z"]).shape == (2, 16)


def test_tokenizer_is_built_once_per_content(tiny_e5_dir, tiny_minilm_dir, tmp_path):
    """Two directories with the same tokenizer files share one tokenizer object (the 2 s
    build is paid once per process); a changed file or another tokenizer gets its own."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_e5_dir, copy)
    a, b, other = load_encoder(tiny_e5_dir), load_encoder(copy), load_encoder(tiny_minilm_dir)
    assert a.tokenizer is b.tokenizer and other.tokenizer is not a.tokenizer
    config = copy / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_max_length": 128}))
    assert load_encoder(copy).tokenizer is not a.tokenizer


def test_student_directory_keeps_its_training_prefix(tiny_model_dir, tmp_path):
    """A distilled student (RUN/student with optical_viz_training.json) is named after its
    run and encodes with the prefix it was trained with, whatever its folder is called and
    whatever its sentence-transformers prompt says (on conftest's tiny model: it loads in
    0.1 s, where the default model's tokenizer alone takes ~3 s)."""
    from optical_viz.convert import write_sentence_transformers_files
    from optical_viz.encoder import TRAINING_INFO

    student = tmp_path / "run-ot" / "student"
    shutil.copytree(tiny_model_dir, student)
    assert load_encoder(student).prefix == ""  # a BERT directory: no prefix of its own
    (student / TRAINING_INFO).write_text('{"prefix": "query: ", "languages": ["yor_Latn"]}')
    enc = load_encoder(student)
    assert enc.prefix == "query: "
    assert enc.name == "run-ot/student"
    write_sentence_transformers_files(student, hidden_size=16, prefix="query: ", max_length=64)
    (student / TRAINING_INFO).unlink()
    assert load_encoder(student).prefix == "query: "  # the prompt of its sentence-transformers files
    (student / TRAINING_INFO).write_text('{"prefix": ""}')  # ... which the training prefix overrides
    assert load_encoder(student).prefix == ""


# ---- load errors: one line saying what was asked, what exists, what to do (issue 14, bug 3)
def test_missing_directory_is_a_file_not_found_error():
    with pytest.raises(FileNotFoundError, match=r"model directory /nonexistent does not exist"):
        load_encoder("/nonexistent")


def test_uncached_hub_id_fails_at_once_without_network():
    import time

    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"'bert-base-uncased' is neither a directory nor in the Hugging Face cache"):
        load_encoder("bert-base-uncased")
    assert time.perf_counter() - t0 < 5  # was ~23 s of network retries


def test_directory_without_a_model_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_encoder(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_value_error(default_model_dir):
    with pytest.raises(ValueError, match=r"device 'cuda' was asked but .* sees no CUDA device; use device='cpu'"):
        load_encoder(default_model_dir, device="cuda")


def test_model_without_tokenizer_is_a_value_error(default_model_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).symlink_to(default_model_dir / name)
    with pytest.raises(ValueError, match="has no usable tokenizer"):
        load_encoder(tmp_path)


@pytest.mark.parametrize("argv", [
    ["align", "The cat", "Le chat", "--model", "/nonexistent"],
    ["evaluate", "flores", "--langs", "yo", "--student", "/nonexistent"],
])
def test_cli_prints_one_line_for_a_missing_model(argv):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "optical_viz.cli", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "/nonexistent does not exist" in lines[0], out.stderr


def test_truncated_weights_name_the_damaged_file(tiny_model_dir, tmp_path, capsys):
    """Issue 25, bug 4: `truncate -s 5000000 S/model.safetensors` gave a 32-line SafetensorError
    traceback in `evaluate`; now one line names the file."""
    from optical_viz import cli

    student = tmp_path / "S"
    shutil.copytree(tiny_model_dir, student)
    weights = student / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(ValueError, match=rf"^{weights} is damaged \(.*\): the file was cut short or overwritten"):
        load_encoder(student)
    assert cli.main(["evaluate", "flores", "--langs", "yo", "--student", str(student), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"optical-viz evaluate: error: {weights} is damaged"), err


def test_a_run_directory_given_as_a_model_points_to_its_student(tiny_model_dir, tmp_path):
    """Issue 25: `--student RUN` (the run directory, not RUN/student) suggests RUN/student."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("steps: 4\n")
    shutil.copytree(tiny_model_dir, run / "student")
    with pytest.raises(FileNotFoundError, match=rf"{run} is a distillation run directory, not a model directory: "
                                                rf"its model is {run / 'student'}"):
        load_encoder(run)


def test_embed_tokens_on_given_words_keeps_every_word(encoder):
    """Pre-tokenized words (gold tokens): a word of Unicode spaces or zero-width characters
    gets no token, the other words keep their indices."""
    b = encoder.embed_tokens(None, words=[["a", "\u3000", "chat", "\u200b"], ["日本", "\u3000", "語"]], prefix="")
    assert b.words == [["a", "\u3000", "chat", "\u200b"], ["日本", "\u3000", "語"]]
    assert {w for w in b.word_ids[0] if w is not None} == {0, 2}  # a trailing lone "▁" joins "chat"
    assert 1 not in b.word_ids[1] and {0, 2} <= set(b.word_ids[1])
    plain = encoder.embed_tokens(["a chat"], prefix="")
    assert b.tokens[0][:3] == plain.tokens[0][:3] == ["<s>", "▁a", "▁chat"]
    with pytest.raises(ValueError, match="texts or words, not both"):
        encoder.embed_tokens(["a"], words=[["a"]])
    with pytest.raises(ValueError, match="lists of non-empty strings; item 0"):
        encoder.embed_tokens(None, words=[["a", ""]])
