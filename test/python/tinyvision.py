"""A tiny Llama 3.2 Vision model built from torchtune 0.6.1's own component builders.

Same architecture as `llama3_2_vision_11b` (CLIP encoder with tiles, projection head, fusion
decoder), a few hundred kilobytes of width instead of 11B parameters, random weights. It lets
the tests run torchtune's real generate_v2 and (patched) eleuther_eval recipes end to end on CPU.

The tokenizer the tests use is byte-level (test/python/conftest.py: tiny_tiktoken), so the
output layer gets a bias that keeps sampling on printable ASCII letters (any other id in
256..127999 does not exist in that tokenizer); `eot_bias` makes <|eot_id|> win instead, for
short greedy evaluations.
"""

from __future__ import annotations

import torch
from torch import nn
from torchtune.models.llama3_2_vision._component_builders import (
    llama3_2_vision_decoder,
    llama3_2_vision_encoder,
    lora_llama3_2_vision_decoder,
    lora_llama3_2_vision_encoder,
)
from torchtune.modules.model_fusion import DeepFusionModel

VOCAB = 128_256
EOT_ID = 128_009
TILE = 112  # the transform's image_size in the test configs


def _encoder_args(image_size: int) -> dict:
    return dict(patch_size=14, num_heads=2, clip_embed_dim=32, clip_num_layers=2, clip_hidden_states=[0],
                num_layers_projection=1, decoder_embed_dim=32, tile_size=image_size, max_num_tiles=4, in_channels=3)


def _decoder_args(image_size: int) -> dict:
    return dict(vocab_size=VOCAB, num_layers=2, fusion_interval=1, num_special_tokens=8, num_heads=2, num_kv_heads=1,
                embed_dim=32, max_seq_len=8192, encoder_max_seq_len=4 * ((image_size // 14) ** 2 + 1),
                rope_base=500_000, intermediate_dim=64)


def tiny_lora_llama3_2_vision(lora_attn_modules: list[str], decoder_trainable: str = "frozen", encoder_trainable: str = "lora",
                              fusion_trainable: str = "lora", apply_lora_to_mlp: bool = False, apply_lora_to_output: bool = False,
                              lora_rank: int = 8, lora_alpha: float = 16, lora_dropout: float = 0.0,
                              image_size: int = TILE) -> DeepFusionModel:
    """`lora_llama3_2_vision_11b` (same arguments, same trainable logic) at the tiny size: the
    base weights of `tiny_llama3_2_vision` load into it, so the real LoRA recipe can train it."""
    lora = dict(lora_attn_modules=lora_attn_modules, apply_lora_to_mlp=apply_lora_to_mlp, apply_lora_to_output=apply_lora_to_output,
                lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout)
    encoder = lora_llama3_2_vision_encoder(encoder_lora=encoder_trainable == "lora", fusion_lora=fusion_trainable == "lora",
                                           **lora, **_encoder_args(image_size))
    decoder = lora_llama3_2_vision_decoder(decoder_lora=decoder_trainable == "lora", fusion_lora=fusion_trainable == "lora",
                                           **lora, **_decoder_args(image_size))
    return DeepFusionModel(encoder=encoder, decoder=decoder, encoder_trainable=encoder_trainable != "frozen",
                           decoder_trainable=decoder_trainable != "frozen", fusion_trainable=fusion_trainable != "frozen")


def tiny_llama3_2_vision(eot_bias: float = 0.0, image_size: int = TILE) -> DeepFusionModel:
    torch.manual_seed(0)
    encoder = llama3_2_vision_encoder(**_encoder_args(image_size))
    decoder = llama3_2_vision_decoder(**_decoder_args(image_size))
    # Logit bias applied by a forward hook, not stored in the state dict: the checkpoint stays
    # the plain architecture, and `eot_bias` works on loaded weights too.
    bias = torch.full((VOCAB,), -1e4)
    bias[ord("A") : ord("Z") + 1] = 0.0
    if eot_bias:
        bias[EOT_ID] = float(eot_bias)
    decoder.register_buffer("cotvr_logit_bias", bias, persistent=False)

    def add_bias(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + decoder.cotvr_logit_bias.to(device=output.device, dtype=output.dtype)

    decoder.output.register_forward_hook(add_bias)
    return DeepFusionModel(encoder=encoder, decoder=decoder, encoder_trainable=False, decoder_trainable=False, fusion_trainable=False)


def tiny_wide_lora_llama3_2_vision(
    lora_attn_modules: list[str],
    decoder_trainable: str = "frozen",
    encoder_trainable: str = "lora",
    fusion_trainable: str = "lora",
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    image_size: int = TILE,
    quantize_base: bool = False,
) -> DeepFusionModel:
    """`lora_llama3_2_vision_11b` (the shipped fine-tune's builder) at a tiny width, for the benchmark
    (tiny_lora_llama3_2_vision above is narrower, for the recipe runs): the same
    keyword arguments, so a rendered train config's `model:` block binds to it unchanged.

    Widths are multiples of 128 so that QLoRA's NF4 (blocks of 64 x 256 scalers) can quantize
    every frozen linear; 4 decoder layers with a fusion layer every 2 (layer scaling halves them).
    """
    # Looked up on _model_builders at call time, as lora_llama3_2_vision_11b does, so that the
    # benchmark's --layers-scale (which wraps that module's builder) applies here too.
    from torchtune.models.llama3_2_vision import _model_builders as builders
    from torchtune.models.llama3_2_vision._model_builders import LoRATrainable

    lora_llama3_2_vision_encoder = builders.lora_llama3_2_vision_encoder

    torch.manual_seed(0)
    enc, dec, fus = (LoRATrainable(x.lower()) for x in (encoder_trainable, decoder_trainable, fusion_trainable))
    common = dict(lora_attn_modules=lora_attn_modules, apply_lora_to_mlp=apply_lora_to_mlp, apply_lora_to_output=apply_lora_to_output,
                  lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, quantize_base=quantize_base)
    encoder = lora_llama3_2_vision_encoder(
        encoder_lora=enc == LoRATrainable.LORA, fusion_lora=fus == LoRATrainable.LORA, **common,
        patch_size=14, num_heads=2, clip_embed_dim=128, clip_num_layers=2, clip_hidden_states=[0],
        decoder_embed_dim=128, num_layers_projection=1, tile_size=image_size, max_num_tiles=4, in_channels=3,
    )
    decoder = builders.lora_llama3_2_vision_decoder(
        decoder_lora=dec == LoRATrainable.LORA, fusion_lora=fus == LoRATrainable.LORA, **common,
        vocab_size=VOCAB, num_layers=4, fusion_interval=2, num_special_tokens=8, num_heads=2, num_kv_heads=2,
        embed_dim=128, max_seq_len=8192, encoder_max_seq_len=4 * ((image_size // 14) ** 2 + 1), rope_base=500_000,
        intermediate_dim=256,
    )
    return DeepFusionModel(
        encoder=encoder, decoder=decoder,
        encoder_trainable=enc != LoRATrainable.FROZEN, decoder_trainable=dec != LoRATrainable.FROZEN,
        fusion_trainable=fus != LoRATrainable.FROZEN,
    )
