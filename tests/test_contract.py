import pytest

from orchestrator.evaluation.contract import check_contract

GOOD = b'''
import torch
import torch.nn as nn

def supported_hyperparameters():
    return {'lr', 'momentum'}

class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
    def forward(self, x):
        return x
    def train_setup(self, prm):
        pass
    def learn(self, train_data):
        pass
'''


def test_good_program_passes() -> None:
    assert check_contract(GOOD, 65536) is None


def test_every_lemur_program_with_the_contract_passes(lemur_records) -> None:  # type: ignore[no-untyped-def]
    failures = [r["name"] for r in lemur_records if check_contract(r["code"].encode(), 65536)]
    # Two LEMUR files define no supported_hyperparameters(); every other one follows the contract.
    assert len(failures) == 2


def test_methods_inherited_from_a_base_in_the_same_module_count() -> None:
    source = GOOD.replace(b"class Net(nn.Module):", b"class Base(nn.Module):") + (
        b"\nclass Net(Base):\n    pass\n")
    assert check_contract(source, 65536) is None


@pytest.mark.parametrize("source, kind, message", [
    (b"def f(:\n", "syntax", "SyntaxError"),
    (b"\xff\xfe", "syntax", "not UTF-8"),
    (GOOD.replace(b"def supported_hyperparameters", b"def hyper"), "contract", "supported_hyperparameters"),
    (GOOD.replace(b"class Net(nn.Module)", b"class Model(nn.Module)"), "contract", "no module-level class Net"),
    (GOOD.replace(b"class Net(nn.Module)", b"class Net"), "contract", "no base class"),
    (GOOD.replace(b"def learn", b"def learn_it"), "contract", "lacks learn"),
    (GOOD.replace(b"in_shape, out_shape, prm, device", b"cfg"), "contract", "expected (self, in_shape"),
    (GOOD + b"\nfrom . import helpers\n", "contract", "relative import"),
    (GOOD + b"\nLABELS = '" + b"7" * 20000 + b"'\n", "contract", "literal"),
    (GOOD + b"\nLABELS = [" + b"1," * 5000 + b"]\n", "contract", "5,000-item literal"),
    (GOOD + b"#" * 70000, "contract", "over the 65,536-byte cap"),
])
def test_violations_are_reported_without_running_anything(source: bytes, kind: str, message: str) -> None:
    violation = check_contract(source, 65536)
    assert violation is not None and violation.kind == kind and message in violation.message
