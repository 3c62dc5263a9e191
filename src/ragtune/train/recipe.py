"""Training recipes: TOML files validated by pydantic models, with ``--set a.b=value`` overrides."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import JsonDict

from ragtune.errors import ConfigError
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.settings import parse_value

Method = Literal["sft", "dpo", "kto", "orpo", "reward", "grpo"]
METHODS: tuple[str, ...] = ("sft", "dpo", "kto", "orpo", "reward", "grpo")


class RecipeError(ConfigError):
    """A recipe file or override is invalid (names the file, the key and the fix)."""


#: Marks a recipe field that holds a file or folder: a relative path written in a recipe file is relative to
#: that file (so a recipe runs from any directory); one given with --set is relative to the working directory.
RECIPE_PATH: JsonDict = {"recipe_path": True}


class RecipeSection(BaseModel):
    """A table of a recipe: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(RecipeSection):
    """What to train and how: the base model, the fine-tuning method and the numeric precision."""

    name: str = Field(
        default=BUNDLED_SMOLLM2,
        description="Base model: the bundled 'SmolLM2-135M-Instruct', a .gguf file, an HF model directory or hub id.",
    )
    finetune: Literal["lora", "dora", "qlora", "full"] = Field(
        default="lora",
        description="lora = low-rank adapters; dora = weight-decomposed LoRA (use_dora); qlora = LoRA on a 4-bit "
        "NF4 base (bitsandbytes, double quant, paged AdamW); full = every weight trained.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto",
        description="auto = bf16 on GPUs that support it, else fp32. bf16/fp16 on CPU fall back to fp32 with a "
        "warning (bf16 is ~2x slower than fp32 on AVX2 CPUs).",
    )
    gradient_checkpointing: bool | None = Field(
        default=None,
        description="Trade compute for memory. Unset = on with a GPU, off on CPU (where memory is rarely short).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = CUDA when available, else CPU.")


class LoraSection(RecipeSection):
    """Adapter shape for lora, dora and qlora (ignored by full fine-tuning)."""

    r: int = Field(default=16, gt=0, description="Rank of the low-rank update.")
    alpha: int = Field(default=32, gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get adapters (Llama-family names by default).",
    )


class DataSection(RecipeSection):
    """Where the examples come from and how they become token sequences."""

    path: str = Field(default="", description="JSONL/JSON file of examples, or a LLaMA-Factory dataset_info.json.",
                      json_schema_extra=RECIPE_PATH)
    format: Literal[
        "auto", "alpaca", "messages", "sharegpt", "text", "preference", "kto", "feedback", "llamafactory"
    ] = Field(default="auto", description="Row format; auto = detected from the first row's keys.")
    dataset: str = Field(default="", description="Which dataset of a dataset_info.json to use (format = llamafactory).")
    eval_path: str = Field(default="", description="Held-out examples; unset = split eval_split off the training file.",
                           json_schema_extra=RECIPE_PATH)
    eval_split: float = Field(
        default=0.1, ge=0, lt=1, description="Fraction held out for eval loss and early stopping."
    )
    max_seq_len: int = Field(
        default=1024, gt=8, description="Tokens per sequence; longer examples are truncated (warned)."
    )
    packing: bool = Field(
        default=False, description="Pack several short examples into one max_seq_len sequence (SFT only)."
    )
    system_prompt: str = Field(default="", description="System message prepended to every conversation that has none.")
    max_examples: int = Field(default=0, ge=0, description="Use only the first N examples (0 = all); for quick trials.")


