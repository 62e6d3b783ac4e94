#!/usr/bin/env python3
"""Checks of the release artifacts that scripts/package.sh builds into dist/.

    package_check.py dist DIST      the wheel and the sdist in DIST: name, tags and metadata,
                                    contents, and the extension's ELF (shared libraries, glibc
                                    symbol versions, no OpenSSL)
    package_check.py install DIST   the packaging test: the wheel installed into fresh virtual
                                    environments on CPython 3.10, 3.11, 3.12 and 3.13 (import,
                                    versions, `sluicegate quickstart`); on 3.12 with Airflow 3
                                    installed first, as an Astronomer image has it, `dag.test()`
                                    of dags/example_sync.py; and the sdist built into a wheel by
                                    pip, installed and run

Everything is run from a scratch directory with `python -I`, so the source tree is never on
sys.path: what is tested is what was installed. Runs on CPython 3.10+ with the standard library
only; needs `readelf` and `objdump` (binutils) for the ELF checks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from email.parser import Parser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sluicegate"

# The wheel: one per platform, for every CPython from 3.10 (abi3), portable to glibc 2.17.
WHEEL_TAG = "cp310-abi3-manylinux_2_17_x86_64"
EXTENSION = "sluicegate/_core.abi3.so"

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# Astronomer Runtime 3.x images run Airflow 3 on CPython 3.12 by default.
AIRFLOW_PYTHON = "3.12"
AIRFLOW_REQUIREMENTS = ROOT / "requirements" / "airflow3-py311.txt"
EXAMPLE_DAG = ROOT / "dags" / "example_sync.py"
EXAMPLE_DAG_ID = "sluicegate_example_sync"
SDIST_PYTHON = "3.11"

# `sluicegate quickstart` (src/cli/quickstart.rs): a 10,000-row table; the demo changes every
# 100th row before its third run.
QUICKSTART_ROWS = 10_000
QUICKSTART_CHANGED = 100

# --------------------------------------------------------------------------- manylinux_2_17 policy
# PEP 599 (manylinux2014 = manylinux_2_17), x86_64, as auditwheel's policy states it.
ALLOWED_LIBRARIES = frozenset(
    {
        "libgcc_s.so.1", "libstdc++.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libc.so.6",
        "libnsl.so.1", "libutil.so.1", "libpthread.so.0", "libresolv.so.2", "libX11.so.6",
        "libXext.so.6", "libXrender.so.1", "libICE.so.6", "libSM.so.6", "libGL.so.1",
        "libgobject-2.0.so.0", "libgthread-2.0.so.0", "libglib-2.0.so.0", "libanl.so.1",
        "libatomic.so.1", "libexpat.so.1", "libz.so.1",
        # glibc's own dynamic loader: part of glibc, present wherever libc.so.6 is.
        "ld-linux-x86-64.so.2",
    }
)  # fmt: skip
# Newest symbol version allowed per version namespace; GLIBC_2.17 is the point of the tag.
MAX_SYMBOL_VERSIONS: dict[str, tuple[int, ...]] = {
    "GLIBC": (2, 17),
    "GCC": (4, 8, 0),
    "GLIBCXX": (3, 4, 19),
    "CXXABI": (1, 3, 7),
    "ZLIB": (1, 2, 5, 2),
}
OTHER_ALLOWED_VERSIONS = frozenset({"CXXABI_TM_1"})
# Symbols of glibc 2.17's libraries that the policy forbids anyway (newer than their version).
FORBIDDEN_SYMBOLS = frozenset(
    {
        "__cxa_thread_atexit_impl", "__issignaling", "__issignalingf", "__issignalingl",
        "pthread_getattr_default_np", "pthread_setattr_default_np",
    }
)  # fmt: skip
OPENSSL_LIBRARIES = re.compile(r"^lib(ssl|crypto)\.so")
OPENSSL_SYMBOL = re.compile(
    r"^(SSL_|SSLv|TLS_method|TLSv|OPENSSL_|OpenSSL_|CRYPTO_|EVP_|ERR_get_error)"
)
# The banner OpenSSL compiles into itself ("OpenSSL 3.0.2 15 Mar 2022"); a static copy carries it.
OPENSSL_BANNER = re.compile(rb"OpenSSL \d+\.\d+\.\d+[a-z]? +\d+ [A-Z][a-z]{2} \d{4}")


class CheckFailed(Exception):
    """A check did not pass; the message says what, where, and what to do."""


def fail(message: str) -> None:
    raise CheckFailed(message)


def say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- ELF checks (pure)


def parse_needed(readelf_dynamic: str) -> list[str]:
    """The NEEDED entries of `readelf -d` output, in order."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf_dynamic)


def parse_version_needs(readelf_versions: str) -> list[tuple[str, str]]:
    """(library, version) pairs from the '.gnu.version_r' part of `readelf -V` output."""
    pairs: list[tuple[str, str]] = []
    in_needs = False
    library = ""
    for line in readelf_versions.splitlines():
        if "section '" in line:
            in_needs = "'.gnu.version_r'" in line
            continue
        if not in_needs:
            continue
        file_match = re.search(r"\bFile: (\S+)", line)
        if file_match:
            library = file_match.group(1)
            continue
        name_match = re.search(r"\bName: (\S+)", line)
        if name_match:
            pairs.append((library, name_match.group(1)))
    return pairs


