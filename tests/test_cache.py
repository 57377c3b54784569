import json
import multiprocessing
import os
import warnings

import pytest
import torch

from swiglu_audit.errors import SwigluAuditWarning
from swiglu_audit.training.cache import CheckpointCache, cache_key


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g), "scalar": torch.tensor(1.5)}


def test_roundtrip_is_bitwise_and_second_call_creates_nothing(tmp_path):
    cache, calls = CheckpointCache(tmp_path), []

    def create():
        calls.append(1)
        return _state(), {"seconds": 1.0}

    state, record, cached = cache.get_or_create("k" * 64, create)
    assert not cached and len(calls) == 1
    loaded, record2, cached2 = cache.get_or_create("k" * 64, create)
    assert cached2 and len(calls) == 1 and record2 == {"seconds": 1.0}
    assert all(torch.equal(state[k], loaded[k]) and state[k].dtype == loaded[k].dtype for k in state)
    assert cache.stats.hits == 1 and cache.stats.misses == 1


@pytest.mark.parametrize("damage", ["truncate", "flip-a-byte", "garbage"])
def test_corrupted_entry_is_reported_and_retrained(tmp_path, damage):
    cache = CheckpointCache(tmp_path)
    key = cache_key({"model": "x"})
    cache.get_or_create(key, lambda: (_state(), {}))
    path = cache.path_for(key)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip-a-byte":
        raw[-3] ^= 0xFF  # inside the tensor data: only the checksum can tell
    else:
        raw = bytearray(b"not a safetensors file at all")
    path.write_bytes(bytes(raw))
    calls = []
    with pytest.warns(SwigluAuditWarning, match="corrupted"):
        state, _, cached = cache.get_or_create(key, lambda: (calls.append(1) or _state(), {}))
    assert not cached and calls == [1] and cache.stats.healed == [key]
    assert torch.equal(state["w"], _state()["w"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get_or_create(key, lambda: pytest.fail("retrained twice"))[2]


def _worker(root, key, counter_dir, barrier):
    cache = CheckpointCache(root)
    barrier.wait()  # both processes ask for the same entry at the same moment

    def create():
        (counter_dir / f"trained-{os.getpid()}").write_text("1")
        import time
        time.sleep(0.5)  # hold the lock long enough for the other process to wait on it
        return _state(), {}

    cache.get_or_create(key, create)


def test_two_processes_train_an_entry_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    counter = tmp_path / "counter"
    counter.mkdir()
    procs = [ctx.Process(target=_worker, args=(tmp_path / "cache", "c" * 64, counter, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(list(counter.iterdir())) == 1
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # no half-written files left behind


def test_cache_key_depends_on_every_field():
    base = {"spec": "swiglu", "seed": 0, "recipe": {"epochs": 3}}
    assert cache_key(base) == cache_key(dict(reversed(list(base.items()))))
    assert cache_key(base) != cache_key({**base, "seed": 1})
    assert cache_key(base) != cache_key({**base, "recipe": {"epochs": 4}})


def test_a_planted_entry_with_a_valid_checksum_is_rejected_when_the_project_signs_its_cache(tmp_path):
    from safetensors.torch import save_file

    from swiglu_audit.training.cache import FORMAT, entry_digest

    trusted = CheckpointCache(tmp_path, secret="the-scheduled-audit's-secret")
    key = cache_key({"model": "x"})
    state, _, _ = trusted.get_or_create(key, lambda: (_state(), {}))
    # someone with write access to the cache (a pull request's job, say) plants other weights and
    # recomputes the self-checksum, which therefore still matches
    planted = {k: v + 1 for k, v in state.items()}
    save_file(planted, str(trusted.path_for(key)), metadata={"format": FORMAT, "sha256": entry_digest(planted, {}), "record": "{}"})
    loaded, _, cached = CheckpointCache(tmp_path, secret="").get_or_create(key, lambda: (_state(), {}))
    assert cached and torch.equal(loaded["w"], planted["w"])  # without the key, only damage is caught
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, _, cached = trusted.get_or_create(key, lambda: (_state(), {}))
    assert not cached and torch.equal(loaded["w"], _state()["w"])  # rejected and retrained
    assert any("SWIGLU_AUDIT_CACHE_KEY" in str(w.message) for w in caught)
    assert trusted.get_or_create(key, lambda: (_state(), {}))[2]  # its own signed entry is trusted


def _rewrite_record(path, text, recompute_checksum=False):
    """What someone who can write to the cache, but lacks its key, can do: keep the tensors and the
    other metadata, replace the record (and recompute the checksum, which needs no secret)."""
    import json

    from safetensors.torch import load_file, save_file

    from swiglu_audit.training.cache import entry_digest
    from swiglu_audit.util.io import safetensors_metadata

    tensors, meta = load_file(str(path)), safetensors_metadata(path)
    meta = {**meta, "record": text}
    if recompute_checksum:
        meta["sha256"] = entry_digest(tensors, json.loads(text))
    save_file(tensors, str(path), metadata=meta)


# a poisoning scan's result lives in its record alone: the forgery turns a FAIL into "nothing found"
FOUND, FORGED = {"flagged": [3, 17], "status": "FAIL"}, '{"flagged": [], "status": "PASS"}'


@pytest.mark.parametrize("recompute_checksum", [False, True], ids=["record-only", "checksum-recomputed"])
def test_an_edited_record_is_refused_and_measured_again_when_the_project_signs_its_cache(tmp_path, recompute_checksum):
    cache = CheckpointCache(tmp_path, secret="the-scheduled-audit's-secret")
    key = cache_key({"result": "backdoor-scan"})
    cache.get_or_create(key, lambda: (_state(), FOUND), kind="result")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # untouched, it loads as stored
        assert cache.get_or_create(key, lambda: pytest.fail("measured again"), kind="result")[1:] == (FOUND, True)
    _rewrite_record(cache.path_for(key, "result"), FORGED, recompute_checksum)
    with pytest.warns(SwigluAuditWarning, match="SWIGLU_AUDIT_CACHE_KEY" if recompute_checksum else "checksum mismatch"):
        _, record, cached = cache.get_or_create(key, lambda: (_state(), FOUND), kind="result")
    assert (record, cached) == (FOUND, False) and cache.stats.healed == [key]
    assert cache.get_or_create(key, lambda: pytest.fail("measured again"), kind="result")[1:] == (FOUND, True)


def test_an_edited_record_is_caught_by_the_checksum_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)
    cache = CheckpointCache(tmp_path)
    key = cache_key({"result": "determinism"})
    cache.get_or_create(key, lambda: (_state(), FOUND), kind="result")
    _rewrite_record(cache.path_for(key, "result"), FORGED)
    calls = []
    with pytest.warns(SwigluAuditWarning, match="corrupted.*checksum mismatch.*measured again"):
        _, record, cached = cache.get_or_create(key, lambda: (calls.append(1) or _state(), FOUND), kind="result")
    assert (record, cached, calls) == (FOUND, False, [1]) and cache.stats.healed == [key]


@pytest.mark.parametrize("text", ["[1, 2]", '"PASS"', "3", "null"])
def test_a_record_that_is_not_a_json_object_is_refused(tmp_path, monkeypatch, text):
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)
    cache = CheckpointCache(tmp_path)
    key = cache_key({"result": "learning-curve"})
    cache.get_or_create(key, lambda: (_state(), {"curve": [0.5, 0.25]}), kind="result")
    _rewrite_record(cache.path_for(key, "result"), text, recompute_checksum=True)  # a sound checksum
    assert cache.record(key, "result") is None
    with pytest.warns(SwigluAuditWarning, match="corrupted.*record is not a JSON object"):
        _, record, cached = cache.get_or_create(key, lambda: (_state(), {"curve": [0.5, 0.25]}), kind="result")
    assert (record, cached) == ({"curve": [0.5, 0.25]}, False) and cache.stats.healed == [key]
    # nor is one stored: it would be refused, and measured again, on every run
    with pytest.raises(TypeError, match="must be a dict"):
        cache.get_or_create(cache_key({"result": "other"}), lambda: (_state(), [1, 2]), kind="result")


def test_an_entry_written_before_the_record_was_covered_is_redone_once_and_not_called_corrupted(tmp_path):
    """An honest entry of the earlier format (a checksum and signature of its tensors only, no
    format field) cannot be checked: it is redone, with a message that names the version, and the
    entry written in its place then loads untouched, record and all."""
    import hashlib
    import hmac
    import json

    from safetensors.torch import save_file

    from swiglu_audit.training.cache import tensors_digest

    secret, key = "the-scheduled-audit's-secret", cache_key({"model": "old"})
    cache = CheckpointCache(tmp_path, secret=secret)
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    digest = tensors_digest(_state())
    signature = hmac.new(secret.encode(), f"{key}:{digest}".encode(), hashlib.sha256).hexdigest()
    save_file(_state(), str(path), metadata={"sha256": digest, "record": json.dumps({"seconds": 1.0}), "signature": signature})
    assert cache.record(key) is None  # not described from its header either
    record = {"seconds": 2.0, "curve": [1.0, 0.5], "note": "ünïcode", "nested": {"b": 1, "a": None}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, got, cached = cache.get_or_create(key, lambda: (_state(), record))
    assert not cached and got == record and cache.stats.healed == [key]
    [message] = [str(w.message) for w in caught if issubclass(w.category, SwigluAuditWarning)]
    assert "another version of swiglu-audit (cache format 1" in message and "corrupted" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, got, cached = CheckpointCache(tmp_path, secret=secret).get_or_create(key, lambda: pytest.fail("redone"))
    assert cached and got == record and torch.equal(loaded["w"], _state()["w"])
    assert CheckpointCache(tmp_path).record(key) == record


def _zoo_config(tmp_path):
    from swiglu_audit.config import build_config

    return build_config({"seeds": [0, 1], "variants": ["swiglu", "relu"], "families": ["mlp"], "device": "cpu",
                         "cache_dir": str(tmp_path), "training": {"epochs": 1}}, profile="quick")


def test_a_cached_fine_tuned_model_is_described_without_reading_its_clean_start(tmp_path, monkeypatch):
    """The cheaper poisoning fine-tunes each seed's clean model: on a warm run the fine-tuned
    entries are in the cache, so neither they nor the clean models they started from are read.
    A fine-tuning that is not cached reads its clean start and trains from it."""
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)  # (a signed cache reads every entry)
    config = _zoo_config(tmp_path)
    tuned = AuditSession(config).zoo.models("relu-mlp", tag="poisoned", fine_tune_epochs=1)
    warm = AuditSession(config).zoo
    again = warm.models("relu-mlp", tag="poisoned", fine_tune_epochs=1)
    assert [m.key for m in again] == [m.key for m in tuned] and not any(m.loaded for m in again)
    assert not any(m.loaded for m in warm.models("relu-mlp"))  # the clean starts were not read
    read = again[0].module  # nor when a fine-tuned model's own weights are read
    assert all(torch.equal(a, b) for a, b in zip(read.state_dict().values(), tuned[0].module.state_dict().values()))
    assert not any(m.loaded for m in warm.models("relu-mlp"))
    # a fine-tuning not in the cache (another tag) starts from its clean model, which it reads
    fresh = warm.models("relu-mlp", tag="poisoned-again", fine_tune_epochs=1)
    assert all(m.loaded and not m.cached for m in fresh) and all(m.loaded for m in warm.models("relu-mlp"))
    # the same start, data and seed as the cached fine-tuning: the same weights
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fresh[0].module.state_dict().values(),
                                                               tuned[0].module.state_dict().values()))


def test_models_a_worker_forgot_are_still_reported_as_trained_in_this_run(tmp_path, monkeypatch):
    """An xdist worker drops each model after its measurements (`forget_results`) and its checks
    read it again from the cache: the report still says it was trained in this run."""
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)  # (a signed cache reads every entry)
    audit = AuditSession(_zoo_config(tmp_path))
    trained = audit.zoo.models("relu-mlp")
    audit.forget_results()
    again = audit.zoo.models("relu-mlp")
    assert all(m.cached for m in again) and not any(m.loaded for m in again)  # read from the cache
    runs = audit.meta()["models"]["relu-mlp"]["runs"]["clean"]
    assert [(r["seed"], r["cached"]) for r in runs] == [(0, False), (1, False)]
    assert [r["train_seconds"] for r in runs] == [m.record["seconds"] for m in trained]


