"""The wheelhouse the images are built from, downloaded on the host for the image's Python and
platform (not the host's): the images build offline, and a host on Python 3.12 still gets the
base image's cp311 wheels.

The base image is asked (one network-less `python3` run) for its Python version, machine, glibc
and any torch it already has; `pip download --only-binary=:all: --python-version ... --platform
...` then fetches exactly the packages the images install: the requirements files (for the LLM
image the one its `LLM_BACKEND` build argument picks: `requirements-vllm.txt` for vllm), or the
`SANDBOX_PACKAGES` / `LLM_PACKAGES` build arguments when a base image brings torch, plus
torchvision (and pillow) matching the image's torch when `TORCHVISION` resolves to on (`auto`: on
for a CUDA torch, off for a CPU one, whose PyPI torchvision does not match). A record of the target
(`target.json`) makes a second call with the same inputs a no-op.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import docker.errors

from orchestrator.config import REPO_ROOT
from orchestrator.containers.client import ImageError
from orchestrator.containers.images import WHEELHOUSE

TARGET_FILE = "target.json"
REQUIREMENTS = {"sandbox": REPO_ROOT / "images" / "sandbox" / "requirements.txt",
                "llm": REPO_ROOT / "images" / "llm" / "requirements.txt"}
# The LLM image's requirements per `LLM_BACKEND` build argument (its Dockerfile picks the same file).
LLM_BACKEND_REQUIREMENTS = {"transformers": REPO_ROOT / "images" / "llm" / "requirements.txt",
                            "vllm": REPO_ROOT / "images" / "llm" / "requirements-vllm.txt"}
PACKAGE_ARGS = {"sandbox": "SANDBOX_PACKAGES", "llm": "LLM_PACKAGES"}
_PROBE = ("import json, platform, sys\n"
          "info = {'python': '%d.%d' % sys.version_info[:2], 'machine': platform.machine(),"
          " 'glibc': platform.libc_ver()[1], 'torch': None, 'cuda': None}\n"
          "try:\n"
          "    import torch\n"
          "    info['torch'], info['cuda'] = torch.__version__, torch.version.cuda\n"
          "except Exception:\n"
          "    pass\n"
          "print(json.dumps(info))\n")


@dataclass(frozen=True)
class ImagePython:
    python: str  # "3.11"
    machine: str  # "x86_64", "aarch64"
    glibc: str  # "2.36"
    torch: str | None  # a torch the base image already has
    cuda: str | None

    def pip_target(self) -> list[str]:
        """pip download's flags for wheels this Python can install."""
        major, minor = self.python.split(".")
        flags = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp",
                 "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none"]
        glibc_minor = int(self.glibc.split(".")[1]) if self.glibc.count(".") == 1 else 17
        for version in range(glibc_minor, 4, -1):
            flags += ["--platform", f"manylinux_2_{version}_{self.machine}"]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        flags += [arg for v, name in legacy.items() if v <= glibc_minor for arg in ("--platform", f"{name}_{self.machine}")]
        return flags + ["--platform", f"linux_{self.machine}"]


def wheelhouse_build_args(wheelhouse: Path) -> dict[str, str]:
    """The build arguments the wheelhouse was made for: TORCHVISION as resolved ("1" or "0") and,
    when not the default, LLM_BACKEND; empty without a wheelhouse."""
    record = wheelhouse / TARGET_FILE
    if not record.is_file():
        return {}
    made = json.loads(record.read_text())
    args = {"TORCHVISION": str(made["resolved_torchvision"])}
    if "llm_backend" in made.get("target", {}):
        args["LLM_BACKEND"] = str(made["target"]["llm_backend"])
    return args


def probe_base_image(client: docker.DockerClient, base_image: str) -> ImagePython:
    """Ask the base image (no network, removed afterwards) what Python it has."""
    try:
        output = client.containers.run(base_image, ["python3", "-c", _PROBE], network_mode="none", remove=True,
                                       stdout=True, stderr=True)
    except docker.errors.DockerException as exc:
        raise ImageError(f"cannot run python3 in the base image {base_image}: {exc}") from None
    try:
        return ImagePython(**json.loads(output.decode().strip().splitlines()[-1]))
    except (ValueError, TypeError, IndexError) as exc:
        raise ImageError(f"the base image {base_image} did not describe its Python: {exc}") from None


