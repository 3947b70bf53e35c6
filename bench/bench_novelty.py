"""Novelty benchmark: nasloop's index against the naive datasketch pipeline, on the same programs.

Naive pipeline: `tokenize.generate_tokens`, one `MinHash.update()` per shingle, `MinHashLSH`, and
the near-duplicate decision over the LSH hits (what a straightforward implementation does).
nasloop: C lexer, one vectorised hashing pass per program (bit-identical signatures), banded
LSH in NumPy, exact nearest neighbour.

Two corpora: the full shared LEMUR file, and a scaled corpus of `--scaled` (default 100,000)
variants of LEMUR programs (numbers, activations, helper-class names and comments changed at a
random rate per variant). 200 query candidates are further variants (half light edits, half
heavy). On the scaled corpus the naive signatures are measured on a sample and its full build
time is extrapolated (labelled so); its LSH is built in full from the (verified identical)
signatures, so that its decisions can be compared on all 200 queries.

Usage: .venv/bin/python bench/bench_novelty.py [--quick] [--scaled N] [--workers N] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import statistics
import sys
import time
import tokenize
from pathlib import Path

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.config import load_config  # noqa: E402
from orchestrator.corpus.lemur import read_lemur  # noqa: E402
from orchestrator.corpus.minhash import MinHasher  # noqa: E402
from orchestrator.corpus.novelty import NoveltyIndex  # noqa: E402

LEMUR_JSONL = REPO.parent / "shared" / "data" / "lemur" / "lemur-img-classification.jsonl.gz"
SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
           tokenize.ENCODING, tokenize.ENDMARKER}
ACTIVATIONS = ["nn.ReLU", "nn.GELU", "nn.SiLU", "nn.LeakyReLU", "nn.ELU", "nn.Hardswish"]
NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
ACTIVATION = re.compile(r"nn\.(ReLU|GELU|SiLU|LeakyReLU|ELU|Hardswish)\b")
CLASS = re.compile(r"^class (\w+)", re.M)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the naive pipeline ------------------------------------------------------------------------

def naive_minhash(code: str, k: int, num_perm: int) -> MinHash:
    tokens = [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
              if t.type not in SKIPPED]
    m = MinHash(num_perm=num_perm)
    for i in range(max(1, len(tokens) - k + 1)):
        m.update(" ".join(tokens[i:i + k]).encode())
    return m


def naive_decision(lsh: MinHashLSH, lookup, query: MinHash, tau: float) -> tuple[bool, float]:
    """What the reference did: max over LSH hits, 0.0 when there are none."""
    hits = lsh.query(query)
    best = max((query.jaccard(lookup(key)) for key in hits), default=0.0)
    return best > tau, best


# --- scaled corpus -----------------------------------------------------------------------------

def variant(code: str, rng: random.Random, rate: float, tag: int) -> str:
    def number(m: re.Match[str]) -> str:
        if rng.random() >= rate:
            return m.group(1)
        value = int(m.group(1))
        return str(rng.choice([value * 2, max(1, value // 2), value + 1, value + 8]))

    code = NUMBER.sub(number, code)
    code = ACTIVATION.sub(lambda m: rng.choice(ACTIVATIONS) if rng.random() < rate else m.group(0), code)
    for name in sorted(set(CLASS.findall(code)) - {"Net"}):
        if rng.random() < rate:
            code = re.sub(rf"\b{name}\b", f"{name}V{tag}", code)
    lines = code.split("\n")
    out = []
    for line in lines:
        if rng.random() < rate / 4 and line.strip():
            out.append(line[:len(line) - len(line.lstrip())] + f"# variant {tag}")
        out.append(line)
    return "\n".join(out)


def make_variants(codes: list[str], n: int, seed: int, rates: list[float]) -> list[str]:
    rng = random.Random(seed)
    return [variant(rng.choice(codes), rng, rng.choice(rates), i) for i in range(n)]


# --- measurements ------------------------------------------------------------------------------

def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_corpus(label: str, codes: list[str], queries: list[str], naive_sample: int,
                 workers: int, novelty, rng: random.Random) -> dict:
    k, num_perm, tau = novelty.shingle_size, novelty.num_perm, novelty.tau
    hasher = MinHasher(k, num_perm)
    result: dict = {"corpus": label, "programs": len(codes), "queries": len(queries)}

    # Tokenising + hashing, single process, on the same sample, interleaved in small chunks so
    # that both pipelines see the same machine load.
    sample_ids = sorted(rng.sample(range(len(codes)), min(naive_sample, len(codes))))
    sample = [codes[i] for i in sample_ids]
    naive_sigs: list[MinHash] = []
    ours_rows = []
    clock = {"naive_wall": 0.0, "naive_cpu": 0.0, "ours_wall": 0.0, "ours_cpu": 0.0}
    for start in range(0, len(sample), 20):
        part = sample[start:start + 20]
        wall, cpu = time.perf_counter(), time.process_time()
        naive_sigs += [naive_minhash(c, k, num_perm) for c in part]
        clock["naive_wall"] += time.perf_counter() - wall
        clock["naive_cpu"] += time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        ours_rows.append(hasher.signatures(part).values)
        clock["ours_wall"] += time.perf_counter() - wall
        clock["ours_cpu"] += time.process_time() - cpu
    ours_sample = np.concatenate(ours_rows)
    identical = sum(np.array_equal(m.hashvalues, ours_sample[j]) for j, m in enumerate(naive_sigs))
    result.update(
        sample=len(sample), signatures_identical=identical,
        naive_programs_per_s=len(sample) / clock["naive_wall"],
        ours_programs_per_s_1proc=len(sample) / clock["ours_wall"],
        cpu_ratio_1proc=clock["naive_cpu"] / clock["ours_cpu"],
    )

    # nasloop: full build (signatures with `workers` processes + index), memory, CPU seconds.
    rss0 = rss_mib()
    cpu0 = os.times()
    batch, sig_s = timed(hasher.signatures, codes, workers)
    index = NoveltyIndex(hasher, novelty.lsh_threshold)
    _, index_s = timed(index.add_many, [str(i) for i in range(len(codes))], batch.values)
    cpu1 = os.times()
    build_cpu = sum(cpu1[:4]) - sum(cpu0[:4])  # user+system of this process and its workers
    result.update(
        ours_programs_per_s_parallel=len(codes) / sig_s, workers=workers,
        ours_build_s=sig_s + index_s, ours_index_insert_s=index_s, ours_build_cpu_s=build_cpu,
        ours_rss_mib=rss_mib() - rss0, ours_signature_mib=batch.values.nbytes / 2**20,
    )
    for j, i in enumerate(sample_ids):  # the parallel path gives the same signatures
        assert np.array_equal(batch.values[i], ours_sample[j])

    # Naive LSH over all programs: built from MinHash objects of the same signatures.
    rss0 = rss_mib()
    naive_minhashes = [LeanMinHash(seed=1, hashvalues=v, scheme="affine32") for v in batch.values]
    lsh = MinHashLSH(threshold=novelty.lsh_threshold, num_perm=num_perm)

    def insert_all() -> None:
        for i, m in enumerate(naive_minhashes):
            lsh.insert(i, m)

    _, naive_lsh_s = timed(insert_all)
    result.update(naive_lsh_insert_s=naive_lsh_s, naive_rss_mib=rss_mib() - rss0,
                  naive_build_s=len(codes) / result["naive_programs_per_s"] + naive_lsh_s,
                  naive_build_extrapolated=len(sample) < len(codes))

    # Queries: naive (its own signatures, LSH hits) vs nasloop (exact nearest), and ground truth.
    naive_latency, ours_latency = [], []
    agree_naive = agree_exact = exact_j = lsh_zero_but_similar = near_dups = same_retrieval = 0
    naive_missed = naive_extra = 0
    for code in queries:
        start = time.perf_counter()
        q = naive_minhash(code, k, num_perm)
        naive_dup, naive_best = naive_decision(lsh, naive_minhashes.__getitem__, q, tau)
        naive_latency.append(time.perf_counter() - start)
        start = time.perf_counter()
        signature = hasher.signature(code)
        nearest = index.nearest(signature.values)
        ours_latency.append(time.perf_counter() - start)
        assert np.array_equal(signature.values, q.hashvalues)
        same_retrieval += sorted(lsh.query(q)) == index.retrieve(signature.values).tolist()
        truth = (batch.values == signature.values).sum(axis=1).max() / num_perm
        exact_j += nearest.similarity == truth
        ours_dup = nearest.similarity > tau
        near_dups += ours_dup
        agree_naive += ours_dup == naive_dup
        naive_missed += ours_dup and not naive_dup
        naive_extra += naive_dup and not ours_dup
        agree_exact += ours_dup == (truth > tau)
        lsh_zero_but_similar += naive_best == 0.0 and truth > 0.0
    result.update(
        near_duplicate_queries=near_dups, decisions_agree_with_naive=agree_naive,
        decisions_agree_with_brute_force=agree_exact, j_train_equals_brute_force=exact_j,
        naive_logged_zero_but_true_j_positive=lsh_zero_but_similar,
        same_lsh_retrieval=same_retrieval, naive_missed_near_duplicates=naive_missed,
        naive_extra_near_duplicates=naive_extra,
        naive_query_ms=1e3 * statistics.mean(naive_latency),
        ours_query_ms=1e3 * statistics.mean(ours_latency),
        ours_query_p95_ms=1e3 * float(np.percentile(ours_latency, 95)),
    )
    result["throughput_ratio_1proc"] = result["ours_programs_per_s_1proc"] / result["naive_programs_per_s"]
    result["throughput_ratio_parallel"] = result["ours_programs_per_s_parallel"] / result["naive_programs_per_s"]
    result["build_ratio"] = result["naive_build_s"] / result["ours_build_s"]
    return result


def report(r: dict) -> None:
    extrapolated = " (extrapolated from the sample)" if r["naive_build_extrapolated"] else ""
    print(f"\n== {r['corpus']}: {r['programs']:,} programs, {r['queries']} queries ==")
    print(f"tokenise+hash, 1 process, same {r['sample']:,} programs:  naive {r['naive_programs_per_s']:8.1f}/s"
          f"   nasloop {r['ours_programs_per_s_1proc']:8.1f}/s   ratio {r['throughput_ratio_1proc']:.1f}x")
    print(f"  (CPU-time ratio on the same sample: {r['cpu_ratio_1proc']:.1f}x)")
    print(f"tokenise+hash, nasloop with {r['workers']} processes, all programs: "
          f"{r['ours_programs_per_s_parallel']:8.1f}/s   ratio {r['throughput_ratio_parallel']:.1f}x vs naive")
    print(f"signatures bit-identical to naive: {r['signatures_identical']}/{r['sample']}")
    print(f"index build: naive {r['naive_build_s']:8.1f} s{extrapolated} (LSH insert {r['naive_lsh_insert_s']:.1f} s)"
          f"   nasloop {r['ours_build_s']:6.1f} s (index insert {r['ours_index_insert_s']:.2f} s)"
          f"   ratio {r['build_ratio']:.1f}x")
    print(f"nasloop build CPU time (all processes): {r['ours_build_cpu_s']:.1f} s "
          f"(= {r['ours_build_cpu_s'] / r['workers']:.1f} s wall on {r['workers']} idle cores)")
    print(f"memory (RSS growth): naive LSH {r['naive_rss_mib']:.0f} MiB   nasloop signatures+index "
          f"{r['ours_rss_mib']:.0f} MiB (signature matrix {r['ours_signature_mib']:.0f} MiB)")
    print(f"query latency: naive {r['naive_query_ms']:.1f} ms (LSH hits only)   nasloop {r['ours_query_ms']:.1f} ms "
          f"mean, {r['ours_query_p95_ms']:.1f} ms p95 (exact nearest neighbour)")
    print(f"near-duplicate decisions: agree with naive {r['decisions_agree_with_naive']}/{r['queries']}, "
          f"with brute force {r['decisions_agree_with_brute_force']}/{r['queries']} "
          f"({r['near_duplicate_queries']} near-duplicates); LSH retrieval identical "
          f"{r['same_lsh_retrieval']}/{r['queries']}")
    print(f"  disagreements: naive missed {r['naive_missed_near_duplicates']} near-duplicates its LSH did "
          f"not retrieve, flagged {r['naive_extra_near_duplicates']} that are not")
    print(f"J_train equal to brute-force maximum: {r['j_train_equals_brute_force']}/{r['queries']}; "
          f"naive logged 0.0 with true J_train > 0: {r['naive_logged_zero_but_true_j_positive']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--scaled", type=int, default=None, help="scaled corpus size [100000; quick 10000]")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None,
                        help="results file [bench-results/novelty.json; quick: novelty-quick.json]")
    args = parser.parse_args()
    if not LEMUR_JSONL.is_file():
        sys.exit(f"shared LEMUR corpus not found at {LEMUR_JSONL}")
    lemur = [record.code for record in read_lemur(LEMUR_JSONL).records]
    novelty = load_config("paper").novelty
    scaled = args.scaled or (10_000 if args.quick else 100_000)
    lemur_sample = 300 if args.quick else len(lemur)
    scaled_sample = 200 if args.quick else 1000
    rng = random.Random(0)
    queries = (make_variants(lemur, 100, seed=1, rates=[0.0, 0.01, 0.02, 0.05])
               + make_variants(lemur, 100, seed=2, rates=[0.1, 0.2, 0.3, 0.5]))
    load = os.getloadavg()
    print(f"novelty benchmark: k={novelty.shingle_size}, num_perm={novelty.num_perm}, "
          f"LSH {novelty.lsh_threshold}, tau {novelty.tau}; {os.cpu_count()} CPUs"
          + (" (quick)" if args.quick else "") + f"; load average {load[0]:.1f}")
    results = [bench_corpus("LEMUR", lemur, queries, lemur_sample, args.workers, novelty, rng)]
    report(results[-1])
    corpus, gen_s = timed(make_variants, lemur, scaled, 3, [0.0, 0.02, 0.05, 0.1, 0.2, 0.4])
    print(f"\n(generated {scaled:,} variants in {gen_s:.1f} s)")
    results.append(bench_corpus(f"scaled-{scaled}", corpus, queries, scaled_sample, args.workers,
                                novelty, rng))
    report(results[-1])
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other work on the machine slows wall times;"
          " ratios are measured in the same run)")
    out = args.json or REPO / "bench-results" / ("novelty-quick.json" if args.quick else "novelty.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=lambda value: value.item()))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
