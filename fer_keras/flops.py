"""Counting the cost of a model: multiply-accumulates (MACs) of its convolution and dense layers.

What is counted, for one image (batch 1): Conv2D H_out*W_out*C_out*kh*kw*C_in/groups; DepthwiseConv2D
H_out*W_out*C_in*multiplier*kh*kw; SeparableConv2D its depthwise + pointwise parts; Dense
(positions)*in*units; CBAM its shared MLP (twice) and 7x7 spatial conv. Not counted: biases, BN,
activations, pooling, additions, multiplications by attention gates (all O(H*W*C), small next to the
convolutions). FLOPs = 2 x MACs (one multiply + one add), the usual convention; `convention='mac'`
returns MACs, which many papers call FLOPs. BilinearPooling counts its outer products (H*W*C*D).

`convention='thop'` reproduces the older PyTorch `thop` counter that S000's table used: MACs of the
convolutions, plus one add per output element for convolutions with a bias, plus 2 x elements per
BatchNormalization, Dense as in x out without bias, nothing for activations, pooling and additions.
With it, S000's lightResNets and ResNet18 at 3 x 44 x 44 give exactly the thesis's numbers; VGG19
comes out 512 below, the count thop gives the no-op AvgPool2d(1) the FER code ends VGG with (tests).
"""

from __future__ import annotations

import math

import keras
from keras import layers

from fer_keras.layers import CBAM, BilinearPooling


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
    if isinstance(layer, BilinearPooling):
        a, b = (layer.input[0], layer.input[-1]) if isinstance(layer.input, list) else (layer.input, layer.input)
        return _hw(a.shape) * int(a.shape[-1]) * int(b.shape[-1])
    return 0


def layer_thop(layer) -> int:
    """One layer's count under the `thop` convention (see the module docstring)."""
    if isinstance(layer, layers.BatchNormalization):
        return 2 * _hw(layer.output.shape) * int(layer.output.shape[-1])
    if isinstance(layer, layers.Dense):
        return layer_macs(layer)
    macs = layer_macs(layer)
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)) and layer.use_bias:
        macs += _hw(layer.output.shape) * int(layer.output.shape[-1])
    return macs


def count_macs(model: keras.Model, per_layer=layer_macs) -> int:
    """Total MACs of a functional model, nested models included."""
    total = 0
    for layer in model.layers:
        total += count_macs(layer, per_layer) if isinstance(layer, keras.Model) else per_layer(layer)
    return total


def count_flops(model: keras.Model, convention: str = "2mac") -> int:
    """FLOPs for one image: 2 x MACs ('2mac', default), MACs ('mac') or S000's 'thop' count."""
    if convention not in ("2mac", "mac", "thop"):
        raise ValueError(f"convention {convention!r}: choose '2mac', 'mac' or 'thop'")
    if convention == "thop":
        return count_macs(model, layer_thop)
    macs = count_macs(model)
    return 2 * macs if convention == "2mac" else macs
