"""Data sets, language codes, the manifest, and `check` / `fetch`.

>>> from optical_viz.data import load_bitext, load_flores, resolve_language
>>> resolve_language("yo")
'yor_Latn'

See ``docs/architecture.md`` ("Data") for the contract and ``data/README.md`` for the sets.
"""
from optical_viz.data.fetch import FetchReport, fetch, file_url
from optical_viz.data.languages import (
    ENGLISH,
    FLORES_CODES,
    ISO639_1,
    KNOWN_CODES,
    MAFAND_CODES,
    TATOEBA_CODES,
    XQUAD_LANGUAGES,
    XQUAD_R_LANGUAGES,
    close_codes,
    resolve_language,
)
from optical_viz.data.loaders import (
    BITEXT_SOURCES,
    Bitext,
    FloresSplit,
    GoldAlignment,
    XQuAD,
    XQuADQuestion,
    XQuADR,
    XQuADRQuestion,
    languages,
    load_bitext,
    load_flores,
    load_word_alignment,
    load_xquad,
    load_xquad_r,
    word_alignment_pairs,
)
from optical_viz.data.user_bitext import BitextFile, bitext_source_language, check_bitext_source, read_bitext_file
from optical_viz.data.manifest import (
    SETS,
    CorruptDataError,
    DataError,
    DataSet,
    ManifestEntry,
    MissingDataError,
    Problem,
    check,
    get_set,
    read_manifest,
    sha256_file,
)

__all__ = [
    # loaders
    "load_bitext", "load_flores", "load_xquad", "load_xquad_r", "load_word_alignment",
    "word_alignment_pairs", "languages", "BITEXT_SOURCES",
    "BitextFile", "check_bitext_source", "bitext_source_language", "read_bitext_file",
    "Bitext", "FloresSplit", "XQuAD", "XQuADQuestion", "XQuADR", "XQuADRQuestion", "GoldAlignment",
    # language codes
    "resolve_language", "close_codes", "ENGLISH", "FLORES_CODES", "KNOWN_CODES", "ISO639_1",
    "XQUAD_LANGUAGES", "XQUAD_R_LANGUAGES", "TATOEBA_CODES", "MAFAND_CODES",
    # manifest, check, fetch
    "SETS", "DataSet", "ManifestEntry", "Problem", "get_set", "read_manifest", "sha256_file", "check",
    "fetch", "file_url", "FetchReport", "DataError", "MissingDataError", "CorruptDataError",
]
