"""timm backbones (NCHW and NHWC outputs), local ImageNet-weights loading, FPN neck, MAC counter."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from depth_diffusion_ros.models.backbone import BackboneWeightsError, TimmBackbone
from depth_diffusion_ros.models.flops import count_macs
from depth_diffusion_ros.models.neck import FeaturePyramidNeck

timm = pytest.importorskip("timm")
torch.set_num_threads(2)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("test_resnet", {}),
        ("test_convnext", {}),
        # a tiny Swin (NHWC features in timm) built from the swin_large family's code path
        ("swin_tiny_patch4_window7_224",
         dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), img_size=(64, 128))),
    ],
)
def test_backbone_returns_nchw_strides_4_to_32_and_neck_fuses_at_stride_4(name, kwargs):
    bb = TimmBackbone(name, **kwargs)
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        feats = bb(x)
    assert bb.strides == [4, 8, 16, 32]
    for f, c, s in zip(feats, bb.channels, bb.strides):
        assert f.shape == (2, c, 64 // s, 128 // s), (name, f.shape)
    if name.startswith("swin"):
        assert bb.nhwc
    neck = FeaturePyramidNeck(bb.channels, bb.strides, out_channels=24, out_stride=4)
    with torch.no_grad():
        cond = neck(feats, image_hw=(64, 128))
    assert cond.shape == (2, 24, 16, 32)


def test_backbone_loads_local_weights_file_equal_weights(tmp_path):
    torch.manual_seed(1)
    classifier = timm.create_model("test_resnet", pretrained=False)  # includes the fc head
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(path))
    bb = TimmBackbone("test_resnet", pretrained_path=path)
    ref = classifier.state_dict()
    loaded = bb.body.state_dict()
    assert loaded, "feature model has no weights?"
    for k, v in loaded.items():
        assert torch.equal(v, ref[k]), k
    # a torch state-dict file (weights_only load, wrapped in {"state_dict": ...}) works too
    pth = tmp_path / "imagenet.pth"
    torch.save({"state_dict": classifier.state_dict()}, pth)
    bb2 = TimmBackbone("test_resnet", pretrained_path=pth)
    assert torch.equal(bb2.body.state_dict()["conv1.0.weight"], ref["conv1.0.weight"])
    # a fresh backbone without weights differs (so the check above is meaningful)
    assert not torch.equal(TimmBackbone("test_resnet").body.state_dict()["conv1.0.weight"], ref["conv1.0.weight"])


def test_swin_nhwc_feature_model_loads_classification_weights(tmp_path):
    kw = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), img_size=(64, 128))
    classifier = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **kw)
    path = tmp_path / "swin.safetensors"
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(path))
    bb = TimmBackbone("swin_tiny_patch4_window7_224", pretrained_path=path, **kw)
    # timm's feature wrapper renames layers.0 -> layers_0; loading maps the names
    assert torch.equal(bb.body.state_dict()["layers_0.blocks.0.attn.qkv.weight"],
                       classifier.state_dict()["layers.0.blocks.0.attn.qkv.weight"])


def test_backbone_weights_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(BackboneWeightsError, match="nope.safetensors"):
        TimmBackbone("test_resnet", pretrained_path=missing)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(BackboneWeightsError, match="corrupt.safetensors"):
        TimmBackbone("test_resnet", pretrained_path=corrupt)
    other = tmp_path / "efficientnet.safetensors"
    save_file(timm.create_model("test_efficientnet").state_dict(), str(other))
    with pytest.raises(BackboneWeightsError, match="efficientnet.safetensors.*missing keys"):
        TimmBackbone("test_resnet", pretrained_path=other)
    with pytest.raises(ValueError, match="no_such_net"):
        TimmBackbone("no_such_net")


def test_count_macs_of_a_known_conv_and_linear():
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.zeros(1, 8, 10, 20)
    # every output value (16*10*20) needs 8*3*3 multiply-adds
    assert count_macs(conv, x) == 16 * 10 * 20 * 8 * 9
    lin = torch.nn.Linear(32, 5)
    assert count_macs(lin, torch.zeros(4, 32)) == 4 * 32 * 5
