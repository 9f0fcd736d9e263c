"""Just enough of the QCOW2 header to refuse what Scaleway's snapshot import refuses, and the
empty image an export writes for a snapshot that has no data.

The header is big-endian (docs/interop/qcow2.txt in QEMU):

    0  magic "QFI\\xfb"       4  version (2 or 3)
    8  backing_file_offset   16  backing_file_size (u32)
   20  cluster_bits          24  size (virtual, u64)
   32  crypt_method (u32)    ...
   72  incompatible_features (v3, u64)   100  header_length (v3, u32)
  104  compression_type (v3, u8, only when header_length > 104)

Incompatible feature bit 3 says the compression type field is meaningful; type 0 is zlib
(accepted), 1 is zstd (refused).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"QFI\xfb"
GB = 1000**3
MIN_SIZE = 1 * GB  # Scaleway counts in decimal units: a 1 GiB image passes, 64 MiB does not
MAX_SIZE = 1000 * GB
COMPRESSION_ZLIB = 0
INCOMPAT_COMPRESSION_TYPE = 1 << 3

# The messages of the real API (invalid_request_error), in one place.
MSG_NOT_QCOW2 = "The provided file is not a valid QCOW2 file"
MSG_ENCRYPTED = "The provided QCOW2 file is encrypted"
MSG_COMPRESSION = "The provided QCOW2 has an unsupported compression type"
MSG_BACKING = "The provided QCOW2 file has a backing chain"
MSG_SIZE = "The volume size must be between 1 GB and 1 TB"
MSG_NO_DATA = "this snapshot has no data to export (qemu-img is missing)"


class Qcow2Error(ValueError):
    """A QCOW2 file the import refuses; the message is the API's error message."""


@dataclass(frozen=True)
class Qcow2Header:
    """The fields of the header that the import checks."""

    version: int
    backing_file_offset: int
    backing_file_size: int
    cluster_bits: int
    virtual_size: int
    crypt_method: int
    incompatible_features: int = 0
    header_length: int = 72
    compression_type: int = COMPRESSION_ZLIB


def parse_header(data: bytes) -> Qcow2Header:
    """Parse the first bytes of a file (at least 104 for v3 headers); Qcow2Error if not QCOW2."""
    if len(data) < 72 or data[:4] != MAGIC:
        raise Qcow2Error(MSG_NOT_QCOW2)
    version, backing_offset, backing_size, cluster_bits, size, crypt = struct.unpack(
        ">IQIIQI", data[4:36]
    )
    if version not in (2, 3):
        raise Qcow2Error(MSG_NOT_QCOW2)
    incompatible, header_length, compression = 0, 72, COMPRESSION_ZLIB
    if version == 3:
        if len(data) < 104:
            raise Qcow2Error(MSG_NOT_QCOW2)
        (incompatible,) = struct.unpack(">Q", data[72:80])
        (header_length,) = struct.unpack(">I", data[100:104])
        if header_length > 104 and len(data) > 104:
            compression = data[104]
    return Qcow2Header(
        version=version,
        backing_file_offset=backing_offset,
        backing_file_size=backing_size,
        cluster_bits=cluster_bits,
        virtual_size=size,
        crypt_method=crypt,
        incompatible_features=incompatible,
        header_length=header_length,
        compression_type=compression,
    )


def check(header: Qcow2Header) -> None:
    """Raise Qcow2Error with the real API's message for anything the import refuses."""
    if header.crypt_method != 0:
        raise Qcow2Error(MSG_ENCRYPTED)
    if header.incompatible_features & INCOMPAT_COMPRESSION_TYPE and (
        header.compression_type != COMPRESSION_ZLIB
    ):
        raise Qcow2Error(MSG_COMPRESSION)
    if header.backing_file_offset != 0:
        raise Qcow2Error(MSG_BACKING)
    if not MIN_SIZE <= header.virtual_size <= MAX_SIZE:
        raise Qcow2Error(MSG_SIZE)


def inspect(path: Path) -> Qcow2Header:
    """Read and check a file's header; returns it when the import may proceed."""
    with open(path, "rb") as handle:
        header = parse_header(handle.read(512))
    check(header)
    return header


def data_or_empty(blob: Path | None, size: int, scratch: Path) -> Path:
    """A snapshot's data as QCOW2: its blob when it exists, else an empty image of `size`
    bytes written to `scratch` (a volume never written has no data file). Raises Qcow2Error
    (MSG_NO_DATA) when qemu-img, which makes the empty image, is missing."""
    if blob is not None and blob.exists():
        return blob
    if not shutil.which("qemu-img"):
        raise Qcow2Error(MSG_NO_DATA)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(scratch), str(size)],
        check=True,
        capture_output=True,
    )
    return scratch
