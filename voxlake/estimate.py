"""Know the bill before paying it: audio durations from media headers, prices, run budgets.

Durations are read from each file's header with mutagen (a few KB per file; S3 objects through
ranged reads), never by decoding, and never with an AssemblyAI request. Prices are a documented
table of list prices per audio hour, by speech model and by billed feature
(voxlake/data/prices.json), that the user overrides (``--price-table prices.json``);
they are estimates, not an invoice (docs/ledger.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources

from voxlake.manifest import DEFAULT_SPEECH_MODELS, MediaItem, SourceKind, TranscriptionOptions
from voxlake.manifest.options import API_DEFAULTS
from voxlake.storage import S3Options, s3_filesystem, s3_path


def _list_prices() -> tuple[dict[str, float], dict[str, float]]:
    # A data file, not code: its source and date travel with it, and a user can read (and copy
    # into a --price-table file) what voxlake assumes.
    text = resources.files("voxlake").joinpath("data", "prices.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return dict(data["speech_models"]), dict(data["features"])


_MODEL_PRICES, _FEATURE_PRICES = _list_prices()
#: USD per audio hour, AssemblyAI's published pre-recorded list prices (voxlake/data/prices.json,
#: with their source and date): by speech model (the first of ``speech_models``) and by billed
#: feature (an option's name, or a speech understanding request's: ``translation``). Override
#: with a JSON object ``{"name": price, ...}``.
DEFAULT_PRICES_USD_PER_HOUR: dict[str, float] = {**_MODEL_PRICES, **_FEATURE_PRICES}
_HEADER_BLOCK = 64 * 1024  # ranged reads of S3 objects while mutagen parses the header


def requested_features(options: TranscriptionOptions) -> list[str]:
    """The features an item's options turn on, by the names the price table uses.

    A boolean option set to true whose API default is false (``sentiment_analysis``), a
    non-empty ``keyterms_prompt``, and the kind of a ``speech_understanding`` request.
    Whether a feature is billed is the price table's to say.
    """
    features = []
    for name, value in options.to_request_params().items():
        turned_on = value is True and API_DEFAULTS.get(name) is False
        if turned_on or (name == "keyterms_prompt" and value):
            features.append(name)
        elif name == "speech_understanding":
            features.extend(value["request"])
    return features


def load_prices(table: str | Mapping[str, float] | None) -> dict[str, float]:
    """The default price table updated with ``table`` (a mapping or a JSON file's path)."""
    prices = dict(DEFAULT_PRICES_USD_PER_HOUR)
    if table is None:
        return prices
    if isinstance(table, str):
        try:
            with open(table, encoding="utf-8") as fh:
                table = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"price table {table!r} could not be read ({exc}); write a JSON object such as "
                '{"universal-2": 0.15, "sentiment_analysis": 0.02}'
            ) from None
    if not isinstance(table, Mapping) or not all(
        isinstance(v, int | float) and v >= 0 for v in table.values()
    ):
        raise ValueError(
            "a price table maps speech models and features to USD per audio hour: "
            '{"universal-2": 0.15, "sentiment_analysis": 0.02}'
        )
    prices.update({str(k): float(v) for k, v in table.items()})
    return prices


def media_duration_s(item: MediaItem, s3: S3Options | None = None) -> float | None:
    """The audio duration in the media header, or None (http sources, unreadable headers)."""
    import mutagen

    try:
        if item.kind is SourceKind.local:
            media = mutagen.File(item.source)
        elif item.kind is SourceKind.s3:
            fs = s3_filesystem(s3)
            with fs.open(
                s3_path(item.source), "rb", block_size=_HEADER_BLOCK, cache_type="readahead"
            ) as fh:
                media = mutagen.File(fh)
        else:
            return None
    except Exception:  # mutagen raises many types on what it cannot parse: "unknown"
        return None
    length = getattr(getattr(media, "info", None), "length", None)
    return float(length) if length else None


def media_durations(
    items: Sequence[MediaItem], s3: S3Options | None = None
) -> dict[str, float | None]:
    """``media_id -> duration`` for many items, headers read concurrently."""
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        durations = pool.map(lambda i: media_duration_s(i, s3), items)
        return {item.media_id: d for item, d in zip(items, durations, strict=True)}


