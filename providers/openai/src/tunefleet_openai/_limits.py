"""Every documented limit of the requests a plan holds, checked at plan.

The OpenAI API and Azure OpenAI publish their limits in two forms. Some are constraints of
their API descriptions (``maxLength``, ``maximum``, ``enum``); others are written only in
prose (a description's text, a guide, a quotas page). Both are here as small schemas, one
per planned operation and flavour, each constraint carrying its source in ``x-source``:

* OpenAI: its OpenAPI description (``openai-openapi.json``, the file the tests check the
  fake against), cited by JSON pointer, and its guides, cited by URL;
* Azure OpenAI: its data-plane description for api-version 2025-04-01-preview
  (:data:`AZURE_SPEC`, cited by JSON pointer into that Swagger 2.0 file) and its quotas page
  (:data:`AZURE_QUOTAS`).

The constraints are copied from the descriptions rather than read from them, so the
provider needs no spec file at run time; a test compares each one carrying a pointer into
OpenAI's description with the description itself, so a copy cannot drift unnoticed.

:func:`violations` checks a request body against a schema with jsonschema, returning what
breaks each constraint with its source. Sizes are in binary units: "64 MB" is 64 MiB, as the SDK's own chunked
upload reads it (``openai.resources.uploads.DEFAULT_PART_SIZE = 67108864``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "AZURE_MAX_FILES",
    "AZURE_MAX_TOTAL_FILE_BYTES",
    "AZURE_MAX_TRAINED_TOKENS",
    "AZURE_QUOTAS",
    "AZURE_SPEC",
    "AZURE_SUFFIX_MAX",
    "FILES_API_MAX_BYTES",
    "MIN_TRAINING_EXAMPLES",
    "OPENAI_SPEC",
    "SCHEMAS",
    "TAG_LIMITS",
    "Violation",
    "chat_completion_schema",
    "schema_for",
    "violations",
]

GiB: Final = 1 << 30
MiB: Final = 1 << 20

OPENAI_SPEC: Final = "openai-openapi.json"
"""OpenAI's published OpenAPI description (https://github.com/openai/openai-openapi)."""
OPENAI_FINE_TUNING_GUIDE: Final = "https://platform.openai.com/docs/guides/fine-tuning"
AZURE_SPEC: Final = (
    "azure-rest-api-specs: specification/cognitiveservices/data-plane/AzureOpenAI/authoring/"
    "preview/2025-04-01-preview/azureopenai.json"
)
"""Azure OpenAI's data-plane description for the api-version the provider uses by default."""
AZURE_QUOTAS: Final = "https://learn.microsoft.com/azure/ai-services/openai/quotas-limits"
AZURE_FINE_TUNING_GUIDE: Final = (
    "https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tuning"
)
AZURE_TAG_LIMITS: Final = (
    "https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations"
)


def _src(pointer: str, document: str = OPENAI_SPEC) -> str:
    return f"{document}#{pointer}"


# ---------------------------------------------------------------------- OpenAI


FILES_API_MAX_BYTES: Final = 512 * MiB
"""createFile: "Individual files can be up to 512 MB" (the operation's description, paths
/files post in openai-openapi.json). Larger files go through the Uploads API."""
_FILES_API = _src("/paths/~1files/post (description: individual files can be up to 512 MB)")
UPLOAD_MAX_BYTES: Final = 8 * GiB
_UPLOADS_API = _src("/paths/~1uploads/post (description: an Upload can accept at most 8 GB)")
UPLOAD_PART_MAX_BYTES: Final = 64 * MiB
_UPLOAD_PART = _src(
    "/paths/~1uploads~1{upload_id}~1parts/post (description: each Part can be at most 64 MB)"
)
FINE_TUNE_FILE_MAX_BYTES: Final = 1 * GiB
"""The fine-tuning guide: "The maximum file upload size is 1 GB" for fine-tuning data."""
_FINE_TUNE_FILE = f"{OPENAI_FINE_TUNING_GUIDE} (the maximum file upload size is 1 GB)"
MIN_TRAINING_EXAMPLES: Final = 10
"""The fine-tuning guide: "To fine-tune a model, you are required to provide at least 10
examples" (#example-count-recommendations); Azure's guide: "Fine-tuning jobs won't proceed
without at least 10 training examples"."""
MIN_TRAINING_EXAMPLES_SOURCE: Final = (
    f"{OPENAI_FINE_TUNING_GUIDE}#example-count-recommendations; {AZURE_FINE_TUNING_GUIDE}"
)

