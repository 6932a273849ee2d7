"""The MTV transformer: CogVideoX-5B-I2V blocks (diffusers) with MTV's audio pathways.

Per DiT block the order is norm1/AdaLN -> joint text+video attention -> gated residual ->
audio cross-attention (speech, second speaker, effects; one latent frame's video tokens attend to
that frame's audio tokens) -> music modulation -> norm2/AdaLN -> FFN -> gated residual. Before the
blocks, each stream's windowed wav2vec2 features are projected to tokens and the speech / effects
tokens of every latent frame interact in a few small AdaLN blocks. Clean prefix frames (keyframes,
the previous segment's tail) get timestep-0 modulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps, apply_rotary_emb
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNorm, CogVideoXLayerNormZero
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn

from ..attention import DEFAULT_BACKEND, fused_attention, merge_heads, resolve_backend, split_heads
from ..errors import ConfigError
from ..spec import EFFECTS, MUSIC, SPEECH, SPEECH2
from .attention_processor import AudioCrossAttention, MTVSelfAttnProcessor
from .audio_modules import AudioInteractionBlock, AudioProjection
from .embeddings import RotaryPosEmbed3D

# The official SAT model's two final norms, by the module the converter maps each to (checkpoints/sat_keys.py):
# `transformer.final_layernorm` -> norm_final (SAT BaseTransformer, layernorm_epsilon 1e-5) and
# `mixins.final_layer.norm_final` -> norm_out.norm (SAT FinalLayerMixin, eps 1e-6).
FINAL_LAYERNORM_EPS = 1e-5
FINAL_LAYER_NORM_EPS = 1e-6
# A config key that files written before these were fixed carry: it set norm_final's eps to 1e-6, the value that
# belongs to norm_out.norm. Its stored value is the old default, never a user's choice; loaders drop it.
LEGACY_CONFIG_KEYS = ("final_norm_eps",)


@dataclass
class FrameConditioning:
    """Timestep embeddings for one forward: `temb` for noisy frames, `temb_clean` (t = 0) for the
    latent frames where `clean_mask` (B, T) is True."""

    temb: torch.Tensor
    temb_clean: torch.Tensor | None
    clean_mask: torch.Tensor | None
    num_frames: int


@dataclass
class AudioContext:
    """What every block's audio step reads: per cross-attention stream (B*T, tokens, audio_dim), and
    the pooled music tokens (B, audio_dim)."""

    streams: dict[str, torch.Tensor]
    music: torch.Tensor | None


class MTVBlock(CogVideoXBlock):
    def __init__(self, dim, num_attention_heads, attention_head_dim, time_embed_dim, audio_dim, cross_streams, **kwargs):
        super().__init__(dim, num_attention_heads, attention_head_dim, time_embed_dim, attention_bias=True, **kwargs)
        for name in ("norm1", "norm2"):
            norm = getattr(self, name).norm
            setattr(self, name, FrameLayerNormZero(time_embed_dim, dim, norm.elementwise_affine, norm.eps, bias=True))
        self.attn1.set_processor(MTVSelfAttnProcessor())
        self.audio_norm = nn.ModuleDict({name: nn.LayerNorm(dim) for name in cross_streams})
        self.audio_attn = nn.ModuleDict({name: AudioCrossAttention(dim, audio_dim) for name in cross_streams})
        self.music_adaln = nn.Linear(audio_dim, 2 * dim)
        self.attention_backend = DEFAULT_BACKEND

    def forward(self, hidden_states, encoder_hidden_states, frames: FrameConditioning, image_rotary_emb=None, audio: AudioContext | None = None):
        text_length = encoder_hidden_states.shape[1]
        norm_video, norm_text, gate, text_gate = self.norm1(hidden_states, encoder_hidden_states, frames)
        attn_video, attn_text = self.attn1(hidden_states=norm_video, encoder_hidden_states=norm_text,
                                           image_rotary_emb=image_rotary_emb)
        hidden_states = hidden_states + gated(gate, attn_video, frames.num_frames)
        encoder_hidden_states = encoder_hidden_states + text_gate * attn_text

        if audio is not None:
            hidden_states = self.inject_audio(hidden_states, audio, image_rotary_emb, frames.num_frames)

        norm_video, norm_text, gate, text_gate = self.norm2(hidden_states, encoder_hidden_states, frames)
        ff_out = self.ff(torch.cat([norm_text, norm_video], dim=1))
        hidden_states = hidden_states + gated(gate, ff_out[:, text_length:], frames.num_frames)
        encoder_hidden_states = encoder_hidden_states + text_gate * ff_out[:, :text_length]
        return hidden_states, encoder_hidden_states

    def inject_audio(self, hidden_states, audio: AudioContext, image_rotary_emb, num_frames: int):
        """Per-latent-frame cross-attention of every stream (one batched kernel call) + music AdaLN."""
        batch, length, dim = hidden_states.shape
        frame_tokens = length // num_frames
        # The queries get the spatial part of the video RoPE: the first latent frame's rows (t = 0).
        spatial_rope = None if image_rotary_emb is None else tuple(f[:frame_tokens] for f in image_rotary_emb)
        names = list(self.audio_attn)
        queries, keys, values = [], [], []
        for name in names:
            proj = self.audio_attn[name]
            query = proj.to_q(self.audio_norm[name](hidden_states)).reshape(batch * num_frames, frame_tokens, dim)
            query = self.attn1.norm_q(split_heads(query, self.attn1.heads))
            if spatial_rope is not None:
                query = apply_rotary_emb(query, spatial_rope)
            tokens = audio.streams[name]
            queries.append(query)
            keys.append(self.attn1.norm_k(split_heads(proj.to_k(tokens), self.attn1.heads)))
            values.append(split_heads(proj.to_v(tokens), self.attn1.heads))
        outputs = fused_attention(queries, keys, values, self.attention_backend)
        for name, out in zip(names, outputs):
            out = merge_heads(out).reshape(batch, length, dim)
            hidden_states = hidden_states + self.audio_attn[name].to_out[0](out)
        if audio.music is not None:
            scale, shift = self.music_adaln(audio.music)[:, None].chunk(2, dim=-1)
            hidden_states = hidden_states * (1 + scale) + shift
        return hidden_states


class FrameLayerNormZero(CogVideoXLayerNormZero):
    """CogVideoX's AdaLN-Zero where each latent frame may use the timestep-0 modulation instead (clean prefix
    frames); the same parameters, so checkpoints load unchanged."""

    def forward(self, video, text, frames: FrameConditioning):
        params = self.linear(self.silu(frames.temb)).chunk(6, dim=1)
        shift, scale, gate = (p[:, None, None] for p in params[:3])
        if frames.clean_mask is not None:
            clean = self.linear(self.silu(frames.temb_clean)).chunk(6, dim=1)
            mask = frames.clean_mask[:, :, None, None]
            shift, scale, gate = (torch.where(mask, c[:, None, None], p) for c, p in zip(clean[:3], (shift, scale, gate)))
        video = (self.norm(video).unflatten(1, (frames.num_frames, -1)) * (1 + scale) + shift).flatten(1, 2)
        text_shift, text_scale, text_gate = (p[:, None] for p in params[3:])
        return video, self.norm(text) * (1 + text_scale) + text_shift, gate, text_gate


# diffusers' step caches find a block's video and text outputs through this registry.
TransformerBlockRegistry.register(MTVBlock, TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=1))


def gated(gate: torch.Tensor, update: torch.Tensor, num_frames: int) -> torch.Tensor:
    """gate (B, T|1, 1, D) times update (B, T*S, D)."""
    return (gate * update.unflatten(1, (num_frames, -1))).flatten(1, 2)


class MTVTransformer3DModel(ModelMixin, ConfigMixin, CacheMixin):
    """CogVideoX-5B-I2V transformer plus the MTV audio modules, computing what the released MTV
    weights were trained for. Build from a named config: `MTVTransformer3DModel(**mtv_config("tiny-single"))`."""

    _supports_gradient_checkpointing = True
    _repeated_blocks = ["MTVBlock"]
    _no_split_modules = ["MTVBlock", "CogVideoXPatchEmbed"]
    _skip_layerwise_casting_patterns = ["patch_embed", "norm"]
    # Ulysses sequence parallelism, applied from outside by mtv_core.hooks.row_parallel. `grid`: the module whose
    # `grid` input is each forward's token grid (frames, rows, cols). `split`: per module, the input (by name) or the
    # output whose video tokens each process keeps only some rows of (the same rows of every latent frame). `gather`:
    # the modules whose output rows every process gets back whole.
    _row_parallel_plan = {
        "grid": "rope",
        "split": {"rope": "output", "transformer_blocks.0": "hidden_states"},
        "gather": ("proj_out",),
    }

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        out_channels: int = 16,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 42,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        use_rotary_positional_embeddings: bool = True,
        use_learned_positional_embeddings: bool = True,
        audio_feature_dim: int = 46080,
        audio_dim: int = 768,
        audio_tokens_per_frame: int = 32,
        audio_intermediate_dim: int = 512,
        audio_interaction_layers: int = 4,
        audio_interaction_head_dim: int = 16,
        multi_speaker: bool = False,
        shared_injection: bool = False,
        variant: str = "single",
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=dim,
            text_embed_dim=text_embed_dim,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            use_positional_embeddings=not use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
        )
        self.time_proj = Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(dim, time_embed_dim, "silu")
        self.rope = RotaryPosEmbed3D(attention_head_dim)
        self.transformer_blocks = nn.ModuleList(
            [
                MTVBlock(dim, num_attention_heads, attention_head_dim, time_embed_dim, audio_dim, self.cross_streams)
                for _ in range(num_layers)
            ]
        )
        self.norm_final = nn.LayerNorm(dim, eps=FINAL_LAYERNORM_EPS)
        self.norm_out = AdaLayerNorm(embedding_dim=time_embed_dim, output_dim=2 * dim, norm_elementwise_affine=True,
                                     norm_eps=FINAL_LAYER_NORM_EPS, chunk_dim=1)
        self.proj_out = nn.Linear(dim, patch_size * patch_size * out_channels)

        encoder_streams = (SPEECH, EFFECTS, MUSIC)  # the second speaker shares the speech encoder
        self.audio_encoders = nn.ModuleDict(
            {
                name: AudioProjection(audio_feature_dim, audio_intermediate_dim, audio_dim, audio_tokens_per_frame)
                for name in encoder_streams
            }
        )
        self.speaker_embeddings = nn.Parameter(torch.zeros(2, audio_dim)) if multi_speaker else None
        self.audio_interaction_blocks = nn.ModuleList(
            [AudioInteractionBlock(audio_dim, time_embed_dim, audio_interaction_head_dim) for _ in range(audio_interaction_layers)]
        )
        self.gradient_checkpointing = False
        # The official interaction blocks take batch row 0's timestep embedding for every sample; the same at
        # inference (all rows share t), not in training with mixed timesteps. Off: each sample its own.
        self.first_row_interaction_timestep = False
        self.init_audio_weights()

    @property
    def audio_streams(self) -> tuple[str, ...]:
        """The streams a caller passes to `project_audio`."""
        return (SPEECH, SPEECH2, EFFECTS, MUSIC) if self.config.multi_speaker else (SPEECH, EFFECTS, MUSIC)

    @property
    def interval_streams(self) -> tuple[str, ...]:
        """The streams that take the per-latent-frame (interval) pathway; music takes the global one."""
        return tuple(name for name in self.audio_streams if name != MUSIC)

    @property
    def cross_streams(self) -> tuple[str, ...]:
        """Names of each block's cross-attentions: one per interval stream, or one shared (ablation)."""
        return ("shared",) if self.config.shared_injection else self.interval_streams

    def init_audio_weights(self, zero_music: bool = True):
        """The official initialisation of the audio pathways added to a backbone: N(0, 0.02) attention
        projections, a small output projection, and a zero music modulation (so the music pathway starts
        as the identity). `zero_music=False` draws the modulation from N(0, 0.02) instead, for a model
        trained from scratch: with zero weights the music encoder gets no gradient, and on the demo world
        the music stayed unused (the wall colour followed the noise seed)."""
        out_std = 0.02 / (2 * self.config.num_layers) ** 0.5
        for block in self.transformer_blocks:
            for proj in block.audio_attn.values():
                for linear in (proj.to_q, proj.to_k, proj.to_v, proj.to_out[0]):
                    nn.init.normal_(linear.weight, std=out_std if linear is proj.to_out[0] else 0.02)
                    nn.init.zeros_(linear.bias)
            nn.init.zeros_(block.music_adaln.bias)
            if zero_music:
                nn.init.zeros_(block.music_adaln.weight)
            else:
                nn.init.normal_(block.music_adaln.weight, std=0.02)

    def select_attention_backend(self, name: str | None) -> str:
        """Route every attention of the model through one backend of `mtv_core.attention`."""
        backend = resolve_backend(name)
        for block in self.transformer_blocks:
            block.attn1.processor.backend = backend
            block.attention_backend = backend
        for block in self.audio_interaction_blocks:
            block.attn.backend = backend
        return backend

    # -- audio ---------------------------------------------------------------------------------
    def project_audio(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Windowed features per stream (B, frames, audio_feature_dim) -> tokens (B, latent_frames,
        tokens, audio_dim). Independent of the timestep: compute once per segment."""
        missing = [name for name in self.audio_streams if name not in features]
        if missing:
            raise ConfigError(
                f"audio features for {missing} are missing; this {self.config.variant} model takes "
                f"{list(self.audio_streams)} (pass silence-encoded features for an absent stem)"
            )
        tokens = {}
        for name in self.audio_streams:
            encoder = self.audio_encoders[SPEECH if name == SPEECH2 else name]
            tokens[name] = encoder(features[name].to(encoder.proj1.weight.dtype))
        if self.speaker_embeddings is not None:
            tokens[SPEECH] = tokens[SPEECH] + self.speaker_embeddings[0]
            tokens[SPEECH2] = tokens[SPEECH2] + self.speaker_embeddings[1]
        return tokens

    def audio_context(self, audio_tokens: dict[str, torch.Tensor], temb: torch.Tensor, num_frames: int) -> AudioContext:
        """Run the interaction blocks (they depend on the timestep) and pool the music tokens."""
        for name in self.audio_streams:
            if audio_tokens[name].shape[1] != num_frames:
                raise ConfigError(
                    f"audio tokens of stream {name!r} cover {audio_tokens[name].shape[1]} latent frames but the "
                    f"latents have {num_frames}; pass features for {(num_frames - 1) * 4 + 1} video frames"
                )
        streams = {name: audio_tokens[name].flatten(0, 1) for name in self.interval_streams}
        if self.first_row_interaction_timestep:
            temb = temb[:1].expand_as(temb)
        frame_temb = temb.repeat_interleave(num_frames, dim=0)
        for block in self.audio_interaction_blocks:
            streams = block(streams, frame_temb)
        if self.config.shared_injection:
            streams = {"shared": torch.cat(list(streams.values()), dim=1)}
        music = audio_tokens[MUSIC].flatten(1, 2).mean(dim=1)
        return AudioContext(streams, music)

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor | int | float,
        audio_tokens: dict[str, torch.Tensor] | None = None,
        clean_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict v for latents (B, T, C, H, W) [C = out_channels; the I2V image channels are zero],
        text embeddings (B, 226, text_embed_dim) and timesteps (B,). `audio_tokens` from
        `project_audio` (None: no audio pathway at all, the plain backbone); `clean_mask` (B, T) marks
        clean prefix latents, which get timestep-0 modulation."""
        batch, num_frames, channels, height, width = hidden_states.shape
        hidden_states = self._pad_image_channels(hidden_states)
        timestep = torch.as_tensor(timestep, device=hidden_states.device).reshape(-1).expand(batch)
        temb = self._embed_timestep(timestep, hidden_states.dtype)
        frames = FrameConditioning(temb, None, None, num_frames)
        if clean_mask is not None and bool(clean_mask.any()):
            frames.clean_mask = clean_mask.to(hidden_states.device, torch.bool)
            frames.temb_clean = self._embed_timestep(torch.zeros_like(timestep), hidden_states.dtype)

        tokens = self.patch_embed(encoder_hidden_states, hidden_states)
        text_length = encoder_hidden_states.shape[1]
        # contiguous, so that every block sees the same strides (one compiled graph for all blocks)
        text, video = tokens[:, :text_length].contiguous(), tokens[:, text_length:].contiguous()
        rotary = self._rotary_embedding(num_frames, height, width, hidden_states.device)
        audio = None if audio_tokens is None else self.audio_context(audio_tokens, temb, num_frames)

        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                video, text = self._gradient_checkpointing_func(block, video, text, frames, rotary, audio)
            else:
                video, text = block(video, text, frames, rotary, audio)

        video = self.proj_out(self.norm_out(self.norm_final(video), temb=temb))
        return self._unpatchify(video, batch, num_frames, height, width)

    def _pad_image_channels(self, latents: torch.Tensor) -> torch.Tensor:
        channels = latents.shape[2]
        if channels == self.config.in_channels:
            return latents
        if channels != self.config.out_channels:
            raise ConfigError(
                f"latents have {channels} channels; this model takes {self.config.out_channels} "
                f"(or {self.config.in_channels} with the image channels); check that the VAE matches the model"
            )
        zeros = latents.new_zeros(*latents.shape[:2], self.config.in_channels - channels, *latents.shape[3:])
        return torch.cat([latents, zeros], dim=2)

    def _embed_timestep(self, timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.time_embedding(self.time_proj(timestep).to(dtype))

    def _rotary_embedding(self, num_frames: int, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.config.use_rotary_positional_embeddings:
            return None
        p = self.config.patch_size
        return self.rope((num_frames, height // p, width // p), device)

    def _unpatchify(self, x: torch.Tensor, batch: int, frames: int, height: int, width: int) -> torch.Tensor:
        p = self.config.patch_size
        x = x.reshape(batch, frames, height // p, width // p, -1, p, p)
        return x.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)

