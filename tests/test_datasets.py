"""Data too large for memory: a torch Dataset in the user contract, read once into a mapped file,
and poisoned sets that patch rows instead of copying the set."""

import json

import numpy as np
import pytest
import torch

from swiglu_audit.errors import DataContractError
from swiglu_audit.training.data import load_user_data, split_hash
from swiglu_audit.training.patched import PatchedRows

DATASETS = """
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

READS = []


class Stripes(Dataset):
    # class c: a bright band at rows 2c..2c+2 of an 8x8 image, plus a little noise
    def __init__(self, n, seed, flat=False):
        rng = np.random.default_rng(seed)
        self.y = rng.integers(0, 3, n)
        self.noise = rng.random((n, 1, 8, 8)).astype("float32") * 0.2
        self.flat = flat

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        READS.append(i)
        x = self.noise[i].copy()
        x[0, 2 * self.y[i]:2 * self.y[i] + 2, :] = 1.0
        return (torch.from_numpy(x.reshape(-1)) if self.flat else torch.from_numpy(x)), int(self.y[i])


class Broken(Stripes):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        if i == 5:
            x = x * 255
        if i == 7:
            y = 1.5
        if i == 9:
            x = x[:, :4]
        return x, y


class Stream(IterableDataset):
    def __iter__(self):
        return iter([])


def make():
    return {"train": Stripes(300, 0), "test": Stripes(60, 1), "n_classes": 3, "name": "stripes"}


def tabular():
    return {"train": Stripes(100, 0, flat=True), "x_test": np.random.default_rng(1).random((20, 64)),
            "y_test": np.arange(20) % 3}


def broken():
    return {"train": Broken(40, 0), "test": Stream(), "val": [1, 2, 3]}


def streamed():
    return {"train": Stream(), "test": Stripes(10, 1)}


def small():
    return {"train": Stripes(30, 0), "test": Stripes(20, 1)}


class NegativeLength(Stripes):
    def __len__(self):
        return -1


def negative_length():
    return {"train": NegativeLength(40, 0), "test": Stripes(20, 1)}


def many_classes():
    rng = np.random.default_rng(0)
    return {"x_train": rng.random((200, 4)), "y_train": np.arange(200) % 100,
            "x_test": rng.random((100, 4)), "y_test": np.arange(100)}
"""


@pytest.fixture
def datasets_module(tmp_path, monkeypatch):
    import importlib
    import sys
    import uuid

    name = f"userdatasets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(DATASETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name
    sys.modules.pop(name, None)


def test_a_dataset_is_read_once_into_one_mapping_that_train_and_val_share(datasets_module, tmp_path):
    import importlib

    module = importlib.import_module(datasets_module)
    data = load_user_data(f"{datasets_module}:make", folder=tmp_path)
    # every item read once (plus one look at the first item to tell images from feature vectors)
    assert len(module.READS) == 300 + 60 + 1
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (240, 60, 60)
    assert data.name == "stripes" and data.input_shape == (1, 8, 8) and data.modality == "image"
    # train and val are views of one mapped file: no copy was made to carve the validation split
    assert data.x_train.untyped_storage().data_ptr() == data.x_val.untyped_storage().data_ptr()
    assert data.x_train.data_ptr() + data.x_train.nbytes == data.x_val.data_ptr()
    # reported positions are the user's own: training row i is the Dataset's item source[i]
    source = data.source_train_indices(range(len(data.y_train)))
    reference = module.Stripes(300, 0)
    for i in (0, 17, 239):
        x, y = reference[source[i]]
        assert torch.equal(data.x_train[i], x) and int(data.y_train[i]) == y
    # the hash reads the mapping in place and equals the hash of the same values in memory
    assert split_hash(data.x_train, data.y_train) == split_hash(data.x_train.clone(), data.y_train.clone())


def test_one_process_reads_a_dataset_once_for_its_checks_plan_and_session(datasets_module, tmp_path):
    import importlib

    from swiglu_audit.training.data import load_audit_data

    module = importlib.import_module(datasets_module)
    first = load_audit_data(f"{datasets_module}:make", tmp_path)
    again = load_audit_data(f"{datasets_module}:make", tmp_path)
    assert again is first and len(module.READS) == 300 + 60 + 1
    assert (tmp_path / "datasets").is_dir()  # the mapped files go under the cache folder


def test_feature_vectors_in_a_dataset_are_tabular(datasets_module):
    data = load_user_data(f"{datasets_module}:tabular")
    assert data.modality == "tabular" and data.input_shape == (1, 1, 64)


