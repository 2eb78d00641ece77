"""A model matrix set aside on disk while something else needs the memory.

Training refits the denial booster on every labelled claim after evaluation (see
:func:`training.train.run_training`). The training period's rows wait for that refit in an
unnamed temporary file: evaluation builds the history over every claim in the meantime, and a
million-claim run's training rows are 0.6 GB that its peak would otherwise carry.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
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

    def stacked_on(
        self, later: pd.DataFrame | SpilledMatrix, keep: np.ndarray | None = None
    ) -> pd.DataFrame:
        """These rows (only those at the sorted positions ``keep``, when given), then
        ``later``'s (same columns), as one frame; the files are closed.

        ``later`` spilled too is read back into place, so that the stacked frame is the only
        copy of its rows in memory while it is built."""
        if list(later.columns) != list(self.columns):
            raise ValueError("the later rows have other columns than the spilled ones")
        kept = self.rows if keep is None else len(keep)
        later_rows = later.rows if isinstance(later, SpilledMatrix) else len(later)
        values = np.empty((kept + later_rows, len(self.columns)), self.dtype, order="F")
        if keep is None:
            self.read_into(values[:kept])
        else:
            # Each column is read whole into one buffer and the kept rows copied from it: one
            # column's worth of memory more, never the whole matrix.
            column_buffer = np.empty((self.rows, 1), self.dtype, order="F")
            for column, _ in enumerate(self._columns_read_into(column_buffer)):
                values[:kept, column] = column_buffer[keep, 0]
            self.close()
        if isinstance(later, SpilledMatrix):
            later.read_into(values[kept:])
        else:
            values[kept:] = later.to_numpy(dtype=self.dtype, copy=False)
        frame = pd.DataFrame(values, columns=self.columns, copy=False)
        frame.attrs = self.attrs
        return frame

    def read_into(self, values: np.ndarray) -> None:
        """Every spilled row into ``values`` (column-major, this matrix's shape); the file is
        closed."""
        for _ in self._columns_read_into(values, every_column=True):
            pass
        self.close()

    def _columns_read_into(self, values: np.ndarray, every_column: bool = False) -> Iterator[int]:
        """Read the file's columns in order, each into ``values[:, column]`` (or, with one
        column in ``values``, each into it in turn); yield each column's index once read."""
        self._file.seek(0)
        for column in range(len(self.columns)):
            target = values[:, column if every_column else 0].data.cast("B")
            if self._file.readinto(target) != target.nbytes:
                raise OSError("the spilled matrix's file was cut short")
            yield column

    def close(self) -> None:
        self._file.close()
