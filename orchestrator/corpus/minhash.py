"""MinHash signatures of programs: Python-lexer tokens, k-token shingles, vectorised MinHash.

A program becomes a set of shingles: contiguous `k`-token windows of the Python lexer's tokens,
without comments, blank-line/indent tokens, logical-line ends and encoding markers, so that code
differing only in comments or layout has the same shingles. (A program shorter than `k` tokens
is one shingle.) Its MinHash signature is bit-identical to datasketch's
`MinHash(num_perm, seed=1)` (scheme "affine32", SHA-1 hash) updated with each shingle's UTF-8
bytes, computed here in one vectorised NumPy pass (with memoised shingle hashes) instead of one
`update()` per shingle.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from hashlib import sha1

import numpy as np
from datasketch import MinHash
from numpy.lib.stride_tricks import as_strided

# Bump when tokenisation or shingling changes: stored signatures are keyed by it.
TOKENIZER_VERSION = 1
# datasketch's default seed: signatures equal those of a default-seeded datasketch MinHash.
MINHASH_SEED = 1

_SKIPPED_TOKENS = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                             tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER})
_FALLBACK_COMMENT = re.compile(r"#[^\r\n]*")
_FALLBACK_TOKEN = re.compile(r"\w+|[^\w\s]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Tokens:
    tokens: list[str]
    fallback: bool  # the Python lexer rejected the program; `tokens` is the fallback split


def tokenize_code(code: str) -> Tokens:
    """The program's tokens, from Python's lexer; a program it rejects gets the fallback split.

    Fallback (flagged): `# ...` to end of line removed (also inside strings: it is only an
    approximation), then runs of word characters and single other non-space characters.
    """
    code = code.removeprefix("\ufeff")  # a byte-order mark is an encoding marker, not code
    tokens = _lexer_tokens(code)
    if tokens is not None:
        return Tokens(tokens, fallback=False)
    return Tokens(_FALLBACK_TOKEN.findall(_FALLBACK_COMMENT.sub("", code)), fallback=True)


def _lexer_tokens(code: str) -> list[str] | None:
    if sys.version_info[:2] == (3, 11):
        tokens = _c_lexer_tokens(code)
        if tokens is not None:
            return tokens
    return _tokenize_module_tokens(code)


def _tokenize_module_tokens(code: str) -> list[str] | None:
    try:
        infos = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (SyntaxError, tokenize.TokenError, ValueError):
        return None
    if any(t.type == tokenize.ERRORTOKEN for t in infos):
        return None
    return [t.string for t in infos if t.type not in _SKIPPED_TOKENS]


def _c_lexer_tokens(code: str) -> list[str] | None:
    """Python 3.11's C tokenizer (the parser's own lexer), ~7x faster than `tokenize`.

    It yields the same token strings as `tokenize.generate_tokens` (pinned by a test over the
    LEMUR corpus; from 3.12 on `tokenize` itself is C-backed), but it silently stops at some
    errors (bad dedent), so output that does not reach the last significant line is rejected
    and the caller falls back to `tokenize`.
    """
    import _tokenize  # CPython 3.11 internal, used by tokenize._generate_tokens_from_c_tokenizer

    try:
        # (string, type, start line, end line, start column, end column, line) per token
        infos = list(_tokenize.TokenizerIter(code))
    except (SyntaxError, ValueError):
        return None
    tokens = [info[0] for info in infos if info[1] not in _SKIPPED_TOKENS]
    last_line = infos[-1][3] if infos else 0
    for line in _LINE_BREAK.split(code)[last_line:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return None
    return tokens


def shingles(tokens: Sequence[str], k: int) -> set[bytes]:
    """Contiguous `k`-token windows, each the UTF-8 bytes of its tokens joined by one space.

    The definition (used for exact Jaccard and as datasketch's input); `MinHasher` computes the
    same shingles' hashes without building this set.
    """
    if len(tokens) <= k:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i:i + k]).encode() for i in range(len(tokens) - k + 1)}


@dataclass(frozen=True)
class Signature:
    values: np.ndarray  # (num_perm,) uint32
    tokenizer_fallback: bool


@dataclass(frozen=True)
class SignatureBatch:
    values: np.ndarray  # (n, num_perm) uint32
    tokenizer_fallback: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.values)


class MinHasher:
    """Code -> MinHash signature, equal to datasketch's per-shingle `update()` result."""

    _ROWS_PER_CHUNK = 2048  # bounds the (shingles x num_perm) temporary
    _CACHE_LIMIT = 1 << 20  # memoised shingle hashes and token ids (~250 MiB at most)

    def __init__(self, shingle_size: int, num_perm: int) -> None:
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        reference = MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme="affine32")
        self._a, self._b = (p.astype(np.uint32) for p in reference.permutations)
        self._token_ids: dict[str, int] = {}
        self._hash_cache: dict[bytes, int] = {}  # window of token ids -> shingle hash

    @property
    def key(self) -> str:
        """Identifies everything a stored signature depends on."""
        return (f"tok{TOKENIZER_VERSION}-k{self.shingle_size}-p{self.num_perm}"
                f"-seed{MINHASH_SEED}-affine32-sha1")

    def shingles(self, code: str) -> tuple[set[bytes], bool]:
        toks = tokenize_code(code)
        return shingles(toks.tokens, self.shingle_size), toks.fallback

    def signature(self, code: str) -> Signature:
        toks = tokenize_code(code)
        return Signature(self._minhash(self._shingle_hashes(toks.tokens)), toks.fallback)

    def signature_of(self, grams: Iterable[bytes]) -> np.ndarray:
        """The signature of a set of shingles given as bytes (what datasketch would be fed)."""
        return self._minhash(np.array([_sha1_hash32(g) for g in grams], dtype=np.uint32))

    def _minhash(self, hashes: np.ndarray) -> np.ndarray:
        hashes = _fmix32(hashes)
        result = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        for start in range(0, len(hashes), self._ROWS_PER_CHUNK):
            permuted = np.multiply(hashes[start:start + self._ROWS_PER_CHUNK, None], self._a)
            permuted += self._b
            np.minimum(result, permuted.min(axis=0), out=result)
        return result

    def _shingle_hashes(self, tokens: list[str]) -> np.ndarray:
        """sha1_hash32 of each shingle's bytes, one per window (repeats included).

        Memoised, because programs of one family share most shingles (LEMUR: ~92% of the
        shingles of 1,000 programs are repeats): tokens get integer ids, each window of `k` ids
        is an exact dictionary key (built by NumPy), and only unseen windows are joined into
        text and hashed. A lookup costs a fraction of building the text and its SHA-1.
        """
        k = self.shingle_size
        if len(tokens) <= k:
            return np.array([_sha1_hash32(" ".join(tokens).encode())], dtype=np.uint32)
        if len(self._hash_cache) > self._CACHE_LIMIT or len(self._token_ids) > self._CACHE_LIMIT:
            self._hash_cache.clear()
            self._token_ids.clear()
        token_ids = self._token_ids
        ids = list(map(token_ids.get, tokens))
        if None in ids:
            for i, token in enumerate(tokens):
                if ids[i] is None:
                    ids[i] = token_ids.setdefault(token, len(token_ids))
        id_array = np.array(ids, dtype=np.uint32)
        windows = as_strided(id_array, shape=(len(ids) - k + 1, k), strides=(4, 4), writeable=False)
        keys = np.ascontiguousarray(windows).view(f"V{4 * k}").ravel().tolist()
        cache = self._hash_cache
        values = list(map(cache.get, keys))
        if None in values:
            for i, key in enumerate(keys):
                if values[i] is None:
                    values[i] = cache[key] = _sha1_hash32(" ".join(tokens[i:i + k]).encode())
        return np.array(values, dtype=np.uint32)

    def signatures(self, codes: Sequence[str], workers: int = 1) -> SignatureBatch:
        """Signatures of many programs; `workers` > 1 tokenises and hashes in parallel processes."""
        if workers <= 1 or len(codes) < 64:
            return _batch([self.signature(c) for c in codes], self.num_perm)
        size = -(-len(codes) // (workers * 4))
        chunks = [codes[i:i + size] for i in range(0, len(codes), size)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_signatures_worker,
                                  [(self.shingle_size, self.num_perm, chunk) for chunk in chunks]))
        return SignatureBatch(np.concatenate([p.values for p in parts]),
                              np.concatenate([p.tokenizer_fallback for p in parts]))


def _batch(signatures: list[Signature], num_perm: int) -> SignatureBatch:
    values = np.empty((len(signatures), num_perm), dtype=np.uint32)
    for i, s in enumerate(signatures):
        values[i] = s.values
    return SignatureBatch(values, np.array([s.tokenizer_fallback for s in signatures], dtype=bool))


_WORKER_HASHERS: dict[tuple[int, int], MinHasher] = {}  # per worker process: keeps its memo warm


def _signatures_worker(args: tuple[int, int, Sequence[str]]) -> SignatureBatch:
    shingle_size, num_perm, codes = args
    key = (shingle_size, num_perm)
    if key not in _WORKER_HASHERS:
        _WORKER_HASHERS[key] = MinHasher(shingle_size, num_perm)
    return _WORKER_HASHERS[key].signatures(codes)


def _sha1_hash32(data: bytes) -> int:
    """datasketch.hashfunc.sha1_hash32: the first 4 SHA-1 bytes, little-endian."""
    return int.from_bytes(sha1(data).digest()[:4], "little")


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its affine permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


def exact_jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0