class TrainSection(RecipeSection):
    """Optimisation, evaluation and checkpointing."""

    epochs: float = Field(default=3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(default=-1, description="Stop after this many optimizer steps (-1 = run the epochs).")
    learning_rate: float = Field(
        default=2e-4, gt=0, description="Peak learning rate (2e-4 suits LoRA; use ~2e-5 for full)."
    )
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Fraction of steps spent warming up.")
    batch_size: int = Field(default=4, gt=0, description="Sequences per device per step.")
    grad_accum: int = Field(default=4, gt=0, description="Steps accumulated per optimizer update.")
    max_grad_norm: float = Field(default=1.0, ge=0, description="Gradient clipping (0 = off).")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    optimizer: str = Field(
        default="auto",
        description="A transformers optimizer name; auto = paged_adamw_32bit for qlora, adamw_torch otherwise.",
    )
    early_stopping_patience: int = Field(
        default=2, ge=0, description="Stop after this many evaluations without a lower eval loss (0 = off)."
    )
    save_total_limit: int = Field(default=3, gt=0, description="Checkpoints kept (one is saved per epoch).")
    eval_steps: int = Field(
        default=0, ge=0, description="Evaluate and save every N steps instead of once per epoch (0 = per epoch)."
    )
    logging_steps: int = Field(default=10, gt=0, description="Log loss, lr, grad norm and tokens/s every N steps.")
    seed: int = Field(default=42, description="Random seed for shuffling, the eval split and adapter initialisation.")
    distributed: Literal["none", "fsdp", "deepspeed"] = Field(
        default="none", description="Sharding across GPUs (run under accelerate launch); needs CUDA GPUs."
    )
    deepspeed_config: str = Field(default="", description="DeepSpeed JSON config (distributed = deepspeed).",
                                  json_schema_extra=RECIPE_PATH)
    fsdp: str = Field(
        default="full_shard auto_wrap", description="FSDP options passed to transformers (distributed = fsdp)."
    )


class PreferenceSection(RecipeSection):
    """DPO, KTO and ORPO settings (ignored by SFT)."""

    beta: float = Field(
        default=0.1,
        gt=0,
        description="Strength of the pull toward the reference (DPO/KTO) or odds ratio weight (ORPO).",
    )
    loss_type: str = Field(default="sigmoid", description="DPO loss variant (sigmoid, ipo, hinge, ...).")
    desirable_weight: float = Field(default=1.0, gt=0, description="KTO: weight of desirable (label = true) examples.")
    undesirable_weight: float = Field(
        default=1.0, gt=0, description="KTO: weight of undesirable (label = false) examples."
    )


class RewardSection(RecipeSection):
    """Reward model training (``ragtune train reward``; ignored by the other methods)."""

    center_coefficient: float = Field(
        default=0.01, ge=0,
        description="Pulls the scores toward zero mean (TRL's center_rewards_coefficient), so scores of different "
        "runs are comparable and mix with the verifiable rewards at a stable scale (0 = off).",
    )


class RLSection(RecipeSection):
    """Online reinforcement learning on questions (``ragtune train grpo``; ignored by the other methods)."""

    algorithm: Literal["grpo", "rloo", "ppo"] = Field(
        default="grpo",
        description="grpo = group-relative policy optimisation; rloo = REINFORCE leave-one-out; ppo = proximal policy "
        "optimisation with a learned value head and per-token GAE advantages (ragtune's, on TRL's GRPO trainer).",
    )
    num_generations: int = Field(
        default=4, ge=2, description="Answers sampled per question; each is judged against its group's mean."
    )
    max_completion_length: int = Field(default=64, gt=0, description="Longest sampled answer, in tokens.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the rollouts.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling of the rollouts (1 = off).")
    beta: float = Field(
        default=0.04, ge=0,
        description="KL penalty toward the starting model; 0 = none (and no reference pass, which is faster).",
    )
    epsilon: float = Field(default=0.2, gt=0, description="Clip range of the policy ratio (PPO-style).")
    iterations: int = Field(
        default=1, ge=1, description="Optimisation passes over each batch of samples (> 1 reuses them, clipped)."
    )
    loss_type: str = Field(
        default="dapo", description="GRPO loss normalisation (grpo, dr_grpo, dapo, bnpo, ...; see TRL's GRPOConfig)."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        default="group", description="Divide advantages by the reward spread of the group, the batch, or not at all."
    )
    vf_coef: float = Field(default=0.1, ge=0, description="PPO: weight of the value loss beside the policy loss.")
    value_clip: float = Field(
        default=0.2, gt=0, description="PPO: how far a value may move from its rollout-time value per update."
    )
    value_learning_rate: float = Field(
        default=1e-3, gt=0, description="PPO: learning rate of the value head (a fresh linear layer; the shared "
        "backbone moves at train.learning_rate)."
    )
    gamma: float = Field(default=1.0, gt=0, le=1, description="PPO: discount per token.")
    gae_lambda: float = Field(
        default=1.0, ge=0, le=1,
        description="PPO: GAE's bias/variance trade-off. 1 = each token's advantage is the answer's reward minus "
        "the critic's value, which is a batch baseline while the fresh critic still reads ~0; below 1 leans on "
        "the critic (0.95 is common once it is trained).",
    )
    kb: str = Field(
        default="", description="Knowledge base whose search gives the sources of questions that carry none."
    )
    context_hits: int = Field(default=3, gt=0, description="Sources retrieved per question (with rl.kb).")


class RewardsSection(RecipeSection):
    """How an answer is scored during RL and best-of-n: the weight of each reward (0 = not used)."""

    citation: float = Field(
        default=1.0, description="Share of the answer's claims that the sources support and the answer cites."
    )
    refusal: float = Field(
        default=1.0,
        description="+1 when the answer refuses exactly when the question is marked unanswerable, -1 otherwise.",
    )
    correctness: float = Field(
        default=1.0, description="Containment of the reference answer: its numbers and its content terms."
    )
    length: float = Field(default=0.2, description="Penalty (0 to -1) for answers longer than rewards.length_limit.")
    length_limit: int = Field(
        default=60, gt=0, description="Words (or Chinese characters) an answer may use before the length penalty."
    )
    uncited_credit: float = Field(
        default=0.5, ge=0, le=1, description="Citation credit of a supported claim that cites no source."
    )
    reward_model: float = Field(default=0.0, description="Weight of the reward model's score (rewards.model).")
    model: str = Field(default="", description="Run directory of 'ragtune train reward' (needed when weighted).")


class OutputSection(RecipeSection):
    """Where the run goes."""

    dir: str = Field(default="", description="Run directory; unset = the next free runs/<method>-NNN.")
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"], description="Metric loggers (or []).")


class Recipe(RecipeSection):
    """A complete training recipe: one TOML file, every field optional with the defaults above."""

    method: Method = Field(
        default="sft", description="sft, dpo, kto, orpo, reward or grpo; must match the command that runs it."
    )
    model: ModelSection = Field(default_factory=ModelSection)
    lora: LoraSection = Field(default_factory=LoraSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    preference: PreferenceSection = Field(default_factory=PreferenceSection)
    reward: RewardSection = Field(default_factory=RewardSection)
    rl: RLSection = Field(default_factory=RLSection)
    rewards: RewardsSection = Field(default_factory=RewardsSection)
    output: OutputSection = Field(default_factory=OutputSection)


def load_recipe(path: str | Path | None, overrides: list[str] | None = None, *, method: str | None = None) -> Recipe:
    """Read ``path`` (None = all defaults), apply ``--set key.path=value`` overrides and validate.

    ``method`` is the command's method: a recipe written for another one is an error; a recipe that
    states none takes it.
    """
    data, source = read_recipe_data(path, overrides, Recipe)
    if method is not None:
        stated = data.get("method")
        if stated is not None and stated != method:
            raise RecipeError(
                f"recipe {source} is for '{stated}' but was run with 'train {method}' — run 'ragtune train {stated}' "
                "or change method in the recipe"
            )
        data["method"] = method
    return validate_recipe(Recipe, data, source)


RecipeT = TypeVar("RecipeT", bound=BaseModel)


def read_recipe_data(
    path: str | Path | None, overrides: list[str] | None, root: type[BaseModel]
) -> tuple[dict[str, Any], str]:
    """The TOML at ``path`` (None = empty) with ``--set`` overrides applied, every key checked against ``root``;
    returns the data and a label of its source for messages."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise RecipeError(f"recipe {file}: no such file — see recipes/ for examples")
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError(f"recipe {file}: not valid TOML ({exc}) — fix the syntax at that line") from exc
    _check_keys(data, root, "", source, root)
    if path is not None:
        _resolve_paths(data, root, Path(path).resolve().parent)
    for override in overrides or []:
        _apply_override(data, override, source, root)
    return data, source


def validate_recipe(root: type[RecipeT], data: dict[str, Any], source: str) -> RecipeT:
    """``data`` as a ``root`` model; every invalid value is named with its key."""
    try:
        return root.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})" for err in exc.errors()
        )
        raise RecipeError(f"recipe {source}: {problems} — fix the value in the file or with --set") from None


def recipe_fields(root: type[BaseModel] | None = None) -> list[str]:
    """Every settable key of ``root`` (default: the LLM ``Recipe``) as 'section.field', for help and suggestions."""
    keys: list[str] = []
    for name, info in (root or Recipe).model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys.extend(f"{name}.{field}" for field in sub.model_fields)
        else:
            keys.append(name)
    return keys


def _check_keys(
    data: dict[str, Any], model: type[BaseModel], prefix: str, source: str, root: type[BaseModel] | None = None
) -> None:
    """Unknown keys name the closest valid key of ``root``'s recipe: a typo must not silently fall back to a
    default."""
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            choices = [f"{prefix}{name}" for name in fields]
            close = difflib.get_close_matches(f"{prefix}{key}", choices + recipe_fields(root), n=1, cutoff=0.5)
            hint = f" — did you mean '{close[0]}'?" if close else f" — valid keys here: {', '.join(choices)}"
            raise RecipeError(f"recipe {source}: unknown key '{prefix}{key}'{hint}")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            if not isinstance(value, dict):
                raise RecipeError(f"recipe {source}: '{prefix}{key}' must be a [{prefix}{key}] table, got {value!r}")
            _check_keys(value, sub, f"{prefix}{key}.", source, root)


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], base: Path) -> None:
    """Make the relative paths of a recipe file's path fields (see ``RECIPE_PATH``) relative to ``base``."""
    for key, value in data.items():
        info = model.model_fields[key]
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            _resolve_paths(value, sub, base)
        elif isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("recipe_path"):
            data[key] = [_under(base, v) for v in value] if isinstance(value, list) else _under(base, value)


def _under(base: Path, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _apply_override(data: dict[str, Any], override: str, source: str, root: type[BaseModel] | None = None) -> None:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {override!r}: write it as section.field=value, e.g. --set lora.r=32")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {override!r}: '{part}' is not a section")
    node[parts[-1]] = parse_value(raw)
    _check_keys(data, root or Recipe, "", f"{source} (--set {key})", root)
