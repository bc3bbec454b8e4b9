"""Azure OpenAI's fine-tuning jobs, as its data-plane description gives them.

Azure publishes its own description of the data plane, which is not among the specs the
tests have (../shared/specs holds OpenAI's). The fake's Azure mode checks the job
operations against the part transcribed here, from azure-rest-api-specs,
specification/cognitiveservices/data-plane/AzureOpenAI/authoring/preview/
2025-04-01-preview/azureopenai.json (Swagger 2.0; each schema names its definition):

* ``FineTuningJobCreation``, the body of ``FineTuning_Create`` (POST /fine_tuning/jobs,
  answered 201): model, training_file, validation_file, hyperparameters, suffix, seed,
  integrations, method. There is no ``metadata``; the fake flags any field the description
  does not define, since Azure keeps none of them.
* ``FineTuningJob``, every job answer: ``status`` is a ``FineTuningState`` (created,
  pending, running, pausing, paused, resuming, succeeded, cancelled, failed), the suffix is
  ``suffix`` (not OpenAI's ``user_provided_suffix``), the organisation ``organisation_id``,
  and there is no ``metadata``. Swagger 2.0 has no null, so a field without a value is left
  out (as the description's examples do).
* ``FineTuning_List`` takes ``after`` and ``limit`` and nothing else: no metadata filter.
* Errors are ``ErrorResponse``: ``{"error": {"code", "message", "target"?}}``.
"""

from __future__ import annotations

from typing import Any

import jsonschema

AZURE_OPERATIONS = frozenset(
    {
        "createFineTuningJob",
        "listPaginatedFineTuningJobs",
        "retrieveFineTuningJob",
        "cancelFineTuningJob",
        "pauseFineTuningJob",
        "resumeFineTuningJob",
    }
)
"""The fake's operations checked against Azure's description in Azure mode (the others are
checked against OpenAI's, which Azure's matches for what the provider uses)."""

STATES = [
    "created",
    "pending",
    "running",
    "pausing",
    "paused",
    "resuming",
    "succeeded",
    "cancelled",
    "failed",
]
"""#/definitions/FineTuningState."""
SUFFIX_MAX = 40
"""#/definitions/FineTuningJobCreation/properties/suffix: "The suffix can contain up to 40
characters (a-z, A-Z, 0-9,- and _)"."""
UPLOAD_MAX_BYTES = 9 << 30
"""#/paths/~1uploads/post: "an Upload size can be a maximum of 9 GB in total"."""
FILE_MAX_BYTES = 512 << 20
"""Quotas page (https://learn.microsoft.com/azure/ai-services/openai/quotas-limits): max
file size for fine-tuning, 512 MB."""

_HYPERPARAMETERS = {
    # #/definitions/FineTuningHyperParameters
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "n_epochs": {"type": "integer"},
        "batch_size": {"type": "integer"},
        "learning_rate_multiplier": {"type": "number"},
    },
}
_DPO_HYPERPARAMETERS = {
    # #/definitions/DpoHyperparamsRequest
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_HYPERPARAMETERS["properties"],  # type: ignore[dict-item]
        "beta": {"type": "number"},
        "l2_multiplier": {"type": "number"},
    },
}
_METHOD = {
    # SupervisedMethodRequest is {type}; DpoMethodRequest {type, dpo: {hyperparameters}}.
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["dpo", "supervised"]},
        "dpo": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"hyperparameters": _DPO_HYPERPARAMETERS},
        },
    },
}
_INTEGRATIONS = {"type": "array", "items": {"type": "object"}}

CREATE_JOB: dict[str, Any] = {
    # #/definitions/FineTuningJobCreation
    "type": "object",
    "required": ["model", "training_file"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "training_file": {"type": "string", "minLength": 1},
        "validation_file": {"type": "string"},
        "hyperparameters": _HYPERPARAMETERS,
        "suffix": {"type": "string"},
        "seed": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        "integrations": _INTEGRATIONS,
        "method": _METHOD,
    },
}

JOB: dict[str, Any] = {
    # #/definitions/FineTuningJob
    "type": "object",
    "required": ["model", "training_file"],
    "additionalProperties": False,
    "properties": {
        "object": {"enum": ["fine_tuning.job"]},
        "created_at": {"type": "integer"},
        "id": {"type": "string"},
        "status": {"enum": STATES},
        "model": {"type": "string", "minLength": 1},
        "fine_tuned_model": {"type": "string"},
        "training_file": {"type": "string", "minLength": 1},
        "validation_file": {"type": "string"},
        "result_files": {"type": "array", "items": {"type": "string"}},
        "finished_at": {"type": "integer"},
        "organisation_id": {"type": "string"},
        "trained_tokens": {"type": "integer"},
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": "string"},
            },
        },
        "estimated_finish": {"type": "integer"},
        "hyperparameters": {
            "type": "object",
            "properties": {
                "n_epochs": {"type": "integer"},
                "batch_size": {"type": "integer"},
                "learning_rate_multiplier": {"type": "number"},
            },
        },
        "suffix": {"type": "string"},
        "seed": {"type": "integer"},
        "integrations": _INTEGRATIONS,
        "method": {"type": "object", "required": ["type"]},
    },
}

JOB_LIST: dict[str, Any] = {
    # #/definitions/FineTuningJobList
    "type": "object",
    "properties": {
        "object": {"enum": ["list"]},
        "data": {"type": "array", "items": JOB},
        "has_more": {"type": "boolean"},
    },
}

ERROR: dict[str, Any] = {
    # #/definitions/ErrorResponse
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string", "minLength": 1},
                "target": {"type": "string"},
            },
        }
    },
}

_LIST_QUERY = frozenset({"after", "limit"})
"""#/paths/~1fine_tuning~1jobs/get parameters, besides api-version."""
_SUCCESS = {"createFineTuningJob": 201}
"""Statuses other than 200 the description gives a success (FineTuning_Create: 201)."""


def _problems(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{where}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    ]


def check_request(operation: str, query: dict[str, list[str]], body: Any) -> list[str]:
    """What in an Azure-mode request Azure's description does not allow."""
    where = f"Azure {operation} request"
    problems = []
    if operation == "listPaginatedFineTuningJobs":
        problems += [
            f"{where}: query parameter {key!r} is not one FineTuning_List takes"
            for key in query
            if key not in _LIST_QUERY
        ]
    if operation == "createFineTuningJob":
        problems += _problems(CREATE_JOB, body, where)
    return problems


def check_response(operation: str, status: int, answer: Any) -> list[str]:
    """What in an Azure-mode answer Azure's description does not say."""
    where = f"Azure {operation} response {status}"
    if status >= 400:
        return _problems(ERROR, answer, where)
    expected = _SUCCESS.get(operation, 200)
    if status != expected:
        return [f"{where}: Azure answers {expected}"]
    schema = JOB_LIST if operation == "listPaginatedFineTuningJobs" else JOB
    return _problems(schema, answer, where)