def torchvision_for(torch_version: str) -> str:
    """The torchvision release built for a torch release (2.x.y -> 0.(x+15).y)."""
    match = re.match(r"2\.(\d+)\.(\d+)", torch_version)
    if not match:
        raise ImageError(f"no known torchvision for torch {torch_version}")
    return f"0.{int(match[1]) + 15}.{match[2]}"


def llm_backend(build_args: dict[str, str]) -> str:
    """The `LLM_BACKEND` build argument (default transformers), checked."""
    backend = build_args.get("LLM_BACKEND") or "transformers"
    if backend not in LLM_BACKEND_REQUIREMENTS:
        raise ImageError(f"LLM_BACKEND must be one of {', '.join(LLM_BACKEND_REQUIREMENTS)}, not {backend!r}")
    return backend


def requirement_files(build_args: dict[str, str]) -> dict[str, Path]:
    """The requirements file each image installs from with these build arguments."""
    return {**REQUIREMENTS, "llm": LLM_BACKEND_REQUIREMENTS[llm_backend(build_args)]}


def requested_packages(build_args: dict[str, str]) -> list[str]:
    """pip requirement arguments for every package the images install."""
    arguments: list[str] = ["pip"]
    for image, requirements in requirement_files(build_args).items():
        override = build_args.get(PACKAGE_ARGS[image])
        arguments += shlex.split(override) if override else ["-r", str(requirements)]
    return arguments


def image_torch(python: ImagePython, wheelhouse: Path) -> tuple[str | None, bool]:
    """(version, is CUDA) of the torch the images will have: the base image's, else the wheel's."""
    if python.torch:
        return python.torch, python.cuda is not None
    wheels = sorted(wheelhouse.glob("torch-*.whl"))
    if not wheels:
        return None, False
    version = wheels[0].name.split("-")[1]
    return version, "+cpu" not in version


def download(client: docker.DockerClient, base_image: str, build_args: dict[str, str],
             say: Callable[[str], None] = print, wheelhouse: Path = WHEELHOUSE,
             python_executable: str = sys.executable) -> dict[str, str]:
    """Fill `wheelhouse` for `base_image`; returns the build arguments to build with (TORCHVISION
    resolved to "1" or "0")."""
    python = probe_base_image(client, base_image)
    packages = requested_packages(build_args)
    backend = llm_backend(build_args)
    requirement_text = "".join(Path(p).read_text() for p in requirement_files(build_args).values())
    target = {"python": asdict(python), "packages": packages, "torchvision": build_args.get("TORCHVISION", "auto"),
              "requirements": hashlib.sha256(requirement_text.encode()).hexdigest()}
    if backend != "transformers":
        target["llm_backend"] = backend  # (absent for the default: an existing wheelhouse stays valid)
    record = wheelhouse / TARGET_FILE
    if record.is_file() and json.loads(record.read_text()).get("target") == target:
        say(f"{wheelhouse} is up to date for Python {python.python} ({python.machine})")
        return {**build_args, "TORCHVISION": wheelhouse_build_args(wheelhouse)["TORCHVISION"]}
    if wheelhouse.is_dir():
        shutil.rmtree(wheelhouse)  # another target: wheels for another Python must not linger
    wheelhouse.mkdir(parents=True)
    say(f"downloading wheels for Python {python.python} on {python.machine} (glibc {python.glibc}) "
        f"into {wheelhouse}")
    _pip_download(python_executable, wheelhouse, python, packages)
    torch_version, cuda = image_torch(python, wheelhouse)
    choice = build_args.get("TORCHVISION", "auto")
    wanted = cuda if choice == "auto" else choice == "1"
    if wanted:
        if torch_version is None:
            raise ImageError("TORCHVISION is on but the images get no torch to match")
        base_version = torch_version.split("+")[0]
        say(f"torchvision {torchvision_for(base_version)} for torch {torch_version}")
        _pip_download(python_executable, wheelhouse, python,
                      [f"torchvision=={torchvision_for(base_version)}", "pillow", "--no-deps"])
    resolved = "1" if wanted else "0"
    record.write_text(json.dumps({"target": target, "resolved_torchvision": resolved}, indent=1))
    return {**build_args, "TORCHVISION": resolved}


def _pip_download(python_executable: str, wheelhouse: Path, python: ImagePython, packages: list[str]) -> None:
    command = [python_executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse),
               *python.pip_target(), *packages]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageError(f"downloading the wheelhouse failed ({' '.join(command[3:])}):\n{result.stderr[-3000:]}")
