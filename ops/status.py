"""``python -m ops status``: live versions, failed model-sync events and the stack's alarms, at a glance.

Failed events are read generically: whatever model-sync's failure destination holds (a Lambda
destination record, an S3 event, anything else) is summarised from well-known fields when present
and shown as text otherwise. Messages are peeked (visibility timeout 0), never deleted; the queue
has no redrive policy, so the receive count a peek adds moves nothing.

Alarms come from CloudWatch ``DescribeAlarms`` with the stack's name prefix. The local stack (moto)
answers that API but creates no alarms, so locally the section is empty and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.failure_records import FailureRecord, FailureSummary, clip

MAX_PEEKED_MESSAGES = 10


@dataclass(frozen=True)
class FailedEvents:
    queue_url: str | None
    approximate_count: int | None
    peeked: tuple[FailureSummary, ...] = ()
    unavailable: str | None = None


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str
    reason: str
    updated_at: str | None


@dataclass(frozen=True)
class Alarms:
    prefix: str | None
    alarms: tuple[AlarmState, ...] = ()
    unavailable: str | None = None

    @property
    def firing(self) -> list[AlarmState]:
        return [alarm for alarm in self.alarms if alarm.state == "ALARM"]


@dataclass(frozen=True)
class Status:
    live: Sequence[dict[str, Any]]
    failed_events: FailedEvents
    alarms: Alarms

    @property
    def needs_attention(self) -> bool:
        return bool(self.failed_events.approximate_count) or bool(self.alarms.firing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": list(self.live),
            "failed_events": asdict(self.failed_events),
            "alarms": {**asdict(self.alarms), "firing": [a.name for a in self.alarms.firing]},
            "needs_attention": self.needs_attention,
        }


def failed_events(sqs: Any, queue_url: str | None, peek: int = MAX_PEEKED_MESSAGES) -> FailedEvents:
    if not queue_url:
        return FailedEvents(None, None, unavailable="no failure queue configured (--queue-url or --stack)")
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        count = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        messages: list[dict[str, Any]] = []
        while count and len(messages) < peek:
            batch = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, peek - len(messages)),
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in {seen["MessageId"] for seen in messages}]
            if not fresh:
                break
            messages.extend(fresh)
    except (ClientError, BotoCoreError) as error:
        return FailedEvents(queue_url, None, unavailable=f"cannot read the queue: {error}")
    return FailedEvents(queue_url, count, tuple(FailureRecord.from_message(m).summary() for m in messages))


def alarm_states(cloudwatch: Any, prefix: str | None) -> Alarms:
    if not prefix:
        return Alarms(None, unavailable="no alarm prefix configured (--alarm-prefix or --stack)")
    found: list[AlarmState] = []
    try:
        for page in cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        ):
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                updated = alarm.get("StateUpdatedTimestamp")
                found.append(
                    AlarmState(
                        name=alarm["AlarmName"],
                        state=alarm.get("StateValue", "UNKNOWN"),
                        reason=clip(alarm.get("StateReason", "")),
                        updated_at=updated.isoformat(timespec="seconds") if updated else None,
                    )
                )
    except (ClientError, BotoCoreError) as error:
        return Alarms(prefix, unavailable=f"cannot describe alarms: {error}")
    if not found:
        return Alarms(
            prefix,
            unavailable=f"no alarms named {prefix}* (the local stack creates none; on AWS check the stack name)",
        )
    return Alarms(prefix, tuple(sorted(found, key=lambda a: (a.state != "ALARM", a.name))))
