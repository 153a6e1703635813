"""A page of a job's stdout or stderr as text: where UTF-8 lets a page of bytes end (pure)."""

from __future__ import annotations

# The longest UTF-8 sequence: a page of at least this many bytes always holds a character.
MAX_SEQUENCE_BYTES = 4


def _sequence_length(lead: int) -> int:
    """How many bytes the UTF-8 sequence that `lead` starts has (1 for ASCII and for bytes that start none)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def complete_length(data: bytes) -> int:
    """How many bytes of `data` end outside a UTF-8 sequence: all of them, or up to the first byte of a sequence the
    page cuts short (its last bytes, if they begin one that more bytes would finish)."""
    for back in range(1, min(MAX_SEQUENCE_BYTES, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the last sequence starts here
            return len(data) - back if _sequence_length(byte) > back else len(data)
    return len(data)  # no sequence starts in the last bytes: nothing to wait for


def page_text(data: bytes, *, at_the_end: bool) -> tuple[str, int]:
    """(the page as text, how many of its bytes the text holds). A sequence cut at the page's end is left for the next
    page — unless nothing more will come (`at_the_end`: the stream is whole and the page reaches its end). Bytes
    that are not UTF-8 become U+FFFD."""
    used = len(data) if at_the_end else complete_length(data)
    return data[:used].decode("utf-8", errors="replace"), used
