"""The checkpoint cache on an object store (cache_dir = "s3://...", "gs://..."), through fsspec.

fsspec's in-memory filesystem stands in for the store within one process. Across processes, a
local filesystem given the two primitives the store code relies on (an exclusive create, as S3's
`If-None-Match: *` and GCS's `ifGenerationMatch=0` give, and a whole-object write) stands in for it.
"""

import json
import multiprocessing
import os
import threading
import time
import uuid
import warnings

import fsspec
import pytest
import torch
from fsspec.implementations.local import LocalFileSystem

from swiglu_audit.config import build_config
from swiglu_audit.errors import ConfigError, SwigluAuditWarning
from swiglu_audit.training.cache import CheckpointCache, cache_key
from swiglu_audit.training.shared_store import SharedStore


def _state(shift: float = 0.0):
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(4, 3, generator=g) + shift, "b": torch.randn(3, generator=g)}


@pytest.fixture
def url():
    """A bucket of its own in fsspec's process-wide memory filesystem."""
    return f"memory://bucket-{uuid.uuid4().hex[:8]}/cache"


def _store(url, **kw):
    return SharedStore(url, poll_seconds=0.02, **kw)


def test_an_entry_computed_by_one_audit_is_fetched_by_another_with_an_empty_local_copy(tmp_path, url):
    first = CheckpointCache(tmp_path / "machine-a", shared=_store(url))
    second = CheckpointCache(tmp_path / "machine-b", shared=_store(url))
    key = cache_key({"model": "x"})
    state, record, cached = first.get_or_create(key, lambda: (_state(), {"seconds": 2.0}))
    assert not cached and first.stats.misses == 1
    assert second.contains(key) and not second.path_for(key).exists()
    loaded, record2, cached2 = second.get_or_create(key, lambda: pytest.fail("computed twice"))
    assert cached2 and record2 == {"seconds": 2.0} and second.stats.fetched == 1 and second.stats.misses == 0
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    assert second.path_for(key).exists()  # now this machine's copy holds it
    # results and probes are shared the same way, under their own folders
    arrays, _ = first.get_or_create_arrays(cache_key({"result": 1}), lambda: ({"a": torch.arange(3).numpy()}, {}))
    again, _ = second.get_or_create_arrays(cache_key({"result": 1}), lambda: pytest.fail("measured twice"))
    assert list(again["a"]) == [0, 1, 2]
    assert fsspec.filesystem("memory").exists(f"{url.split('://')[1]}/results")


