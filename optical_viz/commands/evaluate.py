"""`optical-viz evaluate TASK`: retrieval evaluation and word-alignment evaluation.

    optical-viz evaluate flores --langs yor_Latn,hau_Latn --json out.json
    optical-viz evaluate xquad-r --student RUN/student --teacher default
    optical-viz evaluate flores --langs configs/rq2-50.yaml --scoring maxsim
    optical-viz evaluate clir --collection DIR          # queries.tsv, passages.tsv, qrels.tsv
    optical-viz evaluate xquad-r --langs de --run out.trec --qrels out.qrels   # for trec_eval
    optical-viz evaluate alignment --pair enfr --method sinkhorn --layer 8
"""
from __future__ import annotations

import json
from pathlib import Path

from optical_viz.commands import add_data_root, check_writable, count
# the choices, from the vocabulary module that retrieval, encoder and alignment import too
# (no torch here: `optical-viz --help` stays fast)
from optical_viz.options import ALIGNERS, EXTRACTIONS, FLORES_TASK_SPLITS, PRECISIONS, SCORINGS, TASKS, AlignConfig

# what `evaluate` evaluates: a retrieval task, or word alignment against gold
EVALUATIONS = (*TASKS, "alignment")


def register(sub) -> None:
    default = AlignConfig()
    p = sub.add_parser(
        "evaluate",
        help="retrieval (xquad-r, xquad, flores, tatoeba, clir) or word-alignment evaluation",
        description="Evaluate a model: retrieval metrics with 95% bootstrap intervals, or word alignment.",
    )
    p.add_argument("task", choices=EVALUATIONS, help="what to evaluate")
    p.add_argument("--langs", default=None,
                   help="comma-separated codes (yo, yor, yor_Latn), 'all', or a YAML file with a 'languages' "
                        "list (default: all languages of the task; flores needs --langs)")
    p.add_argument("--model", default="default", help="'default' or a model directory (symmetric setting)")
    p.add_argument("--student", default=None, help="student model directory: encodes the non-English side")
    p.add_argument("--teacher", default=None, help="teacher model ('default' or a directory): the English side")
    p.add_argument("--scoring", choices=SCORINGS, default="dense", help="sentence cosine or MaxSim")
    p.add_argument("--split", default=None,
                   help=f"FLORES split ({', '.join(FLORES_TASK_SPLITS)}); default: all, or dev+test for a "
                        "model distilled on FLORES train bitext")
    p.add_argument("--layer", default=None,
                   help="hidden layer (default: -1 = last; for alignment a comma-separated list, "
                        f"default {default.layer})")
    p.add_argument("--batch-size", type=count(1), default=64, help="texts per forward pass (default 64)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bf16 on a GPU or a CPU with native bf16 (AVX512-BF16 / AMX), else fp32; "
                   "bf16: autocast, 1.5-2.7x faster on CPUs with AVX512-BF16, 6-7x slower on CPUs without, "
                   "embeddings at cosine ~0.99999 of fp32 (cached apart); compare systems only at equal precision")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--bootstrap", type=count(0, "0: no intervals"), default=1000,
                   help="bootstrap resamples for the 95%% intervals (default 1000; 0: no intervals)")
    p.add_argument("--collection", type=Path, default=None, help="clir: folder of the TSV collection")
    add_data_root(p)
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    p.add_argument("--run", type=Path, default=None,
                   help="write the ranking as a six-column TREC run (top --run-depth per query)")
    p.add_argument("--qrels", type=Path, default=None, help="write the relevance judgements as TREC qrels")
    p.add_argument("--run-depth", type=count(1), default=100, help="candidates per query in --run (default 100)")
    p.add_argument("--index", choices=("exact", "faiss-flat", "faiss-hnsw"), default="exact",
                   help="dense search: exact (streamed, the default) or a FAISS index (pip install faiss-cpu)")
    g = p.add_argument_group(
        "alignment", "without --method, --extraction, --eps and --layer: the leave-one-pair-out default setting "
        "(chosen on two gold pairs, scored on the third: results/alignment/heldout.json)")
    g.add_argument("--pair", default=None, help="gold sets, e.g. enfr or enfr,roen (default: all)")
    g.add_argument("--method", default=None, help="transport method(s), comma-separated, from "
                   f"{', '.join(ALIGNERS)} (default: {default.method})")
    g.add_argument("--extraction", default=None, help="how links are read off a plan, comma-separated, "
                   f"from {', '.join(EXTRACTIONS)} (default: {default.extraction})")
    g.add_argument("--eps", type=float, default=None, help=f"entropic regularisation (default: {default.eps})")
    p.set_defaults(func=run)


def run(args) -> int:
    for option in ("json", "run", "qrels"):  # before the evaluation, not after it
        if getattr(args, option) is not None:
            check_writable(getattr(args, option), f"--{option}")
    if args.task == "alignment":
        return _alignment(args)
    return _retrieval(args)


def _model(value):
    return None if value in (None, "default") else value


