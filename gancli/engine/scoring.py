"""Usage: report = evaluate(EvaluateJob(run="runs/cgan-digits-001", n=10_000))

Scoring a generator: n samples (classes balanced for conditional models) and real
held-out images go through one extractor; the features give FID, KID, precision and
recall, the class probabilities an Inception-Score-style score, the class histogram,
coverage and, for conditional models, how many samples show the class asked for. The
same figures for real training images against the held-out ones are the floor: what a
perfect generator would get with this many samples.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gancli.engine import metrics
from gancli.engine.config import Config
from gancli.engine.data import ImageSet
from gancli.engine.errors import CheckpointError, ConfigError
from gancli.engine.evaluator import (
    Evaluator,
    Extractor,
    InceptionExtractor,
    Log,
    evaluation_splits,
    load_evaluator,
)
from gancli.engine.files import atomic_write, check_writable, keep_aside
from gancli.engine.generator import (
    SampleRequest,
    StageReport,
    TrainedGenerator,
    load_generator,
    sample_batches,
)
from gancli.engine.limits import check_memory
from gancli.engine.records import read_evaluations
from gancli.engine.runs import EVAL_LOCK_NAME, RunDir, hold_lock, resolve_checkpoint, runs_root
from gancli.engine.runtime import use_device

EXTRACTORS = ("evaluator", "inception")
CONFIDENT = 0.9  # class probability above which the evaluator reads an image clearly
MIN_SAMPLES = 50  # below this, KID subsets and nearest-neighbour radii mean little


@dataclass
class Scores:
    """The figures of one set of images against the held-out real ones."""

    fid: float
    coverage: int  # classes with at least half their real share of the images
    kid: float | None = None  # the rest: full scores only (not --eval-every's)
    kid_std: float | None = None
    inception_score: float | None = None  # from the evaluator's class probabilities
    inception_score_std: float | None = None
    precision: float | None = None
    recall: float | None = None
    class_shares: list[float] | None = None
    confident: float | None = None  # share the evaluator reads as one class, p >= CONFIDENT
    accuracy: float | None = None  # conditional models (and real images): right class
    accuracy_per_class: dict[str, float] | None = None
    source: str | None = None  # the floor's: which real images


@dataclass
class EvalReport:
    """What `gancli evaluate` measured, with what, and where it was saved."""

    checkpoint: str
    epoch: int
    ema: bool
    n: int
    seed: int
    extractor: str
    extractor_sha256: str
    evaluator_sha256: str
    evaluator_accuracy: float
    dataset: str
    reference: str  # the held-out real images scored against
    class_names: list[str]
    model: Scores
    floor: Scores | None = None  # real training images scored the same way
    seconds: float = 0.0
    saved_to: str | None = None  # the eval.json it was appended to

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json and eval.json; figures that were not measured are left out."""
        out = _without_none(dataclasses.asdict(self))
        for key in ("model", "floor"):
            if key in out:
                out[key] = _without_none(out[key])
        return out


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class EvalRequest:
    n: int = 10_000  # generated images (and at most this many real ones)
    seed: int = 0  # noise and the real-image subset
    batch_size: int = 500  # images per generator forward pass
    extractor: str = "evaluator"  # evaluator | inception (FID, KID, IS, precision, recall)
    floor: bool = True  # also score real training images against the held-out ones


@dataclass(frozen=True)
class EvaluateJob:
    """What `gancli evaluate` is asked for, as typed."""

    run: str | None = None  # run folder or checkpoint (None: the latest run under `runs`)
    runs: str | None = None  # runs root (None: $GANCLI_RUNS_DIR or ./runs)
    request: EvalRequest = EvalRequest()
    ema: bool | None = None  # score the EMA generator (None: if the run kept one)
    data_dir: str | None = None  # data root to search first for the real images
    device: str = "auto"


def evaluate(
    job: EvaluateJob,
    log: Log | None = None,
    progress: StageReport | None = None,
) -> EvalReport:
    """`gancli evaluate`: score the generator and, for a run folder, add the scores to its
    eval.json (checked writable first, not after minutes of scoring)."""
    check_request(job.request)
    run, checkpoint = resolve_checkpoint(job.run, runs_root(job.runs))
    if run is not None:
        check_writable(run.path, "eval.json")
    trained = load_generator(checkpoint, use_device(job.device), job.ema)
    report = score_generator(trained, job.request, job.data_dir, log, progress)
    if run is not None:
        append_record(run, report, log)
        report.saved_to = str(run.evaluations)
    return report


