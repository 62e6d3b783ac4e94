"""The portability checks of scripts/package_check.py, on readelf/objdump output.

scripts/package.sh runs those checks on the built wheel (and the packaging test installs it); the
tests here make sure the checks themselves refuse what they must: OpenSSL, libraries outside the
manylinux_2_17 list, glibc symbol versions newer than 2.17. The samples are the shape binutils
prints, taken from real shared objects.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType

import pytest

from _support import REPO


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "package_check", REPO / "scripts" / "package_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pc = _load()

READELF_D = """
Dynamic section at offset 0xe6f4e0 contains 31 entries:
  Tag        Type                         Name/Value
 0x0000000000000001 (NEEDED)             Shared library: [libm.so.6]
 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
 0x0000000000000001 (NEEDED)             Shared library: [ld-linux-x86-64.so.2]
 0x000000000000000e (SONAME)             Library soname: [_core.abi3.so]
 0x000000000000000c (INIT)               0x4ae3e0
"""

# A version definition section names versions this object *defines*; only the needs count.
READELF_V = """
Version symbols section '.gnu.version' contains 3 entries:
 Addr: 0x00000000000018f0  Offset: 0x000018f0  Link: 1 (.dynsym)
  000:   0 (*local*)       2 (GLIBC_2.14)    3 (GLIBC_2.2.5)

Version definition section '.gnu.version_d' contains 2 entries:
 Addr: 0x000000000000ce18  Offset: 0x0000ce18  Link: 4 (.dynstr)
  000000: Rev: 1  Flags: BASE  Index: 1  Cnt: 1  Name: libexample.so.1
  0x001c: Rev: 1  Flags: none  Index: 2  Cnt: 1  Name: EXAMPLE_9.0

Version needs section '.gnu.version_r' contains 2 entries:
 Addr: 0x0000000000001ad0  Offset: 0x00001ad0  Link: 6 (.dynstr)
  000000: Version: 1  File: libc.so.6  Cnt: 3
  0x0060:   Name: GLIBC_2.2.5  Flags: none  Version: 3
  0x0070:   Name: GLIBC_2.3.4  Flags: none  Version: 13
  0x00e0:   Name: GLIBC_2.17  Flags: none  Version: 11
  0x0020: Version: 1  File: ld-linux-x86-64.so.2  Cnt: 1
  0x00f0:   Name: GLIBC_2.3  Flags: none  Version: 4
