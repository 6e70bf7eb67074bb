"""Attribution baselines the SiMEC importance is compared with (more to come)."""

from .rollout import attention_rollout

__all__ = ["attention_rollout"]
