"""What the data checks know about one pair, computed from its text alone: the keys that group it
with other pairs (exact text, the normalised prompt and replies, the prompt, speaker tags, a
MinHash signature and its LSH bands) and the checks it fails on its own.

Normalising: a conversation's turns' text, lower case, punctuation dropped, whitespace collapsed
(`*CHI: Yes !` and `*chi: yes` are the same). Near-duplicates: word 3-gram MinHash signatures
(datasketch, 32 permutations) split into 8 bands of 4; pairs sharing a band are compared, and
similar means an estimated Jaccard similarity of at least NEAR.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash
from datasketch.minhash import _fmix  # its hash mixing, to batch many signatures at once

from ..formats import content_text, leading_tag

NUM_PERM, BANDS = 32, 8
ROWS = NUM_PERM // BANDS
NEAR = 0.8  # estimated Jaccard similarity of two near-duplicate pairs
IMBALANCE = 4.0  # one reply this many times longer (in words) than the other
PER_PAIR = ("identical", "normalized_identical", "empty", "length_imbalance", "chosen_longer")
SIGNATURE_DTYPE = MinHash(num_perm=1, hashfunc=zlib.crc32).hashvalues.dtype
_NOT_WORD = re.compile(r"[\W_]+")  # punctuation, symbols and spaces (Unicode-aware)


def normalize(value) -> str:
    """Text as the checks compare it: the words only, lower case."""
    text = unicodedata.normalize("NFKC", content_text(value)).casefold()
    return _NOT_WORD.sub(" ", text).strip()


def digest(*parts: str) -> int:
    """A short stable key for texts: blake2b's 8 bytes as a signed 64-bit integer (an SQLite
    INTEGER, so the key indexes stay small)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big", signed=True)


def _hash32(shingle: bytes) -> int:
    """The shingle hash MinHash permutes (CRC-32: ten times faster than its SHA-1 default)."""
    return zlib.crc32(shingle)


@dataclass
class PairKeys:
    """The keys of one live pair and the per-pair checks it fails."""

    pair_id: int
    split: str
    exact: int  # the stored texts: duplicates share it
    pair_key: int | None  # normalised prompt + both replies (any order); None if they match
    direction: int  # which of the two normalised replies is chosen (contradictions differ)
    prompt_key: int  # the normalised prompt: leakage across splits
    tag_chosen: str  # speaker tags of the replies ('' for none)
    tag_rejected: str
    signature: bytes = b""
    bands: list[int] = field(default_factory=list)
    fails: list[str] = field(default_factory=list)
    facets: dict = field(default_factory=dict)  # what the dataset summary counts (facets.py)


def pair_keys(pair_id: int, split: str, prompt, chosen, rejected,
              normalised: tuple[str, str, str] | None = None,
              signature: np.ndarray | None = None) -> PairKeys:
    """Everything the checks need from one pair (`normalised` and `signature` when the caller
    computed them in bulk)."""
    exact = digest(*(v if isinstance(v, str) else repr(v) for v in (prompt, chosen, rejected)))
    p, c, r = normalised or (normalize(prompt), normalize(chosen), normalize(rejected))
    low, high = sorted((c, r))
    keys = PairKeys(pair_id, split, exact, digest(p, low, high) if c != r else None,
                    int(c != low), digest(p), _tag(chosen), _tag(rejected))
    sig = signature if signature is not None else minhashes([(p, c, r)])[0]
    keys.signature = sig.tobytes()
    keys.bands = bands(sig)
    keys.fails = per_pair_fails(prompt, chosen, rejected, c, r)
    return keys


def _tag(value) -> str:
    return leading_tag(value) or ""


def per_pair_fails(prompt, chosen, rejected, norm_chosen: str, norm_rejected: str) -> list[str]:
    """The checks a pair fails by itself."""
    texts = [content_text(v) for v in (prompt, chosen, rejected)]
    words_c, words_r = len(texts[1].split()), len(texts[2].split())
    fails = []
    if chosen == rejected:
        fails.append("identical")
    if norm_chosen == norm_rejected:
        fails.append("normalized_identical")
    if any(not t.strip() for t in texts):
        fails.append("empty")
    if max(words_c, words_r) > IMBALANCE * max(1, min(words_c, words_r)):
        fails.append("length_imbalance")
    if words_c > words_r:
        fails.append("chosen_longer")
    return fails


def shingles(*texts: str) -> list[bytes]:
    """Word 3-grams of the normalised pair (its words, if it has fewer than three)."""
    words = " | ".join(texts).split()
    grams = [" ".join(words[i:i + 3]) for i in range(len(words) - 2)] or words or ["(empty)"]
    return [g.encode("utf-8", "surrogatepass") for g in dict.fromkeys(grams)]


def minhashes(normalised: list[tuple[str, str, str]], chunk: int = 2000) -> list[np.ndarray]:
    """MinHash signatures (datasketch's: its permutations and mixing, so `MinHash.jaccard`
    would agree) of many normalised pairs, computed a chunk of pairs at a time in numpy rather
    than one MinHash object each (ten times faster at 100k pairs; a test holds them equal)."""
    template = MinHash(num_perm=NUM_PERM, hashfunc=_hash32)
    a, b = template.permutations
    width = 8 * template.hashvalues.dtype.itemsize
    out: list[np.ndarray] = []
    for start in range(0, len(normalised), chunk):
        lists = [shingles(*t) for t in normalised[start:start + chunk]]
        sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        hv = np.fromiter((_hash32(s) for x in lists for s in x), dtype=template.hashvalues.dtype,
                         count=int(sizes.sum()))
        permuted = _fmix(hv, width)[:, None] * a + b  # wraps modulo 2^width, as datasketch's
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        out += list(np.minimum.reduceat(permuted, starts, axis=0))
    return out


def bands(hashvalues: np.ndarray) -> list[int]:
    """The LSH band keys of a signature (band number and its values, hashed to an integer):
    pairs sharing one are near-duplicate candidates."""
    values = np.asarray(hashvalues)
    return [int.from_bytes(hashlib.blake2b(bytes([b]) + values[b * ROWS:(b + 1) * ROWS].tobytes(),
                                           digest_size=8).digest(), "big", signed=True)
            for b in range(BANDS)]


def similarity(sig_a: bytes, sig_b: bytes) -> float:
    """Estimated Jaccard similarity of two stored signatures."""
    a = np.frombuffer(sig_a or b"", dtype=SIGNATURE_DTYPE)
    b = np.frombuffer(sig_b or b"", dtype=SIGNATURE_DTYPE)
    return float(np.mean(a == b)) if len(a) == len(b) and len(a) else 0.0
