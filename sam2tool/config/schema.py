"""The configuration schema: one pydantic model per section, every field typed and documented.

Field docstrings are the documentation users see: they become the comments of the YAML that
``sam2tool init-config`` writes and of the config reference. Unknown keys are errors in every
section (``extra="forbid"``). Checks that involve several fields are the rules of
``sam2tool.config.cross_checks``; they name the dotted key to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sam2tool.config.choices import Accelerator, Precision, Strategy
from sam2tool.config.cross_checks import cross_field_problems
from sam2tool.config.registry import COMPONENTS, ModelSize, ModelVersion

ENV_PREFIX = "SAM2TOOL_"
ENV_NESTED_DELIMITER = "__"

PositiveInt = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, docstrings document fields."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)


def _expand_path(value: Any) -> Any:
    """Refuse empty paths and expand ``~`` (pydantic would turn "" into the current folder)."""
    if isinstance(value, str | Path):
        if str(value).strip() == "":
            raise ValueError("empty path; give a path or null")
        return Path(value).expanduser()
    return value


#: A path from the user: ``~`` expanded, empty refused.
UserPath = Annotated[Path, BeforeValidator(_expand_path)]


class CrossFieldProblems(ValueError):
    """Raised by cross-field checks; carries ``(dotted key, message)`` pairs for the loader."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = problems


class PromptSimulationSettings(Section):
    """How training prompts each clip: the prompt simulation of Meta's ``SAM2Train``, ported.

    These are keys of the ``model`` section. Each field's ``official`` metadata names the
    ``SAM2Train`` option it ports; ``sam2tool.models.train_forward.PromptSimulation`` is built from
    these fields. Defaults: the SAM 2.1 MOSE recipe.
    """

    prob_to_use_pt_input: float = Field(
        default=0.5, ge=0, le=1, json_schema_extra={"official": "prob_to_use_pt_input_for_train"}
    )
    """Training prompts: probability that a clip is prompted with clicks or a box instead of the
    ground-truth mask on its conditioning frames (single images always use clicks)."""

    prob_to_use_box_input: float = Field(
        default=0.5, ge=0, le=1, json_schema_extra={"official": "prob_to_use_box_input_for_train"}
    )
    """Training prompts: when a clip is prompted with clicks, probability of a noisy ground-truth box
    instead of one click on each conditioning frame."""

    num_init_cond_frames: PositiveInt = Field(
        default=2, json_schema_extra={"official": "num_init_cond_frames_for_train"}
    )
    """Training prompts: conditioning frames per clip (the first frame and randomly chosen others)."""

    rand_init_cond_frames: bool = Field(default=True, json_schema_extra={"official": "rand_init_cond_frames_for_train"})
    """Training prompts: draw the number of conditioning frames from 1..model.num_init_cond_frames."""

    num_frames_to_correct: PositiveInt = Field(
        default=2, json_schema_extra={"official": "num_frames_to_correct_for_train"}
    )
    """Training prompts: frames that receive correction clicks when a clip is prompted with clicks
    (the conditioning frames, then random others)."""

    rand_frames_to_correct: bool = Field(
        default=True, json_schema_extra={"official": "rand_frames_to_correct_for_train"}
    )
    """Training prompts: draw the number of corrected frames from (conditioning frames)..model.num_frames_to_correct."""

    add_all_frames_to_correct_as_cond: bool = Field(
        default=True, json_schema_extra={"official": "add_all_frames_to_correct_as_cond"}
    )
    """Training prompts: a frame that receives correction clicks becomes a conditioning frame."""

    num_correction_pt_per_frame: int = Field(
        default=7, ge=0, json_schema_extra={"official": "num_correction_pt_per_frame"}
    )
    """Training prompts: correction clicks per corrected frame, each sampled from the error region of
    the previous prediction."""

    prob_to_sample_from_gt: float = Field(
        default=0.1, ge=0, le=1, json_schema_extra={"official": "prob_to_sample_from_gt_for_train"}
    )
    """Training prompts: probability that a correction click is sampled from the ground-truth mask
    instead of the error region."""


