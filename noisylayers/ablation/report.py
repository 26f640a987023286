"""What `run_ablation` returns and `noisylayers ablate` prints: `AblationReport`."""

import dataclasses
import os

from noisylayers.ablation import store


@dataclasses.dataclass(frozen=True)
class AblationReport:
    """What `run_ablation` (or `finish_ablation`) produced.

    Unpacks as its two results: `training, sensitivity = run_ablation()`.
    Printing it shows what `noisylayers ablate` prints at the end: both
    tables, the noise figures and the files written.

    Attributes:
        out_dir: The directory of the ablation.
        training: The `TrainingAblationResult`: every run saved in
            `out_dir`.
        sensitivity: The `SensitivityAblationResult` of the trained
            baseline model (seed `seeds[0]`), or `None` while runs of the
            training ablation are missing (in other shards).
        noise_stats: `noisylayers.noise_stats` of the model trained with
            noise everywhere (the first seed), or `None`.
        noise_stats_run: The id of that run, or `None`.
        files: The paths of the tables and plots written.
    """

    out_dir: str
    training: object
    sensitivity: object = None
    noise_stats: object = None
    noise_stats_run: str = None
    files: tuple = ()

    def __iter__(self):
        return iter((self.training, self.sensitivity))

    def __str__(self):
        parts = [str(self.training)]
        if self.noise_stats is not None:
            parts.append(
                "Noise in the model trained with noise everywhere "
                f"({self.noise_stats_run}):\n{self.noise_stats}"
            )
        if self.sensitivity is not None:
            parts.append(str(self.sensitivity))
        lines = ["Wrote:", *(f"  {path}" for path in self.files)]
        models = sum(1 for r in self.training.records if r.get("model"))
        lines.append(
            f"  {os.path.join(self.out_dir, store.MODELS_DIR)}/*.keras "
            f"({models} trained models)"
        )
        lines.append(
            f"  {os.path.join(self.out_dir, store.RUNS_DIR)}/*.json "
            "(one record per run)"
        )
        parts.append("\n".join(lines))
        return "\n\n".join(parts)
