"""The run-store contract: one explicit pyarrow schema per table.

This is the only module that defines table and column names. It imports nothing heavier
than pyarrow so that collect (writer) and analysis (reader) can both depend on it.
Users' SQL depends on these names: add columns freely, never rename or drop one.
"""

from __future__ import annotations

import pyarrow as pa

f64, i64, i32, string, boolean = pa.float64(), pa.int64(), pa.int32(), pa.string(), pa.bool_()


def _schema(table: str, fields: list[tuple[str, pa.DataType, str]]) -> pa.Schema:
    return pa.schema(
        [pa.field(name, typ, nullable=True, metadata={"doc": doc}) for name, typ, doc in fields],
        metadata={"table": table},
    )


RUNS = _schema(
    "runs",
    [
        ("run_id", string, "stable hash of the resolved config (sweep included, device excluded)"),
        ("sweep", string, "sweep name"),
        ("status", string, "completed | diverged | failed"),
        ("seed", i64, "seed for data order, init and label noise"),
        ("dataset", string, "mnist1d | digits | parabola | teacher | mnist | cifar10"),
        ("model", string, "mlp | cnn | resnet18"),
        ("width", i64, "hidden width (MLP), first-layer channels (CNN), width multiplier k (ResNet)"),
        ("depth", i64, "number of hidden layers (MLP)"),
        ("activation", string, "relu | tanh | gelu | elu"),
        ("init", string, "init scheme"),
        ("optimizer", string, "sgd | momentum | adam"),
        ("lr", f64, "learning rate h"),
        ("momentum", f64, "momentum (sgd momentum or adam beta1)"),
        ("batch_size", i64, "batch size b (n_train means full-batch GD)"),
        ("steps", i64, "requested optimizer steps"),
        ("l2", f64, "explicit L2 penalty strength: l2/2 ||theta||^2"),
        ("spectral_reg", f64, "spectral penalty strength: s/2 sum sigma_max(W_l)^2"),
        ("flatness_reg", f64, "flatness penalty strength: r ||grad L_B||^2"),
        ("gc_reg", f64, "GC (Jacobian) penalty strength: a/b sum ||grad_x f||_F^2"),
        ("label_noise", f64, "fraction of training labels replaced by another class"),
        ("n_params", i64, "number of trainable parameters"),
        ("device", string, "cpu | cuda[:i]"),
        ("wall_s", f64, "wall time of the run in seconds"),
        ("config_json", string, "the resolved config as canonical JSON"),
        ("bias", boolean, "layers have biases"),
        ("init_scale", f64, "init std multiplier"),
        ("loss", string, "cross_entropy | mse"),
        ("n_train", i64, "training examples"),
        ("n_test", i64, "test examples"),
        ("steps_done", i64, "optimizer steps actually taken (less than steps if diverged)"),
        ("best_test_acc", f64, "best test accuracy over evals"),
        ("error", string, "one-line reason for diverged/failed runs"),
        ("gclab_version", string, "package version that wrote the run"),
        (
            "target_reached",
            boolean,
            "the stop target (stop_at_train_error / stop_at_train_loss) was met at an eval; null without a target",
        ),
        (
            "target_step",
            i64,
            "first eval step at which the target was met (training stopped there); null if never or no target",
        ),
        ("final_train_error", f64, "1 - accuracy on the FULL training set at the last eval (NaN for regression)"),
        ("final_train_loss", f64, "mean loss (no regularizers) on the FULL training set at the last eval"),
        ("zero_bias", boolean, "biases were zero at init (every named scheme; torch's 'default' keeps random ones)"),
        (
            "scale",
            string,
            "demo, cpu or paper: which size of its sweep the run is (collect --scale); the views and "
            "analyses use the largest scale present per sweep. Runs written before this column: the "
            "scale in config_json, else cpu",
        ),
        (
            "fallback_layers",
            string,
            "layers whose per-example gradients the metric engine took by its exact generic fallback "
            "(torch.func; docs/METRICS.md), '; '-separated; null when every layer had a rule",
        ),
        (
            "step_label_noise",
            f64,
            "per-step label noise: probability that a batch label is redrawn uniformly, fresh every step",
        ),
    ],
)

STEPS = _schema(
    "steps",
    [
        ("run_id", string, "run"),
        ("step", i64, "optimizer step at which the batch was drawn (before the update)"),
        ("lr", f64, "learning rate at this step"),
        ("batch_size", i64, "batch size b"),
        ("train_loss", f64, "batch loss (without regularizers)"),
        ("train_acc", f64, "batch accuracy (NaN for regression)"),
        ("gc", f64, "batch mean of ||grad_x f(x)||_F^2"),
        ("gc_stderr", f64, "standard error of gc when estimated from gc_projections random projections (null: exact)"),
        ("grad_norm_sq", f64, "||grad_theta L_B||^2 of the batch loss"),
        ("residual_term", f64, "R_B of Eq. 6"),
        ("label_alignment", f64, "A_B of Eq. 8"),
        ("batch_alignment", f64, "C_B of Eq. 7"),
        ("per_example_grad_norm_sq", f64, "batch mean of ||grad_theta L_x||^2"),
        ("wall_s", f64, "seconds since the run started"),
    ],
)

