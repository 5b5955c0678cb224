"""Language codes: FLORES-200 codes (``yor_Latn``), ISO 639-3 (``yor``) and ISO 639-1 (``yo``).

Every language in the library is named by a *canonical code* ``xxx_Scrp`` (ISO 639-3 +
ISO 15924 script), the convention of FLORES-200. The 205 FLORES-200 varieties are listed in
``FLORES_CODES``; a few varieties that other sets carry but FLORES does not (Nigerian Pidgin
in MAFAND-MT, Interlingua in Tatoeba, ...) get a code of the same form in ``EXTRA_CODES``.

>>> resolve_language("yo")
'yor_Latn'
>>> resolve_language("zho")                                   # doctest: +SKIP
ValueError: ambiguous language code 'zho': it could be zho_Hans, zho_Hant; ...
>>> resolve_language("zho", among=["zho_Hans", "eng_Latn"])  # ambiguity settled by a source
'zho_Hans'
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = [
    "FLORES_CODES",
    "EXTRA_CODES",
    "KNOWN_CODES",
    "ISO639_1",
    "MACROLANGUAGES",
    "XQUAD_LANGUAGES",
    "XQUAD_R_LANGUAGES",
    "TATOEBA_CODES",
    "MAFAND_CODES",
    "ENGLISH",
    "resolve_language",
    "close_codes",
]

ENGLISH = "eng_Latn"

# The 205 varieties of FLORES-200 (as packaged by SIB-200).
FLORES_CODES: tuple[str, ...] = tuple(
    """
ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn als_Latn amh_Ethi
apc_Arab arb_Arab arb_Latn ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn
azb_Arab azj_Latn bak_Cyrl bam_Latn ban_Latn bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab
bjn_Latn bod_Tibt bos_Latn bug_Latn bul_Cyrl cat_Latn ceb_Latn ces_Latn cjk_Latn ckb_Arab
crh_Latn cym_Latn dan_Latn deu_Latn dik_Latn dyu_Latn dzo_Tibt ell_Grek eng_Latn epo_Latn
est_Latn eus_Latn ewe_Latn fao_Latn fij_Latn fin_Latn fon_Latn fra_Latn fur_Latn fuv_Latn
gaz_Latn gla_Latn gle_Latn glg_Latn grn_Latn guj_Gujr hat_Latn hau_Latn heb_Hebr hin_Deva
hne_Deva hrv_Latn hun_Latn hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn jav_Latn
jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda kas_Arab kas_Deva kat_Geor kaz_Cyrl kbp_Latn
kea_Latn khk_Cyrl khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn kmr_Latn knc_Arab knc_Latn
kon_Latn kor_Hang lao_Laoo lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn
lua_Latn lug_Latn luo_Latn lus_Latn lvs_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Arab
min_Latn mkd_Cyrl mlt_Latn mni_Beng mos_Latn mri_Latn mya_Mymr nld_Latn nno_Latn nob_Latn
npi_Deva nqo_Nkoo nso_Latn nus_Latn nya_Latn oci_Latn ory_Orya pag_Latn pan_Guru pap_Latn
pbt_Arab pes_Arab plt_Latn pol_Latn por_Latn prs_Arab quy_Latn ron_Latn run_Latn rus_Cyrl
sag_Latn san_Deva sat_Olck scn_Latn shn_Mymr sin_Sinh slk_Latn slv_Latn smo_Latn sna_Latn
snd_Arab som_Latn sot_Latn spa_Latn srd_Latn srp_Cyrl ssw_Latn sun_Latn swe_Latn swh_Latn
szl_Latn tam_Taml taq_Latn taq_Tfng tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi
tpi_Latn tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng uig_Arab ukr_Cyrl
umb_Latn urd_Arab uzn_Latn vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr yor_Latn
yue_Hant zho_Hans zho_Hant zsm_Latn zul_Latn
""".split()
)

# Varieties outside FLORES-200 that the other sets carry (same code form).
EXTRA_CODES: tuple[str, ...] = tuple(
    """