def test_a_damaged_object_is_deleted_from_the_store_and_computed_again(tmp_path, url):
    writer = CheckpointCache(tmp_path / "a", shared=_store(url))
    key = cache_key({"model": "damaged"})
    writer.get_or_create(key, lambda: (_state(), {}))
    fs = fsspec.filesystem("memory")
    remote = f"{url.split('://')[1]}/{writer.path_for(key).relative_to(writer.root).as_posix()}"
    raw = bytearray(fs.cat_file(remote))
    raw[-3] ^= 0xFF  # inside the tensor data: only the checksum can tell
    fs.pipe_file(remote, bytes(raw))
    reader = CheckpointCache(tmp_path / "b", shared=_store(url))
    with pytest.warns(SwigluAuditWarning, match="corrupted"):
        state, _, cached = reader.get_or_create(key, lambda: (_state(), {}))
    assert not cached and reader.stats.healed == [key] and torch.equal(state["w"], _state()["w"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the store now holds a sound entry again
        assert CheckpointCache(tmp_path / "c", shared=_store(url)).get_or_create(key, lambda: pytest.fail("again"))[2]


def test_an_object_planted_in_the_store_is_not_trusted_when_the_project_signs_its_cache(tmp_path, url):
    key = cache_key({"model": "planted"})
    # someone who can write to the bucket, but lacks the project's key, plants other weights
    CheckpointCache(tmp_path / "attacker", secret="", shared=_store(url)).get_or_create(key, lambda: (_state(5.0), {}))
    trusted = CheckpointCache(tmp_path / "audit", secret="the-scheduled-audit's-secret", shared=_store(url))
    with pytest.warns(SwigluAuditWarning, match="SWIGLU_AUDIT_CACHE_KEY"):
        state, _, cached = trusted.get_or_create(key, lambda: (_state(), {}))
    assert not cached and torch.equal(state["w"], _state()["w"])
    signed = CheckpointCache(tmp_path / "audit-2", secret="the-scheduled-audit's-secret", shared=_store(url))
    assert torch.equal(signed.get_or_create(key, lambda: pytest.fail("retrained"))[0]["w"], _state()["w"])


@pytest.mark.parametrize("recompute_checksum", [False, True], ids=["record-only", "checksum-recomputed"])
def test_an_object_whose_record_was_edited_in_the_store_is_refused_when_the_project_signs_its_cache(
        tmp_path, url, recompute_checksum):
    """A result that lives in the record alone (a backdoor scan's flagged samples), rewritten in
    the bucket by someone without the key: refused, measured again and published again."""
    from safetensors.torch import load_file, save_file

    from swiglu_audit.training.cache import entry_digest
    from swiglu_audit.util.io import safetensors_metadata

    secret, key, found = "the-scheduled-audit's-secret", cache_key({"result": "backdoor-scan"}), {"flagged": [3, 17]}
    writer = CheckpointCache(tmp_path / "a", secret=secret, shared=_store(url))
    writer.get_or_create(key, lambda: (_state(), found), kind="result")
    local = writer.path_for(key, "result")
    tensors, meta = load_file(str(local)), safetensors_metadata(local)
    meta["record"] = json.dumps({"flagged": []})
    if recompute_checksum:
        meta["sha256"] = entry_digest(tensors, {"flagged": []})
    forged = tmp_path / "forged.safetensors"
    save_file(tensors, str(forged), metadata=meta)
    fsspec.filesystem("memory").pipe_file(f"{url.split('://')[1]}/{local.relative_to(writer.root).as_posix()}",
                                          forged.read_bytes())
    reader = CheckpointCache(tmp_path / "b", secret=secret, shared=_store(url))
    with pytest.warns(SwigluAuditWarning, match="SWIGLU_AUDIT_CACHE_KEY" if recompute_checksum else "checksum mismatch"):
        _, record, cached = reader.get_or_create(key, lambda: (_state(), found), kind="result")
    assert (record, cached) == (found, False) and reader.stats.fetched == 0
    again = CheckpointCache(tmp_path / "c", secret=secret, shared=_store(url))  # the store holds a sound entry again
    assert again.get_or_create(key, lambda: pytest.fail("measured again"), kind="result")[1:] == (found, True)


def test_an_audit_waits_for_the_lease_holder_and_then_loads_its_entry(tmp_path, url):
    key = cache_key({"model": "leased"})
    holder = CheckpointCache(tmp_path / "holder", shared=_store(url))
    started, waiting = threading.Event(), threading.Event()

    def slow():  # holds the lease until the other audit has read it (not for a guessed time)
        started.set()
        assert waiting.wait(30), "the other audit never looked at the lease"
        return _state(), {}

    class Watched(SharedStore):  # tells when the waiter found the lease held
        def _read_body(self, path):
            body = super()._read_body(path)
            if path.endswith(".lease") and body is not None:
                waiting.set()
            return body

    thread = threading.Thread(target=holder.get_or_create, args=(key, slow))
    thread.start()
    started.wait(5)
    waiter = CheckpointCache(tmp_path / "waiter", shared=Watched(url, poll_seconds=0.02))
    state, _, cached = waiter.get_or_create(key, lambda: pytest.fail("computed while another audit held the lease"))
    thread.join()
    assert waiting.is_set() and cached and torch.equal(state["w"], _state()["w"])
    assert not fsspec.filesystem("memory").glob(f"{url.split('://')[1]}/**/*.lease")  # released


def test_a_lease_its_holder_stopped_renewing_is_broken_by_the_waiters_own_clock(tmp_path, url):
    key = cache_key({"model": "abandoned"})
    cache = CheckpointCache(tmp_path / "a", shared=_store(url, stale_seconds=0.5))
    lease = f"{url.split('://')[1]}/{cache.path_for(key).relative_to(cache.root).as_posix()}.lease"
    # a worker killed mid-training left its lease; its clock ran an hour ahead, so the time it
    # wrote says nothing: the waiter watches the lease stay unchanged for stale_seconds itself
    fsspec.filesystem("memory").pipe_file(lease, json.dumps({"token": "dead", "renewed": time.time() + 3600,
                                                             "holder": "a killed worker"}).encode())
    began = time.monotonic()
    state, _, cached = cache.get_or_create(key, lambda: (_state(), {}))
    assert not cached and torch.equal(state["w"], _state()["w"]) and time.monotonic() - began >= 0.5


def test_an_entry_published_just_before_the_lease_is_taken_is_loaded_not_computed(url):
    store = _store(url)
    looks = iter([False, True])  # absent at the first look; there once the lease is taken
    with store.lease("entry", published=lambda: next(looks)) as held:
        assert held is None
    assert not fsspec.filesystem("memory").exists(f"{url.split('://')[1]}/entry.lease")


def test_a_holder_whose_lease_was_broken_keeps_the_copy_the_other_audit_published(tmp_path, url):
    key = cache_key({"model": "contested"})
    store = _store(url, renew_seconds=0.05)
    slow = CheckpointCache(tmp_path / "slow", shared=store)
    relative = slow.path_for(key).relative_to(slow.root).as_posix()
    fs, root = fsspec.filesystem("memory"), url.split("://")[1]
    other = CheckpointCache(tmp_path / "other")  # the audit that judged the slow one dead

    def create():
        # meanwhile, another audit broke this one's lease, took its own and published its weights
        fs.pipe_file(f"{root}/{relative}.lease", json.dumps({"token": "other"}).encode())
        other.get_or_create(key, lambda: (_state(1.0), {}))
        fs.pipe_file(f"{root}/{relative}", other.path_for(key).read_bytes())
        time.sleep(0.3)  # a renewal finds the lease is no longer this audit's
        return _state(), {}

    state, _, cached = slow.get_or_create(key, create)
    assert cached and torch.equal(state["w"], _state(1.0)["w"])  # one copy on every machine
    assert torch.equal(CheckpointCache(tmp_path / "third", shared=_store(url)).get_or_create(
        key, lambda: pytest.fail("again"))[0]["w"], _state(1.0)["w"])


def test_a_live_holder_keeps_its_lease_by_renewing_it(tmp_path, url):
    store = _store(url, stale_seconds=1.5, renew_seconds=0.1)
    taken = []
    with store.lease("entry", published=lambda: False) as held:
        assert held is not None
        rival = threading.Thread(target=lambda: taken.append(_try_lease(url)))
        rival.start()
        time.sleep(2.5)  # well past stale_seconds: only the renewals keep the rival out
        assert not taken
    rival.join(5)
    assert taken == [True]


def _try_lease(url):
    with _store(url, stale_seconds=1.5).lease("entry", published=lambda: False) as held:
        return held is not None


class ExclusiveLocalFS(LocalFileSystem):
    """A local folder with an object store's write primitives: every write makes the object
    appear whole, and `mode="create"` fails when it exists (atomically: a hard link, which fails
    when the name is taken)."""

    exclusive_create = True

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        path = self._strip_protocol(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.part"
        with open(tmp, "wb") as fh:
            fh.write(value)
        if mode == "create":
            try:
                os.link(tmp, path)  # FileExistsError when taken
            finally:
                os.unlink(tmp)
            return
        os.replace(tmp, path)


def _process(bucket, local, key, counter, barrier):
    store = SharedStore(f"file://{bucket}", filesystem=ExclusiveLocalFS(), poll_seconds=0.05)
    cache = CheckpointCache(local, shared=store)
    barrier.wait()  # both machines ask for the same entry at the same moment

    def create():
        (counter / f"trained-{os.getpid()}").write_text("1")
        time.sleep(1.0)
        return _state(), {}

    state, _, _ = cache.get_or_create(key, create)
    assert torch.equal(state["w"], _state()["w"])


def test_two_machines_with_their_own_local_copies_train_a_shared_entry_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    counter = tmp_path / "counter"
    counter.mkdir()
    procs = [ctx.Process(target=_process, args=(str(tmp_path / "bucket"), tmp_path / f"machine-{i}", "d" * 64,
                                                counter, barrier)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(list(counter.iterdir())) == 1
    stored = sorted(p.name for p in (tmp_path / "bucket").rglob("*") if p.is_file())
    assert stored == ["d" * 64 + ".safetensors"]  # the entry, and no lease or partial object left


def test_cache_dir_as_an_object_store_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE", raising=False)
    config = build_config({"cache_dir": "memory://team-bucket/audits/"}, project_root=tmp_path)
    assert config.cache_url == "memory://team-bucket/audits"
    assert str(config.cache_dir).startswith(str(tmp_path / "xdg" / "swiglu-audit" / "shared"))
    # the same URL from the command line or the environment
    assert build_config({}, cache_dir="memory://team-bucket/audits", project_root=tmp_path).cache_dir == config.cache_dir
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", "memory://team-bucket/audits")
    assert build_config({}, project_root=tmp_path).cache_url == "memory://team-bucket/audits"
    # file:// is a plain folder, with the local cache's own locks
    plain = build_config({"cache_dir": f"file://{tmp_path}/plain"}, project_root=tmp_path)
    assert plain.cache_url is None and plain.cache_dir == tmp_path / "plain"
    with pytest.raises(ConfigError, match="no installed filesystem speaks nosuchstore://"):
        build_config({"cache_dir": "nosuchstore://bucket"}, project_root=tmp_path)
    if not _installed("s3fs"):
        with pytest.raises(ConfigError, match=r"pip install 'swiglu-audit\[s3\]'"):
            build_config({"cache_dir": "s3://bucket/prefix"}, project_root=tmp_path)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_an_audit_on_another_machine_trains_nothing_from_a_shared_cache(tiny_project, tmp_path, monkeypatch):
    """Through the contract: cache_dir is an object-store URL. A second audit whose local copy is
    empty (another machine) fetches every checkpoint and measurement and trains nothing."""
    bucket = f"memory://bucket-{uuid.uuid4().hex[:8]}/audit-cache"
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE", raising=False)
    runs = []
    for machine in ("first", "second"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / machine))
        result = tiny_project.runpytest("--swiglu-audit", f"--swiglu-audit-cache-dir={bucket}", "-k", "adversarial",
                                        "-p", "no:cacheprovider")
        assert result.ret in (0, 1), result.stdout.str()[-2000:]
        report = json.loads((tiny_project.path / "reports" / "report.json").read_text())
        runs.append(report)
    first, second = (r["environment"]["cache"] for r in runs)
    assert first["url"] == bucket and first["misses"] > 0 and first["fetched"] == 0
    assert second["misses"] == 0 and second["result_misses"] == 0
    # every entry the first machine computed, the second fetched once (and may read again locally)
    assert second["fetched"] == first["misses"] + first["result_misses"] > 0
    statuses = [{f["id"]: f["status"] for f in r["findings"]} for r in runs]
    assert statuses[0] == statuses[1] and statuses[0]


def test_an_unreachable_store_is_a_usage_error_before_anything_trains(tiny_project):
    # fsspec's FTP filesystem (the standard library's ftplib): a store that refuses the connection
    result = tiny_project.runpytest_subprocess("--swiglu-audit", "--swiglu-audit-cache-dir=ftp://127.0.0.1:9/cache",
                                               "-p", "no:cacheprovider")
    assert result.ret == 4
    err = result.stderr.str()
    assert "cache_dir ftp://127.0.0.1:9/cache cannot be written" in err and "credentials" in err
    assert "Connect" in err  # the store's own error, named


def test_a_jobs_starts_are_noted_in_the_shared_store_where_every_node_sees_them(tmp_path, url, monkeypatch):
    from swiglu_audit.jobs.audit_jobs import _note_start, forget_attempts
    from swiglu_audit.jobs.graph import Job

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE", raising=False)
    config = build_config({"cache_dir": url}, project_root=tmp_path)
    job = Job("poisoning:swiglu-mlp", "swiglu-mlp", "poisoning", 1.0)
    count = _note_start(config, "run1", job)
    assert count() == 1
    assert _note_start(config, "run1", job)() == 2  # a retry on another worker
    notes = fsspec.filesystem("memory").find(f"{url.split('://')[1]}/jobs/run1")
    assert len(notes) == 2 and all("/jobs/run1/poisoning_swiglu-mlp/" in n for n in notes)
    forget_attempts(config, "run1")
    assert count() == 0 and not fsspec.filesystem("memory").find(f"{url.split('://')[1]}/jobs")


def test_two_shards_on_two_machines_over_one_store_train_each_model_once(tiny_project, tmp_path, monkeypatch):
    """`--swiglu-audit-shard=K/N` over a CI matrix with the cache on an object store: a shard on
    another machine fetches what the first trained instead of training it again."""
    bucket = f"memory://bucket-{uuid.uuid4().hex[:8]}/shards"
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE", raising=False)
    caches = []
    for k in (1, 2):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"machine-{k}"))
        result = tiny_project.runpytest("--swiglu-audit", f"--swiglu-audit-cache-dir={bucket}",
                                        f"--swiglu-audit-shard={k}/2", f"--swiglu-audit-report-dir=shard-{k}",
                                        "-k", "adversarial or efficiency", "-p", "no:cacheprovider")
        assert result.ret in (0, 1), result.stdout.str()[-2000:]
        caches.append(json.loads((tiny_project.path / f"shard-{k}" / "report.json").read_text())["environment"]["cache"])
    fs, root = fsspec.filesystem("memory"), bucket.split("://")[1]
    relative = [p.split(f"{root}/", 1)[1] for p in fs.find(root)]
    checkpoints = [p for p in relative if p.count("/") == 1 and p.endswith(".safetensors")]  # <2 hex>/<key>
    assert checkpoints and caches[0]["misses"] + caches[1]["misses"] == len(checkpoints)  # each trained once
    assert caches[1]["fetched"] > 0 and caches[1]["misses"] < caches[0]["misses"]
