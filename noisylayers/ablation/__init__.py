"""Per-layer noise ablations: which layers' weight noise matters, and how much.

- `training_ablation`: train one model per noise configuration (no noise,
  noise everywhere, in each layer alone, leaving each layer out, optionally
  at several scales), over seeds; runs are saved as they finish, resumable
  and shardable; `merge` combines shard directories.
- `sensitivity_ablation`: put noise into one layer of a trained model at a
  time, at a range of scales, and evaluate.

Both return results (`TrainingAblationResult`, `SensitivityAblationResult`)
that print as a table and write Markdown, CSV, JSON and PNG plots.
`noisylayers.ablation.models` holds the models and data of the
`noisylayers ablate` command.
"""

from noisylayers.ablation import models
from noisylayers.ablation.plan import configurations
from noisylayers.ablation.results import AblationResult
from noisylayers.ablation.results import SensitivityAblationResult
from noisylayers.ablation.results import TrainingAblationResult
from noisylayers.ablation.sensitivity import sensitivity_ablation
from noisylayers.ablation.training import merge
from noisylayers.ablation.training import training_ablation

__all__ = [
    "AblationResult",
    "SensitivityAblationResult",
    "TrainingAblationResult",
    "configurations",
    "merge",
    "models",
    "sensitivity_ablation",
    "training_ablation",
]
