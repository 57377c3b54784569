"""Stacked training: each member is its own training (init, batches, optimiser, early stopping),
the zoo stores each member under its own cache key, and models that cannot stack train alone."""

import numpy as np
import pytest
import torch
from torch import nn

from swiglu_audit.training.data import load_digits_data
from swiglu_audit.training.nn import ModelConfig, build_model
from swiglu_audit.training.stacked import NotStackable, stackable, train_stacked
from swiglu_audit.training.train import Recipe, train_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _members(seeds, ffn="swiglu"):
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append(build_model(ModelConfig(family="mlp", ffn=ffn)))
    return out


def test_each_stacked_member_trains_as_it_would_alone(digits):
    """Three seeds, two epochs: the same batches in the same order (digest), the same weights to
    the rounding of batched kernels, the same learning curve points."""
    seeds, recipe = [0, 1, 2], Recipe(epochs=2)
    lone = _members(seeds)
    lone_records = [train_model(m, digits.x_train, digits.y_train, recipe, s, CPU, digits.x_val, digits.y_val,
                                outliers=True) for m, s in zip(lone, seeds)]
    stacked = _members(seeds)
    records = train_stacked(stacked, [digits.x_train] * 3, [digits.y_train] * 3, recipe, seeds, CPU,
                            digits.x_val, digits.y_val, outliers=True)
    for alone, together, a_rec, s_rec in zip(lone, stacked, lone_records, records):
        assert a_rec["batch_digest"] == s_rec["batch_digest"]
        for (name, a), b in zip(alone.state_dict().items(), together.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-4), name
        assert [p["step"] for p in a_rec["curve"]] == [p["step"] for p in s_rec["curve"]]
        # the FFN outliers of each curve point (the deployment suite's growth curve), member by member
        for a_point, s_point in zip(a_rec["curve"], s_rec["curve"]):
            assert set(a_point["ffn"]) == set(s_point["ffn"]) == {"ffns.0.down_proj", "ffns.1.down_proj"}
            for layer, stats in a_point["ffn"].items():
                assert s_point["ffn"][layer]["absmax"] == pytest.approx(stats["absmax"], rel=0.05), layer
        assert s_rec["history"][-1]["val_accuracy"] == pytest.approx(a_rec["history"][-1]["val_accuracy"], abs=0.01)
        assert s_rec["stacked"] == 3 and s_rec["train_flops_per_example"] == a_rec["train_flops_per_example"]
    # the members differ from one another: their own seeds, not one model copied
    assert not torch.allclose(stacked[0].state_dict()["head.weight"], stacked[1].state_dict()["head.weight"])


def test_a_member_trains_on_its_own_data(digits):
    """Member 1's labels are shuffled: it alone fits noise, member 0 learns digits."""
    y_noise = digits.y_train[torch.randperm(len(digits.y_train), generator=torch.Generator().manual_seed(0))]
    records = train_stacked(_members([0, 1]), [digits.x_train, digits.x_train], [digits.y_train, y_noise],
                            Recipe(epochs=3), [0, 1], CPU, digits.x_val, digits.y_val)
    assert records[0]["history"][-1]["val_accuracy"] > 0.9
    assert records[1]["history"][-1]["val_accuracy"] < 0.3


def test_a_member_that_stops_early_keeps_its_weights_while_the_others_train_on(digits):
    """Patience 1 on one constant label stops member 1 early (nothing left to learn); member 0 runs
    every epoch. Member 1's weights are those of its stopping epoch: as a lone run that stopped there."""
    y_noise = torch.zeros_like(digits.y_train)
    recipe = Recipe(epochs=6, patience=1)
    members = _members([0, 1])
    records = train_stacked(members, [digits.x_train, digits.x_train], [digits.y_train, y_noise], recipe, [0, 1],
                            CPU, digits.x_val, digits.y_val)
    stopped = records[1]["stopped_epoch"]
    assert stopped is not None and stopped < 6 and len(records[1]["history"]) == stopped
    assert records[0]["stopped_epoch"] is None and len(records[0]["history"]) == 6
    lone = _members([1])[0]
    lone_record = train_model(lone, digits.x_train, y_noise, recipe, 1, CPU, digits.x_val, digits.y_val)
    assert lone_record["stopped_epoch"] == stopped
    for a, b in zip(lone.state_dict().values(), members[1].state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3)


class _WithBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(x))


