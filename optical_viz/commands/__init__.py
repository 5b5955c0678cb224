"""Command groups of the ``optical-viz`` CLI; one module per group (see ``optical_viz.cli``)."""

DATA_ROOT_HELP = "data root (default: $OPTICAL_VIZ_DATA, else data/ in the repository)"


def count(minimum: int, meaning: str = ""):
    """An argparse ``type``: an integer >= ``minimum``, checked when the command line is parsed
    (before any model loads); ``meaning`` is added to the message (e.g. "0: no intervals")."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{f' ({meaning})' if meaning else ''}, got {value}")
        return value

    parse.__name__ = "count"  # argparse names the type in some messages
    return parse


def add_data_root(parser) -> None:
    """The one data-root option of every command that reads data: ``--data-root DIR`` (``args.data_root``)."""
    from pathlib import Path

    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR", help=DATA_ROOT_HELP)


def check_writable(path, option: str, *, directory: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work (a model load, an
    evaluation, a training): ValueError, one line naming the option and the path.

    path: a file to write (``directory=False``) or a folder to create or fill. Folders that do
    not exist yet are not created here: the nearest existing one must be a folder in which a
    file can be created (a probe file is made and removed at once), which catches a read-only
    file system, a folder without write permission and a parent that is a regular file.
    """
    import os
    import tempfile
    from pathlib import Path

    path = Path(path).expanduser()
    if directory and path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: exists and is not a folder")
    if not directory and path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    existing = path if directory else path.parent
    while not existing.exists() and not existing.is_symlink():  # the folders the command will create
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {path}: cannot be written, {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".optical-viz-write-test-")
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot be written, {existing} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
