"""Counting the cost of a model: multiply-accumulates (MACs) of its convolution and dense layers.

What is counted, for one image (batch 1): Conv2D H_out*W_out*C_out*kh*kw*C_in/groups; DepthwiseConv2D
H_out*W_out*C_in*multiplier*kh*kw; SeparableConv2D its depthwise + pointwise parts; Dense
(positions)*in*units; CBAM its shared MLP (twice) and 7x7 spatial conv. Not counted: biases, BN,
activations, pooling, additions, multiplications by attention gates (all O(H*W*C), small next to the
convolutions). FLOPs = 2 x MACs (one multiply + one add), the usual convention; `convention='mac'`
returns MACs, which many papers call FLOPs.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from fer_keras.layers import CBAM


def _hw(shape) -> int:
    return int(math.prod(int(d) for d in shape[1:-1]))


def layer_macs(layer) -> int:
    """MACs of one (non-nested) layer for batch size 1; 0 for layers that are not counted."""
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return _hw(layer.output.shape) * int(layer.input.shape[-1]) * layer.depth_multiplier * kh * kw
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        c_in, mult = int(layer.input.shape[-1]), layer.depth_multiplier
        return _hw(layer.output.shape) * c_in * mult * (kh * kw + int(layer.output.shape[-1]))
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        c_in = int(layer.input.shape[-1]) // layer.groups
        return _hw(layer.output.shape) * int(layer.output.shape[-1]) * kh * kw * c_in
    if isinstance(layer, layers.Dense):
        return _hw(layer.input.shape) * int(layer.input.shape[-1]) * layer.units if len(layer.input.shape) > 2 \
            else int(layer.input.shape[-1]) * layer.units
    if isinstance(layer, CBAM):
        c = int(layer.input.shape[-1])
        hidden = max(1, c // layer.reduction)
        return 2 * 2 * c * hidden + _hw(layer.input.shape) * 2 * layer.kernel_size ** 2
    return 0


def count_macs(model: keras.Model) -> int:
    """Total MACs of a functional model, nested models included."""
    total = 0
    for layer in model.layers:
        total += count_macs(layer) if isinstance(layer, keras.Model) else layer_macs(layer)
    return total


def count_flops(model: keras.Model, convention: str = "2mac") -> int:
    """FLOPs for one image: 2 x MACs ('2mac', default) or MACs ('mac')."""
    if convention not in ("2mac", "mac"):
        raise ValueError(f"convention {convention!r}: choose '2mac' or 'mac'")
    macs = count_macs(model)
    return 2 * macs if convention == "2mac" else macs
