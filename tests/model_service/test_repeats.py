from __future__ import annotations

import logging

from model_service.repeats import FailureSpell, RepeatLimiter


def _record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, "", 0, msg, ("x",), None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_kind_of_client_error_passes_once_per_window() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=30.0, clock=clock)
    kinds = [_record("aiokafka.client", "Unable connect %s"), _record("kafka.net", "lost %s")]
    assert [limiter.filter(r) for r in kinds] == [True, True]
    clock.now = 29.0
    assert not any(limiter.filter(r) for r in kinds * 5)
    clock.now = 30.0
    again = _record("aiokafka.client", "Unable connect %s")
    assert limiter.filter(again)
    assert again.getMessage() == "Unable connect x (and 5 more like it in the last 30 s)"
    quiet = _record("kafka.net", "lost %s")
    assert limiter.filter(quiet) and quiet.getMessage().endswith(
        "(and 5 more like it in the last 30 s)"
    )
    clock.now = 61.0
    alone = _record("kafka.net", "lost %s")
    assert limiter.filter(alone) and alone.getMessage() == "lost x"  # nothing held since


def test_the_service_own_lines_and_info_are_never_held() -> None:
    limiter = RepeatLimiter(window=30.0, clock=Clock())
    own = [_record("model_service.app", "dead letter %s") for _ in range(5)]
    info = [_record("aiokafka.conn", "connecting %s", logging.INFO) for _ in range(5)]
    assert all(limiter.filter(r) for r in own + info)


def test_a_failure_spell_is_said_once_per_window_and_when_it_ends() -> None:
    clock = Clock()
    spell = FailureSpell("reading x", window=60.0, clock=clock)
    said = []
    for second in range(0, 150, 15):  # a round every 15 s for 2.5 minutes, each failing
        clock.now = float(second)
        said.append(spell.failed("unreachable"))
    assert [line is not None for line in said] == [
        True, False, False, False, True, False, False, False, True, False
    ]  # fmt: skip
    assert said[4] == "reading x still fails (for 60 s, 5 tries): unreachable"
    clock.now = 151.0
    assert spell.worked() == "reading x works again, after 151 s and 10 failed tries"
    assert spell.worked() is None  # said once
    clock.now = 200.0
    assert spell.failed("refused") == "reading x failed: refused"  # a new spell, said at once