class _ModelBuildSettings(Section):
    """The ``model`` keys that come before the prompt simulation (see ModelSettings)."""

    size: ModelSize = "tiny"
    """Model size: tiny, small, base_plus, large (Meta's sizes) or micro (a 2.6 M parameter SAM 2.1
    architecture for CPU demos and tests, whose pretrained base ships inside sam2tool)."""

    version: ModelVersion = "sam2.1"
    """SAM release: sam2 (July 2024) or sam2.1 (September 2024)."""

    checkpoint: str | None = "official"
    """Starting weights: 'official' (Meta's checkpoint for model.version and model.size, downloaded
    once into model.cache_dir; for micro the pretrained base packaged with sam2tool, no download),
    an official name such as sam2.1_hiera_large or sam2.1_micro, a path to a .pt/.ckpt/.safetensors
    file (official {"model": ...} format, a sam2tool checkpoint, a plain state dict or an export's
    model.safetensors), or null for random initialisation."""

    cache_dir: UserPath | None = None
    """Folder for downloaded official checkpoints; null means $XDG_CACHE_HOME/sam2tool or
    ~/.cache/sam2tool."""

    download_url: str | None = None
    """Base URL to download official checkpoints from instead of Meta's server (a mirror or an
    internal file server); the file name is appended."""

    trainable_modules: list[str] = Field(default_factory=lambda: ["all"])
    """SAM 2 components to train; everything else is frozen. 'all', or parameter-name prefixes such
    as image_encoder, image_encoder.trunk, memory_attention, memory_encoder, sam_prompt_encoder,
    sam_mask_decoder, obj_ptr_proj."""

    drop_path_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Stochastic depth rate of the Hiera image encoder during training (0.1 in the official
    SAM 2.1 fine-tune recipe)."""

    activation_checkpointing: bool = False
    """Recompute the Hiera image encoder's activations in the backward pass instead of storing
    them: less GPU memory, about a third more compute."""

    lora_targets: list[Literal["image_encoder", "sam_mask_decoder"]] = Field(default_factory=list)
    """Components whose linear layers get LoRA adapters (peft): image_encoder and/or
    sam_mask_decoder. Their base weights are frozen and only the adapters train; model.trainable_modules
    still decides for the other components. Empty: no LoRA. Adapters are merged into the weights in
    every checkpoint the run exports."""

    lora_rank: PositiveInt = 8
    """Rank of the LoRA adapters."""

    lora_alpha: float = Field(default=16.0, gt=0)
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""

    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the LoRA adapters' input during training."""

    @field_validator("download_url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "file://")):
            raise ValueError("must start with http://, https:// or file://")
        return value

    @field_validator("trainable_modules")
    @classmethod
    def _known_components(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one component to train, or 'all'")
        for entry in value:
            head = entry.split(".", 1)[0]
            if entry != "all" and head not in COMPONENTS:
                raise ValueError(
                    f"'{entry}' is not a SAM 2 component; start each entry with one of: "
                    + ", ".join(COMPONENTS)
                    + " (or use 'all')"
                )
        return value


class ModelSettings(PromptSimulationSettings, _ModelBuildSettings):
    """Which SAM 2 model to build, which weights to start from and which parts to train."""

    # pydantic takes inherited fields from the last base to the first: the keys of
    # _ModelBuildSettings, then the prompt simulation (the order of init-config's YAML and the reference).


class DataSource(Section):
    """A further prepared folder to train on, mixed with dataset.root by weight."""

    root: UserPath
    """Folder written by `sam2tool prepare-data` (videos, or COCO images: one-frame clips)."""

    weight: float = Field(default=1.0, gt=0)
    """Relative share of training batches drawn from this folder."""

    split: str = Field(default="train", min_length=1)
    """The split of this folder to train on."""


class DatasetSettings(Section):
    """Training data: a folder written by `sam2tool prepare-data` and how clips are sampled."""

    root: UserPath | None = None
    """Folder written by `sam2tool prepare-data` (JPEGImages/, Annotations/, manifest.json,
    splits/). Required for train and evaluate."""

    train_split: str = Field(default="train", min_length=1)
    """Name of the training split (a file splits/<name>.txt listing videos)."""

    val_split: str = Field(default="val", min_length=1)
    """Name of the held-out split used for validation J&F and `sam2tool evaluate`."""

    image_size: int = 512
    """Square input resolution in pixels: a multiple of 32, at least 64 (official models use 1024)."""

    video_clip_length: PositiveInt = 5
    """Frames per training clip."""

    batch_size: PositiveInt = 1
    """Clips per batch on each device."""

    max_num_objects: PositiveInt = 3
    """At most this many objects per clip (chosen among those visible in the first frame)."""

    num_workers: int = Field(default=4, ge=0)
    """Data loader worker processes per device (0 loads data in the training process)."""

    frame_stride: PositiveInt = 1
    """A clip takes every this many annotated frames."""

    reverse_prob: float = Field(default=0.0, ge=0, le=1)
    """Probability of playing a training clip backwards."""

    multiplier: PositiveInt = 1
    """Clips drawn from each training video per epoch."""

    weight: float = Field(default=1.0, gt=0)
    """Relative share of training batches drawn from dataset.root when dataset.mix adds folders."""

    mix: list[DataSource] = Field(default_factory=list)
    """More prepared folders to train on, each {root, weight, split}: e.g. COCO images (trained as
    one-frame clips) mixed with videos. Every batch comes from one folder, chosen by weight."""

    augment: bool = True
    """Augment training clips as the official SAM 2.1 recipe does (the keys below); validation
    clips are only resized."""

    hflip_prob: float = Field(default=0.5, ge=0, le=1)
    """Probability of flipping a clip horizontally."""

    affine_degrees: float = Field(default=25.0, ge=0, le=180)
    """Random rotation of a clip, drawn from [-degrees, degrees]."""

    affine_shear: float = Field(default=20.0, ge=0, lt=90)
    """Random horizontal shear of a clip in degrees, drawn from [-shear, shear]."""

    color_jitter: tuple[float, float, float] = (0.1, 0.03, 0.03)
    """Brightness, contrast and saturation jitter shared by all frames of a clip (0 disables one)."""

    frame_color_jitter: tuple[float, float, float] = (0.1, 0.05, 0.05)
    """Brightness, contrast and saturation jitter drawn anew for every frame."""

    grayscale_prob: float = Field(default=0.05, ge=0, le=1)
    """Probability of turning a whole clip grayscale."""

    @field_validator("color_jitter", "frame_color_jitter")
    @classmethod
    def _valid_jitter(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.0 <= strength <= 1.0 for strength in value):
            raise ValueError(f"each strength must be in [0, 1], got {list(value)}")
        return value

    @field_validator("image_size")
    @classmethod
    def _valid_image_size(cls, value: int) -> int:
        if value < 64:
            raise ValueError(f"{value} is too small; use at least 64")
        if value % 32:
            lower, upper = value // 32 * 32, value // 32 * 32 + 32
            suggestion = f"{upper}" if lower < 64 else f"{lower} or {upper}"
            raise ValueError(
                f"{value} is not a multiple of 32 (the stride of the Hiera image encoder's "
                f"last stage); use {suggestion}"
            )
        return value


class TrainerSettings(Section):
    """Lightning Trainer options: length, hardware, precision, validation, reproducibility."""

    max_epochs: int | None = Field(default=40, ge=1)
    """Stop after this many epochs (null: no epoch limit, then trainer.max_steps must be set)."""

    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps (null: no step limit)."""

    precision: Precision = "32-true"
    """Numeric precision: 32-true, bf16-mixed (recommended on Ampere or newer GPUs), 16-mixed
    (older GPUs), bf16-true or 16-true."""

    accelerator: Accelerator = "auto"
    """Hardware: auto (CUDA, then MPS, then CPU), cpu, cuda, gpu or mps."""

    devices: int | list[int] | Literal["auto"] = "auto"
    """Devices per node: auto, a count (-1 for all), or a list of device indices such as [0, 1]."""

    strategy: Strategy = "auto"
    """Distribution strategy: auto, ddp, ddp_spawn, ddp_find_unused_parameters_true or fsdp."""

    num_nodes: PositiveInt = 1
    """Number of machines (SLURM or torchrun set the rest of the environment)."""

    accumulate_grad_batches: PositiveInt = 1
    """Accumulate gradients over this many batches before each optimizer step."""

    gradient_clip_val: float | None = Field(default=0.1, gt=0)
    """Clip the gradient norm to this value (null: no clipping)."""

    val_check_interval: float | int = Field(default=1.0, gt=0)
    """Validate every this fraction of an epoch (float <= 1.0) or every this many batches (int)."""

    limit_train_batches: float | int = Field(default=1.0, gt=0)
    """Use this fraction (float) or number (int) of training batches per epoch."""

    limit_val_batches: float | int = Field(default=1.0, ge=0)
    """Use this fraction (float) or number (int) of validation videos (0 disables validation)."""

    log_every_n_steps: PositiveInt = 10
    """Log training metrics (and update the progress bar's loss) every this many optimizer steps."""

    deterministic: bool = False
    """Use deterministic algorithms (slower; bit-identical runs on the same hardware)."""

    seed: int = Field(default=0, ge=0)
    """Seed for Python, NumPy and torch in every process and data loader worker."""

    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop when validation J&F has not improved for this many validations (null: never stop early)."""

    detect_anomaly: bool = False
    """Check every backward pass for NaN/Inf and name the operation that produced it (slow; on with
    --debug)."""

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        # YAML reads `precision: 32` as an integer; Lightning's names are strings.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("devices", mode="before")
    @classmethod
    def _valid_devices(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() != "auto":
            # Lightning's command-line form "0,1" and a plain count "2" are accepted too.
            items = [item.strip() for item in value.split(",")]
            if all(item.lstrip("-").isdigit() for item in items):
                value = [int(item) for item in items] if len(items) > 1 else int(items[0])
        if isinstance(value, bool) or not (
            value == "auto"
            or (isinstance(value, int) and (value >= 1 or value == -1))
            or (isinstance(value, list) and value and all(isinstance(i, int) and i >= 0 for i in value))
        ):
            raise ValueError(
                "use 'auto', a device count such as 2, -1 for all devices, or a list of device indices such as [0, 1]"
            )
        return value

    @field_validator("val_check_interval", "limit_train_batches", "limit_val_batches")
    @classmethod
    def _fraction_at_most_one(cls, value: float | int) -> float | int:
        if isinstance(value, float) and value > 1.0:
            raise ValueError(f"a fraction must be at most 1.0, got {value}; use an integer for a count")
        return value


class LossSettings(Section):
    """Weights of the official SAM 2 training loss (MultiStepMultiMasksAndIous)."""

    weight_mask: float = Field(default=20.0, ge=0)
    """Weight of the sigmoid focal loss on mask logits."""

    weight_dice: float = Field(default=1.0, ge=0)
    """Weight of the dice loss on masks."""

    weight_iou: float = Field(default=1.0, ge=0)
    """Weight of the IoU-prediction loss."""

    weight_class: float = Field(default=1.0, ge=0)
    """Weight of the object-score (is the object visible) loss."""

    focal_alpha: float = Field(default=0.25, ge=0, le=1)
    """Alpha of the focal loss on masks."""

    focal_gamma: float = Field(default=2.0, ge=0)
    """Gamma of the focal loss on masks."""

    supervise_all_iou: bool = True
    """Supervise the IoU prediction of every multimask output, not only the best one."""

    iou_use_l1_loss: bool = True
    """Use an L1 loss (instead of MSE) for the IoU prediction."""


class OptimizerSettings(Section):
    """AdamW with a separate image-encoder learning rate and layer-wise decay over Hiera blocks."""

    name: Literal["adamw"] = "adamw"
    """Optimizer (AdamW, as in the official recipe)."""

    lr: float = Field(default=1e-4, gt=0, le=1)
    """Peak learning rate of everything outside the image encoder."""

    vision_lr: float | None = Field(default=None, gt=0, le=1)
    """Peak learning rate of the image encoder (null: same as optimizer.lr)."""

    weight_decay: float = Field(default=0.1, ge=0)
    """AdamW weight decay (never applied to biases and normalisation layers)."""

    layer_decay: float = Field(default=1.0, gt=0, le=1)
    """Layer-wise learning-rate decay over the Hiera blocks (1.0: none; 0.9 in the official recipe)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    eps: float = Field(default=1e-8, gt=0)
    """AdamW epsilon."""

    @field_validator("betas", mode="before")
    @classmethod
    def _two_betas(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 2:
            raise ValueError(f"give exactly two betas, e.g. [0.9, 0.999], got {list(value)}")
        return value

    @field_validator("betas")
    @classmethod
    def _valid_betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in value):
            raise ValueError(f"betas must each be in [0, 1), got {list(value)}")
        return value


class SchedulerSettings(Section):
    """Learning-rate schedule, stepped after every optimizer step."""

    name: Literal["cosine", "constant", "step"] = "cosine"
    """cosine (from the peak down to scheduler.min_lr_ratio x peak), constant, or step (multiply
    by scheduler.gamma every scheduler.step_size steps)."""

    warmup_steps: int = Field(default=0, ge=0)
    """Linear warmup from 0 to the peak learning rate over this many optimizer steps."""

    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Final learning rate of the cosine schedule as a fraction of the peak (0.1 as in the official
    recipe)."""

    step_size: PositiveInt = 1000
    """Optimizer steps between decays of the step schedule."""

    gamma: float = Field(default=0.1, gt=0, le=1)
    """Factor applied at each decay of the step schedule."""


class LoggingSettings(Section):
    """Console and file logs, TensorBoard, and Weights & Biases."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the console and of training.log."""

    progress: bool = True
    """Show progress bars."""

    tensorboard: bool = True
    """Log the losses, learning rates, validation J/F/J&F and overlay frames of held-out videos
    to TensorBoard in `<run>/tensorboard/` (view with `tensorboard --logdir outputs/`)."""

    wandb: bool = False
    """Log to Weights & Biases (`--no-wandb` turns it off)."""

    wandb_project: str = Field(default="sam2tool", min_length=1)
    """Weights & Biases project."""

    wandb_entity: str | None = None
    """Weights & Biases entity (team or user); null uses your default entity."""

    wandb_mode: Literal["online", "offline"] = "online"
    """online, or offline (logs locally; upload later with `wandb sync`)."""

    run_name: str | None = None
    """Name of the run in Weights & Biases (null: the run folder's name)."""


class OutputSettings(Section):
    """Where runs are written."""

    dir: UserPath = Path("outputs")
    """Parent folder of run folders; each run writes to <dir>/YYYY-MM-DD/HH-MM-SS/."""

    save_top_k: int = Field(default=1, ge=-1)
    """Keep this many best checkpoints by validation J&F (-1 keeps all, 0 none) besides last.ckpt."""

    checkpoint_every_n_steps: int | None = Field(default=500, ge=1)
    """Also rewrite checkpoints/last.ckpt every this many optimizer steps (null: only after
    validation and at the end), so that a crash loses at most this many steps."""


class Sam2ToolSettings(BaseSettings):
    """All of sam2tool's settings, validated.

    Build it with :func:`sam2tool.config.loading.load_settings`, which layers a YAML file,
    environment variables and command-line overrides and reports every problem at once.
    ``Sam2ToolSettings(**values)`` is ``values`` over the defaults: it reads no environment.
    """

    # The env_* options say how load_settings reads SAM2TOOL_* variables (with pydantic-settings'
    # EnvSettingsSource); constructing the class does not read them (see __init__).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_parse_none_str="null",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    """Which SAM 2 model to build, which weights to start from and which parts to train."""

    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    """Training data and clip sampling."""

    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    """Lightning Trainer options."""

    loss: LossSettings = Field(default_factory=LossSettings)
    """Loss weights."""

    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    """Optimizer."""

    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    """Learning-rate schedule."""

    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    """Logging."""

    output: OutputSettings = Field(default_factory=OutputSettings)
    """Outputs."""

    def __init__(self, **values: Any) -> None:
        """Validate ``values`` over the defaults declared above, and read nothing else.

        pydantic-settings' own ``__init__`` (which reads the environment, and takes options such as
        ``_env_file``) is skipped: :func:`sam2tool.config.loading.load_settings_with_origins` merges
        the YAML file, the environment and the command line explicitly and validates the result
        here, where a key such as ``_env_file`` is an unknown key like any other.
        """
        BaseModel.__init__(self, **values)

    @model_validator(mode="after")
    def _cross_field_checks(self) -> Sam2ToolSettings:
        problems = cross_field_problems(self.value_of)
        if problems:
            raise CrossFieldProblems(problems)
        return self

    def value_of(self, dotted_key: str) -> Any:
        """The value of a dotted key such as ``dataset.image_size``."""
        section, name = dotted_key.split(".")
        return getattr(getattr(self, section), name)


SECTIONS: tuple[str, ...] = tuple(Sam2ToolSettings.model_fields)
