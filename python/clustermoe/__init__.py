"""clustermoe from Python: Mixtures of Experts and two-layer networks
trained by online SGD on a regression task with latent cluster structure
(Kawata et al., ICML 2025).

Every function calls the Rust library the ``clustermoe`` command line is
built on, so a configuration means the same, a run gives the same numbers
and writes the same files, and errors carry the same messages::

    import clustermoe as cm
    res = cm.run(seed=3, task={"d": 64, "local_link": "h4", "global_link": "h4"})
    res.summary["moe"]["test_rel_mse"], res.model["wg"], res.metrics
    data = cm.generate(10_000, seed=1, task={"clusters": 4})
    cm.sweep("grid.toml", out="sweeps/rho", jobs=2)
    rows = cm.merge("sweeps/rho")

A configuration is ``None`` (the defaults), a dict of sections (``{"task":
{"d": 64}}``), or the path of a TOML file; keyword sections
(``task={"d": 64}``) then override it field by field as the CLI's ``--set``
does, and ``seed=`` as ``--seed``. See docs/configuration.md
for every field, or :func:`defaults`.

Long calls release the GIL, show progress on stderr (a terminal or a
notebook) unless ``quiet=True``, and stop on Ctrl-C or a notebook's
interrupt with :class:`KeyboardInterrupt`; a run with ``out=`` then leaves a
checkpoint that :func:`resume` continues from. Errors are
:class:`clustermoe.Error` (see :mod:`clustermoe.errors`).
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native, _progress, errors
from .errors import (
    AssumptionWarning,
    CheckpointError,
    DivergedError,
    Error,
    FigureError,
    FileError,
    IncompleteRunError,
    InputError,
    InsufficientMemoryError,
    InUseError,
    InvalidValueError,
    NonFiniteError,
    ParseError,
    ReadoutError,
    RunError,
    RunsFailedError,
    UnknownFieldError,
    UnreadableError,
)

__version__: str = _native.__version__

__all__ = [
    "Run",
    "defaults",
    "resolve",
    "run",
    "resume",
    "load",
    "generate",
    "link",
    "sweep",
    "merge",
    "reproduce",
    "columns",
    *errors.__all__,
]

PathLike = Union[str, "os.PathLike[str]"]
ConfigLike = Union[None, Mapping[str, Any], PathLike]


# The configuration's sections, which ``**sections`` keyword arguments name.
_SECTIONS = (
    "task",
    "moe",
    "phase_one",
    "phase_two",
    "phase_three",
    "readout",
    "vanilla",
    "metrics",
    "joint",
    "targets",
)


def _sections(
    sections: Dict[str, Any], function: str, keywords: Sequence[str]
) -> Optional[Dict[str, Any]]:
    """The ``**sections`` of ``function``, each a section name with a dict of
    fields; an unknown name is an :class:`UnknownFieldError` naming the
    closest keyword or section (``quite=True``: did you mean ``quiet``?)."""
    for name, value in sections.items():
        if name not in _SECTIONS:
            import difflib

            known = list(keywords) + list(_SECTIONS)
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            e = UnknownFieldError(
                f"unknown keyword argument `{name}` of {function}(){hint} "
                f"(its keywords: {', '.join(keywords)}; configuration sections: "
                f"{', '.join(_SECTIONS)})"
            )
            e.field = name
            raise e
        if not isinstance(value, Mapping):
            raise _invalid(
                name,
                repr(value),
                f"a dict of the [{name}] section's fields, e.g. {name}={{...}}",
            )
    return sections or None


def _invalid(field: str, value: Any, allowed: str) -> InvalidValueError:
    """The library's :class:`InvalidValueError`, for a parameter checked here."""
    e = InvalidValueError(f"invalid value for `{field}`: {value} ({allowed})")
    e.field, e.value, e.allowed = field, str(value), allowed
    return e


