"""Know the bill before paying it: audio durations from media headers, prices, run budgets.

Durations are read from each file's header with mutagen (a few KB per file; S3 objects through
ranged reads), never by decoding, and never with an AssemblyAI request. Prices are a documented
table of list prices per audio hour that the user overrides (``--price-table prices.json``);
they are estimates, not an invoice (docs/ledger.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from voxlake.manifest import DEFAULT_SPEECH_MODELS, MediaItem, SourceKind
from voxlake.storage import S3Options, s3_filesystem, s3_path

#: USD per audio hour, AssemblyAI's published pre-recorded list prices (Nov 2026); the key is the
#: first model of ``speech_models``. Override with a JSON object ``{"model": price, ...}``.
DEFAULT_PRICES_USD_PER_HOUR: dict[str, float] = {
    "universal-2": 0.15,
    "universal": 0.15,
    "universal-3-pro": 0.21,
    "slam-1": 0.27,
    "best": 0.37,
    "nano": 0.12,
}
_HEADER_BLOCK = 64 * 1024  # ranged reads of S3 objects while mutagen parses the header


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
                '{"universal-2": 0.15}'
            ) from None
    if not isinstance(table, Mapping) or not all(
        isinstance(v, int | float) and v >= 0 for v in table.values()
    ):
        raise ValueError('a price table maps model names to USD per hour: {"universal-2": 0.15}')
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

    @property
    def to_submit(self) -> int:
        return self.new + self.retried

    @property
    def cost_usd(self) -> float:
        return sum(self.cost_by_model_usd.values())

    def add_submission(self, item: MediaItem, duration_s: float | None) -> None:
        if duration_s is None:
            self.unknown_duration += 1
            return
        hours = duration_s / 3600.0
        model = speech_model_of(item)
        self.audio_hours += hours
        self.hours_by_model[model] = self.hours_by_model.get(model, 0.0) + hours

    def price(self) -> None:
        unknown = [m for m in self.hours_by_model if m not in self.prices_usd_per_hour]
        for model, hours in self.hours_by_model.items():
            if model not in unknown:
                self.cost_by_model_usd[model] = hours * self.prices_usd_per_hour[model]

    def lines(self) -> list[str]:
        out = [
            f"would submit {self.to_submit} items ({self.new} new, {self.retried} retried), "
            f"{self.audio_hours:.4f} audio hours ({self.audio_hours * 3600:.1f} s)"
            + (f" (+{self.unknown_duration} of unknown duration)" if self.unknown_duration else ""),
            f"would resume {self.resumed} in-flight items (already paid), skip "
            f"{self.skipped_done} done and {self.skipped_failed} failed before, defer "
            f"{self.deferred} over the budget; {self.invalid} invalid rows",
        ]
        for model, hours in sorted(self.hours_by_model.items()):
            cost = self.cost_by_model_usd.get(model)
            price = self.prices_usd_per_hour.get(model)
            out.append(
                f"  {model}: {hours:.3f} h x "
                + (f"${price:.2f}/h = ${cost:.2f}" if cost is not None else "no price known")
            )
        out.append(f"estimated cost ${self.cost_usd:.2f} (list prices; --price-table overrides)")
        return out


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
