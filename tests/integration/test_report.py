"""The denial analytics report as a person sees it, and its figures against the simulator's truth.

One report over the session's simulated practice (the last four months, with the small
registry's champion for model health) is written once; the page is opened once in Debian's
headless Chromium (``make chromium`` installs it) and checked many ways.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from features.payer_change import DetectorSettings, weekly_alerts
from serving.api.routes import analytics as analytics_routes
from tests.utils.registry import SmallRegistry

pytestmark = pytest.mark.integration

START, END = "2025-09-01", "2025-12-31"
KEY = "k" * 32
PLOTS = {
    "denial_rate", "point_of_origin", "payer", "payer_type", "procedure_family",
    "reason_category", "carc", "age_buckets", "recovery_by_route", "model_scores", "model_drift",
}  # fmt: skip


@pytest.fixture(scope="module")
def report(
    sim_dir: Path, small_registry: SmallRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    from serving.report import run_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    html_path, json_path = run_report(
        sim_dir,
        out,
        pd.Timestamp(START),
        pd.Timestamp(END),
        model_uri=small_registry.model_uri,
        tracking_uri=small_registry.tracking_uri,
    )
    return html_path, json.loads(json_path.read_text())


def _truth_by_month(sim_dir: Path) -> pd.DataFrame:
    """Monthly claims adjudicated and denied, from the remittances' dates and the simulator's
    own record of which claims it denied (not from the product's outcome rule)."""
    remits = pd.read_parquet(sim_dir / "remittances.parquet")
    first = remits.sort_values("remit_date", kind="stable").drop_duplicates("claim_id")
    truth = pd.read_parquet(sim_dir / "truth.parquet")[["claim_id", "denied"]]
    claims = first.merge(truth, on="claim_id", validate="one_to_one")
    claims = claims[(claims["remit_date"] >= START) & (claims["remit_date"] <= END)]
    claims["denied_charge"] = claims["total_charge"].where(claims["denied"] == 1, 0.0)
    month = claims["remit_date"].dt.to_period("M").astype(str)
    return pd.DataFrame(
        {
            "claims": claims.groupby(month).size(),
            "denied": claims.groupby(month)["denied"].sum(),
            "charges": claims.groupby(month)["total_charge"].sum(),
            "denied_charges": claims.groupby(month)["denied_charge"].sum(),
        }
    )


def test_denial_rates_equal_figures_recomputed_from_the_simulators_truth(report, sim_dir):
    _, figures = report
    expected = _truth_by_month(sim_dir)
    months = {m["month"]: m for m in figures["denial_rate_by_month"]}
    assert list(months) == list(expected.index)
    for month, row in expected.iterrows():
        got = months[month]
        assert got["claims_adjudicated"] == row["claims"]
        assert got["claims_denied"] == row["denied"]
        assert got["denial_rate"] == pytest.approx(row["denied"] / row["claims"], abs=1e-6)
        assert got["denial_rate_dollars"] == pytest.approx(
            row["denied_charges"] / row["charges"], abs=1e-6
        )
    rejections = pd.read_parquet(sim_dir / "rejections.parquet")
    in_period = rejections[
        (rejections["rejection_date"] >= START) & (rejections["rejection_date"] <= END)
    ]
    assert figures["headline"]["period"]["rejections"] == in_period["claim_id"].nunique() > 0
    # A rejection is never a denial: the rejected claims are not among those adjudicated.
    assert figures["headline"]["period"]["claims_adjudicated"] == expected["claims"].sum()


def test_every_section_holds_figures_and_no_patient_identifier(report, sim_dir):
    html_path, figures = report
    breakdowns = figures["breakdowns"]
    assert all(breakdowns[k]["rows"] for k in ("payer", "carc", "reason_category", "rarc"))
    assert figures["point_of_origin"]["most_lost"] in {
        s["step"] for s in figures["point_of_origin"]["steps"]
    }
    received = figures["denials_received"]
    assert sum(b["denials"] for b in received["age_buckets"]) == received["open_denials"]
    assert figures["model_health"]["scores_by_month"]
    claims = pd.read_parquet(sim_dir / "claims.parquet")
    page = html_path.read_text() + json.dumps(figures)
    for column in ("patient_id", "patient_key"):
        assert not any(str(value) in page for value in claims[column].dropna().head(200))


def _chromium() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_the_page_renders_in_chromium_with_every_plot_and_its_table(report):
    found = _chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromedriver are missing: `make chromium` installs them")
        pytest.skip("Debian's chromium and chromedriver are not installed (`make chromium`)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    html_path, figures = report
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    try:
        driver.get(html_path.as_uri())
        plots = {
            f.get_attribute("data-plot"): f
            for f in driver.find_elements(By.CSS_SELECTOR, "figure.plot")
        }
        assert set(plots) == PLOTS
        for name, figure in plots.items():
            svg = figure.find_element(By.TAG_NAME, "svg")
            assert svg.size["width"] > 100 and svg.size["height"] > 50, name
            marks = svg.find_elements(By.CSS_SELECTOR, "path, rect, use")
            assert len(marks) > 10, f"plot {name} draws nothing"
        table = driver.find_element(By.CSS_SELECTOR, "table[data-table='denial_rate']")
        assert not table.is_displayed()
        driver.find_element(By.CSS_SELECTOR, "details[data-for='denial_rate'] summary").click()
        assert table.is_displayed()
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) == len(figures["denial_rate_by_month"])
        for row, month in zip(rows, figures["denial_rate_by_month"], strict=True):
            cells = row.find_elements(By.TAG_NAME, "td")
            assert cells[0].text == month["month"]
            assert int(cells[2].get_attribute("data-value")) == month["claims_denied"]
            assert float(cells[3].get_attribute("data-value")) == month["denial_rate"]
            assert cells[3].text == f"{month['denial_rate']:.1%}"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert resources == []  # nothing fetched: the page is whole offline
    finally:
        driver.quit()


def test_api_summary_is_the_reports_figures(report, sim_dir, tmp_path):
    _, figures = report
    app = FastAPI()
    app.state.settings = Settings(api_keys=[KEY], analytics_dataset=sim_dir)
    app.include_router(analytics_routes.router)
    client = TestClient(app)
    url = f"/v1/analytics/summary?from={START}&to={END}"
    answer = client.get(url, headers={"X-API-Key": KEY})
    assert answer.status_code == 200
    body = answer.json()
    assert body["denial_rate_by_month"] == figures["denial_rate_by_month"]
    assert body["payer_change_alerts"] == figures["payer_change_alerts"]
    assert client.get(url).status_code == 401
    wrong = client.get(f"/v1/analytics/summary?from={END}&to={START}", headers={"X-API-Key": KEY})
    assert wrong.status_code == 422 and "after" in wrong.json()["detail"]
    empty = FastAPI()
    empty.state.settings = Settings(api_keys=[KEY], analytics_dataset=tmp_path / "none")
    empty.include_router(analytics_routes.router)
    missing = TestClient(empty).get(url, headers={"X-API-Key": KEY})
    assert (
        missing.status_code == 503 and "DENIAL_RISK_ANALYTICS_DATASET" in missing.json()["detail"]
    )


def _weekly_claims(rates: list[float], weeks: int, claims_per_week: int, seed: int) -> pd.DataFrame:
    """Claims of one payer and procedure, denied for authorization at ``rates[w]`` in week w."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    days = np.repeat(np.arange(weeks) * 7, claims_per_week) + rng.integers(
        0, 7, weeks * claims_per_week
    )
    denied = rng.random(len(days)) < np.repeat(rates, claims_per_week)
    return pd.DataFrame(
        {
            "remit_date": start + pd.to_timedelta(days, unit="D"),
            "denied": denied,
            "category": np.where(denied, "authorization", None),
            "carc": np.where(denied, "197", None),
            "payer_id": "P1",
            "procedure_code": "97110",
            "family": "971",
            "denied_amount": np.where(denied, 100.0, 0.0),
        }
    )


def test_a_payer_change_is_found_near_its_start_and_a_steady_payer_raises_none():
    weeks, change = 80, 50
    steady = _weekly_claims([0.02] * weeks, weeks, 20, seed=1)
    assert weekly_alerts(steady, DetectorSettings()).empty
    changed = _weekly_claims([0.02] * change + [0.4] * (weeks - change), weeks, 20, seed=2)
    alerts = weekly_alerts(changed, DetectorSettings())
    change_day = pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=change)
    assert len(alerts) >= 1
    first = alerts.iloc[0]
    assert first["reason"] in {"authorization", "197"}
    assert abs((first["started"] - change_day).days) <= 14
    assert 0 <= (first["detected"] - change_day).days <= 21
