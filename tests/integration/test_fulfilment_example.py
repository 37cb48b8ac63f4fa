"""The worked example of docs/workflows.md (examples/fulfilment/) run as documented, on the
real broker: an order placed runs its chain reserve -> charge -> ship and both e-mails; a
declined payment stops the chain at step 2, which `jobstream jobs show` says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from examples.fulfilment.jobs import publish_order
from jobstream.config.settings import load_settings
from jobstream.consumers.ops.topic_plan import apply, full_plan
from jobstream.consumers.runtime.children import child_id
from jobstream.producers.publisher import Publisher
from tests.support.harness import ROOT, child_env, run_cli

TYPES = ["shop.place_order", "shop.reserve_stock", "shop.charge_payment", "shop.ship_order",
         "shop.send_email"]


def test_the_order_fulfilment_pipeline(tmp_path: Path, bootstrap: str, unique: str) -> None:
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "schema_dirs": [str(ROOT / "examples" / "fulfilment" / "schemas")],
        "jobs": {t: {"topic": f"t.{unique}.{t}", "partitions": 2, "retry_tiers": ["1s"],
                     "max_attempts": 2} for t in TYPES},
        "worker": {"group_id": f"g.{unique}", "http_port": 0, "commit_interval_ms": 200},
        "log": {"format": "json"},
    }
    cfg = tmp_path / "jobstream.yaml"
    cfg.write_text(yaml.safe_dump(data))
    settings = load_settings(**data)
    apply(settings, full_plan(settings, TYPES))
    env = child_env(JOBSTREAM_CONFIG=str(cfg))
    with open(tmp_path / "worker.log", "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "jobstream", "worker", "--app",
                                   "examples.fulfilment.jobs"], env=env, stderr=log,
                                  stdout=subprocess.DEVNULL, cwd=ROOT)
    try:
        with Publisher(settings) as pub:
            ok = publish_order(pub, "o-1", "ann@example.com", ["sku-1", "sku-2"], 1999)
            declined = publish_order(pub, "o-2", "bob@example.com", ["sku-3"], 0)
            reserve = child_id(ok, "fulfilment", 0)
            charge = child_id(reserve, "~chain", 0)
            ship = child_id(charge, "~chain", 0)
            st = pub.wait("shop.ship_order", ship, key="o-1", timeout=90)
            assert st.state == "succeeded" and st.parent_job_id == charge, st
            assert st.result["payment_id"].startswith("pay-"), st.result
            shipped = child_id(ship, "shipped", 0)
            assert st.children == [shipped]
            for jid in (shipped, child_id(ok, "confirmation", 1)):
                assert pub.wait("shop.send_email", jid, key="o-1", timeout=60).state == \
                    "succeeded"
            d_charge = child_id(child_id(declined, "fulfilment", 0), "~chain", 0)
            st = pub.wait("shop.charge_payment", d_charge, key="o-2", timeout=60)
            assert st.state == "dead_lettered", st
        shown = run_cli("jobs", "show", "shop.charge_payment", d_charge, "--key", "o-2",
                        env={"JOBSTREAM_CONFIG": str(cfg)})
        assert shown.returncode == 0, shown.stderr
        assert ("stopped at step 2 of 3 (shop.charge_payment); not run: shop.ship_order"
                in shown.stdout), shown.stdout
        assert "payment declined" in shown.stdout
    finally:
        worker.terminate()
        worker.wait(60)
        _delete_topics(settings, unique)


def _delete_topics(settings: Any, unique: str) -> None:
    from confluent_kafka.admin import AdminClient

    from jobstream.config.kafka import client_config

    admin = AdminClient(client_config(settings.kafka))
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"t.{unique}.")]
    for fut in (admin.delete_topics(names, operation_timeout=30).values() if names else ()):
        fut.result(30)
