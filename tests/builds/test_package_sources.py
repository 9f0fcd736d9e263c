"""Reading the guest's package database output into source packages (builds.package_sources).

The outputs below have the exact shape of the two queries' output: the dpkg lines as
dpkg-query 1.21 prints them on Debian 12, the rpm lines as rpm 4.16 prints them on an
EL9 system (tabs between fields, "(none)" for an absent tag).
"""

from __future__ import annotations

from builds.package_sources import (
    DPKG_QUERY,
    QUERIES,
    RPM_QUERY,
    parse_dpkg,
    parse_rpm,
    rpm_version,
    split_source_rpm,
    with_sources,
)

DPKG_OUTPUT = """\
adduser\tall\t3.134\tinstall ok installed\tadduser\t3.134
bash\tamd64\t5.2.15-2+b8\tinstall ok installed\tbash\t5.2.15-2
bsdutils\tamd64\t1:2.38.1-5+deb12u3\tinstall ok installed\tutil-linux\t2.38.1-5+deb12u3
cpp\tamd64\t4:12.2.0-3\tinstall ok installed\tgcc-defaults\t1.203
libc6:amd64\tamd64\t2.36-9+deb12u14\tinstall ok installed\tglibc\t2.36-9+deb12u14
libc6:i386\ti386\t2.36-9+deb12u14\tinstall ok installed\tglibc\t2.36-9+deb12u14
libcrypt1:amd64\tamd64\t1:4.4.33-2\tinstall ok installed\tlibxcrypt\t1:4.4.33-2
libstdc++6:amd64\tamd64\t12.2.0-14+deb12u1\tinstall ok installed\tgcc-12\t12.2.0-14+deb12u1
linux-image-6.1.0-18-amd64\tamd64\t6.1.76-1\tdeinstall ok config-files\tlinux-signed-amd64\t6.1.76+1
openssh-server\t\t\tunknown ok not-installed\topenssh-server\t
systemd\tamd64\t252.39-1~deb12u2\tinstall ok installed\tsystemd\t252.39-1~deb12u2
"""

RPM_OUTPUT = """\
glibc\t(none)\t2.34\t100.el9_4.2\tx86_64\tglibc-2.34-100.el9_4.2.src.rpm
glibc-langpack-en\t(none)\t2.34\t100.el9_4.2\tx86_64\tglibc-2.34-100.el9_4.2.src.rpm
dbus\t1\t1.12.20\t8.el9\tx86_64\tdbus-1.12.20-8.el9.src.rpm
openssl-libs\t1\t3.0.7\t27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm
kernel-core\t(none)\t5.14.0\t427.13.1.el9_4\tx86_64\tkernel-5.14.0-427.13.1.el9_4.src.rpm
kernel-core\t(none)\t5.14.0\t427.22.1.el9_4\tx86_64\tkernel-5.14.0-427.22.1.el9_4.src.rpm
python3-setuptools-wheel\t(none)\t53.0.0\t12.el9\tnoarch\tpython-setuptools-53.0.0-12.el9.src.rpm
gpg-pubkey\t(none)\t350d275d\t6279464b\t(none)\t(none)
"""


def test_the_queries_ask_for_the_fields_the_parsers_read() -> None:
    assert QUERIES == {"deb": DPKG_QUERY, "rpm": RPM_QUERY}
    assert DPKG_QUERY.startswith("dpkg-query -W -f='${binary:Package}\\t")
    assert "${source:Package}\\t${source:Version}\\n'" in DPKG_QUERY
    assert DPKG_QUERY.count("\\t") == 5 and RPM_QUERY.count("\\t") == 5
    assert "%{SOURCERPM}" in RPM_QUERY


def test_dpkg_output_gives_each_installed_package_its_source() -> None:
    result = parse_dpkg(DPKG_OUTPUT.splitlines())
    assert result.skipped == 0
    assert result.sources == {
        ("adduser", "all", "3.134"): ("adduser", "3.134"),
        # A binNMU: the source version has no +b8.
        ("bash", "amd64", "5.2.15-2+b8"): ("bash", "5.2.15-2"),
        # The binary's epoch is its own: the source has none.
        ("bsdutils", "amd64", "1:2.38.1-5+deb12u3"): ("util-linux", "2.38.1-5+deb12u3"),
        ("cpp", "amd64", "4:12.2.0-3"): ("gcc-defaults", "1.203"),
        # Arch-qualified names (Multi-Arch: same) are kept bare, one entry per architecture.
        ("libc6", "amd64", "2.36-9+deb12u14"): ("glibc", "2.36-9+deb12u14"),
        ("libc6", "i386", "2.36-9+deb12u14"): ("glibc", "2.36-9+deb12u14"),
        ("libcrypt1", "amd64", "1:4.4.33-2"): ("libxcrypt", "1:4.4.33-2"),
        ("libstdc++6", "amd64", "12.2.0-14+deb12u1"): ("gcc-12", "12.2.0-14+deb12u1"),
        ("systemd", "amd64", "252.39-1~deb12u2"): ("systemd", "252.39-1~deb12u2"),
    }