def speech_model_of(item: MediaItem) -> str:
    models = item.options.speech_models or DEFAULT_SPEECH_MODELS
    return models[0]


@dataclass
class Estimate:
    """What a run would do and cost; ``voxlake run --dry-run`` prints it."""

    new: int = 0  # would be submitted for the first time
    retried: int = 0  # would be submitted again (an earlier attempt failed)
    resumed: int = 0  # in flight in an earlier run: polled and collected, not paid again
    skipped_done: int = 0
    skipped_failed: int = 0  # their job failed before; --retry-failed submits them again
    deferred: int = 0  # over the run's budget
    invalid: int = 0  # bad manifest rows
    audio_hours: float = 0.0  # of what would be submitted (new + retried)
    unknown_duration: int = 0  # items whose header gave no duration (counted as 0 h)
    hours_by_model: dict[str, float] = field(default_factory=dict)
    cost_by_model_usd: dict[str, float] = field(default_factory=dict)
    prices_usd_per_hour: dict[str, float] = field(default_factory=dict)
    # Audio hours of the items that request each feature (sentiment_analysis, translation...).
    hours_by_feature: dict[str, float] = field(default_factory=dict)
    cost_by_feature_usd: dict[str, float] = field(default_factory=dict)

    @property
    def to_submit(self) -> int:
        return self.new + self.retried

    @property
    def cost_usd(self) -> float:
        return sum(self.cost_by_model_usd.values()) + sum(self.cost_by_feature_usd.values())

    def add_submission(self, item: MediaItem, duration_s: float | None) -> None:
        if duration_s is None:
            self.unknown_duration += 1
            return
        hours = duration_s / 3600.0
        model = speech_model_of(item)
        self.audio_hours += hours
        self.hours_by_model[model] = self.hours_by_model.get(model, 0.0) + hours
        for feature in requested_features(item.options):
            self.hours_by_feature[feature] = self.hours_by_feature.get(feature, 0.0) + hours

    def price(self) -> None:
        for model, hours in self.hours_by_model.items():
            if model in self.prices_usd_per_hour:
                self.cost_by_model_usd[model] = hours * self.prices_usd_per_hour[model]
        # A feature with no price is one AssemblyAI does not bill separately (punctuation,
        # multichannel...), or one the table does not know: it adds nothing.
        for feature, hours in self.hours_by_feature.items():
            if feature in self.prices_usd_per_hour:
                self.cost_by_feature_usd[feature] = hours * self.prices_usd_per_hour[feature]

    def bill_lines(self) -> list[str]:
        """The cost by speech model, then by requested feature, then the total."""
        out = []
        for model, hours in sorted(self.hours_by_model.items()):
            cost = self.cost_by_model_usd.get(model)
            price = self.prices_usd_per_hour.get(model)
            out.append(
                f"  {model}: {hours:.3f} h x "
                + (f"${price:.2f}/h = ${cost:.2f}" if cost is not None else "no price known")
            )
        for feature, cost in sorted(self.cost_by_feature_usd.items()):
            hours, price = self.hours_by_feature[feature], self.prices_usd_per_hour[feature]
            out.append(f"  + {feature}: {hours:.3f} h x ${price:.2f}/h = ${cost:.2f}")
        out.append(f"estimated cost ${self.cost_usd:.2f} (list prices; --price-table overrides)")
        return out

    def lines(self) -> list[str]:
        out = [
            f"would submit {self.to_submit} items ({self.new} new, {self.retried} retried), "
            f"{self.audio_hours:.4f} audio hours ({self.audio_hours * 3600:.1f} s)"
            + (f" (+{self.unknown_duration} of unknown duration)" if self.unknown_duration else ""),
            f"would resume {self.resumed} in-flight items (already paid), skip "
            f"{self.skipped_done} done and {self.skipped_failed} failed before, defer "
            f"{self.deferred} over the budget; {self.invalid} invalid rows",
        ]
        return out + self.bill_lines()


