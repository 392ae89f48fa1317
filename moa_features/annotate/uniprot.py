"""UniProt records: parsing (Swiss-Prot flat file, UniProt XML), an index, and online fetching.

Biopython is needed only here, and only when records are read or fetched; it is imported
lazily, and its absence gives a clear :class:`ModuleNotFoundError` naming the extra to install
(``pip install moa-features[uniprot]``), so the curated table works without it.
"""

from __future__ import annotations

import gzip
import io
import re
import socket
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.error import URLError

from moa_features.annotate.names import normalize_name
from moa_features.io import atomic_path

if TYPE_CHECKING:
    from Bio.SeqRecord import SeqRecord
    from Bio.SwissProt import Record

    UniProtRecord = Record | SeqRecord
else:
    UniProtRecord = Any

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "moa-features" / "uniprot"
DEFAULT_TIMEOUT_S = 20.0
HUMAN_TAXON = "9606"


def require_biopython(purpose: str) -> SimpleNamespace:
    """Biopython's UniProt modules, or a clear error saying what needs them and how to install them.

    Parameters
    ----------
    purpose : str
        What the caller is doing (``"reading UniProt records"``), quoted in the error.

    Returns
    -------
    types.SimpleNamespace
        ``SwissProt``, ``SeqIO``, ``ExPASy`` (modules) and ``SeqRecord`` (the class).

    Raises
    ------
    ModuleNotFoundError
        When Biopython is not installed.
    """
    try:
        from Bio import ExPASy, SeqIO, SwissProt
        from Bio.SeqRecord import SeqRecord
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"{purpose} needs Biopython, which is not installed: pip install 'moa-features[uniprot]' "
            "(or pip install biopython). The curated table works without it."
        ) from exc
    return SimpleNamespace(SwissProt=SwissProt, SeqIO=SeqIO, ExPASy=ExPASy, SeqRecord=SeqRecord)


@dataclass(frozen=True)
class UniProtFacts:
    """What the rules read from one UniProt record, whatever its file format.

    ``families``: the text of each ``Belongs to the ... family`` line; ``go_functions``:
    ``(GO id, term)`` of each molecular-function GO cross-reference (term is empty for
    UniProt XML, whose Biopython parser keeps only the id).
    """

    accessions: tuple[str, ...]
    entry_name: str
    genes: tuple[str, ...]
    names: tuple[str, ...]
    keywords: tuple[str, ...]
    families: tuple[str, ...]
    go_functions: tuple[tuple[str, str], ...]
    taxon_id: str

    @property
    def accession(self) -> str:
        return self.accessions[0] if self.accessions else ""

    @property
    def gene(self) -> str:
        return self.genes[0] if self.genes else ""


_ECO_RE = re.compile(r"\s*\{ECO:[^}]*\}")
_BELONGS_RE = re.compile(r"Belongs to the (.+?)(?:\.\s|\.$|$)", re.DOTALL)
_DE_NAME_RE = re.compile(r"(?:Full|Short)=([^;{]+)")


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", _ECO_RE.sub("", text)).strip().rstrip(".;").strip()


def _families(similarity_texts: Iterable[str]) -> tuple[str, ...]:
    found = []
    for text in similarity_texts:
        for m in _BELONGS_RE.finditer(_clean(text) + "."):
            found.append(m.group(1).strip())
    return tuple(found)


def _swiss_genes(gene_name) -> tuple[str, ...]:
    """Gene names of ``SwissProt.Record.gene_name`` (list of dicts, or the old string)."""
    genes: list[str] = []
    if isinstance(gene_name, str):
        for key in ("Name", "Synonyms"):
            m = re.search(rf"{key}=([^;]+);", gene_name)
            if m:
                genes += [_clean(g) for g in m.group(1).split(",")]
    else:
        for entry in gene_name or []:
            if entry.get("Name"):
                genes.append(_clean(entry["Name"]))
            genes += [_clean(g) for g in entry.get("Synonyms", [])]
    return tuple(g for g in genes if g)


