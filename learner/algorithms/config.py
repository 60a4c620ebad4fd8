"""The `algorithm` config section: the algorithm's name, the PPO loss knobs every algorithm shares, and each
algorithm's own typed section (defined in its module)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from learner.algorithms.base import get_algorithm, load_plugins
from learner.algorithms.care import CareConfig
from learner.algorithms.copo import CopoConfig
from learner.algorithms.process import ProcessConfig
from learner.config import Section
from learner.losses import AGG_MODES


class AlgorithmConfig(Section):
    advantage: str = "grpo"               # a registered algorithm: grpo | dr_grpo | care | copo | a plugin's
    plugins: list[str] = Field(default_factory=list)   # modules imported first (their algorithms register)
    options: dict[str, Any] = Field(default_factory=dict)   # a plugin algorithm's own section (its `Config`)
    adv_eps: float | None = None          # None: the algorithm's paper default (1e-6; care 1e-4)
    clip_low: float = 0.2
    clip_high: float = 0.2
    loss_agg: Literal[AGG_MODES] = "token-mean"
    kl_coef: float = 0.0                  # low_var_kl to the frozen initial policy; 0 = off
    care: CareConfig = Field(default_factory=CareConfig)
    copo: CopoConfig = Field(default_factory=CopoConfig)
    process: ProcessConfig = Field(default_factory=ProcessConfig)

    @model_validator(mode="after")
    def _check(self) -> "AlgorithmConfig":
        try:
            load_plugins(self.plugins)
            cls = get_algorithm(self.advantage)
        except (ImportError, KeyError, TypeError) as e:   # pydantic reports ValueErrors with the key's name
            raise ValueError(str(e).strip('"')) from None
        if cls.Config is not None:     # unknown or mistyped plugin knobs fail here, by name
            try:
                cls.Config.model_validate(self.options)
            except ValidationError as e:
                raise ValueError("; ".join(f"options.{'.'.join(map(str, x['loc']))}: {x['msg']}"
                                           for x in e.errors())) from None
        elif self.options:
            raise ValueError(f"algorithm.options is set but algorithm {self.advantage!r} has no options")
        if self.process.coef > 0 and self.advantage == "copo":
            raise ValueError("algorithm.process.coef: COPO's gate reads sequence-level local advantages; "
                             "use grpo, dr_grpo or care with token-placed process advantages")
        return self

    @property
    def care_on(self) -> bool:
        return self.advantage == "care" or bool(self.care.enabled)

    @property
    def effective_kl_coef(self) -> float:
        """CARE replaces the KL penalty (beta = 0) unless care.keep_kl asks for both."""
        return 0.0 if self.care_on and not self.care.keep_kl else self.kl_coef
