"""Per-layer noise ablations: which layers' weight noise matters, and how much.

- `training_ablation`: train one model per noise configuration (no noise,
  noise everywhere, in each layer alone, leaving each layer out, optionally
  at several scales), over seeds; runs are saved as they finish, resumable
  and shardable; `merge` combines shard directories.
- `sensitivity_ablation`: put noise into one layer of a trained model at a
  time, at a range of scales, and evaluate.
- `run_ablation`: both, on a built-in model or one's own (a function in a
  file or module, or a saved `.keras` model, with its data), in one call:
  what `noisylayers ablate` runs (`finish_ablation` completes a merged one).

Both train serially or, with `ray=`, as Ray tasks on one machine or a
cluster (`pip install "noisylayers[ray]"`).

The results (`TrainingAblationResult`, `SensitivityAblationResult`) print
as a table and write Markdown, CSV, JSON and PNG plots.

The modules, in the order a run goes through them: `settings` (the
settings of `run_ablation` and their defaults), `models` (the built-in
models and data), `sources` (models and data of one's own), `plan`
(configurations, runs, shards), `training` (the runner), `distributed`
(the runs as Ray tasks), `store` (the directory on disk), `sensitivity`, `results`,
`tables` and `plotting` (the outputs), `pipeline` (`run_ablation`),
`report` (what it returns), and `checks`, `progress` and `optional`
(helpers).
"""

from noisylayers.ablation import models
from noisylayers.ablation.pipeline import finish_ablation
from noisylayers.ablation.pipeline import run_ablation
from noisylayers.ablation.plan import configurations
from noisylayers.ablation.report import AblationReport
from noisylayers.ablation.results import AblationResult
from noisylayers.ablation.results import SensitivityAblationResult
from noisylayers.ablation.results import TrainingAblationResult
from noisylayers.ablation.sensitivity import sensitivity_ablation
from noisylayers.ablation.training import merge
from noisylayers.ablation.training import training_ablation

__all__ = [
    "AblationReport",
    "AblationResult",
    "SensitivityAblationResult",
    "TrainingAblationResult",
    "configurations",
    "finish_ablation",
    "merge",
    "models",
    "run_ablation",
    "sensitivity_ablation",
    "training_ablation",
]
