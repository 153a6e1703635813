"""Hostile file names for download links, and the tests' own strict reading of a Content-Disposition header.

The reading is written from RFC 6266 / RFC 8187 (and Python's email package as a second reader), not from the
product's code: a header must be ASCII, made of `disposition-type *( ";" parameter )` exactly, and a download name
is what its `filename*` says (percent-decoded UTF-8), which a client falls back from to `filename`. (Python's email
package reads MIME, where both are one parameter and the first wins: it is asked for the RFC 2231 value itself.)
"""

from __future__ import annotations

import re
from email.message import Message
from email.utils import collapse_rfc2231_value, decode_rfc2231
from urllib.parse import unquote

# Names a job spec accepts as outputs (no control characters, no "." or ".." parts, no "/"), each at most 255 bytes.
DOWNLOAD_NAMES = [
    "文件.txt",
    'q"; filename="evil.html',
    "a;b=c.txt",
    "back\\slash.txt",
    "100%.txt",
    "%41%42.txt",
    "party 🎉.txt",
    "'quoted'.txt",
    "=?utf-8?q?encoded?=.txt",
    "e\u0301-combining.txt",
    "résumé.pdf",
    " leading and trailing ",
    "長" * 83 + ".txt",  # 253 bytes of UTF-8: about the longest name a file can have
]

TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"'
PARAMETER = re.compile(rf"[ \t]*;[ \t]*({TOKEN})[ \t]*=[ \t]*({TOKEN}|{QUOTED_STRING})[ \t]*")
EXT_VALUE = re.compile(r"UTF-8'[A-Za-z0-9-]*'(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-Fa-f]{2})*", re.IGNORECASE)


def parameters(header: str) -> tuple[str, list[tuple[str, str]]]:
    """The disposition type and the (lowercased name, raw value) of each parameter; AssertionError if malformed."""
    assert header.isascii(), f"not ASCII: {header!r}"
    first = re.match(TOKEN, header)
    assert first, f"no disposition type: {header!r}"
    found, position = [], first.end()
    while position < len(header):
        parameter = PARAMETER.match(header, position)
        assert parameter, f"not an RFC 6266 parameter at {position}: {header!r}"
        found.append((parameter.group(1).lower(), parameter.group(2)))
        position = parameter.end()
    return first.group().lower(), found


def unquoted(value: str) -> str:
    if not value.startswith('"'):
        return value
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def download_name(header: str) -> tuple[str, str]:
    """(the name a client saves the file as, the ASCII fallback) of an attachment with one name of each kind."""
    disposition, found = parameters(header)
    assert disposition == "attachment", header
    names = [name for name, _ in found]
    assert names.count("filename") == 1 and names.count("filename*") == 1, f"not one name of each kind: {header!r}"
    values = dict(found)
    assert EXT_VALUE.fullmatch(values["filename*"]), f"filename* is not an RFC 8187 ext-value: {header!r}"
    charset, _language, encoded = decode_rfc2231(values["filename*"])
    exact = unquote(encoded, encoding=charset, errors="strict")
    message = Message()
    message["Content-Disposition"] = header
    encoded = [value for _, value in message.get_params(header="content-disposition") if isinstance(value, tuple)]
    assert [collapse_rfc2231_value(value) for value in encoded] == [exact], f"email reads {encoded}: {header!r}"
    return exact, unquoted(values["filename"])
