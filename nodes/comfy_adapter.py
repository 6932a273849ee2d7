"""The one place where ComfyUI's services reach the pack: progress, interrupts, model, input and output folders,
device, model management, and a core CLIP as the text encoder.

Every function falls back to plain behaviour when ComfyUI is absent (tests, scripts), so mtv_core only ever sees
plain callbacks and paths. Every name a node receives is checked here before it touches the disk: files are read
only from ComfyUI's input folder, its model folders or the built-in demo, and written only under its output folder.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path

DEMUCS_FOLDER = "demucs"
MODEL_EXTENSIONS = {".safetensors", ".sft", ".th"}
DEMO_CHOICE = "demo (built-in)"
# The demo demixer separates only the synthetic world's sounds: its entry says so, and it is listed after the real
# ones so a user fixing a missing demixer does not pick it for real audio. DEMO_CHOICE still names it (saved graphs).
DEMO_DEMIXER_CHOICE = "demo (built-in, synthetic sounds only)"
DEMO_INPUT_FOLDER = "mtv-demo"
NO_DEMIXER = "(no demixer installed: put an HTDemucs file in models/demucs)"
NO_LORA = "(no LoRA installed: put an MTV LoRA in models/loras)"
# Set to 1 by the server's operator when starting ComfyUI: only then may a workflow's 'fetch:' entry download.
ALLOW_NODE_FETCH = "MTV_ALLOW_NODE_FETCH"


def _fallback(variable: str, default: str) -> Path:
    """Outside ComfyUI (scripts, tests) folders come from MTV_MODELS_DIR / MTV_INPUT_DIR / MTV_OUTPUT_DIR."""
    return Path(os.environ.get(variable, default))


def _folder_paths():
    try:
        import folder_paths

        return folder_paths
    except ImportError:
        return None


def register_model_folders() -> None:
    """ComfyUI already knows diffusion_models, vae, text_encoders, audio_encoders; add demucs."""
    fp = _folder_paths()
    if fp is None or DEMUCS_FOLDER in fp.folder_names_and_paths:
        return
    fp.folder_names_and_paths[DEMUCS_FOLDER] = ([os.path.join(fp.models_dir, DEMUCS_FOLDER)], MODEL_EXTENSIONS)


def folder_roots(folder: str) -> list[Path]:
    fp = _folder_paths()
    if fp is None:
        return [_fallback("MTV_MODELS_DIR", "models") / folder]
    try:
        return [Path(p) for p in fp.get_folder_paths(folder)]
    except KeyError:
        return []


# -- models -----------------------------------------------------------------------------------------------------
def _demo_file(folder: str) -> Path | None:
    """The built-in demo's file for a model folder, if the demo is installed."""
    from mtv_core import demo

    path = {"diffusion_models": demo.MODEL, "vae": demo.VAE, "text_encoders": demo.T5, "audio_encoders": demo.WAV2VEC,
            DEMUCS_FOLDER: demo.DEMIXER}.get(folder)
    return path if path is not None and path.exists() else None


def list_model_files(folder: str, extensions=MODEL_EXTENSIONS) -> list[str]:
    """One entry per model under a model folder: files, and Hugging Face folders (which hold a config.json) as
    'name/' without the files inside them; the built-in demo comes first where it has a file for this folder,
    except the demo demixer, which comes last under its own label."""
    names = set()
    for root in folder_roots(folder):
        if root.is_dir():
            names |= _models_under(root, extensions)
    if not _demo_file(folder):
        return sorted(names)
    if folder == DEMUCS_FOLDER:
        return sorted(names) + [DEMO_DEMIXER_CHOICE]
    return [DEMO_CHOICE] + sorted(names)


def is_demo_choice(folder: str, name) -> bool:
    return name == DEMO_CHOICE or (folder == DEMUCS_FOLDER and name == DEMO_DEMIXER_CHOICE)


def _models_under(root: Path, extensions) -> set[str]:
    names = set()
    for current, folders, files in os.walk(root, followlinks=True):
        here = Path(current)
        if here != root and _holds_one_model(here):
            names.add(here.relative_to(root).as_posix() + "/")
            folders.clear()  # the folder is one model: its weight files are not listed on their own
            continue
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        names |= {(here / f).relative_to(root).as_posix() for f in files if Path(f).suffix in extensions and not f.startswith(".")}
    return names


def _holds_one_model(folder: Path) -> bool:
    """A Hugging Face folder; or a fetched T5, whose encoder and tokenizer are subfolders."""
    return (folder / "config.json").is_file() or (folder / "text_encoder" / "config.json").is_file()


