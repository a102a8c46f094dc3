#!/usr/bin/env python3
"""Prints the codec benchmark results from target/criterion as a table, with the baseline
ratios that docs/BENCHMARKS.md records. Run after `cargo bench --bench codec`."""
import json, pathlib, sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"

def estimate(group, bench):
    path = root / group / bench / "new" / "estimates.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data["median"]["point_estimate"]

def fmt(ns):
    return "-" if ns is None else f"{ns:8.1f} ns"

print("| comparison | sip2d | sip2 crate | ratio |")
print("|---|---:|---:|---:|")
for group, what in [("baseline_parse_body_11", "parse 11 Checkout, message body (like for like)"),
                    ("baseline_parse_body_23", "parse 23 Patron Status, message body (like for like)"),
                    ("baseline_parse_11", "decode 11 Checkout frame (ours also verifies AY/AZ)"),
                    ("baseline_parse_23", "decode 23 Patron Status frame (ours also verifies AY/AZ)"),
                    ("baseline_encode_12", "encode 12 Checkout Response")]:
    ours, theirs = estimate(group, "sip2d"), estimate(group, "sip2_crate")
    ratio = f"{theirs / ours:.1f}x" if ours and theirs else "-"
    print(f"| {what} | {fmt(ours)} | {fmt(theirs)} | {ratio} |")

for group in ["parse", "encode", "checksum", "framing"]:
    d = root / group
    if not d.exists():
        continue
    print(f"\n| {group} | median |")
    print("|---|---:|")
    for bench in sorted(p.name for p in d.iterdir() if p.is_dir() and p.name != "report"):
        print(f"| {bench} | {fmt(estimate(group, bench))} |")