_METADATA_PROSE = _src(
    "/components/schemas/Metadata (description: 16 key-value pairs, keys up to 64 "
    "characters, values up to 512 characters)"
)
_METADATA: dict[str, Any] = {
    "type": "object",
    "maxProperties": 16,
    "propertyNames": {"type": "string", "maxLength": 64},
    "additionalProperties": {"type": "string", "maxLength": 512},
    "x-source": _METADATA_PROSE,
}

_HP = "/components/schemas/FineTuneSupervisedHyperparameters/properties"
_DPO = "/components/schemas/FineTuneDPOHyperparameters/properties"


def _hyperparameters(pointer: str, *, dpo: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "n_epochs": {
            "type": "integer",
            "minimum": 1,
            "maximum": 50,
            "x-source": _src(f"{pointer}/n_epochs/oneOf/1"),
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 256,
            "x-source": _src(f"{pointer}/batch_size/oneOf/1"),
        },
        "learning_rate_multiplier": {
            "type": "number",
            "exclusiveMinimum": 0,
            "x-source": _src(f"{pointer}/learning_rate_multiplier/oneOf/1"),
        },
    }
    if dpo:
        properties["beta"] = {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 2,
            "x-source": _src(f"{pointer}/beta/oneOf/1"),
        }
    return {"type": "object", "properties": properties, "additionalProperties": False}


_JOB = "/components/schemas/CreateFineTuningJobRequest/properties"
OPENAI_CREATE_JOB: dict[str, Any] = {
    "type": "object",
    "required": ["model", "training_file"],
    "x-source": _src("/components/schemas/CreateFineTuningJobRequest"),
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "x-source": _src(f"{_JOB}/model")},
        "training_file": {"type": "string"},
        "validation_file": {"type": "string"},
        "suffix": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "x-source": _src(f"{_JOB}/suffix"),
        },
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647,
            "x-source": _src(f"{_JOB}/seed"),
        },
        "metadata": _METADATA,
        "method": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {
                    "enum": ["supervised", "dpo", "reinforcement"],
                    "x-source": _src("/components/schemas/FineTuneMethod/properties/type"),
                },
                "supervised": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"hyperparameters": _hyperparameters(_HP, dpo=False)},
                },
                "dpo": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"hyperparameters": _hyperparameters(_DPO, dpo=True)},
                },
            },
        },
    },
}

_PURPOSE_FILES = _src("/components/schemas/CreateFileRequest/properties/purpose")
OPENAI_CREATE_FILE: dict[str, Any] = {
    # A multipart form: `purpose`, and the `file` part, shown by its name, type and size.
    "type": "object",
    "required": ["file", "purpose"],
    "additionalProperties": False,
    "x-source": _src("/components/schemas/CreateFileRequest"),
    "properties": {
        "purpose": {
            "enum": ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"],
            "x-source": _PURPOSE_FILES,
        },
        "file": {
            "type": "object",
            "required": ["filename"],
            "properties": {
                "filename": {"type": "string", "minLength": 1},
                "bytes": {
                    "allOf": [
                        {"maximum": FILES_API_MAX_BYTES, "x-source": _FILES_API},
                        {"maximum": FINE_TUNE_FILE_MAX_BYTES, "x-source": _FINE_TUNE_FILE},
                    ]
                },
            },
        },
    },
}

_UPLOAD = "/components/schemas/CreateUploadRequest"
OPENAI_CREATE_UPLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["filename", "purpose", "bytes", "mime_type"],
    "additionalProperties": False,
    "x-source": _src(_UPLOAD),
    "properties": {
        "filename": {"type": "string"},
        "purpose": {
            "enum": ["assistants", "batch", "fine-tune", "vision"],
            "x-source": _src(f"{_UPLOAD}/properties/purpose"),
        },
        "bytes": {
            "type": "integer",
            "allOf": [
                {"maximum": UPLOAD_MAX_BYTES, "x-source": _UPLOADS_API},
                {"maximum": FINE_TUNE_FILE_MAX_BYTES, "x-source": _FINE_TUNE_FILE},
            ],
        },
        "mime_type": {"type": "string"},
    },
}

OPENAI_ADD_UPLOAD_PART: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "additionalProperties": False,
    "x-source": _src("/components/schemas/AddUploadPartRequest"),
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "bytes": {"maximum": UPLOAD_PART_MAX_BYTES, "x-source": _UPLOAD_PART},
            },
        }
    },
}

