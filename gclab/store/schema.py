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


def schema_markdown() -> str:
    """The schema as Markdown, for docs/SCHEMA.md (generated, never hand-edited)."""
    out = [
        "# Run-store schema",
        "",
        "Generated from `gclab/store/schema.py` by `python -m gclab.store.schema > docs/SCHEMA.md`.",
        "Layout: `data/runs/sweep=<sweep>/run_id=<run_id>/<file>`, one file per table; "
        "the `runs` table's file is `run.parquet` and is written last: a folder without it "
        "is an incomplete run, invisible to the views.",
        "",
    ]
    for table, schema in SCHEMAS.items():
        out += [f"## `{table}` (`{FILE_NAMES[table]}`)", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{f.name}` | {f.type} | {f.metadata[b'doc'].decode()} |" for f in schema]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(schema_markdown())