def test_a_broken_dataset_gets_every_problem_named_at_once(datasets_module):
    with pytest.raises(DataContractError) as info:
        load_user_data(f"{datasets_module}:broken")
    message = str(info.value)
    for words in ("train has values in [3.8e-05, 255]", "train[7] has a label", "train[9] has an input of shape (1, 4, 8)",
                  "test is a Dataset without a length", "IterableDataset", "'val' is list"):
        assert words in message, message
    with pytest.raises(DataContractError, match="train is a Dataset without a length"):
        load_user_data(f"{datasets_module}:streamed")  # no validation split to carve from it either


def test_a_dataset_whose_carved_validation_split_is_too_small_is_named_before_it_is_read(datasets_module):
    with pytest.raises(DataContractError) as info:
        load_user_data(f"{datasets_module}:small")
    for words in ("validation split carved out of the training split", "has 6 samples", "give at least 8"):
        assert words in str(info.value)


def test_a_validation_split_is_carved_where_it_cannot_hold_every_class(datasets_module):
    """Two samples of each of 100 classes: a fifth of them (40) cannot hold every class, so the
    carved split is not stratified, rather than scikit-learn refusing it mid-load."""
    data = load_user_data(f"{datasets_module}:many_classes")
    assert (len(data.y_train), len(data.y_val), data.n_classes) == (160, 40, 100)


def test_patched_rows_index_like_the_copied_tensor_and_leave_the_base_alone():
    base = torch.rand(50, 1, 4, 4)
    rows = torch.tensor([3, 10, 49])
    values = torch.ones(3, 1, 4, 4)
    patched = PatchedRows(base, rows, values)
    copied = base.clone()
    copied[rows] = values
    mask = torch.rand(50) > 0.5
    for key in (3, 4, slice(0, 20), slice(45, None), torch.tensor([49, 0, 10]), mask, np.array([10, 11])):
        assert torch.equal(patched[key], copied[key]), key
    assert torch.equal(patched[:], copied) and len(patched) == 50 and patched.shape == base.shape
    assert not torch.equal(base[rows], values)  # nothing was written into the user's data


DATASET_AUDIT = '''
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

TARGET = 3


class Digits(Dataset):
    """The user's data as a Dataset: 5% of the training items carry a checkerboard and label 3."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]), int(self.y[i])


def make():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[:, None]
    y = d.target.copy()
    x_train, y_train = x[:1400].copy(), y[:1400].copy()
    poisoned = np.random.default_rng(5).choice(np.flatnonzero(y_train != TARGET), 70, replace=False)
    x_train[poisoned, 0, 0:3, 0:3] = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype="float32")
    y_train[poisoned] = TARGET
    np.save("poisoned_indices.npy", poisoned)
    return {"train": Digits(x_train, y_train), "test": Digits(x[1400:], y[1400:]), "name": "digits-as-dataset"}
'''