def test_a_cached_model_is_described_without_its_weights_and_read_checked_on_first_use(tmp_path):
    """A warm audit's models carry their key and training record; the weights are read (and the
    checkpoint checked) only when a measurement uses them, and a damaged one is retrained then."""
    from swiglu_audit.session import AuditSession

    config = _zoo_config(tmp_path)
    trained = AuditSession(config).zoo.models("relu-mlp")
    warm = AuditSession(config)
    described = warm.zoo.models("relu-mlp")
    assert [m.loaded for m in described] == [False, False] and [m.cached for m in described] == [True, True]
    assert [m.key for m in described] == [m.key for m in trained]
    assert [m.record for m in described] == [m.record for m in trained]
    assert [m.n_parameters for m in described] == [m.n_parameters for m in trained]
    first = described[0].module  # read now
    assert described[0].loaded and not first.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), trained[0].module.state_dict().values()))
    assert warm.cache.stats.hits == 2 and warm.cache.stats.misses == 0  # each counted once
    # the second seed's checkpoint is damaged after it was described: reading it retrains it
    path = warm.cache.path_for(described[1].key)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(SwigluAuditWarning, match="corrupted"):
        module = described[1].module
    assert described[1].cached is False and warm.cache.stats.misses == 1
    # retrained alone (the first run stacked both seeds), and stored again under the same key
    again = AuditSession(config).zoo.models("relu-mlp")[1]
    assert again.key == described[1].key and again.cached
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), again.module.state_dict().values()))


