"""MoA annotation: treatment name -> mechanism of action, at several levels, with evidence.

Screens such as RxRx2 give only a treatment's name (``IL-1B``, ``TNF-alpha``, ``CCL14a``,
``EMPTY``). This package turns the distinct names of a screen into the annotation table of
``docs/architecture.md`` (:data:`ANNOTATION_COLUMNS`), one row per distinct treatment, resolved
in this order:

1. ``override``: the user's own table (``--overrides``) wins and is recorded as such.
2. ``metadata``: an MoA column already present in the user's metadata.
3. ``curated``: the table shipped in ``moa_features/data/treatment_moa.csv``
   (:mod:`~moa_features.annotate.curated`); names are matched by
   :mod:`~moa_features.annotate.names`; a name that matches several entries is flagged,
   never merged; UniProt records at hand cross-check it.
4. ``uniprot``: a Swiss-Prot record found by accession, entry name, gene or protein name
   (``--uniprot PATH`` or ``--online``) is classified by the ordered rules of
   :data:`RULES`; the rule that fired is kept as evidence.
5. ``unresolved``: ``Unclassified`` with the reason, ``needs_review=True``.

Levels: ``moa`` (the original RxRx2 classes), ``receptor``, ``pathway`` (:data:`PATHWAYS`),
``action`` (:data:`ACTIONS`), ``mechanism`` (pathway + action), ``class_kind`` and
``caveat``. :func:`apply_annotation` writes them into a feature table as ``Metadata_`` columns
(:data:`METADATA_COLUMNS`).

Modules: ``names`` (normalisation, matching), ``curated`` (the shipped table, vocabularies),
``uniprot`` (records; needs Biopython, an optional extra), ``rules``, ``overrides``,
``resolve`` (:func:`annotate_treatments`, :func:`apply_annotation`), ``cli``.
"""

from moa_features.annotate.cli import (
    MOA_COLUMN_CANDIDATES,
    TREATMENT_COLUMN_CANDIDATES,
    build_parser,
    main,
)
from moa_features.annotate.curated import (
    ACTIONS,
    CLASS_KIND,
    CURATED_COLUMNS,
    LEVELS,
    MOA_CLASSES,
    NEGATIVE_CONTROL,
    PATHWAYS,
    UNCLASSIFIED,
    load_curated,
    mechanism,
)
from moa_features.annotate.names import (
    Collision,
    is_faithful,
    looks_like_accession,
    match_names,
    name_variants,
    normalize_name,
)
from moa_features.annotate.overrides import read_overrides
from moa_features.annotate.resolve import (
    ANNOTATION_COLUMNS,
    LABEL_LEVELS,
    METADATA_COLUMNS,
    SOURCES,
    annotate_treatments,
    apply_annotation,
)
from moa_features.annotate.rules import RULES, RULES_BY_ID, Rule, classify_record
from moa_features.annotate.uniprot import (
    DEFAULT_CACHE_DIR,
    DEFAULT_TIMEOUT_S,
    OnlineUnavailable,
    UniProtFacts,
    UniProtIndex,
    fetch_record,
    read_uniprot,
    record_facts,
    require_biopython,
)

__all__ = [
    "ACTIONS",
    "ANNOTATION_COLUMNS",
    "CLASS_KIND",
    "CURATED_COLUMNS",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_TIMEOUT_S",
    "LABEL_LEVELS",
    "LEVELS",
    "METADATA_COLUMNS",
    "MOA_CLASSES",
    "MOA_COLUMN_CANDIDATES",
    "NEGATIVE_CONTROL",
    "PATHWAYS",
    "RULES",
    "RULES_BY_ID",
    "SOURCES",
    "TREATMENT_COLUMN_CANDIDATES",
    "UNCLASSIFIED",
    "Collision",
    "OnlineUnavailable",
    "Rule",
    "UniProtFacts",
    "UniProtIndex",
    "annotate_treatments",
    "apply_annotation",
    "build_parser",
    "classify_record",
    "fetch_record",
    "is_faithful",
    "load_curated",
    "looks_like_accession",
    "main",
    "match_names",
    "mechanism",
    "name_variants",
    "normalize_name",
    "read_overrides",
    "read_uniprot",
    "record_facts",
    "require_biopython",
]
