"""gzip for search answers: ISA-L's igzip, five times zlib's speed at the same ratio, else zlib.

Measured on the service's answers (docs/decisions/013-pre-compressed-answers.md). Either way the
bytes are a standard gzip member with mtime 0, the same in every worker of one image; `CODEC`
goes into the ETag, so two builds that compress differently never share a validator.
"""

from __future__ import annotations

try:
    from isal import igzip
except ImportError:  # a platform without a wheel: the standard library's zlib, at its fast level 3
    import gzip

    CODEC = "zlib3"

    def compress(body: bytes) -> bytes:
        """`body` as one gzip member."""
        return gzip.compress(body, 3, mtime=0)

else:
    CODEC = "isal2"

    def compress(body: bytes) -> bytes:
        """`body` as one gzip member."""
        return igzip.compress(body, 2, mtime=0)
