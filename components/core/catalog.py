"""The catalogue: every artefact the project reads or writes, with its path, format and the DVC
stage that produces it.

Paths are relative to the project root and may hold ``${name}`` placeholders (``${dataset}``,
``${gate}``) filled in when resolved, the way ``dvc.yaml`` fills ``${item}`` and ``${data.source}``.
``stage`` is the ``dvc.yaml`` stage that declares the artefact (or the out it lies in); ``None``
means the artefact is an input (vendored data, definitions) or is written outside the DVC
pipeline (registry, serving, DAGs), named in ``doc``. ``tests/unit/core/test_catalog.py`` checks
``dvc.yaml`` against this list.

Code gets paths through :class:`DataPaths`, bound to one root (the project, or a test folder), so
that no module builds a path of its own. A folder artefact (``format="dir"``) whose files only
its writer and reader know (the FAISS index, a ranker artefact) is catalogued as the folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
#: what a placeholder value may be: one path segment (a data set, split or gate name), so that a
#: name such as ``x/../../data`` can never point an output (or an ``rmtree``) outside its folder
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


def check_name(value: str, what: str = "name") -> str:
    """``value`` if it is a safe single path segment (a data set, split or gate name), else a
    ``ValueError`` saying why: such names become parts of output paths."""
    if not _SEGMENT.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what}={value!r} is not a safe name (1-128 letters, digits, '_', '-', '.', '@', '+', "
            "starting with a letter or digit; no '/' or '..'): it becomes part of a path"
        )
    return value


@dataclass(frozen=True)
class Artefact:
    """One catalogue entry: ``path`` relative to the project root (posix, maybe with
    ``${name}`` placeholders), its ``format``, the producing DVC ``stage`` and what it is."""

    name: str
    path: str
    format: str
    stage: str | None
    doc: str

    @property
    def placeholders(self) -> frozenset[str]:
        """The ``${name}`` placeholders of ``path``."""
        return frozenset(_PLACEHOLDER.findall(self.path))

    def relative(self, **values: str) -> PurePosixPath:
        """``path`` with its placeholders filled in from ``values`` (all of them, nothing else)."""
        missing, extra = self.placeholders - values.keys(), values.keys() - self.placeholders
        if missing or extra:
            raise KeyError(
                f"artefact {self.name!r} ({self.path}) takes {sorted(self.placeholders)}, "
                f"got {sorted(values)}"
            )
        for key, value in values.items():
            check_name(str(value), f"artefact {self.name!r}: {key}")
        return PurePosixPath(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.path))

    def at(self, root: Path, **values: str) -> Path:
        """The artefact's path under ``root``."""
        return Path(root) / self.relative(**values)

    def match(self, path: str) -> dict[str, str] | None:
        """The placeholder values under which ``path`` is this artefact, or ``None``."""
        pattern, pos = [], 0
        for m in _PLACEHOLDER.finditer(self.path):
            pattern += [re.escape(self.path[pos : m.start()]), f"(?P<{m.group(1).replace('.', '__')}>[^/]+)"]
            pos = m.end()
        pattern.append(re.escape(self.path[pos:]))
        found = re.fullmatch("".join(pattern), str(PurePosixPath(path)))
        return None if found is None else {k.replace("__", "."): v for k, v in found.groupdict().items()}


def _entries(*rows: tuple[str, str, str, str | None, str]) -> dict[str, Artefact]:
    out: dict[str, Artefact] = {}
    for row in rows:
        if row[0] in out:
            raise ValueError(f"artefact {row[0]!r} catalogued twice")
        out[row[0]] = Artefact(*row)
    return out


