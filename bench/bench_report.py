#!/usr/bin/env python3
"""Turns bench/run_bench.sh's measurements (one JSON object a line) into the figures table and
the ratios against issues 4 and 14's targets. Prints a human table and one line `SUMMARY {json}`."""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def find(measures, scenario, target):
    for m in measures:
        if m["scenario"] == scenario and m["target"] == target:
            return m
    return None


def cpu_ms(m, clk_tck):
    """CPU per completed request in ms: (scheduler ns, /proc/PID/stat ticks)."""
    ok = m["result"]["ok"]
    if not ok:
        return None, None
    return m["cpu_ns"] / 1e6 / ok, m["cpu_ticks"] * 1000.0 / clk_tck / ok


def busy(m):
    """How busy CPU 0 and CPU 1 were during the measurement, in percent."""
    b = m.get("cpu_busy") or {}
    return "/".join(str(round(100 * b[c])) for c in ("cpu0", "cpu1") if c in b) or "-"


def fmt(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--hold", type=int, default=8000)
    ap.add_argument("--machine", default="")
    ap.add_argument("--command", default="")
    ap.add_argument("--settings", default="")
    a = ap.parse_args()
    measures = load(a.results)

    out = []
    out.append("")
    out.append("glm-proxy relay benchmark")
    out.append(f"  reproduce: {a.command}")
    out.append(f"  machine:   {a.machine}")
    out.append(f"  settings:  {a.settings}")
    out.append("")
    head = (f"  {'scenario':<8} {'target':<10} {'ok':>7} {'err':>5} {'req/s':>8} "
            f"{'TTFT p50':>9} {'TTFT p99':>9} {'gap p50':>8} {'gap p99':>8} "
            f"{'CPU ms/req':>10} {'(ticks)':>8} {'wait':>6} {'peak RSS':>9} {'busy c0/c1':>10}")
    out.append(head)
    out.append("  " + "-" * (len(head) - 2))
    for m in measures:
        if m["scenario"] == "hold":
            continue
        r = m["result"]
        ns, ticks = cpu_ms(m, a.clk_tck)
        relay = m["target"] != "direct"
        out.append(
            f"  {m['scenario']:<8} {m['target']:<10} {r['ok']:>7} {r['errors']:>5} {r['rps']:>8.1f} "
            f"{r['ttft_ms']['p50']:>9.2f} {r['ttft_ms']['p99']:>9.2f} "
            f"{r['gap_ms']['p50']:>8.2f} {r['gap_ms']['p99']:>8.2f} "
            f"{fmt(ns) if relay else '-':>10} {fmt(ticks) if relay else '-':>8} "
            f"{fmt(m.get('wait_ns', 0) / 1e6 / r['ok'], 2) if relay and r['ok'] else '-':>6} "
            f"{(str(round(m['hwm_kib'] / 1024, 1)) + ' MiB') if relay else '-':>9} "
            f"{busy(m):>10}"
            + (f"  errors: {r['error_kinds']}" if r["errors"] else ""))
    out.append("  (TTFT and gaps in ms; CPU = relay's on-CPU time from /proc/PID/task/*/schedstat,"
               " '(ticks)' the same from utime+stime in /proc/PID/stat; wait = ms per request the relay"
               " was runnable but waiting for its core (schedstat); peak RSS = VmHWM;"
               " busy c0/c1 = % of CPU 0 (load generator + mocks) and CPU 1 (relay) busy, any"
               " process)")

    checks = []  # (name, value text, target text, pass or None)

    def check(name, value, limit, unit, le=True, digits=3):
        if value is None:
            checks.append((name, "n/a", f"{'≤' if le else '≥'} {limit} {unit}", None))
            return
        ok = value <= limit if le else value >= limit
        checks.append((name, f"{value:.{digits}f} {unit}", f"{'≤' if le else '≥'} {limit} {unit}", ok))

    summary = {}
    for scenario, shape in (("s32", "paced: one event per read"), ("b32", "burst: many events per read")):
        g, n = find(measures, scenario, "glm"), find(measures, scenario, "nginx")
        if not (g and n):
            continue
        gc, gt = cpu_ms(g, a.clk_tck)
        nc, nt = cpu_ms(n, a.clk_tck)
        ratio = gc / nc if gc and nc else None
        ratio_ticks = gt / nt if gt and nt else None
        key = scenario[1:] if scenario == "s32" else scenario
        summary.update({f"cpu_ratio_{key}": ratio, f"cpu_ratio_{key}_ticks": ratio_ticks,
                        f"glm_cpu_ms_{key}": gc, f"nginx_cpu_ms_{key}": nc})
        check(f"CPU/request glm ÷ nginx, 32 streams, {scenario}", ratio, 1.3, "x", digits=2)
        out.append(f"  CPU/request at 32 streams, {shape}: glm {fmt(gc)} ms, nginx {fmt(nc)} ms "
                   f"= {fmt(ratio, 2)}x (ticks: {fmt(gt)} / {fmt(nt)} = {fmt(ratio_ticks, 2)}x)")
    w1, w2 = find(measures, "workers", "glm-w1"), find(measures, "workers", "glm-w2")
    if w1 and w2:
        c1, c2 = cpu_ms(w1, a.clk_tck)[0], cpu_ms(w2, a.clk_tck)[0]
        r1, r2 = w1["result"]["rps"], w2["result"]["rps"]
        summary.update(workers1_rps=r1, workers2_rps=r2, workers1_cpu_ms=c1, workers2_cpu_ms=c2)
        out.append(f"  --workers 2 vs 1 (unpinned, 128 burst streams; a figure, not a target: the load"
                   f" generator and mocks share the 2 cores): {r2:.0f} vs {r1:.0f} req/s, CPU "
                   f"{fmt(c2)} vs {fmt(c1)} ms/request")
    for streams in (128, 32):
        g, d, n = (find(measures, f"s{streams}", t) for t in ("glm", "direct", "nginx"))
        if not (g and d):
            continue
        gr, dr = g["result"], d["result"]
        add50 = gr["ttft_ms"]["p50"] - dr["ttft_ms"]["p50"]
        add99 = gr["ttft_ms"]["p99"] - dr["ttft_ms"]["p99"]
        gap99 = gr["gap_ms"]["p99"] - dr["gap_ms"]["p99"]
        summary[f"added_ttft_p50_{streams}"] = add50
        summary[f"added_ttft_p99_{streams}"] = add99
        summary[f"added_gap_p99_{streams}"] = gap99
        if streams == 128:
            check("added TTFT p50, 128 streams (glm − direct)", add50, 1, "ms")
            check("added TTFT p99, 128 streams (glm − direct)", add99, 3, "ms")
            check("added gap p99, 128 streams (glm − direct)", gap99, 1, "ms")
        else:
            check("added gap p99, 32 streams (glm − direct)", gap99, 1, "ms")
        if n:
            nr = n["result"]
            out.append(f"  for scale, nginx − direct at {streams} streams: TTFT p50 "
                       f"{nr['ttft_ms']['p50'] - dr['ttft_ms']['p50']:+.3f} ms, p99 "
                       f"{nr['ttft_ms']['p99'] - dr['ttft_ms']['p99']:+.3f} ms, gap p99 "
                       f"{nr['gap_ms']['p99'] - dr['gap_ms']['p99']:+.3f} ms")
    small, big = find(measures, "prompt", "glm-64w"), find(measures, "prompt", "glm-1MiB")
    if small and big:
        sc, _ = cpu_ms(small, a.clk_tck)
        bc, _ = cpu_ms(big, a.clk_tck)
        extra = bc - sc if sc is not None and bc is not None else None
        summary["extra_cpu_ms_1mib"] = extra
        check("extra CPU for a 1 MiB prompt over 64 words", extra, 1, "ms/request")
        nb, ns = find(measures, "prompt", "nginx-1MiB"), find(measures, "prompt", "nginx-64w")
        if nb and ns:
            nbc, nsc = cpu_ms(nb, a.clk_tck)[0], cpu_ms(ns, a.clk_tck)[0]
            nextra = nbc - nsc if nbc is not None and nsc is not None else None
            summary["nginx_extra_cpu_ms_1mib"] = nextra
            out.append(f"  extra CPU for the 1 MiB prompt: glm {fmt(extra)} ms/request (receives it once,"
                       f" sends it to a prefiller and to a decoder); for scale nginx {fmt(nextra)} "
                       f"ms/request (receives it once, sends it once)")
    for target in ("glm", "nginx"):
        h = find(measures, "hold", target)
        if not h:
            continue
        r = h["result"]
        n = r["streams"]
        per = (h["hwm_kib"] - h["idle_rss_kib"]) / n if n else None
        complete = r["ok"] == n and r["max_open"] == n
        summary[f"hold_{target}"] = dict(streams=n, ok=r["ok"], max_open=r["max_open"],
                                         errors=r["error_kinds"], rss_per_stream_kib=per,
                                         idle_rss_kib=h["idle_rss_kib"], peak_rss_kib=h["hwm_kib"])
        line = (f"  hold through {target}: {r['ok']}/{n} completed, {r['max_open']} open at once, "
                f"errors {r['error_kinds'] or 0}; RSS idle {h['idle_rss_kib']} KiB, peak "
                f"{h['hwm_kib']} KiB, per open stream {fmt(per, 1)} KiB; TTFT p50/p99 "
                f"{r['ttft_ms']['p50']:.1f}/{r['ttft_ms']['p99']:.1f} ms")
        out.append(line)
        if target == "glm":
            checks.append((f"{n} concurrent streams through glm-proxy all complete",
                           f"{r['ok']}/{n} ok, {r['max_open']} open at once",
                           f"{n}/{n}" + ("" if n == 8000 else " (target is 8,000)"), complete))
            check("RSS per open stream, (peak − idle) / streams", per, 24, "KiB", digits=1)

    out.append("")
    out.append(f"  {'figure':<52} {'measured':>28}   {'target':<16} verdict")
    for name, value, target, ok in checks:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        out.append(f"  {name:<52} {value:>28}   {target:<16} {verdict}")
    print("\n".join(out))
    summary["checks"] = [dict(name=c[0], value=c[1], target=c[2], ok=c[3]) for c in checks]
    print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
