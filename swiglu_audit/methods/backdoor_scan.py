"""Find a backdoor in a training set without assuming its trigger.

The published per-sample detectors (spectral signatures, activation clustering) rank samples by
how their features deviate within their labelled class, with fixed cut-offs. Tried on users'
own backdoored data they miss: the poison is a third of the target class at 5% poison (no longer
a "small cluster"), and its spectral scores need not pass a z-score constant. So the scan asks
the *model* first and the samples second:

1. **Which class has a shortcut?** (Neural Cleanse, Wang et al. 2019.) For each class c, find the
   smallest mask m and pattern p such that stamping p through m, `(1 - m) * x + m * p`, sends
   inputs of the other classes to c. A backdoored class needs a far smaller mask (the trigger)
   than a clean class needs to turn a "3" into a "7". The anomaly index is the robust z-score
   of a class's mask size below the median over classes (median absolute deviation, x 1.4826);
   the class with the largest index above `ANOMALY_INDEX` is the suspected target. Below it, one
   of the two most anomalous classes is still named when a group of its own samples carries its
   trigger (step 2): the model-level evidence alone is too weak at 1% poison, the two together
   are not.
2. **Which samples use it?** Every training sample labelled with the suspected target is looked
   at two ways, each with its threshold taken from the data:
   - *it rests on the trigger*: the model's probability of the target falls when the masked
     region is replaced by what other classes hold there (their median), and the prediction leaves
     the class. A poisoned sample is an input of another class plus the trigger; a clean sample of
     the target class keeps its class. Flagged when the fall is an outlier among the class (robust
     z above `DEPENDENCE_Z`), or when the class's falls split into two groups as cleanly as
     `FALL_SILHOUETTE` (the upper one): at 10% the poison is half the class, which breaks the
     z-score, not the split. A looser rule (a fall above one half with the region matching the
     pattern better than 95% of the other classes' inputs) flagged half of a clean class whose
     natural shortcut Neural Cleanse named (anomaly index 4.3 on a user's quick-profile model), a
     false FAIL, so it is not used;
   - *it carries the trigger*: its masked region matches the recovered pattern better than all
     but `MATCH_ONLY_SHARE` of the other classes' inputs (which hold no poison: poison carries the
     target's label, so this reference stays clean however much of the target class is poison),
     and the target class splits into a well-matching and a poorly-matching group (silhouette of
     a 1-D 2-means over the match at least `MATCH_SILHOUETTE`): blended and clean-label poison,
     whose samples need not leave the class, and not a class's own feature, which its samples
     share by degrees (silhouettes 0.55-0.62 measured) rather than exactly.
   Not chosen, measured on the same digits cases (BENCHMARKS.md, seventh stop): spectral
   signatures and activation clustering as IBM ART ships them flag a quarter to a half of the
   training set (precision 0.23 at best); per-sample minimal masks ("how few pixels make this
   sample leave its class") overlap, because a clean 8x8 digit leaves its class after 8 to 10
   pixels and a planted 2x2 patch needs 4 to 5.
3. **No suspected class** means nothing is flagged. Silhouette-gated clustering of each class's
   penultimate features is reported alongside (a class whose two clusters are well separated,
   whatever their sizes), as a lead for a person, not as flags.

The verdict is calibrated elsewhere: the same scan is run on the harness's own planted backdoor
(measure/poisoning.py); when it cannot find that, its "nothing found" here is inconclusive.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training import batching
from ..training.nn import eval_mode

ANOMALY_INDEX = 2.0  # Neural Cleanse's threshold for a suspected target class
# Below ANOMALY_INDEX the two most anomalous classes (index above LEAD_INDEX) are still named
# when at least LEAD_FLAGS of their samples *carry* the trigger (a cleanly separated group): at 1%
# the planted class is the most anomalous one in 10 of the 12 learned cases it was not named in,
# with indices of 0.9 to 2.0. Samples that only *rest on* the trigger do not count here: natural
# features of clean classes (4 and 8 on digits) gave 15 to 32 such samples.
LEAD_INDEX = 0.5
LEAD_CLASSES = 2
LEAD_FLAGS = 3
# A sample's fall in probability must be far beyond its class's: on clean digits models the class
# whose recovered "trigger" is a real stroke gives robust z of 6 to 8 for its most stroke-dependent
# samples, planted poison (at up to a third of the class) 30 to 2,500.
DEPENDENCE_Z = 10.0
# ... or the class's falls must split into two groups this cleanly (1-D 2-means): at 10% the poison
# is half the class and the z-score above loses it, while the split does not. Clean classes' own
# strokes gave splits of 0.80 to 0.91 (digits; at 0.90 one clean model had 85 samples flagged).
FALL_SILHOUETTE = 0.95
MATCH_ONLY_SHARE = 0.001  # a carried trigger matches better than all but this share of the other classes
MATCH_SILHOUETTE = 0.9  # ... in a class split this cleanly by the match
SILHOUETTE_SAMPLES = 2000  # silhouettes are quadratic in the samples: estimated on at most this many
FILL_SAMPLES = 4096  # other-class samples whose median is the neutral fill
PER_CLASS = 60  # each class's trigger is optimised on 2 x PER_CLASS inputs of the other classes
NEIGHBOURS = 10  # nearest training inputs that say which class a flagged sample looks like
NEIGHBOUR_POOL = 20000  # ... among at most this many training samples (a fixed sample of large sets)
COHESION_SAMPLES = 500  # unflagged samples of the target class that give its own share


def inputs_per_step(per_class: int = PER_CLASS) -> int:
    """Other-class inputs each class's trigger optimisation reads per step (what the plan counts)."""
    return 2 * per_class
