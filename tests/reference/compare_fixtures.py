#!/usr/bin/env python3
"""Compare two fixture folders tensor by tensor (e.g. the committed 1.0.0 set against a 1.2.0 regeneration).

For every fixture file in either folder: `identical` (same tensor names, shapes, dtypes and values, same
`config`/`call` metadata), `changed` (lists each differing tensor with its max abs difference, tensors only
in one file, and the metadata keys whose value differs), or `missing` (the file is in one folder only).
Provenance keys (versions, `generator`, informative float64 deviations) are reported but do not make a
fixture `changed` on their own unless `--strict-metadata` is given.

usage: compare_fixtures.py OLD_DIR NEW_DIR [--json OUT.json] [--strict-metadata]
Exit status 0 whatever the differences (it is a report); 2 on bad arguments.
Needs torch and safetensors only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open

# metadata that records where / how a file was made rather than what it tests
PROVENANCE_KEYS = frozenset(
    {
        "generator",
        "ltx_core_version",
        "reference_version",
        "torch_version",
        "f64_max_abs_err",
        "f64_frames_diff",
    }
)


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def tensor_diff(a: torch.Tensor, b: torch.Tensor) -> str | None:
    """None when equal; otherwise a short description of the difference."""
    if a.shape != b.shape:
        return f"shape {list(a.shape)} -> {list(b.shape)}"
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} -> {b.dtype}"
    if a.dtype == torch.bool:
        a, b = a.to(torch.int64), b.to(torch.int64)
    if torch.equal(a, b):
        return None
    if a.is_floating_point():
        da, db = a.double(), b.double()
        nan_a, nan_b = torch.isnan(da), torch.isnan(db)
        if not torch.equal(nan_a, nan_b):
            return "NaN positions differ"
        diff = (da - db).abs().nan_to_num(nan=0.0, posinf=float("inf"))
    else:
        diff = (a.to(torch.float64) - b.to(torch.float64)).abs()
    count = int((diff > 0).sum())
    return f"max abs diff {float(diff.max()):.3e} at {count}/{diff.numel()} values"


def compare(old: Path, new: Path, strict_metadata: bool) -> dict:
    old_t, old_m = load(old)
    new_t, new_m = load(new)
    tensors = {}
    for name in sorted(set(old_t) | set(new_t)):
        if name not in new_t:
            tensors[name] = "only in old"
        elif name not in old_t:
            tensors[name] = "only in new"
        else:
            d = tensor_diff(old_t[name], new_t[name])
            if d is not None:
                tensors[name] = d
    meta = {}
    for key in sorted(set(old_m) | set(new_m)):
        a, b = old_m.get(key), new_m.get(key)
        if a != b:
            meta[key] = {"old": a, "new": b}
    content_meta = {k: v for k, v in meta.items() if k not in PROVENANCE_KEYS}
    changed = bool(tensors) or bool(content_meta) or (strict_metadata and bool(meta))
    return {"status": "changed" if changed else "identical", "tensors": tensors, "metadata": meta}


def _short(value: str | None, limit: int = 160) -> str:
    if value is None:
        return "(absent)"
    return value if len(value) <= limit else value[:limit] + f"... ({len(value)} chars)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--json", type=Path, help="also write the full report as JSON")
    parser.add_argument("--strict-metadata", action="store_true", help="any metadata difference counts as a change")
    args = parser.parse_args()
    if not args.old.is_dir() or not args.new.is_dir():
        parser.error("both arguments must be folders")
        return 2

    old_files = {p.name: p for p in args.old.glob("*.safetensors")}
    new_files = {p.name: p for p in args.new.glob("*.safetensors")}
    report: dict[str, dict] = {}
    for name in sorted(set(old_files) | set(new_files)):
        stem = name.removesuffix(".safetensors")
        if name not in new_files:
            report[stem] = {"status": "missing", "where": "only in " + str(args.old)}
        elif name not in old_files:
            report[stem] = {"status": "missing", "where": "only in " + str(args.new)}
        else:
            report[stem] = compare(old_files[name], new_files[name], args.strict_metadata)

    counts: dict[str, int] = {}
    for stem, r in report.items():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        if r["status"] == "identical":
            print(f"identical  {stem}")
            continue
        if r["status"] == "missing":
            print(f"missing    {stem} ({r['where']})")
            continue
        print(f"changed    {stem}")
        for tensor, what in r["tensors"].items():
            print(f"    tensor {tensor}: {what}")
        for key, v in r["metadata"].items():
            tag = "provenance" if key in PROVENANCE_KEYS else "metadata"
            print(f"    {tag} {key}: {_short(v['old'])} -> {_short(v['new'])}")
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
