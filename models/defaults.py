"""Training defaults, named once and importable without torch (the CLI builds its ``--help`` from them).

``models.training.config.TrainConfig`` and ``models.training.pretrain_config.PretrainConfig`` take
their defaults from here, and so do the flows' parameters and the commands'
options; the held-out fraction is :data:`models.held_out.HELD_OUT_FRACTION`.
"""

from __future__ import annotations

EPOCHS = 150
"""Maximum fusion-training epochs (early stopping on the validation split usually ends sooner)."""
HIDDEN = 64
LAYERS = 1
POOL = "concat"
LR = 3e-3
MODALITY_DROPOUT = 0.2
JOINT_EPOCHS = 20
"""joint/finetune: maximum epochs of encoder + fusion training."""
PRETRAIN_EPOCHS = 8
PRETRAIN_BATCH_SIZE = 32
PRETRAIN_LR = 2e-3
N_BOOT = 500
"""Bootstrap resamples behind every 95 % interval of an evaluation."""
