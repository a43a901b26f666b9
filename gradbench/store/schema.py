"""The store's SQLite schema, its version, and the migration of older files.

Tables (``step`` k is the k-th optimizer step; evaluation step 0 is the initialisation):
    runs(key, status, label, task, task_knobs, optimizer, hyperparameters, lr, activation,
         init, clip, seed, steps, batch_size, device, threads, config, metric, target,
         <metrics>, nonfinite_step, nonfinite_quantity, nonfinite_layer, error, env,
         started_at, finished_at, wall_time_s, schedule, chance_loss, precision, compile,
         compile_time_s, skipped_steps)
    steps(run_key, step, loss, step_time_s, step_cpu_s, loss_scale, skipped)
    evaluations(run_key, step, train_loss, test_loss, test_accuracy, train_time_s,
                validation_loss, validation_accuracy, lr)
    layers(run_key, layer_index, layer_name, num_params)
    layer_grad_norms(run_key, step, layer_index, grad_norm)
    grad_norms(run_key, step, norm_before_clip, norm_after_clip, clip_fired)
    layer_stats(run_key, step, layer_index, grad_norm_after_clip, weight_norm, update_ratio,
                weight_grad_norm, bias_grad_norm, output_grad_norm)
    activation_sites(run_key, site_index, site_name, module, kind, units)
    activation_stats(run_key, step, site_index, dead_fraction, saturated_fraction, mean, std,
                     pinned_fraction, output_grad_norm)
    jacobian_stats(run_key, step, site_index, site_name, sv_mean, sv_min, sv_max)
    claims(key, owner, host, pid, pid_start, claimed_at, heartbeat_at)

``claims`` holds the cells being run right now, one row per cell, by the driver that claimed
it (``gradbench.store.claims``); a stored run's claim is deleted in the transaction that stores it.

Schema versions: 1 had neither ``clip_fired`` nor the layer and activation statistics tables;
2 had neither ``claims`` nor the validation columns (``evaluations.validation_loss``,
``evaluations.validation_accuracy``, ``runs.final_validation_loss``,
``runs.final_validation_accuracy``); 3 had no learning-rate schedules (``runs.schedule``,
``evaluations.lr``) and none of the statistics of the literature (the weight and bias
gradient norms apart and the back-propagated gradients, ``layer_stats.weight_grad_norm``,
``bias_grad_norm``, ``output_grad_norm``; ``activation_stats.pinned_fraction``,
``output_grad_norm``); 4 had no CPU step times (``steps.step_cpu_s``,
``runs.median_step_cpu_s``); 5 had no precision or compiled runs (``runs.precision``,
``runs.compile``, ``runs.compile_time_s``, ``runs.skipped_steps``, ``steps.loss_scale``,
``steps.skipped``: NULL in older rows, which trained in fp32, eager) and no memory costs
(``runs.optimizer_state_bytes``, ``runs.peak_memory_bytes``). Opening an older file for writing adds what it lacks
(``migrate``: additive, in one transaction, older rows untouched, their new columns NULL; it
checks every table and column whatever the file's version says, so a file that claims version 3
but lacks some of it is repaired too);
reading one leaves it as it is, and its runs read as having no such statistics.

``steps.step_time_s`` is the wall time of a CPU step (``perf_counter``) or the CUDA-event time
of a GPU step; ``steps.step_cpu_s`` the CPU time of a CPU step, by the clock the run's ``env``
names as ``step_cpu_clock`` (``thread_time`` with one torch thread, ``process_time`` with more),
NULL on CUDA; ``env`` also names the C allocator's settings as ``malloc``
(``gradbench.run.allocator``), which move a CPU step's times, and whether ``torch.einsum``
ordered its contractions (``opt_einsum``: without it a many-operand einsum, as in PSGD Kron's
step, runs left to right, up to 250x slower). ``runs.precision`` is ``fp32``, ``tf32``, ``bf16`` or ``fp16``; ``runs.compile`` 1
for a run trained with ``torch.compile``d steps, whose warm-up (the compiling steps, untimed) took
``runs.compile_time_s``. Under ``fp16``'s loss scaler, ``steps.loss_scale`` is the scale of each
step's loss, ``steps.skipped`` 1 where the scaler skipped the step (non-finite gradients after
scaling), and ``runs.skipped_steps`` their count; NULL for a run without a scaler.
``runs.optimizer_state_bytes`` is the size of the optimizer's state tensors
(``gradbench.run.memory``); ``runs.peak_memory_bytes`` the CUDA allocator's peak during the run,
NULL on the CPU. A file from a newer gradbench is refused.
"""

from __future__ import annotations

import sqlite3

__all__ = [
    "APPLICATION_ID", "SCHEMA_VERSION", "METRIC_COLUMNS", "LAYER_STATISTICS", "ACTIVATION_STATISTICS", "STATISTIC_ADDED_IN", "CHILD_TABLES",
    "create_schema", "migrate",
]

