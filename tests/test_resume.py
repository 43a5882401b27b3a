"""Resume after a kill: a training process killed with SIGKILL partway through an epoch, restarted
with ``--ckpt_path last``, ends with exactly the weights of an uninterrupted run (CPU,
deterministic). The oracle is the uninterrupted run of the same command."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 2 epochs of 6 batches, last.ckpt every 2 steps; killed as the batch after step 9 starts, so the
# newest last.ckpt is step 8: epoch 1, 2 of its 6 batches done.
STEPS_PER_EPOCH, KILL_AT, SAVED_AT = 6, 9, 8

TASKS = {
    "classifier": ["--config", "configs/data/digits.yaml", "--model.init_args.arch=resnet18",
                   "--data.image_size=16", "--data.batch_size=16"],
    "detector": ["--config", "configs/data/insects.yaml", "--config", "configs/detection/yolov3_se.yaml",
                 "--data.img_size=64", "--trainer.precision=32", "--data.batch_size=2",
                 "--data.synthetic={n_train: 12, n_val: 2, size: 96, seed: 1}"],
}


def _fit(root, task: str, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "zoo", "fit", *TASKS[task],
            f"--trainer.default_root_dir={root}", "--trainer.max_epochs=2",
            f"--trainer.limit_train_batches={STEPS_PER_EPOCH}", "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0", "--trainer.deterministic=true",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.callbacks+=zoo.callbacks.LastCheckpoint", "--trainer.callbacks.every_n_train_steps=2",
            *extra]
    if task == "detector":
        args.append(f"--data.data_dir={root.parent / 'insects'}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _last(root) -> dict:
    """The newest last.ckpt under ``root`` (each run logs to a version folder of its own)."""
    from zoo.lightning_cli import latest_last_checkpoint

    return torch.load(latest_last_checkpoint(root), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(task, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run = _fit(straight, task)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = _last(straight)
    assert expected["global_step"] == 2 * STEPS_PER_EPOCH

    run = _fit(killed, task, "--trainer.callbacks+=tests.util.KillAtStep", f"--trainer.callbacks.step={KILL_AT}")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    saved = _last(killed)
    loop = saved["loops"]["fit_loop"]
    assert saved["global_step"] == SAVED_AT and saved["epoch"] == 1  # partway through the second epoch
    assert loop["epoch_loop.batch_progress"]["current"]["processed"] == SAVED_AT - STEPS_PER_EPOCH

    run = _fit(killed, task, "--ckpt_path=last")
    assert run.returncode == 0, run.stderr[-3000:]
    got = _last(killed)
    assert got["global_step"] == expected["global_step"]
    assert got["state_dict"].keys() == expected["state_dict"].keys()
    for k, v in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][k], v), k
    # and the optimizer's state (momentum buffers, step counts) too
    exp_opt, got_opt = expected["optimizer_states"][0]["state"], got["optimizer_states"][0]["state"]
    assert exp_opt.keys() == got_opt.keys()
    for i in exp_opt:
        for name, v in exp_opt[i].items():
            assert torch.equal(torch.as_tensor(got_opt[i][name]), torch.as_tensor(v)), (i, name)