def model_path(folder: str, name: str) -> Path:
    """Absolute path of a model chosen by name; the name cannot leave the model folder."""
    from mtv_core.errors import ModelFileError
    from mtv_core.fileio import relative_name

    if is_demo_choice(folder, name) and _demo_file(folder):
        return _demo_file(folder)
    relative = relative_name(name.rstrip("/") if isinstance(name, str) else name, f"models/{folder} folder")
    for root in folder_roots(folder):
        candidate = root / relative
        if candidate.exists():
            return candidate
    searched = ", ".join(str(r) for r in folder_roots(folder)) or folder
    raise ModelFileError(f"model file {name!r} not found in {searched}; put it in ComfyUI's models/{folder} folder and refresh")


def model_choices(folder: str, extensions=MODEL_EXTENSIONS) -> list[str]:
    """What a loader lists: the installed models, then a 'fetch: ...' entry for each official model of this folder
    that is not installed yet. Listing downloads nothing."""
    return list_model_files(folder, extensions) + fetch_choices(folder)


def demixer_choices() -> list[str]:
    """Demixer Loader's list: the installed demixers (or a line saying there is none, so a new node's default
    downloads nothing), the ones it can fetch, then the demo demixer, which knows only synthetic sounds."""
    installed = list_model_files(DEMUCS_FOLDER)
    real = [name for name in installed if name != DEMO_DEMIXER_CHOICE]
    return (real or [NO_DEMIXER]) + fetch_choices(DEMUCS_FOLDER) + installed[len(real):]


def fetch_choices(folder: str) -> list[str]:
    from mtv_core.hub import offer_label, offers_for

    return [offer_label(model) for model in offers_for(folder) if _installed(folder, model) is None]


def _installed(folder: str, model) -> Path | None:
    return next((root / model.installed for root in folder_roots(folder) if (root / model.installed).exists()), None)


def is_fetch_choice(folder: str, name) -> bool:
    from mtv_core.hub import model_for_label

    model = model_for_label(name)
    return model is not None and model.folder == folder


def node_fetch_allowed() -> bool:
    return os.environ.get(ALLOW_NODE_FETCH) == "1"


def node_fetch_refusal(folder: str, name: str) -> str | None:
    """Why a 'fetch: ...' choice may not download here, or None. An installed model needs no download."""
    from mtv_core.hub import model_for_label

    model = model_for_label(name)
    if node_fetch_allowed() or _installed(folder, model) is not None:
        return None
    return (f"downloading models from a workflow is off on this server; run `python -m mtv_core models fetch "
            f"{model.name} --dest ComfyUI/models` (or start ComfyUI with {ALLOW_NODE_FETCH}=1)")


def resolve_model(folder: str, name: str) -> Path:
    """The path of the model a loader was given. A 'fetch: ...' choice is downloaded (and converted) into the
    folder's first ComfyUI path the first time, with the progress bar, then loaded from there; only where the
    server's operator allowed it (MTV_ALLOW_NODE_FETCH=1)."""
    from mtv_core.errors import ConfigError, ModelFileError
    from mtv_core.hub import model_for_label
    from mtv_core.hub.fetch import fetch_models

    if not is_fetch_choice(folder, name):
        return model_path(folder, name)
    model = model_for_label(name)
    installed = _installed(folder, model)
    if installed is not None:
        return installed
    if (refusal := node_fetch_refusal(folder, name)) is not None:
        raise ConfigError(refusal)
    roots = folder_roots(folder)
    if not roots:
        raise ModelFileError(f"ComfyUI has no models/{folder} folder to fetch {model.name} into; add one in "
                             "extra_model_paths.yaml or fetch it with `python -m mtv_core models fetch`")
    [path] = fetch_models([model.name], lambda _: roots[0], progress=progress_and_interrupt(1),
                          say=lambda line: logging.info("[MTV] %s", line))
    return path


def check_model_name(folder: str, name: str) -> bool | str:
    """What a loader's VALIDATE_INPUTS returns: True, or one line naming the problem and the fix."""
    from mtv_core.errors import MTVError

    if name == NO_DEMIXER:
        return ("no demixer is installed: put an HTDemucs model in ComfyUI's models/demucs folder (convert MVSEP-CDX23 "
                "with `python -m mtv_core convert-demixer`), choose the 'fetch: htdemucs' entry to download the 4-stem "
                "htdemucs, or use Stems From Audio with stems you separated yourself")
    if name == NO_LORA:
        return ("no LoRA is installed: put an MTV LoRA (made with `python -m trainer --train lora`) in ComfyUI's "
                "models/loras folder and refresh, or bypass this node")
    if is_fetch_choice(folder, name):
        return node_fetch_refusal(folder, name) or True
    try:
        model_path(folder, name)
    except MTVError as error:
        return str(error)
    return True