def parse_dynamic_symbols(objdump_t: str) -> list[dict[str, Any]]:
    """The dynamic symbols of `objdump -T` output: name, version, undefined, weak."""
    symbols = []
    for line in objdump_t.splitlines():
        if "\t" not in line or not re.match(r"^[0-9a-f]{8,16} ", line):
            continue
        left, right = line.split("\t", 1)
        address_and_flags, _, section = left.rpartition(" ")
        flags = address_and_flags.split(" ", 1)[1] if " " in address_and_flags else ""
        fields = right.split()
        if len(fields) < 2:
            continue
        version = fields[1].strip("()") if len(fields) >= 3 else ""
        symbols.append(
            {
                "name": fields[-1],
                "version": version,
                "undefined": section == "*UND*",
                "weak": "w" in flags,
            }
        )
    return symbols


def version_key(version: str) -> tuple[str, tuple[int, ...]] | None:
    """'GLIBC_2.17' -> ('GLIBC', (2, 17)); None for names that are not NAMESPACE_x.y[.z]."""
    match = re.fullmatch(r"([A-Z]+)_(\d+(?:\.\d+)*)", version)
    if not match:
        return None
    return match.group(1), tuple(int(part) for part in match.group(2).split("."))


def library_problems(needed: Iterable[str]) -> list[str]:
    problems = []
    for library in needed:
        if OPENSSL_LIBRARIES.match(library):
            problems.append(
                f"links {library} (OpenSSL): the TLS stack must be rustls, with nothing to install "
                "at run time; find what enables native-tls or openssl with "
                "`cargo tree -e features -i openssl-sys --features python`"
            )
        elif library not in ALLOWED_LIBRARIES:
            problems.append(
                f"links {library}, which is not in the manylinux_2_17 library list; a system "
                "library the user would have to install. Link it statically or drop it"
            )
    return problems


def symbol_version_problems(pairs: Iterable[tuple[str, str]]) -> list[str]:
    problems = []
    too_new: dict[tuple[str, str], list[str]] = {}
    for library, version in pairs:
        if version in OTHER_ALLOWED_VERSIONS:
            continue
        key = version_key(version)
        if key is None or key[0] not in MAX_SYMBOL_VERSIONS:
            problems.append(
                f"needs symbol version {version} of {library}, outside the manylinux_2_17 policy"
            )
        elif key[1] > MAX_SYMBOL_VERSIONS[key[0]]:
            too_new.setdefault((library, key[0]), []).append(version)
    for (library, namespace), versions in too_new.items():
        allowed = f"{namespace}_{'.'.join(map(str, MAX_SYMBOL_VERSIONS[namespace]))}"
        problems.append(
            f"needs {', '.join(sorted(versions, key=version_key))} of {library}, newer than "
            f"{allowed}: the wheel would not load on a manylinux_2_17 system (build it with "
            "`--zig --compatibility manylinux_2_17`, as scripts/package.sh does)"
        )
    return problems


def symbol_problems(symbols: Iterable[dict[str, Any]]) -> list[str]:
    problems = []
    openssl = []
    for symbol in symbols:
        name = symbol["name"]
        if symbol["undefined"] and not symbol["weak"] and name in FORBIDDEN_SYMBOLS:
            problems.append(f"references {name}, which the manylinux_2_17 policy forbids")
        if OPENSSL_SYMBOL.match(name):
            openssl.append(name)
    if openssl:
        shown = ", ".join(sorted(set(openssl))[:5])
        problems.append(
            f"has {len(openssl)} OpenSSL symbols ({shown}, ...): OpenSSL is linked in; "
            "TLS must be rustls"
        )
    return problems


def newest_versions(
    symbols: Iterable[dict[str, Any]],
) -> dict[str, tuple[tuple[int, ...], list[str]]]:
    """Per namespace, the newest version the undefined symbols need and which symbols need it."""
    newest: dict[str, tuple[tuple[int, ...], list[str]]] = {}
    for symbol in symbols:
        key = version_key(symbol["version"]) if symbol["undefined"] else None
        if key is None:
            continue
        namespace, number = key
        current = newest.get(namespace)
        if current is None or number > current[0]:
            newest[namespace] = (number, [symbol["name"]])
        elif number == current[0]:
            current[1].append(symbol["name"])
    return newest


# --------------------------------------------------------------------------- helpers


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        fail(f"`{name}` is not on PATH; install binutils (apt-get install binutils) and run again")
    return str(path)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    cmd: Sequence[str | Path],
    what: str,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise CheckFailed(f"{what}: no answer after {timeout:.0f} s: {' '.join(args)}") from err
    if check and proc.returncode != 0:
        fail(
            f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n"
            f"--- stdout (end)\n{tail(proc.stdout)}\n--- stderr (end)\n{tail(proc.stderr)}"
        )
    return proc


