#!/usr/bin/env python3
"""Prints bench/run_routing.sh's table from its results (one JSON object a line).

Each line: {"kind": policy|skipped|shared_prefix|two_replicas|sequential, "label", "policy",
"result": glm-loadgen's RESULT json, "prefill": [/mock/stats of each prefiller],
"decode": [/mock/stats of each decoder]}.
"""

import argparse
import json
import sys


def share(stats, key):
    counts = [s.get(key, 0) for s in stats]
    if not counts:
        return "-", None
    lo, hi = min(counts), max(counts)
    ratio = hi / lo if lo > 0 else float("inf")
    text = f"{ratio:.2f} ({'/'.join(str(c) for c in counts)})" if lo > 0 else \
        f"inf ({'/'.join(str(c) for c in counts)})"
    return text, ratio


def mock_hit_ratio(stats):
    prompt = sum(s.get("prompt_tokens", 0) for s in stats)
    cached = sum(s.get("cached_tokens", 0) for s in stats)
    return cached / prompt if prompt else 0.0


def verdict(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "NOT met"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--cache-blocks", type=int, required=True)
    ap.add_argument("--prefillers", type=int, required=True)
    ap.add_argument("--repro", required=True)
    ap.add_argument("--has-policies", type=int, default=1)
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.results, encoding="utf-8") if line.strip()]

    out = sys.stdout
    policy_rows = [r for r in rows if r["kind"] in ("policy", "skipped")]
    by_label = {r["label"]: r for r in policy_rows if r["kind"] == "policy"}
    oracle = by_label.get("oracle")

    out.write("\nRouting policies: 64 conversations x 8 turns unless the command says otherwise "
              "(hit ratio = sum cached / sum prompt tokens)\n")
    header = (f"{'policy':<18}{'hit ratio':>10}{'(mocks)':>9}{'TTFT p50':>10}{'TTFT p99':>10}"
              f"{'ok':>6}{'err':>5}  prefill share max/min (per prefiller)")
    out.write(header + "\n" + "-" * len(header) + "\n")
    figures = {}
    for r in policy_rows:
        if r["kind"] == "skipped":
            out.write(f"{r['label']:<18}  skipped: this glm-proxy has no --prefill-policy\n")
            continue
        res = r["result"] or {}
        hit = res.get("hit_ratio", 0.0)
        p50 = res.get("ttft_ms", {}).get("p50", 0.0)
        p99 = res.get("ttft_ms", {}).get("p99", 0.0)
        text, ratio = share(r["prefill"], "prefill")
        if r["label"] == "oracle":
            text = "- (one prefiller)"
        figures[r["label"]] = {"hit": hit, "p50": p50, "p99": p99, "share": ratio}
        errors = res.get("errors", "?")
        skipped = res.get("skipped_turns", 0)
        err = f"{errors}" + (f"+{skipped}s" if skipped else "")
        out.write(f"{r['label']:<18}{hit:>10.3f}{mock_hit_ratio(r['prefill']):>9.3f}"
                  f"{p50:>8.1f}ms{p99:>8.1f}ms{res.get('ok', 0):>6}{err:>5}  {text}\n")

    if oracle is not None:
        working_set = sum(s.get("prefix_cache_blocks", 0) for s in oracle["prefill"])
        together = args.cache_blocks * args.prefillers
        fits = args.cache_blocks < working_set <= together
        out.write(f"\nworking set (the oracle's distinct blocks): {working_set}; cache per prefiller "
                  f"{args.cache_blocks}, together {together}: "
                  f"{'holds it together, not alone' if fits else 'SIZING OFF for this workload'}\n")

    # Scenarios.
    out.write("\nScenarios\n")
    targets = []
    for r in rows:
        res = r["result"] or {}
        if r["kind"] == "shared_prefix":
            text, ratio = share(r["prefill"], "prefill")
            out.write(f"  one 8 KiB prefix, 32 at once ({r['policy']}): prefill share max/min "
                      f"{text}; hit ratio {res.get('hit_ratio', 0):.3f}; "
                      f"TTFT p50 {res.get('ttft_ms', {}).get('p50', 0):.1f} ms; "
                      f"errors {res.get('errors', '?')}\n")
            targets.append(("8 KiB shared prefix: share max/min <= 1.5", ratio is not None and
                            ratio <= 1.5, f"{ratio:.2f}" if ratio is not None else "-"))
        elif r["kind"] == "two_replicas":
            one = figures.get(r["policy"], figures.get("default"))
            hit = res.get("hit_ratio", 0)
            rel = hit / one["hit"] if one and one["hit"] else None
            out.write(f"  two replicas, turns alternating ({r['policy']}): hit ratio {hit:.3f} vs "
                      f"one replica {one['hit'] if one else float('nan'):.3f}"
                      f" ({rel:.2f}x); errors {res.get('errors', '?')}\n" if rel is not None else
                      f"  two replicas ({r['policy']}): hit ratio {hit:.3f}\n")
            targets.append(("two replicas: >= 0.85 x one replica's hit ratio",
                            rel is not None and rel >= 0.85,
                            f"{rel:.2f}x" if rel is not None else "-"))
        elif r["kind"] == "sequential":
            ptext, pratio = share(r["prefill"], "prefill")
            dtext, dratio = share(r["decode"], "decode")
            p = [s.get("prefill", 0) for s in r["prefill"]]
            d = [s.get("decode", 0) for s in r["decode"]]
            out.write(f"  200 sequential requests, 4 + 4 ({r['policy']}): prefill {'/'.join(map(str, p))}"
                      f", decode {'/'.join(map(str, d))}; errors {res.get('errors', '?')}\n")
            fair = bool(p) and bool(d) and all(48 <= c <= 52 for c in p + d)
            targets.append(("200 sequential over 4 + 4: 50 +- 2 each, both roles", fair,
                            f"prefill {'/'.join(map(str, p))}, decode {'/'.join(map(str, d))}"))

    # Targets of issue 11 that this run can score.
    ca, ll = figures.get("cache_aware"), figures.get("least_loaded")
    if ca and oracle is not None:
        o = figures["oracle"]["hit"]
        targets.insert(0, ("cache_aware hit ratio >= 0.9 x oracle", ca["hit"] >= 0.9 * o,
                           f"{ca['hit']:.3f} vs {0.9 * o:.3f}"))
    if ca and ll:
        targets.insert(1, ("cache_aware hit ratio >= least_loaded + 0.30",
                           ca["hit"] >= ll["hit"] + 0.30, f"{ca['hit']:.3f} vs {ll['hit'] + 0.3:.3f}"))
        targets.insert(2, ("cache_aware TTFT p50 <= 0.7 x least_loaded", ca["p50"] <= 0.7 * ll["p50"],
                           f"{ca['p50']:.1f} vs {0.7 * ll['p50']:.1f} ms"))
    if ca:
        targets.insert(3, ("cache_aware prefill share max/min <= 1.5",
                           ca["share"] is not None and ca["share"] <= 1.5,
                           f"{ca['share']:.2f}" if ca["share"] is not None else "-"))
    if not ca:
        targets.insert(0, ("cache_aware targets", None,
                           "not run: " + ("this glm-proxy has no --prefill-policy"
                                          if not args.has_policies else "cache_aware not in --policies")))
    out.write("\nTargets (issue 11)\n")
    for name, ok, figure in targets:
        out.write(f"  {name:<52} {figure:<40} {verdict(ok)}\n")
    out.write(f"\nReproduce: {args.repro}\n")
    summary = {"figures": figures,
               "targets": [{"target": n, "figure": f, "met": ok} for n, ok, f in targets]}
    out.write("SUMMARY " + json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
