"""The training bitext of a distillation run: one corpus per language, and the batches drawn from it.

:func:`load_training_data` reads and checks every configured language's bitext (named
sources and the user's own files) before any model is loaded; :class:`BitextSampler`
draws deterministic, resumable batches of (language, source text, English text) from the
corpora. :mod:`optical_viz.distill` uses both (and re-exports them).

>>> corpora = load_training_data(DistillConfig.from_yaml("configs/quick.yaml"))  # doctest: +SKIP
>>> sampler = BitextSampler(corpora, batch_size=8, seed=0, sampling="temperature", temperature=5.0)  # doctest: +SKIP
>>> sampler.next_batch()[0]                   # ("yor_Latn", "...", "...")  # doctest: +SKIP

Not imported by ``optical_viz.data`` itself (which ``optical_viz.config`` imports): the
package stays light and free of the configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from optical_viz.config import DistillConfig

__all__ = ["Corpus", "load_training_data", "BitextSampler"]


@dataclass
class Corpus:
    """The bitext of one language, all sources concatenated: src (language side), tgt (English)."""

    lang: str
    sources: list[str]
    src: list[str]
    tgt: list[str]
    files: list[dict] = field(default_factory=list)  # provenance of user bitext files (sha256, counts)


def load_training_data(config: DistillConfig, root=None) -> list[Corpus]:
    """Load and check the bitext of every configured language (before any model is loaded).

    Named sources give every language they have; a user file (see
    :mod:`optical_viz.data.user_bitext`) gives its ``lang``, or the config's one language.
    Raises ValueError for an unknown language, a language that no listed source has, a user
    file without a language among several, a malformed file, or bitext that is empty or
    whose sides differ in length.
    """
    from optical_viz import data
    from optical_viz.data.user_bitext import bitext_source_language, is_named_source, read_bitext_file

    langs = []
    for code in config.languages:
        try:
            langs.append(data.resolve_language(code))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"unknown language {code!r}: {exc}") from None
    named = [s for s in config.bitext_sources if is_named_source(s)]
    available = {s: set(data.languages(s, root=root)) for s in named}
    files = {}  # position in bitext_sources -> BitextFile
    for i, entry in enumerate(config.bitext_sources):
        if is_named_source(entry):
            continue
        lang = bitext_source_language(entry)
        if lang is None:
            if len(langs) != 1:
                raise ValueError(
                    f"bitext_sources[{i}] ({entry}) does not say its language and the config has {len(langs)}; "
                    "write it as {path: FILE, lang: CODE}"
                )
            lang = langs[0]
        if lang not in langs:
            raise ValueError(f"bitext_sources[{i}] is {lang} bitext, but languages are {langs}")
        files[i] = read_bitext_file(entry, lang)
    corpora = []
    for code, lang in zip(config.languages, langs):
        sources = [s for s in named if lang in available[s]]
        own = [f for f in files.values() if f.lang == lang]
        if not sources and not own:
            raise ValueError(
                f"language {code!r} ({lang}) has no bitext in {config.bitext_sources}; "
                + "; ".join(f"{s} has {len(available[s])} languages" for s in named)
            )
        src, tgt = [], []
        for s in sources:
            bt = data.load_bitext(lang, source=s, split=config.bitext_split, root=root)
            if len(bt.src) != len(bt.tgt):
                raise ValueError(f"bitext {lang}/{s}/{config.bitext_split}: {len(bt.src)} source lines but {len(bt.tgt)} English lines")
            pairs = [(a, b) for a, b in zip(bt.src, bt.tgt) if a.strip() and b.strip()]
            src += [a for a, _ in pairs]
            tgt += [b for _, b in pairs]
        for f in own:  # validated and deduplicated when read
            src += f.src
            tgt += f.tgt
        if not src:
            raise ValueError(f"bitext of {lang} in {sources} (split {config.bitext_split}) is empty")
        corpora.append(Corpus(lang, sources + [" + ".join(f.files) for f in own], src, tgt,
                              files=[f.provenance() for f in own]))
    return corpora


class BitextSampler:
    """Deterministic batches across languages, resumable from a small state.

    Step k draws each example's language with ``np.random.default_rng([seed, k])``; within
    a language, examples come in epochs, each a permutation seeded by (seed, language,
    epoch). The state is the step and the number of examples drawn per language, so a
    restored sampler continues exactly where it stopped.

    length_buckets k > 1: the batches of k steps are drawn at once, their pairs sorted by
    ``length`` (a function of a (lang, source, English) triple, e.g. its longest side in
    tokens; default: characters) and cut into k batches again, served in a seeded random
    order: the same pairs over each k steps, grouped so that a batch pads less. It changes
    the data order (and so what a run learns, within noise); k = 1 (the default) does not.
    """

    def __init__(self, corpora: list[Corpus], batch_size: int, seed: int, sampling: str, temperature: float,
                 length_buckets: int = 1, length=None):
        if length_buckets < 1:
            raise ValueError(f"length_buckets must be >= 1, got {length_buckets}")
        self.corpora = corpora
        self.batch_size = batch_size
        self.seed = seed
        self.length_buckets = length_buckets
        self.length = length or (lambda pair: max(len(pair[1]), len(pair[2])))
        self._pool: list[list] | None = None  # the k batches of the current group (length_buckets > 1)
        self._pool_drawn: list[int] | None = None  # ``drawn`` when the current group was drawn
        sizes = np.array([len(c.src) for c in corpora], dtype=np.float64)
        if sampling == "uniform":
            p = np.ones_like(sizes)
        elif sampling == "proportional":
            p = sizes
        else:
            p = sizes ** (1.0 / temperature)
        self.probs = p / p.sum()
        self.step = 0
        self.drawn = [0] * len(corpora)
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def state_dict(self) -> dict:
        state = {"step": self.step, "drawn": list(self.drawn)}
        if self._pool_drawn is not None:
            state["pool_drawn"] = list(self._pool_drawn)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.drawn = [int(d) for d in state["drawn"]]
        self._pool = None
        if self.length_buckets > 1 and self.step % self.length_buckets and "pool_drawn" in state:
            # in the middle of a group: draw it again from where it started
            self.drawn = [int(d) for d in state["pool_drawn"]]
            self._draw_pool(self.step - self.step % self.length_buckets)

    def _perm(self, lang: int, epoch: int) -> np.ndarray:
        key = (lang, epoch)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] != lang}
            rng = np.random.default_rng([self.seed, 7919, lang, epoch])
            self._perms[key] = rng.permutation(len(self.corpora[lang].src))
        return self._perms[key]

    def next_batch(self) -> list[tuple[str, str, str]]:
        """The next global batch: ``batch_size`` triples (language, source text, English text)."""
        k = self.length_buckets
        if k == 1:
            batch = self._draw(self.step)
        else:
            if self.step % k == 0 or self._pool is None:
                self._draw_pool(self.step - self.step % k)
            batch = self._pool[self.step % k]
        self.step += 1
        return batch

    def _draw_pool(self, first: int) -> None:
        """Draw the batches of steps first .. first + k - 1 and regroup their pairs by length."""
        k = self.length_buckets
        self._pool_drawn = list(self.drawn)
        pairs = [p for step in range(first, first + k) for p in self._draw(step)]  # k * batch_size
        pairs.sort(key=self.length)  # stable: ties keep the drawing order
        groups = [pairs[i * self.batch_size : (i + 1) * self.batch_size] for i in range(k)]
        order = np.random.default_rng([self.seed, 104729, first]).permutation(k)  # long and short batches mixed
        self._pool = [groups[i] for i in order]

    def _draw(self, step: int) -> list[tuple[str, str, str]]:
        """The batch that step ``step`` draws (advances ``drawn``)."""
        rng = np.random.default_rng([self.seed, step])
        langs = rng.choice(len(self.corpora), size=self.batch_size, p=self.probs)
        batch = []
        for li in langs:
            c = self.corpora[li]
            n = self.drawn[li]
            idx = self._perm(li, n // len(c.src))[n % len(c.src)]
            self.drawn[li] += 1
            batch.append((c.lang, c.src[idx], c.tgt[idx]))
        return batch