def cargo_version() -> str:
    """The version in Cargo.toml's [package] table: the one place the version is written."""
    text = (ROOT / "Cargo.toml").read_text()
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    version = re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M) if package else None
    if version is None:
        fail(f"no version in the [package] table of {ROOT / 'Cargo.toml'}")
    assert version is not None
    return version.group(1)


def find_one(dist: Path, pattern: str, what: str) -> Path:
    found = sorted(dist.glob(pattern))
    if not found:
        fail(f"no {what} ({pattern}) in {dist}: run scripts/package.sh to build it")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        fail(f"more than one {what} in {dist} ({names}): remove the stale ones and rebuild")
    return found[0]


def metadata_of(text: str) -> dict[str, list[str]]:
    message = Parser().parsestr(text)
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return fields


# --------------------------------------------------------------------------- `dist`: static checks


def check_wheel(wheel: Path, version: str, scratch: Path) -> None:
    say(f"wheel {wheel.name}")
    match = re.fullmatch(r"([^-]+)-([^-]+)-([^-]+)-([^-]+)-([^-]+)\.whl", wheel.name)
    if not match or match.group(1) != PACKAGE:
        fail(f"{wheel.name} is not a {PACKAGE} wheel file name")
    assert match is not None
    _, file_version, python_tag, abi_tag, platform_tags = match.groups()
    if file_version != version:
        fail(f"{wheel.name} is version {file_version} but Cargo.toml says {version}: rebuild dist/")
    tags = {f"{p}-{a}-{plat}" for p in python_tag.split(".") for a in abi_tag.split(".")
            for plat in platform_tags.split(".")}  # fmt: skip

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = f"{PACKAGE}-{version}.dist-info"
        wheel_file = zf.read(f"{info}/WHEEL").decode()
        metadata = metadata_of(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        libraries = [n for n in names if re.search(r"\.so(\.|$)", n)]
        if libraries != [EXTENSION]:
            fail(f"{wheel.name} holds the shared objects {libraries}; expected only {EXTENSION}")
        extension = scratch / "_core.abi3.so"
        extension.write_bytes(zf.read(EXTENSION))

    declared = set(re.findall(r"^Tag: (\S+)$", wheel_file, re.M))
    if WHEEL_TAG not in tags or WHEEL_TAG not in declared:
        fail(
            f"{wheel.name}: tags {sorted(tags)} / WHEEL {sorted(declared)} "
            f"do not include {WHEEL_TAG}"
        )
    say(f"  tags: {', '.join(sorted(declared))}")
    if metadata.get("Version") != [version]:
        fail(f"{wheel.name}: METADATA Version {metadata.get('Version')} is not {version}")
    if metadata.get("Requires-Python") != [">=3.10"]:
        fail(f"{wheel.name}: Requires-Python is {metadata.get('Requires-Python')}, expected >=3.10")
    unconditional = [r for r in metadata.get("Requires-Dist", []) if "extra ==" not in r]
    if unconditional:
        fail(f"{wheel.name} requires {unconditional}; the engine wheel must have no dependencies")
    if not re.search(r"^sluicegate\s*=\s*sluicegate\.__main__:main$", entry_points, re.M):
        fail(f"{wheel.name}: no `sluicegate` console script in entry_points.txt")
    if "[apache_airflow_provider]" not in entry_points:
        fail(f"{wheel.name}: no apache_airflow_provider entry point (Airflow would not list it)")
    say(f"  metadata: version {version}, Requires-Python >=3.10, no dependencies, console script")
    check_extension(extension)


def check_extension(so: Path) -> None:
    so = so.resolve()
    readelf, objdump = tool("readelf"), tool("objdump")
    header = run([readelf, "-h", so], "readelf -h", cwd=so.parent).stdout
    if "ELF64" not in header or "X86-64" not in header:
        fail(f"{EXTENSION} is not an x86-64 ELF64 shared object:\n{header}")
    needed = parse_needed(run([readelf, "-d", so], "readelf -d", cwd=so.parent).stdout)
    if "libc.so.6" not in needed:
        fail(
            f"{EXTENSION} does not link libc.so.6 (NEEDED: {needed}); readelf output not understood"
        )
    pairs = parse_version_needs(
        run([readelf, "-V", "--wide", so], "readelf -V", cwd=so.parent).stdout
    )
    symbols = parse_dynamic_symbols(run([objdump, "-T", so], "objdump -T", cwd=so.parent).stdout)
    if not pairs or not any(s["undefined"] and s["version"] for s in symbols):
        fail(f"no symbol versions read from {EXTENSION}; readelf/objdump output not understood")
    problems = library_problems(needed) + symbol_version_problems(pairs) + symbol_problems(symbols)
    if OPENSSL_BANNER.search(so.read_bytes()):
        problems.append("holds an OpenSSL version banner: OpenSSL is linked in statically")
    if problems:
        fail(f"{EXTENSION} is not portable to manylinux_2_17:\n  " + "\n  ".join(problems))
    say(f"  NEEDED: {' '.join(needed)} (all in the manylinux_2_17 list)")
    for namespace, (number, names) in sorted(newest_versions(symbols).items()):
        shown = ", ".join(sorted(set(names))[:6])
        limit = ".".join(map(str, MAX_SYMBOL_VERSIONS.get(namespace, ())))
        say(f"  newest {namespace} version needed: {'.'.join(map(str, number))} "
            f"(limit {limit}), by {shown}")  # fmt: skip
    needed_versions = sorted({v for _, v in pairs}, key=lambda v: version_key(v) or ("", ()))
    say(f"  version needs (readelf -V): {' '.join(needed_versions)}")
    say("  OpenSSL: no libssl/libcrypto, no OpenSSL symbols, no OpenSSL banner")


def check_no_openssl_in_build_graph() -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        fail("cargo is not on PATH; install Rust (https://rustup.rs) and run again")
    for crate in ("openssl-sys", "openssl", "native-tls"):
        proc = run(
            [cargo, "tree", "--locked", "-e", "normal,build", "--features", "python",
             "--target", "x86_64-unknown-linux-gnu", "-i", crate],
            f"cargo tree -i {crate}", cwd=ROOT, check=False, timeout=300,
        )  # fmt: skip
        if proc.returncode == 0:
            fail(
                f"{crate} is in the extension's dependency graph; TLS must be rustls:\n"
                f"{tail(proc.stdout)}"
            )
        if "did not match any packages" not in proc.stderr:
            fail(f"`cargo tree -i {crate}` failed unexpectedly:\n{tail(proc.stderr)}")
    say("  dependency graph (cargo tree): no openssl-sys, openssl or native-tls")


def check_sdist(sdist: Path, version: str) -> None:
    say(f"sdist {sdist.name}")
    if sdist.name != f"{PACKAGE}-{version}.tar.gz":
        fail(f"{sdist.name}: expected {PACKAGE}-{version}.tar.gz (Cargo.toml version {version})")
    top = f"{PACKAGE}-{version}/"
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        pkg_info = tf.extractfile(top + "PKG-INFO")
        assert pkg_info is not None
        metadata = metadata_of(pkg_info.read().decode())
    outside = [n for n in names if not n.startswith(top)]
    if outside:
        fail(f"{sdist.name} has entries outside {top}: {outside[:5]}")
    files = {n[len(top) :] for n in names}
    required = [
        "Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "src/lib.rs",
        "python/sluicegate/__init__.py",
    ]
    # Files the crate reads at compile time (include_str!) must travel with it.
    for source in (ROOT / "src").rglob("*.rs"):
        for included in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', source.read_text()):
            path = (source.parent / included).resolve()
            required.append(str(path.relative_to(ROOT)))
    missing = [f for f in required if f not in files]
    if missing:
        fail(f"{sdist.name} lacks {missing}: the sdist would not build; see the include/exclude "
             "rules of `cargo package --list` and [tool.maturin]")  # fmt: skip
    unwanted = [f for f in files if re.search(r"(^|/)(target|\.venv[^/]*|fuzz)/|\.so$|\.whl$", f)]
    if unwanted:
        fail(f"{sdist.name} holds build output or the fuzz corpus: {sorted(unwanted)[:8]}")
    if metadata.get("Version") != [version]:
        fail(f"{sdist.name}: PKG-INFO Version {metadata.get('Version')} is not {version}")
    size = sdist.stat().st_size
    say(
        f"  {len(files)} files, {size / 1e6:.1f} MB; Cargo.lock, sources and include_str! "
        "files present"
    )


def command_dist(args: argparse.Namespace) -> None:
    dist = Path(args.dist).resolve()
    version = cargo_version()
    wheel = find_one(dist, f"{PACKAGE}-*.whl", "wheel")
    sdist = find_one(dist, f"{PACKAGE}-*.tar.gz", "sdist")
    with tempfile.TemporaryDirectory(prefix="sluicegate-dist-") as scratch:
        check_wheel(wheel, version, Path(scratch))
    check_no_openssl_in_build_graph()
    check_sdist(sdist, version)


# --------------------------------------------------------------------------- `install`

PROBE = r"""
import json, sys
from importlib import metadata
import sluicegate
from sluicegate import _core
provider = [ep for ep in metadata.entry_points(group="apache_airflow_provider")
            if ep.dist is not None and ep.dist.name == "sluicegate"]
scripts = [ep.value for ep in metadata.entry_points(group="console_scripts", name="sluicegate")]
info = provider[0].load()() if len(provider) == 1 else None
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "prefix": sys.prefix,
    "path": sys.path,
    "file": sluicegate.__file__,
    "core_file": _core.__file__,
    "version": sluicegate.__version__,
    "core_version": _core.__version__,
    "dist_version": metadata.version("sluicegate"),
    "scripts": scripts,
    "provider": None if info is None else [info["package-name"], info["versions"]],
}))
"""


def pyenv_roots() -> list[Path]:
    roots = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            roots.append(Path(proc.stdout.strip()))
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    roots.append(Path.home() / ".pyenv")
    return list(dict.fromkeys(roots))


def find_python(minor: str) -> Path:
    """CPython `minor` (e.g. '3.12'): the newest pyenv install of it, else python3.X on PATH."""
    looked = []
    candidates: list[Path] = []
    for root in pyenv_roots():
        looked.append(str(root / "versions" / f"{minor}.*"))
        found = [p / "bin" / f"python{minor}" for p in (root / "versions").glob(f"{minor}.*")]
        found = [p for p in found if re.fullmatch(rf"{re.escape(minor)}\.\d+", p.parents[1].name)]
        candidates += sorted(
            found, key=lambda p: int(p.parents[1].name.rsplit(".", 1)[1]), reverse=True
        )
    on_path = shutil.which(f"python{minor}")
    looked.append(f"python{minor} on PATH")
    if on_path:
        candidates.append(Path(on_path))
    for python in candidates:
        if not os.access(python, os.X_OK):
            continue
        proc = subprocess.run(
            [python, "-c", "import sys, platform; print(platform.python_implementation(), "
             "'%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.stdout.split() == ["CPython", minor]:
            return python
    fail(f"CPython {minor} not found (looked in {', '.join(looked)}); install it with "
         f"`pyenv install {minor}` and run again")  # fmt: skip
    raise AssertionError  # unreachable


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would change what Python or sluicegate load."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
            "PIP_REQUIRE_VIRTUALENV", "PIP_NO_INDEX", "PIP_FIND_LINKS",
            "MATURIN_PEP517_ARGS")  # fmt: skip
    env = {
        k: v for k, v in os.environ.items()
        if k not in drop and not k.startswith(("SLUICEGATE_", "AIRFLOW_", "AIRFLOW__"))
    }  # fmt: skip
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


class Venv:
    def __init__(self, path: Path, python: Path, work: Path) -> None:
        self.path = path
        self.work = work
        run(
            [python, "-m", "venv", path],
            f"creating the virtual environment {path}",
            cwd=work,
            env=clean_env(),
        )
        self.python = path / "bin" / "python"
        self.cli = path / "bin" / PACKAGE

    def pip(
        self, *args: str | Path, what: str, timeout: float = 900, env: dict[str, str] | None = None
    ) -> str:
        cmd = [self.python, "-m", "pip", *args]
        return run(cmd, what, cwd=self.work, env=env or clean_env(), timeout=timeout).stdout

    def freeze(self) -> set[str]:
        out = self.pip("freeze", "--all", what="pip freeze")
        return {line.strip() for line in out.splitlines() if line.strip()}

    def sluicegate(
        self, *args: str | Path, what: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> str:
        return run(
            [self.cli, *args], what, cwd=self.work, env=env or clean_env(), timeout=timeout
        ).stdout


def installed_only_sluicegate(pip_output: str, version: str, where: str) -> None:
    lines = [line for line in pip_output.splitlines() if line.startswith("Successfully installed ")]
    installed = lines[-1].split()[2:] if lines else []
    if installed != [f"{PACKAGE}-{version}"]:
        fail(f"{where}: pip installed {installed or 'nothing'}; "
             f"expected exactly {PACKAGE}-{version}\n"
             f"{tail(pip_output)}")  # fmt: skip


def check_probe(venv: Venv, minor: str, version: str, extension_name: str) -> dict[str, Any]:
    out = run([venv.python, "-I", "-c", PROBE], f"importing {PACKAGE} on {minor}", cwd=venv.work,
              env=clean_env()).stdout  # fmt: skip
    probe = json.loads(out.strip().splitlines()[-1])
    where = f"CPython {minor} ({venv.path})"
    if probe["python"] != [int(x) for x in minor.split(".")]:
        fail(f"{where}: the interpreter is {probe['python']}, not {minor}")
    root = venv.path.resolve()
    for key in ("file", "core_file"):
        if not Path(probe[key]).resolve().is_relative_to(root):
            fail(f"{where}: {PACKAGE} was imported from {probe[key]}, not from the virtual "
                 f"environment (sys.path {probe['path']})")  # fmt: skip
    if Path(probe["core_file"]).name != extension_name:
        fail(f"{where}: the extension is {probe['core_file']}, expected {extension_name}")
    versions = {k: probe[k] for k in ("version", "core_version", "dist_version")}
    if set(versions.values()) != {version}:
        fail(f"{where}: versions disagree with Cargo.toml's {version}: {versions}")
    if probe["scripts"] != ["sluicegate.__main__:main"]:
        fail(f"{where}: console script {probe['scripts']}, expected sluicegate.__main__:main")
    if probe["provider"] != [PACKAGE, [version]]:
        fail(f"{where}: the Airflow provider entry point gives {probe['provider']}")
    cli = venv.sluicegate("--version", what=f"`sluicegate --version` on {minor}").split()
    if cli != [PACKAGE, version]:
        fail(
            f"{where}: `sluicegate --version` prints {' '.join(cli)!r}, "
            f"expected '{PACKAGE} {version}'"
        )
    return probe


COUNTS = re.compile(
    r"^run (\d+) of sync 1 \(hubspot_contacts\): (\S+)\n"
    r"  source rows (\S+)  changed (\S+)  invalid (\S+)  "
    r"sent (\S+)  accepted (\S+)  rejected (\S+)\n"
    r"  the emulator has accepted (\d+) records in all$",
    re.M,
)


def check_quickstart(venv: Venv, directory: Path, where: str) -> str:
    """`sluicegate quickstart DIR`: the numbers it prints, the state store and the warehouse."""
    out = venv.sluicegate("quickstart", directory, what=f"`sluicegate quickstart` on {where}")
    rows, changed = QUICKSTART_ROWS, QUICKSTART_CHANGED
    # run id, status, source rows, changed, invalid, sent, accepted, rejected, emulator total
    want = [
        ("1", "completed", rows, rows, 0, rows, rows, 0, rows),
        ("2", "completed", rows, 0, 0, 0, 0, 0, rows),
        ("3", "completed", rows, changed, 0, changed, changed, 0, rows + changed),
    ]
    got = [
        (m[0], m[1], *(int(x) if x.isdigit() else x for x in m[2:])) for m in COUNTS.findall(out)
    ]
    if got != want:
        fail(
            f"{where}: `sluicegate quickstart` printed runs {got}, expected {want}\n{tail(out, 30)}"
        )
    for line in (
        f"Changed {changed} rows (1 %)",
        f"Demo complete: {rows} rows, then 0, then {changed}.",
    ):
        if line not in out:
            fail(f"{where}: `sluicegate quickstart` did not print {line!r}\n{tail(out, 30)}")
    # What the state store says, through the CLI: newest first, rows and sent per run.
    runs = venv.sluicegate(
        "--project", directory / "sluicegate.yml", "runs", what=f"`sluicegate runs` on {where}"
    )
    # Columns: run, sync, name, status, created, rows, sent, failed, invalid.
    table = [line.split() for line in runs.splitlines()[1:] if line.strip()]
    table = [[*r[:4], *r[5:9]] for r in table]
    want_table = [
        [str(run_id), "1", "hubspot_contacts", "completed", str(rows), str(sent), "0", "0"]
        for run_id, sent in ((3, changed), (2, 0), (1, rows))
    ]
    if table != want_table:
        fail(f"{where}: `sluicegate runs` lists {table}, expected {want_table}\n{runs}")
    with sqlite3.connect(directory / "warehouse.db") as db:
        count = db.execute("SELECT count(*) FROM pub_hubspot_contacts").fetchone()[0]
    if count != rows:
        fail(f"{where}: the quickstart warehouse has {count} rows, expected {rows}")
    return f"quickstart {rows} -> 0 -> {changed}"


class Emulator:
    """`sluicegate emulate webhook --port 0`; its URL is the first line it prints."""

    def __init__(self, venv: Venv, log: Path) -> None:
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.log = log
        self.proc = subprocess.Popen(
            [str(venv.cli), "emulate", "webhook", "--port", "0"],
            cwd=venv.work, env=clean_env(), stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        first: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if not first:
                    first.append(line.strip())
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60) or not first or not re.fullmatch(r"https?://\S+", first[0]):
            self.stop()
            fail(
                f"the webhook emulator printed no URL ({first}); stderr: {log.read_text()[-2000:]}"
            )
        self.url = first[0]

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(
            self.url + "/_emulator/received?records=false", timeout=30
        ) as resp:
            return json.loads(resp.read())["stats"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def check_airflow(work: Path, wheel: Path, version: str, timings: dict[str, float]) -> None:
    """Airflow 3 first, then sluicegate from requirements.txt (as an Astronomer image builds),
    then dag.test() of the example DAG against the webhook emulator."""
    where = f"Airflow 3 on CPython {AIRFLOW_PYTHON}"
    started = time.monotonic()
    venv = Venv(work / "venv-airflow", find_python(AIRFLOW_PYTHON), work)
    venv.pip(
        "install",
        "-r",
        AIRFLOW_REQUIREMENTS,
        what=f"installing {AIRFLOW_REQUIREMENTS.name}",
        timeout=1800,
    )
    timings["Airflow 3 install"] = time.monotonic() - started
    before = venv.freeze()

    started = time.monotonic()
    wheelhouse = work / "wheelhouse"
    wheelhouse.mkdir()
    shutil.copy(wheel, wheelhouse / wheel.name)
    requirements = work / "requirements.txt"
    requirements.write_text(f"{PACKAGE}[airflow]=={version}\n")
    out = venv.pip("install", "--no-index", "--find-links", wheelhouse, "-r", requirements,
                   what=f"{where}: pip install -r requirements.txt")  # fmt: skip
    installed_only_sluicegate(out, version, where)
    changed = venv.freeze() ^ before
    if changed != {f"{PACKAGE}=={version}"}:
        fail(
            f"{where}: installing {PACKAGE} changed {sorted(changed)}; "
            f"only {PACKAGE}=={version} may change"
        )
    venv.pip("check", what=f"{where}: pip check")
    check_probe(venv, AIRFLOW_PYTHON, version, "_core.abi3.so")

    home = work / "airflow-home"
    dags = home / "dags"
    dags.mkdir(parents=True)
    shutil.copy(EXAMPLE_DAG, dags / EXAMPLE_DAG.name)
    project = work / "airflow-project"
    venv.sluicegate(
        "quickstart", project, "--no-demo", what=f"{where}: sluicegate quickstart --no-demo"
    )
    airflow_env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    env = clean_env(**airflow_env)
    run(
        [venv.path / "bin" / "airflow", "db", "migrate"],
        f"{where}: airflow db migrate",
        cwd=work,
        env=env,
    )
    listed = run([venv.path / "bin" / "airflow", "providers", "list", "--output", "json"],
                 f"{where}: airflow providers list", cwd=work, env=env).stdout  # fmt: skip
    providers = {
        p.get("package_name"): p.get("version") for p in json.loads(listed[listed.index("[") :])
    }
    if providers.get(PACKAGE) != version:
        fail(
            f"{where}: `airflow providers list` shows {PACKAGE} as "
            f"{providers.get(PACKAGE)!r}, expected {version}"
        )

    emulator = Emulator(venv, work / "emulator.log")
    try:
        env = clean_env(
            **airflow_env,
            AIRFLOW_CONN_SLUICEGATE_DEFAULT=json.dumps(
                {"conn_type": "sluicegate", "extra": {"project": str(project / "sluicegate.yml")}}
            ),
            SLUICEGATE_WEBHOOK_URL=f"{emulator.url}/contacts",
            SLUICEGATE_POKE_INTERVAL="1",
        )
        run([venv.python, "-I", Path(__file__).resolve(), "_dag-test", "--dags", dags,
             "--project", project / "sluicegate.yml"],
            f"{where}: dag.test() of {EXAMPLE_DAG.name}",
            cwd=work, env=env, timeout=900)  # fmt: skip
        stats = emulator.stats()
        if stats.get("records_accepted") != QUICKSTART_ROWS:
            fail(f"{where}: the emulator accepted {stats.get('records_accepted')} records "
                 "from the DAG "
                 f"run, expected {QUICKSTART_ROWS} (stats {stats})")  # fmt: skip
    finally:
        emulator.stop()
    timings[f"Airflow 3 on {AIRFLOW_PYTHON}: install wheel, db migrate, dag.test()"] = (
        time.monotonic() - started
    )
    say(f"  {where}: only {PACKAGE}-{version} installed, Airflow pins unchanged; provider listed; "
        f"dag.test() of {EXAMPLE_DAG_ID}: success, {QUICKSTART_ROWS} rows delivered")  # fmt: skip


def command_dag_test(args: argparse.Namespace) -> None:
    """Inside the Airflow environment: dag.test() of the example DAG; fails unless it delivered."""
    import airflow

    import sluicegate

    if not Path(sluicegate.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()):
        fail(f"sluicegate was imported from {sluicegate.__file__}, outside {sys.prefix}")
    if not airflow.__version__.startswith("3."):
        fail(f"this is Airflow {airflow.__version__}, expected 3.x")
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=args.dags)
    if bag.import_errors:
        fail(f"the DAG folder does not import: {bag.import_errors}")
    dag = bag.dags[EXAMPLE_DAG_ID]
    dag_run = dag.test()
    with create_session() as session:
        states = {
            ti.task_id: getattr(ti.state, "value", ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }
    states["dag"] = getattr(dag_run.state, "value", dag_run.state)
    want = {"dag": "success", "sync_hubspot_contacts": "success", "wait_for_sync": "success"}
    if states != want:
        fail(f"dag.test() of {EXAMPLE_DAG_ID}: states {states}, expected {want}")
    runs = sluicegate.Engine(args.project).list_runs(1, limit=10)
    if (
        len(runs) != 1
        or runs[0]["status"] != "completed"
        or runs[0]["records_processed"] != QUICKSTART_ROWS
    ):
        summary = [(r["id"], r["status"], r["records_processed"]) for r in runs]
        fail(f"after dag.test() the state store has runs {summary}; expected one completed run "
             f"that sent {QUICKSTART_ROWS} rows")  # fmt: skip
    detail = runs[0]["sync_trigger_reason"]["ui_detail"]
    if f"{EXAMPLE_DAG_ID}.sync_hubspot_contacts" not in detail:
        fail(f"the run was not triggered by the DAG's task: {detail!r}")
    print(json.dumps({"states": states, "run": runs[0]["id"]}))


def check_sdist_build(work: Path, sdist: Path, version: str, profile: str, target: Path) -> str:
    """pip builds the sdist into a wheel (PEP 517, maturin from the index), then it is run.

    The sdist is unpacked here, as pip would, and its files are given the current time: maturin
    stamps sdist members with a fixed date, and cargo, seeing sources older than the crate's
    artifact in a shared target directory, would reuse an earlier build instead of compiling
    them. The build must compile the sdist's own sources; its output says so, and that is checked.
    """
    where = f"the wheel built from {sdist.name}"
    venv = Venv(work / "venv-sdist", find_python(SDIST_PYTHON), work)
    unpacked = work / "sdist-src"
    with tarfile.open(sdist) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(unpacked, filter="data")
        else:  # CPython before 3.10.12 / 3.11.4: the members were checked by check_sdist
            tf.extractall(unpacked)
    source = unpacked / f"{PACKAGE}-{version}"
    for path in source.rglob("*"):
        os.utime(path)
    out_dir = work / "sdist-wheel"
    # The profile and the shared target directory only change how long the build takes: the
    # sources and Cargo.lock are the sdist's (--locked: the lock must be complete).
    env = clean_env(
        CARGO_TARGET_DIR=str(target),
        MATURIN_PEP517_ARGS="--locked" + ("" if profile == "release" else f" --profile {profile}"),
    )
    started = time.monotonic()
    cmd = [venv.python, "-m", "pip", "wheel", "-v", "--no-cache-dir", "--no-deps", "--wheel-dir",
           out_dir, source]  # fmt: skip
    proc = run(cmd, f"pip wheel of the unpacked {sdist.name}", cwd=work, env=env, timeout=3600)
    compiled = dict(
        re.findall(r"^\s*Compiling (\S+) v\S+(?: \(([^)]*)\))?", proc.stdout + proc.stderr, re.M)
    )
    names = " ".join(list(compiled)[:12]) + (" ..." if len(compiled) > 12 else "")
    say(f"  sdist: pip built it in {time.monotonic() - started:.0f} s ({profile} profile, "
        f"CARGO_TARGET_DIR={target}); crates compiled: {len(compiled)} ({names})")  # fmt: skip
    if PACKAGE not in compiled or Path(compiled[PACKAGE]).resolve() != source.resolve():
        fail(f"pip's build did not compile {PACKAGE} from the sdist's sources in {source} "
             f"(compiled: {compiled.get(PACKAGE)!r})\n{tail(proc.stderr)}")  # fmt: skip
    built = find_one(
        out_dir, f"{PACKAGE}-{version}-cp310-abi3-*.whl", f"wheel built from {sdist.name}"
    )
    # maturin leaves a copy in the target directory; it is pip's copy that is tested.
    (target / "wheels" / built.name).unlink(missing_ok=True)
    out = venv.pip("install", "--no-index", built, what=f"installing {built.name}")
    installed_only_sluicegate(out, version, where)
    check_probe(venv, SDIST_PYTHON, version, "_core.abi3.so")
    summary = check_quickstart(venv, work / "quickstart-sdist", where)
    return f"{built.name} ({profile} profile), imports, --version {version}, {summary}"


def command_install(args: argparse.Namespace) -> None:
    dist = Path(args.dist).resolve()
    version = cargo_version()
    wheel = find_one(dist, f"{PACKAGE}-*.whl", "wheel")
    sdist = find_one(dist, f"{PACKAGE}-*.tar.gz", "sdist")
    pythons = {minor: find_python(minor) for minor in PYTHONS}  # all found before any work
    work = Path(tempfile.mkdtemp(prefix="sluicegate-package-test-"))
    timings: dict[str, float] = {}
    ok = False
    try:
        for minor, python in pythons.items():
            started = time.monotonic()
            venv = Venv(work / f"venv-{minor}", python, work)
            out = venv.pip(
                "install", "--no-index", wheel, what=f"installing {wheel.name} on {minor}"
            )
            installed_only_sluicegate(out, version, f"CPython {minor}")
            check_probe(venv, minor, version, "_core.abi3.so")
            summary = check_quickstart(venv, work / f"quickstart-{minor}", f"CPython {minor}")
            timings[f"CPython {minor}: install, import, quickstart"] = time.monotonic() - started
            say(f"  CPython {minor} ({python}): installed without the index, "
                "imports from the venv, "
                f"version {version} everywhere, {summary}")  # fmt: skip
        check_airflow(work, wheel, version, timings)
        if args.sdist_profile != "skip":
            started = time.monotonic()
            summary = check_sdist_build(
                work, sdist, version, args.sdist_profile, Path(args.target_dir)
            )
            timings[f"sdist: pip wheel ({args.sdist_profile}), install, run"] = (
                time.monotonic() - started
            )
            say(f"  sdist: {summary}")
        ok = True
    finally:
        for what, seconds in timings.items():
            say(f"  time: {what}: {seconds:.0f} s")
        if ok or not args.keep_on_failure:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"the scratch directory is left for inspection: {work} (rm -rf it when done)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dist", help="check the wheel and the sdist in DIST")
    p.add_argument("dist")
    p.set_defaults(func=command_dist)
    p = sub.add_parser("install", help="the packaging test")
    p.add_argument("dist")
    p.add_argument(
        "--sdist-profile",
        default="dev",
        choices=["dev", "release", "skip"],
        help="cargo profile of the sdist build (dev reuses the test build's dependencies)",
    )
    p.add_argument(
        "--target-dir",
        default=os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target"),
        help="CARGO_TARGET_DIR for the sdist build",
    )
    p.add_argument(
        "--keep-on-failure", action="store_true", help="leave the scratch directory on failure"
    )
    p.set_defaults(func=command_install)
    p = sub.add_parser("_dag-test", help=argparse.SUPPRESS)
    p.add_argument("--dags", required=True)
    p.add_argument("--project", required=True)
    p.set_defaults(func=command_dag_test)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except CheckFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