ang_Latn arq_Arab bbj_Latn ber_Latn bre_Latn cbk_Latn cha_Latn cor_Latn csb_Latn dsb_Latn
dtp_Latn fry_Latn gsw_Latn gug_Latn hsb_Latn ido_Latn ile_Latn ina_Latn kzj_Latn lat_Latn
lfn_Latn max_Latn mhr_Cyrl nds_Latn nov_Latn orv_Cyrl pam_Latn pcm_Latn pms_Latn swg_Latn
tzl_Latn wuu_Hans zgh_Tfng
""".split()
)

KNOWN_CODES: frozenset[str] = frozenset(FLORES_CODES) | frozenset(EXTRA_CODES)

# ISO 639-3 macrolanguage (or common non-FLORES) code -> the individual codes FLORES uses.
MACROLANGUAGES: dict[str, tuple[str, ...]] = {
    "ara": ("arb",), "zho": ("zho",), "chi": ("zho",), "cmn": ("zho",), "aze": ("azj", "azb"),
    "fas": ("pes", "prs"), "per": ("pes", "prs"), "swa": ("swh",), "msa": ("zsm",),
    "may": ("zsm",), "lav": ("lvs",), "sqi": ("als",), "alb": ("als",), "mon": ("khk",),
    "uzb": ("uzn",), "pus": ("pbt",), "orm": ("gaz",), "yid": ("ydd",), "mlg": ("plt",),
    "que": ("quy",), "nor": ("nob", "nno"), "kur": ("kmr", "ckb"), "ori": ("ory",),
    "nep": ("npi",), "ful": ("fuv",), "kau": ("knc",), "aym": ("ayr",), "ekk": ("est",),
}

# ISO 639-1 -> ISO 639-3 (individual or macrolanguage; macrolanguages expand as above).
ISO639_1: dict[str, str] = {
    "af": "afr", "ak": "aka", "am": "amh", "ar": "ara", "as": "asm", "ay": "aym", "az": "aze",
    "ba": "bak", "be": "bel", "bg": "bul", "bm": "bam", "bn": "ben", "bo": "bod", "br": "bre",
    "bs": "bos", "ca": "cat", "cs": "ces", "cy": "cym", "da": "dan", "de": "deu", "dz": "dzo",
    "ee": "ewe", "el": "ell", "en": "eng", "eo": "epo", "es": "spa", "et": "est", "eu": "eus",
    "fa": "fas", "ff": "ful", "fi": "fin", "fj": "fij", "fo": "fao", "fr": "fra", "fy": "fry",
    "ga": "gle", "gd": "gla", "gl": "glg", "gn": "grn", "gu": "guj", "ha": "hau", "he": "heb",
    "hi": "hin", "hr": "hrv", "ht": "hat", "hu": "hun", "hy": "hye", "ia": "ina", "id": "ind",
    "ie": "ile", "ig": "ibo", "io": "ido", "is": "isl", "it": "ita", "ja": "jpn", "jv": "jav",
    "ka": "kat", "kg": "kon", "ki": "kik", "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor",
    "kr": "kau", "ks": "kas", "ku": "kur", "kw": "cor", "ky": "kir", "la": "lat", "lb": "ltz",
    "lg": "lug", "li": "lim", "ln": "lin", "lo": "lao", "lt": "lit", "lv": "lav", "mg": "mlg",
    "mi": "mri", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa", "mt": "mlt",
    "my": "mya", "nb": "nob", "ne": "nep", "nl": "nld", "nn": "nno", "no": "nor", "ny": "nya",
    "oc": "oci", "om": "orm", "or": "ori", "pa": "pan", "pl": "pol", "ps": "pus", "pt": "por",
    "qu": "que", "rn": "run", "ro": "ron", "ru": "rus", "rw": "kin", "sa": "san", "sc": "srd",
    "sd": "snd", "sg": "sag", "si": "sin", "sk": "slk", "sl": "slv", "sm": "smo", "sn": "sna",
    "so": "som", "sq": "sqi", "sr": "srp", "ss": "ssw", "st": "sot", "su": "sun", "sv": "swe",
    "sw": "swa", "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "ti": "tir", "tk": "tuk",
    "tl": "tgl", "tn": "tsn", "tr": "tur", "ts": "tso", "tt": "tat", "tw": "twi", "ug": "uig",
    "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "wo": "wol", "xh": "xho", "yi": "yid",
    "yo": "yor", "zh": "zho", "zu": "zul",
}

# XQuAD's 12 and XQuAD-R's 11 file codes -> canonical codes (Chinese is simplified).
XQUAD_LANGUAGES: dict[str, str] = {
    "ar": "arb_Arab", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn",
    "hi": "hin_Deva", "ro": "ron_Latn", "ru": "rus_Cyrl", "th": "tha_Thai", "tr": "tur_Latn",
    "vi": "vie_Latn", "zh": "zho_Hans",
}
XQUAD_R_LANGUAGES: dict[str, str] = {k: v for k, v in XQUAD_LANGUAGES.items() if k != "ro"}

# MAFAND-MT file suffixes -> canonical codes ("en"/"fr" are the pivots).
MAFAND_CODES: dict[str, str] = {
    "en": "eng_Latn", "fr": "fra_Latn", "amh": "amh_Ethi", "hau": "hau_Latn", "ibo": "ibo_Latn",
    "kin": "kin_Latn", "lug": "lug_Latn", "luo": "luo_Latn", "nya": "nya_Latn", "pcm": "pcm_Latn",
    "sna": "sna_Latn", "swa": "swh_Latn", "tsn": "tsn_Latn", "twi": "twi_Latn", "xho": "xho_Latn",
    "yor": "yor_Latn", "zul": "zul_Latn", "bam": "bam_Latn", "bbj": "bbj_Latn", "ewe": "ewe_Latn",
    "fon": "fon_Latn", "mos": "mos_Latn", "wol": "wol_Latn",
}

# Tatoeba (LASER v1) file codes -> canonical codes. Notes: `cmn` mixes simplified and
# traditional characters (mostly simplified), `srp` mixes Cyrillic and Latin, `uzb` is mostly
# Latin, `kur` is Kurmanji, `ara` is Modern Standard Arabic.
TATOEBA_CODES: dict[str, str] = {
    "afr": "afr_Latn", "amh": "amh_Ethi", "ang": "ang_Latn", "ara": "arb_Arab", "arq": "arq_Arab",
    "arz": "arz_Arab", "ast": "ast_Latn", "awa": "awa_Deva", "aze": "azj_Latn", "bel": "bel_Cyrl",
    "ben": "ben_Beng", "ber": "ber_Latn", "bos": "bos_Latn", "bre": "bre_Latn", "bul": "bul_Cyrl",
    "cat": "cat_Latn", "cbk": "cbk_Latn", "ceb": "ceb_Latn", "ces": "ces_Latn", "cha": "cha_Latn",
    "cmn": "zho_Hans", "cor": "cor_Latn", "csb": "csb_Latn", "cym": "cym_Latn", "dan": "dan_Latn",
    "deu": "deu_Latn", "dsb": "dsb_Latn", "dtp": "dtp_Latn", "ell": "ell_Grek", "epo": "epo_Latn",
    "est": "est_Latn", "eus": "eus_Latn", "fao": "fao_Latn", "fin": "fin_Latn", "fra": "fra_Latn",
    "fry": "fry_Latn", "gla": "gla_Latn", "gle": "gle_Latn", "glg": "glg_Latn", "gsw": "gsw_Latn",
    "heb": "heb_Hebr", "hin": "hin_Deva", "hrv": "hrv_Latn", "hsb": "hsb_Latn", "hun": "hun_Latn",
    "hye": "hye_Armn", "ido": "ido_Latn", "ile": "ile_Latn", "ina": "ina_Latn", "ind": "ind_Latn",
    "isl": "isl_Latn", "ita": "ita_Latn", "jav": "jav_Latn", "jpn": "jpn_Jpan", "kab": "kab_Latn",
    "kat": "kat_Geor", "kaz": "kaz_Cyrl", "khm": "khm_Khmr", "kor": "kor_Hang", "kur": "kmr_Latn",
    "kzj": "kzj_Latn", "lat": "lat_Latn", "lfn": "lfn_Latn", "lit": "lit_Latn", "lvs": "lvs_Latn",
    "mal": "mal_Mlym", "mar": "mar_Deva", "max": "max_Latn", "mhr": "mhr_Cyrl", "mkd": "mkd_Cyrl",
    "mon": "khk_Cyrl", "nds": "nds_Latn", "nld": "nld_Latn", "nno": "nno_Latn", "nob": "nob_Latn",
    "nov": "nov_Latn", "oci": "oci_Latn", "orv": "orv_Cyrl", "pam": "pam_Latn", "pes": "pes_Arab",
    "pms": "pms_Latn", "pol": "pol_Latn", "por": "por_Latn", "ron": "ron_Latn", "rus": "rus_Cyrl",
    "slk": "slk_Latn", "slv": "slv_Latn", "spa": "spa_Latn", "sqi": "als_Latn", "srp": "srp_Cyrl",
    "swe": "swe_Latn", "swg": "swg_Latn", "swh": "swh_Latn", "tam": "tam_Taml", "tat": "tat_Cyrl",
    "tel": "tel_Telu", "tgl": "tgl_Latn", "tha": "tha_Thai", "tuk": "tuk_Latn", "tur": "tur_Latn",
    "tzl": "tzl_Latn", "uig": "uig_Arab", "ukr": "ukr_Cyrl", "urd": "urd_Arab", "uzb": "uzn_Latn",
    "vie": "vie_Latn", "war": "war_Latn", "wuu": "wuu_Hans", "xho": "xho_Latn", "yid": "ydd_Hebr",
    "yue": "yue_Hant", "zsm": "zsm_Latn",
}

_CANONICAL = re.compile(r"^([a-z]{3})_([a-z]{4})$")
_BY_PREFIX: dict[str, list[str]] = {}
for _code in sorted(KNOWN_CODES):
    _BY_PREFIX.setdefault(_code[:3], []).append(_code)


def _candidates(code: str) -> list[str]:
    """Canonical codes that ``code`` (lower-cased, no script) may denote; [] if unknown."""
    iso3 = ISO639_1.get(code, code) if len(code) == 2 else code
    individual = MACROLANGUAGES.get(iso3, (iso3,))
    return [c for i in individual for c in _BY_PREFIX.get(i, [])]


def close_codes(code: str, pool: Iterable[str] | None = None, n: int = 6) -> list[str]:
    """The codes of ``pool`` (default: every known code and alias) closest to ``code`` (difflib)."""
    pool = list(pool) if pool is not None else [*sorted(KNOWN_CODES), *_BY_PREFIX, *ISO639_1]
    lowered = {p.lower(): p for p in pool}
    key = code.lower()
    same_language = [p for p in lowered if len(key) >= 3 and p[:3] == key[:3] and p != key]
    similar = difflib.get_close_matches(key, list(lowered), n=n, cutoff=0.5)
    hits = list(dict.fromkeys(same_language + similar))[:n]  # e.g. 'yor_Cyrl' -> yor_Latn first
    return [lowered[h] for h in hits]


def resolve_language(code: str, among: Iterable[str] | None = None) -> str:
    """The canonical code (``yor_Latn``) of a FLORES code, ISO 639-3 or ISO 639-1 code.

    Args:
        code: ``"yor_Latn"`` (any case), ``"yor"`` or ``"yo"``; macrolanguage codes
            (``swa``, ``fas``, ``ara``...) map to the individual languages FLORES uses.
        among: if given, the canonical codes a data set provides: a code is looked up among
            them, which also settles scripts (``"zh"`` among XQuAD's languages is ``zho_Hans``).

    Raises:
        ValueError: the code is unknown (the message lists the closest codes), ambiguous (it
            lists the candidates) or, with ``among``, not among the available codes.
    """
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"language code must be a non-empty string, got {code!r}")
    key = code.strip().lower().replace("-", "_")
    available = sorted(set(among)) if among is not None else None
    match = _CANONICAL.match(key)
    if match:
        canonical = f"{match[1]}_{match[2].title()}"
        if canonical not in KNOWN_CODES and (available is None or canonical not in available):
            raise ValueError(
                f"unknown language code {code!r}; closest known codes: "
                f"{', '.join(close_codes(canonical, available)) or 'none'}"
            )
        candidates = [canonical]
    else:
        candidates = _candidates(key)
        if not candidates:
            raise ValueError(
                f"unknown language code {code!r} (expected a FLORES code like 'yor_Latn', "
                f"ISO 639-3 'yor' or ISO 639-1 'yo'); closest codes: "
                f"{', '.join(close_codes(key, available)) or 'none'}"
            )
    if available is not None:
        found = [c for c in candidates if c in available]
        if not found:
            raise ValueError(
                f"language {code!r} ({', '.join(candidates)}) is not available here; closest "
                f"available codes: {', '.join(close_codes(candidates[0], available)) or 'none'}"
            )
        candidates = found
    if len(candidates) > 1:
        raise ValueError(
            f"ambiguous language code {code!r}: it could be {', '.join(candidates)}; "
            "pass the FLORES code with its script"
        )
    return candidates[0]
