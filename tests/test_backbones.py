"""Backbones (avssl.models.backbones): shapes, gradients, BN, export into torchvision, init."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from avssl.models.backbones import (
    BACKBONES,
    CaffeNet,
    build_backbone,
    export_backbone,
    feature_dim_of,
)

# Small inputs: a 64x64 frame (CaffeNet's minimum is 39 px) and a 4-frame 32x32 clip. Images come
# in pairs: CaffeNet's fc BatchNorm needs two samples in training mode; 3D BN does not.
IMAGE = (2, 3, 64, 64)
CLIP = (1, 3, 4, 32, 32)
TORCHVISION = [n for n, s in BACKBONES.items() if s.torchvision is not None]
OWN = [n for n, s in BACKBONES.items() if s.torchvision is None]


def _input(name: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(CLIP if BACKBONES[name].video else IMAGE, generator=g)


def test_the_entries() -> None:
    assert set(BACKBONES) == {
        "caffenet",
        "caffenet_small",
        "convnet_tiny",
        "vgg_av",
        "vit_tiny",
        "resnet18",
        "r3d_18",
        "r2plus1d_18",
    }
    dims = {n: s.feature_dim for n, s in BACKBONES.items()}
    assert dims == {
        "caffenet": 4096,
        "caffenet_small": 1024,
        "convnet_tiny": 256,
        "vgg_av": 512,
        "vit_tiny": 192,
        "resnet18": 512,
        "r3d_18": 512,
        "r2plus1d_18": 512,
    }
    assert {n for n, s in BACKBONES.items() if s.video} == {"r3d_18", "r2plus1d_18"}
    assert all(s.name == n for n, s in BACKBONES.items())


@pytest.fixture(scope="module")
def caffenet() -> nn.Module:
    """The full-size CaffeNet (58M parameters) is built once for this module's tests."""
    torch.manual_seed(0)
    return build_backbone("caffenet")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_output_shape(name: str, caffenet: nn.Module) -> None:
    torch.manual_seed(0)
    model = caffenet if name == "caffenet" else build_backbone(name)
    x = _input(name)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (x.shape[0], BACKBONES[name].feature_dim)
    assert feature_dim_of(model) == BACKBONES[name].feature_dim
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("kwargs", "dim"), [({"width": 0.5}, 2048), ({"width": 0.25, "fc_dim": 100}, 100)]
)
def test_caffenet_width_and_fc_dim(kwargs: dict[str, float], dim: int) -> None:
    model = build_backbone("caffenet", **kwargs)
    assert feature_dim_of(model) == dim
    assert model(torch.randn(IMAGE)).shape == (2, dim)


def test_caffenet_small_is_quarter_width() -> None:
    small = build_backbone("caffenet_small")
    quarter = build_backbone("caffenet", width=0.25)
    assert {k: v.shape for k, v in small.state_dict().items()} == {
        k: v.shape for k, v in quarter.state_dict().items()
    }
    convs = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [24, 64, 96, 96, 64]


def test_caffenet_minimum_input_size() -> None:
    model = build_backbone("caffenet_small")
    assert model(torch.randn(2, 3, 39, 39)).shape == (2, 1024)
    assert model(torch.randn(2, 3, 39, 227)).shape == (2, 1024)
    with pytest.raises(ValueError, match=r"H, W >= 39.*\(2, 3, 38, 64\)"):
        model(torch.randn(2, 3, 38, 64))
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(2, 1, 64, 64))


def test_caffenet_pool5_is_6x6_at_227() -> None:
    """The paper's geometry: 227 -> conv1 55 -> 27 -> 13 -> pool5 6x6 (Caffe's rounded-up pools)."""
    model = CaffeNet(width=0.25).eval()
    assert model.features(torch.randn(1, 3, 227, 227)).shape == (1, 64, 6, 6)


