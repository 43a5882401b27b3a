"""Safe loading and layout conversion of weights files."""
from __future__ import annotations

import collections
import os
import pathlib
import pickle
import re
import sys

import pytest
import pytorch_lightning as pl
import timm
import torch
import torchvision
from pytorch_lightning.plugins.io import TorchCheckpointIO

import zoo
from zoo.callbacks import ZooCheckpointIO, install_checkpoint_io
from zoo.cli import ZooCLI, main
from zoo.tasks import Classifier
from zoo.weights import load_file, read_checkpoint
from tests.util import randomize_bn


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def _same_outputs(a, b, size=64):
    x = torch.randn(2, 3, size, size)
    a.eval(), b.eval()
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def test_load_torchvision_state_dict_file(tmp_path):
    ref = randomize_bn(torchvision.models.resnet18(weights=None))
    path = _save(ref.state_dict(), tmp_path / "tv.pth")
    module = zoo.load("resnet18", weights=path)
    assert _same_outputs(module, ref) <= 1e-5
    assert module.weights_layout == "zoo"  # torchvision's ResNet keys are the zoo's
    assert zoo.load("resnet18").weights_layout is None


def test_load_timm_seresnet50_with_wrappers(tmp_path):
    ref = randomize_bn(timm.create_model("seresnet50", pretrained=False))
    # DataParallel-style "module." keys inside a {"state_dict": ...} wrapper
    sd = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    module = zoo.load("se_resnet50", weights=_save(sd, tmp_path / "timm.pth"))
    assert _same_outputs(module, ref) <= 1e-5
    assert module.weights_layout == "zoo"


def test_unknown_layout_is_rejected(tmp_path):
    sd = collections.OrderedDict(("backbone.stem.weight", torch.zeros(3)) for _ in range(1))
    with pytest.raises(ValueError, match="match no known layout for 'resnet18'"):
        zoo.load("resnet18", weights=_save(sd, tmp_path / "odd.pth"))


def test_shape_mismatch_names_the_key(tmp_path):
    ref = torchvision.models.resnet18(weights=None)  # 1000 classes
    path = _save(ref.state_dict(), tmp_path / "tv.pth")
    with pytest.raises(ValueError, match=r"fc\.weight: file \(1000, 512\) vs net \(10, 512\)"):
        zoo.load("resnet18", weights=path, num_classes=10)


class Payload:
    """Stands for any object whose unpickling would run code outside torch's allowlist."""


def test_arbitrary_pickles_are_refused(tmp_path):
    path = _save({"fc.weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights-only"):
        read_checkpoint(path)


def test_non_tensor_entries_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="not a state dict"):
        read_checkpoint(_save({"fc.weight": torch.zeros(1), "epoch": 3}, tmp_path / "x.pth"))
    with pytest.raises(FileNotFoundError, match="weights"):
        zoo.load("resnet18", weights=str(tmp_path / "missing.pth"))


# ------------------------------------------------------------------ one reading function


DIGITS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "data", "digits.yaml")