# Classes reverse-engineered together hold at most this many bytes of inputs each step: batching
# pays where passes are small (digits: 30 KB a class), not where arithmetic dominates.
GROUP_INPUT_BYTES = 1 << 20
GROUP_ROWS = 8192
# The optimisation of each class's mask and pattern: with the first settings (Adam at 0.1, a size
# cost of 0.03) 200 steps left every mask still shrinking, and a planted 2x2 trigger's class was
# not yet the smallest in a third of the digits cases; at 0.3 and 0.1 the masks settle within the
# same steps (see BENCHMARKS.md, seventh stop).
LEARNING_RATE = 0.3
MASK_COST = 0.1
SILHOUETTE_GATE = 0.5  # two clusters in a class this well separated are reported as a lead


@dataclass
class Trigger:
    target: int
    mask: np.ndarray  # (H, W) in [0, 1]
    pattern: np.ndarray  # (C, H, W) in [0, 1]
    mask_l1: float
    success: float  # share of other-class inputs the recovered trigger sends to the target


@dataclass
class ScanResult:
    anomaly_index: list[float]  # per class
    mask_l1: list[float]  # per class
    target: int | None  # the suspected target class, or None
    trigger: Trigger | None  # the recovered trigger of the suspected target
    scores: np.ndarray  # (N,) suspicion of each training sample (0 outside the target class)
    flags: np.ndarray  # (N,) bool
    evidence: dict[str, np.ndarray]  # (N,) each: "fall", "match", "rests_on", "carries" (see _sample_evidence)
    separated_classes: dict[int, float]  # class -> silhouette of its 2-means split, when above the gate
    # (N,) for each flagged sample, the share of its nearest training inputs outside the trigger's
    # region that carry the target label (NaN where not flagged): see _target_label_shares; and the
    # same share's median over the target class's unflagged samples (how much the class's own
    # samples look like it), None when nothing is flagged
    target_neighbours: np.ndarray | None = None
    class_cohesion: float | None = None


def _robust_z(values: np.ndarray) -> np.ndarray:
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median))
    if mad < 1e-12:
        spread = np.std(values)
        mad = spread if spread > 1e-12 else 1.0
    return (values - median) / mad


def reverse_engineer(model: nn.Module, x_other: torch.Tensor, target: int, device: torch.device,
                     steps: int = 200, cost: float = MASK_COST, seed: int = 0) -> Trigger:
    """The smallest mask and pattern that send `x_other` (inputs of other classes) to `target`."""
    return reverse_engineer_classes(model, [x_other], [target], device, steps, cost, [seed])[0]


