"""Does any suite run a user's model in train mode? Through the user contract: two models of the
user's own with BatchNorm and dropout (a gated and an ungated FFN), the quick profile, every
suite's prefetch in turn in one process; after each, whether the models' weights and running
statistics in memory are still what training left. A measurement that ran a model in train mode
would have written its BatchNorm running statistics (and drawn dropout masks for its verdicts).

    PYTHONPATH=<checkout> python bench/user_model_state_check.py

Prints one line per model and suite: "unchanged" or the state entries that changed (cumulative:
the state is taken once, before the first suite).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

MODELS = '''
import torch
from torch import nn
import torch.nn.functional as F


class WithBatchNorm(nn.Module):
    def __init__(self, input_shape, n_classes, gated):
        super().__init__()
        self.embed = nn.Linear(int(torch.tensor(input_shape).prod()), 64)
        self.bn = nn.BatchNorm1d(64)
        self.gate, self.up, self.down = nn.Linear(64, 96), nn.Linear(64, 96), nn.Linear(96, 64)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(64, n_classes)
        self.gated = gated

    def forward(self, x):
        h = self.bn(self.embed(x.flatten(1)))
        f = F.silu(self.gate(h)) * self.up(h) if self.gated else F.relu(self.up(h))
        return self.head(self.drop(h + self.down(f)))


def make_swiglu(input_shape, n_classes):
    return WithBatchNorm(input_shape, n_classes, True)


def make_relu(input_shape, n_classes):
    return WithBatchNorm(input_shape, n_classes, False)
'''


def main() -> None:
    from swiglu_audit.config import build_config
    from swiglu_audit.measure import prefetchers
    from swiglu_audit.session import AuditSession

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "user_bn_models.py").write_text(MODELS)
        sys.path.insert(0, tmp)
        config = build_config({"profile": "quick", "cache_dir": str(Path(tmp) / "cache"),
                               "models": [{"name": "ours-swiglu", "factory": "user_bn_models:make_swiglu",
                                           "role": "candidate"},
                                          {"name": "ours-relu", "factory": "user_bn_models:make_relu"}]},
                              project_root=Path(tmp))
        audit = AuditSession(config)
        for name in ("ours-swiglu", "ours-relu"):
            models = audit.zoo.models(name)
            before = [{k: v.clone() for k, v in m.module.state_dict().items()} for m in models]
            for suite, prefetch in prefetchers().items():
                prefetch(audit, name)
                changed = sorted({k for m, b in zip(models, before) for k, v in m.module.state_dict().items()
                                  if not torch.equal(b[k], v)})
                print(name, suite, "unchanged" if not changed else f"changed: {', '.join(changed)}", flush=True)


if __name__ == "__main__":
    main()
