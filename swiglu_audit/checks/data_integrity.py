"""The data-integrity checks: duplicates across and within splits, and likely label errors.

Model-free, so each runs once per audit on the configured dataset (built-in or the user's). The
methods are in `methods.integrity`."""

from __future__ import annotations

from ..verdicts.conditions import Ceiling, Status, capped, inconclusive_when, scope_of_a_pass
from ..verdicts.risk import CheckInfo

ANY_LEAK_CAP = capped("any leaked sample", ("n_leaked",), Status.WARN, lambda facts, policy: (
    "any leaked sample deserves a look" if facts["n_leaked"] else None))
_SEARCHED_PAIRS = {"test": "test against train", "val": "validation against train",
                   "test_in_val": "test against validation"}


def _shift_lookups_skipped(facts: dict, policy: dict) -> str | None:
    """The sentence a finding carries where a lookup of shifted copies was over its budget: "no
    leak found" then does not cover them, so a PASS is at best an inconclusive WARN."""
    skipped = {k: s for k, s in facts["shift_search"].items() if not s["searched"]}
    if not skipped:
        return None
    shift = max(s["largest_shift"] for s in skipped.values())
    needed = max(s.get("tflop", 0.0) for s in skipped.values())
    return (f"not looked for ({', '.join(_SEARCHED_PAIRS.get(k, k) for k in skipped)}: over the search's budget, "
            f"details.shift_search): copies shifted by up to {shift} pixel(s) with zeros brought in (a crop of a "
            "padded image; the 1-pixel rule's copies repeat the edge instead), so no leak found does not cover "
            f"them; poisoning.shift_search_tflop = {needed:g} or more would look (about 9 s per TFLOP on a "
            "2-core CPU)")


SHIFT_SEARCH_CAP = inconclusive_when("shifted copies not looked for", ("shift_search",), _shift_lookups_skipped)


def _copies_looked_for(modality: str, reach: int, mirrored: bool) -> str:
    """What a search for copies covers, and what it does not (bench/bench_leakage.py measures both)."""
    if modality != "image":
        return ("looked for: exact rows, and rows near one on robust z-scores (rounded or faintly noised "
                "copies); not for copies rescaled or with their features reordered")
    not_for = "resized crops" if mirrored else "left-right mirror images, crops, resized crops"
    return (f"looked for: exact copies, and copies whose brightness or contrast was scaled (not clipped), "
            f"re-encoded or faintly noised, {'mirrored left to right, ' if mirrored else ''}or shifted by up to "
            f"{reach} pixel{'s' if reach > 1 else ''}; not for {not_for}, copies brightened until they "
            "saturate, gamma-curved, inverted, flipped upside down, rotated or more noised")


def _leak_search_scope(facts: dict, policy: dict) -> str:
    reach = max((s["largest_shift"] for s in facts["shift_search"].values() if s["searched"]), default=1)
    words = _copies_looked_for(facts["modality"], reach, mirrored=True)
    return words + (" (a resized crop of a finely textured image is mostly missed)" if facts["modality"] == "image" else "")


# within one split, copies are looked for by the 1-pixel rule alone: no mirror, no central windows
_WITHIN_SPLIT_SCOPE = scope_of_a_pass("what the search covered", ("modality",),
                                      lambda facts, policy: _copies_looked_for(facts["modality"], 1, mirrored=False))
LEAK_SEARCH_SCOPE = scope_of_a_pass("what the search covered", ("modality", "shift_search"), _leak_search_scope)

CONFLICTING_LABELS_CAP = capped("duplicates with different labels", ("n_conflicting_labels",), Status.WARN,
                                lambda facts, policy: (
                                    f"but {facts['n_conflicting_labels']} duplicate pair(s) carry different labels"
                                    if facts["n_conflicting_labels"] else None))

