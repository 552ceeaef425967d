"""The docs/formats.md tables of the ``format_choices`` recipe, from its CSV.

Run: ``python benchmarks/format_choices_table.py results/format_choices.csv``.
"""

from __future__ import annotations

import sys

import pandas as pd

ROLES = ("data", "grads", "params")


def cell(mean: float, se: float) -> str:
    return f"{mean * 1e4:+.2f} ± {se * 1e4:.2f}"


def main(path: str) -> None:
    df = pd.read_csv(path)
    for d in sorted(df["d"].unique()):
        g = df[df["d"] == d]
        print(f"`d = {d}`, {int(g['trials'].iloc[0])} paired trials, penalty × 10⁴ at N = 10⁴:\n")
        print(
            "| variant | data | data (clean) | gradients | parameters | difference: data "
            "| data (clean) | gradients | parameters |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for v in dict.fromkeys(g["variant"]):
            r = {role: g[(g["variant"] == v) & (g["role"] == role)].iloc[0] for role in ROLES}
            cells = [
                cell(r["data"]["penalty"], r["data"]["penalty_se"]),
                cell(r["data"]["penalty_clean"], r["data"]["penalty_clean_se"]),
                cell(r["grads"]["penalty"], r["grads"]["penalty_se"]),
                cell(r["params"]["penalty"], r["params"]["penalty_se"]),
            ]
            ref = r["data"]["compared_to"]
            if isinstance(ref, str) and ref:
                name = f"{v} (vs {ref})"
                cells += [
                    cell(r["data"]["diff"], r["data"]["diff_se"]),
                    cell(r["data"]["diff_clean"], r["data"]["diff_clean_se"]),
                    cell(r["grads"]["diff"], r["grads"]["diff_se"]),
                    cell(r["params"]["diff"], r["params"]["diff_se"]),
                ]
            else:
                name = v
                cells += ["—"] * 4
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
