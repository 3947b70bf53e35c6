"""The GPU preflight: before any candidate runs on CUDA, one trivial CUDA job in a hardened sandbox
container on the GPUs the profile names. If it fails, an infrastructure error names the cause
(Docker without the NVIDIA runtime, a driver older than the image's CUDA, no GPU visible), so that
no candidate is ever recorded as a `crash` for what is the machine's fault."""

from __future__ import annotations

import json

import docker
import docker.errors
import docker.types
import requests.exceptions

from orchestrator.containers.client import InfraError
from orchestrator.containers.labels import managed_labels

PROBE_TIMEOUT_S = 300  # CUDA's first context on every GPU, with torch's import
_PROBE = ("import json, torch\n"
          "ok = torch.cuda.is_available()\n"
          "names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if ok else []\n"
          "for i in range(len(names)):\n"
          "    torch.ones(8, device=f'cuda:{i}').sum().item()\n"
          "print('NASLOOP-GPU ' + json.dumps({'available': ok, 'names': names, 'cuda': torch.version.cuda,"
          " 'torch': torch.__version__}))\n")
TOOLKIT_HINT = ("install the NVIDIA Container Toolkit (>= 1.17.8) and register it with Docker "
                "(`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`)")


def device_request(gpus: list[int] | str) -> docker.types.DeviceRequest:
    """The Docker device request for `gpus` (host indices, or "all")."""
    if gpus == "all":
        return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
    return docker.types.DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])


def explain(error: str, cuda: str | None = None) -> str:
    """What a failed GPU start or CUDA job means, and what to do about it."""
    text = error.lower()
    if "could not select device driver" in text or "unknown or invalid runtime" in text:
        return f"Docker has no GPU runtime: {TOOLKIT_HINT}"
    if "driver version is insufficient" in text or "cuda driver version" in text:
        return (f"the NVIDIA driver is older than the CUDA {cuda or ''} the image's torch was built for: update "
                "the driver, or build the images on a CUDA base image the driver supports (BASE_IMAGE=...)")
    if "nvidia-container-cli" in text or "libnvidia-ml" in text:
        return f"the NVIDIA container toolkit could not set up the GPU ({error.strip()[:300]}): {TOOLKIT_HINT}"
    return f"a trivial CUDA job failed in the sandbox image: {error.strip()[-500:]}"


def preflight(client: docker.DockerClient, image: str, gpus: list[int] | str) -> list[int]:
    """Run the probe on `gpus`; the host indices of the GPUs candidates may use, or InfraError."""
    container = None
    try:
        # Created, started and removed step by step: where Docker cannot start it (no GPU runtime),
        # the created container must not be left behind.
        container = client.containers.create(
            image, ["python3", "-c", _PROBE], device_requests=[device_request(gpus)], network_mode="none",
            read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"], labels=managed_labels("preflight"),
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"})
        container.start()
        status = int(container.wait(timeout=PROBE_TIMEOUT_S)["StatusCode"])
        output = container.logs(stdout=True, stderr=True)
    except docker.errors.APIError as exc:
        raise InfraError(f"GPU preflight: {explain(str(exc))}") from None
    except requests.exceptions.RequestException as exc:
        raise InfraError(f"GPU preflight: the probe did not finish in {PROBE_TIMEOUT_S} s ({exc})") from None
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
    if status != 0:
        raise InfraError(f"GPU preflight: {explain(output.decode(errors='replace'))}")
    lines = [line for line in output.decode(errors="replace").splitlines() if line.startswith("NASLOOP-GPU ")]
    if not lines:
        raise InfraError(f"GPU preflight: {explain(output.decode(errors='replace'))}")
    report = json.loads(lines[-1].removeprefix("NASLOOP-GPU "))
    if not report["available"] or not report["names"]:
        raise InfraError(f"GPU preflight: no GPU is visible in the sandbox container (torch {report['torch']}, "
                         f"CUDA {report['cuda']}): check `nvidia-smi` on the host; {TOOLKIT_HINT}")
    return list(range(len(report["names"]))) if gpus == "all" else list(gpus)
