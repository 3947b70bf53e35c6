"""Building the images as an ordinary user: build arguments passed intact and part of the image's
identity, a wheelhouse for the image's Python (not the host's), the torchvision that matches torch,
and the choice of base image."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest


from orchestrator.commands.images import parse_build_args
from orchestrator.containers.client import ImageError
from orchestrator.containers.images import BuildConfig
from orchestrator.containers.wheelhouse import ImagePython, _pip_download, image_torch, requested_packages, torchvision_for
from tests.conftest import leftovers

BOOKWORM = ImagePython(python="3.11", machine="x86_64", glibc="2.36", torch=None, cuda=None)


def test_build_arguments_keep_their_quoted_spaces() -> None:
    args = parse_build_args("SANDBOX_PACKAGES='numpy safetensors' LLM_PACKAGES=\"a b c\" TORCHVISION=1")
    assert args == {"SANDBOX_PACKAGES": "numpy safetensors", "LLM_PACKAGES": "a b c", "TORCHVISION": "1"}
    assert parse_build_args("", ("X=1 2",)) == {"X": "1 2"}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_build_args("numpy")


def test_requested_packages_follow_the_package_arguments() -> None:
    default = requested_packages({})
    assert default[0] == "pip" and default.count("-r") == 2
    cuda = requested_packages({"SANDBOX_PACKAGES": "numpy safetensors"})
    assert cuda[:3] == ["pip", "numpy", "safetensors"] and cuda.count("-r") == 1


def test_torchvision_matches_torch_releases() -> None:
    assert torchvision_for("2.14.1") == "0.29.1" and torchvision_for("2.9.1") == "0.24.1"
    assert torchvision_for("2.5.1") == "0.20.1" and torchvision_for("2.13.0") == "0.28.0"
    with pytest.raises(ImageError):
        torchvision_for("1.13.1")


def test_the_images_torch_decides_torchvision_auto(tmp_path: Path) -> None:
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    assert image_torch(BOOKWORM, tmp_path) == ("2.13.0+cpu", False)  # CPU: PyPI's torchvision does not match
    cuda_base = ImagePython("3.11", "x86_64", "2.35", torch="2.5.1", cuda="12.4")
    assert image_torch(cuda_base, tmp_path) == ("2.5.1", True)


def test_pip_targets_the_images_python_and_platform() -> None:
    flags = BOOKWORM.pip_target()
    assert flags[:3] == ["--only-binary=:all:", "--python-version", "3.11"] and "cp311" in flags
    platforms = [flags[i + 1] for i, f in enumerate(flags) if f == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux2014_x86_64" in platforms
    assert all(p.endswith("x86_64") for p in platforms)
    arm = ImagePython("3.12", "aarch64", "2.31", None, None).pip_target()
    assert "cp312" in arm and "manylinux_2_31_aarch64" in arm


def _python312() -> str:
    for candidate in [shutil.which("python3.12"), *map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))]:
        if candidate and subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return candidate
    pytest.skip("no Python 3.12 with pip on this machine")


def test_a_python_312_host_downloads_the_images_cp311_wheels(tmp_path: Path) -> None:
    """The host's Python is not the image's: from 3.12, the wheelhouse still holds cp311 wheels."""
    _pip_download(_python312(), tmp_path, BOOKWORM, ["markupsafe==3.0.3"])
    (wheel,) = tmp_path.glob("*.whl")
    assert "-cp311-cp311-" in wheel.name and "x86_64" in wheel.name, wheel.name


@pytest.mark.docker
def test_build_arguments_and_base_image_are_part_of_the_images_identity(docker_client) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.containers.base import choose_base_image

    base = choose_base_image(docker_client, None, say=lambda _: None)  # what `make base-image` chose
    plain = BuildConfig(base, {"TORCHVISION": "0"}).fingerprint(docker_client)
    assert BuildConfig(base, {"TORCHVISION": "0"}).fingerprint(docker_client) == plain
    assert BuildConfig(base, {"TORCHVISION": "1"}).fingerprint(docker_client) != plain
    assert BuildConfig(base, {"TORCHVISION": "0", "SANDBOX_PACKAGES": "numpy safetensors"}).fingerprint(
        docker_client) != plain
    with pytest.raises(ImageError, match="cannot be pulled"):
        choose_base_image(docker_client, "nasloop-no-such-image:missing", say=lambda _: None)


@pytest.mark.docker
def test_gpu_preflight_names_what_to_install_where_docker_has_no_gpu_runtime(docker_client, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    """On a machine whose Docker has no NVIDIA runtime (this one), the paper profile stops before any
    candidate runs, with what to install instead of Docker's raw 'could not select device driver'."""
    from orchestrator.containers.client import InfraError
    from orchestrator.containers.gpu import explain, preflight

    if "nvidia" in json.dumps(docker_client.info().get("Runtimes", {})):
        pytest.skip("this Docker has the NVIDIA runtime")
    with pytest.raises(InfraError, match="NVIDIA Container Toolkit"):
        preflight(docker_client, sandbox_image.id, "all")
    assert leftovers(docker_client) == []  # the probe Docker could not start is gone too
    assert "driver is older" in explain("CUDA driver version is insufficient for CUDA runtime version", "12.4")


@pytest.mark.docker
def test_evaluate_on_cuda_without_a_gpu_runtime_is_an_infrastructure_error(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from orchestrator.cli import main

    candidate = Path(__file__).parent / "candidates" / "small_cnn.py"
    result = CliRunner().invoke(main, ["evaluate", "--profile", "paper", "--dataset", "synthetic", "--workdir",
                                       str(tmp_path), str(candidate)])
    assert result.exit_code != 0 and "NVIDIA Container Toolkit" in result.output, result.output
    assert leftovers(docker_client) == []


class _NoImageNoRegistry:
    """A Docker client without any image and without a registry to pull from."""

    def __init__(self) -> None:
        self.pulls: list[str] = []
        self.images = self

    def get(self, name: str) -> None:
        import docker.errors

        raise docker.errors.ImageNotFound(f"No such image: {name}")

    def pull(self, repository: str, tag: str = "latest") -> None:
        import docker.errors

        self.pulls.append(f"{repository}:{tag}")
        raise docker.errors.APIError("Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup "
                                     "registry-1.docker.io: no such host")


def test_without_root_a_registry_or_a_local_base_the_error_names_both_ways() -> None:
    from orchestrator.containers.base import REGISTRY_BASE_IMAGE, choose_base_image
    from orchestrator.containers.images import DEFAULT_BASE_IMAGE

    client = _NoImageNoRegistry()
    said: list[str] = []
    with pytest.raises(ImageError) as raised:
        choose_base_image(client, None, say=said.append, is_root=False)  # type: ignore[arg-type]
    message = str(raised.value)
    assert client.pulls == [REGISTRY_BASE_IMAGE]  # the registry was tried, once
    assert f"{REGISTRY_BASE_IMAGE} cannot be pulled (" in message and "no such host" in message
    assert f"{DEFAULT_BASE_IMAGE} does not exist" in message
    assert "docker pull" in message and "BASE_IMAGE=" in message  # one way: a registry
    assert "sudo bash images/base/build.sh" in message  # the other: root builds the local base once
    assert said == []  # and nothing was built
