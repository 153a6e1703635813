"""The Content-Disposition of download links: one ASCII header that names the file exactly, whatever the name."""

import pytest

from slurm_job_api.results import MAX_NAME_BYTES, attachment, shortened
from tests.security.download_names import DOWNLOAD_NAMES, download_name, parameters

NAMES = [
    *DOWNLOAD_NAMES,
    "plain.txt",
    "line\r\nX-Injected: 1",
    "nul\x00del\x7f.txt",
    "tab\there.txt",
    'only"quotes"',
    "\\",
    ";",
    '"',
    "😀",
    "\U0010ffff",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_header_is_ascii_with_one_name_of_each_kind_that_reads_back_exactly(name):
    header = attachment(name)
    assert "\r" not in header and "\n" not in header
    exact, fallback = download_name(header)  # ASCII, well-formed, one filename and one filename*
    assert exact == name
    assert fallback.isascii() and fallback.isprintable() and len(fallback) == len(name)
    assert all(kept == original for kept, original in zip(fallback, name, strict=True) if kept != "_")


def test_a_name_that_would_end_the_quoted_string_cannot_add_a_parameter():
    header = attachment('q"; filename="evil.html')
    fallback, exact = 'filename="q__ filename=_evil.html"', "filename*=UTF-8''q%22%3B%20filename%3D%22evil.html"
    assert header == f"attachment; {fallback}; {exact}"
    assert [name for name, _ in parameters(header)[1]] == ["filename", "filename*"]


def test_non_ascii_is_percent_encoded_utf8_with_an_underscored_fallback():
    assert attachment("文件.txt") == "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%96%87%E4%BB%B6.txt"
    assert attachment("🎉") == "attachment; filename=\"_\"; filename*=UTF-8''%F0%9F%8E%89"


def test_characters_rfc_8187_allows_stay_as_they_are():
    assert attachment("a-b_c.d~e!f#g$h&i+j^k`l|m") == (
        "attachment; filename=\"a-b_c.d~e!f#g$h&i+j^k`l|m\"; filename*=UTF-8''a-b_c.d~e!f#g$h&i+j^k`l|m"
    )
    assert attachment("100%/x y'z") == "attachment; filename=\"100_/x y'z\"; filename*=UTF-8''100%25%2Fx%20y%27z"


def test_no_name_is_a_bare_attachment():
    assert attachment("") == "attachment"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x" * 300 + ".txt", "x" * 251 + ".txt"),
        ("長" * 200 + ".csv", "長" * 83 + ".csv"),  # 249 + 4 bytes: a 3-byte character does not fit in the last 2
        ("🎉" * 100, "🎉" * 63),
        ("a" * 300 + "." + "e" * 40, "a" * 255),  # an "extension" too long to keep is cut like the rest
        ("." + "h" * 300, "." + "h" * 254),  # a leading dot is no extension
    ],
)
def test_names_longer_than_a_file_name_can_be_are_cut_at_a_character_keeping_the_extension(name, expected):
    assert shortened(name) == expected and len(expected.encode()) <= MAX_NAME_BYTES
    assert download_name(attachment(name))[0] == expected


def test_a_name_at_the_limit_is_kept_whole():
    name = "é" * (MAX_NAME_BYTES // 2) + "x"
    assert len(name.encode()) == MAX_NAME_BYTES and shortened(name) == name
