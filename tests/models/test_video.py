"""Deepfake video nets: R3D-18 weight identity with torchvision, the EfficientNet+LSTM and
frame-averaging nets against their parts (efficientnet_b0 per frame, torch's LSTM sizes), frame
order, bad input."""
from __future__ import annotations

import pytest
import torch
import torchvision

import zoo
from tests.models.common import load_through_zoo
from tests.util import n_params, randomize_bn


def _clips(b: int = 2, t: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_video_models_are_registered_with_task_video():
    assert zoo.list_models(task="video") == ["deepfake_effnet", "deepfake_effnet_lstm", "deepfake_r3d"]


def test_r3d_parameter_count_and_weight_identity_with_torchvision(tmp_path):
    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.video.r3d_18(num_classes=1))
    assert n_params(ref) == 33_166_785
    net = load_through_zoo("deepfake_r3d", ref, tmp_path / "r3d.pt", "torchvision")
    assert n_params(net) == n_params(ref)
    x = _clips(t=8, size=48)
    with torch.no_grad():
        got, want = net(x), ref.eval()(x.transpose(1, 2))  # torchvision takes [B, C, T, H, W]
    assert got.shape == want.shape == (2, 1)
    assert (got - want).abs().max().item() <= 1e-5


def test_r3d_at_400_classes_has_torchvision_kinetics_size():
    assert n_params(zoo.create_net("deepfake_r3d", num_classes=400)) == 33_371_472


def test_effnet_lstm_is_efficientnet_b0_features_then_an_lstm():
    net = zoo.create_net("deepfake_effnet_lstm")
    b0 = zoo.create_net("efficientnet_b0", num_classes=0)
    assert net.frame_features == 1280
    lstm = 4 * (256 * (1280 + 256) + 2 * 256)  # four gates: W_ih, W_hh and two biases each
    assert n_params(net) == n_params(b0) + lstm + 256 + 1
    bi = zoo.create_net("deepfake_effnet_lstm", bidirectional=True)
    assert n_params(bi) == n_params(b0) + 2 * lstm + 512 + 1

    # the frame encoder is efficientnet_b0's pooled features, frame by frame
    net.eval()
    b0.load_state_dict(net.backbone.state_dict())
    x = _clips()
    with torch.no_grad():
        feats = net.encode_frames(x)
        for t in range(x.shape[1]):
            assert torch.allclose(feats[:, t], b0.eval()(x[:, t]), atol=1e-5)
        # the LSTM reads them in order: its final hidden state, then the classifier
        _, (h, _) = net.lstm(feats)
        assert torch.allclose(net(x), net.fc(h[-1]), atol=1e-6)


def test_frame_order_changes_the_lstm_output_but_not_the_average():
    # Batch statistics (train mode, no dropout or drop path): at initialisation, with the running
    # statistics of eval mode, a random efficientnet_b0's pooled features hardly depend on the
    # frame (|f_0 - f_1| ~ 1e-6), which would hide what the head does with their order. Both nets
    # see the same set of frames either way, so the batch statistics are the same.
    torch.manual_seed(0)
    x = _clips(t=5)
    perm = torch.tensor([4, 2, 0, 3, 1])
    quiet = dict(drop_rate=0.0, backbone_kwargs={"drop_path_rate": 0.0})
    lstm = zoo.create_net("deepfake_effnet_lstm", **quiet).train()
    avg = zoo.create_net("deepfake_effnet", **quiet).train()
    with torch.no_grad():
        feats = lstm.encode_frames(x)
        assert torch.allclose(lstm.encode_frames(x[:, perm]), feats[:, perm], atol=1e-4)  # features just move
        a, b = lstm(x), lstm(x[:, perm])
        assert (a - b).abs().max().item() > 1e-2
        c, d = avg(x), avg(x[:, perm])
        assert (c - d).abs().max().item() <= 1e-4
        avg.eval()
        assert (avg(x) - avg(x[:, perm])).abs().max().item() <= 1e-6
        # and the average is the mean of the frames' own efficientnet_b0 logits
        b0 = zoo.create_net("efficientnet_b0", num_classes=1)
        b0.load_state_dict(avg.backbone.state_dict())
        per_frame = torch.stack([b0.eval()(x[:, t]) for t in range(x.shape[1])], dim=1)
        assert torch.allclose(avg.forward_frames(x), per_frame, atol=1e-5)
        assert torch.allclose(avg(x), per_frame.mean(dim=1), atol=1e-5)


def test_any_number_of_frames_and_sizes():
    for name in ("deepfake_effnet_lstm", "deepfake_effnet", "deepfake_r3d"):
        net = zoo.create_net(name).eval()
        with torch.no_grad():
            for t, size in ((1, 32), (3, 40)):
                assert net(_clips(b=1, t=t, size=size)).shape == (1, 1)


def test_model_info_counts_macs_of_a_clip():
    info = zoo.model_info("deepfake_r3d")
    assert info["input_size"] == (16, 3, 112, 112)
    assert info["params"] == 33_166_785
    # torchvision lists r3d_18 at 40.70 GFLOPS (multiply-accumulates) for 16x112x112 clips
    assert info["macs"] / 1e9 == pytest.approx(40.70, abs=0.01)


@pytest.mark.parametrize("name", ["deepfake_effnet_lstm", "deepfake_effnet", "deepfake_r3d"])
def test_bad_input(name):
    net = zoo.create_net(name)
    with pytest.raises(ValueError, match=r"x: expected a 5-D \[B, T, C, H, W\]"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="x: the net takes 3 channel"):
        net(torch.randn(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match="x: expected a floating-point"):
        net(torch.zeros(1, 2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        zoo.create_net(name, num_classes=0)
    with pytest.raises(ValueError, match="drop_rate"):
        zoo.create_net(name, drop_rate=1.0)


def test_bad_lstm_and_backbone_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        zoo.create_net("deepfake_effnet_lstm", hidden_size=0)
    with pytest.raises(ValueError, match="backbone: 'yolov3' is a detection model"):
        zoo.create_net("deepfake_effnet", backbone="yolov3")
    with pytest.raises(ValueError, match="backbone_kwargs: 'num_classes'"):
        zoo.create_net("deepfake_effnet_lstm", backbone_kwargs={"num_classes": 3})
