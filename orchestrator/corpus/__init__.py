"""The supervised corpus and its novelty: reading LEMUR, importing with de-duplication, the seed-corpus
grammar and `corpus synth` (not part of the paper: a CPU stand-in for what a 7B model knows), the
corpus's validity checks, the generation prompt's task, MinHash signatures and the novelty index
(J_train, J_gen), stats and the chat export.

Imports `contracts`, `config`, `data`, `store`, `evaluation` (for the checks) and `llm.prompt`; never the loop.
"""
