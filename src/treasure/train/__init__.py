"""`treasure train`: SFT with TRL's `SFTTrainer` on a built TRAIN_DIR; writes a self-contained MODEL_DIR.

Each row becomes a conversational prompt/completion pair (`prompt` = the turns before the answer,
`completion` = [assistant turn]); TRL then masks the prompt (`completion_only_loss`, on by default for
prompt/completion data), so the loss covers the whole assistant turn, template included.
Multi-GPU: `accelerate launch -m treasure train TRAIN_DIR -o MODEL_DIR ...` (`treasure.__main__`).

In TRL's shape: `config` (TrainConfig, the recipes), `trainer` (the decision-weighted trainer,
`make_trainer`), `callbacks`, `workdir` (where a run writes until done, resume) and `run` (`train`).
"""

from treasure.tiny import CONFIG_DIR
from treasure.train.callbacks import TrainingInterrupted, TrainProgress
from treasure.train.config import (
    CHECKPOINTS,
    HAS_ACTIVATION_CHECKPOINTING,
    LONG_ROWS,
    SAMPLING_STRATEGIES,
    SIZE_RECIPES,
    TRAIN_RECIPES,
    TrainConfig,
    check_fields,
    count_parameters,
    recipe_for_size,
    training_args,
)
from treasure.train.run import FSDP_ON_CPU, is_main_process, train
from treasure.train.trainer import (
    DecisionWeightedTrainer,
    TreasureSFTTrainer,
    make_trainer,
    row_lengths,
    to_prompt_completion,
)
from treasure.train.workdir import last_checkpoint, work_dir

__all__ = [
    "CHECKPOINTS",
    "CONFIG_DIR",
    "FSDP_ON_CPU",
    "HAS_ACTIVATION_CHECKPOINTING",
    "LONG_ROWS",
    "SAMPLING_STRATEGIES",
    "SIZE_RECIPES",
    "TRAIN_RECIPES",
    "DecisionWeightedTrainer",
    "TrainConfig",
    "TrainProgress",
    "TrainingInterrupted",
    "TreasureSFTTrainer",
    "check_fields",
    "count_parameters",
    "is_main_process",
    "last_checkpoint",
    "make_trainer",
    "recipe_for_size",
    "row_lengths",
    "to_prompt_completion",
    "train",
    "training_args",
    "work_dir",
]
