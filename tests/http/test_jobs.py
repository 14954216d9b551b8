"""The example jobs of the HTTP family: valid against the job schema, built, run against the
fakes, and their dry runs free of secrets."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import jsonschema
import pytest
import yaml

from etlsync.jobs import build_job, load_job
from etlsync.jobs.runner import dry_run, run_job
from etlsync.jobs.schema import job_schema
from tests.http.fakes import google, hubspot, shopify, stripe
from tests.http.fakes.base import serve
from tests.http.fakes.generic import make_app as generic_app
from tests.http.fakes.generic import make_orders

ROOT = Path(__file__).resolve().parents[2]
JOBS = sorted((ROOT / "examples" / "http").glob("*.yaml"))


def test_every_example_job_is_valid_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = jsonschema.Draft202012Validator(job_schema())
    env = {"STRIPE_API_KEY": "sk_x", "SHOPIFY_TOKEN": "t", "HUBSPOT_TOKEN": "t",
           "SHEET_ID": "s", "GOOGLE_SA_FILE": "sa.json", "API_URL": "http://127.0.0.1:1",
           "STRIPE_WEBHOOK_SECRET": "whsec", "INGEST_URL": "http://127.0.0.1:1"}
    assert len(JOBS) == 7
    for path in JOBS:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path.name, [e.message for e in errors][:3])
        built = build_job(load_job(path, env))
        assert built.source is not None, path.name


def _copy(name: str, tmp: Path) -> Path:
    target = tmp / name
    shutil.copy(ROOT / "examples" / "http" / name, target)
    return target


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


async def test_preset_jobs_run_against_the_fakes(tmp_path: Path) -> None:
    state = stripe.StripeState(40)
    info, public = google.service_account("placeholder")
    async with serve(stripe.make_app(state)) as s_url, \
            serve(hubspot.make_app({"contacts": hubspot.make_objects("contacts", 120)})) as h_url, \
            serve(shopify.make_app(shopify.make_data(30))) as sh_url, \
            serve(google.make_app(public, info["client_email"],
                                  {"Items": [["id", "name"], [1, "a"], [2, "b"]]})) as g_url:
        info["token_uri"] = f"{g_url}/token"
        sa = tmp_path / "sa.json"
        sa.write_text(json.dumps(info))
        env = {"STRIPE_API_KEY": stripe.API_KEY, "STRIPE_BASE_URL": s_url,
               "HUBSPOT_TOKEN": hubspot.TOKEN, "HUBSPOT_BASE_URL": h_url,
               "SHOPIFY_TOKEN": "shpat_test",
               "SHOPIFY_GRAPHQL_URL": f"{sh_url}/admin/api/2024-10/graphql.json",
               "SHEET_ID": "sheet", "GOOGLE_SA_FILE": str(sa), "SHEETS_BASE_URL": g_url}
        for name, table, expected in (("stripe.yaml", "stripe_customers", 40),
                                      ("hubspot.yaml", "hubspot_contacts", 120),
                                      ("shopify.yaml", "shopify_orders", 30),
                                      ("google_sheets.yaml", "items", 2)):
            job = _copy(name, tmp_path)
            await run_job(job, env=env)
            assert _count(tmp_path / "out" / f"{name.split('.')[0].replace('google_', '')}.db",
                          table) == expected, name


async def test_dry_run_shows_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = generic_app(make_orders(30), auth=None)
    async with serve(app) as url:
        monkeypatch.setenv("API_TOKEN", "tok-very-secret-123")
        job = _copy("rest.yaml", tmp_path)
        built = build_job(load_job(job, {"API_URL": url}))
        report = (await dry_run(built, limit=5)).to_json()
    assert "tok-very-secret-123" not in report
    assert '"rows"' in report and '"id"' in report