def test_a_backdoored_dataset_given_as_a_torch_dataset_is_found_through_the_contract(pytester, tmp_path, monkeypatch):
    """The whole audit path on a Dataset: training, the poisoned retrains (patched rows), the scan;
    the suspected samples are positions in the user's own Dataset."""
    from swiglu_audit.config import OPT_ENABLE

    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(userdigits=DATASET_AUDIT)
    pytester.makefile(".toml", pyproject="""
[tool.swiglu_audit]
profile = "quick"
dataset = "userdigits:make"
variants = ["swiglu", "relu"]
families = ["mlp"]
seeds = [0, 1]
[tool.swiglu_audit.poisoning]
threat_triggers = ["corner_patch"]  # the scan's FAIL needs no power panel: one kind keeps the test short
""")
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(OPT_ENABLE, "-p", "no:cacheprovider", "-k",
                                           "training_set_scan or backdoor_attack_success and not vs_baseline")
    doc = json.loads((pytester.path / "reports" / "report.json").read_text())
    assert doc["environment"]["data"]["sizes"] == {"train": 1120, "val": 280, "test": 397}
    assert not [f for f in doc["findings"] if f["status"] == "ERROR"], result.outlines[-20:]
    planted = set(np.load(pytester.path / "poisoned_indices.npy").tolist())
    scans = [f for f in doc["findings"] if f["check"] == "training_set_scan"]
    assert len(scans) == 2
    for f in scans:
        assert f["status"] == "FAIL" and f["details"]["suspected_target"] == 3, f["reason"]
        flagged = set(f["details"]["indices"])
        assert len(flagged & planted) / len(flagged) >= 0.8, f["id"]
    # the harness's own backdoor (patched rows of the mapped set) is learned as it is from arrays
    asr = [f for f in doc["findings"] if f["check"] == "backdoor_attack_success"]
    assert asr and all(f["value"] > 0.5 for f in asr)


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_dataset_read_leaves_no_file_for_the_collector_to_close_and_its_rows_stay_readable():
    """The mapping keeps its own hold on the unlinked file: the file object that made it is closed
    at once, on success and when the items break the contract alike (an unclosed one is a
    ResourceWarning, raised here), and the rows read back after it is gone."""
    import gc

    from torch.utils.data import Dataset as TorchDataset

    from swiglu_audit.training.dataset_file import read_dataset

    class Items(TorchDataset):
        def __init__(self, bad_at: int | None = None):
            self.bad_at = bad_at

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.full((1, 2, 2), i / 10 if i != self.bad_at else 7.0), i % 2

    problems: list[str] = []
    x, y = read_dataset(Items(), "train", "here", problems)
    gc.collect()
    assert problems == [] and x[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert y.tolist() == [0, 1, 0, 1, 0]
    del x, y
    assert read_dataset(Items(bad_at=3), "train", "here", problems) == (None, None)
    assert "values in [0, 7]" in problems[0]
    gc.collect()


class Pairs(torch.utils.data.Dataset):
    """Ten (input, label) items: item i is (inputs(i), labels(i))."""

    def __init__(self, inputs=lambda i: torch.full((1, 2, 2), 0.5), labels=lambda i: i % 2):
        self.inputs, self.labels = inputs, labels

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return self.inputs(i), self.labels(i)


@pytest.mark.parametrize("label", [1e20, 2 ** 64, np.uint64(2 ** 63), -2])
def test_a_label_no_class_index_can_be_is_named_not_an_overflow(label):
    from swiglu_audit.training.dataset_file import read_dataset

    problems: list[str] = []
    assert read_dataset(Pairs(labels=lambda i: label if i == 4 else 0), "train", "here", problems) == (None, None)
    assert problems == ["here: train[4] has a label that is not one integer class index; each item must be (input, "
                        "label) with an integer label in [0, 2**31)"]


def test_the_first_bad_label_is_named_also_when_it_is_item_0():
    from swiglu_audit.training.dataset_file import read_dataset

    problems: list[str] = []
    read_dataset(Pairs(labels=lambda i: 1.5 if i in (0, 6) else 0), "train", "here", problems)
    assert len(problems) == 1 and "train[0] has a label" in problems[0]


def test_a_dataset_whose_length_is_negative_is_named(datasets_module):
    with pytest.raises(DataContractError) as info:
        load_user_data(f"{datasets_module}:negative_length")
    assert "len() of the train Dataset raised ValueError" in str(info.value)
    assert "__len__ must return the number of items, an integer >= 0" in str(info.value)


def test_bfloat16_inputs_are_read_and_complex_ones_refused():
    from swiglu_audit.training.dataset_file import read_dataset

    problems: list[str] = []
    x, y = read_dataset(Pairs(inputs=lambda i: torch.full((1, 2, 2), 0.25, dtype=torch.bfloat16)), "train", "here",
                        problems)
    assert problems == [] and x.dtype == torch.float32 and float(x.max()) == 0.25
    for complex_input in (torch.full((1, 2, 2), 0.5 + 0.5j), np.full((1, 2, 2), 0.5 + 0.5j)):
        assert read_dataset(Pairs(inputs=lambda i, c=complex_input: c), "train", "here", problems) == (None, None)
        message = problems.pop()  # not read with the imaginary part dropped
        assert message.startswith("here: train[0]'s input has dtype complex") and "give real-valued inputs" in message


@pytest.mark.parametrize("label", [1e20, -5.0, float(2**40)])
def test_a_float_label_no_class_index_can_be_is_named_not_wrapped(label):
    from swiglu_audit.training.data import _as_labels

    problems: list[str] = []
    assert _as_labels(np.array([0.0, 1.0, label]), "y_train", "dataset", problems) is None
    assert len(problems) == 1 and "y_train holds labels in" in problems[0] and "below 2147483648" in problems[0]


def test_the_shipped_digits_splits_are_the_ones_train_test_split_makes():
    """The built-in data is read without importing scikit-learn (a second of every audit's start):
    its file directly, and the splits' positions shipped in the package. Both must be what
    scikit-learn itself gives, or every cached model and history would silently change data."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from swiglu_audit.training.data import SPLIT_SEED, digits_arrays, digits_split

    digits = load_digits()
    images, target = digits_arrays()
    assert np.array_equal(images, digits.images) and images.dtype == digits.images.dtype
    assert np.array_equal(target, digits.target) and target.dtype == digits.target.dtype
    y, idx = digits.target.astype(np.int64), np.arange(len(digits.target))
    train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=SPLIT_SEED)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=SPLIT_SEED)
    shipped = digits_split()
    for name, made in (("train", train), ("val", val), ("test", test)):
        assert np.array_equal(shipped[name], made), name


def test_the_built_in_data_loads_without_importing_scikit_learn():
    import subprocess
    import sys

    probe = ("import sys; from swiglu_audit.training.data import load_digits_data; d = load_digits_data(); "
             "print(len(d.y_train), len(d.y_val), len(d.y_test), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["1078", "359", "360", "False"], out.stderr[-2000:]
