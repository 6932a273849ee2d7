"""The domain vocabulary, written once: stream names, frame rate, segment geometry, guidance, samplers, the
training curriculum and the bounds of every value a user sets. Everything else (core, nodes, trainer, lab) takes
these names from here; node widgets derive their choices and limits from them."""

# Audio: a stream is one conditioning input, a stem one demixed track. Demixing gives the three STEMS; a
# two-speaker (multi) model takes all four STREAMS (the second speaker, speech2, too), a single-speaker model the STEMS.
SPEECH, SPEECH2, EFFECTS, MUSIC = "speech", "speech2", "effects", "music"
STREAMS = (SPEECH, SPEECH2, EFFECTS, MUSIC)
STEMS = (SPEECH, EFFECTS, MUSIC)

# Time: the MTV weights work at 24 frames per second; a segment is 49 frames, the next starts 44 frames later and
# re-uses the last 5 as its clean prefix (2 latents); the VAE compresses 4 frames into a latent.
FPS = 24.0
SEGMENT_FRAMES = 49
SEGMENT_STRIDE = 44
PREFIX_FRAMES = SEGMENT_FRAMES - SEGMENT_STRIDE
PREFIX_LATENTS = 2
TEMPORAL_COMPRESSION = 4
FEATURE_WINDOW_RADIUS = 2  # each frame sees wav2vec2 features of frames n-2 .. n+2
WAV2VEC_SAMPLE_RATE = 16000

# Guidance: the official joint guidance is 3.5 for everything; nested scales add the conditions in this order.
GUIDANCE_ORDER = ("text", SPEECH, EFFECTS, MUSIC)
OFFICIAL_GUIDANCE = 3.5
MAX_GUIDANCE = 30.0
TRAIN_TIMESTEPS = 1000  # the diffusion schedule's length; timesteps run from 999 (noise) towards 0
MAX_STRENGTH = 2.0  # a stream's strength scales its features between the null input (0) and full (1)

SAMPLERS = ("dpm", "ddim")  # dpm: the official stochastic DPM-Solver++(2M); ddim: deterministic
MIN_STEPS, MAX_STEPS = 1, 200
MAX_SEED = 2**53 - 1  # what ComfyUI's widgets can hold; segment k uses seed + k

ATTENTION_BACKENDS = ("sdpa", "xformers", "sage", "math")

# The five-stage curriculum (the paper's DEMIX subsets); a stage trains on the subset of the same name.
CURRICULUM = ("basic_face", "single_character", "multi_character", "sound_event", "visual_mood")
SILENCE_DBFS = -45.0  # a stem whose loudest half second is quieter counts as silent
SPEECH_GATE_DBFS = -45.0  # a demixed speech stem is silenced where it stays quieter (mtv_core.audio.gate)

# Files the audio front-end decodes (audio, or video with a sound track), by name.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".mov", ".mkv", ".webm")
