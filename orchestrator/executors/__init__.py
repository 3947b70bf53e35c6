"""Where a candidate's container phases run: the `Executor` interface (run one phase from its spec and
get what the host observed and where; sweep containers left behind; close), this machine's Docker
daemon (`local`, the default), and the nodes of a Ray cluster (`ray_cluster`, needs the `ray` extra
and is imported only when used).

An executor only runs containers: every candidate-written output it returns is read, checked and
scored above it, on the host (`evaluation`), and labels never leave the host.

Imports `contracts`, `config` and `containers`; `evaluation` builds on it.
"""