OPENAI_COMPLETE_UPLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["part_ids"],
    "additionalProperties": False,
    "x-source": _src("/components/schemas/CompleteUploadRequest"),
    "properties": {"part_ids": {"type": "array"}, "md5": {"type": "string"}},
}


_CHAT = "/components/schemas/CreateChatCompletionRequest/allOf/1/properties"
OPENAI_CREATE_CHAT_COMPLETION: dict[str, Any] = {
    # The fields an evaluation's questions are asked with (tunefleet_openai._answering).
    # max_completion_tokens, not max_tokens: the description deprecates max_tokens "in favor
    # of max_completion_tokens" and says it "is not compatible with o-series models".
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "x-source": _src("/components/schemas/CreateChatCompletionRequest/allOf/1"),
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "x-source": _src(f"{_CHAT}/messages"),
        },
        "max_completion_tokens": {
            "type": "integer",
            "x-source": _src(f"{_CHAT}/max_completion_tokens"),
        },
        "temperature": {
            "type": "number",
            "minimum": 0,
            "maximum": 2,
            "x-source": _src(
                "/components/schemas/ModelResponseProperties/properties/temperature/anyOf/0"
            ),
        },
        "n": {"type": "integer", "minimum": 1, "maximum": 128, "x-source": _src(f"{_CHAT}/n")},
    },
}


def chat_completion_schema(max_output: tuple[int, str] | None) -> dict[str, Any]:
    """The limits of a chat completion request to a model that generates at most
    ``max_output`` tokens (the figure and its source; None when unknown)."""
    if max_output is None:
        return OPENAI_CREATE_CHAT_COMPLETION
    limit, source = max_output
    properties = dict(OPENAI_CREATE_CHAT_COMPLETION["properties"])
    properties["max_completion_tokens"] = {
        **properties["max_completion_tokens"],
        "allOf": [{"maximum": limit, "x-source": source}],
    }
    return {**OPENAI_CREATE_CHAT_COMPLETION, "properties": properties}


# ---------------------------------------------------------------------- Azure OpenAI


def _azure(pointer: str) -> str:
    return _src(pointer, AZURE_SPEC)


AZURE_SUFFIX_MAX: Final = 40
_AZURE_SUFFIX = _azure(
    "/definitions/FineTuningJobCreation/properties/suffix (description: up to 40 "
    "characters (a-z, A-Z, 0-9, - and _))"
)
AZURE_FILE_MAX_BYTES: Final = 512 * MiB
_AZURE_FILE = f"{AZURE_QUOTAS} (max file size for fine-tuning: 512 MB)"
AZURE_UPLOAD_MAX_BYTES: Final = 9 * GiB
_AZURE_UPLOAD = _azure("/paths/~1uploads/post (summary: an Upload size can be a maximum of 9 GB)")
_AZURE_PART = _azure(
    "/paths/~1uploads~1{upload-id}~1parts/post (summary: each Part can be up to the "
    "standard size limit for file upload, based on the File Purpose)"
)
AZURE_MAX_TOTAL_FILE_BYTES: Final = 1 * GiB
"""Quotas page: total size of all files per resource (fine-tuning) is 1 GB."""
AZURE_MAX_FILES: Final = 50
"""Quotas page: max files per resource (fine-tuning) is 50."""
AZURE_MAX_TRAINED_TOKENS: Final = 2_000_000_000
"""Quotas page: max training job size, (tokens in training file) x (# of epochs), 2 billion."""
_AZURE_PURPOSES = [
    "fine-tune",
    "fine-tune-results",
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "evals",
    "evals_output",
]


def _azure_hyperparameters(pointer: str, *, dpo: bool) -> dict[str, Any]:
    # Azure's description types these (int32, double) but states no bounds: Azure OpenAI's
    # fine-tuning is OpenAI's, and the provider holds it to OpenAI's documented bounds
    # (FineTuneSupervisedHyperparameters, FineTuneDPOHyperparameters) rather than send a
    # value OpenAI's own service refuses.
    schema = _hyperparameters(_DPO if dpo else _HP, dpo=dpo)
    schema["x-source"] = _azure(pointer)
    if dpo:
        schema["properties"]["l2_multiplier"] = {"type": "number"}
    return schema


