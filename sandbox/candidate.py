"""Load a candidate module, check its contract, instantiate it and count its parameters.

References to the torch functions the checks rely on are taken when this module is imported,
before any candidate code runs, so a candidate that monkeypatches torch cannot change them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

_numel = torch.Tensor.numel
_module_getattr = object.__getattribute__


class CandidateFailure(Exception):
    """The candidate, not the sandbox, failed; `kind` is one of job.RUNNER_FAILURES."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("candidate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    try:
        spec.loader.exec_module(module)
    except MemoryError:
        raise CandidateFailure("oom", "MemoryError while importing the candidate") from None
    except BaseException as exc:  # the candidate's own code raised (SystemExit included)
        raise CandidateFailure("import", f"{type(exc).__name__}: {exc}") from exc
    hyper = getattr(module, "supported_hyperparameters", None)
    if not callable(hyper):
        raise CandidateFailure("contract", "no callable supported_hyperparameters()")
    try:
        names = hyper()
    except BaseException as exc:
        raise CandidateFailure("contract", f"supported_hyperparameters() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(names, (set, frozenset)):
        raise CandidateFailure("contract", f"supported_hyperparameters() returned {type(names).__name__}, not a set")
    net_cls = getattr(module, "Net", None)
    if not (isinstance(net_cls, type) and issubclass(net_cls, nn.Module)):
        raise CandidateFailure("contract", "no class Net(nn.Module)")
    return module


def instantiate(module: ModuleType, in_shape: list[int], num_classes: int, prm: dict[str, float],
                device: torch.device) -> nn.Module:
    try:
        net = module.Net(tuple(in_shape), (num_classes,), dict(prm), device)
        net = net.to(device)
    except MemoryError:
        raise CandidateFailure("oom", "MemoryError while instantiating Net") from None
    except torch.cuda.OutOfMemoryError as exc:
        raise CandidateFailure("oom", f"CUDA out of memory while instantiating Net: {exc}") from None
    except BaseException as exc:
        raise CandidateFailure("instantiate", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise CandidateFailure("instantiate", "Net(...) did not produce an nn.Module")
    return net


def check_forward(net: nn.Module, in_shape: list[int], num_classes: int, device: torch.device) -> None:
    """A dummy batch of 2 must give logits of shape (2, num_classes)."""
    x = torch.zeros((2, *in_shape[1:]), device=device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(x)
    except MemoryError:
        raise CandidateFailure("oom", "MemoryError in the dummy forward pass") from None
    except torch.cuda.OutOfMemoryError as exc:
        raise CandidateFailure("oom", f"CUDA out of memory in the dummy forward pass: {exc}") from None
    except BaseException as exc:
        raise CandidateFailure("forward", f"{type(exc).__name__}: {exc}") from exc
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CandidateFailure("forward", f"dummy forward gave {shape}, expected (2, {num_classes})")


def checked_net(path: Path, in_shape: list[int], num_classes: int, prm: dict[str, float],
                param_budget: int, device: torch.device) -> tuple[nn.Module, int]:
    """The validity checks every candidate must pass, in order: import and contract, instantiation,
    the parameter budget (cheap, so an oversized network's forward pass need not run at all), a dummy
    forward. Returns the network and its parameter count; raises CandidateFailure."""
    module = load_module(path)
    net = instantiate(module, in_shape, num_classes, prm, device)
    params = count_parameters(net)
    if params > param_budget:
        raise CandidateFailure("params_over_budget", f"{params:,} parameters > budget {param_budget:,}")
    check_forward(net, in_shape, num_classes, device)
    return net, params


def count_parameters(net: nn.Module) -> int:
    """Registered parameters of every submodule, shared ones once, read from the module registries
    directly so that overriding `parameters()` or `named_modules()` does not hide any."""
    seen_params: set[int] = set()
    seen_modules: set[int] = set()
    stack: list[Any] = [net]
    total = 0
    while stack:
        module = stack.pop()
        if id(module) in seen_modules:
            continue
        seen_modules.add(id(module))
        for param in _module_getattr(module, "_parameters").values():
            if param is not None and id(param) not in seen_params:
                seen_params.add(id(param))
                total += int(_numel(param))
        stack.extend(m for m in _module_getattr(module, "_modules").values() if m is not None)
    return total
