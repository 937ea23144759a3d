"""A tuning job's search space and its optuna study (sampler and pruner per strategy).

Strategy -> optuna: Bayesian = TPESampler (constant liar, for parallel trials),
Random = RandomSampler, Grid = GridSampler (integer and categorical ranges only, as
SageMaker requires), Hyperband = HyperbandPruner over the StrategyConfig's
Min/MaxResource with random sampling. TrainingJobEarlyStoppingType Auto = the
median stopping rule (optuna's MedianPruner on the objective's intermediate values,
once two trials have finished). ``RandomSeed`` seeds the sampler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from local_aws.protocol.errors import validation_error

if TYPE_CHECKING:
    from local_aws.services.sagemaker.tuning.job import TuningJob

optuna.logging.set_verbosity(optuna.logging.WARNING)

MEDIAN_STARTUP_TRIALS = 2  # the median rule needs finished trials to compare against


def _number(value: Any, kind: type, where: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError) as error:
        raise validation_error(f"{where}: {value!r} is not a valid {kind.__name__}.") from error


def _use_log_scale(scaling: str, low: float, high: float, name: str) -> bool:
    if scaling == "ReverseLogarithmic":
        raise validation_error(f"local_aws does not support ReverseLogarithmic scaling ({name}).")
    if scaling == "Logarithmic":
        if low <= 0:
            raise validation_error(f"Logarithmic scaling needs MinValue > 0 ({name}).")
        return True
    # Auto: SageMaker picks; locally a range spanning three orders of magnitude is searched in log space.
    return scaling == "Auto" and low > 0 and high / low >= 1000


def search_space(ranges: dict[str, Any], strategy: str) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}

    def add(name: str, distribution: BaseDistribution) -> None:
        if name in space:
            raise validation_error(f"Hyperparameter {name!r} appears in more than one range.")
        space[name] = distribution

    for item in ranges.get("IntegerParameterRanges", []):
        name = item["Name"]
        low, high = _number(item["MinValue"], int, name), _number(item["MaxValue"], int, name)
        if low > high:
            raise validation_error(f"MinValue must not exceed MaxValue ({name}).")
        log_scale = _use_log_scale(item.get("ScalingType", "Auto"), low, high, name)
        add(name, IntDistribution(low, high, log=log_scale and strategy != "Grid"))
    for item in ranges.get("ContinuousParameterRanges", []):
        name = item["Name"]
        if strategy == "Grid":
            raise validation_error(
                f"Grid search supports only integer and categorical parameter ranges ({name} is continuous)."
            )
        low, high = _number(item["MinValue"], float, name), _number(item["MaxValue"], float, name)
        if low > high:
            raise validation_error(f"MinValue must not exceed MaxValue ({name}).")
        add(
            name,
            FloatDistribution(
                low, high, log=_use_log_scale(item.get("ScalingType", "Auto"), low, high, name)
            ),
        )
    for item in ranges.get("CategoricalParameterRanges", []):
        if not item.get("Values"):
            raise validation_error(f"Categorical range {item.get('Name')!r} needs at least one value.")
        add(item["Name"], CategoricalDistribution(list(item["Values"])))
    if ranges.get("AutoParameters"):
        raise validation_error("local_aws does not support AutoParameters (Autotune).")
    if not space:
        raise validation_error("HyperParameterTuningJobConfig needs at least one parameter range.")
    return space


def grid(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for name, distribution in space.items():
        if isinstance(distribution, IntDistribution):
            values[name] = list(range(distribution.low, distribution.high + 1))
        elif isinstance(distribution, CategoricalDistribution):
            values[name] = list(distribution.choices)
    return values


def tuned_value(value: Any) -> str:
    """Hyperparameter values are strings on the wire; the toolkit JSON-decodes numbers back."""
    return str(value)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler stops ``study.optimize`` once the grid is used up, which raises under ask-and-tell;
    the runner caps the trial count at the grid size itself."""

    def after_trial(self, study: optuna.Study, trial: Any, state: TrialState, values: Any) -> None:
        return None


def make_study(tuning: TuningJob) -> optuna.Study:
    config = tuning.config
    strategy = config["Strategy"]
    seed = config.get("RandomSeed")
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if strategy == "Bayesian":
        # TPE starts random; with small budgets let it start modelling after half of them.
        startup = max(2, min(10, tuning.max_jobs // 2))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    elif strategy == "Grid":
        sampler = AskTellGridSampler(grid(tuning.space), seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    if strategy == "Hyperband":
        hyperband = config.get("StrategyConfig", {}).get("HyperbandStrategyConfig", {})
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=int(hyperband.get("MinResource", 1)),
            max_resource=int(hyperband.get("MaxResource", "auto")) if "MaxResource" in hyperband else "auto",
        )
    elif config.get("TrainingJobEarlyStoppingType", "Off") == "Auto":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=2)
    direction = "maximize" if tuning.maximize else "minimize"
    return optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
