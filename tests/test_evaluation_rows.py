"""The test inputs a suite measures when it measures fewer than the split holds: class-stratified
and fixed, not the split's first rows (which on a split stored class by class hold one or two
classes)."""


import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from swiglu_audit.training.evaluation_rows import class_quotas, stratified_rows


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=300), st.integers(0, 320), st.booleans())
def test_the_rows_are_n_distinct_positions_in_order_each_class_in_proportion(labels, n, sort_by_class):
    labels = np.array(sorted(labels) if sort_by_class else labels)
    rows = stratified_rows(labels, n)
    if n >= len(labels):
        assert rows.tolist() == list(range(len(labels)))
        return
    assert len(rows) == n and len(set(rows.tolist())) == n and (np.diff(rows) > 0).all()
    classes, counts = np.unique(labels, return_counts=True)
    taken = {int(c): int((labels[rows] == c).sum()) for c in classes}
    shares = counts * n / len(labels)
    raised = n >= len(classes) and bool((shares < 1).any())  # classes raised to one row, from the largest
    for c, share in zip(classes, shares):
        if raised:
            assert taken[int(c)] < share + 1 or taken[int(c)] == 1, (c, taken, share)
        else:  # within one row of its share
            assert share - 1 < taken[int(c)] < share + 1, (c, taken, share)
    for c in classes:
        if n >= len(classes):
            assert taken[int(c)] >= 1
        # a class's rows are its first ones in the split's order
        own = np.flatnonzero(labels == c)
        assert sorted(set(rows.tolist()) & set(own.tolist())) == own[:taken[int(c)]].tolist()


def test_quotas_give_every_class_a_row_from_the_largest_and_never_exceed_a_count():
    assert class_quotas(np.array([97, 1, 1, 1]), 4).tolist() == [1, 1, 1, 1]
    assert class_quotas(np.array([50, 50]), 3).tolist() in ([2, 1], [1, 2])
    assert class_quotas(np.array([5, 3, 2]), 9).tolist() == [4, 3, 2]  # 4.5, 2.7, 1.8: the largest remainders .8 and .7
    assert class_quotas(np.array([10, 1]), 1).tolist() == [1, 0]  # one row cannot hold both classes


SORTED_DIGITS = '''
import numpy as np
from sklearn.datasets import load_digits


def make():
    """Digits with the test split stored class by class, as a folder per class would be read."""
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[:, None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    test = np.argsort(y[1400:], kind="stable") + 1400
    return {"x_train": x[:1400], "y_train": y[:1400], "x_test": x[test], "y_test": y[test], "name": "sorted-test"}
'''


def test_a_test_split_stored_class_by_class_is_attacked_across_its_classes(pytester, tmp_path, monkeypatch):
    """Through the user contract: a test split sorted by class, of which the quick profile attacks
    120 of 397 inputs. The first 120 are classes 0 to 2; the attacked ones are every class in
    proportion, and the robust accuracy and the accuracy under corruptions per class measure all ten."""
    from conftest import audit_users_data
    from sklearn.datasets import load_digits

    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    result, doc = audit_users_data(pytester, "sorteddigits", SORTED_DIGITS, "make",
                                   "worst_case_robust_accuracy and not vs_baseline or class_disparity and not accuracy")
    assert not [f for f in doc["findings"] if f["status"] == "ERROR"], result.outlines[-20:]
    assert doc["environment"]["data"]["sizes"]["test"] == 397
    y = load_digits().target[np.random.default_rng(0).permutation(1797)]
    y_test = np.sort(y[1400:])  # the factory's test labels, as it stores them
    assert set(y_test[:120]) == {0, 1, 2}  # what the first 120 rows would have measured
    worst = [f for f in doc["findings"] if f["check"] == "worst_case_robust_accuracy"]
    assert worst
    for f in worst:
        rows = np.array(f["details"]["attacked_test_rows"])
        assert len(rows) == 120 and len(f["details"]["broken_by_example"][0]) == 120
        per_class, share = np.bincount(y_test[rows], minlength=10), np.bincount(y_test, minlength=10) * 120 / 397
        assert (np.abs(per_class - share) < 1).all(), (per_class.tolist(), share.round(1).tolist())
    # the robust accuracy and the accuracy under corruptions (the OOD suite's inputs) per class
    by_class = [f for f in doc["findings"] if f["check"] == "class_disparity"]
    assert sorted({f["id"].rsplit("[", 1)[1] for f in by_class}) == ["corrupted]", "robust]"]
    for f in by_class:
        assert "hold no input of class" not in f["reason"], f["reason"]
        assert sorted(p["class"] for p in f["details"]["per_class"]) == list(range(10))
