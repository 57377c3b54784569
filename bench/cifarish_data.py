"""A CIFAR-sized dataset factory for trying the audit from outside (twenty-fourth stop): clean
shapes whose class is the colour of a central square, with a tenth of the test split replaced by
random crops (padding 4) of training images.

    # pyproject.toml of an empty folder: the tests' tiny audit (tests/conftest.py, TINY_AUDIT_TOML)
    # with  dataset = "cifarish_data:load"  under [tool.swiglu_audit]; this file on PYTHONPATH
    python -m pytest --swiglu-audit -n 2

What it showed (quick profile, 4 epochs, MLPs; clean accuracy 0.34 and 0.36): split_leakage FAILs
with all 30 planted crops listed (the central windows at 4 pixels). Found, not mended: the training
set's verdict FAILs too. The relabel census names class 9 (24 samples "look like other classes")
on data with no relabelling at all. The classes differ by a small colour step, so the census's
"added" perturbation (a sample less its look-alikes' mean) is class 9's own feature; the census's
"stamped" form has a control for a class's own feature, its "added" form has none. The models are
also weak.
"""

import numpy as np


def load():
    rng = np.random.default_rng(0)
    n = 1500
    x = np.empty((n, 3, 32, 32), dtype="float32")
    y = rng.integers(0, 10, n)
    for i in range(n):
        img = np.ones((3, 32, 32), dtype="float32") * rng.uniform(0.2, 0.8, (3, 1, 1))
        for _ in range(3):
            y0, x0 = rng.integers(0, 24, 2)
            h, w = rng.integers(3, 10, 2)
            img[:, y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, (3, 1, 1))
        img[:, 12:20, 12:20] = np.array([y[i] / 9.0, 1 - y[i] / 9.0, 0.5])[:, None, None]
        x[i] = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    x_train, y_train, x_test, y_test = x[:1200], y[:1200], x[1200:].copy(), y[1200:].copy()
    for j in range(0, 300, 10):
        source = 3 * j
        padded = np.pad(x_train[source], ((0, 0), (4, 4), (4, 4)))
        dy, dx = rng.integers(0, 9, 2)
        x_test[j] = padded[:, dy:dy + 32, dx:dx + 32]
        y_test[j] = y_train[source]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "name": "cifarish"}