def reverse_engineer_classes(model: nn.Module, inputs: list[torch.Tensor], targets: list[int], device: torch.device,
                             steps: int = 200, cost: float = MASK_COST, seeds: list[int] | None = None) -> list[Trigger]:
    """`reverse_engineer` for several target classes, small inputs in one optimisation: one
    forward and backward pass over several classes' inputs per step instead of one per class,
    where per-pass overhead is the cost (the digits MLPs: 1.4x faster). Each class has its own mask,
    pattern and loss term, and Adam updates each element from its own gradients, so the result is
    each class's own optimisation (the same masks to the rounding of batched kernels). Large inputs
    (a CNN on 32x32 images) go one class at a time: there arithmetic is the cost, and one big
    batch was slower."""
    seeds = seeds if seeds is not None else [0] * len(targets)
    if not targets:
        return []
    per_group = classes_per_group(model, inputs, device)
    out: list[Trigger] = []
    for start in range(0, len(targets), per_group):
        group = slice(start, start + per_group)
        out += _reverse_engineer_group(model, inputs[group], targets[group], device, steps, cost, seeds[group])
    return out


def classes_per_group(model: nn.Module, inputs: list[torch.Tensor], device: torch.device) -> int:
    """How many classes `reverse_engineer_classes` optimises in one pass: as many as fit in
    GROUP_INPUT_BYTES of inputs and in the device's share of memory with their input gradients,
    at most GROUP_ROWS rows (the attacks' ceiling of 512 rows held the digits MLP's scan to four
    classes a pass: 1.4x slower than all ten in one, bench/scan-groups-cpu.json)."""
    class_bytes = max(x.nbytes for x in inputs)
    return max(1, min(GROUP_INPUT_BYTES // max(1, class_bytes),
                      batching.batch_size(model, inputs[0][:1], device, gradients=True, ceiling=GROUP_ROWS)
                      // max(1, max(len(x) for x in inputs))))


def _reverse_engineer_group(model, inputs, targets, device, steps, cost, seeds) -> list[Trigger]:
    _, c, h, w = inputs[0].shape
    masks, patterns = [], []
    for seed in seeds:  # each class's start drawn as a lone optimisation of that class draws it
        gen = torch.Generator().manual_seed(seed)
        masks.append(torch.randn(1, 1, h, w, generator=gen) * 0.1 - 2.0)
        patterns.append(torch.randn(1, c, h, w, generator=gen) * 0.1)
    mask_raw = torch.cat(masks).to(device).requires_grad_(True)  # (K, 1, H, W)
    pattern_raw = torch.cat(patterns).to(device).requires_grad_(True)  # (K, C, H, W)
    optimiser = torch.optim.Adam([mask_raw, pattern_raw], lr=LEARNING_RATE)
    equal = len({len(xs) for xs in inputs}) == 1
    if equal:  # (K, n, C, H, W): each class's mask broadcasts over its own inputs
        x = torch.stack(list(inputs)).to(device)
        owner = None
    else:  # ragged: each input indexes its class's mask
        x = torch.cat(inputs).to(device)
        owner = torch.cat([torch.full((len(xs),), k, dtype=torch.long) for k, xs in enumerate(inputs)]).to(device)
    counts = torch.tensor([len(xs) for xs in inputs], device=device, dtype=torch.float32)
    labels = torch.tensor(targets, device=device)
    labels = labels[:, None].expand(len(inputs), len(inputs[0])).reshape(-1) if owner is None else labels[owner]

    def stamped(mask, pattern):
        if owner is None:
            return ((1 - mask[:, None]) * x + mask[:, None] * pattern[:, None]).flatten(0, 1)
        return (1 - mask[owner]) * x + mask[owner] * pattern[owner]

    def per_class(values):  # per-input values -> their mean per class
        if owner is None:
            return values.view(len(inputs), -1).mean(1)
        return torch.zeros(len(inputs), device=device).index_add(0, owner, values) / counts

    for _ in range(steps):
        mask, pattern = torch.sigmoid(mask_raw), torch.sigmoid(pattern_raw)
        per_example = F.cross_entropy(model(stamped(mask, pattern)), labels, reduction="none")
        # scale-free size term: the mask's L1 as a share of the input's area
        loss = (per_class(per_example) + cost * mask.flatten(1).sum(1) * (64.0 / (h * w))).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        mask, pattern = torch.sigmoid(mask_raw), torch.sigmoid(pattern_raw)
        success = per_class((model(stamped(mask, pattern)).argmax(1) == labels).float())
    return [Trigger(t, mask[k, 0].cpu().numpy(), pattern[k].cpu().numpy(), float(mask[k].sum()), float(success[k]))
            for k, t in enumerate(targets)]


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Thousands of tiny forward and backward passes: on a CPU, one thread beats several, and
    several processes (xdist workers) spinning on shared cores slow each other down badly."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def scan(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, device: torch.device,
         features: np.ndarray | None = None, seed: int = 0, per_class: int = PER_CLASS, steps: int = 200) -> ScanResult:
    """The scan of one trained model over its training set (x, y)."""
    with _one_cpu_thread(device):
        return _scan(model, x, y, n_classes, device, features, seed, per_class, steps)


def _scan(model, x, y, n_classes, device, features, seed, per_class, steps) -> ScanResult:
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    triggers: list[Trigger | None] = [None] * n_classes
    with eval_mode(model):
        picks = {}
        for c in range(n_classes):
            others = np.flatnonzero(labels != c)
            if len(others) and (labels == c).any():
                picks[c] = rng.choice(others, size=min(inputs_per_step(per_class), len(others)), replace=False)
        found = reverse_engineer_classes(model, [x[torch.from_numpy(p)] for p in picks.values()], list(picks), device,
                                         steps=steps, seeds=[seed + c for c in picks])
        for c, trigger in zip(picks, found):
            triggers[c] = trigger
        # a class whose trigger does not work has no shortcut: count its mask as the input's area
        area = float(x.shape[-1] * x.shape[-2])
        l1 = np.array([t.mask_l1 if t is not None and t.success >= 0.5 else area for t in triggers])
        index = -_robust_z(l1)  # small masks are the anomaly
        target, evidence = _suspected_target(model, x, labels, triggers, index, device)
    flags = evidence["rests_on"] | evidence["carries"]
    neighbours, cohesion = np.full(len(labels), np.nan), None
    if target is not None and flags.any():
        # both against the unflagged samples: poison drawn from one source class must not vote for
        # itself, and the class's own samples are measured against the same pool
        neighbours[flags] = _target_label_shares(x, labels, np.flatnonzero(flags), triggers[target], ~flags)
        rest = np.flatnonzero((labels == target) & ~flags)
        if len(rest) > COHESION_SAMPLES:
            rest = np.sort(np.random.default_rng(0).choice(rest, COHESION_SAMPLES, replace=False))
        if len(rest) > 1:
            cohesion = float(np.median(_target_label_shares(x, labels, rest, triggers[target], ~flags)))
    return ScanResult(anomaly_index=[float(v) for v in index], mask_l1=[float(v) for v in l1], target=target,
                      trigger=triggers[target] if target is not None else None,
                      scores=np.clip(evidence["fall"], 0.0, None) + evidence["match"], flags=flags, evidence=evidence,
                      separated_classes=separated_classes(features, labels, seed) if features is not None else {},
                      target_neighbours=neighbours, class_cohesion=cohesion)


@torch.no_grad()
def _target_label_shares(x: torch.Tensor, labels: np.ndarray, rows: np.ndarray, trigger: Trigger,
                         in_pool: np.ndarray | None = None) -> np.ndarray:
    """For each sample of `rows`: the share of its NEIGHBOURS nearest other training inputs (among
    those `in_pool` marks, all by default), compared outside the trigger's region (the region
    filled as the scan fills it), that are labelled with the target class. Dirty-label poison is an input of another class with the
    trigger and the target's label: without the region it looks like that other class (a share
    far below the one the class's own samples have; the poison of one source class is a small
    part of it). A natural shortcut, a feature that the class's own samples rest on, is flagged on
    genuine samples of the class (a share like the class's), and so is clean-label poison: those
    two the scan cannot tell apart, and says so. The scan measures flagged samples and the class's
    unflagged ones against the unflagged samples alike, so that poison drawn from one source class
    does not vote for itself."""
    target = trigger.target
    pool = np.arange(len(labels)) if in_pool is None else np.flatnonzero(in_pool)
    if len(pool) > NEIGHBOUR_POOL:
        pool = np.sort(np.random.default_rng(0).choice(pool, NEIGHBOUR_POOL, replace=False))
    mask = torch.from_numpy(trigger.mask)[None, None].float()
    fill = _neutral_fill(x, labels, target, torch.device("cpu"))

    def outside(which: np.ndarray) -> torch.Tensor:
        xs = x[torch.from_numpy(which)].float()
        return ((1 - mask) * xs + mask * fill).flatten(1)

    reference, is_target = outside(pool), torch.from_numpy(labels[pool] == target)
    shares = []
    for start in range(0, len(rows), 256):
        chunk = rows[start:start + 256]
        distances = torch.cdist(outside(chunk), reference)
        distances[torch.from_numpy(chunk[:, None] == pool[None, :])] = float("inf")  # not its own neighbour
        nearest = distances.topk(max(1, min(NEIGHBOURS, len(pool) - 1)), largest=False).indices
        shares.append(is_target[nearest].float().mean(1).numpy())
    return np.concatenate(shares)


def _neutral_fill(x: torch.Tensor, labels: np.ndarray, target: int, device: torch.device) -> torch.Tensor:
    """What the other classes hold, pixel by pixel (their median over a fixed sample of at most
    FILL_SAMPLES): stamped through a trigger's mask, it removes the trigger."""
    others = _other_classes_sample(labels, target)
    return x[torch.from_numpy(others)].median(dim=0).values.to(device)[None]


def _other_classes_sample(labels: np.ndarray, target: int) -> np.ndarray:
    others = np.flatnonzero(labels != target)
    if len(others) > FILL_SAMPLES:
        others = np.sort(np.random.default_rng(0).choice(others, FILL_SAMPLES, replace=False))
    return others


def _suspected_target(model, x, labels, triggers, index, device) -> tuple[int | None, dict[str, np.ndarray]]:
    """The class with the most anomalous working trigger when its index passes ANOMALY_INDEX;
    else the first of the LEAD_CLASSES most anomalous ones (index above LEAD_INDEX) whose training
    samples carry its trigger (at least LEAD_FLAGS of them): model-level evidence too weak alone,
    confirmed by sample-level evidence."""
    working = sorted((c for c, t in enumerate(triggers) if t is not None and t.success >= 0.5), key=lambda c: -index[c])
    if working and index[working[0]] > ANOMALY_INDEX:
        return working[0], _sample_evidence(model, x, labels, triggers[working[0]], device)
    for c in working[:LEAD_CLASSES]:
        if index[c] <= LEAD_INDEX:
            break
        evidence = _sample_evidence(model, x, labels, triggers[c], device)
        if evidence["carries"].sum() >= LEAD_FLAGS:
            return c, evidence
    return None, _no_evidence(len(labels))


def _no_evidence(n: int) -> dict[str, np.ndarray]:
    return {"fall": np.zeros(n), "match": np.zeros(n), "rests_on": np.zeros(n, dtype=bool),
            "carries": np.zeros(n, dtype=bool)}


@torch.no_grad()
def _sample_evidence(model: nn.Module, x: torch.Tensor, labels: np.ndarray, trigger: Trigger,
                     device: torch.device) -> dict[str, np.ndarray]:
    """Per training sample (zero outside the target class): "fall", the fall in the target's
    probability without the trigger region; "match", the share of other classes' inputs whose
    region matches the recovered pattern worse; "rests_on" and "carries", the two flags."""
    target = trigger.target
    idx = np.flatnonzero(labels == target)
    mask = torch.from_numpy(trigger.mask).to(device)[None, None]
    pattern = torch.from_numpy(trigger.pattern).to(device)[None]
    # the other classes (a fixed sample of them on large sets, which need not be read whole) give
    # the neutral fill that removes a trigger (their median under the mask) and the reference of
    # how well inputs *without* the trigger match the recovered pattern
    others = _other_classes_sample(labels, target)
    fill = _neutral_fill(x, labels, target, device)
    weight = mask / mask.sum().clamp_min(1e-6)
    batch = batching.batch_size(model, x[:1], device)

    def mismatch(xs):  # how far the masked region is from the recovered pattern
        return ((xs - pattern).abs().mean(1, keepdim=True) * weight).flatten(1).sum(1)

    reference = np.concatenate([mismatch(x[torch.from_numpy(others[start:start + batch])].to(device)).cpu().numpy()
                                for start in range(0, len(others), batch)])
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(idx), batch):
        xs = x[torch.from_numpy(idx[start:start + batch])].to(device)
        p_with = F.softmax(model(xs), 1)[:, target]
        neutralised = model((1 - mask) * xs + mask * fill)
        p_without = F.softmax(neutralised, 1)[:, target]
        parts.append(((p_with - p_without).cpu().numpy(), (neutralised.argmax(1) != target).cpu().numpy(),
                      mismatch(xs).cpu().numpy()))
    dependence, leaves_target, own = (np.concatenate(p) for p in zip(*parts))
    # the share of trigger-free inputs that match the pattern worse than this sample does
    match = 1.0 - np.searchsorted(np.sort(reference), own, side="left") / max(1, len(reference))
    rests_on_trigger = leaves_target & ((_robust_z(dependence) > DEPENDENCE_Z)
                                        | _upper_group(dependence, FALL_SILHOUETTE))
    # the better-matching group: the upper group of the negated log mismatch
    carries_trigger = (match >= 1.0 - MATCH_ONLY_SHARE) & _upper_group(-np.log(own + 1e-3), MATCH_SILHOUETTE)
    out = _no_evidence(len(labels))
    for key, values in (("fall", dependence), ("match", match), ("rests_on", rests_on_trigger),
                        ("carries", carries_trigger)):
        out[key][idx] = values
    return out