"""

OBJDUMP_T = (
    "\n_core.abi3.so:     file format elf64-x86-64\n\nDYNAMIC SYMBOL TABLE:\n"
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.14) memcpy\n"
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.3)  __tls_get_addr\n"
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.17) clock_gettime\n"
    "0000000000000000  w   D  *UND*\t0000000000000000              __cxa_thread_atexit_impl\n"
    "0000000000a08300 g    DF .text\t000000000000000d  Base        PyInit__core\n"
)


def test_needed_libraries_are_read_in_order() -> None:
    assert pc.parse_needed(READELF_D) == ["libm.so.6", "libc.so.6", "ld-linux-x86-64.so.2"]


def test_allowed_libraries_pass() -> None:
    assert pc.library_problems(pc.parse_needed(READELF_D)) == []


@pytest.mark.parametrize("library", ["libssl.so.3", "libcrypto.so.1.1", "libssl.so.10"])
def test_openssl_is_refused_by_name(library: str) -> None:
    (problem,) = pc.library_problems(["libc.so.6", library])
    assert problem.startswith(f"links {library} (OpenSSL)") and "rustls" in problem


def test_other_system_libraries_are_refused_by_name() -> None:
    problems = pc.library_problems(["libc.so.6", "libpq.so.5", "libsqlite3.so.0"])
    assert [p.split()[1].rstrip(",") for p in problems] == ["libpq.so.5", "libsqlite3.so.0"]
    assert all("manylinux_2_17" in p for p in problems)


def test_version_needs_come_from_the_needs_section_only() -> None:
    assert pc.parse_version_needs(READELF_V) == [
        ("libc.so.6", "GLIBC_2.2.5"),
        ("libc.so.6", "GLIBC_2.3.4"),
        ("libc.so.6", "GLIBC_2.17"),
        ("ld-linux-x86-64.so.2", "GLIBC_2.3"),
    ]


def test_glibc_up_to_2_17_passes() -> None:
    assert pc.symbol_version_problems(pc.parse_version_needs(READELF_V)) == []
    # Numeric, not string, order: 2.3.4 and 2.10 are older than 2.17.
    pairs = [
        ("libc.so.6", "GLIBC_2.10"),
        ("libc.so.6", "GLIBC_2.3.4"),
        ("libstdc++.so.6", "CXXABI_TM_1"),
    ]
    assert pc.symbol_version_problems(pairs) == []


def test_newer_symbol_versions_are_refused_with_the_library() -> None:
    problems = pc.symbol_version_problems(
        [
            ("libc.so.6", "GLIBC_2.17"),
            ("libc.so.6", "GLIBC_2.28"),
            ("libc.so.6", "GLIBC_2.18"),
            ("libm.so.6", "GLIBC_2.29"),
            ("libstdc++.so.6", "GLIBCXX_3.4.20"),
            ("libc.so.6", "GLIBC_PRIVATE"),
        ]
    )
    assert len(problems) == 4, problems
    assert problems[0].startswith("needs symbol version GLIBC_PRIVATE of libc.so.6")
    assert problems[1].startswith(
        "needs GLIBC_2.18, GLIBC_2.28 of libc.so.6, newer than GLIBC_2.17"
    )
    assert problems[2].startswith("needs GLIBC_2.29 of libm.so.6")
    assert problems[3].startswith(
        "needs GLIBCXX_3.4.20 of libstdc++.so.6, newer than GLIBCXX_3.4.19"
    )


def test_dynamic_symbols_are_parsed() -> None:
    symbols = {s["name"]: s for s in pc.parse_dynamic_symbols(OBJDUMP_T)}
    assert set(symbols) == {
        "memcpy",
        "__tls_get_addr",
        "clock_gettime",
        "__cxa_thread_atexit_impl",
        "PyInit__core",
    }
    assert symbols["memcpy"] == {
        "name": "memcpy",
        "version": "GLIBC_2.14",
        "undefined": True,
        "weak": False,
    }
    assert (
        symbols["__cxa_thread_atexit_impl"]["weak"]
        and symbols["__cxa_thread_atexit_impl"]["version"] == ""
    )
    assert not symbols["PyInit__core"]["undefined"]
    newest = pc.newest_versions(symbols.values())
    assert newest == {"GLIBC": ((2, 17), ["clock_gettime"])}


def test_weak_references_to_forbidden_symbols_pass_strong_ones_do_not() -> None:
    symbols = pc.parse_dynamic_symbols(OBJDUMP_T)
    assert pc.symbol_problems(symbols) == []  # Rust's std looks it up weakly
    strong = OBJDUMP_T.replace("  w   D  *UND*", "      DF *UND*")
    (problem,) = pc.symbol_problems(pc.parse_dynamic_symbols(strong))
    assert "__cxa_thread_atexit_impl" in problem


def test_openssl_symbols_are_refused() -> None:
    with_ssl = OBJDUMP_T + (
        "0000000000000000      DF *UND*\t0000000000000000 (OPENSSL_3.0.0) SSL_CTX_new\n"
        "0000000000000000      DF *UND*\t0000000000000000 (OPENSSL_3.0.0) EVP_DigestSign\n"
    )
    (problem,) = pc.symbol_problems(pc.parse_dynamic_symbols(with_ssl))
    assert problem.startswith("has 2 OpenSSL symbols (EVP_DigestSign, SSL_CTX_new")


def test_openssl_banner_is_recognised_and_ring_credits_are_not() -> None:
    assert pc.OPENSSL_BANNER.search(b"\0OpenSSL 3.0.2 15 Mar 2022\0")
    assert pc.OPENSSL_BANNER.search(b"\0OpenSSL 1.1.1w  11 Sep 2023\0")
    # ring's assembly carries this credit; it is not OpenSSL being linked.
    assert not pc.OPENSSL_BANNER.search(b"GHASH for x86_64, CRYPTOGAMS by <appro@openssl.org>")


def test_the_version_is_read_from_cargo_toml() -> None:
    text = (REPO / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    assert pc.cargo_version() == re.search(r'^version = "([^"]+)"', package, re.M).group(1)  # type: ignore[union-attr]
    # pyproject.toml must not carry a second copy of it.
    assert re.search(r'dynamic = \["version"\]', (REPO / "pyproject.toml").read_text())
    assert not re.search(r"^version\s*=", (REPO / "pyproject.toml").read_text(), re.M)


def test_an_install_that_moves_another_package_is_refused() -> None:
    pc.installed_only_sluicegate("...\nSuccessfully installed sluicegate-0.1.0\n", "0.1.0", "here")
    with pytest.raises(
        pc.CheckFailed, match=r"pip installed \['pendulum-3.1.0', 'sluicegate-0.1.0'\]"
    ):
        pc.installed_only_sluicegate(
            "Successfully installed pendulum-3.1.0 sluicegate-0.1.0\n", "0.1.0", "Airflow 3"
        )
    with pytest.raises(pc.CheckFailed, match="pip installed nothing"):
        pc.installed_only_sluicegate("Requirement already satisfied: sluicegate\n", "0.1.0", "here")


def test_the_quickstart_counts_are_read_per_run() -> None:
    out = (
        "Run 1: the first sync sends every row\n"
        "run 1 of sync 1 (hubspot_contacts): completed\n"
        "  source rows 10000  changed 10000  invalid 0  sent 10000  accepted 10000  rejected 0\n"
        "  the emulator has accepted 10000 records in all\n\n"
        "Run 2: nothing changed, nothing is sent\n"
        "run 2 of sync 1 (hubspot_contacts): failed\n"
        "  source rows 10000  changed 0  invalid 0  sent 0  accepted 0  rejected 0\n"
        "  the emulator has accepted 10000 records in all\n"
    )
    assert pc.COUNTS.findall(out) == [
        ("1", "completed", "10000", "10000", "0", "10000", "10000", "0", "10000"),
        ("2", "failed", "10000", "0", "0", "0", "0", "0", "10000"),
    ]