AZURE_CREATE_JOB: dict[str, Any] = {
    # FineTuningJobCreation: model, training_file, validation_file, hyperparameters, suffix,
    # seed, integrations, method. It has no `metadata`: an Azure job keeps none.
    "type": "object",
    "required": ["model", "training_file"],
    "additionalProperties": False,
    "x-source": _azure("/definitions/FineTuningJobCreation"),
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "training_file": {"type": "string", "minLength": 1},
        "validation_file": {"type": "string"},
        "suffix": {
            "type": "string",
            "minLength": 1,
            "maxLength": AZURE_SUFFIX_MAX,
            "pattern": r"^[A-Za-z0-9_-]+$",
            "x-source": _AZURE_SUFFIX,
        },
        "seed": {
            # format int32
            "type": "integer",
            "minimum": -(2**31),
            "maximum": 2**31 - 1,
            "x-source": _azure("/definitions/FineTuningJobCreation/properties/seed"),
        },
        "hyperparameters": _azure_hyperparameters(
            "/definitions/FineTuningHyperParameters", dpo=False
        ),
        "method": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {
                    "enum": ["dpo", "supervised"],
                    "x-source": _azure("/definitions/FineTuningMethodType"),
                },
                # SupervisedMethodRequest is {type} alone; DpoMethodRequest adds `dpo`.
                "dpo": {
                    "type": "object",
                    "additionalProperties": False,
                    "x-source": _azure("/definitions/DpoMethodConfigRequest"),
                    "properties": {
                        "hyperparameters": _azure_hyperparameters(
                            "/definitions/DpoHyperparamsRequest", dpo=True
                        )
                    },
                },
            },
        },
    },
}

AZURE_CREATE_FILE: dict[str, Any] = {
    "type": "object",
    "required": ["file", "purpose"],
    "additionalProperties": False,
    "x-source": _azure("/paths/~1files/post"),
    "properties": {
        "purpose": {
            "enum": _AZURE_PURPOSES,
            "x-source": _azure("/definitions/Purpose"),
        },
        "file": {
            "type": "object",
            "required": ["filename"],
            "properties": {
                "filename": {"type": "string", "minLength": 1},
                "bytes": {"maximum": AZURE_FILE_MAX_BYTES, "x-source": _AZURE_FILE},
            },
        },
    },
}

AZURE_CREATE_UPLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["bytes", "filename", "mime_type", "purpose"],
    "additionalProperties": False,
    "x-source": _azure("/definitions/UploadFileStartBody"),
    "properties": {
        "filename": {"type": "string", "minLength": 1},
        "purpose": {"enum": _AZURE_PURPOSES, "x-source": _azure("/definitions/Purpose")},
        "bytes": {
            "type": "integer",
            "allOf": [
                {"maximum": AZURE_UPLOAD_MAX_BYTES, "x-source": _AZURE_UPLOAD},
                {"maximum": AZURE_FILE_MAX_BYTES, "x-source": _AZURE_FILE},
            ],
        },
        "mime_type": {"type": "string", "minLength": 1},
    },
}

AZURE_ADD_UPLOAD_PART: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "additionalProperties": False,
    "x-source": _azure("/paths/~1uploads~1{upload-id}~1parts/post"),
    "properties": {
        "data": {
            "type": "object",
            "properties": {"bytes": {"maximum": AZURE_FILE_MAX_BYTES, "x-source": _AZURE_PART}},
        }
    },
}

AZURE_COMPLETE_UPLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["part_ids"],
    "additionalProperties": False,
    "x-source": _azure("/definitions/UploadFileCompleteBody"),
    "properties": {"part_ids": {"type": "array"}, "md5": {"type": "string"}},
}

TAG_LIMITS: dict[str, Any] = {
    # Resource Manager tags on the deployment: "Each resource ... can have a maximum of 50
    # tag name-value pairs", names up to 512 characters, values up to 256, and names may
    # not contain <, >, %, &, \, ? or /.
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"type": "string", "maxLength": 512, "pattern": r"^[^<>%&\\?/]*$"},
    "additionalProperties": {"type": "string", "maxLength": 256},
    "x-source": AZURE_TAG_LIMITS,
}

SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "openai": {
        "createFile": OPENAI_CREATE_FILE,
        "createUpload": OPENAI_CREATE_UPLOAD,
        "addUploadPart": OPENAI_ADD_UPLOAD_PART,
        "completeUpload": OPENAI_COMPLETE_UPLOAD,
        "createFineTuningJob": OPENAI_CREATE_JOB,
        "createChatCompletion": OPENAI_CREATE_CHAT_COMPLETION,
    },
    "azure": {
        "createFile": AZURE_CREATE_FILE,
        "createUpload": AZURE_CREATE_UPLOAD,
        "addUploadPart": AZURE_ADD_UPLOAD_PART,
        "completeUpload": AZURE_COMPLETE_UPLOAD,
        "createFineTuningJob": AZURE_CREATE_JOB,
    },
}
"""The schema of each planned operation, by flavour."""


def schema_for(flavor: str, operation: str) -> dict[str, Any] | None:
    """The limits of ``operation`` on ``flavor`` (``openai`` or ``azure``), if any."""
    return SCHEMAS.get(flavor, {}).get(operation)


# ---------------------------------------------------------------------- the checker


@dataclass(frozen=True)
class Violation:
    """One constraint a request breaks."""

    path: str
    """Where in the body, dotted (``method.dpo.hyperparameters.beta``); "" for the body."""
    message: str
    """What is wrong, in words (``is 3, more than 2``)."""
    source: str
    """Where the limit is documented."""

    def __str__(self) -> str:
        where = self.path or "the request"
        return f"{where} {self.message} ({self.source})"


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _source(schema: Mapping[str, Any], schema_path: Sequence[Any]) -> str:
    """The ``x-source`` nearest the broken keyword, along the schema's path to it."""
    node: Any = schema
    source = str(schema.get("x-source", ""))
    for step in list(schema_path)[:-1]:
        node = node[step]
        if isinstance(node, Mapping) and "x-source" in node:
            source = str(node["x-source"])
    return source


def _message(error: Any) -> str:
    """A jsonschema error in tunefleet's words (what the value is, against the limit)."""
    keyword, limit, value = error.validator, error.validator_value, error.instance
    words = {
        "type": lambda: f"must be of type {limit}",
        "enum": lambda: f"is {value!r}, not one of {', '.join(map(repr, limit))}",
        "minLength": lambda: f"has {len(value)} characters, fewer than {limit}",
        "maxLength": lambda: f"has {len(value)} characters, more than {limit}",
        "pattern": lambda: f"{value!r} has characters outside {limit}",
        "minimum": lambda: f"is {_number(value)}, less than {_number(limit)}",
        "maximum": lambda: f"is {_number(value)}, more than {_number(limit)}",
        "exclusiveMinimum": lambda: f"is {_number(value)}, not more than {_number(limit)}",
        "exclusiveMaximum": lambda: f"is {_number(value)}, not less than {_number(limit)}",
        "maxProperties": lambda: f"has {len(value)} entries, more than {limit}",
    }
    return words[keyword]() if keyword in words else str(error.message)


def violations(schema: Mapping[str, Any], value: Any) -> list[Violation]:
    """What in ``value`` breaks ``schema`` (JSON Schema, checked by jsonschema), each with
    the source of the limit it breaks; a value of the wrong type reports that alone."""
    from jsonschema import Draft202012Validator

    found: list[Violation] = []
    errors = list(Draft202012Validator(schema).iter_errors(value))
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for error in errors:
        at = tuple(error.absolute_path)
        path = ".".join(map(str, at))
        source = _source(schema, error.absolute_schema_path)
        if at in mistyped and error.validator != "type":
            continue
        if "propertyNames" in error.absolute_schema_path:  # a key, not a value, breaks it
            where = f"{path}.{error.instance}" if path else str(error.instance)
            found.append(Violation(where, f"(the key) {_message(error)}", source))
        elif error.validator == "additionalProperties" and error.validator_value is False:
            defined = _node(schema, error.absolute_schema_path).get("properties", {})
            for key in error.instance:
                if key not in defined:
                    where = f"{path}.{key}" if path else str(key)
                    found.append(Violation(where, "is not a field the service defines", source))
        elif error.validator == "required":
            for key in error.validator_value:
                if key not in error.instance:
                    found.append(Violation(path, f"lacks {key!r}", source))
        else:
            found.append(Violation(path, _message(error), source))
    return list(dict.fromkeys(found))  # `required` reports each missing key once per key


def _node(schema: Mapping[str, Any], schema_path: Sequence[Any]) -> Mapping[str, Any]:
    """The schema object holding the keyword at the end of ``schema_path``."""
    node: Any = schema
    for step in list(schema_path)[:-1]:
        node = node[step]
    return node  # type: ignore[no-any-return]
