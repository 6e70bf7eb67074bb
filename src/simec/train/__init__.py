"""Training of the models simec ships and explores (ViTs; text models in a later issue)."""

from .vit import ViTTrainConfig, paper_vit_config, train_vit

__all__ = ["ViTTrainConfig", "paper_vit_config", "train_vit"]