class Touch:
    """A pickled payload: unpickling it creates the file ``marker`` (stands for any code)."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _cli_args(root, *extra):
    return ["--config", DIGITS, f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.logger=false", "--trainer.limit_val_batches=1",
            *extra]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A real Lightning checkpoint: ``python -m zoo fit`` on the digits recipe, 2 optimizer steps."""
    root = tmp_path_factory.mktemp("fit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["zoo"])
        cli = ZooCLI(["fit", *_cli_args(root, "--trainer.max_steps=2")])
    assert cli.trainer.global_step == 2
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    assert os.path.isfile(ckpt)
    return root, ckpt


@pytest.fixture
def evil_files(tmp_path):
    """``{kind: path}`` of files whose loading would run ``Touch``, and the marker it would create.
    Oracle that the payload is live: plain ``pickle.loads`` of it does create a marker."""
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(Touch(live)))
    assert live.exists()
    marker = tmp_path / "pwned"
    payload = Touch(marker)
    files = {"torch.save": tmp_path / "evil.ckpt", "pickle.dump": tmp_path / "evil-pickle.ckpt"}
    torch.save({"state_dict": {"net.fc.weight": torch.zeros(1)}, "hyper_parameters": {"arch": "resnet18"},
                "pytorch-lightning_version": "2.6.0", "payload": payload}, files["torch.save"])
    with open(files["pickle.dump"], "wb") as f:
        pickle.dump({"fc.weight": torch.zeros(1), "payload": payload}, f)
    return files, marker


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (here pytest's) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["zoo"])


def test_a_malicious_reduce_is_refused_by_every_reader_and_never_runs(tmp_path, evil_files):
    files, marker = evil_files
    for kind, path in files.items():
        named = re.escape(repr(str(path)))
        refused = rf"{named} was refused: .*arbitrary code or objects \(.*pathlib\.Path"
        readers = {
            "load_file": lambda: load_file(path),
            "read_checkpoint": lambda: read_checkpoint(path),
            "zoo.load": lambda: zoo.load("resnet18", weights=str(path)),
            "load_from_checkpoint": lambda: Classifier.load_from_checkpoint(path),
            "python -m zoo validate --ckpt_path": lambda: main(["validate", *_cli_args(tmp_path),
                                                               f"--ckpt_path={path}"]),
        }
        for reader, read in readers.items():
            with pytest.raises(ValueError, match=refused):
                read()
            assert not marker.exists(), f"{reader} ran the payload of the {kind} file"


def _damaged(tmp_path, ckpt):
    """Damaged copies of the real checkpoint ``ckpt`` and of a state-dict file."""
    sd_file = tmp_path / "sd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), sd_file)
    data, sd_data = pathlib.Path(ckpt).read_bytes(), sd_file.read_bytes()
    out = {"half.ckpt": data[: len(data) // 2], "sd-half.pth": sd_data[: len(sd_data) // 2],
           "empty.ckpt": b"", "random.ckpt": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                                           dtype=torch.uint8).numpy().tobytes()}
    for name, content in out.items():
        (tmp_path / name).write_bytes(content)
    return [tmp_path / name for name in out]


def test_truncated_or_corrupt_checkpoints_name_the_file(tmp_path, fitted):
    _, ckpt = fitted
    damaged = _damaged(tmp_path, ckpt)
    # the plugin route on its own (Lightning's trainer reading ckpt_path), without the CLI's own read
    cli = ZooCLI(_cli_args(tmp_path), run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, ZooCheckpointIO)
    for path in damaged:
        corrupt = rf"{re.escape(repr(str(path)))} is truncated or corrupt"
        with pytest.raises(ValueError, match=corrupt):
            load_file(path)
        with pytest.raises(ValueError, match=corrupt):
            read_checkpoint(path)
        with pytest.raises(ValueError, match=corrupt):
            cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(path))
    for path in damaged[:1]:  # the command line (its first read is the saved hyper-parameters)
        with pytest.raises(ValueError, match=rf"{re.escape(repr(str(path)))} is truncated or corrupt"):
            main(["validate", *_cli_args(tmp_path), f"--ckpt_path={path}"])


def test_safetensors_weights_load_with_the_same_logits(tmp_path):
    from safetensors.torch import save_file

    ref = randomize_bn(torchvision.models.resnet18(weights=None)).eval()
    path = tmp_path / "resnet18.safetensors"
    save_file(ref.state_dict(), str(path))
    module = zoo.load("resnet18", weights=str(path)).eval()
    assert module.weights_layout == "zoo"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(module(x), ref(x))
    # a damaged safetensors file: a header length past the end, then the tensors cut short
    data = path.read_bytes()
    for name, content in (("bad-header.safetensors", b"\xff" * 8 + data[8:]),
                          ("cut.safetensors", data[: len(data) // 2])):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{re.escape(repr(str(bad)))} is truncated or corrupt"):
            zoo.load("resnet18", weights=str(bad))


def test_lightning_checkpoints_resume_and_validate_through_the_zoo_reader(tmp_path, fitted, monkeypatch):
    _, ckpt = fitted
    read: list[str] = []
    original = ZooCheckpointIO.load_checkpoint

    def spy(self, path, *args, **kwargs):
        read.append(os.fspath(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(ZooCheckpointIO, "load_checkpoint", spy)
    val = ZooCLI(["validate", *_cli_args(tmp_path / "val"), f"--ckpt_path={ckpt}"])
    assert isinstance(val.trainer.strategy.checkpoint_io, ZooCheckpointIO)
    assert read == [ckpt] and "val/acc1" in val.trainer.callback_metrics
    fit = ZooCLI(["fit", *_cli_args(tmp_path / "fit", "--trainer.max_steps=3", "--trainer.enable_checkpointing=false"),
                  f"--ckpt_path={ckpt}"])
    assert read == [ckpt, ckpt] and fit.trainer.global_step == 3  # resumed at step 2, one more step
    # load_from_checkpoint reads through the same function: same weights as the file
    module = Classifier.load_from_checkpoint(ckpt)
    saved = read_checkpoint(ckpt)[0]
    assert all(torch.equal(v, saved[f"net.{k}"]) for k, v in module.net.state_dict().items())


class KeepIO(TorchCheckpointIO):
    """A checkpoint IO a config chose: the zoo leaves it in place."""


def test_a_checkpoint_io_the_config_chose_is_kept():
    from pytorch_lightning.plugins.io import AsyncCheckpointIO

    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    mine = KeepIO()
    assert install_checkpoint_io(pl.Trainer(plugins=[mine], **kw)) is mine
    wrapped = install_checkpoint_io(pl.Trainer(plugins=[AsyncCheckpointIO()], **kw))
    assert isinstance(wrapped, AsyncCheckpointIO) and isinstance(wrapped.checkpoint_io, ZooCheckpointIO)
    base = KeepIO()
    assert install_checkpoint_io(pl.Trainer(plugins=[AsyncCheckpointIO(base)], **kw)).checkpoint_io is base
