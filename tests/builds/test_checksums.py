"""The checksum file parsers, fed the real lines quoted in upstream-images.md."""

from __future__ import annotations

import pytest

from builds.checksums import ChecksumError, clearsigned_body, parse, parse_bsd, parse_gnu

UBUNTU = (
    "ffe6203da54deeb6db5d2a98a83f9ec8e55f149d3f7ba622e1abe5fa966ee3d6 "
    "*noble-server-cloudimg-amd64.img\n"
)
DEBIAN = (
    "fcc52bdff35697583f9331b64c688db6681fea98c024a1db185d8857b167f4e1"
    "838ead7037f18c12e432229354b1253f29e881a040ce0f5636801576e715b4b8  "
    "debian-13-genericcloud-amd64-daily-20260717-2542.qcow2\n"
)
ALMA = (
    "c397eed7023e92c841155831b1f47e26300e5bef0f0256c129322307c897a251  "
    "AlmaLinux-9-GenericCloud-9.8-20260526.x86_64.qcow2\n"
)
ROCKY = (
    "# Rocky-9-GenericCloud-Base-9.7-20251123.2.x86_64.qcow2: 648806400 bytes\n"
    "SHA256 (Rocky-9-GenericCloud-Base-9.7-20251123.2.x86_64.qcow2) = "
    "15d81d3434b298142b2fdd8fb54aef2662684db5c082cc191c3c79762ed6360c\n"
)
CENTOS = (
    "# CentOS-Stream-GenericCloud-9-20260615.0.x86_64.qcow2: 1916501504 bytes\n"
    "SHA256 (CentOS-Stream-GenericCloud-9-20260615.0.x86_64.qcow2) = "
    "13baa70caebd7d5dc6cebe816f3bc8fbe357ce330af4155255c7648c2798ff1c\n"
)
FEDORA_DIGEST = "28680fe5b371a5a82ebf43a31926e086a168e59949d03969c5093e7071f90b7f"
FEDORA = (
    "-----BEGIN PGP SIGNED MESSAGE-----\n"
    "Hash: SHA256\n"
    "\n"
    "# Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2: 512000000 bytes\n"
    f"SHA256 (Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2) = {FEDORA_DIGEST}\n"
    "-----BEGIN PGP SIGNATURE-----\n"
    "\n"
    "iHUEARYIAB0WIQQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFAmAAAAAACgkQAAAA\n"
    "-----END PGP SIGNATURE-----\n"
)


def test_it_reads_ubuntus_binary_mode_gnu_line() -> None:
    assert parse(UBUNTU, "gnu") == {
        "noble-server-cloudimg-amd64.img": (
            "sha256",
            "ffe6203da54deeb6db5d2a98a83f9ec8e55f149d3f7ba622e1abe5fa966ee3d6",
        )
    }


def test_it_reads_debians_sha512_line_with_two_spaces() -> None:
    entries = parse(DEBIAN, "gnu")
    algorithm, digest = entries["debian-13-genericcloud-amd64-daily-20260717-2542.qcow2"]
    assert algorithm == "sha512"
    assert digest.startswith("fcc52bdf") and len(digest) == 128


def test_it_reads_almas_gnu_line() -> None:
    assert parse_gnu(ALMA)["AlmaLinux-9-GenericCloud-9.8-20260526.x86_64.qcow2"][0] == "sha256"


def test_it_reads_rockys_bsd_lines_and_skips_the_size_comment() -> None:
    assert parse(ROCKY, "bsd") == {
        "Rocky-9-GenericCloud-Base-9.7-20251123.2.x86_64.qcow2": (
            "sha256",
            "15d81d3434b298142b2fdd8fb54aef2662684db5c082cc191c3c79762ed6360c",
        )
    }


def test_it_keeps_centos_names_that_differ_by_one_token_apart() -> None:
    uefi = CENTOS.replace("GenericCloud-9-", "GenericCloud-x86_64-9-").replace(
        "13baa70c", "99999999"
    )
    entries = parse_bsd(CENTOS + uefi)
    assert entries["CentOS-Stream-GenericCloud-9-20260615.0.x86_64.qcow2"][1].startswith("13baa70c")
    assert entries["CentOS-Stream-GenericCloud-x86_64-9-20260615.0.x86_64.qcow2"][1].startswith(
        "99999999"
    )


def test_it_reads_fedoras_clearsigned_bsd_body() -> None:
    assert parse(FEDORA, "clearsigned-bsd") == {
        "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2": ("sha256", FEDORA_DIGEST)
    }


def test_it_undoes_dash_escaping_in_a_clearsigned_body() -> None:
    text = FEDORA.replace("# Fedora", "- -- not a comment\n# Fedora")
    assert clearsigned_body(text).splitlines()[0] == "-- not a comment"


def test_it_ignores_lines_outside_the_signed_block() -> None:
    smuggled = f"SHA256 (evil.qcow2) = {FEDORA_DIGEST}\n" + FEDORA
    smuggled += f"SHA256 (evil2.qcow2) = {FEDORA_DIGEST}\n"
    assert list(parse(smuggled, "clearsigned-bsd")) == [
        "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2"
    ]


def test_it_refuses_two_signed_blocks_in_one_file() -> None:
    with pytest.raises(ChecksumError, match="more than one"):
        parse(FEDORA + FEDORA, "clearsigned-bsd")


def test_it_refuses_a_clearsigned_file_without_armour() -> None:
    with pytest.raises(ChecksumError, match="not a PGP clearsigned message"):
        parse(ROCKY, "clearsigned-bsd")


def test_it_refuses_a_file_with_no_checksum_lines() -> None:
    with pytest.raises(ChecksumError, match="no GNU checksum lines"):
        parse("<html>not found</html>\n", "gnu")


def test_it_refuses_a_bsd_digest_of_the_wrong_length() -> None:
    with pytest.raises(ChecksumError, match="hex digits"):
        parse_bsd("SHA512 (x.qcow2) = " + "ab" * 32 + "\n")


def test_it_refuses_an_unknown_format() -> None:
    with pytest.raises(ChecksumError, match="unknown checksum format"):
        parse(UBUNTU, "md5-xml")