class Scorer:
    """Held-out real images embedded once; scores any set of images against them."""

    def __init__(
        self,
        evaluator: Evaluator,
        heldout: ImageSet,
        extractor: Extractor | None = None,
        n: int = 10_000,
    ):
        self.evaluator, self.extractor = evaluator, extractor or evaluator
        self.reference = self.extractor.embed(heldout.images[:n])
        self.reference_shares = metrics.class_histogram(
            heldout.labels[:n].cpu(), len(evaluator.class_names)
        )

    def score(
        self,
        images: torch.Tensor,
        asked: torch.Tensor | None = None,
        full: bool = True,
        seed: int = 0,
    ) -> Scores:
        """Metrics of uint8 images; `asked` holds the class each image should show, if any.

        `full=False` gives only FID and class coverage (the cheap ones, for training).
        """
        classes = self.evaluator.embed(images)
        features = classes if self.extractor is self.evaluator else self.extractor.embed(images)
        shares = metrics.class_histogram(classes.predicted, len(self.evaluator.class_names))
        scores = Scores(
            fid=metrics.frechet_distance(self.reference.features, features.features),
            coverage=metrics.covered_classes(shares, self.reference_shares),
        )
        if full:
            reference, fake = self.reference.features, features.features
            scores.kid, scores.kid_std = metrics.kernel_distance(reference, fake, seed=seed)
            scores.inception_score, scores.inception_score_std = metrics.inception_score(
                features.probs
            )
            scores.precision, scores.recall = metrics.precision_recall(reference, fake)
            scores.class_shares = [round(s, 4) for s in shares]
            clear = classes.probs.max(dim=1).values >= CONFIDENT
            scores.confident = float(clear.float().mean())
        if asked is not None:
            hits = classes.predicted == asked
            scores.accuracy = float(hits.float().mean())
            scores.accuracy_per_class = {
                name: round(float(hits[asked == i].float().mean()), 4)
                for i, name in enumerate(self.evaluator.class_names)
                if (asked == i).any()
            }
        return scores


def check_request(request: EvalRequest) -> None:
    if request.n < MIN_SAMPLES:
        raise ConfigError(f"-n {request.n}: evaluation needs at least {MIN_SAMPLES} samples")
    if request.extractor not in EXTRACTORS:
        raise ConfigError(f"--extractor {request.extractor!r}: use {' or '.join(EXTRACTORS)}")


FEATURES = {"evaluator": 128, "inception": 2048}  # floats per image in each feature space
CLASS_PROBS = 64  # floats per image for class probabilities and labels, generously few


def evaluation_memory(request: EvalRequest, image_shape: tuple[int, int, int]) -> int:
    """A low estimate of the bytes `evaluate` holds at once: the samples and as many real
    images (uint8), their features and class probabilities, and one block of the pairwise
    distances behind precision and recall (metrics.DISTANCE_CHUNK rows of n floats)."""
    per_image = math.prod(image_shape) + 4 * (FEATURES[request.extractor] + CLASS_PROBS)
    sets = 2 if request.floor else 1  # the samples, and the real training images
    return int(request.n * (sets * per_image + 4 * metrics.DISTANCE_CHUNK))


