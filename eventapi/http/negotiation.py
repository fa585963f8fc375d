"""Content negotiation for search answers: which of our encodings an Accept-Encoding header allows.

Pure and memoized by the caller; RFC 9110 section 12.5.3 (q-values, `*`, `identity`).
"""

from __future__ import annotations

IDENTITY = "identity"


def choose_encoding(accept_encoding: bytes | None, offered: tuple[str, ...]) -> str:
    """The offered coding the client accepts with the highest q (ties: our order), else identity.

    No header: identity. A client that refuses identity and accepts none of ours gets identity
    anyway: a 406 helps nobody reading a search answer.
    """
    if accept_encoding is None:
        return IDENTITY
    weights = _weights(accept_encoding)
    wildcard = weights.get("*", 0.0)
    best, best_q = IDENTITY, 0.0
    for coding in offered:  # a tie goes to the one we list first
        q = weights.get(coding, wildcard)
        if q > best_q:
            best, best_q = coding, q
    # Identity is the fallback, acceptable unless refused; it beats an accepted coding only when the
    # client names it with a higher q. On a tie, compress: both are equally welcome.
    return best if best_q > 0 and best_q >= weights.get(IDENTITY, 0.0) else IDENTITY


def _weights(header: bytes) -> dict[str, float]:
    """Coding -> q from a header such as `gzip;q=0.8, br, *;q=0`; malformed members are skipped."""
    weights: dict[str, float] = {}
    for member in header.decode("latin-1").split(","):
        coding, _, params = member.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:  # a q that does not parse, or out of range: the member is ignored
            weights[coding] = q
    return weights
