"""Treatment-name normalisation and matching.

Every comparison of treatment names in :mod:`moa_features.annotate` goes through this module:
:func:`normalize_name` gives the canonical key; :func:`is_faithful` says whether that key can
be trusted (no letters were dropped to make it); :func:`match_names` pairs a screen's names
with a user's table (overrides, an MoA column, an annotation table) exactly, and by key only
where the key is unambiguous on both sides; :func:`name_variants` gives the fallback keys
(isoform suffix, ``A/B`` and ``A (B)`` spellings) tried against the curated table.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# UniProt accession (https://www.uniprot.org/help/accession_numbers) and entry name.
ACCESSION_RE = re.compile(r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})$")
_ENTRY_NAME_RE = re.compile(r"^[A-Z0-9]{1,10}_[A-Z0-9]{1,5}$")

# Greek letters (and the German sharp s, a common stand-in for beta), either case.
_GREEK_LETTERS = {
    "α": "alpha",
    "Α": "alpha",
    "β": "beta",
    "Β": "beta",
    "ß": "beta",
    "ẞ": "beta",
    "γ": "gamma",
    "Γ": "gamma",
    "δ": "delta",
    "Δ": "delta",
    "ε": "epsilon",
    "Ε": "epsilon",
    "κ": "kappa",
    "Κ": "kappa",
    "λ": "lambda",
    "Λ": "lambda",
    "ω": "omega",
    "Ω": "omega",
}
# Greek words shortened to the letter HGNC symbols use (IFNG, IFNL1, IFNW1, IL1B, TNFa).
_GREEK_WORDS = (
    ("epsilon", "e"),
    ("lambda", "l"),
    ("alpha", "a"),
    ("gamma", "g"),
    ("kappa", "k"),
    ("omega", "w"),
    ("delta", "d"),
    ("beta", "b"),
)
_UNIT = r"(?:[pnuμm]?g\s*/\s*[mμu]?l|[pnuμm]?mol\s*/\s*l|[pnuμm]?m|i?u\s*/\s*m?l|%|x)"
_CONCENTRATION_RE = re.compile(
    rf"(?:[\s_@,;:-]+|\s*\()\s*\d+(?:[.,]\d+)?(?:e-?\d+)?\s*{_UNIT}\s*\)?\s*$", re.IGNORECASE
)
_PREFIX_RE = re.compile(r"^(?:recombinant\s+)?(?:(?:human|hu)\s+)?", re.IGNORECASE)
_RH_PREFIX_RE = re.compile(r"^r?hu?-?(?=[A-Z])")
# A lower-case isoform/splice-variant letter after the number: CCL14a, SDF-1alpha, CXCL12b.
_ISOFORM_RE = re.compile(r"^(.*\d)[\s-]?(?:[a-h]|alpha|beta|gamma|delta)$")
_PARTS_RE = re.compile(r"\s*[/()]\s*")


def _clean_text(name: object) -> str:
    """NFKC text with Greek letters spelled out, trailing concentrations and species prefixes removed."""
    text = unicodedata.normalize("NFKC", str(name)).strip()
    for letter, word in _GREEK_LETTERS.items():
        text = text.replace(letter, word)
    while True:
        stripped = _CONCENTRATION_RE.sub("", text)
        if stripped == text or not stripped:
            break
        text = stripped
    text = _PREFIX_RE.sub("", text)
    return _RH_PREFIX_RE.sub("", text)


# Spelled-out family names shortened as cytokine symbols are (Interleukin-6 -> IL6, Interferon gamma -> IFNG).
_FAMILY_WORDS = (("interleukin", "il"), ("interferon", "ifn"))


def _key(text: str) -> str:
    text = text.casefold()
    for word, short in _FAMILY_WORDS:
        text = text.replace(word, short)
    for word, letter in _GREEK_WORDS:
        text = text.replace(word, letter)
    return re.sub(r"[^0-9a-z]", "", text)


def normalize_name(name: object) -> str:
    """Canonical key of a treatment name, used for every name comparison.

    Parameters
    ----------
    name : object
        A treatment name (converted with ``str``).

    Returns
    -------
    str
        Lower-case ASCII letters and digits only. Case, hyphens, spaces, primes and other
        punctuation are dropped; Greek letters and their spelled-out names become one Latin
        letter (``TNF-α``, ``TNF-alpha``, ``TNFa`` -> ``"tnfa"``; ``IL-1β`` -> ``"il1b"``);
        ``Interleukin``/``Interferon`` become ``il``/``ifn`` (``Interleukin-6`` -> ``"il6"``);
        a trailing concentration with a unit is dropped (``"EGF 10 ng/mL"`` -> ``"egf"``),
        and so are leading ``recombinant``/``human`` and ``rh``/``rhu`` (``rhEGF``).
        Letters outside Latin and Greek are dropped too: see :func:`is_faithful`.
    """
    return _key(_clean_text(name))


def is_faithful(name: object) -> bool:
    """Whether :func:`normalize_name` keeps what distinguishes ``name`` from other names.

    A key is faithful when it holds at least one Latin letter and no letter was dropped to
    make it. Non-Latin names (``白介素``), punctuation (``???``, ``---``) and bare numbers
    (``123``, ``1-2-3``) are not: two different names of that kind can share a key, so
    they are compared exactly.
    """
    text = _clean_text(name)
    letters_kept = all(c.isascii() for c in text if c.isalpha())
    return letters_kept and bool(re.search(r"[a-z]", _key(text)))


def looks_like_accession(name: str) -> bool:
    """Whether ``name`` is a UniProt accession (``P01375``) or entry name (``TNFA_HUMAN``)."""
    token = str(name).strip().upper()
    return bool(ACCESSION_RE.match(token) or _ENTRY_NAME_RE.match(token))


def name_variants(name: str) -> list[tuple[str, str]]:
    """Fallback keys of ``name``, tried in order when its own key matches nothing.

    Returns
    -------
    list of (key, how)
        ``how`` is ``"parts"`` for each part of a ``CXCL6/GCP-2`` or ``GCP-2 (CXCL6)``
        spelling (a match needs every part to agree), and ``"isoform"`` for the name
        without a lower-case isoform suffix (``CCL14a`` -> ``ccl14``, ``SDF-1β`` -> ``sdf1``).
    """
    out: list[tuple[str, str]] = []
    text = _clean_text(name)
    parts = [p for p in _PARTS_RE.split(text) if p.strip()]
    if len(parts) > 1:
        out += [(normalize_name(p), "parts") for p in parts]
    m = _ISOFORM_RE.match(text)
    if m:
        out.append((normalize_name(m.group(1)), "isoform"))
    return [(k, how) for k, how in out if k]


@dataclass(frozen=True)
class Collision:
    """A screen name that shares its key with a reference name it was not matched to."""

    name: str
    references: tuple[str, ...]
    key: str
    reason: str

    def describe(self) -> str:
        refs = ", ".join(f"'{r}'" for r in self.references)
        return f"'{self.name}' not matched to {refs} (same normalised form '{self.key}'; {self.reason})"


def match_names(names: Iterable[str], references: Sequence[str]) -> tuple[dict[str, int], list[Collision]]:
    """Pair each name with the reference name it stands for.

    A name matches a reference with the same text (surrounding spaces ignored). Otherwise
    it matches by :func:`normalize_name` only when the key is unambiguous: faithful
    (:func:`is_faithful`) on both sides, held by exactly one reference, and by exactly one
    of ``names``. Every other shared key is reported as a :class:`Collision`.

    Parameters
    ----------
    names : iterable of str
        The screen's distinct treatment names.
    references : sequence of str
        Names of a user's table (overrides, MoA column, annotation); duplicates keep the first.

    Returns
    -------
    matches : dict
        Name -> index into ``references``, for the names that matched.
    collisions : list of Collision
        Names left unmatched although a reference shares their key, with the reason.
    """
    names = list(dict.fromkeys(str(n) for n in names))
    exact: dict[str, int] = {}
    by_key: dict[str, list[int]] = {}
    for i, ref in enumerate(references):
        exact.setdefault(str(ref).strip(), i)
        by_key.setdefault(normalize_name(ref), []).append(i)
    name_keys: dict[str, list[str]] = {}
    for n in names:
        name_keys.setdefault(normalize_name(n), []).append(n)
    matches: dict[str, int] = {}
    collisions: list[Collision] = []
    for n in names:
        if n.strip() in exact:
            matches[n] = exact[n.strip()]
            continue
        key = normalize_name(n)
        refs = by_key.get(key, [])
        if not refs:
            continue
        ref_names = tuple(dict.fromkeys(str(references[i]) for i in refs))
        if not is_faithful(n) or not all(is_faithful(r) for r in ref_names):
            reason = "letters or symbols that normalisation drops: names are compared exactly"
        elif len(ref_names) > 1:
            reason = "several reference names share it: name the treatment exactly"
        elif len(name_keys[key]) > 1:
            others = ", ".join(f"'{o}'" for o in name_keys[key] if o != n)
            reason = f"the screen also has {others}: name each exactly"
        else:
            matches[n] = refs[0]
            continue
        collisions.append(Collision(n, ref_names, key, reason))
    return matches, collisions
