"""Issue 24: a job type's priority lanes in the settings and the topic plan."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobstream.config.settings import JobTypeSettings, Settings
from jobstream.config.topics import base_of, job_topics, lane_topic, topic_plan


def test_no_lanes_by_default() -> None:
    cfg = JobTypeSettings()
    assert cfg.priorities == () and cfg.lanes == ("default",) and cfg.weights == (1,)
    t = job_topics("email", cfg)
    assert t.lanes == () and t.consumed[0] == "jobs.email"


def test_three_lanes_default_to_8_3_1() -> None:
    cfg = JobTypeSettings(priorities=("high", "default", "low"))
    assert cfg.weights == (8, 3, 1)
    t = job_topics("email", cfg)
    assert t.lanes == ("jobs.email.priority.high", "jobs.email", "jobs.email.priority.low")
    assert t.consumed[:3] == t.lanes


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"priorities": ("high", "low")}, "must include 'default'"),
        ({"priorities": ("high", "default", "high")}, "each lane at most once"),
        ({"priorities": ("High!", "default")}, "lane names are lower-case"),
        ({"priorities": ("high", "default"), "lane_weights": (3,)}, "1 weights for 2 lanes"),
        ({"priorities": ("high", "default"), "lane_weights": (3, 0)}, "positive integers"),
        ({"lane_weights": (3, 1)}, "lane_weights needs priorities"),
    ],
)
def test_bad_lanes_are_clear_errors(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        JobTypeSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_error_names_the_job_type() -> None:
    with pytest.raises(ValidationError) as e:
        Settings(jobs={"email": {"priorities": ["high", "low"]}})  # type: ignore[dict-item]
    assert "email" in str(e.value)


def test_lane_topics_belong_to_t_and_have_its_partitions() -> None:
    assert lane_topic("jobs.email", "default") == "jobs.email"
    assert base_of("jobs.email.priority.high") == "jobs.email"
    s = Settings(jobs={"email": {"priorities": ["high", "default", "low"], "partitions": 4}})  # type: ignore[dict-item]
    plan = {spec.name: spec for spec in topic_plan("email", s)}
    for name in ("jobs.email.priority.high", "jobs.email.priority.low"):
        assert plan[name].role == "lane"
        assert plan[name].partitions == 4
        assert plan[name].config == plan["jobs.email"].config
    assert "jobs.email.priority.default" not in plan


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    """`^...$` with re.match accepted "high\\n" (a `$` matches before a final newline): a lane
    topic and a schedule name with a newline in them reached Kafka and the audit trail."""
    import pytest

    from jobstream.config.lane_rules import check_priorities
    from jobstream.config.schedules import check_name

    with pytest.raises(ValueError, match="lane names"):
        check_priorities(("high\n", "default"))
    with pytest.raises(ValueError, match="schedule name"):
        check_name("nightly\n")
    assert check_name("nightly") == "nightly"
