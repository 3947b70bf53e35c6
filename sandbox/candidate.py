"""Load a candidate module, check its contract, instantiate it, count what it holds, and move its
state in and out through torch's own functions.

Every torch function the checks and the protocol rely on is captured when this module is imported,
before any candidate code runs, and called unbound, so a candidate that monkeypatches torch, subclasses
`Parameter` with a lying `numel`, or overrides `state_dict`/`load_state_dict`/`parameters` cannot
change what the runner counts, saves or loads. These counts are an early check only: the host counts
the weights file itself and decides the budget.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

_numel = torch.Tensor.numel
_data_ptr = torch.Tensor.untyped_storage
_module_getattr = object.__getattribute__
_state_dict = nn.Module.state_dict
_load_state_dict = nn.Module.load_state_dict
_no_torch_function = torch._C.DisableTorchFunctionSubclass
_is_tensor = torch.is_tensor
_is_lazy = is_lazy
_Module = nn.Module


class CandidateFailure(Exception):
    """The candidate, not the sandbox, failed; `kind` is one of contracts.sandbox.RUNNER_FAILURES."""

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
                param_budget: int, device: torch.device) -> tuple[nn.Module, int, list[str]]:
    """The validity checks every candidate must pass, in order: import and contract, instantiation,
    the parameter budget (cheap, so an oversized network's forward pass need not run at all; lazy
    modules are materialised by the dummy forward first), a dummy forward. Returns the network, its
    element count and the keys of its state (what the weights file must hold); raises CandidateFailure."""
    module = load_module(path)
    net = instantiate(module, in_shape, num_classes, prm, device)
    lazy = has_lazy_parameters(net)
    if lazy:
        check_forward(net, in_shape, num_classes, device)
    elements = count_elements(net, module)
    if elements > param_budget:
        raise CandidateFailure("params_over_budget", f"{elements:,} parameters > budget {param_budget:,}")
    if not lazy:
        check_forward(net, in_shape, num_classes, device)
    return net, elements, state_keys(net)


def has_lazy_parameters(net: nn.Module) -> bool:
    return any(_is_lazy(p) for p in _registered(net, "_parameters"))


def _registered(net: nn.Module, registry: str) -> list[Any]:
    """Every tensor in the `registry` ("_parameters" or "_buffers") of every submodule, read from the
    module registries directly so that overriding `parameters()` or `named_modules()` hides none."""
    seen_modules: set[int] = set()
    stack: list[Any] = [net]
    found: list[Any] = []
    while stack:
        module = stack.pop()
        if id(module) in seen_modules:
            continue
        seen_modules.add(id(module))
        found.extend(t for t in _module_getattr(module, registry).values() if t is not None)
        stack.extend(m for m in _module_getattr(module, "_modules").values() if m is not None)
    return found


def count_parameters(net: nn.Module) -> int:
    """Registered parameters of every submodule, shared ones once."""
    with _no_torch_function():
        return sum(_numel(p) for p in {id(p): p for p in _registered(net, "_parameters")}.values())


def count_elements(net: nn.Module, module: ModuleType | None = None) -> int:
    """The early budget check's count, shared storage once: every registered parameter, plus the
    tensors kept outside the registries that the network can reach (plain attributes, lists, dicts,
    closures, the candidate module's globals and class attributes: capacity the weights file would
    not show). Registered buffers are left to the host, which counts them in the weights file. A
    tensor's `numel` is read with torch's subclass dispatch disabled, so a subclass cannot lie about
    it. Best effort by design: the host's count of the weights file decides."""
    with _no_torch_function():
        tensors: dict[int, Any] = {}
        for p in _registered(net, "_parameters"):
            tensors.setdefault(id(p), p)
        buffers = {id(b) for b in _registered(net, "_buffers")}
        for tensor in _reachable_tensors(net, module):
            if id(tensor) not in buffers:
                tensors.setdefault(id(tensor), tensor)
        storages: dict[int, int] = {}
        for tensor in tensors.values():
            if _is_lazy(tensor):
                continue
            try:
                key = _data_ptr(tensor).data_ptr()
            except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, meta)
                key = id(tensor)
            storages[key] = max(storages.get(key, 0), int(_numel(tensor)))
        return sum(storages.values())


def _reachable_tensors(net: nn.Module, module: ModuleType | None) -> list[Any]:
    """Tensors reachable from the network object (and the candidate module's namespace) through
    attributes, containers and closures; not through other modules, classes or function globals."""
    roots: list[Any] = [net]
    if module is not None:
        roots.extend(v for v in vars(module).values() if not isinstance(v, types.ModuleType))
    seen: set[int] = set()
    found: list[Any] = []
    stack = roots
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if _is_tensor(obj):
            found.append(obj)
            continue
        if isinstance(obj, (dict, types.MappingProxyType)):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, types.FunctionType):
            stack.extend(cell.cell_contents for cell in (obj.__closure__ or ()) if _cell_filled(cell))
            stack.extend(obj.__defaults__ or ())
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__func__)
        elif isinstance(obj, type):
            if getattr(obj, "__module__", None) == "candidate":
                stack.extend(vars(obj).values())
        elif isinstance(obj, (types.ModuleType, str, bytes, int, float, complex, bool, type(None))):
            continue
        else:
            try:
                attributes = _module_getattr(obj, "__dict__")
            except AttributeError:
                continue
            stack.extend(attributes.values())
    return found


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def state_keys(net: nn.Module) -> list[str]:
    return list(_state_dict(net).keys())


def state_tensors(net: nn.Module, expected_keys: list[str]) -> dict[str, torch.Tensor]:
    """The network's state through torch's own `state_dict` (unbound), as detached CPU copies; the
    keys must be those it had before training (nothing registered since, nothing hidden)."""
    state = _state_dict(net)
    keys = list(state.keys())
    if keys != expected_keys:
        added = sorted(set(keys) - set(expected_keys))
        removed = sorted(set(expected_keys) - set(keys))
        raise CandidateFailure("protocol", f"the network's state changed during training: added {added[:5]}, "
                                           f"removed {removed[:5]}")
    tensors = {}
    for key, value in state.items():
        if not _is_tensor(value):
            raise CandidateFailure("protocol", f"state entry {key!r} is a {type(value).__name__}, not a tensor")
        with _no_torch_function():
            tensors[key] = value.detach().to("cpu").clone().contiguous()
    return tensors


def load_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` into a fresh network strictly, through torch's own `load_state_dict` (unbound)."""
    _load_state_dict(net, state, strict=True)
