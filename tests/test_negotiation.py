"""Accept-Encoding negotiation (RFC 9110 section 12.5.3): q-values, `*` and `identity` honoured."""

from __future__ import annotations

import pytest

from eventapi.http.negotiation import choose_encoding

OFFERED = ("gzip",)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, "identity"),  # no header: nothing beyond identity was asked for
        (b"", "identity"),
        (b"gzip", "gzip"),
        (b"GZIP", "gzip"),  # codings are case-insensitive
        (b"gzip, deflate, br", "gzip"),
        (b"deflate, br", "identity"),  # none of ours
        (b"gzip;q=0", "identity"),  # refused
        (b"gzip; q=0.000", "identity"),
        (b"*", "gzip"),
        (b"*;q=0", "identity"),  # everything but identity refused: identity anyway
        (b"identity", "identity"),  # only identity named: gzip is not acceptable (q 0)
        (b"identity;q=1, gzip;q=0.5", "identity"),  # the client prefers identity
        (b"identity;q=0.5, gzip;q=0.5", "gzip"),  # a tie goes to compression
        (b"gzip;q=0.1", "gzip"),  # identity is a fallback, not a rival, unless named with a higher q
        (b"identity;q=0, gzip", "gzip"),
        (b"identity;q=0", "identity"),  # refused, and nothing of ours acceptable: identity anyway
        (b"gzip;q=2", "identity"),  # out of range: the member is ignored
        (b"gzip;q=high", "identity"),  # does not parse: ignored
        (b" , ,gzip ;q=0.8", "gzip"),  # empty members and spaces
        (b"br;q=1, *;q=0.5", "gzip"),  # gzip through the wildcard
    ],
)
def test_choose_encoding_honours_q_values_wildcards_and_identity(header: bytes | None, chosen: str) -> None:
    """The encoding is the one the header allows and prefers among ours, else identity."""
    assert choose_encoding(header, OFFERED) == chosen


def test_ties_between_our_encodings_go_to_the_first_offered() -> None:
    """Equal q for two of ours: our order decides (the better ratio first)."""
    assert choose_encoding(b"gzip, br", ("br", "gzip")) == "br"
    assert choose_encoding(b"gzip;q=1, br;q=0.9", ("br", "gzip")) == "gzip"
