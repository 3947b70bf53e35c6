"""Code-level novelty (the paper's Appendix A): nearest neighbours by MinHash-Jaccard.

`NoveltyIndex` answers J_train: the true nearest neighbour's estimated similarity (never 0.0
just because the LSH retrieved nothing) and its name. `CycleNovelty` adds the cycle-local
archive for J_gen and the rejection count, and returns the paper's per-candidate fields.
Signatures come from `orchestrator.corpus.minhash`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from datasketch import MinHashLSH

from orchestrator.corpus.minhash import MinHasher

@dataclass(frozen=True)
class Neighbour:
    similarity: float  # estimated Jaccard; 0.0 when the index is empty
    name: str | None  # None when the similarity is 0.0
    key: Any = None  # the caller's handle for the neighbour (e.g. a database row)


class SignatureSet:
    """Signatures in insertion order with an exact, vectorised nearest-neighbour search."""

    _ROWS_PER_SCAN = 8192

    def __init__(self, num_perm: int) -> None:
        self.num_perm = num_perm
        self._values = np.empty((64, num_perm), dtype=np.uint32)
        self._size = 0
        self.names: list[str] = []
        self.keys: list[Any] = []

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> np.ndarray:
        return self._values[:self._size]

    def add_many(self, names: Sequence[str], values: np.ndarray, keys: Sequence[Any]) -> range:
        if values.shape[1:] != (self.num_perm,):
            raise ValueError(f"expected signatures of {self.num_perm} values, got {values.shape}")
        needed = self._size + len(values)
        if needed > len(self._values):
            grown = np.empty((max(needed, 2 * len(self._values)), self.num_perm), dtype=np.uint32)
            grown[:self._size] = self.values
            self._values = grown
        self._values[self._size:needed] = values
        self.names.extend(names)
        self.keys.extend(keys)
        rows = range(self._size, needed)
        self._size = needed
        return rows

    def matches(self, signature: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Number of equal signature positions with every row (or with `rows`)."""
        if rows is not None:
            return (self._values[rows] == signature).sum(axis=1, dtype=np.int32)
        counts = np.empty(self._size, dtype=np.int32)
        for start in range(0, self._size, self._ROWS_PER_SCAN):
            stop = min(start + self._ROWS_PER_SCAN, self._size)
            (self._values[start:stop] == signature).sum(axis=1, dtype=np.int32, out=counts[start:stop])
        return counts

    def neighbour(self, row: int, matches: int) -> Neighbour:
        if matches == 0:  # nothing in common: no program is "nearest"
            return Neighbour(0.0, None)
        return Neighbour(matches / self.num_perm, self.names[row], self.keys[row])

    def nearest(self, signature: np.ndarray) -> Neighbour:
        """Exact maximum over all rows; ties go to the earliest row."""
        if not self._size:
            return Neighbour(0.0, None)
        counts = self.matches(signature)
        row = int(np.argmax(counts))
        return self.neighbour(row, int(counts[row]))


