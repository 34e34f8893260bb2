"""The declaration language stands alone: importing it loads no database, dbt, Kafka or Dagster
client, so ``definitions check`` and its tests run where none of them is installed or reachable."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import REPO

RUNTIME_CLIENTS = ("psycopg", "psycopg2", "dbt", "confluent_kafka", "dagster", "dagster_dbt")

IMPORT_THE_LANGUAGE = f"""
import importlib, json, pkgutil, sys
import retrolytics.language as language
for module in pkgutil.iter_modules(language.__path__):
    importlib.import_module(f"retrolytics.language.{{module.name}}")
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({RUNTIME_CLIENTS!r}))))
"""


def test_importing_every_module_of_the_language_loads_no_runtime_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_LANGUAGE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
