"""A model matrix set aside on disk while something else needs the memory.

Training refits the denial booster on every labelled claim after evaluation (see
:func:`training.train.run_training`). The training period's rows wait for that refit in an
unnamed temporary file: evaluation builds the history over every claim in the meantime, and a
million-claim run's training rows are 0.6 GB that its peak would otherwise carry.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


class SpilledMatrix:
    """A float matrix's values in an unnamed temporary file (deleted when closed, or when the
    process ends however it ends), with its columns and attrs kept in memory."""

    def __init__(self, matrix: pd.DataFrame, folder: Path) -> None:
        self.columns = matrix.columns
        self.attrs = dict(matrix.attrs)
        self.dtype = np.result_type(*matrix.dtypes)
        self.rows = len(matrix)
        # Column by column (the feature step's frame is one column-major block): each column
        # is read back into its place in :meth:`stacked_on` without a second full copy.
        values = np.asfortranarray(matrix.to_numpy(dtype=self.dtype, copy=False))
        # Held open until the rows are read back: closing it deletes it.
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115
        self._file.write(values.T.reshape(-1).data.cast("B"))
        self._file.flush()

    def stacked_on(self, later: pd.DataFrame) -> pd.DataFrame:
        """These rows, then ``later``'s (same columns), as one frame; the file is closed."""
        if list(later.columns) != list(self.columns):
            raise ValueError("the later rows have other columns than the spilled ones")
        values = np.empty((self.rows + len(later), len(self.columns)), self.dtype, order="F")
        self._file.seek(0)
        for column in range(len(self.columns)):
            target = values[: self.rows, column].data.cast("B")
            if self._file.readinto(target) != target.nbytes:
                raise OSError("the spilled matrix's file was cut short")
        self.close()
        values[self.rows :] = later.to_numpy(dtype=self.dtype, copy=False)
        frame = pd.DataFrame(values, columns=self.columns, copy=False)
        frame.attrs = self.attrs
        return frame

    def close(self) -> None:
        self._file.close()