#: name -> artefact. Grouped by the stage (or process) that writes them, in pipeline order.
CATALOG: Mapping[str, Artefact] = _entries(
    # folders and inputs
    ("params", "params.yaml", "yaml", None, "every tunable; read by every stage"),
    ("dvc_lock", "dvc.lock", "yaml", None, "DVC's record of each stage's inputs and outputs (the registry's data version)"),
    ("data", "data", "dir", None, "the folder of every data artefact"),
    ("metrics", "metrics", "dir", None, "the folder of every metrics JSON"),
    ("reports", "reports", "dir", None, "the folder of every human-readable report"),
    ("logs", "data/logs", "dir", None, "run-time logs (scores, impressions, server logs); git-ignored"),
    ("datasets", "datasets", "dir", None, "vendored real data sets, with their licences (read only)"),
    ("dataset_kuairand", "datasets/kuairand-subset", "csv", None, "vendored KuaiRand subset (read only)"),
    ("dataset_movielens", "datasets/ml-latest-small", "csv", None, "vendored MovieLens latest-small (read only)"),
    # generate, import_kuairand, import_movielens: one drop folder per source
    ("drops", "data/drops", "dir", None, "incoming drops, one folder per source"),
    ("drop", "data/drops/${dataset}", "drop", None, "the drop of one source (one of drop_synthetic/kuairand/movielens, or a test's)"),
    ("drop_synthetic", "data/drops/synthetic", "drop", "generate", "synthetic drop: events/, users, content, truth"),
    ("drop_kuairand", "data/drops/kuairand", "drop", "import_kuairand", "KuaiRand mapped onto a drop"),
    ("drop_movielens", "data/drops/movielens", "drop", "import_movielens", "MovieLens mapped onto a drop"),
    # ingest
    ("raw", "data/raw", "dir", "ingest", "validated, pseudonymised data (immutable once written)"),
    ("raw_events", "data/raw/events", "parquet", "ingest", "valid events, partitioned by event_date"),
    ("quarantine", "data/raw/quarantine", "dir", "ingest", "rejected records"),
    ("quarantine_records", "data/raw/quarantine/quarantine.parquet", "parquet", "ingest", "rejected records with reasons"),
    ("raw_users", "data/raw/users.parquet", "parquet", "ingest", "user table"),
    ("raw_content", "data/raw/content.parquet", "parquet", "ingest", "content table"),
    ("ingest_report", "data/raw/ingest_report.json", "json", "ingest", "what ingestion accepted and rejected, per reason"),
    ("metrics_ingest", "metrics/ingest.json", "json", "ingest", "ingestion counts and quality"),
    ("metrics_ingest_throughput", "metrics/ingest_throughput.json", "json", "ingest", "ingestion timings"),
    # preprocess
    ("interim", "data/interim", "dir", "preprocess", "clean tables the later stages read"),
    ("interim_events", "data/interim/events.parquet", "parquet", "preprocess", "deduplicated, sessionised events"),
    ("interim_sessions", "data/interim/sessions.parquet", "parquet", "preprocess", "one row per session"),
    ("interim_content", "data/interim/content.parquet", "parquet", "preprocess", "imputed, normalised content"),
    ("interim_users", "data/interim/users.parquet", "parquet", "preprocess", "users"),
    ("metrics_preprocess", "metrics/preprocess.json", "json", "preprocess", "preprocessing counts"),
    ("metrics_preprocess_throughput", "metrics/preprocess_throughput.json", "json", "preprocess", "preprocessing timings"),
    # features
    ("features", "data/features", "dir", "features", "point-in-time feature tables (Feast's file sources)"),
    ("features_user", "data/features/user_features.parquet", "parquet", "features", "user features"),
    ("features_content", "data/features/content_features.parquet", "parquet", "features", "content features"),
    ("features_content_profile", "data/features/content_profile.parquet", "parquet", "features", "content profile features"),
    ("features_creator", "data/features/creator_features.parquet", "parquet", "features", "creator features"),
    ("features_meta", "data/features/feature_meta.json", "json", "features", "feature tables' schema and windows"),
    ("metrics_features", "metrics/features.json", "json", "features", "feature counts"),
    ("metrics_features_throughput", "metrics/features_throughput.json", "json", "features", "feature timings"),
    # feast_apply, materialize
    ("feature_repo", "feature_repo", "dir", None, "Feast feature definitions (code)"),
    ("feature_repo_state", "feature_repo/data", "dir", None, "Feast registry, online store and configs: written by feast_apply and materialize, not tracked by DVC"),
    ("metrics_feast_apply", "metrics/feast_apply.json", "json", "feast_apply", "what feast apply registered"),
    ("metrics_materialize", "metrics/materialize.json", "json", "materialize", "what materialisation loaded"),
    ("metrics_materialize_throughput", "metrics/materialize_throughput.json", "json", "materialize", "materialisation timings"),
    # embeddings
    ("embeddings", "data/embeddings", "dir", "embeddings", "user and content vectors (embeddings.save_model)"),
    ("metrics_embeddings", "metrics/embeddings.json", "json", "embeddings", "embedding fit metrics"),
    # candidates
    ("candidates", "data/candidates", "dir", "candidates", "candidate snapshot folder"),
    ("candidates_table", "data/candidates/candidates.parquet", "parquet", "candidates", "each user's candidates with sources and scores"),
    ("faiss_index", "data/models/faiss", "faiss", "candidates", "the content index (candidates.ContentIndex)"),
    ("metrics_candidates", "metrics/candidates.json", "json", "candidates", "hold-out recall per source"),
    ("metrics_candidates_dataset", "metrics/candidates_${dataset}.json", "json", None, "hold-out recall on one data set (candidates --evaluate-all)"),
    # ranking
    ("ranker", "data/models/ranker", "dir", "ranking", "ranker artefacts, one folder per version (ranker.save)"),
    ("ranker_latest", "data/models/ranker/LATEST", "txt", "ranking", "the version the ranking stage trained last"),
    ("ranking_data", "data/ranking", "dir", "ranking", "the ranking stage's data outputs"),
    ("ranking_holdout", "data/ranking/holdout.parquet", "parquet", "ranking", "validation rows the promotion gates replay"),
    ("metrics_ranking", "metrics/ranking.json", "json", "ranking", "training set and validation metrics"),
    # tune
    ("tuning", "data/tuning", "dir", None, "Optuna studies and their chosen values"),
    ("tuning_study", "data/tuning/${study}.db", "sqlite", "tune", "the study: every trial (Optuna's SQLite storage)"),
    ("tuning_chosen", "data/tuning/${study}.json", "json", "tune", "the chosen values (params overrides) and the study's figures"),
    # evaluate, evaluate_real
    ("metrics_evaluate", "metrics/evaluate.json", "json", "evaluate", "pipeline vs baselines on data/interim"),
    ("plots_evaluate", "metrics/plots/evaluate", "csv", "evaluate", "one curve CSV per model"),
    ("report_evaluate", "reports/evaluation.md", "md", "evaluate", "evaluation report"),
    ("metrics_evaluate_dataset", "metrics/evaluate_${dataset}.json", "json", "evaluate_real", "the same on a real data set (or a brought split's name)"),
    ("plots_evaluate_dataset", "metrics/plots/evaluate_${dataset}", "csv", "evaluate_real", "curves on a real data set"),
    ("report_evaluate_dataset", "reports/evaluation_${dataset}.md", "md", "evaluate_real", "report on a real data set"),
    ("metrics_evaluate_cv", "metrics/evaluate_cv_${dataset}.json", "json", None, "k-fold cross-validation (evaluation --cv)"),
    ("feed", "reports/feed.csv", "csv", None, "batch top-K feed (evaluation --feed-users)"),
    # drift
    ("metrics_drift", "metrics/drift.json", "json", "drift", "Evidently drift summary"),
    ("report_drift", "reports/drift.html", "html", "drift", "Evidently drift report"),
    # deploy: the registry and the gates (DAGs and CLIs, outside DVC)
    ("registry", "data/registry", "dir", None, "model registry: SQLite database and artefact copies"),
    ("registry_db", "data/registry/registry.db", "sqlite", None, "the registry's database"),
    ("gate_verdict", "metrics/gate_${gate}.json", "json", None, "one promotion gate's verdict"),
    ("score_logs", "data/logs/scores", "parquet", None, "shadow/production scores appended by the live gate"),
    # online update and serving (their own processes)
    ("online_models", "data/models/online", "dir", None, "rankers continued online (online_update)"),
    ("serving_artifacts", "data/serving/artifacts", "dir", "export", "the serving artefact set (retrieval.serving_set; serving maps it)"),
    ("metrics_export", "metrics/export.json", "json", "export", "serving artefact set size"),
    ("serving_compiled", "data/serving/compiled", "dir", None, "compiled scoring heads"),
    ("online_update_lock", "data/serving/online_update.lock", "lock", None, "one online update at a time"),
    ("ratelimit", "data/serving/ratelimit.sqlite", "sqlite", None, "per-key rate-limit buckets shared by the workers"),
    ("impressions", "data/logs/impressions", "parquet", None, "served feeds (impression log)"),
    ("stream", "data/stream", "dir", None, "the file event stream: staging, quarantine, segments"),
    ("stream_events", "data/stream/events", "parquet", None, "accepted live events"),
    ("stream_index", "data/stream/commits.sqlite", "sqlite", None, "committed event batches and their event ids"),
    # experiments, off-policy evaluation and the post-promotion monitor (their own CLIs)
    ("metrics_experiments", "metrics/experiments.json", "json", "experiments", "A/B/n reports of the running experiments"),
    ("metrics_ope", "metrics/ope.json", "json", None, "off-policy estimates of the candidate on the impression log"),
    ("metrics_monitor", "metrics/monitor.json", "json", None, "post-promotion monitor verdict (rollback or hold)"),
    # KPIs of served traffic, and the user simulator (make simulate)
    ("metrics_kpis", "metrics/kpis.json", "json", "kpis", "KPIs per day and arm (DAU, retention, CTR, time spent, ...)"),
    ("kpis_prom", "metrics/kpis.prom", "prom", "kpis", "reco_kpi gauges of the last day (node_exporter textfile)"),
    ("plots_kpis", "metrics/plots/kpis.csv", "csv", "kpis", "KPIs per day and arm (DVC plots)"),
    ("simulate", "data/simulate", "dir", None, "the user simulator's records (sent log, requests)"),
    ("simulate_sent", "data/simulate/sent.parquet", "parquet", None, "every event the simulator posted, with the server's answer"),
)