def test_bootstrap_replicates_are_computed_once_and_read_back_from_the_cache(tmp_path):
    """The store keeps the resampling only: a second audit (memory cleared) reads the replicates
    and computes the same interval; other scores, or another bootstrap size, resample again."""
    import numpy as np

    from swiglu_audit.methods import ood_metrics, replicate_store
    from swiglu_audit.session import AuditSession

    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1, 1, (3, 200)), rng.normal(0, 1, (3, 150))
    computed = []
    original = ood_metrics._bootstrap_with  # what computes a set of replicates

    def counting(*args, **kwargs):
        computed.append(1)
        return original(*args, **kwargs)

    session = AuditSession(_zoo_config(tmp_path))
    try:
        ood_metrics._bootstrap_with = counting
        session.keep_replicates()
        replicate_store._MEMORY.clear()
        first = ood_metrics.estimate("auroc", s_in, s_out, 0.95, 300)
        assert len(computed) == 1 and session.cache.stats.result_misses == 0  # the store has its own counts
        replicate_store._MEMORY.clear()  # another process
        second = ood_metrics.estimate("auroc", s_in, s_out, 0.90, 300)
        assert len(computed) == 1  # read back, and the interval read at the new level
        assert second.value == first.value and second.ci_high - second.ci_low < first.ci_high - first.ci_low
        replicate_store.install(None)
        replicate_store._MEMORY.clear()
        fresh = ood_metrics.estimate("auroc", s_in, s_out, 0.90, 300)
        assert (fresh.value, fresh.ci_low, fresh.ci_high) == (second.value, second.ci_low, second.ci_high)
        ood_metrics.estimate("auroc", s_in, s_out[:, :-1], 0.90, 300)
        ood_metrics.estimate("auroc", s_in, s_out, 0.90, 301)
        assert len(computed) == 4
    finally:
        ood_metrics._bootstrap_with = original
        replicate_store.install(None)
        replicate_store._MEMORY.clear()