def parse_langs(value):
    """None, 'all', 'a,b,c' or a YAML file (a list, or a mapping with a 'languages' list)."""
    if value is None or value == "all":
        return value
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"language list {path} does not exist")
        import yaml

        doc = yaml.safe_load(path.read_text())
        langs = doc.get("languages") if isinstance(doc, dict) else doc
        if not isinstance(langs, list) or not langs:
            raise ValueError(f"{path} must hold a list of languages or a mapping with a 'languages' list")
        return [str(x) for x in langs]
    return [x.strip() for x in value.split(",") if x.strip()]


def _retrieval(args) -> int:
    from optical_viz.retrieval import evaluate

    langs = parse_langs(args.langs)
    if args.task == "flores" and langs is None:
        raise ValueError("flores has 204 languages: choose some with --langs (or --langs all)")
    if args.task == "clir" and args.collection is None:
        raise ValueError("clir needs --collection DIR (queries.tsv, passages.tsv, qrels.tsv)")
    if args.task != "clir" and args.collection is not None:
        raise ValueError("--collection only applies to clir")
    if args.teacher is not None and args.student is None:
        raise ValueError("--teacher needs --student")
    if args.student is not None and args.model != "default":
        raise ValueError("give either --model (symmetric) or --student/--teacher (asymmetric), not both")
    trec = args.run is not None or args.qrels is not None
    if trec and args.run_depth < 1:
        raise ValueError(f"--run-depth must be >= 1, got {args.run_depth}")
    if args.index != "exact":
        from optical_viz.retrieval._scoring import import_faiss

        try:
            import_faiss()
        except ImportError as exc:
            raise ValueError(str(exc)) from None
    kwargs = dict(langs=langs, split=args.split, scoring=args.scoring, batch_size=args.batch_size,
                  cache=not args.no_cache, n_bootstrap=args.bootstrap, precision=args.precision,
                  root=args.collection if args.task == "clir" else args.data_root,
                  run_depth=args.run_depth if trec else 0, index=args.index)
    if args.layer is not None:
        kwargs["layer"] = int(args.layer)
    if args.student is not None:
        report = evaluate(args.task, student=args.student, teacher=_model(args.teacher), **kwargs)
    else:
        report = evaluate(args.task, encoder=_model(args.model), **kwargs)
    for note in report.notes:
        print(f"note: {note}")
    print(format_frame(report.frame))
    print(f"{args.task}: {report.model}, {report.scoring} scoring"
          + (f", split {report.split}" if report.split else "") + f", {report.wall_time_s:.1f} s")
    if args.json is not None:
        _write_json(args.json, report.to_json())
    if trec:
        from optical_viz.retrieval import write_qrels, write_run

        if args.run is not None:
            print(f"wrote {args.run} ({write_run(report, args.run)} lines)")
        if args.qrels is not None:
            print(f"wrote {args.qrels} ({write_qrels(report, args.qrels)} lines)")
    return 0


def format_frame(frame) -> str:
    """The report table with metrics in percent and intervals as 'lo-hi'."""
    cols = [c for c in ("recall@1", "recall@5", "recall@10", "mrr@10", "map") if c in frame]
    out = frame[["lang", "direction", "n"]].copy()
    for c in cols:
        ci = frame.get(f"{c}_ci")
        out[c] = [
            "" if v != v else f"{100 * v:.1f}" + ("" if not isinstance(i, list) else f" [{100 * i[0]:.1f}-{100 * i[1]:.1f}]")
            for v, i in zip(frame[c], ci if ci is not None else [None] * len(frame))
        ]
    return out.to_string(index=False)


def _alignment(args) -> int:
    from optical_viz import alignment as al
    from optical_viz.encoder import load_encoder

    default = AlignConfig()  # the leave-one-pair-out setting; each option given replaces its part
    methods = _split(args.method) or [default.method]
    bad = [m for m in methods if m not in ALIGNERS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(ALIGNERS)}")
    extractions = _split(args.extraction) or [default.extraction]
    bad = [e for e in extractions if e not in EXTRACTIONS]
    if bad:
        raise ValueError(f"unknown extraction(s) {bad}; choose from {', '.join(EXTRACTIONS)}")
    layers = [int(x) for x in _split(args.layer)] or [default.layer]
    eps = default.eps if args.eps is None else args.eps
    pairs = _split(args.pair) or None  # None: every pair of the data root
    is_default = all(v is None for v in (args.method, args.extraction, args.eps, args.layer))
    encoder = load_encoder(_model(args.model))
    extraction = extractions[0] if len(extractions) == 1 else extractions
    result = al.evaluate_alignment(encoder, pairs, methods, layers, extraction, eps, args.data_root,
                                   threshold=default.threshold, **default.solver_kw)
    if is_default:
        result["setting"] = f"leave-one-pair-out default ({AlignConfig.SOURCE}): {default.describe()}"
    print(json.dumps(result, indent=2, default=str))
    if is_default:
        print(f"setting: the leave-one-pair-out default, {default.describe()} (chosen on two gold pairs, "
              f"scored on the third; {AlignConfig.SOURCE}); --method/--extraction/--eps/--layer choose another")
    if args.json is not None:
        _write_json(args.json, result)
    return 0


def _split(value) -> list[str]:
    return [x.strip() for x in str(value).split(",") if x.strip()] if value is not None else []


def _write_json(path: Path, doc: dict) -> None:
    from optical_viz.rundir import atomic_write

    atomic_write(path, json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {path}")
