"""What the classification backbones share: ``features_only`` (the multi-scale feature maps a
detector takes), ``forward`` and the pooled linear classifier head -- written once here."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .checks import check_image_batch, check_in_chans


class ClassifierBackbone:
    """Mixin for an ``nn.Module`` backbone: stages of decreasing resolution, then global
    average pooling, dropout and a linear classifier -- ``forward``, ``forward_features``,
    ``forward_head``, ``reset_classifier`` and ``feature_info`` as timm names them.

    A family calls :meth:`_init_backbone` first, defines :meth:`feature_stages` (index 0 the
    stem, then one entry per stage), then calls :meth:`_setup_features` with one
    ``dict(num_chs, reduction, module)`` per entry and :meth:`_build_head`.

    Built with ``features_only=True`` the net has no classifier and ``forward(x)`` returns the
    maps at ``out_indices`` (by increasing stride); ``feature_info`` then lists their channels
    and strides.
    """

    features_only: bool
    out_indices: tuple[int, ...]
    feature_info: list[dict]
    fc: nn.Module | None
    avgpool: nn.Module
    drop_rate: float
    in_chans: int
    num_features: int
    num_classes: int
    training: bool

    def feature_stages(self) -> Sequence[Callable[[torch.Tensor], torch.Tensor]]:  # pragma: no cover
        """The stem (index 0), then each stage, as callables run in order."""
        raise NotImplementedError

    def _init_backbone(self, in_chans: int, drop_rate: float) -> None:
        """Check and set ``in_chans`` and ``drop_rate`` (dropout before the classifier)."""
        self.in_chans = check_in_chans(in_chans)
        self.drop_rate = float(drop_rate)

    def _setup_features(self, info: Sequence[dict], features_only: bool, out_indices: Sequence[int]) -> None:
        """Check ``out_indices`` against the ``len(info)`` feature levels and set ``features_only``,
        ``out_indices`` (sorted, unique) and ``feature_info``."""
        last = len(info) - 1
        if not out_indices or any(int(i) != i or not 0 <= i <= last for i in out_indices):
            raise ValueError(f"out_indices: expected indices in 0..{last}, got {tuple(out_indices)}")
        self.features_only = bool(features_only)
        self.out_indices = tuple(sorted({int(i) for i in out_indices}))
        self.feature_info = [dict(info[i]) for i in self.out_indices] if features_only else [dict(d) for d in info]

    def _build_head(self, num_features: int, num_classes: int) -> None:
        """Set ``num_features`` and the pooled linear head (none when ``features_only``)."""
        if num_classes < 0:
            raise ValueError(f"num_classes: expected >= 0, got {num_classes}")
        self.num_features = num_features
        self.num_classes = 0 if self.features_only else num_classes
        if self.features_only:
            self.fc = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_multiscale(x)
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_chans, H, W] -> [N, num_features, h, w]``: every stage, the last map."""
        check_image_batch(x, self.in_chans)
        for stage in self.feature_stages():
            x = stage(x)
        return x

    def forward_multiscale(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps at ``out_indices`` (0 = the stem), by increasing stride; stages after the
        last index are not run."""
        check_image_batch(x, self.in_chans)
        feats, last = [], max(self.out_indices)
        for i, stage in enumerate(self.feature_stages()):
            if i > last:
                break
            x = stage(x)
            if i in self.out_indices:
                feats.append(x)
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[N, num_features, h, w] -> [N, num_classes]`` (``[N, num_features]`` if ``pre_logits``)."""
        if self.fc is None:
            raise RuntimeError("forward_head: this net was built with features_only=True and has no head")
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs (0: none)."""
        if self.fc is None:
            raise RuntimeError("reset_classifier: this net was built with features_only=True and has no head")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