def record_facts(record: UniProtRecord) -> UniProtFacts:
    """What the rules read from one record, whatever its file format.

    Parameters
    ----------
    record : Bio.SwissProt.Record or Bio.SeqRecord.SeqRecord
        A Swiss-Prot record, or a UniProt-XML record (``Bio.SeqIO.parse(path, "uniprot-xml")``).

    Returns
    -------
    UniProtFacts
    """
    bio = require_biopython("reading UniProt records")
    if isinstance(record, bio.SwissProt.Record):
        similarity = [c[len("SIMILARITY:") :] for c in record.comments if c.startswith("SIMILARITY:")]
        go = tuple(
            (x[1], x[2][2:]) for x in record.cross_references if x[0] == "GO" and len(x) > 2 and x[2].startswith("F:")
        )
        return UniProtFacts(
            accessions=tuple(record.accessions),
            entry_name=record.entry_name,
            genes=_swiss_genes(record.gene_name),
            names=tuple(_clean(n) for n in _DE_NAME_RE.findall(record.description)),
            keywords=tuple(_clean(k) for k in record.keywords),
            families=_families(similarity),
            go_functions=go,
            taxon_id=(record.taxonomy_id or [""])[0],
        )
    if isinstance(record, bio.SeqRecord):
        ann = record.annotations
        genes = [ann.get("gene_name_primary", "")] + list(ann.get("gene_name_synonym", []))
        names = [record.description] + [
            v
            for k, vs in ann.items()
            if k.endswith(("_fullName", "_shortName"))
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        taxon = next((x.split(":", 1)[1] for x in record.dbxrefs if x.startswith("NCBI Taxonomy:")), "")
        return UniProtFacts(
            accessions=tuple(dict.fromkeys([record.id] + list(ann.get("accessions", [])))),
            entry_name=record.name,
            genes=tuple(g for g in genes if g),
            names=tuple(_clean(n) for n in names if n),
            keywords=tuple(ann.get("keywords", [])),
            families=_families(ann.get("comment_similarity", [])),
            go_functions=tuple((x[3:], "") for x in record.dbxrefs if x.startswith("GO:GO:")),
            taxon_id=taxon,
        )
    raise TypeError(f"expected a Bio.SwissProt.Record or a UniProt-XML SeqRecord, got {type(record).__name__}")


# --------------------------------------------------------------------------- record sources

_RECORD_SUFFIXES = (".txt", ".dat", ".swiss", ".sp", ".xml")


def _open(path: Path, binary: bool = False):
    if path.suffix == ".gz":
        return gzip.open(path, "rb") if binary else gzip.open(path, "rt", encoding="utf-8")
    return open(path, "rb") if binary else open(path, encoding="utf-8")


def _sniff(path: Path) -> str | None:
    """``"xml"``, ``"swiss"`` (first line ``ID   ...``) or ``None`` (neither)."""
    with _open(path, binary=True) as handle:
        head = handle.read(200).lstrip()
    if head.startswith(b"<"):
        return "xml"
    return "swiss" if head.startswith(b"ID   ") else None


def read_uniprot(path: str | Path) -> list[UniProtRecord]:
    """Read UniProt records from a file or a folder of files.

    Parameters
    ----------
    path : str or Path
        A Swiss-Prot flat file or a UniProt XML file (either may be gzipped), or a folder of
        such files (``*.txt, *.dat, *.swiss, *.sp, *.xml``).

    Returns
    -------
    list
        ``Bio.SwissProt.Record`` (flat files) or ``Bio.SeqRecord.SeqRecord`` (XML) objects.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing path, or no parsable records (the message names the file).
    ModuleNotFoundError
        Biopython is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"UniProt records not found: {path}")
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.name.lower().removesuffix(".gz").endswith(_RECORD_SUFFIXES) and _sniff(p) is not None
        )
        if not files:
            raise ValueError(
                f"{path}: no UniProt record files ({', '.join(_RECORD_SUFFIXES)}, optionally .gz, "
                "starting with 'ID   ' or '<')"
            )
        return [r for f in files for r in read_uniprot(f)]
    is_xml = _sniff(path) == "xml"
    bio = require_biopython(f"reading the UniProt records in {path}")
    try:
        with _open(path, binary=is_xml) as handle:
            if is_xml:
                records: list[UniProtRecord] = list(bio.SeqIO.parse(handle, "uniprot-xml"))
            else:
                records = list(bio.SwissProt.parse(handle))
    except Exception as exc:  # Biopython raises ValueError/SyntaxError/ParseError variants
        raise ValueError(f"{path}: not a Swiss-Prot flat file or UniProt XML: {exc}") from exc
    if not records:
        raise ValueError(f"{path}: no UniProt records found")
    return records


class UniProtIndex:
    """Records by accession/entry name and by normalized gene and protein name."""

    def __init__(self, records: Iterable[UniProtRecord] = ()):
        self._by_id: dict[str, UniProtRecord] = {}
        self._by_name: dict[str, list[UniProtRecord]] = {}
        for record in records:
            self.add(record)

    def add(self, record: UniProtRecord) -> None:
        facts = record_facts(record)
        for acc in facts.accessions + (facts.entry_name,):
            self._by_id.setdefault(acc.upper(), record)
        for key in {normalize_name(n) for n in facts.genes + facts.names} - {""}:
            bucket = self._by_name.setdefault(key, [])
            if record not in bucket:
                bucket.append(record)

    def __len__(self) -> int:
        return len({id(r) for r in self._by_id.values()})

    def by_accession(self, accession: str) -> UniProtRecord | None:
        return self._by_id.get(accession.strip().upper())

    def by_name(self, name: str) -> list[UniProtRecord]:
        """Records whose gene or protein name matches; a single human record is
        preferred when several species match."""
        found = self._by_name.get(normalize_name(name), [])
        if len(found) > 1:
            human = [r for r in found if record_facts(r).taxon_id == HUMAN_TAXON]
            if len(human) == 1:
                return human
        return list(found)


class OnlineUnavailable(RuntimeError):
    """UniProt could not be reached (no network, timeout)."""


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def fetch_record(
    accession: str,
    cache_dir: str | Path | None = None,
    online: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> UniProtRecord | None:
    """The Swiss-Prot record of ``accession`` from the disk cache, else from UniProt.

    Parameters
    ----------
    accession : str
        UniProt accession, any case.
    cache_dir : str or Path, optional
        Record cache (default ``~/.cache/moa-features/uniprot``); records are stored as
        ``<ACC>.txt``.
    online : bool
        Fetch through ``Bio.ExPASy.get_sprot_raw`` when the record is not cached.
    timeout : float
        Network timeout in seconds.

    Returns
    -------
    Bio.SwissProt.Record or None
        ``None`` when the record is not cached and ``online`` is false, or when UniProt has
        no such entry.

    Raises
    ------
    OnlineUnavailable
        UniProt could not be reached within ``timeout`` seconds.
    ModuleNotFoundError
        A cached or online record is needed and Biopython is not installed.
    """
    accession = accession.strip().upper()
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    cached = cache / f"{accession}.txt"
    if not cached.exists() and not online:
        return None
    bio = require_biopython("fetching UniProt records (--online)" if online else f"reading the cached record {cached}")
    if cached.exists():
        try:
            with open(cached, encoding="utf-8") as handle:
                return bio.SwissProt.read(handle)
        except Exception as exc:
            raise ValueError(f"{cached}: cached UniProt record is not a Swiss-Prot entry: {exc}") from exc
    try:
        with _socket_timeout(timeout), bio.ExPASy.get_sprot_raw(accession) as handle:
            text = handle.read()
    except ValueError:  # Biopython: HTTP 400/404, no such entry
        return None
    except (URLError, OSError) as exc:
        raise OnlineUnavailable(f"UniProt unreachable while fetching {accession}: {exc}") from exc
    record = bio.SwissProt.read(io.StringIO(text))
    with atomic_path(cached) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return record


class RecordSource:
    """Local index first, then the cache/online; remembers a network failure so that
    one outage costs one timeout, not one per treatment."""

    def __init__(self, index: UniProtIndex, online: bool, cache_dir: str | Path | None, timeout: float):
        self.index, self.online, self.cache_dir, self.timeout = index, online, cache_dir, timeout
        self.use_cache = online or cache_dir is not None
        self.failure: str | None = None

    def get(self, accession: str) -> UniProtRecord | None:
        record = self.index.by_accession(accession)
        if record is not None or not self.use_cache:
            return record
        try:
            record = fetch_record(accession, self.cache_dir, self.online and self.failure is None, self.timeout)
        except OnlineUnavailable as exc:
            self.failure = str(exc)
            warnings.warn(f"{exc}; going on offline", stacklevel=3)
            return None
        if record is not None:
            self.index.add(record)
        return record
