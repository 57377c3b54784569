"""Relabelled samples found without recovering a trigger: a census of the training set's labels.

The trigger scan (`backdoor_scan`) asks the model which class has a shortcut. On digits it does
not find a trigger laid over the strokes (a T at the bottom middle, a centre patch): every class
there is reached by a few stroke pixels, so the backdoor's mask is not anomalously small. And on
tabular data Neural Cleanse's mask over a few features singles out no class at all. Dirty-label
poison has a second signature that does not depend on where or what the trigger is:

1. **It looks like another class.** A poisoned sample is an input of a source class with a small
   trigger and the target's label. Compared coordinate by coordinate with every difference capped
   (`CAP` data scales, so that a few trigger pixels or features add little), its nearest training
   inputs carry the source's label, not the target's. The share of a sample's nearest neighbours
   that carry its own label, over the same share's median in its class (`cohesion`), is its
   likeness to its class; under `LOOKS_OTHER_LIKENESS` it looks like another class.
2. **The model obeys what those samples share.** Two forms of what they share are tried. Stamped:
   the coordinates on which the group holds one value far from where other classes' inputs sit,
   set to the group's values (a patch trigger), counted beyond a control that sets the same
   coordinates to the rest of the class's own values (so a feature of the class does not count).
   Added: each sample minus the mean of its nearest neighbours of the class it looks like is what
   was added to it, and the coordinate-wise median over the group keeps what they share (a blend),
   counted beyond a control that adds only the part of it the rest of the class holds too (so a
   class's own feature does not count where a large varied background makes the class's samples
   look like other classes). Put on inputs of the other classes, what they share sends them to the
   group's class when the model learned a backdoor. The borderline samples of a clean class share no
   such thing: what each differs by is its own, and their median moves other classes' inputs little.

The census names the class whose group moves the most other-class inputs to it (above the base
rate of those inputs already predicted as the class), when that share is at least
`required_transfer` of the group's size; where it names none, a group that stands out by its size
and moves some inputs is a lead (`lead_class`). The decision (checks.poison_detection) judges both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..training import batching
from ..training.nn import eval_mode

NEIGHBOURS = 10  # nearest training inputs that say which class a sample looks like
CANDIDATES = 100  # ... chosen among this many nearest by plain Euclidean distance (a matmul)
QUERY_LIMIT = 5000  # samples whose likeness is measured (a fixed random sample of larger sets)
POOL_LIMIT = 20000  # training inputs they are compared with (likewise)
# Every coordinate's squared difference is capped at CAP data scales squared: a trigger of a few
# pixels or features then moves a sample little, while the many coordinates in which two classes
# differ still separate them.
CAP = 1.0
RERANK_ELEMENTS = 1 << 24  # differences held at once while re-ranking candidates (64 MB of float32)
WINDOW = 0.1  # data scales: values this close count as one value (shared_coordinates)
SHARED_EXCESS = 0.1  # a share of the class more than the other classes hold that value
MAX_PART = 0.5  # ... held by at most this share of the class
# a sample that looks like its class this little (its share over the class's) looks like another; the
# census's own threshold (the trigger scan's, checks.poison_detection, is stricter: it has no transfer test)
LOOKS_OTHER_LIKENESS = 0.35
MIN_COHESION = 0.3  # a class whose own samples are not each other's neighbours: no census there
MIN_GROUP = 3
TRANSFER_INPUTS = 500  # other-class inputs the shared perturbation is put on
TIGHT = 0.1  # data scales: a coordinate the group holds at one value (median absolute deviation)
SHIFT = 0.5  # ... that far from where the other classes' inputs sit (their median)
# The share of those inputs it must send to the class (above their base rate), by the group's size.
# A few samples share values by chance: on the tenth stop's four rounds of cases (84 clean models,
# 87 backdoored; bench/bench_census.py, bench/census-rounds.jsonl) groups that are not planted
# poison moved at most 0.35 in groups of 3 to 9 and 0.14 in groups of 10 or more; planted poison
# the models learned made groups of 13 to 57 that moved 0.47 (a T learned at attack success 0.53)
# to 1.0, except a blend on the shapes set, which forms no group.
LARGE_GROUP = 10
MIN_TRANSFER = 0.25  # a group of LARGE_GROUP or more
MIN_TRANSFER_SMALL = 0.5  # a smaller group
LEAD_SIZE_RATIO = 2.0  # a lead's group is at least this many times the next class's ...
LEAD_TRANSFER = 0.05  # ... and moves at least this share of the inputs


def required_transfer(n_members: int) -> float:
    """How much of the other classes' inputs a group's shared perturbation must move to count."""
    return MIN_TRANSFER if n_members >= LARGE_GROUP else MIN_TRANSFER_SMALL


@dataclass
class Group:
    """The samples of one class that look like another class, and what they share."""
    label: int
    indices: np.ndarray  # training rows
    sources: dict[int, int]  # the class each looks like -> how many
    transfer: float  # share of other-class inputs the shared perturbation sends to `label`, above base
    base: float  # share of those inputs predicted as `label` without it
    how: str  # "stamped" or "added": the form of the shared perturbation that transferred more
    transfers: dict[str, float]  # each form's share above base
    n_stamped: int  # coordinates the stamped form sets
    perturbation_norm: float  # the added form's L2 norm in data scales
    # share of the other-class inputs predicted as `label` under each form and its control
    moved: dict[str, float] = field(default_factory=dict)


@dataclass
class Census:
    likeness: np.ndarray  # (N,) own-label share over the class's median share; NaN where not measured
    cohesion: dict[int, float]  # class -> its samples' median own-label share
    groups: dict[int, Group]  # classes with at least MIN_GROUP relabelled-looking samples
    target: int | None  # the class whose group's perturbation transfers most, when at least MIN_TRANSFER
    lead: int | None = None  # where no target: a class whose group stands out (see lead_class)
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (N,) the target's (or lead's) group
    scale: np.ndarray | None = None  # (D,) the data scale each coordinate was measured in
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # class -> the coordinates its samples were compared on

    def summary(self) -> dict:
        """What the cache keeps and the decision reads, JSON-ready."""
        return {"target": self.target, "lead": self.lead, "cohesion": {str(c): v for c, v in self.cohesion.items()},
                "rule": {"large_group": LARGE_GROUP, "min_transfer": MIN_TRANSFER,
                         "min_transfer_small": MIN_TRANSFER_SMALL, "lead_size_ratio": LEAD_SIZE_RATIO,
                         "lead_transfer": LEAD_TRANSFER},
                "groups": {str(c): {"n": len(g.indices), "sources": {str(s): n for s, n in g.sources.items()},
                                    "required": required_transfer(len(g.indices)),
                                    "transfer": round(g.transfer, 4), "base": round(g.base, 4),
                                    "how": g.how, "n_stamped": g.n_stamped, "transfers": g.transfers,
                                    "moved": g.moved,
                                    "perturbation_norm": round(g.perturbation_norm, 4)}
                           for c, g in self.groups.items()}}


def _scale(rows: np.ndarray, tabular: bool) -> np.ndarray:
    """Per-coordinate scales: each feature's own spread on tabular data (features have their own
    units); one scale for all pixels of an image (a pixel's unit is the image's)."""
    spread = rows.std(axis=0)
    if tabular:
        return np.where(spread > 1e-6, spread, 1.0)
    typical = float(np.sqrt(np.mean(spread ** 2)))
    return np.full(rows.shape[1], typical if typical > 1e-6 else 1.0)


def _sample(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


@torch.no_grad()
def nearest(rows: np.ndarray, queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(len(queries), NEIGHBOURS) rows of `pool` nearest each query row by the capped distance
    (never the query itself): Euclidean candidates first (a matmul over 256 queries at a time),
    then re-ranked in slices whose differences fit RERANK_ELEMENTS."""
    data = torch.from_numpy(rows)
    reference = data[torch.from_numpy(pool)]
    k = max(1, min(NEIGHBOURS, len(pool) - 1))
    m = min(CANDIDATES, len(pool))
    step = max(1, RERANK_ELEMENTS // (m * max(1, rows.shape[1])))
    out = []
    for start in range(0, len(queries), 256):
        chunk = queries[start:start + 256]
        q = data[torch.from_numpy(chunk)]
        distances = torch.cdist(q, reference)
        distances[torch.from_numpy(chunk[:, None] == pool[None, :])] = float("inf")
        candidates = distances.topk(m, largest=False).indices  # (B, m)
        capped = torch.cat([((q[i:i + step, None, :] - reference[candidates[i:i + step]]) ** 2).clamp_max(CAP ** 2).sum(-1)
                            for i in range(0, len(chunk), step)])
        capped[torch.from_numpy(chunk[:, None] == pool[candidates.numpy()])] = float("inf")
        out.append(pool[candidates.gather(1, capped.topk(k, largest=False).indices).numpy()])
    return np.concatenate(out)


def shared_coordinates(scaled: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    """(D,) bool: coordinates on which a part of class c holds one value (within WINDOW data
    scales) far more often than the other classes do (by SHARED_EXCESS of the class): where a
    stamped trigger sits. On tabular data a trigger of a few features is what makes poisoned
    samples each other's nearest neighbours; without these coordinates they look like their source."""
    inside, outside = scaled[labels == c], scaled[labels != c]
    if not len(inside) or not len(outside):
        return np.zeros(scaled.shape[1], dtype=bool)
    cells_in, cells_out = np.round(inside / WINDOW), np.round(outside / WINDOW)
    mode, count = _column_modes(cells_in)
    share = count / len(inside)
    # a part of the class, not its bulk: what most of a class holds is its own feature; and a part
    # of at least MIN_GROUP samples (in a class of a few, every value is "a part" held by one)
    excess = np.where((share <= MAX_PART) & (count >= MIN_GROUP), share - (cells_out == mode[None, :]).mean(0), 0.0)
    return excess >= SHARED_EXCESS


def _column_modes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's most common value and how often it occurs (ties: the smallest value)."""
    ordered = np.sort(values, axis=0)
    n, d = ordered.shape
    starts = np.ones((n, d), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    run = np.cumsum(starts, axis=0) - 1  # each element's run within its column
    counts = np.zeros((n, d), dtype=np.int64)
    np.add.at(counts, (run, np.broadcast_to(np.arange(d), (n, d))), 1)
    best = counts.argmax(0)  # the longest run of each column
    first = np.argmax(run == best[None, :], axis=0)  # where it starts
    return ordered[first, np.arange(d)], counts[best, np.arange(d)]


def census(model: nn.Module, x, y: torch.Tensor, n_classes: int, device: torch.device, seed: int = 0) -> Census:
    """The census of training set (x, y) with one trained model (see the module's docstring).
    `x` is a tensor or anything indexed like one along its first dimension (a poisoned set's
    patched rows): only the rows the census reads (at most QUERY_LIMIT + POOL_LIMIT) are taken."""
    labels = y.cpu().numpy()
    queries, pool = _sample(len(labels), QUERY_LIMIT, seed), _sample(len(labels), POOL_LIMIT, seed + 1)
    held = np.union1d(queries, pool)
    local = _census(model, x[torch.from_numpy(held)].float().cpu(), labels[held], np.searchsorted(held, queries),
                    np.searchsorted(held, pool), n_classes, device, seed)
    # back to the training set's own rows
    likeness = np.full(len(labels), np.nan)
    likeness[held] = local.likeness
    flags = np.zeros(len(labels), dtype=bool)
    flags[held] = local.flags
    for group in local.groups.values():
        group.indices = held[group.indices]
    named = local.target if local.target is not None else local.lead
    if named is not None:  # on a large set the sample holds part of the named class: measure the rest of it
        rest = np.setdiff1d(np.flatnonzero(labels == named), queries)
        if len(rest):
            more = _rest_looking_other(x, labels, named, rest, pool, local)
            local.groups[named].indices = np.union1d(local.groups[named].indices, more)
            flags[more] = True
    return Census(likeness=likeness, cohesion=local.cohesion, groups=local.groups, target=local.target,
                  lead=local.lead, flags=flags)


def _rest_looking_other(x, labels: np.ndarray, c: int, rest: np.ndarray, pool: np.ndarray, local: Census) -> np.ndarray:
    """The rows of `rest` (class c, outside the census's sample) that look like another class, by
    the sample's own scale, coordinates and class cohesion: the FAIL lists every such row."""
    keep, cohesion = local.kept[c], local.cohesion[c]
    out = []
    for start in range(0, len(rest), QUERY_LIMIT):
        part = rest[start:start + QUERY_LIMIT]
        ids = np.union1d(pool, part)
        data = (x[torch.from_numpy(ids)].float().cpu().flatten(1).numpy() / local.scale).astype(np.float32)
        near = nearest(np.ascontiguousarray(data[:, keep]), np.searchsorted(ids, part), np.searchsorted(ids, pool))
        share = (labels[ids[near]] == c).mean(1)
        out.append(part[share / cohesion < LOOKS_OTHER_LIKENESS])
    return np.concatenate(out)


def _census(model: nn.Module, x: torch.Tensor, labels: np.ndarray, queries: np.ndarray, pool: np.ndarray,
            n_classes: int, device: torch.device, seed: int) -> Census:
    rows = x.flatten(1).numpy()
    scale = _scale(rows, tabular=x.shape[-2] == 1)
    scaled = (rows / scale).astype(np.float32)
    neighbours = np.zeros((len(queries), max(1, min(NEIGHBOURS, len(pool) - 1))), dtype=np.int64)
    kept: dict[int, np.ndarray] = {}
    for c in np.unique(labels[queries]):
        # each class's samples compared without the coordinates a part of the class shares
        keep = ~shared_coordinates(scaled[queries], labels[queries], int(c))
        if not keep.any():  # nothing left to compare: compare everything
            keep[:] = True
        kept[int(c)] = keep
        which = labels[queries] == c
        neighbours[which] = nearest(scaled if keep.all() else np.ascontiguousarray(scaled[:, keep]), queries[which], pool)
    own_share = (labels[neighbours] == labels[queries, None]).mean(1)
    cohesion = {int(c): float(np.median(own_share[labels[queries] == c])) for c in np.unique(labels[queries])}
    likeness = np.full(len(labels), np.nan)
    for c, value in cohesion.items():
        if value >= MIN_COHESION:
            members = labels[queries] == c
            likeness[queries[members]] = own_share[members] / value
    looks_other = np.zeros(len(labels), dtype=bool)
    looks_other[queries] = likeness[queries] < LOOKS_OTHER_LIKENESS
    position = {int(q): i for i, q in enumerate(queries)}
    groups = {}
    for c in range(n_classes):
        members = np.flatnonzero(looks_other & (labels == c))
        if len(members) >= MIN_GROUP:
            # the class's core: its measured samples that look like it (a large set's unmeasured
            # rows may hold unflagged poison, which must not set what the class "holds too")
            core = np.flatnonzero((labels == c) & (likeness >= 1.0))
            groups[c] = _group(model, x, labels, c, members, neighbours[[position[int(i)] for i in members]],
                               looks_other, scale, device, seed, core)
    working = [g for g in groups.values() if g.transfer >= required_transfer(len(g.indices))]
    target = max(working, key=lambda g: g.transfer).label if working else None
    lead = lead_class(groups) if target is None else None
    flags = np.zeros(len(labels), dtype=bool)
    if target is not None or lead is not None:
        flags[groups[target if target is not None else lead].indices] = True
    return Census(likeness=likeness, cohesion=cohesion, groups=groups, target=target, lead=lead, flags=flags,
                  scale=scale, kept=kept)


def lead_class(groups: dict[int, Group]) -> int | None:
    """A class whose group stands out though its shared perturbation moves too few inputs for a
    FAIL: the largest group, of LARGE_GROUP or more, at least LEAD_SIZE_RATIO times the next
    largest, moving at least LEAD_TRANSFER of the other classes' inputs. A backdoor the model
    learned weakly looks like this (on the second held-out round, chosen there: attack success
    0.18-0.42, groups of 40-43 beside at most 15, moving 0.07-0.22); no group of the 105 clean
    models of the rounds up to it did."""
    ranked = sorted(groups.values(), key=lambda g: -len(g.indices))
    if not ranked:
        return None
    largest, second = len(ranked[0].indices), len(ranked[1].indices) if len(ranked) > 1 else 0
    if largest >= LARGE_GROUP and largest >= LEAD_SIZE_RATIO * second and ranked[0].transfer >= LEAD_TRANSFER:
        return ranked[0].label
    return None


def _group(model: nn.Module, x: torch.Tensor, labels: np.ndarray, c: int, members: np.ndarray,
           member_neighbours: np.ndarray, looks_other: np.ndarray, scale: np.ndarray, device: torch.device,
           seed: int, core: np.ndarray | None = None) -> Group:
    """The group of class c: what its samples share, and how far the model obeys it. What they
    share is tried two ways, and the one the model obeys more counts: the coordinates on which the
    group holds one value that the other classes do not (stamped, as a patch trigger is; counted
    beyond a control that stamps the rest of the class's values there), and the coordinate-wise
    median of what each sample adds to its look-alikes (added, as a blend is; counted beyond a
    control that adds only what the rest of the class holds too, `_own_part`)."""
    held = x[torch.from_numpy(members)]
    value = held.median(0).values
    # what the rest of the class holds: its core where given (`_census`), else every other sample of it
    others_of_class = core if core is not None and len(core) else np.setdiff1d(np.flatnonzero(labels == c), members)
    rest = x[torch.from_numpy(others_of_class)]
    typical = rest.median(0).values if len(rest) else value
    sources, added, apart = {}, [], []
    for row, near in zip(members, member_neighbours):
        other = labels[near][labels[near] != c]
        source = int(np.bincount(other).argmax())  # the class it looks like
        sources[source] = sources.get(source, 0) + 1
        look_alikes = x[torch.from_numpy(near[labels[near] == source])].mean(0)
        added.append((x[int(row)] - look_alikes).cpu())
        apart.append((typical - look_alikes).cpu())
    perturbation = torch.stack(added).median(0).values  # what the group shares, not each one's own
    own_part = _own_part(perturbation, torch.stack(apart).median(0).values)
    others = np.flatnonzero((labels != c) & ~looks_other)
    others = others[_sample(len(others), TRANSFER_INPUTS, seed + c)]
    inputs = x[torch.from_numpy(others)]
    lo, hi = x.amin(0), x.amax(0)  # the data's range per coordinate: perturbed inputs stay inside it
    spread = (held - value).abs().median(0).values
    unit = torch.from_numpy(scale.astype(np.float32)).view_as(value)
    # held by the group and not where the other classes' inputs sit: stamped at the group's values,
    # against a control stamped at the rest of the class's values on the same coordinates. What the
    # class itself holds (its own feature) moves inputs in both alike; a trigger only in the first.
    stamp = (spread <= TIGHT * unit) & ((value - inputs.median(0).values).abs() >= SHIFT * unit)
    variants = {"added": lambda xs: torch.minimum(torch.maximum(xs + perturbation, lo), hi),
                "added_control": lambda xs: torch.minimum(torch.maximum(xs + own_part, lo), hi),
                "stamped": lambda xs: torch.where(stamp, value, xs),
                "stamped_control": lambda xs: torch.where(stamp, typical, xs)}
    base, moved = _predicted_shares(model, inputs, c, device, variants)
    transfers = {"added": max(0.0, moved["added"] - max(base, moved["added_control"])),
                 "stamped": max(0.0, moved["stamped"] - max(base, moved["stamped_control"]))}
    best = max(transfers, key=lambda k: transfers[k])
    return Group(label=c, indices=members, sources=dict(sorted(sources.items())),
                 transfer=transfers[best], base=base, how=best, n_stamped=int(stamp.sum()),
                 transfers={k: round(v, 4) for k, v in transfers.items()},
                 perturbation_norm=float((perturbation / unit).norm()),
                 moved={k: round(v, 4) for k, v in moved.items()})


def _own_part(perturbation: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """The part of the group's shared perturbation that the rest of its class holds too: coordinate
    by coordinate, where the rest of the class differs from the same look-alikes (`own`) in the same
    direction, the smaller of the two offsets. Where a class differs from the others by a small
    feature under a large varied background (a colour square on clutter), its samples' nearest
    inputs are other classes', and what they "add" to them is the class's own feature: this part is
    then all of it, and moves other inputs to the class as much. A trigger sits on the group only,
    so little of it is here (twenty-fifth stop: bench/bench_census.py --noisy-background)."""
    agrees = own * perturbation > 0
    return torch.where(agrees, torch.sign(perturbation) * torch.minimum(own.abs(), perturbation.abs()),
                       torch.zeros_like(perturbation))


@torch.no_grad()
def _predicted_shares(model: nn.Module, inputs: torch.Tensor, c: int, device: torch.device,
                      variants: dict) -> tuple[float, dict[str, float]]:
    """The share of `inputs` predicted as c as they are, and under each variant's change."""
    batch = batching.batch_size(model, inputs[:1], device)
    plain, moved = 0, dict.fromkeys(variants, 0)
    with eval_mode(model):
        for start in range(0, len(inputs), batch):
            xs = inputs[start:start + batch]
            plain += int((model(xs.to(device)).argmax(1) == c).sum())
            for name, change in variants.items():
                moved[name] += int((model(change(xs).to(device)).argmax(1) == c).sum())
    n = max(1, len(inputs))
    return plain / n, {name: count / n for name, count in moved.items()}
