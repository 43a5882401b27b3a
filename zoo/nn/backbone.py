"""What the classification backbones share: the stage walk of ``features_only`` nets,
``forward``, and the pooled linear classifier head."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class ClassifierBackbone:
    """Mixin for an ``nn.Module`` backbone ending in global average pooling, dropout and a
    linear classifier: ``forward``, ``forward_head`` and ``reset_classifier`` as timm names
    them, and the stage walk behind ``forward_multiscale``.

    The module sets ``avgpool``, ``fc`` (``None`` when built ``features_only``),
    ``drop_rate``, ``num_features``, ``num_classes``, ``features_only`` and ``out_indices``,
    and defines ``forward_features`` and ``forward_multiscale``.
    """

    features_only: bool
    out_indices: tuple[int, ...]
    fc: nn.Module | None
    avgpool: nn.Module
    drop_rate: float
    num_features: int
    num_classes: int
    training: bool

    def _build_head(self, num_features: int, num_classes: int, features_only: bool) -> None:
        """Set ``num_features`` and the pooled linear head (no head when ``features_only``)."""
        self.num_features = num_features
        if features_only:
            self.fc = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_multiscale(x)
        return self.forward_head(self.forward_features(x))

    def _stage_features(
        self, x: torch.Tensor, stages: Iterable[nn.Module], feats: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Run ``stages`` (numbered from 1) on ``x`` up to the last of ``out_indices``, appending
        the outputs of the stages in ``out_indices`` to ``feats``."""
        last = max(self.out_indices)
        for i, stage in enumerate(stages, start=1):
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
