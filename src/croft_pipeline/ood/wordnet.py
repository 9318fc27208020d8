"""The negative-label vocabulary: WordNet nouns and adjectives from Debian's ``wordnet-base``.

Princeton WordNet 3.0's database files (``data.noun``, ``data.adj``; wndb(5WN)) hold one synset
per line: ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] ...``. A candidate is
the first lemma of a synset (underscores as spaces, an adjective's syntactic marker such as
``(a)`` dropped), grouped by its lexicographer file (lexnames(5WN)); a word already taken is
skipped (nouns first), as NegLabel's vocabulary does.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

WORDNET_DIR = "/usr/share/wordnet"
PARTS = {"noun": "data.noun", "adj": "data.adj"}
VOCABULARY_COLUMNS = ["pos", "word", "lexname"]
INSTALL = (
    "install Debian's `wordnet-base` package (`apt-get install wordnet-base`; `make run` and "
    ".ci/run do it where they can), or set embed.negative_labels.wordnet_dir to a folder "
    "holding WordNet 3.0's data.noun and data.adj"
)
# lexnames(5WN): lexicographer file number -> name
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_MARKER = re.compile(r"\((?:a|p|ip)\)$")


class VocabularyMissing(FileNotFoundError):
    """WordNet's database files are not where the configuration says."""


def wordnet_files(folder: str | Path, parts: list[str]) -> dict[str, Path]:
    """The database file of each part of speech; a missing one is a :class:`VocabularyMissing`."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(
            f"embed.negative_labels.parts: {unknown or parts} is not a non-empty subset of "
            f"{sorted(PARTS)}"
        )
    files = {pos: Path(folder) / PARTS[pos] for pos in parts}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise VocabularyMissing(f"no WordNet vocabulary: {', '.join(missing)} missing; {INSTALL}")
    return files


def synset_lemma(line: str) -> tuple[str, str] | None:
    """``(first lemma, lexicographer file name)`` of a database line; ``None`` for the licence
    header (lines starting with spaces)."""
    if line.startswith(" ") or not line.strip():
        return None
    fields = line.split(" ", 5)
    word = _MARKER.sub("", fields[4]).replace("_", " ")
    return word, LEXNAMES[int(fields[1])]


def read_vocabulary(
    folder: str | Path, parts: list[str], max_candidates: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Every candidate negative label (VOCABULARY_COLUMNS), in file order, deduplicated by word
    (case-insensitive); ``max_candidates`` keeps a seeded random subset (file order kept)."""
    rows, seen = [], set()
    for pos, path in wordnet_files(folder, parts).items():
        for line in path.read_text(encoding="utf-8").splitlines():
            lemma = synset_lemma(line)
            if lemma is None or lemma[0].lower() in seen:
                continue
            seen.add(lemma[0].lower())
            rows.append((pos, *lemma))
    table = pd.DataFrame(rows, columns=VOCABULARY_COLUMNS)
    if max_candidates is not None and max_candidates < len(table):
        chosen = np.random.default_rng(seed).choice(len(table), max_candidates, replace=False)
        table = table.iloc[np.sort(chosen)].reset_index(drop=True)
    return table


def files_sha256(folder: str | Path, parts: list[str]) -> dict[str, str]:
    """The sha256 of each database file read (provenance of the vocabulary)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in wordnet_files(folder, parts).values()
    }