EVALS = _schema(
    "evals",
    [
        ("run_id", string, "run"),
        ("step", i64, "optimizer step"),
        ("split", string, "train | test | random"),
        ("loss", f64, "mean loss on the split"),
        ("acc", f64, "accuracy on the split (NaN for regression)"),
        ("gc", f64, "GC on the split"),
        ("param_norm_sq", f64, "||theta||^2"),
        ("spectral_product", f64, "product of layer spectral norms"),
        ("dist_from_init", f64, "||theta - theta_0||"),
        ("bfd", i64, "batch functional dimension on a fixed batch of the split"),
        ("sharpness", f64, "top Hessian eigenvalue of the loss on a fixed batch"),
        (
            "bfd_max",
            i64,
            "the largest possible bfd on the batch: min(b*k, P - #hidden ReLU units) for logits, "
            "min(b*(k-1), P - #hidden - 1) for softmax (docs/EXPERIMENTS.md)",
        ),
        ("n_examples", i64, "examples the split's loss/acc/gc are over"),
    ],
)

THEOREM = _schema(
    "theorem",
    [
        ("run_id", string, "run"),
        ("step", i64, "optimizer step"),
        ("split", string, "train | test | random"),
        ("example", i64, "index of the example in the fixed theorem subset"),
        ("gc_x", f64, "||grad_x f(x)||_F^2"),
        ("grad_theta_sq", f64, "||grad_theta f(x)||_F^2"),
        ("transfer_sq_sum", f64, "sum_l T_l(x)^2 with the 1/sqrt(min(d,k)) factor (paper's Eq. 10)"),
        ("transfer_sq_sum_tight", f64, "sum_l T_l(x)^2 without that factor"),
        ("bound", f64, "grad_theta_sq / transfer_sq_sum"),
        ("bound_tight", f64, "grad_theta_sq / transfer_sq_sum_tight"),
        (
            "holds_tight",
            boolean,
            "gc_x <= bound_tight * (1 + rtol), rtol 1e-4 in float32 and 1e-9 in float64 (gclab/store/tolerances.py); "
            "stores written before this name call it holds, which the views read as holds_tight",
        ),
    ],
)

LAYERS = _schema(
    "layers",
    [
        ("run_id", string, "run"),
        ("step", i64, "optimizer step"),
        ("split", string, "train | test | random"),
        ("example", i64, "index of the example in the fixed theorem subset"),
        ("layer", i32, "layer index l, 1-based"),
        ("h_norm_sq", f64, "||h_l(x)||^2, the squared norm of the layer's input"),
        ("weight_spec", f64, "sigma_max(W_l)"),
        ("input_jac_spec", f64, "sigma_max(grad_x h_l(x))"),
        ("transfer_sq", f64, "T_l(x)^2 with the 1/sqrt(min(d,k)) factor"),
    ],
)

PROBES = _schema(
    "probes",
    [
        ("run_id", string, "run"),
        ("step", i64, "optimizer step"),
        ("t", f64, "probe point t: the input is t in every coordinate (fig1: the 1-D input; fig2: the diagonal)"),
        ("output", f64, "model output (logit output_index) at the probe point"),
        ("output_index", i32, "which logit"),
    ],
)

