"""One MNS topic message per outcome: notification message v1, tagged with the outcome status.

MNS caps MessageTag at 16 characters (the SDK refuses longer tags before sending), and event
names like ``upgrade.in_progress`` are longer, so the tag is the event name without its
``upgrade.`` prefix (``submitted``, ``in_progress``...): subscriptions filter on that, and the body's
``event`` keeps the full name.

A publish is tried a few times; when it still fails the message goes to the store's outbox and
``Upgrader.drain_outbox`` delivers it later (the tracker drains it every tick), so an outcome is never
lost and never notified twice by the same run.

Example::

    notifier = Notifier(config)
    notifier.publish(outcome.notification(), credentials=creds, context=ctx)   # True when delivered
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from dbupgrade.config import Config
from dbupgrade.context import Credentials, InvocationContext
from dbupgrade.logging import logger, mask, register_secret

PUBLISH_ATTEMPTS = 3
MESSAGE_TAG_MAX = 16
PUBLISH_PAUSE_SECONDS = 0.1
CONNECTION_TIMEOUT_SECONDS = 5  # the SDK's default is 60 s, longer than we can wait inside FC


def message_tag(event: str) -> str:
    """The MessageTag of an event: ``upgrade.submitted`` -> ``submitted`` (MNS allows 16 characters)."""
    return event.removeprefix("upgrade.")[:MESSAGE_TAG_MAX]


class Notifier:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._accounts: dict[tuple[int, str, str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.config.topic)

    def endpoint(self, context: InvocationContext | None) -> str | None:
        """DBUPGRADE_MNS_ENDPOINT, else derived from the FC context's account and region."""
        if self.config.mns_endpoint:
            return self.config.mns_endpoint
        if context is not None and context.account_id and context.region:
            return f"https://{context.account_id}.mns.{context.region}.aliyuncs.com"
        return None

    def _topic(self, endpoint: str, credentials: Credentials) -> Any:
        # One Account per thread: the MNS SDK sends every request of an Account over one shared
        # HTTPConnection, so concurrent publishes (the local server's thread pool, FC instance
        # concurrency) interleave on it, fail, and the retry publishes a message twice.
        key = (threading.get_ident(), endpoint, credentials.access_key_id, credentials.security_token or "")
        with self._lock:
            account = self._accounts.get(key)
            if account is None:
                from mns.account import Account  # the MNS SDK only when something is published

                register_secret(credentials.access_key_secret)
                register_secret(credentials.security_token)
                account = Account(
                    endpoint,
                    credentials.access_key_id,
                    credentials.access_key_secret,
                    credentials.security_token or "",
                )
                account.get_client().set_connection_timeout(CONNECTION_TIMEOUT_SECONDS)
                if len(self._accounts) > 16:  # STS tokens rotate; forget the stale ones
                    self._accounts.pop(next(iter(self._accounts)))
                self._accounts[key] = account
        return account.get_topic(self.config.topic)

    def publish(
        self, message: dict[str, Any], *, credentials: Credentials | None, context: InvocationContext | None
    ) -> bool:
        """Publish ``message`` (notification v1); True when MNS accepted it (or no topic is set)."""
        if not self.enabled:
            return True
        endpoint = self.endpoint(context)
        if endpoint is None or credentials is None:
            logger.warning(
                "cannot publish: no MNS endpoint or credentials", extra={"event": message.get("event")}
            )
            return False
        from mns.topic import TopicMessage

        body = json.dumps(message, sort_keys=True, separators=(",", ":"))
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                reply = self._topic(endpoint, credentials).publish_message(
                    TopicMessage(body, message_tag(message["event"]))
                )
                logger.info(
                    "notification published",
                    extra={"event": message["event"], "message_id": getattr(reply, "message_id", None)},
                )
                return True
            except Exception as exc:  # the MNS SDK raises its own and socket exceptions alike
                logger.warning(
                    "publish failed",
                    extra={"event": message["event"], "attempt": attempt, "error": mask(str(exc))[:300]},
                )
                if attempt < PUBLISH_ATTEMPTS:
                    time.sleep(PUBLISH_PAUSE_SECONDS * attempt)
        return False
