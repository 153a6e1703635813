"""The Content-Disposition of a download link (pure): RFC 6266, with the file's exact name in RFC 8187 form.

A file name goes into the header only in two safe shapes, never as it is:
- `filename="..."`, an ASCII fallback for clients that do not read `filename*`: every character that is not printable
  ASCII, and the quote, backslash, percent sign and semicolon, become "_" (so no quoted-pair escape that clients
  disagree on, no "%" a client might decode, no ";" a naive splitter might take for the next parameter);
- `filename*=UTF-8''...`, the exact name, percent-encoded except for RFC 8187's attr-char.
The header is then plain ASCII, which S3 can send whatever the name.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# No file on the head node has a longer name (NAME_MAX): a longer one is cut, its extension kept.
MAX_NAME_BYTES = 255
MAX_KEPT_EXTENSION_BYTES = 16
# RFC 8187 attr-char beyond what urllib.parse.quote always leaves alone (ALPHA, DIGIT, "-", ".", "_", "~").
_ATTR_CHARACTERS = "!#$&+^`|"
_UNSAFE_IN_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\%;]')


def attachment(filename: str) -> str:
    """`attachment; filename="<ASCII fallback>"; filename*=UTF-8''<exact name>` ("attachment" alone if no name)."""
    name = shortened(filename)
    if not name:
        return "attachment"
    fallback = _UNSAFE_IN_FALLBACK.sub("_", name)
    # A lone surrogate cannot be UTF-8: it becomes "?" (the job spec refuses such names, so none reaches here).
    exact = quote(name, safe=_ATTR_CHARACTERS, encoding="utf-8", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def shortened(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """`name` if it is at most `limit` UTF-8 bytes; else cut at a character boundary, keeping a short extension."""
    if _utf8_length(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or _utf8_length(dot + extension) > MAX_KEPT_EXTENSION_BYTES:
        stem, extension, dot = name, "", ""
    room = limit - _utf8_length(dot + extension)
    cut = stem.encode("utf-8", errors="replace")[:room].decode("utf-8", errors="ignore")
    return cut + dot + extension


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))
