"""The compiled part of clustermoe (Rust, PyO3). Private: use the functions
of :mod:`clustermoe`, which wrap these with progress displays and turn their
JSON into dicts and :class:`clustermoe.Run` objects."""

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

_Path = Union[str, "os.PathLike[str]"]
_Config = Union[None, Mapping[str, Any], _Path]

__version__: str

def defaults() -> Tuple[str, str]:
    """The default configuration as (JSON, TOML)."""

def resolve(
    config: _Config = None,
    seed: Optional[int] = None,
    sections: Optional[Mapping[str, Any]] = None,
) -> Tuple[str, str, str, str]:
    """The checked configuration: (JSON, TOML, budget line, budget JSON)."""

def run(
    config: _Config = None,
    seed: Optional[int] = None,
    sections: Optional[Mapping[str, Any]] = None,
    out: Optional[_Path] = None,
    checkpoint_every: Optional[int] = None,
    progress: Any = None,
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """A run: keys config, config_toml, summary, metrics (JSON text),
    model (dict of arrays) and path."""

def resume(
    dir: _Path,
    checkpoint_every: Optional[int] = None,
    progress: Any = None,
    threads: Optional[int] = None,
) -> Optional[Dict[str, Any]]:
    """A resumed run as :func:`run` returns it; None if it was complete."""

def read_run(dir: _Path) -> Dict[str, Any]:
    """A complete run directory: config, config_toml, summary, metrics,
    model_file, path."""

def generate(
    n: int,
    config: _Config = None,
    seed: Optional[int] = None,
    sections: Optional[Mapping[str, Any]] = None,
    float32: bool = False,
) -> Dict[str, np.ndarray]:
    """x, y, c, v, w, wg, s."""

def describe_link(spec: str, degree: int) -> str:
    """The link's description as JSON."""

def run_sweep(
    grid: Union[_Path, Mapping[str, Any]],
    out: _Path,
    jobs: Optional[int] = None,
    shard: Union[None, str, Tuple[int, int]] = None,
    checkpoint_every: Optional[int] = None,
    progress: Any = None,
) -> Dict[str, Any]:
    """The sweep's report."""

def merge(
    dir: _Path,
) -> Tuple[int, List[str], List[str], List[Tuple[str, str]], str, str]:
    """(rows, ids not started, ids in progress, (id, reason) of incomplete
    runs, results.csv, results.jsonl)."""

def reproduce(
    out: _Path,
    quick: bool,
    jobs: Optional[int] = None,
    checkpoint_every: Optional[int] = None,
    progress: Any = None,
) -> str:
    """The claims as JSON."""

def predict(
    config_toml: str, model: Mapping[str, np.ndarray], x: np.ndarray
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(MoE predictions, vanilla predictions or None)."""

def evaluate(
    config_toml: str,
    model: Mapping[str, np.ndarray],
    n: Optional[int] = None,
    seed: Optional[int] = None,
) -> str:
    """Both models' errors as JSON."""

def _error_example(kind: str) -> BaseException:
    """For the tests: the exception a library error of this kind becomes."""
