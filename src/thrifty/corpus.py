"""Read and write corpora (CSV, JSONL, Parquet) in batches with pyarrow.

``read_corpus`` loads a pool into memory (pools are what we label: thousands to a few
million short texts). ``iter_batches`` streams any size file in constant memory for
prediction. Empty texts and exact duplicates are counted and reported, never dropped
silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from .errors import CorpusError

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: str | Path) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes]
    for s in reversed(suffixes):
        if s in FORMATS:
            return FORMATS[s]
    raise CorpusError(f"Cannot tell the format of {path}: use a .csv, .jsonl or .parquet file.")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise CorpusError(f"Corpus file {path} does not exist.")
    if path.is_dir():
        raise CorpusError(f"{path} is a directory; give a .csv, .jsonl or .parquet file.")


def iter_batches(
    path: str | Path, batch_size: int = 65_536, columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream a corpus file as Arrow record batches of at most ``batch_size`` rows."""
    path = Path(path)
    _check_exists(path)
    fmt = detect_format(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            if columns:
                _require(columns, pf.schema_arrow.names, path)
            yield from pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            delim = "\t" if path.suffix.lower() == ".tsv" else ","
            reader = pcsv.open_csv(
                path,
                read_options=pcsv.ReadOptions(block_size=1 << 22),
                parse_options=pcsv.ParseOptions(delimiter=delim, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    include_columns=list(columns) if columns else None,
                    strings_can_be_null=False,
                    column_types={c: pa.string() for c in columns} if columns else None,
                ),
            )
            yield from _rebatch(reader, batch_size)
        else:
            import pyarrow.json as pjson

            reader = pjson.open_json(path, read_options=pjson.ReadOptions(block_size=1 << 22))
            for b in _rebatch(reader, batch_size):
                if columns:
                    _require(columns, b.schema.names, path)
                    b = b.select(list(columns))
                yield b
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as e:
        msg = str(e).splitlines()[0]
        raise CorpusError(f"Cannot read {path} as {fmt}: {msg}. Check the file and the column names.") from e


def _rebatch(reader, batch_size: int) -> Iterator[pa.RecordBatch]:
    for b in reader:
        for start in range(0, b.num_rows, batch_size):
            yield b.slice(start, batch_size)


def _require(columns: Sequence[str], names: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise CorpusError(f"{path} has no column(s) {missing}; it has {list(names)}.")


def check_text_type(dtype: pa.DataType, column: str, path: str | Path) -> None:
    """Refuse a text column that does not hold text (numbers, lists, bytes would reach the teacher as reprs)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_null(dtype)):
        raise CorpusError(
            f"The text column {column!r} of {path} is {dtype}, not text. Convert it to strings, or pick the "
            "right column with --text-col."
        )


def column_names(path: str | Path) -> list[str]:
    """The columns of a corpus file, read from its first batch/schema only."""
    path = Path(path)
    _check_exists(path)
    if detect_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowInvalid, OSError) as e:
            raise CorpusError(f"Cannot read {path} as parquet: {str(e).splitlines()[0]}. Is it a whole Parquet file?") from None
    for b in iter_batches(path, batch_size=1024):
        return list(b.schema.names)
    raise CorpusError(f"{path} is empty.")


@dataclass
class CorpusReport:
    """What was found in a corpus; shown to the user before anything is spent."""

    n_rows: int
    n_empty: int
    n_duplicates: int
    n_unknown_gold: int = 0
    unknown_gold_values: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.n_rows:,} rows"]
        if self.n_empty:
            out.append(f"{self.n_empty:,} empty or whitespace-only texts (never sent to the teacher)")
        if self.n_duplicates:
            out.append(f"{self.n_duplicates:,} exact duplicate texts (labelled once, copies share the label)")
        if self.n_unknown_gold:
            out.append(
                f"{self.n_unknown_gold:,} gold values not in the label set (ignored in gold metrics): "
                f"{self.unknown_gold_values[:5]}"
            )
        return out


@dataclass
class Corpus:
    """An in-memory pool: ids, texts and optional gold labels, in file order."""

    texts: list[str]
    ids: np.ndarray
    gold: list[str | None] | None = None
    extra: dict[str, list] = field(default_factory=dict)
    source: str = ""
    columns: dict[str, str | None] = field(default_factory=dict)  # read_corpus's text_col/id_col/gold_col

    def __len__(self) -> int:
        return len(self.texts)

    # ---- from Python objects (notebooks) ------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Sequence[str], ids: Sequence | None = None, gold: Sequence[str | None] | None = None) -> "Corpus":
        """A pool from a list of texts (ids default to row numbers; ``gold`` optional, for accuracy)."""
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            raise CorpusError("No texts given.")
        id_arr = np.asarray([str(i) for i in (range(len(texts)) if ids is None else ids)], dtype=object)
        if len(id_arr) != len(texts) or len(set(id_arr.tolist())) != len(id_arr):
            raise CorpusError(f"Give one unique id per text ({len(texts)} texts, {len(set(id_arr.tolist()))} distinct ids).")
        if gold is not None and len(gold) != len(texts):
            raise CorpusError(f"Give one gold label per text ({len(texts)} texts, {len(gold)} labels).")
        g = None if gold is None else [None if v is None or str(v) in ("", "nan", "None") else str(v) for v in gold]
        return cls(texts=texts, ids=id_arr, gold=g, source="python")

    @classmethod
    def from_pandas(cls, df, text: str = "text", id: str | None = None, gold: str | None = None) -> "Corpus":
        """A pool from a pandas DataFrame's columns."""
        missing = [c for c in (text, id, gold) if c and c not in df.columns]
        if missing:
            raise CorpusError(f"The DataFrame has no column(s) {missing}; it has {list(df.columns)}.")
        return cls.from_texts(df[text].tolist(), ids=df[id].tolist() if id else None,
                              gold=df[gold].tolist() if gold else None)

    @classmethod
    def from_hf(cls, dataset, text: str = "text", id: str | None = None, gold: str | None = None) -> "Corpus":
        """A pool from a Hugging Face ``datasets.Dataset``; integer class labels become their names."""
        missing = [c for c in (text, id, gold) if c and c not in dataset.column_names]
        if missing:
            raise CorpusError(f"The dataset has no column(s) {missing}; it has {dataset.column_names}.")
        g = None
        if gold:
            g = dataset[gold]
            names = getattr(dataset.features[gold], "names", None)
            if names:
                g = [None if v is None or v < 0 else names[v] for v in g]
        return cls.from_texts(dataset[text], ids=dataset[id] if id else None, gold=g)

    def report(self, labels: Sequence[str] | None = None) -> CorpusReport:
        empty = sum(1 for t in self.texts if not t.strip())
        dups = len(self.texts) - len(set(self.texts))
        unknown: list[str] = []
        if self.gold is not None and labels is not None:
            ls = set(labels)
            unknown = [g for g in self.gold if g is not None and g not in ls]
        return CorpusReport(
            n_rows=len(self.texts),
            n_empty=empty,
            n_duplicates=dups,
            n_unknown_gold=len(unknown),
            unknown_gold_values=sorted(set(unknown)),
        )

    def fingerprint(self) -> str:
        """sha256 over all texts in order: tells whether a resumed run sees the same pool."""
        import hashlib

        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8", errors="surrogatepass"))
            h.update(b"\x00")
        return h.hexdigest()

    def require_texts(self, minimum: int = 2) -> np.ndarray:
        """:meth:`valid_mask`, refusing a corpus with fewer than ``minimum`` texts to learn from."""
        mask = self.valid_mask()
        if mask.sum() < minimum:
            raise CorpusError(f"Only {int(mask.sum())} non-empty, distinct texts in the corpus of {len(self):,} rows: "
                                 "nothing to learn from. Check the file and --text-col.")
        return mask

    def valid_mask(self) -> np.ndarray:
        """True for rows that may go to the teacher: non-empty and first of their duplicates."""
        seen: set[str] = set()
        mask = np.zeros(len(self.texts), dtype=bool)
        for i, t in enumerate(self.texts):
            if t.strip() and t not in seen:
                mask[i] = True
                seen.add(t)
        return mask


def read_corpus(
    path: str | Path,
    text_col: str = "text",
    id_col: str | None = None,
    gold_col: str | None = None,
    extra_cols: Sequence[str] = (),
) -> Corpus:
    """Read a whole corpus file into memory (in batches), keeping file order."""
    path = Path(path)
    cols = [text_col] + [c for c in (id_col, gold_col, *extra_cols) if c]
    names = column_names(path)
    missing = [c for c in cols if c not in names]
    if missing:
        raise CorpusError(
            f"{path} has no column(s) {missing}; it has {names}. Use --text-col/--id-col/--gold-col to pick them."
        )
    texts: list[str] = []
    ids: list = []
    gold: list[str | None] = []
    extra: dict[str, list] = {c: [] for c in extra_cols}
    for b in iter_batches(path, columns=list(dict.fromkeys(cols))):
        check_text_type(b.schema.field(text_col).type, text_col, path)
        texts.extend("" if t is None else t for t in b.column(text_col).to_pylist())
        if id_col:
            ids.extend(b.column(id_col).to_pylist())
        if gold_col:
            gold.extend(None if g is None or str(g) == "" else str(g) for g in b.column(gold_col).to_pylist())
        for c in extra_cols:
            extra[c].extend(b.column(c).to_pylist())
    if not texts:
        raise CorpusError(f"{path} has no rows.")
    id_arr = np.asarray([str(i) for i in ids], dtype=object) if id_col else np.asarray([str(i) for i in range(len(texts))], dtype=object)
    if id_col and len(set(id_arr.tolist())) != len(id_arr):
        raise CorpusError(f"Column {id_col!r} in {path} has duplicate ids; ids must be unique.")
    return Corpus(texts=texts, ids=id_arr, gold=gold if gold_col else None, extra=extra, source=str(path),
                  columns={"text_col": text_col, "id_col": id_col, "gold_col": gold_col})


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write an Arrow table as CSV, JSONL or Parquet by extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    else:
        import json

        with open(path, "w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
