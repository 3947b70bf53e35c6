"""The Docker layer: the daemon client, the content-tagged images, the hardened one-use candidate
container (`hardened.run_phase`), and the labels by which leftover containers are swept.

Imports nothing of nasloop but `contracts`, `config` (the repository root) and `untrusted` (escaping
container logs); `evaluation` and `generator` build on it.
"""