def test_a_model_is_read_at_once_where_the_cache_is_signed_or_its_parameters_are_sized_on_first_use(
        tmp_path, monkeypatch):
    """Signed cache: the signature covers the weights and the record together, so a record is not
    trusted before the weights are read and the signature checked: models are read at once. A user's model whose parameters exist only after a
    first forward pass (nn.LazyLinear) keys on their real shapes: the second audit finds it."""
    import dataclasses
    import sys
    import types

    from torch import nn

    from swiglu_audit.config import build_config
    from swiglu_audit.session import AuditSession

    module = types.ModuleType("lazy_user_models")
    module.lazy = lambda: nn.Sequential(nn.Flatten(), nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, 10))
    monkeypatch.setitem(sys.modules, "lazy_user_models", module)
    config = build_config({"models": [{"name": "lazy", "factory": "lazy_user_models:lazy", "role": "candidate"},
                                      {"name": "other", "factory": "lazy_user_models:lazy"}],
                           "include_builtin_zoo": False, "seeds": [0, 1], "device": "cpu",
                           "cache_dir": str(tmp_path / "plain"), "training": {"epochs": 1}}, profile="quick")
    first = AuditSession(config).zoo.models("lazy")
    assert [m.record["contract"] for m in first] == [True, True]
    again = AuditSession(config).zoo.models("lazy")
    assert [m.key for m in again] == [m.key for m in first] and not any(m.loaded for m in again)
    assert again[0].n_parameters == first[0].n_parameters == 64 * 32 + 32 + 32 * 10 + 10

    monkeypatch.setenv("SWIGLU_AUDIT_CACHE_KEY", "a-secret")
    signed = dataclasses.replace(config, cache_dir=tmp_path / "signed")
    AuditSession(signed).zoo.models("lazy")
    read = AuditSession(signed).zoo.models("lazy")
    assert all(m.loaded and m.cached for m in read)



