"""train_log.csv: one row per logging step of a GRPO run, and the callback that keeps it current."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

LOG_FIRST_COLUMNS = [
    "step",
    "epoch",
    "loss",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "completions/mean_length",
]


def log_rows(log_history: list[dict], world_size: int, resumes: list[int] = ()) -> pd.DataFrame:
    """One row per logging step of trainer.state.log_history (the end-of-training summary excluded),
    with the number of processes that trained (the metrics are already averaged over them) and the
    checkpoint step the logging process had resumed from (empty before any resume)."""
    entries = [e for e in log_history if "step" in e and ("loss" in e or "reward" in e)]
    frame = pd.DataFrame(entries)
    if frame.empty:
        return pd.DataFrame(columns=[*LOG_FIRST_COLUMNS, "world_size", "resumed_from"])
    frame = frame.drop_duplicates(subset="step", keep="last")
    first = [c for c in LOG_FIRST_COLUMNS if c in frame.columns]
    resumed_from = [max((r for r in resumes if r < step), default=None) for step in frame["step"]]
    return frame[first + [c for c in frame.columns if c not in first]].assign(
        world_size=world_size, resumed_from=pd.array(resumed_from, dtype="Int64")
    )


def progress_callback(log_csv: Path, resumes: list[int]):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Logs each step's headline metrics and keeps the checkpoint folder's train_log.csv current.

        Every process logs its start and end (each line names its rank when there are several);
        the step lines and the log file come from the main process only, the metrics being averaged
        over all processes."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.first_step = state.global_step
            log.info("GRPO training: step %d of %d, world size %d", state.global_step, state.max_steps, args.world_size)

        def on_train_end(self, args, state, control, **kwargs):
            log.info(
                "GRPO training done: step %d of %d in %.1f s",
                state.global_step,
                state.max_steps,
                time.monotonic() - self.started,
            )

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            done = state.global_step - self.first_step
            per_step = (time.monotonic() - self.started) / max(done, 1)
            log.info(
                "step %d/%d: loss %.4g, reward %.3f (std %.3f, zero-std groups %.0f%%), %.1f s/step",
                state.global_step,
                state.max_steps,
                logs.get("loss", float("nan")),
                logs.get("reward", float("nan")),
                logs.get("reward_std", float("nan")),
                100 * logs.get("frac_reward_zero_std", float("nan")),
                per_step,
            )
            log_rows(state.log_history, args.world_size, resumes).to_csv(log_csv, index=False)

    return Progress()
