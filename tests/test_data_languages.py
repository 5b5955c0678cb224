"""Language codes: FLORES / ISO 639-3 / ISO 639-1 resolution, ambiguity, unknown codes."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optical_viz.data.languages import (
    EXTRA_CODES,
    FLORES_CODES,
    ISO639_1,
    KNOWN_CODES,
    MACROLANGUAGES,
    MAFAND_CODES,
    TATOEBA_CODES,
    XQUAD_LANGUAGES,
    XQUAD_R_LANGUAGES,
    close_codes,
    resolve_language,
)


def test_flores_catalogue_matches_the_data(data_root):
    assert len(FLORES_CODES) == len(set(FLORES_CODES)) == 205
    assert sorted(FLORES_CODES) == sorted(p.name for p in (data_root / "flores200" / "annotated").iterdir())
    assert not set(FLORES_CODES) & set(EXTRA_CODES)
    assert all(re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", c) for c in KNOWN_CODES)


@pytest.mark.parametrize(
    "code, expected",
    [
        ("yor_Latn", "yor_Latn"), ("YOR_LATN", "yor_Latn"), ("yor-Latn", "yor_Latn"), (" yor ", "yor_Latn"),
        ("yor", "yor_Latn"), ("yo", "yor_Latn"), ("en", "eng_Latn"), ("eng", "eng_Latn"),
        ("sw", "swh_Latn"), ("swa", "swh_Latn"), ("swh", "swh_Latn"), ("sq", "als_Latn"),
        ("mn", "khk_Cyrl"), ("uz", "uzn_Latn"), ("ne", "npi_Deva"), ("ps", "pbt_Arab"),
        ("pcm", "pcm_Latn"), ("ia", "ina_Latn"), ("zho_hant", "zho_Hant"),
    ],
)
def test_resolve(code, expected):
    assert resolve_language(code) == expected


@pytest.mark.parametrize(
    "code, candidates",
    [
        ("zho", ["zho_Hans", "zho_Hant"]), ("zh", ["zho_Hans", "zho_Hant"]), ("cmn", ["zho_Hans", "zho_Hant"]),
        ("ara", ["arb_Arab", "arb_Latn"]), ("ar", ["arb_Arab", "arb_Latn"]), ("fas", ["pes_Arab", "prs_Arab"]),
        ("no", ["nob_Latn", "nno_Latn"]), ("kas", ["kas_Arab", "kas_Deva"]), ("az", ["azj_Latn", "azb_Arab"]),
    ],
)
def test_ambiguous_codes_list_their_candidates(code, candidates):
    with pytest.raises(ValueError, match="ambiguous") as info:
        resolve_language(code)
    for c in candidates:
        assert c in str(info.value)


def test_among_settles_ambiguity_and_reports_unavailable():
    assert resolve_language("zh", among=XQUAD_LANGUAGES.values()) == "zho_Hans"
    assert resolve_language("ara", among=TATOEBA_CODES.values()) == "arb_Arab"
    assert resolve_language("cmn", among=TATOEBA_CODES.values()) == "zho_Hans"
    with pytest.raises(ValueError, match="not available") as info:
        resolve_language("yor", among=["yue_Hant", "por_Latn", "eng_Latn"])
    assert "yor_Latn" in str(info.value) and "por_Latn" in str(info.value)


@pytest.mark.parametrize(
    "code, close",
    [("yorr", "yor"), ("yor_Latin", "yor_Latn"), ("yor_Cyrl", "yor_Latn"), ("engl", "eng"), ("qqq", None)],
)
def test_unknown_codes_list_the_closest(code, close):
    with pytest.raises(ValueError, match="unknown language code") as info:
        resolve_language(code)
    assert repr(code) in str(info.value)
    if close is not None:
        assert close in str(info.value)


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_non_strings_are_rejected(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        resolve_language(bad)


def test_every_flores_code_and_unique_prefix_round_trips():
    by_prefix: dict[str, list[str]] = {}
    for c in KNOWN_CODES:
        assert resolve_language(c) == c
        assert resolve_language(c.upper()) == c
        by_prefix.setdefault(c[:3], []).append(c)
    for prefix, codes in by_prefix.items():
        if len(codes) == 1 and prefix not in MACROLANGUAGES:
            assert resolve_language(prefix) == codes[0]


def test_tables_point_at_known_codes():
    for table in (TATOEBA_CODES, MAFAND_CODES, XQUAD_LANGUAGES):
        assert set(table.values()) <= KNOWN_CODES
    assert len(XQUAD_LANGUAGES) == 12 and len(XQUAD_R_LANGUAGES) == 11
    assert set(XQUAD_LANGUAGES) - set(XQUAD_R_LANGUAGES) == {"ro"}
    assert XQUAD_LANGUAGES["zh"] == "zho_Hans" and XQUAD_LANGUAGES["ar"] == "arb_Arab"
    for iso1 in ISO639_1:  # every 2-letter code resolves or is reported as ambiguous, never unknown
        try:
            assert resolve_language(iso1) in KNOWN_CODES
        except ValueError as exc:
            assert "ambiguous" in str(exc), iso1


def test_close_codes_uses_the_given_pool():
    assert close_codes("yor_Latm", ["yor_Latn", "eng_Latn"])[0] == "yor_Latn"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_any_string_gives_a_known_code_or_a_value_error(code):
    try:
        assert resolve_language(code) in KNOWN_CODES
    except ValueError as exc:
        assert str(exc)