def test_caffenet_has_batchnorm_after_every_conv_and_fc(caffenet: nn.Module) -> None:
    layers = [m for m in caffenet.modules() if not isinstance(m, nn.Sequential | CaffeNet)]
    kinds = [type(m).__name__ for m in layers]
    for i, kind in enumerate(kinds):
        if kind == "Conv2d":
            assert kinds[i + 1 : i + 3] == ["BatchNorm2d", "ReLU"]
        if kind == "Linear":
            assert kinds[i + 1 : i + 3] == ["BatchNorm1d", "ReLU"]
    assert kinds.count("Conv2d") == 5 and kinds.count("Linear") == 2
    assert kinds.count("LocalResponseNorm") == 0 and kinds.count("Dropout") == 0
    fc = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in fc] == [(256 * 36, 4096), (4096, 4096)]


@pytest.mark.parametrize("name", ["convnet_tiny", "caffenet_small"])
def test_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name)
    model(_input(name)).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def _train_step_stats(model: nn.Module, x: torch.Tensor) -> None:
    """One train-mode forward (of shifted, scaled input) so the BN running statistics are not
    their defaults: the export must carry them for the outputs to match."""
    model.train()
    with torch.no_grad():
        model(x * 2 + 1)


@pytest.mark.parametrize("name", TORCHVISION)
def test_export_loads_into_torchvision(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name)
    x = _input(name)
    _train_step_stats(model, x)
    state = export_backbone(name, model)
    assert all(
        isinstance(v, torch.Tensor) and v.device.type == "cpu" and v.is_contiguous()
        for v in state.values()
    )
    builder = torchvision.models.get_model_builder(name)
    if name == "resnet18":
        assert builder is torchvision.models.resnet18
    else:
        assert builder is getattr(torchvision.models.video, name)
    target = builder(weights=None)
    result = target.load_state_dict(state, strict=False)
    assert result.missing_keys == ["fc.weight", "fc.bias"]
    assert result.unexpected_keys == []

    # Everything up to fc is the same network with the same weights and BN statistics.
    target.fc = nn.Identity()
    target.load_state_dict(state, strict=True)  # with fc = Identity nothing is missing
    model.eval()
    target.eval()
    with torch.no_grad():
        assert torch.equal(target(x), model(x))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    # Full-size caffenet is the same code at width 1; width 0.125 keeps the test fast.
    [(n, {}) for n in OWN if n != "caffenet"]
    + [("caffenet", {"width": 0.125, "fc_dim": 64}), ("convnet_tiny", {"channels": (8, 16)})],
)
def test_export_round_trips_into_itself(name: str, kwargs: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs)
    x = _input(name)
    _train_step_stats(model, x)
    state = export_backbone(name, model)
    torch.manual_seed(1)
    other = build_backbone(name, **kwargs)
    other.load_state_dict(state, strict=True)
    model.eval()
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(x), other(x))


def test_export_is_a_copy_and_unwraps_compile_wrappers() -> None:
    model = build_backbone("convnet_tiny")
    state = export_backbone("convnet_tiny", model)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(state["features.0.weight"], model.state_dict()["features.0.weight"])
    wrapped = nn.DataParallel(model)
    assert set(export_backbone("convnet_tiny", wrapped)) == set(state)


def test_export_rejects_the_wrong_module() -> None:
    with pytest.raises(ValueError, match="does not match backbone 'resnet18'.*missing"):
        export_backbone("resnet18", build_backbone("convnet_tiny"))
    with pytest.raises(ValueError, match="does not match backbone 'r3d_18'.*unexpected"):
        export_backbone("r3d_18", build_backbone("r2plus1d_18"))
    with pytest.raises(ValueError, match="expected a CaffeNet, got a ConvNetTiny"):
        export_backbone("caffenet_small", build_backbone("convnet_tiny"))
    with pytest.raises(ValueError, match="unknown backbone"):
        export_backbone("alexnet", build_backbone("convnet_tiny"))


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'.*caffenet.*r2plus1d_18"):
        build_backbone("vgg16")


def test_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="random init"):
        build_backbone("resnet18", weights="DEFAULT")


@pytest.mark.parametrize("name", ["convnet_tiny", "caffenet_small", "resnet18"])
def test_init_is_deterministic_under_manual_seed(name: str) -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_backbone(name).state_dict()

    a, b, c = build(0), build(0), build(1)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