# -- input files ------------------------------------------------------------------------------------------------
def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp is not None else _fallback("MTV_INPUT_DIR", "input")


def input_path(name: str) -> Path:
    """A file from ComfyUI's input folder (as LoadImage/LoadAudio use). Names under mtv-demo/ fall back to the
    built-in demo's example when the input folder has no copy of it."""
    from mtv_core.fileio import contained_path

    path = contained_path(input_directory(), name, "input folder")
    if not path.exists() and name.startswith(DEMO_INPUT_FOLDER + "/"):
        from mtv_core import demo

        return contained_path(demo.EXAMPLE, name[len(DEMO_INPUT_FOLDER) + 1:], "demo example folder")
    return path


def check_input_file(name: str) -> bool | str:
    """What VALIDATE_INPUTS returns for a file name: True, or one line naming the problem and the fix."""
    from mtv_core.errors import MTVError

    try:
        path = input_path(name)
    except MTVError as error:
        return str(error)
    if not path.is_file():
        return f"file {name!r} is not in ComfyUI's input folder; upload it with the node's button or copy it there"
    return True


def input_files(content_types=("audio", "video")) -> list[str]:
    """The input folder's files (one level of subfolders, as ComfyUI's uploads use), the demo example last."""
    fp = _folder_paths()
    folder = input_directory()
    files = []
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append(path.name)
            elif path.is_dir() and not path.name.startswith("."):
                files += [f"{path.name}/{p.name}" for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if fp is not None:
        files = fp.filter_files_content_types(files, list(content_types))
    return [name for name in files if not name.startswith(DEMO_INPUT_FOLDER + "/")] + _demo_inputs()


def _demo_inputs() -> list[str]:
    return [f"{DEMO_INPUT_FOLDER}/{p.name}" for p in _shipped_inputs()[DEMO_INPUT_FOLDER]]


# The official workflows' example soundtrack and keyframe, written by workflows/build.py from the demo's examples.
# They go in the input folder itself: core Load Image lists no subfolder.
EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "workflows" / "inputs"


def _shipped_inputs() -> dict[str, list[Path]]:
    """Input subfolder ("": the input folder itself) -> the shipped files that belong there."""
    from mtv_core import demo

    return {DEMO_INPUT_FOLDER: [p for p in sorted(demo.EXAMPLE.glob("*")) if p.suffix in (".wav", ".mp4")],
            "": [p for p in sorted(EXAMPLE_INPUTS.glob("*")) if p.is_file()]}


def install_example_inputs() -> None:
    """Copy the demo's example into ComfyUI's input/mtv-demo/ (the browser's players read only the input folder) and
    the official workflows' examples into input/ (Load Audio and core Load Image read them there).
    A file already there is never replaced; a read-only input folder is left alone."""
    fp = _folder_paths()
    if fp is None:
        return
    for folder, sources in _shipped_inputs().items():
        target = Path(fp.get_input_directory()) / folder
        try:
            target.mkdir(parents=True, exist_ok=True)
            for source in sources:
                if not (target / source.name).exists():
                    shutil.copyfile(source, target / source.name)
        except OSError as error:
            logging.info("[MTV] example inputs not copied to %s (%s); workflows naming them need your own files", target, error)


def install_example_inputs_on_first_request() -> None:
    """Importing the pack writes nothing (scripts and tests import it too): the example inputs are copied once, when
    the server gets its first request (the page, /object_info's file lists or a headless /prompt), before it is
    answered. Without a running server to hook, they are copied now."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    pending = [True]

    @web.middleware
    async def install_first(request, handler):
        if pending:
            pending.clear()
            install_example_inputs()
        return await handler(request)

    try:
        PromptServer.instance.app.middlewares.append(install_first)
    except (AttributeError, RuntimeError) as error:  # no server instance, or the server already started
        logging.info("[MTV] example inputs copied at import (%s)", error)
        install_example_inputs()


# -- the template browser ---------------------------------------------------------------------------------------
DEMO_WORKFLOW_PREFIX = "MTV Demo"


def list_demo_workflow_first() -> None:
    """ComfyUI serves a pack's example workflows in directory order (a hash order on Linux) and the template
    browser shows them in that order; put the demo, the one that runs with nothing to download, first."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return

    @web.middleware
    async def demo_first(request, handler):
        response = await handler(request)
        if request.path.endswith("/workflow_templates") and isinstance(response, web.Response) and response.status == 200:
            return _with_demo_first(response)
        return response

    try:
        PromptServer.instance.app.middlewares.append(demo_first)
    except (AttributeError, RuntimeError) as error:  # no server instance, or the server already started
        logging.info("[MTV] template order left as ComfyUI serves it (%s)", error)


def _with_demo_first(response):
    import json

    from aiohttp import web

    try:
        listing = json.loads(response.body)
    except (TypeError, ValueError):
        return response
    return web.json_response(demo_first(listing))


def demo_first(listing):
    """/workflow_templates' answer with this pack's names in order, the demo first; anything else as it was."""
    if not isinstance(listing, dict):
        return listing
    ordered = dict(listing)
    for pack, names in listing.items():
        if isinstance(names, list) and any(isinstance(n, str) and n.startswith(DEMO_WORKFLOW_PREFIX) for n in names):
            ordered[pack] = sorted(names, key=lambda n: (not str(n).startswith(DEMO_WORKFLOW_PREFIX), str(n)))
    return ordered


# -- output folders ---------------------------------------------------------------------------------------------
def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp is not None else _fallback("MTV_OUTPUT_DIR", "output")


def output_folder(name: str) -> Path:
    """A folder under ComfyUI's output folder, chosen by a relative name that cannot leave it."""
    from mtv_core.fileio import contained_path

    return contained_path(output_directory(), name, "output folder")


# -- ComfyUI's AUDIO ---------------------------------------------------------------------------------------------
def to_comfy_audio(waveform) -> dict:
    """A core Waveform -> ComfyUI's AUDIO: {"waveform": float32 [1, C, T] on the CPU, "sample_rate": int}."""
    import torch

    return {"waveform": waveform.samples.detach().to("cpu", torch.float32).unsqueeze(0).contiguous(),
            "sample_rate": int(waveform.sample_rate)}


def from_comfy_audio(audio: dict):
    """ComfyUI's AUDIO ({"waveform": [B, C, T], "sample_rate": int}; B must be 1) -> a core Waveform."""
    import torch

    from mtv_core.audio.io import Waveform, check_finite
    from mtv_core.errors import AudioInputError

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise AudioInputError("AUDIO input is not a ComfyUI audio dict with 'waveform' and 'sample_rate'; connect a Load Audio output.")
    samples = torch.as_tensor(audio["waveform"]).detach().to("cpu", torch.float32)
    if samples.dim() == 3:
        if samples.shape[0] != 1:
            raise AudioInputError(f"AUDIO input holds a batch of {samples.shape[0]} clips; pass one clip (batch 1).")
        samples = samples[0]
    if samples.dim() != 2 or samples.shape[1] == 0:
        raise AudioInputError(f"AUDIO waveform has shape {tuple(samples.shape)}; expected [1, channels, samples] with samples > 0.")
    check_finite(samples, "AUDIO input")
    return Waveform(samples.contiguous(), int(audio["sample_rate"]))


# -- progress, interrupts, devices ------------------------------------------------------------------------------
def progress_callback(total: int):
    """(step, total) -> None that drives ComfyUI's progress bar (which also checks for interrupts)."""
    try:
        from comfy.utils import ProgressBar
    except ImportError:
        return lambda step, total_steps=None: None
    bar = ProgressBar(total)
    return lambda step, total_steps=None: bar.update_absolute(step, total_steps)


def preview_size() -> int | None:
    """The largest preview ComfyUI sends (its --preview-size), or None where it shows none (--preview-method none,
    its default) or outside ComfyUI. auto, latent2rgb and taesd all get the VAE's latent -> RGB projection: there is
    no tiny decoder for CogVideoX latents."""
    try:
        from comfy.cli_args import LatentPreviewMethod, args
    except ImportError:
        return None
    return None if args.preview_method == LatentPreviewMethod.NoPreviews else args.preview_size


class NodeProgress:
    """The running node's progress bar, moved by sampling (steps; with a preview image after each when previews are
    on) and by decoding (each segment's decoder slices, the bar's max switching to them while they run)."""

    def __init__(self, bar, latent_preview=None, size: int | None = None):
        self.bar, self.latent_preview, self.size = bar, latent_preview, size
        self.previewed = None  # the step whose preview already moved the bar

    def sampling(self, step, total=None):
        if step != self.previewed:
            self.bar.update_absolute(step, total)

    def preview(self, step, total, latents):
        from PIL import Image

        self.previewed = step
        self.bar.update_absolute(step, total, ("JPEG", Image.fromarray(self.latent_preview.image(latents)), self.size))

    def decoding(self, done, total):
        self.previewed = None
        self.bar.update_absolute(done, total)

    def listeners(self) -> dict:
        """RenderSession's progress, preview and decode_progress."""
        shows_previews = self.latent_preview is not None and self.size is not None
        return {"progress": self.sampling, "preview": self.preview if shows_previews else None,
                "decode_progress": self.decoding}


def sampling_listeners(total: int, latent_preview=None) -> dict:
    """progress, preview and decode_progress for a RenderSession on ComfyUI's progress bar; previews only where the
    server shows them and the VAE has a latent -> RGB projection (mtv_core.pipeline.preview). Outside ComfyUI: none."""
    try:
        from comfy.utils import ProgressBar
    except ImportError:
        return {}
    return NodeProgress(ProgressBar(total), latent_preview, preview_size()).listeners()


def interrupt_check():
    """Raises ComfyUI's own interruption exception when the user pressed Cancel."""
    try:
        from comfy.model_management import throw_exception_if_processing_interrupted
    except ImportError:
        return lambda: False

    def check():
        throw_exception_if_processing_interrupted()
        return False

    return check


def progress_and_interrupt(total: int):
    """One (done, total) callback that updates the progress bar and stops on Cancel."""
    interrupt, progress = interrupt_check(), progress_callback(total)

    def report(done, total_done=None):
        interrupt()
        progress(done, total_done)

    return report


def torch_device():
    import torch

    try:
        from comfy.model_management import get_torch_device

        return get_torch_device()
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# -- ComfyUI's model management ---------------------------------------------------------------------------------
# Our models are plain torch modules that our own code moves (block swap, per-component offload). Registered here,
# ComfyUI loads them with load_models_gpu, counts their memory, unloads them when another model needs the room and
# on POST /free. Without ComfyUI nothing is registered and the nodes place their models as before.
PATCHER_ATTRIBUTE = "_mtv_comfy_patcher"


def _model_management():
    try:
        import comfy.model_management
        import comfy.model_patcher  # noqa: F401 (the patcher class below needs it)
    except ImportError:
        return None
    return comfy.model_management


def manage(module, exclude=()):
    """Register a loaded module with ComfyUI's model management (nothing without ComfyUI). `exclude`: submodules our
    own code streams itself (BlockSwap's blocks, the audio encoders), which ComfyUI neither moves nor counts."""
    mm = _model_management()
    if mm is not None:
        patcher = _module_patcher_type()(module, mm.get_torch_device(), mm.unet_offload_device(), tuple(exclude))
        # The module keeps its patcher alive: ComfyUI holds patchers only by weak reference.
        setattr(module, PATCHER_ATTRIBUTE, patcher)
    return module


def use_models(modules, memory_required: int = 0) -> bool:
    """Right before a node computes with `modules`: under ComfyUI, load them onto its device with load_models_gpu,
    which first unloads other models until they and `memory_required` bytes of working memory fit. They stay
    loaded until ComfyUI needs the room. False when the modules are not registered (no ComfyUI): the caller places
    them as before."""
    patchers = [getattr(module, PATCHER_ATTRIBUTE, None) for module in modules]
    mm = _model_management()
    if mm is None or None in patchers:
        return False
    mm.load_models_gpu(patchers, memory_required=memory_required)
    return True


@contextmanager
def models_on_device(modules, memory_required: int = 0):
    """The modules on the compute device while a node computes with them: loaded by ComfyUI's model management (see
    use_models), or, without ComfyUI, moved there for the block and back to the CPU after it."""
    from mtv_core.pipeline.memory import on_device

    if use_models(modules, memory_required):
        yield
        return
    with ExitStack() as stack:
        for module in modules:
            stack.enter_context(on_device(module, torch_device(), offload=True))
        yield


def vram_available(device) -> int:
    """Bytes a CUDA device can give a model: under ComfyUI, what its model management reports free plus what it
    would unload to make room, less the VRAM its user reserved for other programs."""
    import torch

    device = torch.device(device)
    mm = _model_management()
    if mm is None:
        return torch.cuda.mem_get_info(device)[0]
    loaded = sum(m.model_loaded_memory() for m in mm.current_loaded_models if m.device == device)
    return mm.get_free_memory(device) + loaded - mm.extra_reserved_memory()


@functools.cache
def _module_patcher_type():
    """ModelPatcher for a plain module; made on first use, when ComfyUI is importable."""
    from comfy.model_patcher import ModelPatcher

    from mtv_core.pipeline.memory import module_bytes, move_module

    class ModulePatcher(ModelPatcher):
        """A plain module loaded and unloaded whole: ComfyUI's partial ("lowvram") loading works only on its own
        comfy.ops layers. The excluded parts stay where our code puts them. Where the module is, is read from its
        tensors, so a move our own code makes (offload after sampling) is accounted too."""

        def __init__(self, module, load_device, offload_device, exclude):
            self.exclude = exclude
            super().__init__(module, load_device, offload_device, size=module_bytes(module, exclude))

        def loaded_size(self):
            return module_bytes(self.model, self.exclude, on=self.load_device)

        def current_loaded_device(self):
            return self.load_device if self.loaded_size() else self.offload_device

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            before = self.loaded_size()
            self.load(device_to)
            return self.loaded_size() - before

        def partially_unload(self, device_to, memory_to_free=0):
            return 0  # whole or nothing: ComfyUI then unloads the module entirely

        def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
            if device_to is not None:
                move_module(self.model, device_to, self.exclude)

        def unpatch_model(self, device_to=None, unpatch_weights=True):
            if device_to is not None and unpatch_weights:
                move_module(self.model, device_to, self.exclude)
                # tools/check_comfyui.py and check_comfy_models.py read this line to see our models unloaded
                logging.info("[MTV] ComfyUI moved %s to %s", type(self.model).__name__, device_to)

    return ModulePatcher


# -- core CLIP as MTV's text encoder ----------------------------------------------------------------------------
CORE_T5_KEY = "t5xxl"  # the token list core's T5-XXL reads, in every CLIP type that holds one


def encode_with_core_clip(clip, prompts):
    """(N, 226, 4096) embeddings from a core CLIP holding T5 v1.1 XXL (Load CLIP, type sd3), fed exactly as the
    official pipeline feeds T5: the Hugging Face tokenizer's 226 ids (prompt, </s>, pad id 0), no attention mask.
    Core's own tokenize() would pad to 77 and read '(word:1.2)' as a weight, so the ids are made with the CLIP's T5
    tokenizer as our T5 path makes them, and only the encoding is core's."""
    import torch

    from mtv_core.pipeline.text import official_token_ids

    ids = official_token_ids(_core_t5_tokenizer(clip), prompts)
    return torch.cat([_encode_core_ids(clip, row) for row in ids.tolist()])


def _core_t5_tokenizer(clip):
    """The Hugging Face tokenizer of the CLIP's T5-XXL part (SD3, Flux, Mochi... name it 't5xxl')."""
    from mtv_core.errors import ConfigError

    tokenizer = getattr(clip, "tokenizer", None)
    for part in (vars(tokenizer).values() if hasattr(tokenizer, "__dict__") else ()):
        if getattr(part, "embedding_key", None) == CORE_T5_KEY and hasattr(part, "tokenizer"):
            return part.tokenizer
    raise ConfigError(f"this CLIP holds no T5-XXL text encoder ({type(clip).__name__}); load t5xxl_fp16.safetensors "
                      "(or t5xxl_fp8_e4m3fn.safetensors) from models/text_encoders with Load CLIP, type sd3")


def _encode_core_ids(clip, ids: list[int]):
    from mtv_core.errors import ConfigError

    other_parts = {key: [] for key in clip.tokenize("")}  # CLIP-L/G of an SD3 or Flux CLIP: nothing to encode
    tokens = {**other_parts, CORE_T5_KEY: [[(token, 1.0) for token in ids]]}
    out = clip.encode_from_tokens(tokens, return_dict=True)
    if "attention_mask" in out:
        raise ConfigError("this CLIP masks the padding tokens (a T5 loaded as mochi, ltxv, pixart...), which MTV's "
                          "T5 never did; load the t5xxl file with Load CLIP, type sd3")
    cond = out["cond"]
    if tuple(cond.shape[:2]) != (1, len(ids)):
        raise ConfigError(f"this CLIP gave text embeddings of shape {tuple(cond.shape)} for {len(ids)} tokens; "
                          "load the t5xxl file alone with Load CLIP, type sd3")
    return cond.float().cpu()
