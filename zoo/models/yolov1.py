"""YOLO, the first version (Redmon, Divvala, Girshick & Farhadi, "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016).

Built layer for layer from darknet's original (2015) ``cfg/yolo.cfg``, the paper's network:
24 ``[convolutional]`` layers *with a bias and no batch norm* (BN came with YOLOv2), each
LeakyReLU(0.1), padding ``k // 2``, 2x2 stride-2 max-pools between the groups:

    7x7/2 64, pool, 3x3 192, pool, 1x1 128, 3x3 256, 1x1 256, 3x3 512, pool,
    4 x (1x1 256, 3x3 512), 1x1 512, 3x3 1024, pool, 2 x (1x1 512, 3x3 1024),
    3x3 1024, 3x3/2 1024, 3x3 1024, 3x3 1024

(``[N, 3, 448, 448] -> [N, 1024, 7, 7]``, stride 64), then ``[connected] output=4096
activation=leaky`` on the flattened map (50,176 inputs in darknet's C, H, W order, which is
``torch.flatten``'s), ``[dropout] probability=.5`` and ``[connected] output=1470
activation=linear`` feeding ``[detection] classes=20 num=2 side=7 sqrt=1``.

Parameters: 271,703,550 (convs 60,155,968; connected 205,524,992 + 6,022,590).

Output: ``forward(x [B, in_chans, 448, 448]) -> [B, S*S*(C + 5B)]`` raw (``[B, 1470]``), in the
detection layer's layout: first ``S*S*C`` class probabilities (cell ``i = row*S + col``,
class ``j`` at ``i*C + j``), then ``S*S*B`` confidences (``S*S*C + i*B + n``), then ``S*S*B*4``
box values (``S*S*(C+B) + (i*B + n)*4 + k``): x, y offsets in the cell, sqrt(w), sqrt(h)
relative to the image (decoded by ``zoo.ops.boxes.decode_yolov1``). The net is fixed to one
input size (``img_size``, default 448) by its connected layer.

Darknet ``.weights`` files load with :func:`zoo.weights.load_darknet_weights` through
:meth:`YOLOv1.darknet_conv_order` (the connected layers as darknet stores them: biases, then
the ``[outputs, inputs]`` weights, i.e. ``nn.Linear.weight``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import check_in_chans
from ..registry import register_model
from .darknet import LEAKY_SLOPE
from .yolov3 import _check_detection_input

#: The 24 convs of yolo.cfg as ``(filters, size, stride)``; ``"M"`` a 2x2 stride-2 max-pool.
YOLOV1_CONVS = (
    (64, 7, 2), "M",
    (192, 3, 1), "M",
    (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
    *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), "M",
    *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2),
    (1024, 3, 1), (1024, 3, 1),
)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


class YOLOv1(nn.Module):
    """YOLO v1 (darknet cfg/yolo.cfg, 2015).

    Args:
        num_classes: C (VOC: 20).
        in_chans: input channels.
        grid_size: S, the detection grid side (7).
        num_boxes: B, boxes per cell (2).
        img_size: the (square) input size, a multiple of 64 (448); sets the first connected
            layer's inputs ``1024 * (img_size / 64)**2``.
        drop_rate: the dropout between the connected layers (0.5).
        negative_slope: LeakyReLU slope (darknet: 0.1).

    Attributes:
        num_classes, in_chans, grid_size, num_boxes, img_size: as built.
        strides: ``(64,)``, the stride of the last conv map. ``output_kind = "yolov1"``.
        out_features: ``S*S*(C + 5B)``.
        features: the convs (each followed by LeakyReLU) and max-pools; fc1, dropout, fc2: the
            connected layers.
    """

    output_kind = "yolov1"
    strides = (64,)

    def __init__(
        self,
        num_classes: int = 20,
        in_chans: int = 3,
        grid_size: int = 7,
        num_boxes: int = 2,
        img_size: int = 448,
        drop_rate: float = 0.5,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.grid_size = _positive_int(grid_size, "grid_size")
        self.num_boxes = _positive_int(num_boxes, "num_boxes")
        self.img_size = _positive_int(img_size, "img_size")
        if img_size % 64:
            raise ValueError(f"img_size: expected a positive multiple of 64, got {img_size!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate: expected a probability in [0, 1), got {drop_rate!r}")
        self.in_chans = check_in_chans(in_chans)
        self.out_features = grid_size * grid_size * (num_classes + 5 * num_boxes)

        layers: list[nn.Module] = []
        c = in_chans
        for item in YOLOV1_CONVS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            cout, k, stride = item
            layers += [nn.Conv2d(c, cout, k, stride=stride, padding=k // 2), nn.LeakyReLU(negative_slope, inplace=True)]
            c = cout
        self.features = nn.Sequential(*layers)
        side = img_size // 64
        self.fc1 = nn.Linear(c * side * side, 4096)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)
        self.dropout = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(4096, self.out_features)
        self._init_weights(negative_slope)

    def _init_weights(self, negative_slope: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        # the linear output starts near 0 (small class scores, confidences and box values)
        nn.init.normal_(self.fc2.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_detection_input(x, self.in_chans, 64)
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"x: expected {self.img_size}x{self.img_size} images (the connected layer is built for that size), "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        x = torch.flatten(self.features(x), 1)  # darknet's C, H, W order
        return self.fc2(self.dropout(self.act(self.fc1(x))))

    def darknet_conv_order(self) -> list[tuple[nn.Module, None]]:
        """The 24 convs then the two connected layers, in yolo.cfg order; none has a BN
        (darknet stores each as its biases, then its weights)."""
        return [(m, None) for m in self.features if isinstance(m, nn.Conv2d)] + [(self.fc1, None), (self.fc2, None)]

    def darknet_connected_layers(self) -> list[nn.Linear]:
        """The layers that are darknet ``[connected]`` layers (stored transposed in files whose
        header version is above 1000; :func:`zoo.weights.darknet_state_dict` handles it)."""
        return [self.fc1, self.fc2]

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, grid_size={self.grid_size}, num_boxes={self.num_boxes}, "
                f"img_size={self.img_size}")


@register_model(
    family="yolov1",
    task="detection",
    input_size=(3, 448, 448),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    paper="Redmon, Divvala, Girshick & Farhadi, You Only Look Once: Unified, Real-Time Object Detection, "
          "CVPR 2016 (arXiv:1506.02640)",
    reference="darknet:yolo.cfg (2015)",
    verified="the cfg's layer shapes and order; darknet .weights layout",
    num_classes=20,
)
def yolov1(**kwargs) -> YOLOv1:
    return YOLOv1(**kwargs)