def generated_images(
    trained: TrainedGenerator,
    n: int,
    seed: int,
    batch_size: int = 500,
    progress: StageReport | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n uint8 samples; for a conditional model the classes in equal blocks, and those labels."""
    request = SampleRequest(n=n, seed=seed, batch_size=batch_size)
    images, labels = zip(*sample_batches(trained, request, progress), strict=True)
    return torch.cat(images), torch.cat(labels) if trained.conditional else None


def score_generator(
    trained: TrainedGenerator,
    request: EvalRequest,
    data_dir: str | Path | None = None,
    log: Log | None = None,
    progress: StageReport | None = None,
) -> EvalReport:
    """Score a trained generator (and the real-data floor) with n samples; `progress`
    hears of each stage as it starts, and of each chunk of samples generated."""
    check_request(request)
    stage = progress or (lambda *args: None)
    check_memory(
        evaluation_memory(request, trained.image_shape),
        f"-n {request.n:,}: scoring {request.n:,} samples",
        "lower -n (10,000 is the usual figure)",
        trained.device,
    )
    clock = time.perf_counter()
    device = trained.device
    stage("loading the evaluator and the real images", 0, None)
    evaluator = load_evaluator(trained.config.data, data_dir, device, log)
    train, heldout = evaluation_splits(trained.config.data, data_dir)
    extractor = InceptionExtractor(device) if request.extractor == "inception" else None
    stage("embedding the held-out real images", 0, None)
    scorer = Scorer(evaluator, heldout, extractor, request.n)
    images, asked = generated_images(trained, request.n, request.seed, request.batch_size, progress)
    stage("scoring the samples", 0, None)
    report = EvalReport(
        checkpoint=str(trained.checkpoint),
        epoch=trained.epoch,
        ema=trained.uses_ema,
        n=request.n,
        seed=request.seed,
        extractor=scorer.extractor.name,
        extractor_sha256=scorer.extractor.sha256,
        evaluator_sha256=evaluator.sha256,
        evaluator_accuracy=round(evaluator.accuracy, 5),
        dataset=evaluator.dataset,
        reference=f"{heldout.name} {heldout.split} ({min(len(heldout), request.n)} images)",
        class_names=list(evaluator.class_names),
        model=scorer.score(images, asked, seed=request.seed),
    )
    if request.floor:
        stage("scoring real training images (the floor)", 0, None)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(request.seed))
        pick = pick[: request.n]
        reals, labels = train.images[pick].cpu(), train.labels[pick].cpu()
        report.floor = scorer.score(reals, labels, seed=request.seed)
        report.floor.source = f"{train.name} {train.split} ({len(pick)} images)"
    report.seconds = round(time.perf_counter() - clock, 2)
    return report


def append_record(run: RunDir, report: EvalReport, log: Log | None = None) -> None:
    """Add one evaluation to the run's eval.json (a JSON list), atomically, holding the
    run's evaluation lock so that two evaluations at once both land. A file that is not
    such a list is kept beside it, as eval.json.unreadable (-2, -3, ... when taken)."""
    busy = f"another gancli evaluate (process {{owner}}) is still writing {run.evaluations}"
    with hold_lock(run.path / EVAL_LOCK_NAME, busy, wait=30.0):
        try:
            records = read_evaluations(run.evaluations)
        except CheckpointError as exc:
            aside = keep_aside(run.evaluations, "unreadable")
            records = []
            if log is not None:
                log(f"warning: {exc}; kept as {aside.name}, starting a new eval.json")
        records.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **report.to_dict()})
        with atomic_write(run.evaluations) as tmp:
            tmp.write_text(json.dumps(records, indent=1) + "\n")


class ProgressScorer:
    """FID and class coverage (and accuracy, if conditional) of a generator while it trains.

    The evaluator and the held-out images are loaded on the first check and kept. Every
    check uses the same noise (training.seed) and `training.eval_samples` samples, so the
    figures of one run compare across epochs; with fewer samples than `evaluate`'s default
    their FID reads higher (FID is biased upwards at small n).
    """

    def __init__(
        self,
        config: Config,
        data: ImageSet,
        data_dir: str | Path | None,
        log: Log | None = None,
        cluster_prior: torch.Tensor | None = None,
    ):
        self.config, self.data, self.data_dir, self.log = config, data, data_dir, log
        self.cluster_prior = cluster_prior
        self.scorer: Scorer | None = None

    def score(self, generator: nn.Module, epoch: int) -> dict[str, Any]:
        device = next(generator.parameters()).device
        n = self.config.training.eval_samples
        if self.scorer is None:
            evaluator = load_evaluator(self.config.data, self.data_dir, device, self.log)
            _, heldout = evaluation_splits(self.config.data, self.data_dir)
            self.scorer = Scorer(evaluator, heldout, n=n)
        trained = TrainedGenerator(
            generator,
            self.config,
            self.data.class_names,
            self.data.image_shape,
            Path(),
            False,
            epoch,
            self.cluster_prior,
        )
        images, asked = generated_images(trained, n, self.config.training.seed)
        scores = self.scorer.score(images, asked, full=False)
        result: dict[str, Any] = {"fid": round(scores.fid, 5), "coverage": scores.coverage}
        if scores.accuracy is not None:
            result["accuracy"] = round(scores.accuracy, 5)
        return result

    def describe(self, record: dict[str, Any]) -> str:
        classes = len(self.data.class_names)
        line = f"epoch {record['epoch']}: FID {record['fid']:.3g}, "
        line += f"{record['coverage']}/{classes} classes covered"
        if "accuracy" in record:
            line += f", class accuracy {100 * record['accuracy']:.1f}%"
        return line + f" (n={self.config.training.eval_samples})"
