"""Command groups of the ``optical-viz`` CLI; one module per group (see ``optical_viz.cli``)."""

DATA_ROOT_HELP = "data root (default: $OPTICAL_VIZ_DATA, else data/ in the repository)"


def add_data_root(parser) -> None:
    """The one data-root option of every command that reads data: ``--data-root DIR`` (``args.data_root``)."""
    from pathlib import Path

    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR", help=DATA_ROOT_HELP)
