"""Where a page of a job's stream may end as UTF-8 text (log_pages.py, pure)."""

from __future__ import annotations

import pytest

from slurm_job_api.log_pages import MAX_SEQUENCE_BYTES, complete_length, page_text

TEXT = "a" + "é" + "漢" + "🙂" + "z"  # sequences of 1, 2, 3, 4 and 1 bytes
DATA = TEXT.encode()


@pytest.mark.parametrize(
    ("cut", "kept"),
    [(1, 1), (2, 1), (3, 3), (4, 3), (5, 3), (6, 6), (7, 6), (8, 6), (9, 6), (10, 10), (11, 11)],
)
def test_a_page_ends_before_a_sequence_it_cuts_short(cut, kept):
    assert complete_length(DATA[:cut]) == kept
    text, used = page_text(DATA[:cut], at_the_end=False)
    assert used == kept and text.encode() == DATA[:kept]


def test_pages_from_each_next_offset_reassemble_the_text_for_every_page_size():
    for limit in range(MAX_SEQUENCE_BYTES, len(DATA) + 2):
        texts, offset = [], 0
        while offset < len(DATA):
            text, used = page_text(DATA[offset : offset + limit], at_the_end=False)
            assert used > 0, (limit, offset)  # a page of at least MAX_SEQUENCE_BYTES always moves on
            texts.append(text)
            offset += used
        assert "".join(texts) == TEXT


def test_at_the_end_of_a_whole_stream_a_cut_sequence_is_given_replaced():
    unfinished = DATA[:8]  # "aé漢" and three bytes of the four of "🙂"
    assert page_text(unfinished, at_the_end=False) == ("aé漢", 6)
    assert page_text(unfinished, at_the_end=True) == ("aé漢\ufffd", 8)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\xff\xfeok", "\ufffd\ufffdok"),  # bytes that start no sequence
        (b"\x80\x80abc", "\ufffd\ufffdabc"),  # a page that starts inside a sequence (an offset of the caller's own)
        (b"ab\x80\x80\x80\x80", "ab\ufffd\ufffd\ufffd\ufffd"),  # continuation bytes no lead byte starts
        (b"ok\xc0\xaf", "ok\ufffd\ufffd"),  # an overlong encoding
    ],
)
def test_bytes_that_are_not_utf8_are_replaced_and_never_held_back(data, text):
    assert page_text(data, at_the_end=False) == (text, len(data))


def test_an_empty_page_is_empty():
    assert page_text(b"", at_the_end=False) == ("", 0)
