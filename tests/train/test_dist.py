"""The process group is a context manager: a lone process's launcher variables hold only inside it, a caller's
group is kept, and a stage run in this process leaves os.environ as it found it."""
import os

import deepspeed  # noqa: F401  its import sets PYTORCH_NVML_BASED_CUDA_CHECK, once per process: not a stage's doing
import pytest
import torch.distributed as dist
import yaml
from run_helpers import tiny_train_config, write_rows

from e2wm.cli import main
from e2wm.train import dist as edist


def test_a_lone_group_and_its_variables_last_only_the_block(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "10.9.9.9")   # the user's, without a launcher: ours inside, theirs after
    before = dict(os.environ)
    with pytest.raises(RuntimeError, match="inside"):
        with edist.process_group() as (rank, world):
            assert (rank, world) == (0, 1) and os.environ["MASTER_ADDR"] == "127.0.0.1"
            with edist.process_group() as inner:   # a caller that has a group keeps it
                assert inner == (0, 1)
            assert dist.is_initialized()
            raise RuntimeError("inside")
    assert not dist.is_initialized()
    assert dict(os.environ) == before


def test_stages_run_in_process_leave_the_environment_as_they_found_it(tmp_path, tiny_model_dir):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_train_config(tmp_path / "run", tiny_model_dir,
                                                    write_rows(tmp_path / "rows.jsonl"))))
    before = dict(os.environ)
    assert main(["train", "--config", str(cfg)]) == 0
    assert dict(os.environ) == before
    assert main(["fisher", "--model", str(tiny_model_dir), "--corpus", "builtin:pydoc", "--max-samples", "4",
                 "--max-length", "32", "--zero-stage", "0", "--out", str(tmp_path / "fisher")]) == 0
    assert dict(os.environ) == before
    assert not dist.is_initialized()


def _group_timeout():
    import torch
    from torch.distributed import distributed_c10d
    return distributed_c10d._get_default_group()._get_backend(torch.device("cpu")).options._timeout


def test_the_collective_timeout_reaches_the_process_group(monkeypatch):
    monkeypatch.setenv(edist.TIMEOUT_ENV, "1234")
    with edist.process_group():
        assert _group_timeout().total_seconds() == 1234
    monkeypatch.delenv(edist.TIMEOUT_ENV)   # unset: an hour, not DeepSpeed's 10 minutes
    assert edist.timeout().total_seconds() == edist.DEFAULT_TIMEOUT_S == 3600


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_timeout_is_one_line(monkeypatch, value):
    from e2wm.errors import E2WMError
    monkeypatch.setenv(edist.TIMEOUT_ENV, value)
    with pytest.raises(E2WMError, match=edist.TIMEOUT_ENV):
        with edist.process_group():
            pass
    assert not dist.is_initialized()
