"""A worker through a broker outage: it stays up, says so in a few lines (not a hundred a
second), and once the broker is back learns every run exactly once and says what works
again."""

from __future__ import annotations

import time
from pathlib import Path

from lammps_stream.stack import LocalStack
from model_service.model_sync import SYNC_SECONDS
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import running_stack
from tests.integration.workers import (
    Worker,
    distinct_train,
    isolated_config,
    publish,
    stream_of_runs,
    wait_learned,
)

OUTAGE_SECONDS = 15


def test_a_worker_outlives_a_broker_outage_quietly(tmp_path: Path) -> None:
    overrides = {
        "kafka.bootstrap": f"127.0.0.1:{29392 + PORT_OFFSET}",
        "kafka.controller_port": 29393 + PORT_OFFSET,
        "stack.start_service": False,
    }
    with running_stack(tmp_path, "outage", overrides) as (base, _):
        config = isolated_config(
            base, tmp_path, "outage", http_port=16180 + PORT_OFFSET, models=["pa"]
        )
        worker = Worker(config, tmp_path, "outage")
        try:
            worker.wait_ready()
            before, after = stream_of_runs(20, seed=21), stream_of_runs(20, seed=22)
            publish(config, before)
            wait_learned([worker], distinct_train(before))

            start = len(worker.log.read_text().splitlines())
            LocalStack(base).down()
            time.sleep(OUTAGE_SECONDS)
            during = worker.log.read_text().splitlines()[start:]
            assert worker.process.poll() is None, "\n".join(during[-50:])
            refused = [line for line in during if "Unable connect to node" in line]
            # unheld, aiokafka logs hundreds of these in 15 s (1,346 in 30 s, by hand)
            assert 1 <= len(refused) <= 2, "\n".join(during[-50:])
            assert len(during) < 150, f"{len(during)} log lines in {OUTAGE_SECONDS} s"

            LocalStack(base).up()
            publish(config, after)
            total = distinct_train(before) + distinct_train(after)
            assert wait_learned([worker], total) == {"pa": total}
            time.sleep(SYNC_SECONDS + 1)  # one more read of other workers' model changes
            lines = worker.log.read_text().splitlines()[start:]
            # a read that waits out the broker (~10 s) does not overlap its next round (Faust's
            # own commit timer may still say it overlaps: a commit waits out the broker too)
            overlapping = [line for line in lines if "sync_models is overlapping" in line]
            assert not overlapping, "\n".join(lines)
            failed = [line for line in lines if "model changes failed" in line]
            again = [line for line in lines if "model changes works again" in line]
            assert len(failed) <= 1 and len(again) == len(failed), "\n".join(lines)
        finally:
            worker.stop()