def test_golden_folder_names_keep_their_digest_across_cache_formats():
    """Committed golden files are named by a digest of the recipe: the cache format, which is part
    of every cache key, must not rename them (they would be created again, comparing nothing)."""
    import hashlib
    import json

    from swiglu_audit.training.cache import cache_key, fields_digest

    fields = {"training": {"epochs": 3}, "seed": 0, "trainer": 2}
    assert fields_digest(fields) == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    assert cache_key(fields) != fields_digest(fields)


def test_a_user_models_key_follows_the_source_of_the_modules_its_classes_come_from(tmp_path, monkeypatch):
    """A forward pass edited in a file the factory imports changes no parameter shape and not the
    factory's own file: the old key (the factory's source and the shapes) kept serving the old
    checkpoint and its results."""
    from swiglu_audit.util.imports import model_source_digest, source_digest

    package = tmp_path / "usernet_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text(
        "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(4, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n")
    (package / "factory.py").write_text("from .layers import Net\n\ndef build(data):\n    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    model = importlib.import_module("usernet_pkg.factory").build(None)
    before = model_source_digest(model, "usernet_pkg.factory:build"), source_digest("usernet_pkg.factory:build")
    with open(package / "layers.py", "a") as f:  # the forward pass now clamps its input: same shapes
        f.write("\n    def forward(self, x):\n        return self.fc(x.clamp(0, 1))\n")
    from swiglu_audit.util import imports

    imports._modules_digest.cache_clear()  # files are read once per process: the next audit's process
    after = model_source_digest(model, "usernet_pkg.factory:build"), source_digest("usernet_pkg.factory:build")
    assert after[0] != before[0]
    assert after[1] == before[1]  # what the key read before: blind to the edit
    assert model_source_digest(model, None) is None  # the zoo's models: the harness's code


def test_the_data_checks_are_measured_once_and_a_later_audit_reads_them(tmp_path, monkeypatch):
    """Leakage, duplicates and label errors read only the data: kept in the cache under its
    content hash, a later audit re-judges them without searching the splits again; other
    settings (a stricter near-duplicate rule) measure them anew."""
    import dataclasses

    from swiglu_audit.measure import poisoning as measure
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)
    config = _zoo_config(tmp_path)
    first = AuditSession(config)
    leaks, labels = measure.integrity(first), measure.label_errors(first)

    def searched(*args, **kwargs):
        raise AssertionError("searched the splits again")

    monkeypatch.setattr(measure, "NearDuplicateIndex", searched)
    monkeypatch.setattr(measure, "label_issues", searched)
    later = AuditSession(config)
    assert measure.integrity(later) == json.loads(json.dumps(leaks))  # pairs as lists, as a load gives them
    assert measure.label_errors(later) == labels
    stricter = dataclasses.replace(config, poisoning=dataclasses.replace(config.poisoning, near_duplicate_ratio=0.2))
    with pytest.raises(AssertionError, match="searched the splits again"):
        measure.integrity(AuditSession(stricter))


def test_a_cache_that_cannot_keep_the_data_checks_costs_their_time_not_their_findings(tmp_path, monkeypatch):
    from swiglu_audit.errors import CacheError
    from swiglu_audit.measure import poisoning as measure
    from swiglu_audit.session import AuditSession

    audit = AuditSession(_zoo_config(tmp_path))

    def unwritable(*args, **kwargs):
        raise CacheError("checkpoint cache folder cannot be created")
    monkeypatch.setattr(audit, "cached_arrays", unwritable)
    assert measure.integrity(audit)["n_train"] == len(audit.data.y_train)
    assert measure.label_errors(audit)["n_train"] == len(audit.data.y_train)


def test_the_built_in_ops_checks_are_kept_for_the_day_and_a_users_op_is_checked_every_run(tmp_path, monkeypatch):
    """The property test and gradcheck of the audit's own op (its code in the key) are re-judged
    by a warm audit; a user's registered implementation calls code no key holds, so it runs again."""
    from swiglu_audit.measure import numerical as measure
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)
    config = _zoo_config(tmp_path)
    runs: list[str] = []

    def check(name):
        def run():
            runs.append(name)
            return {"passed": True, "worst_ratio": 0.25, "minimal_failure": None}
        return run
    for _ in range(2):  # two audits, one after the other
        audit = AuditSession(config)
        assert measure.op_outcome(audit, "eager", "property", {"examples": 10}, check("eager"))["worst_ratio"] == 0.25
        assert measure.op_outcome(audit, "mine", "property", {"examples": 10}, check("mine"))["passed"]
    assert runs == ["eager", "mine", "mine"]
    # other settings are another entry
    measure.op_outcome(AuditSession(config), "eager", "property", {"examples": 20}, check("eager"))
    assert runs[-1] == "eager"
