"""Hostile candidates: one per thing a generated program must not be able to do.

Each case is the same tiny, valid network with a snippet planted at import time, in `__init__`,
in `forward` or in `learn`. A case whose snippet *detects* a hole (a readable host file, a
reachable network, a privilege) raises `LEAK`, which would turn an expected `ok` into a failure.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

TEMPLATE = '''\
import torch
import torch.nn as nn

{at_import}


def supported_hyperparameters():
    return {{'lr', 'momentum'}}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 16, out_shape[0])
{in_init}

    def forward(self, x):
{in_forward}
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm['lr'], momentum=prm['momentum'])

    def learn(self, train_data):
{in_learn}
        for inputs, labels in train_data:
            self.optimizer.zero_grad()
            loss = self.criteria(self(inputs), labels)
            loss.backward()
            self.optimizer.step()
'''

IN_PREDICT_PHASE = "os.path.exists('/data/predict_images.npy')"


@dataclass(frozen=True)
class Case:
    name: str
    expect: str  # "ok" or a failure kind
    at_import: str = ""
    in_init: str = ""
    in_forward: str = ""
    in_learn: str = ""

    def source(self, **values: str) -> bytes:
        def block(code: str, indent: int) -> str:
            code = textwrap.dedent(code).strip().format(**values) if code else "pass"
            return textwrap.indent(code, " " * indent)

        return TEMPLATE.format(at_import=block(self.at_import, 0), in_init=block(self.in_init, 8),
                               in_forward=block(self.in_forward, 8), in_learn=block(self.in_learn, 8)).encode()


CASES = [
    Case("benign", "ok"),
    # --- exhausting the host ---
    Case("fork_bomb", "timeout", at_import="""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """),
    Case("thread_bomb", "timeout", at_import="""
        import threading, time
        while True:
            try:
                threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
            except RuntimeError:
                pass
        """),
    Case("memory_hog", "oom", in_init="self.hog = [bytearray(64 * 2**20) for _ in range(4096)]"),
    Case("endless_loop", "timeout", in_learn="while True:\n    pass"),
    Case("endless_output", "timeout", in_learn="while True:\n    print('spam' * 4096, flush=True)"),
    Case("tmp_fill", "crash", in_learn="""
        i = 0
        while True:
            with open(f'/tmp/fill{{i}}', 'wb') as fh:
                fh.write(b'x' * 2**20)
            i += 1
        """),
    Case("out_fill", "invalid_output", in_learn="""
        i = 0
        while True:
            with open(f'/out/junk{{i}}', 'wb') as fh:
                fh.write(b'x' * 2**20)
            i += 1
        """),
    Case("daemonised_child", "ok", at_import="""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp('sleep', ['sleep', '{sleep_marker}'])
            os._exit(0)
        """),
    # --- reading the host, the network, privileges ---
    Case("host_files_and_secrets", "ok", at_import="""
        import os
        for path in ['{host_secret_file}', '/var/run/docker.sock', '/run/docker.sock', '/root/.ssh']:
            if os.path.exists(path):
                raise RuntimeError('LEAK: ' + path)
        if any('NASLOOP_TEST_SECRET' in k or '{secret_value}' in v for k, v in os.environ.items()):
            raise RuntimeError('LEAK: host environment')
        data = set(os.listdir('/data')) if os.path.exists('/data') else set()  # the check phase has none
        if data not in ({{'train_images.npy', 'train_labels.npy'}}, {{'predict_images.npy'}}, set()):
            raise RuntimeError('LEAK: /data holds ' + str(data))
        if set(os.listdir('/job')) - {{'candidate.py', 'job.json', 'weights.safetensors'}}:
            raise RuntimeError('LEAK: /job holds ' + str(os.listdir('/job')))
        """),
    Case("network", "ok", at_import="""
        import socket
        for target in [('1.1.1.1', 53), ('8.8.8.8', 443), ('172.17.0.1', 2375), ('172.17.0.1', 2376)]:
            try:
                socket.create_connection(target, timeout=2).close()
            except OSError:
                continue
            raise RuntimeError(f'LEAK: connected to {{target}}')
        try:
            socket.getaddrinfo('pypi.org', 443)
        except OSError:
            pass
        else:
            raise RuntimeError('LEAK: DNS resolves')
        if set(socket.if_nameindex()) - {{(1, 'lo')}}:
            raise RuntimeError('LEAK: interfaces ' + str(socket.if_nameindex()))
        """),
    Case("privileges", "ok", at_import="""
        import os
        if os.geteuid() == 0 or os.getegid() == 0:
            raise RuntimeError('LEAK: running as root')
        status = open('/proc/self/status').read()
        if 'CapEff:\\t0000000000000000' not in status or 'NoNewPrivs:\\t1' not in status:
            raise RuntimeError('LEAK: capabilities or privileges: ' + status)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise RuntimeError('LEAK: setuid(0) worked')
        for path in ['/etc/evil', '/opt/nasloop/app/sandbox/evil.py', '/data/evil', '/job/evil', '/usr/evil']:
            try:
                open(path, 'w').close()
            except OSError:
                continue
            raise RuntimeError('LEAK: wrote ' + path)
        """),
    # --- changing its own score ---
    Case("monkeypatch_and_fake_accuracy", "ok", at_import="""
        import builtins, numpy
        torch.argmax = lambda *a, **k: torch.zeros(1)
        torch.Tensor.eq = lambda *a, **k: torch.ones(1, dtype=torch.bool)
        numpy.mean = lambda *a, **k: 0.99
        print('ACCURACY: 0.99')
        print('{{"accuracy": 0.99, "valid": true}}')
        """, in_learn="return"),
    Case("early_exit_in_learn", "missing_output", in_learn="import os\nos._exit(0)"),
    Case("system_exit_at_import", "import", at_import="raise SystemExit(0)"),
    Case("nan_logits", "nonfinite", in_forward="""
        if not self.training:
            return torch.full((x.shape[0], 10), float('nan'))
        """),
    Case("wrong_shape_when_predicting", "invalid_output", in_forward="""
        if not self.training and x.shape[0] > 2:
            return torch.zeros(x.shape[0], 5)
        """),
    Case("pickled_logits", "invalid_output", at_import="""
        import os, pickle
        if {in_predict}:
            numpy_mod = __import__('numpy')
            numpy_mod.save('/out/logits.npy', numpy_mod.array([object()] * 3), allow_pickle=True)
            os._exit(0)
        """),
    Case("symlinked_logits", "invalid_output", at_import="""
        import os
        if {in_predict}:
            os.symlink('/etc/passwd', '/out/logits.npy')
            os._exit(0)
        """),
    Case("forged_infra_status", "crash", at_import="""
        import json, os
        open('/out/status.json', 'w').write(json.dumps({{'failure': 'infra', 'error': 'not my fault'}}))
        os._exit(3)
        """),
    Case("forged_weights_then_exit", "missing_output", in_learn="""
        import os
        open('/out/weights.safetensors', 'wb').write(b'\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\x00{{}}      ')
        os._exit(0)
        """),
    Case("hidden_parameters", "params_over_budget", at_import="""
        nn.Module.parameters = lambda self, recurse=True: iter([])
        nn.Module.named_parameters = lambda self, *a, **k: iter([])
        """, in_init="self.big = nn.Linear(1000, 1000)"),
    # --- the budget: the host counts the weights file, the runner's early count uses captured torch ---
    Case("replaced_counter", "params_over_budget", at_import="""
        import sandbox.candidate as runner_checks
        runner_checks.count_elements = lambda *a, **k: 10
        runner_checks.count_parameters = lambda *a, **k: 10
        """, in_init="self.big = nn.Linear(2000, 1600)"),
    Case("lying_parameter_subclass", "params_over_budget", at_import="""
        class Small(nn.Parameter):
            def numel(self):
                return 1
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if getattr(func, '__name__', '') in ('numel', 'nelement'):
                    return 1
                return super().__torch_function__(func, types, args, kwargs or {{}})
        """, in_init="self.big = Small(torch.zeros(3_200_000))"),
    Case("hidden_submodule", "params_over_budget", in_init="""
        self.hidden = [nn.Linear(2048, 2048)]  # outside the module registry: no key, no count
        """, in_forward="""
        if x.shape[1] < 0:
            return self.hidden[0](x)
        """),
    Case("registered_after_count", "protocol", in_learn="""
        self.extra = nn.Linear(2000, 2000)
        """),
    Case("capacity_in_buffers", "params_over_budget", in_init="""
        self.register_buffer('memory', torch.zeros(4_200_000))
        """),
    Case("training_set_in_metadata", "invalid_output", in_learn="""
        import sys
        import safetensors.torch
        original = safetensors.torch.save_file
        def save_with_data(tensors, path, metadata=None):
            original(tensors, path, metadata={{'format': 'pt', 'data': 'x' * 100000}})
        for module in list(sys.modules.values()):  # whichever module the runner saves from
            if getattr(module, 'save_file', None) is original:
                module.save_file = save_with_data
        """),
    Case("four_passes_over_the_data", "protocol", in_learn="""
        for _ in range(3):
            for inputs, labels in train_data:
                self.optimizer.zero_grad()
                self.criteria(self(inputs), labels).backward()
                self.optimizer.step()
        """),
    Case("second_pass_error_swallowed", "protocol", in_learn="""
        for _ in range(2):
            try:
                for inputs, labels in train_data:
                    pass
            except Exception:
                pass
        """),
    Case("overridden_state_methods", "ok", in_init="""
        self.state_dict = lambda *a, **k: {{}}
        self.load_state_dict = lambda *a, **k: None
        """),
    # --- output that would fill or wedge the host ---
    Case("fallocate_fill", "invalid_output", in_learn="""
        import os
        for i in range(64):
            try:
                fd = os.open(f'/out/alloc{{i}}', os.O_CREAT | os.O_WRONLY)
                os.posix_fallocate(fd, 0, 2**30)
            except OSError:
                try:
                    os.posix_fallocate(fd, 0, 2**20)
                except OSError:
                    pass
            finally:
                os.close(fd)
        """),
    Case("deeper_than_path_max", "invalid_output", in_learn="""
        import os
        os.chdir('/out')
        for _ in range(200):
            try:
                os.mkdir('d' * 255)
                os.chdir('d' * 255)
            except OSError:
                break
        os.chdir('/tmp')
        """),
    Case("unreadable_output_directory", "ok", in_learn="""
        import os
        os.mkdir('/out/private', 0o000)
        """),
    # --- forged reports and untrusted text ---
    Case("escape_sequences_in_error", "crash", in_learn="""
        raise RuntimeError('\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m boom \\u202e')
        """),
    Case("forged_budget_failure_kind", "crash", at_import="""
        import json, os
        open('/out/status.json', 'w').write(json.dumps({{'failure': 'params_over_budget', 'error': 'fake'}}))
        os._exit(3)
        """),
    # The exit status is the candidate's to choose: ending with the runner's budget status records that
    # kind (marked as decided in the sandbox), which can only ever fail the candidate itself.
    Case("exit_with_a_runner_status", "params_over_budget", at_import="""
        import os
        os._exit(14)
        """),
    # --- legitimate programs that must stay valid ---
    Case("lazy_linear", "ok", in_init="""
        self.fc = nn.LazyLinear(out_shape[0])
        """),
    Case("batchnorm_near_budget", "ok", in_init="""
        # 499,080 parameters plus 3,078 BatchNorm buffer elements: over 500,000 in the weights file,
        # within the buffer allowance.
        self.norms = nn.ModuleList([nn.BatchNorm1d(256) for _ in range(6)])
        self.extra = nn.Linear(1000, 494)
        """),
    # --- a score that only the public test set can explain ---
    Case("knows_the_test_labels", "suspect", at_import="""
        import json
        TABLE = dict(item.split(':') for item in '{label_table}'.split(','))
        JOB = json.load(open('/job/job.json'))
        """, in_forward="""
        if not self.training and x.shape[0] > 2:
            mean = torch.tensor(JOB['mean']).view(1, -1, 1, 1)
            std = torch.tensor(JOB['std']).view(1, -1, 1, 1)
            pixels = ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).flatten(1)[:, :6]
            keys = [bytes(row.tolist()).hex() for row in pixels]
            out = torch.zeros(x.shape[0], 10)
            for i, key in enumerate(keys):
                if key in TABLE:
                    out[i, int(TABLE[key])] = 1.0
            return out
        """),
    # --- ordinary failures, each its own kind ---
    Case("import_error", "import", at_import="import not_a_real_module_xyz"),
    Case("instantiate_error", "instantiate", in_init="raise ValueError('bad layer')"),
    Case("forward_shape", "forward", in_forward="return torch.zeros(x.shape[0], 3)"),
    Case("crash_in_learn", "crash", in_learn="raise RuntimeError('boom')"),
    Case("segfault", "crash", in_learn="import ctypes\nctypes.string_at(0)"),
]
