"""The campaign calendar (``conf/campaign_calendar.yaml``): promotions whose KPI rises are
expected, so anomaly detection does not page on them (a drop during a promotion still pages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lakehouse import conf_dir

CALENDAR_PATH = conf_dir() / "campaign_calendar.yaml"


@dataclass(frozen=True)
class Campaign:
    """A promotion on the calendar (one-off or weekly)."""

    name: str
    kpis: tuple[str, ...]
    uplift: float
    start: datetime | None = None
    end: datetime | None = None
    weekday: int | None = None
    weekly_start: timedelta | None = None
    weekly_minutes: int = 0

    def active(self, timestamps: pd.Series) -> np.ndarray:
        """Whether each timestamp falls in the campaign."""
        ts = pd.to_datetime(timestamps, utc=True)
        if self.start is not None and self.end is not None:
            return ((ts >= self.start) & (ts < self.end)).to_numpy()
        offset = ts - ts.dt.normalize()
        return ((ts.dt.weekday == self.weekday) & (offset >= self.weekly_start)
                & (offset < self.weekly_start + timedelta(minutes=self.weekly_minutes))).to_numpy()  # fmt: skip


@dataclass(frozen=True)
class CampaignCalendar:
    """The known promotions of ``conf/campaign_calendar.yaml``."""

    campaigns: tuple[Campaign, ...] = ()

    @classmethod
    def load(cls, path: Path = CALENDAR_PATH) -> CampaignCalendar:
        """Read the calendar (an empty one when the file is absent)."""
        if not path.exists():
            return cls()
        raw = yaml.safe_load(path.read_text()) or {}
        out = []
        for c in raw.get("campaigns", []):
            weekly = c.get("weekly")
            if weekly:
                hours, minutes = (int(x) for x in str(weekly["start"]).split(":"))
                out.append(Campaign(c["name"], tuple(c["kpis"]), float(c.get("uplift", 1.0)), weekday=int(weekly["weekday"]),
                                    weekly_start=timedelta(hours=hours, minutes=minutes), weekly_minutes=int(weekly["minutes"])))  # fmt: skip
            else:
                out.append(Campaign(c["name"], tuple(c["kpis"]), float(c.get("uplift", 1.0)),
                                    start=pd.Timestamp(c["start"]).to_pydatetime(), end=pd.Timestamp(c["end"]).to_pydatetime()))  # fmt: skip
        return cls(tuple(out))

    def expected_rise(self, kpi: str, timestamps: pd.Series) -> np.ndarray:
        """Whether a rise of ``kpi`` at each timestamp is explained by a campaign."""
        mask = np.zeros(len(timestamps), bool)
        for campaign in self.campaigns:
            if kpi in campaign.kpis:
                mask |= campaign.active(timestamps)
        return mask


__all__ = ["CALENDAR_PATH", "Campaign", "CampaignCalendar"]