APPLICATION_ID = 0x47424E43  # "GBNC"
SCHEMA_VERSION = 6
METRIC_COLUMNS = (
    "steps_run",
    "final_train_loss",
    "final_test_loss",
    "final_test_accuracy",
    "steps_to_target",
    "time_to_target_s",
    "median_step_time_s",
    "median_step_cpu_s",  # schema 5
    "total_train_time_s",
    "grad_ratio_first_last",
    "final_validation_loss",  # schema 3
    "final_validation_accuracy",  # schema 3
    "optimizer_state_bytes",  # schema 6
    "peak_memory_bytes",  # schema 6
)

# Added in schema version 2 (created by migrate in a version-1 file), with the columns version 4
# added to them (which migrate adds to a version-2 or -3 file's tables).
_TABLES_2 = """
CREATE TABLE layer_stats (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    layer_index INTEGER NOT NULL,
    grad_norm_after_clip REAL,
    weight_norm REAL,
    update_ratio REAL,
    weight_grad_norm REAL,
    bias_grad_norm REAL,
    output_grad_norm REAL,
    PRIMARY KEY (run_key, step, layer_index)
) WITHOUT ROWID;
CREATE TABLE activation_sites (
    run_key TEXT NOT NULL REFERENCES runs(key),
    site_index INTEGER NOT NULL,
    site_name TEXT NOT NULL,
    module TEXT NOT NULL,
    kind TEXT NOT NULL,
    units INTEGER NOT NULL,
    PRIMARY KEY (run_key, site_index)
) WITHOUT ROWID;
CREATE TABLE activation_stats (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    site_index INTEGER NOT NULL,
    dead_fraction REAL,
    saturated_fraction REAL,
    mean REAL,
    std REAL,
    pinned_fraction REAL,
    output_grad_norm REAL,
    PRIMARY KEY (run_key, step, site_index)
) WITHOUT ROWID;
"""
_COLUMNS_2 = (("grad_norms", "clip_fired", "INTEGER"),)
# Added in schema version 3: the claims of running cells (not a child of runs: a claim exists
# before its run does), and the validation split's metrics (NULL where a run held none out).
_TABLES_3 = """
CREATE TABLE claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    claimed_at TEXT NOT NULL,
    heartbeat_at REAL NOT NULL
) WITHOUT ROWID;
"""
_COLUMNS_3 = (
    ("evaluations", "validation_loss", "REAL"),
    ("evaluations", "validation_accuracy", "REAL"),
    ("runs", "final_validation_loss", "REAL"),
    ("runs", "final_validation_accuracy", "REAL"),
)
# Added in schema version 4: the layer Jacobians' singular values (Glorot & Bengio 4.2), and
# learning-rate schedules (NULL: a run stored before them, constant) with the statistics below.
_TABLES_4 = """
CREATE TABLE jacobian_stats (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    site_index INTEGER NOT NULL,
    site_name TEXT NOT NULL,
    sv_mean REAL,
    sv_min REAL,
    sv_max REAL,
    PRIMARY KEY (run_key, step, site_index)
) WITHOUT ROWID;
"""
_COLUMNS_4 = (
    ("runs", "schedule", "TEXT"),
    ("runs", "chance_loss", "REAL"),
    ("evaluations", "lr", "REAL"),
    ("layer_stats", "weight_grad_norm", "REAL"),
    ("layer_stats", "bias_grad_norm", "REAL"),
    ("layer_stats", "output_grad_norm", "REAL"),
    ("activation_stats", "pinned_fraction", "REAL"),
    ("activation_stats", "output_grad_norm", "REAL"),
)
# Added in schema version 5: each CPU step's CPU time beside its wall time (NULL: a CUDA run, or a
# run stored before them), and its median.
_COLUMNS_5 = (("steps", "step_cpu_s", "REAL"), ("runs", "median_step_cpu_s", "REAL"))
# Added in schema version 6: the precision and compilation a run trained with (NULL: a run stored
# before them, fp32 and eager), the compiling warm-up's time, under a loss scaler (fp16) each
# step's scale and whether the scaler skipped it, with the count of skipped steps; and the
# optimizer's memory.
_COLUMNS_6 = (
    ("runs", "precision", "TEXT"),
    ("runs", "compile", "INTEGER"),
    ("runs", "compile_time_s", "REAL"),
    ("runs", "skipped_steps", "INTEGER"),
    ("steps", "loss_scale", "REAL"),
    ("steps", "skipped", "INTEGER"),
    # What the optimizer costs in memory (NULL: a run stored before them; peak memory also NULL
    # on the CPU, where no allocator counts it).
    ("runs", "optimizer_state_bytes", "INTEGER"),
    ("runs", "peak_memory_bytes", "INTEGER"),
)
# Each version's additions, in order; migrate checks every one on each open for writing.
_MIGRATIONS = ((2, _TABLES_2, _COLUMNS_2), (3, _TABLES_3, _COLUMNS_3), (4, _TABLES_4, _COLUMNS_4), (5, "", _COLUMNS_5), (6, "", _COLUMNS_6))
# Per-layer and per-site statistics beyond the gradient norm, with the schema version that added
# each (a file older than that reads them as NULL).
LAYER_STATISTICS = ("grad_norm_after_clip", "weight_norm", "update_ratio", "weight_grad_norm", "bias_grad_norm", "output_grad_norm")
ACTIVATION_STATISTICS = ("dead_fraction", "saturated_fraction", "mean", "std", "pinned_fraction", "output_grad_norm")
STATISTIC_ADDED_IN = {column: version for version, _, columns in _MIGRATIONS for table, column, _ in columns if table in ("layer_stats", "activation_stats")}

