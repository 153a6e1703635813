"""Each caller's inputs prefix and the keys a caller may name (slurm_job_api.inputs, pure)."""

import hashlib
import re

import pytest

from slurm_job_api.inputs import (
    CALLER_KEY_LENGTH,
    DEFAULT_UPLOAD_FILE_NAME,
    caller_key,
    inputs_prefix,
    is_own_input,
    upload_key,
)
from slurm_job_api.spec import JobSpec

ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"
ROLE_SESSION = "arn:aws:sts::123456789012:assumed-role/pipeline/run-7"
UPLOAD_ID = "0b6f1c9e3f7a4c1e9a532a8f6f2b9d10"


@pytest.mark.parametrize("owner", [ALICE, BOB, ROLE_SESSION, "AIDAEXAMPLEALICE", "x" * 2048, "é/ü:ß"])
def test_the_caller_key_is_a_fixed_length_url_safe_digest_of_the_owner(owner: str) -> None:
    key = caller_key(owner)
    assert len(key) == CALLER_KEY_LENGTH and re.fullmatch(r"[0-9a-f]+", key)
    assert key == hashlib.sha256(owner.encode()).hexdigest()  # the documented rule (README, "The API")
    assert key == caller_key(owner)  # stable for a principal
    assert inputs_prefix(owner) == f"inputs/{key}/"
    assert not {"arn", "aws", "iam", "alice", "user"} & set(re.split(r"[^a-z]+", inputs_prefix(owner)))


def test_each_principal_has_its_own_prefix() -> None:
    prefixes = {inputs_prefix(owner) for owner in (ALICE, BOB, ROLE_SESSION, ALICE.upper(), ALICE + " ")}
    assert len(prefixes) == 5


def test_a_caller_owns_the_objects_under_their_own_prefix_only() -> None:
    mine, theirs = inputs_prefix(ALICE), inputs_prefix(BOB)
    assert is_own_input(ALICE, f"{mine}run.sh")
    assert is_own_input(ALICE, f"{mine}{UPLOAD_ID}/deep/er/run.sh")
    for key in (
        f"{theirs}run.sh",  # another caller's object
        f"{theirs}{UPLOAD_ID}/{mine}run.sh",  # my prefix inside theirs
        mine,  # the prefix itself
        mine.rstrip("/"),
        f"{mine.rstrip('/')}x/run.sh",  # a prefix that only starts like mine
        f"{mine.upper()}run.sh".replace("INPUTS/", "inputs/"),  # keys are case-sensitive
        "inputs/run.sh",  # the root of inputs/
        f"jobs/{UPLOAD_ID}/input/script.sh",
        f"{mine}../{theirs[len('inputs/') :]}run.sh",  # traversal out of mine
        f"{mine}./run.sh",
        f"{mine}a//run.sh",
        f"{mine}a/",
        f"/{mine}run.sh",
        f"x{mine}run.sh",
        "",
    ):
        assert not is_own_input(ALICE, key), key


def test_an_upload_key_is_fresh_under_the_callers_prefix_and_a_valid_script_key() -> None:
    key = upload_key(ALICE, UPLOAD_ID, "run-1.v2_final.sh")
    assert key == f"{inputs_prefix(ALICE)}{UPLOAD_ID}/run-1.v2_final.sh"
    assert is_own_input(ALICE, key) and not is_own_input(BOB, key)
    assert upload_key(ALICE, UPLOAD_ID).endswith("/" + DEFAULT_UPLOAD_FILE_NAME)
    assert JobSpec.model_validate({"scriptS3Key": key}).script_s3_key == key  # the spec takes what POST /inputs gives


@pytest.mark.parametrize("file_name", ["", ".", "..", ".hidden", "a/b", "a b", "a\n", "x" * 129, "é.sh", "%2e%2e"])
def test_an_upload_file_name_is_one_plain_key_part(file_name: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        upload_key(ALICE, UPLOAD_ID, file_name)


@pytest.mark.parametrize("upload_id", ["", "../x", UPLOAD_ID.upper(), UPLOAD_ID + "0", "g" * 32])
def test_an_upload_id_is_32_hex_digits(upload_id: str) -> None:
    with pytest.raises(ValueError, match="upload id"):
        upload_key(ALICE, upload_id)
