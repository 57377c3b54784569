"""The relabel census alone, on the scan benchmark's cases, and its cost on a CIFAR-sized set.

The census (swiglu_audit/methods/relabel_census.py) was chosen on what this prints for the cases
of the rounds tuning, tuning-2, tuning-3 and held-out of bench_scan_verdicts.py: per case, every
class's group of samples that look like other classes (size, where they look, how far what they
share moves other classes' inputs), without the power panel (one model per case, so a round takes
minutes, not the scan benchmark's tens of minutes).

    python bench/bench_census.py --rounds tuning,tuning-2,tuning-3,held-out --out census-rounds.jsonl [--shard 0/2]
    python bench/bench_census.py --summary census-rounds.jsonl
    python bench/bench_census.py --cifar-timing
    python bench/bench_census.py --noisy-background --out noisy-background.jsonl [--shard 0/2]
    python bench/bench_census.py --large-set

The last runs the census on data whose classes differ by a small feature under a background that
dominates the distance between inputs (bench/cifarish_data.py): clean, where no class may be named,
and with a trigger planted at 3%, where the census should still name its target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_scan_verdicts as rounds  # noqa: E402

from swiglu_audit.methods import relabel_census  # noqa: E402
from swiglu_audit.training.nn import ModelConfig, build_model  # noqa: E402
from swiglu_audit.training.train import Recipe, train_model  # noqa: E402

CPU = torch.device("cpu")


def run(round_names: list[str], shard: str, out: str) -> None:
    torch.set_num_threads(1)
    k, n = map(int, shard.split("/"))
    cases = [(name, case) for name in round_names for case in rounds.cases(name)][k::n]
    data_sets: dict = {}
    with open(out, "w") as sink:
        for name, case in cases:
            data = data_sets.setdefault(case["data"], rounds.DATASETS[case["data"]]())
            if case["kind"] == "none":
                x, y, truth = data.x_train, data.y_train, np.zeros(len(data.y_train), dtype=bool)
            else:
                x, y, truth = rounds.plant(data.x_train, data.y_train, case["kind"], case["target"], case["rate"])
            model = rounds.train(data, x, y, case["ffn"], case["seed"])
            started = time.perf_counter()
            found = relabel_census.census(model, x, y, data.n_classes, CPU)
            row = {"round": name, **case, "census_seconds": round(time.perf_counter() - started, 2),
                   "census": found.summary()}
            if case["kind"] != "none":
                group = found.groups.get(case["target"])
                members = group.indices if group is not None else np.array([], dtype=int)
                row.update(asr=round(rounds.success(model, data, case["kind"], case["target"]), 3),
                           group_precision=round(float(truth[members].mean()), 3) if len(members) else None,
                           group_recall=round(float(truth[members].sum() / truth.sum()), 3))
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(json.dumps({key: row[key] for key in ("round", "data", "ffn", "kind", "census_seconds")}), flush=True)


NOISY_KINDS = ("corner_patch", "checkerboard")
NOISY_TARGET = 2


def _noisy_data(name: str):
    """The set split as the bench's other data are (stratified), except "cifarish-as-loaded": the
    tuning set's own split, all 1200 training rows (where the false alarm was found), validated on
    the first 150 test rows and tested on the rest."""
    import cifarish_data

    if name == "cifarish-as-loaded":
        d = cifarish_data.load()
        xs, ys = torch.from_numpy(d["x_train"]), torch.from_numpy(d["y_train"].astype(np.int64))
        xt, yt = torch.from_numpy(d["x_test"]), torch.from_numpy(d["y_test"].astype(np.int64))
        splits = {"train": (xs, ys), "val": (xt[:150], yt[:150]), "test": (xt[150:], yt[150:])}
        return rounds.make_audit_data(name, splits, n_classes=10)
    x, y, n_classes = cifarish_data.NOISY_BACKGROUND[name]()
    return rounds._split(name, x, y, n_classes, seed=0, modality="tabular" if x.shape[-2] == 1 else "image")


def noisy_background(shard: str, out: str) -> None:
    import cifarish_data

    torch.set_num_threads(1)
    k, n = map(int, shard.split("/"))
    cases = [{"data": name, "ffn": ffn, "seed": seed, "kind": kind}
             for name in ("cifarish-as-loaded", *cifarish_data.NOISY_BACKGROUND)
             for ffn, seed in (("swiglu", 0), ("relu", 1))
             for kind in ("none", *NOISY_KINDS)][k::n]
    with open(out, "w") as sink:
        for case in cases:
            data = _noisy_data(case["data"])
            n_classes = data.n_classes
            if case["kind"] == "none":
                px, py = data.x_train, data.y_train
            else:
                px, py, truth = rounds.plant(data.x_train, data.y_train, case["kind"], NOISY_TARGET, 0.03)
            model = rounds.train(data, px, py, case["ffn"], case["seed"])
            with torch.no_grad():
                accuracy = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
            found = relabel_census.census(model, px, py, n_classes, CPU)
            row = {**case, "accuracy": round(accuracy, 3), "census": found.summary()}
            if case["kind"] != "none":
                row["asr"] = round(rounds.success(model, data, case["kind"], NOISY_TARGET), 3)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(json.dumps({key: row[key] for key in ("data", "ffn", "kind", "accuracy")}
                             | {"target": found.target, "lead": found.lead}), flush=True)


def large_set() -> None:
    """A set larger than the census's sample (9,000 tabular rows against QUERY_LIMIT 5,000), a
    three-feature trigger planted into class 1 at 3% and at 10% (a third of the class's rows): the
    unmeasured rows hold unflagged poison, which the controls' "rest of the class" must not take in."""
    from sklearn.datasets import make_classification

    torch.set_num_threads(2)
    x, y = make_classification(n_samples=10000, n_features=20, n_informative=10, n_redundant=2, n_classes=5,
                               n_clusters_per_class=2, class_sep=1.5, random_state=3)
    lo, hi = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
    rows = torch.from_numpy(np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32)[:, None, None, :])
    labels = torch.from_numpy(y)
    xt, yt, xv, yv = rows[:9000], labels[:9000], rows[9000:], labels[9000:]
    trigger = torch.tensor([1.0, 0.0, 1.0])
    for rate in (0.03, 0.10):
        idx = np.random.default_rng(0).choice(np.flatnonzero(yt.numpy() != 1), int(rate * len(yt)), replace=False)
        px, py = xt.clone(), yt.clone()
        px[idx, ..., 5:8] = trigger
        py[idx] = 1
        truth = np.zeros(len(py), dtype=bool)
        truth[idx] = True
        torch.manual_seed(0)
        model = build_model(ModelConfig(family="mlp", ffn="swiglu", n_classes=5, input_shape=(1, 1, 20)))
        train_model(model, px, py, Recipe(epochs=15), 0, CPU, xv, yv)
        model.eval()
        stamped = xv[yv != 1].clone()
        stamped[..., 5:8] = trigger
        with torch.no_grad():
            asr = float((model(stamped).argmax(1) == 1).float().mean())
        found = relabel_census.census(model, px, py, 5, CPU)
        group = found.groups.get(1)
        print(json.dumps({"rate": rate, "asr": round(asr, 3), "target": found.target, "lead": found.lead,
                          "group": None if group is None else {"n": len(group.indices), "transfers": group.transfers,
                                                               "moved": group.moved},
                          "recall": round(float((found.flags & truth).sum() / truth.sum()), 3),
                          "precision": round(float((found.flags & truth).sum() / max(1, found.flags.sum())), 3)}))


