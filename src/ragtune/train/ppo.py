"""PPO for ``ragtune train grpo`` with ``rl.algorithm = "ppo"``: a learned value baseline and per-token GAE
advantages on top of TRL's online trainer.

TRL 1.16 removed ``PPOTrainer`` and its value-head models, but its GRPO trainer accepts per-token advantages of
shape (batch, tokens) from a subclass. This module supplies them:

- a **value head** (one linear layer, fp32) reads the policy's last hidden states, so policy and critic share the
  backbone (and the LoRA adapter), as TRL's value-head models did;
- after each batch of rollouts is scored, the head's values of every completion token and the reward at its last
  token give **GAE** advantages (``rl.gamma``, ``rl.gae_lambda``), whitened over the batch's tokens; the returns
  are the value targets;
- the loss is TRL's clipped policy surrogate (``rl.epsilon``; the KL pull ``rl.beta`` stays in the loss as in
  GRPO) plus ``rl.vf_coef`` × the clipped value loss (``rl.value_clip``). The backbone's hidden states are taken
  from the policy's own forward pass (a hook), so the critic costs one matrix-vector product, not a second pass;
- the head is saved beside every checkpoint (``value_head.safetensors``) and loaded on ``--resume``.

Groups of ``rl.num_generations`` answers per question are still sampled (more samples per prompt), but each
answer's advantage comes from the critic, not from its group's mean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ragtune.train.recipe import Recipe
from ragtune.train.run import TrainingError

VALUE_HEAD_FILE = "value_head.safetensors"


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns for per-token ``rewards`` and ``values`` (batch, tokens);
    ``mask`` marks the real tokens of each completion (a prefix of the row). Past a row's last token the value
    is 0 (the episode ended), and advantages and returns there are 0."""
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.size(1))):
        following = values[:, t + 1] if t + 1 < values.size(1) else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * following - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values`` shifted and scaled to mean 0 and variance 1 over the masked tokens (0 elsewhere)."""
    mask = mask.to(values.dtype)
    count = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / count
    variance = (((values - mean) * mask) ** 2).sum() / count
    return (values - mean) * torch.rsqrt(variance + 1e-8) * mask


def terminal_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: each completion's ``rewards`` value at its last real token, 0 elsewhere."""
    per_token = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    lengths = mask.long().sum(dim=1)
    rows = torch.nonzero(lengths > 0).flatten()
    per_token[rows, lengths[rows] - 1] = rewards[rows].to(torch.float32)
    return per_token


def backbone(model: Any) -> nn.Module:
    """The transformer under a (PEFT-wrapped, accelerate-wrapped) causal LM: its output's first field is the
    final hidden states."""
    inner: Any = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if decoder is None:
        decoder = getattr(inner, inner.base_model_prefix)
    return decoder  # type: ignore[no-any-return]


def ppo_trainer_class(recipe: Recipe) -> type:
    """TRL's GRPO trainer turned into PPO as ``recipe.rl`` says (imported late: TRL is heavy)."""
    from safetensors.torch import load_file, save_file
    from trl import GRPOTrainer

    rl = recipe.rl

    class PPOTrainer(GRPOTrainer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            policy: Any = self.model
            hidden = policy.config.get_text_config().hidden_size
            self.value_head = nn.Linear(hidden, 1).to(self.accelerator.device, torch.float32)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
            self._hidden: list[torch.Tensor] = []
            self._capturing = False
            backbone(self.model).register_forward_hook(self._keep_hidden)

        # -- the critic

        def _keep_hidden(self, module: nn.Module, args: Any, output: Any) -> None:
            if self._capturing:
                self._hidden.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

        def _values(self, hidden: torch.Tensor, tokens: int) -> torch.Tensor:
            # the state before completion token t is the hidden state of the token before it
            return self.value_head(hidden[:, -tokens - 1:-1].float()).squeeze(-1)

        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            optimizer = super().create_optimizer(*args, **kwargs)
            if any(p is self.value_head.weight for group in optimizer.param_groups for p in group["params"]):
                return optimizer  # asked twice: the head is in already
            optimizer.add_param_group({"params": list(self.value_head.parameters()), "lr": rl.value_learning_rate,
                                       "weight_decay": 0.0})
            return optimizer

        # -- rollouts: values, GAE, whitened per-token advantages

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids: Any) -> Any:
            self._last_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids)
            return self._last_rewards

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            output = super()._generate_and_score_completions(inputs)
            per_func = self._last_rewards
            local = output["completion_ids"].size(0)
            start = self.accelerator.process_index * local
            per_func = per_func[start:start + local]
            scorable = ~torch.isnan(per_func).all(dim=1)
            weights = self.reward_weights.to(per_func.device)
            rewards = torch.where(scorable, (per_func * weights.unsqueeze(0)).nansum(dim=1), 0.0)
            mask = output["completion_mask"] * scorable.unsqueeze(1).to(output["completion_mask"].dtype)
            tokens = output["completion_ids"].size(1)
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad():
                values = []
                size = self.args.per_device_train_batch_size
                decoder = backbone(self.model)
                for part in range(0, ids.size(0), size):
                    with self.accelerator.autocast():
                        hidden = decoder(input_ids=ids[part:part + size], attention_mask=attention[part:part + size])[0]
                    values.append(self._values(hidden, tokens))
                old_values = torch.cat(values) * mask
            advantages, returns = gae(terminal_rewards(rewards, mask), old_values, mask, gamma=rl.gamma,
                                      lam=rl.gae_lambda)
            output["advantages"] = whiten(advantages, mask)
            output["returns"], output["old_values"] = returns, old_values
            mode = "train" if self.model.training else "eval"  # type: ignore[union-attr]
            self._metrics[mode]["value/mean"].append(self._masked_mean(old_values, mask))
            self._metrics[mode]["value/returns_mean"].append(self._masked_mean(returns, mask))
            return output

        @staticmethod
        def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
            return float((values * mask).sum() / mask.sum().clamp(min=1))

        # -- the loss: TRL's clipped surrogate + the clipped value loss

        def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
            self._hidden, self._capturing = [], True
            try:
                policy_loss = super()._compute_loss(model, inputs)
            finally:
                self._capturing = False
            tokens = inputs["completion_ids"].size(1)
            values = self._values(torch.cat(self._hidden), tokens)
            self._hidden = []
            mask = inputs["completion_mask"].to(values.dtype)
            old, returns = inputs["old_values"], inputs["returns"]
            clipped = old + (values - old).clamp(-rl.value_clip, rl.value_clip)
            per_token = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
            value_loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
            mode = "train" if self.model.training else "eval"  # type: ignore[union-attr]
            self._metrics[mode]["value_loss"].append(float(value_loss.detach()))
            return policy_loss + rl.vf_coef * value_loss.to(policy_loss.dtype)

        # -- the head beside the weights of every checkpoint and of the run

        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            super().save_model(output_dir, _internal_call)
            target = Path(str(output_dir or self.args.output_dir))
            if self.args.should_save:
                target.mkdir(parents=True, exist_ok=True)
                state = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
                save_file(state, str(target / VALUE_HEAD_FILE))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            path = os.path.join(resume_from_checkpoint, VALUE_HEAD_FILE)
            if not os.path.isfile(path):
                raise TrainingError(
                    f"{resume_from_checkpoint} has no {VALUE_HEAD_FILE}: it was not written by a PPO run — resume "
                    "it with the rl.algorithm it was trained with, or start a new run directory"
                )
            self.value_head.load_state_dict(load_file(path, device=str(self.accelerator.device)))

    return PPOTrainer