class _BranchesOnData(nn.Module):
    """Takes a branch on a value of its input: vmap cannot batch that."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        if x.sum().item() > 0:
            x = x * 2
        return self.head(x.flatten(1))


def test_models_that_cannot_stack_are_named_and_refused(digits):
    assert "BatchNorm1d" in stackable([_WithBatchNorm(), _WithBatchNorm()])
    assert stackable(_members([0])) == "a single model"
    assert stackable(_members([0, 1])) is None  # a fixed normalisation buffer is read, not written
    with pytest.raises(NotStackable, match="cannot run batched"):
        train_stacked([_BranchesOnData(), _BranchesOnData()], [digits.x_train] * 2, [digits.y_train] * 2,
                      Recipe(epochs=1), [0, 1], CPU)


def test_the_zoo_stores_each_stacked_member_under_its_own_key_and_a_lone_run_reads_it(tmp_path, monkeypatch):
    """Stacked (SWIGLU_AUDIT_STACK=1: wherever it can, untimed) then lone (=0) on one cache: the
    lone run loads every seed the stacked run trained, and the records say how each was trained."""
    from swiglu_audit.config import build_config
    from swiglu_audit.session import AuditSession

    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")
    config = build_config({"seeds": [0, 1, 2], "variants": ["swiglu", "relu"], "families": ["mlp"], "device": "cpu",
                           "cache_dir": str(tmp_path), "training": {"epochs": 2}}, profile="quick")
    first = AuditSession(config).zoo.models("relu-mlp")
    assert [m.cached for m in first] == [False] * 3 and all(m.record["stacked"] == 3 for m in first)
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "0")
    again = AuditSession(config).zoo.models("relu-mlp")
    assert [m.cached for m in again] == [True] * 3
    for a, b in zip(first, again):
        assert a.key == b.key
        assert all(torch.equal(x, y) for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()))
    # more seeds later: only the new ones train (two of them: stacked together)
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")
    wider = AuditSession(config).zoo.models("relu-mlp", seeds=(0, 1, 2, 3, 4))
    assert [m.cached for m in wider] == [True, True, True, False, False]
    assert [m.record.get("stacked") for m in wider[3:]] == [2, 2]
    assert np.isfinite([m.record["history"][-1]["val_accuracy"] for m in wider]).all()


def test_a_users_model_that_cannot_stack_trains_alone_and_the_plan_says_so(tmp_path, monkeypatch):
    """A user's model with BatchNorm (running statistics updated in place): the plan counts its
    seeds one by one, and the zoo trains them one by one; the stackable one is stacked."""
    import sys
    import types

    from swiglu_audit.config import build_config
    from swiglu_audit.planning.plan import make_plan, plan_lines
    from swiglu_audit.session import AuditSession

    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")  # stack what can stack, untimed
    module = types.ModuleType("stacking_user_models")
    module.with_batchnorm = _WithBatchNorm
    module.plain = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    monkeypatch.setitem(sys.modules, "stacking_user_models", module)
    config = build_config({"models": [{"name": "bn", "factory": "stacking_user_models:with_batchnorm", "role": "candidate"},
                                      {"name": "plain", "factory": "stacking_user_models:plain"}],
                           "seeds": [0, 1], "device": "cpu", "cache_dir": str(tmp_path), "training": {"epochs": 1}},
                          profile="quick")
    audit = AuditSession(config)
    lines = {line.split(":")[0].strip(): line for line in plan_lines(make_plan(audit, 1), 0)[1:]}
    assert "(seeds stacked)" not in lines["bn"] and "clean x 1 epochs (seeds stacked)" in lines["plain"]
    assert "trains one by one: BatchNorm1d updates its running statistics in place" in lines["bn"]
    assert [m.record.get("stacked") for m in audit.zoo.models("bn")] == [None, None]
    assert [m.record.get("stacked") for m in audit.zoo.models("plain")] == [2, 2]


def test_a_model_vmap_would_run_member_by_member_is_not_stacked(digits):
    """The zoo's ViT: vmap has no batching rule for CPU attention, so a stacked training would be
    slower than lone ones (BENCHMARKS.md); it is refused at its first step, and trains alone."""
    vits = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        vits.append(build_model(ModelConfig(family="vit", ffn="swiglu")))
    with pytest.raises(NotStackable) as refused:
        train_stacked(vits, [digits.x_train] * 2, [digits.y_train] * 2, Recipe(epochs=1), [0, 1], CPU)
    # the plan's sentence names the operation, in the audit's words, not torch's plea to file an issue
    assert str(refused.value) == ("vmap has no batching rule for aten::_scaled_dot_product_flash_attention_for_cpu, "
                                  "so stacked it would run member by member")


def test_the_seeds_train_one_by_one_only_where_stacking_is_timed_clearly_slower():
    from swiglu_audit.training.stack_choice import SLOWER_ABOVE, choose

    faster = choose(lone_step=0.001, stacked_step=0.002, members=3)  # 0.67x the lone steps
    assert faster.stack and "3 seeds stacked took 0.67x the time of one by one" in faster.why
    slower = choose(lone_step=0.05, stacked_step=0.26, members=3)  # a CNN's convolutions under vmap
    assert not slower.stack and slower.why.startswith("trains one by one: 3 seeds stacked took 1.73x")
    # within the margin for timing noise the default holds: stacked, whichever way the noise went
    assert choose(0.001, 0.00295, 3).stack and choose(0.001, 0.00315, 3).stack  # 0.98x and 1.05x
    assert SLOWER_ABOVE == 1.1 and not choose(0.001, 0.0034, 3).stack  # 1.13x: clearly slower


def test_timing_refuses_what_cannot_stack_and_says_why(digits):
    from swiglu_audit.training.stack_choice import time_stacking

    choice = time_stacking(_WithBatchNorm(), digits.x_train, digits.y_train, 3, 64, CPU)
    assert not choice.stack and "BatchNorm1d" in choice.why and choice.stacked_step == 0.0
    vit = build_model(ModelConfig(family="vit", ffn="swiglu"))
    choice = time_stacking(vit, digits.x_train, digits.y_train, 2, 64, CPU)
    assert not choice.stack and "batching rule" in choice.why
    mlp = _members([0])[0]
    timed = time_stacking(mlp, digits.x_train, digits.y_train, 3, 64, CPU)
    # which way it goes is the machine's; on a busy machine (the other test worker's audit) the
    # 4 steps between the short and the long timing can drown in noise, which the choice must say
    assert (timed.lone_step > 0 and timed.stacked_step > 0 and timed.lasting) or \
        (timed.stack and not timed.lasting and "lost in noise" in timed.why), timed
    # too few batches to time: stacked for now, and not kept in the cache
    short = time_stacking(mlp, digits.x_train[:128], digits.y_train[:128], 3, 64, CPU)
    assert short.stack and not short.lasting and short.lone_step == 0.0
    # a model the timing cannot copy trains one by one, for this run only
    uncopyable = _members([0])[0]
    uncopyable.__deepcopy__ = lambda memo: (_ for _ in ()).throw(TypeError("cannot copy me"))
    failed = time_stacking(uncopyable, digits.x_train, digits.y_train, 3, 64, CPU)
    assert not failed.stack and not failed.lasting and "could not be timed (TypeError: cannot copy me)" in failed.why


def test_the_zoo_trains_alone_where_stacking_is_timed_slower_and_the_plan_says_why(tmp_path, monkeypatch):
    """The default: the zoo times stacking once per model (kept in the cache); a model
    timed slower stacked trains its seeds one by one, and the plan prices and says that."""
    from swiglu_audit.config import build_config
    from swiglu_audit.planning.plan import make_plan, plan_lines
    from swiglu_audit.session import AuditSession
    from swiglu_audit.training import zoo_stacking
    from swiglu_audit.training.stack_choice import choose

    monkeypatch.delenv("SWIGLU_AUDIT_STACK", raising=False)
    calls = []

    def slower_stacked(model, x, y, members, batch_size, device, timed=True):
        calls.append(members)
        return choose(0.05, 0.26, members)

    monkeypatch.setattr(zoo_stacking, "time_stacking", slower_stacked)
    config = build_config({"seeds": [0, 1, 2], "variants": ["swiglu", "relu"], "families": ["mlp"], "device": "cpu",
                           "cache_dir": str(tmp_path), "training": {"epochs": 1}}, profile="quick")
    audit = AuditSession(config)
    line = next(line for line in plan_lines(make_plan(audit, 1), 0) if line.startswith("  relu-mlp:"))
    assert "(seeds stacked)" not in line and "trains one by one: 3 seeds stacked took 1.73x" in line
    assert [m.record.get("stacked") for m in audit.zoo.models("relu-mlp")] == [None] * 3
    assert calls == [3, 3]  # once per model: the plan and the trainings share the choice
    # a second audit reads the choice from the cache instead of timing again
    again = AuditSession(config)
    assert not again.zoo.stacking_choice(again.zoo.spec("relu-mlp")).stack and calls == [3, 3]
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "0")
    assert again.zoo.stacking_choice(again.zoo.spec("relu-mlp")).why == "trains one by one: stacking is off (SWIGLU_AUDIT_STACK=0)"


def test_trainings_on_several_sets_stack_across_sets_each_on_its_own_set(tmp_path, monkeypatch):
    """`Zoo.train_together` (the poisoning suite's sets): the trainings that share a schedule
    stack across sets, each member on its own set and seed, each stored under its own key; a lone
    run of the same training (another cache) sees the same batches and ends at the same weights up
    to rounding, and a later audit reads every member from the cache."""
    from swiglu_audit.config import build_config
    from swiglu_audit.session import AuditSession
    from swiglu_audit.training.zoo_stacking import TrainingRequest

    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")
    settings = {"seeds": [0, 1], "variants": ["swiglu", "relu"], "families": ["mlp"], "device": "cpu",
                "training": {"epochs": 2}}
    audit = AuditSession(build_config({**settings, "cache_dir": str(tmp_path / "a")}, profile="quick"))
    y = audit.data.y_train
    flipped = (y + 1) % 10  # two sets of the same length: labels shifted, and the inputs inverted
    inverted = 1 - audit.data.x_train
    requests = [TrainingRequest("shifted", audit.data.x_train, flipped, (0, 1)),
                TrainingRequest("inverted", inverted, y, (0, 1)),
                TrainingRequest("shifted-again", audit.data.x_train, flipped, (0,), patience=2)]  # another schedule
    audit.zoo.train_together("relu-mlp", requests)
    together = {tag: audit.zoo.models("relu-mlp", labels=r.labels, inputs=r.inputs, tag=tag, seeds=r.seeds,
                                      patience=r.patience)
                for r in requests for tag in [r.tag]}
    assert [m.record["stacked"] for m in together["shifted"] + together["inverted"]] == [4] * 4
    assert together["shifted-again"][0].record.get("stacked") is None  # alone: its schedule is its own
    assert not any(m.cached for models in together.values() for m in models)
    # member by member, as it trains alone
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "0")
    lone = AuditSession(build_config({**settings, "cache_dir": str(tmp_path / "b")}, profile="quick"))
    pairs = [(m, dict(labels=y, inputs=inverted, tag="inverted")) for m in together["inverted"]]
    pairs += [(m, dict(labels=flipped, tag="shifted")) for m in together["shifted"]]
    for m, training in pairs:  # each member on its own set and seed
        alone = lone.zoo.models("relu-mlp", seeds=(m.seed,), **training)[0]
        assert m.key == alone.key and not alone.cached
        assert alone.record["batch_digest"] == m.record["batch_digest"]  # exactly its own batches
        # up to rounding: a batched matmul sums in another order, and over two epochs that reached
        # 1.1e-4 in one weight on a slow day (the batch digests above check the batches exactly)
        for a, b in zip(m.module.state_dict().values(), alone.module.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-3)
    # read back: the same keys, from the cache
    again = AuditSession(build_config({**settings, "cache_dir": str(tmp_path / "a")}, profile="quick"))
    assert all(m.cached for m in again.zoo.models("relu-mlp", labels=flipped, tag="shifted"))


def test_slower_must_hold_in_a_second_timing_and_a_timing_lost_in_noise_is_not_kept(digits, monkeypatch):
    """`time_stacking`'s decisions on scripted clocks (the trainings still run): "one by one" only
    when a second timing agrees; differences that noise swallowed choose the default, not kept."""
    from swiglu_audit.training import stack_choice

    def scripted(*rounds):  # the warm-up calls, then per round: lone short, lone long, stacked short, stacked long
        values = iter([0.0, 0.0, *[v for r in rounds for v in r]])
        monkeypatch.setattr(stack_choice, "_elapsed", lambda started, device: next(values))

    mlp = _members([0])[0]
    run = lambda: stack_choice.time_stacking(mlp, digits.x_train, digits.y_train, 3, 64, CPU)  # noqa: E731
    slow, fast = (2.0, 6.0, 2.0, 8.0), (2.0, 6.0, 2.0, 4.0)  # stacked 1.5x the lone steps, then 0.5x
    scripted(slow, slow, fast, fast)  # REPEATS = 2 rounds a timing
    changed_its_mind = run()
    assert changed_its_mind.stack and "0.50x" in changed_its_mind.why
    scripted(slow, slow, slow, (2.0, 6.0, 2.0, 7.0))
    slower_twice = run()
    assert not slower_twice.stack and "1.25x" in slower_twice.why and slower_twice.lasting  # the less slow of the two
    scripted((2.0, 2.0, 2.0, 8.0), (2.0, 1.5, 2.0, 8.0))  # the longer lone trainings timed no longer than the short
    lost = run()
    assert lost.stack and not lost.lasting and "lost in noise" in lost.why
