"""The OpenAPI 3.1 document served at ``GET /openapi.json``: what the webhook really does.

Kept next to the code it describes (``app.py``); tests check the statuses and routes it lists
against the live replies.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dbupgrade import __version__
from dbupgrade.engines import ENGINES
from dbupgrade.model import EFFECTIVE_VALUES, STATUSES
from dbupgrade.webhook.http import MAX_BATCH_ITEMS, MAX_BODY_BYTES

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_OUTCOME = {"$ref": "#/components/schemas/Outcome"}


def _json(
    schema: dict[str, Any], description: str, *, problem: bool = False, retry_after: bool = False
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {("application/problem+json" if problem else "application/json"): {"schema": schema}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _problem(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    return _json(_PROBLEM, description, problem=True, retry_after=retry_after)


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    upgrade_request = {
        "type": "object",
        "required": ["instance_id", "target_version"],
        "additionalProperties": False,
        "properties": {
            "instance_id": {"type": "string", "examples": ["r-bp1demo0000000001", "dds-bp1demo000000001"]},
            "target_version": {
                "type": ["string", "number"],
                "description": 'Major version; 7 and 7.0 both mean "7.0".',
                "examples": ["7.0"],
            },
            "engine": {
                "type": "string",
                "enum": sorted(ENGINES),
                "description": "Default: from the ID prefix.",
            },
            "region": {"type": "string", "examples": ["cn-hangzhou"]},
            "effective": {"type": "string", "enum": list(EFFECTIVE_VALUES)},
            "ticket_id": {"type": ["string", "integer"], "maxLength": 128},
            "rollout_id": {"type": "string", "maxLength": 128},
            "dry_run": {"type": "boolean", "default": False},
        },
    }
    outcome = {
        "type": "object",
        "required": ["status", "instance_id", "to_version", "at"],
        "properties": {
            "status": {
                "type": "string",
                "enum": list(STATUSES),
            },
            "instance_id": {"type": "string"},
            "to_version": {"type": "string"},
            "from_version": {"type": ["string", "null"]},
            "engine": {"type": ["string", "null"]},
            "region": {"type": ["string", "null"]},
            "effective": {"type": ["string", "null"]},
            "request_id": {
                "type": ["string", "null"],
                "description": "The upgrade API's RequestId; the same on every redelivery of one delivery.",
            },
            "ticket_id": {"type": ["string", "null"]},
            "rollout_id": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
            "correlation_id": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"]},
            "code": {
                "type": ["string", "null"],
                "description": "The cloud API's error code, or InvalidRequest.",
            },
            "message": {"type": ["string", "null"]},
            "field": {"type": ["string", "null"]},
            "dry_run": {"type": "boolean"},
            "upgrade": {
                "type": ["object", "null"],
                "description": "in_progress / refused for an accepted upgrade not finished yet: that upgrade.",
            },
            "replay_of": {
                "type": ["string", "null"],
                "description": "A replayed reply (idempotency): the original outcome's `at`.",
            },
            "hop": {
                "type": ["integer", "null"],
                "description": "A multi-hop MongoDB upgrade: which hop this is (1-based); null for one hop.",
            },
            "hops": {"type": ["integer", "null"], "description": "How many hops the upgrade takes."},
            "path": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "Every version from the start to to_version; the hop goes to path[hop].",
            },
            "switch_at": {
                "type": ["string", "null"],
                "description": "rescheduled: when the booked upgrade now switches (UTC).",
            },
            "progress": {
                "type": ["number", "null"],
                "description": "The upgrade's task, percent done (DescribeHistoryTasks, read by the tracker).",
            },
            "remaining_seconds": {
                "type": ["integer", "null"],
                "description": "The task's estimated time left.",
            },
            "current_step": {"type": ["string", "null"], "description": "The task's step running now."},
            "task_status": {"type": ["string", "null"], "description": "The task's Status (Running, ...)."},
            "progress_at": {"type": ["string", "null"], "description": "When the task was last read."},
            "backup_id": {
                "type": ["string", "null"],
                "description": "The backup the gate (DBUPGRADE_BACKUP) found or took before the upgrade.",
            },
            "rollback": {
                "type": ["string", "null"],
                "description": "failed / stuck / halted: what rolling back means for this engine and path.",
            },
            "readiness": {
                "type": ["object", "null"],
                "description": "Dry runs and `blocked` refusals: the readiness report (verdict go / warn / "
                "blocked and its findings, each naming its source API).",
            },
            "at": {"type": "string", "format": "date-time"},
        },
    }
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri", "examples": ["urn:dbupgrade:problem:invalid-field"]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "The request field at fault."},
            "allowed": {"type": "array", "items": {"type": "string"}},
            "code": {"type": "string"},
            "reason": {"type": "string"},
            "correlation_id": {"type": "string", "description": "Quote it when reporting a problem."},
            "instance_id": {"type": "string"},
            "outcome": _OUTCOME,
        },
    }
    batch_result = {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "description": "The item's reply (an Outcome or a Problem) with its index and status.",
                    "type": "object",
                    "required": ["index", "http_status"],
                    "properties": {"index": {"type": "integer"}, "http_status": {"type": "integer"}},
                },
            }
        },
    }
    standard_headers = [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
        for name, text in (
            ("webhook-id", "Standard Webhooks delivery id; redeliveries reuse it (idempotency)."),
            ("webhook-timestamp", "Unix seconds; refused outside +-5 minutes."),
            ("webhook-signature", "Space-separated `v1,<base64>` signatures; any one may match."),
        )
    ]
    instance_parameter = {"name": "instance_id", "in": "path", "required": True, "schema": {"type": "string"}}
    booking = {
        "type": "object",
        "properties": {
            "instance_id": {"type": "string"},
            "engine": {"type": "string"},
            "event_id": {"type": ["integer", "string", "null"]},
            "state": {"type": "string", "examples": ["pending", "running", "cancelled"]},
            "switch_time": {"type": ["string", "null"]},
            "deadline": {"type": ["string", "null"]},
            "ours": {"type": "boolean"},
        },
    }

    def booked_responses(done: str) -> dict[str, Any]:
        return {
            "200": _json(_OUTCOME, done),
            "400": _problem("Body not UTF-8 (`field`: body)."),
            "401": _problem("Missing, malformed, expired or non-matching signature. Nothing changed."),
            "404": _problem("dbupgrade follows no pending booked upgrade of this instance."),
            "409": _problem(
                "The service refused it (`code`, e.g. SwitchTimeAfterDeadline, IncorrectTaskStatus): "
                "nothing changed. Or the tracker is checking the instance: retry after Retry-After.",
                retry_after=True,
            ),
            "413": _problem(f"Body larger than {MAX_BODY_BYTES} bytes."),
            "422": _problem("A field is invalid or missing (`field`)."),
            "500": _problem("Misconfigured: `detail` says what to fix (key, RAM policy, endpoint)."),
            "502": _problem("The cloud API call failed (`code`)."),
            "503": _problem(
                "The store is unavailable, or the webhook has no secret configured.", retry_after=True
            ),
        }

    post_responses = {
        "200": _json(
            _OUTCOME,
            "noop (already at target), in_progress (already upgrading to it), deferred "
            "(outside DBUPGRADE_WINDOW: nothing submitted; resend inside the window), or a dry run "
            "that would submit (status submitted, dry_run true, reason dry_run: nothing was).",
        ),
        "202": _json(
            _OUTCOME, "submitted: `request_id` is the upgrade API's RequestId, the same on every redelivery."
        ),
        "207": _json(
            {"$ref": "#/components/schemas/BatchResult"}, "Batch whose items got different statuses."
        ),
        "400": _problem("Body not UTF-8, not JSON, not an object, or nested too deep (`field`: body)."),
        "401": _problem("Missing, malformed, expired or non-matching signature. Nothing is recorded."),
        "409": _problem(
            "Rejected by the pre-check or the scope guard: not_found, not_ready, downgrade, "
            "not_offered, unknown_mode, out_of_scope (`reason` says which). Recorded. Or the same delivery is "
            "in flight (`reason`: duplicate_in_flight, not recorded): retry after Retry-After.",
            retry_after=True,
        ),
        "413": _problem(f"Body larger than {MAX_BODY_BYTES} bytes."),
        "422": _problem("A field is invalid or missing (`field`, `allowed`); recorded as rejected."),
        "429": _problem("The cloud API throttled the request after retries.", retry_after=True),
        "500": _problem(
            "Misconfigured: `detail` names the variable, or (`reason` configuration) says what to fix "
            "about the AccessKey, the role's RAM policy or the endpoint, ending with the API's `code`; "
            "not remembered, so a retry after the fix runs. Or an internal error (`correlation_id`)."
        ),
        "502": _problem(
            "The cloud API call failed (`code` is the API's error code); with Retry-After when "
            "a transient error outlasted the retries.",
            retry_after=True,
        ),
        "503": _problem(
            "The store is unavailable (nothing was called; retry after Retry-After), the instance is "
            "busy with another task (`reason` instance_busy; not remembered, retry after Retry-After), "
            "or the webhook has no secret configured.",
            retry_after=True,
        ),
    }
    # A batch whose items all got the same status answers with that status and its results.
    for status in ("409", "422", "429", "502", "503"):
        post_responses[status]["content"]["application/json"] = {
            "schema": {"$ref": "#/components/schemas/BatchResult"}
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dbupgrade webhook",
            "version": __version__,
            "description": (
                "Change tickets in, major-version upgrades of ApsaraDB for Redis / MongoDB out. "
                'A single request object or a batch `{"upgrades": [...]}` (at most '
                f"{MAX_BATCH_ITEMS}; each item gets its own reply, the same status for all or 207). "
                "When DBUPGRADE_WEBHOOK_MAPPING is set, the body is a foreign payload (e.g. a Jira "
                "issue webhook) mapped to these fields by JMESPath."
            ),
        },
        "paths": {
            "/upgrades": {
                "post": {
                    "operationId": "submitUpgrades",
                    "summary": "Submit one upgrade request or a batch",
                    "security": [{"StandardWebhooks": []}, {"HubSignature256": []}, {}],
                    "parameters": standard_headers,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/UpgradeRequest"},
                                        {"$ref": "#/components/schemas/BatchRequest"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": post_responses,
                }
            },
            "/upgrades/{instance_id}": {
                "get": {
                    "operationId": "getUpgradeStatus",
                    "summary": "The latest recorded outcome for an instance",
                    "security": [{"StatusBearer": []}, {}],
                    "parameters": [
                        {"name": "instance_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json(_OUTCOME, "The latest outcome."),
                        "401": _problem("Missing or wrong bearer token, or status reads disabled."),
                        "404": _problem("No outcome recorded for this instance."),
                        "503": _problem("The store is unavailable.", retry_after=True),
                    },
                }
            },
            "/booked": {
                "get": {
                    "operationId": "listBooked",
                    "summary": "Upgrades booked for the maintenance window (DescribeActiveOperationTasks)",
                    "security": [{"StatusBearer": []}, {}],
                    "parameters": [
                        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                        for name in ("engine", "region", "instance_id")
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["booked"],
                                "properties": {"booked": {"type": "array", "items": booking}},
                            },
                            "Every O&M event; `ours`: dbupgrade booked it (only those can be changed here).",
                        ),
                        "401": _problem("Missing or wrong bearer token, or status reads disabled."),
                        "422": _problem("A bad engine, region or instance_id (`field`)."),
                        "500": _problem(
                            "Misconfigured: `detail` says what to fix (key, RAM policy, endpoint)."
                        ),
                        "502": _problem("The cloud API call failed (`code`)."),
                        "503": _problem("The store is unavailable.", retry_after=True),
                    },
                }
            },
            "/booked/{instance_id}/reschedule": {
                "post": {
                    "operationId": "rescheduleBooked",
                    "summary": "Move a booked upgrade (ModifyActiveOperationTasks), not past its deadline",
                    "security": [{"StandardWebhooks": []}, {"HubSignature256": []}, {}],
                    "parameters": [instance_parameter, *standard_headers],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["switch_time"],
                                    "properties": {
                                        "switch_time": {
                                            "type": "string",
                                            "examples": ["2026-12-01T18:00:00Z"],
                                            "description": "UTC, yyyy-MM-ddTHH:mm:ssZ.",
                                        },
                                        "region": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": booked_responses(
                        "rescheduled: recorded and notified (upgrade.rescheduled)."
                    ),
                }
            },
            "/booked/{instance_id}/cancel": {
                "post": {
                    "operationId": "cancelBooked",
                    "summary": "Cancel a booked upgrade before it starts (CancelActiveOperationTasks)",
                    "security": [{"StandardWebhooks": []}, {"HubSignature256": []}, {}],
                    "parameters": [instance_parameter, *standard_headers],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"region": {"type": "string"}}}
                            }
                        },
                    },
                    "responses": booked_responses(
                        "cancelled: no switchover happens; recorded and notified (upgrade.cancelled)."
                    ),
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness; does not touch the store or the cloud",
                    "security": [],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"const": "ok"},
                                    "version": {"type": "string"},
                                    "auth": {"type": "string", "enum": ["standard", "hub-sha256", "none"]},
                                },
                            },
                            "Up.",
                        ),
                        "500": _problem("Misconfigured (`detail` names the variable)."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 document."}},
                }
            },
        },
        "components": {
            "schemas": {
                "UpgradeRequest": upgrade_request,
                "BatchRequest": {
                    "type": "object",
                    "required": ["upgrades"],
                    "additionalProperties": False,
                    "properties": {
                        "upgrades": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH_ITEMS,
                            "items": {"$ref": "#/components/schemas/UpgradeRequest"},
                        }
                    },
                },
                "Outcome": outcome,
                "BatchResult": batch_result,
                "Problem": problem,
            },
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            },
            "securitySchemes": {
                "StandardWebhooks": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": (
                        "DBUPGRADE_WEBHOOK_AUTH=standard (default): Standard Webhooks HMAC-SHA256 over "
                        "`{webhook-id}.{webhook-timestamp}.{body}` with DBUPGRADE_WEBHOOK_SECRET (whsec_...)."
                    ),
                },
                "HubSignature256": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Hub-Signature-256",
                    "description": (
                        "DBUPGRADE_WEBHOOK_AUTH=hub-sha256: `sha256=<hex>` HMAC-SHA256 of the raw body "
                        "(X-Hub-Signature is accepted too); redeliveries deduplicate on ticket_id."
                    ),
                },
                "StatusBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "GET /upgrades/{instance_id}: DBUPGRADE_WEBHOOK_STATUS_TOKEN; unset, status "
                        "reads are refused. With DBUPGRADE_WEBHOOK_AUTH=none no auth is checked at all "
                        "(the FC trigger authenticates)."
                    ),
                },
            },
        },
    }