def run_bill(
    completed: Iterable[tuple[MediaItem, float | None]], prices: Mapping[str, float] | None
) -> tuple[str, ...]:
    """What the completed ``(item, audio duration in s)`` of a run cost at list prices, as the
    dry run says it (:meth:`Estimate.bill_lines`); nothing if none completed."""
    bill = Estimate(prices_usd_per_hour=load_prices(prices))
    for item, duration_s in completed:
        bill.add_submission(item, duration_s)
    bill.price()
    return tuple(bill.bill_lines()) if bill.hours_by_model else ()


def check_budget(max_audio_hours: float | None) -> None:
    """Refuse a budget that admits nothing: zero, negative or not a number (ValueError)."""
    if max_audio_hours is not None and not (max_audio_hours > 0 and math.isfinite(max_audio_hours)):
        raise ValueError(
            f"max_audio_hours must be more than 0 (got {max_audio_hours:g}): it is the audio a run "
            "may submit; leave it out for no budget"
        )


def within_budget(
    items: Iterable[MediaItem], durations: Mapping[str, float | None], max_audio_hours: float
) -> tuple[list[MediaItem], list[MediaItem]]:
    """Split items into those admitted under ``max_audio_hours`` and those deferred.

    In the order given (the manifest's), each item that still fits is admitted; one that does
    not is deferred and admission goes on, so later, shorter items still use the budget. The
    order is the user's: a nightly run over a growing folder takes the earliest-listed work
    first, and a deferred item is first in line the next night (smallest-first would leave a
    long file waiting for as long as short ones keep arriving). An item of unknown duration
    counts as 0 h: the budget is about what the headers say.
    """
    check_budget(max_audio_hours)
    admitted: list[MediaItem] = []
    over: list[MediaItem] = []
    hours = 0.0
    for item in items:
        duration = (durations.get(item.media_id) or 0.0) / 3600.0
        if hours + duration > max_audio_hours + 1e-9:
            over.append(item)
            continue
        hours += duration
        admitted.append(item)
    return admitted, over


def deferral_reason(duration_s: float | None, max_audio_hours: float) -> str:
    """Why an item was deferred, as the ledger records it; says when no run can admit it."""
    if duration_s is not None and duration_s / 3600.0 > max_audio_hours + 1e-9:
        return (
            f"not submitted: {duration_s / 3600.0:.4g} audio hours, longer than the run's whole "
            f"budget of {max_audio_hours:g}; raise --max-audio-hours to transcribe it"
        )
    return f"not submitted: the run's budget of {max_audio_hours:g} audio hours was spent"


def estimate_run(
    items: Sequence[MediaItem],
    output: str,
    *,
    run_id: str,
    invalid: int = 0,
    s3: S3Options | None = None,
    force: bool = False,
    retry_failed: bool = False,
    max_audio_hours: float | None = None,
    prices: str | Mapping[str, float] | None = None,
) -> Estimate:
    """What a run with these choices would do, read from the ledger and the media headers.

    Sends no AssemblyAI request and writes nothing (the ledger is opened read-only).
    """
    from voxlake.lake.ledger import Ledger, plan

    ledger = Ledger.open(output, run_id=run_id, s3=s3, read_only=True)
    planned = plan(items, ledger.states, force=force, retry_failed=retry_failed)
    estimate = Estimate(invalid=invalid, prices_usd_per_hour=load_prices(prices))
    submit = [p for p in planned if p.action == "new"]
    durations = media_durations([p.item for p in submit], s3)
    admitted = [p.item for p in submit]
    if max_audio_hours is not None:
        admitted, over = within_budget(admitted, durations, max_audio_hours)
        estimate.deferred = len(over)
    admitted_ids = {i.media_id for i in admitted}
    for p in planned:
        if p.action == "resume":
            estimate.resumed += 1
        elif p.action == "skip_done":
            estimate.skipped_done += 1
        elif p.action == "skip_failed":
            estimate.skipped_failed += 1
        elif p.item.media_id in admitted_ids:
            estimate.retried += p.retry
            estimate.new += not p.retry
            estimate.add_submission(p.item, durations.get(p.item.media_id))
    estimate.price()
    return estimate