LEAKAGE = CheckInfo(
    suite="poisoning", check="split_leakage", title="Train/test leakage: duplicates across splits",
    metric="share of test and validation samples with an exact or near duplicate in train",
    rmf=("MEASURE 2.1",), characteristic="valid_reliable", impact="moderate",
    explanation="A test sample that also sits in the training set (exactly, or after what pipelines do "
                "to data) inflates every accuracy in this report. Near duplicates are pairs whose "
                "root-mean-square pixel difference is at most near_duplicate_rms, or whose distance "
                "after a per-image standardisation and a blur, with shifts of up to one pixel and a "
                "left-right mirror (images), or on robust z-scores (tabular rows), is at most "
                "near_duplicate_ratio of the training set's typical nearest-neighbour distance: a "
                "brightened, re-encoded, shifted or mirrored copy is still a copy. Images of 8 "
                "pixels a side or more are also compared on their central windows at every shift of "
                "up to an eighth of the side (at least 1, at most 4 pixels: a random crop of a "
                "padded image brings zeros in) where that search fits its budget "
                "(poisoning.shift_search_tflop); where it does not, the finding says what was not "
                "covered and is at best an inconclusive WARN. The details list the pairs.",
    mitigation="Deduplicate before splitting (hash and nearest-neighbour search), and split by "
               "source (user, session, document) rather than by sample.",
    # an exact share over every test and validation sample, no interval; any leak at all is at
    # least a WARN (the modifier), above the share a FAIL
    condition=Ceiling("max_leakage_share", "share of test and validation samples duplicated in train, "
                                          "or test samples in validation",
                      breached=Status.FAIL),
    modifiers=(ANY_LEAK_CAP, SHIFT_SEARCH_CAP, LEAK_SEARCH_SCOPE),
)

DUPLICATES = CheckInfo(
    suite="poisoning", check="train_duplicates", title="Duplicates within the training set",
    metric="share of training samples that duplicate an earlier one (exact or near)",
    rmf=("MEASURE 2.1",), characteristic="valid_reliable", impact="low",
    explanation="Repeated training samples over-weight whatever they show, and copies with "
                "different labels are a classic sign of poisoning or of a labelling error. Near "
                "duplicates are found as for leakage, without the mirror and central-window "
                "lookups (a training set augmented with its own flips and crops is no leak).",
    mitigation="Deduplicate the training set; investigate copies whose labels disagree.",
    condition=Ceiling("max_duplicate_share", "share"),
    modifiers=(CONFLICTING_LABELS_CAP, _WITHIN_SPLIT_SCOPE),
)

TEST_DUPLICATES = CheckInfo(
    suite="poisoning", check="test_duplicates", title="Duplicates within the test set",
    metric="share of test samples that duplicate an earlier test sample (exact or near)",
    rmf=("MEASURE 2.1", "MEASURE 1.1"), characteristic="valid_reliable", impact="moderate",
    explanation="Every interval in this report counts the test inputs as independent draws: if "
                "these samples are copies of one input (a test set concatenated twice, or "
                "re-encoded copies), an input that appears k times counts k times, the example "
                "part of every interval is narrower than the evidence (the details say by how "
                "much) and a PASS can claim more than was shown. Rows of a few discrete features "
                "can also coincide by chance; those are independent inputs. Near duplicates are "
                "found as for leakage, except that mirror images and the central-window lookups of "
                "shifted copies (zeros brought in) are not used within the test split.",
    mitigation="Deduplicate the test split before the audit; keep one copy of each input.",
    condition=Ceiling("max_duplicate_share", "share"),
    modifiers=(_WITHIN_SPLIT_SCOPE,),
)

LABEL_ERRORS = CheckInfo(
    suite="poisoning", check="label_errors", title="Likely label errors in the training set",
    metric="share of training samples whose given label is likely wrong",
    rmf=("MEASURE 2.1", "MEASURE 2.7"), characteristic="valid_reliable",
    attack_class="poisoning/availability", impact="moderate",
    explanation="Out-of-fold predicted probabilities of a simple model (PCA and logistic "
                "regression, 5-fold cross-validation) flag samples whose given label gets less "
                "than that class's average confidence while another class clears its own (the "
                "confident-learning rule of Northcutt et al.). Mislabels are either noise or "
                "label-flipping poison.",
    mitigation="Have the flagged samples relabelled by a person; trace their provenance.",
    condition=Ceiling("max_label_error_share", "share"),
)
