"""The supervised corpus and its novelty: reading LEMUR, importing with de-duplication, the corpus's
validity checks, MinHash signatures and the novelty index (J_train, J_gen), stats and the chat export.

Imports `contracts`, `config`, `store`, `evaluation` (for the checks) and `llm.prompt`; never the loop.
"""
