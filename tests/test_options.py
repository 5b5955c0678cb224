"""optical_viz.options: the vocabularies are their owners' (one tuple each, no copies), the CLI
and the config read them without torch, and AlignConfig validates and describes the aligner's
setting."""
from __future__ import annotations

from pathlib import Path

import pytest

from optical_viz.options import ALIGNERS, EXTRACTIONS, AlignConfig


def test_the_cli_choices_are_their_owners_vocabulary():
    """The parser and the modules that implement the choices read one tuple each from
    optical_viz.options (no copies): the very same objects."""
    from optical_viz import alignment, encoder, options, retrieval
    from optical_viz.commands import align, evaluate
    from optical_viz.retrieval._tasks import FLORES_TASK_SPLITS

    assert retrieval.TASKS is options.TASKS and evaluate.TASKS is options.TASKS
    assert evaluate.EVALUATIONS == (*options.TASKS, "alignment")
    assert retrieval.SCORINGS is evaluate.SCORINGS is options.SCORINGS
    assert FLORES_TASK_SPLITS is evaluate.FLORES_TASK_SPLITS is options.FLORES_TASK_SPLITS
    assert encoder.PRECISIONS is evaluate.PRECISIONS is options.PRECISIONS
    assert alignment.ALIGNERS is align.ALIGNERS is evaluate.ALIGNERS is options.ALIGNERS
    assert alignment.EXTRACTIONS is align.EXTRACTIONS is evaluate.EXTRACTIONS is options.EXTRACTIONS
    assert alignment.AlignConfig is align.AlignConfig is evaluate.AlignConfig is options.AlignConfig


@pytest.mark.parametrize("module", ["optical_viz.cli", "optical_viz.commands.evaluate", "optical_viz.commands.align",
                                    "optical_viz.options", "optical_viz.config"])
def test_the_cli_and_the_config_import_no_torch(module):
    """`optical-viz --help` and the parser's choices and defaults need no torch (seconds to import)."""
    import subprocess
    import sys

    code = (f"import sys, {module}; from optical_viz.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"



def test_align_config_is_validated_and_described():
    default = AlignConfig()
    assert default.extraction in EXTRACTIONS and default.method in ALIGNERS and default.is_default()
    assert default.describe() == "sinkhorn eps=0.3, inter, layer 7"  # the leave-one-pair-out setting (issue 24)
    assert AlignConfig.with_options(method=None, eps=None, layer=None, extraction=None) == default
    chosen = AlignConfig.with_options(method="emd", layer=5)
    assert (chosen.method, chosen.eps, chosen.layer, chosen.extraction) == ("emd", default.eps, 5, default.extraction)
    assert not chosen.is_default() and chosen.describe() == "emd, inter, layer 5"
    assert chosen.align_kwargs() == {"method": "emd", "eps": default.eps, "layer": 5, "extraction": "inter", "threshold": None}
    for bad, match in [({"method": "ot"}, "method must be one of"), ({"extraction": "max"}, "extraction must be one of"),
                       ({"eps": 0.0}, "eps must be a finite number > 0"), ({"eps": float("nan")}, "eps must be"),
                       ({"layer": 7.5}, "layer must be an integer"), ({"threshold": -1}, "threshold must be > 0")]:
        with pytest.raises(ValueError, match=match):
            AlignConfig(**bad)