def test_dpkg_lines_it_cannot_read_are_counted_not_guessed() -> None:
    lines = [
        "dpkg-query: warning: parsing file '/var/lib/dpkg/status' near line 12: odd field",
        "libc6:i386\tamd64\t2.36-9\tinstall ok installed\tglibc\t2.36-9",  # suffix != arch
        # dpkg older than 1.16.2 prints nothing for the virtual fields.
        "\tamd64\t2.13-38\tinstall ok installed\t\t",
        "zlib1g\tamd64\t1:1.2.13.dfsg-1\tinstall ok installed\tzlib\t1:1.2.13.dfsg-1",
    ]
    result = parse_dpkg(lines)
    assert result.sources == {("zlib1g", "amd64", "1:1.2.13.dfsg-1"): ("zlib", "1:1.2.13.dfsg-1")}
    assert result.skipped == 3


def test_a_source_rpm_name_splits_into_name_and_version_release() -> None:
    assert split_source_rpm("glibc-2.34-100.el9_4.2.src.rpm") == ("glibc", "2.34-100.el9_4.2")
    assert split_source_rpm("python-setuptools-53.0.0-12.el9.src.rpm") == (
        "python-setuptools",
        "53.0.0-12.el9",
    )
    assert split_source_rpm("linux-firmware-20230404-134.el9.nosrc.rpm") == (
        "linux-firmware",
        "20230404-134.el9",
    )
    assert split_source_rpm("glibc-2.34-100.el9.x86_64.rpm") is None
    assert split_source_rpm("(none)") is None


def test_an_rpm_version_is_written_as_inspection_writes_it() -> None:
    assert rpm_version("(none)", "2.34", "100.el9") == "2.34-100.el9"
    assert rpm_version("0", "2.34", "100.el9") == "2.34-100.el9"
    assert rpm_version("1", "3.0.7", "27.el9") == "1:3.0.7-27.el9"


def test_rpm_output_gives_each_package_its_source_rpm() -> None:
    result = parse_rpm(RPM_OUTPUT.splitlines())
    assert result.skipped == 0
    assert result.sources == {
        ("glibc", "x86_64", "2.34-100.el9_4.2"): ("glibc", "2.34-100.el9_4.2"),
        ("glibc-langpack-en", "x86_64", "2.34-100.el9_4.2"): ("glibc", "2.34-100.el9_4.2"),
        ("dbus", "x86_64", "1:1.12.20-8.el9"): ("dbus", "1.12.20-8.el9"),
        ("openssl-libs", "x86_64", "1:3.0.7-27.el9"): ("openssl", "3.0.7-27.el9"),
        # Two kernels installed side by side stay apart.
        ("kernel-core", "x86_64", "5.14.0-427.13.1.el9_4"): ("kernel", "5.14.0-427.13.1.el9_4"),
        ("kernel-core", "x86_64", "5.14.0-427.22.1.el9_4"): ("kernel", "5.14.0-427.22.1.el9_4"),
        ("python3-setuptools-wheel", "noarch", "53.0.0-12.el9"): (
            "python-setuptools",
            "53.0.0-12.el9",
        ),
    }


def test_rpm_warnings_and_odd_source_names_are_counted() -> None:
    lines = [
        "error: rpmdbNextIterator: skipping h#     412 Header V4 RSA/SHA256 Signature, key ID",
        "bash\t(none)\t5.1.8\t9.el9\tx86_64\tbash-5.1.8-9.el9.x86_64.rpm",
        "bash\t(none)\t5.1.8\t9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm",
    ]
    result = parse_rpm(lines)
    assert result.sources == {("bash", "x86_64", "5.1.8-9.el9"): ("bash", "5.1.8-9.el9")}
    assert result.skipped == 2


def test_sources_are_added_to_the_entries_inspection_listed_and_only_those() -> None:
    inspected = [
        {"name": "bsdutils", "version": "1:2.38.1-5+deb12u3", "arch": "amd64"},
        {"name": "libc6", "version": "2.36-9+deb12u14", "arch": "amd64"},
        {"name": "libc6", "version": "2.36-9+deb12u14", "arch": "i386"},
        # Not in the query's output (or at another version): its source stays unknown.
        {"name": "local-tool", "version": "1.0", "arch": "amd64"},
        {"name": "systemd", "version": "252.38-1~deb12u1", "arch": "amd64"},
    ]
    sources = parse_dpkg(DPKG_OUTPUT.splitlines()).sources
    manifest, matched = with_sources(inspected, sources)
    assert matched == 3
    assert manifest == [
        {
            "name": "bsdutils",
            "version": "1:2.38.1-5+deb12u3",
            "arch": "amd64",
            "source": "util-linux",
            "source_version": "2.38.1-5+deb12u3",
        },
        {
            "name": "libc6",
            "version": "2.36-9+deb12u14",
            "arch": "amd64",
            "source": "glibc",
            "source_version": "2.36-9+deb12u14",
        },
        {
            "name": "libc6",
            "version": "2.36-9+deb12u14",
            "arch": "i386",
            "source": "glibc",
            "source_version": "2.36-9+deb12u14",
        },
        {"name": "local-tool", "version": "1.0", "arch": "amd64"},
        {"name": "systemd", "version": "252.38-1~deb12u1", "arch": "amd64"},
    ]
    assert inspected[1] == {"name": "libc6", "version": "2.36-9+deb12u14", "arch": "amd64"}