def _two_means(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float] | None:
    """A 2-means split of `points` (N, D): (labels, centres, silhouette), or None where the points
    do not split in two. Silhouettes are quadratic in N: estimated on SILHOUETTE_SAMPLES at most."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if len(points) < 4 or np.ptp(points, axis=0).max() < 1e-9:
        return None
    split = KMeans(n_clusters=2, n_init=5, random_state=seed).fit(points)
    if len(set(split.labels_)) < 2:
        return None
    value = float(silhouette_score(points, split.labels_, sample_size=min(len(points), SILHOUETTE_SAMPLES),
                                   random_state=seed))
    return split.labels_, split.cluster_centers_, value


def _upper_group(values: np.ndarray, gate: float) -> np.ndarray:
    """The upper of two groups of `values` when a 1-D 2-means splits them with a silhouette of at
    least `gate` (two well-separated groups, whatever their sizes), else no one."""
    split = _two_means(values[:, None])
    if split is None or split[2] < gate:
        return np.zeros(len(values), dtype=bool)
    labels, centres, _ = split
    return labels == int(np.argmax(centres[:, 0]))


def separated_classes(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[int, float]:
    """Classes whose penultimate features split into two well-separated clusters (silhouette above
    the gate), whatever the clusters' sizes: activation clustering without a size rule."""
    from sklearn.decomposition import PCA

    out = {}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 10:
            continue
        reduced = PCA(n_components=min(10, len(idx) - 1, features.shape[1]), random_state=seed).fit_transform(features[idx])
        split = _two_means(reduced, seed)
        if split is not None and split[2] > SILHOUETTE_GATE:
            out[int(c)] = split[2]
    return out