class Run:
    """One run: its configuration, summary, metrics and learned arrays.

    Returned by :func:`run`, :func:`resume` and :func:`load`.

    Attributes:
        config: the complete configuration (every field), as ``config.toml``
            holds it, as a dict of sections.
        config_toml: the same as TOML text (``config.toml``'s bytes).
        summary: ``summary.json`` as a dict (key order kept): ``seed``,
            ``var_y``, ``samples``, ``moe`` and ``vanilla`` with
            ``test_rel_mse``, overlaps, ``routing_purity``, ... (see the
            docs/runs-and-sweeps.md, "Output files").
        metrics: ``metrics.jsonl`` as a list of dicts, MoE records first,
            then vanilla; a field appears only where it applies. See
            :meth:`columns` for them as NumPy arrays.
        path: the run directory, or None for a run kept in memory.
    """

    def __init__(
        self,
        config: Dict[str, Any],
        config_toml: str,
        summary: Dict[str, Any],
        metrics: List[Dict[str, Any]],
        model: Optional[Dict[str, np.ndarray]],
        path: Optional[pathlib.Path],
        model_file: Optional[pathlib.Path] = None,
    ):
        self.config = config
        self.config_toml = config_toml
        self.summary = summary
        self.metrics = metrics
        self._model = model
        self._model_file = model_file
        self.path = path

    @classmethod
    def _from_native(cls, raw: Mapping[str, Any]) -> "Run":
        path = raw.get("path")
        model_file = raw.get("model_file")
        return cls(
            config=json.loads(raw["config"]),
            config_toml=raw["config_toml"],
            summary=json.loads(raw["summary"]),
            metrics=[json.loads(line) for line in raw["metrics"].splitlines() if line],
            model=raw.get("model"),
            path=pathlib.Path(path) if path is not None else None,
            model_file=pathlib.Path(model_file) if model_file is not None else None,
        )

    @property
    def model(self) -> Dict[str, np.ndarray]:
        """Every array of ``model.npz``, by name: the ground truth ``v``
        (C x d), ``w`` (C x d), ``wg`` (d), ``s`` (C); ``moe_u`` (M x d),
        ``moe_global_centre`` (d), when ``moe.whiten`` the whitening
        W = b I + U' diag(s - b) U as ``moe_whitening_bulk`` (b, 1),
        ``moe_whitening_directions`` (U, k x d) and
        ``moe_whitening_scales`` (s, k), ``moe_expert_group`` (M, int64, -1 = dropped),
        ``router_theta`` (K x d); per routed expert k ``expert{k}_w``
        (rows x d), ``expert{k}_centre`` (d), ``expert{k}_bias``,
        ``expert{k}_a`` (rows), ``expert{k}_a0`` (1); ``vanilla_w``
        (N x d), ``vanilla_centre``, ``vanilla_bias``, ``vanilla_a``,
        ``vanilla_a0``. float64 unless said otherwise.
        """
        if self._model is None:
            if self._model_file is None:
                raise FileError("this run holds no arrays")
            with np.load(self._model_file) as npz:
                self._model = {name: npz[name] for name in npz.files}
        return self._model

    def columns(self, model: str = "moe", phase: Optional[str] = None) -> Dict[str, np.ndarray]:
        """The metric records of ``model`` (``"moe"`` or ``"vanilla"``),
        of one ``phase`` if given (``"phase_one"``, ``"phase_two"``,
        ``"phase_three"``, ``"train"``, ``"test"``), as columns: see
        :func:`columns`.
        """
        if model not in ("moe", "vanilla"):
            raise _invalid("model", repr(model), '"moe" or "vanilla"')
        records = [
            r for r in self.metrics
            if r["model"] == model and (phase is None or r["phase"] == phase)
        ]
        return columns(records)

    def predict(self, x: Any) -> Dict[str, Optional[np.ndarray]]:
        """Each model's predictions for the rows of ``x`` (n x d, any
        array-like of numbers; computed in float32 as in training):
        ``{"moe": array (n,), "vanilla": array (n,) or None}``. The models
        are rebuilt from :attr:`model` exactly (staged runs).

        Example::

            data = cm.generate(20_000, run.config)      # the run's task
            pred = run.predict(data["x"])
            np.mean((pred["moe"] - data["y"]) ** 2) / np.var(data["y"])
        """
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
        if x.ndim != 2:
            raise _invalid("x", f"an array of shape {x.shape}", "an array of shape (n, d)")
        moe, vanilla = _native.predict(self.config_toml, self.model, x)
        return {"moe": moe, "vanilla": vanilla}

    def evaluate(self, n: Optional[int] = None, seed: Optional[int] = None) -> Dict[str, Any]:
        """Both models' test errors on fresh samples of the run's task:
        ``n`` samples (default: ``metrics.test_samples``) drawn with
        ``seed`` (default: the run's seed, from the stream of
        :func:`generate`; the task's directions stay the run's). With
        neither, the run's own test set, which reproduces the summary's
        errors exactly.

        Returns:
            ``{"samples", "var_y", "moe": {"test_mse", "test_rel_mse",
            "per_cluster_rel_mse"}, "vanilla": the same or None}``.
        """
        return json.loads(_native.evaluate(self.config_toml, self.model, n, seed))

    def __repr__(self) -> str:
        s = self.summary
        parts = [f"seed={s.get('seed')}", f"moe test_rel_mse={s['moe']['test_rel_mse']:.4f}"]
        if s.get("vanilla"):
            parts.append(f"vanilla test_rel_mse={s['vanilla']['test_rel_mse']:.4f}")
        parts.append(f"path={str(self.path) if self.path else None!r}")
        return f"Run({', '.join(parts)})"