def artefact(name: str) -> Artefact:
    """The catalogue entry ``name`` (a ``KeyError`` naming the catalogue for an unknown one)."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the catalogue (components/core/catalog.py)") from None


@dataclass(frozen=True)
class DataPaths:
    """The catalogue bound to one root: the project, or a test's folder."""

    root: Path = PROJECT_ROOT

    def of(self, name: str, **values: str) -> Path:
        """Where artefact ``name`` lives under this root, placeholders filled from ``values``."""
        return artefact(name).at(self.root, **values)

    # Shortcuts for the folders that tests and stages lay files into.
    @property
    def data(self) -> Path:
        return self.of("data")

    @property
    def drops(self) -> Path:
        return self.of("drops")

    @property
    def raw(self) -> Path:
        return self.of("raw")

    @property
    def raw_events(self) -> Path:
        return self.of("raw_events")

    @property
    def quarantine(self) -> Path:
        return self.of("quarantine")

    @property
    def interim(self) -> Path:
        return self.of("interim")

    @property
    def features(self) -> Path:
        return self.of("features")

    @property
    def metrics(self) -> Path:
        return self.of("metrics")

    @property
    def reports(self) -> Path:
        return self.of("reports")

    @property
    def datasets(self) -> Path:
        return self.of("datasets")