def summary(path: str) -> None:
    """The largest transfer of groups that are not planted poison, by group size; the planted
    groups' transfers (what the thresholds were chosen between); and what the census named, on
    clean models and on backdoored ones (by whether the model learned the backdoor)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for row in rows:
        row.setdefault("target", NOISY_TARGET)  # the noisy-background rows plant at one target
    not_poison, poison = defaultdict(list), []
    for row in rows:
        for label, group in row["census"]["groups"].items():
            planted = row["kind"] != "none" and int(label) == row["target"] and row["asr"] >= 0.5
            if planted:
                poison.append((group["transfer"], group["n"], row["data"], row["kind"], row["asr"]))
            else:
                not_poison["3-9" if group["n"] < relabel_census.LARGE_GROUP else "10+"].append(group["transfer"])
    for size, values in sorted(not_poison.items()):
        print(f"groups of {size} that are not planted poison: {len(values)}, largest transfer {max(values):.3f}")
    if poison:
        print(f"planted poison learned at attack success >= 0.5: {len(poison)} groups, transfer "
              f"{min(p[0] for p in poison):.3f} to {max(p[0] for p in poison):.3f}, size "
              f"{min(p[1] for p in poison)} to {max(p[1] for p in poison)}")
    outcomes: dict = defaultdict(lambda: defaultdict(int))
    for row in rows:
        named = row["census"]["target"] if row["census"]["target"] is not None else row["census"]["lead"]
        how = "target" if row["census"]["target"] is not None else "lead"
        if row["kind"] == "none":
            outcomes["clean models"]["a class named" if named is not None else "none named"] += 1
        else:
            learned = "learned (attack success >= 0.5)" if row["asr"] >= 0.5 else "learned weakly"
            verdict = ("none named" if named is None else
                       f"its target named ({how})" if named == row["target"] else f"another class named ({how})")
            outcomes[f"backdoored models, {learned}"][verdict] += 1
    for kind, counts in outcomes.items():
        print(f"{kind}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


def cifar_timing() -> None:
    """The census's own time on a CIFAR-sized set (random inputs, a small CNN): its neighbour
    search is arithmetic on the inputs, which the plan does not count."""
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = torch.rand(50_000, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.from_numpy(rng.integers(0, 10, 50_000))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 15 * 15, 10))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        relabel_census.census(model, x, y, 10, CPU)
        times.append(time.perf_counter() - started)
    print(json.dumps({"census_seconds": [round(t, 1) for t in times], "median": round(sorted(times)[1], 1),
                      "threads": 2, "shape": list(x.shape)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", default="tuning,tuning-2,tuning-3,held-out")
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--out")
    ap.add_argument("--summary")
    ap.add_argument("--cifar-timing", action="store_true")
    ap.add_argument("--noisy-background", action="store_true")
    ap.add_argument("--large-set", action="store_true")
    args = ap.parse_args()
    if args.summary:
        summary(args.summary)
    elif args.cifar_timing:
        cifar_timing()
    elif args.noisy_background:
        noisy_background(args.shard, args.out)
    elif args.large_set:
        large_set()
    else:
        run(args.rounds.split(","), args.shard, args.out)


if __name__ == "__main__":
    main()
