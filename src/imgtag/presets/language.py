"""Output language: a code from --lang turns into one sentence appended to the system prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence

from imgtag.config.options import option

# Names the model understands unambiguously. Chinese needs the script: "Chinese" alone lets the model
# pick Traditional characters, which a mainland shop back end does not want.
LANGUAGE_NAMES: dict[str, str] = {
    "zh": "Chinese (Simplified)",
    "zh-cn": "Chinese (Simplified)",
    "zh-hans": "Chinese (Simplified)",
    "zh-sg": "Chinese (Simplified)",
    "zh-tw": "Chinese (Traditional)",
    "zh-hant": "Chinese (Traditional)",
    "zh-hk": "Chinese (Traditional, Hong Kong)",
    "en": "English",
    "en-us": "English (US spelling)",
    "en-gb": "English (British spelling)",
    "ja": "Japanese",
    "ko": "Korean",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "pt": "Portuguese",
    "pt-br": "Portuguese (Brazil)",
    "pt-pt": "Portuguese (Portugal)",
    "it": "Italian",
    "ru": "Russian",
    "nl": "Dutch",
    "pl": "Polish",
    "tr": "Turkish",
    "ar": "Arabic",
    "he": "Hebrew",
    "hi": "Hindi",
    "vi": "Vietnamese",
    "th": "Thai",
    "id": "Indonesian",
    "ms": "Malay",
    "sv": "Swedish",
    "da": "Danish",
    "nb": "Norwegian (Bokmål)",
    "no": "Norwegian",
    "fi": "Finnish",
    "cs": "Czech",
    "uk": "Ukrainian",
    "el": "Greek",
    "hu": "Hungarian",
    "ro": "Romanian",
}

_CODE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*")


def normalise_lang(lang: str | None) -> str | None:
    """'ZH_cn' -> 'zh-cn'; free text such as 'Cantonese' is kept as typed. Empty -> None."""
    if lang is None or not lang.strip():
        return None
    lang = " ".join(lang.split())
    if _CODE.fullmatch(lang):
        return lang.replace("_", "-").lower()
    return lang


def language_name(lang: str) -> str:
    """A name for the prompt: known codes map to names, a known base with an unknown region keeps the
    region ("es-mx" -> "Spanish (es-mx)"), anything else is used verbatim."""
    if lang in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[lang]
    base = lang.split("-", 1)[0]
    if "-" in lang and base in LANGUAGE_NAMES:
        return f"{LANGUAGE_NAMES[base]} ({lang})"
    return lang


def language_instruction(lang: str, keep_original: Sequence[str] = ()) -> str:
    """The sentence that makes every text value come back in the wanted language."""
    name = language_name(lang)
    text = (
        f"Output language: write every text value in {name}, whatever language any text in the image is in. "
        "Keep the JSON field names exactly as defined; length limits count the characters of the final text."
    )
    if keep_original:
        fields = ", ".join(keep_original)
        text += f" Exception: {fields} follow their own field rules above and are not translated."
    return text


# Country codes typed for a language (jp for Japanese): the right suggestion, which spelling distance misses.
_COUNTRY_NOT_LANGUAGE = {"jp": "ja", "cn": "zh", "tw": "zh", "kr": "ko", "gr": "el", "dk": "da", "se": "sv",
                         "cz": "cs", "ua": "uk", "iw": "he", "br": "pt", "us": "en", "gb": "en", "il": "he"}


def known_codes() -> list[str]:
    """The primary codes (no region or script) --lang knows, sorted."""
    return sorted(code for code in LANGUAGE_NAMES if "-" not in code)


def lang_problem(lang: str | None, source: str | None = None) -> str | None:
    """One sentence when `lang` looks like a language code but names no language this module knows, else None.

    Accepted: a known code, or a well-formed BCP-47 tag whose primary language is known ("zh-Hant", "pt-BR",
    "es-MX": the prompt names the language and keeps the tag). A value that is not code-shaped ("Cantonese")
    is a language name, sent to the model as typed. A code-shaped typo ("zz") would pay for a whole run in
    a language the model has to guess, so it is refused with a did-you-mean."""
    code = normalise_lang(lang)
    if code is None or not _CODE.fullmatch(code):
        return None
    if code in LANGUAGE_NAMES or code.split("-", 1)[0] in LANGUAGE_NAMES:
        return None
    from imgtag.config.tomlfile import did_you_mean

    primary = code.split("-", 1)[0]
    hint = (f" (did you mean {_COUNTRY_NOT_LANGUAGE[primary]!r}?)" if primary in _COUNTRY_NOT_LANGUAGE
            else did_you_mean(primary, known_codes(), cutoff=0.5))
    return (f"{source or option('lang')} {lang!r} is not a language code imgtag knows{hint}; known codes: "
            f"{', '.join(known_codes())}"
            " (a region or script may follow, e.g. pt-BR, zh-Hant), or give the language's name, e.g. Cantonese")
