"""Training progress on a terminal: one line per network, rewritten each epoch.

Lightning's own progress bar redraws per batch and floods logs; this callback shows
what a person watching wants to know, once per epoch: the epoch, the validation loss
(and the best so far) and the learning rate. It appears only after ``delay`` seconds
(short fits stay silent) and only on a terminal (:func:`on_terminal`); sweeps print
one line per finished job instead.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any, Optional, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback


def on_terminal() -> bool:
    """Whether stdout and stderr are both terminals (not a log file, a pipe or a test's capture)."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


class EpochProgress(Callback):
    """A tqdm line on ``stream`` (default stderr): ``training: epoch 37 [00:12, 3.1 epoch/s] val/loss … lr …``."""

    def __init__(self, label: str = "training", stream: Optional[TextIO] = None, delay: float = 2.0) -> None:
        self.label = label
        self.stream = stream
        self.delay = delay
        self.bar: Any = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from tqdm.auto import tqdm

        # the size from shutil: a terminal that reports 0x0 (a pty nobody sized) gets 80x24; tqdm would
        # cut the line to 0 columns and hide a bar beyond row 0
        columns, rows = shutil.get_terminal_size()
        self.bar = tqdm(desc=self.label, unit="epoch", file=self.stream or sys.stderr, delay=self.delay,
                        ncols=columns, nrows=rows, bar_format="{desc}: epoch {n} [{elapsed}, {rate_fmt}{postfix}]")

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # after the epoch's validation, when the module has closed both means (as EpochMetrics)
        val_losses = getattr(module, "val_losses", [])
        if self.bar is None or not val_losses:
            return
        rate = trainer.optimizers[0].param_groups[0]["lr"]
        best = getattr(module, "best_val_loss", float("nan"))
        self.bar.set_postfix_str(f"val/loss {val_losses[-1]:.4g} (best {best:.4g}) lr {rate:.2g}", refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