FDIM = _schema(
    "fdim",
    [
        ("run_id", string, "run"),
        ("step", i64, "optimizer step (an eval step)"),
        ("split", string, "random: nested Gaussian-input batches of growing size"),
        ("n_inputs", i64, "batch size b of this nested batch"),
        ("output", string, "logits | softmax: the outputs whose parameter Jacobian is ranked"),
        ("bfd", i64, "batch functional dimension on the first n_inputs inputs"),
        ("bfd_max", i64, "the largest possible bfd at this b (as evals.bfd_max)"),
        ("sv_max", f64, "largest singular value of the Jacobian"),
        ("sv_last_kept", f64, "smallest singular value counted in the rank"),
        ("sv_first_dropped", f64, "largest singular value not counted (0 if full rank)"),
        ("tol", f64, "rank tolerance applied to the singular values"),
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    "runs": RUNS,
    "steps": STEPS,
    "evals": EVALS,
    "theorem": THEOREM,
    "layers": LAYERS,
    "probes": PROBES,
    "fdim": FDIM,
}
# Columns renamed after stores were written, table → {old name: new name}: store.check and the
# views read a file's old column as the new one, so those stores stay readable.
RENAMED: dict[str, dict[str, str]] = {"theorem": {"holds": "holds_tight"}}
# The runs table's file, run.parquet, marks a run complete; it is written last.
MARKER_TABLE = "runs"
FILE_NAMES: dict[str, str] = {t: ("run" if t == MARKER_TABLE else t) + ".parquet" for t in SCHEMAS}
RUN_STATUSES = ("completed", "diverged", "failed")
SCALES = ("demo", "cpu", "paper")  # sizes of a sweep, smallest first (runs.scale)


# The Delta table (gclab/store/table.py) holds every store table: `table` names the store table (the
# partition), `run_id` and `sweep` are shared, every other column is `<table>__<column>` (runs.loss is
# a string and evals.loss a double, probes.output a double and fdim.output a string: one name each).
PARTITION = "table"
COMMON = ("run_id", "sweep")


def physical(table: str, column: str) -> str:
    """The Delta column holding store table `table`'s `column`."""
    return column if column in COMMON else f"{table}__{column}"


STORE_DESIGN = """\
## Where runs are stored

A store (`--data DIR`) has two parts, read as one by every view:

- **The inbox**: `DIR/runs/sweep=<sweep>/run_id=<run_id>/<file>`, one Parquet file per table, written
  by the run's one writer (runner, `Recorder`, Lightning callback) under its claim and published in one
  atomic rename; the `runs` table's file is `run.parquet` and is written last: a folder without it is an
  incomplete run, invisible to the views.
- **The table**: `DIR/delta/`, one [Delta Lake](https://delta.io) table (delta-rs, the `deltalake`
  package) holding all seven store tables, partitioned by the string column `table`. Its columns are
  `table`, `run_id`, `sweep` and, for every other column of store table `t`, `t__<column>` (the Delta
  column of each column is listed below). Delta's transaction log is the only log; gclab keeps none of
  its own.

Why one Delta table and not seven: Delta has no multi-table transactions. One commit per batch of runs
makes the batch visible in all seven store tables at once or not at all, so no view has to filter
orphan rows and a kill at any point leaves no partial run. Why Delta: it is an open format (DuckDB,
Polars, Spark and pyarrow read it), `deltalake` installs from the package index alone, commits
atomically on local disk and on object storage (S3's conditional put), and compacts, checkpoints and
vacuums itself. Columns added to `gclab/store/schema.py` are merged into the table's schema by the
next commit (`schema_mode="merge"`); files written before read them as null.

`gclab compact` (and `gclab collect` at its end, once the inbox holds `COMPACT_AT` runs,
gclab/store/ingest.py) moves the inbox into
the table: it takes each run's claim without waiting (a run being written is skipped), verifies the
folder as `gclab check` does (corrupt runs, strays and copies are never committed and stay reported),
commits a batch of up to `BATCH` runs in one Delta commit (a run already in the table is replaced in that
same commit, never doubled), reads the committed row counts back, and only then removes the folders
(renamed to a dot-prefixed name first, which no read lists). It then bin-packs each partition's small
files, writes a checkpoint (so loading the table reads one checkpoint and the commits after it, however
many runs it holds) and vacuums files older than Delta's default retention of 7 days, never younger
ones. `gclab migrate` does the same but moves the folders to `DIR/migrated/`, kept until you remove them.

A view reads the table's rows of every run the inbox does not hold, plus the inbox (the inbox is
newer, so it wins): a kill between a commit and the folders' removal leaves folders identical to the
committed runs, read once, and the next compact replaces the committed copy. Reads verify only the
inbox (cached); the table's files are verified by `gclab check`, which reads each one whole and, with
`--repair`, moves a bad one to `DIR/quarantine/delta/`, removes it from the table and deletes the runs
it held part of, so the next collect runs them again. delta-rs writes no deletion vectors, so the
table's file list is exactly its live rows; a table written with them by another tool is refused.
"""


def schema_markdown() -> str:
    """The schema as Markdown, for docs/SCHEMA.md (generated, never hand-edited)."""
    out = [
        "# Run-store schema",
        "",
        "Generated from `gclab/store/schema.py` by `python -m gclab.store.schema > docs/SCHEMA.md`.",
        "",
        STORE_DESIGN,
    ]
    for table, schema in SCHEMAS.items():
        out += [
            f"## `{table}` (`{FILE_NAMES[table]}`)",
            "",
            "| column | type | Delta column | meaning |",
            "|---|---|---|---|",
        ]
        out += [
            f"| `{f.name}` | {f.type} | `{physical(table, f.name)}` | {f.metadata[b'doc'].decode()} |" for f in schema
        ]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(schema_markdown())
