"""What runs inside a candidate container, and nothing else.

`python -m sandbox.train JOB` trains a candidate for one epoch and writes its weights;
`python -m sandbox.predict JOB` writes its logits for unlabeled images; `python -m sandbox.check
JOB` runs the validity checks alone (no data). None of them ever sees the labels of the images it is
scored on; the host computes every score.
"""