class BandIndex:
    """LSH retrieval: rows sharing at least one band of `rows` signature positions with the query.

    The banding (bands x rows) is datasketch `MinHashLSH`'s optimum for the threshold, so it
    retrieves what `MinHashLSH` would. Bands are stored as 64-bit keys in sorted NumPy arrays
    (an order of magnitude smaller and faster to build than `MinHashLSH`'s dicts of byte
    strings; see bench/bench_novelty.py). A key collision only adds a candidate, which the
    caller verifies against the signatures.
    """

    def __init__(self, num_perm: int, threshold: float) -> None:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        rng = np.random.default_rng(0)
        # Odd multipliers: keys of bands differing in one position never collide.
        self._multipliers = (rng.integers(0, 2**63, size=(self.bands, self.rows), dtype=np.uint64)
                             * np.uint64(2) + np.uint64(1))
        self._keys = np.empty((0, self.bands), dtype=np.uint64)
        self._size = 0
        self._sorted_rows = 0  # rows [0, _sorted_rows) are in the sorted arrays; the rest is a tail
        self._order = np.empty((self.bands, 0), dtype=np.int64)
        self._sorted_keys = np.empty((self.bands, 0), dtype=np.uint64)

    def band_keys(self, values: np.ndarray) -> np.ndarray:
        """(n, num_perm) signatures -> (n, bands) keys."""
        banded = values[:, :self.bands * self.rows].reshape(len(values), self.bands, self.rows)
        return (banded.astype(np.uint64) * self._multipliers).sum(axis=2, dtype=np.uint64)

    def add_many(self, values: np.ndarray) -> None:
        keys = self.band_keys(values)
        if self._size + len(keys) > len(self._keys):
            grown = np.empty((max(self._size + len(keys), 2 * len(self._keys), 64), self.bands),
                             dtype=np.uint64)
            grown[:self._size] = self._keys[:self._size]
            self._keys = grown
        self._keys[self._size:self._size + len(keys)] = keys
        self._size += len(keys)
        if self._size - self._sorted_rows > max(1024, self._sorted_rows // 8):
            self._sort()

    def _sort(self) -> None:
        keys = self._keys[:self._size].T
        self._order = np.argsort(keys, axis=1, kind="stable")
        self._sorted_keys = np.take_along_axis(keys, self._order, axis=1)
        self._sorted_rows = self._size

    def query(self, values: np.ndarray) -> np.ndarray:
        """Row numbers (sorted, unique) sharing a band key with the signature `values`."""
        keys = self.band_keys(values[None, :])[0]
        found = []
        for band in range(self.bands):
            sorted_keys = self._sorted_keys[band]
            lo = np.searchsorted(sorted_keys, keys[band], side="left")
            hi = np.searchsorted(sorted_keys, keys[band], side="right")
            found.append(self._order[band, lo:hi])
        tail = self._keys[self._sorted_rows:self._size]
        found.append(self._sorted_rows + np.flatnonzero((tail == keys).any(axis=1)))
        return np.unique(np.concatenate(found))


class NoveltyIndex:
    """The corpus side: J_train(A) = max over corpus programs of the estimated Jaccard.

    The LSH answers the common near-duplicate case without a scan: a program it does not
    retrieve differs from the query in at least one position of every band, so when the best
    retrieved program matches in more than num_perm - bands positions it is provably the
    nearest. Otherwise a vectorised scan over all signatures gives the exact maximum. Both
    paths break ties towards the earliest added program, so answers do not depend on the path.
    """

    def __init__(self, hasher: MinHasher, lsh_threshold: float) -> None:
        self.hasher = hasher
        self._signatures = SignatureSet(hasher.num_perm)
        self._lsh = BandIndex(hasher.num_perm, lsh_threshold)
        self._unretrieved_max_matches = hasher.num_perm - self._lsh.bands

    def __len__(self) -> int:
        return len(self._signatures)

    @property
    def names(self) -> list[str]:
        return self._signatures.names

    @property
    def values(self) -> np.ndarray:
        return self._signatures.values

    def add(self, name: str, signature: np.ndarray, key: Any = None) -> None:
        self.add_many([name], signature[None, :], [key])

    def add_many(self, names: Sequence[str], values: np.ndarray,
                 keys: Sequence[Any] | None = None) -> None:
        self._signatures.add_many(names, values,
                                  list(keys) if keys is not None else [None] * len(names))
        self._lsh.add_many(values)

    def retrieve(self, signature: np.ndarray) -> np.ndarray:
        """The LSH candidates (row numbers) for a signature."""
        return self._lsh.query(signature)

    def nearest(self, signature: np.ndarray) -> Neighbour:
        rows = self.retrieve(signature) if len(self) else np.empty(0, dtype=np.int64)
        if len(rows):
            counts = self._signatures.matches(signature, rows)
            best = int(np.argmax(counts))
            if counts[best] > self._unretrieved_max_matches:
                return self._signatures.neighbour(int(rows[best]), int(counts[best]))
        return self._signatures.nearest(signature)


@dataclass(frozen=True)
class NoveltyResult:
    """The paper's per-candidate novelty fields, plus the nearest programs' names."""

    nn_jaccard_train: float
    near_dup_text_train: bool
    nearest_train: str | None
    nn_jaccard_gen: float
    near_dup_text_gen: bool
    nearest_gen: str | None
    rejection_count: int
    tokenizer_fallback: bool

    @property
    def near_duplicate(self) -> bool:
        return self.near_dup_text_train or self.near_dup_text_gen

    def record(self) -> dict[str, Any]:
        return asdict(self)


class CycleNovelty:
    """Novelty of one cycle's candidates: J_train against the corpus index, J_gen against the
    cycle-local archive.

    `assess` measures a candidate, in sampling order, after it is valid and trained (the paper's
    order), and by default adds it to the archive; `remember` adds a candidate that is not assessed
    (an invalid sample, under the "generated" reading of J_gen) or one only accepted later.
    `rejection_count` is the number of candidates rejected as near-duplicates since the last one that
    passed the filter; a candidate that passes resets it.
    """

    def __init__(self, index: NoveltyIndex, tau: float) -> None:
        self.index = index
        self.tau = tau
        self._archive = SignatureSet(index.hasher.num_perm)
        self._rejections = 0

    def remember(self, name: str, code: str) -> None:
        self._archive.add_many([name], self.index.hasher.signature(code).values[None, :], [None])

    def assess(self, name: str, code: str, remember: bool = True) -> NoveltyResult:
        signature = self.index.hasher.signature(code)
        train = self.index.nearest(signature.values)
        gen = self._archive.nearest(signature.values)
        if remember:
            self._archive.add_many([name], signature.values[None, :], [None])
        near_train, near_gen = train.similarity > self.tau, gen.similarity > self.tau
        rejections = self._rejections
        self._rejections = rejections + 1 if near_train or near_gen else 0
        return NoveltyResult(
            nn_jaccard_train=train.similarity, near_dup_text_train=near_train,
            nearest_train=train.name, nn_jaccard_gen=gen.similarity, near_dup_text_gen=near_gen,
            nearest_gen=gen.name, rejection_count=rejections,
            tokenizer_fallback=signature.tokenizer_fallback,
        )