_SCHEMA = f"""
CREATE TABLE runs (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('done', 'diverged', 'failed')),
    label TEXT NOT NULL,
    task TEXT NOT NULL,
    task_knobs TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    lr REAL NOT NULL,
    activation TEXT,
    init TEXT,
    clip TEXT NOT NULL,
    seed INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    batch_size INTEGER,
    device TEXT NOT NULL,
    threads INTEGER NOT NULL,
    config TEXT NOT NULL,
    metric TEXT,
    target REAL,
    {", ".join(f"{name} {'INTEGER' if name.startswith('steps') or name.endswith('_bytes') else 'REAL'}" for name in METRIC_COLUMNS)},
    nonfinite_step INTEGER,
    nonfinite_quantity TEXT,
    nonfinite_layer TEXT,
    error TEXT,
    env TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    wall_time_s REAL NOT NULL,
    schedule TEXT,
    chance_loss REAL,
    precision TEXT,
    compile INTEGER,
    compile_time_s REAL,
    skipped_steps INTEGER
);
CREATE TABLE steps (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    loss REAL,
    step_time_s REAL,
    step_cpu_s REAL,
    loss_scale REAL,
    skipped INTEGER,
    PRIMARY KEY (run_key, step)
) WITHOUT ROWID;
CREATE TABLE evaluations (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    train_loss REAL,
    test_loss REAL,
    test_accuracy REAL,
    train_time_s REAL NOT NULL,
    validation_loss REAL,
    validation_accuracy REAL,
    lr REAL,
    PRIMARY KEY (run_key, step)
) WITHOUT ROWID;
CREATE TABLE layers (
    run_key TEXT NOT NULL REFERENCES runs(key),
    layer_index INTEGER NOT NULL,
    layer_name TEXT NOT NULL,
    num_params INTEGER NOT NULL,
    PRIMARY KEY (run_key, layer_index)
) WITHOUT ROWID;
CREATE TABLE layer_grad_norms (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    layer_index INTEGER NOT NULL,
    grad_norm REAL,
    PRIMARY KEY (run_key, step, layer_index)
) WITHOUT ROWID;
CREATE TABLE grad_norms (
    run_key TEXT NOT NULL REFERENCES runs(key),
    step INTEGER NOT NULL,
    norm_before_clip REAL,
    norm_after_clip REAL,
    clip_fired INTEGER,
    PRIMARY KEY (run_key, step)
) WITHOUT ROWID;
""" + _TABLES_2 + _TABLES_3 + _TABLES_4
CHILD_TABLES = ("steps", "evaluations", "layers", "layer_grad_norms", "grad_norms", "layer_stats", "activation_sites", "activation_stats", "jacobian_stats")


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables and mark the file, in one transaction: a kill half-way leaves an empty
    file, never a half-made one, and two processes creating the same file at once both succeed."""
    schema = _SCHEMA.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ")
    connection.executescript(
        f"BEGIN IMMEDIATE;\n{schema}\nPRAGMA application_id = {APPLICATION_ID};\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
    )


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the file to ``SCHEMA_VERSION``: add every table and column of each version's
    additions that the file lacks, whatever its ``user_version`` says (an intermediate build
    wrote version 3 with the claims table but without the validation columns). One transaction
    (a kill half-way leaves the file as it was; two processes migrating at once take turns, and
    the second finds nothing to do); a file that has everything costs a few PRAGMA reads."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        existing = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for _added_in, tables, columns in _MIGRATIONS:
            for statement in tables.split(";"):
                name = statement.split("(", 1)[0].replace("CREATE TABLE", "").strip()
                if name and name not in existing:
                    connection.execute(statement)
                    existing.add(name)
            for table, column, kind in columns:
                if column not in {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}:
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        if version < SCHEMA_VERSION:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