def columns(records: Sequence[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
    """Records (dicts, e.g. :attr:`Run.metrics` or :func:`merge`'s rows) as
    columns of NumPy arrays, one per field, in order of first appearance.

    Every column has one entry per record. Numbers give float64 (int64 if
    every record has an integer there), with NaN where a record lacks the
    field or holds null; lists of numbers of one shape give an array of
    shape (records, ...) with NaN rows where absent; strings give a str
    array ('' where absent); anything else an object array.
    """
    names: List[str] = []
    for r in records:
        for k in r:
            if k not in names:
                names.append(k)
    n = len(records)
    out: Dict[str, np.ndarray] = {}
    for name in names:
        values = [r.get(name) for r in records]
        present = [v for v in values if v is not None]
        if not present:
            out[name] = np.full(n, np.nan)
        elif all(isinstance(v, str) for v in present):
            out[name] = np.array([v if v is not None else "" for v in values], dtype=str)
        elif all(isinstance(v, bool) for v in present):
            out[name] = np.array(values) if len(present) == n else np.array(values, dtype=object)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in present) and len(present) == n:
            out[name] = np.array(values, dtype=np.int64)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            try:
                shaped = [np.asarray(v, dtype=np.float64) for v in present]
            except (TypeError, ValueError):
                shaped = []
            shapes = {a.shape for a in shaped}
            if shaped and len(shapes) == 1 and len(shaped) == len(present):
                shape = shapes.pop()
                column = np.full((n,) + shape, np.nan)
                it: Iterator[np.ndarray] = iter(shaped)
                for i, v in enumerate(values):
                    if v is not None:
                        column[i] = next(it)
                out[name] = column
            else:
                column = np.empty(n, dtype=object)
                column[:] = values
                out[name] = column
    return out


def defaults(*, toml: bool = False) -> Union[Dict[str, Any], str]:
    """The full default configuration (``clustermoe defaults``): a dict of
    sections, or with ``toml=True`` the TOML text, a starting point for a
    configuration file."""
    as_json, as_toml = _native.defaults()
    return as_toml if toml else json.loads(as_json)


def resolve(config: ConfigLike = None, *, seed: Optional[int] = None, **sections: Any) -> Dict[str, Any]:
    """The complete configuration a :func:`run` with these arguments would
    use (what its ``config.toml`` holds), checked: bad values raise
    :class:`InputError` before anything runs."""
    as_json, _, _, _ = _native.resolve(config, seed, _sections(sections, "resolve", ["config", "seed"]))
    return json.loads(as_json)


def run(
    config: ConfigLike = None,
    *,
    seed: Optional[int] = None,
    out: Optional[PathLike] = None,
    checkpoint_every: Optional[int] = None,
    threads: Optional[int] = None,
    quiet: bool = False,
    **sections: Any,
) -> Run:
    """Trains the MoE (phases I-IV) and the vanilla network on the same
    sample budget and evaluates both (``clustermoe run``).

    Args:
        config: None (the defaults), a dict of sections, or the path of a
            TOML configuration file.
        seed: the seed of every random stream (``--seed``); overrides the
            configuration's.
        out: a run directory to write, exactly as ``clustermoe run --out``
            does (``config.toml``, ``metrics.jsonl``, ``model.npz``,
            ``summary.json``, then ``complete.json``, the record of every
            file's length and SHA-256 that marks the run complete); None
            keeps the run in memory. One process writes a directory at a
            time: another's raises :class:`InUseError`.
        checkpoint_every: with ``out``, save a checkpoint every this many
            steps of a phase (``--checkpoint-every``).
        threads: threads of the run, 1 to 1024 (``--threads``); None uses
            all cores. The results are the same for every number.
        quiet: no progress display and no budget line on stderr.
        **sections: configuration sections, applied field by field like
            ``--set``: ``task={"d": 64}`` is ``--set task.d=64``.

    Returns:
        a :class:`Run`.

    Raises:
        InputError: a bad configuration (nothing is written), or
            :class:`InUseError`: another process is writing ``out``.
        RunError: the run failed (e.g. :class:`DivergedError`).
        KeyboardInterrupt: Ctrl-C or a notebook's interrupt; with ``out``
            both models saved a checkpoint first and :func:`resume` goes on.
    """
    progress = _progress.make(_progress.RunProgress, quiet)
    try:
        raw = _native.run(
            config,
            seed,
            _sections(
                sections,
                "run",
                ["config", "seed", "out", "checkpoint_every", "threads", "quiet"],
            ),
            out,
            checkpoint_every,
            progress,
            threads,
        )
    finally:
        if progress is not None:
            progress.close()
    return Run._from_native(raw)


def resume(
    dir: PathLike,
    *,
    checkpoint_every: Optional[int] = None,
    threads: Optional[int] = None,
    quiet: bool = False,
) -> Run:
    """Continues a stopped or killed run directory from its checkpoints
    (``clustermoe run --resume DIR``); the result is the run that was never
    interrupted, byte for byte. A complete directory is read back as it is.
    ``threads`` is as for :func:`run`.

    Raises:
        CheckpointError: not a run directory, or a damaged checkpoint.
        InUseError: another process is writing the directory.
    """
    progress = _progress.make(_progress.RunProgress, quiet)
    try:
        raw = _native.resume(dir, checkpoint_every, progress, threads)
    finally:
        if progress is not None:
            progress.close()
    return load(dir) if raw is None else Run._from_native(raw)


def load(dir: PathLike) -> Run:
    """Reads a complete run directory (written by :func:`run` with ``out=``
    or by ``clustermoe run``) back as a :class:`Run`; ``model`` is read
    from ``model.npz`` when first used.

    Every file is checked against the run's completion record
    (``complete.json``: each file's length and SHA-256) first.

    Raises:
        IncompleteRunError: the run did not finish, or a file no longer
            matches the record (``reason`` says which).
        InUseError: another process is writing the run now.
    """
    return Run._from_native(_native.read_run(dir))


def generate(
    n: int,
    config: ConfigLike = None,
    *,
    seed: Optional[int] = None,
    dtype: Any = np.float64,
    **sections: Any,
) -> Dict[str, np.ndarray]:
    """Draws ``n`` samples of the task (``clustermoe generate``): the same
    arrays as the CLI's ``.npz`` for the same configuration and seed.

    Returns:
        a dict of arrays: ``x`` (n x d), ``y`` (n), ``c`` (n, int64,
        cluster index from 0), and the ground truth ``v`` (C x d), ``w``
        (C x d), ``wg`` (d), ``s`` (C). ``x`` and ``y`` are float64 as in
        the file, or with ``dtype=np.float32`` as drawn (no conversion,
        half the memory); the rest float64.
    """
    kind = np.dtype(dtype)
    if kind not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise _invalid("dtype", kind, "numpy.float64 or numpy.float32")
    return _native.generate(
        n,
        config,
        seed,
        _sections(sections, "generate", ["n", "config", "seed", "dtype"]),
        kind == np.dtype(np.float32),
    )


def link(spec: str, degree: int = 8) -> Dict[str, Any]:
    """Describes a link (``clustermoe link LINK --degree K --json``):
    ``spec``, ``information_exponent``, ``degree``,
    ``hermite_coefficients`` (normalised, up to ``degree``), ``mean`` and
    ``variance``. See docs/configuration.md, "Link specifications"."""
    return json.loads(_native.describe_link(spec, degree))


def sweep(
    grid: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    jobs: Optional[int] = None,
    shard: Union[None, str, Tuple[int, int]] = None,
    *,
    checkpoint_every: Optional[int] = None,
    quiet: bool = False,
) -> Dict[str, Any]:
    """Runs every point of a grid (``clustermoe sweep``), each as an
    independent run in ``out/runs/<id>/``. ``grid`` is the path of a grid
    file or a dict of the same tables, e.g. ``{"seeds": [1, 2], "set":
    {"task.d": 16}, "grid": {"task.rho": [2.0, 3.0]}}`` (a ``base`` in a
    dict is relative to the current directory). Runs are parallel (``jobs`` runs at a
    time, default all cores), resumable (complete runs are skipped) and
    shardable (``shard="I/N"`` or ``(I, N)``; default: the Slurm array's
    variables, else all). Then :func:`merge` gathers the results.

    Returns:
        what the sweep did: ``planned``, ``trained``, ``resumed``,
        ``skipped``, ``failed`` (list of (id, message)), ``stopped``,
        ``busy`` (ids of runs another process was writing: left to it),
        ``shard`` and ``out``. Several sweeps on one ``out`` work side by
        side, each run trained by one of them.

    Raises:
        RunsFailedError: some runs failed (the others are on disk).
        KeyboardInterrupt: stopped; runs in progress were checkpointed and
            the same call resumes them.
    """
    progress = _progress.make(_progress.SweepProgress, quiet)
    try:
        return _native.run_sweep(grid, out, jobs, shard, checkpoint_every, progress)
    finally:
        if progress is not None:
            progress.close()


def _flatten(prefix: str, value: Any, out: Dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def merge(dir: PathLike) -> List[Dict[str, Any]]:
    """Gathers every complete run of a sweep into ``dir/results.csv`` and
    ``dir/results.jsonl`` (``clustermoe merge``) and returns the rows in
    grid order: one flat dict per run with the CSV's columns (``id``,
    ``config.task.d``, ..., ``summary.moe.test_rel_mse``, ...; every row has
    every column, None where its run has no value) and typed values (lists
    stay lists). ``pandas.DataFrame(rows)`` makes a table,
    :func:`columns` NumPy columns. Runs that are not rows are named in a
    warning: not started, in progress in another process, or incomplete
    (with the reason: killed, or a file that no longer matches the run's
    completion record; running the sweep again redoes those)."""
    _, missing, in_progress, incomplete, _, jsonl = _native.merge(dir)
    if missing:
        warnings.warn(
            f"{len(missing)} runs of the grid are not started: {', '.join(missing)}",
            stacklevel=2,
        )
    if in_progress:
        warnings.warn(
            f"{len(in_progress)} runs are in progress in another process: "
            + ", ".join(in_progress),
            stacklevel=2,
        )
    if incomplete:
        warnings.warn(
            f"{len(incomplete)} runs are incomplete (running the sweep again redoes them): "
            + "; ".join(f"{id}: {why}" for id, why in incomplete),
            stacklevel=2,
        )
    rows = []
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                row: Dict[str, Any] = {"id": obj["id"]}
                _flatten("config", obj["config"], row)
                _flatten("summary", obj["summary"], row)
                rows.append(row)
    # The CSV's columns: the union over rows in order of first appearance
    # (a censored target has `within` where a reached one has `samples`).
    header: Dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    return [{k: row.get(k) for k in header} for row in rows]


def reproduce(
    out: PathLike = "reproduction",
    quick: bool = True,
    *,
    jobs: Optional[int] = None,
    checkpoint_every: Optional[int] = None,
    quiet: bool = False,
) -> List[Dict[str, Any]]:
    """Runs the experiments E1-E7 (``clustermoe reproduce``, ``--quick``
    unless ``quick=False``) and writes the report, figures, tables and
    ``claims.json`` in ``out``; runs already there are reused, so a stopped
    reproduction resumes. Returns the claims: ``id``, ``claim``,
    ``measured``, ``held``."""
    progress = _progress.make(_progress.MessageProgress, quiet)
    try:
        text = _native.reproduce(out, quick, jobs, checkpoint_every, progress)
    finally:
        if progress is not None:
            progress.close()
    return json.loads(text)
